import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { request } from '../control/client';
import { type Request, defaultControlPath } from '../control/protocol';
import { startControlServer } from '../control/server';
import { buildEmulation } from '../daemon';
import type { ParentProfile, Profile } from '../drivers/profile-types';
import { BUILTIN_PROFILES, loadProfile } from '../drivers/profile';
import { BACKENDS, DEFAULT_BACKEND } from '../fuse/backends';
import { inspect, lazyUnmount } from '../fuse/mountpoint';
import { LOG_LEVELS, createLogger } from '../log';
import { parseArgs } from './args';
import { runOverSys } from './exec';

export const EXIT_USAGE = 2;
export const EXIT_MOUNT = 3;

const HELP = `mdevfs: a live emulation of the Linux VFIO mediated-device (mdev) sysfs tree

Usage:
  mdevfs mount DIR [options]     mount the tree at DIR (in the foreground) until SIGINT/SIGTERM
  mdevfs exec [options] -- CMD   mount a fresh tree, run CMD with it over /sys (and a scratch
                                 /etc/mdevctl.d) in a private mount namespace, unmount; exits with
                                 CMD's status. Needs root (or run it under unshare -Ur).
  mdevfs ctl DIR parents          list the parents of the daemon serving DIR
  mdevfs ctl DIR add-parent FILE  register the parent(s) in FILE (a profile, or one parent) while mounted
  mdevfs ctl DIR remove-parent NAME
                                 unregister a parent as the kernel does: wait for in-flight work, then
                                 remove its devices, types and class link (later writes get ENODEV)
  mdevfs --help

DIR plays the role of /sys: DIR/class/mdev_bus, DIR/bus/mdev, DIR/devices/..., DIR/kernel/iommu_groups.
The daemon is ready once DIR/bus/mdev exists.

Options:
  --profile NAME|FILE   parents, types and capacity models (built-in: ${Object.keys(BUILTIN_PROFILES).join(', ')};
                        default: samples = the kernel's mtty, mdpy, mbochs) or a JSON profile file
  --abi 6.1|4.17        kernel ABI to emulate (default: the profile's, else 6.1)
  --log-level LEVEL     ${LOG_LEVELS.join('|')} (default: warn; info logs every refused request)
  --control PATH        control socket for mdevfs ctl (default: derived from DIR, in the temp dir)
  --backend NAME        fuse-native (default: libfuse2, no kernel caching) or direct (speaks the FUSE
                        protocol itself: kernel caching with exact invalidation, parallel writes)
  -h, --help            this text

Exit codes: 0 clean unmount, 1 failure, 2 usage error, 3 DIR is already a live mount.
`;

type Options = Map<string, string | true>;

/** The absolute mountpoint for DIR, resolving links above it but not DIR itself (it may be a dead mount). */
function mountpointOf(dirArg: string): string {
  const abs = resolve(dirArg);
  return resolve(realpathSync(dirname(abs)), basename(abs));
}

async function mountCommand(dirArg: string | undefined, options: Options): Promise<number> {
  if (!dirArg) {
    process.stderr.write('mdevfs mount: missing DIR\n\n' + HELP);
    return EXIT_USAGE;
  }
  return withMount(dirArg, options, (stopped) => stopped);
}

async function ctlCommand(args: readonly string[], options: Options): Promise<number> {
  const [dirArg, verb, arg] = args;
  if (!dirArg || !verb) {
    process.stderr.write('mdevfs ctl: usage: mdevfs ctl DIR parents|add-parent FILE|remove-parent NAME\n');
    return EXIT_USAGE;
  }
  const path = String(options.get('control') ?? defaultControlPath(mountpointOf(dirArg)));
  let req: Request;
  if (verb === 'parents') req = { op: 'parents' };
  else if (verb === 'remove-parent' && arg) req = { op: 'remove-parent', name: arg };
  else if (verb === 'add-parent' && arg) {
    let parsed: Profile | ParentProfile;
    try {
      parsed = JSON.parse(readFileSync(arg, 'utf8')) as Profile | ParentProfile;
    } catch (err) {
      process.stderr.write(`mdevfs ctl: ${(err as Error).message}\n`);
      return EXIT_USAGE;
    }
    const parents = 'parents' in parsed ? parsed.parents : [parsed];
    for (const parent of parents) {
      const code = await ctlSend(path, { op: 'add-parent', parent });
      if (code !== 0) return code;
    }
    return 0;
  } else {
    process.stderr.write(`mdevfs ctl: unknown or incomplete request "${args.slice(1).join(' ')}"\n`);
    return EXIT_USAGE;
  }
  return ctlSend(path, req);
}

