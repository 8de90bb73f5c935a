import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Errno, MdevError } from '../../src/base/errno';
import { silentLogger } from '../../src/base/log';
import { BUILTIN_PROFILES } from '../../src/drivers/profile';
import type { Profile } from '../../src/drivers/profile-types';
import { Emulation, HostClashError } from '../../src/emulation';
import { HostKernfs } from '../../src/sysfs/host-kernfs';
import type { Kernfs } from '../../src/sysfs/kernfs';

// The --host-sysfs overlay and HostKernfs in process, over a small made-up host sysfs in a
// temporary directory (the real /sys is the integration test's, test/integration/host-sysfs.test.ts).

const O_RDONLY = 0;
const O_WRONLY = 1;
const NOBODY = { pid: 1, uid: 65534, gid: 65534 };
const ROOT = { pid: 1, uid: 0, gid: 0 };

/** A host sysfs: a PCI function with a 256-byte config, class/net/lo, the bus and class links, kernel/iommu_groups 0-1. */
function fakeHost(t: Test): string {
  const root = mkdtempSync(join(tmpdir(), 'mdevfs-fakesys-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const fn = join(root, 'devices/pci0000:00/0000:00:03.0');
  mkdirSync(fn, { recursive: true });
  const config = Buffer.alloc(256, 0xab);
  config[0x0e] = 0; // header type: a normal function
  writeFileSync(join(fn, 'config'), config, { mode: 0o644 });
  writeFileSync(join(fn, 'vendor'), '0x1af4\n', { mode: 0o444 });
  mkdirSync(join(root, 'bus/pci/devices'), { recursive: true });
  symlinkSync('../../../bus/pci', join(fn, 'subsystem'));
  symlinkSync('../../../devices/pci0000:00/0000:00:03.0', join(root, 'bus/pci/devices/0000:00:03.0'));
  mkdirSync(join(root, 'devices/virtual/net/lo'), { recursive: true });
  writeFileSync(join(root, 'devices/virtual/net/lo/mtu'), '65536\n', { mode: 0o644 });
  mkdirSync(join(root, 'class/net'), { recursive: true });
  symlinkSync('../../devices/virtual/net/lo', join(root, 'class/net/lo'));
  // A name the emulation has as a directory (class/mdev_bus) with a host entry in it, and one it has as a file.
  mkdirSync(join(root, 'class/mdev_bus/hostonly'), { recursive: true });
  mkdirSync(join(root, 'bus/mdev/drivers_autoprobe'), { recursive: true });
  for (const g of ['0', '1']) mkdirSync(join(root, 'kernel/iommu_groups', g, 'devices'), { recursive: true });
  return root;
}

function emulation(root: string, profile: Profile = BUILTIN_PROFILES.samples!): Emulation {
  return new Emulation(profile, { log: silentLogger, hostSysfs: root });
}

function errnoOf(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof MdevError) return err.errno;
    throw err;
  }
  return undefined;
}

/** A whole read of `path`. */
async function readAll(k: Kernfs, path: string, caller = ROOT): Promise<Buffer> {
  const fh = k.open(path, O_RDONLY, undefined, caller);
  try {
    return await k.read(fh, 65536, 0);
  } finally {
    k.release(fh);
  }
}

t.test('the overlay: merged listings, the emulated entry wins a name, host nodes as the host has them', async (t) => {
  const root = fakeHost(t);
  const k = emulation(root).kernfs;
  t.ok(k instanceof HostKernfs, 'a HostKernfs serves the tree');
  t.same(k.readdir('/').slice(2).sort(), ['bus', 'class', 'devices', 'kernel', 'module'], 'the root: both (the host has nothing else here)');
  t.same(k.readdir('/class/net').slice(2), ['lo'], 'class/net is the host\'s');
  t.same(k.readdir('/class/mdev_bus').slice(2).sort(), ['hostonly', 'mbochs', 'mdpy', 'mtty'], 'class/mdev_bus: the emulated parents and the host\'s entry');
  t.equal(k.resolve('/bus/mdev/drivers_autoprobe').kind, 'attr', 'a name both have: the emulated node (a file), not the host\'s directory');
  t.equal(k.readlink('/class/net/lo'), '../../devices/virtual/net/lo', 'a host link reads as the host\'s');
  t.equal((await readAll(k, '/devices/virtual/net/lo/mtu')).toString(), '65536\n', 'a host file\'s content');
  writeFileSync(join(root, 'devices/virtual/net/lo/mtu'), '1500\n');
  t.equal((await readAll(k, '/devices/virtual/net/lo/mtu')).toString(), '1500\n', 'read at read time: the host changed it');
  const st = k.getattr('/devices/pci0000:00/0000:00:03.0/vendor');
  t.equal(st.mode & 0o7777, 0o444, 'the host file\'s mode');
  t.equal(st.size, 7, 'its size');
  t.equal(st.ttl, 0, 'and no caching');
  t.equal(k.getattr('/class/mdev_bus/mtty').ttl, undefined, 'an emulated node is cached as before');
  t.equal(k.getattr('/class/mdev_bus').ttl, 0, 'a merged directory is not');
  t.same(k.readdir('/kernel/iommu_groups').slice(2).sort(), ['0', '1'], 'the host\'s IOMMU groups (the samples have none)');
});

