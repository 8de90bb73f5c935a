import { spawn } from 'node:child_process';
import t from 'tap';
import { sh, startDaemon } from '../helpers/daemon';

const uuid = (n: number) => `00000000-0000-0000-0000-${String(n).padStart(12, '0')}`;
const T = (p: string, ty: string) => `class/mdev_bus/${p}/mdev_supported_types/${ty}`;

const parent = (name: string, faults: object = {}) => ({
  name,
  path: `devices/virtual/${name}/${name}`,
  class: name,
  mdevDriver: name,
  capacity: { model: 'counter', max: 64 },
  faults,
  types: [{ name: 'a' }, { name: 'b' }, { name: 'c' }, { name: 'd' }],
});

t.test('16 parallel creates across types all succeed and all appear', async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.stop());
  const types = [T('mtty', 'mtty-1'), T('mtty', 'mtty-2'), T('mdpy', 'mdpy-vga'), T('mdpy', 'mdpy-hd'),
    T('mbochs', 'mbochs-small'), T('mbochs', 'mbochs-medium'), T('mbochs', 'mbochs-large'), T('mtty', 'mtty-1')];
  const jobs = Array.from({ length: 16 }, (_, i) => `echo ${uuid(i + 1)} > ${types[i % 8]}/create || echo FAIL ${i + 1} >&2 &`);
  // mdpy holds 4 in total: 2 types x 2 rounds = 4 creates, exactly its capacity.
  const r = sh(d.dir, `${jobs.join('\n')}\nwait`);
  t.equal(r.stderr, '', 'no create failed');
  t.equal(sh(d.dir, 'ls bus/mdev/devices | wc -l').stdout, '16\n');
  t.equal(sh(d.dir, 'for u in bus/mdev/devices/*; do basename $(readlink -f $u/mdev_type); done | sort | uniq -c | tr -s " "').stdout,
    ' 2 mbochs-large\n 2 mbochs-medium\n 2 mbochs-small\n 2 mdpy-hd\n 2 mdpy-vga\n 4 mtty-1\n 2 mtty-2\n');
  t.equal(sh(d.dir, 'ls kernel/iommu_groups | sort -n | tr "\\n" " "').stdout, '0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 ');
});

t.test('the same UUID written in parallel to two parents: one success, one EEXIST', async (t) => {
  const d = await startDaemon({ profile: { parents: [parent('p1', { createDelayMs: 300 }), parent('p2', { createDelayMs: 300 })] } });
  t.teardown(() => d.stop());
  for (let round = 1; round <= 5; round++) {
    const u = uuid(100 + round);
    const r = sh(d.dir, `(echo ${u} > ${T('p1', 'p1-a')}/create && echo ok1) 2>&1 &
      (echo ${u} > ${T('p2', 'p2-b')}/create && echo ok2) 2>&1 &
      wait`);
    const lines = r.stdout.trim().split('\n').map((l) => l.replace(/^bash: line \d+: /, '')).sort();
    t.equal(lines.length, 2, `round ${round}`);
    t.equal(lines.filter((l) => l === 'echo: write error: File exists').length, 1, `round ${round}: one EEXIST`);
    t.equal(lines.filter((l) => /^ok[12]$/.test(l)).length, 1, `round ${round}: one success`);
  }
  t.equal(sh(d.dir, 'ls bus/mdev/devices | wc -l').stdout, '5\n');
});

t.test('a slow vendor create does not delay a create on another parent or type', async (t) => {
  const d = await startDaemon({ profile: { parents: [parent('slow', { createDelayMs: 4000 }), parent('fast')] } });
  t.teardown(() => d.stop());
  // The slow create runs in its own process; everything below happens while it is in flight.
  const slow = spawn('bash', ['-c', `echo ${uuid(1)} > ${T('slow', 'slow-a')}/create`], { cwd: d.dir });
  let slowDone = false;
  const slowExit = new Promise<number | null>((r) => slow.on('exit', (code) => ((slowDone = true), r(code))));
  for (let i = 0; i < 100 && sh(d.dir, `test -e bus/mdev/devices/${uuid(1)}`).code !== 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(sh(d.dir, `test -d bus/mdev/devices/${uuid(1)}`).code, 0, 'the slow device is in the reserved window');
  t.equal(sh(d.dir, `echo ${uuid(2)} > ${T('fast', 'fast-a')}/create`).code, 0, 'create on another parent');
  t.equal(sh(d.dir, `echo ${uuid(3)} > ${T('fast', 'fast-b')}/create`).code, 0, 'and on another type');
  t.equal(sh(d.dir, `echo ${uuid(1)} > ${T('fast', 'fast-c')}/create`).stderr, 'bash: line 1: echo: write error: File exists\n',
    'the in-flight UUID is taken on every parent');
  t.equal(sh(d.dir, `ls bus/mdev/devices/${uuid(1)}`).stdout, 'power\nremove\nsubsystem\nuevent\n', 'not complete yet: no mdev_type');
  t.notOk(slowDone, 'all of that finished while the slow create was still in flight');
  t.equal(await slowExit, 0);
  t.equal(sh(d.dir, `readlink bus/mdev/devices/${uuid(1)}/mdev_type`).stdout, '../mdev_supported_types/slow-a\n',
    'the write returned only once the tree was complete');
});
