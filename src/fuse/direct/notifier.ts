import { constants } from 'node:os';
import { Worker } from 'node:worker_threads';

// Shared control words (Int32Array indices).
const POSTED = 0; // sequence number of the last batch handed to the thread
const DONE = 1; // sequence number of the last batch the thread has written
const WANT = 2; // 1: the main thread stopped waiting on DONE and waits for a message
const STOP = 3; // 1: the thread leaves
const COUNT = 4; // notifications in the batch handed over

/** Room for one batch: notifications are a few hundred bytes; a larger batch goes in chunks. */
const DATA_BYTES = 256 * 1024;
const MAX_PER_BATCH = 4096;
/**
 * How long the main thread waits, asleep on the DONE word, for the thread to write a batch
 * before it goes back to its event loop. (Spinning first was measured and dropped: with the
 * thread on the same CPU it only delays it, and across CPUs it gained nothing: create+remove
 * 1,059-1,097/s with 50 us of spinning, 1,143-1,188/s without.)
 */
const WAIT_MS = 0.5;

// The thread sleeps on the POSTED word (a futex), writes each notification of the batch in
// order (each frame starts with its length), records each write's errno, publishes DONE (and
// wakes the main thread if it sleeps on it) and, if the main thread no longer waits on that
// word, tells it with a message. It never returns to its
// event loop, so a message is its only asynchronous signal.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const ctl = new Int32Array(workerData.ctl);
const data = Buffer.from(workerData.data);
const res = new Int32Array(workerData.res);
// A failed write is only its errno here (ENOENT is common: nothing cached by that name);
// without this, each one captured a stack trace, the thread's largest cost.
Error.stackTraceLimit = 0;
let seen = 0;
for (;;) {
  Atomics.wait(ctl, ${POSTED}, seen);
  if (Atomics.load(ctl, ${STOP}) === 1) break;
  const posted = Atomics.load(ctl, ${POSTED});
  if (posted === seen) continue;
  seen = posted;
  const count = ctl[${COUNT}];
  for (let i = 0, off = 0; i < count; i++) {
    const len = data.readUInt32LE(off);
    try { fs.writeSync(workerData.fd, data, off, len); res[i] = 0; } catch (e) { res[i] = Math.abs(e.errno || 5); }
    off += len;
  }
  Atomics.store(ctl, ${DONE}, seen);
  Atomics.notify(ctl, ${DONE});
  if (Atomics.load(ctl, ${WANT}) === 1) parentPort.postMessage(seen);
}
`;

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/**
 * Writes FUSE notifications from a thread of its own. They cannot go from the main thread
 * (the kernel may block one on a directory lock held by a request that waits for our
 * answer) and must not depend on libuv's thread pool, whose threads the /dev/fuse readers
 * occupy: if the pool is smaller than planned, a notification would never be written.
 *
 * A batch is handed over in shared memory and the thread woken through a futex
 * (Atomics.notify); the main thread then waits for at most half a millisecond on the DONE
 * word (WAIT_MS), which is almost always enough (a remove waits for its batch before it is answered),
 * and otherwise goes back to its event loop and hears of it by a message: if the thread is
 * blocked on a directory lock, the request holding it can be answered meanwhile.
 */
export class Notifier {
  private readonly worker: Worker;
  private readonly ctl = new Int32Array(new SharedArrayBuffer(8 * 4));
  private readonly data = Buffer.from(new SharedArrayBuffer(DATA_BYTES));
  private readonly res = new Int32Array(new SharedArrayBuffer(MAX_PER_BATCH * 4));
  private seq = 0;
  /** The batch waiting for the thread's message, if the wait on DONE ran out. */
  private waiting: { seq: number; done: () => void } | null = null;
  private closed = false;

  /** onDeath: called once if the thread ends before close() (it should not). */
  constructor(fd: number, onDeath?: (err?: Error) => void) {
    this.worker = new Worker(WORKER, {
      eval: true,
      workerData: { fd, ctl: this.ctl.buffer, data: this.data.buffer, res: this.res.buffer },
    });
    this.worker.on('message', (seq: number) => {
      if (this.waiting && seq >= this.waiting.seq) this.waiting.done();
    });
    // A thread that died (it should not) must not hold every write for ever: what waits for
    // it goes on, and each notification from then on reports ENOTCONN (the session logs it).
    const died = (err?: Error) => {
      if (!this.gone && !this.closed) onDeath?.(err);
      this.gone = true;
      this.waiting?.done();
    };
    this.worker.on('error', died);
    this.worker.on('exit', () => died());
    this.worker.unref();
  }

  /** The thread ended (close(), or it died). */
  private gone = false;

  /**
   * Writes the notifications in order, one batch at a time (the caller waits for each);
   * resolves with the errno code of each failed write (ENOENT: nothing cached by that name),
   * or null.
   */
  async write(bufs: Buffer[]): Promise<(string | null)[]> {
    const errors: (string | null)[] = [];
    if (this.gone && !this.closed) return bufs.map(() => 'ENOTCONN');
    for (let i = 0; i < bufs.length && !this.closed && !this.gone; ) {
      let count = 0;
      let off = 0;
      while (i + count < bufs.length && count < MAX_PER_BATCH && off + bufs[i + count]!.length <= DATA_BYTES) {
        off += bufs[i + count]!.copy(this.data, off);
        count++;
      }
      if (count === 0) {
        errors.push('E2BIG'); // cannot happen: a notification is far smaller than the buffer
        i++;
        continue;
      }
      await this.run(count);
      if (this.gone) return [...errors, ...bufs.slice(i).map(() => 'ENOTCONN')];
      for (let k = 0; k < count; k++) errors.push(this.res[k] === 0 ? null : (ERRNO_NAMES.get(this.res[k]!) ?? `errno ${this.res[k]}`));
      i += count;
    }
    return errors;
  }

  private run(count: number): Promise<void> | void {
    if (this.gone) return;
    const seq = ++this.seq;
    this.ctl[COUNT] = count;
    Atomics.store(this.ctl, POSTED, seq);
    Atomics.notify(this.ctl, POSTED);
    Atomics.wait(this.ctl, DONE, seq - 1, WAIT_MS);
    if (Atomics.load(this.ctl, DONE) !== seq) return this.await(seq);
  }

  private await(seq: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.waiting = null;
        Atomics.store(this.ctl, WANT, 0);
        resolve();
      };
      this.waiting = { seq, done };
      Atomics.store(this.ctl, WANT, 1);
      // The thread may have finished between the wait and WANT: then it sends nothing.
      if (Atomics.load(this.ctl, DONE) === seq || this.gone) done();
    });
  }

  /** Whether the thread may be inside write(2) (a thread blocked there would hold up the process's exit). */
  get busy(): boolean {
    return Atomics.load(this.ctl, DONE) !== Atomics.load(this.ctl, POSTED);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.waiting?.done();
    Atomics.store(this.ctl, STOP, 1);
    Atomics.notify(this.ctl, POSTED);
    await this.worker.terminate();
  }
}
