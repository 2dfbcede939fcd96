"""Damaged or hostile input: one minimal reproducer per broken promise of issue 10.

Each test puts one bad line (or one bad byte, one damaged file, one odd output
path) into a real recording and runs the CLI as a user would: the run either
succeeds and counts what it did not understand, or stops with one line.
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import sys
import time

import pytest
from conftest import DATA, SCRIPT, assert_one_line_error, load_module, run_cli

GRAPH_TRACE = DATA / "fg-graphfunc" / "trace.txt.xz"
HEAD = lzma.open(GRAPH_TRACE, "rt").read().split("\n")[:200]  # real function_graph lines, all understood
SMALL_TRACE = DATA / "fg-overflow-pipe" / "trace.txt.xz"  # 3,275 lines: quick where the content does not matter
SYMBOL_MAP = DATA / "symbol-map-6.1.0-56-amd64.map.xz"


def strict_json(text: str) -> dict:
    """json.loads as JavaScript's JSON.parse: NaN and Infinity are errors."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the JSON")

    return json.loads(text, parse_constant=refuse)


def visualize_text(tmp_path, lines: list[str], name: str = "trace.txt") -> tuple[subprocess.CompletedProcess[str], dict | None]:
    """Write HEAD plus `lines` to a trace, run visualize -o graph.json; (result, JSON or None)."""
    (tmp_path / name).write_text("\n".join(HEAD[:100] + lines + HEAD[100:]) + "\n", encoding="utf-8", errors="surrogateescape")
    return visualize_file(tmp_path, name)


def visualize_file(tmp_path, name: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict | None]:
    out = tmp_path / "graph.json"
    result = run_cli("visualize", "-i", name, "-o", "graph.json", "--chart", "", *extra, cwd=tmp_path, timeout=60)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    graph = strict_json(out.read_text()) if result.returncode == 0 else None
    return result, graph


def test_the_real_head_alone_is_understood(tmp_path):
    result, graph = visualize_text(tmp_path, [])
    assert result.returncode == 0, result.stderr
    assert graph["stats"]["unparsed_lines"] == 0
    assert graph["stats"]["lost_events"] == 0


# -- 1. numbers longer than Python's int() digit cap ---------------------------

HUGE = "9" * 5000


@pytest.mark.parametrize(
    "line",
    [
        f"CPU:{HUGE} [LOST 5 EVENTS]",
        f"CPU:1 [LOST {HUGE} EVENTS]",
        f"CPU:1 [{HUGE} EVENTS DROPPED]",
        f" {HUGE})   2.453 us    |  _raw_spin_lock();",
        f"       trace-cmd-3380  [{HUGE}]   857.700865: funcgraph_entry:        2.812 us   |  irq_enter_rcu();",
    ],
    ids=["lost-cpu", "lost-count", "dropped-count", "graph-cpu", "trace-cmd-cpu"],
)
def test_huge_number_in_a_line_is_not_understood(tmp_path, line):
    result, graph = visualize_text(tmp_path, [line])
    assert result.returncode == 0, result.stderr
    assert graph["stats"]["unparsed_lines"] == 1
    assert graph["stats"]["lost_events"] == 0
    assert graph["stats"]["unparsed_example"] == line[:200]


@pytest.mark.parametrize(
    "line",
    [
        f"# entries-in-buffer/entries-written: 1/{HUGE}   #P:2",
        f"# cpu1-stats: entries=0 overrun={HUGE} dropped-events=0",
        f"# cpu{HUGE}-stats: overrun=7",
    ],
    ids=["entries-written", "stats-value", "stats-cpu"],
)
def test_huge_number_in_a_header_is_ignored(tmp_path, line):
    result, graph = visualize_text(tmp_path, [line])
    assert result.returncode == 0, result.stderr
    assert graph["stats"]["lost_events"] == 0
    assert graph["stats"]["kernel_stats"] in ({}, {"1": {"entries": 0, "dropped-events": 0}})


# -- 2, 3. durations that are not a time ---------------------------------------


@pytest.mark.parametrize("duration", ["8x.432", "nan", "inf", "-inf", "1e308", "1e9999", "-1.000", "NaN"])
def test_duration_that_is_not_a_time_is_not_understood(tmp_path, duration):
    line = f" 1) {'  ' + duration + ' us':<14}|  irq_enter_rcu();"
    result, graph = visualize_text(tmp_path, [line])
    assert result.returncode == 0, result.stderr
    assert graph["stats"]["unparsed_lines"] == 1
    assert duration in graph["stats"]["unparsed_example"]
    assert all(node["total_time_us"] is None or 0 <= node["total_time_us"] < 1e9 for node in graph["nodes"])


