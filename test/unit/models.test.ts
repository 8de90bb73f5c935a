import t from 'tap';
import { Errno, MdevError } from '../../src/base/errno';
import type { MdevDevice, MdevType } from '../../src/core/model';
import { Emulation } from '../../src/emulation';
import { AP } from '../../src/drivers/builtin/ap';
import { GVT, GVT_PARENT } from '../../src/drivers/builtin/gvt';
import { NVIDIA_L40S, NVIDIA_T4, NVIDIA_V100 } from '../../src/drivers/builtin/nvidia';
import { formatApMask, parseApMask, parseApMaskChange } from '../../src/drivers/models/ap';
import { NvidiaGpu, VendorVfioVf, kstrtol10, vfioVgpuTypes } from '../../src/drivers/models/nvidia';
import { profileProblems } from '../../src/drivers/profile';
import type { Profile } from '../../src/drivers/profile-types';
import { silentLogger } from '../../src/base/log';
import { ManualClock } from '../helpers/manual-clock';

// Each capacity model and vendor attribute kind in-process, through the core (no mount).

const uuid = (n: number) => `00000000-0000-0000-0000-${String(n).padStart(12, '0')}`;

function setup(profile: Profile, abi = '6.1') {
  const { core } = new Emulation(profile, { abi, log: silentLogger, clock: new ManualClock() });
  const parent = [...core.parents.values()][0]!;
  const type = (id: string): MdevType => {
    const ty = parent.types.get(id);
    if (!ty) throw new Error(`no type ${id}`);
    return ty;
  };
  const avail = (id: string) => core.availableInstances(type(id));
  let n = 0;
  const create = (id: string) => core.create(type(id), uuid(++n));
  const attr = (dev: MdevDevice, path: string) => {
    const a = parent.driver.deviceAttrs(dev, core.abi).find((x) => x.path === path);
    if (!a) throw new Error(`no attribute ${path}`);
    return a;
  };
  return { core, parent, type, avail, create, attr };
}

async function errnoOf(f: () => unknown): Promise<number | undefined> {
  try {
    await f();
    return undefined;
  } catch (e) {
    return e instanceof MdevError ? e.errno : -1;
  }
}

t.test('nvidia-vgpu, time-sliced: max_instance fresh, then only the same framebuffer size', async (t) => {
  const { core, avail, create, parent } = setup(NVIDIA_V100);
  t.equal(parent.types.size, 17, 'the whole charm-guide list');
  t.same(['nvidia-105', 'nvidia-109', 'nvidia-115', 'nvidia-299'].map(avail), [16, 1, 16, 4]);
  const d = await create('nvidia-106'); // V100-2Q, 2048 MB
  t.equal(avail('nvidia-106'), 7, '2Q: max_instance - vGPUs on the GPU');
  t.equal(avail('nvidia-163'), 7, '2B (same size) too');
  t.equal(avail('nvidia-217'), 7, '2B4 too');
  t.equal(avail('nvidia-111'), 7, '2A too');
  t.same(['nvidia-105', 'nvidia-107', 'nvidia-109', 'nvidia-301'].map(avail), [0, 0, 0, 0], 'other sizes read 0');
  t.equal(await errnoOf(() => create('nvidia-105')), Errno.EIO, 'a create of another size: EIO (RM refusal)');
  t.equal(avail('nvidia-106'), 7, 'the refusal took nothing');
  await create('nvidia-163');
  t.equal(avail('nvidia-106'), 6, 'every vGPU of any type counts');
  for (const dev of [...core.devices.values()]) await core.remove(dev);
  t.same(['nvidia-105', 'nvidia-109', 'nvidia-106'].map(avail), [16, 1, 8], 'all back once the GPU is empty');
  t.ok(d);
});

