import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { BUILTIN_PROFILES } from '../../src/drivers/profile';
import { CLI, REPO, type Daemon, backendArgs, cliEnv, scratch, sh, startDaemon } from '../helpers/daemon';

// `mdevfs ctl` over the control API: each verb as a script uses it, with its exit status and
// output; and inside `mdevfs exec`, without DIR, through the socket exec gives the command.

const U1 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const MTTY2 = 'class/mdev_bus/mtty/mdev_supported_types/mtty-2';

function cli(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: cliEnv(env), timeout: 60000 });
}

let d: Daemon;
t.before(async () => {
  d = await startDaemon();
});
t.teardown(() => d.stop());
t.beforeEach(() => {
  const r = cli(['ctl', d.dir, 'reset']);
  if (r.status !== 0) throw new Error(r.stderr);
});

t.test('state, in words and as JSON', async (t) => {
  sh(d.dir, `echo ${U1} > ${MTTY2}/create`);
  const text = cli(['ctl', d.dir, 'state']);
  t.equal(text.status, 0, text.stderr);
  t.match(text.stdout, /^parent mtty: mtty-1 \(22 available\), mtty-2 \(11 available\)$/m);
  t.match(text.stdout, new RegExp(`^device ${U1} mtty mtty-2 active$`, 'm'));
  const json = cli(['ctl', d.dir, 'state', '--json']);
  t.equal(json.status, 0);
  const s = JSON.parse(json.stdout);
  t.same(s.devices.map((x: { uuid: string; state: string }) => [x.uuid, x.state]), [[U1, 'active']]);
});

t.test('mark, then wait for an event after it and for a device state', async (t) => {
  const mark = cli(['ctl', d.dir, 'mark']);
  t.equal(mark.status, 0);
  t.match(mark.stdout, /^\d+\n$/);
  const M = mark.stdout.trim();
  // Not yet: the wait times out (exit 1) and says so.
  const early = cli(['ctl', d.dir, 'wait', '--event', `bind:${U1}`, '--since', M, '--timeout', '0.3']);
  t.equal(early.status, 1);
  t.match(early.stderr, /not met within 0.3 s/);
  sh(d.dir, `echo ${U1} > ${MTTY2}/create`);
  const met = cli(['ctl', d.dir, 'wait', '--event', `bind:${U1}`, '--since', M, '--json']);
  t.equal(met.status, 0, met.stderr);
  t.match(JSON.parse(met.stdout), { met: true, event: { ACTION: 'bind' } });
  t.equal(cli(['ctl', d.dir, 'wait', '--device', U1, '--state', 'active']).status, 0);
  // The wait for gone is asked first, and the remove answers it.
  const gone = spawnSync('sh', ['-c', `"${process.execPath}" "${CLI}" ctl "${d.dir}" wait --device ${U1} --state gone --timeout 10 & echo 1 > "${d.dir}/bus/mdev/devices/${U1}/remove"; wait $!`], {
    encoding: 'utf8',
    env: cliEnv(),
  });
  t.equal(gone.status, 0, gone.stderr);
});

t.test('parents: add a file, a built-in by name; remove; reset brings the start back', async (t) => {
  const file = join(scratch('mdevfs-ctl-'), 'gvt.json');
  writeFileSync(file, JSON.stringify(BUILTIN_PROFILES.gvt));
  t.equal(cli(['ctl', d.dir, 'add-parent', file]).status, 0);
  t.equal(cli(['ctl', d.dir, 'add-parent', 'ap']).status, 0, 'a built-in profile by name');
  t.equal(cli(['ctl', d.dir, 'remove-parent', 'mdpy']).status, 0);
  t.equal(cli(['ctl', d.dir, 'parents']).stdout, 'mtty\nmbochs\n0000:00:02.0\nmatrix\n');
  const again = cli(['ctl', d.dir, 'add-parent', 'ap']);
  t.equal(again.status, 1);
  t.match(again.stderr, /exists/);
  t.equal(cli(['ctl', d.dir, 'reset']).status, 0);
  t.equal(cli(['ctl', d.dir, 'parents']).stdout, 'mtty\nmdpy\nmbochs\n');
  t.equal(sh(d.dir, `cat ${MTTY2}/available_instances`).stdout, '12\n');
});

