#!/usr/bin/env python3
"""kernel-magnifier: see how the Linux kernel really executes.

Records kernel function calls with ftrace (``record``), maps function names to
source files from DWARF debug info (``generate-symbol-map``) and draws the calls
as a heat-coloured call graph plus a chart of the most-called functions
(``visualize``).

The file is a pipeline in sections, read top to bottom:
    Console      errors, progress, atomic output files
    Model        CallGraph: functions, call edges, what was not seen
    Input        opening plain/.gz/.xz traces, rejecting what is not text
    Parsers      function_graph text, function tracer text, trace-cmd report
    Symbol map   reading a name -> source file map
    Filters      --filter-filepath, --filter-execution-no, drawing pruning
    Output       heat theme, graphviz drawing, JSON, matplotlib chart
    Record       borrowing tracefs, streaming trace_pipe, giving tracefs back
    CLI          argparse, subcommands, main
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import itertools
import json
import lzma
import math
import os
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Callable

VERSION = "1.0.0"
PROG = "kernel-magnifier"


# ============================================================================
# Console: errors, progress, atomic outputs
# ============================================================================


class UserError(Exception):
    """An error the user can fix; printed as one line, no traceback."""


def say(message: str) -> None:
    print(message, flush=True)


def warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


class Progress:
    """A one-line progress display on stderr, silent when stderr is not a terminal."""

    def __init__(self, label: str, total: int | None = None, stream: IO[str] | None = None, counting: bool = False) -> None:
        self.label = label
        self.total = total
        self.counting = counting  # done/total are items, not bytes
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.started = time.monotonic()
        self.last_draw = 0.0
        self.drawn = False

    def update(self, done: int, extra: str = "") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last_draw < 0.2:
            return
        self.last_draw = now
        elapsed = now - self.started
        if self.total and self.counting:
            text = f"{self.label}: {done:,}/{self.total:,}, {elapsed:.0f} s"
        elif self.total:
            share = min(done / self.total, 1.0)
            text = f"{self.label}: {share:6.1%} of {format_size(self.total)}, {elapsed:.0f} s"
        else:
            text = f"{self.label}: {format_size(done)}, {elapsed:.0f} s"
        if extra:
            text += f", {extra}"
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def format_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} GiB"


@contextlib.contextmanager
def atomic_output(path: str, mode: str = "w", keep_old: bool = False) -> Iterator[str]:
    """Yield a temporary path beside `path`; rename it over `path` only on success.

    A failed or interrupted run therefore never leaves a half-written output.
    With keep_old, an existing `path` becomes `path.old` instead of being replaced.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}") from err
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        if keep_old and os.path.exists(path):
            os.replace(path, path + ".old")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def check_writable(path: str) -> None:
    """Fail before a long parse, not after it, when an output cannot be written."""
    if os.path.isdir(path):
        raise UserError(f"cannot write {path}: it is a directory")
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".kernel-magnifier-check.", dir=directory)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}") from err
    os.close(fd)
    os.unlink(tmp)


# ============================================================================
# Model: the call graph and what was not seen
# ============================================================================


@dataclass
class TraceStats:
    """Everything the user should know about what the trace did and did not show."""

    lines: int = 0
    events: int = 0  # ring-buffer events: entry=1, leaf=2 (entry+exit), exit=1, function line=1
    unparsed_lines: int = 0
    unparsed_example: str = ""
    unparsed_example_where: str = ""
    lost_by_cpu: dict[str, int] = field(default_factory=dict)
    lost_unknown_count: dict[str, int] = field(default_factory=dict)  # "[LOST EVENTS]" without a count
    duplicate_lost_lines: int = 0
    orphan_exits: int = 0  # exits whose entry was not in the trace
    calls_without_caller: int = 0  # calls below depth 0 whose caller was not in the trace
    kernel_stats: dict[str, dict[str, int]] = field(default_factory=dict)  # from a record data file
    metadata: dict[str, str] = field(default_factory=dict)
    formats: set[str] = field(default_factory=set)
    inputs: list[str] = field(default_factory=list)

    def note_unparsed(self, line: str, where: str) -> None:
        self.unparsed_lines += 1
        if not self.unparsed_example:
            self.unparsed_example = line[:200]
            self.unparsed_example_where = where

    def lost_per_cpu(self) -> dict[str, int]:
        """Lost events per CPU: the larger of the LOST lines and the kernel's own counters."""
        merged = dict(self.lost_by_cpu)
        for cpu, counters in self.kernel_stats.items():
            from_kernel = counters.get("overrun", 0) + counters.get("dropped-events", 0)
            merged[cpu] = max(merged.get(cpu, 0), from_kernel)
        return {cpu: n for cpu, n in sorted(merged.items(), key=lambda kv: _cpu_sort_key(kv[0])) if n}

    @property
    def lost_events(self) -> int:
        return sum(self.lost_per_cpu().values())

    def lost_share(self) -> float:
        lost = self.lost_events
        return lost / (lost + self.events) if lost + self.events else 0.0


def _cpu_sort_key(cpu: str) -> tuple[int, str]:
    return (int(cpu), "") if cpu.isdigit() else (1 << 30, cpu)


@dataclass
class CallGraph:
    """Functions (nodes) with their calls and times, caller -> callee edges with call counts."""

    calls: dict[str, int] = field(default_factory=dict)
    total_us: dict[str, float] = field(default_factory=dict)
    self_us: dict[str, float] = field(default_factory=dict)
    modules: dict[str, str] = field(default_factory=dict)
    edges: dict[tuple[str, str], int] = field(default_factory=dict)
    stats: TraceStats = field(default_factory=TraceStats)

    def add_node(self, name: str) -> None:
        if name not in self.calls:
            self.calls[name] = 0

    def nodes(self) -> list[str]:
        return list(self.calls)


# ============================================================================
# Input: plain, .gz and .xz files, rejecting what is not trace text
# ============================================================================

CHUNK_BYTES = 4 << 20
TRACE_CMD_MAGIC = b"\x17\x08\x44tracing"


def open_binary(path: str) -> tuple[IO[bytes], IO[bytes]]:
    """Return (decompressed stream, raw file) so progress can follow the raw file position."""
    try:
        raw = open(path, "rb")
    except FileNotFoundError:
        raise UserError(f"input file {path} does not exist (record one with 'sudo ./kernel-magnifier.py record')") from None
    except IsADirectoryError:
        raise UserError(f"input {path} is a directory, not a trace file") from None
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}") from err
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw), raw
    if path.endswith(".xz"):
        return lzma.LZMAFile(raw), raw
    return raw, raw


def read_text_lines(path: str, progress: Progress | None = None) -> Iterator[list[str]]:
    """Yield the file's lines in batches, streaming with bounded memory."""
    stream, raw = open_binary(path)
    with raw, stream:
        carry = b""
        first = True
        while True:
            try:
                block = stream.read(CHUNK_BYTES)
            except (OSError, EOFError, lzma.LZMAError) as err:
                raise UserError(f"{path} is damaged or truncated: {err}") from err
            if first:
                reject_non_text(path, block)
                first = False
            if not block:
                break
            block = carry + block
            cut = block.rfind(b"\n")
            if cut < 0:
                carry = block
                continue
            carry = block[cut + 1 :]
            yield block[:cut].decode("utf-8", "replace").split("\n")
            if progress:
                progress.update(raw.tell())
        if carry:
            yield [carry.decode("utf-8", "replace")]


def reject_non_text(path: str, head: bytes) -> None:
    if not head:
        raise UserError(f"{path} is empty: nothing was recorded")
    if head.startswith(TRACE_CMD_MAGIC):
        raise UserError(f"{path} is a binary trace-cmd file: convert it with 'trace-cmd report -i {path} > trace.txt'")
    sample = head[:65536]
    if b"\x00" in sample or sample.decode("utf-8", "replace").count("\ufffd") > len(sample) // 100:
        raise UserError(f"{path} is binary data, not ftrace text")


# ============================================================================
# Parsers: function_graph text, function tracer text, trace-cmd report
# ============================================================================
#
# Every line of every input goes through TraceParser.feed(). The common lines
# take a fast path (function_graph: split at the last "|  ", body looked up in a
# cache; function tracer: split at ": " and " <-"); everything else goes through
# classify_slow(), which knows every line kind in docs/ftrace-format notes.

# function_graph body after the "|  " separator: indentation + text.
GRAPH_BODY = re.compile(
    r"^( *)(?:"
    r"(?P<name>[^\s(\[{}/]+)(?: \[(?P<module>[^\]\s]+)\])?\((?P<args>.*?)\)(?P<kind> \{|;)(?: /\*.*\*/)?"
    r"|\}(?: /\* (?P<tail>[^\s\]]+?)(?: \[[^\]\s]+\])?(?: .*)? \*/)?"
    r"|(?P<comment>/\*.*\*/)"
    r")\s*$"
)
# The CPU, task and latency columns of a graph line (after abstime, before the duration field).
GRAPH_CONTEXT = re.compile(r"^ *(?:(?P<cpu>\d+)\) +)?(?:(?P<comm>.{1,16}?)-(?P<pid>\d+) +\| +)?(?:(?P<flags>[.a-zA-Z0-9]{4,7}) \| +)?$")
TIMESTAMP_TAIL = re.compile(r"\d+\.\d+$")
# A graph line without the "|  " separator (funcgraph-duration off): prefix then body.
GRAPH_NO_DURATION = re.compile(
    r"^(?: *\d+\.\d+ \|  )?(?: *(?P<cpu>\d+)\) )?(?: *(?P<comm>.{1,16}?)-(?P<pid>\d+) +\| )?"
    r"(?: *(?P<flags>[.a-zA-Z0-9]{4,7}) \| )?(?P<body> *\S.*)$"
)
IRQ_ARROW = re.compile(r"^(?: *\d+\.\d+ \|  )?(?: *(?P<cpu>\d+)\) )?.*(?P<arrow>==========>|<==========) *\|?\s*$")
LOST_LINE = re.compile(r"^CPU:(\d+) \[(?:LOST(?: (\d+))? EVENTS|(?:(\d+) )?EVENTS DROPPED)\]\s*$")
SWITCH_DASHES = re.compile(r"^ -{20,}\s*$")
SWITCH_LINE = re.compile(r"^ *(?P<cpu>\d+)\) +(?P<prev>.+?)-(?P<prev_pid>\d+) +=> +(?P<next>.+?)-(?P<next_pid>\d+) *$")
TRACE_CMD_HEADER = re.compile(r"^(?:cpus=\d+|version = \d+)\s*$")
OVERRUN_LINE = re.compile(r"^ \(Overruns: \d+\)\s*$")
METADATA_LINE = re.compile(r"^# ([A-Za-z0-9_-]+): ?(.*?)\s*$")
ENTRIES_HEADER = re.compile(r"^# entries-in-buffer/entries-written: (\d+)/(\d+)")
STATS_VALUE = re.compile(r"([a-z-]+)=(\d+)")
# Plain function tracer: "comm-pid [(tgid)] [cpu] [flags] timestamp: func <-parent".
FUNCTION_LINE = re.compile(
    r"^ *(?P<comm>.*?)-(?P<pid>\d+) +(?:\( *(?:\d+|-+)\) +)?\[(?P<cpu>\d+)\] +"
    r"(?:(?P<flags>[.a-zA-Z0-9]{4,7}) +)?(?P<ts>\d+(?:\.\d+)?): (?P<body>.*)$"
)
TRACE_CMD_GRAPH = re.compile(r"^(?P<event>funcgraph_entry|funcgraph_exit): +(?P<rest>.*)$")
TRACE_CMD_GRAPH_FIELDS = re.compile(r"^(?:[+!#*@$] )?(?:(?P<dur>\d+(?:\.\d+)?) us)? *\|  (?P<body>.*)$")
FUNCTION_BODY = re.compile(
    r"^(?P<name>[^\s(<]+)(?: \[(?P<module>[^\]\s]+)\])?(?:\(.*?\))?(?: <-{1,2}(?P<parent>[^\s(]+)(?: \[[^\]\s]+\])?)?\s*$"
)
SYMBOL_OFFSET = re.compile(r"\+0x[0-9a-f]+/0x[0-9a-f]+$")

ENTRY, LEAF, EXIT, COMMENT = 1, 2, 3, 4
# A repeated LOST line comes back at most this many lines later: the re-printed entry (one line), a
# context-switch block before it (4 lines), an irq arrow each side (2), then the LOST line again.
LOST_REPEAT_WINDOW = 8
BODY_CACHE_LIMIT = 200_000


# An open function_graph call on a task's stack is a list (cheaper than an object
# on the hot path): [name, depth, time spent in its children (us), irq flag].
FRAME_NAME, FRAME_DEPTH, FRAME_CHILD_US, FRAME_IRQ = 0, 1, 2, 3


class TaskState:
    """Per-task nesting: the open calls and calls whose caller is not known yet."""

    __slots__ = ("cpu", "irq_entry", "pending", "stack")

    def __init__(self) -> None:
        self.stack: list[list] = []
        # Calls seen with no caller frame; an orphan "} /* f */" one level up names their caller.
        self.pending: list[tuple[int, str]] = []
        self.irq_entry = False
        self.cpu: str | None = None


