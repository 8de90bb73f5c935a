#!/bin/bash
# Records every uevent the kernel sends while the mdev bus's autoprobe is off and an mtty device is
# probed, unbound, bound and removed through bus/mdev (drivers_probe, the driver's unbind and bind):
# each event's full environment, in SEQNUM order, one section per step. Set up as uevents.sh:
# needs a kernel with CONFIG_UEVENT_HELPER and a boot without the sample modules
# (run-scenario.sh --no-modules): the helper is installed first, then `modprobe mtty` is the first step.
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
B=/sys/bus/mdev
U1=83b8f4f2-509f-382f-3c1e-e6bfe0fa2001

run modprobe mtty
step "modprobe mtty"

w "echo 0 > $B/drivers_autoprobe"
step "autoprobe off"

w "echo $U1 > $T/mtty-2/create"
step "create $U1 (mtty-2) with autoprobe off"

w "echo $U1 > $B/drivers_probe"
step "drivers_probe $U1 (bound)"

w "echo $U1 > $B/drivers/mtty/unbind"
step "unbind $U1"

w "echo $U1 > $B/drivers_probe"
step "drivers_probe $U1 (unbound)"

w "echo $U1 > $B/drivers/mtty/bind"
step "bind $U1 to mtty"

w "echo 1 > $B/devices/$U1/remove"
step "remove $U1 (unbound)"

w "echo 1 > $B/drivers_autoprobe"
step "autoprobe on"

w "echo $U1 > $T/mtty-1/create"
step "create $U1 (mtty-1) with autoprobe on"
