import t from 'tap';
import { daemonPerTest, sh } from '../helpers/daemon';

const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const MT = 'class/mdev_bus/mtty/mdev_supported_types';
const d = daemonPerTest();
const run = (script: string) => sh(d.dir, script);

t.test('the root plays /sys and the parents are linked from class/mdev_bus', async (t) => {
  t.equal(run('ls').stdout, 'bus\nclass\ndevices\nkernel\nmodule\n');
  t.equal(
    run('for p in class/mdev_bus/*; do echo "$p -> $(readlink $p)"; done').stdout,
    'class/mdev_bus/mbochs -> ../../devices/virtual/mbochs/mbochs\n' +
      'class/mdev_bus/mdpy -> ../../devices/virtual/mdpy/mdpy\n' +
      'class/mdev_bus/mtty -> ../../devices/virtual/mtty/mtty\n',
  );
  t.equal(run('ls devices/virtual/mtty/mtty').stdout, 'mdev_supported_types\npower\nsubsystem\nuevent\n');
  t.equal(run('readlink devices/virtual/mtty/mtty/subsystem').stdout, '../../../../class/mtty\n');
  t.equal(run('ls bus/mdev bus/mdev/drivers/mtty').stdout,
    'bus/mdev:\ndevices\ndrivers\ndrivers_autoprobe\ndrivers_probe\nuevent\n\nbus/mdev/drivers/mtty:\nbind\nmodule\nuevent\nunbind\n');
  t.equal(run('readlink bus/mdev/drivers/mtty/module').stdout, '../../../../module/mtty\n');
});

t.test('type directories: files, modes, exact contents of the sample drivers', async (t) => {
  const listing = run(`for p in class/mdev_bus/*; do for ty in $p/mdev_supported_types/*; do
      echo "== $(basename $ty): $(ls $ty | tr '\\n' ' ')"
      for a in available_instances name device_api description; do if [ -f $ty/$a ]; then printf '%s=%s\\n' $a "$(cat $ty/$a)"; fi; done
    done; done`);
  t.equal(listing.code, 0);
  t.equal(
    listing.stdout,
    [
      '== mbochs-large: available_instances create description device_api devices name ',
      'available_instances=4', 'name=mbochs-large', 'device_api=vfio-pci', 'description=virtual display, 64 MB video memory',
      '== mbochs-medium: available_instances create description device_api devices name ',
      'available_instances=16', 'name=mbochs-medium', 'device_api=vfio-pci', 'description=virtual display, 16 MB video memory',
      '== mbochs-small: available_instances create description device_api devices name ',
      'available_instances=64', 'name=mbochs-small', 'device_api=vfio-pci', 'description=virtual display, 4 MB video memory',
      '== mdpy-hd: available_instances create description device_api devices name ',
      'available_instances=4', 'name=mdpy-hd', 'device_api=vfio-pci', 'description=virtual display, 1920x1080 framebuffer',
      '== mdpy-vga: available_instances create description device_api devices name ',
      'available_instances=4', 'name=mdpy-vga', 'device_api=vfio-pci', 'description=virtual display, 640x480 framebuffer',
      '== mdpy-xga: available_instances create description device_api devices name ',
      'available_instances=4', 'name=mdpy-xga', 'device_api=vfio-pci', 'description=virtual display, 1024x768 framebuffer',
      '== mtty-1: available_instances create device_api devices name ',
      'available_instances=24', 'name=Single port serial', 'device_api=vfio-pci',
      '== mtty-2: available_instances create device_api devices name ',
      'available_instances=12', 'name=Dual port serial', 'device_api=vfio-pci',
      '',
    ].join('\n'),
  );
  t.equal(
    run(`stat -c '%A %U:%G size=%s blocks=%b %F %n' ${MT}/mtty-2/* ${MT}/mtty-2 ${MT}`).stdout,
    [
      `-r--r--r-- root:root size=4096 blocks=0 regular file ${MT}/mtty-2/available_instances`,
      `--w------- root:root size=4096 blocks=0 regular file ${MT}/mtty-2/create`,
      `-r--r--r-- root:root size=4096 blocks=0 regular file ${MT}/mtty-2/device_api`,
      `drwxr-xr-x root:root size=0 blocks=0 directory ${MT}/mtty-2/devices`,
      `-r--r--r-- root:root size=4096 blocks=0 regular file ${MT}/mtty-2/name`,
      `drwxr-xr-x root:root size=0 blocks=0 directory ${MT}/mtty-2`,
      `drwxr-xr-x root:root size=0 blocks=0 directory ${MT}`,
      '',
    ].join('\n'),
  );
});

