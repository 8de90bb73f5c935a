import { Notifier } from './notifier';
import * as fs from 'node:fs';
import type { Logger } from 'pino';
import { Errno, MdevError } from '../../base/errno';
import type { Invalidation, Kernfs, Stat } from '../../sysfs/kernfs';
import type { DirNode, Node as KNode } from '../../sysfs/nodes';
import { type FuseNode, NodeTable, childPath } from './nodes';
import { type FdPoller, POLL_READ_BUFFER, pollFd } from './poll';
import * as P from './protocol';

const { ENOENT, EIO, ENODEV, ENOTDIR, ENOSYS, ECONNABORTED, EBADF } = Errno;
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

export interface SessionOptions {
  fd: number;
  kernfs: Kernfs;
  log: Logger;
  /** Outstanding reads on /dev/fuse; each pins a libuv worker thread. */
  readers: number;
  /** Largest WRITE payload the kernel may send (at most 128 KiB: no FUSE_MAX_PAGES). */
  maxWrite?: number;
  /** Write replies with writeSync from the main thread instead of the thread pool. */
}

/**
 * MDEVFS_SPIN_US: after each request the main thread keeps polling /dev/fuse (a setImmediate
 * loop: epoll with no timeout) for this long instead of sleeping, so a client's next request
 * is read without waking the thread. Off by default: it halves the round trip on a machine
 * with an idle CPU (a VM wakes a sleeping vCPU slowly) and costs the clients CPU time on a
 * busy one (docs/benchmarks.md).
 */
const SPIN_MS = Math.max(0, Math.min(Number(process.env.MDEVFS_SPIN_US ?? '0') || 0, 10_000)) / 1000;

/** Seconds the kernel may cache entries and attributes when every change is notified. */
const LONG_TIMEOUT = 3600;

interface DirHandle {
  node: FuseNode;
  names?: string[];
}


/**
 * One FUSE connection: reads requests from /dev/fuse (several reads outstanding in the
 * thread pool), answers each from Kernfs on the main thread, and writes the kernel
 * cache invalidations Kernfs announces. Every request but WRITE is answered before the
 * next is looked at; WRITE (a vendor create can take seconds) is answered when its
 * store() settles, so a slow write never holds up anything else.
 */
export class Session {
  private readonly fd: number;
  private readonly kernfs: Kernfs;
  private readonly log: Logger;
  private maxWrite: number;
  private poller: FdPoller | null = null;
  readonly nodes = new NodeTable();
  private readonly dirs = new Map<bigint, DirHandle>();
  private nextDirFh = 1n;
  private stopping = false;
  /** Set by release(): each reader leaves after the next request it reads. */
  private leaving = false;
  private running = 0;
  /** WRITEs waiting for a vendor: failed with ENODEV by stop(), as kernfs fails writes to a node going away. */
  private readonly pendingWrites = new Set<bigint>();
  private readonly readersDone: Promise<void>;
  private resolveReadersDone!: () => void;
  /** Notifications, written one batch after another by the notifier thread. */
  private notifyChain: Promise<void> = Promise.resolve();
  /** The next batch, and when it will have been written (null: none waiting to start). */
  private queued: Buffer[] = [];
  private queuedDone: Promise<void> | null = null;
  private readonly notifier: Notifier;
  /** How long the kernel may cache entries and attributes: Kernfs announces every change. */
  readonly timeout = LONG_TIMEOUT;
  private initDone = false;
  /**
   * Directory listings: the kernel caches each directory's READDIR replies (FOPEN_CACHE_DIR)
   * and keeps them across opens (FOPEN_KEEP_CACHE) while no change happened since they were
   * read. `changeGen` counts changes; `listed` holds the directories read since the last one.
   * A FuseNode also keeps the Kernfs node its path resolved to until the next change (resolved()).
   */
  private changeGen = 0;
  private readonly listed = new Set<FuseNode>();

  constructor(private readonly opts: SessionOptions) {
    this.fd = opts.fd;
    this.kernfs = opts.kernfs;
    this.log = opts.log;
    this.maxWrite = Math.min(opts.maxWrite ?? 128 * 1024, 128 * 1024);
    this.readersDone = new Promise((resolve) => (this.resolveReadersDone = resolve));
    this.notifier = new Notifier(this.fd, (err) =>
      this.log.error({ err }, 'fuse: the notifier thread ended; the kernel is no longer told what changed (its caches may go stale)'),
    );
    this.kernfs.onInvalidate((inv) => this.invalidate(inv));
  }

