import t from 'tap';
import { DEVICE_ENTRIES, type DeviceEntry, type MdevDevice, PARENT_ENTRIES, type Part } from '../../src/core/mdev-objects';
import { Emulation } from '../../src/emulation';
import { GVT, SAMPLES } from '../../src/drivers/samples';
import { silentLogger } from '../../src/base/log';
import type { Invalidation, Kernfs } from '../../src/sysfs/kernfs';
import { HOST_DEVICE_CHANGING } from '../../src/sysfs/buses';
import { DEVICE_ELSEWHERE, DEVICE_ENTRIES_OF, MDEV_BUS_CLASS, MDEV_BUS_DEVICES } from '../../src/sysfs/mdev';
import type { CoreEvent } from '../../src/core/core';
import type { Listing } from '../../src/sysfs/context';
import { vendorClass } from '../../src/sysfs/class';
import { BUSES, CLASSES, MDEV_BUS, MDEV_DRIVERS, VFIO_DEVICES, busDevices, busDrivers, driverDevices, vfioDevEntry } from '../../src/sysfs/paths';
import { posix } from 'node:path';
import { IOMMU_GROUPS } from '../../src/sysfs/iommu-groups';
import { MODULES } from '../../src/sysfs/module';
import { GROUP_DEVICES, GROUP_LINKS } from '../../src/sysfs/vfio-groups';

// The property the per-subsystem descriptions guarantee: every entry they describe is built from the
// description (so the tree shows exactly those entries, of the kind described) and every entry has an
// invalidation rule (so hiding what shows it tells a caching kernel that it is gone).

const PARTS: Part[] = ['dir', 'remove', 'bound', 'vendor', 'links'];
const U = '00000000-0000-0000-0000-0000000000a1';

const KIND_OF_MODE: Record<number, string> = { 0o040000: 'dir', 0o100000: 'attr', 0o120000: 'link' };
const kindAt = (k: Kernfs, path: string) => KIND_OF_MODE[k.getattr(path).mode & 0o170000];
const covered = (path: string, inv: Invalidation) => {
  for (let p = path; p !== ''; p = p.slice(0, p.lastIndexOf('/'))) if (inv.entries.includes(p)) return true;
  return false;
};

async function emulationWithDevice() {
  const em = new Emulation(SAMPLES, { log: silentLogger });
  const type = em.core.parents.get('mtty')!.types.get('mtty-2')!;
  await em.core.create(type, U);
  const dev = em.core.devices.get(U)!;
  return { ...em, dev, devPath: '/' + [...dev.parent.placement.path, dev.uuid].join('/') };
}

/** One write(2) of text to a file of the tree. */
async function writeTo(kernfs: Kernfs, file: string, text: string): Promise<void> {
  const fh = kernfs.open(file, 1);
  try {
    await kernfs.write(fh, Buffer.from(text));
  } finally {
    kernfs.release(fh);
  }
}

const hide = (dev: MdevDevice, part: Part) => ({ kind: 'part' as const, dev, part, shown: false });

t.test('a device directory shows exactly the entries its description names, of the kind it says', async (t) => {
  const { kernfs, core, dev, devPath } = await emulationWithDevice();
  const listed = kernfs.readdir(devPath).filter((n) => n !== '.' && n !== '..');
  const vendorTops = new Set(dev.parent.driver.deviceAttrs(dev, core.abi).map((a) => a.path.split('/')[0]!));
  t.ok(vendorTops.size > 0, 'the sample has vendor attributes beside the core entries');
  t.same(
    listed.filter((n) => !vendorTops.has(n)),
    Object.keys(DEVICE_ENTRIES),
    'a bound device with every part shown lists the core entries of DEVICE_ENTRIES, in its order',
  );
  for (const [name, { kind }] of Object.entries(DEVICE_ENTRIES)) t.equal(kindAt(kernfs, `${devPath}/${name}`), kind, `${name} is a ${kind}`);
});

