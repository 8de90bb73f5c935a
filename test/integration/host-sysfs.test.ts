import { spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, lstatSync, readFileSync, readdirSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { CLI, REPO, backendArgs, cliEnv, scratch } from '../helpers/daemon';

// --host-sysfs (issue #20): the host's own /sys around the emulation, inside `mdevfs exec` and at a
// `mdevfs mount` directory. Everything is compared with what this machine's /sys shows now (read by
// the test, outside any mdevfs), never with a fixed list. Writes go only to harmless host files, each
// with its current value, so a broken implementation would change nothing.

const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const T = '/sys/class/mdev_bus/mtty/mdev_supported_types/mtty-2';

/** mdevfs mounts under `dir` in this namespace (exec mounts its tree in TMPDIR). */
const mountsUnder = (dir: string) =>
  readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => (l.split(' ')[4] ?? '').startsWith(dir + '/'));

/** `mdevfs exec --host-sysfs [options] -- sh -c script` with TMPDIR=tmp, `bin` first on PATH (bounded: a hang fails). */
function exec(script: string, options: string[] = [], tmp = scratch('mdevfs-hostsys-'), timeout = 60000, bin?: string) {
  const r = spawnSync(process.execPath, [CLI, 'exec', ...backendArgs, '--host-sysfs', ...options, '--', 'sh', '-c', script], {
    encoding: 'utf8',
    timeout,
    killSignal: 'SIGKILL',
    env: cliEnv({ TMPDIR: tmp, LC_ALL: 'C', ...(bin ? { PATH: `${bin}:${process.env.PATH}` } : {}) }),
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, tmp };
}

/** A directory with `mdevfs` (this CLI) on it, for scripts inside exec that run `mdevfs ctl`. */
function cliBin(): string {
  const bin = scratch('mdevfs-bin-');
  writeFileSync(join(bin, 'mdevfs'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`, { mode: 0o755 });
  return bin;
}

/** A listing of the host's /sys, as ls sorts it. */
const hostLs = (path: string) => spawnSync('ls', [path], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } }).stdout;

/** The host's mounts right below /sys (cgroup, bpf, debugfs...). */
function hostSubmounts(): { target: string }[] {
  const lines = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map((l) => l.split(' '));
  const sys = lines.filter((f) => f[4] === '/sys').pop();
  if (!sys) return [];
  return lines.filter((f) => f[1] === sys[0]).map((f) => ({ target: f[4]! }));
}

/** The file system type statfs reports at path on the host (stat -f). */
const statfsType = (path: string) => spawnSync('stat', ['-f', '-c', '%T', path], { encoding: 'utf8' }).stdout.trim();

/** The CPUs the host has online, counted from /sys/devices/system/cpu/online ("0-3,5"). */
function hostCpus(): number {
  return readFileSync('/sys/devices/system/cpu/online', 'utf8')
    .trim()
    .split(',')
    .reduce((n, r) => {
      const [a, b] = r.split('-').map(Number);
      return n + (b === undefined ? 1 : b - a! + 1);
    }, 0);
}

const hostPci = existsSync('/sys/bus/pci/devices') ? readdirSync('/sys/bus/pci/devices').sort() : [];

/** A PCI address on a bus the host does not have, for an emulated GPU beside the host's functions. */
function freeBdf(): string {
  for (let bus = 0xfe; bus > 0; bus--) {
    const b = bus.toString(16).padStart(2, '0');
    if (!hostPci.some((a) => a.startsWith(`0000:${b}:`))) return `0000:${b}:00.0`;
  }
  throw new Error('no free PCI bus in domain 0000');
}

/** The built-in nvidia-t4 profile as a file, its GPU moved to `bdf`. */
function t4At(dir: string, bdf: string): string {
  const p = JSON.parse(spawnSync(process.execPath, [CLI, 'profiles', 'show', 'nvidia-t4'], { encoding: 'utf8', env: cliEnv() }).stdout);
  p.parents[0].name = bdf;
  p.parents[0].path = `devices/pci${bdf.slice(0, 7)}/${bdf}`;
  const file = join(dir, `t4-${bdf.replace(/:/g, '_')}.json`);
  writeFileSync(file, JSON.stringify(p));
  return file;
}

t.test('inside exec --host-sysfs: /sys/fs/cgroup and /sys/class/net are the host\'s, its submounts in place', async (t) => {
  const subs = hostSubmounts();
  const script = [
    'echo "== cgroup"; ls /sys/fs/cgroup',
    'echo "== net"; ls /sys/class/net',
    'echo "== mdev"; ls /sys/class/mdev_bus',
    'echo "== mounts"',
    // statfs of the path as the command resolves it: the host's file system there, not the tree's.
    ...subs.map((m) => `echo "${m.target} $(stat -f -c %T ${m.target})"`),
  ].join('; ');
  const r = exec(script);
  t.equal(r.status, 0, r.stderr);
  t.equal(
    r.stdout,
    `== cgroup\n${hostLs('/sys/fs/cgroup')}== net\n${hostLs('/sys/class/net')}== mdev\nmbochs\nmdpy\nmtty\n== mounts\n` +
      subs.map((m) => `${m.target} ${statfsType(m.target)}\n`).join(''),
    'the host\'s cgroup tree and network interfaces, the emulated parents, each host submount of /sys mounted again',
  );
  t.same(mountsUnder(r.tmp), [], 'no mount left');
});

t.test('exec --host-sysfs: lspci lists the host\'s functions and the emulated ones; the samples\' host bridge gives way to the host\'s', async (t) => {
  const tmp = scratch('mdevfs-hostsys-');
  const bdf = freeBdf();
  const r = exec('lspci -D -n | cut -d" " -f1,3', ['--profile', t4At(tmp, bdf)], tmp);
  t.equal(r.status, 0, r.stderr);
  const ids = (a: string) => `${a} ${readFileSync(`/sys/bus/pci/devices/${a}/vendor`, 'latin1').trim().slice(2)}:${readFileSync(`/sys/bus/pci/devices/${a}/device`, 'latin1').trim().slice(2)}`;
  const want = [...hostPci.map(ids), `${bdf} 10de:1eb8`].sort();
  t.same(r.stdout.split('\n').filter(Boolean).sort(), want, 'every host function with its ids, and the emulated T4');

  const samples = exec('ls /sys/bus/pci/devices');
  t.equal(samples.status, 0, samples.stderr);
  const expected = [...new Set([...hostPci, '0000:00:00.0'])].sort();
  t.same(samples.stdout.split('\n').filter(Boolean), expected, 'samples: the host\'s functions (its own host bridge, where it has 0000:00:00.0)');
});

t.test('exec --host-sysfs: mdevctl works as before (types, a create and list)', async (t) => {
  const plain = spawnSync(process.execPath, [CLI, 'exec', ...backendArgs, '--', 'mdevctl', 'types'], { encoding: 'utf8', env: cliEnv(), timeout: 60000 });
  t.equal(plain.status, 0, plain.stderr);
  const r = exec(`mdevctl types && mdevctl start -u ${U} -p mtty -t mtty-2 && mdevctl list && cat ${T}/available_instances`);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, `${plain.stdout}${U} mtty mtty-2 manual\n\n11\n`, 'the same types as without --host-sysfs, then the device');
});

t.test('exec --host-sysfs: libvirt reports the host (virsh nodeinfo) and its node devices work as before', async (t) => {
  const missing = ['libvirtd', 'virsh'].filter((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status !== 0);
  if (missing.length > 0) return t.fail(`${missing.join(' and ')} not installed (scripts/setup --test installs libvirt)`);
  const script = `virsh nodeinfo | sed -n 's/^CPU(s): *//p'
    echo ${U} > ${T}/create
    for i in $(seq 100); do virsh nodedev-list --cap mdev | grep -q ${U.replace(/-/g, '_')} && break; sleep 0.05; done
    virsh nodedev-list --cap mdev`;
  const r = spawnSync(process.execPath, [CLI, 'exec', ...backendArgs, '--udev', '--host-sysfs', '--', join(REPO, 'test', 'helpers', 'libvirt.sh'), 'bash', '-c', script], {
    encoding: 'utf8',
    timeout: 120000,
    env: cliEnv(),
  });
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, `${hostCpus()}\nmdev_${U.replace(/-/g, '_')}_mtty\n\n`, 'the host\'s CPU count, and the created mdev as a node device');
});

t.test('a profile address the host already uses is refused before anything mounts (exit 2, naming it and the profile)', { skip: hostPci.length === 0 && 'this host has no PCI functions' }, async (t) => {
  const tmp = scratch('mdevfs-hostsys-');
  const taken = hostPci[hostPci.length - 1]!;
  const profile = t4At(tmp, taken);
  const r = exec(`touch ${tmp}/ran`, ['--profile', profile], tmp);
  t.equal(r.status, 2, 'usage error');
  t.match(r.stderr, new RegExp(`^mdevfs: --host-sysfs: profile ${profile} uses ${taken} \\(pci\\), which this host already has`), r.stderr);
  t.notOk(existsSync(join(tmp, 'ran')), 'the command never ran');
  t.same(mountsUnder(tmp), [], 'nothing mounted');
  const plain = spawnSync(process.execPath, [CLI, 'exec', ...backendArgs, '--profile', profile, '--', 'true'], { encoding: 'utf8', env: cliEnv(), timeout: 60000 });
  t.equal(plain.status, 0, `without --host-sysfs the same profile runs (${plain.stderr.trim() || 'no errors'})`);
});

/** Host files a test may try to write: each gets its current value back, if the write got through at all. */
const WRITABLE = '/sys/class/net/lo/mtu';
const READ_ONLY = '/sys/class/net/lo/address';

t.test('host files are never written: EROFS (EACCES where the mode has no write bit) for root, logged, nothing changes', async (t) => {
  const watched = [WRITABLE, READ_ONLY, '/sys/class/net/lo/tx_queue_len', '/sys/class/net/lo/flags'];
  const before = watched.map((f) => readFileSync(f, 'latin1'));
  const modes = watched.map((f) => lstatSync(f).mode);
  const attempts = [
    `echo "$(cat ${WRITABLE})" > ${WRITABLE}`,
    `printf '%s' "$(cat ${READ_ONLY})" > ${READ_ONLY}`,
    `chmod 600 ${WRITABLE}`,
    `chown nobody ${WRITABLE}`,
    `touch ${WRITABLE}`,
    `truncate -s 0 ${WRITABLE}`,
    'touch /sys/class/net/mdevfs-test',
    'mkdir /sys/class/net/mdevfs-test',
    'rm /sys/class/net/lo',
    'ln -s lo /sys/class/net/mdevfs-test',
  ];
  const r = exec(`id -u; for c in ${attempts.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')}; do sh -c "$c" 2>&1 | sed 's/^.*: //'; done`, ['--log-level', 'info']);
  t.equal(r.status, 0, r.stderr);
  t.equal(
    r.stdout,
    '0\nRead-only file system\nPermission denied\n' + 'Read-only file system\n'.repeat(attempts.length - 2),
    'root: EROFS for each change of a host node (EACCES for a file without a write bit, as sysfs answers root)',
  );
  const refused = r.stderr.split('\n').filter((l) => l.includes('"refused"') && l.includes('a host file'));
  t.ok(refused.some((l) => l.includes('"path":"/devices/virtual/net/lo/mtu"')), 'the refusal is logged with its path');
  t.same(watched.map((f) => readFileSync(f, 'latin1')), before, 'the host\'s values are unchanged');
  t.same(watched.map((f) => lstatSync(f).mode), modes, 'and their modes');
  t.notOk(existsSync('/sys/class/net/mdevfs-test'), 'nothing was created on the host');
});

t.test('a reader gets no more than the host gives it: a non-root reader of a PCI config gets its first 64 bytes', { skip: hostPci.length === 0 && 'this host has no PCI functions' }, async (t) => {
  const config = `/sys/bus/pci/devices/${hostPci[0]}/config`;
  const asNobody = (cmd: string) => `setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c '${cmd}'`;
  const hostNobody = spawnSync('sh', ['-c', asNobody(`cat ${config} | wc -c`)], { encoding: 'utf8' }).stdout.trim();
  const hostRoot = readFileSync(config).length;
  const r = exec(`${asNobody(`cat ${config} | wc -c`)}; cat ${config} | wc -c; ${asNobody(`cat ${config} | head -c 4 | od -An -tx1`)}`);
  t.equal(r.status, 0, r.stderr);
  const [nobody, root, ids] = r.stdout.trim().split('\n').map((l) => l.trim());
  t.equal(nobody, hostNobody, `user nobody reads ${hostNobody} bytes, as from the host's sysfs`);
  // fuse-native cannot tell the daemon who reads: everyone gets what an unprivileged reader gets (README).
  t.equal(Number(root), process.env.MDEVFS_TEST_BACKEND === 'fuse-native' ? Number(hostNobody) : hostRoot, 'root reads what root reads on the host (direct)');
  t.equal(ids, [...readFileSync(config).subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' '), 'the vendor and device ids, as the host has them');
});

/** Why user nobody cannot run mdevfs exec here (undefined: it can), as exec-unprivileged.test.ts checks it. */
function nobodyCannotExec(): string | undefined {
  const ok = (cmd: string) => spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'sh', '-c', cmd]).status === 0;
  if (!ok(`test -x ${process.execPath} && test -r ${CLI} && test -r /dev/fuse && test -w /dev/fuse`)) return 'user nobody cannot run mdevfs or open /dev/fuse';
  if (!ok('unshare --user --map-root-user --mount true')) return 'this machine does not allow unprivileged user namespaces';
  return undefined;
}

t.test('an ordinary user\'s exec --host-sysfs (a user namespace): the host around the tree, read as that user', { skip: nobodyCannotExec() }, async (t) => {
  const tmp = scratch('mdevfs-hostsys-');
  chownSync(tmp, 65534, 65534);
  const config = hostPci.length > 0 ? `/sys/bus/pci/devices/${hostPci[0]}/config` : '/dev/null';
  const script = `ls /sys/class/net; ls /sys/fs/cgroup; cat ${config} | wc -c; cat /sys/class/mdev_bus/mtty/mdev_supported_types/mtty-2/available_instances; m=$(cat /sys/class/net/lo/mtu); (echo $m > /sys/class/net/lo/mtu) 2>&1 | sed 's/^.*: //'`;
  const r = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'env', '-i', `PATH=${process.env.PATH}`, `TMPDIR=${tmp}`, 'LC_ALL=C',
    process.execPath, CLI, 'exec', ...backendArgs, '--host-sysfs', '--', 'sh', '-c', script], { encoding: 'utf8', cwd: tmp, timeout: 60000 });
  t.equal(r.status, 0, `exit 0 (${r.stderr.trim() || 'no errors'})`);
  const configBytes = hostPci.length > 0 ? spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'sh', '-c', `cat ${config} | wc -c`], { encoding: 'utf8' }).stdout : '0\n';
  t.equal(r.stdout, `${hostLs('/sys/class/net')}${hostLs('/sys/fs/cgroup')}${configBytes}12\nPermission denied\n`,
    'the host\'s interfaces and cgroups, a config as nobody reads it on the host, the emulation, a write refused');
});