  /**
   * Reads requests on the main thread as epoll reports them (poll.ts), or, where Node's
   * internal pipe binding is not there, with `readers` blocking reads in the thread pool.
   */
  start(): void {
    if (process.env.MDEVFS_FUSE_POOL_READERS !== '1') {
      // libuv's read buffer is 64 KiB: WRITEs must fit (sysfs takes a page per write anyway).
      const maxWrite = Math.min(this.maxWrite, POLL_READ_BUFFER - 4096);
      this.poller = pollFd(this.fd, (req) => this.onRequest(req), (errno) => this.pollEnded(errno));
      if (this.poller) {
        this.maxWrite = maxWrite;
        this.running = 1;
        return;
      }
    }
    const n = Math.max(1, this.opts.readers);
    this.running = n;
    for (let i = 0; i < n; i++) this.readLoop(Buffer.allocUnsafe(this.maxWrite + 4096));
  }

  private pollEnded(errno: number): void {
    if (errno !== ENODEV && errno !== ECONNABORTED && !this.stopping) this.log.error({ errno }, 'fuse: read from /dev/fuse failed');
    this.readerExit();
  }

  /**
   * Closes the fd: the last reference to the connection (the kernel aborts it if the mount
   * is still held). When it is polled, libuv owns it and closes it.
   */
  closeFd(): void {
    if (this.poller) this.poller.close();
    else fs.closeSync(this.fd);
  }

  /** Resolves when every reader has stopped (ENODEV after unmount, or stop()). */
  get done(): Promise<void> {
    return this.readersDone;
  }

  /**
   * No more requests are served: from now on every request read is answered ENODEV (never
   * dropped: the caller would wait for ever), and so are the WRITEs still waiting for a
   * vendor. Readers go on reading until the connection ends or release() sends them away.
   * Resolves when the notifier thread has ended.
   */
  stop(): Promise<void> {
    this.stopping = true;
    for (const unique of this.pendingWrites) this.replyError(unique, ENODEV);
    this.pendingWrites.clear();
    return this.notifier.close();
  }

  /**
   * Makes every reader leave after the next request it reads (answered ENODEV like every
   * request after stop()). The caller makes sure there are requests to read: a lazily
   * detached mount lives on while anything holds a file in it, and none may ever come.
   * Once every reader is out of read(2), closing the fd aborts the connection in the kernel.
   */
  release(): void {
    this.stopping = true;
    this.leaving = true;
    // The polled reader is never inside read(2): it just stops.
    if (this.poller && this.running > 0) {
      this.poller.stop();
      this.readerExit();
    }
  }

  /** Whether the notifier thread may still be inside a write to /dev/fuse. */
  get notifierBusy(): boolean {
    return this.notifier.busy;
  }

  get readersRunning(): number {
    return this.running;
  }

  // ---- reading ---------------------------------------------------------------------------

  private readLoop(buf: Buffer): void {
    fs.read(this.fd, buf, 0, buf.length, null, (err, n) => {
      if (err) {
        const code = err.code;
        if (!this.leaving && (code === 'EINTR' || code === 'EAGAIN' || code === 'ENOENT')) return this.readLoop(buf);
        if (code !== 'ENODEV' && code !== 'ECONNABORTED' && !this.stopping) this.log.error({ err }, 'fuse: read from /dev/fuse failed');
        return this.readerExit();
      }
      this.onRequest(buf.subarray(0, n));
      if (this.leaving) return this.readerExit();
      this.readLoop(buf);
    });
  }

  private onRequest(req: Buffer): void {
    if (SPIN_MS > 0) {
      this.lastRequest = performance.now();
      if (!this.spinning) {
        this.spinning = true;
        setImmediate(this.spin);
      }
    }
    try {
      if (this.stopping) this.refuseWhileStopping(req);
      else this.dispatch(req);
    } catch (e) {
      this.log.error({ err: e }, 'fuse: request handling failed');
    }
  }

