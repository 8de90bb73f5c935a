import type { Abi } from '../../core/abi';
import { Errno, fail } from '../../base/errno';
import type { MdevDevice } from '../../core/model';
import { kstrtoul } from '../../base/parse';
import type { VendorAttr } from '../../core/vendor';
import type { ApHostSpec } from '../profile-types';
import type { AttrKind } from './types';

/** AP_DEVICES = AP_DOMAINS = 256: every mask is 256 bits. */
const BITS = 256;

type Mask = Set<number>;
interface Matrix {
  apm: Mask;
  aqm: Mask;
  adm: Mask;
}
type MaskName = keyof Matrix;

const sorted = (m: Mask) => [...m].sort((a, b) => a - b);
const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');

/**
 * hex2bitmap (drivers/s390/crypto/ap_bus.c): optional "0x" or "x", hex digits filling bits from
 * the left (bit 0 = most significant bit of the first digit), at most `BITS` of them, one optional
 * newline, nothing else. undefined when the text is not a mask.
 */
export function parseApMask(text: string): Mask | undefined {
  let s = text;
  if (s.startsWith('0x')) s = s.slice(1);
  if (s.startsWith('x')) s = s.slice(1);
  const mask: Mask = new Set();
  let i = 0;
  let p = 0;
  for (; p < s.length && i < BITS && /[0-9a-fA-F]/.test(s[p]!); p++, i += 4) {
    const b = parseInt(s[p]!, 16);
    for (let n = 0; n < 4; n++) if (b & (0x8 >> n)) mask.add(i + n);
  }
  if (s[p] === '\n') p++;
  return p === s.length ? mask : undefined;
}

/** A 256-bit mask as sysfs prints it: "0x" and 64 hex digits, bit 0 leftmost. */
export function formatApMask(mask: Mask): string {
  let out = '0x';
  for (let i = 0; i < BITS; i += 4) {
    let b = 0;
    for (let n = 0; n < 4; n++) if (mask.has(i + n)) b |= 0x8 >> n;
    out += b.toString(16);
  }
  return out;
}

function hostMask(text: string | undefined, what: string): Mask {
  if (text === undefined) return new Set(Array.from({ length: BITS }, (_, i) => i));
  const m = parseApMask(text);
  if (!m) throw new Error(`apHost.${what}: not a mask ("0x" and up to 64 hex digits)`);
  return m;
}

/**
 * The vfio_ap matrix driver's state (drivers/s390/crypto/vfio_ap_ops.c, docs/hardware.md):
 * the host's AP configuration and every mdev's matrix. In the 6.1 ABI (dynamic configuration)
 * an assignment is refused only for APQNs the default zcrypt drivers own (apmask AND aqmask) or
 * another mdev holds; in 4.17 (the 4.20-5.x driver) every APQN must be a queue bound to vfio_ap.
 */
export class ApMatrixHost {
  readonly max: Record<MaskName, number>;
  /** /sys/bus/ap/apmask and aqmask (the AP bus's ap_perms): both bits set = the default drivers'. */
  apmask: Mask;
  aqmask: Mask;
  /** The host's AP configuration: adapters (cards) and usage domains; their queues exist. */
  readonly adapters: Mask;
  readonly domains: Mask;
  private readonly matrices = new Map<MdevDevice, Matrix>();

  constructor(spec: ApHostSpec = {}) {
    const na = spec.maxAdapterId ?? 63;
    const nd = spec.maxDomainId ?? 15;
    this.max = { apm: na, aqm: nd, adm: nd };
    this.apmask = hostMask(spec.apmask, 'apmask');
    this.aqmask = hostMask(spec.aqmask, 'aqmask');
    this.adapters = new Set(spec.adapters ?? []);
    this.domains = new Set(spec.domains ?? []);
  }

  detach(dev: MdevDevice): void {
    this.matrices.delete(dev);
  }

  matrix(dev: MdevDevice): Matrix {
    let m = this.matrices.get(dev);
    if (!m) this.matrices.set(dev, (m = { apm: new Set(), aqm: new Set(), adm: new Set() }));
    return m;
  }

  /** The mdev an APQN is assigned to, if any. */
  assignedTo(apid: number, apqi: number): MdevDevice | undefined {
    for (const [dev, m] of this.matrices) if (m.apm.has(apid) && m.aqm.has(apqi)) return dev;
    return undefined;
  }

  ownedByDefault(apid: number, apqi: number): boolean {
    return this.apmask.has(apid) && this.aqmask.has(apqi);
  }

  /** A queue of the host's configuration bound to vfio_ap (not the default drivers'). */
  boundToVfio(apid: number, apqi: number): boolean {
    return this.adapters.has(apid) && this.domains.has(apqi) && !this.ownedByDefault(apid, apqi);
  }

