/**
 * Turns what sysfs-reader.ts saw into a profile that, mounted, shows the same parents: placement,
 * identity, types with their attributes as they were, the devices present, and a capacity model
 * that reproduces every available_instances (checked by replaying it in-process).
 */
import { formatBdf, parseBdf, vfAddress } from '../devices/pci';
import { Emulation } from '../emulation';
import { BUILTINS } from '../drivers/builtin/index';
import type { DeviceAttrSpec, ParentProfile, PciProfile, PresentVf, Profile, RecordingHeader, TypeProfile } from '../drivers/profile-types';
import { silentLogger } from '../base/log';
import { apHostOf, busOf, pciOf } from './identity';
import { type Candidate, type RecognisedParent, type Vendor, VENDORS, defaultCapacity } from './vendors';
import type { ObservedHost, ObservedParent, ObservedVendorVfio, PhysFn } from './sysfs-reader';

export interface Recording {
  profile: Profile;
  /** What could not be reproduced exactly, and which rule each parent's capacity follows. */
  warnings: string[];
  rules: Map<string, string>;
}

export async function toProfile(host: ObservedHost, header: RecordingHeader): Promise<Recording> {
  const warnings = [...host.warnings];
  const rules = new Map<string, string>();
  const drivers = [...host.mdevDrivers.keys()];
  const abi: '6.1' | '4.17' = drivers.length > 0 && drivers.every((d) => d === 'vfio_mdev') ? '4.17' : '6.1';
  const claimed = new Set<string>();
  const parents: ParentProfile[] = [];
  for (const members of units(host.parents)) {
    // The VFs of one PF are one profile parent (sriov.mdevOn = vfs): the first VF speaks for all.
    const merged: ObservedParent = { ...members[0]!, devices: members.flatMap((m) => m.devices) };
    const base = baseParent(merged, abi, host, claimed, warnings);
    const pf = members[0]!.pf;
    if (pf) onVfs(base, pf, members, warnings);
    const rp = recognised(merged, base);
    const vendor = vendorOf(rp);
    const tried = vendor ? vendor.candidates(rp) : [];
    let chosen: Candidate | undefined;
    for (const c of tried) {
      if (await reproduces(base, members, c, abi)) {
        chosen = c;
        break;
      }
    }
    if (!chosen) {
      if (vendor && tried.length > 0) warnings.push(`${base.name}: no ${vendor.name} capacity rule reproduces the recorded available_instances; using the default`);
      chosen = defaultCapacity(rp);
      if (!(await reproduces(base, members, chosen, abi))) warnings.push(`${base.name}: the default capacity model does not reproduce every available_instances`);
    }
    const parent = withCandidate(base, chosen);
    if (vendor?.name === 'vfio-ap' && host.ap) parent.apHost = apHostOf(host.ap);
    await recordDeviceState(parent, members, vendor, abi, warnings);
    parents.push(parent);
    rules.set(base.name, chosen.rule);
  }
  for (const g of host.vendorVfio) {
    const parent = await vendorVfioParent(g, warnings);
    if (!parent) continue;
    parents.push(parent);
    rules.set(parent.name, 'nvidia same-size on vendor-specific VFIO VFs');
  }
  const profile: Profile = {
    description: `Recorded by mdevfs record: ${host.parents.length} mdev parent(s)${host.vendorVfio.length ? `, ${host.vendorVfio.length} vendor-specific VFIO GPU(s)` : ''}`,
    recorded: header,
    ...(abi === '4.17' ? { abi } : {}),
    parents,
  };
  const bridges = host.hostBridges.map((b) => {
    const { driver: _d, module: _m, sriov: _s, ...pci } = pciOf(b, warnings);
    return { name: b.name, path: b.path, pci };
  });
  if (bridges.length > 0) profile.pciDevices = bridges;
  return { profile, warnings, rules };
}

/**
 * A GPU whose VFs take vGPUs through nvidia/current_vgpu_type (no mdev): its PF with
 * sriov.mdevOn "none", its vGPU types, the NVIDIA rule, and each VF's current_vgpu_type as a
 * write at start (`vfs`). A VF lists only what it can take now (nothing while it holds a vGPU or
 * the GPU is full), so a GPU mdevfs knows (its PF's device id) gets the built-in's type table;
 * another gets the types its VFs list now, with max_instance (which sysfs does not show here)
 * taken as the largest framebuffer over the type's, and warnings saying so.
 */
