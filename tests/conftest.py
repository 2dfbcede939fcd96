"""Helpers: run the CLI as a user would, and read the real recordings in tests/data."""

from __future__ import annotations

import importlib.util
import json
import lzma
import subprocess
import sys
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
