"""--time-window cuts every view to the calls that start in it; the summary names the trace's time span.

Expected values come from the raw lines by plain splitting (text) or from
trace-cmd report (trace.dat): a call starts at its entry line's timestamp, and
its caller is the call open one level up on its task when it was entered.
"""

from __future__ import annotations

import json
import lzma
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from conftest import DATA, assert_one_line_error, edges_by_pair, graph_json, nodes_by_name, read_lines, run_cli

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


@dataclass
class Expected:
    calls: Counter = field(default_factory=Counter)
    edges: Counter = field(default_factory=Counter)
    without_caller: int = 0  # below depth 0, caller not started in the window (or not in the trace)


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


def expected_in_window(lines: Iterable[GraphLine], start: float, end: float) -> Expected:
    """The calls (entries and leaves) that start in [start, end], and their caller -> callee edges when both do."""
    expected = Expected()
    open_calls: dict[str, dict[int, GraphLine]] = {}
    for line in lines:
        frames = open_calls.setdefault(line.task, {})
        if line.text.startswith("}"):
            for depth in [depth for depth in frames if depth >= line.depth]:
                del frames[depth]
            continue
        name = line.text.split("(")[0].split(" [")[0]
        caller = frames.get(line.depth - 1)
        for depth in [depth for depth in frames if depth >= line.depth]:
            del frames[depth]
        if line.text.endswith("{"):
            frames[line.depth] = line
        if not start <= line.stamp <= end:
            continue
        expected.calls[name] += 1
        if caller is not None and start <= caller.stamp <= end:
            expected.edges[(caller.text.split("(")[0].split(" [")[0], name)] += 1
        elif line.depth > 0:
            expected.without_caller += 1
    return expected


def gap_near(stamps: list[float], share: float) -> float:
    """A time between two events at least 2 us apart, near `share` of the span: no event printed to the microsecond sits at it."""
    ordered = sorted(set(stamps))
    index = int(len(ordered) * share)
    while ordered[index + 1] - ordered[index] < 2e-6:
        index += 1
    return round((ordered[index] + ordered[index + 1]) / 2, 7)


def window_note_count(stdout: str) -> tuple[int, int]:
    match = re.search(r"--time-window \S+ s: the ([\d,]+) calls that start in it.*?; ([\d,]+) whose caller", stdout)
    assert match, stdout
    return int(match.group(1).replace(",", "")), int(match.group(2).replace(",", ""))


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


def test_every_view_of_a_function_graph_text_holds_only_the_calls_that_start_in_the_window(tmp_path):
    start, end = 194.3, 194.4
    expected = expected_in_window(text_graph_lines(read_lines(PROC_TRACE)), start, end)
    window = ("--time-window", f"{start},{end}")
    graph = graph_json(tmp_path, PROC_TRACE, extra=window)
    assert {name: node["calls"] for name, node in nodes_by_name(graph).items()} == dict(expected.calls)
    assert edges_by_pair(graph) == dict(expected.edges)
    total = sum(expected.calls.values())
    assert 10_000 < total < sum(node["calls"] for node in graph_json(tmp_path, PROC_TRACE)["nodes"])
    folded = tmp_path / "w.folded"
    result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", str(folded), "--chart", "", "--weight", "calls", *window)
    assert result.returncode == 0, result.stderr
    assert sum(int(line.rsplit(" ", 1)[1]) for line in folded.read_text().splitlines()) == total
    assert window_note_count(result.stdout) == (total, expected.without_caller)
    page = tmp_path / "w.flame.html"
    result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", str(page), "--chart", "", *window)
    assert result.returncode == 0, result.stderr
    text = page.read_text()
    assert json.loads(re.search(r'id="data">(.*?)</script>', text, re.S)[1])["calls"][0] == total
    assert f"the {total:,} calls that start in it" in text
    dot = tmp_path / "w.dot"
    result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", str(dot), "--chart", "", *window)
    assert result.returncode == 0, result.stderr
    assert f"the {total:,} calls that start in it" in dot.read_text()


def test_latency_and_timeline_count_the_calls_that_start_in_the_window(tmp_path):
    start, end = 194.3, 194.4
    expected = expected_in_window(text_graph_lines(read_lines(PROC_TRACE)), start, end)
    result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", str(tmp_path / "t.trace.json"), "--chart", "",
                     "--latency", "_raw_spin_lock", "--latency-chart", str(tmp_path / "l.png"), "--time-window", f"{start},{end}")
    assert result.returncode == 0, result.stderr
    assert f"latency of _raw_spin_lock: {expected.calls['_raw_spin_lock']:,} calls," in result.stdout
    assert "latency: the calls that start in --time-window 194.300000-194.400000 s" in result.stdout
    events = [event for event in json.loads((tmp_path / "t.trace.json").read_text())["traceEvents"] if event["ph"] == "X"]
    assert len(events) == sum(expected.calls.values())  # every call in this window has its exit in the trace


