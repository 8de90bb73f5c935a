import type { ErrnoName } from '../base/errno';

/** How a driver decides how many instances fit (spec §4.4). */
export type CapacitySpec =
  /** A per-parent count. 6.1: counted by the core (EUSERS); 4.17: by the vendor (legacyErrno). */
  | { model: 'counter'; max: number; legacyErrno?: ErrnoName }
  /** A shared pool, each type costing `cost` units (mtty ports, mbochs MB). */
  | { model: 'pool'; size: number; errno?: ErrnoName; legacyErrno?: ErrnoName | null }
  /** Always the same number, never enforced (mdev-pci style). */
  | { model: 'constant'; value: number }
  /** The first type created locks the parent; other types drop to 0 (NVIDIA time-sliced). */
  | { model: 'exclusive'; errno?: ErrnoName }
  /** NVIDIA vGPU (hardware-profiles.md §1.7): see NvidiaCapacity. */
  | NvidiaCapacity
  /** Intel GVT-g (hardware-profiles.md §3.4): see GvtCapacity. */
  | GvtCapacity;

/**
 * NVIDIA vGPU on one physical GPU (models/nvidia.ts). Every type needs `framebufferMb` and `max`
 * (its max_instance). Time-sliced on a PF (`sriov` false): available = max - vGPUs on the GPU
 * while the type is creatable, else 0. On SR-IOV VFs (`sriov` true, every VF a parent naming the
 * same `gpu`): 1 while this VF holds no vGPU, the GPU holds fewer than `max` and the type is
 * creatable, else 0.
 */
export interface NvidiaCapacity {
  model: 'nvidia-vgpu';
  /** Parents naming the same gpu share one GPU (its VFs); default: the parent alone. */
  gpu?: string;
  sriov?: boolean;
  /**
   * Which types stay creatable once the GPU holds a vGPU: those of the same framebuffer size
   * (`same-size`, default: drivers 525/550), only the same type (`same-type`: older branches), or
   * any that still fits the GPU's framebuffer (`heterogeneous`).
   */
  policy?: 'same-size' | 'same-type' | 'heterogeneous';
  /** The GPU's framebuffer for `heterogeneous` (default: the largest framebufferMb x max). */
  framebufferMb?: number;
  /** errno of a create of a type that is not creatable now (default EIO; EINVAL in some branches). */
  errno?: ErrnoName;
}

/**
 * Intel GVT-g (models/gvt.ts): one pool of low (aperture) and high graphics memory and fences,
 * minus the host's reserve. Each type needs `lowGmMb`, `highGmMb` and `fence`. Types are
 * registered in order and the list stops at the first whose low GM does not fit at all.
 */
export interface GvtCapacity {
  model: 'gvt';
  /** Aperture (mappable GGTT) in MB: 1024 and 256 both reproduce real hosts. */
  apertureMb: number;
  /** Whole GGTT in MB (default 4096); hidden GM = ggttMb - apertureMb. */
  ggttMb?: number;
  /** Fence registers (default 32). */
  fences?: number;
  /** Host reserve: HOST_LOW_GM_SIZE 128, HOST_HIGH_GM_SIZE 384, HOST_FENCE 4 (defaults). */
  hostLowMb?: number;
  hostHighMb?: number;
  hostFences?: number;
  /** errno when a create does not fit (default ENOSPC, also in 4.17). */
  errno?: ErrnoName;
}

/**
 * NVIDIA vendor-specific VFIO files of a VF (models/nvidia.ts VendorVfioVf): creatable_vgpu_types
 * (RO: "ID    : vGPU Name" and "%-5d : %s" per type the VF can take now) and current_vgpu_type
 * (RW "%d\n": a decimal id creates, 0 destroys; EPERM, EIO, EINVAL, ERANGE as the driver).
 */
export type VfAttrSpec = { kind: 'nvidia-creatable-vgpu-types' } | { kind: 'nvidia-current-vgpu-type' };

/** ABIs an attribute exists in (default: all). */
type AbiList = ('6.1' | '4.17')[];

/**
 * A device attribute with behaviour (models/attrs.ts). A plain string is a read-only template.
 */
export type DeviceAttrSpec =
  | string
  /** Read-only template ({uuid}, {cost} and the type's vars), present in the listed ABIs only. */
  | { kind: 'text'; text: string; abi?: AbiList }
  /** NVIDIA nvidia/vgpu_params: RW, "%s\n" of what was stored; a store keeps count-1 bytes, E2BIG over maxLength (1024). */
  | { kind: 'nvidia-vgpu-params'; maxLength?: number; abi?: AbiList }
  /** NVIDIA nvidia/vm_name: RO, "\n" until a VM uses the vGPU. */
  | { kind: 'nvidia-vm-name'; abi?: AbiList }
  /** GVT-g intel_vgpu/vgpu_id: RO "%d\n", the lowest free id of the parent from `first` (1). */
  | { kind: 'vgpu-id'; first?: number; abi?: AbiList }
  /** vfio-ap assign_* and unassign_* (WO): kstrtoul base 0, ENODEV out of range, EADDRNOTAVAIL, EADDRINUSE. */
  | { kind: 'ap-assign' | 'ap-unassign'; target: 'adapter' | 'domain' | 'control-domain'; abi?: AbiList }
  /** vfio-ap matrix, guest_matrix, control_domains (RO) and ap_config (RW, atomic). */
  | { kind: 'ap-matrix' | 'ap-guest-matrix' | 'ap-control-domains' | 'ap-config'; abi?: AbiList };

