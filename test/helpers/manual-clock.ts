import type { Clock } from '../../src/base/clock';

/** A clock whose sleeps end only when the test says so: in-flight windows without timing. */
export class ManualClock implements Clock {
  private pending: (() => void)[] = [];
  sleep(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => this.pending.push(resolve));
  }
  get waiting(): number {
    return this.pending.length;
  }
  /** Ends every sleep started so far. */
  releaseAll(): void {
    for (const r of this.pending.splice(0)) r();
  }
}

/** Lets queued promise callbacks run. */
export const tick = () => new Promise<void>((r) => setImmediate(r));
