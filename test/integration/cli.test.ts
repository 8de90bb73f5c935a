import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { BACKEND, CLI, REPO, backendArgs, cliEnv, isMounted, scratch, startDaemon } from '../helpers/daemon';

// Bad input is refused before anything is mounted; one daemon per DIR; scripts can wait for a
// daemon and stop it with `kill $!`.

const cli = (args: readonly string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20000, env: cliEnv(env) });

/** Runs the CLI; a bad invocation that mounted would not exit, and the timeout turns that into a failure. */
function cliAsync(args: readonly string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: cliEnv(), timeout: 20000 });
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (status) => resolve({ status, stderr }));
  });
}

const mountsAt = (dir: string) =>
  readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.split(' ')[4] === dir).length;

const exited = (p: ChildProcess) =>
  new Promise<number | null>((r) => (p.exitCode !== null ? r(p.exitCode) : p.on('exit', (code) => r(code))));

t.test('bad invocations: usage errors (exit 2) with a hint, nothing mounted', async (t) => {
  const work = scratch('mdevfs-cli-');
  const dir = join(work, 'mnt');
  const file = join(work, 'file');
  writeFileSync(file, 'not a directory\n');
  const cases: [args: string[], code: number, stderr: string][] = [
    [['mount', dir, '--profle', 'gvt'], 2, 'mdevfs: unknown option --profle (did you mean --profile?)\nTry mdevfs mount --help.\n'],
    [['mount', dir, '--bogus'], 2, 'unknown option --bogus\n'],
    [['mount', dir, '-x'], 2, 'unknown option -x\n'],
    [['mount', dir, '--bakend=direct'], 2, 'unknown option --bakend (did you mean --backend?)'],
    [['mount', dir, 'extra'], 2, 'unexpected argument "extra"; usage: mdevfs mount DIR [options]'],
    [['mount', dir, '--timeout', '3'], 2, 'mdevfs mount does not take --timeout (it takes --profile, --abi, --log-level, --log-format, --control, --backend'],
    // Errors name the option as the user typed it, aliases included, and point to the command's help.
    [['mount', dir, '-o', 'x'], 2, 'mdevfs: mdevfs mount does not take -o (it takes --profile,'],
    [['ctl', dir, 'parents', '--bogus'], 2, 'unknown option --bogus\nTry mdevfs ctl --help.\n'],
    [['record', '-o'], 2, 'mdevfs: -o needs a value\n'],
    [['record', '--output', 'a', '-o', 'b'], 2, 'mdevfs: --output (-o) given twice\n'],
    [['record', '-o', 'a', '-o', 'b'], 2, 'mdevfs: -o given twice\n'],
    [['wait', dir, '-o', 'x'], 2, 'mdevfs wait does not take -o (it takes --control, --timeout)'],
    [['record', '-V=1'], 2, 'unknown option -V=1'],
    [['help', 'mout'], 2, 'no help for "mout": not a command (did you mean mount?)'],
    [['mount', dir, '--log-format', 'xml'], 2, 'mdevfs: --log-format must be one of json, pretty\n'],
    [['mount', dir, '--', 'true'], 2, 'mdevfs mount takes nothing after --'],
    [['mount', dir, '--profile'], 2, '--profile needs a value'],
    [['mount', dir, '--profile', '--abi', '6.1'], 2, '--profile needs a value'],
    [['mount', dir, '--abi', '6.1', '--abi=4.17'], 2, '--abi given twice'],
    [['mount', dir, '--help=yes'], 2, '--help takes no value'],
    [['mount'], 2, 'missing argument; usage: mdevfs mount DIR'],
    [['mount', dir, '--abi', '5.0'], 2, 'mdevfs: --abi must be 6.1 or 4.17\n'],
    [['mount', dir, '--log-level', 'loud'], 2, '--log-level must be one of'],
    [['mount', dir, '--backend', 'kernel'], 2, '--backend must be one of'],
    [['mount', file], 2, `mdevfs: ${file} exists and is not a directory\n`],
    [['mount', join(work, 'no', 'such', 'dir')], 2, 'its parent directory is not usable (ENOENT)'],
    // These two get as far as the per-DIR lock (taken before the control socket): each has a DIR of
    // its own, as cases of one batch run at the same time and one DIR admits one daemon.
    [['mount', join(work, 'mnt-a'), '--control', join(work, 'no', 'such', 'x.sock')], 1,
      `cannot listen on the control socket ${join(work, 'no', 'such', 'x.sock')}: its directory ${join(work, 'no', 'such')} does not exist\n`],
    [['mount', join(work, 'mnt-b'), '--control', file], 1, `the control socket path ${file} exists and is not a socket`],
    [['mout', dir], 2, 'unknown command "mout" (did you mean mount?)'],
    [['frobnicate'], 2, 'unknown command "frobnicate"\n'],
    [[], 2, 'missing command'],
    [['ctl', dir], 2, `missing the verb after ${dir} (parents, add-parent`],
    [['ctl', dir, 'parents', '--profile', 'gvt'], 2, 'mdevfs ctl does not take --profile (it takes --control, --json'],
    [['ctl', dir, 'parents', 'extra'], 2, 'mdevfs ctl: parents takes no argument'],
    [['ctl', dir, 'remove-parent', 'a', 'b'], 2, 'mdevfs ctl: remove-parent takes one argument'],
    [['exec', 'true'], 2, 'unexpected argument "true"; usage: mdevfs exec [options] -- CMD'],
    [['exec', '--bogus', '--', 'true'], 2, 'unknown option --bogus'],
    [['exec', '--'], 2, 'missing command after --'],
    [['wait', dir, '--timeout', 'soon'], 2, '--timeout must be a positive number of seconds'],
    [['wait', dir, '--profile', 'gvt'], 2, 'mdevfs wait does not take --profile'],
    [['wait'], 2, 'missing DIR (outside mdevfs exec, MDEVFS_CONTROL is not set)'],
  ];
  // Refused by the parser, before any backend is chosen: checked once, in the run that names no backend.
  const parserOnly = (code: number, stderr: string) => code === 2 && !/must be|not a directory|not usable/.test(stderr);
  const run = BACKEND ? cases.filter(([, code, stderr]) => !parserOnly(code, stderr)) : cases;
  const withBackend = ([cmd, ...rest]: string[]) =>
    (cmd === 'mount' || cmd === 'exec') && !rest.includes('--backend') ? [cmd, ...backendArgs, ...rest] : [cmd!, ...rest].filter(Boolean);
  // Eight at a time: each is a node start-up, mostly waiting.
  for (let i = 0; i < run.length; i += 8) {
    const batch = run.slice(i, i + 8);
    const results = await Promise.all(batch.map(([args]) => cliAsync(withBackend(args))));
    batch.forEach(([args, code, stderr], j) => {
      const what = `mdevfs ${args.join(' ')}`;
      t.equal(results[j]!.status, code, `${what}: exit ${code}`);
      t.match(results[j]!.stderr, stderr, `${what}: says why`);
    });
    t.equal(['mnt', 'mnt-a', 'mnt-b', 'file'].reduce((n, name) => n + mountsAt(join(work, name)), 0), 0, 'nothing mounted');
  }
  t.equal(cli(['mount', dir, '--bogus', '--help']).status, 0, '--help wins');
});