def test_trace_cmd_duration_that_is_not_a_time_is_not_understood(tmp_path):
    report = lzma.open(DATA / "trace-cmd" / "report-head.txt.xz", "rt").read().split("\n")[:100]
    bad = [
        "       trace-cmd-3380  [000]   857.700865: funcgraph_entry:        8x.432 us   |  irq_enter_rcu();",
        f"       trace-cmd-3380  [000]   857.700865: funcgraph_entry:        {HUGE} us   |  irq_enter_rcu();",
    ]
    (tmp_path / "report.txt").write_text("\n".join(report + bad) + "\n")
    result, graph = visualize_file(tmp_path, "report.txt")
    assert result.returncode == 0, result.stderr
    assert graph["stats"]["unparsed_lines"] == 2
    assert "8x.432" in graph["stats"]["unparsed_example"]


def test_json_writer_refuses_a_non_finite_number_in_one_line(tmp_path):
    """The last guard (allow_nan=False): unreachable from a trace, so the model is damaged by hand."""
    km = load_module()
    (tmp_path / "trace.txt").write_text("\n".join(HEAD) + "\n")
    graph = km.parse_traces([str(tmp_path / "trace.txt")])
    graph.total_us[next(iter(graph.total_us))] = float("nan")
    view = km.build_view(graph, km.ViewRequest())
    with pytest.raises(km.UserError, match=r"cannot write .*graph.json: Out of range float values"):
        km.write_json(view, str(tmp_path / "graph.json"), km.Heat.of_view(view, "calls", None), None)
    assert sorted(os.listdir(tmp_path)) == ["trace.txt"]


# -- 4. damaged compressed inputs and symbol maps ------------------------------


def gzipped_trace() -> bytes:
    return gzip.compress(lzma.decompress(SMALL_TRACE.read_bytes()), mtime=0)


def test_gzip_trace_with_a_bad_crc(tmp_path):
    data = bytearray(gzipped_trace())
    data[-8] ^= 0xFF  # the CRC32 in the trailer
    (tmp_path / "t.txt.gz").write_bytes(bytes(data))
    assert_one_line_error(run_cli("visualize", "-i", "t.txt.gz", cwd=tmp_path), "t.txt.gz: damaged or truncated gzip data (CRC check failed")


def test_gzip_trace_with_damaged_deflate_data(tmp_path):
    data = bytearray(gzipped_trace())
    for offset in range(1000, 1100):
        data[offset] ^= 0x55
    (tmp_path / "t.txt.gz").write_bytes(bytes(data))
    assert_one_line_error(run_cli("visualize", "-i", "t.txt.gz", cwd=tmp_path), "t.txt.gz: damaged or truncated gzip data (")


