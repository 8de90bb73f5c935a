import type { CoreEvent } from '../core/core';
import { DEVICE_ENTRIES, type DeviceEntry, type MdevDevice, type MdevType, PARENT_ENTRIES, type Parent, type Part } from '../core/mdev-objects';
import { autoprobeAttr, powerDir, vfioDevDir } from './common';
import { type InvalidationSet, Listing, type TreeContext, at } from './context';
import { IOMMU_GROUPS } from './iommu-groups';
import { MODULES } from './module';
import { type DirNode, type Node, attr, dir, dynDir, groups, link, linkDir, onlyWhen, ro, union, wo } from './nodes';
import { BUSES, CLASSES, MDEV_BUS, MDEV_DRIVERS, busDevices, driverDevices } from './paths';

/** make(key()), made again only when key() changes. */
function memoBy<K, T>(key: () => K, make: (k: K) => T): () => T {
  let made: { k: K; v: T } | undefined;
  return () => {
    const k = key();
    if (!made || made.k !== k) made = { k, v: make(k) };
    return made.v;
  };
}

const DEVICE_ENTRY_NAMES = Object.keys(DEVICE_ENTRIES) as DeviceEntry[];

const entriesOf = (part: Part): DeviceEntry[] => DEVICE_ENTRY_NAMES.filter((n) => (DEVICE_ENTRIES[n].part as Part) === part);

/** The core's entries of a device directory that each part shows (DEVICE_ENTRIES, by part). */
export const DEVICE_ENTRIES_OF: Readonly<Record<Part, readonly DeviceEntry[]>> = {
  dir: entriesOf('dir'),
  remove: entriesOf('remove'),
  bound: entriesOf('bound'),
  vendor: entriesOf('vendor'),
  links: entriesOf('links'),
};

/** bus/mdev/devices/: a link per device whose directory is shown. */
export const MDEV_BUS_DEVICES = busDevices<MdevDevice>(MDEV_BUS, (dev) => dev.uuid);

/** bus/mdev/drivers/<driver>/: a link per device bound to the driver. */
const boundTo = (driver: string) => driverDevices<MdevDevice>(MDEV_BUS, driver, (dev) => dev.uuid);

/**
 * Where each part of a device shows outside its own directory, below the sysfs root: the listings
 * here that show a device filter on the same part (bus/mdev/devices and the parent on 'dir', a
 * type's devices/ on 'links', a driver's directory on 'bound'). The bound device's IOMMU group,
 * VFIO group and class/vfio-dev link are those subsystems' (iommu-groups.ts, vfio-groups.ts, class.ts).
 * A Record over Part: a part added to the core without its places here does not compile.
 */
export const DEVICE_ELSEWHERE: Readonly<Record<Part, (dev: MdevDevice) => string[][]>> = {
  dir: (dev) => [MDEV_BUS_DEVICES.entryPath(dev)],
  remove: () => [],
  bound: (dev) => (dev.boundDriver ? [boundTo(dev.boundDriver).entryPath(dev)] : []),
  vendor: () => [],
  links: (dev) => [[...dev.parent.placement.path, 'mdev_supported_types', dev.type.id, 'devices', dev.uuid]],
};

/** class/mdev_bus/: a link per registered parent (the class_compat link of mdev_register_parent). */
export const MDEV_BUS_CLASS = new Listing<Parent>(CLASSES.entryPath('mdev_bus'), (p) => p.name);

/**
 * The mdev subsystem (drivers/vfio/mdev/): a parent's entries (mdev_supported_types/ with its types,
 * and on a virtual parent power/, subsystem and uevent), the device directories below it,
 * bus/mdev/ and class/mdev_bus/; with what each change of the core invalidates in them. A device directory's entries
 * are DEVICE_ENTRIES' (core/mdev-objects.ts), each shown while its part is: the directory is built
 * from that table and a part's going invalidates the entries the table gives it.
 */
