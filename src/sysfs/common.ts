import { Errno, fail } from '../core/errno';
import { type Alive, type DirNode, acceptWords, attr, dir, ro } from './nodes';

/** kobject uevent_store: a known action word (optionally with a UUID and env) is accepted. */
const UEVENT_ACTIONS = ['add', 'remove', 'change', 'move', 'online', 'offline', 'bind', 'unbind'];
export function ueventStore(buf: Buffer): number {
  const action = buf.toString('latin1').replace(/\n$/, '').split(' ')[0] ?? '';
  if (!UEVENT_ACTIONS.includes(action)) fail(Errno.EINVAL, 'unknown uevent action');
  return buf.length;
}

/** power/ of a device without runtime PM (Debian's PM config), as the 6.1 transcript shows. */
export function powerDir(alive: Alive): DirNode {
  return dir(
    {
      async: () => attr(0o644, () => 'disabled\n', acceptWords(['enabled', 'disabled']), alive),
      autosuspend_delay_ms: () =>
        attr(0o644, () => fail(Errno.EIO, 'autosuspend is off'), () => fail(Errno.EIO, 'autosuspend is off'), alive),
      control: () => attr(0o644, () => 'auto\n', acceptWords(['auto', 'on']), alive),
      runtime_active_kids: () => ro('0\n', alive),
      runtime_active_time: () => ro('0\n', alive),
      runtime_enabled: () => ro('disabled\n', alive),
      runtime_status: () => ro('unsupported\n', alive),
      runtime_suspended_time: () => ro('0\n', alive),
      runtime_usage: () => ro('0\n', alive),
    },
    alive,
  );
}