class TraceParser:
    """Turns ftrace text lines into a CallGraph, one line at a time, keeping only per-task state."""

    def __init__(self, graph: CallGraph) -> None:
        self.graph = graph
        self.stats = graph.stats
        self.tasks: dict[object, TaskState] = {}
        self.cpu_task: dict[str | None, object] = {}
        self.body_cache: dict[str, tuple | None] = {}
        self.context_cache: dict[str, tuple | bool] = {}
        self.function_cache: dict[str, tuple | bool] = {}
        self.last_lost: dict[str, tuple[int, int, tuple[int, int, int]]] = {}  # cpu -> (count, line number, event mark)
        self.called: list[str] = []
        self.called_from: list[tuple[str, str]] = []
        self.entries = self.leaves = self.exits = self.function_lines = 0
        self.where = ""
        self.line_no = 0

    # -- driving ----------------------------------------------------------

    def parse_file(self, path: str, progress: Progress | None = None) -> None:
        self.where = path
        self.stats.inputs.append(path)
        for batch in read_text_lines(path, progress):
            self.feed_lines(batch)

    def feed_lines(self, lines: Iterable[str]) -> None:
        """The hot loop over every line.

        Real traces are millions of lines, so the two common shapes are handled
        here with cached lookups instead of regular expressions: a function_graph
        line (split at its last "|  ": fixed 14-column duration field before it,
        the CPU/task columns before that) and a function tracer line (split at
        "] " and ": "). Everything else goes to classify_slow().
        """
        body_cache = self.body_cache
        context_cache = self.context_cache
        function_cache = self.function_cache
        graph_event = self.graph_event
        function_call = self.function_call
        classify_slow = self.classify_slow
        line_no = self.line_no
        for line in lines:
            line_no += 1
            sep = line.rfind("|  ")
            if sep >= 14:
                body = line[sep + 3 :]
                parsed = body_cache.get(body)
                if parsed is None and body not in body_cache:
                    parsed = self.classify_graph_body(body)
                if parsed is not None:
                    columns = line[: sep - 14]
                    context = context_cache.get(columns)
                    if context is None:
                        stamp = columns.find(" |  ")  # funcgraph-abstime: unique per line, not a cache key
                        if stamp >= 0:
                            context = context_cache.get(columns[stamp + 4 :])
                        if context is None:
                            context = self.graph_context(columns)
                    if context:
                        field = line[sep - 14 : sep]
                        unit = field.find(" us")
                        if unit > 2:
                            graph_event(parsed, context, float(field[2:unit]))
                            continue
                        if field.isspace():
                            graph_event(parsed, context, None)
                            continue
            elif sep < 0:
                close = line.find("] ")
                if close > 0:
                    colon = line.find(": ", close)
                    if colon > 0 and line[colon - 1].isdigit():
                        call = function_cache.get(line[colon + 2 :])
                        if call is None:
                            call = self.classify_function_body(line[colon + 2 :])
                        if call:
                            function_call(call)
                            continue
            self.line_no = line_no
            classify_slow(line.rstrip("\r"))
        self.line_no = line_no
        self.stats.lines = line_no
        self.flush_counts()

    def graph_context(self, context: str) -> tuple | bool:
        """(cpu, task key or None, irq flag) from the columns before the duration; cached."""
        text = context
        if "|  " in text:
            stamp = text.find(" |  ")
            if stamp > 0 and TIMESTAMP_TAIL.search(text, 0, stamp):
                text = text[stamp + 4 :]  # funcgraph-abstime: unique per line, keep it out of the cache key
                cached = self.context_cache.get(text)
                if cached is not None:
                    return cached
        match = GRAPH_CONTEXT.match(text)
        if match is None:
            result: tuple | bool = False
        else:
            cpu, pid, flags = match.group("cpu", "pid", "flags")
            if cpu is not None:
                cpu = str(int(cpu))
            key = task_key(pid, cpu) if pid is not None else None
            irq = flags[2] if flags and len(flags) > 2 else ""
            result = (cpu, key, irq)
            self.stats.formats.add("function_graph")
        if len(self.context_cache) >= BODY_CACHE_LIMIT:
            self.context_cache.clear()
        self.context_cache[text] = result
        return result

    def classify_function_body(self, body: str) -> tuple | bool:
        """(name, parent, module) of a function tracer line's text after the timestamp; cached."""
        if body.startswith(("funcgraph_entry:", "funcgraph_exit:", "<stack trace>", "<user stack trace>")):
            return False  # trace-cmd graph lines and stack-trace markers take the slow path
        if body.startswith("function:"):
            body = body[len("function:") :].strip()  # trace-cmd report of the function tracer
        match = FUNCTION_BODY.match(body)
        result: tuple | bool = False
        if match:
            parent = match.group("parent")
            result = (SYMBOL_OFFSET.sub("", match.group("name")), SYMBOL_OFFSET.sub("", parent) if parent else None, match.group("module"))
            self.stats.formats.add("function")
        if len(self.function_cache) >= BODY_CACHE_LIMIT:
            self.function_cache.clear()
        if "(" not in body:  # with func-args every body is unique
            self.function_cache[body] = result
        return result

    def classify_graph_body(self, body: str) -> tuple | None:
        """(kind, depth, name, module) for a function_graph body, cached; None if it is not one."""
        match = GRAPH_BODY.match(body)
        if match is None:
            parsed = None
        else:
            depth = len(match.group(1)) // 2
            if match.group("name"):
                kind = ENTRY if match.group("kind") == " {" else LEAF
                parsed = (kind, depth, match.group("name"), match.group("module"))
            elif match.group("comment"):
                parsed = (COMMENT, depth, None, None)
            else:
                parsed = (EXIT, depth, match.group("tail"), None)
        if len(self.body_cache) >= BODY_CACHE_LIMIT:
            self.body_cache.clear()  # funcgraph-args makes bodies unique; keep memory bounded
        if match is None or not match.group("args"):
            self.body_cache[body] = parsed
        return parsed

    # -- slow path: every other line kind ---------------------------------

    def classify_slow(self, line: str) -> None:
        stripped = line.strip()
        if not stripped:
            return
        if line.startswith("#"):
            self.header_line(line)
            return
        match = LOST_LINE.match(line)
        if match:
            count = match.group(2) or match.group(3)
            self.lost_line(match.group(1), int(count) if count is not None else None)
            return
        if SWITCH_DASHES.match(line) or OVERRUN_LINE.match(line) or TRACE_CMD_HEADER.match(line):
            return
        match = SWITCH_LINE.match(line)
        if match and "|" not in line:
            self.context_switch(match)
            return
        if "==========>" in line or "<==========" in line:
            match = IRQ_ARROW.match(line)
            if match:
                self.irq_arrow(match.group("cpu"), match.group("arrow"))
                return
        if stripped.startswith("=> ") or stripped == "<stack trace>":
            return  # func_stack_trace frames
        match = FUNCTION_LINE.match(line)
        if match:
            self.function_line(match)
            return
        if self.graph_line_without_separator(line):
            return
        call = self.classify_function_body(stripped) if " <-" in stripped or "function" in self.stats.formats else False
        if call:
            self.function_call(call)  # context-info off: only "func <-parent"
            return
        self.stats.note_unparsed(line, f"{self.where}:{self.line_no}")

    def header_line(self, line: str) -> None:
        if line.startswith("# entries-in-buffer/"):
            match = ENTRIES_HEADER.match(line)
            if match and int(match.group(2)) > int(match.group(1)):
                # A `trace` file read after the buffer wrapped: written - kept were overwritten.
                cpu = "all"
                self.stats.lost_by_cpu[cpu] = self.stats.lost_by_cpu.get(cpu, 0) + int(match.group(2)) - int(match.group(1))
            return
        match = METADATA_LINE.match(line)
        if not match:
            return
        key, value = match.groups()
        stats_key = re.fullmatch(r"cpu(\d+)-stats", key)
        if stats_key:
            counters = {k: int(v) for k, v in STATS_VALUE.findall(value)}
            cpu = stats_key.group(1)
            previous = self.stats.kernel_stats.get(cpu, {})
            self.stats.kernel_stats[cpu] = {k: previous.get(k, 0) + v for k, v in counters.items()}
        elif key not in ("tracer",) or "tracer" not in self.stats.metadata:
            self.stats.metadata.setdefault(key, value)

    def lost_line(self, cpu: str, count: int | None) -> None:
        """A "CPU:N [LOST M EVENTS]" line: M events of CPU N were overwritten before they were read.

        trace_pipe prints the same loss twice in one case (kernel/trace/trace.c, trace_functions_graph.c): a
        read() that ended on a function_graph entry which no longer fit in the page of text (print_graph_entry
        had already consumed it for its leaf look-ahead, so it is saved as data->failed). The next read() finds
        the next event with ring_buffer_peek(), and print_trace_line() prints that event's LOST line; then
        print_graph_function_flags() prints the saved entry instead of the event and returns NO_CONSUME, so the
        same event, with the same lost count (ring_buffer_consume() alone clears it), is found and its LOST line
        printed again. Between the two lines there is exactly that one entry (on any CPU), maybe after a
        context-switch block or an irq arrow, and nothing else; two real losses have at least one event of
        their own CPU between them, and an equal count alone proves nothing (a lost page is often as big as the
        last one).
        """
        stats = self.stats
        if count is None:
            stats.lost_unknown_count[cpu] = stats.lost_unknown_count.get(cpu, 0) + 1
        else:
            mark = self.event_mark()
            last = self.last_lost.pop(cpu, None)
            if last is not None and last[0] == count and self.line_no - last[1] <= LOST_REPEAT_WINDOW and one_entry_between(last[2], mark):
                stats.duplicate_lost_lines += 1  # not counted; a third equal line would be a new loss
            else:
                self.last_lost[cpu] = (count, self.line_no, mark)
                stats.lost_by_cpu[cpu] = stats.lost_by_cpu.get(cpu, 0) + count
        # Also after a repeat: the entry printed between the two lines may be one of this CPU's, from before the loss.
        self.break_call_stacks(cpu)

    def event_mark(self) -> tuple[int, int, int]:
        """Where the parse is in events: (flushed events, entry and leaf lines, exit and function lines) of this batch."""
        return (self.stats.events, self.entries + self.leaves, self.exits + self.function_lines)

    def break_call_stacks(self, cpu: str) -> None:
        """After lost events on a CPU, the open calls of the tasks that ran there are unknown."""
        for state in self.tasks.values():
            if state.cpu == cpu or state.cpu is None:
                state.stack.clear()
                state.pending.clear()

    def context_switch(self, match: re.Match[str]) -> None:
        cpu = match.group("cpu")
        prev_key = task_key(match.group("prev_pid"), cpu)
        current = self.cpu_task.get(cpu)
        placeholder = ("cpu", cpu)
        if current == placeholder and placeholder in self.tasks and prev_key not in self.tasks:
            # Lines before the first switch block on this CPU belonged to the previous task.
            self.tasks[prev_key] = self.tasks.pop(placeholder)
        next_key = task_key(match.group("next_pid"), cpu)
        self.cpu_task[cpu] = next_key
        self.cpu_task[None] = next_key

    def irq_arrow(self, cpu: str | None, arrow: str) -> None:
        if arrow == "==========>":
            state = self.task_state(normalize_cpu(cpu), None)
            state.irq_entry = True

    def graph_line_without_separator(self, line: str) -> bool:
        """function_graph with funcgraph-duration off (no "|  " column), or no columns at all."""
        match = GRAPH_NO_DURATION.match(line)
        if match is None:
            return False
        body = match.group("body")
        parsed = self.classify_graph_body(body)
        if parsed is None:
            # trace-cmd report: "comm-pid [cpu] ts: funcgraph_entry: 1.2 us | body"
            return self.trace_cmd_graph_line(line)
        self.stats.formats.add("function_graph")
        self.graph_event(parsed, self.context_of(match.group("cpu"), match.group("pid"), match.group("flags")), None)
        return True

    def trace_cmd_graph_line(self, line: str) -> bool:
        match = FUNCTION_LINE.match(line)
        if not match:
            return False
        event = TRACE_CMD_GRAPH.match(match.group("body"))
        if not event:
            return False
        fields = TRACE_CMD_GRAPH_FIELDS.match(event.group("rest"))
        if not fields:
            return False
        parsed = self.classify_graph_body(fields.group("body"))
        if parsed is None:
            return False
        self.stats.formats.add("trace-cmd report")
        context = self.context_of(match.group("cpu"), match.group("pid"), match.group("flags"))
        self.graph_event(parsed, context, float(fields.group("dur")) if fields.group("dur") else None)
        return True

    @staticmethod
    def context_of(cpu: str | None, pid: str | None, flags: str | None) -> tuple:
        cpu = normalize_cpu(cpu)
        return (cpu, task_key(pid, cpu) if pid is not None else None, flags[2] if flags and len(flags) > 2 else "")

    # -- function tracer ----------------------------------------------------

    def function_line(self, match: re.Match[str]) -> None:
        call = self.classify_function_body(match.group("body"))
        if call:
            self.function_call(call)
        elif match.group("body").startswith(("funcgraph_entry:", "funcgraph_exit:")):
            if not self.trace_cmd_graph_line(match.string):
                self.stats.note_unparsed(match.string, f"{self.where}:{self.line_no}")
        elif not match.group("body").startswith(("<stack trace>", "<user stack trace>")):
            self.stats.note_unparsed(match.string, f"{self.where}:{self.line_no}")

    def function_call(self, call: tuple) -> None:
        """One function tracer line: one call of `name`, made from `parent` (the call site)."""
        name, parent, module = call
        self.called.append(name)
        self.function_lines += 1
        if module:
            self.graph.modules[name] = module
        if parent:
            self.called_from.append((parent, name))

    # -- function_graph -----------------------------------------------------

    def task_state(self, cpu: str | None, key: object) -> TaskState:
        """The nesting state of the task a line belongs to (from its pid, or who runs on its CPU)."""
        if key is None:
            key = self.cpu_task.get(cpu)
            if key is None:
                key = self.cpu_task[cpu] = ("cpu", cpu)
        state = self.tasks.get(key)
        if state is None:
            state = self.tasks[key] = TaskState()
        state.cpu = cpu
        return state

    def graph_event(self, parsed: tuple, context: tuple, duration: float | None) -> None:
        """One function_graph entry, leaf or exit line at its depth, for its task.

        Called for every line of a trace: counts go to lists that flush_counts()
        folds into the graph once per batch.
        """
        kind, depth, name, module = parsed
        if kind == COMMENT:
            return
        cpu, key, irq = context
        state = self.tasks.get(key) if key is not None else None
        if state is None:
            state = self.task_state(cpu, key)
        state.cpu = cpu
        if kind == EXIT:
            self.exits += 1
            self.graph_exit(state, depth, name, duration)
            return
        stack = state.stack
        while stack and stack[-1][FRAME_DEPTH] >= depth:
            stack.pop()  # its exit was lost
        if state.pending and state.pending[-1][0] >= depth:
            state.pending = [p for p in state.pending if p[0] < depth]
        parent = stack[-1] if stack and stack[-1][FRAME_DEPTH] == depth - 1 else None
        if parent is not None and (state.irq_entry or (irq != parent[FRAME_IRQ] and irq not in ("", "."))):
            parent = None  # an interrupt handler is not a callee of what it interrupted
        state.irq_entry = False
        self.called.append(name)
        if module:
            self.graph.modules[name] = module
        if parent is not None:
            self.called_from.append((parent[FRAME_NAME], name))
        elif depth > 0:
            self.stats.calls_without_caller += 1
            state.pending.append((depth, name))
        if kind == ENTRY:
            self.entries += 1
            stack.append([name, depth, 0.0, irq])
        else:
            self.leaves += 1
            if duration is not None:
                graph = self.graph
                graph.total_us[name] = graph.total_us.get(name, 0.0) + duration
                graph.self_us[name] = graph.self_us.get(name, 0.0) + duration
                if parent is not None:
                    parent[FRAME_CHILD_US] += duration

    def flush_counts(self) -> None:
        """Fold the batch's calls and edges into the graph (Counter does the counting in C)."""
        graph = self.graph
        calls = graph.calls
        for name, count in Counter(self.called).items():
            calls[name] = calls.get(name, 0) + count
        edges = graph.edges
        for edge, count in Counter(self.called_from).items():
            edges[edge] = edges.get(edge, 0) + count
            if edge[0] not in calls:
                calls[edge[0]] = 0
        self.stats.events += self.entries + 2 * self.leaves + self.exits + self.function_lines
        self.called.clear()
        self.called_from.clear()
        self.entries = self.leaves = self.exits = self.function_lines = 0

    def graph_exit(self, state: TaskState, depth: int, tail: str | None, duration: float | None) -> None:
        stack = state.stack
        graph = self.graph
        while stack and stack[-1][FRAME_DEPTH] > depth:
            stack.pop()
        if stack and stack[-1][FRAME_DEPTH] == depth and (tail is None or tail == stack[-1][FRAME_NAME]):
            name, _, child_us, _ = stack.pop()
            if duration is not None:
                graph.total_us[name] = graph.total_us.get(name, 0.0) + duration
                graph.self_us[name] = graph.self_us.get(name, 0.0) + duration - child_us
                if stack and stack[-1][FRAME_DEPTH] == depth - 1:
                    stack[-1][FRAME_CHILD_US] += duration
            return
        if stack and stack[-1][FRAME_DEPTH] == depth:
            stack.pop()  # a different function closed here: the entry we hold was not its own
        self.stats.orphan_exits += 1
        if tail is None:
            return
        graph.add_node(tail)
        # Calls one level deeper whose caller was unknown were made by this function.
        still_pending = []
        for pending_depth, callee in state.pending:
            if pending_depth == depth + 1:
                self.called_from.append((tail, callee))
                self.stats.calls_without_caller -= 1
            elif pending_depth <= depth:
                still_pending.append((pending_depth, callee))
        state.pending = still_pending


