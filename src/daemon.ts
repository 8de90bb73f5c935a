import type { Logger } from 'pino';
import { type Abi, abiFor } from './core/abi';
import { type Clock, realClock } from './core/clock';
import { MdevCore } from './core/core';
import { hostOf, registerProfileParent } from './drivers/profile';
import { Uevents } from './events/uevents';
import type { Profile } from './drivers/profile-types';
import { Kernfs } from './sysfs/kernfs';
import { SysfsTree } from './sysfs/tree';

export interface Emulation {
  core: MdevCore;
  kernfs: Kernfs;
  abi: Abi;
  clock: Clock;
  /** The uevents the tree's changes send, for the sinks at the edge (JSON stream, udev netlink). */
  uevents: Uevents;
}

/** Core + drivers + tree for a profile: everything but the mount. */
export function buildEmulation(profile: Profile, opts: { abi?: string; log: Logger; clock?: Clock }): Emulation {
  const abi = abiFor(opts.abi ?? profile.abi ?? '6.1');
  const clock = opts.clock ?? realClock;
  const core = new MdevCore(abi, opts.log);
  for (const p of profile.parents) registerProfileParent(core, p, clock);
  const devices = hostOf(core).model;
  const tree = new SysfsTree(core, devices);
  const kernfs = new Kernfs(tree.root, opts.log);
  core.subscribe((ev) => kernfs.invalidate(tree.invalidations(ev)));
  devices.subscribe((ev) => kernfs.invalidate(tree.deviceInvalidations(ev)));
  const uevents = new Uevents(core, tree, () => kernfs.settled());
  return { core, kernfs, abi, clock, uevents };
}
