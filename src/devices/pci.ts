/**
 * A PCI function as drivers/pci/ shows it: identity, BARs, a config space consistent with
 * both, the `resource` table and what pci_uevent() and modalias_show() print. SR-IOV (iov.c):
 * a physical function knows its virtual functions and each VF its PF.
 */

/** IORESOURCE_* flags (include/linux/ioport.h) as the `resource` file prints them. */
const IORESOURCE_IO = 0x100;
const IORESOURCE_MEM = 0x200;
const IORESOURCE_PREFETCH = 0x2000;
const IORESOURCE_SIZEALIGN = 0x40000;
const IORESOURCE_MEM_64 = 0x100000;
/** PCI_STD_NUM_BARS + ROM + PCI_SRIOV_NUM_BARS: the lines of `resource` for an endpoint (CONFIG_PCI_IOV). */
const RESOURCE_LINES = 13;
const PCI_IOV_RESOURCES = 7;

export type BarKind = 'mem32' | 'mem64' | 'io';

export interface Bar {
  index: number;
  kind: BarKind;
  prefetchable: boolean;
  size: bigint;
  address: bigint;
}

export interface PciIdentity {
  vendor: number;
  device: number;
  subsystemVendor: number;
  subsystemDevice: number;
  /** 24-bit class code: base class, subclass, prog-if. */
  classCode: number;
  revision: number;
}

export interface SriovState {
  totalVfs: number;
  numVfs: number;
  offset: number;
  stride: number;
  vfDevice: number;
  /** One VF's BARs (the PF's IOV resources span totalVfs of each). */
  vfBars: Bar[];
  vfs: PciFunction[];
  /** sriov_drivers_autoprobe: VFs are probed by drivers when enabled. */
  driversAutoprobe: boolean;
}

export interface PciAddress {
  domain: number;
  bus: number;
  slot: number;
  fn: number;
}

export function parseBdf(name: string): PciAddress | undefined {
  const m = /^([0-9a-f]{4}):([0-9a-f]{2}):([01][0-9a-f])\.([0-7])$/.exec(name);
  if (!m) return undefined;
  const slot = parseInt(m[3]!, 16);
  if (slot > 0x1f) return undefined;
  return { domain: parseInt(m[1]!, 16), bus: parseInt(m[2]!, 16), slot, fn: parseInt(m[4]!, 16) };
}

export function formatBdf(a: PciAddress): string {
  const h = (n: number, w: number) => n.toString(16).padStart(w, '0');
  return `${h(a.domain, 4)}:${h(a.bus, 2)}:${h(a.slot, 2)}.${a.fn}`;
}

/** Routing ID arithmetic (pci_iov_virtfn_bus/devfn): the BDF of VF `index` of a PF. */
export function vfAddress(pf: PciAddress, offset: number, stride: number, index: number): PciAddress {
  const rid = (pf.bus << 8) + (pf.slot << 3) + pf.fn + offset + stride * index;
  return { domain: pf.domain, bus: (rid >> 8) & 0xff, slot: (rid >> 3) & 0x1f, fn: rid & 7 };
}

export class PciFunction {
  /** The VF's PF (physfn link); undefined for a PF or a plain function. */
  physfn: PciFunction | undefined;
  sriov: SriovState | undefined;
  /** Mutable attributes, as their stores leave them. */
  enableCount = 0;
  brokenParity = false;
  noMsi = false;
  d3coldAllowed = true;
  iommuGroup: number | undefined;

  constructor(
    readonly address: PciAddress,
    readonly id: PciIdentity,
    readonly bars: readonly Bar[],
    public numaNode: number,
    readonly irq: number,
    readonly localCpus: readonly number[],
    readonly dmaMaskBits: number,
    /** PCI Express: a 4096-byte config space with the PCIe capability and an extended list. */
    readonly express: boolean,
  ) {}

  get name(): string {
    return formatBdf(this.address);
  }

  get isVf(): boolean {
    return this.physfn !== undefined;
  }

  /** "vvvv:dddd", the key of dynamic ids (new_id). */
  get idKey(): string {
    return `${hex(this.id.vendor, 4)}:${hex(this.id.device, 4)}`;
  }

  get configSize(): number {
    return this.express ? 4096 : 256;
  }

  /** modalias_show: pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X. */
  modalias(): string {
    const { vendor, device, subsystemVendor, subsystemDevice, classCode } = this.id;
    const H = (n: number, w: number) => hex(n, w).toUpperCase();
    return (
      `pci:v${H(vendor, 8)}d${H(device, 8)}sv${H(subsystemVendor, 8)}sd${H(subsystemDevice, 8)}` +
      `bc${H(classCode >> 16, 2)}sc${H((classCode >> 8) & 0xff, 2)}i${H(classCode & 0xff, 2)}`
    );
  }

