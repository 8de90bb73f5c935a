import { Errno, MdevError, fail } from '../base/errno';
import { Ida } from '../base/ida';
import type { PciFunction } from './pci';

/**
 * The kernel's driver core in small (drivers/base/): buses, the devices on them and the drivers
 * that bind to those devices. mdev parents sit on these devices; nothing here knows mdev or a
 * filesystem. A device's directory is its path below the sysfs root; a device without a bus
 * is a root device (devices/pci0000:00, devices/vfio_ap, devices/css0).
 */

/** The PCI driver that binds only through driver_override or new_id (vfio-pci has no id table). */
export const VFIO_PCI = 'vfio-pci';

/**
 * The VFIO core's numbers (drivers/vfio/vfio_main.c), one of each for the whole system: vfio.device_ida
 * (vfio-dev/vfioN) and vfio.group_ida (the minors of the group devices, /dev/vfio/<group>). mdevs
 * and host devices draw from the same two.
 */
export interface VfioNumbers {
  /** undefined: the kernel's VFIO devices have no vfio-dev/vfioN (the 4.17 ABI). */
  readonly devices: Ida | undefined;
  readonly groupMinors: Ida;
}

/** A sysfs attribute a bound driver adds to its device (show/store as a device attribute). */
export interface DriverAttr {
  readonly path: string;
  readonly mode: number;
  show?(): string;
  store?(buf: Buffer): Promise<number> | number;
}

/** What a driver does when it binds to or leaves a device (its probe and remove). */
export interface DriverHooks {
  probe(dev: HostDevice): void;
  remove(dev: HostDevice): Promise<void>;
  /**
   * A PF driver's sriov_configure: enable that many VFs (they are 0 before), or disable them all
   * (0). Without it, sriov_numvfs refuses any other count (ENOENT), as for such a driver.
   */
  sriovConfigure?(dev: HostDevice, numVfs: number): Promise<void>;
}

export class BusDriver {
  /** Dynamic ids added through new_id (PCI): "vvvv:dddd" keys, lower-case hex. */
  readonly dynIds = new Set<string>();
  constructor(
    readonly bus: Bus,
    readonly name: string,
    /** The module that provides the driver (bus/<bus>/drivers/<drv>/module), if any. */
    readonly module: string | undefined,
    /** false: suppress_bind_attrs (no bind/unbind files), as vfio_ap's matrix driver. */
    readonly bindAttrs: boolean,
  ) {}

  /** Devices this driver's id table matches (the devices it was bound to at start). */
  readonly claimed = new Set<HostDevice>();
}

export class Bus {
  readonly drivers = new Map<string, BusDriver>();
  autoprobe = true;
  /** The bus's own attributes besides the driver core's (the AP bus's apmask, aqmask...). */
  attrs: readonly DriverAttr[] = [];
  constructor(readonly name: string) {}
}

export class HostDevice {
  /** Bound driver, if any. */
  driver: BusDriver | undefined;
  /** driver_override (PCI, css); undefined reads "(null)". */
  driverOverride: string | undefined;
  /** Hooks run when this device binds to / leaves a driver (e.g. an mdev parent registers). */
  hooks = new Map<string, DriverHooks>();
  /**
   * Attributes the bound driver adds to the device's directory, at paths relative to it (NVIDIA's
   * nvidia/ group on a VF): set by the driver's probe hook, cleared by its remove.
   */
  driverAttrs: readonly DriverAttr[] = [];
  /**
   * The VFIO device the bound driver registered (vfio_pci_core_register_device: vfio-dev/vfioN and
   * class/vfio-dev/vfioN), its index in the numbering mdevs share.
   */
  vfioIndex: number | undefined;
  /** While registered with VFIO: the minor of its IOMMU group's VFIO group device (devices/virtual/vfio/<group>). */
  vfioGroupMinor: number | undefined;
  /** A bind or unbind in progress (device_lock): a second one waits. */
  private lock: Promise<void> = Promise.resolve();

  constructor(
    readonly name: string,
    readonly path: readonly string[],
    readonly bus: Bus | undefined,
    /** PCI functions: identity, config space and SR-IOV (pci.ts). */
    readonly pci?: PciFunction,
    /** Other buses: uevent variables after DRIVER= and read-only attributes, in order. */
    readonly uevent: readonly [string, string][] = [],
    readonly attrs: Readonly<Record<string, string>> = {},
    /** Root devices: the module that registered them (a `module` link), if any. */
    readonly module?: string,
    /** Bus devices with a driver_override file (PCI, css). */
    readonly hasOverride = false,
  ) {}

  get isRoot(): boolean {
    return this.bus === undefined;
  }

  serialize<T>(op: () => Promise<T>): Promise<T> {
    const run = this.lock.then(op);
    this.lock = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }
}

