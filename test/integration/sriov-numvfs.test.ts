import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { CLI, type Daemon, cliEnv, scratch, sh, startDaemon } from '../helpers/daemon';

// sriov_numvfs as NVIDIA's sriov-manage uses it (drivers/pci/iov.c sriov_numvfs_store and the PF
// driver's sriov_configure): 0 takes every VF away with its mdev parent and mdevs, a count adds
// that many VFs that become mdev parents again, another count while VFs are enabled is EBUSY,
// and the uevents say so in the kernel's order (the VFs' own, then KOBJ_CHANGE of the PF).

const PFN = '0000:41:00.0';
const PF = `bus/pci/devices/${PFN}`;
const DEVPATH_PF = `/devices/pci0000:40/${PFN}`;
const U1 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const U2 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1002';

const SRIOV = {
  parents: [
    {
      name: PFN,
      path: `devices/pci0000:40/${PFN}`,
      pci: {
        vendor: '0x10de', device: '0x2236', class: '0x030200', driver: 'nvidia',
        sriov: { totalVfs: 16, numVfs: 4, offset: 4, stride: 1, vfDevice: '0x2236', mdevOn: 'vfs' },
      },
      mdevDriver: 'nvidia-vgpu-vfio',
      capacity: { model: 'counter', max: 1 },
      types: [{ name: '592', prettyName: 'NVIDIA A10-4Q' }],
    },
  ],
};

function events(dir: string, since: number, until: string): Record<string, string>[] {
  const r = spawnSync(process.execPath, [CLI, 'events', dir, '--since', String(since), '--until', until, '--timeout', '10'], {
    encoding: 'utf8',
    timeout: 30000,
    env: cliEnv(),
  });
  if (r.status !== 0) throw new Error(`mdevfs events: ${r.stderr}`);
  return r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, string>);
}

const work = scratch('mdevfs-numvfs-');
writeFileSync(join(work, 'a10.json'), JSON.stringify(SRIOV));

/** A daemon on the profile above, stopped when the test ends. */
async function mount(t: Test): Promise<Daemon> {
  const d = await startDaemon({ profile: join(work, 'a10.json') });
  t.teardown(() => d.stop());
  return d;
}

const short = (ev: Record<string, string>) => `${ev.ACTION} ${ev.DEVPATH}${ev.DRIVER ? ` ${ev.DRIVER}` : ''}`;
const seq = (evs: Record<string, string>[]) => Number(evs.at(-1)!.SEQNUM);

