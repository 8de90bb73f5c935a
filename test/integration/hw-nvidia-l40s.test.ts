import t from 'tap';
import { NVIDIA_L40S } from '../../src/drivers/builtin/nvidia';
import { daemonPerTest, sh } from '../helpers/daemon';
import { execWith, writeErrno } from '../helpers/hw';

// NVIDIA vendor-specific VFIO (docs/hardware.md) through the mount: no mdev at all;
// each VF bound to nvidia has nvidia/creatable_vgpu_types (recomputed on every read, header only
// once nothing fits) and nvidia/current_vgpu_type (a decimal id creates, 0 destroys, EPERM, EIO,
// EINVAL, ERANGE), all over one GPU with the same-size rule. This is how a test drives it: write
// ids to current_vgpu_type as vgpu-device-manager and Proxmox do, read creatable_vgpu_types back.
const PF = 'bus/pci/devices/0000:00:07.0';
const VF = (n: number) => `bus/pci/devices/0000:00:0${7 + Math.floor((4 + n) / 8)}.${(4 + n) % 8}`;
const HEADER = 'ID    : vGPU Name\n';
const ALL = [
  '1145  : NVIDIA L40S-1B', '1146  : NVIDIA L40S-2B', '1147  : NVIDIA L40S-1Q', '1148  : NVIDIA L40S-2Q', '1149  : NVIDIA L40S-3Q',
  '1150  : NVIDIA L40S-4Q', '1151  : NVIDIA L40S-6Q', '1152  : NVIDIA L40S-8Q', '1153  : NVIDIA L40S-12Q', '1154  : NVIDIA L40S-16Q',
  '1155  : NVIDIA L40S-24Q', '1156  : NVIDIA L40S-48Q', '1157  : NVIDIA L40S-1A', '1158  : NVIDIA L40S-2A', '1159  : NVIDIA L40S-3A',
  '1160  : NVIDIA L40S-4A', '1161  : NVIDIA L40S-6A', '1162  : NVIDIA L40S-8A', '1163  : NVIDIA L40S-12A', '1164  : NVIDIA L40S-16A',
  '1165  : NVIDIA L40S-24A', '1166  : NVIDIA L40S-48A',
].map((l) => `${l}\n`).join('');

// The built-in as a JSON profile file (pci.sriov.mdevOn "none" and vfAttrs).
const d = daemonPerTest({ profile: NVIDIA_L40S });
const run = (s: string) => sh(d.dir, s);
const out = (s: string) => run(s).stdout;
const creatable = (n: number) => out(`cat ${VF(n)}/nvidia/creatable_vgpu_types`);
/** Writes value (no newline, as vgpu-device-manager does) to current_vgpu_type; "ok" or the errno name. */
const setType = (n: number, value: string) => writeErrno(d.dir, `${VF(n)}/nvidia/current_vgpu_type`, `b${JSON.stringify(value)}`, ['O_TRUNC', 'O_SYNC']);

t.test('no mdev; the VFs carry nvidia/, the PF does not', async (t) => {
  t.equal(out('ls class/mdev_bus 2>/dev/null | wc -l; ls bus/mdev/drivers | wc -l'), '0\n0\n');
  t.equal(out(`cat ${PF}/sriov_totalvfs ${PF}/sriov_numvfs; readlink ${PF}/driver; test -e ${PF}/nvidia || echo no-nvidia`),
    '16\n16\n../../../bus/pci/drivers/nvidia\nno-nvidia\n');
  t.equal(out(`readlink ${VF(0)}/physfn ${VF(0)}/driver; cat ${VF(0)}/device; test -e ${VF(0)}/mdev_supported_types || echo no-types`),
    '../0000:00:07.0\n../../../bus/pci/drivers/nvidia\n0x26b9\nno-types\n');
  t.equal(out(`ls ${VF(0)}/nvidia; stat -c '%a' ${VF(0)}/nvidia/creatable_vgpu_types ${VF(0)}/nvidia/current_vgpu_type`),
    'creatable_vgpu_types\ncurrent_vgpu_type\n444\n644\n');
  t.equal(out(`ls ${VF(0)}/vfio-dev; readlink ${VF(0)}/vfio-dev/vfio0/device class/vfio-dev/vfio0; ls class/vfio-dev | wc -l; test -e ${PF}/vfio-dev || echo pf-none`),
    'vfio0\n../../../0000:00:07.4\n../../devices/pci0000:00/0000:00:07.4/vfio-dev/vfio0\n16\npf-none\n', 'each VF is a vfio-pci-core device');
  t.equal(creatable(0), HEADER + ALL, 'a fresh VF: every type');
  t.equal(out(`cat ${VF(15)}/nvidia/current_vgpu_type`), '0\n');
});

