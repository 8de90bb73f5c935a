import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { CLI, backendArgs, cliEnv, isMounted, scratch } from '../helpers/daemon';

// DIR as the user means it: resolved through links and spellings, created and removed when
// mount made it, announced on stderr, its hidden files warned about. And the log formats.

const cli = (args: readonly string[], opts: { cwd?: string; env?: Record<string, string> } = {}) =>
  spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20000, cwd: opts.cwd, env: cliEnv(opts.env) });

interface Served {
  proc: ChildProcess;
  stderr(): string;
  stop(): Promise<number | null>;
}

/** `mdevfs mount ARGS` run from cwd, once `mounted` (DIR: the absolute directory it should serve). */
async function serve(args: readonly string[], dir: string, cwd: string, env: Record<string, string> = {}): Promise<Served> {
  const proc = spawn(process.execPath, [CLI, 'mount', ...args, ...backendArgs], { cwd, stdio: ['ignore', 'ignore', 'pipe'], env: cliEnv(env) });
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => proc.on('close', (code) => r(code)));
  // It says so once it serves (its stderr is read here, so a spawnSync must not block meanwhile).
  const silent = args.includes('silent');
  const up = () => (silent ? isMounted(dir) : stderr.includes('mdevfs: serving '));
  for (let i = 0; i < 400 && proc.exitCode === null && !up(); i++) await new Promise((r) => setTimeout(r, 25));
  if (!up()) {
    proc.kill('SIGKILL');
    throw new Error(`mdevfs mount ${args.join(' ')} did not mount ${dir}: ${stderr}`);
  }
  const w = cli(['wait', dir], { env });
  if (w.status !== 0) throw new Error(`not ready: ${w.stderr}`);
  return {
    proc,
    stderr: () => stderr,
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}

t.test('DIR is the directory, not its spelling: ./m, $PWD/m, a link to m and m/ find one daemon', async (t) => {
  const work = scratch('mdevfs-dir-');
  const m = join(work, 'm');
  symlinkSync('m', join(work, 'm-link'));
  mkdirSync(join(work, 'sub'));
  symlinkSync('../m-link', join(work, 'sub', 'link-to-link'));
  const d = await serve(['./m'], m, work);
  t.teardown(() => d.stop());
  for (const spelling of ['m', './m/', 'm-link', join(work, 'm'), join(work, 'm-link'), 'sub/link-to-link', 'sub/../m']) {
    const w = cli(['wait', spelling, '--timeout', '5'], { cwd: work });
    t.equal(w.status, 0, `wait ${spelling} (${w.stderr.trim() || 'ready'})`);
    const p = cli(['ctl', spelling, 'parents'], { cwd: work });
    t.same([p.status, p.stdout], [0, 'mtty\nmdpy\nmbochs\n'], `ctl ${spelling} parents`);
  }
  const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
  writeFileSync(join(m, 'class/mdev_bus/mtty/mdev_supported_types/mtty-1/create'), U);
  const e = cli(['events', 'm-link', '--since', '0', '--until', `add:${U}`], { cwd: work });
  t.equal(e.status, 0, 'events through the link');
  t.match(e.stdout, `"DEVPATH":"/devices/virtual/mtty/mtty/${U}"`);

  // A second daemon for the same directory under another name is refused as one for DIR itself.
  const again = cli(['mount', 'm-link', ...backendArgs], { cwd: work });
  t.equal(again.status, 3, 'mount m-link while m is served: exit 3');
  t.match(again.stderr, `mdevfs: ${m} is already a live mount or being mounted`);

  // Messages name DIR as given (absolute), never the socket derived from it.
  mkdirSync(join(work, 'other'));
  const none = [
    cli(['ctl', './other', 'parents'], { cwd: work }),
    cli(['wait', 'other', '--timeout', '0.2'], { cwd: work }),
    cli(['events', 'other'], { cwd: work }),
  ];
  for (const r of none) {
    t.equal(r.status, 1);
    t.match(r.stderr, `no daemon answers on ${join(work, 'other')} (ENOENT: no mdevfs serves it)`);
    t.notMatch(r.stderr, '.sock', 'not the socket');
  }
  t.equal(await d.stop(), 0);
});

