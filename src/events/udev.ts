import { type ChildProcess, spawn } from 'node:child_process';
import { endianness } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import type { Logger } from 'pino';
import type { Uevent, Uevents } from './uevents';

/**
 * Delivery as udevd does it: after processing a kernel event, udevd re-broadcasts the device on
 * NETLINK_KOBJECT_UEVENT multicast group 2 ("udev") in libudev's own format, and that is what
 * libudev monitors (libvirt's node-device driver, pyudev, `udevadm monitor --udev`) hear.
 * Node has no AF_NETLINK, so a few lines of Python send what this module encodes.
 */

/** MurmurHash2 (32 bit, seed 0) as systemd's string_hash32 computes it, little-endian words. */
export function murmurHash2(text: string): number {
  const data = Buffer.from(text, 'utf8');
  const m = 0x5bd1e995;
  let h = data.length >>> 0; // seed 0 ^ len
  let i = 0;
  for (; i + 4 <= data.length; i += 4) {
    let k = data.readUInt32LE(i);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  const rest = data.length - i;
  if (rest === 3) h ^= data[i + 2]! << 16;
  if (rest >= 2) h ^= data[i + 1]! << 8;
  if (rest >= 1) h = Math.imul(h ^ data[i]!, m);
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h >>> 0;
}

const HEADER_SIZE = 40;
const UDEV_MONITOR_MAGIC = 0xfeedcafe;

/**
 * `struct monitor_netlink_header` (sd-device/device-monitor.c) and the properties as
 * `KEY=VALUE\0` strings. The magic and the filter hashes are in network order (the listeners'
 * BPF filters compare them), the sizes in host order. No tags: the tag bloom is 0.
 */
export function udevMessage(props: readonly (readonly [string, string])[]): Buffer {
  const body = Buffer.from(props.map(([k, v]) => `${k}=${v}\0`).join(''), 'utf8');
  const h = Buffer.alloc(HEADER_SIZE);
  const host = (v: number, at: number) => (endianness() === 'LE' ? h.writeUInt32LE(v, at) : h.writeUInt32BE(v, at));
  h.write('libudev\0', 0, 'latin1');
  h.writeUInt32BE(UDEV_MONITOR_MAGIC, 8);
  host(HEADER_SIZE, 12); // header_size
  host(HEADER_SIZE, 16); // properties_off
  host(body.length, 20); // properties_len
  const get = (key: string) => props.find(([k]) => k === key)?.[1];
  const subsystem = get('SUBSYSTEM');
  const devtype = get('DEVTYPE');
  if (subsystem !== undefined) h.writeUInt32BE(murmurHash2(subsystem), 24);
  if (devtype !== undefined) h.writeUInt32BE(murmurHash2(devtype), 28);
  return Buffer.concat([h, body]);
}

/**
 * Sends each base64 line of stdin as one datagram to group 2. The socket needs CAP_NET_ADMIN in
 * its network namespace; libudev accepts the message only from uid 0. ECONNREFUSED is what
 * udevd gets too when the datagram's unicast copy finds no kernel handler: the multicast went out.
 * With --detach it forks once the socket exists and the parent exits: whoever waited for it knows
 * the sender is there, and the sender is nobody's child. With --ack-fd N it writes one byte to
 * fd N once each datagram is out (sendto has queued it on every listener's socket).
 */
export const SENDER_PY = `
import base64, os, socket, sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 15)
s.bind((0, 0))
ack = int(sys.argv[sys.argv.index("--ack-fd") + 1]) if "--ack-fd" in sys.argv else None
if "--detach" in sys.argv and os.fork() != 0:
    os._exit(0)
while True:
    line = sys.stdin.buffer.readline()
    if not line:
        break
    try:
        s.sendto(base64.b64decode(line), (0, 2))
    except ConnectionRefusedError:
        pass
    except OSError as e:
        print("mdevfs: udev sender: %s" % e, file=sys.stderr, flush=True)
    if ack is not None:
        try:
            os.write(ack, b".")
        except OSError:
            ack = None
`;

/** How long a write(2) waits for the sender to say an event went out before it returns anyway. */
const ACK_TIMEOUT_MS = 2000;

/**
 * Feeds every uevent, as udevd would re-broadcast it, to a sender reading `out`. udevd adds
 * USEC_INITIALIZED (when it first saw the device) to what the kernel sent.
 */
export function feedUdevSender(uevents: Uevents, out: Writable, log: Logger, acks?: Readable): () => void {
  const firstSeen = new Map<string, bigint>();
  // One waiter per line sent, answered in order by the sender's bytes on `acks`. A sender that
  // is gone or silent never holds a write: everything waiting is let go.
  const waiting: (() => void)[] = [];
  let silent = !acks;
  const letGo = () => {
    silent = true;
    for (const w of waiting.splice(0)) w();
  };
  acks?.on('data', (chunk: Buffer) => {
    for (let i = 0; i < chunk.length; i++) waiting.shift()?.();
  });
  acks?.on('end', letGo);
  acks?.on('error', letGo);
  out.on('error', (err) => {
    letGo();
    log.warn({ err }, 'udev sender is gone; uevents are no longer delivered');
  });
  const sent = (): Promise<void> | undefined => {
    if (silent) return undefined;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        log.warn({ ms: ACK_TIMEOUT_MS }, 'udev sender did not acknowledge an event; writes no longer wait for it');
        letGo();
      }, ACK_TIMEOUT_MS);
      timer.unref();
      waiting.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  };
  return uevents.subscribe((ev: Uevent) => {
    const devpath = ev.DEVPATH ?? '';
    let usec = firstSeen.get(devpath);
    if (usec === undefined || ev.ACTION === 'add') {
      usec = process.hrtime.bigint() / 1000n; // CLOCK_MONOTONIC, as udevd's now(CLOCK_MONOTONIC)
      firstSeen.set(devpath, usec);
    }
    if (ev.ACTION === 'remove') firstSeen.delete(devpath);
    const props: [string, string][] = [...Object.entries(ev), ['USEC_INITIALIZED', String(usec)]];
    if (out.destroyed) return undefined;
    out.write(udevMessage(props).toString('base64') + '\n');
    return sent();
  });
}

/**
 * A sender in the caller's own network namespace (`mdevfs mount --udev`). `failed` settles if it
 * cannot start or ends before `stop()`: whoever asked for --udev must not go on without it.
 */
export function startUdevSender(uevents: Uevents, log: Logger): { child: ChildProcess; stop: () => void; failed: Promise<Error> } {
  let stopping = false;
  const child = spawn('python3', ['-c', SENDER_PY, '--ack-fd', '1'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const failed = new Promise<Error>((resolve) => {
    child.on('error', (err) => resolve(new Error(`cannot start the udev sender: python3: ${err.message}`)));
    child.on('exit', (code, signal) => {
      if (!stopping) resolve(new Error(`the udev sender (python3) ended (${signal ?? `exit ${code}`})`));
    });
  });
  const unsubscribe = feedUdevSender(uevents, child.stdin!, log, child.stdout!);
  return {
    child,
    failed,
    stop: () => {
      stopping = true;
      unsubscribe();
      child.stdin?.end();
    },
  };
}
