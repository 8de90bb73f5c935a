import type { Logger } from 'pino';
import { type Abi, abiFor } from './core/abi';
import { type Clock, realClock } from './base/clock';
import { MdevCore } from './core/core';
import { MdevError, errnoName } from './base/errno';
import { silentLogger } from './base/log';
import type { Ida } from './base/ida';
import { KernelIds } from './core/kernel-ids';
import type { Parent } from './core/mdev-objects';
import { ModelScope } from './drivers/capacity/types';
import { Host, placePciDevice, removeDevice, removeVfs } from './drivers/placement';
import { type Registrar, isProfileParentRegistered, registerProfileParent, reserveIommuGroups, validateProfile } from './drivers/profile';
import { Uevents } from './events/uevents';
import { FaultEngine } from './faults/engine';
import { Journal } from './journal/journal';
import type { ParentProfile, Profile } from './drivers/profile-types';
import { HostSysfs } from './sysfs/host';
import { HostKernfs } from './sysfs/host-kernfs';
import { Kernfs } from './sysfs/kernfs';
import { SysfsTree } from './sysfs/tree';

export interface EmulationOptions {
  /** The kernel ABI (default: the profile's, else 6.1). */
  abi?: string;
  log: Logger;
  clock?: Clock;
  /** Entries the journal keeps (default JOURNAL_CAPACITY); 0: no journal at all (writes record nothing). */
  journalSize?: number;
  /**
   * --host-sysfs: the host's sysfs root (/sys) shown around the emulation (src/sysfs/host.ts). The
   * profile's functions the host already has are refused (a HostClashError), its `pciDevices` the
   * host has are left out (the host's own are shown), and the kernel's numberings skip the host's.
   */
  hostSysfs?: string;
}

/** A profile's device or parent the host already has (--host-sysfs): refused before anything mounts. */
export class HostClashError extends Error {
  constructor(
    /** What the host has, each as `0000:00:04.0 (pci)` or a path, with the mdev parent on it. */
    readonly clashes: readonly string[],
  ) {
    super(HostClashError.describe('the profile', clashes));
  }

  /** The message, naming the profile (`profile nvidia-t4`). */
  static describe(profile: string, clashes: readonly string[]): string {
    return `--host-sysfs: ${profile} uses ${clashes.join(', ')}, which this host already has: ` +
      'the emulated devices need addresses the host does not use (`mdevfs profiles show NAME` prints a built-in as JSON to change)';
  }
}

/**
 * One emulated host, everything but the mount: the mdev core, the host's devices, the kernel's
 * numberings they share, the state their parents share, the rendered tree, its Kernfs and its
 * uevents. Start-up, the control server, `record` and the benchmark build it and change it
 * through these methods only.
 */
export class Emulation implements Registrar {
  readonly abi: Abi;
  readonly clock: Clock;
  readonly log: Logger;
  readonly ids = new KernelIds();
  readonly core: MdevCore;
  readonly host: Host;
  readonly scope = new ModelScope();
  /** The rendered tree Kernfs serves (also what the bench's static copy is dumped from). */
  readonly tree: SysfsTree;
  readonly kernfs: Kernfs;
  /** The uevents the tree's changes send, for the sinks at the edge (JSON stream, udev netlink). */
  readonly uevents: Uevents;
  /** The fault rules (src/faults): the profile's `faults` and those added at run time. */
  readonly faults: FaultEngine;
  /** Every write to the tree and every fault fired, in order (src/journal); none with journalSize 0. */
  readonly journal: Journal | undefined;
  /** Settles once the profile's devices present at start exist (rejects, naming the device, if one cannot be made). */
  readonly ready: Promise<void>;
  /** Runtime changes (add, remove a parent, reset) one after the other. */
  private changing: Promise<unknown> = Promise.resolve();
  /** --host-sysfs: the host's sysfs around the emulation. */
  private readonly hostfs: HostSysfs | undefined;

