/**
 * The command line: `mdevfs COMMAND [options] [args] [-- CMD...]`. Options are `--name value` or
 * `--name=value` and may come anywhere before `--`; anything the command does not take (an unknown
 * or misspelt option, an option of another command, a stray argument) is a UsageError.
 */
import { existsSync, lstatSync, readlinkSync, realpathSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { ensurePrivateDir } from '../control/private-dir';
import { controlDir, defaultControlPath } from '../control/paths';
import { mountAt } from '../fuse/mountpoint';

export class UsageError extends Error {}

export interface CommandSpec {
  /** The options it takes (each takes a value, except the FLAGS). */
  options: readonly string[];
  /** How many positional arguments it takes. */
  min: number;
  max: number;
  /** Takes a command after `--` (exec). */
  rest?: boolean;
  usage: string;
  /** What it does, for `mdevfs CMD --help` (lines of at most 100 characters). */
  about: string;
  /** One command line a user can copy. */
  example: string;
}

const MOUNT_OPTIONS = ['profile', 'abi', 'log-level', 'log-format', 'control', 'backend', 'udev', 'journal', 'journal-size', 'host-sysfs'];
/** Options that take no value (present: "true"). */
const FLAGS = ['udev', 'udevd', 'host-sysfs', 'json', 'follow', 'hang', 'succeed', 'sticky'];
/** Short spellings. */
const ALIASES: Readonly<Record<string, string>> = { '-o': 'output', '-h': 'help', '-V': 'version' };

export const COMMANDS: Readonly<Record<string, CommandSpec>> = {
  mount: {
    options: MOUNT_OPTIONS,
    min: 1,
    max: 1,
    usage: 'mdevfs mount DIR [options]',
    about: 'Mounts the tree at DIR (created if missing, removed again if it was) and serves it in the\n' +
      'foreground until SIGINT (Ctrl-C), SIGTERM or SIGHUP, then unmounts. With --host-sysfs, DIR also\n' +
      'shows the host\'s own /sys around the emulation, read-only, but not the mounts under the host\'s\n' +
      '/sys (cgroup, debugfs...: empty directories there; exec mounts them again).',
    example: 'mdevfs mount ./mount --profile nvidia-t4',
  },
  exec: {
    options: [...MOUNT_OPTIONS, 'udevd'],
    min: 0,
    max: 0,
    rest: true,
    usage: 'mdevfs exec [options] -- CMD [ARG...]',
    about: 'Mounts a fresh tree, runs CMD with it over /sys (and a scratch /etc/mdevctl.d) in a private\n' +
      'mount namespace, unmounts; exits with CMD\'s status. With --host-sysfs, CMD sees the host\'s own\n' +
      '/sys around the emulation (read-only), with the host\'s mounts under /sys (cgroup, bpf...) in place.',
    example: 'mdevfs exec -- mdevctl types',
  },
  ctl: {
    options: ['control', 'json', 'event', 'device', 'state', 'since', 'timeout', 'follow', 'fault', 'id', 'op', 'parent', 'type', 'uuid', 'attr', 'path',
      'errno', 'delay', 'jitter', 'hang', 'succeed', 'content', 'after', 'every', 'probability', 'seed', 'times', 'sticky'],
    min: 1,
    max: 4,
    usage: 'mdevfs ctl [DIR] parents|add-parent FILE|PROFILE|remove-parent NAME|state|mark|wait ...|reset|fault ...|journal [--json] [--control PATH]',
    about: 'Steers the daemon serving DIR through its control API (docs/control-api.md): its parents (hot-plug\n' +
      'the parent(s) of a profile FILE or of a built-in PROFILE, unregister one as the kernel does), its\n' +
      'state, a mark, a wait for an event or a device state (exit 1 at --timeout), a reset to the start,\n' +
      'fault rules (fault add --op OP [--type T ...] --errno E|--delay MS|--hang|--succeed|--content TEXT\n' +
      '[--times N --after N --every N --probability P --seed N --sticky]; fault change ID with the same\n' +
      'flags; fault list, rm ID, release ID), the journal of writes and faults (journal [--since N]\n' +
      '[--follow] [--json]).\n' +
      'Inside mdevfs exec, DIR may be left out: $MDEVFS_CONTROL is the socket.',
    example: 'mdevfs ctl ./mount wait --event bind:83b8f4f2-509f-382f-3c1e-e6bfe0fa1001 --timeout 5',
  },
  wait: {
    options: ['control', 'timeout'],
    min: 0,
    max: 1,
    usage: 'mdevfs wait DIR [--timeout SECONDS] [--control PATH]',
    about: 'Exits 0 once the daemon serving DIR answers (also while it is still being built or started);\n' +
      '1 after --timeout seconds (default 10).',
    example: 'mdevfs mount ./mount & mdevfs wait ./mount',
  },
  events: {
    options: ['control', 'since', 'until', 'timeout'],
    min: 0,
    max: 1,
    usage: 'mdevfs events DIR [--since SEQNUM] [--until ACTION:NAME] [--timeout SECONDS] [--control PATH]',
    about: 'Prints the uevents of the daemon serving DIR as JSON lines, in the kernel\'s order.',
    example: 'mdevfs events ./mount --since 0 --until add:83b8f4f2-509f-382f-3c1e-e6bfe0fa1001',
  },
  record: {
    options: ['output'],
    min: 0,
    max: 1,
    usage: 'mdevfs record [ROOT] [-o FILE]',
    about: 'Writes a profile that replays the mdev parents of ROOT (default /sys, this host; or a copy of a\n' +
      'tree, or a mount) to FILE or standard output. Replay it with --profile FILE.',
    example: 'mdevfs record -o recording.json',
  },
  profiles: {
    options: ['gpus'],
    min: 0,
    max: 2,
    usage: 'mdevfs profiles [show NAME [--gpus N]]',
    about: 'Lists the built-in profiles, one a line, with the host each emulates; `show NAME` prints one as a\n' +
      'JSON profile that --profile FILE replays exactly, to start your own from.',
    example: 'mdevfs profiles show nvidia-t4 --gpus 4 > t4x4.json && mdevfs exec --profile t4x4.json -- mdevctl types',
  },
  help: { options: [], min: 0, max: 1, usage: 'mdevfs help [COMMAND]', about: 'Prints the global help, or that of COMMAND.', example: 'mdevfs help mount' },
};

/** What each option means, for the help texts (first line: its spelling with its value). */
export const OPTION_HELP: Readonly<Record<string, string>> = {
  profile: '--profile NAME|FILE   a built-in profile (`mdevfs --help` lists them; default: samples) or a JSON profile file',
  abi: '--abi 6.1|4.17        kernel ABI to emulate (default: the profile\'s, else 6.1)',
  'log-level': '--log-level LEVEL     fatal|error|warn|info|debug|trace|silent (default: warn; info logs every refused request)',
  'log-format': '--log-format FORMAT   json (one object a line, for machines) or pretty (for people; the default when\n' +
    '                      stderr is a terminal, else json)',
  control: '--control PATH        the daemon\'s control socket (default: one per DIR in /run/mdevfs for root, else\n' +
    '                      $XDG_RUNTIME_DIR/mdevfs, else ${TMPDIR:-/tmp}/mdevfs-UID)',
  backend: '--backend NAME        direct (root\'s default) or fuse-native (libfuse2; an ordinary user\'s default)',
  udev: '--udev                also send the uevents to libudev listeners, as udevd does (needs python3)',
  udevd: '--udevd               with --udev: run Debian\'s systemd-udevd inside (its rules run; private /dev, /run)',
  journal: '--journal FILE        append every write to the tree and every fault fired to FILE, one JSON line each',
  'journal-size': '--journal-size N      entries the journal keeps in memory (default 10000); 0: no journal (ctl journal\n' +
    '                      and waits for journal entries are refused)',
  'host-sysfs': '--host-sysfs          also show the host\'s own /sys where the emulation has nothing, read-only\n' +
    '                      (EROFS/EACCES); a profile address the host has is refused. exec mounts the\n' +
    '                      host\'s mounts under /sys (cgroup, bpf...) again in place; mount does not',
  timeout: '--timeout SECONDS     give up (exit 1) after this long',
  since: '--since SEQNUM        first print the retained events with a greater SEQNUM (0: all of them)',
  until: '--until ACTION:NAME   exit 0 once that event was printed (NAME: the last part of DEVPATH)',
  output: '-o, --output FILE     write to FILE instead of standard output',
  json: '--json                ctl: answer as JSON (one object a line) for scripts',
  follow: '--follow              ctl journal: then print every new entry until interrupted',
  event: '--event ACTION:NAME   ctl wait: a uevent with that ACTION whose DEVPATH ends in NAME',
  device: '--device UUID         ctl wait: the mdev UUID, with --state reserved|active|removing|gone',
  state: '--state STATE         ctl wait: the state --device must reach',
  id: '--id ID               ctl fault add: name the rule (default: the next number)',
  fault: '--fault ID            ctl wait: a journal entry of that rule (with --op, --errno, --path: of those;\n' +
    '                      --since is then a journal seq, as `ctl mark --json` gives it)',
  op: '--op OP               ctl fault add: create, remove, store, bind, unbind, sriov_numvfs,\n' +
    '                      current_vgpu_type or read (ctl wait: a journal entry\'s op)',
  parent: '--parent NAME         ctl fault add: only for this parent',
  type: '--type TYPE           ctl fault add: only for this type (e.g. mtty-2)',
  uuid: '--uuid UUID           ctl fault add: only for this device',
  attr: '--attr NAME           ctl fault add: only for this attribute',
  path: '--path GLOB           ctl fault add, wait: only where the canonical /sys/... path matches',
  errno: '--errno NAME          ctl fault add: fail with this errno (ENOSPC, EBUSY, ...); wait: an entry with it',
  delay: '--delay MS            ctl fault add: wait this long first (--jitter MS: give or take)',
  jitter: '--jitter MS           ctl fault add: with --delay, a uniform jitter',
  hang: '--hang                ctl fault add: wait until `ctl fault release ID`',
  succeed: '--succeed             ctl fault add: report success, change nothing',
  content: '--content TEXT        ctl fault add: a read returns TEXT',
  after: '--after N             ctl fault add: never on the first N matches',
  every: '--every N             ctl fault add: on every Nth match',
  probability: '--probability P       ctl fault add: with probability P (0-1; --seed N repeats a run)',
  seed: '--seed N              ctl fault add: the seed of --probability and --jitter',
  times: '--times N             ctl fault add: at most N times',
  sticky: '--sticky              ctl fault add: once fired, at every later match',
  gpus: '--gpus N              with show: N GPUs (1-16) of a one-GPU built-in (nvidia-t4, nvidia-v100, nvidia-a10,\n' +
    '                      nvidia-l40s): the first where the built-in has it, the others at 0000:01:00.0,\n' +
    '                      0000:02:00.0... (one bus each), each in its own IOMMU group',
};

/** `mdevfs CMD --help`: its usage, what it does, its options and an example. */
export function commandHelp(command: string): string {
  const spec = COMMANDS[command]!;
  const options = [...spec.options.map((o) => OPTION_HELP[o]!), '-h, --help            this text'];
  return `Usage: ${spec.usage}\n\n${spec.about}\n\nOptions:\n${options.map((o) => '  ' + o.replace(/\n/g, '\n  ')).join('\n')}\n\n` +
    `Example:\n  ${spec.example}\n\nAll commands: mdevfs --help\n`;
}

const ALL_OPTIONS = [...new Set(Object.values(COMMANDS).flatMap((c) => c.options)), 'help', 'version'];

export interface Invocation {
  /** With help: the command whose help is asked for (undefined: the global help). */
  command: string | undefined;
  positionals: string[];
  options: Map<string, string>;
  /** What follows `--`. */
  rest: string[];
  help: boolean;
  version: boolean;
}

export function parseCommandLine(argv: readonly string[]): Invocation {
  const dashdash = argv.indexOf('--');
  const args = dashdash >= 0 ? argv.slice(0, dashdash) : argv;
  const rest = dashdash >= 0 ? argv.slice(dashdash + 1) : [];
  const positionals: string[] = [];
  const options = new Map<string, string>();
  /** How the user spelt each option given (-o or --output): errors name what they typed. */
  const typed = new Map<string, string>();
  // --help wins over everything else on the line: that command's help if the line names one.
  if (args.includes('--help') || args.includes('-h')) {
    const named = args.find((a) => Object.hasOwn(COMMANDS, a));
    return { command: named, positionals, options, rest, help: true, version: false };
  }
  if (args.includes('--version') || args.includes('-V')) return { command: undefined, positionals, options, rest, help: false, version: true };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('-') || a === '-') {
      positionals.push(a);
      continue;
    }
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const spelt = eq >= 0 ? a.slice(0, eq) : a;
    const name = ALIASES[spelt] ?? (spelt.startsWith('--') ? spelt.slice(2) : undefined);
    if (name === undefined || !ALL_OPTIONS.includes(name)) throw new UsageError(`unknown option ${spelt}${hint(spelt)}`);
    if (name === 'help' || name === 'version') throw new UsageError(`${spelt} takes no value`);
    let value: string | undefined;
    if (FLAGS.includes(name)) {
      if (eq >= 0) throw new UsageError(`${spelt} takes no value`);
      value = 'true';
    } else if (eq >= 0) value = a.slice(eq + 1);
    else {
      value = args[i + 1];
      if (value === undefined || value.startsWith('--')) throw new UsageError(`${spelt} needs a value`);
      i++;
    }
    if (options.has(name)) throw new UsageError(`${typed.get(name) === spelt ? spelt : `${typed.get(name)} (${spelt})`} given twice`);
    options.set(name, value);
    typed.set(name, spelt);
  }
  const [command, ...operands] = positionals;
  if (command === undefined) throw new UsageError(`missing command (${Object.keys(COMMANDS).filter((c) => c !== 'help').join(', ')})`);
  const spec = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (!spec) throw new UsageError(`unknown command "${command}"${closest(command, Object.keys(COMMANDS), '')}`);
  for (const [name, spelt] of typed) {
    if (!spec.options.includes(name)) {
      const takes = spec.options.length ? `it takes ${spec.options.map((o) => '--' + o).join(', ')}` : 'it takes none';
      throw new UsageError(`mdevfs ${command} does not take ${spelt} (${takes})`);
    }
  }
  if (command === 'help') {
    const about = operands[0];
    if (about !== undefined && !Object.hasOwn(COMMANDS, about)) {
      throw new UsageError(`no help for "${about}": not a command${closest(about, Object.keys(COMMANDS), '')}`);
    }
    return { command: about, positionals: [], options, rest, help: true, version: false };
  }
  if (operands.length > spec.max) throw new UsageError(`unexpected argument "${operands[spec.max]}"; usage: ${spec.usage}`);
  if (operands.length < spec.min) throw new UsageError(`missing argument; usage: ${spec.usage}`);
  if (dashdash >= 0 && !spec.rest) throw new UsageError(`mdevfs ${command} takes nothing after --; usage: ${spec.usage}`);
  if (spec.rest && rest.length === 0) throw new UsageError(`missing command after --; usage: ${spec.usage}`);
  return { command, positionals: operands, options, rest, help: false, version: false };
}

