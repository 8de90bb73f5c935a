import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, readFileSync as read, readlinkSync, lstatSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { REQUEST_SCHEMAS, ROUTES } from '../../src/control/api';
import { FAULT_RULE_SCHEMA } from '../../src/faults/spec';
import { defaultControlPath } from '../../src/control/paths';
import { REPO, type Daemon, sh, startDaemon } from '../helpers/daemon';

// The control API (docs/control-api.md) over its unix socket, as any HTTP client speaks it:
// node's http client and curl. Each route, the errors, the documented routes against the served
// ones, and requests meant to hurt (bad JSON, unknown fields, wrong types, 10 MB, a stalled client).

const U1 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const U2 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1002';
const MTTY2 = 'class/mdev_bus/mtty/mdev_supported_types/mtty-2';

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

function http(socketPath: string, method: string, path: string, body?: string | object): Promise<Res> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const req = request({ socketPath, method, path, headers: data ? { 'Content-Length': data.length } : {} }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode!, headers: res.headers, body: parsed });
      });
    });
    req.on('error', reject);
    req.end(data);
  });
}

/** Every path below DIR with what it is (a directory, a link's target, a readable file's content). */
function listing(dir: string): Map<string, string> {
  const m = new Map<string, string>();
  const walk = (rel: string) => {
    const p = join(dir, rel);
    const st = lstatSync(p);
    if (st.isSymbolicLink()) return m.set(rel, `-> ${readlinkSync(p)}`);
    if (st.isFile()) {
      let text: string;
      try {
        text = read(p, 'latin1');
      } catch (err) {
        text = `! ${(err as NodeJS.ErrnoException).code}`;
      }
      return m.set(rel, text);
    }
    m.set(rel, '/');
    for (const n of readdirSync(p).sort()) walk(rel ? `${rel}/${n}` : n);
  };
  walk('');
  return m;
}

let d: Daemon;
let sock: string;
t.before(async () => {
  d = await startDaemon();
  sock = defaultControlPath(d.dir)!;
});
t.teardown(() => d.stop());
// Each test starts from the profile's start state.
t.beforeEach(async () => {
  const r = await http(sock, 'POST', '/v1/reset', {});
  if (r.status !== 200) throw new Error(`reset: ${JSON.stringify(r.body)}`);
});

t.test('the socket is root-only, and curl speaks to it', async (t) => {
  t.equal(lstatSync(sock).mode & 0o777, 0o600);
  t.equal(lstatSync(join(sock, '..')).mode & 0o777, 0o700);
  const r = spawnSync('curl', ['-sS', '--unix-socket', sock, 'http://x/v1/ping'], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.same(JSON.parse(r.stdout), { api: 1, pid: d.proc.pid, mountpoint: d.dir, mounted: true });
  const post = spawnSync('curl', ['-sS', '--unix-socket', sock, '-d', '{}', 'http://x/v1/mark'], { encoding: 'utf8' });
  t.match(JSON.parse(post.stdout), { seqnum: Number });
});

t.test('every documented route is served and every served route documented', async (t) => {
  const doc = JSON.parse(readFileSync(join(REPO, 'docs', 'openapi.json'), 'utf8')) as { paths: Record<string, Record<string, any>> };
  const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)).sort();
  const served = ROUTES.map((r) => `${r.method} ${r.path}`).sort();
  t.same(documented, served);
  // The request bodies the server validates are the documented ones.
  for (const [route, schema] of Object.entries(REQUEST_SCHEMAS)) {
    const [method, path] = route.split(' ');
    t.same(doc.paths[path!]![method!.toLowerCase()].requestBody.content['application/json'].schema, schema, route);
  }
  const { $id: _id, ...rule } = FAULT_RULE_SCHEMA;
  t.same((doc as any).components.schemas.FaultRule, rule, 'the fault rule, as the engine validates it');
  // And the server answers each one (not 404/405), with a body a JSON client reads.
  for (const r of ROUTES) {
    if (r.path === '/v1/events' || r.path === '/v1/wait' || r.method === 'POST' && r.path === '/v1/parents') continue;
    const res = await http(sock, r.method, r.path.replace(/\{\w+\}/, 'nosuch'), r.method === 'POST' ? {} : undefined);
    t.ok(res.status !== 405 && (res.status !== 404 || r.path.includes('{')), `${r.method} ${r.path}: ${res.status}`);
    t.type(res.body, 'object');
  }
  t.equal((await http(sock, 'GET', '/v1/nosuch')).status, 404);
  const wrong = await http(sock, 'PUT', '/v1/state');
  t.equal(wrong.status, 405);
  t.equal(wrong.headers.allow, 'GET');
});

