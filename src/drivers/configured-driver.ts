import type { Abi } from '../core/abi';
import type { Clock } from '../base/clock';
import type { MdevDevice, MdevType } from '../core/mdev-objects';
import type { TypeSpec, VendorDriver } from '../core/vendor';
import type { DeviceAttribute } from '../devices/device-model';
import { type DeviceAttr } from './capacity/attrs';
import { type CapacityModel, type ModelType, ModelScope, capacityModel, deviceAttrKinds } from './capacity/index';
import type { FaultRuleSpec } from '../faults/spec';
import type { FaultSpec, ParentProfile, TypeProfile } from './profile-types';

interface TypeState {
  profile: TypeProfile;
}

/**
 * A type's profile `faults` as rules of the fault engine (src/faults), checked by the core at the
 * vendor's create and remove: the delay first, then the errno every Nth call or by seeded chance
 * (each type and step its own PRNG: seed + the type's index, + 1000 for removes). An errno with
 * neither `...FailEvery` nor `...FailProbability` never fires.
 */
function profileFaultRules(typeId: string, f: FaultSpec, index: number): FaultRuleSpec[] {
  const seed = f.seed ?? 1;
  const rules: FaultRuleSpec[] = [];
  const step = (op: 'create' | 'remove', delayMs: number | undefined, errno: FaultSpec['createErrno'], every: number | undefined, probability: number | undefined, seedOf: number) => {
    if (delayMs) rules.push({ match: { op, type: typeId }, action: { kind: 'delay', ms: delayMs } });
    if (errno && (every || probability !== undefined)) {
      rules.push({ match: { op, type: typeId }, action: { kind: 'errno', errno }, trigger: { ...(every ? { every } : {}), ...(probability !== undefined ? { probability } : {}), seed: seedOf } });
    }
  };
  step('create', f.createDelayMs, f.createErrno, f.createFailEvery, f.createFailProbability, seed + index);
  step('remove', f.removeDelayMs, f.removeErrno, f.removeFailEvery, f.removeFailProbability, seed + 1000 + index);
  return rules;
}

/**
 * A vendor driver built from a profile: the capacity model (capacity/) decides availability and
 * enforcement, the device attributes have their own show/store, the fault spec adds latency and
 * failures to the vendor calls.
 */
export class ConfiguredDriver implements VendorDriver {
  readonly name: string;
  readonly module: string;
  readonly driverString: string;
  readonly types: TypeSpec[];
  readonly maxInstances?: number;
  /** The profile's `faults`, which the core adds to its fault engine when it registers the parent. */
  readonly faultRules: readonly FaultRuleSpec[];
  private readonly byId = new Map<string, TypeState>();
  private readonly capacity: CapacityModel;
  private readonly attrs: DeviceAttr[];

  constructor(
    private readonly p: ParentProfile,
    // Unused since the profile's delays are fault rules (the engine has the emulation's clock).
    _clock: Clock,
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
      nameFile: t.nameFile,
    }));
    const rules: FaultRuleSpec[] = [];
    types.forEach((t, i) => {
      const id = `${this.driverString}-${t.name}`;
      this.byId.set(id, { profile: t });
      rules.push(...profileFaultRules(id, { ...p.faults, ...t.faults }, i));
    });
    this.faultRules = rules;
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
    this.capacity.reserve(this.modelType(dev.type), dev, abi, abi.coreCounts(this));
    for (const a of this.attrs) a.kind.attach?.(dev);
  }

  async remove(dev: MdevDevice, _abi: Abi, _opts: { mayVeto: boolean }): Promise<void> {
    this.capacity.release(dev);
    for (const a of this.attrs) a.kind.detach?.(dev);
  }

  deviceAttrs(dev: MdevDevice, abi: Abi): DeviceAttribute[] {
    return this.attrs.filter((a) => !a.abi || a.abi.includes(abi.version)).map((a) => a.kind.attr(dev, a.path, abi));
  }

  parentAttrs(abi: Abi): DeviceAttribute[] {
    if (abi.version !== '4.17') return [];
    return Object.entries(this.p.legacyParentAttrs ?? {}).map(([path, text]) => ({ path, mode: 0o444, show: () => text }));
  }
}
