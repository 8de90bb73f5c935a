import t from 'tap';
import { daemonPerTest, sh } from '../helpers/daemon';
import { execWith } from '../helpers/hw';

// NVIDIA mdev on SR-IOV VFs (docs/hardware.md) through the mount: every VF
// is a parent with the whole A10 type list reading 1 or 0, the PF is none, and the GPU-wide rule
// (numCreatedVgpu < max_instance, same framebuffer size) holds across VFs.
const PF = '0000:00:06.0';
const VF = (n: number) => `0000:00:0${6 + Math.floor((4 + n) / 8)}.${(4 + n) % 8}`;
const types = (vf: string) => `bus/pci/devices/${vf}/mdev_supported_types`;
const u = (n: number) => `a1000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

const d = daemonPerTest({ profile: 'nvidia-a10' });
const run = (s: string) => sh(d.dir, s);
/** The types of a VF that read non-zero, as "<id>=<n>". */
const open = (vf: string) =>
  run(`cd ${types(vf)} && for t in *; do n=$(cat $t/available_instances); [ $n = 0 ] || echo -n "\${t#nvidia-}=$n "; done`).stdout.trim();

t.test('the VFs are the parents, the PF is none', async (t) => {
  t.equal(run('ls class/mdev_bus | wc -l; ls class/mdev_bus | head -2').stdout, `24\n${VF(0)}\n${VF(1)}\n`);
  t.equal(run(`test -e bus/pci/devices/${PF}/mdev_supported_types`).code, 1, 'the PF has no mdev_supported_types');
  t.equal(run(`cat bus/pci/devices/${PF}/sriov_totalvfs bus/pci/devices/${PF}/sriov_numvfs`).stdout, '24\n24\n');
  t.equal(run(`readlink bus/pci/devices/${VF(0)}/physfn bus/pci/devices/${PF}/virtfn0; cat ${types(VF(0))}/nvidia-596/name ${types(VF(0))}/nvidia-596/description`).stdout,
    `../${PF}\n../${VF(0)}\nNVIDIA A10-12Q\nnum_heads=4, frl_config=60, framebuffer=12288M, max_resolution=7680x4320, max_instance=2\n`);
  t.equal(run(`ls ${types(VF(23))} | wc -l`).stdout, '23\n', 'every VF lists every type');
  t.equal(open(VF(5)), '588=1 589=1 590=1 591=1 592=1 593=1 594=1 595=1 596=1 597=1 598=1 599=1 600=1 601=1 602=1 603=1 604=1 605=1 610=1 611=1 612=1 613=1 614=1',
    'a free VF of an empty GPU: 1 for everything');
});

t.test('one vGPU per VF; the same size and max_instance across the GPU', async (t) => {
  t.equal(run(`echo ${u(1)} > ${types(VF(0))}/nvidia-596/create`).code, 0, 'A10-12Q on VF 0');
  t.equal(open(VF(0)), '', 'the VF holding a vGPU offers nothing');
  t.equal(open(VF(1)), '596=1 604=1 613=1', 'siblings: only the 12 GB types (12Q, 12A, 12C)');
  t.match(run(`echo ${u(2)} > ${types(VF(0))}/nvidia-596/create`).stderr, /Input\/output error/, 'a second vGPU on VF 0: EIO');
  t.match(run(`echo ${u(2)} > ${types(VF(1))}/nvidia-590/create`).stderr, /Input\/output error/, 'another size: EIO');
  t.equal(run(`echo ${u(2)} > ${types(VF(1))}/nvidia-613/create`).code, 0, '12C beside 12Q');
  t.equal(open(VF(2)), '', 'the GPU holds max_instance (2) 12 GB vGPUs: every VF reads 0');
  t.match(run(`echo ${u(3)} > ${types(VF(2))}/nvidia-596/create`).stderr, /Input\/output error/);
  t.equal(run(`readlink bus/mdev/devices/${u(2)}; ls bus/mdev/devices/${u(2)}/nvidia`).stdout,
    `../../../devices/pci0000:00/${VF(1)}/${u(2)}\nvgpu_params\nvm_name\n`);
  t.equal(run(`echo 1 > bus/mdev/devices/${u(1)}/remove && echo 1 > bus/mdev/devices/${u(2)}/remove`).code, 0);
  t.equal(open(VF(0)).split(' ').length, 23, 'all back');
});

t.test('mdevctl types on nvidia-a10', async (t) => {
  const r = execWith('nvidia-a10', 'mdevctl', 'types');
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout.match(/^0000:\S+$/gm)?.length, 24, 'one parent per VF');
  t.notMatch(r.stdout, new RegExp(`^${PF}$`, 'm'), 'not the PF');
  t.match(r.stdout, `${VF(0)}\n  nvidia-588\n    Available instances: 1\n    Device API: vfio-pci\n    Name: NVIDIA A10-1B\n` +
    '    Description: num_heads=4, frl_config=45, framebuffer=1024M, max_resolution=5120x2880, max_instance=24\n');
});
