# Conformance scenario: the complete mdev-related sysfs tree (names, stat, link targets, contents)
# after creating one device on each parent, and again after removing them.
# vfio-dev/ is left out everywhere (optional in the emulator; see optional-internals.sh).
# Run as root with bash on a fresh system (mtty, mdpy, mbochs registered, no mdev devices).
MT=/sys/class/mdev_bus/mtty/mdev_supported_types
MP=/sys/class/mdev_bus/mdpy/mdev_supported_types
MB=/sys/class/mdev_bus/mbochs/mdev_supported_types
sec() { printf '\n######## %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; eval "$*" 2>&1; printf '[rc=%s]\n' "$?"; }
avail() { local t v; for t in $MT/*/ $MP/*/ $MB/*/; do t=${t%/}; read -r v < "$t/available_instances"
            printf '%s=%s ' "${t##*/}" "$v"; done; echo; }
ROOTS="/sys/class/mdev_bus/ /sys/bus/mdev /sys/kernel/iommu_groups /sys/devices/virtual/mtty /sys/devices/virtual/mdpy /sys/devices/virtual/mbochs"
U1=44444444-0000-0000-0000-000000000001
U2=44444444-0000-0000-0000-000000000002
U3=44444444-0000-0000-0000-000000000003
D1=/sys/devices/virtual/mtty/mtty/$U1
D2=/sys/devices/virtual/mdpy/mdpy/$U2
D3=/sys/devices/virtual/mbochs/mbochs/$U3
STAT="stat -c '%A %U:%G size=%s %F %n'"

sec "create one device per parent"
avail
run "echo $U1 > $MT/mtty-2/create"
run "echo $U2 > $MP/mdpy-vga/create"
run "echo $U3 > $MB/mbochs-large/create"
avail

sec "find (vfio-dev pruned)"
run "find $ROOTS -path '*/vfio-dev' -prune -o -print | sort"

sec "stat of every entry of the device directories"
for d in $D1 $D2 $D3; do
  run "find $d -path '*/vfio-dev' -prune -o -print | sort | xargs $STAT"
done

sec "stat of every type directory and its entries"
for t in $MT/* $MP/* $MB/*; do
  run "find $t/ | sort | xargs $STAT"
done
run "$STAT /sys/class/mdev_bus $MT $MP $MB /sys/class/mdev_bus/*"

sec "every symlink and its target"
run "find $ROOTS -path '*/vfio-dev' -prune -o -type l -print | sort | while read -r l; do printf '%s -> %s\n' \"\$l\" \"\$(readlink \"\$l\")\"; done"

sec "contents of every readable attribute (grep -r ., sorted; errors included)"
run "grep -r --exclude-dir=vfio-dev . $D1 $D2 $D3 2>&1 | sort"
run "grep -r . $MT/ $MP/ $MB/ 2>&1 | sort"
run "grep -r . /sys/bus/mdev/ 2>&1 | sort"

sec "remove all devices"
run "echo 1 > $D1/remove"
run "echo 1 > /sys/bus/mdev/devices/$U2/remove"
run "echo 1 > $MB/mbochs-large/devices/$U3/remove"
avail

sec "find after removal"
run "find $ROOTS -path '*/vfio-dev' -prune -o -print | sort"
run "find $ROOTS -type l -print | sort | while read -r l; do printf '%s -> %s\n' \"\$l\" \"\$(readlink \"\$l\")\"; done"
