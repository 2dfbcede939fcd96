#!/bin/sh
# /init of the test initramfs (busybox sh as PID 1): load virtio/9p, mount the
# host root read-only (9p tag hostroot), the project read-only (tag project)
# and the writable result share (tag out) at their host paths, chroot into the host root with tracefs mounted, run /run/vmctl/cmd.sh,
# write its exit status to the control share, power off.
PATH=/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
die() { echo "[guest-init] FATAL: $*" > /dev/console; echo 255 > /ctl/rc 2>/dev/null; sync; poweroff -f; sleep 5; }
for m in $(cat /lib/modules/load-order); do insmod /lib/modules/$m 2>/dev/null || echo "[guest-init] insmod $m failed" > /dev/console; done
O9P="trans=virtio,version=9p2000.L,msize=512000"
mount -t 9p -o $O9P vmctl /ctl || die "cannot mount the control share"
. /ctl/config
R=/newroot
mount -t 9p -o $O9P,ro,cache=loose hostroot $R || die "cannot mount the host root"
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
mount -t tmpfs -o mode=1777 tmpfs $R/tmp
mount -t tmpfs -o mode=0755 tmpfs $R/run
mount -t tracefs nodev $R/sys/kernel/tracing || echo "[guest-init] tracefs mount failed" > /dev/console
mkdir -p $R/run/vmctl && mount -o bind /ctl $R/run/vmctl
# After the tmpfs mounts: a project or result folder under /tmp or /run stays visible.
mkdir -p "$R$VM_PROJECT" "$R$VM_OUT" 2>/dev/null
mount -t 9p -o $O9P,ro,cache=loose project "$R$VM_PROJECT" || die "cannot mount the project at $VM_PROJECT"
mount -t 9p -o $O9P,cache=none out "$R$VM_OUT" || die "cannot mount the result share at $VM_OUT"
ip link set lo up 2>/dev/null
hostname km-vm
echo "@@VM-CMD-START@@ kernel=$(uname -r)" > /dev/console
chroot $R /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root TERM=dumb LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 KM_IN_VM=1 \
  /bin/bash /run/vmctl/cmd.sh < /dev/null > /dev/console 2>&1
rc=$?
echo "$rc" > /ctl/rc
echo "@@VM-CMD-END@@ rc=$rc" > /dev/console
sync
umount "$R$VM_OUT" "$R$VM_PROJECT" 2>/dev/null
poweroff -f
sleep 10
