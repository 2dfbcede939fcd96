"""Several inputs (-i repeated) parsed in child processes give exactly the sequential result.

KM_PARSE_PROCESSES forces the parallel parse on these small real traces (by
default it starts at 16 MB of input) and sets the number of processes; 1 is the
sequential loop, the reference.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import DATA, edges_by_pair, graph_json, nodes_by_name


def is_trace(path: Path) -> bool:
    """The recordings in tests/data (not the symbol maps, kernel counters, notes)."""
    if path.parent.name == "catalogue":
        return path.suffix == ".txt"
    return path.name.endswith((".txt.xz", ".data.xz")) and "symbol" not in path.name and path.parent != DATA


TRACES = sorted(str(path) for path in DATA.rglob("*") if path.is_file() and is_trace(path))
# Every real trace at least once, in groups of 2-4 mixing formats (and the same trace twice).
GROUPS = [TRACES[first::5] for first in range(5)] + [[str(DATA / "fg-default/trace.txt.xz")] * 2]


def canonical(km, graph) -> dict:
    """What the parse produced, independent of node numbering and of float rounding in the last bit."""
    tree = graph.tree
    paths: dict[str, list] = {}
    for node in tree.walk():
        counts = paths.setdefault("/".join(tree.path(node)), [0, 0.0, 0.0])
        counts[0] += tree.calls[node]
        counts[1] += tree.total_us[node]
        counts[2] += tree.self_us[node]
    rounded = {path: (calls, round(total, 6), round(self_us, 6)) for path, (calls, total, self_us) in paths.items()}
    return {
        "paths": rounded,
        "stats": vars(graph.stats),
        "modules": graph.modules,
        "calls": graph.calls,
        "edges": graph.edges,
        "total": {name: round(value, 6) for name, value in graph.total_us.items()},
        "self": {name: round(value, 6) for name, value in graph.self_us.items()},
        "roots": {name: round(value, 6) for name, value in graph.roots.items()},
        "timed": graph.timed,
    }


def parse(km, monkeypatch, paths: list[str], processes: int):
    monkeypatch.setenv("KM_PARSE_PROCESSES", str(processes))
    try:
        return canonical(km, km.parse_traces(paths))
    except km.UserError as err:
        return f"error: {err}"


def test_every_real_trace_is_covered():
    assert len(TRACES) >= 20
    assert {str(DATA / "fg-overflow-pipe/trace.txt.xz"), str(DATA / "record-demo/kernel-magnifier.data.xz")} <= set(TRACES)


@pytest.mark.parametrize("group", GROUPS, ids=lambda group: "+".join(Path(path).parent.name for path in group))
def test_parallel_parse_is_identical(km, monkeypatch, group):
    forked = []
    real_child = km.parse_in_child
    monkeypatch.setattr(km, "parse_in_child", lambda paths, selection: forked.append(paths) or real_child(paths, selection))
    sequential = parse(km, monkeypatch, group, 1)
    assert not isinstance(sequential, str), sequential
    assert not forked
    assert parse(km, monkeypatch, group, 2) == sequential
    assert len(forked) == 2
    assert sorted(path for paths in forked for path in paths) == sorted(group)


def test_first_bad_input_named_as_sequentially(km, monkeypatch, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("just some notes\n")
    good = str(DATA / "fg-default/trace.txt.xz")
    for group in ([good, str(text)], [str(text), good], [good, str(tmp_path / "missing.txt")]):
        sequential = parse(km, monkeypatch, group, 1)
        assert isinstance(sequential, str) and sequential.startswith("error: ")
        assert parse(km, monkeypatch, group, 2) == sequential


def test_cli_json_same_with_two_processes(tmp_path, monkeypatch):
    inputs = (DATA / "fg-default/trace.txt.xz", DATA / "fg-overflow-pipe/trace.txt.xz", DATA / "function-tracer/trace.txt.xz")
    monkeypatch.setenv("KM_PARSE_PROCESSES", "1")
    sequential = graph_json(tmp_path, *inputs)
    monkeypatch.setenv("KM_PARSE_PROCESSES", "2")
    parallel = graph_json(tmp_path, *inputs)
    assert nodes_by_name(parallel) == nodes_by_name(sequential)
    assert edges_by_pair(parallel) == edges_by_pair(sequential)
    assert {key: value for key, value in parallel.items() if key not in ("nodes", "edges", "call_tree")} == {
        key: value for key, value in sequential.items() if key not in ("nodes", "edges", "call_tree")
    }
