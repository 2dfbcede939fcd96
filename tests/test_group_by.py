"""--group-by: the kernel's map at the level of its source tree, checked against the function-level view.

Expected values come from an independent computation: the function-level JSON of the same recording (its
functions' calls and self time, its edges) and the symbol map file read here with a few lines of its own, so the
tests hold whatever map the bundled file is (it may be regenerated) and never hard-code a function's file.
"""

from __future__ import annotations

import lzma
import re
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from conftest import DATA, assert_one_line_error, graph_json, run_cli

MAP = DATA / "symbol-map-6.1.0-56-amd64.map.xz"
DEMO = DATA / "record-demo" / "kernel-magnifier.data.xz"  # text, a TCP echo with timestamps
DEMO_LARGE = DATA / "record-demo-large" / "kernel-magnifier.data.xz"  # another run of the same load, same kernel
SCHED_DAT = DATA / "sched" / "tc-fg-sched-6.1.dat.xz"  # trace-cmd's trace.dat with sched_switch/sched_waking
WHOLE_SYSTEM = DATA / "whole-system" / "kernel-magnifier.data.xz"  # make vm-demo-system: every CPU, TCP echo + ext4 fsync + spawns
CLONE = re.compile(r"\.(isra|constprop|part|cold|llvm|lto_priv|localalias)(\.|$).*")


def read_map(path: Path) -> dict[str, list[str]]:
    """name -> definitions, as the map file lists them (name<TAB>def<TAB>def...)."""
    mapping: dict[str, list[str]] = {}
    with lzma.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#") or "\t" not in line:
                continue
            name, *definitions = line.rstrip("\n").split("\t")
            mapping.setdefault(name, []).extend(d for d in definitions if d)
    return mapping


def code_file(definition: str) -> str:
    """The file whose unit holds the code: the part after '|' (a header's function), else the declared file without its line."""
    declared, _, compiled = definition.partition("|")
    return compiled or re.sub(r":\d+$", "", declared)


def subsystem_dir(path: str) -> str:
    folders = path.split("/")[:-1]
    return "/".join(folders[:3 if folders[0] in ("drivers", "arch") else 2]) if folders else "(top)"


def expected_group(name: str, module: str | None, mapping: dict[str, list[str]]) -> str:
    """docs/visualize.md's rule, written out again: the subsystem directory of the code's file; several -> the folders they share."""
    base = CLONE.sub("", name)
    definitions = (mapping.get(f"{name} [{module}]") or mapping.get(f"{base} [{module}]") if module else None) or mapping.get(name) or mapping.get(base)
    if not definitions:
        return f"[{module}]" if module else "(no source file)"
    groups = list(dict.fromkeys(subsystem_dir(code_file(d)) for d in definitions))
    if len(groups) == 1:
        return groups[0]
    shared = []
    for folders in zip(*(group.split("/") for group in groups)):
        if len(set(folders)) > 1:
            break
        shared.append(folders[0])
    return "/".join(shared) or "(several directories)"


def grouped_by_hand(functions: dict, mapping: dict[str, list[str]]) -> tuple[dict[str, str], dict, Counter, Counter]:
    """From a function-level JSON: each function's group, per group its [calls, self time, members], the crossing edges' calls, the inner calls."""
    group_of = {node["name"]: expected_group(node["name"], node.get("module"), mapping) for node in functions["nodes"]}
    groups: dict[str, list] = defaultdict(lambda: [0, 0.0, set()])
    for node in functions["nodes"]:
        numbers = groups[group_of[node["name"]]]
        numbers[0] += node["calls"]
        numbers[1] += node["self_time_us"] or 0.0
        numbers[2].add(node["name"])
    crossing: Counter = Counter()
    inner: Counter = Counter()
    for edge in functions["edges"]:
        caller, callee = group_of[edge["caller"]], group_of[edge["callee"]]
        if caller == callee:
            inner[caller] += edge["calls"]
        else:
            crossing[caller, callee] += edge["calls"]
    return group_of, groups, crossing, inner


