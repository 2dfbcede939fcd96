#!/bin/bash
# vm-test.sh --kernel DIR --out DIR --timeout S --python PY [PYTEST ARGS...]  (make vm-test)
# Runs the VM tests in a QEMU guest. For the whole suite (tests/vm), the loss comparison with trace-cmd
# (tests/vm/test_loss_vs_trace_cmd.py: 19 recordings, each paying two tracer switches of 5-15 s of emulated
# time) boots a second guest at the same time: each guest runs on one host core, so the suite takes the
# time of the longer of the two instead of their sum. Its table goes to OUT/loss/loss-table.md.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KDIR= OUT= TIMEOUT=3600 PY=python3
while [ $# -gt 0 ]; do
  case "$1" in
    --kernel) KDIR=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    *) break ;;
  esac
done
[ -n "$KDIR" ] && [ -n "$OUT" ] && [ $# -gt 0 ] || { echo "usage: vm-test.sh --kernel DIR --out DIR --timeout S --python PY TESTS..." >&2; exit 2; }
LOSS=tests/vm/test_loss_vs_trace_cmd.py
INITRD=$KDIR/initramfs.cpio.gz
if [ ! -s "$INITRD" ] || [ "$HERE/guest-init.sh" -nt "$INITRD" ] || [ "$HERE/build-initramfs.sh" -nt "$INITRD" ]; then
  "$HERE/build-initramfs.sh" "$KDIR" "$INITRD" || exit 2  # once, before two guests would both build it
fi
guest() { "$HERE/run-in-vm.sh" --kernel "$KDIR" --out "$1" --timeout "$TIMEOUT" -- "$PY" -m pytest -p no:cacheprovider -v -rs "${@:2}"; }
if [ "$*" != "tests/vm" ]; then
  guest "$OUT" "$@"
  exit
fi
mkdir -p "$OUT/loss"
guest "$OUT/loss" "$LOSS" > "$OUT/loss/console.txt" 2>&1 &
LOSS_PID=$!
trap 'kill "$LOSS_PID" 2>/dev/null' EXIT
guest "$OUT" tests/vm --ignore="$LOSS"
MAIN=$?
wait "$LOSS_PID"
LOSS_RC=$?
trap - EXIT
echo "---- the second guest: $LOSS ----"
cat "$OUT/loss/console.txt"
[ "$MAIN" = 0 ] && [ "$LOSS_RC" = 0 ]
