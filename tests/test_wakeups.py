"""Who wakes it (issue 19): every attributed wakeup against the waker found independently in the raw function_graph text.

The real sample (tests/data/sched/README.md): a loopback TCP echo in a 6.1 VM, function_graph with funcgraph-abstime and
funcgraph-proc on tcp_sendmsg and tcp_recvmsg, with sched_switch and sched_waking as comment lines. The receiver sleeps in
tcp_recvmsg -> ... -> sk_wait_data -> wait_woken -> schedule_timeout -> schedule; the sender wakes it from its own
softirq (net_rx_action) delivering the data: ... -> tcp_data_ready -> sock_def_readable -> __wake_up_sync_key -> ...
-> try_to_wake_up. The reading below is a plain one (split on '|', open calls by indentation), not the tool's parser.
"""

from __future__ import annotations

import json
import lzma
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field

import pytest
from conftest import DATA, assert_one_line_error, proc_line_fields, read_lines, run_cli

SAMPLE = DATA / "sched" / "fg-sched-abstime-proc.txt.xz"
NO_EVENTS = DATA / "fg-abstime-proc" / "trace.txt.xz"  # function_graph without scheduler events
EVENT_COMMENT = re.compile(r"^/\* (\w+): (.*) \*/$")


@dataclass
class Waker:
    stamp_s: float
    task: str
    comm: str
    stack: tuple[str, ...]


@dataclass
class Sleep:
    stamp_s: float
    state: str
    stack: tuple[str, ...]
    task: str
    waking: Waker | None = None
    early: Waker | None = None


@dataclass
class Reading:
    """What the raw text says: the ended sleeps with their wakers, and the switch-ins with the wakeup that preceded them."""

    woken: list[tuple[Sleep, Waker, float]] = field(default_factory=list)  # (sleep, its waker, switch-in time in s)
    handovers: list[tuple[Waker, str, float]] = field(default_factory=list)  # (waker, woken task, switch-in time in s)
    unwoken: int = 0


def task_key(pid: str, cpu: str) -> str:
    return f"0/{cpu}" if pid == "0" else pid


@dataclass
class Record:
    """One line of a trace: its task, CPU, time, the depth of its calls, and the call line's body or the event's name and fields."""

    task: str
    comm: str
    cpu: str
    stamp_s: float
    depth: int
    body: str  # "f() {", "f();", "}" ("" for an event)
    event: str = ""
    values: dict[str, str] = field(default_factory=dict)


def fg_text_records(path) -> list[Record]:
    """function_graph text with funcgraph-abstime and -proc: split on '|'; events are `/* name: fields */` comments."""
    records = []
    for line in read_lines(path):
        fields = proc_line_fields(line)
        if fields is None:
            continue
        task, depth, body = fields
        cpu, who = line.split("|")[1].split(")")
        event = EVENT_COMMENT.match(body)
        record = Record(task, who.strip().rsplit("-", 1)[0], cpu.strip(), float(line.split("|")[0]), depth, "" if event else body)
        if event:
            record.event, record.values = event.group(1), dict(re.findall(r"(\w+)=(\S+)", event.group(2)))
        records.append(record)
    return records


REPORT_LINE = re.compile(r"^\s*(?P<comm>.+?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<ts>[\d.]+):\s+(?P<event>\w+):\s+(?P<rest>.*)$")
REPORT_SWITCH = re.compile(r"^(?P<prev_comm>.+):(?P<prev_pid>\d+) \[\d+\] (?P<prev_state>\S+) ==> (?P<next_comm>.+):(?P<next_pid>\d+) \[\d+\]$")


