import t from 'tap';
import { sh, startDaemon } from '../helpers/daemon';

// A bound mdev's VFIO group as sysfs shows the character device /dev/vfio/<group>
// (vfio_create_group: class "vfio", named by the IOMMU group, major 253 on the real 6.1 kernel
// of test/events/), through the mount: there while the device is bound, gone with its unbind
// or removal, and devices/virtual/vfio gone with the last one.

const U1 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const U2 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1002';
const MT = 'class/mdev_bus/mtty/mdev_supported_types/mtty-1';

t.test("devices/virtual's link count follows the glue directory, through the kernel's attribute cache", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.stop());
  const nlink = (script = '') => sh(d.dir, `${script} stat -c %h devices/virtual`).stdout.trim();
  const before = Number(nlink());
  t.equal(Number(nlink(`echo ${U1} > ${MT}/create &&`)), before + 1, 'the first group brings devices/virtual/vfio');
  t.equal(Number(nlink(`echo ${U2} > ${MT}/create &&`)), before + 1, 'a second one does not');
  t.equal(Number(nlink(`echo 1 > bus/mdev/devices/${U1}/remove &&`)), before + 1);
  t.equal(Number(nlink(`echo 1 > bus/mdev/devices/${U2}/remove &&`)), before, 'the last one takes it away');
});

t.test('devices/virtual/vfio/N and class/vfio/N follow the bound mdevs', async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.stop());
  const r = sh(
    d.dir,
    `ls class/vfio | wc -l; test -e devices/virtual/vfio || echo no-glue-dir
     echo ${U1} > ${MT}/create && echo ${U2} > ${MT}/create
     ls class/vfio | tr '\\n' ' '; echo; readlink class/vfio/1
     ls devices/virtual/vfio/0 | tr '\\n' ' '; echo
     cat devices/virtual/vfio/1/dev devices/virtual/vfio/1/uevent; readlink devices/virtual/vfio/1/subsystem
     stat -c '%A' devices/virtual/vfio/1/dev devices/virtual/vfio/1/uevent
     echo ${U1} > bus/mdev/drivers/mtty/unbind && echo "$(ls class/vfio) $(ls devices/virtual/vfio)"
     echo 1 > bus/mdev/devices/${U2}/remove && ls class/vfio | wc -l; test -e devices/virtual/vfio || echo no-glue-dir
     echo 1 > bus/mdev/devices/${U1}/remove && echo ${U2} > ${MT}/create && ls devices/virtual/vfio && cat devices/virtual/vfio/*/uevent`,
  );
  t.equal(r.code, 0, r.stderr);
  t.equal(
    r.stdout,
    [
      '0',
      'no-glue-dir',
      '0 1 ',
      '../../devices/virtual/vfio/1',
      'dev power subsystem uevent ',
      '253:1',
      'MAJOR=253',
      'MINOR=1',
      'DEVNAME=vfio/1',
      '../../../../class/vfio',
      '-r--r--r--',
      '-rw-r--r--',
      '1 1',
      '0',
      'no-glue-dir',
      // A new device: the lowest free group and minor again, as the kernel's idas give them.
      '0',
      'MAJOR=253',
      'MINOR=0',
      'DEVNAME=vfio/0',
      '',
    ].join('\n'),
  );
});
