import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import t from 'tap';
import { defaultControlPath } from '../../src/control/paths';
import { asNobody, letOthersTraverse } from '../helpers/as-user';
import { CLI, PY_WRITE, backendArgs, cliEnv, isMounted, scratch, sh, startDaemon } from '../helpers/daemon';

// Only root changes the tree, as on sysfs: the mount is allow_other + default_permissions, so the
// kernel applies generic_permission and setattr_prepare to every caller, and other users get the
// errnos sysfs gives them. Every operation runs as `nobody` through the real mount.

const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const DEV = `devices/virtual/mtty/mtty/${U}`;

/** Runs each operation as nobody and prints {label: "ok" | errno name}. argv[1]: JSON {writable, readable}. */
const PROBE = String.raw`
import errno, json, os, sys
files = json.loads(sys.argv[1])
res = {}
def op(label, fn):
    try:
        fn()
        res[label] = 'ok'
    except OSError as e:
        res[label] = errno.errorcode[e.errno]
${PY_WRITE}
def read(path, flags=os.O_RDONLY):
    fd = os.open(path, flags)
    try:
        os.read(fd, 4096)
    finally:
        os.close(fd)
def payload(path):
    name = os.path.basename(path)
    return {'create': '00000000-0000-0000-0000-000000000007', 'remove': '1', 'bind': sys.argv[2], 'unbind': sys.argv[2],
            'drivers_probe': sys.argv[2], 'drivers_autoprobe': '0', 'control': 'on', 'async': 'disabled',
            'uevent': 'remove'}.get(name, '0')
for p in files['writable']:
    op('write ' + p, lambda: write(p, payload(p)))
    op('O_TRUNC ' + p, lambda: read(p, os.O_RDONLY | os.O_TRUNC))
    op('truncate ' + p, lambda: os.truncate(p, 0))
    op('chmod ' + p, lambda: os.chmod(p, 0o666))
    op('chown ' + p, lambda: os.chown(p, os.getuid(), os.getgid()))
    op('touch ' + p, lambda: os.utime(p, None))
    op('utime ' + p, lambda: os.utime(p, (1, 1)))
for p in files['readable']:
    op('read ' + p, lambda: read(p))
dev = files['device']
op('chmod dir', lambda: os.chmod(dev, 0o777))
op('chown dir', lambda: os.chown(dev, os.getuid(), os.getgid()))
op('lchown link', lambda: os.lchown(dev + '/mdev_type', os.getuid(), os.getgid()))
op('mkdir', lambda: os.mkdir('bus/mdev/devices/x'))
op('rmdir', lambda: os.rmdir(dev))
op('unlink', lambda: os.unlink(dev + '/remove'))
op('rename', lambda: os.rename(dev + '/uevent', dev + '/uevent2'))
op('symlink', lambda: os.symlink('x', 'bus/mdev/devices/x'))
op('mkfifo', lambda: os.mkfifo('bus/mdev/x'))
op('O_CREAT', lambda: os.close(os.open('bus/mdev/new', os.O_WRONLY | os.O_CREAT, 0o644)))
op('setxattr', lambda: os.setxattr(dev + '/uevent', 'user.x', b'1'))
op('listdir', lambda: os.listdir(dev))
op('readlink', lambda: os.readlink(dev + '/mdev_type'))
print(json.dumps(res))
`;

