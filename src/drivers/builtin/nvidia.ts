import type { ParentProfile, PciBarProfile, PciProfile, Profile, TypeProfile } from '../profile-types';

/**
 * One row of a driver branch's vGPU type table (vgpuConfig.xml as nvidia-smi and sysfs show it):
 * type id, profile, num_heads, frl_config, framebuffer (MB), max_resolution, max_instance.
 */
type Row = readonly [id: number, profile: string, heads: number, frl: number, fbMb: number, resolution: string, max: number];

/**
 * The types of one GPU model: `nvidia-<id>` with `name` "<prefix> <gpu>-<profile>" and the
 * one-line description of os-hypervisor.c nv_vgpu_get_type_info (the tree adds the "\n").
 */
function vgpuTypes(prefix: 'GRID' | 'NVIDIA', gpu: string, rows: readonly Row[]): TypeProfile[] {
  return rows.map(([id, profile, heads, frl, fbMb, resolution, max]) => ({
    name: String(id),
    prettyName: `${prefix} ${gpu}-${profile}`,
    description: `num_heads=${heads}, frl_config=${frl}, framebuffer=${fbMb}M, max_resolution=${resolution}, max_instance=${max}`,
    deviceApi: 'vfio-pci',
    framebufferMb: fbMb,
    max,
  }));
}

/** What the mdev side of nvidia-vgpu-vfio shows on every NVIDIA parent (docs/hardware.md). */
const VGPU_MDEV = {
  mdevDriver: 'nvidia-vgpu-vfio',
  module: 'nvidia_vgpu_vfio',
  deviceAttrs: {
    'nvidia/vgpu_params': { kind: 'nvidia-vgpu-params' },
    'nvidia/vm_name': { kind: 'nvidia-vm-name' },
  },
} satisfies Partial<ParentProfile>;

const Q1 = '5120x2880'; // 1 GB Q and every B profile
const Q = '7680x4320'; // >= 2 GB Q profiles
const A = '1280x1024';
const C = '4096x2160'; // C series on driver 510.47.03

/** Tesla T4 16 GB, driver branch 510 (510.47.03; docs/hardware.md). */
const T4_510: readonly Row[] = [
  [222, '1B', 4, 45, 1024, Q1, 16],
  [223, '2B', 4, 45, 2048, Q1, 8],
  [224, '2B4', 4, 45, 2048, Q1, 8],
  [225, '1A', 1, 60, 1024, A, 16],
  [226, '2A', 1, 60, 2048, A, 8],
  [227, '4A', 1, 60, 4096, A, 4],
  [228, '8A', 1, 60, 8192, A, 2],
  [229, '16A', 1, 60, 16384, A, 1],
  [230, '1Q', 4, 60, 1024, Q1, 16],
  [231, '2Q', 4, 60, 2048, Q, 8],
  [232, '4Q', 4, 60, 4096, Q, 4],
  [233, '8Q', 4, 60, 8192, Q, 2],
  [234, '16Q', 4, 60, 16384, Q, 1],
  [252, '1B4', 4, 45, 1024, Q1, 16],
  [319, '4C', 1, 60, 4096, C, 4],
  [320, '8C', 1, 60, 8192, C, 2],
  [321, '16C', 1, 60, 16384, C, 1],
];

/** Tesla V100 16 GB, driver 510.47.03: the list a real host printed in OpenStack's charm guide
 * (openstack/charm-guide doc/source/admin/vgpu.rst), verbatim. */
