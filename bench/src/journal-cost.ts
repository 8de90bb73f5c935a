/**
 * What the always-on journal costs a write (docs/benchmarks.md, "The journal's cost"): not part of
 * `npm run bench`; run it alone, on a quiet machine:
 *
 *   npm run build --silent && npm run bench:build --silent && node bench/dist/journal-cost.js
 *
 * 1. In process, CPU time: the journal's own work for one write (begin + end of a create write
 *    that changes nothing: what every write pays, whatever it does), per profile (samples: 2
 *    types on the parent; nvidia-t4: 17, each read before and after the write).
 * 2. In process, CPU time: create+remove writes through Kernfs (no FUSE), with the journal (of
 *    10,000 entries and of 10) and without it (--journal-size 0), one process a run; and the heap
 *    a full ring of 10,000 entries holds.
 * 3. Through a mount (the default backend): the daemon's CPU time (/proc/PID/stat) per write of
 *    a python3 client doing create+remove cycles, with the journal and without it.
 *
 * Each figure is the median of several batches; the spread is printed beside it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Emulation } = require('../../dist/emulation') as typeof import('../../dist/emulation');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { loadProfile } = require('../../dist/drivers/profile-load') as typeof import('../../dist/drivers/profile-load');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { silentLogger } = require('../../dist/base/log') as typeof import('../../dist/base/log');

const REPO = resolve(__dirname, '..', '..');
const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
const spread = (a: number[]) => `${Math.min(...a).toFixed(2)}-${Math.max(...a).toFixed(2)}`;

async function emulation(profile: string, journalSize?: number) {
  const e = new Emulation(loadProfile(profile), { abi: '6.1', log: silentLogger, ...(journalSize === undefined ? {} : { journalSize }) });
  await e.ready;
  const parent = [...e.core.parents.values()][0]!;
  const type = [...parent.types.values()][0]!;
  const dir = `/${parent.placement.path.join('/')}`;
  return { e, dir, create: `${dir}/mdev_supported_types/${type.id}/create`, types: parent.types.size };
}

/** 1: the journal's begin + end of one write, in CPU microseconds. */
async function journalAlone(profile: string): Promise<void> {
  const { e, create, types } = await emulation(profile);
  const j = e.journal!;
  const data = Buffer.from(`${randomUUID()}\n`);
  const caller = { pid: process.pid, uid: 0, gid: 0 };
  const n = 100_000;
  const runs: number[] = [];
  for (let r = 0; r < 9; r++) {
    const c0 = cpuUs();
    for (let i = 0; i < n; i++) j.end(j.begin(create, data, caller), data.length);
    runs.push((cpuUs() - c0) / n);
  }
  console.log(`1. ${profile} (${types} types): journal begin+end per write ${median(runs.slice(2)).toFixed(2)} us CPU (${spread(runs.slice(2))}; 7 x ${n})`);
}

/** create+remove cycles through Kernfs in this process (a child of inProcess): CPU us per write, or heap bytes per entry. */
async function child(size: number, what: 'cpu' | 'heap'): Promise<void> {
  const { e, dir, create } = await emulation('samples', size);
  const k = e.kernfs;
  const caller = { pid: process.pid, uid: 0, gid: 0 };
  const one = Buffer.from('1\n');
  const fhc = k.open(create, 1);
  const cycles = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const u = randomUUID();
      await k.write(fhc, Buffer.from(`${u}\n`), caller);
      const fh = k.open(`${dir}/${u}/remove`, 1);
      await k.write(fh, one, caller);
      k.release(fh);
    }
  };
  if (what === 'heap') {
    const gc = (globalThis as { gc?: () => void }).gc!;
    await cycles(12_000); // the ring is full from its 5,000th cycle
    gc();
    gc();
    process.stdout.write(`${process.memoryUsage().heapUsed} ${e.journal?.since(0).length ?? 0}\n`);
    return;
  }
  const c0 = cpuUs();
  await cycles(40_000);
  process.stdout.write(`${(cpuUs() - c0) / 80_000}\n`);
}

/**
 * 2: create+remove writes through Kernfs, one process a run (a full ring's garbage must not tax
 * the other runs), journal of 10,000 entries, of 10, and none, alternating; then the heap a full
 * ring holds (a process with --expose-gc: its heap after 12,000 cycles, less that of one with no journal).
 */
