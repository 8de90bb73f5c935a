import { spawn } from 'node:child_process';
import type { Test } from 'tap';

export interface Monitor {
  /** What the monitor printed so far. */
  heard(): string;
  /** Resolves once what it printed matches `pattern`. */
  until(pattern: RegExp): Promise<void>;
}

/**
 * Starts `udevadm monitor ARGS` (after `prefix`, e.g. nsenter into a daemon's network namespace)
 * and resolves once it listens on every group ARGS names: it prints each group's header line then.
 * It is stopped when the test ends.
 */
export async function startMonitor(t: Test, args: string[], prefix: string[] = []): Promise<Monitor> {
  const argv = [...prefix, 'udevadm', 'monitor', ...args];
  const mon = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => void mon.kill());
  let heard = '';
  const waiting = new Set<{ pattern: RegExp; resolve: () => void; reject: (err: Error) => void }>();
  mon.stdout.setEncoding('utf8').on('data', (d: string) => {
    heard += d;
    for (const w of waiting) {
      if (w.pattern.test(heard)) {
        waiting.delete(w);
        w.resolve();
      }
    }
  });
  let ended: Error | undefined;
  mon.on('exit', (code, signal) => {
    ended = new Error(`${argv.join(' ')} ended (${signal ?? code}) before printing what was awaited; it printed: ${heard}`);
    for (const w of waiting) w.reject(ended);
    waiting.clear();
  });
  const until = (pattern: RegExp) =>
    new Promise<void>((resolve, reject) => {
      if (pattern.test(heard)) resolve();
      else if (ended) reject(ended);
      else waiting.add({ pattern, resolve, reject });
    });
  if (args.includes('--udev')) await until(/^UDEV - the event/m);
  if (args.includes('--kernel')) await until(/^KERNEL - the kernel uevent/m);
  return { heard: () => heard, until };
}
