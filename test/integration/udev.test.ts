import { type SpawnSyncReturns, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { streamLines } from '../../src/control/client';
import { defaultControlPath } from '../../src/control/paths';
import { asNobody } from '../helpers/as-user';
import { CLI, backendArgs, cliEnv, scratch, sh, startDaemon } from '../helpers/daemon';
import { startMonitor } from '../helpers/udev-monitor';

// The uevents of the tree, heard the ways real clients hear them: `mdevfs events` (JSON lines,
// the control socket), and inside `mdevfs exec --udev` Debian's udevadm and python3-pyudev
// (libudev monitors on the udev netlink group, in a private network namespace).

const U1 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const MTTY = '/devices/virtual/mtty/mtty';
const CREATE = 'class/mdev_bus/mtty/mdev_supported_types/mtty-2/create';
/** Debian's python3 (python3-pyudev lives in its dist-packages, whatever python3 is first on PATH). */
const PY = '/usr/bin/python3';

function cli(args: string[], opts: { input?: string; timeout?: number; env?: Record<string, string> } = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: opts.timeout ?? 60000, env: cliEnv(opts.env), input: opts.input });
}

/** Runs a bash script over /sys inside `mdevfs exec [--udev]`, stdout and stderr merged. */
function execSh(script: string, udev = true): SpawnSyncReturns<string> {
  return cli(['exec', ...backendArgs, ...(udev ? ['--udev'] : []), '--', 'bash', '-c', `(${script}) 2>&1`]);
}

const noSeq = (ev: Record<string, string>) => Object.entries(ev).filter(([k]) => k !== 'SEQNUM').map(([k, v]) => `${k}=${v}`).join(' ');

t.test('mdevfs events: JSON lines in the kernel order, --since replays, --until exits once seen', async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.stop());
  // The CLI in the environment users give it (sh() would bring back what cliEnv() leaves out).
  const script = `echo ${U1} > ${CREATE} && ${process.execPath} ${CLI} events . --since 0 --until bind:${U1} --timeout 10`;
  const r = spawnSync('bash', ['-c', script], { cwd: d.dir, encoding: 'utf8', env: cliEnv() });
  t.equal(r.status, 0, r.stderr);
  const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, string>);
  t.same(events, [
    { ACTION: 'add', DEVPATH: `${MTTY}/${U1}`, SUBSYSTEM: 'mdev', SEQNUM: '1' },
    { ACTION: 'add', DEVPATH: '/devices/virtual/vfio/0', SUBSYSTEM: 'vfio', MAJOR: '253', MINOR: '0', DEVNAME: 'vfio/0', SEQNUM: '2' },
    { ACTION: 'add', DEVPATH: `${MTTY}/${U1}/vfio-dev/vfio0`, SUBSYSTEM: 'vfio-dev', SEQNUM: '3' },
    { ACTION: 'bind', DEVPATH: `${MTTY}/${U1}`, SUBSYSTEM: 'mdev', DRIVER: 'mtty', SEQNUM: '4' },
  ]);
  t.same(
    Object.keys(events[3]!),
    ['ACTION', 'DEVPATH', 'SUBSYSTEM', 'DRIVER', 'SEQNUM'],
    'the variables keep the order kobject_uevent_env gives them',
  );

  // Live: subscribed first (the daemon acknowledged), then the changes.
  const live: Record<string, string>[] = [];
  let heardChange: () => void;
  const changed = new Promise<void>((r) => (heardChange = r));
  const stream = await streamLines(defaultControlPath(d.dir)!, '/v1/events', (ev) => {
    live.push(ev as Record<string, string>);
    if (ev.ACTION === 'change') heardChange();
  });
  t.equal(stream.headers['x-mdevfs-seqnum'], '4', 'the answer says what was sent so far');
  const w = sh(d.dir, `echo 1 > bus/mdev/devices/${U1}/remove; echo change > devices/virtual/mtty/mtty/uevent; echo bogus > devices/virtual/mtty/mtty/uevent`);
  t.match(w.stderr, /echo: write error: Invalid argument/, 'an unknown action is EINVAL');
  const done = cli(['events', d.dir, '--since', '4', '--until', 'change:mtty', '--timeout', '10']);
  t.equal(done.status, 0, done.stderr);
  await changed;
  stream.stop();
  await stream.closed;
  t.same(live.map(noSeq), [
    `ACTION=remove DEVPATH=${MTTY}/${U1}/vfio-dev/vfio0 SUBSYSTEM=vfio-dev`,
    'ACTION=remove DEVPATH=/devices/virtual/vfio/0 SUBSYSTEM=vfio MAJOR=253 MINOR=0 DEVNAME=vfio/0',
    `ACTION=unbind DEVPATH=${MTTY}/${U1} SUBSYSTEM=mdev`,
    `ACTION=remove DEVPATH=${MTTY}/${U1} SUBSYSTEM=mdev`,
    `ACTION=change DEVPATH=${MTTY} SUBSYSTEM=mtty SYNTH_UUID=0`,
  ]);
  t.same(live.map((e) => e.SEQNUM), ['5', '6', '7', '8', '9']);

  const late = cli(['events', d.dir, '--until', `add:${U1}`, '--timeout', '0.5']);
  t.equal(late.status, 1, 'an event that does not come: exit 1 after --timeout');
  t.match(late.stderr, `no add:${U1} event within 0.5 s`);
  t.equal(cli(['events', d.dir, '--until', 'add']).status, 2, '--until without NAME is a usage error');
});

