import type { Logger } from 'pino';
import type { FaultEngine } from '../faults/engine';
import type { Abi, Step } from './abi';
import { Errno, MdevError, errnoName, fail } from '../base/errno';
import { KernelIds } from './kernel-ids';
import { MdevDevice, MdevType, Parent, type ParentPlacement, type Part } from './model';
import { kstrtoul, parseCreateUuid, sysfsStreq } from '../base/parse';
import { type Kobj, type KobjAction, parseSynthUevent } from './uevent';
import type { VendorDriver } from './vendor';

/** What changed in the core, for whoever renders it (the tree turns these into cache invalidations). */
export type CoreEvent =
  | { kind: 'part'; dev: MdevDevice; part: Part; shown: boolean }
  | { kind: 'parent'; parent: Parent; registered: boolean }
  /**
   * parent's vendor module loaded (its first registration, as modprobe) or unloaded (remove-parent, as
   * rmmod): core.modules changed, so its mdev driver, module and class may have appeared or gone.
   */
  | { kind: 'module'; parent: Parent; loaded: boolean }
  /** A create or remove of dev began or ended (dev.state changed). */
  | { kind: 'state'; dev: MdevDevice }
  /** The unregistration of parent is complete: its children are released, the MDEV_STATE event sent. */
  | { kind: 'unregistered'; parent: Parent }
  /** A uevent the mdev core itself sends (MDEV_STATE, a write to a `uevent` file). */
  | { kind: 'uevent'; kobj: Kobj; action: KobjAction; env: string[] };

/**
 * The mdev core (drivers/vfio/mdev/mdev_core.c): parents, types, the global UUID registry
 * and the device state machine. JavaScript runs one callback at a time, so every stretch
 * of code between two awaits is a critical section: the duplicate check, the capacity
 * check and the reservation below happen in one such stretch, and nothing else is ever
 * serialized — vendor calls of different devices overlap freely.
 */
export class MdevCore {
  /** Global registry (mdev_list): every device from reservation until release. */
  readonly devices = new Map<string, MdevDevice>();
  readonly parents = new Map<string, Parent>();
  /**
   * The parents whose vendor module is loaded, by name (the Parent last registered under it). A module,
   * its mdev driver (bus/mdev/drivers) and the class it made stay while one of its parents is here,
   * registered or not: unbinding a parent's host device only unregisters the parent (like i915's
   * unbind with kvmgt loaded); only the module's unload (remove-parent) takes them away.
   */
  readonly modules = new Map<string, Parent>();
  /** iommu group number -> device, while the device is bound. */
  readonly iommuGroups = new Map<number, MdevDevice>();
  /** vfio device index -> device, while bound (6.1 vfio-dev/vfioN). */
  readonly vfioDevices = new Map<number, MdevDevice>();
  private readonly listeners: ((ev: CoreEvent) => void)[] = [];
  constructor(
    readonly abi: Abi,
    private readonly log: Logger,
    /** The emulation's fault rules: asked at the vendor's create (probe) and remove, where a vendor fails. */
    readonly faults?: FaultEngine,
    /** The numberings the core shares with the host's devices (IOMMU groups, vfio devices). */
    readonly ids: KernelIds = new KernelIds(),
  ) {}

  subscribe(listener: (ev: CoreEvent) => void): void {
    this.listeners.push(listener);
  }

  private emit(ev: CoreEvent): void {
    for (const l of this.listeners) l(ev);
  }

  // ---- parents -------------------------------------------------------------------------

  registerParent(placement: ParentPlacement, driver: VendorDriver): Parent {
    if (this.parents.has(placement.name)) fail(Errno.EEXIST, `parent ${placement.name} exists`);
    const parent = new Parent(placement, driver);
    for (const t of driver.types) {
      const id = `${driver.driverString}-${t.sysfsName}`;
      const name = t.nameFile === false || (this.abi.vendorTypeName && t.legacyName === false) ? undefined : (t.prettyName ?? t.sysfsName);
      parent.types.set(id, new MdevType(parent, id, t.sysfsName, name, t.deviceApi, t.description));
    }
    this.parents.set(placement.name, parent);
    if (driver.faultRules && this.faults && !this.faults.hasOwned(driver)) {
      for (const spec of driver.faultRules) this.faults.add(spec, { origin: 'profile', owner: driver });
    }
    this.load(parent);
    this.emit({ kind: 'parent', parent, registered: true });
    // The types and the class link exist: KOBJ_CHANGE on the parent (v5.3+).
    if (this.abi.mdevStateUevents) this.mdevState(parent, 'registered');
    this.log.info({ parent: placement.name, types: [...parent.types.keys()] }, 'parent registered');
    return parent;
  }

