"""On-CPU and off-CPU time of every call path (issue 19, point 3), on the real recordings in tests/data/sched.

The expected numbers are computed here from the raw text by plain splitting: each task's calls from the
indentation and the timestamps, its switched-out intervals from the `/* sched_switch: ... */` comment lines
(switch-out: prev_pid, switch-in: the next next_pid), and a function's off-CPU time as the overlap of the two.
"""

from __future__ import annotations

import json
import lzma
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import DATA, assert_one_line_error, load_module, nodes_by_name, read_lines, run_cli
from test_flamegraph import chart_width, frame, open_page

SCHED = DATA / "sched"
ABSTIME = SCHED / "fg-sched-abstime-proc.txt.xz"
DEFAULT = SCHED / "fg-sched-default.txt.xz"
NO_EVENTS = DATA / "record-demo" / "kernel-magnifier.data.xz"  # function_graph text recorded without scheduler events

WAKING = re.compile(r"/\* sched_waking: .*\bpid=(\d+) ")
SWITCH = re.compile(r"/\* sched_switch: .*\bprev_pid=(\d+) .*\bprev_state=(\S+) ==> .*\bnext_pid=(\d+) ")
CONTEXT_SWITCH = re.compile(r"^\s*(\d+)\)\s+\S.*-(\d+)\s+=>\s+\S.*-(\d+)\s*$")
RESOLUTION_US = 1.0  # the timestamps are printed to the microsecond


@dataclass
class Call:
    name: str
    task: str
    start: float | None
    end: float | None = None
    outermost: bool = True  # not inside another call of the same function
    path: tuple[str, ...] = ()  # its call path, outermost first, ending in its name (only its name when its caller is not in the trace)
    duration: float | None = None  # the duration column of its exit (or leaf) line, us: the clock of the durations is not the timestamps'
    asleep: float = 0.0  # switched out while it was open: from each switch-out with it open (in line order) to the switch-in or its return
    returned_asleep: bool = False  # it returned while its task was switched out (its share of that sleep ends at its exit line's stamp)


@dataclass
class RawTrace:
    """What the text says, read without the tool: calls per task, switched-out intervals per task, sleeps inside calls."""

    calls: list[Call] = field(default_factory=list)
    out: dict[str, list[tuple[float | None, float | None, str]]] = field(default_factory=dict)  # task -> (switch-out, switch-in, state)
    switch_outs_in: dict[str, int] = field(default_factory=dict)  # function -> sched_switch lines of its task while it was open
    traced_switch_outs: list[tuple[str, float | None]] = field(default_factory=list)  # (task, stamp) of switch-outs inside a traced call
    # (innermost call open at the switch-out, the waker's innermost open call or its comm, softirq/hardirq/task or its comm) -> sleeps
    wakes: Counter = field(default_factory=Counter)
    unwoken: int = 0


def waker_context(stack: list[Call]) -> str:
    """What the open calls say the waker ran as: below __do_softirq/handle_softirqs a softirq, below __sysvec_* a hardirq."""
    for call in reversed(stack):
        if call.name in ("__do_softirq", "handle_softirqs"):
            return "softirq"
        if call.name.startswith("__sysvec_"):
            return "hardirq"
    return "task"


def task_of(pid: str, cpu: str) -> str:
    return f"0/{cpu}" if pid == "0" else pid