const V100_510: readonly Row[] = [
  [105, '1Q', 4, 60, 1024, Q1, 16],
  [106, '2Q', 4, 60, 2048, Q, 8],
  [107, '4Q', 4, 60, 4096, Q, 4],
  [108, '8Q', 4, 60, 8192, Q, 2],
  [109, '16Q', 4, 60, 16384, Q, 1],
  [110, '1A', 1, 60, 1024, A, 16],
  [111, '2A', 1, 60, 2048, A, 8],
  [112, '4A', 1, 60, 4096, A, 4],
  [113, '8A', 1, 60, 8192, A, 2],
  [114, '16A', 1, 60, 16384, A, 1],
  [115, '1B', 4, 45, 1024, Q1, 16],
  [163, '2B', 4, 45, 2048, Q1, 8],
  [217, '2B4', 4, 45, 2048, Q1, 8],
  [247, '1B4', 4, 45, 1024, Q1, 16],
  [299, '4C', 1, 60, 4096, C, 4],
  [300, '8C', 1, 60, 8192, C, 2],
  [301, '16C', 1, 60, 16384, C, 1],
];

/**
 * NVIDIA A10 24 GB, driver 510.47.03 (ids and names: vgpuConfig.xml; docs/hardware.md). max_instance is
 * not in the table: 24 GB / size, as every captured 24 GB card shows (P40) (an inference).
 */
const A10_510: readonly Row[] = [
  [588, '1B', 4, 45, 1024, Q1, 24],
  [589, '2B', 4, 45, 2048, Q1, 12],
  [590, '1Q', 4, 60, 1024, Q1, 24],
  [591, '2Q', 4, 60, 2048, Q, 12],
  [592, '3Q', 4, 60, 3072, Q, 8],
  [593, '4Q', 4, 60, 4096, Q, 6],
  [594, '6Q', 4, 60, 6144, Q, 4],
  [595, '8Q', 4, 60, 8192, Q, 3],
  [596, '12Q', 4, 60, 12288, Q, 2],
  [597, '24Q', 4, 60, 24576, Q, 1],
  [598, '1A', 1, 60, 1024, A, 24],
  [599, '2A', 1, 60, 2048, A, 12],
  [600, '3A', 1, 60, 3072, A, 8],
  [601, '4A', 1, 60, 4096, A, 6],
  [602, '6A', 1, 60, 6144, A, 4],
  [603, '8A', 1, 60, 8192, A, 3],
  [604, '12A', 1, 60, 12288, A, 2],
  [605, '24A', 1, 60, 24576, A, 1],
  [610, '4C', 1, 60, 4096, C, 6],
  [611, '6C', 1, 60, 6144, C, 4],
  [612, '8C', 1, 60, 8192, C, 3],
  [613, '12C', 1, 60, 12288, C, 2],
  [614, '24C', 1, 60, 24576, C, 1],
];

const MB = 1 << 20;

/** The PCI function of an NVIDIA GPU bound to `nvidia`: BAR0 registers, BAR1 the framebuffer, BAR3. */
function nvidiaPci(device: string, subsystemDevice: string, bar1Mb: number): PciProfile {
  return {
    vendor: '0x10de',
    device,
    subsystemVendor: '0x10de',
    subsystemDevice,
    class: '0x030200',
    revision: '0xa1',
    driver: 'nvidia',
    numaNode: 0,
    bars: gpuBars(bar1Mb),
  };
}

function gpuBars(bar1Mb: number): PciBarProfile[] {
  return [
    { index: 0, size: 16 * MB, kind: 'mem32' },
    { index: 1, size: bar1Mb * MB, kind: 'mem64', prefetchable: true },
    { index: 3, size: 32 * MB, kind: 'mem64', prefetchable: true },
  ];
}

/**
 * Where the GPUs of a host with `gpus` of them sit: the first where the built-in has it, each
 * other at function 0 of a bus of its own (01, 02, ...), below a host bridge of that bus, as a
 * server's slots are. Each is a PCI function of its own, so each gets its own IOMMU group.
 */
export function gpuAddresses(first: string, gpus: number): string[] {
  return Array.from({ length: gpus }, (_, k) => (k === 0 ? first : `0000:${k.toString(16).padStart(2, '0')}:00.0`));
}

