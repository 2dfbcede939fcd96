"""The trace.dat that record writes, assembled from real ring-buffer pages, opens in trace-cmd and in visualize.

The pages are the first 128 of each CPU read from per_cpu/cpuN/trace_pipe_raw on
the real Debian 6.1 kernel under QEMU (tests/data/raw-binary: the tracefs format
files, printk formats, saved task names and kernel counters of the same run;
kallsyms cut to the functions the run's text shows). The recording itself, on a
live kernel, is tested in tests/vm. Here the file's layout is checked by the
tools that read it: trace-cmd report (its event count, task names, per-CPU
counters) and visualize (the same calls and edges as from trace-cmd's text).
"""

from __future__ import annotations

import lzma
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
from conftest import DATA, assert_one_line_error, edges_by_pair, graph_json, run_cli
from test_tracedat import events_in_report

RAW = DATA / "raw-binary"
TRACEFS = RAW / "tracefs"
needs_trace_cmd = pytest.mark.skipif(shutil.which("trace-cmd") is None, reason="trace-cmd is not installed (apt-get install trace-cmd)")
METADATA = [("kernel-magnifier-data", 1), ("tracer", "function_graph"), ("graph-function", ""), ("end", "complete")]


def spools() -> dict[int, SimpleNamespace]:
    """Each CPU's pages in a file, as record's spools hold them."""
    result = {}
    for cpu in (0, 1):
        pages = lzma.decompress((RAW / f"pages-cpu{cpu}.raw.xz").read_bytes())
        handle = tempfile.TemporaryFile()
        handle.write(pages)
        handle.flush()
        result[cpu] = SimpleNamespace(cpu=cpu, file=handle, size=len(pages))
    return result


def parts(km, cpu_count: int = 2):
    stats = {cpu: (RAW / f"stats-cpu{cpu}").read_text() for cpu in range(cpu_count)}
    options = [(km.TRACE_DAT_OPTIONS["CPUSTAT"], f"CPU: {cpu}\n{stats.get(cpu, '')}\0".encode()) for cpu in range(cpu_count)]
    options += [(km.TRACE_DAT_OPTIONS["TRACECLOCK"], (TRACEFS / "trace_clock").read_bytes() + b"\0"), km.km_metadata_option(METADATA)]
    header_page = (TRACEFS / "events" / "header_page").read_text()
    ftrace = sorted((TRACEFS / "events" / "ftrace").iterdir())
    return km.TraceDatParts(
        page_size=km.ring_page_size(header_page),
        header_page=header_page,
        header_event=(TRACEFS / "events" / "header_event").read_text(),
        ftrace_formats=[(event / "format").read_text() for event in ftrace],
        kallsyms=lzma.decompress((RAW / "kallsyms-used.xz").read_bytes()),
        printk_formats=(TRACEFS / "printk_formats").read_bytes(),
        cmdlines=km.task_names((TRACEFS / "saved_cmdlines").read_text()),
        cpu_count=cpu_count,
        options=options,
    )


@pytest.fixture
def written(km, tmp_path) -> Path:
    path = tmp_path / "kernel-magnifier.data"
    with path.open("wb") as output:
        km.write_trace_dat(output, parts(km), spools())
    return path


def page_events(pages: bytes) -> int:
    """Data events in raw ring-buffer pages, by the header_event rules (type_len 1-28 data, 0 data with a length word)."""
    events = 0
    for start in range(0, len(pages), 4096):
        commit = int.from_bytes(pages[start + 8 : start + 16], "little") & ((1 << 27) - 1)
        position, end = start + 16, start + 16 + commit
        while position < end:
            header = int.from_bytes(pages[position : position + 4], "little")
            type_len = header & 0x1F
            if type_len == 0:
                length = int.from_bytes(pages[position + 4 : position + 8], "little")
                events += 1
                position += 4 + length
            elif type_len <= 28:
                events += 1
                position += 4 + 4 * type_len
            elif type_len == 29:  # padding: the rest of the page, or a length word
                length = int.from_bytes(pages[position + 4 : position + 8], "little")
                position = end if length == 0 else position + 4 + length
            else:  # time extend, absolute time stamp
                position += 8
    return events


