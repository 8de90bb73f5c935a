import { type ChildProcess, execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BackendOptions, type FuseBackend, reportBlockedThreads } from '../backend-interface';
import { mountAt } from '../mountpoint';
import { Session } from './session';

/** Largest WRITE the kernel may send; the read buffer is this plus room for the headers. */
const MAX_WRITE = 128 * 1024;

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, (err, _out, stderr) => (err ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`)) : resolve())),
  );
}

/** The FUSE connection id (st_dev of the mount, the name of its fusectl directory). */
function connectionId(mountpoint: string): number | undefined {
  const entry = mountAt(mountpoint);
  if (entry?.fstype !== 'fuse.mdevfs') return undefined;
  const [major, minor] = entry.dev.split(':').map(Number);
  return major !== undefined && minor !== undefined ? (major << 20) | minor : undefined;
}

/**
 * Aborts FUSE connection `id` through fusectl: every request waiting on it fails, every
 * reader of its /dev/fuse returns. fusectl has one superblock however often it is mounted,
 * so where /sys/fs/fuse/connections is not mounted it is mounted at a private temporary
 * directory for the write. Fails where mounting is not allowed (a user namespace).
 */
async function abortConnection(id: number): Promise<void> {
  const standard = '/sys/fs/fuse/connections';
  if (fs.existsSync(`${standard}/${id}`)) return fs.writeFileSync(`${standard}/${id}/abort`, '1');
  const dir = fs.mkdtempSync(join(tmpdir(), 'mdevfs-fusectl-'));
  try {
    await run('mount', ['-i', '-n', '-t', 'fusectl', 'fusectl', dir]);
    try {
      fs.writeFileSync(join(dir, String(id), 'abort'), '1');
    } finally {
      await run('umount', ['-i', '-n', dir]);
    }
  } finally {
    fs.rmdirSync(dir);
  }
}

/**
 * Readers outstanding on /dev/fuse. Each pins a libuv pool thread while idle; two keep a
 * request always being read while the main thread answers another, and leave half of the
 * default pool (4) free whatever UV_THREADPOOL_SIZE says (a loader may start the pool first).
 * Writes that wait for a vendor do not hold a reader, so this does not limit concurrency.
 */
export function readerCount(): number {
  return 2;
}

/** open(2)'s O_PATH on Linux (Node has no constant for it). */
const O_PATH = 0o10000000;

/**
 * Sends `count` requests to the connection, one after another, from a child process that
 * looks up names that do not exist under the (possibly detached) root given as its fd 3:
 * each wakes one reader blocked in read(2). Not waited for: once no reader is left, its
 * last lookup waits until the connection is aborted, and then fails.
 */
function wakeReaders(rootFd: number, count: number): void {
  if (count === 0) return;
  const script = 'i=0; while [ $i -lt "$1" ]; do i=$((i+1)); test -e /proc/self/fd/3/.mdevfs-wake-$i; done';
  const child = spawn('sh', ['-c', script, 'mdevfs-wake', String(count)], { stdio: ['ignore', 'ignore', 'ignore', rootFd] });
  child.on('error', () => undefined);
  child.unref();
}

/** Resolves true if p settles within ms, false otherwise. */
const within = (p: Promise<unknown>, ms: number): Promise<boolean> => {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)));
  return Promise.race([p.then(() => true), late]).finally(() => clearTimeout(timer));
};

/**
 * Serves the tree by speaking the kernel's FUSE protocol on /dev/fuse directly (no
 * libfuse): mount(8) attaches our /dev/fuse fd, Session answers requests. Entries and
 * attributes are cached by the kernel for an hour and dropped exactly when Kernfs says
 * they changed. Needs root (or CAP_SYS_ADMIN in the mount's user namespace).
 */
export function directBackend({ mountpoint, kernfs, log }: BackendOptions): FuseBackend {
  let fd: number | undefined;
  let session: Session | undefined;
  let watchdog: ChildProcess | undefined;
  let connId: number | undefined;
  /** An O_PATH handle on the mount's root: it reaches the tree after the lazy unmount detached it. */
  let rootFd: number | undefined;

  /** A detached sh that unmounts lazily when our end of its stdin closes (we died). */
  const startWatchdog = () => {
    const script = 'read -r _; umount -l "$1" 2>/dev/null; exit 0';
    const child = spawn('sh', ['-c', script, 'mdevfs-watchdog', mountpoint], {
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    child.on('error', (err) => log.warn({ err }, 'fuse: watchdog failed to start'));
    child.unref();
    (child.stdin as unknown as Socket | null)?.unref();
    watchdog = child;
  };

  const stopWatchdog = () => {
    if (!watchdog) return;
    if (watchdog.exitCode === null && watchdog.signalCode === null) watchdog.kill('SIGKILL');
    watchdog.stdin?.destroy();
    watchdog = undefined;
  };

  return {
    name: 'direct',

    async mount() {
      fd = fs.openSync('/dev/fuse', fs.constants.O_RDWR);
      // default_permissions: the kernel checks modes and owners as for sysfs (only root writes).
      // subtype=mdevfs as an option, not as `-t fuse.mdevfs`: libmount from util-linux 2.39 on
      // (Debian 13) mounts through fsopen(2) and drops the type's subtype, leaving plain `fuse`
      // in mountinfo, where `mdevfs wait` and the abort through fusectl look for fuse.mdevfs.
      const options = 'subtype=mdevfs,fd=3,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions';
      try {
        await new Promise<void>((resolve, reject) => {
          const child = spawn('mount', ['-i', '-n', '-t', 'fuse', '-o', options, 'mdevfs', mountpoint], {
            stdio: ['ignore', 'inherit', 'pipe', fd!],
          });
          let stderr = '';
          child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
          child.on('error', reject);
          child.on('exit', (code, signal) =>
            code === 0 ? resolve() : reject(new Error(`mount ${mountpoint} failed (${code ?? signal}): ${stderr.trim()}`)),
          );
        });
      } catch (err) {
        fs.closeSync(fd);
        fd = undefined;
        throw err;
      }
      // mount(2) does not wait for INIT: it is the first request we read.
      try {
        session = new Session({
          fd,
          kernfs,
          log,
          readers: readerCount(),
          maxWrite: MAX_WRITE,
        });
        session.start();
      } catch (err) {
        // Nothing may stay mounted when mounting fails.
        await run('umount', ['-i', '-l', mountpoint]).catch(() => undefined);
        fs.closeSync(fd);
        fd = undefined;
        session = undefined;
        throw err;
      }
      connId = connectionId(mountpoint);
      // Asynchronously: the main thread must stay free to answer, should the open ask anything.
      fs.open(mountpoint, O_PATH | fs.constants.O_DIRECTORY, (err, f) => {
        if (err) log.warn({ err }, 'fuse: no handle on the mount root; unmounting will rely on fusectl');
        else if (session) rootFd = f;
        else fs.closeSync(f);
      });
      // As fuse-native's auto_unmount: tests switch it off to leave a stale mount behind.
      if (process.env.MDEVFS_NO_AUTO_UNMOUNT !== '1') startWatchdog();
      log.debug({ mountpoint, readers: readerCount(), connection: connId, cacheTimeout: session.timeout }, 'fuse: direct backend mounted');
    },

    /**
     * Ends the connection within about a second whatever holds the mount: requests read
     * from now on, writes still waiting for a vendor and reads a fault rule holds get ENODEV;
     * the mount is detached; each reader is handed one last request and leaves; closing the fd then aborts the
     * connection in the kernel (open files in the detached tree get ENOTCONN). fusectl's
     * abort is the fallback if readers do not come back; a thread that still does not
     * return is reported, and the CLI ends the process with SIGKILL rather than wait for
     * it in exit (Node joins its pool threads, and would wait for ever).
     */
    async unmount() {
      stopWatchdog();
      if (fd === undefined || !session) return;
      const s = session;
      const t0 = Date.now();
      const notifierDone = s.stop();
      let unmountErr: unknown;
      try {
        await run('umount', ['-i', '-l', mountpoint]);
      } catch (err) {
        try {
          await run('fusermount', ['-uz', mountpoint]);
        } catch {
          unmountErr = err;
        }
      }
      // Before the readers go: a notification the kernel holds on a directory lock goes through
      // once the request holding that lock is answered (ENODEV now), and only then can the
      // notifier thread end. A thread that is not inside write(2) ends however slowly
      // terminate() answers.
      const notifierEnded = (await within(notifierDone, 500)) || !s.notifierBusy;
      s.release();
      if (rootFd !== undefined) wakeReaders(rootFd, s.readersRunning);
      let aborted = false;
      if (!(await within(s.done, 300)) && connId !== undefined) {
        try {
          await abortConnection(connId);
          aborted = true;
        } catch (err) {
          log.warn({ err }, 'fuse: could not abort the connection through fusectl');
        }
        await within(s.done, 300);
      }
      log.debug({ ms: Date.now() - t0, aborted, readers: s.readersRunning, notifierEnded }, 'fuse: readers stopped');
      if (rootFd !== undefined) fs.closeSync(rootFd);
      rootFd = undefined;
      if (s.readersRunning === 0) {
        s.closeFd(); // the last reference: the kernel aborts the connection if the mount is still held
      }
      const blocked = s.readersRunning + (notifierEnded ? 0 : 1);
      if (blocked > 0) {
        // Closing the fd under a blocked read could let the number be reused under it.
        log.error({ blocked }, 'fuse: threads still blocked on /dev/fuse after unmount; the process will end with SIGKILL');
        reportBlockedThreads(blocked);
      }
      fd = undefined;
      session = undefined;
      if (unmountErr) throw unmountErr;
    },
  };
}
