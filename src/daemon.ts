import type { Logger } from 'pino';
import { type Abi, abiFor } from './core/abi';
import { type Clock, realClock } from './base/clock';
import { MdevCore } from './core/core';
import { MdevError, errnoName } from './base/errno';
import type { Ida } from './base/ida';
import type { Parent } from './core/mdev-objects';
import { placePciDevice } from './drivers/placement';
import { hostOf, registerProfileParent, reserveIommuGroups } from './drivers/profile';
import { Uevents } from './events/uevents';
import type { ParentProfile, Profile } from './drivers/profile-types';
import { FaultEngine } from './faults/engine';
import { Journal } from './journal/journal';
import { Kernfs } from './sysfs/kernfs';
import { SysfsTree } from './sysfs/tree';

export interface Emulation {
  core: MdevCore;
  kernfs: Kernfs;
  /** The rendered tree Kernfs serves (also what the bench's static copy is dumped from). */
  tree: SysfsTree;
  abi: Abi;
  clock: Clock;
  /** The uevents the tree's changes send, for the sinks at the edge (JSON stream, udev netlink). */
  uevents: Uevents;
  /** The fault rules (src/faults): the profile's `faults` and those added at run time. */
  faults: FaultEngine;
  /** Every write to the tree and every fault fired, in order (src/journal). */
  journal: Journal;
  /** Settles once the profile's devices present at start exist (rejects, naming the device, if one cannot be made). */
  ready: Promise<void>;
}

/** Core + drivers + tree for a profile: everything but the mount. */
export function buildEmulation(profile: Profile, opts: { abi?: string; log: Logger; clock?: Clock }): Emulation {
  const abi = abiFor(opts.abi ?? profile.abi ?? '6.1');
  const clock = opts.clock ?? realClock;
  const faults = new FaultEngine(clock, opts.log);
  const core = new MdevCore(abi, opts.log, faults);
  reserveIommuGroups(core, profile);
  const parents = profile.parents.map((p) => registerProfileParent(core, p, clock));
  const host = hostOf(core);
  for (const d of profile.pciDevices ?? []) placePciDevice(host.model, core.groupIds, host.bars, d);
  const devices = host.model;
  const tree = new SysfsTree(core, devices);
  // uevents is made below (it listens to the tree Kernfs serves); the journal asks it only once writes come.
  const journal = new Journal(core, faults, { lastSeqnum: (): number => uevents.lastSeqnum, now: clock.now?.bind(clock), wallNow: clock.wallNow?.bind(clock) });
  const kernfs = new Kernfs(tree.root, opts.log, { faults, journal });
  core.subscribe((ev) => kernfs.invalidate(tree.invalidations(ev)));
  devices.subscribe((ev) => kernfs.invalidate(tree.deviceInvalidations(ev)));
  const uevents: Uevents = new Uevents(core, tree, () => kernfs.settled(), devices);
  kernfs.beforeWriteReturns(() => uevents.delivered());
  const ready = createPresentDevices(core, profile.parents, parents);
  ready.catch(() => undefined); // handled by whoever awaits it; never an unhandled rejection
  return { core, kernfs, tree, abi, clock, uevents, ready, faults, journal };
}

/**
 * Creates the profile's devices present at start through the core's create path (they take
 * capacity as any create does). Devices that name their IOMMU group (a recording) are made in
 * the order of those numbers and get them when they are free: lower free numbers are held while
 * each is made, so a replayed host keeps its group and vfio-dev numbers.
 */
export async function createPresentDevices(core: MdevCore, profiles: readonly ParentProfile[], parents: readonly (Parent | undefined)[]): Promise<void> {
  const all = profiles.flatMap((p, i) => (p.devices ?? []).map((d, j) => ({ p, d, parent: parents[i]!, where: `profile: parents[${i}].devices[${j}] (${d.uuid})` })));
  all.sort((a, b) => (a.d.iommuGroup ?? Infinity) - (b.d.iommuGroup ?? Infinity));
  const held: [Ida, number][] = [];
  const holdBelow = (ida: Ida, want: number | undefined) => {
    if (want === undefined) return;
    for (let n = ida.alloc(); ; n = ida.alloc()) {
      if (n >= want) return ida.free(n);
      held.push([ida, n]);
    }
  };
  try {
    for (const { p, d, parent: first, where } of all) {
      // A profile parent on SR-IOV VFs yields one mdev parent per VF: `parent` names the VF.
      const parent = d.parent === undefined ? first : core.parents.get(d.parent);
      if (!parent) throw new Error(`${where}: "${p.name}" has no mdev parent "${d.parent}"`);
      const type = [...parent.types.values()].find((t) => t.sysfsName === d.type);
      if (!type) throw new Error(`${where}: parent "${parent.name}" has no type "${d.type}"`);
      holdBelow(core.groupIds, d.iommuGroup);
      holdBelow(core.vfioIds, d.vfio);
      let dev;
      try {
        await core.createStore(type, Buffer.from(d.uuid));
        dev = core.devices.get(d.uuid.toLowerCase())!;
      } catch (err) {
        const errno = err instanceof MdevError ? errnoName(err.errno) : (err as Error).message;
        throw new Error(`${where}: cannot be created on ${parent.name} (${errno})`);
      }
      const attrs = parent.driver.deviceAttrs(dev, core.abi);
      await writeAttrs(where, d.attrs ?? {}, (path) => attrs.find((a) => a.path === path), 'its devices');
    }
  } finally {
    for (const [ida, n] of held) ida.free(n);
  }
  await setPresentVfs(core, profiles);
}

/**
 * The VFs' state at start (`vfs`: a recorded host's vGPUs on vendor-specific VFIO VFs): each write
 * goes through the store of the VF's attribute, as an `echo` to the file would (capacity included).
 */
async function setPresentVfs(core: MdevCore, profiles: readonly ParentProfile[]): Promise<void> {
  const model = hostOf(core).model;
  for (const [i, p] of profiles.entries()) {
    for (const [j, vf] of (p.vfs ?? []).entries()) {
      const where = `profile: parents[${i}].vfs[${j}] (${vf.name})`;
      const pf = model.get(p.path.split('/').filter(Boolean));
      const dev = p.pci?.sriov?.mdevOn === 'none' && pf?.pci?.sriov?.vfs.some((v) => v.name === vf.name) ? model.get([...pf.path.slice(0, -1), vf.name]) : undefined;
      if (!dev) throw new Error(`${where}: no VF of "${p.name}" without mdev (pci.sriov.mdevOn "none") has this name`);
      await writeAttrs(where, vf.attrs, (path) => dev.driverAttrs.find((a) => a.path === path), 'the VF');
    }
  }
}

/** Writes a profile's `attrs` (path -> value or values in order) through each attribute's store. */
async function writeAttrs(
  where: string,
  attrs: Record<string, string | string[]>,
  find: (path: string) => { store?(buf: Buffer): Promise<number> | number } | undefined,
  whose: string,
): Promise<void> {
  for (const [path, values] of Object.entries(attrs)) {
    const attr = find(path);
    if (!attr?.store) throw new Error(`${where}.attrs: "${path}" is no writable attribute of ${whose}`);
    for (const value of typeof values === 'string' ? [values] : values) {
      try {
        await attr.store(Buffer.from(value, 'latin1'));
      } catch (err) {
        const errno = err instanceof MdevError ? errnoName(err.errno) : (err as Error).message;
        throw new Error(`${where}.attrs: writing ${JSON.stringify(value)} to "${path}" failed (${errno})`);
      }
    }
  }
}
