"""Return values (funcgraph-retval) and `visualize --errors`.

No Debian kernel (bookworm 6.1, trixie 6.12, sid 7.2, experimental 7.3-rc7,
trixie-backports 7.3.4) is built with CONFIG_FUNCTION_GRAPH_RETVAL, so there is
no real recording with return values. The tests graft return values, in each
format the kernel prints (/work/shared/ftrace-format.md 4.6), onto REAL
function_graph lines: whole syscall call blocks of the Debian 7.3.4 recording
in tests/data/fg-newer-kernel (one task, one CPU, nothing lost inside). Each
test named "grafted" works on such lines. The expected paths come from reading
the grafted lines by their indentation here, never from the tool.

The tests named "real" work on REAL recordings with return values
(tests/data/retval, meta.txt): Debian's 7.3.4 source built with
CONFIG_FUNCTION_GRAPH_RETVAL, booted in the VM harness, recording a workload
that fails on purpose (a missing file, two bad ioctls).
"""

from __future__ import annotations

import errno
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import DATA, SCRIPT, assert_one_line_error, edges_by_pair, graph_json, nodes_by_name, read_lines, run_cli

REAL_7_3 = DATA / "fg-newer-kernel" / "trace-default.txt.xz"
PATH_SYSCALLS = ("__x64_sys_openat", "__x64_sys_newfstatat", "__x64_sys_statx")  # a missing file: -ENOENT
ENOIOCTLCMD = 515  # include/linux/errno.h: kernel-internal, not in the C library's table


def split_body(line: str) -> tuple[str, int, str] | None:
    """(columns before "|  ", depth, body) of a function_graph line, by plain splitting; None for others."""
    if line.startswith("#") or "|  " not in line:
        return None
    head, _, body = line.rpartition("|  ")
    return head, (len(body) - len(body.lstrip(" "))) // 2, body.strip()


def call_name(body: str) -> str:
    return body.split("(")[0].split(" [")[0]


def syscall_blocks(lines: list[str], syscall: str) -> list[list[str]]:
    """Every depth-0 `syscall() {` block up to its closing "}": the lines of its CPU (trace_pipe interleaves the
    CPUs' lines), if no other kind of line (context switch, LOST, comment, exit without entry) comes between."""
    blocks = []
    for start, line in enumerate(lines):
        fields = split_body(line)
        if not fields or fields[1] != 0 or fields[2] != f"{syscall}() {{":
            continue
        cpu = line.split(")")[0]
        block = [line]
        for other in lines[start + 1 :]:
            if other.split(")")[0] != cpu and split_body(other):
                continue  # another CPU's line
            inner = split_body(other)
            if not inner or inner[2].startswith("/*") or "*/" in inner[2]:
                break
            block.append(other)
            if inner[1] == 0:
                if inner[2] == "}":
                    blocks.append(block)
                break
    return blocks


def deepest_leaf(block: list[str]) -> int:
    """Index of the first leaf line at the block's greatest depth."""
    leaves = [(split_body(line)[1], -index) for index, line in enumerate(block) if split_body(line)[2].endswith(");")]
    return -max(leaves)[1]


def retval_text(style: str, value: int, name: str | None) -> str:
    """The comment the kernel prints for a return value: style "6.5" (/* f = -2 */), "6.13" (/* f ret=-2 */),
    "hex" (funcgraph-retval-hex, 64 bits) or "hex32" (an int's errno as the upper-half-zero value the register holds)."""
    if style == "hex":
        shown = f"0x{value & 0xFFFFFFFFFFFFFFFF:x}"
    elif style == "hex32":
        shown = f"0x{value & 0xFFFFFFFF:x}"
    else:
        shown = str(value) if value < 0 else f"0x{value:x}"
    where = f"{name} " if name else ""
    return f"/* {where}= {shown} */" if style == "6.5" else f"/* {where}ret={shown} */"


