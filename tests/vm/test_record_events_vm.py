"""record -e EVENT and the scheduler events function_graph records by default, on a real kernel (make vm-test).

What a user checks: the events are in the file in every format (trace-cmd report
prints them from our trace.dat v6; our v7's stored formats and page events are
read here by a small independent reader, since Debian 12's trace-cmd cannot
uncompress zlib; the text has the kernel's own comment lines), `--no-sched`
leaves them out, `-e sched` takes a whole system, an unknown name is refused in
one line with the closest names, and tracefs (the events' enable files
included) is as it was found.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import pytest
from conftest import assert_one_line_error, read_lines
from test_record_vm import TRACEFS, expanded_ring_buffer, metadata, record, state_kept, trace_cmd_reads_zlib  # noqa: F401 (the fixtures of test_record_vm)

HERE = Path(__file__).resolve().parent
pytestmark = [
    pytest.mark.skipif(os.environ.get("KM_IN_VM") != "1", reason="needs the QEMU guest of `make vm-test` (a kernel that can trace)"),
    pytest.mark.usefixtures("state_kept"),  # every test: tracefs as it was found, the events' enable files included
]
DEFAULTS = ["sched:sched_switch", "sched:sched_waking", "sched:sched_wakeup", "sched:sched_wakeup_new"]
REPORT_EVENT = re.compile(r"^\s*(?P<comm>.+?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+[\d.]+: (?P<event>\w+):\s+(?P<body>.*)$")


@pytest.fixture
def echo():
    """A loopback TCP echo (tests/vm/tcp_echo.py): tasks that sleep in recv and are woken by the other side's send."""
    process = subprocess.Popen([sys.executable, str(HERE / "tcp_echo.py"), "1024"], start_new_session=True)
    yield process
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def kernel_events(system: str) -> list[str]:
    """The system's events as this kernel lists them (available_events), system:event."""
    return [line for line in (TRACEFS / "available_events").read_text().split() if line.startswith(f"{system}:")]


def tracefs_format(event: str) -> str:
    system, _, name = event.partition(":")
    return (TRACEFS / "events" / system / name / "format").read_text()


def event_id(event: str) -> int:
    return int(re.search(r"^ID: (\d+)", tracefs_format(event), re.M).group(1))


