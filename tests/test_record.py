"""record's pieces that need no tracing kernel: CPU masks, tracefs list syntax, refusals before tracefs is touched.

The recording itself is tested on a real Debian kernel under QEMU: tests/vm (make vm-test).
"""

from __future__ import annotations

import os
import re

import pytest
from conftest import DATA, assert_one_line_error, edges_by_pair, graph_json, nodes_by_name, read_lines, run_cli


@pytest.mark.parametrize(
    ("text", "cpus", "mask"),
    [
        ("1", 2, 0b1),  # a hex mask as tracing_cpumask takes it: CPU 0
        ("3", 2, 0b11),
        ("f", 4, 0xF),
        ("0x2", 2, 0b10),
        ("0,2-3", 4, 0b1101),  # a CPU list
        ("2-2", 4, 0b100),  # one CPU as a list
        ("1,00000000", 40, 1 << 32),  # the kernel's own notation for more than 32 CPUs
    ],
)
def test_cpumask_accepts_masks_and_lists(km, text, cpus, mask):
    assert km.parse_cpumask(text, list(range(cpus))) == mask


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "selects no CPU"),
        ("zz", "not a hex CPU mask"),
        ("4", "CPU 2 does not exist (online CPUs: 0-1)"),
        ("0,5", "CPU 5 does not exist"),
    ],
)
def test_cpumask_rejects_what_the_machine_does_not_have(km, text, message):
    with pytest.raises(km.UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        km.parse_cpumask(text, [0, 1])


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


def test_command_separator_is_only_for_record(tmp_path):
    result = run_cli("visualize", "--", "ls", cwd=tmp_path)
    assert result.returncode == 2 and "-- COMMAND is only for record" in result.stderr
    result = run_cli("record", "--", cwd=tmp_path)
    assert result.returncode == 2 and "-- must be followed by the command" in result.stderr


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