t.test('uevents describe only the emulated devices while an mdev is created (udevadm monitor, both groups)', async (t) => {
  const script = `E=$(mktemp); udevadm monitor --udev --kernel > $E & until grep -q "^UDEV - " $E && grep -q "^KERNEL - " $E; do sleep 0.1; done
    udevadm info -q path /sys/class/net/lo
    mdevctl start -u ${U} -p mtty -t mtty-2
    until [ "$(grep -c " bind " $E)" -ge 2 ]; do sleep 0.1; done; kill $!
    grep -E "^(UDEV|KERNEL) *\\[" $E | sed 's/ *\\[[^]]*\\] */ /' | awk '{print $1, $2, $3}'; rm $E`;
  const r = exec(script, ['--udev']);
  t.equal(r.status, 0, r.stderr);
  const dev = `/devices/virtual/mtty/mtty/${U}`;
  const expected = (src: string) => [`${src} add ${dev}`, `${src} add /devices/virtual/vfio/`, `${src} add ${dev}/vfio-dev/vfio`, `${src} bind ${dev}`];
  const lines = r.stdout.split('\n');
  t.equal(lines[0], '/devices/virtual/net/lo', 'udevadm finds the host\'s devices');
  const events = lines.filter((l) => /^(UDEV|KERNEL) /.test(l));
  const strip = (l: string) => l.replace(/(vfio\/)\d+$/, '$1').replace(/(vfio-dev\/vfio)\d+$/, '$1');
  t.same(events.filter((l) => l.startsWith('KERNEL')).map(strip), expected('KERNEL'), 'the kernel group: the create\'s four events, nothing of the host');
  t.same(events.filter((l) => l.startsWith('UDEV')).map(strip), expected('UDEV'), 'the udev group: the same');
});