t.test('usage errors exit 2 and say why', async (t) => {
  const cases: [string[], RegExp][] = [
    [['ctl', d.dir, 'wait'], /wait takes --event ACTION:NAME, --device UUID --state STATE, or a journal entry's --op, --errno, --path, --fault/],
    [['ctl', d.dir, 'wait', '--event', 'bind'], /--event takes ACTION:NAME/],
    [['ctl', d.dir, 'wait', '--device', U1, '--state', 'happy'], /--state reserved\|active\|removing\|gone/],
    [['ctl', d.dir, 'wait', '--event', `bind:${U1}`, '--timeout', '0'], /--timeout must be/],
    [['ctl', d.dir, 'state', '--event', 'x:y'], /state does not take --event/],
    [['ctl', d.dir, 'frob'], /unknown verb "frob"/],
    [['ctl', d.dir, 'add-parent', './no/such.json'], /ENOENT/],
  ];
  for (const [args, why] of cases) {
    const r = cli(args);
    t.equal(r.status, 2, args.join(' '));
    t.match(r.stderr, why);
  }
});

t.test('inside mdevfs exec, ctl, wait and events find their own daemon without DIR', async (t) => {
  const script = [
    `M=$(mdevfs ctl mark)`,
    `mdevfs wait --timeout 5 || exit 11`,
    `echo ${U1} > /sys/${MTTY2}/create || exit 12`,
    `mdevfs ctl wait --event bind:${U1} --since "$M" --timeout 5 || exit 13`,
    `mdevfs events --since "$M" --until bind:${U1} --timeout 5 > /tmp/ev.$$ || exit 14`,
    `grep -c . /tmp/ev.$$; rm -f /tmp/ev.$$`,
    `mdevfs ctl parents`,
    `echo "$MDEVFS_ROOT"`,
  ].join('\n');
  const bin = scratch('mdevfs-bin-');
  writeFileSync(join(bin, 'mdevfs'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`, { mode: 0o755 });
  const r = spawnSync(process.execPath, [CLI, 'exec', ...backendArgs, '--', 'sh', '-c', script], {
    encoding: 'utf8',
    env: cliEnv({ PATH: `${bin}:${process.env.PATH}` }),
    timeout: 60000,
  });
  t.equal(r.status, 0, r.stderr);
  const [events, ...rest] = r.stdout.split('\n');
  t.ok(Number(events) >= 3, 'add, add of vfio-dev, bind at least');
  t.same(rest, ['mtty', 'mdpy', 'mbochs', '/sys', '']);
});

t.test('fault add makes the next create of mtty-2 fail with ENOSPC (and nothing else); the journal shows it', async (t) => {
  const add = cli(['ctl', d.dir, 'fault', 'add', '--op', 'create', '--type', 'mtty-2', '--errno', 'ENOSPC', '--times', '1']);
  t.equal(add.status, 0, add.stderr);
  t.match(add.stdout, /^\d+\n$/, 'prints the rule id');
  const id = Number(add.stdout);
  // The journal goes on across resets: what this test wrote is what comes after a mark.
  const mark = JSON.parse(cli(['ctl', d.dir, 'mark', '--json']).stdout) as { seqnum: number; journal: number };
  const w = sh(d.dir, [
    `echo ${U1} > ${MTTY2}/create`,
    `echo ${U1} > class/mdev_bus/mtty/mdev_supported_types/mtty-1/create`,
    `echo 1 > bus/mdev/devices/${U1}/remove`,
    `echo ${U1} > ${MTTY2}/create`,
  ].join('; '));
  t.equal(w.stderr.trim().split('\n').length, 1, w.stderr);
  t.match(w.stderr, /No space left on device/);
  const journal = cli(['ctl', d.dir, 'journal', '--json', '--since', String(mark.journal)]);
  t.equal(journal.status, 0, journal.stderr);
  const entries = journal.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const writes = entries.filter((e) => e.kind === 'write' && e.op === 'create');
  t.same(writes.map((e) => e.errno ?? 'ok'), ['ENOSPC', 'ok', 'ok'], 'only the first create failed');
  t.equal(writes[0].fault, id, "the rule's id");
  const waited = cli(['ctl', d.dir, 'wait', '--op', 'create', '--errno', 'ENOSPC', '--fault', String(id), '--since', String(mark.journal), '--json']);
  t.equal(waited.status, 0, waited.stderr);
  t.match(JSON.parse(waited.stdout), { met: true, entry: { op: 'create', errno: 'ENOSPC', fault: id } }, 'a wait for that journal entry');
  if (!process.env.MDEVFS_TEST_BACKEND) t.equal(writes[0].caller.uid, 0, "the writer's uid");
  const list = cli(['ctl', d.dir, 'fault', 'list']);
  t.match(list.stdout, new RegExp(`^${id}\\tapi\\top=create type=mtty-2\\terrno errno=ENOSPC\\ttimes=1\\tmatched=2 fired=1 hung=0\\n$`));
  const human = cli(['ctl', d.dir, 'journal', '--since', String(mark.journal)]);
  t.match(human.stdout, new RegExp(`create /sys/devices/virtual/mtty/mtty/mdev_supported_types/mtty-2/create "${U1}\\\\n" -> ENOSPC fault=${id}`));
  t.equal(cli(['ctl', d.dir, 'fault', 'rm', String(id)]).status, 0);
  const gone = cli(['ctl', d.dir, 'fault', 'rm', String(id)]);
  t.equal(gone.status, 1);
  t.match(gone.stderr, /no fault rule/);
  const bad = cli(['ctl', d.dir, 'fault', 'add', '--op', 'create', '--errno', 'ENOPE']);
  t.equal(bad.status, 2);
  t.match(bad.stderr, /fault rule refused:\n  action/);
  t.equal(cli(['ctl', d.dir, 'fault', 'add', '--op', 'create']).status, 2, 'no action: usage error');
});

t.test('fault change ID gives a rule a new spec in its place (PUT /v1/faults/{id}); bad use is a usage error', async (t) => {
  const id = cli(['ctl', d.dir, 'fault', 'add', '--op', 'create', '--type', 'mtty-2', '--errno', 'ENOSPC']).stdout.trim();
  const other = cli(['ctl', d.dir, 'fault', 'add', '--op', 'read', '--attr', 'name', '--errno', 'EIO']).stdout.trim();
  t.match(sh(d.dir, `echo ${U1} > ${MTTY2}/create`).stderr, /No space left on device/, 'the rule as added');
  const changed = cli(['ctl', d.dir, 'fault', 'change', id, '--op', 'create', '--type', 'mtty-2', '--errno', 'EBUSY', '--times', '1']);
  t.equal(changed.status, 0, changed.stderr);
  t.equal(changed.stdout, `${id}\n`, "prints the rule's id");
  const list = cli(['ctl', d.dir, 'fault', 'list']).stdout.trim().split('\n');
  t.same(list.map((l) => l.split('\t')[0]), [id, other], 'in its place in the order');
  t.equal(list[0], `${id}\tapi\top=create type=mtty-2\terrno errno=EBUSY\ttimes=1\tmatched=0 fired=0 hung=0`, 'the new spec, its counts from zero');
  const w = sh(d.dir, `echo ${U1} > ${MTTY2}/create; echo ${U1} > ${MTTY2}/create && echo created`);
  t.match(w.stderr, /Device or resource busy/, 'the new errno, once');
  t.equal(w.stdout, 'created\n', 'then the rule is spent');
  const json = cli(['ctl', d.dir, 'fault', 'change', id, '--op', 'remove', '--delay', '10', '--json']);
  t.equal(json.status, 0, json.stderr);
  t.match(JSON.parse(json.stdout), { id: Number(id), origin: 'api', spec: { match: { op: 'remove' }, action: { kind: 'delay', ms: 10 } }, matched: 0 }, '--json: the rule as listed');
  const unknown = cli(['ctl', d.dir, 'fault', 'change', '99', '--op', 'create', '--errno', 'EIO']);
  t.equal(unknown.status, 1, 'an unknown id: exit 1');
  t.equal(unknown.stderr, 'mdevfs ctl: no fault rule 99\n');
  for (const [args, msg] of [
    [['change'], /fault change takes one rule id/],
    [['change', id], /fault change needs --op/],
    [['change', id, '--op', 'create'], /fault change takes one action/],
    [['change', id, '--op', 'create', '--hang', '--id', 'x'], /not --id/],
    [['change', id, '--op', 'create', '--hang', '--event', 'add:x'], /fault change does not take --event/],
  ] as const) {
    const r = cli(['ctl', d.dir, 'fault', ...args]);
    t.equal(r.status, 2, `${args.join(' ')}: exit 2`);
    t.match(r.stderr, msg);
  }
  const refused = cli(['ctl', d.dir, 'fault', 'change', id, '--op', 'store', '--content', 'x']);
  t.equal(refused.status, 2, 'a spec the daemon refuses: exit 2');
  t.match(refused.stderr, /fault rule refused:\n  action.kind "content": applies to op "read" only/);
  t.match(cli(['ctl', d.dir, 'fault', 'list']).stdout, new RegExp(`^${id}\tapi\top=remove\tdelay ms=10`), 'a refused change changes nothing');
});

t.test('a hang holds the write until fault release; journal --follow streams the entries', async (t) => {
  const id = cli(['ctl', d.dir, 'fault', 'add', '--op', 'create', '--hang']).stdout.trim();
  const M = cli(['ctl', d.dir, 'mark']).stdout.trim();
  const follow = spawn(process.execPath, [CLI, 'ctl', d.dir, 'journal', '--follow', '--json'], { env: cliEnv() });
  let followed = '';
  follow.stdout.on('data', (x) => (followed += x));
  const writer = spawn('sh', ['-c', `echo ${U1} > ${MTTY2}/create && echo created`], { cwd: d.dir });
  let out = '';
  writer.stdout.on('data', (x) => (out += x));
  const done = new Promise((r) => writer.on('exit', r));
  const fired = cli(['ctl', d.dir, 'wait', '--device', U1, '--state', 'reserved', '--timeout', '10']);
  t.equal(fired.status, 0, 'the create hangs with the device reserved');
  t.equal(out, '', 'the write has not returned');
  t.equal(cli(['ctl', d.dir, 'fault', 'release', id]).stdout, '1\n', 'one request released');
  await done;
  t.equal(out, 'created\n');
  t.equal(cli(['ctl', d.dir, 'wait', '--event', `bind:${U1}`, '--since', M]).status, 0);
  follow.kill('SIGINT');
  await new Promise((r) => follow.on('exit', r));
  const kinds = followed.trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.kind !== 'mark').map((e) => `${e.kind} ${e.op}`);
  t.ok(kinds.includes('fault create') && kinds.includes('write create'), kinds.join(', '));
});

t.test('--journal-size 0: no journal; ctl journal, a wait for an entry and --journal FILE say so; writes work', async (t) => {
  const script = [
    `echo ${U1} > /sys/${MTTY2}/create || exit 10`,
    'mdevfs ctl journal; echo "journal: $?"',
    'mdevfs ctl wait --op create --timeout 1; echo "wait: $?"',
    'mdevfs ctl mark --json',
    'curl -s -w "%{http_code}\\n" --unix-socket "$MDEVFS_CONTROL" http://x/v1/journal',
  ].join('\n');
  const bin = scratch('mdevfs-bin-');
  writeFileSync(join(bin, 'mdevfs'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`, { mode: 0o755 });
  const r = spawnSync(process.execPath, [CLI, 'exec', ...backendArgs, '--journal-size', '0', '--', 'sh', '-c', script], {
    encoding: 'utf8',
    env: cliEnv({ PATH: `${bin}:${process.env.PATH}` }),
    timeout: 60000,
  });
  t.equal(r.status, 0, r.stderr);
  const off = 'the journal is off: the daemon runs with --journal-size 0';
  t.equal(r.stderr, `mdevfs ctl: ${off}\nmdevfs ctl: ${off}\n`, 'ctl journal and ctl wait for an entry say why');
  const [journal, wait, mark, body, status] = r.stdout.trim().split('\n');
  t.equal(journal, 'journal: 1');
  t.equal(wait, 'wait: 1');
  t.match(JSON.parse(mark!), { seqnum: Number, journal: null }, 'a mark: the SEQNUM, no journal seq');
  t.same([JSON.parse(body!), status], [{ error: off }, '409'], 'GET /v1/journal: 409, why');
  for (const [args, msg] of [
    [['--journal-size', '0', '--journal', join(bin, 'j.jsonl')], /--journal FILE needs the journal/],
    [['--journal-size', '-1'], /--journal-size must be a number of entries from 0/],
    [['--journal-size', '2e3'], /--journal-size must be/],
    [['--journal-size', '1000001'], /--journal-size must be/],
  ] as const) {
    const bad = cli(['exec', ...args, '--', 'true']);
    t.equal(bad.status, 2, `${args.join(' ')}: exit 2`);
    t.match(bad.stderr, msg);
  }
  const small = spawnSync(process.execPath, [CLI, 'exec', ...backendArgs, '--journal-size', '2', '--', 'sh', '-c',
    'for i in 1 2 3; do mdevfs ctl mark >/dev/null; done; curl -s --unix-socket "$MDEVFS_CONTROL" "http://x/v1/journal"'], {
    encoding: 'utf8',
    env: cliEnv({ PATH: `${bin}:${process.env.PATH}` }),
    timeout: 60000,
  });
  t.equal(small.status, 0, small.stderr);
  t.match(JSON.parse(small.stdout), { entries: [{ seq: 2 }, { seq: 3 }], lastSeq: 3, dropped: 1 }, '--journal-size 2: the last two entries');
});

t.test('docs/examples/manager-enospc.sh passes, run by mdevfs exec as its comment says', async (t) => {
  const bin = scratch('mdevfs-bin-');
  writeFileSync(join(bin, 'mdevfs'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`, { mode: 0o755 });
  const r = spawnSync(process.execPath, [CLI, 'exec', ...backendArgs, '--', 'sh', join(REPO, 'docs', 'examples', 'manager-enospc.sh')], {
    encoding: 'utf8',
    env: cliEnv({ PATH: `${bin}:${process.env.PATH}` }),
    timeout: 60000,
  });
  t.equal(r.stderr, 'manager: create of ' + r.stderr.slice(19, 55) + ' refused, retrying\n', 'the manager retried once');
  t.equal(r.stdout, 'ok: the manager retried the create refused with ENOSPC\n');
  t.equal(r.status, 0);
});
