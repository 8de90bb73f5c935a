import type { Abi } from '../../core/abi';
import { errnoByName, fail } from '../../base/errno';
import type { MdevDevice } from '../../core/mdev-objects';
import type { CapacitySpec } from '../profile-types';
import type { CapacityModel, ModelType } from './types';

/** What each device holds: units of a pool or one instance, by type. */
class Holdings {
  private readonly held = new Map<MdevDevice, { type: string; units: number }>();
  used = 0;

  add(dev: MdevDevice, type: string, units: number): void {
    this.held.set(dev, { type, units });
    this.used += units;
  }
  drop(dev: MdevDevice): void {
    const h = this.held.get(dev);
    if (!h) return;
    this.held.delete(dev);
    this.used -= h.units;
  }
  ofType(type: string): number {
    let n = 0;
    for (const h of this.held.values()) if (h.type === type) n++;
    return n;
  }
  otherTypes(type: string): boolean {
    for (const h of this.held.values()) if (h.type !== type) return true;
    return false;
  }
}

/** A per-parent count. 6.1: counted by the core (EUSERS); 4.17: by the vendor (legacyErrno). */
export class CounterModel implements CapacityModel {
  readonly maxInstances: number;
  private readonly held = new Holdings();
  constructor(private readonly spec: Extract<CapacitySpec, { model: 'counter' }>) {
    this.maxInstances = spec.max;
  }
  available(): number {
    return this.spec.max - this.held.used; // only consulted when the core does not count (4.17)
  }
  reserve(type: ModelType, dev: MdevDevice, _abi: Abi, coreCounted: boolean): void {
    if (!coreCounted && this.held.used >= this.spec.max) {
      fail(errnoByName(this.spec.legacyErrno ?? 'ENOMEM'), `${type.id}: no instances left`);
    }
    this.held.add(dev, type.id, 1);
  }
  release(dev: MdevDevice): void {
    this.held.drop(dev);
  }
}

/** A shared pool, each type costing `cost` units (mtty ports, mbochs MB). */
export class PoolModel implements CapacityModel {
  private readonly held = new Holdings();
  constructor(private readonly spec: Extract<CapacitySpec, { model: 'pool' }>) {}
  available(type: ModelType): number {
    return Math.trunc((this.spec.size - this.held.used) / (type.profile.cost ?? 1));
  }
  reserve(type: ModelType, dev: MdevDevice, abi: Abi): void {
    const cost = type.profile.cost ?? 1;
    const errno = abi.version === '4.17' ? this.spec.legacyErrno : (this.spec.errno ?? 'ENOSPC');
    if (errno && this.spec.size - this.held.used < cost) fail(errnoByName(errno), `${type.id}: pool exhausted`);
    this.held.add(dev, type.id, cost);
  }
  release(dev: MdevDevice): void {
    this.held.drop(dev);
  }
}

/** Always the same number, never enforced (mdev-pci style). */
export class ConstantModel implements CapacityModel {
  constructor(private readonly spec: Extract<CapacitySpec, { model: 'constant' }>) {}
  available(): number {
    return this.spec.value;
  }
  reserve(): void {}
  release(): void {}
}

/** The first type created locks the parent; other types drop to 0. */
export class ExclusiveModel implements CapacityModel {
  private readonly held = new Holdings();
  constructor(private readonly spec: Extract<CapacitySpec, { model: 'exclusive' }>) {}
  available(type: ModelType): number {
    return this.held.otherTypes(type.id) ? 0 : (type.profile.max ?? 1) - this.held.ofType(type.id);
  }
  reserve(type: ModelType, dev: MdevDevice): void {
    if (this.available(type) <= 0) fail(errnoByName(this.spec.errno ?? 'EINVAL'), `${type.id}: not available`);
    this.held.add(dev, type.id, 1);
  }
  release(dev: MdevDevice): void {
    this.held.drop(dev);
  }
}
