import type { Part } from './model';
import type { VendorDriver } from './vendor';

export type AbiVersion = '6.1' | '4.17';

/** One step of device creation or removal: show/hide a group of files, or call the vendor. */
export type Step = { show: Part } | { hide: Part } | { vendor: 'probe' | 'remove' };

/**
 * Everything that differs between the seed-era (4.17) and modern (6.1) mdev cores, in one
 * place: the core and the tree read these fields instead of testing the version.
 */
export interface Abi {
  readonly version: AbiVersion;
  /** Order in which a create makes things visible (docs/mdev-abi.md, "What a create makes visible"). */
  readonly createSteps: readonly Step[];
  /** Order in which a remove takes them away (the same section). */
  readonly removeSteps: readonly Step[];
  /** A failing vendor remove vetoes with EBUSY, the device returns to active. */
  readonly vendorMayVeto: boolean;
  /** remove_store re-creates the remove file when removal failed. */
  readonly restoreRemoveFile: boolean;
  /** The core counts max_instances per parent and answers EUSERS. */
  coreCounts(driver: VendorDriver): boolean;
  /** The bus/mdev driver a device is bound to. */
  boundDriver(driver: VendorDriver): string;
  /** Drivers listed under bus/mdev/drivers for a set of registered vendor drivers. */
  busDrivers(drivers: Iterable<VendorDriver>): { name: string; module: string }[];
  /** 6.1: each bound vfio device has a vfio-dev/vfioN child. */
  readonly vfioDev: boolean;
  /** mdev_(un)register_parent send KOBJ_CHANGE with MDEV_STATE=registered|unregistered (v5.3+). */
  readonly mdevStateUevents: boolean;
  /** available_instances is printed signed (4.17 "%d") and may be negative. */
  readonly signedAvailable: boolean;
  /** A type's `name` file is the vendor's (4.17: absent when the vendor has none), not the core's (6.1). */
  readonly vendorTypeName: boolean;
}

export const ABI_6_1: Abi = {
  version: '6.1',
  createSteps: [
    { show: 'dir' },
    { show: 'remove' },
    { vendor: 'probe' },
    { show: 'bound' },
    { show: 'vendor' },
    { show: 'links' },
  ],
  removeSteps: [
    { hide: 'links' },
    { vendor: 'remove' },
    { hide: 'vendor' },
    { hide: 'bound' },
    { hide: 'dir' },
  ],
  vendorMayVeto: false,
  restoreRemoveFile: false,
  coreCounts: (d) => d.maxInstances !== undefined,
  boundDriver: (d) => d.name,
  busDrivers: (ds) => uniqueByName([...ds].map((d) => ({ name: d.name, module: d.module }))),
  vfioDev: true,
  mdevStateUevents: true,
  signedAvailable: false,
  vendorTypeName: false,
};

export const ABI_4_17: Abi = {
  version: '4.17',
  createSteps: [
    { show: 'dir' },
    { show: 'bound' },
    { vendor: 'probe' },
    { show: 'vendor' },
    { show: 'links' },
    { show: 'remove' },
  ],
  removeSteps: [
    { vendor: 'remove' },
    { hide: 'vendor' },
    { hide: 'links' },
    { hide: 'bound' },
    { hide: 'dir' },
  ],
  vendorMayVeto: true,
  restoreRemoveFile: true,
  coreCounts: () => false,
  boundDriver: () => 'vfio_mdev',
  busDrivers: () => [{ name: 'vfio_mdev', module: 'vfio_mdev' }],
  vfioDev: false,
  mdevStateUevents: false,
  signedAvailable: true,
  vendorTypeName: true,
};

export function abiFor(version: string): Abi {
  if (version === '6.1') return ABI_6_1;
  if (version === '4.17') return ABI_4_17;
  throw new Error(`unknown ABI "${version}" (expected 6.1 or 4.17)`);
}

function uniqueByName<T extends { name: string }>(xs: T[]): T[] {
  const seen = new Map<string, T>();
  for (const x of xs) if (!seen.has(x.name)) seen.set(x.name, x);
  return [...seen.values()];
}
