import t from 'tap';
import { Errno } from '../../src/base/errno';
import { Emulation } from '../../src/emulation';
import type { ParentProfile, Profile } from '../../src/drivers/profile-types';
import { BUILTIN_PROFILES } from '../../src/drivers/profile';
import { SAMPLES } from '../../src/drivers/samples';
import type { Uevent } from '../../src/events/uevents';
import { silentLogger } from '../../src/base/log';
import type { Kernfs } from '../../src/sysfs/kernfs';
import { ManualClock, tick } from '../helpers/manual-clock';

const U1 = '11111111-1111-1111-1111-111111111111';
const U2 = '22222222-2222-2222-2222-222222222222';
const MTTY = '/devices/virtual/mtty/mtty';

/** Everything but SEQNUM, one line per event: what the kernel fixtures compare. */
const line = (ev: Uevent) =>
  Object.entries(ev)
    .filter(([k]) => k !== 'SEQNUM')
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');

/** One write(2) to a file of the tree, as a shell's echo does. */
async function writeFile(kernfs: Kernfs, path: string, text: string): Promise<number> {
  const fh = kernfs.open(path, 1);
  try {
    return await kernfs.write(fh, Buffer.from(text));
  } finally {
    kernfs.release(fh);
  }
}

function emulation(profile: Profile = SAMPLES, opts: { abi?: string; clock?: ManualClock } = {}) {
  const e = new Emulation(profile, { log: silentLogger, ...opts });
  const seen: Uevent[] = [];
  e.uevents.subscribe((ev) => {
    seen.push(ev);
  });
  /** The events sent since the last call, as lines. */
  const take = async () => {
    await e.kernfs.settled();
    await tick();
    return seen.splice(0).map(line);
  };
  return { ...e, seen, take };
}

t.test('create, unbind, remove: the driver core order, SEQNUM increasing', async (t) => {
  const { core, take, uevents } = emulation();
  const mtty = core.parents.get('mtty')!.types.get('mtty-2')!;
  const all: Uevent[] = [];
  uevents.subscribe((ev) => {
    all.push(ev);
  });
  await core.createStore(mtty, Buffer.from(U1));
  t.same(await take(), [
    `ACTION=add DEVPATH=${MTTY}/${U1} SUBSYSTEM=mdev`,
    `ACTION=add DEVPATH=/devices/virtual/vfio/0 SUBSYSTEM=vfio MAJOR=253 MINOR=0 DEVNAME=vfio/0`,
    `ACTION=add DEVPATH=${MTTY}/${U1}/vfio-dev/vfio0 SUBSYSTEM=vfio-dev`,
    `ACTION=bind DEVPATH=${MTTY}/${U1} SUBSYSTEM=mdev DRIVER=mtty`,
  ]);
  await core.unbindStore('mtty', Buffer.from(U1 + '\n'));
  t.same(await take(), [
    `ACTION=remove DEVPATH=${MTTY}/${U1}/vfio-dev/vfio0 SUBSYSTEM=vfio-dev`,
    `ACTION=remove DEVPATH=/devices/virtual/vfio/0 SUBSYSTEM=vfio MAJOR=253 MINOR=0 DEVNAME=vfio/0`,
    `ACTION=unbind DEVPATH=${MTTY}/${U1} SUBSYSTEM=mdev`,
  ]);
  await core.removeStore(core.devices.get(U1)!, Buffer.from('1'));
  t.same(await take(), [`ACTION=remove DEVPATH=${MTTY}/${U1} SUBSYSTEM=mdev`]);
  t.same(
    all.map((e) => Number(e.SEQNUM)),
    [1, 2, 3, 4, 5, 6, 7, 8],
    'SEQNUM counts every event from 1',
  );
  t.equal(uevents.lastSeqnum, 8);
});

