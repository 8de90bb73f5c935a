import t from 'tap';
import { type Daemon, sh, startDaemon } from '../helpers/daemon';
import { execWith } from '../helpers/hw';

// s390 vfio-ccw (docs/hardware.md) through the mount: subchannel parents on css,
// type vfio_ccw-io without a description, one instance each (EUSERS in 6.1, EPERM in 4.17).
const S = 'devices/css0/0.0.0008';
const TYPE = `${S}/mdev_supported_types/vfio_ccw-io`;
const u = (n: number) => `cc000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

t.test('6.1: one instance per subchannel', async (t) => {
  const d: Daemon = await startDaemon({ profile: 'ccw' });
  t.teardown(() => d.stop());
  const run = (s: string) => sh(d.dir, s);
  t.equal(run('ls class/mdev_bus bus/css/devices').stdout, 'bus/css/devices:\n0.0.0008\n0.0.0009\n\nclass/mdev_bus:\n0.0.0008\n0.0.0009\n');
  t.equal(run(`ls ${TYPE}; cat ${TYPE}/name ${TYPE}/device_api ${TYPE}/available_instances; readlink ${S}/driver`).stdout,
    'available_instances\ncreate\ndevice_api\ndevices\nname\nI/O subchannel (Non-QDIO)\nvfio-ccw\n1\n../../../bus/css/drivers/vfio_ccw\n');
  t.equal(run(`echo ${u(1)} > ${TYPE}/create && cat ${TYPE}/available_instances`).stdout, '0\n');
  const second = run(`echo ${u(2)} > ${TYPE}/create`);
  t.match(second.stderr, /Too many users/, 'EUSERS');
  t.equal(run(`echo ${u(2)} > devices/css0/0.0.0009/mdev_supported_types/vfio_ccw-io/create && ls bus/mdev/devices`).stdout, `${u(1)}\n${u(2)}\n`, 'the other subchannel has its own');
  t.equal(run(`readlink ${S}/${u(1)}/driver ${S}/${u(1)}/mdev_type; ls ${S}/${u(1)}`).stdout,
    '../../../../bus/mdev/drivers/vfio_ccw_mdev\n../mdev_supported_types/vfio_ccw-io\ndriver\niommu_group\nmdev_type\npower\nremove\nsubsystem\nuevent\nvfio-dev\n',
    'no device attributes');
  t.equal(run(`echo 1 > ${S}/${u(1)}/remove && cat ${TYPE}/available_instances`).stdout, '1\n');
});

t.test('4.17: the vendor counter answers EPERM', async (t) => {
  const d = await startDaemon({ profile: 'ccw', abi: '4.17' });
  t.teardown(() => d.stop());
  t.equal(sh(d.dir, `echo ${u(1)} > ${TYPE}/create`).code, 0);
  t.match(sh(d.dir, `echo ${u(2)} > ${TYPE}/create`).stderr, /Operation not permitted/);
});

t.test('mdevctl types on ccw', async (t) => {
  const r = execWith('ccw', 'mdevctl', 'types');
  t.equal(r.stdout,
    '0.0.0008\n  vfio_ccw-io\n    Available instances: 1\n    Device API: vfio-ccw\n    Name: I/O subchannel (Non-QDIO)\n' +
    '0.0.0009\n  vfio_ccw-io\n    Available instances: 1\n    Device API: vfio-ccw\n    Name: I/O subchannel (Non-QDIO)\n\n', r.stderr);
});
