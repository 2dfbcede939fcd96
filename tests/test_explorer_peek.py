"""The explorer page's Callers & callees view and its source links, in a real browser (chromium via Selenium).

Expected callers and callees come from a walk of the call paths in the command
line's own JSON ("call_tree": one node per distinct call path) done here: for
every node of F, its parent's function is a caller; for every node whose
parent is F, its function is a callee; calls summed; time only where the
function is not already on the path (the outermost activation). Source paths
come from the symbol map's own lines, versions from the recordings' metadata.
"""

from __future__ import annotations

import lzma
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import DATA, assert_one_line_error, graph_json, load_module, run_cli

DEMO = DATA / "record-demo-dat" / "kernel-magnifier.data.xz"
BASELINE = DATA / "record-demo" / "kernel-magnifier.data.xz"
SYMBOL_MAP = DATA / "symbol-map-6.1.0-56-amd64.map.xz"
TEXT_TRACE = DATA / "fg-default" / "trace.txt.xz"  # ftrace text: no kernel version in it
TRACE_CMD_61 = DATA / "sched" / "tc-fg-sched-6.1.dat.xz"  # trace-cmd's trace.dat: uname -r only
SEVERAL = ["_raw_spin_unlock_irqrestore", "release_sock", "__alloc_skb", "tcp_sendmsg"]  # 18, 3, 2, no callers


def page(tmp: Path, name: str, *inputs: Path, extra: tuple[str, ...] = ()) -> Path:
    out = tmp / name
    args = ["visualize", "-o", str(out), "--chart", "", "--symbol-map", str(SYMBOL_MAP)]
    for path in inputs:
        args += ["-i", str(path)]
    result = run_cli(*args, *extra, cwd=tmp)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("peek-demo")
    return page(tmp, "demo.html", DEMO), graph_json(tmp, DEMO)


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> tuple[Path, dict, dict]:
    tmp = tmp_path_factory.mktemp("peek-base")
    html = page(tmp, "base.html", DEMO, extra=("--baseline", str(BASELINE)))
    (tmp / "old").mkdir()
    return html, graph_json(tmp, DEMO), graph_json(tmp / "old", BASELINE)


def walk_peek(graph: dict, name: str) -> tuple[dict[str, list], dict[str, list]]:
    """{caller: [calls, time]} ("" for the top of a path) and {callee: [calls, time]} of `name`, from the JSON's call_tree."""
    nodes = {node["id"]: node for node in graph["call_tree"]}
    kids: dict[int, list[int]] = defaultdict(list)
    for node in graph["call_tree"]:
        kids[node["parent"]].append(node["id"])
    callers: dict[str, list] = defaultdict(lambda: [0, 0.0])
    callees: dict[str, list] = defaultdict(lambda: [0, 0.0])
    stack = [(kid, ()) for kid in kids[0]]
    while stack:
        node_id, above = stack.pop()  # above: the functions on the path from the top down to the parent
        node = nodes[node_id]
        function, caller = node["function"], above[-1] if above else ""
        outer_time = 0.0 if function in above else node["total_time_us"] or 0.0  # None: no durations in the trace
        if function == name:
            callers[caller][0] += node["calls"]
            callers[caller][1] += outer_time
        if caller == name:
            callees[function][0] += node["calls"]
            callees[function][1] += outer_time
        stack.extend((kid, (*above, function)) for kid in kids[node_id])
    keep = lambda rows: {key: value for key, value in rows.items() if value[0] or value[1]}  # noqa: E731
    return keep(callers), keep(callees)


def open_page(browser, html: Path) -> None:
    browser.get(html.as_uri())
    assert browser.get_log("browser") == []
    browser.find_element("id", "tab-peek").click()


def select(browser, name: str) -> None:
    browser.execute_script("KM.select(arguments[0], null)", name)


def rows(browser, kind: str) -> list[dict]:
    return browser.execute_script(
        """return [...document.querySelectorAll(`#peek-${arguments[0]} tbody tr`)].map((tr) => ({
             name: tr.dataset.name, calls: +tr.dataset.calls, total: +tr.dataset.total,
             bcalls: tr.dataset.bcalls === undefined ? null : +tr.dataset.bcalls,
             btotal: tr.dataset.btotal === undefined ? null : +tr.dataset.btotal,
             go: tr.classList.contains("go"), cells: [...tr.cells].map((td) => td.textContent)}))""",
        kind,
    )


