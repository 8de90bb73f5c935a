/** Time is injected so latency and fault tests are reproducible. */
export interface Clock {
  sleep(ms: number): Promise<void>;
  /** Monotonic milliseconds (the journal's times); default performance.now(). */
  now?(): number;
  /** Wall clock, epoch milliseconds; default Date.now(). */
  wallNow?(): number;
}

export const realClock: Clock = {
  sleep: (ms) => (ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve()),
};

/** Deterministic PRNG (mulberry32) for seeded fault injection. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
