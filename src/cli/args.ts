/**
 * The command line: `mdevfs COMMAND [options] [args] [-- CMD...]`. Options are `--name value` or
 * `--name=value` and may come anywhere before `--`; anything the command does not take (an unknown
 * or misspelt option, an option of another command, a stray argument) is a UsageError.
 */
import { realpathSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { controlDir, defaultControlPath } from '../control/protocol';

export class UsageError extends Error {}

export interface CommandSpec {
  /** The options it takes (each takes a value). */
  options: readonly string[];
  /** How many positional arguments it takes. */
  min: number;
  max: number;
  /** Takes a command after `--` (exec). */
  rest?: boolean;
  usage: string;
  /** An example of its use, for its --help. */
  example?: string;
}

const MOUNT_OPTIONS = ['profile', 'abi', 'log-level', 'control', 'backend', 'udev'];
/** Options that take no value (present: "true"). */
const FLAGS = ['udev'];

export const COMMANDS: Readonly<Record<string, CommandSpec>> = {
  mount: { options: MOUNT_OPTIONS, min: 1, max: 1, usage: 'mdevfs mount DIR [options]' },
  exec: { options: MOUNT_OPTIONS, min: 0, max: 0, rest: true, usage: 'mdevfs exec [options] -- CMD [ARG...]' },
  ctl: { options: ['control'], min: 2, max: 3, usage: 'mdevfs ctl DIR parents|add-parent FILE|PROFILE|remove-parent NAME [--control PATH]' },
  wait: { options: ['control', 'timeout'], min: 1, max: 1, usage: 'mdevfs wait DIR [--timeout SECONDS] [--control PATH]' },
  events: {
    options: ['control', 'since', 'until', 'timeout'],
    min: 1,
    max: 1,
    usage: 'mdevfs events DIR [--since SEQNUM] [--until ACTION:NAME] [--timeout SECONDS] [--control PATH]',
  },
  record: { options: ['output'], min: 0, max: 1, usage: 'mdevfs record [ROOT] [-o FILE]' },
  profiles: {
    options: ['gpus'],
    min: 0,
    max: 2,
    usage: 'mdevfs profiles [show NAME [--gpus N]]',
    example: 'mdevfs profiles show nvidia-t4 --gpus 4 > t4x4.json && mdevfs mount ./mount --profile t4x4.json',
  },
  help: { options: [], min: 0, max: 0, usage: 'mdevfs --help' },
};

const ALL_OPTIONS = [...new Set(Object.values(COMMANDS).flatMap((c) => c.options)), 'help'];

export interface Invocation {
  /** undefined with help. */
  command: string | undefined;
  positionals: string[];
  options: Map<string, string>;
  /** What follows `--`. */
  rest: string[];
  help: boolean;
}

export function parseCommandLine(argv: readonly string[]): Invocation {
  const dashdash = argv.indexOf('--');
  const args = dashdash >= 0 ? argv.slice(0, dashdash) : argv;
  const rest = dashdash >= 0 ? argv.slice(dashdash + 1) : [];
  const positionals: string[] = [];
  const options = new Map<string, string>();
  // --help wins over everything else on the line.
  if (args.includes('--help') || args.includes('-h')) return { command: undefined, positionals, options, rest, help: true };
  for (let i = 0; i < args.length; i++) {
    const a = args[i] === '-o' ? '--output' : args[i]!; // record's -o FILE
    if (!a.startsWith('-') || a === '-') {
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = a.startsWith('--') ? a.slice(2, eq >= 0 ? eq : undefined) : a;
    if (!a.startsWith('--') || !ALL_OPTIONS.includes(name)) throw new UsageError(`unknown option ${a.startsWith('--') ? '--' + name : a}${hint(name)}`);
    if (name === 'help') throw new UsageError('--help takes no value');
    let value: string | undefined;
    if (FLAGS.includes(name)) {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`);
      value = 'true';
    } else if (eq >= 0) value = a.slice(eq + 1);
    else {
      value = args[i + 1];
      if (value === undefined || value.startsWith('--')) throw new UsageError(`--${name} needs a value`);
      i++;
    }
    if (options.has(name)) throw new UsageError(`--${name} given twice`);
    options.set(name, value);
  }
  const [command, ...operands] = positionals;
  if (command === undefined) throw new UsageError(`missing command (${Object.keys(COMMANDS).filter((c) => c !== 'help').join(', ')})`);
  const spec = COMMANDS[command];
  if (!spec) throw new UsageError(`unknown command "${command}"${closest(command, Object.keys(COMMANDS), '')}`);
  for (const name of options.keys()) {
    if (!spec.options.includes(name)) {
      const takes = spec.options.length ? `it takes ${spec.options.map((o) => '--' + o).join(', ')}` : 'it takes none';
      throw new UsageError(`mdevfs ${command} does not take --${name} (${takes})`);
    }
  }
  if (operands.length > spec.max) throw new UsageError(`unexpected argument "${operands[spec.max]}"; usage: ${spec.usage}`);
  if (operands.length < spec.min) throw new UsageError(`missing argument; usage: ${spec.usage}`);
  if (dashdash >= 0 && !spec.rest) throw new UsageError(`mdevfs ${command} takes nothing after --; usage: ${spec.usage}`);
  if (spec.rest && rest.length === 0) throw new UsageError(`missing command after --; usage: ${spec.usage}`);
  return { command, positionals: operands, options, rest, help: false };
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
    if (d < bestDist) [best, bestDist] = [k, d];
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

/** The absolute mountpoint for DIR, resolving links above it but not DIR itself (it may be a dead mount). */
export function mountpointOf(dirArg: string): string {
  const abs = resolve(dirArg);
  let parent: string;
  try {
    parent = realpathSync(dirname(abs));
  } catch (err) {
    throw new UsageError(`${dirArg}: its parent directory is not usable (${(err as NodeJS.ErrnoException).code})`);
  }
  return resolve(parent, basename(abs));
}

/** --control, else the socket in the control directory for DIR's mountpoint. */
export function controlPathFor(dirArg: string, options: ReadonlyMap<string, string>): string {
  const path = options.get('control') ?? defaultControlPath(mountpointOf(dirArg));
  if (path === undefined) {
    throw new UsageError(`no directory for the control socket (${controlDir() ?? 'not root and XDG_RUNTIME_DIR is unset'}); give --control PATH`);
  }
  return path;
}