def read_raw(path: Path) -> RawTrace:
    """Split each line at its '|' columns: [time |] cpu) [comm-pid] | duration | body; the body's indentation is the depth."""
    raw = RawTrace()
    stacks: dict[str, list[Call]] = {}
    running: dict[str, str] = {}  # cpu -> task, from the "=>" lines (for lines without a pid column)
    switched: dict[str, tuple[float | None, str]] = {}
    last_stamp: dict[str, float | None] = {}
    sleeping: dict[str, tuple[str, str]] = {}  # task -> (its innermost open call at the switch-out, state)
    open_at_out: dict[str, tuple[float | None, list[Call]]] = {}  # task -> (its switch-out's stamp, the calls it had open then)
    waker: dict[str, tuple[str, str]] = {}  # task -> the last sched_waking of it since it last switched in: (waker, context)
    for line in read_lines(path):
        switch_line = CONTEXT_SWITCH.match(line)
        if switch_line:
            running[switch_line.group(1)] = task_of(switch_line.group(3), switch_line.group(1))
            continue
        if line.startswith("#") or "|" not in line or ")" not in line:
            continue
        columns = line.split("|")
        if len(columns) == 2:  # default columns: "cpu) duration | body", the task from the last "=>" line of its CPU
            cpu, duration_column = columns[0].split(")", 1)
            cpu, stamp, task = cpu.strip(), None, running.get(cpu.strip(), f"cpu{cpu.strip()}")
        else:  # "time | cpu) comm-pid | duration | body"
            cpu, who = columns[1].split(")")
            cpu, stamp, duration_column = cpu.strip(), float(columns[0]) * 1e6, columns[2]  # us
            task = task_of(who.strip().rsplit("-", 1)[1], cpu)
        body = columns[-1][2:]
        depth = (len(body) - len(body.lstrip(" "))) // 2
        text = body.strip()
        stack = stacks.setdefault(task, [])
        last_stamp[task] = stamp
        waking = WAKING.search(text)
        if waking:
            comm = columns[1].split(")")[1].strip().rsplit("-", 1)[0] if len(columns) > 2 else ""
            waker[waking.group(1)] = (stack[-1].name, waker_context(stack)) if stack else (comm, comm)
            continue
        switch = SWITCH.search(text)
        if switch:
            prev, state, nxt = task_of(switch.group(1), cpu), switch.group(2).rstrip("+"), task_of(switch.group(3), cpu)
            prev_stack = stacks.get(prev, [])
            sleeping.pop(prev, None)
            if prev_stack:
                raw.traced_switch_outs.append((prev, stamp))
                for name in {call.name for call in prev_stack}:
                    raw.switch_outs_in[name] = raw.switch_outs_in.get(name, 0) + 1
                sleeping[prev] = (prev_stack[-1].name, state)
            switched[prev] = (stamp, state)
            open_at_out[prev] = (stamp, list(prev_stack))
            if nxt in switched:
                went, state = switched.pop(nxt)
                raw.out.setdefault(nxt, []).append((went, stamp, state))
            add_asleep(open_at_out.pop(nxt, (None, [])), stamp)
            slept, woken_by = sleeping.pop(nxt, None), waker.pop(nxt, None)
            if slept and slept[1] != "R":
                if woken_by:
                    raw.wakes[(slept[0], *woken_by)] += 1
                else:
                    raw.unwoken += 1
            continue
        if text.startswith("/*"):
            continue
        duration = duration_column.strip().lstrip("+!#*@$ ").removesuffix("us").strip()
        if text.endswith("{"):
            del stack[depth:]
            call = Call(text[: text.index("(")], task, stamp)
            call.outermost = all(open_call.name != call.name for open_call in stack)
            call.path = call_path(stack, depth, call.name)
            stack.append(call)
            raw.calls.append(call)
        elif text == "}" or text.startswith("} "):
            if len(stack) > depth:
                stack[depth].end = stamp
                stack[depth].duration = float(duration) if duration else None
                del stack[depth:]
        elif text.endswith(";") and duration:
            del stack[depth:]
            name = text[: text.index("(")]
            leaf = Call(name, task, stamp, stamp + float(duration) if stamp is not None else None)  # us
            leaf.outermost = all(open_call.name != name for open_call in stack)
            leaf.path = call_path(stack, depth, name)
            leaf.duration = float(duration)
            raw.calls.append(leaf)
    for call in raw.calls:
        if call.end is None:
            call.end = last_stamp.get(call.task)  # still open at the end: the tool times it to its task's last event
    return raw


def add_asleep(switch_out: tuple[float | None, list[Call]], back: float | None) -> None:
    """A switch-in: the calls open at the task's switch-out were asleep until now, or until they returned."""
    went, calls = switch_out
    if went is None or back is None:
        return
    for call in calls:
        call.asleep += back - went if call.end is None else max(0.0, min(call.end, back) - went)
        call.returned_asleep |= call.end is not None


