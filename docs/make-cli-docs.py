#!/usr/bin/env python3
"""Write the man page (docs/kernel-magnifier.1) and the bash completion (docs/kernel-magnifier.bash-completion)
from kernel-magnifier.py's own argparse parser: its subcommands, their options, choices, defaults and help.

    docs/make-cli-docs.py            # rewrite both files
    docs/make-cli-docs.py --check    # exit 1 when a committed file differs from what the parser makes now

tests/test_cli_conventions.py runs --check, so an option added without running this fails the tests.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
MAN_PAGE = ROOT / "docs" / "kernel-magnifier.1"
COMPLETION = ROOT / "docs" / "kernel-magnifier.bash-completion"
PROGRAM_NAMES = ("kernel-magnifier.py", "./kernel-magnifier.py", "kernel-magnifier")  # what completion is registered for

# What the options that name files complete to, by (command, dest): endings (completed as FILE.ending, plus directories),
# "dir" (directories only) or "any" (every file). Options not here that take a value complete to nothing, or their choices.
DATA_ENDINGS = ["data", "dat", "txt", "gz", "xz", "old"]
MAP_ENDINGS = ["map", "xz", "gz"]
FILE_ARGUMENTS: dict[tuple[str, str], list[str] | str] = {
    ("record", "output"): DATA_ENDINGS,
    ("visualize", "input"): DATA_ENDINGS,
    ("visualize", "baseline"): DATA_ENDINGS,
    ("visualize", "output"): "writers",  # the writer table's endings
    ("visualize", "chart"): ["png"],
    ("visualize", "latency_chart"): ["png"],
    ("visualize", "symbol_map"): MAP_ENDINGS,
    ("visualize", "source_dir"): "dir",
    ("generate-symbol-map", "vmlinux"): "any",
    ("generate-symbol-map", "output"): MAP_ENDINGS,
    ("generate-symbol-map", "modules"): "dir",
}


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kernel_magnifier", ROOT / "kernel-magnifier.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["kernel_magnifier"] = module
    spec.loader.exec_module(module)
    return module


def subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """Each subcommand's parser and its one-line help, in the parser's order."""
    action = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in action._choices_actions}
    return {name: (sub, helps.get(name, "")) for name, sub in action.choices.items()}


def shown_actions(parser: argparse.ArgumentParser) -> list[tuple[str, list[argparse.Action]]]:
    """The options --help shows, by group (options, focus, drawing...), without the hidden ones."""
    groups = []
    for group in parser._action_groups:
        actions = [action for action in group._group_actions if action.help != argparse.SUPPRESS and action.option_strings]
        if actions:
            groups.append((group.title or "options", actions))
    return groups


def takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def expanded_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help as --help prints it (%(default)s filled in, the formatter's default note added), unwrapped."""
    formatter = parser._get_formatter()
    return " ".join(formatter._expand_help(action).split())


