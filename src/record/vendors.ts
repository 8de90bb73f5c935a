/**
 * What a recording knows about vendors: how to recognise a parent, and the capacity models (with
 * their parameters) that could explain the available_instances it shows. to-profile.ts tries the
 * candidates in order and keeps the first one that, replayed, shows exactly what was recorded;
 * when none does (or the vendor is unknown), it falls back to defaultCapacity().
 */
import type { ErrnoName } from '../base/errno';
import type { CapacitySpec, DeviceAttrSpec, TypeProfile } from '../drivers/profile-types';
import type { ObservedDevice, ObservedParent, ObservedType } from './sysfs-reader';

/** One way to explain a parent: its capacity model and what each type needs for it. */
export interface Candidate {
  /** Short name for messages and the recording's notes ("nvidia same-size", "default: counter"). */
  rule: string;
  capacity: CapacitySpec;
  /** Extra fields per type-id (cost, max, framebufferMb, ...). */
  typeFields?: Map<string, Partial<TypeProfile>>;
  /** Types of the profile in this order (a model may register only those that fit, e.g. GVT-g). */
  typeOrder?: string[];
}

export interface Vendor {
  /** Name in messages. */
  name: string;
  /** Bus driver and module of this vendor's mdevs (6.1 names). */
  mdevDriver?: string;
  module?: string;
  /** Device attributes the vendor always has, path -> spec (for types that had no device to record). */
  deviceAttrs?(p: ObservedParent): Record<string, DeviceAttrSpec>;
  /** Writes that give a device present the state its files showed (vfio-ap's assignments). */
  deviceWrites?(d: ObservedDevice): Record<string, string[]>;
  /** Vars of each type for deviceAttrs templates. */
  typeVars?(t: ObservedType): Record<string, string> | undefined;
  candidates(p: RecognisedParent): Candidate[];
}

/** A parent with what it holds now: devices per type-id and the type's sysfs name after the driver prefix. */
export interface RecognisedParent {
  observed: ObservedParent;
  driverString: string;
  used: Map<string, number>;
}

const usedTotal = (p: RecognisedParent) => [...p.used.values()].reduce((a, b) => a + b, 0);
const sysfsName = (p: RecognisedParent, id: string) => id.slice(p.driverString.length + 1);
const num = (re: RegExp, s: string | undefined) => {
  const m = s === undefined ? null : re.exec(s);
  return m ? Number(m[1]) : undefined;
};

/** A pool where each type costs cost(t): its size is what is in use plus what the roomiest type still shows. */
function poolOf(p: RecognisedParent, cost: (t: ObservedType) => number | undefined, rest: { errno?: ErrnoName; legacyErrno?: ErrnoName | null }): Candidate[] {
  const costs = new Map<string, number>();
  for (const t of p.observed.types) {
    const c = cost(t);
    if (c === undefined || !(c > 0)) return [];
    costs.set(t.id, c);
  }
  let used = 0;
  for (const [id, n] of p.used) used += n * costs.get(id)!;
  const free = Math.max(...p.observed.types.map((t) => t.available * costs.get(t.id)!));
  const typeFields = new Map([...costs].map(([id, c]) => [id, { cost: c }]));
  // The pool may hold a remainder too small for any type: try the sizes up to the smallest cost above.
  const min = Math.min(...costs.values());
  return Array.from({ length: min }, (_, extra) => ({
    rule: 'pool',
    capacity: { model: 'pool', size: used + free + extra, ...rest },
    typeFields,
  }));
}

function counterOf(p: RecognisedParent, legacyErrno?: ErrnoName): Candidate[] {
  const avail = p.observed.types.map((t) => t.available);
  if (avail.some((a) => a !== avail[0])) return [];
  return [{ rule: 'counter', capacity: { model: 'counter', max: avail[0]! + usedTotal(p), ...(legacyErrno ? { legacyErrno } : {}) } }];
}

const GVT_TYPE = /^i915-GVTg_V\d_\d+$/;
const NVIDIA_TYPE = /^nvidia-\d+$/;

