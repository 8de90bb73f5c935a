import { close, closeSync, lstatSync, openSync, read, readSync, readlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { Errno, MdevError, fail } from '../base/errno';
import type { FaultEngine, FaultVerdict } from '../faults/engine';
import { type HostSysfs, hostErrno } from './host';
import { type Caller, Kernfs, O_ACCMODE, O_RDWR, O_WRONLY, S_IFDIR, type Stat, type WriteObserver, splitPath } from './kernfs';
import type { DirNode, Node } from './nodes';

/**
 * How long a kernel may cache a host node's entry and attributes: nothing tells us when the host
 * changes, so not at all (each lookup and stat asks the host again).
 */
export const HOST_TTL = 0;

/** What sysfs gives a reader without CAP_SYS_ADMIN of a PCI function's config (pci_read_config). */
const UNPRIVILEGED_CONFIG = 64;
const UNPRIVILEGED_CONFIG_CARDBUS = 128;
const PCI_HEADER_TYPE = 0x0e;
const PCI_HEADER_TYPE_CARDBUS = 2;

/**
 * How many host reads may be in libuv's thread pool at once. A host file's read can block in the
 * host's kernel (wakeup_count while wakeup events are pending, a slow PCI VPD, hwmon over I2C), each
 * holding a pool thread meanwhile: the pool (UV_THREADPOOL_SIZE, 4 by default) keeps two threads for
 * the rest of the daemon's work in it (the direct backend's /dev/fuse readers where it cannot poll,
 * file writes of the journal...). Further host reads wait here for one of these to return.
 */
export const HOST_READS_IN_POOL = Math.max(1, (Number(process.env.UV_THREADPOOL_SIZE) || 4) - 2);

interface HostFile {
  fd: number;
  /** The tree's path (what a read fault rule matches). */
  path: string;
  /** Bytes the reader may have (a PCI config read by an unprivileged reader), if limited. */
  limit?: number;
  /** Whether a read has been answered (the first read, whatever its offset, is where read faults act, as for show()). */
  shown: boolean;
  /** A read fault's `content`, for the reads of this open file that follow at other offsets. */
  content?: Buffer;
  /** Reads of it in the host's kernel now: its descriptor is closed after the last (RELEASE may come first). */
  reading: number;
  released: boolean;
}

/**
 * Kernfs over the --host-sysfs overlay (host.ts). Emulated nodes behave exactly as in Kernfs; the
 * host's nodes show what the host's sysfs has now (lstat, readlink, a read through a descriptor
 * opened for each open file) and refuse every change, root or not, without touching the host:
 * EACCES where the mode has no write bit (as sysfs answers root), EROFS otherwise; each refusal is
 * logged. Used only with --host-sysfs: without it the daemon serves a plain Kernfs.
 */
export class HostKernfs extends Kernfs {
  private readonly hostFiles = new Map<number, HostFile>();
  private readonly epochStat = new Date();
  /** Host reads in the pool now, and those waiting for a place there (HOST_READS_IN_POOL). */
  private inPool = 0;
  private readonly waiting: (() => void)[] = [];
  /** Called when the last host read in the pool returns. */
  private readonly idle = new Set<() => void>();

  constructor(
    emulatedRoot: DirNode,
    private readonly hostfs: HostSysfs,
    log: Logger,
    opts: { faults?: FaultEngine; journal?: WriteObserver } = {},
    /** Whether this daemon reads the host with privileges (root in the initial user namespace, as far as it knows). */
    private readonly privileged = process.geteuid?.() === 0,
  ) {
    super(hostfs.overlay(emulatedRoot), log, opts);
  }

  override getattr(path: string, node: Node = this.resolve(path)): Stat {
    if (node.host === undefined) {
      const st = super.getattr(path, node);
      if (node.kind === 'dir' && node.merged) st.ttl = HOST_TTL;
      return st;
    }
    let st;
    try {
      st = lstatSync(node.host);
    } catch (err) {
      throw hostErrno(err);
    }
    if (node.kind === 'dir' && this.hostfs.isMountPoint(st)) {
      // Another file system mounted there (cgroup, debugfs, ...): not crossed; the empty directory sysfs has under it.
      const t = this.epochStat;
      return { mode: S_IFDIR | 0o755, size: 0, nlink: 2, uid: 0, gid: 0, mtime: t, atime: t, ctime: t, ttl: HOST_TTL };
    }
    return { mode: st.mode, size: st.size, nlink: st.nlink, uid: st.uid, gid: st.gid, mtime: st.mtime, atime: st.atime, ctime: st.ctime, ttl: HOST_TTL };
  }

  override readlink(path: string): string {
    const node = this.resolve(path);
    if (node.kind !== 'link' || node.host === undefined) return super.readlink(path);
    try {
      return readlinkSync(node.host);
    } catch (err) {
      throw hostErrno(err);
    }
  }

  override open(path: string, flags: number, node: Node = this.resolve(path), caller?: Caller): number {
    if (node.kind !== 'attr' || node.host === undefined) return super.open(path, flags, node, caller);
    const acc = flags & O_ACCMODE;
    if (acc === O_WRONLY || acc === O_RDWR) this.refuseHost(node.mode & 0o222 ? Errno.EROFS : Errno.EACCES, 'open for writing', path);
    const fh = super.open(path, flags, node, caller);
    try {
      const fd = openSync(node.host, 'r');
      this.hostFiles.set(fh, { fd, path, limit: this.readLimit(node.host, fd, caller), shown: false, reading: 0, released: false });
    } catch (err) {
      super.release(fh);
      throw hostErrno(err);
    }
    return fh;
  }

  /**
   * A host file is read asynchronously, in libuv's thread pool (fs.read on its descriptor): a read
   * that blocks in the host's kernel holds only its own request. Read fault rules act as on an
   * emulated attribute, on the first read of the open file and each read at offset 0: an errno, a
   * `content` kept for the reads at later offsets, a delay or a hang before the host is read.
   */
  override read(fh: number, length: number, position: number): Buffer | Promise<Buffer> {
    const f = this.hostFiles.get(fh);
    if (!f) return super.read(fh, length, position);
    if (position !== 0 && f.shown) return this.readOn(f, undefined, length, position);
    f.shown = true;
    f.content = undefined;
    if (!this.watchingReads()) return this.readOn(f, undefined, length, position);
    // Looked up again after a delay or a hang: the file may have been closed meanwhile.
    return this.underReadFault(f.path, (v) => this.readOn(this.hostFile(fh), v, length, position));
  }

  private readOn(f: HostFile, verdict: FaultVerdict | undefined, length: number, position: number): Buffer | Promise<Buffer> {
    if (verdict?.kind === 'content') f.content = Buffer.from(verdict.content, 'latin1');
    if (f.content) return f.content.subarray(position, position + length);
    const len = f.limit === undefined ? length : Math.max(0, Math.min(length, f.limit - position));
    if (len === 0) return Buffer.alloc(0);
    return this.inPoolTurn().then(() => this.readHost(f, len, position));
  }

  /** One read(2) of the host file in the pool; the place taken by inPoolTurn is given back when it returns. */
  private readHost(f: HostFile, len: number, position: number): Promise<Buffer> {
    if (f.released) {
      this.leavePool();
      return Promise.reject(new MdevError(Errno.EBADF, 'host file closed'));
    }
    const buf = Buffer.allocUnsafe(len);
    f.reading++;
    return new Promise((resolve, reject) => {
      read(f.fd, buf, 0, len, position, (err, n) => {
        f.reading--;
        if (f.released && f.reading === 0) close(f.fd, () => undefined);
        this.leavePool();
        if (err) reject(hostErrno(err));
        else resolve(buf.subarray(0, n));
      });
    });
  }

  /** Resolves when a host read may go into the pool (at most HOST_READS_IN_POOL there at once). */
  private inPoolTurn(): Promise<void> {
    if (this.inPool < HOST_READS_IN_POOL) {
      this.inPool++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private leavePool(): void {
    const next = this.waiting.shift();
    if (next) return next(); // the place goes to it
    this.inPool--;
    if (this.inPool === 0) for (const done of [...this.idle]) done();
  }

  /** Host reads in the pool, and whether they return within ms (Node's exit would wait for them for ever). */
  override readsInKernel(ms: number): Promise<number> {
    if (this.inPool === 0) return Promise.resolve(0);
    return new Promise((resolve) => {
      const done = () => {
        this.idle.delete(done);
        clearTimeout(timer);
        resolve(this.inPool);
      };
      const timer = setTimeout(done, ms);
      this.idle.add(done);
    });
  }

  override release(fh: number): void {
    const f = this.hostFiles.get(fh);
    if (f) {
      this.hostFiles.delete(fh);
      f.released = true;
      if (f.reading === 0) closeSync(f.fd);
    }
    super.release(fh);
  }

  private hostFile(fh: number): HostFile {
    const f = this.hostFiles.get(fh);
    if (!f) fail(Errno.EBADF);
    return f;
  }

  override setattr(path: string, change: Parameters<Kernfs['setattr']>[1]): void {
    if (this.resolve(path).host !== undefined) this.refuseHost(Errno.EROFS, 'setattr', path);
    super.setattr(path, change);
  }

  override truncate(path: string): void {
    if (this.resolve(path).host !== undefined) this.refuseHost(Errno.EROFS, 'truncate', path);
    super.truncate(path);
  }

  override create(path: string): never {
    const parent = this.find(splitPath(path).slice(0, -1).join('/'));
    if (parent?.host !== undefined && !this.find(path)) this.refuseHost(Errno.EROFS, 'create', path);
    return super.create(path);
  }

  /** mkdir, unlink, rename...: in a host directory, or of a host node, EROFS (else as sysfs: EPERM). */
  override mutate(op: string, path: string): never {
    const parent = this.find(splitPath(path).slice(0, -1).join('/'));
    if (parent?.host !== undefined || this.find(path)?.host !== undefined) this.refuseHost(Errno.EROFS, op, path);
    return super.mutate(op, path);
  }

  private refuseHost(errno: number, op: string, path: string): never {
    return this.refuse(errno, `${op} (a host file: --host-sysfs never writes the host)`, path);
  }

  /**
   * pci_read_config gives a reader without CAP_SYS_ADMIN only the standard header (64 bytes, 128
   * for a CardBus bridge). A caller other than root, or one the backend cannot name (fuse-native)
   * while this daemon reads as root, gets that much; an unprivileged daemon is limited by the host.
   */
  private readLimit(hostPath: string, fd: number, caller: Caller | undefined): number | undefined {
    if (!this.privileged || caller?.uid === 0 || basename(hostPath) !== 'config') return undefined;
    try {
      if (!readlinkSync(join(dirname(hostPath), 'subsystem')).endsWith('/bus/pci')) return undefined;
      const header = Buffer.alloc(1);
      readSync(fd, header, 0, 1, PCI_HEADER_TYPE);
      return (header[0]! & 0x7f) === PCI_HEADER_TYPE_CARDBUS ? UNPRIVILEGED_CONFIG_CARDBUS : UNPRIVILEGED_CONFIG;
    } catch {
      return UNPRIVILEGED_CONFIG;
    }
  }
}
