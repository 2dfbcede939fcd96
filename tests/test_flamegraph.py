"""The HTML flame graph (-o NAME.html), opened in a real browser: Debian's chromium driven by Selenium.

Expected widths and shares come from an independent reading of the raw
function_graph lines (nesting per task from the indentation and the context
switch lines, durations from the exit lines), never from the tool's tree.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DATA, read_lines, run_cli
from test_open_calls import open_calls_read_plainly, untimed_text_events

DEMO = DATA / "record-demo" / "kernel-magnifier.data.xz"
SYMBOL_MAP = DATA / "symbol-map-6.1.0-56-amd64.map.xz"
LOST_TRACE = DATA / "fg-default" / "trace.txt.xz"
BIGGEST = DATA / "fg-abstime-proc" / "trace.txt.xz"  # the largest real recording: about 23,000 call paths
ROW = 18  # px per frame row on the page

GRAPH_LINE = re.compile(r"^ *(?P<cpu>\d+)\)(?P<head>[^|]*)\|  (?P<body>.*)$")
SWITCH_LINE = re.compile(r"^ *(?P<cpu>\d+)\) +.+-\d+ +=> +(?P<next>.+-\d+) *$")


def finished_calls(lines: list[str]) -> Iterator[tuple[str, str | None, int, float]]:
    """(function, caller or None, depth, duration in us) of every call whose duration the trace prints."""
    task: dict[str, str] = {}
    frames_by_task: dict[str | None, dict[int, str]] = defaultdict(dict)
    for line in lines:
        switch = SWITCH_LINE.match(line)
        if switch:
            task[switch["cpu"]] = switch["next"]
            continue
        match = GRAPH_LINE.match(line)
        if not match:
            continue
        body = match["body"]
        depth = (len(body) - len(body.lstrip(" "))) // 2
        text = body.strip()
        duration = re.search(r"(\d+\.\d+) us", match["head"])
        frames = frames_by_task[task.get(match["cpu"])]
        if text.startswith("}"):
            name = frames.pop(depth, None)
            if name and duration:
                yield name, frames.get(depth - 1), depth, float(duration[1])
            continue
        name = text.split("(", 1)[0]
        for deeper in [d for d in frames if d >= depth]:
            del frames[deeper]
        if text.endswith("{"):
            frames[depth] = name
        elif text.endswith(";") and duration:
            yield name, frames.get(depth - 1), depth, float(duration[1])


@pytest.fixture(scope="module")
def demo_page(tmp_path_factory) -> Path:
    return flame_html(tmp_path_factory.mktemp("demo"), DEMO, "--symbol-map", str(SYMBOL_MAP))


def flame_html(tmp_path: Path, trace: Path, *extra: str) -> Path:
    out = tmp_path / f"{trace.parent.name}.flame.html"
    result = run_cli("visualize", "-i", str(trace), "-o", str(out), "--chart", "", *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return out


def open_page(browser, page: Path) -> None:
    browser.get(page.as_uri())
    assert browser.get_log("browser") == []  # no script error, no blocked request


def frames(browser) -> list[dict]:
    """Every frame on the page: name, depth (row), left and width in px, classes."""
    return browser.execute_script("""
        const chart = document.getElementById("chart").getBoundingClientRect();
        return [...document.querySelectorAll("#chart .frame")].map((el) => {
            const box = el.getBoundingClientRect();
            return {name: el.dataset.name, row: Math.round(parseFloat(el.style.top) / 18), left: box.left - chart.left,
                    width: box.width, classes: el.className, index: +el.dataset.i};
        });
    """)


def frame(browser, name: str, row: int) -> dict:
    found = [f for f in frames(browser) if f["name"] == name and f["row"] == row]
    assert len(found) == 1, (name, row, found)
    return found[0]


def click(browser, shown: dict) -> None:
    browser.execute_script("document.querySelector(`#chart .frame[data-i='${arguments[0]}']`).click()", shown["index"])


def chart_width(browser) -> float:
    return browser.execute_script("return document.getElementById('chart').getBoundingClientRect().width")


def test_flame_graph_widths_search_zoom_and_callers_in_a_browser(demo_page, browser):
    calls = list(finished_calls(read_lines(DEMO)))
    top_level = sum(duration for _, _, depth, duration in calls if depth == 0)
    sendmsg = sum(duration for name, _, depth, duration in calls if depth == 0 and name == "tcp_sendmsg")
    recvmsg = sum(duration for name, _, depth, duration in calls if depth == 0 and name == "tcp_recvmsg")
    open_page(browser, demo_page)
    assert "frame width = total time of the call path" in browser.find_element("id", "width").text
    assert browser.find_element("id", "lost").text == "no lost events reported"

    # the top-level frames: as wide as their total time, by the trace's own exit durations
    whole = chart_width(browser)
    root = frame(browser, "all", 0)
    assert root["width"] == pytest.approx(whole, abs=1)
    send, recv = frame(browser, "tcp_sendmsg", 1), frame(browser, "tcp_recvmsg", 1)
    assert send["width"] / recv["width"] == pytest.approx(sendmsg / recvmsg, rel=0.005)
    # "all" also holds a few calls whose entry was before the recording (0.35 % here)
    assert send["width"] / whole == pytest.approx(sendmsg / top_level, rel=0.01)
    below = [f for f in frames(browser) if f["row"] == 2 and send["left"] <= f["left"] < send["left"] + send["width"]]
    assert sum(f["width"] for f in below) <= send["width"] + 1

    # hover: the tooltip has the numbers and the source file (237 = a plain count of its entry lines)
    from selenium.webdriver import ActionChains

    entries = sum(1 for line in read_lines(DEMO) if line.endswith("|  tcp_sendmsg() {"))
    ActionChains(browser).move_to_element(browser.find_element("css selector", "#chart .frame[data-name='tcp_sendmsg']")).perform()
    tip = browser.find_element("id", "tip").text
    assert tip.startswith("tcp_sendmsg\nsource: net/ipv4/tcp.c:1489\n") and f"calls: {entries:,}" in tip  # llvm-dwarfdump: decl_line 1489
    inside = sum(duration for _, caller, depth, duration in calls if depth == 1 and caller == "tcp_sendmsg")
    numbers = re.search(r"total: ([\d.]+) ms, self: ([\d.]+) ms", tip)
    # the 237th call was still open when the recording stopped: no timestamps here, so its time is its callees'
    still_open, _ = open_calls_read_plainly(untimed_text_events(DEMO))
    open_sendmsg = sum(spent for _task, path, spent in still_open if path == ("tcp_sendmsg",))
    assert numbers and numbers[1] == f"{(sendmsg + open_sendmsg) / 1000:.2f}", tip
    assert float(numbers[2]) == pytest.approx((sendmsg - inside) / 1000, rel=0.02)

    # search: the matching frames light up, the share is tcp_sendmsg's time
    search = browser.find_element("id", "search")
    search.send_keys("tcp_sendmsg")
    matched = [f for f in frames(browser) if "match" in f["classes"].split()]
    assert {f["name"] for f in matched} <= {"tcp_sendmsg", "tcp_sendmsg_locked"} and {"tcp_sendmsg", "tcp_sendmsg_locked"} <= {f["name"] for f in matched}
    text = browser.find_element("id", "matched").text
    share = float(re.search(r"([\d.]+)% of all", text)[1])
    assert share == pytest.approx(100 * sendmsg / top_level, abs=0.5)  # tcp_sendmsg_locked is inside it: not counted twice
    search.clear()
    search.send_keys("^tcp_sendmsg$")
    assert {f["name"] for f in frames(browser) if "match" in f["classes"].split()} == {"tcp_sendmsg"}
    search.send_keys("\b" * 20)
    assert browser.find_element("id", "matched").text == ""

    # click to zoom: tcp_sendmsg fills the width, reset brings the whole back
    click(browser, send)
    zoomed = frame(browser, "tcp_sendmsg", 1)
    assert zoomed["left"] == pytest.approx(0, abs=1) and zoomed["width"] == pytest.approx(chart_width(browser), abs=1)
    assert "zoomed into tcp_sendmsg" in browser.find_element("id", "heading").text
    assert not any(f["name"] == "tcp_recvmsg" for f in frames(browser))
    browser.find_element("id", "reset").click()
    assert frame(browser, "tcp_sendmsg", 1)["width"] / chart_width(browser) == pytest.approx(send["width"] / whole, abs=0.001)

    # callers of release_sock: its three callers, as wide as its time below each of them
    release = [f for f in frames(browser) if f["name"] == "release_sock"]
    click(browser, max(release, key=lambda f: f["width"]))
    callers_button = browser.find_element("id", "callers")
    assert callers_button.text == "Callers of release_sock"
    callers_button.click()
    assert browser.find_element("id", "heading").text.startswith("Callers of release_sock")
    assert frame(browser, "release_sock", 0)["width"] == pytest.approx(chart_width(browser), abs=1)
    expected: dict[str | None, float] = defaultdict(float)
    for name, caller, _, duration in calls:
        if name == "release_sock":
            expected[caller] += duration
    shown = {f["name"]: f["width"] for f in frames(browser) if f["row"] == 1}
    assert set(shown) == set(expected) - {None} == {"tcp_sendmsg", "tcp_recvmsg", "sk_wait_data"}
    assert shown["sk_wait_data"] / shown["tcp_sendmsg"] == pytest.approx(expected["sk_wait_data"] / expected["tcp_sendmsg"], rel=0.02)
    # calls from before the recording started (caller not in the lines) are placed below tcp_recvmsg, the recording's other entry
    assert expected["tcp_recvmsg"] <= shown["tcp_recvmsg"] / shown["tcp_sendmsg"] * expected["tcp_sendmsg"] <= (expected["tcp_recvmsg"] + expected[None]) * 1.02
    assert {f["name"] for f in frames(browser) if f["row"] == 2} >= {"tcp_recvmsg_locked"}  # sk_wait_data's caller
    browser.find_element("id", "back").click()
    assert browser.find_element("id", "heading").text == "Call tree (icicle)"

    # flame layout: the root at the bottom
    browser.find_element("id", "layout").click()
    rows = max(f["row"] for f in frames(browser))
    assert frame(browser, "all", rows)["width"] == pytest.approx(chart_width(browser), abs=1)


def test_flame_graph_makes_no_network_request(demo_page, browser):
    text = demo_page.read_text()
    assert "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'" in text
    assert not re.search(r"(src|href)=\"?(https?:)?//", text)
    assert text.count("</script>") == 2  # "</" inside the embedded JSON is escaped
    browser.get_log("performance")
    open_page(browser, demo_page)
    assert len(frames(browser)) > 50  # the script ran under the page's own policy
    requests = [
        json.loads(entry["message"])["message"]["params"]["request"]["url"]
        for entry in browser.get_log("performance")
        if json.loads(entry["message"])["message"]["method"] == "Network.requestWillBeSent"
    ]
    assert requests and all(url.startswith("file://") for url in requests), requests


def test_flame_graph_shows_the_lost_event_share(tmp_path, browser):
    lines = read_lines(LOST_TRACE)
    # the trace_pipe reprints one "CPU:0 [LOST 9793 EVENTS]" line (tests/test_formats.py checks it): counted once
    lost = sum(int(found[1]) for line in lines if (found := re.search(r"\[LOST (\d+) EVENTS\]", line))) - 9793
    events = 0
    for line in lines:
        body = line.split("|", 1)[1].strip() if not line.startswith("#") and "|" in line else ""
        events += 2 if body.endswith(";") else 1 if body.endswith("{") or body.startswith("}") else 0
    open_page(browser, flame_html(tmp_path, LOST_TRACE))
    shown = browser.find_element("id", "lost")
    assert shown.text == f"the kernel lost {lost / (lost + events):.1%} of events ({lost:,}): widths are lower bounds"
    assert "lost" in shown.get_attribute("class")


def test_flame_graph_of_the_biggest_recording_stays_responsive(tmp_path, browser):
    page = flame_html(tmp_path, BIGGEST, "--heat", "calls")
    open_page(browser, page)
    assert "calls in the call path's subtree (--heat calls)" in browser.find_element("id", "width").text
    paths = len(json.loads(re.search(r'id="data">(.*?)</script>', page.read_text(), re.S)[1])["fn"])
    assert paths > 20_000
    drawn = frames(browser)
    assert len(drawn) < 3000  # narrow frames merged, not drawn one by one
    assert re.match(r"[\d,]+ frames narrower than 0.1% of the view are merged", browser.find_element("id", "merged").text)
    assert any(f["name"].endswith("small frames)") for f in drawn)
    started = time.monotonic()
    milliseconds = browser.execute_script(
        "const t = performance.now(); document.getElementById('reset').click(); document.getElementById('layout').click();"
        " const s = document.getElementById('search'); s.value = 'rcu'; s.dispatchEvent(new Event('input')); return performance.now() - t"
    )
    assert milliseconds < 1000 and time.monotonic() - started < 5


def test_flame_graph_file_keeps_the_heaviest_call_paths_with_their_callers(km):
    graph = km.parse_traces([str(DEMO)])
    weights = km.flame_weights(graph.tree, use_time=True)
    kept, left_out = km.flame_frames(graph.tree, weights, limit=100)
    assert len(kept) == 101 and kept[0] == km.ROOT_NODE
    assert left_out == sum(1 for node in graph.tree.walk() if weights[node] > 0) - 100
    position = {node: index for index, node in enumerate(kept)}
    assert all(position[graph.tree.parent[node]] < position[node] for node in kept[1:])  # callers first, none missing
    lightest_kept = min(weights[node] for node in kept[1:])
    assert all(weights[node] <= lightest_kept for node in graph.tree.walk() if node not in position)
    # a frame is at least as wide as its children together: frames nest even where an exit was lost
    assert all(weights[node] >= sum(weights[kid] for kid in (graph.tree.children[node] or {}).values()) - 1e-6 for node in graph.tree.walk())


def test_flame_graph_file_says_how_many_call_paths_it_left_out(km, monkeypatch, tmp_path):
    import argparse

    monkeypatch.setattr(km, "HTML_MAX_FRAMES", 50)
    graph = km.parse_traces([str(DEMO)])
    view = km.build_view(graph, km.ViewRequest())
    km.write_flame_html(km.Views(view, km.Heat.of_view(view, "self", None), None, argparse.Namespace(), False), str(tmp_path / "small.html"))
    text = (tmp_path / "small.html").read_text()
    assert len(json.loads(re.search(r'id="data">(.*?)</script>', text, re.S)[1])["fn"]) == 51
    left_out = sum(1 for node in graph.tree.walk() if graph.tree.total_us[node] > 0 or graph.tree.children[node]) - 50
    assert f"{left_out:,} call paths lighter than the 50 heaviest are left out of this file" in text


def test_wakers_page_says_sleeps_and_time_waited(tmp_path, browser):
    """--wakers tcp_recvmsg as a page: the frames count sleeps and the time they waited, read from the raw text."""
    from selenium.webdriver import ActionChains
    from test_wakeups import SAMPLE, read_sample

    reading = read_sample()
    woken = [(sleep, waker, switch_in) for sleep, waker, switch_in in reading.woken if "tcp_recvmsg" in sleep.stack]
    waited_ms = sum(switch_in - sleep.stamp_s for sleep, _, switch_in in woken) * 1000
    open_page(browser, flame_html(tmp_path, SAMPLE, "--wakers", "tcp_recvmsg"))
    width = browser.find_element("id", "width").text
    assert width.startswith("frame width = time the sleeps of tcp_recvmsg waited that were woken through the call path; all = ")
    assert "this is a --wakers view" in width and "total time" not in width
    assert browser.find_element("id", "heading").text.startswith("Wakers' call paths (icicle)")
    ActionChains(browser).move_to_element(browser.find_element("css selector", "#chart .frame[data-name='tcp_recvmsg']")).perform()
    tip = browser.find_element("id", "tip").text.splitlines()
    assert tip[0] == "tcp_recvmsg" and f"sleeps: {len(woken) + reading.unwoken:,}" in tip and "calls" not in " ".join(tip)
    assert f"time waited: {waited_ms:.2f} ms" in tip
    waker = next(f for f in frames(browser) if f["name"] == "sock_def_readable")
    ActionChains(browser).move_to_element(browser.find_element("css selector", f"#chart .frame[data-i='{waker['index']}']")).perform()
    through = [(sleep, switch_in) for sleep, waker, switch_in in woken if "sock_def_readable" in waker.stack]
    tip = browser.find_element("id", "tip").text.splitlines()
    assert f"sleeps: {len(through):,}" in tip and f"time waited: {sum(s - sleep.stamp_s for sleep, s in through) * 1000:.2f} ms" in tip
