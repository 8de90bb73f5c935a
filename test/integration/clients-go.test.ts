// runs once, on the default backend: the Go helper starts its trees on the default backend
// The Go test helper (clients/go/mdevfstest): vetted and its tests run by Debian's go, offline
// (GOPROXY=off, GOFLAGS empty, a fresh GOCACHE and GOPATH: nothing can be downloaded, nothing
// cached is reused), against this clone's mdevfs.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import t from 'tap';
import { CLI, REPO, cliEnv, scratch } from '../helpers/daemon';

const PKG = join(REPO, 'clients', 'go', 'mdevfstest');
const GO = spawnSync('go', ['version'], { encoding: 'utf8' });
const skip = GO.status === 0 ? undefined : 'go is not installed (scripts/setup --test installs golang-go)';

function goEnv(): NodeJS.ProcessEnv {
  const tmp = scratch('mdevfs-go-');
  return {
    ...cliEnv(),
    PATH: `${dirname(process.execPath)}:${process.env.PATH}`,
    MDEVFS_CLI: CLI,
    GOPROXY: 'off',
    GOFLAGS: '',
    GONOSUMDB: '',
    GOTOOLCHAIN: 'local',
    GOCACHE: join(tmp, 'cache'),
    GOPATH: join(tmp, 'gopath'),
    GOMODCACHE: join(tmp, 'gopath', 'pkg', 'mod'),
    TMPDIR: tmp,
  };
}

t.test('go.mod requires nothing: the standard library only', async (t) => {
  const mod = readFileSync(join(PKG, 'go.mod'), 'utf8');
  t.notMatch(mod, /require/, 'no require');
  t.match(mod, /^module mdevfs\/mdevfstest$/m);
});

t.test('go vet and go test pass offline', { skip }, async (t) => {
  const env = goEnv();
  const vet = spawnSync('go', ['vet', './...'], { cwd: PKG, encoding: 'utf8', env, timeout: 300_000 });
  t.equal(vet.status, 0, `go vet: ${vet.stderr}`);
  const fmt = spawnSync('gofmt', ['-l', '.'], { cwd: PKG, encoding: 'utf8' });
  t.equal(fmt.stdout, '', 'gofmt: nothing to reformat');
  const r = spawnSync('go', ['test', '-count=1', '-v', './...'], { cwd: PKG, encoding: 'utf8', env, timeout: 300_000 });
  t.equal(r.status, 0, `go test:\n${r.stdout}${r.stderr}`);
  const passed = [...r.stdout.matchAll(/^--- PASS: (\S+)/gm)].map((m) => m[1]).sort();
  t.same(passed, ['TestCreateMdevReportsENOSPC', 'TestDiscoverySeesAReadFault', 'TestHardcodedSysInsideExec', 'TestSeveralTreesWithProfiles']);
  t.match(r.stdout, /inside mdevfs exec:\n\s+=== RUN   TestHardcodedSysInsideExec\n\s+--- PASS: TestHardcodedSysInsideExec/, 'the /sys test ran again inside mdevfs exec, and passed there');
  t.notMatch(readFileSync('/proc/self/mountinfo', 'utf8'), env.TMPDIR!, 'every tree unmounted');
});

t.test('without MDEVFS_CLI and no mdevfs on PATH, New fails the test saying how to get one', { skip }, async (t) => {
  const env = { ...goEnv(), MDEVFS_CLI: '', PATH: dirname(spawnSync('sh', ['-c', 'command -v go'], { encoding: 'utf8' }).stdout.trim()) + ':/usr/bin:/bin' };
  const r = spawnSync('go', ['test', '-count=1', '-run', '^TestSeveralTreesWithProfiles$', './...'], { cwd: PKG, encoding: 'utf8', env, timeout: 300_000 });
  t.equal(r.status, 1);
  t.match(r.stdout, /mdevfstest\.New: mdevfs is not on PATH and MDEVFS_CLI is not set: install it \(in a clone: `sudo npm install -g \.`\) or set MDEVFS_CLI to a clone's scripts\/mdevfs/);
});