def test_truncated_gzip_trace(tmp_path):
    data = gzipped_trace()
    (tmp_path / "t.txt.gz").write_bytes(data[: len(data) // 2])
    assert_one_line_error(run_cli("visualize", "-i", "t.txt.gz", cwd=tmp_path), "t.txt.gz: damaged or truncated gzip data (Compressed file ended")


def test_compression_is_recognised_by_content_not_name(tmp_path):
    """xz data named .gz, gzip data named .txt: read by their magic bytes, as under their own names."""
    shutil.copy(SMALL_TRACE, tmp_path / "right.xz")
    shutil.copy(SMALL_TRACE, tmp_path / "xz-named.gz")
    (tmp_path / "gz-named.txt").write_bytes(gzipped_trace())
    stats = []
    for name in ("right.xz", "xz-named.gz", "gz-named.txt"):
        result, graph = visualize_file(tmp_path, name)
        assert result.returncode == 0, result.stderr
        stats.append((graph["stats"]["events"], graph["stats"]["lost_events"], graph["stats"]["unparsed_lines"]))
    assert stats[0][0] > 1_000
    assert stats == [stats[0]] * 3


def test_symbol_map_truncated_xz(tmp_path):
    (tmp_path / "cut.map.xz").write_bytes(SYMBOL_MAP.read_bytes()[:100_000])
    result = run_cli("visualize", "-i", str(SMALL_TRACE), "--symbol-map", "cut.map.xz", "-o", "g.json", "--chart", "", cwd=tmp_path)
    assert_one_line_error(result, "cannot read symbol map cut.map.xz: damaged or truncated xz data (Compressed file ended")


def test_symbol_map_damaged_gzip(tmp_path):
    data = bytearray(gzip.compress(lzma.decompress(SYMBOL_MAP.read_bytes()), mtime=0))
    data[-8] ^= 0xFF
    (tmp_path / "bad.map.gz").write_bytes(bytes(data))
    result = run_cli("visualize", "-i", str(SMALL_TRACE), "--symbol-map", "bad.map.gz", "-o", "g.json", "--chart", "", cwd=tmp_path)
    assert_one_line_error(result, "cannot read symbol map bad.map.gz: damaged or truncated gzip data (CRC check failed")


def test_symbol_map_xz_named_gz_is_read(tmp_path):
    shutil.copy(SYMBOL_MAP, tmp_path / "map.gz")
    result = run_cli("visualize", "-i", str(SMALL_TRACE), "--symbol-map", "map.gz", "-o", "g.json", "--chart", "", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "symbol map map.gz: " in result.stdout


# -- 5. every line costs linear time -------------------------------------------

ISSUE_LINES = {
    "header of spaces": "# k: " + " " * 40_000 + "x",
    "graph body of ') { /*'": " 1)               |  f(" + ") { /*" * 40_000,
    "switch line of 'a-1 => '": " 1) " + "a-1 => " * 40_000,
}
MORE_LINES = {
    "stats of letters": "# cpu0-stats: " + "a-" * 100_000,
    "columns of spaces": " " * 200_000 + "x |  f();",
    "function line of spaces": " " * 100_000 + "x" * 100_000,
    "function call of ') <-'": "  a-1 [000] 1.0: f(" + ") <-" * 50_000,
    "irq arrow then spaces": "==========>" + " " * 200_000 + "x",
    "exit comment of words": " 1)   1.000 us    |  } /* " + "a " * 100_000 + "x",
    "leaf with comments": " 1)   1.000 us    |  f(" + "); /*" * 40_000 + "x",
}


@pytest.mark.parametrize("line", list({**ISSUE_LINES, **MORE_LINES}.values()), ids=list({**ISSUE_LINES, **MORE_LINES}))
def test_a_long_hostile_line_costs_linear_time(line):
    """The parser itself (below the reader's 8 KiB line limit) on 200-280 KB lines: quadratic took 20-65 s."""
    km = load_module()
    parser = km.TraceParser(km.CallGraph())
    started = time.perf_counter()
    parser.feed_lines([line, *HEAD[:10]])
    assert time.perf_counter() - started < 1.0


def test_lines_longer_than_8_kib_are_not_understood_without_being_parsed(tmp_path):
    result, graph = visualize_text(tmp_path, list(ISSUE_LINES.values()))
    assert result.returncode == 0, result.stderr
    assert graph["stats"]["unparsed_lines"] == 3
    assert graph["stats"]["unparsed_example"] == "# k: " + " " * 195
    assert graph["stats"]["unparsed_example_where"] == "trace.txt:101"
    assert graph["stats"]["lines"] == len(HEAD) + 3


# -- 6. memory stays bounded ---------------------------------------------------


def test_caches_keep_no_long_keys():
    km = load_module()
    parser = km.TraceParser(km.CallGraph())
    junk = [f"  0)   0.123 us    |  {i:06d}{'z' * 2600}" for i in range(2000)]
    junk += [f"   bash-1  [000] d... 1.{i}: {'w' * 2600} {i}" for i in range(2000)]
    stamped = [f" {i}{'9' * 2600}.5 |   0)   0.123 us    |  f();" for i in range(2000)]  # understood: the stamp stays out of the key
    parser.feed_lines(junk + stamped)
    assert parser.stats.unparsed_lines == 4000
    assert parser.stats.events == 2 * len(stamped)
    for cache in (parser.body_cache, parser.context_cache, parser.function_cache, parser.head_cache, parser.call_nodes, parser.duration_cache):
        assert all(len(key) <= km.CACHE_KEY_LIMIT for key in cache)


def peak_rss_kib(*args: str, cwd) -> int:
    """Peak RSS of one CLI run, measured by a fresh parent so no other child counts."""
    probe = (
        "import resource, subprocess, sys;"
        "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    result = subprocess.run([sys.executable, "-c", probe, sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def test_one_line_of_64_mib_is_not_held_in_memory(tmp_path):
    with open(tmp_path / "trace.txt", "w") as handle:
        handle.write("\n".join(HEAD[:100]) + "\n")
        handle.write(("x" * 1023 + " ") * 65536 + "\n")
        handle.write("\n".join(HEAD[100:]) + "\n")
    rss = peak_rss_kib("visualize", "-i", "trace.txt", "-o", "graph.json", "--chart", "", cwd=tmp_path)
    (tmp_path / "plain.txt").write_text("\n".join(HEAD) + "\n")
    baseline = peak_rss_kib("visualize", "-i", "plain.txt", "-o", "plain.json", "--chart", "", cwd=tmp_path)
    # The reader skips a line longer than MAX_LINE_LENGTH a 4 MiB read at a time, and so does the search for
    # the seam of the two halves (the file is over 64 MiB, so it is split): measured 8-12 MB above the same
    # trace without the line; holding the line once would add 64 MiB. (The absolute peak sits on the import's
    # baseline, which varies.)
    assert rss - baseline < 24_000, (rss, baseline)
    graph = strict_json((tmp_path / "graph.json").read_text())
    assert graph["stats"]["unparsed_lines"] == 1
    assert graph["stats"]["unparsed_example_where"] == "trace.txt:101"


# -- 8. a full disk ------------------------------------------------------------


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs filled up (needs root and mount(2): skipped where that is refused)."""
    mount_point = tmp_path / "full"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        with open(mount_point / "filler", "wb", buffering=0) as filler:
            with pytest.raises(OSError):
                while True:
                    filler.write(b"\0" * 4096)
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.mark.parametrize("name", ["graph.json", "graph.dot", "graph.svg", "stacks.folded", "chart.png"])
def test_full_disk_is_one_line_naming_the_output(tmp_path, full_disk, name):
    target = full_disk / name
    args = ["-o", "graph.json", "--chart", str(target)] if name == "chart.png" else ["-o", str(target), "--chart", ""]
    result = run_cli("visualize", "-i", str(SMALL_TRACE), *args, cwd=tmp_path)
    assert_one_line_error(result, f"cannot write {target}: No space left on device")
    assert result.returncode == 1
    assert sorted(os.listdir(full_disk)) == ["filler"]


# -- 9. outputs never replace what is not theirs ---------------------------------


def test_device_as_output_is_refused(tmp_path):
    """--chart /dev/full once replaced the device node with a PNG; a node of its own keeps /dev safe from a regression."""
    try:
        os.mknod(tmp_path / "full", stat.S_IFCHR | 0o666, os.makedev(1, 7))
    except OSError as err:
        pytest.skip(f"cannot create a device node here: {err.strerror}")
    result = run_cli("visualize", "-i", str(SMALL_TRACE), "-o", "g.json", "--chart", "full", cwd=tmp_path)
    assert_one_line_error(result, "cannot write full: it is a character device, not a regular file")
    assert stat.S_ISCHR(os.stat(tmp_path / "full").st_mode)


def test_fifo_and_directory_as_output_are_refused(tmp_path):
    os.mkfifo(tmp_path / "pipe.json")
    (tmp_path / "dir.json").mkdir()
    result = run_cli("visualize", "-i", str(SMALL_TRACE), "-o", "pipe.json", "--chart", "", cwd=tmp_path)
    assert_one_line_error(result, "cannot write pipe.json: it is a FIFO, not a regular file")
    result = run_cli("visualize", "-i", str(SMALL_TRACE), "-o", "dir.json", "--chart", "", cwd=tmp_path)
    assert_one_line_error(result, "cannot write dir.json: it is a directory, not a regular file")


def test_symlink_output_is_written_through(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "graph.json").write_text("old")
    os.symlink("real/graph.json", tmp_path / "link.json")
    result = run_cli("visualize", "-i", str(SMALL_TRACE), "-o", "link.json", "--chart", "", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert os.readlink(tmp_path / "link.json") == "real/graph.json"
    assert strict_json((tmp_path / "real" / "graph.json").read_text())["stats"]["events"] > 1_000
    assert sorted(os.listdir(tmp_path / "real")) == ["graph.json"]


def test_output_that_is_an_input_is_refused(tmp_path):
    shutil.copy(SMALL_TRACE, tmp_path / "t.dot")
    before = (tmp_path / "t.dot").read_bytes()
    assert_one_line_error(run_cli("visualize", "-i", "t.dot", "-o", "t.dot", cwd=tmp_path), "cannot write t.dot: it is also the input t.dot")
    os.symlink("t.dot", tmp_path / "alias.json")
    result = run_cli("visualize", "-i", "t.dot", "-o", "alias.json", "--chart", "", cwd=tmp_path)
    assert_one_line_error(result, "cannot write alias.json: it is also the input t.dot")
    assert (tmp_path / "t.dot").read_bytes() == before


def test_symbol_map_as_output_is_refused(tmp_path):
    shutil.copy(SYMBOL_MAP, tmp_path / "map.png")
    result = run_cli("visualize", "-i", str(SMALL_TRACE), "--symbol-map", "map.png", "-o", "g.json", "--chart", "map.png", cwd=tmp_path)
    assert_one_line_error(result, "cannot write map.png: it is also the input map.png")


def test_graph_and_chart_on_the_same_file_are_refused(tmp_path):
    result = run_cli("visualize", "-i", str(SMALL_TRACE), "-o", "same.png", "--chart", "same.png", cwd=tmp_path)
    assert_one_line_error(result, "same.png and same.png are the same file")
    result = run_cli("visualize", "-i", str(SMALL_TRACE), "-o", "same.png", "--chart", "./same.png", cwd=tmp_path)
    assert_one_line_error(result, "same.png and ./same.png are the same file")
    assert not (tmp_path / "same.png").exists()


# -- 11. text judged consistently -------------------------------------------------


@pytest.mark.parametrize("where", [1, 2500])
def test_one_nul_byte_is_one_line_not_understood_wherever_it_is(tmp_path, where):
    """Once the first 64 KiB rejected the whole file for one NUL and a NUL after them went through."""
    lines = lzma.open(GRAPH_TRACE, "rt").read().split("\n")[:3000]
    assert len("\n".join(lines[:2500])) > 65536
    where = next(index for index in range(where, len(lines)) if "();" in lines[index])
    lines[where] = lines[where].replace("();", "(\0);")
    (tmp_path / "trace.txt").write_text("\n".join(lines) + "\n")
    result, graph = visualize_file(tmp_path, "trace.txt")
    assert result.returncode == 0, result.stderr
    assert graph["stats"]["unparsed_lines"] == 1
    assert graph["stats"]["unparsed_example_where"] == f"trace.txt:{where + 1}"
    assert "\0" in graph["stats"]["unparsed_example"]


def test_utf8_bom_is_accepted(tmp_path):
    (tmp_path / "trace.txt").write_bytes(b"\xef\xbb\xbf# tracer: function_graph\n" + "\n".join(HEAD).encode() + b"\n")
    result, graph = visualize_file(tmp_path, "trace.txt")
    assert result.returncode == 0, result.stderr
    assert graph["stats"]["unparsed_lines"] == 0
    assert graph["stats"]["metadata"]["tracer"] == "function_graph"


def test_mostly_control_bytes_is_still_binary(tmp_path):
    (tmp_path / "t.txt").write_bytes(("\n".join(HEAD) + "\n").encode()[:2000] + b"\x01\x02\x00" * 10)
    assert_one_line_error(run_cli("visualize", "-i", "t.txt", cwd=tmp_path), "binary data, not ftrace text")


# -- names and outputs outside visualize -------------------------------------------

CLONE_SUFFIX = re.compile(r"(?:\.(?:isra|constprop|part|cold|llvm|lto_priv|localalias)(?:\.[0-9a-f]+)*)+$")  # the former rule


@pytest.mark.parametrize(
    "name",
    ["foo", "foo.constprop.0.isra.0", "foo.0.isra.0", "foo..isra", "foo.cold", "foo.llvm.123abc", "foo.lto_priv.0",
     "foo.isra.x", "foo.isra.0.x", "a.b.part.1", ".isra", "foo.isra.0.cold.1.localalias", "foo.ISRA.0", "foo.part.0.0.0"],
)
def test_clone_suffix_is_stripped_as_before(name):
    assert load_module().base_function_name(name) == CLONE_SUFFIX.sub("", name)


def test_clone_suffix_of_a_hostile_name_costs_linear_time():
    km = load_module()
    started = time.perf_counter()
    assert km.base_function_name("f" + ".isra" * 100_000 + "x") == "f" + ".isra" * 100_000 + "x"
    assert km.base_function_name("f" + ".isra.0" * 100_000) == "f"
    assert time.perf_counter() - started < 1.0


def test_symbol_map_output_that_is_the_kernel_image_is_refused(tmp_path):
    (tmp_path / "vmlinux").write_bytes(b"\x7fELF not really")
    result = run_cli("generate-symbol-map", "-k", "vmlinux", "-o", "vmlinux", cwd=tmp_path)
    assert_one_line_error(result, "cannot write vmlinux: it is also the input vmlinux")
    assert (tmp_path / "vmlinux").read_bytes() == b"\x7fELF not really"
