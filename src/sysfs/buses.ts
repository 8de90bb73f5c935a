import { Errno, fail } from '../base/errno';
import { kstrtoul, sysfsStreq } from '../base/parse';
import type { Kobj } from '../core/uevent';
import type { Bus, BusDriver, DeviceEvent, DeviceModel, HostDevice } from '../devices/device-model';
import { type PciFunction, cpuList, cpuMask, hex } from '../devices/pci';
import { autoprobeAttr, powerDir, ueventStore, vfioDevDir } from './common';
import { at } from './context';
import { IOMMU_GROUPS } from './iommu-groups';
import { MODULES } from './module';
import type { Invalidation } from './kernfs';
import { type Alive, type DirNode, type Node, attr, dir, dynDir, groups, link, ro, union, wo } from './nodes';
import { BUSES, MDEV_BUS, busDevices, busDrivers, driverDevices, vfioDevEntry } from './paths';

const PAGE_SIZE = 4096;

/** The first non-blank word of a store, as bus_find_device_by_name compares it (sysfs_streq). */
function storedName(buf: Buffer): string {
  return buf.toString('latin1').split('\0')[0]!;
}

/** kstrtobool: y/Y/1/on and n/N/0/off by their first characters, EINVAL otherwise. */
function kstrtobool(buf: Buffer): boolean {
  const s = buf.toString('latin1');
  if (/^[yY1]/.test(s) || /^[oO][nN]/.test(s)) return true;
  if (/^[nN0]/.test(s) || /^[oO][fF]/.test(s)) return false;
  fail(Errno.EINVAL, 'not a boolean');
}

/** Stores of an unsigned flag (kstrtoul, EINVAL on anything else). */
function flagStore(set: (v: boolean) => void): (buf: Buffer) => number {
  return (buf) => {
    set(kstrtoul(buf) !== 0n);
    return buf.length;
  };
}

/**
 * The entries of a host device's directory that come and go while the device stays, each with the
 * event that adds and takes it and its kind: the bound driver's link (its own attributes, such as
 * nvidia/ on a VF, go with it) and vfio-dev/ of a device its driver registered with VFIO. The device
 * directory shows these through the table, and the event's invalidation takes what the table gives it.
 */
export const HOST_DEVICE_CHANGING = {
  driver: { event: 'bind', kind: 'link' },
  'vfio-dev': { event: 'vfio', kind: 'dir' },
} as const satisfies Record<string, { event: DeviceEvent['kind']; kind: Node['kind'] }>;

type HostChanging = keyof typeof HOST_DEVICE_CHANGING;
const HOST_CHANGING_NAMES = Object.keys(HOST_DEVICE_CHANGING) as HostChanging[];

/**
 * A bus's listings of host devices (paths.ts): bus/<bus>/devices/ and, in a driver's directory,
 * the devices bound to it, each named as the device is. The bus directories are built from them
 * and from BUSES and busDrivers, and the events that take a device, a binding or a driver
 * invalidate the entries they name.
 */
const deviceName = (dev: HostDevice): string => dev.name;
const onBus = (bus: Bus) => busDevices(bus.name, deviceName);
const boundTo = (drv: BusDriver) => driverDevices(drv.bus.name, drv.name, deviceName);

/**
 * Renders the driver core's devices and buses (drivers/base/, drivers/pci/pci-sysfs.c,
 * drivers/pci/iov.c): device directories, bus/<bus>/ with devices/ and drivers/, the host
 * devices' iommu groups and the modules of their drivers. mdev parents add their own entries
 * to their device's directory through `extras`.
 */
export class BusesRenderer {
  private readonly nodes = new WeakMap<object, DirNode>();
  /** bus/pci/resource_alignment, once written (pci=resource_alignment= of the command line). */
  private alignment: string | undefined;