def report_records(text: str) -> list[Record]:
    """`trace-cmd report` of a trace.dat: funcgraph_entry/exit lines (body after '|', depth by indentation), sched_switch in
    its sched plugin's words (`prev:pid [prio] S ==> next:pid [prio]`), sched_waking as `comm=... pid=...`."""
    records = []
    for line in text.splitlines():
        match = REPORT_LINE.match(line)
        if match is None:
            continue
        task, event, rest = task_key(match["pid"], str(int(match["cpu"]))), match["event"], match["rest"]
        record = Record(task, match["comm"].strip(), str(int(match["cpu"])), float(match["ts"]), 0, "")
        if event.startswith("funcgraph_"):
            body = rest.split("|", 1)[1][2:]
            record.depth, record.body = (len(body) - len(body.lstrip(" "))) // 2, body.strip()
        elif event == "sched_switch":
            record.event, record.values = event, REPORT_SWITCH.match(rest).groupdict()
        elif event == "sched_waking":
            record.event, record.values = event, dict(re.findall(r"(\w+)=(\S+)", rest))
        else:
            continue
        records.append(record)
    return records


def read_wakers(records: list[Record], event_depth: bool) -> Reading:
    """Per task, its open calls by indentation; at each sched_switch the sleep it starts and the sleep it ends; the
    waker of a sleep: the last sched_waking of the task after its switch-out, else the last one while it was still on
    its CPU before the switch-out (woken while going to sleep). event_depth: an event line's indentation is the depth of
    the open calls (function_graph text); else every open call of the task is open at the event (trace-cmd report)."""
    stacks: dict[str, list[str]] = {}
    out: dict[str, Sleep] = {}
    early: dict[str, Waker] = {}
    reading = Reading()
    for record in records:
        stack = stacks.setdefault(record.task, [])
        if not record.event:
            del stack[record.depth :]
            if record.body.endswith("{"):
                stack.append(record.body.split("(")[0])
            continue
        open_calls = tuple(stack[: record.depth] if event_depth else stack)
        values, stamp = record.values, record.stamp_s
        if record.event == "sched_waking":
            waker = Waker(stamp, record.task, record.comm, open_calls)
            if values["pid"] in out:
                out[values["pid"]].waking = waker
            else:
                early[values["pid"]] = waker
        elif record.event == "sched_switch":
            prev, following = task_key(values["prev_pid"], record.cpu), task_key(values["next_pid"], record.cpu)
            out[prev] = Sleep(stamp, values["prev_state"].rstrip("+"), open_calls, prev, early=early.pop(prev, None))
            before = early.pop(following, None)
            sleep = out.pop(following, None)
            if sleep is None:  # not seen switching out: asleep since before the trace, woken by the wakeup before this
                if before is not None:
                    reading.handovers.append((before, following, stamp))
                continue
            waker = sleep.waking or sleep.early
            if waker is not None and (sleep.state != "R" or sleep.waking is not None):
                reading.handovers.append((waker, following, stamp))
            if sleep.state == "R" or not sleep.stack:
                continue  # preempted, or asleep outside the traced calls: no frame slept
            if waker is None:
                reading.unwoken += 1
            else:
                reading.woken.append((sleep, waker, stamp))
    return reading


def read_sample() -> Reading:
    return read_wakers(fg_text_records(SAMPLE), event_depth=True)


def expected_rows(reading: Reading) -> dict[tuple[tuple[str, ...], tuple[str, ...]], list[float]]:
    """(sleeping path, waker path) -> [sleeps, wait sum in us, longest wait in us]."""
    expected: dict[tuple[tuple[str, ...], tuple[str, ...]], list[float]] = {}
    for sleep, waker, switch_in in reading.woken:
        row = expected.setdefault((sleep.stack, waker.stack), [0, 0.0, 0.0])
        wait_us = (switch_in - sleep.stamp_s) * 1e6
        row[0] += 1
        row[1] += wait_us
        row[2] = max(row[2], wait_us)
    return expected


