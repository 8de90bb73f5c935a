import type { ParentProfile, Profile, TypeProfile } from '../profile-types';

/**
 * intel_vgpu_configs[] (drivers/gpu/drm/i915/gvt/vgpu.c) in table order: low GM (aperture) MB,
 * high GM MB, fences, weight, resolution. The five-line description is kvmgt.c's
 * intel_vgpu_show_description (the tree adds the last "\n").
 */
const CONFIGS = [
  ['8', 64, 384, 4, 2, '1024x768'],
  ['4', 128, 512, 4, 4, '1920x1200'],
  ['2', 256, 1024, 4, 8, '1920x1200'],
  ['1', 512, 2048, 4, 16, '1920x1200'],
] as const;

/** GVTg_V<gen>_<n>: 4 on Gen8 (Broadwell), 5 on Gen9. No `name` file in 4.x kernels. */
function gvtTypes(gen: 4 | 5): TypeProfile[] {
  return CONFIGS.map(([n, low, high, fence, weight, resolution]) => ({
    name: `GVTg_V${gen}_${n}`,
    description: `low_gm_size: ${low}MB\nhigh_gm_size: ${high}MB\nfence: ${fence}\nresolution: ${resolution}\nweight: ${weight}`,
    deviceApi: 'vfio-pci',
    lowGmMb: low,
    highGmMb: high,
    fence,
    legacyName: false,
  }));
}

/**
 * Intel GVT-g on a Gen9 iGPU at 0000:00:02.0 (docs/hardware.md, "Intel GVT-g"). The 1024 MB
 * aperture (4 GB GGTT, 32 fences) reproduces the PhyllomeOS capture: V5_1..V5_8 at 1, 2, 5, 7.
 * `capacity.apertureMb: 256` reproduces intel/gvt-linux#122: only V5_8 (2) and V5_4 (1).
 */
export const GVT_PARENT: ParentProfile = {
  name: '0000:00:02.0',
  path: 'devices/pci0000:00/0000:00:02.0',
  // HD Graphics 630 as lspci shows it: MMIO 16M, the aperture (prefetchable), I/O ports.
  pci: {
    vendor: '0x8086',
    device: '0x5912',
    subsystemVendor: '0x8086',
    subsystemDevice: '0x2212',
    class: '0x030000',
    revision: '0x04',
    driver: 'i915',
    numaNode: -1,
    irq: 16,
    dmaMaskBits: 39,
    bars: [
      { index: 0, kind: 'mem64', size: '0x1000000', address: '0xde000000' },
      { index: 2, kind: 'mem64', prefetchable: true, size: '0x40000000', address: '0xc0000000' },
      { index: 4, kind: 'io', size: 64, address: '0xf000' },
    ],
  },
  mdevDriver: 'intel_vgpu_mdev',
  module: 'kvmgt',
  capacity: { model: 'gvt', apertureMb: 1024, ggttMb: 4096, fences: 32 },
  types: gvtTypes(5),
  deviceAttrs: { 'intel_vgpu/vgpu_id': { kind: 'vgpu-id' } },
};

export const GVT: Profile = {
  description: 'Intel GVT-g (i915) on a Gen9 iGPU, HD Graphics 630 (8086:5912) at 0000:00:02.0, 1024 MB aperture',
  parents: [GVT_PARENT],
};
