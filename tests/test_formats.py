"""visualize on real recordings of every ftrace text format: exact counts and edges.

Expected values come from independent readings of the same files (plain string
splitting here, the kernel's own per-CPU stats, the raw ring-buffer decode),
never from the tool itself.
"""

from __future__ import annotations

import gzip
import re
import shutil
from collections import Counter, defaultdict
from pathlib import Path

from conftest import DATA, edges_by_pair, graph_json, nodes_by_name, proc_line_fields, read_lines


def graph_bodies(lines: list[str]) -> list[str]:
    return [line.rsplit("|  ", 1)[1] for line in lines if "|  " in line and not line.startswith("#")]


def call_name(text: str) -> str:
    return re.split(r"[ (]", text.strip(), maxsplit=1)[0]


def expected_graph_counts(lines: list[str]) -> tuple[int, Counter]:
    """Ring-buffer events (entry 1, leaf 2, exit 1) and calls per function, by plain splitting."""
    events = 0
    calls: Counter = Counter()
    for body in graph_bodies(lines):
        text = body.strip()
        if text.startswith("}"):
            events += 1
        elif text.endswith("{") or (text.endswith("*/") and " { /*" in text):
            events += 1
            calls[call_name(text)] += 1
        elif text.endswith(";") or ("); /*" in text and not text.startswith("/*")):
            events += 2
            calls[call_name(text)] += 1
    return events, calls


def reference_edges_by_pid(lines: list[str]) -> Counter:
    """Caller -> callee counts for traces with funcgraph-proc, nesting per pid from indentation.

    Calls whose caller frame is missing are resolved by a later "} /* caller */" one level up.
    """
    open_calls: dict[str, dict[int, str]] = defaultdict(dict)
    waiting: dict[str, list[tuple[int, str]]] = defaultdict(list)
    edges: Counter = Counter()
    for line in lines:
        fields = proc_line_fields(line)
        if fields is None:
            continue
        pid, depth, text = fields
        frames = open_calls[pid]
        if text.startswith("}"):
            tail = text[5:].split()[0] if text.startswith("} /*") else None
            if depth not in frames or (tail and frames[depth] != tail):
                if tail:
                    edges.update((tail, callee) for d, callee in waiting[pid] if d == depth + 1)
                waiting[pid] = [(d, c) for d, c in waiting[pid] if d <= depth]
            for d in [d for d in frames if d >= depth]:
                del frames[d]
            continue
        if text.startswith("/*"):
            continue
        name = call_name(text)
        parent = frames.get(depth - 1)
        for d in [d for d in frames if d >= depth]:
            del frames[d]
        waiting[pid] = [(d, c) for d, c in waiting[pid] if d < depth]
        if parent:
            edges[(parent, name)] += 1
        elif depth > 0:
            waiting[pid].append((depth, name))
        if text.endswith("{") or " { /*" in text:
            frames[depth] = name
    return edges


def kernel_overrun(path: Path) -> int:
    return int(re.search(r"^overrun: (\d+)", path.read_text(), re.M).group(1))


def test_function_graph_with_abstime_proc_tail_matches_per_pid_reference(tmp_path):
    trace = DATA / "fg-abstime-proc" / "trace.txt.xz"
    lines = read_lines(trace)
    graph = graph_json(tmp_path, trace)
    events, calls = expected_graph_counts(lines)
    assert graph["stats"]["events"] == events
    assert graph["stats"]["unparsed_lines"] == 0
    assert graph["stats"]["lost_events"] == 0
    nodes = nodes_by_name(graph)
    assert {name: node["calls"] for name, node in nodes.items() if node["calls"]} == dict(calls)
    assert edges_by_pair(graph) == dict(reference_edges_by_pid(lines))
    # The first call tree of the file, as printed at its top.
    edges = edges_by_pair(graph)
    for edge in [("x64_sys_call", "__x64_sys_dup2"), ("__x64_sys_dup2", "ksys_dup3"), ("ksys_dup3", "do_dup2"), ("do_dup2", "filp_close")]:
        assert edges[edge] >= 1


def test_raw_ring_buffer_event_count_matches_text(tmp_path):
    """The lab decoded the same window's binary pages: 77,813 funcgraph_entry + 77,748 funcgraph_exit."""
    trace = DATA / "raw-binary" / "trace.txt.xz"
    graph = graph_json(tmp_path, trace)
    assert graph["stats"]["events"] == 77_813 + 77_748
    assert edges_by_pair(graph) == dict(reference_edges_by_pid(read_lines(trace)))


