import { createHash } from 'node:crypto';
import { join } from 'node:path';

/**
 * Where daemons keep their control sockets and locks, decided the same way by every command:
 * MDEVFS_CONTROL_DIR if set (the tests' scratch directories); /run/mdevfs for root;
 * $XDG_RUNTIME_DIR/mdevfs for a user in a login session; else a directory of that user's own,
 * ${TMPDIR:-/tmp}/mdevfs-UID (ensurePrivateDir makes it 0700 and refuses it if it is a link, someone
 * else's, or writable by others).
 */
export function controlDir(): string {
  if (process.env.MDEVFS_CONTROL_DIR) return process.env.MDEVFS_CONTROL_DIR;
  const uid = process.geteuid?.() ?? 0;
  if (uid === 0) return '/run/mdevfs';
  const xdg = process.env.XDG_RUNTIME_DIR;
  return xdg ? join(xdg, 'mdevfs') : join(process.env.TMPDIR || '/tmp', `mdevfs-${uid}`);
}

/** The name shared by the socket and the lock of the daemon serving `mountpoint`. */
function idOf(mountpoint: string): string {
  return createHash('sha256').update(mountpoint).digest('hex').slice(0, 16);
}

/** Where the daemon serving `mountpoint` listens, unless told otherwise. */
export function defaultControlPath(mountpoint: string): string {
  return join(controlDir(), `${idOf(mountpoint)}.sock`);
}

/** The file locked for as long as a daemon serves `mountpoint`. */
export function lockPath(mountpoint: string): string {
  return join(controlDir(), `${idOf(mountpoint)}.lock`);
}
