import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { AbiVersion } from '../../src/core/abi';
import { SAMPLES } from '../../src/drivers/samples';
import type { JournalEntry } from '../../src/journal/journal';
import { defaultControlPath } from '../../src/control/paths';
import { ok } from '../../src/control/client';
import { CLI, type Daemon, cliEnv, startDaemon } from '../helpers/daemon';
import { checkInvariants, mountedTree } from '../helpers/invariants';

// Each action kind of a runtime fault rule (`mdevfs ctl DIR fault add ...`) through a real mount,
// on both ABIs (and both backends: MDEVFS_TEST_BACKEND): an errno at the vendor's create and
// remove, a delay, a hang until `fault release`, a write that succeeds without acting, a read's
// replaced content, and the triggers (after, every, times, probability with a seed). After each
// case, with nothing in flight, the tree's invariants hold (nothing leaked, every link and list
// consistent, available_instances as the capacity model says). One daemon per ABI, reset before
// each test (`mdevfs ctl DIR reset`), so each test starts from the profile's start and runs alone.

const ABIS: AbiVersion[] = ['6.1', '4.17'];
const MTTY = 'devices/virtual/mtty/mtty';
const TYPE = (n: 1 | 2) => `class/mdev_bus/mtty/mdev_supported_types/mtty-${n}`;
const U = (n: number) => `83b8f4f2-509f-382f-3c1e-e6bfe0fa${String(1000 + n)}`;

const daemons = new Map<AbiVersion, Promise<Daemon>>();
t.teardown(async () => {
  for (const d of daemons.values()) await (await d).stop();
});

/** The ABI's daemon (started at its first test), reset to the profile's start state. */
async function fresh(abi: AbiVersion): Promise<Daemon> {
  if (!daemons.has(abi)) daemons.set(abi, startDaemon({ abi }));
  const d = await daemons.get(abi)!;
  ctl(d, 'reset');
  return d;
}

/** `mdevfs ctl DIR ...`: its stdout; throws with its stderr unless it exits 0. */
function ctl(d: Daemon, ...args: string[]): string {
  const r = spawnSync(process.execPath, [CLI, 'ctl', d.dir, ...args], { encoding: 'utf8', env: cliEnv(), timeout: 30000 });
  if (r.status !== 0) throw new Error(`mdevfs ctl ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** Adds a rule with `fault add FLAGS`; returns the id it prints. */
function fault(d: Daemon, ...flags: string[]): string {
  const id = ctl(d, 'fault', 'add', ...flags).trim();
  if (!/^\d+$/.test(id)) throw new Error(`fault add printed ${JSON.stringify(id)}`);
  return id;
}

// Queries go over the control API in-process (src/control/client.ts): the steering verbs go through `mdevfs ctl`.
const api = <T>(d: Daemon, method: string, path: string, body?: unknown) => ok<T>(defaultControlPath(d.dir), method, path, body, 30000);

async function rule(d: Daemon, id: string): Promise<{ matched: number; fired: number; hung: number }> {
  const { rules } = await api<{ rules: { id: number | string; matched: number; fired: number; hung: number }[] }>(d, 'GET', '/v1/faults');
  const r = rules.find((x) => String(x.id) === id);
  if (!r) throw new Error(`no rule ${id}`);
  return r;
}

/** The journal's seq now (a mark): what a test does comes after it. */
const mark = async (d: Daemon): Promise<number> => (await api<{ journal: number }>(d, 'POST', '/v1/mark', {})).journal;

async function journal(d: Daemon, since: number): Promise<JournalEntry[]> {
  const { entries } = await api<{ entries: JournalEntry[] }>(d, 'GET', `/v1/journal?since=${since}`);
  return entries.filter((e) => e.kind !== 'mark');
}

/** The entries are as many as the patterns, each matching its own (t.match alone allows more). */
function entriesMatch(t: Test, entries: JournalEntry[], patterns: object[], msg: string): void {
  t.equal(entries.length, patterns.length, `${msg}: ${patterns.length} entries`);
  t.match(entries, patterns, msg);
}

// Each pair of arguments PATH DATA (PATH relative to the mount): one write(2) of DATA, as a C writer
// stores to sysfs; prints ok or the errno's name, a line each. -S: no site import, a faster start.
const WRITER = String.raw`
import errno, os, sys
args = sys.argv[1:]
for path, data in zip(args[0::2], args[1::2]):
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            n = os.write(fd, data.encode())
        finally:
            os.close(fd)
        print('ok' if n == len(data) else 'short %d' % n, flush=True)
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)), flush=True)
`;

/** The writes, one after the other, by one writer process: each one's result. */
function writes(d: Daemon, pairs: [path: string, data: string][]): string[] {
  const r = spawnSync('python3', ['-S', '-c', WRITER, ...pairs.flat()], { cwd: d.dir, encoding: 'utf8', timeout: 30000 });
  if (r.status !== 0) throw new Error(`python3: ${r.stderr}`);
  return r.stdout.trim().split('\n');
}

const write = (d: Daemon, path: string, data: string): string => writes(d, [[path, data]])[0]!;
const create = (d: Daemon, n: 1 | 2, uuid: string) => write(d, `${TYPE(n)}/create`, `${uuid}\n`);
/** Creates of mtty-1 with U(n) for each n, by one writer. */
const creates = (d: Daemon, ns: number[]) => writes(d, ns.map((n) => [`${TYPE(1)}/create`, `${U(n)}\n`]));
const remove = (d: Daemon, uuid: string) => write(d, `bus/mdev/devices/${uuid}/remove`, '1\n');
/** A file as `cat` reads it through the mount. */
function cat(d: Daemon, path: string): string {
  const r = spawnSync('cat', [path], { cwd: d.dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cat ${path}: ${r.stderr}`);
  return r.stdout;
}