t.test('a virtual parent directory shows the core entries its description names', async (t) => {
  const { kernfs, dev } = await emulationWithDevice();
  const parentPath = '/' + dev.parent.placement.path.join('/');
  for (const [name, { kind }] of Object.entries(PARENT_ENTRIES)) t.equal(kindAt(kernfs, `${parentPath}/${name}`), kind, `${name} is a ${kind}`);
});

t.test('every entry of a device has an invalidation rule: hiding its part invalidates it', async (t) => {
  const { tree, core, dev, devPath } = await emulationWithDevice();
  t.same(
    PARTS.flatMap((p) => DEVICE_ENTRIES_OF[p]).sort(),
    (Object.keys(DEVICE_ENTRIES) as DeviceEntry[]).sort(),
    'each entry belongs to exactly one part',
  );
  for (const part of PARTS) {
    const inv = tree.invalidations(hide(dev, part));
    for (const name of DEVICE_ENTRIES_OF[part]) t.ok(covered(`${devPath}/${name}`, inv), `hiding '${part}' invalidates ${name}`);
    for (const path of DEVICE_ELSEWHERE[part](dev)) t.ok(covered('/' + path.join('/'), inv), `hiding '${part}' invalidates /${path.join('/')}`);
  }
  const vendor = tree.invalidations(hide(dev, 'vendor'));
  for (const a of dev.parent.driver.deviceAttrs(dev, core.abi)) {
    t.ok(covered(`${devPath}/${a.path}`, vendor), `hiding 'vendor' invalidates ${a.path}`);
  }
});

t.test("a part's places outside the device directory are what the tree shows there", async (t) => {
  const { kernfs, dev } = await emulationWithDevice();
  for (const part of PARTS) {
    for (const path of DEVICE_ELSEWHERE[part](dev)) t.equal(kindAt(kernfs, '/' + path.join('/')), 'link', `'${part}' shows /${path.join('/')}`);
  }
});

t.test('the subsystems a binding touches each invalidate their entry when it goes', async (t) => {
  const { tree, kernfs, dev } = await emulationWithDevice();
  const inv = tree.invalidations(hide(dev, 'bound'));
  const places = [
    `/kernel/iommu_groups/${dev.iommuGroup}`, // iommu-groups.ts
    `/class/vfio/${dev.iommuGroup}`, // vfio-groups.ts
    `/devices/virtual/vfio/${dev.iommuGroup}`, // vfio-groups.ts
    `/class/vfio-dev/vfio${dev.vfioIndex}`, // class.ts
  ];
  for (const p of places) {
    t.ok(kernfs.getattr(p), `${p} is shown while the device is bound`);
    t.ok(covered(p, inv), `unbinding invalidates ${p}`);
  }
});

t.test('a parent going invalidates its directory, its class links and its module', async (t) => {
  const { tree, core, kernfs, dev } = await emulationWithDevice();
  const parent = dev.parent;
  const places = [
    '/' + parent.placement.path.join('/'),
    `/class/mdev_bus/${parent.name}`,
    `/class/${parent.placement.className}/${parent.name}`,
  ];
  for (const p of places) t.ok(kernfs.getattr(p), `${p} is shown`);
  const inv = tree.invalidations({ kind: 'parent', parent, registered: false });
  for (const p of places) t.ok(covered(p, inv), `unregistering invalidates ${p}`);
  // Only invalidation sets that the core's state decides (another loaded parent may keep them) are
  // checked after the unregistration itself.
  const seen: Invalidation[] = [];
  kernfs.onInvalidate((i) => void seen.push(i));
  const module = [...core.busDrivers()].find((d) => d.name === parent.driver.name)!.module;
  t.ok(kernfs.getattr(`/module/${module}`), `/module/${module} is shown`);
  await core.unregisterParent(parent.name);
  const all = { entries: seen.flatMap((i) => i.entries), attrs: seen.flatMap((i) => i.attrs) };
  for (const p of [`/module/${module}`, `/bus/mdev/drivers/${parent.driver.name}`, `/class/${parent.placement.className}`]) {
    t.throws(() => kernfs.getattr(p), `${p} is gone`);
    t.ok(covered(p, all), `unloading invalidates ${p}`);
  }
});

