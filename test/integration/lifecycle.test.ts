import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { BACKEND, CLI, cliEnv, isMounted, sh, startDaemon } from '../helpers/daemon';

const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20000, env: cliEnv() });

t.test('SIGTERM and SIGINT unmount cleanly and exit 0', async (t) => {
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    const d = await startDaemon();
    t.ok(isMounted(d.dir), 'mounted');
    t.equal(await d.stop(sig), 0, `${sig}: exit code`);
    t.notOk(isMounted(d.dir), `${sig}: no mount left`);
  }
});

/**
 * Resolves once a daemon answers at dir. Not [ -d dir/bus/mdev ]: on a dead direct mount the
 * kernel still answers that from its cache. statfs(2) always reaches the daemon.
 */
async function served(dir: string): Promise<boolean> {
  for (let i = 0; i < 200; i++) {
    try {
      if (statfsSync(dir).type === FUSE_SUPER_MAGIC) return true;
    } catch {
      // ENOTCONN: still the dead mount
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
}
const FUSE_SUPER_MAGIC = 0x65735546;

t.test('kill -9 leaves no stale mount, and a later start recovers one anyway', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'mdevfs-life-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const dir = join(work, 'mnt');
  const d1 = await startDaemon({ dir });
  d1.proc.kill('SIGKILL');
  await new Promise((r) => d1.proc.on('exit', r));
  // fusermount3 (auto_unmount) notices the death on its own schedule: give it 5 s on a loaded machine.
  for (let i = 0; i < 250 && isMounted(dir); i++) await new Promise((r) => setTimeout(r, 20));
  t.notOk(isMounted(dir), 'libfuse auto_unmount removed the dead mount');

  // Without auto_unmount a killed daemon leaves a dead mount (ENOTCONN); the next start recovers it.
  const d2 = await startDaemon({ dir, env: { MDEVFS_NO_AUTO_UNMOUNT: '1' } });
  d2.proc.kill('SIGKILL');
  await new Promise((r) => d2.proc.on('exit', r));
  t.ok(isMounted(dir), 'a dead mount is left behind');
  // fuse-native: stat(mnt) fails; direct: stat is answered from the kernel's cache, opendir fails.
  t.match(sh(work, 'ls mnt 2>&1').stdout, /^ls: cannot (access|open directory) 'mnt': Transport endpoint is not connected\n$/);
  if (BACKEND !== 'fuse-native') t.ok(existsSync(join(dir, 'bus', 'mdev')), 'the kernel still answers cached lookups on the dead mount');
  const d3 = await startDaemon({ dir, logLevel: 'warn' });
  t.ok(await served(dir), 'the new daemon answers');
  t.equal(sh(dir, 'ls class/mdev_bus | wc -l').stdout, '3\n', 'the new daemon serves the tree');
  t.match(d3.logs(), 'recovering a stale mount left by a dead daemon');
  t.equal(await d3.stop(), 0);
  t.notOk(isMounted(dir));
});

t.test('mounting over a live mount fails with a clear message and exit code 3', async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.stop());
  const r = cli('mount', d.dir);
  t.equal(r.status, 3);
  t.match(r.stderr, `mdevfs: ${d.dir} is already a live mount`);
  t.equal(sh(d.dir, 'ls class/mdev_bus | wc -l').stdout, '3\n', 'the live mount is untouched');
});

t.test('a directory that is itself a mount (a bind mount, as a container volume is) is mounted over, and is there again after', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'mdevfs-bind-'));
  const dir = join(work, 'vol');
  t.teardown(() => {
    spawnSync('umount', ['-l', dir]);
    rmSync(work, { recursive: true, force: true });
  });
  t.equal(sh(work, 'mkdir vol && mount --bind vol vol && findmnt -n -o TARGET vol >/dev/null && echo mounted').stdout, 'mounted\n');
  const d = await startDaemon({ dir });
  t.equal(sh(dir, 'ls class/mdev_bus | wc -l').stdout, '3\n', 'the tree is served on top of the bind mount');
  t.equal(await d.stop(), 0);
  t.notMatch(sh(work, 'findmnt -n -o FSTYPE vol').stdout, /fuse/, 'the bind mount is what is left');
  t.equal(sh(work, 'ls -A vol | wc -l').stdout, '0\n');
});

