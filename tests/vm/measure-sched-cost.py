"""What the scheduler events function_graph records by default cost in loss and size, in the QEMU guest.

tests/vm/run-in-vm.sh --kernel DIR --out DIR -- python3 tests/vm/measure-sched-cost.py [ROUNDS [CASE]]
then, on the host:                               python3 tests/vm/measure-sched-cost.py --table DIR
The load and the place are measure-compression.py's (a loopback TCP echo and dd loops; a tmpfs in the
guest's memory). Two cases, each recorded with the default events and with --no-sched, alternating,
3 rounds, record's default file (trace.dat v7): the walkthrough's narrow recording (-g tcp_sendmsg,tcp_recvmsg)
and function_graph on the whole system; 2 s, the default buffer. Loss is the kernel's counters stored in
the file; the events by kind are counted from the file's pages by test_record_events_vm.py's own reader
(in the guest for the narrow case; the whole-system files are kept in $OUT/files and counted on the host
with --table: walking millions of events in Python takes too long in the emulated guest). The runs go to
$OUT/sched-cost-runs.json, the table to $OUT/sched-cost-table.md; the kernel's available_events to $OUT/available_events.txt.
"""

from __future__ import annotations

import json
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
from test_record_events_vm import v7_event_formats, v7_event_types  # noqa: E402

measure_compression = __import__("measure-compression")
ROUNDS = 3
SECONDS = "2"
CASES = {"-g tcp_sendmsg,tcp_recvmsg": ["-g", "tcp_sendmsg,tcp_recvmsg"], "function_graph, whole system": []}
VARIANTS = {"default (sched events)": [], "--no-sched": ["--no-sched"]}


def count_sched(output: Path) -> dict[str, float]:
    """The file's events, and its sched events by the ids of the formats it stores (the guest's kernel, wherever this runs)."""
    types = v7_event_types(output)
    ids = [int(re.search(r"^ID: (\d+)", text, re.M).group(1)) for text in v7_event_formats(output).get("sched", [])]
    return {"sched": sum(types[number] for number in ids), "all": sum(types.values())}


def one_run(place: Path, arguments: list[str], count: bool, keep: Path) -> dict[str, float]:
    output = place / "km.dat"
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(SCRIPT), "record", *arguments, "--record-time", SECONDS, "-o", str(output)],
                            capture_output=True, text=True, timeout=1200, cwd=place)
    wall = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    read = re.search(r"Events read: ([\d,]+);", result.stdout)
    run = {"size": output.stat().st_size / 2**20, "wall": wall, "loss": loss_share(output), "read": int(read.group(1).replace(",", "")) if read else 0}
    if count:
        run.update(count_sched(output))
    else:
        keep.mkdir(exist_ok=True)
        kept = keep / f"run-{len(list(keep.iterdir()))}.dat"
        shutil.copy(output, kept)
        run["file"] = kept.name
    print(" ".join(arguments), run, result.stdout, flush=True)
    output.unlink()
    return run


def measure(out: Path, rounds: int, cases: dict[str, list[str]]) -> None:
    shutil.copy("/sys/kernel/tracing/available_events", out / "available_events.txt")
    runs: dict[str, list[dict[str, float]]] = {f"{case} | {variant}": [] for case in cases for variant in VARIANTS}
    with measure_compression.tmpfs_and_load() as place:
        for _ in range(rounds):
            for case, arguments in cases.items():
                for variant, extra in VARIANTS.items():
                    runs[f"{case} | {variant}"].append(one_run(place, [*arguments, *extra], count=bool(arguments), keep=out / "files"))
    (out / "sched-cost-runs.json").write_text(json.dumps({"rounds": rounds, "kernel": os.uname().release, "runs": runs}, indent=1))
    if all("sched" in run for found in runs.values() for run in found):
        write_table(out)


def write_table(out: Path) -> None:
    """The table from the runs; the kept files' sched events counted here first (on the host: fast enough)."""
    measured = json.loads((out / "sched-cost-runs.json").read_text())
    runs = measured["runs"]
    for found in runs.values():
        for run in found:
            if "file" in run and "sched" not in run:
                run.update(count_sched(out / "files" / run["file"]))

    def median(key: str, field: str) -> float:
        return statistics.median(run[field] for run in runs[key])

    def each(key: str, field: str, fmt: str) -> str:
        return ", ".join(format(run[field], fmt) for run in runs[key])

    lines = [
        f"record (trace.dat v7, zlib), {SECONDS} s, default buffer, tcp echo + dd load, {measured['rounds']} rounds alternating"
        f" (Debian {measured['kernel']}, QEMU TCG, 2 vCPUs, tmpfs); medians (runs):", "",
        "| case | events | file MiB | events read | lost | sched events (share of the events in the file) |", "|---|---|---|---|---|---|",
    ]
    for key in runs:
        share = ", ".join(f"{run['sched'] / run['all']:.1%}" for run in runs[key] if run["all"])
        lines.append(f"| {key} | {median(key, 'size'):.2f} ({each(key, 'size', '.2f')}) | {median(key, 'read'):,.0f} ({each(key, 'read', ',.0f')})"
                     f" | {median(key, 'loss'):.1%} ({each(key, 'loss', '.1%')}) | {median(key, 'sched'):,.0f} ({share}) |")
    table = "\n".join(lines) + "\n"
    (out / "sched-cost-table.md").write_text(table)
    print(table)


def main() -> None:
    if sys.argv[1:2] == ["--table"]:
        write_table(Path(sys.argv[2]))
        return
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS
    cases = {name: arguments for name, arguments in CASES.items() if len(sys.argv) < 3 or name == sys.argv[2]}
    measure(Path(os.environ.get("OUT", "/tmp")), rounds, cases)


if __name__ == "__main__":
    main()