  /**
   * mdev_unregister_parent: wait for in-flight work, refuse new work, remove every child. With
   * `unload` (remove-parent: the vendor module's exit) the module goes too, with its driver and
   * class unless another loaded parent uses them; an unloaded parent that is not registered now
   * (its host device unbound) only unloads. Without it (its host device's driver unbinds) the
   * module stays loaded.
   */
  async unregisterParent(name: string, { unload = true }: { unload?: boolean } = {}): Promise<void> {
    const parent = this.parents.get(name);
    if (!parent) {
      if (!unload || !this.modules.has(name)) fail(Errno.ENODEV, `no parent ${name}`);
      this.unloadModule(name);
      return;
    }
    if (parent.gate.isClosing) fail(Errno.EBUSY, `parent ${name} is already unregistering`);
    await parent.gate.close();
    // New work is refused (the gate); the children go first, so no link ever leads into a parent
    // that is no longer there.
    for (const dev of [...parent.children.values()]) {
      this.setState(dev, 'removing');
      this.hide(dev, 'remove');
      await dev.lock.runExclusive(() => this.runSteps(dev, this.abi.removeSteps, { force: true }));
      this.release(dev);
    }
    // The parent leaves the tree now (every listing filters on `registered`): say so now.
    parent.registered = false;
    this.emit({ kind: 'parent', parent, registered: false });
    this.parents.delete(name);
    this.faults?.removeOwned(parent.driver);
    // Every child, the types and the class link are gone: KOBJ_CHANGE on the parent (v5.3+).
    if (this.abi.mdevStateUevents) this.mdevState(parent, 'unregistered');
    this.emit({ kind: 'unregistered', parent });
    this.log.info({ parent: name }, 'parent unregistered');
    if (unload) this.unloadModule(name);
  }

  /** bus/mdev drivers of the loaded vendor modules (name and module), as the ABI lists them. */
  busDrivers(): { name: string; module: string }[] {
    return this.abi.busDrivers([...this.modules.values()].map((p) => p.driver));
  }

  /** Classes the loaded vendor modules made (mtty's `mtty`), by name, with their registered parents. */
  vendorClasses(): Map<string, Parent[]> {
    const m = new Map<string, Parent[]>();
    for (const p of this.modules.values()) if (p.placement.className && !m.has(p.placement.className)) m.set(p.placement.className, []);
    for (const p of this.parents.values()) if (p.registered && p.placement.className) m.get(p.placement.className)?.push(p);
    return m;
  }

  /** A parent's first registration loads its module; a later one (its host device bound again) finds it loaded. */
  private load(parent: Parent): void {
    const was = this.modules.get(parent.name);
    const same = was && was.driver.name === parent.driver.name && was.driver.module === parent.driver.module && was.placement.className === parent.placement.className;
    if (was && !same) this.unloadModule(parent.name); // another profile under the same name: the old module goes first
    this.modules.set(parent.name, parent);
    if (!same) this.emit({ kind: 'module', parent, loaded: true });
  }

  private unloadModule(name: string): void {
    const parent = this.modules.get(name);
    if (!parent) return;
    this.modules.delete(name);
    this.emit({ kind: 'module', parent, loaded: false });
    this.log.info({ parent: name, module: parent.driver.module }, 'vendor module unloaded');
  }

  // ---- create --------------------------------------------------------------------------

  /** create_store: returns the byte count once the whole device tree is in place. */
  async createStore(type: MdevType, buf: Buffer): Promise<number> {
    const uuid = parseCreateUuid(buf);
    await this.create(type, uuid);
    return buf.length;
  }

  async create(type: MdevType, uuid: string): Promise<MdevDevice> {
    const parent = type.parent;
    // Critical section: duplicate check, core capacity, reservation.
    if (this.devices.has(uuid)) fail(Errno.EEXIST, `${uuid} exists`);
    const counted = this.abi.coreCounts(parent.driver);
    if (counted) {
      if (parent.counter <= 0) fail(Errno.EUSERS, `no instances left on ${parent.name}`);
      parent.counter--;
    }
    const dev = new MdevDevice(uuid, type);
    this.devices.set(uuid, dev);
    parent.children.set(uuid, dev);
    // End of critical section: the UUID is taken on every parent from here on.

    if (!parent.gate.tryEnter()) {
      this.release(dev);
      fail(Errno.ENODEV, `parent ${parent.name} is unregistering`);
    }
    try {
      // device_driver_attach probes under the device lock.
      await dev.lock.runExclusive(async () => {
        try {
          await this.runSteps(dev, this.abi.createSteps, { force: false });
        } catch (err) {
          // A failed create leaves no trace: undo what was shown, give everything back.
          await this.runSteps(dev, this.abi.removeSteps, { force: true });
          this.release(dev);
          throw err;
        }
      });
      this.setState(dev, 'active');
      this.log.debug({ uuid, type: type.id }, 'device created');
      return dev;
    } finally {
      parent.gate.leave();
    }
  }

