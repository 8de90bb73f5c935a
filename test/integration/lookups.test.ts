import t from 'tap';
import { sh, startDaemon } from '../helpers/daemon';

// kernfs looks names up byte for byte: no numeric aliases (00, +0, 0x0 for group 0), no other
// spelling of a UUID or a type. Each alias is ENOENT while the name it spells exists.

const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const TYPES = 'class/mdev_bus/mtty/mdev_supported_types';

t.test('numeric aliases and other spellings are ENOENT; the names they spell exist', async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.stop());
  t.equal(sh(d.dir, `echo ${U} > ${TYPES}/mtty-2/create`).code, 0);
  const kinds = (paths: string[]) =>
    sh(d.dir, `for p in ${paths.map((p) => `'${p}'`).join(' ')}; do stat -c %F "$p" 2>&1 | sed 's/.*: //'; done`).stdout.trim().split('\n');
  const real = ['kernel/iommu_groups/0', 'class/vfio-dev/vfio0', `bus/mdev/devices/${U}`, `${TYPES}/mtty-2`];
  t.same(kinds(real), ['directory', 'symbolic link', 'symbolic link', 'directory'], 'the real names');
  const aliases = [
    'kernel/iommu_groups/00', 'kernel/iommu_groups/+0', 'kernel/iommu_groups/-0', 'kernel/iommu_groups/0x0', 'kernel/iommu_groups/ 0',
    'class/vfio-dev/vfio00', 'class/vfio-dev/vfio+0', 'class/vfio-dev/vfio0x0',
    `bus/mdev/devices/${U.toUpperCase()}`, `bus/mdev/devices/{${U}}`, `devices/virtual/mtty/mtty/${U.toUpperCase()}`,
    `${TYPES}/MTTY-2`, `${TYPES}/mtty-02`, `${TYPES}/2`,
  ];
  t.same(kinds(aliases), aliases.map(() => 'No such file or directory'), 'every alias is ENOENT');
  t.equal(sh(d.dir, 'ls kernel/iommu_groups class/vfio-dev').stdout, 'class/vfio-dev:\nvfio0\n\nkernel/iommu_groups:\n0\n', 'and none is listed');
});
