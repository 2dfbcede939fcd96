#!/usr/bin/env python3
"""visualize -j N: wall time, CPU seconds and peak memory for N = 1, 2, 4, 8, and `trace-cmd report` beside it.

Three real-derived recordings: function_graph text (tests/data/fg-default, from
trace_pipe, repeated up to --size-mb), and trace-cmd's own lossy trace.dat
(tests/data/trace-cmd/trace-v6.dat, its pages written 35 times, 1.0 M events,
bench_tracedat.py's file: the yardstick's; and 350 times, 10 M events, 349 MB:
the large one). Each run is the whole CLI, `visualize -i FILE -o out.json
--chart '' -j N`, in a fresh process; its CPU seconds are the operating
system's account of it and every worker it waited for (wait4), its peak memory
the largest of those processes' (ru_maxrss). The rounds interleave every N (and
`trace-cmd report FILE > /dev/null` for a trace.dat), so a change in the
machine's load touches them all alike; the load average is printed with each
figure. Every -j N output is compared, byte for byte, with -j 1's. "CPU vs -j 1" is the median over the
rounds of each round's CPU seconds against the same round's -j 1 (all rounds' figures beside it).

CPU seconds flat as N grows is what carries over to a machine with more cores:
the work is split, not added to (seam cost = CPU(N) / CPU(1) - 1). With more
N than cores, at most as many workers run at once as there are cores (the
others wait for one), so the figure is the split's cost, not the time-sharing's.

    python bench/bench_jobs.py                     # 256 MB of text, both trace.dat files, 3 rounds
    python bench/bench_jobs.py --size-mb 64 --rounds 1 --jobs 1,2 --only text
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_tracedat import SAMPLE

from bench import SAMPLES, build_trace, load_average

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "kernel-magnifier.py"
DAT_REPEATS = (35, 350)


def run(command: list[str], workdir: str, stdout=subprocess.DEVNULL) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of the process and the children it waited for, the largest one's peak MB) of one run."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=workdir, stdout=stdout, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    error = process.stderr.read().decode() if process.stderr else ""
    if process.returncode:
        sys.exit(f"{' '.join(command)} failed: {error.strip()[-300:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def visualize(trace: Path, jobs: int, workdir: str) -> tuple[float, float, float]:
    return run([sys.executable, str(SCRIPT), "visualize", "-i", str(trace), "-o", f"out-{jobs}.json", "--chart", "", "-j", str(jobs)], workdir)


def bench(label: str, trace: Path, jobs: list[int], rounds: int, workdir: str, yardstick: bool) -> None:
    figures: dict[str, list[tuple[float, float, float, str]]] = {}
    for _ in range(rounds):
        for count in jobs:
            figures.setdefault(f"-j {count}", []).append((*visualize(trace, count, workdir), load_average().split()[0]))
        if yardstick:
            with open(os.devnull, "wb") as null:
                figures.setdefault("trace-cmd report", []).append((*run(["trace-cmd", "report", str(trace)], workdir, stdout=null), load_average().split()[0]))
    same = all(filecmp.cmp(Path(workdir) / f"out-{jobs[0]}.json", Path(workdir) / f"out-{count}.json", shallow=False) for count in jobs)
    print(f"\n{label} ({trace.stat().st_size / 1e6:.0f} MB), {rounds} round(s), JSON of every -j identical to -j {jobs[0]}: {'yes' if same else 'NO'}")
    print(f"{'':18} {'wall s (median)':>16} {'CPU s (median)':>15} {'CPU vs -j ' + str(jobs[0]):>12} {'(per round)':>22} {'wall vs report':>15} "
          f"{'peak MB':>8}  load (1 min) per round")
    base = figures[f"-j {jobs[0]}"]
    report = statistics.median(wall for wall, _, _, _ in figures["trace-cmd report"]) if "trace-cmd report" in figures else None
    for name, runs in figures.items():
        wall = statistics.median(run[0] for run in runs)
        cpu = statistics.median(run[1] for run in runs)
        peak = max(run[2] for run in runs)
        # Each round's run against the same round's -j 1 (the machine's speed drifts from round to round): the median, and all
        ratios = [run[1] / first[1] - 1 for run, first in zip(runs, base)]
        versus = f"{wall / report:.2f}x" if report else ""
        print(f"{name:18} {wall:16.2f} {cpu:15.2f} {statistics.median(ratios):+12.1%} {' '.join(f'{ratio:+.1%}' for ratio in ratios):>22} {versus:>15} "
              f"{peak:8.0f}  {' '.join(load for _, _, _, load in runs)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=256, help="size of the text recording")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", default="1,2,4,8", help="the values of -j, comma-separated")
    parser.add_argument("--only", choices=("text", "dat"), help="one of the two recordings")
    args = parser.parse_args()
    jobs = [int(count) for count in args.jobs.split(",")]
    print(f"{os.cpu_count()} cores; load average before: {load_average()}")
    with tempfile.TemporaryDirectory(prefix="bench-jobs.") as workdir:
        if args.only != "dat":
            text = Path(workdir) / "trace.txt"
            build_trace(SAMPLES["function_graph"], text, args.size_mb)
            bench(f"function_graph text, {SAMPLES['function_graph'].relative_to(ROOT)} repeated", text, jobs, args.rounds, workdir, False)
        if args.only != "text":
            for repeat in DAT_REPEATS:
                dat = Path(workdir) / "trace.dat"
                # Made in a process of its own: a run's peak memory counts what the process it was forked from held
                # (Linux keeps the larger of the two across exec), and building 349 MB here takes about 1 GB
                subprocess.run([sys.executable, "-c", "import lzma, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
                                "from bench_tracedat import SAMPLE, repeated_pages; "
                                "Path(sys.argv[2]).write_bytes(repeated_pages(lzma.decompress(SAMPLE.read_bytes()), int(sys.argv[3])))",
                                str(Path(__file__).parent), str(dat), str(repeat)], check=True)
                yardstick = shutil.which("trace-cmd") is not None
                bench(f"trace.dat, {SAMPLE.relative_to(ROOT)}'s pages x {repeat}", dat, jobs, args.rounds, workdir, yardstick)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
