"""The --callers view: folded stacks per caller path, honest labels, and the focus options' messages.

Expected values come from an independent walk of the raw trace lines (per pid,
nesting from the indentation, durations as printed), never from the tool's own tree.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

from conftest import DATA, assert_one_line_error, proc_line_fields, read_lines, run_cli
from test_views import call_paths

PROC_TRACE = DATA / "fg-abstime-proc" / "trace.txt.xz"  # funcgraph-proc: every line names its pid


def printed_ns(line: str) -> int | None:
    """The duration column of a function_graph line, in ns (printed with 3 decimals of us)."""
    match = re.search(r"([\d.]+) us", line.split("|")[2])
    return round(float(match.group(1)) * 1000) if match else None


def caller_paths(lines: list[str], callee: str, depth: int | None) -> tuple[Counter, Counter]:
    """Calls and self time (ns) of `callee` per caller path "outer;...;callee", cut at `depth` callers.

    A chain with a gap keeps the callers below the gap (the part a reader can
    know). Self time is the printed duration minus the printed durations of
    the direct callees (interrupts nested inside included, as printed).
    """
    frames: dict[str, dict[int, list]] = defaultdict(dict)  # pid -> depth -> [name, path or None, callees' ns]
    calls: Counter = Counter()
    self_ns: Counter = Counter()
    for line in lines:
        fields = proc_line_fields(line)
        if fields is None:
            continue
        pid, level, text = fields
        open_calls = frames[pid]
        duration = printed_ns(line)
        if text.startswith("}"):
            frame = open_calls.get(level)
            for d in [d for d in open_calls if d >= level]:
                del open_calls[d]
            if frame is None or duration is None:
                continue
            if frame[1] is not None:
                self_ns[frame[1]] += duration - frame[2]
            if level - 1 in open_calls:
                open_calls[level - 1][2] += duration
            continue
        for d in [d for d in open_calls if d >= level]:
            del open_calls[d]
        if text.startswith("/*"):
            continue
        name = re.split(r"[ (]", text, maxsplit=1)[0]
        chain = [open_calls[d][0] if d in open_calls else None for d in range(level)]
        if None in chain:
            chain = chain[len(chain) - chain[::-1].index(None) :]
        if depth is not None:
            chain = chain[len(chain) - min(depth, len(chain)) :]
        path = ";".join([*chain, name]) if name == callee else None
        if path is not None:
            calls[path] += 1
        if text.endswith("{"):
            open_calls[level] = [name, path, 0]
        elif text.endswith(";") and duration is not None:
            if path is not None:
                self_ns[path] += duration
            if level - 1 in open_calls:
                open_calls[level - 1][2] += duration
    return calls, self_ns


def folded(tmp_path: Path, *extra: str) -> tuple[dict[str, int], str]:
    out = tmp_path / "callers.folded"
    result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", str(out), "--chart", "", *extra)
    assert result.returncode == 0, result.stderr
    weights = {}
    for line in out.read_text().splitlines():
        path, weight = line.rsplit(" ", 1)
        assert path not in weights, f"{path} written twice"
        weights[path] = int(weight)
    return weights, result.stdout


def test_callers_folded_has_one_line_per_caller_path_summing_to_the_functions_own_weight(tmp_path):
    lines = read_lines(PROC_TRACE)
    for depth in (None, 3):
        extra = ("--depth", str(depth)) if depth else ()
        calls, self_ns = caller_paths(lines, "kfree", depth)
        assert len(calls) > 5 and all(path.endswith(";kfree") or path == "kfree" for path in calls)
        by_calls, printed = folded(tmp_path, "--callers", "kfree", "--weight", "calls", *extra)
        assert by_calls == dict(calls)
        assert f"weights add up to kfree's {sum(calls.values()):,} calls" in printed
        by_self, printed = folded(tmp_path, "--callers", "kfree", *extra)
        assert set(by_self) == {path for path, ns in self_ns.items() if ns > 0}
        assert all(abs(by_self[path] - self_ns[path]) <= 1 for path in by_self)  # rounding to whole ns
        assert abs(sum(by_self.values()) - sum(self_ns.values())) <= len(by_self)


def outermost_total_ns(lines: list[str], function: str) -> tuple[int, int]:
    """(the printed durations of the calls of `function` not inside another of its calls, how many are inside one)."""
    frames: dict[str, dict[int, str]] = defaultdict(dict)
    total = nested = 0
    for line in lines:
        fields = proc_line_fields(line)
        if fields is None:
            continue
        pid, level, text = fields
        open_calls = frames[pid]
        closing = open_calls.get(level) if text.startswith("}") else None
        for d in [d for d in open_calls if d >= level]:
            del open_calls[d]
        name = closing or re.split(r"[ (]", text, maxsplit=1)[0]
        if name != function or text.endswith("{"):
            if text.endswith("{"):
                nested += name == function and function in open_calls.values()
                open_calls[level] = name
            continue
        duration = printed_ns(line)
        if duration is not None and function not in open_calls.values():
            total += duration
    return total, nested


def test_callers_folded_total_time_counts_recursion_once_as_the_functions_own_box(tmp_path):
    total_ns, nested = outermost_total_ns(read_lines(PROC_TRACE), "ip_output")
    assert nested > 10  # softirqs run inside ip_output and transmit again: ip_output inside ip_output
    by_total, printed = folded(tmp_path, "--callers", "ip_output", "--weight", "total")
    assert abs(sum(by_total.values()) - total_ns) <= len(by_total)
    assert f"weights add up to ip_output's {sum(by_total.values()):,} ns of total time" in printed
    out = tmp_path / "callers.json"
    result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", str(out), "--chart", "", "--callers", "ip_output")
    assert result.returncode == 0, result.stderr
    own_box = next(node for node in json.loads(out.read_text())["nodes"] if node["name"] == "ip_output")
    assert abs(own_box["total_time_us"] * 1000 - total_ns) <= 1
    assert own_box["calls"] == sum(1 for line in read_lines(PROC_TRACE) if re.search(r"\| +ip_output\(\)( \{|;)$", line))


def calls_of(lines: list[str], function: str) -> int:
    return sum(1 for line in lines if re.search(rf"\| +{re.escape(function)}\(\)( \{{|;)$", line))


def test_callers_boxes_tooltips_and_json_say_whose_numbers_they_show(tmp_path):
    import pygraphviz

    lines = read_lines(PROC_TRACE)
    calls, _ = caller_paths(lines, "kfree", None)
    through: Counter = Counter()  # calls of kfree with the function somewhere among its callers
    for path, count in calls.items():
        for caller in set(path.split(";")[:-1]):
            through[caller] += count
    caller = "skb_release_data"
    assert through[caller] > 20 and calls_of(lines, caller) != through[caller]
    out = tmp_path / "callers.dot"
    result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", str(out), "--chart", "", "--callers", "kfree")
    assert result.returncode == 0, result.stderr
    agraph = pygraphviz.AGraph(str(out))
    label = agraph.get_node(caller).attr["label"]
    assert f"{through[caller]:,} calls of kfree below" in label and re.search(r"\nself [\d.]+ [um]s in kfree", label)
    assert f"{caller} itself: {calls_of(lines, caller):,} calls" in agraph.get_node(caller).attr["tooltip"]
    own = agraph.get_node("kfree").attr["label"]
    assert f"\n{calls_of(lines, 'kfree'):,} calls\n" in own and "below" not in own
    assert "a caller's box shows the calls and time of kfree below it, not its own" in html.unescape(agraph.graph_attr["label"])
    edge_tip = agraph.get_edge("skb_free_head", "kfree").attr["tooltip"]
    assert edge_tip.startswith(f"skb_free_head -> kfree: {through['skb_free_head']:,} calls of kfree along this path")
    result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", str(tmp_path / "callers.json"), "--chart", "", "--callers", "kfree")
    assert result.returncode == 0, result.stderr
    graph = json.loads((tmp_path / "callers.json").read_text())
    node = next(node for node in graph["nodes"] if node["name"] == caller)
    assert node["calls"] == through[caller] and node["own"]["calls"] == calls_of(lines, caller)
    assert "kfree through each caller" in graph["stats"]["node_numbers"]


def drawn(tmp_path: Path, *extra: str, trace: Path = PROC_TRACE):
    """The .dot drawing (laid out by nobody: quick) and the run's result."""
    import pygraphviz

    out = tmp_path / "g.dot"
    result = run_cli("visualize", "-i", str(trace), "-o", str(out), "--chart", "", *extra)
    assert result.returncode == 0, result.stderr
    return result, pygraphviz.AGraph(str(out))


