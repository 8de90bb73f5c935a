import { mdevfsVersion } from '../base/version';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, rmdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { Logger } from 'pino';
import type { LogFormat } from '../base/log';
import type { Uevents } from '../events/uevents';
import { blockedThreadCount, reportBlockedThreads } from '../fuse/backend-interface';
import { COMMANDS, type Invocation, UsageError, commandHelp, controlPathFor, mountpointOf, parseCommandLine } from './args';

// Each command loads what it needs when it runs (`await import` in its branch), so that `wait`,
// `ctl` and `events` do not load the daemon, ajv or pino: every daemon start and every test that
// waits for one pays the CLI's start-up.
export const EXIT_USAGE = 2;
export const EXIT_MOUNT = 3;

async function help(): Promise<string> {
  const [{ BUILTIN_PROFILES }, { LOG_LEVELS }] = await Promise.all([import('../drivers/profile'), import('../base/log')]);
  return `mdevfs: a live emulation of the Linux VFIO mediated-device (mdev) sysfs tree

Usage:
  mdevfs mount DIR [options]     mount the tree at DIR (in the foreground) until SIGINT/SIGTERM; DIR is
                                 created if missing (and removed after), and may be spelt any way
  mdevfs exec [options] -- CMD   mount a fresh tree, run CMD with it over /sys (and a scratch
                                 /etc/mdevctl.d) in a private mount namespace, unmount; exits with
                                 CMD's status. An ordinary user gets a user namespace of their own
                                 (unshare --user --map-root-user --mount), where CMD runs as its root.
                                 CMD gets SYSTEMD_DEVICE_VERIFY_SYSFS=0 (unless set), without which
                                 libudev (udevadm, pyudev, libvirt) refuses a /sys that is not sysfs.
  mdevfs ctl DIR parents          list the parents of the daemon serving DIR
  mdevfs ctl DIR add-parent FILE|PROFILE
                                 register the parent(s) in FILE (a profile, or one parent) or of the built-in
                                 PROFILE while mounted
  mdevfs ctl DIR remove-parent NAME
                                 unregister a parent as the kernel does: wait for in-flight work, then
                                 remove its devices, types and class link (later writes get ENODEV)
  mdevfs ctl DIR state [--json]  parents, types with available_instances, devices and their state
  mdevfs ctl DIR mark            print the current SEQNUM (wait --since it for what comes after)
  mdevfs ctl DIR wait --event ACTION:NAME | --device UUID --state reserved|active|removing|gone |
                 [--op OP] [--errno NAME] [--path GLOB] [--fault ID] (a journal entry) [--since N] [--timeout S]
                                 exit 0 once it holds (an event: one with a SEQNUM above N, default 0), 1 at
                                 the timeout (default 10 s)
  mdevfs ctl DIR reset           back to the profile's start state (see docs/control-api.md)
  mdevfs ctl DIR fault add --op OP [--parent P --type T --uuid U --attr A --path GLOB]
                 --errno NAME|--delay MS [--jitter MS]|--hang|--succeed|--content TEXT
                 [--after N --every N --probability P --seed N --times N --sticky] [--id ID]
                                 add a fault rule (prints its id); fault change ID FLAGS (the same flags:
                                 a new spec for rule ID, its counts from zero), fault list [--json],
                                 fault rm ID, fault release ID (let what hangs on it go on)
  mdevfs ctl DIR journal [--since N] [--follow] [--json]
                                 every write to the tree and every fault fired, with the writer
                                 Inside mdevfs exec, DIR may be left out (ctl, wait, events): they use
                                 $MDEVFS_CONTROL, the socket exec gives CMD (and $MDEVFS_ROOT, the tree: /sys)
  mdevfs wait DIR [--timeout S]  exit 0 once the daemon serving DIR answers (default: wait 10 s, then exit 1)
  mdevfs events DIR [--since N] [--until ACTION:NAME] [--timeout S]
                                 print the uevents of the daemon serving DIR as JSON lines (ACTION, DEVPATH,
                                 SUBSYSTEM, ..., SEQNUM, in the kernel's order). --until add:UUID exits 0 once
                                 that event was printed (NAME: the last part of DEVPATH); --since 0 first
                                 prints the events already sent (the last 1024), so nothing is missed
  mdevfs record [ROOT] [-o FILE] write a profile that replays the mdev parents of ROOT (default /sys, this
                                 host; or a copy of a tree, or a mount): identity, types, devices present,
                                 available_instances and a capacity model. Replay: --profile FILE
  mdevfs profiles                list the built-in profiles, one a line, with the host each emulates
  mdevfs profiles show NAME [--gpus N]
                                 print a built-in as a JSON profile for --profile FILE, to copy and change;
                                 --gpus N: N GPUs of a one-GPU built-in (nvidia-t4, -v100, -a10, -l40s)
  mdevfs CMD --help               that command's usage, options and an example (also: mdevfs help CMD)
  mdevfs --version               the version

DIR plays the role of /sys: DIR/class/mdev_bus, DIR/bus/mdev, DIR/devices/..., DIR/kernel/iommu_groups.
Only root changes the tree; other users read what sysfs lets them read. A script starts the daemon in
the background and waits for it with \`mdevfs mount DIR & mdevfs wait DIR\`; \`kill $!\` stops it.

Options:
  --profile NAME|FILE   parents, types and capacity models (built-in: ${Object.keys(BUILTIN_PROFILES).join(', ')};
                        default: samples = the kernel's mtty, mdpy, mbochs) or a JSON profile file
  --abi 6.1|4.17        kernel ABI to emulate (default: the profile's, else 6.1)
  --log-level LEVEL     ${LOG_LEVELS.join('|')} (default: warn; info logs every refused request)
  --log-format FORMAT   json (one object a line, for machines) or pretty (pino-pretty, for people);
                        default: pretty when stderr is a terminal, else json
  --control PATH        control socket for ctl, wait and events (default: one per DIR, mode 0600, in
                        /run/mdevfs for root, else $XDG_RUNTIME_DIR/mdevfs, else \${TMPDIR:-/tmp}/mdevfs-UID,
                        a directory of that user's, mode 0700)
  --udev                also deliver the uevents as udevd does, on the udev netlink group (libudev's format),
                        so libudev monitors hear them (libvirt, pyudev, udevadm monitor --udev). Needs
                        python3. With exec: in a private network namespace of CMD's, and nothing else
                        hears them. With mount: in the daemon's own network namespace, where EVERY
                        libudev listener (the host's too, if the daemon runs there) hears the
                        emulated devices come and go; run the daemon in its own namespace
                        (unshare -n) unless that is what you want. Without --udev nothing is sent.
                        exec --udev also sends each event first on the kernel group (as the kernel does;
                        SEQNUM there is the host kernel's counter), for udevd and kernel monitors.
  --udevd               exec only, as root: also run Debian's systemd-udevd inside, with its rules (e.g.
                        mdevctl's auto-start), its database on a private /run/udev, /dev and /run private
                        overlays; mdevfs then sends the kernel group only and udevd re-broadcasts
  --backend NAME        direct (default: speaks the FUSE protocol itself, kernel caching with exact
                        invalidation, parallel writes; needs root) or fuse-native (libfuse2, no kernel
                        caching). Without it, a user who may not mount (no CAP_SYS_ADMIN) gets
                        fuse-native, which mounts through fusermount
  --journal FILE        append every write to the tree and every fault fired to FILE, one JSON line each
                        (seq, times, op, path, the writer's pid/uid/comm, data, result, what changed)
  --journal-size N      entries the journal keeps in memory (default 10000; at most 1000000); 0: no
                        journal (ctl journal and waits for journal entries are refused)
  --host-sysfs          show the host's own /sys wherever the emulation has nothing: its devices, classes
                        and buses beside the emulated ones (a directory in both is merged, the emulated
                        entry wins a name), its files read as they are and never written (EROFS, or
                        EACCES where the mode has no write bit, root too). A profile address the host
                        already has is refused (exit 2). exec also mounts the host's mounts under /sys
                        (cgroup, bpf, debugfs...) in place; mount shows them as empty directories.
                        Uevents still describe only the emulated devices
  -h, --help            this text (with a command: that command's)
  -V, --version         the version

Environment:
  MDEVFS_SPIN_US=N      direct backend: after each request keep polling /dev/fuse for N microseconds
                        instead of sleeping. Faster sequential clients where a CPU is idle, slower
                        ones where the CPUs are busy (docs/benchmarks.md); off (0) by default

Exit codes: 0 clean unmount, 1 failure, 2 usage error, 3 DIR is already a live mount or another
daemon is serving it.
`;
}

