import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { BUILTIN_PROFILES } from '../../src/drivers/profile';
import type { Profile } from '../../src/drivers/profile-types';
import { CLI, backendArgs, cliEnv, scratch, startDaemon } from '../helpers/daemon';

// A recorded host's IOMMU group numbers: the profile names them for its PCI functions (PF, VFs,
// a host bridge), the mount shows them where the kernel does (iommu_group links,
// kernel/iommu_groups, lspci -v's "IOMMU group"), mdevs get the lowest numbers left, and
// `mdevfs record` of such a mount writes the same numbers back.

const work = scratch('mdevfs-groups-');
const PF = '0000:00:06.0';
const VFS = ['0000:00:06.4', '0000:00:06.5', '0000:00:06.6', '0000:00:06.7'];
const BRIDGE = '0000:00:00.0';

function profile(): Profile {
  const p = JSON.parse(JSON.stringify(BUILTIN_PROFILES['nvidia-a10'])) as Profile;
  const pci = p.parents[0]!.pci!;
  t.equal(p.parents[0]!.name, PF);
  pci.iommuGroup = 37;
  pci.sriov!.numVfs = 4;
  pci.sriov!.vfIommuGroups = [12, 13, 50, 51];
  p.pciDevices = [{ name: BRIDGE, path: `devices/pci0000:00/${BRIDGE}`, pci: { vendor: '0x8086', device: '0x29c0', class: '0x060000', iommuGroup: 5 } }];
  return p;
}

const file = join(work, 'groups.json');
writeFileSync(file, JSON.stringify(profile(), null, 2));

function exec(script: string): { out: string; err: string; code: number | null } {
  const r = spawnSync(process.execPath, [CLI, 'exec', ...backendArgs, '--profile', file, '--', 'bash', '-c', script], {
    encoding: 'utf8',
    timeout: 60000,
    env: cliEnv(),
  });
  return { out: r.stdout, err: r.stderr, code: r.status };
}

t.test('the links, kernel/iommu_groups and lspci show the named groups; an mdev takes the lowest free', async (t) => {
  const uuid = '6f1b7a3e-2c4d-4e8f-9a0b-1c2d3e4f5a6b';
  const r = exec(
    [
      `for f in ${PF} ${VFS.join(' ')} ${BRIDGE}; do echo "$f $(readlink /sys/bus/pci/devices/$f/iommu_group)"; done`,
      'echo "groups: $(ls /sys/kernel/iommu_groups | sort -n | tr "\\n" " ")"',
      'echo "in 37: $(ls /sys/kernel/iommu_groups/37/devices)"',
      `lspci -v -s ${PF.slice(5)} | grep "IOMMU group"`,
      `lspci -v -s ${BRIDGE.slice(5)} | grep "IOMMU group"`,
      `t=$(ls /sys/bus/pci/devices/${VFS[0]}/mdev_supported_types | head -1)`,
      `echo ${uuid} > /sys/bus/pci/devices/${VFS[0]}/mdev_supported_types/$t/create || echo "create failed"`,
      `echo "mdev $(readlink /sys/bus/mdev/devices/${uuid}/iommu_group)"`,
      'echo "groups: $(ls /sys/kernel/iommu_groups | sort -n | tr "\\n" " ")"',
    ].join('; '),
  );
  t.equal(r.code, 0, r.err);
  const lines = r.out.split('\n');
  t.same(lines.slice(0, 6), [
    `${PF} ../../../kernel/iommu_groups/37`,
    `${VFS[0]} ../../../kernel/iommu_groups/12`,
    `${VFS[1]} ../../../kernel/iommu_groups/13`,
    `${VFS[2]} ../../../kernel/iommu_groups/50`,
    `${VFS[3]} ../../../kernel/iommu_groups/51`,
    `${BRIDGE} ../../../kernel/iommu_groups/5`,
  ]);
  t.equal(lines[6], 'groups: 5 12 13 37 50 51 ');
  t.equal(lines[7], `in 37: ${PF}`);
  t.match(lines[8], /, IOMMU group 37$/, 'lspci -v of the PF (pciutils prints it in its Flags line)');
  t.match(lines[9], /, IOMMU group 5$/, 'lspci -v of the host bridge');
  t.equal(lines[10], 'mdev ../../../../kernel/iommu_groups/0', 'the mdev (below its VF) takes the lowest free number');
  t.equal(lines[11], 'groups: 0 5 12 13 37 50 51 ');
});

t.test('mdevfs record of that mount writes the same numbers back', async (t) => {
  const d = await startDaemon({ profile: file, logLevel: 'warn' });
  t.teardown(() => d.stop());
  const out = join(work, 'recorded.json');
  const r = spawnSync(process.execPath, [CLI, 'record', d.dir, '-o', out], { encoding: 'utf8', timeout: 60000, env: cliEnv() });
  t.equal(r.status, 0, r.stderr);
  const rec = JSON.parse(readFileSync(out, 'utf8')) as Profile;
  const pci = rec.parents.find((p) => p.name === PF)?.pci;
  t.equal(pci?.iommuGroup, 37);
  t.same(pci?.sriov?.vfIommuGroups, [12, 13, 50, 51]);
  t.same(
    rec.pciDevices?.map((b) => [b.name, b.pci.iommuGroup]),
    [[BRIDGE, 5]],
  );
});
