#!/usr/bin/env python3
"""Benchmark the trace.dat decoder: events/s of the decode alone, of decode + model, and of the whole CLI.

Each stage runs in a fresh process (peak RSS is per stage), on a real trace.dat
given --repeat times as inputs of one run, so that a recording of a few hundred
thousand events still measures a run of over a million.

    python bench/bench_tracedat.py                          # the bundled sample (28,710 events) x 40
    python bench/bench_tracedat.py --input trace.dat --repeat 4
"""

from __future__ import annotations

import argparse
import json
import lzma
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests/data/trace-cmd/trace-v7-zstd.dat.xz"
STAGE = r"""
import importlib.util, json, resource, sys, time
spec = importlib.util.spec_from_file_location("km", sys.argv[1]); km = importlib.util.module_from_spec(spec)
sys.modules["km"] = km; spec.loader.exec_module(km)
paths = sys.argv[3:]
started = time.perf_counter()
events = 0
if sys.argv[2] == "decode":
    # pages -> merged, decoded event arrays (what the model is then fed), no model calls
    for path in paths:
        with km.mapped_trace_dat(path) as data:
            dat = km.TraceDat(path, data)
            decoder = km.EventDecoder(dat)
            damage = []
            for window in km.merge_by_time([km.cpu_event_batches(dat, decoder, cpu, damage) for cpu in dat.cpus]):
                events += int((window.kind != km.EV_LOST).sum())
else:
    graph = km.parse_traces(paths)
    events = graph.stats.events
elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "events": events, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def stage(kind: str, paths: list[str]) -> dict:
    output = subprocess.run([sys.executable, "-c", STAGE, str(ROOT / "kernel-magnifier.py"), kind, *paths], check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def whole_cli(paths: list[str], workdir: str) -> float:
    inputs = [arg for path in paths for arg in ("-i", path)]
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(ROOT / "kernel-magnifier.py"), "visualize", *inputs, "-o", str(Path(workdir) / "graph.json"), "--chart", ""],
        check=True, capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", help="a trace.dat (default: the bundled real sample)")
    parser.add_argument("--repeat", type=int, default=0, help="times the file is given as input (default: enough for 1 M events)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per stage; the best is reported")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        path = args.input
        if path is None:
            path = str(Path(workdir) / "trace.dat")
            Path(path).write_bytes(lzma.decompress(SAMPLE.read_bytes()))
        once = stage("decode", [path])
        repeat = args.repeat or max(1, -(-1_000_000 // max(once["events"], 1)))
        paths = [path] * repeat
        print(f"{path}: {once['events']:,} events, given {repeat} times ({once['events'] * repeat:,} events per run)")
        for kind, label in (("decode", "decode only (pages -> merged event arrays)"), ("model", "decode + model (parse_traces)")):
            best = min((stage(kind, paths) for _ in range(args.rounds)), key=lambda result: result["seconds"])
            print(f"{label}: {best['events'] / best['seconds'] / 1e6:.2f} M events/s ({best['seconds']:.2f} s, peak RSS {best['peak_rss_mb']:.0f} MB)")
        seconds = min(whole_cli(paths, workdir) for _ in range(args.rounds))
        print(f"whole process (visualize -o graph.json): {once['events'] * repeat / seconds / 1e6:.2f} M events/s ({seconds:.2f} s)")


if __name__ == "__main__":
    main()