  constructor(
    private readonly model: DeviceModel,
    /** What else is in a device's directory (an mdev parent's types and children). */
    private readonly extras: (dev: HostDevice) => DirNode | undefined,
    /** A `uevent` file's store for a kobject (kobject_synth_uevent); default: validate only. */
    private readonly synth: (k: Kobj) => (buf: Buffer) => number = () => ueventStore,
  ) {}

  private cached(owner: object, make: () => DirNode): DirNode {
    let n = this.nodes.get(owner);
    if (!n) this.nodes.set(owner, (n = make()));
    return n;
  }

  /** Top-level names of driver attributes ever shown in a device's directory (to invalidate on unbind). */
  private readonly driverTops = new WeakMap<HostDevice, Set<string>>();

  private driverAttrTops(dev: HostDevice): Set<string> {
    let s = this.driverTops.get(dev);
    if (!s) this.driverTops.set(dev, (s = new Set()));
    return s;
  }

  private present(dev: HostDevice): Alive {
    return () => this.model.devices.get(dev.path.join('/')) === dev;
  }

  // ---- devices/ ------------------------------------------------------------------------

  /** Names of the next path component below prefix that lead to a device. */
  namesBelow(prefix: readonly string[]): string[] {
    const out: string[] = [];
    for (const d of this.model.devices.values()) {
      if (d.path.length > prefix.length && prefix.every((c, i) => d.path[i] === c)) out.push(d.path[prefix.length]!);
    }
    return out;
  }

  /** The device at a path joined with '/' (what the model is keyed by). */
  deviceAt(key: string): HostDevice | undefined {
    return this.model.devices.get(key);
  }

  deviceDir(dev: HostDevice): DirNode {
    return this.cached(dev, () => {
      const alive = this.present(dev);
      const common: Record<string, () => Node | undefined> = {
        power: () => powerDir(alive),
        uevent: () => attr(0o644, () => this.uevent(dev), this.synth({ kind: 'host', dev }), alive),
      };
      // The entries that come and go (HOST_DEVICE_CHANGING), each while what its event made is there.
      const changing: Record<HostChanging, (() => Node | undefined) | undefined> = {
        driver: dev.bus ? () => (dev.driver ? link(busDrivers(dev.bus!.name).entryPath(dev.driver.name), alive) : undefined) : undefined,
        'vfio-dev': () => (dev.vfioIndex === undefined ? undefined : this.vfioDevDir(dev, dev.vfioIndex)),
      };
      if (dev.bus) {
        common.subsystem = () => link(BUSES.entryPath(dev.bus!.name), alive);
        common.driver = changing.driver!;
      } else if (dev.module) {
        common.module = () => link(MODULES.entryPath(dev.module!), alive);
      }
      if (dev.isRoot && dev.name.startsWith('pci')) common.waiting_for_supplier = () => ro('0\n', alive);
      if (dev.hasOverride) common.driver_override = () => attr(0o644, () => `${dev.driverOverride ?? '(null)'}\n`, (b) => this.overrideStore(dev, b), alive);
      for (const [name, text] of Object.entries(dev.attrs)) common[name] = () => ro(text, alive);
      common['vfio-dev'] = changing['vfio-dev']!;
      const parts = [dir(common, alive)];
      if (dev.pci) parts.push(this.pciFiles(dev, dev.pci, alive));
      const extra = dynDir(
        () => this.extras(dev)?.names() ?? [],
        (name) => this.extras(dev)?.lookup(name),
        alive,
        () => {
          const e = this.extras(dev);
          return e?.subdirs ? e.subdirs() : 0;
        },
      );
      // What the bound driver added (e.g. nvidia/ on a VF), as it is now: a node of an earlier set
      // (the driver has left since) is dead.
      const driverAttrs = () => {
        const set = dev.driverAttrs;
        const current = () => alive() && dev.driverAttrs === set;
        for (const a of set) this.driverAttrTops(dev).add(a.path.split('/')[0]!);
        return groups(set.map((a) => ({ path: a.path, node: attr(a.mode, a.show, a.store, current) })), current);
      };
      const added = dynDir(() => driverAttrs().names(), (name) => driverAttrs().lookup(name), alive);
      return union([...parts, extra, added], alive);
    });
  }