  constructor(
    /** What the emulation starts from, and what reset() returns to. */
    readonly profile: Profile,
    opts: EmulationOptions,
  ) {
    this.abi = abiFor(opts.abi ?? profile.abi ?? '6.1');
    this.clock = opts.clock ?? realClock;
    this.log = opts.log;
    const faults = (this.faults = new FaultEngine(this.clock, opts.log));
    this.core = new MdevCore(this.abi, opts.log, faults, this.ids);
    this.host = new Host(this.ids, this.abi.vfioDev);
    this.hostfs = opts.hostSysfs === undefined ? undefined : new HostSysfs(opts.hostSysfs);
    const parents = this.placeProfile();
    if (this.hostfs) this.refuseHostClashes(this.hostfs, this);
    const devices = this.host.model;
    const tree = (this.tree = new SysfsTree(this.core, devices));
    // uevents is made below (it listens to the tree Kernfs serves); the journal asks it only once writes come.
    const clock = this.clock;
    const journal = (this.journal =
      opts.journalSize === 0
        ? undefined
        : new Journal(this.core, faults, {
            capacity: opts.journalSize,
            lastSeqnum: (): number => this.uevents.lastSeqnum,
            now: clock.now?.bind(clock),
            wallNow: clock.wallNow?.bind(clock),
          }));
    const observers = journal ? { faults, journal } : { faults };
    const kernfs = (this.kernfs = this.hostfs ? new HostKernfs(tree.root, this.hostfs, opts.log, observers) : new Kernfs(tree.root, opts.log, observers));
    this.core.subscribe((ev) => kernfs.invalidate(tree.invalidations(ev)));
    devices.subscribe((ev) => kernfs.invalidate(tree.deviceInvalidations(ev)));
    this.uevents = new Uevents(this.core, tree, () => kernfs.settled(), devices);
    kernfs.beforeWriteReturns(() => this.uevents.delivered());
    this.ready = this.createPresentDevices(profile.parents, parents);
    this.ready.catch(() => undefined); // handled by whoever awaits it; never an unhandled rejection
  }

  /** The profile's host devices and parents in place, as at boot (its devices present are made next). */
  private placeProfile(): (Parent | undefined)[] {
    const hostfs = this.hostfs;
    if (hostfs) {
      const taken = hostfs.takenNumbers();
      for (const n of taken.iommuGroups) this.ids.iommuGroups.take(n);
      for (const n of taken.vfioDevices) this.ids.vfioDevices.take(n);
      for (const n of taken.vfioGroupMinors) this.ids.vfioGroupMinors.take(n);
    }
    reserveIommuGroups(this.ids, this.profile);
    const parents = this.profile.parents.map((p) => registerProfileParent(this, p));
    for (const d of this.profile.pciDevices ?? []) {
      // Functions a profile declares beside its parents (a host bridge) stand for the machine's own:
      // where the host has that address, the host's own function is shown instead.
      if (hostfs?.hasBusDevice('pci', d.name)) this.log.info({ address: d.name }, '--host-sysfs: the profile\'s pciDevices entry is the host\'s own function: the host\'s is shown');
      else placePciDevice(this.host, d);
    }
    return parents;
  }

  /** Refuses (HostClashError) what an emulation placed that the host already has. */
  private refuseHostClashes(hostfs: HostSysfs, em: Emulation): void {
    const clashes = hostfs.clashes(em.core, em.host.model);
    if (clashes.length > 0) throw new HostClashError(clashes);
  }

  /** Resolves when every cache has dropped what the changes so far removed. */
  settled(): Promise<void> {
    return this.kernfs.settled();
  }

  /**
   * Registers a profile parent while mounted (its host devices placed, its driver bound, its mdev
   * parent(s) registered), then makes its devices present (a recording's) as at start. Throws a
   * ProfileError for an invalid one, an Error if it collides with what is there.
   */
  addParent(parent: ParentProfile): Promise<void> {
    return this.serialize(async () => {
      validateProfile({ parents: [parent] });
      // Tried on an emulation of its own first: nothing of this one changes for a parent the host has.
      if (this.hostfs) this.refuseHostClashes(this.hostfs, new Emulation({ parents: [parent] }, { log: silentLogger, abi: this.abi.version }));
      await this.createPresentDevices([parent], [registerProfileParent(this, parent)]);
      await this.settled();
    });
  }

