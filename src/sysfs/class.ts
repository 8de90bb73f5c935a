import type { CoreEvent } from '../core/core';
import { type InvalidationSet, type TreeContext, at } from './context';
import type { MdevSubsystem } from './mdev';
import { type DirNode, dir, dynDir, link, union } from './nodes';
import type { VfioGroups } from './vfio-groups';

/**
 * class/: mdev_bus (mdev.ts' links), the vfio core's classes (vfio: the group
 * devices; vfio-dev: every device registered with VFIO, in 6.1) and the vendor modules' classes
 * (class_create in module init: there while the module is loaded), with what their changes invalidate.
 */
export class Classes {
  constructor(
    private readonly ctx: TreeContext,
    private readonly groups: VfioGroups,
    private readonly mdev: MdevSubsystem,
  ) {}

  dir(): DirNode {
    return this.ctx.cached(this, 'class', () => {
      const { core, devices, buses } = this.ctx;
      const classes = () => core.vendorClasses();
      return union([
        dir({
          mdev_bus: () => this.mdev.busClassLinks(),
          // The vfio core's class (vfio_init): a link per VFIO group device.
          vfio: () => this.groups.classLinks(),
          'vfio-dev': () =>
            core.abi.vfioDev
              ? dynDir(
                  () => [...core.vfioDevices.keys(), ...devices.vfioDevices.keys()].map((n) => `vfio${n}`),
                  (name) => {
                    const m = /^vfio(0|[1-9]\d*)$/.exec(name); // no numeric aliases: vfio00 is ENOENT
                    const dev = m ? core.vfioDevices.get(Number(m[1])) : undefined;
                    if (dev) return link([...this.ctx.devicePath(dev), 'vfio-dev', name], this.ctx.partAlive(dev, 'bound'));
                    // A host device its driver registered with VFIO (vfio-pci, NVIDIA's vendor-specific VFIO VF).
                    const host = m ? devices.vfioDevices.get(Number(m[1])) : undefined;
                    return host && buses.vfioClassLink(host, Number(m![1]));
                  },
                  undefined,
                  () => 0,
                )
              : undefined,
        }),
        dynDir(
          () => classes().keys(),
          (name) => (classes().has(name) ? this.mdev.parentLinks(() => classes().get(name) ?? []) : undefined),
        ),
      ]);
    });
  }

  /** A virtual parent registered or unregistered: its link in its class. */
  parent(ev: Extract<CoreEvent, { kind: 'parent' }>, inv: InvalidationSet): void {
    const { parent } = ev;
    const cls = parent.placement.className;
    if (!cls) return;
    inv.changed(at('class', cls));
    if (!ev.registered) inv.gone(at('class', cls, parent.name));
  }

  /** A vendor module loaded or unloaded: its class, unless another loaded parent keeps it. */
  module(ev: Extract<CoreEvent, { kind: 'module' }>, inv: InvalidationSet): void {
    inv.changed(at('class'));
    const cls = ev.parent.placement.className;
    if (!ev.loaded && cls && !this.ctx.core.vendorClasses().has(cls)) inv.gone(at('class', cls));
  }

  /** An mdev registered with VFIO or not any more: class/vfio-dev/vfioN. */
  vfioDev(index: number | undefined, shown: boolean, inv: InvalidationSet): void {
    inv.changed(at('class', 'vfio-dev'));
    if (!shown && index !== undefined) inv.gone(at('class', 'vfio-dev', `vfio${index}`));
  }
}
