import type { AbiVersion } from '../../src/core/abi';
import * as fs from 'node:fs';
import { join } from 'node:path';
import type { MdevCore } from '../../src/core/core';
import type { ParentProfile, Profile } from '../../src/drivers/profile-types';
import type { Kernfs } from '../../src/sysfs/kernfs';

/**
 * The invariants of an mdev tree, checked by one function over a small read-only view of a
 * file system, so the same check runs in-process over Kernfs (unit tests) and over a mounted
 * tree through node:fs (integration and torture tests). Paths are absolute from the tree's root.
 */
export interface TreeFs {
  readdir(path: string): string[];
  readlink(path: string): string;
  readFile(path: string): string;
  lstat(path: string): 'dir' | 'file' | 'link';
}

export function kernfsTree(k: Kernfs): TreeFs {
  return {
    readdir: (p) => k.readdir(p).filter((n) => n !== '.' && n !== '..'),
    readlink: (p) => k.readlink(p),
    readFile: (p) => {
      const fh = k.open(p, 0);
      try {
        const data = k.read(fh, 65536, 0);
        // A read a fault rule delays or hangs answers later: check such a tree through its mount.
        if (data instanceof Promise) throw new Error(`${p}: a fault rule holds the read`);
        return data.toString('latin1');
      } finally {
        k.release(fh);
      }
    },
    lstat: (p) => {
      const kind = k.resolve(p).kind; // what getattr reports, without counting subdirectories
      return kind === 'attr' ? 'file' : kind;
    },
  };
}

export function mountedTree(root: string): TreeFs {
  const at = (p: string) => join(root, p);
  return {
    readdir: (p) => fs.readdirSync(at(p)),
    readlink: (p) => fs.readlinkSync(at(p)),
    readFile: (p) => fs.readFileSync(at(p), 'latin1'),
    lstat: (p) => kindOf(fs.lstatSync(at(p)).mode),
  };
}

function kindOf(mode: number): 'dir' | 'file' | 'link' {
  const fmt = mode & 0o170000;
  return fmt === 0o040000 ? 'dir' : fmt === 0o120000 ? 'link' : 'file';
}

/** Errors clients saw, by operation (create, remove, unbind) and errno name. */
export type SeenErrors = Record<string, Record<string, number>>;

export interface CheckOptions {
  /** Capacity of each parent: available_instances is checked against it when quiet. */
  profile?: Profile;
  abi: AbiVersion;
  /** No operation in flight: capacity must match and every device must be complete. */
  quiet: boolean;
  /** In-process: the core itself, to check that nothing is left reserved or removing. */
  core?: MdevCore;
  /** Errors clients saw: each must be one the spec allows for that operation. */
  errors?: SeenErrors;
}

export interface CheckResult {
  problems: string[];
  figures: { parents: number; types: number; devices: number; groups: number; links: number; capacityChecked: number };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Resolves a relative link target from the link's directory; undefined if it leaves the root. */
function resolveInside(linkPath: string, target: string): string | undefined {
  if (target.startsWith('/')) return undefined;
  const parts = linkPath.split('/').filter(Boolean).slice(0, -1);
  for (const c of target.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (parts.length === 0) return undefined;
      parts.pop();
    } else parts.push(c);
  }
  return '/' + parts.join('/');
}

