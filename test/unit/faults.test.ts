import Ajv from 'ajv';
import t from 'tap';
import { Errno, MdevError } from '../../src/base/errno';
import { FaultEngine, type FaultContext, type FaultFired } from '../../src/faults/engine';
import { FAULT_RULE_SCHEMA, FaultSpecError } from '../../src/faults/spec';
import { ManualClock, tick } from '../helpers/manual-clock';

// The fault engine on its own: each match field, action and trigger, against contexts as the
// core and Kernfs make them.

const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const DEV = `/sys/devices/virtual/mtty/mtty/${U}`;
const create: FaultContext = { op: 'create', parent: 'mtty', type: 'mtty-2', uuid: U, path: DEV };
const store = (path: string): FaultContext => ({ op: 'store', attr: path.slice(path.lastIndexOf('/') + 1), path });

/** The check's outcome: 'ok', the verdict's kind, or the errno's number. */
async function outcome(e: FaultEngine, ctx: FaultContext): Promise<string | number> {
  if (!e.watching(ctx.op)) return 'ok';
  try {
    return (await e.check(ctx))?.kind ?? 'ok';
  } catch (err) {
    return err instanceof MdevError ? err.errno : -1;
  }
}

const problems = (e: FaultEngine, spec: unknown): string[] => {
  try {
    e.add(spec);
    return [];
  } catch (err) {
    if (!(err instanceof FaultSpecError)) throw err;
    return err.problems;
  }
};

t.test('bad rules are refused with every problem named, and add nothing', async (t) => {
  const e = new FaultEngine(new ManualClock());
  const errno = { kind: 'errno', errno: 'EIO' };
  t.same(problems(e, { match: { op: 'create' }, action: { kind: 'errno', errno: 'ENOPE' } }), [
    'action.errno: must be one of ' + Object.keys(Errno).map((n) => JSON.stringify(n)).join(', '),
  ]);
  t.same(problems(e, { match: { op: 'create', colour: 'red' }, action: errno }), ['match: unknown field "colour"']);
  t.same(problems(e, { match: {}, action: errno }), ['match: "op" is required']);
  t.same(problems(e, { match: { op: 'make' }, action: errno }), [`match.op: must be one of "create", "remove", "store", "bind", "unbind", "sriov_numvfs", "current_vgpu_type", "read"`]);
  t.same(problems(e, { match: { op: 'create' }, action: { kind: 'explode' } }), ['action.kind: must be one of "errno", "delay", "hang", "succeed", "content"']);
  t.same(problems(e, { match: { op: 'create' }, action: errno, trigger: { every: 0, probability: 2 } }), [
    'trigger.every: must be >= 1',
    'trigger.probability: must be <= 1',
  ]);
  t.same(problems(e, { match: { op: 'create', uuid: 'nope' }, action: errno }), ['match.uuid: must match pattern "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"']);
  t.same(problems(e, { match: { op: 'store', parent: 'mtty' }, action: errno }), ['match.parent: applies to op "create" and "remove" only (match an attribute by "path" or "uuid")']);
  t.same(problems(e, { match: { op: 'create', attr: 'create' }, action: errno }), ['match.attr: applies to attribute writes and reads, not to op "create" or "remove"']);
  t.same(problems(e, { match: { op: 'store' }, action: { kind: 'content', content: 'x' } }), ['action.kind "content": applies to op "read" only']);
  t.same(problems(e, { match: { op: 'read' }, action: { kind: 'succeed' } }), ['action.kind "succeed": applies to writes only (a read that succeeds is an ordinary read)']);
  t.same(problems(e, { match: { op: 'remove' }, action: { kind: 'succeed' } }), [
    'action.kind "succeed": a vendor step cannot succeed without acting; for a remove write that does nothing use op "store" with attr "remove"',
  ]);
  t.same(problems(e, { match: { op: 'create' }, action: { kind: 'delay', ms: 10, jitterMs: 20 } }), ['action.jitterMs: must not exceed ms (a delay is never negative)']);
  t.same(problems(e, 'create'), ['the rule: must be object']);
  t.same(e.list(), [], 'nothing was added');
  t.notOk(e.watching('create'));
  e.add({ id: 'x', match: { op: 'create' }, action: errno });
  t.same(problems(e, { id: 'x', match: { op: 'remove' }, action: errno }), ['id: a rule "x" exists']);
});

