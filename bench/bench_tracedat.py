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
import os
import resource
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
started, cpu_started = time.perf_counter(), time.process_time()
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
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
print(json.dumps({"seconds": elapsed, "cpu_seconds": cpu, "events": events, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def stage(kind: str, paths: list[str]) -> dict:
    output = subprocess.run([sys.executable, "-c", STAGE, str(ROOT / "kernel-magnifier.py"), kind, *paths], check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def whole_cli(paths: list[str], workdir: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one visualize run."""
    inputs = [arg for path in paths for arg in ("-i", path)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(ROOT / "kernel-magnifier.py"), "visualize", *inputs, "-o", str(Path(workdir) / "graph.json"), "--chart", ""],
        check=True, capture_output=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - started, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


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
            print(
                f"{label}: {best['events'] / best['seconds'] / 1e6:.2f} M events/s wall ({best['seconds']:.2f} s),"
                f" {best['events'] / best['cpu_seconds'] / 1e6:.2f} M events/CPU-s ({best['cpu_seconds']:.2f} s), peak RSS {best['peak_rss_mb']:.0f} MB"
            )
        seconds, cpu = min(whole_cli(paths, workdir) for _ in range(args.rounds))
        events = once["events"] * repeat
        print(f"whole process (visualize -o graph.json): {events / seconds / 1e6:.2f} M events/s wall ({seconds:.2f} s), {events / cpu / 1e6:.2f} M events/CPU-s ({cpu:.2f} s)")
        print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (CPU-s rates are the ones to compare on a shared machine)")


if __name__ == "__main__":
    main()
