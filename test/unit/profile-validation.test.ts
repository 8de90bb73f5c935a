import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { BUILTIN_PROFILES, loadParents, loadProfile, profileProblems, syntaxErrorAt, validateProfile } from '../../src/drivers/profile';

// A bad profile is refused before anything is mounted, with a message naming the field
// (issue #7, #9). Each case mutates a good profile in one way and names the first message.
type P = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const good = (): P => ({
  parents: [
    {
      name: 'gpu0',
      path: 'devices/virtual/gpu/gpu0',
      class: 'gpu',
      mdevDriver: 'gpu',
      capacity: { model: 'pool', size: 8 },
      types: [{ name: 'small', cost: 1 }, { name: 'big', cost: 4 }],
      deviceAttrs: { 'vendor/slices': '{cost}\n' },
    },
    {
      name: '0000:00:02.0',
      path: 'devices/pci0000:00/0000:00:02.0',
      pci: { vendor: '0x8086', device: '0x5912', class: '0x030000', driver: 'i915', bars: [{ index: 0, size: '0x1000000' }] },
      mdevDriver: 'intel_vgpu_mdev',
      capacity: { model: 'counter', max: 4 },
      types: [{ name: 'V5_4' }],
    },
    {
      name: '0000:41:00.0',
      path: 'devices/pci0000:40/0000:41:00.0',
      pci: { vendor: '0x10de', device: '0x2236', class: '0x030200', driver: 'nvidia', sriov: { totalVfs: 4, vfDevice: '0x2236', offset: 4, mdevOn: 'vfs' } },
      mdevDriver: 'nvidia-vgpu-vfio',
      capacity: { model: 'counter', max: 1 },
      types: [{ name: '592' }],
    },
    {
      name: 'matrix',
      path: 'devices/vfio_ap/matrix',
      bus: { name: 'matrix', driver: 'vfio_ap' },
      mdevDriver: 'vfio_ap_mdev',
      capacity: { model: 'counter', max: 65536 },
      types: [{ name: 'passthrough', deviceApi: 'vfio-ap' }],
    },
  ],
});

