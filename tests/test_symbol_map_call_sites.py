"""Call sites in the symbol map (issue 21, point 4, the map's side): the source line of each call, by return offset.

generate-symbol-map stores, per copy of a function, the return offsets of its calls (DW_TAG_call_site, DWARF 4's
DW_TAG_GNU_call_site) with the line of each call; SymbolMap.call_site_line answers the trace's `caller+0x5b/0x1a3`.
Real DWARF: tests/csrc/callsites_a.c, callsites_b.c and callsites.h compiled here with gcc -O2 (DWARF 4 and 5). The
expected values come from elsewhere than the tool: the lines from the C source read by this file's regular expressions
(a `static inline` helper's calls land in the caller it is inlined into), the return offsets from `objdump -d` (the
address after each call instruction minus its function's symbol address), the sizes from `nm`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, SCRIPT

CSRC = ROOT / "tests" / "csrc"
SOURCES = ("callsites_a.c", "callsites_b.c", "callsites.h")
TOOLS = [tool for tool in ("llvm-dwarfdump", "dwarfdump") if shutil.which(tool)]
INDIRECT = "*"  # a call through a pointer: `call *%rax`, `fn(n)` in the source
CLONE = re.compile(r"\.(?:constprop|isra|part|cold)\.\d+$")


def source_functions() -> list[dict]:
    """Each function of the sources: name, file, whether it is `static inline`, its calls [(callee, line)] in order."""
    found = []
    for source in SOURCES:
        lines = (CSRC / source).read_text().splitlines()
        for index, text in enumerate(lines):
            head = re.match(r"^(static )?(?:inline )?.*\bint (\w+)\(.*\)$", text)
            if not head or index + 1 >= len(lines) or lines[index + 1] != "{":
                continue
            end = lines.index("}", index + 1)
            calls = []
            for number, body in enumerate(lines[index + 2 : end], index + 3):
                for callee in re.findall(r"\b(\w+)\(", body.split("/*")[0]):
                    calls.append((INDIRECT if callee == "fn" else callee, f"{source}:{number}"))
            found.append({"name": head.group(2), "file": source, "inline": "static inline" in text, "calls": calls})
    return found


def expected_calls(function: dict, functions: list[dict]) -> list[tuple[str, str]]:
    """FUNCTION's real calls in order: a call of a `static inline` helper is replaced by the helper's own calls."""
    helpers = {helper["name"]: helper for helper in functions if helper["inline"]}
    calls = []
    for callee, where in function["calls"]:
        calls.extend(expected_calls(helpers[callee], functions) if callee in helpers else [(callee, where)])
    return calls


def objdump_calls(program: Path) -> dict[tuple[str, int], list[tuple[str, int, bool]]]:
    """(symbol, its address) -> [(callee, return offset, tail)] of every call instruction, and every jump to another
    function's start (a tail call: True), read from `objdump -d`."""
    listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(program)], capture_output=True, text=True, check=True).stdout
    found: dict[tuple[str, int], list[tuple[str, int, bool]]] = {}
    current = None
    pending: tuple[str, tuple[str, int], bool] | None = None  # a call waiting for the next instruction's address
    for line in listing.splitlines():
        head = re.match(r"^([0-9a-f]+) <(.+)>:$", line)
        if head:
            current = (head.group(2), int(head.group(1), 16))
            found[current] = []
            continue
        instruction = re.match(r"^\s+([0-9a-f]+):\t(\S+)\s*(.*)$", line)
        if not instruction or current is None:
            continue
        address = int(instruction.group(1), 16)
        if pending:
            callee, owner, tail = pending
            found[owner].append((callee, address - owner[1], tail))
            pending = None
        target = re.search(r"<([\w.@]+)>", instruction.group(3))
        if instruction.group(2).startswith("call"):
            pending = (CLONE.sub("", target.group(1)) if target and "*" not in instruction.group(3) else INDIRECT, current, False)
        elif instruction.group(2).startswith("jmp") and target and target.group(1) != current[0]:
            pending = (CLONE.sub("", target.group(1)), current, True)
    return found