t.test('4.17: bind to vfio_mdev, no vfio-dev child', async (t) => {
  const { core, take } = emulation(SAMPLES, { abi: '4.17' });
  const mtty = core.parents.get('mtty')!.types.get('mtty-2')!;
  await core.createStore(mtty, Buffer.from(U1));
  t.same(await take(), [`ACTION=add DEVPATH=${MTTY}/${U1} SUBSYSTEM=mdev`, `ACTION=add DEVPATH=/devices/virtual/vfio/0 SUBSYSTEM=vfio MAJOR=253 MINOR=0 DEVNAME=vfio/0`, `ACTION=bind DEVPATH=${MTTY}/${U1} SUBSYSTEM=mdev DRIVER=vfio_mdev`]);
});

const slow: ParentProfile = {
  name: 'slow',
  path: 'devices/virtual/slow/slow',
  class: 'slow',
  mdevDriver: 'slow',
  capacity: { model: 'pool', size: 8 },
  faults: { createDelayMs: 10, removeDelayMs: 10 },
  types: [{ name: 'a' }],
};

t.test('a device is announced only once the whole of it is there, and its removal once it is gone', async (t) => {
  const clock = new ManualClock();
  const { core, kernfs, uevents, take } = emulation({ parents: [slow] }, { clock });
  const type = core.parents.get('slow')!.types.get('slow-a')!;
  const dir = `/devices/virtual/slow/slow/${U1}`;
  // What a listener finds when it reads sysfs as each event arrives.
  const found: string[] = [];
  const exists = (p: string) => {
    try {
      kernfs.resolve(p);
      return true;
    } catch {
      return false;
    }
  };
  uevents.subscribe((ev) => {
    const has = ['mdev_type', 'driver', 'iommu_group', 'vfio-dev/vfio0'].filter((f) => exists(`${dir}/${f}`));
    found.push(`${ev.ACTION} ${exists(dir) ? has.join(',') : 'gone'}`);
  });
  const creating = core.createStore(type, Buffer.from(U1));
  await tick();
  t.ok(exists(dir), 'the directory is there while the vendor probes');
  t.same(await take(), [], 'nothing is sent while the create is in flight');
  while (clock.waiting === 0) await tick();
  clock.releaseAll();
  await creating;
  t.same((await take()).map((l) => l.split(' ')[0]), ['ACTION=add', 'ACTION=add', 'ACTION=add', 'ACTION=bind']);

  const removing = core.removeStore(core.devices.get(U1)!, Buffer.from('1'));
  await tick();
  t.same(await take(), [], 'nothing is sent while the remove is in flight');
  while (clock.waiting === 0) await tick();
  clock.releaseAll();
  await removing;
  t.same((await take()).map((l) => l.split(' ')[0]), ['ACTION=remove', 'ACTION=remove', 'ACTION=unbind', 'ACTION=remove']);
  const whole = 'mdev_type,driver,iommu_group,vfio-dev/vfio0';
  t.same(found, [`add ${whole}`, `add ${whole}`, `add ${whole}`, `bind ${whole}`, 'remove gone', 'remove gone', 'unbind gone', 'remove gone']);
});

t.test('a create the vendor refuses: add, then remove (the device appeared briefly)', async (t) => {
  const flaky: ParentProfile = { ...slow, name: 'flaky', path: 'devices/virtual/flaky/flaky', class: 'flaky', mdevDriver: 'flaky', faults: { createErrno: 'EIO', createFailEvery: 1 } };
  const { core, take } = emulation({ parents: [flaky] });
  const type = core.parents.get('flaky')!.types.get('flaky-a')!;
  await t.rejects(core.createStore(type, Buffer.from(U1)), { name: 'MdevError', errno: Errno.EIO });
  t.same(await take(), [`ACTION=add DEVPATH=/devices/virtual/flaky/flaky/${U1} SUBSYSTEM=mdev`, `ACTION=remove DEVPATH=/devices/virtual/flaky/flaky/${U1} SUBSYSTEM=mdev`]);
  await t.rejects(core.createStore(type, Buffer.from('not-a-uuid')), { name: 'MdevError', errno: Errno.EINVAL });
  t.same(await take(), [], 'a create refused before device_add sends nothing');
});

