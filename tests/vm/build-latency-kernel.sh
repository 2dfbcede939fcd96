#!/bin/bash
# build-latency-kernel.sh DIR - a small 6.1 kernel with the latency tracers (no Debian kernel has
# IRQSOFF_TRACER, PREEMPT_TRACER or SCHED_TRACER), laid out for run-in-vm.sh --kernel DIR/kernel:
# Debian's linux-source-6.1 (apt-get download, unpacked, not installed), tinyconfig plus
# tests/data/latency/kernel-config-fragment (serial console, initramfs, devtmpfs, virtio-pci, 9p
# built in, the tracers), make -j$(nproc). 46 minutes here on 2 cores shared with other work.
set -euo pipefail
DIR=$(mkdir -p "${1:?build dir}" && cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$DIR"
[ -f linux-source-6.1/Makefile ] || {
  apt-get download linux-source-6.1
  dpkg-deb -x linux-source-6.1_*_all.deb pkg
  tar xf pkg/usr/src/linux-source-6.1.tar.xz
}
cd linux-source-6.1
make tinyconfig > /dev/null
./scripts/kconfig/merge_config.sh -m .config "$HERE/../data/latency/kernel-config-fragment" > /dev/null
./scripts/config --set-str LOCALVERSION "-km-lat"
make olddefconfig > /dev/null
make -j"$(nproc)" bzImage modules
RELEASE=$(make -s kernelrelease)
mkdir -p "$DIR/kernel/boot"
cp arch/x86/boot/bzImage "$DIR/kernel/boot/vmlinuz-$RELEASE"
make -s modules_install INSTALL_MOD_PATH="$DIR/kernel" > /dev/null
# run-in-vm.sh's initramfs loads virtio_pci, 9pnet_virtio and 9p as modules: here they are built in,
# which build-initramfs.sh accepts when modules.builtin names them.
grep -E '/(virtio_pci|9pnet_virtio|9p)\.ko' "$DIR/kernel/lib/modules/$RELEASE/modules.builtin"
echo "kernel: $DIR/kernel"
