import type { Abi } from '../core/abi';
import { type Clock, seededRandom } from '../core/clock';
import { errnoByName, fail } from '../core/errno';
import type { MdevDevice, MdevType } from '../core/model';
import type { TypeSpec, VendorAttr, VendorDriver } from '../core/vendor';
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
 * A vendor driver built from a profile: the capacity model decides availability and
 * enforcement, the fault spec adds latency and failures to the vendor calls.
 */
export class ConfiguredDriver implements VendorDriver {
  readonly name: string;
  readonly module: string;
  readonly driverString: string;
  readonly types: TypeSpec[];
  readonly maxInstances?: number;
  readonly getAvailable?: (type: MdevType, abi: Abi) => number;
  private readonly byId = new Map<string, TypeState>();
  /** Units in use (pool) or instances in use (counter, exclusive), by the vendor's books. */
  private used = 0;
  private readonly usedByType = new Map<string, number>();

  constructor(
    private readonly p: ParentProfile,
    private readonly clock: Clock,
  ) {
    this.name = p.mdevDriver;
    this.module = p.module ?? p.mdevDriver;
    this.driverString = p.driverString ?? p.pci?.driver ?? p.class ?? p.mdevDriver;
    this.types = p.types.map((t) => ({
      sysfsName: t.name,
      prettyName: t.prettyName,
      description: t.description,
      deviceApi: t.deviceApi ?? 'vfio-pci',
    }));
    p.types.forEach((t, i) => {
      const faults = { ...p.faults, ...t.faults };
      const seed = faults.seed ?? 1;
      this.byId.set(`${this.driverString}-${t.name}`, {
        profile: t,
        faults,
        createFaults: new FaultPlan(faults.createFailEvery, faults.createFailProbability, seed + i),
        removeFaults: new FaultPlan(faults.removeFailEvery, faults.removeFailProbability, seed + 1000 + i),
      });
    });
    const cap = p.capacity;
    if (cap.model === 'counter') {
      this.maxInstances = cap.max;
      // Only consulted when the ABI does not count in the core (4.17).
      this.getAvailable = () => cap.max - this.used;
    } else {
      this.getAvailable = (type, abi) => this.available(type, abi);
    }
  }

  private state(type: MdevType): TypeState {
    const s = this.byId.get(type.id);
    if (!s) throw new Error(`type ${type.id} is not ${this.name}'s`);
    return s;
  }

  private available(type: MdevType, abi: Abi): number {
    const cap = this.p.capacity;
    const t = this.state(type).profile;
    switch (cap.model) {
      case 'pool':
        return Math.trunc((cap.size - this.used) / (t.cost ?? 1));
      case 'constant':
        return cap.value;
      case 'exclusive': {
        const others = [...this.usedByType].some(([id, n]) => id !== type.id && n > 0);
        return others ? 0 : (t.max ?? 1) - (this.usedByType.get(type.id) ?? 0);
      }
      case 'counter':
        return abi.coreCounts(this) ? 0 : cap.max - this.used;
    }
  }

  /** How many units a device of this type takes, or fails with the model's errno. */
  private reserve(type: MdevType, abi: Abi): number {
    const cap = this.p.capacity;
    const t = this.state(type).profile;
    const legacy = abi.version === '4.17';
    switch (cap.model) {
      case 'pool': {
        const cost = t.cost ?? 1;
        const errno = legacy ? cap.legacyErrno : (cap.errno ?? 'ENOSPC');
        if (errno && cap.size - this.used < cost) fail(errnoByName(errno), `${type.id}: pool exhausted`);
        return cost;
      }
      case 'counter':
        if (abi.coreCounts(this)) return 1;
        if (this.used >= cap.max) fail(errnoByName(cap.legacyErrno ?? 'ENOMEM'), `${type.id}: no instances left`);
        return 1;
      case 'exclusive':
        if (this.available(type, abi) <= 0) fail(errnoByName(cap.errno ?? 'EINVAL'), `${type.id}: not available`);
        return 1;
      case 'constant':
        return 0;
    }
  }

  async probe(dev: MdevDevice, abi: Abi): Promise<void> {
    const s = this.state(dev.type);
    await this.clock.sleep(s.faults.createDelayMs ?? 0);
    if (s.faults.createErrno && s.createFaults.fires()) fail(errnoByName(s.faults.createErrno), 'injected create fault');
    const units = this.reserve(dev.type, abi);
    this.used += units;
    this.usedByType.set(dev.type.id, (this.usedByType.get(dev.type.id) ?? 0) + 1);
    dev.vendorData = units;
  }

  async remove(dev: MdevDevice, _abi: Abi, opts: { mayVeto: boolean }): Promise<void> {
    const s = this.state(dev.type);
    await this.clock.sleep(s.faults.removeDelayMs ?? 0);
    const fault = s.faults.removeErrno && s.removeFaults.fires() ? errnoByName(s.faults.removeErrno) : undefined;
    if (fault !== undefined && opts.mayVeto) fail(fault, 'injected remove fault (vetoed)');
    // A remove that cannot veto gives the resources back even when it fails.
    this.used -= dev.vendorData as number;
    this.usedByType.set(dev.type.id, (this.usedByType.get(dev.type.id) ?? 1) - 1);
    dev.vendorData = 0;
    if (fault !== undefined) fail(fault, 'injected remove fault (resources released)');
  }

  deviceAttrs(dev: MdevDevice): VendorAttr[] {
    const t = this.state(dev.type).profile;
    const vars: Record<string, string> = { uuid: dev.uuid, cost: String(t.cost ?? 1), ...t.vars };
    return Object.entries(this.p.deviceAttrs ?? {}).map(([path, template]) => ({
      path,
      mode: 0o444,
      show: () => template.replace(/\{(\w+)\}/g, (m, k: string) => vars[k] ?? m),
    }));
  }

  parentAttrs(abi: Abi): VendorAttr[] {
    if (abi.version !== '4.17') return [];
    return Object.entries(this.p.legacyParentAttrs ?? {}).map(([path, text]) => ({ path, mode: 0o444, show: () => text }));
  }
}
