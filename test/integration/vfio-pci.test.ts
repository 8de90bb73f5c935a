import t from 'tap';
import { BUILTIN_PROFILES } from '../../src/drivers/profile';
import { CLI, sh, startDaemon } from '../helpers/daemon';

// A PCI function bound to vfio-pci is a VFIO device, as on a 6.1 kernel (vfio_pci_probe ->
// vfio_pci_core_register_device -> vfio_register_group_dev, drivers/vfio/vfio_main.c): it gets
// vfio-dev/vfioN and class/vfio-dev/vfioN (numbered with the mdevs' vfio-dev, one ida), and its
// IOMMU group its VFIO group device (devices/virtual/vfio/<group>, class/vfio/<group>, minors
// shared with the mdevs' groups). Bind, unbind and driver_override + drivers_probe (driverctl's
// path) add and remove them, with the uevents in the kernel's order; a function in no IOMMU group
// cannot be bound (vfio_group_find_or_alloc: EINVAL).

const A = '0000:3b:00.0'; // a passthrough GPU in IOMMU group 3
const B = '0000:3c:00.0'; // a function in no IOMMU group
const D = `bus/pci/devices/${A}`;
const P = 'devices/pci0000:3a';
const GPU = { vendor: '0x10de', device: '0x1eb8', subsystemVendor: '0x10de', subsystemDevice: '0x12a2', class: '0x030200', revision: '0xa1' };
/** The GVT-g host (a PCI mdev parent, so bus/pci/drivers/vfio-pci exists) with two more functions. */
const PROFILE = {
  ...BUILTIN_PROFILES.gvt,
  pciDevices: [
    { name: A, path: `${P}/${A}`, pci: { ...GPU, iommuGroup: 3 } },
    { name: B, path: `${P}/${B}`, pci: GPU },
  ],
};
const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa3001';
const CREATE = `echo ${U} > class/mdev_bus/0000:00:02.0/mdev_supported_types/i915-GVTg_V5_8/create`;

t.test('driver_override + drivers_probe, unbind and bind: vfio-dev/vfioN and the group device come and go', async (t) => {
  const d = await startDaemon({ profile: PROFILE });
  t.teardown(() => d.stop());
  const r = sh(
    d.dir,
    `set -e
     ${CREATE}   # the vGPU takes vfio0 and the group device's minor 0 (group 1)
     echo vfio-pci > ${D}/driver_override; echo ${A} > bus/pci/drivers_probe
     readlink ${D}/driver; ls ${D}/vfio-dev; readlink ${D}/vfio-dev/vfio1/device ${D}/vfio-dev/vfio1/subsystem class/vfio-dev/vfio1
     ls class/vfio-dev devices/virtual/vfio | tr '\\n' ' '; echo
     readlink class/vfio/3; cat devices/virtual/vfio/3/dev devices/virtual/vfio/3/uevent
     lspci -O sysfs.path=$PWD/bus/pci -k -s 3b:00.0 | grep 'driver in use'
     echo ${A} > bus/pci/drivers/vfio-pci/unbind
     test -e ${D}/vfio-dev || echo no-vfio-dev; test -e class/vfio/3 || echo no-group-device
     ls class/vfio-dev class/vfio | tr '\\n' ' '; echo
     echo 1 > bus/mdev/devices/${U}/remove
     test -e devices/virtual/vfio || echo no-glue-dir
     echo ${A} > bus/pci/drivers/vfio-pci/bind   # the lowest free numbers again
     ls ${D}/vfio-dev; cat devices/virtual/vfio/3/dev`,
  );
  // lspci asks libkmod for modules; a machine without /lib/modules/<release> says so (pci-clients.test.ts).
  t.equal(r.stderr.replace(/^lspci: Unable to load libkmod resources: error -\d+\n/m, ''), '');
  t.equal(r.code, 0);
  t.equal(
    r.stdout,
    [
      '../../../bus/pci/drivers/vfio-pci',
      'vfio1',
      `../../../${A}`,
      '../../../../../class/vfio-dev',
      `../../${P}/${A}/vfio-dev/vfio1`,
      'class/vfio-dev: vfio0 vfio1  devices/virtual/vfio: 1 3 ',
      '../../devices/virtual/vfio/3',
      '253:1',
      'MAJOR=253',
      'MINOR=1',
      'DEVNAME=vfio/3',
      '\tKernel driver in use: vfio-pci',
      'no-vfio-dev',
      'no-group-device',
      'class/vfio: 1  class/vfio-dev: vfio0 ',
      'no-glue-dir',
      'vfio0',
      '253:0',
      '',
    ].join('\n'),
  );
});

