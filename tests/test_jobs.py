"""visualize -j N: the same JSON, byte for byte, as one process, whatever N and wherever the seams fall.

One text file is cut into N chunks at line starts, each parsed by its own
process and stitched in a chain (SeamParser, read_on); several inputs are parsed
side by side. The reference is -j 1 (one sequential pass). The CLI runs in this
process (main([...])), which forks the workers as a user's run does.

To stay within a minute on the 2-core test machine: every real text recording is
cut to its first PREFIX_BYTES (real lines, cut at a line end) and parsed at every
N from 2 to 8; the whole of the largest recordings at N = 3 and 8 (bench/bench_jobs.py
parses 256 MB at 1, 2, 4, 8); seeded damaged copies
(test_mutation's kinds of damage) at N = 2..8 in turn; seams forced inside call
stacks, right before and after LOST lines, at context switches and where each
CPU's lines start.
"""

from __future__ import annotations

import contextlib
import io
import lzma
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DATA, SCRIPT, load_module
from test_mutation import SOURCES, make_mutant, read_source
from test_parallel_parse import TRACES

TEXT_TRACES = [trace for trace in TRACES if not trace.endswith(".dat.xz") and "record-demo-dat" not in trace]
PREFIX_BYTES = 192 << 10
WHOLE = [DATA / "fg-abstime-proc/trace.txt.xz", DATA / "function-tracer/trace.txt.xz", DATA / "sched/fg-sched-default.txt.xz"]
MUTANTS = 48
SEED = 20261207


@pytest.fixture(scope="module")
def km():
    return load_module()


def plain_text(path: Path | str, limit: int | None = None) -> bytes:
    data = Path(path).read_bytes()
    data = lzma.decompress(data) if str(path).endswith(".xz") else data
    if limit is not None and len(data) > limit:
        data = data[: data.rindex(b"\n", 0, limit) + 1]
    return data


def visualize(km, tmp_path: Path, inputs: list[str], jobs: int) -> tuple[int, str, bytes]:
    """Exit status, messages and JSON bytes of `visualize -j jobs` (run here, in this process)."""
    out = tmp_path / "graph.json"
    with contextlib.suppress(FileNotFoundError):
        out.unlink()
    argv = ["visualize", "-o", str(out), "--chart", "", "-j", str(jobs)]
    for path in inputs:
        argv += ["-i", path]
    messages = io.StringIO()
    with contextlib.redirect_stderr(messages), contextlib.redirect_stdout(messages):
        code = km.main(argv)
    return code, messages.getvalue(), out.read_bytes() if out.exists() else b""


@pytest.fixture
def chunks(km, monkeypatch):
    """The number of chunks each run of parse_file_in_chunks() was given, and whether each was stitched whole."""
    runs: list[tuple[int, bool]] = []
    real = km.parse_file_in_chunks
    monkeypatch.setattr(km, "parse_file_in_chunks", lambda parser, path, seams, progress: runs.append((len(seams) + 1, real(parser, path, seams, progress))) or runs[-1][1])
    monkeypatch.delenv("KM_PARSE_PROCESSES", raising=False)
    monkeypatch.delenv("KM_SPLIT_AT", raising=False)
    return runs


def test_every_text_recording_is_covered():
    assert len(TEXT_TRACES) >= 30
    assert {path.parent.name for path in map(Path, TEXT_TRACES)} >= {"catalogue", "fg-default", "fg-overflow-pipe", "function-tracer", "lost-rule", "sched", "retval", "retaddr"}


def test_every_text_recording_same_json_for_n_1_to_8(km, tmp_path, monkeypatch, chunks):
    monkeypatch.chdir(tmp_path)
    different = []
    for number, trace in enumerate(TEXT_TRACES):
        plain = tmp_path / f"{number}-{Path(trace).name.removesuffix('.xz')}"
        plain.write_bytes(plain_text(trace, PREFIX_BYTES))
        reference = visualize(km, tmp_path, [str(plain)], 1)
        assert reference[0] == 0 or "error" in reference[1], reference[1]
        for jobs in range(2, 9):
            if visualize(km, tmp_path, [str(plain)], jobs) != reference:
                different.append(f"{trace} -j {jobs}")
    assert not different, different
    assert sum(count for count, _ in chunks) >= len(TEXT_TRACES) * 30  # N chunks each (a few lines-only files fewer)
    assert sum(stitched for _, stitched in chunks) >= len(chunks) * 0.8  # mostly stitched, not parsed again by the one before