t.test("a host device's changing entries are shown as described and invalidated by the event that takes them", async (t) => {
  const em = new Emulation(GVT, { log: silentLogger });
  const { kernfs, tree, core } = em;
  const dev = core.parents.get('0000:00:02.0')!.placement.device!;
  const path = '/' + dev.path.join('/');
  const write = (file: string, text: string) => writeTo(kernfs, file, text);
  const check = (name: keyof typeof HOST_DEVICE_CHANGING) => {
    const { event, kind } = HOST_DEVICE_CHANGING[name];
    t.equal(kindAt(kernfs, `${path}/${name}`), kind, `${name} is a ${kind}`);
    const inv =
      event === 'bind'
        ? tree.deviceInvalidations({ kind: 'bind', dev, driver: dev.driver!, bound: false })
        : tree.deviceInvalidations({ kind: 'vfio', dev, registered: false });
    t.ok(covered(`${path}/${name}`, inv), `the '${event}' that takes it invalidates ${name}`);
  };
  check('driver');
  // Handed to vfio-pci, the function is registered with VFIO: vfio-dev/ appears.
  await write(`${path}/driver_override`, 'vfio-pci\n');
  await write('/bus/pci/drivers/i915/unbind', '0000:00:02.0');
  await write('/bus/pci/drivers_probe', '0000:00:02.0');
  t.equal(dev.driver?.name, 'vfio-pci', 'vfio-pci is bound');
  check('vfio-dev');
  check('driver');
});

t.test("each subsystem's listings are where the tree shows them, and invalidated by the change that takes an entry", async (t) => {
  const { kernfs, tree, core, dev } = await emulationWithDevice();
  const parent = dev.parent;
  const module = core.busDrivers().find((d) => d.name === parent.driver.name)!.module;
  // Each listing (its description) with an element shown now and the event that takes it.
  const { iommuGroup, vfioIndex } = dev;
  if (iommuGroup === undefined || vfioIndex === undefined) throw new Error('the device is bound: it has an IOMMU group and a VFIO index');
  const row = <T>(name: string, listing: Listing<T>, element: T, ev: CoreEvent) => ({ name, dir: listing.at(), entryName: listing.nameOf(element), entry: listing.entry(element), ev });
  const listings = [
    row('IOMMU_GROUPS', IOMMU_GROUPS, iommuGroup, hide(dev, 'bound')),
    row('GROUP_DEVICES', GROUP_DEVICES, iommuGroup, hide(dev, 'bound')),
    row('GROUP_LINKS', GROUP_LINKS, iommuGroup, hide(dev, 'bound')),
    row('VFIO_DEVICES', VFIO_DEVICES, vfioIndex, hide(dev, 'bound')),
    row('MDEV_BUS_DEVICES', MDEV_BUS_DEVICES, dev, hide(dev, 'dir')),
    row('the driver of bus/mdev (driverDevices)', driverDevices(MDEV_BUS, dev.boundDriver!, (d: typeof dev) => d.uuid), dev, hide(dev, 'bound')),
    row('MDEV_BUS_CLASS', MDEV_BUS_CLASS, parent, { kind: 'parent', parent, registered: false }),
    row('vendorClass', vendorClass(parent.placement.className!), parent, { kind: 'parent', parent, registered: false }),
  ];
  for (const { name, dir, entryName, entry, ev } of listings) {
    t.ok(kernfs.readdir(dir).includes(entryName), `${name}: ${dir} lists ${entryName}`);
    t.ok(covered(entry, tree.invalidations(ev)), `${name}: its going invalidates ${entry}`);
  }
  t.ok(kernfs.readdir(CLASSES.at()).includes(parent.placement.className!), `CLASSES: ${CLASSES.at()} lists the vendor's class`);
  t.ok(kernfs.readdir(BUSES.at()).includes(MDEV_BUS), `BUSES: ${BUSES.at()} lists ${MDEV_BUS}`);
  t.ok(kernfs.readdir(MDEV_DRIVERS.at()).includes(parent.driver.name), `MDEV_DRIVERS: ${MDEV_DRIVERS.at()} lists the vendor's driver`);
  t.ok(kernfs.readdir(MODULES.at()).includes(module), `MODULES: ${MODULES.at()} lists the vendor's module`);
  // A module and its class go only once no loaded parent keeps them: asked after the unload.
  const seen: Invalidation[] = [];
  kernfs.onInvalidate((i) => void seen.push(i));
  await core.unregisterParent(parent.name);
  const all = { entries: seen.flatMap((i) => i.entries), attrs: seen.flatMap((i) => i.attrs) };
  t.ok(covered(CLASSES.entry(parent.placement.className!), all), 'CLASSES: unloading invalidates the class');
  t.ok(covered(MODULES.entry(module), all), 'MODULES: unloading invalidates the module');
  t.ok(covered(MDEV_DRIVERS.entry(parent.driver.name), all), 'MDEV_DRIVERS: unloading invalidates the driver');
});

