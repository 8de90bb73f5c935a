import type { Emulation } from '../emulation';

/** GET /v1/state: what the emulation holds now, as docs/control-api.md describes it. */
export function stateOf(em: Emulation): Record<string, unknown> {
  const { core, host } = em;
  const parents = [...core.parents.values()].map((p) => ({
    name: p.name,
    path: p.placement.path.join('/'),
    driver: p.driver.name,
    module: p.driver.module,
    types: [...p.types.values()].map((t) => ({
      /** Its directory in mdev_supported_types (mtty-2). */
      name: t.id,
      ...(t.name !== undefined ? { prettyName: t.name } : {}),
      deviceApi: t.deviceApi,
      available_instances: core.availableInstances(t),
      devices: [...t.devices.keys()],
    })),
  }));
  const devices = [...core.devices.values()].map((d) => ({
    uuid: d.uuid,
    parent: d.parent.name,
    type: d.type.id,
    state: d.state,
    path: [...d.parent.placement.path, d.uuid].join('/'),
    ...(d.iommuGroup !== undefined ? { iommuGroup: d.iommuGroup } : {}),
    ...(d.vfioIndex !== undefined ? { vfio: d.vfioIndex } : {}),
  }));
  const groups = new Map<number, string[]>();
  const inGroup = (n: number | undefined, path: string) => n !== undefined && groups.set(n, [...(groups.get(n) ?? []), path]);
  for (const d of core.iommuGroups.values()) inGroup(d.iommuGroup, [...d.parent.placement.path, d.uuid].join('/'));
  const hostDevices = [...host.model.devices.values()]
    .filter((d) => d.bus)
    .map((d) => {
      inGroup(d.pci?.iommuGroup, d.path.join('/'));
      return {
        name: d.name,
        path: d.path.join('/'),
        bus: d.bus!.name,
        ...(d.driver ? { driver: d.driver.name } : {}),
        ...(d.pci?.iommuGroup !== undefined ? { iommuGroup: d.pci.iommuGroup } : {}),
        ...(d.vfioIndex !== undefined ? { vfio: d.vfioIndex } : {}),
      };
    });
  const sriov = [...host.model.devices.values()].flatMap((pf) => {
    const s = pf.pci?.sriov;
    if (!s) return [];
    const vfs = s.vfs.map((vf) => {
      const dev = host.model.get([...pf.path.slice(0, -1), vf.name]);
      const attr = (name: string) => dev?.driverAttrs.find((a) => a.path === `nvidia/${name}`)?.show?.().trim();
      const current = attr('current_vgpu_type');
      return {
        name: vf.name,
        ...(dev?.driver ? { driver: dev.driver.name } : {}),
        ...(vf.iommuGroup !== undefined ? { iommuGroup: vf.iommuGroup } : {}),
        ...(current !== undefined ? { current_vgpu_type: current } : {}),
      };
    });
    return [{ pf: pf.name, totalVfs: s.totalVfs, numVfs: s.numVfs, vfs }];
  });
  return {
    seqnum: em.uevents.lastSeqnum,
    abi: em.abi.version,
    parents,
    devices,
    hostDevices,
    iommuGroups: [...groups.entries()].sort((a, b) => a[0] - b[0]).map(([group, members]) => ({ group, devices: members })),
    sriov,
    faults: em.faults.list(),
  };
}
