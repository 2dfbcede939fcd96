#!/bin/bash
# Runs in the guest (a kernel with the latency tracers, see tests/data/latency/README):
# real output of irqsoff, preemptirqsoff, wakeup and wakeup_rt read from tracefs's
# `trace` file, each snapshot printed with latency-format (what these tracers turn on)
# and without, irqsoff also with display-graph; and the function and function_graph
# tracers recorded by `record` with -O latency-format, for the parser's tests.
set -u
T=/sys/kernel/tracing
HERE=$(cd "$(dirname "$0")" && pwd)
KM="python3 $HERE/../../kernel-magnifier.py"
uname -r > "$OUT/uname.txt"
load() {  # some system calls, page faults, timers and wakeups
  for _ in 1 2 3; do ls -R /usr/lib/python3* > /dev/null 2>&1; sleep 0.05; done
}
rt_load() { for _ in $(seq 20); do chrt -f 50 sleep 0.01; done; }
snapshot() {  # tracer name: run it over the load, print its max-latency snapshot both ways
  local tracer=$1 name=$2 work=$3
  echo 0 > $T/tracing_on
  echo nop > $T/current_tracer
  echo "$tracer" > $T/current_tracer || { echo "no tracer $tracer"; return 1; }
  echo 0 > $T/tracing_max_latency
  echo 1 > $T/tracing_on
  $work
  echo 0 > $T/tracing_on
  cat $T/tracing_max_latency > "$OUT/$name.max_latency"
  cat $T/trace > "$OUT/$name-latency-format.txt"
  echo 0 > $T/options/latency-format
  cat $T/trace > "$OUT/$name.txt"
  echo 1 > $T/options/latency-format
  if [ "$tracer" = irqsoff ]; then
    echo 1 > $T/options/display-graph
    echo 0 > $T/tracing_max_latency
    echo 1 > $T/tracing_on; $work; echo 0 > $T/tracing_on
    cat $T/tracing_max_latency > "$OUT/$name-graph.max_latency"
    cat $T/trace > "$OUT/$name-graph-latency-format.txt"
    echo 0 > $T/options/display-graph
  fi
  echo nop > $T/current_tracer
}
snapshot irqsoff irqsoff load
snapshot preemptirqsoff preemptirqsoff load
snapshot wakeup wakeup load
snapshot wakeup_rt wakeup_rt rt_load
echo 0 > $T/options/latency-format
# the function and function_graph tracers with latency-format, recorded by record (trace_pipe text)
$KM record -p function -O latency-format --format text --filter 'vfs_*' -o "$OUT/function-latency-format.txt" -- ls -R /usr/lib/python3 > "$OUT/record-function.log" 2>&1
$KM record -p function_graph -O latency-format --format text -g vfs_read --max-depth 3 --no-sched -o "$OUT/function-graph-latency-format.txt" -- ls -R /usr/lib/python3 > "$OUT/record-graph.log" 2>&1
ls -la "$OUT"
