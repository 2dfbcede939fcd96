#!/bin/bash
# vm-test-matrix.sh --cache DIR --out DIR --python PY [--jobs N] [--no-loss] [NAME...]  (make vm-test-matrix)
# The kernel matrix's smoke: boots each Debian kernel below under QEMU (TCG; arm64 under qemu-system-aarch64 -M virt
# in an arm64 userland unpacked from Debian's packages), runs tests/vm/matrix-smoke.sh in it, then checks every
# kernel's recordings on the host (tests/vm/test_matrix.py: tracefs given back, trace-cmd report reads the files,
# names and not addresses, losses printed; it writes OUT/matrix-table.md). N guests at a time (default 2: one per
# core of this machine; the arm64 ones first). --no-loss: without the loss comparison with trace-cmd (the table's loss
# column then says "not measured"; CI's smoke). NAME...: only these kernels (default: all).
# Packages are downloaded once (apt-get download) and never installed; all downloads happen before the first boot.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE= OUT= PY=python3 JOBS=2 LOSS=yes
while [ $# -gt 0 ]; do
  case "$1" in
    --cache) CACHE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --no-loss) LOSS=no; shift ;;
    *) break ;;
  esac
done
[ -n "$CACHE" ] && [ -n "$OUT" ] || { echo "usage: vm-test-matrix.sh --cache DIR --out DIR --python PY [--jobs N] [--no-loss] [NAME...]" >&2; exit 2; }
# name | architecture | suite (empty: the host's own apt sources) | packages
KERNELS=(
  "6.12-arm64|arm64|trixie|linux-image-6.12.117+deb13-arm64-unsigned"
  "6.12-arm64-16k|arm64|trixie|linux-image-6.12.117+deb13-arm64-16k-unsigned"
  "5.10-amd64|x86_64|bullseye-security|linux-image-5.10.0-46-amd64-unsigned"
  "6.1-amd64|x86_64||linux-image-6.1.0-56-amd64-unsigned"
  "6.12-amd64|x86_64|trixie|linux-image-6.12.117+deb13-amd64-unsigned"
  "7.3-amd64|x86_64|trixie-backports|linux-binary-7.3.4+deb13-amd64 linux-modules-7.3.4+deb13-amd64 linux-base-7.3.4+deb13-amd64"
)
ARM64_ROOT=$CACHE/root-trixie-arm64
ARM64_ROOT_PACKAGES="python3-minimal python3.13 bash dash coreutils grep sed busybox-static trace-cmd"
# the recordings the host's trace-cmd checks: record's default (version 7, zlib) if it can uncompress zlib, else version 6
FORMAT=trace.dat
trace-cmd list -c 2>/dev/null | grep -q zlib || FORMAT=trace.dat-v6
STARTED=$SECONDS
mkdir -p "$OUT"
failed=()
chosen=()
for entry in "${KERNELS[@]}"; do
  IFS='|' read -r name arch suite packages <<< "$entry"
  if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$name"; then continue; fi
  if [ "$arch" = arm64 ]; then
    "$HERE/fetch-kernel.sh" --arch arm64 --root "$ARM64_ROOT" $ARM64_ROOT_PACKAGES > /dev/null || { failed+=("$name"); continue; }
  fi
  # shellcheck disable=SC2086
  "$HERE/fetch-kernel.sh" ${suite:+--suite "$suite"} $([ "$arch" = arm64 ] && echo --arch arm64) "$CACHE/${packages%% *}" $packages > /dev/null ||
    { failed+=("$name"); continue; }
  chosen+=("$entry")
done
smoke() {  # smoke ENTRY: one kernel's guest; its console in OUT/NAME/console.txt
  local name arch suite packages started=$SECONDS vm
  IFS='|' read -r name arch suite packages <<< "$1"
  rm -rf "${OUT:?}/$name"; mkdir -p "$OUT/$name"
  vm=("$HERE/run-in-vm.sh" --kernel "$CACHE/${packages%% *}" --out "$OUT/$name" --timeout 1200)
  [ "$arch" = arm64 ] && vm+=(--arch arm64 --root "$ARM64_ROOT")
  "${vm[@]}" -- tests/vm/matrix-smoke.sh "$FORMAT" "$LOSS" > "$OUT/$name/console.txt" 2>&1
  local rc=$?
  echo "$((SECONDS - started))" > "$OUT/$name/seconds"
  echo "==== $name: guest exit $rc in $((SECONDS - started)) s (console: $OUT/$name/console.txt)"
  grep -E '^\[matrix-smoke\]|^\[run-in-vm\]|Events read' "$OUT/$name/console.txt"
  return "$rc"
}
declare -A pids
for entry in "${chosen[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  smoke "$entry" &
  pids[$!]=${entry%%|*}
done
for pid in "${!pids[@]}"; do wait "$pid" || failed+=("${pids[$pid]}"); done
echo "vm-test-matrix: the guests took $((SECONDS - STARTED)) s"
KM_MATRIX_OUT=$OUT "$PY" -m pytest -p no:cacheprovider -q -rs tests/vm/test_matrix.py || failed+=("host checks")
echo "vm-test-matrix: $((SECONDS - STARTED)) s in all"
[ ${#failed[@]} = 0 ] || { echo "vm-test-matrix: failed: ${failed[*]}" >&2; exit 1; }