export type DeviceEvent =
  | { kind: 'device'; dev: HostDevice; present: boolean }
  /** KOBJ_CHANGE of a device (a PF once its VFs are enabled: sriov_enable). */
  | { kind: 'change'; dev: HostDevice }
  | { kind: 'bind'; dev: HostDevice; driver: BusDriver; bound: boolean }
  /**
   * The bound driver's probe registered the device with VFIO (its group device, then vfio-dev/vfioN),
   * or its remove unregistered it (the other way round). Sent while the numbers are still set.
   */
  | { kind: 'vfio'; dev: HostDevice; registered: boolean }
  | { kind: 'driver'; driver: BusDriver; present: boolean };

/** All host devices, by path and by bus; binding follows drivers/base/dd.c. */
export class DeviceModel {
  readonly buses = new Map<string, Bus>();
  /** Devices by their path joined with '/'. */
  readonly devices = new Map<string, HostDevice>();
  /** Devices registered with VFIO, by vfio index (class/vfio-dev) and by IOMMU group (their group devices). */
  readonly vfioDevices = new Map<number, HostDevice>();
  readonly vfioGroups = new Map<number, HostDevice>();
  private readonly vfioRegistered = new Set<HostDevice>();
  private readonly listeners: ((ev: DeviceEvent) => void)[] = [];

  constructor(readonly vfio: VfioNumbers = { devices: new Ida(), groupMinors: new Ida() }) {}

  subscribe(listener: (ev: DeviceEvent) => void): void {
    this.listeners.push(listener);
  }

  private emit(ev: DeviceEvent): void {
    for (const l of this.listeners) l(ev);
  }

  bus(name: string): Bus {
    let b = this.buses.get(name);
    if (!b) this.buses.set(name, (b = new Bus(name)));
    return b;
  }

  /** driver_register: a driver already there is returned as it is. */
  driver(
    bus: Bus,
    name: string,
    opts: { module?: string; bindAttrs?: boolean } = {},
  ): BusDriver {
    let d = bus.drivers.get(name);
    if (!d) {
      d = new BusDriver(bus, name, opts.module, opts.bindAttrs ?? true);
      bus.drivers.set(name, d);
      this.emit({ kind: 'driver', driver: d, present: true });
    }
    return d;
  }

  /** driver_unregister: the driver's directory goes (no device is bound to it, nor claimed by it, any more). */
  removeDriver(drv: BusDriver): void {
    if (drv.bus.drivers.get(drv.name) !== drv) return;
    drv.bus.drivers.delete(drv.name);
    this.emit({ kind: 'driver', driver: drv, present: false });
  }

  get(path: readonly string[]): HostDevice | undefined {
    return this.devices.get(path.join('/'));
  }

  onBus(bus: Bus): HostDevice[] {
    return [...this.devices.values()].filter((d) => d.bus === bus);
  }

  boundTo(driver: BusDriver): HostDevice[] {
    return [...this.devices.values()].filter((d) => d.driver === driver);
  }

  /** device_add: a device directory appears (its root device first, if it has none yet). */
  add(dev: HostDevice): HostDevice {
    const key = dev.path.join('/');
    if (this.devices.has(key)) fail(Errno.EEXIST, `device ${key} exists`);
    this.devices.set(key, dev);
    this.emit({ kind: 'device', dev, present: true });
    return dev;
  }

  /** device_del: unbind, then the directory goes. */
  async remove(dev: HostDevice): Promise<void> {
    if (dev.driver) await this.unbind(dev);
    this.devices.delete(dev.path.join('/'));
    this.emit({ kind: 'device', dev, present: false });
  }

  /** kobject_uevent(KOBJ_CHANGE) of a device whose attributes changed. */
  changed(dev: HostDevice): void {
    this.emit({ kind: 'change', dev });
  }

  /** driver_match_device: driver_override decides when set, else dynamic ids and the id table. */
  matches(drv: BusDriver, dev: HostDevice): boolean {
    if (dev.bus !== drv.bus) return false;
    if (dev.driverOverride !== undefined) return dev.driverOverride === drv.name;
    if (dev.pci && drv.dynIds.has(dev.pci.idKey)) return true;
    return drv.claimed.has(dev);
  }

  /** really_probe: bind and run the driver's probe hook. */
  bind(dev: HostDevice, drv: BusDriver): Promise<void> {
    return dev.serialize(async () => {
      if (!this.devices.has(dev.path.join('/'))) fail(Errno.ENODEV, `${dev.name} is gone`);
      if (dev.driver) fail(Errno.EBUSY, `${dev.name} is bound to ${dev.driver.name}`);
      this.attachDriver(dev, drv);
    });
  }

