import t, { type Test } from 'tap';
import { Errno } from '../../src/base/errno';
import { silentLogger } from '../../src/base/log';
import { NVIDIA_A10 } from '../../src/drivers/builtin/nvidia';
import { registerProfileParent } from '../../src/drivers/profile';
import type { FaultSpec, ParentProfile, Profile } from '../../src/drivers/profile-types';
import { GVT, SAMPLES } from '../../src/drivers/samples';
import { Emulation } from '../../src/emulation';
import type { Invalidation, Kernfs } from '../../src/sysfs/kernfs';
import { checkInvariants, kernfsTree } from '../helpers/invariants';
import { ManualClock, tick } from '../helpers/manual-clock';

// Every subsystem of the tree, whatever its description, against the one property a kernel caching
// lookups relies on: for each change of the models, the tree is walked before and after, and every
// path that disappeared, or whose stat (mode, st_nlink, size, owner, a link's target) changed, is
// covered by what the change said it invalidates. Checked for each event on its own (the FUSE
// backend sends each event's invalidations as it comes, and the kernel may look things up between
// two events), then once more at the end of each step (a change of the tree that sent no event at
// all). A new name needs nothing of its own: a failed lookup is never cached and every change drops
// every cached listing; a new directory changes its container's st_nlink, which the stat catches.
// After every step the tree's invariants (test/helpers/invariants.ts) must hold as well, failed and
// interrupted operations included.

/** Every path of the tree with what a kernel caches of it (the mode, st_nlink, size, owner, a link's target). */
function snapshot(k: Kernfs): Map<string, string> {
  const all = new Map<string, string>();
  const walk = (path: string) => {
    const st = k.getattr(path);
    const type = st.mode & 0o170000;
    all.set(path, `${st.mode.toString(8)} ${st.nlink} ${st.size} ${st.uid}:${st.gid}${type === 0o120000 ? ` -> ${k.readlink(path)}` : ''}`);
    if (type !== 0o040000) return;
    for (const name of k.readdir(path)) if (name !== '.' && name !== '..') walk(path === '/' ? `/${name}` : `${path}/${name}`);
  };
  walk('/');
  return all;
}

const ancestors = function* (path: string): Iterable<string> {
  for (let p = path; p !== ''; p = p.slice(0, p.lastIndexOf('/'))) yield p;
};

/** What a change left uncovered between two walks: gone paths not dropped, changed ones neither dropped nor refreshed. */
function uncovered(before: Map<string, string>, after: Map<string, string>, inv: Invalidation): string[] {
  const entries = new Set(inv.entries);
  const attrs = new Set(inv.attrs);
  const out: string[] = [];
  for (const [path, was] of before) {
    const now = after.get(path);
    if (now === undefined) {
      if (![...ancestors(path)].some((p) => entries.has(p))) out.push(`gone: ${path}`);
    } else if (now !== was && !attrs.has(path) && !entries.has(path)) out.push(`changed: ${path} (${was} => ${now})`);
  }
  return out;
}

/**
 * Follows a Kernfs change by change. The direct backend sends what the events of one turn of the
 * event loop invalidate as one batch, at its end (no request is answered in between), so each batch
 * is checked against the walk before it (after the previous batch) and the walk at its end.
 */
function follow(kernfs: Kernfs) {
  let last = snapshot(kernfs);
  let problems: string[] = [];
  let needless: string[] = [];
  let events = 0;
  let batch: Invalidation[] | undefined;
  const check = (invs: Invalidation[]) => {
    const now = snapshot(kernfs);
    const attrs = invs.flatMap((i) => i.attrs);
    problems.push(...uncovered(last, now, { entries: invs.flatMap((i) => i.entries), attrs }));
    needless.push(...attrs.filter((p) => now.has(p) && now.get(p) === last.get(p)));
    last = now;
  };
  kernfs.onInvalidate((inv) => {
    events++;
    if (batch) return void batch.push(inv);
    const invs = (batch = [inv]);
    setImmediate(() => {
      batch = undefined;
      check(invs);
    });
  });
  return {
    /**
     * Runs a step; its problems (each batch's, and what changed without an event), how many events
     * it sent, and the paths whose attributes it invalidated though their stat did not change.
     */
    async step(run: () => Promise<unknown>): Promise<{ problems: string[]; events: number; needless: string[] }> {
      problems = [];
      needless = [];
      events = 0;
      await run();
      await new Promise((resolve) => setImmediate(resolve));
      problems.push(...uncovered(last, snapshot(kernfs), { entries: [], attrs: [] }).map((p) => `without an event: ${p}`));
      last = snapshot(kernfs);
      return { problems, events, needless };
    },
  };
}

