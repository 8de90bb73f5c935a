import { Errno } from '../../../base/errno';
import * as P from '../protocol';
import type { Session } from '../session';
import { destroy, init, interrupt, statfs } from './connection';
import { opendir, readdir, releasedir } from './dirs';
import { nothingToDo, open, read, release, write } from './files';
import { batchForget, forget, getattr, lookup, readlink, setattr } from './inodes';
import { create, link, mkdir, mknod, rename, rename2, rmdir, symlink, unlink } from './refused';

/**
 * A request's handler: it answers the request (through s.conn), leaves the answer to a later
 * event (WRITE), or throws an MdevError, which Session answers with its errno.
 */
export type Handler = (s: Session, h: P.InHeader, body: Buffer) => void;

/**
 * ACCESS, *XATTR, STATX, POLL, LSEEK, FALLOCATE, IOCTL, locks, ...: the kernel remembers
 * ENOSYS and stops asking (or falls back to its generic code).
 */
export function unsupported(s: Session, h: P.InHeader): void {
  s.conn.replyError(h.unique, Errno.ENOSYS);
}

/** Past every opcode the kernel sends a FUSE filesystem (CUSE_INIT, 4096, is not one). */
const TABLE_SIZE = 64;

/** The handlers by opcode, as libfuse's fuse_ll_ops: an opcode not listed is unsupported. */
export const HANDLERS: readonly Handler[] = (() => {
  const t = Array.from({ length: TABLE_SIZE }, (): Handler => unsupported);
  t[P.Op.INIT] = init;
  t[P.Op.DESTROY] = destroy;
  t[P.Op.INTERRUPT] = interrupt;
  t[P.Op.STATFS] = statfs;
  t[P.Op.LOOKUP] = lookup;
  t[P.Op.FORGET] = forget;
  t[P.Op.BATCH_FORGET] = batchForget;
  t[P.Op.GETATTR] = getattr;
  t[P.Op.SETATTR] = setattr;
  t[P.Op.READLINK] = readlink;
  t[P.Op.OPEN] = open;
  t[P.Op.READ] = read;
  t[P.Op.WRITE] = write;
  t[P.Op.RELEASE] = release;
  t[P.Op.FLUSH] = nothingToDo;
  t[P.Op.FSYNC] = nothingToDo;
  t[P.Op.OPENDIR] = opendir;
  t[P.Op.READDIR] = readdir;
  t[P.Op.RELEASEDIR] = releasedir;
  t[P.Op.CREATE] = create;
  t[P.Op.MKDIR] = mkdir;
  t[P.Op.MKNOD] = mknod;
  t[P.Op.UNLINK] = unlink;
  t[P.Op.RMDIR] = rmdir;
  t[P.Op.RENAME] = rename;
  t[P.Op.RENAME2] = rename2;
  t[P.Op.SYMLINK] = symlink;
  t[P.Op.LINK] = link;
  return t;
})();
