import { type ChildProcess, spawn } from 'node:child_process';
import { endianness } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import type { Logger } from 'pino';
import type { Uevent, Uevents } from './uevents';

/**
 * Delivery as the kernel and udevd do it. The kernel broadcasts each uevent on
 * NETLINK_KOBJECT_UEVENT multicast group 1 ("kernel": `ACTION@DEVPATH\0KEY=VALUE\0...`, as
 * lib/kobject_uevent.c builds it); udevd hears it, runs its rules and re-broadcasts the device on
 * group 2 ("udev") in libudev's own format, which is what libudev monitors (libvirt's node-device
 * driver, pyudev, `udevadm monitor --udev`) hear. Node has no AF_NETLINK, so a few lines of Python
 * send what this module encodes.
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
 * The kernel-group copy of a uevent, as a request to the kernel's own uevent socket. Since Linux
 * 4.18 (uevent_net_rcv in lib/kobject_uevent.c) a process with CAP_SYS_ADMIN over a network
 * namespace may hand the kernel a uevent, which appends `SEQNUM=` (the kernel's own counter) and
 * broadcasts it on group 1 of that namespace only, from port 0: the only sender libudev believes
 * on the kernel group ("Multicast kernel netlink message from PID ... ignored"). So the payload is
 * what kobject_uevent_env builds, without SEQNUM, behind a `struct nlmsghdr` (a request, with an
 * acknowledgement the sender reads).
 */
export function kernelRelayMessage(ev: Uevent): Buffer {
  const vars = Object.entries(ev).filter(([k]) => k !== 'SEQNUM');
  const payload = Buffer.from(`${ev.ACTION ?? ''}@${ev.DEVPATH ?? ''}\0${vars.map(([k, v]) => `${k}=${v}\0`).join('')}`, 'utf8');
  const h = Buffer.alloc(NLMSG_HDRLEN);
  const host32 = (v: number, at: number) => (endianness() === 'LE' ? h.writeUInt32LE(v, at) : h.writeUInt32BE(v, at));
  const host16 = (v: number, at: number) => (endianness() === 'LE' ? h.writeUInt16LE(v, at) : h.writeUInt16BE(v, at));
  host32(NLMSG_HDRLEN + payload.length, 0); // nlmsg_len
  host16(NLMSG_MIN_TYPE, 4); // nlmsg_type: the kernel skips control messages (below NLMSG_MIN_TYPE)
  host16(NLM_F_REQUEST | NLM_F_ACK, 6); // nlmsg_flags; seq and pid 0
  return Buffer.concat([h, payload]);
}

const NLMSG_HDRLEN = 16;
const NLMSG_MIN_TYPE = 0x10;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;

/**
 * Sends each line of stdin: up to two base64 fields, the kernel-group request (to the kernel,
 * which broadcasts it on group 1; its acknowledgement is read back) then the udev-group datagram
 * (sent on group 2 itself); "-" for a group not sent. The socket needs CAP_NET_ADMIN (group 2) and
 * CAP_SYS_ADMIN (group 1) in its network namespace; libudev accepts group 2 only from uid 0.
 * ECONNREFUSED is what udevd gets too when a multicast's unicast copy finds no kernel handler: the
 * multicast went out. With --netns it first moves itself into a new user and network namespace
 * (the network namespace owned by that user namespace: the kernel broadcasts the host's own
 * uevents only into namespaces owned by the initial one, so its listeners hear the emulation
 * alone), and prints the pid that holds it, for nsenter. With --detach it forks once the socket
 * exists and the parent exits: whoever waited for it knows the sender is there, and the sender is
 * nobody's child. With --ack-fd N it writes one byte to fd N once each line is sent (sendto has
 * queued the datagrams on every listener's socket).
 */
export const SENDER_PY = `
import base64, ctypes, errno, os, socket, struct, sys
if "--netns" in sys.argv:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000 | 0x40000000) != 0:  # CLONE_NEWUSER | CLONE_NEWNET
        sys.exit("mdevfs: udev sender: unshare: %s" % os.strerror(ctypes.get_errno()))
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 15)
s.bind((0, 0))
ack = int(sys.argv[sys.argv.index("--ack-fd") + 1]) if "--ack-fd" in sys.argv else None
if "--detach" in sys.argv:
    pid = os.fork()
    if pid != 0:
        if "--netns" in sys.argv:
            print(pid, flush=True)
        os._exit(0)
    if "--netns" in sys.argv:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
def warn(what):
    print("mdevfs: udev sender: %s" % what, file=sys.stderr, flush=True)
while True:
    line = sys.stdin.buffer.readline()
    if not line:
        break
    for group, field in zip((1, 2), line.split()):
        if field == b"-":
            continue
        try:
            s.sendto(base64.b64decode(field), (0, 0 if group == 1 else 2))
        except ConnectionRefusedError:
            if group == 1:
                warn("this kernel does not relay uevents to group 1 (Linux 4.18 or later does)")
            continue
        except OSError as e:
            warn(e)
            continue
        if group == 1:
            try:
                err = -struct.unpack_from("=i", s.recv(65536, socket.MSG_DONTWAIT), 16)[0]
                if err != 0:
                    warn("the kernel refused the uevent: %s" % os.strerror(err))
            except BlockingIOError:
                pass
    if ack is not None:
        try:
            os.write(ack, b".")
        except OSError:
            ack = None
`;

/** Which netlink groups a sender delivers to. */
export interface UdevGroups {
  /** Group 1, the kernel's copy (what udevd hears). */
  kernel: boolean;
  /** Group 2, udevd's copy (off when a real udevd runs and re-broadcasts). */
  udev: boolean;
}

/** How long a write(2) waits for the sender to say an event went out before it returns anyway. */
const ACK_TIMEOUT_MS = 2000;

/**
 * Feeds every uevent to a sender reading `out`: as the kernel broadcasts it (groups.kernel), then
 * as udevd would re-broadcast it (groups.udev), each line acknowledged once both are out. udevd
 * adds USEC_INITIALIZED (when it first saw the device) to what the kernel sent.
 */
export function feedUdevSender(
  uevents: Uevents,
  out: Writable,
  log: Logger,
  acks?: Readable,
  groups: UdevGroups = { kernel: false, udev: true },
): () => void {
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
    const kernel = groups.kernel ? kernelRelayMessage(ev).toString('base64') : '-';
    const udev = groups.udev ? udevMessage(props).toString('base64') : '-';
    out.write(`${kernel} ${udev}\n`);
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