  /** Host devices registered with VFIO by their driver, by vfio index (for class/vfio-dev). */
  vfioDevices(): ReadonlyMap<number, HostDevice> {
    return this.model.vfioDevices;
  }

  /** class/vfio-dev/vfioN of a host device: a link to its vfio-dev/vfioN, alive while registered. */
  vfioClassLink(dev: HostDevice, index: number): Node {
    return link([...dev.path, ...vfioDevEntry(index)], () => this.present(dev)() && dev.vfioIndex === index);
  }

  /** vfio-dev/vfioN of a device its driver registered with VFIO (vfio-pci, a vendor-VFIO VF), while it is so. */
  private vfioDevDir(dev: HostDevice, index: number): DirNode {
    return vfioDevDir(index, dev.path, () => this.present(dev)() && dev.vfioIndex === index, this.synth({ kind: 'host-vfio-dev', dev }));
  }

  private uevent(dev: HostDevice): string {
    const vars: [string, string][] = [];
    if (dev.driver) vars.push(['DRIVER', dev.driver.name]);
    vars.push(...dev.uevent);
    if (dev.pci) vars.push(...dev.pci.ueventVars());
    return vars.map(([k, v]) => `${k}=${v}\n`).join('');
  }

  /** driver_set_override: "\n" (or a NUL-led write) clears, the first line is kept, a page is too much. */
  private overrideStore(dev: HostDevice, buf: Buffer): number {
    if (buf.length >= PAGE_SIZE - 1) fail(Errno.EINVAL, 'driver_override too long');
    let s = buf.toString('latin1');
    const nul = s.indexOf('\0');
    if (nul >= 0) s = s.slice(0, nul);
    const nl = s.indexOf('\n');
    if (nl >= 0) s = s.slice(0, nl);
    dev.driverOverride = s === '' ? undefined : s;
    return buf.length;
  }

  private pciFiles(dev: HostDevice, fn: PciFunction, alive: Alive): DirNode {
    const id = fn.id;
    const h = (n: number, w: number) => `0x${hex(n, w)}\n`;
    const sibling = (f: PciFunction) => [...dev.path.slice(0, -1), f.name];
    const entries: Record<string, () => Node | undefined> = {
      ari_enabled: () => ro('0\n', alive),
      broken_parity_status: () => attr(0o644, () => `${fn.brokenParity ? 1 : 0}\n`, flagStore((v) => (fn.brokenParity = v)), alive),
      class: () => ro(h(id.classCode, 6), alive),
      // 0644 as in the kernel; writes need the offset, which a store does not get: EIO (docs/deviations.md).
      config: () => attr(0o644, () => fn.config().toString('latin1'), () => fail(Errno.EIO, 'config space writes are not emulated'), alive),
      consistent_dma_mask_bits: () => ro(`${fn.dmaMaskBits}\n`, alive),
      d3cold_allowed: () => attr(0o644, () => `${fn.d3coldAllowed ? 1 : 0}\n`, flagStore((v) => (fn.d3coldAllowed = v)), alive),
      device: () => ro(h(id.device, 4), alive),
      dma_mask_bits: () => ro(`${fn.dmaMaskBits}\n`, alive),
      enable: () => attr(0o644, () => `${fn.enableCount}\n`, (b) => this.enableStore(fn, b), alive),
      iommu_group: () => (fn.iommuGroup === undefined ? undefined : link(IOMMU_GROUPS.entryPath(fn.iommuGroup), alive)),
      irq: () => ro(`${fn.irq}\n`, alive),
      local_cpulist: () => ro(`${cpuList(fn.localCpus)}\n`, alive),
      local_cpus: () => ro(`${cpuMask(fn.localCpus)}\n`, alive),
      modalias: () => ro(`${fn.modalias()}\n`, alive),
      msi_bus: () => attr(0o644, () => `${fn.noMsi ? 0 : 1}\n`, flagStore((v) => (fn.noMsi = !v)), alive),
      numa_node: () => attr(0o644, () => `${fn.numaNode}\n`, (b) => this.numaStore(fn, b), alive),
      power_state: () => ro('D0\n', alive),
      resource: () => ro(fn.resourceText(), alive),
      revision: () => ro(h(id.revision, 2), alive),
      subsystem_device: () => ro(h(id.subsystemDevice, 4), alive),
      subsystem_vendor: () => ro(h(id.subsystemVendor, 4), alive),
      vendor: () => ro(h(id.vendor, 4), alive),
    };
    if (fn.physfn) entries.physfn = () => link(sibling(fn.physfn!), alive);
    const s = fn.sriov;
    if (s) {
      entries.sriov_drivers_autoprobe = () =>
        attr(0o644, () => `${s.driversAutoprobe ? 1 : 0}\n`, (b) => ((s.driversAutoprobe = kstrtobool(b)), b.length), alive);
      entries.sriov_numvfs = () => attr(0o664, () => `${s.numVfs}\n`, (b) => this.numVfsStore(dev, fn, b), alive);
      entries.sriov_offset = () => ro(`${s.offset}\n`, alive);
      entries.sriov_stride = () => ro(`${s.stride}\n`, alive);
      entries.sriov_totalvfs = () => ro(`${s.totalVfs}\n`, alive);
      entries.sriov_vf_device = () => ro(`${s.vfDevice.toString(16)}\n`, alive);
      // The VFs enabled now (sriov_numvfs changes them).
      for (let i = 0; i < s.totalVfs; i++) entries[`virtfn${i}`] = () => (s.vfs[i] ? link(sibling(s.vfs[i]!), alive) : undefined);
    }
    return dir(entries, alive);
  }

