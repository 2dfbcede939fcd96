"""The call-graph views of visualize: exact focus from call paths, connected drawings, heat, diffs.

Expected values come from an independent walk of the raw trace lines (per pid,
nesting from the indentation), never from the tool's own tree.
"""

from __future__ import annotations

import lzma
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

from conftest import DATA, SCRIPT, assert_one_line_error, edges_by_pair, graph_json, nodes_by_name, proc_line_fields, read_lines, run_cli

PROC_TRACE = DATA / "fg-abstime-proc" / "trace.txt.xz"  # funcgraph-proc: every line names its pid
DEMO = DATA / "record-demo" / "kernel-magnifier.data.xz"
OLDER = DATA / "fg-graphfunc" / "trace.txt.xz"
SVG = "{http://www.w3.org/2000/svg}"


def call_paths(lines: list[str], known_suffix: bool = False) -> list[tuple[list[str] | None, str]]:
    """(the chain of open callers, or None when part of it is missing; the function) for every call line.

    With known_suffix, a chain with a gap keeps the callers below the gap (the part a reader can know).

    Nesting per pid from the indentation, as the kernel prints it; independent of the tool.
    """
    frames: dict[str, dict[int, str]] = defaultdict(dict)
    calls = []
    for line in lines:
        fields = proc_line_fields(line)
        if fields is None:
            continue
        pid, depth, text = fields
        open_calls = frames[pid]
        for d in [d for d in open_calls if d >= depth]:
            del open_calls[d]
        if text.startswith(("}", "/*")):
            continue
        name = re.split(r"[ (]", text, maxsplit=1)[0]
        chain = [open_calls.get(d) for d in range(depth)]
        if None in chain and known_suffix:
            chain = chain[len(chain) - chain[::-1].index(None) :]
        calls.append((None if None in chain else chain, name))
        if text.endswith("{") or " { /*" in text:
            open_calls[depth] = name
    return calls


def reference_root_edges(lines: list[str], root: str, depth: int) -> Counter:
    """Caller -> callee calls within `depth` levels below the outermost `root` of each complete path."""
    edges: Counter = Counter()
    for chain, name in call_paths(lines):
        if chain is None or root not in chain:
            continue
        level = len(chain) - chain.index(root)
        if level <= depth:
            edges[(chain[-1], name)] += 1
    return edges


def reference_caller_edges(lines: list[str], callee: str, depth: int) -> Counter:
    """Caller -> callee calls on the `depth` levels of complete paths that end in `callee`."""
    edges: Counter = Counter()
    for chain, name in call_paths(lines, known_suffix=True):
        if chain is None or name != callee:
            continue
        path = [*chain, name]
        for level in range(1, min(depth, len(chain)) + 1):
            edges[(path[-level - 1], path[-level])] += 1
    return edges


def test_root_focus_is_exact_on_call_paths(tmp_path):
    lines = read_lines(PROC_TRACE)
    graph = graph_json(tmp_path, PROC_TRACE, extra=("--root", "tcp_sendmsg", "--depth", "3"))
    expected = reference_root_edges(lines, "tcp_sendmsg", 3)
    assert len(expected) > 20
    assert edges_by_pair(graph) == dict(expected)
    # functions below tcp_sendmsg call other things when called from elsewhere: those must not show up
    everywhere = edges_by_pair(graph_json(tmp_path, PROC_TRACE))
    focused = edges_by_pair(graph)
    inside = {caller for caller, _ in expected}
    only_elsewhere = {(caller, callee) for (caller, callee) in everywhere if caller in inside and (caller, callee) not in expected}
    assert len(only_elsewhere) > 5
    assert not only_elsewhere & set(focused)


def test_callers_show_the_paths_that_lead_to_a_function(tmp_path):
    lines = read_lines(PROC_TRACE)
    graph = graph_json(tmp_path, PROC_TRACE, extra=("--callers", "kfree", "--depth", "2"))
    expected = reference_caller_edges(lines, "kfree", 2)
    assert len(expected) > 5
    assert edges_by_pair(graph) == dict(expected)
    assert graph["stats"]["reversed"] is True
    assert nodes_by_name(graph)["kfree"]["calls"] == sum(1 for _, name in call_paths(lines) if name == "kfree")


