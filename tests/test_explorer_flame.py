"""The explorer page's Flame graph view (-o NAME.html), in a real browser: Debian's chromium driven by Selenium.

Expected widths come from the raw function_graph lines (test_flamegraph's
finished_calls), the compared colours from the JSON call trees the command line
writes of the two recordings, never from the page itself.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import DATA, graph_json, read_lines, run_cli
from test_flamegraph import finished_calls

DEMO = DATA / "record-demo" / "kernel-magnifier.data.xz"
DEMO_DAT = DATA / "record-demo-dat" / "kernel-magnifier.data.xz"
SYMBOL_MAP = DATA / "symbol-map-6.1.0-56-amd64.map.xz"
ROW = 18  # px per frame row


def explorer_html(tmp_path: Path, trace: Path, *extra: str) -> Path:
    out = tmp_path / "explorer.html"
    result = run_cli("visualize", "-i", str(trace), "--symbol-map", str(SYMBOL_MAP), "-o", str(out), "--chart", "", *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def demo_page(tmp_path_factory) -> Path:
    return explorer_html(tmp_path_factory.mktemp("explorer"), DEMO)


def open_flame_view(browser, page: Path) -> None:
    browser.get(page.as_uri())
    browser.find_element("id", "tab-flame").click()
    assert browser.get_log("browser") == []  # no script error, no blocked request


def frames(browser) -> list[dict]:
    """Every frame of the flame view: name, row, left and width in px, outline as drawn, background colour, index."""
    return browser.execute_script("""
        const chart = document.getElementById("flame-chart").getBoundingClientRect();
        return [...document.querySelectorAll("#flame-chart .frame")].map((el) => {
            const box = el.getBoundingClientRect(), style = getComputedStyle(el);
            return {name: el.dataset.name, row: Math.round(parseFloat(el.style.top) / 18), left: box.left - chart.left,
                    width: box.width, outlined: style.outlineStyle === "solid" && parseFloat(style.outlineWidth) >= 2,
                    background: style.backgroundColor, index: +el.dataset.i};
        });
    """)


def frame(browser, name: str, row: int) -> dict:
    found = [f for f in frames(browser) if f["name"] == name and f["row"] == row]
    assert len(found) == 1, (name, row, found)
    return found[0]


def click(browser, shown: dict) -> None:
    browser.execute_script("document.querySelector(`#flame-chart .frame[data-i='${arguments[0]}']`).click()", shown["index"])


def chart_width(browser) -> float:
    return browser.execute_script("return document.getElementById('flame-chart').getBoundingClientRect().width")


def test_flame_view_frames_are_as_wide_as_the_top_level_calls(demo_page, browser):
    calls = list(finished_calls(read_lines(DEMO)))
    top_level = sum(duration for _, _, depth, duration in calls if depth == 0)
    sendmsg = sum(duration for name, _, depth, duration in calls if depth == 0 and name == "tcp_sendmsg")
    recvmsg = sum(duration for name, _, depth, duration in calls if depth == 0 and name == "tcp_recvmsg")
    open_flame_view(browser, demo_page)
    assert browser.find_element("id", "flame-width").text.startswith("frame width = total time of the call path")
    whole = chart_width(browser)
    assert whole > 1000  # drawn in view, not while the tab was hidden
    assert frame(browser, "all", 0)["width"] == pytest.approx(whole, abs=1)
    send, recv = frame(browser, "tcp_sendmsg", 1), frame(browser, "tcp_recvmsg", 1)
    assert send["width"] / recv["width"] == pytest.approx(sendmsg / recvmsg, rel=0.005)
    # "all" also holds a few calls whose entry was before the recording (0.35 % here)
    assert send["width"] / whole == pytest.approx(sendmsg / top_level, rel=0.01)
    assert recv["left"] + recv["width"] <= send["left"] + 1 or send["left"] + send["width"] <= recv["left"] + 1


def test_clicking_a_frame_selects_its_function_for_every_view(demo_page, browser):
    entries = sum(1 for line in read_lines(DEMO) if line.endswith("|  tcp_sendmsg() {"))
    open_flame_view(browser, demo_page)
    browser.execute_script("KM.select('tcp_recvmsg', 'test')")
    click(browser, frame(browser, "tcp_sendmsg", 1))
    # the shared selection bar names it, with its calls counted in the raw lines
    assert browser.find_element("id", "selname").text == "tcp_sendmsg"
    assert browser.find_element("id", "selnumbers").text.startswith(f"{entries:,} calls")
    assert browser.execute_script("return KM.selected") == "tcp_sendmsg"
    # and the click zoomed: tcp_sendmsg fills the width, its frames are outlined, tcp_recvmsg is gone
    zoomed = frame(browser, "tcp_sendmsg", 1)
    assert zoomed["left"] == pytest.approx(0, abs=1) and zoomed["width"] == pytest.approx(chart_width(browser), abs=1)
    assert zoomed["outlined"] and not any(f["name"] == "tcp_recvmsg" for f in frames(browser))
    assert browser.find_element("id", "flame-callers").text == "Callers of tcp_sendmsg"
    browser.find_element("id", "flame-reset").click()
    assert frame(browser, "tcp_recvmsg", 1)["width"] > 0.3 * chart_width(browser)


def test_a_selection_made_in_another_view_outlines_its_frames_and_drives_callers(demo_page, browser):
    callers: dict[str | None, float] = defaultdict(float)
    for name, caller, _, duration in finished_calls(read_lines(DEMO)):
        if name == "release_sock":
            callers[caller] += duration
    open_flame_view(browser, demo_page)
    # selected while the flame view is hidden: drawn outlined when it is shown
    browser.find_element("id", "tab-graph").click()
    browser.execute_script("KM.select('release_sock', 'graph')")
    browser.find_element("id", "tab-flame").click()
    drawn = frames(browser)
    outlined = [f for f in drawn if f["outlined"]]
    assert {f["name"] for f in outlined} == {"release_sock"}
    assert len(outlined) == sum(1 for f in drawn if f["name"] == "release_sock") >= 3  # one per caller at least
    # selected while it is in view: the outline moves at once
    browser.execute_script("KM.select('tcp_push', 'tree')")
    assert {f["name"] for f in frames(browser) if f["outlined"]} == {"tcp_push"}
    browser.execute_script("KM.select('release_sock', 'peek')")
    # Callers of uses the selection: release_sock's three callers, as wide as its time below each
    button = browser.find_element("id", "flame-callers")
    assert button.text == "Callers of release_sock"
    button.click()
    assert browser.find_element("id", "flame-heading").text.startswith("Callers of release_sock")
    shown = {f["name"]: f["width"] for f in frames(browser) if f["row"] == 1}
    assert set(shown) == set(callers) - {None} == {"tcp_sendmsg", "tcp_recvmsg", "sk_wait_data"}
    assert shown["sk_wait_data"] / shown["tcp_sendmsg"] == pytest.approx(callers["sk_wait_data"] / callers["tcp_sendmsg"], rel=0.02)
    browser.find_element("id", "flame-back").click()
    assert browser.find_element("id", "flame-heading").text == "Call tree (icicle)"


def call_paths(graph: dict) -> dict[tuple[str, ...], dict]:
    """The JSON call tree's nodes by their chain of function names from the root."""
    by_id = {node["id"]: node for node in graph["call_tree"]}
    paths = {}
    for node in graph["call_tree"]:
        chain, at = [], node
        while at is not None:
            chain.append(at["function"])
            at = by_id.get(at["parent"])
        paths[tuple(reversed(chain))] = node
    return paths


