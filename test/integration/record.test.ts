// runs once, on the default backend: what it checks is the recording (record reads a tree as any client does, and the replayed profile builds the same emulation whichever backend serves it); what each backend answers is checked on both by conformance, tree and cache-agreement
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { promises as fsp } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import t, { type Test } from 'tap';
import { BUILTIN_PROFILES } from '../../src/drivers/profile';
import type { PresentVf, Profile } from '../../src/drivers/profile-types';
import { expected, runScenario } from '../helpers/conformance';
import { CLI, REPO, backendArgs, cliEnv, isMounted, scratch, sh, startDaemon } from '../helpers/daemon';

// `mdevfs record` reads a tree and writes a profile; mounting that profile must show what the
// tree showed (mdevctl types, mdevctl list, every file of the parents) and behave as it did.

const work = scratch('mdevfs-record-');
let seq = 0;

/** Runs a command without blocking the test's event loop (the built-ins are checked a few at a time). */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function record(root: string): Promise<{ code: number | null; stderr: string; file: string; text: string }> {
  const file = join(work, `rec-${++seq}.json`);
  const r = await run(process.execPath, [CLI, 'record', root, '-o', file], cliEnv());
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    // no recording
  }
  return { code: r.code, stderr: r.stderr, file, text };
}

/** Runs a script with TREE bind-mounted over /sys (and a scratch /etc/mdevctl.d), as mdevfs exec does. */
async function overSys(tree: string, script: string): Promise<string> {
  const etc = join(work, `etc-${++seq}`);
  mkdirSync(join(etc, 'scripts.d', 'callouts'), { recursive: true });
  mkdirSync(join(etc, 'scripts.d', 'notifiers'), { recursive: true });
  const inner = 'mount --bind "$1" /sys && mkdir -p /etc/mdevctl.d && mount --bind "$2" /etc/mdevctl.d || exit 125; cd /sys; eval "$SCRIPT"';
  const r = await run('unshare', ['-m', '--propagation', 'private', 'bash', '-c', inner, 'bash', tree, etc], {
    ...process.env,
    LC_ALL: 'C',
    SCRIPT: script,
  });
  return r.stdout + r.stderr;
}

const MDEVCTL = 'mdevctl types; echo ---; mdevctl list';

/**
 * Every entry below each parent (links with their targets, files with mode and content or the
 * error a read gets), then every name under class, bus, kernel and module with link targets.
 * Read here, in the test process: the daemons are children, never this process.
 */
/** Entries below ROOT/rel, sorted: links with their targets, files with mode (and content or the read's errno). */
async function walkTree(root: string, rel: string, content: boolean, out: string[]): Promise<void> {
  const full = join(root, rel);
  const st = await fsp.lstat(full);
  if (st.isSymbolicLink()) out.push(`${rel} -> ${await fsp.readlink(full)}`);
  else if (st.isDirectory()) {
    out.push(`${rel}/`);
    for (const name of (await fsp.readdir(full)).sort()) await walkTree(root, `${rel}/${name}`, content, out);
  } else {
    const text = content ? await fsp.readFile(full).then((b) => b.toString('latin1'), (e: NodeJS.ErrnoException) => `<${e.code}>`) : '';
    out.push(`${rel} ${(st.mode & 0o777).toString(8)} ${JSON.stringify(text)}`);
  }
}

async function listing(root: string): Promise<string> {
  // Asynchronous, so the built-ins checked side by side (and their two daemons) overlap.
  const out: string[] = [];
  for (const name of readdirSync(join(root, 'class', 'mdev_bus')).sort()) {
    const dir = relative(realpathSync(root), realpathSync(join(root, 'class', 'mdev_bus', name)));
    out.push(`== ${name} -> ${dir}`);
    await walkTree(root, dir, true, out);
  }
  for (const top of ['class', 'bus', 'kernel', 'module']) if (existsSync(join(root, top))) await walkTree(root, top, false, out);
  return out.join('\n') + '\n';
}

/** The listings of two trees, read side by side. */
async function listings(a: string, b: string): Promise<[string, string]> {
  return Promise.all([listing(a), listing(b)]);
}

/** Type directories (relative to the root) with their available_instances. */
function avail(root: string, parents = Infinity): string {
  const out: string[] = [];
  for (const p of readdirSync(join(root, 'class', 'mdev_bus')).sort().slice(0, parents)) {
    const dir = join('class', 'mdev_bus', p, 'mdev_supported_types');
    for (const ty of readdirSync(join(root, dir)).sort()) out.push(`${dir}/${ty} ${readFileSync(join(root, dir, ty, 'available_instances'), 'latin1').trim()}`);
  }
  return out.join('\n') + '\n';
}

