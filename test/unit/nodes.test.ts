import t from 'tap';
import { relativeTarget } from '../../src/sysfs/nodes';

const p = (s: string) => s.split('/');
const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';

t.test('link targets as kernfs_get_target_path writes them', async (t) => {
  const dev = `devices/virtual/mtty/mtty/${U}`;
  const cases: [string, string, string][] = [
    ['class/mdev_bus', 'devices/virtual/mtty/mtty', '../../devices/virtual/mtty/mtty'],
    ['bus/mdev/devices', dev, `../../../${dev}`],
    [dev, 'devices/virtual/mtty/mtty/mdev_supported_types/mtty-2', '../mdev_supported_types/mtty-2'],
    [dev, 'bus/mdev/drivers/mtty', '../../../../../bus/mdev/drivers/mtty'],
    ['devices/virtual/mtty/mtty/mdev_supported_types/mtty-2/devices', dev, `../../../${U}`],
    ['kernel/iommu_groups/0/devices', dev, `../../../../${dev}`],
    // A link to an ancestor climbs above it and names it.
    [`${dev}/vfio-dev/vfio0`, dev, `../../../${U}`],
    [`${dev}/vfio-dev/vfio0`, 'class/vfio-dev', '../../../../../../../class/vfio-dev'],
    // PCI parents sit one level higher.
    [`devices/pci0000:00/0000:00:02.0/${U}`, 'bus/mdev/drivers/i915', '../../../../bus/mdev/drivers/i915'],
    ['bus/pci/devices', 'devices/pci0000:00/0000:00:02.0', '../../../devices/pci0000:00/0000:00:02.0'],
  ];
  for (const [dir, target, want] of cases) t.equal(relativeTarget(p(dir), p(target)), want, `${dir} -> ${target}`);
});