t.test('host nodes are never written: EROFS, EACCES where the mode has no write bit; the host files stay', async (t) => {
  const root = fakeHost(t);
  const k = emulation(root).kernfs;
  t.equal(errnoOf(() => k.open('/devices/virtual/net/lo/mtu', O_WRONLY, undefined, ROOT)), Errno.EROFS, 'open for writing: EROFS');
  t.equal(errnoOf(() => k.open('/devices/pci0000:00/0000:00:03.0/vendor', O_WRONLY, undefined, ROOT)), Errno.EACCES, 'a read-only file: EACCES');
  t.equal(errnoOf(() => k.setattr('/devices/virtual/net/lo/mtu', { mode: 0o600 })), Errno.EROFS, 'chmod');
  t.equal(errnoOf(() => k.truncate('/devices/virtual/net/lo/mtu')), Errno.EROFS, 'truncate');
  t.equal(errnoOf(() => k.create('/class/net/new')), Errno.EROFS, 'create in a host directory');
  t.equal(errnoOf(() => k.create('/class/net/lo')), Errno.EEXIST, 'create of a name there: EEXIST');
  t.equal(errnoOf(() => k.mutate('unlink', '/class/net/lo')), Errno.EROFS, 'unlink of a host link');
  t.equal(errnoOf(() => k.mutate('mkdir', '/class/mdev_bus/x')), Errno.EPERM, 'mkdir in an emulated (merged) directory: as sysfs, EPERM');
  t.equal(errnoOf(() => k.mutate('rmdir', '/class/mdev_bus/hostonly')), Errno.EROFS, 'rmdir of a host directory in a merged one');
  t.equal(errnoOf(() => k.open('/devices/virtual/mtty/mtty/mdev_supported_types/mtty-2/create', O_WRONLY, undefined, ROOT)), undefined, 'the emulated files are written as before');
  t.equal((await readAll(k, '/devices/virtual/net/lo/mtu')).toString(), '65536\n', 'the host file is unchanged');
});

t.test('a PCI config: the first 64 bytes for a reader other than root, or one the backend cannot name', async (t) => {
  const root = fakeHost(t);
  const k = emulation(root).kernfs;
  const config = '/devices/pci0000:00/0000:00:03.0/config';
  t.equal((await readAll(k, config, ROOT)).length, 256, 'root: all of it');
  t.equal((await readAll(k, config, NOBODY)).length, 64, 'nobody: the standard header');
  const fh = k.open(config, O_RDONLY);
  t.equal((await k.read(fh, 4096, 0)).length, 64, 'no caller (fuse-native): the header only');
  t.equal((await k.read(fh, 4096, 60)).length, 4, 'a read past it ends at 64');
  k.release(fh);
  t.equal((await readAll(k, '/devices/virtual/net/lo/mtu', NOBODY)).toString(), '65536\n', 'another file reads whole');
});

