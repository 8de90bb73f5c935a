/**
 * `node bench/dist/traced-daemon.js mount DIR ...`: the ordinary mdevfs CLI, counting what
 * reaches the daemon (fuse-native: every libfuse callback; direct: every FUSE request, by
 * opcode) and timing every write (Kernfs.write, call to settling). On SIGUSR2 it writes {counts, writes} as JSON to $MDEVFS_BENCH_TRACE and
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
      return fn(...args);
    };
  }
  return wrapped;
}

// The direct backend: count requests by opcode (its handle() sees every request but INIT's retries).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Session } = require('../../dist/fuse/direct/session') as typeof import('../../dist/fuse/direct/session');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Op } = require('../../dist/fuse/direct/protocol') as typeof import('../../dist/fuse/direct/protocol');
const opName = new Map<number, string>(Object.entries(Op).map(([k, v]) => [v, k]));
const proto = Session.prototype as unknown as { handle(h: { opcode: number }, body: Buffer): unknown };
const handle = proto.handle;
proto.handle = function (this: unknown, h: { opcode: number }, body: Buffer) {
  const name = opName.get(h.opcode) ?? `op${h.opcode}`;
  trace.counts[name] = (trace.counts[name] ?? 0) + 1;
  return handle.call(this, h, body);
};
// Writes on either backend: from Kernfs.write's call to its settling (the reply follows at once).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Kernfs } = require('../../dist/sysfs/kernfs') as typeof import('../../dist/sysfs/kernfs');
const write = Kernfs.prototype.write;
Kernfs.prototype.write = function (this: InstanceType<typeof Kernfs>, fh: number, data: Buffer) {
  const t0 = performance.now();
  const r = write.call(this, fh, data);
  const done = (result: number) => trace.writes.push({ path: `fh ${fh}`, t0, t1: performance.now(), result });
  r.then(done, (e: { errno?: number }) => done(-(e?.errno ?? 5)));
  return r;
};

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
const { main } = require('../../dist/cli/main') as { main: (argv: readonly string[]) => Promise<number> };
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`mdevfs (traced): ${err.message}\n`);
    process.exit(1);
  },
);
