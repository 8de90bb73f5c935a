/**
 * Registering a profile's parents in an emulation: their host devices (PCI functions with SR-IOV,
 * s390 bus devices) placed, the mdev parents registered by their drivers' probe, the VFs that
 * sriov_numvfs adds and removes.
 */
import type { Clock } from '../base/clock';
import type { MdevCore } from '../core/core';
import type { KernelIds } from '../core/kernel-ids';
import type { Parent } from '../core/mdev-objects';
import type { DeviceModel, HostDevice } from '../devices/device-model';
import { ConfiguredDriver } from './configured-driver';
import type { ModelScope } from './capacity/types';
import { attachVendorVfio } from './capacity/vendor-vfio';
import { placeApBus } from './capacity/ap-bus';
import { apHostOf } from './capacity/attrs';
import { type Host, type PlacedParent, addVfs, claimVfs, parentNames, placeParent, removeVfs, vfDevices, vfParent } from './placement';
import { namedIommuGroups } from './profile-validation';
import type { ParentProfile, Profile } from './profile-types';

/** What registration changes: the parts of one emulation (the Emulation is one). */
export interface Registrar {
  readonly core: MdevCore;
  readonly host: Host;
  /** State the emulation's parents share (one GPU's VFs). */
  readonly scope: ModelScope;
  readonly clock: Clock;
}

/**
 * Holds back every IOMMU group number a profile names for a PCI function, before anything is
 * placed: a function placed earlier without one would otherwise take the lowest free number,
 * which may be a later function's. (Recorded mdevs get theirs as they are created.)
 */
export function reserveIommuGroups(ids: KernelIds, profile: Profile): void {
  for (const { group, of } of namedIommuGroups(profile)) if (of === 'function') ids.iommuGroups.reserve(group);
}

/**
 * Whether a profile parent is in place already, as registerProfileParent would find it: each of
 * its mdev parents registered (or, for vendor-specific VFIO, which has none, its PF present).
 */
export function isProfileParentRegistered(em: Registrar, p: ParentProfile): boolean {
  const placed = parentNames(p);
  if (placed.length === 0) return em.host.model.get(p.path.split('/').filter(Boolean)) !== undefined;
  return placed.every(({ name }) => em.core.parents.has(name));
}

/**
 * Puts a profile parent's host devices in place and registers its mdev parent(s) as their
 * drivers' probe does; unbinding the device from its driver unregisters them, binding it back
 * registers them again. Returns the first mdev parent (a VF-placed parent yields one per VF;
 * vendor-specific VFIO, `mdevOn: none`, yields none).
 */
export function registerProfileParent(em: Registrar, p: ParentProfile): Parent | undefined {
  const { core, host, scope } = em;
  const placed = parentNames(p);
  for (const { name } of placed) if (core.parents.has(name)) throw new Error(`parent ${name} exists`);
  // The running tree's directories, as semanticProblems checks a profile's own: no two parents in
  // one directory or one inside another; a host device is only ever re-used by a parent on it.
  const nests = (a: string, b: string) => a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
  for (const { path } of placed) {
    const dir = path.join('/');
    const taken = [...core.parents.values()].find((x) => x.registered && nests(x.placement.path.join('/'), dir));
    if (taken) throw new Error(`parent ${p.name}: ${dir} collides with ${taken.name}'s directory`);
    const device = host.model.get(path);
    if (device && !p.pci && !p.bus) throw new Error(`parent ${p.name}: ${dir} is the host device ${device.name}`);
  }
  const parents = placeParent(host, p).map((pp) => attachParent(em, pp));
  // vfio-ap's host: the AP bus with the cards, queues and masks the parent's apHost declares.
  if (p.apHost) placeApBus(host.model, apHostOf(p, scope));
  if (p.pci?.sriov) {
    const pf = host.model.get(p.path.split('/').filter(Boolean))!;
    if (p.pci.sriov.mdevOn === 'none') attachVendorVfio(host.model, p, vfDevices(host.model, pf), scope);
    // The PF driver's sriov_configure: sriov_numvfs enables and disables the VFs.
    const hooks = pf.hooks.get(p.pci.driver) ?? { probe: () => undefined, remove: async () => undefined };
    hooks.sriovConfigure = (dev, n) => configureVfs(em, p, dev, n);
    pf.hooks.set(p.pci.driver, hooks);
  }
  return parents[0];
}

/**
 * sriov_configure of a profile PF's driver (NVIDIA's, as `sriov-manage -e` uses it): 0 removes
 * every VF (their mdev parents and mdevs, or their vGPUs, go with them; no uevent of the PF:
 * sriov_disable sends none); another count adds that many, and each is probed as the kernel
 * does when sriov_drivers_autoprobe is on: it becomes an mdev parent (`mdevOn: vfs`), gets its
 * nvidia/ files (`none`), or is only there (`pf`, as at start). Then KOBJ_CHANGE of the PF
 * (sriov_enable). sriov_numvfs already reads the new count then, as since Linux 6.9 (6.1 set
 * it just after that uevent).
 */
async function configureVfs(em: Registrar, p: ParentProfile, pf: HostDevice, n: number): Promise<void> {
  const { host } = em;
  const model = host.model;
  const s = pf.pci!.sriov!;
  if (n === 0) {
    await removeVfs(host, pf);
    s.numVfs = 0;
    return;
  }
  s.numVfs = n;
  const mdevOn = p.pci!.sriov!.mdevOn ?? 'pf';
  const probe = s.driversAutoprobe;
  // pci_iov_add_virtfn, one VF after the other: device_add (KOBJ_ADD), the virtfnN and physfn
  // links (KOBJ_CHANGE of the VF), then pci_bus_add_device: its probe and KOBJ_BIND.
  for (let k = s.vfs.length; k < n; k++) {
    const vfs = addVfs(host, pf, p.pci!, k + 1);
    for (const vf of vfs) model.changed(vf);
    claimVfs(model, p.pci!, vfs);
    if (mdevOn === 'vfs') for (const vf of vfs) attachParent(em, vfParent(p, vf), probe);
    else if (mdevOn === 'none') attachVendorVfio(model, p, vfs, em.scope, probe);
  }
  model.changed(pf);
}

/** Sets the parent's driver hooks on its device and, unless `bind` is false, binds it (the probe registers the parent). */
function attachParent({ core, host, clock, scope }: Registrar, { profile, placement }: PlacedParent, bind = true): Parent | undefined {
  const model: DeviceModel = host.model;
  const register = () => core.registerParent(placement, new ConfiguredDriver(profile, clock, scope));
  const dev = placement.device;
  if (!dev) return register();
  const driverName = profile.pci?.sriov?.mdevOn === 'vfs' ? (profile.pci.sriov.vfDriver ?? profile.pci.driver) : (profile.pci?.driver ?? profile.bus!.driver);
  dev.hooks.set(driverName, {
    probe: () => {
      if (!core.parents.has(placement.name)) register();
    },
    remove: async () => {
      const parent = core.parents.get(placement.name);
      // The driver's remove unregisters the mdev parent; the vendor module (kvmgt) stays loaded.
      if (parent && parent.placement.device === dev) await core.unregisterParent(placement.name, { unload: false });
    },
  });
  const drv = dev.bus!.drivers.get(driverName)!;
  if (dev.driver === drv) register();
  else if (!dev.driver && bind) model.bindNow(dev, drv);
  return core.parents.get(placement.name);
}
