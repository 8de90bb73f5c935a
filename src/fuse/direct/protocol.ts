/**
 * The kernel's FUSE wire format (include/uapi/linux/fuse.h), the part mdevfs speaks.
 * Little-endian, 64-bit aligned; u64 ids are BigInt.
 */

export const FUSE_KERNEL_VERSION = 7;
/** The newest minor whose structures this file knows; we reply min(kernel's, this). */
export const FUSE_KERNEL_MINOR_VERSION = 31;
export const FUSE_ROOT_ID = 1n;

export const Op = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  DESTROY: 38,
  BATCH_FORGET: 42,
  RENAME2: 45,
  STATX: 52,
} as const;

export const NotifyCode = { INVAL_INODE: 2, INVAL_ENTRY: 3 } as const;

// INIT flags (fuse_init_in/out.flags)
export const FUSE_ASYNC_READ = 1 << 0;
export const FUSE_ATOMIC_O_TRUNC = 1 << 3;
export const FUSE_BIG_WRITES = 1 << 5;
export const FUSE_PARALLEL_DIROPS = 1 << 18;
/** The kernel keeps symlink targets in the link inode's page cache (minor >= 28). */
export const FUSE_CACHE_SYMLINKS = 1 << 23;

// OPEN reply flags
export const FOPEN_DIRECT_IO = 1 << 0;
/** Keep the page cache (for a directory: its readdir cache) across this open. */
export const FOPEN_KEEP_CACHE = 1 << 1;
export const FOPEN_NOFLUSH = 1 << 5;
export const FOPEN_PARALLEL_DIRECT_WRITES = 1 << 6;
/** The kernel caches this directory's READDIR replies in its page cache (minor >= 28). */
export const FOPEN_CACHE_DIR = 1 << 3;

// SETATTR valid bits
export const FATTR_MODE = 1 << 0;
export const FATTR_UID = 1 << 1;
export const FATTR_GID = 1 << 2;
export const FATTR_SIZE = 1 << 3;
export const FATTR_ATIME = 1 << 4;
export const FATTR_MTIME = 1 << 5;
export const FATTR_ATIME_NOW = 1 << 7;
export const FATTR_MTIME_NOW = 1 << 8;

export const FUSE_GETATTR_FH = 1 << 0;

// Sizes (bytes)
export const IN_HEADER_SIZE = 40;
export const OUT_HEADER_SIZE = 16;
export const ATTR_SIZE = 88;
export const ENTRY_OUT_SIZE = 40 + ATTR_SIZE; // 128
export const ATTR_OUT_SIZE = 16 + ATTR_SIZE; // 104
export const INIT_OUT_SIZE = 64;
export const OPEN_OUT_SIZE = 16;
export const WRITE_IN_SIZE = 40;
export const WRITE_OUT_SIZE = 8;
export const STATFS_OUT_SIZE = 80;
export const DIRENT_HEADER_SIZE = 24;

// d_type values for READDIR records
export const DT_DIR = 4;
export const DT_REG = 8;
export const DT_LNK = 10;

export interface InHeader {
  len: number;
  opcode: number;
  unique: bigint;
  nodeid: bigint;
  uid: number;
  gid: number;
  pid: number;
  totalExtlen: number;
}

export function parseInHeader(buf: Buffer): InHeader {
  return {
    len: buf.readUInt32LE(0),
    opcode: buf.readUInt32LE(4),
    unique: buf.readBigUInt64LE(8),
    nodeid: buf.readBigUInt64LE(16),
    uid: buf.readUInt32LE(24),
    gid: buf.readUInt32LE(28),
    pid: buf.readUInt32LE(32),
    totalExtlen: buf.readUInt16LE(36),
  };
}

/** out_header + payload, as one buffer for one write(2). */
export function frame(unique: bigint, error: number, payload?: Buffer): Buffer {
  const len = OUT_HEADER_SIZE + (payload?.length ?? 0);
  const out = Buffer.allocUnsafe(len);
  writeOutHeader(out, len, error, unique);
  if (payload) payload.copy(out, OUT_HEADER_SIZE);
  return out;
}

/** struct fuse_out_header at the start of buf: the reply's whole length, its error, its unique. */
function writeOutHeader(buf: Buffer, total: number, error: number, unique: bigint): void {
  buf.writeUInt32LE(total, 0);
  buf.writeInt32LE(error, 4);
  writeU64(buf, 8, Number(unique));
}