  /** MDEVFS_SPIN_US: when the last request came, and whether the polling loop runs. */
  private lastRequest = 0;
  private spinning = false;
  private readonly spin = (): void => {
    if (!this.stopping && performance.now() - this.lastRequest < SPIN_MS) setImmediate(this.spin);
    else this.spinning = false;
  };

  private readerExit(): void {
    this.stopping = true;
    if (--this.running === 0) this.resolveReadersDone();
  }

  /** After stop(): every request that expects an answer gets ENODEV. */
  private refuseWhileStopping(req: Buffer): void {
    if (req.length < P.IN_HEADER_SIZE) return;
    const h = P.parseInHeader(req);
    if (NO_REPLY.has(h.opcode)) return;
    this.replyError(h.unique, ENODEV);
  }

  // ---- writing ---------------------------------------------------------------------------

  private writeFailed(err: NodeJS.ErrnoException): void {
    // ENOENT: the request was interrupted or aborted; ENODEV: the connection is gone.
    if (err.code === 'ENOENT' || err.code === 'ENODEV' || this.stopping) return;
    this.log.warn({ err }, 'fuse: write to /dev/fuse failed');
  }

  private reply(unique: bigint, payload?: Buffer): void {
    this.send(P.frame(unique, 0, payload));
  }

  private replyError(unique: bigint, errno: number): void {
    this.send(P.frame(unique, -errno));
  }

  /**
   * Replies are written synchronously: the kernel takes them without blocking, and going
   * through the thread pool would let busy pool threads (the readers are there too) delay
   * every answer — under a loaded pool, starve them entirely.
   */
  private send(buf: Buffer): void {
    try {
      fs.writeSync(this.fd, buf);
    } catch (err) {
      this.writeFailed(err as NodeJS.ErrnoException);
    }
  }

  /**
   * Entry and page notifications go out in batches, one batch at a time, after every reply
   * written before them (replies are synchronous, so a LOOKUP answered just before a removal
   * cannot re-create the entry after its invalidation), and never from the main thread: the
   * kernel may block the write on a directory lock that a request waiting for us holds.
   * What one change and the changes right after it (the steps of one removal, the changes of
   * concurrent writes) announce goes as one batch: it is sent at the end of this turn of the
   * event loop, or when the batch before it is done, whichever is later. One thread round
   * trip per batch. Resolves when the batch that carries bufs has been written.
   */
  private notify(bufs: Buffer[]): Promise<void> {
    for (const b of bufs) this.queued.push(b);
    if (!this.queuedDone) {
      const before = this.notifyChain;
      this.queuedDone = new Promise<void>((resolve) => setImmediate(resolve))
        .then(() => before)
        .then(async () => {
          const batch = this.queued;
          this.queued = [];
          this.queuedDone = null;
          if (this.stopping || batch.length === 0) return;
          for (const error of await this.notifier.write(batch)) this.notifyFailed(error);
        });
      this.notifyChain = this.queuedDone;
    }
    return this.queuedDone;
  }

  /** ENOENT: the kernel had nothing cached under that name; anything else is worth a word. */
  private notifyFailed(error: string | null | undefined): void {
    if (error && error !== 'ENOENT' && error !== 'ENODEV' && error !== 'ENOTCONN' && !this.stopping) this.log.warn({ error }, 'fuse: notification failed');
  }

  /**
   * Attributes only (FUSE_NOTIFY_INVAL_INODE with off < 0) are written at once from the
   * main thread: the kernel takes no lock there that a request waiting for us could hold
   * (it bumps the attribute version and marks them stale), so the write cannot block.
   */
  private notifyAttrs(node: FuseNode): void {
    this.notifyNow(P.invalInode(node.id));
  }

  private notifyNow(buf: Buffer): void {
    try {
      fs.writeSync(this.fd, buf);
    } catch (err) {
      this.notifyFailed((err as NodeJS.ErrnoException).code);
    }
  }

  /**
   * Any change may have changed any listing (the tree does not say which): every directory
   * whose listing the kernel may have cached since the last change loses it, and no open
   * keeps a listing read before now (OPENDIR). A directory's pages are locked only while the
   * kernel copies entries in or out, never while it waits for us, so this is written at once
   * from the main thread. It matters for a directory already open (a rewinddir, or a first
   * read after the change); a new open would drop the listing anyway.
   */
  private dropListings(): void {
    this.changeGen++;
    if (this.listed.size === 0) return;
    if (this.initDone && !this.stopping) for (const dir of this.listed) this.notifyNow(P.invalInode(dir.id, true));
    this.listed.clear();
  }