function probe(dir: string, files: { writable: string[]; readable: string[]; device: string }): Record<string, string> {
  const r = asNobody(['python3', '-c', PROBE, JSON.stringify(files), U], { cwd: dir });
  if (r.status !== 0) throw new Error(`probe failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, string>;
}

/** Everything a mutation could change: names, modes, owners, times, and the values root reads. */
function snapshot(dir: string): string {
  return sh(dir, `find . -printf '%p %M %U %G %T@\\n' | sort
    for f in class/mdev_bus/*/mdev_supported_types/*/available_instances bus/mdev/drivers_autoprobe ${DEV}/power/control; do
      echo "$f: $(cat $f)"; done; ls bus/mdev/devices`).stdout;
}

const lines = (s: string) => s.split('\n').filter(Boolean);

t.test('nobody reads what sysfs lets others read and changes nothing', async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.stop());
  letOthersTraverse(d.dir);
  t.equal(sh(d.dir, `echo ${U} > class/mdev_bus/mtty/mdev_supported_types/mtty-2/create`).code, 0);

  const writable = lines(sh(d.dir, 'find . -type f -perm /222 | sort').stdout);
  const writeOnly = lines(sh(d.dir, 'find . -type f ! -perm /444 | sort').stdout);
  const readable = lines(sh(d.dir, 'find . -type f -perm -444 | sort').stdout);
  // Every kind of writable file sysfs has is in the list.
  for (const f of ['/create', '/remove', 'drivers/mtty/bind', 'drivers/mtty/unbind', 'mdev/uevent', `${U}/uevent`, 'module/mtty/uevent',
    'drivers_autoprobe', 'drivers_probe', `${U}/power/control`, `${U}/power/async`]) {
    t.ok(writable.some((w) => w.endsWith(f)), `writable files include *${f}`);
  }
  t.ok(writeOnly.length >= 20 && readable.length >= 80, `${writeOnly.length} write-only, ${readable.length} readable files`);

  const before = snapshot(d.dir);
  const res = probe(d.dir, { writable, readable: [...readable, ...writeOnly], device: DEV });

  const expected: Record<string, string> = {};
  for (const p of writable) {
    Object.assign(expected, {
      ['write ' + p]: 'EACCES', // generic_permission: no write bit for others
      ['O_TRUNC ' + p]: 'EACCES', // O_TRUNC asks for write permission
      ['truncate ' + p]: 'EACCES',
      ['chmod ' + p]: 'EPERM', // setattr_prepare: not the owner
      ['chown ' + p]: 'EPERM',
      ['touch ' + p]: 'EACCES', // utimes(NULL) needs ownership or write permission
      ['utime ' + p]: 'EPERM', // explicit times need ownership
    });
  }
  // autosuspend_delay_ms passes the permission check, then its show fails EIO (as the kernel's, for root too).
  for (const p of readable) expected['read ' + p] = p.endsWith('/autosuspend_delay_ms') ? 'EIO' : 'ok';
  for (const p of writeOnly) expected['read ' + p] = 'EACCES';
  Object.assign(expected, {
    'chmod dir': 'EPERM', 'chown dir': 'EPERM', 'lchown link': 'EPERM',
    mkdir: 'EACCES', rmdir: 'EACCES', unlink: 'EACCES', rename: 'EACCES', symlink: 'EACCES', mkfifo: 'EACCES',
    O_CREAT: 'EACCES', setxattr: 'EACCES', listdir: 'ok', readlink: 'ok',
  });
  t.same(res, expected, 'every operation as nobody gets the errno sysfs gives');
  t.equal(snapshot(d.dir), before, 'nothing changed: names, modes, owners, times, available_instances, devices');

  // Root is not locked out by anything nobody tried, and still writes.
  t.equal(sh(d.dir, `echo 1 > ${DEV}/remove; ls bus/mdev/devices | wc -l`).stdout, '0\n', 'root removes the device');
});

t.test('a file root makes 0600 is unreadable to others, readable to root; root chmod/chown stay root-only', async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.stop());
  letOthersTraverse(d.dir);
  const f = 'bus/mdev/drivers_autoprobe';
  const content = sh(d.dir, `cat ${f}`).stdout;
  t.ok(content.length > 0, 'readable while 0644');
  t.equal(asNobody(['cat', f], { cwd: d.dir }).stdout, content, 'by nobody too');
  t.equal(sh(d.dir, `chmod 0600 ${f} && stat -c %a ${f}`).stdout, '600\n');
  t.equal(sh(d.dir, `cat ${f}`).stdout, content, 'root still reads it');
  const r = asNobody(['cat', f], { cwd: d.dir });
  t.equal(r.status, 1);
  t.equal(r.stderr, `cat: ${f}: Permission denied\n`);
  // Giving a file to nobody lets nobody chmod it (owner rules, as on sysfs), nothing more.
  t.equal(sh(d.dir, `chown 65534 ${f}`).code, 0);
  t.equal(asNobody(['chmod', '0644', f], { cwd: d.dir }).status, 0, 'the owner may chmod');
  t.equal(asNobody(['cat', f], { cwd: d.dir }).status, 0, 'and then read');
  t.equal(sh(d.dir, `stat -c '%a %u' ${f}`).stdout, '644 65534\n');
});

t.test('the control socket: root only, in a private directory; nobody cannot connect', async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.stop());
  letOthersTraverse(d.dir);
  const socket = defaultControlPath(d.dir)!;
  t.equal(sh(d.dir, `stat -c '%A %U' ${dirname(socket)} ${socket}`).stdout, 'drwx------ root\nsrw------- root\n');
  const r = asNobody(['python3', '-c', `import socket,sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1]); print('connected')
