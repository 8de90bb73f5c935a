import type { CoreEvent, MdevCore } from '../core/core';
import type { Kobj } from '../core/uevent';
import type { Invalidation } from './kernfs';
import { Errno, fail } from '../base/errno';
import type { MdevDevice, MdevType, Parent, Part } from '../core/mdev-objects';
import { type DeviceEvent, DeviceModel, type HostDevice } from '../devices/device-model';
import { BusesRenderer } from './buses';
import { autoprobeAttr, powerDir, vfioDevDir } from './common';
import {
  type Alive,
  type DirNode,
  type Node,
  attr,
  dir,
  dynDir,
  linkDir,
  groups,
  link,
  onlyWhen,
  ro,
  union,
  wo,
} from './nodes';

/**
 * The VFIO group character devices' major (alloc_chrdev_region, so the kernel picks it): 253 on
 * the real 6.1 kernel the fixtures were recorded on (test/events/uevents.txt).
 */
const VFIO_GROUP_MAJOR = 253;

/** make(key()), made again only when key() changes. */
function memoBy<K, T>(key: () => K, make: (k: K) => T): () => T {
  let made: { k: K; v: T } | undefined;
  return () => {
    const k = key();
    if (!made || made.k !== k) made = { k, v: make(k) };
    return made.v;
  };
}

/** What a uevent about a kobject carries besides ACTION, the caller's variables and SEQNUM. */
export interface KobjectInfo {
  devpath: string;
  subsystem: string;
  /** The `uevent` file's KEY=VALUE lines (dev_uevent), in order. */
  vars: string[];
}

/**
 * Renders the mdev core as /sys. Nothing here decides policy: every store goes to the core,
 * every listing is read from it.
 */
export class SysfsTree {
  readonly root: DirNode;

  /** The driver core's devices and buses that parents sit on (PCI functions, matrix, css). */
  private readonly buses: BusesRenderer;

  constructor(
    private readonly core: MdevCore,
    private readonly devices: DeviceModel = new DeviceModel(),
  ) {
    // A device's directory also holds an mdev parent's entries and the devices below it.
    this.buses = new BusesRenderer(devices, (dev) => {
      const parent = this.registeredParents().find((p) => p.placement.device === dev);
      const below = this.prefixDir(dev.path);
      return parent ? union([this.parentDir(parent), below]) : below;
    }, (k) => this.ueventStore(k));
    // Directories that are functions of nothing but the core are made once (their lookups
    // still read the core every time).
    const bus = union([
      dir({ mdev: () => this.busMdev() }),
      dynDir(
        () => this.buses.busNames(),
        (name) => this.buses.busDir(name),
      ),
    ]);
    const kernel = dir({ iommu_groups: () => this.iommuGroupsDir() });
    this.root = dir({
      bus: () => bus,
      class: () => this.classDir(),
      devices: () => this.prefixDir(['devices']),
      kernel: () => kernel,
      module: () => this.moduleDir(),
    });
  }

  // ---- cache invalidation --------------------------------------------------------------

