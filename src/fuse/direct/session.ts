import type { Logger } from 'pino';
import { Errno, MdevError } from '../../base/errno';
import type { Kernfs } from '../../sysfs/kernfs';
import { HANDLERS, unsupported } from './handlers/table';
import { CacheInvalidator } from './invalidation';
import { type FuseNode, NodeTable } from './nodes';
import * as P from './protocol';
import { Transport } from './transport';

export interface SessionOptions {
  fd: number;
  kernfs: Kernfs;
  log: Logger;
  /** Outstanding reads on /dev/fuse when they go through the thread pool; each pins a libuv worker thread. */
  readers: number;
  /** Largest WRITE payload the kernel may send (at most 128 KiB: no FUSE_MAX_PAGES). */
  maxWrite?: number;
}

/** Seconds the kernel may cache entries and attributes when every change is notified. */
const LONG_TIMEOUT = 3600;

/** An open directory: its node, and the listing taken when reading started. */
export interface DirHandle {
  node: FuseNode;
  names?: string[];
}

/**
 * One FUSE connection, in the parts libfuse keeps apart: the transport (transport.ts) reads
 * requests and writes replies, each request goes to its opcode's handler (handlers/, through
 * the table in handlers/table.ts), and the kernel's caches are told of every change Kernfs
 * announces (invalidation.ts). Every request but WRITE is answered before the next is looked
 * at; WRITE (a vendor create can take seconds) is answered when its store() settles, and a READ
 * a fault rule delays or hangs when the rule lets it go, so neither holds up anything else. The handlers reach the connection's state through this.
 */
export class Session {
  readonly conn: Transport;
  readonly kernfs: Kernfs;
  readonly log: Logger;
  readonly nodes = new NodeTable();
  readonly caches: CacheInvalidator;
  /** Open directories by file handle. */
  readonly dirs = new Map<bigint, DirHandle>();
  nextDirFh = 1n;
  /**
   * Requests answered later: WRITEs waiting for a vendor, READs a fault rule holds. Failed with
   * ENODEV by stop(), as kernfs fails requests to a node going away.
   */
  readonly pending = new Set<bigint>();
  /** How long the kernel may cache entries and attributes: Kernfs announces every change. */
  readonly timeout = LONG_TIMEOUT;

  constructor(private readonly opts: SessionOptions) {
    this.kernfs = opts.kernfs;
    this.log = opts.log;
    this.conn = new Transport(opts.fd, opts.log, Math.min(opts.maxWrite ?? 128 * 1024, 128 * 1024), (req) => this.dispatch(req));
    this.caches = new CacheInvalidator(this.conn, this.nodes, this.kernfs, this.log);
    this.kernfs.onInvalidate((inv) => this.caches.invalidate(inv));
  }

  /** Starts reading requests (see Transport.start). */
  start(): void {
    this.conn.start(this.opts.readers);
  }

  /** Closes /dev/fuse (see Transport.closeFd). */
  closeFd(): void {
    this.conn.closeFd();
  }

  /** Resolves when every reader has stopped (ENODEV after unmount, or release()). */
  get done(): Promise<void> {
    return this.conn.done;
  }

  /**
   * No more requests are served: from now on every request read is answered ENODEV (never
   * dropped: the caller would wait for ever), and so are the WRITEs still waiting for a
   * vendor and the READs a fault rule holds. Readers go on reading until the connection ends or
   * release() sends them away.
   * Resolves when the notifier thread has ended.
   */
  stop(): Promise<void> {
    this.conn.stopping = true;
    for (const unique of this.pending) this.conn.replyError(unique, Errno.ENODEV);
    this.pending.clear();
    return this.caches.close();
  }

  /** Makes every reader leave after the next request it reads (see Transport.release). */
  release(): void {
    this.conn.release();
  }

  /** Whether the notifier thread may still be inside a write to /dev/fuse. */
  get notifierBusy(): boolean {
    return this.caches.notifierBusy;
  }

  get readersRunning(): number {
    return this.conn.readersRunning;
  }

  private dispatch(req: Buffer): void {
    if (req.length < P.IN_HEADER_SIZE) return;
    const h = P.parseInHeader(req);
    const body = req.subarray(P.IN_HEADER_SIZE, h.len - h.totalExtlen * 8);
    try {
      this.handle(h, body);
    } catch (err) {
      this.conn.replyError(h.unique, this.errnoOf(err, h));
    }
  }

  /** One request, to its opcode's handler (libfuse's fuse_ll_ops); the bench's traced daemon counts requests here. */
  handle(h: P.InHeader, body: Buffer): void {
    const op = h.opcode;
    (op < HANDLERS.length ? HANDLERS[op]! : unsupported)(this, h, body);
  }

  /** The errno a request's failure is answered with; anything but an MdevError is a bug, logged, EIO. */
  errnoOf(err: unknown, h: P.InHeader): number {
    if (err instanceof MdevError) return err.errno;
    this.log.error({ err, opcode: h.opcode, nodeid: String(h.nodeid) }, 'internal error');
    return Errno.EIO;
  }
}