t.test('nvidia-vgpu: the 16 GB type fills the GPU, the errno and policy are options', async (t) => {
  const { avail, create } = setup(NVIDIA_T4);
  await create('nvidia-234'); // T4-16Q
  t.equal(avail('nvidia-234'), 0);
  t.equal(await errnoOf(() => create('nvidia-234')), Errno.EIO);
  const einval: Profile = { parents: [{ ...NVIDIA_T4.parents[0]!, capacity: { model: 'nvidia-vgpu', errno: 'EINVAL' } }] };
  const e = setup(einval);
  await e.create('nvidia-230');
  t.equal(await errnoOf(() => e.create('nvidia-231')), Errno.EINVAL, 'errno: EINVAL');
  const sameType: Profile = { parents: [{ ...NVIDIA_T4.parents[0]!, capacity: { model: 'nvidia-vgpu', policy: 'same-type' } }] };
  const s = setup(sameType);
  await s.create('nvidia-230'); // T4-1Q
  t.same([s.avail('nvidia-230'), s.avail('nvidia-222'), s.avail('nvidia-225')], [15, 0, 0], 'same-type: 1B of the same size reads 0');
  const het: Profile = { parents: [{ ...NVIDIA_T4.parents[0]!, capacity: { model: 'nvidia-vgpu', policy: 'heterogeneous' } }] };
  const h = setup(het);
  await h.create('nvidia-233'); // T4-8Q
  t.same([h.avail('nvidia-232'), h.avail('nvidia-233'), h.avail('nvidia-234')], [3, 1, 0], 'heterogeneous: what still fits 16 GB');
  await h.create('nvidia-232');
  await h.create('nvidia-227');
  t.equal(h.avail('nvidia-230'), 0, '8+4+4 GB: full');
});

t.test('NvidiaGpu per VF: 1 on a free VF, 0 on a VF with a vGPU, the GPU-wide max_instance', async (t) => {
  const gpu = new NvidiaGpu('same-size', 24576);
  const q12 = { key: '596', framebufferMb: 12288, max: 2 };
  const q1 = { key: '590', framebufferMb: 1024, max: 24 };
  t.same([gpu.perVf(q12, 'vf0'), gpu.perVf(q1, 'vf0')], [1, 1]);
  gpu.add({}, q12, 'vf0');
  t.same([gpu.perVf(q12, 'vf0'), gpu.perVf(q12, 'vf1'), gpu.perVf(q1, 'vf1')], [0, 1, 0], 'busy VF 0; sibling: same size only');
  gpu.add({}, q12, 'vf1');
  t.equal(gpu.perVf(q12, 'vf2'), 0, 'the GPU holds max_instance 12Q vGPUs');
});

t.test('nvidia/vgpu_params keeps count-1 bytes, E2BIG over 1024; vm_name is empty', async (t) => {
  const { create, attr } = setup(NVIDIA_T4);
  const dev = await create('nvidia-230');
  const p = attr(dev, 'nvidia/vgpu_params');
  t.equal(p.mode, 0o644);
  t.equal(p.show!(), '\n');
  t.equal(await p.store!(Buffer.from('frame_rate_limiter=0\n')), 21);
  t.equal(p.show!(), 'frame_rate_limiter=0\n', "echo's newline is dropped");
  await p.store!(Buffer.from('loglevel=5'));
  t.equal(p.show!(), 'loglevel=\n', 'a write without a newline loses its last character');
  t.equal(await errnoOf(() => p.store!(Buffer.alloc(1025, 0x61))), Errno.E2BIG);
  t.equal(p.show!(), 'loglevel=\n', 'E2BIG changes nothing');
  t.equal(await p.store!(Buffer.alloc(1024, 0x61)), 1024, '1024 bytes are allowed');
  t.equal(attr(dev, 'nvidia/vm_name').show!(), '\n');
  t.equal(attr(dev, 'nvidia/vm_name').mode, 0o444);
});

