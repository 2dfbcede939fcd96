"""visualize reads trace-cmd's binary trace.dat (file versions 6 and 7) as trace-cmd report reads it.

The samples are a real `trace-cmd record -p function_graph` recording (trace-cmd
3.1.6, Debian 6.1 kernel under QEMU), cut to its first 120 pages per CPU by
`trace-cmd split -p 120 -c` (version 7, zstd, as trace-cmd writes by default)
and converted by `trace-cmd convert --file-version 6 --compression none`.
The expected values come from trace-cmd itself: its report text (run here when
trace-cmd is installed, else the bundled report of the same file) read by the
text parser and by a plain split of its lines.
"""

from __future__ import annotations

import json
import lzma
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DATA, ROOT, SCRIPT, assert_one_line_error, edges_by_pair, graph_json, load_module, run_cli, with_drops_hidden_by_leaves

SAMPLES = DATA / "trace-cmd"
VERSIONS = {"v7-zstd": "trace-v7-zstd.dat.xz", "v6": "trace-v6.dat.xz"}


def unpacked(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name.removesuffix(".xz")
    target.write_bytes(lzma.decompress((SAMPLES / name).read_bytes()))
    return target


def report_text(tmp_path: Path, trace: Path) -> Path:
    """trace-cmd report of the file, with exit names (fgraph:tailprint) as our decoder gives them."""
    report = tmp_path / "report.txt"
    if shutil.which("trace-cmd"):
        with report.open("w") as out:
            subprocess.run(["trace-cmd", "report", "-O", "fgraph:tailprint=1", "-i", str(trace)], stdout=out, check=True, timeout=120)
    else:
        report.write_bytes(lzma.decompress((SAMPLES / "report-tailprint.txt.xz").read_bytes()))
    return report


def times(graph: dict) -> dict[str, tuple[int, float, float]]:
    return {node["name"]: (node["calls"], node["total_time_us"], node["self_time_us"]) for node in graph["nodes"]}


@pytest.mark.parametrize("version", VERSIONS)
def test_trace_dat_gives_the_calls_edges_and_times_of_trace_cmd_report(tmp_path, version):
    trace = unpacked(tmp_path, VERSIONS[version])
    from_text = graph_json(tmp_path, report_text(tmp_path, trace))
    from_binary = graph_json(tmp_path, trace)
    assert edges_by_pair(from_binary) == edges_by_pair(from_text)
    text_times, binary_times = times(from_text), times(from_binary)
    assert text_times.keys() == binary_times.keys()
    still_open = {node["name"]: node["open_calls"] for node in from_binary["nodes"]}
    for name, (calls, total, own) in text_times.items():
        assert binary_times[name][0] == calls, name
        # report prints durations to the ns; the decoder subtracts the ns stamps itself. A call still open at
        # the end runs from its entry's time to its task's last event's, which report prints to the us.
        near = 0.01 + 2 * still_open[name]
        assert binary_times[name][1] == pytest.approx(total, abs=near), name
        assert binary_times[name][2] == pytest.approx(own, abs=near), name
    for key in ("events", "orphan_exits", "calls_without_caller", "lost_events_per_cpu", "lost_unknown_count_lines"):
        assert from_binary["stats"][key] == from_text["stats"][key], key
    assert from_binary["stats"]["formats"] == ["function_graph", "trace.dat"]


def events_in_report(lines: list[str]) -> int:
    """Ring-buffer events in trace-cmd report text: a leaf line is an entry and its exit."""
    events = 0
    for line in lines:
        if " funcgraph_entry: " in line:
            events += 2 if line.rstrip().endswith(");") else 1
        elif " funcgraph_exit: " in line:
            events += 1
    return events


def test_events_and_lost_events_are_what_trace_cmd_prints(tmp_path):
    trace = unpacked(tmp_path, VERSIONS["v7-zstd"])
    lines = report_text(tmp_path, trace).read_text().split("\n")
    dropped_lines = 0
    dropped: dict[str, int] = {}
    unknown: dict[str, int] = {}
    for line in lines:
        if "EVENTS DROPPED]" in line:
            dropped_lines += 1
            cpu, count = re.match(r"CPU:(\d+) \[(\d*) ?EVENTS DROPPED\]", line).groups()
            if count:
                dropped[cpu] = dropped.get(cpu, 0) + int(count)
            else:
                unknown[cpu] = unknown.get(cpu, 0) + 1
    graph = graph_json(tmp_path, trace)
    assert graph["stats"]["events"] == events_in_report(lines) > 10_000
    assert dropped_lines > 10
    assert graph["stats"]["lost_events_per_cpu"] == dropped
    assert graph["stats"]["lost_unknown_count_lines"] == unknown


def test_version_7_inside_xz_and_version_6_of_one_recording_agree(tmp_path):
    v7 = graph_json(tmp_path, SAMPLES / VERSIONS["v7-zstd"])  # read through .xz, as a user may keep it
    v6 = graph_json(tmp_path, unpacked(tmp_path, VERSIONS["v6"]))
    assert edges_by_pair(v7) == edges_by_pair(v6)
    assert v7["stats"]["events"] == v6["stats"]["events"]
    assert v7["stats"]["metadata"]["trace.dat"] == "version 7, zstd"
    assert v6["stats"]["metadata"]["trace.dat"] == "version 6"


def test_v6_cut_in_its_pages_is_a_counted_partial_read(tmp_path):
    whole = unpacked(tmp_path, VERSIONS["v6"])
    complete = events_in_report(lzma.decompress((SAMPLES / "report-tailprint.txt.xz").read_bytes()).decode().split("\n"))
    cut = tmp_path / "cut.dat"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size - 300_000])
    result = run_cli("visualize", "-i", "cut.dat", "-o", "cut.json", "--chart", "", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "cut.dat is damaged or truncated: CPU1's data is cut at" in result.stderr
    partial = json.loads((tmp_path / "cut.json").read_text())
    assert 0 < partial["stats"]["events"] < complete


@pytest.mark.parametrize(("version", "keep"), [("v6", 4000), ("v6", 3_000_000), ("v7-zstd", 600_000), ("v7-zstd", 1_200_000)])
def test_trace_dat_cut_before_its_data_is_a_one_line_error(tmp_path, version, keep):
    whole = unpacked(tmp_path, VERSIONS[version]).read_bytes()
    (tmp_path / "cut.dat").write_bytes(whole[:keep])
    result = run_cli("visualize", "-i", "cut.dat", "-o", "out.json", "--chart", "", cwd=tmp_path)
    assert_one_line_error(result, "cut.dat is a truncated or damaged trace.dat")


def test_damaged_pages_never_crash(tmp_path):
    """Bytes overwritten in the page data: the decoder reads what it can, never an internal error."""
    whole = bytearray(unpacked(tmp_path, VERSIONS["v6"]).read_bytes())
    data_start = len(whole) - 2 * 120 * 4096
    for offset in range(data_start + 100, len(whole), 7919):
        whole[offset : offset + 16] = b"\xff" * 16
    (tmp_path / "damaged.dat").write_bytes(bytes(whole))
    result = run_cli("visualize", "-i", "damaged.dat", "-o", "out.json", "--chart", "", cwd=tmp_path)
    assert "Traceback" not in result.stderr
    assert result.returncode == 0 or result.stderr.startswith("kernel-magnifier: error: ")


def test_zstd_trace_dat_without_the_zstandard_package_is_a_one_line_error_mocked(tmp_path):
    """Mocked: a `zstandard` module that fails to import stands in for a machine without the package."""
    hidden = tmp_path / "no-zstandard"
    hidden.mkdir()
    (hidden / "zstandard.py").write_text("raise ImportError('mocked: no zstandard here')\n")
    trace = unpacked(tmp_path, VERSIONS["v7-zstd"])
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "visualize", "-i", str(trace), "-o", "out.json", "--chart", ""],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(hidden)},
    )
    assert_one_line_error(result, "is compressed with zstd: install the Python package 'zstandard'")


