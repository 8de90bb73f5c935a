# Conformance scenario: every error case of writing a UUID to mdev_supported_types/<type>/create
# (docs/mdev-abi.md, "Writing create"), with available_instances of all types after every step.
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
C=$MT/mtty-1/create
S=$MB/mbochs-small/create
P=aaaaaaaa-bbbb-cccc-dddd-eeeeeeee00

sec "initial state"
avail
devs

sec "write lengths on mtty-1: 35 / 36 / 37 / 38 bytes"
step "printf %s ${P}0 > $C                    # 35 bytes: one hex digit short"
step "printf %s ${P}01 > $C                   # 36 bytes, no newline: accepted"
step "echo ${P}02 > $C                        # 37 bytes (echo adds newline): accepted"
step "echo ${P}03x > $C                       # 38 bytes (garbage + newline)"
step "printf %s ${P}04x > $C                  # 37 bytes, 37th byte garbage ('x'): accepted"
step "printf '%s\t' ${P}05 > $C               # 37 bytes, 37th byte TAB: accepted"
step "printf '%s\0' ${P}06 > $C               # 37 bytes, 37th byte NUL: accepted"
step "printf '%s\r\n' ${P}07 > $C             # 38 bytes, CR LF"
step "printf %s ${P}08xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx > $C   # 100 bytes"
step "printf %s 0 > $C                        # 1 byte"
devs

sec "UUID syntax (on mbochs-small)"
step "echo AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEE0001 > $S    # uppercase of an existing UUID (on another parent) -> EEXIST"
step "echo AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEE0010 > $S    # uppercase, new: accepted, name is lower-case"
step "echo AaAaAaAa-bBbB-cccc-DDDD-eEeEeEeE0011 > $S    # mixed case, new: accepted"
run "ls $MB/mbochs-small/devices/"
step "echo aaaaaaaabbbbccccddddeeeeeeee0012 > $S        # no dashes (33 bytes)"
step "echo aaaaaaaabbbbccccddddeeeeeeee00120000 > $S    # no dashes, 37 bytes"
step "echo aaaaaaaa-bbbbc-ccc-dddd-eeeeeeee0013 > $S    # dash in the wrong place"
step "echo aaaaaaaa-bbbb-cccc-dddd-eeeeeeee001g > $S    # non-hex digit"
step "echo gaaaaaaa-bbbb-cccc-dddd-eeeeeeee0014 > $S    # non-hex digit at start"
step "echo aaaaaaaa_bbbb_cccc_dddd_eeeeeeee0015 > $S    # underscores instead of dashes"
step "echo '{aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0016}' > $S  # braces (39 bytes)"
step "echo '{aaaaaaaa-bbbb-cccc-dddd-eeeeeeee00}' > $S    # braces (37 bytes)"
step "printf ' %s' aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0017 > $S  # leading space (37 bytes)"
step "echo ' aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0018' > $S     # leading space + newline (38 bytes)"
step "echo 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0019 ' > $S     # trailing space + newline (38 bytes)"
step "printf '%s ' aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0020 > $S  # trailing space, no newline (37 bytes): accepted"
step "echo 00000000-0000-0000-0000-000000000000 > $S        # nil UUID: accepted"
step "echo ffffffff-ffff-ffff-ffff-ffffffffffff > $S        # all-f UUID: accepted"
devs

sec "empty writes"
step "echo > $C                                  # a lone newline (1 byte)"
step "printf '' > $C; echo printf-empty-rc=\$?   # no write(2) at all"
step ": > $C; echo truncate-only-rc=\$?          # open O_TRUNC, no write"

