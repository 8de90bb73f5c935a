import { formatApMask } from '../models/ap';
import type { Profile } from '../profile-types';

/** A 256-bit AP mask with every bit set but `cleared` (ids given to vfio_ap). */
function allBut(cleared: number[]): string {
  return formatApMask(new Set(Array.from({ length: 256 }, (_, i) => i).filter((i) => !cleared.includes(i))));
}

/**
 * s390 vfio-ap: the AP matrix device (docs/hardware.md, "s390 vfio-ap"). 6.1 counts up to
 * MAX_ZDEV_ENTRIES_EXT (65536) in the core (EUSERS); the 4.17-era driver counted itself (EPERM).
 * The host: APXA (adapter and domain ids up to 255), cards 05, 06 and 07 with usage domains 0004,
 * 0047 and 00ab; apmask/aqmask give adapters 05 and 06 and domains 0004 and 00ab to vfio_ap, so
 * 07.0047 stays with the default zcrypt drivers (EADDRNOTAVAIL).
 */
export const AP: Profile = {
  description: 's390 vfio-ap: the matrix device, AP cards 05-07 with domains 0004, 0047, 00ab',
  parents: [
    {
      name: 'matrix',
      path: 'devices/vfio_ap/matrix',
      bus: { name: 'matrix', driver: 'vfio_ap' },
      mdevDriver: 'vfio_ap_mdev',
      module: 'vfio_ap',
      capacity: { model: 'counter', max: 65536, legacyErrno: 'EPERM' },
      types: [{ name: 'passthrough', prettyName: 'VFIO AP Passthrough Device', deviceApi: 'vfio-ap' }],
      apHost: {
        maxAdapterId: 255,
        maxDomainId: 255,
        apmask: allBut([5, 6]),
        aqmask: allBut([4, 0xab]),
        adapters: [5, 6, 7],
        domains: [4, 0x47, 0xab],
      },
      // The kernel's order (vfio_ap_mdev_attrs); guest_matrix came with dynamic configuration (6.0).
      deviceAttrs: {
        assign_adapter: { kind: 'ap-assign', target: 'adapter' },
        unassign_adapter: { kind: 'ap-unassign', target: 'adapter' },
        assign_domain: { kind: 'ap-assign', target: 'domain' },
        unassign_domain: { kind: 'ap-unassign', target: 'domain' },
        assign_control_domain: { kind: 'ap-assign', target: 'control-domain' },
        unassign_control_domain: { kind: 'ap-unassign', target: 'control-domain' },
        control_domains: { kind: 'ap-control-domains' },
        matrix: { kind: 'ap-matrix' },
        guest_matrix: { kind: 'ap-guest-matrix', abi: ['6.1'] },
      },
    },
  ],
};
