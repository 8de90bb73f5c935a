import { createWriteStream, openSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Journal } from './journal';

/**
 * Appends every journal entry from now on to file, one JSON line each (`--journal FILE`), in the
 * journal's order. A file that cannot be opened throws here (before mounting); one that fails
 * later is logged once and given up: the daemon goes on. Returns what stops it, resolving once
 * what was written has reached the file.
 */
export function journalToFile(journal: Journal, file: string, log: Logger): () => Promise<void> {
  const out = createWriteStream('', { fd: openSync(file, 'a', 0o600) });
  let failed = false;
  const unsubscribe = journal.subscribe((e) => {
    if (!failed) out.write(`${JSON.stringify(e)}\n`);
  });
  out.on('error', (err) => {
    if (failed) return;
    failed = true;
    unsubscribe();
    log.error({ err, file }, 'the journal file cannot be written; no longer writing it');
  });
  return () => {
    unsubscribe();
    return new Promise<void>((resolve) => out.end(resolve));
  };
}
