import { Errno, fail } from '../../base/errno';
import { type DeviceModel, type DriverAttr, HostDevice } from '../../devices/model';
import { type ApMatrixHost, formatApMask, parseApMaskChange } from './ap';

const hex = (n: number, w: number) => n.toString(16).padStart(w, '0');

/**
 * The s390 AP bus as vfio-ap's host sees it (docs/hardware.md, "s390 vfio-ap"; ap_bus.c, ap_card.c,
 * ap_queue.c): /sys/bus/ap with its
 * masks, the cards of the host configuration (devices/ap/cardXX) and their queues
 * (cardXX/XX.YYYY), each queue bound to vfio_ap or to the default driver as apmask and aqmask say,
 * with vfio_ap's `status`. A mask write that would take an APQN away from an mdev fails EBUSY;
 * otherwise the queues are bound again (ap_bus_revise_bindings).
 */
export function placeApBus(model: DeviceModel, host: ApMatrixHost): void {
  const bus = model.bus('ap');
  if (model.get(['devices', 'ap'])) return;
  model.add(new HostDevice('ap', ['devices', 'ap'], undefined));
  const cardDrv = model.driver(bus, 'cex4card', { module: 'zcrypt_cex4' });
  const queueDrv = model.driver(bus, 'cex4queue', { module: 'zcrypt_cex4' });
  const vfioDrv = model.driver(bus, 'vfio_ap', { module: 'vfio_ap' });
  const queues: { dev: HostDevice; apid: number; apqi: number }[] = [];
  const sorted = (s: ReadonlySet<number>) => [...s].sort((a, b) => a - b);
  for (const apid of sorted(host.adapters)) {
    const card = `card${hex(apid, 2)}`;
    const cardDev = model.add(
      new HostDevice(card, ['devices', 'ap', card], bus, undefined, [['DEV_TYPE', '000D'], ['MODALIAS', 'ap:t0D'], ['MODE', 'cca']], {
        hwtype: '13\n',
        type: 'CEX7C\n',
        online: '1\n',
      }),
    );
    cardDrv.claimed.add(cardDev);
    model.bindNow(cardDev, cardDrv);
    for (const apqi of sorted(host.domains)) {
      const name = `${hex(apid, 2)}.${hex(apqi, 4)}`;
      const dev = model.add(new HostDevice(name, ['devices', 'ap', card, name], bus, undefined, [['MODE', 'cca']], { online: '1\n' }));
      // vfio_ap's queue attribute group (status_show): assigned, unassigned (no guest: never "in use").
      dev.hooks.set('vfio_ap', {
        probe: () => {
          dev.driverAttrs = [{ path: 'status', mode: 0o444, show: () => (host.assignedTo(apid, apqi) ? 'assigned\n' : 'unassigned\n') }];
        },
        remove: async () => {
          dev.driverAttrs = [];
        },
      });
      queues.push({ dev, apid, apqi });
      const drv = host.ownedByDefault(apid, apqi) ? queueDrv : vfioDrv;
      drv.claimed.add(dev);
      model.bindNow(dev, drv);
    }
  }

  /** ap_bus_revise_bindings: every queue to the driver the masks give it. */
  const revise = async () => {
    for (const q of queues) {
      const want = host.ownedByDefault(q.apid, q.apqi) ? queueDrv : vfioDrv;
      if (q.dev.driver === want) continue;
      want.claimed.add(q.dev);
      (want === vfioDrv ? queueDrv : vfioDrv).claimed.delete(q.dev);
      await model.unbind(q.dev);
      await model.bind(q.dev, want);
    }
  };

  /** apmask_store / aqmask_store: EINVAL unparsable; EBUSY if an APQN given back is an mdev's. */
  const maskStore = (which: 'apmask' | 'aqmask') => async (buf: Buffer) => {
    const next = parseApMaskChange(buf.toString('latin1'), host[which]);
    if (!next) fail(Errno.EINVAL, `${which}: not a mask`);
    const other = which === 'apmask' ? host.aqmask : host.apmask;
    for (const id of next) {
      if (host[which].has(id)) continue;
      for (const o of other) {
        const [apid, apqi] = which === 'apmask' ? [id, o] : [o, id];
        const holder = host.assignedTo(apid, apqi);
        if (holder) fail(Errno.EBUSY, `Userspace may not re-assign queue ${hex(apid, 2)}.${hex(apqi, 4)} already assigned to ${holder.uuid}`);
      }
    }
    host[which] = next;
    await revise();
    return buf.length;
  };

  const ro = (path: string, show: () => string): DriverAttr => ({ path, mode: 0o444, show });
  bus.attrs = [
    ro('ap_adapter_mask', () => `${formatApMask(host.adapters)}\n`),
    ro('ap_control_domain_mask', () => `${formatApMask(host.domains)}\n`),
    ro('ap_domain', () => `${sorted(host.domains)[0] ?? -1}\n`),
    ro('ap_max_adapter_id', () => `${host.max.apm}\n`),
    ro('ap_max_domain_id', () => `${host.max.aqm}\n`),
    ro('ap_usage_domain_mask', () => `${formatApMask(host.domains)}\n`),
    { path: 'apmask', mode: 0o644, show: () => `${formatApMask(host.apmask)}\n`, store: maskStore('apmask') },
    { path: 'aqmask', mode: 0o644, show: () => `${formatApMask(host.aqmask)}\n`, store: maskStore('aqmask') },
  ];
}
