import { spawn, spawnSync } from 'node:child_process';
import { closeSync, constants, fstatSync, openSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Takes an exclusive flock(2) on `path` without waiting, held until this process exits.
 * Node has no flock: util-linux flock(1) locks the open file description we pass it as fd 3,
 * and the lock stays with our own descriptor (close-on-exec, so no child keeps it) after it exits.
 * Returns false if another process holds the lock.
 *
 * The file is removed when we exit, still holding the lock. So that a daemon that opened it just
 * before cannot then lock a file that is no longer at `path`, a lock counts only if `path` still
 * names the file we locked; otherwise we try again with the new one. A lock held by someone else
 * may be another daemon's sweep removing it (sweepStaleLocks holds it for one rm): it counts as a
 * live daemon's only once it has been held, at `path`, for HELD_MS.
 */
export function lockForLife(path: string): boolean {
  let heldFor = 0;
  let replaced = 0;
  for (;;) {
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    } catch (err) {
      throw new Error(`cannot open the lock file ${path}: ${(err as Error).message}`);
    }
    const r = spawnSync('flock', ['--exclusive', '--nonblock', '3'], { stdio: ['ignore', 'ignore', 'pipe', fd], encoding: 'utf8' });
    if (r.status !== 0 && r.status !== 1) {
      closeSync(fd);
      throw new Error(`cannot lock ${path} with flock(1): ${r.error?.message ?? r.stderr.trim()}`);
    }
    const same = namesFile(path, fd);
    if (r.status === 0 && same) {
      // fd stays open (and locked) until the process is gone.
      process.on('exit', () => rmSync(path, { force: true }));
      return true;
    }
    closeSync(fd);
    // Not ours. Held, and still at `path`: a daemon, or another daemon's sweep (sweepStaleLocks)
    // that holds it only while it removes it. Give a sweep a moment before believing a daemon.
    if (r.status === 1 && same) {
      if (heldFor >= HELD_MS) return false;
      sleepMs(SWEEP_WAIT_MS);
      heldFor += SWEEP_WAIT_MS;
      continue;
    }
    // The file we opened was removed meanwhile (its holder exited, or it was swept): again.
    if (++replaced >= 10) throw new Error(`cannot lock ${path}: it keeps being replaced`);
  }
}

/** How long a lock held at its path may be a sweep's (which holds it for one rm) before it counts as a daemon's. */
const HELD_MS = 300;
const SWEEP_WAIT_MS = 25;

/** Whether `path` still names the file open as fd. */
function namesFile(path: string, fd: number): boolean {
  const open = fstatSync(fd);
  const named = statSync(path, { throwIfNoEntry: false });
  return !!named && named.ino === open.ino && named.dev === open.dev;
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** The locks (and sockets) daemons keep in the control directory: a 16-hex-digit id each. */
const LOCK_NAME = /^[0-9a-f]{16}\.lock$/;

/**
 * Removes, in the background, the locks in `dir` that no daemon holds (a daemon killed with
 * SIGKILL cannot remove its own), with the socket of the same name. Each is removed by flock(1)
 * while it holds the lock, the way a daemon removes its own at exit, so a daemon that opened it
 * meanwhile finds that `path` no longer names the file it locked and tries again (lockForLife).
 * A lock some daemon holds is left alone: `flock --nonblock` fails on it. Resolves with the
 * number removed; never rejects.
 */
export function sweepStaleLocks(dir: string, own: string): Promise<number> {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => LOCK_NAME.test(n) && join(dir, n) !== own);
  } catch {
    return Promise.resolve(0);
  }
  if (names.length === 0) return Promise.resolve(0);
  const script = 'n=0; for f; do flock --nonblock "$f" rm -f "$f" "${f%.lock}.sock" && n=$((n+1)); done; echo $n';
  return new Promise((resolve) => {
    let out = '';
    const child = spawn('sh', ['-c', script, 'sh', ...names.map((n) => join(dir, n))], { stdio: ['ignore', 'pipe', 'ignore'] });
    child.stdout.on('data', (d) => (out += d));
    child.on('error', () => resolve(0));
    child.on('exit', () => resolve(Number(out.trim()) || 0));
    child.unref();
  });
}
