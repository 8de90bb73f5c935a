import t from 'tap';
import { Ida } from '../../src/base/ida';
import { Emulation } from '../../src/emulation';
import { BUILTIN_PROFILES } from '../../src/drivers/profile';
import type { Profile } from '../../src/drivers/profile-types';
import { silentLogger } from '../../src/base/log';

// IOMMU group numbers a profile names (a recorded host's) are the functions' own, whatever the
// order they are placed in; everything else gets the lowest number left, as the kernel's IDA.

t.test('Ida: reserve holds a number back from alloc for its take; take of a free number; free', async (t) => {
  const ida = new Ida();
  t.ok(ida.reserve(1));
  t.notOk(ida.reserve(1), 'held already');
  t.equal(ida.alloc(), 0);
  t.equal(ida.alloc(), 2, 'the held number is skipped');
  t.ok(ida.take(1), 'taken by whom it was held for');
  t.notOk(ida.take(1), 'then it is in use');
  t.notOk(ida.take(2), 'an allocated number cannot be taken');
  t.ok(ida.take(9), 'a free one can');
  t.equal(ida.alloc(), 3);
  ida.free(1);
  t.equal(ida.alloc(), 1, 'freed, it is the lowest free again');
  t.ok(ida.reserve(20));
  ida.free(20);
  t.ok(ida.take(20), 'a held number that was freed is free');
});

function a10(): Profile {
  return JSON.parse(JSON.stringify(BUILTIN_PROFILES['nvidia-a10'])) as Profile;
}

const groupsOf = (profile: Profile) => {
  const em = new Emulation(profile, { log: silentLogger });
  const model = em.host.model;
  const pf = model.get(profile.parents[0]!.path.split('/'))!;
  return { em, pf: pf.pci!.iommuGroup, vfs: pf.pci!.sriov!.vfs.map((vf) => vf.iommuGroup) };
};

t.test('a profile without numbers: the PF first, then its VFs, from 0', async (t) => {
  const { pf, vfs } = groupsOf(a10());
  t.equal(pf, 0);
  t.same(vfs, Array.from({ length: 24 }, (_, i) => i + 1));
});

t.test('recorded numbers are kept, and placed functions without one go around them', async (t) => {
  const p = a10();
  p.parents[0]!.pci!.iommuGroup = 3;
  p.parents[0]!.pci!.sriov!.numVfs = 4;
  p.parents[0]!.pci!.sriov!.vfIommuGroups = [40, 0, 41]; // VF 3 has none: it gets the lowest free
  // A host bridge placed after the GPU, with a number the GPU would otherwise have taken.
  p.pciDevices = [{ name: '0000:00:00.0', path: 'devices/pci0000:00/0000:00:00.0', pci: { vendor: '0x8086', device: '0x29c0', class: '0x060000', iommuGroup: 1 } }];
  const { em, pf, vfs } = groupsOf(p);
  t.equal(pf, 3);
  t.same(vfs, [40, 0, 41, 2], 'VF 3 skips 0 and 1 (named for others) and takes 2');
  const bridge = em.host.model.get(['devices', 'pci0000:00', '0000:00:00.0'])!;
  t.equal(bridge.pci!.iommuGroup, 1);
  // An mdev created now gets the lowest free number too.
  await em.ready;
  const parent = em.core.parents.get('0000:00:06.4')!;
  const type = [...parent.types.values()][0]!;
  const dev = await em.core.create(type, '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001');
  t.equal(dev.iommuGroup, 4);
});

t.test('a host bridge without a number stays without a group, as before', async (t) => {
  const p = a10();
  p.pciDevices = [{ name: '0000:00:00.0', path: 'devices/pci0000:00/0000:00:00.0', pci: { vendor: '0x8086', device: '0x29c0', class: '0x060000' } }];
  const em = new Emulation(p, { log: silentLogger });
  t.equal(em.host.model.get(['devices', 'pci0000:00', '0000:00:00.0'])!.pci!.iommuGroup, undefined);
});