def nm_sizes(program: Path) -> tuple[dict[int, int], dict[int, int]]:
    """Symbol address -> its ELF size (nm -S), and -> the distance to the next symbol (what kallsyms, so ftrace, prints)."""
    sized = subprocess.run(["nm", "-S", "--defined-only", str(program)], capture_output=True, text=True, check=True).stdout
    sizes = {int(parts[0], 16): int(parts[1], 16) for parts in (line.split() for line in sized.splitlines()) if len(parts) == 4}
    ordered = subprocess.run(["nm", "-n", "--defined-only", str(program)], capture_output=True, text=True, check=True).stdout
    addresses = sorted({int(line.split()[0], 16) for line in ordered.splitlines() if line.split()[1] in "tT"})
    return sizes, {address: following - address for address, following in zip(addresses, addresses[1:])}


def expected_sites(program: Path) -> list[tuple[str, int, int, int, str | None]]:
    """(symbol, return offset, ELF size, distance to the next symbol, expected "file:line") of every call in our functions,
    None for a tail call (it never returns there); same-name copies (the two static helper()) told apart by their callees."""
    functions = source_functions()
    sizes, spans = nm_sizes(program)
    sites = []
    for (symbol, address), calls in objdump_calls(program).items():
        candidates = [function for function in functions if function["name"] == (symbol if function["inline"] else CLONE.sub("", symbol))]
        callees = sorted(callee for callee, _, _ in calls)
        chosen = [function for function in candidates if sorted(callee for callee, _ in expected_calls(function, functions)) == callees]
        if not candidates:
            continue
        assert len(chosen) == 1, f"{symbol}: objdump's calls {callees} match {len(chosen)} source functions"
        remaining = expected_calls(chosen[0], functions)
        for callee, offset, tail in calls:  # the k-th call of a callee in the code is its k-th call in the source
            where = next(where for called, where in remaining if called == callee)
            remaining.remove((callee, where))
            sites.append((symbol, offset, sizes[address], spans[address], None if tail else where))
    return sites


def build(tmp_path: Path, dwarf: str) -> Path:
    if shutil.which("gcc") is None or shutil.which("objdump") is None:
        pytest.skip("gcc or objdump not installed")
    work = tmp_path / "src"
    work.mkdir()
    for source in SOURCES:
        shutil.copy(CSRC / source, work)
    subprocess.run(["gcc", "-g", dwarf, "-O2", "callsites_a.c", "callsites_b.c", "-o", "prog"], cwd=work, check=True)
    return work / "prog"


def generate(tmp_path: Path, program: Path, *extra: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "calls.map"
    command = [sys.executable, str(SCRIPT), "generate-symbol-map", "-k", str(program), "-o", str(out), *extra]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env), out


def calls_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("#calls\t")]