@pytest.fixture(scope="module")
def reading() -> Reading:
    return read_sample()


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict:
    """One visualize run per output the tests look at (the sample parses in a few seconds)."""
    where = tmp_path_factory.mktemp("wake")
    done = {}
    for name, extra in (("graph.json", ()), ("graph.dot", ()), ("hidden.dot", ("--no-wakeups",)), ("wakers.json", ("--wakers", "tcp_recvmsg")),
                        ("wakers.folded", ("--wakers", "tcp_recvmsg")), ("t.trace.json", ()), ("small.dot", ("--max-nodes", "40")),
                        ("small-hidden.dot", ("--max-nodes", "40", "--no-wakeups"))):
        result = run_cli("visualize", "-i", str(SAMPLE), "-o", str(where / name), "--chart", "", *extra)
        assert result.returncode == 0, result.stderr
        done[name] = (where / name, result.stdout)
    return done


def test_every_attributed_wakeup_is_the_waker_found_in_the_raw_text(reading, outputs):
    expected = expected_rows(reading)
    rows = json.loads(outputs["graph.json"][0].read_text())["wakeups"]
    found = {(tuple(row["sleeping_path"]), tuple(row["waker_path"])): row for row in rows}
    assert set(found) == set(expected)
    for key, (sleeps, wait_us, max_us) in expected.items():
        assert found[key]["sleeps"] == sleeps
        assert found[key]["wait_us"] == pytest.approx(wait_us, abs=0.01)
        assert found[key]["wait_max_us"] == pytest.approx(max_us, abs=0.01)
        assert found[key]["wait_p50_us"] <= found[key]["wait_max_us"]
    assert sum(row["sleeps"] for row in rows) == len(reading.woken) > 150


@pytest.mark.parametrize("name", ["tc-fg-sched-6.1.dat.xz", "tc-fg-sched-7.3.dat.xz"])
def test_trace_cmds_trace_dat_wakeups_are_the_wakers_trace_cmd_report_shows(name, tmp_path):
    """trace-cmd's own recording, read by trace-cmd report: the same wakers, from the decoded events and the graph's stacks."""
    if shutil.which("trace-cmd") is None:
        pytest.skip("trace-cmd is not installed (apt-get install trace-cmd; .ci/run installs it)")
    dat = tmp_path / "trace.dat"
    dat.write_bytes(lzma.decompress((DATA / "sched" / name).read_bytes()))
    report = subprocess.run(["trace-cmd", "report", str(dat)], capture_output=True, text=True, check=True).stdout
    reading = read_wakers(report_records(report), event_depth=False)
    out = tmp_path / "graph.json"
    result = run_cli("visualize", "-i", str(DATA / "sched" / name), "-o", str(out), "--chart", "")
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["wakeups"]
    found = {(tuple(row["sleeping_path"]), tuple(row["waker_path"])): row for row in rows}
    expected = expected_rows(reading)
    assert set(found) == set(expected)
    for key, (sleeps, wait_us, max_us) in expected.items():
        assert found[key]["sleeps"] == sleeps
        assert found[key]["wait_us"] == pytest.approx(wait_us, abs=1.0 * sleeps)  # report prints microseconds, the file has ns
        assert found[key]["wait_max_us"] == pytest.approx(max_us, abs=1.0)  # report prints microseconds, the file has ns
    assert any(row["slept_in"] == "sk_wait_data" and row["waking_function"] == "sock_def_readable" and row["waker_context"] == "net_rx_action softirq" for row in rows)