  /**
   * Paths whose directory entry is gone after ev (a kernel caching lookups must drop them;
   * dropping a directory drops its subtree) and paths whose attributes (st_nlink) changed.
   * New names need nothing: lookups that failed are never cached.
   */
  invalidations(ev: CoreEvent): Invalidation {
    const at = (...parts: string[]) => '/' + parts.join('/');
    const entries: string[] = [];
    const attrs: string[] = [];
    if (ev.kind === 'part') {
      const { dev, part, shown } = ev;
      const devPath = at(...this.devicePath(dev));
      const parentPath = at(...dev.parent.placement.path);
      if (part === 'dir') {
        attrs.push(parentPath);
        if (!shown) entries.push(devPath, at('bus', 'mdev', 'devices', dev.uuid));
      } else if (part === 'remove') {
        if (!shown) entries.push(`${devPath}/remove`);
      } else if (part === 'links') {
        if (!shown) entries.push(`${devPath}/mdev_type`, `${parentPath}/mdev_supported_types/${dev.type.id}/devices/${dev.uuid}`);
      } else if (part === 'vendor') {
        attrs.push(devPath);
        if (!shown) {
          const tops = new Set(dev.parent.driver.deviceAttrs(dev, this.core.abi).map((a) => a.path.split('/')[0]!));
          for (const top of tops) entries.push(`${devPath}/${top}`);
        }
      } else if (part === 'bound') {
        attrs.push(devPath, at('kernel', 'iommu_groups'), at('class', 'vfio-dev'));
        if (dev.iommuGroup !== undefined) this.vfioGroupInvalidations(dev.iommuGroup, shown, entries, attrs);
        if (!shown) {
          entries.push(`${devPath}/driver`, `${devPath}/iommu_group`, `${devPath}/vfio-dev`);
          if (dev.boundDriver) entries.push(at('bus', 'mdev', 'drivers', dev.boundDriver, dev.uuid));
          if (dev.iommuGroup !== undefined) entries.push(at('kernel', 'iommu_groups', String(dev.iommuGroup)));
          if (dev.vfioIndex !== undefined) entries.push(at('class', 'vfio-dev', `vfio${dev.vfioIndex}`));
        }
      }
    } else if (ev.kind === 'parent') {
      const { parent } = ev;
      const pl = parent.placement;
      // Every directory on the way to the parent may have gained or lost a child, and so may the parent's own
      // (a host device that stays: mdev_supported_types).
      for (let i = 1; i <= pl.path.length; i++) attrs.push(at(...pl.path.slice(0, i)));
      attrs.push(at('class', 'mdev_bus'), at('bus'));
      if (pl.className) attrs.push(at('class', pl.className));
      if (!ev.registered) {
        // A superset is harmless: an entry dropped needlessly is simply looked up again.
        for (let i = 2; i <= pl.path.length; i++) entries.push(at(...pl.path.slice(0, i)));
        entries.push(at('class', 'mdev_bus', parent.name));
        if (pl.className) entries.push(at('class', pl.className, parent.name));
      }
    } else if (ev.kind === 'module') {
      // A vendor module loaded or unloaded: its driver, module and class, unless another loaded parent keeps them.
      attrs.push(at('class'), at('bus', 'mdev', 'drivers'), at('module'));
      if (!ev.loaded) {
        const cls = ev.parent.placement.className;
        if (cls && !this.core.vendorClasses().has(cls)) entries.push(at('class', cls));
        const left = this.core.busDrivers();
        for (const d of this.core.abi.busDrivers([ev.parent.driver])) {
          if (!left.some((x) => x.name === d.name)) entries.push(at('bus', 'mdev', 'drivers', d.name));
          if (!left.some((x) => x.module === d.module)) entries.push(at('module', d.module));
        }
      }
    }
    return { entries, attrs };
  }

  /** What a change of the host devices (a bind, an unbind) took away. */
  deviceInvalidations(ev: DeviceEvent): Invalidation {
    const inv = this.buses.invalidations(ev);
    const group = ev.kind === 'vfio' && ev.dev.vfioGroupMinor !== undefined ? ev.dev.pci?.iommuGroup : undefined;
    if (ev.kind === 'vfio' && group !== undefined) this.vfioGroupInvalidations(group, ev.registered, inv.entries, inv.attrs);
    return inv;
  }

  /**
   * A VFIO group device came or went: devices/virtual/vfio/<group> and class/vfio/<group>. The glue
   * directory devices/virtual/vfio comes with the first group device and goes with the last: only
   * then does devices/virtual's link count change.
   */
  private vfioGroupInvalidations(group: number, shown: boolean, entries: string[], attrs: string[]): void {
    attrs.push('/devices/virtual/vfio');
    const groups = this.vfioGroupCount();
    if (shown ? groups === 1 : groups === 0) attrs.push('/devices/virtual', '/devices');
    if (shown) return;
    entries.push(`/class/vfio/${group}`, `/devices/virtual/vfio/${group}`);
    if (groups === 0) entries.push('/devices/virtual/vfio');
    if (groups === 0 && !this.prefixDir(['devices']).lookup('virtual')) entries.push('/devices/virtual');
  }

