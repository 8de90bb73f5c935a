/**
 * Validating a profile: the schema (profile.schema.json, compiled ahead of time by the build) with
 * messages naming each field and suggesting the key meant, then the rules the schema cannot state
 * (directories, PCI identity, BARs, IOMMU groups, what each capacity model needs).
 */
import { readFileSync } from 'node:fs';
import type { ErrorObject } from 'ajv';
import { Errno } from '../base/errno';
import { DEVICE_ENTRIES, PARENT_ENTRIES } from '../core/mdev-objects';
import { parseBdf, parseCpuList } from '../devices/pci';
import { hexValue, parentNames } from './placement';
import type { ParentProfile, PciBarProfile, Profile } from './profile-types';
import { AJV_OPTIONS, GENERATED_VALIDATOR_PATH, SCHEMA_PATH, schemaDigest } from './profile-schema';

type Validator = ((data: unknown) => boolean) & { errors?: ErrorObject[] | null };
let compiled: Validator | undefined;
/**
 * The schema's validator, made when a profile first needs one: the one `npm run build` generated
 * from this very schema text if there is one, else compiled now (ajv, 0.4-1 s of CPU).
 */
function schemaValidator(): Validator {
  if (!compiled) {
    const text = readFileSync(SCHEMA_PATH, 'utf8');
    let generated: (Validator & { schemaDigest?: string }) | undefined;
    try {
      generated = require(GENERATED_VALIDATOR_PATH) as Validator & { schemaDigest?: string };
    } catch {
      generated = undefined; // not built (yet)
    }
    if (generated?.schemaDigest === schemaDigest(text)) compiled = generated;
    else {
      const Ajv = (require('ajv') as typeof import('ajv')).default;
      compiled = new Ajv(AJV_OPTIONS).compile(JSON.parse(text) as object) as Validator;
    }
  }
  return compiled;
}

/** A refused profile: every message names its field (`parents[2].types[0].cost: must be a number`). */
export class ProfileError extends Error {
  constructor(
    readonly problems: string[],
    source?: string,
  ) {
    super(`profile${source ? ` ${source}` : ''} refused:\n  ${problems.join('\n  ')}`);
    this.name = 'ProfileError';
  }
}

/** Throws a ProfileError unless the profile is complete and consistent. */
export function validateProfile(p: unknown, source?: string): asserts p is Profile {
  const problems = profileProblems(p);
  if (problems.length > 0) throw new ProfileError(problems, source);
}

/**
 * Everything wrong with a profile, in one run: the schema's findings first, then the cross-field
 * rules on every part whose shape allows them (a rule about a field the schema already refused
 * says nothing more about it).
 */
export function profileProblems(p: unknown): string[] {
  const validate = schemaValidator();
  const shape = validate(p) ? [] : schemaMessages(validate.errors ?? []);
  const refused = shape.map(fieldOf);
  const within = (field: string, of: string) => field === of || field.startsWith(`${of}.`) || field.startsWith(`${of}[`);
  return [...shape, ...semanticProblems(p).filter((m) => !refused.some((f) => within(fieldOf(m), f)))];
}

/** The field a message names ("parents[0].types[1].name: ..." -> "parents[0].types[1].name"). */
function fieldOf(message: string): string {
  return message.slice(0, message.indexOf(': '));
}