type Options = Map<string, string>;

async function mountCommand(dirArg: string, options: Options): Promise<number> {
  const { startUdevSender } = await import('../events/udev');
  return withMount(dirArg, options, async (stopped, dir, { uevents, log }) => {
    if (log.level !== 'silent') {
      process.stderr.write(`mdevfs: serving ${options.get('profile') ?? 'samples'} at ${dir}; Ctrl-C to stop (or kill ${process.pid})\n`);
    }
    const sender = options.has('udev') ? startUdevSender(uevents, log) : undefined;
    const senderFailed = sender?.failed.then((err) => {
      process.stderr.write(`mdevfs: --udev: ${err.message}\n`);
      return 1;
    });
    try {
      return await Promise.race(senderFailed ? [stopped, senderFailed] : [stopped]);
    } finally {
      sender?.stop();
    }
  });
}

async function execCommand(argv: readonly string[], options: Options): Promise<number> {
  const [{ hasSysAdmin }, { execInUserNamespace, runOverSys }, { feedUdevSender }] = await Promise.all([
    import('../fuse/backend-registry'),
    import('./exec'),
    import('../events/udev'),
  ]);
  if (!hasSysAdmin()) {
    if (options.has('udevd')) throw new UsageError('--udevd needs root (its private /dev cannot hold device nodes in a user namespace)');
    return execInUserNamespace();
  }
  const dir = mkdtempSync(join(tmpdir(), 'mdevfs-'));
  try {
    return await withMount(dir, options, (stopped, mountpoint, { uevents, log, controlPath }) => {
      const udevd = options.has('udevd');
      const groups = { kernel: true, udev: !udevd };
      const udev = options.has('udev') || udevd ? (out: Writable, acks: Readable) => feedUdevSender(uevents, out, log, acks, groups) : undefined;
      return runOverSys(mountpoint, argv, { udev, udevd, stop: stopped, control: controlPath, hostSubmounts: options.has('host-sysfs') });
    });
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
  body: (stopped: Promise<number>, mountpoint: string, ctx: { uevents: Uevents; log: Logger; controlPath: string }) => Promise<number>,
): Promise<number> {
  const [
    { ensurePrivateDir },
    { lockForLife, sweepStaleLocks },
    { controlDir, lockPath },
    { startControlServer, stopControlServer },
    { Emulation, HostClashError },
    { loadProfile },
    { BACKENDS, automaticBackend },
    { inspect, lazyUnmount },
    { LOG_FORMATS, LOG_LEVELS, createLogger, defaultLogFormat },
    { onOrphaned },
    { journalToFile },
  ] = await Promise.all([
    import('../control/private-dir'),
    import('../control/lock'),
    import('../control/paths'),
    import('../control/server'),
    import('../emulation'),
    import('../drivers/profile'),
    import('../fuse/backend-registry'),
    import('../fuse/mountpoint'),
    import('../base/log'),
    import('./orphan'),
    import('../journal/file'),
  ]);
  const level = String(options.get('log-level') ?? 'warn');
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    process.stderr.write(`mdevfs: --log-level must be one of ${LOG_LEVELS.join(', ')}\n`);
    return EXIT_USAGE;
  }
  const format = options.get('log-format') ?? defaultLogFormat();
  if (!(LOG_FORMATS as readonly string[]).includes(format)) {
    process.stderr.write(`mdevfs: --log-format must be one of ${LOG_FORMATS.join(', ')}\n`);
    return EXIT_USAGE;
  }
  const abiOpt = options.get('abi');
  if (abiOpt !== undefined && abiOpt !== '6.1' && abiOpt !== '4.17') {
    process.stderr.write('mdevfs: --abi must be 6.1 or 4.17\n');
    return EXIT_USAGE;
  }
  const sizeOpt = options.get('journal-size');
  const journalSize = sizeOpt === undefined ? undefined : Number(sizeOpt);
  if (journalSize !== undefined && !(/^\d+$/.test(String(sizeOpt)) && journalSize <= MAX_JOURNAL_SIZE)) {
    process.stderr.write(`mdevfs: --journal-size must be a number of entries from 0 (no journal) to ${MAX_JOURNAL_SIZE}, not "${sizeOpt}"\n`);
    return EXIT_USAGE;
  }
  if (journalSize === 0 && options.has('journal')) {
    process.stderr.write('mdevfs: --journal FILE needs the journal: it cannot go with --journal-size 0\n');
    return EXIT_USAGE;
  }
  const auto = options.has('backend') ? undefined : automaticBackend();
  const backendName = String(options.get('backend') ?? auto?.name);
  const makeBackend = BACKENDS[backendName];
  if (!makeBackend) {
    process.stderr.write(`mdevfs: --backend must be one of ${Object.keys(BACKENDS).join(', ')}\n`);
    return EXIT_USAGE;
  }
  // DIR and the control directory are decided before anything else is done: nothing is built (no
  // parent registers, nothing is logged) for a daemon that could not be reached.
  const dir = mountpointOf(dirArg); // these two throw UsageError
  const controlPath = controlPathFor(dir, options);
  const cdir = controlDir();
  try {
    ensurePrivateDir(cdir);
  } catch (err) {
    process.stderr.write(`mdevfs: ${(err as Error).message}\n`);
    return 1;
  }
  const log = createLogger(level, format as LogFormat);
  if (auto) log.info({ backend: auto.name, why: auto.why }, 'FUSE backend chosen');
  let emulation;
  try {
    const profile = loadProfile(String(options.get('profile') ?? 'samples'));
    emulation = new Emulation(profile, { abi: abiOpt as string | undefined, log, journalSize, hostSysfs: options.has('host-sysfs') ? '/sys' : undefined });
    await emulation.ready;
  } catch (err) {
    const message = err instanceof HostClashError ? HostClashError.describe(`profile ${options.get('profile') ?? 'samples'}`, err.clashes) : (err as Error).message;
    process.stderr.write(`mdevfs: ${message}\n`);
    return EXIT_USAGE;
  }
  let stopJournal: (() => Promise<void>) | undefined;
  try {
    const file = options.get('journal');
    if (file !== undefined && emulation.journal) stopJournal = journalToFile(emulation.journal, String(file), log);
  } catch (err) {
    process.stderr.write(`mdevfs: --journal: ${(err as Error).message}\n`);
    return 1;
  }

  // Everything that can fail happens before mounting: the lock, DIR, the socket.
  const lock = lockPath(dir);
  try {
    // One daemon per DIR: the loser of a race exits 3 before looking at DIR.
    if (!lockForLife(lock)) {
      process.stderr.write(`mdevfs: ${dir} is already a live mount or being mounted: another mdevfs daemon serves it\n`);
      return EXIT_MOUNT;
    }
    // The locks of daemons that were killed (SIGKILL leaves them), while this one starts.
    void sweepStaleLocks(cdir, lock).then((n) => n > 0 && log.debug({ removed: n, dir: cdir }, 'stale locks removed'));
  } catch (err) {
    process.stderr.write(`mdevfs: ${(err as Error).message}\n`);
    return 1;
  }
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
  if (statSync(dir, { throwIfNoEntry: false })?.isDirectory() === false) {
    process.stderr.write(`mdevfs: ${dir} exists and is not a directory\n`);
    return EXIT_USAGE;
  }
  let mounted = false;
  let control;
  /** DIR if this daemon made it: removed again once unmounted, if empty. */
  let created: string | undefined;
  const removeCreated = () => {
    if (!created) return;
    try {
      rmdirSync(created);
    } catch (err) {
      log.warn({ dir: created, err }, 'cannot remove the directory made for the mount');
    }
  };
  try {
    created = mkdirSync(dir, { recursive: true });
    const hidden = readdirSync(dir).length;
    if (hidden > 0 && level !== 'silent') {
      process.stderr.write(`mdevfs: warning: ${dir} is not empty: the mount hides its ${hidden} ${hidden === 1 ? 'entry' : 'entries'} until it is unmounted\n`);
    }
    control = await startControlServer(controlPath, emulation, log, () => ({ mountpoint: dir, mounted }));
  } catch (err) {
    removeCreated();
    process.stderr.write(`mdevfs: ${(err as Error).message}\n`);
    return 1;
  }

  // Signals are ours before mounting starts: one that arrives while mounting stops the daemon
  // right after, through the same unmount, instead of killing it with its mount in place.
  const stopped = new Promise<number>((resolveStop) => {
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => resolveStop(0));
    onOrphaned(() => resolveStop(0)); // npx: `kill $!` reaches npm and its shell, not us
    process.on('uncaughtException', (err) => {
      log.fatal({ err }, 'uncaught exception');
      resolveStop(1);
    });
    process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  });
  const backend = makeBackend({ mountpoint: dir, kernfs: emulation.kernfs, log });
  try {
    await backend.mount();
  } catch (err) {
    stopControlServer(control);
    rmSync(controlPath, { force: true });
    removeCreated();
    throw err;
  }
  mounted = true;
  log.info({ dir, abi: emulation.abi.version, backend: backend.name }, 'mounted');

  try {
    return await body(stopped, dir, { uevents: emulation.uevents, log, controlPath });
  } finally {
    // The last resort: stopping takes well under a second; if anything in it hangs, the process
    // ends anyway (its mount is detached first, or dies with its /dev/fuse).
    const deadline = setTimeout(() => {
      log.error({ ms: STOP_DEADLINE_MS }, 'stopping did not finish in time: the process ends with SIGKILL');
      process.kill(process.pid, 'SIGKILL');
    }, STOP_DEADLINE_MS);
    stopControlServer(control);
    rmSync(controlPath, { force: true });
    log.info('unmounting');
    // No request stays hung on a fault rule: each goes on (and is answered) before the unmount.
    const released = emulation.faults.releaseAll();
    if (released > 0) log.info({ released }, 'hung requests released');
    try {
      await backend.unmount();
    } catch (err) {
      log.warn({ err }, 'unmount failed; detaching lazily');
      await lazyUnmount(dir).catch(() => undefined);
    }
    await stopJournal?.();
    // --host-sysfs: a host file's read still blocked in the host's kernel (its request was answered
    // ENODEV) holds a libuv pool thread, which Node's exit joins for ever: main() ends the process
    // with SIGKILL if it does not return in time (the mount is gone already).
    const stuck = await emulation.kernfs.readsInKernel(HOST_READ_GRACE_MS);
    if (stuck > 0) {
      log.warn({ reads: stuck, ms: HOST_READ_GRACE_MS }, 'host file reads still blocked in the kernel: the process ends with SIGKILL');
      reportBlockedThreads(stuck);
    }
    removeCreated();
    clearTimeout(deadline);
  }
}

