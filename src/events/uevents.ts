import type { CoreEvent, MdevCore } from '../core/core';
import type { DeviceEvent, HostDevice } from '../devices/model';
import type { MdevDevice, Parent, Part } from '../core/model';
import type { Kobj, KobjAction } from '../core/uevent';
import type { KobjectInfo } from '../sysfs/tree';

/**
 * One uevent as kobject_uevent_env builds it: ACTION, DEVPATH, SUBSYSTEM, the caller's variables,
 * the kobject's own (`uevent` file) variables, SEQNUM — in that order (keys keep insertion order).
 */
export type Uevent = Readonly<Record<string, string>>;

/** A sink; one that returns a promise is waited for (delivered()) until it settles. */
export type UeventListener = (ev: Uevent) => void | Promise<void>;

/** The layer that knows paths: DEVPATH, SUBSYSTEM and `uevent` variables of a kobject. */
export interface KobjectSource {
  kobject(k: Kobj): KobjectInfo;
}

/** A uevent rendered but not sent yet: it waits while its device is half made or half gone. */
interface Pending {
  /** Everything but SEQNUM, which is taken when it is sent. */
  env: [string, string][];
  dev?: MdevDevice;
  /** Order of rendering (the invalidations of everything rendered up to here are announced). */
  id: number;
}

/**
 * kobject_uevent_env's order: ACTION, DEVPATH, SUBSYSTEM, the caller's variables, the kobject's
 * own (without `drop`). SEQNUM is added when the event is sent.
 */
function envOf(info: KobjectInfo, action: KobjAction, extra: readonly string[] = [], drop?: string): [string, string][] {
  const env: [string, string][] = [
    ['ACTION', action],
    ['DEVPATH', info.devpath],
    ['SUBSYSTEM', info.subsystem],
  ];
  for (const kv of [...extra, ...info.vars]) {
    const eq = kv.indexOf('=');
    const key = eq < 0 ? kv : kv.slice(0, eq);
    if (key !== drop) env.push([key, eq < 0 ? '' : kv.slice(eq + 1)]);
  }
  return env;
}

/** Events kept for late subscribers (`mdevfs events --since`). */
const HISTORY = 1024;

/**
 * Turns the core's events into the uevents the kernel's driver core and mdev core send
 * (docs/mdev-abi.md, "uevents"), and hands them to subscribers once the tree they describe is complete: a device's
 * events wait until its create or remove has finished (so a listener reading sysfs on `add`
 * finds the whole device), and every event waits until the invalidations announced before it
 * have reached the kernel. SEQNUM increases by one per event sent.
 */
