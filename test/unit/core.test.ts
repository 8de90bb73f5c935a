import t from 'tap';
import { Errno, MdevError } from '../../src/base/errno';
import type { MdevType } from '../../src/core/model';
import { Emulation } from '../../src/emulation';
import type { ParentProfile, Profile } from '../../src/drivers/profile-types';
import { AP, SAMPLES } from '../../src/drivers/samples';
import { silentLogger } from '../../src/base/log';
import { ManualClock, tick } from '../helpers/manual-clock';

const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const uuid = (n: number) => `00000000-0000-0000-0000-${String(n).padStart(12, '0')}`;
const line = (s: string) => Buffer.from(s + '\n');

function setup(profile: Profile = SAMPLES, abi = '6.1', clock = new ManualClock()) {
  const { core } = new Emulation(profile, { abi, log: silentLogger, clock });
  const type = (id: string): MdevType => {
    for (const p of core.parents.values()) {
      const t = p.types.get(id);
      if (t) return t;
    }
    throw new Error(`no type ${id}`);
  };
  const avail = (id: string) => core.availableInstances(type(id));
  return { core, type, avail, clock };
}

async function errnoOf(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return e instanceof MdevError ? e.errno : -1;
  }
}

const slowParent = (name: string, faults: ParentProfile['faults'], capacity: ParentProfile['capacity'] = { model: 'counter', max: 8 }): ParentProfile => ({
  name,
  path: `devices/virtual/${name}/${name}`,
  class: name,
  mdevDriver: name,
  capacity,
  faults,
  types: [{ name: 'a' }, { name: 'b' }],
});

t.test('create returns the byte count and the whole tree is in place', async (t) => {
  const { core, type, avail } = setup();
  t.equal(await core.createStore(type('mtty-2'), line(U)), 37);
  const dev = core.devices.get(U)!;
  t.equal(dev.state, 'active');
  t.same([...dev.parts].sort(), ['bound', 'dir', 'links', 'remove', 'vendor']);
  t.equal(dev.iommuGroup, 0);
  t.equal(avail('mtty-1'), 22, 'mtty ports are one pool');
  t.equal(avail('mtty-2'), 11);
  t.equal(await core.createStore(type('mtty-1'), Buffer.from(uuid(1))), 36, 'no newline: 36 bytes');
});

t.test('UUIDs are unique across all parents, upper case included', async (t) => {
  const { core, type } = setup();
  await core.createStore(type('mtty-2'), line(U));
  t.equal(await errnoOf(core.createStore(type('mtty-2'), line(U))), Errno.EEXIST, 'same type');
  t.equal(await errnoOf(core.createStore(type('mtty-1'), line(U))), Errno.EEXIST, 'other type');
  t.equal(await errnoOf(core.createStore(type('mdpy-vga'), line(U))), Errno.EEXIST, 'other parent');
  t.equal(await errnoOf(core.createStore(type('mdpy-vga'), line(U.toUpperCase()))), Errno.EEXIST, 'upper case');
  t.equal(core.devices.size, 1);
});

t.test('bad create input is EINVAL and changes nothing', async (t) => {
  const { core, type, avail } = setup();
  for (const bad of ['', U.slice(0, 35), U + '\n\n', ' ' + U, U.replace(/-/g, '_')]) {
    t.equal(await errnoOf(core.createStore(type('mtty-2'), Buffer.from(bad))), Errno.EINVAL, JSON.stringify(bad));
  }
  t.equal(core.devices.size, 0);
  t.equal(avail('mtty-2'), 12);
});

t.test('mdpy: core-counted per parent, EUSERS at 0, duplicate check first', async (t) => {
  const { core, type, avail } = setup();
  for (let i = 1; i <= 4; i++) await core.createStore(type(i % 2 ? 'mdpy-vga' : 'mdpy-hd'), line(uuid(i)));
  t.same([avail('mdpy-vga'), avail('mdpy-xga'), avail('mdpy-hd')], [0, 0, 0], 'all types share the counter');
  t.equal(await errnoOf(core.createStore(type('mdpy-xga'), line(uuid(5)))), Errno.EUSERS);
  t.equal(await errnoOf(core.createStore(type('mdpy-xga'), line(uuid(1)))), Errno.EEXIST, 'EEXIST wins over EUSERS');
  await core.removeStore(core.devices.get(uuid(2))!, line('1'));
  t.equal(avail('mdpy-xga'), 1, 'release gives the slot back');
});

