"""The text parser's hot loop (TraceParser.feed_lines) changes nothing the per-event code would do.

feed_lines() applies the commonest function_graph and function tracer lines
itself, with caches and a memo of the last line's task. The reference here
sends every line the long way instead: a function_graph line's parts through
classify_graph_body()/graph_head() and then graph_event(), a function tracer
line through classify_function_body() and function_call(), every other line
through classify_slow(). Both must build the same call tree, node for node and
float for float, with the same counters, on every real text trace and on the
traces with damage the mutation test makes.
"""

from __future__ import annotations

import lzma
import random
import re
from pathlib import Path

import pytest
from conftest import DATA


def is_text_trace(path: Path) -> bool:
    if path.parent.name == "catalogue":
        return path.suffix == ".txt"
    return path.name.endswith((".txt.xz", ".data.xz")) and "symbol" not in path.name and path.parent != DATA


TRACES = sorted(str(path) for path in DATA.rglob("*") if path.is_file() and is_text_trace(path))


def text_of(trace: str) -> str:
    raw = Path(trace).read_bytes()
    return (lzma.decompress(raw) if trace.endswith(".xz") else raw).decode("utf-8", "replace")


def per_event_line(km, parser, line: str) -> None:
    """One line the long way: no shortcut, no cache of call-tree nodes."""
    parser.line_no += 1
    head, sep, body = line.rpartition("|  ")
    if sep and len(head) >= 14:
        parsed = parser.classify_graph_body(body)
        if parsed is not None:
            found = parser.graph_head(head)
            if found:
                context, duration, _irq = found
                if " |  " in head:
                    parser.note_stamps(head, context, parsed)  # a timestamped line: when its task's calls start and end
                parser.graph_event(parsed, context, duration)
                return
            if found is not False:
                parser.stats.note_unparsed(line, f"{parser.where}:{parser.line_no}")
                return
    elif not sep:
        close = line.find("] ")
        colon = line.find(": ", close) if close > 0 else -1
        if colon > 0 and line[colon - 1].isdigit():
            call = parser.classify_function_body(line[colon + 2 :])
            if call:
                parser.function_call(call)
                return
    parser.classify_slow(line.rstrip("\r"))


def model(km, lines: list[str], fast: bool):
    graph = km.CallGraph()
    parser = km.TraceParser(graph)
    parser.where = "trace"
    if fast:
        for start in range(0, len(lines), 5000):  # batches, as read_text_lines gives them
            parser.feed_lines(lines[start : start + 5000])
    else:
        parser.note_time_span(lines)  # what feed_lines notes per batch, from the lines at each end
        for line in lines:
            per_event_line(km, parser, line)
        parser.stats.lines = parser.line_no
        parser.flush_counts()
    parser.finish()
    tree = graph.tree
    return {
        "calls": tree.calls, "total": tree.total_us, "self": tree.self_us, "children": tree.children,
        "stats": vars(graph.stats), "modules": graph.modules,
    }


@pytest.mark.parametrize("trace", TRACES, ids=lambda trace: f"{Path(trace).parent.name}/{Path(trace).name}")
def test_hot_loop_builds_what_the_per_event_code_builds(km, trace):
    lines = text_of(trace).split("\n")
    assert model(km, lines, fast=True) == model(km, lines, fast=False)


def with_irq_flags(rng: random.Random, lines: list[str]) -> list[str]:
    """Real funcgraph-proc lines given the latency format's flags column, its hardirq/softirq flag changing in runs."""
    flag = "."
    flagged = []
    for line in lines:
        if rng.random() < 0.05:
            flag = rng.choice(".hsH")
        flagged.append(re.sub(r"(-\d+ +\|)", rf"\1  d.{flag}1. |", line, count=1))
    return flagged


def test_hot_loop_on_damaged_lines(km):
    """Real lines dropped, cut, repeated, their depth, CPU or irq flag changed, irq arrows put in: every path of the loop."""
    rng = random.Random(7)
    lines = text_of(str(DATA / "fg-default/trace.txt.xz")).split("\n")[:6000]
    lines += text_of(str(DATA / "fg-abstime-proc/trace.txt.xz")).split("\n")[:6000]
    lines += with_irq_flags(rng, text_of(str(DATA / "fg-abstime-proc/trace.txt.xz")).split("\n")[6000:12000])
    damaged = []
    for line in lines:
        roll = rng.random()
        if roll < 0.02:
            continue  # a lost line: exits without entries, entries without exits
        if roll < 0.03 and line.rstrip().endswith("{"):
            cpu = re.search(r"(\d+)\) ", line)
            damaged.append(f" {cpu.group(1) if cpu else 0})   ==========> |")  # the next call is an interrupt's
        elif roll < 0.04:
            line = line.replace("|  ", "|    ", 1) if rng.random() < 0.5 else line.replace("|    ", "|  ", 1)  # one level off
        elif roll < 0.05:
            line = line.replace(" 0) ", " 1) ", 1) if " 0) " in line else line.replace(" 1) ", " 0) ", 1)  # another CPU
        elif roll < 0.06:
            line = line[: rng.randrange(len(line) + 1)]
        elif roll < 0.07:
            damaged.append(line)
        damaged.append(line)
    assert model(km, damaged, fast=True) == model(km, damaged, fast=False)


def test_hot_loop_on_damaged_function_tracer_lines(km):
    """Function tracer lines with a "|  " put in (never a function line), cut or merged with graph lines between."""
    rng = random.Random(11)
    lines = text_of(str(DATA / "function-tracer/trace.txt.xz")).split("\n")[:8000]
    graph = text_of(str(DATA / "fg-default/trace.txt.xz")).split("\n")[:8000]
    damaged = []
    for line in lines:
        roll = rng.random()
        if roll < 0.03:
            line = line.replace("-", "-comm-of-a-long-name|  -", 1)  # too long a task name: not understood
        elif roll < 0.05:
            line = line.replace(" <-", " |  <-", 1)
        elif roll < 0.06:
            line = line[: rng.randrange(len(line) + 1)]
        elif roll < 0.08:
            damaged.append(rng.choice(graph))
        damaged.append(line)
    assert model(km, damaged, fast=True) == model(km, damaged, fast=False)
