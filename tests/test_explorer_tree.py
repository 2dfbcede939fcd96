"""The explorer page's Call tree view (visualize -o NAME.html, issue 20 point 2), in a real browser.

Rows are unfolded and folded with real clicks and keys (Selenium in Debian's
chromium); what the rows show is checked against the call tree of the tool's
JSON output ("call_tree": id, parent, function, calls, total_time_us,
self_time_us), walked here: its call paths, heaviest children, the matches of
a search and their outermost share. The baseline's numbers come from the
baseline's own JSON.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import DATA, load_module, run_cli
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

DEMO = DATA / "record-demo-dat" / "kernel-magnifier.data.xz"  # with scheduler events: on CPU / asleep columns
BASELINE = DATA / "record-demo" / "kernel-magnifier.data.xz"
SYMBOL_MAP = DATA / "symbol-map-6.1.0-56-amd64.map.xz"
FG_TEXT = DATA / "fg-default" / "trace.txt.xz"  # function_graph text as trace-cmd/ftrace print it
UNTIMED = DATA / "function-tracer" / "trace.txt.xz"  # the function tracer: calls, no durations
BIGGEST = DATA / "fg-abstime-proc" / "trace.txt.xz"  # the largest real recording: about 23,000 call paths
UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6}


# ---- the JSON's call tree, walked here ----

@dataclass
class Path_:
    name: str
    calls: int
    total: float
    self: float
    off: float
    kids: list[Path_] = field(default_factory=list)
    weight: float = 0.0  # its time, at least its children's (a call whose exit was lost still holds them)


def json_tree(graph: dict) -> tuple[Path_, dict[tuple[str, ...], Path_]]:
    """The root and every call path by its chain of names."""
    timed = all(node["total_time_us"] is not None for node in graph["call_tree"])
    root = Path_("all", 0, 0.0, 0.0, 0.0)
    by_id = {0: root}
    paths: dict[tuple[str, ...], Path_] = {}
    chain = {0: ()}
    for node in graph["call_tree"]:  # parents come first
        path = Path_(node["function"], node["calls"], node["total_time_us"] or 0.0, node["self_time_us"] or 0.0, node.get("off_cpu_us") or 0.0)
        by_id[node["id"]] = path
        by_id[node["parent"]].kids.append(path)
        chain[node["id"]] = (*chain[node["parent"]], node["function"])
        paths[chain[node["id"]]] = path

    def weigh(path: Path_) -> float:
        below = sum(weigh(kid) for kid in path.kids)
        path.weight = max(path.total, below) if timed else path.calls + below  # untimed: calls with its callees'
        return path.weight

    root.weight = sum(weigh(kid) for kid in root.kids)
    return root, paths


def shown(path: Path_) -> list[Path_]:
    """The children a page can show: those with time (the page embeds the call paths with a weight)."""
    return [kid for kid in path.kids if kid.weight > 0]


def outermost_share(root: Path_, pattern: str) -> tuple[int, float]:
    """How many call paths match, and the weight of the outermost ones (a match inside a match counted once)."""
    count, weight = 0, 0.0
    stack = [(kid, False) for kid in shown(root)]
    while stack:
        path, inside = stack.pop()
        hit = re.search(pattern, path.name) is not None
        count += hit
        if hit and not inside:
            weight += path.weight
        stack.extend((kid, inside or hit) for kid in shown(path))
    return count, weight


# ---- the page ----

def make(tmp_path: Path, trace: Path, output: str, *extra: str) -> Path:
    out = tmp_path / output
    result = run_cli("visualize", "-i", str(trace), "-o", str(out), "--chart", "", *extra, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    where = tmp_path_factory.mktemp("demo")
    page = make(where, DEMO, "demo.html", "--symbol-map", str(SYMBOL_MAP))
    return page, json.loads(make(where, DEMO, "demo.json", "--symbol-map", str(SYMBOL_MAP)).read_text())


# Every unfolded row, read from the drawn rows while scrolling the outline through (it draws only the rows in sight).
READ_ROWS = """
const done = arguments[arguments.length - 1];
const box = document.getElementById("tree-box"), rows = new Map();
const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
const heads = [...box.querySelectorAll(".tv-head .tv-c")].map((c) => c.textContent.replace(" (change)", ""));
(async () => {
  for (let top = 0; ; top += box.clientHeight / 2) {
    box.scrollTop = top;
    await frame();
    for (const row of box.querySelectorAll(".tv-list .tv-row")) {
      const cells = [...row.querySelectorAll(".tv-c")];
      rows.set(parseInt(row.style.top), {
        name: row.querySelector(".tv-fn").textContent, depth: +row.dataset.depth, classes: row.className,
        triangle: row.querySelector(".tv-tri").textContent,
        cells: Object.fromEntries(cells.map((c, k) => [heads[k], c.querySelector(".tv-v") ? c.querySelector(".tv-v").textContent : ""])),
        titles: Object.fromEntries(cells.map((c, k) => [heads[k], c.title])),
      });
    }
    if (top + box.clientHeight >= box.scrollHeight) break;
  }
  done([...rows.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]));
})();
"""


@dataclass
class Row:
    path: tuple[str, ...]
    depth: int
    classes: set[str]
    triangle: str
    cells: dict[str, str]
    titles: dict[str, str]


def read_rows(browser) -> list[Row]:
    """The unfolded rows in order, each with its call path (the names of the rows above it, by indentation)."""
    found, chain = [], []
    for row in browser.execute_async_script(READ_ROWS):
        chain[row["depth"]:] = [row["name"]]
        found.append(Row(tuple(chain[1:]), row["depth"], set(row["classes"].split()), row["triangle"], row["cells"], row["titles"]))
    return found


def open_tree(browser, page: Path) -> None:
    browser.get(page.as_uri())
    assert browser.get_log("browser") == []  # no script error, no blocked request
    browser.find_element("id", "tab-tree").click()


def row_element(browser, path: tuple[str, ...]):
    """The drawn row of a call path (scrolled into sight first), found by walking the drawn rows' indentation."""
    for row_index, row in enumerate(read_rows(browser)):
        if row.path == path:
            browser.execute_async_script("""
                const done = arguments[arguments.length - 1];
                document.getElementById('tree-box').scrollTop = arguments[0] * 20 - 100;
                requestAnimationFrame(() => requestAnimationFrame(done));""", row_index)
            return browser.execute_script("return [...document.querySelectorAll('#tree-box .tv-list .tv-row')].find((r) => parseInt(r.style.top) === arguments[0] * 20)", row_index)
    raise AssertionError(f"no row {path}")


