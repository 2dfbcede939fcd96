#!/bin/bash
# docs/make-images.sh [PYTHON] - redraw the README's images from the bundled recordings with the
# README's own commands, so every picture (and every number in its caption) is what the tool makes today.
# The flame graph screenshot (docs/images/flamegraph.png) is taken in a browser: see the README. The explorer
# page's screenshots (docs/images/explorer-*.png) are taken by its test in chromium, last, where chromium exists.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
KM=(./kernel-magnifier.py)
MAP=tests/data/symbol-map-6.1.0-56-amd64.map.xz
DEMO=tests/data/record-demo-dat/kernel-magnifier.data.xz
TEXT_DEMO=tests/data/record-demo/kernel-magnifier.data.xz
OUT=docs/images
km() { "$PY" "${KM[@]}" visualize "$@" >/dev/null; }
km -i $DEMO --symbol-map $MAP --max-nodes 40 --max-edges 80 -o $OUT/call-graph.png --chart $OUT/function-calls.png
km -i $DEMO --symbol-map $MAP --root tcp_sendmsg --depth 3 -o $OUT/focus-root.png --chart ''
km -i $DEMO --symbol-map $MAP --callers kfree --depth 4 -o $OUT/focus-callers.png --chart ''
km -i $DEMO --symbol-map $MAP --wakers tcp_recvmsg -o $OUT/wakers.png --chart ''
km -i tests/data/record-demo-large/kernel-magnifier.data.xz --baseline $TEXT_DEMO --symbol-map $MAP \
   --root tcp_sendmsg --depth 4 --heat calls -o $OUT/diff.png --chart $OUT/diff-chart.png
km -i $TEXT_DEMO --latency tcp_sendmsg --latency-chart $OUT/latency.png
km -i tests/data/fg-abstime-proc/trace.txt.xz --chart-by task --chart $OUT/tasks.png -o "$(mktemp -d)/unused.json"
km -i $TEXT_DEMO --symbol-map $MAP --filter-filepath net --max-nodes 40 -o $OUT/call-graph-net.png --chart ''
km -i tests/data/whole-system/kernel-magnifier.data.xz --symbol-map $MAP --group-by dir -o $OUT/subsystem-map.png --chart ''
km -i tests/data/whole-system/kernel-magnifier.data.xz --symbol-map $MAP --clusters --max-nodes 40 -o $OUT/whole-system-functions.png --chart ''
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    KM_SCREENSHOTS=$OUT "$PY" -m pytest -q tests/test_explorer_screenshots.py >/dev/null
fi
echo "redrawn: $(ls $OUT | tr '\n' ' ')"
