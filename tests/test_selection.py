"""What a first hour trips over: chart labels, empty task selections, repeated inputs, chart file names, --latency alone and globs."""

from __future__ import annotations

import contextlib
import io
import re
from collections import Counter

from conftest import DATA, load_module, read_lines

PROC_TRACE = DATA / "fg-abstime-proc" / "trace.txt.xz"  # funcgraph-abstime, -proc, -tail


def graph_fields(line: str) -> tuple[str, str, str, str] | None:
    """(cpu, task pid, duration field, body) of a funcgraph-abstime/-proc line, by plain splitting."""
    if line.startswith("#") or line.count("|") < 3 or ")" not in line.split("|")[1]:
        return None
    _, cpu_task, duration, body = line.split("|", 3)
    cpu, task = cpu_task.split(")")
    return cpu.strip(), task.strip().rsplit("-", 1)[1], duration, body[2:]


def drawn_charts(argv: list[str]) -> tuple[int, str, list]:
    """Run visualize in this process and keep each chart's figure instead of only its PNG: (exit code, stderr, figures)."""
    km = load_module()
    figures = []
    original = km.save_png

    def keep(figure, output: str) -> None:
        figures.append((output, [label.get_text() for label in figure.axes[0].get_yticklabels()], [bar.get_width() for bar in figure.axes[0].patches]))
        original(figure, output)

    km.save_png = keep
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = km.main(argv)
    return code, err.getvalue(), figures


def test_cpu_chart_labels_its_bars_with_the_cpus(tmp_path):
    timed_lines = Counter(fields[0] for line in read_lines(PROC_TRACE) if (fields := graph_fields(line)) and re.search(r"[\d.]+ us", fields[2]))
    chart = tmp_path / "cpus.png"
    code, stderr, figures = drawn_charts(["visualize", "-i", str(PROC_TRACE), "-o", str(tmp_path / "g.json"), "--chart", str(chart), "--chart-by", "cpu"])
    assert code == 0, stderr
    (output, labels, widths), = figures
    assert output == str(chart) and chart.read_bytes().startswith(b"\x89PNG")
    assert dict(zip(labels, widths)) == {f"CPU{cpu}": count for cpu, count in timed_lines.items()}
