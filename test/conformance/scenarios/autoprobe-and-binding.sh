# Conformance scenario: bus/mdev's drivers_autoprobe and drivers_probe, and the mdev drivers'
# unbind and bind (drivers/base/bus.c, drivers/base/dd.c, drivers/vfio/mdev/mdev_core.c and
# mdev_driver.c): what a device created with autoprobe off has, what probing, unbinding and
# binding it do, and the remove of an unbound device, with available_instances after each step.
# Run as root with bash on a fresh system (mtty, mdpy, mbochs registered, no mdev devices).
MT=/sys/class/mdev_bus/mtty/mdev_supported_types
MP=/sys/class/mdev_bus/mdpy/mdev_supported_types
MB=/sys/class/mdev_bus/mbochs/mdev_supported_types
sec() { printf '\n######## %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; eval "$*" 2>&1; printf '[rc=%s]\n' "$?"; }
avail() { local t v; for t in $MT/*/ $MP/*/ $MB/*/; do t=${t%/}; read -r v < "$t/available_instances"
            printf '%s=%s ' "${t##*/}" "$v"; done; echo; }
step() { run "$@"; avail; }
B=/sys/bus/mdev
AP=$B/drivers_autoprobe
# What a device has: its files, its driver and group links, its vfio-dev, its uevent, and the
# VFIO and IOMMU group entries and driver links of the whole system.
show() {
  local d=$B/devices/$1
  run "ls $d"
  run "readlink $d/driver $d/iommu_group"
  run "ls $d/vfio-dev"
  run "cat $d/uevent"
  run "ls /sys/class/vfio /sys/class/vfio-dev /sys/kernel/iommu_groups"
  run "ls /sys/devices/virtual/vfio"
  run "ls $B/drivers/mtty $B/drivers/mdpy $B/drivers/mbochs"
}
U1=3333abcd-0000-0000-0000-00000000000a
U2=33333333-0000-0000-0000-000000000002
U3=33333333-0000-0000-0000-000000000003

sec "drivers_autoprobe: every write is accepted, buf[0] != '0' is stored"
run "stat -c '%a %n' $AP $B/drivers_probe $B/drivers/mtty/bind $B/drivers/mtty/unbind"
run "cat $AP"
for w in "echo zz" "echo 0" "echo 1" "echo 00" "echo 10" "printf 0" "echo" "echo ' 0'" "echo 0zz" \
         "printf ''" "echo -1" "printf '0\n\n'" "echo 0x1"; do
  run "$w > $AP; cat $AP"
done
run ": > $AP; cat $AP"

sec "autoprobe off, then a create"
run "echo 0 > $AP; cat $AP"
avail
step "echo $U1 > $MT/mtty-2/create"
show $U1

sec "drivers_probe: a bound device, then names of no device"
step "echo $U1 > $B/drivers_probe"
run "printf $U1 > $B/drivers_probe"
run "echo ${U1^^} > $B/drivers_probe            # upper case"
run "echo 33333333-0000-0000-0000-000000000009 > $B/drivers_probe"
run "echo > $B/drivers_probe"
run "echo mtty > $B/drivers_probe"
show $U1

sec "unbind: the wrong driver, then its own, then again"
step "echo $U1 > $B/drivers/mdpy/unbind"
step "echo $U1 > $B/drivers/mtty/unbind"
step "echo $U1 > $B/drivers/mtty/unbind"
show $U1

sec "drivers_probe of the unbound device"
step "echo $U1 > $B/drivers_probe"
show $U1

sec "bind: its own driver, another driver, a device of no one"
step "echo $U1 > $B/drivers/mtty/bind"
step "echo $U1 > $B/drivers/mdpy/bind"
step "echo 33333333-0000-0000-0000-000000000009 > $B/drivers/mtty/bind"
show $U1

sec "autoprobe off: a core-counted parent (mdpy), unbound, then removed"
step "echo $U2 > $MP/mdpy-vga/create"
step "echo $U2 > $B/drivers/mdpy/unbind"
show $U2
step "echo 1 > $B/devices/$U2/remove"
run "ls $B/devices"

sec "remove of the unbound mtty device"
step "echo 1 > $B/devices/$U1/remove"
run "ls $B/devices /sys/class/vfio /sys/class/vfio-dev /sys/kernel/iommu_groups"
run "ls $B/drivers/mtty"

sec "autoprobe on again: mbochs, unbound, probed, removed"
run "echo 1 > $AP; cat $AP"
step "echo $U3 > $MB/mbochs-small/create"
show $U3
step "echo $U3 > $B/drivers/mbochs/unbind"
step "echo $U3 > $B/drivers_probe"
show $U3
step "echo 1 > $B/devices/$U3/remove"
run "ls $B/devices"
run "cat $AP"
