"""The latency format (issue 22, point 3): irqsoff, preemptoff, preemptirqsoff, wakeup, wakeup_rt, wakeup_dl, and any
tracer read with options/latency-format. Their calls are read as the function tracer's; the summary gives the latency,
where it started and ended, the task and the CPU.

Two kinds of tests:
- real recordings made in the VM on a 6.1 kernel built with the latency tracers (tests/data/latency/README.md), checked
  against an independent reading of the same text (a plain split of each line) and against the kernel's own
  tracing_max_latency file read at the same time;
- "printf_built" tests: lines written here with the printf formats of trace_output.c, trace.c and
  trace_functions_graph.c of each kernel generation (2.6.2x to 6.x, RT patches, trace-cmd report -l), for the layouts
  no machine here can produce. Their expected values are the calls the test itself wrote.
"""

from __future__ import annotations

import collections
import lzma
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import DATA, edges_by_pair, graph_json, nodes_by_name, run_cli

LATENCY = DATA / "latency"

# An irqsoff section as the kernel's Documentation shows them: (function, parent, flags, us since the start).
CALLS = [
    ("trace_hardirqs_off_thunk", "apic_timer_interrupt", "d..1", 0),
    ("smp_apic_timer_interrupt", "apic_timer_interrupt", "d..1", 1),
    ("irq_enter", "smp_apic_timer_interrupt", "d.h1", 2),
    ("rcu_irq_enter", "irq_enter", "d.h1", 3),
    ("irq_enter", "smp_apic_timer_interrupt", "d.h1", 15),
    ("__do_softirq", "do_softirq", "d.s.", 97),
    ("trace_hardirqs_on", "do_softirq", "d.s1", 98),
]


def c_format(form: str, *values: object) -> str:
    """A kernel printf format as written in its source (Python's % conversions follow C's for these)."""
    return form % values


def expected_edges(calls=CALLS) -> collections.Counter:
    return collections.Counter((parent, name) for name, parent, *_ in calls)


def delay_mark(rel_us: int) -> str:
    """trace_find_mark() on the delay to the next entry (5.x/6.x thresholds)."""
    for limit, mark in ((1_000_000, "$"), (100_000, "@"), (10_000, "*"), (1000, "#"), (100, "!"), (10, "+")):
        if rel_us > limit:
            return mark
    return " "


def old_mark(rel_us: int) -> str:
    """lat_print_timestamp() of 2.6.2x-3.x: "!" above preempt_mark_thresh (100 us), "+" above 1 us."""
    return "!" if rel_us > 100 else "+" if rel_us > 1 else " "


def lat_lines(pid_format: str, flags_of, mark_of, body_of, comm: str = "<idle>", pid: int = 0, cpu: int = 0) -> list[str]:
    """Lines as lat_print_generic() + lat_print_timestamp() print them: "%8.8s-<pid> %3d" flags " %4lldus%c: " body."""
    lines = []
    for index, (name, parent, flags, stamp) in enumerate(CALLS):
        following = CALLS[index + 1][3] if index + 1 < len(CALLS) else stamp
        prefix = c_format("%8.8s-" + pid_format + " %3d", comm, pid, cpu)
        lines.append(prefix + flags_of(flags) + c_format(" %4dus%s: ", stamp, mark_of(following - stamp)) + body_of(name, parent))
    return lines


def header_lines(tracer: str, hashes: bool, latency: int = 98, entries: int = 7, written: int = 7) -> list[str]:
    """print_trace_header(): with "# " before each line since 2.6.30, without before."""
    lines = [
        f"{tracer} latency trace v1.1.5 on 2.6.26-rc8",
        "-" * 68,
        f" latency: {latency} us, #{entries}/{written}, CPU#0 | (M:preempt VP:0, KP:0, SP:0 HP:0 #P:2)",
        "    -----------------",
        "    | task: swapper-0 (uid:0 nice:0 policy:0 rt_prio:0)",
        "    -----------------",
        " => started at: apic_timer_interrupt",
        " => ended at:   do_softirq",
    ]
    head = [f"# tracer: {tracer}", "#"]
    if hashes:
        return head + ["# " + line.lstrip(" ") if not line.startswith(" ") else "#" + line for line in lines] + ["#", "#"]
    return head + lines + [""]


