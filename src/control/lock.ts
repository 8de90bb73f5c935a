import { spawnSync } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';

/**
 * Takes an exclusive flock(2) on `path` without waiting, held until this process exits.
 * Node has no flock: util-linux flock(1) locks the open file description we pass it as fd 3,
 * and the lock stays with our own descriptor (close-on-exec, so no child keeps it) after it exits.
 * Returns false if another process holds the lock.
 */
export function lockForLife(path: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    throw new Error(`cannot open the lock file ${path}: ${(err as Error).message}`);
  }
  const r = spawnSync('flock', ['--exclusive', '--nonblock', '3'], { stdio: ['ignore', 'ignore', 'pipe', fd], encoding: 'utf8' });
  if (r.status === 0) return true; // fd stays open (and locked) for the life of the process
  closeSync(fd);
  if (r.status === 1) return false;
  throw new Error(`cannot lock ${path} with flock(1): ${r.error?.message ?? r.stderr.trim()}`);
}
