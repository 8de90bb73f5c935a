/**
 * What the kernel gives devices of the buses mdev parents sit on besides PCI, so a profile only
 * names the bus: s390 `css` (drivers/s390/cio/css.c: css_uevent, the subchannel attributes) and
 * vfio-ap's `matrix` bus (drivers/s390/crypto/vfio_ap_drv.c).
 */
export interface KnownBus {
  /** uevent variables after DRIVER=. */
  uevent?: Record<string, string>;
  /** Read-only attributes of each device. */
  attrs?: Record<string, string>;
  /** The device has driver_override. */
  driverOverride?: boolean;
  /** The bound driver's module (a `module` link in the driver's directory). */
  module?: string;
  /** false: suppress_bind_attrs. */
  bindAttrs?: boolean;
  /** Module that registered the root device (its `module` link). */
  rootModule?: string;
}

export const KNOWN_BUSES: Record<string, KnownBus> = {
  // An I/O subchannel (type 0): css_uevent's ST and MODALIAS, type_show and modalias_show.
  css: {
    uevent: { ST: '0', MODALIAS: 'css:t0' },
    attrs: { type: '0\n', modalias: 'css:t0\n' },
    driverOverride: true,
    module: 'vfio_ccw',
  },
  // matrix_bus has no uevent callback; vfio_ap_drv sets suppress_bind_attrs and no owner.
  matrix: { bindAttrs: false, rootModule: 'vfio_ap' },
};
