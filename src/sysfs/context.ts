import type { MdevCore } from '../core/core';
import type { MdevDevice, Parent, Part } from '../core/mdev-objects';
import type { Kobj } from '../core/uevent';
import type { DeviceModel } from '../devices/device-model';
import type { BusesRenderer } from './buses';
import type { Invalidation } from './kernfs';
import { type Alive, type DirNode, type Node, ALWAYS, dynDir } from './nodes';

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
 * A directory that lists one entry per element of a collection (an IOMMU group, a VFIO group
 * device, a class, a module, a parent's link...), described once: where it is below the root and
 * how an element is named in it. The subsystem that owns it builds the directory from it (the
 * names listed, and each name looked up back to its element) and says what an element's coming
 * and going invalidates through it (the directory, the element's entry), so a listing cannot show
 * a name that its invalidation does not drop.
 */
export class Listing<T> {
  constructor(
    /** The directory, below the root. */
    readonly path: readonly string[],
    /** An element's entry name. */
    readonly nameOf: (x: T) => string,
    /** The element a name stands for, without a walk of the collection (none: found among the elements listed). */
    private readonly parse?: (name: string) => T | undefined,
  ) {}

  /** The directory's own name: the key its container's builder gives it. */
  get name(): string {
    return this.path[this.path.length - 1]!;
  }

  /** The directory, as an absolute path (its st_nlink changes when an entry that is a directory comes or goes). */
  at(): string {
    return at(...this.path);
  }

  /** An element's entry, below the root. */
  entryPath(x: T): string[] {
    return [...this.path, this.nameOf(x)];
  }

  /** An element's entry, as an absolute path: what goes when the element does. */
  entry(x: T): string {
    return at(...this.entryPath(x));
  }

  /**
   * The directory listing elements(), a name looked up as its element's node (undefined: no such
   * entry). find: the element a name stands for where the caller keeps them by name (a map), so a
   * lookup need not walk them; it must agree with nameOf.
   */
  dir(
    elements: () => Iterable<T>,
    node: (x: T) => Node | undefined,
    opts: { alive?: Alive; subdirs?: () => number; entryKind?: Node['kind']; find?: (name: string) => T | undefined } = {},
  ): DirNode {
    const { nameOf, parse } = this;
    const find = opts.find;
    const element = (name: string): T | undefined => {
      if (parse) return parse(name);
      if (find) return find(name);
      for (const x of elements()) if (nameOf(x) === name) return x;
      return undefined;
    };
    return dynDir(
      function* () {
        for (const x of elements()) yield nameOf(x);
      },
      (name) => {
        const x = element(name);
        return x === undefined ? undefined : node(x);
      },
      opts.alive ?? ALWAYS,
      opts.entryKind === 'link' ? () => 0 : opts.subdirs,
      opts.entryKind,
    );
  }
}

/** A listing of names (a class, a module): each element is its own entry name. */
export function named(path: readonly string[]): Listing<string> {
  return new Listing<string>(path, (x) => x);
}

/** A listing of numbers (an IOMMU group, vfioN), each named prefix + its decimal, with no other spelling (00, vfio01: no entry). */
export function numbered(path: readonly string[], prefix = ''): Listing<number> {
  const re = new RegExp(`^${prefix}(0|[1-9]\\d*)$`);
  return new Listing<number>(path, (n) => `${prefix}${n}`, (name) => {
    const m = re.exec(name);
    return m ? Number(m[1]) : undefined;
  });
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
