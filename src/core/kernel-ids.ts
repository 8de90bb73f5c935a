import { Ida } from '../base/ida';

/**
 * The kernel's system-wide numberings of one emulation, shared by the mdev core and the host's
 * devices as the kernel shares them: an IOMMU group number is a PCI function's or an mdev's from
 * one ida (kernel/iommu_groups), a vfio-dev/vfioN index an mdev's or a vendor-VFIO VF's.
 */
export class KernelIds {
  /** iommu_group_ida. */
  readonly iommuGroups = new Ida();
  /** vfio.device_ida: vfio-dev/vfioN. */
  readonly vfioDevices = new Ida();
  /** vfio.group_ida: minors of the VFIO group character devices. */
  readonly vfioGroupMinors = new Ida();

  /** Back to the numbering of a fresh boot (reset: nothing holds a number any more). */
  clear(): void {
    for (const ida of [this.iommuGroups, this.vfioDevices, this.vfioGroupMinors]) ida.clear();
  }
}