  // ---- remove --------------------------------------------------------------------------

  /** remove_store: kstrtoul, 0 is a no-op, the remove file goes first, concurrent writers wait. */
  async removeStore(dev: MdevDevice, buf: Buffer): Promise<number> {
    const val = kstrtoul(buf);
    if (val === 0n) return buf.length;
    if (dev.removal) {
      // device_remove_file_self lost: block until the winner is done, then succeed.
      await dev.removal.catch(() => undefined);
      return buf.length;
    }
    // device_remove_file_self: the file goes for good unless the ABI restores it below.
    this.hide(dev, 'remove');
    const removal = this.remove(dev);
    dev.removal = removal;
    try {
      await removal;
    } catch (err) {
      if (this.abi.restoreRemoveFile && this.devices.get(dev.uuid) === dev) this.show(dev, 'remove');
      throw err;
    } finally {
      dev.removal = undefined;
    }
    return buf.length;
  }

  /** mdev_device_remove. */
  async remove(dev: MdevDevice): Promise<void> {
    if (this.devices.get(dev.uuid) !== dev) fail(Errno.ENODEV, `${dev.uuid} is not registered`);
    if (dev.state !== 'active') fail(Errno.EAGAIN, `${dev.uuid} is ${dev.state}`);
    this.setState(dev, 'removing');
    const parent = dev.parent;
    if (!parent.gate.tryEnter()) fail(Errno.ENODEV, `parent ${parent.name} is unregistering`);
    try {
      // device_del releases the driver under the device lock (it waits for an unbind).
      await dev.lock.runExclusive(() => this.runSteps(dev, this.abi.removeSteps, { force: false }));
      this.release(dev);
      this.log.debug({ uuid: dev.uuid }, 'device removed');
    } catch (err) {
      this.setState(dev, 'active'); // 4.17 vendor veto: the device stays, fully present
      throw err;
    } finally {
      parent.gate.leave();
    }
  }

  // ---- bus driver bind/unbind ----------------------------------------------------------

  /**
   * bus/mdev/drivers/<drv>/unbind: detach a bound device (it stays, without a driver).
   * unbind_store checks the driver, then device_release_driver waits for the device lock:
   * a removal that got there first leaves nothing to do, and the write still succeeds.
   */
  async unbindStore(driverName: string, buf: Buffer): Promise<number> {
    const dev = this.findByName(buf);
    if (!dev || dev.boundDriver !== driverName || !dev.parts.has('dir')) fail(Errno.ENODEV, 'no such bound device');
    await dev.lock.runExclusive(() => this.runSteps(dev, [{ vendor: 'remove' }, { hide: 'vendor' }, { hide: 'bound' }], { force: true }));
    return buf.length;
  }

  /**
   * bus/mdev/drivers_autoprobe. On 6.1 it changes nothing an mdev does: mdev_device_create binds
   * the parent's driver itself (device_driver_attach), and the bus matches no driver on its own.
   */
  autoprobe = true;

  /**
   * bus/mdev/drivers_probe (drivers_probe_store): ENODEV for a name of no device on the bus; else
   * device_attach of an unbound device, where mdev_match matches no driver: nothing binds, and
   * the write succeeds.
   */
  probeStore(buf: Buffer): number {
    const dev = this.findByName(buf);
    if (!dev || !dev.parts.has('dir')) fail(Errno.ENODEV, 'no such device on the mdev bus');
    return buf.length;
  }

  /** bus/mdev/drivers/<drv>/bind: since 5.15 mdev drivers never match, so this is ENODEV. */
  bindStore(_driverName: string, _buf: Buffer): number {
    fail(Errno.ENODEV, 'mdev drivers do not match by bind');
  }

  private findByName(buf: Buffer): MdevDevice | undefined {
    const text = buf.toString('latin1');
    for (const dev of this.devices.values()) if (sysfsStreq(dev.uuid, text)) return dev;
    return undefined;
  }

  // ---- capacity ------------------------------------------------------------------------

  availableInstances(type: MdevType): number {
    const driver = type.parent.driver;
    if (this.abi.coreCounts(driver)) return type.parent.counter;
    const n = driver.getAvailable ? driver.getAvailable(type, this.abi) : 0;
    return this.abi.signedAvailable ? n : Math.max(0, n);
  }

  // ---- internals -----------------------------------------------------------------------

