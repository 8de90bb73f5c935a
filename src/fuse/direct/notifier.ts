import { Worker } from 'node:worker_threads';

// The worker only writes: each message is a batch of notifications, written in order and
// answered (one errno code or null each) once the kernel took the last.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
parentPort.on('message', ({ id, bufs }) => {
  const errors = bufs.map((buf) => {
    try { fs.writeSync(workerData.fd, buf); return null; } catch (e) { return e.code || String(e); }
  });
  parentPort.postMessage({ id, errors });
});
`;

/**
 * Writes FUSE notifications from a thread of its own. They cannot go from the main thread
 * (the kernel may block one on a directory lock held by a request that waits for our
 * answer) and must not depend on libuv's thread pool, whose threads the /dev/fuse readers
 * occupy: if the pool is smaller than planned, a notification would never be written.
 */
export class Notifier {
  private readonly worker: Worker;
  private readonly pending = new Map<number, (errors: (string | null)[]) => void>();
  private nextId = 0;
  /** Batches posted to the thread and not answered yet: while any is, the thread may be in write(2). */
  private unanswered = 0;

  constructor(fd: number) {
    this.worker = new Worker(WORKER, { eval: true, workerData: { fd } });
    this.worker.on('message', ({ id, errors }: { id: number; errors: (string | null)[] }) => {
      this.unanswered--;
      const done = this.pending.get(id);
      this.pending.delete(id);
      done?.(errors);
    });
    this.worker.unref();
  }

  /**
   * Writes the notifications in order, in one round trip to the thread; resolves with the
   * errno code of each failed write (ENOENT: nothing cached by that name), or null.
   */
  write(bufs: Buffer[]): Promise<(string | null)[]> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.unanswered++;
      this.worker.postMessage({ id, bufs });
    });
  }

  /** Whether the thread may be inside write(2) (a thread blocked there would hold up the process's exit). */
  get busy(): boolean {
    return this.unanswered > 0;
  }

  async close(): Promise<void> {
    for (const done of this.pending.values()) done(['ECANCELED']);
    this.pending.clear();
    await this.worker.terminate();
  }
}