def assert_rows(shown: list[dict], expected: dict[str, list], prefix: str = "") -> None:
    assert {row["name"] for row in shown} == set(expected)
    for row in shown:
        calls, total = expected[row["name"]]
        assert row[prefix + "calls"] == calls, row
        assert row[prefix + "total"] == pytest.approx(total, abs=0.01), row


def test_callers_and_callees_match_a_walk_of_the_call_paths(demo, browser):
    html, graph = demo
    open_page(browser, html)
    functions = {node["name"]: node for node in graph["nodes"]}
    for name in SEVERAL:
        select(browser, name)
        callers, callees = walk_peek(graph, name)
        shown_callers, shown_callees = rows(browser, "callers"), rows(browser, "callees")
        assert_rows(shown_callers, callers)
        assert_rows(shown_callees, callees)
        # the JSON's edges are the same ones (the view is the tool's graph, merged over all the paths)
        edges = {(edge["caller"], edge["callee"]): edge["calls"] for edge in graph["edges"]}
        assert {caller: calls for (caller, callee), calls in edges.items() if callee == name} == {k: v[0] for k, v in callers.items() if k}
        # heaviest first, shares of F's time shown with the time
        for shown in (shown_callers, shown_callees):
            assert [row["total"] for row in shown] == sorted((row["total"] for row in shown), reverse=True)
        whole = functions[name]["total_time_us"]
        top = shown_callers[0]
        assert f"{100 * top['total'] / whole:.1f}%" in top["cells"][4], top
        assert top["cells"][1] == f"{top['calls']:,}"
        # F itself: the JSON's numbers, and its source link
        focus = browser.execute_script("const r = document.querySelector('#peek-focus tr.focus'); return {calls: +r.dataset.calls, total: +r.dataset.total, self: +r.dataset.self}")
        assert focus["calls"] == functions[name]["calls"]
        assert focus["total"] == pytest.approx(whole, abs=0.01)
        assert focus["self"] == pytest.approx(functions[name]["self_time_us"], abs=0.01)
    assert len(walk_peek(graph, SEVERAL[0])[0]) >= 10 and len(walk_peek(graph, "release_sock")[1]) >= 4  # several of each
    assert set(walk_peek(graph, "tcp_sendmsg")[0]) == {""}  # the top of its call paths: a row of its own


def test_a_click_on_a_caller_or_callee_selects_it(demo, browser):
    html, graph = demo
    open_page(browser, html)
    select(browser, "release_sock")
    browser.find_element("css selector", "#peek-callers tr.go[data-name='sk_wait_data']").click()
    assert browser.find_element("id", "selname").text == "sk_wait_data"
    assert "Who calls sk_wait_data" in browser.find_element("id", "view-peek").text
    assert_rows(rows(browser, "callees"), walk_peek(graph, "sk_wait_data")[1])
    browser.find_element("css selector", "#peek-callees tr.go[data-name='release_sock'] td.fn").click()
    assert browser.find_element("id", "selname").text == "release_sock"
    assert_rows(rows(browser, "callers"), walk_peek(graph, "release_sock")[0])


def map_definition_of(name: str) -> tuple[str, str]:
    """(file, line) of NAME's first definition, read from the map file itself: `name<TAB>file:line[|compiled]...`."""
    with lzma.open(SYMBOL_MAP, "rt", encoding="utf-8") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if fields[0] == name:
                path, _, number = fields[1].split("|")[0].partition(":")
                return path, number
    raise AssertionError(f"{name} is not in the map")


def links(browser, css: str) -> list[str]:
    return browser.execute_script("return [...document.querySelectorAll(arguments[0])].map((a) => a.href)", css)


def test_source_links_go_to_elixir_for_the_recordings_kernel(demo, browser):
    html, _ = demo
    open_page(browser, html)
    assert map_definition_of("tcp_sendmsg") == ("net/ipv4/tcp.c", "1489")  # llvm-dwarfdump: DW_AT_decl_line 1489
    select(browser, "release_sock")
    select(browser, "tcp_sendmsg")
    assert links(browser, "#selsource a") == ["https://elixir.bootlin.com/linux/v6.1.192/source/net/ipv4/tcp.c#L1489"]
    assert links(browser, "#peek-focus a") == ["https://elixir.bootlin.com/linux/v6.1.192/source/net/ipv4/tcp.c#L1489"]
    callee = links(browser, "#peek-callees tr[data-name='release_sock'] a")
    path, line = map_definition_of("release_sock")
    assert callee == [f"https://elixir.bootlin.com/linux/v6.1.192/source/{path}#L{line}"]
    assert "Linux v6.1.192" in browser.find_element("id", "sourcenote").text


