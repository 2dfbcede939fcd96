"""Definition lines in the symbol map (version 2): generated from real DWARF (gcc -O2, DWARF 4 and 5, both dwarfdump
families), shown in every output; version 1 maps are still read; the previous release refuses a version 2 map in one line.

Expected lines come from an independent reading: the line where the test's own C source defines each function (found
by a regular expression over tests/csrc), and for kernel functions the DW_AT_decl_line that llvm-dwarfdump printed
for the real Debian 6.1 vmlinux (the excerpts quoted below), never from the tool.
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
SOURCES = ["a.c", "b.c", "inl.c"]
# The functions with code in the program: two static helper()s of the same name and a third in inl.c, a static function
# of a header compiled in two units, the clones GCC makes (.part, .isra, .constprop) and mix(), a static inline of
# inl.h inlined in one caller of inl.c and kept out of line for another (a DIE with only DW_AT_abstract_origin).
COMPILED = {
    "a_entry", "b_entry", "main", "helper", "header_twice", "inl_entry", "mix",
    "maybe_slow", "maybe_slow.part.0", "only_x", "only_x.isra.0", "scale", "scale.constprop.0",
}
CLONE_SUFFIX = re.compile(r"\.(?:isra|constprop|part|cold)\.\d+$")
OLD_RELEASE = "4349449"  # kernel-magnifier before definition lines (version 1 maps only)


def definition_lines(path: Path) -> dict[str, int]:
    """name -> the line where PATH defines it: a line naming `name(` at the top level, not a prototype (no ';'), then '{'."""
    lines = path.read_text().splitlines()
    found = {}
    for number, text in enumerate(lines, 1):
        head = re.match(r"^[A-Za-z_][^;(]*?\b(\w+)\(", re.sub(r"__attribute__\(\(\w+\)\) ", "", text))
        if head and not text.rstrip().endswith(";") and number < len(lines) and lines[number].startswith("{"):
            found[head.group(1)] = number
    return found


def build(tmp_path: Path, dwarf: str) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    work = tmp_path / "src dir"
    shutil.copytree(CSRC, work)
    subprocess.run(["gcc", "-g", dwarf, "-O2", *SOURCES, "-o", "prog"], cwd=work, check=True)
    return work / "prog"


def map_entries(path: Path) -> dict[str, list[str]]:
    lines = path.read_text().splitlines()
    assert lines[0].startswith("kernel-magnifier symbol map 2")
    return {name: definitions for name, *definitions in (line.split("\t") for line in lines[1:] if not line.startswith("#"))}


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("dwarf", ["-gdwarf-5", "-gdwarf-4"])
def test_each_definition_has_the_line_its_source_defines_it_at(tmp_path, tool, dwarf):
    program = build(tmp_path, dwarf)
    out = tmp_path / "lines.map"
    result = run_cli("generate-symbol-map", "-k", str(program), "-o", str(out), "--dwarfdump", tool, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    entries = {name: definitions for name, definitions in map_entries(out).items() if name in COMPILED}
    assert entries.keys() == COMPILED
    source_lines = {path.name: definition_lines(path) for path in CSRC.glob("*.[ch]")}
    seen = []
    for name, definitions in entries.items():
        base = CLONE_SUFFIX.sub("", name)
        for definition in definitions:
            declared, _, compiled = definition.partition("|")
            path, _, line = declared.partition(":")
            assert line, f"{name}: {definition} has no line"
            assert int(line) == source_lines[path][base], f"{name}: {definition}, the source defines it at {path}:{source_lines[path][base]}"
            seen.append((name, path, compiled))
    # the cases the map must keep apart: the same-name statics, the header function in each unit, the inline's copy
    assert sorted(path for name, path, _ in seen if name == "helper") == SOURCES
    assert sorted(compiled for name, _, compiled in seen if name == "header_twice") == ["a.c", "b.c"]
    assert ("mix", "inl.h", "inl.c") in seen


def test_the_line_comes_with_a_files_path_learnt_from_another_entry_of_its_unit(tmp_path):
    """libdwarf's dwarfdump prints DWARF 5's implicit-const decl_file as an index only (b_entry here, index 2, not the
    unit's first file): the path another entry of the unit printed for that index gives its file and line."""
    if "dwarfdump" not in TOOLS:
        pytest.skip("libdwarf's dwarfdump not installed")
    program = build(tmp_path, "-gdwarf-5")
    dump = subprocess.run(["dwarfdump", "-i", "-d", str(program)], capture_output=True, text=True, check=True).stdout
    b_entry = next(line for line in dump.splitlines() if "DW_AT_name<b_entry>" in line)
    assert re.search(r"DW_AT_decl_file<0x0*2>", b_entry), b_entry  # the case itself: an index other than 1, no path
    out = tmp_path / "lines.map"
    assert run_cli("generate-symbol-map", "-k", str(program), "-o", str(out), "--dwarfdump", "dwarfdump").returncode == 0
    assert map_entries(out)["b_entry"] == [f"b.c:{definition_lines(CSRC / 'b.c')['b_entry']}"]


# Real DW_AT_decl_line values of the Debian 6.1 vmlinux (linux-image-6.1.0-56-amd64-dbg), as llvm-dwarfdump printed
# them: tcp_sendmsg at net/ipv4/tcp.c line 1489, vfs_read at fs/read_write.c line 450. release_sock keeps no line,
# as a version 1 map or an assembly function has none.
KERNEL_MAP_2 = (
    "kernel-magnifier symbol map 2: an older kernel-magnifier cannot read it\n"
    "# format: name<TAB>definition[<TAB>definition...]\n"
    "tcp_sendmsg\tnet/ipv4/tcp.c:1489\n"
    "vfs_read\tfs/read_write.c:450\n"
    "release_sock\tnet/core/sock.c\n"
)
DEMO = DATA / "record-demo-dat" / "kernel-magnifier.data.xz"  # recorded on Debian's 6.1.192: links go to elixir's v6.1.192
KERNEL_MAP_1 = DATA / "symbol-map-v1-6.1.0-56-amd64.map.xz"  # the version 1 map bundled before, cut to the demo's functions


def visualize(tmp_path: Path, symbol_map: Path, output: str, *extra: str) -> Path:
    out = tmp_path / output
    result = run_cli("visualize", "-i", str(DEMO), "--symbol-map", str(symbol_map), "-o", str(out), "--chart", "", *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def map_2(tmp_path: Path) -> Path:
    path = tmp_path / "kernel-2.map"
    path.write_text(KERNEL_MAP_2)
    return path


def test_json_dot_svg_text_and_flame_graph_show_file_and_line(tmp_path, map_2):
    nodes = {node["name"]: node for node in json.loads(visualize(tmp_path, map_2, "g.json").read_text())["nodes"]}
    assert (nodes["tcp_sendmsg"]["files"], nodes["tcp_sendmsg"]["lines"]) == (["net/ipv4/tcp.c"], [1489])
    assert (nodes["release_sock"]["files"], nodes["release_sock"]["lines"]) == (["net/core/sock.c"], [None])
    dot = visualize(tmp_path, map_2, "g.dot").read_text()
    assert 'label="tcp_sendmsg()\nnet/ipv4/tcp.c:1489\n' in dot  # the box's second line
    assert 'tooltip="tcp_sendmsg(); net/ipv4/tcp.c:1489; ' in dot
    svg = visualize(tmp_path, map_2, "g.svg").read_text()
    assert ">net/ipv4/tcp.c:1489</text>" in svg and 'title="tcp_sendmsg(); net/ipv4/tcp.c:1489; ' in svg
    report = visualize(tmp_path, map_2, "r.txt").read_text()
    assert re.search(r"tcp_sendmsg  net/ipv4/tcp\.c:1489$", report, re.M)
    flame = visualize(tmp_path, map_2, "f.flame.html").read_text()
    assert '"net/ipv4/tcp.c:1489"' in flame and '"net/core/sock.c"' in flame


def test_explorer_links_go_to_the_definition_line(tmp_path, map_2, browser):
    html = visualize(tmp_path, map_2, "e.html")
    browser.get(html.as_uri())
    assert browser.get_log("browser") == []
    links = browser.execute_script("return ['tcp_sendmsg', 'vfs_read', 'release_sock'].map((n) => KM.sourceLinks(n).map((l) => [l.url, l.text]))")
    elixir = "https://elixir.bootlin.com/linux/v6.1.192/source/"
    assert links[0] == [[elixir + "net/ipv4/tcp.c#L1489", "net/ipv4/tcp.c:1489"]]
    assert links[2] == [[elixir + "net/core/sock.c", "net/core/sock.c"]]  # no line known: no #L
    if links[1]:  # vfs_read is in the recording only when it read something
        assert links[1] == [[elixir + "fs/read_write.c#L450", "fs/read_write.c:450"]]
    browser.execute_script("KM.select('tcp_sendmsg', null)")
    assert browser.execute_script("return [...document.querySelectorAll('#selsource a')].map((a) => a.href)") == [elixir + "net/ipv4/tcp.c#L1489"]


def test_version_1_map_is_still_read_without_lines(tmp_path):
    nodes = {node["name"]: node for node in json.loads(visualize(tmp_path, KERNEL_MAP_1, "g.json").read_text())["nodes"]}
    assert (nodes["tcp_sendmsg"]["files"], nodes["tcp_sendmsg"]["lines"]) == (["net/ipv4/tcp.c"], [None])
    dot = visualize(tmp_path, KERNEL_MAP_1, "g.dot").read_text()
    assert 'label="tcp_sendmsg()\nnet/ipv4/tcp.c\n' in dot and "net/ipv4/tcp.c:" not in dot


def test_a_newer_map_version_is_refused_in_one_line(tmp_path):
    newer = tmp_path / "v3.map"
    newer.write_text("kernel-magnifier symbol map 3: something else\ntcp_sendmsg\tnet/ipv4/tcp.c:1489:7\n")
    result = run_cli("visualize", "-i", str(DEMO), "--symbol-map", str(newer), "-o", str(tmp_path / "g.json"), "--chart", "")
    assert_one_line_error(result, "is a version 3 symbol map; this kernel-magnifier 1.0.0 reads versions 1 and 2")


def test_the_previous_release_refuses_a_version_2_map_in_one_line(tmp_path):
    """kernel-magnifier before lines skipped '#' lines: a '#' version line would have let it take "file:line" for a file."""
    old = subprocess.run(["git", "show", f"{OLD_RELEASE}:kernel-magnifier.py"], cwd=ROOT, capture_output=True)
    if old.returncode != 0:
        pytest.skip(f"no git history with commit {OLD_RELEASE} (a release tarball)")
    script = tmp_path / "old-kernel-magnifier.py"
    script.write_bytes(old.stdout)
    program = build(tmp_path, "-gdwarf-5")
    generated = tmp_path / "generated.map"
    assert run_cli("generate-symbol-map", "-k", str(program), "-o", str(generated)).returncode == 0
    assert generated.read_text().startswith("kernel-magnifier symbol map 2")
    result = subprocess.run(
        ["python3", str(script), "visualize", "-i", str(DEMO), "--symbol-map", str(generated), "-o", str(tmp_path / "old.json"), "--chart", ""],
        capture_output=True, text=True, timeout=300,
    )
    assert_one_line_error(result, "is not a symbol map: line 'kernel-magnifier symbol map 2: an older kernel-magnifier cannot read it'")


def svg_links(svg: str) -> dict[str, str]:
    """Box title's function -> the link graphviz wrote for it."""
    return {title.split("(", 1)[0]: href for href, title in re.findall(r'<a xlink:href="([^"]*)" xlink:title="([^"]*)"', svg)}


def test_svg_boxes_link_to_the_definition_line(tmp_path, map_2):
    elixir = "https://elixir.bootlin.com/linux/v6.1.192/source/"
    links = svg_links(visualize(tmp_path, map_2, "g.svg").read_text())
    assert links["tcp_sendmsg"] == elixir + "net/ipv4/tcp.c#L1489"
    assert links["release_sock"] == elixir + "net/core/sock.c"  # no line known: no #L
    assert links.keys() <= {"tcp_sendmsg", "release_sock", "vfs_read"}  # functions without a file in the map link nowhere
    template = "https://git.kernel.org/pub/scm/linux/kernel/git/stable/linux.git/tree/{path}?h=v{version}#n{line}"
    links = svg_links(visualize(tmp_path, map_2, "t.svg", "--source-url", template).read_text())
    assert links["tcp_sendmsg"] == "https://git.kernel.org/pub/scm/linux/kernel/git/stable/linux.git/tree/net/ipv4/tcp.c?h=v6.1.192#n1489"
    assert links["release_sock"] == "https://git.kernel.org/pub/scm/linux/kernel/git/stable/linux.git/tree/net/core/sock.c?h=v6.1.192"
    # the explorer's drawing selects a box on a click: it has no links to follow
    assert "xlink:href" not in visualize(tmp_path, map_2, "e.html").read_text()


def test_svg_of_a_recording_without_kernel_version_has_no_links(tmp_path, map_2):
    out = tmp_path / "text.svg"
    text_trace = DATA / "fg-graphfunc" / "trace.txt.xz"  # ftrace text: it does not say its kernel's version
    result = run_cli("visualize", "-i", str(text_trace), "--symbol-map", str(map_2), "-o", str(out), "--chart", "")
    assert result.returncode == 0, result.stderr
    svg = out.read_text()
    assert "net/ipv4/tcp.c:1489" in svg and "xlink:href" not in svg