def call_path(stack: list[Call], depth: int, name: str) -> tuple[str, ...]:
    """A call's path: its open callers' names and its own, or its own alone when its caller is not open (not in the trace)."""
    return (*(call.name for call in stack), name) if len(stack) == depth else (name,)


def off_cpu_expected(raw: RawTrace, function: str) -> float:
    """The overlap of the function's outermost calls with their task's switched-out intervals."""
    return sum(switched_out(raw, call) for call in raw.calls if call.name == function and call.outermost)


def switched_out(raw: RawTrace, call: Call) -> float:
    """The overlap of one call with its task's switched-out intervals."""
    return sum(max(0.0, min(call.end, back) - max(call.start, went)) for went, back, _ in raw.out.get(call.task, []))


@pytest.fixture(scope="module")
def abstime_raw() -> RawTrace:
    return read_raw(ABSTIME)


@pytest.fixture(scope="module")
def abstime_run(tmp_path_factory) -> tuple[dict, str]:
    tmp = tmp_path_factory.mktemp("abstime")
    out = tmp / "graph.json"
    result = run_cli("visualize", "-i", str(ABSTIME), "-o", str(out), "--chart", "", cwd=tmp)
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text()), result.stdout


@pytest.mark.parametrize("function", ["tcp_recvmsg", "sk_wait_data", "schedule", "tcp_sendmsg"])
def test_off_cpu_time_of_a_function_is_its_calls_overlap_with_the_switched_out_intervals(abstime_run, abstime_raw, function):
    graph, _ = abstime_run
    node = nodes_by_name(graph)[function]
    expected = off_cpu_expected(abstime_raw, function)
    assert expected > 0
    assert node["off_cpu_us"] == pytest.approx(expected, abs=0.01)
    assert node["on_cpu_us"] == pytest.approx(node["total_time_us"] - node["off_cpu_us"], abs=0.01)
    assert node["sleeps"] == abstime_raw.switch_outs_in[function]


def test_the_receiver_sleeps_in_sk_wait_data_and_the_sender_is_only_preempted(abstime_run):
    nodes = nodes_by_name(abstime_run[0])
    # 168 sleeps in state S inside sk_wait_data (the receiver waits for data), tcp_sendmsg only preempted once (R)
    assert set(nodes["sk_wait_data"]["off_cpu_states"]) == {"S"}
    assert set(nodes["tcp_sendmsg"]["off_cpu_states"]) == {"R"}
    assert nodes["sk_wait_data"]["off_cpu_us"] > 0.8 * nodes["sk_wait_data"]["total_time_us"]


def test_on_and_off_cpu_add_up_to_the_total_of_every_call_path_and_function(abstime_run):
    graph, _ = abstime_run
    paths = [node for node in graph["call_tree"] if node["sleeps"]]
    assert paths
    for node in graph["call_tree"] + graph["nodes"]:
        assert node["off_cpu_us"] <= node["total_time_us"] + RESOLUTION_US, node
        assert node["on_cpu_us"] + node["off_cpu_us"] == pytest.approx(node["total_time_us"], abs=RESOLUTION_US), node
        assert sum(node["off_cpu_states"].values()) == pytest.approx(node["off_cpu_us"], abs=0.01)


def test_a_call_path_switched_out_is_every_call_open_at_the_switch_out(abstime_run, abstime_raw):
    graph, _ = abstime_run
    by_id = {node["id"]: node for node in graph["call_tree"]}
    paths = {}
    for node in graph["call_tree"]:
        names, up = [node["function"]], node["parent"]
        while up:
            names.append(by_id[up]["function"])
            up = by_id[up]["parent"]
        paths[" > ".join(reversed(names))] = node
    path = "tcp_recvmsg > tcp_recvmsg_locked > sk_wait_data > wait_woken > schedule_timeout > schedule"
    assert paths[path]["sleeps"] == abstime_raw.switch_outs_in["sk_wait_data"]
    assert paths[path]["off_cpu_us"] == pytest.approx(off_cpu_expected(abstime_raw, "sk_wait_data"), abs=0.01)