t.test('writes to uevent files send synthetic events (kobject_synth_uevent)', async (t) => {
  const { core, kernfs, take } = emulation();
  await core.createStore(core.parents.get('mtty')!.types.get('mtty-1')!, Buffer.from(U1));
  await take();
  await writeFile(kernfs, `${MTTY}/${U1}/uevent`, 'add\n');
  await writeFile(kernfs, `${MTTY}/${U1}/vfio-dev/vfio0/uevent`, 'change');
  await writeFile(kernfs, `${MTTY}/uevent`, `change ${U2} A=1 bc=Xy\n`);
  await writeFile(kernfs, '/bus/mdev/drivers/mtty/uevent', 'add');
  await writeFile(kernfs, '/module/mtty/uevent', 'remove');
  await writeFile(kernfs, '/bus/mdev/uevent', 'online');
  t.same(await take(), [
    `ACTION=add DEVPATH=${MTTY}/${U1} SUBSYSTEM=mdev SYNTH_UUID=0 DRIVER=mtty`,
    `ACTION=change DEVPATH=${MTTY}/${U1}/vfio-dev/vfio0 SUBSYSTEM=vfio-dev SYNTH_UUID=0`,
    `ACTION=change DEVPATH=${MTTY} SUBSYSTEM=mtty SYNTH_UUID=${U2} SYNTH_ARG_A=1 SYNTH_ARG_bc=Xy`,
    'ACTION=add DEVPATH=/bus/mdev/drivers/mtty SUBSYSTEM=drivers SYNTH_UUID=0',
    'ACTION=remove DEVPATH=/module/mtty SUBSYSTEM=module SYNTH_UUID=0',
    'ACTION=online DEVPATH=/bus/mdev SUBSYSTEM=bus SYNTH_UUID=0',
  ]);
  for (const bad of ['\n', 'added', 'add ', `add ${U2} `, `add ${U2} a`, `add ${U2} a=`, `add ${U2} a-b=c`, `add ${U2}x`, 'add not-a-uuid', 'add\n\n']) {
    await t.rejects(writeFile(kernfs, `${MTTY}/${U1}/uevent`, bad), { name: 'MdevError', errno: Errno.EINVAL }, JSON.stringify(bad));
  }
  t.same(await take(), [], 'a refused write sends nothing');
});

t.test('parents: module load and unload order, children first', async (t) => {
  const { core, take } = emulation();
  await core.createStore(core.parents.get('mtty')!.types.get('mtty-1')!, Buffer.from(U1));
  await take();
  await core.unregisterParent('mtty');
  t.same(await take(), [
    `ACTION=remove DEVPATH=${MTTY}/${U1}/vfio-dev/vfio0 SUBSYSTEM=vfio-dev`,
    `ACTION=remove DEVPATH=/devices/virtual/vfio/0 SUBSYSTEM=vfio MAJOR=253 MINOR=0 DEVNAME=vfio/0`,
    `ACTION=unbind DEVPATH=${MTTY}/${U1} SUBSYSTEM=mdev`,
    `ACTION=remove DEVPATH=${MTTY}/${U1} SUBSYSTEM=mdev`,
    `ACTION=change DEVPATH=${MTTY} SUBSYSTEM=mtty MDEV_STATE=unregistered`,
    `ACTION=remove DEVPATH=${MTTY} SUBSYSTEM=mtty`,
    'ACTION=remove DEVPATH=/bus/mdev/drivers/mtty SUBSYSTEM=drivers',
    'ACTION=remove DEVPATH=/class/mtty SUBSYSTEM=class',
    'ACTION=remove DEVPATH=/module/mtty SUBSYSTEM=module',
  ]);
});