  /** vfio_ap_mdev_validate_masks: EADDRNOTAVAIL, then vfio_ap_mdev_verify_no_sharing: EADDRINUSE. */
  private validate(dev: MdevDevice, m: Matrix): void {
    for (const a of m.apm) for (const q of m.aqm) if (this.ownedByDefault(a, q)) fail(Errno.EADDRNOTAVAIL, `APQN ${hex(a, 2)}.${hex(q, 4)} belongs to the host`);
    this.verifyNoSharing(dev, m);
  }

  private verifyNoSharing(dev: MdevDevice, m: Matrix): void {
    for (const [other, o] of this.matrices) {
      if (other === dev) continue;
      const a = [...m.apm].find((x) => o.apm.has(x));
      const q = [...m.aqm].find((x) => o.aqm.has(x));
      if (a !== undefined && q !== undefined) {
        fail(Errno.EADDRINUSE, `Userspace may not assign queue ${hex(a, 2)}.${hex(q, 4)} to mdev: already assigned to ${other.uuid}`);
      }
    }
  }

  /** 4.20-5.x vfio_ap_mdev_verify_queues_reserved_for_apid/apqi: every APQN a bound queue (EADDRNOTAVAIL). */
  private verifyReserved(m: Matrix, which: 'apm' | 'aqm', id: number): void {
    const others = which === 'apm' ? m.aqm : m.apm;
    const bound = (o: number) => (which === 'apm' ? this.boundToVfio(id, o) : this.boundToVfio(o, id));
    const candidates = others.size > 0 ? [...others] : Array.from({ length: BITS }, (_, i) => i);
    const ok = others.size > 0 ? candidates.every(bound) : candidates.some(bound);
    if (!ok) fail(Errno.EADDRNOTAVAIL, 'queue not reserved for vfio_ap');
  }

  /** assign_adapter, assign_domain, assign_control_domain. */
  assign(dev: MdevDevice, which: MaskName, buf: Buffer, abi: Abi): number {
    const id = this.parseId(buf, which);
    const m = this.matrix(dev);
    if (abi.version === '4.17') {
      if (which !== 'adm') this.verifyReserved(m, which, id);
    } else if (m[which].has(id)) {
      return buf.length;
    }
    const had = m[which].has(id);
    m[which].add(id);
    if (which === 'adm') return buf.length;
    try {
      if (abi.version === '4.17') this.verifyNoSharing(dev, m);
      else this.validate(dev, m);
    } catch (err) {
      if (!had) m[which].delete(id);
      throw err;
    }
    return buf.length;
  }

  /** unassign_*: range check, then clear (a no-op when not set). */
  unassign(dev: MdevDevice, which: MaskName, buf: Buffer): number {
    const id = this.parseId(buf, which);
    this.matrix(dev)[which].delete(id);
    return buf.length;
  }

  /** kstrtoul(buf, 0) (its own EINVAL/ERANGE), then ENODEV beyond the mask's maximum. */
  private parseId(buf: Buffer, which: MaskName): number {
    const v = kstrtoul(buf, Errno.ERANGE);
    if (v > BigInt(this.max[which])) fail(Errno.ENODEV, `id ${v} beyond ${this.max[which]}`);
    return Number(v);
  }

  /** vfio_ap_mdev_matrix_show. */
  static showMatrix(m: Matrix): string {
    const apm = sorted(m.apm);
    const aqm = sorted(m.aqm);
    if (apm.length && aqm.length) return apm.flatMap((a) => aqm.map((q) => `${hex(a, 2)}.${hex(q, 4)}\n`)).join('');
    if (apm.length) return apm.map((a) => `${hex(a, 2)}.\n`).join('');
    return aqm.map((q) => `.${hex(q, 4)}\n`).join('');
  }

  /** The shadow APCB (vfio_ap_mdev_filter_matrix): host adapters whose every assigned domain's queue is bound. */
  guestMatrix(dev: MdevDevice): Matrix {
    const m = this.matrix(dev);
    const aqm = new Set([...m.aqm].filter((q) => this.domains.has(q)));
    const apm = new Set([...m.apm].filter((a) => this.adapters.has(a) && [...aqm].every((q) => this.boundToVfio(a, q))));
    const adm = new Set([...m.adm].filter((d) => this.domains.has(d)));
    return { apm, aqm, adm };
  }

  /** ap_config show: apm, aqm, adm as three masks. */
  showConfig(dev: MdevDevice): string {
    const m = this.matrix(dev);
    return `${formatApMask(m.apm)},${formatApMask(m.aqm)},${formatApMask(m.adm)}\n`;
  }

