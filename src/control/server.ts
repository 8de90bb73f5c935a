import { chmodSync, existsSync, lstatSync, rmSync } from 'node:fs';
import { type Server, type Socket, createServer } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { Clock } from '../base/clock';
import type { MdevCore } from '../core/core';
import type { Uevents } from '../events/uevents';
import { createPresentDevices } from '../daemon';
import { registerProfileParent, validateProfile } from '../drivers/profile';
import type { Reply, Request } from './protocol';

/** The daemon's control socket: parents come and go while mounted. */
export function startControlServer(
  path: string,
  core: MdevCore,
  clock: Clock,
  log: Logger,
  /** Resolves when every cache has dropped what the last change removed. */
  settled: () => Promise<void>,
  /** What `ping` answers: the mountpoint served, and whether it is mounted yet. */
  status: () => { mountpoint: string; mounted: boolean },
  /** What the `events` op streams. */
  uevents?: Uevents,
): Promise<Server> {
  const handle = async (req: Request): Promise<Reply> => {
    switch (req.op) {
      case 'add-parent':
        validateProfile({ parents: [req.parent] });
        // Its devices present (a recording's) are made as at start.
        await createPresentDevices(core, [req.parent], [registerProfileParent(core, req.parent, clock)]);
        await settled();
        return { ok: true };
      case 'remove-parent':
        await core.unregisterParent(req.name);
        await settled();
        return { ok: true };
      case 'parents':
        return { ok: true, parents: [...core.parents.keys()] };
      case 'ping':
        return { ok: true, ...status() };
      default:
        return { ok: false, error: `unknown op ${(req as { op: unknown }).op}` };
    }
  };
  const server = createServer((sock) => {
    let buf = '';
    sock.on('data', (chunk) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let reply: Promise<Reply>;
        try {
          const req = JSON.parse(line) as Request;
          log.info({ op: req.op }, 'control request');
          if (req.op === 'events' && uevents) {
            streamEvents(sock, uevents, req.since);
            continue;
          }
          reply = handle(req).catch((err: Error) => ({ ok: false as const, error: err.message }));
        } catch (err) {
          reply = Promise.resolve({ ok: false as const, error: `bad request: ${(err as Error).message}` });
        }
        void reply.then((r) => {
          if (!r.ok) log.info({ error: r.error }, 'control request refused');
          if (!sock.destroyed) sock.write(JSON.stringify(r) + '\n');
        });
      }
    });
    sock.on('error', () => undefined);
  });
  removeStaleSocket(path);
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      // libuv reports bind(2)'s ENOENT as EACCES ("for compatibility with Windows").
      const why = err.code === 'EACCES' && !existsSync(dirname(path)) ? `its directory ${dirname(path)} does not exist` : err.message;
      reject(new Error(`cannot listen on the control socket ${path}: ${why}`));
    });
    server.listen(path, () => {
      try {
        chmodSync(path, 0o600); // root only (the directory is private too)
        resolve(server);
      } catch (err) {
        server.close();
        reject(err as Error);
      }
    });
  });
}

/** `events`: an acknowledgement with the last SEQNUM sent, then one `{ok, event}` line per uevent until the client hangs up. */
function streamEvents(sock: Socket, uevents: Uevents, since: number | undefined): void {
  const send = (r: Reply) => void (!sock.destroyed && sock.write(JSON.stringify(r) + '\n'));
  send({ ok: true, seqnum: uevents.lastSeqnum });
  const unsubscribe = uevents.subscribe((event) => send({ ok: true, event }), typeof since === 'number' ? since : undefined);
  sock.on('close', unsubscribe);
}

/** A socket left by a dead daemon goes (our lock says no live one uses it); anything else at `path` is not ours to delete. */
function removeStaleSocket(path: string): void {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // nothing there
  }
  if (!isSocket) throw new Error(`the control socket path ${path} exists and is not a socket`);
  rmSync(path, { force: true });
}
