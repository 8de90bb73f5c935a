import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import t, { type Test } from 'tap';
import { ok } from '../../src/control/client';
import { defaultControlPath } from '../../src/control/paths';
import type { JournalEntry } from '../../src/journal/journal';
import { CLI, type Daemon, cliEnv, daemonPerTest, isMounted } from '../helpers/daemon';

// Read faults that hold the read (issue #18): a delay or a hang on op `read`, through a real
// mount and `cat` (both backends: MDEVFS_TEST_BACKEND). The read is answered later, with the
// file's content as it is when the rule lets it go: after the delay, or when the hang is released
// (`mdevfs ctl DIR fault release ID`, `POST /v1/faults/{id}/release` with curl, the rule's
// removal, a reset); the daemon's stop answers it with an error and leaves no mount. The daemon
// goes on serving everything else meanwhile. No timing is asserted: the journal's entry of the
// fire, the rule's counts and the reader still running while the control API answers say it.

const TYPE2 = 'class/mdev_bus/mtty/mdev_supported_types/mtty-2';
const AVAIL = `${TYPE2}/available_instances`;
const AVAIL_CANONICAL = '/sys/devices/virtual/mtty/mtty/mdev_supported_types/mtty-2/available_instances';
const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';

const d = daemonPerTest();

/** `mdevfs ctl DIR ...`: its stdout; throws with its stderr unless it exits 0. */
function ctl(dm: Daemon, ...args: string[]): string {
  const r = spawnSync(process.execPath, [CLI, 'ctl', dm.dir, ...args], { encoding: 'utf8', env: cliEnv(), timeout: 30000 });
  if (r.status !== 0) throw new Error(`mdevfs ctl ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return r.stdout;
}

const api = <T>(dm: Daemon, method: string, path: string, body?: unknown) => ok<T>(defaultControlPath(dm.dir), method, path, body, 30000);

async function rule(dm: Daemon, id: string): Promise<{ matched: number; fired: number; hung: number }> {
  const { rules } = await api<{ rules: { id: number | string; matched: number; fired: number; hung: number }[] }>(dm, 'GET', '/v1/faults');
  const r = rules.find((x) => String(x.id) === id);
  if (!r) throw new Error(`no rule ${id}`);
  return r;
}

interface Reader {
  proc: ChildProcess;
  out: () => string;
  err: () => string;
  /** Resolves with the exit code once cat has ended. */
  done: Promise<number | null>;
}

/** `cat PATH` in the background, from the mount's root. */
function reader(dm: Daemon, path: string): Reader {
  const proc = spawn('cat', [path], { cwd: dm.dir, env: { ...process.env, LC_ALL: 'C' } });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (c) => (out += c));
  proc.stderr!.on('data', (c) => (err += c));
  const done = new Promise<number | null>((r) => proc.on('close', (code) => r(code)));
  return { proc, out: () => out, err: () => err, done };
}

/** A rule on reads of mtty-2's available_instances; returns its id. */
function readRule(dm: Daemon, ...action: string[]): string {
  return ctl(dm, 'fault', 'add', '--op', 'read', '--path', AVAIL_CANONICAL, ...action).trim();
}

/** Returns once the rule fired (the journal's entry), through `mdevfs ctl DIR wait --fault ID`. */
function fired(dm: Daemon, id: string): void {
  ctl(dm, 'wait', '--fault', id, '--timeout', '20');
}

/** A create through the mount while the read waits: the daemon goes on serving. */
function create(dm: Daemon): void {
  const r = spawnSync('bash', ['-c', `echo ${U} > ${TYPE2}/create`], { cwd: dm.dir, encoding: 'utf8', timeout: 30000 });
  if (r.status !== 0) throw new Error(`create: ${r.stderr}`);
}

/** Checks that the read is held: the rule holds one request, cat has printed nothing and still runs. */
async function held(tt: Test, dm: Daemon, id: string, r: Reader, hung: number): Promise<void> {
  tt.match(await rule(dm, id), { fired: 1, hung }, hung ? 'the read hangs on the rule' : 'the rule fired');
  tt.equal(r.out(), '', 'cat has read nothing yet');
  tt.equal(r.proc.exitCode, null, 'cat still waits');
}

t.test('a read delay: the read waits while the daemon answers the rest, then reads the file as it is then; the journal has the fire', async (t) => {
  const id = readRule(d, '--delay', '5000');
  const r = reader(d, AVAIL);
  fired(d, id);
  // The control API and the mount answer while the read waits (the delay is far longer than these).
  const { devices } = await api<{ devices: unknown[] }>(d, 'GET', '/v1/state');
  t.same(devices, [], 'GET /v1/state answers while the read waits');
  await held(t, d, id, r, 0);
  t.equal(await r.done, 0, 'cat ends well');
  t.equal(r.out(), '12\n', 'with the content');
  const { entries } = await api<{ entries: JournalEntry[] }>(d, 'GET', '/v1/journal?since=0');
  const fires = entries.filter((e) => e.kind === 'fault');
  t.match(fires, [{ op: 'read', path: AVAIL_CANONICAL, fault: Number(id), action: 'delay', delayMs: 5000 }], "the journal: the rule's delay fired on the read");
  t.equal(fires.length, 1);
  t.match(await rule(d, id), { matched: 1, fired: 1, hung: 0 });
});

t.test('a read hang released by `mdevfs ctl DIR fault release ID`: cat then reads the content of that moment', async (t) => {
  const id = readRule(d, '--hang');
  const r = reader(d, AVAIL);
  fired(d, id);
  await held(t, d, id, r, 1);
  create(d);
  t.equal(ctl(d, 'fault', 'release', id), '1\n', 'one read released');
  t.equal(await r.done, 0, 'cat ends well');
  t.equal(r.out(), '11\n', 'rendered when released: after the create made while it hung');
  t.match(await rule(d, id), { hung: 0 });
});

t.test('a read hang released by POST /v1/faults/{id}/release with curl --unix-socket', async (t) => {
  const id = readRule(d, '--hang');
  const r = reader(d, AVAIL);
  fired(d, id);
  await held(t, d, id, r, 1);
  const curl = spawnSync('curl', ['-s', '-X', 'POST', '--unix-socket', defaultControlPath(d.dir), `http://x/v1/faults/${id}/release`], { encoding: 'utf8', timeout: 30000 });
  t.equal(curl.status, 0, curl.stderr);
  t.same(JSON.parse(curl.stdout), { released: 1 });
  t.equal(await r.done, 0);
  t.equal(r.out(), '12\n');
});

