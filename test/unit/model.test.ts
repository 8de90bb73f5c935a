import fc from 'fast-check';
import t from 'tap';
import { MdevError, errnoName } from '../../src/base/errno';
import { Emulation } from '../../src/emulation';
import { registerProfileParent } from '../../src/drivers/profile';
import type { ParentProfile, Profile } from '../../src/drivers/profile-types';
import { silentLogger } from '../../src/base/log';
import { type SeenErrors, checkInvariants, expectedAvailable, kernfsTree } from '../helpers/invariants';
import { ManualClock, tick } from '../helpers/manual-clock';

// A seeded, model-based test of the core: fast-check generates sequences of operations (creates
// with colliding UUIDs on every parent and type, removes, unbinds, parent unregistration and
// re-registration, and races of two operations while the first is inside its vendor call) and
// runs them through Kernfs against a real core with injected vendor faults. A small reference
// model predicts every result (success or errno), which devices exist, what they hold and
// available_instances; at the end the invariant checker walks the whole tree.
// Replay a failure with MDEVFS_MODEL_SEED=<seed> (and the path fast-check prints).

const faults = (createFailEvery: number | undefined, removeFailEvery: number) => ({
  createDelayMs: 1,
  removeDelayMs: 1,
  ...(createFailEvery ? { createErrno: 'EIO' as const, createFailEvery } : {}),
  removeErrno: 'EBUSY' as const,
  removeFailEvery,
});
const parent = (name: string, rest: Pick<ParentProfile, 'capacity' | 'faults' | 'types'>): ParentProfile => ({
  name,
  path: `devices/virtual/${name}/${name}`,
  class: name,
  mdevDriver: name,
  ...rest,
});
const PROFILE: Profile = {
  parents: [
    parent('pa', { capacity: { model: 'counter', max: 3, legacyErrno: 'ENOMEM' }, faults: faults(3, 2), types: [{ name: 'a' }, { name: 'b' }] }),
    parent('pb', {
      capacity: { model: 'pool', size: 4, errno: 'ENOSPC', legacyErrno: 'ENOMEM' },
      faults: faults(4, 3),
      types: [{ name: 'a', cost: 1 }, { name: 'b', cost: 3 }],
    }),
    parent('pc', { capacity: { model: 'exclusive', errno: 'EINVAL' }, faults: faults(undefined, 2), types: [{ name: 'a', max: 2 }, { name: 'b' }] }),
  ],
};
const PARENTS = PROFILE.parents.map((p) => p.name);
const UUIDS = [1, 2, 3, 4, 5].map((n) => `00000000-0000-0000-0000-00000000000${n}`);
const O_WRONLY = 1;

type Op = { k: 'create'; p: number; t: number; u: number; upper: boolean } | { k: 'remove'; u: number } | { k: 'unbind'; p: number; u: number };
type Second = Op | { k: 'unregister'; p: number };
type Cmd = { k: 'op'; op: Op } | { k: 'race'; a: Op; b: Second } | { k: 'unregister'; p: number } | { k: 'register'; p: number };

const p = fc.integer({ min: 0, max: PARENTS.length - 1 });
const u = fc.integer({ min: 0, max: UUIDS.length - 1 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('create' as const), p, t: fc.integer({ min: 0, max: 1 }), u, upper: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('remove' as const), u }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('unbind' as const), p, u }) },
);
const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ k: fc.constant('op' as const), op: opArb }) },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant('race' as const),
      a: opArb,
      b: fc.oneof({ weight: 5, arbitrary: opArb }, { weight: 1, arbitrary: fc.record({ k: fc.constant('unregister' as const), p }) }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('unregister' as const), p }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('register' as const), p }) },
);

// ---- the reference model ---------------------------------------------------------------------

interface MDev {
  parent: string;
  type: string; // type-id
  state: 'reserved' | 'active' | 'removing';
  vendor: boolean; // holds vendor resources (probed, not yet vendor-removed)
  bound: boolean;
  removeFile: boolean;
}
type Result = 'ok' | string;

/** Each operation in two halves: start (up to its first wait) and finish (after it). */
interface Pending {
  finish(): Result;
}
const done = (r: Result): Pending => ({ finish: () => r });