def test_default_function_graph_from_trace_pipe_counts_lost_events_once(tmp_path):
    trace = DATA / "fg-default" / "trace.txt.xz"
    lines = read_lines(trace)
    graph = graph_json(tmp_path, trace)
    events, calls = expected_graph_counts(lines)
    stats = graph["stats"]
    assert stats["events"] == events == 89_578
    assert stats["unparsed_lines"] == 0
    # CPU0's LOST lines, with the one loss printed twice counted once, equal the kernel's overrun counter.
    assert stats["lost_events_per_cpu"]["0"] == kernel_overrun(DATA / "fg-default" / "stats-cpu0") == 191_536
    lost_lines = Counter()
    for line in lines:
        match = re.match(r"CPU:(\d+) \[LOST (\d+) EVENTS\]", line)
        if match:
            lost_lines[match.group(1)] += int(match.group(2))
    assert stats["lost_events_per_cpu"]["1"] == lost_lines["1"]
    assert stats["duplicate_lost_lines"] == 1
    assert lost_lines["0"] - stats["lost_events_per_cpu"]["0"] == 9_793  # the repeated "CPU:0 [LOST 9793 EVENTS]"
    nodes = nodes_by_name(graph)
    for name in ("_raw_spin_lock", "__cond_resched", "vfs_read", "read_hpet"):
        assert nodes[name]["calls"] == calls[name]
    # The reader's own trace_pipe reads dominate an unfiltered recording: vfs_read -> ring-buffer lock.
    top = graph["edges"][0]
    assert (top["caller"], top["callee"]) == ("vfs_read", "_raw_spin_lock")
    assert top["calls"] <= nodes["_raw_spin_lock"]["calls"]
    # Module functions: the node is the bare name, the module an attribute.
    assert nodes["p9_client_rpc"]["module"] == "9pnet"
    assert "p9_client_rpc [9pnet]" not in nodes


def test_cpumask_recording_repeated_loss_counts_are_real_losses(tmp_path):
    """fg-cpumask prints equal counts far apart (598, 2992...): separate losses, all counted."""
    trace = DATA / "fg-cpumask" / "trace.txt.xz"
    graph = graph_json(tmp_path, trace)
    assert graph["stats"]["lost_events_per_cpu"] == {"0": kernel_overrun(DATA / "fg-cpumask" / "stats-cpu0")}
    assert graph["stats"]["duplicate_lost_lines"] == 0


def test_overflow_loses_most_events_and_orphan_exits_name_their_callers(tmp_path):
    trace = DATA / "fg-overflow-pipe" / "trace.txt.xz"
    graph = graph_json(tmp_path, trace)
    stats = graph["stats"]
    assert stats["lost_events_per_cpu"] == {"0": 260_939, "1": 258_742}  # = the kernel's overrun counters
    assert stats["lost_events"] > 100 * stats["events"] / 2
    assert stats["orphan_exits"] > 0
    edges = edges_by_pair(graph)
    # Top of the file: __d_lookup's entry was lost, its "} /* __d_lookup */" one level up names it as the caller.
    assert edges[("__d_lookup", "d_same_name")] >= 1
    assert nodes_by_name(graph)["v9fs_lookup_revalidate"]["module"] == "9p"


def test_graph_function_recording_keeps_clone_names(tmp_path):
    trace = DATA / "fg-graphfunc" / "trace.txt.xz"
    graph = graph_json(tmp_path, trace)
    events, calls = expected_graph_counts(read_lines(trace))
    assert graph["stats"]["events"] == events
    nodes = nodes_by_name(graph)
    assert nodes["tcp_sendmsg"]["calls"] == calls["tcp_sendmsg"] > 0
    assert nodes["finish_task_switch.isra.0"]["calls"] == calls["finish_task_switch.isra.0"] > 0
    assert "finish_task_switch" not in nodes
    assert edges_by_pair(graph)[("tcp_sendmsg", "tcp_sendmsg_locked")] >= 1


def test_newer_kernel_default_function_graph(tmp_path):
    trace = DATA / "fg-newer-kernel" / "trace-default.txt.xz"
    graph = graph_json(tmp_path, trace)
    events, calls = expected_graph_counts(read_lines(trace))
    assert graph["stats"]["events"] == events
    assert graph["stats"]["unparsed_lines"] == 0
    assert {n["name"]: n["calls"] for n in graph["nodes"] if n["calls"]} == dict(calls)


def function_tracer_reference(lines: list[str]) -> tuple[Counter, Counter]:
    calls: Counter = Counter()
    edges: Counter = Counter()
    for line in lines:
        if line.startswith("#") or ": " not in line or " <-" not in line:
            continue
        body = line.split(": ", 1)[1]
        name, parent = body.split(" <-")
        name = name.split("(")[0]
        calls[name] += 1
        edges[(parent, name)] += 1
    return calls, edges