export class MdevSubsystem {
  constructor(private readonly ctx: TreeContext) {}

  // ---- parents -------------------------------------------------------------------------

  parentDir(parent: Parent): DirNode {
    const ctx = this.ctx;
    return ctx.cached(parent, 'dir', () => {
      const alive = ctx.parentAlive(parent);
      const pl = parent.placement;
      const power = powerDir(alive);
      const subsystem = link(CLASSES.entryPath(pl.className ?? parent.driver.name), alive);
      const uevent = attr(0o644, () => '', ctx.ueventStore({ kind: 'parent', parent }), alive);
      const types = () => this.typesDir(parent);
      const own: { [K in keyof typeof PARENT_ENTRIES]: () => Node } = {
        mdev_supported_types: types,
        power: () => power,
        subsystem: () => subsystem,
        uevent: () => uevent,
      };
      // On a host device (PCI, matrix, css) the device owns uevent, power/ and subsystem.
      const fixed = dir(pl.device ? { mdev_supported_types: types } : own, alive);
      const legacy = parent.driver.parentAttrs?.(ctx.core.abi) ?? [];
      const vendor = groups(
        legacy.map((a) => ({ path: a.path, node: attr(a.mode, a.show, a.store, alive) })),
        alive,
      );
      const children = dynDir(
        () => this.visibleChildren(parent),
        (name) => {
          const dev = parent.children.get(name);
          return dev && dev.parts.has('dir') ? this.deviceDir(dev) : undefined;
        },
        alive,
        () => parent.visibleDevices,
      );
      return union([fixed, vendor, children], alive);
    });
  }

  private *visibleChildren(parent: Parent): Iterable<string> {
    for (const [uuid, dev] of parent.children) if (dev.parts.has('dir')) yield uuid;
  }

  private typesDir(parent: Parent): DirNode {
    return this.ctx.cached(parent, 'types', () => {
      const alive = this.ctx.parentAlive(parent);
      return dynDir(
        () => parent.types.keys(),
        (name) => {
          const type = parent.types.get(name);
          return type && this.typeDir(type, alive);
        },
        alive,
      );
    });
  }

  private typeDir(type: MdevType, alive: () => boolean): DirNode {
    const ctx = this.ctx;
    return ctx.cached(type, 'dir', () => {
      const core = ctx.core;
      const devices = linkDir(
        () => type.devices.keys(),
        (name) => {
          const dev = type.devices.get(name);
          return dev && link(ctx.devicePath(dev), ctx.partAlive(dev, 'links'));
        },
        alive,
      );
      return dir(
        {
          available_instances: () => ro(() => `${core.availableInstances(type)}\n`, alive),
          create: () => wo((buf) => core.createStore(type, buf), alive),
          description: () => (type.description === undefined ? undefined : ro(`${type.description}\n`, alive)),
          device_api: () => ro(`${type.deviceApi}\n`, alive),
          devices: () => devices,
          name: () => (type.name === undefined ? undefined : ro(`${type.name}\n`, alive)),
        },
        alive,
      );
    });
  }

  // ---- devices -------------------------------------------------------------------------