def test_source_url_template_and_source_dir(tmp_path, browser):
    template = "https://git.kernel.org/pub/scm/linux/kernel/git/stable/linux.git/tree/{path}?h=v{version}#n{line}"
    html = page(tmp_path, "url.html", DEMO, extra=("--source-url", template))
    open_page(browser, html)
    select(browser, "tcp_sendmsg")
    assert links(browser, "#selsource a") == ["https://git.kernel.org/pub/scm/linux/kernel/git/stable/linux.git/tree/net/ipv4/tcp.c?h=v6.1.192#n1489"]
    tree = tmp_path / "linux src#2"  # a "#" left as it is would start the fragment
    (tree / "net" / "ipv4").mkdir(parents=True)
    html = page(tmp_path, "dir.html", DEMO, extra=("--source-dir", str(tree)))
    open_page(browser, html)
    select(browser, "tcp_sendmsg")
    assert links(browser, "#selsource a") == [(tree / "net" / "ipv4" / "tcp.c").as_uri()]
    assert str(tree) in browser.find_element("id", "sourcenote").text


def test_trace_cmd_file_links_to_the_series_only(tmp_path, browser):
    html = page(tmp_path, "tc.html", TRACE_CMD_61)
    metadata = graph_json(tmp_path, TRACE_CMD_61)["stats"]["metadata"]
    assert metadata["trace.dat-uname"].split()[2] == "6.1.0-56-amd64" and "kernel" not in metadata
    open_page(browser, html)
    note = browser.find_element("id", "sourcenote").text
    assert "Linux v6.1 " in note and "its exact release is unknown, links go to the 6.1 series" in note, note
    select(browser, "schedule")
    path, line = map_definition_of("schedule")
    assert links(browser, "#selsource a") == [f"https://elixir.bootlin.com/linux/v6.1/source/{path}#L{line}"]


def test_text_trace_has_no_version_no_link_and_recursion_shown_once(tmp_path, browser):
    html = page(tmp_path, "text.html", TEXT_TRACE)
    graph = graph_json(tmp_path, TEXT_TRACE)
    open_page(browser, html)
    note = browser.find_element("id", "sourcenote").text
    assert "no source links: the recording does not say its kernel's version" in note and "--source-url" in note, note
    select(browser, "vfs_read")
    path, line = map_definition_of("vfs_read")
    assert links(browser, "#selsource a") == [] and f"{path}:{line}" in browser.find_element("id", "selsource").text
    select(browser, "p9pdu_readf")  # in the 9pnet module
    callers, callees = walk_peek(graph, "p9pdu_readf")
    assert "p9pdu_readf" in callers and callers["p9pdu_readf"][1] == 0  # its recursive calls: inside itself, no time of their own
    shown = rows(browser, "callers")
    assert_rows(shown, callers)
    itself = [row for row in shown if row["name"] == "p9pdu_readf"]
    assert len(itself) == 1 and "(itself)" in itself[0]["cells"][0] and not itself[0]["go"]
    del callees["p9pdu_readf"]  # shown once: among the callers only
    assert_rows(rows(browser, "callees"), callees)


def test_baseline_both_values_per_row(compared, browser):
    html, now, then = compared
    open_page(browser, html)
    for name in ["release_sock", "__alloc_skb", "_raw_spin_unlock_irqrestore"]:
        select(browser, name)
        for kind, index in (("callers", 0), ("callees", 1)):
            current, old = walk_peek(now, name)[index], walk_peek(then, name)[index]
            shown = rows(browser, kind)
            assert_rows(shown, {key: current.get(key, [0, 0.0]) for key in current.keys() | old.keys()})
            assert_rows(shown, {key: old.get(key, [0, 0.0]) for key in current.keys() | old.keys()}, prefix="b")
            for row in shown:  # the change as the page writes it
                delta = row["calls"] - row["bcalls"]
                assert row["cells"][4] == ("+" if delta > 0 else "-" if delta < 0 else "\u00b1") + f"{abs(delta):,}"
        focus = browser.execute_script("const r = document.querySelector('#peek-focus tr.focus'); return {calls: +r.dataset.bcalls, total: +r.dataset.btotal}")
        old_node = {node["name"]: node for node in then["nodes"]}[name]
        assert focus["calls"] == old_node["calls"] and focus["total"] == pytest.approx(old_node["total_time_us"], abs=0.01)
    assert f"baseline: {BASELINE};" in browser.find_element("id", "view-peek").text  # both files are kernel-magnifier.data.xz: the path tells them apart