t.test('the exported schema is what the engine checks (the HTTP API validates with it)', async (t) => {
  const validate = new Ajv({ discriminator: true, strict: false }).compile(FAULT_RULE_SCHEMA);
  t.ok(validate({ match: { op: 'create', type: 'mtty-2' }, action: { kind: 'errno', errno: 'ENOSPC' }, trigger: { times: 1 } }));
  t.notOk(validate({ match: { op: 'create' }, action: { kind: 'errno', errno: 'ENOSPC' }, extra: 1 }));
  t.notOk(validate({ match: { op: 'create' }, action: { kind: 'delay' } }));
});

t.test('each match field narrows the rule', async (t) => {
  const cases: [string, object, FaultContext, FaultContext][] = [
    ['op', { op: 'create' }, create, { ...create, op: 'remove' }],
    ['parent', { op: 'create', parent: 'mtty' }, create, { ...create, parent: 'mdpy' }],
    ['type', { op: 'create', type: 'mtty-2' }, create, { ...create, type: 'mtty-1' }],
    ['uuid (any case)', { op: 'create', uuid: U.toUpperCase() }, create, { ...create, uuid: '83b8f4f2-509f-382f-3c1e-e6bfe0fa1002' }],
    ['path glob, *', { op: 'create', path: '/sys/devices/virtual/*/mtty/*' }, create, { ...create, path: `/sys/devices/virtual/mtty/x/mtty/${U}` }],
    ['path glob, **', { op: 'store', path: '/sys/**/remove' }, store(`${DEV}/remove`), store(`${DEV}/remove2`)],
    ['path glob, ?', { op: 'store', path: `${DEV}/remov?` }, store(`${DEV}/remove`), store(`${DEV}/remov/e`)],
    ['attr', { op: 'store', attr: 'remove' }, store(`${DEV}/remove`), store(`${DEV}/uevent`)],
    ['uuid of an attribute: a component of its path', { op: 'store', uuid: U }, store(`${DEV}/remove`), store(`/sys/devices/virtual/mtty/mtty/${U}x/remove`)],
    ['store is any attribute write', { op: 'store' }, { ...store('/sys/bus/pci/drivers/nvidia/bind'), op: 'bind' }, { op: 'read', attr: 'x', path: '/sys/x' }],
    ['bind is its own step', { op: 'bind' }, { ...store('/sys/bus/pci/drivers/nvidia/bind'), op: 'bind' }, store('/sys/bus/pci/drivers/nvidia/new_id')],
  ];
  for (const [what, match, yes, no] of cases) {
    const e = new FaultEngine(new ManualClock());
    e.add({ match, action: { kind: 'errno', errno: 'ENOSPC' } });
    t.equal(await outcome(e, no), 'ok', `${what}: another request passes`);
    t.equal(await outcome(e, yes), Errno.ENOSPC, `${what}: the request named fails`);
    t.same(e.list().map((r) => [r.matched, r.fired]), [[1, 1]], `${what}: counted once`);
  }
});

t.test('a profile rule applies to its own driver only', async (t) => {
  const e = new FaultEngine(new ManualClock());
  const mine = {};
  e.add({ match: { op: 'create' }, action: { kind: 'errno', errno: 'EIO' } }, { origin: 'profile', owner: mine });
  t.equal(await outcome(e, { ...create, owner: {} }), 'ok');
  t.equal(await outcome(e, { ...create, owner: mine }), Errno.EIO);
  e.removeOwned(mine);
  t.same(e.list(), []);
});