def called_pairs(lines: list[str]) -> set[tuple[str, str]]:
    """Every caller -> callee pair of the trace, from the indentation per pid (test_views' reading of the call paths)."""
    return {(chain[-1], name) for chain, name in call_paths(lines, known_suffix=True) if chain}


def test_root_star_is_drawn_within_max_nodes_and_the_advice_fits_the_focus(tmp_path):
    pairs = called_pairs(read_lines(PROC_TRACE))
    for limit in ("80", "30"):
        result, agraph = drawn(tmp_path, "--root", "*", "--max-nodes", limit)
        assert 0 < len(agraph.nodes()) <= int(limit)
        assert {(str(a), str(b)) for a, b in agraph.edges()} <= pairs
        assert "--root F" not in result.stdout and "--depth N to see fewer levels" in result.stdout
        assert "--root F" not in html.unescape(agraph.graph_attr["label"])
    result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", str(tmp_path / "all.dot"), "--chart", "", "--root", "*", "--max-nodes", "0")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--max-nodes N" in result.stderr and "--root F" not in result.stderr
    result, agraph = drawn(tmp_path, "--root", "tcp_sendmsg", "--depth", "4", "--max-nodes", "5")
    assert "left out" in result.stdout and "--root F" not in result.stdout and "--depth N" not in result.stdout
    result, agraph = drawn(tmp_path, "--max-nodes", "5")  # no focus yet: the hint stays
    assert "--root F to focus" in result.stdout and "--root F focuses on one function" in html.unescape(agraph.graph_attr["label"])