def report_event_counts(path: Path, *args: str) -> Counter[str]:
    """Events by name as trace-cmd report prints them."""
    report = subprocess.run(["trace-cmd", "report", *args, "-i", str(path)], capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stderr
    return Counter(match.group("event") for line in report.stdout.splitlines() if (match := REPORT_EVENT.match(line)))


# --- an independent reader of a version 7 file (man 5 trace-cmd.dat.v7), zlib only ----------------


def number(data: bytes, at: int, size: int) -> int:
    return int.from_bytes(data[at : at + size], "little")


def section_body(data: bytes, at: int) -> bytes:
    """A section after its 16-byte header (id, flags, description, size): a compressed block when flag 1 is set."""
    flags, size = number(data, at + 2, 2), number(data, at + 8, 8)
    body = data[at + 16 : at + 16 + size]
    return zlib.decompress(body[8 : 8 + number(body, 0, 4)]) if flags & 1 else body


def v7_options(data: bytes) -> list[tuple[int, bytes]]:
    """The options sections, followed from the header's offset through each DONE option's next offset."""
    assert data.startswith(b"\x17\x08\x44tracing7\0"), data[:12]
    names_end = data.index(b"\0", data.index(b"\0", 18) + 1) + 1  # after magic, version, endianness, long size, page size: the compression's name and version
    options, at = [], number(data, names_end, 8)
    while at:
        body, position, at = section_body(data, at), 0, 0
        while position < len(body):
            option, size = number(body, position, 2), number(body, position + 2, 4)
            value = body[position + 6 : position + 6 + size]
            position += 6 + size
            if option == 0:  # DONE: the next options section, or 0
                at = number(value, 0, 8)
                break
            options.append((option, value))
    return options


def v7_event_formats(path: Path) -> dict[str, list[str]]:
    """The EVENT_FORMATS section (option 18): per system, its events' format texts."""
    data = path.read_bytes()
    at = number(dict(v7_options(data))[18], 0, 8)
    body, systems = section_body(data, at), {}
    position = 4
    for _ in range(number(body, 0, 4)):
        end = body.index(b"\0", position)
        system, count, position = body[position:end].decode(), number(body, end + 1, 4), end + 5
        systems[system] = []
        for _ in range(count):
            size = number(body, position, 8)
            systems[system].append(body[position + 8 : position + 8 + size].decode())
            position += 8 + size
    return systems


def page_event_types(pages: bytes, page_size: int) -> Counter[int]:
    """Events by type id (their common_type, the first two bytes of the payload) in raw ring-buffer pages (header_event's rules)."""
    types: Counter[int] = Counter()
    for start in range(0, len(pages), page_size):
        commit = number(pages, start + 8, 8) & ((1 << 27) - 1)
        position, end = start + 16, start + 16 + commit
        while position < end:
            type_len = number(pages, position, 4) & 0x1F
            if type_len == 0:  # a length word, then the payload
                types[number(pages, position + 8, 2)] += 1
                position += 4 + number(pages, position + 4, 4)
            elif type_len <= 28:
                types[number(pages, position + 4, 2)] += 1
                position += 4 + 4 * type_len
            elif type_len == 29:  # padding: the rest of the page, or a length word
                length = number(pages, position + 4, 4)
                position = end if length == 0 else position + 4 + length
            else:  # time extend, absolute time stamp
                position += 8
    return types


def v7_event_types(path: Path) -> Counter[int]:
    """Every CPU's pages of the BUFFER option (3): chunks of compressed pages, walked event by event."""
    data = path.read_bytes()
    buffer = dict(v7_options(data))[3]
    position = buffer.index(b"\0", 8) + 1
    position = buffer.index(b"\0", position) + 1  # the buffer's name, then its clock
    page_size, cpus = number(buffer, position, 4), number(buffer, position + 4, 4)
    types: Counter[int] = Counter()
    for cpu in range(cpus):
        entry = position + 8 + cpu * 20
        offset, size = number(buffer, entry + 4, 8), number(buffer, entry + 12, 8)
        if not size:
            continue
        at = offset + 4
        for _ in range(number(data, offset, 4)):
            packed = number(data, at, 4)
            types += page_event_types(zlib.decompress(data[at + 8 : at + 8 + packed]), page_size)
            at += 8 + packed
    return types


# --- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["trace.dat-v6", "trace.dat", "text"])
def test_function_graph_records_the_scheduler_events_by_default(tmp_path, echo, form):
    result = record("-g", "tcp_sendmsg,tcp_recvmsg", "--record-time", "1", "--format", form, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = tmp_path / "kernel-magnifier.data"
    existing = [event for event in DEFAULTS if event in kernel_events("sched")]
    assert metadata(data)["events"] == " ".join(existing)
    assert f"Trace events beside the calls: {' '.join(existing)}" in result.stdout
    if form == "text":
        comments = Counter(m.group(1) for line in read_lines(data) if (m := re.search(r"/\* (sched_\w+): ", line)))
        assert comments["sched_switch"] and comments["sched_waking"], comments
        assert re.search(r"/\* sched_switch: prev_comm=python\S* prev_pid=\d+ .*prev_state=S ==> next_comm=", "\n".join(read_lines(data)))  # the echo asleep
        return
    if form == "trace.dat-v6" or trace_cmd_reads_zlib():
        counts = report_event_counts(data)
        assert counts["sched_switch"] and counts["sched_waking"] and counts["funcgraph_entry"], counts
        stored = subprocess.run(["trace-cmd", "report", "--events", "-i", str(data)], capture_output=True, text=True, timeout=120).stdout
        assert all(f"name: {event.split(':')[1]}\nID: {event_id(event)}\n" in stored for event in existing), stored[:2000]
    if form == "trace.dat":
        assert v7_event_formats(data) == {"sched": [tracefs_format(event) for event in existing]}
        types = v7_event_types(data)
        assert types[event_id("sched:sched_switch")] and types[event_id("sched:sched_waking")], types
        assert types[event_id("ftrace:funcgraph_entry")], types


def test_no_sched_leaves_them_out_and_records_an_event_someone_enabled(tmp_path, echo):
    """--no-sched: no scheduler events; an event someone else enabled at the top level (where function_graph runs on 6.1)
    is recorded with its format, named in the metadata, and left enabled."""
    (TRACEFS / "events" / "signal" / "signal_deliver" / "enable").write_text("1")
    try:
        result = record("-g", "tcp_sendmsg,tcp_recvmsg", "--record-time", "1", "--no-sched", "--format", "trace.dat-v6", cwd=tmp_path)
        assert (TRACEFS / "events" / "signal" / "signal_deliver" / "enable").read_text().strip() == "1"
    finally:
        (TRACEFS / "events" / "signal" / "signal_deliver" / "enable").write_text("0")
    assert result.returncode == 0, result.stderr
    data = tmp_path / "kernel-magnifier.data"
    assert metadata(data)["events"] == "signal:signal_deliver"
    counts = report_event_counts(data)
    assert counts["funcgraph_entry"] and not [name for name in counts if name.startswith("sched_")], counts
    stored = subprocess.run(["trace-cmd", "report", "--events", "-i", str(data)], capture_output=True, text=True, timeout=120).stdout
    assert f"name: signal_deliver\nID: {event_id('signal:signal_deliver')}\n" in stored and "name: sched_switch\n" not in stored


def test_e_sched_takes_the_whole_system_beside_the_function_tracer_in_its_instance(tmp_path, echo):
    """-e sched (and the same event again as sched:sched_switch): every sched event, enabled in record's private
    instance with the function tracer (which records no scheduler events by default)."""
    result = record("-p", "function", "-l", "tcp_*", "-e", "sched", "-e", "sched:sched_switch", "--record-time", "1", "--format", "trace.dat-v6", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = tmp_path / "kernel-magnifier.data"
    meta = metadata(data)
    assert "/instances/kernel-magnifier-" in meta["tracefs"]
    assert sorted(meta["events"].split()) == sorted(kernel_events("sched")) and len(meta["events"].split()) > len(DEFAULTS)
    counts = report_event_counts(data)
    assert counts["function"] and counts["sched_switch"] and counts["sched_waking"], counts
    assert {name for name in counts if name != "function"} <= {event.split(":")[1] for event in kernel_events("sched")}, counts


@pytest.mark.parametrize(
    ("spelling", "message"),
    [
        ("sched_swich", "-e sched_swich: this kernel has no such trace event or event system; closest: sched_switch"),
        ("schde", "-e schde: this kernel has no such trace event or event system; closest: sched"),
        ("sched:no_such_event_km", "-e sched:no_such_event_km: this kernel has no such trace event or event system"),
    ],
)
def test_an_unknown_event_is_refused_with_the_closest_names(tmp_path, spelling, message):
    result = record("--record-time", "1", "-e", "sched_switch", "-e", spelling, cwd=tmp_path)
    assert_one_line_error(result, message)
    assert not list(tmp_path.iterdir())
