/**
 * A parent's identity in profile terms, from the files of its device directory: a class for a
 * virtual parent, the PCI function (ids, BARs, SR-IOV) or another bus (s390 matrix, css).
 */
import { KNOWN_BUSES } from '../devices/known-buses';
import type { ApHostSpec, BusProfile, PciBarProfile, PciProfile } from '../drivers/profile-types';
import type { ObservedApBus, ObservedFile } from './sysfs-reader';

/** What identity needs of a device directory. */
export interface DeviceFiles {
  name: string;
  files: Map<string, ObservedFile>;
  subsystem?: string;
  driver?: string;
  driverModule?: string;
  /** N of its iommu_group link. */
  iommuGroup?: number;
}

/** The IORESOURCE_* bits the `resource` file shows (include/linux/ioport.h). */
const IO = 0x100n;
const MEM = 0x200n;
const PREFETCH = 0x2000n;
const MEM_64 = 0x100000n;
/** resource lines 0-5 are the BARs, 6 the ROM, 7-12 the SR-IOV BARs (PCI_IOV_RESOURCES). */
const IOV_RESOURCES = 7;

const text = (f: ObservedFile | undefined) => f?.content?.toString('latin1').replace(/\n$/, '');

export function pciOf(dev: DeviceFiles, warnings: string[]): PciProfile {
  const f = (n: string) => text(dev.files.get(n));
  const num = (n: string) => {
    const v = f(n);
    return v !== undefined && /^-?\d+$/.test(v) ? Number(v) : undefined;
  };
  for (const n of ['vendor', 'device', 'class']) if (f(n) === undefined) warnings.push(`${dev.name}: PCI parent without ${n}; recorded as 0`);
  const pci: PciProfile = { vendor: f('vendor') ?? '0x0000', device: f('device') ?? '0x0000', class: f('class') ?? '0x000000', driver: dev.driver ?? 'unknown' };
  const opt = <K extends keyof PciProfile>(k: K, v: PciProfile[K] | undefined, dflt?: PciProfile[K]) => {
    if (v !== undefined && v !== dflt) pci[k] = v;
  };
  opt('subsystemVendor', f('subsystem_vendor'), '0x0000');
  opt('subsystemDevice', f('subsystem_device'), '0x0000');
  opt('revision', f('revision'), '0x00');
  opt('module', dev.driverModule, dev.driver?.replace(/-/g, '_'));
  opt('numaNode', num('numa_node'), -1);
  opt('irq', num('irq'));
  opt('localCpus', f('local_cpulist'), '0-7');
  opt('dmaMaskBits', num('dma_mask_bits'), 64);
  opt('iommuGroup', dev.iommuGroup);
  const config = dev.files.get('config')?.content;
  if (config !== undefined) opt('express', config.length > 256, true);
  const resources = (f('resource') ?? '').split('\n').map((l) => l.trim().split(/\s+/).map((x) => (/^0x[0-9a-f]+$/i.test(x) ? BigInt(x) : undefined)));
  const totalVfs = num('sriov_totalvfs');
  const barsAt = (from: number, count: number, per = 1n): PciBarProfile[] => {
    const bars: PciBarProfile[] = [];
    for (let i = 0; i < count; i++) {
      const [start, end, flags] = resources[from + i] ?? [];
      if (start === undefined || end === undefined || flags === undefined || flags === 0n || end < start) continue;
      const size = (end - start + 1n) / per;
      const kind = flags & IO ? 'io' : flags & MEM_64 ? 'mem64' : 'mem32';
      if (!(flags & (IO | MEM))) continue;
      bars.push({
        index: i,
        size: `0x${size.toString(16)}`,
        ...(kind !== 'mem32' ? { kind } : {}),
        ...(flags & PREFETCH ? { prefetchable: true } : {}),
        address: `0x${start.toString(16)}`,
      });
    }
    return bars;
  };
  if (f('resource') !== undefined) pci.bars = barsAt(0, 6);
  if (totalVfs !== undefined && totalVfs > 0) {
    const vfDevice = f('sriov_vf_device');
    pci.sriov = {
      totalVfs,
      vfDevice: vfDevice ? `0x${vfDevice}` : pci.device,
      ...(num('sriov_numvfs') !== totalVfs ? { numVfs: num('sriov_numvfs') ?? 0 } : {}),
      ...(num('sriov_offset') !== 1 && num('sriov_offset') !== undefined ? { offset: num('sriov_offset') } : {}),
      ...(num('sriov_stride') !== 1 && num('sriov_stride') !== undefined ? { stride: num('sriov_stride') } : {}),
    };
    if (f('resource') !== undefined) pci.sriov.vfBars = barsAt(IOV_RESOURCES, 6, BigInt(totalVfs));
  }
  return pci;
}

/** A parent on a bus other than PCI: its name and driver, and what differs from the bus's known defaults. */
export function busOf(dev: DeviceFiles, bus: string): BusProfile {
  const known = KNOWN_BUSES[bus];
  const out: BusProfile = { name: bus, driver: dev.driver ?? bus };
  if (dev.driverModule !== undefined && dev.driverModule !== known?.module) out.module = dev.driverModule;
  const uevent: Record<string, string> = {};
  for (const line of (text(dev.files.get('uevent')) ?? '').split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0 && line.slice(0, eq) !== 'DRIVER') uevent[line.slice(0, eq)] = line.slice(eq + 1);
  }
  if (!sameEntries(uevent, known?.uevent ?? {})) out.uevent = uevent;
  const attrs: Record<string, string> = {};
  for (const [name, file] of dev.files) {
    if (name === 'uevent' || name === 'driver_override' || name.includes('/') || file.mode & 0o222 || !file.content) continue;
    attrs[name] = file.content.toString('latin1');
  }
  if (!sameEntries(attrs, known?.attrs ?? {})) out.attrs = attrs;
  return out;
}

function sameEntries(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => b[k] === a[k]);
}

/** The AP configuration vfio-ap checks against, from bus/ap: its limits, masks, cards and queues. */
export function apHostSpec(ap: ObservedApBus): ApHostSpec {
  const out: ApHostSpec = {};
  const num = (f: string) => {
    const v = ap.files.get(f);
    return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
  };
  const maxA = num('ap_max_adapter_id');
  const maxD = num('ap_max_domain_id');
  if (maxA !== undefined) out.maxAdapterId = maxA;
  if (maxD !== undefined) out.maxDomainId = maxD;
  for (const m of ['apmask', 'aqmask'] as const) {
    const v = ap.files.get(m);
    if (v !== undefined) out[m] = v;
  }
  const hexes = (re: RegExp) => ap.devices.map((d) => re.exec(d)?.[1]).filter((h): h is string => h !== undefined);
  const cards = hexes(/^card([0-9a-f]{2})$/);
  const queues = hexes(/^[0-9a-f]{2}\.([0-9a-f]{4})$/);
  out.adapters = [...new Set(cards.map((h) => parseInt(h, 16)))].sort((a, b) => a - b);
  out.domains = [...new Set(queues.map((h) => parseInt(h, 16)))].sort((a, b) => a - b);
  return out;
}
