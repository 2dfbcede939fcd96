#!/bin/bash
# Runs in the guest (make vm-demo): the README walkthrough's recording, with a
# loopback TCP echo running. Records to the guest's tmpfs (writing the trace to
# the 9p share while tracing would trace 9p itself), then copies to $OUT.
# record-demo.sh [BYTES]: the echo's message size (default 1024; make vm-demo-large uses 65536).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd /tmp
python3 "$HERE/tcp_echo.py" "${1:-1024}" &
ECHO=$!
sleep 1
"$ROOT/.venv/bin/python" "$ROOT/kernel-magnifier.py" record --graph-function tcp_sendmsg,tcp_recvmsg --buffer-size 32768 --record-time 1 \
  | tee "$OUT/record-output.txt"
kill $ECHO
cp kernel-magnifier.data "$OUT/kernel-magnifier.data"