  /**
   * Resolves when the kernel has taken every notification this change needs. Entries and
   * cached link targets go to the notifier thread, all of this change in one batch.
   */
  private invalidate(inv: Invalidation): Promise<void> {
    this.dropListings();
    if (!this.initDone || this.stopping || (inv.entries.length === 0 && inv.attrs.length === 0)) return Promise.resolve();
    const batch: Buffer[] = [];
    for (const path of inv.entries) {
      const node = this.nodes.atPath(path);
      if (!node || !node.parent) continue;
      // A superset is allowed: only a name that really went away loses its node id.
      if (!this.exists(path)) {
        // A removed link's cached target goes with it (its inode may live on, held open).
        // Dropped before the entry: once the entry is gone the kernel may have evicted the
        // inode already, and the notification would only come back ENOENT.
        for (const link of this.nodes.detach(node)) this.dropTarget(link, batch);
      } else if (node.target !== undefined) this.dropTarget(node, batch);
      const parent = this.nodes.atPath(node.parent.path);
      if (parent) batch.push(P.invalEntry(parent.id, node.name));
    }
    for (const path of inv.attrs) {
      const node = this.nodes.atPath(path);
      if (node) node.target === undefined ? this.notifyAttrs(node) : this.dropTarget(node, batch);
    }
    if (batch.length > 0) this.notify(batch);
    return this.notifyChain;
  }

  /**
   * Drops a link's attributes and the target the kernel cached (FUSE_CACHE_SYMLINKS): its
   * page cache, which a READLINK waiting for us may hold locked, so only from the thread.
   */
  private dropTarget(node: FuseNode, batch: Buffer[]): void {
    node.target = undefined;
    batch.push(P.invalInode(node.id, true));
  }

  /**
   * What node.path resolves to in Kernfs, walked again only after a change: every change of
   * the tree comes through invalidate() (the kernel's own caches rely on that), so between
   * two changes a path resolves to the same node. Throws as Kernfs.resolve does.
   */
  private resolved(node: FuseNode): KNode {
    if (node.resolved && node.resolvedGen === this.changeGen) return node.resolved;
    const kn = this.kernfs.resolve(node.path);
    node.resolved = kn;
    node.resolvedGen = this.changeGen;
    return kn;
  }

  private exists(path: string): boolean {
    return this.kernfs.find(path) !== undefined;
  }

  // ---- requests ----------------------------------------------------------------------------

  private dispatch(req: Buffer): void {
    if (req.length < P.IN_HEADER_SIZE) return;
    const h = P.parseInHeader(req);
    const body = req.subarray(P.IN_HEADER_SIZE, h.len - h.totalExtlen * 8);
    try {
      this.handle(h, body);
    } catch (err) {
      this.replyError(h.unique, this.errnoOf(err, h));
    }
  }

  private errnoOf(err: unknown, h: P.InHeader): number {
    if (err instanceof MdevError) return err.errno;
    this.log.error({ err, opcode: h.opcode, nodeid: String(h.nodeid) }, 'internal error');
    return EIO;
  }

  private node(h: P.InHeader): FuseNode {
    const node = this.nodes.get(h.nodeid);
    if (!node) throw new MdevError(ENOENT, 'unknown node id');
    return node;
  }

  /** A node that still stands for its path (a removed one: ENOENT). */
  private live(h: P.InHeader): FuseNode {
    const node = this.node(h);
    if (node.detached) throw new MdevError(ENOENT, 'removed');
    return node;
  }

  private attrOf(node: FuseNode, s: Stat): P.Attr {
    const a: P.Attr = {
      ino: node.id,
      size: s.size,
      mode: s.mode,
      nlink: s.nlink,
      uid: s.uid,
      gid: s.gid,
      atimeMs: s.atime.getTime(),
      mtimeMs: s.mtime.getTime(),
      ctimeMs: s.ctime.getTime(),
    };
    node.lastAttr = a;
    return a;
  }