t.test('mtty and mbochs: vendor pools answer ENOSPC', async (t) => {
  const { core, type, avail } = setup();
  for (let i = 1; i <= 12; i++) await core.createStore(type('mtty-2'), line(uuid(i)));
  t.equal(avail('mtty-1'), 0);
  t.equal(await errnoOf(core.createStore(type('mtty-1'), line(uuid(99)))), Errno.ENOSPC);
  t.notOk(core.devices.has(uuid(99)), 'the failed device left no trace');
  for (let i = 20; i < 24; i++) await core.createStore(type('mbochs-large'), line(uuid(i)));
  t.same([avail('mbochs-small'), avail('mbochs-medium'), avail('mbochs-large')], [0, 0, 0]);
  t.equal(await errnoOf(core.createStore(type('mbochs-small'), line(uuid(30)))), Errno.ENOSPC);
});

t.test('remove: 0 is a no-op, junk is EINVAL, anything else removes', async (t) => {
  const { core, type, avail } = setup();
  await core.createStore(type('mtty-2'), line(U));
  const dev = core.devices.get(U)!;
  t.equal(await core.removeStore(dev, line('0')), 2);
  for (const bad of ['abc', '-1', ' 1', '1 ', '']) {
    t.equal(await errnoOf(core.removeStore(dev, Buffer.from(bad))), Errno.EINVAL, JSON.stringify(bad));
  }
  t.equal(dev.state, 'active');
  t.ok(dev.parts.has('remove'), 'bad input leaves the remove file');
  t.equal(await core.removeStore(dev, line('0x2')), 4);
  t.equal(dev.state, 'released');
  t.equal(dev.parts.size, 0);
  t.notOk(core.devices.has(U));
  t.equal(avail('mtty-2'), 12, 'ports returned');
  t.equal(await errnoOf(core.remove(dev)), Errno.ENODEV, 'no longer registered');
  await core.createStore(type('mtty-1'), line(U));
  t.equal(core.devices.get(U)!.type.id, 'mtty-1', 'the UUID is free again');
});

t.test('a UUID is reserved while its create is in flight', async (t) => {
  const clock = new ManualClock();
  const profile: Profile = { parents: [slowParent('slow', { createDelayMs: 100 }), slowParent('fast', {})] };
  const { core, type } = setup(profile, '6.1', clock);
  const pending = core.createStore(type('slow-a'), line(U));
  await tick();
  const dev = core.devices.get(U)!;
  t.equal(dev.state, 'reserved');
  t.ok(dev.parts.has('dir') && dev.parts.has('remove'), '6.1: the directory and remove exist from device_add');
  t.notOk(dev.parts.has('links'), 'not yet linked to its type');
  t.equal(await errnoOf(core.createStore(type('fast-a'), line(U))), Errno.EEXIST, 'EEXIST from another parent');
  t.equal(await errnoOf(core.createStore(type('slow-b'), line(U.toUpperCase()))), Errno.EEXIST, 'and another type');
  t.equal(await errnoOf(core.removeStore(dev, line('1'))), Errno.EAGAIN, 'remove of a reserved device');
  t.equal(await core.createStore(type('fast-a'), line(uuid(2))), 37, 'another parent is not delayed');
  t.equal(core.devices.get(uuid(2))!.state, 'active');
  t.equal(dev.state, 'reserved', 'while the slow create is still in flight');
  clock.releaseAll();
  t.equal(await pending, 37);
  t.equal(dev.state, 'active');
  t.notOk(dev.parts.has('remove'), '6.1 quirk: the EAGAIN remove deleted the file for good');
});

t.test('creates on one type overlap instead of queueing', async (t) => {
  const clock = new ManualClock();
  const { core, type } = setup({ parents: [slowParent('slow', { createDelayMs: 50 })] }, '6.1', clock);
  const all = [1, 2, 3, 4].map((i) => core.createStore(type('slow-a'), line(uuid(i))));
  await tick();
  t.equal(clock.waiting, 4, 'all four vendor creates are in progress at once');
  clock.releaseAll();
  t.same(await Promise.all(all), [37, 37, 37, 37]);
});

t.test('a failed vendor create releases the UUID and the capacity', async (t) => {
  const profile: Profile = { parents: [slowParent('flaky', { createErrno: 'EIO', createFailEvery: 2 }, { model: 'counter', max: 2 })] };
  const { core, type, avail } = setup(profile);
  await core.createStore(type('flaky-a'), line(uuid(1)));
  t.equal(avail('flaky-a'), 1);
  t.equal(await errnoOf(core.createStore(type('flaky-a'), line(uuid(2)))), Errno.EIO, 'every 2nd create fails');
  t.notOk(core.devices.has(uuid(2)), 'no trace in the registry');
  t.equal(type('flaky-a').devices.size, 1);
  t.equal(avail('flaky-a'), 1, 'the core-counted slot came back');
  t.same([...core.iommuGroups.keys()], [0], 'no iommu group leaked');
  t.equal(await core.createStore(type('flaky-a'), line(uuid(2))), 37, 'the UUID can be used again');
});