export const VENDORS: Vendor[] = [
  {
    name: 'mtty',
    mdevDriver: 'mtty',
    module: 'mtty',
    deviceAttrs: () => ({ 'vendor/sample_mdev_dev': 'This is MDEV {uuid}\n' }),
    candidates: (p) =>
      p.driverString === 'mtty'
        ? poolOf(p, (t) => num(/^(\d+)$/, sysfsName(p, t.id)), { errno: 'ENOSPC', legacyErrno: null }).map(named('mtty ports'))
        : [],
  },
  {
    name: 'mdpy',
    mdevDriver: 'mdpy',
    module: 'mdpy',
    deviceAttrs: () => ({ 'vendor/resolution': '{resolution}\n' }),
    typeVars: (t) => {
      const m = /(\d+x\d+) framebuffer/.exec(t.description ?? '');
      return m ? { resolution: m[1]! } : undefined;
    },
    candidates: (p) => (p.driverString === 'mdpy' ? counterOf(p, 'ENOMEM').map(named('mdpy max_devices')) : []),
  },
  {
    name: 'mbochs',
    mdevDriver: 'mbochs',
    module: 'mbochs',
    deviceAttrs: () => ({ 'vendor/memory': '{cost} MB\n' }),
    candidates: (p) =>
      p.driverString === 'mbochs'
        ? poolOf(p, (t) => num(/(\d+) MB video memory/, t.description), { errno: 'ENOSPC', legacyErrno: 'ENOMEM' }).map(named('mbochs memory'))
        : [],
  },
  {
    name: 'vfio-ap',
    mdevDriver: 'vfio_ap_mdev',
    module: 'vfio_ap',
    // vfio_ap_mdev_attrs in the kernel's order; guest_matrix and ap_config only where the host had them.
    deviceAttrs: (p) => {
      const seen = (f: string) => p.devices.length === 0 || p.devices.some((d) => d.attrs.has(f));
      const out: Record<string, DeviceAttrSpec> = {};
      for (const target of ['adapter', 'domain', 'control-domain'] as const) {
        const f = target.replace('-', '_');
        out[`assign_${f}`] = { kind: 'ap-assign', target };
        out[`unassign_${f}`] = { kind: 'ap-unassign', target };
      }
      out.control_domains = { kind: 'ap-control-domains' };
      out.matrix = { kind: 'ap-matrix' };
      if (seen('guest_matrix')) out.guest_matrix = { kind: 'ap-guest-matrix', abi: ['6.1'] };
      if (p.devices.some((d) => d.attrs.has('ap_config'))) out.ap_config = { kind: 'ap-config' };
      return out;
    },
    // matrix lists "AA.DDDD" (or "AA." / ".DDDD" while one side is empty), control_domains "DDDD".
    deviceWrites: (d) => {
      const lines = (f: string) => (d.attrs.get(f)?.content?.toString('latin1') ?? '').split('\n').filter(Boolean);
      const adapters = new Set<string>();
      const domains = new Set<string>();
      for (const l of lines('matrix')) {
        const m = /^([0-9a-f]{2})?\.([0-9a-f]{4})?$/i.exec(l);
        if (m?.[1]) adapters.add(`0x${m[1]}`);
        if (m?.[2]) domains.add(`0x${m[2]}`);
      }
      const control = lines('control_domains').filter((l) => /^[0-9a-f]{4}$/i.test(l)).map((l) => `0x${l}`);
      const out: Record<string, string[]> = {};
      if (adapters.size > 0) out.assign_adapter = [...adapters];
      if (domains.size > 0) out.assign_domain = [...domains];
      if (control.length > 0) out.assign_control_domain = control;
      return out;
    },
    candidates: (p) => (p.driverString === 'vfio_ap' ? counterOf(p, 'EPERM').map(named('vfio-ap')) : []),
  },
  {
    name: 'vfio-ccw',
    mdevDriver: 'vfio_ccw_mdev',
    module: 'vfio_ccw',
    candidates: (p) => (p.driverString === 'vfio_ccw' ? counterOf(p, 'EPERM').map(named('vfio-ccw')) : []),
  },
  {
    name: 'Intel GVT-g',
    mdevDriver: 'intel_vgpu_mdev',
    module: 'kvmgt',
    deviceAttrs: () => ({ 'intel_vgpu/vgpu_id': { kind: 'vgpu-id' } }),
    candidates: (p) => (p.observed.types.every((t) => GVT_TYPE.test(t.id)) ? gvtCandidates(p) : []),
  },
  {
    name: 'NVIDIA vGPU',
    mdevDriver: 'nvidia-vgpu-vfio',
    module: 'nvidia_vgpu_vfio',
    deviceAttrs: () => ({ 'nvidia/vgpu_params': { kind: 'nvidia-vgpu-params' }, 'nvidia/vm_name': { kind: 'nvidia-vm-name' } }),
    candidates: (p) => (p.observed.types.every((t) => NVIDIA_TYPE.test(t.id)) ? nvidiaCandidates(p) : []),
  },
];

