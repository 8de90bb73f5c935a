import { Errno } from '../../../base/errno';
import * as P from '../protocol';
import type { Session } from '../session';

/** INIT: the protocol version and what we want of the kernel's caches. */
export function init(s: Session, h: P.InHeader, body: Buffer): void {
  const init = P.parseInitIn(body);
  if (init.major !== P.FUSE_KERNEL_VERSION) {
    // A newer major: answer with ours and let the kernel retry or give up.
    s.log.error({ major: init.major, minor: init.minor }, 'fuse: unsupported kernel protocol');
    if (init.major < P.FUSE_KERNEL_VERSION) return s.conn.replyError(h.unique, Errno.EIO);
  }
  const minor = Math.min(init.minor, P.FUSE_KERNEL_MINOR_VERSION);
  // Never FUSE_ATOMIC_O_TRUNC. Symlink targets are cached: every change drops them (invalidation.ts).
  const want = P.FUSE_ASYNC_READ | P.FUSE_BIG_WRITES | P.FUSE_PARALLEL_DIROPS | P.FUSE_CACHE_SYMLINKS;
  s.caches.initDone = true;
  s.log.debug({ kernel: `${init.major}.${init.minor}`, minor, flags: init.flags & want }, 'fuse: init');
  s.conn.reply(
    h.unique,
    P.initOut({
      minor,
      maxReadahead: init.maxReadahead,
      flags: init.flags & want,
      maxBackground: 64,
      congestionThreshold: 48,
      maxWrite: s.conn.maxWrite,
    }),
  );
}

export function destroy(s: Session, h: P.InHeader): void {
  s.conn.reply(h.unique);
  void s.stop();
}

/** Lets the request finish: its answer is the answer. */
export function interrupt(): void {}

export function statfs(s: Session, h: P.InHeader): void {
  s.conn.reply(h.unique, P.statfsOut());
}