  /** ap_config store: all or nothing (EINVAL unparsable, EADDRNOTAVAIL/EADDRINUSE, ENODEV beyond the maxima). */
  storeConfig(dev: MdevDevice, buf: Buffer): number {
    const nul = buf.indexOf(0);
    // kstrndup(buf, AP_CONFIG_STRLEN), then strsep(",\n") three times.
    let rest: string | undefined = (nul >= 0 ? buf.subarray(0, nul) : buf).toString('latin1').slice(0, 3 * (BITS / 4 + 3));
    const masks: Mask[] = [];
    for (let i = 0; i < 3; i++) {
      if (rest === undefined) fail(Errno.EINVAL, 'ap_config: three masks expected');
      const cut: number = rest.search(/[,\n]/);
      const token = cut < 0 ? rest : rest.slice(0, cut);
      rest = cut < 0 ? undefined : rest.slice(cut + 1);
      const mask = parseApMask(token);
      if (!mask) fail(Errno.EINVAL, 'ap_config: bad mask');
      masks.push(mask);
    }
    const next: Matrix = { apm: masks[0]!, aqm: masks[1]!, adm: masks[2]! };
    this.validate(dev, next);
    for (const k of ['apm', 'aqm', 'adm'] as const) {
      if ([...next[k]].some((id) => id > this.max[k])) fail(Errno.ENODEV, 'ap_config: id beyond the maximum');
    }
    this.matrices.set(dev, next);
    return buf.length;
  }
}

type ApKind = 'ap-assign' | 'ap-unassign' | 'ap-matrix' | 'ap-guest-matrix' | 'ap-control-domains' | 'ap-config';
const TARGET: Record<string, MaskName> = { adapter: 'apm', domain: 'aqm', 'control-domain': 'adm' };

/** One vfio-ap mdev attribute over the parent's ApMatrixHost. */
export class ApAttr implements AttrKind {
  constructor(
    private readonly host: ApMatrixHost,
    private readonly kind: ApKind,
    private readonly target?: 'adapter' | 'domain' | 'control-domain',
  ) {}

  detach(dev: MdevDevice): void {
    this.host.detach(dev);
  }

  attr(dev: MdevDevice, path: string, abi: Abi): VendorAttr {
    const h = this.host;
    switch (this.kind) {
      case 'ap-assign':
        return { path, mode: 0o200, store: (buf) => h.assign(dev, TARGET[this.target!]!, buf, abi) };
      case 'ap-unassign':
        return { path, mode: 0o200, store: (buf) => h.unassign(dev, TARGET[this.target!]!, buf) };
      case 'ap-matrix':
        return { path, mode: 0o444, show: () => ApMatrixHost.showMatrix(h.matrix(dev)) };
      case 'ap-guest-matrix':
        return { path, mode: 0o444, show: () => ApMatrixHost.showMatrix(h.guestMatrix(dev)) };
      case 'ap-control-domains':
        return { path, mode: 0o444, show: () => sorted(h.matrix(dev).adm).map((d) => `${hex(d, 4)}\n`).join('') };
      case 'ap-config':
        return { path, mode: 0o644, show: () => h.showConfig(dev), store: (buf) => h.storeConfig(dev, buf) };
    }
  }
}

/** simple_strtoul(s, 0) of a token the number pattern matched: 0x hex, leading-0 octal, decimal. */
function strtoul0(s: string): number {
  if (/^0[xX]/.test(s)) return parseInt(s.slice(2), 16);
  if (s.startsWith('0')) return s.length > 1 ? parseInt(s, 8) : 0;
  return parseInt(s, 10);
}

/**
 * ap_parse_mask_str (drivers/s390/crypto/ap_bus.c): "+N", "-N" and "+N-M" items separated by
 * "," (each number as simple_strtoul base 0) change `old`; anything else is an absolute hex mask.
 * undefined when the kernel answers EINVAL.
 */
export function parseApMaskChange(text: string, old: ReadonlySet<number>): Set<number> | undefined {
  const s = text.split('\0')[0]!;
  if (s[0] !== '+' && s[0] !== '-') return parseApMask(s);
  const mask = new Set(old);
  const num = /^(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)/;
  let rest = s;
  while (rest.length > 0) {
    const sign = rest[0];
    if (sign !== '+' && sign !== '-') return undefined;
    rest = rest.slice(1);
    let m = num.exec(rest);
    if (!m) return undefined;
    const a = strtoul0(m[1]!);
    let z = a;
    rest = rest.slice(m[1]!.length);
    if (a >= BITS) return undefined;
    if (rest[0] === '-') {
      m = num.exec(rest.slice(1));
      if (!m) return undefined;
      z = strtoul0(m[1]!);
      rest = rest.slice(1 + m[1]!.length);
      if (a > z || z >= BITS) return undefined;
    }
    for (let i = a; i <= z; i++) if (sign === '+') mask.add(i); else mask.delete(i);
    while (rest[0] === ',' || rest[0] === '\n') rest = rest.slice(1);
  }
  return mask;
}
