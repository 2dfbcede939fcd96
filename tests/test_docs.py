"""README.md and docs/*.md cannot drift from the program: their commands run, their outputs are printed, their links hold.

Which commands run: every line of a fenced code block that calls `kernel-magnifier.py visualize` or
`kernel-magnifier.py generate-symbol-map` (in a ```console block the lines that start with `$ `, in a ```sh block
every line; a trailing `\\` continues a command). Each runs as written in a scratch directory where `tests/` is this
repository's and `kernel-magnifier.data` is the walkthrough's recording (what `record` would have left there), up
to the first `|`, `>` or `;` of its line (what reads its output is not ours to run). It must end with status 0.

What is compared: in a ```console block, the lines under a command are what it prints (messages and warnings in
one stream, as on a terminal), line for line; a line `...` stands for lines left out, and `…` inside a line for
any text (a timing, a path that changes from run to run).

What does not run: a block whose line before it is `<!-- not-run: REASON -->` (root, a VM, a vmlinux with
debug info; or a synopsis). Every block with a command of those two subcommands must be run or marked so, with
a reason. Beside them: every option of every subcommand's --help is mentioned in docs/*.md, and every relative
link and image of README.md and docs/*.md points to a file (and heading) that exists.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import ROOT, SCRIPT

DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ELIDED = "..."
ANY_TEXT = "…"
OURS = ("visualize", "generate-symbol-map")
RUNNABLE_LANGUAGES = ("console", "sh", "bash", "shell")
NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(.*?)\s*-->$")
# the default input of a command without -i: the walkthrough's recording, as record leaves it
DEFAULT_INPUT = ROOT / "tests" / "data" / "record-demo-dat" / "kernel-magnifier.data.xz"


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    lines: list[str]
    not_run: str | None  # the reason, when marked


@dataclass
class Command:
    where: str  # FILE:LINE of the command's first line
    argv: list[str]  # after kernel-magnifier.py
    shown: list[str] = field(default_factory=list)  # the printed lines a console block shows under it
    compare: bool = False


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def fenced_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks = []
    index = 0
    while index < len(lines):
        opening = re.match(r"^(\s*)```(\S*)\s*$", lines[index])
        if not opening:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].strip() == "```")
        before = lines[index - 1].strip() if index else ""
        marker = NOT_RUN.match(before)
        blocks.append(Block(path, index + 1, opening.group(2), lines[index + 1:end], marker.group(1) if marker else None))
        index = end + 1
    return blocks


def our_argv(command: str) -> list[str] | None:
    """The arguments after kernel-magnifier.py when the shell line runs visualize or generate-symbol-map, else None."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars="|;&<>")
    lexer.whitespace_split = True
    tokens = []
    for token in lexer:
        if token and set(token) <= set("|;&<>"):
            break  # a pipe, redirection or list: the rest is another program's
        tokens.append(token)
    for index, token in enumerate(tokens):
        if token.endswith("kernel-magnifier.py") and index + 1 < len(tokens) and tokens[index + 1] in OURS:
            return tokens[index + 1:]
    return None


def joined_commands(lines: list[str], prompt: str) -> list[tuple[int, str, list[str]]]:
    """(offset, command, lines under it) for each command line (starting with prompt) of a block, `\\` lines joined."""
    commands: list[tuple[int, str, list[str]]] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith(prompt) or (not prompt and (not line.strip() or line.lstrip().startswith("#"))):
            if commands and prompt:
                commands[-1][2].append(line)
            index += 1
            continue
        start = index
        command = line[len(prompt):]
        while command.rstrip().endswith("\\") and index + 1 < len(lines):
            index += 1
            command = command.rstrip()[:-1] + " " + lines[index].strip()
        commands.append((start, command, []))
        index += 1
    return commands


def block_commands(block: Block) -> list[Command]:
    prompt = "$ " if block.language == "console" else ""
    found = []
    for offset, command, under in joined_commands(block.lines, prompt):
        argv = our_argv(command)
        if argv is not None:
            where = f"{shown(block.path)}:{block.line + 1 + offset}"
            found.append(Command(where, argv, [line.rstrip() for line in under], block.language == "console"))
    return found


BLOCKS = [block for path in DOC_FILES for block in fenced_blocks(path)]
RUN = [command for block in BLOCKS if block.not_run is None for command in block_commands(block)]


def test_the_docs_have_commands_to_run():
    assert len(RUN) >= 20, "README.md and docs/ lost their runnable visualize examples"
    assert sum(command.compare and bool(command.shown) for command in RUN) >= 10


def test_every_shown_command_runs_or_says_why_not():
    """A block with a visualize or generate-symbol-map command either runs or is marked not-run with a reason."""
    unmarked = []
    for block in BLOCKS:
        text = "\n".join(block.lines)
        if not re.search(r"kernel-magnifier\.py\s+(\\\s*)?(visualize|generate-symbol-map)", text):
            continue
        if block.not_run is not None:
            assert block.not_run, f"{shown(block.path)}:{block.line}: not-run without a reason"
            continue
        if block.language not in RUNNABLE_LANGUAGES or not block_commands(block):
            unmarked.append(f"{shown(block.path)}:{block.line} ({block.language or 'no language'})")
    assert not unmarked, "blocks showing commands that neither run nor say why not:\n" + "\n".join(unmarked)


