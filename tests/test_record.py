"""record's pieces that need no tracing kernel: CPU masks, tracefs list syntax, refusals before tracefs is touched.

The recording itself is tested on a real Debian kernel under QEMU: tests/vm (make vm-test).
"""

from __future__ import annotations

import lzma
import os
import re
import shutil
import subprocess

import pytest
from conftest import DATA, assert_one_line_error, edges_by_pair, graph_json, nodes_by_name, read_lines, run_cli


@pytest.mark.parametrize(
    ("text", "cpus", "mask"),
    [
        ("1", 2, 0b1),  # a hex mask as tracing_cpumask takes it: CPU 0
        ("3", 2, 0b11),
        ("f", 4, 0xF),
        ("0x2", 2, 0b10),
        ("10", 8, 1 << 4),  # hex: CPU 4, not CPUs 1 and 0 (that is -C 0,1)
        ("1,00000000", 40, 1 << 32),  # the kernel's own notation for more than 32 CPUs
    ],
)
def test_cpumask_is_a_hex_mask(km, text, cpus, mask):
    assert km.parse_cpumask(text, list(range(cpus))) == mask


@pytest.mark.parametrize(
    ("text", "cpus", "mask"),
    [
        ("0", 2, 0b1),  # perf's -C: CPU numbers
        ("1", 2, 0b10),
        ("10", 16, 1 << 10),
        ("0,2-3", 4, 0b1101),
        ("2-2", 4, 0b100),
        (" 0-1 ", 2, 0b11),
    ],
)
def test_cpu_option_is_a_cpu_list(km, text, cpus, mask):
    assert km.parse_cpu_selection(text, list(range(cpus))) == mask


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "--cpumask 0 selects no CPU"),
        ("zz", "--cpumask zz: not a hex CPU mask"),
        ("4", "--cpumask 4: CPU 2 does not exist (online CPUs: 0-1)"),
        ("0,2-3", "--cpumask 0,2-3: a CPU list, not a hex mask: use -C/--cpu 0,2-3"),  # refused, not guessed
        ("0,1", "--cpumask 0,1: a CPU list, not a hex mask"),
        ("f" * 5000, "CPU 19999 does not exist"),
    ],
)
def test_cpumask_rejects_what_the_machine_does_not_have(km, text, message):
    with pytest.raises(km.UserError, match=re.escape(message)):
        km.parse_cpumask(text, [0, 1])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0,5", "--cpu 0,5: CPU 5 does not exist (online CPUs: 0-1)"),
        ("1-0", "--cpu 1-0: the range 1-0 runs backwards (write 0-1)"),
        ("0x3", "--cpu 0x3: not a CPU list (0, 0,2-3); for a hex mask use -M/--cpumask"),
        ("", "not a CPU list"),
        ("0,,1", "not a CPU list"),
        ("9" * 5000, "does not exist"),  # no int() of 5000 digits, no mask of 2**N
    ],
)
def test_cpu_option_rejects_what_is_not_a_list_of_existing_cpus(km, text, message):
    with pytest.raises(km.UserError, match=re.escape(message)):
        km.parse_cpu_selection(text, [0, 1])


