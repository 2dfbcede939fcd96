"""generate-symbol-map on real DWARF from gcc, with both dwarfdump tools, and visualize using a real kernel map."""

from __future__ import annotations

import json
import lzma
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import DATA, ROOT, assert_one_line_error, run_cli

CSRC = ROOT / "tests" / "csrc"
TOOLS = [tool for tool in ("llvm-dwarfdump", "dwarfdump") if shutil.which(tool)]
# What the map must say for tests/csrc: only functions with code, the ELF names ftrace would print.
EXPECTED = {
    "a_entry": ["a.c"],
    "b_entry": ["b.c"],
    "main": ["b.c"],
    "helper": ["a.c", "b.c"],  # two static functions of the same name
    "header_twice": ["api.h|a.c", "api.h|b.c"],  # defined in a header, compiled in two units
    "maybe_slow": ["b.c"],
    "maybe_slow.part.0": ["b.c"],
    "only_x": ["b.c"],
    "only_x.isra.0": ["b.c"],
    "scale": ["b.c"],
    "scale.constprop.0": ["b.c"],
}


def build(tmp_path: Path, *flags: str, name: str = "prog") -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    work = tmp_path / "src dir"  # a space in the path: no shell in between
    if not work.exists():
        shutil.copytree(CSRC, work)
    subprocess.run(["gcc", *flags, "-O2", "a.c", "b.c", "-o", name], cwd=work, check=True)
    return work / name


