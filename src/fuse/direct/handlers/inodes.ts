import { Errno, MdevError } from '../../../base/errno';
import type { Stat } from '../../../sysfs/kernfs';
import { type FuseNode, childPath } from '../nodes';
import * as P from '../protocol';
import type { Session } from '../session';

const { ENOENT } = Errno;
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

/** The request's node (FORGET and a stale fd's requests may name a removed one). */
export function node(s: Session, h: P.InHeader): FuseNode {
  const node = s.nodes.get(h.nodeid);
  if (!node) throw new MdevError(ENOENT, 'unknown node id');
  return node;
}

/** A node that still stands for its path (a removed one: ENOENT). */
export function live(s: Session, h: P.InHeader): FuseNode {
  const n = node(s, h);
  if (n.detached) throw new MdevError(ENOENT, 'removed');
  return n;
}

function attrOf(node: FuseNode, st: Stat): P.Attr {
  const a: P.Attr = {
    ino: node.id,
    size: st.size,
    mode: st.mode,
    nlink: st.nlink,
    uid: st.uid,
    gid: st.gid,
    atimeMs: st.atime.getTime(),
    mtimeMs: st.mtime.getTime(),
    ctimeMs: st.ctime.getTime(),
    ttl: st.ttl,
  };
  node.lastAttr = a;
  return a;
}

/** Current attributes, or the last ones reported if the node's name is gone (stale fd). */
function currentAttr(s: Session, node: FuseNode): P.Attr {
  if (!node.detached) {
    try {
      return attrOf(node, s.kernfs.getattr(node.path, s.caches.resolved(node)));
    } catch (err) {
      if (!(err instanceof MdevError) || !node.lastAttr) throw err;
    }
  }
  if (!node.lastAttr) throw new MdevError(ENOENT, 'removed');
  return node.lastAttr;
}

export function lookup(s: Session, h: P.InHeader, body: Buffer): void {
  const parent = live(s, h);
  const name = P.cString(body);
  // ENOENT is not cached by the kernel: a name that appears later is found at once.
  const path = childPath(parent.path, name);
  const st = s.kernfs.getattr(path);
  // The kernel keeps a link's target with its inode: a link that now points elsewhere
  // is a new inode (as a re-created kernfs link is a new kernfs node).
  const known = s.nodes.atPath(path);
  if (known?.target !== undefined && (st.mode & S_IFMT) === S_IFLNK && s.kernfs.readlink(path) !== known.target) {
    const batch: Buffer[] = [];
    for (const link of s.nodes.detach(known)) s.caches.dropTarget(link, batch);
    s.caches.notify(batch);
  }
  const node = s.nodes.lookedUp(parent, name);
  const ttl = st.ttl ?? s.timeout;
  s.conn.send(P.entryReply(h.unique, node.id, ttl, ttl, attrOf(node, st)));
}

export function forget(s: Session, h: P.InHeader, body: Buffer): void {
  s.nodes.forget(h.nodeid, Number(body.readBigUInt64LE(0)));
}

export function batchForget(s: Session, _h: P.InHeader, body: Buffer): void {
  const count = body.readUInt32LE(0);
  for (let i = 0; i < count; i++) {
    const off = 8 + i * 16;
    if (off + 16 > body.length) break;
    s.nodes.forget(body.readBigUInt64LE(off), Number(body.readBigUInt64LE(off + 8)));
  }
}

export function getattr(s: Session, h: P.InHeader): void {
  // With FUSE_GETATTR_FH the kernel names the open file; its node is the same inode.
  const a = currentAttr(s, node(s, h));
  s.conn.send(P.attrReply(h.unique, a.ttl ?? s.timeout, a));
}

export function setattr(s: Session, h: P.InHeader, body: Buffer): void {
  const n = live(s, h);
  const valid = body.readUInt32LE(0);
  if (valid & P.FATTR_SIZE) s.kernfs.truncate(n.path);
  const change: { mode?: number; uid?: number; gid?: number; atime?: Date; mtime?: Date } = {};
  if (valid & P.FATTR_MODE) change.mode = body.readUInt32LE(68) & 0o7777;
  if (valid & P.FATTR_UID) change.uid = body.readUInt32LE(76);
  if (valid & P.FATTR_GID) change.gid = body.readUInt32LE(80);
  // As libfuse2 (the other backend): times are set only when both come (utimensat), not
  // for the mtime-only change the VFS adds to O_TRUNC/truncate.
  if ((valid & P.FATTR_ATIME) && (valid & P.FATTR_MTIME)) {
    const time = (now: number, secOff: number, nsecOff: number) =>
      valid & now ? new Date() : new Date(Number(body.readBigUInt64LE(secOff)) * 1000 + Math.floor(body.readUInt32LE(nsecOff) / 1e6));
    change.atime = time(P.FATTR_ATIME_NOW, 32, 56);
    change.mtime = time(P.FATTR_MTIME_NOW, 40, 60);
  }
  if (Object.keys(change).length > 0) s.kernfs.setattr(n.path, change);
  const a = currentAttr(s, n);
  s.conn.send(P.attrReply(h.unique, a.ttl ?? s.timeout, a));
}

export function readlink(s: Session, h: P.InHeader): void {
  // The kernel caches the target (FUSE_CACHE_SYMLINKS) until the invalidation drops it.
  const n = live(s, h);
  n.target = s.kernfs.readlink(n.path);
  s.conn.reply(h.unique, Buffer.from(n.target));
}