async function inProcess(): Promise<void> {
  const run = (size: number, what: 'cpu' | 'heap') => {
    const r = spawnSync(process.execPath, [...(what === 'heap' ? ['--expose-gc'] : []), __filename, 'child', String(size), what], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(r.stderr);
    return r.stdout.trim();
  };
  const res = new Map<number, number[]>([[10_000, []], [10, []], [0, []]]);
  for (let r = 0; r < 3; r++) for (const [size, a] of res) a.push(Number(run(size, 'cpu')));
  const off = median(res.get(0)!);
  for (const [size, a] of res) {
    const d = median(a) - off;
    console.log(`2. samples: a create/remove write through Kernfs, --journal-size ${size}: ${median(a).toFixed(2)} us CPU (${spread(a)}; 3 x 80,000)${size ? `: +${d.toFixed(2)} us, +${((d / off) * 100).toFixed(0)}%` : ''}`);
  }
  const [heapOn, entries] = run(10_000, 'heap').split(' ').map(Number);
  const [heapOff] = run(0, 'heap').split(' ').map(Number);
  console.log(`2. heap of a full ring: ${((heapOn! - heapOff!) / entries!).toFixed(0)} bytes an entry (${entries} entries of a UUID create or a remove)`);
}

/** The daemon's CPU time so far (utime + stime), in microseconds. */
function daemonCpuUs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const ticks = Number(f[11]) + Number(f[12]);
  return (ticks * 1_000_000) / 100; // USER_HZ
}

const CYCLES_PY = String.raw`
import os, sys, uuid
create, devices, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for _ in range(n):
    u = str(uuid.uuid4())
    fd = os.open(create, os.O_WRONLY); os.write(fd, (u + '\n').encode()); os.close(fd)
    fd = os.open(os.path.join(devices, u, 'remove'), os.O_WRONLY); os.write(fd, b'1\n'); os.close(fd)
`;

/** 3: through a mount: the daemon's CPU per write of create+remove cycles, journal on and off. */
async function throughMount(): Promise<void> {
  const res = { on: [] as number[], off: [] as number[] };
  const daemons: { on: boolean; pid: number; dir: string; stop: () => Promise<void> }[] = [];
  for (const on of [true, false]) {
    const work = mkdtempSync(join(tmpdir(), 'mdevfs-jcost-'));
    const dir = join(work, 'mnt');
    const proc = spawn(process.execPath, [join(REPO, 'dist', 'cli', 'main.js'), 'mount', dir, ...(on ? [] : ['--journal-size', '0'])], { stdio: 'ignore' });
    for (let i = 0; i < 200 && !existsSync(join(dir, 'bus', 'mdev')); i++) await new Promise((r) => setTimeout(r, 50));
    const exited = new Promise((r) => proc.on('exit', r));
    daemons.push({ on, pid: proc.pid!, dir, stop: async () => void (proc.kill('SIGTERM'), await exited, rmSync(work, { recursive: true, force: true })) });
  }
  const n = 1500;
  const create = 'devices/virtual/mtty/mtty/mdev_supported_types/mtty-1/create';
  for (let r = 0; r < 7; r++) {
    for (const d of daemons) {
      const c0 = daemonCpuUs(d.pid);
      const py = spawnSync('python3', ['-S', '-c', CYCLES_PY, create, 'bus/mdev/devices', String(n)], { cwd: d.dir, encoding: 'utf8' });
      if (py.status !== 0) throw new Error(py.stderr);
      if (r > 0) (d.on ? res.on : res.off).push((daemonCpuUs(d.pid) - c0) / n / 2);
    }
  }
  for (const d of daemons) await d.stop();
  const dd = median(res.on) - median(res.off);
  console.log(`3. through the mount (direct backend): daemon CPU per create/remove write ${median(res.on).toFixed(1)} us with the journal (${spread(res.on)}), ${median(res.off).toFixed(1)} without (${spread(res.off)}): ${dd.toFixed(1)} us, ${((dd / median(res.off)) * 100).toFixed(1)}%`);
}

(async () => {
  const only = process.argv[2];
  if (only === 'child') return void (await child(Number(process.argv[3]), process.argv[4] as 'cpu' | 'heap'), process.exit(0));
  if (!only || only === '1') for (const p of ['samples', 'nvidia-t4']) await journalAlone(p);
  if (!only || only === '2') await inProcess();
  if (!only || only === '3') await throughMount();
  process.exit(0);
})();
