"""A text file split in two byte ranges, the second parsed in a child and stitched: exactly the sequential parse.

The child applies each function_graph task's events from the task's first
depth-0 call on and logs the earlier ones for the parent to replay on the
task's state at the seam (SeamParser). Every real text trace in tests/data is
cut at several places (inside call stacks, context-switch blocks, interrupts,
right after LOST lines) and parsed with KM_PARSE_PROCESSES=1 (the reference:
one sequential pass) and 2 (split); the trees, counters, JSON and messages must
be equal. Small function_graph traces are cut at 10 places, the others at 2.
"""

from __future__ import annotations

import json
import lzma
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA, SCRIPT
from test_parallel_parse import TRACES, parse, plain_copy


def is_tracedat(trace: str) -> bool:
    """A trace.dat by its magic bytes (as the tool judges it), whatever the file is called."""
    with lzma.open(trace) if trace.endswith(".xz") else open(trace, "rb") as file:
        return file.read(10) == b"\x17\x08Dtracing"


TEXT_TRACES = [trace for trace in TRACES if not is_tracedat(trace)]
MANY_SEAMS = [f"{share / 11:.4f}" for share in range(1, 11)]  # none at a round share
FEW_SEAMS = ["0.2174", "0.6087"]
SMALL_BYTES = 1 << 20


def halves_kept(km, monkeypatch) -> tuple[list[bool], list[list[tuple]]]:
    """Record each split parse: whether the child's half was kept, and the log it left to the parent."""
    kept: list[bool] = []
    logs: list[list[tuple]] = []
    real_halves, real_add = km.parse_file_in_chunks, km.add_second_half
    monkeypatch.setattr(km, "parse_file_in_chunks", lambda *args: kept.append(real_halves(*args)) or kept[-1])
    monkeypatch.setattr(km, "add_second_half", lambda parser, result: logs.append(result["log"]) or real_add(parser, result))
    return kept, logs


def test_text_traces_found():
    assert len(TEXT_TRACES) >= 30
    assert {"fg-abstime-proc", "fg-default", "fg-overflow-pipe", "lost-rule", "record-demo", "catalogue"} <= {Path(t).parent.name for t in TEXT_TRACES}


@pytest.mark.parametrize("trace", TEXT_TRACES, ids=lambda trace: f"{Path(trace).parent.name}/{Path(trace).name}")
def test_stitched_halves_are_the_sequential_parse(km, monkeypatch, tmp_path, trace):
    plain = plain_copy(tmp_path, trace)
    sequential = parse(km, monkeypatch, [plain], 1)
    assert not isinstance(sequential, str), sequential
    kept, logs = halves_kept(km, monkeypatch)
    graph_lines = "function_graph" in sequential["stats"]["formats"]  # function tracer lines: test_parallel_parse cuts them too
    seams = MANY_SEAMS if graph_lines and os.path.getsize(plain) < SMALL_BYTES else FEW_SEAMS
    for seam in seams:
        monkeypatch.setenv("KM_SPLIT_AT", seam)
        assert parse(km, monkeypatch, [plain], 2) == sequential, seam
    if graph_lines and sequential["stats"]["lines"] > 3000:
        assert sum(kept) >= len(seams) // 2, kept  # most cuts are stitched, not parsed again by the parent
        assert any(any(not isinstance(record[0], str) for record in log) for log in logs)  # events replayed


def test_every_kind_of_log_record_is_exercised(km, monkeypatch, tmp_path):
    """Across real traces the child leaves events, hand-overs, LOST-line breaks and interrupt arrows to the parent."""
    tags: set[str] = set()
    for trace in ("fg-overflow-pipe/trace.txt.xz", "lost-rule/6.1-graph-all-2.data.xz"):
        plain = plain_copy(tmp_path, str(DATA / trace))
        _, logs = halves_kept(km, monkeypatch)
        for seam in FEW_SEAMS:
            monkeypatch.setenv("KM_SPLIT_AT", seam)
            parse(km, monkeypatch, [plain], 2)
        tags |= {record[0] if isinstance(record[0], str) else "event" for log in logs for record in log}
    assert tags == {"event", "anchor", "break"}  # no real trace here has interrupt arrows: see the next test


def test_interrupt_arrows_across_the_seam(km, monkeypatch, tmp_path):
    """Minimal reproducer (no real trace in tests/data has funcgraph-irqs arrows): arrows put into a real trace.

    An arrow makes the next call on its CPU the start of an interrupt, not a callee of the open call; the
    arrows sit just after the seam, where the child logs them for the parent, and later, where it applies
    them itself."""
    plain = plain_copy(tmp_path, str(DATA / "fg-default/trace.txt.xz"))
    text = Path(plain).read_text().split("\n")
    entries = [index for index, line in enumerate(text) if line.startswith(" 1)  ") and line.endswith(") {") and "|    " in line]
    for index in reversed(entries[::40]):  # before every 40th nested entry on CPU 1: an interrupt starts there
        text[index:index] = [" 1)   ==========> |"]
    trace = tmp_path / "irqs.txt"
    trace.write_text("\n".join(text))
    sequential = parse(km, monkeypatch, [str(trace)], 1)
    _, logs = halves_kept(km, monkeypatch)
    for seam in [*FEW_SEAMS, "0.4", "0.8"]:
        monkeypatch.setenv("KM_SPLIT_AT", seam)
        assert parse(km, monkeypatch, [str(trace)], 2) == sequential, seam
    assert any(record[0] == "irq" for log in logs for record in log)


