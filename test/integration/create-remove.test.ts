import t from 'tap';
import { daemonPerTest, isMounted, sh, startDaemon } from '../helpers/daemon';

// Exact bash messages and exit codes, as the real kernel gives them (test/conformance/expected/).
const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const MT = 'class/mdev_bus/mtty/mdev_supported_types';
const MP = 'class/mdev_bus/mdpy/mdev_supported_types';
const d = daemonPerTest();
const run = (script: string) => sh(d.dir, script);
const err = (what: string) => `bash: line 1: echo: write error: ${what}\n`;
const avail = () => run(`cat ${MT}/*/available_instances ${MP}/*/available_instances | tr '\\n' ' '`).stdout;

t.test('create errors', async (t) => {
  t.equal(run(`echo ${U} > ${MT}/mtty-2/create`).code, 0);
  const cases: [string, string, number, string][] = [
    ['duplicate, same type', `echo ${U} > ${MT}/mtty-2/create`, 1, err('File exists')],
    ['duplicate, other type', `echo ${U} > ${MT}/mtty-1/create`, 1, err('File exists')],
    ['duplicate, other parent', `echo ${U} > ${MP}/mdpy-vga/create`, 1, err('File exists')],
    ['upper case of existing', `echo ${U.toUpperCase()} > ${MT}/mtty-2/create`, 1, err('File exists')],
    ['no dashes', `echo ${U.replace(/-/g, '')} > ${MT}/mtty-2/create`, 1, err('Invalid argument')],
    ['too short', `echo 83b8f4f2-509f-382f-3c1e > ${MT}/mtty-2/create`, 1, err('Invalid argument')],
    ['38 bytes', `echo ${U}x > ${MT}/mtty-2/create`, 1, err('Invalid argument')],
    ['non-hex', `echo 83b8f4f2-509f-382f-3c1e-e6bfe0fa100g > ${MT}/mtty-2/create`, 1, err('Invalid argument')],
    ['braces', `echo '{83b8f4f2-509f-382f-3c1e-e6bfe0fa10}' > ${MT}/mtty-2/create`, 1, err('Invalid argument')],
    ['empty line', `echo > ${MT}/mtty-2/create`, 1, err('Invalid argument')],
    ['no such type', `echo ${U} > ${MT}/no-such-type/create`, 1, `bash: line 1: ${MT}/no-such-type/create: No such file or directory\n`],
  ];
  for (const [name, script, code, out] of cases) {
    const r = run(script);
    t.equal(r.code, code, `${name}: exit code`);
    t.equal(r.stderr, out, `${name}: message`);
  }
  t.equal(run(`printf %s 83b8f4f2-509f-382f-3c1e-e6bfe0fa1005x > ${MT}/mtty-2/create`).code, 0, '37th byte unchecked');
  t.equal(run(`printf %s 83b8f4f2-509f-382f-3c1e-e6bfe0fa1006 > ${MT}/mtty-2/create`).code, 0, '36 bytes');
  const two = run(`printf '%s\\n\\n' 83b8f4f2-509f-382f-3c1e-e6bfe0fa1007 > ${MT}/mtty-2/create`);
  t.equal(two.stderr, 'bash: line 1: printf: write error: Invalid argument\n', 'bash writes UUID\\n, then \\n alone');
  t.equal(run(`printf '' > ${MT}/mtty-2/create`).code, 0, 'no write at all');
  t.equal(
    run('ls bus/mdev/devices').stdout,
    [U, '83b8f4f2-509f-382f-3c1e-e6bfe0fa1005', '83b8f4f2-509f-382f-3c1e-e6bfe0fa1006', '83b8f4f2-509f-382f-3c1e-e6bfe0fa1007', ''].join('\n'),
  );
  t.equal(avail(), '16 8 4 4 4 ');
});

t.test('capacity errors: ENOSPC from mtty, EUSERS from mdpy', async (t) => {
  t.equal(run(`echo ${U} > ${MT}/mtty-2/create`).code, 0);
  t.equal(avail(), '22 11 4 4 4 ', 'U holds 2 of the 24 ports');
  let i = 0;
  while (run(`cat ${MT}/mtty-2/available_instances`).stdout !== '0\n' && i < 30) {
    i++;
    t.equal(run(`echo 00000000-0000-0000-0000-0000000000${String(i).padStart(2, '0')} > ${MT}/mtty-2/create`).code, 0);
  }
  t.equal(i, 11);
  t.equal(run(`echo 00000000-0000-0000-0000-000000000099 > ${MT}/mtty-1/create`).stderr, err('No space left on device'));
  for (let n = 1; n <= 4; n++) t.equal(run(`echo 11111111-0000-0000-0000-00000000000${n} > ${MP}/mdpy-vga/create`).code, 0);
  t.equal(run(`echo 11111111-0000-0000-0000-000000000005 > ${MP}/mdpy-xga/create`).stderr, err('Too many users'));
  t.equal(run(`echo ${U} > ${MP}/mdpy-xga/create`).stderr, err('File exists'), 'duplicate before capacity');
  t.equal(avail(), '0 0 0 0 0 ');
});