t.test('actions: errno, delay, hang, succeed, content', async (t) => {
  const clock = new ManualClock();
  const e = new FaultEngine(clock);
  const fired: FaultFired[] = [];
  e.onFire((f) => fired.push(f));

  const delay = e.add({ match: { op: 'create' }, action: { kind: 'delay', ms: 100 } });
  let done = false;
  const p = outcome(e, create).then((r) => ((done = true), r));
  await tick();
  t.equal(clock.waiting, 1, 'the delay sleeps on the emulation clock');
  t.notOk(done);
  clock.releaseAll();
  t.equal(await p, 'ok', 'then the step goes on');
  e.remove(delay.id);

  const hang = e.add({ match: { op: 'create' }, action: { kind: 'hang' } });
  const hung = [outcome(e, create), outcome(e, create)];
  await tick();
  t.equal(e.get(hang.id)!.hung, 2, 'list() shows what hangs on the rule');
  t.equal(e.release(hang.id), 2, 'release lets both go');
  t.same(await Promise.all(hung), ['ok', 'ok']);
  t.equal(e.get(hang.id)!.hung, 0);
  t.equal(e.release('nope'), undefined, 'no such rule');

  const ends: [string, (id: string | number) => unknown][] = [
    ['remove(id)', (id) => e.remove(id)],
    ['clear()', () => e.clear()],
    ['reset()', () => e.reset()],
    ['releaseAll() (the daemon stops)', () => e.releaseAll()],
  ];
  for (const [name, end] of ends) {
    const r = e.get(hang.id) ?? e.add({ match: { op: 'create' }, action: { kind: 'hang' } });
    const q = outcome(e, create);
    await tick();
    end(r.id);
    t.equal(await q, 'ok', `${name} releases a hang`);
    e.clear();
  }

  e.add({ match: { op: 'store' }, action: { kind: 'succeed' } });
  t.equal(await outcome(e, store(`${DEV}/remove`)), 'succeed');
  e.clear();
  const content = e.add({ match: { op: 'read', attr: 'available_instances' }, action: { kind: 'content', content: '0\n' } });
  t.same(e.check({ op: 'read', attr: 'available_instances', path: '/sys/x/available_instances' }), { rule: content.id, kind: 'content', content: '0\n' }, 'a content: answered at once, no promise');
  t.equal(e.check({ op: 'read', attr: 'name', path: '/sys/x/name' }), undefined);
  t.same(
    fired.map((f) => [f.action, f.ctx.op]),
    [['delay', 'create'], ['hang', 'create'], ['hang', 'create'], ['hang', 'create'], ['hang', 'create'], ['hang', 'create'], ['hang', 'create'], ['succeed', 'store'], ['content', 'read']],
    'every fire is heard (the journal)',
  );
});

t.test('a read: answered at once unless a delay or a hang fires; then a promise that goes on with the later rules', async (t) => {
  const clock = new ManualClock();
  const e = new FaultEngine(clock);
  const read = (attr: string): FaultContext => ({ op: 'read', attr, path: `/sys/x/${attr}` });
  t.notOk(e.watching('read'), 'no rule: a read does not ask');
  const delay = e.add({ match: { op: 'read', attr: 'a' }, action: { kind: 'delay', ms: 50 } });
  const content = e.add({ match: { op: 'read', attr: 'a' }, action: { kind: 'content', content: 'late\n' } });
  t.ok(e.watching('read'));
  t.equal(e.check(read('b')), undefined, 'a read no rule matches: undefined, synchronously');
  const held = e.check(read('a'));
  t.ok(held instanceof Promise, 'the delay fired: a promise');
  let settled = false;
  void (held as Promise<unknown>).then(() => (settled = true));
  await tick();
  t.notOk(settled, 'held until the delay ends');
  t.equal(e.get(content.id)!.matched, 0, 'the later rule has not seen it yet');
  clock.releaseAll();
  t.same(await held, { rule: content.id, kind: 'content', content: 'late\n' }, 'then the later rule acts');
  e.remove(delay.id);
  t.same(e.check(read('a')), { rule: content.id, kind: 'content', content: 'late\n' }, 'without the delay: at once');
  e.clear();

  const hang = e.add({ match: { op: 'read' }, action: { kind: 'hang' } });
  e.add({ match: { op: 'read' }, action: { kind: 'errno', errno: 'EIO' } });
  const p = e.check(read('a')) as Promise<unknown>;
  await tick();
  t.equal(e.get(hang.id)!.hung, 1, 'the read hangs on the rule');
  t.equal(e.release(hang.id), 1);
  await t.rejects(p, { name: 'MdevError', errno: Errno.EIO }, 'released: the next rule fails it');
  e.clear();
  e.add({ match: { op: 'read' }, action: { kind: 'errno', errno: 'EIO' } });
  t.throws(() => e.check(read('a')), { name: 'MdevError', errno: Errno.EIO }, 'an errno with no wait before it: thrown at once');
});

