"""generate-symbol-map on damaged input and hostile helpers: one-line errors, no map, no process left behind.

Fake dwarfdump programs stand in where a real llvm-dwarfdump cannot misbehave on
purpose (the tests say mock); the ELF files are real, built by gcc.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, SCRIPT, assert_one_line_error, run_cli

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")


@pytest.fixture
def program(tmp_path: Path) -> Path:
    """A real ELF program with DWARF, from the tests' C sources."""
    for name in ("a.c", "b.c", "api.h"):
        shutil.copy(ROOT / "tests" / "csrc" / name, tmp_path)
    subprocess.run(["gcc", "-g", "-O2", "a.c", "b.c", "-o", "prog"], cwd=tmp_path, check=True)
    return tmp_path / "prog"


def fake_dwarfdump(tmp_path: Path, body: str, version: str = "LLVM version 99.0.0 (mock)") -> Path:
    """A mock dwarfdump: answers --version with VERSION (LLVM's by default), then runs BODY (sh) instead of dumping."""
    script = tmp_path / "mock-dwarfdump"
    script.write_text(f'#!/bin/sh\ncase "$1" in --version) echo "{version}"; exit 0;; esac\n{body}\n')
    script.chmod(0o755)
    return script


def outputs_left(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith((".map", ".tmp")) or name.startswith(".symbol"))


def test_mock_dwarfdump_die_without_offset_is_one_line_error(tmp_path, program):
    unit = '0x0000000b: DW_TAG_compile_unit\n  DW_AT_name\\t("a.c")\n  DW_AT_comp_dir\\t("/src")\n'
    die = 'DW_TAG_subprogram\n  DW_AT_name\\t("lost")\n  DW_AT_low_pc\\t(0x1000)\n  DW_AT_high_pc\\t(0x1010)\n'
    dump = fake_dwarfdump(tmp_path, f"printf '{unit}\\n{die}\\n'")
    out = tmp_path / "m.map"
    result = run_cli("generate-symbol-map", "-k", str(program), "-o", str(out), "--dwarfdump", str(dump))
    assert_one_line_error(result, "llvm-dwarfdump output not understood: a DW_TAG_subprogram without its offset")
    assert outputs_left(tmp_path) == []


def test_mock_dwarfdump_address_that_is_not_a_number_is_one_line_error(tmp_path, program):
    die = '0x0000002a: DW_TAG_subprogram\n  DW_AT_name\\t("f")\n  DW_AT_low_pc\\t(garbage)\n'
    dump = fake_dwarfdump(tmp_path, f"printf '{die}\\n'")
    result = run_cli("generate-symbol-map", "-k", str(program), "-o", str(tmp_path / "m.map"), "--dwarfdump", str(dump))
    assert_one_line_error(result, "DW_AT_low_pc (garbage) is not an address")


@pytest.mark.parametrize(
    ("garbage", "version"),
    [
        ("head -c 4000000 /dev/urandom | base64", "LLVM version 99.0.0 (mock)"),  # 5 MB of text noise, no DIE at all
        ("i=0; while [ $i -lt 20000 ]; do printf '0x%08x: DW_TAG_subprogram\\n  junk (x)\\n\\n' $i; i=$((i+1)); done", "LLVM 99 (mock)"),
        ("head -c 4000000 /dev/urandom | base64", "dwarfdump (mock)"),  # read as libdwarf's one-line DIEs
    ],
    ids=["noise", "die-shaped", "noise-libdwarf"],
)
def test_mock_dwarfdump_garbage_is_no_functions_found(tmp_path, program, garbage, version):
    out = tmp_path / "m.map"
    dump = fake_dwarfdump(tmp_path, garbage, version)
    result = run_cli("generate-symbol-map", "-k", str(program), "-o", str(out), "--dwarfdump", str(dump))
    assert_one_line_error(result, "no functions found in")
    assert outputs_left(tmp_path) == []


@pytest.mark.parametrize("keep", [1 / 3, 0.99, 40])
def test_truncated_elf_is_called_truncated(tmp_path, program, keep):
    whole = program.read_bytes()
    cut = tmp_path / "cut"
    cut.write_bytes(whole[: int(len(whole) * keep)] if keep < 1 else whole[:keep])
    result = run_cli("generate-symbol-map", "-k", str(cut), "-o", str(tmp_path / "m.map"))
    assert_one_line_error(result, "is truncated")
    assert "no DWARF debug info" not in result.stderr
    assert outputs_left(tmp_path) == []


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper does not count)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_mock_dwarfdump_wrapper_and_its_child_end_with_the_run(tmp_path, program, stop):
    """A wrapper script whose dwarfdump child keeps running: a signal to kernel-magnifier ends them all, and no map is left."""
    pids = tmp_path / "pids"
    pids.mkdir()
    # one unit, then silence: a dwarfdump busy between two writes never gets SIGPIPE, only the group kill ends it
    child = f"echo $$ > '{pids}/child'; printf '0x0000000b: DW_TAG_compile_unit\\n  DW_AT_name\\t(\"u.c\")\\n\\n'; exec sleep 60"
    dump = fake_dwarfdump(tmp_path, f"echo $$ > '{pids}/wrapper'\nsh -c '{child.replace(chr(39), chr(39) + chr(92) + chr(39) + chr(39))}' &\nwait")
    out = tmp_path / "m.map"
    run = subprocess.Popen(
        [sys.executable, str(SCRIPT), "generate-symbol-map", "-k", str(program), "-o", str(out), "--dwarfdump", str(dump)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a test runner in the background ignores SIGINT
    )
    deadline = time.monotonic() + 20
    while not ((pids / "wrapper").exists() and (pids / "child").exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    started = [int((pids / name).read_text()) for name in ("wrapper", "child")]
    assert all(alive(pid) for pid in started)
    time.sleep(0.3)  # the parser is reading the stream
    run.send_signal(stop)
    _, stderr = run.communicate(timeout=10)
    assert run.returncode == 128 + stop
    assert stderr.strip() == f"kernel-magnifier: error: interrupted by {signal.Signals(stop).name}"
    deadline = time.monotonic() + 1
    while any(alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [pid for pid in started if alive(pid)] == []
    assert outputs_left(tmp_path) == []


def test_mock_dwarfdump_hanging_at_version_ends_with_its_children(tmp_path, km):
    """The --version probe's timeout ends the wrapper's whole process group, not only the wrapper."""
    pid_file = tmp_path / "child.pid"
    script = tmp_path / "mock-hanging-dwarfdump"
    script.write_text(f"#!/bin/sh\nsh -c 'echo $$ > \"{pid_file}\"; exec sleep 60' &\nwait\n")
    script.chmod(0o755)
    km.DWARFDUMP_VERSION_TIMEOUT = 1.0
    with pytest.raises(km.UserError, match="--version did not answer within 1 s"):
        km.dwarfdump_kind(str(script))
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 1
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(child)
