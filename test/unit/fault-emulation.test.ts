import t, { type Test } from 'tap';
import type { AbiVersion } from '../../src/core/abi';
import { MdevError, errnoName } from '../../src/base/errno';
import { Emulation } from '../../src/emulation';
import type { Profile } from '../../src/drivers/profile-types';
import { SAMPLES } from '../../src/drivers/samples';
import { silentLogger } from '../../src/base/log';
import { validateFaultRule } from '../../src/faults/spec';
import type { Kernfs } from '../../src/sysfs/kernfs';
import { checkInvariants, kernfsTree } from '../helpers/invariants';
import { ManualClock, tick } from '../helpers/manual-clock';

// Runtime fault rules through the emulation in-process (Kernfs, as the FUSE backends call it), on
// both ABIs: each action kind where it applies, then the tree's invariants (nothing leaked, the
// tree consistent) and what a real failure at that step would leave.

const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const MTTY = '/devices/virtual/mtty/mtty';
const CREATE = `${MTTY}/mdev_supported_types/mtty-2/create`;
const AVAIL = `${MTTY}/mdev_supported_types/mtty-2/available_instances`;
const O_WRONLY = 1;

async function write(k: Kernfs, path: string, text: string): Promise<number | string> {
  const fh = k.open(path, O_WRONLY);
  try {
    return await k.write(fh, Buffer.from(text));
  } catch (err) {
    if (err instanceof MdevError) return errnoName(err.errno);
    throw err;
  } finally {
    k.release(fh);
  }
}

function readFile(k: Kernfs, path: string): string {
  try {
    return kernfsTree(k).readFile(path);
  } catch (err) {
    if (err instanceof MdevError) return errnoName(err.errno);
    throw err;
  }
}

async function setup(abi: AbiVersion, profile: Profile = SAMPLES) {
  const clock = new ManualClock();
  const e = new Emulation(profile, { abi, log: silentLogger, clock });
  await e.ready;
  const events: string[] = [];
  e.uevents.subscribe((ev) => {
    events.push(`${ev.ACTION} ${ev.DEVPATH}`);
  });
  const exists = (p: string) => e.kernfs.find(p) !== undefined;
  return { e, k: e.kernfs, clock, events, exists };
}

function invariants(t: Test, e: Emulation, abi: AbiVersion, quiet = true): void {
  t.same(checkInvariants(kernfsTree(e.kernfs), { profile: SAMPLES, abi, quiet, core: e.core }).problems, [], quiet ? 'invariants hold' : 'invariants hold in flight');
}

/** The events of a create of U that fails in the vendor, by whatever means. */
async function failedCreate(abi: AbiVersion, how: 'rule' | 'profile') {
  const profile: Profile = how === 'rule' ? SAMPLES : { parents: SAMPLES.parents.map((p) => (p.name === 'mtty' ? { ...p, faults: { createErrno: 'ENOSPC', createFailEvery: 1 } } : p)) };
  const s = await setup(abi, profile);
  if (how === 'rule') s.e.faults.add({ match: { op: 'create', type: 'mtty-2' }, action: { kind: 'errno', errno: 'ENOSPC' }, trigger: { times: 1 } });
  const result = await write(s.k, CREATE, U);
  return { ...s, result };
}

