import { Errno, fail } from '../base/errno';
import type { MdevDevice } from '../core/mdev-objects';
import type { DeviceEvent } from '../devices/device-model';
import { type InvalidationSet, type TreeContext, numbered } from './context';
import { type DirNode, attr, dir, link, ro } from './nodes';

/** kernel/iommu_groups/: a directory per group, named by its number (00 is no entry). */
export const IOMMU_GROUPS = numbered(['kernel', 'iommu_groups']);

/**
 * kernel/iommu_groups/: the host devices' groups (drawn by the driver core, rendered by buses.ts)
 * and the bound mdevs' noiommu groups, one numbering; with what a group's coming and going
 * invalidates, from the same listing (IOMMU_GROUPS).
 */
export class IommuGroups {
  constructor(private readonly ctx: TreeContext) {}

  dir(): DirNode {
    return this.ctx.cached(this, IOMMU_GROUPS.at(), () => {
      const { core, buses } = this.ctx;
      return IOMMU_GROUPS.dir(
        () => [...buses.iommuGroups().keys(), ...core.iommuGroups.keys()],
        (n) => {
          const host = buses.iommuGroups().get(n);
          if (host) return buses.iommuGroupDir(host);
          const dev = core.iommuGroups.get(n);
          return dev && this.mdevGroupDir(dev, n);
        },
        { subdirs: () => core.iommuGroups.size + buses.iommuGroups().size },
      );
    });
  }

  /** The noiommu group of a bound mdev (vfio_noiommu_group_alloc): its one device, no default domain. */
  private mdevGroupDir(dev: MdevDevice, group: number): DirNode {
    const alive = () => this.ctx.core.iommuGroups.get(group) === dev;
    return dir(
      {
        devices: () => dir({ [dev.uuid]: () => link(this.ctx.devicePath(dev), alive) }, alive),
        name: () => ro('vfio-noiommu\n', alive),
        reserved_regions: () => ro('', alive),
        type: () => attr(0o644, () => 'unknown\n', () => fail(Errno.EINVAL, 'no default domain'), alive),
      },
      alive,
    );
  }

  /** An mdev's group came (the listing's count changed) or went with its binding. */
  invalidate(group: number | undefined, shown: boolean, inv: InvalidationSet): void {
    inv.changed(IOMMU_GROUPS.at());
    if (!shown && group !== undefined) inv.gone(IOMMU_GROUPS.entry(group));
  }

  /** A host device came or went (its group with it), or its driver did (its group's `type` refuses a change while bound). */
  hostDevice(ev: DeviceEvent, inv: InvalidationSet): void {
    const group = ev.kind === 'device' || ev.kind === 'bind' ? ev.dev.pci?.iommuGroup : undefined;
    if (ev.kind === 'bind' && group !== undefined) inv.changed(IOMMU_GROUPS.entry(group));
    if (ev.kind !== 'device') return;
    inv.changed(IOMMU_GROUPS.at());
    if (!ev.present && group !== undefined) inv.gone(IOMMU_GROUPS.entry(group));
  }
}
