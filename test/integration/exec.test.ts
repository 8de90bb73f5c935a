import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { CLI, backendArgs, cliEnv, scratch } from '../helpers/daemon';

/** mdevfs mounts under `dir` in this namespace (exec mounts its tree in TMPDIR). */
const mountsUnder = (dir: string) =>
  readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => (l.split(' ')[4] ?? '').startsWith(dir + '/'));

/** Runs `mdevfs exec -- sh -c script` with TMPDIR=tmp; a hang shows as status null after the time limit. */
function exec(tmp: string, script: string, timeout = 15000) {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [CLI, 'exec', ...backendArgs, '--', 'sh', '-c', script], {
    encoding: 'utf8',
    timeout,
    killSignal: 'SIGKILL',
    env: cliEnv({ TMPDIR: tmp }),
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0 };
}

t.test('many execs in a row: each exits with its command\'s status, none hangs, nothing stays mounted', async (t) => {
  const tmp = scratch('mdevfs-exec-');
  const runs = 12;
  const statuses: (number | null)[] = [];
  for (let i = 0; i < runs; i++) statuses.push(exec(tmp, `exit ${i % 3}`).status);
  t.same(statuses, Array.from({ length: runs }, (_, i) => i % 3), `${runs} execs, exit statuses passed through`);
  t.same(mountsUnder(tmp), [], 'no mount left');
});

t.test('a command that leaves background children: exec still unmounts and exits at once', async (t) => {
  const tmp = scratch('mdevfs-exec-');
  const pids: number[] = [];
  t.teardown(() => {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  });
  const cases: Record<string, string> = {
    'a child outside /sys': 'sleep 30 </dev/null >/dev/null 2>&1 & echo $!',
    'a child whose cwd is in /sys': '(cd /sys/class/mdev_bus && exec sleep 30 >/dev/null 2>&1) & echo $!; sleep 0.3',
    'a child holding a file of /sys open': 'sleep 30 </sys/bus/mdev/drivers_autoprobe >/dev/null 2>&1 & echo $!; sleep 0.3',
    'a child reading /sys in a loop': '(while cat /sys/class/mdev_bus/mtty/mdev_supported_types/mtty-1/available_instances; do :; done >/dev/null 2>&1) & echo $!; sleep 0.3',
  };
  for (const [name, script] of Object.entries(cases)) {
    const r = exec(tmp, script);
    pids.push(...r.stdout.split('\n').filter(Boolean).map(Number));
    t.equal(r.status, 0, `${name}: exit status 0 (${r.stderr.trim() || 'no errors'})`);
    t.ok(r.ms < 5000, `${name}: exec ended in ${r.ms} ms`);
    t.same(mountsUnder(tmp), [], `${name}: no mount left`);
  }
});

t.test('SIGTERM to exec: the command gets SIGTERM, exec unmounts and exits with its status', async (t) => {
  const tmp = scratch('mdevfs-exec-');
  const proc = spawn(process.execPath, [CLI, 'exec', ...backendArgs, '--', 'sh', '-c', 'echo ready; exec sleep 30'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: cliEnv({ TMPDIR: tmp }),
  });
  t.teardown(() => void (proc.exitCode === null && proc.kill('SIGKILL')));
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  for (let i = 0; i < 400 && !out.includes('ready'); i++) await new Promise((r) => setTimeout(r, 25));
  t.equal(out, 'ready\n');
  const t0 = Date.now();
  proc.kill('SIGTERM');
  const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('hung'), 10000).unref())]);
  t.equal(code, 128 + 15, 'the status of a command ended by SIGTERM');
  t.ok(Date.now() - t0 < 1500, `exec exited ${Date.now() - t0} ms after SIGTERM`);
  t.same(mountsUnder(tmp), [], 'no mount left');
});
