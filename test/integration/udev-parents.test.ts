import t from 'tap';
import { execWith } from '../helpers/hw';

// Debian's `udevadm info` of real-hardware parents and of an mdev on them, inside `mdevfs exec`
// (libudev reads the uevent files and links the way it does on a host): a PCI function with the
// kernel's PCI variables, vfio-ap's matrix device on its bus, a vfio-ccw subchannel on css.
const U = '3b3a6d7e-0000-4000-8000-000000000001';

function info(profile: string, parent: string, create?: string): string {
  const script = create
    ? `echo ${U} > ${parent}/mdev_supported_types/${create}/create || exit 9; udevadm info ${parent}; udevadm info /sys/bus/mdev/devices/${U}`
    : `udevadm info ${parent}`;
  const r = execWith(profile, 'bash', '-c', script);
  if (r.status !== 0 || r.stderr !== '') throw new Error(`${profile}: exit ${r.status}: ${r.stderr}`);
  return r.stdout;
}

t.test('a time-sliced NVIDIA GPU and a vGPU on it', async (t) => {
  const pf = '/devices/pci0000:00/0000:00:04.0';
  t.equal(
    info('nvidia-t4', `/sys${pf}`, 'nvidia-230'),
    [
      `P: ${pf}`, 'M: 0000:00:04.0', 'R: 0', 'U: pci', 'V: nvidia',
      `E: DEVPATH=${pf}`, 'E: SUBSYSTEM=pci', 'E: DRIVER=nvidia', 'E: PCI_CLASS=30200', 'E: PCI_ID=10DE:1EB8',
      'E: PCI_SUBSYS_ID=10DE:12A2', 'E: PCI_SLOT_NAME=0000:00:04.0', 'E: MODALIAS=pci:v000010DEd00001EB8sv000010DEsd000012A2bc03sc02i00', '',
      `P: ${pf}/${U}`, `M: ${U}`, 'R: 000000000001', 'U: mdev', 'V: nvidia-vgpu-vfio',
      `E: DEVPATH=${pf}/${U}`, 'E: SUBSYSTEM=mdev', 'E: DRIVER=nvidia-vgpu-vfio', '', '',
    ].join('\n'),
  );
});

t.test('the GVT-g function', async (t) => {
  t.match(info('gvt', '/sys/bus/pci/devices/0000:00:02.0'), 'E: DRIVER=i915\nE: PCI_CLASS=30000\nE: PCI_ID=8086:5912\n');
});

t.test("vfio-ap's matrix device and vfio-ccw's subchannel on their buses", async (t) => {
  t.equal(info('ap', '/sys/devices/vfio_ap/matrix'),
    'P: /devices/vfio_ap/matrix\nM: matrix\nU: matrix\nV: vfio_ap\nE: DEVPATH=/devices/vfio_ap/matrix\nE: SUBSYSTEM=matrix\nE: DRIVER=vfio_ap\n\n');
  t.equal(info('ccw', '/sys/bus/css/devices/0.0.0008'),
    'P: /devices/css0/0.0.0008\nM: 0.0.0008\nR: 0008\nU: css\nV: vfio_ccw\nE: DEVPATH=/devices/css0/0.0.0008\nE: SUBSYSTEM=css\nE: DRIVER=vfio_ccw\nE: ST=0\nE: MODALIAS=css:t0\n\n');
});
