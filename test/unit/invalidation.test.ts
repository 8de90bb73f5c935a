import t from 'tap';
import { buildEmulation } from '../../src/daemon';
import { registerProfileParent } from '../../src/drivers/profile';
import { GVT, SAMPLES } from '../../src/drivers/samples';
import { silentLogger } from '../../src/log';
import type { Kernfs } from '../../src/sysfs/kernfs';

// A backend that lets the kernel cache lookups relies on these invalidations being complete:
// every path that disappears must be covered (itself or an ancestor) by an invalidated entry,
// and every directory whose st_nlink changes must be named in attrs.
function snapshot(k: Kernfs): Map<string, number> {
  const all = new Map<string, number>();
  const walk = (path: string) => {
    const st = k.getattr(path);
    all.set(path, st.nlink);
    if ((st.mode & 0o170000) !== 0o040000) return;
    for (const name of k.readdir(path)) if (name !== '.' && name !== '..') walk(path === '/' ? `/${name}` : `${path}/${name}`);
  };
  walk('/');
  return all;
}

const covered = (path: string, entries: Set<string>) => {
  for (let p = path; p !== ''; p = p.slice(0, p.lastIndexOf('/'))) if (entries.has(p)) return true;
  return false;
};

t.test('every vanished path and every changed nlink is invalidated', async (t) => {
  const { core, kernfs, clock } = buildEmulation(SAMPLES, { log: silentLogger });
  const entries = new Set<string>();
  const attrs = new Set<string>();
  kernfs.onInvalidate((inv) => {
    inv.entries.forEach((e) => entries.add(e));
    inv.attrs.forEach((a) => attrs.add(a));
  });
  const type = (p: string, id: string) => core.parents.get(p)!.types.get(id)!;
  const U = (n: number) => `00000000-0000-0000-0000-00000000000${n}`;
  const steps: [string, () => Promise<unknown>][] = [
    ['create mtty', () => core.create(type('mtty', 'mtty-2'), U(1))],
    ['create mdpy', () => core.create(type('mdpy', 'mdpy-vga'), U(2))],
    ['create mbochs', () => core.create(type('mbochs', 'mbochs-large'), U(3))],
    ['remove mdpy', () => core.remove(core.devices.get(U(2))!)],
    ['unbind mtty', () => core.unbindStore('mtty', Buffer.from(U(1) + '\n'))],
    ['remove unbound', () => core.remove(core.devices.get(U(1))!)],
    ['add a PCI parent', async () => registerProfileParent(core, GVT.parents[0]!, clock)],
    ['create on it', () => core.create(type('0000:00:02.0', 'i915-GVTg_V5_4'), U(4))],
    ['unregister it', () => core.unregisterParent('0000:00:02.0')],
    ['unregister mbochs with a device', () => core.unregisterParent('mbochs')],
  ];
  for (const [name, step] of steps) {
    entries.clear();
    attrs.clear();
    const before = snapshot(kernfs);
    await step();
    const after = snapshot(kernfs);
    const vanished = [...before.keys()].filter((p) => !after.has(p) && !covered(p, entries));
    t.same(vanished, [], `${name}: vanished paths are invalidated`);
    const nlinkChanged = [...before].filter(([p, n]) => after.has(p) && after.get(p) !== n && !attrs.has(p)).map(([p]) => p);
    t.same(nlinkChanged, [], `${name}: changed st_nlink is invalidated`);
  }
});
