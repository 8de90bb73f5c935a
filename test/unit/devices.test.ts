import t from 'tap';
import { Errno } from '../../src/base/errno';
import { Ida } from '../../src/base/ida';
import { DeviceModel, HostDevice } from '../../src/devices/device-model';
import { PciFunction, cpuList, cpuMask, parseBdf, parseCpuList, vfAddress } from '../../src/devices/pci';

// The driver-core model without a mount: PCI arithmetic and formats, and binding as dd.c does it.

t.test('PCI addresses, routing ids and cpu masks as the kernel prints them', async (t) => {
  t.same(parseBdf('0000:41:00.4'), { domain: 0, bus: 0x41, slot: 0, fn: 4 });
  t.equal(parseBdf('0000:00:20.0'), undefined, 'slot 0x20 does not exist');
  t.equal(parseBdf('0000:00:02.8'), undefined);
  t.equal(parseBdf('00:02.0'), undefined, 'the domain is part of the name');
  // pci_iov_virtfn_bus/devfn: PF 41:00.0, offset 4, stride 1 -> VF 4 is 41:01.0; past 41:1f.7 the bus moves on.
  t.same(vfAddress({ domain: 0, bus: 0x41, slot: 0, fn: 0 }, 4, 1, 4), { domain: 0, bus: 0x41, slot: 1, fn: 0 });
  t.same(vfAddress({ domain: 0, bus: 0x41, slot: 0x1f, fn: 7 }, 1, 1, 0), { domain: 0, bus: 0x42, slot: 0, fn: 0 });
  t.equal(cpuMask([0, 1, 2, 3, 4, 5, 6, 7]), 'ff');
  t.equal(cpuMask(Array.from({ length: 64 }, (_, i) => i)), 'ffffffff,ffffffff', '32-bit words, comma separated');
  t.equal(cpuMask([0, 40]), '100,00000001');
  t.equal(cpuList([0, 1, 2, 3, 8, 10, 11]), '0-3,8,10-11');
  t.same(parseCpuList('0-3,8'), [0, 1, 2, 3, 8]);
  t.equal(parseCpuList('3-1'), undefined);
  t.equal(parseCpuList('0,,1'), undefined);
});

const fn = () =>
  new PciFunction(
    { domain: 0, bus: 0, slot: 2, fn: 0 },
    { vendor: 0x8086, device: 0x5912, subsystemVendor: 0x8086, subsystemDevice: 0x2212, classCode: 0x030000, revision: 4 },
    [{ index: 0, kind: 'mem64', prefetchable: false, size: 0x1000000n, address: 0xde000000n }],
    -1,
    16,
    [0, 1],
    39,
    false,
  );

t.test('a function: modalias, uevent, resource and a conventional config space agree', async (t) => {
  const f = fn();
  t.equal(f.modalias(), 'pci:v00008086d00005912sv00008086sd00002212bc03sc00i00');
  t.same(f.ueventVars(), [
    ['PCI_CLASS', '30000'],
    ['PCI_ID', '8086:5912'],
    ['PCI_SUBSYS_ID', '8086:2212'],
    ['PCI_SLOT_NAME', '0000:00:02.0'],
    ['MODALIAS', 'pci:v00008086d00005912sv00008086sd00002212bc03sc00i00'],
  ]);
  t.equal(f.resourceText().split('\n')[0], '0x00000000de000000 0x00000000deffffff 0x0000000000140204');
  const c = f.config();
  t.equal(c.length, 256);
  t.equal(c.readUInt16LE(0), 0x8086);
  t.equal((c.readUInt32LE(0x10) & ~0xf) >>> 0, 0xde000000, 'BAR 0 holds the resource start');
  t.equal(c.readUInt32LE(0x10) & 0xf, 0x4, '64-bit, non-prefetchable');
  t.equal(c.readUInt8(0x0e), 0, 'header type 0');
  // The capability list is a chain that ends: PM -> MSI -> end (no PCIe capability on conventional PCI).
  const chain: number[] = [];
  for (let at = c.readUInt8(0x34); at !== 0; at = c.readUInt8(at + 1)) chain.push(c.readUInt8(at));
  t.same(chain, [0x01, 0x05]);
  t.equal(c.readUInt16LE(0x04), 0, 'disabled until a driver enables it');
  f.enableCount = 1;
  t.equal(f.config().readUInt16LE(0x04) & 0x6, 0x6, 'memory space and bus master once enabled');
});