  /** enable_store: 1 enables (counted), 0 disables an enabled device, else EIO. */
  private enableStore(fn: PciFunction, buf: Buffer): number {
    const v = kstrtoul(buf);
    if (v !== 0n) fn.enableCount++;
    else if (fn.enableCount > 0) fn.enableCount--;
    else fail(Errno.EIO, 'device is not enabled');
    return buf.length;
  }

  /** numa_node_store: NUMA_NO_NODE or an online node (the nodes this profile's devices name, and 0). */
  private numaStore(fn: PciFunction, buf: Buffer): number {
    const text = buf.toString('latin1').replace(/\n$/, '');
    if (!/^[+-]?(0x[0-9a-fA-F]+|\d+)$/.test(text)) fail(Errno.EINVAL, 'not a number');
    const node = Number(text);
    const online = new Set([0, ...[...this.model.devices.values()].map((d) => d.pci?.numaNode ?? 0)]);
    if (node !== -1 && !online.has(node)) fail(Errno.EINVAL, `node ${node} is not online`);
    fn.numaNode = node;
    return buf.length;
  }

  /**
   * sriov_numvfs_store (drivers/pci/iov.c), under the device lock: kstrtou16 (EINVAL), ERANGE
   * above sriov_totalvfs, the current count is a no-op, ENOENT without a bound driver or when
   * the driver has no sriov_configure (vfio-pci here: docs/deviations.md); 0 disables the VFs,
   * another count enables that many, EBUSY while some are enabled.
   */
  private numVfsStore(dev: HostDevice, fn: PciFunction, buf: Buffer): Promise<number> {
    const n = kstrtoul(buf);
    if (n > 0xffffn) fail(Errno.EINVAL, 'not a u16');
    if (n > BigInt(fn.sriov!.totalVfs)) fail(Errno.ERANGE, 'more VFs than sriov_totalvfs');
    const want = Number(n);
    return dev.serialize(async () => {
      const s = fn.sriov!;
      if (want === s.numVfs) return buf.length;
      if (!dev.driver) fail(Errno.ENOENT, 'no driver bound to device; cannot configure SR-IOV');
      const configure = dev.hooks.get(dev.driver.name)?.sriovConfigure;
      if (!configure) fail(Errno.ENOENT, 'driver does not support SR-IOV configuration via sysfs');
      if (want !== 0 && s.numVfs !== 0) fail(Errno.EBUSY, `${s.numVfs} VFs already enabled. Disable before enabling ${want} VFs`);
      await configure(dev, want);
      return buf.length;
    });
  }