t.test('udevadm inside mdevfs exec --udev: info, attribute walk, trigger, monitor', async (t) => {
  const monitorOut = 'MON=$(mktemp); udevadm monitor --udev --property --subsystem-match=mdev --subsystem-match=vfio-dev > $MON & M=$!';
  const waitFor = (pattern: string) => `for i in $(seq 200); do grep -q '${pattern}' $MON && break; sleep 0.05; done`;
  const script = `
    echo "SYSTEMD_DEVICE_VERIFY_SYSFS=$SYSTEMD_DEVICE_VERIFY_SYSFS"
    ${monitorOut}
    ${waitFor('UDEV - the event')}
    echo ${U1} > /sys/${CREATE}
    udevadm info /sys/bus/mdev/devices/${U1}
    udevadm info --attribute-walk /sys/bus/mdev/devices/${U1} | grep -E "looking at|KERNELS?==|SUBSYSTEMS?==|DRIVERS?==|mdev_type|mtty-2/name"
    udevadm trigger --dry-run --verbose --subsystem-match=mdev
    udevadm trigger --verbose --subsystem-match=mdev --action=change
    echo 1 > /sys/bus/mdev/devices/${U1}/remove
    ${waitFor(`^ACTION=remove`)}
    ${waitFor(`^DEVPATH=${MTTY}/${U1}$`)}
    sleep 0.2; kill $M; wait $M
    echo "--- monitor"
    sed -E -e 's/^(UDEV +)\\[[0-9.]+\\]/\\1[T]/' -e 's/^USEC_INITIALIZED=[0-9]+$/USEC_INITIALIZED=N/' $MON`;
  const r = execSh(script);
  t.equal(r.status, 0, 'exit 0');
  const [before, monitor] = r.stdout.split('--- monitor\n');
  t.equal(
    before,
    [
      'SYSTEMD_DEVICE_VERIFY_SYSFS=0',
      `P: ${MTTY}/${U1}`,
      `M: ${U1}`,
      'R: 1001',
      'U: mdev',
      'V: mtty',
      `E: DEVPATH=${MTTY}/${U1}`,
      'E: SUBSYSTEM=mdev',
      'E: DRIVER=mtty',
      '',
      `  looking at device '${MTTY}/${U1}':`,
      `    KERNEL=="${U1}"`,
      '    SUBSYSTEM=="mdev"',
      '    DRIVER=="mtty"',
      `  looking at parent device '${MTTY}':`,
      '    KERNELS=="mtty"',
      '    SUBSYSTEMS=="mtty"',
      '    DRIVERS==""',
      '    ATTRS{mdev_supported_types/mtty-2/name}=="Dual port serial"',
      `/sys${MTTY}/${U1}`,
      `/sys${MTTY}/${U1}`,
      '',
    ].join('\n'),
  );
  const block = (action: string, devpath: string, subsystem: string, extra: string[] = []) =>
    [`UDEV  [T] ${action.padEnd(8)} ${devpath} (${subsystem})`, `ACTION=${action}`, `DEVPATH=${devpath}`, `SUBSYSTEM=${subsystem}`, ...extra].join('\n');
  const dev = `${MTTY}/${U1}`;
  const vfio = `${dev}/vfio-dev/vfio0`;
  t.equal(
    monitor,
    [
      'monitor will print the received events for:\nUDEV - the event which udev sends out after rule processing\n',
      // SEQNUM 2 and 7 are the VFIO group device's add and remove (subsystem vfio, not listened to).
      block('add', dev, 'mdev', ['SEQNUM=1', 'USEC_INITIALIZED=N\n']),
      block('add', vfio, 'vfio-dev', ['SEQNUM=3', 'USEC_INITIALIZED=N\n']),
      block('bind', dev, 'mdev', ['DRIVER=mtty', 'SEQNUM=4', 'USEC_INITIALIZED=N\n']),
      block('change', dev, 'mdev', ['SYNTH_UUID=0', 'DRIVER=mtty', 'SEQNUM=5', 'USEC_INITIALIZED=N\n']),
      block('remove', vfio, 'vfio-dev', ['SEQNUM=6', 'USEC_INITIALIZED=N\n']),
      block('unbind', dev, 'mdev', ['SEQNUM=8', 'USEC_INITIALIZED=N\n']),
      block('remove', dev, 'mdev', ['SEQNUM=9', 'USEC_INITIALIZED=N\n\n']),
    ].join('\n'),
  );
});

