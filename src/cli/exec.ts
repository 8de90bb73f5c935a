import { spawn, spawnSync } from 'node:child_process';
import { constants as fsConstants, accessSync, closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { SENDER_PY } from '../events/udev';

export interface ExecOptions {
  /**
   * Deliver uevents as the kernel and udevd do, inside a private network namespace of the
   * command's own: called with the stream that feeds the sender there and the one it acknowledges each event on
   * (see events/udev.ts); returns the unsubscribe.
   */
  udev?: (sender: Writable, acks: Readable) => () => void;
  /** With udev: run Debian's systemd-udevd inside, with a private /dev and /run/udev (see UDEVD). */
  udevd?: boolean;
  /** Settles when mdevfs is told to stop: the command gets SIGTERM, and SIGKILL if still running STOP_GRACE_MS later. */
  stop?: Promise<unknown>;
  /** The daemon's control socket: the command gets it as MDEVFS_CONTROL (with MDEVFS_ROOT=/sys), so `mdevfs ctl`, `wait` and `events` find it without DIR. */
  control?: string;
  /** --host-sysfs: the host's mounts under /sys (cgroup, bpf, debugfs...) are mounted again in place over the tree (HOST_SAVE, HOST_RESTORE). */
  hostSubmounts?: boolean;
}

/** How long a command told to stop (SIGTERM) may take before it is killed. */
const STOP_GRACE_MS = 500;

/** The shell's exit status for a process ended by `signal`. */
export function statusOf(code: number | null, signal: NodeJS.Signals | null): number {
  return code ?? 128 + (signal ? osConstants.signals[signal] : 0);
}

/**
 * libudev refuses every syspath under a /sys that is not sysfs ("is outside of sysfs, refusing")
 * unless told not to check: the command gets SYSTEMD_DEVICE_VERIFY_SYSFS=0 unless it has a value.
 */
function commandEnv(): NodeJS.ProcessEnv {
  return { SYSTEMD_DEVICE_VERIFY_SYSFS: '0', ...process.env };
}

/**
 * With --udev: the sender starts fed on fd 3, acknowledging on fd 4, in a new network namespace
 * (owned by a user namespace of its own: no uevent of the host's reaches it) whose holder's pid it
 * prints; it detaches once its socket exists (so CMD starts after it, and it is not CMD's child).
 * CMD joins that network namespace and inherits neither fd.
 */
const UDEV_SENDER =
  'P=$(python3 -c "$MDEVFS_UDEV_SENDER" --netns --detach --ack-fd 4 <&3 3<&-) && [ -n "$P" ] || exit 125; unset MDEVFS_UDEV_SENDER; ' +
  'NET="nsenter --net=/proc/$P/ns/net --"; ';

/**
 * With --udevd, before CMD: Debian's systemd-udevd in CMD's network namespace, hearing the kernel
 * group, with everything it writes kept in this mount namespace. /dev becomes an overlay of the
 * host's (the host's nodes still there, every change private; its submounts bound again on top),
 * without /dev/log. A fresh tmpfs on /run/udev (its database and control socket), made where the
 * host has none on an overlay of /run whose every entry is the host's own, bound again (a unix
 * socket is not reachable through an overlay: CMD still reaches mdevfs's control sockets, libvirt's,
 * D-Bus); an empty tmpfs on /run/systemd/journal (a rule's logger must not reach the host's log);
 * /proc/sys read-only. udevd resolves no names, runs at most 2 workers, may not load kernel modules (no
 * CAP_SYS_MODULE: the kmod builtin would load them into the host's kernel), logs errors to stderr
 * (SYSTEMD_LOG_LEVEL, if set, instead), and gets SIGTERM when CMD ends (parent-death signal: CMD
 * is the shell that started it, exec'ed). CMD starts once udevd's control socket exists (up to
 * 20 s, while udevd lives) and udevd answers `udevadm control --ping`.
 */
const UDEVD =
  'private_dir() { ' +
  'top=$(findmnt -rn -o ID -T "$1") && subs=$(findmnt -rn -o PARENT,TARGET | awk -v p="$top" -v d="$1/" \'$1 == p && index($2, d) == 1 && $2 != "/dev/log" {print $2}\') && ' +
  'mkdir -p "$O$1/lower" "$O$1/upper" "$O$1/work" && mount --rbind "$1" "$O$1/lower" && ' +
  'mount -t overlay -o "lowerdir=$O$1/lower,upperdir=$O$1/upper,workdir=$O$1/work" mdevfs "$1" || return 1; ' +
  'for t in $subs; do mount --rbind "$O$1/lower${t#"$1"}" "$t" || return 1; done; }; ' +
  'U=; for u in /usr/lib/systemd/systemd-udevd /lib/systemd/systemd-udevd; do [ -x $u ] && U=$u && break; done; ' +
  '[ -n "$U" ] || { echo "mdevfs exec: --udevd: no systemd-udevd (Debian\'s udev package installs it)" >&2; exit 125; }; ' +
  'for c in setpriv findmnt; do command -v $c >/dev/null || { echo "mdevfs exec: --udevd: $c (util-linux) is not on PATH" >&2; exit 125; }; done; ' +
  'O="$2/ov"; mkdir -p "$O" && mount -t tmpfs -o mode=0700 mdevfs "$O" && private_dir /dev && rm -f /dev/log && private_dir /run || exit 125; ' +
  'for e in "$O/run/lower"/* "$O/run/lower"/.[!.]*; do n=${e##*/}; { [ -e "$e" ] && ! [ -L "$e" ] && [ "$n" != udev ]; } || continue; ' +
  'mount --rbind "$e" "/run/$n" || exit 125; done; ' +
  '{ ! [ -d /run/systemd/journal ] || mount -t tmpfs -o mode=0755 mdevfs-nolog /run/systemd/journal; } && ' +
  'mkdir -p /run/udev && mount -t tmpfs -o mode=0755 mdevfs-udev /run/udev && ' +
  'mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys || exit 125; ' +
  '(unset NOTIFY_SOCKET; export SYSTEMD_LOG_TARGET=console SYSTEMD_LOG_LEVEL="${SYSTEMD_LOG_LEVEL:-err}"; ' +
  'exec $NET setpriv --pdeathsig TERM --bounding-set -sys_module -- $U --resolve-names=never --children-max=2 3<&- 4>&-) & ' +
  'i=0; until [ -S /run/udev/control ] || [ $i -ge 400 ] || ! kill -0 $! 2>/dev/null; do sleep 0.05; i=$((i + 1)); done; ' +
  'udevadm control --ping --timeout=20 || { echo "mdevfs exec: --udevd: systemd-udevd does not answer" >&2; kill $! 2>/dev/null; exit 125; }; ';

/**
 * With --host-sysfs, around binding the tree over /sys: the daemon does not cross the mount points
 * inside the host's /sys (it shows the empty directories sysfs has there), so before the bind the
 * original /sys, submounts and all, is bound recursively at a private place ($2/sys); after it, each
 * mount right below /sys (from mountinfo, through findmnt) is bound again, recursively, from there
 * onto the same path in the tree; then the private copy is detached. In this mount namespace only.
 */
const HOST_SAVE =
  'command -v findmnt >/dev/null || { echo "mdevfs exec: --host-sysfs: findmnt (util-linux) is not on PATH" >&2; exit 125; }; ' +
  'top=$(findmnt -rn -o ID -T /sys) && subs=$(findmnt -rn -o PARENT,TARGET | awk -v p="$top" \'$1 == p && index($2, "/sys/") == 1 {print $2}\') && ' +
  'mkdir -p "$2/sys" && mount --rbind /sys "$2/sys" || exit 125; ';
const HOST_RESTORE =
  'for t in $subs; do mount --rbind "$2/sys${t#/sys}" "$t" || exit 125; done; umount -l "$2/sys" || exit 125; ';

type Stdio = 'inherit' | 'pipe' | 'ignore' | number;

/** open(2)'s O_CLOEXEC on Linux, as /proc/self/fdinfo shows it (Node has no constant for it). */
const O_CLOEXEC = 0o2000000;

/**
 * libfuse2 (fuse-native) keeps /dev/fuse open without O_CLOEXEC: a command would inherit it,
 * and then the connection outlives the daemon for as long as anything the command started
 * lives, every request waiting for a reader that is gone. Each such fd is replaced by
 * /dev/null in the child (stdio entries are dup2'ed over those numbers). Returns the /dev/null
 * fd to close once the child is spawned.
 */
function withoutFuseFds(stdio: Stdio[]): number | undefined {
  const leaking: number[] = [];
  for (const name of readdirSync('/proc/self/fd')) {
    const fd = Number(name);
    try {
      if (readlinkSync(`/proc/self/fd/${name}`) !== '/dev/fuse') continue;
      const flags = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${name}`, 'utf8'))?.[1];
      if (flags !== undefined && (parseInt(flags, 8) & O_CLOEXEC) === 0 && fd > 2) leaking.push(fd);
    } catch {
      // closed meanwhile
    }
  }
  if (leaking.length === 0) return undefined;
  const devNull = openSync('/dev/null', 'r');
  for (const fd of leaking) {
    if (fd < stdio.length) continue; // that number is the child's stdio entry (a pipe) anyway
    while (stdio.length <= fd) stdio.push('ignore');
    stdio[fd] = devNull;
  }
  return devNull;
}

/**
 * Runs argv in a private mount namespace where `tree` is bind-mounted over /sys and a
 * scratch directory over /etc/mdevctl.d, so unmodified tools that hard-code /sys (mdevctl
 * 1.2.0) see the emulation. Resolves with the command's exit code.
 */
export function runOverSys(tree: string, argv: readonly string[], opts: ExecOptions = {}): Promise<number> {
  // $2/etc is /etc/mdevctl.d; with --udevd, $2/ov holds the overlays' writable layers.
  const scratch = mkdtempSync(join(tmpdir(), 'mdevfs-etc-'));
  mkdirSync(join(scratch, 'etc', 'scripts.d', 'callouts'), { recursive: true });
  mkdirSync(join(scratch, 'etc', 'scripts.d', 'notifiers'), { recursive: true });
  const inner =
    (opts.hostSubmounts ? HOST_SAVE : '') +
    'mount --bind "$1" /sys && mkdir -p /etc/mdevctl.d && mount --bind "$2/etc" /etc/mdevctl.d || exit 125; ' +
    (opts.hostSubmounts ? HOST_RESTORE : '') +
    (opts.udev ? `${UDEV_SENDER}${opts.udevd ? UDEVD : ''}shift 2; exec $NET "$@" 3<&- 4>&-` : 'shift 2; exec "$@"');
  const env = commandEnv();
  if (opts.control) Object.assign(env, { MDEVFS_CONTROL: opts.control, MDEVFS_ROOT: '/sys' });
  if (opts.udev) env.MDEVFS_UDEV_SENDER = SENDER_PY;
  const stdio: Stdio[] = opts.udev ? ['inherit', 'inherit', 'inherit', 'pipe', 'pipe'] : ['inherit', 'inherit', 'inherit'];
  const devNull = withoutFuseFds(stdio);
  const child = spawn('unshare', ['-m', ...(opts.udev ? ['-n'] : []), '--propagation', 'private', 'sh', '-c', inner, 'sh', tree, scratch, ...argv], {
    stdio,
    env,
  });
  if (devNull !== undefined) closeSync(devNull);
  const unsubscribe = opts.udev?.(child.stdio[3] as Writable, child.stdio[4] as Readable);
  return new Promise((resolve) => {
    const done = (code: number) => {
      unsubscribe?.();
      (child.stdio[3] as Writable | null)?.end();
      rmSync(scratch, { recursive: true, force: true });
      resolve(code);
    };
    let killer: NodeJS.Timeout | undefined;
    void opts.stop?.then(() => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      killer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    });
    child.on('error', () => done(127));
    child.on('exit', (code, signal) => {
      clearTimeout(killer);
      done(statusOf(code, signal));
    });
  });
}

/**
 * Why this machine refuses ordinary users a user namespace, from the sysctls that decide it
 * (undefined: none of them forbids it).
 */
export function userNamespaceBlocker(): string | undefined {
  const sysctl = (name: string) => {
    try {
      return readFileSync(`/proc/sys/${name.replace(/\./g, '/')}`, 'utf8').trim();
    } catch {
      return undefined;
    }
  };
  if (sysctl('kernel.unprivileged_userns_clone') === '0') return 'kernel.unprivileged_userns_clone is 0';
  if (sysctl('user.max_user_namespaces') === '0') return 'user.max_user_namespaces is 0';
  if (sysctl('kernel.apparmor_restrict_unprivileged_userns') === '1') return 'AppArmor restricts them (kernel.apparmor_restrict_unprivileged_userns is 1)';
  return undefined;
}

/**
 * `mdevfs exec` for a user who may not mount: runs this same command line again as root of a
 * new user namespace with a mount namespace of its own (unshare --user --map-root-user
 * --mount), where FUSE mounts and bind mounts are allowed, with a private control directory.
 * Signals are passed on. Resolves with its exit status.
 */
export async function execInUserNamespace(): Promise<number> {
  const fail = (why: string) => {
    process.stderr.write(`mdevfs exec: ${why}\n`);
    return 1;
  };
  try {
    accessSync('/dev/fuse', fsConstants.R_OK | fsConstants.W_OK);
  } catch (err) {
    return fail(`not root, and /dev/fuse is not open to this user (${(err as NodeJS.ErrnoException).code}): it must be mode 0666, or run as root`);
  }
  const probe = spawnSync('unshare', ['--user', '--map-root-user', '--mount', 'true'], { encoding: 'utf8' });
  if ((probe.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    return fail('not root, and unshare (util-linux) is not on PATH: it makes the user namespace; install it, or run as root');
  }
  if (probe.status !== 0) {
    const blocker = userNamespaceBlocker();
    return fail(
      `not root, and this machine does not let ordinary users create a user namespace (${blocker ?? (probe.stderr?.trim() || probe.error?.message)}). ` +
        'Run it as root (sudo), or allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0)',
    );
  }
  const control = mkdtempSync(join(tmpdir(), 'mdevfs-ctl-'));
  const child = spawn('unshare', ['--user', '--map-root-user', '--mount', process.execPath, ...process.execArgv, process.argv[1]!, ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, MDEVFS_CONTROL_DIR: control },
  });
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  for (const sig of signals) process.on(sig, forward);
  try {
    return await new Promise<number>((resolve) => {
      child.on('error', (err) => resolve(fail(`unshare: ${err.message}`)));
      child.on('exit', (code, signal) => resolve(statusOf(code, signal)));
    });
  } finally {
    for (const sig of signals) process.off(sig, forward);
    rmSync(control, { recursive: true, force: true });
  }
}
