import type { BackendFactory } from './backend';
import { directBackend } from './direct/backend';
import { fuseNativeBackend } from './fuse-native-backend';

/**
 * The FUSE backends by name; the first is the default. direct (its own FUSE protocol, kernel
 * caching with exact invalidation, parallel writes on one file) passes the same suite but is
 * new; it becomes the default once it has run in CI for a while.
 */
export const BACKENDS: Readonly<Record<string, BackendFactory>> = {
  'fuse-native': fuseNativeBackend,
  direct: directBackend,
};

export const DEFAULT_BACKEND = Object.keys(BACKENDS)[0]!;
