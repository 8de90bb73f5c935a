import type { Clock } from '../../src/base/clock';

/** A clock whose sleeps end only when the test says so: in-flight windows without timing. */
export class ManualClock implements Clock {
  private pending: (() => void)[] = [];
  /** What now() answers (monotonic ms); wallNow() is this after 2026-01-01T00:00:00Z. */
  ms = 0;
  now(): number {
    return this.ms;
  }
  wallNow(): number {
    return Date.UTC(2026, 0, 1) + this.ms;
  }
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
