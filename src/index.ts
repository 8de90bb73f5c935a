/**
 * mdevfs from TypeScript/Node tests (docs/testing.md): start a daemon serving a fresh tree, or
 * run a command under `mdevfs exec`, with a profile (a built-in name, a file or an object), and
 * steer it over the control API (docs/control-api.md) with the client the CLI uses.
 *
 *   const tree = await start({ profile: 'samples' });
 *   try {
 *     await tree.withFault({ match: { op: 'create', type: 'mtty-2' }, action: { kind: 'errno', errno: 'ENOSPC' } }, async () => {
 *       ... // code under test, given tree.root as its sysfs root
 *     });
 *   } finally {
 *     await tree.stop();
 *   }
 *
 * Importing this loads nothing of the daemon: the daemon is a child process (the mdevfs command:
 * MDEVFS_CLI, else this package's own), never the process that reads its mount.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiError, call, ok } from './control/client';
import type { Profile } from './drivers/profile-types';
import type { FaultRuleSpec } from './faults/spec';
import type { JournalEntry } from './journal/journal';

export { ApiError } from './control/client';
export type { Profile } from './drivers/profile-types';
export type { FaultAction, FaultMatch, FaultRuleSpec, FaultTrigger } from './faults/spec';
export type { JournalEntry } from './journal/journal';

/** A profile: a built-in's name (`samples`, `nvidia-t4`, ...), a JSON file's path, or the profile itself. */
export type ProfileSpec = string | Profile;

export interface TreeOptions {
  profile?: ProfileSpec;
  abi?: '6.1' | '4.17';
  backend?: 'direct' | 'fuse-native';
  /** More options for `mdevfs mount` or `mdevfs exec` (`--udev`, `--journal FILE`, ...). */
  args?: readonly string[];
  /** The daemon's (or the command's) environment (default: this process's). */
  env?: NodeJS.ProcessEnv;
}

export interface StartOptions extends TreeOptions {
  /** Where to mount (created if missing); default: a new temporary directory. */
  dir?: string;
  /** How long to wait for the daemon to answer (default 30 s). */
  timeoutMs?: number;
}

/** What mark() returns: the journal's sequence number of the mark (null when the daemon keeps no journal: --journal-size 0), and the last uevent SEQNUM then. */
export interface Mark {
  journal: number | null;
  seqnum: number;
}

/** A condition for wait(): an event (`add:UUID`), a device in a state, or a journal entry with these fields. */
export interface WaitCondition {
  event?: string;
  device?: string;
  state?: 'reserved' | 'active' | 'removing' | 'gone';
  journal?: { kind?: 'write' | 'fault' | 'mark'; op?: string; path?: string; errno?: string; fault?: string | number; uid?: number };
  /** Only what happened after this mark (or a uevent SEQNUM; with `journal`, a journal seq). */
  since?: Mark | number;
  /** Seconds (default 10). */
  timeout?: number;
}

/** GET /v1/state (docs/control-api.md describes every field). */
export interface TreeState {
  seqnum: number;
  abi: string;
  parents: { name: string; path: string; types: { name: string; available_instances: number; devices: string[] }[] }[];
  devices: { uuid: string; parent: string; type: string; state: string; path: string }[];
  [more: string]: unknown;
}

/** A fault rule as the daemon holds it: its id, how often it matched and fired. */
export type FaultRule = FaultRuleSpec & { id: string | number; [more: string]: unknown };

/** The mdevfs command: MDEVFS_CLI (of `env`), else this package's own launcher (scripts/mdevfs) run by this Node. */
export function cliCommand(env: NodeJS.ProcessEnv = process.env): string[] {
  const cli = env.MDEVFS_CLI;
  return cli ? [cli] : [process.execPath, join(__dirname, '..', 'scripts', 'mdevfs')];
}

function enc(id: string | number): string {
  return encodeURIComponent(String(id));
}

/** The control API of one daemon, by its socket: the client `mdevfs ctl` uses. */
export class Control {
  constructor(readonly socket: string) {}

