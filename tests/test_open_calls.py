"""Calls still open at the end of a recording: counted, timed to their task's last event, drawn, one whole for every view.

A recording stops in the middle of calls (the idle loop, a task asleep in a
system call): their exit never comes. The expected values are read here from
the trace by plain splitting (funcgraph-abstime text) or from trace-cmd's own
raw report of a trace.dat (every entry and exit with its time in ns), with a
per-task stack of open calls and nothing from the tool.
"""

from __future__ import annotations

import json
import lzma
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import DATA, graph_json, proc_line_fields, read_lines, run_cli

ABSTIME = DATA / "fg-abstime-proc" / "trace.txt.xz"
DEMO_DAT = DATA / "record-demo-dat" / "kernel-magnifier.data.xz"
RAW_EVENT = re.compile(r"^\s*\S.*?-(\d+)\s+\[(\d+)\]\s+(\d+\.\d+): (funcgraph_entry|funcgraph_exit):\s+func=(\S+) depth=(\d+)(?: .*calltime=([0-9a-f]+) rettime=([0-9a-f]+))?")


def abstime_events(path: Path):
    """(task, time us, kind, depth, name, duration us) of every function_graph line of a funcgraph-abstime-proc trace."""
    for line in read_lines(path):
        fields = proc_line_fields(line)
        if fields is None:
            continue
        task, depth, body = fields
        stamp = float(line.split("|")[0]) * 1e6
        duration = line.split("|")[2].strip(" +!#*@$").removesuffix("us").strip()
        if body.endswith("{"):
            yield task, stamp, "entry", depth, body.split("(")[0], None
        elif body.endswith(";"):
            yield task, stamp, "leaf", depth, body.split("(")[0], float(duration)
        elif body.startswith("}"):
            yield task, stamp, "exit", depth, body.split("/* ")[1].split(" */")[0], float(duration)


def raw_report_events(trace: Path):
    """The same from `trace-cmd report -R -t`: entries and exits apart, times in ns, durations from calltime/rettime."""
    report = subprocess.run(["trace-cmd", "report", "-R", "-t", "-i", str(trace)], capture_output=True, text=True, check=True, timeout=300)
    for line in report.stdout.splitlines():
        match = RAW_EVENT.match(line)
        if match is None:
            continue
        pid, cpu, stamp, event, name, depth, calltime, rettime = match.groups()
        task = f"0/{int(cpu)}" if pid == "0" else pid
        seconds, _, fraction = stamp.partition(".")
        time_us = int(seconds) * 1e6 + int(fraction.ljust(9, "0")) / 1000
        if event == "funcgraph_entry":
            yield task, time_us, "entry", int(depth), name, None
        else:
            yield task, time_us, "exit", int(depth), name, (int(rettime, 16) - int(calltime, 16)) / 1000


def untimed_text_events(path: Path):
    """(task, None, kind, depth, name or None, duration) of a function_graph text without pid or time columns.

    A line's task is the one the last context switch on its CPU brought in (before
    the first switch: the task that switch takes off the CPU); the idle task is per CPU."""
    running: dict[str, str] = {}
    unnamed: dict[str, list] = {}  # CPU -> events of the task before its first switch, named by that switch
    for line in read_lines(path):
        if "=>" in line and "|" not in line:
            cpu, _, switch = line.partition(")")
            cpu = cpu.strip()
            before, after = (side.strip().rsplit("-", 1)[1] for side in switch.split("=>"))
            for event in unnamed.pop(cpu, []):
                event[0] = f"0/{cpu}" if before == "0" else before
            running[cpu] = f"0/{cpu}" if after == "0" else after
            continue
        if line.startswith(("#", " -")) or "|" not in line or ")" not in line.split("|")[0]:
            continue
        cpu, _, duration = line.split("|")[0].partition(")")
        cpu = cpu.strip()
        body = line.split("|", 1)[1][2:]
        depth = (len(body) - len(body.lstrip(" "))) // 2
        body = body.strip()
        duration = duration.strip(" +!#*@$").removesuffix("us").strip()
        if body.endswith("{"):
            event = [running.get(cpu), None, "entry", depth, body.split("(")[0], None]
        elif body.endswith(";"):
            event = [running.get(cpu), None, "leaf", depth, body.split("(")[0], float(duration)]
        elif body.startswith("}"):
            event = [running.get(cpu), None, "exit", depth, body.split("/* ")[1].split(" */")[0] if "/*" in body else None, float(duration)]
        else:
            continue
        if event[0] is None:
            unnamed.setdefault(cpu, []).append(event)
        yield event


