"""CLI conventions (issue 23): -o - on standard output, exit statuses, --help that tells the truth.

Every run is a real process on a real recording; standard output is a real pipe, read back by the format's own parser
(json, pygraphviz's for dot, an XML parser for svg) and compared byte for byte with the file the same run writes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from conftest import DATA, SCRIPT, assert_one_line_error, load_module, run_cli

SMALL = DATA / "trace-cmd" / "report-head.txt.xz"  # trace-cmd report: 3,000 lines with timestamps, fast to parse
LARGE = DATA / "record-demo-dat" / "kernel-magnifier.data.xz"  # a trace.dat whose parse takes seconds
NO_TIMESTAMPS = DATA / "fg-default" / "trace.txt.xz"  # function_graph without funcgraph-abstime: no timeline possible


def visualize(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("visualize", "-i", str(SMALL), "--chart", "", *args, cwd=cwd)


def parse_dot(text: str) -> object:
    import pygraphviz

    return pygraphviz.AGraph(string=text)


def check_json(text: str) -> None:
    graph = json.loads(text)
    assert graph["nodes"] and graph["edges"] and graph["stats"]["events"] > 0


def check_trace_json(text: str) -> None:
    assert any(event.get("ph") == "X" for event in json.loads(text)["traceEvents"])


def check_folded(text: str) -> None:
    lines = text.splitlines()
    assert lines and all(re.fullmatch(r"\S+ \d+", line) for line in lines), lines[:3]


def check_dot(text: str) -> None:
    assert len(parse_dot(text).nodes()) > 1


def check_svg(text: str) -> None:
    assert ElementTree.fromstring(text).tag == "{http://www.w3.org/2000/svg}svg"


def check_explorer(text: str) -> None:
    assert text.startswith("<!DOCTYPE html>") and 'id="tabs"' in text


def check_flame(text: str) -> None:
    assert text.startswith("<!DOCTYPE html>") and 'id="tabs"' not in text


def check_report(text: str) -> None:
    assert text.startswith("kernel-magnifier report: ")


# What each text format is, by its own parser; the keys are --output-format's names.
TEXT_CHECKS = {
    "json": check_json, "trace.json": check_trace_json, "folded": check_folded, "dot": check_dot, "svg": check_svg,
    "html": check_explorer, "flame.html": check_flame, "txt": check_report,
}


@pytest.mark.parametrize("fmt", ["json", "dot", "svg", "folded", "trace.json", "flame.html"])
def test_stdout_gets_the_output_whole_and_only_it(tmp_path, fmt):
    """-o - --output-format F through a real pipe: what the format's parser reads, byte for byte the file -o x.F writes;
    the messages on stderr; no file left beside."""
    piped = visualize("-o", "-", "--output-format", fmt, cwd=tmp_path)
    assert piped.returncode == 0, piped.stderr
    assert "parsing completed" in piped.stderr and "parsing completed" not in piped.stdout
    TEXT_CHECKS[fmt](piped.stdout)
    assert list(tmp_path.iterdir()) == []
    written = visualize("-o", f"x.{fmt}", cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert piped.stdout == (tmp_path / f"x.{fmt}").read_text(encoding="utf-8")


def test_stdout_alone_is_the_text_report(tmp_path):
    piped = visualize("-o", "-", cwd=tmp_path)
    assert piped.returncode == 0, piped.stderr
    check_report(piped.stdout)
    assert list(tmp_path.iterdir()) == []  # nor the default chart


def test_stdout_piped_into_a_reader(tmp_path):
    """A shell pipeline: the JSON read by another process from the pipe; a reader that stops early ends it quietly (1)."""
    shell = f"{sys.executable} {SCRIPT} visualize -i {SMALL} -o - --output-format json | {sys.executable} -c 'import json,sys; print(len(json.load(sys.stdin)[\"nodes\"]))'"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", shell], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 1
    early = subprocess.run(
        ["bash", "-c", f"{sys.executable} {SCRIPT} visualize -i {SMALL} -o - --output-format trace.json | head -c 10; echo \" ${{PIPESTATUS[0]}}\""],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert early.stdout.startswith('{"traceEv') and early.stdout.split()[-1] in ("0", "1"), early.stdout[-40:]
    assert "Traceback" not in early.stderr and "Exception ignored" not in early.stderr, early.stderr


@pytest.mark.parametrize("fmt", ["pdf", "png"])
def test_binary_formats_refused_on_stdout(tmp_path, fmt):
    result = visualize("-o", "-", "--output-format", fmt, cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert_one_line_error(result, f"give a file name ending in .{fmt}")


def test_output_format_is_for_stdout_only(tmp_path):
    result = visualize("-o", "x.svg", "--output-format", "json", cwd=tmp_path)
    assert result.returncode == 1
    assert_one_line_error(result, "--output-format is for -o -")
    assert list(tmp_path.iterdir()) == []


def test_failed_run_prints_nothing_on_stdout(tmp_path):
    """No timestamps, no timeline: the error on stderr, not a byte of half a trace.json on stdout."""
    result = run_cli("visualize", "-i", str(NO_TIMESTAMPS), "--chart", "", "-o", "-", "--output-format", "trace.json", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]  # after the summary's messages, which go to stderr too
    assert last.startswith("kernel-magnifier: error: this trace has no timestamps") and "Traceback" not in result.stderr


# --- exit statuses ---------------------------------------------------------------


def test_exit_zero_for_help_and_version(tmp_path):
    for args in (["--help"], ["visualize", "--help"], ["record", "--help"], ["generate-symbol-map", "--help"], ["--version"]):
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 0 and result.stdout, args


@pytest.mark.parametrize("args", [
    ["visualize", "--no-such-option"], ["visualize", "--max-nodes", "many"], ["visualize", "--heat", "warmth"], [],
    ["frobnicate"], ["record", "--record-time", "soon"], ["visualize", "--", "ls"],
])
def test_exit_two_for_usage(tmp_path, args):
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, (args, result.stderr)
    assert "usage:" in result.stderr and "Traceback" not in result.stderr


def test_exit_one_for_bad_input(tmp_path):
    missing = run_cli("visualize", "-i", str(tmp_path / "none.data"), "-o", "x.json", cwd=tmp_path)
    assert missing.returncode == 1
    assert_one_line_error(missing, "none.data")
    (tmp_path / "garbage.txt").write_text("this is no trace\n" * 50)
    garbage = run_cli("visualize", "-i", str(tmp_path / "garbage.txt"), "-o", "x.json", cwd=tmp_path)
    assert garbage.returncode == 1 and "Traceback" not in garbage.stderr


def others_can_run(script: Path) -> bool:
    """Whether a user other than the owner can read the script: every folder above it searchable by others (a clone
    made in `mktemp -d`, mode 0700, is not)."""
    folders_open = all(folder.stat().st_mode & stat.S_IXOTH for folder in script.resolve().parents)
    return folders_open and bool(script.stat().st_mode & stat.S_IROTH)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="running record as another user needs root and setpriv")
@pytest.mark.skipif(not others_can_run(SCRIPT), reason="the checkout is private to its owner: user nobody cannot read the script")
def test_record_without_root_exits_one(tmp_path):
    """record as an ordinary user (nobody, through util-linux's setpriv): refused in one line before touching tracefs, status 1."""
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, str(SCRIPT), "record", "--record-time", "1", "-o", str(tmp_path / "r.data")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert_one_line_error(result, "needs root")
    assert list(tmp_path.iterdir()) == []


def test_internal_error_is_70_not_a_usage_error(monkeypatch, capsys):
    """A bug (an exception no code path expects) exits 70 with one line, apart from usage (2) and user errors (1)."""
    module = load_module()

    def broken(args: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setitem(module.COMMANDS, "visualize", broken)
    assert module.main(["visualize", "-i", str(SMALL)]) == 70
    assert capsys.readouterr().err.strip() == "kernel-magnifier: internal error: ZeroDivisionError: a bug (run with --debug for the traceback)"


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stop_signal_during_a_long_parse_exits_130_and_leaves_nothing(tmp_path, stop):
    """Ctrl-C as a terminal sends it (SIGINT to the whole process group), or SIGTERM as kill sends it, while a trace.dat
    is parsed: status 130, one line, no output file, no temporary file, no process of the group left."""
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "visualize", "-i", str(LARGE), "-o", "out.json", "--chart", ""],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    started = process.stdout.readline()
    assert started.startswith("Visualization mode"), started
    time.sleep(0.3)  # well inside the parse (1-2 s on this input on a fast machine; CI ran it in under 1.3 s)
    if stop == signal.SIGINT:
        os.killpg(process.pid, stop)
    else:
        process.send_signal(stop)
    stdout, stderr = process.communicate(timeout=60)
    assert "parsing completed" not in stdout, "the signal came after the parse: use a larger input"
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "kernel-magnifier: interrupted" and "Traceback" not in stderr, stderr
    assert list(tmp_path.iterdir()) == []
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)


