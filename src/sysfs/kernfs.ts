import type { Logger } from 'pino';
import { Errno, MdevError, errnoName, fail } from '../base/errno';
import type { FaultContext, FaultEngine, FaultVerdict } from '../faults/engine';
import { writeStep } from '../faults/spec';
import { type AttrNode, type DirNode, type Node, countSubdirs, relativeTarget } from './nodes';

export interface Stat {
  mode: number; // with file type bits
  size: number;
  nlink: number;
  uid: number;
  gid: number;
  mtime: Date;
  atime: Date;
  ctime: Date;
  /** How long a kernel may cache this entry and its attributes, in seconds, where not for ever (a host node's: no change is announced). */
  ttl?: number;
}

export const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
export const O_ACCMODE = 3;
export const O_WRONLY = 1;
export const O_RDWR = 2;
/** sysfs hands store() at most a page. */
const PAGE_SIZE = 4096;

/** What a change took away: names (absolute paths) whose entry is gone, paths whose stat changed. */
export interface Invalidation {
  entries: string[];
  attrs: string[];
}

/** Metadata set by chmod/chown/touch; it lives as long as the node it was set on. */
interface Override {
  alive: () => boolean;
  mode?: number;
  uid?: number;
  gid?: number;
  atime?: Date;
  mtime?: Date;
}

interface OpenFile {
  node: AttrNode;
  path: string;
  /** Content rendered by the last read at offset 0 (seq_file keeps it per open file). */
  content?: Buffer;
}

/** Who made a request, as the FUSE request's header says (a backend that does not know gives none). */
export interface Caller {
  pid: number;
  uid: number;
  gid: number;
}

/** Hears every write to the tree, from its start to its answer (the journal). */
export interface WriteObserver<T = unknown> {
  /** path: canonical (`/sys/...`); data: what store() gets. */
  begin(path: string, data: Buffer, caller: Caller | undefined): T;
  /** result: the byte count, or what the write threw; called once the write's invalidations and uevents are out. */
  end(token: T, result: number | unknown): void;
}

/** The sysfs path a real host would show for a path of this tree: `/sys/...`. */
export function canonicalPath(path: string): string {
  return path.startsWith('/') ? `/sys${path}` : `/sys/${path}`;
}

/** What the fault engine knows of a write to path. */
function writeContext(path: string): FaultContext {
  const canonical = canonicalPath(path);
  return { op: writeStep(canonical), attr: canonical.slice(canonical.lastIndexOf('/') + 1), path: canonical };
}

/** What the fault engine knows of a read of path (a `read` rule acts where show() would run). */
function readContext(path: string): FaultContext {
  const canonical = canonicalPath(path);
  return { op: 'read', attr: canonical.slice(canonical.lastIndexOf('/') + 1), path: canonical };
}

export function splitPath(path: string): string[] {
  return path.split('/').filter((c) => c !== '' && c !== '.');
}

/**
 * The VFS-facing side of the tree: POSIX operations with kernfs's answers (modes, EACCES
 * even for root, ENODEV on stale files, EPERM for mutations). Every FUSE backend calls
 * only this, so none of these rules depends on the backend.
 */
export class Kernfs {
  private readonly files = new Map<number, OpenFile>();
  private nextFh = 1;
  private readonly epoch = new Date();
  private readonly overrides = new Map<string, Override>();

  private readonly invalidationListeners: ((inv: Invalidation) => Promise<void> | void)[] = [];
  private readonly undelivered = new Set<Promise<void>>();
  private readonly writeBarriers: (() => Promise<void>)[] = [];

  constructor(
    private readonly root: DirNode,
    private readonly log: Logger,
    private readonly opts: { faults?: FaultEngine; journal?: WriteObserver } = {},
  ) {}

  /**
   * Backends that let the kernel cache lookups and attributes hear here, exactly, what to
   * drop: `entries` (absolute paths whose name is gone) and `attrs` (paths whose stat changed).
   */
  onInvalidate(listener: (inv: Invalidation) => Promise<void> | void): void {
    this.invalidationListeners.push(listener);
  }

  /**
   * Every change of the tree comes here, also one that took nothing away (a new name): a
   * backend whose kernel caches directory listings must hear of those too.
   */
  invalidate(inv: Invalidation): void {
    for (const l of this.invalidationListeners) {
      const delivered = l(inv);
      if (!delivered) continue;
      const tracked: Promise<void> = delivered.catch(() => undefined).then(() => void this.undelivered.delete(tracked));
      this.undelivered.add(tracked);
    }
  }

  /** What every write waits for, after the invalidations, before it returns (the uevents' delivery). */
  beforeWriteReturns(barrier: () => Promise<void>): void {
    this.writeBarriers.push(barrier);
  }

