import { Errno } from '../../base/errno';

/**
 * Reads /dev/fuse on the main thread when epoll says a request is there, with no thread-pool
 * hop: the kernel wakes the main thread (one wakeup per request, as a C daemon's read loop
 * has), where fs.read in the pool costs a pool thread's wakeup and then the main thread's.
 *
 * Node has no public API to watch an arbitrary fd: net.Socket refuses a character device.
 * libuv's uv_pipe_open does not care what the fd is, so a pipe_wrap Pipe handle is opened on
 * it: libuv makes the fd non-blocking, registers it with epoll and read(2)s it whenever it is
 * readable (one request per read, up to 32 per wakeup). Those are internal bindings
 * (process.binding): if they are missing or refuse, pollFd returns null and the caller reads
 * through the thread pool instead.
 */

/** libuv reads into 64 KiB buffers: the kernel needs room for max_write plus the headers. */
export const POLL_READ_BUFFER = 64 * 1024;

export interface FdPoller {
  /** Stops watching the fd (no read happens after this returns). */
  stop(): void;
  /** Stops and closes the fd (libuv owns it once opened as a pipe). */
  close(): void;
}

interface PipeHandle {
  open(fd: number): number;
  useUserBuffer(buf: Uint8Array): void;
  readStart(): number;
  readStop(): number;
  close(cb?: () => void): void;
  unref(): void;
  onread: () => void;
}

interface Bindings {
  Pipe: new (type: number) => PipeHandle;
  SOCKET: number;
  state: Int32Array;
  kReadBytesOrError: number;
}

function bindings(): Bindings | null {
  try {
    const binding = (process as unknown as { binding(name: string): Record<string, unknown> }).binding;
    const pipe = binding('pipe_wrap') as { Pipe: Bindings['Pipe']; constants: { SOCKET: number } };
    const stream = binding('stream_wrap') as { streamBaseState: Int32Array; kReadBytesOrError: number };
    if (typeof pipe.Pipe !== 'function' || !(stream.streamBaseState instanceof Int32Array)) return null;
    return {
      Pipe: pipe.Pipe,
      SOCKET: pipe.constants.SOCKET,
      state: stream.streamBaseState,
      kReadBytesOrError: stream.kReadBytesOrError,
    };
  } catch {
    return null;
  }
}

const { EAGAIN, EINTR, ENOENT, ENODEV } = Errno;

/**
 * Calls onRequest with each request read from fd (a Buffer valid until onRequest returns), or
 * onEnd with the errno (positive) that ended reading (ENODEV once the connection is gone).
 * ENOENT (a request interrupted before we read it) is skipped, as libfuse does.
 */
export function pollFd(fd: number, onRequest: (req: Buffer) => void, onEnd: (errno: number) => void): FdPoller | null {
  const b = bindings();
  if (!b) return null;
  const handle = new b.Pipe(b.SOCKET);
  if (handle.open(fd) !== 0) return null;
  // Every read goes into this one buffer (net.Socket's onread.buffer option does the same):
  // no allocation per request, and its pages stay mapped.
  const buf = Buffer.alloc(POLL_READ_BUFFER);
  handle.useUserBuffer(buf);
  let open = true;
  let reading = true;
  handle.onread = () => {
    const n = b.state[b.kReadBytesOrError]!;
    if (n > 0) return onRequest(buf.subarray(0, n));
    const errno = -n;
    if (errno === EAGAIN || errno === EINTR || errno === ENOENT) return;
    stop();
    onEnd(errno > 0 ? errno : ENODEV /* EOF */);
  };
  const stop = () => {
    if (!reading) return;
    reading = false;
    handle.readStop();
  };
  // The fd is libuv's (and non-blocking) from here on: no falling back to blocking reads.
  const err = handle.readStart();
  if (err !== 0) throw new Error(`fuse: cannot poll /dev/fuse (${err})`);
  return {
    stop,
    close() {
      stop();
      if (open) {
        open = false;
        handle.close();
      }
    },
  };
}