/** The dynamics look at a few parents (an SR-IOV GPU's other VFs behave as these do): enough, and quick. */
const FEW = 4;
const typeDirs = (root: string) => avail(root, FEW).trim().split('\n').map((l) => l.split(' ')[0]!);
const uuid = (n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;

/** A write as a shell's echo does it: "ok" or the errno code. */
function write(root: string, path: string, text: string): string {
  try {
    writeFileSync(join(root, path), text);
    return 'ok';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? 'error';
  }
}

/** Creates, on the first parents, one device of the first type that has room (so recordings hold devices present). */
function populate(root: string): void {
  const seen = new Set<string>();
  let n = 100;
  for (const line of avail(root, FEW - 1).trim().split('\n')) {
    const [ty, count] = line.split(' ');
    const parent = ty!.split('/')[2]!;
    if (seen.has(parent) || Number(count) <= 0) continue;
    seen.add(parent);
    write(root, `${ty}/create`, `${uuid(n++)}\n`);
  }
}

/**
 * The same removes and creates on two trees, with every available_instances after each step:
 * the replay's capacity model must answer as the original's does. The devices present at start
 * go first (their capacity comes back), then a create and a remove of a few types per parent.
 */
function sameDynamics(t: Test, a: string, b: string): void {
  const steps: [string, string][] = readdirSync(join(a, 'bus', 'mdev', 'devices')).map((u) => [`bus/mdev/devices/${u}/remove`, '1\n']);
  const perParent = new Map<string, number>();
  typeDirs(a).forEach((ty, i) => {
    const parent = ty.split('/')[2]!;
    const n = perParent.get(parent) ?? 0;
    if (n >= 4) return;
    perParent.set(parent, n + 1);
    steps.push([`${ty}/create`, `${uuid(200 + i)}\n`], [`bus/mdev/devices/${uuid(200 + i)}/remove`, '1\n']);
  });
  const run = (root: string) => steps.map(([path, text]) => `${path} <- ${text.trim()}: ${write(root, path, text)}\n${avail(root, FEW)}`).join('');
  const before = run(a);
  t.match(before, /create <- .*: ok\n/, 'some create succeeds');
  t.equal(run(b), before, 'every create and remove changes available_instances as on the original');
}

// One namespace per comparison is plenty; the built-ins and ABIs to round-trip.
const cases: { name: string; profile: string; abi?: string }[] = [
  ...Object.keys(BUILTIN_PROFILES).map((name) => ({ name, profile: name })),
  { name: 'samples on the 4.17 ABI', profile: 'samples', abi: '4.17' },
  { name: 'gvt on the 4.17 ABI (no name file)', profile: 'gvt', abi: '4.17' },
];

/**
 * NVIDIA vendor-specific VFIO (no mdev parents): the PF and its VFs, nvidia/ files included,
 * read the same, and a vGPU set and cleared on a VF changes every VF's creatable list alike.
 * `held` (VF index -> type id) is set on the original before it is recorded: the replay starts
 * with it, and (`live`) clearing it frees the GPU as on the original.
 */
async function vendorVfioRoundTrip(t: Test, orig: string, held: [number, string][] = [], live = true): Promise<{ stderr: string; profile: Profile }> {
  const vfs = readdirSync(join(orig, 'bus/pci/devices')).filter((d) => existsSync(join(orig, 'bus/pci/devices', d, 'nvidia'))).sort();
  const current = (vf: string) => `bus/pci/devices/${vf}/nvidia/current_vgpu_type`;
  for (const [i, id] of held) t.equal(write(orig, current(vfs[i]!), `${id}\n`), 'ok', `${vfs[i]} <- ${id} on the original`);
  const r = await record(orig);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /capacity nvidia same-size on vendor-specific VFIO VFs/);
  const profile = JSON.parse(r.text) as Profile;
  const pf = profile.parents[0]!;
  const wanted = held.map(([i, id]) => ({ name: vfs[i]!, attrs: { 'nvidia/current_vgpu_type': id } })).sort((a, b) => a.name.localeCompare(b.name));
  t.same(pf.vfs ?? [], wanted, 'each VF\'s vGPU type is recorded as a write at start');
  const replay = await startDaemon({ profile: r.file, logLevel: 'warn' });
  t.teardown(() => replay.stop());
  const root = dirname(pf.path);
  const files = async (dir: string) => {
    const out = [await listing(dir)];
    await walkTree(dir, root, true, out);
    out.push(sh(dir, `for f in bus/pci/devices/*/nvidia/current_vgpu_type; do echo "$f: $(cat $f)"; done`).out);
    return out.join('\n');
  };
  const before = await files(orig);
  for (const [i, id] of held) t.match(before, new RegExp(`${vfs[i]!.replace(/\./g, '\\.')}/nvidia/current_vgpu_type: ${id}\n`));
  t.equal(await files(replay.dir), before, 'the PF and VFs, file by file, and cat current_vgpu_type');
  const lists = (dir: string) => vfs.map((vf) => readFileSync(join(dir, 'bus/pci/devices', vf, 'nvidia/creatable_vgpu_types'), 'latin1')).join('--\n');
  const step = (i: number, value: string) => {
    t.equal(write(replay.dir, current(vfs[i]!), value), write(orig, current(vfs[i]!), value), `${vfs[i]} current_vgpu_type <- ${value}`);
    t.equal(lists(replay.dir), lists(orig), `every VF's creatable list after ${vfs[i]} <- ${value}`);
  };
  if (!live) return { stderr: r.stderr, profile };
  // Clearing what was held frees the GPU as on the original: the replay's vGPUs took capacity.
  for (const [i] of held) step(i, '0');
  if (held.length > 0) t.match(lists(orig), /NVIDIA L40S-48Q\n/, 'the whole GPU is free again');
  const id = /\n(\d+) +: [^\n]*-1Q\n/.exec(lists(orig))![1]!;
  for (const value of [id, '0', '0']) step(0, value);
  return { stderr: r.stderr, profile };
}