async function ctlSend(path: string, req: Request): Promise<number> {
  let reply;
  try {
    reply = await request(path, req);
  } catch (err) {
    process.stderr.write(`mdevfs ctl: no daemon answers on ${path}: ${(err as Error).message}\n`);
    return 1;
  }
  if (!reply.ok) {
    process.stderr.write(`mdevfs ctl: ${reply.error}\n`);
    return 1;
  }
  if (reply.parents) process.stdout.write(reply.parents.map((p) => p + '\n').join(''));
  return 0;
}

async function execCommand(argv: readonly string[], options: Options): Promise<number> {
  if (argv.length === 0) {
    process.stderr.write('mdevfs exec: missing command after --\n\n' + HELP);
    return EXIT_USAGE;
  }
  const dir = mkdtempSync(join(tmpdir(), 'mdevfs-'));
  try {
    return await withMount(dir, options, (stopped, mountpoint) =>
      Promise.race([stopped, runOverSys(mountpoint, argv)]),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Mounts, hands `body` a promise that resolves when a signal asks us to stop, and
 * unmounts when body's promise settles. Resolves with body's exit code.
 */
async function withMount(
  dirArg: string,
  options: Options,
  body: (stopped: Promise<number>, mountpoint: string) => Promise<number>,
): Promise<number> {
  const level = String(options.get('log-level') ?? 'warn');
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    process.stderr.write(`mdevfs: --log-level must be one of ${LOG_LEVELS.join(', ')}\n`);
    return EXIT_USAGE;
  }
  const log = createLogger(level);
  const backendName = String(options.get('backend') ?? DEFAULT_BACKEND);
  const makeBackend = BACKENDS[backendName];
  if (!makeBackend) {
    process.stderr.write(`mdevfs: --backend must be one of ${Object.keys(BACKENDS).join(', ')}\n`);
    return EXIT_USAGE;
  }
  const abiOpt = options.get('abi');
  if (abiOpt !== undefined && abiOpt !== '6.1' && abiOpt !== '4.17') {
    process.stderr.write('mdevfs: --abi must be 6.1 or 4.17\n');
    return EXIT_USAGE;
  }
  let emulation;
  try {
    const profile = loadProfile(String(options.get('profile') ?? 'samples'));
    emulation = buildEmulation(profile, { abi: abiOpt as string | undefined, log });
  } catch (err) {
    process.stderr.write(`mdevfs: ${(err as Error).message}\n`);
    return EXIT_USAGE;
  }

  const dir = mountpointOf(dirArg);
  const state = await inspect(dir);
  if (state.kind === 'live') {
    process.stderr.write(
      `mdevfs: ${dir} is already a live mount (${state.entry.fstype}); unmount it first (fusermount -u ${dir})\n`,
    );
    return EXIT_MOUNT;
  }
  if (state.kind === 'stale') {
    log.warn({ dir, fstype: state.entry.fstype }, 'recovering a stale mount left by a dead daemon');
    await lazyUnmount(dir);
  }
  mkdirSync(dir, { recursive: true });

  const backend = makeBackend({ mountpoint: dir, kernfs: emulation.kernfs, log });
  await backend.mount();
  const controlPath = String(options.get('control') ?? defaultControlPath(dir));
  const control = await startControlServer(controlPath, emulation.core, emulation.clock, log, () => emulation.kernfs.settled());
  log.info({ dir, abi: emulation.abi.version, backend: backend.name }, 'mounted');

  const stopped = new Promise<number>((resolveStop) => {
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => resolveStop(0));
    process.on('uncaughtException', (err) => {
      log.fatal({ err }, 'uncaught exception');
      resolveStop(1);
    });
    process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  });
  try {
    return await body(stopped, dir);
  } finally {
    control.close();
    rmSync(controlPath, { force: true });
    log.info('unmounting');
    try {
      await backend.unmount();
    } catch (err) {
      log.warn({ err }, 'unmount failed; detaching lazily');
      await lazyUnmount(dir).catch(() => undefined);
    }
  }
}

export async function main(argv: readonly string[]): Promise<number> {
  let args;
  try {
    args = parseArgs(argv, new Set(['profile', 'abi', 'log-level', 'control', 'backend']));
  } catch (err) {
    process.stderr.write(`mdevfs: ${(err as Error).message}\n`);
    return EXIT_USAGE;
  }
  const [command, ...positionals] = args.positionals;
  if (args.options.has('help') || command === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  switch (command) {
    case 'mount':
      return mountCommand(positionals[0], args.options);
    case 'ctl':
      return ctlCommand(positionals, args.options);
    case 'exec':
      return execCommand([...positionals, ...args.rest], args.options);
    case undefined:
      process.stderr.write(HELP);
      return EXIT_USAGE;
    default:
      process.stderr.write(`mdevfs: unknown command "${command}"\n\n${HELP}`);
      return EXIT_USAGE;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: Error) => {
      process.stderr.write(`mdevfs: ${err.message}\n`);
      process.exit(1);
    },
  );
}
