#!/bin/bash
# Runs in the guest: real recordings with scheduler events beside the calls, made
# with the kernel's own tracefs and with trace-cmd (not with record), for the
# parser's tests: function_graph text with sched events as comment lines, the
# function tracer's text with event lines, trace-cmd's trace.dat and its report.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
T=/sys/kernel/tracing
cd /tmp
python3 "$HERE/tcp_echo.py" 1024 &
ECHO=$!
sleep 1
uname -r > "$OUT/uname.txt"
events() { for e in sched_switch sched_waking sched_wakeup sched_wakeup_new; do [ -e $T/events/sched/$e/enable ] && echo "$1" > $T/events/sched/$e/enable; done; }
for e in sched_switch sched_waking sched_wakeup sched_wakeup_new; do cat $T/events/sched/$e/format > "$OUT/format-$e.txt" 2>/dev/null; done
# 1. function_graph text, tcp_sendmsg/tcp_recvmsg, abstime + proc, sched events
echo 0 > $T/tracing_on; echo > $T/trace
echo 8192 > $T/buffer_size_kb
echo tcp_sendmsg tcp_recvmsg > $T/set_graph_function
echo function_graph > $T/current_tracer
echo 1 > $T/options/funcgraph-abstime; echo 1 > $T/options/funcgraph-proc
events 1
echo 1 > $T/tracing_on; sleep 1; echo 0 > $T/tracing_on
cat $T/trace > "$OUT/fg-sched-abstime-proc.txt"
# 2. the same without abstime/proc (default columns)
echo > $T/trace
echo 0 > $T/options/funcgraph-abstime; echo 0 > $T/options/funcgraph-proc
echo 1 > $T/tracing_on; sleep 0.5; echo 0 > $T/tracing_on
cat $T/trace > "$OUT/fg-sched-default.txt"
events 0
echo > $T/set_graph_function
echo nop > $T/current_tracer
# 3. the function tracer on tcp_* and sched events
echo > $T/trace
echo 'tcp_*' > $T/set_ftrace_filter
echo function > $T/current_tracer
events 1
echo 1 > $T/tracing_on; sleep 0.5; echo 0 > $T/tracing_on
cat $T/trace > "$OUT/function-sched.txt"
events 0
echo > $T/set_ftrace_filter
echo nop > $T/current_tracer
echo > $T/trace
echo 1408 > $T/buffer_size_kb
# 4. trace-cmd record, function_graph with sched events (trace.dat v7, trace-cmd 3.1.6 default) and its report
trace-cmd record -q -p function_graph -g tcp_sendmsg -g tcp_recvmsg -e sched_switch -e sched_waking -e sched_wakeup -b 8192 -o "/tmp/tc-fg-sched.dat" sleep 0.3 > /dev/null 2>"$OUT/tc-fg-sched.log"
cp /tmp/tc-fg-sched.dat "$OUT/"
trace-cmd report -i /tmp/tc-fg-sched.dat > "$OUT/tc-fg-sched-report.txt" 2>&1
trace-cmd report -R -t -i /tmp/tc-fg-sched.dat > "$OUT/tc-fg-sched-report-raw.txt" 2>&1
# 5. trace-cmd, events only (no tracer): every event of the sched, irq and timer systems, for decoding by stored format
trace-cmd record -q -e sched -e irq -e timer -b 8192 -o /tmp/tc-events.dat sleep 0.3 > /dev/null 2>"$OUT/tc-events.log"
cp /tmp/tc-events.dat "$OUT/"
kill $ECHO
ls -la "$OUT"
