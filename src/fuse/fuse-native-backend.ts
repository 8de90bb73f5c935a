import { readFileSync } from 'node:fs';
import { Errno, MdevError } from '../base/errno';
import type { Stat } from '../sysfs/kernfs';
import type { BackendOptions, FuseBackend } from './backend-interface';

// fuse-native ships no types; this is the part of its API we use.
interface FuseNative {
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
  _fuseOptions(): string;
}
type FuseCtor = new (mnt: string, ops: object, opts: object) => FuseNative;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const Fuse: FuseCtor & { EIO: number } = require('fuse-native');

type Cb = (code: number, ...rest: unknown[]) => void;

const { ENODEV } = Errno;

/**
 * allow_other (other users, root included, see the tree) for root always; for another user
 * only where /etc/fuse.conf says user_allow_other, without which fusermount refuses the mount.
 */
function allowOtherPermitted(): boolean {
  if (process.geteuid?.() === 0) return true;
  try {
    return /^\s*user_allow_other\s*$/m.test(readFileSync('/etc/fuse.conf', 'utf8'));
  } catch {
    return false;
  }
}

/** Turns a thrown MdevError into fuse-native's negative errno; anything else is a bug: EIO. */
function errnoOf(err: unknown, log: BackendOptions['log'], op: string, path: string): number {
  if (err instanceof MdevError) return -err.errno;
  log.error({ err, op, path }, 'internal error');
  return Fuse.EIO;
}

/**
 * The libfuse2 backend. Every operation is one call into Kernfs; the only things decided
 * here are libfuse options: direct_io (reads end at the real length although st_size is
 * 4096), zero cache timeouts (a removed device is gone at once), no operation timeout
 * (a slow vendor create is legitimate).
 */
