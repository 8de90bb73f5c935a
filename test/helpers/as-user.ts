import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { dirname } from 'node:path';

/** Runs argv as user nobody (group nogroup, no supplementary groups): what any local user can do. */
export function asNobody(argv: readonly string[], opts: { cwd?: string; timeout?: number; env?: Record<string, string> } = {}): SpawnSyncReturns<string> {
  // env -u: tap adds its NODE_OPTIONS hooks to every child, and they write tap's files as nobody at exit.
  return spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'env', '-u', 'NODE_OPTIONS', ...argv], {
    encoding: 'utf8',
    timeout: opts.timeout ?? 20000,
    cwd: opts.cwd,
    // The system's tools, not root's (a PATH under /root is not reachable by nobody).
    env: { PATH: '/usr/local/bin:/usr/bin:/bin', LC_ALL: 'C', ...opts.env },
  });
}

/** mkdtemp makes 0700 directories: let other users reach `path` (a mountpoint inside one). */
export function letOthersTraverse(path: string): void {
  chmodSync(dirname(path), 0o755);
}
