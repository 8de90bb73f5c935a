import { Listing, named, numbered } from './context';

/**
 * The listings that more than one subsystem file names: the buses' directories (buses.ts builds
 * them, mdev.ts bus/mdev, module.ts links to a driver) and the classes (class.ts builds class/, a
 * device registered with VFIO shows its vfio-dev/vfioN and links to class/vfio-dev). Each is still
 * built and invalidated by one subsystem, from the listing here; they live apart from it only so
 * that the files linking into them need not import it (mdev.ts is imported by class.ts).
 */

/** bus/: a directory per bus (pci always, mdev, and any other bus while it has a device). */
export const BUSES = named(['bus']);

/** bus/<bus>/drivers/: a directory per driver of the bus, named as the driver is. */
export const busDrivers = (bus: string): Listing<string> => named([...BUSES.entryPath(bus), 'drivers']);

/** bus/<bus>/devices/: a link per device on the bus, named by nameOf. */
export const busDevices = <D>(bus: string, nameOf: (d: D) => string): Listing<D> =>
  new Listing<D>([...BUSES.entryPath(bus), 'devices'], nameOf);

/** bus/<bus>/drivers/<driver>/: besides the driver's own files, a link per device bound to it, named by nameOf. */
export const driverDevices = <D>(bus: string, driver: string, nameOf: (d: D) => string): Listing<D> =>
  new Listing<D>(busDrivers(bus).entryPath(driver), nameOf);

/** The mdev bus (mdev.ts'): bus/mdev. */
export const MDEV_BUS = 'mdev';

/** bus/mdev/drivers/: the loaded vendor modules' mdev drivers. */
export const MDEV_DRIVERS = busDrivers(MDEV_BUS);

/** class/: a directory per class (mdev_bus, the vfio core's, a loaded vendor module's). */
export const CLASSES = named(['class']);

/** class/vfio-dev/: a link per device registered with VFIO (6.1), named vfioN. */
export const VFIO_DEVICES = numbered([...CLASSES.path, 'vfio-dev'], 'vfio');

/**
 * A device's vfio-dev/vfioN, below the device's directory: the class device of class vfio-dev
 * that VFIO registers for it, in a directory named after its class (class/vfio-dev/vfioN links to it).
 */
export const vfioDevEntry = (index: number): string[] => [VFIO_DEVICES.name, VFIO_DEVICES.nameOf(index)];