def only_tools(tmp_path: Path, *tools: str) -> dict:
    """An environment whose PATH holds only TOOLS (links to the real ones): which line tool is found is chosen here."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in tools:
        (folder / tool).symlink_to(shutil.which(tool))
    return {**os.environ, "PATH": str(folder)}


def test_the_source_has_the_cases():
    """The independent reading itself: a helper inlined in one caller (its calls there are in the header) and out of line
    in the other file, two static helper() with different calls, an indirect call, a clone's calls."""
    functions = source_functions()
    by_name = {(function["name"], function["file"]): function for function in functions}
    assert expected_calls(by_name[("inlines_it", "callsites_a.c")], functions) == [
        ("leaf", "callsites.h:7"), ("leaf", "callsites.h:8"), ("helper", "callsites_a.c:22")]
    assert [callee for callee, _ in by_name[("helper", "callsites_a.c")]["calls"]] == ["leaf"] * 2
    assert [callee for callee, _ in by_name[("helper", "callsites_b.c")]["calls"]] == ["leaf"] * 3
    assert (INDIRECT, "callsites_b.c:31") in by_name[("b_entry", "callsites_b.c")]["calls"]
    assert by_name[("wrapped", "callsites.h")]["inline"]


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("dwarf", ["-gdwarf-5", "-gdwarf-4"])
def test_each_call_has_the_line_it_is_written_on(tmp_path, km, tool, dwarf):
    program = build(tmp_path, dwarf)
    result, out = generate(tmp_path, program, "--dwarfdump", tool)
    assert result.returncode == 0, result.stderr
    sites = expected_sites(program)
    symbols = {symbol for symbol, *_ in sites}
    assert {"middle", "inlines_it", "helper", "wrapped", "b_entry", "scaled.constprop.0", "main", "tail_caller"} <= symbols, symbols
    assert [where for symbol, *_, where in sites if symbol == "tail_caller"] == [None]  # GCC's jmp: no return there
    assert re.search(r"call sites: \d+ return addresses in DWARF \(tail calls left out\), \d+ with a source line", result.stdout), result.stdout
    loaded = km.SymbolMap.load(str(out))
    for symbol, offset, size, span, where in sites:
        assert loaded.call_site_line(symbol, offset, size) == where, (symbol, hex(offset), hex(size))
        # ftrace's size runs to the next symbol (padding included): it still picks the copy
        assert loaded.call_site_line(symbol, offset, span) == where, (symbol, hex(offset), hex(span))
    assert len(loaded.call_lines["helper"]) == 2  # one line per copy, each with its own calls
    assert loaded.call_site_line("middle", 1) is None  # not a return offset: no line
    clone_offset = next(offset for symbol, offset, *_ in sites if symbol == "scaled.constprop.0")
    assert loaded.call_site_line("scaled", clone_offset) is None  # the trace's name is the clone's: a site is the exact copy's


@pytest.mark.parametrize("dwarf", ["-gdwarf-5", "-gdwarf-4"])
def test_without_size_a_line_only_where_the_copies_agree(tmp_path, km, dwarf):
    """The two static helper(): without the size, an offset gives a line only when every copy long enough has that line."""
    program = build(tmp_path, dwarf)
    result, out = generate(tmp_path, program)
    assert result.returncode == 0, result.stderr
    loaded = km.SymbolMap.load(str(out))
    sites = expected_sites(program)
    helpers = [(offset, size, where) for symbol, offset, size, _, where in sites if symbol == "helper"]
    assert len({size for _, size, _ in helpers}) == 2
    for offset, _, where in helpers:
        others = [other for other_offset, other_size, other in helpers if offset <= other_size and other_offset == offset]
        copies_long_enough = sum(1 for size in {size for _, size, _ in helpers} if offset <= size)
        agreed = where if len(others) == copies_long_enough and len(set(others)) == 1 else None
        assert loaded.call_site_line("helper", offset) == agreed, hex(offset)
    for symbol, offset, _, _, where in sites:
        if symbol != "helper":
            assert loaded.call_site_line(symbol, offset) == where, (symbol, hex(offset))


def test_addr2line_gives_the_same_lines_without_llvm(tmp_path):
    """Without llvm-symbolizer, binutils' addr2line resolves the same call sites to the same lines (DWARF 4: binutils
    2.40's addr2line puts wrapped()'s out-of-line lines of DWARF 5 in callsites_b.c instead of callsites.h, its file 1)."""
    if not shutil.which("dwarfdump") or not shutil.which("addr2line"):
        pytest.skip("libdwarf's dwarfdump or addr2line not installed")
    program = build(tmp_path, "-gdwarf-4")
    llvm, llvm_map = generate(tmp_path, program, "--dwarfdump", "dwarfdump")
    assert llvm.returncode == 0, llvm.stderr
    assert "lines by llvm-symbolizer" in llvm.stdout
    expected = calls_lines(llvm_map)
    binutils, binutils_map = generate(tmp_path, program, "--dwarfdump", "dwarfdump", env=only_tools(tmp_path, "dwarfdump", "nm", "addr2line"))
    assert binutils.returncode == 0, binutils.stderr
    assert "lines by addr2line" in binutils.stdout
    assert calls_lines(binutils_map) == expected and len(expected) >= 7


