import { ApiError, call } from '../control/client';
import { UsageError, checkControlDir, controlPathFor, noDaemon } from './args';

/**
 * `mdevfs ctl [DIR] VERB ...`: the control API (docs/control-api.md) from the command line.
 * Without DIR (a first word that is a verb), the socket is --control or $MDEVFS_CONTROL, which
 * `mdevfs exec` gives its command. Exit 0 done, 1 refused or not met, 2 usage.
 */
export const CTL_VERBS = ['parents', 'add-parent', 'remove-parent', 'state', 'mark', 'wait', 'reset', 'fault', 'journal'] as const;

const EXIT_USAGE = 2;

/** The socket and the verb's words, from `[DIR] VERB ARGS...`. */
export function ctlTarget(positionals: readonly string[], options: ReadonlyMap<string, string>): { socket: string; words: string[]; dir?: string } {
  const [first, ...rest] = positionals;
  if (first === undefined) throw new UsageError('missing the verb');
  const env = process.env.MDEVFS_CONTROL;
  if ((CTL_VERBS as readonly string[]).includes(first) && (options.has('control') || env)) {
    return { socket: options.get('control') ?? env!, words: [first, ...rest] };
  }
  if (rest.length === 0) throw new UsageError(`missing the verb after ${first} (${CTL_VERBS.join(', ')})`);
  checkControlDir(options, false);
  return { socket: controlPathFor(first, options), words: rest, dir: first };
}

