import t from 'tap';
import { asNobody, letOthersTraverse } from '../helpers/as-user';
import { sh, startDaemon } from '../helpers/daemon';

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
def write(path, data):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)
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
