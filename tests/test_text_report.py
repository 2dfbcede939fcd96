"""The text report (-o NAME.txt, -o -): summary, top functions, the call tree of the view as indented text.

Expected numbers come from a plain reading of the trace lines (per task, nesting
from the indentation) or, for the tables, from the JSON output of the same run.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DATA, proc_line_fields, read_lines, run_cli

DEFAULT = DATA / "fg-default" / "trace.txt.xz"  # per-CPU lines, context-switch blocks, lost events
PROC_TRACE = DATA / "fg-abstime-proc" / "trace.txt.xz"  # funcgraph-proc: every line names its task; nothing lost
FUNCTION = DATA / "function-tracer" / "trace.txt.xz"  # no durations
DAT = DATA / "record-demo-dat" / "kernel-magnifier.data.xz"  # trace.dat
SWITCH = re.compile(r"^ *(\d+)\) +\S.*?-(\d+) +=> +\S.*?-(\d+) *$")
LOST = re.compile(r"^CPU:(\d+) \[LOST")
DURATION = re.compile(r"(\d+\.\d+) us")
UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6}


def default_fields(lines: list[str]) -> Iterator[tuple[object, int, str, float | None]]:
    """(task, depth, text, duration) of fg-default's lines: the task is the CPU's last switch-in; a loss forgets its open calls."""
    current: dict[str, str] = {}
    for line in lines:
        if switch := SWITCH.match(line):
            current[switch.group(1)] = switch.group(3)
        elif lost := LOST.match(line):
            yield (lost.group(1), current.get(lost.group(1))), -1, "", None
        elif line.count("|") == 1 and re.match(r"^ *\d+\)", line):
            head, body = line.split("|")
            cpu = head.split(")")[0].strip()
            yield from with_duration((cpu, current.get(cpu)), body[2:], head)


def proc_fields(lines: list[str]) -> Iterator[tuple[object, int, str, float | None]]:
    for line in lines:
        fields = proc_line_fields(line)
        if fields is not None:
            yield from with_duration(fields[0], line.split("|")[-1][2:], line.split("|")[-2])


def with_duration(task: object, body: str, duration_column: str) -> Iterator[tuple[object, int, str, float | None]]:
    duration = DURATION.search(duration_column)
    yield task, (len(body) - len(body.lstrip(" "))) // 2, body.strip(), float(duration.group(1)) if duration else None


def paths_below(fields: Iterator[tuple[object, int, str, float | None]], root: str, levels: int) -> tuple[Counter, Counter]:
    """Calls and total time (us) of every call path below the outermost calls of `root`, at most `levels` below it."""
    frames: dict[object, dict[int, tuple[str, tuple | None]]] = defaultdict(dict)
    calls: Counter = Counter()
    total: Counter = Counter()
    for task, depth, text, duration in fields:
        open_calls = frames[task]
        if depth < 0:
            open_calls.clear()
            continue
        if text.startswith("}") and depth in open_calls and open_calls[depth][1] and duration is not None:
            total[open_calls[depth][1]] += duration
        for level in [level for level in open_calls if level >= depth]:
            del open_calls[level]
        if text.startswith(("}", "/*")):
            continue
        name = re.split(r"[ (]", text, maxsplit=1)[0]
        caller = open_calls.get(depth - 1)
        path = None
        if caller and caller[1] and len(caller[1]) <= levels:
            path = (*caller[1], name)
        elif name == root and not any(frame[1] for frame in open_calls.values()):
            path = (name,)
        if path:
            calls[path] += 1
            if text.endswith(";") and duration is not None:
                total[path] += duration
        if text.endswith("{"):
            open_calls[depth] = (name, path)
    return calls, total


def report(tmp_path: Path, trace: Path, *extra: str) -> str:
    result = run_cli("visualize", "-i", str(trace), "-o", "report.txt", *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return (tmp_path / "report.txt").read_text()


def tree_rows(text: str) -> list[tuple[tuple[str, ...], list[str], bool]]:
    """(call path, number cells, is a '...' line) of every line of the report's call tree, read back from its indentation."""
    lines = text.split("\n")
    start = next(index for index, line in enumerate(lines) if line.startswith(("Call tree", "Callers of")))
    header = next(index for index in range(start, len(lines)) if lines[index].startswith("calls"))
    column = lines[header].index("function")
    rows, stack = [], []
    for line in lines[header + 1 :]:
        if not line or not line[: column - 2].strip()[:1].isdigit():
            break
        cells, tree_text = line[:column].split(), line[column:]
        branch = tree_text.find("+-")
        level, name = (1, tree_text) if branch < 0 else (branch // 2 + 2, tree_text[branch + 2 :])
        stack[level - 1 :] = [name]
        rows.append((tuple(stack), cells, name.startswith("... ")))
    return rows


def microseconds(value: str, unit: str) -> float:
    return float(value) * UNITS[unit]


def test_root_tree_counts_what_f_called_as_the_trace_shows_it(tmp_path):
    """Every call path below ksys_read, 2 levels deep, with its calls: as a plain per-CPU reading of the lines counts them.

    ksys_read does not sleep here: the lines carry no task names and events
    were lost, so a plain reading cannot follow a task that sleeps and wakes
    on the other CPU (test_root_tree_times_and_what_was_left_out reads a trace
    that names its tasks).
    """
    text = report(tmp_path, DEFAULT, "--root", "ksys_read", "--depth", "2", "--node-thres", "0", "--max-nodes", "0")
    expected, _ = paths_below(default_fields(read_lines(DEFAULT)), "ksys_read", 2)
    assert len(expected) >= 20
    rows = tree_rows(text)
    assert {path: int(cells[0].replace(",", "")) for path, cells, _ in rows} == dict(expected)
    assert rows[0][0] == ("ksys_read",)
    assert f"all {len(expected)} call paths shown" in text


def test_root_tree_times_and_what_was_left_out(tmp_path):
    """Calls and total time of the shown paths, and the '...' lines' sums of the ones left out, against the trace's own durations."""
    text = report(tmp_path, PROC_TRACE, "--root", "tcp_sendmsg", "--depth", "3")
    calls, total = paths_below(proc_fields(read_lines(PROC_TRACE)), "tcp_sendmsg", 3)
    rows = tree_rows(text)
    shown = {path for path, _, more in rows if not more}
    left_out_lines = 0
    for path, cells, more in rows:
        count, total_us = int(cells[0].replace(",", "")), microseconds(cells[1], cells[2])
        if more:
            parent = path[:-1]
            hidden = [other for other in calls if other[:-1] == parent and other not in shown]
            assert count == sum(calls[other] for other in hidden), path
            assert total_us == _approx(sum(total[other] for other in hidden)), path
            assert path[-1] == f"... {len(hidden)} more {'callee' if len(hidden) == 1 else 'callees'}"
            left_out_lines += 1
        else:
            assert count == calls[path], path
            assert total_us == _approx(total[path]), path
    assert left_out_lines > 5
    assert f"showing {len(shown)} of {len(calls)} call paths" in text
    for parent in {path[:-1] for path in shown if len(path) > 1}:  # callees heaviest first
        kids = [microseconds(cells[1], cells[2]) for path, cells, more in rows if path[:-1] == parent and not more]
        assert kids == sorted(kids, reverse=True)


def _approx(value: float) -> object:
    """What a value printed with 3 or 4 significant digits (as the report prints times) matches."""
    return pytest.approx(value, rel=0.006, abs=0.06)


def entry_counts(lines: list[str]) -> Counter:
    """Calls per function in function_graph text: its entry lines (`f() {`, `f();`)."""
    calls: Counter = Counter()
    for line in lines:
        body = line.split("|")[-1].strip()
        if not line.startswith("#") and line.count("|") >= 2 and body.endswith((";", "{")) and not body.startswith("}"):
            calls[re.split(r"[ (]", body, maxsplit=1)[0]] += 1
    return calls


# with scheduler events the total-time table has "on CPU" and "asleep" between total% and self ('-': never switched out)
TABLE_ROW = re.compile(r"^ *([\d,]+) +([\d.]+) (us|ms|s) +([\d.]+)% +(?:(?:[\d.]+ (?:us|ms|s)|-) +(?:[\d.]+ (?:us|ms|s)|-) +)?([\d.]+) (us|ms|s) +([\d.]+)% +(\S+)")


def top_tables(text: str) -> dict[str, list[tuple[str, int, float, float, float, float]]]:
    """'self' and 'total': the rows of the two tables as (function, calls, total us, total %, self us, self %)."""
    tables: dict[str, list] = {}
    rows: list | None = None
    for line in text.split("\n"):
        title = re.match(r"^Top \d+ of [\d,]+ functions by (self|total) time$", line)
        if title:
            rows = tables[title.group(1)] = []
        elif rows is not None and (row := TABLE_ROW.match(line)):
            calls, total, total_unit, total_share, self_us, self_unit, self_share, name = row.groups()
            rows.append((name, int(calls.replace(",", "")), microseconds(total, total_unit), float(total_share), microseconds(self_us, self_unit), float(self_share)))
        elif rows is not None and not line:
            rows = None
    return tables


def test_top_tables_agree_with_the_json_of_the_same_view(tmp_path):
    """record-demo-dat (trace.dat): the two tables' functions, calls, times and shares are the JSON's, ranked by self and by total time."""
    text = report(tmp_path, DAT, "--chart-top", "12")
    result = run_cli("visualize", "-i", str(DAT), "-o", "graph.json", "--chart", "", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    graph = json.loads((tmp_path / "graph.json").read_text())
    nodes = {node["name"]: node for node in graph["nodes"]}
    whole = sum(node["total_time_us"] for node in graph["call_tree"] if node["parent"] == 0)
    tables = top_tables(text)
    assert set(tables) == {"self", "total"}
    for by, key in (("self", "self_time_us"), ("total", "total_time_us")):
        rows = tables[by]
        assert len(rows) == 12
        for name, calls, total, total_share, self_us, self_share in rows:
            node = nodes[name]
            assert calls == node["calls"]
            assert total == _approx(node["total_time_us"]) and self_us == _approx(node["self_time_us"])
            assert total_share == pytest.approx(100 * node["total_time_us"] / whole, abs=0.051)
            assert self_share == pytest.approx(100 * node["self_time_us"] / whole, abs=0.051)
        ranked = sorted((node[key] for node in graph["nodes"]), reverse=True)
        assert [nodes[row[0]][key] for row in rows] == ranked[:12]
    assert f"Top 12 of {len(graph['nodes']):,} functions by self time" in text


def test_table_calls_are_the_entry_lines_of_the_trace(tmp_path):
    """fg-abstime-proc loses nothing: every function in the tables has as many calls as the trace has entry lines for it."""
    text = report(tmp_path, PROC_TRACE, "--chart-top", "25")
    calls = entry_counts(read_lines(PROC_TRACE))
    tables = top_tables(text)
    assert len(tables["self"]) == len(tables["total"]) == 25
    for row in tables["self"] + tables["total"]:
        assert row[1] == calls[row[0]], row
    assert tables["total"][0][3] <= 100.0


def test_stdout_report_alone_no_file_no_chart(tmp_path):
    """-o -: the report on standard output and nothing else there (messages on stderr); no file named '-', no default chart."""
    result = run_cli("visualize", "-i", str(DAT), "-o", "-", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "parsing completed" in result.stderr and "Visualization mode" in result.stderr
    assert result.stdout.startswith("kernel-magnifier report: ")
    for message in ("Visualization mode", "parsing completed", "generated", "call paths: "):
        assert message not in result.stdout
    assert list(tmp_path.iterdir()) == []
    assert result.stdout == report(tmp_path, DAT)  # the same report as -o report.txt
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report.txt"]


def test_chart_only_when_asked_for_beside_a_text_report(tmp_path):
    assert run_cli("visualize", "-i", str(FUNCTION), "-o", "r.txt", "--chart", "c.png", cwd=tmp_path).returncode == 0
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")
    assert run_cli("visualize", "-i", str(FUNCTION), "-o", "s.folded", cwd=tmp_path).returncode == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["c.png", "function-calls.png", "r.txt", "s.folded"]


def test_function_tracer_report_counts_calls_without_durations(tmp_path):
    """No durations: calls and calls in the subtree; --root P lists what P called, as many times as the trace has `f <-P` lines."""
    pairs: Counter = Counter()
    for line in read_lines(FUNCTION):
        if match := re.search(r"\s(\S+) <-(\S+)\s*$", line):
            pairs[(match.group(2), match.group(1))] += 1
    callers: Counter = Counter()
    for (caller, _), count in pairs.items():
        callers[caller] += count
    root = callers.most_common(1)[0][0]
    result = run_cli("visualize", "-i", str(FUNCTION), "-o", "-", "--root", root, "--node-thres", "0", "--max-nodes", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "the trace has no durations" in result.stdout
    assert re.search(r"^calls +calls% +subtree +subtree% +function$", result.stdout, re.M)
    rows = {path: [int(cell.replace(",", "")) for cell in cells] for path, cells, _ in tree_rows(result.stdout)}
    called = {(root, callee): count for (caller, callee), count in pairs.items() if caller == root}
    assert len(called) > 3
    assert {path: numbers[0] for path, numbers in rows.items() if len(path) == 2} == called
    own = sum(count for (_, callee), count in pairs.items() if callee == root)
    assert rows[(root,)] == [own, own + sum(called.values())]


def test_callers_report_is_the_reversed_tree_with_labels_saying_so(tmp_path):
    """--callers kfree: kfree at the top with all its calls, below it each caller with kfree's calls from there (per-task reading)."""
    lines = read_lines(PROC_TRACE)
    frames: dict[object, dict[int, str]] = defaultdict(dict)
    from_caller: Counter = Counter()
    for task, depth, text, _ in proc_fields(lines):
        open_calls = frames[task]
        for level in [level for level in open_calls if level >= depth]:
            del open_calls[level]
        if text.startswith(("}", "/*")):
            continue
        name = re.split(r"[ (]", text, maxsplit=1)[0]
        if name == "kfree" and depth - 1 in open_calls:
            from_caller[("kfree", open_calls[depth - 1])] += 1
        if text.endswith("{"):
            open_calls[depth] = name
    result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", "-", "--callers", "kfree", "--depth", "1", "--node-thres", "0", "--max-nodes", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Callers of kfree (--callers), a reversed tree: kfree at the top, below each line the functions that called it" in result.stdout
    assert re.search(r"^Top \d+ of [\d,]+ functions on the call paths to kfree, by its self time through them$", result.stdout, re.M)
    rows = tree_rows(result.stdout)
    assert rows[0][0] == ("kfree",) and int(rows[0][1][0].replace(",", "")) == entry_counts(lines)["kfree"]
    assert len(from_caller) > 5
    assert {path: int(cells[0].replace(",", "")) for path, cells, _ in rows[1:]} == dict(from_caller)


def test_without_depth_the_tree_stops_at_14_levels_and_says_where_to_go_on(tmp_path):
    """The deepest shown line sums up all its callees on one '...' line that names the --root to see them, numbers from the trace."""
    text = report(tmp_path, PROC_TRACE, "--root", "tcp_sendmsg", "--node-thres", "0.1")
    calls, total = paths_below(proc_fields(read_lines(PROC_TRACE)), "tcp_sendmsg", 20)
    rows = tree_rows(text)
    assert max(len(path) for path, _, _ in rows) == 15
    deeper = [(path, cells) for path, cells, more in rows if more and "(deeper: --root " in path[-1]]
    assert deeper
    for path, cells in deeper:
        parent = path[:-1]
        assert len(parent) == 14 and path[-1].endswith(f"(deeper: --root {parent[-1]})")
        below = [other for other in calls if other[:-1] == parent]
        assert int(cells[0].replace(",", "")) == sum(calls[other] for other in below)
        assert microseconds(cells[1], cells[2]) == _approx(sum(total[other] for other in below))
    assert "deeper than 14 levels (--depth)" in text.split("\n")[-2]


def test_function_tracer_callers_report_shares_of_the_function_calls(tmp_path):
    """--callers F without durations: F's calls are the whole (100 %), each caller line has the `F <-caller` lines' count."""
    pairs: Counter = Counter()
    for line in read_lines(FUNCTION):
        if match := re.search(r"\s(\S+) <-(\S+)\s*$", line):
            pairs[(match.group(2), match.group(1))] += 1
    called: Counter = Counter()
    for (_, callee), count in pairs.items():
        called[callee] += count
    function, calls = called.most_common(1)[0]
    result = run_cli("visualize", "-i", str(FUNCTION), "-o", "-", "--callers", function, "--depth", "1", "--node-thres", "0", "--max-nodes", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"shares (%) are of {calls:,} calls, every call of {function}" in result.stdout
    assert re.search(rf"^calls +calls% +function\n *{calls:,} +100\.0% +{re.escape(function)}$", result.stdout, re.M)
    assert "by its calls in their subtrees" not in result.stdout  # no second table: a caller has one number here
    rows = tree_rows(result.stdout)
    assert rows[0][0] == (function,) and rows[0][1] == [f"{calls:,}"]
    by_caller = {(function, caller): count for (caller, callee), count in pairs.items() if callee == function}
    assert len(by_caller) > 10
    assert {path: int(cells[0].replace(",", "")) for path, cells, _ in rows[1:]} == by_caller


def test_dash_is_standard_output_not_a_file_name(tmp_path):
    """-o - writes no file and checks none: even a directory named '-' (which an output file could not replace) is left alone."""
    (tmp_path / "-").mkdir()
    result = run_cli("visualize", "-i", str(FUNCTION), "-o", "-", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("kernel-magnifier report: ")
    assert [path.name for path in tmp_path.iterdir()] == ["-"] and not any((tmp_path / "-").iterdir())


def test_baseline_beside_a_text_report_says_where_the_comparison_is(tmp_path):
    result = run_cli("visualize", "-i", str(FUNCTION), "--baseline", str(FUNCTION), "--heat", "calls", "-o", "-", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--baseline: the text report shows this recording only; the comparison is in the drawing, the chart and the .json" in result.stdout
