import t from 'tap';
import { PY_WRITE, daemonPerTest, sh } from '../helpers/daemon';

// The direct backend lets the kernel cache symlink targets (FUSE_CACHE_SYMLINKS) for as long
// as the link's inode lives. A device removed and created again under the same UUID, on
// another parent and type and with another iommu group, must show its new targets at once,
// and a link of the removed device must not live on in the cache.
const U = '6d1f0a8e-2b3c-4d5e-8f90-a1b2c3d4e5f6';
const V = '6d1f0a8e-2b3c-4d5e-8f90-a1b2c3d4e5f7';
const MT = 'class/mdev_bus/mtty/mdev_supported_types';
const MP = 'class/mdev_bus/mdpy/mdev_supported_types';

const d = daemonPerTest();
const run = (script: string) => sh(d.dir, script);
const links = (uuid: string) =>
  run(
    `for l in bus/mdev/devices/${uuid} bus/mdev/devices/${uuid}/mdev_type bus/mdev/devices/${uuid}/iommu_group bus/mdev/devices/${uuid}/driver; do readlink $l; done; ` +
      `realpath --relative-to=. bus/mdev/devices/${uuid}/mdev_type`,
  ).stdout;

t.test('a re-created device reads its new link targets', async (t) => {
  t.equal(run(`echo ${U} > ${MT}/mtty-1/create`).code, 0);
  const first = [
    '../../../devices/virtual/mtty/mtty/' + U,
    '../mdev_supported_types/mtty-1',
    '../../../../../kernel/iommu_groups/0',
    '../../../../../bus/mdev/drivers/mtty',
    'devices/virtual/mtty/mtty/mdev_supported_types/mtty-1',
    '',
  ].join('\n');
  // Twice: the second time the kernel answers from its caches.
  t.equal(links(U), first, 'targets');
  t.equal(links(U), first, 'targets again');

  // Group 0 goes to V; U comes back on another parent and type, with group 1.
  t.equal(run(`echo 1 > bus/mdev/devices/${U}/remove`).code, 0);
  t.equal(run(`echo ${V} > ${MT}/mtty-2/create`).code, 0);
  t.equal(run(`echo ${U} > ${MP}/mdpy-vga/create`).code, 0);
  const second = [
    '../../../devices/virtual/mdpy/mdpy/' + U,
    '../mdev_supported_types/mdpy-vga',
    '../../../../../kernel/iommu_groups/1',
    '../../../../../bus/mdev/drivers/mdpy',
    'devices/virtual/mdpy/mdpy/mdev_supported_types/mdpy-vga',
    '',
  ].join('\n');
  t.equal(links(U), second, 'new targets after the re-create');
  t.equal(run(`readlink bus/mdev/devices/${V}/iommu_group`).stdout, '../../../../../kernel/iommu_groups/0\n', 'V has group 0');
  t.equal(run(`readlink kernel/iommu_groups/1/devices/${U}`).stdout, `../../../../devices/virtual/mdpy/mdpy/${U}\n`);
  t.equal(run(`readlink kernel/iommu_groups/0/devices/${V}`).stdout, `../../../../devices/virtual/mtty/mtty/${V}\n`);
  t.equal(run(`echo 1 > bus/mdev/devices/${U}/remove; echo 1 > bus/mdev/devices/${V}/remove`).code, 0);
});

t.test("a removed device's link is gone for a process inside its directory", async (t) => {
  t.equal(run(`echo ${U} > ${MT}/mtty-1/create`).code, 0);
  // The shell's cwd keeps the device directory (and the kernel's dentry of it) alive.
  const r = run(
    `cd bus/mdev/devices/${U}/ && readlink mdev_type && readlink iommu_group && echo 1 > remove; ` +
      'readlink mdev_type; echo "rc=$?"; readlink iommu_group; echo "rc=$?"',
  );
  t.equal(r.stdout, '../mdev_supported_types/mtty-1\n../../../../../kernel/iommu_groups/0\nrc=1\nrc=1\n');
  t.match(r.stderr, /^$/, 'readlink fails silently (no -v)');
});

// The kernel keeps a link's cached target as long as anything holds its inode; an O_PATH fd
// does. A link at the same path that now points elsewhere must be a new inode to the kernel.
const HOLD = String.raw`
import os, sys
m, U, V = sys.argv[1:4]
dev = m + "/devices/virtual/mtty/mtty/" + U
types = m + "/class/mdev_bus/mtty/mdev_supported_types/"
${PY_WRITE}
write(types + "mtty-1/create", U)
links = lambda: [os.readlink(dev + "/mdev_type"), os.readlink(dev + "/iommu_group")]
print(*links())
held = [os.open(dev + "/" + l, os.O_PATH | os.O_NOFOLLOW) for l in ("mdev_type", "iommu_group")]
print(*links())
write(dev + "/remove", "1")
write(types + "mtty-2/create", V)
write(types + "mtty-2/create", U)
print(*links())
`;

t.test('a link held open (O_PATH) while its device is re-created: the path reads the new target', async (t) => {
  const r = run(`python3 -c '${HOLD}' . ${U} ${V}`);
  t.equal(r.stderr, '');
  t.equal(
    r.stdout,
    [
      '../mdev_supported_types/mtty-1 ../../../../../kernel/iommu_groups/0',
      '../mdev_supported_types/mtty-1 ../../../../../kernel/iommu_groups/0',
      '../mdev_supported_types/mtty-2 ../../../../../kernel/iommu_groups/1',
      '',
    ].join('\n'),
  );
  t.equal(run(`echo 1 > bus/mdev/devices/${U}/remove; echo 1 > bus/mdev/devices/${V}/remove`).code, 0);
});
