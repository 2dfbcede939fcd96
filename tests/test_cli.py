"""visualize as a user runs it: default files, output formats, filters, and every bad input."""

from __future__ import annotations

import json
import lzma
import os
import shutil
import subprocess

import pytest
from conftest import DATA, SCRIPT, assert_one_line_error, run_cli

SAMPLE = DATA / "fg-graphfunc" / "trace.txt.xz"


@pytest.fixture
def data_dir(tmp_path):
    """A directory holding kernel-magnifier.data, as after 'record' and a copy to a laptop."""
    with lzma.open(SAMPLE, "rb") as source, open(tmp_path / "kernel-magnifier.data", "wb") as target:
        shutil.copyfileobj(source, target)
    return tmp_path


def test_no_arguments_reads_the_data_file_and_writes_pdf_and_png(data_dir):
    result = run_cli("visualize", cwd=data_dir)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == "Visualization mode - now generating visualization..."
    assert out[1] == "parsing completed, found 110524 events"
    assert "function-calls.png generated" in out
    assert out[-1] == "kernel-magnifier.pdf generated"
    assert any(line.startswith("lost events: 192,250 (63.5% of all events; CPU0: 114,909, CPU1: 77,341)") for line in out)
    assert any("left out" in line and "--node-thres" in line and "--max-nodes" in line for line in out)
    assert (data_dir / "kernel-magnifier.pdf").read_bytes().startswith(b"%PDF")
    assert (data_dir / "function-calls.png").read_bytes().startswith(b"\x89PNG")
    assert result.stderr == ""
    leftovers = [name for name in os.listdir(data_dir) if name.endswith(".tmp")]
    assert leftovers == []


def test_dot_shows_labels_heat_and_caption(data_dir):
    result = run_cli("visualize", "-o", "graph.dot", "--chart", "", "--max-nodes", "20", "--heat", "calls", cwd=data_dir)
    assert result.returncode == 0, result.stderr
    dot = (data_dir / "graph.dot").read_text()
    assert "tcp_sendmsg()" in dot and "calls" in dot
    assert "colour = calls on a log scale" in dot
    assert "showing 20 of 408 functions" in dot
    assert "BGCOLOR" in dot  # the colour bar


def test_json_has_one_node_edge_and_call_path_per_line(data_dir):
    """grep finds a function's node, edges and call paths in graph.json, each a whole JSON object on its line."""
    result = run_cli("visualize", "-o", "graph.json", "--chart", "", cwd=data_dir)
    assert result.returncode == 0, result.stderr
    text = (data_dir / "graph.json").read_text()
    graph = json.loads(text)
    lines = [json.loads(line.strip().rstrip(",")) for line in text.split("\n") if '"tcp_sendmsg"' in line]
    assert [line for line in lines if line.get("name") == "tcp_sendmsg"] == [node for node in graph["nodes"] if node["name"] == "tcp_sendmsg"]
    assert [line for line in lines if "callee" in line] == [edge for edge in graph["edges"] if "tcp_sendmsg" in (edge["caller"], edge["callee"])]
    assert [line for line in lines if "function" in line] == [path for path in graph["call_tree"] if path["function"] == "tcp_sendmsg"]
    assert len(text.split("\n")) > len(graph["nodes"]) + len(graph["edges"]) + len(graph["call_tree"])


def test_a_single_call_is_one_call(tmp_path):
    trace = tmp_path / "one.txt"
    trace.write_text(" 0)               |  outer() {\n 0)   1.000 us    |    inner();\n 0)   3.000 us    |  }\n")
    result = run_cli("visualize", "-i", str(trace), "-o", str(tmp_path / "g.dot"), "--chart", "")
    assert result.returncode == 0, result.stderr
    dot = (tmp_path / "g.dot").read_text()
    assert "1 calls" not in dot and "inner: 1 call," in dot


def test_filter_execution_no_keeps_functions_called_more_than_n_times(data_dir):
    result = run_cli("visualize", "-o", "g.json", "--chart", "", "--filter-execution-no", "300", cwd=data_dir)
    assert result.returncode == 0, result.stderr
    graph = json.loads((data_dir / "g.json").read_text())
    assert graph["nodes"] and all(node["calls"] > 300 for node in graph["nodes"])
    names = {node["name"] for node in graph["nodes"]}
    assert all(edge["caller"] in names and edge["callee"] in names for edge in graph["edges"])
    assert "__rcu_read_lock" in names and "tcp_sendmsg" not in names
    alias = run_cli("visualize", "-o", "m.json", "--chart", "", "--min-calls", "300", cwd=data_dir)
    assert alias.returncode == 0, alias.stderr
    assert json.loads((data_dir / "m.json").read_text())["nodes"] == graph["nodes"]


