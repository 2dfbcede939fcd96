"""Inlined callees in the symbol map (issue 21, point 2): the calls ftrace cannot see.

generate-symbol-map stores, per out-of-line function, the functions inlined into it with their call lines, from real
DWARF (gcc -O2, DWARF 4 and 5, both dwarfdump families). The expected calls come from an independent reading of the
test's own C source (tests/csrc/inlined.c, inlined.h): each host's calls of the `static inline` helpers found by regular
expressions, followed into the helpers' bodies (a helper's call inside another lands in its host too), none from a
function built at -O0 unless always_inline. visualize shows them (tooltip, JSON, --show-inlined's dotted boxes) and
says in one line when --root/--callers/--latency name a function that is only inlined, on a real trace.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import DATA, ROOT, assert_one_line_error, run_cli

CSRC = ROOT / "tests" / "csrc"
TOOLS = [tool for tool in ("llvm-dwarfdump", "dwarfdump") if shutil.which(tool)]
SOURCES = ("inlined.c", "inlined.h")
HOSTS = ("host_a", "host_b", "host_c", "host_slow", "main")
DEMO = DATA / "record-demo" / "kernel-magnifier.data.xz"  # function_graph text of Debian 6.1
INLINES_MAP = DATA / "symbol-map-inlines-6.1.0-56-amd64.map.xz"  # the real 6.1 map cut to the demo's functions


def functions(path: Path) -> dict[str, dict]:
    """name -> {file, attributes line, body: [(line number, text)]} of each function PATH defines (a '{' line follows its head)."""
    lines = path.read_text().splitlines()
    found = {}
    for index, text in enumerate(lines):
        without_attributes = re.sub(r"__attribute__\(\((?:[^()]|\([^()]*\))*\)\)\s*", "", text)
        head = re.match(r"^[^(]*?\b(\w+)\([^;]*\)$", without_attributes)
        if head and index + 1 < len(lines) and lines[index + 1] == "{":
            end = lines.index("}", index + 1)
            found[head.group(1)] = {"file": path.name, "head": text, "body": list(enumerate(lines[index + 2 : end], index + 3))}
    return found


def expected_inlines() -> dict[str, set[str]]:
    """host -> {"callee (file:line)"}: every call of a `static inline` helper in the host, then in the helpers it inlines."""
    defined = {name: info for source in SOURCES for name, info in functions(CSRC / source).items()}
    helpers = {name for name, info in defined.items() if "static inline" in info["head"]}

    def calls_in(name: str, at_o0: bool) -> set[str]:
        found = set()
        for number, text in defined[name]["body"]:
            for callee in re.findall(r"\b(\w+)\(", text):
                if callee in helpers and not (at_o0 and "always_inline" not in defined[callee]["head"]):
                    found.add(f"{callee} ({defined[name]['file']}:{number})")
                    found |= calls_in(callee, False)  # inlined: its own helpers' calls land in the host too
        return found

    return {host: calls_in(host, 'optimize("O0")' in defined[host]["head"]) for host in HOSTS}


def build(tmp_path: Path, dwarf: str) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    work = tmp_path / "src"
    shutil.copytree(CSRC, work)
    subprocess.run(["gcc", "-g", dwarf, "-O2", "inlined.c", "-o", "prog"], cwd=work, check=True)
    return work / "prog"


def map_inlines(path: Path) -> dict[str, list[str]]:
    """host -> its '#inlines' fields, read from the map's raw lines."""
    import lzma

    text = lzma.open(path, "rt").read() if path.suffix == ".xz" else path.read_text()
    return {name: calls for _, name, *calls in (line.split("\t") for line in text.splitlines() if line.startswith("#inlines\t"))}