t.test('what the emulation must not take from the host: clashes refused, stand-ins left out, numbers skipped', async (t) => {
  const root = fakeHost(t);
  const t4 = BUILTIN_PROFILES['nvidia-t4']!;
  const at = (bdf: string): Profile => ({ ...t4, parents: [{ ...t4.parents[0]!, name: bdf, path: `devices/pci0000:00/${bdf}` }] });
  t.throws(() => emulation(root, at('0000:00:03.0')), { constructor: HostClashError, message: HostClashError.describe('the profile', ['0000:00:03.0 (pci)']), clashes: ['0000:00:03.0 (pci)'] }, 'a parent at a host address: refused, naming it and its bus');
  const em = emulation(root, at('0000:00:04.0'));
  t.equal(em.host.model.get(['devices', 'pci0000:00', '0000:00:04.0'])?.pci?.iommuGroup, 2, 'its IOMMU group skips the host\'s 0 and 1');
  t.same(em.kernfs.readdir('/devices/pci0000:00').filter((n) => n.startsWith('0000:')).sort(), ['0000:00:03.0', '0000:00:04.0'], 'the host\'s function beside the emulated one');
  mkdirSync(join(root, 'bus/pci/devices/0000:00:00.0'));
  t.notOk(emulation(root).host.model.get(['devices', 'pci0000:00', '0000:00:00.0']), 'samples: the host bridge the host has is left out');
  t.ok(new Emulation(BUILTIN_PROFILES.samples!, { log: silentLogger }).host.model.get(['devices', 'pci0000:00', '0000:00:00.0']), 'and is there without --host-sysfs');
  await t.rejects(em.addParent({ ...t4.parents[0]!, name: '0000:00:03.0', path: 'devices/pci0000:00/0000:00:03.0' }), { constructor: HostClashError, message: /0000:00:03\.0 \(pci\)/ }, 'a hot-plugged parent at a host address: refused');
  t.notOk(em.core.parents.has('0000:00:03.0'), 'and nothing of it registered');
});

const MTU = '/devices/virtual/net/lo/mtu';
const AVAILABLE = '/devices/virtual/mtty/mtty/mdev_supported_types/mtty-2/available_instances';

t.test('read fault rules act on host files as on emulated ones: errno, content, a hang that holds only its read', async (t) => {
  const root = fakeHost(t);
  const em = emulation(root);
  const k = em.kernfs;
  const fired: string[] = [];
  em.faults.onFire((f) => fired.push(`${f.action} ${f.ctx.path}`));
  // The path a rule's glob sees is the file's own, as the kernel resolved it (the class link followed).
  em.faults.add({ id: 'eio', match: { op: 'read', path: '/sys/class/net/*/mtu' }, action: { kind: 'errno', errno: 'EIO' }, trigger: { times: 1 } });
  t.equal((await readAll(k, MTU)).toString(), '65536\n', 'a glob on the class link\'s path does not match the file\'s own path');
  t.same(fired, [], 'and nothing fired');
  em.faults.clear();
  em.faults.add({ id: 'eio', match: { op: 'read', path: '/sys/devices/**/net/*/mtu' }, action: { kind: 'errno', errno: 'EIO' }, trigger: { times: 1 } });
  await t.rejects(readAll(k, MTU), { name: 'MdevError', errno: Errno.EIO }, 'an errno rule on the canonical path: EIO');
  t.same(fired, ['errno /sys/devices/virtual/net/lo/mtu'], 'fired once, with the canonical path (the journal hears it)');
  t.equal((await readAll(k, MTU)).toString(), '65536\n', 'times 1: the next read reads the host');

  em.faults.add({ match: { op: 'read', attr: 'mtu' }, action: { kind: 'content', content: '1234\n' } });
  const fh = k.open(MTU, O_RDONLY, undefined, ROOT);
  t.equal((await k.read(fh, 2, 0)).toString(), '12', 'content by the attribute\'s name');
  t.equal((await k.read(fh, 10, 2)).toString(), '34\n', 'the rest of that content at the next offset');
  k.release(fh);
  em.faults.clear();

  em.faults.add({ id: 'hang', match: { op: 'read', attr: 'mtu' }, action: { kind: 'hang' } });
  let answered = false;
  const held = readAll(k, MTU).then((b) => ((answered = true), b.toString()));
  await new Promise((r) => setImmediate(r));
  t.equal(em.faults.get('hang')?.hung, 1, 'the host read hangs on the rule');
  const fh2 = k.open(AVAILABLE, O_RDONLY, undefined, ROOT);
  const emulated = k.read(fh2, 100, 0);
  k.release(fh2);
  t.notOk(emulated instanceof Promise, 'an emulated read meanwhile: answered at once, synchronously');
  t.equal(emulated.toString(), '12\n', 'with its content');
  t.notOk(answered, 'the held read is not answered');
  t.equal(em.faults.release('hang'), 1, 'released');
  t.equal(await held, '65536\n', 'then it reads the host');
});