  deviceDir(dev: MdevDevice): DirNode {
    const ctx = this.ctx;
    return ctx.cached(dev, 'dir', () => {
      const core = ctx.core;
      const alive = ctx.partAlive(dev, 'dir');
      const power = powerDir(alive);
      const subsystem = link(BUSES.entryPath(MDEV_BUS), alive);
      const uevent = attr(0o644, () => (dev.boundDriver ? `DRIVER=${dev.boundDriver}\n` : ''), ctx.ueventStore({ kind: 'device', dev }), alive);
      const mdevType = link([...dev.parent.placement.path, 'mdev_supported_types', dev.type.id], ctx.partAlive(dev, 'links'));
      const remove = wo(
        (buf) => core.removeStore(dev, buf),
        () => (dev.parts.has('remove') || dev.removal !== undefined) && core.devices.get(dev.uuid) === dev,
      );
      // The links of a binding, made again only when the binding names another driver or group.
      const boundAlive = ctx.partAlive(dev, 'bound');
      const driverLink = memoBy(() => dev.boundDriver, (d) => link(MDEV_DRIVERS.entryPath(d!), boundAlive));
      const groupLink = memoBy(() => dev.iommuGroup, (g) => link(IOMMU_GROUPS.entryPath(g!), boundAlive));
      // Each entry as it is while its part (DEVICE_ENTRIES) is shown. The 'dir' part's entries are the
      // directory's own: they go with it (and a device already gone still renders them for its uevent).
      const make: { [K in DeviceEntry]: () => Node | undefined } = {
        driver: driverLink,
        iommu_group: groupLink,
        mdev_type: () => mdevType,
        power: () => power,
        remove: () => remove,
        subsystem: () => subsystem,
        uevent: () => uevent,
        'vfio-dev': () => (dev.vfioIndex !== undefined ? this.vfioDevDir(dev) : undefined),
      };
      const entries: Record<string, () => Node | undefined> = {};
      for (const name of DEVICE_ENTRY_NAMES) {
        const part = DEVICE_ENTRIES[name].part;
        const node = make[name];
        entries[name] = part === 'dir' ? node : () => (dev.parts.has(part) ? node() : undefined);
      }
      const fixed = dir(entries, alive);
      const vendorAlive = ctx.partAlive(dev, 'vendor');
      const vendor = groups(
        dev.parent.driver.deviceAttrs(dev, core.abi).map((a) => ({ path: a.path, node: attr(a.mode, a.show, a.store, vendorAlive) })),
        vendorAlive,
      );
      return union([fixed, onlyWhen(() => dev.parts.has('vendor'), vendor)], alive);
    });
  }

  vfioDevDir(dev: MdevDevice): DirNode {
    // Made once per vfio index the device had (an unbind and a bind may give it another).
    return this.ctx.cached(dev, `vfio:${dev.vfioIndex}`, () =>
      vfioDevDir(dev.vfioIndex!, this.ctx.devicePath(dev), this.ctx.partAlive(dev, 'bound'), this.ctx.ueventStore({ kind: 'vfio-dev', dev })),
    );
  }

  // ---- bus/mdev ------------------------------------------------------------------------

  busDir(): DirNode {
    const ctx = this.ctx;
    return ctx.cached(this, BUSES.entry(MDEV_BUS), () => {
      const core = ctx.core;
      const find = (uuid: string) => core.devices.get(uuid);
      const devices = MDEV_BUS_DEVICES.dir(
        () => this.listedDevices(),
        (dev) => (dev.parts.has('dir') ? link(ctx.devicePath(dev), ctx.partAlive(dev, 'dir')) : undefined),
        { entryKind: 'link', find },
      );
      const drivers = MDEV_DRIVERS.dir(
        () => core.busDrivers().map((d) => d.name),
        (name) => {
          const d = core.busDrivers().find((x) => x.name === name);
          return d && this.busDriverDir(d.name, d.module);
        },
        { find: (name) => name },
      );
      const autoprobe = autoprobeAttr(() => core.autoprobe, (on) => (core.autoprobe = on));
      const probe = wo((buf) => core.probeStore(buf));
      return dir({
        devices: () => devices,
        drivers: () => drivers,
        drivers_autoprobe: () => autoprobe,
        drivers_probe: () => probe,
        uevent: () => wo(ctx.ueventStore({ kind: 'bus' })),
      });
    });
  }

  private *listedDevices(): Iterable<MdevDevice> {
    for (const dev of this.ctx.core.devices.values()) if (dev.parts.has('dir')) yield dev;
  }

