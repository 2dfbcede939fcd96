"""The explorer page's Graph view (visualize -o NAME.html), in a real browser: Debian's chromium driven by Selenium.

The focused drawings are laid out in the page from its own tree; the expected
functions, calls and edges come from the command line's own views of the same
recording (visualize --root F / --callers F with --depth, written as JSON).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import DATA, run_cli

DEMO = DATA / "record-demo-dat" / "kernel-magnifier.data.xz"
BASELINE = DATA / "record-demo" / "kernel-magnifier.data.xz"  # an earlier recording of the same workload
SYMBOL_MAP = DATA / "symbol-map-6.1.0-56-amd64.map.xz"
CAP = 80  # functions a focused drawing shows at most (the page's CAP)
UNKNOWN = "#d9d9d9"  # the fill of a box whose baseline numbers the page cannot know


def visualize(tmp_path: Path, output: str, *extra: str) -> Path:
    out = tmp_path / output
    result = run_cli("visualize", "-i", str(DEMO), "--symbol-map", str(SYMBOL_MAP), "-o", str(out), "--chart", "", *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return out


def cli_view(tmp_path: Path, *focus: str) -> dict:
    """The command line's JSON of a focused view: {"nodes": {name: node}, "edges": {(caller, callee): calls}}."""
    data = json.loads(visualize(tmp_path, "view.json", *focus).read_text())
    return {"nodes": {node["name"]: node for node in data["nodes"]}, "edges": {(e["caller"], e["callee"]): e["calls"] for e in data["edges"]}}


@pytest.fixture(scope="module")
def demo_page(tmp_path_factory) -> Path:
    return visualize(tmp_path_factory.mktemp("graph"), "demo.html")


@pytest.fixture(scope="module")
def diff_page(tmp_path_factory) -> Path:
    return visualize(tmp_path_factory.mktemp("graph-diff"), "diff.html", "--baseline", str(BASELINE), "--heat", "calls")


def open_page(browser, page: Path) -> None:
    browser.get(page.as_uri())
    browser.execute_script("KM.show('graph')")


def no_console_errors(browser) -> None:
    assert browser.get_log("browser") == []  # no script error, no blocked request


def graphviz_node(browser, name: str):
    for node in browser.find_elements("css selector", "#g-box g.node"):
        if node.find_element("css selector", "title").get_attribute("textContent") == name:
            return node
    raise AssertionError(f"{name} is not in graphviz's drawing")


def focus(browser, name: str, button: str, levels: str) -> None:
    """Select the function (as another view would), type the levels and press the focus button, as a reader does."""
    browser.execute_script("KM.select(arguments[0], 'test')", name)
    box = browser.find_element("id", "g-depth")
    box.clear()
    if levels:
        box.send_keys(levels)
    browser.find_element("id", button).click()


def drawn(browser) -> dict:
    """The focused drawing as the page draws it: boxes by name (calls, total, baseline calls, fill) and edges with their labels."""
    return browser.execute_script("""
        const boxes = {}, edges = {};
        for (const g of document.querySelectorAll('#g-box g.km-box')) {
            boxes[g.dataset.name] = {calls: Number(g.dataset.calls), total: Number(g.dataset.total),
                base_calls: g.dataset.baseCalls === undefined ? null : Number(g.dataset.baseCalls), base_partial: g.dataset.basePartial === '1',
                fill: g.querySelector('rect').getAttribute('fill'), label: [...g.querySelectorAll('text')].map((t) => t.textContent)};
        }
        for (const g of document.querySelectorAll('#g-box g.km-edge'))
            edges[g.dataset.caller + ' -> ' + g.dataset.callee] = Number(g.querySelector('text').textContent.replace(/,/g, ''));
        return {boxes, edges, caption: document.getElementById('g-caption').textContent};
    """)


def assert_same_view(page: dict, cli: dict) -> None:
    """Every function of the command line's view is drawn (up to the cap) with its calls and total; edges likewise."""
    expected = {name: node["calls"] for name, node in cli["nodes"].items()}
    shown = {name: box["calls"] for name, box in page["boxes"].items()}
    if len(expected) <= CAP:
        assert shown == expected
    else:  # the heaviest are drawn, the page says how many are left out
        assert len(shown) == CAP and all(expected.get(name) == calls for name, calls in shown.items())
        assert f"{len(expected) - CAP} left out" in page["caption"]
    for name, box in page["boxes"].items():
        assert box["total"] == pytest.approx(cli["nodes"][name]["total_time_us"], abs=0.01), name
    edges = {f"{a} -> {b}": calls for (a, b), calls in cli["edges"].items() if a in shown and b in shown}
    assert page["edges"] == edges