def open_calls_read_plainly(events) -> tuple[list[tuple[str, tuple | None, float]], dict[tuple, float]]:
    """The calls left open per task (task, call path from depth 0 or None, time) and the finished calls' time per path.

    An open call's time runs to its task's last event; without times, it is what its
    finished callees took (and its open callee's)."""
    stacks: dict[str, list[list]] = defaultdict(list)
    last: dict[str, float] = {}
    finished: dict[tuple, float] = defaultdict(float)
    events = list(events)  # the task of a line before its CPU's first switch is known only at that switch
    for task, stamp, kind, depth, name, duration in events:
        stack = stacks[task]
        last[task] = stamp
        if kind == "exit":
            while stack and stack[-1][0] > depth:
                stack.pop()
            if stack and stack[-1][0] == depth:
                frame = stack.pop()
                if name in (None, frame[1]) and frame[3] is not None:
                    finished[frame[3]] += duration
                if stack and stack[-1][0] == depth - 1:
                    stack[-1][4] += duration
            continue
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if depth == 0:
            path = (name,)
        elif stack and stack[-1][0] == depth - 1 and stack[-1][3] is not None:
            path = (*stack[-1][3], name)
        else:
            path = None
        if kind == "entry":
            stack.append([depth, name, stamp, path, 0.0])
        else:
            if path is not None:
                finished[path] += duration
            if stack and stack[-1][0] == depth - 1:
                stack[-1][4] += duration
    still_open = []
    for task, stack in stacks.items():
        for index in range(len(stack) - 1, -1, -1):
            depth, _name, stamp, path, callees = stack[index]
            spent = last[task] - stamp if stamp is not None else callees
            if index and stack[index - 1][0] == depth - 1:
                stack[index - 1][4] += spent
            still_open.append((task, path, spent))
    return still_open, finished


def call_tree_paths(graph: dict) -> dict[tuple, dict]:
    by_id = {node["id"]: node for node in graph["call_tree"]}
    paths = {}
    for node in graph["call_tree"]:
        path, at = [], node
        while at is not None:
            path.append(at["function"])
            at = by_id.get(at["parent"])
        paths[tuple(reversed(path))] = node
    return paths


def check_open_calls(graph: dict, still_open: list, finished: dict[tuple, float], near: float, bounded: int = 0) -> None:
    assert graph["stats"]["open_calls"] == len(still_open) > 0
    assert graph["stats"]["open_calls_bounded"] == bounded
    per_function: dict[str, int] = defaultdict(int)
    open_time: dict[tuple, float] = defaultdict(float)
    open_count: dict[tuple, int] = defaultdict(int)
    for _task, path, spent in still_open:
        if path is not None:
            per_function[path[-1]] += 1
            open_time[path] += spent
            open_count[path] += 1
    nodes = call_tree_paths(graph)
    for path, spent in open_time.items():
        node = nodes[path]
        assert node["open_calls"] == open_count[path], path
        assert node["total_time_us"] == pytest.approx(finished.get(path, 0.0) + spent, abs=near), path
    functions = {node["name"]: node for node in graph["nodes"]}
    for name, count in per_function.items():
        assert functions[name]["open_calls"] >= count, name
        assert functions[name]["total_time_us"] > 0, name


def test_open_calls_of_a_text_trace_run_to_their_tasks_last_line(tmp_path):
    trace = tmp_path / "trace.txt"
    trace.write_bytes(lzma.decompress(ABSTIME.read_bytes()))
    still_open, finished = open_calls_read_plainly(abstime_events(trace))
    graph = graph_json(tmp_path, trace)
    check_open_calls(graph, still_open, finished, near=0.01)