t.test('the host changes under the tree: an entry, a listing and a stat that come and go are seen at once (nothing cached)', { skip: !existsSync('/dev/loop-control') && 'no loop devices (/dev/loop-control)' }, async (t) => {
  // A loop device attached to a scratch file and detached again: the host's /sys/block/loopN gains
  // and loses loop/ (a harmless change of the host, undone at once, made by losetup, not through
  // mdevfs). The command inside attaches it and reads the tree (so the kernel has its entries), then
  // waits; the test detaches it and waits until the host's own /sys no longer has loop/ (udevd may
  // hold the device open a moment), then lets the command look again.
  const tmp = scratch('mdevfs-hostsys-');
  const backing = join(tmp, 'backing');
  writeFileSync(backing, Buffer.alloc(1 << 20));
  const script = `L=$(losetup --find --show ${backing}) || exit 1; n=\${L#/dev/}; echo $n
    ls /sys/block/$n > /dev/null
    echo "attached: $(ls /sys/block/$n | grep -cx loop) $(cat /sys/block/$n/size) $([ "$(cat /sys/block/$n/loop/backing_file)" = "${backing}" ] && echo backing)"
    read go
    echo "detached: $(ls /sys/block/$n | grep -cx loop) $(cat /sys/block/$n/size) $([ -e /sys/block/$n/loop ] && echo there || echo gone)"`;
  const proc = spawn(process.execPath, [CLI, 'exec', ...backendArgs, '--host-sysfs', '--', 'sh', '-c', script], { env: cliEnv({ TMPDIR: tmp, LC_ALL: 'C' }), stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  let device: string | undefined;
  t.teardown(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
    if (device && existsSync(`/sys/block/${device}/loop`)) spawnSync('losetup', ['-d', `/dev/${device}`]);
  });
  const until = async (cond: () => boolean) => {
    for (let i = 0; i < 400 && !cond() && proc.exitCode === null; i++) await new Promise((r) => setTimeout(r, 25));
    return cond();
  };
  t.ok(await until(() => out.includes('attached:')), `attached (${err.trim() || 'no errors'})`);
  device = out.split('\n')[0];
  t.equal(spawnSync('losetup', ['-d', `/dev/${device}`]).status, 0, 'detached on the host');
  t.ok(await until(() => !existsSync(`/sys/block/${device}/loop`)), 'the host\'s own sysfs no longer has loop/');
  proc.stdin.end('go\n');
  t.equal(await exited, 0, err);
  t.equal(out, `${device}\nattached: 1 2048 backing\ndetached: 0 0 gone\n`, 'loop/ appears with its backing file, then is gone from lookups and the listing; size follows');
});

/** `mdevfs mount DIR --control SOCK [options]` in the background, stopped (SIGTERM) at the test's end. */
function mountDaemon(t: Test, dir: string, sock: string, options: string[] = []) {
  const proc = spawn(process.execPath, [CLI, 'mount', dir, ...backendArgs, ...options, '--control', sock], { stdio: ['ignore', 'ignore', 'pipe'], env: cliEnv() });
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise((r) => proc.on('exit', r));
  t.teardown(async () => {
    if (proc.exitCode === null) proc.kill('SIGTERM');
    await exited;
  });
  return { proc, stderr: () => stderr, exited };
}

t.test('mount --host-sysfs DIR: the host\'s /sys around the tree, its submounts shown as empty directories', async (t) => {
  const work = scratch('mdevfs-hostsys-');
  const dir = join(work, 'mnt');
  const { proc, stderr, exited } = mountDaemon(t, dir, join(work, 'ctl.sock'), ['--host-sysfs']);
  const up = spawnSync(process.execPath, [CLI, 'wait', dir, '--control', join(work, 'ctl.sock'), '--timeout', '20'], { encoding: 'utf8', env: cliEnv() });
  t.equal(up.status, 0, `the daemon answers (${stderr().trim() || 'no errors'})`);
  const ls = (p: string) => spawnSync('ls', [join(dir, p)], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } }).stdout;
  t.equal(ls('class/net'), hostLs('/sys/class/net'), 'class/net is the host\'s');
  t.equal(ls('class/mdev_bus'), 'mbochs\nmdpy\nmtty\n', 'class/mdev_bus is the emulation\'s');
  for (const m of hostSubmounts()) t.equal(ls(m.target.slice('/sys/'.length)), '', `${m.target}: an empty directory`);
  t.equal(readFileSync(join(dir, 'devices/system/cpu/online'), 'latin1'), readFileSync('/sys/devices/system/cpu/online', 'latin1'), 'a host file reads as on the host');
  proc.kill('SIGTERM');
  t.equal(await exited, 0, 'clean unmount');
});