def test_source_option_errors(tmp_path):
    out = tmp_path / "page.html"
    result = run_cli("visualize", "-i", str(DEMO), "-o", str(out), "--chart", "", "--source-dir", str(tmp_path / "nowhere"))
    assert_one_line_error(result, "--source-dir")
    assert result.returncode == 1 and not out.exists()
    result = run_cli("visualize", "-i", str(TEXT_TRACE), "-o", str(out), "--chart", "", "--source-url", "https://elixir.bootlin.com/linux/v{version}/source/{path}")
    assert_one_line_error(result, "{version} is unknown")
    assert result.returncode == 1 and not out.exists()


def test_kernel_version_of_every_kind_of_recording(tmp_path):
    """The metadata as the tool reads it from the real files; the version as elixir.bootlin.com tags it."""
    km = load_module()
    seen = {}
    for path in [DATA / "lost-rule" / "7.3-graph-all-1.data.xz", DATA / "lost-rule" / "6.1-graph-all-1.data.xz", DATA / "retval" / "retval.dat.xz", DATA / "trace-cmd" / "trace-v6.dat.xz"]:
        (tmp_path / path.name).mkdir()
        metadata = graph_json(tmp_path / path.name, path)["stats"]["metadata"]
        seen[path.name] = (metadata.get("kernel", ""), km.kernel_version(metadata)[0])
    assert seen["7.3-graph-all-1.data.xz"] == ("7.3.4+deb13-amd64 #1 SMP PREEMPT_DYNAMIC Debian 7.3.4-1~bpo13+1 (2026-11-15)", "7.3.4")
    assert seen["6.1-graph-all-1.data.xz"] == ("6.1.0-56-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)", "6.1.192")
    assert seen["retval.dat.xz"][1] == "7.3.4"  # a kernel built from 7.3.4 with a local suffix
    assert seen["trace-v6.dat.xz"] == ("", None)  # cut by trace-cmd split, which keeps no uname
    # the releases no bundled file has: upstream tags x.y for x.y.0, x.y-rcN for release candidates
    assert km.kernel_version({"kernel": "6.12.0 #1 SMP"})[0] == "6.12"
    assert km.kernel_version({"kernel": "6.13.0-rc3 #1 SMP"})[0] == "6.13-rc3"
    assert km.kernel_version({"kernel": "6.8.0-45-generic #45-Ubuntu SMP"})[0] == "6.8"
    assert km.kernel_version({"trace.dat-uname": "Linux host-7.1.2 7.3.4+deb13-amd64 x86_64"})[0] == "7.3.4"


def test_function_tracer_untimed_calls_only(tmp_path, browser):
    """The function tracer's trace: no durations, rows by calls; a path started by an exit without its entry is no caller."""
    trace = DATA / "function-tracer" / "trace.txt.xz"
    html = page(tmp_path, "fn.html", trace)
    graph = graph_json(tmp_path, trace)
    open_page(browser, html)
    for name in ["kfree", "p9_client_walk"]:
        select(browser, name)
        callers, callees = walk_peek(graph, name)
        for kind, expected in (("callers", callers), ("callees", callees)):
            shown = rows(browser, kind)
            assert_rows(shown, expected)
            assert [row["calls"] for row in shown] == sorted((row["calls"] for row in shown), reverse=True)
        calls = {node["name"]: node["calls"] for node in graph["nodes"]}[name]
        assert [row["cells"][2] for row in rows(browser, "callers")] == [f"{100 * c / calls:.1f}%" for c, _ in sorted(callers.values(), reverse=True)]
    assert len(walk_peek(graph, "kfree")[0]) >= 10