  /** Resolves once every invalidation announced so far has reached the kernel. */
  async settled(): Promise<void> {
    while (this.undelivered.size > 0) await Promise.all([...this.undelivered]);
  }

  resolve(path: string): Node {
    const node = this.walk(path);
    if (typeof node === 'number') fail(node);
    return node;
  }

  /** The node at path, or undefined: no error object (and stack trace) made for a missing one. */
  find(path: string): Node | undefined {
    const node = this.walk(path);
    return typeof node === 'number' ? undefined : node;
  }

  /** The node at path, or the errno its resolution fails with. */
  private walk(path: string): Node | number {
    let node: Node = this.root;
    // splitPath's components, without making its arrays: every FUSE request walks a path.
    for (let start = 0; start <= path.length; ) {
      let end = path.indexOf('/', start);
      if (end < 0) end = path.length;
      const name = path.slice(start, end);
      start = end + 1;
      if (name === '' || name === '.') continue;
      if (node.kind !== 'dir') return node.kind === 'link' ? Errno.ENOENT : Errno.ENOTDIR;
      const next: Node | undefined = node.lookup(name);
      if (!next) return Errno.ENOENT;
      node = next;
    }
    return node;
  }

  /** stat of path; `node`, if given, is what path resolves to (a backend may keep it between changes). */
  getattr(path: string, node: Node = this.resolve(path)): Stat {
    const o = this.override(path);
    const t = this.epoch;
    const mode = this.modeOf(node, o);
    const dir = node.kind === 'dir';
    return {
      uid: o?.uid ?? 0,
      gid: o?.gid ?? 0,
      mtime: o?.mtime ?? t,
      atime: o?.atime ?? t,
      ctime: t,
      mode: dir ? S_IFDIR | mode : node.kind === 'attr' ? S_IFREG | mode : S_IFLNK | 0o777,
      size: node.kind === 'attr' ? PAGE_SIZE : 0,
      nlink: dir ? 2 + countSubdirs(node) : 1,
    };
  }

  private modeOf(node: Node, o: Override | undefined): number {
    if (o?.mode !== undefined) return o.mode;
    return node.kind === 'attr' ? node.mode : node.kind === 'dir' ? 0o755 : 0o777;
  }

  private override(path: string): Override | undefined {
    const o = this.overrides.get(path);
    if (o && !o.alive()) {
      this.overrides.delete(path);
      return undefined;
    }
    return o;
  }

  /** kernfs_iop_setattr: mode, owner and times are kept per node (chmod really changes the mode). */
  setattr(path: string, change: Omit<Override, 'alive'>): void {
    const node = this.resolve(path);
    const o = this.override(path) ?? { alive: () => node.alive() };
    const defined = Object.fromEntries(Object.entries(change).filter(([, v]) => v !== undefined));
    this.overrides.set(path, { ...o, ...defined });
  }

  readdir(path: string): string[] {
    const node = this.resolve(path);
    if (node.kind !== 'dir') fail(Errno.ENOTDIR);
    return ['.', '..', ...node.names()];
  }

  readlink(path: string): string {
    const node = this.resolve(path);
    if (node.kind !== 'link') fail(Errno.EINVAL);
    return relativeTarget(splitPath(path).slice(0, -1), node.target);
  }

  /**
   * kernfs_fop_open with KERNFS_ROOT_EXTRA_OPEN_PERM_CHECK: mode bits decide, root or not. caller:
   * who opens, where the backend knows (only what the host's files show depends on it: host-kernfs.ts).
   */
  open(path: string, flags: number, node: Node = this.resolve(path), _caller?: Caller): number {
    if (node.kind === 'dir') {
      if ((flags & O_ACCMODE) !== 0) fail(Errno.EISDIR);
      return 0;
    }
    if (node.kind !== 'attr') fail(Errno.ELOOP);
    // The check looks at the current mode bits only; an op the attribute lacks fails later, EIO.
    const mode = this.modeOf(node, this.override(path));
    const acc = flags & O_ACCMODE;
    if (acc !== O_WRONLY && !(mode & 0o444)) this.refuse(Errno.EACCES, 'open for reading', path);
    if ((acc === O_WRONLY || acc === O_RDWR) && !(mode & 0o222)) this.refuse(Errno.EACCES, 'open for writing', path);
    const fh = this.nextFh++;
    this.files.set(fh, { node, path });
    return fh;
  }

  release(fh: number): void {
    this.files.delete(fh);
  }