def one_entry_between(before: tuple[int, int, int], after: tuple[int, int, int]) -> bool:
    """Between two event marks: exactly one entry or leaf line and no other event.

    A batch flush between the two lines (the odds: the lines' distance over a batch's ~50,000 lines) hides what
    came between, so they then count as two losses; a record data file's kernel counters still win."""
    return before[0] == after[0] and after[1] - before[1] == 1 and after[2] == before[2]


def normalize_cpu(cpu: str | None) -> str | None:
    """"001" (function tracer), "1" (function_graph, LOST lines) -> "1"."""
    if cpu is None or len(cpu) == 1:
        return cpu
    return cpu.lstrip("0") or "0"


def task_key(pid: str | None, cpu: str | None) -> object:
    """The idle task has pid 0 on every CPU: key it per CPU; other tasks by pid."""
    if pid == "0":
        return ("idle", cpu)
    return pid


def parse_traces(paths: list[str]) -> CallGraph:
    graph = CallGraph()
    for path in paths:
        size = file_size(path)
        progress = Progress(f"parsing {path}", size)
        parser = TraceParser(graph)
        stats = graph.stats
        # Judge each input on its own lines: a trace first must not let a plain text file pass second.
        formats_before, stats.formats = stats.formats, set()
        example_before = (stats.unparsed_example, stats.unparsed_example_where)
        stats.unparsed_example = ""
        parser.parse_file(path, progress)
        progress.close()
        file_formats, file_example = stats.formats, stats.unparsed_example
        stats.formats = formats_before | file_formats
        if example_before[0]:
            stats.unparsed_example, stats.unparsed_example_where = example_before
        if parser.line_no == 0:
            raise UserError(f"{path} is empty: nothing was recorded")
        if not file_formats.intersection({"function_graph", "function", "trace-cmd report"}):
            example = file_example or "(only comment lines)"
            raise UserError(f"{path} is not an ftrace text trace: no function_graph or function lines found (first unrecognised line: {example!r})")
    return graph


def file_size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


# ============================================================================
# Symbol map: function name -> source file(s)
# ============================================================================

DEFAULT_SYMBOL_MAP = "symbol-filepath.map"
SYMBOL_MAP_HEADER = "# kernel-magnifier symbol map 1"
CLONE_SUFFIX = re.compile(r"(?:\.(?:isra|constprop|part|cold|llvm|lto_priv|localalias)(?:\.[0-9a-f]+)*)+$")


def add_definitions(files: dict[str, list[str]], name: str, definitions: Iterable[str]) -> None:
    """Add NAME's definitions (source files) to the map, each once, in order of first appearance."""
    known = files.setdefault(name, [])
    for definition in definitions:
        if definition not in known:
            known.append(definition)


def base_function_name(name: str) -> str:
    """`foo.constprop.0.isra.0` -> `foo`: GCC/Clang clones keep the DWARF name of the original."""
    return CLONE_SUFFIX.sub("", name)


class SymbolMap:
    """Function name -> source files, relative to the kernel tree."""

    def __init__(self, files: dict[str, list[str]] | None = None, path: str = "") -> None:
        self.files: dict[str, list[str]] = files or {}
        self.path = path

    def __len__(self) -> int:
        return len(self.files)

    def lookup(self, name: str) -> list[str]:
        found = self.files.get(name)
        if found is None:
            found = self.files.get(base_function_name(name), [])
        return found

    @classmethod
    def load(cls, path: str) -> SymbolMap:
        """Read our tab-separated format or the original tool's `name|path` lines."""
        files: dict[str, list[str]] = {}
        opener = lzma.open if path.endswith(".xz") else gzip.open if path.endswith(".gz") else open
        try:
            with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    line = line.rstrip("\n")
                    if not line or line.startswith("#"):
                        continue
                    if "\t" in line:
                        name, *paths = line.split("\t")
                    elif "|" in line:
                        name, _, one_path = line.partition("|")
                        paths = [one_path]
                    else:
                        raise UserError(f"{path} is not a symbol map: line {line[:80]!r} has neither a tab nor '|'")
                    add_definitions(files, name.strip(), filter(None, (source.strip() for source in paths)))
        except OSError as err:
            raise UserError(f"cannot read symbol map {path}: {err.strerror}") from err
        return cls(files, path)


# ============================================================================
# Symbol map generation: DWARF definitions joined with ELF symbols
# ============================================================================
#
# Only out-of-line definitions count: a DW_TAG_subprogram with code (low_pc or
# ranges), named directly or through DW_AT_abstract_origin (GCC clones such as
# foo.isra.0 have no name of their own). Declarations, inline-only abstract
# instances, variables and members never enter the map. ELF symbols (nm) are
# then placed by address inside those definitions: that gives exactly the names
# ftrace prints (clone suffixes, syscall wrappers) and which of several
# same-named static functions really have code.

DEFAULT_VMLINUX = f"/usr/lib/debug/boot/vmlinux-{os.uname().release}"
DEFINITION_SEPARATOR = "|"  # "include/trace/events/sched.h|kernel/sched/core.c": declared in one, compiled in the other
# Whole top-level DIEs of the kinds the map needs; the literal "DW_TAG_" lets
# the regex engine skip types and variables (94 % of the dump) in C.
LLVM_DIE_BLOCK = re.compile(rb"DW_TAG_(subprogram|compile_unit|partial_unit)\n(.*?)\n\n", re.S)
LLVM_ATTRIBUTE = re.compile(
    rb"^\s+DW_AT_(name|decl_file|low_pc|high_pc|ranges|abstract_origin|specification|declaration|comp_dir)\t\((.*)$"
    rb"|^\s+\[0x([0-9a-f]+), 0x([0-9a-f]+)\)",
    re.M,
)
QUOTED = re.compile(r'"(.*)"')
REFERENCE = re.compile(r"^(0x[0-9a-f]+)")
LIBDWARF_DIE = re.compile(r"^<(\d+)><0x([0-9a-f]+)(?:\+0x[0-9a-f]+)?><(DW_TAG_\w+)>(.*)$")
LIBDWARF_ATTRS = {
    "name": re.compile(r" DW_AT_name<([^>]*)>"),
    "decl_file": re.compile(r" DW_AT_decl_file<0x([0-9a-f]+)(?: ([^>]*))?>"),
    "low_pc": re.compile(r" DW_AT_low_pc<(0x[0-9a-f]+)>"),
    "high_pc": re.compile(r" DW_AT_high_pc<(?:<offset-from-lowpc> \d+ <highpc: )?(0x[0-9a-f]+)>"),
    "ranges": re.compile(r" DW_AT_ranges<"),
    "abstract_origin": re.compile(r" DW_AT_(?:abstract_origin|specification)<<(0x[0-9a-f]+)>>"),
    "declaration": re.compile(r" DW_AT_declaration<yes"),
    "comp_dir": re.compile(r" DW_AT_comp_dir<([^>]*)>"),
}


@dataclass
class Subprogram:
    offset: int
    name: str | None = None
    decl_file: str | None = None
    origin: int | None = None
    origin_name: str | None = None
    declaration: bool = False
    ranges: list[tuple[int, int]] = field(default_factory=list)
    has_code: bool = False
    low_pc: int | None = None


@dataclass
class DwarfCensus:
    """What the DWARF walk saw, for the summary and the map header."""

    units: int = 0
    subprograms: int = 0
    declarations: int = 0
    definitions: int = 0
    clones: int = 0
    without_path: int = 0
    unresolved_origin: int = 0
    path_from_unit: int = 0

    def add(self, other: DwarfCensus) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class TreePaths:
    """Turns DWARF paths into paths inside the kernel tree, learning the build layout from the data.

    Debian builds in <source>/debian/build/build_amd64_none_amd64 (comp_dir) and
    records decl files as debian/build/.../net/ipv4/tcp.c; assembly units carry
    absolute /build/reproducible-path/linux-x.y/arch/... paths. Nothing here is
    Debian-specific: the overlap of comp_dir's tail with a relative path's head
    is the build directory, and comp_dir minus it is the source root.
    """

    def __init__(self) -> None:
        self.roots: list[str] = []

    def relative(self, path: str, comp_dir: str) -> str:
        if path.startswith("/"):
            for root in [comp_dir, *self.roots]:
                if root and path.startswith(root.rstrip("/") + "/"):
                    return os.path.normpath(path[len(root.rstrip("/")) + 1 :])
            return os.path.normpath(path)
        parts = os.path.normpath(path).split("/")
        tail = comp_dir.rstrip("/").split("/")
        for overlap in range(min(len(parts) - 1, len(tail)), 0, -1):
            if tail[-overlap:] == parts[:overlap]:
                root = "/".join(tail[:-overlap]) or "/"
                if root not in self.roots:
                    self.roots.append(root)
                return "/".join(parts[overlap:])
        return "/".join(parts)


class DefinitionCollector:
    """Collects out-of-line definitions, one compile unit at a time (memory bounded by a unit)."""

    def __init__(self) -> None:
        self.census = DwarfCensus()
        self.paths = TreePaths()
        self.files: dict[str, list[str]] = {}
        self.intervals: list[tuple[int, int, tuple[str, ...]]] = []
        self.unit_name = ""
        self.comp_dir = ""
        self.unit: list[Subprogram] = []

    def start_unit(self, name: str, comp_dir: str) -> None:
        self.finish_unit()
        self.census.units += 1
        self.unit_name, self.comp_dir = name, comp_dir

    def add(self, die: Subprogram) -> None:
        self.census.subprograms += 1
        if die.declaration:
            self.census.declarations += 1
        self.unit.append(die)

    def finish_unit(self) -> None:
        by_offset = {die.offset: die for die in self.unit}
        unit_file = self.paths.relative(self.unit_name, self.comp_dir) if self.unit_name else ""
        for die in self.unit:
            if die.declaration or not die.has_code:
                continue
            origin = by_offset.get(die.origin) if die.origin is not None else None
            name = die.name or (origin.name if origin else None) or die.origin_name
            decl_file = die.decl_file or (origin.decl_file if origin else None)
            if name is None:
                self.census.unresolved_origin += 1
                continue
            self.census.definitions += 1
            if die.name is None:
                self.census.clones += 1
            parts = []
            if decl_file:
                parts.append(self.paths.relative(decl_file, self.comp_dir))
            else:
                self.census.path_from_unit += 1
            if unit_file and unit_file not in parts:
                parts.append(unit_file)  # defined in a header or #included .c: the filter matches either
            if not parts:
                self.census.without_path += 1
                continue
            definition = DEFINITION_SEPARATOR.join(parts)
            add_definitions(self.files, name, [definition])
            for low, high in die.ranges:
                self.intervals.append((low, high, (definition,)))
        self.unit = []

    def symbol_map(self, symbols: list[tuple[int, str]]) -> dict[str, list[str]]:
        """Place ELF function symbols inside DWARF definitions by address; keep DWARF names ftrace cannot print too."""
        self.finish_unit()
        if not symbols:
            return {name: files for name, files in self.files.items()}
        import bisect

        self.intervals.sort()
        starts = [low for low, _, _ in self.intervals]
        by_symbol: dict[str, list[str]] = {}
        for address, name in symbols:
            index = bisect.bisect_right(starts, address) - 1
            if index < 0 or not (self.intervals[index][0] <= address < self.intervals[index][1]):
                files = self.files.get(base_function_name(name))
                if not files:
                    continue
            else:
                files = list(self.intervals[index][2])
            add_definitions(by_symbol, name, files)
        for name, files in self.files.items():
            by_symbol.setdefault(name, files)
        return by_symbol


def read_ahead(stream: IO[bytes], depth: int = 32) -> Iterator[bytes]:
    """Chunks of a pipe, read by a thread so the writer never waits on a full pipe while we parse.

    Without it dwarfdump and the parser take turns (a 64 KiB pipe fills in
    microseconds) and the run takes their sum instead of the slower of the two.
    Memory stays bounded by `depth` chunks.
    """
    import queue
    import threading

    with contextlib.suppress(OSError, AttributeError):
        import fcntl

        fcntl.fcntl(stream.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    chunks: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=depth)

    def pump() -> None:
        try:
            while chunk := os.read(stream.fileno(), 1 << 20):
                chunks.put(chunk)
            chunks.put(b"")
        except BaseException as err:  # handed to the consumer, which raises it
            chunks.put(err)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        item = chunks.get()
        if isinstance(item, BaseException):
            raise item
        if not item:
            return
        yield item


def chunk_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    carry = b""
    for chunk in chunks:
        lines = (carry + chunk).split(b"\n")
        carry = lines.pop()
        yield from lines
    if carry:
        yield carry