t.test('python3-pyudev inside mdevfs exec --udev: enumerate, monitor a create and a remove, each heard by the time its write returns', async (t) => {
  const dir = scratch('mdevfs-pyudev-');
  const py = join(dir, 'pyudev-check.py');
  writeFileSync(
    py,
    `import os, pyudev
ctx = pyudev.Context()
mon = pyudev.Monitor.from_netlink(ctx, source='udev')
mon.filter_by('mdev')
mon.start()
def hear(n):
    # timeout=0: the events are queued on the monitor's socket before write(2) returns.
    for _ in range(n):
        d = mon.poll(timeout=0)
        if d is None:
            print('nothing queued yet')
            continue
        # What a listener finds in sysfs when the event arrives (the kernel may have cached lookups).
        there = os.path.exists(d.sys_path)
        kind = open(d.sys_path + '/mdev_type/name').read().strip() if there else '-'
        print('heard', d.action, d.sys_name, d.properties.get('DRIVER'), d.subsystem, d.is_initialized, there, kind)
with open('/sys/${CREATE}', 'w') as f:
    f.write('${U1}')
hear(2)
for d in ctx.list_devices(subsystem='mdev'):
    print('enumerated', d.sys_name, d.driver, d.parent.sys_name, d.parent.subsystem,
          d.attributes.asstring('mdev_type/name'), [c.sys_name for c in d.children if c != d])
with open('/sys/bus/mdev/devices/${U1}/remove', 'w') as f:
    f.write('1')
hear(2)
print('left', [d.sys_name for d in ctx.list_devices(subsystem='mdev')])
`,
  );
  const r = cli(['exec', ...backendArgs, '--udev', '--', PY, py]);
  t.equal(r.status, 0, r.stderr);
  t.equal(
    r.stdout,
    [
      `heard add ${U1} None mdev True True Dual port serial`,
      `heard bind ${U1} mtty mdev True True Dual port serial`,
      `enumerated ${U1} mtty mtty mtty Dual port serial ['vfio0']`,
      `heard unbind ${U1} None mdev True False -`,
      `heard remove ${U1} None mdev True False -`,
      'left []',
      '',
    ].join('\n'),
  );
});

t.test('nothing is sent unless asked, and never outside exec --udev\'s own network namespace', async (t) => {
  // A listener in this (the host's) network namespace, for the whole test.
  const mon = await startMonitor(t, ['--udev', '--subsystem-match=mdev']);
  const script = `echo ${U1} > /sys/${CREATE}; udevadm monitor --udev > /dev/null & sleep 0.2; echo 1 > /sys/bus/mdev/devices/${U1}/remove; kill %1`;
  t.equal(execSh(script, false).status, 0, 'exec without --udev');
  t.equal(execSh(script, true).status, 0, 'exec --udev');
  // Both runs are over; an event sent here would have arrived (netlink delivery is synchronous).
  await new Promise((r) => setTimeout(r, 200));
  t.equal(mon.heard().split('\n').filter((l) => l.startsWith('UDEV  [')).join('\n'), '', 'the host heard nothing');
});

t.test('an ordinary user: exec --udev runs in a user namespace, and its libudev listeners hear the events', async (t) => {
  const script = `M=$(mktemp); udevadm monitor --udev --subsystem-match=mdev > $M & for i in $(seq 200); do grep -q 'UDEV - the event' $M && break; sleep 0.05; done
    echo ${U1} > /sys/${CREATE}; for i in $(seq 200); do grep -q '^UDEV .* bind ' $M && break; sleep 0.05; done
    kill $!; sed -nE 's/^UDEV +\\[[0-9.]+\\] +([a-z]+) +([^ ]+) .*/\\1 \\2/p' $M; rm $M`;
  const r = asNobody([process.execPath, CLI, 'exec', ...backendArgs, '--udev', '--', 'bash', '-c', script], { timeout: 60000 });
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, [`add ${MTTY}/${U1}`, `bind ${MTTY}/${U1}`, ''].join('\n'));
});