def graft(block: list[str], style: str, errors: dict[int, int]) -> tuple[list[str], list[str]]:
    """The block with a return value on every leaf and exit: errors[depth] on the deepest leaf's call path (the leaf
    itself and the exits of the calls enclosing it), 0 elsewhere. Returns it and that call path."""
    target = deepest_leaf(block)
    stack: list[tuple[str, int]] = []  # open calls: (name, index of the entry line)
    enclosing: list[tuple[str, int]] = []
    out = []
    for index, line in enumerate(block):
        head, depth, body = split_body(line)
        indent = " " * (2 * depth)
        if body.endswith(") {"):
            del stack[depth:]
            stack.append((call_name(body), index))
            out.append(line)
        elif body.endswith(");"):
            del stack[depth:]
            if index == target:
                enclosing = list(stack)
            value = errors.get(depth, 0) if index == target else 0
            out.append(f"{head}|  {indent}{body} {retval_text(style, value, None)}")
        else:  # "}": with retval on, the kernel names the function on every exit
            del stack[depth + 1 :]
            closed = stack.pop()
            value = errors.get(depth, 0) if closed in enclosing else 0
            out.append(f"{head}|  {indent}}} {retval_text(style, value, closed[0])}")
    return out, [name for name, _ in enclosing] + [call_name(split_body(block[target])[2])]


def errors_by_name(graph: dict) -> dict[str, dict]:
    return {entry["name"]: entry for entry in graph["errors"]}


@pytest.fixture(scope="module")
def real_lines() -> list[str]:
    return read_lines(REAL_7_3)


@pytest.mark.parametrize("style", ["6.5", "6.13", "hex", "hex32"])
def test_grafted_enoent_of_real_path_syscalls_is_traced_from_its_first_return_to_the_syscall(tmp_path, real_lines, style):
    blocks = [block for syscall in PATH_SYSCALLS for block in syscall_blocks(real_lines, syscall)]
    assert len(blocks) >= 3
    lines, paths = [], Counter()
    for block in blocks:
        grafted, path = graft(block, style, {depth: -errno.ENOENT for depth in range(64)})
        lines += grafted
        paths[tuple(path)] += 1
    trace = tmp_path / "paths.txt"
    trace.write_text("\n".join(lines) + "\n")
    plain = tmp_path / "plain.txt"
    plain.write_text("\n".join(line for block in blocks for line in block) + "\n")
    graph = graph_json(tmp_path, trace, extra=("--errors",))
    enoent = errors_by_name(graph)["ENOENT"]
    assert enoent["errno"] == -errno.ENOENT and enoent["message"] == os.strerror(errno.ENOENT)
    assert len(graph["errors"]) == 1  # every other leaf and exit returned 0 (or, hex32, nothing that is an errno)
    found = {tuple(origin["path"]): origin for origin in enoent["paths"]}
    assert {path: origin["times"] for path, origin in found.items()} == dict(paths)
    for path, times in paths.items():
        origin = found[path]
        assert origin["function"] == path[-1]
        passed_up = {up["function"]: up["times"] for up in origin["passed_up_by"]}
        assert list(passed_up) == list(reversed(path[:-1]))  # from its caller up to the syscall
        assert all(count >= times for count in passed_up.values())
    assert enoent["first_returns"] == sum(paths.values())
    assert enoent["returns"] == sum(len(path) * times for path, times in paths.items())
    # the return values change nothing else: same functions, calls and edges as the lines without them
    without = graph_json(tmp_path, plain)
    assert {name: node["calls"] for name, node in nodes_by_name(graph).items()} == {name: node["calls"] for name, node in nodes_by_name(without).items()}
    assert edges_by_pair(graph) == edges_by_pair(without)


