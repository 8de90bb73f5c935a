/**
 * `npm run bench`: mdevfs against its baselines, every figure measured in the same run as
 * its baseline. Prints one table (Markdown) on stdout, progress on stderr, and writes the
 * same figures as JSON (bench-results.json, or --json PATH). No timed assertions: it reports.
 *
 *   --json PATH            where to write the JSON (default: bench-results.json in the cwd)
 *   --only 1,2,5           run only these figures (1 and 2 run together)
 *   --backend NAME         the daemon's FUSE backend (default: the CLI's)
 *   --devices N            devices for figure 5 (default 10000)
 *   --mdevctl-devices N    devices for figure 6 (default 1000)
 *   --walk-budget S        seconds the figure-5 walk through the mount may take (default 60);
 *                          past that it is extrapolated from an even sample
 *   --writers N            writer processes filling the tree (default 4)
 *   --delay-ms N           vendor create delay for figure 4 (default 50)
 *   --cpu-prof DIR         run the figure-5 daemon under node --cpu-prof, summarise the profile
 *   --busy-cpus            keep every CPU busy with a nice-19 spinner for the whole run, so
 *                          that no CPU ever idles: a sleeping vCPU wakes slowly (tens of us),
 *                          and whether one is idle is the largest source of run-to-run noise
 *   --pin-cpu N            run everything (the bench, every daemon, every client) on CPU N:
 *                          no wakeup crosses CPUs, so what is measured is CPU time
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { resolve } from 'node:path';
import type { Ctx, Options } from './context';
import { Daemon } from './daemon';
import { figAttr } from './fig-attr';
import { figCycles } from './fig-cycles';
import { figFanout } from './fig-fanout';
import { figMdevctl } from './fig-mdevctl';
import { figScale } from './fig-scale';
import { figStartup } from './fig-startup';
import { type Results, machine, table, writeJson } from './report';
import { pingPong } from './py';
import { removeScratch } from './static-copy';

const USAGE = 'usage: npm run bench -- [--json PATH] [--only 1,2,...] [--devices N] [--mdevctl-devices N] [--walk-budget S] [--writers N] [--delay-ms N] [--cpu-prof DIR] [--backend fuse-native|direct] [--busy-cpus] [--pin-cpu N]';

function parseOptions(argv: string[]): Options {
  const o: Options = {
    json: 'bench-results.json',
    devices: 10_000,
    mdevctlDevices: 1000,
    walkBudgetS: 60,
    writers: 4,
    delayMs: 50,
    only: null,
    cpuProf: null,
    busyCpus: false,
    pinCpu: null,
  };
  const num = (v: string | undefined, name: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} needs a positive number`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[i + 1];
    switch (a) {
      case '--json':
        if (!v) throw new Error('--json needs a path');
        o.json = v;
        i++;
        break;
      case '--backend':
        if (!v) throw new Error('--backend needs a name');
        // Read by the daemon launcher (bench/src/daemon.ts) for every daemon of this run.
        process.env.MDEVFS_BENCH_BACKEND = v;
        i++;
        break;
      case '--only':
        if (!v) throw new Error('--only needs figure numbers');
        o.only = new Set(v.split(','));
        i++;
        break;
      case '--devices':
        o.devices = Math.max(50, Math.floor(num(v, a)));
        i++;
        break;
      case '--mdevctl-devices':
        o.mdevctlDevices = Math.floor(num(v, a));
        i++;
        break;
      case '--walk-budget':
        o.walkBudgetS = num(v, a);
        i++;
        break;
      case '--writers':
        o.writers = Math.floor(num(v, a));
        i++;
        break;
      case '--delay-ms':
        o.delayMs = num(v, a);
        i++;
        break;
      case '--cpu-prof':
        if (!v) throw new Error('--cpu-prof needs a directory');
        o.cpuProf = resolve(v);
        mkdirSync(o.cpuProf, { recursive: true });
        i++;
        break;
      case '--busy-cpus':
        o.busyCpus = true;
        break;
      case '--pin-cpu':
        if (!v || !/^\d+$/.test(v)) throw new Error('--pin-cpu needs a CPU number');
        o.pinCpu = Number(v);
        i++;
        break;
      case '-h':
      case '--help':
        process.stdout.write(USAGE + '\n');
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option ${a}\n${USAGE}`);
    }
  }
  return o;
}

const FIGURES: { ids: string[]; name: string; run: (ctx: Ctx) => Promise<void> }[] = [
  { ids: ['1', '2'], name: 'attribute read and deep lookup', run: figAttr },
  { ids: ['3'], name: 'create/remove cycles', run: figCycles },
  { ids: ['4'], name: 'fan-out', run: figFanout },
  { ids: ['6'], name: 'mdevctl list', run: figMdevctl },
  { ids: ['5'], name: 'scale', run: figScale },
  { ids: ['7'], name: 'start-up: exec and a fixture', run: figStartup },
];

async function main(): Promise<number> {
  const opts = parseOptions(process.argv.slice(2));
  if (process.getuid?.() !== 0) process.stderr.write('bench: not root; mounting (and figure 6) will probably fail\n');
  const t0 = performance.now();
  const ctx: Ctx = {
    opts,
    rows: [],
    notes: [],
    details: {},
    log: (msg) => process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${msg}\n`),
  };
  const onSignal = () => {
    process.stderr.write('bench: interrupted, stopping daemons\n');
    void Daemon.stopAll().finally(() => {
      removeScratch();
      process.exit(130);
    });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Every process started from here on inherits the affinity (fork keeps it).
  if (opts.pinCpu !== null) {
    const r = spawnSync('taskset', ['-a', '-p', '-c', String(opts.pinCpu), String(process.pid)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`--pin-cpu: taskset failed: ${r.stderr?.trim() ?? r.error?.message}`);
  }
  // nice 19 against nice 0: CFS gives a spinner about 1.5% of a CPU that the measured processes
  // want, and the CPU never enters its idle state.
  const spinners: ChildProcess[] = opts.busyCpus
    ? Array.from({ length: availableParallelism() }, () => spawn('nice', ['-n', '19', 'sh', '-c', 'while :; do :; done'], { stdio: 'ignore' }))
    : [];
  const stopSpinners = () => spinners.forEach((c) => c.kill('SIGKILL'));
  process.on('exit', stopSpinners);
  if (spinners.length) await new Promise((r) => setTimeout(r, 300));

  ctx.details.pipeRoundTripUsAtStart = (await pingPong()).roundTripUs;
  let failed = 0;
  // Load averages before each figure: this is a shared 2-CPU machine, and other work skews figures.
  const load: Record<string, number[]> = {};
  ctx.details.loadavg = load;
  for (const f of FIGURES) {
    if (opts.only && !f.ids.some((id) => opts.only!.has(id))) continue;
    load[`before ${f.ids.join('+')}`] = loadavg();
    ctx.log(`figure ${f.ids.join('+')}: ${f.name}`);
    try {
      await f.run(ctx);
    } catch (err) {
      failed++;
      const msg = (err as Error).stack ?? String(err);
      ctx.notes.push(`Figure ${f.ids.join('+')} FAILED: ${(err as Error).message}`);
      ctx.details[`error${f.ids.join('')}`] = msg;
      process.stderr.write(`bench: figure ${f.ids.join('+')} failed: ${msg}\n`);
      await Daemon.stopAll();
    } finally {
      removeScratch();
    }
  }
  load.end = loadavg();
  // How long a wakeup of another process takes here: every FUSE request needs several.
  const before = ctx.details.pipeRoundTripUsAtStart as number;
  const after = (await pingPong()).roundTripUs;
  stopSpinners();
  // Figures in numeric order in the table, whatever order they ran in.
  ctx.rows.sort((a, b) => Number(a.fig) - Number(b.fig));

  const results: Results = {
    date: new Date().toISOString(),
    machine: { ...machine(), pipeRoundTripUs: (before + after) / 2 },
    options: { ...opts, only: opts.only ? [...opts.only] : null },
    rows: ctx.rows,
    notes: ctx.notes,
    details: ctx.details,
    durationS: (performance.now() - t0) / 1000,
  };
  const m = results.machine;
  process.stdout.write(
    `mdevfs bench, ${results.date.slice(0, 10)}: ${m.nproc} CPUs, kernel ${m.kernel}, node ${m.node}, ${m.python}, mdevctl ${m.mdevctl ?? 'missing'}; ${results.durationS!.toFixed(0)} s\n` +
      `process-to-process pipe round trip (two wakeups): ${before.toFixed(1)} us at the start, ${after.toFixed(1)} us at the end` +
      `${opts.busyCpus ? '; --busy-cpus: a nice-19 spinner on every CPU' : ''}` +
      `${opts.pinCpu !== null ? `; --pin-cpu ${opts.pinCpu}: every process on that CPU` : ''}\n\n`,
  );
  process.stdout.write(table(ctx.rows) + '\n');
  if (ctx.notes.length) process.stdout.write('\n' + ctx.notes.map((n) => `- ${n}`).join('\n') + '\n');
  writeJson(opts.json, results);
  process.stdout.write(`\nJSON: ${resolve(opts.json)}\n`);
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  async (err: Error) => {
    process.stderr.write(`bench: ${err.message}\n`);
    await Daemon.stopAll();
    removeScratch();
    process.exit(2);
  },
);