t.test('iommu groups: a new group per device, lowest free number', async (t) => {
  const { core, type } = setup();
  for (let i = 1; i <= 4; i++) await core.createStore(type('mtty-1'), line(uuid(i)));
  t.same([1, 2, 3, 4].map((i) => core.devices.get(uuid(i))!.iommuGroup), [0, 1, 2, 3]);
  await core.removeStore(core.devices.get(uuid(2))!, line('1'));
  await core.createStore(type('mdpy-hd'), line(uuid(5)));
  t.equal(core.devices.get(uuid(5))!.iommuGroup, 1, 'reuses the freed number');
});

t.test('concurrent removers: one does the work, the others wait and succeed', async (t) => {
  const clock = new ManualClock();
  const { core, type } = setup({ parents: [slowParent('slow', { removeDelayMs: 10 })] }, '6.1', clock);
  await core.createStore(type('slow-a'), line(U));
  const dev = core.devices.get(U)!;
  const first = core.removeStore(dev, line('1'));
  const second = core.removeStore(dev, line('1'));
  await tick();
  t.equal(clock.waiting, 1, 'only one vendor remove');
  t.equal(dev.state, 'removing');
  t.equal(await errnoOf(core.createStore(type('slow-b'), line(U))), Errno.EEXIST, 'still taken while removing');
  clock.releaseAll();
  t.same(await Promise.all([first, second]), [2, 2]);
  t.equal(dev.state, 'released');
});

t.test('4.17: vendor availability, unenforced mtty, vendor errnos, remove veto', async (t) => {
  const { core, type, avail } = setup(SAMPLES, '4.17');
  for (let i = 1; i <= 13; i++) await core.createStore(type('mtty-2'), line(uuid(i)));
  t.equal(avail('mtty-1'), -2, 'legacy mtty does not check and reads negative');
  for (let i = 20; i < 24; i++) await core.createStore(type('mdpy-vga'), line(uuid(i)));
  t.equal(await errnoOf(core.createStore(type('mdpy-vga'), line(uuid(30)))), Errno.ENOMEM);
  const dev = core.devices.get(uuid(1))!;
  t.equal(dev.boundDriver, 'vfio_mdev');
  t.equal(dev.vfioIndex, undefined, 'no vfio-dev in 4.17');

  const profile: Profile = { parents: [slowParent('veto', { removeErrno: 'EBUSY', removeFailEvery: 1 })] };
  const l = setup(profile, '4.17');
  await l.core.createStore(l.type('veto-a'), line(U));
  const v = l.core.devices.get(U)!;
  t.equal(await errnoOf(l.core.removeStore(v, line('1'))), Errno.EBUSY);
  t.equal(v.state, 'active', 'back to active');
  t.ok(v.parts.has('remove'), 'remove file re-created');
  t.ok(v.parts.has('links') && v.parts.has('bound'), 'device fully present');
});

t.test('6.1: a failing vendor remove cannot veto', async (t) => {
  const { core, type } = setup({ parents: [slowParent('veto', { removeErrno: 'EBUSY', removeFailEvery: 1 })] });
  await core.createStore(type('veto-a'), line(U));
  t.equal(await core.removeStore(core.devices.get(U)!, line('1')), 2);
  t.notOk(core.devices.has(U));
});

t.test('unregistering a parent waits for in-flight work, then refuses with ENODEV', async (t) => {
  const clock = new ManualClock();
  const { core, type } = setup({ parents: [slowParent('slow', { createDelayMs: 10 }), slowParent('other', {})] }, '6.1', clock);
  const a = type('slow-a');
  const inflight = core.createStore(a, line(uuid(1)));
  await tick();
  const unreg = core.unregisterParent('slow');
  await tick();
  t.ok(core.parents.has('slow'), 'still there while a create is in flight');
  t.equal(await errnoOf(core.createStore(a, line(uuid(2)))), Errno.ENODEV, 'new creates refused');
  t.notOk(core.devices.has(uuid(2)), 'and their reservation released');
  clock.releaseAll();
  t.equal(await inflight, 37, 'the in-flight create finishes');
  await unreg;
  t.notOk(core.parents.has('slow'));
  t.notOk(core.devices.has(uuid(1)), 'children removed');
  t.ok(core.parents.has('other'));
});

