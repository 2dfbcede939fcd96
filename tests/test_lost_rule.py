"""When is a repeated "CPU:N [LOST M EVENTS]" line one loss, and do the LOST lines add up to the kernel's counters?

tests/data/lost-rule: trace_pipe recordings made by `record --buffer-size 64` under load on both CPUs of the
QEMU guest (tests/vm/record-lost-rule.sh) on Debian's 6.1.0-56 (6.1-*) and 7.3.4 (7.3-*) kernels, each with the
kernel's per-CPU counters in its footer.

From the kernel's code (kernel/trace/trace.c, trace_functions_graph.c; see the README's "lost events"): a LOST
line is printed again only when print_graph_function_flags() re-prints a function_graph entry saved by a read()
that ended on it (data->failed) and returns NO_CONSUME: the event after it, with its lost count, comes again.
So a repeat has exactly one entry or leaf line between the two LOST lines (any CPU; a context-switch block or
an irq arrow may come with it) and no other event. The expected numbers below come from a plain reading of
the lines and of the footer, not from the tool.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from conftest import DATA, graph_json, read_lines

LOST_RULE = DATA / "lost-rule"
LOST = re.compile(r"^CPU:(\d+) \[LOST (\d+) EVENTS\]$")
FOOTER = re.compile(r"^# cpu(\d+)-stats: (.*)$")


def is_graph_call(line: str) -> bool:
    """An entry (`f() {`) or leaf (`f();`) line of function_graph: what the kernel re-prints."""
    body = line.rsplit("|  ", 1)[-1].strip() if "|  " in line else ""
    return bool(body) and not body.startswith(("}", "/*")) and (body.endswith(("{", ";")) or re.search(r"(\{|;) /\*.*\*/$", body) is not None)


def is_between_events(line: str) -> bool:
    """Lines that are no event: blank, a context-switch block, an irq arrow."""
    text = line.strip()
    return not text or text.startswith("-----") or ("=>" in text and "|" not in text) or "==========>" in text or "<==========" in text


def plain_reading(lines: list[str]) -> tuple[Counter, Counter, int]:
    """Per CPU: every LOST line added up, and the counts of the lines that repeat the one before by the rule."""
    every, repeated, repeats = Counter(), Counter(), 0
    last: dict[str, tuple[int, int]] = {}  # cpu -> (count, index of the line)
    for index, line in enumerate(lines):
        match = LOST.match(line)
        if not match:
            continue
        cpu, count = match.group(1), int(match.group(2))
        every[cpu] += count
        previous = last.pop(cpu, None)
        if previous and previous[0] == count:
            between = lines[previous[1] + 1 : index]
            calls = [line for line in between if is_graph_call(line)]
            if len(calls) == 1 and all(line in calls or is_between_events(line) for line in between):
                repeated[cpu] += count
                repeats += 1
                continue
        last[cpu] = (count, index)
    return every, repeated, repeats


def kernel_counters(lines: list[str]) -> dict[str, dict[str, int]]:
    return {m.group(1): {k: int(v) for k, v in re.findall(r"([a-z-]+)=(\d+)", m.group(2))} for line in lines if (m := FOOTER.match(line))}


def lost_lines_as_the_tool_counts_them(tmp_path: Path, lines: list[str]) -> tuple[dict[str, int], int]:
    """visualize on the recording without its footer counters: the lost events then come from the LOST lines alone."""
    trace = tmp_path / "no-footer.data"
    trace.write_text("\n".join(line for line in lines if not FOOTER.match(line)) + "\n")
    stats = graph_json(tmp_path, trace)["stats"]
    return stats["lost_events_per_cpu"], stats["duplicate_lost_lines"]


RECORDINGS = sorted(path.name for path in LOST_RULE.glob("*.data.xz"))


def test_the_recordings_are_there():
    assert len(RECORDINGS) >= 4


@pytest.mark.parametrize("name", RECORDINGS)
def test_lost_lines_under_the_rule_never_exceed_the_kernels_overrun(tmp_path, name):
    """Per CPU, the LOST lines counted once each (repeats removed) are at most the kernel's overrun counter.

    Not always equal: a LOST line printed before a function_graph entry that then did not fit in the read's page
    of text is cut off with it, while the entry's look-ahead (get_return_for_leaf -> ring_buffer_consume) has
    already cleared the count; the function tracer has no look-ahead and its LOST lines add up exactly."""
    lines = read_lines(LOST_RULE / name)
    counters = kernel_counters(lines)
    every, repeated, repeats = plain_reading(lines)
    tool, duplicates = lost_lines_as_the_tool_counts_them(tmp_path, lines)
    assert duplicates == repeats
    assert counters and all(c["dropped-events"] == 0 for c in counters.values())  # overwrite mode: losses are overruns
    for cpu, kernel in counters.items():
        assert tool.get(cpu, 0) == every[cpu] - repeated[cpu] <= kernel["overrun"], cpu
        if "-function-" in name:
            assert tool.get(cpu, 0) == kernel["overrun"], cpu


def test_a_repeat_is_needed_to_stay_within_the_kernels_count():
    """Without removing the repeats the LOST lines would claim more than the kernel overwrote: the repeats are real.

    fg-graphfunc (6.1, set_graph_function): CPU 1's "[LOST 4899 EVENTS]" comes twice, 2 lines apart, with one
    CPU-1 entry between (the re-printed entry, older than the loss). fg-default (6.1): CPU 0's 9793, 6 lines
    apart, with a context-switch block and one CPU-1 entry between. 7.3-graph-proc-1: CPU 1's 7561, 6 lines
    apart, one CPU-0 entry printed under the next CPU-1 event's pid; without it 39,612 > 32,051, with it equal."""
    over = []
    for trace in (DATA / "fg-graphfunc" / "trace.txt.xz", DATA / "fg-default" / "trace.txt.xz"):
        every, repeated, repeats = plain_reading(read_lines(trace))
        assert repeats == 1
        cpu = next(iter(repeated))
        overrun = int(re.search(r"^overrun: (\d+)", (trace.parent / f"stats-cpu{cpu}").read_text(), re.M).group(1))
        assert every[cpu] > overrun >= every[cpu] - repeated[cpu]
        over.append((trace.parent.name, cpu))
    for name in RECORDINGS:
        lines = read_lines(LOST_RULE / name)
        every, repeated, _ = plain_reading(lines)
        for cpu, kernel in kernel_counters(lines).items():
            if every[cpu] > kernel["overrun"]:
                assert every[cpu] - repeated[cpu] <= kernel["overrun"]
                over.append((name, cpu))
    assert ("7.3-graph-proc-1.data.xz", "1") in over and len(over) >= 3