  /** device_release_driver: the driver's remove runs to the end, then the links go. */
  unbind(dev: HostDevice): Promise<void> {
    return dev.serialize(async () => {
      const drv = dev.driver;
      if (!drv) return;
      await dev.hooks.get(drv.name)?.remove(dev);
      if (drv.name === VFIO_PCI) this.unregisterVfio(dev); // vfio_pci_remove
      if (dev.pci && drv.name !== VFIO_PCI && dev.pci.enableCount > 0) dev.pci.enableCount--;
      dev.driver = undefined;
      this.emit({ kind: 'bind', dev, driver: drv, bound: false });
    });
  }

  /** Binding at boot, before anyone looks: the probe hook runs now. */
  bindNow(dev: HostDevice, drv: BusDriver): void {
    if (!dev.driver) this.attachDriver(dev, drv);
  }

  /**
   * really_probe: dev->driver is set, the probe runs, then driver_bound sends KOBJ_BIND. A driver's
   * probe enables the PCI function (pci_enable_device; vfio-pci waits for an open) and does what its
   * hooks say (i915's registers the GVT-g mdev parent). vfio-pci's probe registers the function
   * with VFIO, and fails EINVAL (nothing bound, no event) on a function in no IOMMU group
   * (vfio_group_find_or_alloc).
   */
  private attachDriver(dev: HostDevice, drv: BusDriver): void {
    if (drv.name === VFIO_PCI && dev.pci?.iommuGroup === undefined) fail(Errno.EINVAL, `${dev.name} is in no IOMMU group`);
    dev.driver = drv;
    if (dev.pci && drv.name !== VFIO_PCI) dev.pci.enableCount++;
    if (drv.name === VFIO_PCI) this.registerVfio(dev);
    dev.hooks.get(drv.name)?.probe(dev);
    this.emit({ kind: 'bind', dev, driver: drv, bound: true });
  }

  /** driver_probe_device as device_attach and driver_attach call it: a probe that fails leaves the device unbound, and says nothing. */
  private tryAttach(dev: HostDevice, drv: BusDriver): void {
    try {
      this.attachDriver(dev, drv);
    } catch (err) {
      if (!(err instanceof MdevError)) throw err;
    }
  }

  /** device_attach, under the device lock: the first driver of the bus that matches; nothing when none does. */
  attach(dev: HostDevice): Promise<void> {
    return dev.serialize(async () => {
      if (dev.driver || !dev.bus || !this.devices.has(dev.path.join('/'))) return;
      const drv = [...dev.bus.drivers.values()].find((d) => this.matches(d, dev));
      if (drv) this.tryAttach(dev, drv);
    });
  }

  /** driver_attach (a new id): every unbound device of the bus the driver now matches is probed. */
  async attachAll(drv: BusDriver): Promise<void> {
    for (const dev of this.onBus(drv.bus)) {
      await dev.serialize(async () => {
        if (!dev.driver && this.devices.has(dev.path.join('/')) && this.matches(drv, dev)) this.tryAttach(dev, drv);
      });
    }
  }

  // ---- VFIO ----------------------------------------------------------------------------

  /**
   * vfio_register_group_dev, from a driver's probe: the device gets its vfio index, and its IOMMU
   * group its VFIO group device. A device already registered stays as it is.
   */
  registerVfio(dev: HostDevice): void {
    if (this.vfioRegistered.has(dev)) return;
    const group = dev.pci?.iommuGroup;
    if (group === undefined) fail(Errno.EINVAL, `${dev.name} is in no IOMMU group`);
    this.vfioRegistered.add(dev);
    if (this.vfio.devices) {
      dev.vfioIndex = this.vfio.devices.alloc();
      this.vfioDevices.set(dev.vfioIndex, dev);
    }
    if (!this.vfioGroups.has(group)) {
      dev.vfioGroupMinor = this.vfio.groupMinors.alloc();
      this.vfioGroups.set(group, dev);
    }
    this.emit({ kind: 'vfio', dev, registered: true });
  }

  /** vfio_unregister_group_dev, from a driver's remove: vfio-dev/vfioN goes, then the group device. */
  unregisterVfio(dev: HostDevice): void {
    if (!this.vfioRegistered.delete(dev)) return;
    if (dev.vfioIndex !== undefined) {
      this.vfioDevices.delete(dev.vfioIndex);
      this.vfio.devices?.free(dev.vfioIndex);
    }
    const group = dev.pci?.iommuGroup;
    if (dev.vfioGroupMinor !== undefined && group !== undefined && this.vfioGroups.get(group) === dev) {
      this.vfioGroups.delete(group);
      this.vfio.groupMinors.free(dev.vfioGroupMinor);
    }
    // Listeners see the tree without them, and the numbers they had (their paths are what goes).
    this.emit({ kind: 'vfio', dev, registered: false });
    dev.vfioIndex = dev.vfioGroupMinor = undefined;
  }
}
