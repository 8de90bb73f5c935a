# Conformance scenario: every error case of writing to <mdev>/remove (docs/mdev-abi.md, "Writing remove"),
# stale file descriptors, and available_instances of all types after every step.
# Run as root with bash on a fresh system (mtty, mdpy, mbochs registered, no mdev devices).
MT=/sys/class/mdev_bus/mtty/mdev_supported_types
MP=/sys/class/mdev_bus/mdpy/mdev_supported_types
MB=/sys/class/mdev_bus/mbochs/mdev_supported_types
sec() { printf '\n######## %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; eval "$*" 2>&1; printf '[rc=%s]\n' "$?"; }
avail() { local t v; for t in $MT/*/ $MP/*/ $MB/*/; do t=${t%/}; read -r v < "$t/available_instances"
            printf '%s=%s ' "${t##*/}" "$v"; done; echo; }
step() { run "$@"; avail; }
devs() { printf 'devices: '; ls /sys/bus/mdev/devices/ | tr '\n' ' '; echo; }
u() { printf '11111111-0000-0000-0000-0000000000%02d' "$1"; }
B=/sys/bus/mdev/devices

sec "setup: 16 devices (01-02 mtty-2, 03-06 mdpy-vga, 07-16 mbochs-small)"
avail
for i in 1 2; do echo $(u $i) > $MT/mtty-2/create || echo "create $i failed"; done
for i in 3 4 5 6; do echo $(u $i) > $MP/mdpy-vga/create || echo "create $i failed"; done
for i in 7 8 9 10 11 12 13 14 15 16; do echo $(u $i) > $MB/mbochs-small/create || echo "create $i failed"; done
avail
devs

R=$B/$(u 1)/remove
sec "values that do nothing or fail (device $(u 1) stays)"
step "echo 0 > $R                      # zero: success, no-op"
step "echo 00 > $R                     # octal zero"
step "echo 0x0 > $R                    # hex zero"
step "echo +0 > $R                     # plus zero"
step "printf 0 > $R                    # zero, no newline"
step "echo -0 > $R                     # minus zero"
step "echo 08 > $R                     # invalid octal"
step "echo 0x > $R                     # hex prefix without digits"
step "echo 0xg > $R                    # bad hex digit"
step "echo ' 1' > $R                   # leading space"
step "echo '1 ' > $R                   # trailing space"
step "printf '1\t' > $R                # trailing tab"
step "printf '1\r\n' > $R              # CR LF"
step "/bin/printf '1\n\n' > $R         # two newlines in ONE write"
step "echo -1 > $R                     # negative"
step "echo ++1 > $R                    # double plus"
step "echo 1x > $R                     # trailing garbage"
step "echo 1.0 > $R                    # decimal point"
step "echo abc > $R                    # letters"
step "echo yes > $R                    # word"
step "echo > $R                        # lone newline"
step "printf '' > $R; echo printf-empty-rc=\$?   # no write(2) at all"
step ": > $R; echo truncate-only-rc=\$?          # open O_TRUNC, no write"
step "echo 99999999999999999999999 > $R          # overflow (decimal)"
step "echo 18446744073709551616 > $R             # 2^64 (overflow by one)"
step "echo 0x10000000000000000 > $R              # 2^64 in hex"
step "echo 01777777777777777777777 > $R          # 2^64-1 in octal (valid, removes)"
run "ls -d $B/$(u 1)"
devs

sec "values that remove (one device each)"
step "echo 1 > $B/$(u 2)/remove"
step "echo +1 > $B/$(u 3)/remove"
step "echo 0x1 > $B/$(u 4)/remove"
step "echo 0X1 > $B/$(u 5)/remove                  # upper-case X"
step "echo 010 > $B/$(u 6)/remove                  # octal 8"
step "printf 1 > $B/$(u 7)/remove                  # no newline"
step "echo 2 > $B/$(u 8)/remove"
step "echo 18446744073709551615 > $B/$(u 9)/remove # ULONG_MAX"
step "echo 0xffffffffffffffff > $B/$(u 10)/remove  # ULONG_MAX in hex"
step "echo 007 > $B/$(u 11)/remove                 # octal with leading zeros"
devs

sec "bash printf '1\n\n' = two writes: the first removes, the second hits a removed node"
step "printf '1\n\n' > $B/$(u 12)/remove"
run "ls -d $B/$(u 12)"

sec "several writes through one fd: 0 (no-op), 1 (removes), 1 (stale)"
exec 3> $B/$(u 13)/remove
echo "opened fd 3 on $B/$(u 13)/remove"
step "echo 0 >&3"
run "ls -d $B/$(u 13)"
step "echo 1 >&3"
run "ls -d $B/$(u 13)"
step "echo 1 >&3"
exec 3>&-

D=/sys/devices/virtual/mbochs/mbochs/$(u 14)
sec "stale fds of other attributes of a removed device ($D)"
exec 3> $D/remove
exec 4< $D/uevent
exec 5< $D/vendor/memory
exec 6> $D/uevent
exec 7< $D/power/control
exec 8< $D/uevent
echo "opened fds 3-8 on $D/{remove,uevent,vendor/memory,uevent,power/control,uevent}"
run "read -r line <&8; echo \"read before removal: \$line\""
step "echo 1 > $D/remove"
run "ls -d $D"
step "echo 1 >&3                 # stale remove"
run "cat <&4                     # stale uevent, never read"
run "cat <&5                     # stale vendor/memory"
run "echo add >&6                # stale uevent, write"
run "cat <&7                     # stale power/control"
run "cat <&8                     # stale uevent, partially read before"
exec 3>&- 4<&- 5<&- 6>&- 7<&- 8<&-
avail

sec "paths of a removed device"
step "echo 1 > $D/remove                                 # device path"
step "echo 1 > $B/$(u 14)/remove                         # bus path"
step "echo 1 > $MB/mbochs-small/devices/$(u 14)/remove   # type devices/ path"
run "ls $D"
run "ls $MB/mbochs-small/devices/"

sec "re-create a removed UUID (on another parent), remove it again"
step "echo $(u 14) > $MT/mtty-1/create"
run "readlink $B/$(u 14) $B/$(u 14)/mdev_type"
step "echo 1 > $B/$(u 14)/remove"

sec "final"
avail
devs
