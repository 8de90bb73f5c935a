import { spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readFileSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { asNobody } from '../helpers/as-user';
import { BACKEND, CLI, scratch } from '../helpers/daemon';

// An ordinary user outside a login session (no XDG_RUNTIME_DIR): the daemon and its clients
// find the control directory by one rule, ${TMPDIR:-/tmp}/mdevfs-UID, a directory of that
// user's; one that anybody else could have put there is refused before anything is done.

const UID = 65534; // nobody
const NOBODY = ['--reuid=nobody', '--regid=nogroup', '--clear-groups'];

/** A scratch directory user nobody owns: its TMPDIR. */
function nobodysTmp(): string {
  const dir = scratch('mdevfs-user-');
  chownSync(dir, UID, UID);
  chmodSync(dir, 0o755);
  return dir;
}

const cli = (tmp: string, args: readonly string[]) => asNobody([process.execPath, CLI, ...args], { cwd: tmp, env: { TMPDIR: tmp } });

// An ordinary user always gets fuse-native (fusermount): the run that names no backend covers it.
const skip = BACKEND ? 'an ordinary user gets fuse-native whatever the suite runs' : asNobody(['test', '-r', CLI]).status !== 0 ? `nobody cannot read ${CLI}` : false;

t.test('as nobody without XDG_RUNTIME_DIR: mount serves, wait and ctl find it in ${TMPDIR}/mdevfs-UID', { skip }, async (t) => {
  const tmp = nobodysTmp();
  const dir = join(tmp, 'mnt');
  const proc = spawn('setpriv', [...NOBODY, 'env', '-i', 'PATH=/usr/local/bin:/usr/bin:/bin', `TMPDIR=${tmp}`, process.execPath, CLI, 'mount', dir], {
    stdio: ['ignore', 'ignore', 'pipe'],
    cwd: tmp,
  });
  t.teardown(() => void (proc.exitCode === null && proc.kill('SIGKILL')));
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => proc.on('close', (code) => r(code)));
  const w = cli(tmp, ['wait', 'mnt', '--timeout', '20']);
  t.equal(w.status, 0, `wait as nobody (${w.stderr.trim() || 'ready'}; daemon: ${stderr.trim()})`);
  t.same([cli(tmp, ['ctl', 'mnt', 'parents']).stdout], ['mtty\nmdpy\nmbochs\n'], 'ctl as nobody');
  const st = statSync(join(tmp, `mdevfs-${UID}`));
  t.same([st.uid, (st.mode & 0o7777).toString(8)], [UID, '700'], 'the control directory: nobody\'s, 0700');
  proc.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM: exit 0');
  t.match(stderr, `mdevfs: serving samples at ${dir}; Ctrl-C to stop`);
  t.notMatch(readFileSync('/proc/self/mountinfo', 'utf8'), dir, 'no mount left');
});

t.test('a control directory that is a link, someone else\'s or writable by others is refused first', { skip }, async (t) => {
  const cases: [string, (path: string) => void, string][] = [
    ['a link', (p) => symlinkSync(scratch('mdevfs-user-'), p), 'it is a symbolic link'],
    ['root\'s', (p) => mkdirSync(p, { mode: 0o700 }), `it is owned by uid 0, not ${UID}`],
    ['writable by others', (p) => {
      mkdirSync(p);
      chownSync(p, UID, UID);
      chmodSync(p, 0o777);
    }, 'it is writable by its group and others (mode 0777)'],
  ];
  for (const [what, make, why] of cases) {
    const tmp = nobodysTmp();
    const ctl = join(tmp, `mdevfs-${UID}`);
    make(ctl);
    const msg = `mdevfs: unsafe control directory ${ctl}: ${why}; remove it (or fix it) and start again\n`;
    const m = cli(tmp, ['mount', join(tmp, 'mnt'), '--log-level', 'info']);
    t.same([m.status, m.stderr], [1, msg], `${what}: mount refuses it before anything else (nothing logged, no parent registered)`);
    for (const args of [['wait', 'mnt', '--timeout', '0.2'], ['ctl', 'mnt', 'parents'], ['events', 'mnt']]) {
      const c = cli(tmp, args);
      t.same([c.status, c.stderr], [1, msg], `${what}: ${args[0]} refuses it`);
    }
  }
});