t.test('a link to a dead mount: wait says it is not ready, mount recovers it through the link', async (t) => {
  const work = scratch('mdevfs-dir-');
  const m = join(work, 'm');
  symlinkSync(m, join(work, 'm-link'));
  const dead = await serve([m], m, work, { MDEVFS_NO_AUTO_UNMOUNT: '1' });
  t.teardown(() => {
    if (isMounted(m)) spawnSync('umount', ['-l', m]);
  });
  dead.proc.kill('SIGKILL');
  await dead.stop();
  t.ok(isMounted(m), 'a dead mount is left (realpath of it fails: ENOTCONN)');
  const w = cli(['wait', 'm-link', '--timeout', '0.3'], { cwd: work });
  t.equal(w.status, 1);
  t.match(w.stderr, `mdevfs wait: ${join(work, 'm-link')} is not ready after 0.3 s: no daemon answers on ${join(work, 'm-link')}`);
  const d = await serve(['m-link', '--log-level', 'info'], m, work);
  t.match(d.stderr(), `"dir":"${m}","fstype":`, 'mount m-link found the dead mount at m');
  t.match(d.stderr(), 'recovering a stale mount left by a dead daemon');
  t.equal(await d.stop(), 0);
  t.notOk(isMounted(m), 'nothing left mounted');
});

t.test('mount creates a missing DIR and removes it after unmounting; a DIR it found stays', async (t) => {
  const work = scratch('mdevfs-dir-');
  const made = join(work, 'made');
  const d = await serve([made], made, work);
  t.match(d.stderr(), `mdevfs: serving samples at ${made}; Ctrl-C to stop (or kill ${d.proc.pid})\n`, 'says where it serves and how to stop it');
  t.equal(await d.stop(), 0);
  t.notOk(existsSync(made), 'the directory it made is gone');

  const found = join(work, 'found');
  mkdirSync(found);
  const f = await serve([found], found, work);
  t.equal(f.stderr(), `mdevfs: serving samples at ${found}; Ctrl-C to stop (or kill ${f.proc.pid})\n`, 'no warning for an empty DIR');
  t.equal(await f.stop(), 0);
  t.ok(existsSync(found), 'the directory it found stays');
  t.same(readdirSync(work).sort(), ['found'], 'nothing else left');
});

t.test('mounting over a non-empty directory warns (naming how many entries it hides), then goes on', async (t) => {
  const work = scratch('mdevfs-dir-');
  const full = join(work, 'full');
  mkdirSync(full);
  writeFileSync(join(full, 'a'), '');
  mkdirSync(join(full, 'b'));
  const d = await serve([full, '--profile', 'nvidia-t4'], full, work);
  t.equal(d.stderr().split('\n')[0], `mdevfs: warning: ${full} is not empty: the mount hides its 2 entries until it is unmounted`, 'warned first');
  t.match(d.stderr(), `mdevfs: serving nvidia-t4 at ${full}; Ctrl-C to stop`, 'names the profile');
  t.ok(existsSync(join(full, 'bus', 'mdev')), 'mounted over them');
  t.equal(await d.stop(), 0);
  t.same(readdirSync(full).sort(), ['a', 'b'], 'its files are back, the directory kept');

  const quiet = await serve([full, '--log-level', 'silent'], full, work);
  t.equal(quiet.stderr(), '', '--log-level silent: not a word');
  t.equal(await quiet.stop(), 0);
});

t.test('--log-format: json for machines, pretty (pino-pretty) for people, pretty by default on a terminal', async (t) => {
  const exec = (format: string[]) => cli(['exec', ...backendArgs, '--log-level', 'info', ...format, '--', 'true']);
  const json = exec(['--log-format', 'json']);
  t.equal(json.status, 0);
  const lines = json.stderr.trim().split('\n');
  t.ok(lines.length > 2 && lines.every((l) => typeof JSON.parse(l).msg === 'string'), 'json: one object a line');
  t.match(exec([]).stderr, /^\{"level":30,"time":\d+,"name":"mdevfs",/, 'json when stderr is not a terminal');

  const pretty = exec(['--log-format', 'pretty']);
  t.equal(pretty.status, 0);
  t.match(pretty.stderr, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(mdevfs\): mounted\n {4}dir: "\/tmp\//m, 'pretty: pino-pretty\'s lines');
  t.notMatch(pretty.stderr, '{"level"', 'pretty: no JSON');

  // script(1) gives the command a terminal as stderr.
  const tty = spawnSync('script', ['-qec', [process.execPath, CLI, 'exec', ...backendArgs, '--log-level', 'info', '--', 'true'].join(' '), '/dev/null'], {
    encoding: 'utf8',
    timeout: 20000,
    env: cliEnv(),
  });
  t.equal(tty.status, 0, tty.stderr);
  t.match(tty.stdout, /INFO.*\(mdevfs\): .*mounted/, 'a terminal: pretty by default');
  t.notMatch(tty.stdout, '{"level"');
});