  // ---- bus/ ----------------------------------------------------------------------------

  /** bus/: the mdev bus (mdev.ts' bus/mdev) and the driver core's buses, from BUSES. */
  busesDir(mdev: () => DirNode): DirNode {
    return this.cached(this, () =>
      union([
        dir({ [MDEV_BUS]: mdev }),
        // busDir says whether a bus is there (a bus is listed only while it has a device, pci always).
        BUSES.dir(() => this.busNames(), (name) => this.busDir(name), { find: (name) => name }),
      ]),
    );
  }

  /**
   * Buses with a device, and always pci: a kernel built with CONFIG_PCI (Debian's x86 and s390x
   * ones) has bus/pci even with no function on it, and lspci then lists nothing rather than
   * falling back to the host's /proc/bus/pci.
   */
  busNames(): string[] {
    const names = [...this.model.buses.values()].filter((b) => this.model.onBus(b).length > 0).map((b) => b.name);
    return names.includes('pci') ? names : [...names, 'pci'];
  }

  busDir(name: string): DirNode | undefined {
    const bus = name === 'pci' ? this.model.bus('pci') : this.model.buses.get(name);
    if (!bus || (name !== 'pci' && this.model.onBus(bus).length === 0)) return undefined;
    return this.cached(bus, () => {
      const devices = () => this.model.onBus(bus);
      const entries: Record<string, () => Node | undefined> = {
        devices: () => onBus(bus).dir(devices, (d) => link(d.path, this.present(d)), { subdirs: () => 0 }),
        drivers: () =>
          busDrivers(bus.name).dir(
            () => bus.drivers.keys(),
            (n) => {
              const drv = bus.drivers.get(n);
              return drv && this.driverDir(drv);
            },
            { find: (n) => n },
          ),
        drivers_autoprobe: () => autoprobeAttr(() => bus.autoprobe, (on) => (bus.autoprobe = on)),
        drivers_probe: () => wo((b) => this.probeStore(bus, b)),
        uevent: () => wo(this.synth({ kind: 'bus', name })),
      };
      for (const a of bus.attrs) entries[a.path] = () => attr(a.mode, a.show, a.store);
      if (name === 'pci') {
        entries.rescan = () => wo((b) => (kstrtoul(b), b.length));
        // resource_alignment_show prints nothing until a parameter is set; the store keeps the first line.
        entries.resource_alignment = () =>
          attr(0o644, () => (this.alignment === undefined ? '' : `${this.alignment}\n`), (b) => {
            if (b.length >= PAGE_SIZE - 1) fail(Errno.EINVAL, 'resource_alignment too long');
            this.alignment = b.toString('latin1').split('\0')[0]!.split('\n')[0]!;
            return b.length;
          });
        entries.slots = () => dir({});
      }
      return dir(entries);
    });
  }

  private find(bus: Bus, buf: Buffer): HostDevice | undefined {
    const name = storedName(buf);
    return this.model.onBus(bus).find((d) => sysfsStreq(d.name, name));
  }

  /** drivers_probe: ENODEV for no such device; otherwise attach if unbound (no match is fine). */
  private async probeStore(bus: Bus, buf: Buffer): Promise<number> {
    const dev = this.find(bus, buf);
    if (!dev) fail(Errno.ENODEV, 'no such device');
    await this.model.attach(dev);
    return buf.length;
  }