t.test('state: parents, types with available_instances, devices with their state', async (t) => {
  const s0 = (await http(sock, 'GET', '/v1/state')).body;
  t.same(s0.parents.map((p: any) => p.name), ['mtty', 'mdpy', 'mbochs']);
  t.same(s0.devices, []);
  const mtty2 = () => s0.parents[0].types.find((x: any) => x.name === 'mtty-2');
  t.equal(mtty2().available_instances, 12);
  sh(d.dir, `echo ${U1} > ${MTTY2}/create`);
  const s1 = (await http(sock, 'GET', '/v1/state')).body;
  t.same(s1.devices, [{ uuid: U1, parent: 'mtty', type: 'mtty-2', state: 'active', path: `devices/virtual/mtty/mtty/${U1}`, iommuGroup: 0, vfio: 0 }]);
  t.equal(s1.parents[0].types.find((x: any) => x.name === 'mtty-2').available_instances, 11);
  t.same(s1.parents[0].types.find((x: any) => x.name === 'mtty-2').devices, [U1]);
  t.same(s1.iommuGroups, [{ group: 0, devices: [`devices/virtual/mtty/mtty/${U1}`] }]);
  t.ok(s1.seqnum > s0.seqnum, 'seqnum moved on');
});

t.test('parents: list, add (a parent, a profile, a built-in by name), remove; refusals', async (t) => {
  t.same((await http(sock, 'GET', '/v1/parents')).body, { parents: ['mtty', 'mdpy', 'mbochs'] });
  const gvt = await http(sock, 'POST', '/v1/parents', { builtin: 'gvt' });
  t.equal(gvt.status, 201, JSON.stringify(gvt.body));
  t.same(gvt.body.added, ['0000:00:02.0']);
  t.ok(sh(d.dir, 'ls bus/pci/devices').stdout.includes('0000:00:02.0'));
  const again = await http(sock, 'POST', '/v1/parents', { builtin: 'gvt' });
  t.equal(again.status, 409, 'a parent of that name exists');
  t.match(again.body.error, /exists/);
  t.equal((await http(sock, 'POST', '/v1/parents', { builtin: 'nosuch' })).status, 404);
  const bad = await http(sock, 'POST', '/v1/parents', { name: 'x', path: 'devices/virtual/x/x', types: [] });
  t.equal(bad.status, 400);
  t.ok(Array.isArray(bad.body.problems) && bad.body.problems.length > 0, 'the profile problems, each naming its field');
  const del = await http(sock, 'DELETE', '/v1/parents/mdpy');
  t.equal(del.status, 200);
  t.same(del.body.parents, ['mtty', 'mbochs', '0000:00:02.0']);
  const gone = await http(sock, 'DELETE', '/v1/parents/mdpy');
  t.equal(gone.status, 404);
  t.equal(gone.body.errno, 'ENODEV');
});

t.test('mark and wait: an event after the mark, a device state; 408 when not met', async (t) => {
  const mark = (await http(sock, 'POST', '/v1/mark')).body.seqnum as number;
  t.type(mark, 'number');
  // The wait is asked before the create: it answers when the event comes.
  const waiting = http(sock, 'POST', '/v1/wait', { event: `bind:${U1}`, since: mark, timeout: 10 });
  const active = http(sock, 'POST', '/v1/wait', { device: U1, state: 'active', timeout: 10 });
  sh(d.dir, `echo ${U1} > ${MTTY2}/create`);
  const w = await waiting;
  t.equal(w.status, 200);
  t.match(w.body, { met: true, event: { ACTION: 'bind', DEVPATH: `/devices/virtual/mtty/mtty/${U1}`, DRIVER: 'mtty' } });
  t.ok(w.body.seqnum > mark);
  t.match((await active).body, { met: true, device: U1, state: 'active' });
  // Already true: answered at once. Since the mark the add happened too; before it, nothing of U1.
  t.equal((await http(sock, 'POST', '/v1/wait', { event: `add:${U1}`, since: mark })).status, 200);
  const late = await http(sock, 'POST', '/v1/wait', { event: `add:${U1}`, since: w.body.seqnum, timeout: 0.3 });
  t.equal(late.status, 408);
  t.match(late.body, { met: false, error: /not met within 0.3 s/ });
  const gone = http(sock, 'POST', '/v1/wait', { device: U1.toUpperCase(), state: 'gone', timeout: 10 });
  sh(d.dir, `echo 1 > bus/mdev/devices/${U1}/remove`);
  t.match((await gone).body, { met: true, state: 'gone' });
  t.equal((await http(sock, 'POST', '/v1/wait', { device: U2, state: 'active', timeout: 0.2 })).status, 408);
});

