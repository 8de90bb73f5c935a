#!/bin/bash
# Runs "$@" next to a private libvirtd (Debian's libvirt-daemon 9.0, no systemd): meant to run
# inside `mdevfs exec --udev`, in its private mount and network namespaces. libvirtd gets tmpfs
# over /run and its state directories (nothing of the host's libvirt is seen or touched), a
# minimal libvirtd.conf, and the user libvirt-qemu its QEMU driver resolves at start (a private
# copy of /etc/passwd and /etc/group when the host has no such user). Exits with "$@"'s status;
# libvirtd's log is printed to stderr when that is not 0.
#   mdevfs exec --udev -- test/helpers/libvirt.sh virsh nodedev-list --cap mdev
set -e
for d in /run /var/lib/libvirt /var/cache/libvirt /var/log/libvirt /etc/libvirt; do
  mkdir -p "$d"
  mount -t tmpfs -o mode=0755 tmpfs "$d"
done
mkdir -p /run/libvirt
echo 'auth_unix_rw = "none"' > /etc/libvirt/libvirtd.conf
if ! getent passwd libvirt-qemu > /dev/null; then
  cp /etc/passwd /run/passwd
  cp /etc/group /run/group
  echo 'libvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin' >> /run/passwd
  echo 'libvirt-qemu:x:64055:' >> /run/group
  mount --bind /run/passwd /etc/passwd
  mount --bind /run/group /etc/group
fi
libvirtd --pid-file /run/libvirtd.pid > /run/libvirtd.log 2>&1 &
for _ in $(seq 200); do
  [ -S /run/libvirt/libvirt-sock ] && break
  sleep 0.05
done
[ -S /run/libvirt/libvirt-sock ] || { echo "libvirt.sh: libvirtd did not start" >&2; cat /run/libvirtd.log >&2; exit 125; }
export LIBVIRT_DEFAULT_URI=qemu:///system
set +e
"$@"
rc=$?
[ $rc = 0 ] || cat /run/libvirtd.log >&2
kill "$(cat /run/libvirtd.pid)" 2> /dev/null
wait
exit $rc
