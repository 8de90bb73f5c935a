import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { BACKEND, REPO, backendArgs, cliEnv, isMounted, scratch, startDaemon } from '../helpers/daemon';

// The daemon must stop by itself: fusectl (/sys/fs/fuse/connections) is unmounted for this file.
const FUSECTL = '/sys/fs/fuse/connections';
const fusectlMounted = () => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === FUSECTL);
if (fusectlMounted()) {
  spawnSync('umount', [FUSECTL]);
  t.teardown(() => void spawnSync('mount', ['-t', 'fusectl', 'fusectl', FUSECTL]));
}

const SLOW = {
  parents: [{
    name: 'slow', path: 'devices/virtual/slow/slow', class: 'slow', mdevDriver: 'slow',
    capacity: { model: 'counter', max: 4 }, faults: { createDelayMs: 3_600_000 }, types: [{ name: 't' }],
  }],
};
const TYPE = 'class/mdev_bus/slow/mdev_supported_types/slow-t';

interface Run {
  proc: ChildProcess;
  out: () => string;
  /** Resolves when the process has ended. */
  ended: Promise<void>;
}

function run(script: string, ...args: string[]): Run {
  const proc = spawn('bash', ['-c', script, 'bash', ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const ended = new Promise<void>((r) => proc.on('close', () => r()));
  return { proc, out: () => out, ended };
}

async function until(what: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !what(); i++) await new Promise((r) => setTimeout(r, 25));
}

/** A stop that hangs fails the test at this timeout (ms) instead of the file's. */
const HANG = { timeout: 60_000 };

for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  t.test(`${sig} unmounts and exits 0 with an open file, a cwd inside and a create in flight`, HANG, async (t) => {
    const d = await startDaemon({ profile: SLOW, logLevel: 'warn' });
    // A shell holding a file open and its cwd inside, which uses both once the daemon is gone.
    const holder = run(
      'exec 3<"$1/$2/available_instances" && cd "$1/class/mdev_bus" && echo ready && read -r _ && ' +
        'head -c 4 <&3 >/dev/null; echo "read $?"; ls >/dev/null; echo "ls $?"',
      d.dir, TYPE,
    );
    // A create that the vendor takes an hour to finish: the daemon must not wait for it.
    const create = run('echo 00000000-0000-0000-0000-000000000001 > "$1/$2/create"; echo "create $?"', d.dir, TYPE);
    t.teardown(() => {
      for (const p of [holder.proc, create.proc, d.proc]) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    });
    await until(() => holder.out().includes('ready'));
    t.match(holder.out(), 'ready');
    const available = () => readFileSync(join(d.dir, TYPE, 'available_instances'), 'utf8');
    await until(() => available() === '3\n');
    t.equal(available(), '3\n', 'the create is in flight: its instance is taken');
    t.equal(create.proc.exitCode, null, 'the create has not returned');

    t.equal(await d.stop(sig), 0, 'exit code 0');
    t.notOk(isMounted(d.dir), 'no mount left');
    t.notOk(fusectlMounted(), 'fusectl is not left mounted');

    await create.ended;
    t.match(create.out(), /write error: No such device\ncreate 1\n$/, 'the create in flight failed with ENODEV');

    holder.proc.stdin!.end('go\n');
    await holder.ended;
    t.match(holder.out(), /read 1\n/, 'a read of the open file fails');
    t.match(holder.out(), /ls 2\n/, 'a listing of the cwd fails');
    t.match(holder.out(), 'Transport endpoint is not connected', 'with ENOTCONN, as on a daemon that is gone');
  });
}

t.test('an uncaught exception unmounts before exiting 1', HANG, async (t) => {
  const work = scratch('mdevfs-crash-');
  const dir = join(work, 'mnt');
  // The real CLI in a process that throws from a timer once the tree is mounted.
  const script = `
    const { readFileSync } = require('node:fs');
    require(${JSON.stringify(join(REPO, 'dist', 'cli', 'main.js'))})
      .main(['mount', ${JSON.stringify(dir)}, ...${JSON.stringify(backendArgs)}]).then((code) => process.exit(code));
    const mounted = () => readFileSync('/proc/self/mountinfo', 'utf8').includes(' ' + ${JSON.stringify(dir)} + ' ');
    const timer = setInterval(() => {
      if (!mounted()) return;
      clearInterval(timer);
      setTimeout(() => { throw new Error('injected crash'); }, 200);
    }, 20);`;
  const proc = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'ignore', 'pipe'], env: cliEnv() });
  t.teardown(() => void (proc.exitCode === null && proc.kill('SIGKILL')));
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((r) => proc.on('exit', (c) => r(c)));
  t.equal(code, 1, 'exit code 1');
  t.match(stderr, /"msg":"uncaught exception"/);
  t.match(stderr, 'injected crash');
  t.notOk(isMounted(dir), 'no mount left');
});

t.test('if unmounting hangs, the process kills itself after 5 s instead of hanging, and says so', HANG, async (t) => {
  // umount and fusermount that do not return for 20 s, first on the daemon's PATH: a daemon that
  // waited for them would end by itself, not by SIGKILL.
  const bin = scratch('mdevfs-hang-');
  for (const name of ['umount', 'fusermount', 'fusermount3']) writeFileSync(join(bin, name), '#!/bin/sh\nexec sleep 20\n', { mode: 0o755 });
  const d = await startDaemon({ logLevel: 'warn', env: { PATH: `${bin}:${process.env.PATH}`, MDEVFS_NO_AUTO_UNMOUNT: '1' } });
  t.teardown(async () => {
    spawnSync('umount', ['-l', d.dir]); // the dead mount it leaves
    await d.stop();
  });
  const ended = new Promise<NodeJS.Signals | null>((r) => d.proc.on('exit', (_code, sig) => r(sig)));
  d.proc.kill('SIGTERM');
  t.equal(await ended, 'SIGKILL', 'it ended by SIGKILL');
  t.match(d.logs(), '"msg":"stopping did not finish in time: the process ends with SIGKILL"');
});

t.test('root gets the direct backend unless --backend says otherwise', async (t) => {
  const d = await startDaemon({ logLevel: 'info' });
  await until(() => d.logs().includes('"msg":"mounted"'));
  t.match(d.logs(), '"msg":"mounted"', 'it logged its mount');
  t.match(d.logs(), new RegExp(`"backend":"${BACKEND ?? 'direct'}"[^\n]*"msg":"mounted"`));
  t.equal(await d.stop(), 0);
});
