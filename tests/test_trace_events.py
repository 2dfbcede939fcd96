"""Tracepoint events between the calls (issue 19, point 2): counted by name in the main parse, yielded by
IntervalReader(events=True) with their fields, context and the open calls of their task, from every input.

The expected values come from the real recordings themselves, read independently: a grep of the text for the
event lines, the indentation of function_graph text for the open calls, and trace-cmd's own `report -N`
(the events printed by their print fmt, no plugins) for every field of every event of a trace.dat.
"""

from __future__ import annotations

import collections
import lzma
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import DATA, assert_one_line_error, graph_json, load_module, proc_line_fields, read_lines, run_cli

SCHED = DATA / "sched"
TEXTS = ["fg-sched-abstime-proc.txt.xz", "fg-sched-default.txt.xz", "function-sched.txt.xz", "fg-sched-abstime-proc-7.3.txt.xz"]
HIDDEN_DROP = DATA / "trace-cmd" / "hidden-drop-v6.dat.xz"  # trace-cmd record -p function_graph -e sched:sched_switch, 6.1
# An event line of the function tracer or trace-cmd report: "comm-pid [cpu] flags? stamp: name: fields".
EVENT_LINE = re.compile(r"^\s*(?P<comm>.+)-(?P<pid>\d+) +\[(?P<cpu>\d+)\] +(?:(?P<flags>\S{4,7}) +)?(?P<ts>[\d.]+): (?P<name>\w+):(?: +(?P<fields>.*))?$")
GRAPH_COMMENT = re.compile(r"/\* (\w+): ")


def grep_events(path: Path) -> collections.Counter:
    """Events by name, from the text alone: function_graph's `/* name: ` comments, other formats' `stamp: name: ` lines."""
    found: collections.Counter = collections.Counter()
    for line in read_lines(path):
        comment = GRAPH_COMMENT.search(line) if "|  " in line else None
        event = EVENT_LINE.match(line) if comment is None else None
        if comment:
            found[comment.group(1)] += 1
        elif event and event.group("name") not in ("funcgraph_entry", "funcgraph_exit", "function"):
            found[event.group("name")] += 1
    return found


def text_fields(text: str) -> dict[str, str]:
    """`a=1 b=x y ==> c=2` as trace-cmd report prints an event: each name= up to the next ` name=` (`==>` left out)."""
    fields = {}
    for part in re.split(r" (?=\w+=)", text.replace(" ==> ", " ")):
        name, equal, value = part.partition("=")
        if equal:
            fields[name.strip()] = value.strip()
    return fields


def unpacked(tmp_path: Path, packed: Path) -> Path:
    target = tmp_path / packed.name.removesuffix(".xz")
    target.write_bytes(lzma.decompress(packed.read_bytes()))
    return target


def reader_events(km, paths: list[Path], **options) -> list:
    reader = km.IntervalReader(events=True, **options)
    return [item for item in reader.read([str(path) for path in paths]) if isinstance(item, km.TraceEvent)]


@pytest.mark.parametrize("name", TEXTS)
def test_event_counts_of_text_inputs_equal_a_grep_and_the_summary_says_them(tmp_path, name):
    path = SCHED / name
    expected = grep_events(path)
    assert expected["sched_switch"] > 200 and expected["sched_waking"] > 100  # the recordings hold what they should
    graph = graph_json(tmp_path, path)
    assert graph["stats"]["trace_events"] == dict(expected)
    assert graph["stats"]["unparsed_lines"] == 0  # an event line is an event, not damage
    ranked = sorted(expected.items(), key=lambda item: (-item[1], item[0]))
    summary = run_cli("visualize", "-i", str(path), "-o", "-", "--chart", "", cwd=tmp_path)
    assert summary.returncode == 0, summary.stderr
    assert "trace events: " + ", ".join(f"{event} {count:,}" for event, count in ranked) in summary.stdout.splitlines()
    km = load_module()
    assert collections.Counter(event.name for event in reader_events(km, [path])) == expected


