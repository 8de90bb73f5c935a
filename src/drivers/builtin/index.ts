import type { Profile } from '../profile-types';
import { SAMPLES } from '../samples';
import { AP } from './ap';
import { CCW } from './ccw';
import { GVT } from './gvt';
import { MAX_GPUS, NVIDIA_A10, NVIDIA_L40S, NVIDIA_T4, NVIDIA_V100, nvidiaA10, nvidiaL40s, nvidiaT4, nvidiaV100 } from './nvidia';

/** The built-in profiles by name: each one is data for the configured driver, no code of its own. */
export const BUILTINS: Record<string, Profile> = {
  samples: SAMPLES,
  gvt: GVT,
  ap: AP,
  ccw: CCW,
  'nvidia-t4': NVIDIA_T4,
  'nvidia-v100': NVIDIA_V100,
  'nvidia-a10': NVIDIA_A10,
  'nvidia-l40s': NVIDIA_L40S,
};

/**
 * The built-ins that model one GPU, made with `gpus` of them (1 to MAX_GPUS; 1 is the built-in
 * itself): `mdevfs profiles show nvidia-t4 --gpus 4`.
 */
export const WITH_GPUS: Record<string, (gpus: number) => Profile> = {
  'nvidia-t4': nvidiaT4,
  'nvidia-v100': nvidiaV100,
  'nvidia-a10': nvidiaA10,
  'nvidia-l40s': nvidiaL40s,
};
export { MAX_GPUS };
