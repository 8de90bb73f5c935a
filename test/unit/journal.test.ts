import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { MdevError, errnoName } from '../../src/base/errno';
import { Emulation } from '../../src/emulation';
import { SAMPLES } from '../../src/drivers/samples';
import { journalToFile } from '../../src/journal/file';
import { type JournalEntry } from '../../src/journal/journal';
import { silentLogger } from '../../src/base/log';
import type { Caller, Kernfs } from '../../src/sysfs/kernfs';
import { ManualClock, tick } from '../helpers/manual-clock';

// The journal of a known sequence of writes, in-process with a manual clock, compared exactly.

const U1 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const U2 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1002';
const MTTY = '/devices/virtual/mtty/mtty';
const CREATE = `${MTTY}/mdev_supported_types/mtty-2/create`;
const caller: Caller = { pid: process.pid, uid: 1000, gid: 100 };
const comm = readFileSync('/proc/self/comm', 'utf8').trim();

async function write(k: Kernfs, path: string, data: string | Buffer, who: Caller | null = caller): Promise<number | string> {
  const fh = k.open(path, 1);
  try {
    return await k.write(fh, Buffer.from(data), who ?? undefined);
  } catch (err) {
    if (err instanceof MdevError) return errnoName(err.errno);
    throw err;
  } finally {
    k.release(fh);
  }
}

async function emulation() {
  const clock = new ManualClock();
  const e = new Emulation(SAMPLES, { abi: '6.1', log: silentLogger, clock });
  await e.ready;
  return { e, k: e.kernfs, clock, j: e.journal! };
}

const wall = (ms: number) => new Date(Date.UTC(2026, 0, 1) + ms).toISOString();

t.test('a known sequence of writes, exactly', async (t) => {
  const { e, k, clock, j } = await emulation();
  const seqnums: number[] = [];
  e.uevents.subscribe((ev) => {
    seqnums.push(Number(ev.SEQNUM));
  });
  t.equal(j.mark('start'), 1);
  clock.ms = 10;
  t.equal(await write(k, CREATE, `${U1}\n`), 37);
  const rule = e.faults.add({ match: { op: 'create', type: 'mtty-2' }, action: { kind: 'errno', errno: 'ENOSPC' }, trigger: { times: 1 } });
  clock.ms = 20;
  t.equal(await write(k, CREATE, U2), 'ENOSPC');
  const slow = e.faults.add({ id: 'slow', match: { op: 'store', attr: 'remove' }, action: { kind: 'delay', ms: 1500 } });
  clock.ms = 30;
  const removing = write(k, `${MTTY}/${U1}/remove`, '1', null); // a backend that does not know the caller: null, unknown
  await tick();
  clock.ms = 1530;
  clock.releaseAll();
  t.equal(await removing, 1);
  e.faults.remove(slow.id);
  clock.ms = 1600;
  t.equal(await write(k, `${MTTY}/mdev_supported_types/mtty-1/create`, Buffer.from([0x5c, 0x09, 0x00, 0xff, ...Buffer.alloc(300, 0x41)])), 'EINVAL');
  t.same(seqnums, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'the uevents are numbered as ever');

  const writer = { pid: process.pid, uid: 1000, gid: 100, comm };
  const expected: JournalEntry[] = [
    { seq: 1, kind: 'mark', mono: 0, wall: wall(0), op: 'mark', label: 'start', uevent: 0 },
    {
      seq: 2, kind: 'write', mono: 10, wall: wall(10), op: 'create', path: `/sys${CREATE}`, caller: writer, data: `${U1}\\n`, size: 37, bytes: 37,
      durationMs: 0, added: [U1], available: { 'mtty-1': [24, 22], 'mtty-2': [12, 11] }, ueventFrom: 0, uevent: 4,
    },
    { seq: 3, kind: 'fault', mono: 20, wall: wall(20), op: 'create', path: `/sys${MTTY}/${U2}`, fault: rule.id, action: 'errno', errno: 'ENOSPC', uevent: 4 },
    {
      seq: 4, kind: 'write', mono: 20, wall: wall(20), op: 'create', path: `/sys${CREATE}`, caller: writer, data: U2, size: 36, errno: 'ENOSPC',
      durationMs: 0, fault: rule.id, available: { 'mtty-2': [11, 11] }, ueventFrom: 4, uevent: 6,
    },
    { seq: 5, kind: 'fault', mono: 30, wall: wall(30), op: 'store', path: `/sys${MTTY}/${U1}/remove`, fault: 'slow', action: 'delay', delayMs: 1500, uevent: 6 },
    {
      seq: 6, kind: 'write', mono: 1530, wall: wall(1530), op: 'remove', path: `/sys${MTTY}/${U1}/remove`, caller: null, data: '1', size: 1, bytes: 1,
      durationMs: 1500, fault: 'slow', removed: [U1], available: { 'mtty-1': [22, 24], 'mtty-2': [11, 12] }, ueventFrom: 6, uevent: 10,
    },
    {
      seq: 7, kind: 'write', mono: 1600, wall: wall(1600), op: 'create', path: `/sys${MTTY}/mdev_supported_types/mtty-1/create`, caller: writer,
      data: `\\\\\\t\\x00\\xff${'A'.repeat(252)}`, size: 304, errno: 'EINVAL', durationMs: 0, available: { 'mtty-1': [24, 24] }, ueventFrom: 10, uevent: 10,
    },
  ];
  t.same(j.since(0), expected);
  t.strictSame(
    j.since(0).map((x) => Object.keys(x)),
    expected.map((x) => Object.keys(x)),
    'the fields in this order (a JSON line reads seq, kind, times, op, path, ...)',
  );
  t.same(j.since(5).map((x) => x.seq), [6, 7], 'since(seq): the entries after it');
  t.equal(j.lastSeq, 7);
});