def test_grafted_bad_ioctl_names_the_kernel_errno_and_where_it_became_another(tmp_path, real_lines):
    """A driver's unknown ioctl: -ENOIOCTLCMD from the deepest call, -ENOTTY from the syscall (first returned there)."""
    blocks = syscall_blocks(real_lines, "__x64_sys_ioctl")
    assert blocks
    lines, paths = [], Counter()
    for block in blocks:
        errors = {depth: -ENOIOCTLCMD for depth in range(1, 64)}
        errors[0] = -errno.ENOTTY
        grafted, path = graft(block, "6.13", errors)
        lines += grafted
        paths[tuple(path)] += 1
    trace = tmp_path / "ioctl.txt"
    trace.write_text("\n".join(lines) + "\n")
    result = run_cli("visualize", "-i", str(trace), "--errors", "-o", str(tmp_path / "graph.json"), "--chart", "", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    by_name = errors_by_name(json.loads((tmp_path / "graph.json").read_text()))
    assert set(by_name) == {"ENOIOCTLCMD", "ENOTTY"}
    internal = by_name["ENOIOCTLCMD"]
    assert internal["message"] == "kernel-internal"
    assert {tuple(origin["path"]): origin["times"] for origin in internal["paths"]} == dict(paths)
    enotty = by_name["ENOTTY"]
    assert [(origin["path"], origin["times"], origin["passed_up_by"]) for origin in enotty["paths"]] == [(["__x64_sys_ioctl"], len(blocks), [])]
    assert f"ENOTTY (-{errno.ENOTTY}, {os.strerror(errno.ENOTTY)}): returned {len(blocks)} time" in result.stdout
    deepest = max(paths, key=len)
    assert f"path: {' > '.join(deepest)}" in result.stdout


def test_grafted_values_that_are_no_errno_are_not_errors(tmp_path, real_lines):
    """IS_ERR_VALUE: only -1..-4095 (after sign-extending an int) are errnos; pointers, -4096 and big counts are not."""
    block = syscall_blocks(real_lines, PATH_SYSCALLS[0])[0]
    lines = []
    for value in (-4096, 0xFFFF88800A1B2C00, 0xFFFFFFFF00000002, 0x7FFFFFFF, 4095):
        grafted, _ = graft(block, "hex", {depth: value for depth in range(64)})
        lines += grafted
    trace = tmp_path / "values.txt"
    trace.write_text("\n".join(lines) + "\n")
    result = run_cli("visualize", "-i", str(trace), "--errors", "-o", str(tmp_path / "graph.json"), "--chart", "", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "graph.json").read_text())["errors"] == []
    assert "errors: no call returned a negative errno" in result.stdout


def test_grafted_trace_cmd_report_retval_suffix(tmp_path):
    """trace-cmd report -O fgraph:retval-dec appends " (ret=N)": grafted onto an exit of the real report in tests/data/trace-cmd."""
    lines = read_lines(DATA / "trace-cmd" / "report-head.txt.xz")
    stacks: dict[str, list[tuple[int, str]]] = {}
    chosen = None
    for index, line in enumerate(lines):
        if "DROPPED" in line:
            break
        if "funcgraph_" not in line:
            continue
        pid = line.split("[")[0].strip().rsplit("-", 1)[1]
        body = line.rpartition("|  ")[2]
        depth = (len(body) - len(body.lstrip(" "))) // 2
        stack = stacks.setdefault(pid, [])
        if body.strip() == "}":
            if stack and stack[-1][0] == depth and depth >= 2:
                chosen = (index, stack[-1][1])
                break
            del stack[-1:]
        elif body.rstrip().endswith("{"):
            stack.append((depth, call_name(body.strip())))
    assert chosen is not None
    index, function = chosen
    grafted = [f"{line.rstrip()} (ret=-{errno.EAGAIN})" if at == index else line for at, line in enumerate(lines)]
    trace = tmp_path / "report.txt"
    trace.write_text("\n".join(grafted) + "\n")
    by_name = errors_by_name(graph_json(tmp_path, trace, extra=("--errors",)))
    assert [(origin["function"], origin["times"]) for origin in by_name["EAGAIN"]["paths"]] == [(function, 1)]


def test_errors_on_a_trace_without_return_values_says_how_to_record_them(tmp_path):
    result = run_cli("visualize", "-i", str(REAL_7_3), "--errors", "-o", str(tmp_path / "graph.json"), "--chart", "", cwd=tmp_path)
    assert_one_line_error(result, "record -O funcgraph-retval")
    assert "CONFIG_FUNCTION_GRAPH_RETVAL" in result.stderr
    assert not (tmp_path / "graph.json").exists()


def run_with(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=300, env={**os.environ, **env},
    )


