import { Errno, MdevError } from '../../../base/errno';
import type { DirNode } from '../../../sysfs/nodes';
import * as P from '../protocol';
import type { Session } from '../session';
import { live } from './inodes';

export function opendir(s: Session, h: P.InHeader): void {
  const node = live(s, h);
  const kn = s.caches.resolved(node);
  if (kn.kind !== 'dir') throw new MdevError(Errno.ENOTDIR);
  const fh = s.nextDirFh++;
  s.dirs.set(fh, { node });
  // A listing with the host's names (--host-sysfs) changes without notice: the kernel keeps none.
  if (kn.host !== undefined || kn.merged) return s.conn.send(P.openReply(h.unique, Number(fh), 0));
  // The listing the kernel cached stays only if nothing changed since it was read.
  const keep = node.listedGen === s.caches.changeGen ? P.FOPEN_KEEP_CACHE : 0;
  s.conn.send(P.openReply(h.unique, Number(fh), P.FOPEN_CACHE_DIR | keep));
}

export function readdir(s: Session, h: P.InHeader, body: Buffer): void {
  const d = s.dirs.get(body.readBigUInt64LE(0));
  if (!d) throw new MdevError(Errno.EBADF);
  const offset = P.readU64(body, 8);
  const size = body.readUInt32LE(16);
  // The listing is taken when reading starts (offset 0) so that cookies stay stable.
  if (offset === 0 || !d.names) {
    // What the kernel caches from here on is this listing, current as of now.
    s.caches.listing(d.node);
    try {
      d.names = d.node.detached ? ['.', '..'] : s.kernfs.readdir(d.node.path);
    } catch (err) {
      if (!(err instanceof MdevError)) throw err;
      d.names = ['.', '..'];
    }
  }
  // The directory is resolved once; each entry is one lookup in it (not a walk from the root).
  let dir: DirNode | undefined;
  try {
    const n = d.node.detached ? undefined : s.caches.resolved(d.node);
    if (n?.kind === 'dir') dir = n;
  } catch (err) {
    if (!(err instanceof MdevError)) throw err;
  }
  // Records go straight into the reply, after its header.
  const out = Buffer.allocUnsafe(P.OUT_HEADER_SIZE + size);
  const base = P.OUT_HEADER_SIZE;
  let used = 0;
  // Where every entry is of one kind (bus/mdev/devices, a type's devices/), none is looked up:
  // an entry gone since the listing was taken is then listed, as a race with readdir may.
  const uniform = dir?.entryKind;
  const seed = nameInoSeed(d.node.path);
  for (let i = offset; i < d.names.length; i++) {
    const name = d.names[i]!;
    const recSize = P.direntSize(Buffer.byteLength(name));
    if (used + recSize > size) break;
    let type = P.DT_DIR;
    let ino = Number(d.node.id);
    if (name === '..') ino = Number(d.node.parent?.id ?? d.node.id);
    else if (name !== '.') {
      const kind = uniform ?? dir?.lookup(name)?.kind;
      if (!kind) continue; // gone since the listing was taken
      type = kind === 'dir' ? P.DT_DIR : kind === 'link' ? P.DT_LNK : P.DT_REG;
      const known = d.node.children.get(name);
      ino = known && !known.detached ? Number(known.id) : nameIno(seed, name);
    }
    used += P.writeDirent(out, base + used, ino, i + 1, type, name);
  }
  s.conn.send(P.frameInPlace(out, h.unique, used));
}

export function releasedir(s: Session, h: P.InHeader, body: Buffer): void {
  s.dirs.delete(body.readBigUInt64LE(0));
  s.conn.reply(h.unique);
}

/**
 * A stable, non-zero d_ino for a name never looked up: FNV-1a of the path, 32 bits, with bit
 * 40 set (no clash with node ids, which count up from 2). Only readdir's d_ino shows it.
 */
function nameIno(seed: number, name: string): number {
  return (fnv1a(seed, name) >>> 0) + 2 ** 40;
}

/** The FNV-1a state after `${dirPath}/`: nameIno goes on from it for each name in the directory. */
function nameInoSeed(dirPath: string): number {
  return fnv1a(fnv1a(0x811c9dc5, dirPath), '/');
}

function fnv1a(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h;
}