def test_top_level_help_has_examples():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout and "visualize --root tcp_sendmsg" in result.stdout


def test_help_ends_with_examples():
    result = run_cli("visualize", "--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("  ./kernel-magnifier.py visualize")


def test_missing_input(tmp_path):
    assert_one_line_error(run_cli("visualize", cwd=tmp_path), "kernel-magnifier.data does not exist")


def test_empty_input(tmp_path):
    (tmp_path / "kernel-magnifier.data").write_bytes(b"")
    assert_one_line_error(run_cli("visualize", cwd=tmp_path), "is empty")


def test_binary_garbage(tmp_path):
    (tmp_path / "garbage.bin").write_bytes(bytes(range(256)) * 64)
    assert_one_line_error(run_cli("visualize", "-i", "garbage.bin", cwd=tmp_path), "binary data, not ftrace text")


def test_trace_cmd_file_cut_after_its_magic(tmp_path):
    (tmp_path / "trace.dat").write_bytes(b"\x17\x08\x44tracing6\x00" + b"\x00" * 100)
    assert_one_line_error(run_cli("visualize", "-i", "trace.dat", cwd=tmp_path), "trace.dat is a damaged trace.dat")


def test_text_that_is_not_a_trace(tmp_path):
    (tmp_path / "notes.txt").write_text("Dear diary,\ntoday I read the kernel source.\n")
    assert_one_line_error(run_cli("visualize", "-i", "notes.txt", cwd=tmp_path), "not an ftrace text trace")


def test_text_that_is_not_a_trace_after_a_real_trace(tmp_path):
    (tmp_path / "notes.txt").write_text("Dear diary,\ntoday I read the kernel source.\n")
    result = run_cli("visualize", "-i", str(SAMPLE), "-i", "notes.txt", cwd=tmp_path)
    assert_one_line_error(result, "notes.txt is not an ftrace text trace")
    assert "'Dear diary,'" in result.stderr  # its own first line, not one from the trace before it


def test_truncated_compressed_input(tmp_path):
    (tmp_path / "cut.txt.xz").write_bytes(SAMPLE.read_bytes()[:5000])
    assert_one_line_error(run_cli("visualize", "-i", "cut.txt.xz", cwd=tmp_path), "damaged or truncated")


def test_unwritable_output_fails_before_parsing(data_dir):
    result = run_cli("visualize", "-o", "no/such/dir/graph.pdf", cwd=data_dir)
    assert_one_line_error(result, "cannot write no/such/dir/graph.pdf")
    assert "parsing completed" not in result.stdout


def test_unknown_output_format(data_dir):
    assert_one_line_error(run_cli("visualize", "-o", "graph.jpeg", cwd=data_dir), "cannot tell the output format")


def test_filters_that_leave_nothing(data_dir):
    result = run_cli("visualize", "--filter-execution-no", "100000000", cwd=data_dir)
    assert_one_line_error(result, "the filters left no function to show")
    assert not (data_dir / "kernel-magnifier.pdf").exists()
    assert not (data_dir / "function-calls.png").exists()


def test_filter_filepath_without_symbol_map(data_dir):
    assert_one_line_error(run_cli("visualize", "--filter-filepath", "net", cwd=data_dir), "needs a symbol map")


def test_existing_output_survives_a_failed_run(data_dir):
    (data_dir / "kernel-magnifier.pdf").write_bytes(b"%PDF previous drawing")
    run_cli("visualize", "--filter-execution-no", "100000000", cwd=data_dir)
    assert (data_dir / "kernel-magnifier.pdf").read_bytes() == b"%PDF previous drawing"


def test_script_is_executable():
    assert os.access(SCRIPT, os.X_OK)


def test_a_killed_runs_temporary_file_is_removed_by_the_next_run(data_dir):
    # SIGKILL leaves the temporary output behind (nothing can run then); the next run removes it
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = data_dir / f".g.json.km{dead.pid}.abcd1234.tmp"
    stale.write_text("half a file")
    alive = data_dir / f".g.json.km{os.getpid()}.abcd1234.tmp"  # a run that is still going: left alone
    alive.write_text("being written")
    result = run_cli("visualize", "-o", "g.json", "--chart", "", cwd=data_dir)
    assert result.returncode == 0, result.stderr
    assert not stale.exists() and alive.exists()


def test_visualize_help_names_every_input_and_output_it_reads_and_writes():
    """The help is the first thing a user reads: it must not say 'ftrace text' only while trace.dat is the default input."""
    result = run_cli("visualize", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for word in ("trace.dat", "trace-cmd report", ".gz/.xz", ".pdf", ".svg", ".png", ".dot", ".json", ".folded", ".trace.json", ".html", ".txt", "- for standard output (the text report"):
        assert word in text, word
