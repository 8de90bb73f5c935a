import type { Profile } from './profile-types';

/** The kernel's sample drivers exactly as 6.1 shows them (spec §4.3, kernel-6.1-observed.txt). */
export const SAMPLES: Profile = {
  description: "The kernel's sample mdev drivers: mtty, mdpy, mbochs",
  parents: [
    {
      name: 'mtty',
      path: 'devices/virtual/mtty/mtty',
      class: 'mtty',
      mdevDriver: 'mtty',
      capacity: { model: 'pool', size: 24, errno: 'ENOSPC', legacyErrno: null },
      types: [
        { name: '1', prettyName: 'Single port serial', cost: 1 },
        { name: '2', prettyName: 'Dual port serial', cost: 2 },
      ],
      deviceAttrs: { 'vendor/sample_mdev_dev': 'This is MDEV {uuid}\n' },
      legacyParentAttrs: { 'mtty_dev/sample_mtty_dev': 'This is phy device\n' },
    },
    {
      name: 'mdpy',
      path: 'devices/virtual/mdpy/mdpy',
      class: 'mdpy',
      mdevDriver: 'mdpy',
      capacity: { model: 'counter', max: 4, legacyErrno: 'ENOMEM' },
      types: [
        { name: 'vga', prettyName: 'mdpy-vga', description: 'virtual display, 640x480 framebuffer', vars: { resolution: '640x480' } },
        { name: 'xga', prettyName: 'mdpy-xga', description: 'virtual display, 1024x768 framebuffer', vars: { resolution: '1024x768' } },
        { name: 'hd', prettyName: 'mdpy-hd', description: 'virtual display, 1920x1080 framebuffer', vars: { resolution: '1920x1080' } },
      ],
      deviceAttrs: { 'vendor/resolution': '{resolution}\n' },
    },
    {
      name: 'mbochs',
      path: 'devices/virtual/mbochs/mbochs',
      class: 'mbochs',
      mdevDriver: 'mbochs',
      capacity: { model: 'pool', size: 256, errno: 'ENOSPC', legacyErrno: 'ENOMEM' },
      types: [
        { name: 'small', prettyName: 'mbochs-small', description: 'virtual display, 4 MB video memory', cost: 4 },
        { name: 'medium', prettyName: 'mbochs-medium', description: 'virtual display, 16 MB video memory', cost: 16 },
        { name: 'large', prettyName: 'mbochs-large', description: 'virtual display, 64 MB video memory', cost: 64 },
      ],
      deviceAttrs: { 'vendor/memory': '{cost} MB\n' },
    },
  ],
};

/**
 * Intel GVT-g on a Gen9 iGPU at 0000:00:02.0 (spec §4.3): per-type availability from one shared
 * aperture (in units of the smallest type's 64 MB low GM), ENOSPC when it runs out; the type that
 * does not fit at all (GVTg_V5_1) is left out, as i915 does.
 */
export const GVT: Profile = {
  description: 'Intel GVT-g (i915) on a PCI parent',
  parents: [
    {
      name: '0000:00:02.0',
      path: 'devices/pci0000:00/0000:00:02.0',
      pci: { vendor: '0x8086', device: '0x5912', class: '0x030000', driver: 'i915', numaNode: -1 },
      mdevDriver: 'intel_vgpu_mdev',
      module: 'kvmgt',
      capacity: { model: 'pool', size: 7, errno: 'ENOSPC', legacyErrno: 'ENOSPC' },
      types: [
        { name: 'GVTg_V5_8', cost: 1, description: gvtDescription(64, 384, 4, '1024x768', 2) },
        { name: 'GVTg_V5_4', cost: 2, description: gvtDescription(128, 512, 4, '1920x1200', 4) },
        { name: 'GVTg_V5_2', cost: 4, description: gvtDescription(256, 1024, 4, '1920x1200', 8) },
      ],
    },
  ],
};

function gvtDescription(low: number, high: number, fence: number, resolution: string, weight: number): string {
  return `low_gm_size: ${low}MB\nhigh_gm_size: ${high}MB\nfence: ${fence}\nresolution: ${resolution}\nweight: ${weight}`;
}

/**
 * s390 vfio-ap: the AP matrix device (spec §4.3). 6.1 counts up to MAX_ZDEV_ENTRIES_EXT (65536)
 * in the core (EUSERS); the 4.17-era driver counted itself and answered EPERM.
 */
export const AP: Profile = {
  description: 's390 vfio-ap matrix device',
  parents: [
    {
      name: 'matrix',
      path: 'devices/vfio_ap/matrix',
      class: 'vfio_ap',
      mdevDriver: 'vfio_ap_mdev',
      module: 'vfio_ap',
      capacity: { model: 'counter', max: 65536, legacyErrno: 'EPERM' },
      types: [{ name: 'passthrough', prettyName: 'VFIO AP Passthrough Device', deviceApi: 'vfio-ap' }],
    },
  ],
};