# -- the bulk feeding equals the model fed one event at a time ---------------------

TRACE_DATS = sorted(path for path in DATA.rglob("*.dat.xz") if not path.name.startswith("tc-events-"))  # (sched/tc-events: no calls)
# trace-cmd's samples lost events (their pages say so); raw-binary's pages and the retval recording lost none
# (tests/data/retval/record-output.txt: "lost by the kernel: 0")
LOSSY = {path.relative_to(DATA).as_posix() for path in TRACE_DATS if path.parent.name == "trace-cmd"}


def fed_per_event(km, parser, decoder, window, fed: int) -> int:
    """The straightforward feeding: one model call per decoded event, in merged order."""
    for kind, code, ctx, duration, stamp in zip(window.kind.tolist(), window.code.tolist(), window.ctx.tolist(), window.duration.tolist(), window.key.tolist()):
        context = km.trace_dat_context(ctx)
        if kind == km.EV_LOST:
            parser.line_no = fed
            parser.lost_line(context[0], code if code >= 0 else None)
            continue
        if kind in (km.EV_ENTRY, km.EV_EXIT):
            name, module = decoder.names[(code >> 16) & 0xFFFFFFFF]
            depth, err = code & 0xFFFF, code >> km.ERRNO_CODE_SHIFT  # an exit's returned errno, where the format has retval
            if kind == km.EV_ENTRY:
                parser.graph_event((km.ENTRY, depth, name, module), context, None)
                parser.tasks[context[1]].stack[-1].append(stamp)  # an open call's start, for the end of the trace
            else:
                returned = (km.EXIT, depth, name, None)
                parsed = (km.RETURNED_ERRNO, depth, returned, -err) if err else returned
                parser.graph_event(parsed, context, None if math.isnan(duration) else duration)
            parser.last_stamp[context[1]] = stamp
        elif kind == km.EV_FUNCTION:
            parser.function_call(km.trace_dat_call(decoder.names, code))
        fed += 1
    parser.flush_counts()
    return fed