t.test('rules run in order: delays add up, the first errno ends the check', async (t) => {
  const clock = new ManualClock();
  const e = new FaultEngine(clock);
  e.add({ match: { op: 'create' }, action: { kind: 'delay', ms: 5 } });
  e.add({ match: { op: 'create' }, action: { kind: 'errno', errno: 'ENOSPC' } });
  e.add({ match: { op: 'create' }, action: { kind: 'errno', errno: 'EIO' } });
  const p = outcome(e, create);
  await tick();
  clock.releaseAll();
  t.equal(await p, Errno.ENOSPC);
  t.same(e.list().map((r) => r.matched), [1, 1, 0], 'the rule after the errno did not see the request');
});

t.test('a rule removed while a request waits on an earlier one is not applied to it', async (t) => {
  const e = new FaultEngine(new ManualClock());
  const hang = e.add({ match: { op: 'create' }, action: { kind: 'hang' } });
  const fail = e.add({ match: { op: 'create' }, action: { kind: 'errno', errno: 'EIO' } });
  const p = outcome(e, create);
  await tick();
  e.remove(fail.id);
  e.release(hang.id);
  t.equal(await p, 'ok');
});

t.test('delay jitter comes from the rule seed', async (t) => {
  const delays = async (seed: number) => {
    const e = new FaultEngine({ sleep: () => Promise.resolve() });
    const out: number[] = [];
    e.onFire((f) => out.push(f.delayMs!));
    e.add({ match: { op: 'create' }, action: { kind: 'delay', ms: 100, jitterMs: 50 }, trigger: { seed } });
    for (let i = 0; i < 20; i++) await e.check(create);
    return out;
  };
  const a = await delays(7);
  t.same(await delays(7), a, 'same seed, same delays');
  t.not(JSON.stringify(await delays(8)), JSON.stringify(a), 'another seed, other delays');
  t.ok(a.every((d) => d >= 50 && d <= 150), 'within ms ± jitterMs');
  t.ok(new Set(a).size > 10, 'they vary');
});

/** Which of n matches fire (1-based). */
async function firing(trigger: object, n: number): Promise<number[]> {
  const e = new FaultEngine(new ManualClock());
  e.add({ match: { op: 'create' }, action: { kind: 'errno', errno: 'EIO' }, trigger });
  const out: number[] = [];
  for (let i = 1; i <= n; i++) if ((await outcome(e, create)) === Errno.EIO) out.push(i);
  return out;
}

