import type { MdevDevice } from '../core/mdev-objects';
import type { Kobj } from '../core/uevent';
import type { HostDevice } from '../devices/device-model';
import { powerDir } from './common';
import { type InvalidationSet, type TreeContext, at, numbered } from './context';
import { type Alive, type DirNode, attr, dir, link, ro } from './nodes';
import { CLASSES } from './paths';

/**
 * The VFIO group character devices' major (alloc_chrdev_region, so the kernel picks it): 253 on
 * the real 6.1 kernel the fixtures were recorded on (test/events/uevents.txt).
 */
const VFIO_GROUP_MAJOR = 253;

/** devices/virtual/vfio/: a directory per VFIO group device, named by its IOMMU group (the glue directory, while there is one). */
export const GROUP_DEVICES = numbered(['devices', 'virtual', 'vfio']);

/** class/vfio/: a link per VFIO group device, of the same name. */
export const GROUP_LINKS = numbered(CLASSES.entryPath('vfio'));

/**
 * VFIO groups as sysfs shows /dev/vfio/<group>: devices/virtual/vfio/<group>/ and the class/vfio/<group>
 * links, with what their coming and going invalidates, from the same listings (GROUP_DEVICES, GROUP_LINKS).
 *
 * The group devices are the bound mdevs' groups, core.iommuGroups (show('bound') gives a device
 * its IOMMU group and its group minor together, and hide('bound') takes both), and the groups of
 * the host devices a VFIO driver has (vfio-pci, a vendor-specific VFIO VF), devices.vfioGroups.
 */
export class VfioGroups {
  constructor(private readonly ctx: TreeContext) {}

  /** Counted without walking them (a create at 10,000 devices must cost what one at 0 does). */
  count(): number {
    return this.ctx.core.iommuGroups.size + this.ctx.devices.vfioGroups.size;
  }

  private groups(): number[] {
    return [...this.ctx.core.iommuGroups.keys(), ...this.ctx.devices.vfioGroups.keys()];
  }

  /** The group device of a group number: its directory and whether it is still there. */
  private group(n: number): { dir: DirNode; alive: Alive } | undefined {
    const dev = this.ctx.core.iommuGroups.get(n);
    if (dev) return { dir: this.mdevGroupDir(dev), alive: this.ctx.partAlive(dev, 'bound') };
    const host = this.ctx.devices.vfioGroups.get(n);
    if (host) return { dir: this.hostGroupDir(host), alive: () => this.ctx.devices.vfioGroups.get(n) === host };
    return undefined;
  }

  /** devices/virtual/vfio/: one directory per group device (the glue directory, while there is one). */
  devicesDir(): DirNode {
    return this.ctx.cached(this, GROUP_DEVICES.at(), () => GROUP_DEVICES.dir(() => this.groups(), (n) => this.group(n)?.dir));
  }

  /** class/vfio/: N -> ../../devices/virtual/vfio/N. */
  classLinks(): DirNode {
    return this.ctx.cached(this, GROUP_LINKS.at(), () =>
      GROUP_LINKS.dir(
        () => this.groups(),
        (n) => {
          const g = this.group(n);
          return g && link(GROUP_DEVICES.entryPath(n), g.alive);
        },
        { entryKind: 'link' },
      ),
    );
  }

  mdevGroupDir(dev: MdevDevice): DirNode {
    return this.ctx.cached(dev, `vfio-group:${dev.iommuGroup}:${dev.vfioGroupMinor}`, () =>
      this.groupDeviceDir(dev.iommuGroup!, dev.vfioGroupMinor!, this.ctx.partAlive(dev, 'bound'), { kind: 'vfio-group', dev }),
    );
  }

  hostGroupDir(dev: HostDevice): DirNode {
    const group = dev.pci!.iommuGroup!;
    const minor = dev.vfioGroupMinor!;
    return this.ctx.cached(dev, `vfio-group:${group}:${minor}`, () =>
      this.groupDeviceDir(group, minor, () => this.ctx.devices.vfioGroups.get(group) === dev && dev.vfioGroupMinor === minor, {
        kind: 'host-vfio-group',
        dev,
      }),
    );
  }

  /**
   * A VFIO group's character device (vfio_create_group: device_create in class "vfio", named by
   * the IOMMU group, devt VFIO_GROUP_MAJOR:minor): dev, power/, subsystem, uevent with MAJOR,
   * MINOR and DEVNAME, as the real 6.1 kernel's uevents show (test/events/uevents.txt).
   */
  private groupDeviceDir(group: number, minor: number, alive: Alive, kobj: Kobj): DirNode {
    const devt = `${VFIO_GROUP_MAJOR}:${minor}`;
    const vars = `MAJOR=${VFIO_GROUP_MAJOR}\nMINOR=${minor}\nDEVNAME=vfio/${group}\n`;
    const power = powerDir(alive);
    const subsystem = link(GROUP_LINKS.path, alive);
    const uevent = attr(0o644, () => vars, this.ctx.ueventStore(kobj), alive);
    return dir({ dev: () => ro(`${devt}\n`, alive), power: () => power, subsystem: () => subsystem, uevent: () => uevent }, alive);
  }

  /**
   * A group device came or went: its entries in the two listings (a group's own entries go with
   * its directory). The glue directory (GROUP_DEVICES) comes with the first group device and goes
   * with the last: only then does its container's st_nlink change (devices/virtual; tree.ts knows
   * whether the container came and went with it).
   */
  invalidate(group: number, shown: boolean, inv: InvalidationSet): void {
    inv.changed(GROUP_DEVICES.at());
    if (this.glueChanged(shown)) inv.changed(at(...this.container()));
    if (shown) return;
    inv.gone(GROUP_LINKS.entry(group), GROUP_DEVICES.entry(group));
    if (this.count() === 0) inv.gone(GROUP_DEVICES.at());
  }

  /** Whether the glue directory came (shown) or went with this group device: the first one, or the last. */
  glueChanged(shown: boolean): boolean {
    return this.count() === (shown ? 1 : 0);
  }

  /** The directory the glue directory is in (devices/virtual). */
  container(): string[] {
    return GROUP_DEVICES.path.slice(0, -1);
  }
}
