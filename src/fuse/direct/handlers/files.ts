import { Errno, MdevError } from '../../../base/errno';
import * as P from '../protocol';
import type { Session } from '../session';
import { node } from './inodes';

export function open(s: Session, h: P.InHeader, body: Buffer): void {
  const n = node(s, h);
  if (n.detached) throw new MdevError(Errno.ENODEV, 'stale');
  const fh = s.kernfs.open(n.path, body.readUInt32LE(0), s.caches.resolved(n), h);
  s.conn.send(P.openReply(h.unique, fh, P.FOPEN_DIRECT_IO | P.FOPEN_PARALLEL_DIRECT_WRITES | P.FOPEN_NOFLUSH));
}

/** Answered at once, unless a fault rule holds the read (a delay, a hang): then as a WRITE is, later. */
export function read(s: Session, h: P.InHeader, body: Buffer): void {
  const fh = P.readU64(body, 0);
  const offset = P.readU64(body, 8);
  const size = body.readUInt32LE(16);
  const data = s.kernfs.read(fh, size, offset);
  if (!(data instanceof Promise)) return s.conn.reply(h.unique, data);
  answerLater(s, h, data, (d) => d);
}

/** Answered when the store settles (a vendor may take seconds), or by Session.stop() if that comes first. */
export function write(s: Session, h: P.InHeader, body: Buffer): void {
  const fh = P.readU64(body, 0);
  const size = body.readUInt32LE(16);
  // The read buffer is reused as soon as we return: copy the data before going async.
  const data = Buffer.from(body.subarray(P.WRITE_IN_SIZE, P.WRITE_IN_SIZE + size));
  answerLater(s, h, s.kernfs.write(fh, data, { pid: h.pid, uid: h.uid, gid: h.gid }), P.writeOut);
}

/** Answers the request once: by what settles, or by Session.stop() (ENODEV) if that comes first. */
function answerLater<T>(s: Session, h: P.InHeader, result: Promise<T>, out: (r: T) => Buffer): void {
  s.pending.add(h.unique);
  const settled = () => s.pending.delete(h.unique);
  result.then(
    (r) => settled() && s.conn.reply(h.unique, out(r)),
    (err) => settled() && s.conn.replyError(h.unique, s.errnoOf(err, h)),
  );
}

export function release(s: Session, h: P.InHeader, body: Buffer): void {
  s.kernfs.release(P.readU64(body, 0));
  s.conn.reply(h.unique);
}

/** FLUSH, FSYNC: a sysfs attribute has nothing to flush. */
export function nothingToDo(s: Session, h: P.InHeader): void {
  s.conn.reply(h.unique);
}
