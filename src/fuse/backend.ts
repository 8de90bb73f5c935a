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
