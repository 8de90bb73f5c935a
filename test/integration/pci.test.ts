import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { CLI, backendArgs, cliEnv, daemonPerTest, isMounted, scratch, sh, startDaemon } from '../helpers/daemon';

// A parent on PCI is the whole PCI function (drivers/pci/pci-sysfs.c): identity, config space,
// resources, driver binding through bus/pci; link targets get the kernel's depth for that
// placement (docs/mdev-abi.md, "Files"). Parents on s390 buses sit on `matrix` and `css` with their drivers.
const U = '85006552-1b4b-45ef-ad62-de05be9171df';
const P = 'devices/pci0000:00/0000:00:02.0';
const d = daemonPerTest({ profile: 'gvt' });
const run = (s: string) => sh(d.dir, s).stdout;
const attempt = (s: string) => {
  const r = sh(d.dir, `{ ${s}; } 2>&1; echo "rc=$?"`);
  return r.stdout.replace(/^bash: line \d+: /gm, '');
};

t.test('the PCI parent and its aliases', async (t) => {
  t.equal(run('readlink class/mdev_bus/0000:00:02.0 bus/pci/devices/0000:00:02.0 bus/pci/drivers/i915/0000:00:02.0'),
    `../../${P}\n../../../${P}\n../../../../${P}\n`);
  t.equal(run(`cat ${P}/vendor ${P}/device ${P}/class ${P}/numa_node; readlink ${P}/driver ${P}/subsystem`),
    '0x8086\n0x5912\n0x030000\n-1\n../../../bus/pci/drivers/i915\n../../../bus/pci\n');
  t.equal(run('ls class/mdev_bus/0000:00:02.0/mdev_supported_types'), 'i915-GVTg_V5_1\ni915-GVTg_V5_2\ni915-GVTg_V5_4\ni915-GVTg_V5_8\n');
});

t.test('every attribute a PCI function has, with the kernel formats', async (t) => {
  t.equal(run(`ls ${P} | grep -v -e mdev_supported_types -e intel_vgpu | tr '\\n' ' '`),
    'ari_enabled broken_parity_status class config consistent_dma_mask_bits d3cold_allowed device dma_mask_bits driver ' +
    'driver_override enable iommu_group irq local_cpulist local_cpus modalias msi_bus numa_node power power_state resource ' +
    'revision subsystem subsystem_device subsystem_vendor uevent vendor ');
  t.equal(run(`cd ${P} && for f in subsystem_vendor subsystem_device revision irq local_cpulist local_cpus driver_override enable broken_parity_status msi_bus dma_mask_bits consistent_dma_mask_bits ari_enabled d3cold_allowed power_state modalias; do echo "$f=$(cat $f)"; done`),
    'subsystem_vendor=0x8086\nsubsystem_device=0x2212\nrevision=0x04\nirq=16\nlocal_cpulist=0-7\nlocal_cpus=ff\n' +
    'driver_override=(null)\nenable=1\nbroken_parity_status=0\nmsi_bus=1\ndma_mask_bits=39\nconsistent_dma_mask_bits=39\n' +
    'ari_enabled=0\nd3cold_allowed=1\npower_state=D0\nmodalias=pci:v00008086d00005912sv00008086sd00002212bc03sc00i00\n');
  // pci_uevent() after the driver core's DRIVER=; the host bridge's own uevent is empty.
  t.equal(run(`cat ${P}/uevent; echo --; cat devices/pci0000:00/uevent; ls devices/pci0000:00`),
    'DRIVER=i915\nPCI_CLASS=30000\nPCI_ID=8086:5912\nPCI_SUBSYS_ID=8086:2212\nPCI_SLOT_NAME=0000:00:02.0\n' +
    'MODALIAS=pci:v00008086d00005912sv00008086sd00002212bc03sc00i00\n--\n0000:00:02.0\npower\nuevent\nwaiting_for_supplier\n');
  // resource_show: 13 lines (6 BARs, ROM, 6 IOV), start end flags; BAR registers agree.
  const res = run(`cat ${P}/resource`).split('\n');
  t.equal(res.length, 14);
  t.equal(res[0], '0x00000000de000000 0x00000000deffffff 0x0000000000140204');
  t.equal(res[2], '0x00000000c0000000 0x00000000ffffffff 0x000000000014220c');
  t.equal(res[4], '0x000000000000f000 0x000000000000f03f 0x0000000000040101');
  t.equal(run(`od -An -tx1 -N 64 ${P}/config | tr -s ' \\n' ' '`),
    ' 86 80 12 59 07 04 10 00 04 00 00 03 00 00 00 00 04 00 00 de 00 00 00 00 0c 00 00 c0 00 00 00 00' +
    ' 01 f0 00 00 00 00 00 00 00 00 00 00 86 80 12 22 00 00 00 00 40 00 00 00 00 00 00 00 10 01 00 00 ');
  t.equal(run(`wc -c < ${P}/config`), '4096\n', 'PCI Express: the extended config space');
});

