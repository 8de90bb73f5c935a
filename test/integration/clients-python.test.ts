// runs once, on the default backend: the Python fixtures start their trees on the default backend
// The Python client and pytest plugin (clients/python): installed offline with pip into a venv of
// Debian's python3 (--system-site-packages: Debian's python3-pytest, and no externally-managed
// refusal), then its own test suite run by pytest against this clone's mdevfs, as root and, where
// the machine allows it, as user nobody.
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import t from 'tap';
import { CLI, REPO, cliEnv, scratch } from '../helpers/daemon';
import { blockAfter } from '../helpers/doc-blocks';

/** Debian's interpreter, the one python3-pytest and python3-venv are for (not a pyenv or a venv on PATH). */
const PY = '/usr/bin/python3';
const PATH = `${dirname(process.execPath)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;

function missing(): string | undefined {
  const r = spawnSync(PY, ['-c', 'import pytest, venv, ensurepip'], { encoding: 'utf8' });
  return r.status === 0 ? undefined : `${PY} lacks pytest or venv (scripts/setup --test installs python3-pytest and python3-venv): ${r.stderr.trim()}`;
}

const skip = missing();

/** docs/testing.md's install commands: the apt-get line (scripts/setup --test does that), the venv, pip, pytest. */
const DOC = blockAfter('docs/testing.md', 'on PATH), in a venv that sees Debian').trim().split('\n');

/**
 * A venv with the package installed by docs/testing.md's own commands, run in a scratch
 * directory holding a copy of clients/python (pip builds in its source directory). Made once, by
 * the first test that needs it (so each test can still run alone): the tests only read it (pytest
 * runs without its cache and writes no bytecode), and each install costs seconds.
 */
let installed: { venv: string; log: string } | undefined;
function install(): { venv: string; log: string } {
  installed ??= installOnce();
  return installed;
}

function installOnce(): { venv: string; log: string } {
  const dir = scratch('mdevfs-py-');
  chmodSync(dir, 0o755);
  cpSync(join(REPO, 'clients', 'python'), join(dir, 'clients', 'python'), { recursive: true, filter: (p) => !/(__pycache__|\.egg-info|\/build)$/.test(p) });
  const r = spawnSync('bash', ['-e', '-c', DOC.slice(1, 3).join('\n')], { cwd: dir, encoding: 'utf8', env: { ...cliEnv(), PIP_DISABLE_PIP_VERSION_CHECK: '1' } });
  if (r.status !== 0) throw new Error(`${DOC.slice(1, 3).join('; ')}: ${r.stdout}${r.stderr}`);
  return { venv: join(dir, '.venv'), log: r.stdout };
}

t.test("docs/testing.md's install commands are the ones run here", async (t) => {
  t.same(DOC, [
    'sudo apt-get install python3-pytest python3-venv',
    '/usr/bin/python3 -m venv --system-site-packages .venv',
    '.venv/bin/pip install --no-index --no-build-isolation ./clients/python',
    '.venv/bin/python -m pytest tests/',
  ]);
});

function pytest(venv: string, args: string[], env: NodeJS.ProcessEnv, asUser: string[] = []) {
  const argv = [join(venv, 'bin', 'python'), '-m', 'pytest', '-p', 'no:cacheprovider', '-q', '-rA', '--color=no', ...args];
  const [cmd, ...rest] = asUser.length ? ['setpriv', ...asUser, 'env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...argv] : argv;
  return spawnSync(cmd!, rest, { encoding: 'utf8', env: asUser.length ? undefined : env, timeout: 300_000 });
}

/** The tests pytest reports as PASSED, by name. */
function passed(out: string): string[] {
  return [...out.matchAll(/^PASSED \S+::(\S+)/gm)].map((m) => m[1]!).sort();
}

t.test('pip installs it offline; the pytest11 entry point registers the plugin', { skip }, async (t) => {
  const { venv } = install();
  const r = spawnSync(join(venv, 'bin', 'python'), ['-c', [
    'import importlib.metadata as m, mdevfs',
    'print(mdevfs.__file__.startswith(__import__("sys").prefix))',
    'print([e.value for e in m.entry_points(group="pytest11") if e.name == "mdevfs"])',
    'print(sorted(d.metadata["Name"] for d in m.distributions() if d.metadata["Name"] == "mdevfs"), m.requires("mdevfs"))',
  ].join('\n')], { encoding: 'utf8' });
  t.equal(r.stderr, '');
  t.equal(r.stdout, "True\n['mdevfs.pytest_plugin']\n['mdevfs'] None\n", 'installed in the venv, the plugin registered, no dependencies');
});

t.test('the plugin\'s own suite passes against this clone\'s mdevfs (root)', { skip }, async (t) => {
  const { venv } = install();
  const tmp = scratch('mdevfs-pytest-');
  const r = pytest(venv, [join(REPO, 'clients', 'python', 'tests')], { ...cliEnv(), MDEVFS_CLI: CLI, PATH, PYTHONDONTWRITEBYTECODE: '1', TMPDIR: tmp, LC_ALL: 'C' });
  t.equal(r.status, 0, `pytest exits 0:\n${r.stdout}${r.stderr}`);
  t.same(passed(r.stdout), [
    'test_a_bad_rule_is_refused_by_the_daemon',
    'test_a_fault_holds_inside_its_block_only',
    'test_a_fresh_tree_per_test',
    'test_a_hang_holds_a_create_until_released',
    'test_a_mark_without_a_journal',
    'test_a_profile_as_a_dict',
    'test_a_profile_by_marker',
    'test_mdevctl_start_reports_enospc_and_leaves_nothing',
    'test_several_trees_from_the_factory',
    'test_the_state_wait_and_reset',
  ]);
  t.notMatch(readFileSync('/proc/self/mountinfo', 'utf8'), tmp, 'every tree unmounted');
});

t.test('without MDEVFS_CLI and no mdevfs on PATH, the fixture says how to get one', { skip }, async (t) => {
  const { venv } = install();
  const r = pytest(venv, ['-k', 'test_a_fresh_tree_per_test', join(REPO, 'clients', 'python', 'tests')], { PATH: '/usr/bin:/bin', PYTHONDONTWRITEBYTECODE: '1', LC_ALL: 'C' });
  t.equal(r.status, 1);
  t.match(r.stdout, /MdevfsError: mdevfs is not on PATH and MDEVFS_CLI is not set: install it \(in a clone: `sudo npm install -g \.`\) or set MDEVFS_CLI to a clone's scripts\/mdevfs/);
});

// An ordinary user: the fixture's trees are mounted by fusermount (fuse-native), and tree.run()
// gives mdevctl the tree as /sys in a user namespace of its own.
const NOBODY = ['--reuid=nobody', '--regid=nogroup', '--clear-groups'];
function nobodyCannot(): string | undefined {
  const can = (test: string) => spawnSync('setpriv', [...NOBODY, 'sh', '-c', test]).status === 0;
  if (!can(`test -x ${process.execPath} && test -r ${CLI} && test -r ${join(REPO, 'clients/python/tests/test_fixtures.py')}`)) return `user nobody cannot read this clone (${REPO})`;
  if (!can('test -r /dev/fuse && test -w /dev/fuse')) return '/dev/fuse is not open to ordinary users (it must be mode 0666)';
  if (!existsSync('/usr/bin/fusermount') && !existsSync('/bin/fusermount')) return 'no fusermount (libfuse2/fuse) to mount for an ordinary user';
  const ns = spawnSync('setpriv', [...NOBODY, 'unshare', '--user', '--map-root-user', '--mount', 'true'], { encoding: 'utf8' });
  if (ns.status !== 0) return `this machine does not let ordinary users create user namespaces (${ns.stderr.trim()})`;
  return skip;
}

t.test('as user nobody: the fixtures, and mdevctl meeting ENOSPC in its own user namespace', { skip: nobodyCannot() }, async (t) => {
  const { venv } = install();
  const tmp = scratch('mdevfs-pytest-nobody-');
  chownSync(tmp, 65534, 65534);
  const r = pytest(
    venv,
    ['-k', 'fresh_tree or state_wait or several_trees or mdevctl', join(REPO, 'clients', 'python', 'tests')],
    { MDEVFS_CLI: CLI, PATH, PYTHONDONTWRITEBYTECODE: '1', TMPDIR: tmp, HOME: tmp, LC_ALL: 'C' },
    NOBODY,
  );
  t.equal(r.status, 0, `pytest as nobody exits 0:\n${r.stdout}${r.stderr}`);
  t.same(passed(r.stdout), [
    'test_a_fresh_tree_per_test',
    'test_mdevctl_start_reports_enospc_and_leaves_nothing',
    'test_several_trees_from_the_factory',
    'test_the_state_wait_and_reset',
  ]);
  t.notMatch(readFileSync('/proc/self/mountinfo', 'utf8'), tmp, 'every tree unmounted');
});
