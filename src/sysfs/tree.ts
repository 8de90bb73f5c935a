import type { CoreEvent, MdevCore } from '../core/core';
import type { Parent } from '../core/mdev-objects';
import type { Kobj } from '../core/uevent';
import { type DeviceEvent, DeviceModel } from '../devices/device-model';
import { BusesRenderer } from './buses';
import { Classes } from './class';
import { InvalidationSet, TreeContext, at } from './context';
import { IOMMU_GROUPS, IommuGroups } from './iommu-groups';
import type { Invalidation } from './kernfs';
import { MdevSubsystem } from './mdev';
import { MODULES, Modules } from './module';
import { type DirNode, type Node, dir, dynDir, union } from './nodes';
import { BUSES, CLASSES, MDEV_BUS, busDrivers, vfioDevEntry } from './paths';
import { GROUP_DEVICES, VfioGroups } from './vfio-groups';

/** What a uevent about a kobject carries besides ACTION, the caller's variables and SEQNUM. */
export interface KobjectInfo {
  devpath: string;
  subsystem: string;
  /** The `uevent` file's KEY=VALUE lines (dev_uevent), in order. */
  vars: string[];
}

/**
 * Renders the mdev core and the driver core as /sys. Nothing here decides policy: every store goes
 * to the core, every listing is read from it. Each subsystem is one file that builds its directories
 * and says what each change invalidates in them: mdev.ts (the parents' entries, the device
 * directories, bus/mdev, class/mdev_bus), buses.ts (the driver core's devices and buses: pci, ap, css),
 * vfio-groups.ts, iommu-groups.ts, class.ts, module.ts; this file puts them together at the root,
 * renders devices/ (the directories on the way to devices) and sends each event to the subsystems
 * it touches.
 */
export class SysfsTree {
  readonly root: DirNode;

  private readonly ctx: TreeContext;
  private readonly mdev: MdevSubsystem;
  private readonly vfio: VfioGroups;
  private readonly iommu: IommuGroups;
  private readonly classes: Classes;
  private readonly modules: Modules;

  constructor(core: MdevCore, devices: DeviceModel = new DeviceModel()) {
    // A device's directory also holds an mdev parent's entries and the devices below it.
    const buses = new BusesRenderer(devices, (dev) => {
      const parent = this.ctx.registeredParents().find((p) => p.placement.device === dev);
      const below = this.prefixDir(dev.path);
      return parent ? union([this.mdev.parentDir(parent), below]) : below;
    }, (k) => this.ctx.ueventStore(k));
    this.ctx = new TreeContext(core, devices, buses);
    this.mdev = new MdevSubsystem(this.ctx);
    this.vfio = new VfioGroups(this.ctx);
    this.iommu = new IommuGroups(this.ctx);
    this.classes = new Classes(this.ctx, this.vfio, this.mdev);
    this.modules = new Modules(this.ctx);
    // The subsystems' listings where their descriptions put them (bus, class, kernel/iommu_groups, module).
    const kernel = dir({ [IOMMU_GROUPS.name]: () => this.iommu.dir() });
    this.root = dir({
      [BUSES.name]: () => buses.busesDir(() => this.mdev.busDir()),
      [CLASSES.name]: () => this.classes.dir(),
      devices: () => this.prefixDir(['devices']),
      [IOMMU_GROUPS.path[0]!]: () => kernel,
      [MODULES.name]: () => this.modules.dir(),
    });
  }

  // ---- cache invalidation --------------------------------------------------------------

  /**
   * Paths whose directory entry is gone after ev (a kernel caching lookups must drop them;
   * dropping a directory drops its subtree) and paths whose attributes (st_nlink) changed,
   * from each subsystem the event touches. New names need nothing: lookups that failed are never cached.
   */
  invalidations(ev: CoreEvent): Invalidation {
    const inv = new InvalidationSet();
    if (ev.kind === 'part') {
      this.mdev.part(ev, inv);
      if (ev.part === 'bound') {
        const { dev, shown } = ev;
        this.iommu.invalidate(dev.iommuGroup, shown, inv);
        this.classes.vfioDev(dev.vfioIndex, shown, inv);
        if (dev.iommuGroup !== undefined) this.vfioGroup(dev.iommuGroup, shown, inv);
      }
    } else if (ev.kind === 'parent') {
      this.parentPath(ev.parent, ev.registered, inv);
      this.mdev.parent(ev, inv);
      this.classes.parent(ev, inv);
    } else if (ev.kind === 'module') {
      this.classes.module(ev, inv);
      this.mdev.module(ev, inv);
      this.modules.invalidate(ev, inv);
    }
    return inv;
  }

