import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { BUILTIN_PROFILES } from '../../src/drivers/profile';
import { asNobody } from '../helpers/as-user';
import { CLI, backendArgs, cliEnv, scratch } from '../helpers/daemon';
import { startMonitor } from '../helpers/udev-monitor';

// The kernel's netlink group inside `mdevfs exec --udev` (what udevd and kernel monitors hear),
// and Debian's systemd-udevd running its rules inside `mdevfs exec --udevd`: mdevctl's
// 60-mdevctl.rules starts a parent's auto-start devices when the parent registers.

const U1 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const MTTY = '/devices/virtual/mtty/mtty';
const CREATE = 'class/mdev_bus/mtty/mdev_supported_types/mtty-2/create';
/** Debian's python3 (python3-pyudev lives in its dist-packages, whatever python3 is first on PATH). */
const PY = '/usr/bin/python3';
/** How a script inside exec runs this checkout's CLI. */
const MDEVFS = `${process.execPath} ${CLI}`;

function cli(args: string[], env: Record<string, string> = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60000, env: cliEnv(env) });
}

/** Runs a bash script over /sys inside `mdevfs exec` with `flags`, stderr kept apart. */
function execSh(flags: string[], script: string, env: Record<string, string> = {}): SpawnSyncReturns<string> {
  return cli(['exec', ...backendArgs, ...flags, '--', 'bash', '-c', script], env);
}

t.test('exec --udev: each uevent on the kernel group (the kernel\'s format, from the kernel) before its udev-group copy', async (t) => {
  // One socket on both groups: the datagrams arrive in the order they were sent.
  const dir = scratch('mdevfs-kgroup-');
  const py = join(dir, 'listen.py');
  writeFileSync(
    py,
    `import socket, sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 15)
s.bind((0, 1 | 2))
print('listening', flush=True)
for line in sys.stdin:
    pass  # the script closes our stdin once its writes returned
s.setblocking(False)
while True:
    try:
        data, (pid, groups) = s.recvfrom(65536)
    except BlockingIOError:
        break
    if groups == 1:
        fields = data.decode().split('\\0')
        print('kernel pid=%d' % pid, ' '.join('SEQNUM=N' if f.startswith('SEQNUM=') and f[7:].isdigit() else f for f in fields))
    else:
        props = [f for f in data[40:].decode().split('\\0') if f.startswith('ACTION=') or f.startswith('DEVPATH=')]
        print('udev', data[:8], ' '.join(props))
`,
  );
  const script = `coproc L { ${PY} ${py}; }; read -r ready <&\${L[0]}; echo "$ready"
    echo ${U1} > /sys/${CREATE} && echo 1 > /sys/bus/mdev/devices/${U1}/remove
    exec {L[1]}>&-; cat <&\${L[0]}; wait`;
  const r = execSh(['--udev'], script);
  t.equal(r.status, 0, r.stderr);
  const dev = `${MTTY}/${U1}`;
  const vfio = `${dev}/vfio-dev/vfio0`;
  const both = (action: string, devpath: string, subsystem: string, extra: string[] = []) => [
    `kernel pid=0 ${action}@${devpath} ACTION=${action} DEVPATH=${devpath} SUBSYSTEM=${subsystem} ${[...extra, 'SEQNUM=N'].join(' ')} `,
    `udev b'libudev\\x00' ACTION=${action} DEVPATH=${devpath}`,
  ];
  t.equal(
    r.stdout,
    [
      'listening',
      ...both('add', dev, 'mdev'),
      ...both('add', '/devices/virtual/vfio/0', 'vfio', ['MAJOR=253', 'MINOR=0', 'DEVNAME=vfio/0']),
      ...both('add', vfio, 'vfio-dev'),
      ...both('bind', dev, 'mdev', ['DRIVER=mtty']),
      ...both('remove', vfio, 'vfio-dev'),
      ...both('remove', '/devices/virtual/vfio/0', 'vfio', ['MAJOR=253', 'MINOR=0', 'DEVNAME=vfio/0']),
      ...both('unbind', dev, 'mdev'),
      ...both('remove', dev, 'mdev'),
      '',
    ].join('\n'),
  );
});

