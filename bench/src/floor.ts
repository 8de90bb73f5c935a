import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, promises as fsp, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Ctx } from './context';
import { isMounted, stopMounted, track } from './daemon';

/** The C source, in the repository (the bench compiles it at run time). */
const SOURCE = resolve(__dirname, '..', 'floor', 'floor.c');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function ok(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const haveToolchain = () => ok('sh', ['-c', 'command -v cc && command -v pkg-config']) && ok('pkg-config', ['--exists', 'fuse3']);

let built: { binary: string | null; why?: string } | undefined;

/**
 * Builds the floor daemon once per run: cc + pkg-config fuse3 (libfuse3-dev). Whatever is
 * missing is installed with apt-get when we are root, and said so; without a compiler the
 * floor column is skipped, with the reason in the notes.
 */
export function floorBinary(ctx: Ctx): string | null {
  if (built) return built.binary;
  if (!haveToolchain()) {
    const pkgs = ['gcc', 'libc6-dev', 'pkg-config', 'libfuse3-dev'];
    if (process.getuid?.() === 0 && ok('sh', ['-c', 'command -v apt-get'])) {
      ctx.log(`floor: installing ${pkgs.join(' ')} (apt-get) to build the C floor reference`);
      process.stderr.write(`bench: installing ${pkgs.join(' ')} with apt-get for the C floor daemon\n`);
      const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
      const install = () => {
        try {
          execFileSync('apt-get', ['install', '-y', '-qq', ...pkgs], { stdio: 'ignore', env });
          return true;
        } catch {
          return false;
        }
      };
      if (!install()) {
        ok('apt-get', ['update', '-qq']);
        install();
      }
    }
  }
  if (!haveToolchain()) {
    built = { binary: null, why: 'no C compiler or libfuse3-dev (pkg-config fuse3), and they could not be installed' };
  } else {
    const dir = mkdtempSync(join(tmpdir(), 'mdevfs-bench-floor-'));
    const binary = join(dir, 'floor');
    try {
      const flags = execFileSync('pkg-config', ['--cflags', '--libs', 'fuse3'], { encoding: 'utf8' }).trim().split(/\s+/);
      execFileSync('cc', ['-O2', '-o', binary, SOURCE, ...flags], { stdio: ['ignore', 'ignore', 'pipe'] });
      built = { binary };
      process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      built = { binary: null, why: `compiling ${SOURCE} failed: ${(err as { stderr?: Buffer }).stderr?.toString().trim() ?? String(err)}` };
    }
  }
  if (!built.binary) {
    ctx.notes.push(`C floor SKIPPED: ${built.why}.`);
    ctx.log(`floor: skipped (${built.why})`);
  }
  return built.binary;
}

/**
 * The floor reference (bench/floor/floor.c): a minimal single-threaded libfuse3
 * low-level daemon serving, from memory, a static copy of the tree mdevfs serves, with the
 * direct backend's cache timeouts and open flags. Started on one of the bench's tmpfs copies.
 */
export class Floor {
  private done = false;
  private readonly exited: Promise<void>;

  private constructor(
    readonly work: string,
    readonly dir: string,
    private readonly child: ChildProcess,
    private readonly logFile: string,
  ) {
    this.exited = new Promise((r) =>
      child.on('exit', () => {
        this.done = true;
        r();
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** A floor daemon serving `source` (a real directory tree), or null when there is no floor. */
  static async start(ctx: Ctx, source: string): Promise<Floor | null> {
    const binary = floorBinary(ctx);
    if (!binary) return null;
    const work = mkdtempSync('/tmp/mdevfs-bench-floor-');
    const dir = join(work, 'mnt');
    mkdirSync(dir);
    const logFile = join(work, 'floor.log');
    const logFd = openSync(logFile, 'a');
    const child = spawn(binary, [source, dir], { stdio: ['ignore', logFd, logFd] });
    closeSync(logFd);
    const f = new Floor(work, dir, child, logFile);
    track(f);
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (f.done) throw new Error(`floor daemon exited before it was ready:\n${f.logTail()}`);
      if (isMounted(dir) && (await fsp.stat(join(dir, 'bus', 'mdev')).then(() => true, () => false))) break;
      if (Date.now() > deadline) {
        await f.stop();
        throw new Error(`floor daemon was not ready after 60 s:\n${f.logTail()}`);
      }
      await sleep(25);
    }
    return f;
  }

  path(...parts: string[]): string {
    return join(this.dir, ...parts);
  }

  logTail(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8').split('\n').slice(-10).join('\n') : '';
  }

  stop(): Promise<void> {
    return stopMounted(this.child, this.done ? null : this.exited, this.dir, this.work, 10_000);
  }
}