t.test('late subscribers get the last 1024 events, oldest first, then the live ones', async (t) => {
  const { core, kernfs, take, uevents } = emulation();
  const bus = kernfs.open('/bus/mdev/uevent', 1);
  for (let i = 0; i < 1100; i++) await kernfs.write(bus, Buffer.from('change'));
  kernfs.release(bus);
  await take();
  const replayed: number[] = [];
  uevents.subscribe((ev) => {
    replayed.push(Number(ev.SEQNUM));
  }, 0);
  t.same(replayed, Array.from({ length: 1024 }, (_, i) => 77 + i), 'SEQNUM 77..1100');
  const since: number[] = [];
  uevents.subscribe((ev) => {
    since.push(Number(ev.SEQNUM));
  }, 1098);
  await core.createStore(core.parents.get('mtty')!.types.get('mtty-1')!, Buffer.from(U1));
  await take();
  t.same(since, [1099, 1100, 1101, 1102, 1103, 1104], 'the retained ones above SEQNUM 1098, then the live ones');
});

t.test('a PCI parent (GVT-g): MDEV_STATE carries the PCI device\'s own variables; the device itself stays', async (t) => {
  const { core, take, ready } = emulation(BUILTIN_PROFILES.gvt!);
  await ready;
  await take();
  await core.unregisterParent('0000:00:02.0');
  t.same(await take(), [
    'ACTION=change DEVPATH=/devices/pci0000:00/0000:00:02.0 SUBSYSTEM=pci MDEV_STATE=unregistered DRIVER=i915 PCI_CLASS=30000 ' +
      'PCI_ID=8086:5912 PCI_SUBSYS_ID=8086:2212 PCI_SLOT_NAME=0000:00:02.0 MODALIAS=pci:v00008086d00005912sv00008086sd00002212bc03sc00i00',
    'ACTION=remove DEVPATH=/bus/mdev/drivers/intel_vgpu_mdev SUBSYSTEM=drivers',
    'ACTION=remove DEVPATH=/module/kvmgt SUBSYSTEM=module',
  ]);
});

t.test('the driver core\'s own devices: a PCI function unbound and bound again', async (t) => {
  const { kernfs, take, ready } = emulation(BUILTIN_PROFILES['nvidia-a10']!);
  await ready;
  await take();
  await writeFile(kernfs, '/bus/pci/drivers/nvidia/unbind', '0000:00:06.0');
  await writeFile(kernfs, '/bus/pci/drivers/nvidia/bind', '0000:00:06.0');
  const pci =
    'PCI_CLASS=30200 PCI_ID=10DE:2236 PCI_SUBSYS_ID=10DE:1482 PCI_SLOT_NAME=0000:00:06.0 MODALIAS=pci:v000010DEd00002236sv000010DEsd00001482bc03sc02i00';
  t.same(await take(), [
    `ACTION=unbind DEVPATH=/devices/pci0000:00/0000:00:06.0 SUBSYSTEM=pci ${pci}`,
    `ACTION=bind DEVPATH=/devices/pci0000:00/0000:00:06.0 SUBSYSTEM=pci DRIVER=nvidia ${pci}`,
  ]);
});

t.test('uevent files of the driver core\'s devices, drivers and buses send synthetic events (udevadm trigger)', async (t) => {
  const { kernfs, take, ready } = emulation(BUILTIN_PROFILES['nvidia-a10']!);
  await ready;
  await take();
  await writeFile(kernfs, '/devices/pci0000:00/0000:00:06.0/uevent', 'change');
  await writeFile(kernfs, '/bus/pci/drivers/nvidia/uevent', 'add');
  await writeFile(kernfs, '/bus/pci/uevent', 'change');
  t.equal(await writeFile(kernfs, '/devices/pci0000:00/uevent', 'add'), 3, 'a root device: the write succeeds...');
  await t.rejects(writeFile(kernfs, '/bus/pci/uevent', 'bogus'), { name: 'MdevError', errno: Errno.EINVAL });
  t.same(
    (await take()).map((l) => l.replace(/ PCI_CLASS.*/, ' ...')),
    [
      'ACTION=change DEVPATH=/devices/pci0000:00/0000:00:06.0 SUBSYSTEM=pci SYNTH_UUID=0 DRIVER=nvidia ...',
      'ACTION=add DEVPATH=/bus/pci/drivers/nvidia SUBSYSTEM=drivers SYNTH_UUID=0',
      'ACTION=change DEVPATH=/bus/pci SUBSYSTEM=bus SYNTH_UUID=0',
    ],
    '...but sends nothing (dev_uevent_filter)',
  );
});

