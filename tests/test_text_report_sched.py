"""The text report's on-CPU / asleep split (issue 19): the total-time table, the call tree, the table by time asleep.

Expected numbers come from test_sched_times' plain reading of the raw text (each task's calls by indentation and
timestamps, its switched-out intervals from the `/* sched_switch: ... */` lines): a function's time asleep is the
overlap of its outermost calls with its task's switched-out intervals; a call path's, the switched-out time of the
calls open on it (in line order) at a switch-out. The time on a CPU is the rest of the duration (the duration
column: the kernel measures it with another clock than the timestamps', 1 ms apart on some calls here).
A call that returns while its task is switched out (__traceiter_sched_switch: the event comes a little before the task
leaves) has the part of the sleep before it returned, which the timestamps cannot say here: they stall at times (many
lines with one stamp, the exit's as the entry's), so such a call's share is only known to lie within its duration.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
from conftest import run_cli
from test_sched_times import ABSTIME, DEFAULT, RESOLUTION_US, Call, RawTrace, off_cpu_expected
from test_sched_times import abstime_raw as abstime_raw  # the fixture, shared
from test_text_report import microseconds, report, tree_rows

NUMBER = re.compile(r"^[\d,]+(\.\d+)?$")
UNIT_US = {"us": 1.0, "ms": 1e3, "s": 1e6}


def cell_values(cells: list[str]) -> list[float | None]:
    """A row's printed numbers, times in us ('477.89 ms' is two cells), shares in %, '-' as None."""
    values: list[float | None] = []
    index = 0
    while index < len(cells):
        cell = cells[index]
        if cell == "-":
            values.append(None)
        elif cell.endswith("%"):
            values.append(float(cell[:-1]))
        elif index + 1 < len(cells) and cells[index + 1] in UNIT_US:
            values.append(microseconds(cell, cells[index + 1]))
            index += 1
        else:
            assert NUMBER.match(cell), cells
            values.append(float(cell.replace(",", "")))
        index += 1
    return values


def rounding(cells: list[str]) -> list[float]:
    """Half a unit of the last printed digit of each time in `cells` (us): how far the printed value may be from the exact one."""
    slack = []
    for index, cell in enumerate(cells[:-1]):
        if cells[index + 1] in UNIT_US:
            decimals = len(cell.partition(".")[2])
            slack.append(0.5 * 10**-decimals * UNIT_US[cells[index + 1]])
    return slack


def table(text: str, title: str) -> tuple[list[str], dict[str, list[str]]]:
    """(header, function -> cells) of the table whose title line has `title` in it ("on CPU" one header cell)."""
    lines = text.split("\n")
    start = next(index for index, line in enumerate(lines) if line.startswith("Top ") and title in line)
    header = lines[start + 1].replace("on CPU", "on_CPU").split()
    rows = {}
    for line in lines[start + 2 :]:
        if not line:
            break
        cells = line.split()
        rows[cells[-1]] = cells[:-1]
    return header, rows


def per_path(raw: RawTrace) -> tuple[dict, dict, dict, dict]:
    """Calls, total (us), time asleep (us) and how far that may be off (us, unsure()) of every call path, from the raw reading."""
    calls: dict[tuple[str, ...], int] = defaultdict(int)
    total: dict[tuple[str, ...], float] = defaultdict(float)
    asleep: dict[tuple[str, ...], float] = defaultdict(float)
    slack: dict[tuple[str, ...], float] = defaultdict(float)
    for call in raw.calls:
        calls[call.path] += 1
        total[call.path] += spent(call)
        asleep[call.path] += call.asleep
        slack[call.path] += unsure(raw, call)
    return calls, total, asleep, slack


def unsure(raw: RawTrace, call: Call) -> float:
    """How far a call's numbers may be from the raw reading's: its time when it returned while switched out, or was still open at
    the end of the trace (the tool times it to its task's last event, test_open_calls checks that; here: to its task's last line)."""
    returned_asleep = call.returned_asleep or any(went <= call.end < back for went, back, _ in raw.out.get(call.task, []))
    return spent(call) if returned_asleep or call.duration is None else 0.0


def spent(call: Call) -> float:
    """A call's time: its duration, or for a call still open at the end of the trace its span to its task's last line."""
    return call.duration if call.duration is not None else call.end - call.start


def function_total(raw: RawTrace, function: str) -> float:
    return sum(spent(call) for call in raw.calls if call.name == function and call.outermost)


@pytest.fixture(scope="module")
def abstime_report(tmp_path_factory) -> str:
    return report(tmp_path_factory.mktemp("report"), ABSTIME, "--chart-top", "40")


@pytest.mark.parametrize("function", ["tcp_recvmsg", "sk_wait_data", "tcp_sendmsg"])
def test_total_table_splits_a_function_into_on_cpu_and_asleep_as_the_raw_text_says(abstime_report, abstime_raw, function):
    header, rows = table(abstime_report, " functions by total time")
    assert header == ["calls", "total", "total%", "on_CPU", "asleep", "self", "self%", "function"]
    calls, total, _, on, asleep, *_ = cell_values(rows[function])
    expected_off = off_cpu_expected(abstime_raw, function)
    # the timestamps are printed to the microsecond: each sleep's two ends, each call's two ends
    assert asleep == pytest.approx(expected_off, abs=0.01 + 0.006 * expected_off)
    expected_on = function_total(abstime_raw, function) - expected_off
    assert on == pytest.approx(expected_on, abs=RESOLUTION_US * calls + 0.006 * expected_on)
    assert on + asleep == pytest.approx(total, abs=sum(rounding(rows[function])))