  /**
   * A read: the content is rendered by show() at offset 0 and kept for the reads that follow (as
   * seq_file does). A read fault acts where show() runs: an errno, another text for this open file,
   * or a delay or a hang before show(). Only then is the answer a promise (a backend answers the
   * request when it settles); with no read rule, or none holding it, the read answers at once.
   */
  read(fh: number, length: number, position: number): Buffer | Promise<Buffer> {
    const f = this.handle(fh);
    if (!f.node.show) fail(Errno.EIO, 'attribute has no show');
    if (position === 0 || !f.content) {
      // The open file is looked up again after a delay or a hang: it may have gone (ENODEV) or been closed.
      if (this.watchingReads()) return this.underReadFault(f.path, (v) => this.show(this.handle(fh), v, length, position));
      f.content = Buffer.from(f.node.show(), 'latin1');
    }
    return f.content.subarray(position, position + length);
  }

  /** Whether a read fault rule is set (without one, a read is answered as without the engine). */
  protected watchingReads(): boolean {
    return this.opts.faults?.watching('read') ?? false;
  }

  /**
   * A read of path where its fault rules act (where show() runs, or a host file is read): go()
   * with the verdict (an errno throws), at once, or once a delay or a hang lets the read go on.
   * Call only when watchingReads().
   */
  protected underReadFault(path: string, go: (v: FaultVerdict | undefined) => Buffer | Promise<Buffer>): Buffer | Promise<Buffer> {
    const verdict = this.opts.faults!.check(readContext(path));
    return verdict instanceof Promise ? verdict.then(go) : go(verdict);
  }

  private show(f: OpenFile, verdict: FaultVerdict | undefined, length: number, position: number): Buffer {
    f.content = Buffer.from(verdict?.kind === 'content' ? verdict.content : f.node.show!(), 'latin1');
    return f.content.subarray(position, position + length);
  }

  /**
   * One write(2) is one store(): offset ignored, cut at a page, zero length does nothing. caller:
   * who wrote (the journal records it). A fault rule on the write acts before the store runs.
   */
  async write(fh: number, data: Buffer, caller?: Caller): Promise<number> {
    const journal = this.opts.journal;
    const f = this.files.get(fh);
    if (!f) fail(Errno.EBADF);
    if (!f.node.alive()) {
      // A write to a file whose node went (a remove that lost the race) is journaled too.
      const stale = new MdevError(Errno.ENODEV, 'stale file');
      journal?.end(journal.begin(canonicalPath(f.path), data.subarray(0, PAGE_SIZE), caller), stale);
      throw stale;
    }
    if (data.length === 0) return 0;
    const buf = Buffer.from(data.subarray(0, PAGE_SIZE));
    const token = journal?.begin(canonicalPath(f.path), buf, caller);
    let result: unknown;
    try {
      const faults = this.opts.faults;
      if (faults?.watchingWrites()) {
        const ctx = writeContext(f.path);
        if (faults.watching(ctx.op) && (await faults.check(ctx))?.kind === 'succeed') return (result = buf.length);
      }
      if (!f.node.store) fail(Errno.EIO, 'attribute has no store');
      return (result = await f.node.store(buf));
    } catch (err) {
      result = err;
      if (err instanceof MdevError) this.log.info({ path: f.path, errno: errnoName(err.errno), reason: err.message }, 'write refused');
      throw err;
    } finally {
      // What the store changed is gone from every cache before write(2) returns, and the
      // uevents it caused have been broadcast.
      try {
        await this.settled();
        for (const b of this.writeBarriers) await b();
      } finally {
        journal?.end(token, result);
      }
    }
  }

  /**
   * Reads still inside the host's kernel, each holding a thread of libuv's pool, which Node's exit
   * joins (--host-sysfs: host-kernfs.ts; the emulated tree has none). Resolves with 0 once none is,
   * or after ms with how many still are.
   */
  async readsInKernel(_ms: number): Promise<number> {
    return 0;
  }

  private handle(fh: number): OpenFile {
    const f = this.files.get(fh);
    if (!f) fail(Errno.EBADF);
    if (!f.node.alive()) fail(Errno.ENODEV, 'stale file');
    return f;
  }

  /** Opening a name that does not exist with O_CREAT: sysfs directories have no create op. */
  create(path: string): never {
    const parts = splitPath(path);
    const dirNode = this.resolve(parts.slice(0, -1).join('/'));
    if (dirNode.kind !== 'dir') fail(Errno.ENOTDIR);
    if (dirNode.lookup(parts[parts.length - 1]!)) fail(Errno.EEXIST);
    this.refuse(Errno.EACCES, 'create', path);
  }

  /** O_TRUNC and truncate(2) on an attribute are accepted and change nothing. */
  truncate(path: string): void {
    const node = this.resolve(path);
    if (node.kind === 'dir') fail(Errno.EISDIR);
  }

  /** mkdir, unlink, rmdir, rename, symlink, link, mknod: sysfs has none of these operations. */
  mutate(op: string, path: string): never {
    this.refuse(Errno.EPERM, op, path);
  }

  protected refuse(errno: number, op: string, path: string): never {
    this.log.info({ op, path, errno: errnoName(errno) }, 'refused');
    fail(errno);
  }
}
