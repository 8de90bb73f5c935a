import t from 'tap';
import { PY_WRITE, daemonPerTest, sh } from '../helpers/daemon';

// The direct backend lets the kernel cache directory listings (FOPEN_CACHE_DIR) and keep them
// across opens while nothing changed. Every change must show in the next listing: in a new
// `ls`, in a directory fd opened before the change and read after it, after a rewinddir, and
// while other processes keep listing (and so refilling the cache) during the changes. Runs on
// both backends (fuse-native caches no listing: it must agree too).
const MT = 'class/mdev_bus/mtty/mdev_supported_types';

const d = daemonPerTest();
const run = (script: string) => sh(d.dir, script);
const ls = (dir: string) => run(`ls ${dir}`).stdout.split('\n').filter(Boolean);
const uuid = (i: number) => `7a1f0a8e-2b3c-4d5e-8f90-${String(i).padStart(12, '0')}`;

t.test('a new ls shows each change, in every directory it touches', async (t) => {
  const dirs = ['bus/mdev/devices', `${MT}/mtty-1/devices`, 'devices/virtual/mtty/mtty', 'kernel/iommu_groups', 'class/vfio-dev'];
  // Listed twice first: the second time the kernel may answer from its cache.
  const before = dirs.map((dir) => (ls(dir), ls(dir)));
  t.equal(run(`echo ${uuid(1)} > ${MT}/mtty-1/create`).code, 0);
  const after = dirs.map(ls);
  t.ok(after[0]!.includes(uuid(1)), 'bus/mdev/devices lists it');
  t.ok(after[1]!.includes(uuid(1)), "the type's devices/ lists it");
  t.ok(after[2]!.includes(uuid(1)), 'the parent lists it');
  t.equal(after[3]!.length, before[3]!.length + 1, 'one more iommu group');
  t.equal(after[4]!.length, before[4]!.length + 1, 'one more vfio device');
  t.same(dirs.map(ls), after, 'the same again (cached)');
  t.equal(run(`echo 1 > bus/mdev/devices/${uuid(1)}/remove`).code, 0);
  t.same(dirs.map(ls), before, 'as before the create');
  // A device directory of its own: its entries change with binding (driver, iommu_group).
  t.equal(run(`echo ${uuid(2)} > ${MT}/mtty-2/create`).code, 0);
  const dev = `bus/mdev/devices/${uuid(2)}/`;
  t.ok(ls(dev).includes('driver') && ls(dev).includes('remove'));
  t.equal(run(`echo ${uuid(2)} > bus/mdev/drivers/vfio_mdev/unbind 2>/dev/null || echo ${uuid(2)} > ${dev}driver/unbind`).code, 0);
  t.notOk(ls(dev).includes('driver'), 'unbound: no driver link listed');
  t.equal(run(`echo 1 > ${dev}remove`).code, 0);
});

// One process: a directory fd opened before a change, read after it; rewound after another.
const HELD = String.raw`
import os, sys
m, U, V = sys.argv[1:4]
${PY_WRITE}
types = m + "/class/mdev_bus/mtty/mdev_supported_types/"
devs = m + "/bus/mdev/devices"
os.listdir(devs); os.listdir(devs)
fd = os.open(devs, os.O_RDONLY | os.O_DIRECTORY)
write(types + "mtty-1/create", U)
print(sorted(os.listdir(fd)))
write(types + "mtty-1/create", V)
os.lseek(fd, 0, 0)
print(sorted(os.listdir(fd)))
write(devs + "/" + U + "/remove", "1")
os.lseek(fd, 0, 0)
print(sorted(os.listdir(fd)))
write(devs + "/" + V + "/remove", "1")
os.close(fd)
print(sorted(os.listdir(devs)))
`;

t.test('a directory open across changes reads each change', async (t) => {
  const r = run(`python3 -c '${HELD}' . ${uuid(3)} ${uuid(4)}`);
  t.equal(r.stderr, '');
  t.equal(r.stdout, [`['${uuid(3)}']`, `['${uuid(3)}', '${uuid(4)}']`, `['${uuid(4)}']`, '[]', ''].join('\n'));
});

// Listers refill the cache while a writer creates and removes; after each of its writes
// returns, the writer's own listing must show it, and at the end everyone agrees.
const LISTER = String.raw`
import os, sys, time
end = time.monotonic() + float(sys.argv[2])
n = 0
while time.monotonic() < end:
    os.listdir(sys.argv[1] + "/bus/mdev/devices"); n += 1
print(n)
`;
const WRITER = String.raw`
import os, sys
m, n = sys.argv[1], int(sys.argv[2])
${PY_WRITE}
types = m + "/class/mdev_bus/mtty/mdev_supported_types/"
devs = m + "/bus/mdev/devices"
bad = []
for i in range(n):
    u = "7a1f0a8e-2b3c-4d5e-8f90-%012d" % (100 + i)
    write(types + "mtty-%d/create" % (1 + i % 2), u)
    if u not in os.listdir(devs): bad.append("created, not listed: " + u)
    write(devs + "/" + u + "/remove", "1")
    if u in os.listdir(devs): bad.append("removed, still listed: " + u)
print(len(bad), *bad[:5])
`;

t.test('listings stay exact while other processes keep listing', async (t) => {
  const r = run(
    `L=$(mktemp -d); python3 -c '${LISTER}' . 4 > $L/1 & python3 -c '${LISTER}' . 4 > $L/2 & ` +
      `python3 -c '${WRITER}' . 150; wait; cat $L/1 $L/2 >&2; rm -r $L`,
  );
  t.equal(r.stdout, '0\n', 'every create and remove showed in the next listing');
  t.match(r.stderr, /^\d+\n\d+\n$/, 'the listers ran');
  t.same(ls('bus/mdev/devices'), [], 'nothing left');
});