export function fuseNativeBackend({ mountpoint, kernfs, log }: BackendOptions): FuseBackend {
  const call = (op: string, path: string, cb: Cb, fn: () => unknown) => {
    try {
      const result = fn();
      cb(0, result);
    } catch (err) {
      cb(errnoOf(err, log, op, path));
    }
  };
  const refuse = (op: string) => (path: string, ...args: unknown[]) => {
    const cb = args[args.length - 1] as Cb;
    call(op, path, cb, () => kernfs.mutate(op, path));
  };
  /**
   * Answers of WRITEs still waiting for a vendor and of READs a fault rule holds (libfuse's thread
   * waits for them); unmount() gives them ENODEV (as kernfs does for a node going away).
   */
  const pending = new Set<(code: number) => void>();
  /** Answers once: by what settles, or by unmount's ENODEV if that comes first. */
  const answerLater = <T>(result: Promise<T>, cb: Cb, done: (r: T) => number, op: string, path: string) => {
    const answer = (code: number) => {
      if (pending.delete(answer)) cb(code);
    };
    pending.add(answer);
    result.then(
      (r) => answer(done(r)),
      (err) => answer(errnoOf(err, log, op, path)),
    );
  };
  const toFuseStat = (s: Stat) => ({ ...s, blocks: 0, blksize: 4096, dev: 0, ino: 0, rdev: 0 });

  const ops = {
    getattr: (path: string, cb: Cb) => call('getattr', path, cb, () => toFuseStat(kernfs.getattr(path))),
    fgetattr: (path: string, _fd: number, cb: Cb) => call('getattr', path, cb, () => toFuseStat(kernfs.getattr(path))),
    readdir: (path: string, cb: Cb) => call('readdir', path, cb, () => kernfs.readdir(path)),
    readlink: (path: string, cb: Cb) => call('readlink', path, cb, () => kernfs.readlink(path)),
    open: (path: string, flags: number, cb: Cb) => call('open', path, cb, () => kernfs.open(path, flags)),
    release: (_path: string, fd: number, cb: Cb) => {
      kernfs.release(fd);
      cb(0);
    },
    read: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb) => {
      let data: Buffer | Promise<Buffer>;
      try {
        data = kernfs.read(fd, len, pos);
      } catch (err) {
        return cb(errnoOf(err, log, 'read', path));
      }
      // A read a fault rule holds: buf is libfuse's, valid until we answer (its thread waits).
      if (data instanceof Promise) return answerLater(data, cb, (d) => d.copy(buf), 'read', path);
      data.copy(buf);
      cb(data.length);
    },
    write: (path: string, fd: number, buf: Buffer, len: number, _pos: number, cb: Cb) => {
      // fuse-native reuses buf once we return: copy before going async. No caller for the journal:
      // the binding passes none (docs/control-api.md, the journal).
      answerLater(kernfs.write(fd, Buffer.from(buf.subarray(0, len))), cb, (n) => n, 'write', path);
    },
    truncate: (path: string, _size: number, cb: Cb) => call('truncate', path, cb, () => kernfs.truncate(path)),
    ftruncate: (path: string, _fd: number, _size: number, cb: Cb) => call('truncate', path, cb, () => kernfs.truncate(path)),
    create: (path: string, _mode: number, cb: Cb) => call('create', path, cb, () => kernfs.create(path)),
    flush: (_path: string, _fd: number, cb: Cb) => cb(0),
    fsync: (_path: string, _fd: number, _datasync: boolean, cb: Cb) => cb(0),
    utimens: (path: string, atime: number, mtime: number, cb: Cb) =>
      call('utimens', path, cb, () => kernfs.setattr(path, { atime: new Date(atime), mtime: new Date(mtime) })),
    chmod: (path: string, mode: number, cb: Cb) => call('chmod', path, cb, () => kernfs.setattr(path, { mode: mode & 0o7777 })),
    chown: (path: string, uid: number, gid: number, cb: Cb) =>
      call('chown', path, cb, () => kernfs.setattr(path, { uid: uid === 0xffffffff ? undefined : uid, gid: gid === 0xffffffff ? undefined : gid })),
    mkdir: refuse('mkdir'),
    rmdir: refuse('rmdir'),
    unlink: refuse('unlink'),
    rename: refuse('rename'),
    link: refuse('link'),
    symlink: (_target: string, path: string, cb: Cb) => call('symlink', path, cb, () => kernfs.mutate('symlink', path)),
    mknod: refuse('mknod'),
    setxattr: refuse('setxattr'),
  };

  class SysfsFuse extends (Fuse as FuseCtor) {
    // nonempty: the repository's mount/ keeps a placeholder file; it is only hidden while mounted.
    // default_permissions: the kernel checks modes and owners as for sysfs (only root writes).
    // An ordinary user's daemon plays root for its own mount: libfuse shows every file as its.
    override _fuseOptions(): string {
      const base = super._fuseOptions();
      const euid = process.geteuid?.() ?? 0;
      const opts = `direct_io,nonempty,default_permissions${euid === 0 ? '' : `,uid=${euid},gid=${process.getegid?.() ?? 0}`}`;
      return base ? `${base},${opts}` : `-o${opts}`;
    }
  }
  const fuse = new SysfsFuse(mountpoint, ops, {
    allowOther: allowOtherPermitted(),
    fsname: 'mdevfs',
    subtype: 'mdevfs',
    entryTimeout: '0',
    attrTimeout: '0',
    timeout: false,
    // fusermount3 stays behind and unmounts if we die (kill -9). Tests switch it off to make a stale mount.
    autoUnmount: process.env.MDEVFS_NO_AUTO_UNMOUNT !== '1',
  });

  return {
    name: 'fuse-native',
    mount: () => new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve()))),
    // Detaches lazily (fusermount -uz): open files keep the superblock alive, answered until
    // the process exits, whose closing of /dev/fuse aborts the connection (they get ENOTCONN).
    // libfuse's threads are its own, not libuv's: they never hold up the exit.
    unmount: () => {
      for (const answer of [...pending]) answer(-ENODEV);
      return new Promise<void>((resolve, reject) => fuse.unmount((err) => (err ? reject(err) : resolve())));
    },
  };
}