def read_map(path: Path) -> dict[str, list[str]]:
    """The map's files without their definition lines (tests/test_symbol_map_lines.py checks those)."""
    entries = {}
    for line in path.read_text().splitlines()[1:]:  # the version line first
        if not line.startswith("#"):
            name, *files = line.split("\t")
            entries[name] = [re.sub(r":\d+(?=\||$)", "", definition) for definition in files]
    return entries


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("dwarf", ["-gdwarf-5", "-gdwarf-4"])
def test_map_of_real_compiled_c_is_exact(tmp_path, tool, dwarf):
    program = build(tmp_path, "-g", dwarf)
    out = tmp_path / "symbol-filepath.map"
    result = run_cli("generate-symbol-map", "-k", str(program), "-o", str(out), "--dwarfdump", tool, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    entries = read_map(out)
    compiled = {name: files for name, files in entries.items() if name in EXPECTED or not name.startswith(("_", "deregister", "register", "frame"))}
    assert compiled == EXPECTED
    for not_a_function in ("global_counter", "origin", "point", "x", "label", "printf", "snprintf", "strlen"):
        assert not_a_function not in entries
    assert "names mapped, 2 of them to several files" in result.stdout


def test_map_is_stable_across_runs(tmp_path):
    program = build(tmp_path, "-g")
    first, second = tmp_path / "one.map", tmp_path / "two.map"
    assert run_cli("generate-symbol-map", "-k", str(program), "-o", str(first)).returncode == 0
    assert run_cli("generate-symbol-map", "-k", str(program), "-o", str(second)).returncode == 0
    assert first.read_text() == second.read_text()


def test_bad_inputs_leave_no_map(tmp_path):
    out = tmp_path / "symbol-filepath.map"
    assert_one_line_error(run_cli("generate-symbol-map", "-k", str(tmp_path / "missing"), "-o", str(out)), "does not exist")
    (tmp_path / "notes.txt").write_text("not an ELF file\n")
    assert_one_line_error(run_cli("generate-symbol-map", "-k", str(tmp_path / "notes.txt"), "-o", str(out)), "is not an ELF file")
    no_debug = build(tmp_path, "-g0", name="nodebug")
    assert_one_line_error(run_cli("generate-symbol-map", "-k", str(no_debug), "-o", str(out)), "has no DWARF debug info")
    full = build(tmp_path, "-g", name="full")
    cut = tmp_path / "cut"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    assert run_cli("generate-symbol-map", "-k", str(cut), "-o", str(out)).returncode != 0
    assert_one_line_error(run_cli("generate-symbol-map", "-k", str(full), "-o", str(out), "--dwarfdump", "no-such-dwarfdump"), "not found")
    assert not out.exists()


@pytest.mark.parametrize("tool", TOOLS)
def test_function_with_code_but_a_dwarf_entry_without_low_pc_is_mapped(tmp_path, tool):
    """GCC's identical code folding emits fold_thunk's code without a DWARF range: its named entry gives the file."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    shutil.copy(CSRC / "icf.c", tmp_path)
    subprocess.run(["gcc", "-g", "-O2", "icf.c", "-o", "icf"], cwd=tmp_path, check=True)
    symbols = subprocess.run(["nm", str(tmp_path / "icf")], capture_output=True, text=True, check=True).stdout.split()
    assert "fold_thunk" in symbols  # the function has code in the ELF file
    out = tmp_path / "icf.map"
    result = run_cli("generate-symbol-map", "-k", str(tmp_path / "icf"), "-o", str(out), "--dwarfdump", tool, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    entries = read_map(out)
    assert entries["fold_thunk"] == ["icf.c"]
    assert entries["fold_kept"] == ["icf.c"]
    assert "1 names mapped by their declaration only" in result.stdout


SAMPLE = DATA / "fg-graphfunc" / "trace.txt.xz"
KERNEL_MAP = DATA / "symbol-map-6.1.0-56-amd64.map.xz"  # generated from the real Debian 6.1 debug vmlinux
# The text symbol names (t/T/w/W) of that kernel's own System.map (linux-image-6.1.0-56-amd64-dbg), one per line.
SYSTEM_MAP_NAMES = DATA / "system-map-text-names-6.1.0-56-amd64.txt.xz"


def read_xz_map(path: Path) -> dict[str, list[str]]:
    entries = {}
    with lzma.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if not line.startswith("#"):
                name, *files = line.rstrip("\n").split("\t")
                entries[name] = files
    return entries


def test_real_kernel_map_covers_the_kernels_own_system_map():
    entries = read_xz_map(KERNEL_MAP)
    with lzma.open(SYSTEM_MAP_NAMES, "rt", encoding="utf-8") as handle:
        system_map = set(handle.read().split())
    assert len(system_map) == 49045
    missing = system_map - entries.keys()
    assert len(system_map - missing) / len(system_map) >= 0.995, sorted(missing)[:20]
    # GCC left these with code but a DWARF entry without low_pc (their lines: DW_AT_decl_line of
    # `llvm-dwarfdump --name=NAME vmlinux`); assembly; a static-call trampoline (a prototype only): no line
    assert entries["HUF_getErrorName"] == ["lib/zstd/common/entropy_common.c:36"]
    assert entries["__bpf_trace_tcp_probe"] == ["include/trace/events/tcp.h:238|net/core/net-traces.c"]
    assert entries["asm_exc_page_fault"] == ["arch/x86/entry/entry_64.S"]
    assert entries["copy_mc_fragile"] == ["arch/x86/lib/copy_mc_64.S"]
    assert entries["__SCT__tp_func_tcp_probe"] == ["include/trace/events/tcp.h"]
    paths = {path for files in entries.values() for definition in files for path in definition.split("|")}
    assert not [path for path in paths if path.startswith(("/", "build/", "../")) or "reproducible-path" in path or "debian/build" in path]


def test_filter_filepath_with_the_real_kernel_map(tmp_path):
    out = tmp_path / "net.json"
    result = run_cli("visualize", "-i", str(SAMPLE), "--symbol-map", str(KERNEL_MAP), "--filter-filepath", "net", "-o", str(out), "--chart", "")
    assert result.returncode == 0, result.stderr
    graph = json.loads(out.read_text())
    names = {node["name"]: node for node in graph["nodes"]}
    assert names["tcp_sendmsg"]["files"] == ["net/ipv4/tcp.c"]
    # a function with a file in the map matches by its path, a module function without one by [module] (9pnet)
    assert all(any("net" in f for f in node["files"]) or (not node["files"] and "net" in node.get("module", "")) for node in graph["nodes"])
    assert "__rcu_read_lock" not in names  # kernel/rcu: filtered out
    assert all(edge["caller"] in names and edge["callee"] in names for edge in graph["edges"])
    # where the kept part is entered from: softirq handling (kernel/softirq.c) runs the network receive path
    assert "handle_softirqs" in graph["entry_callers"]
    assert "__x64_sys_sendto" not in names  # set_graph_function started at __sys_sendto: no syscall entry recorded
    assert "dropped because the symbol map has no file for them" in result.stdout


def test_drawing_labels_show_files_and_ambiguity(tmp_path):
    out = tmp_path / "g.dot"
    result = run_cli("visualize", "-i", str(SAMPLE), "--symbol-map", str(KERNEL_MAP), "--filter-filepath", "net/ipv4", "-o", str(out), "--chart", "")
    assert result.returncode == 0, result.stderr
    dot = out.read_text()
    assert "net/ipv4/tcp.c" in dot
    assert "grey dashed boxes: callers outside the selection" in dot


def test_original_tools_map_format_is_read(tmp_path):
    legacy = tmp_path / "legacy.map"
    legacy.write_text("tcp_sendmsg|net/ipv4/tcp.c\ntcp_sendmsg_locked|net/ipv4/tcp.c\n")
    out = tmp_path / "g.json"
    result = run_cli("visualize", "-i", str(SAMPLE), "--symbol-map", str(legacy), "--filter-filepath", "net/ipv4/tcp.c", "-o", str(out), "--chart", "")
    assert result.returncode == 0, result.stderr
    graph = json.loads(out.read_text())
    assert {node["name"] for node in graph["nodes"]} == {"tcp_sendmsg", "tcp_sendmsg_locked"}


def build_module(tmp_path: Path, debug: str, name: str) -> Path:
    """A relocatable object with DWARF, compiled with a tree-relative path as kbuild does: what a .ko debug file is."""
    work = tmp_path / "src dir"
    modules = tmp_path / "debug modules" / "kernel" / "drivers" / "net"
    modules.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", debug, "-O2", "-c", "drivers/net/netmod.c", "-o", str(modules / name)], cwd=work, check=True)
    return modules / name


def test_modules_add_their_functions_by_name(tmp_path):
    program = build(tmp_path, "-g")
    build_module(tmp_path, "-g", "netmod.ko")
    build_module(tmp_path, "-g0", "stripped-mod.ko")
    out = tmp_path / "with-modules.map"
    result = run_cli("generate-symbol-map", "-k", str(program), "--modules", str(tmp_path / "debug modules"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    entries = read_map(out)
    assert entries["netmod_rx"] == ["drivers/net/netmod.c"]
    assert entries["helper"] == ["a.c", "b.c"]  # vmlinux's two static helpers; the module's is kept apart, as the trace names it:
    assert entries["helper [netmod]"] == ["drivers/net/netmod.c"]
    assert entries["a_entry"] == ["a.c"]
    assert "modules: 1 of 2 read" in result.stdout
    assert "1 module files without debug info (stripped?), e.g." in result.stderr
    assert "stripped-mod.ko" in result.stderr


def test_module_options_errors(tmp_path):
    program = build(tmp_path, "-g")
    out = tmp_path / "m.map"
    assert_one_line_error(run_cli("generate-symbol-map", "-k", str(program), "--only-loaded", "-o", str(out)), "--only-loaded needs --modules DIR")
    assert_one_line_error(run_cli("generate-symbol-map", "-k", str(program), "--modules", str(tmp_path / "nowhere"), "-o", str(out)), "is not a directory")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_cli("generate-symbol-map", "-k", str(program), "--modules", str(tmp_path / "empty"), "-o", str(out)), "no module debug files")
    assert not out.exists()


def test_only_loaded_keeps_modules_the_running_kernel_has(tmp_path):
    program = build(tmp_path, "-g")
    build_module(tmp_path, "-g", "netmod.ko")  # no kernel has a module called netmod loaded
    out = tmp_path / "m.map"
    result = run_cli("generate-symbol-map", "-k", str(program), "--modules", str(tmp_path / "debug modules"), "--only-loaded", "-o", str(out))
    expected = "no loaded module debug files" if Path("/proc/modules").exists() else "cannot read /proc/modules"
    assert_one_line_error(result, expected)
    assert not out.exists()
