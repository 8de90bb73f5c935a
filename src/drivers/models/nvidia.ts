import { Errno, errnoByName, fail } from '../../base/errno';
import type { MdevDevice } from '../../core/model';
import type { VendorAttr } from '../../core/vendor';
import type { NvidiaCapacity, TypeProfile } from '../profile-types';
import type { AttrKind, CapacityModel, ModelScope, ModelType } from './types';

/** A vGPU type as the GPU's resource manager knows it. */
export interface VgpuType {
  /** Identity for the same-type rule (the numeric vGPU type id). */
  readonly key: string;
  readonly framebufferMb: number;
  /** max_instance: a table value per type, never computed. */
  readonly max: number;
}

export type VgpuPolicy = NonNullable<NvidiaCapacity['policy']>;

/**
 * One physical NVIDIA GPU (os-hypervisor.c get_available_instances, docs/hardware.md):
 * the vGPUs on it, whoever holds them (an mdev, or a VF's current_vgpu_type), and which VF each
 * sits on. numCreatedVgpu counts every vGPU of any type.
 */
export class NvidiaGpu {
  private readonly vgpus = new Map<object, { type: VgpuType; vf: string }>();

  constructor(
    readonly policy: VgpuPolicy,
    /** Framebuffer of the whole GPU (heterogeneous policy only). */
    readonly framebufferMb: number,
  ) {}

  get count(): number {
    return this.vgpus.size;
  }

  /** kvgpumgrCheckVgpuTypeCreatable, as captures show it per policy. */
  creatable(t: VgpuType): boolean {
    if (this.vgpus.size === 0) return true;
    const held = [...this.vgpus.values()].map((v) => v.type);
    switch (this.policy) {
      case 'same-size':
        return held.every((h) => h.framebufferMb === t.framebufferMb);
      case 'same-type':
        return held.every((h) => h.key === t.key);
      case 'heterogeneous':
        return held.reduce((n, h) => n + h.framebufferMb, 0) + t.framebufferMb <= this.framebufferMb;
    }
  }

  /** A GPU without SR-IOV: max_instance - numCreatedVgpu while creatable, else 0. */
  timeSliced(t: VgpuType): number {
    return this.creatable(t) ? Math.max(0, t.max - this.count) : 0;
  }

  /** One VF of an SR-IOV GPU: 1 if the VF is free, the GPU below max_instance and the type creatable. */
  perVf(t: VgpuType, vf: string): number {
    return this.count < t.max && !this.holdsOn(vf) && this.creatable(t) ? 1 : 0;
  }

  holdsOn(vf: string): boolean {
    for (const v of this.vgpus.values()) if (v.vf === vf) return true;
    return false;
  }

  add(holder: object, type: VgpuType, vf: string): void {
    this.vgpus.set(holder, { type, vf });
  }

  drop(holder: object): void {
    this.vgpus.delete(holder);
  }
}

/** The vGPU type of a profile type (framebufferMb and max are required). */
export function vgpuType(t: TypeProfile, key = t.name): VgpuType {
  if (!(t.framebufferMb! > 0) || !(t.max! > 0)) {
    throw new Error(`NVIDIA type ${t.name} needs a positive framebufferMb and max (max_instance)`);
  }
  return { key, framebufferMb: t.framebufferMb!, max: t.max! };
}

/** The GPU a parent (a PF, or one of its VFs) belongs to, shared through the scope. */
export function gpuFor(spec: Omit<NvidiaCapacity, 'model'>, parentName: string, types: readonly TypeProfile[], scope: ModelScope): NvidiaGpu {
  const total = spec.framebufferMb ?? Math.max(...types.map((t) => (t.framebufferMb ?? 0) * (t.max ?? 0)));
  return scope.get(`nvidia-gpu:${spec.gpu ?? parentName}`, () => new NvidiaGpu(spec.policy ?? 'same-size', total));
}

/** NVIDIA mdev vGPU: time-sliced on a PF, or 1/0 per VF of an SR-IOV GPU. */
export class NvidiaVgpuModel implements CapacityModel {
  private readonly gpu: NvidiaGpu;
  private readonly types = new Map<string, VgpuType>();

  constructor(
    private readonly spec: NvidiaCapacity,
    private readonly parentName: string,
    types: readonly TypeProfile[],
    scope: ModelScope,
  ) {
    for (const t of types) this.types.set(t.name, vgpuType(t));
    this.gpu = gpuFor(spec, parentName, types, scope);
  }

  available(type: ModelType): number {
    const t = this.types.get(type.profile.name)!;
    return this.spec.sriov ? this.gpu.perVf(t, this.parentName) : this.gpu.timeSliced(t);
  }

  /** nv_vgpu_vfio_create: the resource manager refuses a type that is not creatable now (EIO). */
  reserve(type: ModelType, dev: MdevDevice): void {
    if (this.available(type) <= 0) fail(errnoByName(this.spec.errno ?? 'EIO'), `${type.id}: vGPU creation failed`);
    this.gpu.add(dev, this.types.get(type.profile.name)!, this.parentName);
  }

  release(dev: MdevDevice): void {
    this.gpu.drop(dev);
  }
}