  /** Current attributes, or the last ones reported if the node's name is gone (stale fd). */
  private currentAttr(node: FuseNode): P.Attr {
    if (!node.detached) {
      try {
        return this.attrOf(node, this.kernfs.getattr(node.path, this.resolved(node)));
      } catch (err) {
        if (!(err instanceof MdevError) || !node.lastAttr) throw err;
      }
    }
    if (!node.lastAttr) throw new MdevError(ENOENT, 'removed');
    return node.lastAttr;
  }

  private handle(h: P.InHeader, body: Buffer): void {
    const u = h.unique;
    switch (h.opcode) {
      case P.Op.INIT:
        return this.init(u, body);
      case P.Op.DESTROY:
        this.reply(u);
        void this.stop();
        return;
      case P.Op.INTERRUPT:
        return; // let the request finish; its answer is the answer
      case P.Op.FORGET:
        this.nodes.forget(h.nodeid, Number(body.readBigUInt64LE(0)));
        return;
      case P.Op.BATCH_FORGET: {
        const count = body.readUInt32LE(0);
        for (let i = 0; i < count; i++) {
          const off = 8 + i * 16;
          if (off + 16 > body.length) break;
          this.nodes.forget(body.readBigUInt64LE(off), Number(body.readBigUInt64LE(off + 8)));
        }
        return;
      }
      case P.Op.LOOKUP: {
        const parent = this.live(h);
        const name = P.cString(body);
        // ENOENT is not cached by the kernel: a name that appears later is found at once.
        const path = childPath(parent.path, name);
        const s = this.kernfs.getattr(path);
        // The kernel keeps a link's target with its inode: a link that now points elsewhere
        // is a new inode (as a re-created kernfs link is a new kernfs node).
        const known = this.nodes.atPath(path);
        if (known?.target !== undefined && (s.mode & S_IFMT) === S_IFLNK && this.kernfs.readlink(path) !== known.target) {
          const batch: Buffer[] = [];
          for (const link of this.nodes.detach(known)) this.dropTarget(link, batch);
          this.notify(batch);
        }
        const node = this.nodes.lookedUp(parent, name);
        return this.send(P.entryReply(u, node.id, this.timeout, this.timeout, this.attrOf(node, s)));
      }
      case P.Op.GETATTR:
        // With FUSE_GETATTR_FH the kernel names the open file; its node is the same inode.
        return this.send(P.attrReply(u, this.timeout, this.currentAttr(this.node(h))));
      case P.Op.SETATTR:
        return this.setattr(u, this.live(h), body);
      case P.Op.READLINK: {
        // The kernel caches the target (FUSE_CACHE_SYMLINKS) until dropTarget() drops it.
        const node = this.live(h);
        node.target = this.kernfs.readlink(node.path);
        return this.reply(u, Buffer.from(node.target));
      }
      case P.Op.OPEN: {
        const node = this.node(h);
        if (node.detached) throw new MdevError(ENODEV, 'stale');
        const fh = this.kernfs.open(node.path, body.readUInt32LE(0), this.resolved(node));
        return this.send(P.openReply(u, fh, P.FOPEN_DIRECT_IO | P.FOPEN_PARALLEL_DIRECT_WRITES | P.FOPEN_NOFLUSH));
      }
      case P.Op.READ: {
        const fh = P.readU64(body, 0);
        const offset = P.readU64(body, 8);
        const size = body.readUInt32LE(16);
        return this.reply(u, this.kernfs.read(fh, size, offset));
      }
      case P.Op.WRITE:
        return this.write_(h, body);
      case P.Op.RELEASE:
        this.kernfs.release(P.readU64(body, 0));
        return this.reply(u);
      case P.Op.FLUSH:
      case P.Op.FSYNC:
        return this.reply(u);
      case P.Op.OPENDIR: {
        const node = this.live(h);
        if (this.resolved(node).kind !== 'dir') throw new MdevError(ENOTDIR);
        const fh = this.nextDirFh++;
        this.dirs.set(fh, { node });
        // The listing the kernel cached stays only if nothing changed since it was read.
        const keep = node.listedGen === this.changeGen ? P.FOPEN_KEEP_CACHE : 0;
        return this.send(P.openReply(u, Number(fh), P.FOPEN_CACHE_DIR | keep));
      }
      case P.Op.READDIR:
        return this.readdir(u, body);
      case P.Op.RELEASEDIR:
        this.dirs.delete(body.readBigUInt64LE(0));
        return this.reply(u);
      case P.Op.STATFS:
        return this.reply(u, P.statfsOut());
      case P.Op.CREATE: {
        const parent = this.live(h);
        this.kernfs.create(childPath(parent.path, P.cString(body, 16)));
        return; // create() always throws: sysfs directories have no create op
      }
      case P.Op.MKDIR:
        return this.refuse(h, 'mkdir', P.cString(body, 8));
      case P.Op.MKNOD:
        return this.refuse(h, 'mknod', P.cString(body, 16));
      case P.Op.UNLINK:
        return this.refuse(h, 'unlink', P.cString(body));
      case P.Op.RMDIR:
        return this.refuse(h, 'rmdir', P.cString(body));
      case P.Op.RENAME:
        return this.refuse(h, 'rename', P.cString(body, 8));
      case P.Op.RENAME2:
        return this.refuse(h, 'rename', P.cString(body, 16));
      case P.Op.SYMLINK:
        return this.refuse(h, 'symlink', P.cString(body));
      case P.Op.LINK:
        return this.refuse(h, 'link', P.cString(body, 8));
      default:
        // ACCESS, *XATTR, STATX, POLL, LSEEK, FALLOCATE, IOCTL, locks, ...: the kernel
        // remembers ENOSYS and stops asking (or falls back to its generic code).
        return this.replyError(u, ENOSYS);
    }
  }

