/**
 * `mdevfs record [ROOT] [-o FILE]`: reads the mdev parents of a sysfs tree and writes a profile
 * that replays them (`mdevfs mount DIR --profile FILE`). It reads files and links only: it needs
 * no daemon, and works on /sys, a copy of one, or a mounted mdevfs.
 */
import { mdevfsVersion } from '../base/version';
import { renameSync, statfsSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import type { RecordingHeader } from '../drivers/profile-types';
import { RecordError, readHost } from './sysfs-reader';
import { toProfile } from './to-profile';

const SYSFS_MAGIC = 0x62656572;

/** The kernel that made ROOT: the running one's release if ROOT is a sysfs, else "unknown". */
function kernelOf(root: string): string {
  try {
    return statfsSync(root).type === SYSFS_MAGIC ? release() : 'unknown';
  } catch {
    return 'unknown';
  }
}


/** Runs the command: ROOT (default /sys), the -o/--output FILE (default, or "-": standard output). */
export async function recordCommand(rootArg: string | undefined, output: string | undefined): Promise<number> {
  const root = rootArg ?? '/sys';
  const header: RecordingHeader = { kernel: kernelOf(root), mdevfs: mdevfsVersion(), date: new Date().toISOString() };
  let text: string;
  try {
    const recording = await toProfile(readHost(root), header);
    for (const w of recording.warnings) process.stderr.write(`mdevfs record: warning: ${w}\n`);
    for (const [parent, rule] of recording.rules) process.stderr.write(`mdevfs record: ${parent}: capacity ${rule}\n`);
    text = JSON.stringify(recording.profile, null, 2) + '\n';
  } catch (err) {
    if (!(err instanceof RecordError)) throw err;
    process.stderr.write(`mdevfs record: ${err.message}\n`);
    return 1;
  }
  if (output === undefined || output === '-') {
    process.stdout.write(text);
    return 0;
  }
  try {
    // Whole or nothing: a recording is never left half written.
    writeFileSync(`${output}.tmp`, text);
    renameSync(`${output}.tmp`, output);
  } catch (err) {
    process.stderr.write(`mdevfs record: cannot write ${output}: ${(err as Error).message}\n`);
    return 1;
  }
  return 0;
}