def test_the_receivers_sk_wait_data_is_woken_from_sock_def_readable_under_net_rx_action(reading, outputs):
    softirq = [(sleep, waker) for sleep, waker, _ in reading.woken if "net_rx_action" in waker.stack]
    assert len(softirq) > 150
    # the echo runs both ways: each python3 task's sleep is ended by the softirq the other one runs when it sends
    assert {(sleep.task, waker.task) for sleep, waker in softirq} == {("125", "123"), ("123", "125")}
    assert all(sleep.stack[:3] == ("tcp_recvmsg", "tcp_recvmsg_locked", "sk_wait_data") for sleep, _ in softirq)
    rows = json.loads(outputs["graph.json"][0].read_text())["wakeups"]
    under = [row for row in rows if "net_rx_action" in row["waker_path"]]
    assert {(row["slept_in"], row["waking_function"], row["waker_context"]) for row in under} == {("sk_wait_data", "sock_def_readable", "net_rx_action softirq")}
    assert sum(row["sleeps"] for row in under) == len(softirq)
    # the tool's words for what is left of the raw stack after the rule's machinery: the frames beyond its ends
    for row in under:
        waker, sleeper = row["waker_path"], row["sleeping_path"]
        assert waker[waker.index("sock_def_readable") + 1 :] == ["__wake_up_sync_key", "__wake_up_common_lock", "__wake_up_common", "woken_wake_function", "default_wake_function", "try_to_wake_up"]
        assert sleeper[sleeper.index("sk_wait_data") + 1 :] == ["wait_woken", "schedule_timeout", "schedule", "__traceiter_sched_switch"]


def test_the_summary_says_who_woke_the_sleeps(reading, outputs):
    softirq = sum(1 for _, waker, _ in reading.woken if "net_rx_action" in waker.stack)
    untraced = Counter(waker.comm for _, waker, _ in reading.woken if not waker.stack)
    assert softirq + sum(untraced.values()) == len(reading.woken)  # no other kind of waker in this sample
    parts = [f"{softirq} from net_rx_action softirq paths"] + [f"{count} by task {comm} with no traced call open" for comm, count in untraced.most_common()]
    assert f"woken by (sched_waking): {', '.join(parts)}" in outputs["graph.json"][1]


def test_the_call_graph_has_the_dashed_wakes_edge_and_no_wakeups_hides_it(reading, outputs):
    woken = [(sleep, switch_in) for sleep, waker, switch_in in reading.woken if "sock_def_readable" in waker.stack]
    waited_ms = sum(switch_in - sleep.stamp_s for sleep, switch_in in woken) * 1000
    dot = outputs["graph.dot"][0].read_text()
    edge = re.search(r"sock_def_readable -> sk_wait_data\s*\[([^\]]*)\]", dot)
    assert edge is not None
    assert "dashed" in edge.group(1)
    assert f'label="wakes {len(woken)} x, {waited_ms:.2f} ms waited"' in edge.group(1)
    assert "dashed blue edges: A wakes B" in dot  # the caption says what the edge means
    hidden = outputs["hidden.dot"][0].read_text()
    assert "sock_def_readable -> sk_wait_data" not in hidden
    assert "1 wakeup edge hidden (--no-wakeups)" in hidden


def drawn(path) -> tuple[set[str], set[tuple[str, str]], set[tuple[str, str]]]:
    """A DOT file's boxes, solid call edges and dashed wakes edges (read by graphviz, not by the tool)."""
    import pygraphviz

    agraph = pygraphviz.AGraph(str(path))
    edges = [(str(edge[0]), str(edge[1]), "dashed" in (edge.attr.get("style") or "")) for edge in agraph.edges()]
    return {str(node) for node in agraph.nodes()}, {(a, b) for a, b, dashed in edges if not dashed}, {(a, b) for a, b, dashed in edges if dashed}