t.test('bus/pci as the driver core shows it', async (t) => {
  t.equal(run('ls bus/pci | tr "\\n" " "; ls bus/pci/drivers | tr "\\n" " "; ls bus/pci/drivers/i915 | tr "\\n" " "'),
    'devices drivers drivers_autoprobe drivers_probe rescan resource_alignment slots uevent ' +
    'i915 vfio-pci ' +
    '0000:00:02.0 bind module new_id remove_id uevent unbind ');
  t.equal(run('readlink bus/pci/drivers/i915/module bus/pci/drivers/vfio-pci/module module/i915/drivers/pci:i915'),
    '../../../../module/i915\n../../../../module/vfio_pci\n../../../bus/pci/drivers/i915\n');
  t.equal(attempt('cat bus/pci/resource_alignment; echo 16@0000:00:02.0 > bus/pci/resource_alignment; cat bus/pci/resource_alignment; ' +
    'echo x > bus/pci/drivers_autoprobe; cat bus/pci/drivers_autoprobe; echo 0x > bus/pci/drivers_autoprobe; cat bus/pci/drivers_autoprobe; echo 1 > bus/pci/drivers_autoprobe'),
    '16@0000:00:02.0\n1\n0\nrc=0\n', 'resource_alignment is empty until set; drivers_autoprobe looks at the first byte');
  t.equal(run('stat -c "%A %n" bus/pci/drivers_probe bus/pci/uevent bus/pci/drivers/i915/bind'),
    '--w------- bus/pci/drivers_probe\n--w------- bus/pci/uevent\n--w------- bus/pci/drivers/i915/bind\n');
});

t.test('the iommu groups of the function and of its mdevs share one numbering', async (t) => {
  t.equal(run(`readlink ${P}/iommu_group; ls kernel/iommu_groups/0/devices; cat kernel/iommu_groups/0/type`),
    '../../../kernel/iommu_groups/0\n0000:00:02.0\nDMA-FQ\n');
  t.equal(sh(d.dir, `echo ${U} > class/mdev_bus/0000:00:02.0/mdev_supported_types/i915-GVTg_V5_4/create`).code, 0);
  t.equal(run(`cd bus/mdev/devices/${U} && readlink driver iommu_group subsystem mdev_type`),
    '../../../../bus/mdev/drivers/intel_vgpu_mdev\n../../../../kernel/iommu_groups/1\n../../../../bus/mdev\n../mdev_supported_types/i915-GVTg_V5_4\n');
  t.equal(run(`readlink bus/mdev/devices/${U}`), `../../../${P}/${U}\n`);
  t.equal(run('ls kernel/iommu_groups | tr "\\n" " "'), '0 1 ');
  t.equal(sh(d.dir, `echo 1 > bus/mdev/devices/${U}/remove`).code, 0);
});

t.test('stores of the PCI attributes: the kernel errnos, and nothing changes on a refusal', async (t) => {
  t.equal(attempt(`echo foo > ${P}/driver_override; cat ${P}/driver_override; printf 'a\\nb' | dd status=none of=${P}/driver_override; cat ${P}/driver_override; echo > ${P}/driver_override; cat ${P}/driver_override`),
    'foo\na\n(null)\nrc=0\n', '"\\n" clears; the first line is kept');
  t.equal(attempt(`head -c 4095 /dev/zero | tr '\\0' x | dd status=none bs=4096 iflag=fullblock of=${P}/driver_override; cat ${P}/driver_override`),
    "dd: error writing '" + P + "/driver_override': Invalid argument\n(null)\nrc=0\n", 'a page less one is too long');
  t.equal(attempt(`echo 2 > ${P}/enable; cat ${P}/enable; echo 0 > ${P}/enable; echo 0 > ${P}/enable; echo 0 > ${P}/enable; cat ${P}/enable; echo x > ${P}/enable; echo 1 > ${P}/enable`),
    '2\necho: write error: Input/output error\n0\necho: write error: Invalid argument\nrc=0\n');
  t.equal(attempt(`echo 5 > ${P}/numa_node; echo 0 > ${P}/numa_node; cat ${P}/numa_node; echo -1 > ${P}/numa_node`),
    'echo: write error: Invalid argument\n0\nrc=0\n');
  t.equal(attempt(`echo 0 > ${P}/msi_bus; cat ${P}/msi_bus; echo 1 > ${P}/msi_bus; echo y > ${P}/d3cold_allowed`),
    '0\necho: write error: Invalid argument\nrc=1\n');
  t.equal(attempt(`echo 1 > ${P}/config`), 'echo: write error: Input/output error\nrc=1\n', 'config is read-only here (docs/deviations.md)');
});