class Model {
  readonly devs = new Map<string, MDev>();
  readonly registered = new Set(PARENTS);
  readonly closing = new Set<string>();
  /** Vendor calls per type-id (every Nth fails), counted from the driver's registration. */
  private calls = new Map<string, { create: number; remove: number }>();

  constructor(readonly abi: '6.1' | '4.17') {}

  profileOf(name: string): ParentProfile {
    return PROFILE.parents.find((x) => x.name === name)!;
  }
  typeId(p: string, t: number): string {
    return `${p}-${this.profileOf(p).types[t]!.name}`;
  }
  driverOf(p: string): string {
    return this.abi === '6.1' ? p : 'vfio_mdev';
  }
  private count(type: string, vendorOnly: boolean): number {
    return [...this.devs.values()].filter((d) => d.type === type && (!vendorOnly || d.vendor)).length;
  }
  available(p: string, type: string): number {
    const n = expectedAvailable(this.profileOf(p), type, this.abi, (id, vendorOnly) => this.count(id, vendorOnly));
    if (n === undefined) throw new Error(`no capacity reference for ${p}`);
    return n;
  }
  /** The errno of a vendor probe that finds no room, if the vendor checks at all. */
  private capacityErrno(p: string): string | undefined {
    const cap = this.profileOf(p).capacity;
    const legacy = this.abi === '4.17';
    switch (cap.model) {
      case 'counter':
        return legacy ? (cap.legacyErrno ?? 'ENOMEM') : undefined; // 6.1: the core counted (EUSERS)
      case 'pool':
        return legacy ? (cap.legacyErrno ?? undefined) : (cap.errno ?? 'ENOSPC');
      case 'exclusive':
        return cap.errno ?? 'EINVAL';
      default:
        return undefined;
    }
  }
  private vendorCall(type: string, which: 'create' | 'remove'): boolean {
    const c = this.calls.get(type) ?? { create: 0, remove: 0 };
    this.calls.set(type, c);
    c[which]++;
    const f = this.profileOf(type.split('-')[0]!).faults!;
    const every = which === 'create' ? (f.createErrno ? f.createFailEvery : undefined) : f.removeFailEvery;
    return every !== undefined && c[which] % every === 0;
  }
  private vendorRemove(d: MDev, mayVeto: boolean): boolean {
    if (!d.vendor) return true;
    const fault = this.vendorCall(d.type, 'remove');
    if (fault && mayVeto) return false;
    d.vendor = false;
    return true;
  }

  /** Opening the file the operation writes: ENOENT when it is not there. */
  opens(op: Second): boolean {
    if (op.k === 'create') return this.registered.has(PARENTS[op.p]!);
    if (op.k === 'remove') return this.devs.get(UUIDS[op.u]!)?.removeFile ?? false;
    // 4.17's vfio_mdev is there whatever parents exist; a 6.1 driver only with a parent of it.
    if (op.k === 'unbind') return this.abi === '4.17' || this.registered.has(PARENTS[op.p]!);
    return true;
  }

  start(op: Second, opened = this.opens(op)): Pending {
    if (!opened) return done('ENOENT');
    switch (op.k) {
      case 'create':
        return this.create(PARENTS[op.p]!, this.typeId(PARENTS[op.p]!, op.t), UUIDS[op.u]!);
      case 'remove':
        return this.remove(UUIDS[op.u]!);
      case 'unbind':
        return this.unbind(this.driverOf(PARENTS[op.p]!), UUIDS[op.u]!);
      case 'unregister':
        return this.unregister(PARENTS[op.p]!);
    }
  }

  private create(p: string, type: string, uuid: string): Pending {
    if (this.devs.has(uuid)) return done('EEXIST');
    const cap = this.profileOf(p).capacity;
    if (this.abi === '6.1' && cap.model === 'counter' && [...this.devs.values()].filter((d) => d.parent === p).length >= cap.max) return done('EUSERS');
    if (this.closing.has(p)) return done('ENODEV');
    // 4.17 binds vfio_mdev before the vendor create; 6.1 shows remove from device_add.
    const d: MDev = { parent: p, type, state: 'reserved', vendor: false, bound: this.abi === '4.17', removeFile: this.abi === '6.1' };
    this.devs.set(uuid, d);
    return {
      finish: () => {
        const fail = (errno: string) => (this.devs.delete(uuid), errno);
        if (this.vendorCall(type, 'create')) return fail('EIO');
        const errno = this.capacityErrno(p);
        if (errno && this.available(p, type) <= 0) return fail(errno);
        Object.assign(d, { state: 'active', vendor: true, bound: true, removeFile: this.abi === '4.17' || d.removeFile });
        return 'ok';
      },
    };
  }