def test_the_asleep_table_ranks_the_functions_that_slept_with_their_sleeps(abstime_report, abstime_raw):
    title = next(line for line in abstime_report.split("\n") if " functions by time asleep " in line)
    header, rows = table(abstime_report, " functions by time asleep ")
    assert header == ["sleeps", "asleep", "asleep%", "on_CPU", "total", "states", "function"]
    switched = {name for name in abstime_raw.switch_outs_in}  # functions open at some switch-out
    assert set(rows) == switched and f"({len(switched)} were switched out while open)" in title
    for function, cells in rows.items():
        sleeps, off, _, on, total = cell_values(cells[:-1])
        assert sleeps == abstime_raw.switch_outs_in[function], function
        slack = sum(unsure(abstime_raw, call) for call in abstime_raw.calls if call.name == function and call.outermost)
        assert off == pytest.approx(off_cpu_expected(abstime_raw, function), abs=0.01 + 0.006 * off + slack), function
        assert on + off == pytest.approx(total, abs=sum(rounding(cells[:-1])))
    offs = [cell_values(cells[:-1])[1] for cells in rows.values()]
    assert offs == sorted(offs, reverse=True)
    assert rows["sk_wait_data"][-1] == "S" and rows["tcp_sendmsg"][-1] == "R"  # the receiver waits for data, the sender is preempted once


def test_call_tree_rows_split_into_on_cpu_and_asleep_and_left_out_lines_add_up(abstime_report, abstime_raw):
    """Every row below tcp_recvmsg and tcp_sendmsg: on CPU and asleep as the raw text's calls on that path; '...' rows their sums."""
    calls, total, asleep, slack = per_path(abstime_raw)
    rows = tree_rows(abstime_report)
    assert re.search(r"^calls +total +on CPU +asleep +self +function$", abstime_report, re.M)
    shown = {path for path, _, more in rows if not more}
    checked = left_out = exact = 0
    for path, cells, more in rows:
        count, row_total, on, off, _ = cell_values(cells)
        assert (off or 0.0) + on == pytest.approx(row_total, abs=sum(rounding(cells))), path  # on + asleep = total, every row
        if path[0] not in ("tcp_recvmsg", "tcp_sendmsg"):
            continue
        paths = [other for other in calls if other[:-1] == path[:-1] and other not in shown] if more else [path]
        expected_off = sum(asleep[other] for other in paths)
        expected_on = sum(total[other] - asleep[other] for other in paths)
        expected_calls = sum(calls[other] for other in paths)
        unsure_us = sum(slack[other] for other in paths)
        assert count == expected_calls, path
        if off is None:
            assert expected_off == 0.0, path
        else:
            assert off == pytest.approx(expected_off, abs=0.01 + 0.006 * expected_off + unsure_us), path
        assert on == pytest.approx(expected_on, abs=RESOLUTION_US * expected_calls + 0.006 * expected_on + unsure_us), path
        exact += unsure_us == 0.0
        checked += 1
        left_out += more
    assert checked > 40 and left_out > 10 and exact > 60  # the others hold a call still open at the end or returning asleep
    assert ("tcp_recvmsg", "tcp_recvmsg_locked", "sk_wait_data") in shown


def test_on_cpu_and_asleep_of_a_root_view(tmp_path, abstime_raw):
    """--root sk_wait_data: its line and its callees' lines keep the split of their paths in the whole trace."""
    calls, total, asleep, slack = per_path(abstime_raw)
    text = report(tmp_path, ABSTIME, "--root", "sk_wait_data", "--depth", "2", "--node-thres", "0", "--max-nodes", "0")
    rows = tree_rows(text)
    below: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    for path, count in calls.items():
        if "sk_wait_data" in path:
            tail = path[path.index("sk_wait_data") :]
            if len(tail) <= 3:
                below[tail][0] += count
                below[tail][1] += total[path] - asleep[path]
                below[tail][2] += asleep[path]
                below[tail][3] += slack[path]
    assert {path for path, _, _ in rows} == set(below)
    for path, cells, _ in rows:
        count, _, on, off, _ = cell_values(cells)
        expected_calls, expected_on, expected_off, unsure_us = below[path]
        assert count == expected_calls, path
        assert (off or 0.0) == pytest.approx(expected_off, abs=0.01 + 0.006 * expected_off + unsure_us), path
        assert on == pytest.approx(expected_on, abs=RESOLUTION_US * expected_calls + 0.006 * expected_on + unsure_us), path


def test_without_timestamps_the_report_has_no_split(tmp_path):
    """fg-sched-default has sched_switch but no timestamps: no on CPU / asleep columns, no asleep table."""
    text = report(tmp_path, DEFAULT)
    assert "on CPU" not in text and "by time asleep" not in text
    assert re.search(r"^calls +total +self +function$", text, re.M)


def test_wakers_report_says_sleeps_and_time_waited_and_the_recordings_sleeps(tmp_path):
    result = run_cli("visualize", "-i", str(ABSTIME), "--wakers", "tcp_recvmsg", "-o", "-", "--chart", "", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "no scheduler events" not in text
    assert re.search(r"^sleeps: 169, ", text, re.M)
    assert re.search(r"^sleeps +waited +waited% +function$", text, re.M)
    assert re.search(r"^sleeps +waited +function$", text, re.M)
    assert "on CPU" not in text  # a waker's numbers are waits, not its own time
    untimed = run_cli("visualize", "-i", str(DEFAULT), "--wakers", "tcp_recvmsg", "-o", "-", "--chart", "", cwd=tmp_path)
    assert untimed.returncode == 0, untimed.stderr
    assert "by its sleeps woken through them (the time waited is unknown)" in untimed.stdout
    assert "wakers by sleeps" in untimed.stdout and "no scheduler events" not in untimed.stdout
