import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { BUILTIN_PROFILES } from '../../src/drivers/profile';
import { backendArgs, CLI, cliEnv, scratch } from '../helpers/daemon';

// Real PCI clients from Debian's packages (pciutils, driverctl, sysfsutils) run through
// `mdevfs exec` against every built-in profile with a PCI parent, and against an SR-IOV profile
// file: they find every function and print no error line.
//
// Two lines come from the machine, not the tree, and are the only ones let through: lspci -vv
// asks libkmod for "Kernel modules:" and a machine without /lib/modules/<release> (a container)
// answers "Unable to load libkmod resources". driverctl set-override runs `modprobe -q DRIVER`
// (sysfs names modules vfio_pci, so its /sys/module/vfio-pci check never holds): a test must not
// load modules into the host kernel, so modprobe is /bin/true inside the private namespace.
const MACHINE = /^lspci: Unable to load libkmod resources: error -\d+$/;

function exec(profile: string, script: string): { out: string; err: string; code: number | null } {
  const r = spawnSync(process.execPath, [CLI, 'exec', ...backendArgs, '--profile', profile, '--', 'bash', '-c', script], {
    encoding: 'utf8',
    timeout: 60000,
    env: cliEnv(),
  });
  return { out: r.stdout, err: r.stderr, code: r.status };
}

const errorLines = (err: string) => err.split('\n').filter((l) => l !== '' && !MACHINE.test(l));
/** What lspci prints when config or an attribute is missing or unreadable. */
const BROKEN = /Cannot|rev ff|access denied|<\?>|Unknown header|unable to|No such file|<unavailable>/i;

const pciParents = Object.entries(BUILTIN_PROFILES).filter(([, p]) => p.parents.some((x) => x.pci));

t.test('lspci, driverctl and systool on every built-in profile with a PCI parent', async (t) => {
  t.ok(pciParents.length >= 2, 'gvt and NVIDIA at least');
  for (const [name, profile] of pciParents) {
    const first = profile.parents.find((p) => p.pci)!.name;
    const r = exec(name, 'lspci && lspci -nn && lspci -vv && lspci -xxxx >/dev/null && driverctl list-devices && systool -b pci -v');
    t.equal(r.code, 0, `${name}: every client exits 0`);
    t.same(errorLines(r.err), [], `${name}: no error line`);
    t.notMatch(r.out, BROKEN, `${name}: nothing unreadable`);
    t.match(r.out, `${first.slice(5)} `, `${name}: lspci lists ${first}`);
    t.match(r.out, new RegExp(`^${first} \\S+$`, 'm'), `${name}: driverctl lists ${first} with its driver`);
    t.match(r.out, `Device path = "/sys/devices/`, `${name}: systool walks the devices`);
  }
});

t.test('lspci -vv reads the GVT-g parent as the function it is', async (t) => {
  const r = exec('gvt', 'lspci -nn -vv -s 00:02.0');
  t.same(errorLines(r.err), []);
  t.match(r.out, '00:02.0 VGA compatible controller [0300]: Intel Corporation HD Graphics 630 [8086:5912] (rev 04)');
  t.match(r.out, 'Subsystem: Intel Corporation HD Graphics 630 [8086:2212]');
  t.match(r.out, 'Control: I/O+ Mem+ BusMaster+');
  t.match(r.out, 'Interrupt: pin A routed to IRQ 16');
  t.match(r.out, 'IOMMU group: 0');
  t.match(r.out, 'Region 0: Memory at de000000 (64-bit, non-prefetchable) [size=16M]');
  t.match(r.out, 'Region 2: Memory at c0000000 (64-bit, prefetchable) [size=1G]');
  t.match(r.out, 'Region 4: I/O ports at f000 [size=64]');
  t.match(r.out, 'Capabilities: [70] Express (v2) Endpoint');
  t.match(r.out, 'Kernel driver in use: i915');
});

t.test('driverctl hands the GVT-g parent to vfio-pci and back; the mdev parent follows its driver', async (t) => {
  const D = '/sys/bus/pci/devices/0000:00:02.0';
  const r = exec(
    'gvt',
    `mount --bind /bin/true /sbin/modprobe || exit 9
     echo 00000000-0000-0000-0000-000000000001 > ${D}/mdev_supported_types/i915-GVTg_V5_4/create
     driverctl --nosave set-override 0000:00:02.0 vfio-pci; echo "set=$?"
     driverctl list-devices; driverctl list-overrides
     echo "override=$(cat ${D}/driver_override) enable=$(cat ${D}/enable) driver=$(basename $(readlink ${D}/driver))"
     echo "parents=$(ls /sys/class/mdev_bus | wc -l) mdevs=$(ls /sys/bus/mdev/devices | wc -l) types=$(ls -d ${D}/mdev_supported_types 2>/dev/null | wc -l)"
     driverctl --nosave unset-override 0000:00:02.0; echo "unset=$?"
     driverctl list-devices
     echo "override=$(cat ${D}/driver_override) enable=$(cat ${D}/enable) parents=$(ls /sys/class/mdev_bus)"
     cat ${D}/mdev_supported_types/i915-GVTg_V5_4/available_instances`,
  );
  t.same(errorLines(r.err), []);
  t.equal(
    r.out,
    [
      'set=0',
      '0000:00:02.0 vfio-pci [*]',
      '0000:00:02.0 vfio-pci',
      'override=vfio-pci enable=0 driver=vfio-pci',
      // i915's remove unregisters the mdev parent: its mdevs and types go with it (spec §3.5).
      'parents=0 mdevs=0 types=0',
      'unset=0',
      '0000:00:02.0 i915',
      'override=(null) enable=1 parents=0000:00:02.0',
      '5', // i915's probe registered a fresh parent: the whole aperture is free again
      '',
    ].join('\n'),
  );
});