def test_grafted_errors_of_inputs_parsed_in_child_processes_add_up(tmp_path, real_lines):
    blocks = [block for syscall in PATH_SYSCALLS for block in syscall_blocks(real_lines, syscall)]
    inputs = []
    for name in ("a.txt", "b.txt"):
        lines = [line for block in blocks for line in graft(block, "6.13", {depth: -errno.ENOENT for depth in range(64)})[0]]
        (tmp_path / name).write_text("\n".join(lines) + "\n")
        inputs += ["-i", str(tmp_path / name)]
    found = {}
    for processes in ("1", "2"):
        result = run_with({"KM_PARSE_PROCESSES": processes}, "visualize", *inputs, "--errors", "-o", f"{processes}.json", "--chart", "", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        found[processes] = json.loads((tmp_path / f"{processes}.json").read_text())["errors"]
    assert found["2"] == found["1"]
    assert found["1"][0]["first_returns"] == 2 * len(blocks)


@pytest.mark.parametrize("seam", ["0.2174", "0.6087"])
def test_grafted_errors_are_the_same_when_the_file_is_parsed_in_halves(tmp_path, real_lines, seam):
    lines = []
    blocks = [block for syscall in PATH_SYSCALLS for block in syscall_blocks(real_lines, syscall)]
    for block in blocks * 20:
        lines += graft(block, "6.13", {depth: -errno.ENOENT for depth in range(64)})[0]
    trace = tmp_path / "paths.txt"
    trace.write_text("\n".join(lines) + "\n")
    sequential = graph_json(tmp_path, trace, extra=("--errors",))["errors"]
    split = run_with({"KM_PARSE_PROCESSES": "2", "KM_SPLIT_AT": seam}, "visualize", "-i", str(trace), "--errors", "-o", "split.json", "--chart", "", cwd=tmp_path)
    assert split.returncode == 0, split.stderr
    assert json.loads((tmp_path / "split.json").read_text())["errors"] == sequential
    assert sequential[0]["first_returns"] == 20 * len(blocks)


def test_record_funcgraph_retval_is_passed_through_where_the_kernel_has_it(km, tmp_path):
    options = tmp_path / "options"
    options.mkdir()
    for name in (DATA / "fg-newer-kernel" / "options-available.txt").read_text().split():
        (options / name).write_text("0\n")
    with pytest.raises(km.UserError, match="built without CONFIG_FUNCTION_GRAPH_RETVAL"):
        km.tracer_option("funcgraph-retval", str(options))  # the real 7.3.4 Debian kernel's options
    (options / "funcgraph-retval").write_text("0\n")
    assert km.tracer_option("funcgraph-retval", str(options)) == (str(options / "funcgraph-retval"), "1")
    assert km.tracer_option("nofuncgraph-retval", str(options)) == (str(options / "funcgraph-retval"), "0")


def exit_events(pages: bytes, exit_id: int) -> list[tuple[int, int]]:
    """(byte offset of the event's data, function address) of every funcgraph_exit in raw ring-buffer pages,
    walked by the header_event rules (as tests/test_tracedat_write.page_events counts them)."""
    found = []
    for start in range(0, len(pages), 4096):
        commit = int.from_bytes(pages[start + 8 : start + 16], "little") & ((1 << 27) - 1)
        position, end = start + 16, start + 16 + commit
        while position < end:
            header = int.from_bytes(pages[position : position + 4], "little")
            type_len = header & 0x1F
            if type_len <= 28:
                data, length = (position + 8, int.from_bytes(pages[position + 4 : position + 8], "little") - 4) if type_len == 0 else (position + 4, 4 * type_len)
                if int.from_bytes(pages[data : data + 2], "little") == exit_id:
                    found.append((data, int.from_bytes(pages[data + 8 : data + 16], "little")))
                position = data + length
            elif type_len == 29:
                length = int.from_bytes(pages[position + 4 : position + 8], "little")
                position = end if length == 0 else position + 4 + length
            else:
                position += 8
    return found


def test_grafted_trace_dat_retval_field_is_read_by_its_stored_format(km, tmp_path):
    """Real ring-buffer pages of the 6.1 kernel (tests/data/raw-binary) written as a trace.dat by record's writer, with
    the funcgraph_exit format's 4-byte "overrun" field renamed "retval" and -EAGAIN (0xfffffff5, an int the kernel
    sign-extends) written into it for every exit of the most frequent function: those exits, and no other, are errors."""
    import dataclasses
    import lzma

    from test_tracedat_write import METADATA, RAW, TRACEFS, parts  # noqa: F401  (METADATA: the file's header lines)

    exit_format = (TRACEFS / "events" / "ftrace" / "funcgraph_exit" / "format").read_text()
    exit_id = int(exit_format.split("ID:")[1].split()[0])
    assert "unsigned int overrun;\toffset:20;\tsize:4;" in exit_format
    symbols = {int(line.split()[0], 16): line.split()[2] for line in lzma.decompress((RAW / "kallsyms-used.xz").read_bytes()).decode().splitlines()}
    written = {}
    patched_calls = Counter()
    pages_by_cpu = {cpu: bytearray(lzma.decompress((RAW / f"pages-cpu{cpu}.raw.xz").read_bytes())) for cpu in (0, 1)}
    exits = {cpu: exit_events(bytes(pages), exit_id) for cpu, pages in pages_by_cpu.items()}
    function = Counter(symbols[address] for found in exits.values() for _, address in found).most_common(1)[0][0]
    for cpu, pages in pages_by_cpu.items():
        for data, address in exits[cpu]:
            if symbols[address] == function:
                pages[data + 20 : data + 24] = (-errno.EAGAIN & 0xFFFFFFFF).to_bytes(4, "little")
                patched_calls[function] += 1
    for name, pages, fmt in (("plain", None, exit_format), ("retval", pages_by_cpu, exit_format.replace("unsigned int overrun;", "unsigned int retval;"))):
        spools = {}
        for cpu in (0, 1):
            content = bytes(pages[cpu]) if pages else lzma.decompress((RAW / f"pages-cpu{cpu}.raw.xz").read_bytes())
            handle = (tmp_path / f"{name}-cpu{cpu}.raw").open("w+b")
            handle.write(content)
            handle.flush()
            spools[cpu] = type("Spool", (), {"cpu": cpu, "file": handle, "size": len(content)})()
        base = parts(km)
        formats = [fmt if text.startswith("name: funcgraph_exit") else text for text in base.ftrace_formats]
        path = tmp_path / f"{name}.dat"
        with path.open("wb") as output:
            km.write_trace_dat(output, dataclasses.replace(base, ftrace_formats=formats), spools)
        written[name] = path
    plain = run_cli("visualize", "-i", str(written["plain"]), "--errors", "-o", "plain.json", "--chart", "", cwd=tmp_path)
    assert_one_line_error(plain, "record -O funcgraph-retval")  # no retval field: no return values
    graph = graph_json(tmp_path, written["retval"], extra=("--errors",))
    assert [entry["name"] for entry in graph["errors"]] == ["EAGAIN"]
    eagain = graph["errors"][0]
    assert {origin["function"] for origin in eagain["paths"]} == {function}
    assert eagain["first_returns"] == eagain["returns"] == patched_calls[function] > 100, (function, patched_calls)
    assert all(not origin["passed_up_by"] for origin in eagain["paths"])
    without = graph_json(tmp_path, written["plain"])
    assert {name: node["calls"] for name, node in nodes_by_name(graph).items()} == {name: node["calls"] for name, node in nodes_by_name(without).items()}
    assert edges_by_pair(graph) == edges_by_pair(without)
    timelines = []
    for name in ("plain", "retval"):
        result = run_cli("visualize", "-i", str(written[name]), "-o", f"{name}.trace.json", "--chart", "", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        timelines.append(json.loads((tmp_path / f"{name}.trace.json").read_text())["traceEvents"])
    assert timelines[0] == timelines[1]  # the errno's bits do not change the calls' names in the timeline


def test_grafted_return_values_followed_by_blanks_are_read(tmp_path, real_lines):
    """A line copied with trailing blanks (an editor, a terminal's copy) keeps its return value."""
    block = syscall_blocks(real_lines, PATH_SYSCALLS[0])[0]
    grafted, path = graft(block, "6.13", {depth: -errno.ENOENT for depth in range(64)})
    trace = tmp_path / "blanks.txt"
    trace.write_text("".join(f"{line}  \n" for line in grafted))
    (origin,) = errors_by_name(graph_json(tmp_path, trace, extra=("--errors",)))["ENOENT"]["paths"]
    assert origin["path"] == path


# Real recordings with return values: Debian's 7.3.4 source built with CONFIG_FUNCTION_GRAPH_RETVAL, booted in the
# VM harness, a workload that fails on purpose (tests/data/retval/meta.txt). The expected errors come from reading
# the recorded lines here: the return value in each leaf's and exit's comment, the call nesting from the indentation
# (text) or from trace-cmd's raw decoding of the events (trace.dat).
REAL_RETVAL = DATA / "retval"


def kernel_errno(value: str) -> int | None:
    """The errno a printed return value is: print_graph_retval() sign-extends a 64-bit value whose upper half is 0 and
    bit 31 set (an int), then IS_ERR_VALUE (-4095..-1). Decimal values are what the kernel already converted."""
    number = int(value, 16) if value.startswith("0x") or not value.lstrip("-").isdigit() else int(value)
    if number >= 0:
        if number >> 32 == 0 and number & 0x80000000:
            number -= 1 << 32
        elif number >> 63:
            number -= 1 << 64
    return number if -4095 <= number < 0 else None


class ErrnoReading:
    """Per errno: returns, first returns per call path and, per path prefix, how often that call passed it up: a call
    passed its errno up when the last of its callees that returned an errno returned the same one."""

    def __init__(self) -> None:
        self.returns: Counter = Counter()
        self.first: Counter = Counter()  # (errno, path)
        self.passed: Counter = Counter()  # (errno, path of the call that passed it up)

    def returned(self, path: tuple[str, ...], err: int | None, last_callee_errno: int | None) -> None:
        if err is None:
            return
        self.returns[err] += 1
        if last_callee_errno == err:
            self.passed[(err, path)] += 1
        else:
            self.first[(err, path)] += 1

    def expected(self) -> dict[int, dict]:
        report = {}
        for err, total in self.returns.items():
            paths = {}
            for (first_err, path), times in self.first.items():
                if first_err != err:
                    continue
                up = [(path[index - 1], self.passed[(err, path[:index])]) for index in range(len(path) - 1, 0, -1)]
                paths[path] = (times, [item for item in up if item[1]])
            report[err] = {"returns": total, "paths": paths}
        return report


def tool_errors(graph: dict) -> dict[int, dict]:
    found = {}
    for entry in graph["errors"]:
        paths = {tuple(origin["path"]): (origin["times"], [(up["function"], up["times"]) for up in origin["passed_up_by"]]) for origin in entry["paths"]}
        assert all(origin["function"] == origin["path"][-1] for origin in entry["paths"])
        assert entry["first_returns"] == sum(times for times, _ in paths.values())
        found[entry["errno"]] = {"returns": entry["returns"], "paths": paths}
    return found


def read_text_blocks(lines: list[str]) -> tuple[list[list[str]], ErrnoReading, int]:
    """Every depth-0 block of each CPU whose indentation and exit names nest exactly (a block a task switch, a
    migration or anything but graph lines cuts is left out); the errnos read from those blocks; blocks left out."""
    reading, blocks, dropped = ErrnoReading(), [], 0
    open_blocks: dict[str, tuple[list[str], list[list], list]] = {}  # cpu -> (lines, [name, last callee errno]s, returns)
    for line in lines:
        fields = split_body(line)
        cpu = line.split(")")[0].strip()
        if not fields or not cpu.isdigit():
            dropped += len(open_blocks)
            open_blocks.clear()  # a context switch block, a comment: no block goes on across it
            continue
        _, depth, body = fields
        if cpu not in open_blocks:
            if depth != 0 or not body.endswith(") {"):
                continue
            open_blocks[cpu] = ([], [], [])
        block, stack, returns = open_blocks[cpu]
        block.append(line)
        comment = body.split("/*", 1)[1].removesuffix("*/").strip() if "/*" in body else ""
        err = kernel_errno(comment.split("ret=")[1]) if "ret=" in comment else None
        if body.endswith(") {") and depth == len(stack):
            stack.append([call_name(body), None])
        elif body.split(" /*")[0].endswith(");") and depth == len(stack):
            returns.append(((*(name for name, _ in stack), call_name(body)), err, None))
            if err is not None and stack:
                stack[-1][1] = err
        elif body.startswith("} /* ") and depth == len(stack) - 1 and comment.split(" ret=")[0] == stack[-1][0]:
            returns.append((tuple(name for name, _ in stack), err, stack[-1][1]))
            stack.pop()
            if err is not None and stack:
                stack[-1][1] = err
            if not stack:
                for returned in returns:
                    reading.returned(*returned)
                blocks.append(block)
                del open_blocks[cpu]
        else:
            dropped += 1
            del open_blocks[cpu]
    return blocks, reading, dropped


@pytest.mark.parametrize("name", ["retval.txt.xz", "retval-hex.txt.xz"])
def test_real_retval_text_errors_are_the_recorded_return_values_and_their_nesting(tmp_path, name):
    """The whole recording: each errno's returns are the lines whose comment holds it. Its complete syscall blocks:
    every path an errno was first returned on, how often, and who passed it up, as the indentation says."""
    lines = read_lines(REAL_RETVAL / name)
    printed = Counter()
    for line in lines:
        fields = split_body(line)
        if fields and "ret=" in fields[2]:
            err = kernel_errno(fields[2].split("ret=")[1].split()[0])
            if err is not None:
                printed[err] += 1
    assert {-errno.ENOENT, -errno.ENOTTY, -ENOIOCTLCMD} <= set(printed)  # the workload's failures
    whole = tool_errors(graph_json(tmp_path, REAL_RETVAL / name, extra=("--errors",)))
    assert {err: found["returns"] for err, found in whole.items()} == dict(printed)
    blocks, reading, dropped = read_text_blocks(lines)
    assert len(blocks) > 4 * dropped, (len(blocks), dropped)
    assert {-errno.ENOENT, -errno.ENOTTY, -ENOIOCTLCMD} <= set(reading.expected())
    blocks_file = tmp_path / "blocks.txt"
    blocks_file.write_text("\n".join(line for block in blocks for line in block) + "\n")
    assert tool_errors(graph_json(tmp_path, blocks_file, extra=("--errors",))) == reading.expected()


def test_real_retval_bad_ioctls_and_missing_file_propagation(tmp_path):
    """What the workload did, in the text recording: TCGETS on /dev/null and TIOCGWINSZ on a pipe fail with ENOTTY from
    the syscall itself; the pipe's own ioctl handler said ENOIOCTLCMD first; the missing file's ENOENT reached
    __x64_sys_openat (as many times as the recording has `} /* __x64_sys_openat ret=-2 */`)."""
    lines = read_lines(REAL_RETVAL / "retval.txt.xz")
    failed_ioctls = sum(1 for line in lines if line.rstrip().endswith("} /* __x64_sys_ioctl ret=-25 */"))
    pipe_ioctls = sum(1 for line in lines if "pipe_ioctl(); /* ret=-515 */" in line or "} /* pipe_ioctl ret=-515 */" in line)
    failed_opens = sum(1 for line in lines if line.rstrip().endswith("} /* __x64_sys_openat ret=-2 */"))
    assert failed_ioctls and pipe_ioctls and failed_opens
    by_name = errors_by_name(graph_json(tmp_path, REAL_RETVAL / "retval.txt.xz", extra=("--errors",)))
    assert [(origin["path"], origin["times"]) for origin in by_name["ENOTTY"]["paths"]] == [(["__x64_sys_ioctl"], failed_ioctls)]
    assert [(origin["path"], origin["times"]) for origin in by_name["ENOIOCTLCMD"]["paths"]] == [(["__x64_sys_ioctl", "pipe_ioctl"], pipe_ioctls)]
    for origin in by_name["ENOENT"]["paths"]:
        assert origin["path"][0] == "__x64_sys_openat"
        if len(origin["path"]) > 1:
            assert origin["passed_up_by"][-1]["function"] == "__x64_sys_openat"
            assert origin["passed_up_by"][-1]["times"] == failed_opens


RAW_GRAPH_EVENT = re.compile(r"^\s*.*-(\d+)\s+\[\d+\]\s+[\d.]+: (funcgraph_entry|funcgraph_exit):\s+func=(\S+) (?:retval=([0-9a-f]+) )?depth=(\d+)")


def read_nested(events) -> tuple[ErrnoReading, int]:
    """The errnos of (task, kind "entry"/"leaf"/"exit", depth, function, errno or None) events, nested per task by
    their depth. An interrupt taken between a call's depth count and its entry event shows up one level deeper
    before that entry: returns under such a gap are counted in `returns` but no path is expected for them
    (their number is the second value). An exit whose entry is not in the recording is left out."""
    reading = ErrnoReading()
    stacks: dict[str, list[list]] = {}  # task -> [name or None (entry not seen yet), last callee errno]
    in_gaps = 0
    for task, kind, depth, function, err in events:
        stack = stacks.setdefault(task, [])
        if kind != "exit":
            del stack[depth:]
            stack.extend([None, None] for _ in range(depth - len(stack)))
            stack.append([function, None])
            if kind == "entry":
                continue
        if depth >= len(stack) or stack[depth][0] != function:
            continue
        path = tuple(name for name, _ in stack[: depth + 1])
        if None in path:
            in_gaps += err is not None
            reading.returns[err] += err is not None
        else:
            reading.returned(path, err, stack[depth][1])
        del stack[depth:]
        if err is not None and stack:
            stack[-1][1] = err
    del reading.returns[None]
    return reading, in_gaps


def raw_report_events(report: str):
    """`trace-cmd report -R`: each event's raw fields (retval in hex); every call has an entry and an exit event."""
    for line in report.splitlines():
        event = RAW_GRAPH_EVENT.match(line)
        if event:
            pid, kind, function, retval, depth = event.groups()
            yield pid, kind.removeprefix("funcgraph_"), int(depth), function, kernel_errno(f"0x{retval}") if retval else None


def proc_text_events(lines: list[str]):
    """function_graph text with the task column (funcgraph-proc): "TIME | CPU) comm-pid | DURATION | body"."""
    for line in lines:
        fields = split_body(line)
        if not fields:
            continue
        head, depth, body = fields
        task = head.split("|")[1].strip().rsplit("-", 1)[1]
        comment = body.split("/*", 1)[1].removesuffix("*/").strip() if "/*" in body else ""
        err = kernel_errno(comment.split("ret=")[1]) if "ret=" in comment else None
        if body.endswith(") {"):
            yield task, "entry", depth, call_name(body), None
        elif body.startswith("} /* "):
            yield task, "exit", depth, comment.split(" ret=")[0], err
        else:
            yield task, "leaf", depth, call_name(body), err


def test_real_retval_text_with_task_columns_errors_are_its_lines_nested_per_task(tmp_path):
    """The whole recording with -O funcgraph-proc -O funcgraph-abstime: tasks sleep in p9_client_rpc and come back on
    the other CPU, so the nesting is per task (the comm-pid column), as the kernel tracks it."""
    lines = read_lines(REAL_RETVAL / "retval-proc.txt.xz")
    reading, in_gaps = read_nested(proc_text_events(lines))
    expected = reading.expected()
    assert {-errno.ENOENT, -errno.ENOTTY, -ENOIOCTLCMD} <= set(expected)
    assert in_gaps == 0
    assert sum(found["returns"] for found in expected.values()) == sum(1 for line in lines if "ret=-" in line)
    assert tool_errors(graph_json(tmp_path, REAL_RETVAL / "retval-proc.txt.xz", extra=("--errors",))) == expected


@pytest.mark.skipif(shutil.which("trace-cmd") is None, reason="needs trace-cmd (its raw decoding is the expected value)")
def test_real_retval_trace_dat_errors_are_trace_cmds_decoded_retval_fields(tmp_path):
    """The trace.dat recording (record's default format): trace-cmd 3.1.6 prints no return values in its graph view,
    so the expectation is its raw decoding of each funcgraph_exit's retval field (-R), nested by the depth fields."""
    trace = tmp_path / "retval.dat"
    trace.write_bytes(lzma.decompress((REAL_RETVAL / "retval.dat.xz").read_bytes()))
    report = subprocess.run(["trace-cmd", "report", "-R", str(trace)], capture_output=True, text=True, check=True).stdout
    reading, in_gaps = read_nested(raw_report_events(report))
    expected = reading.expected()
    assert {-errno.ENOENT, -errno.ENOTTY, -ENOIOCTLCMD} <= set(expected)
    assert in_gaps == 0  # no errno under an interrupt's gap in this recording: every path is expected exactly
    found = tool_errors(graph_json(tmp_path, trace, extra=("--errors",)))
    assert found == expected
    failed_ioctls = report.count("func=__x64_sys_ioctl retval=ffffffffffffffe7 ")  # -ENOTTY: stty's TCGETS, python's TIOCGWINSZ
    assert failed_ioctls and found[-errno.ENOTTY]["paths"] == {("__x64_sys_ioctl",): (failed_ioctls, [])}


def test_real_retval_errors_a_syscall_returned_come_first(tmp_path):
    """--errors answers "why did the syscall fail" first: the errnos a top-level call returned, then the rest, marked."""
    recording = REAL_RETVAL / "retval.txt.xz"
    returned_at_top = set()
    for line in read_lines(recording):
        body = line.rpartition("|  ")[2]
        match = re.match(r"(?:\} /\* \S+|\S+\(\); /\*) ret=(-\d+) \*/$", body)  # depth 0: no indentation after the column
        if match:
            returned_at_top.add(int(match.group(1)))
    assert returned_at_top, "the recording has failing syscalls"
    result = run_cli("visualize", "-i", str(recording), "--errors", "-o", str(tmp_path / "e.json"), "--chart", "")
    assert result.returncode == 0, result.stderr
    headings = re.findall(r"^  E\w+ \((-\d+), .*$", result.stdout, re.M)
    marked = [line.endswith("no top-level call returned it") for line in re.findall(r"^  E\w+ \(-\d+, .*$", result.stdout, re.M)]
    assert [int(err) for err in headings[: len(returned_at_top)]] and set(map(int, headings[: len(returned_at_top)])) == returned_at_top
    assert marked == [False] * len(returned_at_top) + [True] * (len(headings) - len(returned_at_top))
    assert "a value no caller passed up may be a leftover" in result.stdout
