# Conformance scenario: Debian's mdevctl 1.2.0 as a client (types, list, start, stop, define,
# undefine, modify, capacity errors). Every UUID is given with -u, so the output is deterministic.
# Run as root with bash on a fresh system (mtty, mdpy, mbochs registered, no mdev devices);
# /etc/mdevctl.d must be absent or empty (the emulator harness binds a scratch directory there).
MT=/sys/class/mdev_bus/mtty/mdev_supported_types
MP=/sys/class/mdev_bus/mdpy/mdev_supported_types
MB=/sys/class/mdev_bus/mbochs/mdev_supported_types
sec() { printf '\n######## %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; eval "$*" 2>&1; printf '[rc=%s]\n' "$?"; }
avail() { local t v; for t in $MT/*/ $MP/*/ $MB/*/; do t=${t%/}; read -r v < "$t/available_instances"
            printf '%s=%s ' "${t##*/}" "$v"; done; echo; }
U=55555555-0000-0000-0000-000000000001
U2=55555555-0000-0000-0000-000000000002
U3=55555555-0000-0000-0000-000000000003
U4=55555555-0000-0000-0000-000000000004
NX=55555555-0000-0000-0000-0000000000ff

sec "setup"
run "mkdir -p /etc/mdevctl.d/scripts.d/callouts /etc/mdevctl.d/scripts.d/notifiers"
avail

sec "types / list on an empty system"
run "mdevctl types"
run "mdevctl types -p mdpy"
run "mdevctl types --dumpjson"
run "mdevctl list"
run "mdevctl list -d"
run "mdevctl list --dumpjson"

sec "start a transient device"
run "mdevctl start -u $U -p mtty -t mtty-2"
avail
run "mdevctl list"
run "mdevctl list -d"
run "mdevctl list -u $U"
run "mdevctl list --dumpjson"
run "ls /sys/bus/mdev/devices/"
run "mdevctl start -u $U -p mtty -t mtty-2            # already exists"
run "mdevctl start -u $U -p mdpy -t mdpy-vga          # already exists, other parent"
run "mdevctl start -u 55555555-0000-0000-0000-00000000000X -p mtty -t mtty-1   # bad UUID"
run "mdevctl start -u $U3 -p mtty -t mtty-9           # no such type"
run "mdevctl start -u $U3 -p nosuchparent -t mtty-1   # no such parent"
run "mdevctl start -u $U3                             # not defined, no parent/type"
run "mdevctl start -u $U3 -p mtty                     # no type"

sec "define a persistent device, start it"
run "mdevctl define -u $U2 -p mdpy -t mdpy-vga"
run "find /etc/mdevctl.d -type f | sort"
run "cat /etc/mdevctl.d/mdpy/$U2; echo"
run "mdevctl list -d"
run "mdevctl list"
run "mdevctl define -u $U2 -p mdpy -t mdpy-vga        # already defined"
run "mdevctl start -u $U2"
avail
run "mdevctl list"
run "mdevctl list -d"
run "mdevctl types -p mdpy"

sec "define with attributes (modify --addattr)"
run "mdevctl define -u $U4 -p mtty -t mtty-1"
run "mdevctl modify -u $U4 --addattr=power/control --value=auto"
run "mdevctl modify -u $U4 --addattr=vendor/sample_mdev_dev --value=x"
run "mdevctl list -d -u $U4"
run "mdevctl list -d -u $U4 --dumpjson"
run "cat /etc/mdevctl.d/mtty/$U4; echo"
run "mdevctl start -u $U4                               # the write to the read-only vendor attribute fails"
run "ls /sys/bus/mdev/devices/"
run "mdevctl modify -u $U4 --delattr --index=1"
run "mdevctl list -d -u $U4"
run "mdevctl list -d -u $U4 --dumpjson"
run "mdevctl start -u $U4"
run "cat /sys/bus/mdev/devices/$U4/power/control"
run "mdevctl list"
avail

sec "stop"
run "mdevctl stop -u $U"
avail
run "mdevctl list"
run "mdevctl stop -u $U                                 # already stopped"
run "mdevctl stop -u $NX                                # never existed"
run "mdevctl list -d"

sec "undefine"
run "mdevctl undefine -u $U2                            # still running: stays active"
run "mdevctl list"
run "mdevctl list -d"
run "mdevctl undefine -u $U2                            # not defined any more"
run "mdevctl stop -u $U2"
run "mdevctl stop -u $U4"
run "mdevctl undefine -u $U4"
run "find /etc/mdevctl.d -type f | sort"
run "mdevctl list"
avail

sec "capacity: mdpy (4 per parent) via mdevctl"
for i in 1 2 3 4; do run "mdevctl start -u 66666666-0000-0000-0000-00000000000$i -p mdpy -t mdpy-xga"; done
avail
run "mdevctl start -u 66666666-0000-0000-0000-000000000005 -p mdpy -t mdpy-xga"
run "mdevctl start -u 66666666-0000-0000-0000-000000000005 -p mdpy -t mdpy-hd"
run "echo 66666666-0000-0000-0000-000000000005 > $MP/mdpy-hd/create    # the kernel's own errno"
run "mdevctl types -p mdpy"

sec "capacity: mtty (24 ports) via mdevctl"
for i in $(seq 10 19); do echo 77777777-0000-0000-0000-0000000000$i > $MT/mtty-2/create || echo "create $i failed"; done
echo 77777777-0000-0000-0000-000000000020 > $MT/mtty-1/create || echo "create 20 failed"
avail
run "mdevctl start -u 77777777-0000-0000-0000-000000000099 -p mtty -t mtty-2      # uses 2 of the 3 free ports"
avail
run "mdevctl start -u 77777777-0000-0000-0000-000000000096 -p mtty -t mtty-2      # 1 port left"
run "echo 77777777-0000-0000-0000-000000000096 > $MT/mtty-2/create    # the kernel's own errno"
run "mdevctl start -u 77777777-0000-0000-0000-000000000098 -p mtty -t mtty-1      # the last port"
run "mdevctl start -u 77777777-0000-0000-0000-000000000097 -p mtty -t mtty-1"
avail
run "mdevctl types"
run "mdevctl list"
run "mdevctl list -p mdpy"