def parse_llvm_dwarfdump(chunks: Iterable[bytes], collector: DefinitionCollector, progress: Progress | None) -> None:
    """Parse `llvm-dwarfdump --debug-info --recurse-depth=1`: top-level DIEs of every unit, blank-line separated."""
    done = 0
    carry = b""
    for chunk in itertools.chain(chunks, [b""]):
        done += len(chunk)
        block = carry + (chunk or b"\n\n")  # at the end, close the last DIE
        resume = 0
        for match in LLVM_DIE_BLOCK.finditer(block):
            add_llvm_die(block, match, collector)
            resume = match.end()
        if not chunk:
            break
        last_gap = block.rfind(b"\n\n")
        carry = block[max(resume, last_gap + 1) :]
        if progress:
            progress.update(done, f"{collector.census.subprograms:,} subprograms")
    collector.finish_unit()


def add_llvm_die(block: bytes, match: re.Match[bytes], collector: DefinitionCollector) -> None:
    tag, body = match.groups()
    line_start = block.rfind(b"\n", 0, match.start()) + 1
    offset = int(block[line_start : block.index(b":", line_start)], 16)
    if tag != b"subprogram":
        unit = {attr.decode(): quoted(value.decode("utf-8", "replace")) for attr, value, _, _ in LLVM_ATTRIBUTE.findall(body) if attr}
        collector.start_unit(unit.get("name", ""), unit.get("comp_dir", ""))
        return
    die = Subprogram(offset)
    last_attr = b""
    for attr, value, low, high in LLVM_ATTRIBUTE.findall(body):
        if attr:
            last_attr = attr
            apply_llvm_attribute(die, attr.decode(), value.decode("utf-8", "replace"))
        elif last_attr == b"ranges":
            die.ranges.append((int(low, 16), int(high, 16)))
    collector.add(die)


def quoted(text: str) -> str:
    match = QUOTED.search(text)
    return match.group(1) if match else text.rstrip(")")


def apply_llvm_attribute(die: Subprogram, attr: str, text: str) -> None:
    if attr == "name":
        die.name = quoted(text)
    elif attr == "decl_file":
        die.decl_file = quoted(text)
    elif attr == "low_pc":
        die.low_pc = int(text.rstrip(")"), 16)
        die.has_code = True
    elif attr == "high_pc" and die.low_pc is not None:
        die.ranges.append((die.low_pc, int(text.rstrip(")"), 16)))
    elif attr == "ranges":
        die.has_code = True
    elif attr in ("abstract_origin", "specification"):
        reference = REFERENCE.match(text)
        die.origin = int(reference.group(1), 16) if reference else None
        die.origin_name = quoted(text) if '"' in text else None
    elif attr == "declaration":
        die.declaration = text.startswith("true")


def parse_libdwarf_dwarfdump(chunks: Iterable[bytes], collector: DefinitionCollector, progress: Progress | None) -> None:
    """Stream libdwarf's `dwarfdump -i -d` (one line per DIE).

    Its 20210528 release prints no path for a decl_file in DWARF 5's
    implicit-const form; index 1 is the unit's own source file, other indexes
    stay without a path and are counted.
    """
    done = 0
    for raw in chunk_lines(chunks):
        done += len(raw) + 1
        line = raw.decode("utf-8", "replace")
        match = LIBDWARF_DIE.match(line)
        if not match:
            continue
        depth, offset, tag, attrs = match.groups()
        if tag in ("DW_TAG_compile_unit", "DW_TAG_partial_unit"):
            name = LIBDWARF_ATTRS["name"].search(attrs)
            comp_dir = LIBDWARF_ATTRS["comp_dir"].search(attrs)
            collector.start_unit(name.group(1) if name else "", comp_dir.group(1) if comp_dir else "")
        elif tag == "DW_TAG_subprogram" and depth == "1":
            collector.add(libdwarf_subprogram(int(offset, 16), attrs, collector))
        if progress and done & 0xFFFFF <= len(raw):
            progress.update(done, f"{collector.census.subprograms:,} subprograms")


def libdwarf_subprogram(offset: int, attrs: str, collector: DefinitionCollector) -> Subprogram:
    die = Subprogram(offset)
    found = {key: pattern.search(attrs) for key, pattern in LIBDWARF_ATTRS.items()}
    if found["name"]:
        die.name = found["name"].group(1)
    if found["decl_file"]:
        index, path = found["decl_file"].groups()
        if path:
            die.decl_file = path
        elif int(index, 16) == 1:
            die.decl_file = collector.unit_name
        else:
            collector.census.without_path += 1
    if found["low_pc"]:
        die.has_code = True
        low = int(found["low_pc"].group(1), 16)
        if found["high_pc"]:
            die.ranges.append((low, int(found["high_pc"].group(1), 16)))
    if found["ranges"]:
        die.has_code = True
    if found["abstract_origin"]:
        die.origin = int(found["abstract_origin"].group(1), 16)
    die.declaration = found["declaration"] is not None
    return die


class ElfSymbols:
    """Function symbols (t/T/w/W) from nm, the names ftrace prints: started early, it runs beside dwarfdump."""

    def __init__(self, vmlinux: str) -> None:
        import shutil
        import subprocess

        self.output = tempfile.TemporaryFile()
        nm = shutil.which("nm")
        self.process = subprocess.Popen([nm, "--defined-only", vmlinux], stdout=self.output, stderr=subprocess.DEVNULL, env=c_locale()) if nm else None

    def result(self) -> list[tuple[int, str]]:
        if self.process is None:
            warn("nm (binutils) not found: mapping DWARF names only, without the ELF symbol join")
            return []
        status = self.process.wait()
        self.output.seek(0)
        text = self.output.read().decode("utf-8", "replace")
        self.output.close()
        if status != 0:
            return []
        symbols = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in "tTwW":
                symbols.append((int(parts[0], 16), parts[2]))
        return symbols

    def cancel(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.output.close()


def c_locale() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C"}


def find_dwarfdump(requested: str | None) -> tuple[str, str]:
    """(path, kind): llvm-dwarfdump prints every path resolved, so it is preferred."""
    import shutil

    candidates = [requested] if requested else ["llvm-dwarfdump", *[f"llvm-dwarfdump-{v}" for v in range(20, 10, -1)], "dwarfdump"]
    for candidate in candidates:
        path = shutil.which(candidate) if candidate else None
        if path:
            return path, dwarfdump_kind(path)
    if requested:
        raise UserError(f"dwarfdump program {requested} not found")
    raise UserError("no dwarfdump found: install llvm (llvm-dwarfdump, preferred) or dwarfdump, or name one with --dwarfdump")


def dwarfdump_kind(path: str) -> str:
    import subprocess

    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, env=c_locale())
    except (OSError, subprocess.TimeoutExpired) as err:
        raise UserError(f"cannot run {path}: {err}") from err
    return "llvm" if "LLVM" in version.stdout + version.stderr else "libdwarf"


def check_vmlinux(path: str) -> None:
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except FileNotFoundError:
        raise UserError(
            f"{path} does not exist: install the kernel's debug symbols (Debian: linux-image-$(uname -r)-dbg) or name the vmlinux with -k"
        ) from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not a vmlinux") from None
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}") from err
    if head != b"\x7fELF":
        raise UserError(f"{path} is not an ELF file (a compressed vmlinuz? the debug vmlinux is needed)")


class NoDebugInfo(UserError):
    """dwarfdump read the file fine but found no DWARF in it (a stripped module, a vmlinuz)."""


def run_dwarfdump(program: str, kind: str, path: str, collector: DefinitionCollector, progress: Progress | None) -> None:
    """Stream one ELF file's DWARF through the parser; a failing or empty dump is a UserError."""
    import subprocess

    command = [program, "--debug-info", "--recurse-depth=1", path] if kind == "llvm" else [program, "-i", "-d", path]
    before = collector.census.subprograms
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, env=c_locale())
        assert process.stdout is not None
        parse = parse_llvm_dwarfdump if kind == "llvm" else parse_libdwarf_dwarfdump
        try:
            parse(read_ahead(process.stdout), collector, progress)
        except BaseException:
            process.kill()  # also on Ctrl-C: no dwarfdump left writing into a pipe nobody reads
            raise
        finally:
            status = process.wait()
            process.stdout.close()
        errors.seek(0)
        message = errors.read().decode("utf-8", "replace").strip().splitlines()
    seen = collector.census.subprograms - before
    tool = os.path.basename(program)
    if status != 0 and seen == 0:
        raise UserError(f"{tool} could not read {path}: {message[-1] if message else f'exit status {status}'}")
    if status != 0:
        raise UserError(f"{tool} stopped with an error on {path} (truncated file?): {message[-1] if message else status}")
    if seen == 0:
        raise NoDebugInfo(f"{path} has no DWARF debug info")


def generate_symbol_map(vmlinux: str, dwarfdump: str | None) -> tuple[dict[str, list[str]], DefinitionCollector, str]:
    check_vmlinux(vmlinux)
    program, kind = find_dwarfdump(dwarfdump)
    collector = DefinitionCollector()
    progress = Progress(f"reading DWARF with {os.path.basename(program)}", None)
    symbols = ElfSymbols(vmlinux)
    try:
        run_dwarfdump(program, kind, vmlinux, collector, progress)
    except NoDebugInfo:
        symbols.cancel()
        raise UserError(f"{vmlinux} has no DWARF debug info: use the debug vmlinux (Debian: /usr/lib/debug/boot/vmlinux-VERSION)") from None
    except BaseException:
        symbols.cancel()
        raise
    finally:
        progress.close()
    files = collector.symbol_map(symbols.result())
    return files, collector, f"{os.path.basename(program)} ({kind})"


@dataclass
class ModuleReport:
    read: int = 0
    without_debug_info: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    names: set[str] = field(default_factory=set)


def module_debug_files(directory: str, only_loaded: bool) -> list[str]:
    """The .ko (or Fedora-style .ko.debug) files under DIRECTORY, optionally only modules loaded now."""
    if not os.path.isdir(directory):
        raise UserError(f"--modules {directory} is not a directory (Debian: /usr/lib/debug/lib/modules/VERSION)")
    found = sorted(
        os.path.join(root, name) for root, _, names in os.walk(directory) for name in names if name.endswith((".ko", ".ko.debug"))
    )
    if only_loaded:
        loaded = loaded_module_names()
        found = [path for path in found if module_name(path) in loaded]
    if not found:
        raise UserError(f"no {'loaded ' if only_loaded else ''}module debug files (.ko) under {directory}")
    return found


def module_name(path: str) -> str:
    """fs/9p/9p.ko -> 9p; the kernel treats - and _ in module names alike."""
    name = os.path.basename(path).removesuffix(".debug").removesuffix(".ko")
    return name.replace("-", "_")


def loaded_module_names() -> set[str]:
    try:
        with open("/proc/modules", encoding="utf-8") as handle:
            return {line.split()[0].replace("-", "_") for line in handle if line.strip()}
    except OSError as err:
        raise UserError(f"cannot read /proc/modules for --only-loaded: {err.strerror}") from err


def add_module_symbols(files: dict[str, list[str]], modules: list[str], dwarfdump: str | None, collector: DefinitionCollector) -> ModuleReport:
    """Module functions by name (module addresses are not final, so no ELF join): merged into FILES."""
    program, kind = find_dwarfdump(dwarfdump)
    report = ModuleReport()
    progress = Progress("reading module DWARF", len(modules), counting=True)
    try:
        for index, path in enumerate(modules):
            progress.update(index, f"{module_name(path)}")
            module = DefinitionCollector()
            module.paths = collector.paths
            try:
                run_dwarfdump(program, kind, path, module, None)
            except NoDebugInfo:
                report.without_debug_info.append(path)
                continue
            except UserError:
                report.failed.append(path)
                continue
            module.finish_unit()
            collector.census.add(module.census)
            report.read += 1
            for name, definitions in module.files.items():
                add_definitions(files, name, definitions)
                report.names.add(name)
    finally:
        progress.close()
    return report


def write_symbol_map(path: str, files: dict[str, list[str]], header: list[str]) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(SYMBOL_MAP_HEADER + "\n")
        for line in header:
            handle.write(f"# {line}\n")
        for name in sorted(files):
            handle.write(name + "\t" + "\t".join(sorted(files[name])) + "\n")


def run_generate_symbol_map(args: argparse.Namespace) -> None:
    check_writable(args.output)
    started = time.monotonic()
    say(f"Symbol map mode - reading DWARF debug info of {args.vmlinux}")
    if args.only_loaded and not args.modules:
        raise UserError("--only-loaded needs --modules DIR (the folder of the modules' debug files)")
    modules = module_debug_files(args.modules, args.only_loaded) if args.modules else []
    files, collector, tool = generate_symbol_map(args.vmlinux, args.dwarfdump)
    report = add_module_symbols(files, modules, args.dwarfdump, collector) if modules else None
    census = collector.census
    several = sum(1 for sources in files.values() if len(sources) > 1)
    header = [
        f"vmlinux: {args.vmlinux}",
        f"dwarfdump: {tool}",
        f"functions: {len(files)}; names with several files: {several}",
        "format: name<TAB>file[<TAB>file...], files relative to the kernel tree",
    ]
    if report:
        header.insert(2, f"modules: {report.read} read from {args.modules}")
    write_symbol_map(args.output, files, header)
    say(
        f"{census.units:,} compile units, {census.subprograms:,} subprogram entries: {census.definitions:,} out-of-line definitions"
        f" ({census.clones:,} compiler clones named through their origin), {census.declarations:,} declarations skipped"
    )
    if census.path_from_unit:
        say(f"{census.path_from_unit:,} definitions without a declaring file (assembly, compiler-made) mapped to their unit's source file")
    if census.without_path or census.unresolved_origin:
        say(f"not mapped: {census.without_path:,} definitions without a file path, {census.unresolved_origin:,} clones whose origin was not found")
    if report:
        say(f"modules: {report.read:,} of {len(modules):,} read from {args.modules}, {len(report.names):,} function names from them")
        for label, paths in (("without debug info (stripped?)", report.without_debug_info), ("that dwarfdump could not read", report.failed)):
            if paths:
                warn(f"{len(paths):,} module files {label}, e.g. {paths[0]}")
    say(f"{len(files):,} function names mapped, {several:,} of them to several files (kept all, shown as 'one of N files')")
    say(f"{args.output} generated in {time.monotonic() - started:.1f} s")


# ============================================================================
# Filters: what the user asked to see, and what fits in a drawing
# ============================================================================


