#!/usr/bin/env python3
"""Benchmark visualize: parse speed (lines/s), peak memory, and render time, with `wc -l` as the floor.

Builds large traces by repeating the bundled real recordings (function_graph
default options from trace_pipe, and the plain function tracer) up to --size-mb,
then measures each stage in a fresh process so that peak RSS is per stage.

    python bench/bench.py                 # 256 MB per format
    python bench/bench.py --size-mb 1024  # the 1 GB case
    python bench/bench.py --input big.txt # your own trace
"""

from __future__ import annotations

import argparse
import json
import lzma
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = {
    "function_graph": ROOT / "tests/data/fg-default/trace.txt.xz",
    "function": ROOT / "tests/data/function-tracer/trace.txt.xz",
}
STAGE = r"""
import importlib.util, json, resource, sys, time
spec = importlib.util.spec_from_file_location("km", sys.argv[1]); km = importlib.util.module_from_spec(spec)
sys.modules["km"] = km; spec.loader.exec_module(km)
def cpu_s(who):
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime
started, self_started, children_started = time.perf_counter(), cpu_s(resource.RUSAGE_SELF), cpu_s(resource.RUSAGE_CHILDREN)
graph = km.parse_traces([sys.argv[2]])
parsed = time.perf_counter()
result = {"parse_s": parsed - started, "parse_cpu_s": cpu_s(resource.RUSAGE_SELF) - self_started, "children_cpu_s": cpu_s(resource.RUSAGE_CHILDREN) - children_started, "lines": graph.stats.lines, "events": graph.stats.events, "functions": len(graph.calls), "edges": len(graph.edges)}
result["call_paths"] = graph.tree.live_nodes() if hasattr(graph, "tree") else None
if sys.argv[3] == "render":
    rss_after_parse = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    view = km.build_view(graph, km.ViewRequest())
    heat = km.Heat.of_view(view, "self" if graph.timed else "calls", None)
    drawing = km.prune_for_drawing(view, 80, 200)
    km.render_graph(view, drawing, sys.argv[4] + ".pdf", heat, False)
    km.render_chart(view, sys.argv[4] + ".png", 30, heat)
    result["render_s"] = time.perf_counter() - parsed
    result["rss_after_parse_mb"] = rss_after_parse / 1024
result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(result))
"""


def build_trace(sample: Path, target: Path, size_mb: int) -> None:
    if target.exists() and target.stat().st_size >= size_mb << 20:
        return
    text = lzma.decompress(sample.read_bytes())
    with target.open("wb") as out:
        while out.tell() < size_mb << 20:
            out.write(text)


def load_average() -> str:
    """What else the machine is doing: the parse uses two cores when it can get them."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def timed(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - started, output


def bench_file(label: str, trace: Path) -> None:
    wc_s, wc_out = timed(["wc", "-l", str(trace)])
    lines = int(wc_out.split()[0])
    size_mb = trace.stat().st_size / (1 << 20)
    _, parse_out = timed([sys.executable, "-c", STAGE, str(ROOT / "kernel-magnifier.py"), str(trace), "parse"])
    parse = json.loads(parse_out)
    _, render_out = timed([sys.executable, "-c", STAGE, str(ROOT / "kernel-magnifier.py"), str(trace), "render", str(trace.with_suffix(""))])
    render = json.loads(render_out)
    print(f"{label}: {size_mb:.0f} MB, {lines:,} lines, {parse['functions']:,} functions, {parse['edges']:,} edges")
    print(f"  wc -l           {wc_s:7.2f} s  {lines / wc_s / 1e6:8.1f} M lines/s")
    print(f"  parse           {parse['parse_s']:7.2f} s  {lines / parse['parse_s'] / 1e6:8.2f} M lines/s  peak RSS {parse['peak_rss_mb']:.0f} MB"
          f"  (CPU {parse['parse_cpu_s']:.2f} s + {parse['children_cpu_s']:.2f} s in child processes)")
    print(f"  render pdf+png  {render['render_s']:7.2f} s  (80 nodes, 200 edges)  peak RSS {render['peak_rss_mb']:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--input", type=Path, help="benchmark this trace instead of generated ones")
    parser.add_argument("--format", choices=sorted(SAMPLES), action="append")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {Path('/proc/cpuinfo').read_text().count('processor')} CPUs, load average {load_average()}")
    if args.input:
        bench_file(args.input.name, args.input)
        return
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    for label in args.format or sorted(SAMPLES):
        trace = out / f"{label}-{args.size_mb}mb.txt"
        build_trace(SAMPLES[label], trace, args.size_mb)
        bench_file(label, trace)


if __name__ == "__main__":
    main()