export function checkInvariants(tree: TreeFs, opts: CheckOptions): CheckResult {
  const problems: string[] = [];
  const bad = (msg: string) => problems.push(msg);
  const figures = { parents: 0, types: 0, devices: 0, groups: 0, links: 0, capacityChecked: 0 };
  const exists = (p: string) => {
    try {
      tree.lstat(p);
      return true;
    } catch {
      return false;
    }
  };
  const ls = (p: string) => (exists(p) ? tree.readdir(p) : []);
  /** Follows links (inside the root) to the path they finally name. */
  const follow = (p: string): string | undefined => {
    for (let i = 0; i < 8; i++) {
      if (!exists(p)) return undefined;
      if (tree.lstat(p) !== 'link') return p;
      const next = resolveInside(p, tree.readlink(p));
      if (next === undefined) return undefined;
      p = next;
    }
    return undefined;
  };

  // Every link resolves, and stays inside the tree.
  const walk = (p: string) => {
    let kind: 'dir' | 'file' | 'link';
    try {
      kind = tree.lstat(p);
    } catch (e) {
      return bad(`${p}: listed but lstat fails (${(e as Error).message})`);
    }
    if (kind === 'link') {
      figures.links++;
      const target = tree.readlink(p);
      const abs = resolveInside(p, target);
      if (abs === undefined) bad(`${p} -> ${target} leaves the tree`);
      else if (follow(abs) === undefined) bad(`${p} -> ${target} dangles`);
    } else if (kind === 'dir') for (const n of tree.readdir(p)) walk(p === '/' ? `/${n}` : `${p}/${n}`);
  };
  walk('/');

  // Parents, their devices, their types.
  const deviceAt = new Map<string, string>(); // uuid -> device directory
  const typeOf = new Map<string, string>(); // uuid -> type directory (from mdev_type)
  const parentDirs = new Map<string, string>();
  for (const name of ls('/class/mdev_bus')) {
    const dir = follow(`/class/mdev_bus/${name}`);
    if (!dir) continue;
    parentDirs.set(name, dir);
    for (const entry of tree.readdir(dir)) {
      if (!UUID.test(entry)) continue;
      const devDir = `${dir}/${entry}`;
      if (deviceAt.has(entry)) bad(`${entry} appears under two parents: ${deviceAt.get(entry)} and ${devDir}`);
      deviceAt.set(entry, devDir);
      if (exists(`${devDir}/mdev_type`)) {
        const t = follow(`${devDir}/mdev_type`);
        if (t) typeOf.set(entry, t);
      } else if (opts.quiet) bad(`${entry}: incomplete when quiet (no mdev_type)`);
    }
  }
  figures.parents = parentDirs.size;
  figures.devices = deviceAt.size;

  // bus/mdev/devices lists exactly the device directories.
  const busDevices = ls('/bus/mdev/devices');
  for (const u of busDevices) if (follow(`/bus/mdev/devices/${u}`) !== deviceAt.get(u)) bad(`bus/mdev/devices/${u} does not lead to its device directory`);
  for (const u of deviceAt.keys()) if (!busDevices.includes(u)) bad(`${u} is missing from bus/mdev/devices`);

  // Each type's devices/ equals the devices whose mdev_type is that type.
  const typeDirs: { parent: string; id: string; dir: string }[] = [];
  for (const [parent, dir] of parentDirs) {
    for (const id of ls(`${dir}/mdev_supported_types`)) typeDirs.push({ parent, id, dir: `${dir}/mdev_supported_types/${id}` });
  }
  figures.types = typeDirs.length;
  for (const { dir } of typeDirs) {
    const listed = tree.readdir(`${dir}/devices`).sort();
    const members = [...typeOf].filter(([, t]) => t === dir).map(([u]) => u).sort();
    if (listed.join() !== members.join()) bad(`${dir}/devices lists [${listed}] but its devices are [${members}]`);
    for (const u of listed) if (follow(`${dir}/devices/${u}`) !== deviceAt.get(u)) bad(`${dir}/devices/${u} does not lead to ${u}`);
  }

  // Each bound device has its own iommu group, and every group (and vfio-dev) belongs to one device.
  const groups = ls('/kernel/iommu_groups');
  figures.groups = groups.length;
  const groupOf = new Map<string, string>();
  for (const [u, devDir] of deviceAt) {
    if (!exists(`${devDir}/iommu_group`)) continue;
    const g = follow(`${devDir}/iommu_group`);
    if (!g) continue;
    if (groupOf.has(g)) bad(`${u} shares ${g} with ${groupOf.get(g)}`);
    groupOf.set(g, u);
    const members = tree.readdir(`${g}/devices`);
    if (members.join() !== u) bad(`${g}/devices lists [${members}], expected [${u}]`);
  }
  // Groups of host devices (a PCI parent's own) may exist too, but no group is left empty.
  for (const g of groups) if (ls(`/kernel/iommu_groups/${g}/devices`).length === 0) bad(`iommu group ${g} belongs to no device`);
  // class/vfio-dev/vfioN: an mdev's, or a host device's that a VFIO driver has (vfio-pci, a vendor-specific
  // VFIO VF); its `device` link leads back to the device that holds it.
  const vfioGroups = ls('/class/vfio');
  for (const v of ls('/class/vfio-dev')) {
    const target = follow(`/class/vfio-dev/${v}`);
    const owner = target && follow(`${target}/device`);
    if (!target || !owner || target !== `${owner}/vfio-dev/${v}`) bad(`class/vfio-dev/${v} belongs to no device`);
    else if (!exists(`${owner}/driver`)) bad(`${owner} has ${v} but no driver`);
    // Its IOMMU group has its VFIO group device.
    const group = owner && follow(`${owner}/iommu_group`)?.split('/').pop();
    if (owner && (group === undefined || !vfioGroups.includes(group))) bad(`${owner} has ${v} but its IOMMU group ${group} no VFIO group device`);
  }
  // The VFIO group devices: class/vfio/N leads to devices/virtual/vfio/N, of an IOMMU group that exists.
  for (const g of vfioGroups) {
    if (follow(`/class/vfio/${g}`) !== `/devices/virtual/vfio/${g}`) bad(`class/vfio/${g} does not lead to devices/virtual/vfio/${g}`);
    if (!groups.includes(g)) bad(`class/vfio/${g}: no IOMMU group ${g}`);
  }
  if (ls('/devices/virtual/vfio').sort().join() !== [...vfioGroups].sort().join()) bad('devices/virtual/vfio and class/vfio list different groups');

  if (opts.quiet && opts.profile) {
    for (const p of opts.profile.parents) {
      const dir = parentDirs.get(p.name);
      if (!dir) continue;
      for (const { id, dir: typeDir } of typeDirs.filter((t) => t.parent === p.name)) {
        const expected = expectedAvailable(p, id, opts.abi, (typeId, boundOnly) =>
          [...typeOf].filter(([u, t]) => t === `${dir}/mdev_supported_types/${typeId}` && (!boundOnly || exists(`${deviceAt.get(u)}/driver`))).length,
        );
        if (expected === undefined) continue;
        figures.capacityChecked++;
        const shown = tree.readFile(`${typeDir}/available_instances`);
        if (shown !== `${expected}\n`) bad(`${typeDir}/available_instances reads ${JSON.stringify(shown)}, the ${p.capacity.model} model says ${expected}`);
      }
    }
  }

  if (opts.quiet && opts.core) {
    for (const dev of opts.core.devices.values()) {
      if (dev.state !== 'active') bad(`${dev.uuid} is ${dev.state} when quiet`);
      if (dev.removal) bad(`${dev.uuid} has a removal in flight when quiet`);
      if (dev.lock.isLocked()) bad(`${dev.uuid} is locked when quiet`);
    }
    for (const parent of opts.core.parents.values()) {
      if (parent.driver.maxInstances !== undefined && opts.core.abi.coreCounts(parent.driver)) {
        const held = parent.driver.maxInstances - parent.counter;
        if (held !== parent.children.size) bad(`${parent.name}: core counter holds ${held}, ${parent.children.size} devices exist`);
      }
    }
    if (opts.core.iommuGroups.size !== [...opts.core.devices.values()].filter((d) => d.iommuGroup !== undefined).length) {
      bad('the core holds iommu groups of no device');
    }
  }

  if (opts.errors) {
    for (const [op, seen] of Object.entries(opts.errors)) {
      const allowed = allowedErrnos(op, opts.abi, opts.profile);
      for (const errno of Object.keys(seen)) if (!allowed.has(errno)) bad(`${op} failed with ${errno}, which the spec does not allow`);
    }
  }
  return { problems, figures };
}