/** "/parents/2/types/0/cost" -> "parents[2].types[0].cost". */
function fieldPath(pointer: string, extra?: string): string {
  const tokens = pointer.split('/').slice(1).map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (extra !== undefined) tokens.push(extra);
  let out = '';
  for (const t of tokens) {
    if (/^\d+$/.test(t)) out += `[${t}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(t)) out += out ? `.${t}` : t;
    else out += `[${JSON.stringify(t)}]`;
  }
  return out || 'profile';
}

const ARTICLE: Record<string, string> = { integer: 'an integer', object: 'an object', array: 'an array', null: 'null' };

function closest(word: string, candidates: string[]): string | undefined {
  const dist = (a: string, b: string) => {
    const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) d[0]![j] = j;
    for (let i = 1; i <= a.length; i++)
      for (let j = 1; j <= b.length; j++)
        d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    return d[a.length]![b.length]!;
  };
  let best: string | undefined;
  let bestD = 3;
  for (const c of candidates) {
    const dd = dist(word.toLowerCase(), c.toLowerCase());
    if (dd < bestD) [best, bestD] = [c, dd];
  }
  return best;
}

/** One message per offending field: the deepest finding wins, a union's own description over its branches'. */
function schemaMessages(errors: ErrorObject[]): string[] {
  const byPath = new Map<string, ErrorObject[]>();
  for (const e of errors) {
    const key =
      e.keyword === 'required'
        ? fieldPath(e.instancePath, (e.params as { missingProperty: string }).missingProperty)
        : e.keyword === 'additionalProperties'
          ? fieldPath(e.instancePath, (e.params as { additionalProperty: string }).additionalProperty)
          : e.propertyName !== undefined
            ? `${fieldPath(e.instancePath)}[${JSON.stringify(e.propertyName)}]`
            : fieldPath(e.instancePath);
    if (!byPath.has(key)) byPath.set(key, []);
    byPath.get(key)!.push(e);
  }
  const keys = [...byPath.keys()];
  // A finding on a field whose child also has one is the union's echo of it: keep the child's.
  const leaves = keys.filter((k) => !keys.some((o) => o !== k && (o.startsWith(`${k}.`) || o.startsWith(`${k}[`))) || k === 'profile');
  return leaves.map((k) => `${k}: ${describe(byPath.get(k)!)}`);
}

function describe(errs: ErrorObject[]): string {
  // An object of a known kind speaks for itself; otherwise a union says what it accepts.
  const union = errs.find((e) => (e.keyword === 'oneOf' || e.keyword === 'anyOf') && (e.parentSchema as { description?: string }).description);
  const tagged = errs.find((e) => e.keyword === 'discriminator');
  if (union && !tagged) return `must be ${(union.parentSchema as { description: string }).description}`;
  const e = tagged ?? errs.find((x) => x.keyword !== 'oneOf' && x.keyword !== 'anyOf' && x.keyword !== 'propertyNames') ?? errs[0]!;
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'type': {
      const t = String(params.type).split(',')[0]!;
      if (t === 'integer' && typeof e.data !== 'number') return 'must be a number';
      return `must be ${ARTICLE[t] ?? `a ${t}`}`;
    }
    case 'required':
      return 'is required';
    case 'additionalProperties': {
      const known = Object.keys((e.parentSchema as { properties?: object }).properties ?? {});
      const hint = closest(String(params.additionalProperty), known);
      return `unknown key${hint ? ` (did you mean "${hint}"?)` : ''}`;
    }
    case 'enum':
      return `must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'const':
      return `must be ${JSON.stringify(params.allowedValue)}`;
    case 'discriminator': {
      const branches = ((e.parentSchema as { oneOf: { $ref: string }[] }).oneOf ?? []).flatMap((b) => constsOf(b.$ref, String(params.tag)));
      return `${String(params.tag)} must be one of ${branches.map((v) => JSON.stringify(v)).join(', ')}`;
    }
    case 'pattern': {
      const d = (e.parentSchema as { description?: string }).description;
      return d ? `must be ${d}` : `must match ${String(params.pattern)}`;
    }
    case 'minLength':
    case 'minItems':
      return params.limit === 1 ? 'must not be empty' : e.message ?? 'is too short';
    default:
      return e.message ?? 'is invalid';
  }
}

/** The discriminator values of a $ref'd branch (its tag's const or enum). */
function constsOf(ref: string, tag: string): unknown[] {
  const schema = JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')) as { $defs: Record<string, { properties: Record<string, { const?: unknown; enum?: unknown[] }> }> };
  const p = schema.$defs[ref.replace('#/$defs/', '')]?.properties[tag];
  return p?.const !== undefined ? [p.const] : (p?.enum ?? []);
}

/** Type fields each capacity model needs (the schema cannot say it across objects). */
const TYPE_FIELDS_BY_MODEL: Record<string, string[]> = {
  'nvidia-vgpu': ['framebufferMb', 'max'],
  gvt: ['lowGmMb', 'highGmMb', 'fence'],
};

/** Names an mdev device directory already has (the core's table of them): vendor attributes must not shadow them. */
const DEVICE_FILES = new Set(Object.keys(DEVICE_ENTRIES));
/** Names a parent directory already has: the core's, and a host device's driver and driver_override. */
const PARENT_FILES = new Set([...Object.keys(PARENT_ENTRIES), 'driver', 'driver_override']);
/** Classes mdevfs renders itself. */
const RESERVED_CLASSES = new Set(['mdev_bus', 'vfio-dev']);

/**
 * The rules the schema cannot state. They run on a profile of any shape: each rule on each parent
 * on its own, so one that meets a shape the schema refused (and reported) hides no other's finding.
 */
function semanticProblems(input: unknown): string[] {
  const out: string[] = [];
  const profile = input as Profile;
  if (!Array.isArray(profile?.parents)) return out;
  const each = (rule: () => void) => {
    try {
      rule();
    } catch {
      // a shape the schema reported
    }
  };
  const claimed = new Map<string, string>(); // directory -> who
  const names = new Map<string, string>(); // mdev parent name -> who
  const claim = (dir: string[], who: string, field: string) => {
    const key = dir.join('/');
    for (const [other, by] of claimed) {
      if (other === key) out.push(`${field}: ${key} collides with ${by}`);
      else if (other.startsWith(`${key}/`) || key.startsWith(`${other}/`)) out.push(`${field}: ${key} nests with ${other} of ${by}`);
    }
    claimed.set(key, who);
  };
  profile.parents.forEach((p, i) => {
    const at = `parents[${i}]`;
    const before = out.length;
    each(() => placementProblems(p, at, out));
    // Where a parent is placed is known only when its placement is right.
    if (out.length === before) each(() => claimParent(p, at, names, claim, out));
    each(() => typeProblems(p, at, out));
    each(() => costProblems(p, at, out));
    each(() => errnoProblems(p, at, out));
    each(() => attrProblems(p.deviceAttrs, DEVICE_FILES, `${at}.deviceAttrs`, out));
    each(() => attrProblems(p.legacyParentAttrs, PARENT_FILES, `${at}.legacyParentAttrs`, out));
    each(() => vendorVfioProblems(p, at, out));
  });
  // One AP bus, one vfio_ap matrix: its host configuration is declared once.
  each(() => {
    const apHosts = profile.parents.flatMap((p, i) => (p.apHost ? [i] : []));
    for (const i of apHosts.slice(1)) out.push(`parents[${i}].apHost: the AP configuration is parents[${apHosts[0]}]'s (a system has one AP bus)`);
  });
  each(() => groupProblems(profile, out));
  return out;
}

/** The parent's path, name and placement block (class, pci or bus). */
function placementProblems(p: ParentProfile, at: string, out: string[]): void {
  const path = p.path.split('/');
  for (const c of new Set(path)) if (c === '.' || c === '..') out.push(`${at}.path: "${c}" would leave the parent's directory`);
  if (path[path.length - 1] !== p.name) out.push(`${at}.path: must end with the parent's name "${p.name}"`);
  if (p.name === '.' || p.name === '..') out.push(`${at}.name: must be a directory name`);
  const placements = ['class', 'pci', 'bus'].filter((k) => p[k as keyof ParentProfile] !== undefined);
  if (placements.length > 1) out.push(`${at}: ${placements.join(' and ')} exclude each other (a parent is on one bus or in one class)`);
  if (p.class !== undefined && (p.class === '.' || p.class === '..' || RESERVED_CLASSES.has(p.class))) {
    out.push(`${at}.class: "${p.class}" is not a class a parent can have`);
  }
  if (p.bus && ['pci', 'mdev'].includes(p.bus.name)) out.push(`${at}.bus.name: "${p.bus.name}" is not for this block${p.bus.name === 'pci' ? ' (use "pci")' : ''}`);
  if ((p.pci || p.bus) && path.length < 3) out.push(`${at}.path: a device needs a root directory: devices/<root>/${p.name}`);
  if (p.pci) pciProblems(p, at, out);
}

/** The names and directories a parent takes: none another parent has. */
function claimParent(
  p: ParentProfile,
  at: string,
  names: Map<string, string>,
  claim: (dir: string[], who: string, field: string) => void,
  out: string[],
): void {
  for (const { name, path: dir } of parentNames(p)) {
    const who = `${at} (${name})`;
    if (names.has(name)) out.push(`${at}.name: "${name}" is also the name of ${names.get(name)}`);
    names.set(name, who);
    claim(dir, who, `${at}.path`);
  }
  // The PF and the VFs that are no mdev parent still hold their directories.
  const path = p.path.split('/');
  const mdevDirs = new Set(parentNames(p).map((x) => x.path.join('/')));
  if (p.pci && !mdevDirs.has(path.join('/'))) claim(path, `${at} (its PF)`, `${at}.path`);
  if (p.pci?.sriov) {
    for (const { path: dir, name } of parentNames({ ...p, pci: { ...p.pci, sriov: { ...p.pci.sriov, mdevOn: 'vfs' } } })) {
      if (!mdevDirs.has(dir.join('/'))) claim(dir, `${at} (VF ${name})`, `${at}.pci.sriov`);
    }
  }
}

/** A pool's type that costs more than the whole pool can never be created. */
function costProblems(p: ParentProfile, at: string, out: string[]): void {
  const cap = p.capacity;
  if (cap.model !== 'pool' || typeof cap.size !== 'number') return;
  p.types.forEach((t, j) => {
    const cost = t.cost ?? 1;
    if (typeof cost === 'number' && cost > cap.size) out.push(`${at}.types[${j}].cost: ${cost} can never fit the pool of ${cap.size} (capacity.size)`);
  });
}

/** Every IOMMU group number a profile names, with where it names it and whose it is (a PCI function's, an mdev's). */
export function namedIommuGroups(profile: Profile): { group: number; at: string; of: 'function' | 'mdev' }[] {
  const out: { group: number; at: string; of: 'function' | 'mdev' }[] = [];
  profile.parents.forEach((p, i) => {
    if (p.pci?.iommuGroup !== undefined) out.push({ group: p.pci.iommuGroup, at: `parents[${i}].pci.iommuGroup`, of: 'function' });
    p.pci?.sriov?.vfIommuGroups?.forEach((group, k) => out.push({ group, at: `parents[${i}].pci.sriov.vfIommuGroups[${k}]`, of: 'function' }));
    p.devices?.forEach((d, j) => {
      if (d.iommuGroup !== undefined) out.push({ group: d.iommuGroup, at: `parents[${i}].devices[${j}].iommuGroup`, of: 'mdev' });
    });
  });
  profile.pciDevices?.forEach((d, k) => {
    if (d.pci.iommuGroup !== undefined) out.push({ group: d.pci.iommuGroup, at: `pciDevices[${k}].pci.iommuGroup`, of: 'function' });
  });
  return out;
}

/** An IOMMU group belongs to one device; a PF lists a group for an enabled VF only. */
function groupProblems(profile: Profile, out: string[]): void {
  const seen = new Map<number, string>();
  for (const { group, at } of namedIommuGroups(profile)) {
    const other = seen.get(group);
    if (other !== undefined) out.push(`${at}: IOMMU group ${group} is also ${other}'s`);
    else seen.set(group, at);
  }
  profile.parents.forEach((p, i) => {
    const s = p.pci?.sriov;
    if (s?.vfIommuGroups && s.vfIommuGroups.length > (s.numVfs ?? s.totalVfs)) {
      out.push(`parents[${i}].pci.sriov.vfIommuGroups: ${s.vfIommuGroups.length} groups for ${s.numVfs ?? s.totalVfs} enabled VFs`);
    }
  });
}

/** NVIDIA vendor-specific VFIO (pci.sriov.mdevOn "none"): VF files over an nvidia-vgpu GPU, no mdevs. */
function vendorVfioProblems(p: ParentProfile, at: string, out: string[]): void {
  const none = p.pci?.sriov?.mdevOn === 'none';
  if (p.vfAttrs && !none) out.push(`${at}.vfAttrs: only for VFs without mdev (pci.sriov.mdevOn "none")`);
  if (!none) return;
  if (p.capacity.model !== 'nvidia-vgpu') out.push(`${at}.capacity.model: VFs without mdev offer vGPUs: must be nvidia-vgpu`);
  p.types.forEach((t, j) => {
    if (!/^[1-9]\d*$/.test(t.name)) out.push(`${at}.types[${j}].name: must be the numeric vGPU type id (VFs without mdev)`);
  });
  if (p.devices?.length) out.push(`${at}.devices: no mdev parent to create them on (pci.sriov.mdevOn "none")`);
}

function pciProblems(p: ParentProfile, at: string, out: string[]): void {
  const pci = p.pci!;
  const addr = parseBdf(p.name);
  if (!addr) {
    out.push(`${at}.name: must be a PCI address such as 0000:00:02.0 for a parent on PCI`);
    return;
  }
  const root = p.path.split('/')[1] ?? '';
  if (!/^pci[0-9a-f]{4}:[0-9a-f]{2}$/.test(root) || root.slice(3, 7) !== p.name.slice(0, 4)) {
    out.push(`${at}.path: must be below the host bridge of its domain, devices/pci${p.name.slice(0, 4)}:<bus>/...`);
  }
  const limits: [string, bigint][] = [['vendor', 0xffffn], ['device', 0xffffn], ['subsystemVendor', 0xffffn], ['subsystemDevice', 0xffffn], ['class', 0xffffffn], ['revision', 0xffn]];
  for (const [k, max] of limits) {
    const v = (pci as unknown as Record<string, string | number | undefined>)[k];
    if (v !== undefined && hexValue(v) > max) out.push(`${at}.pci.${k}: must be at most 0x${max.toString(16)}`);
  }
  if (pci.localCpus !== undefined && !parseCpuList(pci.localCpus)) out.push(`${at}.pci.localCpus: "${pci.localCpus}" is not a cpu list such as 0-7,16`);
  barProblems(pci.bars, `${at}.pci.bars`, out);
  const s = pci.sriov;
  if (!s) return;
  if (hexValue(s.vfDevice) > 0xffffn) out.push(`${at}.pci.sriov.vfDevice: must be at most 0xffff`);
  barProblems(s.vfBars, `${at}.pci.sriov.vfBars`, out);
  const num = s.numVfs ?? s.totalVfs;
  if (num > s.totalVfs) out.push(`${at}.pci.sriov.numVfs: must be at most totalVfs (${s.totalVfs})`);
  // No VF enabled yet (before `sriov-manage -e`) is a state of its own, but then no mdev is there.
  if ((s.mdevOn ?? 'pf') === 'vfs' && num === 0 && p.devices?.length) out.push(`${at}.pci.sriov.numVfs: must be at least 1 for devices on the VFs`);
  const last = (addr.bus << 8) + (addr.slot << 3) + addr.fn + (s.offset ?? 1) + (s.stride ?? 1) * Math.max(0, s.totalVfs - 1);
  if (last > 0xffff) out.push(`${at}.pci.sriov: VF ${s.totalVfs - 1} would be past bus ff (offset/stride too large)`);
}

function barProblems(bars: PciBarProfile[] | undefined, at: string, out: string[]): void {
  const used = new Map<number, number>();
  (bars ?? []).forEach((b, j) => {
    const size = hexValue(b.size);
    const kind = b.kind ?? 'mem32';
    if (size < (kind === 'io' ? 4n : 16n) || (size & (size - 1n)) !== 0n) out.push(`${at}[${j}].size: must be a power of two of at least ${kind === 'io' ? 4 : 16}`);
    if (kind === 'io' && b.prefetchable) out.push(`${at}[${j}].prefetchable: an I/O BAR cannot be prefetchable`);
    if (kind === 'mem32' && size > 0x80000000n) out.push(`${at}[${j}].size: a 32-bit BAR holds at most 2 GB`);
    if (b.address !== undefined && hexValue(b.address) % size !== 0n) out.push(`${at}[${j}].address: must be aligned to the size`);
    const slots = kind === 'mem64' ? [b.index, b.index + 1] : [b.index];
    if (kind === 'mem64' && b.index === 5) out.push(`${at}[${j}].index: a 64-bit BAR takes two registers: 0-4`);
    for (const s of slots) {
      if (used.has(s)) out.push(`${at}[${j}].index: BAR register ${s} is also used by ${at}[${used.get(s)}]`);
      used.set(s, j);
    }
  });
}

function typeProblems(p: ParentProfile, at: string, out: string[]): void {
  const seen = new Map<string, number>();
  const needs = TYPE_FIELDS_BY_MODEL[p.capacity.model] ?? [];
  p.types.forEach((t, j) => {
    if (t.name === '.' || t.name === '..') out.push(`${at}.types[${j}].name: must be a directory name`);
    if (seen.has(t.name)) out.push(`${at}.types[${j}].name: "${t.name}" is also types[${seen.get(t.name)}]`);
    seen.set(t.name, j);
    for (const f of needs) {
      if ((t as unknown as Record<string, unknown>)[f] === undefined) out.push(`${at}.types[${j}].${f}: is required by capacity model ${p.capacity.model}`);
    }
  });
  (p.devices ?? []).forEach((d, j) => {
    if (!seen.has(d.type)) out.push(`${at}.devices[${j}].type: no type "${d.type}" in this parent`);
  });
}

const ERRNO_NAMES = Object.keys(Errno);

function errnoProblems(p: ParentProfile, at: string, out: string[]): void {
  const check = (v: unknown, field: string) => {
    if (typeof v === 'string' && !ERRNO_NAMES.includes(v)) out.push(`${field}: "${v}" is not an errno the emulation knows (${ERRNO_NAMES.join(', ')})`);
  };
  const cap = p.capacity as unknown as Record<string, unknown>;
  for (const k of ['errno', 'legacyErrno']) check(cap[k], `${at}.capacity.${k}`);
  const faults = (f: ParentProfile['faults'], where: string) => {
    if (!f) return;
    check(f.createErrno, `${where}.createErrno`);
    check(f.removeErrno, `${where}.removeErrno`);
  };
  faults(p.faults, `${at}.faults`);
  p.types.forEach((t, j) => faults(t.faults, `${at}.types[${j}].faults`));
}

function attrProblems(attrs: Record<string, unknown> | undefined, reserved: Set<string>, at: string, out: string[]): void {
  for (const key of Object.keys(attrs ?? {})) {
    const parts = key.split('/');
    if (parts.some((c) => c === '.' || c === '..')) out.push(`${at}[${JSON.stringify(key)}]: "." and ".." would leave the directory`);
    else if (reserved.has(parts[0]!)) out.push(`${at}[${JSON.stringify(key)}]: collides with the kernel's own "${parts[0]}"`);
  }
}
