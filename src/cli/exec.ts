import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Runs argv in a private mount namespace where `tree` is bind-mounted over /sys and a
 * scratch directory over /etc/mdevctl.d, so unmodified tools that hard-code /sys (mdevctl
 * 1.2.0) see the emulation. Resolves with the command's exit code.
 */
export function runOverSys(tree: string, argv: readonly string[]): Promise<number> {
  const scratch = mkdtempSync(join(tmpdir(), 'mdevfs-etc-'));
  mkdirSync(join(scratch, 'scripts.d', 'callouts'), { recursive: true });
  mkdirSync(join(scratch, 'scripts.d', 'notifiers'), { recursive: true });
  const inner =
    'mount --bind "$1" /sys && mkdir -p /etc/mdevctl.d && mount --bind "$2" /etc/mdevctl.d || exit 125; shift 2; exec "$@"';
  const child = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', inner, 'sh', tree, scratch, ...argv], {
    stdio: 'inherit',
  });
  return new Promise((resolve) => {
    const done = (code: number) => {
      rmSync(scratch, { recursive: true, force: true });
      resolve(code);
    };
    child.on('error', () => done(127));
    child.on('exit', (code, signal) => done(code ?? (signal ? 128 + 1 : 1)));
  });
}