/** The type-id the kernel derives: "<dev_driver_string(parent)>-<sysfs_name>". */
function typeIds(p: ParentProfile): string[] {
  const prefix = p.driverString ?? p.pci?.driver ?? p.class ?? p.mdevDriver;
  return p.types.map((t) => `${prefix}-${t.name}`);
}

/**
 * available_instances by the capacity model (docs/mdev-abi.md, "Counting instances"), for the devices present:
 * count(typeId, boundOnly) counts them, bound ones only for what the vendor accounts (an unbound
 * device gave its vendor resources back; the 6.1 core counter holds until release).
 * undefined: a model this reference does not know.
 */
export function expectedAvailable(
  p: ParentProfile,
  typeId: string,
  abi: AbiVersion,
  count: (typeId: string, boundOnly: boolean) => number,
): number | undefined {
  const ids = typeIds(p);
  const i = ids.indexOf(typeId);
  if (i < 0) return undefined;
  const t = p.types[i]!;
  const cap = p.capacity;
  const clamp = (n: number) => (abi === '4.17' ? n : Math.max(0, n));
  const sum = (f: (j: number) => number) => ids.reduce((s, id, j) => s + f(j) * count(id, true), 0);
  switch (cap.model) {
    case 'counter':
      if (abi === '6.1') return cap.max - ids.reduce((s, id) => s + count(id, false), 0);
      return cap.max - sum(() => 1);
    case 'pool':
      return clamp(Math.trunc((cap.size - sum((j) => p.types[j]!.cost ?? 1)) / (t.cost ?? 1)));
    case 'constant':
      return cap.value;
    case 'exclusive': {
      const others = ids.some((id, j) => j !== i && count(id, true) > 0);
      return clamp(others ? 0 : (t.max ?? 1) - count(typeId, true));
    }
    default:
      return undefined;
  }
}