// Two tests of this file at a time: each has its own daemons and files, and most of a test is
// waiting on processes (daemons starting, record, mdevctl). The two with parallel subtests of their
// own are the first and the last, so they meet only lighter tests.
t.jobs = 2;

// The built-ins a few at a time (each waits mostly on daemons starting): the file stays under a minute.
t.test('recordings replay as the original', { jobs: 4 }, async (t) => {
  for (const c of cases) {
    t.test(`a recording of ${c.name}`, { buffered: true }, async (t) => {
      const orig = await startDaemon({ profile: c.profile, abi: c.abi, logLevel: 'warn' });
      t.teardown(() => orig.stop());
      if (readdirSync(join(orig.dir, 'class', 'mdev_bus')).length === 0) {
        await vendorVfioRoundTrip(t, orig.dir);
        return;
      }
      populate(orig.dir);
      const r = await record(orig.dir);
      t.equal(r.code, 0, r.stderr);
      const replay = await startDaemon({ profile: r.file, logLevel: 'warn' });
      t.teardown(() => replay.stop());
      const tools = await overSys(orig.dir, MDEVCTL);
      t.match(tools, /Available instances/);
      t.match(tools, new RegExp(`---\n(.*\n)*${uuid(100)} `), 'mdevctl lists the devices present');
      t.equal(await overSys(replay.dir, MDEVCTL), tools, 'mdevctl types and list');
      const [replayed, original] = await listings(replay.dir, orig.dir);
      t.equal(replayed, original, 'the parents, file by file');
      sameDynamics(t, orig.dir, replay.dir);
    });
  }
});

t.test('the recording: a header, devices present, and nothing of the recording machine', async (t) => {
  const orig = await startDaemon({ profile: 'samples', logLevel: 'warn' });
  t.teardown(() => orig.stop());
  sh(orig.dir, `echo ${uuid(7)} > class/mdev_bus/mtty/mdev_supported_types/mtty-2/create`);
  const before = new Date().toISOString();
  const r = await record(orig.dir);
  const after = new Date().toISOString();
  t.equal(r.code, 0, r.stderr);
  const profile = JSON.parse(r.text);
  const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8'));
  t.same(Object.keys(profile.recorded).sort(), ['date', 'kernel', 'mdevfs']);
  t.equal(profile.recorded.kernel, 'unknown', 'a FUSE mount is not this kernel\'s sysfs');
  t.equal(profile.recorded.mdevfs, pkg.version);
  t.ok(before <= profile.recorded.date && profile.recorded.date <= after, `dated when it ran: ${before} <= ${profile.recorded.date} <= ${after}`);
  const mtty = profile.parents.find((p: { name: string }) => p.name === 'mtty');
  t.same(mtty.devices, [{ uuid: uuid(7), type: '2', iommuGroup: 0, vfio: 0 }]);
  t.same(mtty.capacity, { model: 'pool', size: 24, errno: 'ENOSPC', legacyErrno: null }, 'the mtty rule: 24 ports');
  t.notOk(r.text.includes(orig.dir), 'the recorded path is not in the recording');
  t.notOk(r.text.includes(hostname()), 'nor the host name');
  t.match(r.stderr, /mtty: capacity mtty ports/);

  // Standard output by default, and the same profile.
  const out = spawnSync(process.execPath, [CLI, 'record', orig.dir], { encoding: 'utf8', env: cliEnv() });
  t.equal(out.status, 0);
  const again = JSON.parse(out.stdout);
  delete again.recorded.date;
  delete profile.recorded.date;
  t.same(again, profile);

  // A copy of the tree (cp -a: files as read, links as they are) records as the tree itself.
  const copy = join(work, 'copy');
  spawnSync('cp', ['-a', orig.dir, copy]);
  const fromCopy = await record(copy);
  t.equal(fromCopy.code, 0, fromCopy.stderr);
  const copied = JSON.parse(fromCopy.text);
  delete copied.recorded.date;
  // A copy keeps names, contents and links, not the order a directory lists them in.
  type P = { name: string; types: { name: string }[] };
  const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);
  const ordered = (x: { parents: P[] }) => ({ ...x, parents: x.parents.map((p) => ({ ...p, types: [...p.types].sort(byName) })).sort(byName) });
  t.same(ordered(copied), ordered(profile), 'the same profile from a copy');
});