async function vendorVfioParent(g: ObservedVendorVfio, warnings: string[]): Promise<ParentProfile | undefined> {
  const pci = pciOf(g.pf, warnings);
  if (!pci.sriov) {
    warnings.push(`${g.pf.name}: its VFs have nvidia/current_vgpu_type but it shows no SR-IOV; not recorded`);
    return undefined;
  }
  const vfDriver = g.vfs[0]?.driver;
  pci.sriov = { ...pci.sriov, ...(vfDriver && vfDriver !== pci.driver ? { vfDriver } : {}), mdevOn: 'none' };
  withVfGroups(pci, g.pf, g.vfs, warnings);
  const listed = new Map<number, string>();
  for (const vf of g.vfs) {
    for (const line of vf.creatable.split('\n')) {
      const m = /^(\d+)\s*: (.*)$/.exec(line);
      if (m) listed.set(Number(m[1]), m[2]!);
    }
  }
  const held = g.vfs.filter((vf) => vf.current !== '0' && vf.current !== '').sort((a, b) => a.name.localeCompare(b.name));
  const types = knownVfioTypes(g, pci, listed, held, warnings) ?? visibleVfioTypes(g, pci, listed, held, warnings);
  if (types.length === 0) {
    warnings.push(`${g.pf.name}: its VFs list no creatable vGPU type; not recorded`);
    return undefined;
  }
  const parent: ParentProfile = {
    name: g.pf.name,
    path: g.pf.path,
    pci,
    mdevDriver: 'nvidia-vgpu-vfio',
    module: 'nvidia_vgpu_vfio',
    capacity: { model: 'nvidia-vgpu', sriov: true, gpu: g.pf.name, policy: 'same-size', errno: 'EIO' },
    types,
    vfAttrs: {
      'nvidia/creatable_vgpu_types': { kind: 'nvidia-creatable-vgpu-types' },
      'nvidia/current_vgpu_type': { kind: 'nvidia-current-vgpu-type' },
    },
  };
  const vfs: PresentVf[] = [];
  for (const vf of held) {
    if (!types.some((t) => t.name === vf.current)) {
      warnings.push(`${vf.name}: holds vGPU type ${vf.current}, which no VF lists; the replay starts with it unset`);
      continue;
    }
    // Kept only if the replay takes it (an estimated max_instance may not leave room).
    const next = [...vfs, { name: vf.name, attrs: { 'nvidia/current_vgpu_type': vf.current } }];
    if (await replay({ ...parent, vfs: next }, '6.1')) vfs.push(next.at(-1)!);
    else warnings.push(`${vf.name}: holds vGPU type ${vf.current}; the replay refuses to set it, so it starts unset`);
  }
  if (vfs.length > 0) parent.vfs = vfs;
  const em = await replay(parent, '6.1');
  const shown = em ? vfFiles(em, parent) : new Map<string, string>();
  const differ = g.vfs.filter((vf) => shown.get(vf.name) !== `${vf.creatable}|${vf.current}`).map((vf) => vf.name);
  if (differ.length > 0) warnings.push(`${g.pf.name}: in the replay, nvidia/ of ${differ.sort().join(', ')} read otherwise than on the host`);
  return parent;
}

const hexNum = (v: string | number) => (typeof v === 'number' ? v : parseInt(v, 16));

