// The TypeScript API (src/index.ts, the package's export): start, root, the control client, exec, stop.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import t from 'tap';
import { Control, exec, start } from 'mdevfs';
import { BACKEND, CLI, REPO, cliEnv, isMounted } from '../helpers/daemon';

const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const env = cliEnv({ MDEVFS_CLI: process.env.MDEVFS_CLI ?? CLI });
/** On the suite's fuse-native run, the trees use that backend too. */
const backend = BACKEND as 'direct' | 'fuse-native' | undefined;

t.test('package.json exports the API, with its declarations', async (t) => {
  const pkg = require(join(REPO, 'package.json')) as Record<string, unknown>;
  t.same(pkg.exports, { '.': { types: './dist/index.d.ts', default: './dist/index.js' }, './package.json': './package.json' });
  t.equal(pkg.main, 'dist/index.js');
  t.equal(pkg.types, 'dist/index.d.ts');
  const node = spawnSync(process.execPath, ['-p', "Object.keys(require('mdevfs')).sort().join(' ')"], { cwd: REPO, encoding: 'utf8', env: cliEnv() });
  t.equal(node.stdout.trim(), 'ApiError Control Tree cliCommand exec start', 'plain node resolves the package by its name');
  // a consumer's type check against the declarations the build emits
  const dir = mkdtempSync(join(tmpdir(), 'mdevfs-types-'));
  t.teardown(() => spawnSync('rm', ['-rf', dir]));
  mkdirSync(join(dir, 'node_modules', '@types'), { recursive: true });
  symlinkSync(REPO, join(dir, 'node_modules', 'mdevfs'));
  symlinkSync(join(REPO, 'node_modules', '@types', 'node'), join(dir, 'node_modules', '@types', 'node'));
  writeFileSync(join(dir, 'use.ts'), [
    "import { start, type Tree, type FaultRuleSpec } from 'mdevfs';",
    "const rule: FaultRuleSpec = { match: { op: 'create', type: 'mtty-2' }, action: { kind: 'errno', errno: 'ENOSPC' }, trigger: { times: 1 } };",
    "export async function f(): Promise<number | null> { const tree: Tree = await start({ profile: 'samples' }); await tree.fault(rule); const { journal: n } = await tree.mark(); await tree.stop(); return n; }",
    "// @ts-expect-error: not an errno name",
    "export const bad: FaultRuleSpec = { match: { op: 'create' }, action: { kind: 'errno', errno: 'ENOTANERRNO' } };",
  ].join('\n'));
  const tsc = spawnSync(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '--noEmit', '--strict', '--types', 'node', '--module', 'node16', '--moduleResolution', 'node16', 'use.ts'], {
    encoding: 'utf8',
    env: cliEnv(),
    cwd: dir,
  });
  t.equal(tsc.stdout + tsc.stderr, '', 'tsc: the declarations type the API');
});

t.test('start: a tree per call, a profile by name or as an object; stop unmounts', async (t) => {
  const a = await start({ env, backend });
  const b = await start({
    env,
    backend,
    profile: { parents: [{ name: 'mtty', path: 'devices/virtual/mtty/mtty', class: 'mtty', mdevDriver: 'mtty', capacity: { model: 'pool', size: 2, errno: 'ENOSPC' }, types: [{ name: '1', cost: 1 }] }] },
  });
  t.teardown(() => Promise.all([a.stop(), b.stop()]));
  t.same(readdirSync(join(a.root, 'class/mdev_bus')), ['mbochs', 'mdpy', 'mtty']);
  t.same(readdirSync(join(b.root, 'class/mdev_bus/mtty/mdev_supported_types')), ['mtty-1']);
  const mark = await a.mark();
  writeFileSync(join(a.root, 'class/mdev_bus/mtty/mdev_supported_types/mtty-2/create'), `${U}\n`);
  t.match(await a.wait({ event: `bind:${U}`, since: mark, timeout: 5 }), { met: true });
  t.match((await a.state()).devices, [{ uuid: U, type: 'mtty-2', state: 'active' }]);
  t.same((await b.state()).devices, [], 'the other tree has none');
  await t.rejects(a.wait({ device: U, state: 'gone', timeout: 0.2 }), { status: 408, message: 'not met within 0.2 s' }, 'a wait not met: 408');
  await a.reset();
  t.same(readdirSync(join(a.root, 'bus/mdev/devices')), [], 'reset');
  const root = a.root;
  t.equal(await a.stop(), 0, 'stop: the daemon exits 0');
  t.notOk(isMounted(root), 'and leaves no mount');
});

t.test('start on a directory of the caller\'s', async (t) => {
  const dir = join(mkdtempSync(join(tmpdir(), 'mdevfs-dir-')), 'sys');
  t.teardown(() => spawnSync('rm', ['-rf', dirname(dir)]));
  const tree = await start({ env, backend, dir, profile: 'nvidia-t4' });
  t.equal(tree.root, dir);
  t.same(readdirSync(join(dir, 'class/mdev_bus')), ['0000:00:04.0'], 'served there, with that profile');
  await tree.stop();
  t.notOk(isMounted(dir), 'unmounted after stop');
});

t.test('start says why it failed: a bad profile, a missing command', async (t) => {
  await t.rejects(start({ env, profile: 'no-such-profile' }), /mdevfs mount exited with 2: .*no-such-profile/s);
  await t.rejects(start({ env: { ...env, MDEVFS_CLI: '/nonexistent/mdevfs' } }), /cannot run \/nonexistent\/mdevfs: .*ENOENT/);
});

t.test('exec: a command over a fresh /sys steers its own tree through MDEVFS_CONTROL', async (t) => {
  const script = [
    `const { Control } = require(${JSON.stringify(REPO)});`,
    'const fs = require("node:fs");',
    '(async () => {',
    '  const c = new Control(process.env.MDEVFS_CONTROL);',
    `  fs.writeFileSync("/sys/class/mdev_bus/mtty/mdev_supported_types/mtty-2/create", "${U}\\n");`,
    `  await c.wait({ device: "${U}", state: "active", timeout: 5 });`,
    '  const s = await c.state();',
    '  console.log(process.env.MDEVFS_ROOT, s.devices.map((d) => d.uuid + " " + d.state).join());',
    '})().catch((e) => { console.error(e.message); process.exit(1); });',
  ].join('\n');
  const r = await exec([process.execPath, '-e', script], { env, backend, profile: 'samples' });
  t.equal(r.stderr, '');
  t.equal(r.stdout, `/sys ${U} active\n`);
  t.equal(r.status, 0);
  const failing = await exec(['sh', '-c', 'exit 7'], { env });
  t.equal(failing.status, 7, "the command's exit status");
});

t.test('Control: no daemon at the socket is an error, not a hang', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mdevfs-nosock-'));
  chmodSync(dir, 0o700);
  t.teardown(() => spawnSync('rm', ['-rf', dir]));
  await t.rejects(new Control(join(dir, 'none.sock')).ping(), { code: 'ENOENT' });
});
