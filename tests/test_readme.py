"""The README's console examples are what the commands really print on the bundled recordings.

Every ```console block of README.md that runs `./kernel-magnifier.py visualize`
is run here as written (in a scratch directory where `tests/` is this
repository's), and the lines the README shows must be what it prints, line for
line (messages and warnings in one stream, as on a terminal); a line `...`
stands for lines the README leaves out. So a number
quoted from a command's output cannot drift from what the command prints.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SCRIPT

README = ROOT / "README.md"
ELIDED = "..."


def console_examples(text: str) -> list[tuple[int, list[str], list[str]]]:
    """(line number, argv, shown output lines) of each console block that runs visualize."""
    examples = []
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        if lines[index].strip() != "```console":
            index += 1
            continue
        start = index + 1
        end = lines.index("```", start)
        block = lines[start:end]
        index = end + 1
        if not block or not block[0].startswith("$ ./kernel-magnifier.py visualize"):
            continue
        command = block[0][2:]
        shown = block[1:]
        while command.endswith("\\"):
            command = command[:-1] + " " + shown.pop(0).strip()
        examples.append((start + 1, shlex.split(command)[1:], shown))
    return examples


EXAMPLES = console_examples(README.read_text(encoding="utf-8"))


def test_the_readme_has_console_examples_to_check():
    assert len(EXAMPLES) >= 2, "README.md lost its visualize console examples"


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
            found = printed.index(line, position) if line in printed[position:] else -1
        else:
            found = position if position < len(printed) and printed[position] == line else -1
        if found < 0:
            missing.append(line)
            skipping = True  # find the next shown line anywhere after, so one difference is reported once
            continue
        position, skipping = found + 1, False
    return missing


@pytest.mark.parametrize("where, argv, shown", EXAMPLES, ids=[f"README.md:{where}" for where, _, _ in EXAMPLES])
def test_readme_console_example_prints_what_it_shows(tmp_path: Path, where: int, argv: list[str], shown: list[str]):
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    # as on a terminal: messages and warnings in the order they were printed
    result = subprocess.run([sys.executable, str(SCRIPT), *argv], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert result.returncode == 0, result.stdout
    printed = [re.sub(r"\s+$", "", line) for line in result.stdout.split("\n")]
    missing = missing_lines([line.rstrip() for line in shown], printed)
    assert not missing, f"README.md:{where} shows lines the command does not print:\n" + "\n".join(missing) + "\n--- printed:\n" + "\n".join(printed)