function hint(name: string): string {
  return closest(name.replace(/^-+/, ''), ALL_OPTIONS, '--');
}

/** ` (did you mean --profile?)` when a known word is at most 2 edits away. */
function closest(word: string, known: readonly string[], prefix: string): string {
  let best: string | undefined;
  let bestDist = 3;
  for (const k of known) {
    const d = distance(word, k);
    // Not for a word shorter than its distance (-x is no misspelt --op).
    if (d < bestDist && d < word.length) [best, bestDist] = [k, d];
  }
  return best ? ` (did you mean ${prefix}${best}?)` : '';
}

/** Levenshtein distance. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/**
 * The directory DIR names, absolute and without links (so that `./m`, `$PWD/m` and a link to m
 * find the same daemon): its parent is resolved with realpath, then DIR's own links are followed
 * one at a time. DIR itself is never stat'ed when it is a mountpoint (one is never a link): its
 * daemon may be dead (ENOTCONN) or hung. DIR may not exist yet (mount creates it).
 */
export function mountpointOf(dirArg: string): string {
  let path = resolve(dirArg);
  for (let links = 0; ; links++) {
    let parent: string;
    try {
      parent = realpathSync(dirname(path));
    } catch (err) {
      throw new UsageError(`${dirArg}: its parent directory is not usable (${(err as NodeJS.ErrnoException).code})`);
    }
    const dir = resolve(parent, basename(path));
    if (mountAt(dir)) return dir;
    let target: string;
    try {
      if (!lstatSync(dir).isSymbolicLink()) return dir;
      target = readlinkSync(dir);
    } catch {
      return dir; // missing (or not ours to look at): named as given
    }
    if (links >= MAX_LINKS) throw new UsageError(`${dirArg}: too many levels of symbolic links (ELOOP)`);
    path = resolve(parent, target);
  }
}

