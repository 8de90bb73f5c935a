import { Errno, fail } from '../base/errno';
import type { MdevDevice } from '../core/mdev-objects';
import { type InvalidationSet, type TreeContext, at } from './context';
import { type DirNode, attr, dir, dynDir, link, ro } from './nodes';

/**
 * kernel/iommu_groups/: the host devices' groups (drawn by the driver core, rendered by buses.ts)
 * and the bound mdevs' noiommu groups, one numbering; with what an mdev group's going invalidates.
 */
export class IommuGroups {
  constructor(private readonly ctx: TreeContext) {}

  dir(): DirNode {
    return this.ctx.cached(this, 'kernel/iommu_groups', () => {
      const { core, buses } = this.ctx;
      return dynDir(
        () => [...buses.iommuGroups().keys(), ...core.iommuGroups.keys()].map(String),
        (name) => {
          const n = /^(0|[1-9]\d*)$/.test(name) ? Number(name) : undefined; // 00 is ENOENT
          const host = n === undefined ? undefined : buses.iommuGroups().get(n);
          if (host) return buses.iommuGroupDir(host);
          const dev = n === undefined ? undefined : core.iommuGroups.get(n);
          return dev && this.mdevGroupDir(dev, name);
        },
        undefined,
        () => core.iommuGroups.size + buses.iommuGroups().size,
      );
    });
  }

  /** The noiommu group of a bound mdev (vfio_noiommu_group_alloc): its one device, no default domain. */
  private mdevGroupDir(dev: MdevDevice, name: string): DirNode {
    const alive = () => this.ctx.core.iommuGroups.get(Number(name)) === dev;
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
    inv.changed(at('kernel', 'iommu_groups'));
    if (!shown && group !== undefined) inv.gone(at('kernel', 'iommu_groups', String(group)));
  }
}
