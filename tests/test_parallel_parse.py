"""Parsing in child processes gives exactly the sequential result, on every real trace.

Several inputs (-i repeated) are parsed one per process; one plain input has its
second half parsed in a child (kept when that half parses alone: function tracer
lines, and function_graph lines stitched to the open call stacks at the seam; else
the parent parses it). KM_PARSE_PROCESSES forces both on these small
real traces (by default they start at 16 MB / 64 MB) and sets the number of
processes; 1 is the sequential loop, the reference. KM_SPLIT_AT moves the seam.
"""

from __future__ import annotations

import lzma
from pathlib import Path

import pytest
from conftest import DATA, edges_by_pair, graph_json, nodes_by_name


def is_trace(path: Path) -> bool:
    """The recordings in tests/data (not the symbol maps, kernel counters, notes)."""
    if path.parent.name == "catalogue":
        return path.suffix == ".txt"
    if path.name.startswith(("formats-", "tc-events-")):
        return False  # tests/data/sched: tracefs event format files, and trace-cmd's recording of events without calls
    return path.name.endswith((".txt.xz", ".data.xz", ".dat.xz")) and "symbol" not in path.name and path.parent != DATA


TRACES = sorted(str(path) for path in DATA.rglob("*") if path.is_file() and is_trace(path))
# Every real trace once, in groups of 4-5 mixing formats.
GROUPS = [TRACES[first::5] for first in range(5)]
# Seams at these shares of each file: the middle of call stacks, of context-switch blocks, after LOST lines.
SEAMS = ("0.1", "0.37", "0.5", "0.83")


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
        "open_calls": {"/".join(tree.path(node)): count for node, count in tree.open_calls.items() if count},
        "open_functions": graph.open_calls,
        "whole": round(graph.weight_total, 6),
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
    monkeypatch.setattr(km, "parse_in_child", lambda paths, selection, started: forked.append(paths) or real_child(paths, selection, started))
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


def plain_copy(tmp_path: Path, trace: str) -> str:
    """Byte ranges need an uncompressed file: the real trace, decompressed."""
    target = tmp_path / Path(trace).name.removesuffix(".xz")
    target.write_bytes(lzma.decompress(Path(trace).read_bytes()) if trace.endswith(".xz") else Path(trace).read_bytes())
    return str(target)


@pytest.mark.parametrize("trace", TRACES, ids=lambda trace: f"{Path(trace).parent.name}/{Path(trace).name}")
def test_split_file_is_identical(km, monkeypatch, tmp_path, trace):
    plain = plain_copy(tmp_path, trace)
    sequential = parse(km, monkeypatch, [plain], 1)
    assert not isinstance(sequential, str), sequential
    kept = []
    real_halves = km.parse_file_in_chunks
    monkeypatch.setattr(km, "parse_file_in_chunks", lambda *args: kept.append(real_halves(*args)) or kept[-1])
    for seam in SEAMS if "function" in trace else SEAMS[1:2]:
        monkeypatch.setenv("KM_SPLIT_AT", seam)
        assert parse(km, monkeypatch, [plain], 2) == sequential, seam
    if "function-tracer/trace" in trace or "function-variants" in trace:
        assert any(kept), kept  # function tracer lines: the child's half is used (unless a LOST line follows the seam)
    if trace.endswith(".dat.xz"):
        assert not kept  # binary: no byte ranges
    if "fg-" in trace and "function" not in trace and not trace.endswith(".dat.xz"):  # (sched/tc-fg-*.dat.xz: binary)
        assert kept and all(kept), kept  # open call stacks at the seam: stitched (tests/test_seams.py cuts them everywhere)


def test_compressed_file_is_not_split(km, monkeypatch):
    monkeypatch.setattr(km, "parse_file_in_chunks", lambda *args: pytest.fail("split a compressed file"))
    parse(km, monkeypatch, [str(DATA / "function-tracer/trace.txt.xz")], 2)