  private driverDir(drv: BusDriver): DirNode {
    return this.cached(drv, () => {
      const alive = () => drv.bus.drivers.get(drv.name) === drv;
      const bound = () => this.model.boundTo(drv);
      const entries: Record<string, () => Node | undefined> = {
        uevent: () => wo(this.synth({ kind: 'driver', name: drv.name, bus: drv.bus.name }), alive),
      };
      if (drv.module) entries.module = () => link(MODULES.entryPath(drv.module!), alive);
      if (drv.bindAttrs) {
        entries.bind = () => wo((b) => this.bindStore(drv, b), alive);
        entries.unbind = () => wo((b) => this.unbindStore(drv, b), alive);
      }
      if (drv.bus.name === 'pci') {
        entries.new_id = () => wo((b) => this.newIdStore(drv, b), alive);
        entries.remove_id = () => wo((b) => this.removeIdStore(drv, b), alive);
      }
      const links = boundTo(drv).dir(bound, (d) => link(d.path, () => d.driver === drv), { alive, subdirs: () => 0 });
      return union([dir(entries, alive), links], alive);
    });
  }

  /** bind_store: ENODEV unless the device exists and the driver matches it; EBUSY if bound. */
  private async bindStore(drv: BusDriver, buf: Buffer): Promise<number> {
    const dev = this.find(drv.bus, buf);
    if (!dev || !this.model.matches(drv, dev)) fail(Errno.ENODEV, 'no matching device');
    await this.model.bind(dev, drv);
    return buf.length;
  }

  /** unbind_store: ENODEV unless the device is bound to this driver. */
  private async unbindStore(drv: BusDriver, buf: Buffer): Promise<number> {
    const dev = this.find(drv.bus, buf);
    if (!dev || dev.driver !== drv) fail(Errno.ENODEV, 'device is not bound to this driver');
    await this.model.unbind(dev);
    return buf.length;
  }

  /** new_id_store: "vendor device [subvendor subdevice class class_mask driver_data]" in hex. */
  private async newIdStore(drv: BusDriver, buf: Buffer): Promise<number> {
    const key = this.idFields(buf);
    if (drv.dynIds.has(key) || this.model.onBus(drv.bus).some((d) => drv.claimed.has(d) && d.pci?.idKey === key)) {
      fail(Errno.EEXIST, 'id already known');
    }
    drv.dynIds.add(key);
    // driver_attach: every unbound device the driver now matches.
    await this.model.attachAll(drv);
    return buf.length;
  }

  private removeIdStore(drv: BusDriver, buf: Buffer): number {
    const key = this.idFields(buf);
    if (!drv.dynIds.delete(key)) fail(Errno.ENODEV, 'no such dynamic id');
    return buf.length;
  }

  /** sscanf(buf, "%x %x ...") needs at least the vendor and device fields. */
  private idFields(buf: Buffer): string {
    const fields = buf.toString('latin1').trim().split(/\s+/);
    const ids = fields.slice(0, 2).map((f) => /^(0x)?[0-9a-fA-F]{1,8}$/.test(f) ? parseInt(f, 16) : NaN);
    if (ids.length < 2 || ids.some((n) => Number.isNaN(n))) fail(Errno.EINVAL, 'want "vendor device" in hex');
    return `${hex(ids[0]! & 0xffff, 4)}:${hex(ids[1]! & 0xffff, 4)}`;
  }

  // ---- kernel/iommu_groups, module/ ------------------------------------------------------

  /** The host devices' own iommu groups (one numbering with the mdev groups). */
  iommuGroups(): Map<number, HostDevice> {
    const m = new Map<number, HostDevice>();
    for (const d of this.model.devices.values()) if (d.pci?.iommuGroup !== undefined) m.set(d.pci.iommuGroup, d);
    return m;
  }

