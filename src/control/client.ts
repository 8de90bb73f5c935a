import { connect } from 'node:net';
import type { Reply, Request } from './protocol';

export function request(path: string, req: Request): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    let buf = '';
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('data', (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        sock.end();
        resolve(JSON.parse(buf.slice(0, nl)) as Reply);
      }
    });
    sock.on('error', reject);
  });
}
