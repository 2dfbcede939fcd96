"""generate-symbol-map -m: kernel modules' debug files (.ko, .ko.debug, .ko.xz, .ko.zst, .ko.gz) on real DWARF from gcc.

A .ko is an ELF relocatable object: `gcc -c` output under a module's name has its
shape (kernel headers, which a real module build needs, are not installed here).
The modules are compressed with the real xz, zstd and gzip, with kbuild's options.
What each function's file must be comes from the C sources (which file defines it),
not from the tool. Debian's real module debug files (linux-image-*-dbg, ~1 GB) are
not downloaded for a test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DATA, ROOT, SCRIPT, assert_one_line_error, graph_json, read_lines, run_cli
from test_symbol_map import read_map  # files without their lines: test_symbol_map_lines checks the lines

CSRC = ROOT / "tests" / "csrc"
TOOLS = [tool for tool in ("llvm-dwarfdump", "dwarfdump") if shutil.which(tool)]
pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("gcc", "xz", "zstd", "gzip")), reason="gcc, xz, zstd and gzip are needed"
)
NETMOD, FSMOD = "drivers/net/netmod.c", "fs/fsmod/fsmod.c"
# What make modules_install runs (scripts/Makefile.modinst) for CONFIG_MODULE_COMPRESS_{XZ,ZSTD,GZIP}
COMPRESS = {".xz": ["xz", "--check=crc32", "--lzma2=dict=1MiB", "-f"], ".zst": ["zstd", "-T0", "--rm", "-f", "-q"], ".gz": ["gzip", "-n", "-f"]}


def sources(tmp_path: Path) -> Path:
    work = tmp_path / "src dir"  # a space in the path: no shell in between
    if not work.exists():
        shutil.copytree(CSRC, work)
    return work


def build_vmlinux(tmp_path: Path, dwarf: str = "-gdwarf-5") -> Path:
    """The stand-in vmlinux: a.c and b.c linked, with their static helper() and scale()."""
    work = sources(tmp_path)
    subprocess.run(["gcc", "-g", dwarf, "-O2", "a.c", "b.c", "-o", "vmlinux"], cwd=work, check=True)
    return work / "vmlinux"


def build_module(tmp_path: Path, source: str, target: Path, dwarf: str = "-gdwarf-5", debug: str = "-g") -> Path:
    """SOURCE compiled as kbuild does (a tree-relative path) into TARGET, then compressed as its suffix says."""
    target.parent.mkdir(parents=True, exist_ok=True)
    compress = COMPRESS.get(target.suffix)
    elf = target.with_suffix("") if compress else target
    flags = [debug] if debug == "-g0" else [debug, dwarf]  # -gdwarf-N alone turns debug info on
    subprocess.run(["gcc", *flags, "-O2", "-c", source, "-o", str(elf)], cwd=sources(tmp_path), check=True)
    if compress:
        subprocess.run([*compress, str(elf)], check=True)
        elf.unlink(missing_ok=True)  # xz and gzip remove it too; zstd by --rm
    assert target.exists()
    return target


def module_folders(tmp_path: Path, dwarf: str = "-gdwarf-5") -> tuple[Path, Path]:
    """Debian's layout (-dbg: /usr/lib/debug/lib/modules/VERSION/kernel/...) with compressed modules, and a Fedora-like one."""
    debian = tmp_path / "debug" / "lib" / "modules" / "6.1.0-test"
    build_module(tmp_path, NETMOD, debian / "kernel" / "drivers" / "net" / "netmod.ko.xz", dwarf)
    build_module(tmp_path, FSMOD, debian / "kernel" / "fs" / "fsmod" / "fs-mod.ko.zst", dwarf)  # the kernel names it fs_mod
    fedora = tmp_path / "fedora debuginfo"
    build_module(tmp_path, NETMOD, fedora / "extra" / "otherdrv.ko.debug", dwarf)
    build_module(tmp_path, FSMOD, fedora / "extra" / "gzdrv.ko.gz", dwarf)
    return debian, fedora


def run_km(*args: str, scratch: Path) -> subprocess.CompletedProcess[str]:
    """The CLI with its temporary files in SCRATCH (TMPDIR), to see that none is left."""
    scratch.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(scratch)}
    )