/** Writes a tree of plain files, directories and relative symlinks, as other projects' test suites do. */
function writeTree(name: string, fixture: { files: Record<string, string>; dirs?: string[]; links: Record<string, string> }): string {
  const tree = join(work, name);
  for (const [p, content] of Object.entries(fixture.files)) {
    mkdirSync(dirname(join(tree, p)), { recursive: true });
    writeFileSync(join(tree, p), content);
  }
  for (const p of fixture.dirs ?? []) mkdirSync(join(tree, p), { recursive: true });
  for (const [p, target] of Object.entries(fixture.links)) {
    mkdirSync(dirname(join(tree, p)), { recursive: true });
    symlinkSync(target, join(tree, p));
  }
  return tree;
}

t.test('a hand-made static tree (files and symlinks) replays identically, and lives', async (t) => {
  const fixture = JSON.parse(readFileSync(join(REPO, 'test', 'fixtures', 'record', 'nvidia-like-tree.json'), 'utf8')) as {
    files: Record<string, string>;
    dirs: string[];
    links: Record<string, string>;
  };
  const tree = writeTree('static', fixture);
  const r = await record(tree);
  t.equal(r.code, 0, r.stderr);
  const profile = JSON.parse(r.text);
  t.equal(profile.recorded.kernel, 'unknown');
  t.same(
    profile.parents[0].devices,
    [{ uuid: '5a1f0d2c-8e3b-4c7a-9d61-0b2e4f6a8c10', type: '231', iommuGroup: 19, attrs: { 'nvidia/vgpu_params': 'frame_rate_limiter=0\n' } }],
    'the device with the value written to its vgpu_params',
  );
  t.same(profile.parents[0].pci, { vendor: '0x10de', device: '0x1eb8', class: '0x030200', driver: 'nvidia' });
  const replay = await startDaemon({ profile: r.file, logLevel: 'warn' });
  t.teardown(() => replay.stop());
  t.equal(await overSys(replay.dir, MDEVCTL), await overSys(tree, MDEVCTL), 'mdevctl types and list');
  t.equal(
    await overSys(replay.dir, MDEVCTL),
    [
      '0000:00:04.0',
      '  nvidia-230',
      '    Available instances: 0',
      '    Device API: vfio-pci',
      '    Name: GRID T4-1Q',
      '    Description: num_heads=4, frl_config=60, framebuffer=1024M, max_resolution=5120x2880, max_instance=16',
      '  nvidia-231',
      '    Available instances: 7',
      '    Device API: vfio-pci',
      '    Name: GRID T4-2Q',
      '    Description: num_heads=4, frl_config=60, framebuffer=2048M, max_resolution=7680x4320, max_instance=8',
      '',
      '---',
      '5a1f0d2c-8e3b-4c7a-9d61-0b2e4f6a8c10 0000:00:04.0 nvidia-231 manual',
      '',
      '',
    ].join('\n'),
  );
  // Every file and link of the static tree is in the replay, the same.
  const same = Object.keys(fixture.files)
    .filter((p) => !p.endsWith('/create') && !p.endsWith('/remove'))
    .map((p) => `cat ${p}`)
    .concat(Object.keys(fixture.links).map((p) => `readlink ${p}`))
    .join('; ');
  t.equal(sh(replay.dir, same).stdout, sh(tree, same).stdout, 'file contents and link targets');
  // The replay lives by the rule the recording chose (NVIDIA: the same framebuffer size only).
  const T = 'class/mdev_bus/0000:00:04.0/mdev_supported_types';
  const counts = () => sh(replay.dir, `cat ${T}/nvidia-230/available_instances ${T}/nvidia-231/available_instances`).stdout;
  t.equal(sh(replay.dir, `echo ${uuid(1)} > ${T}/nvidia-231/create`).code, 0);
  t.equal(counts(), '0\n6\n', 'a second 2Q: one fewer 2Q, still no 1Q');
  t.equal(sh(replay.dir, `echo 1 > bus/mdev/devices/${uuid(1)}/remove; echo 1 > bus/mdev/devices/5a1f0d2c-8e3b-4c7a-9d61-0b2e4f6a8c10/remove`).code, 0);
  t.equal(counts(), '16\n8\n', 'an empty GPU takes any size');
  t.equal(sh(replay.dir, `echo ${uuid(2)} > ${T}/nvidia-230/create`).code, 0);
  t.equal(counts(), '15\n0\n', 'a 1Q shuts out the 2Q');
});