const cases: [string, (p: P) => void, string][] = [
  ['a string cost', (p) => (p.parents[0].types[0].cost = '4'), 'parents[0].types[0].cost: must be a number'],
  ['a fractional cost', (p) => (p.parents[0].types[1].cost = 1.5), 'parents[0].types[1].cost: must be an integer'],
  ['a negative pool', (p) => (p.parents[0].capacity.size = -1), 'parents[0].capacity.size: must be >= 0'],
  ['a pool size as text', (p) => (p.parents[0].capacity.size = '8'), 'parents[0].capacity.size: must be a number'],
  ['a counter without max', (p) => (p.parents[1].capacity = { model: 'counter' }), 'parents[1].capacity.max: is required'],
  ['a bogus capacity model', (p) => (p.parents[0].capacity = { model: 'bogus' }),
    'parents[0].capacity: model must be one of "counter", "pool", "constant", "exclusive", "nvidia-vgpu", "gvt"'],
  ['a capacity without model', (p) => (p.parents[0].capacity = { size: 3 }), 'parents[0].capacity.model: is required'],
  ['a key of another model', (p) => (p.parents[1].capacity.size = 3), 'parents[1].capacity.size: unknown key'],
  ['a typo in a parent', (p) => (p.parents[0].mdevDrivr = 'gpu'), 'parents[0].mdevDrivr: unknown key (did you mean "mdevDriver"?)'],
  ['a typo in a type', (p) => (p.parents[0].types[0].descripton = 'x'), 'parents[0].types[0].descripton: unknown key (did you mean "description"?)'],
  ['a typo at the top', (p) => (p.parent = []), 'parent: unknown key (did you mean "parents"?)'],
  ['a typo in pci', (p) => (p.parents[1].pci.vendorId = '0x8086'), 'parents[1].pci.vendorId: unknown key (did you mean "vendor"?)'],
  ['a typo in faults', (p) => (p.parents[0].faults = { createDelay: 5 }), 'parents[0].faults.createDelay: unknown key (did you mean "createDelayMs"?)'],
  ['no parents', (p) => delete p.parents, 'parents: is required'],
  ['parents not a list', (p) => (p.parents = {}), 'parents: must be an array'],
  ['no types', (p) => (p.parents[0].types = []), 'parents[0].types: must not be empty'],
  ['a type without name', (p) => delete p.parents[0].types[0].name, 'parents[0].types[0].name: is required'],
  ['two types of one name', (p) => (p.parents[0].types[1].name = 'small'), 'parents[0].types[1].name: "small" is also types[0]'],
  ['two parents of one name', (p) => (p.parents[1] = { ...p.parents[0], path: 'devices/virtual/gpu2/gpu0' }),
    'parents[1].name: "gpu0" is also the name of parents[0] (gpu0)'],
  ['two parents in one directory', (p) => (p.parents[3].path = 'devices/virtual/gpu/gpu0', p.parents[3].name = 'gpu0', delete p.parents[3].bus, p.parents[3].class = 'gpu'),
    'parents[3].name: "gpu0" is also the name of parents[0] (gpu0)'],
  ['a parent inside another', (p) => (p.parents[3] = { ...p.parents[0], name: 'x', path: 'devices/virtual/gpu/gpu0/x' }),
    'parents[3].path: devices/virtual/gpu/gpu0/x nests with devices/virtual/gpu/gpu0 of parents[0] (gpu0)'],
  ['a VF on another parent', (p) => (p.parents[1].name = '0000:41:00.4', p.parents[1].path = 'devices/pci0000:40/0000:41:00.4', p.parents.reverse()),
    'parents[2].name: "0000:41:00.4" is also the name of parents[1] (0000:41:00.4)'],
  ['a parent in a PF\'s directory', (p) => (p.parents[1].name = '0000:41:00.0', p.parents[1].path = 'devices/pci0000:40/0000:41:00.0', p.parents.reverse()),
    'parents[2].path: devices/pci0000:40/0000:41:00.0 collides with parents[1] (its PF)'],
  ['a parent where a VF is', (p) => (p.parents[2].pci.sriov.mdevOn = 'pf', p.parents[1].name = '0000:41:00.5', p.parents[1].path = 'devices/pci0000:40/0000:41:00.5'),
    'parents[2].pci.sriov: devices/pci0000:40/0000:41:00.5 collides with parents[1] (0000:41:00.5)'],
  ['an unknown errno', (p) => (p.parents[0].faults = { createErrno: 'EFOO' }), 'parents[0].faults.createErrno: "EFOO" is not an errno the emulation knows'],
  ['an errno of a type', (p) => (p.parents[0].types[1].faults = { removeErrno: 'ENOTANERRNO' }), 'parents[0].types[1].faults.removeErrno: "ENOTANERRNO" is not an errno'],
  ['a lower-case errno', (p) => (p.parents[0].capacity.errno = 'enospc'), 'parents[0].capacity.errno: must be an errno name, e.g. ENOSPC'],
  ['a path with ..', (p) => (p.parents[0].path = 'devices/../../etc/gpu0'), 'parents[0].path: ".." would leave the parent\'s directory'],
  ['a path outside devices/', (p) => (p.parents[0].path = 'class/gpu/gpu0'), 'parents[0].path: must be devices/... ending with the parent\'s name'],
  ['a path not ending in the name', (p) => (p.parents[0].path = 'devices/virtual/gpu/gpu1'), 'parents[0].path: must end with the parent\'s name "gpu0"'],
  ['a class with a slash', (p) => (p.parents[0].class = '../x'), 'parents[0].class: must be one sysfs directory name'],
  ['a class of mdevfs\'s own', (p) => (p.parents[0].class = 'mdev_bus'), 'parents[0].class: "mdev_bus" is not a class a parent can have'],
  ['a class named ..', (p) => (p.parents[0].class = '..'), 'parents[0].class: ".." is not a class a parent can have'],
  ['a name with a slash', (p) => (p.parents[0].name = 'a/b'), 'parents[0].name: must be one sysfs directory name'],
  ['an attribute escaping the device', (p) => (p.parents[0].deviceAttrs = { '../../x': 'y' }), 'parents[0].deviceAttrs["../../x"]: "." and ".." would leave the directory'],
  ['an attribute over the kernel\'s', (p) => (p.parents[0].deviceAttrs = { 'remove': 'y' }), 'parents[0].deviceAttrs["remove"]: collides with the kernel\'s own "remove"'],
  ['an absolute attribute path', (p) => (p.parents[0].deviceAttrs = { '/etc/x': 'y' }), 'parents[0].deviceAttrs["/etc/x"]: must be a relative path of sysfs names'],
  ['an attribute kind unknown', (p) => (p.parents[0].deviceAttrs = { 'vendor/x': { kind: 'nope' } }), 'parents[0].deviceAttrs["vendor/x"]: kind must be one of'],
  ['an attribute neither text nor kind', (p) => (p.parents[0].deviceAttrs = { 'vendor/x': 5 }),
    'parents[0].deviceAttrs["vendor/x"]: must be a read-only template, or an attribute with behaviour'],
  ['pci and class at once', (p) => (p.parents[1].class = 'drm'), 'parents[1]: class and pci exclude each other'],
  ['a PCI parent not named by its address', (p) => (p.parents[1].name = 'igpu', p.parents[1].path = 'devices/pci0000:00/igpu'),
    'parents[1].name: must be a PCI address such as 0000:00:02.0'],
  ['a PCI parent outside its host bridge', (p) => (p.parents[1].path = 'devices/virtual/0000:00:02.0'),
    'parents[1].path: must be below the host bridge of its domain'],
  ['a vendor id as words', (p) => (p.parents[1].pci.vendor = 'intel'), 'parents[1].pci.vendor: must be a number, or hex text as sysfs prints it ("0x10de")'],
  ['a vendor id too wide', (p) => (p.parents[1].pci.vendor = '0x18086'), 'parents[1].pci.vendor: must be at most 0xffff'],
  ['a PCI parent without driver', (p) => delete p.parents[1].pci.driver, 'parents[1].pci.driver: is required'],
  ['a BAR of odd size', (p) => (p.parents[1].pci.bars[0].size = 3000), 'parents[1].pci.bars[0].size: must be a power of two of at least 16'],
  ['two BARs in one register', (p) => p.parents[1].pci.bars.push({ index: 1, size: 4096 }, { index: 0, kind: 'mem64', size: 4096 }),
    'parents[1].pci.bars[2].index: BAR register 0 is also used by parents[1].pci.bars[0]'],
  ['a BAR 6', (p) => (p.parents[1].pci.bars[0].index = 6), 'parents[1].pci.bars[0].index: must be <= 5'],
  ['a prefetchable I/O BAR', (p) => (p.parents[1].pci.bars[0] = { index: 0, kind: 'io', size: 64, prefetchable: true }),
    'parents[1].pci.bars[0].prefetchable: an I/O BAR cannot be prefetchable'],
  ['more VFs enabled than there are', (p) => (p.parents[2].pci.sriov.numVfs = 5), 'parents[2].pci.sriov.numVfs: must be at most totalVfs (4)'],
  ['devices but no VF to be their parent', (p) => (p.parents[2].pci.sriov.numVfs = 0, p.parents[2].devices = [{ uuid: '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001', type: '592' }]),
    'parents[2].pci.sriov.numVfs: must be at least 1 for devices on the VFs'],
  ['VFs past the last bus', (p) => (p.parents[2].pci.sriov.offset = 65535), 'parents[2].pci.sriov: VF 3 would be past bus ff'],
  ['an SR-IOV mode unknown', (p) => (p.parents[2].pci.sriov.mdevOn = 'both'), 'parents[2].pci.sriov.mdevOn: must be one of "pf", "vfs"'],
  ['a bus named pci', (p) => (p.parents[3].bus.name = 'pci'), 'parents[3].bus.name: "pci" is not for this block (use "pci")'],
  ['a bus device without root', (p) => (p.parents[3].path = 'devices/matrix', p.parents[3].name = 'matrix'), 'parents[3].path: a device needs a root directory'],
  ['a cpu list backwards', (p) => (p.parents[1].pci.localCpus = '7-0'), 'parents[1].pci.localCpus: "7-0" is not a cpu list such as 0-7,16'],
  ['a numa node too far', (p) => (p.parents[1].pci.numaNode = -2), 'parents[1].pci.numaNode: must be >= -1'],
  ['a probability above 1', (p) => (p.parents[0].faults = { createErrno: 'EIO', createFailProbability: 2 }), 'parents[0].faults.createFailProbability: must be <= 1'],
  ['every 0th call', (p) => (p.parents[0].faults = { createErrno: 'EIO', createFailEvery: 0 }), 'parents[0].faults.createFailEvery: must be >= 1'],
  ['a GVT type without its sizes', (p) => (p.parents[1].capacity = { model: 'gvt', apertureMb: 1024 }),
    'parents[1].types[0].lowGmMb: is required by capacity model gvt'],
  ['an abi unknown', (p) => (p.abi = '5.4'), 'abi: must be one of "6.1", "4.17"'],
  ['a present device of no type', (p) => (p.parents[0].devices = [{ uuid: '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001', type: 'huge' }]),
    'parents[0].devices[0].type: no type "huge" in this parent'],
  ['one IOMMU group for two functions', (p) => (p.parents[1].pci.iommuGroup = 7, p.parents[2].pci.iommuGroup = 7),
    "parents[2].pci.iommuGroup: IOMMU group 7 is also parents[1].pci.iommuGroup's"],
  ['a VF in a PCI function\'s group', (p) => (p.parents[1].pci.iommuGroup = 3, p.parents[2].pci.sriov.vfIommuGroups = [10, 3]),
    "parents[2].pci.sriov.vfIommuGroups[1]: IOMMU group 3 is also parents[1].pci.iommuGroup's"],
  ['an mdev in a PCI function\'s group', (p) => (p.parents[1].pci.iommuGroup = 0, p.parents[0].devices = [{ uuid: '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001', type: 'small', iommuGroup: 0 }]),
    "parents[1].pci.iommuGroup: IOMMU group 0 is also parents[0].devices[0].iommuGroup's"],
  ['more VF groups than enabled VFs', (p) => (p.parents[2].pci.sriov.numVfs = 2, p.parents[2].pci.sriov.vfIommuGroups = [1, 2, 3]),
    'parents[2].pci.sriov.vfIommuGroups: 3 groups for 2 enabled VFs'],
  ['a negative IOMMU group', (p) => (p.parents[1].pci.iommuGroup = -1), 'parents[1].pci.iommuGroup: must be >= 0'],
  ['a cost larger than the pool', (p) => (p.parents[0].types[1].cost = 16), 'parents[0].types[1].cost: 16 can never fit the pool of 8 (capacity.size)'],
  ['a pool smaller than the default cost', (p) => (p.parents[0].capacity.size = 0, delete p.parents[0].types[0].cost),
    'parents[0].types[0].cost: 1 can never fit the pool of 0 (capacity.size)'],
];