@dataclass
class View:
    """The part of the call graph that passed the user's filters (every node and edge of it)."""

    graph: CallGraph
    nodes: list[str]
    edges: list[tuple[str, str]]
    files: dict[str, list[str]]
    notes: list[str] = field(default_factory=list)
    entry_callers: list[str] = field(default_factory=list)  # outside the filter, calling into it
    dropped_no_file: int = 0


def build_view(graph: CallGraph, symbols: SymbolMap | None, path_filters: list[str], min_calls: int | None) -> View:
    names = graph.nodes()
    files = {name: symbols.lookup(name) for name in names} if symbols else {}
    kept = set(names)
    notes: list[str] = []
    dropped_no_file = 0
    if min_calls is not None:
        kept = {name for name in kept if graph.calls[name] > min_calls}
        notes.append(f"--filter-execution-no {min_calls}: kept {len(kept)} of {len(names)} functions called more than {min_calls} times")
    if path_filters:
        before = len(kept)
        dropped_no_file = sum(1 for name in kept if not files.get(name))
        kept = {name for name in kept if any(p in source for source in files.get(name, ()) for p in path_filters)}
        notes.append(
            f"--filter-filepath {','.join(path_filters)}: kept {len(kept)} of {before} functions"
            f" ({dropped_no_file} dropped because the symbol map has no file for them)"
        )
    edges = [edge for edge in graph.edges if edge[0] in kept and edge[1] in kept]
    entry_callers = sorted({caller for caller, callee in graph.edges if callee in kept and caller not in kept})
    ordered = sorted(kept, key=lambda name: (-graph.calls[name], name))
    return View(graph, ordered, edges, files, notes, entry_callers if path_filters else [], dropped_no_file)


@dataclass
class Drawing:
    """What the drawing shows: the hottest part of a view, small enough to lay out and read."""

    nodes: list[str]
    edges: list[tuple[str, str]]
    callers: list[str]  # grey entry points from outside a --filter-filepath selection
    caller_edges: list[tuple[str, str]]
    left_out_nodes: int
    left_out_edges: int


