import { closeSync, openSync } from 'node:fs';
import t from 'tap';
import { Notifier } from '../../src/fuse/direct/notifier';
import { invalEntry, invalInode } from '../../src/fuse/direct/protocol';

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