def test_equal_counts_with_events_of_their_own_between_are_two_losses(tmp_path):
    """A minimal reproducer from real lines: a lost page is often as big as the one before, so an equal count
    12 lines later, with the CPU's own exits and entries between, is a second loss (the old 32-line rule
    merged them)."""
    lines = read_lines(DATA / "fg-default" / "trace.txt.xz")
    body = [line for line in lines if re.match(r"^ 1\) ", line) and "=>" not in line][:12]
    trace = tmp_path / "two-losses.txt"
    trace.write_text("\n".join(["CPU:1 [LOST 273 EVENTS]", *body, "CPU:1 [LOST 273 EVENTS]", *body[:3]]) + "\n")
    stats = graph_json(tmp_path, trace)["stats"]
    assert stats["lost_events_per_cpu"] == {"1": 2 * 273}
    assert stats["duplicate_lost_lines"] == 0


def test_an_exit_between_equal_counts_makes_them_two_losses(tmp_path):
    """The kernel re-prints an entry, never an exit: `}` between two equal LOST lines means two losses."""
    trace = tmp_path / "exit-between.txt"
    trace.write_text(
        "\n".join(["CPU:0 [LOST 957 EVENTS]", " 0)   4.338 us    |              } /* vma_dup_policy */", "CPU:0 [LOST 957 EVENTS]",
                   " 0)               |              anon_vma_clone() {"]) + "\n"
    )
    assert graph_json(tmp_path, trace)["stats"]["lost_events_per_cpu"] == {"0": 2 * 957}
