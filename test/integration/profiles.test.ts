// runs once, on the default backend: what a profile builds does not depend on the backend (tree.test and conformance check both backends serve the same tree)
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { BUILTINS, WITH_GPUS } from '../../src/drivers/builtin/index';
import { CLI, backendArgs, cliEnv, scratch, sh, startDaemon } from '../helpers/daemon';

// `mdevfs profiles` lists the built-ins; `profiles show NAME` prints one as a JSON profile that
// `--profile FILE` replays exactly; `--gpus N` grows the one-GPU built-ins (issue #16).

const work = scratch('mdevfs-profiles-');
let seq = 0;

const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30000, env: cliEnv() });

/** `mdevfs exec` without blocking the event loop, so a few run side by side. */
function execAsync(profile: string, ...command: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return cliAsync('exec', ...backendArgs, '--profile', profile, '--', ...command);
}

/** The CLI without blocking the event loop. */
function cliAsync(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: cliEnv({ LC_ALL: 'C' }), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Every entry of /sys as the program under exec sees it: links and targets, modes, every file's content (or its errno). */
const LISTING = String.raw`
import os, errno
out = []
for root, dirs, files in os.walk('/sys'):
    dirs.sort()
    for n in sorted(dirs + files):
        p = os.path.join(root, n)
        st = os.lstat(p)
        if os.path.islink(p):
            out.append('%s -> %s' % (p, os.readlink(p)))
        elif os.path.isdir(p):
            out.append('%s/ %o' % (p, st.st_mode & 0o7777))
        else:
            try:
                with open(p, 'rb') as f:
                    c = repr(f.read())
            except OSError as e:
                c = '<%s>' % errno.errorcode[e.errno]
            out.append('%s %o %s' % (p, st.st_mode & 0o7777, c))
print('\n'.join(out))
`;
const TREE_AND_TYPES = `python3 -c "$1" && echo --- && mdevctl types`;

function showTo(name: string, ...extra: string[]): string {
  const r = cli('profiles', 'show', name, ...extra);
  if (r.status !== 0) throw new Error(`profiles show ${name}: ${r.status} ${r.stderr}`);
  const file = join(work, `${name}-${++seq}.json`);
  writeFileSync(file, r.stdout);
  return file;
}

t.test('mdevfs profiles lists every built-in, one a line, with the host it emulates', async (t) => {
  const r = cli('profiles');
  t.equal(r.status, 0, r.stderr);
  const lines = r.stdout.split('\n').filter(Boolean);
  t.same(lines.map((l) => l.split(/ +/)[0]), Object.keys(BUILTINS));
  for (const [name, p] of Object.entries(BUILTINS)) {
    t.ok(p.description, `${name} has a description`);
    t.ok(lines.some((l) => l.startsWith(name) && l.endsWith(`  ${p.description}`)), `${name}: its description`);
  }
  t.match(lines.find((l) => l.startsWith('nvidia-v100 ')), /10de:1db4/, 'a GPU names its PCI id');
});

t.test('profiles show NAME replays exactly as --profile NAME: the whole tree and mdevctl types', { jobs: 2 }, async (t) => {
  for (const name of Object.keys(BUILTINS)) {
    t.test(name, { buffered: true }, async (t) => {
      const file = showTo(name);
      const [byName, byFile] = await Promise.all([execAsync(name, 'bash', '-c', TREE_AND_TYPES, 'bash', LISTING), execAsync(file, 'bash', '-c', TREE_AND_TYPES, 'bash', LISTING)]);
      t.equal(byName.code, 0, byName.stderr);
      t.equal(byFile.code, 0, byFile.stderr);
      t.match(byName.stdout, /\/sys\/bus\/pci\/devices\//, 'a listing of the tree');
      t.ok(byName.stdout.split('\n').length > 100, 'of the whole tree');
      t.equal(byFile.stdout, byName.stdout, 'the same tree, file by file, and the same mdevctl types');
    });
  }
});

t.test('--gpus 4: four T4s at their own PCI addresses, each in its own IOMMU group', async (t) => {
  const file = showTo('nvidia-t4', '--gpus', '4');
  const r = await execAsync(file, 'bash', '-c', 'cd /sys && lspci -nn && for d in bus/pci/devices/*; do echo "$d $(readlink $d/iommu_group)"; done && ls class/mdev_bus && mdevctl types | grep -c "Name: GRID T4-1Q"');
  t.equal(r.code, 0, r.stderr);
  t.equal(
    r.stdout,
    [
      '00:04.0 3D controller [0302]: NVIDIA Corporation TU104GL [Tesla T4] [10de:1eb8] (rev a1)',
      '01:00.0 3D controller [0302]: NVIDIA Corporation TU104GL [Tesla T4] [10de:1eb8] (rev a1)',
      '02:00.0 3D controller [0302]: NVIDIA Corporation TU104GL [Tesla T4] [10de:1eb8] (rev a1)',
      '03:00.0 3D controller [0302]: NVIDIA Corporation TU104GL [Tesla T4] [10de:1eb8] (rev a1)',
      'bus/pci/devices/0000:00:04.0 ../../../kernel/iommu_groups/0',
      'bus/pci/devices/0000:01:00.0 ../../../kernel/iommu_groups/1',
      'bus/pci/devices/0000:02:00.0 ../../../kernel/iommu_groups/2',
      'bus/pci/devices/0000:03:00.0 ../../../kernel/iommu_groups/3',
      '0000:00:04.0',
      '0000:01:00.0',
      '0000:02:00.0',
      '0000:03:00.0',
      '4',
      '',
    ].join('\n'),
  );
});

t.test('every one-GPU built-in grows with --gpus; each GPU keeps its own rule', { jobs: 2 }, async (t) => {
  for (const name of Object.keys(WITH_GPUS)) {
    t.test(name, { buffered: true }, async (t) => {
      const file = showTo(name, '--gpus', '3');
      const r = await execAsync(file, 'bash', '-c', 'cd /sys && lspci -n | grep -c " 10de:" ; for d in bus/pci/devices/*; do readlink $d/iommu_group; done | sort | uniq -d | wc -l; lspci -s 02:00.0');
      t.equal(r.code, 0, r.stderr);
      const [functions, sharedGroups, third] = r.stdout.split('\n');
      const perGpu = 1 + (BUILTINS[name]!.parents[0]!.pci!.sriov?.totalVfs ?? 0);
      t.equal(Number(functions), 3 * perGpu, 'three GPUs with their VFs');
      t.equal(sharedGroups, '0', 'no IOMMU group shared');
      t.match(third, /^02:00\.0 3D controller: NVIDIA/, 'the third on bus 02');
    });
  }
  const d = await startDaemon({ profile: showTo('nvidia-t4', '--gpus', '2'), logLevel: 'warn' });
  t.teardown(() => d.stop());
  const T = (bdf: string) => `class/mdev_bus/${bdf}/mdev_supported_types`;
  t.equal(sh(d.dir, `echo 00000000-0000-4000-8000-000000000001 > ${T('0000:00:04.0')}/nvidia-231/create`).code, 0);
  t.equal(sh(d.dir, `cat ${T('0000:00:04.0')}/nvidia-230/available_instances ${T('0000:01:00.0')}/nvidia-230/available_instances`).stdout, '0\n16\n', 'a vGPU on one GPU leaves the other free');
});

t.test('usage errors exit 2', async (t) => {
  const cases = [['profiles', 'show'], ['profiles', 'show', 'nvidia-t9'], ['profiles', 'list'], ['profiles', '--gpus', '2'],
    ['profiles', 'show', 'gvt', '--gpus', '2'], ['profiles', 'show', 'nvidia-t4', '--gpus', '0'], ['profiles', 'show', 'nvidia-t4', '--gpus', '17'],
    ['profiles', 'show', 'nvidia-t4', '--gpus', 'four']];
  // Side by side: each is a process of its own that changes nothing.
  const results = await Promise.all(cases.map((args) => cliAsync(...args)));
  cases.forEach((args, i) => {
    t.equal(results[i]!.code, 2, `${args.join(' ')}: ${results[i]!.stderr}`);
    t.equal(results[i]!.stdout, '', 'nothing printed');
  });
  t.match(results[1]!.stderr, /no built-in profile "nvidia-t9" \(samples, gvt/);
});

t.test('ctl add-parent takes a built-in name, so a removed parent comes back; a refused profile exits 2 as with --profile', async (t) => {
  const d = await startDaemon({ profile: 'nvidia-t4', logLevel: 'warn' });
  t.teardown(() => d.stop());
  const types = () => sh(d.dir, 'ls class/mdev_bus/*/mdev_supported_types | wc -l; ls class/mdev_bus').stdout;
  const before = types();
  t.equal(before, '17\n0000:00:04.0\n');
  const removed = cli('ctl', d.dir, 'remove-parent', '0000:00:04.0');
  t.equal(removed.status, 0, removed.stderr);
  t.equal(sh(d.dir, 'ls class/mdev_bus').stdout, '');
  const added = cli('ctl', d.dir, 'add-parent', 'nvidia-t4');
  t.equal(added.status, 0, added.stderr);
  t.equal(types(), before, 'the parent is back with its types');
  t.equal(sh(d.dir, 'readlink bus/pci/devices/0000:00:04.0/driver').stdout, '../../../bus/pci/drivers/nvidia\n');

  // Refused before anything is sent: the same exit code and message as a mount with --profile.
  const bad = join(work, 'bad-parent.json');
  const parent = { name: 'gpu1', path: 'devices/virtual/gpu/gpu1', class: 'gpu', mdevDriver: 'gpu', capacity: { model: 'pool', size: 8 }, types: [{ name: 'big', cost: 16 }] };
  writeFileSync(bad, JSON.stringify({ parents: [parent] }));
  const syntax = join(work, 'syntax.json');
  writeFileSync(syntax, '{\n  "parents": [\n    { "name": "x", }\n  ]\n}\n');
  for (const [file, message] of [
    [bad, /parents\[0\]\.types\[0\]\.cost: 16 can never fit the pool of 8/],
    [syntax, /syntax\.json:3:20: not JSON/],
    ['nvidia-t9', /profile "nvidia-t9" is neither a built-in \(samples, .*\) nor a readable file/],
  ] as const) {
    const ctl = cli('ctl', d.dir, 'add-parent', file);
    t.equal(ctl.status, 2, `ctl add-parent ${file}: ${ctl.stderr}`);
    t.match(ctl.stderr, message);
    const mount = cli('mount', join(work, `m-${++seq}`), ...backendArgs, '--profile', file);
    t.equal(mount.status, 2, `mount --profile ${file}`);
    t.match(mount.stderr, message);
  }
  const lone = join(work, 'lone-parent.json');
  writeFileSync(lone, JSON.stringify(parent));
  const one = cli('ctl', d.dir, 'add-parent', lone);
  t.equal(one.status, 2, 'a file of one parent, refused alike');
  t.match(one.stderr, /parents\[0\]\.types\[0\]\.cost: 16 can never fit the pool of 8/);
  t.equal(types(), before, 'nothing changed');
  // A parent the daemon refuses (it exists) is no usage error.
  const again = cli('ctl', d.dir, 'add-parent', 'nvidia-t4');
  t.equal(again.status, 1);
  t.match(again.stderr, /0000:00:04\.0 exists/);
});
