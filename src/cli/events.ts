import { basename } from 'node:path';
import { streamLines } from '../control/client';
import { UsageError, checkControlDir, controlFromEnv, controlPathFor, noDaemon } from './args';

const EXIT_USAGE = 2;

/**
 * `mdevfs events DIR [--since N] [--until ACTION:NAME] [--timeout S]`: prints the uevents of the
 * daemon serving DIR as JSON lines (their variables in the kernel's order). With --until it exits
 * 0 once an event with that ACTION whose DEVPATH ends in NAME (a UUID, vfio0, mtty, ...) has been
 * printed; with --timeout it gives up after S seconds (exit 1). --since N first prints the
 * retained events with a SEQNUM above N (0: all), so `echo $U > create; mdevfs events DIR
 * --since 0 --until add:$U` cannot miss the event.
 */
export async function eventsCommand(dirArg: string | undefined, options: ReadonlyMap<string, string>): Promise<number> {
  const usage = (msg: string) => {
    process.stderr.write(`mdevfs events: ${msg}\n`);
    return EXIT_USAGE;
  };
  const until = options.get('until');
  const m = until === undefined ? undefined : /^([a-z]+):(.+)$/.exec(until);
  if (until !== undefined && !m) return usage(`--until takes ACTION:NAME (e.g. add:<uuid>), not "${until}"`);
  const timeout = options.has('timeout') ? Number(options.get('timeout')) : undefined;
  if (timeout !== undefined && !(Number.isFinite(timeout) && timeout > 0)) return usage('--timeout must be a positive number of seconds');
  const since = options.has('since') ? Number(options.get('since')) : undefined;
  if (since !== undefined && !(Number.isInteger(since) && since >= 0)) return usage('--since must be a SEQNUM (0 or more)');
  let path: string;
  try {
    if (dirArg === undefined) path = controlFromEnv(options).socket;
    else {
      checkControlDir(options, false);
      path = controlPathFor(dirArg, options);
    }
  } catch (err) {
    if (err instanceof UsageError) return usage(err.message);
    // An unsafe control directory fails as it does for wait and ctl: status 1.
    process.stderr.write(`mdevfs: ${(err as Error).message}\n`);
    return 1;
  }

  let matched = false;
  let stop = () => {};
  const onEvent = (ev: Record<string, unknown>) => {
    if (matched) return;
    process.stdout.write(JSON.stringify(ev) + '\n');
    if (m && ev.ACTION === m[1] && basename(String(ev.DEVPATH ?? '')) === m[2]) {
      matched = true;
      stop();
    }
  };
  let stream;
  try {
    stream = await streamLines(path, `/v1/events${since === undefined ? '' : `?since=${since}`}`, onEvent);
  } catch (err) {
    process.stderr.write(`mdevfs events: ${dirArg === undefined ? `no daemon answers on ${path}: ${(err as Error).message}` : noDaemon(dirArg, options, err)}\n`);
    return 1;
  }
  stop = stream.stop;
  if (matched) stop(); // seen among the retained events
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((resolve) => {
    if (timeout !== undefined) timer = setTimeout(() => resolve(true), timeout * 1000);
  });
  const ended = await Promise.race([stream.closed.then(() => false), timedOut]);
  clearTimeout(timer);
  stop();
  if (matched || !until) return 0; // without --until, the end of the stream (or of --timeout) is a normal end
  process.stderr.write(`mdevfs events: no ${until} event ${ended ? `within ${timeout} s` : 'before the daemon stopped'}\n`);
  return 1;
}