  /** pci_uevent(), after the driver core's DRIVER=. */
  ueventVars(): [string, string][] {
    const { vendor, device, subsystemVendor, subsystemDevice, classCode } = this.id;
    const H = (n: number) => hex(n, 4).toUpperCase();
    return [
      ['PCI_CLASS', classCode.toString(16).toUpperCase()],
      ['PCI_ID', `${H(vendor)}:${H(device)}`],
      ['PCI_SUBSYS_ID', `${H(subsystemVendor)}:${H(subsystemDevice)}`],
      ['PCI_SLOT_NAME', this.name],
      ['MODALIAS', this.modalias()],
    ];
  }

  /** resource_show: start, end and flags of every resource, zeros where there is none. */
  resourceText(): string {
    const lines: string[] = [];
    const line = (start: bigint, end: bigint, flags: bigint) =>
      `0x${hex(start, 16)} 0x${hex(end, 16)} 0x${hex(flags, 16)}`;
    const zero = line(0n, 0n, 0n);
    for (let i = 0; i < RESOURCE_LINES; i++) lines.push(zero);
    for (const b of this.bars) lines[b.index] = line(b.address, b.address + b.size - 1n, resourceFlags(b));
    for (const b of this.sriov?.vfBars ?? []) {
      const span = b.size * BigInt(this.sriov!.totalVfs);
      lines[PCI_IOV_RESOURCES + b.index] = line(b.address, b.address + span - 1n, resourceFlags(b));
    }
    return lines.join('\n') + '\n';
  }

  /** The config space as the device answers it (a VF reads 0xffff for its vendor and device ids). */
  config(): Buffer {
    const c = Buffer.alloc(this.configSize);
    const vf = this.isVf;
    c.writeUInt16LE(vf ? 0xffff : this.id.vendor, 0x00);
    c.writeUInt16LE(vf ? 0xffff : this.id.device, 0x02);
    // Command: memory (and I/O) decoding and bus mastering while a driver has it enabled.
    const io = this.bars.some((b) => b.kind === 'io');
    const command = this.enableCount > 0 ? (vf ? 0x0004 : 0x0006 | (io ? 1 : 0)) | 0x0400 : 0;
    c.writeUInt16LE(command, 0x04);
    c.writeUInt16LE(0x0010, 0x06); // Status: capability list
    c.writeUInt8(this.id.revision, 0x08);
    c.writeUInt8(this.id.classCode & 0xff, 0x09);
    c.writeUInt8((this.id.classCode >> 8) & 0xff, 0x0a);
    c.writeUInt8(this.id.classCode >> 16, 0x0b);
    c.writeUInt8(0x00, 0x0e); // header type 0, single function
    if (!vf) writeBars(c, 0x10, this.bars);
    c.writeUInt16LE(this.id.subsystemVendor, 0x2c);
    c.writeUInt16LE(this.id.subsystemDevice, 0x2e);
    c.writeUInt8(0x40, 0x34); // capabilities pointer
    c.writeUInt8(vf ? 0 : this.irq & 0xff, 0x3c);
    c.writeUInt8(vf ? 0 : 1, 0x3d); // INTA# (VFs have no INTx)
    // 0x40 Power Management (v3, D0), 0x50 MSI (64-bit), 0x70 PCI Express (endpoint, v2).
    c.writeUInt8(0x01, 0x40);
    c.writeUInt8(0x50, 0x41);
    c.writeUInt16LE(0x0003, 0x42);
    c.writeUInt16LE(0x0008, 0x44);
    c.writeUInt8(0x05, 0x50);
    c.writeUInt8(this.express ? 0x70 : 0x00, 0x51);
    c.writeUInt16LE(0x0080, 0x52);
    if (this.express) {
      c.writeUInt8(0x10, 0x70);
      c.writeUInt8(0x00, 0x71);
      c.writeUInt16LE(0x0002, 0x72); // version 2, PCI Express Endpoint
      c.writeUInt32LE(0x10008000, 0x74); // DevCap: FLR, role-based error reporting
      c.writeUInt16LE(0x2810, 0x78); // DevCtl: relaxed ordering, max payload 128, max read 512
      c.writeUInt32LE((16 << 4) | 3, 0x7c); // LnkCap: 8GT/s x16
      c.writeUInt16LE((16 << 4) | 3, 0x82); // LnkSta: 8GT/s x16
      c.writeUInt32LE(0x00000000, 0x94); // DevCap2
      // Extended capabilities of a PF: Advanced Error Reporting, then SR-IOV; a VF has none.
      if (!vf) {
        const sriovAt = this.sriov ? 0x160 : 0;
        c.writeUInt32LE(0x0001 | (2 << 16) | (sriovAt << 20), 0x100); // AER v2, 0x48 bytes
        if (this.sriov) writeSriovCap(c, sriovAt, this.sriov);
      }
    }
    return c;
  }
}

