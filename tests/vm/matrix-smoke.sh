#!/bin/bash
# matrix-smoke.sh - run in the QEMU guest by tests/vm/vm-test-matrix.sh (make vm-test-matrix): record each way a user
# would on this kernel, snapshot tracefs before and after, and (after the second snapshot) one loss comparison with
# trace-cmd under the same load. Recordings go to the guest's memory first (writing over 9p would trace 9p), then to
# $OUT; the host checks them (tests/vm/test_matrix.py). Each recording's output is kept beside it (NAME.out).
# FORMAT ($1, default trace.dat): the trace.dat files' format, trace.dat-v6 when the host's trace-cmd that checks them
# cannot uncompress zlib (Debian 12's 3.1.6 is built with zstd only). LOSS ($2, default yes): no leaves the loss
# comparison out (it costs four whole-system tracer switches, about a minute of emulated time: CI's smoke).
set -uo pipefail
FORMAT=${1:-trace.dat}
LOSS=${2:-yes}
W=$(mktemp -d /tmp/km-smoke.XXXXXX)
T=/sys/kernel/tracing
KM=(python3 kernel-magnifier.py record)
started=$(date +%s)
step() { echo "[matrix-smoke] $(( $(date +%s) - started )) s: $*"; }
rec() {  # rec NAME ARGS...: one recording, its output in NAME.out, its exit status in NAME.rc
  local name=$1; shift
  step "record $name: $*"
  "${KM[@]}" "$@" > "$W/$name.out" 2>&1
  echo $? > "$W/$name.rc"
  cat "$W/$name.out"
}
load() { sh -c 'while :; do cat /etc/os-release > /dev/null; done' & LOAD=$!; }
{
  echo "kernel=$(uname -r)"
  echo "version=$(uname -v)"
  echo "machine=$(uname -m)"
  echo "page_size=$(python3 -c 'import os; print(os.sysconf("SC_PAGE_SIZE"))')"
  echo "tracers=$(cat $T/available_tracers)"
  if mkdir $T/instances/km-matrix-probe 2>/dev/null; then
    echo "instance_tracers=$(cat $T/instances/km-matrix-probe/available_tracers 2>/dev/null || echo '(no available_tracers)')"
    rmdir $T/instances/km-matrix-probe
  else
    echo "instance_tracers=(no instances)"
  fi
  echo "funcgraph_entry_format=$(grep -o 'field:[^;]*' $T/events/ftrace/funcgraph_entry/format | tr '\n' ' ')"
  echo "trace_cmd=$(trace-cmd --version 2>/dev/null | grep -o 'version [0-9.]*' | head -n1)"
  echo "format=$FORMAT"
} > "$W/info.txt"
cat "$W/info.txt"
# a fresh kernel's ring buffer is small until the first tracer expands it ("7 (expanded: 1408)") and never shrinks back:
# expanded first, as tests/vm/test_record_vm.py does, so that the snapshots compare what record can give back
expanded=$(sed -n 's/.*(expanded: \([0-9]*\))/\1/p' $T/buffer_size_kb)
[ -z "$expanded" ] || echo "$expanded" > $T/buffer_size_kb
python3 tests/vm/tracefs-snapshot.py > "$W/before.json"
rec narrow -g do_sys_openat2 --format "$FORMAT" -o "$W/narrow.dat" -- cat /etc/os-release
load
rec whole --record-time 1 --format "$FORMAT" -o "$W/whole.dat"
rec function -p function -l "vfs_*,ksys_*" -e sched:sched_switch,sched:sched_waking --record-time 1 --format "$FORMAT" -o "$W/function.dat"
kill "$LOAD"; wait "$LOAD" 2>/dev/null
rec text --format text -g do_sys_openat2 -o "$W/text.txt.xz" -- ls -l /
python3 tests/vm/tracefs-snapshot.py > "$W/after.json"
# losses beside trace-cmd: same load (a loopback TCP echo), same time, the kernel's default buffer, function tracer
if [ "$LOSS" = yes ] && command -v trace-cmd > /dev/null; then
  python3 tests/vm/tcp_echo.py 1024 & ECHO=$!
  sleep 1
  buffer=$(sed 's/ .*//' $T/buffer_size_kb)
  rec loss-km -p function --no-sched --format trace.dat-v6 --record-time 2 -o "$W/loss-km.dat"
  step "trace-cmd record -p function sleep 2"
  trace-cmd record -p function --file-version 6 -o "$W/loss-tc.dat" sleep 2 > "$W/loss-tc.out" 2>&1
  echo $? > "$W/loss-tc.rc"
  echo "$buffer" > $T/buffer_size_kb  # trace-cmd does not give it back
  kill "$ECHO"; wait "$ECHO" 2>/dev/null
fi
step "copy to $OUT"
cp "$W"/* "$OUT"/
step "done"