export async function ctlCommand(positionals: readonly string[], options: ReadonlyMap<string, string>): Promise<number> {
  const { socket, words, dir } = ctlTarget(positionals, options);
  const [verb, ...args] = words as [string, ...string[]];
  if (verb === 'fault' || verb === 'journal') {
    const { faultCommand, journalCommand } = await import('./ctl-faults');
    return (verb === 'fault' ? faultCommand : journalCommand)({ socket, dir, options }, args);
  }
  const json = options.has('json');
  const usage = (msg: string) => {
    process.stderr.write(`mdevfs ctl: ${msg}\n`);
    return EXIT_USAGE;
  };
  const allowed: Record<string, { args: number; options: string[] }> = {
    parents: { args: 0, options: ['json'] },
    'add-parent': { args: 1, options: [] },
    'remove-parent': { args: 1, options: [] },
    state: { args: 0, options: ['json'] },
    mark: { args: 0, options: ['json'] },
    wait: { args: 0, options: ['event', 'device', 'state', 'op', 'errno', 'path', 'fault', 'since', 'timeout', 'json'] },
    reset: { args: 0, options: [] },
  };
  const spec = allowed[verb];
  if (!spec) return usage(`unknown verb "${verb}" (${CTL_VERBS.join(', ')})`);
  if (args.length !== spec.args) return usage(`${verb} takes ${spec.args === 0 ? 'no argument' : 'one argument'}`);
  for (const o of options.keys()) if (o !== 'control' && !spec.options.includes(o)) return usage(`${verb} does not take --${o}`);

  let body: unknown;
  let method = 'GET';
  let path = '/v1/' + verb;
  let timeoutS: number | undefined;
  switch (verb) {
    case 'add-parent': {
      method = 'POST';
      path = '/v1/parents';
      // A built-in's name or a file, checked here as --profile is: a refused profile is a usage error.
      try {
        body = { parents: (await import('../drivers/profile-load')).loadParents(args[0]!) };
      } catch (err) {
        return usage((err as Error).message);
      }
      break;
    }
    case 'remove-parent':
      method = 'DELETE';
      path = `/v1/parents/${encodeURIComponent(args[0]!)}`;
      break;
    case 'mark':
    case 'reset':
      method = 'POST';
      body = {};
      break;
    case 'wait': {
      method = 'POST';
      const w: Record<string, unknown> = {};
      const event = options.get('event');
      const device = options.get('device');
      const state = options.get('state');
      const entry = (['op', 'errno', 'path', 'fault'] as const).filter((k) => options.has(k));
      if ([event !== undefined, device !== undefined, entry.length > 0].filter(Boolean).length !== 1) {
        return usage('wait takes --event ACTION:NAME, --device UUID --state STATE, or a journal entry\'s --op, --errno, --path, --fault');
      }
      if (entry.length > 0) {
        if (state !== undefined) return usage('--state goes with --device');
        const j: Record<string, unknown> = {};
        for (const k of entry) j[k] = k === 'fault' && /^\d+$/.test(options.get(k)!) ? Number(options.get(k)) : options.get(k);
        w.journal = j;
      } else if (event !== undefined) {
        if (!/^[a-z]+:[^/\s]+$/.test(event)) return usage(`--event takes ACTION:NAME (e.g. bind:<uuid>), not "${event}"`);
        if (state !== undefined) return usage('--state goes with --device');
        w.event = event;
      } else {
        if (!state || !['reserved', 'active', 'removing', 'gone'].includes(state)) return usage('--device takes --state reserved|active|removing|gone');
        w.device = device;
        w.state = state;
      }
      if (options.has('since')) {
        const since = Number(options.get('since'));
        if (!Number.isInteger(since) || since < 0) return usage('--since must be a SEQNUM (0 or more)');
        w.since = since;
      }
      if (options.has('timeout')) {
        const t = Number(options.get('timeout'));
        if (!(Number.isFinite(t) && t > 0 && t <= 3600)) return usage('--timeout must be a number of seconds (at most 3600)');
        w.timeout = t;
      }
      timeoutS = (w.timeout as number | undefined) ?? 10;
      body = w;
      break;
    }
  }

  let reply;
  try {
    reply = await call(socket, method, path, body, timeoutS === undefined ? undefined : (timeoutS + 10) * 1000);
  } catch (err) {
    process.stderr.write(`mdevfs ctl: ${dir === undefined ? `no daemon answers on ${socket} (${(err as Error).message})` : noDaemon(dir, options, err)}\n`);
    return 1;
  }
  const r = reply.body;
  if (reply.status === 408 && verb === 'wait') {
    if (json) process.stdout.write(JSON.stringify(r) + '\n');
    process.stderr.write(`mdevfs ctl: wait: ${String(r.error)}\n`);
    return 1;
  }
  if (reply.status < 200 || reply.status > 299) {
    process.stderr.write(`mdevfs ctl: ${new ApiError(reply.status, r).message}\n`);
    return 1;
  }
  if (json) {
    process.stdout.write(JSON.stringify(r, null, verb === 'state' ? 2 : undefined) + '\n');
    return 0;
  }
  if (verb === 'add-parent' && (r.existing as string[] | undefined)?.length) {
    // Some were registered already: the others were added, and the user learns which were kept.
    const existing = r.existing as string[];
    process.stderr.write(`mdevfs ctl: added ${(r.added as string[]).join(', ')}; ${existing.join(', ')} ${existing.length === 1 ? 'exists' : 'exist'} already (left as ${existing.length === 1 ? 'it is' : 'they are'})\n`);
  }
  if (verb === 'parents') process.stdout.write((r.parents as string[]).map((p) => p + '\n').join(''));
  else if (verb === 'mark') process.stdout.write(`${String(r.seqnum)}\n`);
  else if (verb === 'state') process.stdout.write(stateText(r));
  return 0;
}

/** `ctl state` for people: a parent and its types per line, then the devices. */
function stateText(s: Record<string, unknown>): string {
  type T = { name: string; available_instances: number };
  const parents = s.parents as { name: string; types: T[] }[];
  const devices = s.devices as { uuid: string; parent: string; type: string; state: string }[];
  const lines = parents.map((p) => `parent ${p.name}: ${p.types.map((t) => `${t.name} (${t.available_instances} available)`).join(', ')}`);
  for (const d of devices) lines.push(`device ${d.uuid} ${d.parent} ${d.type} ${d.state}`);
  lines.push(`seqnum ${String(s.seqnum)}`);
  return lines.join('\n') + '\n';
}