def test_a_drawn_sleep_brings_in_its_waker_and_the_path_to_it(reading, outputs):
    """--max-nodes 40 grows to tcp_rcv_established but not to sock_def_readable; the wakes edge of the drawn sk_wait_data
    brings in the rest of a waker's call path from the raw text, and every box stays reachable from a top-level function."""
    nodes, solid, _ = drawn(outputs["small-hidden.dot"][0])
    assert "sk_wait_data" in nodes and "sock_def_readable" not in nodes and len(nodes) == 40
    nodes, solid, dashed = drawn(outputs["small.dot"][0])
    assert dashed == {("sock_def_readable", "sk_wait_data")} and len(nodes) <= 40 and len(solid) + len(dashed) <= 200
    stacks = {waker.stack[: waker.stack.index("sock_def_readable") + 1] for _, waker, _ in reading.woken if "sock_def_readable" in waker.stack}
    assert any(set(zip(stack, stack[1:])) <= solid for stack in stacks)  # one waker's whole path, from its top-level call
    assert {"tcp_rcv_established", "tcp_data_queue", "tcp_data_ready"} <= nodes  # what its tail is in the raw text (tests/data/sched)
    tops = {record.body.split("(")[0] for record in fg_text_records(SAMPLE) if record.depth == 0 and record.body.endswith("{")}
    callees: dict[str, set[str]] = {}
    for caller, callee in solid:
        callees.setdefault(caller, set()).add(callee)
    reached, todo = set(), [name for name in nodes if name in tops]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(callees.get(name, ()))
    assert reached == nodes
    assert "and from drawn sleeps to the functions that woke them" in outputs["small.dot"][1]


def test_wakers_tree_of_tcp_recvmsg(reading, outputs):
    expected: Counter[str] = Counter()
    for sleep, waker, switch_in in reading.woken:
        if "tcp_recvmsg" in sleep.stack:
            chain = ";".join(waker.stack) if waker.stack else f"[task {waker.comm} with no traced call open]"
            expected[f"{chain};tcp_recvmsg"] += round((switch_in - sleep.stamp_s) * 1e9)
    lines = dict(line.rsplit(" ", 1) for line in outputs["wakers.folded"][0].read_text().splitlines())
    assert set(lines) == set(expected)
    for path, waited_ns in expected.items():
        assert abs(int(lines[path]) - waited_ns) <= 1
    graph = json.loads(outputs["wakers.json"][0].read_text())
    edges = {(edge["caller"], edge["callee"]): edge["calls"] for edge in graph["edges"]}
    assert edges[("try_to_wake_up", "tcp_recvmsg")] == sum(1 for sleep, waker, _ in reading.woken if "tcp_recvmsg" in sleep.stack and waker.stack)
    assert edges[("sock_def_readable", "__wake_up_sync_key")] == sum(1 for _, waker, _ in reading.woken if "sock_def_readable" in waker.stack)
    assert graph["stats"]["wakers"] and graph["stats"]["reversed"]
    root = next(node for node in graph["nodes"] if node["name"] == "tcp_recvmsg")
    assert root["calls"] == sum(1 for sleep, _, _ in reading.woken if "tcp_recvmsg" in sleep.stack)


def test_timeline_flows_pair_up_from_the_wakeup_to_the_woken_tasks_next_slice(reading, outputs):
    events = json.loads(outputs["t.trace.json"][0].read_text())["traceEvents"]
    slices: dict[tuple[int, int], list[dict]] = {}
    for event in events:
        if event["ph"] == "X":
            slices.setdefault((event["pid"], event["tid"]), []).append(event)
    starts = {event["id"]: event for event in events if event["ph"] == "s"}
    ends = {event["id"]: event for event in events if event["ph"] == "f"}
    assert set(starts) == set(ends) and len(starts) == sum(1 for event in events if event["ph"] == "s")
    names = {(event["pid"], event["tid"]): event["args"]["name"] for event in events if event["name"] == "thread_name"}
    expected = Counter((waker.task, round(waker.stamp_s * 1e6), woken, round(switch_in * 1e6)) for waker, woken, switch_in in reading.handovers)
    drawn: Counter[tuple[str, int, str, int]] = Counter()
    for flow, start in starts.items():
        end = ends[flow]
        assert (start["name"], start["cat"]) == (end["name"], end["cat"]) and end.get("bp") == "e"
        for point in (start, end):  # bound: strictly inside a slice of its own track
            assert any(item["ts"] < point["ts"] < item["ts"] + item["dur"] for item in slices[(point["pid"], point["tid"])])
        running = [item for item in slices[(end["pid"], end["tid"])] if item["ts"] < end["ts"] < item["ts"] + item["dur"]]
        assert [item["name"] for item in running] == ["running"] and running[0]["ts"] == pytest.approx(end["ts"], abs=0.002)
        woken = names[(end["pid"], end["tid"])].removesuffix(" on/off CPU").rsplit("-", 1)[1]
        waker = names[(start["pid"], start["tid"])].removesuffix(" on/off CPU").rsplit("-", 1)[1]
        waker = f"0/{start['tid'] & 0xFFFF}" if waker == "0" else waker
        drawn[(waker, round(start["ts"]), woken, round(running[0]["ts"]))] += 1
    assert not drawn - expected  # every arrow is a wakeup of the raw text, from its waker to the switch-in it ended
    not_drawn = re.search(r"(\d+) wakeups? not drawn", outputs["t.trace.json"][1])
    assert sum(drawn.values()) + (int(not_drawn.group(1)) if not_drawn else 0) == len(reading.handovers) > 300