/** The most entries --journal-size keeps (a write of a UUID takes about 800 bytes of a full ring). */
const MAX_JOURNAL_SIZE = 1_000_000;

/** How long a host file's read still in the kernel at the end is given to return (below STOP_DEADLINE_MS). */
const HOST_READ_GRACE_MS = 1000;

/** How long unmounting may take before the process kills itself rather than hang. */
const STOP_DEADLINE_MS = 5000;

/**
 * Runs the CLI and resolves with its exit code. A process in which a FUSE backend left a
 * thread blocked on /dev/fuse (it said so in an error log line) cannot exit: Node's exit
 * joins that thread for ever, with signal handling already gone. It is killed instead.
 */
export async function main(argv: readonly string[]): Promise<number> {
  quietOnClosedStdout();
  try {
    return await command(argv);
  } finally {
    if (blockedThreadCount() > 0) process.kill(process.pid, 'SIGKILL');
  }
}

/**
 * `mdevfs events DIR | head -1`: a reader that went away ends the command, quietly and with status
 * 0, as it ends `cat`, whatever the command was printing (events, ctl, record, help...). Only
 * EPIPE: any other failure to write is an error. mount and exec never write on stdout (exec's
 * command has its own), so no daemon ends here with its mount in place.
 */
function quietOnClosedStdout(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit(0);
  });
}