def test_cpumask_is_written_in_the_kernels_notation(km):
    assert km.kernel_cpumask(0b101) == "5"
    assert km.kernel_cpumask((1 << 40) | 1) == "100,00000001"
    assert km.format_cpu_list([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"


def test_filter_and_pid_files_read_back_as_entries(km):
    """The read-back forms of real 6.1 tracefs files (see ../shared/lab notes): comments and 'no pid' are empty lists."""
    assert km.list_entries("#### all functions enabled ####\n") == []
    assert km.list_entries("no pid\n") == []
    assert km.list_entries("tcp_sendmsg\nvirtnet_poll [virtio_net]\n") == ["tcp_sendmsg", "virtnet_poll:mod:virtio_net"]
    assert km.list_entries("12\n345\n") == ["12", "345"]


def test_restore_of_an_unexpanded_buffer_size_on_plain_files_not_tracefs(km, tmp_path):
    """Plain files stand in for tracefs here (no tracing kernel on the host): the value written back is the expanded size."""
    size = tmp_path / "buffer_size_kb"
    size.write_text("7 (expanded: 1408)\n")
    settings = km.BorrowedSettings()
    settings.set(str(size), "64")
    assert size.read_text() == "64"
    assert settings.restore() == []
    assert size.read_text() == "1408"


def test_record_needs_root(km, tmp_path):
    """Really not root: as root, this process drops its effective uid to nobody for the check and takes it back."""
    args = km.build_parser().parse_args(["record", "--record-time", "1", "-o", str(tmp_path / "x.data")])
    args.command_argv = []
    was_root = os.geteuid() == 0
    if was_root:
        os.seteuid(65534)
    try:
        with pytest.raises(km.UserError, match="needs root: run it with sudo"):
            km.run_record(args)
    finally:
        if was_root:
            os.seteuid(0)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["net.data.xz", "net.data.gz"])
def test_a_compressed_name_needs_the_text_format(tmp_path, name):
    """A trace.dat compresses its own pages (version 7): a .gz/.xz around it is for --format text only."""
    result = run_cli("record", "-o", name, "--record-time", "1", cwd=tmp_path)
    assert_one_line_error(result, f"-o {name}: only --format text is compressed while recording (drop the ending: a trace.dat compresses its pages itself)")
    assert not list(tmp_path.iterdir())


def test_command_separator_is_only_for_record(tmp_path):
    result = run_cli("visualize", "--", "ls", cwd=tmp_path)
    assert result.returncode == 2 and "-- COMMAND is only for record" in result.stderr
    result = run_cli("record", "--", cwd=tmp_path)
    assert result.returncode == 2 and "-- must be followed by the command" in result.stderr


TRACE_CMD_SPELLINGS = [
    (["-p", "function"], ["--tracer", "function"]),
    (["-g", "tcp_sendmsg", "-g", "tcp_recvmsg"], ["--graph-function", "tcp_sendmsg", "--graph-function", "tcp_recvmsg"]),
    (["-l", "vfs_*"], ["--filter", "vfs_*"]),
    (["-n", "rcu_*"], ["--notrace", "rcu_*"]),
    (["-b", "2048"], ["--buffer-size", "2048"]),
    (["-M", "5"], ["--cpumask", "5"]),
    (["-C", "0,2-3"], ["--cpu", "0,2-3"]),
    (["-P", "1", "-P", "2"], ["--pid", "1", "--pid", "2"]),
    (["--max-graph-depth", "4"], ["--max-depth", "4"]),
    (["-a"], ["--all-cpus"]),
    (["-e", "sched_switch", "-e", "irq"], ["--event", "sched_switch", "--event", "irq"]),
]


@pytest.mark.parametrize(("short", "long"), TRACE_CMD_SPELLINGS)
def test_trace_cmd_and_perf_spellings_mean_the_long_options(km, short, long):
    parser = km.build_parser()
    assert vars(parser.parse_args(["record", *short])) == vars(parser.parse_args(["record", *long]))
    assert vars(parser.parse_args(["record", *short])) != vars(parser.parse_args(["record"]))


def test_record_short_options_are_all_distinct(km):
    """No alias may shadow another option (argparse would take the last one silently): -o output, -O tracer option."""
    record = next(a for a in km.build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "record")[1]
    strings = [s for action in record._actions for s in action.option_strings]
    assert len(strings) == len(set(strings))
    assert {"-a", "-b", "-C", "-g", "-l", "-M", "-n", "-o", "-O", "-p", "-P"} <= set(strings)
    args = record.parse_args(["-o", "out.data", "-O", "funcgraph-proc", "-p", "function", "-P", "7"])
    assert (args.output, args.tracer_options, args.tracer, args.pid) == ("out.data", ["funcgraph-proc"], "function", [7])


def test_short_options_after_the_command_separator_belong_to_the_command(km):
    argv = ["record", "-p", "function", "-C", "0", "--", "ls", "-l", "-p", "-C", "--", "x"]
    options, command = km.split_command(argv)
    assert command == ["ls", "-l", "-p", "-C", "--", "x"]
    args = km.build_parser().parse_args(options)
    assert (args.tracer, args.cpu_list) == ("function", "0")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-a", "-C", "0"], "-a/--all-cpus and -C/--cpu exclude each other: give one"),
        (["-M", "1", "--cpu", "0"], "-C/--cpu and -M/--cpumask exclude each other"),
        (["--all-cpus", "--cpumask", "1"], "-a/--all-cpus and -M/--cpumask exclude each other"),
        (["-C", "0,2-3", "-M", "1", "-a"], "-a/--all-cpus and -C/--cpu and -M/--cpumask exclude each other"),
        (["--cpumask", "0,2-3"], "--cpumask 0,2-3: a CPU list, not a hex mask: use -C/--cpu 0,2-3"),
        (["-C", "1-0"], "--cpu 1-0: the range 1-0 runs backwards"),
        (["-C", "4096"], "--cpu 4096: CPU 4096 does not exist"),
    ],
)
def test_cpu_choices_are_checked_before_anything_is_touched(tmp_path, args, message):
    """Checked before the root check and before tracefs: the same one-line error for any user, nothing written."""
    result = run_cli("record", "--record-time", "1", *args, "-o", str(tmp_path / "k.data"), cwd=tmp_path)
    assert_one_line_error(result, message)
    assert not list(tmp_path.iterdir())