def test_wakers_is_refused_in_one_line_without_scheduler_events_and_suggests_names(tmp_path):
    result = run_cli("visualize", "-i", str(NO_EVENTS), "-o", str(tmp_path / "x.svg"), "--chart", "", "--wakers", "tcp_recvmsg")
    assert_one_line_error(result, "--wakers needs scheduler events")
    result = run_cli("visualize", "-i", str(SAMPLE), "-o", str(tmp_path / "x.svg"), "--chart", "", "--wakers", "tcp_recvmesg")
    assert_one_line_error(result, "did you mean tcp_recvmsg")


def test_rules_name_the_two_ends(km):
    assert km.waking_function(["tcp_data_ready", "sock_def_readable", "__wake_up_sync_key", "__wake_up_common_lock", "__wake_up_common",
                               "woken_wake_function", "default_wake_function", "try_to_wake_up"]) == "sock_def_readable"
    assert km.frame_that_slept(["tcp_recvmsg_locked", "sk_wait_data", "wait_woken", "schedule_timeout", "schedule", "__traceiter_sched_switch"]) == "sk_wait_data"
    assert km.frame_that_slept(["do_nanosleep", "schedule", "__schedule"]) == "do_nanosleep"
    assert km.waking_function(["run_timer_softirq", "call_timer_fn", "process_timeout", "wake_up_process", "try_to_wake_up"]) == "process_timeout"
    assert km.waker_context(["ktime_get", "irq_exit_rcu", "handle_softirqs", "run_timer_softirq", "call_timer_fn", "process_timeout",
                             "wake_up_process", "try_to_wake_up"], "softirq") == "timer (run_timer_softirq softirq)"


def test_without_timestamps_the_wakeups_are_counted_and_their_wait_is_unknown(tmp_path):
    sample = DATA / "sched" / "fg-sched-default.txt.xz"  # the same load, default columns: no timestamps, no task column
    wakings = sum(1 for line in read_lines(sample) if "/* sched_waking: " in line)
    out = tmp_path / "graph.json"
    result = run_cli("visualize", "-i", str(sample), "-o", str(out), "--chart", "")
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["wakeups"]
    assert rows and all(row["wait_us"] is None and row["wait_max_us"] is None for row in rows)
    assert 0 < sum(row["sleeps"] for row in rows) <= wakings
    assert any(row["waking_function"] == "sock_def_readable" and row["slept_in"] == "sk_wait_data" for row in rows)