t.test('--version and -V print package.json\'s version', async (t) => {
  const { version } = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };
  for (const args of [['--version'], ['-V'], ['mount', '--version']]) {
    const r = cli(args);
    t.same([r.status, r.stdout, r.stderr], [0, `${version}\n`, ''], `mdevfs ${args.join(' ')}`);
  }
});

t.test('CMD --help and help CMD print that command\'s usage, options and an example; --help the global text', async (t) => {
  const global = cli(['--help']);
  t.equal(global.status, 0);
  t.match(global.stdout, /^mdevfs: a live emulation of the Linux VFIO mediated-device \(mdev\) sysfs tree\n\nUsage:\n/);
  t.same(cli(['help']).stdout, global.stdout, 'help alone: the global text');
  const commands = ['mount', 'exec', 'ctl', 'wait', 'events', 'record'];
  for (const cmd of commands) t.match(global.stdout, `\n  mdevfs ${cmd} `, `the global text lists ${cmd}`);
  const options: Record<string, string[]> = {
    mount: ['--profile', '--abi', '--log-level', '--log-format', '--control', '--backend', '--udev'],
    exec: ['--profile', '--log-format', '--udev'],
    ctl: ['--control'],
    wait: ['--timeout', '--control'],
    events: ['--since', '--until', '--timeout', '--control'],
    record: ['-o, --output FILE'],
  };
  for (const cmd of commands) {
    const r = cli([cmd, '--help']);
    t.equal(r.status, 0, `${cmd} --help: exit 0`);
    t.match(r.stdout, new RegExp(`^Usage: mdevfs ${cmd} `), `${cmd} --help: its usage first`);
    t.not(r.stdout, global.stdout, `${cmd} --help: not the global text`);
    for (const o of options[cmd]!) t.match(r.stdout, `\n  ${o}`, `${cmd} --help: describes ${o}`);
    t.match(r.stdout, new RegExp(`\nExample:\n  .*mdevfs ${cmd} \\S`), `${cmd} --help: an example`);
    t.equal(cli(['help', cmd]).stdout, r.stdout, `help ${cmd}: the same`);
    t.equal(cli([cmd, 'x', '-h']).stdout, r.stdout, `${cmd} ... -h: the same`);
  }
  t.notMatch(cli(['ctl', '--help']).stdout, '--profile', 'a command\'s help shows only its options');
});

