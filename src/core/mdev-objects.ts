import { Mutex } from 'async-mutex';
import type { HostDevice } from '../devices/device-model';
import type { VendorDriver } from './vendor';

/** What a device has in sysfs right now; the ABI decides the order these appear and go. */
export type Part =
  | 'dir' // <parent>/<uuid>/ with uevent, power/, subsystem, and bus/mdev/devices/<uuid>
  | 'remove' // <uuid>/remove
  | 'bound' // driver link, bus/mdev/drivers/<drv>/<uuid>, iommu_group (+ vfio-dev/ in 6.1)
  | 'vendor' // the driver's device attributes (vendor/...)
  | 'links'; // <uuid>/mdev_type and <type>/devices/<uuid>

/**
 * The entries of an mdev device's directory that are the mdev core's (the vendor's attributes come
 * beside them), each with the part that shows it and its kind. The one list of them: the tree builds
 * the directory from it, invalidates by it when a part goes, and a profile's vendor attributes may not
 * shadow these names.
 */
export const DEVICE_ENTRIES = {
  driver: { part: 'bound', kind: 'link' },
  iommu_group: { part: 'bound', kind: 'link' },
  mdev_type: { part: 'links', kind: 'link' },
  power: { part: 'dir', kind: 'dir' },
  remove: { part: 'remove', kind: 'attr' },
  subsystem: { part: 'dir', kind: 'link' },
  uevent: { part: 'dir', kind: 'attr' },
  'vfio-dev': { part: 'bound', kind: 'dir' },
} as const satisfies Record<string, { part: Part; kind: 'dir' | 'attr' | 'link' }>;

export type DeviceEntry = keyof typeof DEVICE_ENTRIES;

/**
 * The entries of a virtual parent's directory that are the mdev core's (on a host device, the
 * device owns power/, subsystem and uevent and adds its own, e.g. driver and driver_override).
 */
export const PARENT_ENTRIES = {
  mdev_supported_types: { kind: 'dir' },
  power: { kind: 'dir' },
  subsystem: { kind: 'link' },
  uevent: { kind: 'attr' },
} as const satisfies Record<string, { kind: 'dir' | 'attr' | 'link' }>;

export type DeviceState = 'reserved' | 'active' | 'removing' | 'released';

export interface ParentPlacement {
  /** dev_name(parent): the name of the class/mdev_bus link. */
  readonly name: string;
  /** Path of the parent's directory below the sysfs root, e.g. devices/virtual/mtty/mtty. */
  readonly path: readonly string[];
  /** Class of a virtual parent (its subsystem), e.g. "mtty". */
  readonly className?: string;
  /**
   * The host device the parent is (a PCI function, the vfio-ap matrix device, a subchannel):
   * it owns the directory, uevent and subsystem; absent for a virtual class device.
   */
  readonly device?: HostDevice;
}

export class MdevType {
  /** Devices whose links are in place, by uuid (insertion order = creation order). */
  readonly devices = new Map<string, MdevDevice>();
  constructor(
    readonly parent: Parent,
    /** type-id: "<driver string>-<sysfs_name>". */
    readonly id: string,
    readonly sysfsName: string,
    /** undefined: no `name` file (a 4.17 vendor without one). */
    readonly name: string | undefined,
    readonly deviceApi: string,
    readonly description: string | undefined,
  ) {}
}

/** The per-parent unregistration gate (the kernel's unreg_sem, taken with trylock). */
export class UnregGate {
  private active = 0;
  private closing = false;
  private waiters: (() => void)[] = [];

  tryEnter(): boolean {
    if (this.closing) return false;
    this.active++;
    return true;
  }

  leave(): void {
    this.active--;
    if (this.active === 0) for (const w of this.waiters.splice(0)) w();
  }

  get isClosing(): boolean {
    return this.closing;
  }

  /** Refuse newcomers, then wait for everyone inside. */
  close(): Promise<void> {
    this.closing = true;
    if (this.active === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

export class Parent {
  readonly types = new Map<string, MdevType>();
  /** Devices of this parent from reservation until release. */
  readonly children = new Map<string, MdevDevice>();
  readonly gate = new UnregGate();
  /** 6.1 core counter for drivers without get_available. */
  counter: number;
  registered = true;
  /** Children whose directory is shown (st_nlink of the parent, without a walk). */
  visibleDevices = 0;

  constructor(
    readonly placement: ParentPlacement,
    readonly driver: VendorDriver,
  ) {
    this.counter = driver.maxInstances ?? 0;
  }

  get name(): string {
    return this.placement.name;
  }
}

export class MdevDevice {
  state: DeviceState = 'reserved';
  readonly parts = new Set<Part>();
  iommuGroup: number | undefined;
  vfioIndex: number | undefined;
  /** Minor of its VFIO group's character device (/dev/vfio/<iommuGroup>) while bound. */
  vfioGroupMinor: number | undefined;
  /** The vendor has created (probed) the device and not yet removed it. */
  vendorActive = false;
  /** The bus driver the device is bound to while 'bound' is shown. */
  boundDriver: string | undefined;
  /** Set while a remove is in progress, so concurrent removers can wait for it. */
  removal: Promise<void> | undefined;
  /** Driver-private state (e.g. reserved pool units). */
  vendorData: unknown;
  /**
   * The kernel's device_lock: probe, driver release (unbind, and device_del on removal or
   * parent unregistration) run one at a time per device, so the vendor's remove runs once.
   */
  readonly lock = new Mutex();

  constructor(
    readonly uuid: string,
    readonly type: MdevType,
  ) {}

  get parent(): Parent {
    return this.type.parent;
  }
}
