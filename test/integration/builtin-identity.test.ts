import t from 'tap';
import { BUILTINS } from '../../src/drivers/builtin/index';
import { hexValue } from '../../src/drivers/placement';
import { execWith } from '../helpers/hw';

// Tools pick the vGPU types to create by the GPU's PCI device id (NVIDIA's vgpuConfig.xml lists
// each type under the device ids that take it), so a built-in's identity and its type list must
// be one card's (issue #16: nvidia-v100 was 10de:1db6, the 32 GB card, with the 16 GB card's list).
// Each PCI mdev parent of every built-in: what pciutils' pci.ids calls its vendor:device, and the
// prefix every type name of that card has.
const IDENTITY: Record<string, { card: string; types: string }> = {
  '10de:1eb8': { card: 'Tesla T4', types: 'GRID T4-' },
  '10de:1db4': { card: 'Tesla V100 PCIe 16GB', types: 'GRID V100-' },
  '10de:1db6': { card: 'Tesla V100 PCIe 32GB', types: 'GRID V100D-' },
  '10de:2236': { card: 'A10', types: 'NVIDIA A10-' },
  '10de:26b9': { card: 'L40S', types: 'NVIDIA L40S-' },
  // intel_gvt_init_vgpu_types: GVTg_V4_* on Gen8 (Broadwell), GVTg_V5_* on Gen9 (Kaby Lake: 5912).
  '8086:5912': { card: 'HD Graphics 630', types: 'GVTg_V5_' },
};

const hex4 = (v: string | number) => hexValue(v).toString(16).padStart(4, '0');

const withPci = Object.entries(BUILTINS).filter(([, p]) => p.parents.some((x) => x.pci));

t.test('every built-in on PCI is one card: its PCI id, its name in pci.ids and its type names agree', async (t) => {
  t.ok(withPci.length >= 5);
  for (const [name, profile] of withPci) {
    t.equal(profile.parents.length, 1, `${name}: one GPU, so every type listed is its`);
    const r = execWith(name, 'bash', '-c', 'lspci -nn; echo ---; mdevctl types; echo ---; cat /sys/bus/pci/devices/*/nvidia/creatable_vgpu_types 2>/dev/null; true');
    t.equal(r.status, 0, `${name}: ${r.stderr}`);
    const [lspci, mdevctl, creatable] = r.stdout.split('---\n') as [string, string, string];
    for (const parent of profile.parents.filter((p) => p.pci)) {
      const id = `${hex4(parent.pci!.vendor)}:${hex4(parent.pci!.device)}`;
      const want = IDENTITY[id];
      if (!t.ok(want, `${name}: ${id} is a card this test knows`)) continue;
      const line = lspci.split('\n').find((l) => l.startsWith(`${parent.name.slice(5)} `));
      // "NVIDIA Corporation TU104GL [Tesla T4] [10de:1eb8]", "Intel Corporation HD Graphics 630 [8086:5912]"
      t.match(line, new RegExp(`[ []${want.card.replace(/ /g, ' ')}\\]? \\[${id}\\]`), `${name}: lspci -nn names ${parent.name} as pci.ids does`);
      // mdev types as mdevctl shows them (Name:; on the PF or its VFs), or the VFs' creatable lists (vendor-specific VFIO).
      const names = [...mdevctl.matchAll(/^ {4}Name: (.*)$/gm), ...creatable.matchAll(/^\d+ +: (.*)$/gm)].map((m) => m[1]!);
      t.ok(names.length > 0, `${name}: ${parent.name} shows its types`);
      t.same(names.filter((n) => !n.startsWith(want.types)), [], `${name}: every type of ${want.card} is ${want.types}*`);
    }
  }
});
