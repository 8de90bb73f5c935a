import type { ParentProfile, Profile } from '../profile-types';

/**
 * One I/O subchannel bound to vfio_ccw (docs/hardware.md, "s390 vfio-ccw"): type vfio_ccw-io,
 * "I/O subchannel (Non-QDIO)", device_api vfio-ccw, no description, one instance (EUSERS in 6.1;
 * the older vendor counter answered EPERM). No device attributes.
 */
function subchannel(schid: string): ParentProfile {
  return {
    name: schid,
    path: `devices/css0/${schid}`,
    bus: { name: 'css', driver: 'vfio_ccw' },
    mdevDriver: 'vfio_ccw_mdev',
    module: 'vfio_ccw',
    capacity: { model: 'counter', max: 1, legacyErrno: 'EPERM' },
    types: [{ name: 'io', prettyName: 'I/O subchannel (Non-QDIO)', deviceApi: 'vfio-ccw' }],
  };
}

/** Two subchannels, as a host with two DASDs passed through. */
export const CCW: Profile = {
  description: 's390 vfio-ccw: I/O subchannels 0.0.0008 and 0.0.0009 on the css bus',
  parents: [subchannel('0.0.0008'), subchannel('0.0.0009')],
};
