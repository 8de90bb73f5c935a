import type { Logger } from 'pino';
import { type Clock, seededRandom } from '../base/clock';
import { errnoByName, MdevError } from '../base/errno';
import { globToRegExp } from './glob';
import { FAULT_OPS, type FaultAction, type FaultOp, type FaultRuleSpec, FaultSpecError, VENDOR_OPS, validateFaultRule } from './spec';

/** What the engine knows of a request at the step it checks. Paths are canonical (`/sys/...`). */
export interface FaultContext {
  op: FaultOp;
  path?: string;
  attr?: string;
  uuid?: string;
  parent?: string;
  type?: string;
  /** The vendor driver of a create or remove: a profile's rules apply to its own parent's devices only. */
  owner?: unknown;
}

/** What a fired rule leaves to the caller: a write that reports success, or a read's replaced text. */
export type FaultVerdict = { rule: string | number; kind: 'succeed' } | { rule: string | number; kind: 'content'; content: string };

/** One fire, for the journal. */
export interface FaultFired {
  rule: string | number;
  action: FaultAction['kind'];
  ctx: FaultContext;
  errno?: string;
  delayMs?: number;
}

/** A rule as listed: its spec, where it came from, how often it matched and fired, what waits on it. */
export interface FaultRuleView {
  id: string | number;
  spec: FaultRuleSpec;
  /** `profile`: made at start-up (or by an added parent) from a profile's `faults`; `api`: added at run time. */
  origin: 'profile' | 'api';
  matched: number;
  fired: number;
  /** Requests hung on it now (released by release(id), remove(id), clear(), reset(), stop). */
  hung: number;
}

export interface AddOptions {
  origin?: 'profile' | 'api';
  /** Scopes a profile's rules to its vendor driver (the FaultContext's owner). */
  owner?: unknown;
}

function assumeValid(_spec: unknown): asserts _spec is FaultRuleSpec {}

class Rule {
  matched = 0;
  fired = 0;
  /** Taken out of the engine (a check that waited may still hold the list it was in). */
  gone = false;
  readonly hung = new Set<() => void>();
  private random!: () => number;
  private jitter!: () => number;
  private readonly pathRe: RegExp | undefined;
  private readonly uuid: string | undefined;
  private readonly vendor: boolean;

  constructor(
    readonly id: string | number,
    readonly spec: FaultRuleSpec,
    readonly origin: 'profile' | 'api',
    readonly owner: unknown,
  ) {
    this.restart();
    this.pathRe = spec.match.path === undefined ? undefined : globToRegExp(spec.match.path);
    this.uuid = spec.match.uuid?.toLowerCase();
    this.vendor = VENDOR_OPS.includes(spec.match.op);
  }

  /** Counters and PRNGs as when the rule was made. */
  restart(): void {
    this.matched = this.fired = 0;
    this.random = seededRandom(this.spec.trigger?.seed ?? 1);
    this.jitter = seededRandom((this.spec.trigger?.seed ?? 1) ^ 0x9e3779b9);
  }

  matches(ctx: FaultContext): boolean {
    if (this.gone) return false;
    const m = this.spec.match;
    // `store` is every attribute write; the others are their own step.
    if (m.op !== ctx.op && (m.op !== 'store' || ctx.op === 'read' || VENDOR_OPS.includes(ctx.op))) return false;
    if (this.owner !== undefined && this.owner !== ctx.owner) return false;
    if (m.parent !== undefined && m.parent !== ctx.parent) return false;
    if (m.type !== undefined && m.type !== ctx.type) return false;
    if (m.attr !== undefined && m.attr !== ctx.attr) return false;
    if (this.uuid !== undefined && !(this.vendor ? ctx.uuid === this.uuid : ctx.path?.toLowerCase().split('/').includes(this.uuid))) return false;
    if (this.pathRe && !(ctx.path !== undefined && this.pathRe.test(ctx.path))) return false;
    return true;
  }

  /** Counts a match and says whether it fires (the kernel's fault_attr: interval, probability, times). */
  fires(): boolean {
    this.matched++;
    const t = this.spec.trigger ?? {};
    if (t.times !== undefined && this.fired >= t.times) return false;
    const n = this.matched - (t.after ?? 0);
    if (n <= 0) return false;
    const fire =
      (t.sticky === true && this.fired > 0) ||
      (t.every === undefined && t.probability === undefined) ||
      (t.every !== undefined && n % t.every === 0) ||
      (t.probability !== undefined && this.random() < t.probability);
    if (fire) this.fired++;
    return fire;
  }