t.test('gvt: the aperture decides which types exist and one pool serves them all', async (t) => {
  const big = setup(GVT);
  t.same([...big.parent.types.keys()], ['i915-GVTg_V5_8', 'i915-GVTg_V5_4', 'i915-GVTg_V5_2', 'i915-GVTg_V5_1']);
  t.same(['i915-GVTg_V5_1', 'i915-GVTg_V5_2', 'i915-GVTg_V5_4', 'i915-GVTg_V5_8'].map(big.avail), [1, 2, 5, 7]);
  const d1 = await big.create('i915-GVTg_V5_4');
  t.same(['i915-GVTg_V5_1', 'i915-GVTg_V5_2', 'i915-GVTg_V5_4', 'i915-GVTg_V5_8'].map(big.avail), [1, 2, 4, 5]);
  const d2 = await big.create('i915-GVTg_V5_1');
  t.same(['i915-GVTg_V5_1', 'i915-GVTg_V5_2', 'i915-GVTg_V5_4', 'i915-GVTg_V5_8'].map(big.avail), [0, 0, 0, 0], 'high GM is gone');
  t.equal(await errnoOf(() => big.create('i915-GVTg_V5_8')), Errno.ENOSPC);
  t.same([big.attr(d1, 'intel_vgpu/vgpu_id').show!(), big.attr(d2, 'intel_vgpu/vgpu_id').show!()], ['1\n', '2\n']);
  await big.core.remove(d1);
  const d3 = await big.create('i915-GVTg_V5_8');
  t.equal(big.attr(d3, 'intel_vgpu/vgpu_id').show!(), '1\n', 'the lowest free id');

  const small = setup({ parents: [{ ...GVT_PARENT, capacity: { model: 'gvt', apertureMb: 256 } }] });
  t.same([...small.parent.types.keys()], ['i915-GVTg_V5_8', 'i915-GVTg_V5_4'], '256 MB: V5_2 and V5_1 do not exist');
  t.same([small.avail('i915-GVTg_V5_4'), small.avail('i915-GVTg_V5_8')], [1, 2]);
  await small.create('i915-GVTg_V5_8');
  t.equal(await errnoOf(() => small.create('i915-GVTg_V5_4')), Errno.ENOSPC, 'gvt-linux#122: one V5_8 leaves no V5_4');
  await small.create('i915-GVTg_V5_8');
  t.equal(await errnoOf(() => small.create('i915-GVTg_V5_8')), Errno.ENOSPC);

  t.equal(setup(GVT, '4.17').type('i915-GVTg_V5_4').name, undefined, '4.17: no name file');
  t.equal(big.type('i915-GVTg_V5_4').name, 'GVTg_V5_4', '6.1: the core shows sysfs_name');
  t.equal(await errnoOf(() => setup(GVT, '4.17').create('i915-GVTg_V5_1').then(() => undefined)), undefined);
});

t.test('AP masks: hex2bitmap and the sysfs format', async (t) => {
  t.same([...parseApMask('0x05')!], [5, 7]);
  t.same([...parseApMask('x8\n')!], [0]);
  t.same([...parseApMask('')!], []);
  t.equal(parseApMask('0x0g'), undefined);
  t.equal(parseApMask('0x' + '0'.repeat(65)), undefined, 'more than 256 bits');
  t.equal(formatApMask(new Set([0, 255])), '0x8' + '0'.repeat(62) + '1');
  const old = new Set([1, 2]);
  t.same([...parseApMaskChange('+5,-1\n', old)!].sort(), [2, 5], 'relative changes');
  t.same([...parseApMaskChange('+0x10-0x12,+010', old)!].sort((a, b) => a - b), [1, 2, 8, 16, 17, 18], 'ranges, hex and octal');
  t.same([...parseApMaskChange('0x4', old)!], [1], 'absolute');
  for (const bad of ['+', '+256', '+3-1', '+1;', '+1-300', '0x0g']) t.equal(parseApMaskChange(bad, old), undefined, bad);
  t.same([...old], [1, 2], 'the old mask is never changed');
});

