import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { BACKEND, CLI, REPO, cliEnv, scratch } from '../helpers/daemon';

// Runs every example in README.md and docs/*.md, so none goes stale. The convention (also in
// docs/examples.md, for contributors):
//
// - Every fenced block names its language. `console`, `bash`, `sh` and `json` blocks are examples
//   and run; `text` and `markdown` blocks are not examples (usage listings, a file's layout); any
//   other language, or none, fails this test, so nothing new slips in unrun.
// - A `console` block is a transcript: each line starting with `# ` or `$ ` is a command, the lines
//   after it, up to the next command, are exactly what it prints (stdout and stderr, in order). A
//   line that is only `#` or `$` is an empty prompt. The commands run in order in ONE bash (so `cd`
//   carries over), and the whole transcript must come out identical, after the normalisations in
//   NORMALISE below. As on a terminal, `ls` lists in columns (TERMINAL below).
// - A `bash` or `sh` block runs as one script under `set -e -o pipefail` and must exit 0. A line
//   that is only `...` (with an optional comment) stands for "your commands here" and runs as `:`.
// - A `json` block is a profile: `mdevfs exec --profile BLOCK -- true` must accept it (exit 0).
// - Every block runs in a fresh directory that looks like a clone of the repository (a symlink to
//   each of its tracked top-level entries, dist/ and node_modules/, and an empty ./mount of its
//   own), as the README's "in a clone of this repository" says, as root, with `mdevfs` on PATH
//   (as an install puts it there), `npm install -g` / `npm link` installing into a prefix of the
//   block's own (first on PATH), `sudo CMD` run as CMD (we are root), and `npm_config_offline=true`
//   so `npx` and npm can never reach the package registry.
// - HTML comments on the lines just before a block (blank lines between are allowed) set it up:
//     <!-- mounted: ARGS -->   the harness runs `mdevfs mount ARGS` in that directory first (and stops
//                              it after the block), for a transcript that uses a mount the text
//                              around it has started;
//     <!-- not run: REASON --> the block cannot run here (no container engine, this host's /sys,
//                              the whole suite itself...). The test prints every such mark with its
//                              reason, and there may be at most MAX_NOT_RUN of them.
// - On the fuse-native run (MDEVFS_TEST_BACKEND=fuse-native) every `mdevfs mount` and `mdevfs exec`
//   of an example gets `--backend fuse-native`, so the examples are checked on both backends.

const MAX_NOT_RUN = 8;
const RUN = new Set(['console', 'bash', 'sh', 'json']);
const NOT_EXAMPLES = new Set(['text', 'markdown']);

/**
 * What varies from run to run, replaced in both the expected and the actual transcript. Keep this
 * list short: anything else an example prints must be exact.
 */
const NORMALISE: readonly [RegExp, string][] = [
  // udevadm monitor's timestamp (seconds since boot): `UDEV  [3516.024154] add ...`
  [/^(UDEV|KERNEL)( +)\[\d+\.\d+\]/gm, '$1$2[TIME]'],
  // bash names the script line in its messages (`bash: line 3: echo: write error: ...`); the
  // README shows an interactive shell, which does not.
  [/^bash: line \d+: /gm, 'bash: '],
];

const normalise = (s: string) => NORMALISE.reduce((acc, [re, to]) => acc.replace(re, to), s);

interface Block {
  file: string;
  line: number;
  lang: string;
  body: string;
  notRun?: string;
  mounted?: string;
}

interface Stray {
  file: string;
  line: number;
  text: string;
}