  private async runSteps(dev: MdevDevice, steps: readonly Step[], opts: { force: boolean }): Promise<void> {
    for (const step of steps) {
      if ('show' in step) this.show(dev, step.show);
      else if ('hide' in step) this.hide(dev, step.hide);
      else if (step.vendor === 'probe') {
        // A fault here is the vendor's create failing: create() undoes everything, as for the vendor's own.
        if (this.faults?.watching('create')) await this.faults.check(this.faultContext('create', dev));
        await dev.parent.driver.probe(dev, this.abi);
        dev.vendorActive = true;
      } else if (dev.vendorActive) {
        const mayVeto = this.abi.vendorMayVeto && !opts.force;
        try {
          // A fault here is the vendor's remove failing: a veto where the ABI has one (the vendor
          // has not released anything), else the vendor releases all the same and the core logs it.
          let injected: unknown;
          if (this.faults?.watching('remove')) {
            try {
              await this.faults.check(this.faultContext('remove', dev));
            } catch (err) {
              if (mayVeto) throw err;
              injected = err;
            }
          }
          await dev.parent.driver.remove(dev, this.abi, { mayVeto });
          dev.vendorActive = false;
          if (injected) throw injected;
        } catch (err) {
          const errno = err instanceof MdevError ? err.errno : Errno.EIO;
          if (mayVeto) {
            this.log.info({ uuid: dev.uuid, errno: errnoName(errno) }, 'vendor vetoed remove');
            fail(Errno.EBUSY, `vendor remove of ${dev.uuid} failed`);
          }
          // The vendor released its resources all the same (VendorDriver.remove's contract).
          this.log.warn({ uuid: dev.uuid, errno: errnoName(errno) }, 'vendor remove failed; removing anyway');
          dev.vendorActive = false;
        }
      }
    }
  }

  private faultContext(op: 'create' | 'remove', dev: MdevDevice) {
    const parent = dev.parent;
    return { op, uuid: dev.uuid, parent: parent.name, type: dev.type.id, owner: parent.driver, path: `/sys/${parent.placement.path.join('/')}/${dev.uuid}` };
  }

  private show(dev: MdevDevice, part: Part): void {
    if (dev.parts.has(part)) return;
    if (part === 'bound') {
      dev.iommuGroup = this.ids.iommuGroups.alloc();
      this.iommuGroups.set(dev.iommuGroup, dev);
      // vfio_create_group: the group's /dev/vfio/N (a class "vfio" device), before vfio-dev.
      dev.vfioGroupMinor = this.ids.vfioGroupMinors.alloc();
      if (this.abi.vfioDev) {
        dev.vfioIndex = this.ids.vfioDevices.alloc();
        this.vfioDevices.set(dev.vfioIndex, dev);
      }
      dev.boundDriver = this.abi.boundDriver(dev.parent.driver);
    }
    if (part === 'links') dev.type.devices.set(dev.uuid, dev);
    if (part === 'dir') dev.parent.visibleDevices++;
    dev.parts.add(part);
    this.emit({ kind: 'part', dev, part, shown: true });
  }

  private hide(dev: MdevDevice, part: Part): void {
    if (!dev.parts.delete(part)) return;
    if (part === 'bound') {
      if (dev.iommuGroup !== undefined) {
        this.iommuGroups.delete(dev.iommuGroup);
        this.ids.iommuGroups.free(dev.iommuGroup);
      }
      if (dev.vfioIndex !== undefined) {
        this.vfioDevices.delete(dev.vfioIndex);
        this.ids.vfioDevices.free(dev.vfioIndex);
      }
      if (dev.vfioGroupMinor !== undefined) this.ids.vfioGroupMinors.free(dev.vfioGroupMinor);
    }
    if (part === 'links') dev.type.devices.delete(dev.uuid);
    if (part === 'dir') dev.parent.visibleDevices--;
    // Listeners see the tree without the part, and the numbers it had (their paths are what goes).
    this.emit({ kind: 'part', dev, part, shown: false });
    if (part === 'bound') dev.iommuGroup = dev.vfioIndex = dev.boundDriver = undefined;
  }

  private mdevState(parent: Parent, state: 'registered' | 'unregistered'): void {
    this.emit({ kind: 'uevent', kobj: { kind: 'parent', parent }, action: 'change', env: [`MDEV_STATE=${state}`] });
  }

  private setState(dev: MdevDevice, state: MdevDevice['state']): void {
    dev.state = state;
    this.emit({ kind: 'state', dev });
  }

  /** kobject_synth_uevent: a write to a `uevent` file sends that event (EINVAL: nothing is sent). */
  synthUevent(kobj: Kobj, buf: Buffer): number {
    const { action, env } = parseSynthUevent(buf);
    this.emit({ kind: 'uevent', kobj, action, env });
    return buf.length;
  }

  /** mdev_device_release: the UUID and any core-counted slot become free again. */
  private release(dev: MdevDevice): void {
    for (const part of [...dev.parts]) this.hide(dev, part);
    if (this.devices.get(dev.uuid) === dev) this.devices.delete(dev.uuid);
    dev.parent.children.delete(dev.uuid);
    if (this.abi.coreCounts(dev.parent.driver)) dev.parent.counter++;
    this.setState(dev, 'released');
  }
}
