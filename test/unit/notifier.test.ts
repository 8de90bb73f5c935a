import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { silentLogger } from '../../src/base/log';
import { CacheInvalidator } from '../../src/fuse/direct/invalidation';
import { NodeTable } from '../../src/fuse/direct/nodes';
import { Notifier } from '../../src/fuse/direct/notifier';
import { invalEntry, invalInode } from '../../src/fuse/direct/protocol';
import { Transport } from '../../src/fuse/direct/transport';
import { Kernfs } from '../../src/sysfs/kernfs';
import { dir, link, ro } from '../../src/sysfs/nodes';

// The notifier thread writes each batch in order and reports each write's errno; a thread that
// dies must not hold the writes that wait for it (each then reports ENOTCONN), and says so once.
// (The thread is unref'd: in the daemon the /dev/fuse handle keeps the process alive, here this.)
const keepAlive = setInterval(() => undefined, 1000);
t.teardown(() => clearInterval(keepAlive));

t.test('batches are written in order, each write reported', async (t) => {
  const fd = openSync('/dev/null', 'w');
  t.teardown(() => closeSync(fd));
  const n = new Notifier(fd);
  t.teardown(() => n.close());
  t.same(await n.write([invalInode(5n), invalEntry(1n, 'bus'), invalInode(7n, true)]), [null, null, null]);
  // More than one batch's worth of room: it goes in chunks, in order, all reported.
  const many = Array.from({ length: 5000 }, (_, i) => invalEntry(1n, `name-${i}`));
  const errors = await n.write(many);
  t.equal(errors.length, 5000);
  t.ok(errors.every((e) => e === null));
  t.notOk(n.busy, 'not busy once answered');
});

t.test('a failed write reports its errno', async (t) => {
  const fd = openSync('/dev/null', 'r'); // not open for writing: EBADF
  t.teardown(() => closeSync(fd));
  const n = new Notifier(fd);
  t.teardown(() => n.close());
  t.same(await n.write([invalInode(5n)]), ['EBADF']);
});

t.test('a thread that dies: what waits goes on, later batches report ENOTCONN, one report', async (t) => {
  const fd = openSync('/dev/null', 'w');
  t.teardown(() => closeSync(fd));
  let deaths = 0;
  const n = new Notifier(fd, () => deaths++);
  t.same(await n.write([invalInode(5n)]), [null]);
  await (n as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
  await new Promise((r) => setTimeout(r, 50));
  t.equal(deaths, 1, 'onDeath once');
  t.same(await n.write([invalInode(5n), invalInode(6n)]), ['ENOTCONN', 'ENOTCONN']);
  await n.close();
  t.equal(deaths, 1, 'close() after that is no second death');
});

// ---- what a change tells the kernel (CacheInvalidator) --------------------------------------

/** The notifications written to fd's file, in order: [code, id, name-or-pages]. */
function written(file: string): [string, number, string | boolean][] {
  const b = readFileSync(file);
  const out: [string, number, string | boolean][] = [];
  for (let off = 0; off < b.length; off += b.readUInt32LE(off)) {
    const code = b.readInt32LE(off + 4);
    const id = Number(b.readBigUInt64LE(off + 16));
    if (code === 2) out.push(['INVAL_INODE', id, b.readBigInt64LE(off + 24) === 0n ? 'pages' : 'attrs']);
    else out.push(['INVAL_ENTRY', id, b.toString('utf8', off + 32, off + 32 + b.readUInt32LE(off + 24))]);
  }
  return out;
}

/** A tree of one directory d, holding a link l that `present` makes exist, and an attribute a. */
function setup(t: Test) {
  const dirPath = mkdtempSync(join(tmpdir(), 'mdevfs-notify-'));
  const file = join(dirPath, 'out');
  const fd = openSync(file, 'a');
  const state = { present: true };
  const d = dir({ l: () => (state.present ? link('../x') : undefined), a: () => ro('1\n') });
  const kernfs = new Kernfs(dir({ d: () => d }), silentLogger);
  const nodes = new NodeTable();
  const conn = new Transport(fd, silentLogger, 4096, () => undefined);
  const caches = new CacheInvalidator(conn, nodes, kernfs, silentLogger);
  caches.initDone = true;
  const dNode = nodes.lookedUp(nodes.root, 'd');
  const lNode = nodes.lookedUp(dNode, 'l');
  const aNode = nodes.lookedUp(dNode, 'a');
  t.teardown(async () => {
    await caches.close();
    closeSync(fd);
    rmSync(dirPath, { recursive: true });
  });
  return { file, state, nodes, caches, dNode, lNode, aNode };
}

t.test('a removed link: its cached target is dropped before its entry, and its node detached', async (t) => {
  const { file, state, nodes, caches, dNode, lNode } = setup(t);
  lNode.target = '../x';
  state.present = false;
  await caches.invalidate({ entries: ['/d/l'], attrs: [] });
  t.same(written(file), [
    ['INVAL_INODE', Number(lNode.id), 'pages'],
    ['INVAL_ENTRY', Number(dNode.id), 'l'],
  ]);
  t.ok(lNode.detached, 'the node no longer stands for /d/l');
  t.equal(nodes.atPath('/d/l'), undefined);
  t.equal(lNode.target, undefined);
});

t.test('a name named but still there keeps its node; its cached target is dropped all the same', async (t) => {
  const { file, caches, dNode, lNode } = setup(t);
  lNode.target = '../x';
  await caches.invalidate({ entries: ['/d/l'], attrs: [] });
  t.same(written(file), [
    ['INVAL_INODE', Number(lNode.id), 'pages'],
    ['INVAL_ENTRY', Number(dNode.id), 'l'],
  ]);
  t.notOk(lNode.detached);
});

t.test('attributes are written at once, before the batch; a listing read before a change is dropped once', async (t) => {
  const { file, caches, dNode, aNode } = setup(t);
  caches.listing(dNode);
  const gen = caches.changeGen;
  const done = caches.invalidate({ entries: ['/d/l'], attrs: ['/d/a'] });
  // Synchronously, from the main thread: the listing and the attributes.
  t.same(written(file), [
    ['INVAL_INODE', Number(dNode.id), 'pages'],
    ['INVAL_INODE', Number(aNode.id), 'attrs'],
  ]);
  t.equal(caches.changeGen, gen + 1, 'a change is a new generation');
  await done;
  t.same(written(file).slice(2), [['INVAL_ENTRY', Number(dNode.id), 'l']]);
  await caches.invalidate({ entries: [], attrs: [] });
  t.equal(written(file).length, 3, 'the listing was dropped already: nothing more to say');
});

t.test('before INIT is answered nothing is written', async (t) => {
  const { file, caches } = setup(t);
  caches.initDone = false;
  await caches.invalidate({ entries: ['/d/l'], attrs: ['/d/a'] });
  t.same(written(file), []);
});

t.test('a resolved node is walked again only after a change', (t) => {
  const { state, caches, lNode } = setup(t);
  const before = caches.resolved(lNode);
  state.present = false;
  t.equal(caches.resolved(lNode), before, 'no change announced: the same Kernfs node');
  void caches.invalidate({ entries: [], attrs: [] });
  t.throws(() => caches.resolved(lNode), 'after the change it is walked again (and is gone)');
  t.end();
});