t.test('usage: --help, bad options, bad profiles', async (t) => {
  const help = cli('--help');
  t.equal(help.status, 0);
  for (const word of ['mount DIR', '--profile', '--abi', '--log-level', 'exec']) t.match(help.stdout, word);
  t.equal(cli().status, 2, 'no command');
  t.equal(cli('frobnicate').status, 2, 'unknown command');
  const badAbi = cli('mount', '/nonexistent-mdevfs-dir', '--abi', '5.0');
  t.equal(badAbi.status, 2);
  t.equal(badAbi.stderr, 'mdevfs: --abi must be 6.1 or 4.17\n');
  const badProfile = cli('mount', '/nonexistent-mdevfs-dir', '--profile', 'no-such-profile');
  t.equal(badProfile.status, 2);
  t.match(badProfile.stderr, /profile "no-such-profile" is neither a built-in \(samples, gvt, ap[^)]*\) nor a readable file/);
  t.equal(cli('mount', '/nonexistent-mdevfs-dir', '--log-level', 'loud').status, 2);
});

t.test('the 4.17 ABI switch: vfio_mdev driver, no vfio-dev, remove created last', async (t) => {
  const d = await startDaemon({ abi: '4.17' });
  t.teardown(() => d.stop());
  const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
  t.equal(sh(d.dir, 'ls bus/mdev/drivers').stdout, 'vfio_mdev\n');
  t.equal(sh(d.dir, `echo ${U} > class/mdev_bus/mtty/mdev_supported_types/mtty-2/create && ls bus/mdev/devices/${U}`).stdout,
    'driver\niommu_group\nmdev_type\npower\nremove\nsubsystem\nuevent\nvendor\n');
  t.equal(sh(d.dir, `readlink bus/mdev/devices/${U}/driver; cat bus/mdev/devices/${U}/uevent`).stdout,
    '../../../../../bus/mdev/drivers/vfio_mdev\nDRIVER=vfio_mdev\n');
  t.equal(sh(d.dir, 'cat devices/virtual/mtty/mtty/mtty_dev/sample_mtty_dev').stdout, 'This is phy device\n');
  for (let i = 1; i <= 12; i++) sh(d.dir, `echo 00000000-0000-0000-0000-0000000000${String(i).padStart(2, '0')} > class/mdev_bus/mtty/mdev_supported_types/mtty-2/create`);
  t.equal(sh(d.dir, 'cat class/mdev_bus/mtty/mdev_supported_types/mtty-1/available_instances').stdout, '-2\n',
    'legacy mtty does not enforce its ports and reads negative');
});

t.test('4.17: a vendor remove that fails vetoes with EBUSY; the device and its remove file stay', async (t) => {
  const d = await startDaemon({
    abi: '4.17',
    profile: {
      parents: [{
        name: 'busy', path: 'devices/virtual/busy/busy', class: 'busy', mdevDriver: 'busy',
        capacity: { model: 'counter', max: 4 }, faults: { removeErrno: 'EIO', removeFailEvery: 2 },
        types: [{ name: 't' }],
      }],
    },
  });
  t.teardown(() => d.stop());
  const U = '00000000-0000-0000-0000-000000000001';
  t.equal(sh(d.dir, `echo ${U} > class/mdev_bus/busy/mdev_supported_types/busy-t/create`).code, 0);
  t.equal(sh(d.dir, `echo 1 > bus/mdev/devices/${U}/remove`).code, 0, 'the first vendor remove succeeds');
  t.equal(sh(d.dir, `echo ${U} > class/mdev_bus/busy/mdev_supported_types/busy-t/create`).code, 0);
  const r = sh(d.dir, `echo 1 > bus/mdev/devices/${U}/remove; ls bus/mdev/devices/${U}`);
  t.equal(r.stderr, 'bash: line 1: echo: write error: Device or resource busy\n', 'the second is vetoed');
  t.equal(r.stdout, 'driver\niommu_group\nmdev_type\npower\nremove\nsubsystem\nuevent\n', 'fully present, remove back');
  t.equal(sh(d.dir, `echo 1 > bus/mdev/devices/${U}/remove; test -e bus/mdev/devices/${U}; echo $?`).stdout, '1\n',
    'active again: the next remove works');
});