def caption_as_read(agraph) -> str:
    """The caption's text as a reader reads it: rows joined, so a long path wrapped onto the next row still reads whole."""
    text = re.sub(r"<[^>]+>", " ", agraph.graph_attr["label"])
    return re.sub(r"\s+", " ", html.unescape(text))


def test_diff_caption_names_the_baseline_files(tmp_path):
    demo = DATA / "record-demo" / "kernel-magnifier.data.xz"
    older = DATA / "fg-graphfunc" / "trace.txt.xz"
    _, agraph = drawn(tmp_path, "--baseline", str(older), "--max-nodes", "10", trace=demo)
    assert "from the baseline trace.txt.xz:" in html.unescape(agraph.graph_attr["label"])
    other = DATA / "fg-default" / "trace.txt.xz"  # two files of one name: their paths tell them apart
    _, agraph = drawn(tmp_path, "--baseline", str(older), "--baseline", str(other), "--max-nodes", "10", trace=demo)
    assert f"from the baseline {older}, {other}:" in caption_as_read(agraph)
    same_name = tmp_path / "same" / demo.name  # the baseline's file name is the recording's own: its path tells them apart
    same_name.parent.mkdir()
    same_name.write_bytes(older.read_bytes())
    _, agraph = drawn(tmp_path, "--baseline", str(same_name), "--max-nodes", "10", trace=demo)
    assert f"from the baseline {same_name}:" in caption_as_read(agraph)


def test_an_unknown_name_suggests_the_names_it_is_the_start_of(tmp_path):
    lines = read_lines(PROC_TRACE)
    names = {re.split(r"[ (]", fields[2], maxsplit=1)[0] for line in lines if (fields := proc_line_fields(line)) and not fields[2].startswith(("}", "/*"))}
    start = "__kmalloc_no"
    longer = sorted((name for name in names if name.startswith(start)), key=lambda name: (len(name), name))
    assert start not in names and "__kmalloc_node_track_caller" in longer
    for option in ("--root", "--callers", "--latency"):
        result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", str(tmp_path / "g.json"), "--chart", "", option, start)
        assert_one_line_error(result, f"{option} {start}: ")
        assert all(name in result.stderr for name in longer[:3]), result.stderr


def test_callers_chart_says_whose_time_it_ranks(tmp_path):
    from PIL import Image

    chart = tmp_path / "c.png"
    result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", str(tmp_path / "g.json"), "--chart", str(chart), "--callers", "kfree")
    assert result.returncode == 0, result.stderr
    assert Image.open(chart).text["Title"].startswith("kfree and its callers by the self time of kfree through each: top 30 of ")
