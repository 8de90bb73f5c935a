import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Profile } from '../../dist/drivers/profile-types';
import { type CopyResult, copyTree } from './py';

/** The baselines live on tmpfs: /dev/shm (where /tmp is a disk, as on this machine). */
const SHM = existsSync('/dev/shm') ? '/dev/shm' : '/tmp';
const scratchDirs = new Set<string>();

export function scratch(tag: string): string {
  const d = mkdtempSync(join(SHM, `mdevfs-bench-${tag}-`));
  scratchDirs.add(d);
  return d;
}

export function removeScratch(): void {
  for (const d of scratchDirs) rmSync(d, { recursive: true, force: true });
  scratchDirs.clear();
}

/** Copy of a live mount, made by a python3 child walking it (lstat/readlink/read). */
export function copyMount(mountDir: string, dst: string): Promise<CopyResult> {
  return copyTree(mountDir, dst);
}

function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(cmd, args, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    ),
  );
}

export interface DumpResult {
  dirs: number;
  files: number;
  links: number;
  unreadable: number;
  createMs: number;
  writeMs: number;
}

/**
 * The tree a daemon with `profile` shows once `devices` ([uuid, type-id] in creation order)
 * exist, written to tmpfs by dump-tree.js (same tree code, no FUSE). Used for the large trees.
 */
export async function dumpTree(profile: Profile | string, devices: [string, string][], dst: string): Promise<DumpResult> {
  const work = scratch('dumpargs');
  let profileFile = profile as string;
  if (typeof profile !== 'string') {
    profileFile = join(work, 'profile.json');
    writeFileSync(profileFile, JSON.stringify(profile));
  }
  const devicesFile = join(work, 'devices.json');
  writeFileSync(devicesFile, JSON.stringify(devices));
  const r = await run(process.execPath, [join(__dirname, 'dump-tree.js'), profileFile, devicesFile, dst]);
  rmSync(work, { recursive: true, force: true });
  if (r.code !== 0) throw new Error(`dump-tree failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as DumpResult;
}

/** diff -r without following links: identical trees give no output. */
export async function diffTrees(a: string, b: string): Promise<{ identical: boolean; differences: string[] }> {
  const r = await run('diff', ['-r', '--no-dereference', a, b]);
  const differences = r.stdout.split('\n').filter((l) => /^(Only in|diff |Files |Symbolic links )/.test(l));
  return { identical: r.code === 0, differences: differences.length ? differences : r.code === 0 ? [] : [r.stderr.trim()] };
}