  delayOf(a: { ms: number; jitterMs?: number }): number {
    if (!a.jitterMs) return a.ms;
    return Math.max(0, a.ms + (this.jitter() * 2 - 1) * a.jitterMs);
  }

  release(): number {
    const n = this.hung.size;
    for (const r of [...this.hung]) r();
    this.hung.clear();
    return n;
  }

  view(): FaultRuleView {
    return { id: this.id, spec: this.spec, origin: this.origin, matched: this.matched, fired: this.fired, hung: this.hung.size };
  }
}

/**
 * The fault engine of one emulation: rules (match, action, trigger) checked at the kernel-level
 * step each names. The core asks at the vendor's create and remove, Kernfs at a write or a read.
 * Rules are checked in the order they were added; a delay or a hang waits and goes on to the next
 * rule, an errno, `succeed` or `content` ends the check (later rules do not count that request).
 * A check that no delay or hang holds answers synchronously (a read stays synchronous then).
 *
 * With no rule for an operation, watching(op) is one property read: the request path allocates
 * nothing and awaits nothing more than without the engine.
 */
export class FaultEngine {
  /** Replaced, never changed in place: a check that waits keeps iterating the list it started with. */
  private rules: readonly Rule[] = [];
  private readonly counts: Record<FaultOp, number> = Object.fromEntries(FAULT_OPS.map((op) => [op, 0])) as Record<FaultOp, number>;
  /** Rules of the attribute-write ops (not create, remove, read). */
  private writeRules = 0;
  private nextId = 1;
  private readonly fireListeners: ((f: FaultFired) => void)[] = [];

  constructor(
    private readonly clock: Clock,
    private readonly log?: Logger,
  ) {}

  /** Whether any rule could match a request of op (an attribute write is also a `store`). */
  watching(op: FaultOp): boolean {
    return this.counts[op] > 0 || (this.counts.store > 0 && op !== 'read' && op !== 'create' && op !== 'remove');
  }

  /** Whether any rule could match an attribute write (store, bind, unbind, sriov_numvfs, current_vgpu_type). */
  watchingWrites(): boolean {
    return this.writeRules > 0;
  }

  /**
   * Validates spec (FaultSpecError with every problem) and adds the rule; returns it as listed. A
   * profile's rules are made by the driver from a profile already validated: they are not checked again.
   */
  add(spec: unknown, opts: AddOptions = {}): FaultRuleView {
    if (opts.origin === 'profile') assumeValid(spec);
    else validateFaultRule(spec);
    const copy = structuredClone(spec);
    let id = copy.id;
    if (id === undefined) {
      while (this.find(this.nextId)) this.nextId++;
      id = this.nextId++;
    } else if (this.find(id)) {
      throw new FaultSpecError([`id: a rule ${JSON.stringify(id)} exists`]);
    }
    copy.id = id;
    const rule = new Rule(id, copy, opts.origin ?? 'api', opts.owner);
    this.rules = [...this.rules, rule];
    this.count(copy.match.op, 1);
    this.log?.info({ rule: id, spec: copy, origin: rule.origin }, 'fault rule added');
    return rule.view();
  }

  /**
   * Gives rule id a new spec (validated as by add; its id, if any, must be this one), in its place
   * in the order, with its counters and PRNG started again and what hung on it released.
   * Returns undefined if there is no such rule.
   */
  change(id: string | number, spec: unknown): FaultRuleView | undefined {
    const old = this.find(id);
    if (!old) return undefined;
    validateFaultRule(spec);
    if (spec.id !== undefined && String(spec.id) !== String(old.id)) throw new FaultSpecError([`id: a rule's id does not change (${JSON.stringify(old.id)})`]);
    const rule = new Rule(old.id, { ...structuredClone(spec), id: old.id }, old.origin, old.owner);
    this.rules = this.rules.map((r) => (r === old ? rule : r));
    this.count(old.spec.match.op, -1);
    this.count(rule.spec.match.op, 1);
    old.gone = true;
    old.release();
    this.log?.info({ rule: rule.id, spec: rule.spec }, 'fault rule changed');
    return rule.view();
  }

  list(): FaultRuleView[] {
    return this.rules.map((r) => r.view());
  }

  get(id: string | number): FaultRuleView | undefined {
    return this.find(id)?.view();
  }

  /** Removes the rule (releasing what hangs on it); false if there is none. */
  remove(id: string | number): boolean {
    const rule = this.find(id);
    if (!rule) return false;
    this.drop([rule]);
    return true;
  }

  /** Lets the requests hung on the rule go on; returns how many there were (undefined: no such rule). */
  release(id: string | number): number | undefined {
    return this.find(id)?.release();
  }