t.test('an older host whose types have no name file (GVT-g before 6.1) replays without one', async (t) => {
  const fixture = JSON.parse(readFileSync(join(REPO, 'test', 'fixtures', 'record', 'gvt-6.0-tree.json'), 'utf8')) as Parameters<typeof writeTree>[1];
  const tree = writeTree('gvt-6.0', fixture);
  const r = await record(tree);
  t.equal(r.code, 0, r.stderr);
  t.notMatch(r.stderr, /name/, 'nothing to warn about');
  t.match(r.stderr, /0000:00:02\.0: capacity gvt/);
  const profile = JSON.parse(r.text) as Profile;
  t.equal(profile.abi, undefined, 'the 6.1 ABI: the mdev driver is i915\'s own, not vfio_mdev');
  const replay = await startDaemon({ profile: r.file, logLevel: 'warn' });
  t.teardown(() => replay.stop());
  const types = await overSys(tree, MDEVCTL);
  t.match(types, /i915-GVTg_V5_8\n {4}Available instances: 7\n {4}Device API: vfio-pci\n {4}Description: low_gm_size: 64MB/);
  t.notMatch(types, /Name:/, 'the host shows no name');
  t.equal(await overSys(replay.dir, MDEVCTL), types, 'mdevctl types and list: no Name: line in the replay either');
  const T = 'class/mdev_bus/0000:00:02.0/mdev_supported_types';
  t.equal(sh(replay.dir, `ls ${T}/i915-GVTg_V5_4; cat ${T}/i915-GVTg_V5_4/name`).stdout, 'available_instances\ncreate\ndescription\ndevice_api\ndevices\n', 'no name file');
});

t.test('mdevfs exec and ctl add-parent replay a recording', async (t) => {
  const orig = await startDaemon({ profile: 'gvt', logLevel: 'warn' });
  t.teardown(() => orig.stop());
  sh(orig.dir, `echo ${uuid(9)} > class/mdev_bus/0000:00:02.0/mdev_supported_types/i915-GVTg_V5_4/create`);
  const r = await record(orig.dir);
  t.equal(r.code, 0, r.stderr);
  const ex = spawnSync(process.execPath, [CLI, 'exec', ...backendArgs, '--profile', r.file, '--', 'mdevctl', 'list'], {
    encoding: 'utf8',
    timeout: 30000,
    env: cliEnv(),
  });
  t.equal(ex.stdout, `${uuid(9)} 0000:00:02.0 i915-GVTg_V5_4 manual\n\n`);
  t.equal(ex.status, 0);

  // Hot-plugged into a running daemon, the recorded parent comes with its device.
  const other = await startDaemon({ logLevel: 'warn' });
  t.teardown(() => other.stop());
  const ctl = await run(process.execPath, [CLI, 'ctl', other.dir, 'add-parent', r.file], cliEnv());
  t.equal(ctl.code, 0, ctl.stderr);
  t.equal(readlinkSync(join(other.dir, 'bus/mdev/devices', uuid(9), 'mdev_type')), '../mdev_supported_types/i915-GVTg_V5_4');
  const gvtLines = (root: string) => avail(root).split('\n').filter((l) => l.includes('0000:00:02.0'));
  t.same(gvtLines(other.dir), gvtLines(orig.dir), 'its available_instances count the device');
});

t.test('clear errors: no parents, a corrupt recording, a recording that fails validation', async (t) => {
  const empty = join(work, 'empty');
  mkdirSync(join(empty, 'class', 'mdev_bus'), { recursive: true });
  const none = await record(empty);
  t.equal(none.code, 1);
  t.match(none.stderr, /^mdevfs record: no mdev parents under .*class\/mdev_bus/);
  t.equal(none.text, '', 'nothing written');
  const missing = await record(join(work, 'no-such-dir'));
  t.equal(missing.code, 1);
  t.match(missing.stderr, /cannot read/);

  const orig = await startDaemon({ profile: 'samples', logLevel: 'warn' });
  t.teardown(() => orig.stop());
  const good = await record(orig.dir);
  t.equal(good.code, 0);
  const mount = (file: string) =>
    spawnSync(process.execPath, [CLI, 'mount', join(work, `m-${++seq}`), '--profile', file], { encoding: 'utf8', timeout: 30000, env: cliEnv() });

  const truncated = join(work, 'truncated.json');
  writeFileSync(truncated, good.text.slice(0, good.text.length / 2));
  const m1 = mount(truncated);
  t.equal(m1.status, 2);
  t.match(m1.stderr, /JSON/);

  const invalid = JSON.parse(good.text);
  invalid.parents[1].devices = [{ uuid: uuid(3), type: 'no-such-type' }];
  const bad = join(work, 'invalid.json');
  writeFileSync(bad, JSON.stringify(invalid));
  const m2 = mount(bad);
  t.equal(m2.status, 2);
  t.match(m2.stderr, /parents\[1\]\.devices\[0\]/);
  t.match(m2.stderr, /no-such-type/);
});

