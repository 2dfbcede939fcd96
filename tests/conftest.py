"""Helpers: run the CLI as a user would, and read the real recordings in tests/data."""

from __future__ import annotations

import importlib.util
import json
import lzma
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "kernel-magnifier.py"
DATA = ROOT / "tests" / "data"


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )


def graph_json(tmp_path: Path, *inputs: Path | str, extra: tuple[str, ...] = ()) -> dict:
    """Run `visualize -o graph.json` on the inputs and return the JSON (asserting success)."""
    out = tmp_path / "graph.json"
    args = ["visualize", "-o", str(out), "--chart", ""]
    for path in inputs:
        args += ["-i", str(path)]
    result = run_cli(*args, *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text())


def proc_line_fields(line: str) -> tuple[str, int, str] | None:
    """(pid, depth, body text) of a function_graph line with funcgraph-proc, by plain splitting; None for others.

    The idle task (pid 0) runs on every CPU at once: it is keyed "0/CPU"."""
    if line.startswith("#") or line.count("|") < 3:
        return None
    columns = line.split("|")
    pid = columns[1].split(")")[1].strip().rsplit("-", 1)[1]
    pid = f"0/{columns[1].split(')')[0].strip()}" if pid == "0" else pid
    body = columns[-1][2:]
    return pid, (len(body) - len(body.lstrip(" "))) // 2, body.strip()


def read_lines(path: Path) -> list[str]:
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        return handle.read().split("\n")


def load_module():
    """Import kernel-magnifier.py (its name has a dash) for the few unit-level checks."""
    spec = importlib.util.spec_from_file_location("kernel_magnifier", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["kernel_magnifier"] = module
    spec.loader.exec_module(module)
    return module


def assert_one_line_error(result, fragment: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kernel-magnifier: error: ")
    assert fragment in lines[0], lines[0]


def nodes_by_name(graph: dict) -> dict[str, dict]:
    return {node["name"]: node for node in graph["nodes"]}


def edges_by_pair(graph: dict) -> dict[tuple[str, str], int]:
    return {(edge["caller"], edge["callee"]): edge["calls"] for edge in graph["edges"]}


@pytest.fixture
def km():
    return load_module()


RECORD_LINE = re.compile(r"^\s*.+-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+[\d.]+: (?P<event>\w+):\s*(?P<fields>.*)$")
DROPPED_LINE = re.compile(r"^CPU:\d+ \[(?:\d+ )?EVENTS DROPPED\]$")


def with_drops_hidden_by_leaves(report: str, raw: str) -> tuple[str, int]:
    """trace-cmd report's function_graph text with the "EVENTS DROPPED" lines its leaf look-ahead hides put back.

    trace-cmd prints a record's missed events before the record (show_data in
    tracecmd/trace-read.c); its fgraph entry handler (lib/trace-cmd/trace-ftrace.c,
    get_return_for_leaf) reads the next record ahead when it is the exit of the
    same pid, CPU and function, and prints the pair as one leaf line: that exit
    is never shown, nor the drop it carried. `report -R` (no plugins) shows every
    record and every drop in the same order, so the hidden drops are found there
    and put back after their leaf line. Returns the text and how many were put back.
    """
    hidden: dict[int, str] = {}  # the index of the shown record (the leaf) -> the drop line after it
    shown, previous, drop = -1, None, None
    for line in raw.split("\n"):
        if DROPPED_LINE.match(line):
            drop = line
            continue
        record = RECORD_LINE.match(line)
        if record is None:
            continue
        fields = dict(field.split("=", 1) for field in record.group("fields").split() if "=" in field)
        leaf_return = (
            previous is not None and previous[0] == "funcgraph_entry" and record.group("event") == "funcgraph_exit"
            and previous[1:] == (record.group("pid"), record.group("cpu"), fields.get("func"))
        )
        if leaf_return:
            if drop:
                hidden[shown] = drop
            previous = None  # consumed: the next record is not a candidate for this entry
        else:
            shown += 1
            previous = (record.group("event"), record.group("pid"), record.group("cpu"), fields.get("func"))
        drop = None
    lines, shown = [], -1
    for line in report.split("\n"):
        lines.append(line)
        if RECORD_LINE.match(line):
            shown += 1
            if shown in hidden:
                lines.append(hidden[shown])
    return "\n".join(lines), len(hidden)


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -r requirements-dev.txt)")
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("no browser: install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="km-chromium-")
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--window-size=1400,1000", f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.get("about:blank")  # the browser's own new-tab page has loaded: its requests are not the tests' pages'
    driver.get_log("performance")
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)
