import type { Profile } from './profile-types';

/** The kernel's sample drivers exactly as 6.1 shows them (samples/vfio-mdev/; docs/mdev-abi.md, "The sample drivers";
 * recorded in test/conformance/expected/). */
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
  // The real-kernel fixtures were recorded under qemu's default machine (pc, i440FX, one CPU): its
  // host bridge, which no driver binds. PCI clients then see that machine's bus, not an empty one.
  pciDevices: [
    {
      name: '0000:00:00.0',
      path: 'devices/pci0000:00/0000:00:00.0',
      pci: {
        vendor: '0x8086', device: '0x1237', subsystemVendor: '0x1af4', subsystemDevice: '0x1100', class: '0x060000', revision: '0x02',
        express: false, bars: [], irq: 0, localCpus: '0', dmaMaskBits: 32,
      },
    },
  ],
};

// The hardware built-ins live in builtin/; these names stay importable from here.
export { AP } from './builtin/ap';
export { GVT } from './builtin/gvt';