// Read fault rules on host files (as on emulated attributes): added with `mdevfs ctl fault add` inside
// exec (MDEVFS_CONTROL), matched by the attribute's name or a glob on the file's own canonical path
// (the kernel resolves /sys/class/net/lo to devices/virtual/net/lo before the daemon sees the path).
const OPERSTATE = '/sys/class/net/lo/operstate';
const operstateCanonical = () => realpathSync(OPERSTATE);

t.test('exec --host-sysfs: read fault rules act on a host file (errno, content) and are journaled', async (t) => {
  const script = [
    `mdevfs ctl fault add --op read --path '/sys/devices/**/net/*/operstate' --errno EIO --times 1`,
    `cat ${OPERSTATE} 2>&1 | sed 's/^.*: //'`,
    `cat ${OPERSTATE}`,
    'mdevfs ctl fault add --op read --attr operstate --content down',
    `cat ${OPERSTATE}; echo`,
    `mdevfs ctl journal --json | grep '"kind":"fault"' | grep -c '"path":"${operstateCanonical()}"'`,
    `cat ${T}/available_instances`,
  ].join('\n');
  const r = exec(script, [], undefined, 60000, cliBin());
  t.equal(r.status, 0, r.stderr);
  const host = readFileSync(OPERSTATE, 'latin1');
  t.equal(r.stdout, `1\nInput/output error\n${host}2\ndown\n2\n12\n`,
    'EIO once (then the host\'s value), the rule\'s content, two fault entries in the journal with the file\'s path; the emulation as before');
});