t.test("a bus's listings are where the tree shows them, invalidated by the change that takes an entry; class/vfio-dev links to vfio-dev/vfioN", async (t) => {
  const em = new Emulation(GVT, { log: silentLogger });
  const { kernfs, tree, core } = em;
  const dev = core.parents.get('0000:00:02.0')!.placement.device!;
  const bus = dev.bus!;
  const driver = dev.driver!;
  const name = (d: typeof dev) => d.name;
  const row = <T>(what: string, listing: Listing<T>, element: T, inv: Invalidation) => ({ what, dir: listing.at(), entryName: listing.nameOf(element), entry: listing.entry(element), inv });
  const listings = [
    row('BUSES', BUSES, bus.name, tree.deviceInvalidations({ kind: 'device', dev, present: false })),
    row('busDevices', busDevices(bus.name, name), dev, tree.deviceInvalidations({ kind: 'device', dev, present: false })),
    row('busDrivers', busDrivers(bus.name), driver.name, tree.deviceInvalidations({ kind: 'driver', driver, present: false })),
    row('driverDevices', driverDevices(bus.name, driver.name, name), dev, tree.deviceInvalidations({ kind: 'bind', dev, driver, bound: false })),
  ];
  for (const { what, dir, entryName, entry, inv } of listings) {
    t.ok(kernfs.readdir(dir).includes(entryName), `${what}: ${dir} lists ${entryName}`);
    // bus/pci stays with no device on it (CONFIG_PCI): only its devices/ entry goes with the device.
    if (what !== 'BUSES') t.ok(covered(entry, inv), `${what}: its going invalidates ${entry}`);
  }
  t.equal(kindAt(kernfs, `${BUSES.entry(bus.name)}`), 'dir', 'bus/pci is a directory');
  // Handed to vfio-pci, the function is registered with VFIO: its class/vfio-dev link leads to its vfio-dev/vfioN.
  const write = (file: string, text: string) => writeTo(kernfs, file, text);
  await write(`/${dev.path.join('/')}/driver_override`, 'vfio-pci\n');
  await write(`${busDrivers(bus.name).entry(driver.name)}/unbind`, dev.name);
  await write(`${BUSES.entry(bus.name)}/drivers_probe`, dev.name);
  const vfioDev = await emulationWithDevice();
  const mdev = vfioDev.dev;
  for (const [k, index, devicePath] of [
    [kernfs, dev.vfioIndex!, '/' + dev.path.join('/')],
    [vfioDev.kernfs, mdev.vfioIndex!, vfioDev.devPath],
  ] as const) {
    const entry = VFIO_DEVICES.entry(index);
    const target = posix.resolve(VFIO_DEVICES.at(), k.readlink(entry));
    t.equal(target, `${devicePath}/${vfioDevEntry(index).join('/')}`, `${entry} links to the device's vfio-dev/vfioN`);
    t.equal(kindAt(k, target), 'dir', `${target} is there`);
    t.equal(posix.resolve(target, k.readlink(`${target}/subsystem`)), VFIO_DEVICES.at(), `${target}/subsystem links to ${VFIO_DEVICES.at()}`);
  }
});
