import t from 'tap';
import { type Daemon, sh, startDaemon } from '../helpers/daemon';

// A parent on PCI: reachable as bus/pci/devices/<bdf>, basic PCI attributes, and link targets
// with the kernel's depth for that placement (spec §1.1).
const U = '85006552-1b4b-45ef-ad62-de05be9171df';
const P = 'devices/pci0000:00/0000:00:02.0';
let d: Daemon;
t.before(async () => {
  d = await startDaemon({ profile: 'gvt' });
});
t.teardown(() => d.stop());
const run = (s: string) => sh(d.dir, s).stdout;

t.test('the PCI parent and its aliases', async (t) => {
  t.equal(run('readlink class/mdev_bus/0000:00:02.0 bus/pci/devices/0000:00:02.0 bus/pci/drivers/i915/0000:00:02.0'),
    `../../${P}\n../../../${P}\n../../../../${P}\n`);
  t.equal(run(`cat ${P}/vendor ${P}/device ${P}/class ${P}/numa_node; readlink ${P}/driver ${P}/subsystem`),
    '0x8086\n0x5912\n0x030000\n-1\n../../../bus/pci/drivers/i915\n../../../bus/pci\n');
  t.equal(run('ls class/mdev_bus/0000:00:02.0/mdev_supported_types'), 'i915-GVTg_V5_2\ni915-GVTg_V5_4\ni915-GVTg_V5_8\n');
  t.equal(run('cat class/mdev_bus/0000:00:02.0/mdev_supported_types/i915-GVTg_V5_4/description'),
    'low_gm_size: 128MB\nhigh_gm_size: 512MB\nfence: 4\nresolution: 1920x1200\nweight: 4\n');
});

t.test('a device on it gets link targets one level shallower than a virtual parent', async (t) => {
  t.equal(sh(d.dir, `echo ${U} > class/mdev_bus/0000:00:02.0/mdev_supported_types/i915-GVTg_V5_4/create`).code, 0);
  t.equal(run(`cd bus/mdev/devices/${U} && readlink driver iommu_group subsystem mdev_type`),
    '../../../../bus/mdev/drivers/intel_vgpu_mdev\n../../../../kernel/iommu_groups/0\n../../../../bus/mdev\n../mdev_supported_types/i915-GVTg_V5_4\n');
  t.equal(run(`readlink bus/mdev/devices/${U}`), `../../../${P}/${U}\n`);
  t.equal(run('cat class/mdev_bus/0000:00:02.0/mdev_supported_types/*/available_instances'), '1\n2\n5\n',
    'every type draws on the same aperture');
});
