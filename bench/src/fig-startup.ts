import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { start } from '../../dist/index';
import type { Ctx } from './context';

const ROOT = join(__dirname, '..', '..');
const CLI = join(ROOT, 'scripts', 'mdevfs');
const ROUNDS = 10;

/** Runs argv to its end; resolves with the wall time in ms (rejects unless it exits 0). */
function timed(argv: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr!.on('data', (d) => (err += d));
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`${argv.join(' ')}: exit ${code}: ${err.trim()}`))));
  });
}

/** A fixture's cost: start() (spawn, mount, first ping that says mounted) and stop() (SIGTERM, unmount, exit). */
async function fixture(): Promise<number> {
  const t0 = performance.now();
  const tree = await start({ env: process.env });
  await tree.stop();
  return performance.now() - t0;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * Figure 7: what a fresh tree per test costs: `mdevfs exec -- true` and a fixture's start+stop
 * (the TypeScript API's start() and stop(), which the Python and Go fixtures do the same way:
 * spawn `mdevfs mount`, poll GET /v1/ping), against `node -e 0`, the floor of any Node program.
 * Rounds alternate the three, so each sees the same machine; medians of ROUNDS.
 */
export async function figStartup(ctx: Ctx): Promise<void> {
  const node: number[] = [];
  const exec: number[] = [];
  const fix: number[] = [];
  ctx.log(`fig 7: ${ROUNDS} rounds of node -e 0, mdevfs exec -- true, start+stop`);
  await timed([process.execPath, '-e', '0']); // the page cache warm for all three
  for (let i = 0; i < ROUNDS; i++) {
    node.push(await timed([process.execPath, '-e', '0']));
    exec.push(await timed([process.execPath, CLI, 'exec', '--', 'true']));
    fix.push(await fixture());
  }
  const base = median(node);
  const note = (xs: number[]) => `min ${Math.min(...xs).toFixed(0)}, max ${Math.max(...xs).toFixed(0)} ms; n=${ROUNDS} alternating`;
  ctx.rows.push(
    { fig: '7', measure: '`mdevfs exec -- true`, median (goal: at most 1.5x)', unit: 'ms', value: median(exec), baselineLabel: 'node -e 0', baseline: base, floorNote: 'no FUSE floor for a start-up', note: note(exec) },
    { fig: '7', measure: 'a fixture\'s start+stop, median (goal: at most 2x)', unit: 'ms', value: median(fix), baselineLabel: 'node -e 0', baseline: base, floorNote: 'no FUSE floor for a start-up', note: note(fix) },
  );
  ctx.details.startup = { node, exec, fixture: fix };
}