t.test("vfio-pci's probe and remove send the group device's and vfio-dev's uevents, before bind and before unbind", async (t) => {
  const d = await startDaemon({ profile: PROFILE });
  t.teardown(() => d.stop());
  let seen = '0';
  /** The events a script sent, up to a marker (a synthetic change of bus/mdev), as KEY=VALUE lines without SEQNUM. */
  const step = (script: string, n: number) => {
    const r = sh(d.dir, `${script}
      echo "change 00000000-0000-0000-0000-00000000000${n}" > bus/mdev/uevent
      ${process.execPath} ${CLI} events ${d.dir} --since ${seen} --until change:mdev --timeout 10`);
    t.equal(r.code, 0, r.stderr);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, string>);
    seen = events[events.length - 1]!.SEQNUM!;
    return events.slice(0, -1).map((e) => Object.entries(e).filter(([k]) => k !== 'SEQNUM').map(([k, v]) => `${k}=${v}`).join(' '));
  };
  step('', 1);
  const group = 'SUBSYSTEM=vfio MAJOR=253 MINOR=0 DEVNAME=vfio/3';
  const vfioDev = `DEVPATH=/${P}/${A}/vfio-dev/vfio0 SUBSYSTEM=vfio-dev`;
  const pci = `SUBSYSTEM=pci PCI_CLASS=30200 PCI_ID=10DE:1EB8 PCI_SUBSYS_ID=10DE:12A2 PCI_SLOT_NAME=${A} MODALIAS=pci:v000010DEd00001EB8sv000010DEsd000012A2bc03sc02i00`;
  t.same(step(`echo vfio-pci > ${D}/driver_override && echo ${A} > bus/pci/drivers_probe`, 2), [
    `ACTION=add DEVPATH=/devices/virtual/vfio/3 ${group}`,
    `ACTION=add ${vfioDev}`,
    `ACTION=bind DEVPATH=/${P}/${A} SUBSYSTEM=pci DRIVER=vfio-pci ${pci.slice('SUBSYSTEM=pci '.length)}`,
  ], 'drivers_probe: the group device, vfio-dev/vfio0, then bind');
  t.same(step(`echo ${A} > bus/pci/drivers/vfio-pci/unbind`, 3), [
    `ACTION=remove ${vfioDev}`,
    `ACTION=remove DEVPATH=/devices/virtual/vfio/3 ${group}`,
    `ACTION=unbind DEVPATH=/${P}/${A} ${pci}`,
  ], 'unbind: vfio-dev/vfio0, the group device, then unbind (no DRIVER)');
  t.same(step(`echo ${A} > bus/pci/drivers/vfio-pci/bind`, 4).map((e) => e.split(' ').slice(0, 2).join(' ')), [
    'ACTION=add DEVPATH=/devices/virtual/vfio/3',
    `ACTION=add DEVPATH=/${P}/${A}/vfio-dev/vfio0`,
    `ACTION=bind DEVPATH=/${P}/${A}`,
  ], 'bind: the same three');
  t.same(step(`${CREATE}`, 5).map((e) => e.split(' ').slice(0, 2).join(' ')), [
    `ACTION=add DEVPATH=/devices/pci0000:00/0000:00:02.0/${U}`,
    'ACTION=add DEVPATH=/devices/virtual/vfio/1',
    `ACTION=add DEVPATH=/devices/pci0000:00/0000:00:02.0/${U}/vfio-dev/vfio1`,
    `ACTION=bind DEVPATH=/devices/pci0000:00/0000:00:02.0/${U}`,
  ], 'an mdev created meanwhile takes the next vfio index and group minor');
  t.equal(sh(d.dir, `cat devices/virtual/vfio/1/dev; echo change > ${D}/vfio-dev/vfio0/uevent`).stdout, '253:1\n');
  t.same(step('', 6), [`ACTION=change ${vfioDev} SYNTH_UUID=0`], "vfio-dev's uevent file sends a synthetic event");
});

t.test('a function in no IOMMU group: vfio-pci refuses it (EINVAL); drivers_probe leaves it unbound', async (t) => {
  const d = await startDaemon({ profile: PROFILE });
  t.teardown(() => d.stop());
  const r = sh(
    d.dir,
    `E=bus/pci/devices/${B}
     echo vfio-pci > $E/driver_override
     echo ${B} > bus/pci/drivers/vfio-pci/bind; echo "bind=$?"
     echo ${B} > bus/pci/drivers_probe; echo "drivers_probe=$?"
     test -e $E/driver || echo unbound; test -e $E/vfio-dev || echo no-vfio-dev; ls class/vfio-dev class/vfio | wc -l`,
  );
  t.equal(r.stderr, 'bash: line 3: echo: write error: Invalid argument\n');
  t.equal(r.stdout, 'bind=1\ndrivers_probe=0\nunbound\nno-vfio-dev\n3\n');
});

t.test('vendor-specific VFIO VFs (L40S): each bound VF has its group device too', async (t) => {
  const d = await startDaemon({ profile: 'nvidia-l40s' });
  t.teardown(() => d.stop());
  const r = sh(d.dir, 'ls class/vfio | wc -l; ls class/vfio-dev | wc -l; for v in class/vfio-dev/*; do basename $(readlink -f $v/device/iommu_group); done | sort -n | tr "\\n" " "; echo; ls class/vfio | sort -n | tr "\\n" " "');
  t.equal(r.code, 0, r.stderr);
  const [groups, devs, ofVfs, listed] = r.stdout.split('\n');
  t.equal(groups, '16');
  t.equal(devs, '16');
  t.equal(listed, ofVfs, "class/vfio names the VFs' IOMMU groups");
});