  /** What a change of the host devices (a bind, an unbind, a device or driver coming or going) took away. */
  deviceInvalidations(ev: DeviceEvent): Invalidation {
    const inv = new InvalidationSet();
    const fromBuses = this.ctx.buses.invalidations(ev);
    inv.gone(...fromBuses.entries);
    inv.changed(...fromBuses.attrs);
    this.iommu.hostDevice(ev, inv);
    if (ev.kind === 'driver') this.modules.hostDriver(ev, inv);
    if (ev.kind === 'vfio') {
      this.classes.vfioDev(ev.dev.vfioIndex, ev.registered, inv);
      const group = ev.dev.vfioGroupMinor !== undefined ? ev.dev.pci?.iommuGroup : undefined;
      if (group !== undefined) this.vfioGroup(group, ev.registered, inv);
    }
    return inv;
  }

  /**
   * A VFIO group device came or went. With the first or the last one the glue directory came or
   * went, and its container (devices/virtual) with it where nothing else is in it (a host whose
   * parents are all bus devices): only then does the container's own container change.
   */
  private vfioGroup(group: number, shown: boolean, inv: InvalidationSet): void {
    this.vfio.invalidate(group, shown, inv);
    if (!this.vfio.glueChanged(shown)) return;
    const container = this.vfio.container();
    if (this.occupied(container)) return;
    inv.changed(at(...container.slice(0, -1)));
    if (!shown) inv.gone(at(...container));
  }

  /** Whether a registered parent or a host device is below prefix (which then is there without the glue). */
  private occupied(prefix: readonly string[]): boolean {
    const below = (path: readonly string[]) => path.length > prefix.length && prefix.every((c, i) => path[i] === c);
    return this.ctx.registeredParents().some((p) => below(p.placement.path)) || this.ctx.buses.namesBelow(prefix).length > 0;
  }

  /**
   * A parent registered or unregistered: every directory on the way to it may have gained or lost
   * a child, and so may the parent's own (a host device that stays: mdev_supported_types), and bus/
   * (a bus listed only while it has a device).
   */
  private parentPath(parent: Parent, registered: boolean, inv: InvalidationSet): void {
    const path = parent.placement.path;
    for (let i = 1; i <= path.length; i++) inv.changed(at(...path.slice(0, i)));
    inv.changed(BUSES.at());
    // A superset is harmless: an entry dropped needlessly is simply looked up again.
    if (!registered) for (let i = 2; i <= path.length; i++) inv.gone(at(...path.slice(0, i)));
  }

  // ---- uevents -------------------------------------------------------------------------

  private dirAt(path: readonly string[]): DirNode | undefined {
    let node: Node | undefined = this.root;
    for (const name of path) node = node?.kind === 'dir' ? node.lookup(name) : undefined;
    return node?.kind === 'dir' ? node : undefined;
  }