/** As the kernel's path walk (MAXSYMLINKS). */
const MAX_LINKS = 40;

/**
 * The socket of `wait` or `events` without DIR: --control, else $MDEVFS_CONTROL (what `mdevfs
 * exec` gives its command, with $MDEVFS_ROOT, the tree as the command sees it).
 */
export function controlFromEnv(options: ReadonlyMap<string, string>): { socket: string; root: string | undefined } {
  const socket = options.get('control') ?? process.env.MDEVFS_CONTROL;
  if (!socket) throw new UsageError('missing DIR (outside mdevfs exec, MDEVFS_CONTROL is not set)');
  return { socket, root: process.env.MDEVFS_ROOT };
}

/** --control, else the socket in the control directory for DIR's mountpoint (see controlDir). */
export function controlPathFor(dirArg: string, options: ReadonlyMap<string, string>): string {
  return options.get('control') ?? defaultControlPath(mountpointOf(dirArg));
}

/**
 * Checks the control directory of this user's daemons as ensurePrivateDir does (an Error saying
 * what is wrong); with create, makes it if missing. The clients (ctl, wait, events) check it too,
 * so that they never talk to a socket that someone else could have put there.
 */
export function checkControlDir(options: ReadonlyMap<string, string>, create: boolean): void {
  if (options.has('control')) return;
  const dir = controlDir();
  if (create || existsSync(dir)) ensurePrivateDir(dir, { create });
}

/**
 * What to say when the daemon of DIR does not answer: DIR as the user gave it (made absolute), or
 * the socket they gave with --control; never the name derived for the socket.
 */
export function noDaemon(dirArg: string, options: ReadonlyMap<string, string>, err: unknown): string {
  const control = options.get('control');
  const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  return control === undefined ? `no daemon answers on ${resolve(dirArg)} (${why}: no mdevfs serves it)` : `no daemon answers on ${control} (${why})`;
}
