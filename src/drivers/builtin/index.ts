import type { Profile } from '../profile-types';
import { SAMPLES } from '../samples';
import { AP } from './ap';
import { CCW } from './ccw';
import { GVT } from './gvt';
import { NVIDIA_A10, NVIDIA_L40S, NVIDIA_T4, NVIDIA_V100 } from './nvidia';

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