t.test('an unknown vendor gets the documented default: a counter, or a pool in proportion', async (t) => {
  const U = '3b0c7a52-9e4d-4f1b-8a6c-2d5e7f901234';
  const A = 'devices/virtual/acme/acme0';
  const S = 'devices/virtual/same/same0';
  const type = (dir: string, name: string, avail: number) => ({
    [`${dir}/mdev_supported_types/${name}/name`]: `${name.toUpperCase()}\n`,
    [`${dir}/mdev_supported_types/${name}/device_api`]: 'vfio-pci\n',
    [`${dir}/mdev_supported_types/${name}/available_instances`]: `${avail}\n`,
    [`${dir}/mdev_supported_types/${name}/create`]: '',
  });
  const tree = writeTree('unknown', {
    files: {
      ...type(A, 'acme-a', 4),
      ...type(A, 'acme-b', 2),
      ...type(A, 'acme-c', 1),
      ...type(S, 'same-x', 3),
      ...type(S, 'same-y', 3),
      [`${A}/${U}/vendor/slot`]: `acme slot of ${U}\n`,
    },
    dirs: [`${A}/mdev_supported_types/acme-b/devices`, `${A}/mdev_supported_types/acme-c/devices`, 'bus/mdev/drivers/acme_mdev', 'bus/mdev/drivers/same'],
    links: {
      'class/mdev_bus/acme0': `../../${A}`,
      'class/mdev_bus/same0': `../../${S}`,
      [`${A}/subsystem`]: '../../../../class/acme',
      [`${S}/subsystem`]: '../../../../class/same',
      [`${A}/${U}/mdev_type`]: '../mdev_supported_types/acme-a',
      [`${A}/${U}/driver`]: '../../../../../bus/mdev/drivers/acme_mdev',
      [`${A}/mdev_supported_types/acme-a/devices/${U}`]: `../../../${U}`,
      [`bus/mdev/devices/${U}`]: `../../../${A}/${U}`,
    },
  });
  const r = await record(tree);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /acme0: capacity default: proportional pool\n/);
  t.match(r.stderr, /same0: capacity default: counter\n/);
  const [acme, same] = JSON.parse(r.text).parents;
  t.same(acme.capacity, { model: 'pool', size: 5, errno: 'ENOSPC' }, '4 free units (lcm of 4, 2, 1) and 1 in use');
  t.same(Object.fromEntries(acme.types.map((ty: { name: string; cost: number }) => [ty.name, ty.cost])), { a: 1, b: 2, c: 4 });
  t.equal(acme.mdevDriver, 'acme_mdev', 'the bus driver its device is bound to');
  t.same(acme.deviceAttrs, { 'vendor/slot': 'acme slot of {uuid}\n' });
  t.same(same.capacity, { model: 'counter', max: 3 });

  const replay = await startDaemon({ profile: r.file, logLevel: 'warn' });
  t.teardown(() => replay.stop());
  const d = replay.dir;
  const counts = () => avail(d).replace(/class\/mdev_bus\/\w+\/mdev_supported_types\//g, '');
  t.equal(counts(), 'acme-a 4\nacme-b 2\nacme-c 1\nsame-x 3\nsame-y 3\n', 'as recorded');
  t.equal(write(d, `bus/mdev/devices/${U}/remove`, '1'), 'ok');
  t.equal(counts(), 'acme-a 5\nacme-b 2\nacme-c 1\nsame-x 3\nsame-y 3\n', 'the device present gives its unit back');
  t.equal(write(d, 'class/mdev_bus/acme0/mdev_supported_types/acme-b/create', uuid(1)), 'ok');
  t.equal(counts(), 'acme-a 3\nacme-b 1\nacme-c 0\nsame-x 3\nsame-y 3\n', 'a b takes 2 of 5 units');
  t.equal(write(d, 'class/mdev_bus/acme0/mdev_supported_types/acme-c/create', uuid(2)), 'ENOSPC');
  t.equal(readFileSync(join(d, 'bus/mdev/devices', uuid(1), 'vendor/slot'), 'latin1'), `acme slot of ${uuid(1)}\n`);
  t.equal(write(d, 'class/mdev_bus/same0/mdev_supported_types/same-x/create', uuid(3)), 'ok');
  t.equal(counts(), 'acme-a 3\nacme-b 1\nacme-c 0\nsame-x 2\nsame-y 2\n', 'one counter for both types');
});