def test_a_calls_only_input_has_no_trace_events_line(tmp_path):
    result = run_cli("visualize", "-i", str(DATA / "fg-abstime-proc" / "trace.txt.xz"), "-o", "-", "--chart", "", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not any(line.startswith("trace events") for line in result.stdout.splitlines())


def test_selection_keeps_every_event(tmp_path):
    """A wakeup of a selected task comes from any task: --pid/--comm/--cpu select calls, never events."""
    path = SCHED / "function-sched.txt.xz"
    expected = grep_events(path)
    for option in (["--pid", "123"], ["--comm", "python3"], ["--cpu", "1"]):
        graph = graph_json(tmp_path, path, extra=tuple(option))
        assert graph["stats"]["trace_events"] == dict(expected), option
    km = load_module()
    selection = km.TaskSelection(pids={"123"}, options="--pid 123")
    events = reader_events(km, [SCHED / "fg-sched-abstime-proc.txt.xz"], selection=selection)
    assert collections.Counter(event.name for event in events) == grep_events(SCHED / "fg-sched-abstime-proc.txt.xz")
    assert {event.task for event in events} > {"123", "125"}


def test_function_tracer_events_fields_and_irq_context_equal_their_lines():
    path = SCHED / "function-sched.txt.xz"
    expected = []
    for line in read_lines(path):
        match = EVENT_LINE.match(line)
        if match:
            irq = {"s": "softirq", "h": "hardirq", "H": "hardirq", "z": "nmi", "Z": "nmi"}.get(match.group("flags")[2], "")
            pid = match.group("pid")
            task = f"0/{int(match.group('cpu'))}" if pid == "0" else pid
            expected.append((match.group("name"), task, str(int(match.group("cpu"))), match.group("ts"), text_fields(match.group("fields")), irq))
    km = load_module()
    events = reader_events(km, [path])
    assert [(e.name, e.task, e.cpu, f"{e.stamp_us / 1e6:.6f}", e.fields, e.irq) for e in events] == expected
    contexts = collections.Counter(event.irq for event in events)
    assert contexts["softirq"] > 100 and contexts["hardirq"] > 10  # the sender's softirq path wakes the reader


def open_calls_by_indentation(path: Path) -> list[tuple[str, str, list[str]]]:
    """(event name, pid, the pid's open calls) at each event comment of funcgraph-proc text, from the indentation alone."""
    stacks: dict[str, dict[int, str]] = {}  # per pid, depth -> the call open there (an interrupt may skip a depth: 7.3)
    found = []
    for line in read_lines(path):
        fields = proc_line_fields(line)
        if fields is None:
            continue
        pid, depth, body = fields
        stack = stacks.setdefault(pid, {})
        for deeper in [open_depth for open_depth in stack if open_depth >= depth]:
            del stack[deeper]  # whatever was open at this depth or deeper has ended (or its exit was lost)
        comment = GRAPH_COMMENT.match(body)
        if comment:
            found.append((comment.group(1), pid, [stack[open_depth] for open_depth in sorted(stack)]))
        elif body.endswith("{"):
            stack[depth] = body.split("(")[0].split(" [")[0]  # "vring_interrupt [virtio_ring]() {": the function
    return found


@pytest.mark.parametrize("name", ["fg-sched-abstime-proc.txt.xz", "fg-sched-abstime-proc-7.3.txt.xz"])
def test_the_stack_of_an_event_is_its_tasks_open_calls_by_indentation(name):
    path = SCHED / name
    expected = open_calls_by_indentation(path)
    km = load_module()
    events = reader_events(km, [path])
    assert [(event.name, event.task, [call.name for call in event.stack]) for event in events] == expected
    wakings = [stack for name, _, stack in expected if name == "sched_waking"]
    assert sum(1 for stack in wakings if "tcp_sendmsg" in stack) > 50  # the sender wakes the reader from its send path
    sleeps = [stack for name, _, stack in expected if name == "sched_switch" and "tcp_recvmsg" in stack]
    assert sleeps and all(stack[-1] == "__traceiter_sched_switch" for stack in sleeps)


def report(trace: Path, *options: str) -> list[str]:
    if not shutil.which("trace-cmd"):
        pytest.skip("trace-cmd is not installed: the fields are checked against its report (apt-get install trace-cmd)")
    done = subprocess.run(["trace-cmd", "report", *options, "-i", str(trace)], capture_output=True, text=True, check=True, timeout=300)
    return done.stdout.splitlines()


def report_events(lines: list[str]) -> list[tuple[str, str, str, str, dict[str, str]]]:
    """(name, pid, cpu, timestamp, fields) of every event line of trace-cmd report -N (function_graph lines left out)."""
    found = []
    for line in lines:
        match = EVENT_LINE.match(line)
        if match and match.group("name") not in ("funcgraph_entry", "funcgraph_exit", "function"):
            found.append((match.group("name"), match.group("pid"), str(int(match.group("cpu"))), match.group("ts"), text_fields(match.group("fields") or "")))
    return found


def trace_dats() -> list[Path]:
    return [HIDDEN_DROP, *sorted(SCHED.glob("tc-*.dat.xz"))]


@pytest.mark.parametrize("packed", trace_dats(), ids=lambda path: path.name)
def test_every_field_of_every_trace_dat_event_is_what_trace_cmd_report_prints(tmp_path, packed):
    trace = unpacked(tmp_path, packed)
    expected = report_events(report(trace, "-N", "-t"))  # -t: times in ns, as stored
    assert expected
    raw = report_events(report(trace, "-R", "-t"))  # every field's stored value
    assert [event[:4] for event in raw] == [event[:4] for event in expected]
    for (name, *_, fields), (_, *_, stored) in zip(expected, raw):
        if name == "timer_start":
            # libtraceevent evaluates the print fmt's `REC->flags & (0x00040000 | 0x00080000 | ...)` as `(REC->flags & 0x00040000) | 0x00080000 | ...`
            # and prints "D|P|I" for every timer (375 of 375 here, even flags=1): the flag bits the kernel means, from the stored value
            bits = int(stored["flags"]) & 0x3C0000
            fields["flags"] = "|".join(letter for bit, letter in ((0x40000, "M"), (0x80000, "D"), (0x100000, "P"), (0x200000, "I")) if bits & bit)
    km = load_module()
    events = reader_events(km, [trace])
    got = [(e.name, e.task.split("/")[0], e.cpu, f"{round(e.stamp_us * 1000) / 1e9:.9f}", {k: v for k, v in e.fields.items() if k in fields})
           for e, (_, _, _, _, fields) in zip(events, expected)]
    assert got == expected
    assert len(events) == len(expected)
    counted = collections.Counter(name for name, *_ in expected)
    if not any(event.stack for event in events):  # trace-cmd record -e ... without a tracer: events, no calls to draw
        result = run_cli("visualize", "-i", str(trace), "-o", str(tmp_path / "out.json"), "--chart", "", cwd=tmp_path)
        top = ", ".join(f"{name} {count:,}" for name, count in sorted(counted.items(), key=lambda item: -item[1])[:2])
        assert_one_line_error(result, f"holds no function_graph or function events ({top}")
        return
    assert graph_json(tmp_path, trace)["stats"]["trace_events"] == dict(counted)


@pytest.mark.parametrize("packed", trace_dats(), ids=lambda path: path.name)
def test_trace_cmd_reports_text_gives_the_events_of_its_trace_dat(tmp_path, packed):
    """trace-cmd report's own text (its sched plugin prints the switch without field names) read as an input:
    the same events, fields and open calls as the trace.dat; the plugin's state letters are its own."""
    trace = unpacked(tmp_path, packed)
    text = tmp_path / "report.txt"
    text.write_text("\n".join(report(trace)) + "\n")
    km = load_module()
    from_dat, from_text = reader_events(km, [trace]), reader_events(load_module(), [text])
    assert len(from_text) == len(from_dat)
    for binary, printed in zip(from_dat, from_text):
        assert (printed.name, printed.task, printed.cpu, printed.comm) == (binary.name, binary.task, binary.cpu, binary.comm)
        assert abs(printed.stamp_us - binary.stamp_us) < 1
        if binary.name.startswith("sched_"):  # (other plugins print other events their own way too: hrtimer's function=tick_sched_timer/0x0)
            assert {k: v for k, v in printed.fields.items() if k != "prev_state"} == {k: v for k, v in binary.fields.items() if k in printed.fields and k != "prev_state"}
        assert [call.name for call in printed.stack] == [call.name for call in binary.stack]
    if any(event.stack for event in from_dat):
        assert graph_json(tmp_path, text)["stats"]["trace_events"] == graph_json(tmp_path, trace)["stats"]["trace_events"]


def test_a_trace_dat_event_without_a_stored_format_is_counted_as_its_id(tmp_path):
    """The same real file with sched_switch's stored format renamed to an id no event has: its events are 'unknown id 319'."""
    data = lzma.decompress(HIDDEN_DROP.read_bytes())
    stored = b"name: sched_switch\nID: 319\n"
    assert data.count(stored) == 1
    trace = tmp_path / "unknown.dat"
    trace.write_bytes(data.replace(stored, b"name: sched_switch\nID: 913\n"))
    graph = graph_json(tmp_path, trace)
    assert graph["stats"]["trace_events"] == {"unknown id 319": 2}
    km = load_module()
    assert reader_events(km, [trace]) == []  # nothing to read it by


def test_damaged_event_lines_and_bytes_do_not_crash(tmp_path):
    lines = read_lines(SCHED / "fg-sched-abstime-proc.txt.xz")[:4000]
    damaged = []
    for number, line in enumerate(lines):
        if "/* sched_" in line and number % 3 == 0:
            line = line[: len(line) // 2]  # cut inside the comment: no "*/"
        elif "/* sched_" in line and number % 3 == 1:
            line = line.replace("=", "")  # no fields
        damaged.append(line)
    damaged += ["  python3-123   [000] d.s2.   47.000000: sched_waking:", "  python3-123   [000] d.s2.   47.000001: sched_switch: ==> :x [y]"]
    path = tmp_path / "damaged.txt"
    path.write_text("\n".join(damaged) + "\n")
    graph = graph_json(tmp_path, path)
    assert graph["stats"]["trace_events"]["sched_waking"] >= 1
    km = load_module()
    assert reader_events(km, [path])
    data = bytearray(lzma.decompress(HIDDEN_DROP.read_bytes()))
    for at in [match.start() for match in re.finditer(b"rcu_preempt\x00", bytes(data))]:
        data[at : at + 40] = b"\xff" * 40  # the comm arrays and numbers after them of the events (and the saved names)
    trace = tmp_path / "damaged.dat"
    trace.write_bytes(bytes(data))
    assert run_cli("visualize", "-i", str(trace), "-o", str(tmp_path / "d.json"), "--chart", "", cwd=tmp_path).returncode == 0
    reader_events(km, [trace])


def test_big_endian_fields_read_as_the_little_endian_ones():
    """A real sched_switch's bytes (6.1, little endian) with every number field byte-swapped by its stored layout read the same
    as the original: the decoder follows the file's byte order. Only the fields: no whole big-endian trace.dat was recorded."""
    km = load_module()
    text = lzma.decompress((SCHED / "formats-6.1.txt.xz").read_bytes()).decode()
    switch = km.parse_event_format(text[text.index("name: sched_switch") : text.index("name: sched_wakeup\n")], "sched")
    data = lzma.decompress(HIDDEN_DROP.read_bytes())
    at = data.index(b"trace-cmd\x00\x00\x00\x00\x00\x00\x00z\x00\x00\x00") - 8  # prev_comm at offset 8 of the event, pid 122 after it
    little = km.EventLayout(switch, "<").read(data, at, at + 64)
    swapped = bytearray(data[at : at + 64])
    for declaration, offset, size, _ in km.FORMAT_FIELD.findall(switch.text):
        if "[" not in declaration:
            swapped[int(offset) : int(offset) + int(size)] = swapped[int(offset) : int(offset) + int(size)][::-1]
    big = km.EventLayout(switch, ">").read(bytes(swapped), 0, 64)
    assert little == big
    assert little[0] == {"prev_comm": "trace-cmd", "prev_pid": "122", "prev_prio": "120", "prev_state": "R+", "next_comm": "rcu_preempt", "next_pid": "15", "next_prio": "120"}


def test_prev_state_is_printed_by_the_stored_tables_of_old_and_new_kernels():
    """The letters come from the __print_flags table of the format at hand: 6.1's (I, + at 0x100), and 3.x's (W, K, + at 2048)."""
    km = load_module()
    text = lzma.decompress((SCHED / "formats-6.1.txt.xz").read_bytes()).decode()
    new = km.parse_event_format(text[text.index("name: sched_switch") : text.index("name: sched_wakeup\n")], "sched")
    old_fmt = ('print fmt: "prev_comm=%s prev_pid=%d prev_prio=%d prev_state=%s%s ==> next_comm=%s next_pid=%d next_prio=%d", REC->prev_comm, '
               'REC->prev_pid, REC->prev_prio, REC->prev_state & (2048-1) ? __print_flags(REC->prev_state & (2048-1), "|", { 1, "S"} , { 2, "D" }, '
               '{ 4, "T" }, { 8, "t" }, { 16, "Z" }, { 32, "X" }, { 64, "x" }, { 128, "K" }, { 256, "W" }, { 512, "P" }, { 1024, "N" }) : "R", '
               'REC->prev_state & 2048 ? "+" : "", REC->next_comm, REC->next_pid, REC->next_prio')
    old = km.parse_event_format(re.sub(r"print fmt: .*", lambda _: old_fmt, new.text), "sched")

    def state(event, value: int) -> str:
        payload = bytearray(64)
        payload[32:40] = value.to_bytes(8, "little", signed=True)
        return km.EventLayout(event, "<").read(bytes(payload), 0, 64)[0]["prev_state"]

    assert [state(new, value) for value in (0, 1, 2, 0x80, 0x100, 0x101, 3)] == ["R", "S", "D", "I", "R+", "S+", "S|D"]
    assert [state(old, value) for value in (0, 1, 128, 256, 2048, 2049)] == ["R", "S", "K", "W", "R+", "S+"]


def test_a_text_input_that_is_only_events_says_it_has_no_calls(tmp_path):
    lines = [line for line in read_lines(SCHED / "function-sched.txt.xz") if EVENT_LINE.match(line)]
    path = tmp_path / "events-only.txt"
    path.write_text("\n".join(lines) + "\n")
    result = run_cli("visualize", "-i", str(path), "-o", str(tmp_path / "out.json"), "--chart", "", cwd=tmp_path)
    assert_one_line_error(result, "holds tracepoint events but no function_graph or function calls")


def test_counts_are_the_same_decoded_in_a_child_split_in_halves_or_parsed_in_parallel(tmp_path, monkeypatch):
    """Every way the main parse can share its work counts each event once (tests/test_seams.py checks every seam of the sched texts)."""
    trace = unpacked(tmp_path, SCHED / "tc-fg-sched-6.1.dat.xz")
    plain = tmp_path / "fg-sched-abstime-proc.txt"
    plain.write_bytes(lzma.decompress((SCHED / "fg-sched-abstime-proc.txt.xz").read_bytes()))
    expected = {
        (trace,): graph_json(tmp_path, trace)["stats"]["trace_events"],
        (plain,): dict(grep_events(plain)),
        (plain, SCHED / "function-sched.txt.xz"): dict(grep_events(plain) + grep_events(SCHED / "function-sched.txt.xz")),
    }
    monkeypatch.setenv("KM_PARSE_PROCESSES", "2")  # a decoding child for the trace.dat, halves for the text, a child per input
    monkeypatch.setenv("KM_SPLIT_AT", "0.43")
    for inputs, counts in expected.items():
        assert graph_json(tmp_path, *inputs)["stats"]["trace_events"] == counts, inputs


LATENCY_LINE = re.compile(r"^\s*\S.*-\d+ +(?P<cpu>\d)(?P<flags>\S{4,5}) +[\d.]+: (?P<name>\w+):")  # report -l: CPU and flags run together (CPUs 0-9)


@pytest.mark.parametrize("packed", [SCHED / "tc-fg-sched-6.1.dat.xz", SCHED / "tc-fg-sched-7.3.dat.xz"], ids=lambda path: path.name)
def test_the_irq_context_of_a_trace_dat_event_is_trace_cmds_latency_flag(tmp_path, packed):
    """common_flags' hardirq/softirq/NMI bits as `trace-cmd report -l` shows them: s, h, H (a hardirq in a softirq), z/Z."""
    trace = unpacked(tmp_path, packed)
    shown = [match for match in map(LATENCY_LINE.match, report(trace, "-l", "-N")) if match and match.group("name") not in ("funcgraph_entry", "funcgraph_exit")]
    contexts = {"s": "softirq", "h": "hardirq", "H": "hardirq", "z": "nmi", "Z": "nmi"}
    expected = [(match.group("name"), match.group("cpu"), contexts.get(match.group("flags")[2], "")) for match in shown]
    km = load_module()
    events = reader_events(km, [trace])
    assert [(event.name, event.cpu, event.irq) for event in events] == expected
    assert {"softirq", "hardirq"} <= {irq for *_, irq in expected}


def test_trace_cmd_report_raw_text_gives_the_stored_numbers(tmp_path):
    """`trace-cmd report -R` prints every field's stored value: read as text, the same events with those numbers (prev_state=256, not R+)."""
    trace = unpacked(tmp_path, SCHED / "tc-fg-sched-6.1.dat.xz")
    text = tmp_path / "raw.txt"
    lines = report(trace, "-R")
    text.write_text("\n".join(lines) + "\n")
    km = load_module()
    from_dat, from_raw = reader_events(km, [trace]), reader_events(load_module(), [text])
    assert [(event.name, event.task, event.cpu) for event in from_raw] == [(event.name, event.task, event.cpu) for event in from_dat]
    printed = [text_fields(match.group("fields") or "") for match in map(EVENT_LINE.match, lines) if match and match.group("name").startswith("sched_")]
    assert [event.fields for event in from_raw] == printed
    states = collections.Counter(event.fields["prev_state"] for event in from_raw if event.name == "sched_switch")
    letters = collections.Counter(event.fields["prev_state"] for event in from_dat if event.name == "sched_switch")
    assert states["256"] == letters["R+"] > 0 and states["0"] == letters["R"] and states["1"] == letters["S"]
