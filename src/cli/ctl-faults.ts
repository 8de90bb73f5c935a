import { type Reply, call, streamLines } from '../control/client';
import { noDaemon } from './args';

/**
 * `mdevfs ctl [DIR] fault add|change|list|rm|release` and `journal`: the fault rules and the journal of
 * the control API (docs/control-api.md).
 */

const EXIT_USAGE = 2;

/** Where to send, and how to name the daemon when it does not answer. */
export interface Target {
  socket: string;
  dir: string | undefined;
  options: ReadonlyMap<string, string>;
}

/** The options each sub-verb takes (besides --control). */
export const FAULT_MATCH = ['op', 'parent', 'type', 'uuid', 'attr', 'path'] as const;
export const FAULT_ACTION = ['errno', 'delay', 'jitter', 'hang', 'succeed', 'content'] as const;
export const FAULT_TRIGGER = ['after', 'every', 'probability', 'seed', 'times', 'sticky'] as const;
export const FAULT_ADD_OPTIONS = [...FAULT_MATCH, ...FAULT_ACTION, ...FAULT_TRIGGER, 'id', 'json'];

function usage(msg: string): number {
  process.stderr.write(`mdevfs ctl: ${msg}\n`);
  return EXIT_USAGE;
}

/** Sends a request; a reply that is not 2xx is printed (exit 1) and undefined returned. */
async function send(t: Target, method: string, path: string, body?: unknown): Promise<Reply | number> {
  let reply: Reply;
  try {
    reply = await call(t.socket, method, path, body);
  } catch (err) {
    process.stderr.write(`mdevfs ctl: ${t.dir === undefined ? `no daemon answers on ${t.socket} (${(err as Error).message})` : noDaemon(t.dir, t.options, err)}\n`);
    return 1;
  }
  if (reply.status < 200 || reply.status > 299) {
    const problems = Array.isArray(reply.body.problems) ? reply.body.problems.map((p) => `\n  ${String(p)}`).join('') : '';
    const first = Array.isArray(reply.body.problems) ? 'fault rule refused:' : String(reply.body.error ?? `HTTP ${reply.status}`);
    process.stderr.write(`mdevfs ctl: ${first}${problems}\n`);
    return reply.status === 400 ? EXIT_USAGE : 1;
  }
  return reply;
}

/** A number option, or a usage message. */
function num(options: ReadonlyMap<string, string>, name: string, integer: boolean): number | string | undefined {
  if (!options.has(name)) return undefined;
  const v = Number(options.get(name));
  if (!Number.isFinite(v) || (integer && !Number.isInteger(v))) return `--${name} must be ${integer ? 'an integer' : 'a number'}, not "${options.get(name)}"`;
  return v;
}

/**
 * The rule the flags of `fault add` (or `fault change`: verb) describe (the daemon validates it:
 * its problems are usage errors).
 */
export function ruleFromFlags(o: ReadonlyMap<string, string>, verb = 'add'): Record<string, unknown> | string {
  const match: Record<string, unknown> = {};
  for (const k of FAULT_MATCH) if (o.has(k)) match[k] = o.get(k);
  if (match.op === undefined) return `fault ${verb} needs --op (create, remove, store, bind, unbind, sriov_numvfs, current_vgpu_type, read)`;
  const actions = ['errno', 'delay', 'hang', 'succeed', 'content'].filter((k) => o.has(k));
  if (actions.length !== 1) return `fault ${verb} takes one action: --errno NAME, --delay MS [--jitter MS], --hang, --succeed or --content TEXT`;
  let action: Record<string, unknown>;
  const kind = actions[0]!;
  if (kind === 'errno') action = { kind, errno: o.get('errno') };
  else if (kind === 'content') action = { kind, content: o.get('content') };
  else if (kind === 'delay') {
    const ms = num(o, 'delay', false);
    const jitter = num(o, 'jitter', false);
    if (typeof ms === 'string') return ms;
    if (typeof jitter === 'string') return jitter;
    action = { kind, ms, ...(jitter !== undefined ? { jitterMs: jitter } : {}) };
  } else action = { kind };
  if (o.has('jitter') && kind !== 'delay') return '--jitter goes with --delay';
  const trigger: Record<string, unknown> = {};
  for (const k of ['after', 'every', 'seed', 'times'] as const) {
    const v = num(o, k, true);
    if (typeof v === 'string') return v;
    if (v !== undefined) trigger[k] = v;
  }
  const p = num(o, 'probability', false);
  if (typeof p === 'string') return p;
  if (p !== undefined) trigger.probability = p;
  if (o.has('sticky')) trigger.sticky = true;
  const id = o.get('id');
  return {
    ...(id !== undefined ? { id: /^\d+$/.test(id) ? Number(id) : id } : {}),
    match,
    action,
    ...(Object.keys(trigger).length ? { trigger } : {}),
  };
}

interface RuleView {
  id: string | number;
  spec: { match: Record<string, unknown>; action: Record<string, unknown>; trigger?: Record<string, unknown> };
  origin: string;
  matched: number;
  fired: number;
  hung: number;
}

/** One line per rule: id, origin, match, action, trigger, counters. */
function ruleLine(r: RuleView): string {
  const kv = (o: Record<string, unknown> | undefined) => Object.entries(o ?? {}).map(([k, v]) => `${k}=${String(v)}`).join(' ');
  const { kind, ...rest } = r.spec.action;
  return [`${r.id}`, r.origin, kv(r.spec.match), `${String(kind)}${Object.keys(rest).length ? ` ${kv(rest)}` : ''}`, kv(r.spec.trigger) || '-', `matched=${r.matched} fired=${r.fired} hung=${r.hung}`].join('\t');
}