t.test('unbind and bind through bus/pci unregister and register the mdev parent', async (t) => {
  t.equal(sh(d.dir, `echo ${U} > class/mdev_bus/0000:00:02.0/mdev_supported_types/i915-GVTg_V5_8/create`).code, 0);
  t.equal(attempt('echo 0000:00:09.0 > bus/pci/drivers/i915/unbind; echo 0000:00:02.0 > bus/pci/drivers/vfio-pci/unbind'),
    'echo: write error: No such device\necho: write error: No such device\nrc=1\n');
  t.equal(attempt('echo 0000:00:02.0 > bus/pci/drivers/i915/unbind'), 'rc=0\n');
  t.equal(run(`ls ${P}/driver class/mdev_bus bus/mdev/devices 2>&1; cat ${P}/uevent | head -1; cat ${P}/enable; ls bus/pci/drivers/i915 | tr "\\n" " "`),
    `ls: cannot access '${P}/driver': No such file or directory\nbus/mdev/devices:\n\nclass/mdev_bus:\nPCI_CLASS=30000\n0\n` +
    'bind module new_id remove_id uevent unbind ');
  t.equal(attempt('echo 0000:00:02.0 > bus/pci/drivers/vfio-pci/bind'), 'echo: write error: No such device\nrc=1\n', 'vfio-pci has no id for it');
  t.equal(attempt('echo 8086 5912 > bus/pci/drivers/vfio-pci/new_id; readlink bus/pci/devices/0000:00:02.0/driver'), '../../../bus/pci/drivers/vfio-pci\nrc=0\n',
    'new_id binds every unbound device it now matches');
  t.equal(attempt('echo 8086 5912 > bus/pci/drivers/vfio-pci/new_id; echo 8086 > bus/pci/drivers/vfio-pci/new_id; echo 1 2 > bus/pci/drivers/vfio-pci/remove_id'),
    'echo: write error: File exists\necho: write error: Invalid argument\necho: write error: No such device\nrc=1\n');
  t.equal(attempt('echo 0000:00:02.0 > bus/pci/drivers/i915/bind'), 'echo: write error: Device or resource busy\nrc=1\n');
  t.equal(attempt('echo 0000:00:02.0 > bus/pci/drivers/vfio-pci/unbind; echo 8086 5912 > bus/pci/drivers/vfio-pci/remove_id; echo 0000:00:02.0 > bus/pci/drivers_probe; echo 0000:00:07.0 > bus/pci/drivers_probe'),
    'echo: write error: No such device\nrc=1\n');
  t.equal(run(`readlink ${P}/driver; ls class/mdev_bus; cat class/mdev_bus/0000:00:02.0/mdev_supported_types/i915-GVTg_V5_8/available_instances`),
    '../../../bus/pci/drivers/i915\n0000:00:02.0\n7\n', 'i915 probed it again: a fresh parent');
});

t.test('s390: the vfio-ap matrix device on the matrix bus', async (t) => {
  const ap = await startDaemon({ profile: 'ap' });
  t.teardown(() => ap.stop());
  const r = (s: string) => sh(ap.dir, s).stdout;
  t.equal(r('readlink class/mdev_bus/matrix bus/matrix/devices/matrix devices/vfio_ap/matrix/driver devices/vfio_ap/matrix/subsystem devices/vfio_ap/module'),
    '../../devices/vfio_ap/matrix\n../../../devices/vfio_ap/matrix\n../../../bus/matrix/drivers/vfio_ap\n../../../bus/matrix\n../../module/vfio_ap\n');
  t.equal(r('cat devices/vfio_ap/matrix/uevent; ls bus/matrix bus/matrix/drivers/vfio_ap | tr "\\n" " "'),
    'DRIVER=vfio_ap\nbus/matrix: devices drivers drivers_autoprobe drivers_probe uevent  bus/matrix/drivers/vfio_ap: matrix uevent ',
    'suppress_bind_attrs: no bind/unbind; no module link (the driver has no owner)');
});