# --- --help tells the truth --------------------------------------------------------


def option_help(command: str, option: str) -> str:
    parser = load_module().build_parser()
    subparsers = next(action for action in parser._actions if action.dest == "command")
    return next(action.help for action in subparsers.choices[command]._actions if option in action.option_strings)


MAGIC = {".pdf": b"%PDF-", ".png": b"\x89PNG\r\n\x1a\n"}  # the binary outputs, by their leading bytes


def check_file(ending: str, data: bytes) -> None:
    """What an output file is: a binary one by its magic bytes, a text one by its format's parser."""
    if ending in MAGIC:
        assert data.startswith(MAGIC[ending]), ending
    else:
        TEXT_CHECKS[ending[1:]](data.decode("utf-8"))


def test_output_help_names_every_ending_and_each_writes_what_it_says(tmp_path):
    """Every ending -o's help names writes its kind of file (read by its parser or its magic bytes), and every ending
    the writer table knows is named there."""
    text = option_help("visualize", "-o")
    named = set(re.findall(r"(?<![\w.])(\.[a-z]+(?:\.[a-z]+)?)\b", text))
    module = load_module()
    assert named == {ending for ending, _ in module.OUTPUT_WRITERS} == set(MAGIC) | {f".{fmt}" for fmt in TEXT_CHECKS}
    for ending in sorted(named):
        result = visualize("-o", f"out{ending}", cwd=tmp_path)
        assert result.returncode == 0, (ending, result.stderr)
        check_file(ending, (tmp_path / f"out{ending}").read_bytes())
    output_format = option_help("visualize", "--output-format")
    for fmt in TEXT_CHECKS:
        assert fmt in output_format


