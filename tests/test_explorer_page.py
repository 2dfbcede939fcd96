"""The explorer page as a whole (visualize -o NAME.html), opened in chromium: offline, every input, every view.

The views' own tests (test_explorer_graph/tree/peek/flame) check their
numbers; this file checks what holds for the page whatever the view: it
fetches nothing, it opens on every kind of input the tool reads with no script
error in any tab, and a --callers view's page starts at that function.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import DATA, run_cli

DEMO_DAT = DATA / "record-demo-dat" / "kernel-magnifier.data.xz"
SYMBOL_MAP = DATA / "symbol-map-6.1.0-56-amd64.map.xz"
TABS = ("graph", "tree", "peek", "flame")
INPUTS = {  # one of each kind of input: record's trace.dat, record's text, ftrace text, function tracer, trace-cmd's trace.dat, trace-cmd report
    "record-dat": DEMO_DAT,
    "record-text": DATA / "record-demo" / "kernel-magnifier.data.xz",
    "fg-abstime-proc": DATA / "fg-abstime-proc" / "trace.txt.xz",
    "function-tracer": DATA / "function-tracer" / "trace.txt.xz",
    "trace-cmd-dat": DATA / "sched" / "tc-fg-sched-7.3.dat.xz",
    "trace-cmd-report": DATA / "trace-cmd" / "report-head.txt.xz",
}


def explorer(tmp_path: Path, trace: Path, *extra: str) -> Path:
    out = tmp_path / "explorer.html"
    result = run_cli("visualize", "-i", str(trace), "-o", str(out), "--chart", "", *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return out


def requested_urls(browser) -> list[str]:
    return [
        json.loads(entry["message"])["message"]["params"]["request"]["url"]
        for entry in browser.get_log("performance")
        if json.loads(entry["message"])["message"]["method"] == "Network.requestWillBeSent"
    ]


def visit_every_tab(browser, name: str) -> None:
    """Select a function and show each tab in turn, as a reader would."""
    browser.execute_script("KM.select(arguments[0], null)", name)
    for tab in TABS:
        browser.find_element("id", f"tab-{tab}").click()
        assert "active" in browser.find_element("id", f"view-{tab}").get_attribute("class")


def test_the_page_fetches_nothing_in_any_view(tmp_path, browser):
    page = explorer(tmp_path, DEMO_DAT, "--symbol-map", str(SYMBOL_MAP))
    text = page.read_text()
    assert "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'" in text
    assert not re.search(r"(src|href)=\"?(https?:)?//", text)  # the source links are made by the script, on click only
    assert text.count("</script>") == 2  # "</" inside the embedded JSON is escaped
    browser.get_log("performance")
    browser.get(page.as_uri())
    visit_every_tab(browser, "tcp_sendmsg")
    browser.find_element("id", "tab-graph").click()
    browser.find_element("id", "g-callees").click()  # a focus laid out in the page
    assert browser.find_elements("css selector", "#g-box g.km-box")
    requests = requested_urls(browser)
    assert requests and all(url.startswith("file://") for url in requests), requests
    assert browser.get_log("browser") == []


@pytest.mark.parametrize("kind", INPUTS)
def test_every_input_opens_in_every_view_without_a_script_error(tmp_path, browser, kind):
    trace = INPUTS[kind]
    page = explorer(tmp_path, trace)
    data = json.loads(re.search(r'id="data">(.*?)</script>', page.read_text(), re.S)[1])
    heaviest = max(range(1, len(data["fn"])), key=lambda index: data["w"][index])
    name = data["names"][data["fn"][heaviest]]
    browser.get(page.as_uri())
    visit_every_tab(browser, name)
    assert browser.find_element("id", "selname").text == name
    assert browser.get_log("browser") == []


def test_a_callers_page_holds_the_whole_recording_and_starts_at_its_function(tmp_path, browser):
    page = explorer(tmp_path, DEMO_DAT, "--callers", "kfree", "--symbol-map", str(SYMBOL_MAP))
    whole = json.loads(run_cli_json(tmp_path, DEMO_DAT))
    data = json.loads(re.search(r'id="data">(.*?)</script>', page.read_text(), re.S)[1])
    assert data["calls"][0] == sum(node["calls"] for node in whole["call_tree"])  # the forward tree, not the reversed one
    browser.get(page.as_uri())
    assert browser.find_element("id", "selname").text == "kfree"
    assert "--callers kfree" in browser.find_element("id", "notes").text
    assert browser.get_log("browser") == []


def run_cli_json(tmp_path: Path, trace: Path) -> str:
    out = tmp_path / "whole.json"
    result = run_cli("visualize", "-i", str(trace), "-o", str(out), "--chart", "", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return out.read_text()


def test_the_flame_graph_alone_is_still_written_as_flame_html(tmp_path):
    result = run_cli("visualize", "-i", str(DEMO_DAT), "-o", str(tmp_path / "f.flame.html"), "--chart", "", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "f.flame.html").read_text()
    assert "kernel-magnifier flame graph" in text and "tab-graph" not in text and "KM.addView" not in text
