// runs once, on the default backend: it reads files, mounts nothing
// docs/testing.md: its worked examples are the files the client tests run, and its GitHub Actions
// workflow (which cannot run here) installs mdevfs as the README says and the plugin as the page does.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { REPO } from '../helpers/daemon';
import { blockAfter, markedBlocks } from '../helpers/doc-blocks';

const DOC = 'docs/testing.md';
const blocks = markedBlocks(DOC);

/** The files the client tests run: the pytest suite, the Go module's tests, the TypeScript example. */
const RUN_BY_TESTS = [/^clients\/python\/tests\/test_\w+\.py$/, /^clients\/go\/mdevfstest\/\w+_test\.go$/, /^test\/integration\/clients-[\w-]+\.test\.ts$/];

t.test('each worked example is (part of) a file the client tests run', async (t) => {
  const files = blocks.filter((b) => b.kind === 'file');
  t.ok(files.length >= 4, 'the Python, Go (two) and TypeScript examples');
  for (const b of files) {
    t.ok(RUN_BY_TESTS.some((re) => re.test(b.value)), `${DOC}:${b.line}: ${b.value} is run by a test`);
    const text = readFileSync(join(REPO, b.value), 'utf8');
    t.ok(text.includes(b.body), `${DOC}:${b.line}: the block is in ${b.value} as written`);
  }
  const python = files.find((b) => b.value.endsWith('test_mdevctl_enospc.py'));
  t.equal(python?.body, readFileSync(join(REPO, 'clients/python/tests/test_mdevctl_enospc.py'), 'utf8'), 'the pytest example is the whole file');
});

interface Step {
  uses?: string;
  name?: string;
  with?: Record<string, string>;
  run?: string;
  'working-directory'?: string;
}

/** The workflow block, parsed by PyYAML (Debian's python3-yaml). */
function workflow(): { on: unknown; jobs: Record<string, { 'runs-on': string; container: { image: string; options: string }; steps: Step[] }> } {
  const block = blocks.find((b) => b.kind === 'workflow');
  if (!block) throw new Error(`${DOC}: no <!-- workflow: ... --> block`);
  const r = spawnSync('/usr/bin/python3', ['-c', 'import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))'], { input: block.body, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`the workflow is not YAML: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const commands = (run: string | undefined) => (run ?? '').split('\n').map((l) => l.trim()).filter(Boolean);

t.test('the GitHub Actions workflow: its steps are the README\'s install and the page\'s pytest commands', async (t) => {
  const wf = workflow();
  t.same(Object.keys(wf.jobs), ['pytest']);
  const job = wf.jobs.pytest!;
  t.match(job.container.image, /^node:(2\d|[3-9]\d)-bookworm$/, 'Debian 12 with Node 20 or later (the README: Node 20+)');
  t.match(job.container.options, /--device \/dev\/fuse/, 'FUSE in the container');
  t.match(job.container.options, /--cap-add SYS_ADMIN/, 'and the right to mount it');
  const [own, get, install, plugin, test] = job.steps;
  t.match(own, { uses: /^actions\/checkout@v\d+$/ }, 'the project under test');
  t.match(get, { uses: /^actions\/checkout@v\d+$/, with: { path: 'mdevfs' } }, 'a clone of mdevfs');

  // The README's commands: set up in a clone, then put mdevfs on PATH (root in the container: no sudo).
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  t.equal(install!['working-directory'], 'mdevfs', 'in the clone');
  const setup = commands(install!.run);
  t.same(setup, ['scripts/setup', 'npm install -g .']);
  t.match(readme, /^scripts\/setup && scripts\/mdevfs mount \.\/mount/m, 'the README sets up with scripts/setup');
  t.match(readme, /^sudo npm install -g \. +# in the clone/m, 'and installs the clone with npm install -g .');

  // The page's own install commands (clients-python.test.ts runs them), with the clone's path.
  const page = blockAfter(DOC, 'on PATH), in a venv that sees Debian').trim().split('\n');
  t.same(commands(plugin!.run), [page[0]!.replace(/^sudo /, '').replace('apt-get install ', 'apt-get install -y '), page[1], page[2]!.replace('./clients/python', './mdevfs/clients/python')]);
  t.same(commands(test!.run), [page[3]]);
  t.equal(job.steps.length, 5);
  // The page says it was not run.
  t.match(readFileSync(join(REPO, DOC), 'utf8'), /\*\*It was not run\*\*/);
});

t.test('scripts/setup --test installs what the client tests need', async (t) => {
  const setup = readFileSync(join(REPO, 'scripts', 'setup'), 'utf8');
  for (const entry of ['go:golang-go', 'dpkg:python3-pytest', 'dpkg:python3-venv', 'dpkg:python3-yaml', 'dpkg:python3-setuptools']) {
    t.match(setup, new RegExp(`^\\s*${entry.replace(/[.]/g, '\\.')}\\s*$`, 'm'), entry);
  }
});