# Each input kind -i's help names, and a bundled recording of that kind.
INPUT_KINDS = {
    "record's data file (trace.dat": DATA / "record-demo-dat" / "kernel-magnifier.data.xz",
    "or text)": DATA / "record-demo" / "kernel-magnifier.data.xz",
    "trace-cmd's trace.dat (v6": DATA / "trace-cmd" / "trace-v6.dat.xz",
    "v7)": DATA / "trace-cmd" / "trace-v7-zstd.dat.xz",
    "ftrace's trace or trace_pipe text (function_graph": DATA / "fg-default" / "trace.txt.xz",
    "or function tracer)": DATA / "function-tracer" / "trace.txt.xz",
    "trace-cmd report's output": SMALL,
}


def test_input_help_names_each_kind_and_each_is_read(tmp_path):
    text = option_help("visualize", "-i")
    for phrase, path in INPUT_KINDS.items():
        assert phrase in text, phrase
        result = run_cli("visualize", "-i", str(path), "-o", "-", "--output-format", "folded", cwd=tmp_path)
        assert result.returncode == 0, (path, result.stderr)
        check_folded(result.stdout)


# --- the man page and the bash completion, generated from the parser ---------------------

ROOT = SCRIPT.parent
MAN_PAGE = ROOT / "docs" / "kernel-magnifier.1"
COMPLETION = ROOT / "docs" / "kernel-magnifier.bash-completion"
MAKE_DOCS = ROOT / "docs" / "make-cli-docs.py"


def parser_commands() -> dict[str, object]:
    parser = load_module().build_parser()
    return next(action for action in parser._actions if action.dest == "command").choices


def shown_options(subparser: object) -> set[str]:
    """Every option string --help shows (hidden ones left out)."""
    import argparse

    return {name for action in subparser._actions if action.help != argparse.SUPPRESS for name in action.option_strings}


