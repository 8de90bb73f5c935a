#!/bin/sh
# Does a tiny mdev manager cope with a create the vendor refuses (ENOSPC)? A runtime fault makes
# the first create fail, the manager must retry, and the journal shows what it wrote.
# Run it over a fresh tree:  mdevfs exec -- sh docs/examples/manager-enospc.sh
set -eu

TYPES=/sys/class/mdev_bus/mtty/mdev_supported_types

# The manager under test: makes N devices of TYPE, retrying a refused create once.
manager() {
  type=$1 n=$2 i=0
  while [ "$i" -lt "$n" ]; do
    uuid=$(cat /proc/sys/kernel/random/uuid)
    if ! echo "$uuid" > "$TYPES/$type/create" 2>/dev/null; then
      echo "manager: create of $uuid refused, retrying" >&2
      echo "$uuid" > "$TYPES/$type/create" || return 1
    fi
    i=$((i + 1))
  done
}

mdevfs ctl reset                      # the profile's start state, whatever ran before
rule=$(mdevfs ctl fault add --op create --type mtty-2 --errno ENOSPC --times 1)
mark=$(mdevfs ctl mark)

manager mtty-2 3

# Three devices, though one create was refused...
test "$(ls /sys/bus/mdev/devices | wc -l)" -eq 3
test "$(cat "$TYPES/mtty-2/available_instances")" -eq 9
# ...because the rule fired once, and the journal has the refused write.
mdevfs ctl fault list --json | grep -q "\"id\":$rule,.*\"fired\":1"
mdevfs ctl journal --json | grep '"op":"create"' | grep '"errno":"ENOSPC"' | grep -q "\"fault\":$rule"
# Every uevent of the three creates was sent: the last device's bind came.
mdevfs ctl wait --event "bind:$(ls /sys/bus/mdev/devices | tail -n 1)" --since "$mark" --timeout 5 > /dev/null
echo "ok: the manager retried the create refused with ENOSPC"
