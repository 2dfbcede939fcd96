#!/bin/bash
# Runs in the guest: trace_pipe recordings with a tiny ring buffer under load on
# both CPUs, to check how "CPU:N [LOST M EVENTS]" lines add up against the
# kernel's own per-CPU counters (the data file's footer); tests/data/lost-rule
# holds such recordings. Records to the guest's tmpfs (writing to the 9p share
# while tracing would trace 9p), then copies each to $OUT as lost-NAME-RUN.data.
#   flock /tmp/km-vm.lock tests/vm/run-in-vm.sh --kernel ~/.cache/kernel-magnifier/vm/KERNEL \
#     --out DIR -- tests/vm/record-lost-rule.sh
# Under TCG each recording takes 1-2 minutes on 6.1 and 4-7 on 7.3: there give
# run-in-vm.sh --timeout 3000, or record one kind: -- env LOST_RULE_ONLY=function ...
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUNS=${LOST_RULE_RUNS:-2}
cd /tmp
loops=()
for cpu in 0 1; do
  taskset -c $cpu sh -c 'while :; do dd if=/etc/os-release of=/dev/null status=none; done' &
  loops+=($!)
done
record() {  # NAME ARGS...: one recording per run (LOST_RULE_ONLY=NAME: only that one)
  local name=$1; shift
  [ -z "${LOST_RULE_ONLY:-}" ] || [ "$LOST_RULE_ONLY" = "$name" ] || return 0
  for run in $(seq 1 "$RUNS"); do
    rm -f kernel-magnifier.data
    "$ROOT/.venv/bin/python" "$ROOT/kernel-magnifier.py" record --buffer-size 64 "$@" | sed "s/^/[$name-$run] /"
    cp kernel-magnifier.data "$OUT/lost-$name-$run.data"
  done
}
record graph-all --record-time 1
record graph-proc --record-time 1 -O funcgraph-proc --max-depth 6
if [ -e /sys/kernel/tracing/options/funcgraph-args ]; then  # 7.3: bigger entries, as in the issue's recording
  record graph-args --record-time 1 -O funcgraph-args --max-depth 8
fi
record function --record-time 1 --tracer function
kill "${loops[@]}"
uname -r > "$OUT/kernel-release"