def test_call_tree_in_json_rebuilds_the_stacks(tmp_path):
    lines = read_lines(PROC_TRACE)
    graph = graph_json(tmp_path, PROC_TRACE)
    tree = {node["id"]: node for node in graph["call_tree"]}
    calls = Counter()
    for node in tree.values():
        calls[node["function"]] += node["calls"]
    assert {name: node["calls"] for name, node in nodes_by_name(graph).items() if node["calls"]} == {k: v for k, v in calls.items() if v}

    def stack(node_id: int) -> tuple[str, ...]:
        names = []
        while node_id:
            names.append(tree[node_id]["function"])
            node_id = tree[node_id]["parent"]
        return tuple(reversed(names))

    from_tree = Counter()
    for node in tree.values():
        from_tree[stack(node["id"])] += node["calls"]
    complete = Counter(tuple([*chain, name]) for chain, name in call_paths(lines) if chain is not None and chain[:1] == ["x64_sys_call"])
    assert complete and all(from_tree[path] >= count for path, count in complete.items())


def drawn_dot(tmp_path: Path, *extra: str, trace: Path = DEMO) -> tuple[subprocess.CompletedProcess, set[str], list[tuple[str, str]]]:
    import pygraphviz

    out = tmp_path / "g.dot"
    result = run_cli("visualize", "-i", str(trace), "-o", str(out), "--chart", "", *extra)
    assert result.returncode == 0, result.stderr
    agraph = pygraphviz.AGraph(str(out))
    return result, set(agraph.nodes()), [(str(a), str(b)) for a, b in agraph.edges()]


def test_demo_drawing_flows_from_the_traced_functions(tmp_path):
    result, nodes, edges = drawn_dot(tmp_path, "--max-nodes", "40", "--max-edges", "80")
    assert {"tcp_sendmsg", "tcp_recvmsg"} <= nodes
    callees = defaultdict(set)
    for caller, callee in edges:
        callees[caller].add(callee)
    starts = nodes - {callee for _, callee in edges}
    assert {"tcp_sendmsg", "tcp_recvmsg"} <= starts
    reached, todo = set(), list(starts)
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(callees[name])
    assert reached == nodes
    assert len(nodes) == 40
    assert "left out" in result.stdout


def test_every_drawn_edge_shows_its_calls_in_the_svg(tmp_path):
    lines = read_lines(DEMO)
    out = tmp_path / "g.svg"
    result = run_cli("visualize", "-i", str(DEMO), "-o", str(out), "--chart", "")
    assert result.returncode == 0, result.stderr
    svg = ET.parse(out).getroot()
    full = edges_by_pair(graph_json(tmp_path, DEMO))
    edge_groups = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "edge"]
    assert len(edge_groups) > 40
    for group in edge_groups:
        caller, callee = group.find(f"{SVG}title").text.split("->")
        texts = [t.text for t in group.iter(f"{SVG}text")]
        assert f"{full[(caller, callee)]:,}" in texts, (caller, callee, texts)
        tooltip = next(a.get("{http://www.w3.org/1999/xlink}title") for a in group.iter(f"{SVG}a"))
        assert tooltip.startswith(f"{caller} -&gt; {callee}: ") or tooltip.startswith(f"{caller} -> {callee}: ")
    # tcp_sendmsg is called 237 times in the demo recording (plain count of its entry lines)
    assert sum(1 for line in lines if line.endswith("|  tcp_sendmsg() {")) == 237
    node_groups = {g.find(f"{SVG}title").text: g for g in svg.iter(f"{SVG}g") if g.get("class") == "node"}
    tooltip = next(a.get("{http://www.w3.org/1999/xlink}title") for a in node_groups["tcp_sendmsg"].iter(f"{SVG}a"))
    assert "237 calls" in tooltip and "callees: tcp_sendmsg_locked (237)" in tooltip