t.test('0 disables the VFs with their mdevs, a count enables them again as mdev parents', async (t) => {
  const d = await mount(t);

  const create = (vf: string, u: string) => `echo ${u} > class/mdev_bus/${vf}/mdev_supported_types/nvidia-592/create`;
  let r = sh(d.dir, `${create('0000:41:00.4', U1)} && ls bus/mdev/devices && echo 2 > ${PF}/sriov_numvfs; cat ${PF}/sriov_numvfs; ls class/mdev_bus | wc -l`);
  t.match(r.stderr, /echo: write error: Device or resource busy/, 'another count while 4 are enabled: EBUSY');
  t.equal(r.stdout, `${U1}\n4\n4\n`, 'and nothing changed');
  const before = seq(events(d.dir, 0, `bind:${U1}`));

  r = sh(d.dir, `echo 0 > ${PF}/sriov_numvfs && cat ${PF}/sriov_numvfs; ls bus/pci/devices; ls class/mdev_bus bus/mdev/devices ${PF} | grep -c -e virtfn -e '^0000' -e '-'; test -e bus/pci/devices/0000:41:00.4 || echo gone`);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, `0\n${PFN}\n0\ngone\n`, 'no VF, no mdev parent, no mdev, no virtfn link');
  const off = events(d.dir, before, 'remove:0000:41:00.7').map(short);
  t.same(off.slice(0, 4), [
    `remove /devices/pci0000:40/0000:41:00.4/${U1}/vfio-dev/vfio0`,
    'remove /devices/virtual/vfio/5', // its VFIO group (the PF's IOMMU group is 0, the VFs' 1-4)
    `unbind /devices/pci0000:40/0000:41:00.4/${U1}`,
    `remove /devices/pci0000:40/0000:41:00.4/${U1}`,
  ], 'the mdev goes first, with its parent');
  const vfEvents = off.filter((e) => /^(unbind|remove) \/devices\/pci0000:40\/0000:41:00\.[4-7]( |$)/.test(e));
  t.same(vfEvents, ['4', '5', '6', '7'].flatMap((f) => [`unbind /devices/pci0000:40/0000:41:00.${f}`, `remove /devices/pci0000:40/0000:41:00.${f}`]), 'then each VF, VF 0 first: unbound, removed');

  r = sh(
    d.dir,
    `echo 0 > ${PF}/sriov_numvfs && echo noop; echo 3 > ${PF}/sriov_numvfs && cat ${PF}/sriov_numvfs; ls class/mdev_bus | tr '\\n' ' '; echo
     readlink ${PF}/virtfn0 ${PF}/virtfn2 bus/pci/devices/0000:41:00.6/physfn bus/pci/devices/0000:41:00.6/driver; test -e ${PF}/virtfn3 || echo no-virtfn3
     ${create('0000:41:00.5', U2)} && readlink bus/mdev/devices/${U2} && cat class/mdev_bus/0000:41:00.5/mdev_supported_types/nvidia-592/available_instances`,
  );
  t.equal(r.code, 0, r.stderr);
  t.equal(
    r.stdout,
    [
      'noop',
      '3',
      '0000:41:00.4 0000:41:00.5 0000:41:00.6 ',
      '../0000:41:00.4',
      '../0000:41:00.6',
      `../${PFN}`,
      '../../../bus/pci/drivers/nvidia',
      'no-virtfn3',
      `../../../devices/pci0000:40/0000:41:00.5/${U2}`,
      '0',
      '',
    ].join('\n'),
  );
  const on = events(d.dir, before, `change:${PFN}`);
  const after = on.slice(on.findIndex((e) => short(e) === 'remove /devices/pci0000:40/0000:41:00.7') + 1).map(short);
  t.same(
    after.filter((e) => /^(add|bind|change) \/devices\/pci0000:40\/0000:41:00\.[0-7]( |$)/.test(e)),
    [
      ...['4', '5', '6'].flatMap((f) => [
        `add /devices/pci0000:40/0000:41:00.${f}`,
        `change /devices/pci0000:40/0000:41:00.${f}`,
        `change /devices/pci0000:40/0000:41:00.${f} nvidia`,
        `bind /devices/pci0000:40/0000:41:00.${f} nvidia`,
      ]),
      `change ${DEVPATH_PF} nvidia`,
    ],
    'each VF added, linked (change), made an mdev parent by its probe (change), bound; VF 0 first; then KOBJ_CHANGE of the PF',
  );
  t.same(
    on.filter((e) => e.ACTION === 'change' && e.DEVPATH.endsWith('41:00.5')).map((e) => e.MDEV_STATE),
    ['unregistered', undefined, 'registered'],
    'VF 1 left as an mdev parent, came back (pci_iov_sysfs_link), and registered again',
  );
  t.equal(on.filter((e) => e.ACTION === 'change' && e.DEVPATH === DEVPATH_PF).length, 1, "one change of the PF, sriov_enable's: sriov_disable sends none");
  t.equal(on.at(-1)!.SUBSYSTEM, 'pci');
});

t.test('a VF taken away takes its virtfnN link from the kernel\'s caches too (vendor-specific VFIO: no mdev parent goes)', async (t) => {
  const d = await startDaemon({ profile: 'nvidia-l40s' });
  t.teardown(() => d.stop());
  const L40S = 'bus/pci/devices/0000:00:07.0';
  const r = sh(d.dir, `readlink ${L40S}/virtfn0 && echo 0 > ${L40S}/sriov_numvfs && { readlink ${L40S}/virtfn0 || echo gone; }`);
  t.equal(r.stdout, '../0000:00:07.4\ngone\n', r.stderr);
});

t.test('without sriov_drivers_autoprobe the VFs come unbound, and binding one makes it a parent', async (t) => {
  const d = await mount(t);
  const r = sh(
    d.dir,
    `echo 0 > ${PF}/sriov_drivers_autoprobe && echo 0 > ${PF}/sriov_numvfs && echo 2 > ${PF}/sriov_numvfs
     ls bus/pci/devices | tr '\\n' ' '; echo; test -e bus/pci/devices/0000:41:00.4/driver || echo unbound; ls class/mdev_bus | wc -l
     echo 0000:41:00.4 > bus/pci/drivers/nvidia/bind && ls class/mdev_bus`,
  );
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, `${PFN} 0000:41:00.4 0000:41:00.5 \nunbound\n0\n0000:41:00.4\n`);
});

t.test('a PF bound to vfio-pci, or to no driver, cannot change its VFs (ENOENT)', async (t) => {
  const d = await mount(t);
  const r = sh(
    d.dir,
    `echo ${PFN} > ${PF}/driver/unbind && { echo 0 > ${PF}/sriov_numvfs || echo no-driver; }
     echo vfio-pci > ${PF}/driver_override && echo ${PFN} > bus/pci/drivers/vfio-pci/bind && { echo 0 > ${PF}/sriov_numvfs || echo vfio-pci; }
     cat ${PF}/sriov_numvfs; ls class/mdev_bus | wc -l`,
  );
  t.equal(r.stdout, 'no-driver\nvfio-pci\n4\n4\n');
  t.equal((r.stderr.match(/No such file or directory/g) ?? []).length, 2, r.stderr);
});
