#!/usr/bin/env python3
"""Benchmark the trace.dat decoder: events/s of the decode alone, of decode + model, and of the whole CLI.

Each stage runs in a fresh process (peak RSS is per stage), for this
kernel-magnifier.py and, side by side, for a baseline revision of it (git show
REV:kernel-magnifier.py, default main).

The default input is one trace.dat of over a million events made of a real
recording's pages: the bundled trace-cmd sample (version 6, 28,710 events of a
2-CPU Debian 6.1 guest, 18 pages with lost events) with each CPU's 120 pages
written --repeat times, every copy's page timestamps moved past the previous
copy's (the events inside a page are deltas from its stamp; durations come
from the events' own calltime/rettime). --sample record does the same with the
trace.dat record writes from tests/data/raw-binary (128 pages per CPU read from
trace_pipe_raw, 31,000 events, none lost). A real file given with --input is read
as it is when it holds a million events, else given --repeat times as inputs
of one run (each input then pays its own metadata and kallsyms parse).

    python bench/bench_tracedat.py                          # the sample's pages x 35 in one file (1.0 M events)
    python bench/bench_tracedat.py --sample record          # record's trace.dat of tests/data/raw-binary, pages x 33
    python bench/bench_tracedat.py --input trace.dat --repeat 4
    python bench/bench_tracedat.py --baseline ''            # this version only
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests/data/trace-cmd/trace-v6.dat.xz"
STAGE = r"""
import importlib.util, json, resource, sys, time
spec = importlib.util.spec_from_file_location("km", sys.argv[1]); km = importlib.util.module_from_spec(spec)
sys.modules["km"] = km; spec.loader.exec_module(km)
paths = sys.argv[3:]
cpu_time = lambda: sum(getattr(resource.getrusage(who), part) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) for part in ("ru_utime", "ru_stime"))
started, cpu_started = time.perf_counter(), cpu_time()
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
elapsed, cpu = time.perf_counter() - started, cpu_time() - cpu_started  # a decoding child process included
# Our own peak from VmHWM: getrusage's ru_maxrss survives exec, so it would count the bench's 1 GB file build.
own_kb = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
print(json.dumps({"seconds": elapsed, "cpu_seconds": cpu, "events": events, "peak_rss_mb": max(own_kb, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024}))
"""
# The whole CLI as a user runs it, with its peak RSS (its own and its children's) reported after it ends.
CLI = r"""
import json, resource, runpy, sys
script, sys.argv = sys.argv[1], sys.argv[1:]
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as end:
    if end.code:
        raise
own_kb = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))  # not ru_maxrss: it survives exec
peak = max(own_kb, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(json.dumps({"peak_rss_mb": peak / 1024}), file=sys.stderr)
"""


def repeated_pages(source: bytes, repeat: int) -> bytes:
    """A version-6 trace.dat with each CPU's pages written `repeat` times, each copy later in time than the last."""
    table = source.rfind(b"flyrecord\x00") + 10
    first = struct.unpack_from("<Q", source, table)[0]
    cpus = []
    while table + 16 * len(cpus) < first and len(cpus) < 1024:
        offset, size = struct.unpack_from("<QQ", source, table + 16 * len(cpus))
        if offset < first or offset + size > len(source):
            break
        cpus.append((offset, size))
    page_size = struct.unpack_from("<I", source, source.index(b"\x00", 3) + 3)[0]
    stamps = [struct.unpack_from("<Q", source, offset + page)[0] for offset, size in cpus for page in range(0, size, page_size)]
    shift = max(stamps) - min(stamps) + 1_000_000  # 1 ms after the previous copy's last page
    blocks = []
    for offset, size in cpus:
        pages = bytearray(source[offset : offset + size] * repeat)
        for copy in range(1, repeat):
            for page in range(copy * size, (copy + 1) * size, page_size):
                struct.pack_into("<Q", pages, page, struct.unpack_from("<Q", pages, page)[0] + copy * shift)
        blocks.append(bytes(pages))
    head = bytearray(source[:first])
    position = first
    for index, block in enumerate(blocks):
        struct.pack_into("<QQ", head, table + 16 * index, position, len(block))
        position += len(block)
    return bytes(head) + b"".join(blocks)


def stage(script: str, kind: str, paths: list[str], env: dict[str, str] | None = None) -> dict:
    output = subprocess.run([sys.executable, "-c", STAGE, script, kind, *paths], check=True, capture_output=True, text=True, env={**os.environ, **(env or {})})
    return json.loads(output.stdout.strip().splitlines()[-1])


def whole_cli(script: str, paths: list[str], workdir: str, env: dict[str, str] | None = None) -> dict:
    """Wall and CPU seconds (children included) and peak RSS of one `visualize -o graph.json` run."""
    inputs = [arg for path in paths for arg in ("-i", path)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    output = subprocess.run(
        [sys.executable, "-c", CLI, script, "visualize", *inputs, "-o", str(Path(workdir) / "graph.json"), "--chart", ""],
        check=True, capture_output=True, text=True, env={**os.environ, **(env or {})},
    )
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"seconds": seconds, "cpu_seconds": cpu, **json.loads(output.stderr.strip().splitlines()[-1])}


def baseline_script(revision: str, workdir: str) -> str | None:
    if not revision:
        return None
    shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:kernel-magnifier.py"], capture_output=True)
    if shown.returncode:
        print(f"no baseline: git show {revision}:kernel-magnifier.py failed", file=sys.stderr)
        return None
    path = Path(workdir) / f"baseline-{revision.replace('/', '-')}.py"
    path.write_bytes(shown.stdout)
    return str(path)


def rate(result: dict, events: int) -> str:
    return (
        f"{events / result['seconds'] / 1e6:5.2f} M/s wall ({result['seconds']:5.2f} s),"
        f" {events / result['cpu_seconds'] / 1e6:5.2f} M/CPU-s ({result['cpu_seconds']:5.2f} s), peak RSS {result['peak_rss_mb']:4.0f} MB"
    )


def record_sample(path: str) -> bytes:
    """The trace.dat record writes from the real pages and tracefs files of tests/data/raw-binary (as its tests do)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import load_module
    from test_tracedat_write import parts, spools

    km = load_module()
    with open(path, "wb") as output:
        km.write_trace_dat(output, parts(km), spools())
    return Path(path).read_bytes()


def inputs_of(args: argparse.Namespace, workdir: str) -> tuple[list[str], str]:
    """The paths of one run and what they are."""
    script = str(ROOT / "kernel-magnifier.py")
    if args.input is None:
        path = str(Path(workdir) / "trace.dat")
        if args.sample == "record":
            sample, name = record_sample(path), "record's trace.dat of tests/data/raw-binary"
        else:
            sample, name = lzma.decompress(SAMPLE.read_bytes()), SAMPLE.name
            Path(path).write_bytes(sample)
        once = stage(script, "decode", [path])["events"]
        repeat = args.repeat or -(-1_000_000 // once)
        Path(path).write_bytes(repeated_pages(sample, repeat))
        return [path], f"{name}: its pages x {repeat} in one file ({os.path.getsize(path) / 1e6:.0f} MB)"
    once = stage(script, "decode", [args.input])["events"]
    repeat = args.repeat or max(1, -(-1_000_000 // max(once, 1)))
    return [args.input] * repeat, f"{args.input} ({once:,} events) given {repeat} times"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", help="a trace.dat (default: the bundled real sample's pages, repeated in one file)")
    parser.add_argument("--sample", choices=("trace-cmd", "record"), default="trace-cmd", help="the real pages repeated when no --input is given")
    parser.add_argument("--repeat", type=int, default=0, help="copies of the pages, or times the --input is given (default: enough for 1 M events)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per stage and version; the best is reported")
    parser.add_argument("--baseline", default="main", help="git revision to compare with ('' for none; default main)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        paths, what = inputs_of(args, workdir)
        this = str(ROOT / "kernel-magnifier.py")
        # "this": one process (KM_PARSE_PROCESSES=1, the file is in one time window); "2 windows": two time windows, one
        # process each (what -j 2 does: bench_jobs.py measures -j 1..8)
        versions = {"this": (this, {"KM_PARSE_PROCESSES": "1"}), "this, 2 windows": (this, {"KM_PARSE_PROCESSES": "2"})}
        baseline = baseline_script(args.baseline, workdir)
        if baseline:
            versions[args.baseline] = (baseline, {})
        events = stage(this, "decode", paths)["events"]
        print(f"{what}: {events:,} events per run; best of {args.rounds} interleaved rounds")
        stages = (
            ("decode only (pages -> merged event arrays)", lambda script, env: stage(script, "decode", paths, env)),
            ("decode + model (parse_traces)", lambda script, env: stage(script, "model", paths, env)),
            ("whole visualize -o graph.json", lambda script, env: whole_cli(script, paths, workdir, env)),
        )
        for label, run in stages:
            results: dict[str, list[dict]] = {name: [] for name in versions}
            for _ in range(args.rounds):
                for name, (script, env) in versions.items():
                    if label.startswith("decode only") and name == "this, 2 windows":
                        continue  # the decode alone is one process in every version
                    results[name].append(run(script, env))
            print(label)
            for name, runs in results.items():
                if runs:
                    print(f"  {name:>17}: {rate(min(runs, key=lambda result: result['cpu_seconds']), events)}")
        print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (CPU-s rates are the ones to compare on a shared machine)")


if __name__ == "__main__":
    main()