t.test('a created device: directory, links with the kernel relative targets, attributes', async (t) => {
  t.equal(run(`echo ${U} > ${MT}/mtty-2/create`).code, 0);
  const D = `devices/virtual/mtty/mtty/${U}`;
  t.equal(run(`ls ${D}`).stdout, 'driver\niommu_group\nmdev_type\npower\nremove\nsubsystem\nuevent\nvendor\nvfio-dev\n');
  t.equal(
    run(`for l in mdev_type driver iommu_group subsystem; do echo "$l -> $(readlink ${D}/$l)"; done`).stdout,
    'mdev_type -> ../mdev_supported_types/mtty-2\n' +
      'driver -> ../../../../../bus/mdev/drivers/mtty\n' +
      'iommu_group -> ../../../../../kernel/iommu_groups/0\n' +
      'subsystem -> ../../../../../bus/mdev\n',
  );
  t.equal(run(`readlink bus/mdev/devices/${U}`).stdout, `../../../devices/virtual/mtty/mtty/${U}\n`);
  t.equal(run(`readlink ${MT}/mtty-2/devices/${U}`).stdout, `../../../${U}\n`);
  t.equal(run(`readlink bus/mdev/drivers/mtty/${U}`).stdout, `../../../../devices/virtual/mtty/mtty/${U}\n`);
  t.equal(run(`readlink kernel/iommu_groups/0/devices/${U}`).stdout, `../../../../devices/virtual/mtty/mtty/${U}\n`);
  t.equal(run(`cd bus/mdev/devices/${U} && pwd -P`).stdout, `${d.dir}/${D}\n`, 'the bus link resolves to the device');
  t.equal(run(`basename $(readlink -f bus/mdev/devices/${U}/mdev_type)`).stdout, 'mtty-2\n');
  t.equal(run(`cat ${D}/uevent ${D}/vendor/sample_mdev_dev`).stdout, `DRIVER=mtty\nThis is MDEV ${U}\n`);
  t.equal(
    run(`stat -c '%A %s %F %n' ${D}/remove ${D}/uevent ${D}/mdev_type ${D}/vendor ${D}`).stdout,
    `--w------- 4096 regular file ${D}/remove\n-rw-r--r-- 4096 regular file ${D}/uevent\n` +
      `lrwxrwxrwx 0 symbolic link ${D}/mdev_type\ndrwxr-xr-x 0 directory ${D}/vendor\ndrwxr-xr-x 0 directory ${D}\n`,
  );
  t.equal(run(`stat -c '%h' ${D}`).stdout, '5\n', 'nlink counts subdirectories as sysfs does');
  t.equal(
    run(`grep -r . ${D}/power/ 2>&1 | sort`).stdout,
    [
      `${D}/power/async:disabled`,
      `${D}/power/control:auto`,
      `${D}/power/runtime_active_kids:0`,
      `${D}/power/runtime_active_time:0`,
      `${D}/power/runtime_enabled:disabled`,
      `${D}/power/runtime_status:unsupported`,
      `${D}/power/runtime_suspended_time:0`,
      `${D}/power/runtime_usage:0`,
      `grep: ${D}/power/autosuspend_delay_ms: Input/output error`,
      '',
    ].join('\n'),
  );
  t.equal(run(`cat ${MT}/mtty-1/available_instances ${MT}/mtty-2/available_instances`).stdout, '22\n11\n');
});

const A = '11111111-0000-0000-0000-000000000001';
const B = '22222222-0000-0000-0000-000000000001';
const createAB = `echo ${A} > class/mdev_bus/mdpy/mdev_supported_types/mdpy-vga/create && echo ${B} > class/mdev_bus/mbochs/mdev_supported_types/mbochs-large/create`;

t.test('mdpy and mbochs devices carry their vendor attributes', async (t) => {
  t.equal(run(createAB).code, 0);
  t.equal(
    run(`grep -r . bus/mdev/devices/${A}/vendor/ bus/mdev/devices/${A}/uevent bus/mdev/devices/${B}/vendor/ bus/mdev/devices/${B}/uevent`).stdout,
    `bus/mdev/devices/${A}/vendor/resolution:640x480\nbus/mdev/devices/${A}/uevent:DRIVER=mdpy\n` +
      `bus/mdev/devices/${B}/vendor/memory:64 MB\nbus/mdev/devices/${B}/uevent:DRIVER=mbochs\n`,
  );
  t.equal(run(`readlink bus/mdev/devices/${A}/iommu_group bus/mdev/devices/${B}/iommu_group`).stdout,
    '../../../../../kernel/iommu_groups/0\n../../../../../kernel/iommu_groups/1\n');
  t.equal(run('cat class/mdev_bus/mbochs/mdev_supported_types/*/available_instances').stdout, '3\n12\n48\n');
});

t.test('a removed device is gone from every listing and stat at once', async (t) => {
  t.equal(run(`echo ${U} > ${MT}/mtty-2/create && ${createAB}`).code, 0, 'U takes iommu group 0, A 1, B 2');
  const r = run(`echo 1 > bus/mdev/devices/${U}/remove; echo rc=$?
    ls bus/mdev/devices; ls ${MT}/mtty-2/devices | wc -l; ls kernel/iommu_groups; ls bus/mdev/drivers/mtty
    stat devices/virtual/mtty/mtty/${U} 2>&1; readlink bus/mdev/devices/${U}; echo rl=$?`);
  t.equal(
    r.stdout,
    'rc=0\n11111111-0000-0000-0000-000000000001\n22222222-0000-0000-0000-000000000001\n0\n1\n2\nbind\nmodule\nuevent\nunbind\n' +
      `stat: cannot statx 'devices/virtual/mtty/mtty/${U}': No such file or directory\nrl=1\n`,
  );
  t.equal(run(`cat ${MT}/mtty-1/available_instances`).stdout, '24\n');
});