t.test('vfio-ap: assignments, formats and errors against the host configuration (6.1)', async (t) => {
  const { create, attr } = setup(AP);
  const a = await create('vfio_ap-passthrough');
  const b = await create('vfio_ap-passthrough');
  const w = (dev: MdevDevice, f: string, s: string) => errnoOf(() => attr(dev, f).store!(Buffer.from(s)));
  const r = (dev: MdevDevice, f: string) => attr(dev, f).show!();
  t.equal(r(a, 'matrix'), '', 'nothing assigned: empty');
  t.equal(await w(a, 'assign_adapter', '5\n'), undefined);
  t.equal(r(a, 'matrix'), '05.\n');
  t.equal(await w(a, 'assign_domain', '0xab'), undefined);
  t.equal(await w(a, 'assign_domain', '04'), undefined, 'octal 04');
  t.equal(r(a, 'matrix'), '05.0004\n05.00ab\n');
  t.equal(await w(a, 'assign_adapter', '6'), undefined);
  t.equal(r(a, 'matrix'), '05.0004\n05.00ab\n06.0004\n06.00ab\n');
  t.equal(await w(a, 'assign_adapter', '256'), Errno.ENODEV, 'beyond Na');
  t.equal(await w(a, 'assign_adapter', 'five'), Errno.EINVAL);
  t.equal(await w(a, 'assign_adapter', '18446744073709551616'), Errno.ERANGE, 'kstrtoul overflow');
  t.equal(await w(a, 'assign_adapter', '7'), undefined, '07.0004 and 07.00ab are vfio_ap queues (aqmask)');
  t.equal(await w(a, 'assign_domain', '0x47'), Errno.EADDRNOTAVAIL, '07.0047 belongs to the default drivers');
  t.equal(r(a, 'matrix'), '05.0004\n05.00ab\n06.0004\n06.00ab\n07.0004\n07.00ab\n', 'the refused domain is not kept');
  t.equal(await w(a, 'assign_adapter', '5'), undefined, 'idempotent');
  t.equal(await w(b, 'assign_domain', '4'), undefined, 'domains alone share nothing');
  t.equal(await w(b, 'assign_adapter', '6'), Errno.EADDRINUSE, '06.0004 is a');
  t.equal(r(b, 'matrix'), '.0004\n');
  t.equal(await w(b, 'assign_adapter', '0x10'), undefined, 'over-provisioning: card 16 is not in the host');
  t.equal(r(b, 'guest_matrix'), '.0004\n', 'not in the host configuration: filtered from the guest');
  t.equal(r(a, 'guest_matrix'), r(a, 'matrix'));
  t.equal(await w(a, 'assign_control_domain', '0xab'), undefined);
  t.equal(await w(a, 'assign_control_domain', '1'), undefined);
  t.equal(await w(a, 'assign_control_domain', '0x100'), Errno.ENODEV);
  t.equal(r(a, 'control_domains'), '0001\n00ab\n');
  t.equal(await w(a, 'unassign_control_domain', '1'), undefined);
  t.equal(await w(a, 'unassign_control_domain', '1'), undefined, 'unassigning an unset id is a no-op');
  t.equal(await w(a, 'unassign_adapter', '300'), Errno.ENODEV);
  t.equal(await w(a, 'unassign_adapter', '6'), undefined);
  t.equal(await w(b, 'assign_adapter', '6'), undefined, 'free again');
  t.equal(attr(a, 'assign_adapter').mode, 0o200);
  t.equal(attr(a, 'matrix').mode, 0o444);
});

