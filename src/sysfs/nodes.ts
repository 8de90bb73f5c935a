import { Errno, fail } from '../base/errno';
import type { AttrOps } from '../devices/device-model';

/**
 * kernfs-like nodes. Directories are computed from the core on every lookup, so the tree
 * can never disagree with it; an open file keeps its node, whose alive() tells whether
 * the kernfs node it stands for still exists (else ENODEV, as a deactivated kernfs node).
 */
export interface DirNode {
  readonly kind: 'dir';
  lookup(name: string): Node | undefined;
  names(): Iterable<string>;
  alive(): boolean;
  /** How many entries are directories (for st_nlink), where known without looking each up. */
  subdirs?(): number;
  /** The kind of every entry, where they are all of one kind (readdir then looks none up). */
  readonly entryKind?: Node['kind'];
  /** --host-sysfs: a directory of the host's own sysfs, at this path there (src/sysfs/host.ts). */
  readonly host?: string;
  /** --host-sysfs: an emulated directory merged with the host's: its listing changes without notice. */
  readonly merged?: boolean;
}

/** An attribute file: a driver's attribute ops (AttrOps), as a node that knows whether it still exists. */
export interface AttrNode extends AttrOps {
  readonly kind: 'attr';
  alive(): boolean;
  /** --host-sysfs: a file of the host's own sysfs, at this path there (read through its own descriptor). */
  readonly host?: string;
}

export interface LinkNode {
  readonly kind: 'link';
  /** Target path components below the sysfs root. */
  readonly target: readonly string[];
  alive(): boolean;
  /** --host-sysfs: a link of the host's own sysfs, at this path there (readlink answers the host's text). */
  readonly host?: string;
}

export type Node = DirNode | AttrNode | LinkNode;

export type Alive = () => boolean;
export const ALWAYS: Alive = () => true;

export function attr(
  mode: number,
  show?: () => string,
  store?: (buf: Buffer) => Promise<number> | number,
  alive: Alive = ALWAYS,
): AttrNode {
  return { kind: 'attr', mode, show, store, alive };
}

export function ro(text: string | (() => string), alive: Alive = ALWAYS): AttrNode {
  return attr(0o444, typeof text === 'string' ? () => text : text, undefined, alive);
}

export function wo(store: (buf: Buffer) => Promise<number> | number, alive: Alive = ALWAYS): AttrNode {
  return attr(0o200, undefined, store, alive);
}

export function link(target: readonly string[] | string, alive: Alive = ALWAYS): LinkNode {
  return { kind: 'link', target: typeof target === 'string' ? target.split('/') : target, alive };
}

/** A directory whose entries are a fixed table, each computed when looked up. */
export function dir(entries: Record<string, () => Node | undefined>, alive: Alive = ALWAYS): DirNode {
  return {
    kind: 'dir',
    alive,
    lookup: (name) => (Object.hasOwn(entries, name) ? entries[name]!() : undefined),
    *names() {
      for (const [name, make] of Object.entries(entries)) if (make()) yield name;
    },
    subdirs: () => {
      let n = 0;
      for (const name in entries) if (Object.hasOwn(entries, name) && entries[name]!()?.kind === 'dir') n++;
      return n;
    },
  };
}

/** A directory computed by two functions: one lists, one looks up by name. */
export function dynDir(
  names: () => Iterable<string>,
  lookup: (name: string) => Node | undefined,
  alive: Alive = ALWAYS,
  subdirs?: () => number,
  entryKind?: Node['kind'],
): DirNode {
  return { kind: 'dir', alive, names, lookup, subdirs, entryKind };
}

/** A directory of links only, computed by two functions (st_nlink counts no entry). */
export function linkDir(names: () => Iterable<string>, lookup: (name: string) => LinkNode | undefined, alive: Alive = ALWAYS): DirNode {
  return dynDir(names, lookup, alive, () => 0, 'link');
}

/** Counts the subdirectories of a directory, cheaply where it says how. */
export function countSubdirs(node: DirNode): number {
  if (node.subdirs) return node.subdirs();
  let n = 0;
  for (const name of node.names()) if (node.lookup(name)?.kind === 'dir') n++;
  return n;
}

/** Several directories shown as one (a fixed part plus a dynamic part). */
export function union(parts: DirNode[], alive: Alive = ALWAYS): DirNode {
  return {
    kind: 'dir',
    alive,
    lookup(name) {
      for (const p of parts) {
        const n = p.lookup(name);
        if (n) return n;
      }
      return undefined;
    },
    *names() {
      for (const p of parts) yield* p.names();
    },
    subdirs: () => parts.reduce((n, p) => n + countSubdirs(p), 0),
  };
}

/** A directory's entries, shown only while cond() holds. */
export function onlyWhen(cond: () => boolean, inner: DirNode): DirNode {
  return {
    kind: 'dir',
    alive: inner.alive,
    lookup: (name) => (cond() ? inner.lookup(name) : undefined),
    names: () => (cond() ? inner.names() : []),
    subdirs: () => (cond() ? countSubdirs(inner) : 0),
  };
}

/** Attributes given by relative paths ("vendor/x") as a tree of group directories. */
export function groups(attrs: readonly { path: string; node: AttrNode }[], alive: Alive = ALWAYS): DirNode {
  const files = new Map<string, AttrNode>();
  const sub = new Map<string, { path: string; node: AttrNode }[]>();
  for (const a of attrs) {
    const slash = a.path.indexOf('/');
    if (slash < 0) files.set(a.path, a.node);
    else {
      const head = a.path.slice(0, slash);
      if (!sub.has(head)) sub.set(head, []);
      sub.get(head)!.push({ path: a.path.slice(slash + 1), node: a.node });
    }
  }
  // A group's directory is made once, when first looked up (it is a function of its attributes).
  const subDirs = new Map<string, DirNode>();
  const subDir = (name: string): DirNode | undefined => {
    let d = subDirs.get(name);
    if (!d) {
      const inner = sub.get(name);
      if (!inner) return undefined;
      subDirs.set(name, (d = groups(inner, alive)));
    }
    return d;
  };
  return dynDir(
    () => [...sub.keys(), ...files.keys()],
    (name) => files.get(name) ?? subDir(name),
    alive,
    () => {
      let n = 0;
      for (const name of sub.keys()) if (!files.has(name)) n++; // a file of the same name hides a group
      return n;
    },
  );
}

/**
 * The relative target kernfs_get_target_path writes: "../" until an ancestor of the target's
 * parent is reached, then down. A link to an ancestor (vfio-dev/vfioN/device) thus climbs
 * above it and names it: ../../../<uuid>.
 */
export function relativeTarget(linkDir: readonly string[], target: readonly string[]): string {
  let common = 0;
  while (common < linkDir.length && common < target.length - 1 && linkDir[common] === target[common]) common++;
  return '../'.repeat(linkDir.length - common) + target.slice(common).join('/');
}

/** Stores that accept one of a set of words (sysfs_streq) and do nothing else. */
export function acceptWords(words: readonly string[]): (buf: Buffer) => number {
  return (buf) => {
    const text = buf.toString('latin1').replace(/\n$/, '');
    if (!words.includes(text)) fail(Errno.EINVAL, `expected one of ${words.join(', ')}`);
    return buf.length;
  };
}
