import type { MdevDevice } from '../../core/mdev-objects';
import type { DeviceAttribute } from '../../devices/device-model';
import type { DeviceAttrSpec, ParentProfile, TypeProfile } from '../profile-types';
import { ApAttr, ApMatrixHost } from './ap';
import { VgpuIdAttr } from './gvt';
import { VgpuParamsAttr, VmNameAttr } from './nvidia';
import type { AttrKind, ModelScope } from './types';

/** The one vfio_ap matrix of a system, and its host AP configuration (the AP bus shows the same). */
export function apHostOf(p: ParentProfile, scope: ModelScope): ApMatrixHost {
  return scope.get('vfio-ap', () => new ApMatrixHost(p.apHost));
}

/** A read-only template: {uuid}, {cost} and the type's vars. */
class TextAttr implements AttrKind {
  constructor(
    private readonly template: string,
    private readonly typeOf: (dev: MdevDevice) => TypeProfile,
  ) {}
  attr(dev: MdevDevice, path: string): DeviceAttribute {
    const t = this.typeOf(dev);
    const vars: Record<string, string> = { uuid: dev.uuid, cost: String(t.cost ?? 1), ...t.vars };
    return { path, mode: 0o444, show: () => this.template.replace(/\{(\w+)\}/g, (m, k: string) => vars[k] ?? m) };
  }
}

export interface DeviceAttr {
  readonly path: string;
  readonly kind: AttrKind;
  /** ABIs the attribute exists in (undefined: all). */
  readonly abi?: readonly string[];
}

/** The device attributes a parent profile declares, each with its behaviour. */
export function deviceAttrKinds(p: ParentProfile, typeOf: (dev: MdevDevice) => TypeProfile, scope: ModelScope): DeviceAttr[] {
  const apHost = () => apHostOf(p, scope);
  return Object.entries(p.deviceAttrs ?? {}).map(([path, spec]) => ({ path, ...kindOf(spec, typeOf, apHost) }));
}

function kindOf(spec: DeviceAttrSpec, typeOf: (dev: MdevDevice) => TypeProfile, apHost: () => ApMatrixHost): { kind: AttrKind; abi?: string[] } {
  if (typeof spec === 'string') return { kind: new TextAttr(spec, typeOf) };
  const abi = spec.abi;
  switch (spec.kind) {
    case 'text':
      return { kind: new TextAttr(spec.text, typeOf), abi };
    case 'nvidia-vgpu-params':
      return { kind: new VgpuParamsAttr(spec.maxLength), abi };
    case 'nvidia-vm-name':
      return { kind: new VmNameAttr(), abi };
    case 'vgpu-id':
      return { kind: new VgpuIdAttr(spec.first), abi };
    case 'ap-assign':
    case 'ap-unassign':
      return { kind: new ApAttr(apHost(), spec.kind, spec.target), abi };
    case 'ap-matrix':
    case 'ap-guest-matrix':
    case 'ap-control-domains':
    case 'ap-config':
      return { kind: new ApAttr(apHost(), spec.kind), abi };
  }
}
