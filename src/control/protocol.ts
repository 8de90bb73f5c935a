import { createHash } from 'node:crypto';
import { join } from 'node:path';

/**
 * Where daemons keep their control sockets and locks: /run/mdevfs for root, $XDG_RUNTIME_DIR/mdevfs
 * for other users (undefined if unset), or MDEVFS_CONTROL_DIR (the tests' scratch directories).
 */
export function controlDir(): string | undefined {
  if (process.env.MDEVFS_CONTROL_DIR) return process.env.MDEVFS_CONTROL_DIR;
  if (process.geteuid?.() === 0) return '/run/mdevfs';
  const xdg = process.env.XDG_RUNTIME_DIR;
  return xdg ? join(xdg, 'mdevfs') : undefined;
}

/** The name shared by the socket and the lock of the daemon serving `mountpoint`. */
function idOf(mountpoint: string): string {
  return createHash('sha256').update(mountpoint).digest('hex').slice(0, 16);
}

/** Where the daemon serving `mountpoint` listens, unless told otherwise (undefined: no control directory). */
export function defaultControlPath(mountpoint: string): string | undefined {
  const dir = controlDir();
  return dir && join(dir, `${idOf(mountpoint)}.sock`);
}

/** The file locked for as long as a daemon serves `mountpoint` (next to the socket when there is no control directory). */
export function lockPath(mountpoint: string, socketPath: string): string {
  const dir = controlDir();
  return dir ? join(dir, `${idOf(mountpoint)}.lock`) : `${socketPath}.lock`;
}