# The module functions, from the C sources: netmod.c defines helper and netmod_rx, fsmod.c helper, scale, fsmod_read.
MODULE_ENTRIES = {
    "helper [netmod]": [NETMOD], "netmod_rx [netmod]": [NETMOD],
    "helper [otherdrv]": [NETMOD], "netmod_rx [otherdrv]": [NETMOD],
    "helper [fs_mod]": [FSMOD], "scale [fs_mod]": [FSMOD], "fsmod_read [fs_mod]": [FSMOD],
    "helper [gzdrv]": [FSMOD], "scale [gzdrv]": [FSMOD], "fsmod_read [gzdrv]": [FSMOD],
    "netmod_rx": [NETMOD], "fsmod_read": [FSMOD],  # in modules only: the bare name too, for a lookup without the module
}


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("dwarf", ["-gdwarf-5", "-gdwarf-4"])
def test_compressed_and_debug_modules_map_each_function_to_its_module(tmp_path, tool, dwarf):
    vmlinux = build_vmlinux(tmp_path, dwarf)
    debian, fedora = module_folders(tmp_path, dwarf)
    alone, out = tmp_path / "vmlinux-only.map", tmp_path / "with-modules.map"
    assert run_cli("generate-symbol-map", "-k", str(vmlinux), "-o", str(alone), "--dwarfdump", tool).returncode == 0
    result = run_km("generate-symbol-map", "-k", str(vmlinux), "-m", str(debian), "-m", str(fedora), "-o", str(out), "--dwarfdump", tool, scratch=tmp_path / "scratch")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    entries, built_in = read_map(out), read_map(alone)
    assert {name: files for name, files in entries.items() if name not in built_in} == MODULE_ENTRIES
    # vmlinux's own entries are unchanged: helper and scale stay a.c/b.c's, kept apart from the modules' same names
    assert {name: entries[name] for name in built_in} == built_in
    assert built_in["helper"] == ["a.c", "b.c"] and built_in["scale"] == ["b.c"]
    assert "modules: 4 of 4 read from" in result.stdout
    own = sum(1 for name in MODULE_ENTRIES if " [" in name)
    assert f"{len(entries) - own} function names mapped, {own} more as a module's own (name [module])" in result.stdout
    assert os.listdir(tmp_path / "scratch") == []  # the decompressed copies are gone


