import type { Abi } from './abi';
import type { FaultRuleSpec } from '../faults/spec';
import type { DeviceAttribute } from '../devices/device-model';
import type { MdevDevice, MdevType } from './mdev-objects';

export interface TypeSpec {
  readonly sysfsName: string;
  readonly prettyName?: string;
  readonly description?: string;
  readonly deviceApi: string;
  /** 4.17: whether the vendor's type attributes include `name` (default true; GVT-g had none). */
  readonly legacyName?: boolean;
  /** false: no `name` file on any ABI (a recorded host before 6.1 whose vendor had none). */
  readonly nameFile?: boolean;
}

/** The vendor side of mdev (struct mdev_driver + parent ops): capacity, probe, remove. */
export interface VendorDriver {
  /** mdev bus driver name (bus/mdev/drivers/<name>) in 6.1. */
  readonly name: string;
  /** Module that provides the driver (bus/mdev/drivers/<name>/module). */
  readonly module: string;
  /** dev_driver_string(parent): the type-id prefix. */
  readonly driverString: string;
  readonly types: readonly TypeSpec[];
  /** 6.1: max_instances, counted per parent by the core (EUSERS). */
  readonly maxInstances?: number;
  /** available_instances by the vendor (6.1 get_available unless core-counted; every 4.17 show). */
  getAvailable?(type: MdevType, abi: Abi): number;
  /** Vendor create / probe: reserve resources or throw MdevError. */
  probe(dev: MdevDevice, abi: Abi): Promise<void>;
  /**
   * Vendor remove: release resources. With `mayVeto` (a 4.17 remove_store) a throw vetoes the
   * removal and the device keeps everything. Without it (6.1, where the driver's remove returns
   * void, or a forced removal) the device goes whatever happens: the vendor must release its
   * resources even when it reports a failure, which the core only logs.
   */
  remove(dev: MdevDevice, abi: Abi, opts: { mayVeto: boolean }): Promise<void>;
  deviceAttrs(dev: MdevDevice, abi: Abi): readonly DeviceAttribute[];
  /** Fault rules the driver's configuration declares (a profile's `faults`): the core adds them at registration. */
  readonly faultRules?: readonly FaultRuleSpec[];
  /** 4.17 parent attribute groups (e.g. mtty_dev/sample_mtty_dev). */
  parentAttrs?(abi: Abi): readonly DeviceAttribute[];
}
