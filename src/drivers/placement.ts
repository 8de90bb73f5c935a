import type { Ida } from '../base/ida';
import type { KernelIds } from '../core/kernel-ids';
import type { ParentPlacement } from '../core/model';
import { DeviceModel, HostDevice, VFIO_PCI } from '../devices/model';
import { type Bar, PciFunction, parseBdf, parseCpuList, vfAddress, formatBdf } from '../devices/pci';
import { KNOWN_BUSES } from '../devices/known-buses';
import type { BusProfile, HexId, ParentProfile, PciBarProfile, PciDeviceProfile, PciProfile } from './profile-types';

/**
 * The host side of one emulation: its devices and buses, where their BARs go, and the kernel's
 * numberings it shares with the mdev core (a PCI function's IOMMU group).
 */
export class Host {
  readonly model: DeviceModel;
  private barAllocator = new BarAllocator();

  constructor(
    readonly ids: KernelIds,
    /** The ABI's VFIO has vfio-dev/vfioN (6.1; not 4.17). */
    vfioDev: boolean,
  ) {
    // The VFIO core numbers host devices' vfio-dev/vfioN and group devices with the mdevs'.
    this.model = new DeviceModel({ devices: vfioDev ? ids.vfioDevices : undefined, groupMinors: ids.vfioGroupMinors });
  }

  get bars(): BarAllocator {
    return this.barAllocator;
  }

  /** BARs placed from the top of their windows again (reset: no device holds one). */
  resetBars(): void {
    this.barAllocator = new BarAllocator();
  }
}

/** One mdev parent a profile parent yields: itself, or one per VF (sriov.mdevOn = vfs). */
export interface PlacedParent {
  profile: ParentProfile;
  placement: ParentPlacement;
}

export function hexValue(v: HexId): bigint {
  return typeof v === 'number' ? BigInt(v) : BigInt(v);
}

/** The mdev parents of a profile parent, without touching any model (names and paths only). */
export function parentNames(p: ParentProfile): { name: string; path: string[] }[] {
  const path = p.path.split('/').filter(Boolean);
  const s = p.pci?.sriov;
  if (s?.mdevOn === 'none') return [];
  if (!s || (s.mdevOn ?? 'pf') === 'pf') return [{ name: p.name, path }];
  const pf = parseBdf(p.name);
  if (!pf) return [{ name: p.name, path }];
  return Array.from({ length: s.numVfs ?? s.totalVfs }, (_, i) => {
    const name = formatBdf(vfAddress(pf, s.offset ?? 1, s.stride ?? 1, i));
    return { name, path: [...path.slice(0, -1), name] };
  });
}

/**
 * Bus addresses for BARs, from the top of a 32-bit window and a 64-bit one, each aligned to its
 * size, so no two devices of a profile overlap.
 */
export class BarAllocator {
  private mem32 = 0xc0000000n;
  private mem64 = 0x38000000000n;
  private io = 0x3000n;

  place(bars: readonly PciBarProfile[] | undefined, count = 1): Bar[] {
    const list = bars ?? [{ index: 0, size: 0x1000000 }];
    return list.map((b) => {
      const kind = b.kind ?? 'mem32';
      const size = hexValue(b.size);
      const span = size * BigInt(count);
      let address: bigint;
      if (b.address !== undefined) address = hexValue(b.address);
      else if (kind === 'io') address = this.io = align(this.io, size) + span;
      else if (kind === 'mem64' && b.prefetchable) address = this.mem64 = align(this.mem64, span) + span;
      else address = this.mem32 = align(this.mem32, span) + span;
      if (b.address === undefined) address -= span;
      return { index: b.index, kind, prefetchable: b.prefetchable ?? false, size, address };
    });
  }
}

function align(at: bigint, size: bigint): bigint {
  return ((at + size - 1n) / size) * size;
}

function pciFunction(name: string, pci: PciDeviceProfile['pci'], bars: Bar[], device: HexId, irq: number): PciFunction {
  const addr = parseBdf(name)!;
  return new PciFunction(
    addr,
    {
      vendor: Number(hexValue(pci.vendor)),
      device: Number(hexValue(device)),
      subsystemVendor: Number(hexValue(pci.subsystemVendor ?? 0)),
      subsystemDevice: Number(hexValue(pci.subsystemDevice ?? 0)),
      classCode: Number(hexValue(pci.class)),
      revision: Number(hexValue(pci.revision ?? 0)),
    },
    bars,
    pci.numaNode ?? -1,
    irq,
    parseCpuList(pci.localCpus ?? '0-7') ?? [0],
    pci.dmaMaskBits ?? 64,
    pci.express ?? true,
  );
}

