import t from 'tap';
import { daemonPerTest, sh } from '../helpers/daemon';

// Writers other than bash's echo: Python's open(p, 'w'), and O_WRONLY|O_CREAT|O_TRUNC with
// mode 0200 as Go's os.WriteFile and Rust's fs::write open files.
const T = 'class/mdev_bus/mtty/mdev_supported_types/mtty-2';
const d = daemonPerTest();
const py = (code: string) => sh(d.dir, `python3 - <<'PY'\nimport os, errno\n${code}\nPY`);

t.test("Python open(p, 'w') creates and removes", async (t) => {
  const r = py(`
with open('${T}/create', 'w') as f:
    f.write('00000000-0000-0000-0000-000000000001')
print(os.readlink('bus/mdev/devices/00000000-0000-0000-0000-000000000001/mdev_type'))
with open('bus/mdev/devices/00000000-0000-0000-0000-000000000001/remove', 'w') as f:
    f.write('1\\n')
print(os.path.exists('bus/mdev/devices/00000000-0000-0000-0000-000000000001'))`);
  t.equal(r.stderr, '');
  t.equal(r.stdout, '../mdev_supported_types/mtty-2\nFalse\n');
});

t.test('O_WRONLY|O_CREAT|O_TRUNC, mode 0200 (os.WriteFile): one write, the kernel errno', async (t) => {
  const r = py(`
def write_file(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o200)
    try:
        return os.write(fd, data)
    except OSError as e:
        return errno.errorcode[e.errno]
    finally:
        os.close(fd)
print(write_file('${T}/create', b'00000000-0000-0000-0000-000000000002'))
print(write_file('${T}/create', b'00000000-0000-0000-0000-000000000002'))
print(write_file('${T}/create', b'not-a-uuid'))
try:
    os.open('${T}/new-name', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o200)
except OSError as e:
    print(errno.errorcode[e.errno])
try:
    os.open('${T}/name', os.O_WRONLY | os.O_TRUNC)
except OSError as e:
    print(errno.errorcode[e.errno])
fd = os.open('${T}/create', os.O_WRONLY | os.O_APPEND)
print(os.pwrite(fd, b'00000000-0000-0000-0000-000000000003\\n', 12345))
os.close(fd)
print(sorted(os.listdir('bus/mdev/devices')))`);
  t.equal(r.stderr, '');
  t.equal(
    r.stdout,
    '36\nEEXIST\nEINVAL\nEACCES\nEACCES\n37\n' +
      "['00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000003']\n",
  );
});

t.test('one write(2) is one store: a UUID split over two writes is two EINVALs', async (t) => {
  const r = py(`
fd = os.open('${T}/create', os.O_WRONLY)
for part in (b'00000000-0000-0000-', b'0000-000000000004'):
    try:
        os.write(fd, part)
    except OSError as e:
        print(errno.errorcode[e.errno])
os.close(fd)`);
  t.equal(r.stdout, 'EINVAL\nEINVAL\n');
  t.equal(sh(d.dir, 'ls bus/mdev/devices | wc -l').stdout, '0\n', 'neither half created a device');
});
