#!/usr/bin/env python3
"""Instructions per line of the text parser, two versions side by side: a measure the machine's load does not move.

    git show main:kernel-magnifier.py > /tmp/before.py
    python bench/bench_instructions.py /tmp/before.py kernel-magnifier.py

Wall and CPU times on a shared 2-core machine vary by 30 % from run to run;
valgrind's instruction count (callgrind) does not. For each format, each
version parses the first --mb and the first 2 x --mb of bench.py's generated
trace in one process (no split), and the difference of the two counts, divided
by the difference in lines, is what one more line costs once the caches are
warm: start-up, compiling the script and the first, cold copy of the sample
cancel out. Needs valgrind; takes about a minute per version and format.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import ROOT, SAMPLES, build_trace

PARSE = r"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("km", sys.argv[1]); km = importlib.util.module_from_spec(spec)
sys.modules["km"] = km; spec.loader.exec_module(km)
parser = km.TraceParser(km.CallGraph())
for batch in km.read_text_lines(sys.argv[2]):
    parser.feed_lines(batch)
parser.finish()
"""


def instructions(script: Path, trace: Path) -> int:
    """Instructions of one whole parse of `trace` by `script`, counted by callgrind."""
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c", PARSE, str(script), str(trace)],
        capture_output=True, text=True, check=True,
    )
    return int(re.search(r"Collected : (\d+)", run.stderr).group(1))


def head_of(trace: Path, size: int, folder: str) -> tuple[Path, int]:
    """The first `size` bytes of the trace, cut at a line end, and their line count."""
    data = trace.read_bytes()[:size]
    data = data[: data.rfind(b"\n") + 1]
    path = Path(folder) / f"{trace.stem}-{size}.txt"
    path.write_bytes(data)
    return path, data.count(b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--mb", type=int, default=12, help="the smaller slice (default 12 MB, 3.5 copies of the sample)")
    parser.add_argument("--format", choices=sorted(SAMPLES), action="append")
    args = parser.parse_args()
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        for label in args.format or sorted(SAMPLES):
            trace = out / f"{label}-64mb.txt"
            build_trace(SAMPLES[label], trace, 64)
            (small, small_lines), (large, large_lines) = (head_of(trace, mb << 20, folder) for mb in (args.mb, 2 * args.mb))
            print(f"{label}: lines {small_lines:,} -> {large_lines:,}")
            for script in (args.before, args.after):
                per_line = (instructions(script, large) - instructions(script, small)) / (large_lines - small_lines)
                print(f"  {script!s:40} {per_line:8,.0f} instructions per line")


if __name__ == "__main__":
    main()
