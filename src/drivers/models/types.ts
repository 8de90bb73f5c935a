import type { Abi } from '../../core/abi';
import type { MdevDevice } from '../../core/model';
import type { VendorAttr } from '../../core/vendor';
import type { TypeProfile } from '../profile-types';

/** A type as a model sees it: its type-id and its profile entry. */
export interface ModelType {
  readonly id: string;
  readonly profile: TypeProfile;
}

/**
 * How a vendor decides how many instances of a type fit, and what a device takes. One object
 * per parent; models that span parents (an NVIDIA GPU's VFs) share state through a ModelScope.
 */
export interface CapacityModel {
  /** 6.1 max_instances, counted per parent by the core (EUSERS). */
  readonly maxInstances?: number;
  /** The types the parent registers, in order (default: all; GVT-g drops those that cannot fit). */
  registered?(types: readonly TypeProfile[]): TypeProfile[];
  /** available_instances as the vendor computes it. */
  available(type: ModelType, abi: Abi): number;
  /**
   * Take what a new device needs, or throw the model's errno (nothing taken). `coreCounted`: the
   * core already counted max_instances for this ABI.
   */
  reserve(type: ModelType, dev: MdevDevice, abi: Abi, coreCounted: boolean): void;
  /** Give back what reserve() took (never throws; a no-op for a device that holds nothing). */
  release(dev: MdevDevice): void;
}

/** A device attribute with behaviour: its show/store and per-device state. */
export interface AttrKind {
  /** At probe, after the capacity model reserved (e.g. allocate a vGPU id). */
  attach?(dev: MdevDevice): void;
  /** At remove: drop the device's state. */
  detach?(dev: MdevDevice): void;
  attr(dev: MdevDevice, path: string, abi: Abi): VendorAttr;
}

/**
 * State shared by the parents of one emulation (the emulation owns it): e.g. one NVIDIA GPU whose
 * VFs are separate parents. Keyed by a string the profile chooses.
 */
export class ModelScope {
  private readonly shared = new Map<string, unknown>();

  get<T>(key: string, make: () => T): T {
    if (!this.shared.has(key)) this.shared.set(key, make());
    return this.shared.get(key) as T;
  }

  /** Forgets every shared state (reset: no parent uses it any more). */
  clear(): void {
    this.shared.clear();
  }
}