def test_man_page_and_completion_are_current():
    """The committed files are what docs/make-cli-docs.py makes from the parser now."""
    result = subprocess.run([sys.executable, str(MAKE_DOCS), "--check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_make_docs_check_fails_on_a_stale_file(tmp_path):
    """--check notices an edited (or not regenerated) file: a copy of the tree whose man page lost a line."""
    copy = tmp_path / "tree"
    (copy / "docs").mkdir(parents=True)
    shutil.copy(SCRIPT, copy / SCRIPT.name)
    shutil.copy(MAKE_DOCS, copy / "docs" / MAKE_DOCS.name)
    shutil.copy(COMPLETION, copy / "docs" / COMPLETION.name)
    (copy / "docs" / MAN_PAGE.name).write_text("".join(MAN_PAGE.read_text().splitlines(keepends=True)[:-1]))
    result = subprocess.run([sys.executable, str(copy / "docs" / MAKE_DOCS.name), "--check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "kernel-magnifier.1" in result.stderr and "bash-completion" not in result.stderr


@pytest.mark.skipif(not shutil.which("groff") or not shutil.which("man"), reason="needs groff and man-db (apt-get install groff-base man-db)")
def test_man_page_renders_without_warnings_and_has_every_option():
    check = subprocess.run(["groff", "-man", "-z", "-ww", "-Tutf8", str(MAN_PAGE)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and check.stderr == "", check.stderr
    shown = subprocess.run(["man", "--warnings", "-l", str(MAN_PAGE)], capture_output=True, text=True, timeout=60, env={**os.environ, "MANWIDTH": "200", "MAN_KEEP_FORMATTING": ""})
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    text = shown.stdout.replace("\u2212", "-").replace("\u2010", "-")
    assert "EXIT STATUS" in text
    for status in ("0", "1", "2", "70", "130"):
        assert re.search(rf"^ +{status} +\S", text, re.M), status
    for name, subparser in parser_commands().items():
        section = re.search(rf"^{name.upper()} OPTIONS\n(.*?)^\S", text, re.M | re.S).group(1)  # up to the next heading
        for option in shown_options(subparser):
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", section), (name, option)


def complete(*words: str, cwd: Path = ROOT) -> set[str]:
    """What bash offers for the last word, the completion sourced in a real bash and driven as readline drives it."""
    script = (
        f'source "{COMPLETION}"; complete -p kernel-magnifier.py >/dev/null || exit 3;'
        ' COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMPREPLY=(); _kernel_magnifier;'
        ' printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", script, "bash", "kernel-magnifier.py", *words], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return {line for line in result.stdout.splitlines() if line}


def test_completion_offers_commands_options_and_choices():
    commands = parser_commands()
    assert complete("") == {"--help", "--version", *commands}
    assert complete("vis") == {"visualize"}
    for name, subparser in commands.items():
        assert complete(name, "-") == shown_options(subparser), name
    assert "--layout" not in complete("visualize", "--")  # hidden
    assert complete("visualize", "--ro") == {"--root"}
    heat = next(action for action in commands["visualize"]._actions if action.dest == "heat")
    assert complete("visualize", "--heat", "") == set(heat.choices)
    assert complete("visualize", "--output-format", "j") == {"json"}
    assert complete("record", "-p", "") == {"function_graph", "function"}
    assert complete("visualize", "--root", "") == set()  # a function name: nothing to guess
    assert "python3" in complete("record", "--record-time", "1", "--", "python")  # after --: the traced command


def test_completion_offers_files_by_ending(tmp_path):
    for name in ("graph.json", "calls.pdf", "old.data", "trace.txt.xz", "notes.md", "chart.png", "vmlinux"):
        (tmp_path / name).write_text("")
    (tmp_path / "runs").mkdir()
    assert complete("visualize", "-o", "", cwd=tmp_path) == {"graph.json", "calls.pdf", "chart.png", "runs/"}
    assert complete("visualize", "-i", "", cwd=tmp_path) == {"old.data", "trace.txt.xz", "runs/"}
    assert complete("visualize", "--chart", "", cwd=tmp_path) == {"chart.png", "runs/"}
    assert complete("record", "-o", "o", cwd=tmp_path) == {"old.data"}
    assert complete("generate-symbol-map", "--modules", "", cwd=tmp_path) == {"runs/"}
    assert "vmlinux" in complete("generate-symbol-map", "-k", "", cwd=tmp_path)
