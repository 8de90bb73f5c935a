import { type ChildProcess, execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import type { Socket } from 'node:net';
import type { BackendOptions, FuseBackend } from '../backend';
import { Session } from './session';

/** Largest WRITE the kernel may send; the read buffer is this plus room for the headers. */
const MAX_WRITE = 128 * 1024;

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, (err, _out, stderr) => (err ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`)) : resolve())),
  );
}

/** /proc/self/mountinfo escapes space, tab, newline and backslash as octal. */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The FUSE connection id (st_dev of the mount, the name of its /sys/fs/fuse/connections dir). */
function connectionId(mountpoint: string): number | undefined {
  let id: number | undefined;
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post || !post.startsWith('fuse.mdevfs ')) continue;
    const f = pre.split(' ');
    if (unescape(f[4] ?? '') !== mountpoint) continue;
    const [major, minor] = (f[2] ?? '').split(':').map(Number);
    if (major !== undefined && minor !== undefined) id = (major << 20) | minor;
  }
  return id;
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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

  const abortConnection = () => {
    if (connId === undefined) return;
    try {
      fs.writeFileSync(`/sys/fs/fuse/connections/${connId}/abort`, '1');
    } catch (err) {
      log.debug({ err }, 'fuse: could not abort the connection');
    }
  };

  return {
    name: 'direct',

    async mount() {
      fd = fs.openSync('/dev/fuse', fs.constants.O_RDWR);
      // default_permissions: the kernel checks modes and owners as for sysfs (only root writes).
      const options = 'fd=3,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions';
      try {
        await new Promise<void>((resolve, reject) => {
          const child = spawn('mount', ['-i', '-n', '-t', 'fuse.mdevfs', '-o', options, 'mdevfs', mountpoint], {
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
      session = new Session({
        fd,
        kernfs,
        log,
        readers: readerCount(),
        maxWrite: MAX_WRITE,
      });
      session.start();
      connId = connectionId(mountpoint);
      // As fuse-native's auto_unmount: tests switch it off to leave a stale mount behind.
      if (process.env.MDEVFS_NO_AUTO_UNMOUNT !== '1') startWatchdog();
      log.debug({ mountpoint, readers: readerCount(), connection: connId, cacheTimeout: session.timeout }, 'fuse: direct backend mounted');
    },

    async unmount() {
      stopWatchdog();
      if (fd === undefined || !session) return;
      const s = session;
      let unmountErr: unknown;
      try {
        await run('umount', ['-l', mountpoint]);
      } catch (err) {
        try {
          await run('fusermount', ['-uz', mountpoint]);
        } catch {
          unmountErr = err;
        }
      }
      s.stop();
      // Readers end with ENODEV once the superblock is gone; if something still holds
      // the detached mount (an open file, another namespace), cut the connection.
      const t0 = Date.now();
      const done = s.done.then(() => true);
      let aborted = false;
      if (!(await Promise.race([done, sleep(300).then(() => false)]))) {
        aborted = true;
        abortConnection();
        await Promise.race([done, sleep(1000)]);
      }
      log.debug({ ms: Date.now() - t0, aborted, readers: s.readersRunning }, 'fuse: readers stopped');
      if (s.readersRunning === 0) {
        fs.closeSync(fd);
      } else {
        // A read still blocked in a worker thread holds the fd: closing could let the
        // number be reused under it. It goes with the process.
        log.warn({ readers: s.readersRunning }, 'fuse: readers still blocked after unmount');
      }
      fd = undefined;
      session = undefined;
      if (unmountErr) throw unmountErr;
    },
  };
}
