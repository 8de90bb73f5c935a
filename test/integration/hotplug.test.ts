import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { CLI, cliEnv, scratch, sh, startDaemon } from '../helpers/daemon';

// Parents come and go while mounted (docs/mdev-abi.md, "Parent registration and unregistration"): in-flight work finishes, later writes get
// ENODEV, the class link, children and types disappear, stale fds get ENODEV.
const ctl = (...args: string[]) => spawnSync(process.execPath, [CLI, 'ctl', ...args], { encoding: 'utf8', timeout: 30000, env: cliEnv() });
const slow = {
  name: 'slow',
  path: 'devices/virtual/slow/slow',
  class: 'slow',
  mdevDriver: 'slow',
  capacity: { model: 'counter', max: 8 },
  faults: { createDelayMs: 1500 },
  types: [{ name: 'a' }],
};

t.test('add a parent, use it, remove it while a create is in flight, add it back', async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.stop());
  const file = join(scratch('mdevfs-hp-'), 'slow.json');
  writeFileSync(file, JSON.stringify(slow));

  t.equal(ctl(d.dir, 'parents').stdout, 'mtty\nmdpy\nmbochs\n');
  t.equal(ctl(d.dir, 'add-parent', file).status, 0);
  t.equal(sh(d.dir, 'ls class/mdev_bus bus/mdev/drivers | tr "\\n" " "').stdout,
    'bus/mdev/drivers: mbochs mdpy mtty slow  class/mdev_bus: mbochs mdpy mtty slow ');
  const dup = ctl(d.dir, 'add-parent', file);
  t.equal(dup.status, 1);
  t.equal(dup.stderr, 'mdevfs ctl: parent slow exists\n');

  const T = 'class/mdev_bus/slow/mdev_supported_types/slow-a';
  t.equal(sh(d.dir, `echo 00000000-0000-0000-0000-000000000001 > ${T}/create`).code, 0);
  // A slow create in flight, a descriptor held open on the type's create file and on a device.
  const inflight = spawn('bash', ['-c', `exec 3> ${T}/create 4> bus/mdev/devices/00000000-0000-0000-0000-000000000001/remove
    echo 00000000-0000-0000-0000-000000000002 >&3; echo create=$?
    while [ -e ${T} ]; do sleep 0.05; done
    echo 00000000-0000-0000-0000-000000000003 >&3; echo 1 >&4`], { cwd: d.dir });
  let out = '';
  inflight.stdout.on('data', (c) => (out += c));
  inflight.stderr.on('data', (c) => (out += c));
  const done = new Promise((r) => inflight.on('exit', r));
  for (let i = 0; i < 100 && sh(d.dir, 'test -e bus/mdev/devices/00000000-0000-0000-0000-000000000002').code !== 0; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const removal = ctl(d.dir, 'remove-parent', 'slow');
  t.equal(removal.status, 0, 'remove-parent returns once everything is gone');
  await done;
  t.equal(out,
    'create=0\nbash: line 4: echo: write error: No such device\nbash: line 4: echo: write error: No such device\n',
    'the in-flight create finished; writes through stale fds get ENODEV');
  t.equal(sh(d.dir, 'ls class/mdev_bus bus/mdev/drivers devices/virtual bus/mdev/devices | tr "\\n" " "').stdout,
    'bus/mdev/devices:  bus/mdev/drivers: mbochs mdpy mtty  class/mdev_bus: mbochs mdpy mtty  devices/virtual: mbochs mdpy mtty ');
  t.equal(sh(d.dir, 'ls kernel/iommu_groups | wc -l').stdout, '0\n', 'the children released their groups');
  t.equal(ctl(d.dir, 'remove-parent', 'slow').stderr, 'mdevfs ctl: no parent slow\n');

  t.equal(ctl(d.dir, 'add-parent', file).status, 0, 'the same parent can come back');
  t.equal(sh(d.dir, `cat ${T}/available_instances; echo 00000000-0000-0000-0000-000000000001 > ${T}/create`).stdout, '8\n');
});

t.test('add-parent of a profile some of whose parents are there: the others come back, those are named and left as they are', async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.stop());
  const U = '00000000-0000-0000-0000-000000000001';
  const MTTY2 = 'class/mdev_bus/mtty/mdev_supported_types/mtty-2';
  t.equal(sh(d.dir, `echo ${U} > ${MTTY2}/create`).code, 0);
  t.equal(ctl(d.dir, 'remove-parent', 'mdpy').status, 0);
  const r = ctl(d.dir, 'add-parent', 'samples');
  t.equal(r.status, 0, 'the missing parent added');
  t.equal(r.stderr, 'mdevfs ctl: added mdpy; mtty, mbochs exist already (left as they are)\n');
  t.equal(ctl(d.dir, 'parents').stdout, 'mtty\nmbochs\nmdpy\n');
  t.equal(sh(d.dir, `ls class/mdev_bus/mdpy/mdev_supported_types; readlink bus/mdev/devices/${U}/mdev_type; cat ${MTTY2}/available_instances`).stdout,
    'mdpy-hd\nmdpy-vga\nmdpy-xga\n../mdev_supported_types/mtty-2\n11\n', 'mdpy with its types; mtty kept its device and its count');

  // All of them there: refused, and nothing changes.
  const all = ctl(d.dir, 'add-parent', 'samples');
  t.equal(all.status, 1);
  t.equal(all.stderr, 'mdevfs ctl: parents mtty, mdpy, mbochs exist\n');
  t.equal(ctl(d.dir, 'parents').stdout, 'mtty\nmbochs\nmdpy\n');
  t.equal(sh(d.dir, `cat ${MTTY2}/available_instances`).stdout, '11\n');
});

t.test('ctl without a daemon, and bad requests', async (t) => {
  const none = ctl(scratch('mdevfs-none-'), 'parents');
  t.equal(none.status, 1);
  t.match(none.stderr, 'mdevfs ctl: no daemon answers on');
  t.equal(ctl('.', 'frobnicate').status, 2);
  const d = await startDaemon();
  t.teardown(() => d.stop());
  const bad = join(scratch('mdevfs-bad-'), 'bad.json');
  writeFileSync(bad, JSON.stringify({ name: 'x', path: 'sys/x', mdevDriver: 'x', capacity: { model: 'counter', max: 1 }, types: [{ name: 'a' }] }));
  const r = ctl(d.dir, 'add-parent', bad);
  t.equal(r.status, 2, 'a refused profile is a usage error, as with --profile (issue #16)');
  t.equal(r.stderr, `mdevfs ctl: profile ${bad} refused:\n  parents[0].path: must be devices/... ending with the parent's name\n`);
});
