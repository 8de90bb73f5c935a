import { errnoByName, fail } from '../../base/errno';
import type { MdevDevice } from '../../core/model';
import type { VendorAttr } from '../../core/vendor';
import type { GvtCapacity, TypeProfile } from '../profile-types';
import type { AttrKind, CapacityModel, ModelType } from './types';

interface GvtNeeds {
  low: number;
  high: number;
  fence: number;
}

function needs(t: TypeProfile): GvtNeeds {
  const n = { low: t.lowGmMb ?? 0, high: t.highGmMb ?? 0, fence: t.fence ?? 0 };
  if (!(n.low > 0 && n.high > 0 && n.fence > 0)) throw new Error(`GVT-g type ${t.name} needs positive lowGmMb, highGmMb and fence`);
  return n;
}

/**
 * Intel GVT-g's one pool (kvmgt.c intel_vgpu_get_available, docs/hardware.md): what is
 * left of the aperture, the hidden GM and the fences after the host's reserve and every vGPU of
 * any type. ENOSPC when a create does not fit.
 */
export class GvtModel implements CapacityModel {
  private readonly lowTotal: number;
  private readonly highTotal: number;
  private readonly fenceTotal: number;
  private readonly held = new Map<MdevDevice, GvtNeeds>();
  private readonly used: GvtNeeds = { low: 0, high: 0, fence: 0 };

  constructor(private readonly spec: GvtCapacity) {
    this.lowTotal = spec.apertureMb - (spec.hostLowMb ?? 128);
    this.highTotal = (spec.ggttMb ?? 4096) - spec.apertureMb - (spec.hostHighMb ?? 384);
    this.fenceTotal = (spec.fences ?? 32) - (spec.hostFences ?? 4);
  }

  /** intel_gvt_init_vgpu_types: in table order, stopping at the first type whose low GM never fits. */
  registered(types: readonly TypeProfile[]): TypeProfile[] {
    const out: TypeProfile[] = [];
    for (const t of types) {
      if (Math.trunc(this.lowTotal / needs(t).low) === 0) break;
      out.push(t);
    }
    return out;
  }

  available(type: ModelType): number {
    const n = needs(type.profile);
    return Math.max(
      0,
      Math.min(
        Math.trunc((this.lowTotal - this.used.low) / n.low),
        Math.trunc((this.highTotal - this.used.high) / n.high),
        Math.trunc((this.fenceTotal - this.used.fence) / n.fence),
      ),
    );
  }

  /** intel_vgpu_alloc_resource. */
  reserve(type: ModelType, dev: MdevDevice): void {
    if (this.available(type) <= 0) fail(errnoByName(this.spec.errno ?? 'ENOSPC'), `${type.id}: no resources left`);
    const n = needs(type.profile);
    this.held.set(dev, n);
    this.used.low += n.low;
    this.used.high += n.high;
    this.used.fence += n.fence;
  }

  release(dev: MdevDevice): void {
    const n = this.held.get(dev);
    if (!n) return;
    this.held.delete(dev);
    this.used.low -= n.low;
    this.used.high -= n.high;
    this.used.fence -= n.fence;
  }
}

/** intel_vgpu/vgpu_id: "%d\n" of an id from the parent's IDR, lowest free from `first` (1; 0 is the idle vGPU). */
export class VgpuIdAttr implements AttrKind {
  private readonly ids = new Map<MdevDevice, number>();
  constructor(private readonly first = 1) {}

  attach(dev: MdevDevice): void {
    const taken = new Set(this.ids.values());
    let id = this.first;
    while (taken.has(id)) id++;
    this.ids.set(dev, id);
  }

  detach(dev: MdevDevice): void {
    this.ids.delete(dev);
  }

  attr(dev: MdevDevice, path: string): VendorAttr {
    return { path, mode: 0o444, show: () => `${this.ids.get(dev) ?? 0}\n` };
  }
}
