"""Flame-graph stacks, the timeline, latency and task selection, checked against the raw trace lines."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy
from conftest import DATA, assert_one_line_error, graph_json, nodes_by_name, read_lines, run_cli

PROC_TRACE = DATA / "fg-abstime-proc" / "trace.txt.xz"  # funcgraph-abstime, -proc, -tail
DEMO = DATA / "record-demo" / "kernel-magnifier.data.xz"  # no timestamps, no task column


def graph_fields(line: str) -> tuple[float, str, str, str, str] | None:
    """(timestamp s, cpu, task pid, duration field, body) of a funcgraph-abstime/-proc line, by plain splitting."""
    if line.startswith("#") or line.count("|") < 3 or ")" not in line.split("|")[1]:
        return None
    stamp, cpu_task, duration, body = line.split("|", 3)
    cpu, task = cpu_task.split(")")
    return float(stamp), cpu.strip(), task.strip().rsplit("-", 1)[1], duration, body[2:]


def printed_duration(field: str) -> float | None:
    match = re.search(r"([\d.]+) us", field)
    return float(match.group(1)) if match else None


def test_folded_weights_add_up_to_the_printed_totals(tmp_path):
    out = tmp_path / "s.folded"
    result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", str(out), "--chart", "")
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    weights = [int(line.rsplit(" ", 1)[1]) for line in lines]
    printed = int(re.search(r"weights add up to ([\d,]+) ns", result.stdout).group(1).replace(",", ""))
    assert sum(weights) == printed
    self_us = sum(node["self_time_us"] for node in graph_json(tmp_path, PROC_TRACE)["nodes"] if node["self_time_us"] > 0)
    assert abs(sum(weights) / 1000 - self_us) < len(lines) / 1000 + 1  # rounding to whole ns per path
    assert "x64_sys_call;__x64_sys_dup2;ksys_dup3;do_dup2;filp_close;fput;task_work_add;kick_process" in {line.rsplit(" ", 1)[0] for line in lines}
    calls = tmp_path / "c.folded"
    result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", str(calls), "--chart", "", "--weight", "calls")
    assert result.returncode == 0, result.stderr
    call_lines = sum(1 for line in read_lines(PROC_TRACE) if (fields := graph_fields(line)) and re.search(r"\S+\(\)( \{|;)$", fields[4].strip()))
    assert sum(int(line.rsplit(" ", 1)[1]) for line in calls.read_text().splitlines()) == call_lines


def test_timeline_is_nested_per_task_with_the_printed_durations(tmp_path):
    out = tmp_path / "t.trace.json"
    result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", str(out), "--chart", "")
    assert result.returncode == 0, result.stderr
    trace = json.loads(out.read_text())
    events = [event for event in trace["traceEvents"] if event["ph"] == "X"]
    names = {event["args"]["name"] for event in trace["traceEvents"] if event["name"] == "thread_name"}
    assert {"echo-cl-178", "echo-sr-189", "bash-121"} <= names
    per_thread: dict[int, list[dict]] = {}
    for event in events:
        per_thread.setdefault(event["tid"], []).append(event)
    for thread in per_thread.values():
        open_ends: list[float] = []
        for event in sorted(thread, key=lambda e: (e["ts"], -e["dur"])):
            while open_ends and open_ends[-1] <= event["ts"]:
                open_ends.pop()
            end = event["ts"] + event["dur"]
            assert not open_ends or end <= open_ends[-1] + 1e-6, event
            open_ends.append(end)
    lines = read_lines(PROC_TRACE)
    printed = Counter(round(d, 3) for line in lines if (fields := graph_fields(line)) and (d := printed_duration(fields[3])) is not None)
    clamped = int(re.search(r"([\d,]+) cut to their caller's end", result.stdout).group(1).replace(",", ""))
    drawn = Counter(round(event["dur"], 3) for event in events)
    assert sum((drawn - printed).values()) <= clamped < len(events) * 0.05
    # every printed duration is one call (the 5 exits whose entry is not in the trace name their function: funcgraph-tail)
    assert len(events) == sum(printed.values())


def test_timeline_needs_timestamps(tmp_path):
    result = run_cli("visualize", "-i", str(DEMO), "-o", str(tmp_path / "t.trace.json"), "--chart", "")
    assert_one_line_error(result, "no timestamps")
    assert "funcgraph-abstime" in result.stderr


def test_latency_percentiles_match_the_raw_lines(tmp_path):
    durations, starts = [], {}
    for line in read_lines(PROC_TRACE):
        fields = graph_fields(line)
        if not fields:
            continue
        body = fields[4].strip()
        if body in ("tcp_sendmsg();", "} /* tcp_sendmsg */"):
            durations.append(printed_duration(fields[3]))
        if body == "tcp_sendmsg() {":
            starts[fields[0]] = fields[2]
    p50, p90, p99 = numpy.percentile(durations, [50, 90, 99])

    def shown(value: float) -> str:
        return f"{value / 1000:.2f} ms" if value >= 1000 else f"{value:.1f} us"

    result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", str(tmp_path / "g.json"), "--chart", "", "--latency", "tcp_sendmsg", "--latency-chart", str(tmp_path / "lat.png"))
    assert result.returncode == 0, result.stderr
    expected = f"latency of tcp_sendmsg: {len(durations):,} calls, p50 {shown(p50)}, p90 {shown(p90)}, p99 {shown(p99)}, max {shown(max(durations))}"
    assert expected in result.stdout
    slowest = re.search(r"^  ([\d.]+ ms) tcp_sendmsg at ([\d.]+) s task echo-\w\w-(\d+)", result.stdout, re.M)
    assert slowest.group(1) == shown(max(durations))
    assert starts[float(slowest.group(2))] == slowest.group(3)  # the slowest call's entry line: its time and task
    assert (tmp_path / "lat.png").read_bytes().startswith(b"\x89PNG")


def test_task_and_cpu_selection(tmp_path):
    lines = [fields for line in read_lines(PROC_TRACE) if (fields := graph_fields(line))]

    def calls_of(keep) -> Counter:
        return Counter(re.split(r"[ (]", f[4].strip())[0] for f in lines if keep(f) and re.search(r"\(\)( \{|;)$", f[4].strip()))

    for extra, keep in ((("--pid", "178"), lambda f: f[2] == "178"), (("--cpu", "1"), lambda f: f[1] == "1"), (("--comm", "echo-*"), lambda f: f[2] in ("178", "189"))):
        graph = graph_json(tmp_path, PROC_TRACE, extra=extra)
        assert {name: node["calls"] for name, node in nodes_by_name(graph).items() if node["calls"]} == dict(calls_of(keep)), extra
    chart = tmp_path / "tasks.png"
    result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", str(tmp_path / "g.json"), "--chart", str(chart), "--chart-by", "task")
    assert result.returncode == 0, result.stderr
    assert chart.read_bytes().startswith(b"\x89PNG")
    assert_one_line_error(run_cli("visualize", "-i", str(PROC_TRACE), "-o", str(tmp_path / "g.json"), "--cpu", "x"), "--cpu x")


def test_timeline_and_latency_of_a_trace_dat_match_trace_cmd_report(tmp_path):
    import lzma

    from test_tracedat import report_text

    trace = tmp_path / "trace.dat"
    trace.write_bytes(lzma.decompress((DATA / "trace-cmd" / "trace-v6.dat.xz").read_bytes()))
    report = report_text(tmp_path, trace).read_text().splitlines()
    with_duration = [line for line in report if re.search(r"funcgraph_(entry|exit): +[+!#*@$]? ?[\d.]+ us +\|", line)]
    out = tmp_path / "t.trace.json"
    result = run_cli("visualize", "-i", str(trace), "-o", str(out), "--chart", "", "--latency", "tcp_sendmsg", "--latency-chart", str(tmp_path / "l.png"))
    assert result.returncode == 0, result.stderr
    events = [event for event in json.loads(out.read_text())["traceEvents"] if event["ph"] == "X"]
    assert len(events) == len(with_duration)
    sends = [float(re.search(r"([\d.]+) us", line).group(1)) for line in with_duration if line.rstrip().endswith(("} /* tcp_sendmsg */", "tcp_sendmsg();"))]
    p50 = numpy.percentile(sends, 50)
    shown = f"{p50 / 1000:.2f} ms" if p50 >= 1000 else f"{p50:.1f} us"
    assert f"latency of tcp_sendmsg: {len(sends):,} calls, p50 {shown}" in result.stdout


def test_pid_selection_of_a_trace_dat_matches_trace_cmd_report(tmp_path):
    import lzma

    from test_tracedat import report_text

    trace = tmp_path / "trace.dat"
    trace.write_bytes(lzma.decompress((DATA / "trace-cmd" / "trace-v6.dat.xz").read_bytes()))
    report = report_text(tmp_path, trace).read_text().splitlines()
    entries = sum(1 for line in report if re.match(r"^\s*\S+-178 +\[", line) and "funcgraph_entry:" in line)
    graph = graph_json(tmp_path, trace, extra=("--pid", "178"))
    assert entries > 1000 and sum(node["calls"] for node in graph["nodes"]) == entries
    # --comm: the names trace-cmd report prints are the file's saved task names, which visualize reads too
    comm = next(match.group(1) for line in report if (match := re.match(r"^\s*(\S+)-178 +\[", line)))
    same_name = sum(1 for line in report if re.match(rf"^\s*{re.escape(comm)}-\d+ +\[", line) and "funcgraph_entry:" in line)
    by_name = graph_json(tmp_path, trace, extra=("--comm", comm))
    assert same_name >= entries and sum(node["calls"] for node in by_name["nodes"]) == same_name


def test_time_views_count_damaged_lines_and_refuse_absurd_cpu_ranges(tmp_path):
    # the per-call pass takes the parser's duration checks: '8x.432 us' is not a time (was an internal error)
    trace = tmp_path / "bad.txt"
    trace.write_text(" 0)               |  outer() {\n 0)   8x.432 us    |    inner();\n 0)   1.000 us    |    inner();\n 0)   3.000 us    |  }\n")
    result = run_cli("visualize", "-i", str(trace), "-o", str(tmp_path / "g.json"), "--chart", "", "--latency", "inner", "--latency-chart", str(tmp_path / "l.png"))
    assert result.returncode == 0, result.stderr
    assert "latency of inner: 1 call, p50 1.0 us" in result.stdout
    # a range of a hundred million CPUs would be built in memory: refused in one line
    assert_one_line_error(run_cli("visualize", "-i", str(trace), "-o", str(tmp_path / "g.json"), "--cpu", "0-99999999"), "--cpu 0-99999999")
