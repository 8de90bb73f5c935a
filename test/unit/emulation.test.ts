import t from 'tap';
import { BUILTIN_PROFILES } from '../../src/drivers/profile';
import type { Profile } from '../../src/drivers/profile-types';
import { Emulation } from '../../src/emulation';
import { silentLogger } from '../../src/base/log';
import type { Kernfs } from '../../src/sysfs/kernfs';
import { type TreeFs, kernfsTree } from '../helpers/invariants';

// reset() puts an emulation back where its profile starts it, whatever was done to it since,
// through the kernel's paths (the events say what went and what came back).

/** Every path of the tree with what it is: a directory, a link's target, a file's content (or its errno). */
function listing(tree: TreeFs): Map<string, string> {
  const m = new Map<string, string>();
  const walk = (p: string) => {
    const kind = tree.lstat(p);
    if (kind === 'link') return m.set(p, `-> ${tree.readlink(p)}`);
    if (kind === 'file') {
      let text: string;
      try {
        text = tree.readFile(p);
      } catch (err) {
        text = `! ${(err as { code?: string }).code ?? (err as Error).message}`;
      }
      return m.set(p, text);
    }
    m.set(p, '/');
    for (const n of tree.readdir(p).sort()) walk(p === '/' ? `/${n}` : `${p}/${n}`);
  };
  walk('/');
  return m;
}

async function write(k: Kernfs, path: string, value: string): Promise<string> {
  const fh = k.open(path, 1);
  try {
    await k.write(fh, Buffer.from(value));
    return 'ok';
  } catch (err) {
    return (err as Error).message;
  } finally {
    k.release(fh);
  }
}

const uuid = (n: number) => `00000000-0000-0000-0000-${n.toString(16).padStart(12, '0')}`;
const copy = (p: Profile): Profile => JSON.parse(JSON.stringify(p)) as Profile;

/** Each type with room gets a device; each PF with VFs loses them; each PCI function leaves its driver. */
async function disturb(em: Emulation): Promise<void> {
  const k = em.kernfs;
  let n = 1;
  for (const parent of [...em.core.parents.values()]) {
    for (const type of parent.types.values()) {
      if (em.core.availableInstances(type) > 0) await em.core.create(type, uuid(n++)).catch(() => undefined);
    }
  }
  for (const dev of [...em.host.model.devices.values()]) {
    const at = '/' + dev.path.join('/');
    if (dev.pci?.sriov) await write(k, `${at}/sriov_numvfs`, '0');
  }
  for (const dev of [...em.host.model.devices.values()]) {
    if (dev.driver && dev.driver.bindAttrs && dev.pci) await write(k, `/bus/pci/drivers/${dev.driver.name}/unbind`, dev.name);
  }
  // A parent of another profile, added at runtime.
  const other = em.profile.parents.some((p) => p.name === 'mtty') ? BUILTIN_PROFILES.gvt! : BUILTIN_PROFILES.samples!;
  await em.addParent(copy(other).parents[0]!);
}

for (const name of Object.keys(BUILTIN_PROFILES)) {
  t.test(`reset: ${name} is back to its start state`, async (t) => {
    const em = new Emulation(copy(BUILTIN_PROFILES[name]!), { log: silentLogger, clock: { sleep: () => Promise.resolve() } });
    await em.ready;
    const start = listing(kernfsTree(em.kernfs));
    await disturb(em);
    t.not(listing(kernfsTree(em.kernfs)).size, 0);
    t.notSame(listing(kernfsTree(em.kernfs)), start, 'the tree changed');
    const seen: Record<string, string>[] = [];
    const before = em.uevents.lastSeqnum;
    em.uevents.subscribe((ev) => void seen.push(ev));
    await em.reset();
    const after = listing(kernfsTree(em.kernfs));
    const diff = [...new Set([...start.keys(), ...after.keys()])].filter((p) => start.get(p) !== after.get(p));
    t.same(diff.map((p) => `${p}: ${start.get(p)} / ${after.get(p)}`), [], 'every path as at start');
    t.ok(seen.length > 0 && Number(seen[0]!.SEQNUM) === before + 1, 'the events go on from the last SEQNUM');
    t.ok(seen.some((e) => e.ACTION === 'remove') && seen.some((e) => e.ACTION === 'add'), 'what goes is removed, what comes back added');
    // Twice in a row: nothing to undo the second time, same tree.
    await em.reset();
    t.same(listing(kernfsTree(em.kernfs)), start, 'a second reset changes nothing');
  });
}

t.test('reset of an untouched emulation sends the removals and additions of everything, and comes back the same', async (t) => {
  const em = new Emulation(copy(BUILTIN_PROFILES.samples!), { log: silentLogger });
  await em.ready;
  const start = listing(kernfsTree(em.kernfs));
  const seen: string[] = [];
  em.uevents.subscribe((ev) => void seen.push(`${ev.ACTION} ${ev.DEVPATH}`));
  await em.reset();
  t.same(listing(kernfsTree(em.kernfs)), start);
  t.ok(seen.includes('change /devices/virtual/mtty/mtty') && seen.includes('remove /module/mtty') && seen.includes('add /module/mtty'), seen.join('\n'));
});

t.test('runtime changes are serialized: a remove-parent queued behind a reset sees the reset tree', async (t) => {
  const em = new Emulation(copy(BUILTIN_PROFILES.samples!), { log: silentLogger });
  await em.ready;
  const reset = em.reset();
  const removed = em.removeParent('mtty');
  await Promise.all([reset, removed]);
  t.same([...em.core.parents.keys()], ['mdpy', 'mbochs']);
  await t.rejects(em.removeParent('mtty'), { message: /no parent mtty/ });
});