  /**
   * DEVPATH, SUBSYSTEM and the `uevent` file's variables of a kobject, read from the nodes the
   * tree shows for it (so a uevent says what a reader of sysfs finds). Works for an object that
   * is already gone: its nodes still render it.
   */
  kobject(k: Kobj): KobjectInfo {
    let path: string[];
    let node: DirNode | undefined;
    switch (k.kind) {
      case 'bus':
        return { devpath: BUSES.entry(k.name ?? MDEV_BUS), subsystem: 'bus', vars: [] };
      case 'driver':
        return { devpath: busDrivers(k.bus ?? MDEV_BUS).entry(k.name), subsystem: 'drivers', vars: [] };
      case 'host':
        path = [...k.dev.path];
        node = this.dirAt(path);
        break;
      case 'module':
        return { devpath: MODULES.entry(k.name), subsystem: 'module', vars: [] };
      case 'class':
        return { devpath: CLASSES.entry(k.name), subsystem: 'class', vars: [] };
      case 'device':
        path = this.ctx.devicePath(k.dev);
        node = this.mdev.deviceDir(k.dev);
        break;
      case 'vfio-group':
        path = GROUP_DEVICES.entryPath(k.dev.iommuGroup!);
        node = this.vfio.mdevGroupDir(k.dev);
        break;
      case 'host-vfio-group':
        path = GROUP_DEVICES.entryPath(k.dev.pci!.iommuGroup!);
        node = this.vfio.hostGroupDir(k.dev);
        break;
      case 'vfio-dev':
      case 'host-vfio-dev': {
        const [glue, name] = vfioDevEntry(k.dev.vfioIndex!) as [string, string];
        path = [...(k.kind === 'vfio-dev' ? this.ctx.devicePath(k.dev) : k.dev.path), glue, name];
        const d = (k.kind === 'vfio-dev' ? this.mdev.vfioDevDir(k.dev) : this.ctx.buses.deviceDir(k.dev).lookup(glue));
        const vfio = d?.kind === 'dir' ? d.lookup(name) : undefined;
        node = vfio?.kind === 'dir' ? vfio : undefined;
        break;
      }
      case 'parent': {
        // The directory as shown (on a host device the device owns uevent and subsystem); a
        // class device that is gone is still rendered by its own node.
        path = [...k.parent.placement.path];
        const shown = this.dirAt(path);
        node = shown?.lookup('uevent') ? shown : this.mdev.parentDir(k.parent);
        break;
      }
    }
    const subsystem = node?.lookup('subsystem');
    const uevent = node?.lookup('uevent');
    return {
      devpath: at(...path),
      subsystem: subsystem?.kind === 'link' ? subsystem.target[subsystem.target.length - 1]! : '',
      vars: uevent?.kind === 'attr' && uevent.show ? uevent.show().split('\n').filter((l) => l !== '') : [],
    };
  }

  // ---- devices/ ------------------------------------------------------------------------

  /** An intermediate directory on the way to parents (devices/, devices/virtual/, ...). */
  private prefixDir(prefix: readonly string[]): DirNode {
    return this.ctx.cached(this, `prefix:${prefix.join('/')}`, () => {
      const below = () =>
        this.ctx.registeredParents().filter(
          (p) => p.placement.path.length > prefix.length && prefix.every((c, i) => p.placement.path[i] === c),
        );
      const key = prefix.join('/');
      // The directories below, by name (the same nodes as prefixDir's, without making its key).
      const deeperDirs = new Map<string, DirNode>();
      const deeperDir = (name: string) => {
        let d = deeperDirs.get(name);
        if (!d) deeperDirs.set(name, (d = this.prefixDir([...prefix, name])));
        return d;
      };
      const inPrefix = (path: readonly string[]) => path.length > prefix.length && prefix.every((c, i) => path[i] === c);
      // The VFIO group devices' glue directory (GROUP_DEVICES: devices/virtual/vfio), while there is
      // one, and the directories on the way to it (devices/virtual, on a host whose parents are all bus devices).
      const gluePath = GROUP_DEVICES.path;
      const onGlue = prefix.length < gluePath.length && prefix.every((c, i) => gluePath[i] === c);
      const glueName = onGlue ? gluePath[prefix.length] : undefined;
      const glueIsGroups = prefix.length === gluePath.length - 1;
      const glue = glueName ? () => (this.vfio.count() > 0 ? [glueName] : []) : () => [];
      return dynDir(
        () => new Set([...below().map((p) => p.placement.path[prefix.length]!), ...this.ctx.buses.namesBelow(prefix), ...glue()]),
        (name) => {
          if (name === glueName && glue().length > 0) return glueIsGroups ? this.vfio.devicesDir() : deeperDir(name);
          // A host device renders itself (and any mdev parent on it); a virtual parent is all mdev.
          const device = this.ctx.buses.deviceAt(`${key}/${name}`);
          if (device) return this.ctx.buses.deviceDir(device);
          // The first registered parent at prefix/name, else whether one is further below.
          let exact: Parent | undefined;
          let deeper = false;
          for (const p of this.ctx.core.parents.values()) {
            const path = p.placement.path;
            if (!p.registered || path[prefix.length] !== name || !inPrefix(path)) continue;
            if (path.length === prefix.length + 1) {
              exact = p;
              break;
            }
            deeper = true;
          }
          if (exact) return this.mdev.parentDir(exact);
          if (!deeper && this.ctx.buses.namesBelow([...prefix, name]).length === 0) return undefined;
          return deeperDir(name);
        },
      );
    });
  }
}
