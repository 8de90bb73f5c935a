import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { CLI, cliEnv, startDaemon } from '../helpers/daemon';

// A reader that goes away (`mdevfs ... | head -1`) ends every command that prints, quietly and
// with status 0, as it ends cat: no "Unhandled 'error' event", no stack trace.

/** Runs the CLI with a stdout whose reader is already gone: every write fails with EPIPE. */
function withClosedStdout(args: readonly string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: cliEnv(), timeout: 20000 });
    p.stdout.destroy(); // closes our end of the pipe before the command writes anything
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (status) => resolve({ status, stderr }));
  });
}

t.test('a closed stdout ends every command that prints, status 0, nothing on stderr', async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.stop());
  const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
  writeFileSync(join(d.dir, 'class/mdev_bus/mtty/mdev_supported_types/mtty-1/create'), U);
  for (const args of [
    ['--help'],
    ['mount', '--help'],
    ['--version'],
    ['ctl', d.dir, 'parents'],
    ['events', d.dir, '--since', '0'],
    ['events', d.dir, '--since', '0', '--until', `add:${U}`],
    ['record', d.dir],
  ]) {
    const r = await withClosedStdout(args);
    t.equal(r.status, 0, `mdevfs ${args.join(' ')} > closed pipe: exit 0`);
    // record says what it recorded on stderr; nothing else may be there.
    t.equal(r.stderr.replace(/^mdevfs record: .*: capacity .*\n/gm, ''), '', 'no error, no stack trace');
  }
});

t.test('mdevfs events DIR | head -1 ends when the next event finds head gone', async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.stop());
  const create = join(d.dir, 'class/mdev_bus/mtty/mdev_supported_types/mtty-1/create');
  writeFileSync(create, '83b8f4f2-509f-382f-3c1e-e6bfe0fa2000');
  const pipeline = spawn('bash', ['-c', `set -o pipefail; "${process.execPath}" "${CLI}" events "${d.dir}" --since 0 | head -1`], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: cliEnv(),
  });
  let stdout = '';
  let stderr = '';
  pipeline.stdout.on('data', (c) => (stdout += c));
  pipeline.stderr.on('data', (c) => (stderr += c));
  const status = new Promise<number | null>((r) => pipeline.on('close', (code) => r(code)));
  // head exits after its line; events learns it with its next write: events come until it has ended.
  let done = false;
  void status.then(() => (done = true));
  for (let i = 1; i <= 12 && !done; i++) {
    writeFileSync(create, `83b8f4f2-509f-382f-3c1e-e6bfe0fa20${String(i).padStart(2, '0')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  t.equal(await status, 0, 'the pipeline (pipefail: events too) exits 0');
  t.match(stdout, /^\{"ACTION":"add",.*\}\n$/, 'head printed one event');
  t.equal(stderr, '', 'no error, no stack trace');
});

t.test('ctl parents | head -0 and --help | head -1 in a shell', async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.stop());
  for (const cmd of [`ctl "${d.dir}" parents | head -0`, '--help | head -1', `record "${d.dir}" | head -1`]) {
    const r = spawnSync('bash', ['-c', `set -o pipefail; "${process.execPath}" "${CLI}" ${cmd}`], { encoding: 'utf8', env: cliEnv(), timeout: 20000 });
    t.same([r.status, r.stderr.replace(/^mdevfs record: .*: capacity .*\n/gm, '')], [0, ''], cmd);
  }
});
