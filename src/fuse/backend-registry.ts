import { readFileSync } from 'node:fs';
import type { BackendFactory } from './backend-interface';
import { directBackend } from './direct/direct-backend';
import { fuseNativeBackend } from './fuse-native-backend';

/**
 * The FUSE backends by name; the first is the default. direct speaks the FUSE protocol
 * itself (kernel caching with exact invalidation, parallel writes on one file, stale-fd
 * fstat as the kernel's); fuse-native is libfuse2, which also mounts for ordinary users
 * (through the setuid fusermount).
 */
export const BACKENDS: Readonly<Record<string, BackendFactory>> = {
  direct: directBackend,
  'fuse-native': fuseNativeBackend,
};

export const DEFAULT_BACKEND = Object.keys(BACKENDS)[0]!;

const CAP_SYS_ADMIN = 21;

/** Whether this process holds CAP_SYS_ADMIN (root, or root of a user namespace it made). */
export function hasSysAdmin(): boolean {
  try {
    const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    return hex !== undefined && ((BigInt(`0x${hex}`) >> BigInt(CAP_SYS_ADMIN)) & 1n) === 1n;
  } catch {
    return process.geteuid?.() === 0;
  }
}

/**
 * The backend to use when none is named, and why: the default (direct) where it can mount,
 * that is with CAP_SYS_ADMIN, since it calls mount(2) itself; else fuse-native, which mounts
 * through fusermount as any user may.
 */
export function automaticBackend(): { name: string; why: string } {
  if (hasSysAdmin()) return { name: DEFAULT_BACKEND, why: 'the default' };
  return { name: 'fuse-native', why: `not privileged to mount (no CAP_SYS_ADMIN): ${DEFAULT_BACKEND} cannot mount here, fuse-native mounts through fusermount` };
}