def current(browser) -> tuple[str, ...]:
    rows = [row for row in read_rows(browser) if "tv-cur" in row.classes]
    assert len(rows) == 1, rows
    return rows[0].path


def press(browser, *keys: str) -> None:
    for key in keys:
        ActionChains(browser).send_keys(key).perform()


def number(text: str) -> tuple[float, float]:
    """A shown number and half its last digit (its rounding): "1,234" -> (1234, 0.5); "2.59 ms" -> (2590, 5)."""
    text = text.split(" (")[0]
    if " " not in text:
        return float(text.replace(",", "")), 0.5
    value, unit = text.split()
    decimals = len(value.split(".")[1]) if "." in value else 0
    return float(value) * UNITS[unit], 0.5 * 10 ** -decimals * UNITS[unit] + 1e-6


def check_numbers(row: Row, path: Path_, on_off: bool) -> None:
    """A row's calls, total, self (and on CPU / asleep) against the JSON's call path."""
    assert number(row.cells["calls"])[0] == path.calls, row
    expected = {"total": path.total, "self": path.self}
    if on_off:
        expected |= {"on CPU": max(0.0, path.total - path.off), "asleep": path.off}
    for column, value in expected.items():
        shown_value, rounding = number(row.cells[column])
        assert shown_value == pytest.approx(value, abs=rounding), (row.path, column, row.cells[column], value)


def heaviest(path: Path_) -> Path_:
    return max(shown(path), key=lambda kid: kid.weight)


# ---- the tests ----