def test_record_help_shows_the_trace_cmd_and_perf_spellings():
    out = run_cli("record", "--help").stdout
    for spelling in ("-p {function_graph,function}, --tracer", "-g F[,F...], --graph-function", "-l F[,F...], --filter",
                     "-n F[,F...], --notrace", "-b KB, --buffer-size", "-M MASK, --cpumask", "-C LIST, --cpu LIST",
                     "-P PID, --pid", "--max-depth N, --max-graph-depth N", "-a, --all-cpus"):
        assert spelling in out, spelling
    assert "record -p function_graph -g tcp_sendmsg -C 0 -b 2048" in out
    assert "10 is CPU 4" in out


def test_a_real_record_data_file_explains_itself(tmp_path):
    """tests/data/record-demo: what `make vm-demo` recorded on the real 6.1 kernel (the README walkthrough's file)."""
    data = DATA / "record-demo" / "kernel-magnifier.data.xz"
    lines = read_lines(data)
    footer = dict(re.findall(r"^# (cpu\d+)-stats: .*read-events=(\d+)", "\n".join(lines), re.M))
    depth0_sendmsg = sum(1 for line in lines if re.search(r"\|  tcp_sendmsg\(\) \{$", line))
    graph = graph_json(tmp_path, data)
    assert graph["stats"]["events"] == sum(int(n) for n in footer.values()) == 172_564  # every event the kernel says was read
    assert graph["stats"]["lost_events"] == 0
    assert graph["stats"]["metadata"]["graph-function"] == "tcp_sendmsg tcp_recvmsg"
    assert graph["stats"]["metadata"]["end"] == "complete"
    assert nodes_by_name(graph)["tcp_sendmsg"]["calls"] == depth0_sendmsg > 200
    assert edges_by_pair(graph)[("tcp_sendmsg", "tcp_sendmsg_locked")] == depth0_sendmsg


def test_the_walkthroughs_trace_dat_explains_itself(tmp_path):
    """tests/data/record-demo-dat: what `make vm-demo` recorded with the trace.dat default (the walkthrough's file).
    Expected values from the file's bytes (the kernel's CPUSTAT counters) and, when installed, trace-cmd report."""
    data = DATA / "record-demo-dat" / "kernel-magnifier.data.xz"
    raw = lzma.decompress(data.read_bytes())
    read_events = [int(n) for n in re.findall(rb"CPU: \d+\n(?:[a-z ]+: [^\n]*\n)*?read events: (\d+)", raw)]
    graph = graph_json(tmp_path, data)
    assert graph["stats"]["events"] == sum(read_events) == 314_167  # what the record step printed (record-output.txt)
    assert graph["stats"]["lost_events"] == 0
    assert graph["stats"]["metadata"]["graph-function"] == "tcp_sendmsg tcp_recvmsg"
    assert graph["stats"]["metadata"]["end"] == "complete"
    assert graph["stats"]["metadata"]["trace.dat"] == "version 6"
    if shutil.which("trace-cmd"):
        unpacked = tmp_path / "demo.dat"
        unpacked.write_bytes(raw)
        report = subprocess.run(["trace-cmd", "report", "-i", str(unpacked)], capture_output=True, text=True, timeout=300).stdout
        depth0_sendmsg = len(re.findall(r"funcgraph_entry: .*\|  tcp_sendmsg\(\) \{$", report, re.M))
        assert nodes_by_name(graph)["tcp_sendmsg"]["calls"] == depth0_sendmsg == 412
        assert edges_by_pair(graph)[("tcp_sendmsg", "tcp_sendmsg_locked")] == depth0_sendmsg