def test_a_function_tracer_window_keeps_the_lines_stamped_in_it(tmp_path):
    start, end = 957.6, 957.7
    edges: Counter = Counter()
    for line in read_lines(FUNCTION_TRACE):
        if "] " not in line or line.startswith("#"):
            continue
        stamp, text = line.split("] ", 1)[1].split(": ", 1)
        if start <= float(stamp.split()[-1]) <= end:
            name, _, caller = text.partition(" <-")
            edges[(caller.strip(), name.strip())] += 1
    graph = graph_json(tmp_path, FUNCTION_TRACE, extra=("--time-window", f"{start},{end}"))
    assert edges_by_pair(graph) == dict(edges)
    assert sum(node["calls"] for node in graph["nodes"]) == sum(edges.values())


def test_a_trace_dat_window_matches_trace_cmd_report(tmp_path):
    from test_tracedat import report_text

    trace = tmp_path / "kernel-magnifier.data"
    trace.write_bytes(lzma.decompress(DEMO_DAT.read_bytes()))
    lines = list(report_graph_lines(report_text(tmp_path, trace).read_text().splitlines()))
    stamps = [line.stamp for line in lines]
    start, end = gap_near(stamps, 0.3), gap_near(stamps, 0.6)
    expected = expected_in_window(lines, start, end)
    result = run_cli("visualize", "-i", str(trace), "-o", str(tmp_path / "g.json"), "--chart", "", "--time-window", f"{start},{end}")
    assert result.returncode == 0, result.stderr
    graph = json.loads((tmp_path / "g.json").read_text())
    assert {name: node["calls"] for name, node in nodes_by_name(graph).items()} == dict(expected.calls)
    assert edges_by_pair(graph) == dict(expected.edges)
    assert window_note_count(result.stdout) == (sum(expected.calls.values()), expected.without_caller)


def test_a_window_outside_the_trace_names_its_span(tmp_path):
    lines = list(text_graph_lines(read_lines(PROC_TRACE)))
    stamps = [line.stamp for line in lines]
    result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", str(tmp_path / "g.json"), "--chart", "", "--time-window", "100,101")
    assert_one_line_error(result, f"no call starts in --time-window 100,101: the trace spans {min(stamps):.6f} s to {max(stamps):.6f} s")
    assert not (tmp_path / "g.json").exists()
    in_window = {line.task for line in lines if 194.3 <= line.stamp <= 194.4}
    elsewhere = sorted({line.task for line in lines if line.task.isdigit()} - in_window)[0]  # a task that ran only outside it
    result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", str(tmp_path / "g.json"), "--chart", "", "--time-window", "194.3,194.4", "--pid", elsewhere)
    assert_one_line_error(result, "no call starts in --time-window 194.3,194.4 (in the selected tasks and CPUs): the trace spans")


def test_a_trace_without_timestamps_refuses_a_window(tmp_path):
    result = run_cli("visualize", "-i", str(NO_STAMPS), "-o", str(tmp_path / "g.pdf"), "--chart", "", "--time-window", "1,2")
    assert_one_line_error(result, "this trace has no timestamps, so it cannot be cut in time: record function_graph with -O funcgraph-abstime")
    assert not (tmp_path / "g.pdf").exists()


def test_a_window_and_a_baseline_are_refused_together(tmp_path):
    result = run_cli("visualize", "-i", str(PROC_TRACE), "--baseline", str(PROC_TRACE), "-o", str(tmp_path / "g.json"), "--chart", "", "--time-window", "194.3,194.4")
    assert_one_line_error(result, "--time-window cuts this recording's trace time")


def test_a_window_of_a_lossy_trace_dat_counts_calls_by_their_entries(tmp_path):
    from test_tracedat import report_text

    trace = tmp_path / "trace.dat"
    trace.write_bytes(lzma.decompress((DATA / "trace-cmd" / "trace-v6.dat.xz").read_bytes()))  # 18 pages lost
    lines = list(report_graph_lines(report_text(tmp_path, trace).read_text().splitlines()))
    stamps = [line.stamp for line in lines]
    start, end = gap_near(stamps, 0.2), gap_near(stamps, 0.8)
    expected = expected_in_window(lines, start, end)
    result = run_cli("visualize", "-i", str(trace), "-o", str(tmp_path / "g.json"), "--chart", "", "--time-window", f"{start},{end}")
    assert result.returncode == 0, result.stderr
    graph = json.loads((tmp_path / "g.json").read_text())
    # an exit whose entry was lost is no call here, as without a window: the calls are the entries in the window
    assert {name: node["calls"] for name, node in nodes_by_name(graph).items()} == dict(expected.calls)
    unseen = int(re.search(r"([\d,]+) exits whose entry is not in the trace", result.stdout)[1].replace(",", ""))
    assert unseen > 0
