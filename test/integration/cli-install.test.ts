import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { CLI, REPO, backendArgs, cliEnv, scratch, startDaemon } from '../helpers/daemon';

// The launcher (scripts/mdevfs) in a clone that is still being built, and mdevfs installed
// system-wide from a clone, the way the README says, without the registry.

const { version } = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };

/** A clone without dist/ yet: the launcher and package.json, nothing built. */
function unbuiltClone(): string {
  const clone = scratch('mdevfs-clone-');
  mkdirSync(join(clone, 'scripts'));
  copyFileSync(CLI, join(clone, 'scripts', 'mdevfs'));
  copyFileSync(join(REPO, 'package.json'), join(clone, 'package.json'));
  return clone;
}

/**
 * A build in progress in `clone`, as `npm run build` holds it: a shared flock on .build.lock for
 * as long as it runs. finish() "builds" (links the real dist/ in) and ends it.
 */
function buildInProgress(clone: string): { finish(): void; ended: Promise<unknown>; proc: ChildProcess } {
  const proc = spawn('flock', ['--shared', join(clone, '.build.lock'), 'sh', '-c', `read go && ln -s "${join(REPO, 'dist')}" "${join(clone, 'dist')}"`], {
    stdio: ['pipe', 'ignore', 'inherit'],
  });
  return { proc, finish: () => proc.stdin!.end('go\n'), ended: new Promise((r) => proc.on('exit', r)) };
}

async function lockHeld(clone: string): Promise<void> {
  for (let i = 0; i < 200 && spawnSync('flock', ['--nonblock', join(clone, '.build.lock'), 'true']).status === 0; i++) await new Promise((r) => setTimeout(r, 20));
}

function launch(clone: string, args: readonly string[]): { out: () => string; err: () => string; status: Promise<number | null> } {
  const p = spawn(process.execPath, [join(clone, 'scripts', 'mdevfs'), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: cliEnv() });
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (err += d));
  return { out: () => out, err: () => err, status: new Promise((r) => p.on('close', (code) => r(code))) };
}

t.test('not built and nothing building: "not built yet" at once', async (t) => {
  const clone = unbuiltClone();
  const r = spawnSync(process.execPath, [join(clone, 'scripts', 'mdevfs'), 'wait', join(clone, 'mount')], { encoding: 'utf8', env: cliEnv(), timeout: 20000 });
  t.equal(r.status, 1);
  t.equal(r.stderr, 'mdevfs: not built yet; run `npm run build` (or scripts/setup) first\n');
});

t.test('wait run while the clone is still being built waits for the build, then for the daemon', async (t) => {
  const clone = unbuiltClone();
  const build = buildInProgress(clone);
  t.teardown(() => void build.proc.kill());
  await lockHeld(clone);
  const dir = join(scratch('mdevfs-clone-'), 'mount');
  const waiter = launch(clone, ['wait', dir, '--timeout', '60']);
  for (let i = 0; i < 400 && !waiter.err().includes('waiting for the build'); i++) await new Promise((r) => setTimeout(r, 25));
  t.equal(waiter.err(), 'mdevfs: waiting for the build in progress (scripts/setup or npm run build)\n', 'it waits, saying why');
  build.finish();
  await build.ended;
  // Built; the daemon starts after (as in `scripts/setup && scripts/mdevfs mount ./mount`).
  const d = await startDaemon({ dir });
  t.teardown(() => d.stop());
  t.equal(await waiter.status, 0, `wait exits 0 once the daemon answers (${waiter.err().trim()})`);

  // The other commands wait for the build too; wait's --timeout bounds its wait.
  const clone2 = unbuiltClone();
  const build2 = buildInProgress(clone2);
  t.teardown(() => void build2.proc.kill());
  await lockHeld(clone2);
  const late = launch(clone2, ['wait', dir, '--timeout', '0.3']);
  t.equal(await late.status, 1, 'a build longer than --timeout: exit 1');
  t.match(late.err(), 'mdevfs: wait: still building after 0.3 s\n');
  const version2 = launch(clone2, ['--version']);
  build2.finish();
  t.equal(await version2.status, 0);
  t.equal(version2.out(), `${version}\n`, '--version ran once built');
});

t.test('npm install -g of the clone (no registry) puts a working mdevfs on PATH', async (t) => {
  const prefix = scratch('mdevfs-prefix-');
  const elsewhere = scratch('mdevfs-elsewhere-');
  const install = spawnSync('npm', ['install', '--global', '--offline', '--no-audit', '--no-fund', '--prefix', prefix, REPO], {
    encoding: 'utf8',
    cwd: elsewhere,
    env: cliEnv({ npm_config_cache: join(prefix, '.npm-cache') }),
    timeout: 120000,
  });
  t.equal(install.status, 0, `npm install -g: ${install.stderr.trim() || 'ok'}`);
  const mdevfs = join(prefix, 'bin', 'mdevfs');
  const v = spawnSync(mdevfs, ['--version'], { encoding: 'utf8', cwd: elsewhere, env: cliEnv() });
  t.same([v.status, v.stdout], [0, `${version}\n`], 'mdevfs --version');
  const r = spawnSync(mdevfs, ['exec', ...backendArgs, '--', 'cat', '/sys/class/mdev_bus/mtty/mdev_supported_types/mtty-1/available_instances'], {
    encoding: 'utf8',
    cwd: elsewhere,
    env: cliEnv({ PATH: `${join(prefix, 'bin')}:${process.env.PATH}` }),
    timeout: 30000,
  });
  t.same([r.status, r.stdout, r.stderr], [0, '24\n', ''], 'mdevfs exec -- cat .../available_instances, run from outside the clone');
});