/** The built-in's types of a GPU mdevfs knows (same PF vendor and device id), if they agree with what the VFs show. */
function knownVfioTypes(g: ObservedVendorVfio, pci: PciProfile, listed: Map<number, string>, held: readonly { current: string }[], warnings: string[]): TypeProfile[] | undefined {
  const known = Object.values(BUILTINS)
    .flatMap((b) => b.parents)
    .find((p) => p.pci?.sriov?.mdevOn === 'none' && hexNum(p.pci.vendor) === hexNum(pci.vendor) && hexNum(p.pci.device) === hexNum(pci.device));
  if (!known) return undefined;
  const byId = new Map(known.types.map((t) => [Number(t.name), t]));
  const odd = [...listed].filter(([id, name]) => byId.get(id)?.prettyName !== name).map(([id]) => id);
  odd.push(...held.map((vf) => Number(vf.current)).filter((id) => !byId.has(id)));
  if (odd.length > 0) {
    warnings.push(`${g.pf.name}: types ${[...new Set(odd)].join(', ')} are not in mdevfs's table of this GPU (another driver branch?); recorded from what its VFs list`);
    return undefined;
  }
  return known.types.map(({ name, prettyName, deviceApi, framebufferMb, max }) => ({ name, prettyName, deviceApi, framebufferMb, max }));
}

/** A GPU mdevfs does not know: the types its VFs list now, max_instance estimated. */
function visibleVfioTypes(g: ObservedVendorVfio, pci: PciProfile, listed: Map<number, string>, held: readonly { current: string }[], warnings: string[]): TypeProfile[] {
  const fb = new Map([...listed].map(([id, name]) => [id, Number(/-(\d+)[A-Z]+\d*$/.exec(name)?.[1] ?? NaN) * 1024]));
  // The GPU holds the vGPUs set and still has room for the largest type listed: at least their sum.
  const inUse = held.reduce((sum, vf) => sum + (fb.get(Number(vf.current)) ?? 0), 0);
  const largest = Math.max(...[...fb.values()].filter((v) => v > 0)) + inUse;
  const types: TypeProfile[] = [];
  for (const [id, name] of [...listed].sort((a, b) => a[0] - b[0])) {
    const mb = fb.get(id)!;
    if (!(mb > 0)) {
      warnings.push(`${g.pf.name}: no framebuffer size in the vGPU name "${name}"; type ${id} left out`);
      continue;
    }
    types.push({ name: String(id), prettyName: name, deviceApi: 'vfio-pci', framebufferMb: mb, max: Math.floor(largest / mb) });
  }
  if (types.length === 0) return types;
  const what = `${g.pf.name}: a GPU mdevfs has no type table for (PCI ${pci.vendor}:${pci.device})`;
  warnings.push(`${what}: its types are the ${types.length} its VFs list now${held.length > 0 ? ', and a type no VF offers while vGPUs are set is missing' : ''}`);
  warnings.push(`${g.pf.name}: vendor-specific VFIO shows no max_instance; each type's is the framebuffer in use plus the largest listed, over its own`);
  return types;
}

/** Each VF's nvidia/creatable_vgpu_types and current_vgpu_type (trimmed) in a replay, as "creatable|current". */
function vfFiles(em: Emulation, p: ParentProfile): Map<string, string> {
  const model = em.host.model;
  const pf = model.get(p.path.split('/').filter(Boolean));
  const out = new Map<string, string>();
  for (const vf of pf?.pci?.sriov?.vfs ?? []) {
    const dev = model.get([...pf!.path.slice(0, -1), vf.name]);
    const show = (f: string) => dev?.driverAttrs.find((a) => a.path === `nvidia/${f}`)?.show?.() ?? '';
    out.set(vf.name, `${show('creatable_vgpu_types')}|${show('current_vgpu_type').trim()}`);
  }
  return out;
}

/** Parents grouped as the profile holds them: each alone, except the VFs of one PF, together. */
function units(parents: readonly ObservedParent[]): ObservedParent[][] {
  const out: ObservedParent[][] = [];
  const byPf = new Map<string, ObservedParent[]>();
  for (const p of parents) {
    if (!p.pf) out.push([p]);
    else if (byPf.has(p.pf.path)) byPf.get(p.pf.path)!.push(p);
    else {
      const group = [p];
      byPf.set(p.pf.path, group);
      out.push(group);
    }
  }
  return out;
}