t.test('a read hang goes on when its rule is removed (fault rm), changed (fault change) or the daemon reset', async (t) => {
  for (const [how, end] of [
    ['fault rm', (id: string) => ctl(d, 'fault', 'rm', id)],
    ['fault change', (id: string) => ctl(d, 'fault', 'change', id, '--op', 'read', '--attr', 'name', '--errno', 'EIO')],
  ] as const) {
    const id = readRule(d, '--hang');
    const r = reader(d, AVAIL);
    fired(d, id);
    await held(t, d, id, r, 1);
    end(id);
    t.equal(await r.done, 0, `${how}: cat ends well`);
    t.equal(r.out(), '12\n', `${how}: with the content`);
    ctl(d, 'reset');
  }
  // A reset takes the file away (its parent is unregistered and registered again): the read of
  // the old file fails as a read of a stale sysfs file does, and a new read reads the new file.
  const id = readRule(d, '--hang');
  const r = reader(d, AVAIL);
  fired(d, id);
  await held(t, d, id, r, 1);
  ctl(d, 'reset');
  t.equal(await r.done, 1, 'reset: cat ends');
  t.match(r.err(), /No such device/, 'reset: ENODEV, the file it opened is gone');
  const again = reader(d, AVAIL);
  t.equal(await again.done, 0);
  t.equal(again.out(), '12\n', 'the rule went with the reset: a new read reads at once');
});

t.test('a read hang cut by the daemon stop: cat gets an error, the mount is gone, nothing hangs', async (t) => {
  const id = readRule(d, '--hang');
  const r = reader(d, AVAIL);
  fired(d, id);
  await held(t, d, id, r, 1);
  const dir = d.dir;
  t.equal(await d.stop('SIGTERM'), 0, 'the daemon stops cleanly');
  t.equal(await r.done, 1, 'cat ends, failing');
  t.match(r.err(), /No such device/, 'with ENODEV, as a write waiting for a vendor');
  t.notOk(isMounted(dir), 'no mount is left');
});
