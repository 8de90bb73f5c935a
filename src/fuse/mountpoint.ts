import { execFile } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface MountEntry {
  mountpoint: string;
  fstype: string;
  source: string;
  /** major:minor of the mount's st_dev (for FUSE, the connection's fusectl name is (major << 20) | minor). */
  dev: string;
}

/** /proc/self/mountinfo escapes space, tab, newline and backslash as octal. */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function mountAt(dir: string): MountEntry | undefined {
  let found: MountEntry | undefined;
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const f = pre.split(' ');
    const mp = unescape(f[4] ?? '');
    const [fstype, source] = post.split(' ');
    if (mp === dir) found = { mountpoint: mp, fstype: fstype ?? '', source: unescape(source ?? ''), dev: f[2] ?? '' };
  }
  return found; // the last one is the one on top
}

export type MountState = { kind: 'free' } | { kind: 'stale'; entry: MountEntry } | { kind: 'live'; entry: MountEntry };

/**
 * Is a FUSE file system mounted at dir, and does it answer? Any other mount at dir (a bind mount
 * of a directory, a tmpfs: a container's volume, a kubelet hostPath) is a directory to mount on
 * top of, as mount(8) would: `free`. A FUSE mount is another daemon's tree (`live`) or a dead
 * one's (`stale`).
 *
 * Does it answer? A dead FUSE daemon leaves ENOTCONN, but
 * only on requests that reach the connection: the direct backend lets the kernel cache
 * entries and attributes for an hour, so stat(DIR) or [ -d DIR/bus/mdev ] still succeed
 * on a dead mount. statfs(2) is never cached: FUSE always sends it to the daemon.
 */
export async function inspect(dir: string): Promise<MountState> {
  const entry = mountAt(dir);
  if (!entry || !/^fuse(\.|blk$|$)/.test(entry.fstype)) return { kind: 'free' };
  try {
    await Promise.race([
      fs.statfs(dir),
      new Promise((_, reject) => setTimeout(() => reject(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })), 3000).unref()),
    ]);
    return { kind: 'live', entry };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTCONN' || code === 'ECONNABORTED' || code === 'ETIMEDOUT') return { kind: 'stale', entry };
    return { kind: 'live', entry };
  }
}

/** Detach a mount lazily (works on a dead FUSE mount, and on one still in use). */
export async function lazyUnmount(dir: string): Promise<void> {
  try {
    await run('fusermount', ['-uz', dir]);
  } catch {
    await run('umount', ['-l', dir]);
  }
}