t.test('two daemons started at once on one DIR: exactly one mounts, the other exits 3', async (t) => {
  const dir = join(scratch('mdevfs-race-'), 'mnt');
  for (let round = 1; round <= 5; round++) {
    const procs = [0, 1].map(() =>
      spawn(process.execPath, [CLI, 'mount', dir, ...backendArgs], { stdio: ['ignore', 'ignore', 'pipe'], env: cliEnv() }),
    );
    const errs = procs.map((p) => {
      let s = '';
      p.stderr!.on('data', (d) => (s += d));
      return () => s;
    });
    const loser = await Promise.race(procs.map((p, i) => exited(p).then((code) => ({ i, code }))));
    t.equal(loser.code, 3, `round ${round}: the loser exits 3`);
    t.match(errs[loser.i]!(), `mdevfs: ${dir} is already a live mount or being mounted: another mdevfs daemon serves it\n`);
    const winner = procs[1 - loser.i]!;
    t.equal(cli(['wait', dir, '--timeout', '10']).status, 0, `round ${round}: the winner serves DIR`);
    t.equal(mountsAt(dir), 1, `round ${round}: exactly one mount`);
    winner.kill('SIGTERM');
    t.equal(await exited(winner), 0);
    t.equal(mountsAt(dir), 0);
  }
});

t.test('mdevfs wait: 0 once the daemon answers, 1 with a message when none does or the mount is dead', async (t) => {
  const none = join(scratch('mdevfs-wait-'), 'mnt');
  mkdirSync(none);
  const r = cli(['wait', none, '--timeout', '0.3']);
  t.equal(r.status, 1);
  t.match(r.stderr, `mdevfs wait: ${none} is not ready after 0.3 s: no daemon answers on`);

  const d = await startDaemon({ dir: join(scratch('mdevfs-wait-'), 'mnt') });
  t.equal(cli(['wait', d.dir]).status, 0, 'a live daemon');
  t.equal(await d.stop(), 0);
  t.equal(cli(['wait', d.dir, '--timeout', '0.3']).status, 1, 'after it stopped');

  // A daemon killed with -9 and no auto-unmount leaves a dead mount that the kernel may still
  // answer some lookups for: wait must not be fooled.
  const dead = await startDaemon({ dir: join(scratch('mdevfs-wait-'), 'mnt'), env: { MDEVFS_NO_AUTO_UNMOUNT: '1' } });
  t.teardown(() => {
    if (isMounted(dead.dir)) spawnSync('umount', ['-l', dead.dir]);
  });
  t.equal(cli(['wait', dead.dir]).status, 0);
  dead.proc.kill('SIGKILL');
  await exited(dead.proc);
  t.ok(isMounted(dead.dir), 'a dead mount is left');
  const w = cli(['wait', dead.dir, '--timeout', '0.5']);
  t.equal(w.status, 1, 'wait fails on the dead mount');
  t.match(w.stderr, 'no daemon answers on');
});