def assert_groups_match(grouped: dict, functions: dict, mapping: dict[str, list[str]], skip: set[str] = frozenset()) -> None:
    """Every group's self time, calls and members, and every group edge, equal the sums over its functions'."""
    _, expected, crossing, inner = grouped_by_hand(functions, mapping)
    nodes = {node["name"]: node for node in grouped["nodes"] if node["name"] not in skip}
    assert set(nodes) == set(expected) - skip
    for name, node in nodes.items():
        calls, self_us, members = expected[name]
        assert node["group"] is True
        assert {member["name"] for member in node["members"]} == members, name
        assert node["calls"] + node["inner_calls"] == calls, name
        assert node["inner_calls"] == inner[name], name
        assert node["self_time_us"] == pytest.approx(self_us, abs=0.002 * len(members) + 0.01), name
    edges = {(edge["caller"], edge["callee"]): edge["calls"] for edge in grouped["edges"]}
    assert edges == dict(crossing)


@pytest.fixture(scope="module")
def mapping() -> dict[str, list[str]]:
    return read_map(MAP)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """The demo recording's function-level and group-level JSON."""
    tmp = tmp_path_factory.mktemp("demo")
    functions = graph_json(tmp, DEMO, extra=("--symbol-map", str(MAP)))
    grouped = graph_json(tmp, DEMO, extra=("--symbol-map", str(MAP), "--group-by", "dir"))
    return functions, grouped


def test_group_numbers_are_the_sums_of_their_functions(demo: tuple[dict, dict], mapping: dict[str, list[str]]) -> None:
    functions, grouped = demo
    assert grouped["stats"]["group_by"] == "dir" and functions["stats"]["group_by"] is None
    assert len(grouped["nodes"]) >= 10  # a TCP echo crosses net/ipv4, net/core, kernel/sched, mm...
    assert_groups_match(grouped, functions, mapping)
    assert sum(node["self_time_us"] for node in grouped["nodes"]) == pytest.approx(sum(node["self_time_us"] for node in functions["nodes"]), rel=1e-6)


@pytest.mark.parametrize("recording", [SCHED_DAT, WHOLE_SYSTEM], ids=["trace-cmd-sched", "whole-system"])
def test_group_numbers_on_trace_dats_with_scheduler_events(tmp_path: Path, mapping: dict[str, list[str]], recording: Path) -> None:
    functions = graph_json(tmp_path, recording, extra=("--symbol-map", str(MAP)))
    grouped = graph_json(tmp_path, recording, extra=("--symbol-map", str(MAP), "--group-by", "dir"))
    assert_groups_match(grouped, functions, mapping)
    assert grouped["stats"]["sched"] is not None


def test_the_whole_system_map_has_the_subsystems_of_its_load(tmp_path: Path, mapping: dict[str, list[str]]) -> None:
    """The README's map: the TCP echo's net/ipv4 -> net/core, the fsync's fs -> ext4 -> block, and the scheduler under all."""
    functions = graph_json(tmp_path, WHOLE_SYSTEM, extra=("--symbol-map", str(MAP)))
    group_of, _, crossing, _ = grouped_by_hand(functions, mapping)
    ext4 = next(group_of[node["name"]] for node in functions["nodes"] if node["name"] == "ext4_sync_file")  # fs/ext4, or [ext4] in a map without modules
    for caller, callee in (("net/ipv4", "net/core"), ("fs", ext4), (ext4, "block"), ("net/core", "kernel/sched")):
        assert crossing[caller, callee] > 0, (caller, callee)
    assert "finalize_exec" in {node["name"] for node in functions["nodes"]}  # the spawns: 0.3 s of the emulated guest caught the end of one exec


def test_root_on_a_group_is_the_function_focus_of_its_members(tmp_path: Path, demo: tuple[dict, dict], mapping: dict[str, list[str]]) -> None:
    functions, _ = demo
    _, expected, _, _ = grouped_by_hand(functions, mapping)
    group = "net/core"
    members = sorted(expected[group][2])
    focused_functions = graph_json(tmp_path, DEMO, extra=("--symbol-map", str(MAP), "--root", ",".join(members)))
    focused_groups = graph_json(tmp_path, DEMO, extra=("--symbol-map", str(MAP), "--group-by", "dir", "--root", group))
    assert_groups_match(focused_groups, focused_functions, mapping)
    roots = [node["function"] for node in focused_groups["call_tree"] if node["parent"] == 0]
    assert roots == [group]


