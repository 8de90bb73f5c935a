import type { ErrorObject, ValidateFunction } from 'ajv';
import { Errno, type ErrnoName } from '../base/errno';

/**
 * The kernel-level steps a fault rule can name.
 * - `create`, `remove`: the vendor's create (probe) and remove of an mdev, where a real vendor fails:
 *   a failed create undoes everything (the ABI's remove steps, its uevents), a failed remove follows
 *   the ABI (4.17: the vendor's veto, EBUSY, the device stays; 6.1: logged, the removal completes).
 *   Every vendor remove counts, also those of a parent's unregistration and of an unbind.
 * - `store`: any write to an attribute, before its store runs (an errno changes nothing).
 * - `bind`, `unbind`: a write to a bus driver's `bind`/`unbind` file; `sriov_numvfs`,
 *   `current_vgpu_type`: a write to that attribute. Each is also a `store`.
 * - `read`: a read of an attribute, where its show() runs (at offset 0): an errno, another content,
 *   or a delay or a hang before show() (a slow vendor attribute; the read then shows the file as it
 *   is when it goes on).
 */
export const FAULT_OPS = ['create', 'remove', 'store', 'bind', 'unbind', 'sriov_numvfs', 'current_vgpu_type', 'read'] as const;
export type FaultOp = (typeof FAULT_OPS)[number];

/** The step of a write to an attribute, by its canonical path: a bus driver's bind/unbind, two attributes by name, else any store. */
export function writeStep(path: string): FaultOp {
  const parts = path.split('/');
  const attr = parts[parts.length - 1];
  if ((attr === 'bind' || attr === 'unbind') && parts[parts.length - 3] === 'drivers') return attr;
  if (attr === 'sriov_numvfs' || attr === 'current_vgpu_type') return attr;
  return 'store';
}

/** The vendor steps (the core calls the engine there); the others are checked by Kernfs at a write or read. */
export const VENDOR_OPS: readonly FaultOp[] = ['create', 'remove'];

export interface FaultMatch {
  op: FaultOp;
  /** create/remove: the parent's name (dev_name, as under class/mdev_bus). */
  parent?: string;
  /** create/remove: the type-id, e.g. "mtty-2". */
  type?: string;
  /** The device's UUID (create/remove), or a UUID that is a component of the attribute's path. */
  uuid?: string;
  /** Attribute writes and reads: the file's name, e.g. "sriov_numvfs". */
  attr?: string;
  /**
   * A glob on the canonical sysfs path, as on a real host: `/sys/devices/...` (the attribute for
   * writes and reads, the device's directory for create and remove). `*` and `?` stay inside one
   * component, `**` crosses them.
   */
  path?: string;
}

export type FaultAction =
  /** The step fails with this errno. */
  | { kind: 'errno'; errno: ErrnoName }
  /** The step waits ms (plus a uniform jitter in [-jitterMs, +jitterMs], from the rule's seeded PRNG), then goes on. */
  | { kind: 'delay'; ms: number; jitterMs?: number }
  /** The step waits until the rule is released (release, its removal, clear, reset, the daemon's stop), then goes on. */
  | { kind: 'hang' }
  /** Attribute writes: the write reports success (its byte count) and changes nothing. */
  | { kind: 'succeed' }
  /** Reads: the file reads this text instead. */
  | { kind: 'content'; content: string };

/**
 * When a matching request fires the rule, counted per rule over the requests that reach it: the
 * first `after` matches never fire; then it fires every `every`th match, or with `probability`
 * (from a PRNG seeded with `seed`: the same seed gives the same sequence), or at each match when
 * neither is given (both: every Nth, and by chance in between). `times` caps the fires; `sticky`:
 * once it has fired, it fires at every later match (still within `times`).
 */
export interface FaultTrigger {
  after?: number;
  every?: number;
  probability?: number;
  seed?: number;
  times?: number;
  sticky?: boolean;
}

export interface FaultRuleSpec {
  /** Chosen by the caller (a name), or the engine's next number. */
  id?: string | number;
  match: FaultMatch;
  action: FaultAction;
  trigger?: FaultTrigger;
}

const count = { type: 'integer', minimum: 0, maximum: 2 ** 31 } as const;
const positive = { type: 'integer', minimum: 1, maximum: 2 ** 31 } as const;
const name = { type: 'string', minLength: 1, maxLength: 4096 } as const;

