import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { lockForLife, sweepStaleLocks } from '../../src/control/lock';

// The daemons' control-directory locks with the real flock(1): a lock that another daemon's
// stale-lock sweep holds for a moment (to remove it) is not a live daemon's. The CI of 3a37360
// saw a daemon refuse to mount (exit 3, "another mdevfs daemon holds ...lock") because a sweep
// had it locked at that instant.

const dir = mkdtempSync(join(tmpdir(), 'mdevfs-lock-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `flock PATH sh -c SCRIPT` and resolves once flock holds the lock (the script has started). */
async function holder(path: string, script: string): Promise<ChildProcess> {
  const ready = join(dir, `ready-${Math.random().toString(16).slice(2)}`);
  const child = spawn('flock', [path, 'sh', '-c', `: > ${ready}; ${script}`], { stdio: 'ignore' });
  while (!existsSync(ready)) await new Promise((r) => setTimeout(r, 5));
  return child;
}

/** lockForLife in a child process (the lock lives as long as the process): its answer. */
function lockInChild(path: string): boolean {
  const src = join(__dirname, '..', '..', 'src', 'control', 'lock.ts');
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', `const { lockForLife } = require(${JSON.stringify(src)}); process.stdout.write(String(lockForLife(${JSON.stringify(path)})));`], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout === 'true';
}

t.test('a lock a sweep holds while it removes the file: the daemon waits and takes a new one', async (t) => {
  const path = join(dir, '0123456789abcdef.lock');
  writeFileSync(path, '');
  // What sweepStaleLocks runs for one file, slowed down: held for 100 ms, then removed (and a
  // mark left just before, which the lock can only be taken after).
  const swept = join(dir, 'swept');
  const sweep = await holder(path, `sleep 0.1; : > ${swept}; rm -f ${path}`);
  t.ok(lockForLife(path), 'locked');
  t.ok(existsSync(swept), 'after the sweep let go');
  t.ok(existsSync(path), 'at a file that is at the path');
  await new Promise((r) => sweep.on('exit', r));
  t.ok(existsSync(path), 'which the sweep did not remove');
});

t.test("a live daemon's lock: refused after a short wait, and the file stays", async (t) => {
  const path = join(dir, 'fedcba9876543210.lock');
  writeFileSync(path, '');
  const ino = statSync(path).ino;
  const daemon = await holder(path, 'sleep 5');
  t.teardown(() => void daemon.kill());
  // (That it waits before refusing, a sweep's lock being taken after it, is the test above.)
  t.equal(lockInChild(path), false, 'held: not ours');
  t.equal(statSync(path).ino, ino, 'the daemon keeps its file');
  t.equal(await sweepStaleLocks(dir, join(dir, 'none.lock')), 0, 'and a sweep leaves a held lock alone');
  t.ok(existsSync(path));
});