/** Turns a VF's profile parent into its PF's, with the mdev parents on the VFs. */
function onVfs(p: ParentProfile, pf: PhysFn, members: ObservedParent[], warnings: string[]): void {
  const vfName = new Map(members.flatMap((m) => m.devices.map((d) => [d.uuid, m.name] as const)));
  p.name = pf.name;
  p.path = pf.path;
  const pci = pciOf(pf, warnings);
  if (!pci.sriov) {
    warnings.push(`${pf.name}: the physical function of ${members[0]!.name} shows no SR-IOV; its VFs are recorded as it`);
    return;
  }
  const vfDriver = members[0]!.driver;
  pci.sriov = { ...pci.sriov, ...(vfDriver && vfDriver !== pci.driver ? { vfDriver } : {}), mdevOn: 'vfs' };
  withVfGroups(pci, pf, members, warnings);
  p.pci = pci;
  if (p.devices) p.devices = p.devices.map(({ uuid, type, ...rest }) => ({ uuid, type, parent: vfName.get(uuid)!, ...rest }));
  const ids = (m: ObservedParent) => m.types.map((t) => t.id).join(' ');
  if (members.some((m) => ids(m) !== ids(members[0]!))) warnings.push(`${pf.name}: its VFs show different types; every VF replays with ${members[0]!.name}'s`);
}

/**
 * The enabled VFs' IOMMU groups, VF 0 first (a VF's index from its address: PF + offset +
 * index * stride). Left out, with a word, unless every enabled VF showed one.
 */
function withVfGroups(pci: PciProfile, pf: PhysFn, vfs: readonly { name: string; iommuGroup?: number }[], warnings: string[]): void {
  const s = pci.sriov;
  const at = parseBdf(pf.name);
  if (!s || !at) return;
  const enabled = s.numVfs ?? s.totalVfs;
  const byName = new Map(vfs.map((vf) => [vf.name, vf.iommuGroup]));
  const groups: number[] = [];
  for (let k = 0; k < enabled; k++) {
    const group = byName.get(formatBdf(vfAddress(at, s.offset ?? 1, s.stride ?? 1, k)));
    if (group === undefined) break;
    groups.push(group);
  }
  if (groups.length === enabled && enabled > 0) s.vfIommuGroups = groups;
  else if (vfs.some((vf) => vf.iommuGroup !== undefined)) warnings.push(`${pf.name}: not every enabled VF showed an IOMMU group; the replay numbers its VFs' groups itself`);
}

function vendorOf(rp: RecognisedParent): Vendor | undefined {
  return VENDORS.find((v) => v.candidates(rp).length > 0);
}

function recognised(obs: ObservedParent, p: ParentProfile): RecognisedParent {
  const driverString = typePrefix(obs, p);
  const used = new Map<string, number>();
  for (const d of obs.devices) used.set(d.typeId, (used.get(d.typeId) ?? 0) + 1);
  return { observed: obs, driverString, used };
}

/** The type-id prefix (dev_driver_string of the parent): the driver link, the class, else the ids' common prefix. */
function typePrefix(obs: ObservedParent, p: ParentProfile): string {
  const ids = obs.types.map((t) => t.id);
  const fits = (d: string | undefined) => d !== undefined && d !== '' && ids.every((id) => id.startsWith(`${d}-`) && id.length > d.length + 1);
  for (const d of [obs.driver, p.class, p.mdevDriver]) if (fits(d)) return d!;
  const first = ids[0]!;
  for (let i = first.lastIndexOf('-'); i > 0; i = first.lastIndexOf('-', i - 1)) {
    if (fits(first.slice(0, i))) return first.slice(0, i);
  }
  return first.includes('-') ? first.slice(0, first.indexOf('-')) : first;
}

const BDF = /^([0-9a-f]{4}):([0-9a-f]{2}):[0-9a-f]{2}\.[0-7]$/i;