t.test('events: the retained ones after since, then live ones, as JSON lines', async (t) => {
  sh(d.dir, `echo ${U1} > ${MTTY2}/create`);
  const mark = (await http(sock, 'POST', '/v1/mark')).body.seqnum as number;
  const lines: any[] = [];
  const req = request({ socketPath: sock, path: `/v1/events?since=${mark - 3}` });
  const got = new Promise<void>((resolve) =>
    req.on('response', (res) => {
      t.equal(res.headers['content-type'], 'application/x-ndjson');
      t.equal(res.headers['x-mdevfs-seqnum'], String(mark));
      let buf = '';
      res.on('data', (c) => {
        buf += c;
        for (let nl; (nl = buf.indexOf('\n')) >= 0; buf = buf.slice(nl + 1)) lines.push(JSON.parse(buf.slice(0, nl)));
        if (lines.some((e) => e.ACTION === 'remove' && e.DEVPATH.endsWith(U1))) resolve();
      });
    }),
  );
  req.end();
  await new Promise((r) => req.on('response', r));
  sh(d.dir, `echo 1 > bus/mdev/devices/${U1}/remove`);
  await got;
  req.destroy();
  t.same(lines.slice(0, 3).map((e) => e.ACTION), ['add', 'add', 'bind'], 'the last three retained: the create');
  const at = (e: any) => `${e.ACTION} ${e.DEVPATH.replace(`/devices/virtual/mtty/mtty/${U1}`, 'U1')}`;
  t.same(lines.slice(3).map(at), ['remove U1/vfio-dev/vfio0', 'remove /devices/virtual/vfio/0', 'unbind U1', 'remove U1'], 'then the remove, live');
  t.same(lines.map((e) => Number(e.SEQNUM)), lines.map((_, i) => mark - 2 + i));
  t.equal((await http(sock, 'GET', '/v1/events?since=-1')).status, 400);
  t.equal((await http(sock, 'GET', '/v1/events?until=x')).status, 400);
});

t.test('reset: the tree, available_instances and the parents as at start; its events', async (t) => {
  const start = listing(d.dir);
  const s0 = (await http(sock, 'GET', '/v1/state')).body;
  sh(d.dir, `echo ${U1} > ${MTTY2}/create && echo ${U2} > class/mdev_bus/mdpy/mdev_supported_types/mdpy-vga/create`);
  t.equal((await http(sock, 'POST', '/v1/parents', { builtin: 'gvt' })).status, 201);
  t.equal((await http(sock, 'DELETE', '/v1/parents/mbochs')).status, 200);
  t.not(listing(d.dir).size, start.size);
  const mark = (await http(sock, 'POST', '/v1/mark')).body.seqnum as number;
  const r = await http(sock, 'POST', '/v1/reset');
  t.equal(r.status, 200);
  const after = listing(d.dir);
  const diff = [...new Set([...start.keys(), ...after.keys()])].filter((p) => start.get(p) !== after.get(p));
  t.same(diff, [], 'every path and content as at start');
  const s1 = (await http(sock, 'GET', '/v1/state')).body;
  t.same({ ...s1, seqnum: 0 }, { ...s0, seqnum: 0 }, 'the same state');
  // What reset took away and brought back, as the kernel tells it.
  const ev = await http(sock, 'POST', '/v1/wait', { event: `remove:${U1}`, since: mark, timeout: 1 });
  t.equal(ev.status, 200, 'the device removed');
  t.equal((await http(sock, 'POST', '/v1/wait', { event: 'add:mbochs', since: mark, timeout: 1 })).status, 200, 'mbochs registered again');
  t.equal(r.body.seqnum, s1.seqnum, 'reset answers once its events are sent');
});