t.test('the good profile and every built-in validate', async (t) => {
  t.same(profileProblems(good()), []);
  for (const [name, p] of Object.entries(BUILTIN_PROFILES)) t.same(profileProblems(JSON.parse(JSON.stringify(p))), [], name);
});

t.test('each bad profile is refused with a message naming its field', async (t) => {
  t.ok(cases.length >= 30);
  for (const [what, mutate, message] of cases) {
    if (!message) continue;
    const p = good();
    mutate(p);
    const problems = profileProblems(p);
    t.ok(problems[0]?.startsWith(message), `${what}: ${problems[0]} starts with ${message}`);
    t.same(problems.filter((m, i) => problems.indexOf(m) !== i), [], `${what}: no message twice`);
  }
  t.match(profileProblems([]), ['profile: must be an object']);
  t.match(profileProblems('x'), ['profile: must be an object']);
});

t.test('validateProfile throws every problem, one per line', async (t) => {
  const p = good();
  p.parents[0].types[0].cost = 'x';
  p.parents[1].mdevDrivr = 'y';
  t.throws(() => validateProfile(p, 'bad.json'), {
    name: 'ProfileError',
    message: 'profile bad.json refused:\n  parents[0].types[0].cost: must be a number\n  parents[1].mdevDrivr: unknown key (did you mean "mdevDriver"?)',
  });
});