/** The fenced blocks of a markdown file, with the marks in the HTML comments just before each. */
function blocksOf(file: string): { blocks: Block[]; stray: Stray[] } {
  const lines = readFileSync(join(REPO, file), 'utf8').split('\n');
  const blocks: Block[] = [];
  const marks: Stray[] = [];
  const stray: Stray[] = [];
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    const mark = /^<!-- (not run|mounted): (.*?) -->$/.exec(l);
    if (mark) {
      marks.push({ file, line: i + 1, text: l });
      continue;
    }
    if (l.trim() === '' && marks.length) continue;
    const fence = /^```(\S*)\s*$/.exec(l);
    if (!fence) {
      stray.push(...marks.splice(0));
      continue;
    }
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]!); i++) body.push(lines[i]!);
    const block: Block = { file, line: start + 1, lang: fence[1]!, body: body.join('\n') + '\n' };
    for (const m of marks.splice(0)) {
      const [, kind, value] = /^<!-- (not run|mounted): (.*?) -->$/.exec(m.text)!;
      if (kind === 'not run') block.notRun = value!.trim();
      else block.mounted = value!.trim();
    }
    blocks.push(block);
  }
  stray.push(...marks);
  return { blocks, stray };
}

const FILES = ['README.md', ...readdirSync(join(REPO, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)];
const parsed = FILES.map(blocksOf);
const BLOCKS = parsed.flatMap((p) => p.blocks);
const where = (b: { file: string; line: number }) => `${b.file}:${b.line}`;

/** Examples talk about the default backend; on the fuse-native run they get it explicitly. */
function withBackend(cmd: string): string {
  return BACKEND ? cmd.replace(/\bmdevfs (mount|exec)\b/g, `mdevfs $1 --backend ${BACKEND}`) : cmd;
}

/** A directory that looks like a clone: a symlink to each top-level entry of the repository. */
function cloneLike(): { cwd: string; env: NodeJS.ProcessEnv } {
  const root = scratch('mdevfs-docs-');
  const dir = join(root, 'clone');
  mkdirSync(dir);
  const present = new Set(readdirSync(REPO).filter((e) => e !== '.git'));
  // Only what a clone holds plus what setup makes; not whatever a developer left in the tree.
  const keep = ['dist', 'node_modules'];
  const git = spawnSync('git', ['ls-tree', '--name-only', 'HEAD'], { cwd: REPO, encoding: 'utf8' }).stdout ?? '';
  // Not a git checkout (an exported tree): everything there is.
  const entries = git.trim() ? git.split('\n').filter(Boolean) : [...present];
  for (const e of new Set([...entries, ...keep])) {
    if (!present.has(e)) continue;
    // ./mount is the clone's own mount point (mount/.gitkeep): examples mount there, so it is
    // a directory of this copy, not a link to the repository's.
    if (e === 'mount') mkdirSync(join(dir, e));
    else symlinkSync(join(REPO, e), join(dir, e));
  }
  // `npm install -g` (and `npm link`) install into a prefix of this run's, first on PATH.
  const prefix = join(root, 'npm-global');
  return { cwd: dir, env: { ...ENV, npm_config_prefix: prefix, PATH: `${prefix}/bin:${ENV.PATH}` } };
}

/** `mdevfs` on PATH, as `npm link` or `npm install -g .` puts it there: a link to scripts/mdevfs. */
const BIN = scratch('mdevfs-docs-bin-');
symlinkSync(CLI, join(BIN, 'mdevfs'));

const ENV = cliEnv({
  LC_ALL: 'C',
  PATH: `${BIN}:${process.env.PATH}`,
  npm_config_offline: 'true',
  npm_config_update_notifier: 'false',
});

interface Run {
  code: number | null;
  out: string;
  timedOut: boolean;
}

/**
 * Runs a bash script in its own process group (stdout and stderr merged, in order). After
 * `timeoutMs` the group gets SIGTERM (a daemon in it unmounts), then SIGKILL.
 */
function runScript(script: string, cwd: string, env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn('bash', ['-c', `exec 2>&1\n${PRELUDE}${script}`], { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let timedOut = false;
    p.stdout!.on('data', (d) => (out += d));
    const kill = (sig: NodeJS.Signals) => {
      try {
        process.kill(-p.pid!, sig);
      } catch {
        /* already gone */
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill('SIGTERM');
      setTimeout(() => kill('SIGKILL'), 5000).unref();
    }, timeoutMs);
    // Resolve on close (stdout closed by every process of the script, daemons included).
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, timedOut });
    });
  });
}

/** Mounts under `dir` (FUSE or bind) that are still there. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => !!m && (m === dir || m.startsWith(dir + '/')));
}

/**
 * A transcript shows a terminal; its commands write to a pipe here. What differs for the commands
 * the docs use: `ls` lists in columns on a terminal (one name a line on a pipe).
 */
const TERMINAL = 'export COLUMNS=80\nls() { command ls -C -T 0 "$@"; }\n';

/**
 * Every script runs as root, where the docs' `sudo CMD` is just CMD (the README: "as root, or
 * prefix each with sudo"); sudo with options is not something an example should need.
 */
const PRELUDE = 'sudo() { case "$1" in -*) echo "docs-examples: sudo $1 is not supported" >&2; return 126;; esac; "$@"; }\n';

interface Transcript {
  commands: string[];
  /** The transcript as the markdown shows it, one `# cmd` line and its output per command. */
  text: string;
}

