import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { backendArgs, CLI, cliEnv, sh } from './daemon';

/**
 * One write(2) of `data` (a Python bytes expression) to `path` below the mount, from Python as a
 * client program does it: "ok", or the errno's name (EIO, EPERM...). `flags` are os.O_* names
 * besides O_WRONLY (vgpu-device-manager opens with O_TRUNC and O_SYNC).
 */
export function writeErrno(dir: string, path: string, data: string, flags: string[] = []): string {
  const open = ['os.O_WRONLY', ...flags.map((f) => `os.${f}`)].join(' | ');
  const script = `import os, errno
fd = os.open(${JSON.stringify(path)}, ${open})
try:
    os.write(fd, ${data})
    print('ok')
except OSError as e:
    print(errno.errorcode[e.errno])`;
  return sh(dir, `python3 -c '${script.replace(/'/g, `'\\''`)}'`).stdout.trim();
}

/** Runs a command through `mdevfs exec --profile PROFILE` (a fresh tree over /sys), as a user would. */
export function execWith(profile: string, ...command: string[]): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [CLI, 'exec', ...backendArgs, '--profile', profile, '--', ...command], { encoding: 'utf8', timeout: 60000, env: cliEnv() });
}