  ping(timeoutMs = 5000): Promise<{ api: number; mountpoint: string; mounted: boolean }> {
    return ok(this.socket, 'GET', '/v1/ping', undefined, timeoutMs);
  }

  state(): Promise<TreeState> {
    return ok(this.socket, 'GET', '/v1/state');
  }

  async addFault(rule: FaultRuleSpec): Promise<FaultRule> {
    const body = await ok<Record<string, unknown>>(this.socket, 'POST', '/v1/faults', rule);
    return (body.rule ?? body) as FaultRule;
  }

  /** The rules, each with how often it matched and fired. */
  async faults(): Promise<FaultRule[]> {
    return (await ok<{ rules: FaultRule[] }>(this.socket, 'GET', '/v1/faults')).rules;
  }

  async removeFault(id: string | number): Promise<void> {
    await ok(this.socket, 'DELETE', `/v1/faults/${enc(id)}`);
  }

  async releaseFault(id: string | number): Promise<void> {
    await ok(this.socket, 'POST', `/v1/faults/${enc(id)}/release`);
  }

  /** The journal's entries after `since` (every one it holds without). */
  async journal(opts: { since?: Mark | number } = {}): Promise<JournalEntry[]> {
    const since = typeof opts.since === 'object' ? (opts.since.journal ?? undefined) : opts.since;
    return (await ok<{ entries: JournalEntry[] }>(this.socket, 'GET', `/v1/journal${since === undefined ? '' : `?since=${since}`}`)).entries;
  }

  /** A mark in the journal: pass it as `since` to journal() and wait(). */
  mark(): Promise<Mark> {
    return ok<Mark>(this.socket, 'POST', '/v1/mark', {});
  }

  /** Resolves once the condition holds; rejects (an ApiError with status 408) if not within its timeout. */
  async wait(cond: WaitCondition): Promise<Record<string, unknown>> {
    const timeout = cond.timeout ?? 10;
    const since = typeof cond.since === 'object' ? (cond.journal ? (cond.since.journal ?? undefined) : cond.since.seqnum) : cond.since;
    const r = await call<Record<string, unknown>>(this.socket, 'POST', '/v1/wait', { ...cond, since, timeout }, (timeout + 10) * 1000);
    if (r.status < 200 || r.status > 299) throw new ApiError(r.status, r.body);
    return r.body;
  }

  /** Back to the profile's start state: devices, parents, faults, counters. */
  async reset(): Promise<void> {
    await ok(this.socket, 'POST', '/v1/reset', {});
  }
}

/** Writes a profile object to `dir`; returns the CLI options for `opts`. */
function treeArgs(opts: TreeOptions, dir: string): string[] {
  const out: string[] = [];
  if (typeof opts.profile === 'string') out.push('--profile', opts.profile);
  else if (opts.profile) {
    const file = join(dir, 'profile.json');
    writeFileSync(file, JSON.stringify(opts.profile), { mode: 0o600 });
    out.push('--profile', file);
  }
  if (opts.abi) out.push('--abi', opts.abi);
  if (opts.backend) out.push('--backend', opts.backend);
  return [...out, ...(opts.args ?? [])];
}

/** A running tree: its root, its control client, and stop(). */
export class Tree {
  readonly control: Control;
  private readonly exited: Promise<number | null>;