  // ---- node identity -------------------------------------------------------------------

  /**
   * One node object per core object: lookups still consult the core every time (so nothing
   * goes stale), but a path walk no longer rebuilds the closures of every directory on it.
   */
  private readonly nodes = new WeakMap<object, Map<string, DirNode>>();

  private cached(owner: object, kind: string, make: () => DirNode): DirNode {
    let m = this.nodes.get(owner);
    if (!m) this.nodes.set(owner, (m = new Map()));
    let node = m.get(kind);
    if (!node) m.set(kind, (node = make()));
    return node;
  }

  // ---- liveness ------------------------------------------------------------------------

  private parentAlive(parent: Parent): Alive {
    return () => parent.registered && this.core.parents.get(parent.name) === parent;
  }

  private partAlive(dev: MdevDevice, part: Part): Alive {
    return () => dev.parts.has(part) && this.core.devices.get(dev.uuid) === dev;
  }

  private devicePath(dev: MdevDevice): string[] {
    return [...dev.parent.placement.path, dev.uuid];
  }

  // ---- uevents -------------------------------------------------------------------------

  /** A `uevent` file's store: kobject_synth_uevent in the core. */
  private ueventStore(k: Kobj): (buf: Buffer) => number {
    return (buf) => this.core.synthUevent(k, buf);
  }

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
    const at = (...parts: string[]) => '/' + parts.join('/');
    let path: string[];
    let node: DirNode | undefined;
    switch (k.kind) {
      case 'bus':
        return { devpath: at('bus', k.name ?? 'mdev'), subsystem: 'bus', vars: [] };
      case 'driver':
        return { devpath: at('bus', k.bus ?? 'mdev', 'drivers', k.name), subsystem: 'drivers', vars: [] };
      case 'host':
        path = [...k.dev.path];
        node = this.dirAt(path);
        break;
      case 'module':
        return { devpath: at('module', k.name), subsystem: 'module', vars: [] };
      case 'class':
        return { devpath: at('class', k.name), subsystem: 'class', vars: [] };
      case 'device':
        path = this.devicePath(k.dev);
        node = this.deviceDir(k.dev);
        break;
      case 'vfio-group':
        path = ['devices', 'virtual', 'vfio', String(k.dev.iommuGroup)];
        node = this.vfioGroupDir(k.dev);
        break;
      case 'host-vfio-group':
        path = ['devices', 'virtual', 'vfio', String(k.dev.pci?.iommuGroup)];
        node = this.hostVfioGroupDir(k.dev);
        break;
      case 'vfio-dev':
      case 'host-vfio-dev': {
        const name = `vfio${k.dev.vfioIndex}`;
        path = [...(k.kind === 'vfio-dev' ? this.devicePath(k.dev) : k.dev.path), 'vfio-dev', name];
        const d = (k.kind === 'vfio-dev' ? this.vfioDevDir(k.dev) : this.buses.deviceDir(k.dev).lookup('vfio-dev'));
        const vfio = d?.kind === 'dir' ? d.lookup(name) : undefined;
        node = vfio?.kind === 'dir' ? vfio : undefined;
        break;
      }
      case 'parent': {
        // The directory as shown (on a host device the device owns uevent and subsystem); a
        // class device that is gone is still rendered by its own node.
        path = [...k.parent.placement.path];
        const shown = this.dirAt(path);
        node = shown?.lookup('uevent') ? shown : this.parentDir(k.parent);
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

  private registeredParents(): Parent[] {
    return [...this.core.parents.values()].filter((p) => p.registered);
  }

  // ---- /devices ------------------------------------------------------------------------

  /** An intermediate directory on the way to parents (devices/, devices/virtual/, ...). */
  private prefixDir(prefix: readonly string[]): DirNode {
    return this.cached(this, `prefix:${prefix.join('/')}`, () => {
      const below = () =>
        this.registeredParents().filter(
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
      // devices/virtual/vfio: the VFIO group devices' glue directory, while there is one (and
      // devices/virtual with it, on a host whose parents are all bus devices).
      const glueName = key === 'devices/virtual' ? 'vfio' : key === 'devices' ? 'virtual' : undefined;
      const glue = glueName ? () => (this.vfioGroupCount() > 0 ? [glueName] : []) : () => [];
      return dynDir(
        () => new Set([...below().map((p) => p.placement.path[prefix.length]!), ...this.buses.namesBelow(prefix), ...glue()]),
        (name) => {
          if (name === glueName && glue().length > 0) return name === 'vfio' ? this.vfioGroupsDir() : deeperDir(name);
          // A host device renders itself (and any mdev parent on it); a virtual parent is all mdev.
          const device = this.buses.deviceAt(`${key}/${name}`);
          if (device) return this.buses.deviceDir(device);
          // The first registered parent at prefix/name, else whether one is further below.
          let exact: Parent | undefined;
          let deeper = false;
          for (const p of this.core.parents.values()) {
            const path = p.placement.path;
            if (!p.registered || path[prefix.length] !== name || !inPrefix(path)) continue;
            if (path.length === prefix.length + 1) {
              exact = p;
              break;
            }
            deeper = true;
          }
          if (exact) return this.parentDir(exact);
          if (!deeper && this.buses.namesBelow([...prefix, name]).length === 0) return undefined;
          return deeperDir(name);
        },
      );
    });
  }

  private parentDir(parent: Parent): DirNode {
    return this.cached(parent, 'dir', () => {
      const alive = this.parentAlive(parent);
      const pl = parent.placement;
      const power = powerDir(alive);
      const subsystem = link(['class', pl.className ?? parent.driver.name], alive);
      const uevent = attr(0o644, () => '', this.ueventStore({ kind: 'parent', parent }), alive);
      // On a host device (PCI, matrix, css) the device owns uevent, power/ and subsystem.
      const fixed = dir(
        pl.device
          ? { mdev_supported_types: () => this.typesDir(parent) }
          : {
              mdev_supported_types: () => this.typesDir(parent),
              power: () => power,
              subsystem: () => subsystem,
              uevent: () => uevent,
            },
        alive,
      );
      const legacy = parent.driver.parentAttrs?.(this.core.abi) ?? [];
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
    return this.cached(parent, 'types', () => {
      const alive = this.parentAlive(parent);
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

  private typeDir(type: MdevType, alive: Alive): DirNode {
    return this.cached(type, 'dir', () => {
      const core = this.core;
      const devices = linkDir(
        () => type.devices.keys(),
        (name) => {
          const dev = type.devices.get(name);
          return dev && link(this.devicePath(dev), this.partAlive(dev, 'links'));
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

  private deviceDir(dev: MdevDevice): DirNode {
    return this.cached(dev, 'dir', () => {
      const core = this.core;
      const has = (p: Part) => dev.parts.has(p);
      const alive = this.partAlive(dev, 'dir');
      const power = powerDir(alive);
      const subsystem = link(['bus', 'mdev'], alive);
      const uevent = attr(0o644, () => (dev.boundDriver ? `DRIVER=${dev.boundDriver}\n` : ''), this.ueventStore({ kind: 'device', dev }), alive);
      const mdevType = link([...dev.parent.placement.path, 'mdev_supported_types', dev.type.id], this.partAlive(dev, 'links'));
      const remove = wo(
        (buf) => core.removeStore(dev, buf),
        () => (dev.parts.has('remove') || dev.removal !== undefined) && core.devices.get(dev.uuid) === dev,
      );
      // The links of a binding, made again only when the binding names another driver or group.
      const boundAlive = this.partAlive(dev, 'bound');
      const driverLink = memoBy(() => dev.boundDriver, (d) => link(['bus', 'mdev', 'drivers', d!], boundAlive));
      const groupLink = memoBy(() => dev.iommuGroup, (g) => link(['kernel', 'iommu_groups', String(g)], boundAlive));
      const fixed = dir(
        {
          driver: () => (has('bound') ? driverLink() : undefined),
          iommu_group: () => (has('bound') ? groupLink() : undefined),
          mdev_type: () => (has('links') ? mdevType : undefined),
          power: () => power,
          remove: () => (has('remove') ? remove : undefined),
          subsystem: () => subsystem,
          uevent: () => uevent,
          'vfio-dev': () => (has('bound') && dev.vfioIndex !== undefined ? this.vfioDevDir(dev) : undefined),
        },
        alive,
      );
      const vendorAlive = this.partAlive(dev, 'vendor');
      const vendor = groups(
        dev.parent.driver.deviceAttrs(dev, core.abi).map((a) => ({ path: a.path, node: attr(a.mode, a.show, a.store, vendorAlive) })),
        vendorAlive,
      );
      return union([fixed, onlyWhen(() => has('vendor'), vendor)], alive);
    });
  }

  private vfioDevDir(dev: MdevDevice): DirNode {
    // Made once per vfio index the device had (an unbind and a bind may give it another).
    return this.cached(dev, `vfio:${dev.vfioIndex}`, () => this.makeVfioDevDir(dev));
  }

  private makeVfioDevDir(dev: MdevDevice): DirNode {
    return vfioDevDir(dev.vfioIndex!, this.devicePath(dev), this.partAlive(dev, 'bound'), this.ueventStore({ kind: 'vfio-dev', dev }));
  }

  // ---- /bus/mdev -----------------------------------------------------------------------

  private busMdev(): DirNode {
    return this.cached(this, 'bus/mdev', () => {
      const core = this.core;
      const devices = linkDir(
        () => this.listedDevices(),
        (name) => {
          const dev = core.devices.get(name);
          return dev && dev.parts.has('dir') ? link(this.devicePath(dev), this.partAlive(dev, 'dir')) : undefined;
        },
      );
      const drivers = dynDir(
        () => this.busDrivers().map((d) => d.name),
        (name) => {
          const d = this.busDrivers().find((x) => x.name === name);
          return d && this.busDriverDir(d.name, d.module);
        },
      );
      const autoprobe = autoprobeAttr(() => core.autoprobe, (on) => (core.autoprobe = on));
      const probe = wo((buf) => core.probeStore(buf));
      return dir({
        devices: () => devices,
        drivers: () => drivers,
        drivers_autoprobe: () => autoprobe,
        drivers_probe: () => probe,
        uevent: () => wo(this.ueventStore({ kind: 'bus' })),
      });
    });
  }

  private *listedDevices(): Iterable<string> {
    for (const [uuid, dev] of this.core.devices) if (dev.parts.has('dir')) yield uuid;
  }

  /** The loaded vendor modules' drivers: they stay while a parent of theirs is unregistered (its host device unbound). */
  private busDrivers(): { name: string; module: string }[] {
    return this.core.busDrivers();
  }

  private busDriverDir(name: string, module: string): DirNode {
    return this.cached(this, `driver:${name}:${module}`, () => {
      const core = this.core;
      const alive = () => this.busDrivers().some((d) => d.name === name);
      const fixed = dir(
        {
          bind: () => wo((buf) => core.bindStore(name, buf), alive),
          module: () => link(['module', module], alive),
          uevent: () => wo(this.ueventStore({ kind: 'driver', name }), alive),
          unbind: () => wo((buf) => core.unbindStore(name, buf), alive),
        },
        alive,
      );
      const bound = linkDir(
        () => [...core.devices.values()].filter((d) => d.boundDriver === name && d.parts.has('dir')).map((d) => d.uuid),
        (uuid) => {
          const dev = core.devices.get(uuid);
          return dev && dev.boundDriver === name && dev.parts.has('dir') ? link(this.devicePath(dev), this.partAlive(dev, 'bound')) : undefined;
        },
        alive,
      );
      return union([fixed, bound], alive);
    });
  }

  /** A directory of links named after parents (class/mdev_bus, class/<class>, bus/pci/devices, ...). */
  private parentLinks(parents: () => Parent[]): DirNode {
    return linkDir(
      () => parents().map((p) => p.name),
      (name) => {
        const p = parents().find((x) => x.name === name);
        return p && link(p.placement.path, this.parentAlive(p));
      },
    );
  }

  // ---- /class, /kernel/iommu_groups, /module --------------------------------------------

  private classDir(): DirNode {
    return this.cached(this, 'class', () => {
      // A class is its module's (class_create in module init): there while the module is loaded.
      const classes = () => this.core.vendorClasses();
      return union([
        dir({
          mdev_bus: () => this.parentLinks(() => this.registeredParents()),
          // The vfio core's class (vfio_init): a link per VFIO group device.
          vfio: () => this.vfioGroupLinks(),
          'vfio-dev': () =>
            this.core.abi.vfioDev
              ? dynDir(
                  () => [...this.core.vfioDevices.keys(), ...this.devices.vfioDevices.keys()].map((n) => `vfio${n}`),
                  (name) => {
                    const m = /^vfio(0|[1-9]\d*)$/.exec(name); // no numeric aliases: vfio00 is ENOENT
                    const dev = m ? this.core.vfioDevices.get(Number(m[1])) : undefined;
                    if (dev) return link([...this.devicePath(dev), 'vfio-dev', name], this.partAlive(dev, 'bound'));
                    // A host device its driver registered with VFIO (vfio-pci, NVIDIA's vendor-specific VFIO VF).
                    const host = m ? this.devices.vfioDevices.get(Number(m[1])) : undefined;
                    return host && this.buses.vfioClassLink(host, Number(m![1]));
                  },
                  undefined,
                  () => 0,
                )
              : undefined,
        }),
        dynDir(
          () => classes().keys(),
          (name) => (classes().has(name) ? this.parentLinks(() => classes().get(name) ?? []) : undefined),
        ),
      ]);
    });
  }

  // ---- VFIO groups: /dev/vfio/<group> as sysfs shows it ---------------------------------

  /*
   * The group devices are the bound mdevs' groups, core.iommuGroups (show('bound') gives a device
   * its IOMMU group and its group minor together, and hide('bound') takes both), and the groups of
   * the host devices a VFIO driver has (vfio-pci, a vendor-specific VFIO VF), devices.vfioGroups.
   * Counted without walking them (a create at 10,000 devices must cost what one at 0 does).
   */
  private vfioGroupCount(): number {
    return this.core.iommuGroups.size + this.devices.vfioGroups.size;
  }

  private vfioGroupNames(): string[] {
    return [...this.core.iommuGroups.keys(), ...this.devices.vfioGroups.keys()].map(String);
  }

  /** The group device of a group number (00 is ENOENT): its directory and whether it is still there. */
  private vfioGroup(name: string): { dir: DirNode; alive: Alive } | undefined {
    if (!/^(0|[1-9]\d*)$/.test(name)) return undefined;
    const n = Number(name);
    const dev = this.core.iommuGroups.get(n);
    if (dev) return { dir: this.vfioGroupDir(dev), alive: this.partAlive(dev, 'bound') };
    const host = this.devices.vfioGroups.get(n);
    if (host) return { dir: this.hostVfioGroupDir(host), alive: () => this.devices.vfioGroups.get(n) === host };
    return undefined;
  }

  /** devices/virtual/vfio/: one directory per group device. */
  private vfioGroupsDir(): DirNode {
    return this.cached(this, 'devices/virtual/vfio', () => dynDir(() => this.vfioGroupNames(), (name) => this.vfioGroup(name)?.dir));
  }

  /** class/vfio/: N -> ../../devices/virtual/vfio/N. */
  private vfioGroupLinks(): DirNode {
    return this.cached(this, 'class/vfio', () =>
      linkDir(
        () => this.vfioGroupNames(),
        (name) => {
          const g = this.vfioGroup(name);
          return g && link(['devices', 'virtual', 'vfio', name], g.alive);
        },
      ),
    );
  }

  private vfioGroupDir(dev: MdevDevice): DirNode {
    return this.cached(dev, `vfio-group:${dev.iommuGroup}:${dev.vfioGroupMinor}`, () =>
      this.groupDeviceDir(dev.iommuGroup!, dev.vfioGroupMinor!, this.partAlive(dev, 'bound'), { kind: 'vfio-group', dev }),
    );
  }

  private hostVfioGroupDir(dev: HostDevice): DirNode {
    const group = dev.pci!.iommuGroup!;
    const minor = dev.vfioGroupMinor!;
    return this.cached(dev, `vfio-group:${group}:${minor}`, () =>
      this.groupDeviceDir(group, minor, () => this.devices.vfioGroups.get(group) === dev && dev.vfioGroupMinor === minor, { kind: 'host-vfio-group', dev }),
    );
  }

  /**
   * A VFIO group's character device (vfio_create_group: device_create in class "vfio", named by
   * the IOMMU group, devt VFIO_GROUP_MAJOR:minor): dev, power/, subsystem, uevent with MAJOR,
   * MINOR and DEVNAME, as the real 6.1 kernel's uevents show (test/events/uevents.txt).
   */
  private groupDeviceDir(group: number, minor: number, alive: Alive, kobj: Kobj): DirNode {
    const devt = `${VFIO_GROUP_MAJOR}:${minor}`;
    const vars = `MAJOR=${VFIO_GROUP_MAJOR}\nMINOR=${minor}\nDEVNAME=vfio/${group}\n`;
    const power = powerDir(alive);
    const subsystem = link(['class', 'vfio'], alive);
    const uevent = attr(0o644, () => vars, this.ueventStore(kobj), alive);
    return dir({ dev: () => ro(`${devt}\n`, alive), power: () => power, subsystem: () => subsystem, uevent: () => uevent }, alive);
  }

  private iommuGroupsDir(): DirNode {
    return this.cached(this, 'kernel/iommu_groups', () => {
      const core = this.core;
      return dynDir(
        () => [...this.buses.iommuGroups().keys(), ...core.iommuGroups.keys()].map(String),
        (name) => {
          const n = /^(0|[1-9]\d*)$/.test(name) ? Number(name) : undefined; // 00 is ENOENT
          const host = n === undefined ? undefined : this.buses.iommuGroups().get(n);
          if (host) return this.buses.iommuGroupDir(host);
          const dev = n === undefined ? undefined : core.iommuGroups.get(n);
          if (!dev) return undefined;
          const alive = () => core.iommuGroups.get(Number(name)) === dev;
          return dir(
            {
              devices: () => dir({ [dev.uuid]: () => link(this.devicePath(dev), alive) }, alive),
              name: () => ro('vfio-noiommu\n', alive),
              reserved_regions: () => ro('', alive),
              type: () => attr(0o644, () => 'unknown\n', () => fail(Errno.EINVAL, 'no default domain'), alive),
            },
            alive,
          );
        },
        undefined,
        () => core.iommuGroups.size + this.buses.iommuGroups().size,
      );
    });
  }

  private moduleDir(): DirNode {
    return this.cached(this, 'module', () => {
      const drivers = () => this.busDrivers();
      // Modules of mdev drivers and of the host devices' drivers (pci:i915, css:vfio_ccw, ...).
      const hostDrivers = (name: string) => this.buses.modules().get(name) ?? new Map<string, string[]>();
      const modules = () => new Set([...drivers().map((d) => d.module), ...this.buses.modules().keys()]);
      return dynDir(
        () => modules(),
        (name) => {
          if (!modules().has(name)) return undefined;
          const alive = () => modules().has(name);
          const mine = () => drivers().filter((d) => d.module === name);
          return dir(
            {
              drivers: () =>
                dynDir(
                  () => [...mine().map((d) => `mdev:${d.name}`), ...hostDrivers(name).keys()],
                  (entry) => {
                    const d = mine().find((x) => `mdev:${x.name}` === entry);
                    const host = hostDrivers(name).get(entry);
                    return d ? link(['bus', 'mdev', 'drivers', d.name], alive) : host && link(host, alive);
                  },
                  alive,
                ),
              holders: () => dir({}, alive),
              initstate: () => ro('live\n', alive),
              refcnt: () => ro('0\n', alive),
              uevent: () => wo(this.ueventStore({ kind: 'module', name }), alive),
            },
            alive,
          );
        },
      );
    });
  }
}