t.test('exec --host-sysfs: a host read held by a hang rule holds only itself; released through the CLI', async (t) => {
  const script = [
    'mdevfs ctl fault add --id slow --op read --attr operstate --hang',
    `cat ${OPERSTATE} > held.$$ & C=$!`,
    'mdevfs ctl wait --fault slow --timeout 20 || exit 11',
    // Meanwhile: an emulated read, other host reads, a create, the control API.
    `cat ${T}/available_instances /sys/class/net/lo/mtu /sys/devices/system/cpu/online`,
    `echo ${U} > ${T}/create && cat ${T}/available_instances`,
    'mdevfs ctl fault list --json | grep -o \'"hung":[0-9]*\'',
    'kill -0 $C && echo "still held: $(wc -c < held.$$)"',
    'mdevfs ctl fault release slow',
    'wait $C; echo "cat: $?"; cat held.$$; rm held.$$',
  ].join('\n');
  const tmp = scratch('mdevfs-hostsys-');
  const r = exec(`cd ${tmp} && { ${script}\n}`, [], tmp, 60000, cliBin());
  t.equal(r.status, 0, r.stderr);
  const host = (f: string) => readFileSync(f, 'latin1');
  t.equal(r.stdout, `slow\n12\n${host('/sys/class/net/lo/mtu')}${host('/sys/devices/system/cpu/online')}11\n"hung":1\nstill held: 0\n1\ncat: 0\n${host(OPERSTATE)}`,
    'the rule added; while the host read hangs: the emulated file, two other host files, a create and the API answer; then the release lets it read the host');
});