  /** Removes every rule, the profile's included, releasing every hung request. */
  clear(): void {
    this.drop(this.rules);
  }

  /** Back to the start: the rules added at run time go, the profile's stay with their counters and PRNGs restarted. */
  reset(): void {
    this.drop(this.rules.filter((r) => r.origin !== 'profile'));
    for (const r of this.rules) {
      r.release();
      r.restart();
    }
  }

  /** The daemon stops: nothing may stay hung (the rules stay; a later hang would not hold the unmount). */
  releaseAll(): number {
    let n = 0;
    for (const r of this.rules) n += r.release();
    return n;
  }

  /** The rules a vendor driver brought (its parent is unregistered). */
  removeOwned(owner: unknown): void {
    this.drop(this.rules.filter((r) => r.owner === owner));
  }

  hasOwned(owner: unknown): boolean {
    return this.rules.some((r) => r.owner === owner);
  }

  /** Hears every fire (the journal). Returns the unsubscribe function. */
  onFire(listener: (f: FaultFired) => void): () => void {
    this.fireListeners.push(listener);
    return () => {
      const i = this.fireListeners.indexOf(listener);
      if (i >= 0) this.fireListeners.splice(i, 1);
    };
  }

  /**
   * Checks a request: throws MdevError for an errno, returns a verdict for `succeed` or `content`,
   * and waits out delays and hangs. Answers at once (no promise) unless a delay or a hang fires:
   * a read with no such rule firing is answered as synchronously as without the engine. Call only
   * when watching(ctx.op).
   */
  check(ctx: FaultContext): FaultVerdict | undefined | Promise<FaultVerdict | undefined> {
    return this.run(this.rules, 0, ctx);
  }

  /** The rules from i on; a check that waits goes on with the list it started with. */
  private run(rules: readonly Rule[], i: number, ctx: FaultContext): FaultVerdict | undefined | Promise<FaultVerdict | undefined> {
    for (; i < rules.length; i++) {
      const rule = rules[i]!;
      if (!rule.matches(ctx) || !rule.fires()) continue;
      const a = rule.spec.action;
      if (a.kind === 'delay' || a.kind === 'hang') {
        const next = i + 1;
        return this.wait(rule, a, ctx).then(() => this.run(rules, next, ctx));
      }
      const v = this.end(rule, ctx);
      if (v) return v;
    }
    return undefined;
  }

  private wait(rule: Rule, a: { kind: 'delay'; ms: number; jitterMs?: number } | { kind: 'hang' }, ctx: FaultContext): Promise<void> {
    if (a.kind === 'hang') {
      this.fired(rule, ctx, {});
      return new Promise<void>((resolve) => rule.hung.add(resolve));
    }
    const ms = rule.delayOf(a);
    this.fired(rule, ctx, { delayMs: ms });
    return this.clock.sleep(ms);
  }

  private end(rule: Rule, ctx: FaultContext): FaultVerdict | undefined {
    const a = rule.spec.action;
    if (a.kind === 'errno') {
      this.fired(rule, ctx, { errno: a.errno });
      throw new MdevError(errnoByName(a.errno), `fault rule ${rule.id}`);
    }
    this.fired(rule, ctx, {});
    if (a.kind === 'succeed') return { rule: rule.id, kind: 'succeed' };
    if (a.kind === 'content') return { rule: rule.id, kind: 'content', content: a.content };
    return undefined;
  }

  private fired(rule: Rule, ctx: FaultContext, extra: { errno?: string; delayMs?: number }): void {
    this.log?.info({ rule: rule.id, op: ctx.op, path: ctx.path, uuid: ctx.uuid, action: rule.spec.action.kind, ...extra }, 'fault fired');
    for (const l of this.fireListeners) l({ rule: rule.id, action: rule.spec.action.kind, ctx, ...extra });
  }

  private count(op: FaultOp, by: 1 | -1): void {
    this.counts[op] += by;
    if (op !== 'read' && !VENDOR_OPS.includes(op)) this.writeRules += by;
  }

  private find(id: string | number): Rule | undefined {
    // "3" names rule 3 too (an id from a URL or a command line is a string).
    return this.rules.find((r) => r.id === id || String(r.id) === String(id));
  }

  private drop(gone: readonly Rule[]): void {
    if (gone.length === 0) return;
    const set = new Set(gone);
    this.rules = this.rules.filter((r) => !set.has(r));
    for (const r of gone) {
      r.gone = true;
      this.count(r.spec.match.op, -1);
      r.release();
      this.log?.info({ rule: r.id }, 'fault rule removed');
    }
  }
}