for (const abi of ['6.1', '4.17'] as const) {
  t.test(`${abi}: an errno at the vendor's create: no trace, the events of a vendor's own failure`, async (t) => {
    const { e, k, events, exists, result } = await failedCreate(abi, 'rule');
    const own = await failedCreate(abi, 'profile');
    t.equal(result, 'ENOSPC');
    t.same(events, own.events, 'the same uevents as a vendor whose create fails');
    t.match(events[0], /^add .*83b8f4f2/, 'the device was added');
    t.match(events[events.length - 1], /^remove .*83b8f4f2/, 'and removed');
    t.notOk(exists(`${MTTY}/${U}`));
    t.equal(readFile(k, AVAIL), '12\n', 'the capacity is back');
    invariants(t, e, abi);
    // Everything came back exactly once: the same create now gets what a first create gets.
    const fresh = await setup(abi);
    t.equal(await write(fresh.k, CREATE, U), 36);
    t.equal(await write(k, CREATE, U), 36, 'times 1: the next create succeeds, with the same UUID');
    const [a, b] = [e.core.devices.get(U)!, fresh.e.core.devices.get(U)!];
    t.same([a.iommuGroup, a.vfioIndex, a.vfioGroupMinor], [b.iommuGroup, b.vfioIndex, b.vfioGroupMinor], 'IOMMU group, vfio and group minor numbers as on a fresh host');
    t.same(e.faults.list().map((r) => [r.matched, r.fired]), [[2, 1]]);
    invariants(t, e, abi);
  });

  t.test(`${abi}: an errno at the vendor's remove follows the ABI`, async (t) => {
    const { e, k, exists } = await setup(abi);
    await write(k, CREATE, U);
    e.faults.add({ match: { op: 'remove', uuid: U }, action: { kind: 'errno', errno: 'EIO' } });
    const result = await write(k, `${MTTY}/${U}/remove`, '1');
    if (abi === '4.17') {
      t.equal(result, 'EBUSY', "4.17: the vendor's veto");
      t.ok(exists(`${MTTY}/${U}/remove`), 'the device stays, its remove file restored');
      t.equal(e.core.devices.get(U)?.state, 'active');
      t.equal(readFile(k, AVAIL), '11\n');
    } else {
      t.equal(result, 1, '6.1: no veto, the removal completes');
      t.notOk(exists(`${MTTY}/${U}`));
      t.equal(readFile(k, AVAIL), '12\n', 'the vendor released its resources');
    }
    invariants(t, e, abi);
  });

  t.test(`${abi}: a delay at the vendor's create holds the write, the UUID reserved`, async (t) => {
    const { e, k, clock } = await setup(abi);
    e.faults.add({ match: { op: 'create' }, action: { kind: 'delay', ms: 2000 } });
    let result: number | string | undefined;
    const w = write(k, CREATE, U).then((r) => (result = r));
    await tick();
    t.equal(clock.waiting, 1);
    t.equal(result, undefined, 'the write waits');
    t.equal(e.core.devices.get(U)?.state, 'reserved');
    t.equal(await write(k, CREATE, U), 'EEXIST', 'the UUID is taken meanwhile');
    invariants(t, e, abi, false);
    clock.releaseAll();
    await w;
    t.equal(result, 36);
    invariants(t, e, abi);
  });

  t.test(`${abi}: a hang holds a create and a remove until released, by each way`, async (t) => {
    const { e, k, exists } = await setup(abi);
    const rule = e.faults.add({ match: { op: 'create', parent: 'mtty' }, action: { kind: 'hang' } });
    const w = write(k, CREATE, U);
    await tick();
    t.equal(e.faults.get(rule.id)!.hung, 1);
    invariants(t, e, abi, false);
    t.equal(e.faults.release(rule.id), 1);
    t.equal(await w, 36, 'released: the create goes on');
    e.faults.remove(rule.id);

    const hang = e.faults.add({ match: { op: 'remove' }, action: { kind: 'hang' } });
    const r = write(k, `${MTTY}/${U}/remove`, '1');
    await tick();
    t.equal(e.core.devices.get(U)?.state, 'removing');
    t.equal(e.faults.get(hang.id)!.hung, 1);
    t.ok(e.faults.remove(hang.id), 'removing the rule releases it');
    t.equal(await r, 1);
    t.notOk(exists(`${MTTY}/${U}`));
    t.same(e.faults.list(), []);
    invariants(t, e, abi);
  });

  t.test(`${abi}: succeed: a write that reports success and changes nothing`, async (t) => {
    const { e, k, events, exists } = await setup(abi);
    await write(k, CREATE, U);
    const before = events.length;
    e.faults.add({ match: { op: 'store', attr: 'remove', uuid: U }, action: { kind: 'succeed' }, trigger: { times: 1 } });
    t.equal(await write(k, `${MTTY}/${U}/remove`, '1'), 1);
    t.ok(exists(`${MTTY}/${U}/remove`), 'the device is still there');
    t.equal(events.length, before, 'no uevent');
    t.equal(await write(k, `${MTTY}/${U}/remove`, '1'), 1, 'times 1: the next remove removes');
    t.notOk(exists(`${MTTY}/${U}`));
    invariants(t, e, abi);
  });

  t.test(`${abi}: unbind and store errnos change nothing; reads get an errno or another content`, async (t) => {
    const { e, k, exists } = await setup(abi);
    await write(k, CREATE, U);
    const driver = abi === '6.1' ? 'mtty' : 'vfio_mdev';
    e.faults.add({ match: { op: 'unbind' }, action: { kind: 'errno', errno: 'EIO' } });
    t.equal(await write(k, `/bus/mdev/drivers/${driver}/unbind`, U), 'EIO');
    t.ok(exists(`${MTTY}/${U}/driver`), 'still bound');
    e.faults.clear();
    e.faults.add({ match: { op: 'store', path: '/sys/devices/**/create' }, action: { kind: 'errno', errno: 'ENOMEM' } });
    t.equal(await write(k, CREATE, '83b8f4f2-509f-382f-3c1e-e6bfe0fa1002'), 'ENOMEM');
    t.equal(e.core.devices.size, 1, 'no device made');
    e.faults.clear();
    e.faults.add({ match: { op: 'read', attr: 'available_instances', path: `/sys${MTTY}/**` }, action: { kind: 'content', content: '0\n' }, trigger: { times: 1 } });
    e.faults.add({ match: { op: 'read', attr: 'name' }, action: { kind: 'errno', errno: 'EIO' } });
    t.equal(readFile(k, AVAIL), '0\n', 'replaced once');
    t.equal(readFile(k, AVAIL), '11\n', 'then the real value');
    t.equal(readFile(k, `${MTTY}/mdev_supported_types/mtty-2/name`), 'EIO');
    e.faults.clear();
    invariants(t, e, abi);
  });

  t.test(`${abi}: a read delayed or hung: answered later with the file as it is then; ENODEV if its device went`, async (t) => {
    const { e, k, clock } = await setup(abi);
    const fh = k.open(AVAIL, 0);
    t.type(k.read(fh, 4096, 0), Buffer, 'no read rule: answered at once');
    e.faults.add({ match: { op: 'read', attr: 'name' }, action: { kind: 'hang' } });
    t.type(k.read(fh, 4096, 0), Buffer, 'a rule on another file: still at once');
    const delay = e.faults.add({ match: { op: 'read', attr: 'available_instances' }, action: { kind: 'delay', ms: 100 } });
    const delayed = k.read(fh, 4096, 0);
    t.ok(delayed instanceof Promise, 'the delay holds the read');
    await write(k, CREATE, U);
    clock.releaseAll();
    t.equal((await delayed).toString(), '11\n', 'its content is rendered when it goes on (after the create)');
    e.faults.remove(delay.id);

    const hang = e.faults.add({ match: { op: 'read', uuid: U }, action: { kind: 'hang' } });
    const dfh = k.open(`${MTTY}/${U}/uevent`, 0);
    const hung = k.read(dfh, 4096, 0) as Promise<Buffer>;
    await tick();
    t.equal(e.faults.get(hang.id)!.hung, 1, 'the read hangs on the rule');
    t.equal(e.faults.release(hang.id), 1);
    t.equal((await hung).toString(), `DRIVER=${abi === '6.1' ? 'mtty' : 'vfio_mdev'}\n`, 'released: the read completes with its content');
    const again = k.read(dfh, 4096, 0) as Promise<Buffer>;
    await tick();
    t.equal(await write(k, `${MTTY}/${U}/remove`, '1'), 1, 'a remove goes on while a read of the device hangs');
    e.faults.remove(hang.id);
    await t.rejects(again, { name: 'MdevError', errno: 19 }, 'its device went: ENODEV, as a stale file');
    k.release(dfh);
    k.release(fh);
    invariants(t, e, abi);
  });
}