/** The attributes we report; times in ms since the epoch. */
export interface Attr {
  ino: bigint;
  size: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
  /** Seconds the kernel may cache it, where Kernfs says (a host node's, --host-sysfs); else the session's timeout. Not sent. */
  ttl?: number;
}

function writeTime(buf: Buffer, secOff: number, nsecOff: number, ms: number): void {
  const sec = Math.floor(ms / 1000);
  writeU64(buf, secOff, sec);
  buf.writeUInt32LE(Math.round((ms - sec * 1000) * 1e6) % 1e9, nsecOff);
}

/** struct fuse_attr (88 bytes) at off; every byte written (buffers come from allocUnsafe). */
export function writeAttr(buf: Buffer, off: number, a: Attr): void {
  writeU64(buf, off + 0, Number(a.ino));
  writeU64(buf, off + 8, a.size);
  writeU64(buf, off + 16, 0); // blocks
  writeTime(buf, off + 24, off + 48, a.atimeMs);
  writeTime(buf, off + 32, off + 52, a.mtimeMs);
  writeTime(buf, off + 40, off + 56, a.ctimeMs);
  buf.writeUInt32LE(a.mode >>> 0, off + 60);
  buf.writeUInt32LE(a.nlink >>> 0, off + 64);
  buf.writeUInt32LE(a.uid >>> 0, off + 68);
  buf.writeUInt32LE(a.gid >>> 0, off + 72);
  buf.writeUInt32LE(0, off + 76); // rdev
  buf.writeUInt32LE(4096, off + 80); // blksize
  buf.writeUInt32LE(0, off + 84); // flags
}

/** A validity in seconds as fuse's (u64 seconds, u32 nanoseconds) at secOff and nsecOff. */
function writeValid(buf: Buffer, secOff: number, nsecOff: number, seconds: number): void {
  const s = Math.floor(seconds);
  writeU64(buf, secOff, s);
  buf.writeUInt32LE(Math.round((seconds - s) * 1e9), nsecOff);
}

/**
 * The reply to LOOKUP, out_header and struct fuse_entry_out in one buffer (GETATTR and LOOKUP
 * are most of the requests: no BigInt, one allocation, no copy).
 */
export function entryReply(unique: bigint, nodeid: bigint, entryValid: number, attrValid: number, a: Attr): Buffer {
  const b = header(unique, ENTRY_OUT_SIZE);
  const o = OUT_HEADER_SIZE;
  writeU64(b, o, Number(nodeid));
  writeU64(b, o + 8, 0); // generation
  writeValid(b, o + 16, o + 32, entryValid);
  writeValid(b, o + 24, o + 36, attrValid);
  writeAttr(b, o + 40, a);
  return b;
}

/** The reply to GETATTR and SETATTR: out_header and struct fuse_attr_out. */
export function attrReply(unique: bigint, attrValid: number, a: Attr): Buffer {
  const b = header(unique, ATTR_OUT_SIZE);
  const o = OUT_HEADER_SIZE;
  writeValid(b, o, o + 8, attrValid);
  b.writeUInt32LE(0, o + 12); // dummy
  writeAttr(b, o + 16, a);
  return b;
}

/** The reply to OPEN and OPENDIR: out_header and struct fuse_open_out (fh below 2^53). */
export function openReply(unique: bigint, fh: number, openFlags: number): Buffer {
  const b = header(unique, OPEN_OUT_SIZE);
  writeU64(b, OUT_HEADER_SIZE, fh);
  b.writeUInt32LE(openFlags >>> 0, OUT_HEADER_SIZE + 8);
  b.writeUInt32LE(0, OUT_HEADER_SIZE + 12); // open_flags' padding (backing_id)
  return b;
}

/** A u64 below 2^53 at off, as a number (no BigInt). */
export function readU64(buf: Buffer, off: number): number {
  return buf.readUInt32LE(off) + buf.readUInt32LE(off + 4) * 0x100000000;
}

/** An allocated reply with its out_header written (error 0), room for len bytes after it. */
function header(unique: bigint, len: number): Buffer {
  const b = Buffer.allocUnsafe(OUT_HEADER_SIZE + len);
  writeOutHeader(b, OUT_HEADER_SIZE + len, 0, unique);
  return b;
}

export function writeOut(size: number): Buffer {
  const b = Buffer.alloc(WRITE_OUT_SIZE);
  b.writeUInt32LE(size, 0);
  return b;
}

