import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { ParentProfile, Profile } from '../../src/drivers/profile-types';
import { GVT, SAMPLES } from '../../src/drivers/samples';
import { CLI, type Daemon, PY_WRITE, cliEnv, scratch, sh, startDaemon } from '../helpers/daemon';
import { type SeenErrors, checkInvariants, mountedTree } from '../helpers/invariants';

// Bounded torture through the real mount: 8 python3 writer processes at once, a pool of 12
// UUIDs (creates collide), every parent of a profile whose vendors are slow and fail creates
// and removes at random (seeded), on both ABIs. After each phase, with nothing in flight, the
// invariant checker must pass and every errno the writers saw must be one the spec allows.
// During the mixed phase two parents are unregistered and registered again under the load
// (mdevfs ctl), and at the end every parent is, which is the only way 6.1 frees a device
// whose remove file an EAGAIN took.

const faults = { createDelayMs: 15, removeDelayMs: 10, createErrno: 'EIO', createFailProbability: 0.15, removeErrno: 'EBUSY', removeFailProbability: 0.25, seed: 7 } as const;
const exclusive: ParentProfile = {
  name: 'vgpu',
  path: 'devices/virtual/vgpu/vgpu',
  class: 'vgpu',
  mdevDriver: 'vgpu',
  capacity: { model: 'exclusive', errno: 'EINVAL' },
  types: [{ name: 'a', max: 3 }, { name: 'b', max: 2 }],
  deviceAttrs: { 'vendor/kind': '{cost}\n' },
};
const PROFILE: Profile = { parents: [...SAMPLES.parents, exclusive, ...GVT.parents].map((p) => ({ ...p, faults })) };
const exclusiveParent = PROFILE.parents.find((p) => p.name === 'vgpu')!;

const WORKER = String.raw`
import errno, json, os, random, sys, time
root, seed, seconds, mode = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
rnd = random.Random(seed)
uuids = ['00000000-0000-0000-0000-%012d' % i for i in range(1, 13)]
types = []
for p in os.listdir(root + '/class/mdev_bus'):
    d = root + '/class/mdev_bus/' + p + '/mdev_supported_types'
    types += [d + '/' + t for t in os.listdir(d)]
drivers = [root + '/bus/mdev/drivers/' + d for d in os.listdir(root + '/bus/mdev/drivers')]
ops, errors = {}, {}
def attempt(kind, fn):
    ops[kind] = ops.get(kind, 0) + 1
    try:
        fn()
    except OSError as e:
        name = errno.errorcode.get(e.errno, str(e.errno))
        errors.setdefault(kind, {})
        errors[kind][name] = errors[kind].get(name, 0) + 1
${PY_WRITE}
def read():
    open(rnd.choice(types) + '/available_instances').read()
    os.listdir(root + '/bus/mdev/devices')
weights = {'fill': [6, 2, 1, 1], 'mixed': [4, 4, 1, 1], 'drain': [0, 9, 0, 1]}[mode]
end = time.time() + seconds
while time.time() < end:
    u = rnd.choice(uuids)
    kind = rnd.choices(['create', 'remove', 'unbind', 'read'], weights)[0]
    if kind == 'create':
        attempt(kind, lambda: write(rnd.choice(types) + '/create', u + '\n'))
    elif kind == 'remove':
        # Most clients remove complete devices; one remove in five is blind (it may hit a create).
        dev = root + '/bus/mdev/devices/' + u
        if rnd.random() < 0.8 and not os.path.exists(dev + '/mdev_type'):
            continue
        attempt(kind, lambda: write(dev + '/remove', '1\n'))
    elif kind == 'unbind':
        attempt(kind, lambda: write(rnd.choice(drivers) + '/unbind', u))
    else:
        attempt(kind, read)
print(json.dumps({'ops': ops, 'errors': errors}))
`;

interface Tally {
  ops: Record<string, number>;
  errors: SeenErrors;
}

function runWorkers(dir: string, mode: string, seconds: number, seed: number): Promise<Tally[]> {
  return Promise.all(
    Array.from({ length: 8 }, (_, i) => {
      const p = spawn('python3', ['-c', WORKER, dir, String(seed * 100 + i), String(seconds), mode], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout.on('data', (c) => (out += c));
      p.stderr.on('data', (c) => (err += c));
      return new Promise<Tally>((resolve, reject) =>
        p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as Tally) : reject(new Error(`worker ${i}: ${err}`)))),
      );
    }),
  );
}