t.test('current_vgpu_type creates; the same-size rule spans the VFs; header only when nothing fits', async (t) => {
  t.equal(setType(0, '1148'), 'ok', 'L40S-2Q on VF 0 (no newline)');
  t.equal(out(`cat ${VF(0)}/nvidia/current_vgpu_type`), '1148\n');
  t.equal(creatable(0), HEADER, 'the VF holds a vGPU: header only');
  t.equal(creatable(1), HEADER + '1146  : NVIDIA L40S-2B\n1148  : NVIDIA L40S-2Q\n1158  : NVIDIA L40S-2A\n', 'siblings: 2 GB types only');
  t.equal(setType(1, '1147'), 'EIO', 'another size: the resource manager refuses');
  t.equal(setType(0, '1148'), 'EPERM', 'a vGPU already exists on the VF');
  t.equal(setType(1, '0'), 'EPERM', 'nothing to remove');
  t.equal(run(`echo 1158 > ${VF(1)}/nvidia/current_vgpu_type`).code, 0, 'echo with a newline');
  t.equal(out(`cat ${VF(1)}/nvidia/current_vgpu_type`), '1158\n');
});

t.test('kstrtol base 10: EINVAL and ERANGE, nothing changes', async (t) => {
  for (const bad of ['abc', '0x47c', '1148 ', ' 1148', '1148\n\n']) t.equal(setType(2, bad), 'EINVAL', JSON.stringify(bad));
  t.equal(setType(2, '99999999999999999999'), 'ERANGE');
  t.equal(setType(2, '-5'), 'EIO', 'a negative id parses and is no creatable type');
  t.equal(setType(2, '9999'), 'EIO', 'an unknown id');
  t.equal(out(`cat ${VF(2)}/nvidia/current_vgpu_type`), '0\n');
});

t.test('0 destroys; a full GPU leaves every VF with the header', async (t) => {
  t.equal(setType(0, '1148'), 'ok', 'L40S-2Q on VF 0');
  t.equal(setType(1, '1158'), 'ok', 'L40S-2A on VF 1');
  t.equal(setType(0, '0'), 'ok');
  t.equal(setType(1, '0'), 'ok');
  t.equal(creatable(0), HEADER + ALL, 'all back');
  t.equal(setType(0, '1155'), 'ok', 'L40S-24Q');
  t.equal(setType(1, '1165'), 'ok', 'L40S-24A: the GPU is full');
  t.equal(out(`for n in 2 3 15; do cat ${VF(2)}/nvidia/creatable_vgpu_types; done`).split(HEADER).join('|'), '|||');
  t.equal(out(`cat ${VF(15)}/nvidia/creatable_vgpu_types`), HEADER);
  t.equal(setType(15, '1155'), 'EIO', 'max_instance (2) reached');
});

t.test('unbinding a VF from nvidia takes nvidia/ and its vGPU away', async (t) => {
  t.equal(setType(0, '1155'), 'ok', 'L40S-24Q on VF 0');
  t.equal(setType(1, '1165'), 'ok', 'L40S-24A on VF 1: the GPU is full');
  t.equal(creatable(2), HEADER);
  t.equal(run(`echo 0000:00:07.4 > bus/pci/drivers/nvidia/unbind`).code, 0);
  t.equal(out(`test -e ${VF(0)}/nvidia || echo gone; test -e ${VF(0)}/driver || echo unbound; test -e ${VF(0)}/vfio-dev || echo no-vfio; test -e class/vfio-dev/vfio0 || echo no-class-link`),
    'gone\nunbound\nno-vfio\nno-class-link\n');
  t.equal(creatable(2), HEADER + '1155  : NVIDIA L40S-24Q\n1165  : NVIDIA L40S-24A\n', 'its 24 GB went back to the GPU');
  t.equal(run(`echo 0000:00:07.4 > bus/pci/drivers/nvidia/bind`).code, 0);
  t.equal(out(`cat ${VF(0)}/nvidia/current_vgpu_type; ls ${VF(0)}/vfio-dev`), '0\nvfio0\n', 'bound again: registered again');
});

t.test('mdevctl types on nvidia-l40s: nothing (no mdev parent)', async (t) => {
  const r = execWith('nvidia-l40s', 'mdevctl', 'types');
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout.trim(), '');
});