t.test('every problem of a file in one run: a bad path hides neither a bad errno, nor a type named twice, nor a cost too large', async (t) => {
  const p = good();
  p.parents[0].path = 'class/gpu/gpu0'; // the schema refuses it
  p.parents[0].faults = { createErrno: 'EFOO' };
  p.parents[0].types[1].name = 'small';
  p.parents[0].types[1].cost = 16;
  p.parents[1].path = 'devices/pci0000:00/0000:00:03.0'; // a path the schema takes, not ending with the name
  p.parents[1].types = [{ name: 'V5_4' }, { name: 'V5_4' }];
  p.parents[2].mdevDrivr = 'x';
  t.same(profileProblems(p), [
    "parents[0].path: must be devices/... ending with the parent's name",
    'parents[2].mdevDrivr: unknown key (did you mean "mdevDriver"?)',
    'parents[0].types[1].name: "small" is also types[0]',
    'parents[0].types[1].cost: 16 can never fit the pool of 8 (capacity.size)',
    `parents[0].faults.createErrno: "EFOO" is not an errno the emulation knows (${Object.keys((await import('../../src/base/errno')).Errno).join(', ')})`,
    'parents[1].path: must end with the parent\'s name "0000:00:02.0"',
    'parents[1].types[1].name: "V5_4" is also types[0]',
  ]);
});