def fmt_us(value: float) -> str:
    return f"{value / 1e6:.2f} s" if value >= 1e6 else f"{value / 1000:.2f} ms" if value >= 1000 else f"{value:.1f} us"


def rgb(css: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", css)[:3])


def test_with_a_baseline_frames_are_coloured_by_the_change_of_their_call_path(tmp_path, browser):
    from selenium.webdriver import ActionChains

    now, then = call_paths(graph_json(tmp_path, DEMO_DAT)), call_paths(graph_json(tmp_path, DEMO))
    whole = sum(node["total_time_us"] for path, node in now.items() if len(path) == 1)
    # the paths of the first two levels wide enough to be drawn alone, by how much their total time changed
    candidates = {path: node["total_time_us"] - (then[path]["total_time_us"] if path in then else 0.0)
                  for path, node in now.items() if len(path) <= 2 and node["total_time_us"] > 0.02 * whole}
    grew, shrank = max(candidates, key=candidates.get), min(candidates, key=candidates.get)
    assert candidates[grew] > 0.05 * whole and candidates[shrank] < -0.05 * whole, candidates
    open_flame_view(browser, explorer_html(tmp_path, DEMO_DAT, "--baseline", str(DEMO)))
    assert "change of the call path's total time against the baseline" in browser.find_element("id", "flame-compare").text
    red, green, blue = rgb(frame(browser, grew[-1], len(grew))["background"])
    assert red > blue + 60, (grew, red, green, blue)
    red, green, blue = rgb(frame(browser, shrank[-1], len(shrank))["background"])
    assert blue > red + 60, (shrank, red, green, blue)
    # the tooltip has both values
    shown = frame(browser, shrank[-1], len(shrank))
    ActionChains(browser).move_to_element(browser.find_element("css selector", f"#flame-chart .frame[data-i='{shown['index']}']")).perform()
    tip = browser.find_element("id", "tip").text.splitlines()
    current, base = now[shrank], then[shrank]
    assert f"total: {fmt_us(current['total_time_us'])}, self: {fmt_us(current['self_time_us'])}" in tip, tip
    assert f"baseline: {base['calls']:,} calls, total {fmt_us(base['total_time_us'])}" in tip, tip
    assert any(row.startswith(f"change: -{fmt_us(base['total_time_us'] - current['total_time_us'])}") for row in tip), tip


def test_flame_view_of_the_biggest_recording_merges_small_frames_and_reacts_at_once(tmp_path, browser):
    from test_flamegraph import BIGGEST

    page = tmp_path / "big.html"
    result = run_cli("visualize", "-i", str(BIGGEST), "-o", str(page), "--chart", "", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    paths = len(re.search(r'"fn":\[(.*?)\]', page.read_text())[1].split(","))
    assert paths > 20_000
    open_flame_view(browser, page)
    drawn = frames(browser)
    assert len(drawn) < 3000 and any(f["name"].endswith("small frames)") for f in drawn)  # narrow frames merged, not drawn one by one
    assert re.match(r"[\d,]+ frames narrower than 0.1% of the view are merged", browser.find_element("id", "flame-merged").text)
    milliseconds = browser.execute_script(
        "const t = performance.now(); document.getElementById('flame-layout').click();"
        " const s = document.getElementById('flame-search'); s.value = 'rcu'; s.dispatchEvent(new Event('input'));"
        " KM.select(KM.root.kids[0].name, 'tree'); document.getElementById('flame-reset').click(); return performance.now() - t"
    )
    assert milliseconds < 1000
