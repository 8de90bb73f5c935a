import type { Logger } from 'pino';
import { Errno, MdevError, errnoName, fail } from '../core/errno';
import { type AttrNode, type DirNode, type Node, relativeTarget } from './nodes';

export interface Stat {
  mode: number; // with file type bits
  size: number;
  nlink: number;
  uid: number;
  gid: number;
  mtime: Date;
  atime: Date;
  ctime: Date;
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const O_ACCMODE = 3;
const O_WRONLY = 1;
const O_RDWR = 2;
/** sysfs hands store() at most a page. */
const PAGE_SIZE = 4096;

interface OpenFile {
  node: AttrNode;
  path: string;
  /** Content rendered by the last read at offset 0 (seq_file keeps it per open file). */
  content?: Buffer;
}

export function splitPath(path: string): string[] {
  return path.split('/').filter((c) => c !== '' && c !== '.');
}

/**
 * The VFS-facing side of the tree: POSIX operations with kernfs's answers (modes, EACCES
 * even for root, ENODEV on stale files, EPERM for mutations). Every FUSE backend calls
 * only this, so none of these rules depends on the backend.
 */
export class Kernfs {
  private readonly files = new Map<number, OpenFile>();
  private nextFh = 1;
  private readonly epoch = new Date();

  constructor(
    private readonly root: DirNode,
    private readonly log: Logger,
  ) {}

  resolve(path: string): Node {
    let node: Node = this.root;
    for (const name of splitPath(path)) {
      if (node.kind !== 'dir') fail(node.kind === 'link' ? Errno.ENOENT : Errno.ENOTDIR);
      const next: Node | undefined = node.lookup(name);
      if (!next) fail(Errno.ENOENT);
      node = next;
    }
    return node;
  }

  getattr(path: string): Stat {
    const node = this.resolve(path);
    const t = this.epoch;
    const base = { uid: 0, gid: 0, mtime: t, atime: t, ctime: t };
    switch (node.kind) {
      case 'dir':
        return { ...base, mode: S_IFDIR | 0o755, size: 0, nlink: 2 + this.subdirs(node) };
      case 'attr':
        return { ...base, mode: S_IFREG | node.mode, size: PAGE_SIZE, nlink: 1 };
      case 'link':
        return { ...base, mode: S_IFLNK | 0o777, size: 0, nlink: 1 };
    }
  }

  private subdirs(node: DirNode): number {
    let n = 0;
    for (const name of node.names()) if (node.lookup(name)?.kind === 'dir') n++;
    return n;
  }

  readdir(path: string): string[] {
    const node = this.resolve(path);
    if (node.kind !== 'dir') fail(Errno.ENOTDIR);
    return ['.', '..', ...node.names()];
  }

  readlink(path: string): string {
    const node = this.resolve(path);
    if (node.kind !== 'link') fail(Errno.EINVAL);
    return relativeTarget(splitPath(path).slice(0, -1), node.target);
  }

  /** kernfs_fop_open with KERNFS_ROOT_EXTRA_OPEN_PERM_CHECK: mode bits decide, root or not. */
  open(path: string, flags: number): number {
    const node = this.resolve(path);
    if (node.kind === 'dir') {
      if ((flags & O_ACCMODE) !== 0) fail(Errno.EISDIR);
      return 0;
    }
    if (node.kind !== 'attr') fail(Errno.ELOOP);
    const acc = flags & O_ACCMODE;
    const wantRead = acc !== O_WRONLY;
    const wantWrite = acc === O_WRONLY || acc === O_RDWR;
    if (wantRead && (!(node.mode & 0o444) || !node.show)) this.refuse(Errno.EACCES, 'open for reading', path);
    if (wantWrite && (!(node.mode & 0o222) || !node.store)) this.refuse(Errno.EACCES, 'open for writing', path);
    const fh = this.nextFh++;
    this.files.set(fh, { node, path });
    return fh;
  }

  release(fh: number): void {
    this.files.delete(fh);
  }

  read(fh: number, length: number, position: number): Buffer {
    const f = this.handle(fh);
    if (position === 0 || !f.content) f.content = Buffer.from(f.node.show!(), 'latin1');
    return f.content.subarray(position, position + length);
  }

  /** One write(2) is one store(): offset ignored, cut at a page, zero length does nothing. */
  async write(fh: number, data: Buffer): Promise<number> {
    const f = this.handle(fh);
    if (data.length === 0) return 0;
    const buf = Buffer.from(data.subarray(0, PAGE_SIZE));
    try {
      return await f.node.store!(buf);
    } catch (err) {
      if (err instanceof MdevError) this.log.info({ path: f.path, errno: errnoName(err.errno), reason: err.message }, 'write refused');
      throw err;
    }
  }

  private handle(fh: number): OpenFile {
    const f = this.files.get(fh);
    if (!f) fail(Errno.EBADF);
    if (!f.node.alive()) fail(Errno.ENODEV, 'stale file');
    return f;
  }

  /** Opening a name that does not exist with O_CREAT: sysfs directories have no create op. */
  create(path: string): never {
    const parts = splitPath(path);
    const dirNode = this.resolve(parts.slice(0, -1).join('/'));
    if (dirNode.kind !== 'dir') fail(Errno.ENOTDIR);
    if (dirNode.lookup(parts[parts.length - 1]!)) fail(Errno.EEXIST);
    this.refuse(Errno.EACCES, 'create', path);
  }

  /** O_TRUNC and truncate(2) on an attribute are accepted and change nothing. */
  truncate(path: string): void {
    const node = this.resolve(path);
    if (node.kind === 'dir') fail(Errno.EISDIR);
  }

  /** mkdir, unlink, rmdir, rename, symlink, link, mknod: sysfs has none of these operations. */
  mutate(op: string, path: string): never {
    this.refuse(Errno.EPERM, op, path);
  }

  private refuse(errno: number, op: string, path: string): never {
    this.log.info({ op, path, errno: errnoName(errno) }, 'refused');
    fail(errno);
  }
}
