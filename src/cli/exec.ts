import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { SENDER_PY } from '../events/udev';

export interface ExecOptions {
  /**
   * Deliver uevents as udevd does, inside a private network namespace of the command's own:
   * called with the stream that feeds the sender there (see events/udev.ts); returns the unsubscribe.
   */
  udev?: (sender: Writable) => () => void;
}

/**
 * libudev refuses every syspath under a /sys that is not sysfs ("is outside of sysfs, refusing")
 * unless told not to check: the command gets SYSTEMD_DEVICE_VERIFY_SYSFS=0 unless it has a value.
 */
function commandEnv(): NodeJS.ProcessEnv {
  return { SYSTEMD_DEVICE_VERIFY_SYSFS: '0', ...process.env };
}

/**
 * With --udev: the sender starts in the new network namespace, fed on fd 3; it detaches once its
 * socket exists (so CMD starts after it, and it is not CMD's child).
 */
const UDEV_SENDER = 'python3 -c "$MDEVFS_UDEV_SENDER" --detach <&3 3<&- || exit 125; unset MDEVFS_UDEV_SENDER; ';

/**
 * Runs argv in a private mount namespace where `tree` is bind-mounted over /sys and a
 * scratch directory over /etc/mdevctl.d, so unmodified tools that hard-code /sys (mdevctl
 * 1.2.0) see the emulation. Resolves with the command's exit code.
 */
export function runOverSys(tree: string, argv: readonly string[], opts: ExecOptions = {}): Promise<number> {
  const scratch = mkdtempSync(join(tmpdir(), 'mdevfs-etc-'));
  mkdirSync(join(scratch, 'scripts.d', 'callouts'), { recursive: true });
  mkdirSync(join(scratch, 'scripts.d', 'notifiers'), { recursive: true });
  const inner =
    'mount --bind "$1" /sys && mkdir -p /etc/mdevctl.d && mount --bind "$2" /etc/mdevctl.d || exit 125; shift 2; ' +
    (opts.udev ? `${UDEV_SENDER}exec "$@" 3<&-` : 'exec "$@"');
  const env = commandEnv();
  if (opts.udev) env.MDEVFS_UDEV_SENDER = SENDER_PY;
  const child = spawn('unshare', ['-m', ...(opts.udev ? ['-n'] : []), '--propagation', 'private', 'sh', '-c', inner, 'sh', tree, scratch, ...argv], {
    stdio: opts.udev ? ['inherit', 'inherit', 'inherit', 'pipe'] : 'inherit',
    env,
  });
  const unsubscribe = opts.udev?.(child.stdio[3] as Writable);
  return new Promise((resolve) => {
    const done = (code: number) => {
      unsubscribe?.();
      (child.stdio[3] as Writable | null)?.end();
      rmSync(scratch, { recursive: true, force: true });
      resolve(code);
    };
    child.on('error', () => done(127));
    child.on('exit', (code, signal) => done(code ?? (signal ? 128 + 1 : 1)));
  });
}