def test_rows_fold_and_unfold_with_the_numbers_of_the_json_call_tree(demo, browser):
    page, graph = demo
    root, paths = json_tree(graph)
    open_tree(browser, page)
    rows = read_rows(browser)
    assert set(rows[0].cells) == {"calls", "total", "self", "on CPU", "asleep"}  # the demo has scheduler events
    # Initially: "all", the top level (heaviest first) and one level below each of them.
    assert [row.path for row in rows if row.depth == 1] == [(kid.name,) for kid in sorted(shown(root), key=lambda kid: -kid.weight)]
    assert {row.path for row in rows if row.depth == 2} == {(top.name, kid.name) for top in shown(root) for kid in shown(top)}
    assert max(row.depth for row in rows) == 2
    whole = sum(kid.total for kid in root.kids)
    assert number(rows[0].cells["total"])[0] == pytest.approx(whole, abs=number(rows[0].cells["total"])[1])
    for row in rows[1:]:
        check_numbers(row, paths[row.path], on_off=True)
    # Unfold tcp_sendmsg -> tcp_sendmsg_locked with a click on its triangle: its children, heaviest first.
    locked = ("tcp_sendmsg", "tcp_sendmsg_locked")
    assert not any(row.path[:2] == locked and row.depth == 3 for row in rows)
    row_element(browser, locked).find_element("css selector", ".tv-tri").click()
    rows = read_rows(browser)
    at = [row.path for row in rows].index(locked)
    below = [row.path for row in rows[at + 1:at + 1 + len(shown(paths[locked]))]]
    assert below == [(*locked, kid.name) for kid in sorted(shown(paths[locked]), key=lambda kid: -kid.weight)]
    assert rows[at].triangle == "\u25be"
    for row in rows[at + 1:at + 1 + len(below)]:
        check_numbers(row, paths[row.path], on_off=True)
    # Fold tcp_recvmsg: its rows go, tcp_sendmsg's stay.
    row_element(browser, ("tcp_recvmsg",)).find_element("css selector", ".tv-tri").click()
    rows = read_rows(browser)
    assert not any(row.path[:1] == ("tcp_recvmsg",) and row.depth > 1 for row in rows)
    assert any(row.path[:2] == locked and row.depth == 3 for row in rows)


def test_keyboard_moves_the_current_row_and_h_unfolds_the_heaviest_path(demo, browser):
    page, graph = demo
    _, paths = json_tree(graph)
    open_tree(browser, page)
    # A click makes the row current and selects its function for every view.
    row_element(browser, ("tcp_recvmsg",)).find_element("css selector", ".tv-fn").click()
    assert current(browser) == ("tcp_recvmsg",)
    assert browser.find_element("id", "selname").text == "tcp_recvmsg"
    first = heaviest(paths[("tcp_recvmsg",)]).name
    press(browser, Keys.ARROW_DOWN)
    assert current(browser) == ("tcp_recvmsg", first)
    press(browser, Keys.ARROW_UP, Keys.ARROW_LEFT)  # fold tcp_recvmsg
    assert current(browser) == ("tcp_recvmsg",)
    assert not any(row.path[:1] == ("tcp_recvmsg",) and row.depth > 1 for row in read_rows(browser))
    press(browser, Keys.ARROW_RIGHT)  # unfold
    assert any(row.path == ("tcp_recvmsg", first) for row in read_rows(browser))
    assert current(browser) == ("tcp_recvmsg",)
    press(browser, Keys.ARROW_RIGHT)  # to the first (heaviest) child
    assert current(browser) == ("tcp_recvmsg", first)
    press(browser, Keys.ARROW_LEFT)  # a folded row: to its parent
    assert current(browser) == ("tcp_recvmsg",)
    press(browser, Keys.ENTER)  # toggles: folded
    assert not any(row.path[:1] == ("tcp_recvmsg",) and row.depth > 1 for row in read_rows(browser))
    press(browser, "l")  # unfolds and goes to the heaviest child
    assert current(browser) == ("tcp_recvmsg", first)
    press(browser, Keys.ARROW_DOWN)
    siblings = sorted(shown(paths[("tcp_recvmsg",)]), key=lambda kid: -kid.weight)
    assert current(browser) == ("tcp_recvmsg", siblings[1].name)
    time.sleep(0.4)  # the shared selection follows the keys once they stop
    assert browser.find_element("id", "selname").text == siblings[1].name
    # h on tcp_sendmsg: the heaviest child at every level, unfolded all the way down, just below the row.
    row_element(browser, ("tcp_sendmsg",)).find_element("css selector", ".tv-fn").click()
    press(browser, "h")
    rows = read_rows(browser)
    at = [row.path for row in rows].index(("tcp_sendmsg",))
    path, chain = paths[("tcp_sendmsg",)], ("tcp_sendmsg",)
    while shown(path):
        path = heaviest(path)
        chain = (*chain, path.name)
        at += 1
        assert rows[at].path == chain, (rows[at].path, chain)
        check_numbers(rows[at], paths[chain], on_off=True)
    assert len(chain) > 4 and rows[at].triangle == ""  # down to a leaf
    assert current(browser) == ("tcp_sendmsg",)


