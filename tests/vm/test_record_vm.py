"""record on a real Debian kernel: run inside the QEMU guest by `make vm-test` (tests/vm/run-in-vm.sh).

Every test checks what a user would: the data file, the report, what visualize
makes of it, and that the kernel's tracing state is exactly as it was found.
Outside the VM they are skipped: this machine's own kernel cannot trace.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import SCRIPT, assert_one_line_error, edges_by_pair, graph_json, read_lines
from test_tracedat_vm import report_stat_overruns

TRACEFS = Path("/sys/kernel/tracing")
# Functions of a context switch that run after the kernel flipped its pid filter to the incoming (traced) task; with
# the sched events recorded (function_graph's default), also the ring buffer waking its reader (irq_work) when the
# sched_switch event INTO the traced task is written: the pid probe runs before the event's probe at that tracepoint.
SWITCH_TAIL = {"switch_mm_irqs_off", "save_fpregs_to_fpstate", "enter_lazy_tlb", "load_new_mm_cr3", "switch_ldt", "__switch_to", "__switch_to_xtra",
               "arch_irq_work_raise", "irq_work_queue"}
DEPTH0_CALL = re.compile(r"\)\s+(\S+)-(\d+)\s+\|[^|]*\|  (\S+)\(\)")
ANY_ENTRY = re.compile(r"\)\s+(\S+)-(\d+)\s+\|[^|]*\|\s+(\S+)\(\) \{$")


def unexplained_foreign_calls(path: Path, traced: Callable[[str, int], bool]) -> list[str]:
    """Depth-0 calls of tasks outside the pid filter, other than the two things the 6.1 kernel shows anyway:
    the tail of a switch INTO a traced task (the kernel flips its pid filter at the sched_switch tracepoint, just
    before the switch), and a traced task's open entry printed a second time, under the next task's pid, right
    after a context-switch block (trace_pipe's text output; seen for x64_sys_call)."""
    recent_traced_entries: deque[str] = deque(maxlen=16)
    unexplained = []
    for line in read_lines(path):
        entry = ANY_ENTRY.search(line)
        if entry and traced(entry.group(1), int(entry.group(2))):
            recent_traced_entries.append(entry.group(3))
        call = DEPTH0_CALL.search(line)
        if not call or traced(call.group(1), int(call.group(2))):
            continue
        if call.group(3) not in SWITCH_TAIL and call.group(3) not in recent_traced_entries:
            unexplained.append(line)
    return unexplained
pytestmark = pytest.mark.skipif(os.environ.get("KM_IN_VM") != "1", reason="needs the QEMU guest of `make vm-test` (a kernel that can trace)")


def tracefs_state() -> dict[str, str]:
    """Everything record may touch, top level and instances: tracer, switches, buffer, clock, filters, pids, options, events
    (set_event lists every enabled event; the sched events' own enable and filter files and the systems' enable files besides)."""
    state = {}
    names = [
        "current_tracer", "tracing_on", "tracing_cpumask", "buffer_size_kb", "trace_clock", "set_ftrace_filter", "set_ftrace_notrace",
        "set_graph_function", "set_graph_notrace", "max_graph_depth", "set_ftrace_pid", "set_ftrace_notrace_pid", "set_event_pid",
        "set_event", "set_event_notrace_pid", "events/enable", "saved_cmdlines_size",
    ]
    for name in names:
        path = TRACEFS / name
        if path.exists():
            state[name] = path.read_text()
    for option in sorted((TRACEFS / "options").iterdir()):
        state[f"options/{option.name}"] = option.read_text()
    for system in sorted(path for path in (TRACEFS / "events").iterdir() if (path / "enable").exists()):
        state[f"events/{system.name}/enable"] = (system / "enable").read_text()
    for event in sorted(path for path in (TRACEFS / "events" / "sched").iterdir() if path.is_dir()):
        state[f"events/sched/{event.name}"] = (event / "enable").read_text() + (event / "filter").read_text()
    for cpu in sorted((TRACEFS / "per_cpu").iterdir()):
        state[f"per_cpu/{cpu.name}/buffer_size_kb"] = (cpu / "buffer_size_kb").read_text()
    state["instances"] = " ".join(sorted(os.listdir(TRACEFS / "instances")))
    return state


@pytest.fixture(scope="session", autouse=True)
def expanded_ring_buffer():
    """A fresh kernel reports "7 (expanded: 1408)": its ring buffer is allocated small and expanded by the first tracer
    use, for good (writing 7 back would mean 7 KiB). Expand it once here, so that the state checks compare like with like."""
    size = (TRACEFS / "buffer_size_kb").read_text()
    expanded = re.match(r"\d+ \(expanded: (\d+)\)", size)
    if expanded:
        (TRACEFS / "buffer_size_kb").write_text(expanded.group(1))


@pytest.fixture
def state_kept():
    """Fails the test unless every tracefs setting is the same after it as before it."""
    before = tracefs_state()
    yield
    after = tracefs_state()
    changed = {key: (before.get(key), after.get(key)) for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    assert not changed, f"tracefs settings changed: {changed}"


@pytest.fixture
def workload():
    """Real work on both CPUs: dd reading a file in a loop (read -> ksys_read -> vfs_read)."""
    loops = [
        subprocess.Popen(
            ["taskset", "-c", str(cpu), "sh", "-c", "while :; do dd if=/etc/os-release of=/dev/null status=none; done"], start_new_session=True
        )
        for cpu in (0, 1)
    ]
    yield
    for loop in loops:
        os.killpg(loop.pid, signal.SIGKILL)
        loop.wait()


def start_record(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(SCRIPT), "record", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def record(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run record; the result also carries the recorder's pid, to look for it in the trace."""
    with start_record(*args, cwd=cwd, env=env) as process:
        out, err = process.communicate(timeout=timeout)
    result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    result.pid = process.pid  # type: ignore[attr-defined]
    return result


def trace_cmd_reads_zlib() -> bool:
    """Debian 12's trace-cmd 3.1.6 is built with zstd only and cannot open record's default trace.dat (version 7, zlib);
    Debian 13's 3.3 reads it. `trace-cmd list -c` names what the installed one reads."""
    if shutil.which("trace-cmd") is None:
        return False
    listed = subprocess.run(["trace-cmd", "list", "-c"], capture_output=True, text=True, timeout=60)
    return "zlib" in listed.stdout


# What the tests that check our file with trace-cmd report record: the default (version 7, zlib) where this
# trace-cmd reads it, else version 6 (test_default_trace_dat_is_compressed_and_reads_whole checks the default then)
FOR_TRACE_CMD = () if trace_cmd_reads_zlib() else ("--format", "trace.dat-v6")


def is_trace_dat(path: Path) -> bool:
    """trace-cmd's magic and file version: 7 (compressed, record's default) or 6 (--format trace.dat-v6)."""
    with path.open("rb") as handle:
        return handle.read(12) in (b"\x17\x08\x44tracing7\0", b"\x17\x08\x44tracing6\0")


def metadata(path: Path) -> dict[str, str]:
    """The data file's "key: value" header and footer: `#` lines of a text recording, record's option in a trace.dat."""
    if is_trace_dat(path):
        option = re.search(rb"kernel-magnifier-data: [^\0]*", path.read_bytes())
        assert option, "no kernel-magnifier metadata in the trace.dat"
        return dict(line.split(": ", 1) for line in option.group(0).decode().splitlines())
    found = {}
    for line in read_lines(path):
        match = re.match(r"# ([a-z0-9-]+): ?(.*)$", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def graph_lines(path: Path) -> list[str]:
    return [line for line in read_lines(path) if re.match(r"^ *\d+\) ", line)]


@dataclass
class Event:
    """One function_graph or function event as `trace-cmd report` prints it."""

    comm: str
    pid: int
    cpu: int
    kind: str  # entry, leaf (an entry and its exit on one line), exit, function
    depth: int
    name: str
    parent: str = ""  # the function tracer's caller


REPORT_EVENT = re.compile(
    r"^\s*(?P<comm>.+?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+[\d.]+: (?P<event>funcgraph_entry|funcgraph_exit|function):\s+(?P<body>.*)$"
)


def report_events(path: Path) -> list[Event]:
    """The events of a trace.dat read by trace-cmd report: an independent reader of the file."""
    if shutil.which("trace-cmd") is None:
        pytest.skip("needs trace-cmd (apt-get install trace-cmd on the host)")
    # function events with their caller and without the plugin's guessed indent: "vfs_read <-- ksys_read"
    report = subprocess.run(["trace-cmd", "report", "-O", "ftrace:parent=1", "-O", "ftrace:indent=0", "-i", str(path)],
                            capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stderr
    events = []
    for line in report.stdout.splitlines():
        match = REPORT_EVENT.match(line)
        if not match:
            continue
        comm, pid, cpu, body = match.group("comm").strip(), int(match.group("pid")), int(match.group("cpu")), match.group("body")
        if match.group("event") == "function":
            name, _, parent = body.partition(" <-- ")
            events.append(Event(comm, pid, cpu, "function", 0, name.strip(), parent.strip()))
            continue
        graph = re.search(r"\|(  +)(.*)$", body)
        assert graph, line
        depth, call = (len(graph.group(1)) - 2) // 2, graph.group(2).strip()
        kind = "exit" if call.startswith("}") else "leaf" if call.endswith(");") else "entry"
        events.append(Event(comm, pid, cpu, kind, depth, call.split("(")[0] if kind != "exit" else ""))
    return events


def report_sched_events(path: Path) -> Counter[str]:
    """The scheduler events of a trace.dat by name, as trace-cmd report prints them (function_graph records them by default)."""
    report = subprocess.run(["trace-cmd", "report", "-i", str(path)], capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stderr
    return Counter(re.findall(r"^\s*.+?-\d+\s+\[\d+\]\s+[\d.]+: (sched_\w+):", report.stdout, re.M))


def footer_lost(meta: dict[str, str]) -> dict[str, int]:
    lost = {}
    for key, value in meta.items():
        match = re.fullmatch(r"cpu(\d+)-stats", key)
        if match:
            counters = dict(re.findall(r"([a-z-]+)=(\d+)", value))
            lost[match.group(1)] = int(counters["overrun"]) + int(counters["dropped-events"])
    return lost


def test_function_graph_on_cpu0_below_ksys_read(tmp_path, state_kept, workload):
    data = tmp_path / "kernel-magnifier.data"
    data.write_text("the user's previous recording\n")
    env = {**os.environ, "SUDO_UID": "1234", "SUDO_GID": "2345"}
    result = record("--record-time", "2", "--cpumask", "1", "--graph-function", "ksys_read", "-O", "funcgraph-proc", *FOR_TRACE_CMD, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "Record mode - now starting recording traces for 2.0 seconds" in result.stdout
    assert "Limit recording to CPU mask 1 (CPUs 0)" in result.stdout
    assert "Wrote data to kernel-magnifier.data (the previous one is now kernel-magnifier.data.old)" in result.stdout
    assert re.search(r"Recorded filesize: [\d.]+ (KiB|MiB)", result.stdout)
    assert (tmp_path / "kernel-magnifier.data.old").read_text() == "the user's previous recording\n"
    assert (data.stat().st_uid, data.stat().st_gid) == (1234, 2345)
    meta = metadata(data)
    assert meta["tracer"] == "function_graph" and meta["cpumask"] == "1" and meta["graph-function"] == "ksys_read"
    assert meta["options"] == "funcgraph-proc" and meta["self-excluded"] == "yes" and meta["end"] == "complete"
    assert 1.9 <= float(meta["duration-s"]) <= 2.5, meta["duration-s"]  # the timer is exact: no blocking read overran it
    assert is_trace_dat(data) and "(trace.dat;" in result.stdout
    events = report_events(data)
    assert len(events) > 50
    assert {event.cpu for event in events} == {0}, "an event from a CPU outside --cpumask"
    assert "ksys_read" in {event.name for event in events if event.depth == 0 and event.kind == "entry"}
    assert not [event for event in events if event.pid == result.pid], "the recorder traced its own reads"
    assert "dd" in {event.comm for event in events}  # task names: the kernel's saved names, stored in the file
    graph = graph_json(tmp_path, data)
    edges = edges_by_pair(graph)
    assert edges.get(("ksys_read", "vfs_read"), 0) > 0
    assert graph["stats"]["metadata"]["tracer"] == "function_graph"


def test_trace_cmd_and_perf_spellings_end_to_end(tmp_path, state_kept, workload):
    """What a trace-cmd/perf user types: -p tracer, -g function, -C CPU list, -b KB, --max-graph-depth, -O option."""
    result = record(
        "-p", "function_graph", "-g", "ksys_read", "-C", "1", "-b", "2048", "--max-graph-depth", "4", "-O", "funcgraph-proc",
        "--record-time", "2", *FOR_TRACE_CMD, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "Limit recording to CPU mask 2 (CPUs 1)" in result.stdout
    data = tmp_path / "kernel-magnifier.data"
    meta = metadata(data)
    assert (meta["tracer"], meta["graph-function"], meta["cpumask"]) == ("function_graph", "ksys_read", "2")
    assert 2048 <= int(meta["buffer-size-kb"]) <= 2048 + 16  # what the kernel reports: whole pages of 4080 data bytes
    assert (meta["max-depth"], meta["options"], meta["end"]) == ("4", "funcgraph-proc", "complete")
    events = report_events(data)
    assert len(events) > 50
    assert {event.cpu for event in events} == {1}, "an event from a CPU outside -C 1"
    assert max(event.depth for event in events) == 3  # --max-graph-depth 4: depths 0-3
    assert edges_by_pair(graph_json(tmp_path, data)).get(("ksys_read", "vfs_read"), 0) > 0


def test_function_tracer_with_trace_cmd_spellings(tmp_path, state_kept, workload):
    result = record("-p", "function", "-l", "vfs_*", "-n", "vfs_write", "-a", "-b", "512", "--record-time", "1", *FOR_TRACE_CMD, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = tmp_path / "kernel-magnifier.data"
    meta = metadata(data)
    assert (meta["tracer"], meta["filter"], meta["notrace"]) == ("function", "vfs_*", "vfs_write")
    assert 512 <= int(meta["buffer-size-kb"]) <= 512 + 16
    events = report_events(data)
    calls = [event.name for event in events if event.kind == "function"]
    assert calls and all(name.startswith("vfs_") for name in calls) and "vfs_write" not in calls
    assert {event.cpu for event in events} == {0, 1}  # -a: every CPU


def test_command_is_recorded_with_its_children_until_it_ends(tmp_path, state_kept, workload):
    result = record("--format", "text", "-O", "funcgraph-proc", "--max-depth", "3", "--", "sh", "-c", "cat /etc/hostname; ls / > /dev/null", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Record mode - now recording while sh -c" in result.stdout
    assert "Command exited with status 0" in result.stdout
    data = tmp_path / "kernel-magnifier.data"
    meta = metadata(data)
    assert meta["stopped-by"] == "command ended" and meta["command"].startswith("sh -c")
    by_comm: dict[str, set[str]] = {}
    for line in graph_lines(data):
        match = re.search(r"\)\s+(\S+)-\d+\s+\|.*\|  (\S+)\(\)", line)
        if match:
            by_comm.setdefault(match.group(1), set()).add(match.group(2))
    assert by_comm, "no funcgraph-proc column"
    assert {"sh", "cat", "ls"} <= set(by_comm), set(by_comm)  # children of the command are followed (function-fork)
    # Not the dd workload, idle or kthreads (beyond what the kernel shows anyway); the forked child is python's until it execs.
    assert unexplained_foreign_calls(data, lambda comm, _pid: comm in ("sh", "cat", "ls") or comm.startswith("python")) == []
    calls = {line: m for line in graph_lines(data) if (m := re.search(r".*\|  ( *)([^ |].*)$", line)) and not m.group(2).startswith("/*")}  # not events
    depths = {line: len(m.group(1)) // 2 for line, m in calls.items()}
    assert max(depths.values()) <= 2, [line for line, depth in depths.items() if depth > 2][:8]  # --max-depth 3: depths 0, 1, 2


@pytest.mark.parametrize("tracer", ["function_graph", "function"])
def test_trace_dat_reads_the_same_in_trace_cmd_and_in_visualize(tmp_path, state_kept, workload, tracer):
    """Our trace.dat, read by trace-cmd report and by visualize's decoder: the same events, calls and edges."""
    narrow = ("-g", "ksys_read") if tracer == "function_graph" else ("-l", "vfs_*,ksys_*")
    result = record("-p", tracer, *narrow, "--record-time", "1", *FOR_TRACE_CMD, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = tmp_path / "kernel-magnifier.data"
    events = report_events(data)
    graph = graph_json(tmp_path, data)
    calls = sum(2 if event.kind == "leaf" else 1 for event in events)
    assert graph["stats"]["events"] == calls + sum(report_sched_events(data).values()) and calls > 100  # function_graph's default sched events too
    if tracer == "function":
        assert edges_by_pair(graph) == dict(Counter((event.parent, event.name) for event in events))
        return
    report = tmp_path / "report.txt"
    with report.open("w") as out:
        subprocess.run(["trace-cmd", "report", "-O", "fgraph:tailprint=1", "-i", str(data)], stdout=out, check=True, timeout=600)
    from_text = graph_json(tmp_path, report)
    assert edges_by_pair(graph) == edges_by_pair(from_text)
    assert {n["name"]: n["calls"] for n in graph["nodes"]} == {n["name"]: n["calls"] for n in from_text["nodes"]}


def test_default_trace_dat_is_compressed_and_reads_whole(tmp_path, state_kept, workload):
    """record's default file: version 7, its pages compressed with zlib, and visualize decodes every event the kernel counted as read."""
    result = record("-g", "ksys_read", "--record-time", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = tmp_path / "kernel-magnifier.data"
    with data.open("rb") as handle:
        head = handle.read(64)
    assert head.startswith(b"\x17\x08\x44tracing7\0") and b"zlib\0" in head, head
    read = re.search(r"Events read: ([\d,]+);", result.stdout)
    assert read, result.stdout
    graph = graph_json(tmp_path, data)
    assert graph["stats"]["events"] == int(read.group(1).replace(",", "")) > 100
    assert edges_by_pair(graph).get(("ksys_read", "vfs_read"), 0) > 0
    print(f"trace-cmd {'reads' if trace_cmd_reads_zlib() else 'does not read'} zlib: the trace-cmd comparisons recorded {' '.join(FOR_TRACE_CMD) or 'the default'}")


@pytest.mark.parametrize("form", ["trace.dat", "text"])
def test_tiny_buffer_loses_events_and_says_so(tmp_path, state_kept, workload, form):
    formats = FOR_TRACE_CMD if form == "trace.dat" else ("--format", form)
    result = record(*formats, "--record-time", "1", "--buffer-size", "8", "--notrace", "rcu_*", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = tmp_path / "kernel-magnifier.data"
    lost = report_stat_overruns(data) if form == "trace.dat" else footer_lost(metadata(data))
    assert set(lost) == {"0", "1"} and sum(lost.values()) > 0
    match = re.search(r"lost by the kernel: ([\d,]+) \([\d.]+%\) \[cpu0 ([\d,]+), cpu1 ([\d,]+)\]", result.stdout)
    assert match, result.stdout
    assert int(match.group(1).replace(",", "")) == sum(lost.values())
    assert int(match.group(2).replace(",", "")) == lost["0"] and int(match.group(3).replace(",", "")) == lost["1"]
    assert "Hint: to lose less" in result.stdout
    graph = graph_json(tmp_path, data)
    assert graph["stats"]["lost_events_per_cpu"] == {cpu: n for cpu, n in lost.items() if n}
    assert graph["nodes"] and not [node["name"] for node in graph["nodes"] if node["name"].startswith("rcu_")]  # --notrace 'rcu_*'


def test_one_running_process_until_it_exits(tmp_path, state_kept, workload):
    stop = tmp_path / "stop"
    target = subprocess.Popen(["sh", "-c", f"while [ ! -e {stop} ]; do cat /etc/hostname > /dev/null; done"])
    process = start_record("--format", "text", "--pid", str(target.pid), "--record-time", "120", "-O", "funcgraph-proc", "--max-depth", "2", cwd=tmp_path)
    try:
        assert "now starting recording" in process.stdout.readline()
        time.sleep(1.5)
    finally:
        stop.touch()
        target.wait()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    meta = metadata(tmp_path / "kernel-magnifier.data")
    assert meta["pid"] == str(target.pid) and meta["stopped-by"] == "process ended"
    pids = {int(m.group(1)) for line in graph_lines(tmp_path / "kernel-magnifier.data") if (m := re.search(r"\)\s+\S+-(\d+)\s+\|  ", line))}
    assert target.pid in pids
    assert unexplained_foreign_calls(tmp_path / "kernel-magnifier.data", lambda _comm, pid: pid == target.pid) == []


def test_function_tracer_in_its_own_instance_compressed(tmp_path, state_kept, workload):
    result = record("--format", "text", "--tracer", "function", "--filter", "vfs_*", "--record-time", "1", "-o", "vfs.data.xz", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = tmp_path / "vfs.data.xz"
    meta = metadata(data)
    assert meta["tracer"] == "function" and "/instances/kernel-magnifier-" in meta["tracefs"]  # the global buffer was left alone
    calls = [line for line in read_lines(data) if re.search(r": \S+ <-", line)]
    assert calls and all(re.search(r": vfs_\w+ <-", line) for line in calls)
    graph = graph_json(tmp_path, data)
    callees = {edge["callee"] for edge in graph["edges"]}
    assert callees and all(name.startswith("vfs_") for name in callees)  # callers (the <- parent) may be anything


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_stop_signal_mid_run_keeps_the_data(tmp_path, state_kept, workload, stop):
    process = start_record("--record-time", "120", "--graph-function", "ksys_read", cwd=tmp_path)
    assert "now starting recording" in process.stdout.readline()
    time.sleep(1.5)
    process.send_signal(stop)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert f"Stopped by {stop.name} after" in out
    meta = metadata(tmp_path / "kernel-magnifier.data")
    assert meta["stopped-by"] == stop.name and meta["end"] == "complete"
    assert float(meta["duration-s"]) < 30


def test_signal_during_setup_gives_everything_back(tmp_path, state_kept):
    process = start_record("--graph-function", "ksys_read", cwd=tmp_path)
    deadline = time.monotonic() + 60
    while (TRACEFS / "tracing_on").read_text().strip() != "0" and time.monotonic() < deadline:
        time.sleep(0.05)  # set-up has begun: tracing off is its first step; switching the tracer then takes seconds here
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, (out, err)
    assert "SIGINT during set-up: nothing recorded, tracing state given back" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--filter", "no_such_function_km"], "--filter 'no_such_function_km': the kernel refused it"),
        (["--graph-function", "ksys_read,no_such_function_km"], "--graph-function 'no_such_function_km': the kernel refused it"),
        (["--cpumask", "4"], "--cpumask 4: CPU 2 does not exist (online CPUs: 0-1)"),
        (["-C", "0,5"], "--cpu 0,5: CPU 5 does not exist (online CPUs: 0-1)"),
        (["-M", "4"], "--cpumask 4: CPU 2 does not exist (online CPUs: 0-1)"),
        (["-g", "no_such_function_km"], "--graph-function 'no_such_function_km': the kernel refused it"),
        (["--pid", "999999"], "--pid 999999: no such process"),
        (["-O", "no_such_option_km"], "-O no_such_option_km: no such tracer option"),
    ],
)
def test_failing_setup_is_one_line_and_changes_nothing(tmp_path, state_kept, args, message):
    result = record("--record-time", "1", *args, cwd=tmp_path)
    assert_one_line_error(result, message)
    assert not list(tmp_path.iterdir())


FAILING_ON_PURPOSE = (
    "import fcntl, os, termios\n"
    "try:\n    open('/no/such/file/km')\nexcept OSError:\n    pass\n"
    "read_end, _ = os.pipe()\n"
    "try:\n    fcntl.ioctl(read_end, termios.TIOCGWINSZ, bytes(8))\nexcept OSError:\n    pass\n"
)


def test_funcgraph_retval_records_the_errors_or_says_the_kernel_lacks_it(tmp_path, state_kept):
    """A command that fails on purpose (open of a missing file, a terminal ioctl on a pipe) under -O funcgraph-retval:
    where the kernel has CONFIG_FUNCTION_GRAPH_RETVAL, --errors names -ENOENT and -ENOTTY as the trace's own lines
    show them; where it has not (every Debian kernel up to 7.3), one line says so and nothing is written."""
    result = record("--format", "text", "-O", "funcgraph-retval", "--", sys.executable, "-c", FAILING_ON_PURPOSE, cwd=tmp_path)
    if result.returncode != 0:
        assert_one_line_error(result, "-O funcgraph-retval: this kernel was built without CONFIG_FUNCTION_GRAPH_RETVAL")
        assert not (TRACEFS / "options" / "funcgraph-retval").exists()
        assert not list(tmp_path.iterdir())
        return
    data = tmp_path / "kernel-magnifier.data"
    returned = Counter(match.group(1) for line in read_lines(data) if (match := re.search(r"(?: = |ret=)(-\d+) \*/\s*$", line)))
    assert returned[f"-{errno.ENOENT}"] and returned[f"-{errno.ENOTTY}"], returned
    graph = graph_json(tmp_path, data, extra=("--errors",))
    named = {entry["name"]: entry["returns"] for entry in graph["errors"]}
    assert named["ENOENT"] == returned[f"-{errno.ENOENT}"] and named["ENOTTY"] == returned[f"-{errno.ENOTTY}"], (named, returned)


def test_funcgraph_retaddr_records_the_call_sites_or_says_the_kernel_lacks_it(tmp_path, state_kept):
    """-O funcgraph-retaddr: where the kernel has CONFIG_FUNCTION_GRAPH_RETADDR (6.13+), every call carries its site
    and the JSON's call tree counts each line's once; where it has not (every Debian kernel up to 7.3), one line says
    so and nothing is written or left changed."""
    result = record("--format", "text", "-O", "funcgraph-retaddr", "--", sys.executable, "-c", FAILING_ON_PURPOSE, cwd=tmp_path)
    if result.returncode != 0:
        assert_one_line_error(result, "-O funcgraph-retaddr: this kernel was built without CONFIG_FUNCTION_GRAPH_RETADDR")
        assert not (TRACEFS / "options" / "funcgraph-retaddr").exists()
        assert not list(tmp_path.iterdir())
        return
    data = tmp_path / "kernel-magnifier.data"
    printed = Counter(match.groups() for line in read_lines(data) if (match := re.search(r"\|  +([^\s(]+)\(.*/\* <-(\S+)", line)))
    assert printed
    graph = graph_json(tmp_path, data)
    counted = Counter()
    for node in graph["call_tree"]:
        counted.update({(node["function"], site): count for site, count in node.get("call_sites", {}).items()})
    assert counted == printed


def function_graph_runs_in_an_instance() -> bool:
    """6.1: no (record must use the global tracer); 7.3: yes (record takes a private instance)."""
    probe = TRACEFS / "instances" / "kernel-magnifier-probe"
    probe.mkdir()
    try:
        return "function_graph" in (probe / "available_tracers").read_text().split()
    finally:
        probe.rmdir()


def test_another_active_tracer_is_refused_or_left_alone(tmp_path):
    in_instance = function_graph_runs_in_an_instance()
    (TRACEFS / "current_tracer").write_text("blk")  # blk switches without patching code: quick
    try:
        before = tracefs_state()
        result = record("--record-time", "1", cwd=tmp_path)  # no --graph-function: set_graph_function exists only at the top
        if in_instance:  # the global tracer is someone else's: record works beside it, in its own instance
            assert result.returncode == 0, result.stderr
            assert "/instances/kernel-magnifier-" in metadata(tmp_path / "kernel-magnifier.data")["tracefs"]
        else:
            assert_one_line_error(result, "another tracer is active (blk)")
        assert tracefs_state() == before
    finally:
        (TRACEFS / "current_tracer").write_text("nop")


def test_second_recorder_waits_for_the_lock(tmp_path, state_kept):
    directory = "/run/lock" if os.path.isdir("/run/lock") else "/tmp"
    with open(f"{directory}/kernel-magnifier.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("4242")
        lock.flush()
        assert_one_line_error(record("--record-time", "1", cwd=tmp_path), "another kernel-magnifier record is running")


def test_full_disk_discards_the_recording_and_keeps_the_old_file(tmp_path, state_kept, workload):
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)], check=True)
    try:
        (small / "k.data").write_text("the user's previous recording\n")
        result = record("--record-time", "2", "-o", str(small / "k.data"), cwd=tmp_path)  # all of function_graph: megabytes
        assert_one_line_error(result, f"cannot write {small / 'k.data'}: No space left on device; the recording was discarded")
        assert sorted(p.name for p in small.iterdir()) == ["k.data"]  # no partial file left behind
        assert (small / "k.data").read_text() == "the user's previous recording\n"
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_mounts_tracefs_when_absent_and_unmounts_it_again(tmp_path):
    subprocess.run(["umount", str(TRACEFS)], check=True)
    try:
        result = record("--tracer", "function", "--filter", "vfs_read", "--record-time", "1", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert not (TRACEFS / "trace").exists(), "record left tracefs mounted"
        assert metadata(tmp_path / "kernel-magnifier.data")["end"] == "complete"
    finally:
        if not (TRACEFS / "trace").exists():
            subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], check=True)
