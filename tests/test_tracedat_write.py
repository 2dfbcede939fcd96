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
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import DATA, edges_by_pair, graph_json
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
