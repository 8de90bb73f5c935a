import t from 'tap';
import { Errno, MdevError } from '../../src/base/errno';
import { Emulation } from '../../src/emulation';
import { SAMPLES } from '../../src/drivers/samples';
import { silentLogger } from '../../src/base/log';
import { type TreeFs, checkInvariants, kernfsTree } from '../helpers/invariants';

// The checker must catch what it claims to: a real tree copied into memory passes, and each
// kind of damage done to the copy is reported.

type Entry = { dir: true } | { link: string } | { file: string };

function snapshot(tree: TreeFs): Map<string, Entry> {
  const m = new Map<string, Entry>();
  const walk = (p: string) => {
    const kind = tree.lstat(p);
    if (kind === 'link') return m.set(p, { link: tree.readlink(p) });
    if (kind === 'file') {
      let text = '';
      try {
        text = tree.readFile(p);
      } catch {
        // write-only attributes
      }
      return m.set(p, { file: text });
    }
    m.set(p, { dir: true });
    for (const n of tree.readdir(p)) walk(p === '/' ? `/${n}` : `${p}/${n}`);
  };
  walk('/');
  return m;
}

function memTree(m: Map<string, Entry>): TreeFs {
  const get = (p: string) => {
    const e = m.get(p === '' ? '/' : p);
    if (!e) throw new MdevError(Errno.ENOENT, p);
    return e;
  };
  return {
    readdir: (p) => {
      get(p);
      const prefix = p === '/' ? '/' : `${p}/`;
      return [...m.keys()].filter((k) => k !== '/' && k.startsWith(prefix) && !k.slice(prefix.length).includes('/')).map((k) => k.slice(prefix.length));
    },
    readlink: (p) => (get(p) as { link: string }).link,
    readFile: (p) => (get(p) as { file: string }).file,
    lstat: (p) => {
      const e = get(p);
      return 'dir' in e ? 'dir' : 'link' in e ? 'link' : 'file';
    },
  };
}

const U1 = '00000000-0000-0000-0000-000000000001';
const U2 = '00000000-0000-0000-0000-000000000002';
const MTTY = '/devices/virtual/mtty/mtty';
const MDPY = '/devices/virtual/mdpy/mdpy';

t.test('the checker passes a real tree and reports each kind of damage', async (t) => {
  const { core, kernfs } = new Emulation(SAMPLES, { log: silentLogger });
  await core.create(core.parents.get('mtty')!.types.get('mtty-2')!, U1);
  await core.create(core.parents.get('mdpy')!.types.get('mdpy-vga')!, U2);
  const opts = { abi: '6.1' as const, quiet: true, profile: SAMPLES };
  const good = snapshot(kernfsTree(kernfs));
  t.same(checkInvariants(memTree(good), { ...opts, core, errors: { create: { EEXIST: 3, ENOSPC: 1 }, remove: { EAGAIN: 1 } } }).problems, []);

  const damaged = (name: string, damage: (m: Map<string, Entry>) => void, expected: RegExp, extra: object = {}) => {
    const m = new Map(good);
    damage(m);
    const { problems } = checkInvariants(memTree(m), { ...opts, ...extra });
    t.match(problems.join('\n'), expected, name);
  };
  const copyDir = (m: Map<string, Entry>, from: string, to: string) => {
    for (const [k, v] of good) if (k === from || k.startsWith(`${from}/`)) m.set(to + k.slice(from.length), v);
  };
  damaged('a UUID under two parents', (m) => copyDir(m, `${MTTY}/${U1}`, `${MDPY}/${U1}`), /appears under two parents/);
  damaged('a type that does not list its device', (m) => m.delete(`${MTTY}/mdev_supported_types/mtty-2/devices/${U1}`), /mtty-2\/devices lists \[\] but its devices are/);
  damaged('a dangling link', (m) => m.set(`${MTTY}/${U1}/driver`, { link: '../../../../bus/mdev/drivers/nope' }), /driver -> .* dangles/);
  damaged('a link out of the tree', (m) => m.set(`${MTTY}/${U1}/subsystem`, { link: '../../../../../../etc' }), /leaves the tree/);
  damaged('two devices, one iommu group', (m) => m.set(`${MDPY}/${U2}/iommu_group`, { ...(m.get(`${MTTY}/${U1}/iommu_group`) as { link: string }) }), /shares/);
  damaged('an empty iommu group', (m) => m.set('/kernel/iommu_groups/7', { dir: true }).set('/kernel/iommu_groups/7/devices', { dir: true }), /iommu group 7 belongs to no device/);
  damaged('a vfio-dev of no device', (m) => m.set('/class/vfio-dev/vfio9', { link: '../../kernel/iommu_groups' }), /vfio9 belongs to no device/);
  damaged("a vfio-dev whose group has no VFIO group device", (m) => {
    const g = (m.get(`${MTTY}/${U1}/iommu_group`) as { link: string }).link.split('/').pop()!;
    m.delete(`/class/vfio/${g}`);
    for (const k of [...m.keys()]) if (k.startsWith(`/devices/virtual/vfio/${g}`)) m.delete(k);
  }, /has vfio\d+ but its IOMMU group \d+ no VFIO group device/);
  damaged('a VFIO group device of no IOMMU group', (m) => m.set('/class/vfio/9', { link: '../../devices/virtual/vfio/9' }), /class\/vfio\/9: no IOMMU group 9[^]*list different groups/);
  damaged('wrong available_instances', (m) => m.set(`${MTTY}/mdev_supported_types/mtty-1/available_instances`, { file: '21\n' }), /mtty-1\/available_instances reads "21\\n", the pool model says 22/);
  damaged('an incomplete device when quiet', (m) => m.delete(`${MTTY}/${U1}/mdev_type`), /incomplete when quiet/);
  damaged('a bus/mdev/devices entry without its device', (m) => m.delete(`/bus/mdev/devices/${U2}`), /missing from bus\/mdev\/devices/);
  damaged('an errno the spec does not allow', () => undefined, /create failed with EPERM/, { errors: { create: { EPERM: 1 } } });
  damaged('EBUSY from a 6.1 remove', () => undefined, /remove failed with EBUSY/, { errors: { remove: { EBUSY: 1 } } });

  // In-process, the core itself: a device still reserved when the caller says all is quiet.
  const clockless = new Emulation({ parents: [{ ...SAMPLES.parents[0]!, faults: { createDelayMs: 50 } }] }, { log: silentLogger });
  const pending = clockless.core.create(clockless.core.parents.get('mtty')!.types.get('mtty-1')!, U1);
  t.match(checkInvariants(kernfsTree(clockless.kernfs), { ...opts, core: clockless.core }).problems.join('\n'), /is reserved when quiet/);
  t.same(checkInvariants(kernfsTree(clockless.kernfs), { abi: '6.1', quiet: false }).problems, [], 'in flight, not quiet: consistent');
  await pending;
});
