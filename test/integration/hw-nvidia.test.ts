import t from 'tap';
import { daemonPerTest, sh } from '../helpers/daemon';
import { execWith, writeErrno } from '../helpers/hw';
import { NVIDIA_T4 } from '../../src/drivers/builtin/nvidia';

// NVIDIA time-sliced vGPU on a PCI function (docs/hardware.md) through the mount:
// the branch's type ids, exact name/description, the same-framebuffer rule, EIO, nvidia/ attributes.
const BDF = '0000:00:04.0';
const TYPES = `class/mdev_bus/${BDF}/mdev_supported_types`;
const U1 = 'a5b9a0d4-5a84-4bd7-9e0e-3c1d1b2f0001';
const U2 = 'a5b9a0d4-5a84-4bd7-9e0e-3c1d1b2f0002';

// The built-in as a JSON profile file: everything it does, a file can declare.
const d = daemonPerTest({ profile: NVIDIA_T4 });
const run = (s: string) => sh(d.dir, s);
const out = (s: string) => run(s).stdout;
const avail = () => out(`cd ${TYPES} && for t in *; do echo "$t $(cat $t/available_instances)"; done`);

t.test('the T4 types of driver branch 510', async (t) => {
  t.equal(out('ls class/mdev_bus'), `${BDF}\n`);
  t.equal(out(`ls ${TYPES} | tr '\\n' ' '`),
    'nvidia-222 nvidia-223 nvidia-224 nvidia-225 nvidia-226 nvidia-227 nvidia-228 nvidia-229 nvidia-230 nvidia-231 nvidia-232 nvidia-233 nvidia-234 nvidia-252 nvidia-319 nvidia-320 nvidia-321 ');
  t.equal(out(`cd ${TYPES}/nvidia-230 && cat name description device_api available_instances && ls`),
    'GRID T4-1Q\nnum_heads=4, frl_config=60, framebuffer=1024M, max_resolution=5120x2880, max_instance=16\nvfio-pci\n16\n' +
    'available_instances\ncreate\ndescription\ndevice_api\ndevices\nname\n');
  t.equal(out(`cat ${TYPES}/nvidia-321/name ${TYPES}/nvidia-321/description`),
    'GRID T4-16C\nnum_heads=1, frl_config=60, framebuffer=16384M, max_resolution=4096x2160, max_instance=1\n');
  t.equal(out(`wc -l < ${TYPES}/nvidia-224/description`), '1\n', 'one line, one trailing newline');
  t.equal(out(`readlink bus/pci/devices/${BDF}/driver; cat bus/pci/devices/${BDF}/vendor bus/pci/devices/${BDF}/device`),
    '../../../bus/pci/drivers/nvidia\n0x10de\n0x1eb8\n');
});

t.test('after the first vGPU only the same framebuffer size stays available; others fail EIO', async (t) => {
  t.equal(run(`echo ${U1} > ${TYPES}/nvidia-231/create`).code, 0, 'T4-2Q');
  const after = avail();
  t.equal(after,
    ['222 0', '223 7', '224 7', '225 0', '226 7', '227 0', '228 0', '229 0', '230 0', '231 7', '232 0', '233 0', '234 0', '252 0', '319 0', '320 0', '321 0']
      .map((l) => `nvidia-${l}\n`).join(''), '2B, 2B4, 2A and 2Q: 8 - 1; every other size 0');
  const r = run(`echo ${U2} > ${TYPES}/nvidia-230/create`);
  t.equal(r.code, 1);
  t.match(r.stderr, /Input\/output error/, 'the resource manager refuses: EIO');
  t.equal(writeErrno(d.dir, `${TYPES}/nvidia-234/create`, `b'${U2}'`), 'EIO', 'as go-nvlib writes it');
  t.equal(avail(), after, 'failed creates changed nothing');
  t.equal(out(`ls bus/mdev/devices`), `${U1}\n`);
  t.equal(run(`echo ${U2} > ${TYPES}/nvidia-223/create`).code, 0, '2B beside 2Q');
  t.equal(out(`cat ${TYPES}/nvidia-231/available_instances`), '6\n');
});

t.test('the mdev: driver nvidia-vgpu-vfio and the nvidia/ group', async (t) => {
  t.equal(run(`echo ${U1} > ${TYPES}/nvidia-231/create`).code, 0, 'T4-2Q');
  const dev = `bus/mdev/devices/${U1}`;
  t.equal(out(`readlink ${dev}/driver; ls ${dev}/nvidia; stat -c '%A %n' ${dev}/nvidia/*`),
    '../../../../bus/mdev/drivers/nvidia-vgpu-vfio\nvgpu_params\nvm_name\n' +
    `-rw-r--r-- ${dev}/nvidia/vgpu_params\n-r--r--r-- ${dev}/nvidia/vm_name\n`);
  t.equal(out(`cat ${dev}/nvidia/vgpu_params ${dev}/nvidia/vm_name`), '\n\n', 'empty until set; no VM');
  t.equal(run(`echo frame_rate_limiter=0 > ${dev}/nvidia/vgpu_params`).code, 0);
  t.equal(out(`cat ${dev}/nvidia/vgpu_params`), 'frame_rate_limiter=0\n');
  t.equal(run(`printf loglevel=5 > ${dev}/nvidia/vgpu_params`).code, 0);
  t.equal(out(`cat ${dev}/nvidia/vgpu_params`), 'loglevel=\n', 'snprintf(count): the last byte of a write without newline is lost');
  t.equal(writeErrno(d.dir, `${dev}/nvidia/vgpu_params`, "b'x' * 1025"), 'E2BIG');
  t.equal(out(`cat ${dev}/nvidia/vgpu_params`), 'loglevel=\n', 'E2BIG changed nothing');
  t.equal(run(`echo x > ${dev}/nvidia/vm_name`).code, 1, 'vm_name is read-only');
});

