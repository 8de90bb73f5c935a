import { type Stats, chmodSync, lstatSync, mkdirSync } from 'node:fs';

/**
 * Makes `dir` (mode 0700) unless it exists (or create is false), then checks that nobody else can put anything in
 * it: a real directory (not a link), owned by us, writable by neither group nor others.
 * Throws an Error naming the path and what is wrong.
 */
export function ensurePrivateDir(dir: string, { create = true } = {}): void {
  const uid = process.geteuid?.() ?? 0;
  if (create) try {
    mkdirSync(dir, { mode: 0o700 });
    chmodSync(dir, 0o700); // mkdir's mode is filtered by the umask; say it exactly
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new Error(`cannot create the control directory ${dir}: ${(err as Error).message}`);
  }
  let st: Stats;
  try {
    st = lstatSync(dir);
  } catch (err) {
    throw new Error(`cannot check the control directory ${dir}: ${(err as Error).message}`);
  }
  const wrong = st.isSymbolicLink()
    ? 'it is a symbolic link'
    : !st.isDirectory()
      ? 'it is not a directory'
      : st.uid !== uid
        ? `it is owned by uid ${st.uid}, not ${uid}`
        : st.mode & 0o022
          ? `it is writable by ${[st.mode & 0o020 && 'its group', st.mode & 0o002 && 'others'].filter(Boolean).join(' and ')} (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})`
          : undefined;
  if (wrong) throw new Error(`unsafe control directory ${dir}: ${wrong}; remove it (or fix it) and start again`);
}
