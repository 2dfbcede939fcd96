"""What the scheduler events function_graph records by default cost in loss and size, in the QEMU guest.

tests/vm/run-in-vm.sh --kernel DIR --out DIR -- python3 tests/vm/measure-sched-cost.py
The load and the place are measure-compression.py's (a loopback TCP echo and dd loops; a tmpfs in the
guest's memory). Two cases, each recorded with the default events and with --no-sched, alternating,
3 rounds, record's default file (trace.dat v7): the walkthrough's narrow recording (-g tcp_sendmsg,tcp_recvmsg)
and function_graph on the whole system; 2 s, the default buffer. Loss is the kernel's counters stored in
the file; the events by kind are counted from the file's pages by test_record_events_vm.py's own reader
(narrow case only: walking millions of events in Python takes too long in the emulated guest).
The table goes to $OUT/sched-cost-table.md; the kernel's available_events to $OUT/available_events.txt.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from conftest import SCRIPT  # noqa: E402
from test_loss_vs_trace_cmd import loss_share  # noqa: E402
from test_record_events_vm import event_id, v7_event_types  # noqa: E402

measure_compression = __import__("measure-compression")
ROUNDS = 3
SECONDS = "2"
CASES = {"-g tcp_sendmsg,tcp_recvmsg": ["-g", "tcp_sendmsg,tcp_recvmsg"], "function_graph, whole system": []}
VARIANTS = {"default (sched events)": [], "--no-sched": ["--no-sched"]}


def one_run(place: Path, arguments: list[str], count: bool) -> dict[str, float]:
    output = place / "km.dat"
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(SCRIPT), "record", *arguments, "--record-time", SECONDS, "-o", str(output)],
                            capture_output=True, text=True, timeout=1200, cwd=place)
    wall = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    read = re.search(r"Events read: ([\d,]+);", result.stdout)
    run = {"size": output.stat().st_size / 2**20, "wall": wall, "loss": loss_share(output), "read": int(read.group(1).replace(",", "")) if read else 0}
    if count:
        types = v7_event_types(output)
        sched = sum(types[event_id(f"sched:{name}")] for name in ("sched_switch", "sched_waking", "sched_wakeup", "sched_wakeup_new"))
        run["sched"] = sched
        run["all"] = sum(types.values())
    print(" ".join(arguments), run, result.stdout, flush=True)
    output.unlink()
    return run


def main() -> None:
    out = Path(os.environ.get("OUT", "/tmp"))
    shutil.copy("/sys/kernel/tracing/available_events", out / "available_events.txt")
    runs: dict[tuple[str, str], list[dict[str, float]]] = {(case, variant): [] for case in CASES for variant in VARIANTS}
    with measure_compression.tmpfs_and_load() as place:
        for _ in range(ROUNDS):
            for case, arguments in CASES.items():
                for variant, extra in VARIANTS.items():
                    runs[case, variant].append(one_run(place, [*arguments, *extra], count=bool(arguments)))

    def median(key: tuple[str, str], field: str) -> float:
        return statistics.median(run[field] for run in runs[key])

    def each(key: tuple[str, str], field: str, fmt: str) -> str:
        return ", ".join(format(run[field], fmt) for run in runs[key])

    lines = [
        f"record (trace.dat v7, zlib), {SECONDS} s, default buffer, tcp echo + dd load, {ROUNDS} rounds alternating"
        f" (Debian {os.uname().release}, QEMU TCG, 2 vCPUs, tmpfs); medians (runs):", "",
        "| case | events | file MiB | events read | lost | sched events in the file |", "|---|---|---|---|---|---|",
    ]
    for (case, variant), found in runs.items():
        sched = f"{median((case, variant), 'sched'):,.0f} of {median((case, variant), 'all'):,.0f}" if "sched" in found[0] else "not counted"
        lines.append(f"| {case} | {variant} | {median((case, variant), 'size'):.2f} ({each((case, variant), 'size', '.2f')})"
                     f" | {median((case, variant), 'read'):,.0f} ({each((case, variant), 'read', ',.0f')})"
                     f" | {median((case, variant), 'loss'):.1%} ({each((case, variant), 'loss', '.1%')}) | {sched} |")
    table = "\n".join(lines) + "\n"
    (out / "sched-cost-table.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