t.test("a profile's faults are the engine's rules, listed with their counts, gone with their parent", async (t) => {
  const profile: Profile = {
    parents: [
      {
        name: 'flaky',
        path: 'devices/virtual/flaky/flaky',
        class: 'flaky',
        mdevDriver: 'flaky',
        capacity: { model: 'counter', max: 8 },
        faults: { createDelayMs: 5, createErrno: 'EIO', createFailEvery: 2, removeErrno: 'EBUSY', removeFailProbability: 0.5, seed: 9 },
        types: [{ name: 'a' }, { name: 'b', faults: { createFailEvery: 3 } }],
      },
    ],
  };
  const e = new Emulation(profile, { log: silentLogger, clock: new ManualClock() });
  await e.ready;
  t.same(
    e.faults.list().map((r) => [r.id, r.origin, r.spec]),
    [
      [1, 'profile', { id: 1, match: { op: 'create', type: 'flaky-a' }, action: { kind: 'delay', ms: 5 } }],
      [2, 'profile', { id: 2, match: { op: 'create', type: 'flaky-a' }, action: { kind: 'errno', errno: 'EIO' }, trigger: { every: 2, seed: 9 } }],
      [3, 'profile', { id: 3, match: { op: 'remove', type: 'flaky-a' }, action: { kind: 'errno', errno: 'EBUSY' }, trigger: { probability: 0.5, seed: 1009 } }],
      [4, 'profile', { id: 4, match: { op: 'create', type: 'flaky-b' }, action: { kind: 'delay', ms: 5 } }],
      [5, 'profile', { id: 5, match: { op: 'create', type: 'flaky-b' }, action: { kind: 'errno', errno: 'EIO' }, trigger: { every: 3, seed: 10 } }],
      [6, 'profile', { id: 6, match: { op: 'remove', type: 'flaky-b' }, action: { kind: 'errno', errno: 'EBUSY' }, trigger: { probability: 0.5, seed: 1010 } }],
    ],
  );
  for (const r of e.faults.list()) t.doesNotThrow(() => validateFaultRule(r.spec), `rule ${r.id} is valid as the API would take it`);
  await e.core.unregisterParent('flaky');
  t.same(e.faults.list(), [], 'the parent took its rules with it');
});
