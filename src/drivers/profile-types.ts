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
  /** PCI identity for parents on the PCI bus. */
  pci?: { vendor: string; device: string; class: string; driver: string; numaNode?: number };
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
}

export interface Profile {
  description?: string;
  abi?: '6.1' | '4.17';
  parents: ParentProfile[];
}