t.test('binding: driver_override decides, EBUSY when bound, hooks run as probe and remove', async (t) => {
  const model = new DeviceModel();
  const bus = model.bus('pci');
  const dev = model.add(new HostDevice('0000:00:02.0', ['devices', 'pci0000:00', '0000:00:02.0'], bus, fn(), [], {}, undefined, true));
  dev.pci!.iommuGroup = 0; // vfio-pci takes only a function in an IOMMU group
  const i915 = model.driver(bus, 'i915', { module: 'i915' });
  const vfio = model.driver(bus, 'vfio-pci', { module: 'vfio_pci' });
  i915.claimed.add(dev);
  const log: string[] = [];
  dev.hooks.set('i915', {
    probe: () => log.push('probe'),
    remove: async () => {
      await new Promise((r) => setTimeout(r, 20));
      log.push('remove');
    },
  });
  t.ok(model.matches(i915, dev));
  t.notOk(model.matches(vfio, dev), 'vfio-pci has no id table');
  model.bindNow(dev, i915);
  t.equal(dev.pci!.enableCount, 1);
  await t.rejects(model.bind(dev, vfio), { name: 'MdevError', errno: Errno.EBUSY });
  // An unbind and a bind at once: the device lock orders them, the remove runs to its end first.
  dev.driverOverride = 'vfio-pci';
  const both = Promise.all([model.unbind(dev), model.attach(dev)]);
  t.equal(dev.driver, i915, 'still bound while the remove runs');
  await both;
  t.equal(dev.driver, vfio);
  t.equal(dev.pci!.enableCount, 0, 'vfio-pci does not enable the function at bind');
  t.notOk(model.matches(i915, dev), 'the override excludes every other driver');
  dev.driverOverride = undefined;
  await model.unbind(dev);
  await model.attach(dev);
  t.equal(dev.driver, i915);
  t.same(log, ['probe', 'remove', 'probe']);
  await model.remove(dev);
  t.same(log, ['probe', 'remove', 'probe', 'remove'], 'device_del unbinds first');
  await t.rejects(model.bind(dev, i915), { name: 'MdevError', errno: Errno.ENODEV });
});

t.test('vfio-pci registers a function with VFIO at probe and unregisters it at remove; no IOMMU group, no bind', async (t) => {
  const numbers = { devices: new Ida(), groupMinors: new Ida() };
  numbers.devices.alloc(); // vfio0 and minor 0 are an mdev's: one numbering for both
  numbers.groupMinors.alloc();
  const model = new DeviceModel(numbers);
  const bus = model.bus('pci');
  const vfio = model.driver(bus, 'vfio-pci', { module: 'vfio_pci' });
  const dev = model.add(new HostDevice('0000:3b:00.0', ['devices', 'pci0000:3a', '0000:3b:00.0'], bus, fn(), [], {}, undefined, true));
  const events: string[] = [];
  model.subscribe((ev) => {
    if (ev.kind === 'vfio') events.push(`vfio ${ev.registered} ${ev.dev.vfioIndex} ${ev.dev.vfioGroupMinor}`);
    if (ev.kind === 'bind') events.push(`bind ${ev.bound}`);
  });
  dev.driverOverride = 'vfio-pci';
  await t.rejects(model.bind(dev, vfio), { name: 'MdevError', errno: Errno.EINVAL }, 'in no IOMMU group: EINVAL');
  await model.attach(dev);
  t.equal(dev.driver, undefined, 'drivers_probe: the failed probe leaves it unbound');
  t.same(events, [], 'and sends nothing');
  dev.pci!.iommuGroup = 3;
  await model.attach(dev);
  t.equal(dev.driver, vfio);
  t.same([dev.vfioIndex, dev.vfioGroupMinor], [1, 1]);
  t.equal(model.vfioDevices.get(1), dev);
  t.equal(model.vfioGroups.get(3), dev);
  await model.unbind(dev);
  t.same(events, ['vfio true 1 1', 'bind true', 'vfio false 1 1', 'bind false'], 'registered before the bind, unregistered before the unbind, numbers still set');
  t.same([dev.vfioIndex, dev.vfioGroupMinor, model.vfioDevices.size, model.vfioGroups.size], [undefined, undefined, 0, 0]);
  t.equal(numbers.devices.alloc(), 1, 'its numbers are free again');
});
