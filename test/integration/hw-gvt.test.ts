import t from 'tap';
import { GVT_PARENT } from '../../src/drivers/builtin/gvt';
import { type Daemon, sh, startDaemon } from '../helpers/daemon';
import { execWith } from '../helpers/hw';

// Intel GVT-g made exact (docs/hardware.md) through the mount: the aperture decides
// which types exist, one low/high GM and fence pool with ENOSPC, the five-line description,
// `name` only in 6.1, intel_vgpu/vgpu_id on devices.
const TYPES = 'bus/pci/devices/0000:00:02.0/mdev_supported_types';
const u = (n: number) => `6c1b9b5e-0000-4000-8000-${String(n).padStart(12, '0')}`;
const avail = (d: Daemon) => sh(d.dir, `for t in ${TYPES}/*; do echo "\${t##*/} $(cat $t/available_instances)"; done`).stdout;

t.test('1024 MB aperture: four types, one pool, ENOSPC, vgpu ids', async (t) => {
  const d = await startDaemon({ profile: 'gvt' });
  t.teardown(() => d.stop());
  const run = (s: string) => sh(d.dir, s);
  t.equal(avail(d), 'i915-GVTg_V5_1 1\ni915-GVTg_V5_2 2\ni915-GVTg_V5_4 5\ni915-GVTg_V5_8 7\n', 'the PhyllomeOS capture');
  t.equal(run(`cat ${TYPES}/i915-GVTg_V5_8/description ${TYPES}/i915-GVTg_V5_8/name ${TYPES}/i915-GVTg_V5_8/device_api`).stdout,
    'low_gm_size: 64MB\nhigh_gm_size: 384MB\nfence: 4\nresolution: 1024x768\nweight: 2\nGVTg_V5_8\nvfio-pci\n');
  t.equal(run(`echo ${u(1)} > ${TYPES}/i915-GVTg_V5_4/create`).code, 0);
  t.equal(avail(d), 'i915-GVTg_V5_1 1\ni915-GVTg_V5_2 2\ni915-GVTg_V5_4 4\ni915-GVTg_V5_8 5\n', 'every type draws on the same pool');
  t.equal(run(`echo ${u(2)} > ${TYPES}/i915-GVTg_V5_1/create`).code, 0);
  t.equal(avail(d), 'i915-GVTg_V5_1 0\ni915-GVTg_V5_2 0\ni915-GVTg_V5_4 0\ni915-GVTg_V5_8 0\n', 'high GM is used up');
  const full = run(`echo ${u(3)} > ${TYPES}/i915-GVTg_V5_8/create`);
  t.equal(full.code, 1);
  t.match(full.stderr, /No space left on device/);
  t.equal(run(`cat bus/mdev/devices/${u(1)}/intel_vgpu/vgpu_id bus/mdev/devices/${u(2)}/intel_vgpu/vgpu_id; stat -c %A bus/mdev/devices/${u(1)}/intel_vgpu/vgpu_id`).stdout,
    '1\n2\n-r--r--r--\n');
  t.equal(run(`echo 1 > bus/mdev/devices/${u(1)}/remove && echo ${u(4)} > ${TYPES}/i915-GVTg_V5_8/create && cat bus/mdev/devices/${u(4)}/intel_vgpu/vgpu_id`).stdout,
    '1\n', 'the lowest free id again');
  t.equal(run(`readlink bus/mdev/devices/${u(4)}/driver`).stdout, '../../../../bus/mdev/drivers/intel_vgpu_mdev\n');
});

t.test('256 MB aperture (a profile option): only V5_8 and V5_4, as intel/gvt-linux#122', async (t) => {
  const d = await startDaemon({ profile: { parents: [{ ...GVT_PARENT, capacity: { model: 'gvt', apertureMb: 256 } }] } });
  t.teardown(() => d.stop());
  t.equal(avail(d), 'i915-GVTg_V5_4 1\ni915-GVTg_V5_8 2\n');
  t.equal(sh(d.dir, `echo ${u(1)} > ${TYPES}/i915-GVTg_V5_8/create`).code, 0);
  const r = sh(d.dir, `echo ${u(2)} > ${TYPES}/i915-GVTg_V5_4/create`);
  t.match(r.stderr, /No space left on device/, 'one V5_8 leaves no room for a V5_4');
  t.equal(avail(d), 'i915-GVTg_V5_4 0\ni915-GVTg_V5_8 1\n');
});

t.test('4.17: no name file, driver vfio_mdev, the same pool', async (t) => {
  const d = await startDaemon({ profile: 'gvt', abi: '4.17' });
  t.teardown(() => d.stop());
  t.equal(sh(d.dir, `ls ${TYPES}/i915-GVTg_V5_4`).stdout, 'available_instances\ncreate\ndescription\ndevice_api\ndevices\n');
  t.equal(sh(d.dir, `echo ${u(1)} > ${TYPES}/i915-GVTg_V5_4/create && readlink bus/mdev/devices/${u(1)}/driver && cat bus/mdev/devices/${u(1)}/intel_vgpu/vgpu_id`).stdout,
    '../../../../bus/mdev/drivers/vfio_mdev\n1\n');
  t.equal(avail(d), 'i915-GVTg_V5_1 1\ni915-GVTg_V5_2 2\ni915-GVTg_V5_4 4\ni915-GVTg_V5_8 5\n');
});

t.test('mdevctl types on gvt', async (t) => {
  const r = execWith('gvt', 'mdevctl', 'types');
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, '  i915-GVTg_V5_4\n    Available instances: 5\n    Device API: vfio-pci\n    Name: GVTg_V5_4\n' +
    '    Description: low_gm_size: 128MB, high_gm_size: 512MB, fence: 4, resolution: 1920x1200, weight: 4\n');
  t.equal(r.stdout.match(/^ {2}i915-GVTg_V5_\d$/gm)?.join(' '), '  i915-GVTg_V5_1   i915-GVTg_V5_2   i915-GVTg_V5_4   i915-GVTg_V5_8');
});
