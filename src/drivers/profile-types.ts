import type { ErrnoName } from '../core/errno';

/** How a driver decides how many instances fit (spec §4.4). */
export type CapacitySpec =
  /** A per-parent count. 6.1: counted by the core (EUSERS); 4.17: by the vendor (legacyErrno). */
  | { model: 'counter'; max: number; legacyErrno?: ErrnoName }
  /** A shared pool, each type costing `cost` units (mtty ports, mbochs MB). */
  | { model: 'pool'; size: number; errno?: ErrnoName; legacyErrno?: ErrnoName | null }
  /** Always the same number, never enforced (mdev-pci style). */
  | { model: 'constant'; value: number }
  /** The first type created locks the parent; other types drop to 0 (NVIDIA time-sliced). */
  | { model: 'exclusive'; errno?: ErrnoName };

/** Latency and failures of a driver's vendor calls, for the whole parent or one type. */
export interface FaultSpec {
  createDelayMs?: number;
  removeDelayMs?: number;
  /** Fail creates with this errno, on every Nth call or with a probability (seeded). */
  createErrno?: ErrnoName;
  createFailEvery?: number;
  createFailProbability?: number;
  removeErrno?: ErrnoName;
  removeFailEvery?: number;
  removeFailProbability?: number;
  seed?: number;
}

export interface TypeProfile {
  /** sysfs_name: the part of the type-id after the driver string. */
  name: string;
  prettyName?: string;
  description?: string;
  deviceApi?: string;
  /** Units of the parent's pool one instance takes. */
  cost?: number;
  /** Per-type instance limit (exclusive model). */
  max?: number;
  /** Values for {placeholders} in deviceAttrs. */
  vars?: Record<string, string>;
  faults?: FaultSpec;
}

export interface ParentProfile {
  /** dev_name(parent): the name under class/mdev_bus. */
  name: string;
  /** Directory of the parent below the sysfs root, e.g. devices/virtual/mtty/mtty. */
  path: string;
  /** Class of a virtual parent (devices/virtual/<class>/...). */
  class?: string;
  /** A parent on the PCI bus: the whole PCI function (see PciProfile). */
  pci?: PciProfile;
  /** A parent on another bus (s390 `matrix`, `css`): see BusProfile. */
  bus?: BusProfile;
  /** dev_driver_string(parent): prefix of type-ids. Default: the PCI driver, else the class. */
  driverString?: string;
  /** Name of the mdev bus driver (bus/mdev/drivers/<name>). */
  mdevDriver: string;
  module?: string;
  capacity: CapacitySpec;
  types: TypeProfile[];
  /** Device attributes, path -> content template ({uuid} and the type's vars). */
  deviceAttrs?: Record<string, string>;
  /** 4.17 only: parent attribute groups, path -> content. */
  legacyParentAttrs?: Record<string, string>;
  faults?: FaultSpec;
  /**
   * Devices present at start (a recorded host's mdevs): created in this order, through the core's
   * normal create path (they take capacity), before the tree is mounted. `type` is a name from
   * `types` (the part after the driver prefix).
   */
  devices?: PresentDevice[];
}

export interface PresentDevice {
  uuid: string;
  type: string;
  /** The mdev parent, when this profile parent yields several (SR-IOV VFs: the VF's name). */
  parent?: string;
  /** The IOMMU group and vfio-dev number it had (a recording): given when free at start. */
  iommuGroup?: number;
  vfio?: number;
}

/** Who made a recording (`mdevfs record`): nothing of the recording machine but its kernel release. */
export interface RecordingHeader {
  /** uname -r of the recorded host, or "unknown" for a tree that is not the running kernel's /sys. */
  kernel: string;
  /** mdevfs version that wrote the recording. */
  mdevfs: string;
  /** ISO 8601 time of the recording. */
  date: string;
}

export interface Profile {
  description?: string;
  /** Set by `mdevfs record`. */
  recorded?: RecordingHeader;
  abi?: '6.1' | '4.17';
  parents: ParentProfile[];
}