except OSError as e:
    print(e.strerror)`, socket]);
  t.equal(r.stdout, 'Permission denied\n', 'nobody cannot connect');
});

t.test('a control directory someone else could write to or redirect: the daemon refuses to start, mounts nothing', async (t) => {
  const work = scratch('mdevfs-ctldir-');
  const dir = join(work, 'mnt');
  const elsewhere = join(work, 'elsewhere');
  mkdirSync(elsewhere, { mode: 0o700 });
  const cases: [string, (path: string) => void, string][] = [
    ['a symlink to a private directory', (p) => symlinkSync(elsewhere, p), 'it is a symbolic link'],
    ['a world-writable directory', (p) => (mkdirSync(p), chmodSync(p, 0o777)), 'it is writable by its group and others (mode 0777)'],
    ['a directory writable by others', (p) => (mkdirSync(p), chmodSync(p, 0o703)), 'it is writable by others (mode 0703)'],
    ['a directory owned by nobody', (p) => (mkdirSync(p, { mode: 0o700 }), chownSync(p, 65534, 65534)), 'it is owned by uid 65534, not 0'],
    ['a regular file', (p) => writeFileSync(p, ''), 'it is not a directory'],
  ];
  for (const [what, make, why] of cases) {
    const ctl = join(work, `ctl-${cases.findIndex((c) => c[0] === what)}`);
    make(ctl);
    const r = spawnSync(process.execPath, [CLI, 'mount', dir, ...backendArgs], {
      encoding: 'utf8', timeout: 20000, env: cliEnv({ MDEVFS_CONTROL_DIR: ctl }),
    });
    t.equal(r.status, 1, `${what}: exit 1`);
    t.equal(r.stderr, `mdevfs: unsafe control directory ${ctl}: ${why}; remove it (or fix it) and start again\n`, `${what}: says what is wrong`);
    t.notOk(isMounted(dir), `${what}: nothing mounted`);
  }
  // A control directory that does not exist yet is made private.
  const fresh = join(work, 'fresh');
  const d = await startDaemon({ dir, env: { MDEVFS_CONTROL_DIR: fresh } });
  t.teardown(() => d.stop());
  t.equal(sh(work, `stat -c '%a' fresh fresh/*.sock`).stdout, '700\n600\n');
});

t.test('a daemon run by another user: its control directory is $XDG_RUNTIME_DIR/mdevfs, and must be its own', async (t) => {
  const xdg = scratch('mdevfs-xdg-');
  chmodSync(xdg, 0o755);
  const dir = join(xdg, 'mnt');
  // Without XDG_RUNTIME_DIR the daemon falls back to ${TMPDIR:-/tmp}/mdevfs-UID (cli-user.test.ts).
  // Someone else (here root) made $XDG_RUNTIME_DIR/mdevfs first.
  mkdirSync(join(xdg, 'mdevfs'), { mode: 0o700 });
  const taken = asNobody([process.execPath, CLI, 'mount', dir], { env: { XDG_RUNTIME_DIR: xdg } });
  t.equal(taken.status, 1);
  t.equal(taken.stderr, `mdevfs: unsafe control directory ${join(xdg, 'mdevfs')}: it is owned by uid 0, not 65534; remove it (or fix it) and start again\n`);
  t.notOk(isMounted(dir));
});

t.test("an ordinary user's own mount (fuse-native through fusermount): that user plays root there", async (t) => {
  const work = scratch('mdevfs-user-');
  chmodSync(work, 0o755);
  const run = join(work, 'run');
  const dir = join(work, 'mnt');
  mkdirSync(run, { mode: 0o700 });
  mkdirSync(dir);
  chownSync(run, 65534, 65534);
  chownSync(dir, 65534, 65534);
  const env = { XDG_RUNTIME_DIR: run };
  const daemon = spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'env', '-u', 'NODE_OPTIONS',
    `XDG_RUNTIME_DIR=${run}`, process.execPath, CLI, 'mount', dir], { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env.PATH } });
  let stderr = '';
  daemon.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((r) => daemon.on('exit', r));
  t.teardown(async () => {
    daemon.kill('SIGTERM');
    await exited;
  });
  t.equal(asNobody([process.execPath, CLI, 'wait', dir], { env }).status, 0, stderr);
  const T = 'class/mdev_bus/mtty/mdev_supported_types/mtty-2';
  // cd as nobody: without allow_other (no user_allow_other in fuse.conf) not even root may enter.
  const r = asNobody(['sh', '-c', `cd ${dir} && stat -c '%U %a' ${T}/create; echo ${U} > ${T}/create && ls bus/mdev/devices; cat ${T}/available_instances`]);
  t.equal(r.stdout, `nobody 200\n${U}\n11\n`, r.stderr);
  daemon.kill('SIGTERM');
  t.equal(await exited, 0);
  t.notOk(isMounted(dir));
});