def fed_model(km, path: Path, feed, copies: int = 1):
    """(graph, parser, events fed) after the file's merged windows went through `feed`, `copies` times over."""
    graph = km.CallGraph()
    parser = km.TraceParser(graph)
    with km.mapped_trace_dat(str(path)) as data:
        dat = km.TraceDat(str(path), data)
        decoder = km.EventDecoder(dat)
        fed = 0
        for _ in range(copies):
            for window in km.merge_by_time([km.cpu_event_batches(dat, decoder, cpu, []) for cpu in dat.cpus]):
                fed = feed(km, parser, decoder, window, fed)
    parser.finish()
    return graph, parser, fed


def model_state(km, path: Path, feed) -> dict:
    """Every list of the call tree (node by node, floats exact), the stats and the parser's event marks."""
    graph, parser, fed = fed_model(km, path, feed)
    tree = graph.tree
    return {
        "tree": (tree.function, tree.parent, tree.calls, tree.total_us, tree.self_us, tree.children),
        "stats": vars(graph.stats),
        "modules": graph.modules,
        "marks": (fed, parser.event_mark(), parser.entry_lines_done, parser.other_lines_done),
    }


def test_every_bundled_trace_dat_is_covered():
    assert {path.name for path in TRACE_DATS} >= set(VERSIONS.values())


def bundled_trace_dat(km, name: str, target: Path) -> Path:
    """A bundled trace.dat, or (raw-binary) the one record writes from the real pages of tests/data/raw-binary."""
    if name == "raw-binary":
        from test_tracedat_write import parts, spools

        with target.open("wb") as output:
            km.write_trace_dat(output, parts(km), spools())
    else:
        target.write_bytes(lzma.decompress((DATA / name).read_bytes()))
    return target


@pytest.mark.parametrize("pages", [1024, 3])
@pytest.mark.parametrize("name", [*(path.relative_to(DATA).as_posix() for path in TRACE_DATS), "raw-binary"])
def test_bulk_feeding_builds_the_model_of_one_call_per_event(km, tmp_path, monkeypatch, name, pages):
    """Leaves joined, the common events applied inline: the same call tree to the last bit, lost events included.

    With 3 pages per batch the windows are small, so that many entries and
    exits fall on either side of a window's end. The trace-cmd samples lost
    events (18 pages say so); the raw-binary pages lost none."""
    monkeypatch.setattr(km, "PAGES_PER_BATCH", pages)
    trace = bundled_trace_dat(km, name, tmp_path / "trace.dat")
    bulk = model_state(km, trace, lambda km, parser, decoder, window, fed: km.feed_trace_dat(parser, decoder, window, fed))
    one_by_one = model_state(km, trace, fed_per_event)
    assert bulk["stats"]["events"] > 1_000
    assert bool(bulk["stats"]["lost_by_cpu"]) == (name in LOSSY)
    assert bulk == one_by_one
    windows = model_state(km, trace, lambda km, parser, decoder, window, fed: km.feed_trace_dat_window(parser, decoder, window, fed))
    assert windows == one_by_one