/** struct fuse_statfs_out (fuse_kstatfs): an empty filesystem with 4 KiB blocks. */
export function statfsOut(): Buffer {
  const b = Buffer.alloc(STATFS_OUT_SIZE);
  b.writeUInt32LE(4096, 40); // bsize
  b.writeUInt32LE(255, 44); // namelen
  b.writeUInt32LE(4096, 48); // frsize
  return b;
}

export interface InitIn {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: number;
}

export function parseInitIn(body: Buffer): InitIn {
  return {
    major: body.readUInt32LE(0),
    minor: body.readUInt32LE(4),
    maxReadahead: body.length >= 12 ? body.readUInt32LE(8) : 0,
    flags: body.length >= 16 ? body.readUInt32LE(12) : 0,
  };
}

/** struct fuse_init_out (64 bytes, minor >= 23). */
export function initOut(o: {
  minor: number;
  maxReadahead: number;
  flags: number;
  maxBackground: number;
  congestionThreshold: number;
  maxWrite: number;
}): Buffer {
  const b = Buffer.alloc(INIT_OUT_SIZE);
  b.writeUInt32LE(FUSE_KERNEL_VERSION, 0);
  b.writeUInt32LE(o.minor, 4);
  b.writeUInt32LE(o.maxReadahead, 8);
  b.writeUInt32LE(o.flags >>> 0, 12);
  b.writeUInt16LE(o.maxBackground, 16);
  b.writeUInt16LE(o.congestionThreshold, 18);
  b.writeUInt32LE(o.maxWrite, 20);
  b.writeUInt32LE(1, 24); // time_gran: ns
  // max_pages, map_alignment, flags2, unused: 0
  return b;
}

/** One READDIR record: fuse_dirent + name, padded to 8. */
export function direntSize(nameLen: number): number {
  return (DIRENT_HEADER_SIZE + nameLen + 7) & ~7;
}

/** u64 at off from a non-negative integer below 2^53 (no BigInt). */
function writeU64(buf: Buffer, off: number, n: number): void {
  buf.writeUInt32LE(n % 0x100000000, off);
  buf.writeUInt32LE(Math.floor(n / 0x100000000), off + 4);
}

/** One READDIR record at off; returns its size. ino and nextOff below 2^53. */
export function writeDirent(buf: Buffer, off: number, ino: number, nextOff: number, type: number, name: string): number {
  writeU64(buf, off, ino);
  writeU64(buf, off + 8, nextOff);
  const len = buf.write(name, off + DIRENT_HEADER_SIZE, 'utf8');
  buf.writeUInt32LE(len, off + 16);
  buf.writeUInt32LE(type, off + 20);
  const size = direntSize(len);
  buf.fill(0, off + DIRENT_HEADER_SIZE + len, off + size);
  return size;
}

/** Writes the out_header into the first OUT_HEADER_SIZE bytes of buf, whose payload (len bytes) follows it. */
export function frameInPlace(buf: Buffer, unique: bigint, len: number): Buffer {
  const total = OUT_HEADER_SIZE + len;
  writeOutHeader(buf, total, 0, unique);
  return buf.subarray(0, total);
}

/** FUSE_NOTIFY_INVAL_ENTRY: fuse_notify_inval_entry_out + name + NUL. */
export function invalEntry(parent: bigint, name: string): Buffer {
  const n = Buffer.from(name);
  const b = Buffer.alloc(16 + n.length + 1);
  b.writeBigUInt64LE(parent, 0);
  b.writeUInt32LE(n.length, 8);
  b.writeUInt32LE(0, 12); // flags
  n.copy(b, 16);
  return frame(0n, NotifyCode.INVAL_ENTRY, b);
}

/**
 * FUSE_NOTIFY_INVAL_INODE: off < 0 drops the attributes only (files are direct_io: they
 * have no data cache); with `pages`, off 0 and len 0 ("to the end") also drop the page
 * cache, which is where the kernel keeps a symlink's target under FUSE_CACHE_SYMLINKS.
 */
export function invalInode(ino: bigint, pages = false): Buffer {
  const b = Buffer.alloc(24);
  b.writeBigUInt64LE(ino, 0);
  b.writeBigInt64LE(pages ? 0n : -1n, 8);
  b.writeBigInt64LE(0n, 16);
  return frame(0n, NotifyCode.INVAL_INODE, b);
}

/** A NUL-terminated name at off in body. */
export function cString(body: Buffer, off = 0): string {
  const end = body.indexOf(0, off);
  return body.toString('utf8', off, end < 0 ? body.length : end);
}