async function write(kernfs: Kernfs, path: string, text: string): Promise<void> {
  const fh = kernfs.open(path, 1);
  try {
    await kernfs.write(fh, Buffer.from(text));
  } finally {
    kernfs.release(fh);
  }
}

/**
 * A step: what it does, and what is expected of it besides the property itself: walked, the
 * directories it walks (none may be refreshed needlessly); same, that it leaves the tree as it was
 * (a refused or failed operation: it may still send events, for what came and went again).
 */
type Steps = [string, (em: Emulation) => Promise<unknown>, { walked?: string[]; same?: boolean }?][];

async function checkSteps(t: Test, em: Emulation, steps: Steps): Promise<void> {
  await em.ready;
  const f = follow(em.kernfs);
  for (const [name, run, opts] of steps) {
    const before = snapshot(em.kernfs);
    const { problems, events, needless } = await f.step(() => run(em));
    // With default_permissions the kernel asks for a directory's attributes again, on the next walk
    // through it, once they were invalidated: a directory that every create or remove walks costs a
    // GETATTR per walk if it is invalidated needlessly.
    if (opts?.walked) t.same(needless.filter((p) => opts.walked!.includes(p)), [], `${name}: refreshes no directory on its way whose stat stayed`);
    const after = snapshot(em.kernfs);
    const changed = [...[...before].filter(([p, s]) => after.get(p) !== s).map(([p]) => p), ...[...after.keys()].filter((p) => !before.has(p))];
    const changes = changed.length;
    if (opts?.same) t.same(changed, [], `${name}: leaves the tree as it was`);
    else t.ok(changes > 0 && events > 0, `${name}: changes the tree (${changes} paths) through events (${events})`);
    t.same(problems, [], `${name}: every path gone or changed is invalidated by the event that changed it`);
    t.same(checkInvariants(kernfsTree(em.kernfs), { abi: em.abi.version, quiet: false }).problems, [], `${name}: the invariants hold`);
  }
}

const emulation = (profile: Profile, abi = '6.1') => new Emulation(profile, { abi, log: silentLogger });

const U = (n: number) => `00000000-0000-0000-0000-0000000000a${n}`;
/** Where a parent is (Kernfs follows no link: class/mdev_bus/<parent> is one). */
const parentAt = (em: Emulation, parent: string) => '/' + em.core.parents.get(parent)!.placement.path.join('/');
const create = (parent: string, type: string, uuid: string) => (em: Emulation) =>
  write(em.kernfs, `${parentAt(em, parent)}/mdev_supported_types/${type}/create`, uuid);
const remove = (uuid: string) => (em: Emulation) =>
  write(em.kernfs, `${parentAt(em, em.core.devices.get(uuid)!.parent.name)}/${uuid}/remove`, '1');

for (const abi of ['6.1', '4.17']) {
  t.test(`${abi}: mdevs, their bindings, parents and modules (mdev, IOMMU and VFIO groups, class, module)`, async (t) => {
    const mbochs = SAMPLES.parents.find((p) => p.name === 'mbochs')!;
    // The directories a create or a remove of an mtty device walks (class/mdev_bus/mtty and
    // bus/mdev/devices/<uuid> are links to below devices/virtual/mtty/mtty).
    const walked = { walked: ['/', '/class', '/class/mdev_bus', '/bus', '/bus/mdev', '/bus/mdev/devices', '/devices', '/devices/virtual', '/devices/virtual/mtty'] };
    await checkSteps(t, emulation(SAMPLES, abi), [
      ['create an mdev', create('mtty', 'mtty-2', U(1)), walked],
      ['create a second one', create('mbochs', 'mbochs-small', U(2))],
      ['unbind it from its driver', (em) => write(em.kernfs, `/bus/mdev/drivers/${em.core.devices.get(U(1))!.boundDriver}/unbind`, U(1))],
      ['remove it unbound (an mdev driver binds only at create)', remove(U(1))],
      ['create one again', create('mtty', 'mtty-2', U(3))],
      ['remove a parent with a device (its module unloads, its class goes)', (em) => em.removeParent('mbochs')],
      ['add it again (its module loads)', (em) => em.addParent(mbochs)],
      ['remove the last device', remove(U(3)), walked],
    ]);
  });
}