export class Uevents {
  /** Rendered, waiting only for the invalidations before them (in rendering order). */
  private readonly ready: Pending[] = [];
  /** Events of devices in mid-create or mid-remove, per device, in order. */
  private readonly held = new Map<MdevDevice, Pending[]>();
  private rendered = 0;
  private seqnum = 0;
  /** The last HISTORY events sent, a ring: the oldest at historyStart once full. */
  private readonly history: Uevent[] = [];
  private historyStart = 0;
  private readonly listeners = new Set<UeventListener>();
  /** Sinks' acknowledgements not yet in (a udev sender's, once the datagram is out). */
  private readonly acks = new Set<Promise<void>>();
  /** bus/mdev drivers (name -> module) and classes of the loaded modules: their appearance and departure are uevents too. */
  private drivers: Map<string, string>;
  private classes: Set<string>;
  /** Module adds that follow a loading parent's registration (do_init_module sends KOBJ_ADD last). */
  private readonly afterRegistered = new Map<Parent, [string, string][][]>();
  /** Settles when the flush scheduled last has run (null: none scheduled). */
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly core: MdevCore,
    private readonly tree: KobjectSource,
    /** Resolves once every invalidation announced so far has reached the kernel. */
    private readonly settled: () => Promise<void>,
    /** The driver core's own devices (PCI functions, ...): their add, bind, unbind, remove. */
    devices?: { subscribe(listener: (ev: DeviceEvent) => void): void },
  ) {
    this.drivers = this.busDrivers();
    this.classes = this.parentClasses();
    core.subscribe((ev) => this.onCore(ev));
    devices?.subscribe((ev) => this.enqueue(this.renderHost(ev)));
  }

  /**
   * Calls listener with every event sent from now on; with `since`, first with the retained
   * events whose SEQNUM is greater. Returns the unsubscribe function.
   */
  subscribe(listener: UeventListener, since?: number): () => void {
    if (since !== undefined) {
      const h = this.history;
      for (let i = 0; i < h.length; i++) {
        const ev = h[(this.historyStart + i) % h.length]!;
        if (Number(ev.SEQNUM) > since) listener(ev);
      }
    }
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** SEQNUM of the last event sent (0: none yet). */
  get lastSeqnum(): number {
    return this.seqnum;
  }

  // ---- rendering -----------------------------------------------------------------------

  private onCore(ev: CoreEvent): void {
    this.enqueue(this.render(ev), ev);
  }

  private enqueue(rendered: Pending[], ev?: CoreEvent): void {
    for (const p of rendered) {
      const waiting = p.dev && this.held.get(p.dev);
      if (waiting) waiting.push(p); // behind the device's earlier events
      else if (p.dev && (p.dev.state === 'reserved' || p.dev.state === 'removing')) this.held.set(p.dev, [p]);
      else this.ready.push(p);
    }
    // A create or remove that ends lets its device's events go.
    if (ev?.kind === 'state' && ev.dev.state !== 'reserved' && ev.dev.state !== 'removing') {
      const waiting = this.held.get(ev.dev);
      this.held.delete(ev.dev);
      for (const p of waiting ?? []) this.ready.push(p);
    }
    if (this.ready.length > 0) this.scheduleFlush();
  }

  private event(kobj: Kobj, action: KobjAction, extra: readonly string[] = [], drop?: string): Pending {
    const dev = kobj.kind === 'device' || kobj.kind === 'vfio-dev' || kobj.kind === 'vfio-group' ? kobj.dev : undefined;
    return { env: envOf(this.tree.kobject(kobj), action, extra, drop), dev, id: ++this.rendered };
  }

  private render(ev: CoreEvent): Pending[] {
    switch (ev.kind) {
      case 'part':
        return this.renderPart(ev.dev, ev.part, ev.shown);
      case 'uevent': {
        // dev_uevent_filter: a device without a bus or class sends nothing (the write succeeds).
        if (ev.kobj.kind === 'host' && !ev.kobj.dev.bus) return [];
        const out = [this.event(ev.kobj, ev.action, ev.env)];
        if (ev.kobj.kind === 'parent') {
          const after = this.afterRegistered.get(ev.kobj.parent);
          this.afterRegistered.delete(ev.kobj.parent);
          for (const env of after ?? []) out.push({ env, id: ++this.rendered });
        }
        return out;
      }
      case 'module':
        return ev.loaded ? this.renderLoaded(ev.parent) : this.renderUnloaded();
      case 'parent':
        return ev.registered ? this.renderRegistered(ev.parent) : [];
      case 'unregistered':
        // A class device is its module's (device_unregister in module exit); a bus device stays.
        return this.isClassDevice(ev.parent) ? [this.event({ kind: 'parent', parent: ev.parent }, 'remove')] : [];
      case 'state':
        return [];
    }
  }

  /**
   * device_add, driver bind (probe registers the vfio device: its VFIO group's device first,
   * then vfio-dev/vfioN on 6.1), driver unbind (the other way round), device_del.
   */
  private renderPart(dev: MdevDevice, part: Part, shown: boolean): Pending[] {
    const device: Kobj = { kind: 'device', dev };
    const group: Kobj[] = dev.vfioGroupMinor !== undefined ? [{ kind: 'vfio-group', dev }] : [];
    const vfio: Kobj[] = this.core.abi.vfioDev && dev.vfioIndex !== undefined ? [{ kind: 'vfio-dev', dev }] : [];
    if (part === 'dir') return [this.event(device, shown ? 'add' : 'remove')];
    if (part !== 'bound') return [];
    if (shown) return [...this.vfioEvents(group, vfio, true), this.event(device, 'bind')];
    // KOBJ_UNBIND is sent after dev->driver is cleared: no DRIVER=.
    return [...this.vfioEvents(group, vfio, false), this.event(device, 'unbind', [], 'DRIVER')];
  }

  /**
   * A VFIO driver's probe registering its device (vfio_register_group_dev: the group's device, when
   * the group is new, then vfio-dev/vfioN), or its remove unregistering it (the other way round).
   */
  private vfioEvents(group: Kobj[], vfio: Kobj[], registered: boolean): Pending[] {
    return registered ? [...group, ...vfio].map((k) => this.event(k, 'add')) : [...vfio, ...group].map((k) => this.event(k, 'remove'));
  }

  /**
   * A module loading (mtty_dev_init): mdev_register_driver (the driver's KOBJ_ADD), class_create;
   * its parent's registration follows, and KOBJ_ADD of the module once init is done.
   */
  private renderLoaded(parent: Parent): Pending[] {
    const { drivers: before, classes: classesBefore } = this.refresh();
    const out: Pending[] = [];
    const moduleAdds: [string, string][][] = [];
    const modulesBefore = new Set(before.values());
    for (const [name, module] of this.drivers) {
      if (before.has(name)) continue;
      out.push(this.event({ kind: 'driver', name }, 'add'));
      if (!modulesBefore.has(module)) {
        modulesBefore.add(module);
        moduleAdds.push(this.event({ kind: 'module', name: module }, 'add').env);
      }
    }
    for (const name of this.classes) if (!classesBefore.has(name)) out.push(this.event({ kind: 'class', name }, 'add'));
    this.afterRegistered.set(parent, moduleAdds);
    return out;
  }

  /**
   * A parent registering (a module's init, or its host device's probe with the module loaded): the
   * class device (device_register), then mdev_register_parent (MDEV_STATE, sent by the core), after
   * which a loading module's KOBJ_ADD goes.
   */
  private renderRegistered(parent: Parent): Pending[] {
    const out: Pending[] = [];
    if (this.isClassDevice(parent)) out.push(this.event({ kind: 'parent', parent }, 'add'));
    if (!this.core.abi.mdevStateUevents) {
      for (const env of this.afterRegistered.get(parent) ?? []) out.push({ env, id: ++this.rendered });
      this.afterRegistered.delete(parent);
    }
    return out;
  }

  /** The module going (mtty_dev_exit, after its parent's unregistration): driver unregister, class_destroy, module removal. */
  private renderUnloaded(): Pending[] {
    const { drivers: before, classes: classesBefore } = this.refresh();
    const out: Pending[] = [];
    const modulesAfter = new Set(this.drivers.values());
    const modules: string[] = [];
    for (const [name, module] of before) {
      if (this.drivers.has(name)) continue;
      out.push(this.event({ kind: 'driver', name }, 'remove'));
      if (!modulesAfter.has(module) && !modules.includes(module)) modules.push(module);
    }
    for (const name of classesBefore) if (!this.classes.has(name)) out.push(this.event({ kind: 'class', name }, 'remove'));
    for (const name of modules) out.push(this.event({ kind: 'module', name }, 'remove'));
    return out;
  }

  /** The uevent variables a host device had when last seen: its remove event still carries them (not DRIVER). */
  private readonly hostVars = new WeakMap<HostDevice, string[]>();

  /**
   * device_add / device_del (a device without a bus or class sends nothing: dev_uevent_filter),
   * driver bind / unbind, driver_register of a bus driver, and a VFIO driver registering the device
   * in its probe (before the bind) or unregistering it in its remove (before the unbind).
   */
  private renderHost(ev: DeviceEvent): Pending[] {
    if (ev.kind === 'driver') return [this.event({ kind: 'driver', name: ev.driver.name, bus: ev.driver.bus.name }, ev.present ? 'add' : 'remove')];
    const dev = ev.dev;
    if (!dev.bus) return [];
    const host: Kobj = { kind: 'host', dev };
    if (ev.kind === 'bind') return [this.event(host, ev.bound ? 'bind' : 'unbind')];
    if (ev.kind === 'change') return [this.event(host, 'change')];
    if (ev.kind === 'vfio') {
      const group: Kobj[] = dev.vfioGroupMinor !== undefined ? [{ kind: 'host-vfio-group', dev }] : [];
      const vfio: Kobj[] = dev.vfioIndex !== undefined ? [{ kind: 'host-vfio-dev', dev }] : [];
      return this.vfioEvents(group, vfio, ev.registered);
    }
    if (ev.present) {
      const p = this.event(host, 'add');
      this.hostVars.set(dev, this.tree.kobject(host).vars);
      return [p];
    }
    // Gone from the tree: what it showed last, under the bus it was on, unbound.
    const info = { devpath: '/' + dev.path.join('/'), subsystem: dev.bus.name, vars: this.hostVars.get(dev) ?? [] };
    return [{ env: envOf(info, 'remove', [], 'DRIVER'), id: ++this.rendered }];
  }

  /** A parent that is a class device of its own module (mtty), not a device of a bus (PCI). */
  private isClassDevice(parent: Parent): boolean {
    return parent.placement.className !== undefined;
  }

  /** Takes a new look at the drivers and classes the tree shows; returns what it showed before. */
  private refresh(): { drivers: Map<string, string>; classes: Set<string> } {
    const before = { drivers: this.drivers, classes: this.classes };
    this.drivers = this.busDrivers();
    this.classes = this.parentClasses();
    return before;
  }

  private busDrivers(): Map<string, string> {
    return new Map(this.core.busDrivers().map((d) => [d.name, d.module]));
  }

  private parentClasses(): Set<string> {
    return new Set(this.core.vendorClasses().keys());
  }

  // ---- sending -------------------------------------------------------------------------

  private scheduleFlush(): void {
    if (this.flushing) return;
    const upTo = this.rendered;
    this.flushing = this.settled().then(() => {
      this.flushing = null;
      this.flush(upTo);
    });
  }

  /**
   * Resolves once the events ready so far have been sent and every sink that acknowledges
   * (the udev sender) has acknowledged them: a write(2) returns only then, as the kernel
   * broadcasts a uevent before the write that caused it returns. Events still held for a
   * device in the middle of its create or remove are not waited for.
   */
  async delivered(): Promise<void> {
    // Flushes rendered meanwhile by other writers are followed a few rounds at most.
    for (let round = 0; this.flushing && round < 4; round++) await this.flushing;
    if (this.acks.size > 0) await Promise.all([...this.acks]);
  }

  /**
   * Sends the ready events rendered up to `upTo` (the invalidations announced before them have
   * arrived). Events released later by a device are rendered earlier than some ready ones: the
   * order between devices may differ from rendering order, never the order of one device's events.
   */
  private flush(upTo: number): void {
    const later: Pending[] = [];
    for (const p of this.ready.splice(0)) {
      if (p.id <= upTo) this.send(p.env);
      else later.push(p);
    }
    this.ready.push(...later);
    // Events rendered meanwhile get a flush of their own (their invalidations may still be in flight).
    if (this.ready.length > 0) this.scheduleFlush();
  }

  private send(env: [string, string][]): void {
    const ev: Uevent = Object.freeze(Object.fromEntries([...env, ['SEQNUM', String(++this.seqnum)]]));
    if (this.history.length < HISTORY) this.history.push(ev);
    else {
      this.history[this.historyStart] = ev;
      this.historyStart = (this.historyStart + 1) % HISTORY;
    }
    for (const l of this.listeners) {
      try {
        const ack: unknown = l(ev);
        // (A listener typed as returning void may return anything: only a promise is waited for.)
        if (ack instanceof Promise) {
          const tracked: Promise<void> = ack.catch(() => undefined).then(() => void this.acks.delete(tracked));
          this.acks.add(tracked);
        }
      } catch {
        // A sink's failure is the sink's business; the others still hear the event.
      }
    }
  }
}