  private remove(uuid: string): Pending {
    const d = this.devs.get(uuid)!;
    if (d.state === 'removing') return done('ok'); // lost device_remove_file_self: waits, then succeeds
    d.removeFile = false;
    if (d.state !== 'active') {
      if (this.abi === '4.17') d.removeFile = true;
      return done('EAGAIN');
    }
    d.state = 'removing';
    if (!d.vendor) {
      // Unbound: no vendor call, so nothing to wait for; the removal is over at once.
      this.devs.delete(uuid);
      return done('ok');
    }
    return {
      finish: () => {
        if (!this.vendorRemove(d, this.abi === '4.17')) {
          Object.assign(d, { state: 'active', removeFile: true });
          return 'EBUSY';
        }
        this.devs.delete(uuid);
        return 'ok';
      },
    };
  }

  private unbind(driver: string, uuid: string): Pending {
    const d = this.devs.get(uuid);
    if (!d || !d.bound || this.driverOf(d.parent) !== driver) return done('ENODEV');
    return {
      finish: () => {
        if (this.devs.get(uuid) === d) {
          this.vendorRemove(d, false);
          d.bound = false;
        }
        return 'ok';
      },
    };
  }

  private unregister(p: string): Pending {
    this.closing.add(p);
    return {
      finish: () => {
        for (const [uuid, d] of [...this.devs]) {
          if (d.parent !== p) continue;
          this.vendorRemove(d, false);
          this.devs.delete(uuid);
        }
        this.closing.delete(p);
        this.registered.delete(p);
        for (const ty of this.profileOf(p).types) this.calls.delete(`${p}-${ty.name}`);
        return 'ok';
      },
    };
  }
}

// ---- running a sequence against the real core ---------------------------------------------------