t.test('host devices: driver bind and unbind, vfio-pci and its VFIO group, a parent on a PCI function', async (t) => {
  const fn = '0000:00:02.0';
  const dev = `/devices/pci0000:00/${fn}`;
  await checkSteps(t, emulation(GVT), [
    ['create a vGPU', create(fn, 'i915-GVTg_V5_4', U(1))],
    ['unbind the function from i915 (its parent and vGPU go)', (em) => write(em.kernfs, '/bus/pci/drivers/i915/unbind', fn)],
    [
      'override its driver and probe it: vfio-pci binds, a VFIO group device appears',
      async (em) => {
        await write(em.kernfs, `${dev}/driver_override`, 'vfio-pci\n');
        await write(em.kernfs, '/bus/pci/drivers_probe', fn);
      },
    ],
    ['unbind it from vfio-pci: the VFIO group goes', (em) => write(em.kernfs, '/bus/pci/drivers/vfio-pci/unbind', fn)],
    [
      'clear the override and bind it to i915 again (the parent comes back)',
      async (em) => {
        await write(em.kernfs, `${dev}/driver_override`, '\n');
        await write(em.kernfs, '/bus/pci/drivers/i915/bind', fn);
      },
    ],
    ['remove the parent (kvmgt unloads)', (em) => em.removeParent(fn)],
  ]);
});

t.test('SR-IOV: sriov_numvfs takes the VFs, their parents and mdevs away and brings them back', async (t) => {
  const em = new Emulation(NVIDIA_A10, { log: silentLogger });
  const vf = [...em.core.parents.values()][0]!;
  const pf = vf.placement.device!.pci!.physfn!;
  const pfPath = '/' + vf.placement.device!.path.slice(0, -1).join('/') + `/${pf.name}`;
  const vfs = pf.sriov!.numVfs;
  const type = [...vf.types.keys()][0]!;
  await checkSteps(t, emulation(NVIDIA_A10), [
    ['create a vGPU on a VF', create(vf.name, type, U(1))],
    ['sriov_numvfs 0: the VFs go with their parents and the vGPU', (em) => write(em.kernfs, `${pfPath}/sriov_numvfs`, '0')],
    [`sriov_numvfs ${vfs}: they come back`, (em) => write(em.kernfs, `${pfPath}/sriov_numvfs`, String(vfs))],
    ['create a vGPU again', create(vf.name, type, U(2))],
  ]);
});

