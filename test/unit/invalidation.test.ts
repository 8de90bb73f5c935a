import t, { type Test } from 'tap';
import { Errno } from '../../src/base/errno';
import { Emulation } from '../../src/emulation';
import { registerProfileParent } from '../../src/drivers/profile';
import type { FaultSpec, ParentProfile, Profile } from '../../src/drivers/profile-types';
import { GVT, SAMPLES } from '../../src/drivers/samples';
import { silentLogger } from '../../src/base/log';
import type { Kernfs } from '../../src/sysfs/kernfs';
import { checkInvariants, kernfsTree } from '../helpers/invariants';
import { ManualClock, tick } from '../helpers/manual-clock';

// A backend that lets the kernel cache lookups relies on these invalidations being complete:
// every path that disappears must be covered (itself or an ancestor) by an invalidated entry,
// and every directory whose st_nlink changes must be named in attrs.
function snapshot(k: Kernfs): Map<string, number> {
  const all = new Map<string, number>();
  const walk = (path: string) => {
    const st = k.getattr(path);
    all.set(path, st.nlink);
    if ((st.mode & 0o170000) !== 0o040000) return;
    for (const name of k.readdir(path)) if (name !== '.' && name !== '..') walk(path === '/' ? `/${name}` : `${path}/${name}`);
  };
  walk('/');
  return all;
}

const covered = (path: string, entries: Set<string>) => {
  for (let p = path; p !== ''; p = p.slice(0, p.lastIndexOf('/'))) if (entries.has(p)) return true;
  return false;
};

const U = (n: number) => `00000000-0000-0000-0000-00000000000${n}`;
type Steps = [string, () => Promise<unknown>][];

/** Runs each step and checks that what it took away from the tree was announced. */
async function checkSteps(t: Test, kernfs: Kernfs, steps: Steps, abi: '6.1' | '4.17' = '6.1'): Promise<void> {
  const entries = new Set<string>();
  const attrs = new Set<string>();
  kernfs.onInvalidate((inv) => {
    inv.entries.forEach((e) => entries.add(e));
    inv.attrs.forEach((a) => attrs.add(a));
  });
  for (const [name, step] of steps) {
    entries.clear();
    attrs.clear();
    const before = snapshot(kernfs);
    await step();
    const after = snapshot(kernfs);
    const vanished = [...before.keys()].filter((p) => !after.has(p) && !covered(p, entries));
    t.same(vanished, [], `${name}: vanished paths are invalidated`);
    const nlinkChanged = [...before].filter(([p, n]) => after.has(p) && after.get(p) !== n && !attrs.has(p)).map(([p]) => p);
    t.same(nlinkChanged, [], `${name}: changed st_nlink is invalidated`);
    t.same(checkInvariants(kernfsTree(kernfs), { abi, quiet: false }).problems, [], `${name}: invariants hold`);
  }
}

t.test('every vanished path and every changed nlink is invalidated', async (t) => {
  const em = new Emulation(SAMPLES, { log: silentLogger });
  const { core, kernfs } = em;
  const type = (p: string, id: string) => core.parents.get(p)!.types.get(id)!;
  const pciWrite = async (op: 'bind' | 'unbind') => {
    const fh = kernfs.open(`/bus/pci/drivers/i915/${op}`, 1);
    try {
      await kernfs.write(fh, Buffer.from('0000:00:02.0'));
    } finally {
      kernfs.release(fh);
    }
  };
  const steps: Steps = [
    ['create mtty', () => core.create(type('mtty', 'mtty-2'), U(1))],
    ['create mdpy', () => core.create(type('mdpy', 'mdpy-vga'), U(2))],
    ['create mbochs', () => core.create(type('mbochs', 'mbochs-large'), U(3))],
    ['remove mdpy', () => core.remove(core.devices.get(U(2))!)],
    ['unbind mtty', () => core.unbindStore('mtty', Buffer.from(U(1) + '\n'))],
    ['remove unbound', () => core.remove(core.devices.get(U(1))!)],
    ['add a PCI parent', async () => registerProfileParent(em, GVT.parents[0]!)],
    ['create on it', () => core.create(type('0000:00:02.0', 'i915-GVTg_V5_4'), U(4))],
    // Unbinding the function from i915 unregisters the parent with its vGPU; kvmgt stays loaded.
    ['unbind it from i915', () => pciWrite('unbind')],
    ['bind it back', () => pciWrite('bind')],
    ['create on it again', () => core.create(type('0000:00:02.0', 'i915-GVTg_V5_4'), U(4))],
    ['unregister it (kvmgt unloads)', () => core.unregisterParent('0000:00:02.0')],
    ['add it again', async () => registerProfileParent(em, GVT.parents[0]!)],
    ['unbind it', () => pciWrite('unbind')],
    ['unload kvmgt while it is unbound', () => core.unregisterParent('0000:00:02.0')],
    ['unregister mbochs with a device', () => core.unregisterParent('mbochs')],
  ];
  await checkSteps(t, kernfs, steps);
});

