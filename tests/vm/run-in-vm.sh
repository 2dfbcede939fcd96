#!/bin/bash
# run-in-vm.sh --kernel DIR --out DIR [--cpus N] [--timeout S] [--arch arm64 --root DIR] -- COMMAND [ARG...]
# Boot the Debian kernel unpacked in DIR under QEMU (TCG, single-threaded:
# multi-threaded TCG hung guests while ftrace patched kernel text; this host's
# /dev/kvm fails to run a guest: "failed to set MSR 0x10a" with -cpu max, an
# emulation failure with -cpu host; --arch arm64: qemu-system-aarch64 -M virt,
# the Image booted directly, no firmware), run COMMAND
# as root in a chroot of the host's root filesystem (--root: another root, e.g.
# an arm64 userland unpacked by fetch-kernel.sh --root; read-only 9p) with tracefs
# mounted, the current directory (the project) shared read-only and --out
# shared writable at the same paths (also under /tmp), print the guest console,
# exit with COMMAND's exit status (124: timeout, 255: the guest never reported).
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CPUS=2 MEM=2048 KDIR= OUT= TIMEOUT=1500 ARCH=x86_64 ROOT=/
while [ $# -gt 0 ]; do
  case "$1" in
    --kernel) KDIR=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --cpus) CPUS=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --arch) ARCH=$2; shift 2 ;;
    --root) ROOT=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "run-in-vm: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$KDIR" ] && [ -n "$OUT" ] && [ $# -gt 0 ] || { echo "usage: run-in-vm.sh --kernel DIR --out DIR -- COMMAND" >&2; exit 2; }
KDIR=$(cd "$KDIR" && pwd)
VMLINUZ=$(ls "$KDIR"/boot/vmlinuz-* "$KDIR"/usr/lib/modules/*/vmlinuz 2>/dev/null | head -n1)
[ -n "$VMLINUZ" ] || { echo "run-in-vm: no vmlinuz in $KDIR" >&2; exit 2; }
INITRD=$KDIR/initramfs.cpio.gz
if [ ! -s "$INITRD" ] || [ "$HERE/guest-init.sh" -nt "$INITRD" ] || [ "$HERE/build-initramfs.sh" -nt "$INITRD" ]; then
  BUSYBOX=$([ "$ROOT" = / ] || echo "$ROOT/usr/bin/busybox") "$HERE/build-initramfs.sh" "$KDIR" "$INITRD" || exit 2
fi
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
ROOT=$(cd "$ROOT" && pwd)
# the guest mounts the root read-only: the project's and the results' mount points must exist in it already
[ "$ROOT" = / ] || mkdir -p "$ROOT$PWD" "$ROOT$OUT" || exit 2
case "$ARCH" in
  x86_64) QEMU=(qemu-system-x86_64 -accel tcg,thread=single -cpu max -M pc); CONSOLE=ttyS0 ;;
  arm64) QEMU=(qemu-system-aarch64 -accel tcg,thread=single -cpu max,pauth-impdef=on -M virt); CONSOLE=ttyAMA0 ;;
  *) echo "run-in-vm: unknown --arch $ARCH (x86_64, arm64)" >&2; exit 2 ;;
esac
CTL=$(mktemp -d "${TMPDIR:-/tmp}/km-vmctl.XXXXXX")
trap 'rm -rf "$CTL"' EXIT
printf 'VM_OUT=%q\nVM_PROJECT=%q\n' "$OUT" "$PWD" > "$CTL/config"
{ echo "export OUT=$(printf '%q' "$OUT")"; echo "cd $(printf '%q' "$PWD")"; printf 'exec'; printf ' %q' "$@"; echo; } > "$CTL/cmd.sh"
STARTED=$SECONDS
timeout -k 5 "$TIMEOUT" "${QEMU[@]}" -smp "$CPUS" -m 2048 \
  -nodefaults -no-user-config -display none -no-reboot -serial stdio -monitor none \
  -kernel "$VMLINUZ" -initrd "$INITRD" -append "console=$CONSOLE quiet loglevel=3 panic=-1 rdinit=/init nokaslr" \
  -virtfs "local,path=$ROOT,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
  -virtfs "local,path=$CTL,mount_tag=vmctl,security_model=none,multidevs=remap" \
  -virtfs "local,path=$PWD,mount_tag=project,security_model=none,readonly=on,multidevs=remap" \
  -virtfs "local,path=$OUT,mount_tag=out,security_model=none,multidevs=remap" < /dev/null | sed -u 's/\r$//'
QRC=${PIPESTATUS[0]}
echo "[run-in-vm] qemu ran $((SECONDS - STARTED)) s" >&2
[ "$QRC" = 124 ] && { echo "[run-in-vm] timeout after ${TIMEOUT} s" >&2; exit 124; }
[ -f "$CTL/rc" ] || { echo "[run-in-vm] the guest did not report an exit status (qemu exit $QRC)" >&2; exit 255; }
exit "$(cat "$CTL/rc")"
