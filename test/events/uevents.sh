#!/bin/bash
# Records every uevent the kernel sends while mdev devices and the mtty parent come and go: each
# event's full environment, in SEQNUM order, one section per step. Needs a kernel with
# CONFIG_UEVENT_HELPER and a boot without the sample modules (run-scenario.sh --no-modules): the
# helper is installed first, then `modprobe mtty` is the first step.
# The helper runs once per event (asynchronously) and saves its environment as /proc/$$/environ
# shows it (the kernel's envp exactly; the shell adds nothing there).
EV=/tmp/ev
mkdir -p $EV
cat > /tmp/hotplug <<'HELPER'
#!/bin/sh
tr '\0' '\n' < /proc/$$/environ > /tmp/ev/.$SEQNUM && mv /tmp/ev/.$SEQNUM /tmp/ev/$SEQNUM
HELPER
chmod 755 /tmp/hotplug
echo /tmp/hotplug > /proc/sys/kernel/hotplug

# Waits until no helper has written anything for a while, then prints and forgets the events.
step() {
  local n=-1 m
  while :; do
    sleep 1
    m=$(ls -A $EV | wc -l)
    [ "$m" = "$n" ] && ! ls -A $EV | grep -q '^\.' && break
    n=$m
  done
  echo "## $1"
  for f in $(ls $EV | sort -n); do
    echo "--"
    cat "$EV/$f"
    rm "$EV/$f"
  done
}

# ---- steps: from here on the same on the kernel and on mdevfs (test/integration/uevents-kernel.test.ts
# runs this part with its own step, modprobe and rmmod) ----
run() { "$@" || echo "(exit $?)"; }
# bash, not dash, for writes: bash says which errno a failed write got.
w() { run bash -c "$1"; }

T=/sys/class/mdev_bus/mtty/mdev_supported_types
U1=83b8f4f2-509f-382f-3c1e-e6bfe0fa1001
U2=83b8f4f2-509f-382f-3c1e-e6bfe0fa1002
U3=83b8f4f2-509f-382f-3c1e-e6bfe0fa1003

run modprobe mtty
step "modprobe mtty"

w "echo $U1 > $T/mtty-2/create"
step "create $U1 (mtty-2)"

w "echo $U1 > /sys/bus/mdev/drivers/mtty/unbind"
step "unbind $U1"

w "echo 1 > /sys/bus/mdev/devices/$U1/remove"
step "remove $U1 (unbound)"

w "echo $U2 > $T/mtty-1/create"
step "create $U2 (mtty-1)"

w "echo 1 > /sys/bus/mdev/devices/$U2/remove"
step "remove $U2 (bound)"

# Synthetic events (kobject_synth_uevent) on each kind of kobject the tree has.
w "echo $U1 > $T/mtty-2/create"
step "create $U1 again"
w "echo add > /sys/bus/mdev/devices/$U1/uevent"
step "write 'add' to the device's uevent"
w "echo 'change $U3 A=1 bc=Xy' > /sys/bus/mdev/devices/$U1/uevent"
step "write 'change UUID A=1 bc=Xy' to the device's uevent"
w "echo change > /sys/bus/mdev/devices/$U1/vfio-dev/vfio0/uevent"
step "write 'change' to vfio-dev/vfio0/uevent"
w "echo change > /sys/devices/virtual/mtty/mtty/uevent"
step "write 'change' to the parent's uevent"
w "echo add > /sys/bus/mdev/drivers/mtty/uevent"
step "write 'add' to bus/mdev/drivers/mtty/uevent"
w "echo add > /sys/module/mtty/uevent"
step "write 'add' to module/mtty/uevent"
w "echo add > /sys/bus/mdev/uevent"
step "write 'add' to bus/mdev/uevent"
w "echo bogus > /sys/bus/mdev/devices/$U1/uevent"
w "echo 'add $U3 a-b=c' > /sys/bus/mdev/devices/$U1/uevent"
step "invalid writes to the device's uevent"

# A create the vendor refuses after device_add: mtty has 24 ports, mtty-2 takes 2, $U1 has 2.
for i in $(seq 10 20); do echo "83b8f4f2-509f-382f-3c1e-e6bfe0fa10$i" > $T/mtty-2/create; done 2>&1
step "(fill mtty: 11 more mtty-2 devices)"
w "echo 83b8f4f2-509f-382f-3c1e-e6bfe0fa1099 > $T/mtty-2/create"
step "create that the vendor refuses (ENOSPC)"
for i in $(seq 10 19); do echo 1 > /sys/bus/mdev/devices/83b8f4f2-509f-382f-3c1e-e6bfe0fa10$i/remove; done 2>&1
step "(remove 10 of them)"
w "echo 83b8f4f2-509f-382f-3c1e-e6bfe0fa1020 > /sys/bus/mdev/drivers/mtty/unbind"
step "unbind 83b8f4f2-509f-382f-3c1e-e6bfe0fa1020"

# Parent unregistration with a bound ($U1) and an unbound child.
run rmmod mtty
step "rmmod mtty"