t.test('vfio-ap ap_config: three masks, all or nothing', async (t) => {
  const profile: Profile = { parents: [{ ...AP.parents[0]!, deviceAttrs: { ...AP.parents[0]!.deviceAttrs, ap_config: { kind: 'ap-config' } } }] };
  const { create, attr } = setup(profile);
  const a = await create('vfio_ap-passthrough');
  const b = await create('vfio_ap-passthrough');
  const cfg = (dev: MdevDevice) => attr(dev, 'ap_config');
  const zero = '0x' + '0'.repeat(64);
  t.equal(cfg(a).show!(), `${zero},${zero},${zero}\n`);
  const m = (...ids: number[]) => formatApMask(new Set(ids));
  t.equal(await cfg(a).store!(Buffer.from(`${m(5, 6)},${m(4)},${m(4)}\n`)), 3 * 67, 'the 201 bytes ap-check writes');
  t.equal(attr(a, 'matrix').show!(), '05.0004\n06.0004\n');
  t.equal(attr(a, 'control_domains').show!(), '0004\n');
  t.equal(await errnoOf(() => cfg(b).store!(Buffer.from(`${m(6)},${m(4, 0xab)},${m()}\n`))), Errno.EADDRINUSE);
  t.equal(await errnoOf(() => cfg(b).store!(Buffer.from(`${m(7)},${m(0x47)},${m()}\n`))), Errno.EADDRNOTAVAIL);
  t.equal(await errnoOf(() => cfg(b).store!(Buffer.from(`${m(5)},${m(4)}`))), Errno.EINVAL, 'two masks');
  t.equal(await errnoOf(() => cfg(b).store!(Buffer.from(`0xzz,${m()},${m()}\n`))), Errno.EINVAL);
  t.equal(cfg(b).show!(), `${zero},${zero},${zero}\n`, 'every failure left b as it was');
});

t.test('vfio-ap 4.17: queues must be bound to vfio_ap; no guest_matrix', async (t) => {
  const { create, attr, parent, core } = setup(AP, '4.17');
  const a = await create('vfio_ap-passthrough');
  const w = (f: string, s: string) => errnoOf(() => attr(a, f).store!(Buffer.from(s)));
  t.equal(await w('assign_adapter', '0x10'), Errno.EADDRNOTAVAIL, 'no such card: no queue to reserve');
  t.equal(await w('assign_adapter', '5'), undefined);
  t.equal(await w('assign_domain', '0x47'), undefined, '05.0047 is bound to vfio_ap');
  t.equal(await w('assign_adapter', '7'), Errno.EADDRNOTAVAIL, '07.0047 is the default drivers\'');
  t.notOk(parent.driver.deviceAttrs(a, core.abi).some((x) => x.path === 'guest_matrix'));
});

t.test('a JSON profile declares vendor-specific VFIO only as the models allow', async (t) => {
  const l40s = NVIDIA_L40S.parents[0]!;
  t.same(profileProblems(JSON.parse(JSON.stringify(NVIDIA_L40S))), []);
  const bad: Profile = {
    parents: [{ ...l40s, capacity: { model: 'counter', max: 4 }, types: [{ name: 'x' }], devices: [{ uuid: uuid(1), type: 'x' }] }],
  };
  t.same(profileProblems(JSON.parse(JSON.stringify(bad))), [
    'parents[0].capacity.model: VFs without mdev offer vGPUs: must be nvidia-vgpu',
    'parents[0].types[0].name: must be the numeric vGPU type id (VFs without mdev)',
    'parents[0].devices: no mdev parent to create them on (pci.sriov.mdevOn "none")',
  ]);
  const onMdev: Profile = { parents: [{ ...NVIDIA_T4.parents[0]!, vfAttrs: l40s.vfAttrs }] };
  t.same(profileProblems(JSON.parse(JSON.stringify(onMdev))), ['parents[0].vfAttrs: only for VFs without mdev (pci.sriov.mdevOn "none")']);
});