t.test('the ring keeps the newest entries, counts the dropped; subscribe, clear, mark', async (t) => {
  const { e } = await emulation();
  const { Journal } = await import('../../src/journal/journal');
  const j = new Journal(e.core, undefined, { capacity: 3, now: () => 0, wallNow: () => 0 });
  const heard: number[] = [];
  const unsubscribe = j.subscribe((x) => heard.push(x.seq));
  for (let i = 1; i <= 5; i++) j.mark(`m${i}`);
  t.same(j.since(0).map((x) => x.label), ['m3', 'm4', 'm5']);
  t.equal(j.dropped, 2);
  t.same(j.since(3).map((x) => x.seq), [4, 5]);
  unsubscribe();
  j.mark();
  t.same(heard, [1, 2, 3, 4, 5], 'unsubscribed: the 6th not heard');
  j.clear();
  t.same(j.since(0), []);
  t.equal(j.dropped, 0);
  t.equal(j.mark(), 7, 'seq goes on after clear()');
});

t.test('writes in flight at once: each gets its own device changes', async (t) => {
  const { e, k, clock, j } = await emulation();
  e.faults.add({ match: { op: 'create' }, action: { kind: 'delay', ms: 100 } });
  const a = write(k, CREATE, U1);
  const b = write(k, `/devices/virtual/mdpy/mdpy/mdev_supported_types/mdpy-vga/create`, U2);
  await tick();
  clock.releaseAll();
  t.same(await Promise.all([a, b]), [36, 36]);
  const writes = j.since(0).filter((x) => x.kind === 'write');
  t.equal(writes.length, 2);
  for (const x of writes) t.same(x.added, [x.path!.includes('/mtty/') ? U1 : U2], `${x.path}: its own device only`);
});

t.test('--journal FILE: every entry from then on, one JSON line each', async (t) => {
  const { k, j } = await emulation();
  const dir = mkdtempSync(join(tmpdir(), 'mdevfs-journal-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'journal.jsonl');
  j.mark('before');
  const stop = journalToFile(j, file, silentLogger);
  await write(k, CREATE, U1);
  j.mark('after');
  await stop();
  const lines = readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as JournalEntry);
  t.same(lines, j.since(1), 'the entries after the file was opened, as the journal has them');
  t.throws(() => journalToFile(j, join(dir, 'no/such/dir/x'), silentLogger), /ENOENT/, 'a file that cannot be opened is an error at once');
});

t.test('a write to a file whose device went is journaled with ENODEV', async (t) => {
  const { k, j } = await emulation();
  await write(k, CREATE, U1);
  const stale = k.open(`${MTTY}/${U1}/remove`, 1);
  t.equal(await write(k, `${MTTY}/${U1}/remove`, '1'), 1);
  await t.rejects(k.write(stale, Buffer.from('1'), caller), { name: 'MdevError', errno: 19 });
  k.release(stale);
  const last = j.since(0).pop()!;
  t.same([last.op, last.path, last.errno, last.caller?.uid], ['remove', `/sys${MTTY}/${U1}/remove`, 'ENODEV', 1000]);
});

t.test('a caller the kernel gives pid 0 (outside the daemon\'s pid namespace): uid and gid, no pid, no command', async (t) => {
  const { k, j } = await emulation();
  t.equal(await write(k, CREATE, U1, { pid: 0, uid: 0, gid: 0 }), 36);
  t.same(j.since(0).pop()!.caller, { uid: 0, gid: 0 });
});
