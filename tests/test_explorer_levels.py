"""The explorer page between levels (issue 24, point 3), in a real browser (chromium via Selenium): on a --group-by
page a group's selection bar lists its functions, on a function page a function's names its source directory.

Expected members come from the command line's own group-level JSON checked elsewhere against the function level
(tests/test_group_by.py); expected directories from the symbol map file read by that test's helpers.
"""

from __future__ import annotations

from pathlib import Path

from conftest import DATA, graph_json, run_cli
from test_group_by import expected_group, read_map

DEMO = DATA / "record-demo-dat" / "kernel-magnifier.data.xz"
MAP = DATA / "symbol-map-6.1.0-56-amd64.map.xz"


def page(tmp: Path, name: str, *extra: str) -> Path:
    out = tmp / name
    result = run_cli("visualize", "-i", str(DEMO), "--symbol-map", str(MAP), "-o", str(out), "--chart", "", *extra, cwd=tmp)
    assert result.returncode == 0, result.stderr
    return out


def selection_bar(browser, html: Path, name: str) -> str:
    browser.get(html.as_uri())
    browser.execute_script("KM.select(arguments[0], null)", name)
    assert browser.find_element("id", "selname").text == name
    return browser.find_element("id", "selsource").text


def test_a_group_lists_its_functions(tmp_path: Path, browser) -> None:
    grouped = graph_json(tmp_path, DEMO, extra=("--symbol-map", str(MAP), "--group-by", "dir"))
    html = page(tmp_path, "groups.html", "--group-by", "dir")
    for node in grouped["nodes"][:3]:
        members = node["members"]
        text = selection_bar(browser, html, node["name"])
        shown = ", ".join(f"{member['name']} ({member['calls']:,})" for member in members[:12])
        assert text.startswith(f"functions: {shown}"), text
        assert text.endswith(f"+{len(members) - 12:,} more") if len(members) > 12 else "more" not in text


def test_a_function_names_its_group(tmp_path: Path, browser) -> None:
    html = page(tmp_path, "functions.html")
    mapping = read_map(MAP)
    for name in ("tcp_sendmsg", "schedule", "__alloc_skb", "_raw_spin_lock_bh"):
        text = selection_bar(browser, html, name)
        assert f"in {expected_group(name, None, mapping)}" in text.split(" \u00b7 "), text  # beside source, inlines