def test_root_on_a_function_keeps_it_and_groups_below(tmp_path: Path, mapping: dict[str, list[str]]) -> None:
    focused_functions = graph_json(tmp_path, DEMO, extra=("--symbol-map", str(MAP), "--root", "tcp_sendmsg"))
    focused_groups = graph_json(tmp_path, DEMO, extra=("--symbol-map", str(MAP), "--group-by", "dir", "--root", "tcp_sendmsg"))
    nodes = {node["name"]: node for node in focused_groups["nodes"]}
    kept = nodes["tcp_sendmsg"]
    assert "group" not in kept
    by_function = {node["name"]: node for node in focused_functions["nodes"]}
    assert kept["calls"] == by_function["tcp_sendmsg"]["calls"]
    assert kept["self_time_us"] == pytest.approx(by_function["tcp_sendmsg"]["self_time_us"], abs=0.01)
    # below it, the groups of everything it called: their functions' sums (tcp_sendmsg itself left out on both sides)
    others = {**focused_functions, "nodes": [n for n in focused_functions["nodes"] if n["name"] != "tcp_sendmsg"],
              "edges": [e for e in focused_functions["edges"] if "tcp_sendmsg" not in (e["caller"], e["callee"])]}
    grouped_others = {**focused_groups, "edges": [e for e in focused_groups["edges"] if "tcp_sendmsg" not in (e["caller"], e["callee"])]}
    _, expected, _, _ = grouped_by_hand(others, mapping)
    for name, (calls, _, members) in expected.items():
        assert {member["name"] for member in nodes[name]["members"]} == members
        assert nodes[name]["calls"] + nodes[name]["inner_calls"] == calls
    from_kept: Counter = Counter()
    group_of = {node["name"]: expected_group(node["name"], node.get("module"), mapping) for node in focused_functions["nodes"]}
    for edge in focused_functions["edges"]:
        if edge["caller"] == "tcp_sendmsg":
            from_kept[group_of[edge["callee"]]] += edge["calls"]
    assert {e["callee"]: e["calls"] for e in focused_groups["edges"] if e["caller"] == "tcp_sendmsg"} == dict(from_kept)
    assert_groups_match(grouped_others, others, mapping, skip={"tcp_sendmsg"})


def test_callers_of_a_group_are_the_crossing_edges_into_it(tmp_path: Path, demo: tuple[dict, dict], mapping: dict[str, list[str]]) -> None:
    functions, grouped = demo
    _, _, crossing, _ = grouped_by_hand(functions, mapping)
    group = "kernel/sched"
    callers = graph_json(tmp_path, DEMO, extra=("--symbol-map", str(MAP), "--group-by", "dir", "--callers", group))
    tree = callers["call_tree"]
    root = next(node for node in tree if node["parent"] == 0)
    assert root["function"] == group
    assert root["calls"] == next(node["calls"] for node in grouped["nodes"] if node["name"] == group)
    direct = {node["function"]: node["calls"] for node in tree if node["parent"] == root["id"]}
    assert direct == {caller: calls for (caller, callee), calls in crossing.items() if callee == group}


def test_a_group_level_diff_has_the_signed_changes(tmp_path: Path, mapping: dict[str, list[str]]) -> None:
    functions = graph_json(tmp_path, DEMO, extra=("--symbol-map", str(MAP)))
    base_functions = graph_json(tmp_path, DEMO_LARGE, extra=("--symbol-map", str(MAP)))
    _, now, _, now_inner = grouped_by_hand(functions, mapping)
    _, before, _, before_inner = grouped_by_hand(base_functions, mapping)
    for heat in ("self", "calls"):
        diff = graph_json(tmp_path, DEMO, extra=("--symbol-map", str(MAP), "--group-by", "dir", "--baseline", str(DEMO_LARGE), "--heat", heat))
        for node in diff["nodes"]:
            name = node["name"]
            if heat == "self":
                want = now[name][1] - before.get(name, [0, 0.0])[1]
                assert node["change"]["self"] == pytest.approx(want, abs=0.002 * len(now[name][2]) + 0.01), name
            else:  # calls into the group: its functions' calls less the calls between them
                want = (now[name][0] - now_inner[name]) - (before[name][0] - before_inner[name] if name in before else 0)
                assert node["change"]["calls"] == want, name
        assert {n["change"][heat] > 0 for n in diff["nodes"]} == {True, False}  # some groups ran more, some less


def test_folded_stacks_merge_consecutive_frames_of_one_group(tmp_path: Path, demo: tuple[dict, dict]) -> None:
    _, grouped = demo
    out = tmp_path / "groups.folded"
    result = run_cli("visualize", "-i", str(DEMO), "--symbol-map", str(MAP), "--group-by", "dir", "--weight", "calls", "-o", str(out), "--chart", "")
    assert result.returncode == 0, result.stderr
    total = 0
    for line in out.read_text().splitlines():
        path, _, count = line.rpartition(" ")
        frames = path.split(";")
        assert all(a != b for a, b in zip(frames, frames[1:])), line
        total += int(count)
    assert total == sum(node["calls"] for node in grouped["nodes"])  # --weight calls: the calls into groups