  /** A loaded vendor module's driver: it stays while a parent of its is unregistered (its host device unbound). */
  private busDriverDir(name: string, module: string): DirNode {
    const ctx = this.ctx;
    return ctx.cached(this, `driver:${name}:${module}`, () => {
      const core = ctx.core;
      const alive = () => core.busDrivers().some((d) => d.name === name);
      const fixed = dir(
        {
          bind: () => wo((buf) => core.bindStore(name, buf), alive),
          module: () => link(MODULES.entryPath(module), alive),
          uevent: () => wo(ctx.ueventStore({ kind: 'driver', name }), alive),
          unbind: () => wo((buf) => core.unbindStore(name, buf), alive),
        },
        alive,
      );
      const bound = boundTo(name).dir(
        () => [...core.devices.values()].filter((d) => d.boundDriver === name && d.parts.has('dir')),
        (dev) => (dev.boundDriver === name && dev.parts.has('dir') ? link(ctx.devicePath(dev), ctx.partAlive(dev, 'bound')) : undefined),
        { alive, entryKind: 'link', find: (uuid) => core.devices.get(uuid) },
      );
      return union([fixed, bound], alive);
    });
  }

  // ---- class/mdev_bus --------------------------------------------------------------------

  /** class/mdev_bus/: a link per registered parent. */
  busClassLinks(): DirNode {
    return this.parentLinks(MDEV_BUS_CLASS, () => this.ctx.registeredParents());
  }

  /** A listing of links to parents (class/mdev_bus, a virtual parent's class/<class>). */
  parentLinks(listing: Listing<Parent>, parents: () => Parent[]): DirNode {
    return listing.dir(parents, (p) => link(p.placement.path, this.ctx.parentAlive(p)), { entryKind: 'link' });
  }

  // ---- cache invalidation --------------------------------------------------------------

  /** A parent registered or unregistered: its link in class/mdev_bus (its directory is devices/'s, in tree.ts). */
  parent(ev: Extract<CoreEvent, { kind: 'parent' }>, inv: InvalidationSet): void {
    inv.changed(MDEV_BUS_CLASS.at());
    if (!ev.registered) inv.gone(MDEV_BUS_CLASS.entry(ev.parent));
  }

  /**
   * A part of a device shown or hidden: the entries DEVICE_ENTRIES gives that part (the directory
   * itself for 'dir'), the vendor's top-level entries for 'vendor', and the part's places elsewhere.
   * A shown part takes nothing away (lookups that failed are never cached) but may add a
   * subdirectory, which changes its container's st_nlink.
   */
  part(ev: Extract<CoreEvent, { kind: 'part' }>, inv: InvalidationSet): void {
    const { dev, part, shown } = ev;
    const devPath = this.ctx.devicePath(dev);
    if (part === 'dir') inv.changed(at(...dev.parent.placement.path));
    else if (part === 'vendor' || DEVICE_ENTRIES_OF[part].some((n) => DEVICE_ENTRIES[n].kind === 'dir')) inv.changed(at(...devPath));
    if (shown) return;
    if (part === 'dir') inv.gone(at(...devPath));
    else for (const name of DEVICE_ENTRIES_OF[part]) inv.gone(at(...devPath, name));
    if (part === 'vendor') {
      const tops = new Set(dev.parent.driver.deviceAttrs(dev, this.ctx.core.abi).map((a) => a.path.split('/')[0]!));
      for (const top of tops) inv.gone(at(...devPath, top));
    }
    for (const path of DEVICE_ELSEWHERE[part](dev)) inv.gone(at(...path));
  }

  /** A vendor module loaded or unloaded: its drivers in bus/mdev/drivers, unless another loaded parent keeps them. */
  module(ev: Extract<CoreEvent, { kind: 'module' }>, inv: InvalidationSet): void {
    inv.changed(MDEV_DRIVERS.at());
    if (ev.loaded) return;
    const left = this.ctx.core.busDrivers();
    for (const d of this.ctx.core.abi.busDrivers([ev.parent.driver])) {
      if (!left.some((x) => x.name === d.name)) inv.gone(MDEV_DRIVERS.entry(d.name));
    }
  }
}