t.test('an unknown vendor\'s type showing 0 beside no device: a valid pool (no cost above its size), and a warning', async (t) => {
  const A = 'devices/virtual/zero/zero0';
  const type = (name: string, avail: number) => ({
    [`${A}/mdev_supported_types/${name}/device_api`]: 'vfio-pci\n',
    [`${A}/mdev_supported_types/${name}/available_instances`]: `${avail}\n`,
    [`${A}/mdev_supported_types/${name}/create`]: '',
  });
  const tree = writeTree('zero', {
    files: { ...type('zero-a', 2), ...type('zero-b', 1), ...type('zero-c', 0) },
    dirs: ['bus/mdev/drivers/zero'],
    links: { 'class/mdev_bus/zero0': `../../${A}`, [`${A}/subsystem`]: '../../../../class/zero' },
  });
  const r = await record(tree);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /zero0: the default capacity model does not reproduce every available_instances/);
  const [p] = JSON.parse(r.text).parents;
  t.same(p.capacity, { model: 'pool', size: 2, errno: 'ENOSPC' });
  t.same(Object.fromEntries(p.types.map((ty: { name: string; cost: number }) => [ty.name, ty.cost])), { a: 1, b: 2, c: 2 }, 'the type showing 0 costs the whole pool');
  const replay = await startDaemon({ profile: r.file, logLevel: 'warn' });
  t.teardown(() => replay.stop());
  t.equal(avail(replay.dir).replace(/class\/mdev_bus\/zero0\/mdev_supported_types\//g, ''), 'zero-a 2\nzero-b 1\nzero-c 1\n');
});

t.test('a sparse mock tree (no subsystem links, no newlines, parent under bus/pci/devices) is placed as on a host', async (t) => {
  // Laid out as go-nvlib's mocks do: a PCI directory with ids and types, reached from class/mdev_bus.
  const P = 'bus/pci/devices/0000:3b:00.0';
  const tree = writeTree('sparse', {
    files: {
      [`${P}/vendor`]: '0x10de',
      [`${P}/device`]: '0x20bf',
      [`${P}/class`]: '0x30200',
      [`${P}/numa_node`]: '1',
      [`${P}/mdev_supported_types/nvidia-500/name`]: 'NVIDIA A100-4C',
      [`${P}/mdev_supported_types/nvidia-500/available_instances`]: '1',
      [`${P}/mdev_supported_types/nvidia-501/name`]: 'NVIDIA A100-5C',
      [`${P}/mdev_supported_types/nvidia-501/available_instances`]: '1',
    },
    links: { 'class/mdev_bus/0000:3b:00.0': `../../${P}` },
  });
  const r = await record(tree);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /0000:3b:00.0: no subsystem link; recorded as a PCI function/);
  t.match(r.stderr, /available_instances: no trailing newline; recorded with one/);
  const [p] = JSON.parse(r.text).parents;
  t.equal(p.path, 'devices/pci0000:3b/0000:3b:00.0');
  t.same([p.pci.vendor, p.pci.device, p.pci.class, p.pci.numaNode], ['0x10de', '0x20bf', '0x30200', 1]);
  t.same(p.capacity, { model: 'counter', max: 1 }, 'NVIDIA ids without descriptions: the default');
  const replay = await startDaemon({ profile: r.file, logLevel: 'warn' });
  t.teardown(() => replay.stop());
  t.equal(readlinkSync(join(replay.dir, P)), '../../../devices/pci0000:3b/0000:3b:00.0');
  t.equal(readFileSync(join(replay.dir, P, 'mdev_supported_types/nvidia-501/name'), 'latin1'), 'NVIDIA A100-5C\n');
  t.equal(write(replay.dir, `${P}/mdev_supported_types/nvidia-500/create`, uuid(1)), 'ok');
  t.equal(avail(replay.dir), 'class/mdev_bus/0000:3b:00.0/mdev_supported_types/nvidia-500 0\nclass/mdev_bus/0000:3b:00.0/mdev_supported_types/nvidia-501 0\n');
});

t.test("vfio-ap: the host AP configuration and a device's assignments replay", async (t) => {
  const orig = await startDaemon({ profile: 'ap', logLevel: 'warn' });
  t.teardown(() => orig.stop());
  const U = uuid(5);
  const dev = `bus/mdev/devices/${U}`;
  t.equal(write(orig.dir, 'class/mdev_bus/matrix/mdev_supported_types/vfio_ap-passthrough/create', U), 'ok');
  for (const [f, v] of [['assign_adapter', '0x05'], ['assign_domain', '0x0004'], ['assign_domain', '0x00ab'], ['assign_control_domain', '0x0047']]) {
    t.equal(write(orig.dir, `${dev}/${f}`, v!), 'ok', `${f} ${v}`);
  }
  const r = await record(orig.dir);
  t.equal(r.code, 0, r.stderr);
  const [matrix] = JSON.parse(r.text).parents;
  t.same(matrix.apHost.adapters, [5, 6, 7]);
  t.same(matrix.apHost.domains, [4, 0x47, 0xab]);
  t.same(matrix.devices[0].attrs, { assign_adapter: ['0x05'], assign_domain: ['0x0004', '0x00ab'], assign_control_domain: ['0x0047'] });
  const replay = await startDaemon({ profile: r.file, logLevel: 'warn' });
  t.teardown(() => replay.stop());
  const show = (root: string) => ['matrix', 'control_domains', 'guest_matrix'].map((f) => readFileSync(join(root, dev, f), 'latin1')).join('--\n');
  t.equal(show(replay.dir), show(orig.dir));
  t.equal(show(orig.dir), '05.0004\n05.00ab\n--\n0047\n--\n05.0004\n05.00ab\n');
  const [replayed, original] = await listings(replay.dir, orig.dir);
  t.equal(replayed, original, 'bus/ap, its cards and queues included');
  // The same host answers the same: 07 stays with the default drivers, 06 is free.
  for (const [f, v] of [['assign_adapter', '0x07'], ['assign_adapter', '0x06'], ['unassign_domain', '0x0004']]) {
    t.equal(write(replay.dir, `${dev}/${f}`, v!), write(orig.dir, `${dev}/${f}`, v!), `${f} ${v}`);
  }
  t.equal(show(replay.dir), show(orig.dir));
});

