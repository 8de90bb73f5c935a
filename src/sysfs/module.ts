import type { CoreEvent } from '../core/core';
import type { DeviceEvent } from '../devices/device-model';
import { type InvalidationSet, type TreeContext, named } from './context';
import { type DirNode, dir, dynDir, link, ro, wo } from './nodes';
import { MDEV_DRIVERS } from './paths';

/** module/: a directory per loaded module, named as the module is. */
export const MODULES = named(['module']);

/**
 * module/: the modules of the mdev vendor drivers (there while loaded) and of the host devices'
 * drivers (pci:i915, css:vfio_ccw, ...), with what a module's unloading invalidates, from the same
 * listing (MODULES).
 */
export class Modules {
  constructor(private readonly ctx: TreeContext) {}

  dir(): DirNode {
    return this.ctx.cached(this, MODULES.at(), () => {
      const drivers = () => this.ctx.core.busDrivers();
      const hostDrivers = (name: string) => this.ctx.buses.modules().get(name) ?? new Map<string, string[]>();
      const modules = () => new Set([...drivers().map((d) => d.module), ...this.ctx.buses.modules().keys()]);
      return MODULES.dir(
        () => modules(),
        (name) => {
          const alive = () => modules().has(name);
          const mine = () => drivers().filter((d) => d.module === name);
          return dir(
            {
              drivers: () =>
                dynDir(
                  () => [...mine().map((d) => `mdev:${d.name}`), ...hostDrivers(name).keys()],
                  (entry) => {
                    const d = mine().find((x) => `mdev:${x.name}` === entry);
                    const host = hostDrivers(name).get(entry);
                    return d ? link(MDEV_DRIVERS.entryPath(d.name), alive) : host && link(host, alive);
                  },
                  alive,
                ),
              holders: () => dir({}, alive),
              initstate: () => ro('live\n', alive),
              refcnt: () => ro('0\n', alive),
              uevent: () => wo(this.ctx.ueventStore({ kind: 'module', name }), alive),
            },
            alive,
          );
        },
      );
    });
  }

  /** A vendor module loaded or unloaded: module/<name> goes unless another loaded driver keeps it. */
  invalidate(ev: Extract<CoreEvent, { kind: 'module' }>, inv: InvalidationSet): void {
    inv.changed(MODULES.at());
    if (ev.loaded) return;
    const left = this.ctx.core.busDrivers();
    for (const d of this.ctx.core.abi.busDrivers([ev.parent.driver])) {
      if (!left.some((x) => x.module === d.module)) inv.gone(MODULES.entry(d.module));
    }
  }

  /** A host driver registered or unregistered: its module with it. */
  hostDriver(ev: Extract<DeviceEvent, { kind: 'driver' }>, inv: InvalidationSet): void {
    inv.changed(MODULES.at());
    if (!ev.present && ev.driver.module) inv.gone(MODULES.entry(ev.driver.module));
  }
}
