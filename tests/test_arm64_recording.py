"""visualize reads record's trace.dat from a real arm64 kernel (Debian 6.12, 4 KB and 16 KB pages) as trace-cmd does.

The files were recorded by `make vm-test-matrix` under qemu-system-aarch64; the expected values are the host's x86
`trace-cmd report -R` of each file counted by awk (tests/data/arm64-6.12/README.md): every event, the sched_switch
events, and each function's funcgraph_entry events, which must be visualize's calls of that function by name (arm64
artefacts would show as hex addresses or data symbols).
"""

from __future__ import annotations

import lzma
import re
import struct
from pathlib import Path

import pytest
from conftest import DATA, graph_json

SAMPLES = DATA / "arm64-6.12"
NOT_A_NAME = re.compile(r"^(0x)?[0-9a-f]{8,}$|^__this_module$|__compound_literal")


def expected(kind: str) -> tuple[int, int, dict[str, int]]:
    events = switches = 0
    calls = {}
    for line in (SAMPLES / f"{kind}-expected.txt").read_text().splitlines():
        fields = line.split()
        if fields[0] == "events":
            events = int(fields[1])
        elif fields[0] == "sched_switch":
            switches = int(fields[1])
        else:
            calls[fields[1]] = int(fields[2])
    return events, switches, calls


@pytest.fixture(scope="module", params=["arm64-4k", "arm64-16k"])
def recording(request, tmp_path_factory) -> tuple[str, Path, dict]:
    tmp = tmp_path_factory.mktemp(request.param)
    return request.param, SAMPLES / f"{request.param}-narrow-v6.dat.xz", graph_json(tmp, SAMPLES / f"{request.param}-narrow-v6.dat.xz")


def test_every_event_as_trace_cmd_counts_them(recording):
    kind, _, graph = recording
    events, switches, _ = expected(kind)
    assert graph["stats"]["events"] == events
    assert graph["stats"]["trace_events"]["sched_switch"] == switches
    assert graph["stats"]["lost_events"] == 0


def test_every_function_by_name_with_trace_cmds_calls(recording):
    kind, _, graph = recording
    _, _, calls = expected(kind)
    ours = {node["name"]: node["calls"] for node in graph["nodes"]}
    assert not [name for name in ours if NOT_A_NAME.search(name)]
    assert ours == calls
    assert calls["do_sys_openat2"] > 0


def test_the_kernel_and_page_size_the_file_says(recording):
    kind, path, graph = recording
    assert "6.12.117+deb13-arm64" in graph["stats"]["metadata"]["kernel"]
    with lzma.open(path) as data:
        head = data.read(64)
    # trace.dat: magic, "tracing", version string, endianness, long size, then the page size (4 bytes)
    version_end = head.index(b"\0", 10)
    page_size = struct.unpack_from("<I", head, version_end + 3)[0]
    assert page_size == (16384 if kind == "arm64-16k" else 4096)