def visualize_json(tmp_path: Path, trace: str, env: dict[str, str]) -> tuple[dict, str]:
    out = tmp_path / "graph.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "visualize", "-i", trace, "-o", str(out), "--chart", ""],
        capture_output=True, text=True, timeout=120, env={**os.environ, **env}, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text()), result.stderr


@pytest.mark.parametrize("trace", ["fg-overflow-pipe/trace.txt.xz", "record-demo/kernel-magnifier.data.xz"])
def test_cli_output_and_messages_same_when_split(tmp_path, trace):
    plain = plain_copy(tmp_path, str(DATA / trace))
    sequential = visualize_json(tmp_path, plain, {"KM_PARSE_PROCESSES": "1"})
    for seam in ("0.61",):
        assert visualize_json(tmp_path, plain, {"KM_PARSE_PROCESSES": "2", "KM_SPLIT_AT": seam}) == sequential, seam


@pytest.mark.parametrize("trace", ["fg-default/trace.txt.xz", "fg-cpumask/trace.txt.xz", "lost-rule/6.1-graph-all-2.data.xz"])
def test_task_at_seam_is_the_one_the_first_half_left_running(km, monkeypatch, tmp_path, trace):
    """The child reads each CPU's last context switch back from the seam, in small chunks here: the task the
    sequential parser of the first half has on that CPU."""
    plain = plain_copy(tmp_path, str(DATA / trace))
    monkeypatch.setattr(km, "SEAM_LOOKBACK_CHUNK", 4096)
    text = Path(plain).read_bytes()
    checked = 0
    for share in (0.31, 0.5, 0.77, 0.95):
        seam = text.index(b"\n", int(len(text) * share)) + 1
        first_half = km.TraceParser(km.CallGraph())
        first_half.feed_lines(text[:seam].decode().split("\n")[:-1])
        child = km.SeamParser(km.CallGraph(), plain, seam)
        for cpu, task in first_half.cpu_task.items():
            assert child.task_at_seam(cpu) == task, (share, cpu)
            checked += 1
    assert checked >= 8


def test_a_line_longer_than_the_look_back_chunk_ends_the_attempt(km, monkeypatch, tmp_path):
    """Minimal reproducer: reading back from the seam over one line longer than a chunk gives up (it once spun)."""
    lines = Path(plain_copy(tmp_path, str(DATA / "fg-default/trace.txt.xz"))).read_text().split("\n")
    trace = tmp_path / "long-line.txt"
    trace.write_text("\n".join([*lines[:400], "x" * 20_000, *lines[400:800]]) + "\n")
    monkeypatch.setattr(km, "SEAM_LOOKBACK_CHUNK", 4096)
    seam = len("\n".join([*lines[:400], "x" * 20_000]).encode()) + 1
    child = km.SeamParser(km.CallGraph(), str(trace), seam)
    with pytest.raises(km.SeamUnknown):
        child.task_at_seam("1")
    sequential = parse(km, monkeypatch, [str(trace)], 1)
    monkeypatch.setenv("KM_SPLIT_AT", repr(seam / trace.stat().st_size))
    assert parse(km, monkeypatch, [str(trace)], 2) == sequential


def test_module_of_a_name_in_two_modules_as_sequentially(km, monkeypatch, tmp_path):
    """Minimal reproducer: a static function name in two modules. The function tracer sets a name's module when a
    (call, caller, module) is first met, so the half that meets a call again must not set it."""
    lines = Path(plain_copy(tmp_path, str(DATA / "function-tracer/trace.txt.xz"))).read_text().split("\n")[:4000]
    probe_a = "            bash-121     [001] .....   957.427174: sd_probe [mod_a] <-really_probe"
    probe_b = "            bash-121     [001] .....   957.427175: sd_probe [mod_b] <-driver_probe"
    text = [*lines[:1000], probe_a, probe_b, *lines[1000:3000], probe_a, *lines[3000:]]
    trace = tmp_path / "modules.txt"
    trace.write_text("\n".join(text) + "\n")
    sequential = parse(km, monkeypatch, [str(trace)], 1)
    assert sequential["modules"]["sd_probe"] == "mod_b"
    kept, _ = halves_kept(km, monkeypatch)
    monkeypatch.setenv("KM_SPLIT_AT", "0.6")
    assert parse(km, monkeypatch, [str(trace)], 2) == sequential
    assert kept == [True]