async function run(abi: '6.1' | '4.17', cmds: Cmd[], walk: boolean): Promise<void> {
  const clock = new ManualClock();
  const em = new Emulation(PROFILE, { abi, log: silentLogger, clock });
  const { core, kernfs } = em;
  const model = new Model(abi);
  const errors: SeenErrors = {};
  const where = (i: number, what: string) => `command ${i} (${what})`;

  /** Opens the operation's file now (as a client does); returns the write to run later. */
  const open = (op: Second): (() => Promise<Result>) => {
    let path: string;
    let data: string;
    if (op.k === 'unregister') return () => core.unregisterParent(PARENTS[op.p]!).then(() => 'ok');
    if (op.k === 'create') {
      const name = PARENTS[op.p]!;
      path = `/devices/virtual/${name}/${name}/mdev_supported_types/${model.typeId(name, op.t)}/create`;
      data = op.upper ? UUIDS[op.u]!.toUpperCase() : UUIDS[op.u]!;
    } else if (op.k === 'remove') {
      const dev = core.devices.get(UUIDS[op.u]!);
      const name = dev?.parent.name ?? 'pa';
      path = `/devices/virtual/${name}/${name}/${UUIDS[op.u]}/remove`;
      data = '1';
    } else {
      path = `/bus/mdev/drivers/${model.driverOf(PARENTS[op.p]!)}/unbind`;
      data = UUIDS[op.u]!;
    }
    let fh: number;
    try {
      fh = kernfs.open(path, O_WRONLY);
    } catch (e) {
      const r = errnoOf(e);
      return () => Promise.resolve(r);
    }
    return () =>
      kernfs.write(fh, Buffer.from(data + '\n')).then(
        () => 'ok',
        (e: unknown) => errnoOf(e),
      ).finally(() => kernfs.release(fh));
  };
  const errnoOf = (e: unknown): string => {
    if (e instanceof MdevError) return errnoName(e.errno);
    throw e;
  };
  const note = (op: Second, r: Result) => {
    if (r === 'ok') return;
    const seen = (errors[op.k] ??= {});
    seen[r] = (seen[r] ?? 0) + 1;
  };
  const settle = async <T>(p: Promise<T>): Promise<T> => {
    let over = false;
    void p.finally(() => (over = true)).catch(() => undefined);
    for (let i = 0; !over; i++) {
      if (i > 1000) throw new Error('an operation never finished');
      clock.releaseAll();
      await tick();
    }
    return p;
  };

  for (const [i, cmd] of cmds.entries()) {
    if (cmd.k === 'register') {
      const name = PARENTS[cmd.p]!;
      if (model.registered.has(name)) continue;
      registerProfileParent(em, model.profileOf(name));
      model.registered.add(name);
    } else if (cmd.k === 'unregister' && !model.registered.has(PARENTS[cmd.p]!)) {
      continue;
    } else if (cmd.k === 'op' || cmd.k === 'unregister') {
      const op = cmd.k === 'op' ? cmd.op : cmd;
      const write = open(op);
      const expected = model.start(op).finish();
      const got = await settle(write());
      note(op, got);
      if (got !== expected) throw new Error(`${where(i, JSON.stringify(op))}: got ${got}, the model says ${expected}`);
    } else {
      const { a, b } = cmd;
      if (b.k === 'unregister' && !model.registered.has(PARENTS[b.p]!)) continue;
      // A second remover of the same device opened the file before the first wrote it.
      const early = a.k === 'remove' && b.k === 'remove' && a.u === b.u;
      const bOpened = early ? model.opens(b) : false;
      const writeB0 = early ? open(b) : undefined;
      const writeA = open(a);
      const pa = model.start(a);
      const runA = writeA();
      await tick();
      const pb = early ? model.start(b, bOpened) : model.start(b);
      const runB = (writeB0 ?? open(b))();
      await tick();
      const expected = [pa.finish(), pb.finish()];
      const got = await settle(Promise.all([runA, runB]));
      note(a, got[0]!);
      note(b, got[1]!);
      if (got.join() !== expected.join()) {
        throw new Error(`${where(i, `race ${JSON.stringify(a)} with ${JSON.stringify(b)}`)}: got ${got}, the model says ${expected}`);
      }
    }
    // Quiet: the core holds exactly the model's devices, each as the model says, and capacity matches.
    const actual = [...core.devices].map(([uuid, d]) => `${uuid} ${d.type.id} ${d.state} bound=${d.parts.has('bound')} remove=${d.parts.has('remove')}`);
    const wanted = [...model.devs].map(([uuid, d]) => `${uuid} ${d.type} ${d.state} bound=${d.bound} remove=${d.removeFile}`);
    if (actual.sort().join('\n') !== wanted.sort().join('\n')) {
      throw new Error(`${where(i, JSON.stringify(cmd))}: devices\n${actual.join('\n')}\nthe model says\n${wanted.join('\n')}`);
    }
    for (const name of model.registered) {
      for (const ty of model.profileOf(name).types) {
        const id = `${name}-${ty.name}`;
        const shown = core.availableInstances(core.parents.get(name)!.types.get(id)!);
        const want = model.available(name, id);
        if (shown !== want) throw new Error(`${where(i, JSON.stringify(cmd))}: ${id} available_instances ${shown}, the model says ${want}`);
      }
    }
  }
  if (!walk) return;
  const { problems } = checkInvariants(kernfsTree(kernfs), { profile: PROFILE, abi, quiet: true, core, errors });
  if (problems.length > 0) throw new Error(`invariants:\n${problems.join('\n')}`);
}

const seed = process.env.MDEVFS_MODEL_SEED ? Number(process.env.MDEVFS_MODEL_SEED) : 20261130;
for (const abi of ['6.1', '4.17'] as const) {
  t.test(`${abi}: the core agrees with the reference model on random operation sequences`, async (t) => {
    const started = Date.now();
    let runs = 0;
    await fc.assert(
      // The whole-tree invariant walk costs as much as a sequence: one sequence in four ends with it
      // (and shrinking keeps it: constantFrom shrinks towards its first value).
      fc.asyncProperty(fc.array(cmdArb, { minLength: 1, maxLength: 30 }), fc.constantFrom(true, false, false, false), async (cmds, walk) => {
        runs++;
        await run(abi, cmds, walk);
      }),
      { seed, numRuns: Number(process.env.MDEVFS_MODEL_RUNS ?? 1500) },
    );
    t.comment(`${runs} sequences (seed ${seed}) in ${Date.now() - started} ms`);
    t.pass('every sequence agreed with the model');
  });
}
