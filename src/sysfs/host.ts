import { type Stats, existsSync, lstatSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { Errno, MdevError } from '../base/errno';
import type { DeviceModel } from '../devices/device-model';
import type { MdevCore } from '../core/core';
import { ALWAYS, type AttrNode, type DirNode, type LinkNode, type Node } from './nodes';

/**
 * --host-sysfs: the host's own sysfs around the emulation. The tree Kernfs serves becomes an
 * overlay of the emulated tree on the host's /sys: every directory present in both is merged (the
 * emulated entry wins on a name clash), every other name is the host's own node, read from the
 * host's file system at each lookup (nothing here is kept: the host changes without telling us).
 * The host's nodes carry `host`, their path there: Kernfs (host-kernfs.ts) takes their stat from
 * lstat, reads their content at read time and refuses every change; merged directories carry
 * `merged` (their listing changes without notice). The emulated tree itself is not touched: its
 * uevents, invalidations and kobjects never see a host node. Mount points inside the host's /sys
 * are not crossed (the daemon shows the empty directory sysfs has there; `mdevfs exec` mounts the
 * host's submounts again on top).
 */

/** A directory the host has at this path, not crossing into another file system. */
function hostDirStat(path: string, dev: number): Stats | undefined {
  const st = hostLstat(path);
  return st?.isDirectory() && st.dev === dev ? st : undefined;
}

/** lstat of a host path: undefined if nothing is there, the errno as an MdevError if it cannot be looked at. */
function hostLstat(path: string): Stats | undefined {
  try {
    return lstatSync(path, { throwIfNoEntry: false });
  } catch (err) {
    throw hostErrno(err);
  }
}

/** The errno a failed host file system call gives (EIO for anything without one we know). */
export function hostErrno(err: unknown): MdevError {
  const code = (err as NodeJS.ErrnoException).code;
  const errno = code !== undefined && Object.hasOwn(Errno, code) ? Errno[code as keyof typeof Errno] : Errno.EIO;
  return new MdevError(errno, `host sysfs: ${(err as Error).message}`);
}

/**
 * The target of a host link as components below the host's sysfs root (what LinkNode.target
 * holds; a target outside it keeps its `..` components, and readlink answers the host's text).
 */
function targetBelow(root: string, linkPath: string, text: string): string[] {
  const abs = posix.resolve(dirname(linkPath), text);
  return posix.relative(root, abs).split('/').filter(Boolean);
}

export class HostSysfs {
  /** The device number of the host's sysfs: a directory on another one is a mount point, not crossed. */
  private readonly dev: number;

  constructor(readonly root: string) {
    const st = lstatSync(root);
    if (!st.isDirectory()) throw new Error(`${root} is not a directory`);
    this.dev = st.dev;
  }

  /** The overlay of `emulated` (the tree's root) on the host's sysfs root. */
  overlay(emulated: DirNode): DirNode {
    return this.merged(emulated, this.root);
  }

  /** An emulated directory merged with the host's at hostPath: the emulated entry wins a name. */
  private merged(emulated: DirNode, hostPath: string): DirNode {
    const self = this;
    return {
      kind: 'dir',
      merged: true,
      alive: emulated.alive,
      lookup(name) {
        const mine = emulated.lookup(name);
        if (!mine) return self.node(join(hostPath, name));
        if (mine.kind !== 'dir') return mine;
        const below = join(hostPath, name);
        return hostDirStat(below, self.dev) ? self.merged(mine, below) : mine;
      },
      *names() {
        const seen = new Set<string>();
        for (const name of emulated.names()) {
          seen.add(name);
          yield name;
        }
        for (const name of self.list(hostPath)) if (!seen.has(name)) yield name;
      },
      // st_nlink without looking up every host entry: the host's own count (kernfs: 2 + its
      // subdirectories), plus the emulated subdirectories the host has no directory for.
      subdirs() {
        const host = hostDirStat(hostPath, self.dev);
        let n = host ? host.nlink - 2 : 0;
        for (const name of emulated.names()) {
          if (emulated.lookup(name)?.kind === 'dir' && !(host && hostDirStat(join(hostPath, name), self.dev))) n++;
        }
        return n;
      },
    };
  }

  /** The names of a host directory (none for a mount point or a directory gone). */
  private list(path: string): string[] {
    if (!hostDirStat(path, this.dev)) return [];
    try {
      return readdirSync(path);
    } catch {
      return [];
    }
  }

  /** The host's node at path, as lstat finds it now (undefined: none there). */
  node(path: string): Node | undefined {
    const st = hostLstat(path);
    if (!st) return undefined;
    if (st.isDirectory()) return this.dir(path, st.dev !== this.dev);
    if (st.isSymbolicLink()) {
      let text: string;
      try {
        text = readlinkSync(path);
      } catch {
        return undefined;
      }
      const link: LinkNode = { kind: 'link', host: path, target: targetBelow(this.root, path, text), alive: ALWAYS };
      return link;
    }
    const attr: AttrNode = {
      kind: 'attr',
      host: path,
      mode: st.mode & 0o7777,
      alive: ALWAYS,
      // What the tree itself may ask of it (Kernfs reads the host file through a descriptor of its own).
      show: () => {
        try {
          return readFileSync(path).toString('latin1');
        } catch (err) {
          throw hostErrno(err);
        }
      },
    };
    return attr;
  }

  /** A host directory; a mount point (another file system there) is the empty directory sysfs has under it. */
  private dir(path: string, mountPoint: boolean): DirNode {
    return {
      kind: 'dir',
      host: path,
      alive: ALWAYS,
      lookup: (name) => (mountPoint ? undefined : this.node(join(path, name))),
      names: () => (mountPoint ? [] : this.list(path)),
    };
  }

  /** Whether a host directory is a mount point (or on another file system than the host's sysfs). */
  isMountPoint(st: Stats): boolean {
    return st.dev !== this.dev;
  }

  // ---- what the emulation must not take from the host ------------------------------------------

  /** Whether the host has a device of this name on this bus (a PCI address, a subchannel, an AP card...). */
  hasBusDevice(bus: string, name: string): boolean {
    return existsSync(join(this.root, 'bus', bus, 'devices', name));
  }

  /**
   * The emulated devices and parents the host already has: each bus device of the emulation whose
   * name the host's bus lists, and each parent placed at a path the host has (a class device).
   */
  clashes(core: MdevCore, devices: DeviceModel): string[] {
    const out: string[] = [];
    for (const dev of devices.devices.values()) {
      if (!dev.bus || !this.hasBusDevice(dev.bus.name, dev.name)) continue;
      const parent = [...core.parents.values()].find((p) => p.placement.device === dev);
      out.push(`${dev.name} (${dev.bus.name}${parent && parent.name !== dev.name ? `, mdev parent ${parent.name}` : ''})`);
    }
    for (const p of core.parents.values()) {
      if (p.placement.device?.bus) continue;
      const path = p.placement.path.join('/');
      if (existsSync(join(this.root, path))) out.push(`${join(this.root, path)} (mdev parent ${p.name})`);
    }
    return out;
  }

  /**
   * The numbers the host's kernel has given (its IOMMU groups, vfio-dev/vfioN, VFIO group minors):
   * the emulation's numberings skip them, so no emulated group or VFIO device shares a name with
   * the host's in a merged directory (kernel/iommu_groups, class/vfio-dev, devices/virtual/vfio).
   */
  takenNumbers(): { iommuGroups: number[]; vfioDevices: number[]; vfioGroupMinors: number[] } {
    const numbers = (dir: string, prefix = '') =>
      this.list(join(this.root, dir)).flatMap((n) => (n.startsWith(prefix) && /^\d+$/.test(n.slice(prefix.length)) ? [Number(n.slice(prefix.length))] : []));
    const minors = this.list(join(this.root, 'class', 'vfio')).flatMap((n) => {
      try {
        const m = /^\d+:(\d+)$/.exec(readFileSync(join(this.root, 'class', 'vfio', n, 'dev'), 'latin1').trim());
        return m ? [Number(m[1])] : [];
      } catch {
        return [];
      }
    });
    return { iommuGroups: numbers('kernel/iommu_groups'), vfioDevices: numbers('class/vfio-dev', 'vfio'), vfioGroupMinors: minors };
  }
}