def write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_calls(graph: dict, calls=CALLS) -> None:
    assert graph["stats"]["unparsed_lines"] == 0, graph["stats"]["unparsed_example"]
    assert edges_by_pair(graph) == dict(expected_edges(calls))
    wanted = collections.Counter(name for name, *_ in calls)
    assert {name: node["calls"] for name, node in nodes_by_name(graph).items() if node["calls"]} == dict(wanted)


def assert_summary(graph: dict, tracer: str = "irqsoff", latency: int = 98) -> dict:
    (found,) = graph["stats"]["latency_traces"]
    assert (found["tracer"], found["latency_us"], found["cpu"]) == (tracer, latency, "0")
    assert (found["started_at"], found["ended_at"]) == ("apic_timer_interrupt", "do_softirq")
    assert (found["task"], found["pid"], found["entries"], found["written"]) == ("swapper", 0, 7, 7)
    assert (found["preemption"], found["cpus"]) == ("preempt", 2)
    return found


# -- printf-built: the layouts of each kernel generation ------------------------------------------------------------


def test_printf_built_2_6_2x_parent_in_parentheses_and_header_without_hashes(tmp_path):
    """2.6.26-2.6.29: "%8.8s-%-5d %3d", four flags, "+" above 1 us, "func (parent)", a header whose lines had no "#"."""
    lines = header_lines("irqsoff", hashes=False) + lat_lines("%-5d", str, old_mark, lambda f, p: f"{f} ({p})")
    assert lines[-1].startswith("  <idle>-0       0d.s1   98us : trace_hardirqs_on (do_softirq)")
    graph = graph_json(tmp_path, write(tmp_path, "old.txt", lines))
    assert_calls(graph)
    assert_summary(graph)


def test_printf_built_2_6_3x_to_5_x_parent_arrow_pid_width_5(tmp_path):
    lines = header_lines("preemptirqsoff", hashes=True) + lat_lines("%-5d", str, old_mark, lambda f, p: f"{f} <-{p}")
    lines += ["  <idle>-0       0d.s1   98us : <stack trace>", " => do_softirq", " => irq_exit"]
    graph = graph_json(tmp_path, write(tmp_path, "v3.txt", lines))
    assert_calls(graph)
    found = assert_summary(graph, "preemptirqsoff")
    assert found["span_us"] == 98.0


def test_printf_built_6_x_five_flags_pid_width_7_and_delay_marks(tmp_path):
    """5.13+ (trace_output.c of 6.1): "%8.8s-%-7d %3d", a fifth flag (migrate-disable), marks from trace_find_mark()."""
    lines = header_lines("irqsoff", hashes=True) + lat_lines("%-7d", lambda f: f + ".", delay_mark, lambda f, p: f"{f} <-{p}")
    assert "    3us+: rcu_irq_enter" in lines[-4] and "   15us#" not in "".join(lines)
    graph = graph_json(tmp_path, write(tmp_path, "v6.txt", lines))
    assert_calls(graph)
    assert_summary(graph)
    report = run_cli("visualize", "-i", str(tmp_path / "v6.txt"), "-o", "-").stdout
    assert ("latency trace (irqsoff): 98 us on CPU#0, task swapper-0, started at apic_timer_interrupt, ended at do_softirq"
            " (7 of 7 entries)") in report


@pytest.mark.parametrize("lazy, tail", [(".", ".."), ("L", ".1"), ("L", "...")], ids=["rt-7-flags", "rt-7-flags-lazy", "rt-8-flags"])
def test_printf_built_rt_kernels_seven_and_eight_flag_columns(tmp_path, lazy, tail):
    """PREEMPT_RT patches print need-resched-lazy after need-resched, then preempt-lazy-depth and migrate-disable."""
    lines = header_lines("irqsoff", hashes=True) + lat_lines("%-7d", lambda f: f[:2] + lazy + f[2:] + tail, delay_mark, lambda f, p: f"{f} <-{p}")
    assert_calls(graph_json(tmp_path, write(tmp_path, "rt.txt", lines)))