def test_the_source_has_the_cases():
    """The independent reading itself: a helper inlined into another, one called twice on a line, mid() at -O0, a host without any."""
    expected = expected_inlines()
    assert expected["host_a"] == {"twice (inlined.c:20)", "square_plus (inlined.c:22)", "twice (inlined.h:14)", "mid (inlined.c:25)"}
    assert expected["host_b"] == {"twice (inlined.c:30)"}
    assert expected["host_c"] == expected["host_slow"] == expected["main"] == set()


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("dwarf", ["-gdwarf-5", "-gdwarf-4"])
def test_each_function_lists_the_calls_inlined_into_it(tmp_path, tool, dwarf):
    program = build(tmp_path, dwarf)
    out = tmp_path / "inl.map"
    result = run_cli("generate-symbol-map", "-k", str(program), "-o", str(out), "--dwarfdump", tool, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = map_inlines(out)
    expected = expected_inlines()
    for host in HOSTS:
        calls = found.get(host, [])
        assert len(calls) == len(set(calls)), f"{host}: a call listed twice: {calls}"
        assert set(calls) == expected[host], f"{host}: {calls}"
    assert "inlined calls: " in result.stdout
    # the map stays version 2 and its functions and files are unchanged by the inlines lines
    text = out.read_text()
    assert text.startswith("kernel-magnifier symbol map 2")
    assert "mid\tinlined.c:8" in text.splitlines()  # mid: inlined into host_a, and out of line for host_slow


def test_a_version_2_reader_before_inlines_reads_the_map(tmp_path):
    """Backward compatible: the version 2 reader of points 1 and 3 (main before this work) skips the '#inlines' lines."""
    program = build(tmp_path, "-gdwarf-5")
    out = tmp_path / "inl.map"
    assert run_cli("generate-symbol-map", "-k", str(program), "-o", str(out)).returncode == 0
    previous = tmp_path / "previous.py"
    previous.write_text(subprocess.run(["git", "show", "7d121d9:kernel-magnifier.py"], cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    code = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("km", {str(previous)!r}); km = importlib.util.module_from_spec(spec)
sys.modules["km"] = km; spec.loader.exec_module(km)
m = km.SymbolMap.load({str(out)!r}); print(sorted(m.files)); print(m.files["host_a"])
"""
    result = subprocess.run([shutil.which("python3") or "python3", "-c", code], capture_output=True, text=True, cwd=ROOT)
    if "ModuleNotFoundError" in result.stderr:
        pytest.skip(result.stderr.strip().splitlines()[-1])
    assert result.returncode == 0, result.stderr
    names, host_a = result.stdout.splitlines()
    assert "#inlines" not in names
    assert host_a == "['inlined.c:18']"


def test_the_cap_per_function_is_said_in_the_map(tmp_path):
    """Over INLINES_PER_FUNCTION distinct calls in one function: the first ones kept, the rest counted '+N more', each
    distinct call once (two calls on each line: one entry per line, kept or cut)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    calls = "\n".join(f"\tr += one(n + {index}) * one(n - {index});" for index in range(70))
    source = tmp_path / "many.c"
    source.write_text(
        "volatile int sink;\nstatic inline __attribute__((always_inline)) int one(int v)\n{\n\treturn v + sink;\n}\n"
        f"int many(int n)\n{{\n\tint r = 0;\n{calls}\n\treturn r;\n}}\nint main(void)\n{{\n\treturn many(sink);\n}}\n"
    )
    subprocess.run(["gcc", "-g", "-O2", "many.c", "-o", "many"], cwd=tmp_path, check=True)
    out = tmp_path / "many.map"
    result = run_cli("generate-symbol-map", "-k", str(tmp_path / "many"), "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    many = map_inlines(out)["many"]
    assert many[-1] == "+6 more"
    lines = [int(re.search(r":(\d+)\)$", call).group(1)) for call in many[:-1]]
    assert len(lines) == 64 and len(set(lines)) == 64 and min(lines) >= 9
    assert "6 more cut (over 64 in a function)" in result.stdout


# ---------------------------------------------------------------------------------------------------------------
# visualize, on the real demo recording (Debian 6.1) with a small map cut from the real 6.1 vmlinux's map: the
# functions of the recording with their '#inlines' lines as generate-symbol-map wrote them.


CLONE_SUFFIX = re.compile(r"(?:\.(?:isra|constprop|part|cold)\.\d+)+$")


def base(name: str) -> str:
    """finish_task_switch.isra.0 -> finish_task_switch: the DWARF name the map keys a clone's inlined calls by."""
    return CLONE_SUFFIX.sub("", name)


def traced_names() -> set[str]:
    """Function names of the demo recording, read from its raw function_graph lines."""
    import lzma

    names = set()
    for line in lzma.open(DEMO, "rt", errors="replace"):
        found = re.search(r"\|\s+(?:\}\s*/\*\s*)?([\w.]+)(?:\(\)| \*/)", line)
        if found:
            names.add(found.group(1))
    return names


def real_inlines() -> dict[str, list[str]]:
    return map_inlines(INLINES_MAP)


def only_inlined_callee() -> tuple[str, list[str]]:
    """A function never in the demo trace that the map says is inlined into 2 to 8 traced functions, and those hosts."""
    traced = traced_names()
    traced_bases = {base(name) for name in traced}
    hosts: dict[str, set[str]] = {}
    for host, calls in real_inlines().items():
        for call in calls:
            hosts.setdefault(call.partition(" (")[0], set()).add(host)
    for callee, into in sorted(hosts.items()):
        if callee not in traced_bases and 2 <= len(into & traced_bases) <= 8:
            return callee, sorted(into & traced_bases)
    raise AssertionError("no only-inlined function in the demo map")


def visualize(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("visualize", "-i", str(DEMO), "--symbol-map", str(INLINES_MAP), *extra, cwd=tmp_path)


@pytest.mark.parametrize("option", ["--root", "--callers", "--latency"])
def test_an_only_inlined_function_is_said_in_one_line(tmp_path, option):
    callee, hosts = only_inlined_callee()
    result = visualize(tmp_path, option, callee, "-o", str(tmp_path / "out.json"))
    assert_one_line_error(result, f"{option} {callee}: {callee} is only inlined (ftrace cannot trace it): it is inlined into ")
    named = result.stderr.split("inlined into ", 1)[1].strip()
    traced_part, _, rest = named.partition(" (traced)")
    assert traced_part.split(", ") == hosts, named
    assert rest == "" or re.fullmatch(r", [\d,]+ more not in this trace", rest), rest


def test_a_name_inlined_nowhere_keeps_the_usual_message(tmp_path):
    result = visualize(tmp_path, "--root", "no_such_function_xyz", "-o", str(tmp_path / "out.json"))
    assert_one_line_error(result, "--root no_such_function_xyz: no function of that name was called in the trace")


def test_the_json_and_the_tooltips_list_the_inlined_calls(tmp_path):
    out = tmp_path / "out.json"
    assert visualize(tmp_path, "-o", str(out)).returncode == 0
    nodes = {node["name"]: node for node in json.loads(out.read_text())["nodes"]}
    expected = real_inlines()
    with_inlines = {name for name in nodes if base(name) in expected}
    assert len(with_inlines) >= 10
    for name in with_inlines:
        calls = expected[base(name)]
        cut = int(calls[-1].split()[0]) if calls[-1].startswith("+") else 0
        assert nodes[name]["inlines_not_traced"] == calls[: len(calls) - bool(cut)]
        assert nodes[name]["inlines_cut"] == cut
    assert all("inlines_not_traced" not in node for name, node in nodes.items() if name not in with_inlines)
    dot = tmp_path / "out.dot"
    assert visualize(tmp_path, "-o", str(dot)).returncode == 0
    import pygraphviz

    drawing = pygraphviz.AGraph(str(dot))  # kept: its nodes' attributes live in it
    drawn = [node for node in drawing.nodes() if base(node) in expected]
    assert len(drawn) >= 5
    for node in drawn:
        calls = [call for call in expected[base(node)] if not call.startswith("+")][:12]
        shown = ", ".join(f"{callee} ({where.rsplit('/', 1)[-1]}" for callee, _, where in (call.partition(" (") for call in calls))
        assert "\ninlines (not traced): " + shown in node.attr["tooltip"], node


def test_show_inlined_draws_dotted_boxes_under_their_host_never_as_calls(tmp_path):
    plain, dotted = tmp_path / "plain.dot", tmp_path / "inlined.dot"
    assert visualize(tmp_path, "-o", str(plain)).returncode == 0
    assert visualize(tmp_path, "--show-inlined", "-o", str(dotted)).returncode == 0
    import pygraphviz

    before, after = pygraphviz.AGraph(str(plain)), pygraphviz.AGraph(str(dotted))
    assert not [node for node in before.nodes() if node.attr.get("style") == "dotted"]
    boxes = [node for node in after.nodes() if node.attr.get("style") == "dotted"]
    assert boxes
    expected = real_inlines()
    drawn_hosts = {node for node in before.nodes() if base(node) in expected}
    for box in boxes:
        (edge,) = [edge for edge in after.in_edges(box)]
        host = edge[0]
        assert host in drawn_hosts and edge.attr["style"] == "dotted" and not edge.attr.get("label")  # no call count
        callee = box.attr["label"].split("()")[0]
        if not callee.startswith("+"):
            assert any(call.startswith(callee + " (") for call in expected[base(host)]), (box, host)
    # the traced boxes and edges, with their call counts, are the same as without the option
    assert {n for n in after.nodes() if n.attr.get("style") != "dotted"} == set(before.nodes())
    solid = {(e[0], e[1]): e.attr.get("label") for e in after.edges() if e.attr.get("style") != "dotted"}
    assert solid == {(e[0], e[1]): e.attr.get("label") for e in before.edges()}
    assert "dotted boxes and edges (--show-inlined)" in after.graph_attr["label"]


def test_no_inlines_leaves_them_out_and_the_rest_of_the_map_alone(tmp_path):
    program = build(tmp_path, "-gdwarf-5")
    with_them, without = tmp_path / "with.map", tmp_path / "without.map"
    assert run_cli("generate-symbol-map", "-k", str(program), "-o", str(with_them)).returncode == 0
    assert run_cli("generate-symbol-map", "-k", str(program), "-o", str(without), "--no-inlines").returncode == 0
    assert map_inlines(with_them) and not map_inlines(without)

    def functions_of(path: Path) -> list[str]:
        return [line for line in path.read_text().splitlines() if not line.startswith("#") and "vmlinux" not in line]

    assert functions_of(with_them) == functions_of(without)


def test_the_explorer_selection_bar_lists_the_inlined_calls(tmp_path, browser):
    page = tmp_path / "demo.html"
    assert visualize(tmp_path, "-o", str(page), "--chart", "").returncode == 0
    browser.get(page.as_uri())
    expected = real_inlines()
    for name in ("tcp_write_xmit", "tcp_sendmsg"):
        browser.execute_script("KM.select(arguments[0], null)", name)
        bar = browser.find_element("id", "selsource").text
        calls = expected[name]
        cut = int(calls[-1].split()[0]) if calls[-1].startswith("+") else 0
        calls = calls[: len(calls) - bool(cut)]
        shown = [f"{callee} ({where.rsplit('/', 1)[-1]}" for callee, _, where in (call.partition(" (") for call in calls[:8])]
        more = len(calls) - 8 + cut
        assert bar.split(" \u00b7 ")[-1] == "inlines (not traced): " + ", ".join(shown + ([f"+{more} more"] if more > 0 else [])), bar
    names = browser.execute_script("return [...KM.byName.keys()]")
    plain = next(name for name in names if base(name) not in expected)  # nothing inlined into it, per the map: no list
    browser.execute_script("KM.select(arguments[0], null)", plain)
    assert "inlines" not in browser.find_element("id", "selsource").text
    assert [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []


def test_a_function_also_out_of_line_is_not_called_only_inlined(tmp_path):
    """mid() is inlined into host_a and has an out-of-line copy (host_slow calls it): the message says both, from the real map."""
    from conftest import load_module

    program = build(tmp_path, "-gdwarf-5")
    out = tmp_path / "inl.map"
    assert run_cli("generate-symbol-map", "-k", str(program), "-o", str(out)).returncode == 0
    km = load_module()
    symbols = km.SymbolMap.load(str(out))
    assert km.only_inlined_message("twice", symbols, ["host_a", "main"]) == (
        "twice is only inlined (ftrace cannot trace it): it is inlined into host_a (traced), 1 more not in this trace"
    )
    assert km.only_inlined_message("mid", symbols, ["main"]) == (
        "mid was not called in the trace, and where the compiler inlined it ftrace cannot see it: it is inlined into host_a"
        " (1 function, none of them in this trace)"
    )
    assert km.only_inlined_message("kept_out", symbols, ["main"]) is None


REAL_MODULES = DATA / "modules-6.1.0-56-amd64"  # real Debian 6.1 -dbg module files (9pnet_virtio, virtio_ring)


def dwarf_inlined_calls(elf: Path) -> dict[str, set[tuple[str, str, int]]]:
    """Independently of the tool: host -> (callee, call file's name, call line) of the inlined entries in the tree of
    each depth-1 subprogram with code (named itself or, for a concrete copy, through its origin), from the full
    `llvm-dwarfdump --debug-info` text, cut at each depth-1 DIE (two spaces of indent after the offset's colon...)."""
    dump = subprocess.run(["llvm-dwarfdump", "--debug-info", str(elf)], capture_output=True, text=True, check=True).stdout
    found: dict[str, set[tuple[str, str, int]]] = {}
    for die in re.split(r"\n(?=0x[0-9a-f]+:   DW_TAG_)", dump):  # a depth-1 DIE and everything below it
        head = die.split("\n\n", 1)[0]
        if not head.split("\n", 1)[0].endswith("DW_TAG_subprogram") or not re.search(r"DW_AT_(low_pc|ranges)", head):
            continue
        name = re.search(r'DW_AT_name\t\("([^"]+)"\)', head) or re.search(r'DW_AT_abstract_origin\t\(0x[0-9a-f]+ "([^"]+)"\)', head)
        calls = found.setdefault(name.group(1), set())
        for entry in re.findall(r"DW_TAG_inlined_subroutine\n(.*?)\n\n", die + "\n\n", re.S):
            callee = re.search(r'DW_AT_abstract_origin\t\(0x[0-9a-f]+ "([^"]+)"\)', entry).group(1)
            where = re.search(r'DW_AT_call_file\t\("([^"]+)"\)', entry).group(1).rsplit("/", 1)[-1]
            calls.add((callee, where, int(re.search(r"DW_AT_call_line\t\((\d+)\)", entry).group(1))))
    return found


@pytest.mark.skipif(shutil.which("llvm-dwarfdump") is None or shutil.which("zstd") is None, reason="llvm-dwarfdump or zstd not installed")
def test_real_module_functions_get_their_inlined_calls_under_their_module_name(tmp_path):
    program = build(tmp_path, "-gdwarf-5")
    out = tmp_path / "modules.map"
    result = run_cli("generate-symbol-map", "-k", str(program), "-m", str(REAL_MODULES), "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = map_inlines(out)
    ring = tmp_path / "virtio_ring.ko"
    with open(ring, "wb") as handle:
        subprocess.run(["zstd", "-dc", str(REAL_MODULES / "kernel" / "drivers" / "virtio" / "virtio_ring.ko.zst")], stdout=handle, check=True)
    hosts = sorted(name for name in found if name.endswith(" [virtio_ring]"))
    dwarf = dwarf_inlined_calls(ring)
    assert len(hosts) >= 20 and len(hosts) == sum(1 for calls in dwarf.values() if calls)
    for key in hosts:
        name = key.removesuffix(" [virtio_ring]")
        calls = found[key]
        cut = int(calls[-1].split()[0]) if calls[-1].startswith("+") else 0
        ours = {(callee, where.rsplit("/", 1)[-1], int(line)) for callee, where, line in
                (re.fullmatch(r"(\S+) \((.*):(\d+)\)", call).groups() for call in calls[: len(calls) - bool(cut)])}
        expected = dwarf[name]
        assert ours <= expected and len(ours) + cut == len(expected), (key, sorted(expected - ours)[:5], sorted(ours - expected)[:5])
        assert found.get(name) == calls  # the bare name too: the test's "vmlinux" has no such function