function resourceFlags(b: Bar): bigint {
  if (b.kind === 'io') return BigInt(IORESOURCE_IO | IORESOURCE_SIZEALIGN | 0x1);
  let f = IORESOURCE_MEM | IORESOURCE_SIZEALIGN;
  let low = 0;
  if (b.kind === 'mem64') {
    f |= IORESOURCE_MEM_64;
    low |= 0x4;
  }
  if (b.prefetchable) {
    f |= IORESOURCE_PREFETCH;
    low |= 0x8;
  }
  return BigInt(f | low);
}

/** BAR registers as the kernel left them: address plus the type bits the resource flags echo. */
function writeBars(c: Buffer, at: number, bars: readonly Bar[]): void {
  for (const b of bars) {
    const off = at + 4 * b.index;
    if (b.kind === 'io') {
      c.writeUInt32LE(Number(b.address & 0xfffffffcn) | 0x1, off);
      continue;
    }
    const low = Number(b.address & 0xfffffff0n) | (b.kind === 'mem64' ? 0x4 : 0) | (b.prefetchable ? 0x8 : 0);
    c.writeUInt32LE(low >>> 0, off);
    if (b.kind === 'mem64') c.writeUInt32LE(Number(b.address >> 32n), off + 4);
  }
}

/** The SR-IOV extended capability (PCI_EXT_CAP_ID_SRIOV, include/uapi/linux/pci_regs.h). */
function writeSriovCap(c: Buffer, at: number, s: SriovState): void {
  c.writeUInt32LE(0x0010 | (1 << 16), at); // id, version 1, next 0
  c.writeUInt32LE(0, at + 0x04); // SR-IOV capabilities
  c.writeUInt16LE(s.numVfs > 0 ? 0x0009 : 0, at + 0x08); // VF Enable, VF MSE
  c.writeUInt16LE(s.totalVfs, at + 0x0c); // InitialVFs
  c.writeUInt16LE(s.totalVfs, at + 0x0e);
  c.writeUInt16LE(s.numVfs, at + 0x10);
  c.writeUInt16LE(s.offset, at + 0x14);
  c.writeUInt16LE(s.stride, at + 0x16);
  c.writeUInt16LE(s.vfDevice, at + 0x1a);
  c.writeUInt32LE(0x553, at + 0x1c); // supported page sizes
  c.writeUInt32LE(0x1, at + 0x20); // system page size: 4K
  writeBars(c, at + 0x24, s.vfBars);
}

export function hex(n: number | bigint, width: number): string {
  return n.toString(16).padStart(width, '0');
}

/** A cpulist ("0-3,8") as local_cpus prints it: a hex mask in 32-bit words, comma separated. */
export function cpuMask(cpus: readonly number[]): string {
  const max = Math.max(0, ...cpus);
  const words = Math.floor(max / 32) + 1;
  const w = new Array<number>(words).fill(0);
  for (const c of cpus) w[Math.floor(c / 32)]! |= 1 << c % 32;
  return w
    .reverse()
    .map((x, i) => (i === 0 ? (x >>> 0).toString(16) : hex(x >>> 0, 8)))
    .join(',');
}

/** bitmap_print_to_pagebuf's list form: "0-3,8". */
export function cpuList(cpus: readonly number[]): string {
  const s = [...new Set(cpus)].sort((a, b) => a - b);
  const out: string[] = [];
  for (let i = 0; i < s.length; ) {
    let j = i;
    while (j + 1 < s.length && s[j + 1] === s[j]! + 1) j++;
    out.push(i === j ? `${s[i]}` : `${s[i]}-${s[j]}`);
    i = j + 1;
  }
  return out.join(',');
}

/** Parses a cpulist ("0-7,16"), or returns undefined. */
export function parseCpuList(text: string): number[] | undefined {
  if (!/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(text)) return undefined;
  const cpus: number[] = [];
  for (const part of text.split(',')) {
    const [a, b] = part.split('-').map(Number) as [number, number | undefined];
    const end = b ?? a;
    if (end < a || end > 8191) return undefined;
    for (let c = a; c <= end; c++) cpus.push(c);
  }
  return cpus;
}
