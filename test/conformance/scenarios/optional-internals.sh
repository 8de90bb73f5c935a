# Informational scenario: kernel internals around mdev devices that the emulator treats as
# optional: vfio-dev/vfioN, /sys/kernel/iommu_groups/N contents, /sys/class/vfio-dev,
# /sys/module/<sample>, the parents' uevent and /sys/class/<parent-class>.
# Run as root with bash on a fresh system (mtty, mdpy, mbochs registered, no mdev devices).
MT=/sys/class/mdev_bus/mtty/mdev_supported_types
MP=/sys/class/mdev_bus/mdpy/mdev_supported_types
MB=/sys/class/mdev_bus/mbochs/mdev_supported_types
sec() { printf '\n######## %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; eval "$*" 2>&1; printf '[rc=%s]\n' "$?"; }
avail() { local t v; for t in $MT/*/ $MP/*/ $MB/*/; do t=${t%/}; read -r v < "$t/available_instances"
            printf '%s=%s ' "${t##*/}" "$v"; done; echo; }
STAT="stat -c '%A %U:%G size=%s %F %n'"
U1=88888888-0000-0000-0000-000000000001
U2=88888888-0000-0000-0000-000000000002
D1=/sys/devices/virtual/mtty/mtty/$U1

sec "before any device"
run "ls /sys/class/vfio-dev/ /sys/class/vfio/ 2>&1"
run "ls /sys/devices/virtual/vfio-dev 2>&1"

run "echo $U1 > $MT/mtty-1/create"
run "echo $U2 > $MP/mdpy-vga/create"

sec "vfio-dev/vfioN"
run "ls $D1/vfio-dev"
V=$(ls $D1/vfio-dev)
run "find $D1/vfio-dev | sort"
run "find $D1/vfio-dev | sort | xargs $STAT"
run "find $D1/vfio-dev -type l | sort | while read -r l; do printf '%s -> %s\n' \"\$l\" \"\$(readlink \"\$l\")\"; done"
run "grep -r . $D1/vfio-dev 2>&1 | sort"
run "cat $D1/vfio-dev/$V/uevent | od -c"
run "ls /sys/bus/mdev/devices/$U2/vfio-dev"
run "ls /sys/class/vfio-dev/"
run "for l in /sys/class/vfio-dev/*; do printf '%s -> %s\n' \$l \$(readlink \$l); done"
run "ls /sys/class/vfio/ 2>&1"

sec "/sys/kernel/iommu_groups/N"
G=$(basename "$(readlink $D1/iommu_group)")
run "ls /sys/kernel/iommu_groups/$G"
run "find /sys/kernel/iommu_groups/$G | sort | xargs $STAT"
run "cat /sys/kernel/iommu_groups/$G/name"
run "cat /sys/kernel/iommu_groups/$G/type"
run "cat /sys/kernel/iommu_groups/$G/reserved_regions | od -c | head -5"
run "stat -c '%A %U:%G size=%s %F %n' /sys/kernel/iommu_groups"

sec "parents: uevent, /sys/class/<class>"
for p in mtty mdpy mbochs; do
  run "cat /sys/devices/virtual/$p/$p/uevent | od -c"
  run "ls /sys/class/$p/"
  run "readlink /sys/class/$p/$p"
  run "readlink /sys/devices/virtual/$p/$p/subsystem"
  run "grep -r . /sys/devices/virtual/$p/$p/power 2>&1 | sort"
done
run "for d in /sys/dev/char/*; do case \$(readlink \$d) in *virtual/mtty*|*virtual/mdpy*|*virtual/mbochs*|*vfio*) printf '%s -> %s\n' \$d \$(readlink \$d);; esac; done"

sec "/sys/module/<sample>"
for m in mtty mdpy mbochs; do
  run "ls /sys/module/$m"
  run "ls /sys/module/$m/drivers /sys/module/$m/holders"
  run "for l in /sys/module/$m/drivers/*; do printf '%s -> %s\n' \$l \$(readlink \$l); done"
  run "cat /sys/module/$m/initstate /sys/module/$m/refcnt"
done
run "ls /sys/module/vfio /sys/module/mdev 2>&1"

sec "device uevent after unbind from its driver (no DRIVER=)"
run "echo $U2 > /sys/bus/mdev/drivers/mdpy/unbind"
run "cat /sys/bus/mdev/devices/$U2/uevent | od -c"
run "ls /sys/bus/mdev/devices/$U2"
run "ls /sys/kernel/iommu_groups/"
avail