def test_clicking_a_node_of_graphviz_drawing_selects_and_outlines_it(browser, demo_page):
    from selenium.webdriver.common.action_chains import ActionChains

    open_page(browser, demo_page)
    assert browser.find_element("id", "selname").text == "tcp_sendmsg"  # the recording's first --graph-function
    node = graphviz_node(browser, "tcp_sendmsg_locked")
    ActionChains(browser).move_to_element(node).click().perform()
    assert browser.find_element("id", "selname").text == "tcp_sendmsg_locked"
    outlined = browser.find_elements("css selector", "#g-box g.node.km-sel")
    assert [g.find_element("css selector", "title").get_attribute("textContent") for g in outlined] == ["tcp_sendmsg_locked"]
    shape = outlined[0].find_element("css selector", "path")
    assert browser.execute_script("return getComputedStyle(arguments[0]).stroke", shape) == "rgb(21, 101, 192)"
    # graphviz's tooltips stay (the anchors' xlink:title), and so do its colour bar and caption
    tip = outlined[0].find_element("css selector", "a").get_attribute("xlink:title") or browser.execute_script(
        "return arguments[0].getAttributeNS('http://www.w3.org/1999/xlink', 'title')", outlined[0].find_element("css selector", "a"))
    assert tip.startswith("tcp_sendmsg_locked(); net/ipv4/tcp.c:1224; 412 calls")  # llvm-dwarfdump: DW_AT_decl_line 1224
    assert "colour = self time on a log scale" in browser.find_element("id", "g-box").get_attribute("textContent")
    no_console_errors(browser)


def test_selection_from_another_view_is_panned_into_view(browser, demo_page):
    open_page(browser, demo_page)
    for name in ("tcp_v4_rcv", "tcp_recvmsg"):  # far below the first view, then back up
        browser.execute_script("KM.select(arguments[0], 'tree')", name)
        node, box = graphviz_node(browser, name), browser.find_element("id", "g-box")
        centre = browser.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]", node)
        area = browser.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]", box)
        assert area[0] < centre[0] < area[2] and area[1] < centre[1] < area[3], name
        assert "km-sel" in node.get_attribute("class")
    no_console_errors(browser)


def test_zoom_and_pan_change_the_drawing_transform(browser, demo_page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin

    open_page(browser, demo_page)
    def transform() -> str:
        return browser.execute_script("return document.querySelector('#g-box .km-viewport').getAttribute('transform')")

    def scale() -> float:
        return float(re.search(r"scale\(([\d.]+)\)", transform())[1])

    before = scale()
    browser.find_element("id", "g-zin").click()
    assert scale() == pytest.approx(before * 1.25, rel=1e-3)
    browser.find_element("id", "g-zout").click()
    browser.find_element("id", "g-zout").click()
    assert scale() == pytest.approx(before * 0.8, rel=1e-3)
    box = browser.find_element("id", "g-box")
    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(box), 0, -300).perform()
    assert scale() > before * 0.8 * 1.2  # the wheel zooms in around the pointer
    browser.find_element("id", "g-fit").click()
    fitted = transform()
    selected = browser.find_element("id", "selname").text
    ActionChains(browser).move_to_element_with_offset(box, 5, 5).click_and_hold().move_by_offset(120, 80).release().perform()
    assert transform() != fitted and f"scale({fitted.split('scale(')[1]}" in transform()  # moved, not zoomed
    assert browser.find_element("id", "selname").text == selected  # a drag is not a click
    no_console_errors(browser)


def test_what_it_calls_matches_the_command_lines_root_view(browser, demo_page, tmp_path):
    open_page(browser, demo_page)
    focus(browser, "tcp_sendmsg", "g-callees", "3")
    page = drawn(browser)
    assert_same_view(page, cli_view(tmp_path, "--root", "tcp_sendmsg", "--depth", "3"))
    assert page["caption"].startswith("what tcp_sendmsg called, 3 levels: 43 functions")
    no_console_errors(browser)


