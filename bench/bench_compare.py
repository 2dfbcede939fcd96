#!/usr/bin/env python3
"""Parse speed of two versions of kernel-magnifier.py side by side, in one run, rounds interleaved.

    git show main~3:kernel-magnifier.py > /tmp/before.py
    python bench/bench_compare.py /tmp/before.py kernel-magnifier.py --size-mb 128 --rounds 3

Each round parses the same generated traces (bench.py's samples repeated up to
--size-mb) once with each script, in a fresh process, and prints the best and
median time and lines/s of each, the CPU time of the process and of its child
(the second half of a split file: on two free cores the time is about the larger), the
`wc -l` floor and the ratio. Interleaving keeps the comparison fair on a machine
whose load changes; the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from bench import ROOT, SAMPLES, STAGE, build_trace, load_average, timed


def parse_once(script: Path, trace: Path) -> dict:
    output = subprocess.run([sys.executable, "-c", STAGE, str(script), str(trace), "parse"], check=True, capture_output=True, text=True).stdout
    return json.loads(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--size-mb", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--format", choices=sorted(SAMPLES), action="append")
    args = parser.parse_args()
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    print(f"load average before: {load_average()}")
    for label in args.format or sorted(SAMPLES):
        trace = out / f"{label}-{args.size_mb}mb.txt"
        build_trace(SAMPLES[label], trace, args.size_mb)
        wc_s = min(timed(["wc", "-l", str(trace)])[0] for _ in range(args.rounds))
        times: dict[Path, list[float]] = {args.before: [], args.after: []}
        cpu: dict[Path, list[tuple[float, float]]] = {args.before: [], args.after: []}
        result = {}
        for _ in range(args.rounds):
            for script in (args.before, args.after):
                result = parse_once(script, trace)
                times[script].append(result["parse_s"])
                cpu[script].append((result["parse_cpu_s"], result["children_cpu_s"]))
        lines = result["lines"]
        print(f"{label}: {trace.stat().st_size / (1 << 20):.0f} MB, {lines:,} lines, {args.rounds} rounds")
        print(f"  {'wc -l':24} best   {wc_s:6.2f} s  {lines / wc_s / 1e6:5.1f} M lines/s")
        for script in (args.before, args.after):
            best, median = min(times[script]), statistics.median(times[script])
            own, child = min(cpu[script], key=sum)
            print(
                f"  {script.name:24} best   {best:6.2f} s  {lines / best / 1e6:5.2f} M lines/s  median {median:6.2f} s"
                f"  CPU {own:.2f} s + {child:.2f} s in a child  (runs {', '.join(f'{t:.2f}' for t in times[script])})"
            )
        ratio = min(times[args.after]) / min(times[args.before])
        print(f"  after/before (best): {ratio:.2f}x the time")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