t.test('mount --host-sysfs: host reads blocked in the kernel hold only themselves; at stop their readers get ENODEV and the daemon still ends', { skip: spawnSync('sh', ['-c', 'command -v unshare']).status !== 0 && 'unshare (util-linux) not installed' }, async (t) => {
  // A host file whose read blocks in the kernel, made without touching the host: in a mount
  // namespace of its own (unshare -m), lo's mtu is a bind mount of another daemon's (B's)
  // available_instances, whose reads B's hang rule holds. Daemon A (--host-sysfs) reads it as the
  // host's file: each read(2) stays in the kernel, in a thread of A's libuv pool (4 threads), until B answers.
  const work = scratch('mdevfs-hostsys-');
  const b = join(work, 'b');
  const bsock = join(work, 'b.sock');
  const { proc, stderr: berr, exited } = mountDaemon(t, b, bsock);
  const mdevfs = `"${process.execPath}" "${CLI}"`;
  const ctlB = `${mdevfs} ctl ${b} --control ${bsock}`;
  t.equal(spawnSync('sh', ['-c', `${mdevfs} wait ${b} --control ${bsock} --timeout 20 && ${ctlB} fault add --id slow --op read --attr available_instances --hang`], { env: cliEnv() }).status, 0, `daemon B answers, its rule added (${berr().trim() || 'no errors'})`);
  const a = join(work, 'a');
  const mtu = `${a}/devices/virtual/net/lo/mtu`;
  const script = `
    mount --bind ${b}/devices/virtual/mtty/mtty/mdev_supported_types/mtty-2/available_instances /sys/devices/virtual/net/lo/mtu || exit 9
    UV_THREADPOOL_SIZE=4 ${mdevfs} mount ${a} ${backendArgs.join(' ')} --host-sysfs --journal ${work}/a.journal --control ${work}/a.sock 2> ${work}/a.err & D=$!
    ${mdevfs} wait ${a} --control ${work}/a.sock --timeout 20 || exit 10
    hung() { ${ctlB} fault list --json | grep -q '"hung":'"$1"; }
    cat ${mtu} > ${work}/held1 2>&1 & C1=$!
    ${ctlB} wait --fault slow --timeout 20 || exit 11
    # One host read in the kernel: an emulated file and another host file are read.
    cat ${a}/class/mdev_bus/mtty/mdev_supported_types/mtty-2/available_instances ${a}/devices/system/cpu/online
    # Three more (as many as the pool has threads): two reach B, the others wait in A; the pool's
    # other work (the --journal file's writes) goes on: a create through A lands in the file.
    for i in 2 3 4; do cat ${mtu} > ${work}/held$i 2>&1 & P="$P $!"; done
    i=0; until hung "[2-4]"; do i=$((i+1)); [ $i -lt 400 ] || exit 12; sleep 0.05; done
    echo ${U} > ${a}/class/mdev_bus/mtty/mdev_supported_types/mtty-2/create || exit 13
    i=0; until grep -q '"op":"create"' ${work}/a.journal; do i=$((i+1)); [ $i -lt 400 ] || exit 14; sleep 0.05; done
    echo journaled
    kill -TERM $D
    wait $C1; echo "cat: $?"; wait $P; sed 's/^.*: //' ${work}/held1 ${work}/held2 ${work}/held3 ${work}/held4
    # A's reads are still in B: A says so, then ends with SIGKILL once the kernel lets its threads go
    # (a FUSE request in its server's hands waits out even SIGKILL: B's answer is that moment).
    i=0; until grep -q 'still blocked in the kernel' ${work}/a.err; do i=$((i+1)); [ $i -lt 400 ] || exit 15; sleep 0.05; done
    ${ctlB} fault rm slow
    wait $D; echo "daemon: $?"
    grep -c " ${a} " /proc/self/mountinfo`;
  const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], { encoding: 'utf8', env: cliEnv({ LC_ALL: 'C' }), timeout: 60000, killSignal: 'SIGKILL' });
  const aerr = existsSync(join(work, 'a.err')) ? readFileSync(join(work, 'a.err'), 'latin1') : '';
  t.equal(r.status, 1, `the script ran to its end (grep -c counts no mount) (${r.stderr.trim()} ${aerr.trim()})`);
  t.equal(r.stdout, `12\n${readFileSync('/sys/devices/system/cpu/online', 'latin1')}journaled\ncat: 1\n${'No such device\n'.repeat(4)}daemon: 137\n0\n`,
    'while host reads are blocked, other files are read and the journal is written; at stop each reader gets ENODEV; the daemon ends (SIGKILL), its mount gone');
  t.match(aerr, /"reads":2.*host file reads still blocked in the kernel: the process ends with SIGKILL/, 'and says why it ended so: two reads in the kernel');
  proc.kill('SIGTERM');
  t.equal(await exited, 0, 'daemon B stops cleanly');
});