def test_repeated_lost_line_across_the_seam(km, monkeypatch, tmp_path):
    """Two equal LOST lines a few lines apart, a seam between them: counted as the single parse counts them.

    With function tracer lines between them they are two losses (the kernel repeats a LOST line only around
    one function_graph entry: TraceParser.lost_line), and the halves must not change that."""
    lines = lzma.decompress((DATA / "function-tracer/trace.txt.xz").read_bytes()).decode().split("\n")
    lost = next(index for index, line in enumerate(lines) if "[LOST " in line)
    lines.insert(lost + 4, lines[lost])  # the same loss again, 3 lines later, as trace_pipe does
    trace = tmp_path / "trace.txt"
    trace.write_text("\n".join(lines))
    sequential = parse(km, monkeypatch, [str(trace)], 1)
    assert sequential["stats"]["duplicate_lost_lines"] == 0
    seam = len("\n".join(lines[: lost + 2]).encode()) + 1  # the start of the second line after the first LOST line
    kept = []
    real_halves = km.parse_file_in_chunks
    monkeypatch.setattr(km, "parse_file_in_chunks", lambda *args: kept.append(real_halves(*args)) or kept[-1])
    monkeypatch.setenv("KM_SPLIT_AT", repr(seam / trace.stat().st_size))
    assert parse(km, monkeypatch, [str(trace)], 2) == sequential
    assert kept == [False]
    monkeypatch.setenv("KM_SPLIT_AT", "0.5")  # far from any LOST line: the child's half counts
    assert parse(km, monkeypatch, [str(trace)], 2) == sequential
    assert kept[1:] == [True]


def test_long_line_across_a_read_chunk_of_the_second_half(km, monkeypatch, tmp_path):
    """A damaged line longer than MAX_LINE_LENGTH that crosses a read chunk of the child's byte range.

    The reader skips such a line to its newline; a variable of that skip once
    replaced the range's end, and the child silently stopped reading there."""
    monkeypatch.setattr(km, "CHUNK_BYTES", 64 << 10)
    lines = lzma.decompress((DATA / "function-tracer/trace.txt.xz").read_bytes()).decode().split("\n")
    body = [line for line in lines if " <-" in line]
    text = "\n".join(lines + body * 4)
    seam = text.index("\n", len(text) // 2) + 1
    junk_at = text.index("\n", seam + (64 << 10) - 20_000) + 1
    text = text[:junk_at] + "x" * 30_000 + "\n" + text[junk_at:]
    trace = tmp_path / "trace.txt"
    trace.write_text(text)
    monkeypatch.setenv("KM_SPLIT_AT", repr((seam + 0.5) / trace.stat().st_size))
    kept = []
    real_halves = km.parse_file_in_chunks
    monkeypatch.setattr(km, "parse_file_in_chunks", lambda *args: kept.append(real_halves(*args)) or kept[-1])
    split = parse(km, monkeypatch, [str(trace)], 2)
    assert kept == [True]
    function_lines = sum(1 for line in text.split("\n") if " <-" in line)
    assert split["stats"]["events"] == function_lines
    assert split["stats"]["unparsed_lines"] == 1
    assert split == parse(km, monkeypatch, [str(trace)], 1)


@pytest.mark.parametrize("processes", ("1", "2"))
def test_line_count_of_several_inputs_is_their_sum(tmp_path, monkeypatch, processes):
    """The JSON's stats count every input's lines (it once held the last input's count)."""
    inputs = (DATA / "fg-default/trace.txt.xz", DATA / "function-tracer/trace.txt.xz", DATA / "fg-overflow-pipe/trace.txt.xz")
    expected = sum(lzma.decompress(path.read_bytes()).count(b"\n") for path in inputs)
    monkeypatch.setenv("KM_PARSE_PROCESSES", processes)
    assert graph_json(tmp_path, *inputs)["stats"]["lines"] == expected
