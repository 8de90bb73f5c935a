import { chmodSync, existsSync, lstatSync, rmSync } from 'node:fs';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { MdevError, errnoName } from '../base/errno';
import type { ParentProfile, Profile } from '../drivers/profile-types';
import { validateProfile } from '../drivers/profile';
import type { Emulation } from '../emulation';
import type { Uevent } from '../events/uevents';
import { globToRegExp } from '../faults/glob';
import type { Journal, JournalEntry } from '../journal/journal';
import { MAX_BODY_BYTES, type Method, REQUEST_SCHEMAS, ROUTES, type WaitRequest } from './api';
import { stateOf } from './state';

/** What GET /v1/ping answers besides the API version: the mountpoint served, and whether it is mounted yet. */
export type Status = () => { mountpoint: string; mounted: boolean };

/** An HTTP error answered as {"error": message, ...extra}. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** A stalled client: the headers must arrive within this, the whole request within REQUEST_TIMEOUT_MS (then 408). */
const HEADERS_TIMEOUT_MS = 5000;
const REQUEST_TIMEOUT_MS = 10000;
/** Connections at once (event streams and waits hold one each); more are closed at once. */
const MAX_CONNECTIONS = 256;
const DEFAULT_WAIT_S = 10;

type Validator = ((data: unknown) => boolean) & { errors?: { instancePath: string; message?: string; params: Record<string, unknown> }[] | null };

/**
 * The daemon's control socket: an HTTP/1.1 API (JSON in and out, under /v1/, docs/control-api.md)
 * on a unix socket only its owner can reach (mode 0600 in a 0700 directory). Every runtime change
 * goes through the emulation's own methods. A bad request gets an HTTP error, logged at info, and
 * changes nothing; a client that stalls gets 408.
 */