def test_colour_bar_and_time_heat(tmp_path):
    out = tmp_path / "g.svg"
    result = run_cli("visualize", "-i", str(DEMO), "-o", str(out), "--chart", "")
    assert result.returncode == 0, result.stderr
    svg = ET.parse(out).getroot()
    graph_group = next(g for g in svg.iter(f"{SVG}g") if g.get("class") == "graph")
    legend = [p.get("fill") for p in graph_group.findall(f"{SVG}polygon")][1:]
    assert len(legend) == 9 and len(set(legend)) == 9  # nine colour stops, coldest to hottest
    caption = " ".join(t.text or "" for t in graph_group.findall(f"{SVG}text"))
    assert "colour = self time on a log scale" in caption and " ms" in caption
    # schedule() sleeps: by self time it is the hottest function of the demo, so it gets the last stop's colour
    nodes = {g.find(f"{SVG}title").text: g for g in svg.iter(f"{SVG}g") if g.get("class") == "node"}
    assert next(nodes["schedule"].iter(f"{SVG}path")).get("fill") == legend[-1]


def test_heat_by_calls_keeps_colours_across_drawing_sizes(tmp_path):
    def fills(max_nodes: str) -> dict[str, str]:
        out = tmp_path / f"g{max_nodes}.svg"
        result = run_cli("visualize", "-i", str(DEMO), "-o", str(out), "--chart", "", "--heat", "calls", "--max-nodes", max_nodes)
        assert result.returncode == 0, result.stderr
        svg = ET.parse(out).getroot()
        return {g.find(f"{SVG}title").text: next(g.iter(f"{SVG}path")).get("fill") for g in svg.iter(f"{SVG}g") if g.get("class") == "node"}

    small, large = fills("20"), fills("60")
    assert len(small) == 20 and len(large) == 60
    assert all(large[name] == colour for name, colour in small.items())


def test_diff_with_itself_shows_no_change(tmp_path):
    graph = graph_json(tmp_path, DEMO, extra=("--baseline", str(DEMO), "--heat", "calls"))
    assert graph["nodes"] and all(node["change"]["calls"] == 0 for node in graph["nodes"])
    assert all(node["baseline"]["calls"] == node["calls"] for node in graph["nodes"])


def plain_calls(path: Path) -> Counter:
    calls: Counter = Counter()
    for line in read_lines(path):
        if "|  " in line and not line.startswith("#"):
            text = line.rsplit("|  ", 1)[1].strip()
            if text.endswith(("{", ";")) and not text.startswith(("}", "/*")):
                calls[re.split(r"[ (]", text, maxsplit=1)[0]] += 1
    return calls


def test_diff_against_an_older_recording_has_the_right_signed_changes(tmp_path):
    graph = graph_json(tmp_path, DEMO, extra=("--baseline", str(OLDER), "--heat", "calls"))
    new, old = plain_calls(DEMO), plain_calls(OLDER)
    changes = {node["name"]: node["change"]["calls"] for node in graph["nodes"]}
    assert changes["tcp_sendmsg"] == new["tcp_sendmsg"] - old["tcp_sendmsg"]
    assert all(changes[name] == new[name] - old[name] for name in changes if new[name])
    assert any(value > 0 for value in changes.values()) and any(value < 0 for value in changes.values())
    assert set(graph["baseline"]["only_in_baseline"]) == {name for name in old if not new[name]} - {""}
    svg = tmp_path / "diff.svg"
    result = run_cli("visualize", "-i", str(DEMO), "--baseline", str(OLDER), "-o", str(svg), "--chart", str(tmp_path / "diff.png"))
    assert result.returncode == 0, result.stderr
    assert "change of self time from the baseline" in svg.read_text()
    assert "(was " in svg.read_text()


def test_module_functions_are_selected_by_module(tmp_path):
    lines = read_lines(PROC_TRACE)
    expected = {re.split(r"[ (]", line.rsplit("|  ", 1)[1].strip())[0] for line in lines if " [9pnet](" in line or " [9pnet]()" in line}
    graph = graph_json(tmp_path, PROC_TRACE, extra=("--filter-module", "9pnet"))
    assert expected and set(nodes_by_name(graph)) == expected
    assert all(node["module"] == "9pnet" for node in graph["nodes"])


def test_too_big_a_drawing_is_refused_with_the_options_that_help(tmp_path):
    result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", str(tmp_path / "all.pdf"), "--chart", "", "--max-nodes", "0", "--max-edges", "0", "--node-thres", "0")
    assert_one_line_error(result, "too many to lay out readably")
    for option in ("--root", "--max-nodes", "--node-thres"):
        assert option in result.stderr
    assert os.listdir(tmp_path) == []