/**
 * nvidia/vgpu_params (DEVICE_ATTR_RW): show "%s\n"; store E2BIG over VGPU_CONFIG_PARAMS_MAX_LENGTH,
 * else snprintf(params, count, "%s", buf), which keeps the first count-1 bytes (up to a NUL): it
 * strips echo's newline and drops the last character of a write without one. EPERM while a VM
 * uses the vGPU cannot happen here: nothing opens an emulated device.
 */
export class VgpuParamsAttr implements AttrKind {
  private readonly params = new WeakMap<MdevDevice, string>();
  constructor(private readonly maxLength = 1024) {}

  detach(dev: MdevDevice): void {
    this.params.delete(dev);
  }

  attr(dev: MdevDevice, path: string): VendorAttr {
    return {
      path,
      mode: 0o644,
      show: () => `${this.params.get(dev) ?? ''}\n`,
      store: (buf) => {
        if (buf.length > this.maxLength) fail(Errno.E2BIG, 'vgpu_params too long');
        const kept = buf.subarray(0, buf.length - 1);
        const nul = kept.indexOf(0);
        this.params.set(dev, (nul >= 0 ? kept.subarray(0, nul) : kept).toString('latin1'));
        return buf.length;
      },
    };
  }
}

/** nvidia/vm_name (DEVICE_ATTR_RO): the VM's name while one uses the vGPU, else "\n". */
export class VmNameAttr implements AttrKind {
  attr(_dev: MdevDevice, path: string): VendorAttr {
    return { path, mode: 0o444, show: () => '\n' };
  }
}

const LONG_MAX = (1n << 63n) - 1n;

/** kstrtol(buf, 10): optional sign, decimal digits, one optional newline; EINVAL, ERANGE on overflow. */
export function kstrtol10(buf: Buffer): bigint {
  const nul = buf.indexOf(0);
  const m = /^([+-]?)(\d+)\n?$/.exec((nul >= 0 ? buf.subarray(0, nul) : buf).toString('latin1'));
  if (!m) fail(Errno.EINVAL, 'not a decimal number');
  const v = BigInt(m[1] === '-' ? `-${m[2]}` : m[2]!);
  if (v > LONG_MAX || v < -LONG_MAX - 1n) fail(Errno.ERANGE, 'out of range');
  return v;
}

/** A vGPU type offered through a VF's nvidia/ files: its numeric id, RM name and resources. */
export interface VfioVgpuType {
  readonly id: number;
  readonly name: string;
  readonly type: VgpuType;
}

/**
 * NVIDIA's vendor-specific VFIO on one VF (no mdev; docs/hardware.md, "NVIDIA vendor-specific
 * VFIO"): nvidia/creatable_vgpu_types lists what the per-VF rule
 * allows now, recomputed on every read; nvidia/current_vgpu_type creates and destroys the VF's vGPU.
 */
export class VendorVfioVf {
  private current = 0;
  /** The GPU's key for this VF's vGPU. */
  private readonly holder = {};

  constructor(
    private readonly gpu: NvidiaGpu,
    private readonly vf: string,
    private readonly types: readonly VfioVgpuType[],
  ) {}

  get currentType(): number {
    return this.current;
  }

  /** creatable_vgpu_types_show: the header, then "%-5d : %s" per creatable type (the RM name ends in "\n"). */
  creatable(): string {
    let out = 'ID    : vGPU Name\n';
    for (const t of this.types) if (this.gpu.perVf(t.type, this.vf) > 0) out += `${String(t.id).padEnd(5)} : ${t.name}\n`;
    return out;
  }

  /** current_vgpu_type_store. */
  store(buf: Buffer): number {
    const id = kstrtol10(buf);
    if (id === 0n) {
      if (this.current === 0) fail(Errno.EPERM, 'Failed to remove vGPU. No vGPU exists on current device');
      this.reset();
      return buf.length;
    }
    if (this.current !== 0) fail(Errno.EPERM, `vGPU device already created with type ID: ${this.current}`);
    const t = this.types.find((x) => BigInt(x.id) === id);
    if (!t || this.gpu.perVf(t.type, this.vf) <= 0) fail(Errno.EIO, `vGPU type ${id} is not creatable`);
    this.gpu.add(this.holder, t.type, this.vf);
    this.current = t.id;
    return buf.length;
  }

  /** The VF leaves its driver (or the GPU is reset): the vGPU goes. */
  reset(): void {
    this.gpu.drop(this.holder);
    this.current = 0;
  }

  attrs(): VendorAttr[] {
    return [
      { path: 'nvidia/creatable_vgpu_types', mode: 0o444, show: () => this.creatable() },
      { path: 'nvidia/current_vgpu_type', mode: 0o644, show: () => `${this.current}\n`, store: (buf) => this.store(buf) },
    ];
  }
}

/** The VFs' vGPU types from a profile's types (name: the numeric id; prettyName: the RM name). */
export function vfioVgpuTypes(types: readonly TypeProfile[]): VfioVgpuType[] {
  return types.map((t) => {
    const id = Number(t.name);
    if (!Number.isInteger(id) || id <= 0) throw new Error(`vendor-VFIO type ${t.name}: the name must be the numeric vGPU type id`);
    return { id, name: t.prettyName ?? t.name, type: vgpuType(t) };
  });
}