@pytest.mark.parametrize("pages", [1024, 3])
@pytest.mark.parametrize("name", [*(path.relative_to(DATA).as_posix() for path in TRACE_DATS), "raw-binary"])
def test_stretches_fed_in_bulk_build_the_model_of_one_call_per_event(km, tmp_path, monkeypatch, name, pages):
    """Regular stretches as short as 8 events in bulk (numpy per depth level), the rest per event: the same model to the last bit.

    Short stretches put many stretch ends inside calls (their open calls go on
    as pseudo-entries) and many switches between the two ways; the lossy samples
    give calls without caller, orphan exits and broken stacks around them.
    hidden-drop's 10 ms began deep inside calls of its busy tasks, which then
    wait for their callers to the end: it goes per event nearly all the way."""
    monkeypatch.setattr(km, "PAGES_PER_BATCH", pages)
    monkeypatch.setattr(km, "BULK_MIN_EVENTS", 8)
    monkeypatch.setattr(km, "EXACT_EVENTS", 8)
    trace = bundled_trace_dat(km, name, tmp_path / "trace.dat")
    in_bulk = []
    feed_bulk = km.feed_bulk

    def counted(*args):
        done = feed_bulk(*args)
        in_bulk.append(done[0])
        return done

    monkeypatch.setattr(km, "feed_bulk", counted)
    bulk = model_state(km, trace, lambda km, parser, decoder, window, fed: km.feed_trace_dat_window(parser, decoder, window, fed))
    if "hidden-drop" not in name:
        assert sum(in_bulk) > bulk["marks"][0] / 3  # most of a lossless recording, a good part of a lossy one
    assert bulk == model_state(km, trace, fed_per_event)


# -- read in time windows by several processes (tests/test_windows.py has the rest) --------


def visualize_with(processes: str, trace: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "visualize", "-i", str(trace), "-o", str(out), "--chart", ""],
        capture_output=True, text=True, timeout=120, env={**os.environ, "KM_PARSE_PROCESSES": processes},
    )


@pytest.mark.parametrize("case", ["v7-zstd", "v6", "v6-cut", "raw-binary"])
def test_two_time_windows_give_the_same_output(km, tmp_path, case):
    """KM_PARSE_PROCESSES=2 makes even a small file be read in two time windows: the JSON and the messages are the sequential ones."""
    if case == "raw-binary":
        trace = bundled_trace_dat(km, case, tmp_path / "trace.dat")
    else:
        trace = unpacked(tmp_path, VERSIONS[case.removesuffix("-cut")])
    if case.endswith("-cut"):
        trace.write_bytes(trace.read_bytes()[:-300_000])
    alone, child = visualize_with("1", trace, tmp_path / "alone.json"), visualize_with("2", trace, tmp_path / "child.json")
    assert alone.returncode == child.returncode == 0, child.stderr
    assert child.stderr.replace("child.json", "alone.json") == alone.stderr
    assert (tmp_path / "child.json").read_bytes() == (tmp_path / "alone.json").read_bytes()
    if case.endswith("-cut"):
        assert "is damaged or truncated: CPU1's data is cut at" in child.stderr


