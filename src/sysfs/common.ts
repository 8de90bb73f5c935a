import { Errno, fail } from '../base/errno';
import { type Alive, type AttrNode, type DirNode, type Node, acceptWords, attr, dir, dynDir, link, ro } from './nodes';
import { VFIO_DEVICES } from './paths';

/** kobject uevent_store: a known action word (optionally with a UUID and env) is accepted. */
const UEVENT_ACTIONS = ['add', 'remove', 'change', 'move', 'online', 'offline', 'bind', 'unbind'];
export function ueventStore(buf: Buffer): number {
  const action = buf.toString('latin1').replace(/\n$/, '').split(' ')[0] ?? '';
  if (!UEVENT_ACTIONS.includes(action)) fail(Errno.EINVAL, 'unknown uevent action');
  return buf.length;
}

/**
 * A bus's drivers_autoprobe (drivers/base/bus.c, drivers_autoprobe_store): any write is accepted
 * and turns probing off when its first byte is '0', on otherwise; it reads 0 or 1.
 */
export function autoprobeAttr(get: () => boolean, set: (on: boolean) => void): AttrNode {
  return attr(0o644, () => `${get() ? 1 : 0}\n`, (buf) => {
    set(buf[0] !== 0x30);
    return buf.length;
  });
}

/**
 * vfio-dev/ of a device a VFIO driver registered (6.1, vfio_main.c: a "vfio-dev" class device named
 * vfioN below it): vfioN/ with a `device` link back, power/, subsystem and an empty uevent.
 */
export function vfioDevDir(index: number, devicePath: readonly string[], alive: Alive, uevent: (buf: Buffer) => number): DirNode {
  const name = VFIO_DEVICES.nameOf(index);
  return dir(
    {
      [name]: () =>
        dir(
          {
            device: () => link(devicePath, alive),
            power: () => powerDir(alive),
            subsystem: () => link(VFIO_DEVICES.path, alive),
            uevent: () => attr(0o644, () => '', uevent, alive),
          },
          alive,
        ),
    },
    alive,
  );
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