t.test('a recording of the default tree passes the real kernel transcript of the conformance suite', async (t) => {
  // test/conformance/expected/tree-after-create.txt was recorded on Linux 6.1 with the sample drivers.
  const orig = await startDaemon({ logLevel: 'warn' });
  t.teardown(() => orig.stop());
  const r = await record(orig.dir);
  t.equal(r.code, 0, r.stderr);
  const run = runScenario('tree-after-create', { profile: r.file });
  t.equal(run.status, 0);
  t.equal(run.output, expected('tree-after-create'), 'byte for byte the real kernel, through the replayed recording');
});

t.test('nvidia-l40s with vGPUs set: each VF keeps its type, and the full type list is recorded', { jobs: 3 }, async (t) => {
  const l40s = BUILTIN_PROFILES['nvidia-l40s']!;
  const all = l40s.parents[0]!.types.map((ty) => ty.name);
  t.test('2Q on two VFs', { buffered: true }, async (t) => {
    const orig = await startDaemon({ profile: 'nvidia-l40s', logLevel: 'warn' });
    t.teardown(() => orig.stop());
    const { stderr, profile } = await vendorVfioRoundTrip(t, orig.dir, [[0, '1148'], [5, '1148']]);
    t.notMatch(stderr, /warning/, 'nothing left out');
    t.same(profile.parents[0]!.types.map((ty) => ty.name), all, 'every type of the GPU, not only the 2 GB ones the VFs list');
  });
  t.test('48Q: the GPU fully used, no VF lists a type', { buffered: true }, async (t) => {
    const orig = await startDaemon({ profile: 'nvidia-l40s', logLevel: 'warn' });
    t.teardown(() => orig.stop());
    const { stderr, profile } = await vendorVfioRoundTrip(t, orig.dir, [[3, '1156']]);
    t.notMatch(stderr, /warning/, 'nothing left out');
    t.same(profile.parents[0]!.types, l40s.parents[0]!.types.map(({ name, prettyName, deviceApi, framebufferMb, max }) => ({ name, prettyName, deviceApi, framebufferMb, max })), "the built-in's table, max_instance included");
  });
  t.test('a GPU mdevfs has no table for: the types listed now, and warnings', { buffered: true }, async (t) => {
    const unknown = structuredClone(l40s);
    unknown.parents[0]!.pci!.device = '0x26ba';
    const orig = await startDaemon({ profile: unknown, logLevel: 'warn' });
    t.teardown(() => orig.stop());
    const { stderr, profile } = await vendorVfioRoundTrip(t, orig.dir, [[2, '1148']], false);
    t.match(stderr, /warning: 0000:00:07\.0: a GPU mdevfs has no type table for \(PCI 0x10de:0x26ba\): its types are the 3 its VFs list now, and a type no VF offers while vGPUs are set is missing/);
    t.match(stderr, /warning: 0000:00:07\.0: vendor-specific VFIO shows no max_instance/);
    t.notMatch(stderr, /otherwise|unset/, 'the vGPU held is set again at start');
    t.same(profile.parents[0]!.types.map((ty) => ty.prettyName), ['NVIDIA L40S-2B', 'NVIDIA L40S-2Q', 'NVIDIA L40S-2A']);
  });
  t.test('a vfs entry that cannot be applied: exit 2 before mounting, naming it', async (t) => {
    const cases: [PresentVf[], RegExp][] = [
      [[{ name: '0000:00:07.0', attrs: { 'nvidia/current_vgpu_type': '1148' } }], /parents\[0\]\.vfs\[0\] \(0000:00:07\.0\): no VF of "0000:00:07\.0"/],
      [[{ name: '0000:00:07.4', attrs: { 'nvidia/vm_name': 'x' } }], /parents\[0\]\.vfs\[0\] \(0000:00:07\.4\)\.attrs: "nvidia\/vm_name" is no writable attribute of the VF/],
      [
        [
          { name: '0000:00:07.4', attrs: { 'nvidia/current_vgpu_type': '1156' } },
          { name: '0000:00:07.5', attrs: { 'nvidia/current_vgpu_type': '1148' } },
        ],
        /parents\[0\]\.vfs\[1\] \(0000:00:07\.5\)\.attrs: writing "1148" to "nvidia\/current_vgpu_type" failed \(EIO\)/,
      ],
    ];
    for (const [vfs, message] of cases) {
      const bad = structuredClone(l40s);
      bad.parents[0]!.vfs = vfs;
      const file = join(work, `vfs-${++seq}.json`);
      writeFileSync(file, JSON.stringify(bad));
      const dir = join(work, `m-${++seq}`);
      const m = spawnSync(process.execPath, [CLI, 'mount', dir, '--profile', file, ...backendArgs], { encoding: 'utf8', timeout: 30000, env: cliEnv() });
      t.equal(m.status, 2, m.stderr);
      t.match(m.stderr, message);
      t.notOk(isMounted(dir), 'nothing mounted');
    }
  });
});
