import type { Logger } from 'pino';
import type { Kernfs } from '../sysfs/kernfs';

/** A way of serving a Kernfs at a mountpoint. The rest of mdevfs knows only this. */
export interface FuseBackend {
  readonly name: string;
  mount(): Promise<void>;
  unmount(): Promise<void>;
}

export interface BackendOptions {
  mountpoint: string;
  kernfs: Kernfs;
  log: Logger;
}

export type BackendFactory = (opts: BackendOptions) => FuseBackend;

let blockedThreads = 0;

/**
 * A backend reports threads of this process that stay blocked in the kernel on a FUSE
 * connection (a read of /dev/fuse that never returned). process.exit() would wait for them
 * for ever (Node joins libuv's pool threads and its workers at exit), so the CLI ends a
 * process that has any with SIGKILL instead.
 */
export function reportBlockedThreads(n: number): void {
  blockedThreads += n;
}

export function blockedThreadCount(): number {
  return blockedThreads;
}
