import { Errno, fail } from '../base/errno';
import type { HostDevice } from '../devices/device-model';
import type { MdevDevice, Parent } from './mdev-objects';

/**
 * A kobject that sends uevents (lib/kobject_uevent.c): what the core knows of it. The layer
 * that knows paths turns it into DEVPATH and SUBSYSTEM.
 */
export type Kobj =
  | { kind: 'device'; dev: MdevDevice } // the mdev device, bus mdev
  | { kind: 'vfio-dev'; dev: MdevDevice } // its vfio-dev/vfioN child (6.1)
  | { kind: 'vfio-group'; dev: MdevDevice } // its VFIO group's device, devices/virtual/vfio/<group>
  | { kind: 'parent'; parent: Parent } // the parent device
  | { kind: 'driver'; name: string; bus?: string } // bus/<bus, default mdev>/drivers/<name>
  | { kind: 'host'; dev: HostDevice } // a device of the driver core (a PCI function, ...)
  | { kind: 'host-vfio-dev'; dev: HostDevice } // its vfio-dev/vfioN child, while a VFIO driver has it (6.1)
  | { kind: 'host-vfio-group'; dev: HostDevice } // its IOMMU group's VFIO group device, meanwhile
  | { kind: 'module'; name: string } // module/<name>
  | { kind: 'class'; name: string } // class/<name> (a class kset: added and removed, nothing else)
  | { kind: 'bus'; name?: string }; // bus/<name, default mdev>

/** kobject_actions[], in the kernel's order. */
export const KOBJECT_ACTIONS = ['add', 'remove', 'change', 'move', 'online', 'offline', 'bind', 'unbind'] as const;
export type KobjAction = (typeof KOBJECT_ACTIONS)[number];

/** UUID_STRING_LEN */
const UUID_LEN = 36;
const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** Drops one trailing '\n' or '\0', as kobject_action_type and kobject_action_args do. */
function chomp(s: string): string {
  return s.endsWith('\n') || s.endsWith('\0') ? s.slice(0, -1) : s;
}

/**
 * kobject_synth_uevent's parsing of a write to a `uevent` file: an action word, optionally
 * followed by ` UUID [KEY=VALUE ...]` (alphanumeric keys and values, single spaces). Without a
 * UUID the event carries SYNTH_UUID=0; with one, SYNTH_UUID=<uuid> and SYNTH_ARG_KEY=VALUE.
 * Anything else is EINVAL and sends nothing.
 */
export function parseSynthUevent(buf: Buffer): { action: KobjAction; env: string[] } {
  const text = chomp(buf.toString('latin1'));
  if (text === '') fail(Errno.EINVAL, 'unknown uevent action string');
  const sp = text.indexOf(' ');
  const word = sp >= 0 ? text.slice(0, sp) : text;
  const action = KOBJECT_ACTIONS.find((a) => a === word);
  if (!action) fail(Errno.EINVAL, 'unknown uevent action string');
  if (sp < 0) return { action, env: ['SYNTH_UUID=0'] };
  // The arguments are what follows the first space, up to the end of the (unchomped) write.
  const args = chomp(buf.toString('latin1').slice(sp + 1));
  const bad = (): never => fail(Errno.EINVAL, 'incorrect uevent action arguments');
  if (args.length < UUID_LEN || !UUID_RE.test(args.slice(0, UUID_LEN))) bad();
  const env = [`SYNTH_UUID=${args.slice(0, UUID_LEN)}`];
  let rest = args.slice(UUID_LEN);
  while (rest !== '') {
    const m = /^ ([0-9A-Za-z]+)=([0-9A-Za-z]+)(?= |$)/.exec(rest);
    if (!m) bad();
    env.push(`SYNTH_ARG_${m![1]}=${m![2]}`);
    rest = rest.slice(m![0].length);
  }
  return { action, env };
}
