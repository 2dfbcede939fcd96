#!/usr/bin/env python3
"""Parse speed of two versions of kernel-magnifier.py side by side, in one run, rounds interleaved.

    git show main~3:kernel-magnifier.py > /tmp/before.py
    python bench/bench_compare.py /tmp/before.py kernel-magnifier.py --size-mb 128 --rounds 3

Each round parses the same generated traces (bench.py's samples repeated up to
--size-mb) once with each script, in a fresh process, and prints the median
time and lines/s of each, plus the ratio. Interleaving keeps the comparison fair
on a machine whose load changes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from bench import ROOT, SAMPLES, STAGE, build_trace


def parse_once(script: Path, trace: Path) -> dict:
    output = subprocess.run([sys.executable, "-c", STAGE, str(script), str(trace), "parse"], check=True, capture_output=True, text=True).stdout
    return json.loads(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--size-mb", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    for label in sorted(SAMPLES):
        trace = out / f"{label}-{args.size_mb}mb.txt"
        build_trace(SAMPLES[label], trace, args.size_mb)
        times: dict[Path, list[float]] = {args.before: [], args.after: []}
        result = {}
        for _ in range(args.rounds):
            for script in (args.before, args.after):
                result = parse_once(script, trace)
                times[script].append(result["parse_s"])
        lines = result["lines"]
        print(f"{label}: {trace.stat().st_size / (1 << 20):.0f} MB, {lines:,} lines, {args.rounds} rounds")
        for script in (args.before, args.after):
            median = statistics.median(times[script])
            print(f"  {script.name:24} median {median:6.2f} s  {lines / median / 1e6:5.2f} M lines/s  (runs {', '.join(f'{t:.2f}' for t in times[script])})")
        ratio = statistics.median(times[args.after]) / statistics.median(times[args.before])
        print(f"  after/before: {ratio:.2f}x the time")


if __name__ == "__main__":
    main()