t.test('exec --udev: udevadm monitor --kernel and pyudev source=kernel hear the emulation, and no uevent of the host', async (t) => {
  const dir = scratch('mdevfs-kmon-');
  const py = join(dir, 'pyudev-kernel.py');
  writeFileSync(
    py,
    `import os, pyudev
ctx = pyudev.Context()
mon = pyudev.Monitor.from_netlink(ctx, source='kernel')
mon.start()
with open('/sys/${CREATE}', 'w') as f:
    f.write('${U1}')
while True:
    d = mon.poll(timeout=0)
    if d is None:
        break
    print('heard', d.action, d.subsystem, d.sys_name, d.properties.get('DRIVER'), d.sequence_number > 0)
`,
  );
  // A second mdevfs mounted inside makes a uevent of the host's own (its FUSE connection's bdi
  // device) before the create: a kernel-group listener in a namespace the host's uevents reach
  // would hear it first.
  const script = `M=$(mktemp); udevadm monitor --kernel --subsystem-match=mdev --subsystem-match=bdi > $M & P=$!
    until grep -q 'KERNEL - the kernel uevent' $M; do sleep 0.05; done
    B=$(mktemp -d); ${MDEVFS} mount $B/mnt --control $B/sock ${backendArgs.join(' ')} & D=$!; ${MDEVFS} wait $B/mnt --control $B/sock >&2
    ${PY} ${dir}/pyudev-kernel.py
    kill $D; wait $D; rm -r $B
    echo 1 > /sys/bus/mdev/devices/${U1}/remove
    for i in $(seq 200); do grep -q '^KERNEL.* remove ' $M && break; sleep 0.05; done
    kill $P; sed -nE 's/^KERNEL\\[[0-9.]+\\] +([a-z]+) +([^ ]+) \\(([a-z]+)\\)$/\\1 \\2 \\3/p' $M`;
  // The host's own listener, to show the second mount did make a uevent (bdi) of the host's.
  const host = await startMonitor(t, ['--kernel', '--subsystem-match=bdi']);
  const r = execSh(['--udev'], script);
  await new Promise((r) => setTimeout(r, 200));
  t.match(host.heard(), / add +\/devices\/virtual\/bdi\/.* \(bdi\)/, 'the host heard a bdi device come');
  t.equal(r.status, 0, r.stderr);
  t.equal(
    r.stdout,
    [
      `heard add mdev ${U1} None True`,
      'heard add vfio 0 None True',
      'heard add vfio-dev vfio0 None True',
      `heard bind mdev ${U1} mtty True`,
      `add ${MTTY}/${U1} mdev`,
      `bind ${MTTY}/${U1} mdev`,
      `unbind ${MTTY}/${U1} mdev`,
      `remove ${MTTY}/${U1} mdev`,
      '',
    ].join('\n'),
    'pyudev, then udevadm: the emulated devices only (no bdi device of the second mount)',
  );
});

/** The mtty parent of the samples profile, as a file for `ctl add-parent`. */
function mttyParentFile(): string {
  const file = join(scratch('mdevfs-mtty-'), 'mtty.json');
  writeFileSync(file, JSON.stringify(BUILTIN_PROFILES.samples!.parents.find((p) => p.name === 'mtty')));
  return file;
}

/**
 * Debian 12's mdevctl (1.2.0-3) installs /usr/bin/mdevctl but its rule runs /usr/sbin/mdevctl,
 * which does not exist there: as on such a host, the rule then starts nothing. A copy with the
 * installed path in /run/udev/rules.d (udevd's, private to exec) overrides it, as the README says
 * (the same where the path is right).
 */
const FIX_RULE = `mkdir -p /run/udev/rules.d && sed "s#/usr/sbin/mdevctl#$(command -v mdevctl)#" /usr/lib/udev/rules.d/60-mdevctl.rules > /run/udev/rules.d/60-mdevctl.rules && udevadm control --reload`;

