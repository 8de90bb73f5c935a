// Linux errno values the emulated kernel returns. Names match <errno.h>.
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENOSPC: 28,
  EROFS: 30,
  ERANGE: 34,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  EUSERS: 87,
  EADDRINUSE: 98,
  EADDRNOTAVAIL: 99,
  ECONNABORTED: 103,
} as const;

export type ErrnoName = keyof typeof Errno;

const byNumber = new Map<number, ErrnoName>(
  (Object.entries(Errno) as [ErrnoName, number][]).map(([k, v]) => [v, k]),
);

export function errnoName(n: number): string {
  return byNumber.get(n) ?? `errno ${n}`;
}

export function errnoByName(name: string): number {
  const n = (Errno as Record<string, number>)[name];
  if (n === undefined) throw new Error(`unknown errno name ${name}`);
  return n;
}

/** A failure the emulated kernel reports to userspace as -errno. */
export class MdevError extends Error {
  constructor(
    readonly errno: number,
    message?: string,
  ) {
    super(message ?? errnoName(errno));
    this.name = 'MdevError';
  }
}

export function fail(errno: number, message?: string): never {
  throw new MdevError(errno, message);
}
