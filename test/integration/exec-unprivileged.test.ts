import { spawn, spawnSync } from 'node:child_process';
import { chownSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { CLI, backendArgs, scratch } from '../helpers/daemon';

// An ordinary user, with nothing of root's environment: no HOME, no npm, only PATH.
const NOBODY = ['--reuid=nobody', '--regid=nogroup', '--clear-groups'];
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const UID = 65534;

function asNobody(tmp: string, args: string[], timeout = 30000) {
  return spawnSync('setpriv', [...NOBODY, 'env', '-i', `PATH=${PATH}`, `TMPDIR=${tmp}`, 'LC_ALL=C', ...args], { encoding: 'utf8', timeout, cwd: tmp });
}

/** A scratch directory that user nobody owns (its TMPDIR). */
function nobodysDir(prefix: string): string {
  const dir = scratch(prefix);
  chownSync(dir, UID, UID);
  return dir;
}

/** Why this machine refuses nobody a user namespace (undefined: it allows it). */
function userNamespacesRefused(): string | undefined {
  const sysctl = (name: string) => {
    try {
      return readFileSync(`/proc/sys/${name}`, 'utf8').trim();
    } catch {
      return undefined;
    }
  };
  const probe = spawnSync('setpriv', [...NOBODY, 'unshare', '--user', '--map-root-user', '--mount', 'true'], { encoding: 'utf8' });
  if (probe.status === 0) return undefined;
  const why = [`unshare as nobody: ${probe.stderr.trim() || probe.error?.message}`];
  if (sysctl('kernel/unprivileged_userns_clone') === '0') why.push('kernel.unprivileged_userns_clone=0');
  if (sysctl('user/max_user_namespaces') === '0') why.push('user.max_user_namespaces=0');
  if (sysctl('kernel/apparmor_restrict_unprivileged_userns') === '1') why.push('kernel.apparmor_restrict_unprivileged_userns=1');
  return `this machine does not allow unprivileged user namespaces (${why.join('; ')})`;
}

/** What else keeps user nobody from running mdevfs here (undefined: nothing). */
function nobodyCannotRun(): string | undefined {
  const can = (test: string, what: string) =>
    spawnSync('setpriv', [...NOBODY, 'sh', '-c', test]).status === 0 ? undefined : what;
  return (
    can(`test -x ${process.execPath} && test -r ${CLI}`, `user nobody cannot run ${process.execPath} ${CLI}`) ??
    can('test -r /dev/fuse && test -w /dev/fuse', '/dev/fuse is not open to ordinary users (it must be mode 0666)')
  );
}

const cannotRun = nobodyCannotRun();
const refused = cannotRun ?? userNamespacesRefused();
const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const T = '/sys/class/mdev_bus/mtty/mdev_supported_types/mtty-2';

t.test('as nobody, mdevfs exec runs mdevctl against the tree in a user namespace', { skip: refused }, async (t) => {
  const tmp = nobodysDir('mdevfs-unpriv-');
  const types = asNobody(tmp, [process.execPath, CLI, 'exec', ...backendArgs, '--', 'mdevctl', 'types']);
  t.equal(types.status, 0, `exit 0 (${types.stderr.trim() || 'no errors'})`);
  t.match(types.stdout, /^mtty\n  mtty-1\n    Available instances: 24\n/m, 'mdevctl types lists the sample drivers');
  t.match(types.stdout, /  mtty-2\n    Available instances: 12\n/);

  const script = [
    'id -u',
    `echo ${U} > ${T}/create`,
    `readlink /sys/bus/mdev/devices/${U}/mdev_type`,
    `cat ${T}/available_instances`,
    `echo 1 > /sys/bus/mdev/devices/${U}/remove`,
    `ls /sys/bus/mdev/devices | wc -l`,
    `cat ${T}/available_instances`,
    `mdevctl start -u ${U} -p mtty -t mtty-2`,
    'mdevctl list',
  ].join(' && ');
  const r = asNobody(tmp, [process.execPath, CLI, 'exec', ...backendArgs, '--', 'sh', '-c', script]);
  t.equal(r.stderr, '', 'no errors');
  t.equal(r.stdout, `0\n../mdev_supported_types/mtty-2\n11\n0\n12\n${U} mtty mtty-2 manual\n\n`,
    'root in its namespace: create, links, capacity, remove, then mdevctl start and list');
  t.equal(r.status, 0);
  t.notMatch(readFileSync('/proc/self/mountinfo', 'utf8'), tmp, 'nothing of it is mounted in the caller\'s namespace');
});

t.test('as nobody, the command exec runs steers its own daemon (MDEVFS_CONTROL) in the user namespace', { skip: refused }, async (t) => {
  const tmp = nobodysDir('mdevfs-unpriv-');
  const mdevfs = `"${process.execPath}" "${CLI}"`;
  const script = [`${mdevfs} wait --timeout 5`, `echo ${U} > ${T}/create`, `${mdevfs} ctl wait --device ${U} --state active`, `${mdevfs} ctl reset`, `${mdevfs} ctl parents`, `ls /sys/bus/mdev/devices | wc -l`].join(' && ');
  const r = asNobody(tmp, [process.execPath, CLI, 'exec', ...backendArgs, '--', 'sh', '-c', script]);
  t.equal(r.stderr, '', 'no errors');
  t.equal(r.stdout, 'mtty\nmdpy\nmbochs\n0\n', 'waited for its device, reset its tree');
  t.equal(r.status, 0);
});

t.test('as nobody, mdevfs mount uses fuse-native (fusermount) and says so', { skip: cannotRun }, async (t) => {
  const tmp = nobodysDir('mdevfs-unpriv-');
  const dir = join(tmp, 'mnt');
  const proc = spawn('setpriv', [...NOBODY, 'env', '-i', `PATH=${PATH}`, `XDG_RUNTIME_DIR=${tmp}`, process.execPath, CLI, 'mount', dir, '--log-level', 'info'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  t.teardown(() => void (proc.exitCode === null && proc.kill('SIGKILL')));
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  for (let i = 0; i < 400 && !stderr.includes('"msg":"mounted"') && proc.exitCode === null; i++) await new Promise((r) => setTimeout(r, 25));
  t.match(stderr, /"backend":"fuse-native","why":"not privileged to mount[^"]*","msg":"FUSE backend chosen"/);
  t.match(stderr, /"backend":"fuse-native","msg":"mounted"/);
  const ls = asNobody(tmp, ['ls', join(dir, 'class', 'mdev_bus')]);
  t.equal(ls.stdout, 'mbochs\nmdpy\nmtty\n', 'the user reads the tree');
  const write = asNobody(tmp, ['sh', '-c', `echo ${U} > ${join(dir, T.replace('/sys/', ''), 'create')} && ls ${join(dir, 'bus', 'mdev', 'devices')}`]);
  t.equal(write.stdout, `${U}\n`, 'and, playing root in its own tree, creates a device');
  proc.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM: exit 0');
  t.notMatch(readFileSync('/proc/self/mountinfo', 'utf8'), dir, 'no mount left');
});

t.test('as nobody without unshare on PATH, mdevfs exec says what is missing', { skip: cannotRun }, async (t) => {
  const tmp = nobodysDir('mdevfs-unpriv-');
  const r = spawnSync('setpriv', [...NOBODY, 'env', '-i', `PATH=${tmp}`, process.execPath, CLI, 'exec', '--', 'true'], { encoding: 'utf8', timeout: 30000 });
  t.equal(r.stderr, 'mdevfs exec: not root, and unshare (util-linux) is not on PATH: it makes the user namespace; install it, or run as root\n');
  t.equal(r.status, 1);
});