def test_who_calls_it_matches_the_command_lines_callers_view(browser, demo_page, tmp_path):
    open_page(browser, demo_page)
    focus(browser, "kmem_cache_free", "g-callers", "3")
    page = drawn(browser)
    cli = cli_view(tmp_path, "--callers", "kmem_cache_free", "--depth", "3")
    assert len([edge for edge in cli["edges"] if edge[1] == "kmem_cache_free"]) >= 4  # several callers
    assert_same_view(page, cli)
    # the callers above, the function at the bottom, as the tool draws it
    tops = browser.execute_script("return Object.fromEntries([...document.querySelectorAll('#g-box g.km-box')].map((g) => [g.dataset.name, Number(g.querySelector('rect').getAttribute('y'))]))")
    assert tops["kmem_cache_free"] == max(tops.values())
    no_console_errors(browser)


@pytest.mark.parametrize(("button", "option", "name", "levels"), [
    ("g-callers", "--callers", "__local_bh_enable_ip", ""),  # softirqs run inside it and call it again
    ("g-callers", "--callers", "__local_bh_enable_ip", "4"),
    ("g-callees", "--root", "__tcp_transmit_skb", ""),  # loopback: transmitting acks from inside itself; more than the cap
])
def test_recursive_functions_are_counted_as_the_command_line_counts_them(browser, demo_page, tmp_path, button, option, name, levels):
    open_page(browser, demo_page)
    focus(browser, name, button, levels)
    page = drawn(browser)
    cli = cli_view(tmp_path, option, name, *(("--depth", levels) if levels else ()))
    if not levels:  # the function is among its own callers (or callees): recursion
        assert any(b == name for _, b in cli["edges"]) and any(a == name for a, _ in cli["edges"])
    assert_same_view(page, cli)
    no_console_errors(browser)


def test_focused_boxes_are_clickable_and_the_whole_drawing_comes_back(browser, demo_page):
    from selenium.webdriver.common.action_chains import ActionChains

    open_page(browser, demo_page)
    focus(browser, "tcp_sendmsg", "g-callees", "1")
    box = browser.find_element("css selector", "#g-box g.km-box[data-name='release_sock']")
    ActionChains(browser).move_to_element(box).click().perform()
    assert browser.find_element("id", "selname").text == "release_sock"
    assert "km-sel" in box.get_attribute("class")
    browser.find_element("id", "g-whole").click()
    assert not browser.find_elements("css selector", "#g-box g.km-box")
    assert "km-sel" in graphviz_node(browser, "release_sock").get_attribute("class")
    no_console_errors(browser)


def rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


@pytest.mark.parametrize(("button", "option", "name", "levels", "changes"), [
    ("g-callees", "--root", "schedule", "2", {"grew", "shrank"}),
    ("g-callers", "--callers", "release_sock", "3", {"grew"}),
    ("g-callees", "--root", "tcp_recvmsg", "3", {"grew", "shrank"}),
    ("g-callers", "--callers", "kfree_skbmem", "3", {"grew", "shrank"}),
])
def test_compare_colours_the_change_and_labels_both_values(browser, diff_page, tmp_path, button, option, name, levels, changes):
    open_page(browser, diff_page)
    focus(browser, name, button, levels)
    page = drawn(browser)
    cli = cli_view(tmp_path, option, name, "--depth", levels, "--baseline", str(BASELINE), "--heat", "calls")
    grew = shrank = unknown = 0
    for function, box in page["boxes"].items():
        now, before = cli["nodes"][function]["calls"], cli["nodes"][function]["baseline"]["calls"]
        assert box["calls"] == now, function
        if box["base_partial"]:
            # the baseline also has call paths this recording lacks: the page holds this recording's paths only
            unknown += 1
            assert box["base_calls"] <= before and box["fill"] == UNKNOWN, (function, box)
            assert f"{now:,} calls (baseline \u2265 {box['base_calls']:,})" in box["label"], box["label"]
            continue
        assert box["base_calls"] == before, function
        red, _, blue = rgb(box["fill"])
        if now > before:
            grew += 1
            assert red > blue, (function, box["fill"])
        elif now < before:
            shrank += 1
            assert blue > red, (function, box["fill"])
        else:
            assert abs(red - blue) < 12, (function, box["fill"])
        change = f"{now - before:+,}" if now != before else "\u00b10"
        assert f"{now:,} calls (baseline {before:,}, {change})" in box["label"], box["label"]
    assert {kind for kind, count in (("grew", grew), ("shrank", shrank), ("unknown", unknown)) if count} == changes
    assert "change of calls from the baseline" in page["caption"]
    assert (f"grey, \"baseline \u2265\": {unknown} functions" in page["caption"]) == bool(unknown)
    no_console_errors(browser)
