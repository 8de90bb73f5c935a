/**
 * `node dist/bench/traced-daemon.js mount DIR ...`: the ordinary mdevfs CLI, with fuse-native
 * wrapped so that every libfuse callback is counted and every write is timed (arrival in the
 * JS loop, reply). On SIGUSR2 it writes {counts, writes} as JSON to $MDEVFS_BENCH_TRACE and
 * starts over. Used only for evidence (requests per syscall, how writes reach the daemon);
 * the timed figures run the plain CLI.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { Trace } from './daemon';

type Fn = (...args: unknown[]) => unknown;
type FuseCtor = new (mnt: string, ops: Record<string, unknown>, opts: object) => object;

let trace: Trace = { counts: {}, writes: [] };

function wrapOps(ops: Record<string, unknown>): Record<string, unknown> {
  const wrapped: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(ops)) {
    if (typeof value !== 'function') {
      wrapped[name] = value;
      continue;
    }
    const fn = value as Fn;
    wrapped[name] = (...args: unknown[]) => {
      trace.counts[name] = (trace.counts[name] ?? 0) + 1;
      if (name === 'write') {
        const t0 = performance.now();
        const cb = args[args.length - 1] as Fn;
        const path = String(args[0]);
        args[args.length - 1] = (...r: unknown[]) => {
          trace.writes.push({ path, t0, t1: performance.now(), result: Number(r[0]) });
          return cb(...r);
        };
      }
      return fn(...args);
    };
  }
  return wrapped;
}

// Replace fuse-native in the module cache before the backend requires it.
const resolved = require.resolve('fuse-native');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const Fuse = require('fuse-native') as FuseCtor;
class TracedFuse extends Fuse {
  constructor(mnt: string, ops: Record<string, unknown>, opts: object) {
    super(mnt, wrapOps(ops), opts);
  }
}
require.cache[resolved]!.exports = TracedFuse;

const out = process.env.MDEVFS_BENCH_TRACE;
process.on('SIGUSR2', () => {
  if (!out) return;
  writeFileSync(`${out}.tmp`, JSON.stringify(trace));
  renameSync(`${out}.tmp`, out);
  trace = { counts: {}, writes: [] };
});

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { main } = require('../cli/main') as { main: (argv: readonly string[]) => Promise<number> };
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`mdevfs (traced): ${err.message}\n`);
    process.exit(1);
  },
);
