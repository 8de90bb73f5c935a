import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, promises as fsp, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Profile } from '../../dist/drivers/profile-types';
import { lazyUnmount, mountAt } from '../../dist/fuse/mountpoint';

const ROOT = resolve(__dirname, '..', '..');
const CLI = join(ROOT, 'scripts', 'mdevfs');
const TRACED = join(__dirname, 'traced-daemon.js');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface DaemonOptions {
  /** A built-in profile name or a profile object (written to a JSON file). */
  profile?: string | Profile;
  /** Run through traced-daemon.js, which counts libfuse callbacks and times writes. */
  traced?: boolean;
  /** node --cpu-prof into this directory. */
  cpuProfDir?: string;
  logLevel?: string;
}

/** What traced-daemon.js hands back on SIGUSR2. */
export interface Trace {
  counts: Record<string, number>;
  writes: { path: string; t0: number; t1: number; result: number }[];
}

/** Every daemon still running (mdevfs or the C floor), so an interrupted bench can stop them all. */
const running = new Set<{ stop(): Promise<void> }>();

/** Registers a daemon for stopAll() until its stop() runs. */
export function track(d: { stop(): Promise<void> }): void {
  running.add(d);
  const stop = d.stop.bind(d);
  d.stop = () => {
    running.delete(d);
    return stop();
  };
}

/**
 * One mdevfs daemon, always a child process: the bench never touches the mount from the
 * daemon's own process (a synchronous read there would deadlock the FUSE loop).
 */
export class Daemon {
  private exited: Promise<number | null>;
  private done = false;

  private constructor(
    readonly work: string,
    readonly dir: string,
    private readonly child: ChildProcess,
    readonly logFile: string,
    private readonly traceFile: string | undefined,
  ) {
    this.exited = new Promise((r) =>
      child.on('exit', (code) => {
        this.done = true;
        r(code);
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  static async start(opts: DaemonOptions = {}): Promise<Daemon> {
    const work = mkdtempSync('/tmp/mdevfs-bench-');
    const dir = join(work, 'mnt');
    const logFile = join(work, 'daemon.log');
    let profileArg = 'samples';
    if (typeof opts.profile === 'string') profileArg = opts.profile;
    else if (opts.profile) {
      profileArg = join(work, 'profile.json');
      writeFileSync(profileArg, JSON.stringify(opts.profile, null, 2));
    }
    const traceFile = opts.traced ? join(work, 'trace.json') : undefined;
    const nodeArgs = [...(opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : []), opts.traced ? TRACED : CLI];
    const backend = process.env.MDEVFS_BENCH_BACKEND;
    const args = ['mount', dir, '--profile', profileArg, '--log-level', opts.logLevel ?? 'warn', ...(backend ? ['--backend', backend] : [])];
    const logFd = openSync(logFile, 'a');
    const child = spawn(process.execPath, [...nodeArgs, ...args], {
      stdio: ['ignore', logFd, logFd],
      env: { ...process.env, ...(traceFile ? { MDEVFS_BENCH_TRACE: traceFile } : {}) },
    });
    closeSync(logFd);
    const d = new Daemon(work, dir, child, logFile, traceFile);
    track(d);
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (d.done) throw new Error(`mdevfs exited before it was ready:\n${d.logTail()}`);
      if (await fsp.stat(join(dir, 'bus', 'mdev')).then(() => true, () => false)) break;
      if (Date.now() > deadline) {
        await d.stop();
        throw new Error(`mdevfs was not ready after 20 s:\n${d.logTail()}`);
      }
      await sleep(25);
    }
    return d;
  }

  path(...parts: string[]): string {
    return join(this.dir, ...parts);
  }

  logTail(lines = 20): string {
    try {
      return readFileSync(this.logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  /** VmRSS of the daemon in KiB, from /proc (read by the bench, not by the daemon). */
  rssKb(): number {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  }

  /** Asks a traced daemon for its counters and write timeline, which it then resets. */
  async trace(): Promise<Trace> {
    if (!this.traceFile) throw new Error('daemon is not traced');
    rmSync(this.traceFile, { force: true });
    this.child.kill('SIGUSR2');
    for (let i = 0; i < 400; i++) {
      if (existsSync(this.traceFile)) return JSON.parse(readFileSync(this.traceFile, 'utf8')) as Trace;
      await sleep(10);
    }
    throw new Error('traced daemon did not answer SIGUSR2');
  }

  /** SIGTERM, wait for the clean unmount; detach lazily if it does not come. */
  stop(): Promise<void> {
    return stopMounted(this.child, this.done ? null : this.exited, this.dir, this.work, 15_000);
  }

  static async stopAll(): Promise<void> {
    await Promise.all([...running].map((d) => d.stop().catch(() => undefined)));
  }
}

/**
 * Stops a daemon serving `dir` (SIGTERM; SIGKILL after graceMs), unmounts lazily what it
 * left mounted and removes `work` once nothing is mounted there. exited: null if it has.
 */
export async function stopMounted(child: ChildProcess, exited: Promise<unknown> | null, dir: string, work: string, graceMs: number): Promise<void> {
  if (exited) {
    child.kill('SIGTERM');
    const t = await Promise.race([exited.then(() => 'exited'), sleep(graceMs).then(() => 'timeout')]);
    if (t === 'timeout') {
      child.kill('SIGKILL');
      await exited;
    }
  }
  if (isMounted(dir)) await lazyUnmount(dir).catch(() => undefined);
  if (!isMounted(dir)) rmSync(work, { recursive: true, force: true });
}

/** Something is mounted at dir (the daemon's own mountinfo reader). */
export function isMounted(dir: string): boolean {
  return mountAt(dir) !== undefined;
}