t.test('the core directly: three parents, a PCI parent added, bound, unbound and unloaded in every order', async (t) => {
  const em = emulation(SAMPLES);
  const { core } = em;
  const type = (p: string, id: string) => core.parents.get(p)!.types.get(id)!;
  const pci = (op: 'bind' | 'unbind') => () => write(em.kernfs, `/bus/pci/drivers/i915/${op}`, '0000:00:02.0');
  await checkSteps(t, em, [
    ['create mtty', () => core.create(type('mtty', 'mtty-2'), U(1))],
    ['create mdpy', () => core.create(type('mdpy', 'mdpy-vga'), U(2))],
    ['create mbochs', () => core.create(type('mbochs', 'mbochs-large'), U(3))],
    ['remove mdpy', () => core.remove(core.devices.get(U(2))!)],
    ['unbind mtty', () => core.unbindStore('mtty', Buffer.from(U(1) + '\n'))],
    ['remove unbound', () => core.remove(core.devices.get(U(1))!)],
    ['add a PCI parent', async () => registerProfileParent(em, GVT.parents[0]!)],
    ['create on it', () => core.create(type('0000:00:02.0', 'i915-GVTg_V5_4'), U(4))],
    // Unbinding the function from i915 unregisters the parent with its vGPU; kvmgt stays loaded.
    ['unbind it from i915', pci('unbind')],
    ['bind it back', pci('bind')],
    ['create on it again', () => core.create(type('0000:00:02.0', 'i915-GVTg_V5_4'), U(4))],
    ['unregister it (kvmgt unloads)', () => core.unregisterParent('0000:00:02.0')],
    ['add it again', async () => registerProfileParent(em, GVT.parents[0]!)],
    ['unbind it', pci('unbind')],
    ['unload kvmgt while it is unbound', () => core.unregisterParent('0000:00:02.0')],
    ['unregister mbochs with a device', () => core.unregisterParent('mbochs')],
  ]);
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
    const em = new Emulation(profile, { abi, log: silentLogger, clock });
    const { core } = em;
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
    /** The errno of an operation refused at once (no sleep ended: what is in flight stays so). */
    const refused = async (p: Promise<unknown>) => ((await p.then(() => undefined, (e: unknown) => e)) as { errno?: number })?.errno;
    let inflight: Promise<unknown> = Promise.resolve();
    let unreg: Promise<unknown> = Promise.resolve();
    await checkSteps(t, em, [
      ['a slow create starts', async () => ((inflight = core.create(type('slow', 'slow-a'), U(1)).catch(() => undefined)), await tick())],
      // Refused, it gives back the remove file it took first (restoreRemoveFile), before the create shows it.
      ['remove during the slow create fails', async () => t.equal(await refused(core.removeStore(dev(1), one)), Errno.EAGAIN, 'EAGAIN')],
      ['the slow create completes', () => drain(inflight)],
      ['a create that succeeds', () => drain(core.create(type('flaky', 'flaky-a'), U(2)))],
      ['a create whose vendor probe fails', async () => t.equal(await errnoOf(core.create(type('flaky', 'flaky-a'), U(3))), Errno.EIO, 'EIO'), { same: true }],
      ['a remove whose vendor remove succeeds', () => drain(core.removeStore(dev(2), one))],
      ['a create', () => drain(core.create(type('flaky', 'flaky-a'), U(4)))],
      // 4.17 puts the device back as it was (its parts hidden and shown again); 6.1 removes it anyway.
      ['a remove whose vendor remove fails', async () => t.equal(await errnoOf(core.removeStore(dev(4), one)), abi === '4.17' ? Errno.EBUSY : undefined), { same: abi === '4.17' }],
      ['unbind and remove racing', () => drain(Promise.all([core.unbindStore(dev(1).boundDriver!, Buffer.from(U(1))), core.removeStore(dev(1), one)]))],
      ['another slow create starts', async () => ((inflight = core.create(type('slow', 'slow-b'), U(5)).catch(() => undefined)), await tick())],
      // It waits for the create in flight before it takes anything away.
      ['unregistration starts while it is in flight', async () => ((unreg = core.unregisterParent('slow')), await tick()), { same: true }],
      ['a create refused by the unregistration', async () => t.equal(await refused(core.create(type('slow', 'slow-a'), U(6))), Errno.ENODEV, 'ENODEV'), { same: true }],
      ['the unregistration completes', () => drain(Promise.all([inflight, unreg]))],
      ['unregister a parent with a device whose vendor remove fails', () => drain(core.unregisterParent('flaky'))],
    ]);
    t.equal(core.devices.size, 0, 'nothing left');
  });
}

t.test('the check itself: a path gone or changed without its invalidation is reported', async (t) => {
  const before = new Map([
    ['/a', 'dir'],
    ['/a/b', 'x'],
    ['/c', '1'],
    ['/d', 'link -> x'],
  ]);
  const after = new Map([
    ['/a', 'dir'],
    ['/c', '2'],
    ['/d', 'link -> y'],
  ]);
  t.same(uncovered(before, after, { entries: [], attrs: [] }), ['gone: /a/b', 'changed: /c (1 => 2)', 'changed: /d (link -> x => link -> y)']);
  t.same(uncovered(before, after, { entries: ['/a', '/d'], attrs: ['/c'] }), [], 'an ancestor covers a gone path, attrs or entries a changed one');
});