t.test('removing every vGPU brings every type back to max_instance', async (t) => {
  t.equal(run(`echo ${U1} > ${TYPES}/nvidia-231/create && echo ${U2} > ${TYPES}/nvidia-223/create`).code, 0, 'T4-2Q and T4-2B');
  t.equal(out(`cat ${TYPES}/nvidia-230/available_instances ${TYPES}/nvidia-234/available_instances ${TYPES}/nvidia-319/available_instances`),
    '0\n0\n0\n', 'only 2 GB types while they exist');
  t.equal(run(`echo 1 > bus/mdev/devices/${U1}/remove && echo 1 > bus/mdev/devices/${U2}/remove`).code, 0);
  t.equal(out(`cat ${TYPES}/nvidia-230/available_instances ${TYPES}/nvidia-234/available_instances ${TYPES}/nvidia-319/available_instances`),
    '16\n1\n4\n');
});

// The V100's type list as a real host shows it (openstack/charm-guide doc/source/admin/vgpu.rst), read with mdevctl.
const APPENDIX_A = `
nvidia-105, GRID V100-1Q, num_heads=4, frl_config=60, framebuffer=1024M, max_resolution=5120x2880, max_instance=16
nvidia-106, GRID V100-2Q, num_heads=4, frl_config=60, framebuffer=2048M, max_resolution=7680x4320, max_instance=8
nvidia-107, GRID V100-4Q, num_heads=4, frl_config=60, framebuffer=4096M, max_resolution=7680x4320, max_instance=4
nvidia-108, GRID V100-8Q, num_heads=4, frl_config=60, framebuffer=8192M, max_resolution=7680x4320, max_instance=2
nvidia-109, GRID V100-16Q, num_heads=4, frl_config=60, framebuffer=16384M, max_resolution=7680x4320, max_instance=1
nvidia-110, GRID V100-1A, num_heads=1, frl_config=60, framebuffer=1024M, max_resolution=1280x1024, max_instance=16
nvidia-111, GRID V100-2A, num_heads=1, frl_config=60, framebuffer=2048M, max_resolution=1280x1024, max_instance=8
nvidia-112, GRID V100-4A, num_heads=1, frl_config=60, framebuffer=4096M, max_resolution=1280x1024, max_instance=4
nvidia-113, GRID V100-8A, num_heads=1, frl_config=60, framebuffer=8192M, max_resolution=1280x1024, max_instance=2
nvidia-114, GRID V100-16A, num_heads=1, frl_config=60, framebuffer=16384M, max_resolution=1280x1024, max_instance=1
nvidia-115, GRID V100-1B, num_heads=4, frl_config=45, framebuffer=1024M, max_resolution=5120x2880, max_instance=16
nvidia-163, GRID V100-2B, num_heads=4, frl_config=45, framebuffer=2048M, max_resolution=5120x2880, max_instance=8
nvidia-217, GRID V100-2B4, num_heads=4, frl_config=45, framebuffer=2048M, max_resolution=5120x2880, max_instance=8
nvidia-247, GRID V100-1B4, num_heads=4, frl_config=45, framebuffer=1024M, max_resolution=5120x2880, max_instance=16
nvidia-299, GRID V100-4C, num_heads=1, frl_config=60, framebuffer=4096M, max_resolution=4096x2160, max_instance=4
nvidia-300, GRID V100-8C, num_heads=1, frl_config=60, framebuffer=8192M, max_resolution=4096x2160, max_instance=2
nvidia-301, GRID V100-16C, num_heads=1, frl_config=60, framebuffer=16384M, max_resolution=4096x2160, max_instance=1
`.trim();

function mdevctlTypes(profile: string): string {
  const r = execWith(profile, 'mdevctl', 'types');
  if (r.status !== 0) throw new Error(`mdevctl types: ${r.status} ${r.stderr}`);
  return r.stdout;
}

t.test("mdevctl types on nvidia-v100 lists the charm guide's V100 types", async (t) => {
  const text = mdevctlTypes('nvidia-v100');
  t.match(text, /^0000:00:05\.0\n/);
  const rows: string[] = [];
  for (const m of text.matchAll(/ {2}(nvidia-\d+)\n {4}Available instances: (\d+)\n {4}Device API: (\S+)\n {4}Name: (.*)\n {4}Description: (.*)\n/g)) {
    t.equal(m[3], 'vfio-pci');
    t.equal(m[2], /max_instance=(\d+)/.exec(m[5]!)![1], `${m[1]}: a fresh GPU offers max_instance`);
    rows.push(`${m[1]}, ${m[4]}, ${m[5]}`);
  }
  t.equal(rows.join('\n'), APPENDIX_A);
});

t.test('mdevctl types on nvidia-t4', async (t) => {
  const text = mdevctlTypes('nvidia-t4');
  t.match(text, /  nvidia-230\n    Available instances: 16\n    Device API: vfio-pci\n    Name: GRID T4-1Q\n    Description: num_heads=4, frl_config=60, framebuffer=1024M, max_resolution=5120x2880, max_instance=16\n/);
  t.equal(text.match(/ {2}nvidia-\d+\n/g)?.length, 17);
});