  /** Whether a profile parent is registered already (all of its mdev parents), so addParent would refuse it. */
  hasParent(parent: ParentProfile): boolean {
    return isProfileParentRegistered(this, parent);
  }

  /**
   * Unregisters a parent as its vendor module's exit does: in-flight work finishes, its devices,
   * types and class link go (later writes get ENODEV). Throws an MdevError (ENODEV) for no such parent.
   */
  removeParent(name: string): Promise<void> {
    return this.serialize(async () => {
      await this.core.unregisterParent(name);
      await this.settled();
    });
  }

  /**
   * Back to the profile's start state, through the kernel's own paths so that every listener
   * hears it as the kernel would tell it: every mdev parent unregistered and its module unloaded
   * (in the reverse order of registration; their devices go first, each as a remove), every host
   * device removed (VFs first, then the deepest first: unbind, remove) and every host driver
   * unregistered (remove), then the profile placed and its devices present
   * created as at start (add, bind, registration events). The kernel's numberings start again from
   * a fresh boot's; SEQNUM goes on. The fault rules added at run time go first (what hangs on a
   * rule is released), the profile's come back with their parents, counters at zero; the journal
   * keeps what it recorded (its seq goes on).
   */
  reset(): Promise<void> {
    return this.serialize(async () => {
      this.faults.reset();
      await this.teardown();
      await this.createPresentDevices(this.profile.parents, this.placeProfile());
      await this.settled();
      await this.uevents.delivered();
    });
  }

  private async teardown(): Promise<void> {
    const { core, host } = this;
    for (const name of [...core.parents.keys()].reverse()) await core.unregisterParent(name);
    for (const name of [...core.modules.keys()].reverse()) await core.unregisterParent(name); // loaded, not registered
    for (const pf of [...host.model.devices.values()].reverse()) if (pf.pci?.sriov && host.model.devices.has(pf.path.join('/'))) await removeVfs(host, pf);
    const byDepth = [...host.model.devices.values()].reverse().sort((a, b) => b.path.length - a.path.length);
    for (const dev of byDepth) await removeDevice(host, dev);
    for (const bus of host.model.buses.values()) {
      for (const drv of [...bus.drivers.values()].reverse()) host.model.removeDriver(drv);
      bus.autoprobe = true;
      bus.attrs = [];
    }
    this.ids.clear();
    host.resetBars();
    this.scope.clear();
  }

  /** Runs one runtime change after those before it have finished (failed or not). */
  private serialize<T>(change: () => Promise<T>): Promise<T> {
    const run = this.changing.then(change, change);
    this.changing = run.catch(() => undefined);
    return run;
  }

  /**
   * Creates the profile's devices present at start through the core's create path (they take
   * capacity as any create does). Devices that name their IOMMU group (a recording) are made in
   * the order of those numbers and get them when they are free: lower free numbers are held while
   * each is made, so a replayed host keeps its group and vfio-dev numbers.
   */
  private async createPresentDevices(profiles: readonly ParentProfile[], parents: readonly (Parent | undefined)[]): Promise<void> {
    const core = this.core;
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
        holdBelow(this.ids.iommuGroups, d.iommuGroup);
        holdBelow(this.ids.vfioDevices, d.vfio);
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
    await this.setPresentVfs(profiles);
  }

  /**
   * The VFs' state at start (`vfs`: a recorded host's vGPUs on vendor-specific VFIO VFs): each write
   * goes through the store of the VF's attribute, as an `echo` to the file would (capacity included).
   */
  private async setPresentVfs(profiles: readonly ParentProfile[]): Promise<void> {
    const model = this.host.model;
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
