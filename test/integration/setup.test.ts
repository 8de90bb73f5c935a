// runs once, on the default backend: scripts/setup does not mount anything
// scripts/setup is idempotent: on a clone where the packages, node_modules (installed from this
// package-lock.json) and dist/ (built from these sources) are up to date it does nothing and says
// so; a changed source rebuilds without reinstalling; a changed package-lock.json reinstalls.
// Runs in a copy of the clone (its node_modules copied, so no registry is asked).
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, statSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { REPO, cliEnv } from '../helpers/daemon';

const work = mkdtempSync(join(tmpdir(), 'mdevfs-setup-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));
const clone = join(work, 'clone');

function setup(): { status: number | null; err: string } {
  const r = spawnSync('bash', [join(clone, 'scripts', 'setup')], { cwd: clone, encoding: 'utf8', env: cliEnv(), timeout: 240_000 });
  return { status: r.status, err: r.stderr };
}

t.before(() => {
  const r = spawnSync('git', ['clone', '-q', REPO, clone], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`git clone: ${r.stderr}`);
  // The working tree's own sources (a run before commit tests what is there), and its node_modules.
  for (const d of ['src', 'scripts']) cpSync(join(REPO, d), join(clone, d), { recursive: true });
  for (const f of ['package.json', 'package-lock.json', 'tsconfig.json']) cpSync(join(REPO, f), join(clone, f));
  // node_modules as hard links where the clone is on the same file system (a second to a full
  // copy's ten): setup only reads it, and an npm ci, were it to run, removes the directory before
  // it installs, so it never writes into a linked file. A full copy elsewhere.
  const nodeModules = join(clone, 'node_modules');
  if (spawnSync('cp', ['-al', join(REPO, 'node_modules'), nodeModules]).status !== 0) {
    rmSync(nodeModules, { recursive: true, force: true });
    cpSync(join(REPO, 'node_modules'), nodeModules, { recursive: true, verbatimSymlinks: true });
  }
});

t.test('a second run does nothing and says so; a changed source only rebuilds', async (t) => {
  const first = setup();
  t.equal(first.status, 0, first.err);
  const nodeModules = statSync(join(clone, 'node_modules')).mtimeMs;
  const again = setup();
  t.equal(again.status, 0, again.err);
  t.match(again.err, /setup: ready \(nothing to do: packages, node_modules and dist\/ are up to date\)/);
  t.equal(statSync(join(clone, 'node_modules')).mtimeMs, nodeModules, 'node_modules untouched');

  const later = new Date(Date.now() + 5000);
  utimesSync(join(clone, 'src', 'core', 'core.ts'), later, later);
  const rebuilt = setup();
  t.equal(rebuilt.status, 0, rebuilt.err);
  t.equal(rebuilt.err.trim(), 'setup: ready', 'rebuilt, without the nothing-to-do line');
  t.equal(statSync(join(clone, 'node_modules')).mtimeMs, nodeModules, 'node_modules not reinstalled');
  t.match(setup().err, /nothing to do/);
});
