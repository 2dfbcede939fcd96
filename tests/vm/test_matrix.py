"""The kernel matrix's smoke, checked on the host: what tests/vm/matrix-smoke.sh recorded in each guest (make vm-test-matrix).

For every kernel (x86_64 5.10, 6.1, 6.12, 7.3; arm64 6.12 with 4 KB and 16 KB pages), what a user would check:
tracefs is given back exactly as found (the guest's snapshots before and after), the host's own x86 trace-cmd report
reads every trace.dat (its event count is the expected value, ours must equal it), visualize names functions (no hex
addresses, no arm64 symbol artefacts), record printed its loss line and it agrees with the counters in the file.
The table of the matrix (README) goes to $KM_MATRIX_OUT/matrix-table.md. Skipped unless KM_MATRIX_OUT is set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import graph_json, read_lines
from test_loss_vs_trace_cmd import kernel_counters

MATRIX = Path(os.environ.get("KM_MATRIX_OUT", "/nonexistent"))
KERNELS = sorted(path.name for path in MATRIX.iterdir() if (path / "console.txt").exists()) if MATRIX.is_dir() else []
pytestmark = [
    pytest.mark.skipif(not KERNELS, reason="needs the guests' results: KM_MATRIX_OUT of `make vm-test-matrix`"),
    pytest.mark.skipif(shutil.which("trace-cmd") is None, reason="needs trace-cmd (apt-get install trace-cmd)"),
]
TRACE_DAT = ["narrow", "whole", "function"]
NARROW = "do_sys_openat2"
# an address where a name should be (uftrace's and Perfetto's arm64 bugs), or a data symbol taken for a function
NOT_A_NAME = re.compile(r"^(0x)?[0-9a-f]{8,}$|^__this_module$|__compound_literal")
LOSS_LINE = re.compile(r"Events read: ([\d,]+); lost by the kernel: ([\d,]+) \(([\d.]+)%\)")


def info(kernel: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (MATRIX / kernel / "info.txt").read_text().splitlines() if "=" in line)
    return dict(pairs)


def trace_cmd_report(path: Path) -> list[str]:
    """trace-cmd report's raw events (-R: one line per event, no plugin merging an entry with its exit)."""
    result = subprocess.run(["trace-cmd", "report", "-R", str(path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if re.search(r"\[\d+\]\s+\d+\.\d+: ", line)]


@pytest.fixture(params=KERNELS)
def kernel(request) -> str:
    assert (MATRIX / request.param / "info.txt").exists(), f"the guest of {request.param} did not run the smoke: see its console.txt"
    return request.param


def test_every_recording_succeeded_and_printed_its_loss(kernel):
    for name in [*TRACE_DAT, "text"]:
        out = (MATRIX / kernel / f"{name}.out").read_text()
        assert (MATRIX / kernel / f"{name}.rc").read_text().strip() == "0", out
        assert LOSS_LINE.search(out), f"{kernel} {name}: no loss line in\n{out}"


def test_tracefs_given_back_as_found(kernel):
    before = json.loads((MATRIX / kernel / "before.json").read_text())
    after = json.loads((MATRIX / kernel / "after.json").read_text())
    changed = {key: (before.get(key), after.get(key)) for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    assert not changed
    assert len(before) > 100  # options, events: the snapshot saw tracefs


@pytest.mark.parametrize("name", TRACE_DAT)
def test_trace_cmd_reads_it_as_we_do_with_names(kernel, name, tmp_path):
    path = MATRIX / kernel / f"{name}.dat"
    events = trace_cmd_report(path)
    graph = graph_json(tmp_path, path)
    assert graph["stats"]["events"] == len(events)
    read, lost, _ = LOSS_LINE.search((MATRIX / kernel / f"{name}.out").read_text()).groups()
    counters = graph["stats"]["kernel_stats"].values()
    assert int(read.replace(",", "")) == sum(cpu["read-events"] for cpu in counters)
    assert int(lost.replace(",", "")) == sum(cpu["overrun"] + cpu["dropped-events"] for cpu in counters)
    names = [node["name"] for node in graph["nodes"]]
    assert names and not [n for n in names if NOT_A_NAME.search(n)]
    if name == "narrow":
        expected = sum(1 for line in events if re.search(rf"funcgraph_entry:\s+func={NARROW} ", line))
        assert expected > 0 and {n["name"]: n["calls"] for n in graph["nodes"]}[NARROW] == expected
    else:
        switches = sum(1 for line in events if re.search(r" sched_switch: ", line))
        assert switches > 0 and graph["stats"]["trace_events"]["sched_switch"] == switches


def test_text_recording_reads_with_names(kernel, tmp_path):
    path = MATRIX / kernel / "text.txt.xz"
    expected = sum(1 for line in read_lines(path) if re.search(rf"\|\s+{NARROW}\(\)( \{{|;)", line))
    graph = graph_json(tmp_path, path)
    names = {node["name"]: node["calls"] for node in graph["nodes"]}
    assert expected > 0 and names[NARROW] == expected
    assert not [n for n in names if NOT_A_NAME.search(n)]


def loss_cell(kernel: str) -> str:
    ours, theirs = MATRIX / kernel / "loss-km.dat", MATRIX / kernel / "loss-tc.dat"
    if not ours.exists() or not theirs.exists():
        return "not measured"
    shares = []
    for path in (ours, theirs):
        lost, kept = kernel_counters(path)
        shares.append(lost / (lost + kept) if lost + kept else 0.0)
    return f"{shares[0]:.1%} / {shares[1]:.1%}"


def test_matrix_table():
    """The README's table: one row per kernel, from what its guest printed and recorded."""
    rows = ["| kernel | arch | page | function_graph, function | tracers in an instance | loss: record / trace-cmd | guest s |",
            "|---|---|---|---|---|---|---|"]
    for kernel in KERNELS:
        found = info(kernel)
        tracers = found["tracers"].split()
        modes = ", ".join(t for t in ("function_graph", "function") if t in tracers) or "none"
        instance = " ".join(t for t in found["instance_tracers"].split() if t in ("function_graph", "function")) or found["instance_tracers"]
        seconds = (MATRIX / kernel / "seconds").read_text().strip() if (MATRIX / kernel / "seconds").exists() else "?"
        rows.append(f"| {found['kernel']} | {found['machine']} | {int(found['page_size']) // 1024} KB | {modes} | {instance}"
                    f" | {loss_cell(kernel)} | {seconds} |")
    table = "\n".join(rows) + f"\n\nTested {time.strftime('%Y-%m-%d', time.gmtime())}.\n"
    (MATRIX / "matrix-table.md").write_text(table)
    print(table)
    assert len(rows) == len(KERNELS) + 2