async function command(argv: readonly string[]): Promise<number> {
  try {
    return await dispatch(parseCommandLine(argv));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    const named = argv.find((a) => Object.hasOwn(COMMANDS, a) && a !== 'help');
    process.stderr.write(`mdevfs: ${err.message}\nTry mdevfs ${named ? named + ' ' : ''}--help.\n`);
    return EXIT_USAGE;
  }
}

async function dispatch(args: Invocation): Promise<number> {
  const { command, positionals, options } = args;
  if (args.help) {
    process.stdout.write(command === undefined ? await help() : commandHelp(command));
    return 0;
  }
  if (args.version) {
    process.stdout.write(`${mdevfsVersion()}\n`);
    return 0;
  }
  switch (command) {
    case 'mount':
      return mountCommand(positionals[0]!, options);
    case 'ctl':
      return (await import('./ctl')).ctlCommand(positionals, options);
    case 'exec':
      return execCommand(args.rest, options);
    case 'wait':
      return (await import('./wait')).waitCommand(positionals[0], options);
    case 'events':
      return (await import('./events')).eventsCommand(positionals[0], options);
    case 'record':
      return (await import('../record/record')).recordCommand(positionals[0], options.get('output'));
    case 'profiles':
      return (await import('./profiles')).profilesCommand(positionals, options);
    default:
      throw new Error(`command ${command} is in COMMANDS (${Object.keys(COMMANDS).join(', ')}) but not dispatched`);
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
