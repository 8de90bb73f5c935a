import type { MdevCore } from '../core/core';
import type { MdevDevice, Parent, Part } from '../core/mdev-objects';
import type { Kobj } from '../core/uevent';
import type { DeviceModel } from '../devices/device-model';
import type { BusesRenderer } from './buses';
import type { Invalidation } from './kernfs';
import type { Alive, DirNode } from './nodes';

/** An absolute path from its components: at('bus', 'mdev') is /bus/mdev. */
export const at = (...parts: readonly string[]): string => '/' + parts.join('/');

/**
 * What a change took away, collected by the subsystems it touched: `gone` for an entry a kernel
 * caching lookups must drop (dropping a directory drops its subtree), `changed` for a directory
 * whose st_nlink may have changed. A superset is harmless: an entry dropped needlessly is simply
 * looked up again.
 */
export class InvalidationSet implements Invalidation {
  readonly entries: string[] = [];
  readonly attrs: string[] = [];

  gone(...paths: string[]): void {
    this.entries.push(...paths);
  }

  changed(...paths: string[]): void {
    this.attrs.push(...paths);
  }
}

/**
 * What every subsystem of the tree shares: the core and the driver core it renders, one node
 * object per (object, kind), and the liveness and uevent stores of the core's objects.
 */
export class TreeContext {
  /**
   * One node object per core object: lookups still consult the core every time (so nothing
   * goes stale), but a path walk no longer rebuilds the closures of every directory on it.
   */
  private readonly nodes = new WeakMap<object, Map<string, DirNode>>();

  constructor(
    readonly core: MdevCore,
    readonly devices: DeviceModel,
    /** The driver core's devices and buses that parents sit on (PCI functions, matrix, css). */
    readonly buses: BusesRenderer,
  ) {}

  cached(owner: object, kind: string, make: () => DirNode): DirNode {
    let m = this.nodes.get(owner);
    if (!m) this.nodes.set(owner, (m = new Map()));
    let node = m.get(kind);
    if (!node) m.set(kind, (node = make()));
    return node;
  }

  parentAlive(parent: Parent): Alive {
    return () => parent.registered && this.core.parents.get(parent.name) === parent;
  }

  partAlive(dev: MdevDevice, part: Part): Alive {
    return () => dev.parts.has(part) && this.core.devices.get(dev.uuid) === dev;
  }

  devicePath(dev: MdevDevice): string[] {
    return [...dev.parent.placement.path, dev.uuid];
  }

  /** A `uevent` file's store: kobject_synth_uevent in the core. */
  ueventStore(k: Kobj): (buf: Buffer) => number {
    return (buf) => this.core.synthUevent(k, buf);
  }

  registeredParents(): Parent[] {
    return [...this.core.parents.values()].filter((p) => p.registered);
  }
}
