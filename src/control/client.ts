import { connect } from 'node:net';
import type { Reply, Request } from './protocol';

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
