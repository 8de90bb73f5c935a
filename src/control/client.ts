import { type IncomingMessage, request as httpRequest } from 'node:http';

/**
 * The control API's client (docs/control-api.md): HTTP over the daemon's unix socket. Loads
 * nothing of the daemon, so `mdevfs wait`, `ctl` and `events` start fast.
 */

/** A reply: its status and its JSON body. */
export interface Reply<T = Record<string, unknown>> {
  status: number;
  body: T;
}

/** A non-2xx reply, with the daemon's message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>,
  ) {
    super(typeof body.error === 'string' ? body.error : `HTTP ${status}`);
  }
}

/** One connection per request (agent: false): a kept-alive one could be closed by the daemon's idle timeout just as it is reused. */
function open(socketPath: string, method: string, path: string, body: unknown, timeoutMs?: number): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = httpRequest(
      { socketPath, method, path, agent: false, headers: { Host: 'mdevfs', ...(data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {}) } },
      resolve,
    );
    if (timeoutMs !== undefined) {
      req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error(`no reply within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })));
    }
    req.on('error', reject);
    req.end(data);
  });
}

/**
 * Sends one request and resolves with the reply (any status: `ok` says whether it was 2xx);
 * rejects if no daemon answers (with `timeoutMs`: in time).
 */
export async function call<T = Record<string, unknown>>(socketPath: string, method: string, path: string, body?: unknown, timeoutMs?: number): Promise<Reply<T>> {
  const res = await open(socketPath, method, path, body, timeoutMs);
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  let parsed: unknown;
  try {
    parsed = text.trim() === '' ? {} : JSON.parse(text);
  } catch {
    parsed = { error: text.trim() };
  }
  return { status: res.statusCode ?? 0, body: parsed as T };
}

/** call(), rejecting with an ApiError unless the reply is 2xx. */
export async function ok<T = Record<string, unknown>>(socketPath: string, method: string, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
  const r = await call<T>(socketPath, method, path, body, timeoutMs);
  if (r.status < 200 || r.status > 299) throw new ApiError(r.status, r.body as Record<string, unknown>);
  return r.body;
}

/**
 * Streams JSON lines from a GET (the events): `onLine` gets each one; resolves once the daemon
 * answered, with its headers; `closed` settles when the stream ends. `stop()` hangs up.
 */
export async function streamLines(
  socketPath: string,
  path: string,
  onLine: (value: Record<string, unknown>) => void,
): Promise<{ headers: IncomingMessage['headers']; closed: Promise<void>; stop: () => void }> {
  const res = await open(socketPath, 'GET', path, undefined);
  if ((res.statusCode ?? 0) >= 300) {
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
    } catch {
      body = {};
    }
    throw new ApiError(res.statusCode ?? 0, body);
  }
  let buf = '';
  res.setEncoding('utf8');
  res.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim()) onLine(JSON.parse(line) as Record<string, unknown>);
    }
  });
  const closed = new Promise<void>((done) => {
    res.on('close', () => done());
    res.on('error', () => done());
  });
  return { headers: res.headers, closed, stop: () => res.destroy() };
}
