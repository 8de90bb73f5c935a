import type { Abi } from '../core/abi';
import { type Clock, seededRandom } from '../base/clock';
import { errnoByName, fail } from '../base/errno';
import type { MdevDevice, MdevType } from '../core/model';
import type { TypeSpec, VendorAttr, VendorDriver } from '../core/vendor';
import { type DeviceAttr } from './models/attrs';
import { type CapacityModel, type ModelType, ModelScope, capacityModel, deviceAttrKinds } from './models/index';
import type { FaultSpec, ParentProfile, TypeProfile } from './profile-types';

/** Decides, call by call, whether an injected fault fires (every Nth call or seeded chance). */
class FaultPlan {
  private calls = 0;
  private readonly random: () => number;
  constructor(
    private readonly every: number | undefined,
    private readonly probability: number | undefined,
    seed: number,
  ) {
    this.random = seededRandom(seed);
  }
  fires(): boolean {
    this.calls++;
    if (this.every && this.calls % this.every === 0) return true;
    return this.probability !== undefined && this.random() < this.probability;
  }
}

interface TypeState {
  profile: TypeProfile;
  faults: FaultSpec;
  createFaults: FaultPlan;
  removeFaults: FaultPlan;
}

/**
 * A vendor driver built from a profile: the capacity model (models/) decides availability and
 * enforcement, the device attributes have their own show/store, the fault spec adds latency and
 * failures to the vendor calls.
 */
export class ConfiguredDriver implements VendorDriver {
  readonly name: string;
  readonly module: string;
  readonly driverString: string;
  readonly types: TypeSpec[];
  readonly maxInstances?: number;
  private readonly byId = new Map<string, TypeState>();
  private readonly capacity: CapacityModel;
  private readonly attrs: DeviceAttr[];

  constructor(
    private readonly p: ParentProfile,
    private readonly clock: Clock,
    scope: ModelScope = new ModelScope(),
  ) {
    this.name = p.mdevDriver;
    this.module = p.module ?? p.mdevDriver;
    this.driverString = p.driverString ?? p.pci?.driver ?? p.bus?.driver ?? p.class ?? p.mdevDriver;
    this.capacity = capacityModel(p, scope);
    this.maxInstances = this.capacity.maxInstances;
    const types = this.capacity.registered?.(p.types) ?? p.types;
    this.types = types.map((t) => ({
      sysfsName: t.name,
      prettyName: t.prettyName,
      description: t.description,
      deviceApi: t.deviceApi ?? 'vfio-pci',
      legacyName: t.legacyName,
    }));
    types.forEach((t, i) => {
      const faults = { ...p.faults, ...t.faults };
      const seed = faults.seed ?? 1;
      this.byId.set(`${this.driverString}-${t.name}`, {
        profile: t,
        faults,
        createFaults: new FaultPlan(faults.createFailEvery, faults.createFailProbability, seed + i),
        removeFaults: new FaultPlan(faults.removeFailEvery, faults.removeFailProbability, seed + 1000 + i),
      });
    });
    this.attrs = deviceAttrKinds(p, (dev) => this.state(dev.type).profile, scope);
  }

  private state(type: MdevType): TypeState {
    const s = this.byId.get(type.id);
    if (!s) throw new Error(`type ${type.id} is not ${this.name}'s`);
    return s;
  }

  private modelType(type: MdevType): ModelType {
    return { id: type.id, profile: this.state(type).profile };
  }

  /** available_instances by the vendor (the core asks only when it does not count itself). */
  getAvailable(type: MdevType, abi: Abi): number {
    return this.capacity.available(this.modelType(type), abi);
  }

  async probe(dev: MdevDevice, abi: Abi): Promise<void> {
    const s = this.state(dev.type);
    await this.clock.sleep(s.faults.createDelayMs ?? 0);
    if (s.faults.createErrno && s.createFaults.fires()) fail(errnoByName(s.faults.createErrno), 'injected create fault');
    this.capacity.reserve(this.modelType(dev.type), dev, abi, abi.coreCounts(this));
    for (const a of this.attrs) a.kind.attach?.(dev);
  }

  async remove(dev: MdevDevice, _abi: Abi, opts: { mayVeto: boolean }): Promise<void> {
    const s = this.state(dev.type);
    await this.clock.sleep(s.faults.removeDelayMs ?? 0);
    const fault = s.faults.removeErrno && s.removeFaults.fires() ? errnoByName(s.faults.removeErrno) : undefined;
    if (fault !== undefined && opts.mayVeto) fail(fault, 'injected remove fault (vetoed)');
    // A remove that cannot veto gives the resources back even when it fails.
    this.capacity.release(dev);
    for (const a of this.attrs) a.kind.detach?.(dev);
    if (fault !== undefined) fail(fault, 'injected remove fault (resources released)');
  }

  deviceAttrs(dev: MdevDevice, abi: Abi): VendorAttr[] {
    return this.attrs.filter((a) => !a.abi || a.abi.includes(abi.version)).map((a) => a.kind.attr(dev, a.path, abi));
  }

  parentAttrs(abi: Abi): VendorAttr[] {
    if (abi.version !== '4.17') return [];
    return Object.entries(this.p.legacyParentAttrs ?? {}).map(([path, text]) => ({ path, mode: 0o444, show: () => text }));
  }
}