t.test('vfio-ap: EUSERS from the 6.1 core, EPERM from the 4.17 vendor', async (t) => {
  const small: Profile = { parents: [{ ...AP.parents[0]!, capacity: { model: 'counter', max: 2, legacyErrno: 'EPERM' } }] };
  for (const [abi, errno] of [['6.1', Errno.EUSERS], ['4.17', Errno.EPERM]] as const) {
    const { core, type } = setup(small, abi);
    await core.createStore(type('vfio_ap-passthrough'), line(uuid(1)));
    await core.createStore(type('vfio_ap-passthrough'), line(uuid(2)));
    t.equal(await errnoOf(core.createStore(type('vfio_ap-passthrough'), line(uuid(3)))), errno, abi);
  }
});

t.test('6.1: a failing vendor remove gives the pool back (capacity returns exactly once)', async (t) => {
  for (const capacity of [{ model: 'pool', size: 4 }, { model: 'exclusive' }, { model: 'counter', max: 4 }] as const) {
    const flaky = { ...slowParent('flaky', { removeErrno: 'EIO', removeFailEvery: 1 }, capacity), types: [{ name: 'a', max: 4 }, { name: 'b' }] };
    const { core, type, avail } = setup({ parents: [flaky] });
    for (let round = 1; round <= 5; round++) {
      t.equal(await core.createStore(type('flaky-a'), line(uuid(round))), 37, `${capacity.model}: create ${round}`);
      t.equal(await core.removeStore(core.devices.get(uuid(round))!, line('1')), 2, `${capacity.model}: remove ${round} cannot fail`);
    }
    t.equal(core.devices.size, 0);
    t.same([avail('flaky-a'), avail('flaky-b')], [4, capacity.model === 'exclusive' ? 1 : 4], `${capacity.model}: all capacity back`);
    t.same([...core.iommuGroups.keys()], [], `${capacity.model}: no iommu group left`);
  }
});

t.test('4.17: a vetoed remove keeps the device and its resources; a later remove releases them once', async (t) => {
  const flaky = slowParent('flaky', { removeErrno: 'EIO', removeFailEvery: 2 }, { model: 'pool', size: 4 });
  const { core, type, avail } = setup({ parents: [flaky] }, '4.17');
  await core.createStore(type('flaky-a'), line(uuid(1)));
  await core.createStore(type('flaky-a'), line(uuid(2)));
  const dev = core.devices.get(uuid(1))!;
  t.equal(await core.removeStore(dev, line('1')), 2, 'the 1st vendor remove succeeds');
  t.equal(await errnoOf(core.removeStore(core.devices.get(uuid(2))!, line('1'))), Errno.EBUSY, 'the 2nd is vetoed');
  t.equal(avail('flaky-a'), 3, 'the vetoed device keeps its unit');
  t.equal(await core.removeStore(core.devices.get(uuid(2))!, line('1')), 2);
  t.equal(avail('flaky-a'), 4, 'released once');
});

t.test('unbind and remove of one device are serialized like device_lock: the vendor remove runs once', async (t) => {
  for (const abi of ['6.1', '4.17']) {
    const clock = new ManualClock();
    const excl = { ...slowParent('slow', { removeDelayMs: 10 }, { model: 'exclusive' }), types: [{ name: 'a', max: 2 }, { name: 'b' }] };
    const { core, type, avail } = setup({ parents: [excl] }, abi, clock);
    await core.createStore(type('slow-a'), line(uuid(1)));
    await core.createStore(type('slow-a'), line(uuid(2)));
    const drv = core.devices.get(uuid(1))!.boundDriver!;
    const unbind = core.unbindStore(drv, line(uuid(1)));
    const remove = core.removeStore(core.devices.get(uuid(1))!, line('1'));
    await tick();
    t.equal(clock.waiting, 1, `${abi}: one vendor remove in flight, the other side waits for the lock`);
    clock.releaseAll();
    await tick();
    t.equal(clock.waiting, 0, `${abi}: no second vendor remove`);
    t.same(await Promise.all([unbind, remove]), [37, 2]);
    t.equal(avail('slow-a'), 1, `${abi}: one instance of type a is back, not two`);
    // The other order: a remove in flight, an unbind that already passed its check succeeds doing nothing.
    const remove2 = core.removeStore(core.devices.get(uuid(2))!, line('1'));
    const unbind2 = core.unbindStore(drv, line(uuid(2)));
    await tick();
    t.equal(clock.waiting, 1, `${abi}: one vendor remove`);
    clock.releaseAll();
    t.same(await Promise.all([remove2, unbind2]), [2, 37]);
    t.same([avail('slow-a'), avail('slow-b')], [2, 1], `${abi}: everything back exactly once`);
  }
});
