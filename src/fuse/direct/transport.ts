import * as fs from 'node:fs';
import type { Logger } from 'pino';
import { Errno } from '../../base/errno';
import { type FdPoller, POLL_READ_BUFFER, pollFd } from './poll';
import * as P from './protocol';

const { ENODEV, ECONNABORTED } = Errno;

/**
 * MDEVFS_SPIN_US: after each request the main thread keeps polling /dev/fuse (a setImmediate
 * loop: epoll with no timeout) for this long instead of sleeping, so a client's next request
 * is read without waking the thread. Off by default: it halves the round trip on a machine
 * with an idle CPU (a VM wakes a sleeping vCPU slowly) and costs the clients CPU time on a
 * busy one (docs/benchmarks.md).
 */
const SPIN_MS = Math.max(0, Math.min(Number(process.env.MDEVFS_SPIN_US ?? '0') || 0, 10_000)) / 1000;

/** Requests the kernel expects no answer to. */
const NO_REPLY = new Set<number>([P.Op.FORGET, P.Op.BATCH_FORGET, P.Op.INTERRUPT]);

/**
 * The FUSE connection's two directions, as libfuse's fuse_session_loop and fuse_send_reply:
 * requests read from /dev/fuse (on the main thread when epoll says one is there, or with
 * blocking reads in the thread pool) are handed to `onRequest` one at a time, and replies are
 * written back synchronously. Once stopping, every request that expects an answer gets ENODEV.
 */
export class Transport {
  private poller: FdPoller | null = null;
  /** Largest WRITE payload the kernel may send: INIT tells it. */
  maxWrite: number;
  /** No more requests are served (stop(), DESTROY, or the connection ended). */
  stopping = false;
  /** Set by release(): each reader leaves after the next request it reads. */
  private leaving = false;
  private running = 0;
  private readonly readersDone: Promise<void>;
  private resolveReadersDone!: () => void;
  /** MDEVFS_SPIN_US: when the last request came, and whether the polling loop runs. */
  private lastRequest = 0;
  private spinning = false;

  constructor(
    readonly fd: number,
    private readonly log: Logger,
    maxWrite: number,
    /** Called with each request, a Buffer valid until it returns. */
    private readonly onRequest: (req: Buffer) => void,
  ) {
    this.maxWrite = maxWrite;
    this.readersDone = new Promise((resolve) => (this.resolveReadersDone = resolve));
  }

  /**
   * Reads requests on the main thread as epoll reports them (poll.ts), or, where Node's
   * internal pipe binding is not there, with `readers` blocking reads in the thread pool.
   */
  start(readers: number): void {
    if (process.env.MDEVFS_FUSE_POOL_READERS !== '1') {
      // libuv's read buffer is 64 KiB: WRITEs must fit (sysfs takes a page per write anyway).
      const maxWrite = Math.min(this.maxWrite, POLL_READ_BUFFER - 4096);
      this.poller = pollFd(this.fd, (req) => this.received(req), (errno) => this.pollEnded(errno));
      if (this.poller) {
        this.maxWrite = maxWrite;
        this.running = 1;
        return;
      }
    }
    const n = Math.max(1, readers);
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

  /** Resolves when every reader has stopped (ENODEV after unmount, or release()). */
  get done(): Promise<void> {
    return this.readersDone;
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
      this.received(buf.subarray(0, n));
      if (this.leaving) return this.readerExit();
      this.readLoop(buf);
    });
  }

  private received(req: Buffer): void {
    if (SPIN_MS > 0) {
      this.lastRequest = performance.now();
      if (!this.spinning) {
        this.spinning = true;
        setImmediate(this.spin);
      }
    }
    try {
      if (this.stopping) this.refuseWhileStopping(req);
      else this.onRequest(req);
    } catch (e) {
      this.log.error({ err: e }, 'fuse: request handling failed');
    }
  }

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

  reply(unique: bigint, payload?: Buffer): void {
    this.send(P.frame(unique, 0, payload));
  }

  replyError(unique: bigint, errno: number): void {
    this.send(P.frame(unique, -errno));
  }

  /**
   * Replies are written synchronously: the kernel takes them without blocking, and going
   * through the thread pool would let busy pool threads (the readers are there too) delay
   * every answer — under a loaded pool, starve them entirely.
   */
  send(buf: Buffer): void {
    try {
      fs.writeSync(this.fd, buf);
    } catch (err) {
      this.writeFailed(err as NodeJS.ErrnoException);
    }
  }

  private writeFailed(err: NodeJS.ErrnoException): void {
    // ENOENT: the request was interrupted or aborted; ENODEV: the connection is gone.
    if (err.code === 'ENOENT' || err.code === 'ENODEV' || this.stopping) return;
    this.log.warn({ err }, 'fuse: write to /dev/fuse failed');
  }
}