/**
 * The errnos a client may see, by operation (docs/mdev-abi.md, "Writing create", "Writing remove"): the core's, the
 * profile's vendor errnos, ENOENT for a file that went away (a removed device or parent) and
 * ENODEV for a descriptor that outlived its file.
 */
export function allowedErrnos(op: string, abi: AbiVersion, profile?: Profile): Set<string> {
  const vendor: (string | null | undefined)[] = [];
  if (op === 'create') {
    for (const p of profile?.parents ?? []) {
      for (const f of [p.faults, ...p.types.map((t) => t.faults)]) vendor.push(f?.createErrno);
      const cap = p.capacity;
      if (cap.model === 'pool') vendor.push(abi === '4.17' ? cap.legacyErrno : (cap.errno ?? 'ENOSPC'));
      if (cap.model === 'counter' && abi === '4.17') vendor.push(cap.legacyErrno ?? 'ENOMEM');
      if (cap.model === 'exclusive') vendor.push(cap.errno ?? 'EINVAL');
      // Hardware models (profile-types.ts): their own errno, ENOSPC (GVT-g) or EIO (NVIDIA) by default.
      if (cap.model === 'gvt') vendor.push(cap.errno ?? 'ENOSPC');
      if (cap.model === 'nvidia-vgpu') vendor.push(cap.errno ?? 'EIO');
    }
  }
  const base: Record<string, string[]> = {
    create: ['EINVAL', 'EEXIST', 'ENODEV', 'ENOENT', ...(abi === '6.1' ? ['EUSERS'] : [])],
    remove: ['EINVAL', 'EAGAIN', 'ENODEV', 'ENOENT', ...(abi === '4.17' ? ['EBUSY'] : [])],
    unbind: ['ENODEV', 'ENOENT'],
    // Reading an attribute or listing: ENOENT once its parent is gone, ENODEV on a stale descriptor.
    read: ['ENOENT', 'ENODEV'],
  };
  return new Set([...(base[op] ?? []), ...vendor.filter((e): e is string => !!e)]);
}