t.test('mount --udev sends in the daemon\'s own network namespace', async (t) => {
  const mnt = join(scratch('mdevfs-mount-udev-'), 'mnt');
  // The daemon gets a network namespace of its own (unshare execs it: same pid), a listener joins it.
  const daemon = spawn('unshare', ['-n', process.execPath, CLI, 'mount', mnt, '--udev', ...backendArgs], { env: cliEnv(), stdio: 'ignore' });
  const exited = new Promise((r) => daemon.on('exit', r));
  t.teardown(async () => {
    daemon.kill('SIGTERM');
    await exited;
  });
  t.equal(cli(['wait', mnt, '--timeout', '20']).status, 0, 'mounted');
  const mon = await startMonitor(t, ['--udev', '--subsystem-match=mdev'], ['nsenter', '-t', String(daemon.pid), '-n']);
  writeFileSync(join(mnt, CREATE), U1);
  await mon.until(/ bind /);
  t.same(
    mon.heard().split('\n').filter((l) => l.startsWith('UDEV  [')).map((l) => l.replace(/^UDEV +\[[0-9.]+\] +/, '')),
    [`add      ${MTTY}/${U1} (mdev)`, `bind     ${MTTY}/${U1} (mdev)`],
  );
  t.ok(existsSync(join(mnt, 'bus', 'mdev', 'devices', U1)));
});

t.test('exec sets SYSTEMD_DEVICE_VERIFY_SYSFS=0 unless the caller set it', async (t) => {
  const show = ['exec', ...backendArgs, '--', 'sh', '-c', 'echo "$SYSTEMD_DEVICE_VERIFY_SYSFS"'];
  t.equal(cli(show).stdout, '0\n');
  t.equal(cli(show, { env: { SYSTEMD_DEVICE_VERIFY_SYSFS: '1' } }).stdout, '1\n', 'the caller\'s value wins');
  // With the check on, libudev refuses the emulated tree, which is why exec turns it off.
  const r = cli(['exec', ...backendArgs, '--', 'sh', '-c', 'udevadm info /sys/devices/virtual/mtty/mtty 2>&1; echo "rc=$?"'], {
    env: { SYSTEMD_DEVICE_VERIFY_SYSFS: '1' },
  });
  t.match(r.stdout, /rc=[1-9]/, 'udevadm fails on the tree when the check is on');
});

t.test('mount --udev without a working sender stops (exit 1) and unmounts, rather than running without events', async (t) => {
  const dir = scratch('mdevfs-nopy-');
  writeFileSync(join(dir, 'python3'), '#!/bin/sh\nexit 3\n');
  chmodSync(join(dir, 'python3'), 0o755);
  const mnt = join(dir, 'mnt');
  const r = cli(['mount', mnt, '--udev', ...backendArgs], { env: { PATH: `${dir}:${process.env.PATH}` }, timeout: 30000 });
  t.equal(r.status, 1);
  t.match(r.stderr, 'mdevfs: --udev: the udev sender (python3) ended (exit 3)');
  t.notOk(existsSync(join(mnt, 'bus')), 'nothing left mounted');
});

t.test('40 creates, then 40 removes, all at once: every device is heard in its own order', async (t) => {
  const script = `M=$(mktemp); udevadm monitor --udev --subsystem-match=mdev > $M & P=$!
    until grep -q 'UDEV - the event' $M; do sleep 0.05; done
    T=/sys/class/mdev_bus/mbochs/mdev_supported_types/mbochs-small
    pids=; for i in $(seq 10 49); do echo 00000000-0000-0000-0000-0000000000$i > $T/create & pids="$pids $!"; done; wait $pids
    pids=; for i in $(seq 10 49); do echo 1 > /sys/bus/mdev/devices/00000000-0000-0000-0000-0000000000$i/remove & pids="$pids $!"; done; wait $pids
    for i in $(seq 200); do [ "$(grep -c ' remove ' $M)" = 40 ] && break; sleep 0.05; done
    kill $P
    awk '/^UDEV  \\[/ {print $4, $3}' $M | sort -s -k1,1 | awk '{s[$1] = s[$1] $2 " "} END {for (d in s) print s[d]}' | sort | uniq -c`;
  const r = execSh(script);
  t.equal(r.status, 0);
  t.equal(r.stdout.trim(), '40 add bind unbind remove');
});