def test_summary_line_counts_the_sleeps_inside_traced_calls_by_state(abstime_run, abstime_raw):
    _, stdout = abstime_run
    line = next(line for line in stdout.splitlines() if line.startswith("sleeps: "))
    inside = set(abstime_raw.traced_switch_outs)
    by_state: dict[str, float] = {}
    count = 0
    for task, intervals in abstime_raw.out.items():
        for went, back, state in intervals:
            if (task, went) in inside:
                count += 1
                by_state[state] = by_state.get(state, 0.0) + back - went
    match = re.match(r"sleeps: (\d+), ([\d.]+) ms switched out \(S ([\d.]+) ms, R ([\d.]+) us\)", line)
    assert match, line
    assert int(match.group(1)) == count == 169
    assert float(match.group(2)) * 1000 == pytest.approx(sum(by_state.values()), abs=10)
    assert float(match.group(3)) * 1000 == pytest.approx(by_state["S"], abs=10)
    assert float(match.group(4)) == pytest.approx(by_state["R"], abs=0.1)


def test_graph_box_says_total_equals_on_cpu_plus_asleep(tmp_path, abstime_run):
    nodes = nodes_by_name(abstime_run[0])
    out = tmp_path / "graph.dot"
    result = run_cli("visualize", "-i", str(ABSTIME), "-o", str(out), "--chart", "", "--max-nodes", "12", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    dot = out.read_text()
    node = nodes["sk_wait_data"]
    on, off = node["on_cpu_us"] / 1000, node["off_cpu_us"] / 1000
    label = f"total {node['total_time_us'] / 1000:.2f} ms"
    assert re.search(rf"{re.escape(label)} \([\d.]+%\) = {on:.2f} ms on CPU \+ {off:.2f} ms asleep in {node['sleeps']} sleeps", dot), dot


def test_offcpu_heat_and_folded_weights(tmp_path, abstime_run, abstime_raw):
    graph, _ = abstime_run
    folded = tmp_path / "off.folded"
    result = run_cli("visualize", "-i", str(ABSTIME), "-o", str(folded), "--chart", "", "--weight", "offcpu", "--heat", "offcpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    weights: dict[str, int] = {}
    for line in folded.read_text().splitlines():
        path, value = line.rsplit(" ", 1)
        weights[path] = int(value)
    # an off-CPU flame graph: the paths under tcp_recvmsg add up to its off-CPU time (ns)
    under = sum(value for path, value in weights.items() if path.split(";")[0] == "tcp_recvmsg")
    assert under / 1000 == pytest.approx(off_cpu_expected(abstime_raw, "tcp_recvmsg"), abs=1)
    heaviest = max(weights, key=weights.get)
    assert heaviest.startswith("tcp_recvmsg;tcp_recvmsg_locked;sk_wait_data;wait_woken;schedule_timeout;schedule")
    assert sum(weights.values()) / 1000 == pytest.approx(sum(node["off_cpu_us"] for node in graph["call_tree"] if node["parent"] == 0), abs=1)


def test_without_timestamps_sleeps_are_counted_and_their_time_is_unknown(tmp_path):
    raw = read_raw(DEFAULT)
    out = tmp_path / "graph.json"
    result = run_cli("visualize", "-i", str(DEFAULT), "-o", str(out), "--chart", "", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("sleeps: "))
    assert "time switched out unknown: the trace has no timestamps" in line
    node = nodes_by_name(json.loads(out.read_text()))["sk_wait_data"]
    assert node["off_cpu_us"] is None and node["on_cpu_us"] is None
    assert node["sleeps"] == raw.switch_outs_in["sk_wait_data"] > 0
    refused = run_cli("visualize", "-i", str(DEFAULT), "-o", str(tmp_path / "x.json"), "--chart", "", "--heat", "offcpu", cwd=tmp_path)
    assert_one_line_error(refused, "--heat offcpu: the trace has no timestamps")


def test_without_scheduler_events_one_line_says_how_to_record_them(tmp_path):
    out = tmp_path / "graph.json"
    result = run_cli("visualize", "-i", str(NO_EVENTS), "-o", str(out), "--chart", "", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stdout.splitlines() if "scheduler events" in line]
    assert said == [
        "no scheduler events in the trace: record with kernel-magnifier record (function_graph records sched_switch and"
        " sched_waking by default) or trace-cmd record -e sched_switch -e sched_waking"
    ]
    graph = json.loads(out.read_text())
    assert graph["stats"]["sched"] is None
    assert "off_cpu_us" not in graph["nodes"][0] and "off_cpu_us" not in graph["call_tree"][0]
    for option in (("--heat", "offcpu"), ("--weight", "oncpu")):
        refused = run_cli("visualize", "-i", str(NO_EVENTS), "-o", str(tmp_path / "x.folded"), "--chart", "", *option, cwd=tmp_path)
        assert_one_line_error(refused, f"{option[0]} {option[1]}: no scheduler events in the trace")


def test_root_view_keeps_the_off_cpu_time_of_its_paths(tmp_path, abstime_raw):
    out = tmp_path / "root.json"
    result = run_cli("visualize", "-i", str(ABSTIME), "-o", str(out), "--chart", "", "--root", "sk_wait_data", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    nodes = nodes_by_name(json.loads(out.read_text()))
    assert nodes["sk_wait_data"]["off_cpu_us"] == pytest.approx(off_cpu_expected(abstime_raw, "sk_wait_data"), abs=0.01)
    assert nodes["schedule"]["off_cpu_us"] == pytest.approx(off_cpu_expected(abstime_raw, "schedule"), abs=0.01)


def test_off_cpu_flame_graph_opens_and_its_frames_are_as_wide_as_their_off_cpu_time(tmp_path, browser, abstime_run, abstime_raw):
    page = tmp_path / "off.flame.html"
    result = run_cli("visualize", "-i", str(ABSTIME), "-o", str(page), "--chart", "", "--weight", "offcpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    open_page(browser, page)
    assert "an off-CPU flame graph" in browser.find_element("id", "width").text
    whole = sum(node["off_cpu_us"] for node in abstime_run[0]["call_tree"] if node["parent"] == 0)
    receiver = frame(browser, "tcp_recvmsg", 1)
    assert receiver["width"] / chart_width(browser) == pytest.approx(off_cpu_expected(abstime_raw, "tcp_recvmsg") / whole, abs=0.005)
    deepest = frame(browser, "__traceiter_sched_switch", 7)  # returns just after the event: only the part of the sleep before it returned
    assert deepest["width"] < 0.01 * receiver["width"]


def test_each_sleep_is_woken_by_the_last_sched_waking_of_its_task_since_it_last_switched_in(abstime_raw):
    km = load_module()
    parsed = km.parse_traces([str(ABSTIME)])
    graph = km.derive_graph(parsed.tree, parsed.stats, parsed.modules)
    sched = km.sched_times(graph, [str(ABSTIME)])
    tree = graph.tree
    found: Counter = Counter()
    for (sleeper, waker, who), flow in sched.wakes.items():
        found[(tree.function[sleeper], tree.function[waker] if waker else who, who)] += flow.sleeps
    assert found == abstime_raw.wakes
    assert sum(sched.unwoken.values()) == abstime_raw.unwoken == 0
    # the receiver's waits end in the sender's softirq: loopback delivery, tcp_v4_rcv ... sock_def_readable -> try_to_wake_up
    assert abstime_raw.wakes[("__traceiter_sched_switch", "try_to_wake_up", "softirq")] == 160
    assert sched.wakeup_event == "sched_waking"


REPORT_LINE = re.compile(r"^\s*\S.*?-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<ts>\d+\.\d+): (?P<event>\w+):\s+(?P<rest>.*)$")
REPORT_SWITCH = re.compile(r":(\d+) \[\d+\] (\S+) ==> .*:(\d+) \[\d+\]$")


def read_trace_cmd_report(trace: Path) -> RawTrace:
    """trace-cmd's own reading of a trace.dat: calls per task by the graph's indentation, switched-out intervals from its sched_switch lines."""
    text = subprocess.run(["trace-cmd", "report", "-i", str(trace)], capture_output=True, text=True, check=True, timeout=300).stdout
    raw = RawTrace()
    stacks: dict[str, dict[int, Call]] = {}
    switched: dict[str, tuple[float, str]] = {}
    last_stamp: dict[str, float] = {}
    for line in text.split("\n"):
        match = REPORT_LINE.match(line)
        if match is None:
            continue
        task, stamp, event, rest = task_of(match["pid"], match["cpu"]), float(match["ts"]) * 1e6, match["event"], match["rest"]
        last_stamp[task] = stamp
        stack = stacks.setdefault(task, {})
        if event == "sched_switch":
            switch = REPORT_SWITCH.search(rest)
            prev, state, nxt = task_of(switch[1], match["cpu"]), switch[2].rstrip("+"), task_of(switch[3], match["cpu"])
            if stacks.get(prev):
                raw.traced_switch_outs.append((prev, stamp))
            switched[prev] = (stamp, state)
            if nxt in switched:
                went, state = switched.pop(nxt)
                raw.out.setdefault(nxt, []).append((went, stamp, state))
            continue
        if event not in ("funcgraph_entry", "funcgraph_exit"):
            continue
        duration, body = rest.split("|", 1)
        body = body[2:]
        depth = (len(body) - len(body.lstrip(" "))) // 2
        text_body = body.strip()
        for deeper in [level for level in stack if level >= depth]:
            closed = stack.pop(deeper)
            if event == "funcgraph_exit" and deeper == depth:
                closed.end = stamp
        if event == "funcgraph_exit":
            continue
        name = text_body[: text_body.index("(")]
        outermost = all(call.name != name for call in stack.values())
        if text_body.endswith("{"):
            stack[depth] = Call(name, task, stamp, outermost=outermost)
            raw.calls.append(stack[depth])
        else:
            raw.calls.append(Call(name, task, stamp, stamp + float(duration.strip().lstrip("+!#*@$ ").removesuffix("us")), outermost))
    for call in raw.calls:
        if call.end is None:
            call.end = last_stamp[call.task]
    return raw


@pytest.mark.skipif(shutil.which("trace-cmd") is None, reason="needs trace-cmd (apt-get install trace-cmd)")
@pytest.mark.parametrize("kernel, functions", [("6.1", ["tcp_recvmsg", "sk_wait_data"]), ("7.3", ["tcp_recvmsg", "sk_wait_data", "tcp_sendmsg"])])
def test_off_cpu_time_from_a_trace_cmd_trace_dat_matches_trace_cmd_reports_own_reading(tmp_path, kernel, functions):
    trace = tmp_path / f"tc-fg-sched-{kernel}.dat"
    trace.write_bytes(lzma.decompress((SCHED / f"tc-fg-sched-{kernel}.dat.xz").read_bytes()))
    raw = read_trace_cmd_report(trace)
    out = tmp_path / "graph.json"
    result = run_cli("visualize", "-i", str(trace), "-o", str(out), "--chart", "", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    graph = json.loads(out.read_text())
    nodes = nodes_by_name(graph)
    for function in functions:
        expected = off_cpu_expected(raw, function)
        assert expected > 0
        # trace-cmd prints microseconds, the file holds nanoseconds: each sleep's two ends round apart by up to 1 us
        assert nodes[function]["off_cpu_us"] == pytest.approx(expected, abs=2 * RESOLUTION_US * nodes[function]["sleeps"]), function
    for node in graph["call_tree"] + graph["nodes"]:
        assert node["off_cpu_us"] <= node["total_time_us"] + RESOLUTION_US, node
    assert graph["stats"]["sched"]["sleeps"] == len(raw.traced_switch_outs)


def test_callers_view_shows_the_off_cpu_time_through_each_caller(tmp_path, abstime_raw):
    out = tmp_path / "callers.json"
    result = run_cli("visualize", "-i", str(ABSTIME), "-o", str(out), "--chart", "", "--callers", "schedule", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    nodes = nodes_by_name(json.loads(out.read_text()))
    expected = off_cpu_expected(abstime_raw, "schedule")  # schedule is called from one path only: every caller carries all of it
    for name in ("schedule", "schedule_timeout", "sk_wait_data", "tcp_recvmsg"):
        assert nodes[name]["off_cpu_us"] == pytest.approx(expected, abs=0.01), name