// ---- placement: the host device a parent sits on (src/devices/) -----------------------------

/** A hex id as sysfs prints it ("0x10de"), or a number. */
export type HexId = string | number;

/**
 * A PCI function (drivers/pci/pci-sysfs.c): what lspci, libvirt, go-nvlib and driverctl read.
 * The parent's `name` is its address (0000:00:02.0) and its `path` ends with it.
 */
export interface PciProfile {
  vendor: HexId;
  device: HexId;
  /** Default 0x0000. */
  subsystemVendor?: HexId;
  subsystemDevice?: HexId;
  /** 24-bit class code, e.g. 0x030000 (VGA) or 0x030200 (3D). */
  class: HexId;
  /** Default 0x00. */
  revision?: HexId;
  /** The PCI driver bound at start, which registers the mdev parent (i915, nvidia). */
  driver: string;
  /** The driver's module (default: the driver's name with '-' as '_'). */
  module?: string;
  /** Default -1 (no NUMA affinity). */
  numaNode?: number;
  /** Legacy IRQ line the `irq` file shows (default 16; VFs 0). */
  irq?: number;
  /** local_cpulist, e.g. "0-7" (default "0-7"). */
  localCpus?: string;
  /** dma_mask_bits and consistent_dma_mask_bits (default 64). */
  dmaMaskBits?: number;
  /** PCI Express (default true): 4096-byte config space; false: a 256-byte conventional one. */
  express?: boolean;
  /** Memory and I/O BARs (default: one 16 MB 32-bit memory BAR 0). */
  bars?: PciBarProfile[];
  /** An SR-IOV physical function and its virtual functions. */
  sriov?: SriovProfile;
}

export interface PciBarProfile {
  /** BAR number 0-5; a 64-bit BAR also takes the next one. */
  index: number;
  /** Bytes, a power of two (a number or "0x..." hex). */
  size: HexId;
  /** Default mem32. */
  kind?: 'mem32' | 'mem64' | 'io';
  prefetchable?: boolean;
  /** Bus address (default: assigned, aligned to the size). */
  address?: HexId;
}

/** drivers/pci/iov.c: VF n sits at routing id PF + offset + n * stride. */
export interface SriovProfile {
  totalVfs: number;
  /** VFs enabled at start (default: totalVfs). */
  numVfs?: number;
  /** First VF offset and VF stride (defaults 1 and 1). */
  offset?: number;
  stride?: number;
  /** The VFs' device id (their vendor is the PF's). */
  vfDevice: HexId;
  /** One VF's BARs (default: one 16 MB 32-bit memory BAR 0). */
  vfBars?: PciBarProfile[];
  /** The driver the VFs bind to (default: the PF's). */
  vfDriver?: string;
  /**
   * Where the mdev parent is: the PF itself (`pf`, default), or each enabled VF (`vfs`: one
   * parent per VF named by its address, with this parent's types, capacity and attributes; the
   * PF is then no mdev parent).
   */
  mdevOn?: 'pf' | 'vfs';
}

/**
 * A parent on a bus other than PCI, e.g. vfio-ap's matrix device (bus `matrix`, driver `vfio_ap`,
 * path devices/vfio_ap/matrix) or a vfio-ccw subchannel (bus `css`, driver `vfio_ccw`, path
 * devices/css0/0.0.0008). Known buses (matrix, css) bring the kernel's defaults.
 */
export interface BusProfile {
  name: string;
  driver: string;
  /** The driver's module; default for css: vfio_ccw; none for matrix (no module link). */
  module?: string;
  /** false: the driver suppresses bind/unbind (vfio_ap). Default: true, false on matrix. */
  bindAttrs?: boolean;
  /** uevent variables after DRIVER=, added to a known bus's (css: ST=0, MODALIAS=css:t0). */
  uevent?: Record<string, string>;
  /** Read-only attributes of the device, name -> content, added to a known bus's (css: type, modalias). */
  attrs?: Record<string, string>;
}

