"""What a first hour trips over: chart labels, empty task selections, repeated inputs, chart file names, --latency alone and globs."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections import Counter

import numpy
from conftest import DATA, assert_one_line_error, load_module, read_lines, run_cli

PROC_TRACE = DATA / "fg-abstime-proc" / "trace.txt.xz"  # funcgraph-abstime, -proc, -tail


def graph_fields(line: str) -> tuple[str, str, str, str] | None:
    """(cpu, task pid, duration field, body) of a funcgraph-abstime/-proc line, by plain splitting."""
    if line.startswith("#") or line.count("|") < 3 or ")" not in line.split("|")[1]:
        return None
    _, cpu_task, duration, body = line.split("|", 3)
    cpu, task = cpu_task.split(")")
    return cpu.strip(), task.strip().rsplit("-", 1)[1], duration, body[2:]


def drawn_charts(argv: list[str]) -> tuple[int, str, str, list]:
    """Run visualize in this process and keep what each chart shows besides its PNG: (exit code, stdout, stderr, charts)."""
    km = load_module()
    figures = []
    original = km.save_png

    def keep(figure, output: str) -> None:
        axes = figure.axes[0]
        legend = [text.get_text() for text in axes.get_legend().get_texts()] if axes.get_legend() else []
        figures.append((output, [label.get_text() for label in axes.get_yticklabels()], [bar.get_width() for bar in axes.patches if hasattr(bar, "get_width")], legend))
        original(figure, output)

    km.save_png = keep
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = km.main(argv)
    return code, out.getvalue(), err.getvalue(), figures


def test_cpu_chart_labels_its_bars_with_the_cpus(tmp_path):
    timed_lines = Counter(fields[0] for line in read_lines(PROC_TRACE) if (fields := graph_fields(line)) and re.search(r"[\d.]+ us", fields[2]))
    chart = tmp_path / "cpus.png"
    code, _, stderr, figures = drawn_charts(["visualize", "-i", str(PROC_TRACE), "-o", str(tmp_path / "g.json"), "--chart", str(chart), "--chart-by", "cpu"])
    assert code == 0, stderr
    (output, labels, widths, _), = figures
    assert output == str(chart) and chart.read_bytes().startswith(b"\x89PNG")
    assert dict(zip(labels, widths)) == {f"CPU{cpu}": count for cpu, count in timed_lines.items()}


def test_the_same_input_twice_is_refused_by_any_name(tmp_path):
    trace = tmp_path / "trace.txt.xz"
    trace.write_bytes(PROC_TRACE.read_bytes())
    (tmp_path / "link.txt.xz").symlink_to(trace)
    for second in ("trace.txt.xz", "./trace.txt.xz", str(trace), "link.txt.xz"):
        result = run_cli("visualize", "-i", "trace.txt.xz", "-i", second, "-o", "g.json", "--chart", "", cwd=tmp_path)
        assert_one_line_error(result, f"-i trace.txt.xz and -i {second} are the same file")
        assert not (tmp_path / "g.json").exists()
    result = run_cli("visualize", "-i", str(PROC_TRACE), "--baseline", "trace.txt.xz", "--baseline", "link.txt.xz", "-o", "g.json", "--chart", "", cwd=tmp_path)
    assert_one_line_error(result, "--baseline trace.txt.xz and --baseline link.txt.xz are the same file")
    # a copy is another recording as far as anyone can tell: aggregated, every call counted twice
    (tmp_path / "copy.txt.xz").write_bytes(PROC_TRACE.read_bytes())
    single, double = tmp_path / "one.json", tmp_path / "two.json"
    assert run_cli("visualize", "-i", "trace.txt.xz", "-o", str(single), "--chart", "", cwd=tmp_path).returncode == 0
    assert run_cli("visualize", "-i", "trace.txt.xz", "-i", "copy.txt.xz", "-o", str(double), "--chart", "", cwd=tmp_path).returncode == 0
    calls = {node["name"]: node["calls"] for node in json.loads(single.read_text())["nodes"]}
    assert {node["name"]: node["calls"] for node in json.loads(double.read_text())["nodes"]} == {name: 2 * count for name, count in calls.items()}


def test_charts_must_be_named_png_before_any_parsing(tmp_path):
    for option, name, extra in (("--chart", "c.txt", ()), ("--chart", "chart", ()), ("--latency-chart", "l.txt", ("--latency", "tcp_sendmsg"))):
        result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", "g.json", option, name, *extra, cwd=tmp_path)
        assert_one_line_error(result, f"{option} {name}: the chart is a PNG image")
        assert "parsing" not in result.stdout
        assert sorted(os.listdir(tmp_path)) == []
    result = run_cli("visualize", "-i", str(PROC_TRACE), "-o", "g.json", "--chart", "C.PNG", "--latency", "tcp_sendmsg", "--latency-chart", "l.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "C.PNG").read_bytes().startswith(b"\x89PNG") and (tmp_path / "l.png").read_bytes().startswith(b"\x89PNG")


def proc_tasks(lines: list[str]) -> tuple[set[str], set[str]]:
    """The CPUs and the 'pid name' of every task of a funcgraph-proc trace, by plain splitting."""
    cpus, tasks = set(), set()
    for line in lines:
        if line.startswith("#") or line.count("|") < 3 or ")" not in line.split("|")[1]:
            continue
        cpu, task = line.split("|")[1].split(")")
        name, pid = task.strip().rsplit("-", 1)
        cpus.add(cpu.strip())
        tasks.add(f"{pid} {name}")
    return cpus, tasks


def assert_lists_the_trace(message: str, cpus: set[str], tasks: set[str]) -> None:
    listed = re.search(r"which has CPUs? ([\d, ]+); ([\d,]+) tasks \(pid name\): (.*)$", message)
    assert listed, message
    assert set(listed.group(1).split(", ")) == cpus
    assert int(listed.group(2)) == len(tasks)
    assert set(listed.group(3).split(", ")) == tasks


def test_an_empty_selection_says_so_and_lists_the_tasks_and_cpus_of_a_text_trace(tmp_path):
    cpus, tasks = proc_tasks(read_lines(PROC_TRACE))
    assert len(tasks) < 20 and "178 echo-cl" in tasks
    absent_cpu = str(max(int(cpu) for cpu in cpus) + 1)
    outputs = (("-o", "g.json", "--chart", ""), ("-o", "t.trace.json", "--chart", ""), ("-o", "g.json", "--chart", "c.png", "--chart-by", "cpu"),
               ("-o", "g.json", "--chart", "", "--latency", "tcp_sendmsg"))
    for selection, output in zip((("--pid", "99999"), ("--comm", "nosuch"), ("--cpu", absent_cpu), ("--pid", "99999,99998")), outputs):
        result = run_cli("visualize", "-i", str(PROC_TRACE), *selection, *output, cwd=tmp_path)
        assert_one_line_error(result, f"{' '.join(selection)} selects no call in {PROC_TRACE}")
        assert_lists_the_trace(result.stderr.strip(), cpus, tasks)
        assert os.listdir(tmp_path) == []


def test_an_empty_selection_of_a_trace_dat_lists_what_trace_cmd_report_shows(tmp_path):
    import lzma

    from test_tracedat import report_text

    trace = tmp_path / "trace.dat"
    trace.write_bytes(lzma.decompress((DATA / "trace-cmd" / "trace-v6.dat.xz").read_bytes()))
    report = report_text(tmp_path, trace).read_text().splitlines()
    events = [match for line in report if (match := re.match(r"^\s*(.+)-(\d+) +\[(\d+)\] .*funcgraph_(?:entry|exit):", line))]
    tasks = {f"{match.group(2)} {match.group(1).strip()}" for match in events}
    cpus = {str(int(match.group(3))) for match in events}
    result = run_cli("visualize", "-i", str(trace), "--pid", "99999", "-o", str(tmp_path / "g.json"), "--chart", "")
    assert_one_line_error(result, f"--pid 99999 selects no call in {trace}")
    assert_lists_the_trace(result.stderr.strip(), cpus, tasks)


def test_a_selection_empty_in_one_input_of_two_is_a_warning_and_children_select_in_a_trace_dat_too(tmp_path, monkeypatch):
    import lzma

    from test_tracedat import report_text

    trace = tmp_path / "trace.dat"
    trace.write_bytes(lzma.decompress((DATA / "trace-cmd" / "trace-v6.dat.xz").read_bytes()))
    report = report_text(tmp_path, trace).read_text().splitlines()
    pid = "3381"  # sleep: in the trace.dat, not in the text trace
    assert f"{pid} " not in " ".join(proc_tasks(read_lines(PROC_TRACE))[1])
    entries = sum(1 for line in report if re.match(rf"^\s*\S+-{pid} +\[", line) and "funcgraph_entry:" in line)
    for processes in ("1", "2"):
        monkeypatch.setenv("KM_PARSE_PROCESSES", processes)
        out = tmp_path / f"g{processes}.json"
        result = run_cli("visualize", "-i", str(PROC_TRACE), "-i", str(trace), "--pid", pid, "-o", str(out), "--chart", "")
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip().splitlines() == [f"kernel-magnifier: warning: --pid {pid} selects no call in {PROC_TRACE}; the other inputs have some"]
        assert entries > 100 and sum(node["calls"] for node in json.loads(out.read_text())["nodes"]) == entries, processes


def shown(value: float) -> str:
    return f"{value / 1000:.2f} ms" if value >= 1000 else f"{value:.1f} us"


def test_latency_alone_draws_only_its_histogram(tmp_path):
    result = run_cli("visualize", "-i", str(PROC_TRACE), "--latency", "tcp_sendmsg", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^latency of tcp_sendmsg: \d+ calls", result.stdout, re.M) and "parsing completed" not in result.stdout
    assert os.listdir(tmp_path) == ["latency.png"]
    os.remove(tmp_path / "latency.png")
    result = run_cli("visualize", "-i", str(PROC_TRACE), "--latency", "tcp_sendmsg", "-o", "g.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path)) == ["function-calls.png", "g.json", "latency.png"]
    for name in os.listdir(tmp_path):
        os.remove(tmp_path / name)
    result = run_cli("visualize", "-i", str(PROC_TRACE), "--latency", "tcp_sendmsg", "--comm", "nosuch", cwd=tmp_path)
    assert_one_line_error(result, f"--comm nosuch selects no call in {PROC_TRACE}, which has CPUs 0, 1;")
    assert os.listdir(tmp_path) == []


def test_latency_of_a_glob_is_one_line_per_function_and_drawn_apart(tmp_path):
    durations: dict[str, list[float]] = {}
    for line in read_lines(PROC_TRACE):
        fields = graph_fields(line)
        match = fields and re.fullmatch(r"(tcp_\S+)\(\);|\} /\* (tcp_\S+) \*/", fields[3].strip())
        if match:
            durations.setdefault(match.group(1) or match.group(2), []).append(float(re.search(r"([\d.]+) us", fields[2]).group(1)))
    ranked = sorted(durations, key=lambda name: (-sum(durations[name]), name))
    assert len(ranked) > 50
    code, stdout, stderr, figures = drawn_charts(["visualize", "-i", str(PROC_TRACE), "--latency", "tcp_*", "--latency-chart", str(tmp_path / "l.png")])
    assert code == 0, stderr
    lines = stdout.splitlines()
    start = lines.index(f"latency of tcp_*: {len(ranked)} functions, one line each, by the total time of their calls")
    expected = []
    for name in ranked:
        p50, p90, p99 = numpy.percentile(durations[name], [50, 90, 99])
        calls = f"{len(durations[name]):,} call" + ("s" if len(durations[name]) > 1 else "")
        expected.append(f"  {name}: {calls}, p50 {shown(p50)}, p90 {shown(p90)}, p99 {shown(p99)}, max {shown(max(durations[name]))}, total {shown(sum(durations[name]))}")
    assert lines[start + 1 : start + 1 + len(ranked)] == expected
    assert lines[start + 1 + len(ranked)] == "slowest calls:"
    (_, _, _, legend), = figures
    assert [text.split(":")[0] for text in legend] == ranked[:6]


def test_an_empty_selection_of_a_trace_without_task_ids_says_it_has_none(tmp_path):
    trace = DATA / "catalogue" / "durations.txt"
    cpus = sorted({line.split(")")[0].strip() for line in trace.read_text().splitlines() if ")" in line}, key=int)
    result = run_cli("visualize", "-i", str(trace), "--pid", "5", "-o", str(tmp_path / "g.json"), "--chart", "")
    assert_one_line_error(result, f"--pid 5 selects no call in {trace}, which has CPUs {', '.join(cpus)}; no task ids (record with -O funcgraph-proc")


def test_latency_alone_still_says_when_an_input_is_no_trace(tmp_path):
    (tmp_path / "notes.txt").write_text("meeting notes\ntcp_sendmsg is slow\n")
    result = run_cli("visualize", "-i", "notes.txt", "--latency", "tcp_sendmsg", cwd=tmp_path)
    assert_one_line_error(result, "notes.txt: no function_graph or function calls found: not an ftrace trace")
    assert os.listdir(tmp_path) == ["notes.txt"]