/** Everything but the capacity model: placement, identity, types, attributes, devices present. */
function baseParent(
  obs: ObservedParent,
  abi: '6.1' | '4.17',
  host: ObservedHost,
  claimed: Set<string>,
  warnings: string[],
): ParentProfile {
  const p: ParentProfile = { name: obs.name, path: obs.path, mdevDriver: '', capacity: { model: 'constant', value: 0 }, types: [] };
  // A hand-made tree may leave out the subsystem link: a PCI address with PCI ids is a PCI function.
  const bdf = BDF.exec(obs.name);
  const sub = obs.subsystem ?? (bdf && obs.files.has('vendor') ? 'bus/pci' : undefined);
  if (sub !== obs.subsystem) warnings.push(`${obs.name}: no subsystem link; recorded as a PCI function`);
  // Top-level files the bus core makes (PCI's many attributes, css's type) are the bus's: only
  // nested vendor groups of a bus device, or any extra file of a class device, go unreproduced.
  let unreproduced = [...obs.extra.keys()];
  if (sub === 'bus/pci') {
    p.pci = pciOf(obs, warnings);
    unreproduced = unreproduced.filter((f) => f.includes('/'));
  } else if (sub?.startsWith('bus/')) {
    const files = new Map([...obs.files, ...[...obs.extra].filter(([f]) => !f.includes('/'))]);
    p.bus = busOf({ ...obs, files }, sub.slice('bus/'.length));
    unreproduced = unreproduced.filter((f) => f.includes('/'));
  } else if (sub?.startsWith('class/')) {
    p.class = sub.slice('class/'.length);
  } else {
    warnings.push(`${obs.name}: subsystem ${sub ?? '(none)'} is not a class or a bus; placed in class ${obs.driver ?? obs.name}`);
    p.class = obs.driver ?? obs.name;
  }
  if (!obs.path.startsWith('devices/') || obs.path.split('/').pop() !== obs.name) {
    p.path = p.pci && bdf ? `devices/pci${bdf[1]}:${bdf[2]}/${obs.name}` : `devices/virtual/${p.class ?? p.bus?.name ?? 'mdev'}/${obs.name}`;
    warnings.push(`${obs.name}: ${obs.path} is not a device directory below devices/; placed at ${p.path}`);
  }
  const rp = recognised(obs, p);
  const vendor = vendorOf(rp);
  p.mdevDriver = mdevDriverOf(obs, rp.driverString, vendor, host, claimed);
  const module = host.mdevDrivers.get(p.mdevDriver) ?? vendor?.module;
  if (module && module !== p.mdevDriver) p.module = module;
  // Always written: the default (the PCI driver, the class, ...) is a rule of the driver's, not of the file.
  p.driverString = rp.driverString;

  p.types = obs.types.map((t) => {
    const name = t.id.slice(rp.driverString.length + 1);
    const tp: TypeProfile = { name };
    // No name file: the 4.17 ABI's vendor had none; on the 6.1 ABI, a host before Linux 6.1 (whose
    // mdev core made none) with such a vendor: absent in the replay too.
    if (t.name === undefined) {
      if (abi === '4.17') tp.legacyName = false;
      else tp.nameFile = false;
    } else if (t.name !== name) tp.prettyName = t.name;
    if (t.description !== undefined) tp.description = t.description;
    if (t.deviceApi === undefined) warnings.push(`${obs.name}/${t.id}: no device_api; replay shows vfio-pci`);
    else tp.deviceApi = t.deviceApi;
    const vars = vendor?.typeVars?.(t);
    if (vars) tp.vars = vars;
    return tp;
  });

  const attrs = deviceAttrs(obs, rp.driverString, p.types, vendor, warnings);
  if (Object.keys(attrs).length > 0) p.deviceAttrs = attrs;

  if (unreproduced.length > 0) {
    if (abi === '4.17') {
      p.legacyParentAttrs = {};
      for (const path of unreproduced) p.legacyParentAttrs[path] = obs.extra.get(path)!.content?.toString('latin1') ?? '';
    } else {
      warnings.push(`${obs.name}: vendor files of the parent not reproduced: ${unreproduced.join(', ')}`);
    }
  }
  if (obs.devices.length > 0) {
    p.devices = obs.devices.map((d) => ({
      uuid: d.uuid,
      type: d.typeId.slice(rp.driverString.length + 1),
      ...(d.iommuGroup !== undefined ? { iommuGroup: d.iommuGroup } : {}),
      ...(d.vfio !== undefined ? { vfio: d.vfio } : {}),
    }));
  }
  return p;
}