def test_group_by_file_and_module(tmp_path: Path, demo: tuple[dict, dict], mapping: dict[str, list[str]]) -> None:
    functions, _ = demo
    by_module = graph_json(tmp_path, DEMO, extra=("--group-by", "module"))
    modules = Counter(f"[{node['module']}]" if node.get("module") else "vmlinux" for node in functions["nodes"])
    assert {node["name"]: len(node["members"]) for node in by_module["nodes"]} == dict(modules)
    by_file = graph_json(tmp_path, DEMO, extra=("--symbol-map", str(MAP), "--group-by", "file"))
    for node in by_file["nodes"]:
        for member in node["members"]:
            definitions = mapping.get(member["name"]) or mapping.get(CLONE.sub("", member["name"])) or []
            files = {code_file(d) for d in definitions}
            if len(files) == 1:
                assert node["name"] == files.pop()


def test_group_by_mistakes_are_one_line(tmp_path: Path) -> None:
    for value in ("dir:0", "directory", "file:2"):  # argparse's usage, then the one line saying what is right
        result = run_cli("visualize", "-i", str(DEMO), "--group-by", value, cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].endswith(f"'{value}': use dir, dir:N (N folders, 1 or more), file or module")
    for args, words in (
        (("--group-by", "dir", "--symbol-map", str(MAP), "--root", "net/nosuch"), "no group (--group-by dir) or function of that name"),
        (("--group-by", "dir", "--symbol-map", str(tmp_path / "none.map")), "does not exist"),
    ):
        result = run_cli("visualize", "-i", str(DEMO), "-o", str(tmp_path / "out.json"), "--chart", "", *args, cwd=tmp_path)
        assert_one_line_error(result, words)
    result = run_cli("visualize", "-i", str(DEMO), "-o", str(tmp_path / "out.json"), "--chart", "", "--group-by", "dir", cwd=tmp_path)
    assert_one_line_error(result, "--group-by dir needs a symbol map")


SVG = "{http://www.w3.org/2000/svg}"


def svg_boxes(root: ET.Element, kind: str) -> dict[str, tuple[float, float, float, float]]:
    """title -> (x0, y0, x1, y1) of every <g class=KIND>'s outline (its first path or polygon)."""
    boxes = {}
    for group in root.iter(f"{SVG}g"):
        if group.get("class") != kind:
            continue
        title = group.find(f"{SVG}title").text
        shape = next(element for element in group.iter() if element.tag in (f"{SVG}path", f"{SVG}polygon"))
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", shape.get("d") or shape.get("points"))]
        xs, ys = numbers[0::2], numbers[1::2]
        boxes[title] = (min(xs), min(ys), max(xs), max(ys))
    return boxes


def test_clusters_hold_exactly_the_functions_of_their_directory(tmp_path: Path, mapping: dict[str, list[str]]) -> None:
    out = tmp_path / "clusters.svg"
    result = run_cli("visualize", "-i", str(DEMO), "--symbol-map", str(MAP), "--clusters", "--max-nodes", "40", "-o", str(out), "--chart", "")
    assert result.returncode == 0, result.stderr
    functions = graph_json(tmp_path, DEMO, extra=("--symbol-map", str(MAP)))
    modules = {node["name"]: node.get("module") for node in functions["nodes"]}
    root = ET.parse(out).getroot()
    clusters = {title.removeprefix("cluster_"): box for title, box in svg_boxes(root, "cluster").items()}
    nodes = svg_boxes(root, "node")
    assert len(nodes) >= 30 and len(clusters) >= 5
    expected = {name: expected_group(name, modules[name], mapping) for name in nodes}
    assert set(clusters) == {group for group in expected.values() if not group.startswith("(")}
    for name, (x0, y0, x1, y1) in nodes.items():
        centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        inside = {directory for directory, (a, b, c, d) in clusters.items() if a <= centre[0] <= c and b <= centre[1] <= d}
        assert inside == ({expected[name]} if not expected[name].startswith("(") else set()), name
    text = out.read_text()
    assert "clusters by subsystem:" in text and "--clusters: the functions of one source directory" in text.replace("&#45;", "-")