/** An A10-style SR-IOV GPU: 4 of 16 VFs enabled, each VF an mdev parent, the PF none. */
const SRIOV = {
  parents: [
    {
      name: '0000:41:00.0',
      path: 'devices/pci0000:40/0000:41:00.0',
      pci: {
        vendor: '0x10de', device: '0x2236', subsystemVendor: '0x10de', subsystemDevice: '0x1482', class: '0x030200', revision: '0xa1',
        driver: 'nvidia', numaNode: 0,
        bars: [{ index: 0, size: '0x1000000' }, { index: 1, kind: 'mem64', prefetchable: true, size: '0x800000000' }],
        sriov: { totalVfs: 16, numVfs: 4, offset: 4, stride: 1, vfDevice: '0x2236', mdevOn: 'vfs',
          vfBars: [{ index: 0, size: '0x40000' }, { index: 1, kind: 'mem64', prefetchable: true, size: '0x40000000' }] },
      },
      mdevDriver: 'nvidia-vgpu-vfio',
      capacity: { model: 'counter', max: 1 },
      types: [{ name: '592', prettyName: 'NVIDIA A10-4Q' }],
    },
  ],
};

t.test('an SR-IOV profile file: PF and VFs as lspci, driverctl and the sysfs links show them', async (t) => {
  const file = join(scratch('mdevfs-sriov-'), 'a10.json');
  writeFileSync(file, JSON.stringify(SRIOV));
  const PF = '/sys/bus/pci/devices/0000:41:00.0';
  const r = exec(
    file,
    `lspci -nn; lspci -vv -s 41:00.0 | grep -E 'Total VFs|VF offset'; lspci -vv -s 41:00.5 | grep -E 'Region|IOMMU'
     driverctl list-devices; ls /sys/class/mdev_bus | tr '\\n' ' '; echo
     cat ${PF}/sriov_totalvfs ${PF}/sriov_numvfs ${PF}/sriov_offset ${PF}/sriov_stride ${PF}/sriov_vf_device
     readlink ${PF}/virtfn0 ${PF}/virtfn3 /sys/bus/pci/devices/0000:41:00.5/physfn
     cat /sys/bus/pci/devices/0000:41:00.5/vendor /sys/bus/pci/devices/0000:41:00.5/device
     head -c 4 /sys/bus/pci/devices/0000:41:00.5/config | od -An -tx1
     echo 4 > ${PF}/sriov_numvfs && echo same-count-ok
     echo 17 > ${PF}/sriov_numvfs || echo 'more than totalvfs refused'
     echo 2 > ${PF}/sriov_numvfs || echo 'no sriov_configure'
     echo off > ${PF}/sriov_drivers_autoprobe; cat ${PF}/sriov_drivers_autoprobe; echo 2 > ${PF}/sriov_drivers_autoprobe || echo 'kstrtobool refuses 2'`,
  );
  t.equal(r.code, 0);
  t.same(
    r.err.split('\n').filter((l) => l !== '' && !MACHINE.test(l)),
    [
      'bash: line 8: echo: write error: Numerical result out of range',
      'bash: line 9: echo: write error: No such file or directory',
      'bash: line 10: echo: write error: Invalid argument',
    ],
  );
  t.equal(
    r.out,
    [
      '41:00.0 3D controller [0302]: NVIDIA Corporation GA102GL [A10] [10de:2236] (rev a1)',
      '41:00.4 3D controller [0302]: NVIDIA Corporation GA102GL [A10] [10de:2236] (rev a1)',
      '41:00.5 3D controller [0302]: NVIDIA Corporation GA102GL [A10] [10de:2236] (rev a1)',
      '41:00.6 3D controller [0302]: NVIDIA Corporation GA102GL [A10] [10de:2236] (rev a1)',
      '41:00.7 3D controller [0302]: NVIDIA Corporation GA102GL [A10] [10de:2236] (rev a1)',
      '\t\tInitial VFs: 16, Total VFs: 16, Number of VFs: 4, Function Dependency Link: 00',
      '\t\tVF offset: 4, stride: 1, Device ID: 2236',
      '\tIOMMU group: 2',
      '\tRegion 0: Memory at c1040000 (32-bit, non-prefetchable) [virtual] [size=256K]',
      '\tRegion 1: Memory at 38840000000 (64-bit, prefetchable) [virtual] [size=1G]',
      '0000:41:00.0 nvidia',
      '0000:41:00.4 nvidia',
      '0000:41:00.5 nvidia',
      '0000:41:00.6 nvidia',
      '0000:41:00.7 nvidia',
      '0000:41:00.4 0000:41:00.5 0000:41:00.6 0000:41:00.7 ',
      '16', '4', '4', '1', '2236',
      '../0000:41:00.4', '../0000:41:00.7', '../0000:41:00.0',
      // The kernel's vendor/device files name the VF; its config space answers 0xffff (SR-IOV 1.1 §3.4.1.1).
      '0x10de', '0x2236',
      ' ff ff ff ff',
      'same-count-ok',
      'more than totalvfs refused',
      'no sriov_configure',
      '0',
      'kstrtobool refuses 2',
      '',
    ].join('\n'),
  );
});