  constructor(
    /** The mounted directory: it plays the role of /sys. */
    readonly root: string,
    socket: string,
    private readonly child: ChildProcess,
    private readonly workdir: string,
  ) {
    this.control = new Control(socket);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code) => {
        this.ended = true;
        resolve(code);
      });
      child.once('error', (err) => {
        this.spawnError = err;
        this.ended = true;
        resolve(null);
      });
    });
  }

  /** The daemon has exited (or could not be started: spawnError). */
  ended = false;
  spawnError: Error | undefined;

  state(): Promise<TreeState> {
    return this.control.state();
  }

  fault(rule: FaultRuleSpec): Promise<FaultRule> {
    return this.control.addFault(rule);
  }

  /** Runs fn with the rule in force, and removes the rule after it (also when fn throws). */
  async withFault<T>(rule: FaultRuleSpec, fn: (rule: FaultRule) => Promise<T> | T): Promise<T> {
    const added = await this.control.addFault(rule);
    try {
      return await fn(added);
    } finally {
      await this.control.removeFault(added.id).catch((err: unknown) => {
        if (!(err instanceof ApiError && err.status === 404)) throw err; // a reset in fn dropped it
      });
    }
  }

  journal(opts: { since?: Mark | number } = {}): Promise<JournalEntry[]> {
    return this.control.journal(opts);
  }

  mark(): Promise<Mark> {
    return this.control.mark();
  }

  wait(cond: WaitCondition): Promise<Record<string, unknown>> {
    return this.control.wait(cond);
  }

  reset(): Promise<void> {
    return this.control.reset();
  }

  /** Stops the daemon (SIGTERM: it unmounts; SIGKILL after 10 s) and removes its directory; resolves with its exit code. */
  async stop(): Promise<number | null> {
    if (!this.ended) this.child.kill('SIGTERM');
    const killer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    const code = await this.exited;
    clearTimeout(killer);
    rmSync(this.workdir, { recursive: true, force: true });
    return code;
  }
}

/** Starts `mdevfs mount` on a fresh directory (or `opts.dir`); resolves once the tree answers. */
export async function start(opts: StartOptions = {}): Promise<Tree> {
  const workdir = mkdtempSync(join(tmpdir(), 'mdevfs-'));
  const root = opts.dir ?? join(workdir, 'root');
  const socket = join(workdir, 'control.sock');
  const logFile = join(workdir, 'daemon.log');
  const [cmd, ...pre] = cliCommand(opts.env);
  const log = openSync(logFile, 'w');
  const child = spawn(cmd!, [...pre, 'mount', root, '--control', socket, ...treeArgs(opts, workdir)], { stdio: ['ignore', 'ignore', log], env: opts.env ?? process.env });
  closeSync(log);
  const tree = new Tree(root, socket, child, workdir);
  const failed = (why: string) => {
    const said = readFileSync(logFile, 'utf8').trim();
    return new Error(`mdevfs mount ${why}${said ? `: ${said}` : ''}`);
  };
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  for (;;) {
    const ping = await tree.control.ping(2000).catch(() => undefined);
    if (tree.ended) {
      const err = tree.spawnError ? new Error(`cannot run ${cmd}: ${tree.spawnError.message}`) : failed(`exited with ${child.exitCode ?? child.signalCode}`);
      await tree.stop();
      throw err;
    }
    if (ping?.mounted) return tree;
    if (Date.now() > deadline) {
      const err = failed(`did not answer within ${opts.timeoutMs ?? 30_000} ms`);
      await tree.stop();
      throw err;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface ExecResult {
  status: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs argv under `mdevfs exec` (a fresh tree over /sys in a private mount namespace; for an
 * ordinary user, in a user namespace of its own). Inside, the command has MDEVFS_ROOT and
 * MDEVFS_CONTROL (`new Control(process.env.MDEVFS_CONTROL)` steers its tree). Resolves with its
 * exit status and output.
 */
export async function exec(argv: readonly string[], opts: TreeOptions & { input?: string } = {}): Promise<ExecResult> {
  const workdir = mkdtempSync(join(tmpdir(), 'mdevfs-'));
  try {
    const [cmd, ...pre] = cliCommand(opts.env);
    const child = spawn(cmd!, [...pre, 'exec', ...treeArgs(opts, workdir), '--', ...argv], { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdin.end(opts.input ?? '');
    const status = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code, signal) => resolve(code ?? 128 + (signal ? osConstants.signals[signal] : 0)));
    });
    return { status, stdout, stderr };
  } finally {
    rmSync(workdir, { recursive: true, force: true });
  }
}