def prune_for_drawing(view: View, max_nodes: int, max_edges: int) -> Drawing:
    """Keep the hot paths: the most-called edges with their ends, topped up with the most-called functions."""
    graph = view.graph
    ranked_edges = sorted(view.edges, key=lambda edge: (-graph.edges[edge], edge))
    if max_nodes <= 0:
        chosen = set(view.nodes)
    else:
        chosen = set()
        for caller, callee in ranked_edges:
            new = {caller, callee} - chosen
            if len(chosen) + len(new) > max_nodes:
                break
            chosen |= new
        for name in view.nodes:
            if len(chosen) >= max_nodes:
                break
            chosen.add(name)
    nodes = [name for name in view.nodes if name in chosen]
    edges = [edge for edge in ranked_edges if edge[0] in chosen and edge[1] in chosen]
    if max_edges > 0:
        edges = edges[:max_edges]
    outside = set(view.entry_callers)
    caller_edges = sorted(
        ((caller, callee) for caller, callee in graph.edges if callee in chosen and caller in outside),
        key=lambda edge: (-graph.edges[edge], edge),
    )[: max(10, len(nodes) // 2)]
    callers = sorted({caller for caller, _ in caller_edges})
    return Drawing(nodes, edges, callers, caller_edges, len(view.nodes) - len(nodes), len(view.edges) - len(edges))


# ============================================================================
# Output: heat theme, graphviz drawing, JSON, chart
# ============================================================================


class HeatTheme:
    """Colours and widths from a weight in [0, 1]; weights are log-scaled over what is drawn.

    Real call counts are very skewed (a few functions are called 1000x more than
    most), so a linear scale would paint everything but a handful blue.
    """

    def __init__(self, counts: Iterable[int]) -> None:
        positive = [count for count in counts if count > 0]
        self.low = min(positive, default=1)
        self.high = max(positive, default=1)

    def weight(self, count: int) -> float:
        if count <= 0:
            return 0.0
        if self.high <= self.low:
            return 1.0
        return (math.log(count) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))

    @staticmethod
    def colour(weight: float) -> str:
        """Blue (cold) through green and yellow to red (hot), as an HSV string graphviz reads."""
        hue = (1.0 - weight) * 0.66
        saturation = 0.35 + 0.55 * weight
        return f"{hue:.3f} {saturation:.3f} 0.95"

    @staticmethod
    def pen_width(weight: float) -> float:
        return round(0.6 + 4.4 * weight, 2)

    @staticmethod
    def font_size(weight: float) -> float:
        return round(10 + 6 * weight, 1)


DOT_MAX_NODES = 250  # dot is readable but slow past this; sfdp scales to thousands
DOT_MAX_EDGES = 500
EDGE_LABEL_LIMIT = 600


def node_label(name: str, graph: CallGraph, files: dict[str, list[str]], have_map: bool) -> str:
    lines = [f"{name}()"]
    module = graph.modules.get(name)
    if module:
        lines.append(f"[{module}]")
    sources = files.get(name, [])
    if len(sources) == 1:
        decl_file, _, unit_file = sources[0].partition(DEFINITION_SEPARATOR)
        lines.append(f"{decl_file} (in {unit_file})" if unit_file else decl_file)
    elif len(sources) > 1:
        lines.append(f"one of {len(sources)} files")
    elif have_map and not module:
        lines.append("(file unknown)")
    lines.append(f"{graph.calls[name]:,} calls")
    if name in graph.total_us:
        lines.append(f"{format_us(graph.total_us[name])} total, {format_us(graph.self_us[name])} self")
    return "\n".join(lines)


def format_us(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.2f} s"
    if value >= 1000:
        return f"{value / 1000:.2f} ms"
    return f"{value:.1f} us"


def drawing_caption(view: View, drawing: Drawing, theme: HeatTheme) -> str:
    stats = view.graph.stats
    parts = [
        f"kernel-magnifier: {stats.events:,} events from {', '.join(os.path.basename(p) for p in stats.inputs)}",
        f"colour = calls on a log scale: blue {theme.low:,} ... red {theme.high:,}; edge labels = calls from caller to callee",
    ]
    lost = stats.lost_events
    if lost:
        parts.append(f"the kernel lost {lost:,} events ({stats.lost_share():.1%}): counts are lower bounds")
    if drawing.left_out_nodes or drawing.left_out_edges:
        parts.append(
            f"showing the hottest {len(drawing.nodes):,} of {len(view.nodes):,} functions and {len(drawing.edges):,} of"
            f" {len(view.edges):,} edges; --max-nodes/--max-edges 0 draws all"
        )
    if drawing.callers:
        parts.append("grey boxes: callers outside the --filter-filepath selection")
    parts.extend(view.notes)
    return "\n".join(parts)


def render_graph(view: View, drawing: Drawing, output: str, layout: str, have_map: bool) -> None:
    import pygraphviz

    graph = view.graph
    theme = HeatTheme(graph.calls[name] for name in drawing.nodes)
    edge_theme = HeatTheme(graph.edges[edge] for edge in drawing.edges)
    agraph = pygraphviz.AGraph(directed=True, strict=False)
    agraph.graph_attr.update(
        label=drawing_caption(view, drawing, theme), labelloc="t", labeljust="l", fontname="Helvetica", fontsize="14",
        rankdir="TB", ranksep="0.5", nodesep="0.25", pack="true", packmode="array_u",
    )
    agraph.node_attr.update(shape="box", style="filled,rounded", fontname="Helvetica")
    agraph.edge_attr.update(fontname="Helvetica", fontsize="10", arrowsize="0.6")
    for name in drawing.nodes:
        weight = theme.weight(graph.calls[name])
        agraph.add_node(
            name, label=node_label(name, graph, view.files, have_map), fillcolor=theme.colour(weight),
            fontsize=str(theme.font_size(weight)), penwidth=str(theme.pen_width(weight) / 2),
        )
    for name in drawing.callers:
        agraph.add_node(name, label=f"{name}()", fillcolor="0 0 0.9", fontcolor="0 0 0.35", color="0 0 0.6", fontsize="9", style="filled,dashed")
    program = layout if layout != "auto" else ("dot" if len(drawing.nodes) <= DOT_MAX_NODES and len(drawing.edges) <= DOT_MAX_EDGES else "sfdp")
    # Placing thousands of edge labels is what makes big layouts take minutes; widths still show calls.
    edge_labels = len(drawing.edges) <= EDGE_LABEL_LIMIT
    for caller, callee in drawing.edges:
        calls = graph.edges[(caller, callee)]
        weight = edge_theme.weight(calls)
        colour = theme.colour(weight)
        label = {"label": f"{calls:,}", "fontcolor": "0 0 0.25"} if edge_labels else {"tooltip": f"{calls:,} calls"}
        agraph.add_edge(caller, callee, penwidth=str(theme.pen_width(weight)), color=colour, **label)
    for caller, callee in drawing.caller_edges:
        agraph.add_edge(caller, callee, label=f"{graph.edges[(caller, callee)]:,}", color="0 0 0.6", fontcolor="0 0 0.45", style="dashed")
    if program == "sfdp":
        agraph.graph_attr.update(overlap="true", splines="false", outputorder="edgesfirst")
    if not edge_labels:
        agraph.graph_attr["label"] += f"\nedge labels left out above {EDGE_LABEL_LIMIT} edges: edge width and colour show the calls"
    fmt = output_format(output)
    with atomic_output(output) as tmp:
        if fmt == "dot":
            agraph.write(tmp)
        else:
            with graphviz_messages_filtered():
                agraph.draw(tmp, format=fmt, prog=program)


GRAPHVIZ_NOISE = re.compile(r"remove_overlap: Graphviz not built with triangulation library|^Fontconfig warning|layout may take a long time")


@contextlib.contextmanager
def graphviz_messages_filtered() -> Iterator[None]:
    """Graphviz (a C library here) writes to fd 2; pass its messages on, minus known harmless noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for message in captured.read().decode("utf-8", "replace").splitlines():
                if message.strip() and not GRAPHVIZ_NOISE.search(message):
                    warn(f"graphviz: {message.strip()}")


def output_format(path: str) -> str:
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if extension not in ("pdf", "svg", "png", "dot", "json"):
        raise UserError(f"cannot tell the output format of {path}: use .pdf, .svg, .png, .dot or .json")
    return extension


def graph_json(view: View) -> dict:
    graph = view.graph
    stats = graph.stats
    nodes = []
    for name in view.nodes:
        node = {
            "name": name,
            "calls": graph.calls[name],
            "files": [part for definition in view.files.get(name, []) for part in definition.split(DEFINITION_SEPARATOR)],
            "definitions": len(view.files.get(name, [])),
            "total_time_us": round(graph.total_us[name], 3) if name in graph.total_us else None,
            "self_time_us": round(graph.self_us[name], 3) if name in graph.self_us else None,
        }
        if name in graph.modules:
            node["module"] = graph.modules[name]
        nodes.append(node)
    edges = [{"caller": caller, "callee": callee, "calls": graph.edges[(caller, callee)]} for caller, callee in view.edges]
    edges.sort(key=lambda edge: (-edge["calls"], edge["caller"], edge["callee"]))
    return {
        "stats": {
            "events": stats.events,
            "lost_events": stats.lost_events,
            "lost_events_per_cpu": stats.lost_per_cpu(),
            "lost_unknown_count_lines": stats.lost_unknown_count,
            "duplicate_lost_lines": stats.duplicate_lost_lines,
            "unparsed_lines": stats.unparsed_lines,
            "unparsed_example": stats.unparsed_example,
            "unparsed_example_where": stats.unparsed_example_where,
            "lines": stats.lines,
            "orphan_exits": stats.orphan_exits,
            "calls_without_caller": stats.calls_without_caller,
            "formats": sorted(stats.formats),
            "inputs": stats.inputs,
            "kernel_stats": stats.kernel_stats,
            "metadata": stats.metadata,
            "functions_total": len(graph.calls),
            "filter_notes": view.notes,
        },
        "nodes": nodes,
        "edges": edges,
        "entry_callers": view.entry_callers,
    }


def write_json(view: View, output: str) -> None:
    with atomic_output(output) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        json.dump(graph_json(view), handle, indent=1)
        handle.write("\n")


def render_chart(view: View, output: str, top: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    graph = view.graph
    stats = graph.stats
    shown = [name for name in view.nodes if graph.calls[name] > 0][:top]
    counts = [graph.calls[name] for name in shown]
    height = max(3.0, 0.32 * len(shown) + 1.6)
    figure, axes = plt.subplots(figsize=(11, height))
    theme = HeatTheme(counts)
    colours = [hsv_to_rgb(theme.colour(theme.weight(count))) for count in counts]
    positions = list(range(len(shown)))
    axes.barh(positions, counts, color=colours, edgecolor="0.3", linewidth=0.4)
    axes.set_yticks(positions)
    axes.set_yticklabels([f"{name}()" for name in shown], fontsize=9, family="monospace")
    axes.invert_yaxis()
    if counts and max(counts) > 50 * max(min(counts), 1):
        axes.set_xscale("log")
        axes.set_xlabel("calls (log scale)")
    else:
        axes.set_xlabel("calls")
    for position, count in zip(positions, counts):
        axes.text(count, position, f" {count:,}", va="center", fontsize=8)
    total_calls = sum(graph.calls[name] for name in view.nodes)
    title = f"Most-called kernel functions: top {len(shown)} of {len(view.nodes):,}, {total_calls:,} calls, {stats.events:,} events"
    lost = stats.lost_events
    title += f"\nlost events: {lost:,} ({stats.lost_share():.1%} of all)" if lost else "\nlost events: none reported"
    axes.set_title(title, fontsize=11)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    with atomic_output(output) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)


def hsv_to_rgb(hsv: str) -> tuple[float, float, float]:
    import colorsys

    hue, saturation, value = (float(part) for part in hsv.split())
    return colorsys.hsv_to_rgb(hue, saturation, value)


# ============================================================================
# Visualize: parse, filter, draw
# ============================================================================


def summarize(view: View, drawing: Drawing | None) -> list[str]:
    stats = view.graph.stats
    lines = []
    lost = stats.lost_per_cpu()
    if lost:
        per_cpu = ", ".join(f"CPU{cpu}: {count:,}" if cpu.isdigit() else f"{cpu}: {count:,}" for cpu, count in lost.items())
        lines.append(f"lost events: {stats.lost_events:,} ({stats.lost_share():.1%} of all events; {per_cpu})")
    else:
        lines.append("lost events: none reported")
    for cpu, times in stats.lost_unknown_count.items():
        lines.append(f"lost events: CPU{cpu} lost an unknown number of events {times} time(s)")
    if "kernel-magnifier-data" in stats.metadata and stats.metadata.get("end") != "complete":
        lines.append("data file: no '# end: complete' line: the recording was cut short (copied while record ran?); lost counts are missing")
    if stats.unparsed_lines:
        lines.append(
            f"lines not understood: {stats.unparsed_lines:,} (first at {stats.unparsed_example_where}: {stats.unparsed_example!r})"
        )
    if stats.orphan_exits or stats.calls_without_caller:
        lines.append(
            f"incomplete call trees: {stats.orphan_exits:,} exits without their entry, {stats.calls_without_caller:,} calls whose caller was not in the trace"
        )
    lines.extend(view.notes)
    if view.files:
        unknown = sum(1 for name in view.nodes if not view.files.get(name))
        several = sum(1 for name in view.nodes if len(view.files.get(name, [])) > 1)
        lines.append(f"source files: {unknown:,} of {len(view.nodes):,} functions have no file in the map, {several:,} names map to several files")
    if drawing and (drawing.left_out_nodes or drawing.left_out_edges):
        lines.append(
            f"drawing: the hottest {len(drawing.nodes):,} functions and {len(drawing.edges):,} edges;"
            f" left out {drawing.left_out_nodes:,} functions and {drawing.left_out_edges:,} edges (--max-nodes 0 --max-edges 0 draws all)"
        )
    return lines


def run_visualize(args: argparse.Namespace) -> None:
    inputs = args.input or ["kernel-magnifier.data"]
    output_fmt = output_format(args.output)
    path_filters = [part.strip() for part in (args.filter_filepath or "").split(",") if part.strip()]
    symbols = load_symbols(args.symbol_map, required=bool(path_filters), explicit=args.symbol_map_given)
    for path in [args.output] + ([args.chart] if args.chart else []):
        check_writable(path)
    say("Visualization mode - now generating visualization...")
    graph = parse_traces(inputs)
    say(f"parsing completed, found {graph.stats.events} events")
    view = build_view(graph, symbols, path_filters, args.filter_execution_no)
    if not view.nodes:
        raise UserError("the filters left no function to show: " + "; ".join(view.notes))
    drawing = None if output_fmt == "json" else prune_for_drawing(view, args.max_nodes, args.max_edges)
    for line in summarize(view, drawing):
        say(line)
    if args.chart:
        render_chart(view, args.chart, args.chart_top)
        say(f"{args.chart} generated")
    if output_fmt == "json":
        write_json(view, args.output)
    else:
        assert drawing is not None
        render_graph(view, drawing, args.output, args.layout, symbols is not None)
    say(f"{args.output} generated")


def load_symbols(path: str, required: bool, explicit: bool) -> SymbolMap | None:
    if not os.path.exists(path):
        if required:
            raise UserError(
                f"--filter-filepath needs a symbol map, and {path} does not exist: create it with"
                " './kernel-magnifier.py generate-symbol-map' or name one with --symbol-map"
            )
        if explicit:
            raise UserError(f"symbol map {path} does not exist")
        return None
    symbols = SymbolMap.load(path)
    say(f"symbol map {path}: {len(symbols):,} functions")
    return symbols


# ============================================================================
# Record: borrow tracefs, stream what the kernel emits, give tracefs back
# ============================================================================
# The kernel's tracing state is shared by everyone on the machine. Every file
# record writes is read first and written back on every way out (normal end,
# Ctrl-C, SIGTERM, SIGHUP, an error); where the tracer can run in a private
# tracefs instance, the global buffer is not touched at all.

TRACEFS_PLACES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
DEFAULT_DATA_FILE = "kernel-magnifier.data"
DEFAULT_RECORD_SECONDS = 10.0
DATA_FORMAT_VERSION = 1
HIGH_LOSS_SHARE = 0.01  # above this, the report suggests how to lose less
READ_BYTES = 1 << 16
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
KERNEL_STATS_KEYS = {"entries": "entries", "overrun": "overrun", "commit overrun": "commit-overrun", "dropped events": "dropped-events", "read events": "read-events"}


class RecordInterrupted(UserError):
    """A stop signal arrived before recording began: nothing recorded, state given back."""

    exit_status = 130


def read_tracefs(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def write_tracefs(path: str, text: str, truncate: bool = True) -> None:
    """One write() per call: the kernel takes each as a whole (a tracer name, a mask, one filter pattern)."""
    fd = os.open(path, os.O_WRONLY | (os.O_TRUNC if truncate else os.O_APPEND))
    try:
        if text:
            os.write(fd, text.encode())
    except OSError as err:
        raise OSError(err.errno, err.strerror, path) from None  # name the file in the error
    finally:
        os.close(fd)


def list_entries(content: str) -> list[str]:
    """Entries of a filter or pid file as it reads back; comments and 'no pid' mean empty."""
    entries = []
    for line in content.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line == "no pid":
            continue
        module = re.fullmatch(r"(\S+) \[(\S+)\]", line)  # a module function reads back as "name [mod]"
        entries.append(f"{module.group(1)}:mod:{module.group(2)}" if module else line)
    return entries


@dataclass
class SavedSetting:
    path: str
    is_list: bool  # filter and pid files: cleared, then entries written back one by one
    content: str


class BorrowedSettings:
    """The tracefs files record changed, each with its content before; restored last-changed first."""

    def __init__(self) -> None:
        self.saved: list[SavedSetting] = []

    def set(self, path: str, value: str) -> None:
        self.remember(path, is_list=False)
        write_tracefs(path, value)

    def set_list(self, path: str, entries: list[str], what: str) -> None:
        """Replace a filter/pid list; an entry the kernel refuses is the user's error, named."""
        self.remember(path, is_list=True)
        write_tracefs(path, "")
        for entry in entries:
            try:
                write_tracefs(path, entry + "\n", truncate=False)
            except OSError as err:
                raise UserError(f"{what} {entry!r}: the kernel refused it ({err.strerror}){list_refusal_hint(path)}") from None

    def remember(self, path: str, is_list: bool) -> None:
        if all(saved.path != path for saved in self.saved):
            self.saved.append(SavedSetting(path, is_list, read_tracefs(path)))

    def restore(self) -> list[str]:
        """Write everything back; returns the settings that could not be restored, with why."""
        failures = []
        for saved in reversed(self.saved):
            try:
                restore_setting(saved)
            except OSError as err:
                failures.append(f"{saved.path} ({err.strerror})")
        return failures


def list_refusal_hint(path: str) -> str:
    name = os.path.basename(path)
    if name in ("set_ftrace_filter", "set_ftrace_notrace", "set_graph_function"):
        return ": no traceable function matches it (see available_filter_functions)"
    if name.endswith("pid"):
        return ": no such process"
    return ""


def restore_setting(saved: SavedSetting) -> None:
    if saved.is_list:
        write_tracefs(saved.path, "")
        for entry in list_entries(saved.content):
            write_tracefs(saved.path, entry + "\n", truncate=False)
        return
    value = saved.content.strip()
    expanded = re.fullmatch(r"\d+ \(expanded: (\d+)\)", value)
    if expanded:  # an unexpanded ring buffer cannot be shrunk back; its expanded size is what it had
        value = expanded.group(1)
    write_tracefs(saved.path, value)


# --- finding tracefs, the lock, the instance ---------------------------------


@dataclass
class TracefsPlace:
    top: str  # the tracefs mount
    mounted_here: bool


def find_tracefs() -> TracefsPlace:
    for place in TRACEFS_PLACES:
        if os.path.exists(os.path.join(place, "trace")):
            return TracefsPlace(place, False)
    import subprocess

    target = TRACEFS_PLACES[0]
    if not os.path.isdir(target):
        raise UserError("no tracefs: this kernel has no /sys/kernel/tracing (CONFIG_FTRACE not set?)")
    result = subprocess.run(["mount", "-t", "tracefs", "nodev", target], capture_output=True, text=True)
    if result.returncode != 0 or not os.path.exists(os.path.join(target, "trace")):
        raise UserError(f"tracefs is not mounted and mounting it failed: {result.stderr.strip() or 'no trace file'}")
    return TracefsPlace(target, True)


def unmount_tracefs(place: TracefsPlace) -> None:
    import subprocess

    if place.mounted_here and subprocess.run(["umount", place.top], capture_output=True).returncode != 0:
        warn(f"could not unmount {place.top}, which record mounted")


def take_record_lock() -> IO[str]:
    """Two recorders would interleave their settings: the second one stops here."""
    import fcntl

    directory = "/run/lock" if os.path.isdir("/run/lock") else tempfile.gettempdir()
    handle = open(os.path.join(directory, "kernel-magnifier.lock"), "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise UserError(f"another kernel-magnifier record is running (pid {holder}); wait for it to end") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def tracing_files_needed(args: argparse.Namespace) -> list[str]:
    needed = ["current_tracer", "tracing_on", "trace_pipe", "trace", "tracing_cpumask", "buffer_size_kb", "per_cpu"]
    wanted = {"filter": "set_ftrace_filter", "notrace": "set_ftrace_notrace", "graph_function": "set_graph_function", "max_depth": "max_graph_depth"}
    needed += [name for option, name in wanted.items() if getattr(args, option)]
    if args.pid or args.command:
        needed += ["set_ftrace_pid", "options/function-fork"]
    return needed


def private_instance(top: str, tracer: str, needed: list[str]) -> str | None:
    """A tracefs instance of our own when this kernel runs TRACER in one (6.1: function, not function_graph)."""
    instances = os.path.join(top, "instances")
    if not os.path.isdir(instances):
        return None
    path = os.path.join(instances, f"kernel-magnifier-{os.getpid()}")
    try:
        os.mkdir(path)
    except OSError:
        return None
    usable = tracer in read_tracefs(os.path.join(path, "available_tracers")).split() and all(os.path.exists(os.path.join(path, n)) for n in needed)
    if not usable:
        remove_instance(path)
        return None
    return path


def remove_instance(path: str) -> None:
    for _ in range(20):  # the kernel refuses while a reader still holds a file open
        try:
            os.rmdir(path)
            return
        except OSError:
            time.sleep(0.05)
    warn(f"could not remove the tracefs instance {path}: remove it with rmdir")


# --- what the user asked for ------------------------------------------------


def online_cpus() -> list[int]:
    try:
        return parse_cpu_list(read_tracefs("/sys/devices/system/cpu/online").strip())
    except (OSError, ValueError):
        return list(range(os.cpu_count() or 1))


def parse_cpu_list(text: str) -> list[int]:
    cpus: list[int] = []
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        cpus.extend(range(int(low), int(high or low) + 1))
    return sorted(set(cpus))


CPU_LIST = re.compile(r"^\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*$")


def parse_cpumask(text: str, existing: list[int]) -> int:
    """-M/--cpumask: a hex mask as tracing_cpumask takes it (1, f, 0x3, ffffffff,ffffffff); `10` is CPU 4.

    A CPU list (0,2-3) is refused rather than guessed: -C/--cpu takes lists, so that no value means two things."""
    value = text.strip().lower()
    groups = value.split(",")
    if "-" in value or (len(groups) > 1 and not all(len(g) == 8 for g in groups[1:])):
        raise UserError(f"--cpumask {shown(text)}: a CPU list, not a hex mask: use -C/--cpu {shown(text)} (--cpumask 1 is CPU 0, 10 is CPU 4)")
    try:
        mask = int("".join(groups).removeprefix("0x"), 16)
    except ValueError:
        raise UserError(f"--cpumask {shown(text)}: not a hex CPU mask (1, f, 0x3); for a CPU list use -C/--cpu 0,2-3") from None
    return check_cpus_exist("--cpumask", text, mask, existing)


def parse_cpu_selection(text: str, existing: list[int]) -> int:
    """-C/--cpu: a CPU list as perf and /sys/devices/system/cpu/online write it (0,2-3), as a mask."""
    value = text.strip()
    if not CPU_LIST.match(value):
        raise UserError(f"--cpu {shown(text)}: not a CPU list (0, 0,2-3); for a hex mask use -M/--cpumask")
    mask = 0
    for part in value.split(","):
        low, _, high = part.partition("-")
        first, last = cpu_number(text, low, existing), cpu_number(text, high or low, existing)
        if last < first:
            raise UserError(f"--cpu {shown(text)}: the range {part} runs backwards (write {high}-{low})")
        mask |= (1 << (last + 1)) - (1 << first)
    return check_cpus_exist("--cpu", text, mask, existing)


def cpu_number(text: str, digits: str, existing: list[int]) -> int:
    """One CPU of a -C list; one beyond the last online CPU is refused before a mask of that size is built."""
    if len(digits) > 9 or int(digits) > max(existing, default=0):
        raise UserError(f"--cpu {shown(text)}: CPU {digits[:12]} does not exist (online CPUs: {format_cpu_list(existing)})")
    return int(digits)


def check_cpus_exist(option: str, text: str, mask: int, existing: list[int]) -> int:
    if mask == 0:
        raise UserError(f"{option} {shown(text)} selects no CPU")
    if mask.bit_length() > max(existing, default=0) + 1:
        missing = mask.bit_length() - 1
    else:
        missing = next((cpu for cpu in range(mask.bit_length()) if mask >> cpu & 1 and cpu not in existing), -1)
    if missing >= 0:
        raise UserError(f"{option} {shown(text)}: CPU {missing} does not exist (online CPUs: {format_cpu_list(existing)})")
    return mask


def shown(text: str) -> str:
    """A user's value in a one-line message, cut if it is absurdly long."""
    return text if len(text) <= 40 else text[:40] + "..."


def select_cpus(args: argparse.Namespace) -> None:
    """-a, -C LIST and -M MASK: at most one; -C becomes the mask the kernel takes (args.cpumask, args.cpumask_value)."""
    given = [name for name, value in (("-a/--all-cpus", args.all_cpus), ("-C/--cpu", args.cpu_list), ("-M/--cpumask", args.cpumask)) if value]
    if len(given) > 1:
        raise UserError(f"{' and '.join(given)} exclude each other: give one (-a, every CPU, is the default)")
    if args.cpumask:
        args.cpumask_value = parse_cpumask(args.cpumask, online_cpus())
    elif args.cpu_list:
        args.cpumask_value = parse_cpu_selection(args.cpu_list, online_cpus())
        args.cpumask = kernel_cpumask(args.cpumask_value)


def format_cpu_list(cpus: list[int]) -> str:
    ranges, start = [], None
    for index, cpu in enumerate(cpus):
        start = cpu if start is None else start
        if index + 1 == len(cpus) or cpus[index + 1] != cpu + 1:
            ranges.append(str(start) if start == cpu else f"{start}-{cpu}")
            start = None
    return ",".join(ranges)


def kernel_cpumask(mask: int) -> str:
    """The kernel's own notation: hex in comma-separated 32-bit groups."""
    digits = f"{mask:x}"
    groups = []
    while digits:
        groups.insert(0, digits[-8:])
        digits = digits[:-8]
    return ",".join(groups)


def split_names(values: list[str] | None) -> list[str]:
    return [name for value in values or [] for name in value.replace(",", " ").split()]


def tracer_option(option: str, options_dir: str) -> tuple[str, str]:
    """-O funcgraph-proc -> (options/funcgraph-proc, 1); -O nofuncgraph-irqs -> (options/funcgraph-irqs, 0)."""
    name, value = option, "1"
    if not os.path.exists(os.path.join(options_dir, name)) and name.startswith("no"):
        name, value = name[2:], "0"
    path = os.path.join(options_dir, name)
    if not os.path.exists(path):
        available = sorted(os.listdir(options_dir))
        raise UserError(f"-O {option}: no such tracer option; this kernel has: {' '.join(available)}")
    return path, value


# --- the traced command -------------------------------------------------------


class TracedCommand:
    """`-- COMMAND`: forked at once but held before exec until its PID is in set_ftrace_pid and tracing is on."""

    def __init__(self, argv: list[str]) -> None:
        import shutil

        if shutil.which(argv[0]) is None:
            raise UserError(f"command not found: {argv[0]}")
        self.argv = argv
        go_read, self.go_write = os.pipe()
        self.error_read, error_write = os.pipe()  # close-on-exec: EOF means the exec worked
        self.pid = os.fork()
        if self.pid == 0:
            self.child(go_read, error_write)
        os.close(go_read)
        os.close(error_write)
        self.status: int | None = None

    def child(self, go_read: int, error_write: int) -> None:
        for name in STOP_SIGNALS:
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        os.close(self.go_write)
        try:
            if os.read(go_read, 1) == b"x":
                os.execvp(self.argv[0], self.argv)
        except OSError as err:
            os.write(error_write, (err.strerror or "exec failed").encode())
        os._exit(127)

    def start(self) -> None:
        os.write(self.go_write, b"x")
        os.close(self.go_write)
        self.go_write = -1
        message = os.read(self.error_read, 512).decode("utf-8", "replace")
        os.close(self.error_read)
        if message:
            self.reap()
            raise UserError(f"cannot run {self.argv[0]}: {message}")

    def running(self) -> bool:
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status is None

    def reap(self) -> None:
        """Never leave it behind: an unreleased child exits at EOF, a running one gets SIGTERM."""
        if self.go_write >= 0:
            os.close(self.go_write)
            self.go_write = -1
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            _, status = os.waitpid(self.pid, 0)
            self.status = os.waitstatus_to_exitcode(status)


class StopSignals:
    """SIGINT/SIGTERM/SIGHUP: during set-up they abort (and everything is given back),
    while recording they end it early with the data kept, while restoring they wait."""

    def __init__(self) -> None:
        self.received: str | None = None
        self.count = 0
        self.phase = "setup"
        self.previous: dict[int, Callable | int | None] = {}

    def __enter__(self) -> StopSignals:
        for name in STOP_SIGNALS:
            number = getattr(signal, name)
            self.previous[number] = signal.signal(number, self.handle)
        return self

    def handle(self, number: int, _frame: object) -> None:
        self.received = signal.Signals(number).name
        self.count += 1
        if self.phase == "setup":
            self.phase = "aborting"
            raise RecordInterrupted(f"{self.received} during set-up: nothing recorded, tracing state given back")

    def __exit__(self, *_: object) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)


# --- the data file ----------------------------------------------------------


class DataFile:
    """The data file's stream, compressed when the final name ends in .gz or .xz; writing errors are one line."""

    def __init__(self, tmp: str, path: str) -> None:
        self.path = path
        if path.endswith(".gz"):
            self.stream: IO[bytes] = gzip.open(tmp, "wb", compresslevel=3)
        elif path.endswith(".xz"):
            self.stream = lzma.open(tmp, "wb", preset=1)
        else:
            self.stream = open(tmp, "wb", buffering=1 << 20)  # closed by close()
        self.bytes_in = 0

    def write(self, data: bytes) -> None:
        try:
            self.stream.write(data)
        except OSError as err:
            raise UserError(f"cannot write {self.path}: {err.strerror}; the recording was discarded") from None
        self.bytes_in += len(data)

    def comment(self, key: str, value: object) -> None:
        self.write(f"# {key}: {value}\n".encode())

    def close(self, quietly: bool = False) -> None:
        try:
            self.stream.close()
        except OSError as err:
            if not quietly:
                raise UserError(f"cannot write {self.path}: {err.strerror}; the recording was discarded") from None


def give_to_sudo_user(path: str) -> None:
    """Under sudo the file belongs to the user who asked for it, not to root."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if uid and gid and os.geteuid() == 0:
        with contextlib.suppress(OSError, ValueError):
            os.chown(path, int(uid), int(gid))


def data_file_header(args: argparse.Namespace, tracing: str, options: list[str], command: list[str]) -> list[tuple[str, object]]:
    uname = os.uname()
    clock = read_tracefs(os.path.join(tracing, "trace_clock"))
    clock_match = re.search(r"\[(\S+)\]", clock)
    return [
        ("kernel-magnifier-data", DATA_FORMAT_VERSION),
        ("tool-version", VERSION),
        ("kernel", f"{uname.release} {uname.version}"),
        ("hostname", uname.nodename),
        ("cpus", len(online_cpus())),
        ("tracer", args.tracer),
        ("options", " ".join(options)),
        ("cpumask", read_tracefs(os.path.join(tracing, "tracing_cpumask")).strip()),
        ("buffer-size-kb", read_tracefs(os.path.join(tracing, "buffer_size_kb")).strip()),
        ("clock", clock_match.group(1) if clock_match else clock.strip()),
        ("graph-function", " ".join(split_names(args.graph_function))),
        ("filter", " ".join(split_names(args.filter))),
        ("notrace", " ".join(split_names(args.notrace))),
        ("max-depth", args.max_depth or 0),
        ("pid", " ".join(str(p) for p in args.pid or [])),
        ("command", " ".join(command)),
        ("tracefs", tracing),
        ("start-time", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
    ]


# --- the per-CPU counters -------------------------------------------------


def kernel_cpu_stats(tracing: str) -> dict[int, dict[str, int]]:
    """per_cpu/cpuN/stats: what the kernel kept, overwrote and dropped on each CPU."""
    stats = {}
    per_cpu = os.path.join(tracing, "per_cpu")
    for name in os.listdir(per_cpu):
        if not name.startswith("cpu"):
            continue
        counters = {}
        with contextlib.suppress(OSError):
            for line in read_tracefs(os.path.join(per_cpu, name, "stats")).splitlines():
                key, _, value = line.partition(":")
                if key.strip() in KERNEL_STATS_KEYS and value.strip().isdigit():
                    counters[KERNEL_STATS_KEYS[key.strip()]] = int(value)
        stats[int(name[3:])] = counters
    return dict(sorted(stats.items()))


def lost_in(counters: dict[str, int]) -> int:
    return counters.get("overrun", 0) + counters.get("dropped-events", 0)


# --- the recording ------------------------------------------------------------


@dataclass
class Recording:
    tracing: str = ""
    instance: str | None = None
    seconds: float = 0.0
    stopped_by: str = ""
    stats: dict[int, dict[str, int]] = field(default_factory=dict)
    old_file: str | None = None
    size: int = 0
    command_status: int | None = None
    self_excluded: bool = False


def run_record(args: argparse.Namespace) -> None:
    command = args.command_argv
    check_record_arguments(args, command)
    place = find_tracefs()
    try:
        with take_record_lock() as _lock, StopSignals() as stop:
            recording = record_with_borrowed_state(args, command, place.top, stop)
    finally:
        unmount_tracefs(place)
    report_recording(args, recording)


def check_record_arguments(args: argparse.Namespace, command: list[str]) -> None:
    if args.record_time is not None and args.record_time <= 0:
        raise UserError("--record-time must be more than 0 seconds")
    select_cpus(args)
    if os.geteuid() != 0:
        raise UserError("record drives the kernel's tracefs and needs root: run it with sudo")
    for pid in args.pid or []:
        if not os.path.exists(f"/proc/{pid}"):
            raise UserError(f"--pid {pid}: no such process")
    if args.pid and command:
        raise UserError("--pid and -- COMMAND exclude each other: record either a running process or a new command")
    check_writable(args.output)


def record_with_borrowed_state(args: argparse.Namespace, command: list[str], top: str, stop: StopSignals) -> Recording:
    available = read_tracefs(os.path.join(top, "available_tracers")).split()
    if args.tracer not in available:
        hint = "; try --tracer function" if args.tracer == "function_graph" and "function" in available else ""
        raise UserError(f"this kernel has no {args.tracer} tracer (available: {' '.join(available)}){hint}")
    recording = Recording()
    recording.instance = private_instance(top, args.tracer, tracing_files_needed(args))
    recording.tracing = recording.instance or top
    current = read_tracefs(os.path.join(recording.tracing, "current_tracer")).strip()
    if current != "nop" and not args.force:
        if recording.instance:
            remove_instance(recording.instance)
        raise UserError(f"another tracer is active ({current}): someone is tracing; stop it, or use --force to borrow it anyway")
    settings = BorrowedSettings()
    traced: TracedCommand | None = None
    try:
        traced = TracedCommand(command) if command else None
        record_into_file(args, recording, settings, traced, stop, command)
    except OSError as err:
        if err.filename is None:
            raise
        if not str(err.filename).startswith(top):
            raise UserError(f"{err.filename}: {err.strerror}; the recording was discarded, tracing state given back") from None
        raise UserError(f"the kernel refused {err.filename}: {err.strerror}; nothing recorded, tracing state given back") from None
    finally:
        stop.phase = "restoring"
        if traced is not None:
            traced.reap()
            recording.command_status = traced.status
        give_back(settings, recording)
    return recording


def record_into_file(
    args: argparse.Namespace, recording: Recording, settings: BorrowedSettings, traced: TracedCommand | None, stop: StopSignals, command: list[str]
) -> None:
    options = configure_tracing(args, recording, settings, traced)
    replacing = os.path.exists(args.output)
    with atomic_output(args.output, keep_old=True) as tmp:  # an older FILE becomes FILE.old, as perf does
        output = DataFile(tmp, args.output)
        try:
            for key, value in data_file_header(args, recording.tracing, options, command):
                output.comment(key, value)
            output.comment("self-excluded", "yes" if recording.self_excluded else "no")
            stream_trace(args, recording, output, traced, stop)
            write_footer(output, recording)
        except BaseException:
            output.close(quietly=True)
            raise
        output.close()
        stop.phase = "restoring"
    recording.old_file = args.output + ".old" if replacing else None
    give_to_sudo_user(args.output)
    recording.size = os.path.getsize(args.output)


def give_back(settings: BorrowedSettings, recording: Recording) -> None:
    failures = settings.restore()
    if recording.instance:
        remove_instance(recording.instance)
    for failure in failures:
        warn(f"could not restore {failure}: set it back by hand")


def configure_tracing(args: argparse.Namespace, recording: Recording, settings: BorrowedSettings, traced: TracedCommand | None) -> list[str]:
    """Tracing off first (writes below must not start a flood), filters before the tracer (patch text once)."""
    tracing = recording.tracing

    def path(name: str) -> str:
        return os.path.join(tracing, name)

    settings.set(path("tracing_on"), "0")
    if args.buffer_size:
        settings.set(path("buffer_size_kb"), str(args.buffer_size))
    if args.cpumask:
        settings.set(path("tracing_cpumask"), kernel_cpumask(args.cpumask_value))
    for option, name, what in (
        ("filter", "set_ftrace_filter", "--filter"),
        ("notrace", "set_ftrace_notrace", "--notrace"),
        ("graph_function", "set_graph_function", "--graph-function"),
    ):
        if getattr(args, option):
            settings.set_list(path(name), split_names(getattr(args, option)), what)
    if args.max_depth:
        settings.set(path("max_graph_depth"), str(args.max_depth))
    pids = [str(traced.pid)] if traced else [str(p) for p in args.pid or []]
    if pids:
        settings.set_list(path("set_ftrace_pid"), pids, "--pid")
        settings.set(path("options/function-fork"), "1" if traced else "0")
    elif os.path.exists(path("set_ftrace_notrace_pid")):
        settings.set_list(path("set_ftrace_notrace_pid"), [str(os.getpid())], "own pid")
        recording.self_excluded = True
    else:
        warn("this kernel has no set_ftrace_notrace_pid (before 5.8): the recorder's own reads will appear in the trace")
    settings.set(path("current_tracer"), args.tracer)
    options = []
    for option in args.tracer_options or []:
        option_path, value = tracer_option(option, path("options"))
        settings.set(option_path, value)
        options.append(option)
    write_tracefs(path("trace"), "")  # start from an empty buffer
    return options


def stream_trace(args: argparse.Namespace, recording: Recording, output: DataFile, traced: TracedCommand | None, stop: StopSignals) -> None:
    """Non-blocking reads that never run past the deadline; after tracing stops, drain what the kernel still holds."""
    tracing = recording.tracing
    limit = args.record_time if args.record_time is not None else (None if traced else DEFAULT_RECORD_SECONDS)
    fd = os.open(os.path.join(tracing, "trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
    try:
        announce_recording(args, limit, traced)
        write_tracefs(os.path.join(tracing, "tracing_on"), "1")
        started = time.monotonic()
        stop.phase = "recording"
        if traced:
            traced.start()
        recording.stopped_by = read_until_stopped(fd, output, started, limit, traced, args.pid, stop, tracing)
        write_tracefs(os.path.join(tracing, "tracing_on"), "0")
        recording.seconds = time.monotonic() - started
        drain(fd, output, stop)
    finally:
        os.close(fd)
    recording.stats = kernel_cpu_stats(tracing)


def read_until_stopped(
    fd: int, output: DataFile, started: float, limit: float | None, traced: TracedCommand | None, pids: list[int] | None, stop: StopSignals, tracing: str
) -> str:
    import select

    progress = Progress("recording", None)
    next_stats = started
    try:
        while True:
            now = time.monotonic()
            reason = stop_reason(now - started, limit, traced, pids, stop)
            if reason:
                return reason
            slice_end = min(now + 0.5, started + limit) if limit else now + 0.5
            select.select([fd], [], [], max(0.0, min(0.2, slice_end - now)))
            read_available(fd, output, until=slice_end)
            if progress.enabled and time.monotonic() >= next_stats:
                next_stats = time.monotonic() + 1.0
                show_record_progress(progress, time.monotonic() - started, limit, output.bytes_in, tracing)
    finally:
        progress.close()


def show_record_progress(progress: Progress, elapsed: float, limit: float | None, written: int, tracing: str) -> None:
    lost = sum(lost_in(c) for c in kernel_cpu_stats(tracing).values())
    limit_text = f"limit {limit:.0f} s, " if limit else ""
    progress.update(written, f"{limit_text}{format_size(written / max(elapsed, 0.001))}/s, lost so far {lost:,}")


def drain(fd: int, output: DataFile, stop: StopSignals) -> None:
    """Everything the kernel still holds; a further stop signal cuts the drain short (what is left shows as entries)."""
    progress = Progress("reading what the kernel still holds", None)
    signals_before = stop.count
    try:
        while stop.count == signals_before:
            before = output.bytes_in
            read_available(fd, output, until=time.monotonic() + 0.5)
            if output.bytes_in == before:
                return
            progress.update(output.bytes_in)
    finally:
        progress.close()


def announce_recording(args: argparse.Namespace, limit: float | None, traced: TracedCommand | None) -> None:
    if traced and limit is None:
        say(f"Record mode - now recording while {' '.join(traced.argv)} runs")
    else:
        say(f"Record mode - now starting recording traces for {limit:.1f} seconds" + (f" (or until {traced.argv[0]} ends)" if traced else ""))
    if args.cpumask:
        say(f"Limit recording to CPU mask {kernel_cpumask(args.cpumask_value)} (CPUs {format_cpu_list([c for c in range(args.cpumask_value.bit_length()) if args.cpumask_value >> c & 1])})")


def stop_reason(elapsed: float, limit: float | None, traced: TracedCommand | None, pids: list[int] | None, stop: StopSignals) -> str:
    if stop.received:
        return stop.received
    if limit is not None and elapsed >= limit:
        return "time"
    if traced and not traced.running():
        return "command ended"
    if pids and not any(os.path.exists(f"/proc/{pid}") for pid in pids):
        return "process ended"
    return ""


def read_available(fd: int, output: DataFile, until: float) -> None:
    """Read until the kernel has nothing more (EAGAIN) or the time slice ends: never blocks, never overruns."""
    while time.monotonic() < until:
        try:
            data = os.read(fd, READ_BYTES)
        except BlockingIOError:
            return
        except InterruptedError:
            continue
        if not data:
            return
        output.write(data)


def write_footer(output: DataFile, recording: Recording) -> None:
    output.comment("duration-s", f"{recording.seconds:.3f}")
    output.comment("stopped-by", recording.stopped_by)
    for cpu, counters in recording.stats.items():
        output.comment(f"cpu{cpu}-stats", " ".join(f"{key}={counters.get(key, 0)}" for key in KERNEL_STATS_KEYS.values()))
    output.comment("end", "complete")


def report_recording(args: argparse.Namespace, recording: Recording) -> None:
    if recording.stopped_by in STOP_SIGNALS:
        say(f"Stopped by {recording.stopped_by} after {recording.seconds:.1f} s; everything read so far is kept")
    if recording.command_status is not None:
        say(f"Command exited with status {recording.command_status}")
    say(f"Wrote data to {args.output}" + (f" (the previous one is now {recording.old_file})" if recording.old_file else ""))
    say(f"Recorded filesize: {format_size(recording.size)}")
    read = sum(c.get("read-events", 0) for c in recording.stats.values())
    lost = {cpu: lost_in(c) for cpu, c in recording.stats.items()}
    total = sum(lost.values())
    per_cpu = ", ".join(f"cpu{cpu} {n:,}" for cpu, n in lost.items())
    share = total / (total + read) if total + read else 0.0
    say(f"Events read: {read:,}; lost by the kernel: {total:,} ({share:.1%}) [{per_cpu}]")
    unread = sum(c.get("entries", 0) for c in recording.stats.values())
    if unread:
        say(f"Not read: {unread:,} events were still in the kernel's buffer when reading stopped (a second stop signal)")
    if share > HIGH_LOSS_SHARE:
        say("Hint: to lose less, give each CPU a bigger buffer (--buffer-size 16384), trace fewer CPUs (--cpumask)"
            " or less code (--graph-function tcp_sendmsg, --filter, --max-depth)")


# ============================================================================
# CLI
# ============================================================================

VISUALIZE_EXAMPLES = """examples:
  ./kernel-magnifier.py visualize                      # kernel-magnifier.data -> kernel-magnifier.pdf + function-calls.png
  ./kernel-magnifier.py visualize -i trace.txt.xz      # any ftrace text: function_graph or function tracer, .gz/.xz
  ./kernel-magnifier.py visualize -i a.data -i b.data  # aggregate several recordings into one graph
  ./kernel-magnifier.py visualize --filter-filepath net,kernel/sched   # only functions from these source paths
  ./kernel-magnifier.py visualize --filter-execution-no 100            # only functions called more than 100 times
  ./kernel-magnifier.py visualize --max-nodes 200 -o graph.svg         # a bigger drawing, as SVG
  ./kernel-magnifier.py visualize -o graph.json                        # every node and edge, for scripts
"""


RECORD_EXAMPLES = """examples:
  sudo ./kernel-magnifier.py record                                  # 10 s of function_graph on every CPU (-a)
  sudo ./kernel-magnifier.py record --record-time 10 -C 0            # CPU 0 only (a CPU list, as perf -C: 0,2-3)
  sudo ./kernel-magnifier.py record -M 5                             # CPUs 0 and 2 (a hex mask, as tracing_cpumask: 10 is CPU 4)
  sudo ./kernel-magnifier.py record --graph-function tcp_sendmsg,tcp_recvmsg --record-time 2
  sudo ./kernel-magnifier.py record --filter 'tcp_*' --tracer function   # plain function tracer, only tcp_* functions
  sudo ./kernel-magnifier.py record --notrace 'rcu_*' --max-depth 5
  sudo ./kernel-magnifier.py record --buffer-size 16384 -o net.data.xz  # 16 MiB per CPU, compressed on the fly
  sudo ./kernel-magnifier.py record -O funcgraph-proc -O nofuncgraph-irqs
  sudo ./kernel-magnifier.py record --pid 1234 --record-time 5       # one running process
  sudo ./kernel-magnifier.py record -- ping -c 3 localhost           # a command and its children, until it ends
  sudo ./kernel-magnifier.py record --force                          # borrow the tracer someone left active (given back after)

trace-cmd and perf spellings work too: -p TRACER, -g FUNC, -l FILTER, -n NOTRACE,
-b KB, -M MASK, -P PID, -O OPTION, --max-graph-depth N; perf's -C LIST and -a:
  sudo ./kernel-magnifier.py record -p function_graph -g tcp_sendmsg -C 0 -b 2048 --max-graph-depth 4
  sudo ./kernel-magnifier.py record -p function -l 'vfs_*' -n vfs_write -P 1234

Ctrl-C (or SIGTERM, SIGHUP) ends the recording early and keeps what was read.
The tracing state (tracer, tracing_on, cpumask, buffer size, filters, pids,
options) is given back as it was found on every way out.
"""

SYMBOL_MAP_EXAMPLES = """examples:
  ./kernel-magnifier.py generate-symbol-map                 # vmlinux of the running kernel from /usr/lib/debug/boot
  ./kernel-magnifier.py generate-symbol-map -k /usr/lib/debug/boot/vmlinux-6.1.0-56-amd64 -o 6.1.map
  ./kernel-magnifier.py generate-symbol-map -k ~/linux/vmlinux      # your own build (CONFIG_DEBUG_INFO=y)
  ./kernel-magnifier.py generate-symbol-map --dwarfdump dwarfdump   # libdwarf's dwarfdump instead of llvm-dwarfdump
  ./kernel-magnifier.py generate-symbol-map --modules /usr/lib/debug/lib/modules/$(uname -r) --only-loaded
  ./kernel-magnifier.py visualize --filter-filepath net,kernel/sched  # then use the map
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep the examples' layout; show a default only where there is one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, "", argparse.SUPPRESS) and "%(default)" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kernel-magnifier.py", description="See how the Linux kernel really executes: record ftrace call data and draw it as a call graph.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show a full traceback on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    record = commands.add_parser(
        "record", parents=[common], formatter_class=HelpFormatter, epilog=RECORD_EXAMPLES,
        usage="%(prog)s [options] [-- COMMAND [ARG ...]]",
        help="record the kernel's function calls with ftrace into a data file (needs root)",
        description="Drive tracefs with the function_graph (or function) tracer and stream what the kernel emits into a data file.",
    )
    record.add_argument("--record-time", type=float, metavar="SECONDS", help="how long to record (default 10; with -- COMMAND: until it ends)")
    record.add_argument("-a", "--all-cpus", action="store_true", help="every online CPU: what record does anyway (perf's -a)")
    record.add_argument("-C", "--cpu", dest="cpu_list", metavar="LIST", help="only these CPUs, as a list: 0,2-3 (perf's -C)")
    record.add_argument("-M", "--cpumask", metavar="MASK", help="only these CPUs, as a hex mask like tracing_cpumask: 1 is CPU 0, 10 is CPU 4, 5 is CPUs 0 and 2")
    record.add_argument("-o", "--output", default=DEFAULT_DATA_FILE, metavar="FILE", help="data file (.gz/.xz: compressed); an existing one becomes FILE.old")
    record.add_argument("-p", "--tracer", choices=("function_graph", "function"), default="function_graph", help="ftrace tracer")
    record.add_argument("-b", "--buffer-size", type=positive_int, metavar="KB", help="ring buffer per CPU in KiB (kernel default 1408)")
    record.add_argument("-g", "--graph-function", action="append", metavar="F[,F...]", help="only calls below these functions (set_graph_function)")
    record.add_argument("-l", "--filter", action="append", metavar="F[,F...]", help="only these functions, globs allowed (set_ftrace_filter)")
    record.add_argument("-n", "--notrace", action="append", metavar="F[,F...]", help="never these functions, globs allowed (set_ftrace_notrace)")
    record.add_argument("--max-depth", "--max-graph-depth", type=positive_int, metavar="N", help="function_graph: at most N levels deep (max_graph_depth)")
    record.add_argument("-P", "--pid", type=positive_int, action="append", metavar="PID", help="only this process (repeatable)")
    record.add_argument("-O", dest="tracer_options", action="append", metavar="OPTION", help="tracer option on (funcgraph-proc) or off (nofuncgraph-irqs); repeatable")
    record.add_argument("--force", action="store_true", help="borrow the tracer even when another one is active")
    visualize = commands.add_parser(
        "visualize", parents=[common], formatter_class=HelpFormatter, epilog=VISUALIZE_EXAMPLES,
        help="draw a call graph and a chart of the most-called functions from recorded data",
        description="Parse ftrace text (kernel-magnifier.data, trace, trace_pipe or trace-cmd report output) and draw the calls.",
    )
    visualize.add_argument("-i", "--input", action="append", metavar="FILE", help="trace file to read, repeatable to aggregate several (default: kernel-magnifier.data); .gz and .xz are read directly")
    visualize.add_argument("-o", "--output", default="kernel-magnifier.pdf", metavar="FILE", help="call graph file; format from the extension: .pdf .svg .png .dot .json")
    visualize.add_argument("--chart", default="function-calls.png", metavar="FILE", help="PNG chart of the most-called functions ('' for none)")
    visualize.add_argument("--chart-top", type=positive_int, default=30, metavar="N", help="functions in the chart")
    visualize.add_argument("--symbol-map", default=DEFAULT_SYMBOL_MAP, metavar="FILE", help="function -> source file map, used when present")
    visualize.add_argument("--filter-filepath", metavar="PATHS", help="keep functions whose source path contains one of these comma-separated strings (needs the symbol map)")
    visualize.add_argument("--filter-execution-no", type=non_negative_int, metavar="N", help="keep only functions called more than N times")
    visualize.add_argument("--max-nodes", type=non_negative_int, default=80, metavar="N", help="draw the N hottest functions (0: all)")
    visualize.add_argument("--max-edges", type=non_negative_int, default=200, metavar="N", help="draw the N most-used edges among them (0: all)")
    visualize.add_argument("--layout", choices=("auto", "dot", "sfdp"), default="auto", help="graphviz layout: dot (layered) or sfdp (scales to thousands of nodes); auto picks by size")
    symbol_map = commands.add_parser(
        "generate-symbol-map", parents=[common], formatter_class=HelpFormatter, epilog=SYMBOL_MAP_EXAMPLES,
        help="map kernel function names to the source files that define them, from DWARF debug info",
        description="Run a dwarfdump on a vmlinux with debug info and write a function name -> source file map for visualize.",
    )
    symbol_map.add_argument("-k", "--vmlinux", default=DEFAULT_VMLINUX, metavar="VMLINUX", help="kernel image with debug info")
    symbol_map.add_argument("-o", "--output", default=DEFAULT_SYMBOL_MAP, metavar="FILE", help="map file to write")
    symbol_map.add_argument("--dwarfdump", metavar="PROGRAM", help="llvm-dwarfdump (preferred, default when installed) or libdwarf's dwarfdump")
    symbol_map.add_argument(
        "--modules", metavar="DIR", help="also map functions of kernel modules: every .ko with debug info under DIR (Debian: /usr/lib/debug/lib/modules/VERSION)"
    )
    symbol_map.add_argument("--only-loaded", action="store_true", help="with --modules: only modules loaded now (/proc/modules)")
    return parser


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "record": run_record,
    "visualize": run_visualize,
    "generate-symbol-map": run_generate_symbol_map,
}


def split_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """`record [options] -- COMMAND ARGS`: everything after the first -- is the command, untouched by argparse."""
    if "--" not in argv:
        return argv, None
    index = argv.index("--")
    return argv[:index], argv[index + 1 :]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    argv, command = split_command(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if command is not None and args.command != "record":
        parser.error("-- COMMAND is only for record")
    if command == []:
        parser.error("-- must be followed by the command to record")
    args.command_argv = command or []
    args.symbol_map_given = "--symbol-map" in argv or any(a.startswith("--symbol-map=") for a in argv)
    try:
        COMMANDS[args.command](args)
    except UserError as err:
        if args.debug:
            raise
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return getattr(err, "exit_status", 1)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as err:
        if args.debug:
            raise
        print(f"{PROG}: internal error: {type(err).__name__}: {err} (run with --debug for the traceback)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