export function startControlServer(path: string, em: Emulation, log: Logger, status: Status): Promise<Server> {
  const api = new ControlApi(em, log, status);
  const server = createServer(
    { headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS, connectionsCheckingInterval: 500, keepAliveTimeout: 5000 },
    (req, res) => void api.handle(req, res),
  );
  server.maxConnections = MAX_CONNECTIONS;
  // Node's headers timeout does not always fire (seen after a run of refused requests): a
  // connection idle for as long with no request being answered gets its 408 here.
  server.on('timeout', () => undefined); // the idle timeout below decides; Node would destroy the socket
  server.on('connection', (sock: Socket) => {
    sock.setTimeout(HEADERS_TIMEOUT_MS, () => {
      if (api.busy.has(sock)) return;
      // Nothing arrived since the last answer: an idle keep-alive connection, closed without a
      // word (a 408 here would answer the request a client may be sending on it just now).
      if (sock.bytesRead === (api.answered.get(sock) ?? 0)) return void sock.destroy();
      log.info({ code: 'ERR_HTTP_REQUEST_TIMEOUT' }, 'control request refused');
      const body = JSON.stringify({ error: 'the request did not arrive in time' });
      sock.end(`HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    log.info({ code: err.code, error: err.message }, 'control request refused');
    if (!socket.writable) return socket.destroy();
    const [status, text] = timeout ? [408, 'Request Timeout'] : err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'Request Header Fields Too Large'] : [400, 'Bad Request'];
    const body = JSON.stringify({ error: timeout ? 'the request did not arrive in time' : `malformed request: ${err.message}` });
    socket.end(`HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
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

/** Closes the server and every connection it has (streams and waits included). */
export function stopControlServer(server: Server): void {
  server.close();
  server.closeAllConnections();
}

class ControlApi {
  private validators = new Map<string, Validator>();
  /** Waits for a device state, checked again at every change of the core. */
  private readonly stateWaiters = new Set<() => void>();

  constructor(
    private readonly em: Emulation,
    private readonly log: Logger,
    private readonly status: Status,
  ) {
    em.core.subscribe(() => {
      for (const check of [...this.stateWaiters]) check();
    });
  }

  /** Sockets with a request being answered (a stream, a wait): not idle. */
  readonly busy = new WeakSet<Socket>();
  /** What each connection had read when its last request was answered (an idle one reads nothing more). */
  readonly answered = new WeakMap<Socket, number>();

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://mdevfs');
    const sock = req.socket;
    this.busy.add(sock);
    res.once('close', () => {
      this.busy.delete(sock);
      this.answered.set(sock, sock.bytesRead);
    });
    try {
      const [route, params] = this.route(req.method ?? 'GET', url.pathname);
      const body = await readBody(req);
      this.log.debug({ method: req.method, path: url.pathname }, 'control request');
      await this.dispatch(route, params, url.searchParams, body, req, res);
    } catch (err) {
      const e =
        err instanceof HttpError
          ? err
          : err instanceof MdevError
            ? new HttpError(ERRNO_STATUS[errnoName(err.errno)] ?? 400, err.message, { errno: errnoName(err.errno) })
            : (err as Error).name === 'ProfileError' || (err as Error).name === 'FaultSpecError'
              ? new HttpError(400, (err as Error).message, { problems: (err as { problems: string[] }).problems })
              : new HttpError(500, (err as Error).message);
      this.log.info({ method: req.method, path: url.pathname, status: e.status, error: e.message }, 'control request refused');
      if (res.headersSent) return void res.destroy();
      send(res, e.status, { error: e.message, ...e.extra }, e.status === 413 ? { ...e.headers, Connection: 'close' } : e.headers);
    }
  }

  private route(method: string, pathname: string): [string, Record<string, string>] {
    const parts = pathname.split('/');
    const allowed: string[] = [];
    for (const r of ROUTES) {
      const tpl = r.path.split('/');
      if (tpl.length !== parts.length) continue;
      const params: Record<string, string> = {};
      const ok = tpl.every((seg, i) => {
        const m = /^\{(\w+)\}$/.exec(seg);
        if (!m) return seg === parts[i];
        if (!parts[i]) return false;
        try {
          params[m[1]!] = decodeURIComponent(parts[i]!);
        } catch {
          throw new HttpError(400, `${pathname}: malformed percent-encoding`);
        }
        return true;
      });
      if (!ok) continue;
      if (r.method === method) return [`${r.method} ${r.path}`, params];
      allowed.push(r.method);
    }
    if (allowed.length > 0) throw new HttpError(405, `${method} is not allowed on ${pathname} (${allowed.join(', ')})`, {}, { Allow: allowed.join(', ') });
    throw new HttpError(404, `no route ${pathname} (see docs/control-api.md)`);
  }

  private async dispatch(route: string, params: Record<string, string>, query: URLSearchParams, body: unknown, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const em = this.em;
    switch (route as `${Method} ${string}`) {
      case 'GET /v1/ping':
        return send(res, 200, { api: 1, pid: process.pid, ...this.status() });
      case 'GET /v1/state':
        return send(res, 200, stateOf(em));
      case 'GET /v1/parents':
        return send(res, 200, { parents: [...em.core.parents.keys()] });
      case 'POST /v1/parents': {
        const parents = await this.parentsOf(this.validate(route, body));
        validateProfile({ parents });
        // A parent registered already stays as it is and is named in `existing` (so a profile's
        // parents can be restored after some were removed); if all are, the request changes
        // nothing and is refused as a parent that exists is.
        const existing = parents.filter((p) => em.hasParent(p)).map((p) => p.name);
        if (existing.length === parents.length) {
          throw new HttpError(409, existing.length === 1 ? `parent ${existing[0]} exists` : `parents ${existing.join(', ')} exist`, { added: [], existing });
        }
        const added: string[] = [];
        for (const p of parents) {
          if (existing.includes(p.name)) continue;
          try {
            await em.addParent(p);
          } catch (err) {
            if (err instanceof Error && err.name !== 'ProfileError' && !(err instanceof MdevError)) throw new HttpError(409, err.message, { added, existing });
            throw err;
          }
          added.push(p.name);
        }
        return send(res, 201, { added, existing, parents: [...em.core.parents.keys()] });
      }
      case 'DELETE /v1/parents/{name}':
        await em.removeParent(params.name!);
        return send(res, 200, { removed: params.name, parents: [...em.core.parents.keys()] });
      case 'GET /v1/events':
        return this.streamEvents(query, req, res);
      case 'POST /v1/mark': {
        const { label } = this.validate(route, body ?? {}) as { label?: string };
        return send(res, 200, { seqnum: em.uevents.lastSeqnum, journal: em.journal?.mark(label) ?? null });
      }
      case 'POST /v1/wait': {
        const w = this.validate(route, body) as WaitRequest;
        if (w.journal !== undefined) this.journalOn();
        return this.wait(w, req, res);
      }
      case 'POST /v1/reset':
        this.validate(route, body ?? {});
        await em.reset();
        return send(res, 200, { seqnum: em.uevents.lastSeqnum });
      case 'GET /v1/faults':
        return send(res, 200, { rules: em.faults.list() });
      case 'POST /v1/faults':
        if (body === undefined) throw new HttpError(400, 'a JSON body (a fault rule) is required');
        return send(res, 201, em.faults.add(body, { origin: 'api' }));
      case 'PUT /v1/faults/{id}': {
        if (body === undefined) throw new HttpError(400, 'a JSON body (a fault rule) is required');
        const rule = em.faults.change(params.id!, body);
        if (!rule) throw new HttpError(404, `no fault rule ${params.id}`);
        return send(res, 200, rule);
      }
      case 'DELETE /v1/faults/{id}':
        if (!em.faults.remove(params.id!)) throw new HttpError(404, `no fault rule ${params.id}`);
        return send(res, 200, { removed: params.id, rules: em.faults.list().map((r) => r.id) });
      case 'POST /v1/faults/{id}/release': {
        const released = em.faults.release(params.id!);
        if (released === undefined) throw new HttpError(404, `no fault rule ${params.id}`);
        return send(res, 200, { released });
      }
      case 'GET /v1/journal':
        return this.journal(query, req, res);
      default:
        throw new HttpError(500, `route ${route} has no handler`);
    }
  }

  /** The parents a POST /v1/parents body names (a built-in profile's are loaded here). */
  private async parentsOf(body: unknown): Promise<ParentProfile[]> {
    const b = body as { builtin?: string; parents?: ParentProfile[] };
    if (b.builtin !== undefined) {
      const { BUILTIN_PROFILES } = await import('../drivers/profile');
      const profile: Profile | undefined = BUILTIN_PROFILES[b.builtin];
      if (!profile) throw new HttpError(404, `no built-in profile "${b.builtin}" (${Object.keys(BUILTIN_PROFILES).join(', ')})`);
      return JSON.parse(JSON.stringify(profile.parents)) as ParentProfile[];
    }
    return b.parents ?? [body as ParentProfile];
  }

  /** GET /v1/events[?since=N]: the retained events above N, then every event, one JSON line each (chunked), until the client hangs up. */
  private streamEvents(query: URLSearchParams, req: IncomingMessage, res: ServerResponse): void {
    const since = optionalInteger(query, 'since');
    for (const k of query.keys()) if (k !== 'since') throw new HttpError(400, `unknown query parameter "${k}"`);
    res.writeHead(200, { 'Content-Type': 'application/x-ndjson', 'X-Mdevfs-Seqnum': String(this.em.uevents.lastSeqnum), 'Cache-Control': 'no-store' });
    res.flushHeaders();
    const unsubscribe = this.em.uevents.subscribe((ev) => void (!res.destroyed && res.write(JSON.stringify(ev) + '\n')), since);
    req.socket.on('close', unsubscribe);
  }

  /**
   * GET /v1/journal[?since=N][&follow=1]: the entries kept with a seq above N as {entries, lastSeq,
   * dropped}; with follow, those and then every new one, one JSON line each, until the client hangs up.
   */
  private journal(query: URLSearchParams, req: IncomingMessage, res: ServerResponse): void {
    const since = optionalInteger(query, 'since') ?? 0;
    const follow = query.get('follow');
    for (const k of query.keys()) if (k !== 'since' && k !== 'follow') throw new HttpError(400, `unknown query parameter "${k}"`);
    if (follow !== null && follow !== '0' && follow !== '1') throw new HttpError(400, `follow must be 0 or 1, not "${follow}"`);
    const journal = this.journalOn();
    if (follow !== '1') return send(res, 200, { entries: journal.since(since), lastSeq: journal.lastSeq, dropped: journal.dropped });
    res.writeHead(200, { 'Content-Type': 'application/x-ndjson', 'Cache-Control': 'no-store' });
    res.flushHeaders();
    let last = since;
    const write = (e: JournalEntry) => {
      if (e.seq <= last || res.destroyed) return;
      last = e.seq;
      res.write(JSON.stringify(e) + '\n');
    };
    const unsubscribe = journal.subscribe(write);
    for (const e of journal.since(since)) write(e);
    req.socket.on('close', unsubscribe);
  }

  /** The journal, or 409 when the daemon keeps none. */
  private journalOn(): Journal {
    if (!this.em.journal) throw new HttpError(409, 'the journal is off: the daemon runs with --journal-size 0');
    return this.em.journal;
  }

  /** POST /v1/wait: answers 200 once the condition holds, 408 at the timeout; a client that hangs up stops the wait. */
  private wait(w: WaitRequest, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const seconds = w.timeout ?? DEFAULT_WAIT_S;
    return new Promise((done) => {
      let finish = (_status: number, _body: object) => {};
      const cleanups: (() => void)[] = [];
      const timer = setTimeout(() => finish(408, { error: `not met within ${seconds} s`, met: false }), seconds * 1000);
      let finished = false;
      finish = (status, body) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        for (const c of cleanups) c();
        if (!res.destroyed) send(res, status, body);
        done();
      };
      req.socket.once('close', () => finish(499, {}));
      if (w.event !== undefined) {
        const colon = w.event.indexOf(':');
        const [action, name] = [w.event.slice(0, colon), w.event.slice(colon + 1)];
        const match = (ev: Uevent) => ev.ACTION === action && (ev.DEVPATH ?? '').split('/').pop() === name;
        let unsubscribe = () => {};
        let met: Uevent | undefined;
        unsubscribe = this.em.uevents.subscribe((ev) => {
          if (met || !match(ev)) return;
          met = ev;
          // Retained events arrive during subscribe(), before `unsubscribe` is set.
          queueMicrotask(() => finish(200, { met: true, event: ev, seqnum: Number(ev.SEQNUM) }));
        }, w.since ?? 0);
        cleanups.push(() => unsubscribe());
        return;
      }
      if (w.journal !== undefined) {
        const want = w.journal;
        const pathRe = want.path === undefined ? undefined : globToRegExp(want.path);
        const match = (e: JournalEntry) =>
          (want.kind === undefined || e.kind === want.kind) &&
          (want.op === undefined || e.op === want.op) &&
          (want.errno === undefined || e.errno === want.errno) &&
          (want.fault === undefined || String(e.fault) === String(want.fault)) &&
          (want.uid === undefined || e.caller?.uid === want.uid) &&
          (pathRe === undefined || (e.path !== undefined && pathRe.test(e.path)));
        const answer = (e: JournalEntry) => finish(200, { met: true, entry: e, seq: e.seq });
        const journal = this.journalOn();
        const unsubscribe = journal.subscribe((e) => match(e) && e.seq > (w.since ?? 0) && answer(e));
        cleanups.push(unsubscribe);
        const kept = journal.since(w.since ?? 0).find(match);
        if (kept) answer(kept);
        return;
      }
      const uuid = w.device!.toLowerCase();
      const check = () => {
        const dev = this.em.core.devices.get(uuid);
        const state = dev ? dev.state : 'gone';
        if (state === w.state || (w.state === 'gone' && state === 'released')) finish(200, { met: true, device: uuid, state: w.state, seqnum: this.em.uevents.lastSeqnum });
      };
      this.stateWaiters.add(check);
      cleanups.push(() => this.stateWaiters.delete(check));
      check();
    });
  }

  private validate(route: string, body: unknown): unknown {
    const schema = (REQUEST_SCHEMAS as Record<string, object>)[route];
    if (!schema) return body;
    if (body === undefined) throw new HttpError(400, 'a JSON body is required');
    let v = this.validators.get(route);
    if (!v) {
      const Ajv = (require('ajv') as typeof import('ajv')).default;
      v = new Ajv({ allErrors: false, strict: true, strictRequired: false }).compile(schema) as Validator;
      this.validators.set(route, v);
    }
    if (!v(body)) {
      const e = v.errors?.[0];
      const where = e ? (e.instancePath || 'body') + (e.params.additionalProperty ? `.${String(e.params.additionalProperty)}` : '') : 'body';
      throw new HttpError(400, `${where}: ${e?.params.additionalProperty ? 'unknown field' : e?.message ?? 'is invalid'}`);
    }
    return body;
  }
}

/** errno of a refused change -> HTTP status. */
const ERRNO_STATUS: Record<string, number> = { ENODEV: 404, ENOENT: 404, EEXIST: 409, EBUSY: 409, EINVAL: 400 };

function send(res: ServerResponse, status: number, body: object, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store', ...headers });
  res.end(text);
}

function optionalInteger(query: URLSearchParams, name: string): number | undefined {
  const v = query.get(name);
  if (v === null) return undefined;
  if (!/^\d{1,15}$/.test(v)) throw new HttpError(400, `${name} must be an integer (0 or more), not "${v}"`);
  return Number(v);
}

/** The body as JSON (undefined if empty); 413 past MAX_BODY_BYTES, 400 if it is not JSON. */
function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    // Node's own request timeout (REQUEST_TIMEOUT_MS) does not always fire once a handler runs: a body
    // that stalls gets its 408 here too.
    const timer = setTimeout(() => reject(new HttpError(408, 'the request did not arrive in time', {}, { Connection: 'close' })), REQUEST_TIMEOUT_MS);
    timer.unref();
    req.on('close', () => clearTimeout(timer));
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      // Past the limit the rest is read and dropped (a client still sending would see EPIPE
      // instead of the answer); the request timeout bounds how long that may take.
      if (size > MAX_BODY_BYTES) failed = true;
      else chunks.push(c);
    });
    req.on('error', (err) => reject(new HttpError(400, err.message)));
    req.on('end', () => {
      clearTimeout(timer);
      if (failed) return reject(new HttpError(413, `the body exceeds ${MAX_BODY_BYTES} bytes`));
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') return resolve(undefined);
      try {
        resolve(JSON.parse(text));
      } catch (err) {
        reject(new HttpError(400, `the body is not JSON: ${(err as Error).message}`));
      }
    });
  });
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