def test_function_tracer_from_trace_pipe_with_lost_events(tmp_path):
    trace = DATA / "function-tracer" / "trace.txt.xz"
    lines = read_lines(trace)
    graph = graph_json(tmp_path, trace)
    calls, edges = function_tracer_reference(lines)
    assert graph["stats"]["events"] == sum(calls.values())
    assert {n["name"]: n["calls"] for n in graph["nodes"] if n["calls"]} == dict(calls)
    assert edges_by_pair(graph) == dict(edges)
    stream_stats = DATA / "function-tracer" / "stats-stream"
    assert graph["stats"]["lost_events_per_cpu"] == {"0": kernel_overrun(stream_stats / "cpu0"), "1": kernel_overrun(stream_stats / "cpu1")}
    # A parent that is never traced itself is a node with 0 calls.
    assert nodes_by_name(graph)["rb_simple_write"]["calls"] == 0


def test_function_tracer_variants(tmp_path):
    for trace in [
        DATA / "function-tracer" / "trace-file-sample.txt.xz",
        DATA / "function-variants" / "irq-info-off.txt.xz",
        DATA / "function-variants" / "record-tgid.txt.xz",
        DATA / "fg-newer-kernel" / "function-default.txt.xz",
    ]:
        graph = graph_json(tmp_path, trace)
        calls, edges = function_tracer_reference(read_lines(trace))
        assert graph["stats"]["unparsed_lines"] == 0, trace
        assert edges_by_pair(graph) == dict(edges), trace
        assert {n["name"]: n["calls"] for n in graph["nodes"] if n["calls"]} == dict(calls), trace
        assert graph["stats"]["formats"] == ["function"]


def test_trace_cmd_report_text(tmp_path):
    trace = DATA / "trace-cmd" / "report-head.txt.xz"
    lines = read_lines(trace)
    graph = graph_json(tmp_path, trace)
    dropped = sum(int(m.group(1)) for m in (re.match(r"CPU:0 \[(\d+) EVENTS DROPPED\]", line) for line in lines) if m)
    assert graph["stats"]["lost_events_per_cpu"] == {"0": dropped}
    assert graph["stats"]["formats"] == ["trace-cmd report"]
    assert graph["stats"]["unparsed_lines"] == 0
    edges = edges_by_pair(graph)
    assert edges[("hrtimer_interrupt", "_raw_spin_lock_irqsave")] >= 1
    assert edges[("ktime_get_update_offsets_now", "read_hpet")] >= 1


CATALOGUE = DATA / "catalogue"


def test_latency_format_with_overrun_lines(tmp_path):
    graph = graph_json(tmp_path, CATALOGUE / "latency-allopts.txt")
    assert graph["stats"]["unparsed_lines"] == 0
    assert graph["stats"]["events"] == 3
    assert nodes_by_name(graph)["exit_to_user_mode_prepare"]["total_time_us"] == 4.803


def test_no_columns_and_comment_lines(tmp_path):
    graph = graph_json(tmp_path, CATALOGUE / "nocols.txt")
    assert edges_by_pair(graph) == {("exit_to_user_mode_prepare", "fpregs_assert_state_consistent"): 1}
    comments = graph_json(tmp_path, CATALOGUE / "events-marker.txt", CATALOGUE / "nocols.txt")
    assert comments["stats"]["unparsed_lines"] == 0
    # the trace events are comments, not calls, but ring-buffer events (as a trace.dat's are); a marker is neither
    assert comments["stats"]["events"] == 4 + 2
    assert comments["stats"]["trace_events"] == {"sched_switch": 1, "sched_wakeup": 1}


def test_funcgraph_args_and_modules_before_arguments(tmp_path):
    graph = graph_json(tmp_path, CATALOGUE / "newer-args.txt")
    assert graph["stats"]["unparsed_lines"] == 0
    edges = edges_by_pair(graph)
    # p9pdu_writef and vring_map_one_sg are excerpts printed at the same depth: siblings, no edge.
    assert edges == {("__x64_sys_dup2", "ksys_dup3"): 1, ("ksys_dup3", "do_dup2"): 1}
    nodes = nodes_by_name(graph)
    assert nodes["p9pdu_writef"]["module"] == "9pnet"
    assert nodes["mutex_unlock"]["total_time_us"] == 193.851


def test_function_tracer_args_stack_traces_and_no_context(tmp_path):
    graph = graph_json(tmp_path, CATALOGUE / "function-func-args.txt", CATALOGUE / "func-stack-trace.txt", CATALOGUE / "context-info-off.txt", CATALOGUE / "record-tgid.txt")
    assert graph["stats"]["unparsed_lines"] == 0
    edges = edges_by_pair(graph)
    assert edges == {
        ("__schedule", "finish_task_switch.isra.0"): 1,
        ("__x64_sys_futex", "do_futex"): 1,
        ("do_idle", "tick_nohz_idle_retain_tick"): 1,
        ("p9_parse_header", "p9pdu_readf"): 1,
        ("__sock_sendmsg", "tcp_sendmsg"): 1,
        ("rb_simple_write", "mutex_unlock"): 2,
    }