def test_pages_start_page_aligned_after_the_header(km, written):
    data = written.read_bytes()
    assert data.startswith(b"\x17\x08\x44tracing6\x00")
    layout = km.trace_dat_layout(parts(km), {cpu: spool.size for cpu, spool in spools().items()})
    for cpu, (offset, size) in enumerate(layout.cpu_data):
        assert offset % 4096 == 0
        assert data[offset : offset + size] == lzma.decompress((RAW / f"pages-cpu{cpu}.raw.xz").read_bytes())


@needs_trace_cmd
def test_trace_cmd_report_reads_every_event_with_task_names(written, tmp_path):
    report = subprocess.run(["trace-cmd", "report", "-i", str(written)], capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    assert "unknown option" not in report.stderr  # our metadata option is skipped quietly
    expected = sum(page_events(lzma.decompress((RAW / f"pages-cpu{cpu}.raw.xz").read_bytes())) for cpu in (0, 1))
    assert events_in_report(report.stdout.splitlines()) == expected
    saved = dict(line.split(" ", 1) for line in (TRACEFS / "saved_cmdlines").read_text().splitlines())
    tasks = set(re.findall(r"^\s*(\S+)-(\d+)\s+\[", report.stdout, re.M))
    named = {(comm, pid) for comm, pid in tasks if pid in saved}
    assert named and all(saved[pid] == comm for comm, pid in named)


@needs_trace_cmd
def test_trace_cmd_report_stat_shows_the_kernel_counters(written):
    stat = subprocess.run(["trace-cmd", "report", "--stat", "-i", str(written)], capture_output=True, text=True, timeout=60)
    assert stat.returncode == 0, stat.stderr
    for cpu in (0, 1):
        read_events = re.search(r"read events: (\d+)", (RAW / f"stats-cpu{cpu}").read_text()).group(1)
        assert re.search(rf"CPU: {cpu}\n(?:.*\n)*?read events: {read_events}", stat.stdout)


@needs_trace_cmd
def test_visualize_gives_what_trace_cmd_report_gives(written, tmp_path):
    report = tmp_path / "report.txt"
    with report.open("w") as out:
        subprocess.run(["trace-cmd", "report", "-O", "fgraph:tailprint=1", "-i", str(written)], stdout=out, check=True, timeout=120)
    from_text = graph_json(tmp_path, report)
    from_binary = graph_json(tmp_path, written)
    assert edges_by_pair(from_binary) == edges_by_pair(from_text)
    assert from_binary["stats"]["events"] == from_text["stats"]["events"]


def test_visualize_reads_records_metadata_from_the_file(written, tmp_path):
    graph = graph_json(tmp_path, written)
    metadata = graph["stats"]["metadata"]
    assert metadata["tracer"] == "function_graph"
    assert metadata["end"] == "complete"
    assert metadata["trace.dat"] == "version 6"


def test_task_names_take_the_kernels_saved_names_first(km):
    names = km.task_names("1 systemd\n294 dd\n")
    lines = dict(line.split(" ", 1) for line in names.splitlines())
    assert lines["1"] == "systemd" and lines["294"] == "dd"
    assert all(pid.isdigit() and comm for pid, comm in lines.items())


@needs_trace_cmd
def test_comm_selects_tasks_by_the_names_saved_in_the_file(written, tmp_path):
    report = subprocess.run(["trace-cmd", "report", "-i", str(written)], capture_output=True, text=True, timeout=120).stdout.splitlines()
    entries = [line for line in report if " funcgraph_entry: " in line]
    dd_calls = sum(1 for line in entries if re.match(r"\s*dd-\d+\s+\[", line))
    assert dd_calls
    graph = graph_json(tmp_path, written, extra=("--comm", "dd"))
    assert sum(node["calls"] for node in graph["nodes"]) == dd_calls


# --- version 7, compressed (record's default) ------------------------------------


def trace_cmd_compressions() -> set[str]:
    """What this trace-cmd can uncompress: `trace-cmd list -c` (Debian's 3.1.6 is built with zstd only, not zlib)."""
    listed = subprocess.run(["trace-cmd", "list", "-c"], capture_output=True, text=True, timeout=60).stdout
    return set(re.findall(r"^\s+(\w+),", listed, re.M))


def standard_zstd_or_stand_in(monkeypatch) -> None:
    """compression.zstd (Python 3.14+), or where this Python has none, a stand-in module over the zstandard package."""
    try:
        import compression.zstd  # noqa: F401
    except ImportError:
        zstandard = pytest.importorskip("zstandard")
        module = ModuleType("compression.zstd")
        module.zstd_version = ".".join(map(str, zstandard.ZSTD_VERSION))
        module.compress = zstandard.ZstdCompressor().compress
        module.decompress = zstandard.ZstdDecompressor().decompress
        module.ZstdError = zstandard.ZstdError
        package = ModuleType("compression")
        package.zstd = module
        monkeypatch.setitem(sys.modules, "compression", package)
        monkeypatch.setitem(sys.modules, "compression.zstd", module)


@pytest.fixture(params=["zlib", "zstd"])
def written_v7(request, km, tmp_path, monkeypatch) -> Path:
    """The same pages and metadata as `written`, as record writes them by default, with each compression record may choose."""
    if request.param == "zlib":
        monkeypatch.setitem(sys.modules, "compression.zstd", None)  # as on a Python without zstd: import fails
    else:
        standard_zstd_or_stand_in(monkeypatch)
    codec = km.trace_dat_codec()
    assert codec.name == request.param
    path = tmp_path / f"kernel-magnifier-{request.param}.data"
    with path.open("wb") as output:
        km.write_trace_dat_v7(output, parts(km), spools(), codec, km.Progress("compressing", 1))
    return path


def needs_trace_cmd_reading(path: Path) -> None:
    compression = path.stem.rsplit("-", 1)[1]
    if compression not in trace_cmd_compressions():
        pytest.skip(f"this trace-cmd cannot uncompress {compression} (trace-cmd list -c)")


def test_v7_is_compressed_with_trace_cmds_header(written_v7):
    data = written_v7.read_bytes()
    compression = written_v7.stem.rsplit("-", 1)[1]
    assert data.startswith(b"\x17\x08\x44tracing7\x00" + bytes([0, 8]) + (4096).to_bytes(4, "little") + compression.encode() + b"\x00")
    pages = sum(len(lzma.decompress((RAW / f"pages-cpu{cpu}.raw.xz").read_bytes())) for cpu in (0, 1))
    assert len(data) < pages / 2


@needs_trace_cmd
def test_trace_cmd_reports_v7_as_it_reports_v6_of_the_same_pages(written, written_v7):
    needs_trace_cmd_reading(written_v7)
    reports = [subprocess.run(["trace-cmd", "report", "-i", str(path)], capture_output=True, text=True, timeout=120) for path in (written, written_v7)]
    assert reports[1].returncode == 0, reports[1].stderr
    assert "unknown option" not in reports[1].stderr
    expected = sum(page_events(lzma.decompress((RAW / f"pages-cpu{cpu}.raw.xz").read_bytes())) for cpu in (0, 1))
    assert events_in_report(reports[1].stdout.splitlines()) == expected
    assert reports[1].stdout == reports[0].stdout


@needs_trace_cmd
def test_trace_cmd_reads_the_kernel_counters_of_v7(written_v7):
    needs_trace_cmd_reading(written_v7)
    stat = subprocess.run(["trace-cmd", "report", "--stat", "-i", str(written_v7)], capture_output=True, text=True, timeout=60)
    assert stat.returncode == 0, stat.stderr
    for cpu in (0, 1):
        read_events = re.search(r"read events: (\d+)", (RAW / f"stats-cpu{cpu}").read_text()).group(1)
        assert re.search(rf"CPU: {cpu}\n(?:.*\n)*?read events: {read_events}", stat.stdout)


def test_visualize_reads_v7_as_it_reads_v6(written, written_v7, tmp_path):
    from_v6, from_v7 = graph_json(tmp_path, written), graph_json(tmp_path, written_v7)
    compression = written_v7.stem.rsplit("-", 1)[1]
    assert (from_v6["stats"]["metadata"].pop("trace.dat"), from_v7["stats"]["metadata"].pop("trace.dat")) == ("version 6", f"version 7, {compression}")
    assert (from_v6["stats"].pop("inputs"), from_v7["stats"].pop("inputs")) == ([str(written)], [str(written_v7)])
    assert from_v7 == from_v6
    assert from_v7["stats"]["metadata"]["tracer"] == "function_graph" and from_v7["stats"]["metadata"]["end"] == "complete"


def test_v7_keeps_what_v6_holds_besides_the_pages(km, written_v7):
    """kallsyms, task names, CPU counters, clock and record's own metadata: each as the kernel's files gave it."""
    with km.mapped_trace_dat(str(written_v7)) as data:
        dat = km.TraceDat(str(written_v7), data)
    assert dat.kallsyms == lzma.decompress((RAW / "kallsyms-used.xz").read_bytes()).decode()
    saved = dict(line.split(" ", 1) for line in (TRACEFS / "saved_cmdlines").read_text().splitlines())
    assert saved.items() <= dat.comms.items()
    assert {cpu: text.rstrip("\n") for cpu, text in dat.cpu_stats.items()} == {
        str(cpu): f"CPU: {cpu}\n" + (RAW / f"stats-cpu{cpu}").read_text().rstrip("\n") for cpu in (0, 1)
    }
    assert dat.options["traceclock"] == re.search(r"\[(\w+)\]", (TRACEFS / "trace_clock").read_text()).group(1)
    assert dat.metadata == [(key, str(value)) for key, value in METADATA]


@pytest.mark.parametrize("share", [0.02, 0.3, 0.6, 0.9, 0.999])
def test_visualize_says_in_one_line_that_a_v7_is_cut(written_v7, tmp_path, share):
    data = written_v7.read_bytes()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(data[: int(len(data) * share)])
    result = run_cli("visualize", "-i", str(cut), "-o", str(tmp_path / "graph.json"), "--chart", "", cwd=tmp_path)
    assert_one_line_error(result, "is a truncated or damaged trace.dat")
    assert not (tmp_path / "graph.json").exists()


# --- record's writing of the pages, after tracefs is given back ---------------------


def write_as_record_does(km, output: Path, form: str, recording) -> None:
    args = SimpleNamespace(output=str(output), format=form)
    with km.StopSignals() as stop:
        km.write_data_file(args, recording, lambda tmp: km.write_recorded_trace_dat(tmp, args, recording, km.RecordedPages(parts(km), spools()), stop))


@pytest.mark.parametrize(("form", "version"), [("trace.dat", 7), ("trace.dat-v6", 6)])
def test_record_writes_v7_unless_v6_is_asked_for(km, tmp_path, capsys, form, version):
    output = tmp_path / "kernel-magnifier.data"
    recording = km.Recording()
    write_as_record_does(km, output, form, recording)
    assert output.read_bytes().startswith(b"\x17\x08\x44tracing" + f"{version}\0".encode())
    assert recording.size == output.stat().st_size
    km.report_recording(SimpleNamespace(output=str(output), format=form), recording)
    said = capsys.readouterr().out
    pages = sum(len(lzma.decompress((RAW / f"pages-cpu{cpu}.raw.xz").read_bytes())) for cpu in (0, 1))
    if version == 7:
        codec = km.trace_dat_codec().name
        assert f"Compressing {pages / 2**20:.2f} MiB of pages with {codec}" in said
        assert re.search(rf"Recorded filesize: [\d.]+ KiB \(trace.dat; version 7, {codec}, compressed in [\d.]+ s;", said)
    else:
        assert "Compressing" not in said and "(trace.dat; version 6;" in said
    assert sorted(path.name for path in tmp_path.iterdir()) == ["kernel-magnifier.data"]


def test_record_format_option_offers_v6_for_old_readers(km):
    parser = km.build_parser()
    assert parser.parse_args(["record"]).format == "trace.dat"
    assert parser.parse_args(["record", "--format", "trace.dat-v6"]).format == "trace.dat-v6"


def test_a_stop_signal_while_compressing_discards_the_recording_and_keeps_the_old_file(km, tmp_path, monkeypatch):
    output = tmp_path / "kernel-magnifier.data"
    output.write_text("the user's previous recording\n")
    codec = km.trace_dat_codec()
    calls = 0

    def compress_until_interrupted(data: bytes) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 20:  # the metadata sections are 6 blocks, the pages 2 x 13 chunks: this is among the pages
            os.kill(os.getpid(), signal.SIGINT)
        return codec.compress(data)

    monkeypatch.setattr(km, "trace_dat_codec", lambda: km.TraceDatCodec(codec.name, codec.version, compress_until_interrupted))
    with pytest.raises(km.RecordInterrupted, match="SIGINT while compressing: the recording was discarded"):
        write_as_record_does(km, output, "trace.dat", km.Recording())
    assert calls == 20
    assert sorted(path.name for path in tmp_path.iterdir()) == ["kernel-magnifier.data"]
    assert output.read_text() == "the user's previous recording\n"


# --- the formats of the trace events record enabled beside the calls (-e, the sched defaults) ---------------


def sched_formats() -> list[str]:
    """The 6.1 kernel's own format files of sched_switch, sched_wakeup, sched_wakeup_new, sched_waking (tests/data/sched)."""
    text = lzma.decompress((DATA / "sched" / "formats-6.1.txt.xz").read_bytes()).decode()
    return re.split(r"(?m)^(?=name: )", text)[1:]


@pytest.fixture(params=["v6", "v7-zstd"])
def written_with_events(request, km, tmp_path, monkeypatch) -> Path:
    """The same pages and metadata as `written`, with the scheduler events' formats stored as record stores them."""
    with_events = parts(km)
    with_events.event_formats = [("sched", sched_formats())]
    path = tmp_path / f"with-events-{request.param}.data"
    with path.open("wb") as output:
        if request.param == "v6":
            km.write_trace_dat(output, with_events, spools())
        else:
            standard_zstd_or_stand_in(monkeypatch)
            km.write_trace_dat_v7(output, with_events, spools(), km.trace_dat_codec(), km.Progress("compressing", 1))
    return path


@needs_trace_cmd
def test_trace_cmd_dumps_the_stored_event_formats_and_reads_the_pages_as_before(written, written_with_events):
    """trace-cmd dump --events: one system, each format as the kernel's file has it; report prints the pages as without them."""
    if written_with_events.stem.endswith("zstd"):
        needs_trace_cmd_reading(written_with_events)
    dumped = subprocess.run(["trace-cmd", "dump", "--events", "-i", str(written_with_events)], capture_output=True, text=True, timeout=120)
    assert dumped.returncode == 0, dumped.stderr
    assert "[Events format, 1 systems]" in dumped.stdout
    assert all(text in dumped.stdout for text in sched_formats())
    reports = [subprocess.run(["trace-cmd", "report", "-i", str(path)], capture_output=True, text=True, timeout=120).stdout for path in (written, written_with_events)]
    assert reports[1] == reports[0] and reports[0]


def test_visualize_reads_the_stored_event_formats(km, written_with_events):
    with km.mapped_trace_dat(str(written_with_events)) as data:
        dat = km.TraceDat(str(written_with_events), data)
    stored = {(event.system, event.name, event.event_id) for event in dat.formats.values() if event.system == "sched"}
    assert stored == {("sched", m.group(1), int(m.group(2))) for text in sched_formats() if (m := re.match(r"name: (\w+)\nID: (\d+)\n", text))}