/** What a failed or refused operation must leave as it was. */
function snapshot(d: Daemon) {
  const ls = (p: string) => readdirSync(join(d.dir, p)).sort();
  return {
    devices: ls('bus/mdev/devices'),
    parentDir: ls(MTTY).filter((n) => /^[0-9a-f]{8}-/.test(n)),
    available: [1, 2].map((n) => readFileSync(join(d.dir, TYPE(n as 1 | 2), 'available_instances'), 'latin1')),
    iommuGroups: ls('kernel/iommu_groups'),
    vfio: ls('class/vfio'),
  };
}

async function deviceState(d: Daemon, uuid: string): Promise<string> {
  const { devices } = await api<{ devices: { uuid: string; state: string }[] }>(d, 'GET', '/v1/state');
  return devices.find((x) => x.uuid === uuid)?.state ?? 'gone';
}

function invariants(t: Test, d: Daemon, abi: AbiVersion, when: string): void {
  const { problems } = checkInvariants(mountedTree(d.dir), { profile: SAMPLES, abi, quiet: true });
  t.same(problems, [], `${when}: the invariants hold`);
}

type Case = (t: Test, d: Daemon, abi: AbiVersion) => Promise<void> | void;

const CASES: [string, Case][] = [
  [
    'errno on create: the write fails with it, nothing is left, the UUID is free again',
    async (t, d, abi) => {
      const before = snapshot(d);
      const id = fault(d, '--op', 'create', '--type', 'mtty-2', '--errno', 'ENOSPC', '--times', '1');
      const m = await mark(d);
      t.equal(create(d, 2, U(1)), 'ENOSPC', 'the create fails with the rule errno');
      t.notOk(existsSync(join(d.dir, MTTY, U(1))), 'no device directory');
      t.same(snapshot(d), before, 'devices, available_instances, IOMMU and VFIO groups as before');
      t.equal(await deviceState(d, U(1)), 'gone', 'the core holds nothing of it');
      const logged = (await journal(d, m)).filter((e) => e.kind === 'write');
      entriesMatch(t, logged, [{ op: 'create', errno: 'ENOSPC', fault: Number(id), available: { 'mtty-2': [12, 12] } }], 'the journal: the refused write, its rule, nothing taken');
      t.notOk(logged[0]?.added, 'the journal: no device added');
      invariants(t, d, abi, 'after the refused create');
      t.equal(create(d, 2, U(1)), 'ok', 'the same UUID creates once the rule is spent');
      t.equal(await deviceState(d, U(1)), 'active');
    },
  ],
  [
    'errno on remove: 6.1 removes all the same, 4.17 vetoes with EBUSY and keeps the device and its remove file',
    async (t, d, abi) => {
      const empty = snapshot(d);
      t.equal(create(d, 2, U(1)), 'ok');
      const created = snapshot(d);
      const id = fault(d, '--op', 'remove', '--uuid', U(1), '--errno', 'EIO');
      const m = await mark(d);
      const result = remove(d, U(1));
      const entries = await journal(d, m);
      entriesMatch(t, entries.filter((e) => e.kind === 'fault'), [{ op: 'remove', fault: Number(id), action: 'errno', errno: 'EIO', path: `/sys/${MTTY}/${U(1)}` }], 'the rule fired at the vendor remove');
      if (abi === '6.1') {
        t.equal(result, 'ok', '6.1: the vendor cannot veto; the write succeeds');
        t.same(snapshot(d), empty, '6.1: the device, its capacity and its groups are gone');
        t.equal(await deviceState(d, U(1)), 'gone');
        entriesMatch(t, entries.filter((e) => e.kind === 'write'), [{ op: 'remove', bytes: 2, removed: [U(1)], fault: Number(id) }], '6.1: the journal: the write succeeded, the device removed');
        invariants(t, d, abi, '6.1: after the remove the vendor failed');
      } else {
        t.equal(result, 'EBUSY', "4.17: the vendor's failure vetoes the remove");
        t.same(snapshot(d), created, '4.17: the device, its capacity and its groups stay');
        t.ok(existsSync(join(d.dir, MTTY, U(1), 'remove')), '4.17: the remove file is back');
        t.ok(existsSync(join(d.dir, MTTY, U(1), 'mdev_type')), '4.17: the device is whole');
        t.equal(await deviceState(d, U(1)), 'active', '4.17: the device is active again');
        entriesMatch(t, entries.filter((e) => e.kind === 'write'), [{ op: 'remove', errno: 'EBUSY', fault: Number(id) }], '4.17: the journal: the write refused with EBUSY');
        t.notOk(entries.find((e) => e.kind === 'write')?.removed, '4.17: the journal: nothing removed');
        invariants(t, d, abi, '4.17: after the vetoed remove');
        ctl(d, 'fault', 'rm', id);
        t.equal(remove(d, U(1)), 'ok', '4.17: without the rule the remove goes through');
        t.same(snapshot(d), empty);
        invariants(t, d, abi, '4.17: after the remove');
      }
    },
  ],
  [
    'delay on create: the create succeeds after it, and the journal names the rule',
    async (t, d, abi) => {
      const id = fault(d, '--op', 'create', '--type', 'mtty-2', '--delay', '150');
      const m = await mark(d);
      t.equal(create(d, 2, U(1)), 'ok');
      t.equal(await deviceState(d, U(1)), 'active', 'the device exists');
      t.ok(existsSync(join(d.dir, MTTY, U(1), 'mdev_type')));
      const entries = await journal(d, m);
      entriesMatch(t, entries.filter((e) => e.kind === 'fault'), [{ op: 'create', fault: Number(id), action: 'delay', delayMs: 150 }], 'the rule fired once, a delay');
      entriesMatch(t, entries.filter((e) => e.kind === 'write'), [{ op: 'create', bytes: 37, fault: Number(id), added: [U(1)], available: { 'mtty-2': [12, 11] } }], 'the create: succeeded, its fault named');
      t.match(await rule(d, id), { matched: 1, fired: 1, hung: 0 });
      invariants(t, d, abi, 'after the delayed create');
    },
  ],
  [
    'hang on create: the write waits, the device reserved, until fault release; then it completes',
    async (t, d, abi) => {
      const id = fault(d, '--op', 'create', '--parent', 'mtty', '--hang');
      const writer = spawn('python3', ['-S', '-c', WRITER, `${TYPE(2)}/create`, `${U(1)}\n`], { cwd: d.dir });
      let out = '';
      writer.stdout.on('data', (c) => (out += c));
      const done = new Promise<number | null>((r) => writer.on('close', r));
      ctl(d, 'wait', '--device', U(1), '--state', 'reserved', '--timeout', '20');
      t.match(await rule(d, id), { fired: 1, hung: 1 }, 'one request hangs on the rule');
      t.equal(await deviceState(d, U(1)), 'reserved', 'the create has not completed');
      t.equal(out, '', 'the write has not returned');
      t.equal(writer.exitCode, null, 'the writer still waits');
      t.equal(ctl(d, 'fault', 'release', id), '1\n', 'fault release lets one request go');
      t.equal(await done, 0);
      t.equal(out, 'ok\n', 'the create completes');
      t.equal(await deviceState(d, U(1)), 'active');
      t.match(await rule(d, id), { hung: 0 });
      invariants(t, d, abi, 'after the released create');
    },
  ],
  [
    'succeed on a create and a remove store: the write returns its byte count and nothing changes',
    async (t, d, abi) => {
      t.equal(create(d, 1, U(1)), 'ok');
      const before = snapshot(d);
      const onCreate = fault(d, '--op', 'store', '--attr', 'create', '--succeed');
      const onRemove = fault(d, '--op', 'store', '--attr', 'remove', '--uuid', U(1), '--succeed');
      const m = await mark(d);
      const results = writes(d, [[`${TYPE(2)}/create`, `${U(2)}\n`], [`bus/mdev/devices/${U(1)}/remove`, '1\n']]);
      t.same(results, ['ok', 'ok'], 'the create and the remove write report success');
      t.same(snapshot(d), before, 'no device came, none went, capacity and groups as before');
      t.equal(await deviceState(d, U(2)), 'gone');
      t.equal(await deviceState(d, U(1)), 'active');
      t.ok(existsSync(join(d.dir, MTTY, U(1), 'remove')), 'the remove file stays');
      const logged = (await journal(d, m)).filter((e) => e.kind === 'write');
      entriesMatch(t, logged, [
        { op: 'create', bytes: 37, fault: Number(onCreate) },
        { op: 'remove', bytes: 2, fault: Number(onRemove) },
      ], 'the journal: both writes succeeded, each names its rule');
      t.ok(logged.every((e) => !e.added && !e.removed), 'the journal: nothing added or removed');
      invariants(t, d, abi, 'after the writes that did nothing');
      ctl(d, 'fault', 'rm', onRemove);
      t.equal(remove(d, U(1)), 'ok');
      t.equal(await deviceState(d, U(1)), 'gone', 'without the rule the remove acts');
    },
  ],
  [
    'content on a read: the file reads as the text while the rule holds, as before after fault rm',
    async (t, d, abi) => {
      const avail = `${TYPE(2)}/available_instances`;
      t.equal(cat(d, avail), '12\n', 'read once before the rule');
      const id = fault(d, '--op', 'read', '--path', `/sys/${MTTY}/mdev_supported_types/mtty-2/available_instances`, '--content', 'forty-two\n');
      t.equal(cat(d, avail), 'forty-two\n', 'the replaced content');
      t.equal(cat(d, avail), 'forty-two\n', 'at every read');
      t.equal(cat(d, `${TYPE(1)}/available_instances`), '24\n', 'another file reads as it is');
      t.match(await rule(d, id), { matched: 2, fired: 2 });
      ctl(d, 'fault', 'rm', id);
      t.equal(cat(d, avail), '12\n', 'the real content once the rule is gone');
      invariants(t, d, abi, 'after the content rule');
    },
  ],
  ...(
    [
      ['--after', 'the first N matches pass, the later ones fail', ['ok', 'ok', 'EIO', 'EIO']],
      ['--every', 'every Nth match fails', ['ok', 'EIO', 'ok', 'EIO', 'ok']],
      ['--times', 'at most N fires, then the rule stays and matches without firing', ['EIO', 'EIO', 'ok', 'ok']],
    ] as const
  ).map(([flag, what, expected]): [string, Case] => [
    `trigger ${flag} 2: ${what}`,
    async (t, d, abi) => {
      const id = fault(d, '--op', 'create', '--type', 'mtty-1', '--errno', 'EIO', flag, '2');
      const ns = expected.map((_, i) => i + 1);
      t.same(creates(d, ns), expected, 'the creates, one after the other');
      t.match(await rule(d, id), { matched: expected.length, fired: 2 });
      t.same(snapshot(d).devices, ns.filter((n) => expected[n - 1] === 'ok').map(U), 'the devices of the creates that passed');
      invariants(t, d, abi, `after ${flag}`);
    },
  ]),
  [
    'trigger --probability P --seed S: the same sequence again after a reset',
    async (t, d, abi) => {
      const run = () => {
        fault(d, '--op', 'create', '--type', 'mtty-1', '--errno', 'EIO', '--probability', '0.5', '--seed', '42');
        return creates(d, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      };
      const first = run();
      t.ok(first.includes('ok') && first.includes('EIO'), `some creates pass, some fail: ${first.join(' ')}`);
      t.same(snapshot(d).devices, first.flatMap((r, i) => (r === 'ok' ? [U(i + 1)] : [])), 'the devices of the creates that passed');
      ctl(d, 'reset');
      t.same(snapshot(d).devices, [], 'reset removed them');
      t.same(run(), first, 'the same seed, the same sequence');
      invariants(t, d, abi, 'after the second run');
    },
  ],
];

for (const abi of ABIS) {
  for (const [name, fn] of CASES) {
    t.test(`${abi}: ${name}`, async (t) => {
      const d = await fresh(abi);
      await fn(t, d, abi);
    });
  }
}