export async function faultCommand(t: Target, args: readonly string[]): Promise<number> {
  const [sub, id, ...extra] = args;
  const o = t.options;
  const json = o.has('json');
  const only = (allowed: readonly string[]) => [...o.keys()].find((k) => k !== 'control' && !allowed.includes(k));
  switch (sub) {
    case 'add': {
      if (id !== undefined) return usage('fault add takes flags only (--op ..., an action, a trigger)');
      const stray = only(FAULT_ADD_OPTIONS);
      if (stray) return usage(`fault add does not take --${stray}`);
      const rule = ruleFromFlags(o);
      if (typeof rule === 'string') return usage(rule);
      const r = await send(t, 'POST', '/v1/faults', rule);
      if (typeof r === 'number') return r;
      process.stdout.write(json ? JSON.stringify(r.body) + '\n' : `${String(r.body.id)}\n`);
      return 0;
    }
    case 'change': {
      // PUT /v1/faults/{id}: a new spec in the rule's place, its counters from zero, what hung on it released.
      if (id === undefined || extra.length > 0) return usage('fault change takes one rule id, then the flags of fault add (--op ..., an action, a trigger)');
      if (o.has('id')) return usage('fault change takes the rule id as its argument, not --id (a rule keeps its id)');
      const stray = only(FAULT_ADD_OPTIONS);
      if (stray) return usage(`fault change does not take --${stray}`);
      const rule = ruleFromFlags(o, 'change');
      if (typeof rule === 'string') return usage(rule);
      const r = await send(t, 'PUT', `/v1/faults/${encodeURIComponent(id)}`, rule);
      if (typeof r === 'number') return r;
      process.stdout.write(json ? JSON.stringify(r.body) + '\n' : `${String(r.body.id)}\n`);
      return 0;
    }
    case 'list': {
      if (id !== undefined) return usage('fault list takes no argument');
      const stray = only(['json']);
      if (stray) return usage(`fault list does not take --${stray}`);
      const r = await send(t, 'GET', '/v1/faults');
      if (typeof r === 'number') return r;
      const rules = r.body.rules as RuleView[];
      process.stdout.write(json ? JSON.stringify(rules) + '\n' : rules.map((x) => ruleLine(x) + '\n').join(''));
      return 0;
    }
    case 'rm':
    case 'release': {
      if (id === undefined || extra.length > 0) return usage(`fault ${sub} takes one rule id`);
      const stray = only(['json']);
      if (stray) return usage(`fault ${sub} does not take --${stray}`);
      const path = `/v1/faults/${encodeURIComponent(id)}${sub === 'release' ? '/release' : ''}`;
      const r = await send(t, sub === 'rm' ? 'DELETE' : 'POST', path);
      if (typeof r === 'number') return r;
      if (json) process.stdout.write(JSON.stringify(r.body) + '\n');
      else if (sub === 'release') process.stdout.write(`${String(r.body.released)}\n`);
      return 0;
    }
    default:
      return usage(`fault takes add, change ID, list, rm ID or release ID${sub === undefined ? '' : `, not "${sub}"`}`);
  }
}

/** `journal [--since N] [--follow] [--json]`: the entries, one a line (JSON lines with --json). */
export async function journalCommand(t: Target, args: readonly string[]): Promise<number> {
  if (args.length > 0) return usage('journal takes no argument');
  const o = t.options;
  const stray = [...o.keys()].find((k) => !['control', 'since', 'follow', 'json'].includes(k));
  if (stray) return usage(`journal does not take --${stray}`);
  const since = num(o, 'since', true);
  if (typeof since === 'string' || (since !== undefined && since < 0)) return usage('--since must be a journal seq (0 or more)');
  const print = (e: Record<string, unknown>) => process.stdout.write((o.has('json') ? JSON.stringify(e) : entryLine(e)) + '\n');
  const query = `?since=${since ?? 0}`;
  if (!o.has('follow')) {
    const r = await send(t, 'GET', `/v1/journal${query}`);
    if (typeof r === 'number') return r;
    for (const e of r.body.entries as Record<string, unknown>[]) print(e);
    return 0;
  }
  let stream;
  try {
    stream = await streamLines(t.socket, `/v1/journal${query}&follow=1`, print);
  } catch (err) {
    process.stderr.write(`mdevfs ctl: ${t.dir === undefined ? `no daemon answers on ${t.socket} (${(err as Error).message})` : noDaemon(t.dir, o, err)}\n`);
    return 1;
  }
  const stop = () => stream.stop();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  await stream.closed;
  return 0;
}

/** `12 write create /sys/.../create "83b8...\n" -> ENOSPC fault=1 uid=0 bash`. */
function entryLine(e: Record<string, unknown>): string {
  const caller = e.caller as { uid: number; comm?: string } | undefined;
  const result = e.errno !== undefined ? String(e.errno) : e.bytes !== undefined ? `${String(e.bytes)} bytes` : e.action !== undefined ? String(e.action) : '';
  return [
    e.seq,
    e.kind,
    e.op,
    e.path ?? '',
    e.data !== undefined ? `"${String(e.data)}"` : '',
    result ? `-> ${result}` : '',
    e.fault !== undefined ? `fault=${String(e.fault)}` : '',
    caller ? `uid=${caller.uid}${caller.comm ? ` ${caller.comm}` : ''}` : '',
    e.label !== undefined ? JSON.stringify(e.label) : '',
  ]
    .filter((x) => x !== '')
    .join(' ');
}