function moduleOf(driver: string): string {
  return driver.replace(/-/g, '_');
}

/** A root device (no bus) for the first component below devices/, if the model has none yet. */
function ensureRoot(model: DeviceModel, path: readonly string[], module?: string): void {
  if (path.length < 3) return;
  const rootPath = path.slice(0, 2);
  if (!model.get(rootPath)) model.add(new HostDevice(rootPath[1]!, rootPath, undefined, undefined, [], {}, module));
}

/**
 * Adds the host devices a profile parent sits on to the model (a device already there is reused,
 * so a parent removed and added again finds its PCI function) and says which mdev parents
 * result. Each mdev parent's device is bound to its driver by the caller.
 */
export function placeParent(host: Host, p: ParentProfile): PlacedParent[] {
  const { model } = host;
  const path = p.path.split('/').filter(Boolean);
  if (p.pci) return placePci(host, p, p.pci, path);
  if (p.bus) return [{ profile: p, placement: { name: p.name, path, device: placeOnBus(model, p.bus, p.name, path) } }];
  return [{ profile: p, placement: { name: p.name, path, className: p.class } }];
}

function placePci(host: Host, p: ParentProfile, pci: PciProfile, path: string[]): PlacedParent[] {
  const { model, bars } = host;
  const bus = model.bus('pci');
  // vfio-pci is there for passthrough (driverctl set-override DEV vfio-pci), claiming nothing.
  model.driver(bus, VFIO_PCI, { module: 'vfio_pci' });
  ensureRoot(model, path);
  let dev = model.get(path);
  if (!dev) {
    const fn = pciFunction(p.name, pci, bars.place(pci.bars), pci.device, pci.irq ?? 16);
    fn.iommuGroup = groupOf(host.ids.iommuGroups, pci.iommuGroup);
    const s = pci.sriov;
    // The SR-IOV capability is the function's before device_add: a listener may render it then.
    if (s) {
      const vfBars = bars.place(s.vfBars, s.totalVfs);
      fn.sriov = { totalVfs: s.totalVfs, numVfs: s.numVfs ?? s.totalVfs, offset: s.offset ?? 1, stride: s.stride ?? 1, vfDevice: Number(hexValue(s.vfDevice)), vfBars, vfs: [], driversAutoprobe: true };
    }
    dev = model.add(new HostDevice(p.name, path, bus, fn, [], {}, undefined, true));
    if (fn.sriov) addVfs(host, dev, pci, fn.sriov.numVfs);
  }
  const mdevOn = pci.sriov?.mdevOn ?? 'pf';
  claim(model, dev, pci.driver, pci.module);
  const vfs = vfDevices(model, dev);
  claimVfs(model, pci, vfs);
  if (mdevOn === 'pf') return [{ profile: p, placement: { name: p.name, path, device: dev } }];
  // The PF is no mdev parent: its driver simply has it.
  model.bindNow(dev, bus.drivers.get(pci.driver)!);
  return mdevOn === 'vfs' ? vfs.map((vf) => vfParent(p, vf)) : [];
}

/** An enabled VF as the mdev parent of a profile whose `sriov.mdevOn` is `vfs`. */
export function vfParent(p: ParentProfile, vf: HostDevice): PlacedParent {
  const pci = p.pci!;
  return {
    profile: { ...p, name: vf.name, path: vf.path.join('/'), pci: { ...pci, driver: pci.sriov?.vfDriver ?? pci.driver } },
    placement: { name: vf.name, path: vf.path, device: vf },
  };
}

/** The PF's enabled VFs' devices, VF 0 first. */
export function vfDevices(model: DeviceModel, pf: HostDevice): HostDevice[] {
  return (pf.pci?.sriov?.vfs ?? []).map((vf) => model.get([...pf.path.slice(0, -1), vf.name])!);
}

/** The VF driver claims the VFs (its id table): they bind when probed. */
export function claimVfs(model: DeviceModel, pci: PciProfile, vfs: readonly HostDevice[]): void {
  for (const vf of vfs) claim(model, vf, pci.sriov?.vfDriver ?? pci.driver, pci.module);
}

