import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import t, { type Test } from 'tap';
import { CLI, backendArgs, cliEnv, scratch } from '../helpers/daemon';

/** mdevfs mounts under `dir` in this namespace (exec mounts its tree in TMPDIR). */
const mountsUnder = (dir: string) =>
  readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => (l.split(' ')[4] ?? '').startsWith(dir + '/'));

/** An exec that hangs fails its test at this timeout (ms), not the file's. */
const HANG = { timeout: 120_000 };

/**
 * Runs `mdevfs exec -- sh -c script` with TMPDIR=tmp, asynchronously (a hang is the test's timeout);
 * onOut sees its stdout as it comes, and the process is killed if the test ends first.
 */
function exec(t: Test, tmp: string, script: string, onOut: (chunk: string) => void = () => {}) {
  const proc = spawn(process.execPath, [CLI, 'exec', ...backendArgs, '--', 'sh', '-c', script], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: cliEnv({ TMPDIR: tmp }),
  });
  t.teardown(() => void (proc.exitCode === null && proc.signalCode === null && proc.kill('SIGKILL')));
  let stdout = '';
  let stderr = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
    onOut(d);
  });
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise<{ status: number | null; stdout: string; stderr: string }>((r) =>
    proc.on('close', (status) => r({ status, stdout, stderr })),
  );
}

t.test('many execs in a row: each exits with its command\'s status, none hangs, nothing stays mounted', HANG, async (t) => {
  const tmp = scratch('mdevfs-exec-');
  const runs = 12;
  const statuses: (number | null)[] = [];
  for (let i = 0; i < runs; i++) statuses.push((await exec(t, tmp, `exit ${i % 3}`)).status);
  t.same(statuses, Array.from({ length: runs }, (_, i) => i % 3), `${runs} execs, exit statuses passed through`);
  t.same(mountsUnder(tmp), [], 'no mount left');
});

t.test('a command that leaves background children: exec still unmounts and exits', HANG, async (t) => {
  const tmp = scratch('mdevfs-exec-');
  let printed = ''; // each case prints its child's pid
  t.teardown(() => {
    for (const pid of printed.split('\n').filter(Boolean).map(Number)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  });
  // The children outlive the test: an exec that waited for them would hang it.
  const cases: Record<string, string> = {
    'a child outside /sys': 'sleep 3600 </dev/null >/dev/null 2>&1 & echo $!',
    'a child whose cwd is in /sys': '(cd /sys/class/mdev_bus && exec sleep 3600 >/dev/null 2>&1) & echo $!; sleep 0.3',
    'a child holding a file of /sys open': 'sleep 3600 </sys/bus/mdev/drivers_autoprobe >/dev/null 2>&1 & echo $!; sleep 0.3',
    'a child reading /sys in a loop': '(while cat /sys/class/mdev_bus/mtty/mdev_supported_types/mtty-1/available_instances; do :; done >/dev/null 2>&1) & echo $!; sleep 0.3',
  };
  for (const [name, script] of Object.entries(cases)) {
    const r = await exec(t, tmp, script, (out) => (printed += out));
    t.equal(r.status, 0, `${name}: exit status 0 (${r.stderr.trim() || 'no errors'})`);
    t.same(mountsUnder(tmp), [], `${name}: no mount left`);
  }
});

t.test('SIGTERM to exec: the command gets SIGTERM, exec unmounts and exits with its status', HANG, async (t) => {
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
  proc.kill('SIGTERM');
  // A command that did not get the signal would end by itself after 30 s, with status 0.
  t.equal(await exited, 128 + 15, 'the status of a command ended by SIGTERM');
  t.same(mountsUnder(tmp), [], 'no mount left');
});