/** The README's recipe for scripts, run by bash exactly as written there, with `kill $!` at the end. */
for (const [how, start] of [
  ['scripts/mdevfs', 'scripts/mdevfs'],
  ['npx', 'npx --offline mdevfs'],
] as const) {
  t.test(`a script stops a daemon it started with ${how} in the background: kill $!`, async (t) => {
    const dir = join(scratch('mdevfs-bg-'), 'mnt');
    const script = `
      ${start} mount ${dir} ${backendArgs.join(' ')} &
      ${start} wait ${dir} || exit 10
      mount | grep -c " ${dir} "
      kill $!
      for i in $(seq 20); do grep -q " ${dir} " /proc/mounts || { echo unmounted; exit 0; }; sleep 0.1; done
      echo "still mounted 2 s after kill"; exit 11`;
    const r = spawnSync('bash', ['-c', script], { cwd: REPO, encoding: 'utf8', timeout: 30000, env: cliEnv() });
    t.equal(r.stdout, '1\nunmounted\n', r.stderr);
    t.equal(r.status, 0);
    // Nothing of it left running.
    for (let i = 0; i < 20 && spawnSync('pgrep', ['-f', `mount ${dir}`]).status === 0; i++) await new Promise((r) => setTimeout(r, 100));
    t.not(spawnSync('pgrep', ['-f', `mount ${dir}`]).status, 0, 'no daemon left');
  });
}

t.test('npx: kill $! while the daemon is still starting (its shell gone before it looked) stops it too', async (t) => {
  const dir = join(scratch('mdevfs-bg-'), 'mnt');
  // [b]in: the pattern does not match this script's own command line.
  const script = `
    npx --offline mdevfs mount ${dir} ${backendArgs.join(' ')} &
    until pgrep -f "[b]in/mdevfs mount ${dir}" >/dev/null; do sleep 0.02; done
    kill $!
    for i in $(seq 100); do pgrep -f "[b]in/mdevfs mount ${dir}" >/dev/null || { echo gone; break; }; sleep 0.1; done
    grep -c " ${dir} " /proc/mounts`;
  const r = spawnSync('bash', ['-c', script], { cwd: REPO, encoding: 'utf8', timeout: 30000, env: cliEnv() });
  t.equal(r.stdout, 'gone\n0\n', r.stderr);
});

t.test('a starting daemon removes the locks (and sockets) of killed daemons, never a held one', async (t) => {
  const ctl = scratch('mdevfs-ctl-');
  const stale = join(ctl, 'aaaaaaaaaaaaaaaa');
  const held = join(ctl, 'bbbbbbbbbbbbbbbb.lock');
  writeFileSync(`${stale}.lock`, '');
  writeFileSync(`${stale}.sock`, '');
  writeFileSync(join(ctl, 'notes.txt'), 'not a lock');
  // A live daemon's lock: flock(1) holds it for as long as it sleeps.
  const holder = spawn('flock', [held, 'sleep', '60'], { stdio: 'ignore' });
  t.teardown(() => void holder.kill());
  for (let i = 0; i < 100 && spawnSync('flock', ['--nonblock', held, 'true']).status === 0; i++) await new Promise((r) => setTimeout(r, 20));
  const d = await startDaemon({ env: { MDEVFS_CONTROL_DIR: ctl } });
  t.teardown(() => d.stop());
  const gone = () => !existsSync(`${stale}.lock`);
  for (let i = 0; i < 200 && !gone(); i++) await new Promise((r) => setTimeout(r, 25));
  t.ok(gone(), 'the stale lock is removed');
  t.notOk(existsSync(`${stale}.sock`), 'with its socket');
  t.ok(existsSync(held), 'a held lock stays');
  t.ok(existsSync(join(ctl, 'notes.txt')), 'what is not a lock stays');
  t.equal(readdirSync(ctl).filter((n) => n.endsWith('.lock') && n !== 'bbbbbbbbbbbbbbbb.lock').length, 1, "the daemon's own lock is there");
});