@pytest.mark.skipif(shutil.which("trace-cmd") is None, reason="needs trace-cmd for its raw report")
def test_open_calls_of_a_trace_dat_run_to_their_tasks_last_event(tmp_path):
    trace = tmp_path / "trace.dat"
    trace.write_bytes(lzma.decompress(DEMO_DAT.read_bytes()))
    still_open, finished = open_calls_read_plainly(raw_report_events(trace))
    graph = graph_json(tmp_path, trace)
    check_open_calls(graph, still_open, finished, near=0.01)


def test_open_calls_of_a_trace_without_times_get_their_callees_time(tmp_path):
    trace = tmp_path / "trace.txt"
    trace.write_bytes(lzma.decompress((DATA / "record-demo" / "kernel-magnifier.data.xz").read_bytes()))
    still_open, finished = open_calls_read_plainly(untimed_text_events(trace))
    result = run_cli("visualize", "-i", str(trace), "-o", "graph.json", "--chart", "", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    graph = json.loads((tmp_path / "graph.json").read_text())
    check_open_calls(graph, still_open, finished, near=0.01, bounded=len(still_open))
    assert f"{len(still_open)} of them without timestamps count only their callees' time, a lower bound" in result.stdout


def test_the_summary_and_the_drawing_say_which_calls_are_still_open(tmp_path):
    trace = tmp_path / "trace.txt"
    trace.write_bytes(lzma.decompress(ABSTIME.read_bytes()))
    still_open, _ = open_calls_read_plainly(abstime_events(trace))
    result = run_cli("visualize", "-i", str(trace), "-o", "graph.dot", "--chart", "", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{len(still_open)} calls still open at the end of the trace (their time runs to their task's last event)" in result.stdout
    dot = (tmp_path / "graph.dot").read_text()
    assert f"{len(still_open)} calls still open at the end of the trace" in dot
    longest = max((entry for entry in still_open if entry[1] is not None), key=lambda entry: entry[2])
    name = longest[1][-1]
    count = sum(1 for _task, path, _spent in still_open if path is not None and path[-1] == name)
    label = re.search(rf'^\t"?{re.escape(name)}"?\t\[[^\]]*?label="([^"]*)"', dot, re.MULTILINE)
    assert label is not None, name
    assert f"{count} still open at the end" in label.group(1)


def caption_whole(svg: str) -> str:
    return re.search(r"shares are of ([0-9.]+ (?:us|ms|s)),", svg).group(1)


def page_whole(page: str) -> str:
    return re.search(r"all = ([0-9.]+ (?:us|ms|s))", page).group(1)


@pytest.mark.parametrize("trace", [ABSTIME, DATA / "fg-default" / "trace.txt.xz", DEMO_DAT], ids=lambda path: path.parent.name)
def test_the_drawing_and_the_flame_graph_share_one_whole(tmp_path, trace):
    for output in ("graph.svg", "flame.flame.html", "graph.json"):
        result = run_cli("visualize", "-i", str(trace), "-o", output, "--chart", "", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    svg_whole = caption_whole((tmp_path / "graph.svg").read_text())
    page = (tmp_path / "flame.flame.html").read_text()
    assert svg_whole == page_whole(page)
    graph = json.loads((tmp_path / "graph.json").read_text())
    open_calls = graph["stats"]["open_calls"]
    assert open_calls > 0
    assert f"{open_calls:,} calls still open at the end of the trace" in page
    # The JSON's whole is the same: the top-level calls' time, a call whose exit was lost as long as its callees.
    width: dict[int, float] = defaultdict(float)
    for node in reversed(graph["call_tree"]):  # children after their parents in the list
        width[node["id"]] = max(node["total_time_us"], width[node["id"]])
        width[node["parent"]] += width[node["id"]]
    assert graph["stats"]["whole"] == pytest.approx(width[0], rel=1e-9)