def test_same_folder_twice_reads_each_module_once(tmp_path):
    vmlinux = build_vmlinux(tmp_path)
    debian, _ = module_folders(tmp_path)
    out, link = tmp_path / "m.map", tmp_path / "same folder through a link"
    link.symlink_to(debian)
    folders = [debian, debian / "kernel" / "fs", debian, link, debian / ".." / debian.name]
    result = run_cli("generate-symbol-map", "-k", str(vmlinux), *[arg for folder in folders for arg in ("-m", str(folder))], "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "modules: 2 of 2 read" in result.stdout


def function_graph_trace(path: Path, calls: list[tuple[str, list[str]]]) -> Path:
    """A function_graph text trace of CALLS (a function and its leaf callees, as ftrace prints them: `name [module]`)."""
    lines = ["# tracer: function_graph", "#", "# CPU  DURATION                  FUNCTION CALLS", "# |     |   |                     |   |   |   |"]
    for caller, callees in calls:
        lines.append(f" 0)               |  {caller}() {{")
        lines += [f" 0)   1.250 us    |    {callee}();" for callee in callees]
        lines.append(f" 0)   {2 + len(callees)}.500 us    |  }}")
    path.write_text("\n".join(lines) + "\n")
    return path


def files_in_view(tmp_path: Path, trace: Path, symbol_map: Path) -> dict[str, tuple[list[str], str | None]]:
    out = tmp_path / "graph.json"
    result = run_cli("visualize", "-i", str(trace), "--symbol-map", str(symbol_map), "-o", str(out), "--chart", "")
    assert result.returncode == 0, result.stderr
    return {node["name"]: (node["files"], node.get("module")) for node in json.loads(out.read_text())["nodes"]}


def test_visualize_gives_a_module_function_its_modules_file_and_a_built_in_one_vmlinuxs(tmp_path):
    vmlinux = build_vmlinux(tmp_path)
    debian, _ = module_folders(tmp_path)
    with_modules, alone = tmp_path / "with-modules.map", tmp_path / "vmlinux-only.map"
    assert run_cli("generate-symbol-map", "-k", str(vmlinux), "-m", str(debian), "-o", str(with_modules)).returncode == 0
    assert run_cli("generate-symbol-map", "-k", str(vmlinux), "-o", str(alone)).returncode == 0
    # one name per node in a trace: a built-in helper and a module's are in separate traces
    netmod = function_graph_trace(tmp_path / "netmod.txt", [("netmod_rx [netmod]", ["helper [netmod]"])])
    fs_mod = function_graph_trace(tmp_path / "fsmod.txt", [("fsmod_read [fs_mod]", ["helper [fs_mod]", "scale.constprop.0 [fs_mod]"])])
    built_in = function_graph_trace(tmp_path / "vmlinux.txt", [("b_entry", ["helper", "scale.constprop.0"])])
    assert files_in_view(tmp_path, netmod, with_modules) == {"netmod_rx": ([NETMOD], "netmod"), "helper": ([NETMOD], "netmod")}
    assert files_in_view(tmp_path, fs_mod, with_modules) == {
        "fsmod_read": ([FSMOD], "fs_mod"), "helper": ([FSMOD], "fs_mod"), "scale.constprop.0": ([FSMOD], "fs_mod"),  # a clone: by its base name
    }
    assert files_in_view(tmp_path, built_in, with_modules) == {"b_entry": (["b.c"], None), "helper": (["a.c", "b.c"], None), "scale.constprop.0": (["b.c"], None)}
    # a map made without the module: the bare name's files, as before module entries existed
    assert files_in_view(tmp_path, netmod, alone) == {"netmod_rx": ([], "netmod"), "helper": (["a.c", "b.c"], "netmod")}


def damaged(tmp_path: Path, kind: str) -> Path:
    """A module debug file damaged as KIND says (what, then the compression's suffix), next to the good one."""
    folder = tmp_path / "modules" / "kernel" / "bad"
    folder.mkdir(parents=True, exist_ok=True)
    what, suffix = kind.rsplit(".", 1)
    path = folder / f"bad.ko.{suffix}"
    if what in ("cut", "noise"):
        whole = build_module(tmp_path, NETMOD, tmp_path / "spare" / f"spare.ko.{suffix}").read_bytes()
        path.write_bytes(whole[: len(whole) // 2] if what == "cut" else os.urandom(3000))
    else:  # well compressed, but no whole ELF file inside
        elf = build_module(tmp_path, NETMOD, tmp_path / "spare" / "whole.ko")
        inside = b"not an ELF file, but compressed well\n" * 50 if what == "text" else elf.read_bytes()[: elf.stat().st_size // 3]
        (folder / "bad.ko").write_bytes(inside)
        subprocess.run([*COMPRESS[f".{suffix}"], str(folder / "bad.ko")], check=True)
    assert path.exists()
    return path


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("cut.xz", "damaged, truncated or not xz data"),
        ("noise.xz", "damaged, truncated or not xz data"),
        ("cut.zst", "damaged, truncated or not zstd data"),
        ("noise.zst", "damaged, truncated or not zstd data"),
        ("cut.gz", "damaged, truncated or not gzip data"),
        ("text.xz", "is not an ELF file"),
        ("cut-elf.xz", "is truncated"),
    ],
)
def test_damaged_or_non_elf_compressed_module_is_a_one_line_warning_and_left_out(tmp_path, kind, reason):
    """One bad file among a distribution's thousands of modules is said and left out; the map keeps the others."""
    vmlinux = build_vmlinux(tmp_path)
    build_module(tmp_path, NETMOD, tmp_path / "modules" / "kernel" / "drivers" / "net" / "netmod.ko.xz")
    bad = damaged(tmp_path, kind)
    out = tmp_path / "m.map"
    result = run_km("generate-symbol-map", "-k", str(vmlinux), "-m", str(tmp_path / "modules"), "-o", str(out), scratch=tmp_path / "scratch")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kernel-magnifier: warning: 1 module files could not be read and are left out, e.g. ")
    assert str(bad) in lines[0] and reason in lines[0], lines[0]
    assert "scratch" not in lines[0]  # the original file is named, never its temporary copy
    assert "modules: 1 of 2 read" in result.stdout
    assert read_map(out)["helper [netmod]"] == [NETMOD]
    assert os.listdir(tmp_path / "scratch") == []


def test_only_stripped_compressed_modules_warn(tmp_path):
    vmlinux = build_vmlinux(tmp_path)
    stripped = build_module(tmp_path, NETMOD, tmp_path / "modules" / "netmod.ko.zst", debug="-g0")
    result = run_km("generate-symbol-map", "-k", str(vmlinux), "-m", str(tmp_path / "modules"), "-o", str(tmp_path / "m.map"), scratch=tmp_path / "scratch")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == f"kernel-magnifier: warning: 1 module files without debug info (stripped?), e.g. {stripped}"
    assert os.listdir(tmp_path / "scratch") == []


def test_module_folder_errors(tmp_path):
    vmlinux = build_vmlinux(tmp_path)
    out = tmp_path / "m.map"
    (tmp_path / "no modules").mkdir()
    (tmp_path / "no modules" / "netmod.ko.bz2").write_bytes(b"BZh")  # not a compression the kernel uses for modules
    assert_one_line_error(run_cli("generate-symbol-map", "-k", str(vmlinux), "-m", str(tmp_path / "no modules"), "-o", str(out)), "no module debug files (.ko, .ko.debug, .ko.xz, .ko.zst, .ko.gz)")
    good = tmp_path / "good"
    build_module(tmp_path, NETMOD, good / "netmod.ko.xz")
    assert_one_line_error(run_cli("generate-symbol-map", "-k", str(vmlinux), "-m", str(good), "-m", str(tmp_path / "nowhere"), "-o", str(out)), "is not a directory")
    assert not out.exists()


def test_module_names_as_the_kernel_prints_them(km):
    assert km.module_name("/usr/lib/debug/lib/modules/6.1.0-56-amd64/kernel/net/9p/9pnet_virtio.ko") == "9pnet_virtio"
    assert km.module_name("extra/fs-mod.ko.zst") == "fs_mod"
    assert km.module_name("kernel/fs/ext4/ext4.ko.xz") == "ext4"
    assert km.module_name("kernel/fs/9p/9p.ko.debug") == "9p"
    assert km.module_name("kernel/x/gz-drv.ko.gz") == "gz_drv"


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(shutil.which("llvm-dwarfdump") is None, reason="llvm-dwarfdump not installed")
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_decompressed_module_is_removed_when_interrupted(tmp_path, stop):
    """A wrapper around the real llvm-dwarfdump hangs on the second decompressed module: the first one's copy is gone
    already (the disk holds one module at a time), and after a signal ends the run, the second's too."""
    vmlinux = build_vmlinux(tmp_path)
    build_module(tmp_path, NETMOD, tmp_path / "modules" / "netmod.ko.xz")
    build_module(tmp_path, FSMOD, tmp_path / "modules" / "zzmod.ko.zst")  # read second (sorted by path)
    marker = tmp_path / "dwarfdump-on-module"
    wrapper = tmp_path / "hanging-on-modules-dwarfdump"
    wrapper.write_text(
        f'#!/bin/sh\ncase "$*" in *kernel-magnifier-modules-*zzmod.ko) echo "$$ $*" > "{marker}"; exec sleep 60;; esac\nexec llvm-dwarfdump "$@"\n'
    )
    wrapper.chmod(0o755)
    scratch, out = tmp_path / "scratch", tmp_path / "m.map"
    scratch.mkdir()
    run = subprocess.Popen(
        [sys.executable, str(SCRIPT), "generate-symbol-map", "-k", str(vmlinux), "-m", str(tmp_path / "modules"), "-o", str(out), "--dwarfdump", str(wrapper)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(scratch)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a test runner in the background ignores SIGINT
    )
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.05)
    time.sleep(0.1)  # the marker written whole
    pid, *command = marker.read_text().split()
    copy = Path(command[-1])
    assert copy.name == "zzmod.ko" and copy.parent.parent == scratch and copy.exists()  # dwarfdump reads a decompressed copy
    assert os.listdir(copy.parent) == ["zzmod.ko"]  # netmod.ko, read before, is removed
    run.send_signal(stop)
    _, stderr = run.communicate(timeout=20)
    assert run.returncode == 128 + stop
    assert stderr.strip() == f"kernel-magnifier: error: interrupted by {signal.Signals(stop).name}"
    assert os.listdir(scratch) == []
    assert not out.exists()
    deadline = time.monotonic() + 1
    while alive(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(int(pid))


REAL_MODULES = DATA / "modules-6.1.0-56-amd64"  # two real module debug files of Debian's 6.1 -dbg package, compressed
DEBIAN_BUILD = "debian/build/build_amd64_none_amd64/"  # where Debian's DWARF says the tree is


def dwarf_definition_files(elf: Path, name: str) -> set[str]:
    """Independently of the tool: the files of NAME's DW_TAG_subprogram entries (not declarations), as llvm-dwarfdump --name prints them."""
    dump = subprocess.run(["llvm-dwarfdump", "--debug-info", f"--name={name}", str(elf)], capture_output=True, text=True, check=True).stdout
    files = set()
    for die in dump.split("\n\n"):
        if "DW_TAG_subprogram" in die and "DW_AT_declaration" not in die:
            files |= {path.removeprefix(DEBIAN_BUILD) for path in re.findall(r'DW_AT_decl_file\t\("([^"]+)"\)', die)}
    return files


@pytest.mark.skipif(shutil.which("llvm-dwarfdump") is None, reason="llvm-dwarfdump not installed")
def test_real_debian_debug_modules_give_the_recordings_module_functions_their_files(tmp_path):
    vmlinux = build_vmlinux(tmp_path)
    out = tmp_path / "real-modules.map"
    result = run_km("generate-symbol-map", "-k", str(vmlinux), "-m", str(REAL_MODULES), "-o", str(out), scratch=tmp_path / "scratch")
    assert result.returncode == 0, result.stderr
    assert "modules: 2 of 2 read" in result.stdout
    assert os.listdir(tmp_path / "scratch") == []
    trace = DATA / "fg-default" / "trace.txt.xz"
    # the module functions the recording calls, read from its raw lines
    called = {match.groups() for line in read_lines(trace) for match in re.finditer(r"(\S+) \[(\w+)\]\(", line)}
    ours = {name: module for name, module in called if module in ("9pnet_virtio", "virtio_ring")}
    assert len(ours) >= 8, ours
    nodes = {node["name"]: node for node in graph_json(tmp_path, trace, extra=("--symbol-map", str(out)))["nodes"]}
    elves = {"9pnet_virtio": tmp_path / "9pnet_virtio.ko", "virtio_ring": tmp_path / "virtio_ring.ko"}
    with open(elves["9pnet_virtio"], "wb") as handle:
        subprocess.run(["xz", "-dc", str(REAL_MODULES / "kernel" / "net" / "9p" / "9pnet_virtio.ko.xz")], stdout=handle, check=True)
    with open(elves["virtio_ring"], "wb") as handle:
        subprocess.run(["zstd", "-dc", str(REAL_MODULES / "kernel" / "drivers" / "virtio" / "virtio_ring.ko.zst")], stdout=handle, check=True)
    for name, module in sorted(ours.items()):
        expected = dwarf_definition_files(elves[module], re.sub(r"(\.(isra|constprop|part|cold)\.\d+)+$", "", name))
        assert expected, name
        assert (nodes[name]["module"], set(nodes[name]["files"])) == (module, expected), name
    # functions of modules the map was not given (9pnet, 9p) still have no file
    others = [name for name, module in called if module in ("9pnet", "9p")]
    assert others and all(nodes[name]["files"] == [] for name in others if name in nodes)


def test_only_loaded_knows_compressed_modules_by_the_kernels_name(tmp_path, km, monkeypatch):
    debian, _ = module_folders(tmp_path)
    monkeypatch.setattr(km, "loaded_module_names", lambda: {"fs_mod", "ext4"})  # /proc/modules says fs_mod for fs-mod.ko.zst
    assert km.module_debug_files([str(debian)], only_loaded=True) == [str(debian / "kernel" / "fs" / "fsmod" / "fs-mod.ko.zst")]
    assert len(km.module_debug_files([str(debian)], only_loaded=False)) == 2


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_a_full_temporary_folder_is_an_error_for_the_run(tmp_path, km):
    """Unlike a damaged module, a full disk would fail every later module too: ScratchSpaceError ends the run."""
    module = build_module(tmp_path, NETMOD, tmp_path / "netmod.ko.xz")
    with pytest.raises(km.ScratchSpaceError, match=r"cannot decompress .*netmod\.ko\.xz into /dev: No space left on device"):
        km.decompress_module(str(module), "xz", "/dev/full")  # the kernel's always-full device: every write fails with ENOSPC
    with pytest.raises(km.ScratchSpaceError, match="No such file or directory"):
        km.decompress_module(str(module), "xz", str(tmp_path / "gone" / "netmod.ko"))