function merge(into: Tally, from: Tally): void {
  for (const [k, n] of Object.entries(from.ops)) into.ops[k] = (into.ops[k] ?? 0) + n;
  for (const [k, byErrno] of Object.entries(from.errors)) {
    const m = (into.errors[k] ??= {});
    for (const [e, n] of Object.entries(byErrno)) m[e] = (m[e] ?? 0) + n;
  }
}

const ctl = (...args: string[]) =>
  new Promise<number | null>((resolve) => spawn(process.execPath, [CLI, 'ctl', ...args], { env: cliEnv(), stdio: 'ignore' }).on('exit', resolve));
/** Unregisters a parent and registers it again from its profile entry. */
async function cycle(dir: string, p: ParentProfile): Promise<boolean> {
  const file = join(scratch('mdevfs-torture-'), 'parent.json');
  writeFileSync(file, JSON.stringify(p));
  return (await ctl(dir, 'remove-parent', p.name)) === 0 && (await ctl(dir, 'add-parent', file)) === 0;
}

const rssKb = (d: Daemon) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${d.proc.pid}/status`, 'utf8'))![1]);

for (const abi of ['6.1', '4.17'] as const) {
  t.test(`${abi}: 8 writers, colliding UUIDs, every parent, faulty vendors: the invariants hold`, async (t) => {
    const d = await startDaemon({ profile: PROFILE, abi, logLevel: 'error' });
    t.teardown(() => d.stop());
    const rssBefore = rssKb(d);
    const total: Tally = { ops: {}, errors: {} };
    const phases: [string, number][] = [
      ['fill', 1],
      ['mixed', 2],
      ['drain', 0.7],
    ];
    for (const [i, [mode, seconds]] of phases.entries()) {
      const workers = runWorkers(d.dir, mode, seconds, i + 1);
      if (mode === 'mixed') {
        await new Promise((r) => setTimeout(r, 500));
        const cycled = await Promise.all([cycle(d.dir, PROFILE.parents[0]!), cycle(d.dir, exclusiveParent)]);
        t.same(cycled, [true, true], 'two parents unregistered and registered again under load');
      }
      const tallies = await workers;
      const phase: Tally = { ops: {}, errors: {} };
      for (const tally of tallies) merge(phase, tally);
      merge(total, phase);
      // Every writer has returned: nothing is in flight.
      const { problems, figures } = checkInvariants(mountedTree(d.dir), { profile: PROFILE, abi, quiet: true, errors: phase.errors });
      t.same(problems, [], `after ${mode}: the invariants hold`);
      t.comment(`${mode}: ops ${JSON.stringify(phase.ops)} errors ${JSON.stringify(phase.errors)} tree ${JSON.stringify(figures)}`);
    }
    // Quiet at last: remove what is left; 6.1 devices whose remove file an EAGAIN took go with their parent.
    for (let round = 0; round < 5; round++) sh(d.dir, 'for r in bus/mdev/devices/*/remove; do [ -e "$r" ] && echo 1 > "$r"; done 2>/dev/null');
    const holding = PROFILE.parents.filter((p) => readdirSync(join(d.dir, p.path)).some((n) => /^[0-9a-f-]{36}$/.test(n)));
    for (const p of holding) t.ok(await cycle(d.dir, p), `${p.name}, which holds devices, unregistered and registered again`);
    const end = checkInvariants(mountedTree(d.dir), { profile: PROFILE, abi, quiet: true });
    t.same(end.problems, [], 'after removing everything left: the invariants hold');
    t.equal(end.figures.devices, 0, 'no device left');
    t.ok(end.figures.capacityChecked >= 10, 'available_instances was checked on the types of known models');
    const created = total.ops.create! - Object.values(total.errors.create ?? {}).reduce((a, b) => a + b, 0);
    t.ok(created >= 10, `writers created devices (${created})`);
    t.ok(Object.keys(total.errors.create ?? {}).includes('EEXIST'), 'UUIDs collided');
    t.ok(d.proc.exitCode === null, 'the daemon is alive');
    const rssAfter = rssKb(d);
    t.comment(`${abi}: ${Object.values(total.ops).reduce((a, b) => a + b, 0)} operations ${JSON.stringify(total.ops)}`);
    t.comment(`${abi}: errors by errno ${JSON.stringify(total.errors)}`);
    t.comment(`${abi}: daemon RSS ${rssBefore} kB before, ${rssAfter} kB after`);
  });
}