t.test('exec --udevd: a device defined with mdevctl define --auto starts when ctl add-parent registers its parent', async (t) => {
  // In the host's /run: CMD reaches it there (a unix socket is not reachable through an overlay).
  const sock = `/run/mdevfs-udevd-test-${process.pid}.sock`;
  const ctl = `${MDEVFS} ctl /sys --control ${sock}`;
  const script = `set -e
    ${FIX_RULE}
    ${ctl} remove-parent mtty
    mdevctl define --auto -u ${U1} -p mtty -t mtty-2
    echo "before: $(mdevctl list)"
    ${ctl} add-parent ${mttyParentFile()}
    # The device never existed before in this tree: all its events are the auto-start's.
    ${MDEVFS} events /sys --control ${sock} --since 0 --until bind:${U1} --timeout 20 | grep -c '"DEVPATH":"${MTTY}/${U1}"'
    mdevctl list
    cat /sys/bus/mdev/devices/${U1}/mdev_type/name`;
  const r = execSh(['--udevd', '--control', sock], script);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, ['before: ', '2', `${U1} mtty mtty-2 auto (defined)`, '', 'Dual port serial', ''].join('\n'),
    'not active before; its add and bind heard after add-parent; mdevctl lists it active (and defined)');
});

t.test('exec --udevd: udevd hears the kernel group and re-broadcasts each event once; nothing of it reaches the host', async (t) => {
  const snapshot = () => ({ dev: readdirSync('/dev').sort(), runUdev: spawnSync('ls', ['-laR', '/run/udev'], { encoding: 'utf8' }).stdout });
  const before = snapshot();
  // A listener on the host's own groups, for the whole run.
  const mon = await startMonitor(t, ['--kernel', '--udev', '--subsystem-match=mdev']);

  const script = `M=$(mktemp); udevadm monitor --udev --kernel --subsystem-match=mdev --subsystem-match=vfio > $M & P=$!
    until grep -q 'KERNEL - the kernel uevent' $M; do sleep 0.05; done
    echo ${U1} > /sys/${CREATE}
    udevadm settle --timeout=20
    echo "/dev/char/253:0 -> $(readlink /dev/char/253:0)"; ls /run/udev/data
    echo 1 > /sys/bus/mdev/devices/${U1}/remove
    udevadm settle --timeout=20
    echo "after the remove: $(ls /dev/char) $(ls /run/udev/data)"
    kill $P; sed -nE 's/^(KERNEL|UDEV) *\\[[0-9.]+\\] +([a-z]+) +([^ ]+) .*/\\1 \\2 \\3/p' $M | LC_ALL=C sort | uniq -c | sed -E 's/^ +//'
    stat -f -c %T /run/udev /dev; findmnt -n -o OPTIONS /proc/sys | cut -d, -f1
    sed -n 's/^ *\\([^:]*\\):.*/\\1/p' /proc/net/dev`;
  const r = execSh(['--udevd'], script);
  t.equal(r.status, 0, r.stderr);
  const dev = `${MTTY}/${U1}`;
  t.equal(
    r.stdout,
    [
      // udevd ran the rules of the group device: its /dev/char link and database entry, in
      // exec's private /dev and /run/udev, gone again with the device.
      '/dev/char/253:0 -> ../vfio/0',
      'c253:0',
      'after the remove:  ',
      `1 KERNEL add ${dev}`,
      '1 KERNEL add /devices/virtual/vfio/0',
      `1 KERNEL bind ${dev}`,
      `1 KERNEL remove ${dev}`,
      '1 KERNEL remove /devices/virtual/vfio/0',
      `1 KERNEL unbind ${dev}`,
      `1 UDEV add ${dev}`,
      '1 UDEV add /devices/virtual/vfio/0',
      `1 UDEV bind ${dev}`,
      `1 UDEV remove ${dev}`,
      '1 UDEV remove /devices/virtual/vfio/0',
      `1 UDEV unbind ${dev}`,
      'tmpfs',
      'overlayfs',
      'ro',
      'lo',
      '',
    ].join('\n'),
    'each event once on each group (udevd\'s copy only), udevd\'s database and links private',
  );
  // Both runs are over; an event sent here would have arrived (netlink delivery is synchronous).
  await new Promise((r) => setTimeout(r, 200));
  t.equal(mon.heard().split('\n').filter((l) => /^(KERNEL|UDEV) *\[/.test(l)).join('\n'), '', 'the host heard nothing');
  t.same(snapshot(), before, "the host's /dev and /run/udev are as they were");
});

t.test('exec --udevd: refused to an ordinary user (usage error), and mount does not take it', async (t) => {
  const r = asNobody([process.execPath, CLI, 'exec', '--udevd', '--', 'true']);
  t.equal(r.status, 2);
  t.match(r.stderr, '--udevd needs root');
  const m = cli(['mount', scratch('mdevfs-x-'), '--udevd']);
  t.equal(m.status, 2);
});