t.test('triggers', async (t) => {
  t.same(await firing({}, 3), [1, 2, 3], 'none: every match');
  t.same(await firing({ after: 2 }, 5), [3, 4, 5], 'after N: not the first N');
  t.same(await firing({ every: 3 }, 9), [3, 6, 9], 'every N');
  t.same(await firing({ after: 1, every: 2 }, 7), [3, 5, 7], 'every N counted after the first N');
  t.same(await firing({ times: 2 }, 5), [1, 2], 'at most N times');
  t.same(await firing({ every: 2, times: 2 }, 9), [2, 4]);
  t.same(await firing({ every: 4, sticky: true }, 7), [4, 5, 6, 7], 'sticky: fires on from its first fire');
  t.same(await firing({ every: 4, sticky: true, times: 2 }, 7), [4, 5], 'sticky within times');
  const p = await firing({ probability: 0.3, seed: 42 }, 200);
  t.same(await firing({ probability: 0.3, seed: 42 }, 200), p, 'probability: the seed decides, reproducibly');
  t.not(JSON.stringify(await firing({ probability: 0.3, seed: 43 }, 200)), JSON.stringify(p));
  t.ok(p.length > 40 && p.length < 80, `about 30% of 200 (${p.length})`);
  t.same(await firing({ probability: 0 }, 50), []);
  t.same(await firing({ probability: 1 }, 3), [1, 2, 3]);
  t.same(await firing({ every: 5, probability: 0.3, seed: 42 }, 10).then((f) => f.includes(5) && f.includes(10)), true, 'every N and chance between');
});

t.test('reset restarts the profile rules and drops the others; no rule, no watching', async (t) => {
  const e = new FaultEngine(new ManualClock());
  e.add({ match: { op: 'create' }, action: { kind: 'errno', errno: 'EIO' }, trigger: { probability: 0.5, seed: 3 } }, { origin: 'profile', owner: 1 });
  const run = async () => {
    const out: (string | number)[] = [];
    for (let i = 0; i < 16; i++) out.push(await outcome(e, { ...create, owner: 1 }));
    return out;
  };
  const first = await run();
  const api = e.add({ match: { op: 'store' }, action: { kind: 'errno', errno: 'EIO' } });
  t.equal(api.id, 2, 'numbered in order');
  t.equal(api.origin, 'api');
  t.ok(e.watching('bind'), 'a store rule watches every attribute write');
  t.ok(e.watchingWrites());
  e.reset();
  t.same(e.list().map((r) => [r.id, r.origin, r.matched, r.fired]), [[1, 'profile', 0, 0]]);
  t.same(await run(), first, 'the same fires again');
  t.notOk(e.watching('store'));
  t.notOk(e.watchingWrites());
  e.clear();
  t.same(e.list(), []);
  for (const op of ['create', 'remove', 'store', 'bind', 'read'] as const) t.notOk(e.watching(op), `${op}: no rule, not watching`);
});

t.test('change: a new spec in the same place, counters restarted, hangs released', async (t) => {
  const e = new FaultEngine(new ManualClock());
  e.add({ match: { op: 'create' }, action: { kind: 'hang' } });
  e.add({ id: 'last', match: { op: 'remove' }, action: { kind: 'errno', errno: 'EIO' } });
  const hung = outcome(e, create);
  await tick();
  const changed = e.change(1, { match: { op: 'store', attr: 'remove' }, action: { kind: 'errno', errno: 'ENODEV' } });
  t.same(changed, { id: 1, spec: { id: 1, match: { op: 'store', attr: 'remove' }, action: { kind: 'errno', errno: 'ENODEV' } }, origin: 'api', matched: 0, fired: 0, hung: 0 });
  t.equal(await hung, 'ok', 'what hung on the old spec goes on');
  t.equal(await outcome(e, create), 'ok', 'the old match is gone');
  t.notOk(e.watching('create'));
  t.equal(await outcome(e, store(`${DEV}/remove`)), Errno.ENODEV);
  t.same(e.list().map((r) => r.id), [1, 'last'], 'in its place');
  t.equal(e.change('nope', { match: { op: 'create' }, action: { kind: 'hang' } }), undefined);
  t.throws(() => e.change(1, { id: 2, match: { op: 'create' }, action: { kind: 'hang' } }), FaultSpecError);
  t.throws(() => e.change(1, { match: { op: 'create' } }), FaultSpecError);
  t.equal(e.get(1)!.spec.match.op, 'store', 'a refused change changes nothing');
});