/** The mdev bus driver: what the parent's devices are bound to, the vendor's, or one named like the parent. */
function mdevDriverOf(obs: ObservedParent, prefix: string, vendor: Vendor | undefined, host: ObservedHost, claimed: Set<string>): string {
  const bound = obs.devices.map((d) => d.driver).find((d) => d !== undefined && d !== 'vfio_mdev');
  const listed = [...host.mdevDrivers.keys()].filter((d) => d !== 'vfio_mdev');
  const pick =
    bound ??
    [vendor?.mdevDriver, prefix, obs.subsystem?.split('/')[1], obs.name].find((d) => d !== undefined && listed.includes(d)) ??
    vendor?.mdevDriver ??
    (listed.filter((d) => !claimed.has(d)).length === 1 && host.parents.length === 1 ? listed[0] : undefined) ??
    prefix;
  claimed.add(pick);
  return pick;
}

/**
 * Device attributes: for each vendor file of the devices present, a template that gives each of
 * them its recorded content: the same for all (with {uuid} for its own UUID), or one per type (a
 * type var). The vendor's own attributes cover types that had no device to read.
 */
function deviceAttrs(
  obs: ObservedParent,
  prefix: string,
  types: TypeProfile[],
  vendor: Vendor | undefined,
  warnings: string[],
): Record<string, DeviceAttrSpec> {
  const out: Record<string, DeviceAttrSpec> = { ...vendor?.deviceAttrs?.(obs) };
  const paths = new Set(obs.devices.flatMap((d) => [...d.attrs.keys()]));
  for (const path of paths) {
    if (path in out) continue;
    const seen = obs.devices.flatMap((d) => {
      const f = d.attrs.get(path);
      return f?.content ? [{ type: d.typeId.slice(prefix.length + 1), text: f.content.toString('latin1').split(d.uuid).join('{uuid}') }] : [];
    });
    if (seen.length === 0) {
      warnings.push(`${obs.name}: device attribute ${path} could not be read; not reproduced`);
      continue;
    }
    if (seen.every((s) => s.text === seen[0]!.text)) {
      out[path] = seen[0]!.text;
      continue;
    }
    const byType = new Map<string, string>();
    let perType = true;
    for (const s of seen) {
      if (byType.has(s.type) && byType.get(s.type) !== s.text) perType = false;
      byType.set(s.type, s.text);
    }
    if (!perType || [...byType.values()].some((v) => v.includes('{uuid}'))) {
      out[path] = seen[0]!.text; // recordDeviceState says which devices differ
      continue;
    }
    const v = `attr_${path.replace(/\W/g, '_')}`;
    out[path] = `{${v}}`;
    for (const t of types) t.vars = { ...t.vars, [v]: byType.get(t.name) ?? seen[0]!.text };
  }
  return out;
}

function withCandidate(p: ParentProfile, c: Candidate): ParentProfile {
  const prefix = p.driverString!;
  const byName = new Map(p.types.map((t) => [t.name, t]));
  const order = c.typeOrder?.map((id) => id.slice(prefix.length + 1)) ?? p.types.map((t) => t.name);
  const types = order.map((n) => ({ ...byName.get(n)!, ...c.typeFields?.get(`${prefix}-${n}`) }));
  // Key order of the written file: identity first, then capacity, types, attributes, devices.
  const { name, path, class: cls, pci, bus, driverString, mdevDriver, module, deviceAttrs, legacyParentAttrs, devices, ...rest } = p;
  return {
    name,
    path,
    ...(cls !== undefined ? { class: cls } : {}),
    ...(pci !== undefined ? { pci } : {}),
    ...(bus !== undefined ? { bus } : {}),
    ...(driverString !== undefined ? { driverString } : {}),
    mdevDriver,
    ...(module !== undefined ? { module } : {}),
    ...rest,
    capacity: c.capacity,
    types,
    ...(deviceAttrs !== undefined ? { deviceAttrs } : {}),
    ...(legacyParentAttrs !== undefined ? { legacyParentAttrs } : {}),
    ...(devices !== undefined ? { devices } : {}),
  };
}

/** Replays a profile parent in-process; undefined if it cannot be built. */
async function replay(p: ParentProfile, abi: '6.1' | '4.17'): Promise<Emulation | undefined> {
  try {
    const em = new Emulation({ abi, parents: [p] }, { log: silentLogger, clock: { sleep: () => Promise.resolve() } });
    await em.ready;
    return em;
  } catch {
    return undefined;
  }
}