def running(pid: int) -> bool:
    """Running (a zombie waiting for a reaper does not count)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_ends_the_second_window_within_a_second(tmp_path, stop):
    """A 1.1 M-event file (the sample's real pages written 40 times, as bench/ builds it): a signal mid-read ends both processes."""
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_tracedat import repeated_pages

    trace = tmp_path / "long.dat"
    trace.write_bytes(repeated_pages(lzma.decompress((SAMPLES / VERSIONS["v6"]).read_bytes()), 40))
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "visualize", "-i", str(trace), "-o", str(tmp_path / "out.json"), "--chart", ""],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "KM_PARSE_PROCESSES": "2"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a test runner in the background ignores SIGINT
    )
    deadline = time.monotonic() + 20
    while not children_of(process.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    workers = children_of(process.pid)
    assert workers, "no child process for the second window"
    time.sleep(0.3)
    assert process.poll() is None
    sent = time.monotonic()
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=10)
    assert time.monotonic() - sent < 1.0
    assert process.returncode != 0
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "kernel-magnifier: interrupted"
    deadline = time.monotonic() + 1
    while any(running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [pid for pid in workers if running(pid)] == []
    assert sorted(path.name for path in tmp_path.iterdir()) == ["long.dat"]


@pytest.mark.parametrize("name", [path.relative_to(DATA).as_posix() for path in TRACE_DATS])
def test_kallsyms_read_with_numpy_is_the_pattern_reading(km, tmp_path, name):
    """The stored /proc/kallsyms: the same addresses, order and symbols as the line-by-line pattern, also when one line has another shape."""
    trace = tmp_path / "trace.dat"
    trace.write_bytes(lzma.decompress((DATA / name).read_bytes()))
    with km.mapped_trace_dat(str(trace)) as data:
        kallsyms = km.TraceDat(str(trace), data).kallsyms
    odd = kallsyms.replace("\n", "\nffffffff T short_address\n", 1)  # a 32-bit line: the whole text goes through the pattern
    assert km.regular_kallsyms(kallsyms) is not None and km.regular_kallsyms(odd) is None
    for text in (kallsyms, odd):
        fast, pattern = km.KernelSymbols(text), km.KernelSymbols(text, vectorized=False)
        assert fast.addresses == pattern.addresses and len(fast.addresses) > 40_000  # Debian's 6.1: 90,000+; the small 7.3 of retval: 50,000+
        assert [fast.symbol(index) for index in range(len(fast.addresses))] == [pattern.symbol(index) for index in range(len(pattern.addresses))]
    assert km.KernelSymbols(odd).lookup(0xFFFFFFFF) == ("short_address", None)


# -- memory: the call tree grows with distinct call paths, not with the recording's length ---------------------------


def allocated_and_live_nodes(tree) -> tuple[int, int]:
    return len(tree.function), tree.live_nodes()


def test_lost_events_do_not_grow_the_call_tree_of_a_trace_dat(km, tmp_path):
    """trace-cmd's sample lost events on 18 pages: read 8 times over into one model, the same paths, no more nodes.

    After every loss the calls start detached subtrees until their callers are
    known; once merged, their nodes must be reused."""
    trace = unpacked(tmp_path, VERSIONS["v6"])
    sizes = []
    for copies in (1, 8):
        graph = fed_model(km, trace, lambda km, parser, decoder, window, fed: km.feed_trace_dat(parser, decoder, window, fed), copies)[0]
        assert graph.stats.calls_without_caller > 0
        sizes.append(allocated_and_live_nodes(graph.tree))
    (allocated_once, live_once), (allocated, live) = sizes
    assert live <= live_once * 1.02  # the same paths (a few more where a copy's start meets the last one's open calls)
    assert allocated <= allocated_once * 1.05, sizes


@pytest.mark.parametrize("name", ["6.1-graph-all-1", "7.3-graph-proc-1"])
def test_lost_events_do_not_grow_the_call_tree_of_a_text_trace(km, tmp_path, monkeypatch, name):
    """The text trace_pipe recordings of tests/data/lost-rule (tiny buffer, many LOST lines) given 8 times in one file."""
    monkeypatch.setenv("KM_PARSE_PROCESSES", "1")
    text = lzma.decompress((DATA / "lost-rule" / f"{name}.data.xz").read_bytes())
    assert text.count(b"[LOST ") > 3
    sizes = []
    for copies in (1, 8):
        trace = tmp_path / f"{copies}.data"
        trace.write_bytes(text * copies)
        graph = km.parse_traces([str(trace)])
        sizes.append(allocated_and_live_nodes(graph.tree))
    (allocated_once, live_once), (allocated, live) = sizes
    assert live <= live_once * 1.02
    assert allocated <= allocated_once * 1.05, sizes


# -- a loss that trace-cmd report's text does not show --------------------------------------------------------------


@pytest.mark.skipif(shutil.which("trace-cmd") is None, reason="needs trace-cmd (apt-get install trace-cmd)")
def test_a_loss_hidden_by_trace_cmds_leaf_look_ahead_breaks_the_call_stacks(tmp_path):
    """A lost page whose first record is the exit of the function entered just before it.

    trace-cmd report prints the two as one leaf line and never the page's
    EVENTS DROPPED line; the decoder reads the page's flag and ends the open
    calls there. With the drop put back from `report -R` the text parser agrees."""
    trace = unpacked(tmp_path, "hidden-drop-v6.dat.xz")
    report = report_text(tmp_path, trace)
    raw = subprocess.run(["trace-cmd", "report", "-R", "-i", str(trace)], capture_output=True, text=True, check=True, timeout=120).stdout
    assert raw.count("EVENTS DROPPED]") == report.read_text().count("EVENTS DROPPED]") + 1
    as_printed = graph_json(tmp_path, report)
    fixed_text, put_back = with_drops_hidden_by_leaves(report.read_text(), raw)
    assert put_back == 1
    report.write_text(fixed_text)
    with_the_drop = graph_json(tmp_path, report)
    from_binary = graph_json(tmp_path, trace)
    assert edges_by_pair(from_binary) == edges_by_pair(with_the_drop)
    assert edges_by_pair(from_binary) != edges_by_pair(as_printed)
    assert {n["name"]: n["calls"] for n in from_binary["nodes"]} == {n["name"]: n["calls"] for n in with_the_drop["nodes"]}
    for key in ("orphan_exits", "calls_without_caller"):
        assert from_binary["stats"][key] == with_the_drop["stats"][key] + (1 if key == "orphan_exits" else 0), key


# -- the page walk ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pages", [1024, 3])
def test_pages_of_data_events_only_walk_as_the_general_walk(km, tmp_path, monkeypatch, pages):
    """walk_data_events() (chunks of data events only, no time extends, padding or long events) gives the
    general walk's offsets, times and lost-event marks on every bundled trace.dat, in big and in 3-page chunks."""
    import numpy as np

    results = []
    walk_data_events = km.walk_data_events
    monkeypatch.setattr(km, "walk_data_events", lambda *args: results.append(walk_data_events(*args)) or results[-1])
    for name in [*(path.relative_to(DATA).as_posix() for path in TRACE_DATS), "raw-binary"]:
        trace = bundled_trace_dat(km, name, tmp_path / "trace.dat")
        monkeypatch.setattr(km, "PAGES_PER_BATCH", pages)
        with km.mapped_trace_dat(str(trace)) as data:
            dat = km.TraceDat(str(trace), data)
            for cpu in dat.cpus:
                for _, chunk in dat.cpu_units(cpu, []):
                    general = km.walk_pages(chunk, dat.page_size, dat.layout, dat.endian, regular_first=False)
                    fast = km.walk_pages(chunk, dat.page_size, dat.layout, dat.endian)
                    assert all(np.array_equal(mine, theirs) for mine, theirs in zip(fast, general))
    # The bundled recordings hold no time extend, padding or long event: every chunk goes the shorter way
    # (test_damaged_pages_never_crash sends damaged ones to the general walk).
    assert sum(len(result[0]) for result in results if result is not None) > 80_000


class SortingBadly:
    """numpy, but its default argsort returns an unsorted order: a mock of what QEMU's emulated CPU gave."""

    def __init__(self, np) -> None:
        self.real = np

    def __getattr__(self, name: str):
        return getattr(self.real, name)

    def argsort(self, values, kind=None):
        if kind is None:
            return self.real.arange(len(values))[::-1]
        return self.real.argsort(values, kind=kind)


def test_function_names_are_right_when_the_address_table_is_not_sorted_mocked(tmp_path):
    """name_codes() looked itself up again until the table matched: with an unsorted table, a RecursionError in the VM."""
    import numpy as np

    km = load_module()
    path = unpacked(tmp_path, "trace-v6.dat.xz")
    with km.mapped_trace_dat(str(path)) as data:
        dat = km.TraceDat(str(path), data)
        decoder = km.EventDecoder(dat)
        symbols = km.KernelSymbols(dat.kallsyms)
        addresses = np.array(symbols.addresses[1000:1040], dtype=np.uint64)
        expected = [symbols.lookup(int(address)) for address in addresses.tolist()]
        decoder.np = SortingBadly(np)
        for chunk in (addresses[:25], addresses, addresses[::-1]):
            codes = decoder.name_codes(chunk)
            assert [decoder.names[code] for code in codes.tolist()] == [symbols.lookup(int(address)) for address in chunk.tolist()]
        assert [decoder.names[code] for code in decoder.name_codes(addresses).tolist()] == expected