t.test('bad requests get an HTTP error and change nothing; the daemon answers after', async (t) => {
  const before = (await http(sock, 'GET', '/v1/state')).body;
  const cases: [string, string, string | undefined, number][] = [
    ['POST', '/v1/wait', '{"event": "add:x"', 400], // bad JSON
    ['POST', '/v1/wait', 'null', 400],
    ['POST', '/v1/wait', '[]', 400],
    ['POST', '/v1/wait', '{"event": "add:x", "bogus": 1}', 400], // unknown field
    ['POST', '/v1/wait', '{"event": 5}', 400], // wrong type
    ['POST', '/v1/wait', '{"device": "not-a-uuid", "state": "active"}', 400],
    ['POST', '/v1/wait', '{"device": "' + U1 + '"}', 400], // state missing
    ['POST', '/v1/wait', '{"event": "add:x", "timeout": -1}', 400],
    ['POST', '/v1/wait', undefined, 400], // no body
    ['POST', '/v1/mark', '{"x": 1}', 400],
    ['POST', '/v1/reset', '"now"', 400],
    ['POST', '/v1/parents', '{"builtin": 3}', 400],
    ['POST', '/v1/parents', '{}', 400],
    ['DELETE', '/v1/parents/', undefined, 404],
    ['DELETE', '/v1/parents/%zz', undefined, 400],
    ['GET', '/v1/parents/mtty', undefined, 405],
  ];
  for (const [method, path, body, status] of cases) {
    const r = await http(sock, method, path, body);
    t.equal(r.status, status, `${method} ${path} ${body}: ${JSON.stringify(r.body)}`);
    t.type(r.body.error, 'string');
  }
  // 10 MB: refused after the first MiB, without reading the rest.
  const huge = await http(sock, 'POST', '/v1/parents', '{"name": "' + 'x'.repeat(10 * 1024 * 1024) + '"}');
  t.equal(huge.status, 413);
  // A garbage request line, and headers too large.
  const raw = (text: string) =>
    new Promise<string>((resolve) => {
      const c = connect(sock);
      let out = '';
      c.on('data', (d) => (out += d));
      c.on('close', () => resolve(out));
      c.on('error', () => resolve(out));
      c.end(text);
    });
  t.match(await raw('GARBAGE\r\n\r\n'), /^HTTP\/1.1 400 /);
  t.match(await raw(`GET /v1/ping HTTP/1.1\r\nX: ${'y'.repeat(64 * 1024)}\r\n\r\n`), /^HTTP\/1.1 431 /);
  const after = (await http(sock, 'GET', '/v1/state')).body;
  t.same(after, before, 'nothing changed');
});

t.test('a client that sends half a request and stalls gets 408; others are served meanwhile', async (t) => {
  const stalled = connect(sock);
  let answer = '';
  stalled.on('data', (d) => (answer += d));
  const closed = new Promise((r) => stalled.on('close', r));
  stalled.write('POST /v1/wait HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"ev');
  const half = connect(sock);
  half.write('GET /v1/ping HTTP/1.1\r\nHo');
  let halfAnswer = '';
  const halfClosed = new Promise((r) => {
    half.on('close', r);
    half.on('data', (d) => (halfAnswer += d) && /\r\n\r\n/.test(halfAnswer) && r(undefined));
  });
  half.on('error', () => undefined);
  t.equal((await http(sock, 'GET', '/v1/ping')).status, 200, 'served while two clients stall');
  await closed;
  t.match(answer, /^HTTP\/1.1 408 /, 'the stalled body times out');
  await halfClosed;
  half.destroy();
  t.match(halfAnswer, /^HTTP\/1.1 408 /, 'the stalled headers time out');
  t.equal((await http(sock, 'GET', '/v1/ping')).status, 200, 'still answering');
  t.match(d.logs(), /control request refused/, 'the refusals are logged');
});

t.test('a kept-alive connection left idle is closed without a word (no 408 for a request it never sent)', async (t) => {
  const c = connect(sock);
  let out = '';
  c.on('data', (d) => (out += d));
  const closed = new Promise((r) => c.on('close', r));
  c.write('GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n');
  await closed; // the daemon's idle timeout ends it
  t.match(out, /^HTTP\/1.1 200 /, 'the request was answered');
  t.notMatch(out, /408/, 'and nothing else was written');
  t.equal((out.match(/HTTP\/1.1 /g) ?? []).length, 1);
});

