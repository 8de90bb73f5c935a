import { connect } from 'node:net';
import type { Reply, Request } from './protocol';

/**
 * Streams the daemon's uevents (the `events` op): `onEvent` gets each one; resolves with the
 * last SEQNUM sent before the stream began once the daemon acknowledged, and `closed` settles
 * when the stream ends. `stop()` hangs up.
 */
export function streamEvents(
  path: string,
  since: number | undefined,
  onEvent: (ev: Record<string, string>) => void,
): Promise<{ seqnum: number; closed: Promise<void>; stop: () => void }> {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    let buf = '';
    let acked = false;
    const closed = new Promise<void>((done) => sock.on('close', () => done()));
    sock.on('connect', () => sock.write(JSON.stringify({ op: 'events', since } satisfies Request) + '\n'));
    sock.on('data', (d) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const reply = JSON.parse(buf.slice(0, nl)) as Reply;
        buf = buf.slice(nl + 1);
        if (!reply.ok) {
          sock.destroy();
          reject(new Error(reply.error));
        } else if (!acked) {
          acked = true;
          resolve({ seqnum: reply.seqnum ?? 0, closed, stop: () => sock.destroy() });
        } else if (reply.event) onEvent(reply.event);
      }
    });
    sock.on('error', (err) => (acked ? sock.destroy() : reject(err)));
  });
}

/** Sends one request and resolves with its reply; with `timeoutMs`, rejects (ETIMEDOUT) if none comes in time. */
export function request(path: string, req: Request, timeoutMs?: number): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    let buf = '';
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            sock.destroy();
            reject(Object.assign(new Error(`no reply within ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
          }, timeoutMs);
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('data', (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        sock.end();
        resolve(JSON.parse(buf.slice(0, nl)) as Reply);
      }
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
