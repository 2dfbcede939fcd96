#!/bin/bash
# Runs in the guest (make vm-demo-system): a whole-system function_graph recording under a mixed load, for the
# README's subsystem map (visualize --group-by dir) and its function-level drawing. The load: a loopback TCP echo,
# 64 KiB writes each followed by fsync on an ext4 filesystem on a loop device (fs -> fs/ext4 -> block -> drivers/block),
# and a process spawned every 20 ms (fork, exec, exit). Records 0.3 s to the guest's tmpfs, then copies to $OUT.
# record-whole-system.sh KERNEL_DIR: the unpacked kernel package, whose modules (ext4, loop) the guest loads.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
KDIR=$1
modprobe -d "$KDIR" ext4
modprobe -d "$KDIR" loop
cd /tmp
truncate -s 64M ext4.img
mkfs.ext4 -q -F ext4.img
mkdir -p /tmp/ext4
mount -o loop ext4.img /tmp/ext4
python3 "$HERE/tcp_echo.py" 1024 &
ECHO=$!
python3 -c '
import os, time
data = b"x" * 65536
while True:
    with open("/tmp/ext4/data", "wb") as handle:
        for _ in range(8):
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    time.sleep(0.01)
' &
WRITER=$!
(while :; do /bin/true; sleep 0.02; done) &
SPAWNER=$!
sleep 1
"$ROOT/.venv/bin/python" "$ROOT/kernel-magnifier.py" record --buffer-size 65536 --record-time 0.3 | tee "$OUT/record-output.txt"
kill $ECHO $WRITER $SPAWNER
cp kernel-magnifier.data "$OUT/kernel-magnifier.data"