def value_name(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = parser._get_formatter()
    return formatter._format_args(action, formatter._get_default_metavar_for_optional(action))


# --- roff -------------------------------------------------------------------------


def roff_text(text: str) -> str:
    """Text for a roff line: backslashes escaped, option dashes as minus signs, no line starting with a control character."""
    text = text.replace("\\", "\\e")
    text = re.sub(r"(?<![\w-])-(?=[-\w])", r"\\-", text)  # -o, --output, -- COMMAND: minus signs, not hyphens
    text = re.sub(r"(?<=\\-)-", r"\\-", text)
    return "\\&" + text if text[:1] in (".", "'") else text


def roff_option(parser: argparse.ArgumentParser, action: argparse.Action) -> list[str]:
    names = ", ".join(f"\\fB{roff_text(name)}\\fR" for name in action.option_strings)
    value = f" \\fI{roff_text(value_name(parser, action))}\\fR" if takes_value(action) else ""
    return [".TP", names + value, roff_text(expanded_help(parser, action))]


def roff_block(text: str) -> list[str]:
    """An epilog (examples) as a no-fill block: its layout kept, as --help shows it."""
    lines = [".PP", ".nf", ".RS 2"]
    for line in text.strip("\n").splitlines():
        lines.append(roff_text(line) if line.strip() else ".sp")
    return [*lines, ".RE", ".fi"]


def synopsis(name: str, parser: argparse.ArgumentParser) -> list[str]:
    usage = " ".join(parser.format_usage().split())  # argparse's own usage line: every option in brackets
    usage = usage.removeprefix("usage: ").removeprefix(parser.prog).strip()
    return [f".B kernel-magnifier.py {name}", roff_text(usage), ".br"]


def man_page(tool: ModuleType) -> str:
    parser = tool.build_parser()
    commands = subcommands(parser)
    lines = [
        '.\\" Generated by docs/make-cli-docs.py from kernel-magnifier.py\'s argparse parser: do not edit.',
        f'.TH KERNEL-MAGNIFIER 1 "" "kernel-magnifier {tool.VERSION}" "User Commands"',
        ".nh",  # no hyphenation: option names are typed as printed
        ".ad l",
        ".SH NAME",
        f"kernel-magnifier \\- {roff_text(parser.description[0].lower() + parser.description[1:].rstrip('.'))}",
        ".SH SYNOPSIS",
    ]
    for name, (sub, _) in commands.items():
        lines += synopsis(name, sub)
    lines += [".B kernel-magnifier.py", "\\fB\\-\\-version\\fR | \\fB\\-\\-help\\fR", ".SH DESCRIPTION", roff_text(parser.description)]
    lines += [".SH COMMANDS"]
    for name, (_, summary) in commands.items():
        lines += [".TP", f"\\fB{name}\\fR", roff_text(summary)]
    for name, (sub, _) in commands.items():
        lines += [f'.SH "{name.upper()} OPTIONS"', roff_text(sub.description)]
        for title, actions in shown_actions(sub):
            if title != "options":
                lines += [f'.SS "{roff_text(title)}"']
            for action in actions:
                lines += roff_option(sub, action)
    lines += [".SH EXIT STATUS"]
    for status, meaning in tool.EXIT_STATUSES.items():
        lines += [".TP", f"\\fB{status}\\fR", roff_text(meaning)]
    lines += [".SH EXAMPLES", *roff_block(parser.epilog.replace("examples:\n", "", 1))]
    for name, (sub, _) in commands.items():
        if sub.epilog:
            lines += [f'.SS "{name}"', *roff_block(sub.epilog.replace("examples:\n", "", 1))]
    lines += [
        ".SH SEE ALSO",
        ".BR trace\\-cmd (1),",
        ".BR perf (1),",
        ".BR dot (1);",
        "docs/cli.md and docs/formats.md in the source tree (the JSON output's schema: docs/schema.json).",
    ]
    return "\n".join(lines) + "\n"


# --- bash completion -----------------------------------------------------------------


def file_pattern(spec: list[str] | str, tool: ModuleType) -> str:
    """The completion of a file argument: `_kernel_magnifier_files ENDING...`, `_kernel_magnifier_dirs`, or all files."""
    if spec == "dir":
        return "_kernel_magnifier_dirs"
    if spec == "any":
        return "_kernel_magnifier_files"
    endings = [ending[1:] for ending, _ in tool.OUTPUT_WRITERS] if spec == "writers" else spec
    return "_kernel_magnifier_files " + " ".join(endings)


def value_cases(name: str, parser: argparse.ArgumentParser, tool: ModuleType) -> list[str]:
    """One `case` arm per option that takes a value: its choices, its files, or nothing (a name, a number)."""
    cases = []
    for _, actions in shown_actions(parser):
        for action in actions:
            if not takes_value(action):
                continue
            options = "|".join(action.option_strings)
            if action.choices:
                reply = f'COMPREPLY=($(compgen -W "{" ".join(map(str, action.choices))}" -- "$cur"))'
            elif (name, action.dest) in FILE_ARGUMENTS:
                reply = file_pattern(FILE_ARGUMENTS[(name, action.dest)], tool)
            else:
                reply = "COMPREPLY=()"  # a function name, a number, a pid: nothing to offer
            cases.append(f"                {options}) {reply}; return ;;")
    return cases


def completion(tool: ModuleType) -> str:
    parser = tool.build_parser()
    commands = subcommands(parser)
    top = ["--help", "--version", *commands]
    arms = []
    for name, (sub, _) in commands.items():
        options = sorted({option for _, actions in shown_actions(sub) for action in actions for option in action.option_strings})
        arms += [
            f"        {name})",
            '            case "$prev" in',
            *value_cases(name, sub, tool),
            "            esac",
            f'            COMPREPLY=($(compgen -W "{" ".join(options)}" -- "$cur"))',
            "            ;;",
        ]
    return "\n".join([
        "# bash completion for kernel-magnifier.py: its commands, their options, the values and file endings they take.",
        "# Generated by docs/make-cli-docs.py from kernel-magnifier.py's argparse parser: do not edit.",
        "# Use: source docs/kernel-magnifier.bash-completion (or copy it to /usr/share/bash-completion/completions/).",
        "",
        "# Files with one of the endings (and directories to walk into); any file when none has them.",
        "_kernel_magnifier_files() {",
        "    local ending files=()",
        "    if [ $# -gt 0 ]; then",
        "        for ending in \"$@\"; do",
        "            mapfile -t -O \"${#files[@]}\" files < <(compgen -f -X \"!*.$ending\" -- \"$cur\")",
        "        done",
        "    fi",
        "    [ ${#files[@]} -eq 0 ] && mapfile -t files < <(compgen -f -- \"$cur\")",
        "    mapfile -t -O \"${#files[@]}\" files < <(compgen -d -S / -- \"$cur\")",
        "    mapfile -t COMPREPLY < <(printf '%s\\n' \"${files[@]}\" | sort -u)",
        "    compopt -o filenames -o nospace 2>/dev/null",
        "}",
        "",
        "_kernel_magnifier_dirs() {",
        "    mapfile -t COMPREPLY < <(compgen -d -S / -- \"$cur\")",
        "    compopt -o filenames -o nospace 2>/dev/null",
        "}",
        "",
        "_kernel_magnifier() {",
        "    local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\" command=\"\" i",
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        "        case \"${COMP_WORDS[i]}\" in",
        f"            {'|'.join(commands)}) command=\"${{COMP_WORDS[i]}}\"; break ;;",
        "        esac",
        "    done",
        "    if [ \"$command\" = record ]; then  # record [options] -- COMMAND ARGS: after --, the command's own completion",
        "        for ((i = 1; i < COMP_CWORD; i++)); do",
        "            if [ \"${COMP_WORDS[i]}\" = -- ]; then",
        "                [ \"$i\" -eq $((COMP_CWORD - 1)) ] && mapfile -t COMPREPLY < <(compgen -c -- \"$cur\")",
        "                return",
        "            fi",
        "        done",
        "    fi",
        "    case \"$command\" in",
        "        \"\")",
        f"            COMPREPLY=($(compgen -W \"{' '.join(top)}\" -- \"$cur\"))",
        "            ;;",
        *arms,
        "    esac",
        "}",
        "",
        f"complete -F _kernel_magnifier {' '.join(PROGRAM_NAMES)}",
        "",
    ])


def main() -> int:
    check = sys.argv[1:] == ["--check"]
    tool = load_tool()
    stale = []
    for path, text in ((MAN_PAGE, man_page(tool)), (COMPLETION, completion(tool))):
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale: {', '.join(stale)}: run docs/make-cli-docs.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
