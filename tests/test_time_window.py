"""The summary names the trace's time span.

Expected values come from the raw lines by plain splitting (text) or from
trace-cmd report (trace.dat): a call starts at its entry line's timestamp, and
its caller is the call open one level up on its task when it was entered.
"""

from __future__ import annotations

import lzma
import re
from collections.abc import Iterable
from dataclasses import dataclass

from conftest import DATA, read_lines, run_cli

PROC_TRACE = DATA / "fg-abstime-proc" / "trace.txt.xz"  # funcgraph-abstime, -proc, -tail; no lost events
FUNCTION_TRACE = DATA / "function-tracer" / "trace.txt.xz"
DEMO_DAT = DATA / "record-demo-dat" / "kernel-magnifier.data.xz"  # record's trace.dat
NO_STAMPS = DATA / "record-demo" / "kernel-magnifier.data.xz"  # function_graph text without funcgraph-abstime


@dataclass
class GraphLine:
    """One function_graph event line: its task, timestamp (s), depth and text after the depth's indentation."""

    task: str
    stamp: float
    depth: int
    text: str


def text_graph_lines(lines: Iterable[str]) -> Iterable[GraphLine]:
    """ "  194.199869 |   0)    bash-121    |   1.2 us    |  x64_sys_call() {" split at its bars."""
    for line in lines:
        if line.startswith("#") or line.count("|") < 3:
            continue
        stamp, cpu_task, _, body = line.split("|", 3)
        cpu, task = cpu_task.split(")")
        pid = task.strip().rsplit("-", 1)[1]
        body = body[2:]
        yield GraphLine(f"0/{cpu.strip()}" if pid == "0" else pid, float(stamp), (len(body) - len(body.lstrip(" "))) // 2, body.strip())


def report_graph_lines(lines: Iterable[str]) -> Iterable[GraphLine]:
    """trace-cmd report: "python3-125   [000]    31.305852: funcgraph_entry:   5.5 us  |    f();" split at "] ", ":" and the bar."""
    for line in lines:
        if "funcgraph_" not in line:
            continue
        before, _, after = line.partition("] ")
        comm_pid, cpu = before.rsplit("[", 1)
        pid = comm_pid.strip().rsplit("-", 1)[1]
        body = line.split("|", 1)[1][2:]
        yield GraphLine(f"0/{int(cpu)}" if pid == "0" else pid, float(after.split(":", 1)[0]), (len(body) - len(body.lstrip(" "))) // 2, body.strip())


def test_summary_prints_the_time_span_of_the_trace(tmp_path):
    stamps = [line.stamp for line in text_graph_lines(read_lines(PROC_TRACE))]
    result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", str(tmp_path / "g.json"), "--chart", "")
    assert result.returncode == 0, result.stderr
    assert f"time span: {min(stamps):.6f} s to {max(stamps):.6f} s" in result.stdout.splitlines()
    function_stamps = [float(line.split("] ", 1)[1].split(": ", 1)[0].split()[-1]) for line in read_lines(FUNCTION_TRACE) if "] " in line and not line.startswith("#")]
    result = run_cli("visualize", "-i", str(FUNCTION_TRACE), "-o", str(tmp_path / "f.json"), "--chart", "")
    assert result.returncode == 0, result.stderr
    assert f"time span: {min(function_stamps):.6f} s to {max(function_stamps):.6f} s" in result.stdout.splitlines()
    result = run_cli("visualize", "-i", str(NO_STAMPS), "-o", str(tmp_path / "n.json"), "--chart", "")
    assert result.returncode == 0, result.stderr
    assert "time span: no timestamps in the trace" in result.stdout.splitlines()
    from test_tracedat import report_text

    trace = tmp_path / "kernel-magnifier.data"
    trace.write_bytes(lzma.decompress(DEMO_DAT.read_bytes()))
    report = [line for line in report_text(tmp_path, trace).read_text().splitlines() if "funcgraph_" in line]
    stamps = [line.stamp for line in report_graph_lines(report)]
    # a leaf line is its entry's: the last event can be its exit, up to its duration later
    ends = [stamp + float(match[1]) / 1e6 for stamp, line in zip(stamps, report) if (match := re.search(r"([\d.]+) us", line.split("|")[0]))]
    result = run_cli("visualize", "-i", str(trace), "-o", str(tmp_path / "d.json"), "--chart", "")
    assert result.returncode == 0, result.stderr
    shown = re.search(r"^time span: ([\d.]+) s to ([\d.]+) s$", result.stdout, re.M)
    assert shown, result.stdout
    # trace-cmd prints microseconds cut off, the summary rounds the nanoseconds
    assert abs(float(shown[1]) - min(stamps)) <= 1e-6
    assert max(stamps) - 1e-6 <= float(shown[2]) <= max(ends) + 1e-6


def test_the_span_comes_back_from_the_parses_in_child_processes(tmp_path, monkeypatch):
    graph_stamps = [line.stamp for line in text_graph_lines(read_lines(PROC_TRACE))]
    function_stamps = [float(line.split("] ", 1)[1].split(": ", 1)[0].split()[-1]) for line in read_lines(FUNCTION_TRACE) if "] " in line and not line.startswith("#")]
    plain = tmp_path / "trace.txt"
    plain.write_text("\n".join(read_lines(PROC_TRACE)))
    monkeypatch.setenv("KM_PARSE_PROCESSES", "2")  # forks even for small inputs: each input in a child of its own,
    monkeypatch.setenv("KM_SPLIT_AT", "0.5")  # or the second half of a single input
    result = run_cli("visualize", "-i", str(plain), "-o", str(tmp_path / "s.json"), "--chart", "")
    assert result.returncode == 0, result.stderr
    assert f"time span: {min(graph_stamps):.6f} s to {max(graph_stamps):.6f} s" in result.stdout.splitlines()
    result = run_cli("visualize", "-i", str(plain), "-i", str(FUNCTION_TRACE), "-o", str(tmp_path / "p.json"), "--chart", "")
    assert result.returncode == 0, result.stderr
    assert f"time span: {min(graph_stamps):.6f} s to {max(function_stamps):.6f} s" in result.stdout.splitlines()