  private init(u: bigint, body: Buffer): void {
    const init = P.parseInitIn(body);
    if (init.major !== P.FUSE_KERNEL_VERSION) {
      // A newer major: answer with ours and let the kernel retry or give up.
      this.log.error({ major: init.major, minor: init.minor }, 'fuse: unsupported kernel protocol');
      if (init.major < P.FUSE_KERNEL_VERSION) return this.replyError(u, EIO);
    }
    const minor = Math.min(init.minor, P.FUSE_KERNEL_MINOR_VERSION);
    // Never FUSE_ATOMIC_O_TRUNC. Symlink targets are cached: every change drops them (invalidate()).
    const want = P.FUSE_ASYNC_READ | P.FUSE_BIG_WRITES | P.FUSE_PARALLEL_DIROPS | P.FUSE_CACHE_SYMLINKS;
    this.initDone = true;
    this.log.debug({ kernel: `${init.major}.${init.minor}`, minor, flags: init.flags & want }, 'fuse: init');
    this.reply(
      u,
      P.initOut({
        minor,
        maxReadahead: init.maxReadahead,
        flags: init.flags & want,
        maxBackground: 64,
        congestionThreshold: 48,
        maxWrite: this.maxWrite,
      }),
    );
  }

  private setattr(u: bigint, node: FuseNode, body: Buffer): void {
    const valid = body.readUInt32LE(0);
    if (valid & P.FATTR_SIZE) this.kernfs.truncate(node.path);
    const change: { mode?: number; uid?: number; gid?: number; atime?: Date; mtime?: Date } = {};
    if (valid & P.FATTR_MODE) change.mode = body.readUInt32LE(68) & 0o7777;
    if (valid & P.FATTR_UID) change.uid = body.readUInt32LE(76);
    if (valid & P.FATTR_GID) change.gid = body.readUInt32LE(80);
    // As libfuse2 (the other backend): times are set only when both come (utimensat), not
    // for the mtime-only change the VFS adds to O_TRUNC/truncate.
    if ((valid & P.FATTR_ATIME) && (valid & P.FATTR_MTIME)) {
      const time = (now: number, secOff: number, nsecOff: number) =>
        valid & now ? new Date() : new Date(Number(body.readBigUInt64LE(secOff)) * 1000 + Math.floor(body.readUInt32LE(nsecOff) / 1e6));
      change.atime = time(P.FATTR_ATIME_NOW, 32, 56);
      change.mtime = time(P.FATTR_MTIME_NOW, 40, 60);
    }
    if (Object.keys(change).length > 0) this.kernfs.setattr(node.path, change);
    this.send(P.attrReply(u, this.timeout, this.currentAttr(node)));
  }

