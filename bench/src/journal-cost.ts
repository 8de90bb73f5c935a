/**
 * What the always-on journal costs a write (docs/benchmarks.md, "The journal's cost"): not part of
 * `npm run bench`; run it alone, on a quiet machine:
 *
 *   npm run build --silent && npm run bench:build --silent && node bench/dist/journal-cost.js
 *
 * 1. In process, CPU time: the journal's own work for one write (begin + end of a create write
 *    that changes nothing: what every write pays, whatever it does), per profile (samples: 2
 *    types on the parent; nvidia-t4: 17, each read before and after the write).
 * 2. In process, CPU time: create+remove writes through Kernfs (no FUSE), with the journal and
 *    without it (--journal-size 0), alternating batches.
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

/** 2: create+remove writes through Kernfs, journal on and off, in CPU microseconds per write. */
async function inProcess(profile: string): Promise<void> {
  const on = await emulation(profile);
  const off = await emulation(profile, 0);
  const caller = { pid: process.pid, uid: 0, gid: 0 };
  const one = Buffer.from('1\n');
  const batch = async ({ e, dir, create }: typeof on, n: number) => {
    const k = e.kernfs;
    const fhc = k.open(create, 1);
    const uuids = Array.from({ length: n }, () => randomUUID());
    const c0 = cpuUs();
    for (const u of uuids) {
      await k.write(fhc, Buffer.from(`${u}\n`), caller);
      const fh = k.open(`${dir}/${u}/remove`, 1);
      await k.write(fh, one, caller);
      k.release(fh);
    }
    k.release(fhc);
    return (cpuUs() - c0) / n / 2;
  };
  await batch(on, 2000);
  await batch(off, 2000);
  const res = { on: [] as number[], off: [] as number[] };
  for (let r = 0; r < 9; r++) {
    res.on.push(await batch(on, 3000));
    res.off.push(await batch(off, 3000));
  }
  const d = median(res.on) - median(res.off);
  console.log(`2. ${profile}: create+remove write through Kernfs ${median(res.on).toFixed(2)} us CPU with the journal (${spread(res.on)}), ${median(res.off).toFixed(2)} without (${spread(res.off)}): ${d.toFixed(2)} us, ${((d / median(res.off)) * 100).toFixed(1)}%`);
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
  if (!only || only === '1') for (const p of ['samples', 'nvidia-t4']) await journalAlone(p);
  if (!only || only === '2') await inProcess('samples');
  if (!only || only === '3') await throughMount();
  process.exit(0);
})();