def test_search_highlights_the_matches_and_says_their_outermost_share(demo, browser):
    page, graph = demo
    root, _ = json_tree(graph)
    open_tree(browser, page)
    search = browser.find_element("id", "tree-search")
    for pattern in ("tcp_", "^(lock_sock_nested|release_sock)$", "_raw_spin"):
        search.clear()
        search.send_keys(pattern)
        count, weight = outermost_share(root, pattern)
        said = re.fullmatch(r"([\d,]+) matching call paths: ([\d.]+)% of all time \(nested counted once\)(; .*)?", browser.find_element("id", "tree-found").text)
        assert said, browser.find_element("id", "tree-found").text
        assert int(said[1].replace(",", "")) == count
        digits = len(said[2].split(".")[1])
        assert float(said[2]) == pytest.approx(100 * weight / root.weight, abs=0.5 * 10 ** -digits + 1e-9), pattern
        rows = read_rows(browser)
        highlighted = [row for row in rows if "tv-match" in row.classes]
        assert len(highlighted) >= min(count, 300)  # the first few hundred are unfolded
        for row in rows[1:]:
            assert ("tv-match" in row.classes) == (re.search(pattern, row.path[-1]) is not None), row.path
    # n and N go through the matches in the outline's order, unfolding where needed.
    assert count > 300  # _raw_spin: more than are unfolded at once
    search.send_keys(Keys.ENTER)  # leaves the search box for the outline, at the next match
    visited = [current(browser)]
    for _ in range(3):
        press(browser, "n")
        visited.append(current(browser))
    assert all(re.search("_raw_spin", path[-1]) for path in visited)
    order = [row.path for row in read_rows(browser)]
    assert [order.index(path) for path in visited] == sorted(order.index(path) for path in set(visited))  # onwards, each once
    press(browser, "N")
    assert current(browser) == visited[-2]
    # A regular expression that does not compile is searched as a substring.
    search.clear()
    search.send_keys("tcp_sendmsg(")
    assert browser.find_element("id", "tree-found").text.startswith("0 matching call paths: 0.0% of all time")
    assert browser.get_log("browser") == []


def test_function_graph_text_rows_and_search_share(tmp_path, browser):
    page = make(tmp_path, FG_TEXT, "fg.html")
    root, paths = json_tree(json.loads(make(tmp_path, FG_TEXT, "fg.json").read_text()))
    open_tree(browser, page)
    rows = read_rows(browser)
    assert set(rows[0].cells) == {"calls", "total", "self"}  # no scheduler events in this trace
    for row in rows[1:]:
        check_numbers(row, paths[row.path], on_off=False)
    # Unfold the heaviest top's heaviest path and check every row of it.
    top = max(shown(root), key=lambda kid: kid.weight)
    row_element(browser, (top.name,)).find_element("css selector", ".tv-fn").click()
    press(browser, "h")
    deep = [row for row in read_rows(browser) if row.depth > 2]
    assert deep
    for row in deep:
        check_numbers(row, paths[row.path], on_off=False)
    search = browser.find_element("id", "tree-search")
    search.send_keys("lock")  # many nested matches (spin locks inside mutexes...), about a sixth of the time
    count, weight = outermost_share(root, "lock")
    said = re.match(r"([\d,]+) matching call paths: ([\d.]+)%", browser.find_element("id", "tree-found").text)
    assert int(said[1].replace(",", "")) == count > 0
    digits = len(said[2].split(".")[1])
    assert float(said[2]) == pytest.approx(100 * weight / root.weight, abs=0.5 * 10 ** -digits + 1e-9)


def test_untimed_recording_rows_show_calls_and_calls_with_callees(tmp_path, browser):
    page = make(tmp_path, UNTIMED, "untimed.html")
    root, paths = json_tree(json.loads(make(tmp_path, UNTIMED, "untimed.json").read_text()))
    open_tree(browser, page)
    rows = read_rows(browser)
    assert set(rows[0].cells) == {"calls", "calls with callees"}
    assert number(rows[0].cells["calls with callees"])[0] == root.weight
    tops = [row.path for row in rows if row.depth == 1]  # heaviest first (ties in either order)
    assert sorted(tops) == sorted((kid.name,) for kid in shown(root))
    assert [paths[top].weight for top in tops] == sorted((kid.weight for kid in shown(root)), reverse=True)
    for row in rows[1:]:
        assert number(row.cells["calls"])[0] == paths[row.path].calls, row
        assert number(row.cells["calls with callees"])[0] == paths[row.path].weight, row
    browser.find_element("id", "tree-search").send_keys("lock")
    count, weight = outermost_share(root, "lock")
    said = re.match(r"([\d,]+) matching call paths: ([\d.]+)% of all calls", browser.find_element("id", "tree-found").text)
    assert said and int(said[1].replace(",", "")) == count > 0
    digits = len(said[2].split(".")[1])
    assert float(said[2]) == pytest.approx(100 * weight / root.weight, abs=0.5 * 10 ** -digits + 1e-9)