t.test('vendor-specific VFIO in-process: creatable types, current_vgpu_type, the GPU-wide rule', async (t) => {
  const gpu = new NvidiaGpu('same-size', 49152);
  const types = vfioVgpuTypes(NVIDIA_L40S.parents[0]!.types);
  const [vf0, vf1] = [new VendorVfioVf(gpu, 'vf0', types), new VendorVfioVf(gpu, 'vf1', types)];
  t.equal(vf0.creatable().split('\n').length, 2 + types.length, 'header, 22 types, final newline');
  t.equal(await errnoOf(() => vf0.store(Buffer.from('0'))), Errno.EPERM);
  t.equal(vf0.store(Buffer.from('1156\n')), 5, 'L40S-48Q');
  t.equal(vf0.currentType, 1156);
  t.equal(vf1.creatable(), 'ID    : vGPU Name\n', 'the whole framebuffer is taken');
  t.equal(await errnoOf(() => vf1.store(Buffer.from('1166'))), Errno.EIO, 'max_instance 1');
  t.equal(await errnoOf(() => vf0.store(Buffer.from('1147'))), Errno.EPERM);
  t.equal(await errnoOf(() => vf1.store(Buffer.from('+'))), Errno.EINVAL);
  t.equal(kstrtol10(Buffer.from('-9223372036854775808')), -(2n ** 63n));
  t.equal(await errnoOf(() => kstrtol10(Buffer.from('9223372036854775808'))), Errno.ERANGE);
  vf0.reset();
  t.equal(vf0.currentType, 0);
  t.equal(vf1.creatable(), vf0.creatable(), 'both free again');
});

t.test('the basic models: counter, pool, constant, exclusive', async (t) => {
  const virt = (capacity: Profile['parents'][0]['capacity'], types = [{ name: 'a', cost: 1, max: 2 }, { name: 'b', cost: 3, max: 1 }]): Profile => ({
    parents: [{ name: 'v', path: 'devices/virtual/v/v', class: 'v', mdevDriver: 'v', capacity, types }],
  });
  const c61 = setup(virt({ model: 'counter', max: 2, legacyErrno: 'EPERM' }));
  await c61.create('v-a');
  await c61.create('v-b');
  t.equal(await errnoOf(() => c61.create('v-a')), Errno.EUSERS, '6.1: the core counts');
  const c417 = setup(virt({ model: 'counter', max: 2, legacyErrno: 'EPERM' }), '4.17');
  await c417.create('v-a');
  await c417.create('v-a');
  t.equal(c417.avail('v-b'), 0);
  t.equal(await errnoOf(() => c417.create('v-b')), Errno.EPERM, '4.17: the vendor counts, with its errno');
  const pool = setup(virt({ model: 'pool', size: 4, errno: 'ENOSPC', legacyErrno: null }));
  await pool.create('v-b');
  t.same([pool.avail('v-a'), pool.avail('v-b')], [1, 0]);
  t.equal(await errnoOf(() => pool.create('v-b')), Errno.ENOSPC);
  const legacyPool = setup(virt({ model: 'pool', size: 4, errno: 'ENOSPC', legacyErrno: null }), '4.17');
  await legacyPool.create('v-b');
  await legacyPool.create('v-b');
  t.equal(legacyPool.avail('v-a'), -2, '4.17 without a legacy errno: not enforced, and reads negative');
  const constant = setup(virt({ model: 'constant', value: 3 }));
  await constant.create('v-a');
  t.same([constant.avail('v-a'), constant.avail('v-b')], [3, 3]);
  const ex = setup(virt({ model: 'exclusive', errno: 'EINVAL' }));
  await ex.create('v-a');
  t.same([ex.avail('v-a'), ex.avail('v-b')], [1, 0]);
  t.equal(await errnoOf(() => ex.create('v-b')), Errno.EINVAL);
  await ex.create('v-a');
  t.equal(await errnoOf(() => ex.create('v-a')), Errno.EINVAL, 'max per type');
  for (const dev of [...ex.core.devices.values()]) await ex.core.remove(dev);
  t.same([ex.avail('v-a'), ex.avail('v-b')], [2, 1], 'free again');
});

t.test('one AP configuration per profile', async (t) => {
  const m = AP.parents[0]!;
  const two: Profile = { parents: [m, { ...m, name: 'matrix2', path: 'devices/vfio_ap/matrix2' }] };
  t.match(profileProblems(JSON.parse(JSON.stringify(two))), ["parents[1].apHost: the AP configuration is parents[0]'s (a system has one AP bus)"]);
});