t.test('s390: vfio-ccw subchannels on the css bus', async (t) => {
  const sch = (n: string) => ({
    name: `0.0.${n}`,
    path: `devices/css0/0.0.${n}`,
    bus: { name: 'css', driver: 'vfio_ccw' },
    mdevDriver: 'vfio_ccw_mdev',
    module: 'vfio_ccw',
    capacity: { model: 'counter', max: 1 },
    types: [{ name: 'io', prettyName: 'I/O subchannel (Non-QDIO)', deviceApi: 'vfio-ccw' }],
  });
  const ccw = await startDaemon({ profile: { parents: [sch('0008'), sch('fffe')] } });
  t.teardown(() => ccw.stop());
  const r = (s: string) => sh(ccw.dir, s).stdout;
  t.equal(r('ls bus/css/devices | tr "\\n" " "; readlink class/mdev_bus/0.0.fffe devices/css0/0.0.fffe/driver'),
    '0.0.0008 0.0.fffe ../../devices/css0/0.0.fffe\n../../../bus/css/drivers/vfio_ccw\n');
  t.equal(r('cd devices/css0/0.0.0008 && cat uevent type modalias driver_override && ls mdev_supported_types'),
    'DRIVER=vfio_ccw\nST=0\nMODALIAS=css:t0\n0\ncss:t0\n(null)\nvfio_ccw-io\n');
  t.equal(r('ls bus/css/drivers/vfio_ccw | tr "\\n" " "; readlink bus/css/drivers/vfio_ccw/module; cat devices/css0/uevent'),
    '0.0.0008 0.0.fffe bind module uevent unbind ../../../../module/vfio_ccw\n');
});

t.test('a bad profile file is refused before anything is mounted', async (t) => {
  const dir = scratch('mdevfs-badprofile-');
  const file = join(dir, 'bad.json');
  writeFileSync(file, JSON.stringify({ parents: [{ name: 'x', path: 'devices/virtual/x/x', mdevDriver: 'x', capacity: { model: 'counter' }, types: [{ name: 'a', cost: '1' }] }] }));
  const mnt = join(dir, 'mnt');
  const r = spawnSync(process.execPath, [CLI, 'mount', mnt, ...backendArgs, '--profile', file], { encoding: 'utf8', timeout: 20000, env: cliEnv() });
  t.equal(r.status, 2);
  t.equal(r.stderr, `mdevfs: profile ${file} refused:\n  parents[0].capacity.max: is required\n  parents[0].types[0].cost: must be a number\n`);
  t.notOk(isMounted(mnt));
  t.notOk(existsSync(mnt), 'not even the mount point was made');
});

t.test('a PCI parent hot-plugged through the control socket, removed and added again', async (t) => {
  const ctl = (...args: string[]) => spawnSync(process.execPath, [CLI, 'ctl', ...args], { encoding: 'utf8', timeout: 30000, env: cliEnv() });
  const dir = scratch('mdevfs-pcihp-');
  const gpu = {
    name: '0000:3b:00.0',
    path: 'devices/pci0000:3a/0000:3b:00.0',
    pci: { vendor: '0x10de', device: '0x1eb8', class: '0x030200', driver: 'nvidia' },
    mdevDriver: 'nvidia-vgpu-vfio',
    capacity: { model: 'counter', max: 4 },
    types: [{ name: '230' }],
  };
  writeFileSync(join(dir, 'gpu.json'), JSON.stringify(gpu));
  writeFileSync(join(dir, 'inside.json'), JSON.stringify({ ...gpu, name: 'x', path: `${P}/x`, pci: undefined, class: 'x' }));
  const G = 'devices/pci0000:3a/0000:3b:00.0';
  t.equal(ctl(d.dir, 'add-parent', join(dir, 'gpu.json')).status, 0);
  t.equal(run(`ls bus/pci/devices class/mdev_bus | tr "\\n" " "; cat ${G}/uevent | sed -n 2p; readlink ${G}/iommu_group ${G}/driver; ls ${G}/mdev_supported_types`),
    'bus/pci/devices: 0000:00:02.0 0000:3b:00.0  class/mdev_bus: 0000:00:02.0 0000:3b:00.0 PCI_CLASS=30200\n' +
    '../../../kernel/iommu_groups/1\n../../../bus/pci/drivers/nvidia\nnvidia-230\n');
  t.equal(ctl(d.dir, 'remove-parent', '0000:3b:00.0').status, 0);
  t.equal(run(`ls class/mdev_bus; ls ${G} | grep -c mdev_supported_types; readlink ${G}/driver`), '0000:00:02.0\n0\n../../../bus/pci/drivers/nvidia\n',
    'the function stays, bound, without its mdev parent');
  t.equal(ctl(d.dir, 'add-parent', join(dir, 'gpu.json')).status, 0);
  t.equal(run(`cat ${G}/mdev_supported_types/nvidia-230/available_instances`), '4\n');
  const inside = ctl(d.dir, 'add-parent', join(dir, 'inside.json'));
  t.equal(inside.status, 1);
  t.equal(inside.stderr, `mdevfs ctl: parent x: ${P}/x collides with 0000:00:02.0's directory\n`);
  t.equal(ctl(d.dir, 'remove-parent', '0000:3b:00.0').status, 0);
});