def test_the_not_run_marker_is_seen(tmp_path: Path):
    """The parser itself: a marked block is not run, an unmarked console block is, with its shown lines."""
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- not-run: needs root -->\n```console\n$ sudo ./kernel-magnifier.py generate-symbol-map -k x\n```\n\n"
        "```console\n$ ./kernel-magnifier.py visualize -i a \\\n    -o - | less\nline one\n...\n```\n",
    )
    marked, unmarked = fenced_blocks(page)
    assert marked.not_run == "needs root" and unmarked.not_run is None
    (command,) = block_commands(unmarked)
    assert command.argv == ["visualize", "-i", "a", "-o", "-"] and command.shown == ["line one", "..."]


def matches(shown: str, printed: str) -> bool:
    if ANY_TEXT not in shown:
        return shown == printed
    pattern = ".*".join(re.escape(part) for part in shown.split(ANY_TEXT))
    return re.fullmatch(pattern, printed) is not None


def missing_lines(shown: list[str], printed: list[str]) -> list[str]:
    """The shown lines that are not printed just so: each right after the one before it, unless a `...` line stands between."""
    missing = []
    position = 0
    skipping = False
    for line in shown:
        if line.strip() == ELIDED:
            skipping = True
            continue
        if skipping:
            found = next((i for i in range(position, len(printed)) if matches(line, printed[i])), -1)
        else:
            found = position if position < len(printed) and matches(line, printed[position]) else -1
        if found < 0:
            missing.append(line)
            skipping = True  # find the next shown line anywhere after, so one difference is reported once
            continue
        position, skipping = found + 1, False
    return missing


def test_missing_lines_rules():
    printed = ["a", "b took 1.2 s", "c", "d"]
    assert missing_lines(["a", "b took … s", "...", "d"], printed) == []
    assert missing_lines(["a", "c"], printed) == ["c"]  # no `...`: the next line must follow at once
    assert missing_lines(["...", "b took 9 s"], printed) == ["b took 9 s"]


def run_as_written(argv: list[str], scratch: Path) -> subprocess.CompletedProcess[str]:
    scratch.mkdir()
    (scratch / "tests").symlink_to(ROOT / "tests")
    (scratch / "kernel-magnifier.data").symlink_to(DEFAULT_INPUT)
    # as on a terminal: messages and warnings in the order they were printed
    return subprocess.run(
        [sys.executable, str(SCRIPT), *argv], cwd=scratch, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def results(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, ...], subprocess.CompletedProcess[str]]:
    """Every distinct command line of the selected tests run once (README.md and docs/ show some twice), side by
    side on the CPUs, so the test takes about the time of the slowest ones rather than of all in a row."""
    selected = [item.callspec.params["command"] for item in request.session.items if "command" in getattr(getattr(item, "callspec", None), "params", {})]
    distinct = list(dict.fromkeys(tuple(command.argv) for command in selected))
    base = tmp_path_factory.mktemp("docs")
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        done = pool.map(lambda item: run_as_written(list(item[1]), base / f"run{item[0]}"), enumerate(distinct))
        return dict(zip(distinct, done))


@pytest.mark.parametrize("command", RUN, ids=[command.where for command in RUN])
def test_shown_command_prints_what_it_shows(results: dict, command: Command):
    result = results[tuple(command.argv)]
    assert result.returncode == 0, f"{command.where}: exit status {result.returncode}\n{result.stdout}"
    if not command.compare:
        return
    printed = [re.sub(r"\s+$", "", line) for line in result.stdout.split("\n")]
    missing = missing_lines(command.shown, printed)
    assert not missing, (
        f"{command.where} shows lines the command does not print:\n" + "\n".join(missing) + "\n--- printed:\n" + "\n".join(printed)
    )


def load_parser() -> argparse.ArgumentParser:
    spec = importlib.util.spec_from_file_location("kernel_magnifier_docs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["kernel_magnifier_docs"] = module
    spec.loader.exec_module(module)
    return module.build_parser()


def help_options() -> dict[str, list[str]]:
    """Each subcommand's option strings as its --help shows them (hidden ones and -h left out)."""
    parser = load_parser()
    action = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    options = {}
    for name, sub in action.choices.items():
        options[name] = [
            string for act in sub._actions if act.help != argparse.SUPPRESS and not isinstance(act, argparse._HelpAction)
            for string in act.option_strings
        ]
    return options


def test_every_help_option_is_in_the_docs():
    docs = "\n".join(path.read_text(encoding="utf-8") for path in DOC_FILES if path.parent.name == "docs")
    options = help_options()
    assert set(options) == {"record", "visualize", "generate-symbol-map"} and all(options.values())
    unmentioned = [
        f"{name} {string}" for name, strings in options.items() for string in strings
        if not re.search(rf"(?<![\w-]){re.escape(string)}(?![\w-])", docs)
    ]
    assert not unmentioned, "options of --help that docs/*.md never mention:\n" + "\n".join(unmentioned)


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file (fenced blocks skipped)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_block = False
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if in_block or not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"<img[^>]*\ssrc=\"([^\"]+)\"", text)
    return [target for target in targets if not re.match(r"^[a-z]+:", target)]


def test_the_link_check_sees_links_and_anchors():
    readme = ROOT / "README.md"
    assert "docs/images/call-graph.png" in relative_links(readme)
    assert "where-does-the-time-go" in heading_anchors(ROOT / "docs" / "visualize.md")


@pytest.mark.parametrize("path", DOC_FILES, ids=[str(path.relative_to(ROOT)) for path in DOC_FILES])
def test_every_relative_link_and_image_exists(path: Path):
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
            broken.append(f"{target}: no such heading in {linked.relative_to(ROOT)}")
    assert not broken, f"{path.relative_to(ROOT)}:\n" + "\n".join(broken)