sec "two newlines: bash printf = two write(2) calls; /bin/printf = one 38-byte write"
step "printf '%s\n\n' aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0021 > $C   # bash builtin: 37 bytes (creates) then 1 byte (EINVAL)"
run "ls -d $MT/mtty-1/devices/aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0021"
step "/bin/printf '%s\\n\\n' aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0022 > $C  # coreutils: one 38-byte write, nothing created"
run "ls -d $MT/mtty-1/devices/aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0022"
step "printf '%s\n\n' aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0023 | dd of=$C bs=64 count=1 iflag=fullblock status=none   # dd: one 38-byte write"
run "ls -d $MT/mtty-1/devices/aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0023"
step "/bin/echo aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0024 > $C    # coreutils echo: one 37-byte write"
run "strace -e trace=write -e signal=none bash -c \"printf '%s\\\\n\\\\n' aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0025 > $C\" 2>&1 | grep -v '^+++'"
run "strace -e trace=write -e signal=none /bin/printf '%s\\n\\n' aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0026 2>&1 > $C | grep -e '^write(1' "
avail
devs

sec "several writes through one open fd: each write(2) is one create"
exec 3> $C
echo "opened fd 3 on $C"
step "echo aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0027 >&3"
step "echo bogus >&3"
step "echo aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0027 >&3"
step "echo aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0028 >&3"
exec 3>&-
step "echo aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0029 >> $C        # O_APPEND is fine"
devs

sec "duplicates"
U=aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0001
step "echo $U > $MT/mtty-1/create                 # same type"
step "echo $U > $MT/mtty-2/create                 # other type, same parent"
step "echo $U > $MP/mdpy-vga/create               # other parent"
step "echo $U > $MB/mbochs-large/create           # other parent"
step "echo 00000000-0000-0000-0000-000000000000 > $MP/mdpy-hd/create    # nil UUID on another parent"
step "echo AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEE0001 > $MP/mdpy-xga/create   # uppercase, other parent"
step "printf %s $U > $MP/mdpy-vga/create          # 36 bytes"
devs

sec "capacity: mdpy (core counter, EUSERS) and mtty (vendor ports, ENOSPC); duplicate beats capacity"
for i in 1 2 3 4 5; do
  step "echo cccccccc-0000-0000-0000-00000000000$i > $MP/mdpy-xga/create"
done
step "echo cccccccc-0000-0000-0000-000000000006 > $MP/mdpy-hd/create    # other mdpy type"
step "echo cccccccc-0000-0000-0000-000000000001 > $MP/mdpy-vga/create   # duplicate on exhausted parent"
i=0
while [ "$(cat $MT/mtty-2/available_instances)" -gt 0 ] && [ $i -lt 30 ]; do
  i=$((i+1)); echo dddddddd-0000-0000-0000-0000000000$((10+i)) > $MT/mtty-2/create || echo "unexpected failure $i"
done
echo "created $i mtty-2 devices"
avail
step "echo dddddddd-0000-0000-0000-000000000099 > $MT/mtty-2/create     # vendor ENOSPC (mtty-2 needs 2 ports)"
step "echo dddddddd-0000-0000-0000-000000000098 > $MT/mtty-1/create     # last port"
step "echo dddddddd-0000-0000-0000-000000000097 > $MT/mtty-1/create     # no port left"
step "echo dddddddd-0000-0000-0000-000000000011 > $MT/mtty-1/create     # duplicate on exhausted parent"
step "echo dddddddd-0000-0000-0000-000000000011 > $MP/mdpy-vga/create   # duplicate on another exhausted parent"
step "echo bogus > $MT/mtty-1/create                                    # EINVAL beats capacity"
devs

sec "nonexistent paths"
step "echo bbbbbbbb-0000-0000-0000-000000000001 > $MT/no-such-type/create"
step "echo bbbbbbbb-0000-0000-0000-000000000001 > $MT/mtty-3/create"
step "echo bbbbbbbb-0000-0000-0000-000000000001 > /sys/class/mdev_bus/nosuchparent/mdev_supported_types/x/create"
step "echo bbbbbbbb-0000-0000-0000-000000000001 > $MT/create                 # O_CREAT of a new name in a sysfs dir"
step "echo bbbbbbbb-0000-0000-0000-000000000001 > $MT/mtty-2/Create          # wrong case, O_CREAT"
step "echo bbbbbbbb-0000-0000-0000-000000000001 > $MT/mtty-2/devices/create  # O_CREAT in devices/"

sec "final"
avail
run "ls $MT/*/devices/ $MP/*/devices/ $MB/*/devices/"
run "ls /sys/bus/mdev/devices/ | wc -l"