t.test('faults: add (the next create of mtty-2 fails ENOSPC, once), list with counters, the journal says so; change, release, remove', async (t) => {
  const added = await http(sock, 'POST', '/v1/faults', { match: { op: 'create', type: 'mtty-2' }, action: { kind: 'errno', errno: 'ENOSPC' }, trigger: { times: 1 } });
  t.equal(added.status, 201, JSON.stringify(added.body));
  const id = added.body.id;
  t.match(added.body, { origin: 'api', matched: 0, fired: 0 });
  const mark = (await http(sock, 'POST', '/v1/mark', { label: 'before' })).body;
  const w = sh(d.dir, `echo ${U1} > ${MTTY2}/create; echo ${U1} > ${MTTY2}/create; echo ${U2} > class/mdev_bus/mtty/mdev_supported_types/mtty-1/create`);
  t.match(w.stderr, /^[^\n]*No space left on device\n$/, 'the first create only');
  t.same((await http(sock, 'GET', '/v1/faults')).body.rules.map((r: any) => [r.id, r.matched, r.fired]), [[id, 2, 1]]);
  const j = (await http(sock, 'GET', `/v1/journal?since=${mark.journal}`)).body;
  const writes = j.entries.filter((e: any) => e.kind === 'write');
  t.same(writes.map((e: any) => [e.op, e.errno ?? e.bytes]), [['create', 'ENOSPC'], ['create', 37], ['create', 37]]);
  t.equal(writes[0].fault, id, 'the write names the rule that fired');
  if (!process.env.MDEVFS_TEST_BACKEND) t.equal(writes[0].caller.uid, 0, "the writer's uid (the direct backend has it)");
  t.ok(j.entries.some((e: any) => e.kind === 'fault' && e.fault === id && e.errno === 'ENOSPC'), 'and the fault itself');
  // Wait for a journal entry: already there, answered at once.
  const jw = await http(sock, 'POST', '/v1/wait', { journal: { op: 'create', errno: 'ENOSPC' }, since: mark.journal, timeout: 1 });
  t.match(jw.body, { met: true, entry: { errno: 'ENOSPC', fault: id } });
  // A hang: the write waits until the rule is released.
  const changed = await http(sock, 'PUT', `/v1/faults/${id}`, { match: { op: 'remove', uuid: U1 }, action: { kind: 'hang' } });
  const mark2 = (await http(sock, 'POST', '/v1/mark')).body.journal;
  t.equal(changed.status, 200);
  const hung = new Promise<string>((resolve) => {
    const c = require('node:child_process').spawn('sh', ['-c', `echo 1 > bus/mdev/devices/${U1}/remove && echo removed`], { cwd: d.dir });
    let out = '';
    c.stdout.on('data', (x: Buffer) => (out += x));
    c.on('exit', () => resolve(out));
  });
  const fired = await http(sock, 'POST', '/v1/wait', { journal: { kind: 'fault', fault: id }, since: mark2, timeout: 10 });
  t.equal(fired.status, 200, 'the hang fired');
  t.equal((await http(sock, 'POST', `/v1/faults/${id}/release`)).body.released, 1);
  t.equal(await hung, 'removed\n', 'released: the remove completes');
  t.equal((await http(sock, 'DELETE', `/v1/faults/${id}`)).status, 200);
  t.equal((await http(sock, 'DELETE', `/v1/faults/${id}`)).status, 404);
  const bad = await http(sock, 'POST', '/v1/faults', { match: { op: 'create' }, action: { kind: 'errno', errno: 'ENOPE' } });
  t.equal(bad.status, 400);
  t.ok(bad.body.problems.length > 0);
});

t.test('reset takes the fault rules added at run time away', async (t) => {
  await http(sock, 'POST', '/v1/faults', { match: { op: 'create' }, action: { kind: 'errno', errno: 'EIO' } });
  t.equal((await http(sock, 'GET', '/v1/state')).body.faults.length, 1);
  await http(sock, 'POST', '/v1/reset');
  t.same((await http(sock, 'GET', '/v1/state')).body.faults, []);
  t.equal(sh(d.dir, `echo ${U1} > ${MTTY2}/create`).stderr, '', 'creates work again');
});