/** The JSON schema of a rule (draft-07, for ajv): the HTTP API validates its bodies with it. */
export const FAULT_RULE_SCHEMA = {
  $id: 'mdevfs-fault-rule',
  type: 'object',
  additionalProperties: false,
  required: ['match', 'action'],
  properties: {
    id: { anyOf: [{ type: 'string', minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.:-]+$' }, { type: 'integer', minimum: 0 }] },
    match: {
      type: 'object',
      additionalProperties: false,
      required: ['op'],
      properties: {
        op: { enum: [...FAULT_OPS] },
        parent: name,
        type: name,
        uuid: { type: 'string', pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' },
        attr: name,
        path: name,
      },
    },
    action: {
      type: 'object',
      required: ['kind'],
      discriminator: { propertyName: 'kind' },
      oneOf: [
        { properties: { kind: { const: 'errno' }, errno: { enum: Object.keys(Errno) } }, required: ['kind', 'errno'], additionalProperties: false },
        { properties: { kind: { const: 'delay' }, ms: { type: 'number', minimum: 0, maximum: 3_600_000 }, jitterMs: { type: 'number', minimum: 0, maximum: 3_600_000 } }, required: ['kind', 'ms'], additionalProperties: false },
        { properties: { kind: { const: 'hang' } }, required: ['kind'], additionalProperties: false },
        { properties: { kind: { const: 'succeed' } }, required: ['kind'], additionalProperties: false },
        { properties: { kind: { const: 'content' }, content: { type: 'string', maxLength: 4096 } }, required: ['kind', 'content'], additionalProperties: false },
      ],
    },
    trigger: {
      type: 'object',
      additionalProperties: false,
      properties: {
        after: count,
        every: positive,
        probability: { type: 'number', minimum: 0, maximum: 1 },
        seed: { type: 'integer', minimum: 0, maximum: 2 ** 32 - 1 },
        times: positive,
        sticky: { type: 'boolean' },
      },
    },
  },
} as const;

/** A rule that is not valid: every problem, one a line, each naming the field. */
export class FaultSpecError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'FaultSpecError';
  }
}

let compiled: ValidateFunction | undefined;

/** Checks a rule as it came (JSON): the schema first, then what the schema cannot say. Throws FaultSpecError. */
export function validateFaultRule(spec: unknown): asserts spec is FaultRuleSpec {
  // ajv loads at the first rule that comes as JSON (100 ms), not at every daemon start.
  const Ajv = (require('ajv') as typeof import('ajv')).default;
  compiled ??= new Ajv({ allErrors: true, discriminator: true, strict: false }).compile(FAULT_RULE_SCHEMA);
  if (!compiled(spec)) throw new FaultSpecError(describe(compiled.errors ?? []));
  const problems = semanticProblems(spec as FaultRuleSpec);
  if (problems.length > 0) throw new FaultSpecError(problems);
}

function describe(errors: ErrorObject[]): string[] {
  const out = errors.map((e) => {
    const at = e.instancePath ? e.instancePath.slice(1).replace(/\//g, '.') : 'the rule';
    const p = e.params as Record<string, unknown>;
    switch (e.keyword) {
      case 'additionalProperties':
        return `${at}: unknown field "${String(p.additionalProperty)}"`;
      case 'required':
        return `${at}: "${String(p.missingProperty)}" is required`;
      case 'enum':
        return `${at}: must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
      case 'discriminator':
        return `${at}.kind: must be one of "errno", "delay", "hang", "succeed", "content"`;
      default:
        return `${at}: ${e.message ?? e.keyword}`;
    }
  });
  return [...new Set(out)];
}

function semanticProblems(spec: FaultRuleSpec): string[] {
  const { match, action } = spec;
  const out: string[] = [];
  const vendor = VENDOR_OPS.includes(match.op);
  if (!vendor) {
    for (const k of ['parent', 'type'] as const) {
      if (match[k] !== undefined) out.push(`match.${k}: applies to op "create" and "remove" only (match an attribute by "path" or "uuid")`);
    }
  } else if (match.attr !== undefined) {
    out.push('match.attr: applies to attribute writes and reads, not to op "create" or "remove"');
  }
  if (action.kind === 'content' && match.op !== 'read') out.push('action.kind "content": applies to op "read" only');
  if (action.kind === 'succeed' && match.op === 'read') out.push('action.kind "succeed": applies to writes only (a read that succeeds is an ordinary read)');
  if (action.kind === 'succeed' && vendor) {
    out.push(`action.kind "succeed": a vendor step cannot succeed without acting; for a ${match.op} write that does nothing use op "store" with attr "${match.op}"`);
  }
  if (action.kind === 'delay' && (action.jitterMs ?? 0) > action.ms) out.push('action.jitterMs: must not exceed ms (a delay is never negative)');
  return out;
}
