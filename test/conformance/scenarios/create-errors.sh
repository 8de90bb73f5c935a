# Conformance scenario: every error case of writing a UUID to mdev_supported_types/<type>/create
# (kernel-mdev-abi.md §2.1), with available_instances of all types after every step.
# Run as root with bash on a fresh system (mtty, mdpy, mbochs registered, no mdev devices).
MT=/sys/class/mdev_bus/mtty/mdev_supported_types
MP=/sys/class/mdev_bus/mdpy/mdev_supported_types
MB=/sys/class/mdev_bus/mbochs/mdev_supported_types
sec() { printf '\n######## %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; eval "$*" 2>&1; printf '[rc=%s]\n' "$?"; }
avail() { for t in $MT/*/ $MP/*/ $MB/*/; do
            printf '%s=%s ' "$(basename "$t")" "$(cat "$t/available_instances")"; done; echo; }
step() { run "$@"; avail; }
devs() { printf 'devices: '; ls /sys/bus/mdev/devices/ | tr '\n' ' '; echo; }
C=$MT/mtty-2/create
P=aaaaaaaa-bbbb-cccc-dddd-eeeeeeee00

sec "initial state"
avail
devs

sec "write lengths: 35 / 36 / 37 / 38 bytes"
step "printf %s ${P}0 > $C                    # 35 bytes: one hex digit short"
step "printf %s ${P}01 > $C                   # 36 bytes, no newline: accepted"
step "echo ${P}02 > $C                        # 37 bytes (echo adds newline): accepted"
step "echo ${P}03x > $C                       # 38 bytes (garbage + newline)"
step "printf %s ${P}04x > $C                  # 37 bytes, 37th byte garbage ('x'): accepted"
step "printf '%s\t' ${P}05 > $C               # 37 bytes, 37th byte TAB: accepted"
step "printf '%s\0' ${P}06 > $C               # 37 bytes, 37th byte NUL: accepted"
step "printf '%s\r\n' ${P}07 > $C             # 38 bytes, CR LF"
step "printf %s ${P}08xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx > $C   # 100 bytes"
step "printf %s aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0 > $C   # 35 bytes via printf"
step "printf %s 0 > $C                        # 1 byte"
devs

sec "UUID syntax"
step "echo AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEE0001 > $C    # uppercase of an existing UUID -> EEXIST"
step "echo AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEE0010 > $C    # uppercase, new: accepted, name is lower-case"
step "echo AaAaAaAa-bBbB-cccc-DDDD-eEeEeEeE0011 > $C    # mixed case, new: accepted"
step "ls -d $MT/mtty-2/devices/*"
step "echo aaaaaaaabbbbccccddddeeeeeeee0012 > $C        # no dashes (33 bytes)"
step "echo aaaaaaaabbbbccccddddeeeeeeee00120000 > $C    # no dashes, 37 bytes"
step "echo aaaaaaaa-bbbbc-ccc-dddd-eeeeeeee0013 > $C    # dash in the wrong place"
step "echo aaaaaaaa-bbbb-cccc-dddd-eeeeeeee001g > $C    # non-hex digit"
step "echo gaaaaaaa-bbbb-cccc-dddd-eeeeeeee0014 > $C    # non-hex digit at start"
step "echo aaaaaaaa_bbbb_cccc_dddd_eeeeeeee0015 > $C    # underscores instead of dashes"
step "echo '{aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0016}' > $C  # braces (39 bytes)"
step "echo '{aaaaaaaa-bbbb-cccc-dddd-eeeeeeee00}' > $C    # braces (37 bytes)"
step "printf ' %s' aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0017 > $C  # leading space (37 bytes)"
step "echo ' aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0018' > $C     # leading space + newline (38 bytes)"
step "echo 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0019 ' > $C     # trailing space + newline (38 bytes)"
step "printf '%s ' aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0020 > $C  # trailing space, no newline (37 bytes): accepted"
step "echo 00000000-0000-0000-0000-000000000000 > $MB/mbochs-small/create   # nil UUID: accepted"
step "echo ffffffff-ffff-ffff-ffff-ffffffffffff > $MB/mbochs-small/create   # max UUID: accepted"
devs

sec "empty writes"
step "echo > $C                                  # a lone newline (1 byte)"
step "printf '' > $C; echo printf-empty-rc=\$?   # no write(2) at all"
step ": > $C; echo truncate-only-rc=\$?          # open O_TRUNC, no write"

sec "two newlines: bash printf = two write(2) calls; /bin/printf = one 38-byte write"
step "printf '%s\n\n' aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0021 > $C   # bash builtin: 37 bytes (creates) then 1 byte (EINVAL)"
step "ls -d $MT/mtty-2/devices/aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0021"
step "/bin/printf '%s\n\n' aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0022 > $C  # coreutils: one 38-byte write"
step "ls -d $MT/mtty-2/devices/aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0022"
step "head -c 38 /dev/zero | tr '\0' x | dd of=$C bs=38 count=1 status=none   # dd: one 38-byte write"
step "/bin/echo aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0023 > $C    # coreutils echo: one 37-byte write"
run "strace -e trace=write -e signal=none bash -c \"printf '%s\\\\n\\\\n' aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0024 > $C\" 2>&1 | grep -v '^+++'"
run "strace -e trace=write -e signal=none /bin/printf '%s\\\\n\\\\n' aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0025 2>&1 > $C | grep -e '^write(1' "
avail
devs

sec "several writes through one open fd: each write(2) is one create"
exec 3> $C
echo "opened fd 3 on $C"
step "echo aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0026 >&3"
step "echo bogus >&3"
step "echo aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0027 >&3"
exec 3>&-
step "echo aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0028 >> $C        # O_APPEND is fine"
devs

sec "duplicates"
U=aaaaaaaa-bbbb-cccc-dddd-eeeeeeee0001
step "echo $U > $MT/mtty-2/create                 # same type"
step "echo $U > $MT/mtty-1/create                 # other type, same parent"
step "echo $U > $MP/mdpy-vga/create               # other parent"
step "echo $U > $MB/mbochs-large/create           # other parent"
step "echo 00000000-0000-0000-0000-000000000000 > $MP/mdpy-hd/create    # nil UUID on another parent"
step "echo AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEE0001 > $MP/mdpy-xga/create   # uppercase, other parent"
step "printf %s $U > $MP/mdpy-vga/create          # 36 bytes"
devs

sec "nonexistent paths"
step "echo bbbbbbbb-0000-0000-0000-000000000001 > $MT/no-such-type/create"
step "echo bbbbbbbb-0000-0000-0000-000000000001 > $MT/mtty-3/create"
step "echo bbbbbbbb-0000-0000-0000-000000000001 > /sys/class/mdev_bus/nosuchparent/mdev_supported_types/x/create"
step "echo bbbbbbbb-0000-0000-0000-000000000001 > $MT/create"
step "echo bbbbbbbb-0000-0000-0000-000000000001 > $MT/mtty-2/Create"
devs

sec "final"
avail
run "ls $MT/*/devices/ $MP/*/devices/ $MB/*/devices/"