t.test('no rule speaks again of a field the schema refused, and none fails on a shape it refused', async (t) => {
  const p = good();
  p.parents[0].types[1].name = 7;
  p.parents[0].types[0].cost = 'many';
  p.parents[3] = 5;
  p.parents[1].capacity = 'pool';
  t.same(profileProblems(p), [
    'parents[0].types[0].cost: must be a number',
    'parents[0].types[1].name: must be a string',
    'parents[1].capacity: must be an object',
    'parents[3]: must be an object',
  ]);
  t.same(profileProblems({ parents: 3 }), ['parents: must be an array']);
  t.same(profileProblems(null), ['profile: must be an object']);
});

const dir = mkdtempSync(join(tmpdir(), 'mdevfs-profile-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const f = join(dir, name);
  writeFileSync(f, text);
  return f;
};

t.test('a JSON syntax error is given at its line:column', async (t) => {
  const cases: [string, string][] = [
    ['{\n  "parents": [\n    { "name" "gpu0" }\n  ]\n}\n', ':3:14: not JSON: '],
    ['{\n  "parents": [1,]\n}', ":2:17: not JSON: Unexpected token ']'"],
    ['{ "parents": [\n', ':2:1: not JSON: the text ends too early'],
    ['{ "parents": [] }\n}', ':2:1: not JSON: Unexpected non-whitespace character after JSON'],
    ['\t{ "a": "\\q" }', ':1:11: not JSON: Bad escaped character'],
  ];
  for (const [i, [text, where]] of cases.entries()) {
    const f = file(`bad-${i}.json`, text);
    t.throws(() => loadProfile(f), { message: `profile ${f}${where}` }, JSON.stringify(text));
    t.throws(() => loadParents(f), { message: `profile ${f}${where}` });
    t.equal(syntaxErrorAt(text) >= 0, true);
  }
  t.equal(syntaxErrorAt(JSON.stringify(BUILTIN_PROFILES['nvidia-a10'], null, 2)), -1, 'JSON is JSON');
  t.notMatch(t.throws(() => loadProfile(file('long.json', `{"description": "${'x'.repeat(5000)}",}`))) as unknown as string, /xxxxxxxxxx/);
});

t.test('ctl add-parent takes a built-in name, a profile file or one parent, validated alike', async (t) => {
  t.equal(loadParents('nvidia-t4'), BUILTIN_PROFILES['nvidia-t4']!.parents);
  const one = good().parents[0];
  t.same(loadParents(file('one.json', JSON.stringify(one))), [one]);
  t.same(loadParents(file('all.json', JSON.stringify(good()))), good().parents);
  t.throws(() => loadParents(file('bad-one.json', JSON.stringify({ ...one, mdevDrivr: 'x' }))), { name: 'ProfileError', message: /parents\[0\]\.mdevDrivr: unknown key/ });
  t.throws(() => loadParents('nvidia-t9'), { message: /profile "nvidia-t9" is neither a built-in \(samples, gvt, .*\) nor a readable file/ });
});
