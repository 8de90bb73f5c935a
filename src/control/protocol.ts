import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ParentProfile } from '../drivers/profile-types';

/** One JSON object per line each way. */
export type Request = { op: 'add-parent'; parent: ParentProfile } | { op: 'remove-parent'; name: string } | { op: 'parents' };
export type Reply = { ok: true; parents?: string[] } | { ok: false; error: string };

/** Where the daemon serving `mountpoint` listens, unless told otherwise. */
export function defaultControlPath(mountpoint: string): string {
  const id = createHash('sha256').update(mountpoint).digest('hex').slice(0, 16);
  return join(tmpdir(), `mdevfs-${id}.sock`);
}