/** What a device present shows of its vendor attributes in a replay, by path. */
function shownAttrs(em: Emulation, uuid: string): Map<string, string | undefined> {
  const dev = em.core.devices.get(uuid);
  const out = new Map<string, string | undefined>();
  for (const a of dev ? dev.parent.driver.deviceAttrs(dev, em.core.abi) : []) {
    try {
      out.set(a.path, a.show?.());
    } catch {
      out.set(a.path, undefined);
    }
  }
  return out;
}

/**
 * State of the devices present that the replay's drivers do not show by themselves (a value
 * written to nvidia/vgpu_params): recorded as writes to the device's attributes at start, kept
 * when a replay with them shows what the host showed, else named in a warning.
 */
async function recordDeviceState(
  p: ParentProfile,
  members: readonly ObservedParent[],
  vendor: Vendor | undefined,
  abi: '6.1' | '4.17',
  warnings: string[],
): Promise<void> {
  const observed = members.flatMap((m) => m.devices);
  // The vendor's own writes first (vfio-ap's assignments); dropped if the replay refuses them.
  const vendorWrites = observed.map((d) => [d, vendor?.deviceWrites?.(d) ?? {}] as const).filter(([, w]) => Object.keys(w).length > 0);
  for (const [d, w] of vendorWrites) {
    const dev = p.devices!.find((x) => x.uuid === d.uuid)!;
    dev.attrs = { ...dev.attrs, ...w };
  }
  const differs = async (): Promise<[string, string, string][] | undefined> => {
    const em = await replay(p, abi);
    if (!em) return undefined;
    return observed.flatMap((d) => {
      const shown = shownAttrs(em, d.uuid);
      return [...d.attrs].flatMap(([path, f]) => {
        const text = f.content?.toString('latin1');
        return text !== undefined && shown.get(path) !== text ? [[d.uuid, path, text] as [string, string, string]] : [];
      });
    });
  };
  let first = await differs();
  if (first === undefined && vendorWrites.length > 0) {
    for (const [d, w] of vendorWrites) {
      const dev = p.devices!.find((x) => x.uuid === d.uuid)!;
      for (const path of Object.keys(w)) delete dev.attrs![path];
      if (Object.keys(dev.attrs!).length === 0) delete dev.attrs;
      warnings.push(`${p.name}: ${d.uuid}: the replay refuses its ${Object.keys(w).join(', ')} writes; recorded without them`);
    }
    first = await differs();
  }
  if (first === undefined || first.length === 0) return;
  for (const [uuid, path, text] of first) {
    const f = observed.find((d) => d.uuid === uuid)!.attrs.get(path)!;
    const dev = p.devices!.find((d) => d.uuid === uuid)!;
    if (f.mode & 0o200) dev.attrs = { ...dev.attrs, [path]: text };
  }
  // A write the replay refuses fails the whole replay: then none is kept.
  const left = new Set(((await differs()) ?? first).map(([uuid, path]) => `${uuid}/${path}`));
  for (const [uuid, path, text] of first) {
    if (!left.has(`${uuid}/${path}`)) continue;
    const dev = p.devices!.find((d) => d.uuid === uuid)!;
    if (dev.attrs) {
      delete dev.attrs[path];
      if (Object.keys(dev.attrs).length === 0) delete dev.attrs;
    }
    warnings.push(`${p.name}: ${uuid}/${path} read ${JSON.stringify(text)} on the host; the replay cannot show it`);
  }
}

/**
 * Replays a profile parent with candidate c and compares every type's available_instances, on
 * each mdev parent it yields (the VFs of a PF), with the recording.
 */
async function reproduces(p: ParentProfile, members: readonly ObservedParent[], c: Candidate, abi: '6.1' | '4.17'): Promise<boolean> {
  const em = await replay(withCandidate(p, c), abi);
  if (!em) return false;
  for (const m of members) {
    const parent = em.core.parents.get(m.name);
    if (!parent || parent.types.size !== m.types.length) return false;
    const want = new Map(m.types.map((t) => [t.id, t.available]));
    for (const [id, type] of parent.types) if (want.get(id) !== em.core.availableInstances(type)) return false;
  }
  return true;
}
