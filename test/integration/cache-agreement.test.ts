import type { AbiVersion } from '../../src/core/abi';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { CLI, cliEnv, scratch, sh, startDaemon } from '../helpers/daemon';
import type { Profile } from '../../src/drivers/profile-types';
import { BUILTIN_PROFILES } from '../../src/drivers/profile';
import { checkInvariants, mountedTree } from '../helpers/invariants';

// The direct backend lets the kernel cache entries and attributes for an hour and invalidates
// exactly what goes. Here every path of the tree is looked up (so the kernel caches it) before
// each kind of operation, and afterwards stat, readdir and open must agree on every path seen
// before or after: a path stat finds is listed by its directory and opens, and a path that went
// is gone for all three. Runs on both backends (fuse-native caches nothing: it must agree too).

// A real client: python3 walks the tree without following links (priming the kernel's cache),
// then, given the paths, reports the ones on which stat, readdir and open disagree.
const PY = String.raw`
import errno, json, os, stat, sys
root = sys.argv[2]
def walk():
    out = []
    def go(rel):
        try:
            st = os.lstat(os.path.join(root, rel) if rel else root)
        except OSError:
            return
        out.append(rel)
        if stat.S_ISDIR(st.st_mode):
            try:
                names = os.listdir(os.path.join(root, rel) if rel else root)
            except OSError:
                return
            for n in names:
                go(rel + '/' + n if rel else n)
    go('')
    return out
def code(e):
    return errno.errorcode.get(e.errno, str(e.errno))
def probe(rel):
    p = os.path.join(root, rel)
    try:
        st = os.lstat(p)
        s = 'ok'
    except OSError as e:
        st, s = None, code(e)
    try:
        listed = os.path.basename(rel) in os.listdir(os.path.dirname(p))
    except OSError:
        listed = False
    try:
        if st is not None and stat.S_ISLNK(st.st_mode):
            os.readlink(p)
        elif st is not None and stat.S_ISDIR(st.st_mode):
            os.listdir(p)
        else:
            mode = st.st_mode if st is not None else 0o444
            fd = os.open(p, os.O_RDONLY if mode & 0o444 else os.O_WRONLY)
            os.close(fd)
        o = 'ok'
    except OSError as e:
        o = code(e)
    return s, listed, o
if sys.argv[1] == 'walk':
    print(json.dumps(walk()))
else:
    seen = set(json.load(sys.stdin)) | set(walk())
    bad = []
    for rel in sorted(seen):
        if not rel:
            continue
        s, listed, o = probe(rel)
        if not ((s == 'ok') == listed == (o == 'ok' or o == 'EACCES')) or (s != 'ok' and s != 'ENOENT'):
            bad.append('%s: stat %s, %s, open %s' % (rel, s, 'listed' if listed else 'not listed', o))
    print(json.dumps(bad))
`;
const py = (mode: string, dir: string, input = '') => {
  const r = spawnSync('python3', ['-c', PY, mode, dir], { input, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python3: ${r.stderr}`);
  return JSON.parse(r.stdout) as string[];
};
const ctl = (...args: string[]) => spawnSync(process.execPath, [CLI, 'ctl', ...args], { encoding: 'utf8', timeout: 30000, env: cliEnv() });

const U = (n: number) => `00000000-0000-0000-0000-00000000000${n}`;
const PROFILE: Profile = {
  parents: [
    {
      name: 'gpu',
      path: 'devices/virtual/gpu/gpu',
      class: 'gpu',
      mdevDriver: 'gpu',
      capacity: { model: 'pool', size: 8 },
      deviceAttrs: { 'vendor/units': '{cost}\n' },
      types: [
        { name: 'fast', cost: 1 },
        { name: 'slow', cost: 2, faults: { createDelayMs: 1500 } },
        { name: 'broken', faults: { createDelayMs: 1500, createErrno: 'EIO', createFailEvery: 1 } },
      ],
    },
  ],
};

const T = (ty: string) => `class/mdev_bus/gpu/mdev_supported_types/gpu-${ty}`;

/** Primes the kernel's cache with every path, runs the operation, checks every path. */
function stepper(t: Test, dir: string, profile: Profile, abi: AbiVersion) {
  return async (name: string, op: () => Promise<unknown> | unknown, quiet = true) => {
    const before = py('walk', dir);
    await op();
    t.same(py('check', dir, JSON.stringify(before)), [], `${name}: stat, readdir and open agree`);
    t.same(checkInvariants(mountedTree(dir), { abi, quiet, profile }).problems, [], `${name}: invariants hold`);
  };
}

t.test('stat, readdir and open agree after every kind of operation', async (t) => {
  const d = await startDaemon({ profile: PROFILE });
  t.teardown(() => d.stop());
  const until = async (test: string) => {
    for (let i = 0; i < 200 && sh(d.dir, `test ${test}`).code !== 0; i++) await new Promise((r) => setTimeout(r, 10));
  };
  const step = stepper(t, d.dir, PROFILE, '6.1');
  const background = (script: string) => {
    const p = spawn('bash', ['-c', script], { cwd: d.dir });
    let out = '';
    p.stderr.on('data', (c) => (out += c));
    // 'close', not 'exit': only then has all of stderr been read (under load 'exit' can come first).
    return new Promise<string>((r) => p.on('close', (code) => r(`${code} ${out}`)));
  };

  await step('create', () => t.equal(sh(d.dir, `echo ${U(1)} > ${T('fast')}/create`).code, 0));
  await step('remove', () => t.equal(sh(d.dir, `echo 1 > bus/mdev/devices/${U(1)}/remove`).code, 0));

  const slow = background(`echo ${U(2)} > ${T('slow')}/create`);
  await until(`-e bus/mdev/devices/${U(2)}/remove`);
  await step('EAGAIN remove during a slow create', () =>
    t.equal(sh(d.dir, `echo 1 > bus/mdev/devices/${U(2)}/remove`).stderr, 'bash: line 1: echo: write error: Resource temporarily unavailable\n'),
  false);
  await step('the slow create completes', async () => t.equal(await slow, '0 '));
  t.equal(sh(d.dir, `ls bus/mdev/devices/${U(2)}/remove`).code, 2, 'remove stays gone (6.1)');

  const broken = background(`echo ${U(3)} > ${T('broken')}/create`);
  await until(`-e bus/mdev/devices/${U(3)}/remove`);
  await step('failed create', async () => t.match(await broken, /^1 .*Input\/output error/));

  await step('unbind', () => t.equal(sh(d.dir, `echo ${U(2)} > bus/mdev/drivers/gpu/unbind`).code, 0));
  t.equal(sh(d.dir, `echo ${U(4)} > ${T('fast')}/create`).code, 0);
  await step('parent removal', () => t.equal(ctl(d.dir, 'remove-parent', 'gpu').status, 0));
  t.equal(sh(d.dir, 'ls bus/mdev/devices | wc -l').stdout, '0\n');
  // The names come back: a lookup made while they were absent (a negative entry) must not hide them.
  const file = join(scratch('mdevfs-agree-'), 'parent.json');
  writeFileSync(file, JSON.stringify(PROFILE.parents[0]));
  await step('parent registration', () => {
    t.equal(sh(d.dir, `stat ${T('fast')} devices/virtual/gpu/gpu class/mdev_bus/gpu`).code, 1, 'absent before');
    t.equal(ctl(d.dir, 'add-parent', file).status, 0);
  });
  t.equal(sh(d.dir, `echo ${U(5)} > ${T('fast')}/create && ls bus/mdev/devices`).stdout, `${U(5)}\n`, 'and serve creates');
  await step('bind refused (ENODEV, as on 6.1)', () => {
    t.equal(sh(d.dir, `echo ${U(5)} > bus/mdev/drivers/gpu/unbind`).code, 0);
    t.match(sh(d.dir, `echo ${U(5)} > bus/mdev/drivers/gpu/bind`).stderr, 'No such device');
  });
});

t.test('4.17: a vetoed remove takes the remove file away and gives it back; all three agree', async (t) => {
  const veto: Profile = { parents: [{ ...PROFILE.parents[0]!, faults: { removeErrno: 'EBUSY', removeFailEvery: 2 } }] };
  const d = await startDaemon({ profile: veto, abi: '4.17' });
  t.teardown(() => d.stop());
  const step = stepper(t, d.dir, veto, '4.17');
  t.equal(sh(d.dir, `echo ${U(1)} > ${T('fast')}/create; echo ${U(2)} > ${T('fast')}/create`).code, 0);
  await step('a remove the vendor allows', () => t.equal(sh(d.dir, `echo 1 > bus/mdev/devices/${U(1)}/remove`).code, 0));
  await step('a remove the vendor vetoes', () =>
    t.equal(sh(d.dir, `echo 1 > bus/mdev/devices/${U(2)}/remove`).stderr, 'bash: line 1: echo: write error: Device or resource busy\n'),
  );
  await step('the next remove', () => t.equal(sh(d.dir, `echo 1 > bus/mdev/devices/${U(2)}/remove`).code, 0));
});

t.test('vfio-pci: binding and unbinding a function (its vfio-dev/, its VFIO group device, devices/virtual with it); all three agree', async (t) => {
  // A host whose only mdev parent is a PCI function: devices/virtual exists only while a VFIO group device does.
  const A = '0000:3b:00.0';
  const host: Profile = {
    ...BUILTIN_PROFILES.gvt,
    pciDevices: [{ name: A, path: `devices/pci0000:3a/${A}`, pci: { vendor: '0x10de', device: '0x1eb8', class: '0x030200', iommuGroup: 3 } }],
  };
  const d = await startDaemon({ profile: host });
  t.teardown(() => d.stop());
  const step = stepper(t, d.dir, host, '6.1');
  await step('driver_override + drivers_probe', () => t.equal(sh(d.dir, `echo vfio-pci > bus/pci/devices/${A}/driver_override && echo ${A} > bus/pci/drivers_probe`).code, 0));
  t.equal(sh(d.dir, `ls bus/pci/devices/${A}/vfio-dev devices/virtual/vfio`).stdout, `bus/pci/devices/${A}/vfio-dev:\nvfio0\n\ndevices/virtual/vfio:\n3\n`);
  await step('unbind', () => t.equal(sh(d.dir, `echo ${A} > bus/pci/drivers/vfio-pci/unbind`).code, 0));
  t.equal(sh(d.dir, 'ls devices').stdout, 'pci0000:00\npci0000:3a\n', 'devices/virtual went with the last group device');
  await step('bind', () => t.equal(sh(d.dir, `echo ${A} > bus/pci/drivers/vfio-pci/bind`).code, 0));
  await step('an mdev beside it, then the unbind', () => {
    t.equal(sh(d.dir, `echo ${U(1)} > class/mdev_bus/0000:00:02.0/mdev_supported_types/i915-GVTg_V5_8/create`).code, 0);
    t.equal(sh(d.dir, `echo ${A} > bus/pci/drivers/vfio-pci/unbind`).code, 0);
  });
});