/** devices/pci<domain>:<bus>/<address>: the function on its host bridge's root bus. */
const pciPath = (address: string) => `devices/pci${address.slice(0, 7)}/${address}`;

/** The most GPUs `gpus` takes: a large server's slots, with room on the buses for every VF. */
export const MAX_GPUS = 16;

/** A time-sliced GPU on a PCI function (Turing/Volta), `gpus` of them: one parent each, the same-size rule. */
function timeSliced(first: string, device: string, subsystemDevice: string, vramGb: number, gpu: string, rows: readonly Row[], gpus = 1): Profile {
  const names = gpuAddresses(first, gpus);
  return {
    description: `${gpus > 1 ? `${gpus} x ` : ''}NVIDIA ${gpu} (10de:${device.slice(2)}) time-sliced vGPU (mdev) on ${names.join(', ')}, driver branch 510`,
    parents: names.map((name) => ({
      name,
      path: pciPath(name),
      pci: nvidiaPci(device, subsystemDevice, vramGb * 1024),
      ...VGPU_MDEV,
      capacity: { model: 'nvidia-vgpu', policy: 'same-size', errno: 'EIO' },
      types: vgpuTypes('GRID', gpu, rows),
    })),
  };
}

/**
 * An SR-IOV GPU whose VFs (from function 4 on) carry the vGPUs: as mdev parents (`vfs`) or through
 * vendor-specific VFIO (`none`). Every VF names the PF's GPU, so the GPU-wide rules span them.
 */
function sriovGpu(o: {
  name: string;
  description: (names: string[]) => string;
  device: string;
  subsystemDevice: string;
  bar1Mb: number;
  totalVfs: number;
  vfBar1Mb: number;
  mdevOn: 'vfs' | 'none';
  types: TypeProfile[];
  extra?: Partial<ParentProfile>;
  gpus?: number;
}): Profile {
  const names = gpuAddresses(o.name, o.gpus ?? 1);
  return {
    description: o.description(names),
    parents: names.map((name) => ({
      name,
      path: pciPath(name),
      pci: {
        ...nvidiaPci(o.device, o.subsystemDevice, o.bar1Mb),
        sriov: { totalVfs: o.totalVfs, offset: 4, stride: 1, vfDevice: o.device, vfBars: gpuBars(o.vfBar1Mb), mdevOn: o.mdevOn },
      },
      ...VGPU_MDEV,
      capacity: { model: 'nvidia-vgpu', sriov: true, gpu: name, policy: 'same-size', errno: 'EIO' },
      types: o.types,
      ...o.extra,
    })),
  };
}

/** Tesla T4 (10de:1eb8, subsystem 10de:12a2) at 0000:00:04.0, and `gpus` - 1 more. */
export const nvidiaT4 = (gpus = 1) => timeSliced('0000:00:04.0', '0x1eb8', '0x12a2', 16, 'T4', T4_510, gpus);
export const NVIDIA_T4 = nvidiaT4();

/**
 * Tesla V100 PCIe 16GB (10de:1db4, subsystem 10de:1214) at 0000:00:05.0, the type list of the
 * captured host: `GRID V100-*`, the 16 GB card's (the 32 GB card, 10de:1db6, lists `GRID V100D-*`).
 */
export const nvidiaV100 = (gpus = 1) => timeSliced('0000:00:05.0', '0x1db4', '0x1214', 16, 'V100', V100_510, gpus);
export const NVIDIA_V100 = nvidiaV100();

/**
 * NVIDIA A10 (10de:2236) with SR-IOV enabled (sriov-manage -e; docs/hardware.md, "NVIDIA vGPU on
 * SR-IOV virtual functions"):
 * every VF is an mdev parent with the whole type list reading 1 or 0, the PF is none. VFs from
 * function 4 on (the OpenNebula capture's parent 41:00.4), 24 of them: one per vGPU of the
 * largest max_instance (an inference: NVIDIA publishes no sriov_totalvfs per model; docs/deviations.md).
 */