  iommuGroupDir(dev: HostDevice): DirNode {
    return this.cached(dev.pci!, () => {
      const alive = this.present(dev);
      return dir(
        {
          devices: () => dir({ [dev.name]: () => link(dev.path, alive) }, alive),
          reserved_regions: () => ro('0x00000000fee00000 0x00000000feefffff msi\n', alive),
          type: () =>
            attr(0o644, () => 'DMA-FQ\n', (b) => {
              const word = b.toString('latin1').replace(/\n$/, '');
              if (!['identity', 'DMA', 'DMA-FQ', 'auto'].includes(word)) fail(Errno.EINVAL, 'unknown domain type');
              if (dev.driver) fail(Errno.EBUSY, 'a driver is bound to the group');
              return b.length;
            }, alive),
        },
        alive,
      );
    });
  }

  /** module name -> its drivers ("<bus>:<driver>" -> driver directory path). */
  modules(): Map<string, Map<string, string[]>> {
    const m = new Map<string, Map<string, string[]>>();
    for (const bus of this.model.buses.values()) {
      for (const drv of bus.drivers.values()) {
        if (!drv.module) continue;
        if (!m.has(drv.module)) m.set(drv.module, new Map());
        m.get(drv.module)!.set(`${bus.name}:${drv.name}`, busDrivers(bus.name).entryPath(drv.name));
      }
    }
    for (const d of this.model.devices.values()) if (d.isRoot && d.module && !m.has(d.module)) m.set(d.module, new Map());
    return m;
  }

  // ---- cache invalidation --------------------------------------------------------------

  /** The entries of HOST_DEVICE_CHANGING an event of this kind takes from a device's directory. */
  private changingGone(dev: HostDevice, event: DeviceEvent['kind']): string[] {
    return HOST_CHANGING_NAMES.filter((n) => HOST_DEVICE_CHANGING[n].event === event).map((n) => at(...dev.path, n));
  }

  /**
   * What an event takes from the driver core's directories (the device directories and bus/); the
   * IOMMU groups, class/vfio-dev and module/ it touches are those subsystems' (tree.ts asks them).
   */
  invalidations(ev: DeviceEvent): Invalidation {
    if (ev.kind === 'bind') {
      const { dev, driver, bound } = ev;
      const attrs = [at(...dev.path), busDrivers(driver.bus.name).entry(driver.name)];
      if (bound) return { entries: [], attrs };
      // The driver's own attributes (nvidia/ on a VF) went with it.
      const tops = [...this.driverAttrTops(dev)].map((name) => at(...dev.path, name));
      this.driverAttrTops(dev).clear();
      return { entries: [...this.changingGone(dev, 'bind'), boundTo(driver).entry(dev), ...tops], attrs };
    }
    if (ev.kind === 'driver') {
      const drivers = busDrivers(ev.driver.bus.name);
      const attrs = [drivers.at()];
      if (ev.present) return { entries: [], attrs };
      return { entries: [drivers.entry(ev.driver.name)], attrs };
    }
    if (ev.kind === 'vfio') {
      // vfio-dev/ (the group device is vfio-groups.ts', class/vfio-dev/vfioN class.ts': mdevs have them too).
      const { dev, registered } = ev;
      const attrs = [at(...dev.path)];
      if (registered || dev.vfioIndex === undefined) return { entries: [], attrs };
      return { entries: this.changingGone(dev, 'vfio'), attrs };
    }
    // KOBJ_CHANGE takes nothing away: a PF's new virtfnN links are new names, and a VF's removal
    // takes its own link (below).
    if (ev.kind === 'change') return { entries: [], attrs: [] };
    const { dev, present } = ev;
    const attrs = [at(...dev.path.slice(0, -1)), BUSES.at()];
    if (present) return { entries: [], attrs };
    const entries = [at(...dev.path)];
    if (dev.bus) entries.push(onBus(dev.bus).entry(dev));
    // A VF's virtfnN link in its PF goes with it (pci_iov_remove_virtfn); the VF is still listed.
    const pf = dev.pci?.physfn;
    const index = pf?.sriov?.vfs.indexOf(dev.pci!) ?? -1;
    if (pf && index >= 0) entries.push(at(...dev.path.slice(0, -1), pf.name, `virtfn${index}`));
    return { entries, attrs };
  }
}