def test_without_a_line_tool_the_map_says_it_has_no_call_sites(tmp_path):
    if not shutil.which("dwarfdump"):
        pytest.skip("libdwarf's dwarfdump not installed")
    program = build(tmp_path, "-gdwarf-5")
    result, out = generate(tmp_path, program, "--dwarfdump", "dwarfdump", env=only_tools(tmp_path, "dwarfdump", "nm"))
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "call sites" in line]
    assert len(said) == 1 and "llvm-symbolizer" in said[0] and "addr2line" in said[0], result.stderr
    assert calls_lines(out) == []
    assert "middle\tcallsites_a.c:25" in out.read_text().splitlines()


def test_no_call_sites_option(tmp_path):
    program = build(tmp_path, "-gdwarf-5")
    with_sites, out = generate(tmp_path, program)
    assert with_sites.returncode == 0 and calls_lines(out), with_sites.stderr
    kept = [line for line in out.read_text().splitlines() if not line.startswith("#")]
    without, out = generate(tmp_path, program, "--no-call-sites")
    assert without.returncode == 0, without.stderr
    assert calls_lines(out) == [] and "call sites" not in without.stdout
    assert [line for line in out.read_text().splitlines() if not line.startswith("#")] == kept


def test_the_version_2_reader_before_call_sites_reads_the_map(tmp_path):
    """Backward compatible: main before this work (054c1c6) reads the map, skipping the '#calls' lines."""
    program = build(tmp_path, "-gdwarf-5")
    result, out = generate(tmp_path, program)
    assert result.returncode == 0 and calls_lines(out)
    previous = tmp_path / "previous.py"
    previous.write_text(subprocess.run(["git", "show", "054c1c6:kernel-magnifier.py"], cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    code = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("km", {str(previous)!r}); km = importlib.util.module_from_spec(spec)
sys.modules["km"] = km; spec.loader.exec_module(km)
m = km.SymbolMap.load({str(out)!r}); print(sorted(m.files)); print(m.files["middle"])
"""
    old = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert old.returncode == 0, old.stderr
    names, middle = old.stdout.splitlines()
    assert "#calls" not in names and "b_entry" in names
    assert middle == "['callsites_a.c:25']"


def test_damaged_calls_lines_are_skipped_not_the_map(tmp_path, km):
    """A cut or edited '#calls' line loses its bad fields (or itself), never the map: the rest still answers."""
    path = tmp_path / "damaged.map"
    path.write_text("kernel-magnifier symbol map 2\nfoo\ta.c:3\n#calls\n#calls\tcut\n#calls\tbad\tzz\t5=a.c:4\n"
                    "#calls\tfoo\t20\t5=a.c:4\tq=a.c:5\t9=:6\t\n")
    loaded = km.SymbolMap.load(str(path))
    assert loaded.files == {"foo": ["a.c:3"]}
    assert loaded.call_site_line("foo", 5, 0x20) == "a.c:4" and loaded.call_site_line("foo", 9) == "a.c:6"
    assert loaded.call_site_line("cut", 0) is None and loaded.call_site_line("bad", 5) is None


def test_ctrl_c_stops_the_line_tool_at_once(tmp_path):
    """A line tool that hangs: SIGINT ends the run within a second, with 130, and the tool's process is gone."""
    program = build(tmp_path, "-gdwarf-5")
    env = only_tools(tmp_path, "dwarfdump", "nm", "sh", "sleep")
    marker = tmp_path / "symbolizer.pid"
    fake = tmp_path / "bin" / "llvm-symbolizer"
    fake.write_text(f"#!/bin/sh\necho $$ > {marker}\nexec sleep 600\n")
    fake.chmod(0o755)
    command = [sys.executable, str(SCRIPT), "generate-symbol-map", "-k", str(program), "-o", str(tmp_path / "m.map"), "--dwarfdump", "dwarfdump"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (marker.exists() and marker.read_text().strip()) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert marker.exists(), process.communicate()
        tool = int(marker.read_text())
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=5)
        assert time.monotonic() - started < 1.0
        assert process.returncode == 130, process.stderr.read() if process.stderr else ""
        time.sleep(0.1)
        with pytest.raises(ProcessLookupError):
            os.kill(tool, 0)
        assert not (tmp_path / "m.map").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