def test_timeline_of_one_task_in_a_window_keeps_its_wakers_tracks(reading, tmp_path):
    out = tmp_path / "t.trace.json"
    result = run_cli("visualize", "-i", str(SAMPLE), "-o", str(out), "--chart", "", "--pid", "125", "--time-window", "12.3,12.5")
    assert result.returncode == 0, result.stderr
    events = json.loads(out.read_text())["traceEvents"]
    names = {(event["pid"], event["tid"]): event["args"]["name"] for event in events if event["name"] == "thread_name"}
    ends = [event for event in events if event["ph"] == "f"]
    starts = [event for event in events if event["ph"] == "s"]
    assert {names[(end["pid"], end["tid"])] for end in ends} == {"python3-125 on/off CPU"}
    expected = [item for item in reading.handovers if item[1] == "125" and 12.3 <= item[0].stamp_s and item[2] <= 12.5]
    assert len(ends) == len(starts) == len(expected) > 10
    assert {names[(start["pid"], start["tid"])].removesuffix(" on/off CPU").rsplit("-", 1)[1] for start in starts} == {item[0].task for item in expected}
    assert all(12.3e6 <= event["ts"] <= 12.5e6 for event in starts + ends)


def test_a_wakers_tree_cut_at_14_levels_names_the_command_that_shows_the_rest(reading, tmp_path):
    """The waker paths are longer than 14 levels: the '...' lines point to --wakers F --depth N (not --root, which shows
    callees), and that command shows every waker path of the raw text to its top-level call."""
    result = run_cli("visualize", "-i", str(SAMPLE), "--wakers", "tcp_recvmsg", "-o", "-", "--chart", "")
    assert result.returncode == 0, result.stderr
    hints = re.findall(r"\(deeper: ([^)]*)\)", result.stdout)
    deepest = max(len(waker.stack) for sleep, waker, _ in reading.woken if "tcp_recvmsg" in sleep.stack)
    assert hints and set(hints) == {f"--wakers tcp_recvmsg --depth {deepest}"} and deepest > 14  # below F, the waker's whole stack
    result = run_cli("visualize", "-i", str(SAMPLE), *hints[0].split(), "-o", "-", "--chart", "", "--node-thres", "0")
    assert result.returncode == 0, result.stderr
    assert "(deeper:" not in result.stdout and re.search(r"^all \d+ call paths shown$", result.stdout, re.M)
    tops = {waker.stack[0] for sleep, waker, _ in reading.woken if "tcp_recvmsg" in sleep.stack and waker.stack}
    assert all(re.search(rf"\+-{top}$", result.stdout, re.M) for top in tops)


def test_caption_lines_wrap_to_the_drawing(outputs):
    """The wakes legend (about 300 characters) was one caption row, wider than the drawing and cut off in the PNG."""
    import html

    import pygraphviz

    agraph = pygraphviz.AGraph(str(outputs["small.dot"][0]))
    label = agraph.graph_attr["label"]
    rows = [html.unescape(row).replace("\xa0", " ") for row in re.findall(r'<TD ALIGN="LEFT"[^>]*>(.*?)</TD>', label)]
    assert rows and max(len(row) for row in rows) <= 154
    joined = " ".join(row.strip() for row in rows)
    assert "dashed blue edges: A wakes B = the waker's innermost traced function that is not wakeup machinery (A) ended sleeps" in joined
    assert "sleeps and time waited, whatever the focus" in joined


def test_without_timestamps_a_wakers_page_is_as_wide_as_the_sleeps(tmp_path):
    """--wakers F as a page without timestamps: widths are sleeps (not the calls of a subtree, which would count a sleep
    once per level of its waker's path), the whole = the sleeps the JSON's wakeups attribute under F."""
    sample = DATA / "sched" / "fg-sched-default.txt.xz"
    result = run_cli("visualize", "-i", str(sample), "-o", str(tmp_path / "g.json"), "--chart", "")
    assert result.returncode == 0, result.stderr
    sleeps = sum(row["sleeps"] for row in json.loads((tmp_path / "g.json").read_text())["wakeups"] if "tcp_recvmsg" in row["sleeping_path"])
    result = run_cli("visualize", "-i", str(sample), "-o", str(tmp_path / "w.flame.html"), "--chart", "", "--wakers", "tcp_recvmsg")
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "w.flame.html").read_text()
    assert f"frame width = sleeps of tcp_recvmsg woken through the call path; all = {sleeps:,} sleeps (the trace has no timestamps" in page
