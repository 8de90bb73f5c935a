/**
 * Reads the mdev side of a sysfs tree (a real /sys, a copy, a mounted mdevfs, or a hand-made tree
 * of plain files and symlinks) into plain data. It knows sysfs, not profiles: to-profile.ts turns
 * what it sees into a profile. Nothing here writes, and nothing outside ROOT is read.
 */
import { type Dirent, lstatSync, opendirSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';

/** A regular file as read: its bytes, or why it could not be read (write-only attributes, EIO). */
export interface ObservedFile {
  mode: number;
  content?: Buffer;
  error?: string;
}

export interface ObservedType {
  /** type-id: the directory name under mdev_supported_types. */
  id: string;
  /** Each attribute as its file holds it; undefined when the file is absent. */
  name?: string;
  description?: string;
  deviceApi?: string;
  available: number;
  /** UUIDs listed in the type's devices/ directory. */
  devices: string[];
}

export interface ObservedDevice {
  uuid: string;
  typeId: string;
  /** Basename of the device's driver link (the mdev bus driver it is bound to). */
  driver?: string;
  iommuGroup?: number;
  /** N of its vfio-dev/vfioN. */
  vfio?: number;
  /** Vendor files below the device directory, path relative to it -> file. */
  attrs: Map<string, ObservedFile>;
}

export interface ObservedParent {
  /** The name under class/mdev_bus. */
  name: string;
  /** The parent's directory relative to ROOT ('/'-separated), from the resolved class link. */
  path: string;
  /** Where the subsystem link points, relative to ROOT (class/mtty, bus/pci, bus/matrix). */
  subsystem?: string;
  /** Basename of the parent's driver link, and of that driver's module link. */
  driver?: string;
  driverModule?: string;
  /** Top-level regular files of the parent directory, by name (whitelisted, see PARENT_FILES). */
  files: Map<string, ObservedFile>;
  /** Top-level links of the parent directory, name -> target relative to ROOT. */
  links: Map<string, string>;
  /** Other entries of the parent directory, with paths relative to it, that no reader understood. */
  extra: Map<string, ObservedFile>;
  types: ObservedType[];
  devices: ObservedDevice[];
  /** An SR-IOV VF: its physical function (the physfn link). */
  pf?: PhysFn;
  /** N of its iommu_group link (kernel/iommu_groups/N). */
  iommuGroup?: number;
}

/** A PCI physical function whose VFs are mdev parents: the files that describe it. */
export interface PhysFn {
  name: string;
  path: string;
  files: Map<string, ObservedFile>;
  driver?: string;
  driverModule?: string;
  /** N of its iommu_group link. */
  iommuGroup?: number;
}

/** The s390 AP bus (bus/ap): what vfio-ap checks assignments against. */
export interface ObservedApBus {
  /** ap_max_adapter_id, ap_max_domain_id, apmask, aqmask as read (without the newline). */
  files: Map<string, string>;
  /** Names under bus/ap/devices: cards (card05) and queues (05.0004). */
  devices: string[];
}

/** A PF whose VFs take vGPUs through NVIDIA's vendor-specific VFIO files. */
export interface ObservedVendorVfio {
  pf: PhysFn;
  vfs: { name: string; driver?: string; creatable: string; current: string; iommuGroup?: number }[];
}

export interface ObservedHost {
  parents: ObservedParent[];
  ap?: ObservedApBus;
  vendorVfio: ObservedVendorVfio[];
  /** PCI host bridges (class 0x0600xx) no driver has bound: the machine's bus as PCI clients see it. */
  hostBridges: PhysFn[];
  /** bus/mdev/drivers/<name> -> basename of its module link (when there is one). */
  mdevDrivers: Map<string, string | undefined>;
  /** Problems worth telling the user (a file that could not be represented, a skipped parent). */
  warnings: string[];
}

/**
 * Files of a parent device that describe it (PCI identity, SR-IOV, s390 buses). Only these are
 * read: a real PCI function also has resourceN and rom files whose read(2) touches hardware.
 */
export const PARENT_FILES = [
  'vendor', 'device', 'subsystem_vendor', 'subsystem_device', 'class', 'revision', 'config', 'resource', 'irq',
  'numa_node', 'local_cpulist', 'local_cpus', 'dma_mask_bits', 'driver_override', 'enable', 'modalias', 'uevent',
  'sriov_totalvfs', 'sriov_numvfs', 'sriov_offset', 'sriov_stride', 'sriov_vf_device', 'sriov_drivers_autoprobe',
  'features', 'online', 'type', 'pimpampom', 'chpids', 'dev_busid',
];

/** Entries of every device directory that the mdev core makes, not the vendor. */
const GENERIC_DEVICE_ENTRIES = new Set(['driver', 'iommu_group', 'mdev_type', 'power', 'remove', 'subsystem', 'uevent', 'vfio-dev']);
/** Entries of a parent directory that are not vendor parent attributes. */
const GENERIC_PARENT_DIRS = new Set(['mdev_supported_types', 'power', 'msi_irqs', 'iommu', 'vfio-dev', 'consumer', 'supplier']);

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class RecordError extends Error {}

export function readHost(rootArg: string): ObservedHost {
  const root = realpathOrThrow(rootArg);
  const warnings: string[] = [];
  const busDir = join(root, 'class', 'mdev_bus');
  let names: Dirent[] | undefined;
  try {
    names = listDir(busDir, true);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new RecordError(`cannot read ${join(rootArg, 'class', 'mdev_bus')}: ${code ?? err}`);
  }
  const vendorVfio = readVendorVfio(root);
  if ((names === undefined || names.length === 0) && vendorVfio.length === 0) {
    throw new RecordError(`no mdev parents under ${join(rootArg, 'class', 'mdev_bus')}: nothing to record`);
  }
  const parents: ObservedParent[] = [];
  for (const name of (names ?? []).map((e) => e.name)) {
    // A hand-made tree may hold the parent's directory itself under class/mdev_bus.
    const entry = join(busDir, name);
    const path = lstatSync(entry).isDirectory() ? `class/mdev_bus/${name}` : resolveInside(root, entry);
    if (path === undefined) {
      warnings.push(`class/mdev_bus/${name}: does not lead to a directory inside the tree; skipped`);
      continue;
    }
    const parent = readParent(root, name, path, warnings);
    if (parent.types.length === 0) {
      warnings.push(`class/mdev_bus/${name}: no mdev_supported_types; skipped`);
      continue;
    }
    parents.push(parent);
  }
  if (parents.length === 0 && vendorVfio.length === 0) throw new RecordError(`no usable mdev parents under ${join(rootArg, 'class', 'mdev_bus')}`);
  const mdevDrivers = new Map<string, string | undefined>();
  for (const e of listDir(join(root, 'bus', 'mdev', 'drivers')) ?? []) {
    const mod = linkTarget(root, join(root, 'bus', 'mdev', 'drivers', e.name, 'module'));
    mdevDrivers.set(e.name, mod === undefined ? undefined : basename(mod));
  }
  return { parents, mdevDrivers, warnings, ap: readApBus(root), vendorVfio, hostBridges: readHostBridges(root) };
}

function readHostBridges(root: string): PhysFn[] {
  const out: PhysFn[] = [];
  for (const e of listDir(join(root, 'bus', 'pci', 'devices')) ?? []) {
    const path = linkTarget(root, join(root, 'bus', 'pci', 'devices', e.name));
    if (path === undefined || !/^0x0600/.test(readAttr(join(root, path, 'class')).content?.toString('latin1') ?? '')) continue;
    const fn = readPhysFn(root, path);
    if (fn.driver === undefined) out.push(fn);
  }
  return out;
}

/**
 * NVIDIA vendor-specific VFIO (no mdev): the VFs of a PF that carry nvidia/current_vgpu_type,
 * with what they list as creatable and the vGPU type each holds.
 */
function readVendorVfio(root: string): ObservedVendorVfio[] {
  const byPf = new Map<string, ObservedVendorVfio>();
  for (const e of listDir(join(root, 'bus', 'pci', 'devices')) ?? []) {
    const path = linkTarget(root, join(root, 'bus', 'pci', 'devices', e.name));
    if (path === undefined || !exists(join(root, path, 'nvidia', 'current_vgpu_type'))) continue;
    const physfn = linkTarget(root, join(root, path, 'physfn'));
    if (physfn === undefined) continue;
    const read = (f: string) => readAttr(join(root, path, 'nvidia', f)).content?.toString('latin1') ?? '';
    let group = byPf.get(physfn);
    if (!group) byPf.set(physfn, (group = { pf: readPhysFn(root, physfn), vfs: [] }));
    group.vfs.push({
      name: e.name,
      driver: driverOf(root, join(root, path))[0],
      creatable: read('creatable_vgpu_types'),
      current: read('current_vgpu_type').trim(),
      iommuGroup: groupOf(root, join(root, path)),
    });
  }
  return [...byPf.values()];
}

function readApBus(root: string): ObservedApBus | undefined {
  const dir = join(root, 'bus', 'ap');
  const devices = listDir(join(dir, 'devices'));
  if (devices === undefined) return undefined;
  const files = new Map<string, string>();
  for (const f of ['ap_max_adapter_id', 'ap_max_domain_id', 'apmask', 'aqmask']) {
    const content = readAttr(join(dir, f)).content;
    if (content !== undefined) files.set(f, content.toString('latin1').replace(/\n$/, ''));
  }
  return { files, devices: devices.map((e) => e.name) };
}

function readParent(root: string, name: string, path: string, warnings: string[]): ObservedParent {
  const dir = join(root, path);
  const files = new Map<string, ObservedFile>();
  const links = new Map<string, string>();
  const extra = new Map<string, ObservedFile>();
  const deviceDirs: string[] = [];
  const entries = listDir(dir) ?? [];
  for (const e of entries) {
    if (!e.isSymbolicLink()) continue;
    const target = linkTarget(root, join(dir, e.name));
    if (target !== undefined) links.set(e.name, target);
  }
  // A PCI function's other files are the PCI core's (and reading resourceN of an I/O BAR does
  // port I/O): only PARENT_FILES are read. Another bus's device: its own files too. A virtual
  // (class) parent: everything, vendor attribute groups included.
  const sub = links.get('subsystem');
  const onPci = sub === 'bus/pci';
  const onBus = sub?.startsWith('bus/') ?? false;
  for (const e of entries) {
    const full = join(dir, e.name);
    if (e.isFile()) {
      if (PARENT_FILES.includes(e.name)) files.set(e.name, readAttr(full));
      else if (!onPci) extra.set(e.name, readAttr(full));
    } else if (e.isDirectory()) {
      if (UUID_RE.test(e.name)) deviceDirs.push(e.name);
      else if (!onBus && !GENERIC_PARENT_DIRS.has(e.name)) walkFiles(full, e.name, extra);
    }
  }
  const types: ObservedType[] = [];
  for (const e of listDir(join(dir, 'mdev_supported_types')) ?? []) {
    const tdir = join(dir, 'mdev_supported_types', e.name);
    if (!e.isDirectory()) continue;
    const text = (f: string) => {
      let s: string;
      try {
        s = readFileSync(join(tdir, f), 'latin1');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // absent stays absent
        throw new RecordError(`cannot read ${path}/mdev_supported_types/${e.name}/${f}: ${(err as NodeJS.ErrnoException).code}`);
      }
      if (!s.endsWith('\n')) warnings.push(`${path}/mdev_supported_types/${e.name}/${f}: no trailing newline; recorded with one`);
      return s.endsWith('\n') ? s.slice(0, -1) : s;
    };
    const avail = text('available_instances');
    if (avail === undefined || !/^-?\d+$/.test(avail.trim())) {
      warnings.push(`${path}/mdev_supported_types/${e.name}: available_instances missing or not a number; read as 0`);
    }
    types.push({
      id: e.name,
      name: text('name'),
      description: text('description'),
      deviceApi: text('device_api'),
      available: avail !== undefined && /^-?\d+$/.test(avail.trim()) ? Number(avail.trim()) : 0,
      devices: (listDir(join(tdir, 'devices')) ?? []).map((d) => d.name),
    });
  }
  // A device is known from its directory under the parent, its type's devices/ link, or both.
  const typeOf = new Map<string, string>();
  for (const t of types) for (const u of t.devices) typeOf.set(u, t.id);
  for (const u of deviceDirs) {
    const mt = linkTarget(root, join(dir, u, 'mdev_type'));
    if (mt !== undefined && !typeOf.has(u)) typeOf.set(u, basename(mt));
  }
  const devices: ObservedDevice[] = [];
  for (const [uuid, typeId] of typeOf) {
    if (!types.some((t) => t.id === typeId)) {
      warnings.push(`${path}/${uuid}: its type ${typeId} is not among the parent's types; skipped`);
      continue;
    }
    const ddir = join(dir, uuid);
    const attrs = new Map<string, ObservedFile>();
    for (const e of listDir(ddir) ?? []) {
      if (GENERIC_DEVICE_ENTRIES.has(e.name)) continue;
      const full = join(ddir, e.name);
      if (e.isDirectory()) walkFiles(full, e.name, attrs);
      else if (e.isFile()) attrs.set(e.name, readAttr(full));
    }
    const vfio = (listDir(join(ddir, 'vfio-dev')) ?? []).map((e) => /^vfio(\d+)$/.exec(e.name)).find((m) => m !== null);
    const driver = linkTarget(root, join(ddir, 'driver'));
    devices.push({
      uuid: uuid.toLowerCase(),
      typeId,
      driver: driver && basename(driver),
      iommuGroup: groupOf(root, ddir),
      vfio: vfio ? Number(vfio[1]) : undefined,
      attrs,
    });
  }
  // The kernel hands out IOMMU groups in creation order: replaying in that order gives the same numbers.
  const order = new Map(devices.map((d, i) => [d, i]));
  devices.sort((a, b) => (a.iommuGroup ?? Infinity) - (b.iommuGroup ?? Infinity) || order.get(a)! - order.get(b)!);
  const [driver, driverModule] = driverOf(root, dir);
  const physfn = links.get('physfn');
  return {
    pf: physfn === undefined ? undefined : readPhysFn(root, physfn),
    name,
    path,
    subsystem: sub,
    driver,
    driverModule,
    files,
    links,
    extra,
    types,
    devices,
    iommuGroup: groupOf(root, dir),
  };
}

/** N of a device directory's iommu_group link (kernel/iommu_groups/N), if it has one. */
function groupOf(root: string, dir: string): number | undefined {
  const group = linkTarget(root, join(dir, 'iommu_group'));
  return group !== undefined && /^\d+$/.test(basename(group)) ? Number(basename(group)) : undefined;
}

/** Basenames of a device's driver link and of that driver's module link. */
function driverOf(root: string, dir: string): [string | undefined, string | undefined] {
  const driver = linkTarget(root, join(dir, 'driver'));
  const module = driver === undefined ? undefined : linkTarget(root, join(root, driver, 'module'));
  return [driver && basename(driver), module && basename(module)];
}

function readPhysFn(root: string, path: string): PhysFn {
  const dir = join(root, path);
  const files = new Map<string, ObservedFile>();
  for (const e of listDir(dir) ?? []) if (e.isFile() && PARENT_FILES.includes(e.name)) files.set(e.name, readAttr(join(dir, e.name)));
  const [driver, driverModule] = driverOf(root, dir);
  return { name: basename(path), path, files, driver, driverModule, iommuGroup: groupOf(root, dir) };
}

/** Regular files below dir, by path relative to the directory being recorded (symlinks are left out). */
function walkFiles(dir: string, rel: string, into: Map<string, ObservedFile>): void {
  for (const e of listDir(dir) ?? []) {
    const full = join(dir, e.name);
    if (e.isDirectory()) walkFiles(full, `${rel}/${e.name}`, into);
    else if (e.isFile()) into.set(`${rel}/${e.name}`, readAttr(full));
  }
}

function readAttr(file: string): ObservedFile {
  const mode = lstatSync(file).mode & 0o7777;
  if ((mode & 0o444) === 0) return { mode }; // write-only: the kernel would refuse the read
  try {
    return { mode, content: readFileSync(file) };
  } catch (err) {
    return { mode, error: (err as NodeJS.ErrnoException).code ?? String(err) };
  }
}

/** Entries in the directory's own order (readdirSync sorts them; a replay keeps the tree's order). */
function listDir(dir: string, throws = false): Dirent[] | undefined {
  let d;
  try {
    d = opendirSync(dir);
  } catch (err) {
    if (throws) throw err;
    return undefined;
  }
  const out: Dirent[] = [];
  try {
    for (let e = d.readSync(); e !== null; e = d.readSync()) out.push(e);
  } catch {
    // a directory that goes away while read: what was read
  } finally {
    d.closeSync();
  }
  return out;
}

function exists(file: string): boolean {
  try {
    lstatSync(file);
    return true;
  } catch {
    return false;
  }
}

function realpathOrThrow(dir: string): string {
  try {
    const real = realpathSync(dir);
    if (!statSync(real).isDirectory()) throw new Error('not a directory');
    return real;
  } catch (err) {
    throw new RecordError(`cannot read ${dir}: ${(err as Error).message}`);
  }
}

/**
 * Where a link leads, relative to ROOT. Links of a real /sys are relative and stay inside it; a
 * copied tree may hold absolute links into /sys/..., which are read as pointing into ROOT.
 */
export function linkTarget(root: string, link: string): string | undefined {
  let raw: string;
  try {
    raw = readlinkSync(link);
  } catch {
    return undefined;
  }
  const target = isAbsolute(raw) ? (raw.startsWith('/sys/') ? join(root, raw.slice(5)) : raw) : resolve(dirname(link), raw);
  const rel = relative(root, target);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) return undefined;
  return rel.split(sep).join('/');
}

/** The directory a link leads to, resolving links on the way, as a path relative to ROOT. */
function resolveInside(root: string, link: string): string | undefined {
  let target = linkTarget(root, link);
  for (let hops = 0; target !== undefined && hops < 40; hops++) {
    let st;
    try {
      st = lstatSync(join(root, target));
    } catch {
      return undefined;
    }
    if (st.isDirectory()) {
      // Intermediate components may be links too (a copy of bus/pci/devices/...): resolve them.
      const real = realpathSync(join(root, target));
      const rel = relative(root, real);
      return rel.startsWith('..') || isAbsolute(rel) ? target : rel.split(sep).join('/');
    }
    if (!st.isSymbolicLink()) return undefined;
    target = linkTarget(root, join(root, target));
  }
  return undefined;
}
