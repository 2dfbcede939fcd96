#!/bin/bash
# build-initramfs.sh KERNEL_DIR OUTPUT - a tiny initramfs: static busybox, the
# virtio-pci and 9p modules of that kernel (dependencies from modules.dep) and
# guest-init.sh as /init. BUSYBOX=PATH: another static busybox (an arm64 one
# for an arm64 kernel).
set -euo pipefail
KDIR=${1:?kernel dir}
OUT=${2:?output .cpio.gz}
HERE=$(cd "$(dirname "$0")" && pwd)
KVER=$(ls "$KDIR/lib/modules" | head -n1)
MODDIR=$KDIR/lib/modules/$KVER
if [ -z "${BUSYBOX:-}" ]; then
  BUSYBOX=$(command -v busybox || true)
  [ -n "$BUSYBOX" ] && file -L "$BUSYBOX" 2>/dev/null | grep -q "statically linked" || BUSYBOX=/bin/busybox
fi
[ -x "$BUSYBOX" ] || { echo "need busybox-static (apt-get install busybox-static)" >&2; exit 1; }
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE"/{bin,dev,proc,sys,newroot,ctl,lib/modules}
cp "$BUSYBOX" "$STAGE/bin/busybox"
# the applets' links: another architecture's busybox cannot run here to list its own, the host's (same Debian) lists them
LISTER=$BUSYBOX; "$LISTER" --list > /dev/null 2>&1 || LISTER=$(command -v busybox || echo /bin/busybox)
for applet in $("$LISTER" --list); do [ "$applet" = busybox ] || ln -sf busybox "$STAGE/bin/$applet"; done
declare -A seen
order=()
resolve() {  # a module after its dependencies, each once; built-ins need nothing
  local name=$1 line path deps i
  line=$(grep -E "/${name}\.ko(\.[a-z]+)?:" "$MODDIR/modules.dep" | head -n1) || true
  if [ -z "$line" ]; then
    grep -qE "/${name}\.ko" "$MODDIR/modules.builtin" && return 0
    echo "module $name not found in $MODDIR" >&2; exit 1
  fi
  path=${line%%:*}; deps=(${line#*:})
  [ -n "${seen[$path]:-}" ] && return 0
  seen[$path]=1
  for ((i=${#deps[@]}-1; i>=0; i--)); do d=$(basename "${deps[$i]}"); resolve "${d%%.ko*}"; done
  order+=("$path")
}
for module in virtio_pci 9pnet_virtio 9p; do resolve "$module"; done
: > "$STAGE/lib/modules/load-order"
for path in "${order[@]}"; do
  f=$(basename "$path")
  case "$f" in
    *.ko.xz) xz -dc "$MODDIR/$path" > "$STAGE/lib/modules/${f%.xz}"; f=${f%.xz} ;;
    *.ko.zst) zstd -qdc "$MODDIR/$path" > "$STAGE/lib/modules/${f%.zst}"; f=${f%.zst} ;;
    *) cp "$MODDIR/$path" "$STAGE/lib/modules/$f" ;;
  esac
  echo "$f" >> "$STAGE/lib/modules/load-order"
done
install -m 0755 "$HERE/guest-init.sh" "$STAGE/init"
(cd "$STAGE" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