def test_ctrl_c_and_sigterm_end_a_long_layout_within_a_second(tmp_path):
    for signum in (signal.SIGINT, signal.SIGTERM):
        out = tmp_path / "big.pdf"
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), "visualize", "-i", str(PROC_TRACE), "-o", str(out), "--chart", "", "--max-nodes", "150", "--max-edges", "300", "--node-thres", "0", "--edge-thres", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for line in process.stdout:
            if line.startswith("drawing:"):
                break
        time.sleep(1.0)  # graphviz is laying out now (it takes tens of seconds for this size)
        assert process.poll() is None
        sent = time.monotonic()
        process.send_signal(signum)
        process.wait(timeout=10)
        assert time.monotonic() - sent < 1.0
        assert process.returncode != 0
        assert "Traceback" not in process.stderr.read()
        assert [name for name in os.listdir(tmp_path)] == []


def test_unknown_focus_function_is_one_line_with_a_suggestion(tmp_path):
    result = run_cli("visualize", "-i", str(DEMO), "-o", str(tmp_path / "g.json"), "--chart", "", "--root", "tcp_sendmgs")
    assert_one_line_error(result, "--root tcp_sendmgs: no function of that name")
    assert "tcp_sendmsg" in result.stderr


def test_call_paths_beyond_the_limit_are_refused_with_a_clear_message(km):
    # unit level: a real trace with a million distinct paths would be too slow for the test suite
    tree = km.CallTree(limit=4)
    tree.child(tree.child(km.ROOT_NODE, "a"), "b")
    tree.child(km.ROOT_NODE, "c")
    try:
        tree.child(km.ROOT_NODE, "d")
    except km.UserError as err:
        assert "more than 4 distinct call paths" in str(err) and "--graph-function" in str(err)
    else:
        raise AssertionError("the fifth path was accepted")


# the folders of the modules the bundled map was made with (Debian 6.1 builds none of them in)
MAPPED_MODULE_FOLDERS = ("net/9p/", "fs/9p/", "fs/netfs/", "fs/fscache/", "drivers/virtio/")


def test_path_filter_matches_module_functions_by_their_module(tmp_path):
    lines = read_lines(PROC_TRACE)
    expected = {re.split(r"[ (]", line.rsplit("|  ", 1)[1].strip())[0] for line in lines if " [9pnet](" in line or " [9pnet]()" in line}
    kernel_map = DATA / "symbol-map-6.1.0-56-amd64.map.xz"
    # the bundled map has the 9pnet module's files: its functions match by their path
    graph = graph_json(tmp_path, PROC_TRACE, extra=("--symbol-map", str(kernel_map), "--filter-filepath", "net/9p"))
    assert expected <= set(nodes_by_name(graph))
    assert all(any("net/9p" in f for f in node["files"]) for node in graph["nodes"])
    # a map of vmlinux alone (the bundled one without the modules' lines) has no file for them: they match by [9pnet]
    vmlinux_only = tmp_path / "vmlinux-only.map"
    with lzma.open(kernel_map, "rt", encoding="utf-8") as handle:
        vmlinux_only.write_text("".join(line for line in handle if " [" not in line.split("\t", 1)[0] and not any(folder in line for folder in MAPPED_MODULE_FOLDERS)))
    graph = graph_json(tmp_path, PROC_TRACE, extra=("--symbol-map", str(vmlinux_only), "--filter-filepath", "9pnet"))
    assert expected <= set(nodes_by_name(graph))
    assert all(node.get("module", "").startswith("9pnet") or any("9pnet" in f for f in node["files"]) for node in graph["nodes"])


def test_no_negative_self_time_on_the_newer_kernel(tmp_path):
    # on 7.3, children's printed durations can add up to more than their caller's (vm_normal_page, tcp_current_mss)
    graph = graph_json(tmp_path, DATA / "fg-newer-kernel" / "trace-default.txt.xz")
    assert all(node["self_time_us"] >= 0 for node in graph["nodes"])
    assert all(node["self_time_us"] is None or node["self_time_us"] >= 0 for node in graph["call_tree"])