const faulty = (name: string, faults: FaultSpec): ParentProfile => ({
  name,
  path: `devices/virtual/${name}/${name}`,
  class: name,
  mdevDriver: name,
  capacity: { model: 'pool', size: 8 },
  faults,
  types: [{ name: 'a' }, { name: 'b' }],
  deviceAttrs: { 'vendor/units': '{cost}\n' },
});

// Failed and interrupted operations take files away too, and a backend caching lookups must hear of it.
for (const abi of ['6.1', '4.17'] as const) {
  t.test(`${abi}: failed and interrupted operations invalidate what they take away`, async (t) => {
    const clock = new ManualClock();
    const profile: Profile = {
      parents: [
        faulty('slow', { createDelayMs: 10, removeDelayMs: 10 }),
        faulty('flaky', { createErrno: 'EIO', createFailEvery: 2, removeErrno: 'EIO', removeFailEvery: 2 }),
      ],
    };
    const { core, kernfs } = new Emulation(profile, { abi, log: silentLogger, clock });
    const type = (p: string, id: string) => core.parents.get(p)!.types.get(id)!;
    const dev = (n: number) => core.devices.get(U(n))!;
    const one = Buffer.from('1\n');
    /** Lets a background operation run to its end, ending each of its sleeps. */
    const drain = async (p: Promise<unknown>) => {
      let done = false;
      void p.then(() => (done = true), () => (done = true));
      while (!done) {
        clock.releaseAll();
        await tick();
      }
      return p.catch((e: unknown) => e);
    };
    const errnoOf = async (p: Promise<unknown>) => ((await drain(p)) as { errno?: number })?.errno;
    let inflight: Promise<unknown> = Promise.resolve();
    let unreg: Promise<unknown> = Promise.resolve();
    const steps: Steps = [
      ['a slow create starts', async () => ((inflight = core.create(type('slow', 'slow-a'), U(1)).catch(() => undefined)), await tick())],
      ['remove during the slow create fails', async () => t.equal(await errnoOf(core.removeStore(dev(1), one)), Errno.EAGAIN, 'EAGAIN')],
      ['the slow create completes', () => drain(inflight)],
      ['a create that succeeds', () => drain(core.create(type('flaky', 'flaky-a'), U(2)))],
      ['a create whose vendor probe fails', async () => t.equal(await errnoOf(core.create(type('flaky', 'flaky-a'), U(3))), Errno.EIO, 'EIO')],
      ['a remove whose vendor remove succeeds', () => drain(core.removeStore(dev(2), one))],
      ['a create', () => drain(core.create(type('flaky', 'flaky-a'), U(4)))],
      ['a remove whose vendor remove fails', async () => t.equal(await errnoOf(core.removeStore(dev(4), one)), abi === '4.17' ? Errno.EBUSY : undefined)],
      ['unbind and remove racing', () => drain(Promise.all([core.unbindStore(dev(1).boundDriver!, Buffer.from(U(1))), core.removeStore(dev(1), one)]))],
      ['another slow create starts', async () => ((inflight = core.create(type('slow', 'slow-b'), U(5)).catch(() => undefined)), await tick())],
      ['unregistration starts while it is in flight', async () => ((unreg = core.unregisterParent('slow')), await tick())],
      ['a create refused by the unregistration', async () => t.equal(await errnoOf(core.create(type('slow', 'slow-a'), U(6))), Errno.ENODEV, 'ENODEV')],
      ['the unregistration completes', () => drain(Promise.all([inflight, unreg]))],
      ['unregister a parent with a device whose vendor remove fails', () => drain(core.unregisterParent('flaky'))],
    ];
    await checkSteps(t, kernfs, steps, abi);
    t.equal(core.devices.size, 0, 'nothing left');
  });
}
