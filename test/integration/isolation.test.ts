// runs once, on the default backend: whether a test needs the ones before it does not depend on the backend (MDEVFS_ISOLATION_ALL runs on any)
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { BACKEND, REPO, cliEnv } from '../helpers/daemon';

// Each integration test starts from a known state and can run alone. The files whose tests share a
// setup (`daemonPerTest`: one fresh daemon per test) are checked here: each file's last test, the
// one with the most tests before it, is run alone and must pass without them. The first file's goes
// through `npx tap --grep` as the README says; the others through TAP_GREP, which is what that sets,
// with node directly (tap's runner costs seconds per start). The others are checked two at a time
// (each run is a process of its own, with its own daemons). Every test of those files alone, by hand
// (slower): `MDEVFS_ISOLATION_ALL=1 npx tap --timeout=3600 test/integration/isolation.test.ts`.
const DIR = join(REPO, 'test', 'integration');
const FILES = readdirSync(DIR)
  .filter((f) => f.endsWith('.test.ts') && /\bdaemonPerTest\(/.test(readFileSync(join(DIR, f), 'utf8')))
  .sort();
const ALL = process.env.MDEVFS_ISOLATION_ALL === '1';

interface Result {
  name: string;
  ok: boolean;
  skip: boolean;
}

/** Runs a test file on its own, its top-level tests filtered by grep: with node, or with `npx tap`. */
async function runFile(file: string, grep: string, tap = false): Promise<{ code: number | null; results: Result[]; out: string }> {
  const path = join('test', 'integration', file);
  const [cmd, args] = tap ? ['npx', ['tap', '--reporter=tap', `--grep=${grep}`, path]] : [process.execPath, ['--import=tsx', path]];
  const child = spawn(cmd, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: cliEnv(tap ? {} : { TAP_GREP: grep }) });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 240000);
  const status = await new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  clearTimeout(timer);
  const r = { status, stdout, stderr };
  const results: Result[] = [];
  // The file's results are "ok N - name[ # directive]" lines, indented under the file's own by tap's
  // runner; tap escapes # and \ in names.
  const indent = tap ? ' {4}' : '';
  for (const m of r.stdout.matchAll(new RegExp(`^${indent}(not ok|ok) \\d+ - (.*?)(?: # (SKIP|TODO|time=)(.*))?$`, 'gm'))) {
    results.push({ name: m[2]!.replace(/\\([#\\])/g, '$1'), ok: m[1] === 'ok', skip: m[3] === 'SKIP' });
  }
  return { code: r.status, results, out: r.stdout + r.stderr };
}

const exactly = (name: string) => `^${name.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&')}$`;

/** Lists a file's top-level tests, then runs the last (or each) alone: exactly it runs, and passes. */
function alone(t: Test, file: string, viaTap: boolean): Promise<unknown> {
  return t.test(file, { buffered: true }, async (t) => {
    const listed = await runFile(file, '(?!)');
    t.equal(listed.code, 0, 'listing its tests (all filtered out) passes');
    const names = listed.results.map((r) => r.name);
    t.ok(names.length > 1 && listed.results.every((r) => r.skip), `${names.length} tests listed, none run`);
    for (const name of ALL ? names : names.slice(-1)) {
      const r = await runFile(file, exactly(name), viaTap && name === names.at(-1));
      t.equal(r.code, 0, `alone: ${name}`);
      t.same(r.results.filter((x) => !x.skip), [{ name, ok: true, skip: false }], 'it ran, alone, and passed', { out: r.code === 0 ? undefined : r.out });
    }
  });
}

// Whether a test needs the ones before it does not depend on the backend: one run is enough (in
// the suite; MDEVFS_ISOLATION_ALL runs on any backend).
if (BACKEND && !ALL) {
  t.plan(0, 'checked on the default backend');
} else {
  t.ok(FILES.length > 0, `files with a daemon per test: ${FILES.join(' ')}`);
  t.test('each file alone', async (t) => {
    // `npx tap` empties .tap/processinfo, where a run beside it writes (ENOTEMPTY, seen in CI): the
    // first file's run through it has none beside it; the others then run two at a time.
    await alone(t, FILES[0]!, true);
    await t.test('the others, two at a time', { jobs: 2 }, async (t) => {
      for (const file of FILES.slice(1)) void alone(t, file, false);
    });
  });
}