def test_every_duration_marker(tmp_path):
    graph = graph_json(tmp_path, CATALOGUE / "durations.txt")
    nodes = nodes_by_name(graph)
    assert nodes["irq_enter_rcu"]["total_time_us"] == 708.788
    assert nodes["_raw_spin_lock_irqsave"]["total_time_us"] == 2.453
    assert graph["stats"]["orphan_exits"] == 5
    assert graph["stats"]["unparsed_lines"] == 0


def test_irq_arrow_breaks_the_call_chain(tmp_path):
    """Other architectures print irq arrows: the handler is not a callee of the interrupted function."""
    trace = tmp_path / "arrows.txt"
    trace.write_text(
        " 0)               |  memcpy_orig() {\n"
        " 0)   ==========> |\n"
        " 0)               |    __sysvec_apic_timer_interrupt() {\n"
        " 0)   1.000 us    |      hrtimer_interrupt();\n"
        " 0)   3.000 us    |    }\n"
        " 0)   <========== |\n"
        " 0)   1.000 us    |    memmove();\n"
        " 0)   9.000 us    |  }\n"
    )
    graph = graph_json(tmp_path, trace)
    assert edges_by_pair(graph) == {("__sysvec_apic_timer_interrupt", "hrtimer_interrupt"): 1, ("memcpy_orig", "memmove"): 1}
    assert graph["stats"]["unparsed_lines"] == 0


def test_nesting_follows_the_task_across_cpus(tmp_path):
    """Without funcgraph-proc, switch blocks say which task runs on a CPU; a task keeps its stack on another CPU."""
    trace = tmp_path / "migrate.txt"
    trace.write_text(
        " ------------------------------------------\n"
        " 0)    bash-121    =>    cat-200   \n"
        " ------------------------------------------\n\n"
        " 0)               |  vfs_read() {\n"
        " ------------------------------------------\n"
        " 0)    cat-200     =>    bash-121   \n"
        " ------------------------------------------\n\n"
        " 0)   1.000 us    |  mutex_unlock();\n"
        " ------------------------------------------\n"
        " 1)    <idle>-0    =>    cat-200   \n"
        " ------------------------------------------\n\n"
        " 1)   1.000 us    |    rw_verify_area();\n"
        " 1)   5.000 us    |  } /* vfs_read */\n"
    )
    graph = graph_json(tmp_path, trace)
    assert edges_by_pair(graph) == {("vfs_read", "rw_verify_area"): 1}
    assert graph["stats"]["orphan_exits"] == 0
    assert nodes_by_name(graph)["vfs_read"]["total_time_us"] == 5.0
    assert nodes_by_name(graph)["vfs_read"]["self_time_us"] == 4.0


def test_several_inputs_aggregate_and_compressed_inputs_read(tmp_path):
    plain = tmp_path / "trace.txt"
    with plain.open("w") as handle:
        handle.write("\n".join(read_lines(DATA / "fg-graphfunc" / "trace.txt.xz")))
    gz = tmp_path / "trace.txt.gz"
    with plain.open("rb") as source, gzip.open(gz, "wb") as target:
        shutil.copyfileobj(source, target)
    one = nodes_by_name(graph_json(tmp_path, plain))
    both = graph_json(tmp_path, gz, DATA / "fg-graphfunc" / "trace.txt.xz")
    assert nodes_by_name(both)["tcp_sendmsg"]["calls"] == 2 * one["tcp_sendmsg"]["calls"]
    assert len(both["stats"]["inputs"]) == 2


def test_data_file_metadata_and_kernel_stats(tmp_path):
    """The record data file: '# key: value' lines, the trace, per-CPU kernel stats at the end."""
    lines = read_lines(DATA / "fg-default" / "trace.txt.xz")
    data = tmp_path / "kernel-magnifier.data"
    header = ["# kernel-magnifier-data: 1", "# kernel: 6.1.0-56-amd64", "# tracer: function_graph", "# cpus: 2"]
    footer = [
        "# cpu0-stats: entries=0 overrun=191536 commit-overrun=0 dropped-events=0 read-events=44863",
        "# cpu1-stats: entries=0 overrun=214342 commit-overrun=0 dropped-events=0 read-events=44715",
    ]
    data.write_text("\n".join(header + lines + footer) + "\n")
    graph = graph_json(tmp_path, data)
    stats = graph["stats"]
    assert stats["metadata"]["kernel"] == "6.1.0-56-amd64"
    assert stats["kernel_stats"]["1"]["overrun"] == 214_342
    # Per CPU the larger of the LOST lines and the kernel's counters: CPU1 lost more than its LOST lines said.
    assert stats["lost_events_per_cpu"] == {"0": 191_536, "1": 214_342}