t.test('GVT-g: unbinding the PCI function from i915 unregisters only the parent; kvmgt and its mdev driver stay loaded', async (t) => {
  const { core, kernfs, take, ready } = emulation(BUILTIN_PROFILES.gvt!);
  await ready;
  await take();
  const GVT = '/devices/pci0000:00/0000:00:02.0';
  await core.create(core.parents.get('0000:00:02.0')!.types.get('i915-GVTg_V5_4')!, U1);
  await take();
  const loaded = () => [kernfs.readdir('/bus/mdev/drivers').includes('intel_vgpu_mdev'), kernfs.readdir('/module').includes('kvmgt')];
  await writeFile(kernfs, '/bus/pci/drivers/i915/unbind', '0000:00:02.0');
  const pci = (l: string) => l.replace(/ PCI_CLASS.*/, ' ...');
  t.same((await take()).map(pci), [
    `ACTION=remove DEVPATH=${GVT}/${U1}/vfio-dev/vfio0 SUBSYSTEM=vfio-dev`,
    // The GPU's own IOMMU group is 0: the mdev's is 1, its VFIO group device the first (minor 0).
    `ACTION=remove DEVPATH=/devices/virtual/vfio/1 SUBSYSTEM=vfio MAJOR=253 MINOR=0 DEVNAME=vfio/1`,
    `ACTION=unbind DEVPATH=${GVT}/${U1} SUBSYSTEM=mdev`,
    `ACTION=remove DEVPATH=${GVT}/${U1} SUBSYSTEM=mdev`,
    `ACTION=change DEVPATH=${GVT} SUBSYSTEM=pci MDEV_STATE=unregistered DRIVER=i915 ...`,
    `ACTION=unbind DEVPATH=${GVT} SUBSYSTEM=pci ...`,
  ], 'the children, the parent\'s MDEV_STATE and the PCI unbind: no driver or module remove');
  t.same(loaded(), [true, true], 'bus/mdev/drivers/intel_vgpu_mdev and module/kvmgt stay');
  t.same(kernfs.readdir('/class/mdev_bus').filter((n) => n !== '.' && n !== '..'), [], 'the parent is gone from class/mdev_bus');
  t.same(kernfs.readdir('/module/kvmgt/drivers').filter((n) => n !== '.' && n !== '..'), ['mdev:intel_vgpu_mdev']);
  await writeFile(kernfs, '/bus/pci/drivers/i915/bind', '0000:00:02.0');
  t.same((await take()).map(pci), [
    `ACTION=change DEVPATH=${GVT} SUBSYSTEM=pci MDEV_STATE=registered DRIVER=i915 ...`,
    `ACTION=bind DEVPATH=${GVT} SUBSYSTEM=pci DRIVER=i915 ...`,
  ], 'binding back registers the parent: no driver or module add');
  t.ok(kernfs.readdir(`${GVT}/mdev_supported_types`).includes('i915-GVTg_V5_4'), 'its types are back');
  // rmmod kvmgt with i915 unbound: only the module's own events (the parent is not registered).
  await writeFile(kernfs, '/bus/pci/drivers/i915/unbind', '0000:00:02.0');
  await take();
  await core.unregisterParent('0000:00:02.0');
  t.same(await take(), [
    'ACTION=remove DEVPATH=/bus/mdev/drivers/intel_vgpu_mdev SUBSYSTEM=drivers',
    'ACTION=remove DEVPATH=/module/kvmgt SUBSYSTEM=module',
  ]);
  t.same(loaded(), [false, false], 'unloaded: driver and module gone');
  await t.rejects(core.unregisterParent('0000:00:02.0'), { name: 'MdevError', errno: Errno.ENODEV }, 'nothing left to unload');
  t.same(await take(), []);
});