@pytest.mark.parametrize("trace", WHOLE, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_large_recordings_whole_same_json(km, tmp_path, monkeypatch, chunks, trace):
    monkeypatch.chdir(tmp_path)
    plain = tmp_path / trace.name.removesuffix(".xz")
    plain.write_bytes(plain_text(trace))
    reference = visualize(km, tmp_path, [str(plain)], 1)
    assert reference[0] == 0, reference[1]
    for jobs in (3, 8):
        assert visualize(km, tmp_path, [str(plain)], jobs) == reference, jobs
    assert [count for count, _ in chunks] == [3, 8]
    assert all(stitched for _, stitched in chunks), chunks


def test_damaged_copies_same_json_and_messages(km, tmp_path, monkeypatch, chunks):
    """test_mutation's damage (truncation, flipped bytes, shuffled lines, NULs, hostile lines...): the same JSON, or the same one-line error."""
    monkeypatch.chdir(tmp_path)
    rng = random.Random(SEED)
    sources = [read_source(path) for path in SOURCES]
    different = []
    for number in range(MUTANTS):
        mutant = make_mutant(rng, sources, b"f kernel/f.c\n")
        if mutant.is_map:
            continue
        path = tmp_path / f"mutant-{number}.{mutant.suffix}"
        path.write_bytes(mutant.data)
        jobs = 2 + number % 7
        if visualize(km, tmp_path, [str(path)], jobs) != visualize(km, tmp_path, [str(path)], 1):
            different.append(f"mutant {number} ({mutant.description}) -j {jobs}")
        path.unlink()
    assert not different, different
    assert len(chunks) >= MUTANTS // 2  # the uncompressed ones were cut


def line_starts(data: bytes, pattern: str, after: int = 0) -> list[int]:
    """The byte offsets of the lines matching `pattern` (or `after` lines below them)."""
    starts = [0, *(match.end() for match in re.finditer(rb"\n", data))][:-1]
    lines = data.split(b"\n")
    return [starts[index + after] for index, line in enumerate(lines[: len(starts) - after]) if re.search(pattern.encode(), line)]


def deep_in_call_stacks(data: bytes) -> list[int]:
    """Lines at depth 4 or more of a function_graph trace (indented by 8+ spaces after "|  ")."""
    return line_starts(data, r"\|  {9,}\S")


TRICKY = {
    # (recording, the places to cut at: byte offsets of line starts)
    "inside call stacks": (DATA / "fg-default/trace.txt.xz", deep_in_call_stacks),
    "right after LOST lines": (DATA / "fg-overflow-pipe/trace.txt.xz", lambda data: line_starts(data, r"\[LOST \d+ EVENTS\]", after=1)),
    "right before LOST lines": (DATA / "fg-overflow-pipe/trace.txt.xz", lambda data: line_starts(data, r"\[LOST \d+ EVENTS\]")),
    "at context switches": (DATA / "sched/fg-sched-default.txt.xz", lambda data: line_starts(data, r"=>")),
    "where each CPU's lines start": (DATA / "fg-graphfunc/trace.txt.xz", lambda data: first_lines_of_each_cpu(data)),
}


def first_lines_of_each_cpu(data: bytes) -> list[int]:
    """The first three lines of each CPU column (" 1) ..."): where the text of each CPU's buffer begins."""
    found: dict[bytes, list[int]] = {}
    for match in re.finditer(rb"^ *(\d+)\)", data, re.M):
        starts = found.setdefault(match.group(1), [])
        if len(starts) < 3:
            starts.append(match.start())
    return sorted(start for starts in found.values() for start in starts if start)


@pytest.mark.parametrize("place", TRICKY)
def test_seams_at_tricky_places(km, tmp_path, monkeypatch, chunks, place):
    monkeypatch.chdir(tmp_path)
    trace, where = TRICKY[place]
    data = plain_text(trace, 3 << 20)
    plain = tmp_path / "trace.txt"
    plain.write_bytes(data)
    offsets = where(data)
    assert len(offsets) >= 3, f"no {place} in {trace}"
    reference = visualize(km, tmp_path, [str(plain)], 1)
    assert reference[0] == 0, reference[1]
    picked = sorted(random.Random(SEED).sample(offsets, min(7, len(offsets))))
    for count in (1, 3, len(picked)):  # a seam at the first, three, all seven places
        shares = picked[:: max(1, len(picked) // count)][:count]
        monkeypatch.setenv("KM_SPLIT_AT", ",".join(f"{offset / len(data)!r}" for offset in shares))
        assert visualize(km, tmp_path, [str(plain)], 8) == reference, (place, shares)
    assert [count for count, _ in chunks] == [2, 4, len(picked) + 1]
    assert km.split_seams(str(plain), None) == picked  # the seams are exactly the lines asked for


def test_several_inputs_side_by_side(km, tmp_path, monkeypatch):
    """Five inputs, text and trace.dat, with -j 1 to 5: one child per input at most, the same JSON."""
    monkeypatch.chdir(tmp_path)
    inputs = [str(DATA / name) for name in ("fg-default/trace.txt.xz", "record-demo/kernel-magnifier.data.xz", "function-tracer/trace.txt.xz",
                                             "fg-overflow-pipe/trace.txt.xz", "retval/retval.dat.xz")]
    forked: list[list[str]] = []
    real = km.parse_in_child
    monkeypatch.setattr(km, "parse_in_child", lambda paths, selection, started: forked.append(paths) or real(paths, selection, started))
    reference = visualize(km, tmp_path, inputs, 1)
    assert reference[0] == 0, reference[1]
    assert not forked
    for jobs in (2, 3, 5):
        assert visualize(km, tmp_path, inputs, jobs) == reference, jobs
        assert len(forked) == jobs and sorted(path for paths in forked for path in paths) == sorted(inputs)
        forked.clear()


def test_default_jobs_capped_by_the_work(km, tmp_path, monkeypatch):
    """Without -j: the cores available, but no chunk smaller than SPLIT_CHUNK_MIN_BYTES (a small file: one process)."""
    monkeypatch.delenv("KM_PARSE_PROCESSES", raising=False)
    monkeypatch.delenv("KM_SPLIT_AT", raising=False)
    monkeypatch.setattr(km, "jobs_wanted", None)
    small = tmp_path / "small.txt"
    small.write_bytes(plain_text(DATA / "fg-default/trace.txt.xz"))
    assert km.split_seams(str(small), None) == []
    monkeypatch.setattr(km, "SPLIT_CHUNK_MIN_BYTES", small.stat().st_size // 3)
    monkeypatch.setattr(km, "parse_processes", lambda: 8)
    seams = km.split_seams(str(small), None)
    assert len(seams) == 2  # 3 chunks: capped by the work, not the 8 cores
    data = small.read_bytes()
    assert all(data[seam - 1 : seam] == b"\n" for seam in seams)
    monkeypatch.setattr(km, "parse_processes", lambda: 5)
    monkeypatch.setattr(km, "jobs_wanted", 5)  # -j 5 asks for 5, whatever the size
    assert len(km.split_seams(str(small), None)) == 4


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stop_signal_ends_every_worker(tmp_path, stop):
    """Ctrl-C (to the process group) or SIGTERM (to the parent alone) during a -j 4 parse: status 130, nothing left, no worker alive."""
    plain = tmp_path / "trace.txt"
    plain.write_bytes(plain_text(WHOLE[0]) * 3)
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "visualize", "-i", str(plain), "-o", "out.json", "--chart", "", "-j", "4"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    assert process.stdout.readline().startswith("Visualization mode")
    stop_amid_workers(process, stop, 3)  # the parent parses the first chunk itself
    assert sorted(path.name for path in tmp_path.iterdir()) == ["trace.txt"]


def stop_amid_workers(process: subprocess.Popen, stop: signal.Signals, workers: int) -> None:
    """Once the CLI (started in a session of its own) has its workers, Ctrl-C (SIGINT to the process group) or SIGTERM
    (to the parent alone): status 130 within a second, the one-line message, and no process of the group left."""
    found: list[str] = []
    deadline = time.monotonic() + 30
    while len(found) < workers and time.monotonic() < deadline:  # forked once the parent has read the file's first MBs
        time.sleep(0.05)
        found = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    assert len(found) == workers, found
    began = time.monotonic()
    if stop == signal.SIGINT:
        os.killpg(process.pid, stop)
    else:
        process.send_signal(stop)
    stdout, stderr = process.communicate(timeout=60)
    assert time.monotonic() - began < 1.0
    assert "parsing completed" not in stdout, "the signal came after the parse: use a larger input"
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "kernel-magnifier: interrupted" and "Traceback" not in stderr, stderr
    time.sleep(0.3)
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)


def test_jobs_must_be_a_positive_number(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "visualize", "-j", "0", "-i", str(WHOLE[0])], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2 and "-j/--jobs" in result.stderr