def test_visualize_says_when_a_data_file_was_cut_short(tmp_path):
    lines = read_lines(DATA / "record-demo" / "kernel-magnifier.data.xz")
    cut = tmp_path / "cut.data"
    cut.write_text("\n".join(lines[: len(lines) // 2]) + "\n")  # copied while record was still writing
    result = run_cli("visualize", "-i", str(cut), "-o", str(tmp_path / "g.json"), "--chart", "")
    assert result.returncode == 0, result.stderr
    assert "no '# end: complete' line: the recording was cut short" in result.stdout + result.stderr


def test_record_on_this_kernel_fails_cleanly_or_needs_the_vm(tmp_path):
    """This machine's own kernel (no function_graph; function refused with EPERM): a clean one-line failure that
    leaves no data file and no tracefs mount behind. On a kernel that can trace, the VM tests cover record."""
    mounts_before = open("/proc/self/mounts").read().count(" tracefs ")
    result = run_cli("record", "--record-time", "1", "-o", str(tmp_path / "k.data"), cwd=tmp_path)
    if result.returncode == 0:
        pytest.skip("this kernel can trace: record is covered by make vm-test")
    assert_one_line_error(result, "")
    assert any(reason in result.stderr for reason in ("needs root", "no function_graph tracer", "the kernel refused", "no tracefs", "tracefs is not mounted"))
    assert not list(tmp_path.iterdir())
    assert open("/proc/self/mounts").read().count(" tracefs ") == mounts_before


# --- -e EVENT and the default scheduler events: resolved against the 6.1 kernel's real event list ---------------

AVAILABLE_EVENTS = DATA / "sched" / "available-events-6.1.list.xz"  # /sys/kernel/tracing/available_events of the VM's 6.1 kernel


def kernel_events() -> list[str]:
    return lzma.decompress(AVAILABLE_EVENTS.read_bytes()).decode().split()


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("sched:sched_switch", lambda events: ["sched:sched_switch"]),
        ("sched_switch", lambda events: ["sched:sched_switch"]),  # an event name alone: whichever system has it
        ("sched", lambda events: [e for e in events if e.split(":")[0] == "sched"]),  # a system: every event of it
        ("sched:", lambda events: [e for e in events if e.split(":")[0] == "sched"]),
        ("sched:sched_wak*", lambda events: [e for e in events if e.startswith("sched:sched_wak")]),  # sched_wake_idle_without_ipi too
        ("sched:sched_wakeup*", lambda events: ["sched:sched_wakeup", "sched:sched_wakeup_new"]),
        ("*:sched_switch", lambda events: ["sched:sched_switch"]),
        ("irq_handler_*", lambda events: ["irq:irq_handler_entry", "irq:irq_handler_exit"]),
    ],
)
def test_event_names_are_read_as_trace_cmd_reads_them(km, spelling, expected):
    events = kernel_events()
    assert sorted(km.resolve_event(spelling, events)) == sorted(expected(events)) != []


@pytest.mark.parametrize(
    ("spelling", "closest"),
    [("sched_swich", "sched_switch"), ("schde", "sched"), ("sched:sched_wakup", "sched:sched_wakeup"), ("softirq_entr", "softirq_entry")],
)
def test_an_unknown_event_name_gets_the_closest_existing_names(km, spelling, closest):
    events = kernel_events()
    assert km.resolve_event(spelling, events) == []
    message = km.unknown_event_message(spelling, events)
    assert message.startswith(f"-e {spelling}: this kernel has no such trace event or event system; closest: ")
    assert closest in message.split("closest: ")[1].split(" (")[0].split(", ")
    assert "\n" not in message and f"{len(events):,}" in message


def tracefs_events(tmp_path, events: list[str]) -> str:
    """A directory laid out as tracefs lays out events/SYSTEM/EVENT/enable, for the real names."""
    for event in events:
        system, _, name = event.partition(":")
        (tmp_path / "events" / system / name).mkdir(parents=True, exist_ok=True)
        (tmp_path / "events" / system / name / "enable").write_text("0\n")
    return str(tmp_path)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ["sched:sched_switch", "sched:sched_waking", "sched:sched_wakeup", "sched:sched_wakeup_new"]),
        (["--no-sched"], []),
        (["-p", "function"], []),  # the function tracer: only what -e names
        (["-p", "function", "-e", "sched_switch,sched_waking"], ["sched:sched_switch", "sched:sched_waking"]),
        (["-e", "irq:softirq_raise", "-e", "sched_switch"], ["irq:softirq_raise", "sched:sched_switch", "sched:sched_waking", "sched:sched_wakeup", "sched:sched_wakeup_new"]),
        (["--no-sched", "-e", "sched:sched_switch"], ["sched:sched_switch"]),  # --no-sched drops the defaults, not what -e asks for
    ],
)
def test_function_graph_records_the_scheduler_events_unless_no_sched(km, tmp_path, argv, expected):
    args = km.build_parser().parse_args(["record", *argv])
    assert km.events_to_record(args, tracefs_events(tmp_path, kernel_events())) == expected


def test_a_kernel_without_sched_events_records_the_calls_and_says_so(km, tmp_path, capsys):
    args = km.build_parser().parse_args(["record"])
    assert km.events_to_record(args, str(tmp_path)) == []
    assert "this kernel has no sched events" in capsys.readouterr().err