function named(rule: string): (c: Candidate) => Candidate {
  return (c) => ({ ...c, rule });
}

/**
 * GVT-g: each type's low/high GM and fences are in its description; the aperture is not, so each
 * aperture size is a candidate and the replay check picks the one that fits.
 */
function gvtCandidates(p: RecognisedParent): Candidate[] {
  const typeFields = new Map<string, Partial<TypeProfile>>();
  for (const t of p.observed.types) {
    const low = num(/low_gm_size: (\d+)MB/, t.description);
    const high = num(/high_gm_size: (\d+)MB/, t.description);
    const fence = num(/fence: (\d+)/, t.description);
    if (low === undefined || high === undefined || fence === undefined) return [];
    // 4.x kernels' GVT-g had no name file: a replay on that ABI leaves it out, as they did.
    typeFields.set(t.id, { lowGmMb: low, highGmMb: high, fence, legacyName: false });
  }
  // The kernel registers types from the largest low GM down to the smallest.
  const typeOrder = [...typeFields].sort((a, b) => b[1].lowGmMb! - a[1].lowGmMb!).map(([id]) => id);
  const out: Candidate[] = [];
  // The aperture is the size of a BAR: a power of two.
  for (const apertureMb of [256, 512, 1024, 2048]) {
    out.push({ rule: `gvt aperture ${apertureMb} MB`, capacity: { model: 'gvt', apertureMb, errno: 'ENOSPC' }, typeFields, typeOrder });
  }
  return out;
}

/** NVIDIA: framebuffer and max_instance are in the description; the creatable policy is tried in turn. */
function nvidiaCandidates(p: RecognisedParent): Candidate[] {
  const typeFields = new Map<string, Partial<TypeProfile>>();
  for (const t of p.observed.types) {
    const fb = num(/framebuffer=(\d+)M/, t.description);
    const max = num(/max_instance=(\d+)/, t.description);
    if (fb === undefined || max === undefined) return [];
    typeFields.set(t.id, { framebufferMb: fb, max });
  }
  const physfn = p.observed.links.get('physfn');
  const sriov = physfn !== undefined ? { sriov: true, gpu: physfn.split('/').pop()! } : {};
  return (['same-size', 'same-type', 'heterogeneous'] as const).map((policy) => ({
    rule: `nvidia ${policy}`,
    capacity: { model: 'nvidia-vgpu', policy, errno: 'EIO', ...sriov },
    typeFields,
  }));
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/**
 * The documented default for a vendor mdevfs does not know (README "Recording a host"):
 * - every type shows the same number: one counter per parent, max = that number + devices present
 *   (the mdev core's own max_instances rule);
 * - otherwise a shared pool in proportion: the free units are the least common multiple L of the
 *   non-zero numbers, a type showing n costs L/n (0: L+1, it does not fit now; L when no device
 *   is present, as no cost larger than the pool is valid), and the devices present add their
 *   cost. Each create then lowers every type in proportion to its size.
 * Both reproduce what was recorded (but a type showing 0 beside no device: it shows 1); change
 * them in the file when the vendor's rule is known.
 */
export function defaultCapacity(p: RecognisedParent): Candidate {
  const counter = counterOf(p);
  if (counter.length > 0) return { ...counter[0]!, rule: 'default: counter' };
  const avail = p.observed.types.map((t) => t.available).filter((n) => n > 0);
  let free = avail.reduce((l, n) => (l * n) / gcd(l, n), 1);
  if (!Number.isSafeInteger(free) || free > 1e12) free = Math.max(...avail);
  const costs = new Map(p.observed.types.map((t) => [t.id, t.available > 0 ? Math.max(1, Math.floor(free / t.available)) : free + 1]));
  let used = 0;
  for (const [id, n] of p.used) used += n * costs.get(id)!;
  // A type showing 0 on a parent with no device has no cost that fits a pool ever: it costs the
  // whole pool (and shows 1; to-profile warns that the default does not reproduce it).
  if (used === 0) for (const [id, cost] of costs) if (cost > free) costs.set(id, free);
  return {
    rule: 'default: proportional pool',
    capacity: { model: 'pool', size: free + used, errno: 'ENOSPC' },
    typeFields: new Map([...costs].map(([id, cost]) => [id, { cost }])),
  };
}