  private write_(h: P.InHeader, body: Buffer): void {
    const fh = P.readU64(body, 0);
    const size = body.readUInt32LE(16);
    // The read buffer is reused as soon as we return: copy the data before going async.
    const data = Buffer.from(body.subarray(P.WRITE_IN_SIZE, P.WRITE_IN_SIZE + size));
    this.pendingWrites.add(h.unique);
    // Answered once: by the vendor's result, or by stop() if that comes first.
    const settled = () => this.pendingWrites.delete(h.unique);
    this.kernfs.write(fh, data).then(
      (n) => settled() && this.reply(h.unique, P.writeOut(n)),
      (err) => settled() && this.replyError(h.unique, this.errnoOf(err, h)),
    );
  }

  private readdir(u: bigint, body: Buffer): void {
    const d = this.dirs.get(body.readBigUInt64LE(0));
    if (!d) throw new MdevError(EBADF);
    const offset = P.readU64(body, 8);
    const size = body.readUInt32LE(16);
    // The listing is taken when reading starts (offset 0) so that cookies stay stable.
    if (offset === 0 || !d.names) {
      // What the kernel caches from here on is this listing, current as of now.
      d.node.listedGen = this.changeGen;
      this.listed.add(d.node);
      try {
        d.names = d.node.detached ? ['.', '..'] : this.kernfs.readdir(d.node.path);
      } catch (err) {
        if (!(err instanceof MdevError)) throw err;
        d.names = ['.', '..'];
      }
    }
    // The directory is resolved once; each entry is one lookup in it (not a walk from the root).
    let dir: DirNode | undefined;
    try {
      const n = d.node.detached ? undefined : this.resolved(d.node);
      if (n?.kind === 'dir') dir = n;
    } catch (err) {
      if (!(err instanceof MdevError)) throw err;
    }
    // Records go straight into the reply, after its header.
    const out = Buffer.allocUnsafe(P.OUT_HEADER_SIZE + size);
    const base = P.OUT_HEADER_SIZE;
    let used = 0;
    // Where every entry is of one kind (bus/mdev/devices, a type's devices/), none is looked up:
    // an entry gone since the listing was taken is then listed, as a race with readdir may.
    const uniform = dir?.entryKind;
    const seed = nameInoSeed(d.node.path);
    for (let i = offset; i < d.names.length; i++) {
      const name = d.names[i]!;
      const recSize = P.direntSize(Buffer.byteLength(name));
      if (used + recSize > size) break;
      let type = P.DT_DIR;
      let ino = Number(d.node.id);
      if (name === '..') ino = Number(d.node.parent?.id ?? d.node.id);
      else if (name !== '.') {
        const kind = uniform ?? dir?.lookup(name)?.kind;
        if (!kind) continue; // gone since the listing was taken
        type = kind === 'dir' ? P.DT_DIR : kind === 'link' ? P.DT_LNK : P.DT_REG;
        const known = d.node.children.get(name);
        ino = known && !known.detached ? Number(known.id) : nameIno(seed, name);
      }
      used += P.writeDirent(out, base + used, ino, i + 1, type, name);
    }
    this.send(P.frameInPlace(out, u, used));
  }

  private refuse(h: P.InHeader, op: string, name: string): void {
    const parent = this.node(h);
    this.kernfs.mutate(op, childPath(parent.path, name));
  }
}

/** Requests the kernel expects no answer to. */
const NO_REPLY = new Set<number>([P.Op.FORGET, P.Op.BATCH_FORGET, P.Op.INTERRUPT]);

/**
 * A stable, non-zero d_ino for a name never looked up: FNV-1a of the path, 32 bits, with bit
 * 40 set (no clash with node ids, which count up from 2). Only readdir's d_ino shows it.
 */
function nameIno(seed: number, name: string): number {
  return (fnv1a(seed, name) >>> 0) + 2 ** 40;
}

/** The FNV-1a state after `${dirPath}/`: nameIno goes on from it for each name in the directory. */
function nameInoSeed(dirPath: string): number {
  return fnv1a(fnv1a(0x811c9dc5, dirPath), '/');
}

function fnv1a(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h;
}
