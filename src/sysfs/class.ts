import type { CoreEvent } from '../core/core';
import type { Parent } from '../core/mdev-objects';
import { type InvalidationSet, Listing, type TreeContext } from './context';
import { MDEV_BUS_CLASS, type MdevSubsystem } from './mdev';
import { type DirNode, dir, link, union } from './nodes';
import { CLASSES, VFIO_DEVICES, vfioDevEntry } from './paths';
import { GROUP_LINKS, type VfioGroups } from './vfio-groups';

/** class/<class>/ of a vendor module: a link per registered virtual parent of that class. */
export const vendorClass = (cls: string): Listing<Parent> => new Listing<Parent>(CLASSES.entryPath(cls), (p) => p.name);

/**
 * class/: mdev_bus (mdev.ts' links), the vfio core's classes (vfio: the group
 * devices; vfio-dev: every device registered with VFIO, in 6.1) and the vendor modules' classes
 * (class_create in module init: there while the module is loaded), with what their changes
 * invalidate, from the same listings (paths.ts' CLASSES and VFIO_DEVICES, vendorClass; mdev.ts'
 * MDEV_BUS_CLASS, vfio-groups.ts' GROUP_LINKS).
 */
export class Classes {
  constructor(
    private readonly ctx: TreeContext,
    private readonly groups: VfioGroups,
    private readonly mdev: MdevSubsystem,
  ) {}

  dir(): DirNode {
    return this.ctx.cached(this, CLASSES.at(), () => {
      const { core, devices, buses } = this.ctx;
      const classes = () => core.vendorClasses();
      return union([
        dir({
          [MDEV_BUS_CLASS.name]: () => this.mdev.busClassLinks(),
          // The vfio core's class (vfio_init): a link per VFIO group device.
          [GROUP_LINKS.name]: () => this.groups.classLinks(),
          [VFIO_DEVICES.name]: () =>
            core.abi.vfioDev
              ? VFIO_DEVICES.dir(
                  () => [...core.vfioDevices.keys(), ...devices.vfioDevices.keys()],
                  (n) => {
                    const dev = core.vfioDevices.get(n);
                    if (dev) return link([...this.ctx.devicePath(dev), ...vfioDevEntry(n)], this.ctx.partAlive(dev, 'bound'));
                    // A host device its driver registered with VFIO (vfio-pci, NVIDIA's vendor-specific VFIO VF).
                    const host = devices.vfioDevices.get(n);
                    return host && buses.vfioClassLink(host, n);
                  },
                  { subdirs: () => 0 },
                )
              : undefined,
        }),
        CLASSES.dir(
          () => classes().keys(),
          (cls) => this.mdev.parentLinks(vendorClass(cls), () => classes().get(cls) ?? []),
        ),
      ]);
    });
  }

  /** A virtual parent registered or unregistered: its link in its class. */
  parent(ev: Extract<CoreEvent, { kind: 'parent' }>, inv: InvalidationSet): void {
    const { parent } = ev;
    const cls = parent.placement.className;
    if (!cls) return;
    inv.changed(vendorClass(cls).at());
    if (!ev.registered) inv.gone(vendorClass(cls).entry(parent));
  }

  /** A vendor module loaded or unloaded: its class, unless another loaded parent keeps it. */
  module(ev: Extract<CoreEvent, { kind: 'module' }>, inv: InvalidationSet): void {
    inv.changed(CLASSES.at());
    const cls = ev.parent.placement.className;
    if (!ev.loaded && cls && !this.ctx.core.vendorClasses().has(cls)) inv.gone(CLASSES.entry(cls));
  }

  /** A device (an mdev, a host device) registered with VFIO or not any more: class/vfio-dev/vfioN. */
  vfioDev(index: number | undefined, shown: boolean, inv: InvalidationSet): void {
    inv.changed(VFIO_DEVICES.at());
    if (!shown && index !== undefined) inv.gone(VFIO_DEVICES.entry(index));
  }
}