def test_compare_rows_show_the_baseline_of_the_same_call_path(demo, browser, tmp_path):
    _, graph = demo
    _, paths = json_tree(graph)
    _, base_paths = json_tree(json.loads(make(tmp_path, BASELINE, "base.json", "--symbol-map", str(SYMBOL_MAP)).read_text()))
    page = make(tmp_path, DEMO, "compare.html", "--symbol-map", str(SYMBOL_MAP), "--baseline", str(BASELINE))
    open_tree(browser, page)
    row_element(browser, ("tcp_sendmsg",)).find_element("css selector", ".tv-fn").click()
    press(browser, "h")
    rows = read_rows(browser)
    changed = 0
    for row in rows[1:]:
        now, base = paths[row.path], base_paths.get(row.path)
        for column, value, before in (("calls", now.calls, base.calls if base else 0), ("total", now.total, base.total if base else 0.0),
                                      ("self", now.self, base.self if base else 0.0)):
            said = re.fullmatch(r"baseline (.+), now (.+)", row.titles[column])
            assert said, row.titles
            shown_before, rounding = number(said[1])
            assert shown_before == pytest.approx(before, abs=rounding), (row.path, column, said[1], before)
            assert number(row.cells[column])[0] == pytest.approx(value, abs=number(row.cells[column])[1])
            change = re.search(r"\(([-+\u00b1])", row.cells[column])
            assert change, row.cells[column]
            if column == "calls" and value != before:
                assert change[1] == ("+" if value > before else "-")
                changed += 1
    assert changed > 0
    # Red for more, blue for less: the change's colour follows its sign.
    colours = browser.execute_script(
        "return [...document.querySelectorAll('#tree-box .tv-list .tv-v span')].map((s) => [s.textContent, getComputedStyle(s).color])")
    assert any(text.startswith("(+") for text, _ in colours) and any(text.startswith("(-") for text, _ in colours)
    for text, colour in colours:
        if text.startswith("(+"):
            assert colour == "rgb(178, 24, 43)", (text, colour)
        elif text.startswith("(-"):
            assert colour == "rgb(33, 102, 172)", (text, colour)


def test_another_views_selection_unfolds_its_heaviest_path(demo, browser):
    page, graph = demo
    _, paths = json_tree(graph)
    open_tree(browser, page)
    name = "__alloc_skb"
    chain = max((path for path in paths if path[-1] == name and paths[path].weight > 0), key=lambda path: paths[path].weight)
    assert len(chain) > 3
    browser.execute_script("KM.select(arguments[0], 'graph')", name)
    assert current(browser) == chain
    inside = browser.execute_script("""
        const box = document.getElementById('tree-box').getBoundingClientRect(), row = document.querySelector('#tree-box .tv-cur').getBoundingClientRect();
        return row.top >= box.top && row.bottom <= box.bottom""")
    assert inside


def test_the_biggest_recording_opens_and_the_page_says_what_it_merged(tmp_path, browser, monkeypatch):
    page = make(tmp_path, BIGGEST, "big.html")
    _, paths = json_tree(json.loads(make(tmp_path, BIGGEST, "big.json").read_text()))
    embedded = sum(1 for path in paths.values() if path.weight > 0)
    open_tree(browser, page)
    assert browser.find_element("id", "tree-status").text.startswith(f"{len(read_rows(browser)) - 1:,} of {embedded:,} call paths unfolded")
    assert "merged" not in browser.find_element("id", "notes").text
    search = browser.find_element("id", "tree-search")
    search.send_keys(".")  # every call path matches: only the first few hundred are unfolded
    assert browser.find_element("id", "tree-found").text.startswith(f"{embedded:,} matching call paths: 100.0% of all time")
    assert browser.get_log("browser") == []
    # Beyond the cap, the lighter call paths are merged into their callers and the page says so.
    km = load_module()
    monkeypatch.setattr(km, "EXPLORER_MAX_PATHS", 5000)
    capped = tmp_path / "capped.html"
    assert km.main(["visualize", "-i", str(BIGGEST), "-o", str(capped), "--chart", ""]) == 0
    open_tree(browser, capped)
    merged = embedded - 5000
    assert f"{merged:,} call paths lighter than the 5,000 heaviest are merged into their callers" in browser.find_element("id", "notes").text
    assert f"of 5,000 call paths unfolded ({merged:,} lighter call paths merged into their callers" in browser.find_element("id", "tree-status").text
    for row in read_rows(browser)[1:]:
        if row.depth == 1:  # the time of what was merged stays in its callers
            assert number(row.cells["total"])[0] == pytest.approx(paths[row.path].total, abs=number(row.cells["total"])[1])
    assert browser.get_log("browser") == []
