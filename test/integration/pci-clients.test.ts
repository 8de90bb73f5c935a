import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { BUILTIN_PROFILES } from '../../src/drivers/profile';
import { backendArgs, CLI, cliEnv, scratch } from '../helpers/daemon';

// Real PCI clients from Debian's packages (pciutils, driverctl, sysfsutils) run through
// `mdevfs exec` against every built-in profile and against an SR-IOV profile file: they find
// every function, print no error line, and never see the machine's own devices (bus/pci is
// always there, as on a kernel built with CONFIG_PCI, so lspci does not fall back to the host's
// /proc/bus/pci).
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

/** The PCI functions a built-in declares: its PCI parents (VFs too) and its other functions (a host bridge). */
function functionsOf(name: string): string[] {
  const r = exec(name, 'ls /sys/bus/pci/devices');
  return r.out.split('\n').filter(Boolean);
}

/** Each client with its exit code, so one that fails is named. */
const CLIENTS = ['lspci', 'lspci -vv', 'driverctl list-devices', 'systool -b pci -v'];
const clients = CLIENTS.map((c) => `echo "== ${c}"; ${c}; echo "rc=$?"`).join('; ');

/** The part of the output of client c (between its "== c" line and its "rc=" line). */
function section(out: string, c: string): { text: string; rc: string } {
  const m = new RegExp(`^== ${c}\n([\\s\\S]*?)^rc=(\\d+)$`, 'm').exec(out);
  return { text: m?.[1] ?? '<missing>', rc: m?.[2] ?? '<missing>' };
}

t.test('lspci, driverctl and systool on every built-in profile', async (t) => {
  t.equal(Object.keys(BUILTIN_PROFILES).length, 8);
  for (const [name, profile] of Object.entries(BUILTIN_PROFILES)) {
    const expected = [
      ...profile.parents.filter((p) => p.pci).map((p) => p.name),
      ...(profile.pciDevices ?? []).map((d) => d.name),
    ];
    const fns = functionsOf(name);
    t.ok(expected.every((f) => fns.includes(f)), `${name}: bus/pci/devices holds the profile's functions`);
    const r = exec(name, `${clients}; lspci -xxxx >/dev/null; echo "rc=$?"`);
    t.equal(r.code, 0, `${name}: exec exits 0`);
    t.notMatch(r.out, BROKEN, `${name}: nothing unreadable`);
    const lspci = section(r.out, 'lspci');
    // Every line names a function of the tree (bus:dev.fn without the domain), nothing else.
    t.same(lspci.text.split('\n').filter(Boolean).map((l) => l.split(' ')[0]), fns.map((f) => f.slice(5)), `${name}: lspci lists the tree's functions only`);
    const systool = section(r.out, 'systool -b pci -v');
    t.equal(systool.rc, '0', `${name}: systool exits 0`);
    t.same([...systool.text.matchAll(/^ {2}([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])\b/gm)].map((m) => m[1]), fns, `${name}: systool walks the tree's functions`);
    const driverctl = section(r.out, 'driverctl list-devices');
    if (fns.length === 0) {
      // An s390 LPAR without zPCI functions: an empty bus/pci, and driverctl says so (exit 1).
      t.equal(lspci.text, '', `${name}: lspci lists nothing (the host's devices stay out)`);
      t.equal(lspci.rc, '0', `${name}: lspci exits 0`);
      t.equal(section(r.out, 'lspci -vv').text, '', `${name}: lspci -vv lists nothing`);
      t.equal(driverctl.text, '', `${name}: driverctl prints nothing on stdout`);
      t.equal(driverctl.rc, '1', `${name}: driverctl list-devices exits 1 on an empty PCI bus`);
      t.same(errorLines(r.err), ['driverctl: No overridable devices found. Kernel too old?'], `${name}: driverctl's own line only`);
      t.equal(systool.text, 'Bus = "pci"\n\n', `${name}: systool shows the empty bus`);
      continue;
    }
    t.same(errorLines(r.err), [], `${name}: no error line`);
    for (const c of CLIENTS) t.equal(section(r.out, c).rc, '0', `${name}: ${c} exits 0`);
    t.same(
      driverctl.text.split('\n').filter(Boolean).map((l) => l.split(' ')[0]),
      fns,
      `${name}: driverctl lists every function`,
    );
    for (const p of profile.parents.filter((x) => x.pci)) {
      t.match(driverctl.text, new RegExp(`^${p.name} ${p.pci!.driver}$`, 'm'), `${name}: driverctl lists ${p.name} with its driver`);
    }
    for (const d of profile.pciDevices ?? []) t.match(driverctl.text, new RegExp(`^${d.name} \\(none\\)$`, 'm'), `${name}: ${d.name} has no driver`);
  }
});

t.test('samples: the reference machine\'s host bridge, as lspci -vv and systool read it', async (t) => {
  const r = exec('samples', 'lspci -nn -vv -s 00:00.0; systool -b pci -v 0000:00:00.0 | grep -E "class|device  |vendor  |revision|subsystem_"');
  t.same(errorLines(r.err), []);
  t.match(r.out, '00:00.0 Host bridge [0600]: Intel Corporation 440FX - 82441FX PMC [Natoma] [8086:1237] (rev 02)');
  t.match(r.out, 'Subsystem: Red Hat, Inc. Qemu virtual machine [1af4:1100]');
  t.notMatch(r.out, 'Kernel driver in use');
  t.match(r.out, /class\s+= "0x060000"/);
  t.match(r.out, /subsystem_vendor\s+= "0x1af4"/);
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
     echo "vfio-dev=$(ls ${D}/vfio-dev) class/vfio-dev=$(ls /sys/class/vfio-dev) class/vfio=$(ls /sys/class/vfio)"
     driverctl --nosave unset-override 0000:00:02.0; echo "unset=$?"
     driverctl list-devices
     test -e ${D}/vfio-dev || echo "no vfio-dev, class/vfio=$(ls /sys/class/vfio)"
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
      // i915's remove unregisters the mdev parent: its mdevs and types go with it (docs/mdev-abi.md, "Parent registration and unregistration").
      'parents=0 mdevs=0 types=0',
      // vfio-pci's probe registered the function with VFIO: vfio0 (the vGPU's went with it) and group 0's device.
      'vfio-dev=vfio0 class/vfio-dev=vfio0 class/vfio=0',
      'unset=0',
      '0000:00:02.0 i915',
      'no vfio-dev, class/vfio=',
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
     echo 2 > ${PF}/sriov_numvfs || echo 'another count while VFs are enabled refused'
     echo off > ${PF}/sriov_drivers_autoprobe; cat ${PF}/sriov_drivers_autoprobe; echo 2 > ${PF}/sriov_drivers_autoprobe || echo 'kstrtobool refuses 2'`,
  );
  t.equal(r.code, 0);
  t.same(
    r.err.split('\n').filter((l) => l !== '' && !MACHINE.test(l)),
    [
      'bash: line 8: echo: write error: Numerical result out of range',
      'bash: line 9: echo: write error: Device or resource busy',
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
      'another count while VFs are enabled refused',
      '0',
      'kstrtobool refuses 2',
      '',
    ].join('\n'),
  );
});