/**
 * pci_iov_add_virtfn for the PF's VFs from the first not there up to `count`: each at its
 * routing id (PF + offset + index * stride) with its share of the IOV BARs and its IOMMU group
 * (the profile's, else the lowest free). Returns the VFs added, VF 0 first.
 */
export function addVfs({ model, ids }: Host, pf: HostDevice, pci: PciProfile, count: number): HostDevice[] {
  const fn = pf.pci!;
  const s = fn.sriov!;
  const out: HostDevice[] = [];
  for (let k = s.vfs.length; k < count; k++) {
    const name = formatBdf(vfAddress(fn.address, s.offset, s.stride, k));
    const perVf = s.vfBars.map((b) => ({ ...b, address: b.address + b.size * BigInt(k) }));
    const vf = pciFunction(name, { ...pci, express: true }, perVf, pci.sriov!.vfDevice, 0);
    vf.physfn = fn;
    vf.iommuGroup = groupOf(ids.iommuGroups, pci.sriov!.vfIommuGroups?.[k]);
    s.vfs.push(vf);
    out.push(model.add(new HostDevice(name, [...pf.path.slice(0, -1), name], model.bus('pci'), vf, [], {}, undefined, true)));
  }
  return out;
}

/**
 * pci_iov_remove_virtfn of every VF, VF 0 first (sriov_del_vfs): each unbound (its driver's
 * remove runs: an mdev parent on it goes, with its mdevs), then gone, its IOMMU group free.
 */
export async function removeVfs(host: Host, pf: HostDevice): Promise<void> {
  const s = pf.pci!.sriov!;
  for (const dev of vfDevices(host.model, pf)) await removeDevice(host, dev);
  s.vfs.length = 0;
}

/** device_del of a host device: unbound (its driver's remove runs), gone, unclaimed, its IOMMU group free. */
export async function removeDevice({ model, ids }: Host, dev: HostDevice): Promise<void> {
  await model.remove(dev);
  for (const drv of dev.bus?.drivers.values() ?? []) drv.claimed.delete(dev);
  if (dev.pci?.iommuGroup !== undefined) ids.iommuGroups.free(dev.pci.iommuGroup);
}

/**
 * A PCI function that is no mdev parent and has no driver (a profile's `pciDevices`: the host
 * bridge), on the PCI bus with its root; no iommu group. A device already there is left alone.
 */
export function placePciDevice(host: Host, d: PciDeviceProfile): void {
  const { model, bars } = host;
  const path = d.path.split('/').filter(Boolean);
  ensureRoot(model, path);
  if (model.get(path)) return;
  const fn = pciFunction(d.name, d.pci, bars.place(d.pci.bars), d.pci.device, d.pci.irq ?? 0);
  // In a group only if the profile names one (a recorded host's bridge); else none, as before.
  if (d.pci.iommuGroup !== undefined) fn.iommuGroup = groupOf(host.ids.iommuGroups, d.pci.iommuGroup);
  model.add(new HostDevice(d.name, path, model.bus('pci'), fn, [], {}, undefined, true));
}

/** The group a profile names for a function (held back for it, or free), else the lowest free one. */
function groupOf(groups: Ida, named: number | undefined): number {
  return named !== undefined && groups.take(named) ? named : groups.alloc();
}

/** The driver claims the device by its id table (it was bound at boot); the driver exists. */
function claim(model: DeviceModel, dev: HostDevice, driver: string, module: string | undefined): void {
  model.driver(dev.bus!, driver, { module: module ?? moduleOf(driver) }).claimed.add(dev);
}

function placeOnBus(model: DeviceModel, b: BusProfile, name: string, path: string[]): HostDevice {
  const known = KNOWN_BUSES[b.name];
  const bus = model.bus(b.name);
  ensureRoot(model, path, known?.rootModule);
  let dev = model.get(path);
  if (!dev) {
    // The profile adds to (or overrides) what the kernel gives every device of a known bus.
    const uevent = Object.entries({ ...known?.uevent, ...b.uevent });
    const attrs = { ...known?.attrs, ...b.attrs };
    dev = model.add(new HostDevice(name, path, bus, undefined, uevent, attrs, undefined, known?.driverOverride ?? false));
  }
  model.driver(bus, b.driver, { module: b.module ?? known?.module, bindAttrs: b.bindAttrs ?? known?.bindAttrs ?? true }).claimed.add(dev);
  return dev;
}
