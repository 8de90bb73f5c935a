import { Errno, fail } from '../base/errno';
import { type Alive, type DirNode, type Node, acceptWords, attr, dynDir, ro } from './nodes';

/** kobject uevent_store: a known action word (optionally with a UUID and env) is accepted. */
const UEVENT_ACTIONS = ['add', 'remove', 'change', 'move', 'online', 'offline', 'bind', 'unbind'];
export function ueventStore(buf: Buffer): number {
  const action = buf.toString('latin1').replace(/\n$/, '').split(' ')[0] ?? '';
  if (!UEVENT_ACTIONS.includes(action)) fail(Errno.EINVAL, 'unknown uevent action');
  return buf.length;
}

/** power/ of a device without runtime PM (Debian's PM config), as the 6.1 transcript shows. */
const POWER: Record<string, (alive: Alive) => Node> = {
  async: (alive) => attr(0o644, () => 'disabled\n', acceptWords(['enabled', 'disabled']), alive),
  autosuspend_delay_ms: (alive) =>
    attr(0o644, () => fail(Errno.EIO, 'autosuspend is off'), () => fail(Errno.EIO, 'autosuspend is off'), alive),
  control: (alive) => attr(0o644, () => 'auto\n', acceptWords(['auto', 'on']), alive),
  runtime_active_kids: (alive) => ro('0\n', alive),
  runtime_active_time: (alive) => ro('0\n', alive),
  runtime_enabled: (alive) => ro('disabled\n', alive),
  runtime_status: (alive) => ro('unsupported\n', alive),
  runtime_suspended_time: (alive) => ro('0\n', alive),
  runtime_usage: (alive) => ro('0\n', alive),
};
const POWER_NAMES = Object.keys(POWER);
const NO_SUBDIRS = () => 0;

/** One table for every device's power/ (each device keeps one small node, not a table of closures). */
export function powerDir(alive: Alive): DirNode {
  return dynDir(
    () => POWER_NAMES,
    (name) => (Object.hasOwn(POWER, name) ? POWER[name]!(alive) : undefined),
    alive,
    NO_SUBDIRS,
  );
}
