import type { DeviceModel, HostDevice } from '../../devices/model';
import type { ParentProfile } from '../profile-types';
import { VendorVfioVf, gpuFor, vfioVgpuTypes } from './nvidia';
import type { ModelScope } from './types';

/**
 * NVIDIA vendor-specific VFIO (docs/hardware.md, "NVIDIA vendor-specific VFIO"): a parent profile whose
 * `pci.sriov.mdevOn` is `none` registers no mdev parent; when a VF binds to its driver the driver
 * adds the `vfAttrs` (nvidia/creatable_vgpu_types, nvidia/current_vgpu_type) to the VF, over the
 * GPU its `capacity` names, and registers it with VFIO (vfio-dev/vfioN, numbered with the mdevs, and
 * its IOMMU group's VFIO group device);
 * when the VF leaves the driver they go, with the VF's vGPU.
 */
export function attachVendorVfio(model: DeviceModel, p: ParentProfile, vfs: readonly HostDevice[], scope: ModelScope, bind = true): void {
  if (p.capacity.model !== 'nvidia-vgpu') throw new Error(`parent ${p.name}: vendor-specific VFIO needs the nvidia-vgpu capacity model`);
  const spec = { ...p.capacity, sriov: true, gpu: p.capacity.gpu ?? p.name };
  const gpu = gpuFor(spec, p.name, p.types, scope);
  const types = vfioVgpuTypes(p.types);
  const driverName = p.pci?.sriov?.vfDriver ?? p.pci!.driver;
  for (const dev of vfs) {
    const vf = new VendorVfioVf(gpu, dev.name, types);
    const byPath = new Map(vf.attrs().map((a) => [a.path.split('/').pop()!, a]));
    const attrs = Object.entries(p.vfAttrs ?? {}).map(([path, spec]) => {
      const a = byPath.get(spec.kind === 'nvidia-creatable-vgpu-types' ? 'creatable_vgpu_types' : 'current_vgpu_type')!;
      return { ...a, path };
    });
    // The driver's probe registers the VF with vfio-pci-core (its group device and vfio-dev/vfioN), then adds nvidia/.
    const probe = () => {
      model.registerVfio(dev);
      dev.driverAttrs = attrs;
    };
    dev.hooks.set(driverName, {
      probe,
      remove: async () => {
        dev.driverAttrs = [];
        vf.reset();
        model.unregisterVfio(dev);
      },
    });
    const drv = dev.bus!.drivers.get(driverName)!;
    if (dev.driver === drv) probe();
    else if (!dev.driver && bind) model.bindNow(dev, drv);
  }
}
