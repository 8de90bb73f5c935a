import type { ParentProfile } from '../profile-types';
import { ConstantModel, CounterModel, ExclusiveModel, PoolModel } from './basic';
import { GvtModel } from './gvt';
import { NvidiaVgpuModel } from './nvidia';
import type { CapacityModel, ModelScope } from './types';

export { apHostOf, deviceAttrKinds } from './attrs';
export { type CapacityModel, type ModelType, ModelScope } from './types';

/** The capacity model a parent profile declares. */
export function capacityModel(p: ParentProfile, scope: ModelScope): CapacityModel {
  const cap = p.capacity;
  switch (cap.model) {
    case 'counter':
      return new CounterModel(cap);
    case 'pool':
      return new PoolModel(cap);
    case 'constant':
      return new ConstantModel(cap);
    case 'exclusive':
      return new ExclusiveModel(cap);
    case 'nvidia-vgpu':
      return new NvidiaVgpuModel(cap, p.name, p.types, scope);
    case 'gvt':
      return new GvtModel(cap);
  }
}
