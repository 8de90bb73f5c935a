import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import t from 'tap';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const REPO = resolve(__dirname, '..', '..');
export const CLI = join(REPO, 'scripts', 'mdevfs');
/** The suite runs once per backend: `MDEVFS_TEST_BACKEND=fuse-native tap ...` (unset: the default). */
export const BACKEND = process.env.MDEVFS_TEST_BACKEND;
export const backendArgs = BACKEND ? ['--backend', BACKEND] : [];

/**
 * The environment for mdevfs processes: the test's, without what tap injects into child node
 * processes (NODE_OPTIONS loaders, TAP_* and _TAPJS_* variables), so daemons run as users run them.
 */
export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (k !== 'NODE_OPTIONS' && !/^_?TAP/.test(k)) env[k] = v;
  return { ...env, ...extra };
}

/**
 * Python for scripts run with python3 -c: write(path, data) as one write(2), the way a C writer
 * stores to a sysfs attribute (Python's buffered open() may split or merge writes). Needs `import os`.
 */
export const PY_WRITE = String.raw`
def write(path, data):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)
`;

export interface Daemon {
  dir: string;
  proc: ChildProcess;
  /** Everything the daemon wrote on stderr so far. */
  logs(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface StartOptions {
  profile?: string | object;
  abi?: string;
  logLevel?: string;
  dir?: string;
  env?: Record<string, string>;
}

/** Runs the real daemon as a child process (it must never read its own mount). */
export async function startDaemon(opts: StartOptions = {}): Promise<Daemon> {
  const work = mkdtempSync(join(tmpdir(), 'mdevfs-test-'));
  const dir = opts.dir ?? join(work, 'mnt');
  const args = [CLI, 'mount', dir, '--log-level', opts.logLevel ?? 'info'];
  if (opts.profile !== undefined) {
    let p = opts.profile;
    if (typeof p === 'object') {
      p = join(work, 'profile.json');
      writeFileSync(p, JSON.stringify(opts.profile));
    }
    args.push('--profile', p);
  }
  if (opts.abi) args.push('--abi', opts.abi);
  if (BACKEND) args.push('--backend', BACKEND);
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: cliEnv(opts.env) });
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  for (let i = 0; i < 200 && !existsSync(join(dir, 'bus', 'mdev')); i++) {
    if (proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!existsSync(join(dir, 'bus', 'mdev'))) {
    proc.kill('SIGKILL');
    throw new Error(`daemon did not come up: ${stderr}`);
  }
  return {
    dir,
    proc,
    logs: () => stderr,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null) proc.kill(signal);
      const code = await exited;
      rmSync(work, { recursive: true, force: true });
      return code;
    },
  };
}

/**
 * One fresh daemon per test of the file: each top-level t.test gets its own, started before it and
 * stopped after it (its nested subtests share it), so every test starts from the same known state and
 * can run alone (`npm run test:one -- FILE NAME`). A test filtered out starts none. The object returned
 * stands for the daemon of the test running now; outside a test it throws.
 */
export function daemonPerTest(opts: StartOptions = {}): Daemon {
  let current: Daemon | undefined;
  t.beforeEach(async (test) => {
    if (test.parent === t) current = await startDaemon(opts);
  });
  t.afterEach(async (test) => {
    if (test.parent !== t) return;
    const d = current;
    current = undefined;
    await d?.stop();
  });
  const now = (): Daemon => {
    if (!current) throw new Error('daemonPerTest: no daemon outside a test');
    return current;
  };
  return {
    get dir() {
      return now().dir;
    },
    get proc() {
      return now().proc;
    },
    logs: () => now().logs(),
    stop: (signal) => now().stop(signal),
  };
}

export interface ShResult {
  stdout: string;
  stderr: string;
  code: number | null;
  out: string; // stdout + stderr merged in order is not available; callers use 2>&1
}

/** Runs a bash script with cwd at the mount (the mount's root plays /sys). */
export function sh(dir: string, script: string, env: Record<string, string> = {}): ShResult {
  const r = spawnSync('bash', ['-c', script], { cwd: dir, encoding: 'utf8', env: { ...process.env, LC_ALL: 'C', ...env } });
  return { stdout: r.stdout, stderr: r.stderr, code: r.status, out: r.stdout + r.stderr };
}

export function isMounted(dir: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4] === dir);
}

/** A temporary directory removed when the test file ends. */
export function scratch(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