def test_printf_built_verbose_and_counter_clock(tmp_path):
    """options/verbose: "%16s %7d %3d %d %08x %08lx " then "[%08llx] %ld.%03ldms (+%ld.%03ldms): " (ns clocks) or
    "[%016llx] %lld (+%lld): " (counter); and a counter clock without verbose: " %4lld: "."""
    verbose, ticks, counter = [], [], []
    for index, (name, parent, _flags, stamp) in enumerate(CALLS):
        rel = (CALLS[index + 1][3] if index + 1 < len(CALLS) else stamp) - stamp
        absolute = 5_000_000 + stamp
        verbose.append(c_format("%16s %7d %3d %d %08x %08lx ", "<idle>", 0, 0, 9, 1, index)
                       + c_format("[%08x] %d.%03dms (+%d.%03dms): ", absolute, stamp // 1000, stamp % 1000, rel // 1000, rel % 1000) + f"{name} <-{parent}")
        ticks.append(c_format("%16s %7d %3d %d %08x %08lx ", "<idle>", 0, 0, 1, 1, index) + c_format("[%016x] %d (+%d): ", absolute, stamp, rel) + f"{name} <-{parent}")
        counter.append(c_format("%8.8s-%-7d %3d", "<idle>", 0, 0) + "d..1." + c_format(" %4d: ", stamp) + f"{name} <-{parent}")
    for name, lines in (("verbose", verbose), ("ticks", ticks), ("counter", counter)):
        graph = graph_json(tmp_path, write(tmp_path, f"{name}.txt", header_lines("irqsoff", hashes=True) + lines))
        assert_calls(graph)
        found = assert_summary(graph)
        if name == "verbose":
            assert found["span_us"] == 98.0  # from the absolute time in us, hex


def test_printf_built_trace_cmd_report_latency_columns(tmp_path):
    """trace-cmd report -l: "%8.8s-%-5d %3d" + the flags, then its own " %5lu.%06lu: %s: " and the event name."""
    lines = ["cpus=2"]
    for name, parent, flags, stamp in CALLS:
        lines.append(c_format("%8.8s-%-5d %3d", "bash", 1977, 1) + flags + c_format(" %5d.%06d: %s: ", 4186, 475355 + stamp, "function")
                     + " " * 12 + f"{name} <-- {parent}")
    graph = graph_json(tmp_path, write(tmp_path, "tc.txt", lines))
    assert_calls(graph)
    assert graph["stats"]["latency_traces"] == []  # no latency tracer, no header: nothing to summarise


@pytest.mark.skipif(shutil.which("trace-cmd") is None, reason="needs trace-cmd")
def test_trace_cmd_report_latency_columns_read_as_its_plain_report(tmp_path):
    """trace-cmd report -l on a real trace.dat (function_graph, 6.1): the same calls as its plain report."""
    dat = tmp_path / "trace.dat"
    dat.write_bytes(lzma.decompress((DATA / "trace-cmd" / "trace-v6.dat.xz").read_bytes()))
    for name, options in (("plain.txt", []), ("latency.txt", ["-l"])):
        report = subprocess.run(["trace-cmd", "report", *options, "-i", str(dat)], capture_output=True, text=True, check=True).stdout
        (tmp_path / name).write_text(report)
    lat_line = next(line for line in (tmp_path / "latency.txt").read_text().splitlines() if "funcgraph_entry" in line)
    assert re.match(r"^.{8}-\d+ +\d+[.dDbX]\S{3,4} +\d+\.\d{6}: funcgraph_entry: ", lat_line), lat_line
    plain, latency = graph_json(tmp_path, tmp_path / "plain.txt"), graph_json(tmp_path, tmp_path / "latency.txt")
    assert latency["stats"]["unparsed_lines"] == plain["stats"]["unparsed_lines"] == 0
    assert latency["stats"]["events"] == plain["stats"]["events"] > 1000
    numbers = [{name: node["calls"] for name, node in nodes_by_name(graph).items()} for graph in (plain, latency)]
    assert numbers[0] == numbers[1]
    # The plain report has no flags: an interrupt's handler looks like a callee of the function it interrupted. With the
    # flags' hardirq column the handlers stand apart: fewer edges, none into the timer interrupt's entry.
    plain_edges, latency_edges = edges_by_pair(plain), edges_by_pair(latency)
    assert all(count <= plain_edges.get(pair, 0) for pair, count in latency_edges.items())
    assert any(callee == "__sysvec_apic_timer_interrupt" for _, callee in plain_edges)
    assert not any(callee == "__sysvec_apic_timer_interrupt" for _, callee in latency_edges)


def test_printf_built_wakeup_tracer_entries_are_events(tmp_path):
    """wakeup/wakeup_rt print the scheduler's own entries (trace_ctxwake_print): " %7d:%3d:%c %s [%03d] %7d:%3d:%c %s"."""
    lines = header_lines("wakeup_rt", hashes=True)
    lines.append(c_format("%8.8s-%-7d %3d", "<idle>", 0, 1) + "dNh4." + c_format(" %4dus : ", 0) + c_format(" %7d:%3d:%c %s [%03d] %7d:%3d:%c %s", 0, 120, "R", "  +", 1, 2261, 94, "R", "rt-task"))
    lines += lat_lines("%-7d", lambda f: f + ".", delay_mark, lambda f, p: f"{f} <-{p}", cpu=1)
    lines.append(c_format("%8.8s-%-7d %3d", "<idle>", 0, 1) + "d..3." + c_format(" %4dus : ", 98) + c_format(" %7d:%3d:%c %s [%03d] %7d:%3d:%c %s", 0, 120, "R", "==>", 1, 2261, 94, "R", "rt-task"))
    graph = graph_json(tmp_path, write(tmp_path, "wakeup.txt", lines))
    assert_calls(graph)
    assert graph["stats"]["trace_events"] == {"context_switch": 1, "wakeup": 1}
    assert graph["stats"]["latency_traces"][0]["tracer"] == "wakeup_rt"


def test_printf_built_latency_without_header_says_so(tmp_path):
    """irqsoff read without latency-format: the function tracer's lines, no header; the summary says what it can."""
    lines = ["# tracer: irqsoff", "#"]
    for name, parent, flags, stamp in CALLS:
        lines.append(c_format("%16s-%-7d [%03d] %s %5d.%06d: %s <-%s", "<idle>", 0, 0, flags + ".", 120, 5000 + stamp, name, parent))
    graph = graph_json(tmp_path, write(tmp_path, "nolat.txt", lines))
    assert_calls(graph)
    (found,) = graph["stats"]["latency_traces"]
    assert (found["tracer"], found["latency_us"], found["span_us"]) == ("irqsoff", None, 98.0)
    report = run_cli("visualize", "-i", str(tmp_path / "nolat.txt"), "-o", "-").stdout
    assert "latency trace (irqsoff): the latency is not printed (read without latency-format); its events span 98 us" in report


def test_printf_built_lost_entries_from_the_latency_header(tmp_path):
    lines = header_lines("irqsoff", hashes=True, entries=7, written=19) + lat_lines("%-7d", lambda f: f + ".", delay_mark, lambda f, p: f"{f} <-{p}")
    graph = graph_json(tmp_path, write(tmp_path, "lost.txt", lines))
    assert graph["stats"]["lost_events"] == 12


# -- printf-built: function_graph with latency-format, and the latency tracers' display-graph ------------------------

GRAPH = [(0, "entry", "do_idle", None), (1, "leaf", "tick_nohz_idle_enter", 0.574), (1, "entry", "cpuidle_idle_call", None),
         (2, "leaf", "default_idle", 12.3), (1, "exit", "cpuidle_idle_call", 14.0), (0, "exit", "do_idle", 16.5)]


def duration_field(duration: float | None, overhead: bool = True) -> str:
    """print_graph_duration(): the mark (or two spaces), the time as trace_print_graph_duration() prints it, "|  " after."""
    if duration is None:
        return " " * 14
    text = f"{duration:.3f}"
    return (delay_mark(int(duration)) if overhead else " ") + " " + text + " us " + " " * (8 - len(text))


def graph_body(depth: int, kind: str, name: str) -> str:
    return "  " * depth + {"entry": f"{name}() {{", "leaf": f"{name}();", "exit": "}"}[kind]


def test_printf_built_function_graph_latency_columns_old_and_new(tmp_path):
    """print_graph_lat_fmt(): " " + the flags, and " | " after them since about 4.x; 4 to 7 flag characters."""
    for name, columns in (("old", " 0)  d..1"), ("new", " 0)    <idle>-0    |  d..1. | "), ("rt", " 0)  d...1.. | ")):
        lines = ["# tracer: function_graph", "#"] + [columns + duration_field(dur) + "|  " + graph_body(depth, kind, fn) for depth, kind, fn, dur in GRAPH]
        graph = graph_json(tmp_path, write(tmp_path, f"{name}.txt", lines))
        assert graph["stats"]["unparsed_lines"] == 0, (name, graph["stats"]["unparsed_example"])
        assert edges_by_pair(graph) == {("do_idle", "tick_nohz_idle_enter"): 1, ("do_idle", "cpuidle_idle_call"): 1,
                                        ("cpuidle_idle_call", "default_idle"): 1}, name
        assert nodes_by_name(graph)["do_idle"]["total_time_us"] == 16.5


def test_printf_built_display_graph_rel_time_column(tmp_path):
    """irqsoff with display-graph: GRAPH_TRACER_FLAGS of trace_irqsoff.c (CPU, PROC, REL_TIME, DURATION, no overhead mark),
    "%9llu us |  " first; the latency header before the graph header."""
    lines = header_lines("irqsoff", hashes=True)
    for index, (depth, kind, fn, dur) in enumerate(GRAPH):
        lines.append(c_format("%9d us |  ", index * 3) + " 0) " + "   <idle>-0   " + " | " + " d..1." + " | " + duration_field(dur, overhead=False) + "|  " + graph_body(depth, kind, fn))
    graph = graph_json(tmp_path, write(tmp_path, "display-graph.txt", lines))
    assert graph["stats"]["unparsed_lines"] == 0, graph["stats"]["unparsed_example"]
    assert edges_by_pair(graph)[("cpuidle_idle_call", "default_idle")] == 1
    assert_summary(graph)
    assert graph["stats"]["latency_traces"][0]["span_us"] == 15.0  # the REL TIME column: 0 to 15 us


def test_printf_built_rt_need_resched_lazy_column_is_not_an_interrupt(tmp_path):
    """On RT kernels the third flag is need-resched-lazy, the fourth hardirq/softirq: a callee whose lazy flag changed
    is still its caller's callee; one whose fourth column turned "h" ran in an interrupt."""
    rows = [("d......", 0, "entry", "do_idle", None), ("d.L....", 1, "leaf", "tick_nohz_idle_enter", 0.5),
            ("d..h1..", 1, "leaf", "irq_handler", 1.0), ("d......", 0, "exit", "do_idle", 3.0)]
    lines = ["# tracer: function_graph", "#"] + [" 0)  " + flags + " | " + duration_field(dur) + "|  " + graph_body(depth, kind, fn) for flags, depth, kind, fn, dur in rows]
    graph = graph_json(tmp_path, write(tmp_path, "rt-graph.txt", lines))
    assert graph["stats"]["unparsed_lines"] == 0, graph["stats"]["unparsed_example"]
    assert ("do_idle", "tick_nohz_idle_enter") in edges_by_pair(graph)
    assert ("do_idle", "irq_handler") not in edges_by_pair(graph)


# -- real recordings: the latency tracers of a 6.1 kernel in the VM -------------------------------------------------

# An independent reading of the lines: the latency format's "... NNus?: body" and the function tracer's "... [cpu] ... ts: body".
LAT_BODY = re.compile(r"^\s*\S.*?-\d+\s+\d+[.dDbX]\S{3,7}\s+\d+us.: (.*)$")
PLAIN_BODY = re.compile(r"^\s*\S.*?-\d+\s+\[\d+\]\s+\S+\s+\d+\.\d+: (.*)$")
CALL_BODY = re.compile(r"^(\S+)(?: <-(\S+))?$")
PLAIN_STAMP = re.compile(r"\] \S+ +(\d+\.\d+): ")


def read_text(name: str) -> list[str]:
    return lzma.decompress((LATENCY / name).read_bytes()).decode().splitlines()


def grep_calls(lines: list[str]) -> collections.Counter:
    """(parent, function) of every call line, by the two patterns above; parent None where none is printed."""
    found: collections.Counter = collections.Counter()
    for line in lines:
        body = LAT_BODY.match(line) or PLAIN_BODY.match(line)
        call = CALL_BODY.match(body.group(1)) if body else None
        if call and not call.group(1).startswith("<"):
            found[call.group(2), call.group(1)] += 1
    return found


def with_parent(calls: collections.Counter) -> dict:
    return {pair: count for pair, count in calls.items() if pair[0] is not None}


def calls_per_function(calls: collections.Counter) -> dict:
    counted: collections.Counter = collections.Counter()
    for (_, name), count in calls.items():
        counted[name] += count
    return dict(counted)


def node_calls(graph: dict) -> dict:
    return {name: node["calls"] for name, node in nodes_by_name(graph).items() if node["calls"]}


def max_latency(name: str) -> int:
    """tracing_max_latency, read in the guest right after the trace (us)."""
    return int((LATENCY / f"{name}.max_latency").read_text())



GRAPH_CALL = re.compile(r"^( *)(\S+)\(\)(;| \{)$")
FLAG_COLUMN = re.compile(r" ([.dDbX][.a-zA-Z0-9]{3,7}) \| ")


def graph_edges(lines: list[str]) -> collections.Counter:
    """(caller, callee) of every entry and leaf, by indentation of the text after the last "|  " (one task here); a
    call whose hardirq/softirq flag (the third) is set and differs from its caller's ran in an interrupt: no caller."""
    found: collections.Counter = collections.Counter()
    open_calls: dict[int, tuple[str, str]] = {}
    for line in lines:
        call = GRAPH_CALL.match(line.rsplit("|  ", 1)[-1]) if "|  " in line and not line.startswith("#") else None
        if call:
            flags = FLAG_COLUMN.search(line)
            depth, irq = len(call.group(1)) // 2, flags.group(1)[2] if flags else "."
            caller = open_calls.get(depth - 1) if depth else None
            found[caller[0] if caller and (irq == "." or irq == caller[1]) else None, call.group(2)] += 1
            if call.group(3) == " {":
                open_calls[depth] = (call.group(2), irq)
    return found


@pytest.mark.parametrize("kernel", ["debian-6.1", "km-lat-6.1"])
def test_real_function_tracer_with_latency_format(tmp_path, kernel):
    """`record -p function -O latency-format --format text` on Debian's 6.1 kernel and on the latency tracers' one:
    trace_pipe in the latency format."""
    lines = read_text(f"function-latency-format-{kernel}.txt.xz")
    assert sum(1 for line in lines if LAT_BODY.match(line)) > 1000
    graph = graph_json(tmp_path, LATENCY / f"function-latency-format-{kernel}.txt.xz")
    assert graph["stats"]["unparsed_lines"] == 0, graph["stats"]["unparsed_example"]
    assert "latency-format" in graph["stats"]["formats"]
    assert edges_by_pair(graph) == with_parent(grep_calls(lines))
    assert node_calls(graph) == calls_per_function(grep_calls(lines))
    assert graph["stats"]["latency_traces"] == []


@pytest.mark.parametrize("kernel", ["debian-6.1", "km-lat-6.1"])
def test_real_function_graph_with_latency_format(tmp_path, kernel):
    """`record -p function_graph -O latency-format -g vfs_read --max-depth 3`: " d..1. | " after the CPU column."""
    lines = read_text(f"function-graph-latency-format-{kernel}.txt.xz")
    assert any(re.match(r"^ \d\)  [.dDbX][.a-zA-Z0-9]{4} \| ", line) for line in lines)
    graph = graph_json(tmp_path, LATENCY / f"function-graph-latency-format-{kernel}.txt.xz")
    assert graph["stats"]["unparsed_lines"] == 0, graph["stats"]["unparsed_example"]
    expected = graph_edges(lines)
    assert {pair: count for pair, count in expected.items() if pair[0] is not None} == edges_by_pair(graph)
    calls = collections.Counter()
    for (_, callee), count in expected.items():
        calls[callee] += count
    assert {name: node["calls"] for name, node in nodes_by_name(graph).items() if node["calls"]} == dict(calls)


CTX_WAKE = re.compile(r": +\d+: *-?\d+:\S (==>|  \+) ")


@pytest.mark.parametrize("tracer", ["irqsoff", "preemptirqsoff", "wakeup_rt"])
def test_real_latency_tracer_reads_with_its_calls_and_latency(tmp_path, tracer):
    """A 6.1 kernel's latency tracer, its snapshot as `trace` prints it with latency-format: the calls are the lines'
    own, the latency is the kernel's tracing_max_latency read beside it, start and end points as printed."""
    lines = read_text(f"{tracer}-latency-format.txt.xz")
    text = "\n".join(lines)
    header = re.search(r"^# latency: (\d+) us, #(\d+)/(\d+), CPU#(\d+)", text, re.M)
    assert int(header.group(1)) == max_latency(tracer) > 0
    graph = graph_json(tmp_path, LATENCY / f"{tracer}-latency-format.txt.xz")
    stats = graph["stats"]
    assert stats["unparsed_lines"] == 0, stats["unparsed_example"]
    (found,) = stats["latency_traces"]
    assert (found["tracer"], found["latency_us"], found["cpu"]) == (tracer, max_latency(tracer), header.group(4))
    assert (found["entries"], found["written"]) == (int(header.group(2)), int(header.group(3)))
    for point in ("started", "ended"):
        printed = re.search(rf"^#  => {point} at: +(\S.*)$", text, re.M)
        assert found[f"{point}_at"] == (printed.group(1).strip() if printed else None)
    calls = grep_calls(lines)
    assert sum(calls.values()) == int(header.group(2)) - sum(1 for line in lines if LAT_BODY.match(line) and not CALL_BODY.match(LAT_BODY.match(line).group(1)))
    assert edges_by_pair(graph) == with_parent(calls)
    assert node_calls(graph) == calls_per_function(calls)
    switches = collections.Counter("context_switch" if match.group(1) == "==>" else "wakeup" for match in map(CTX_WAKE.search, lines) if match)
    assert {name: count for name, count in stats["trace_events"].items()} == dict(switches)
    # The same snapshot printed without latency-format: the function tracer's columns, no header.
    plain = graph_json(tmp_path, LATENCY / f"{tracer}.txt.xz")
    assert plain["stats"]["unparsed_lines"] == 0, plain["stats"]["unparsed_example"]
    assert edges_by_pair(plain) == edges_by_pair(graph)
    assert node_calls(plain) == node_calls(graph)
    (without,) = plain["stats"]["latency_traces"]
    assert (without["tracer"], without["latency_us"]) == (tracer, None)
    stamps = [float(match.group(1)) for match in map(PLAIN_STAMP.search, read_text(f"{tracer}.txt.xz")) if match]
    assert without["span_us"] == pytest.approx((stamps[-1] - stamps[0]) * 1e6, abs=0.01)
    # From the section's first event to its last (the stack trace logged after its end): the latency within 0.1 %.
    assert without["span_us"] == pytest.approx(max_latency(tracer), rel=1e-3, abs=5)


def test_real_irqsoff_display_graph(tmp_path):
    """irqsoff with display-graph: function_graph lines with REL TIME, CPU, task and flag columns after the latency header."""
    lines = read_text("irqsoff-graph-latency-format.txt.xz")
    assert any(re.match(r"^ +\d+ us \|  +\d+\) ", line) for line in lines)
    graph = graph_json(tmp_path, LATENCY / "irqsoff-graph-latency-format.txt.xz")
    assert graph["stats"]["unparsed_lines"] == 0, graph["stats"]["unparsed_example"]
    (found,) = graph["stats"]["latency_traces"]
    assert (found["tracer"], found["latency_us"]) == ("irqsoff", max_latency("irqsoff-graph"))
    calls = collections.Counter()
    for (_, callee), count in graph_edges(lines).items():
        calls[callee] += count
    assert sum(calls.values()) > 0
    assert {name: node["calls"] for name, node in nodes_by_name(graph).items() if node["calls"]} == dict(calls)