t.test('unbinding the GVT-g function from i915 unregisters only the mdev parent: kvmgt and intel_vgpu_mdev stay loaded', async (t) => {
  const events = `${process.execPath} ${CLI} events ${d.dir}`;
  /** A synthetic change of bus/mdev ends a step; prints the step's events as "ACTION DEVPATH [MDEV_STATE]". */
  let seen = '0';
  const step = (script: string, n: number) => {
    const r = sh(d.dir, `${script}
      echo "change 00000000-0000-0000-0000-00000000000${n}" > bus/mdev/uevent
      ${events} --since ${seen} --until change:mdev --timeout 10`);
    t.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, string>);
    seen = lines[lines.length - 1]!.SEQNUM!;
    return lines.slice(0, -1).map((e) => [e.ACTION, e.DEVPATH, e.MDEV_STATE].filter(Boolean).join(' '));
  };
  const listing = 'ls bus/mdev/drivers module/kvmgt/drivers class/mdev_bus | tr "\\n" " "; readlink bus/mdev/drivers/intel_vgpu_mdev/module';
  step('', 1);
  t.same(step(`echo ${U} > class/mdev_bus/0000:00:02.0/mdev_supported_types/i915-GVTg_V5_8/create; echo 0000:00:02.0 > bus/pci/drivers/i915/unbind`, 2), [
    `add /${P}/${U}`,
    'add /devices/virtual/vfio/1', // its VFIO group's device (the GPU's own IOMMU group is 0)
    `add /${P}/${U}/vfio-dev/vfio0`,
    `bind /${P}/${U}`,
    `remove /${P}/${U}/vfio-dev/vfio0`,
    'remove /devices/virtual/vfio/1',
    `unbind /${P}/${U}`,
    `remove /${P}/${U}`,
    `change /${P} unregistered`,
    `unbind /${P}`,
  ], 'the vGPU goes, the parent says MDEV_STATE=unregistered, i915 unbinds: no remove of the mdev driver or kvmgt');
  t.equal(run(listing),
    'bus/mdev/drivers: intel_vgpu_mdev  class/mdev_bus:  module/kvmgt/drivers: mdev:intel_vgpu_mdev ../../../../module/kvmgt\n',
    'bus/mdev/drivers/intel_vgpu_mdev and module/kvmgt stay; the parent is gone from class/mdev_bus');
  t.equal(run(`ls ${P} | grep -c mdev_supported_types`), '0\n');
  t.same(step('echo 0000:00:02.0 > bus/pci/drivers/i915/bind', 3), [`change /${P} registered`, `bind /${P}`],
    'binding back registers the parent: no add of the mdev driver or kvmgt');
  t.equal(run(`${listing}; cat ${P}/mdev_supported_types/i915-GVTg_V5_8/available_instances`),
    'bus/mdev/drivers: intel_vgpu_mdev  class/mdev_bus: 0000:00:02.0  module/kvmgt/drivers: mdev:intel_vgpu_mdev ../../../../module/kvmgt\n7\n', 'a fresh parent');
  // remove-parent is the vendor module's unload (rmmod kvmgt): with i915 unbound, only the module's events.
  step('echo 0000:00:02.0 > bus/pci/drivers/i915/unbind', 4);
  t.same(step(`${process.execPath} ${CLI} ctl ${d.dir} remove-parent 0000:00:02.0`, 5),
    ['remove /bus/mdev/drivers/intel_vgpu_mdev', 'remove /module/kvmgt']);
  t.equal(run('ls bus/mdev/drivers module | grep -c -e intel_vgpu_mdev -e kvmgt'), '0\n', 'unloaded: both gone');
});