function parseConsole(body: string): Transcript {
  const commands: string[] = [];
  const text: string[] = [];
  for (const line of body.replace(/\n$/, '').split('\n')) {
    if (line === '#' || line === '$') continue;
    const cmd = /^[#$] (.*)$/.exec(line);
    if (cmd) commands.push(cmd[1]!);
    text.push(line);
  }
  return { commands, text: text.join('\n') + '\n' };
}

/** Runs a transcript's commands in one bash and renders what they printed the same way. */
async function runConsole(tr: Transcript, cwd: string, env: NodeJS.ProcessEnv): Promise<{ text: string; run: Run }> {
  const mark = (i: number | string) => `printf '\\036%s\\036' ${i}`;
  const script = TERMINAL + tr.commands.map((c, i) => `${mark(i)}\n${withBackend(c)}`).join('\n') + `\n${mark('end')}\n`;
  const run = await runScript(script, cwd, env);
  const parts = run.out.split(/\x1e(\d+|end)\x1e/);
  const outputs = new Map<number, string>();
  for (let i = 1; i + 1 < parts.length; i += 2) if (parts[i] !== 'end') outputs.set(Number(parts[i]), parts[i + 1]!);
  const text = tr.commands
    .map((c, i) => {
      const o = outputs.get(i) ?? '<<not reached>>\n';
      return `# ${c}\n${o}${o === '' || o.endsWith('\n') ? '' : '\n'}`;
    })
    .join('');
  return { text, run };
}

/** Starts `mdevfs mount ARGS` in `cwd` and waits until it answers; returns how to stop it. */
async function mountFor(args: string, cwd: string, env: NodeJS.ProcessEnv, t: Test): Promise<() => Promise<void>> {
  const argv = args.split(/\s+/).filter(Boolean);
  const dir = argv.find((a) => !a.startsWith('-'))!;
  const proc = spawn(process.execPath, [CLI, 'mount', ...argv, ...(BACKEND ? ['--backend', BACKEND] : [])], {
    cwd,
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let logs = '';
  proc.stderr!.on('data', (d) => (logs += d));
  const exited = new Promise<number | null>((r) => proc.on('exit', (c) => r(c)));
  const wait = await runScript(`${process.execPath} ${CLI} wait ${dir} --timeout 20`, cwd, env);
  if (wait.code !== 0) {
    proc.kill('SIGKILL');
    throw new Error(`mdevfs mount ${args} did not come up: ${wait.out}${logs}`);
  }
  return async () => {
    proc.kill('SIGTERM');
    t.equal(await exited, 0, `mdevfs mount ${args} exits 0 when stopped`);
  };
}

t.test('every fenced block names a language the harness knows', async (t) => {
  const unknown = BLOCKS.filter((b) => !RUN.has(b.lang) && !NOT_EXAMPLES.has(b.lang)).map((b) => `${where(b)}: \`\`\`${b.lang}`);
  t.same(unknown, [], 'examples are console, bash, sh or json; reference text is text or markdown');
  const stray = parsed.flatMap((p) => p.stray).map((s) => `${where(s)}: ${s.text}`);
  t.same(stray, [], 'every <!-- not run --> / <!-- mounted --> mark comes right before a block');
  const misplaced = BLOCKS.filter((b) => (b.notRun !== undefined || b.mounted !== undefined) && !RUN.has(b.lang)).map(where);
  t.same(misplaced, [], 'marks only on examples');
  t.ok(BLOCKS.filter((b) => RUN.has(b.lang) && b.notRun === undefined).length >= 5, 'the harness finds the examples');
});

t.test('the examples that are not run, and why', async (t) => {
  const notRun = BLOCKS.filter((b) => b.notRun !== undefined);
  for (const b of notRun) t.comment(`not run: ${where(b)}: ${b.notRun}`);
  t.ok(notRun.every((b) => b.notRun!.length >= 10), 'each names its reason');
  t.ok(notRun.length <= MAX_NOT_RUN, `at most ${MAX_NOT_RUN} (${notRun.length}): run an example rather than mark it`);
});

for (const b of BLOCKS) {
  if (!RUN.has(b.lang) || b.notRun !== undefined) continue;
  t.test(`${where(b)} (${b.lang})`, async (t) => {
    const { cwd, env } = cloneLike();
    let stop: (() => Promise<void>) | undefined;
    if (b.mounted) stop = await mountFor(b.mounted, cwd, env, t);
    try {
      if (b.lang === 'console') {
        const tr = parseConsole(b.body);
        t.ok(tr.commands.length > 0, 'a transcript has commands');
        const { text, run } = await runConsole(tr, cwd, env);
        t.notOk(run.timedOut, 'finished');
        t.equal(normalise(text), normalise(tr.text), 'prints what the transcript shows');
      } else if (b.lang === 'json') {
        const file = join(cwd, 'example-profile.json');
        writeFileSync(file, b.body);
        const run = await runScript(`${process.execPath} ${CLI} exec --profile ${file} ${BACKEND ? `--backend ${BACKEND}` : ''} -- true`, cwd, env);
        t.equal(run.code, 0, `mdevfs accepts it as a profile${run.code === 0 ? '' : `\n${run.out}`}`);
      } else {
        const script = b.body
          .split('\n')
          .map((l) => (/^\s*\.\.\.(\s+#.*)?$/.test(l) ? ':' : withBackend(l)))
          .join('\n');
        const run = await runScript(`set -e -o pipefail\n${script}`, cwd, env);
        t.notOk(run.timedOut, 'finished');
        t.equal(run.code, 0, `exits 0${run.code === 0 ? '' : `\n${run.out}`}`);
      }
    } finally {
      if (stop) await stop();
      const left = mountsUnder(cwd);
      t.same(left, [], 'leaves no mount behind');
      for (const m of left.reverse()) spawnSync('umount', ['-l', m]);
    }
  });
}

/** Every text file of the repository's sources, tests and docs (what a citation may sit in). */
function citingFiles(): string[] {
  const out = spawnSync('git', ['ls-files', 'README.md', 'docs', 'src', 'test'], { cwd: REPO, encoding: 'utf8' }).stdout;
  return out.split('\n').filter((f) => f && f !== 'test/integration/docs-examples.test.ts' && !f.startsWith('test/conformance/expected'));
}

t.test('docs and comments cite what a clone contains, by sections that exist', async (t) => {
  const files = citingFiles();
  const missing = /hardware-profiles\.md|kernel-mdev-abi\.md|spec §|\.\.\/shared\//;
  const bad = files.flatMap((f) =>
    readFileSync(join(REPO, f), 'utf8')
      .split('\n')
      .flatMap((l, i) => (missing.test(l) ? [`${f}:${i + 1}: ${l.trim()}`] : [])),
  );
  t.same(bad, [], 'no citation of the private notes (hardware-profiles.md, kernel-mdev-abi.md, "spec §N", ../shared)');
  // `docs/NAME.md, "Section"` (a comment may wrap it: ` * ` and line breaks are spaces)
  const sections = new Map<string, string[]>();
  const headings = (doc: string) =>
    sections.get(doc) ??
    sections
      .set(doc, readFileSync(join(REPO, doc), 'utf8').split('\n').filter((l) => l.startsWith('#')).map((l) => l.replace(/^#+\s*/, '')))
      .get(doc)!;
  const unknown: string[] = [];
  let cited = 0;
  for (const f of files) {
    const text = readFileSync(join(REPO, f), 'utf8').replace(/\n\s*(\*|\/\/|#)?\s*/g, ' ');
    for (const m of text.matchAll(/(docs\/[\w-]+\.md)`?,? "([^"]+)"/g)) {
      const [, doc, section] = m;
      cited++;
      let hs: string[];
      try {
        hs = headings(doc!);
      } catch {
        unknown.push(`${f}: ${doc} does not exist`);
        continue;
      }
      if (!hs.some((h) => h.replace(/`/g, '').startsWith(section!.replace(/`/g, '')))) unknown.push(`${f}: ${doc}, "${section}"`);
    }
  }
  t.ok(cited >= 10, `finds the section citations (${cited})`);
  t.same(unknown, [], 'every docs/NAME.md, "Section" citation names a heading of that file');
});

t.test('the files the README and docs/ name exist', async (t) => {
  const stale: string[] = [];
  let checked = 0;
  for (const f of FILES) {
    const text = readFileSync(join(REPO, f), 'utf8');
    // `src/...`, `test/...`, `docs/...`, `scripts/...` in backticks, without a `:line` suffix;
    // placeholders (NAME, *) are not paths.
    for (const m of text.matchAll(/`((?:src|test|docs|scripts)\/[^`\s:]*)/g)) {
      const p = m[1]!;
      if (/[A-Z]{3,}|\*|</.test(p)) continue;
      checked++;
      if (!existsSync(join(REPO, p))) stale.push(`${f}: ${p}`);
    }
  }
  t.ok(checked >= 20, `finds the paths (${checked})`);
  t.same(stale, [], 'no path to a file that moved or went');
});

t.test('the harness tells a transcript that holds from one that does not', async (t) => {
  const { cwd, env } = cloneLike();
  const right = parseConsole('# echo one\none\n# cd /nonexistent; echo two >&2\nbash: cd: /nonexistent: No such file or directory\ntwo\n#\n');
  t.same(right.commands, ['echo one', 'cd /nonexistent; echo two >&2'], 'commands are the prompt lines');
  const ran = await runConsole(right, cwd, env);
  t.equal(normalise(ran.text), normalise(right.text), 'stdout and stderr in order, bash\'s "line N: " dropped');
  const wrong = parseConsole('# echo one\nOne\n');
  t.not(normalise((await runConsole(wrong, cwd, env)).text), normalise(wrong.text), 'a changed output is a difference');
  t.equal(normalise('UDEV  [3516.024154] add x\n'), normalise('UDEV  [7.000001] add x\n'), "udevadm's timestamps are normalised");
  t.not(normalise('UDEV  [1.0] add x\n'), normalise('UDEV  [1.0] bind x\n'), 'nothing else of the line');
});