/**
 * The host's AP configuration a vfio-ap parent checks assignments against (hardware-profiles.md
 * §4.4-§4.5). Masks are written as sysfs shows them: "0x" + up to 64 hex digits, bit 0 leftmost.
 */
export interface ApHostSpec {
  /** Highest adapter / domain id (Na, Nd): 63 and 15 without APXA (defaults), 255 with it. */
  maxAdapterId?: number;
  maxDomainId?: number;
  /** /sys/bus/ap/apmask and aqmask: APQNs with both bits set belong to the default drivers (default all set). */
  apmask?: string;
  aqmask?: string;
  /** Adapters (cards) and usage domains in the host configuration: their queues exist. */
  adapters?: number[];
  domains?: number[];
}

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
  /** Per-type instance limit (exclusive model; NVIDIA max_instance). */
  max?: number;
  /** NVIDIA: the type's framebuffer in MB (the same-size rule compares these). */
  framebufferMb?: number;
  /** GVT-g: low (aperture) and high graphics memory in MB, and fences, one instance takes. */
  lowGmMb?: number;
  highGmMb?: number;
  fence?: number;
  /** 4.17: the vendor's type attributes include `name` (default true; GVT-g had none). */
  legacyName?: boolean;
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
  /** Device attributes, path -> a content template ({uuid} and the type's vars) or a behaviour. */
  deviceAttrs?: Record<string, DeviceAttrSpec>;
  /** vfio-ap: the host AP configuration the ap-* attributes check against. */
  apHost?: ApHostSpec;
  /**
   * Attributes the driver adds to each VF when `pci.sriov.mdevOn` is `none` (NVIDIA's
   * vendor-specific VFIO: no mdev parent; the types are offered through these files, over the GPU
   * the `nvidia-vgpu` capacity names), path -> behaviour.
   */
  vfAttrs?: Record<string, VfAttrSpec>;
  /** 4.17 only: parent attribute groups, path -> content. */
  legacyParentAttrs?: Record<string, string>;
  faults?: FaultSpec;
  /**
   * Devices present at start (a recorded host's mdevs): created in this order, through the core's
   * normal create path (they take capacity), before the tree is mounted. `type` is a name from
   * `types` (the part after the driver prefix).
   */
  devices?: PresentDevice[];
  /**
   * VFs' state at start (vendor-specific VFIO, `pci.sriov.mdevOn` "none": a recorded host's vGPUs
   * on VFs): written to each VF's `vfAttrs` after the devices present, in this order, through the
   * store a write to the file makes (a vGPU takes the GPU's capacity), before the tree is mounted.
   */
  vfs?: PresentVf[];
}

export interface PresentVf {
  /** The VF's PCI address (0000:00:07.4). */
  name: string;
  /** A `vfAttrs` path -> bytes, or several writes in order: `{"nvidia/current_vgpu_type": "1148"}`. */
  attrs: Record<string, string | string[]>;
}

export interface PresentDevice {
  uuid: string;
  type: string;
  /** The mdev parent, when this profile parent yields several (SR-IOV VFs: the VF's name). */
  parent?: string;
  /** The IOMMU group and vfio-dev number it had (a recording): given when free at start. */
  iommuGroup?: number;
  vfio?: number;
  /**
   * Written to its attributes once it exists, path -> bytes, or several writes in order (a
   * recording's nvidia/vgpu_params; vfio-ap's assign_adapter "0x05", "0x06").
   */
  attrs?: Record<string, string | string[]>;
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
  /**
   * PCI functions that are no mdev parent and have no driver, e.g. the host bridge of the machine
   * a profile describes (00:00.0 of qemu's i440FX), so PCI clients see that machine's bus.
   */
  pciDevices?: PciDeviceProfile[];
}

/** A PCI function no driver has bound (no iommu group either: a bridge). */
export interface PciDeviceProfile {
  /** Its address, e.g. 0000:00:00.0. */
  name: string;
  /** devices/pci<domain>:<bus>/<address>. */
  path: string;
  pci: Omit<PciProfile, 'driver' | 'module' | 'sriov'>;
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
  /**
   * The function's IOMMU group number (kernel/iommu_groups/N), as a recorded host had it.
   * Default: the lowest number free when the function is placed. Numbers a profile names are
   * held back from the start, so no other function or mdev takes them first.
   */
  iommuGroup?: number;
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
   * PF is then no mdev parent), or none at all (`none`: NVIDIA's vendor-specific VFIO, whose VFs
   * get the parent's `vfAttrs` instead).
   */
  mdevOn?: 'pf' | 'vfs' | 'none';
  /** The enabled VFs' IOMMU group numbers, VF 0 first (as `PciProfile.iommuGroup`; a VF past the list gets the lowest free). */
  vfIommuGroups?: number[];
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