t.test('remove rules, stale descriptors, and re-creating a removed UUID', async (t) => {
  const R = `bus/mdev/devices/${U}/remove`;
  for (const u of [U, '00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000002']) {
    t.equal(run(`echo ${u} > ${MT}/mtty-2/create`).code, 0);
  }
  t.equal(avail(), '18 9 4 4 4 ');
  t.equal(run(`cat ${R}`).stderr, `cat: ${R}: Permission denied\n`);
  t.equal(run(`echo 0 > ${R}; ls -d bus/mdev/devices/${U}`).stdout, `bus/mdev/devices/${U}\n`, '0 is a no-op');
  for (const bad of ['abc', '-1', "' 1'", "'1 '", '']) {
    t.equal(run(`echo ${bad} > ${R}`).stderr, err('Invalid argument'), `remove ${bad}`);
  }
  // Read with bash's read(2) rather than cat: fstat of a stale fd is a known fuse-native deviation.
  const r = run(`exec 3> ${R}; exec 4< bus/mdev/devices/${U}/uevent
    echo 1 > ${R}; echo rc=$?
    ls -d bus/mdev/devices/${U} 2>&1
    echo 1 >&3; echo stale-write=$?
    read -r line <&4; echo stale-read=$?
    echo 1 > ${R}`);
  t.equal(
    r.stdout,
    `rc=0\nls: cannot access 'bus/mdev/devices/${U}': No such file or directory\nstale-write=1\nstale-read=1\n`,
  );
  t.equal(
    r.stderr,
    'bash: line 4: echo: write error: No such device\nbash: line 5: read: read error: 0: No such device\n' +
      `bash: line 6: ${R}: No such file or directory\n`,
  );
  t.equal(run(`echo 0x1 > bus/mdev/devices/00000000-0000-0000-0000-000000000001/remove`).code, 0, 'base 0: hex');
  t.equal(run(`printf 2 > bus/mdev/devices/00000000-0000-0000-0000-000000000002/remove`).code, 0, 'any non-zero');
  t.equal(run('ls bus/mdev/devices | grep -c 00000000-0000-0000-0000-00000000000[12]').stdout, '0\n');
  t.equal(avail(), '24 12 4 4 4 ');
  t.equal(run(`echo ${U} > ${MT}/mtty-1/create && readlink bus/mdev/devices/${U}/mdev_type`).stdout, '../mdev_supported_types/mtty-1\n');
});

t.test('unbind detaches the driver, bind is ENODEV (5.15+ mdev drivers never match)', async (t) => {
  t.equal(run(`echo ${U} > ${MT}/mtty-1/create`).code, 0);
  t.equal(avail(), '23 11 4 4 4 ');
  t.equal(run(`echo ${U} > bus/mdev/drivers/mtty/unbind`).code, 0);
  t.equal(run(`ls bus/mdev/devices/${U}/`).stdout, 'mdev_type\npower\nremove\nsubsystem\nuevent\n');
  t.equal(run(`cat bus/mdev/devices/${U}/uevent | wc -c`).stdout, '0\n');
  t.equal(avail(), '24 12 4 4 4 ', 'the vendor gave its ports back');
  t.equal(run(`echo ${U} > bus/mdev/drivers/mtty/bind`).stderr, err('No such device'));
  t.equal(run(`echo ${U} > bus/mdev/drivers/mtty/unbind`).stderr, err('No such device'), 'not bound any more');
  t.equal(run(`echo 1 > bus/mdev/devices/${U}/remove`).code, 0, 'an unbound device can be removed');
});

// MDEVFS_SPIN_US keeps the daemon polling /dev/fuse between requests (direct backend; the
// other ignores it). Everything must work the same, and a SIGTERM must still end it at once.
const CYCLES = String.raw`
import os, sys, uuid
m = sys.argv[1]
t = m + "/class/mdev_bus/mtty/mdev_supported_types/mtty-1/"
def w(p, b):
    fd = os.open(p, os.O_WRONLY); os.write(fd, b); os.close(fd)
ok = 0
for i in range(200):
    u = str(uuid.uuid4())
    w(t + "create", u.encode())
    a = open(t + "available_instances").read()
    w(m + "/bus/mdev/devices/" + u + "/remove", b"1")
    ok += a == "23\n" and not os.path.exists(m + "/bus/mdev/devices/" + u)
print(ok, open(t + "available_instances").read().strip())
`;

// A daemon that spun on and never stopped would hang the test: it fails at this timeout.
t.test('with MDEVFS_SPIN_US the daemon answers the same and stops on SIGTERM', { timeout: 60_000 }, async (t) => {
  const s = await startDaemon({ env: { MDEVFS_SPIN_US: '500' } });
  const r = sh(s.dir, `python3 -c '${CYCLES}' .`);
  t.equal(r.stdout, '200 24\n', '200 cycles, each seen');
  t.equal(await s.stop(), 0, 'exits 0 on SIGTERM');
  t.notOk(isMounted(s.dir), 'no mount left');
});