export const nvidiaA10 = (gpus = 1): Profile => sriovGpu({
  name: '0000:00:06.0',
  description: (names) => `${names.length > 1 ? `${names.length} x ` : ''}NVIDIA A10 (10de:2236) vGPU (mdev) on the SR-IOV VFs of ${names.join(', ')}, driver branch 510`,
  device: '0x2236',
  subsystemDevice: '0x1482',
  bar1Mb: 32 * 1024,
  totalVfs: 24,
  vfBar1Mb: 1024,
  mdevOn: 'vfs',
  types: vgpuTypes('NVIDIA', 'A10', A10_510),
  gpus,
});
export const NVIDIA_A10 = nvidiaA10();

/**
 * L40S 48 GB types of the vendor-VFIO era (ids and names: the OpenNebula host listing, 1145 =
 * NVIDIA L40S-1B as hypeman#327 shows). max_instance as the 48 GB RTX A6000 capture (1 GB: 32).
 */
const L40S: readonly Row[] = [
  [1145, '1B', 4, 45, 1024, Q1, 32],
  [1146, '2B', 4, 45, 2048, Q1, 24],
  [1147, '1Q', 4, 60, 1024, Q1, 32],
  [1148, '2Q', 4, 60, 2048, Q, 24],
  [1149, '3Q', 4, 60, 3072, Q, 16],
  [1150, '4Q', 4, 60, 4096, Q, 12],
  [1151, '6Q', 4, 60, 6144, Q, 8],
  [1152, '8Q', 4, 60, 8192, Q, 6],
  [1153, '12Q', 4, 60, 12288, Q, 4],
  [1154, '16Q', 4, 60, 16384, Q, 3],
  [1155, '24Q', 4, 60, 24576, Q, 2],
  [1156, '48Q', 4, 60, 49152, Q, 1],
  [1157, '1A', 1, 60, 1024, A, 32],
  [1158, '2A', 1, 60, 2048, A, 24],
  [1159, '3A', 1, 60, 3072, A, 16],
  [1160, '4A', 1, 60, 4096, A, 12],
  [1161, '6A', 1, 60, 6144, A, 8],
  [1162, '8A', 1, 60, 8192, A, 6],
  [1163, '12A', 1, 60, 12288, A, 4],
  [1164, '16A', 1, 60, 16384, A, 3],
  [1165, '24A', 1, 60, 24576, A, 2],
  [1166, '48A', 1, 60, 49152, A, 1],
];

/**
 * NVIDIA L40S (10de:26b9) with vendor-specific VFIO (vGPU 17+, docs/hardware.md, "NVIDIA vendor-specific VFIO"): no
 * mdev at all; 16 VFs (the cozystack default) bound to nvidia, each with nvidia/creatable_vgpu_types
 * and nvidia/current_vgpu_type over the one GPU; the PF has no nvidia/ directory.
 */
export const nvidiaL40s = (gpus = 1): Profile => sriovGpu({
  name: '0000:00:07.0',
  description: (names) => `${names.length > 1 ? `${names.length} x ` : ''}NVIDIA L40S (10de:26b9) vGPU through vendor-specific VFIO on the SR-IOV VFs of ${names.join(', ')} (no mdev)`,
  device: '0x26b9',
  subsystemDevice: '0x1851',
  bar1Mb: 64 * 1024,
  totalVfs: 16,
  vfBar1Mb: 4096,
  mdevOn: 'none',
  types: vgpuTypes('NVIDIA', 'L40S', L40S),
  extra: {
    vfAttrs: {
      'nvidia/creatable_vgpu_types': { kind: 'nvidia-creatable-vgpu-types' },
      'nvidia/current_vgpu_type': { kind: 'nvidia-current-vgpu-type' },
    },
  },
  gpus,
});
export const NVIDIA_L40S = nvidiaL40s();
