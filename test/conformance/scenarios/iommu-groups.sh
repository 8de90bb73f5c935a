# Conformance scenario: iommu_group numbering (lowest free number first) and reuse across parents.
# Run as root with bash on a fresh system (mtty, mdpy, mbochs registered, no mdev devices).
MT=/sys/class/mdev_bus/mtty/mdev_supported_types
MP=/sys/class/mdev_bus/mdpy/mdev_supported_types
MB=/sys/class/mdev_bus/mbochs/mdev_supported_types
sec() { printf '\n######## %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; eval "$*" 2>&1; printf '[rc=%s]\n' "$?"; }
avail() { local t v; for t in $MT/*/ $MP/*/ $MB/*/; do t=${t%/}; read -r v < "$t/available_instances"
            printf '%s=%s ' "${t##*/}" "$v"; done; echo; }
groups() { local d; for d in /sys/bus/mdev/devices/*; do [ -e "$d" ] || continue
             printf '%s group=%s\n' "${d##*/}" "$(basename "$(readlink "$d/iommu_group")")"; done; }
igls() { run "ls /sys/kernel/iommu_groups/"
         local g; for g in /sys/kernel/iommu_groups/*/; do [ -e "$g" ] || continue; g=${g%/}
           run "ls $g/devices/"
           for l in "$g"/devices/*; do run "readlink $l"; done; done; }
B=/sys/bus/mdev/devices
U1=22222222-0000-0000-0000-000000000001
U2=22222222-0000-0000-0000-000000000002
U3=22222222-0000-0000-0000-000000000003
U4=22222222-0000-0000-0000-000000000004
U5=22222222-0000-0000-0000-000000000005
U6=22222222-0000-0000-0000-000000000006
U0=22222222-0000-0000-0000-000000000000

sec "before any device"
igls

sec "create four devices across parents"
run "echo $U1 > $MT/mtty-1/create"
run "echo $U2 > $MP/mdpy-vga/create"
run "echo $U3 > $MB/mbochs-small/create"
run "echo $U4 > $MT/mtty-2/create"
groups
for u in $U1 $U2 $U3 $U4; do run "readlink $B/$u/iommu_group"; run "readlink -f $B/$u/iommu_group"; done
igls

sec "remove the 2nd, create a new one (gets the lowest free number)"
run "echo 1 > $B/$U2/remove"
groups
igls
run "echo $U5 > $MB/mbochs-large/create"
groups
run "echo $U6 > $MT/mtty-1/create"
groups
igls

sec "remove the 1st and 3rd, create one with a UUID that sorts first"
run "echo 1 > $B/$U1/remove"
run "echo 1 > $B/$U3/remove"
run "ls /sys/kernel/iommu_groups/"
run "echo $U0 > $MP/mdpy-hd/create"
run "echo $U1 > $MP/mdpy-hd/create"
groups
igls

sec "remove all, then create again (numbering restarts at 0)"
for d in $B/*; do echo 1 > $d/remove || echo "remove $d failed"; done
run "ls /sys/kernel/iommu_groups/"
run "echo $U4 > $MP/mdpy-xga/create"
groups
igls
avail
