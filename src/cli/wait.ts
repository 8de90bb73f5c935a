import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { call } from '../control/client';
import { mountAt } from '../fuse/mountpoint';
import { UsageError, checkControlDir, controlFromEnv, controlPathFor, mountpointOf, noDaemon } from './args';

const POLL_MS = 50;

/**
 * `mdevfs wait DIR [--timeout SECONDS]`: exits 0 once the daemon serving DIR answers, nonzero
 * on timeout. A dead mount cannot fake it: the daemon must answer a ping on its control socket
 * and say DIR is mounted, DIR must be an mdevfs mount, and a read that only the daemon can
 * answer (a file's content is never cached) must succeed, done in a child with a time limit so
 * that a hung mount cannot block us.
 */
export async function waitCommand(dirArg: string | undefined, options: ReadonlyMap<string, string>): Promise<number> {
  const seconds = Number(options.get('timeout') ?? '10');
  if (!Number.isFinite(seconds) || seconds <= 0) throw new UsageError(`--timeout must be a positive number of seconds, not "${options.get('timeout')}"`);
  // Without DIR (a command run by mdevfs exec): the socket it was given, and the tree where it
  // sees it (the daemon's own mountpoint is in another mount namespace).
  const fromEnv = dirArg === undefined ? controlFromEnv(options) : undefined;
  if (!fromEnv) checkControlDir(options, false);
  const dir = mountpointOf(fromEnv ? (fromEnv.root ?? '/sys') : dirArg!); // these throw UsageError
  const socket = fromEnv ? fromEnv.socket : controlPathFor(dir, options);
  const noAnswer = (err: unknown) => (fromEnv ? `no daemon answers on ${socket} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` : noDaemon(dirArg!, options, err));
  const check = (timeoutMs: number) => checkOnce(dir, socket, timeoutMs, noAnswer, !fromEnv);
  const deadline = Date.now() + seconds * 1000;
  let why = 'not checked';
  for (;;) {
    why = await check(Math.max(100, Math.min(2000, deadline - Date.now())));
    if (!why) return 0;
    if (Date.now() + POLL_MS >= deadline) break;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  process.stderr.write(`mdevfs wait: ${resolve(dirArg ?? dir)} is not ready after ${seconds} s: ${why}\n`);
  return 1;
}

/** '' when ready, else what is missing. */
async function checkOnce(dir: string, socket: string, timeoutMs: number, noDaemon: (err: unknown) => string, sameMountpoint: boolean): Promise<string> {
  try {
    const reply = await call<{ mountpoint?: string; mounted?: boolean; error?: string }>(socket, 'GET', '/v1/ping', undefined, timeoutMs);
    if (reply.status !== 200) return `its daemon refused the ping: ${reply.body.error ?? reply.status}`;
    const { mountpoint, mounted } = reply.body;
    if (sameMountpoint && mountpoint !== dir) return `the daemon that answers serves ${mountpoint ?? 'something else'}, not ${dir}`;
    if (!mounted) return 'the daemon is still mounting';
  } catch (err) {
    return noDaemon(err);
  }
  const entry = mountAt(dir);
  if (!entry?.fstype.endsWith('mdevfs')) return `${dir} is not an mdevfs mount`;
  return readInChild(join(dir, 'bus', 'mdev', 'drivers_autoprobe'), timeoutMs);
}

function readInChild(file: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn('head', ['-c', '16', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve(`reading ${file} took over ${timeoutMs} ms`);
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve(`cannot run head: ${err.message}`);
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve(code === 0 ? '' : stderr.trim() || `head ${file} exited ${code}`);
    });
  });
}
