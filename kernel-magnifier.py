#!/usr/bin/env python3
"""kernel-magnifier: see how the Linux kernel really executes.

Records kernel function calls with ftrace (``record``), maps function names to
source files from DWARF debug info (``generate-symbol-map``) and draws the calls
as a heat-coloured call graph plus a chart of the most-called functions
(``visualize``).

The file is a pipeline in sections, read top to bottom:
    Console            errors, progress, safe atomic output files
    Model              CallTree (one node per distinct call path) and the CallGraph derived from it
    Input              plain, gzip and xz text, judged text or not by its bytes
    Parsers            function_graph text, function tracer text, the latency format, trace-cmd report (one process, or N chunks with -j)
    Input: trace.dat   trace-cmd's binary file (v6, v7), decoded into the same model (one process, or N time windows with -j);
                       any event's fields by its stored format
    Calls over time    every single call with its start, duration, task: timeline, latency, --pid/--cpu, --time-window
    Sleeps and wakeups on/off-CPU time of every call path from sched_switch, who wakes whom from sched_waking
    Symbol map         reading a name -> source file map, and generating one from DWARF
    Views              --root/--callers/--depth, filters, --errors' paths, the connected drawing grown from entry points
    Output             heat, graphviz in a child process, JSON, charts, folded stacks, timeline, HTML flame graph,
                       the HTML explorer page (every view around one selected function), text report
    Visualize          the output writers by file ending (-o - for the text report), run_visualize
    Record             borrowing tracefs, streaming trace_pipe, giving tracefs back
    CLI                argparse, subcommands, main
"""

from __future__ import annotations

import argparse
import array
import bisect
import collections
import contextlib
import difflib
import errno
import fnmatch
import gc
import gzip
import heapq
import html
import io
import itertools
import json
import lzma
import math
import mmap
import os
import pickle
import random
import re
import signal
import stat
import statistics
import sys
import tempfile
import textwrap
import time
import urllib.parse
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Callable

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
    A symlink is written through: its target is replaced, the link stays.
    """
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    remove_stale_temporaries(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.km{os.getpid()}.", suffix=".tmp", dir=directory)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}") from err
    os.close(fd)
    try:
        yield tmp
        with output_errors(path):
            os.chmod(tmp, 0o644)
            if keep_old and os.path.exists(target):
                os.replace(target, target + ".old")
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def stdout_output(ending: str, stream: IO[str]) -> Iterator[str]:
    """-o -: yield a temporary file named with the format's ending (the writers choose by it); copied to `stream` only
    when complete, so a failed or interrupted run prints nothing, as it leaves no half-written file."""
    import shutil

    with tempfile.TemporaryDirectory(prefix="kernel-magnifier-stdout.") as directory:
        path = os.path.join(directory, "standard-output" + ending)
        yield path
        with open(path, encoding="utf-8") as handle:
            shutil.copyfileobj(handle, stream)
        stream.flush()


def remove_stale_temporaries(target: str) -> None:
    """Temporary files of an earlier run killed with SIGKILL (nothing can clean up then): ours, of a process that is gone."""
    directory, name = os.path.split(target)
    pattern = re.compile(rf"^\.{re.escape(name)}\.km(\d+)\.\w+\.tmp$")
    with contextlib.suppress(OSError):
        for entry in os.listdir(directory):
            match = pattern.match(entry)
            if match and not process_exists(int(match.group(1))):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, entry))


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


@contextlib.contextmanager
def output_errors(path: str) -> Iterator[None]:
    """An OS error while writing `path` (a full disk, a quota) is the user's to fix: one line naming it."""
    try:
        yield
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}") from err


def check_writable(path: str) -> None:
    """Fail before a long parse, not after it, when an output cannot be written.

    Only a regular file (or a symlink to one) is ever replaced: a device such as
    /dev/full or /dev/null, a FIFO, a socket or a directory is refused.
    """
    kind = non_regular_kind(path)
    if kind:
        raise UserError(f"cannot write {path}: it is {kind}, not a regular file")
    directory = os.path.dirname(os.path.realpath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".kernel-magnifier-check.", dir=directory)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}") from err
    os.close(fd)
    os.unlink(tmp)


def non_regular_kind(path: str) -> str | None:
    """What `path` is when it exists and is not a regular file (following symlinks), else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


def check_outputs(outputs: list[str], inputs: list[str]) -> None:
    """Each output writable, none of them an input, no two of them the same file."""
    seen: dict[object, str] = {}
    for output in outputs:
        check_writable(output)
        for source in inputs:
            with contextlib.suppress(OSError):
                if os.path.samefile(output, source):
                    raise UserError(f"cannot write {output}: it is also the input {source}; choose another output name")
        identity = file_identity(output)
        if identity in seen:
            raise UserError(f"{seen[identity]} and {output} are the same file: give each output its own name")
        seen[identity] = output


def file_identity(path: str) -> object:
    """(device, inode) of an existing file, else its resolved path: equal for two names of one file."""
    try:
        info = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return (info.st_dev, info.st_ino)


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
    open_calls: int = 0  # calls still open at the end of the trace (the recording stopped inside them)
    open_calls_bounded: int = 0  # of those, calls whose task has no timestamps: their time is their finished callees'
    kernel_stats: dict[str, dict[str, int]] = field(default_factory=dict)  # from a record data file
    metadata: dict[str, str] = field(default_factory=dict)
    formats: set[str] = field(default_factory=set)
    inputs: list[str] = field(default_factory=list)
    trace_events: dict[str, int] = field(default_factory=dict)  # tracepoint events between the calls, by name (sched_switch: 640)
    latency_traces: list[dict] = field(default_factory=list)  # a latency tracer's summary per input (TraceParser.note_latency_trace)
    first_us: float | None = None  # the first and last timestamp (trace time) of the inputs: the earliest
    last_us: float | None = None  # of their first ones, the latest of their last ones

    def note_time(self, first_us: float | None, last_us: float | None) -> None:
        """One input's first and last timestamp."""
        if first_us is not None:
            self.first_us = first_us if self.first_us is None else min(self.first_us, first_us)
        if last_us is not None:
            self.last_us = last_us if self.last_us is None else max(self.last_us, last_us)

    def time_span(self) -> str:
        """"194.199156 s to 194.716717 s", or why there is none."""
        if self.first_us is None or self.last_us is None:
            return "no timestamps in the trace"
        return f"{self.first_us / 1e6:.6f} s to {self.last_us / 1e6:.6f} s"

    def note_trace_event(self, name: str, count: int = 1) -> None:
        self.trace_events[name] = self.trace_events.get(name, 0) + count

    def trace_events_text(self) -> str:
        """"trace events: sched_switch 1,409, sched_waking 745", most first; "" without events."""
        counted = sorted(self.trace_events.items(), key=lambda item: (-item[1], item[0]))
        return "trace events: " + ", ".join(f"{name} {count:,}" for name, count in counted) if counted else ""

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
    """Functions (nodes) and caller -> callee edges, derived from a calling-context tree.

    While parsing only `tree`, `stats` and `modules` are filled; derive_graph()
    computes the rest. `inclusive`/`edge_weight` are what pruning and heat rank
    by: total time where the trace has durations, else calls in the subtree.
    """

    tree: CallTree = field(default_factory=lambda: CallTree())
    stats: TraceStats = field(default_factory=TraceStats)
    modules: dict[str, str] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    total_us: dict[str, float] = field(default_factory=dict)
    self_us: dict[str, float] = field(default_factory=dict)
    inclusive: dict[str, float] = field(default_factory=dict)
    edges: dict[tuple[str, str], int] = field(default_factory=dict)
    edge_weight: dict[tuple[str, str], float] = field(default_factory=dict)
    edge_sites: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)  # funcgraph-retaddr: edge -> {site: calls}, summed over paths
    roots: dict[str, float] = field(default_factory=dict)  # functions with top-level activations, by weight
    open_calls: dict[str, int] = field(default_factory=dict)  # functions' calls still open at the end of the trace
    timed: bool = False
    uses_time: bool = False
    weight_total: float = 0.0
    reversed: bool = False  # a --callers view: the tree grows from the callee up to its callers
    sched: SchedTimes | None = None  # on/off-CPU time and wakeups, where the inputs hold sched_switch events
    woken: bool = False  # a --wakers tree (reversed): its calls are sleeps of the focus woken through a function, its times their waits
    off_cpu: dict[str, OffCpu] = field(default_factory=dict)  # per function, from `sched` (attach_sched)
    # --group-by: group -> {member function: [calls, self time]} (summed from CallTree.members); "" ungrouped, else "dir:2"...
    members: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    group_by: str = ""

    def nodes(self) -> list[str]:
        return list(self.calls)

    def is_group(self, name: str) -> bool:
        return name in self.members

    def inner_calls(self, name: str) -> int:
        """A group's calls between its own functions: its functions' calls less the calls into it."""
        return int(sum(numbers[0] for numbers in self.members.get(name, {}).values())) - self.calls.get(name, 0)


ROOT_NODE = 0
MAX_CALL_PATHS = 3_000_000  # distinct call paths kept in memory (about 1 GB); a pathological trace is refused beyond


class CallTree:
    """The calling-context tree: one node per distinct call path, with its calls, total and self time.

    Node 0 is the root (no function). Nodes live in parallel lists indexed by id,
    which keeps the per-event cost to one dict lookup. A node made for a call
    whose caller is not known yet is "detached": it belongs to no parent's
    children until merge_detached() places it, so an orphan `} /* f */` can still
    name its caller later.
    """

    def __init__(self, limit: int = MAX_CALL_PATHS) -> None:
        self.function: list[str | None] = [None]
        self.parent: list[int] = [-1]
        self.calls: list[int] = [0]
        self.total_us: list[float] = [0.0]
        self.self_us: list[float] = [0.0]
        self.children: list[dict[str, int] | None] = [None]
        self.timed = False  # some node has a duration
        # node -> {negative errno: [times returned, of which not passed up from a callee]}; only nodes that returned one
        self.errnos: dict[int, dict[int, list[int]]] = {}
        self.limit = limit
        self.free: list[int] = []  # ids of merged detached nodes, reused: lost events must not grow the tree
        self.open_calls: dict[int, int] = {}  # node -> its calls still open at the end of the trace (set by finish())
        # node -> {call site as the kernel printed it ("do_sys_openat2+0x48/0xb7"): calls}; only calls whose entry
        # carried a return address (funcgraph-retaddr): memory grows with the distinct sites per path, never with the trace
        self.call_sites: dict[int, dict[str, int]] = {}
        # a --group-by tree's node -> {function merged into it: [calls, self time]} (group_tree); empty otherwise
        self.members: dict[int, dict[str, list[float]]] = {}

    def __len__(self) -> int:
        return len(self.function)

    def child(self, node: int, name: str) -> int:
        kids = self.children[node]
        if kids is None:
            kids = self.children[node] = {}
        found = kids.get(name)
        if found is None:
            found = kids[name] = self.new_node(node, name)
        return found

    def new_node(self, parent: int, name: str) -> int:
        if self.free:
            node = self.free.pop()
            self.function[node] = name
            self.parent[node] = parent
            return node  # merge() left its counts at zero and its children at None
        node = len(self.function)
        if node >= self.limit:
            raise UserError(
                f"the trace has more than {self.limit:,} distinct call paths, more than fit in memory:"
                " record less (--graph-function, --max-depth, --filter) or split the input"
            )
        self.function.append(name)
        self.parent.append(parent)
        self.calls.append(0)
        self.total_us.append(0.0)
        self.self_us.append(0.0)
        self.children.append(None)
        return node

    def detached(self, name: str) -> int:
        return self.new_node(ROOT_NODE, name)

    def note_errno(self, node: int, err: int, passed_up: bool) -> None:
        """The call at `node` returned the negative errno `err` (at most 4,095 keys per node)."""
        self.add_errno_counts(node, err, [1, 0 if passed_up else 1])

    def add_errno_counts(self, node: int, err: int, counts: list[int]) -> None:
        returned = self.errnos.setdefault(node, {})
        mine = returned.get(err)
        if mine is None:
            returned[err] = list(counts)
        else:
            mine[0] += counts[0]
            mine[1] += counts[1]

    def note_call_site(self, node: int, site: str, calls: int = 1) -> None:
        sites = self.call_sites.get(node)
        if sites is None:
            sites = self.call_sites[node] = {}
        sites[site] = sites.get(site, 0) + calls

    def merge_detached(self, node: int, into_parent: int) -> None:
        """Add a detached node's subtree into the tree below `into_parent`."""
        self.merge(node, self.child(into_parent, self.function[node] or ""))

    def merge(self, source: int, target: int) -> None:
        """Add the detached subtree at `source` into `target`; its nodes are free for reuse afterwards.

        Calls after every loss of events start detached subtrees: without reuse a
        long lossy recording would grow the tree with its length, not with its
        distinct call paths. The caller makes sure nothing else holds these ids
        (the task's frames below the merged depth are gone, its counts flushed).
        """
        calls, total_us, self_us, children, function, free = self.calls, self.total_us, self.self_us, self.children, self.function, self.free
        child, errnos, open_calls, call_sites = self.child, self.errnos, self.open_calls, self.call_sites
        work = [(source, target)]
        while work:
            source, target = work.pop()
            if errnos and source in errnos:
                for err, counts in errnos.pop(source).items():
                    self.add_errno_counts(target, err, counts)
            if open_calls and source in open_calls:
                open_calls[target] = open_calls.get(target, 0) + open_calls.pop(source)
            if call_sites and source in call_sites:
                for site, count in call_sites.pop(source).items():
                    self.note_call_site(target, site, count)
            calls[target] += calls[source]
            total_us[target] += total_us[source]
            self_us[target] += self_us[source]
            calls[source] = 0
            total_us[source] = self_us[source] = 0.0
            kids = children[source]
            children[source] = None
            function[source] = None
            free.append(source)
            if kids:
                for name, kid in kids.items():
                    work.append((kid, child(target, name)))

    def walk(self, start: int = ROOT_NODE) -> Iterator[int]:
        """Node ids below `start` (excluded), parents before children."""
        stack = list((self.children[start] or {}).values())
        while stack:
            node = stack.pop()
            yield node
            kids = self.children[node]
            if kids:
                stack.extend(kids.values())

    def live_nodes(self) -> int:
        return sum(1 for _ in self.walk())

    def path(self, node: int) -> list[str]:
        names = []
        while node > ROOT_NODE:
            names.append(self.function[node] or "")
            node = self.parent[node]
        return names[::-1]

    def subtree_calls(self) -> list[int]:
        """Calls in each node's subtree (itself included): the weight of a path without durations."""
        inclusive = list(self.calls)
        for node in reversed(list(self.walk())):
            parent = self.parent[node]
            if parent > ROOT_NODE:
                inclusive[parent] += inclusive[node]
        inclusive[ROOT_NODE] = sum(inclusive[kid] for kid in (self.children[ROOT_NODE] or {}).values())
        return inclusive


def derive_graph(tree: CallTree, stats: TraceStats, modules: dict[str, str], metric: str = "auto") -> CallGraph:
    """The function-level call graph of a calling-context tree.

    A function's total time counts only its outermost activations on each path
    (recursion would count it again), its self time and calls every activation.
    Inclusive weight is total time when the trace has durations, else the calls
    in the subtrees below the function's outermost activations.
    """
    graph = CallGraph(tree=tree, stats=stats, modules=modules)
    graph.timed = tree.timed
    subtree = tree.subtree_calls()
    use_time = tree.timed if metric == "auto" else metric == "time"
    calls, total, self_us, inclusive, edges, edge_weight = graph.calls, graph.total_us, graph.self_us, graph.inclusive, graph.edges, graph.edge_weight
    call_sites = tree.call_sites
    on_path: Counter[str] = Counter()
    # Children by name, not by when the parse made them: -j N stitches trees that made them in another order.
    stack: list[tuple[int, bool]] = [(kid, False) for _, kid in sorted((tree.children[ROOT_NODE] or {}).items())]
    while stack:
        node, leaving = stack.pop()
        name = tree.function[node] or ""
        if leaving:
            on_path[name] -= 1
            continue
        weight = tree.total_us[node] if use_time else subtree[node]
        calls[name] = calls.get(name, 0) + tree.calls[node]
        self_us[name] = self_us.get(name, 0.0) + tree.self_us[node]
        if not on_path[name]:
            total[name] = total.get(name, 0.0) + tree.total_us[node]
            inclusive[name] = inclusive.get(name, 0.0) + weight
        parent = tree.parent[node]
        if parent > ROOT_NODE:
            edge = (tree.function[parent] or "", name)
            edges[edge] = edges.get(edge, 0) + tree.calls[node]
            if node in call_sites:
                summed = graph.edge_sites.setdefault(edge, {})
                for site, count in call_sites[node].items():
                    summed[site] = summed.get(site, 0) + count
            if not on_path[name]:
                edge_weight[edge] = edge_weight.get(edge, 0.0) + weight
            else:
                edge_weight.setdefault(edge, 0.0)
        else:
            graph.roots[name] = graph.roots.get(name, 0.0) + weight
        on_path[name] += 1
        stack.append((node, True))
        kids = tree.children[node]
        if kids:
            stack.extend((kid, False) for _, kid in sorted(kids.items()))
    for node, count in tree.open_calls.items():
        name = tree.function[node] or ""
        graph.open_calls[name] = graph.open_calls.get(name, 0) + count
    for node, found in tree.members.items():
        add_members(graph.members.setdefault(tree.function[node] or "", {}), found)
    # The whole every view shares: the flame graph's, where a call whose exit was lost is as wide as its callees.
    graph.weight_total = flame_weights(tree, use_time)[ROOT_NODE]
    graph.uses_time = use_time
    return graph


def add_members(into: dict[str, list[float]], members: dict[str, list[float]]) -> None:
    """Add a group node's member functions' [calls, self time] into a sum."""
    for name, (calls, self_us) in members.items():
        mine = into.get(name)
        if mine is None:
            into[name] = [calls, self_us]
        else:
            mine[0] += calls
            mine[1] += self_us


# ============================================================================
# Input: plain, .gz and .xz files, rejecting what is not trace text
# ============================================================================

CHUNK_BYTES = 4 << 20
TRACE_CMD_MAGIC = b"\x17\x08\x44tracing"
GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
UTF8_BOM = b"\xef\xbb\xbf"
# No ftrace line comes near this (funcgraph-args or a trace_marker text: a few hundred bytes, at most
# 4 KiB); a longer line is damage, counted as not understood without being parsed or kept whole.
MAX_LINE_LENGTH = 8192
# Bytes that never appear in text (tab, newline, CR, form feed, vertical tab and ESC do).
CONTROL_BYTES = bytes(byte for byte in range(32) if byte not in b"\t\n\r\f\v\x1b") + b"\x7f"
BINARY_SHARE = 0.01  # more non-text bytes than this in the first 64 KiB: the file is not text
READ_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error)


class DamagedLines(list):
    """Lines that cannot be trace text (a NUL byte, longer than MAX_LINE_LENGTH), cut to their head."""


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
    try:
        return decompressed(raw), raw
    except OSError as err:
        raw.close()
        raise UserError(f"cannot read {path}: {err.strerror}") from err


def decompressed(raw: IO[bytes]) -> IO[bytes]:
    """The file's content, decompressed when its first bytes say gzip or xz (whatever its name)."""
    head = raw.peek(len(XZ_MAGIC))[: len(XZ_MAGIC)]
    if head.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if head.startswith(XZ_MAGIC):
        return lzma.LZMAFile(raw)
    return raw


def read_failure(stream: IO[bytes], err: BaseException) -> str:
    """Why reading failed, in words: damaged compressed data or the OS's reason."""
    detail = str(err) or type(err).__name__
    if isinstance(stream, (gzip.GzipFile, lzma.LZMAFile)):
        kind = "gzip" if isinstance(stream, gzip.GzipFile) else "xz"
        return f"damaged or truncated {kind} data ({detail})"
    return getattr(err, "strerror", None) or detail


def read_text_lines(path: str, progress: Progress | None = None, start: int = 0, end: int | None = None) -> Iterator[list[str]]:
    """Yield the file's lines in batches, streaming with bounded memory.

    A line that cannot be trace text comes as a DamagedLines batch of its own, cut
    to its head: the parser counts it as not understood; a line longer than
    MAX_LINE_LENGTH is never held whole. `start`/`end`: only these bytes of a
    plain (uncompressed) file, `start` at the beginning of a line.
    """
    stream, raw = open_binary(path)
    with raw, stream:
        carry = b""
        dropping = False  # inside a line longer than MAX_LINE_LENGTH: skip to its end
        first = start == 0
        if start:
            raw.seek(start)
        while True:
            try:
                block = stream.read(CHUNK_BYTES if end is None else max(0, min(CHUNK_BYTES, end - raw.tell())))
            except READ_ERRORS as err:
                raise UserError(f"{path}: {read_failure(stream, err)}") from err
            if first:
                block = block[len(UTF8_BOM) :] if block.startswith(UTF8_BOM) else block
                reject_non_text(path, block)
                first = False
            if not block:
                break
            if dropping:
                newline = block.find(b"\n")
                if newline < 0:
                    continue
                block, dropping = block[newline + 1 :], False
            block = carry + block
            cut = block.rfind(b"\n")
            carry = block[cut + 1 :]
            if cut >= 0:
                yield from text_batches(block[:cut])
            if len(carry) > MAX_LINE_LENGTH:
                yield DamagedLines([carry[:200].decode("utf-8", "replace")])
                carry, dropping = b"", True
            if progress:
                progress.update(raw.tell())
        if carry:
            yield from text_batches(carry)


def text_batches(data: bytes) -> Iterator[list[str]]:
    """The lines of `data`, with each line that cannot be text (NUL, too long) as a DamagedLines batch."""
    lines = data.decode("utf-8", "replace").split("\n")
    if b"\x00" not in data and max(map(len, lines)) <= MAX_LINE_LENGTH:
        yield lines
        return
    good: list[str] = []
    for line in lines:
        if "\x00" in line or len(line) > MAX_LINE_LENGTH:
            if good:
                yield good
                good = []
            yield DamagedLines([line[:200]])
        else:
            good.append(line)
    if good:
        yield good


def reject_non_text(path: str, head: bytes) -> None:
    """Judge the whole file by its first 64 KiB: the share of bytes that text never holds.

    A stray NUL or invalid UTF-8 byte is damage of one line (counted as not
    understood wherever it is), not a reason to refuse the file.
    """
    if not head:
        raise UserError(f"{path} is empty: nothing was recorded")
    if head.startswith(TRACE_CMD_MAGIC):
        raise UserError(f"{path} is a binary trace-cmd file: convert it with 'trace-cmd report -i {path} > trace.txt'")
    sample = head[:65536]
    controls = len(sample) - len(sample.translate(None, CONTROL_BYTES))
    if controls + sample.decode("utf-8", "replace").count("\ufffd") > len(sample) * BINARY_SHARE:
        raise UserError(f"{path} is binary data, not ftrace text")


# ============================================================================
# Parsers: function_graph text, function tracer text, the latency format, trace-cmd report
# ============================================================================
#
# Every line of every input goes through TraceParser.feed(). The common lines
# take a fast path (function_graph: split at the last "|  ", body looked up in a
# cache; function tracer: split at ": " and " <-"); everything else goes through
# classify_slow(), which knows every line kind in docs/ftrace-format notes.

# Every pattern below costs linear time on any line: no two adjacent or nested
# quantifiers can share characters unless one of them is bounded (a comm is at
# most 16 characters and starts after the padding), and where the format needs "the first ')' after which the
# rest of the line fits", code finds it (graph_call). Counts have at most 18
# digits and CPU numbers 9: a longer number is damage, and int() stays cheap.
# function_graph body after the "|  " separator: indentation + text. Calls ("f(args) {",
# "f(args);", either with a trailing "/* ... */") are split by graph_call(), not by a pattern.
GRAPH_CALL_HEAD = re.compile(r"( *)(?P<name>[^\s(\[{}/\x00]+)(?: \[(?P<module>[^\]\s]+)\])?\(")
GRAPH_CALL_COMMENT = re.compile(r"\)(?: \{|;) /\*")
GRAPH_BODY = re.compile(
    r"^( *)(?:"
    r"\}(?: /\* (?P<tail>[^\s\]\x00]+?)(?: \[[^\]\s]+\])?(?: .*)? \*/)?"
    r"|(?P<comment>/\*.*\*/)"
    r")\s*$"
)
# A tracepoint event between function_graph calls, as the kernel prints it: `/* sched_switch: prev_comm=... */`
# (a trace_printk() message that looks like one is counted as an event too: the text cannot tell them apart).
GRAPH_EVENT_COMMENT = re.compile(r" *\/\* (?P<name>\w+): (?P<fields>.*?) ?\*\/\s*$")
# A tracepoint event in function tracer text and trace-cmd report after the timestamp: `sched_waking: comm=...`
TRACE_EVENT_BODY = re.compile(r"^(?P<name>\w+):(?: +(?P<fields>.*?))?\s*$")
# The CPU, task and latency columns of a graph line (after abstime, before the duration field).
# The latency flags: 4 characters up to about 5.12, 5 since (migrate-disable), up to 8 on RT kernels (need-resched-lazy,
# preempt-lazy-depth); the first is irqs-off, never a digit. Older kernels print them with no " |" after them.
GRAPH_CONTEXT = re.compile(
    r"^ *(?:(?P<cpu>\d{1,9})\) +)?(?:(?P<comm>\S.{0,15}?)-(?P<pid>\d+) +\| +)?(?:(?P<flags>[.dDbX][.a-zA-Z0-9]{3,7})(?: \| +)?)?$"
)
# The time column before " |  ": funcgraph-abstime's seconds, or the latency tracers' "REL TIME" ("%9llu us", display-graph).
TIMESTAMP_TAIL = re.compile(r"(?:\d+\.\d+|^ *\d{1,12} us)$")
GRAPH_STAMP = re.compile(r"^ *(?:(?P<ts>\d{1,12}\.\d{1,9})|(?P<rel>\d{1,12}) us) \|  ")  # funcgraph-abstime, REL TIME
# A graph line without the "|  " separator (funcgraph-duration off): prefix then body.
GRAPH_NO_DURATION = re.compile(
    r"^(?: *\d+\.\d+ \|  )?(?: *(?P<cpu>\d{1,9})\) )?(?: *(?P<comm>\S.{0,15}?)-(?P<pid>\d+) +\| )?"
    r"(?: *(?P<flags>[.a-zA-Z0-9]{4,8}) \| )?(?P<body> *\S.*)$"
)
IRQ_ARROW = re.compile(r"^(?: *(?:\d+\.\d+|\d+ us) \|  )?(?: *(?P<cpu>\d{1,9})\) )?.*(?P<arrow>==========>|<==========)(?: *\|)?\s*$")
LOST_LINE = re.compile(r"^CPU:(\d{1,9}) \[(?:LOST(?: (\d{1,18}))? EVENTS|(?:(\d{1,18}) )?EVENTS DROPPED)\]\s*$")
SWITCH_DASHES = re.compile(r"^ -{20,}\s*$")
SWITCH_LINE = re.compile(r"^ *(?P<cpu>\d{1,9})\) +(?P<prev>\S.{0,15}?)-(?P<prev_pid>\d+) +=> +(?P<next>\S.{0,15}?)-(?P<next_pid>\d+) *$")
TRACE_CMD_HEADER = re.compile(r"^(?:cpus=\d+|version = \d+)\s*$")
OVERRUN_LINE = re.compile(r"^ \(Overruns: \d+\)\s*$")
METADATA_LINE = re.compile(r"^# ([A-Za-z0-9_-]+): ?(.*)$")  # the value is rstripped in code
ENTRIES_HEADER = re.compile(r"^# entries-in-buffer/entries-written: (\d{1,18})/(\d{1,18})(?!\d)")
STATS_KEY = re.compile(r"cpu(\d{1,9})-stats")
STATS_VALUE = re.compile(r"([a-z-]+)=(\d{1,18})$")
# Plain function tracer: "comm-pid [(tgid)] [cpu] [flags] timestamp: func <-parent".
FUNCTION_LINE = re.compile(
    r"^ *(?P<comm>\S.{0,15}?|)-(?P<pid>\d+) +(?:\( *(?:\d+|-+)\) +)?\[(?P<cpu>\d{1,9})\] +"
    r"(?:(?P<flags>[.a-zA-Z0-9]{4,7}) +)?(?P<ts>\d+(?:\.\d+)?): (?P<body>.*)$"
)
# The latency format (options/latency-format, which the latency tracers irqsoff, preemptoff, preemptirqsoff, wakeup,
# wakeup_rt and wakeup_dl turn on; trace_print_lat_context() in trace_output.c): "%8.8s-%-7d %3d" (pid "%-5d" before
# 5.x: comm cut to 8 characters, the CPU right before the flags), the flags, then " %4lldus%c: " (us since the trace's
# start and the delay mark: "+" >10 us, "!" >100 us, ... 2.6.x: "+" >1 us) or " %4lld: " for a clock that counts no ns.
# trace-cmd report -l prints the same columns, then its own " %5lu.%06lu: " seconds.
LATENCY_LINE = re.compile(
    r"^ *(?P<comm>\S.{0,7}?)-(?P<pid>\d{1,9}) +(?P<cpu>\d{1,9})(?P<flags>[.dDbX][.a-zA-Z0-9]{3,7}) +"
    r"(?:(?P<ts>\d{1,12}\.\d{1,9})|(?P<us>\d{1,18}(?:\.\d{1,9})?)(?P<unit>us[ +!#*@$])?): (?P<body>.*)$"
)
# The same with options/verbose: "%16s %7d %3d %d %08x %08lx " (comm, pid, CPU, the flag bits in decimal, preempt count,
# entry number), then "[%08llx] %ld.%03ldms (+%ld.%03ldms): " (the time in us, hex) or "[%016llx] %lld (+%lld): " (clock ticks).
VERBOSE_LATENCY_LINE = re.compile(
    r"^ *(?P<comm>\S.{0,15}?) +(?P<pid>\d{1,9}) +(?P<cpu>\d{1,9}) (?P<bits>\d{1,3}) [0-9a-f]{8,16} [0-9a-f]{8,16} "
    r"\[(?P<stamp>[0-9a-f]{8,16})\] (?:(?P<ms>\d{1,15}\.\d{3})ms \(\+\d{1,15}\.\d{3}ms\)|\d{1,20} \(\+\d{1,20}\)): (?P<body>.*)$"
)
# The flag bits of the verbose line (trace.h TRACE_FLAG_*) that say the context: hardirq, softirq, NMI.
VERBOSE_IRQ_BITS = ((0x40, "z"), (0x08, "h"), (0x10, "s"))
# Before 2.6.30 the latency format printed a call's parent in parentheses: "_spin_lock (copy_page_range)".
PARENTHESIZED_PARENT = re.compile(r"^(?P<name>[^\s(<\x00]+) \((?P<parent>[^\s()\x00]+)\)\s*$")
# The wakeup tracers' own context-switch and wakeup entries (trace_ctxwake_print): " %7d:%3d:%c %s [%03d] %7d:%3d:%c %s",
# prev pid:prio:state, "==>" (switch) or "  +" (wakeup), the next task's CPU, pid:prio:state and comm.
CTX_WAKE_BODY = re.compile(r"^ *\d{1,9}: *-?\d{1,4}:\S (?P<delim>==>|  \+) (?:\[\d{1,9}\] +)?\d{1,9}: *-?\d{1,4}:\S(?: .*)?$")
# The latency tracers' header (print_trace_header() in trace.c), each line after "# " (2.6.2x: no "#"):
# "# irqsoff latency trace v1.1.5 on 6.1.0", "# latency: 26 us, #4/4, CPU#0 | (M:preempt VP:0, KP:0, SP:0 HP:0 #P:2)",
# "#    | task: swapper/0-0 (uid:0 nice:0 policy:0 rt_prio:0)", "#  => started at: __schedule", "#  => ended at:   ...".
LATENCY_HEADER = re.compile(
    r"^#? *(?:(?P<tracer>\w{1,64}) latency trace v[\d.]{1,16} on (?P<kernel>\S{1,200})"
    r"|latency: (?P<us>\d{1,18}) us, #(?P<entries>\d{1,18})/(?P<written>\d{1,18}), CPU#(?P<cpu>\d{1,9}) \| \((?P<model>[^)]{0,200})\)"
    r"|\| task: (?P<comm>.{0,16}?)-(?P<pid>\d{1,9}) \((?P<attrs>[^)]{0,200})\)"
    r"|=> (?P<point>started|ended) at: *(?P<at>.*))\s*$"
)
LATENCY_TRACERS = frozenset({"irqsoff", "preemptoff", "preemptirqsoff", "wakeup", "wakeup_rt", "wakeup_dl"})
LATENCY_HEADER_STARTS = ("latency:", "| task:", "=> started at:", "=> ended at:")
LATENCY_FORMAT = "latency-format"  # in TraceStats.formats once a latency-format line was read
# A latency trace's summary (stats.latency_traces), every key always present; None where the input does not say.
LATENCY_SUMMARY_KEYS = ("input", "tracer", "kernel", "latency_us", "entries", "written", "cpu", "preemption", "cpus",
                        "task", "pid", "started_at", "ended_at", "span_us")
HARDSOFT_FLAGS = frozenset("hHszZ")  # the hardirq/softirq column's values other than "."
TRACE_CMD_GRAPH = re.compile(r"^(?P<event>funcgraph_entry|funcgraph_exit): +(?P<rest>.*)$")
TRACE_CMD_GRAPH_FIELDS = re.compile(r"^(?:[+!#*@$] )?(?:(?P<dur>\d{1,12}(?:\.\d{1,9})?) us)? *\|  (?P<body>.*)$")
# (?=(?P<x>...))(?P=x) takes the whole run at once (an atomic group): giving back
# characters of a name could never match, and trying costs time on junk.
FUNCTION_BODY = re.compile(
    r"^(?=(?P<name>[^\s(<\x00]+))(?P=name)(?: \[(?P<module>[^\]\s]+)\])?(?:\(.*?\))?"
    r"(?: <-{1,2} ?(?=(?P<parent>[^\s(\x00]+))(?P=parent)(?: \[[^\]\s]+\])?)?\s*$"
)
SYMBOL_OFFSET = re.compile(r"\+0x[0-9a-f]+/0x[0-9a-f]+$")

ENTRY, LEAF, EXIT, COMMENT = 1, 2, 3, 4
# A leaf or exit that returned a negative errno: (RETURNED_ERRNO, depth, its LEAF/EXIT tuple, errno).
# Its own kind keeps it off the hot loop's shortcuts (graph_event() applies it), so traces without
# errors pay nothing; an errno is rare enough that its slower path costs nothing measurable either.
RETURNED_ERRNO = 5
# An entry or leaf with its return address (funcgraph-retaddr, 6.13+): (CALLED_FROM, depth, its ENTRY/LEAF tuple, site),
# the site as the kernel prints it, "do_sys_openat2+0x48/0xb7" (a module's: "f+0x1/0x2 [mod]"). Wrapped like an errno:
# the hot loops unwrap it; a leaf with both is (RETURNED_ERRNO, depth, (CALLED_FROM, ...), errno).
CALLED_FROM = 6
# The comment after a call: "/* <-do_syscall_64+0x6b/0x1a3 */", "/* <-caller+0x2b/0x95 ret=-22 */" (with funcgraph-retval),
# "/* <-caller+0x2b/0x95 [9pnet] */", or "<-0xffffffff81000000" where kallsyms had no symbol (trace_seq_print_sym).
RETURN_ADDRESS = re.compile(r"/\* <-(?P<site>[^\s(\x00]+(?: \[[^\]\s]+\])?)(?: ret=\S+)? \*/\s*$")
SITE_PARTS = re.compile(r"^(?P<caller>[^\s+]+)\+0x(?P<offset>[0-9a-f]+)/0x(?P<size>[0-9a-f]+)(?: \[(?P<module>[^\]\s]+)\])?$")
# The return value in a leaf's or exit's comment (funcgraph-retval): "/* = -22 */", "/* f = 0x1 */" (about 6.5-6.12),
# "/* ret=-22 */", "/* f ret=0xffffffea */", "/* <-caller+0x1/0x2 ret=-22 */" (6.13+); trace-cmd report: " (ret=-22)".
RETURN_VALUE = re.compile(r"(?: = |ret=)(-?\d{1,20}|0x[0-9a-f]{1,16})(?: \*/|\))\s*$")
TRACE_CMD_RETURN_VALUE = re.compile(r" \(ret=(?:-?\d{1,20}|0x[0-9a-f]{1,16})\)\s*$")
MAX_ERRNO = 4095  # the kernel's IS_ERR_VALUE range: -1 .. -4095
RETURN_VALUES_FORMAT = "funcgraph-retval"  # in TraceStats.formats once a return value was read
CALL_SITES_FORMAT = "funcgraph-retaddr"  # in TraceStats.formats once a call's return address was read
TRACE_EVENTS_FORMAT = "trace events"  # in TraceStats.formats once a text input's tracepoint event was counted
# A repeated LOST line comes back at most this many lines later: the re-printed entry (one line), a
# context-switch block before it (4 lines), an irq arrow each side (2), then the LOST line again.
LOST_REPEAT_WINDOW = 8
BODY_CACHE_LIMIT = 200_000
FLUSH_COUNTER_MIN = 4096  # flush_counts(): a plain loop is faster than a Counter below this many calls
STAMP_SCAN_LINES = 200  # note_time_span(): lines looked at from each end of a batch for a timestamp
CACHE_KEY_LIMIT = 256  # longer bodies/columns are parsed each time: the caches stay within ~200 MB
MAX_DURATION_US = 1e12  # 11.6 days; the kernel's duration field holds at most 9 digits
BAD_DURATION, NOT_DURATION = -1.0, -2.0  # duration_field() results that are no duration
UNKNOWN_FIELD = object()  # a duration field not in the cache yet


# An open function_graph call on a task's stack is a list (cheaper than an object
# on the hot path): [name, depth, time spent in its children (us), irq flag, call-tree node],
# and from a trace.dat its entry's time (ns), for a call still open at the end.
FRAME_NAME, FRAME_DEPTH, FRAME_CHILD_US, FRAME_IRQ, FRAME_NODE, FRAME_START = 0, 1, 2, 3, 4, 5


class TaskState:
    """Per-task nesting: the open calls and calls whose caller is not known yet."""

    __slots__ = ("cpu", "irq_entry", "last_errno", "pending", "stack")

    def __init__(self) -> None:
        self.stack: list[list] = []
        # Calls seen with no caller frame (depth, detached call-tree node); an orphan
        # "} /* f */" one level up names their caller.
        self.pending: list[tuple[int, int]] = []
        self.irq_entry = False
        self.cpu: str | None = None
        self.last_errno: tuple[list, int] | None = None  # (open call a callee returned an errno to, that errno)


class TraceParser:
    """Turns ftrace text lines into a CallGraph, one line at a time, keeping only per-task state."""

    def __init__(self, graph: CallGraph) -> None:
        self.graph = graph
        self.stats = graph.stats
        self.tree = graph.tree
        self.function_nodes: dict[tuple, int] = {}
        self.tasks: dict[object, TaskState] = {}
        self.cpu_task: dict[str | None, object] = {}
        self.body_cache: dict[str, tuple | None] = {}
        self.context_cache: dict[str, tuple | bool] = {}
        self.function_cache: dict[str, tuple | bool] = {}
        self.call_nodes: dict[str, int] = {}  # function tracer text after the timestamp -> call-tree node
        self.duration_cache: dict[str, float | None] = {}  # function_graph duration column -> duration_field()
        self.head_cache: dict[str, tuple] = {}  # function_graph line up to its "|  " -> graph_head()
        self.last_lost: dict[str, tuple[int, int, tuple[int, int, int]]] = {}  # cpu -> (count, line number, event mark)
        self.called: list[int] = []  # call-tree nodes of this batch's calls, counted in flush_counts()
        # For the calls still open at the end: per task its last event's time, per (task, depth) the start of
        # its latest entry there: a text line's head (its time is read in finish()) or trace.dat's time in ns.
        self.last_stamp: dict[object, str | int] = {}
        self.entry_stamp: dict[tuple[object, int], str | int] = {}
        self.entries = self.leaves = self.exits = self.function_lines = 0
        self.entry_lines_done = self.other_lines_done = 0  # flushed counts, for event_mark()
        self.where = ""
        self.line_no = 0
        self.line_filter: Callable[[list[str]], list[str]] | None = None  # --pid/--comm/--cpu
        self.selection: TaskSelection | None = None  # the same, for binary inputs
        self.first_us: float | None = None  # the input's first and last timestamp (note_times)
        self.last_us: float | None = None
        self.tracer: str | None = None  # this input's "# tracer:" line
        self.latency: dict | None = None  # what this input's latency header said (latency_header)
        self.latency_lines = False  # a latency-format line was read: feed_lines() looks for its calls too

    # -- driving ----------------------------------------------------------

    def parse_file(self, path: str, progress: Progress | None = None) -> None:
        self.where = path
        self.stats.inputs.append(path)
        if is_trace_dat(path):
            read_trace_dat(self, path, progress)
            return
        for batch in read_text_lines(path, progress):
            if isinstance(batch, DamagedLines):
                self.damaged_lines(batch)
            else:
                self.feed_lines(self.line_filter(batch) if self.line_filter else batch)

    def damaged_lines(self, lines: list[str]) -> None:
        """Lines the reader judged not text (NUL byte, too long): not understood, never parsed."""
        for line in lines:
            self.line_no += 1
            self.stats.note_unparsed(line, f"{self.where}:{self.line_no}")
        self.stats.lines = self.line_no

    def note_time_span(self, lines: list[str]) -> None:
        """The first and last timestamp of a batch, from a few lines at each end (no cost per line)."""
        first = next((stamp for stamp in map(line_stamp_us, lines[:STAMP_SCAN_LINES]) if stamp is not None), None)
        last = next((stamp for stamp in map(line_stamp_us, reversed(lines[-STAMP_SCAN_LINES:])) if stamp is not None), None)
        self.note_times(first, last)

    def note_times(self, first: float | None, last: float | None) -> None:
        """The input's first and last timestamp so far, by position: a trace_pipe read is not strictly in time
        order, and the span must not depend on where batches or a seam cut the file."""
        if self.first_us is None:
            self.first_us = first
        if last is not None:
            self.last_us = last

    def feed_lines(self, lines: list[str]) -> None:
        """The hot loop over every line.

        Real traces are millions of lines, so the two common shapes are handled
        here with cached lookups instead of regular expressions: a function_graph
        line (split at its last "|  ": fixed 14-column duration field before it,
        the CPU/task columns before that) and a function tracer line (split at
        "] " and ": "). Everything else goes to classify_slow().

        The commonest events are applied right here, without a method call: an
        entry or leaf whose caller is the open call one level up (with a known
        call-tree child), an exit that closes the open call at its depth, and a
        function tracer line seen before. Anything else (a new path, a lost exit,
        pending callers, interrupts) goes to graph_event() / function_call(),
        which do the same and more; the shortcuts change nothing they would not.
        """
        self.note_time_span(lines)
        body_cache = self.body_cache
        head_cache = self.head_cache
        graph_head = self.graph_head
        function_cache = self.function_cache
        call_nodes = self.call_nodes
        graph_event = self.graph_event
        function_call = self.function_call
        classify_slow = self.classify_slow
        tasks = self.tasks
        cpu_task = self.cpu_task
        children = self.tree.children
        total_us = self.tree.total_us
        self_us = self.tree.self_us
        modules = self.graph.modules
        calls = self.tree.calls  # the fast paths count calls in place; graph_event() batches them for flush_counts()
        note_call_site = self.tree.note_call_site
        last_stamp, entry_stamp = self.last_stamp, self.entry_stamp
        entries = leaves = exits = function_lines = 0
        line_no = self.line_no
        # The task of the last line's context: lines come in runs of one CPU and task, and only
        # graph_event() and the slow path change which state a context leads to (they reset it).
        last_context = state = None
        function_lines_first = False  # the last line was a function tracer line: try that shape first
        for line in lines:
            line_no += 1
            if function_lines_first and "|  " not in line:
                before, _, after = line.partition("] ")
                stamp, colon, text = after.partition(": ")
                if before and colon and stamp[-1:].isdigit():
                    node = call_nodes.get(text)
                    if node is not None:
                        calls[node] += 1
                        function_lines += 1
                        continue
            head, sep, body = line.rpartition("|  ")
            # Only a function_graph line's columns (14 characters or more, a duration that is a
            # time) are in head_cache: a line whose head and body are both known needs no more tests.
            found = head_cache.get(head)
            parsed = body_cache.get(body) if found is not None else None
            if parsed is None and len(head) >= 14:  # a head or body met first, or a line of another kind
                if found is None:
                    parsed = body_cache.get(body)
                if parsed is None and body not in body_cache:
                    parsed = self.classify_graph_body(body)
                if parsed is not None:
                    if found is None:
                        found = graph_head(head)
                        if found and " |  " in head:  # funcgraph-abstime: every line comes here (its head is never cached)
                            key = found[0][1]  # note_stamps(), inline: the call would cost more than the notes
                            if key is None:
                                key = cpu_task.get(found[0][0]) or ("cpu", found[0][0])
                            last_stamp[key] = head
                            if parsed[0] == ENTRY or (parsed[0] == CALLED_FROM and parsed[2][0] == ENTRY):
                                entry_stamp[(key, parsed[1])] = head
                    if not found:
                        function_lines_first = False
                        if found is not False:  # a duration that is no time: not understood
                            self.line_no = line_no
                            self.entries, self.leaves, self.exits, self.function_lines = (
                                self.entries + entries, self.leaves + leaves, self.exits + exits, self.function_lines + function_lines)
                            entries = leaves = exits = function_lines = 0
                            self.stats.note_unparsed(line, f"{self.where}:{line_no}")
                            continue
                        parsed = None  # columns of another kind: the slow path
            if parsed is not None:
                function_lines_first = False
                context, duration, irq = found
                if context is not last_context:
                    cpu, key = context[0], context[1]
                    state = tasks.get(key if key is not None else cpu_task.get(cpu))
                    if state is None:
                        last_context = None
                        graph_event(parsed, context, duration)
                        continue
                    state.cpu = cpu
                    last_context = context
                stack = state.stack
                if stack:
                    kind, depth, name, module = parsed
                    site = None
                    if kind == CALLED_FROM:  # funcgraph-retaddr: the call and where it was made from
                        site = module
                        kind, depth, name, module = name
                    if kind == EXIT:
                        top = stack[-1]
                        if top[FRAME_DEPTH] == depth and (name is None or name == top[FRAME_NAME]):
                            stack.pop()
                            exits += 1
                            if duration is not None:
                                node = top[FRAME_NODE]
                                total_us[node] += duration
                                self_us[node] += duration - top[FRAME_CHILD_US]
                                if stack and stack[-1][FRAME_DEPTH] == depth - 1:
                                    stack[-1][FRAME_CHILD_US] += duration
                            continue
                    elif kind < COMMENT:  # an entry or leaf (RETURNED_ERRNO goes to graph_event)
                        parent = stack[-1]
                        if parent[FRAME_DEPTH] != depth - 1:
                            while stack and stack[-1][FRAME_DEPTH] >= depth:
                                stack.pop()  # its exit was lost (graph_event would pop the same)
                            parent = stack[-1] if stack and stack[-1][FRAME_DEPTH] == depth - 1 else None
                        if parent is not None and not state.irq_entry and not (state.pending and state.pending[-1][0] >= depth):
                            if irq == parent[FRAME_IRQ] or irq == "" or irq == ".":
                                kids = children[parent[FRAME_NODE]]
                                node = kids.get(name) if kids is not None else None
                                if node is not None:
                                    calls[node] += 1
                                    if site is not None:
                                        note_call_site(node, site)
                                    if module:
                                        modules[name] = module
                                    if kind == ENTRY:
                                        entries += 1
                                        stack.append([name, depth, 0.0, irq, node])
                                    else:
                                        leaves += 1
                                        if duration is not None:
                                            total_us[node] += duration
                                            self_us[node] += duration
                                            parent[FRAME_CHILD_US] += duration
                                    continue
                last_context = None
                graph_event(parsed, context, duration)
                continue
            if not sep:
                # "comm-pid [cpu] flags stamp: text": partition, not find(), which parses its arguments slowly
                before, _, after = line.partition("] ")
                stamp, colon, text = after.partition(": ")
                if before and colon and stamp[-1:].isdigit():
                    function_lines_first = True
                    node = call_nodes.get(text)
                    if node is not None:
                        calls[node] += 1
                        function_lines += 1
                        continue
                    call = function_cache.get(text)
                    if call is None:
                        call = self.classify_function_body(text)
                    if call:
                        last_context = None
                        function_call(call)
                        self.cache_call_node(text, call)
                        continue
                elif self.latency_lines:  # "comm-pid cpu flags  time[us mark]: text", a call seen before
                    stamp, colon, text = line.partition(": ")
                    if colon and (stamp[-3:-1] == "us" or stamp[-1:].isdigit()):
                        node = call_nodes.get(text)
                        if node is not None:
                            calls[node] += 1
                            function_lines += 1
                            continue
            self.line_no = line_no
            last_context = None
            if entries or leaves or exits or function_lines:  # a LOST line's event_mark() counts them
                self.entries, self.leaves, self.exits, self.function_lines = (
                    self.entries + entries, self.leaves + leaves, self.exits + exits, self.function_lines + function_lines)
                entries = leaves = exits = function_lines = 0
            classify_slow(line.rstrip("\r"))
        self.line_no = line_no
        self.stats.lines = line_no
        self.entries += entries
        self.leaves += leaves
        self.exits += exits
        self.function_lines += function_lines
        self.flush_counts()

    def cache_call_node(self, text: str, call: tuple) -> None:
        """A function tracer line's text after its time -> its call-tree node, for feed_lines()' shortcut."""
        if len(text) <= CACHE_KEY_LIMIT and "(" not in text:
            if len(self.call_nodes) >= BODY_CACHE_LIMIT:
                self.call_nodes.clear()
            self.call_nodes[text] = self.function_nodes[call]

    def graph_head(self, head: str) -> tuple | bool:
        """(context, duration, irq flag) of a function_graph line's columns up to its "|  "; cached.

        False: the line is of another kind (it takes the slow path); (): its
        duration is no time (the line is not understood). With funcgraph-abstime
        the key leaves out the timestamp, which is unique per line.
        """
        stamp = head.find(" |  ")
        if stamp >= 0:
            found = self.head_cache.get(head[stamp + 4 :])
            if found is not None:
                return found
        columns = head[:-14]
        context = self.context_cache.get(columns)
        if context is None:
            if stamp >= 0:
                context = self.context_cache.get(columns[stamp + 4 :])
            if context is None:
                context = self.graph_context(columns)
        if not context:
            return False
        field = head[-14:]
        duration = self.duration_cache.get(field, UNKNOWN_FIELD)
        if duration is UNKNOWN_FIELD:
            duration = self.duration_field(field)
        if duration is not None and duration < 0.0:
            return () if duration == BAD_DURATION else False
        found = (context, duration, context[2])
        if stamp >= 0:
            if not TIMESTAMP_TAIL.search(head, 0, stamp):
                return found
            head = head[stamp + 4 :]
        if 14 <= len(head) <= CACHE_KEY_LIMIT:  # feed_lines() takes a cached head for a function_graph line's, unchecked
            if len(self.head_cache) >= BODY_CACHE_LIMIT:
                self.head_cache.clear()
            self.head_cache[head] = found
        return found

    def note_stamps(self, head: str, context: tuple, parsed: tuple) -> None:
        """A line with a timestamp column: its task's last event so far and, for an entry, the start of the call open at its depth.

        The head is kept as it is (read as a time only in finish()); a later entry at
        the same depth replaces the call open there, so the latest entry's head is its start."""
        cpu, key, _irq = context
        if key is None:
            key = self.cpu_task.get(cpu) or ("cpu", cpu)
        self.last_stamp[key] = head
        if plain_call(parsed)[0] == ENTRY:
            self.entry_stamp[(key, parsed[1])] = head

    def duration_field(self, field: str) -> float | None:
        """The 14-column duration field of a function_graph line: us, None if blank; cached.

        BAD_DURATION for a duration that is not a finite time (the line is not
        understood), NOT_DURATION for anything else (the line takes the slow path).
        """
        unit = field.find(" us")
        if unit > 2:
            try:
                duration = float(field[2:unit])
            except ValueError:
                duration = BAD_DURATION
            if not 0.0 <= duration < MAX_DURATION_US:  # also True for nan
                duration = BAD_DURATION
        elif field.isspace():
            duration = None
        else:
            duration = NOT_DURATION
        if len(self.duration_cache) >= BODY_CACHE_LIMIT:
            self.duration_cache.clear()
        self.duration_cache[field] = duration
        return duration

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
            result = (cpu, key, irq_flag(flags))
            self.stats.formats.add("function_graph")
        if len(self.context_cache) >= BODY_CACHE_LIMIT:
            self.context_cache.clear()
        if len(text) <= CACHE_KEY_LIMIT:
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
        if "(" not in body and len(body) <= CACHE_KEY_LIMIT and (result or not TRACE_EVENT_BODY.match(body)):
            self.function_cache[body] = result  # not an event's: with func-args, or an event's fields, every body is unique
        return result

    def classify_graph_body(self, body: str) -> tuple | None:
        """(kind, depth, name, module) for a function_graph body, cached; None if it is not one."""
        call = graph_call(body)
        match = None if call else GRAPH_BODY.match(body)
        if call:
            parsed = call[:4]
        elif match is None:
            parsed = None
        else:
            depth = len(match.group(1)) // 2
            if match.group("comment"):
                event = GRAPH_EVENT_COMMENT.match(body)  # `/* sched_switch: ... */`: a tracepoint event, counted by name
                parsed = (COMMENT, depth, event.group("name") if event else None, None)
            else:
                parsed = (EXIT, depth, match.group("tail"), None)
        if call and " <-" in body:
            parsed = self.with_call_site(body, parsed)
        if parsed is not None and (plain_call(parsed)[0] == LEAF or parsed[0] == EXIT) and body.rstrip().endswith("*/"):
            parsed = self.with_return_value(body, parsed)
        if len(self.body_cache) >= BODY_CACHE_LIMIT:
            self.body_cache.clear()  # funcgraph-args makes bodies unique; keep memory bounded
        if not (call and call[4]) and len(body) <= CACHE_KEY_LIMIT:
            self.body_cache[body] = parsed
        return parsed

    def with_call_site(self, text: str, parsed: tuple) -> tuple:
        """An entry or leaf as CALLED_FROM if its comment holds the return address (funcgraph-retaddr)."""
        match = RETURN_ADDRESS.search(text)
        if match is None:
            return parsed
        self.stats.formats.add(CALL_SITES_FORMAT)
        return (CALLED_FROM, parsed[1], parsed, sys.intern(match.group("site")))

    def with_return_value(self, text: str, parsed: tuple) -> tuple:
        """A leaf or exit as RETURNED_ERRNO if `text` ends with a return value that is a negative errno."""
        match = RETURN_VALUE.search(text)
        if match is None:
            return parsed
        self.stats.formats.add(RETURN_VALUES_FORMAT)
        err = errno_of(match.group(1))
        return parsed if err is None else (RETURNED_ERRNO, parsed[1], parsed, err)

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
        if (stripped.startswith(LATENCY_HEADER_STARTS) or " latency trace v" in stripped) and self.latency_header(stripped):
            return  # a 2.6.2x latency header: its lines had no "#"
        if self.latency is not None and not stripped.strip("-"):
            return
        if stripped.startswith("=> ") or stripped == "<stack trace>":
            return  # func_stack_trace frames
        match = FUNCTION_LINE.match(line)
        if match:
            self.function_line(match)
            return
        columns = latency_columns(line)
        if columns is not None:
            self.latency_lines = True
            self.stats.formats.add(LATENCY_FORMAT)
            self.function_line(columns)
            return
        if self.graph_line_without_separator(line):
            return
        call = self.classify_function_body(stripped) if " <-" in stripped or "function" in self.stats.formats else False
        if call:
            self.function_call(call)  # context-info off: only "func <-parent"
            return
        self.stats.note_unparsed(line, f"{self.where}:{self.line_no}")

    def header_line(self, line: str) -> None:
        if self.latency_header(line):
            return
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
        key, value = match.group(1), match.group(2).rstrip()
        if key == "tracer" and self.tracer is None:
            self.tracer = value
        stats_key = STATS_KEY.fullmatch(key)
        if stats_key:
            counters = {number.group(1): int(number.group(2)) for number in map(STATS_VALUE.match, value.split()) if number}
            cpu = stats_key.group(1)
            previous = self.stats.kernel_stats.get(cpu, {})
            self.stats.kernel_stats[cpu] = {k: previous.get(k, 0) + v for k, v in counters.items()}
        elif key not in ("tracer",) or "tracer" not in self.stats.metadata:
            self.stats.metadata.setdefault(key, value)

    def latency_header(self, line: str) -> bool:
        """A line of the latency tracers' header (print_trace_header): kept for the summary; its entry counts tell the losses."""
        match = LATENCY_HEADER.match(line)
        if match is None:
            return False
        found = self.latency if self.latency is not None else {}
        self.latency = found
        if match.group("tracer"):
            found["tracer"], found["kernel"] = match.group("tracer", "kernel")
        elif match.group("us") is not None:
            entries, written = int(match.group("entries")), int(match.group("written"))
            model = dict(part.split(":", 1) for part in match.group("model").replace(",", " ").split() if ":" in part)
            found.update(latency_us=int(match.group("us")), entries=entries, written=written, cpu=match.group("cpu"),
                         preemption=model.get("M"), cpus=int(model["#P"]) if model.get("#P", "").isdigit() else None)
            if written > entries:  # as entries-in-buffer/entries-written: the events overwritten before the read
                self.stats.lost_by_cpu["all"] = self.stats.lost_by_cpu.get("all", 0) + written - entries
        elif match.group("pid") is not None:
            found["task"], found["pid"] = match.group("comm").strip(), int(match.group("pid"))
        else:
            found[f"{match.group('point')}_at"] = match.group("at").strip()
        return True

    def note_latency_trace(self) -> None:
        """The summary of a latency tracer's input: its header's numbers, and how long its events span (all that a
        trace read without latency-format tells of the latency)."""
        found = self.latency or {}
        tracer = found.get("tracer") or self.tracer
        if tracer not in LATENCY_TRACERS and "started_at" not in found:
            return
        span = self.last_us - self.first_us if self.first_us is not None and self.last_us is not None else None
        summary = dict.fromkeys(LATENCY_SUMMARY_KEYS)
        summary.update(found, input=self.where, tracer=tracer, span_us=round(span, 3) if span is not None else None)
        self.stats.latency_traces.append(summary)

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
        """Where the parse is in events: (0, entry and leaf lines, exit and function lines) so far.

        Counted across flushes (the call tree is flushed mid-batch when pending calls settle), so that two
        marks compare whatever happened between them."""
        return (0, self.entry_lines_done + self.entries + self.leaves, self.other_lines_done + self.exits + self.function_lines)

    def break_call_stacks(self, cpu: str) -> None:
        """After lost events on a CPU, the open calls of the tasks that ran there are unknown."""
        for state in self.tasks.values():
            if state.cpu == cpu or state.cpu is None:
                state.stack.clear()
                self.settle_pending(state, 0)

    def settle_pending(self, state: TaskState, depth: int) -> None:
        """Calls at `depth` or deeper whose caller was never named become top-level paths."""
        if not state.pending or state.pending[-1][0] < depth:
            return
        self.flush_counts()
        keep = []
        for pending_depth, node in state.pending:
            if pending_depth >= depth:
                self.tree.merge_detached(node, ROOT_NODE)
            else:
                keep.append((pending_depth, node))
        state.pending = keep

    def finish(self) -> None:
        """End of input: time the calls still open, place every call still waiting for its caller."""
        self.note_latency_trace()
        self.close_open_calls()
        for state in self.tasks.values():
            self.settle_pending(state, 0)
        self.flush_counts()
        tree = self.tree
        tree.timed = tree.timed or any(tree.total_us)
        if min(tree.self_us, default=0.0) < 0:
            # children whose printed durations add up to more than their caller's (seen on 7.3): no negative self time
            tree.self_us = [max(0.0, value) for value in tree.self_us]

    def close_open_calls(self) -> None:
        """The calls on the tasks' stacks when the input ends: the recording stopped inside them.

        Each is counted as open (CallTree.open_calls, stats.open_calls) and given the
        time from its start to its task's last event where the trace has timestamps;
        else what is known of it, its finished callees' time (and its open callee's).
        Deepest first, so that an open call's time counts as its caller's callee time.
        Before settle_pending(): a frame's node may still be a detached one.
        """
        self.flush_counts()
        tree, stats = self.tree, self.stats
        for key, state in self.tasks.items():
            stack = state.stack
            if not stack:
                continue
            end = stamp_time_us(self.last_stamp.get(key))
            for index in range(len(stack) - 1, -1, -1):
                frame = stack[index]
                depth, child_us, node = frame[FRAME_DEPTH], frame[FRAME_CHILD_US], frame[FRAME_NODE]
                # trace.dat's frames carry their entry's time; a text task's is its latest entry at that depth
                start = stamp_time_us(frame[FRAME_START] if len(frame) > FRAME_START else self.entry_stamp.get((key, depth)))
                if start is not None and end is not None and end >= start:
                    total = max(end - start, child_us)
                else:
                    total = child_us
                    stats.open_calls_bounded += 1
                tree.total_us[node] += total
                tree.self_us[node] += total - child_us
                if index and stack[index - 1][FRAME_DEPTH] == depth - 1:
                    stack[index - 1][FRAME_CHILD_US] += total
                tree.open_calls[node] = tree.open_calls.get(node, 0) + 1
                stats.open_calls += 1
            stack.clear()

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
        match = function_tracer_line(line)  # trace-cmd report, or report -l (the latency columns)
        if not match:
            return False
        event = TRACE_CMD_GRAPH.match(match.group("body"))
        if not event:
            return False
        fields = TRACE_CMD_GRAPH_FIELDS.match(event.group("rest"))
        if not fields:
            return False
        body = fields.group("body")
        returned = TRACE_CMD_RETURN_VALUE.search(body) if body.endswith(")") else None
        parsed = self.classify_graph_body(body[: returned.start()] if returned else body)
        if parsed is None:
            return False
        if returned and (parsed[0] == LEAF or parsed[0] == EXIT):  # -O fgraph:retval-dec / retval-hex
            parsed = self.with_return_value(returned.group(), parsed)
        self.stats.formats.add("trace-cmd report")
        context = self.context_of(match.group("cpu"), match.group("pid"), match.group("flags"))
        self.note_stamps(match.group("ts"), context, parsed)
        self.graph_event(parsed, context, float(fields.group("dur")) if fields.group("dur") else None)  # at most 12 digits
        return True

    @staticmethod
    def context_of(cpu: str | None, pid: str | None, flags: str | None) -> tuple:
        cpu = normalize_cpu(cpu)
        return (cpu, task_key(pid, cpu) if pid is not None else None, irq_flag(flags))

    # -- function tracer ----------------------------------------------------

    def function_line(self, match: re.Match[str] | LatencyColumns) -> None:
        body = match.group("body")
        call = self.classify_function_body(body)
        if not call and isinstance(match, LatencyColumns):
            call = parenthesized_call(body)
            if call:
                self.stats.formats.add("function")
        if call:
            self.function_call(call)
            if isinstance(match, LatencyColumns):
                self.cache_call_node(body, call)
        elif CTX_WAKE_BODY.match(body):
            self.trace_event("context_switch" if "==>" in body else "wakeup")  # the wakeup tracers' own entries
        elif body.startswith(("funcgraph_entry:", "funcgraph_exit:")):
            if not self.trace_cmd_graph_line(match.string):
                self.stats.note_unparsed(match.string, f"{self.where}:{self.line_no}")
        elif not body.startswith(("<stack trace>", "<user stack trace>")):
            event = TRACE_EVENT_BODY.match(body)
            if event:
                self.trace_event(event.group("name"))
            else:
                self.stats.note_unparsed(match.string, f"{self.where}:{self.line_no}")

    def trace_event(self, name: str) -> None:
        """A tracepoint event between the calls (text): counted by name, and as a ring-buffer event (as trace.dat's are)."""
        self.stats.note_trace_event(name)
        self.stats.events += 1
        self.stats.formats.add(TRACE_EVENTS_FORMAT)

    def function_call(self, call: tuple) -> None:
        """One function tracer line: one call of `name`, made from `parent` (the call site)."""
        node = self.function_nodes.get(call)
        if node is None:
            name, parent, module = call
            tree = self.tree
            node = self.function_nodes[call] = tree.child(tree.child(ROOT_NODE, parent), name) if parent else tree.child(ROOT_NODE, name)
            if module:
                self.graph.modules[name] = module
        self.called.append(node)
        self.function_lines += 1

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

    def graph_event(self, parsed: tuple, context: tuple, duration: float | None) -> int | None:
        """One function_graph entry, leaf or exit line at its depth, for its task; its call-tree node.

        Called for every line of a trace: counts go to lists that flush_counts()
        folds into the graph once per batch.
        """
        kind, depth, name, module = parsed
        if kind >= COMMENT:  # one test for both rare kinds: a comment (maybe an event), a return with an errno
            if kind == COMMENT and name:
                self.trace_event(name)
            if kind == CALLED_FROM:
                return self.called_from(parsed, context, duration)
            return self.returned_errno(parsed, context, duration) if kind == RETURNED_ERRNO else None
        cpu, key, irq = context
        state = self.tasks.get(key) if key is not None else None
        if state is None:
            state = self.task_state(cpu, key)
        state.cpu = cpu
        if kind == EXIT:
            self.exits += 1
            return self.graph_exit(state, depth, name, duration)
        stack = state.stack
        while stack and stack[-1][FRAME_DEPTH] >= depth:
            stack.pop()  # its exit was lost
        if state.pending and state.pending[-1][0] >= depth:
            self.settle_pending(state, depth)
        parent = stack[-1] if stack and stack[-1][FRAME_DEPTH] == depth - 1 else None
        if parent is not None and (state.irq_entry or (irq != parent[FRAME_IRQ] and irq not in ("", "."))):
            parent = None  # an interrupt handler is not a callee of what it interrupted
        state.irq_entry = False
        tree = self.tree
        if parent is not None:
            kids = tree.children[parent[FRAME_NODE]]
            node = kids.get(name) if kids is not None else None
            if node is None:
                node = tree.child(parent[FRAME_NODE], name)
        elif depth > 0:
            self.stats.calls_without_caller += 1
            node = tree.detached(name)
            state.pending.append((depth, node))
        else:
            node = tree.child(ROOT_NODE, name)
        self.called.append(node)
        if module:
            self.graph.modules[name] = module
        if kind == ENTRY:
            self.entries += 1
            stack.append([name, depth, 0.0, irq, node])
        else:
            self.leaves += 1
            if duration is not None:
                tree.total_us[node] += duration
                tree.self_us[node] += duration
                if parent is not None:
                    parent[FRAME_CHILD_US] += duration
        return node

    def called_from(self, parsed: tuple, context: tuple, duration: float | None) -> int | None:
        """An entry or leaf with its return address: the call as any other, its site counted on its call path."""
        node = TraceParser.graph_event(self, parsed[2], context, duration)  # TraceParser's own, as returned_errno()
        if node is not None:
            self.tree.note_call_site(node, parsed[3])
        return node

    def trace_dat_entry(self, parsed: tuple, context: tuple, duration: float | None, stamp: int) -> None:
        """A trace.dat entry, as graph_event(); its frame keeps its time (ns), for a call still open at the end."""
        self.graph_event(parsed, context, duration)
        self.tasks[context[1]].stack[-1].append(stamp)

    def returned_errno(self, parsed: tuple, context: tuple, duration: float | None) -> int | None:
        """A leaf or exit that returned a negative errno: noted on its call path, as first returned or passed up.

        Passed up: the call's last callee that returned an errno returned this
        one (the task remembers which open call that callee returned to)."""
        _, depth, event, err = parsed
        state = self.task_state(context[0], context[1])
        stack = state.stack
        frame = next((frame for frame in reversed(stack) if frame[FRAME_DEPTH] <= depth), None) if event[0] == EXIT else None
        passed_up = frame is not None and state.last_errno is not None and state.last_errno[0] is frame and state.last_errno[1] == err
        node = TraceParser.graph_event(self, event, context, duration)  # TraceParser's own: SeamParser decided on the whole line
        if node is None:
            return None
        self.tree.note_errno(node, err, passed_up)
        caller = stack[-1] if stack and stack[-1][FRAME_DEPTH] == depth - 1 else None
        state.last_errno = (caller, err) if caller is not None else None
        return node

    def flush_counts(self) -> None:
        """Fold the batch's calls into the call tree.

        Called at every settling of waiting calls too (lossy recordings: tens of
        thousands of times, for a few calls each), where building a Counter costs
        more than counting: Counter only for long batches."""
        calls = self.tree.calls
        if len(self.called) < FLUSH_COUNTER_MIN:
            for node in self.called:
                calls[node] += 1
        else:
            for node, count in Counter(self.called).items():
                calls[node] += count
        self.stats.events += self.entries + 2 * self.leaves + self.exits + self.function_lines
        self.entry_lines_done += self.entries + self.leaves
        self.other_lines_done += self.exits + self.function_lines
        self.called.clear()
        self.entries = self.leaves = self.exits = self.function_lines = 0

    def graph_exit(self, state: TaskState, depth: int, tail: str | None, duration: float | None) -> int | None:
        """Close the open call at `depth`; the call-tree node of the call that returned, if known."""
        stack = state.stack
        while stack and stack[-1][FRAME_DEPTH] > depth:
            stack.pop()
        if stack and stack[-1][FRAME_DEPTH] == depth and (tail is None or tail == stack[-1][FRAME_NAME]):
            frame = stack.pop()
            if duration is not None:
                tree = self.tree
                node = frame[FRAME_NODE]
                tree.total_us[node] += duration
                tree.self_us[node] += duration - frame[FRAME_CHILD_US]
                if stack and stack[-1][FRAME_DEPTH] == depth - 1:
                    stack[-1][FRAME_CHILD_US] += duration
            return frame[FRAME_NODE]
        if stack and stack[-1][FRAME_DEPTH] == depth:
            stack.pop()  # a different function closed here: the entry we hold was not its own
        self.stats.orphan_exits += 1
        if tail is None:
            return None
        tree = self.tree
        caller = tree.child(ROOT_NODE, tail)  # its entry (and so its own caller) was not seen
        # Calls one level deeper whose caller was unknown were made by this function.
        self.flush_counts()
        still_pending = []
        for pending_depth, node in state.pending:
            if pending_depth == depth + 1:
                tree.merge_detached(node, caller)
                self.stats.calls_without_caller -= 1
            elif pending_depth <= depth:
                still_pending.append((pending_depth, node))
            else:
                tree.merge_detached(node, ROOT_NODE)
        state.pending = still_pending
        return caller


def line_stamp_us(line: str) -> float | None:
    """The trace time (us) of a function_graph line with funcgraph-abstime or of a function tracer / trace-cmd line."""
    match = GRAPH_STAMP.match(line)
    if match is not None and match.group("rel") is not None:
        return float(match.group("rel"))  # REL TIME: us since the trace's start
    match = match or function_tracer_line(line)
    return trace_time_us(match.group("ts")) if match else None


class LatencyColumns:
    """A latency-format line's columns under FUNCTION_LINE's group names, so that what reads function tracer lines
    reads these unchanged. Its "ts" is seconds, as FUNCTION_LINE's: the latency format's time since the trace's start,
    the verbose line's absolute time, or a clock's raw count as printed (as FUNCTION_LINE's counter-clock times)."""

    __slots__ = ("string", "values")

    def __init__(self, string: str, values: dict[str, str | None]) -> None:
        self.string = string
        self.values = values

    def group(self, *names: str) -> Any:
        return self.values.get(names[0]) if len(names) == 1 else tuple(self.values.get(name) for name in names)


def latency_columns(line: str) -> LatencyColumns | None:
    """The columns of a latency-format line (plain or verbose, or trace-cmd report -l's); None for any other line."""
    match = LATENCY_LINE.match(line)
    if match is not None:
        values = match.groupdict()
        if values["ts"] is None:
            count = values["us"]
            values["ts"] = count if values["unit"] is None else microseconds_as_seconds(count)
        return LatencyColumns(line, values)
    match = VERBOSE_LATENCY_LINE.match(line)
    if match is None:
        return None
    values = match.groupdict()
    bits, stamp = int(values["bits"]), int(values["stamp"], 16)
    context = next((flag for bit, flag in VERBOSE_IRQ_BITS if bits & bit), ".")
    values["flags"] = ("d" if bits & 0x01 else ".") + "." + context + "."  # trace_print_lat_fmt's first three columns
    values["ts"] = microseconds_as_seconds(str(stamp)) if values["ms"] is not None else str(stamp)
    return LatencyColumns(line, values)


def microseconds_as_seconds(count: str) -> str:
    """"1234" (us) -> "0.001234", exactly, as the function tracer prints seconds."""
    if "." in count:
        return f"{float(count) / 1e6:.9f}"
    number = int(count)
    return f"{number // 1_000_000}.{number % 1_000_000:06d}"


def function_tracer_line(line: str) -> re.Match[str] | LatencyColumns | None:
    """The columns of a function tracer line, "comm-pid [cpu] flags time: text", or of one in the latency format."""
    match = FUNCTION_LINE.match(line) if "] " in line else None
    return match if match is not None else latency_columns(line)


def parenthesized_call(body: str) -> tuple | bool:
    """(name, parent, None) of the latency format's "func (parent)" (before 2.6.30), False for anything else."""
    match = PARENTHESIZED_PARENT.match(body)
    if match is None:
        return False
    return (SYMBOL_OFFSET.sub("", match.group("name")), SYMBOL_OFFSET.sub("", match.group("parent")), None)


def irq_flag(flags: str | None) -> str:
    """The hardirq/softirq column of the latency flags: the third, the fourth where an RT kernel's 7 or 8 columns put
    need-resched-lazy before it; "" without flags."""
    if not flags or len(flags) < 3:
        return ""
    if flags[2] in HARDSOFT_FLAGS or len(flags) < 7:
        return flags[2]
    return flags[3] if flags[3] in HARDSOFT_FLAGS else "."


def plain_call(parsed: tuple) -> tuple:
    """The ENTRY/LEAF/EXIT/COMMENT tuple inside a RETURNED_ERRNO and/or CALLED_FROM wrapper."""
    while parsed[0] == RETURNED_ERRNO or parsed[0] == CALLED_FROM:
        parsed = parsed[2]
    return parsed


def graph_call(body: str) -> tuple | None:
    """(ENTRY or LEAF, depth, name, module, has arguments) of "f(args) {" / "f(args);" [+ " /* ... */"].

    The arguments end at the first ") {" or ");" after which the rest of the line
    is empty or one comment: found in one pass, so any line costs linear time.
    """
    head = GRAPH_CALL_HEAD.match(body)
    if head is None:
        return None
    text = body.rstrip()
    start = head.end()
    if text.endswith("*/"):
        close = GRAPH_CALL_COMMENT.search(text, start)
        if close is None or len(text) - close.end() < 2:
            return None
        kind = ENTRY if text[close.start() + 1] == " " else LEAF
        close_at = close.start()
    elif text.endswith(") {") and len(text) - 3 >= start:
        kind, close_at = ENTRY, len(text) - 3
    elif text.endswith(");") and len(text) - 2 >= start:
        kind, close_at = LEAF, len(text) - 2
    else:
        return None
    return (kind, len(head.group(1)) // 2, head.group("name"), head.group("module"), close_at > start)


def errno_of(value: str) -> int | None:
    """The negative errno a printed return value is, by the kernel's rule (print_graph_retval); None if it is none.

    A 64-bit value whose upper half is zero and bit 31 set is an int: sign-extended
    (0xffffffea is -22). Then IS_ERR_VALUE: -1 .. -4095 are errnos, anything else
    (0, pointers, counts) is not."""
    number = (int(value, 16) if value.startswith("0x") else int(value)) & 0xFFFFFFFFFFFFFFFF
    if number >> 32 == 0 and number & 0x80000000:
        number -= 1 << 32
    elif number >> 63:
        number -= 1 << 64
    return number if -MAX_ERRNO <= number < 0 else None


def stamp_time_us(stamp: str | int | None) -> float | None:
    """A time kept for the open calls, in us: a function_graph line's head (note_stamps()) or trace.dat's ns."""
    if stamp is None or isinstance(stamp, int):
        return None if stamp is None else stamp / 1000.0
    return column_time_us(stamp.split(" |  ", 1)[0])


def column_time_us(column: str) -> float | None:
    """The time of a function_graph line's first column, in us: funcgraph-abstime's seconds or REL TIME's "12 us"."""
    tail = TIMESTAMP_TAIL.search(column.rstrip())
    if tail is None:
        return None
    text = tail.group()
    return float(text[:-3]) if text.endswith(" us") else trace_time_us(text)


def one_entry_between(before: tuple[int, int, int], after: tuple[int, int, int]) -> bool:
    """Between two event marks: exactly one entry or leaf line and no other event.

    The marks count across batch flushes, so nothing between the two lines is missed."""
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


def parse_traces(paths: list[str], selection: TaskSelection | None = None) -> CallGraph:
    """Parse every input into one call tree; with a selection, only the lines of those tasks and CPUs."""
    if parallel_inputs(paths):
        return parse_inputs_in_parallel(paths, selection)
    graph = CallGraph()
    empty = EmptySelections(selection)
    for path in paths:
        size = file_size(path)
        progress = Progress(f"parsing {path}", size)
        parser = TraceParser(graph)
        if selection:
            parser.line_filter = IntervalReader(selection).selected
            parser.selection = selection
            selection.seen.clear()
        stats = graph.stats
        # Judge each input on its own lines: a trace first must not let a plain text file pass second.
        formats_before, stats.formats = stats.formats, set()
        example_before = (stats.unparsed_example, stats.unparsed_example_where)
        stats.unparsed_example = ""
        lines_before = stats.lines
        seams = split_seams(path, selection) if len(paths) == 1 else []
        if seams:
            parse_file_in_chunks(parser, path, seams, progress)
        else:
            parser.parse_file(path, progress)
        parser.finish()
        stats.note_time(parser.first_us, parser.last_us)
        stats.lines = lines_before + parser.line_no  # the parser counts its own input's lines
        progress.close()
        file_formats, file_example = stats.formats, stats.unparsed_example
        stats.formats = formats_before | file_formats
        if example_before[0]:
            stats.unparsed_example, stats.unparsed_example_where = example_before
        if not empty.emptied(path, list(selection.seen) if selection else [], file_formats):
            check_parsed_input(path, parser.line_no, file_formats, file_example)
    empty.check(paths)
    return derive_graph(graph.tree, graph.stats, graph.modules)


CALL_FORMATS = frozenset({"function_graph", "function", "trace-cmd report"})


class EmptySelections:
    """The inputs in which --pid/--comm/--cpu kept no call: a warning for each, an error when they are all the inputs."""

    def __init__(self, selection: TaskSelection | None) -> None:
        self.selection = selection
        self.seen: dict[tuple[str, str, str | None], None] = {}
        self.inputs: list[str] = []

    def emptied(self, path: str, seen: list[tuple[str, str, str | None]], formats: set[str]) -> bool:
        """Whether this input has events (seen: their tasks) but the selection kept no call (then the input itself is fine)."""
        self.seen.update(dict.fromkeys(seen))
        if not self.selection or not seen or formats & CALL_FORMATS:
            return False
        self.inputs.append(path)
        return True

    def check(self, paths: list[str]) -> None:
        if not self.selection or not self.inputs:
            return
        if len(self.inputs) == len(paths):
            raise UserError(empty_selection_message(self.selection, self.seen, self.inputs))
        for path in self.inputs:
            warn(f"{self.selection.options} selects no call in {path}; the other inputs have some")


def check_parsed_input(path: str, lines: int, formats: set[str], example: str) -> None:
    if lines == 0:
        raise UserError(f"{path} is empty: nothing was recorded")
    if not formats & CALL_FORMATS and TRACE_EVENTS_FORMAT in formats:
        raise UserError(f"{path} holds tracepoint events but no function_graph or function calls: record the events together with a function tracer")
    if not formats & CALL_FORMATS:
        example = example or "(only comment lines)"
        raise UserError(f"{path} is not an ftrace text trace: no function_graph or function lines found (first unrecognised line: {example!r})")


# -- several inputs (-i repeated): one process per core ------------------------
#
# Inputs share nothing while they are parsed but the call tree and the counters
# (each has its own parser: open calls, caches, CPU-to-task map), so each can be
# parsed in a child process into a call tree of its own; the parent adds the
# trees and counters together in input order, as the sequential loop would.

PARALLEL_MIN_BYTES = 16 << 20  # below this (all inputs together) forking costs more than it saves
PARSE_PROCESSES_ENV = "KM_PARSE_PROCESSES"  # as -j: a number of processes; 1 turns the parallel parse off
MAX_JOBS = 256
jobs_wanted: int | None = None  # -j/--jobs, set by run_visualize


def parse_processes() -> int:
    """The processes the parse may use: -j, else KM_PARSE_PROCESSES, else the cores this process may run on."""
    if jobs_wanted:
        return jobs_wanted
    wanted = os.environ.get(PARSE_PROCESSES_ENV, "")
    if wanted.isdigit() and 0 < int(wanted) <= MAX_JOBS:
        return int(wanted)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def jobs_forced() -> bool:
    """A number of processes given (-j or the variable): used whatever the input's size, not capped by it."""
    return bool(jobs_wanted) or os.environ.get(PARSE_PROCESSES_ENV, "").isdigit()


def parallel_inputs(paths: list[str]) -> bool:
    """Parse several inputs in child processes: with fork, 2+ cores and enough bytes (or -j forcing it)."""
    if len(paths) < 2 or not hasattr(os, "fork") or parse_processes() < 2:
        return False
    if jobs_forced():
        return True
    return sum(file_size(path) or 0 for path in paths) >= PARALLEL_MIN_BYTES


def parse_one_input(path: str, selection: TaskSelection | None) -> dict:
    """One input parsed on its own, as plain data for the parent: the tree, the counters, the per-input checks."""
    graph = CallGraph()
    parser = TraceParser(graph)
    if selection:
        parser.line_filter = IntervalReader(selection).selected
        parser.selection = selection  # for a trace.dat
        selection.seen.clear()
    parser.parse_file(path)
    tree = graph.tree
    self_us = tree.self_us  # finish() replaces the list when it clips negative self times: keep the sums before
    parser.finish()
    graph.stats.note_time(parser.first_us, parser.last_us)
    return {
        "tree": (tree.calls, tree.total_us, self_us, tree.children, tree.timed, tree.errnos, tree.open_calls, tree.call_sites),
        "stats": vars(graph.stats),
        "modules": graph.modules,
        "lines": parser.line_no,
        "seen": list(selection.seen) if selection else [],
    }


def fork_writer(write: Callable[[IO[bytes]], None], started: list[int]) -> tuple[int, int]:
    """Fork a child that runs write(pipe) and exits; the parent gets (pid, the pipe's read end).

    Ctrl-C (which reaches the whole process group) and SIGTERM just end the
    child; any failure in it shows to the parent as a result that never came.
    The pid goes into `started` before a stop signal can interrupt the parent,
    so that the caller's cleanup ends every child forked.
    """
    read_end, write_end = os.pipe()
    stops = {signal.SIGINT, signal.SIGTERM}
    # Held back across fork: a stop signal in the child before its handlers are reset would run the parent's
    # Python handler there, and the KeyboardInterrupt would unwind the child's copy of the parent's stack.
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
        raise
    if pid:
        started.append(pid)
        os.close(write_end)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
        return pid, read_end
    status = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
        os.close(read_end)
        with os.fdopen(write_end, "wb") as pipe:
            write(pipe)
    except BaseException:
        status = 1
    finally:
        os._exit(status)


def end_child(pid: int) -> None:
    """Stop a child of fork_writer (it may have ended already) and reap it."""
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(OSError):
        os.waitpid(pid, 0)


def parse_in_child(paths: list[str], selection: TaskSelection | None, started: list[int]) -> tuple[int, int]:
    """Fork a child that parses `paths` in turn and pickles one result (or error) per input to a pipe."""

    def write(pipe: IO[bytes]) -> None:
        for path in paths:
            try:
                result: tuple = ("ok", parse_one_input(path, selection))
            except UserError as err:
                result = ("error", str(err))
            pickle.dump(result, pipe, protocol=pickle.HIGHEST_PROTOCOL)
            if result[0] == "error":
                break

    return fork_writer(write, started)


def parse_inputs_in_parallel(paths: list[str], selection: TaskSelection | None) -> CallGraph:
    workers = min(parse_processes(), len(paths))
    started: list[int] = []
    pipes: list[IO[bytes]] = []
    graph = CallGraph()
    empty = EmptySelections(selection)
    try:
        for first in range(workers):
            pipes.append(os.fdopen(parse_in_child(paths[first::workers], selection, started)[1], "rb"))
        for index, path in enumerate(paths):
            try:
                status, result = pickle.load(pipes[index % workers])
            except (EOFError, pickle.UnpicklingError):
                raise UserError(f"parsing {path} failed in its child process (out of memory?)") from None
            if status == "error":
                raise UserError(result)
            add_parsed_input(graph, result)
            graph.stats.lines += result["lines"]
            TraceParser(graph).finish()  # what ends each input in the sequential loop: no negative self time in the sum
            if not empty.emptied(path, result["seen"], result["stats"]["formats"]):
                check_parsed_input(path, result["lines"], result["stats"]["formats"], result["stats"]["unparsed_example"])
        empty.check(paths)
    finally:
        for pid in started:
            end_child(pid)
        for pipe in pipes:
            pipe.close()
    return derive_graph(graph.tree, graph.stats, graph.modules)


def add_parsed_input(graph: CallGraph, result: dict) -> None:
    """Add one input's tree and counters to the aggregate, exactly as the sequential loop accumulates them."""
    calls, total_us, self_us, children, timed, errnos, open_calls, call_sites = result["tree"]
    tree = graph.tree
    work = [(ROOT_NODE, ROOT_NODE)]
    while work:
        source, target = work.pop()
        for err, counts in errnos.get(source, {}).items():
            tree.add_errno_counts(target, err, counts)
        if source in open_calls:
            tree.open_calls[target] = tree.open_calls.get(target, 0) + open_calls[source]
        for site, count in call_sites.get(source, {}).items():
            tree.note_call_site(target, site, count)
        tree.calls[target] += calls[source]
        tree.total_us[target] += total_us[source]
        tree.self_us[target] += self_us[source]
        kids = children[source]
        if kids:
            work.extend((kid, tree.child(target, name)) for name, kid in kids.items())
    tree.timed = tree.timed or timed
    graph.modules.update(result["modules"])
    add_parsed_stats(graph.stats, result["stats"])


def add_parsed_stats(stats: TraceStats, parsed: dict) -> None:
    """Counters added as the sequential loop adds them; the line count is parse_traces()'s (it sums the inputs')."""
    stats.events += parsed["events"]
    stats.unparsed_lines += parsed["unparsed_lines"]
    if not stats.unparsed_example:
        stats.unparsed_example, stats.unparsed_example_where = parsed["unparsed_example"], parsed["unparsed_example_where"]
    for mine, theirs in ((stats.lost_by_cpu, parsed["lost_by_cpu"]), (stats.lost_unknown_count, parsed["lost_unknown_count"])):
        for cpu, count in theirs.items():
            mine[cpu] = mine.get(cpu, 0) + count
    stats.duplicate_lost_lines += parsed["duplicate_lost_lines"]
    stats.orphan_exits += parsed["orphan_exits"]
    stats.calls_without_caller += parsed["calls_without_caller"]
    stats.open_calls += parsed["open_calls"]
    stats.open_calls_bounded += parsed["open_calls_bounded"]
    for cpu, counters in parsed["kernel_stats"].items():
        previous = stats.kernel_stats.get(cpu, {})
        stats.kernel_stats[cpu] = {k: previous.get(k, 0) + v for k, v in counters.items()}
    for key, value in parsed["metadata"].items():
        stats.metadata.setdefault(key, value)
    stats.formats |= parsed["formats"]
    for name, count in parsed["trace_events"].items():
        stats.note_trace_event(name, count)
    stats.inputs.extend(parsed["inputs"])
    stats.latency_traces.extend(parsed["latency_traces"])
    stats.note_time(parsed["first_us"], parsed["last_us"])


# -- one large plain input: N chunks, one process each ----------------------------
#
# The file is cut at line starts into N byte ranges (-j N). The parent parses the
# first; a child per other range parses it on its own, and the parent stitches
# each to the end of what it holds. Function tracer lines carry their call and
# caller themselves. A function_graph task's events depend on its open call stack
# at the seam, which only the process holding the text before it knows: the child
# (SeamParser) applies a task's events itself from the task's first call at depth
# 0 on (that call pops every open frame and settles every waiting call: nothing
# before it matters any more), and before that keeps them, in order, as a log that
# is replayed through graph_event() after the text before the seam, together with
# the LOST lines' breaks of open stacks and the interrupt arrows of those tasks.
# Lines without a pid column belong to the task the last context switch on their
# CPU brought in: the child reads that switch back from before the seam. Where it
# cannot be sure (no such switch close enough, a log that grows too long, a LOST
# line right after the seam that may repeat one before it) it gives up and its
# range is parsed by the process before it, as the sequential loop would.
#
# The chunks are stitched as a chain: child k, once its own range is parsed, reads
# what child k+1 sends (the rest of the file from its seam, already stitched) and
# replays it on its own tasks; a logged event of a task it does not hold either
# goes on into its own log, for the process before it. So every process stitches
# once, the parent last, and each event is applied once, on the state the
# sequential parse would hold. All children are the parent's (killing them ends
# every one of them); only the pipes run from one to the one before.

SPLIT_CHUNK_MIN_BYTES = 32 << 20  # by default one process per this much of a file at least (fork and stitch cost)
SPLIT_AT_ENV = "KM_SPLIT_AT"  # where to cut, as shares of the file, comma-separated (tests cut small files anywhere)
SEAM_LOG_LIMIT = 250_000  # records kept for the process before at most: beyond, the child gives up (memory stays bounded)
SEAM_LOOKBACK_BYTES = 32 << 20  # how far before the seam the child looks for a CPU's last context switch
SEAM_LOOKBACK_CHUNK = 1 << 20
WARM_UP_BYTES = 4 << 20  # parsed before the children are forked (at most a quarter of the first chunk): see start_from


class SeamUnknown(Exception):
    """The second half depends on the first in a way the child cannot stitch exactly."""


class SeamParser(TraceParser):
    """The second half of a file, parsed alone: the tasks' events before their first depth-0 call are logged.

    The process before replays the log (replay_seam_log) on its own task states;
    the tasks the child anchored are handed over (it drops their state), so every
    event is applied once, on the state the sequential parse would hold. Line
    numbers count from the seam: the process before adds its own.
    """

    def __init__(self, graph: CallGraph, path: str, seam: int) -> None:
        super().__init__(graph)
        self.path = path
        self.seam = seam
        self.log: list[tuple] = []
        self.logged_entry_lines = self.logged_other_lines = 0
        self.switches_found: dict[str | None, object] = {}  # CPU -> task its last switch before the seam brought in
        self.looked_back_to = seam
        self.later_calls: dict[tuple, None] = {}  # function tracer calls first met in the chunks after this one (their modules)
        self.shared: tuple[int, frozenset[int]] = (0, frozenset())  # node ids the process before holds for the same paths (start_from)
        self.first_lost_may_repeat = False  # a trace.dat window: a lost-events notice at its start ends the attempt (lost_line)
        self.logged_on: dict[object, str] | None = None  # a trace.dat window: per task not held, the CPU of its last logged event

    def event_mark(self) -> tuple[int, int, int]:
        mark = super().event_mark()
        return (0, mark[1] + self.logged_entry_lines, mark[2] + self.logged_other_lines)

    def start_from(self, warm: TraceParser) -> None:
        """Begin with what the parser the child was forked from learnt of the file's start: its caches of line parts
        and its call tree's paths, every count zeroed (its own copy after fork). Building them again in each chunk
        was most of what N chunks cost beyond one pass; paths and caches depend on the text alone, never on a task's state."""
        tree = warm.tree
        size = len(tree.function)
        tree.calls, tree.total_us, tree.self_us = [0] * size, [0.0] * size, [0.0] * size
        tree.errnos, tree.open_calls, tree.call_sites, tree.timed = {}, {}, {}, False
        self.graph.tree = self.tree = tree
        self.shared = (size, frozenset(tree.free))
        for cache in ("body_cache", "context_cache", "function_cache", "duration_cache", "head_cache", "call_nodes", "function_nodes"):
            setattr(self, cache, getattr(warm, cache))

    def graph_event(self, parsed: tuple, context: tuple, duration: float | None) -> int | None:
        if context[1] in self.tasks:  # the common case, first: a task this process holds
            return TraceParser.graph_event(self, parsed, context, duration)
        kind, depth, name, module = plain_call(parsed)
        if kind == COMMENT:
            return super().graph_event(parsed, context, duration)  # an event is counted; nothing else happens
        cpu, key, irq = context
        if key is None:
            key = self.cpu_task.get(cpu)
            if key is None:
                key = self.task_at_seam(cpu)
            context = (cpu, key, irq)
        if key not in self.tasks:
            if kind == EXIT or depth > 0:
                self.log_event((parsed, context, duration), key, cpu, kind != EXIT, name, module)
                return None
            self.keep(("anchor", key))
            if self.logged_on:
                self.logged_on.pop(key, None)
        return super().graph_event(parsed, context, duration)

    def trace_dat_entry(self, parsed: tuple, context: tuple, duration: float | None, stamp: int) -> None:
        if context[1] in self.tasks:
            TraceParser.trace_dat_entry(self, parsed, context, duration, stamp)
            return
        _, depth, name, module = plain_call(parsed)
        if depth == 0:
            super().trace_dat_entry(parsed, context, duration, stamp)
            return
        self.log_event((parsed, context, duration, stamp), context[1], context[0], True, name, module)

    def log_event(self, record: tuple, key: object, cpu: str | None, entry: bool, name: str, module: str | None) -> None:
        """An event of a task not held, logged for the process before (replay_seam_log), counted as the line it is."""
        self.keep(record)
        if self.logged_on is not None:
            self.logged_on[key] = cpu
        if entry:
            self.logged_entry_lines += 1
        else:
            self.logged_other_lines += 1
        if module:
            self.graph.modules[name] = module  # in line order, as the sequential parse sets it

    def keep(self, record: tuple) -> None:
        """Log a record for the parent; a log too long to be worth it (or to hold) ends the attempt."""
        self.log.append(record)
        if len(self.log) > SEAM_LOG_LIMIT:
            raise SeamUnknown

    def irq_arrow(self, cpu: str | None, arrow: str) -> None:
        if arrow != "==========>":
            return
        cpu = normalize_cpu(cpu)
        key = self.cpu_task.get(cpu)
        if key is None:
            key = self.task_at_seam(cpu)
        if key in self.tasks:
            self.task_state(cpu, key).irq_entry = True
        else:
            self.keep(("irq", cpu, key))

    def context_switch(self, match: re.Match[str]) -> None:
        cpu = match.group("cpu")
        current = self.cpu_task.get(cpu)
        if current is None:
            current = self.task_at_seam(cpu, switching=True)
        if current == ("cpu", cpu):
            raise SeamUnknown  # whether its state is renamed depends on tasks the parent holds
        super().context_switch(match)

    def lost_line(self, cpu: str, count: int | None) -> None:
        if self.first_lost_may_repeat and count is not None and self.line_no <= LOST_REPEAT_WINDOW:
            raise SeamUnknown  # whether it repeats a notice of the window before depends on what the process before holds
        self.keep(("break", cpu))
        super().lost_line(cpu, count)
        if self.logged_on:
            self.take_on_broken_tasks(cpu)

    def take_on_broken_tasks(self, cpu: str) -> None:
        """The tasks not held whose last event (logged) ran on `cpu`: the loss broke their open calls in the process
        before too (break_call_stacks, after the log's events), which leaves them with no open call and no call waiting
        for its caller, as a new task: from here on this process holds them (trace.dat: a task's CPU is its last
        call's, known here)."""
        for key in [key for key, last in self.logged_on.items() if last == cpu]:
            del self.logged_on[key]
            self.keep(("anchor", key))
            self.task_state(cpu, key)

    def function_call(self, call: tuple) -> None:
        """As TraceParser's, but the module of a call met first here is left to the parent (add_second_half):
        the sequential parse sets it only if the first half did not meet the call."""
        name, modules = call[0], self.graph.modules
        had, before = name in modules, modules.get(name)
        super().function_call(call)
        if had:
            modules[name] = before
        else:
            modules.pop(name, None)

    def task_at_seam(self, cpu: str | None, switching: bool = False) -> object:
        """The task running on `cpu` at the seam: the one its last context switch before the seam brought in.

        With no switch on that CPU in the whole first half, its lines went to the
        placeholder task ("cpu", cpu), made at the first of them; at a switch the
        placeholder may or may not exist: unknown.
        """
        while cpu not in self.switches_found:
            if not self.look_back():
                if self.looked_back_to > 0 or switching:
                    raise SeamUnknown
                self.switches_found[cpu] = ("cpu", cpu)
        key = self.cpu_task[cpu] = self.switches_found[cpu]
        return key

    def look_back(self) -> bool:
        """Read the next chunk before the seam (backwards) for context switches; False when there is no more to read."""
        end = self.looked_back_to
        if end <= 0 or self.seam - end >= SEAM_LOOKBACK_BYTES:
            return False
        start = max(0, end - SEAM_LOOKBACK_CHUNK)
        with open(self.path, "rb") as raw:
            raw.seek(start)
            block = raw.read(end - start)
        if start > 0:
            first = block.find(b"\n")
            if first < 0 or start + first + 1 >= end:
                return False  # a line longer than the chunk: give up rather than read it whole
            block = block[first + 1 :]
            start += first + 1
        elif block.startswith(UTF8_BOM):
            block = block[len(UTF8_BOM) :]  # as the reader does
        self.looked_back_to = start
        high = len(block)
        while True:  # the lines holding "=>", last first
            arrow = block.rfind(b"=>", 0, high)
            if arrow < 0:
                return True
            line_start = block.rfind(b"\n", 0, arrow) + 1
            line_end = block.find(b"\n", arrow)
            line = block[line_start : line_end if line_end >= 0 else len(block)]
            if len(line) > MAX_LINE_LENGTH // 2:
                raise SeamUnknown  # the reader may have judged it damaged, never parsed
            self.note_switch_before_seam(line.decode("utf-8", "replace").rstrip("\r"))
            high = line_start

    def note_switch_before_seam(self, line: str) -> None:
        match = SWITCH_LINE.match(line)
        if match is None or "|" in line:
            return  # not a context switch to the parser either
        if "] " in line or "\x00" in line:
            raise SeamUnknown  # could be taken for another kind of line, or be damaged: be sure
        next_key = task_key(match.group("next_pid"), match.group("cpu"))
        self.switches_found.setdefault(match.group("cpu"), next_key)
        self.switches_found.setdefault(None, next_key)  # lines without a CPU column: the last switch on any CPU

    def seam_result(self) -> dict:
        """The half's tree (its tasks' open calls closed and every waiting call settled, as finish() would), counters and the log for the parent.

        The times it noted go to the parent too: they are the latest of the tasks the parent keeps (their events are in the log)."""
        self.close_open_calls()
        for state in self.tasks.values():
            self.settle_pending(state, 0)
        self.flush_counts()
        tree = self.tree
        return {
            "stamps": (self.last_stamp, self.entry_stamp),
            "tree": (tree.calls, tree.total_us, tree.self_us, tree.children, tree.timed, tree.errnos, tree.open_calls, tree.call_sites),
            "paths": (tree.function, tree.parent, tree.free, self.shared),
            "stats": vars(self.graph.stats),
            "modules": self.graph.modules,
            "calls": list({**dict.fromkeys(self.function_nodes), **self.later_calls}),
            "log": self.log,
            "lines": self.line_no,
            "times": (self.first_us, self.last_us),
        }


def split_seams(path: str, selection: TaskSelection | None) -> list[int]:
    """The bytes where the chunks after the first start (line starts, increasing); [] for one process.

    -j N cuts the file in N equal shares (KM_SPLIT_AT: at these shares); by
    default one chunk per core, but none smaller than SPLIT_CHUNK_MIN_BYTES."""
    jobs = parse_processes()
    if selection or not hasattr(os, "fork") or jobs < 2:
        return []
    size = file_size(path) or 0
    try:
        wanted = os.environ.get(SPLIT_AT_ENV, "")
        if wanted:
            shares = sorted(float(share) for share in wanted.split(","))
        else:
            chunks = jobs if jobs_forced() else min(jobs, size // SPLIT_CHUNK_MIN_BYTES)
            shares = [index / chunks for index in range(1, chunks)]
        with open(path, "rb") as raw:
            if raw.peek(16)[:16].startswith((GZIP_MAGIC, XZ_MAGIC, TRACE_CMD_MAGIC)):
                return []  # compressed (no byte ranges) or a binary trace.dat
        seams: list[int] = []
        for share in shares:
            seam = next_line_start(path, int(size * share))
            if 0 < seam < size and (not seams or seam > seams[-1]):
                seams.append(seam)
    except (OSError, ValueError):
        return []
    return seams


def next_line_start(path: str, position: int) -> int:
    """The first line start at or after `position` (the file's size past its last line)."""
    if position <= 0:
        return 0
    with open(path, "rb") as raw:
        raw.seek(position - 1)
        while raw.readline(CHUNK_BYTES)[-1:] not in (b"\n", b""):
            pass  # a long line is skipped a chunk at a time, never held whole
        return raw.tell()


def lost_line_after_seam(path: str, seam: int) -> bool:
    """A LOST line so close after the seam that it may repeat one before it (see lost_line())."""
    with open(path, "rb") as raw:
        raw.seek(seam)
        head = [raw.readline(MAX_LINE_LENGTH) for _ in range(LOST_REPEAT_WINDOW + 1)]
    return any(LOST_LINE.match(line.decode("utf-8", "replace")) for line in head)


def parse_range(parser: TraceParser, path: str, start: int, end: int | None, progress: Progress | None = None) -> None:
    """The lines of bytes start..end (line starts) into the parser, as parse_file() reads a whole file."""
    for batch in read_text_lines(path, progress, start, end):
        if isinstance(batch, DamagedLines):
            parser.damaged_lines(batch)
        else:
            parser.feed_lines(batch)


def parse_file_in_chunks(parser: TraceParser, path: str, seams: list[int], progress: Progress | None) -> bool:
    """Parse `path` with each chunk after the first in a child; False if one could not (that chunk is parsed here)."""
    parser.where = path
    parser.stats.inputs.append(path)
    # At least the 64 KiB the reader judges the file by (reject_non_text), as in one pass
    warm = min(seams[0], next_line_start(path, max(1 << 16, min(WARM_UP_BYTES, seams[0] // 4))))
    parse_range(parser, path, 0, warm, progress)
    with chain_of_children(len(seams), lambda index, following, gate: chunk_writer(path, seams, index, following, parser, gate)) as (pipe, gate):
        parse_range(parser, path, warm, seams[0], progress)
        gate.give()
        return read_on(parser, path, seams, pipe, progress)


class CoreGate:
    """At most as many processes at work at once as there are cores: -j above the cores makes more chunks, not more
    processes fighting for them (each switch costs a process its caches, and the CPU seconds grew with N for that alone).

    A pipe holds a token per core but the parent's; a child takes one for its own
    chunk and gives it back after (waiting for the next child's result, it holds
    none). A child that ends without giving its token back (killed: out of memory)
    would leave the others waiting for ever: while the chain runs, a thread of
    the parent's gives a token back for each child it finds ended so."""

    def __init__(self, processes: int) -> None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.read_end, self.write_end = os.pipe()
        os.write(self.write_end, b"t" * max(0, min(cores, processes) - 1))
        self.stop: Any = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        os.read(self.read_end, 1)  # blocks while every core is taken; the parent holds the write end: never at its end
        try:
            yield
        finally:
            self.give()

    def give(self) -> None:
        """A core back (the parent's too, once its own chunk is done and it waits for the others)."""
        os.write(self.write_end, b"t")

    def watch(self, pids: list[int]) -> None:
        import threading

        self.stop = threading.Event()
        threading.Thread(target=self.give_back_for_lost, args=(pids, self.stop), daemon=True).start()

    def give_back_for_lost(self, pids: list[int], stop: Any) -> None:
        running = set(pids)
        while running and not stop.wait(0.2):
            for pid in list(running):
                try:
                    ended = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)  # looked at, left to end_child to reap
                except OSError:
                    ended = None
                    running.discard(pid)
                if ended is not None:
                    running.discard(pid)
                    if ended.si_code != os.CLD_EXITED or ended.si_status != 0:
                        self.give()

    def close(self) -> None:
        if self.stop is not None:
            self.stop.set()
        os.close(self.read_end)
        os.close(self.write_end)


@contextlib.contextmanager
def chain_of_children(count: int, writer: Callable[[int, int | None, CoreGate], Callable[[IO[bytes]], None]]) -> Iterator[tuple[IO[bytes], CoreGate]]:
    """Fork a child per index 0..count-1, the last first, each writing to the one before (what writer(index, the next
    child's read end, the gate) makes it do); yields the first child's pipe and the gate, whose give() the parent calls
    when its own chunk is done; every child is ended after."""
    gate = CoreGate(count + 1)
    pids: list[int] = []
    following: int | None = None
    try:
        # The objects made so far out of the collector's sight in the children: its full passes would walk (and copy,
        # page by page, from the parent) the whole inherited heap in every child
        gc.freeze()
        try:
            for index in range(count - 1, -1, -1):
                _, read_end = fork_writer(writer(index, following, gate), pids)
                if following is not None:
                    os.close(following)  # the child before holds it now
                following = read_end
        except BaseException:
            if following is not None:
                os.close(following)
            raise
        finally:
            gc.unfreeze()
        assert following is not None
        gate.watch(pids)
        with os.fdopen(following, "rb") as pipe:
            yield pipe, gate
    finally:
        gate.close()
        for pid in pids:
            end_child(pid)


def chunk_writer(path: str, seams: list[int], index: int, following: int | None, warm: TraceParser, gate: CoreGate) -> Callable[[IO[bytes]], None]:
    """What the child of seams[index] does: parse its chunk, stitch the rest of the file from the next child, send it on.

    It sends ("rest", result) for the text from its seam to the end; ("skip",
    None) when it could not parse its chunk alone, then what the next child
    sent; nothing (or an end of pipe) leaves the whole rest to the one before."""

    seam, later = seams[index], seams[index + 1 :]

    def write(pipe: IO[bytes]) -> None:
        source = os.fdopen(following, "rb") if following is not None else None
        parser = SeamParser(CallGraph(), path, seam)
        parser.where = path
        parser.start_from(warm)
        try:
            with gate.held():
                parse_range(parser, path, seam, later[0] if later else None)
        except (SeamUnknown, UserError):  # UserError: the process before meets the same problem in order
            send_message(pipe, ("skip", None))
            relay_messages(source, pipe)
            return
        if source is not None and later:
            try:
                read_on(parser, path, later, source, None)
            except (SeamUnknown, UserError):
                return  # the process before parses the whole rest
        send_message(pipe, ("rest", parser.seam_result()))

    return write


def send_message(pipe: IO[bytes], message: tuple) -> None:
    pickle.dump(message, pipe, protocol=pickle.HIGHEST_PROTOCOL)


def receive_message(pipe: IO[bytes]) -> tuple:
    """The next child's next message; ("", None) when none came (it ended, or failed: the receiver reads on itself)."""
    try:
        return pickle.load(pipe)
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError):
        return "", None


def relay_messages(source: IO[bytes] | None, pipe: IO[bytes]) -> None:
    """Pass on what the next child sends, up to its result for the rest of the file."""
    while source is not None:
        message = receive_message(source)
        if not message[0]:
            return
        send_message(pipe, message)
        if message[0] != "skip":
            return


def read_on(parser: TraceParser, path: str, seams: list[int], pipe: IO[bytes], progress: Progress | None) -> bool:
    """The parser has read up to seams[0]: the rest of the file from the next child, or parsed here where it could not.

    `seams` are all the seams from here on: a chunk its child skipped is parsed
    here, up to the next seam, and the next message is that seam's."""
    for index, seam in enumerate(seams):
        kind, result = receive_message(pipe)
        if kind == "rest" and not lost_line_after_seam(path, seam):
            add_second_half(parser, result)
            return True
        if kind != "skip":
            break
        end = seams[index + 1] if index + 1 < len(seams) else None
        parse_range(parser, path, seam, end, progress)
        if end is None:
            return False
    parse_range(parser, path, seam, None, progress)
    return False


def add_second_half(parser: TraceParser, result: dict) -> None:
    """Add the rest of the file, parsed by a child, as if the parser had read on: the logged events first, then its tree and counters.

    Its line numbers count from the seam: here they go on from the parser's."""
    replay_seam_log(parser, result["log"])
    parser.note_times(*result["times"])
    last_stamp, entry_stamp = result["stamps"]
    parser.last_stamp.update(last_stamp)
    parser.entry_stamp.update(entry_stamp)
    graph = parser.graph
    stats = {**result["stats"], "inputs": []}
    if stats["unparsed_example_where"]:
        where, _, line = stats["unparsed_example_where"].rpartition(":")
        stats["unparsed_example_where"] = f"{where}:{parser.line_no + int(line)}"
    add_chunk_tree(graph.tree, result["tree"], result["paths"])
    add_parsed_stats(graph.stats, stats)
    if isinstance(parser, SeamParser):  # the modules of calls it did not meet are for the process before to set
        parser.later_calls.update((call, None) for call in result["calls"] if call not in parser.function_nodes)
    else:
        for call in result["calls"]:
            if call not in parser.function_nodes and call[2]:
                graph.modules[call[0]] = call[2]
    graph.modules.update(result["modules"])  # of function_graph lines only: each sets it, the last one wins
    parser.line_no += result["lines"]


def add_chunk_tree(tree: CallTree, parts: tuple, paths: tuple) -> None:
    """A chunk's call tree added to the tree of a process forked at the same moment (or the one that forked it).

    Below the tree's size at the fork (but the ids then free) both trees hold the
    same call paths under the same ids (start_from; a path's id never changes
    once reachable): their counts are added by id, and only the paths the chunk
    made are looked up by name. add_parsed_input would walk every path by name,
    which cost more than the stitching as a whole."""
    calls, total_us, self_us, _, timed, errnos, open_calls, call_sites = parts
    functions, parents, free, (size, free_at_fork) = paths
    gone = set(free)
    made: dict[int, int] = {}

    def target(node: int) -> int:
        if node < size and node not in free_at_fork:
            return node
        found = made.get(node)
        if found is None:
            found = made[node] = tree.child(target(parents[node]), functions[node])
        return found

    shared = min(size, len(calls))
    for mine, theirs in ((tree.calls, calls), (tree.total_us, total_us), (tree.self_us, self_us)):
        added = theirs[:shared]
        for node in free_at_fork:
            if node < shared:
                added[node] = 0  # ids free at the fork: no path of the parent's
        mine[:shared] = [before + more for before, more in zip(mine[:shared], added)]  # (numpy: importing it cost a text worker 70 ms)
    for node in [*range(size, len(calls)), *(free_at_fork - gone)]:
        if node < len(calls) and node not in gone and functions[node] is not None:
            into = target(node)
            tree.calls[into] += calls[node]
            tree.total_us[into] += total_us[node]
            tree.self_us[into] += self_us[node]
    for node, by_errno in errnos.items():
        for err, counts in by_errno.items():
            tree.add_errno_counts(target(node), err, counts)
    for node, count in open_calls.items():
        into = target(node)
        tree.open_calls[into] = tree.open_calls.get(into, 0) + count
    for node, sites in call_sites.items():
        for site, count in sites.items():
            tree.note_call_site(target(node), site, count)
    tree.timed = tree.timed or timed


def replay_seam_log(parser: TraceParser, log: list[tuple]) -> None:
    """Apply, in line order, what the child left to the tasks' state at the seam (see SeamParser).

    A SeamParser (a chunk between others) applies what concerns the tasks it
    holds and logs the rest for the process before it, in the same order."""
    chained = isinstance(parser, SeamParser)
    for record in log:
        tag = record[0]
        if tag == "anchor":  # from here on the child holds the task: its calls waiting for a caller never get one
            state = parser.tasks.pop(record[1], None)
            if state is not None:
                parser.settle_pending(state, 0)
            elif chained:
                parser.keep(record)
        elif tag == "break":
            parser.break_call_stacks(record[1])
            if chained:
                parser.keep(record)
        elif tag == "irq":
            if chained and record[2] not in parser.tasks:
                parser.keep(record)
            else:
                parser.task_state(record[1], record[2]).irq_entry = True
        elif len(record) == 4:
            parser.trace_dat_entry(*record)
        else:
            parser.graph_event(*record)
    parser.flush_counts()


def file_size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


# ============================================================================
# Input: trace.dat, trace-cmd's binary format (file versions 6 and 7)
# ============================================================================
#
# Layout (man 5 trace-cmd.dat.v6 / trace-cmd.dat.v7): a header (magic, version,
# endianness, long size, page size), the kernel's own descriptions of its ring
# buffer (header_page, header_event) and of every event (the tracefs `format`
# files), /proc/kallsyms, printk formats, saved cmdlines, options (CPUSTAT,
# clock, ...), then each CPU's ring-buffer pages as the kernel wrote them.
# Version 6 stores these in a fixed order; version 7 as sections found through
# options, each possibly compressed (zstd or zlib), the pages in compressed chunks.
#
# Every field offset and size comes from the format files stored in the file:
# the function_graph events of the 6.1 and 7.3 kernels differ. A batch of pages
# is walked side by side with numpy (each event's length is in its header, so a
# page is walked in sequence, but pages are independent), the fields gathered
# with numpy, and the CPUs merged by timestamp so that each task's calls nest in
# the order they ran, wherever the task migrated.

TRACE_DAT_OPTION_NAMES = {
    0: "DONE", 2: "CPUSTAT", 3: "BUFFER", 4: "TRACECLOCK", 5: "UNAME", 8: "CPUCOUNT", 9: "VERSION", 15: "STRINGS",
    16: "HEADER_INFO", 17: "FTRACE_EVENTS", 18: "EVENT_FORMATS", 19: "KALLSYMS", 20: "PRINTK", 21: "CMDLINES",
    22: "BUFFER_TEXT",
}
TRACE_DAT_OPTIONS = {name: number for number, name in TRACE_DAT_OPTION_NAMES.items()}
KM_METADATA_OPTION = 0x4B4D  # "KM": our "key: value" lines; record writes it; trace-cmd's report skips options it does not know
FORMAT_FIELD = re.compile(r"field:([^;]*?);\s*offset:(\d+);\s*size:(\d+);(?:\s*signed:(\d+);)?")
HEADER_EVENT_TYPE = re.compile(r"(\w+)\s*:\s*type\s*==\s*(\d+)")
RB_MISSED_EVENTS, RB_MISSED_STORED, RB_COMMIT_MASK = 1 << 31, 1 << 30, (1 << 27) - 1
TS_SHIFT = 27
PAGES_PER_BATCH = 1024
FIRST_PAGES_PER_BATCH = 32
# Merged event kinds, one int per event in the decoded arrays.
EV_ENTRY, EV_EXIT, EV_FUNCTION, EV_LOST, EV_OTHER = 0, 1, 2, 3, 4
EV_LEAF = 5  # an entry and its exit, joined by leaf_pairs() before the model is fed
EV_RETURNED_ERRNO = 6  # feed_trace_dat's group of exits that returned a negative errno (fed one by one)
# An exit's code is (function << 16) | depth; one whose retval field holds a negative errno has the errno in bits 48-59.
ERRNO_CODE_SHIFT = 48
# An entry's code holds its call site's number (fgraph_retaddr_entry) in the same high bits an exit's holds its errno:
# 13 bits, so that feed_trace_dat's (code << 2) stays a positive int64. Sites past the 8,191st distinct return address
# are not numbered (the call is counted, its site not: EventDecoder.sites_not_kept says how many).
SITE_CODE_BITS = 13
LOW_CODE_MASK = (1 << ERRNO_CODE_SHIFT) - 1


def saved_task_names(text: str) -> dict[str, str]:
    """saved_cmdlines: "pid name" lines, the task names the kernel kept (pid -> name)."""
    names = {}
    for line in text.splitlines():
        pid, _, comm = line.strip().partition(" ")
        if pid.isdigit() and comm:
            names[pid] = comm
    return names


class TraceDatTruncated(Exception):
    """A read ran past the end of the file or of a section."""


@dataclass
class EventFormat:
    """One event's layout, from its tracefs `format` file stored in trace.dat."""

    system: str
    name: str
    event_id: int
    fields: dict[str, tuple[int, int, bool]]  # field name -> (offset, size, signed)
    text: str = ""  # the format file itself: EventLayout reads any event's fields and print fmt from it


def parse_event_format(text: str, system: str, with_fields: bool = True) -> EventFormat | None:
    """The event's name, id and (with_fields) field layout; only ftrace events are decoded, the rest counted."""
    name = re.search(r"^name: *(\S+)", text, re.M)
    event_id = re.search(r"^ID: *(\d+)", text, re.M)
    if not name or not event_id:
        return None
    fields = {}
    for declaration, offset, size, signed in FORMAT_FIELD.findall(text) if with_fields else ():
        field_name = declaration.split()[-1].split("[")[0] if declaration.split() else ""
        fields[field_name] = (int(offset), int(size), signed == "1")
    return EventFormat(system, name.group(1), int(event_id.group(1)), fields, text)


# --- any event's fields, by its stored format (IntervalReader's events; the main parse only counts them) ---------
#
# An event's `format` file gives each field's offset, size and signedness, and a `print fmt`: a printf format
# and the C expressions of its arguments, which is how the kernel and trace-cmd report print the event.
# Fields are read by the layout; the event is then printed by its print fmt as libtraceevent prints it
# (fields, numbers, strings, casts, arithmetic, ?:, __print_flags, __print_symbolic, __get_str, %p and %ps)
# and that line read like a text input's event line: `prev_state=R+`, `target_cpu=000`, `vec=3 [action=NET_RX]`.
# A `name=` whose argument is something else keeps the field's plain value (a number in decimal, a string).

PRINT_FMT = re.compile(r'^print fmt: "(?P<format>(?:[^"\\]|\\.)*)"(?P<args>.*)$', re.M)
PRINT_CONVERSION = re.compile(
    r"%(?P<flags>[-+ #0]*)(?P<width>\d+|\*)?(?:\.(?P<precision>\d+|\*))?(?P<length>hh|h|ll|l|z|j|t|L|q)?(?P<kind>[diouxXcsp%])"
    r"(?P<extension>(?<=p)[A-Za-z0-9]*)?"
)
PRINT_TOKEN = re.compile(
    r'\s*(?:(?P<number>0[xX][0-9a-fA-F]+|\d+)[uUlL]*|(?P<string>"(?:[^"\\]|\\.)*")|REC->(?P<field>\w+)|(?P<name>[A-Za-z_]\w*)'
    r"|(?P<op><<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^~!<>?:(),{}]))"
)
PRINT_BINARY = {  # C's binary operators by precedence (higher binds tighter)
    "||": (1, lambda a, b: int(bool(a) or bool(b))), "&&": (2, lambda a, b: int(bool(a) and bool(b))),
    "|": (3, lambda a, b: a | b), "^": (4, lambda a, b: a ^ b), "&": (5, lambda a, b: a & b),
    "==": (6, lambda a, b: int(a == b)), "!=": (6, lambda a, b: int(a != b)),
    "<": (7, lambda a, b: int(a < b)), ">": (7, lambda a, b: int(a > b)), "<=": (7, lambda a, b: int(a <= b)), ">=": (7, lambda a, b: int(a >= b)),
    "<<": (8, lambda a, b: a << b), ">>": (8, lambda a, b: a >> b), "+": (9, lambda a, b: a + b), "-": (9, lambda a, b: a - b),
    "*": (10, lambda a, b: a * b), "/": (10, lambda a, b: int(a / b) if b else 0), "%": (10, lambda a, b: a % b if b else 0),
}
C_TYPE_WORDS = {"unsigned", "signed", "int", "long", "short", "char", "bool", "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "size_t", "pid_t"}
FLAG_IRQ_CONTEXTS = ((0x40, "nmi"), (0x08, "hardirq"), (0x10, "softirq"))  # TRACE_FLAG_NMI, _HARDIRQ, _SOFTIRQ (kernel/trace/trace.h)
NOT_PRINTED = "\x00"  # in a printed line where an argument could not be printed: that name= keeps the field's plain value


class PrintFmtUnknown(Exception):
    """A print fmt argument this reader does not evaluate: its field is shown as its plain value."""


def unknown_value(name: str) -> Callable[[dict], Any]:
    """An identifier the format does not define (an enum's name: HRTIMER_MODE_ABS): libtraceevent matches no table entry with it."""

    def value(values: dict) -> Any:
        raise PrintFmtUnknown(name)

    return value


class PrintExpression:
    """One argument of a print fmt, parsed into a function of the event's field values (C precedence, ints and strings)."""

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        position = 0
        while position < len(text):
            match = PRINT_TOKEN.match(text, position)
            if match is None or match.end() == position:
                if text[position:].strip():
                    raise PrintFmtUnknown(text[position:])
                break
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.at = 0
        try:
            self.evaluate = self.ternary()
        except IndexError:
            raise PrintFmtUnknown(text) from None
        if self.at != len(self.tokens):
            raise PrintFmtUnknown(text)

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "")

    def expect(self, op: str) -> None:
        if self.peek() != ("op", op):
            raise PrintFmtUnknown(f"{op!r} expected")
        self.at += 1

    def ternary(self) -> Callable[[dict], Any]:
        test = self.binary(1)
        if self.peek() != ("op", "?"):
            return test
        self.at += 1
        yes = self.ternary()
        self.expect(":")
        no = self.ternary()
        return lambda values: yes(values) if test(values) else no(values)

    def binary(self, level: int) -> Callable[[dict], Any]:
        left = self.unary()
        while True:
            kind, op = self.peek()
            found = PRINT_BINARY.get(op) if kind == "op" else None
            if found is None or found[0] < level:
                return left
            self.at += 1
            right = self.binary(found[0] + 1)
            left = (lambda apply, a, b: lambda values: apply(a(values), b(values)))(found[1], left, right)

    def unary(self) -> Callable[[dict], Any]:
        kind, op = self.peek()
        if kind == "op" and op in "-~!":
            self.at += 1
            inner = self.unary()
            apply = {"-": lambda a: -a, "~": lambda a: ~a, "!": lambda a: int(not a)}[op]
            return lambda values: apply(inner(values))
        return self.primary()

    def primary(self) -> Callable[[dict], Any]:
        kind, text = self.tokens[self.at]
        self.at += 1
        if kind == "number":
            number = int(text, 16) if text[:2].lower() == "0x" else int(text, 8) if text.startswith("0") else int(text)
            return lambda values: number
        if kind == "string":
            string = text[1:-1].encode().decode("unicode_escape")
            return lambda values: string
        if kind == "field":
            return lambda values: values[text]
        if kind == "name":
            return self.call(text) if self.peek() == ("op", "(") else unknown_value(text)
        if (kind, text) == ("op", "("):
            names = []
            while self.peek()[0] == "name" and self.peek()[1] in C_TYPE_WORDS:
                names.append(self.tokens[self.at][1])
                self.at += 1
            if names and self.peek() == ("op", ")"):  # a cast: the value as it is
                self.at += 1
                return self.unary()
            self.at -= len(names)
            inner = self.ternary()
            self.expect(")")
            return inner
        raise PrintFmtUnknown(text)

    def call(self, function: str) -> Callable[[dict], Any]:
        self.expect("(")
        arguments: list = []
        while self.peek() != ("op", ")"):
            if self.peek() == ("op", "{"):
                self.at += 1
                value = self.ternary()
                self.expect(",")
                label = self.ternary()
                self.expect("}")
                with contextlib.suppress(PrintFmtUnknown):  # an entry named by an enum libtraceevent does not know: never matched
                    arguments.append((value({}), label({})))
            else:
                arguments.append(self.ternary())
            if self.peek() == ("op", ","):
                self.at += 1
        self.expect(")")
        table = [argument for argument in arguments if isinstance(argument, tuple)]
        plain = [argument for argument in arguments if not isinstance(argument, tuple)]
        if function == "__get_str" and len(plain) == 1:
            return plain[0]
        if function == "__print_flags" and len(plain) == 2:
            value, delimiter = plain
            return lambda values: print_flags(value(values), delimiter(values), table)
        if function == "__print_symbolic" and len(plain) == 1:
            return lambda values: print_symbolic(plain[0](values), table)
        raise PrintFmtUnknown(function)


def print_flags(value: int, delimiter: str, table: list[tuple[int, str]]) -> str:
    """__print_flags as libtraceevent prints it: each flag whose bits are all set, in table order, then any bits left in hex."""
    parts = []
    for bits, name in table:
        if not value and bits == 0:
            return name
        if bits > 0 and (value & bits) == bits:
            parts.append(name)
            value &= ~bits
    if value:
        parts.append(f"0x{value:x}")
    return delimiter.join(parts)


def print_symbolic(value: int, table: list[tuple[int, str]]) -> str:
    return next((name for bits, name in table if bits == value), f"0x{value:x}")


def split_print_args(text: str) -> list[str]:
    """The print fmt's arguments after its format string, split at the commas outside brackets and strings."""
    parts, depth, start, quoted, escaped = [], 0, 0, False, False
    for index, char in enumerate(text):
        if quoted:
            quoted, escaped = (quoted if escaped or char != '"' else False), (char == "\\" and not escaped)
        elif char == '"':
            quoted = True
        elif char in "({[":
            depth += 1
        elif char in ")}]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


class EventLayout:
    """How to read one event's fields from its bytes and print them as its print fmt does."""

    def __init__(self, event: EventFormat, endian: str, symbols: KernelSymbols | None = None, long_size: int = 8) -> None:
        self.name = event.name
        self.byte_order: Any = "little" if endian == "<" else "big"
        self.symbols = symbols
        self.long_bits = 8 * long_size
        self.fields: list[tuple[str, str, int, int, bool]] = []  # (name, how: int/str/loc/rel/bytes, offset, size, signed)
        self.flags_field: tuple[int, int] | None = None
        for declaration, offset, size, signed in FORMAT_FIELD.findall(event.text):
            words = declaration.split()
            if not words:
                continue
            name = words[-1].split("[")[0]
            if name == "common_flags":
                self.flags_field = (int(offset), int(size))
            if name.startswith("common_"):
                continue
            array = "[" in words[-1]
            text = "char" in words and array
            how = "loc" if words[0] == "__data_loc" else "rel" if words[0] == "__rel_loc" else "str" if text else "bytes" if array else "int"
            self.fields.append((name, how, int(offset), int(size), signed == "1"))
        self.parts = self.print_fmt_parts(event.text)

    @staticmethod
    def print_fmt_parts(text: str) -> list[tuple[str, re.Match[str] | None, Callable[[dict], Any] | None]]:
        """The print fmt as (literal text, conversion, its argument or None where it is not read here) in order."""
        found = PRINT_FMT.search(text)
        if found is None:
            return []
        arguments = iter(split_print_args(found.group("args").lstrip().removeprefix(",")))
        form = found.group("format").replace('\\"', '"').replace("\\n", " ").replace("\\t", " ")
        parts: list[tuple[str, re.Match[str] | None, Callable[[dict], Any] | None]] = []
        literal_start = 0
        for conversion in PRINT_CONVERSION.finditer(form):
            literal = form[literal_start : conversion.start()]
            literal_start = conversion.end()
            if conversion.group("kind") == "%":
                parts.append((literal + "%", None, None))
                continue
            stars = (conversion.group("width") == "*") + (conversion.group("precision") == "*")
            for _ in range(stars):
                next(arguments, "")  # a * width or precision takes an argument: not read here
            expression = next(arguments, "")
            try:
                argument = None if stars else PrintExpression(expression).evaluate
            except PrintFmtUnknown:
                argument = None
            parts.append((literal, conversion, argument))
        parts.append((form[literal_start:], None, None))
        return parts

    def read(self, data, start: int, end: int) -> tuple[dict[str, str], str]:
        """The event at data[start:end]: its fields as trace-cmd report prints them, and its irq context from common_flags."""
        values = self.values(data, start, end)
        fields = {name: str(value) for name, value in values.items()}
        if self.parts:
            printed = []
            for literal, conversion, argument in self.parts:
                printed.append(literal)
                if conversion is not None:
                    printed.append(self.printed(conversion, argument, values))
            for name, value in event_fields("".join(printed)).items():
                if NOT_PRINTED not in value:
                    fields[name] = value
        irq = ""
        if self.flags_field is not None and start + sum(self.flags_field) <= end:
            flags = int.from_bytes(bytes(data[start + self.flags_field[0] : start + sum(self.flags_field)]), self.byte_order)
            irq = next((context for bit, context in FLAG_IRQ_CONTEXTS if flags & bit), "")
        return fields, irq

    def values(self, data, start: int, end: int) -> dict[str, Any]:
        """Each field's value by the layout: an int, or the text of a char array or __data_loc string."""
        values: dict[str, Any] = {}
        for name, how, offset, size, signed in self.fields:
            at = start + offset
            if at + size > end:
                continue
            raw = bytes(data[at : at + size])
            if how == "int":
                values[name] = int.from_bytes(raw, self.byte_order, signed=signed)
                continue
            if how in ("loc", "rel"):  # u32: offset (from the event's start, or for __rel_loc from the field's end), length
                where = int.from_bytes(raw[:4], self.byte_order)
                begin = (where & 0xFFFF) + (start if how == "loc" else at + size)
                raw = bytes(data[begin : min(begin + (where >> 16), end)])
                how = "str"  # a __data_loc array of chars: the others are rare, and their plain value is bytes too
            values[name] = raw.split(b"\x00", 1)[0].decode("utf-8", "replace") if how == "str" else "ARRAY[" + ", ".join(f"{byte:02x}" for byte in raw) + "]"
        return values

    def printed(self, conversion: re.Match[str], argument: Callable[[dict], Any] | None, values: dict[str, Any]) -> str:
        """One conversion of the print fmt as libtraceevent prints it; NOT_PRINTED where that is not known here."""
        try:
            value = argument(values) if argument is not None else None
            return NOT_PRINTED if value is None else self.converted(conversion, value)
        except (KeyError, TypeError, ValueError, OverflowError, PrintFmtUnknown):
            return NOT_PRINTED

    def converted(self, conversion: re.Match[str], value: Any) -> str:
        kind, length = conversion.group("kind"), conversion.group("length") or ""
        spec = "%" + conversion.group("flags") + (conversion.group("width") or "") + (f".{conversion.group('precision')}" if conversion.group("precision") else "")
        if kind == "s":
            return (spec + "s") % value
        if not isinstance(value, int):
            raise PrintFmtUnknown(kind)
        if kind == "p":
            return self.pointer(value & ((1 << self.long_bits) - 1), conversion.group("extension") or "")
        if kind == "c":
            return (spec + "c") % chr(value & 0xFF)
        bits = {"hh": 8, "h": 16, "l": self.long_bits, "ll": 64, "q": 64, "z": self.long_bits, "j": 64, "t": self.long_bits, "L": 64}.get(length, 32)
        value &= (1 << bits) - 1
        if kind in "di" and value >= 1 << (bits - 1):
            value -= 1 << bits
        return (spec + ("d" if kind in "diu" else kind)) % value

    def pointer(self, value: int, extension: str) -> str:
        """%p as glibc prints it; %ps/%pf the function at the address, %pS/%pF with its offset (libtraceevent's print_function)."""
        if not extension:
            return f"0x{value:x}" if value else "(nil)"
        if extension[0] not in "sSfF" or self.symbols is None:
            raise PrintFmtUnknown(extension)
        name, _ = self.symbols.lookup(value)
        if extension[0] in "SF" and not name.startswith("0x"):
            index = bisect.bisect_right(self.symbols.addresses, value) - 1
            name += f"+0x{value - self.symbols.addresses[index]:x}"
        return name + extension[1:]


class ByteReader:
    """Sequential reads of a trace.dat region in the file's byte order."""

    def __init__(self, data, endian: str, position: int = 0, end: int | None = None) -> None:
        self.data = data
        self.endian = endian
        self.position = position
        self.end = len(data) if end is None else min(end, len(data))

    def take(self, size: int) -> bytes:
        if size < 0 or self.position + size > self.end:
            raise TraceDatTruncated(f"{size} bytes wanted at offset {self.position}, {max(self.end - self.position, 0)} left")
        chunk = bytes(self.data[self.position : self.position + size])
        self.position += size
        return chunk

    def number(self, code: str) -> int:
        size = {"H": 2, "I": 4, "Q": 8}[code]
        return int.from_bytes(self.take(size), "little" if self.endian == "<" else "big")

    def string(self) -> str:
        end = self.data.find(b"\x00", self.position, self.end) if hasattr(self.data, "find") else -1
        if end < 0:
            raise TraceDatTruncated(f"no string end after offset {self.position}")
        text = bytes(self.data[self.position : end]).decode("utf-8", "replace")
        self.position = end + 1
        return text

    def sized_text(self, size_code: str) -> str:
        return self.take(self.number(size_code)).decode("utf-8", "replace")


@dataclass
class CpuData:
    cpu: int
    offset: int
    size: int


class CpuUnits:
    """A CPU's units (pages, or compressed chunks of pages) in order: how many, where each chunk's header is, and each
    unit's first time stamp, read when asked (reading every page's would map the whole file)."""

    def __init__(self, count: int, read_stamp: Callable[[int], int], positions: list[int] | None) -> None:
        self.count, self.read_stamp, self.positions = count, read_stamp, positions
        self.stamps: dict[int, int] = {}

    def stamp(self, unit: int) -> int:
        found = self.stamps.get(unit)
        if found is None:
            found = self.stamps[unit] = self.read_stamp(unit)
        return found

    def last_starting_by(self, time: int) -> int:
        """The last unit whose stamp is at or before `time` (the first when none is): a binary search, as the stamps
        of a CPU's pages increase (where they do not, the window's check finds it out)."""
        return max(0, bisect.bisect_right(range(self.count), time, key=self.stamp) - 1)


@dataclass
class RingLayout:
    """Where a ring-buffer page keeps its timestamp, commit and data, and the event header's types."""

    timestamp_size: int = 8
    commit_offset: int = 8
    commit_size: int = 8
    data_offset: int = 16
    padding: int = 29
    time_extend: int = 30
    time_stamp: int = 31

    @classmethod
    def from_headers(cls, header_page: str, header_event: str) -> RingLayout:
        layout = cls()
        fields = {(decl.split()[-1] if decl.split() else ""): (int(off), int(size)) for decl, off, size, _ in FORMAT_FIELD.findall(header_page)}
        if "commit" in fields:
            layout.commit_offset, layout.commit_size = fields["commit"]
        if "data" in fields:
            layout.data_offset = fields["data"][0]
        if "timestamp" in fields:
            layout.timestamp_size = fields["timestamp"][1]
        for kind, number in HEADER_EVENT_TYPE.findall(header_event):
            if kind in ("padding", "time_extend", "time_stamp"):
                setattr(layout, kind, int(number))
        return layout


class TraceDat:
    """The metadata of a trace.dat file and access to its per-CPU ring-buffer pages."""

    def __init__(self, path: str, data) -> None:
        self.path = path
        self.data = data
        self.endian = "<"
        self.version = 0
        self.long_size = 8
        self.page_size = 4096
        self.compression = ""
        self.layout = RingLayout()
        self.formats: dict[int, EventFormat] = {}
        self.kallsyms = ""
        self.cpu_stats: dict[str, str] = {}
        self.options: dict[str, str] = {}
        self.comms: dict[str, str] = {}  # pid -> task name
        self.metadata: list[tuple[str, str]] = []  # a kernel-magnifier recording's "key: value" lines
        self.cpus: list[CpuData] = []
        self.other_buffers: list[str] = []
        self.consumed = 0  # bytes of ring-buffer data read so far, for the progress display
        self.decompressor: Callable[[bytes, int], bytes] | None = None
        self.peeker: Callable[[bytes, int], bytes] | None = None  # the first bytes of a compressed block
        try:
            self.read_metadata()
        except TraceDatTruncated as err:
            raise UserError(f"{path} is a truncated or damaged trace.dat: {err}") from None
        except (ValueError, KeyError, OverflowError) as err:
            raise UserError(f"{path} is a damaged trace.dat: {err}") from None

    # -- the file's metadata ------------------------------------------------

    def read_metadata(self) -> None:
        reader = ByteReader(self.data, "<", len(TRACE_CMD_MAGIC))
        version = reader.string()
        if not version.isdigit() or int(version) not in (6, 7):
            raise UserError(f"{self.path} is a trace.dat of file version {version!r}: kernel-magnifier reads versions 6 and 7")
        self.version = int(version)
        endian_flag, self.long_size = reader.take(2)
        self.endian = ">" if endian_flag else "<"
        reader.endian = self.endian
        self.page_size = reader.number("I")
        if self.version == 6:
            self.read_v6(reader)
        else:
            self.read_v7(reader)
        if not self.cpus:
            raise UserError(f"{self.path}: the trace.dat holds no ring-buffer data (a latency trace, or cut before its data?)")

    def read_v6(self, reader: ByteReader) -> None:
        self.read_header_info(reader)
        self.read_ftrace_formats(reader)
        self.read_event_formats(reader)
        self.kallsyms = reader.sized_text("I")
        reader.sized_text("I")  # printk formats: trace_printk text, not calls
        self.read_cmdlines(reader.sized_text("Q"))
        cpu_count = reader.number("I")
        kind = reader.take(10)
        if kind == b"options  \x00":
            while True:
                option = reader.number("H")
                if option == 0:
                    break
                self.note_option(option, reader.take(reader.number("I")))
            kind = reader.take(10)
        if kind != b"flyrecord\x00":
            raise UserError(f"{self.path} holds a {kind.rstrip(bytes(1)).decode(errors='replace').strip()!r} trace, not recorded ring-buffer pages")
        for cpu in range(cpu_count):
            self.cpus.append(CpuData(cpu, reader.number("Q"), reader.number("Q")))

    def read_v7(self, reader: ByteReader) -> None:
        self.compression = reader.string()
        reader.string()  # the compression library's version
        if self.compression not in ("none", ""):
            self.decompressor = trace_dat_decompressor(self.path, self.compression)
            self.peeker = trace_dat_peeker(self.compression)
        next_options = reader.number("Q")
        sections: dict[int, int] = {}
        seen = set()
        while next_options and next_options not in seen:
            seen.add(next_options)
            options = self.section(next_options)
            next_options = 0
            while options.position < options.end:
                option = options.number("H")
                body = options.take(options.number("I"))
                if option == TRACE_DAT_OPTIONS["DONE"]:
                    next_options = int.from_bytes(body[:8], "little" if self.endian == "<" else "big") if len(body) >= 8 else 0
                    break
                if 16 <= option <= 21:
                    sections[option] = int.from_bytes(body[:8], "little" if self.endian == "<" else "big")
                else:
                    self.note_option(option, body)
        if TRACE_DAT_OPTIONS["HEADER_INFO"] not in sections:
            raise TraceDatTruncated("no HEADER_INFO option (the file ends before its last options section?)")
        self.read_header_info(self.section(sections[TRACE_DAT_OPTIONS["HEADER_INFO"]]))
        if TRACE_DAT_OPTIONS["FTRACE_EVENTS"] in sections:
            self.read_ftrace_formats(self.section(sections[TRACE_DAT_OPTIONS["FTRACE_EVENTS"]]))
        if TRACE_DAT_OPTIONS["EVENT_FORMATS"] in sections:
            self.read_event_formats(self.section(sections[TRACE_DAT_OPTIONS["EVENT_FORMATS"]]))
        if TRACE_DAT_OPTIONS["KALLSYMS"] in sections:
            self.kallsyms = self.section(sections[TRACE_DAT_OPTIONS["KALLSYMS"]]).sized_text("I")
        if TRACE_DAT_OPTIONS["CMDLINES"] in sections:
            self.read_cmdlines(self.section(sections[TRACE_DAT_OPTIONS["CMDLINES"]]).sized_text("Q"))

    def read_cmdlines(self, text: str) -> None:
        self.comms.update(saved_task_names(text))

    def section(self, offset: int) -> ByteReader:
        """A v7 section's body (decompressed when its flag says so), after its 16-byte header."""
        header = ByteReader(self.data, self.endian, offset)
        header.number("H")  # section id
        flags = header.number("H")
        header.number("I")  # description string id
        size = header.number("Q")
        if not flags & 1:
            if header.position + size > len(self.data):
                raise TraceDatTruncated(f"section at offset {offset} needs {size} bytes, the file ends first")
            return ByteReader(self.data, self.endian, header.position, header.position + size)
        compressed, uncompressed = header.number("I"), header.number("I")
        return ByteReader(self.decompress(header.take(compressed), uncompressed), self.endian)

    def decompress(self, blob: bytes, size: int) -> bytes:
        if self.decompressor is None:
            raise ValueError("a section is marked compressed but the file names no compression")
        data = self.decompressor(blob, size)
        if len(data) != size:
            raise ValueError(f"a compressed block gave {len(data)} bytes, not the {size} the file says")
        return data

    def read_header_info(self, reader: ByteReader) -> None:
        if reader.take(12) != b"header_page\x00":
            raise ValueError("no header_page where the file format puts it")
        header_page = reader.sized_text("Q")
        if reader.take(13) != b"header_event\x00":
            raise ValueError("no header_event where the file format puts it")
        header_event = reader.sized_text("Q")
        self.layout = RingLayout.from_headers(header_page, header_event)

    def read_ftrace_formats(self, reader: ByteReader) -> None:
        for _ in range(reader.number("I")):
            self.add_format(reader.sized_text("Q"), "ftrace")

    def read_event_formats(self, reader: ByteReader) -> None:
        for _ in range(reader.number("I")):
            system = reader.string()
            for _ in range(reader.number("I")):
                self.add_format(reader.sized_text("Q"), system)

    def add_format(self, text: str, system: str) -> None:
        event = parse_event_format(text, system, with_fields=system == "ftrace")
        if event is not None:
            self.formats[event.event_id] = event

    def note_option(self, option: int, body: bytes) -> None:
        name = TRACE_DAT_OPTION_NAMES.get(option)
        if name == "CPUSTAT":
            text = body.rstrip(b"\x00").decode("utf-8", "replace")
            match = re.match(r"CPU: *(\d+)", text)
            if match:
                self.cpu_stats[match.group(1)] = text
        elif name == "BUFFER" and self.version == 7:
            self.note_buffer(body)
        elif name == "BUFFER":
            self.other_buffers.append(body[8:].split(b"\x00")[0].decode("utf-8", "replace"))
        elif name in ("TRACECLOCK", "UNAME", "VERSION"):
            text = body.rstrip(b"\x00").decode("utf-8", "replace").strip()
            in_use = re.search(r"\[(\S+)\]", text) if name == "TRACECLOCK" else None  # "local [global] counter ..."
            self.options[name.lower()] = in_use.group(1) if in_use else text
        elif option == KM_METADATA_OPTION:
            for line in body.rstrip(b"\x00").decode("utf-8", "replace").splitlines():
                key, _, value = line.partition(": ")
                if key and "\x00" not in key:
                    self.metadata.append((key, value))
        elif name == "CPUCOUNT" and len(body) >= 4:
            self.options["cpucount"] = str(int.from_bytes(body[:4], "little" if self.endian == "<" else "big"))

    def note_buffer(self, body: bytes) -> None:
        """A v7 BUFFER option: where each CPU's pages of one trace instance are."""
        reader = ByteReader(body, self.endian, 8)
        name = reader.string()
        reader.string()  # the instance's clock
        page_size = reader.number("I")
        if name or self.cpus:
            self.other_buffers.append(name)
            return
        self.page_size = page_size or self.page_size
        for _ in range(reader.number("I")):
            self.cpus.append(CpuData(reader.number("I"), reader.number("Q"), reader.number("Q")))

    # -- the per-CPU pages ------------------------------------------------

    def cpu_units(self, data: CpuData, damage: list[str], first: int = 0, breaks: tuple[int, ...] = (), units: CpuUnits | None = None,
                  small_first: bool = True) -> Iterator[tuple[int, bytes]]:
        """(index of its first unit, bytes) per batch of a CPU's units from unit `first` on, a batch never running across
        a unit in `breaks` (increasing). A unit is a page, or a compressed chunk of pages (trace-cmd compresses ~10 pages a chunk);
        a later first unit needs the CPU's unit table (units)."""
        # The first batches are small, so that the model starts at once (a later window's worker shows no progress: whole batches)
        batch = self.page_size * (min(FIRST_PAGES_PER_BATCH, PAGES_PER_BATCH) if small_first else PAGES_PER_BATCH)
        if self.decompressor is None:
            end = data.offset + data.size
            cut = end > len(self.data)
            end = min(end, len(self.data))
            start, unit = data.offset + first * self.page_size, first
            while start < end:
                stop = min(start + batch, end)
                stop -= (stop - start) % self.page_size
                following = next((index for index in breaks if unit < index < unit + (stop - start) // self.page_size), None)
                if following is not None:
                    stop = start + (following - unit) * self.page_size
                if stop <= start:
                    break
                yield unit, self.data[start:stop]
                self.release(start, stop)
                unit += (stop - start) // self.page_size
                start = stop
                batch = min(2 * batch, self.page_size * PAGES_PER_BATCH)
            if cut:
                damage.append(f"CPU{data.cpu}'s data is cut at {max(len(self.data) - data.offset, 0):,} of {data.size:,} bytes")
            return
        # trace-cmd 3.1's size leaves out the 4-byte chunk count before the chunks.
        reader = ByteReader(self.data, self.endian, data.offset, data.offset + data.size + 4)
        done = chunks = 0
        pending: list[bytes] = []  # walked in bigger batches than a chunk
        pending_from = first
        try:
            chunks = reader.number("I")
            if first:
                assert units is not None and units.positions is not None
                reader.position, done = units.positions[first], first
            while done < chunks:
                if pending and done in breaks:
                    yield pending_from, b"".join(pending)
                    pending, pending_from = [], done
                compressed, uncompressed = reader.number("I"), reader.number("I")
                pending.append(self.decompress(reader.take(compressed), uncompressed))
                self.release(reader.position - compressed, reader.position)
                done += 1
                if sum(map(len, pending)) >= batch:
                    yield pending_from, b"".join(pending)
                    pending, pending_from = [], done
                    batch = min(2 * batch, self.page_size * PAGES_PER_BATCH)
        except TraceDatTruncated:
            damage.append(f"CPU{data.cpu}'s compressed data is cut after {done} of {chunks} chunks")
        except (ValueError, OSError) as err:
            damage.append(f"CPU{data.cpu}'s compressed data is damaged after {done} of {chunks} chunks: {err}")
        if pending:
            yield pending_from, b"".join(pending)

    def unit_table(self, data: CpuData) -> CpuUnits | None:
        """A CPU's units, their first pages' time stamps read when asked (None: a compressed file whose chunks cannot be
        walked or peeked at: it is read in one window, which says what is wrong)."""
        order = "little" if self.endian == "<" else "big"
        size = self.layout.timestamp_size

        def stamp_at(buffer, offset: int) -> int:
            return int.from_bytes(buffer[offset : offset + size], order)

        def page_stamp(unit: int) -> int:
            return stamp_at(os.pread(self.data.fd, size, data.offset + unit * self.page_size), 0)  # (see MappedFile)

        if self.decompressor is None:
            return CpuUnits(max(0, min(data.size, len(self.data) - data.offset)) // self.page_size, page_stamp, None)
        if self.peeker is None:
            return None
        positions: list[int] = []
        reader = ByteReader(self.data, self.endian, data.offset, data.offset + data.size + 4)
        try:
            for _ in range(reader.number("I")):
                positions.append(reader.position)
                compressed = reader.number("I")
                reader.position += 4 + compressed  # the uncompressed size, then the chunk
                if len(positions) % 256 == 0:
                    self.unmap(data.offset, reader.position)
            self.unmap(data.offset, reader.position)
            if reader.position > min(reader.end, len(self.data)):
                raise TraceDatTruncated("the last chunk runs past the CPU's data")
        except TraceDatTruncated:
            return None
        peeker = self.peeker

        def chunk_stamp(unit: int) -> int:
            reader.position = positions[unit]
            compressed, _ = reader.number("I"), reader.number("I")
            try:
                return stamp_at(peeker(reader.take(compressed), size), 0)
            except Exception:  # any decompressor's error: a damaged chunk, which the reading itself reports
                return 0

        return CpuUnits(len(positions), chunk_stamp, positions)

    def release(self, start: int, stop: int) -> None:
        """Drop pages already decoded from the mapping, so memory stays bounded whatever the file's size."""
        self.consumed += stop - start
        self.unmap(start, stop)

    def unmap(self, start: int, stop: int) -> None:
        """Bytes start..stop of the mapping out of this process's memory (the page cache keeps them for a next read)."""
        if isinstance(self.data, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
            aligned = start - start % mmap.PAGESIZE
            with contextlib.suppress(OSError, ValueError):
                self.data.madvise(mmap.MADV_DONTNEED, aligned, stop - aligned)


def trace_dat_decompressor(path: str, name: str) -> Callable[[bytes, int], bytes]:
    """zlib is in the standard library; zstd (trace-cmd's default) too from Python 3.14, before that in the zstandard package."""
    if name == "zlib":
        import zlib

        def inflate(blob: bytes, size: int) -> bytes:
            try:
                return zlib.decompress(blob)
            except zlib.error as err:
                raise ValueError(f"zlib: {err}") from None

        return inflate
    if name == "zstd":
        with contextlib.suppress(ImportError):
            from compression import zstd  # type: ignore[import-not-found]  # Python 3.14+

            return lambda blob, size: zstd_standard(zstd, blob)
        try:
            import zstandard
        except ImportError:
            raise UserError(f"{path} is compressed with zstd: install the Python package 'zstandard' (pip install zstandard), or convert it with 'trace-cmd convert --compression none'") from None
        decompressor = zstandard.ZstdDecompressor()

        def unzstd(blob: bytes, size: int) -> bytes:
            try:
                return decompressor.decompress(blob, max_output_size=size)
            except zstandard.ZstdError as err:
                raise ValueError(f"zstd: {err}") from None

        return unzstd
    raise UserError(f"{path} is compressed with {name!r}: kernel-magnifier reads zstd, zlib and uncompressed trace.dat files")


def trace_dat_peeker(name: str) -> Callable[[bytes, int], bytes] | None:
    """The first `size` bytes of a compressed block without decompressing the rest (None: not for this compression)."""
    if name == "zlib":
        return lambda blob, size: zlib.decompressobj().decompress(blob, size)
    if name != "zstd":
        return None
    with contextlib.suppress(ImportError):
        from compression import zstd  # type: ignore[import-not-found]  # Python 3.14+

        return lambda blob, size: zstd.ZstdDecompressor().decompress(blob, max_length=size)
    try:
        import zstandard
    except ImportError:
        return None
    decompressor = zstandard.ZstdDecompressor()

    def peek(blob: bytes, size: int) -> bytes:
        with decompressor.stream_reader(blob) as reader:
            return reader.read(size)

    return peek


def zstd_standard(zstd: Any, blob: bytes) -> bytes:
    try:
        return zstd.decompress(blob)
    except zstd.ZstdError as err:
        raise ValueError(f"zstd: {err}") from None


def is_trace_dat(path: str) -> bool:
    """True when the file (or the file inside .gz/.xz) starts with trace-cmd's magic."""
    try:
        stream, raw = open_binary(path)
        with raw, stream:
            return stream.read(len(TRACE_CMD_MAGIC)) == TRACE_CMD_MAGIC
    except (*READ_ERRORS, UserError):
        return False  # the text reader says what is wrong with the file


class MappedFile(mmap.mmap):
    """A file's mapping that keeps the file's descriptor (fd): a few bytes here and there (the page stamps that place
    -j's windows) are read with pread, not by a page fault that maps up to 2 MB of the page cache (15 us, with the
    madvise that drops them again, against 1 us)."""

    fd = -1


@contextlib.contextmanager
def mapped_trace_dat(path: str) -> Iterator[object]:
    """The file's bytes, mapped (random access); a .gz/.xz is first decompressed to a temporary file."""
    stream, raw = open_binary(path)
    with contextlib.ExitStack() as stack:
        stack.enter_context(raw)
        handle = raw
        if stream is not raw:
            handle = stack.enter_context(tempfile.TemporaryFile())
            try:
                while True:
                    block = stream.read(CHUNK_BYTES)
                    if not block:
                        break
                    handle.write(block)
            except READ_ERRORS as err:
                raise UserError(f"{path} is damaged or truncated: {err}") from err
            handle.flush()
        try:
            mapped = stack.enter_context(MappedFile(handle.fileno(), 0, access=mmap.ACCESS_READ))
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read {path}: {err}") from err
        mapped.fd = handle.fileno()
        yield mapped


# --- walking the pages ---------------------------------------------------------


def walk_pages(chunk, page_size: int, layout: RingLayout, endian: str, regular_first: bool = True):
    """Byte offsets of the event payloads in whole pages, their timestamps, and the pages' lost events.

    Each event's length is in its own 4-byte header (type_len 1-28: 4*type_len
    bytes; 0: the length in the next word), so one page is walked in sequence;
    but the pages of a chunk are walked side by side with numpy, one event of
    every page per step (a page holds some 100-200 events). Time extends and
    absolute time stamps only move the clock; padding skips or ends the page.
    Returns (offsets, stamps, lost_at, lost_counts): lost_at is the index of the
    first event of each page whose missed-events flag is set, the count -1 when
    the kernel did not store it. Chunks of data events only go the shorter
    way of walk_data_events() (regular_first=False: never, for tests).
    """
    import numpy as np

    pages = len(chunk) // page_size
    starts = np.arange(pages, dtype=np.int64) * page_size
    buffer = np.frombuffer(chunk, dtype=np.uint8, count=pages * page_size)
    stamp = read_page_numbers(buffer, starts, layout.timestamp_size, endian).astype(np.int64)
    commit = read_page_numbers(buffer, starts + layout.commit_offset, layout.commit_size, endian)
    size = (commit & np.uint64(RB_COMMIT_MASK)).astype(np.int64)
    usable = (size > 0) & (layout.data_offset + size <= page_size)
    position = (starts + layout.data_offset) >> 2
    end = (starts + layout.data_offset + size) >> 2
    missed = usable & ((commit & np.uint64(RB_MISSED_EVENTS)) != 0)
    stored = missed & ((commit & np.uint64(RB_MISSED_STORED)) != 0) & (layout.data_offset + size + layout.commit_size <= page_size)
    counts = np.full(pages, -1, dtype=np.int64)
    if stored.any():
        counts[stored] = read_page_numbers(buffer, starts[stored] + layout.data_offset + size[stored], layout.commit_size, endian).astype(np.int64)
    active = np.flatnonzero(usable & (position < end))
    lost_pages = np.flatnonzero(missed)
    regular = walk_data_events(np, chunk, endian, page_size, position[active], end[active], stamp[active]) if regular_first else None
    if regular is not None:
        offsets, stamps = regular
        return offsets, stamps, np.searchsorted(offsets, starts[lost_pages]), counts[lost_pages]
    words = np.frombuffer(chunk, dtype=f"{endian}u4", count=pages * page_size // 4).astype(np.int64)  # only here: 8 bytes a word
    found_at: list = []
    found_stamp: list = []
    last_word = len(words) - 1
    high_bits = ~((1 << 59) - 1)
    padding, time_extend, time_stamp = layout.padding, layout.time_extend, layout.time_stamp
    while active.size:
        at = position[active]
        header = words[at]
        kind = header & 31
        delta = header >> 5
        following_word = words[np.minimum(at + 1, last_word)]
        page_end = end[active]
        data = kind < padding
        now = stamp[active]
        if data.all():  # the common step: only events
            long_form = kind == 0
            after = at + 1 + np.where(long_form, np.maximum((following_word + 3) >> 2, 1), kind)
            ends_page = (after > page_end) | (long_form & (at + 1 >= page_end))
            recorded = ~ends_page
            now = now + np.where(recorded, delta, 0)
        else:
            long_form = kind == 0
            is_padding = kind == padding
            extend = kind == time_extend
            absolute = kind == time_stamp
            length = np.where(data, np.where(long_form, np.maximum((following_word + 3) >> 2, 1), kind), 1)
            after = at + 1 + np.where(is_padding, (following_word + 3) >> 2, length)
            # An event that runs past its page's data, padding with no delta (the rest
            # is empty) or a type this layout does not know ends the page.
            ends_page = (after > page_end) | (is_padding & (delta == 0)) | (long_form & (at + 1 >= page_end))
            ends_page |= ~(data | is_padding | extend | absolute)
            recorded = data & ~ends_page
            now = np.where(recorded, now + delta, now)
            now = np.where(extend & ~ends_page, now + (following_word << TS_SHIFT) + delta, now)
            now = np.where(absolute & ~ends_page, ((following_word << TS_SHIFT) | delta) | (now & high_bits), now)
        stamp[active] = now
        found_at.append(np.where(long_form, at + 2, at + 1)[recorded] << 2)
        found_stamp.append(now[recorded])
        position[active] = np.where(ends_page, page_end, after)
        active = active[position[active] < page_end]
    offsets = np.concatenate(found_at) if found_at else np.zeros(0, dtype=np.int64)
    stamps = np.concatenate(found_stamp) if found_stamp else np.zeros(0, dtype=np.int64)
    order = np.argsort(offsets, kind="stable")  # pages lie in time order, and so do a page's events
    offsets, stamps = offsets[order], stamps[order]
    lost_at = np.searchsorted(offsets, starts[lost_pages])
    return offsets, stamps, lost_at, counts[lost_pages]


def walk_data_events(np, chunk, endian: str, page_size: int, position, end, page_stamp):
    """walk_pages' common case, in fewer steps: pages holding only data events of type_len 1-28 (None for any other).

    A step only moves every page to its next header (type_len + 1 words on);
    the headers found are then sorted once, and each event's time is its
    page's stamp plus a running sum of the deltas of its page (np.cumsum),
    as the per-step clock would add them. A time extend, an absolute stamp,
    padding or a long event anywhere sends the chunk back to the general walk."""
    words = np.frombuffer(chunk, dtype=f"{endian}u4", count=len(chunk) // page_size * page_size // 4)
    page_of = np.arange(len(position), dtype=np.int64)
    found: list = []
    found_page: list = []
    while len(position):
        length = (words[position] & 31).astype(np.int64)
        if ((length == 0) | (length > 28)).any():
            return None
        following = position + 1 + length
        whole = following <= end  # an event running past its page's data ends the page unread
        if whole.all():
            found.append(position)
            found_page.append(page_of)
            position = following
        else:
            found.append(position[whole])
            found_page.append(page_of[whole])
            position = np.where(whole, following, end)
        going = position < end
        if not going.all():
            position, end, page_of = position[going], end[going], page_of[going]
    if not found:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    # Step s found the s-th event of each page it took: its place in page order is page start + s (no sort).
    steps = np.repeat(np.arange(len(found), dtype=np.int64), [len(part) for part in found])
    found_headers, found_pages = np.concatenate(found), np.concatenate(found_page)
    per_page = np.bincount(found_pages, minlength=len(page_stamp))
    place = np.cumsum(per_page)[found_pages] - per_page[found_pages] + steps
    headers = np.empty_like(found_headers)
    pages = np.empty_like(found_pages)
    headers[place], pages[place] = found_headers, found_pages
    elapsed = np.cumsum((words[headers] >> 5).astype(np.int64))
    first = np.ones(len(headers), dtype=bool)
    first[1:] = pages[1:] != pages[:-1]
    before_page = np.repeat(elapsed[first] - (words[headers[first]] >> 5).astype(np.int64), np.diff(np.append(np.flatnonzero(first), len(headers))))
    return (headers + 1) << 2, page_stamp[pages] + elapsed - before_page


def read_page_numbers(buffer, offsets, size: int, endian: str):
    """The unsigned numbers of `size` bytes at the offsets, as uint64."""
    import numpy as np

    matrix = buffer[offsets[:, None] + np.arange(size)]
    return matrix.view(f"{endian}u{size}").ravel().astype(np.uint64)


# --- from pages to the model ---------------------------------------------------


# "address type name[\t[module]]"; as libtraceevent: absolute symbols (per-CPU offsets on x86-64) and
# ARM's "$a"-style names are no functions.
KALLSYMS_LINE = re.compile(r"^([0-9a-fA-F]+) ([^aA\s]) ([^$\s]\S*)(?:\s+\[([^\]\s]+)\])?", re.M)


class KernelSymbols:
    """Function addresses -> names from the stored /proc/kallsyms (`name [module]` for module code).

    Several names can share an address (`__do_softirq` and the section marker
    `__softirqentry_text_start`); the one chosen is the one trace-cmd report
    prints, by the same steps as libtraceevent: its list in reverse file order,
    sorted stably by address, searched by glibc's bsearch.
    """

    def __init__(self, kallsyms: str, vectorized: bool = True) -> None:
        self.text = kallsyms
        found = regular_kallsyms(kallsyms) if vectorized else None
        if found is None:  # lines of another shape: every one through the pattern
            matches = list(KALLSYMS_LINE.finditer(kallsyms))
            matches.reverse()
            addresses = [int(match.group(1), 16) for match in matches]
            order = sorted(range(len(matches)), key=addresses.__getitem__)
            found = ([addresses[index] for index in order], [matches[index].start() for index in order])
        self.addresses, self.line_starts = found

    def symbol(self, index: int) -> tuple[str, str | None]:
        """The name and module of the index-th symbol by address (read from its line only when asked for)."""
        match = KALLSYMS_LINE.match(self.text, self.line_starts[index])
        return match.group(3), match.group(4) or None

    def lookup(self, address: int) -> tuple[str, str | None]:
        """The symbol at the address, or the one it lies in (a parent_ip is a return address)."""
        addresses = self.addresses
        low, high = 0, len(addresses)
        while low < high:
            middle = (low + high) // 2
            start = addresses[middle]
            if start == address or (start < address and middle + 1 < len(addresses) and address < addresses[middle + 1]):
                return self.symbol(middle)
            if address < start:
                high = middle
            else:
                low = middle + 1
        return f"0x{address:x}", None

    def site(self, address: int) -> str:
        """A return address as the kernel prints it (sprint_symbol): "caller+0x6b/0x1a3", "f+0x1/0x2 [mod]", else "0x...".

        The size is the next higher symbol's address minus the caller's, as kallsyms_lookup_size_offset() computes it: an
        upper bound of the function's length (padding and symbols kallsyms does not list fall inside it)."""
        addresses = self.addresses
        index = bisect.bisect_right(addresses, address) - 1
        if index < 0 or index + 1 >= len(addresses):
            return f"0x{address:x}"  # before the first symbol or past the last one's start: no known end
        start = addresses[index]
        end = addresses[bisect.bisect_right(addresses, start, index)] if addresses[-1] > start else start
        name, module = self.lookup(address)
        return f"{name}+0x{address - start:x}/0x{end - start:x}" + (f" [{module}]" if module else "")


def regular_kallsyms(kallsyms: str) -> tuple[list[int], list[int]] | None:
    """(addresses, line starts) of the symbols KALLSYMS_LINE takes, in KernelSymbols' order, read with numpy.

    Only for the shape of every 64-bit kallsyms ("16 hex digits, space, type,
    space, name..." on every line); None for anything else, which the pattern
    then reads line by line. Names are read later, for the addresses looked up.
    """
    import numpy as np

    raw = kallsyms.encode("utf-8", "surrogatepass")
    if len(raw) != len(kallsyms):
        return None  # not ASCII: byte offsets would not be text offsets
    text = np.frombuffer(raw, dtype=np.uint8)
    newlines = np.flatnonzero(text == ord("\n"))
    starts = np.concatenate(([0], newlines + 1))
    lengths = np.concatenate((newlines, [len(text)])) - starts
    starts = starts[lengths > 0]
    if not len(starts):
        return [], []
    if (lengths[lengths > 0] < 20).any():
        return None
    digits = np.full(256, 255, dtype=np.uint8)
    for first, last, value in ((b"0", b"9", 0), (b"a", b"f", 10), (b"A", b"F", 10)):
        digits[first[0] : last[0] + 1] = np.arange(value, value + last[0] - first[0] + 1)
    nibbles = digits[text[starts[:, None] + np.arange(16)]]
    if (nibbles == 255).any() or (text[starts + 16] != ord(" ")).any() or (text[starts + 18] != ord(" ")).any():
        return None
    blank = np.zeros(256, dtype=bool)
    blank[[index for index in range(128) if chr(index).isspace()]] = True  # what the pattern's \s takes
    kind, first = text[starts + 17], text[starts + 19]
    taken = ~blank[kind] & (kind != ord("a")) & (kind != ord("A")) & ~blank[first] & (first != ord("$"))
    shifts = np.arange(60, -1, -4, dtype=np.uint64)
    addresses = np.bitwise_or.reduce(nibbles[taken].astype(np.uint64) << shifts, axis=1)
    starts = starts[taken]
    order = np.argsort(addresses[::-1], kind="stable")  # the file's order reversed, then by address (libtraceevent)
    return addresses[::-1][order].tolist(), starts[::-1][order].tolist()


class EventBatch:
    """Decoded events of one CPU (or merged), as parallel numpy arrays, in time order."""

    __slots__ = ("code", "ctx", "duration", "key", "kind")

    def __init__(self, key, kind, code, ctx, duration) -> None:
        self.key, self.kind, self.code, self.ctx, self.duration = key, kind, code, ctx, duration

    def __len__(self) -> int:
        return len(self.key)

    def part(self, selection) -> EventBatch:
        return EventBatch(self.key[selection], self.kind[selection], self.code[selection], self.ctx[selection], self.duration[selection])

    @staticmethod
    def in_time_order(batches: list[EventBatch]) -> EventBatch:
        """The batches' events as one batch, sorted stably by key (ties: the earlier batch's first), a column at a time:
        no second copy of the whole."""
        import numpy as np

        order = np.argsort(np.concatenate([batch.key for batch in batches]), kind="stable")
        return EventBatch(*(np.concatenate([getattr(batch, name) for batch in batches])[order] for name in ("key", "kind", "code", "ctx", "duration")))


class EventDecoder:
    """Gathers each event's fields by the stored format files, a chunk of pages at a time, with numpy.

    Per event the model needs: its kind, a code for (function, depth) or (function,
    parent), a code for (cpu, pid), and an exit's duration. Codes are small ints
    that the feeding loop turns into the model's tuples through dictionaries.
    """

    def __init__(self, dat: TraceDat) -> None:
        import numpy as np

        self.np = np
        self.endian = dat.endian
        self.symbols = KernelSymbols(dat.kallsyms)
        self.names: list[tuple[str, str | None]] = []
        self.name_ids: dict[int, int] = {}  # address -> index in names
        self.address_table = (np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64))  # name_ids' keys sorted, and their values
        self.graph_events: dict[int, tuple] = {}  # feed_trace_dat's (kind, depth, name, module) per code, for every window
        self.by_kind: dict[int, EventFormat] = {}
        # funcgraph-retaddr (6.13+): fgraph_retaddr_entry events carry the call's return address; the kernel may write
        # plain funcgraph_entry events beside them, so the field is read for that event id only
        retaddr = next((event for event in dat.formats.values() if event.system == "ftrace" and event.name == "fgraph_retaddr_entry"
                        and "retaddr" in event.fields), None)
        self.retaddr_event = retaddr
        self.sites: list[str] = [""]  # site number -> "caller+0x6b/0x1a3" (0: no site)
        self.site_ids: dict[int, int] = {}  # return address -> site number
        self.sites_not_kept = 0
        kinds = {}
        for event in dat.formats.values():
            kind = self.kind_of(event)
            if kind is not None:
                kinds[event.event_id] = kind
                self.by_kind.setdefault(kind, event)
        # CONFIG_FUNCTION_GRAPH_RETVAL kernels store each exit's return value
        self.has_retval = EV_EXIT in self.by_kind and "retval" in self.by_kind[EV_EXIT].fields
        common = next((event.fields for event in dat.formats.values() if "common_type" in event.fields), {})
        self.type_field = common.get("common_type", (0, 2, False))
        self.pid_field = common.get("common_pid", (4, 4, True))
        self.table = np.full(max([*dat.formats, 0]) + 1, EV_OTHER, dtype=np.int64)
        for event_id, kind in kinds.items():
            self.table[event_id] = kind
        self.other_counts: Counter[int] = Counter()
        self.event_names = {event_id: event.name for event_id, event in dat.formats.items()}
        self.formats = dat.formats
        self.long_size = dat.long_size
        # IntervalReader's events: every other event's (name, fields, irq context), read in decode() while its bytes are
        # at hand, by a number that is the event's code. None (the main parse): other events are only counted.
        self.details: dict[int, tuple[str, dict[str, str], str]] | None = None
        self.detail_count = 0
        self.layouts: dict[int, EventLayout | None] = {}

    @staticmethod
    def kind_of(event: EventFormat) -> int | None:
        fields = event.fields
        if event.system != "ftrace":
            return None
        if event.name in ("funcgraph_entry", "fgraph_retaddr_entry") and {"func", "depth"} <= fields.keys():
            return EV_ENTRY
        if event.name == "funcgraph_exit" and {"func", "depth"} <= fields.keys():
            return EV_EXIT
        if event.name == "function" and "ip" in fields:
            return EV_FUNCTION
        return None

    def gather(self, buffer, offsets, field: tuple[int, int, bool]):
        """One field of every event: its bytes at offset+field offset, viewed as an integer."""
        np = self.np
        start, size, signed = field
        if size not in (1, 2, 4, 8):
            return np.zeros(len(offsets), dtype=np.int64)
        index = offsets + start
        index = np.minimum(index, len(buffer) - size)  # a short (damaged) event reads its neighbour's bytes, not past the chunk
        kind = f"{self.endian}{'i' if signed else 'u'}"
        if start % min(size, 4) == 0 and len(buffer) % 4 == 0:
            # Events start 4-byte aligned: an aligned field is one element of a typed view of the chunk.
            if size < 8:
                return np.frombuffer(buffer, dtype=f"{kind}{size}")[index // size].astype(np.int64)
            halves = np.frombuffer(buffer, dtype=f"{self.endian}u4")
            low, high = (index // 4, index // 4 + 1) if self.endian == "<" else (index // 4 + 1, index // 4)
            values = halves[low].astype(np.uint64) | (halves[high].astype(np.uint64) << np.uint64(32))
            return values.view(np.int64) if signed else values
        matrix = buffer[index[:, None] + np.arange(size)]
        values = matrix.view(f"{kind}{size}").ravel()
        return values.astype(np.int64) if size < 8 or signed else values

    def name_id(self, address: int) -> int:
        found = self.name_ids.get(address)
        if found is None:
            found = self.name_ids[address] = len(self.names)
            self.names.append(self.symbols.lookup(address))
        return found

    def name_codes(self, addresses):
        """Per event, the index of its function's (name, module) in self.names.

        Addresses seen before are found in a sorted table of them (a few
        thousand functions: a search in cache, no sort of the events'); only
        new ones are made distinct and looked up in kallsyms."""
        np = self.np
        if addresses.dtype != np.uint64:  # a signed field (no kernel has one): made distinct, as they come
            return self.distinct_name_codes(addresses)
        codes, new = self.table_codes(addresses)
        if not len(new):
            return codes
        for address in np.unique(addresses[new]).tolist():
            self.name_id(int(address))
        found = np.fromiter((address for address in self.name_ids if address >= 0), dtype=np.uint64)
        # kind="stable": numpy's default argsort of 64-bit numbers (SIMD quicksort) gave an unsorted
        # table under QEMU's emulated CPU, and the lookup never matched.
        order = np.argsort(found, kind="stable")
        self.address_table = (found[order], np.fromiter((self.name_ids[address] for address in found.tolist()), dtype=np.int64)[order])
        codes, new = self.table_codes(addresses)
        return codes if not len(new) else self.distinct_name_codes(addresses)  # a table that does not work: as they come

    def table_codes(self, addresses):
        """Per address its code in the sorted address table, and the positions of the addresses not in it."""
        np = self.np
        known, ids = self.address_table
        if not len(known):
            return np.zeros(len(addresses), dtype=np.int64), np.arange(len(addresses))
        index = np.minimum(np.searchsorted(known, addresses), len(known) - 1)
        return ids[index], np.flatnonzero(known[index] != addresses)

    def distinct_name_codes(self, addresses):
        """name_codes() without the table: the chunk's addresses made distinct and each looked up."""
        np = self.np
        unique, inverse = np.unique(addresses, return_inverse=True)
        ids = np.array([self.name_id(int(address)) for address in unique.tolist()], dtype=np.int64)
        return ids[inverse.ravel()] if len(unique) else np.zeros(0, dtype=np.int64)

    def decode(self, chunk, cpu: int, where, stamps, lost_at, lost_counts) -> EventBatch:
        np = self.np
        buffer = np.frombuffer(chunk, dtype=np.uint8)
        count = len(where)
        types = self.gather(buffer, where, self.type_field).astype(np.int64)
        known = types < len(self.table)
        kind = np.where(known, self.table[np.where(known, types, 0)], EV_OTHER)
        code = np.zeros(count, dtype=np.int64)
        duration = np.zeros(count, dtype=np.float64)
        pids = self.gather(buffer, where, self.pid_field).astype(np.int64)
        ctx = ((pids & 0xFFFFFFFF) << 16) | cpu
        for event_kind, event in self.by_kind.items():
            selected = np.flatnonzero(kind == event_kind)
            if not len(selected):
                continue
            at = where[selected]
            if event_kind == EV_FUNCTION:
                names = self.name_codes(self.gather(buffer, at, event.fields["ip"]))
                parent_field = event.fields.get("parent_ip")
                parents = self.name_codes(self.gather(buffer, at, parent_field)) + 1 if parent_field else np.zeros(len(at), dtype=np.int64)
                code[selected] = (names << 32) | parents
                continue
            names = self.name_codes(self.gather(buffer, at, event.fields["func"]))
            depth = self.gather(buffer, at, event.fields["depth"]).astype(np.int64) & 0xFFFF
            code[selected] = (names << 16) | depth
            if event_kind == EV_ENTRY and self.retaddr_event is not None:
                with_site = selected[types[selected] == self.retaddr_event.event_id]
                if len(with_site):
                    code[with_site] |= self.site_codes(self.gather(buffer, where[with_site], self.retaddr_event.fields["retaddr"])) << ERRNO_CODE_SHIFT
            if event_kind == EV_EXIT and self.has_retval:
                code[selected] |= self.returned_errnos(self.gather(buffer, at, event.fields["retval"])) << ERRNO_CODE_SHIFT
            if event_kind == EV_EXIT and {"calltime", "rettime"} <= event.fields.keys():
                spent = self.gather(buffer, at, event.fields["rettime"]).astype(np.int64) - self.gather(buffer, at, event.fields["calltime"]).astype(np.int64)
                # A time no call takes (negative, or 11.6 days and more: damaged pages) is none, as text's duration_field() rules
                duration[selected] = np.where((spent >= 0) & (spent < MAX_DURATION_US * 1000), spent / 1000.0, np.nan)
            elif event_kind == EV_EXIT:
                duration[selected] = np.nan
        if self.details is not None:
            self.keep_details(buffer, where, types, kind, code)
        else:
            code[kind == EV_OTHER] = types[kind == EV_OTHER]  # counted by event id as the model is fed (count_others)
        batch = EventBatch(stamps, kind, code, ctx, duration)
        if len(lost_at):
            batch = self.with_lost(batch, cpu, lost_at, lost_counts)
        return batch

    def site_codes(self, addresses):
        """Per return address its site's number, each new address made "caller+0xoff/0xsize" with the file's kallsyms."""
        np = self.np
        unique, inverse = np.unique(addresses, return_inverse=True)
        ids = []
        for address in unique.tolist():
            found = self.site_ids.get(address)
            if found is None:
                if len(self.sites) >= 1 << SITE_CODE_BITS:
                    found = 0
                else:
                    found = self.site_ids[address] = len(self.sites)
                    self.sites.append(self.symbols.site(int(address)))
            ids.append(found)
        codes = np.asarray(ids, dtype=np.int64)[inverse.ravel()] if len(unique) else np.zeros(0, dtype=np.int64)
        self.sites_not_kept += int((codes == 0).sum())
        return codes

    def keep_details(self, buffer, where, types, kind, code) -> None:
        """Each other event's fields, read by its stored format; its code becomes the key to them (-1: no format stored for its id)."""
        for index in self.np.flatnonzero(kind == EV_OTHER).tolist():
            event_id = int(types[index])
            layout = self.layouts.get(event_id, False)
            if layout is False:
                event = self.formats.get(event_id)
                layout = self.layouts[event_id] = EventLayout(event, self.endian, self.symbols, self.long_size) if event is not None else None
            if layout is None:
                code[index] = -1
                continue
            self.details[self.detail_count] = (layout.name, *layout.read(buffer, int(where[index]), len(buffer)))
            code[index] = self.detail_count
            self.detail_count += 1

    def count_others(self, batch: EventBatch) -> None:
        """The events that are no calls (scheduler events...), by event id: counted, never read field by field."""
        np = self.np
        others = batch.code[batch.kind == EV_OTHER]
        if len(others):
            self.other_counts.update(dict(zip(*(part.tolist() for part in np.unique(others, return_counts=True)))))

    def returned_errnos(self, values):
        """Per return value, the errno (1..4095) it is by print_graph_retval's rule (see errno_of()), else 0."""
        np = self.np
        bits = values.astype(np.uint64)
        low = (bits & np.uint64(0xFFFFFFFF)).astype(np.int64)
        int_sized = ((bits >> np.uint64(32)) == 0) & (low >= 1 << 31)
        signed = np.where(int_sized, low - (1 << 32), bits.view(np.int64))
        return np.where((signed < 0) & (signed >= -MAX_ERRNO), -signed, 0)

    def irregular(self, kind, code):
        """Events that feed_bulk() leaves to feed_trace_dat(): lost-event notices, function tracer events, errno returns."""
        found = (kind == EV_LOST) | (kind == EV_FUNCTION)
        if self.has_retval:
            found |= (kind == EV_EXIT) & (code >= 1 << ERRNO_CODE_SHIFT)
        return found

    def with_lost(self, batch: EventBatch, cpu: int, positions, counts) -> EventBatch:
        """Put each page's lost events just before the page's first event, as trace-cmd report prints them."""
        np = self.np
        if len(batch):
            stamps = batch.key[np.minimum(positions, len(batch) - 1)]
        else:
            stamps = np.zeros(len(positions), dtype=np.int64)
        return EventBatch(
            np.insert(batch.key, positions, stamps),
            np.insert(batch.kind, positions, EV_LOST),
            np.insert(batch.code, positions, counts),
            np.insert(batch.ctx, positions, cpu),
            np.insert(batch.duration, positions, 0.0),
        )


def cpu_event_batches(dat: TraceDat, decoder: EventDecoder, data: CpuData, damage: list[str], start: CpuStart | None = None) -> Iterator[EventBatch]:
    """One CPU's events, batch by batch, with a never-decreasing merge key (the per-CPU order is kept).

    From a start (a time window's, see WindowPlan): from its unit on, without the events before its time; and
    at each unit of its `breaks` the merge key reached before it is noted in its `floors`."""
    np = decoder.np
    floor = 0
    found: list[str] = []  # what is cut or damaged: said by the process whose window holds the CPU's last events
    units = dat.cpu_units(data, found, start.unit, start.breaks, start.units, not start.since) if start else dat.cpu_units(data, found)
    for unit, chunk in units:
        if start is not None and unit in start.breaks:
            start.floors[unit] = floor
        batch = decoder.decode(chunk, data.cpu, *walk_pages(chunk, dat.page_size, dat.layout, dat.endian))
        del chunk  # not kept while the batch is merged and fed: a copy of up to 4 MB of pages
        if not len(batch):
            continue
        batch.key = np.maximum.accumulate(np.maximum(batch.key, floor))
        floor = int(batch.key[-1])
        if start is not None and start.since:
            batch = batch.part(slice(int(np.searchsorted(batch.key, start.since)), None))
            if not len(batch):
                continue
            start.since = 0  # the keys never decrease: the rest is all later
        yield batch
    if not (start and start.since):  # else every event was the window before's, and so is the end
        damage.extend(found)


def merge_by_time(streams: list[Iterator[EventBatch]]) -> Iterator[EventBatch]:
    """All CPUs' events in timestamp order (ties: lower CPU first, as trace-cmd report), window by window."""
    return TimeMerge(streams).windows()


class TimeMerge:
    """The CPUs' event streams merged in timestamp order, handed out up to a time at a time.

    A window ends at the earliest last timestamp of the CPUs' current batches, so
    memory holds one batch per CPU, never the file; windows(until) stops before the
    first event at `until` or later and keeps the rest for the next call."""

    def __init__(self, streams: list[Iterator[EventBatch]]) -> None:
        self.streams = streams
        self.current: dict[int, EventBatch] = {}
        self.active = list(range(len(streams)))

    def windows(self, until: int | None = None) -> Iterator[EventBatch]:
        current = self.current
        while True:
            for index in list(self.active):
                if index not in current or not len(current[index]):
                    following = next(self.streams[index], None)
                    if following is None:
                        self.active.remove(index)
                        current.pop(index, None)
                    else:
                        current[index] = following
            if not current or (until is not None and all(batch.key[0] >= until for batch in current.values())):
                return
            horizon = min(batch.key[-1] for batch in current.values())
            if until is not None:
                horizon = min(horizon, until - 1)
            yield self.take_until(horizon)

    def take_until(self, horizon: int) -> EventBatch:
        """The current batches' events up to horizon, in time order (the generator holds no part of a window it handed
        out: a window is as big as the next one being decoded)."""
        import numpy as np

        current = self.current
        parts = []
        for index in sorted(current):
            batch = current[index]
            cut = int(np.searchsorted(batch.key, horizon, side="right"))
            parts.append(batch.part(slice(0, cut)))
            current[index] = batch.part(slice(cut, None))
        return EventBatch.in_time_order(parts)


# --- a trace.dat in N time windows, one process each ---------------------------------
#
# -j N cuts the recording at N-1 times T1 < T2 < ..., chosen so that each window
# holds about as many pages (all CPUs together). The parent reads the first
# window; a child each later one, stitched as text chunks are (SeamParser: a
# task's events before its first call at depth 0 are logged for the process
# before, an entry with its time; the chain of pipes; read_on's fallbacks). The
# child of window k starts, on each CPU, at the last page (or compressed chunk)
# that began at or before Tk and keeps the events from Tk on; the process before
# reads each CPU until its events reach Tk. An event's merge key is the running
# maximum of its CPU's time stamps (cpu_event_batches), which the child, starting
# with none of the CPU's earlier events, computes alike only if no event before
# its first page has a key at Tk or later: the process before checks that as it
# passes the page, and reads on itself where it does not hold (a clock that went
# back), as it does where the child gave up (a log too long, a lost-events notice
# so close after Tk that it may repeat one before: see TraceParser.lost_line()).

DAT_WINDOW_MIN_BYTES = 16 << 20  # by default one process per this much of a trace.dat's pages at least (fork and stitch cost)
DAT_WARM_UP_BYTES = 2 << 20  # pages read before the children are forked (see read_in_windows)
WINDOW_SAMPLE_UNITS = 256  # units per CPU whose stamps place the windows' times (a pread each: 1 us)
MAIN_PROCESS = os.getpid()  # a child parsing one of several inputs reads its trace.dat in one window


@dataclass
class CpuStart:
    """Where a window's events of one CPU begin: a unit, a time (the events before it are the window before's), the
    units where later windows begin (breaks) and the merge key this process had reached before each (floors)."""

    unit: int
    since: int
    breaks: tuple[int, ...]
    units: CpuUnits
    floors: dict[int, int] = field(default_factory=dict)


@dataclass
class WindowPlan:
    """The times where windows 1, 2, ... begin (window 0 begins with the file) and per window the unit where each CPU's
    events begin (CPUs with no units are read whole by every window: they have no events)."""

    times: list[int]
    units: dict[int, CpuUnits]  # index in dat.cpus -> its unit table
    first_units: list[dict[int, int]]

    def starts(self, window: int) -> dict[int, CpuStart]:
        """Where each CPU's events of `window` begin. Batches break at each later window's first unit and two units
        on: the process reads that unit and the next as one small batch (the first's events before the later window's
        time are this one's; where they all are, the next began after the time), not a whole batch of the next
        window's pages, to find where it ends."""
        since = self.times[window - 1] if window else 0
        return {cpu: CpuStart(first, since, tuple(sorted({unit for later in self.first_units[window + 1 :] for unit in (later[cpu], later[cpu] + 2)
                                                           if unit > first})), self.units[cpu])
                for cpu, first in self.first_units[window].items()}

    def seam_holds(self, starts: dict[int, CpuStart], window: int) -> bool:
        """Whether the process holding `starts` passed every CPU's first unit of `window` with keys all before its time."""
        since = self.times[window - 1]
        for cpu, start in starts.items():
            unit = self.first_units[window][cpu]
            floor = 0 if unit == start.unit else start.floors.get(unit)
            if floor is None or floor >= since:
                return False
        return True


def window_plan(dat: TraceDat, parser: TraceParser) -> WindowPlan | None:
    """Where the windows of -j N begin (KM_SPLIT_AT: at these shares of the pages); None for one window."""
    import numpy as np

    jobs = parse_processes()
    if parser.selection or jobs < 2 or not hasattr(os, "fork") or os.getpid() != MAIN_PROCESS:
        return None
    size = sum(data.size for data in dat.cpus)
    wanted = os.environ.get(SPLIT_AT_ENV, "")
    try:
        shares = sorted(float(share) for share in wanted.split(",")) if wanted else None
    except ValueError:
        shares = None
    if shares is None:
        windows = jobs if jobs_forced() else min(jobs, size // DAT_WINDOW_MIN_BYTES)
        shares = [index / windows for index in range(1, windows)]
    if not shares:
        return None
    units: dict[int, CpuUnits] = {}
    for index, data in enumerate(dat.cpus):
        table = dat.unit_table(data)
        if table is None:
            return None
        if table.count:
            units[index] = table
    if not units:
        return None
    # The windows' times from a sample of each CPU's units (each weighing the units it stands for)
    samples: list[tuple[int, float]] = []
    for table in units.values():
        taken = min(table.count, WINDOW_SAMPLE_UNITS)
        samples.extend((table.stamp(step * table.count // taken), table.count / taken) for step in range(taken))
    samples.sort()
    weights = np.cumsum([weight for _, weight in samples])
    times: list[int] = []
    for share in shares:
        if 0 < share < 1:
            at = min(int(np.searchsorted(weights, share * weights[-1])), len(samples) - 1)
            time = samples[at][0] + 1  # just after a page's first event
            if time > samples[0][0] + 1 and (not times or time > times[-1]):
                times.append(time)
    if not times:
        return None
    first_units = [dict.fromkeys(units, 0)]
    for time in times:
        first_units.append({cpu: table.last_starting_by(time) for cpu, table in units.items()})
    dat.unmap(0, len(dat.data))  # the pages the searches looked at
    return WindowPlan(times, units, first_units)


class DatReading:
    """One process's reading of a trace.dat's events into its parser, and what the statistics need at the end."""

    def __init__(self, parser: TraceParser, dat: TraceDat, decoder: EventDecoder, progress: Progress | None) -> None:
        self.parser, self.dat, self.decoder, self.progress = parser, dat, decoder, progress
        self.fed = 0  # events fed to the model (lost-event notices excluded)
        self.kinds = [0] * (EV_OTHER + 1)
        self.damage: list[str] = []

    def merge(self, plan: WindowPlan | None = None, window: int = 0) -> tuple[TimeMerge, dict[int, CpuStart]]:
        """The CPUs' events merged, from the file's start or from a window's."""
        starts = plan.starts(window) if plan else {}
        streams = [cpu_event_batches(self.dat, self.decoder, data, self.damage, starts.get(index)) if not window or index in starts else iter(())
                   for index, data in enumerate(self.dat.cpus)]  # a CPU without pages (or whose pages are cut off): the first window's
        return TimeMerge(streams), starts

    def feed(self, windows: Iterable[EventBatch]) -> None:
        parser, decoder = self.parser, self.decoder
        for window in windows:
            decoder.count_others(window)
            if parser.selection:
                window = selected_events(window, parser.selection, decoder.np, self.dat.comms)
            if len(window):
                parser.note_times(int(window.key[0]) / 1000, int(window.key[-1]) / 1000)
            self.kinds = [total + int(count) for total, count in zip(self.kinds, decoder.np.bincount(window.kind, minlength=EV_OTHER + 1))]
            self.fed = feed_trace_dat_window(parser, decoder, window, self.fed)
            del window  # as big as the next window: not kept while that one is decoded
            if self.progress:
                self.progress.update(self.dat.consumed, f"{self.fed:,} events")

    def rest_result(self) -> dict:
        """What a child sends for the windows from its own to the end (SeamParser.seam_result() and the reading's counts)."""
        assert isinstance(self.parser, SeamParser)
        decoder = self.decoder
        return {**self.parser.seam_result(), "fed": self.fed, "kinds": self.kinds, "damage": self.damage, "other_counts": dict(decoder.other_counts),
                "sites_not_kept": decoder.sites_not_kept}

    def add_rest(self, result: dict) -> None:
        """The windows from the next child's on, as if this process had read on."""
        add_second_half(self.parser, result)
        self.fed += result["fed"]
        self.kinds = [mine + theirs for mine, theirs in zip(self.kinds, result["kinds"])]
        self.damage.extend(result["damage"])
        self.decoder.other_counts.update(result["other_counts"])
        self.decoder.sites_not_kept += result["sites_not_kept"]


def read_in_windows(reading: DatReading, plan: WindowPlan) -> None:
    """The first window here, each later one in a child of its own, stitched in a chain (see above).

    The first pages are read before the children are forked: they start with the
    decoder's names and codes, and the call paths, that every window meets."""
    merge, starts = reading.merge(plan, 0)
    windows = merge.windows(plan.times[0])
    for window in windows:
        reading.feed([window])
        if reading.dat.consumed >= DAT_WARM_UP_BYTES:
            break
    with chain_of_children(len(plan.times), lambda index, following, gate: window_writer(reading, plan, index + 1, following, gate)) as (pipe, gate):
        reading.feed(windows)
        gate.give()
        read_windows_on(reading, merge, starts, plan, 1, pipe)
    if reading.progress:
        reading.progress.update(len(reading.dat.data), f"{reading.fed:,} events")


def window_writer(reading: DatReading, plan: WindowPlan, window: int, following: int | None, gate: CoreGate) -> Callable[[IO[bytes]], None]:
    """What the child of a window does: read its window, stitch the later ones from the next child, send on ("rest", result);
    ("skip", None) and then what the next child sent when it cannot read its window alone."""

    def write(pipe: IO[bytes]) -> None:
        source = os.fdopen(following, "rb") if following is not None else None
        parser = SeamParser(CallGraph(), reading.dat.path, 0)
        parser.where = reading.dat.path
        parser.start_from(reading.parser)
        parser.first_lost_may_repeat = True
        parser.logged_on = {}
        decoder = reading.decoder
        decoder.other_counts, decoder.sites_not_kept = Counter(), 0  # the parent's so far are its own
        mine = DatReading(parser, reading.dat, decoder, None)
        merge, starts = mine.merge(plan, window)
        last = window == len(plan.times)
        try:
            with gate.held():
                mine.feed(merge.windows(None if last else plan.times[window]))
        except (SeamUnknown, UserError):  # UserError: the process before meets the same problem in order
            send_message(pipe, ("skip", None))
            relay_messages(source, pipe)
            return
        if source is not None and not last:
            try:
                read_windows_on(mine, merge, starts, plan, window + 1, source)
            except (SeamUnknown, UserError):
                return  # the process before reads the whole rest
        send_message(pipe, ("rest", mine.rest_result()))

    return write


def read_windows_on(reading: DatReading, merge: TimeMerge, starts: dict[int, CpuStart], plan: WindowPlan, window: int, pipe: IO[bytes]) -> None:
    """The reading holds every event before `window`: the rest from the next child's message, or read here where it cannot be used."""
    for index in range(window, len(plan.times) + 1):
        kind, result = receive_message(pipe)
        if kind == "rest" and plan.seam_holds(starts, index):
            reading.add_rest(result)
            return
        if kind != "skip":
            break
        reading.feed(merge.windows(plan.times[index] if index < len(plan.times) else None))
    reading.feed(merge.windows())


def feed_trace_dat(parser: TraceParser, decoder: EventDecoder, batch: EventBatch, fed: int) -> int:
    """The model calls for one merged window; returns the events fed so far (lost notices excluded).

    The arguments are built per distinct value (np.unique), an entry directly
    followed by its own exit becomes one leaf (leaf_pairs), and each run of
    function_graph events of one task on one CPU (a few hundred on a busy
    CPU) goes through feed_graph_run(), which applies the common cases itself;
    the rest, one model call per event.
    """
    np = decoder.np
    if not len(batch):
        return fed
    whole = len(batch)
    batch, joined_before = leaf_pairs(np, batch)
    kinds = batch.kind
    group = np.where((kinds <= EV_EXIT) | (kinds == EV_LEAF), EV_ENTRY, kinds)
    if decoder.has_retval:
        group[(kinds == EV_EXIT) & (batch.code >= 1 << ERRNO_CODE_SHIFT)] = EV_RETURNED_ERRNO
    new_task = (np.diff(batch.ctx) != 0) & (group[1:] == EV_ENTRY)
    starts = np.concatenate(([0], np.flatnonzero((np.diff(group) != 0) | new_task) + 1)).tolist()
    stops = [*starts[1:], len(batch)]
    graph = np.flatnonzero((group == EV_ENTRY) | (group == EV_RETURNED_ERRNO))
    parsed = np.full(len(batch), None, dtype=object)
    durations = np.full(len(batch), None, dtype=object)
    if len(graph):
        names, known = decoder.names, decoder.graph_events
        shapes = np.where(kinds[graph] == EV_LEAF, 2, kinds[graph])  # 0 entry, 1 exit, 2 leaf

        def graph_parsed(code: int) -> tuple:
            found = known.get(code)
            if found is None:
                name, module = names[(code >> 18) & 0xFFFFFFFF]
                depth = (code >> 2) & 0xFFFF
                found = ((ENTRY, depth, name, module), (EXIT, depth, name, None), (LEAF, depth, name, module))[code & 3]
                high = code >> (ERRNO_CODE_SHIFT + 2)  # an exit's errno, an entry's (or leaf's) call site
                if high and code & 3 == 1:
                    found = (RETURNED_ERRNO, depth, found, -high)
                elif high:
                    found = (CALLED_FROM, depth, found, decoder.sites[high])
                known[code] = found
            return found

        parsed[graph] = objects_by_code(np, (batch.code[graph] << 2) | shapes, graph_parsed)
        timed_at = graph[shapes > 0]
        spent = batch.duration[timed_at]
        timed = ~np.isnan(spent)  # NaN: the exit format has no calltime/rettime
        durations[timed_at[timed]] = spent[timed].tolist()
    parsed, durations, stamps = parsed.tolist(), durations.tolist(), batch.key.tolist()
    last_stamp = parser.last_stamp
    function_call = parser.function_call
    contexts: dict[int, tuple] = {}
    for start, stop in zip(starts, stops):
        kind = int(group[start])
        if kind == EV_ENTRY:
            ctx = int(batch.ctx[start])
            context = contexts.get(ctx) or contexts.setdefault(ctx, trace_dat_context(ctx))
            feed_graph_run(parser, parsed[start:stop], context, durations[start:stop], stamps[start:stop])
            last_stamp[context[1]] = stamps[stop - 1]
        elif kind == EV_RETURNED_ERRNO:
            for index in range(start, stop):
                context = trace_dat_context(int(batch.ctx[index]))
                parser.graph_event(parsed[index], context, durations[index])
                last_stamp[context[1]] = stamps[index]
        elif kind == EV_FUNCTION:
            calls = objects_by_code(np, batch.code[start:stop], lambda code: trace_dat_call(decoder.names, code))
            collections.deque(map(function_call, calls), maxlen=0)
        elif kind == EV_LOST:
            for index in range(start, stop):
                parser.line_no = fed + int(joined_before[index])  # lost_line tells a repeated notice from a new loss by the distance
                parser.lost_line(trace_dat_context(int(batch.ctx[index]))[0], int(batch.code[index]) if batch.code[index] >= 0 else None)
            fed -= stop - start
        fed += stop - start
    parser.flush_counts()
    return fed + whole - len(batch)


def leaf_pairs(np, batch: EventBatch) -> tuple[EventBatch, object]:
    """The window with each entry that its own exit directly follows made one EV_LEAF event (the exit's duration).

    Only neighbours in the merged order are joined: nothing happens in between,
    so one LEAF call does what the ENTRY and EXIT calls would (feed_graph_run
    counts it as both). Also returns, per remaining event, the exits joined
    before it, which keeps the event numbers of lost notices.
    """
    kinds = batch.kind
    joined = (kinds[:-1] == EV_ENTRY) & (kinds[1:] == EV_EXIT) & ((batch.code[:-1] & LOW_CODE_MASK) == batch.code[1:]) & (batch.ctx[:-1] == batch.ctx[1:])
    entries = np.flatnonzero(joined)
    if not len(entries):
        return batch, np.zeros(len(batch), dtype=np.int64)
    kinds = kinds.copy()
    kinds[entries] = EV_LEAF
    duration = batch.duration.copy()
    duration[entries] = batch.duration[entries + 1]
    stamps = batch.key.copy()
    stamps[entries] = batch.key[entries + 1]  # a leaf's time is its exit's: the task's last event may be one
    keep = np.ones(len(batch), dtype=bool)
    keep[entries + 1] = False
    before = np.cumsum(~keep)[keep]
    return EventBatch(stamps[keep], kinds[keep], batch.code[keep], batch.ctx[keep], duration[keep]), before


def feed_graph_run(parser: TraceParser, parsed: list[tuple], context: tuple, durations: list, stamps: list) -> None:
    """One task's run of function_graph events on one CPU into the model, the common ones applied here (as feed_lines does).

    An entry or leaf below the open call one level up, and an exit closing
    the open call at its depth, are applied inline; anything else (a new
    task, a lost exit, pending callers) goes to graph_event(), which does the
    same and more. The task's state is looked up once per run (every event
    of the run would set its CPU to this one). A leaf made of an entry and
    its exit is counted as those two events, so event counts and lost-notice
    marks are the per-event ones. Like feed_lines it works on the model's task
    stacks and frames: a change to them changes both (tests/test_tracedat.py
    compares the result with one graph_event() per event). An open call's
    frame carries its entry's time (ns), for the calls still open at the end.
    """
    cpu, key, irq = context
    tasks = parser.tasks
    tree = parser.tree
    children, child, total_us, self_us = tree.children, tree.child, tree.total_us, tree.self_us
    modules = parser.graph.modules
    calls = tree.calls  # counted in place, as feed_lines() does (graph_event() batches its own)
    graph_event = parser.graph_event
    entries = exits = 0
    exit_kind, entry_kind = EXIT, ENTRY
    state = tasks.get(key)
    if state is not None:
        state.cpu = cpu
    stack = state.stack if state is not None and not state.irq_entry else None
    for event, duration, stamp in zip(parsed, durations, stamps):
        kind, depth, name, module = event
        site = None
        if kind == CALLED_FROM:  # funcgraph-retaddr: the call and where it was made from
            site = module
            kind, depth, name, module = name
        if stack:
            top = stack[-1]
            if kind == exit_kind:
                if top[1] == depth and name == top[0]:  # FRAME_DEPTH, FRAME_NAME
                    stack.pop()
                    exits += 1
                    if duration is not None:
                        node = top[4]  # FRAME_NODE
                        total_us[node] += duration
                        self_us[node] += duration - top[2]  # FRAME_CHILD_US
                        if stack and stack[-1][1] == depth - 1:
                            stack[-1][2] += duration
                    continue
            else:
                if top[1] >= depth:
                    while stack and stack[-1][1] >= depth:
                        stack.pop()  # its exit was lost (graph_event would pop the same)
                    top = stack[-1] if stack else None
                if top is not None and top[1] == depth - 1 and irq == top[3] and not (state.pending and state.pending[-1][0] >= depth):
                    kids = children[top[4]]
                    node = kids.get(name) if kids is not None else None
                    if node is None:
                        node = child(top[4], name)
                    calls[node] += 1
                    if site is not None:
                        tree.note_call_site(node, site)
                    if module:
                        modules[name] = module
                    entries += 1
                    if kind == entry_kind:
                        stack.append([name, depth, 0.0, irq, node, stamp])
                    else:
                        exits += 1
                        if duration is not None:
                            total_us[node] += duration
                            self_us[node] += duration
                            top[2] += duration
                    continue
        if kind == entry_kind:
            parser.trace_dat_entry(event, context, duration, stamp)
        else:
            graph_event(event, context, duration)
        if kind == LEAF:
            parser.leaves -= 1
            entries += 1
            exits += 1
        if stack is None:  # graph_event made the task's state, or ended its interrupt entry
            state = tasks.get(key)
            stack = state.stack if state is not None and not state.irq_entry else None
    parser.entries += entries
    parser.exits += exits


def objects_by_code(np, codes, make: Callable[[int], object]) -> list:
    """[make(code) for code in codes], calling make once per distinct code."""
    unique, inverse = np.unique(codes, return_inverse=True)
    table = [make(code) for code in unique.tolist()]
    return list(map(table.__getitem__, inverse.ravel().tolist()))


def trace_dat_context(ctx: int) -> tuple:
    cpu = str(ctx & 0xFFFF)
    return (cpu, task_key(str(ctx >> 16), cpu), "")


def trace_dat_call(names: list[tuple[str, str | None]], code: int) -> tuple:
    name, module = names[code >> 32]
    parent = code & 0xFFFFFFFF
    return (name, names[parent - 1][0] if parent else None, module)


# --- bulk feeding: whole stretches of regular function_graph events with numpy -------
#
# Most events do what the model's per-event code does in its common case: an
# entry below its task's open call one level up (or at depth 0), an exit closing
# the open call at its depth. For those, an entry's caller is its task's latest
# entry one level up, found for all events at once, depth by depth; only the
# distinct (caller node, function) pairs touch the tree's dicts, new nodes are
# made in the order the events would make them, and times are summed by
# np.bincount in event order (so the floats are the per-event ones, bit for
# bit). The first event that is anything else (a lost-event notice, a function
# tracer event, an entry with no caller, an exit without its entry or without
# duration, a task with pending callers) ends the stretch: from there
# feed_trace_dat() takes over for a while, with the model's per-event code.

BULK_MIN_EVENTS = 2048  # a shorter regular stretch goes the per-event way: numpy's per-call cost would dominate
BULK_LOOKAHEAD = 1 << 17  # at most this many events looked at per bulk attempt
PAIR_SPAN = 1 << 24  # (caller node, name number) pairs as one int64: caller * PAIR_SPAN + name
EXACT_EVENTS = 1024  # events fed the per-event way after an irregular one (doubling while the bulk way keeps failing)


def feed_trace_dat_window(parser: TraceParser, decoder: EventDecoder, batch: EventBatch, fed: int) -> int:
    """One merged window into the model; returns the events fed (lost-event notices excluded)."""
    if isinstance(parser, SeamParser):
        return feed_seam_window(parser, decoder, batch, fed)
    return feed_events(parser, decoder, batch, fed)


def feed_seam_window(parser: SeamParser, decoder: EventDecoder, batch: EventBatch, fed: int) -> int:
    """A later window's events: those of the tasks the process does not hold yet one by one (SeamParser logs them or
    takes the task on at its call at depth 0), the others as any window's.

    Tasks do not touch each other's state, but for lost-event notices, which
    break the open calls of the tasks that last ran on their CPU: up to the last
    event of a task not held, the events are taken in that order between notices.
    A stretch between notices too short for the bulk way goes per event in one
    call with the notices around it (a lossy window has hundreds of notices)."""
    np = decoder.np
    unheld = events_of_unheld_tasks(parser, np, batch)
    if unheld is None:
        return feed_events(parser, decoder, batch, fed)
    last = int(np.flatnonzero(unheld)[-1]) + 1
    notices = np.flatnonzero(batch.kind[:last] == EV_LOST).tolist()
    in_order = start = 0  # the events from in_order to start (short stretches and their notices) are not fed yet
    for notice in [*notices, last]:
        if notice - start >= BULK_MIN_EVENTS:
            if start > in_order:
                fed = feed_trace_dat(parser, decoder, batch.part(slice(in_order, start)), fed)
            fed = feed_tasks_apart(parser, decoder, batch.part(slice(start, notice)), fed)
            in_order = notice
        start = notice + 1
    if last > in_order:
        fed = feed_trace_dat(parser, decoder, batch.part(slice(in_order, last)), fed)
    return feed_events(parser, decoder, batch.part(slice(last, None)), fed) if last < len(batch) else fed


def feed_tasks_apart(parser: SeamParser, decoder: EventDecoder, batch: EventBatch, fed: int) -> int:
    """Events with no lost-event notice among them: those of the tasks not held one by one, then the others."""
    mine = events_of_unheld_tasks(parser, decoder.np, batch)
    if mine is not None:
        fed = feed_trace_dat(parser, decoder, batch.part(mine), fed)
        batch = batch.part(~mine)
    return feed_events(parser, decoder, batch, fed) if len(batch) else fed


def events_of_unheld_tasks(parser: TraceParser, np, batch: EventBatch):
    """Per event whether it is a task's that the parser does not hold (None: no such event); lost-event notices are not.

    The contexts are looked at once per run of equal ones (a task runs for many events on its CPU)."""
    ctx = batch.ctx
    if not len(ctx):
        return None
    heads = ctx[np.concatenate(([0], np.flatnonzero(ctx[1:] != ctx[:-1]) + 1))]
    new = [value for value in np.unique(heads).tolist() if trace_dat_context(value)[1] not in parser.tasks]
    if not new:
        return None
    unheld = np.isin(ctx, new) & (batch.kind != EV_LOST)
    return unheld if unheld.any() else None


def feed_events(parser: TraceParser, decoder: EventDecoder, batch: EventBatch, fed: int) -> int:
    """Events into the model: regular stretches in bulk, the rest by feed_trace_dat(); returns the events fed.

    A bulk attempt looks at most `ahead` events: as many again as the last
    regular stretch (an irregular event early in a long look-ahead wastes the
    work done past it)."""
    np = decoder.np
    start, count, exact, ahead = 0, len(batch), EXACT_EVENTS, BULK_LOOKAHEAD
    notices = np.flatnonzero(decoder.irregular(batch.kind, batch.code))
    while start < count:
        at = int(np.searchsorted(notices, start))
        if at < len(notices) and notices[at] == start:
            stop = start + 1
            while at + 1 < len(notices) and notices[at + 1] == stop:
                at, stop = at + 1, stop + 1
            fed = feed_trace_dat(parser, decoder, batch.part(slice(start, stop)), fed)  # lost-event notices, function tracer events
            start = stop
            continue
        done, irregular = feed_bulk(parser, decoder, batch, start, min(count, start + ahead))
        if done:
            parser.flush_counts()
            fed += done
            start += done
            exact = EXACT_EVENTS
            ahead = BULK_LOOKAHEAD if done == ahead else max(4096, 2 * done)
            continue
        stop = min(count, start + max(irregular + 1, exact))
        fed = feed_trace_dat(parser, decoder, batch.part(slice(start, stop)), fed)
        start = stop
        exact = min(2 * exact, 1 << 14)  # irregular again and again: try the bulk way less often
    return fed


class BulkRows:
    """A stretch's function_graph events sorted by task then time, each task's open calls first as pseudo-entries (pos -1)."""

    __slots__ = ("after", "by_level", "caller", "closes", "depth", "dur", "entry", "frame", "frame_row", "orphan", "pos", "sid", "site", "tid")

    def __init__(self) -> None:
        self.by_level = None  # latest_entries()'s search table, made once
        self.caller = None  # entry_callers(), made once


def name_sids(decoder: EventDecoder, codes):
    """Per name code, the number of its function's name (the model matches an exit to its entry by name)."""
    np = decoder.np
    sids = decoder.__dict__.setdefault("sids", [])
    sid_of = decoder.__dict__.setdefault("sid_of", {})
    for name, _module in decoder.names[len(sids):]:
        sids.append(sid_of.setdefault(name, len(sid_of)))
    return np.asarray(sids, dtype=np.int64)[codes] if len(codes) else np.zeros(0, dtype=np.int64)


def bulk_task_ids(np, ctx) -> tuple[object, list, object]:
    """Per event its task's number, the tasks' keys (in order of first event) and per event its context's index."""
    unique, first, inverse = np.unique(ctx, return_index=True, return_inverse=True)
    keys: list = []
    task_of: dict = {}
    ctx_task = []
    for ctx_value in unique[np.argsort(first, kind="stable")].tolist():
        key = trace_dat_context(ctx_value)[1]
        if key not in task_of:
            task_of[key] = len(keys)
            keys.append(key)
        ctx_task.append(task_of[key])
    rank = np.empty(len(unique), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(unique))
    return np.asarray(ctx_task, dtype=np.int64)[rank[inverse.ravel()]], keys, unique


def feed_bulk(parser: TraceParser, decoder: EventDecoder, batch: EventBatch, start: int, stop: int) -> tuple[int, int]:
    """Apply the regular beginning of batch[start:stop] to the model.

    Returns its length in events (0: too short, nothing done) and where the
    first event it did not cover is (from start)."""
    np = decoder.np
    kind = batch.kind[start:stop]
    stopper = np.flatnonzero(decoder.irregular(kind, batch.code[start:stop]))
    end = int(stopper[0]) if len(stopper) else stop - start
    if end < BULK_MIN_EVENTS:
        return 0, end
    graph = np.flatnonzero(kind[:end] <= EV_EXIT)
    if not len(graph):
        return end, end
    code = batch.code[start:start + end][graph]
    ctx = batch.ctx[start:start + end][graph]
    tid, keys, _ = bulk_task_ids(np, ctx)
    rows, limit = bulk_rows(parser, decoder, keys, graph, tid, kind[graph] == EV_ENTRY, code, batch.duration[start:start + end][graph])
    cut = min(limit, end, bulk_regular_end(np, rows))
    if cut < BULK_MIN_EVENTS:
        return 0, cut
    fed = graph < cut
    stamps = batch.key[start:start + end]
    apply_bulk(parser, decoder, rows, rows.pos < cut, keys, (code[fed & (kind[graph] == EV_ENTRY)] & LOW_CODE_MASK) >> 16, ctx[fed], tid[fed], stamps, graph[fed])
    return cut, cut


def bulk_rows(parser: TraceParser, decoder: EventDecoder, keys: list, pos, tid, entry, code, dur) -> tuple[BulkRows, int]:
    """The rows of a stretch, and the first event of a task whose state bulk feeding cannot continue (else len)."""
    np = decoder.np
    sid = name_sids(decoder, (code & LOW_CODE_MASK) >> 16)  # without an entry's call site
    first = np.full(len(keys), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, tid, pos)
    pseudo_tid, pseudo_depth, pseudo_sid, frames = [], [], [], []
    sid_of = decoder.sid_of
    limit = np.iinfo(np.int64).max
    for task, key in enumerate(keys):
        state = parser.tasks.get(key)
        if state is None:
            continue
        if state.pending or state.irq_entry or any(frame[FRAME_DEPTH] != level for level, frame in enumerate(state.stack)):
            limit = min(limit, int(first[task]))  # the stretch ends at this task's first event
            continue
        for level, frame in enumerate(state.stack):
            pseudo_tid.append(task)
            pseudo_depth.append(level)
            pseudo_sid.append(sid_of.setdefault(frame[FRAME_NAME], len(sid_of)))
            frames.append(frame)
    count = len(frames)
    rows = BulkRows()
    rows.tid = np.concatenate((np.asarray(pseudo_tid, dtype=np.int64), tid))
    rows.depth = np.concatenate((np.asarray(pseudo_depth, dtype=np.int64), code & 0xFFFF))
    rows.sid = np.concatenate((np.asarray(pseudo_sid, dtype=np.int64), sid))
    rows.entry = np.concatenate((np.ones(count, dtype=bool), entry))
    rows.dur = np.concatenate((np.zeros(count), dur))
    rows.pos = np.concatenate((np.full(count, -1, dtype=np.int64), pos))
    rows.site = np.concatenate((np.zeros(count, dtype=np.int64), np.where(entry, code >> ERRNO_CODE_SHIFT, 0)))  # site numbers (fgraph_retaddr_entry)
    # By task, then time: the rows are in time order already (pseudo-entries first), so a stable sort by task.
    order = stable_order(np, rows.tid)
    for name in ("tid", "depth", "sid", "entry", "dur", "pos", "site"):
        setattr(rows, name, getattr(rows, name)[order])
    pseudo_at = np.flatnonzero(order < count)
    rows.frame = dict(zip(pseudo_at.tolist(), (frames[index] for index in order[pseudo_at].tolist())))
    return rows, limit


def entry_callers(np, rows: BulkRows):
    """Per row, for entries (pseudo-entries too) with depth > 0, the row of the caller (-1: none or not an entry); made once.

    Asked in the search table's own order, so the keys searched for increase."""
    if rows.caller is None:
        entries, depths, _keys = level_table(np, rows)
        inner = depths > 0
        asked = entries[inner]
        rows.caller = np.full(len(rows.tid), -1, dtype=np.int64)
        rows.caller[asked] = latest_entries(np, rows, asked, rows.tid[asked], depths[inner] - 1)
    return rows.caller


def level_table(np, rows: BulkRows):
    """The entries' rows sorted by (depth, row), their depths, and the search keys depth * span + row; made once."""
    if rows.by_level is None:
        entries = np.flatnonzero(rows.entry)
        entries = entries[stable_order(np, rows.depth[entries])]  # by depth, then row
        depths = rows.depth[entries]
        rows.by_level = (entries, depths, depths * (len(rows.tid) + 1) + entries)
    return rows.by_level


def stable_order(np, numbers):
    """np.argsort(numbers, kind="stable"); as 16-bit numbers where they fit, which numpy sorts by radix (3x faster here)."""
    if len(numbers) and 0 <= int(numbers.min()) and int(numbers.max()) < 1 << 16:
        return np.argsort(numbers.astype(np.uint16), kind="stable")
    return np.argsort(numbers, kind="stable")


def latest_entries(np, rows: BulkRows, before, tids, levels):
    """Per query, the row of its task's latest entry at `level` before row `before` (-1: none)."""
    found = np.full(len(before), -1, dtype=np.int64)
    if not len(before):
        return found
    entries, depths, keys = level_table(np, rows)
    # One search over entries sorted by (depth, row): the key of (level, before) lands just after the wanted row.
    index = np.searchsorted(keys, levels * (len(rows.tid) + 1) + before) - 1
    candidate = entries[np.maximum(index, 0)]
    hit = (index >= 0) & (depths[np.maximum(index, 0)] == levels) & (rows.tid[candidate] == tids) & (levels >= 0)
    found[hit] = candidate[hit]
    return found


def stack_levels(np, rows: BulkRows):
    """Per row, how many calls its task has open before and after it (the stack is depths 0..n-1: bulk_rows checked).

    An entry at depth d leaves d + 1 open; an exit at depth d leaves d, or
    what was open when that is more (an exit whose call is not open is an
    orphan and changes nothing): a running minimum since the task's last entry."""
    first = np.ones(len(rows.tid), dtype=bool)
    first[1:] = rows.tid[1:] != rows.tid[:-1]
    value = np.where(rows.entry, rows.depth + 1, np.where(first, 0, rows.depth))
    segment = np.cumsum(rows.entry | first)
    big = int(value.max(initial=0)) + 2
    after = np.minimum.accumulate(value - segment * big) + segment * big
    before = np.zeros(len(rows.tid), dtype=np.int64)
    before[1:] = np.where(first[1:], 0, after[:-1])
    return before, after


def bulk_regular_end(np, rows: BulkRows) -> int:
    """The first event the model's common case does not cover (its index in the stretch), else a huge number.

    Also marks the exits that close their call (rows.closes) and the orphan
    ones (rows.orphan: its call is not open, or another function is open at
    its depth, which it closes): the model counts those and names a top-level
    node after them, nothing more, while no calls wait for a caller."""
    before, rows.after = stack_levels(np, rows)
    irregular = rows.entry & (rows.depth > before)  # no caller open one level up: a detached call
    exits = np.flatnonzero(~rows.entry)
    frame = latest_entries(np, rows, exits, rows.tid[exits], rows.depth[exits])
    rows.frame_row = np.full(len(rows.tid), -1, dtype=np.int64)
    rows.frame_row[exits] = frame
    matched = (rows.depth[exits] < before[exits]) & (frame >= 0)
    matched &= rows.sid[np.maximum(frame, 0)] == rows.sid[exits]
    irregular[exits[matched & np.isnan(rows.dur[exits])]] = True  # no duration: the exit format has no times
    rows.closes = np.zeros(len(rows.tid), dtype=bool)
    rows.closes[exits[matched]] = True
    rows.orphan = np.zeros(len(rows.tid), dtype=bool)
    rows.orphan[exits[~matched]] = True
    bad = rows.pos[irregular & (rows.pos >= 0)]
    return int(bad.min()) if len(bad) else np.iinfo(np.int64).max


def apply_bulk(parser: TraceParser, decoder: EventDecoder, rows: BulkRows, kept, keys: list, entry_names, ctx, tid, stamps, places) -> None:
    """The kept rows' calls, times and the tasks' open calls into the model, as one graph_event() per event would.

    `stamps`: the stretch's event times; `places`: the fed events' places in it (ctx and tid are theirs)."""
    np = decoder.np
    tree = parser.tree
    real = kept & (rows.pos >= 0)
    node = bulk_nodes(np, parser, decoder, rows, real)
    entries = np.flatnonzero(real & rows.entry)
    counted, counts = np.unique(node[entries], return_counts=True)
    calls = tree.calls
    for at, count in zip(counted.tolist(), counts.tolist()):
        calls[at] += count
    bulk_call_sites(np, tree, decoder, node[entries], rows.site[entries])
    bulk_modules(np, parser, decoder, entry_names)
    child_us = bulk_times(np, tree, rows, real, node)
    bulk_stacks(np, parser, decoder, rows, kept, node, child_us, keys, ctx, tid, stamps, places)
    parser.entries += len(entries)
    parser.exits += int(real.sum()) - len(entries)
    parser.stats.orphan_exits += int((real & rows.orphan).sum())


def bulk_call_sites(np, tree: CallTree, decoder: EventDecoder, nodes, sites) -> None:
    """The entries' call sites counted on their nodes, per distinct (node, site) (numbers < 2**SITE_CODE_BITS)."""
    with_site = sites > 0
    if not with_site.any():
        return
    pairs, counts = np.unique((nodes[with_site] << SITE_CODE_BITS) | sites[with_site], return_counts=True)
    names = decoder.sites
    for pair, count in zip(pairs.tolist(), counts.tolist()):
        tree.note_call_site(pair >> SITE_CODE_BITS, names[pair & ((1 << SITE_CODE_BITS) - 1)], count)


def bulk_nodes(np, parser: TraceParser, decoder: EventDecoder, rows: BulkRows, real):
    """Per row its call-tree node: pseudo-entries their frame's, entries the child of their caller's node, made in event order."""
    tree = parser.tree
    node = np.full(len(rows.tid), -1, dtype=np.int64)
    for row, frame in rows.frame.items():
        node[row] = frame[FRAME_NODE]
    entries = np.flatnonzero(real & (rows.entry | rows.orphan))  # an orphan exit names a top-level node (rows: by task, then time)
    depth = np.where(rows.entry[entries], rows.depth[entries], 0)
    caller = np.full(len(entries), -1, dtype=np.int64)
    inner = np.flatnonzero(depth > 0)
    caller[inner] = entry_callers(np, rows)[entries[inner]]
    existing = len(tree.function)
    sid_names = list(decoder.sid_of)
    known_pairs, known_nodes = decoder.__dict__.get("pairs") or (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    made: list[tuple[int, int, str]] = []  # (first event, caller node or provisional id, name) of nodes to make
    looked_up: list[tuple[int, int]] = []  # (pair, node) found in the tree's dicts
    by_depth = stable_order(np, depth)
    levels, level_starts = np.unique(depth[by_depth], return_index=True)
    level_rows, level_sids, level_callers = entries[by_depth], rows.sid[entries[by_depth]], caller[by_depth]
    for level, low, high in zip(levels.tolist(), level_starts.tolist(), [*level_starts[1:].tolist(), len(by_depth)]):
        at = level_rows[low:high]
        parents = np.zeros(len(at), dtype=np.int64) if level == 0 else node[level_callers[low:high]]
        keys = parents * PAIR_SPAN + level_sids[low:high]
        # Known pairs straight from the table; only the rest (few after the first windows) are made distinct.
        index = np.minimum(np.searchsorted(known_pairs, keys), max(len(known_pairs) - 1, 0))
        found_ids = known_nodes[index] if len(known_pairs) else np.zeros(len(keys), dtype=np.int64)
        unknown = np.flatnonzero(known_pairs[index] != keys) if len(known_pairs) else np.arange(len(keys))
        node[at] = found_ids
        if not len(unknown):
            continue
        in_time = unknown[np.argsort(rows.pos[at[unknown]], kind="stable")]  # so that each pair's first is its first event
        at = at[in_time]
        pairs, first, inverse = np.unique(keys[in_time], return_index=True, return_inverse=True)
        ids = np.zeros(len(pairs), dtype=np.int64)
        for miss, (pair, where) in enumerate(zip(pairs.tolist(), first.tolist())):
            parent, name = divmod(pair, PAIR_SPAN)
            name = sid_names[name]
            kids = tree.children[parent] if parent < existing else None
            found = kids.get(name) if kids is not None else None
            if found is None:
                found = existing + len(made)
                made.append((int(rows.pos[at[where]]), parent, name))
            else:
                looked_up.append((pair, found))
            ids[miss] = found
        node[at] = ids[inverse.ravel()]
    if made:
        real_ids = [0] * len(made)
        for index in sorted(range(len(made)), key=lambda index: made[index][0]):
            _first, parent, name = made[index]
            parent = parent if parent < existing else real_ids[parent - existing]
            real_ids[index] = tree.child(parent, name)
            looked_up.append((parent * PAIR_SPAN + decoder.sid_of[name], real_ids[index]))
        mapping = np.asarray(real_ids, dtype=np.int64)
        fresh = node >= existing
        node[fresh] = mapping[node[fresh] - existing]
    if looked_up:
        # Remembered for later stretches: a node under an attached caller is never freed (only detached subtrees are).
        pairs = np.concatenate((known_pairs, np.asarray([pair for pair, _ in looked_up], dtype=np.int64)))
        nodes = np.concatenate((known_nodes, np.asarray([found for _, found in looked_up], dtype=np.int64)))
        order = np.argsort(pairs, kind="stable")
        decoder.pairs = (pairs[order], nodes[order])
    return node


def bulk_modules(np, parser: TraceParser, decoder: EventDecoder, codes) -> None:
    """Each entry's module, as the last entry of a function names it."""
    if not len(codes):
        return
    last = np.full(len(decoder.names), -1, dtype=np.int64)
    np.maximum.at(last, codes, np.arange(len(codes)))  # each code's last entry, without a sort of the entries
    unique = np.flatnonzero(last >= 0)
    modules = parser.graph.modules
    for code in unique[np.argsort(last[unique], kind="stable")].tolist():
        name, module = decoder.names[code]
        if module:
            modules[name] = module


def summed_in_order(np, values: list, at, weights):
    """values[i] += each weight of i in turn (np.bincount adds in input order: the same floats as a loop)."""
    if not len(at):
        return
    unique = np.flatnonzero(np.bincount(at, minlength=len(values)))  # the nodes touched, without a sort
    local = np.zeros(len(values), dtype=np.int64)
    local[unique] = np.arange(len(unique))
    start = np.asarray([values[index] for index in unique.tolist()], dtype=np.float64)
    sums = np.bincount(np.concatenate((np.arange(len(unique)), local[at])), np.concatenate((start, weights)), minlength=len(unique))
    for index, value in zip(unique.tolist(), sums.tolist()):
        values[index] = value


def bulk_times(np, tree: CallTree, rows: BulkRows, real, node):
    """Exits' durations into their calls' total and self times; returns per row the time spent in its children."""
    exits = np.flatnonzero(real & rows.closes)
    exits = exits[np.argsort(rows.pos[exits], kind="stable")]
    depth, spent = rows.depth[exits], rows.dur[exits]
    closed = rows.frame_row[exits]
    inner = np.flatnonzero(depth > 0)
    # The closing exit's caller is its call's: an entry one level up in between would have popped the call.
    caller = entry_callers(np, rows)[closed[inner]]
    pseudo = np.asarray(list(rows.frame), dtype=np.int64)
    start = np.asarray([frame[FRAME_CHILD_US] for frame in rows.frame.values()], dtype=np.float64)
    child_us = np.bincount(np.concatenate((pseudo, caller)), np.concatenate((start, spent[inner])), minlength=len(rows.tid))
    summed_in_order(np, tree.total_us, node[closed], spent)
    summed_in_order(np, tree.self_us, node[closed], spent - child_us[closed])
    return child_us


def bulk_stacks(np, parser: TraceParser, decoder: EventDecoder, rows: BulkRows, kept, node, child_us, keys: list, ctx, tid, stamps, places) -> None:
    """Each fed task's open calls after the stretch (a new one with its entry's time), the CPU it last ran on and its last event's time."""
    if not len(tid):
        return
    last = np.full(len(keys), -1, dtype=np.int64)
    np.maximum.at(last, tid, np.arange(len(tid)))
    rows_kept = np.flatnonzero(kept)
    end_row = np.full(len(keys), -1, dtype=np.int64)
    np.maximum.at(end_row, rows.tid[rows_kept], rows_kept)
    sid_names = list(decoder.sid_of)
    fed = np.flatnonzero(last >= 0)
    rows_at = end_row[fed]
    open_calls = rows.after[rows_at]
    query_rows = np.repeat(rows_at + 1, open_calls)
    query_levels = np.arange(int(open_calls.sum())) - np.repeat(np.cumsum(open_calls) - open_calls, open_calls)
    found = latest_entries(np, rows, query_rows, np.repeat(rows.tid[rows_at], open_calls), query_levels).tolist()
    child = child_us[found].tolist()
    depth_of_found = [int(open_count) for open_count in open_calls.tolist()]
    done = 0
    for task, open_count in zip(fed.tolist(), depth_of_found):
        key = keys[task]
        state = parser.tasks.get(key)
        if state is None:
            state = parser.tasks[key] = TaskState()
        state.cpu = trace_dat_context(int(ctx[last[task]]))[0]
        parser.last_stamp[key] = int(stamps[places[last[task]]])
        stack = []
        for level in range(open_count):
            row = found[done + level]
            frame = rows.frame.get(row)
            if frame is None:
                frame = [sid_names[int(rows.sid[row])], level, 0.0, "", int(node[row]), int(stamps[rows.pos[row]])]
            frame[FRAME_CHILD_US] = child[done + level]
            stack.append(frame)
        done += open_count
        state.stack = stack


def read_trace_dat(parser: TraceParser, path: str, progress: Progress | None = None) -> None:
    """Decode a trace.dat into the parser's model: calls, edges, times, lost events, kernel counters."""
    stats = parser.stats
    with mapped_trace_dat(path) as data:
        dat = TraceDat(path, data)
        decoder = EventDecoder(dat)
        if not decoder.by_kind:
            raise UserError(f"{path}: the trace.dat describes no function_graph or function events (recorded with another tracer?)")
        lost_before = dict(stats.lost_by_cpu)
        reading = DatReading(parser, dat, decoder, progress)
        plan = window_plan(dat, parser)
        if plan is None:
            reading.feed(reading.merge()[0].windows())
        else:
            read_in_windows(reading, plan)
    kinds, fed, damage = reading.kinds, reading.fed, reading.damage
    used = kinds[EV_ENTRY] + kinds[EV_EXIT] + kinds[EV_FUNCTION]
    stats.events += kinds[EV_OTHER]  # the model counts what it was fed; the rest are ring-buffer events too
    parser.line_no = fed
    if kinds[EV_ENTRY] + kinds[EV_EXIT]:
        stats.formats.add("function_graph")
        if decoder.has_retval:
            stats.formats.add(RETURN_VALUES_FORMAT)
    if kinds[EV_FUNCTION]:
        stats.formats.add("function")
    note_trace_dat_stats(dat, decoder, stats, lost_before, damage)
    if not used and not (parser.selection and parser.selection.seen):
        what = ", ".join(f"{decoder.event_names.get(event, event)} {count:,}" for event, count in decoder.other_counts.most_common(5))
        raise UserError(f"{path}: the trace.dat holds no function_graph or function events ({what or 'no events at all'})")


def selected_events(batch: EventBatch, selection: TaskSelection, np, comms: dict[str, str]) -> EventBatch:
    """The events of the selected pids, task names (from the file's saved names) and CPUs; lost-event notices of every CPU stay."""
    lost = batch.kind == EV_LOST
    unique, inverse = np.unique(batch.ctx, return_inverse=True)
    inverse = inverse.ravel()
    asked = np.unique(inverse[~lost])  # a lost-event notice's context is its CPU alone, no task: not asked about, not listed as the idle task
    keep = np.zeros(len(unique), dtype=bool)
    keep[asked] = [selection.keeps(IntervalReader.pid_task(str(ctx >> 16), str(ctx & 0xFFFF)), trace_dat_comm(comms, ctx >> 16), str(ctx & 0xFFFF))
                   for ctx in unique[asked].tolist()]
    return batch.part(keep[inverse] | lost)


def trace_dat_comm(comms: dict[str, str], pid: int) -> str:
    """A task's name as the kernel saved it ("" when it did not: --comm then leaves the task out)."""
    return "<idle>" if pid == 0 else comms.get(str(pid), "")


def note_trace_dat_stats(dat: TraceDat, decoder: EventDecoder, stats: TraceStats, lost_before: dict[str, int], damage: list[str]) -> None:
    """Kernel counters, what the file says about itself, what was cut, the events between the calls by name."""
    stats.formats.add("trace.dat")
    for key, value in dat.metadata:
        stats.metadata.setdefault(key, value)
    stats.metadata.setdefault("trace.dat", f"version {dat.version}" + (f", {dat.compression}" if dat.compression not in ("", "none") else ""))
    for key in ("uname", "traceclock", "version"):
        if key in dat.options:
            stats.metadata.setdefault(f"trace.dat-{key}", dat.options[key])
    for cpu, text in dat.cpu_stats.items():
        counters = {}
        for line in text.split("\n"):
            key, _, value = line.partition(":")
            if key.strip() in KERNEL_STATS_KEYS and value.strip().isdigit():
                counters[KERNEL_STATS_KEYS[key.strip()]] = int(value)
        previous = stats.kernel_stats.get(cpu, {})
        stats.kernel_stats[cpu] = {key: previous.get(key, 0) + value for key, value in counters.items()}
        from_pages = stats.lost_by_cpu.get(cpu, 0) - lost_before.get(cpu, 0)
        from_kernel = counters.get("overrun", 0) + counters.get("dropped-events", 0)
        if from_pages != from_kernel:
            say(
                f"{dat.path}: CPU{cpu} lost {from_kernel:,} events by the kernel's counters, {from_pages:,} by the pages' missed-events"
                " counts (pages overwritten whole carry none); the kernel's count is used"
            )
    for problem in damage:
        warn(f"{dat.path} is damaged or truncated: {problem}; read what came before")
    if dat.other_buffers:
        warn(f"{dat.path}: read the top trace instance only, not {', '.join(repr(name) for name in dat.other_buffers)}")
    for event_id, count in decoder.other_counts.items():  # counted as the model was fed (np.unique of the ids), never read field by field
        stats.note_trace_event(decoder.event_names.get(event_id) or f"unknown id {event_id}", count)


# ============================================================================
# Calls over time: per-call intervals for the timeline, latency and task views
# ============================================================================
# The call tree aggregates; a timeline and a latency distribution need every
# single call with its start, duration, task and CPU. This second, opt-in pass
# over the same text reuses the parser's line classification (its cached
# context and body lookups) and keeps only the open calls of each task.


@dataclass
class CallInterval:
    """One completed call (function_graph) or one function tracer line (no duration)."""

    name: str
    task: str  # the pid, "0/CPU" for a CPU's idle task, "cpuN" when the trace names no task
    comm: str
    cpu: str | None
    start_us: float | None  # absolute trace time, where the trace has timestamps
    duration_us: float | None
    depth: int
    caller: str | None = None  # function tracer: the function it was called from
    exited: bool = True  # False: a function_graph entry whose exit is not in the trace (lost, or after its end)
    entry_no: int = -1  # function_graph: its entry's number among the trace's entries (-1: the entry was not seen)
    caller_no: int = -1  # function_graph: the entry number of the open call one level up when it was entered


@dataclass
class TraceEvent:
    """A tracepoint event between the calls (sched_switch, sched_waking, ...), read from its text or decoded by its stored format."""

    name: str  # the event's name without its system: sched_switch
    task: str  # the task it ran in, as CallInterval.task ("0/CPU" for a CPU's idle task)
    comm: str
    cpu: str | None
    stamp_us: float | None
    fields: dict[str, str]  # as trace-cmd report prints them: {"prev_pid": "120", "prev_state": "S", "next_pid": "0", ...}
    stack: list[CallInterval] = field(default_factory=list)  # the task's open calls at the event, outermost first
    irq: str = ""  # "", "softirq", "hardirq" or "nmi": the context the event ran in, where the trace says


EVENT_FIELD = re.compile(r"(?:^|\s)(\w+)=")


# trace-cmd report prints these events with its sched_switch plugin (libtraceevent's plugin_sched_switch.c), not by their
# print fmt: `prev_comm:pid [prio] state ==> next_comm:pid [prio]` and `comm:pid [prio] CPU:001`. Its state letters are
# an old table ("SDTtZXxW" by bit): a preempted task shows as R (the kernel's R+), an idle kernel thread as W (the kernel's I).
TRACE_CMD_SCHED_PLUGIN = {
    "sched_switch": re.compile(
        r"^(?P<prev_comm>.{0,16}?):(?P<prev_pid>-?\d+) (?:\[(?P<prev_prio>-?\d+)\] )?(?P<prev_state>[A-Za-z|]*) ==> "
        r"(?P<next_comm>.{0,16}?):(?P<next_pid>-?\d+)(?: \[(?P<next_prio>-?\d+)\])?$"
    ),
    **dict.fromkeys(("sched_wakeup", "sched_wakeup_new"), re.compile(
        r"^(?P<comm>.{0,16}?):(?P<pid>-?\d+)(?: \[(?P<prio>-?\d+)\])?(?: success=(?P<success>\d+))?(?: CPU:(?P<target_cpu>\d+))?$"
    )),
}
LATENCY_IRQ = {"s": "softirq", "h": "hardirq", "H": "hardirq", "z": "nmi", "Z": "nmi", "n": "nmi"}


def flags_irq(flags: str | None) -> str:
    """The context of a line by its latency flags' third column (trace_print_lat_fmt): softirq, hardirq, nmi or ""."""
    return LATENCY_IRQ.get(irq_flag(flags), "")


def event_fields(text: str) -> dict[str, str]:
    """`prev_comm=kworker/0:1 H prev_pid=12 ... ==> next_comm=...` -> {field: value}; a value runs to the next ` name=`."""
    marks = list(EVENT_FIELD.finditer(text))
    fields = {}
    for mark, after in zip(marks, [*marks[1:], None]):
        value = text[mark.end() : after.start() if after else len(text)].strip()
        fields[mark.group(1)] = value[:-3].rstrip() if value.endswith("==>") else value
    return fields


@dataclass
class TaskSelection:
    """--pid, --comm, --cpu: which tasks and CPUs to look at."""

    pids: set[str] = field(default_factory=set)
    comms: list[str] = field(default_factory=list)
    cpus: set[str] = field(default_factory=set)
    options: str = field(default="", compare=False)  # as given: --pid 178 --cpu 0-1
    # every (task, name, CPU) asked about: what the trace has, for the message of a selection that keeps nothing
    seen: dict[tuple[str, str, str | None], None] = field(default_factory=dict, compare=False, repr=False)

    def __bool__(self) -> bool:
        return bool(self.pids or self.comms or self.cpus)

    def keeps(self, task: str, comm: str, cpu: str | None) -> bool:
        self.seen[task, comm, cpu] = None
        if self.pids and task.split("/")[0] not in self.pids:
            return False
        if self.cpus and cpu not in self.cpus:
            return False
        # funcgraph-proc cuts names to 7 characters: "kworker" stands for "kworker/0:1"
        return not self.comms or any(fnmatch.fnmatchcase(comm, pattern) or (len(comm) >= 7 and pattern.startswith(comm)) for pattern in self.comms)


class IntervalReader:
    """Turns trace lines into CallIntervals, per task, with timestamps where the trace has them."""

    def __init__(self, selection: TaskSelection | None = None, unexited: bool = False, events: bool = False) -> None:
        self.lines = TraceParser(CallGraph())  # only for its cached line classification
        self.selection = selection or TaskSelection()
        self.unexited = unexited  # also yield the entries whose exit never came (exited=False)
        self.events = events  # also yield the tracepoint events between the calls (TraceEvent), whatever the selection
        self.open_calls: dict[str, dict[int, CallInterval]] = {}  # per task, by depth
        self.displaced: dict[str, dict[int, CallInterval]] = {}  # open calls an interrupt at their depth came after
        self.entries = 0
        self.cpu_task: dict[str | None, tuple[str, str]] = {}
        self.task_cpu: dict[str, str | None] = {}
        self.timestamps = False
        self.kind = ""

    def read(self, paths: list[str]) -> Iterator[CallInterval]:
        for path in paths:
            progress = Progress(f"reading calls of {path}", file_size(path))
            if is_trace_dat(path):
                yield from self.trace_dat(path)
            else:
                for batch in read_text_lines(path, progress):
                    for line in batch:
                        yield from self.line(line.rstrip("\r"))
            progress.close()
            for task in list(self.open_calls):  # still open at the end of the input
                yield from self.unexited_calls([*self.open_calls.pop(task).values(), *self.displaced.pop(task, {}).values()])

    def line(self, line: str) -> Iterator[CallInterval]:
        sep = line.rfind("|  ")
        if sep >= 14:
            yield from self.graph_line(line, sep)
            return
        match = function_tracer_line(line) if sep < 0 else None
        if match:
            call = self.lines.classify_function_body(match.group("body")) or parenthesized_call(match.group("body"))
            if not call and self.events:
                yield from self.line_event(match)
                return
            if call:
                self.kind = self.kind or "function"
                self.timestamps = True
                interval = CallInterval(call[0], self.pid_task(match.group("pid"), match.group("cpu")), match.group("comm").strip(),
                                        normalize_cpu(match.group("cpu")), trace_time_us(match.group("ts")), None, 0, call[1])
                if self.selection.keeps(interval.task, interval.comm, interval.cpu):
                    yield interval
            return
        switch = SWITCH_LINE.match(line)
        if switch and "|" not in line:
            self.cpu_task[switch.group("cpu")] = (self.pid_task(switch.group("next_pid"), switch.group("cpu")), switch.group("next").strip())
            return
        lost = LOST_LINE.match(line)
        if lost:
            yield from self.lost_on(lost.group(1))

    def line_event(self, match: re.Match[str]) -> Iterator[TraceEvent]:
        """`sched_waking: comm=... pid=...` in function tracer text or trace-cmd report (its plugin's sched formats too)."""
        event = TRACE_EVENT_BODY.match(match.group("body"))
        if event is None:
            return
        name, text = event.group("name"), event.group("fields") or ""
        if name in ("funcgraph_entry", "funcgraph_exit"):
            return  # trace-cmd report -N's calls: not events
        plugin = TRACE_CMD_SCHED_PLUGIN.get(name)
        printed = plugin.match(text) if plugin else None
        fields = {key: value for key, value in printed.groupdict().items() if value is not None} if printed else event_fields(text)
        cpu = normalize_cpu(match.group("cpu"))
        task = self.pid_task(match.group("pid"), cpu)
        yield TraceEvent(name, task, match.group("comm").strip(), cpu, trace_time_us(match.group("ts")), fields, self.open_stack(task), flags_irq(match.group("flags")))

    def lost_on(self, cpu: str) -> Iterator[CallInterval]:
        """Events of a CPU were lost: the open calls of its tasks will not see their exits."""
        for task, task_cpu in self.task_cpu.items():
            if task_cpu == cpu:
                yield from self.unexited_calls([*self.open_calls.pop(task, {}).values(), *self.displaced.pop(task, {}).values()])

    def unexited_calls(self, calls: Iterable[CallInterval]) -> Iterator[CallInterval]:
        if self.unexited:
            yield from (call for call in calls if self.selection.keeps(call.task, call.comm, call.cpu))

    def open_call(self, call: CallInterval, stays_open: bool) -> Iterator[CallInterval]:
        """An entry (or a leaf) on its task: the open calls at its depth and deeper are displaced.

        An interrupt runs at the depth of the call it interrupted, whose exit then
        comes after the handler's: a displaced call waits for an exit of its name
        at its depth until its caller's exit (or a new displacement) shows it will not come.
        """
        frames = self.open_calls.setdefault(call.task, {})
        displaced = self.displaced.setdefault(call.task, {})
        for depth in [depth for depth in frames if depth >= call.depth]:
            if depth in displaced:
                yield from self.unexited_calls([displaced[depth]])
            displaced[depth] = frames.pop(depth)
        caller = frames.get(call.depth - 1)
        call.caller_no = caller.entry_no if caller is not None else -1
        call.entry_no = self.entries
        self.entries += 1
        if stays_open:
            frames[call.depth] = call

    def close_call(self, task: str, depth: int, name: str | None) -> tuple[CallInterval | None, list[CallInterval]]:
        """An exit: the call it closes (the open one at its depth, or the displaced one of its name), and the calls that can no longer exit."""
        frames = self.open_calls.setdefault(task, {})
        displaced = self.displaced.setdefault(task, {})
        gone = [frames.pop(d) for d in [d for d in frames if d > depth]] + [displaced.pop(d) for d in [d for d in displaced if d > depth]]
        opened = frames.pop(depth, None)
        if opened is None and name is not None and depth in displaced and displaced[depth].name == name:
            opened = displaced.pop(depth)
        return opened, gone

    def trace_dat(self, path: str) -> Iterator[CallInterval]:
        """The calls of a trace.dat: its events carry a timestamp (ns), the pid and, at the exit, the duration."""
        with mapped_trace_dat(path) as data:
            dat = TraceDat(path, data)
            decoder = EventDecoder(dat)
            decoder.details = {} if self.events else None
            streams = [cpu_event_batches(dat, decoder, cpu, []) for cpu in dat.cpus]
            self.timestamps = True
            for window in merge_by_time(streams):
                columns = (window.key.tolist(), window.kind.tolist(), window.code.tolist(), window.ctx.tolist(), window.duration.tolist())
                for stamp, kind, code, ctx, duration in zip(*columns):
                    cpu = str(ctx & 0xFFFF)
                    task, comm = self.pid_task(str(ctx >> 16), cpu), trace_dat_comm(dat.comms, ctx >> 16)
                    if kind == EV_FUNCTION:
                        self.kind = self.kind or "function"
                        name, caller, _ = trace_dat_call(decoder.names, code)
                        interval = CallInterval(name, task, comm, cpu, stamp / 1000, None, 0, caller)
                    elif kind == EV_ENTRY:
                        self.task_cpu[task] = cpu
                        yield from self.open_call(CallInterval(decoder.names[(code >> 16) & 0xFFFFFFFF][0], task, comm, cpu, stamp / 1000, None, code & 0xFFFF, exited=False), True)
                        continue
                    elif kind == EV_EXIT and duration == duration:  # NaN: the format has no calltime/rettime
                        self.kind = "function_graph"
                        name, depth = decoder.names[(code >> 16) & 0xFFFFFFFF][0], code & 0xFFFF  # without an errno's bits
                        opened, gone = self.close_call(task, depth, name)
                        if opened is not None and opened.name != name:  # the open call's exit was lost, and this one's entry
                            gone.append(opened)
                            opened = None
                        yield from self.unexited_calls(gone)
                        start = opened.start_us if opened is not None else stamp / 1000 - duration  # the entry's time, as trace-cmd shows it
                        interval = CallInterval(name, task, comm, cpu, start, duration, depth, **numbers_of(opened))
                    elif kind == EV_LOST:
                        yield from self.lost_on(cpu)
                        continue
                    elif kind == EV_OTHER and self.events and code >= 0:
                        name, fields, irq = decoder.details.pop(code)
                        yield TraceEvent(name, task, comm, cpu, stamp / 1000, fields, self.open_stack(task), irq)
                        continue
                    else:
                        continue
                    if self.selection.keeps(interval.task, interval.comm, interval.cpu):
                        yield interval

    @staticmethod
    def pid_task(pid: str, cpu: str | None) -> str:
        return f"0/{normalize_cpu(cpu)}" if pid == "0" else pid

    def graph_line(self, line: str, sep: int) -> Iterator[CallInterval]:
        parsed = self.lines.classify_graph_body(line[sep + 3 :])
        if parsed is not None:
            parsed = plain_call(parsed)
        if parsed is not None and parsed[0] == COMMENT and self.events:
            yield from self.graph_comment_event(line, sep)
            return
        if parsed is None or parsed[0] == COMMENT:
            return
        context = self.graph_columns(line[: sep - 14])
        duration = self.lines.duration_field(line[sep - 14 : sep])
        if context is None:
            context, duration = self.trace_cmd_columns(line) or (None, None)
        if context is None or (duration is not None and duration < 0.0):
            return  # not a call line, or its duration is not a time (BAD_DURATION, NOT_DURATION)
        task, comm, cpu, stamp = context
        self.timestamps = self.timestamps or stamp is not None
        self.kind = "function_graph"
        self.task_cpu[task] = cpu
        kind, depth, name, _ = parsed
        if kind == EXIT:
            opened, gone = self.close_call(task, depth, name)
            yield from self.unexited_calls(gone)
            if opened is None and name is None:
                return  # an exit whose entry was not seen and that does not name its function
            if opened is not None and name is not None and opened.name != name:
                yield from self.unexited_calls([opened])
                return
            name = opened.name if opened else name
            start = opened.start_us if opened and opened.start_us is not None else (stamp - duration if stamp is not None and duration is not None else None)
            numbers = numbers_of(opened)
        else:
            entry = CallInterval(name, task, comm, cpu, stamp, None, depth, exited=False)
            yield from self.open_call(entry, kind == ENTRY)
            if kind == ENTRY:
                return
            start, numbers = stamp, numbers_of(entry)
        if duration is None or not self.selection.keeps(task, comm, cpu):
            return
        yield CallInterval(name, task, comm, cpu, start, duration, depth, **numbers)

    def graph_comment_event(self, line: str, sep: int) -> Iterator[TraceEvent]:
        """`/* sched_switch: prev_comm=... */`: the kernel prints an event between function_graph calls as a comment."""
        match = GRAPH_EVENT_COMMENT.match(line, sep + 3)
        context = self.graph_columns(line[: sep - 14]) if match else None
        if match is None or context is None:
            return
        task, comm, cpu, stamp = context
        flags = GRAPH_CONTEXT.match(line[line.find(" |  ") + 4 if stamp is not None else 0 : sep - 14])
        irq = flags_irq(flags.group("flags")) if flags else ""
        yield TraceEvent(match.group("name"), task, comm, cpu, stamp, event_fields(match.group("fields")), self.open_stack(task), irq)

    def open_stack(self, task: str) -> list[CallInterval]:
        """The task's open calls, outermost first."""
        return [call for _, call in sorted(self.open_calls.get(task, {}).items())]

    def trace_cmd_columns(self, line: str) -> tuple[tuple[str, str, str | None, float | None], float | None] | None:
        """trace-cmd report's function_graph line `comm-pid [cpu] ts: funcgraph_entry: 1.2 us | f();`: ((task, comm, CPU, time), duration)."""
        match = function_tracer_line(line)
        event = TRACE_CMD_GRAPH.match(match.group("body")) if match else None
        fields = TRACE_CMD_GRAPH_FIELDS.match(event.group("rest")) if event else None
        if match is None or fields is None:
            return None
        cpu = normalize_cpu(match.group("cpu"))
        context = (self.pid_task(match.group("pid"), cpu), match.group("comm").strip(), cpu, trace_time_us(match.group("ts")))
        return context, float(fields.group("dur")) if fields.group("dur") else None

    def graph_columns(self, columns: str) -> tuple[str, str, str | None, float | None] | None:
        """(task, comm, CPU, timestamp in us or None) from the columns before a function_graph line's duration."""
        stamp = None
        stamp_at = columns.find(" |  ")
        if stamp_at > 0:
            stamp = column_time_us(columns[:stamp_at])
            if stamp is not None:
                columns = columns[stamp_at + 4 :]
        match = GRAPH_CONTEXT.match(columns)
        if match is None:
            return None
        cpu, pid = normalize_cpu(match.group("cpu")), match.group("pid")
        if pid is not None:
            return self.pid_task(pid, cpu), (match.group("comm") or "").strip(), cpu, stamp
        task, comm = self.cpu_task.get(match.group("cpu"), (f"cpu{cpu}", ""))
        return task, comm, cpu, stamp

    def owner(self, line: str) -> tuple[str, str, str | None] | None:
        """(task, comm, CPU) of an event line; None for every other line (which tracks context switches)."""
        sep = line.rfind("|  ")
        if sep >= 14:
            if line.endswith("*/") and GRAPH_EVENT_COMMENT.match(line, sep + 3):
                return None  # an event: a wakeup of a selected task may come from any task
            context = self.graph_columns(line[: sep - 14])
            if context is None:
                context = (self.trace_cmd_columns(line) or (None,))[0]
            return context[:3] if context else None
        match = function_tracer_line(line)
        if match:
            if TRACE_EVENT_BODY.match(match.group("body")) and not self.lines.classify_function_body(match.group("body")):
                return None  # an event (trace-cmd's `function:` lines are calls)
            return self.pid_task(match.group("pid"), match.group("cpu")), match.group("comm").strip(), normalize_cpu(match.group("cpu"))
        switch = SWITCH_LINE.match(line)
        if switch and "|" not in line:
            self.cpu_task[switch.group("cpu")] = (self.pid_task(switch.group("next_pid"), switch.group("cpu")), switch.group("next").strip())
        return None

    def selected(self, lines: list[str]) -> list[str]:
        """The lines of the selected tasks and CPUs, plus every line that is not an event (headers, losses, switches)."""
        keep = []
        for line in lines:
            who = self.owner(line)
            if who is None or self.selection.keeps(*who):
                keep.append(line)
        return keep


EMPTY_SELECTION_TASKS_SHOWN = 20


def empty_selection_message(selection: TaskSelection, seen: Iterable[tuple[str, str, str | None]], paths: list[str]) -> str:
    """A selection that kept no call, with what the inputs do have: their CPUs and their tasks (pid and name)."""
    seen = list(seen)
    cpus = sorted({cpu for _, _, cpu in seen if cpu is not None}, key=_cpu_sort_key)
    names: dict[str, set[str]] = {}
    for task, comm, _ in seen:
        if not task.startswith("cpu"):  # "cpuN": a line without a task column before any context switch named one
            names.setdefault(task.split("/")[0], set()).add(comm)
    tasks = [f"{pid} {'/'.join(sorted(name for name in names[pid] if name)) or '?'}" for pid in sorted(names, key=int)]
    shown = ", ".join(tasks[:EMPTY_SELECTION_TASKS_SHOWN]) + (f", and {len(tasks) - EMPTY_SELECTION_TASKS_SHOWN:,} more" if len(tasks) > EMPTY_SELECTION_TASKS_SHOWN else "")
    has = f"{'CPU' if len(cpus) == 1 else 'CPUs'} {', '.join(cpus) or 'unknown'}" + (f"; {len(tasks):,} tasks (pid name): {shown}" if tasks else "; no task ids (record with -O funcgraph-proc to select by task)")
    return f"{selection.options} selects no call in {' and '.join(paths)}, which {'has' if len(paths) == 1 else 'have'} {has}"


@dataclass
class WindowCalls:
    """The calling-context tree of the calls that start in a --time-window, and what was cut to make it."""

    tree: CallTree = field(default_factory=CallTree)
    calls: int = 0
    unexited: int = 0  # entries whose exit is not in the trace: counted, without time
    entry_unseen: int = 0  # exits whose entry is not in the trace (lost): not counted, as without a window
    caller_outside: int = 0  # calls below depth 0 whose caller did not start in the window (or is not in the trace): top-level paths


def calls_in_window(intervals: Iterable[CallInterval], window: tuple[float, float] | None) -> Iterable[CallInterval]:
    """The calls that start in --time-window (all of them without one)."""
    if window is None:
        return intervals
    return (call for call in intervals if call.start_us is not None and window[0] <= call.start_us <= window[1])


def window_calls(intervals: Iterable[CallInterval], window: tuple[float, float]) -> WindowCalls:
    """The calls that start in the window, nested as the trace nests them: under their caller if it started in the window too.

    A call that runs past the window's end counts whole; its callees that start
    after the end are left out and their time stays in its self time.
    """
    calls = sorted(calls_in_window(intervals, window), key=lambda call: call.entry_no)  # callers before their callees
    result = WindowCalls()
    tree = result.tree
    placed: dict[int, tuple[int, bool]] = {}  # entry number -> (call-tree node, has a duration)
    for call in calls:
        if call.duration_us is None and call.exited:  # a function tracer line: caller -> function
            parent = tree.child(ROOT_NODE, call.caller) if call.caller else ROOT_NODE
            tree.calls[tree.child(parent, call.name)] += 1
            result.calls += 1
            continue
        if call.entry_no < 0:
            result.entry_unseen += 1
            continue
        result.calls += 1
        caller = placed.get(call.caller_no)
        if caller is None and call.depth > 0:
            result.caller_outside += 1
        node = tree.child(caller[0] if caller else ROOT_NODE, call.name)
        tree.calls[node] += 1
        duration = call.duration_us
        if duration is None:
            result.unexited += 1
        else:
            tree.total_us[node] += duration
            tree.self_us[node] += duration
            if caller is not None and caller[1]:
                tree.self_us[caller[0]] -= duration
        placed[call.entry_no] = (node, duration is not None)
    tree.timed = any(tree.total_us)
    tree.self_us = [max(0.0, value) for value in tree.self_us]  # callees' rounded durations may add up to more
    return result


def numbers_of(entry: CallInterval | None) -> dict[str, int]:
    """The entry and caller numbers a completed call takes from its entry (none when its entry was not seen)."""
    return {"entry_no": entry.entry_no, "caller_no": entry.caller_no} if entry is not None else {}


def trace_time_us(seconds: str) -> float | None:
    """A printed trace timestamp (seconds) in microseconds; None for one too large to be a time."""
    value = float(seconds) * 1e6
    return value if math.isfinite(value) else None


# One part of visualize's --cpu list, at most 4 digits: the CPUs of the recording, not of this machine
# (record's CPU_LIST, further down, checks against the CPUs online here).
CPU_RANGE = re.compile(r"^\d{1,4}(?:-\d{1,4})?$")


def selection_of(args: argparse.Namespace) -> TaskSelection:
    cpus: set[str] = set()
    for part in split_names(args.cpu):
        if not CPU_RANGE.match(part):
            raise UserError(f"--cpu {part}: not a CPU or a range of CPUs (0,2-3)")
        low, _, high = part.partition("-")
        cpus |= {str(cpu) for cpu in range(int(low), int(high or low) + 1)}
    pids = set(split_names(args.pid))
    bad = sorted(pid for pid in pids if not pid.isdigit() or len(pid) > 10)
    if bad:
        raise UserError(f"--pid {bad[0]}: not a process id")
    given = [f"{option} {value}" for option, values in (("--pid", args.pid), ("--comm", args.comm), ("--cpu", args.cpu)) for value in values or []]
    return TaskSelection(pids, split_names(args.comm), cpus, " ".join(given))


# ============================================================================
# Sleeps and wakeups: on/off-CPU time of every call path, who wakes whom
# ============================================================================
# sched_switch says when a task leaves its CPU and in what state (S asleep,
# D uninterruptible, R preempted); sched_waking, emitted by the waker on its own
# CPU, says who ended the sleep. Read from the calls-over-time stream, where
# each event carries the open calls of the task it ran in.

SCHED_SWITCH = "sched_switch"
WAKEUP_EVENTS = ("sched_waking", "sched_wakeup", "sched_wakeup_new")


@dataclass
class WakeFlow:
    """The sleeps of one call path that wakeups from one waker ended."""

    sleeps: int = 0
    wait_us: float = 0.0  # switched out until switched in again, summed
    max_us: float = 0.0
    waits: list[float] = field(default_factory=list)  # for the median; bounded by WAKE_WAITS_KEPT (a reservoir)


@dataclass
class SchedTimes:
    """What the scheduler events say about the call tree's nodes (ids of CallGraph.tree).

    off_us[node]: time the node's calls spent switched out (asleep or preempted);
    a node's on-CPU time is its total minus that. A sleep counts in every call
    open on the task when it switched out.
    """

    off_us: dict[int, float] = field(default_factory=dict)
    sleeps: dict[int, int] = field(default_factory=dict)  # node -> switch-outs while its calls were open
    states: dict[int, dict[str, float]] = field(default_factory=dict)  # node -> {prev_state "S"/"D"/"R"...: off time}
    # (sleeping node: the innermost call open at the switch-out, waker node: the innermost call open in the
    # waker at the wakeup, ROOT_NODE when none was, waker: "softirq"/"hardirq"/"task" or the task name when no call was open)
    wakes: dict[tuple[int, int, str], WakeFlow] = field(default_factory=dict)
    unwoken: dict[int, int] = field(default_factory=dict)  # node -> sleeps whose wakeup is not in the trace (preempted R needs none)
    sleep_total_us: float = 0.0
    sleep_count: int = 0  # switch-outs while a traced call was open (those outside every traced call: untraced_sleeps)
    timed: bool = True  # False: the trace has no timestamps, sleeps are counted and their time is unknown
    state_us: dict[str, float] = field(default_factory=dict)  # the sleeps' off time by state, for the summary
    state_sleeps: dict[str, int] = field(default_factory=dict)
    open_sleeps: int = 0  # of sleep_count, switched out at the end of the trace: counted, without time
    untraced_sleeps: int = 0  # switch-outs with no traced call open (user space, or outside --graph-function)
    unmapped_frames: int = 0  # open calls at a switch-out whose call path is not in the call tree (left out)
    switch_ins_unseen: int = 0  # switch-outs whose switch-in is not in the trace (lost): no time, no sleep
    wakeup_event: str = ""  # the event that named the wakers: sched_waking, else sched_wakeup (may run on the woken task's CPU)


WAKE_WAITS_KEPT = 256  # a wake flow's waits kept for its median: a reservoir, so memory grows with distinct flows, never with the trace
# Open calls that say the code above them runs in an interrupt (innermost one wins): the waker's context in text without irq flags.
SOFTIRQ_FRAMES = frozenset({"__do_softirq", "handle_softirqs"})
HARDIRQ_FRAME_PREFIXES = ("__sysvec_", "sysvec_", "asm_sysvec_", "asm_common_interrupt", "common_interrupt", "__common_interrupt", "handle_irq_event")
NO_SCHED_EVENTS = (
    "no scheduler events in the trace: record with kernel-magnifier record (function_graph records sched_switch and"
    " sched_waking by default) or trace-cmd record -e sched_switch -e sched_waking"
)


@dataclass
class Waker:
    """Who woke a switched-out task: the innermost open call of the waker (ROOT_NODE: none, or not in the tree), and what it ran as."""

    node: int
    who: str


@dataclass
class SwitchedOut:
    """A task that switched out and has not come back yet: the calls it left open and who has woken it since."""

    stamp_us: float | None
    state: str  # prev_state without "+": S, D, R (preempted), I, ...
    frames: list[tuple[int, int]]  # (call-tree node, entry number) of its open calls found in the tree, outermost first
    sleeper: int  # the innermost of them (ROOT_NODE: none)
    ended: dict[int, float] = field(default_factory=dict)  # entry number -> return time, of calls that returned before the switch-in
    waking: Waker | None = None  # the last sched_waking of the task after its switch-out
    wakeup: Waker | None = None  # the last sched_wakeup
    early: Waker | None = None  # a sched_waking between its last switch-in and the switch-out: woken while still on its CPU


class SchedTracker:
    """Follows sched_switch and the wakeup events through the calls-over-time stream and fills a SchedTimes.

    A sleep's off time is switch-in minus switch-out and goes to every call
    open at the switch-out that is still open at the switch-in. The
    sched_switch event comes a little before the task really leaves (the rest
    of __schedule still runs and is traced): a call that returns in between
    (__traceiter_sched_switch) gets the part of the off time before it returned.
    """

    def __init__(self, tree: CallTree, selection: TaskSelection, reader: IntervalReader, window: tuple[float, float] | None = None) -> None:
        self.tree = tree
        self.window = window
        self.selection = selection
        self.reader = reader
        self.times = SchedTimes()
        self.out: dict[str, SwitchedOut] = {}
        self.early: dict[str, Waker] = {}  # running task -> the last sched_waking of it since its switch-in
        self.seen_waking = False
        self.seen_wakeup = False
        self.seen_switch = False
        self.reservoir = random.Random(19)
        self.flow_seen: dict[tuple[int, int, str], int] = {}

    def event(self, event: TraceEvent) -> None:
        if event.name == SCHED_SWITCH:
            self.seen_switch = True
            cpu = event.cpu
            prev = IntervalReader.pid_task(event.fields.get("prev_pid", ""), cpu)
            nxt = IntervalReader.pid_task(event.fields.get("next_pid", ""), cpu)
            self.switch_out(prev, event.fields.get("prev_comm", event.comm), cpu, event)
            self.early.pop(nxt, None)
            if nxt in self.out:
                self.switch_in(nxt, self.out.pop(nxt), event.stamp_us)
        elif event.name in ("sched_waking", "sched_wakeup"):
            self.wakeup(event)

    def open_stack(self, task: str) -> list[CallInterval]:
        """The task's open calls, outermost first (an interrupt's displaced ones are not on it); with a window, those that started in it."""
        stack = [call for _, call in sorted(self.reader.open_calls.get(task, {}).items())]
        return stack if self.window is None else list(calls_in_window(stack, self.window))

    def switch_out(self, task: str, comm: str, cpu: str | None, event: TraceEvent) -> None:
        early = self.early.pop(task, None)
        if task in self.out:  # it ran again without a switch-in we saw: lost events
            self.times.switch_ins_unseen += 1
            del self.out[task]
        if not self.selection.keeps(task, comm, cpu):
            return
        stack = self.open_stack(task)
        nodes = stack_nodes(self.tree, stack)
        self.times.unmapped_frames += sum(1 for node in nodes if node is None)
        frames = [(node, call.entry_no) for node, call in zip(nodes, stack) if node is not None]
        if not frames:
            self.times.untraced_sleeps += 1
            return
        if event.stamp_us is None:
            self.times.timed = False
        state = event.fields.get("prev_state", "?").rstrip("+") or "?"
        self.out[task] = SwitchedOut(event.stamp_us, state, frames, frames[-1][0], early=early)

    def returned(self, call: CallInterval) -> None:
        """A completed call of a switched-out task: it returned after the sched_switch event, before the task really left."""
        pending = self.out.get(call.task)
        if pending is not None and call.start_us is not None and call.duration_us is not None:
            pending.ended[call.entry_no] = call.start_us + call.duration_us

    def still_open(self, task: str) -> set[int]:
        reader = self.reader
        calls = [*reader.open_calls.get(task, {}).values(), *reader.displaced.get(task, {}).values()]
        return {call.entry_no for call in calls}

    def switch_in(self, task: str, pending: SwitchedOut, stamp_us: float | None) -> None:
        times = self.times
        off = stamp_us - pending.stamp_us if stamp_us is not None and pending.stamp_us is not None else None
        if off is None:
            times.timed = False
        off = max(0.0, off or 0.0)
        still_open = self.still_open(task)
        for node, entry in pending.frames:
            if entry in still_open:
                part = off
            else:
                end = pending.ended.get(entry)
                part = min(off, max(0.0, end - pending.stamp_us)) if end is not None and pending.stamp_us is not None else 0.0
            self.add_sleep(node, pending.state, part)
        self.count_sleep(pending.state, off)
        self.woken(pending, off)

    def add_sleep(self, node: int, state: str, off: float) -> None:
        times = self.times
        times.off_us[node] = times.off_us.get(node, 0.0) + off
        times.sleeps[node] = times.sleeps.get(node, 0) + 1
        states = times.states.setdefault(node, {})
        states[state] = states.get(state, 0.0) + off

    def count_sleep(self, state: str, off: float) -> None:
        times = self.times
        times.sleep_count += 1
        times.sleep_total_us += off
        times.state_us[state] = times.state_us.get(state, 0.0) + off
        times.state_sleeps[state] = times.state_sleeps.get(state, 0) + 1

    def woken(self, pending: SwitchedOut, off: float) -> None:
        """The sleep's waker: the last sched_waking after the switch-out, else the last one since the task's switch-in
        before it (a task woken after __schedule took it off the run queue, before the switch: the kernel queues that wakeup
        for the CPU, whose sched_wakeup comes later there); sched_wakeup where the trace has no sched_waking."""
        if pending.state == "R":
            return  # preempted: runnable all along, nobody wakes it
        waker = (pending.waking or pending.early) if self.seen_waking else pending.wakeup
        if waker is None:
            self.times.unwoken[pending.sleeper] = self.times.unwoken.get(pending.sleeper, 0) + 1
            return
        key = (pending.sleeper, waker.node, waker.who)
        flow = self.times.wakes.get(key)
        if flow is None:
            flow = self.times.wakes[key] = WakeFlow()
        flow.sleeps += 1
        flow.wait_us += off
        flow.max_us = max(flow.max_us, off)
        if len(flow.waits) < WAKE_WAITS_KEPT:
            flow.waits.append(off)
        else:
            slot = self.reservoir.randrange(flow.sleeps)
            if slot < WAKE_WAITS_KEPT:
                flow.waits[slot] = off

    def wakeup(self, event: TraceEvent) -> None:
        if event.name == "sched_waking":
            self.seen_waking = True
        else:
            self.seen_wakeup = True
        target = IntervalReader.pid_task(event.fields.get("pid", ""), event.cpu)
        pending = self.out.get(target)
        if pending is None:
            if event.name == "sched_waking":  # it may still be on its CPU, about to switch out: the wakeup of that sleep
                self.early[target] = self.waker(event)
            return
        waker = self.waker(event)
        if event.name == "sched_waking":
            pending.waking = waker
        else:
            pending.wakeup = waker

    def waker(self, event: TraceEvent) -> Waker:
        """The waker's innermost open call in the tree (ROOT_NODE: none open, or its task not selected) and its context."""
        stack = event.stack
        if not stack:
            return Waker(ROOT_NODE, event.comm or f"pid {event.task}")
        node = ROOT_NODE
        if self.selection.keeps(event.task, event.comm, event.cpu):
            inside = stack if self.window is None else list(calls_in_window(stack, self.window))
            found = [node for node in stack_nodes(self.tree, inside) if node is not None]
            node = found[-1] if found else ROOT_NODE
        context = event.irq or irq_context(stack)
        return Waker(node, f"task {event.comm}" if context == "task" and event.comm else context)  # the waker task's name: who to group by

    def finish(self) -> SchedTimes:
        """Sleeps still switched out at the end: counted, without time (their calls' totals end at the switch-out)."""
        times = self.times
        for pending in self.out.values():
            for node, _ in pending.frames:
                times.sleeps[node] = times.sleeps.get(node, 0) + 1
            times.sleep_count += 1
            times.open_sleeps += 1
        self.out.clear()
        times.wakeup_event = "sched_waking" if self.seen_waking else "sched_wakeup" if self.seen_wakeup else ""
        return times


def irq_context(stack: list[CallInterval]) -> str:
    """"softirq", "hardirq" or "task": what the innermost interrupt entry among the open calls says."""
    for call in reversed(stack):
        if call.name in SOFTIRQ_FRAMES:
            return "softirq"
        if call.name.startswith(HARDIRQ_FRAME_PREFIXES):
            return "hardirq"
    return "task"


def stack_nodes(tree: CallTree, stack: list[CallInterval]) -> list[int | None]:
    """The call-tree node of each open call, outermost first, found by name without creating any (None: not in the tree).

    A call is its caller's callee when its depth is one more than the caller's
    and the tree has it there; else it started a top-level path (an interrupt,
    or a call whose caller was not in the trace), as the parser placed it.
    """
    nodes: list[int | None] = []
    children = tree.children
    parent: int | None = None
    parent_depth = -2
    for call in stack:
        node = None
        if parent is not None and call.depth == parent_depth + 1:
            kids = children[parent]
            node = kids.get(call.name) if kids else None
        if node is None:
            kids = children[ROOT_NODE]
            node = kids.get(call.name) if kids else None
        nodes.append(node)
        parent, parent_depth = node, call.depth
    return nodes


def sched_times(graph: CallGraph, inputs: list[str], selection: TaskSelection | None = None, window: tuple[float, float] | None = None) -> SchedTimes | None:
    """On/off-CPU time and wakeups of graph.tree's call paths, from a second pass over the inputs; None without sched_switch.

    With a --time-window (graph is then window_calls()'s tree) only the calls that start in it are the open calls a sleep counts in.
    """
    if not inputs_have_sched_switch(graph):
        return None
    wanted = selection or TaskSelection()
    reader = IntervalReader(TaskSelection(set(wanted.pids), list(wanted.comms), set(wanted.cpus)), events=True)
    tracker = SchedTracker(graph.tree, TaskSelection(set(wanted.pids), list(wanted.comms), set(wanted.cpus)), reader, window)
    out = tracker.out
    for item in reader.read(inputs):
        if type(item) is TraceEvent:
            tracker.event(item)
        elif out and item.task in out:
            tracker.returned(item)
    if not tracker.seen_switch:
        return None
    return tracker.finish()


@dataclass
class OffCpu:
    """Switched-out time of a function: of its outermost activations on each call path, as its total time counts them."""

    off_us: float = 0.0
    sleeps: int = 0
    states: dict[str, float] = field(default_factory=dict)  # prev_state -> off time


def function_off_cpu(tree: CallTree, sched: SchedTimes) -> dict[str, OffCpu]:
    """Per function: the off-CPU time of its call paths that are not inside another activation of it (derive_graph's rule)."""
    result: dict[str, OffCpu] = {}
    on_path: Counter[str] = Counter()
    # Children by name, not by when the parse made them: -j N stitches trees that made them in another order.
    stack: list[tuple[int, bool]] = [(kid, False) for _, kid in sorted((tree.children[ROOT_NODE] or {}).items())]
    while stack:
        node, leaving = stack.pop()
        name = tree.function[node] or ""
        if leaving:
            on_path[name] -= 1
            continue
        if not on_path[name] and node in sched.sleeps:
            mine = result.get(name)
            if mine is None:
                mine = result[name] = OffCpu()
            mine.off_us += sched.off_us.get(node, 0.0)
            mine.sleeps += sched.sleeps[node]
            for state, off in sched.states.get(node, {}).items():
                mine.states[state] = mine.states.get(state, 0.0) + off
        on_path[name] += 1
        stack.append((node, True))
        kids = tree.children[node]
        if kids:
            stack.extend((kid, False) for _, kid in sorted(kids.items()))
    return result


def attach_sched(graph: CallGraph, sched: SchedTimes | None) -> None:
    """Give a graph its scheduler numbers: per call path (`sched`) and per function (`off_cpu`)."""
    graph.sched = sched
    graph.off_cpu = function_off_cpu(graph.tree, sched) if sched is not None else {}


def moved_sched(sched: SchedTimes | None, moved: list[tuple[int, int]], placed: dict[int, int] | None = None) -> SchedTimes | None:
    """A focused view's SchedTimes: each node's numbers added into the copies `moved` made of it (several may go into one).

    `placed`: where the nodes that are not moved went (a group's merged frames), for the wakeups of sleeps inside them."""
    if sched is None:
        return None
    result = SchedTimes(sleep_total_us=sched.sleep_total_us, sleep_count=sched.sleep_count, timed=sched.timed, state_us=dict(sched.state_us),
                        state_sleeps=dict(sched.state_sleeps), open_sleeps=sched.open_sleeps, untraced_sleeps=sched.untraced_sleeps,
                        unmapped_frames=sched.unmapped_frames, switch_ins_unseen=sched.switch_ins_unseen, wakeup_event=sched.wakeup_event)
    copies: dict[int, int] = {}
    for source, target in moved:
        copies.setdefault(source, target)
        if source not in sched.sleeps:
            continue
        result.off_us[target] = result.off_us.get(target, 0.0) + sched.off_us.get(source, 0.0)
        result.sleeps[target] = result.sleeps.get(target, 0) + sched.sleeps[source]
        states = result.states.setdefault(target, {})
        for state, off in sched.states.get(source, {}).items():
            states[state] = states.get(state, 0.0) + off
        if source in sched.unwoken:
            result.unwoken[target] = result.unwoken.get(target, 0) + sched.unwoken[source]
    for source, target in (placed or {}).items():
        if source not in copies:
            copies[source] = target
            if source in sched.unwoken:
                result.unwoken[target] = result.unwoken.get(target, 0) + sched.unwoken[source]
    for (sleeper, waker, who), flow in sched.wakes.items():
        if sleeper in copies:
            key = (copies[sleeper], copies.get(waker, ROOT_NODE), who)
            into = result.wakes.setdefault(key, WakeFlow())
            into.sleeps += flow.sleeps
            into.wait_us += flow.wait_us
            into.max_us = max(into.max_us, flow.max_us)
            into.waits = (into.waits + flow.waits)[:WAKE_WAITS_KEPT]
    return result


def on_cpu_us(graph: CallGraph, name: str) -> float:
    """A function's total time minus its switched-out time (never below 0: printed durations and timestamps round differently)."""
    return max(0.0, graph.total_us.get(name, 0.0) - off_cpu_us(graph, name))


def off_cpu_us(graph: CallGraph, name: str) -> float:
    found = graph.off_cpu.get(name)
    return found.off_us if found is not None else 0.0


def path_on_off(graph: CallGraph) -> tuple[list[float], list[float]]:
    """Per call-tree node: (on-CPU time, off-CPU time), for folded stacks and the flame graph's --weight oncpu/offcpu."""
    tree = graph.tree
    off = [0.0] * len(tree)
    if graph.sched is not None:
        for node, value in graph.sched.off_us.items():
            off[node] = value
    on = [max(0.0, total - value) for total, value in zip(tree.total_us, off)]
    return on, off


def inputs_have_sched_switch(graph: CallGraph) -> bool:
    """The main parse counted the inputs' events by name: no second pass over inputs without sched_switch."""
    return graph.stats.trace_events.get(SCHED_SWITCH, 0) > 0


# The two ends of a wakeup, by rule. A wakeup's stack ends in the scheduler's
# wakeup code (try_to_wake_up under default_wake_function under __wake_up_common
# ...) and a sleep's in the scheduler's sleep code (schedule under
# schedule_timeout under wait_woken ...): neither says what woke or what slept.
# The waking function is the innermost open frame of the waker that is not
# wakeup machinery (sock_def_readable); the frame that slept is the innermost
# open frame of the sleeper that is not sleep machinery (sk_wait_data). A name
# counts as machinery when it is listed or matches a listed glob; a function
# that says why (process_timeout: a timeout ended the sleep; mutex_lock: the
# sleep waited for a lock) is not machinery.
WAKE_MACHINERY = (
    "try_to_wake_up", "ttwu_*", "wake_up_process", "wake_up_state", "wake_up_q", "wake_up_new_task",
    "default_wake_function", "*_wake_function", "__wake_up*", "wake_up_bit", "__wake_up_bit", "wake_up_var",
    "swake_up*", "complete", "complete_all", "pollwake", "signal_wake_up_state", "__traceiter_*",
)
SLEEP_MACHINERY = (
    "__traceiter_*", "schedule", "__schedule", "schedule_idle", "schedule_preempt_disabled", "schedule_timeout*",
    "schedule_hrtimeout*", "io_schedule*", "preempt_schedule*", "__cond_resched", "_cond_resched", "wait_woken",
    "do_wait_for_common", "__wait_for_common", "wait_for_common*", "*wait_for_completion*", "bit_wait*", "out_of_line_wait_on_bit*",
)
TIMER_WAKE = ("process_timeout", "hrtimer_wakeup", "call_timer_fn", "__hrtimer_run_queues")  # a timer's expiry is what woke


def is_machinery(name: str, rule: tuple[str, ...]) -> bool:
    base = base_function_name(name)
    return any(fnmatch.fnmatchcase(base, pattern) for pattern in rule)


def innermost_outside(path: list[str], rule: tuple[str, ...]) -> str | None:
    """The innermost name of a call path (outermost first) that the rule does not call machinery; None when all are."""
    return next((name for name in reversed(path) if not is_machinery(name, rule)), None)


def waking_function(path: list[str]) -> str | None:
    """sock_def_readable for ...;sock_def_readable;__wake_up_sync_key;...;try_to_wake_up."""
    return innermost_outside(path, WAKE_MACHINERY)


def frame_that_slept(path: list[str]) -> str | None:
    """sk_wait_data for ...;sk_wait_data;wait_woken;schedule_timeout;schedule;__traceiter_sched_switch."""
    return innermost_outside(path, SLEEP_MACHINERY)


def waker_context(path: list[str], waker: str) -> str:
    """What a kernel developer calls the waker: "net_rx_action softirq", "timer (run_timer_softirq softirq)", "task python3".

    From the waker's open calls: the softirq action the innermost softirq
    dispatcher (SOFTIRQ_FRAMES) ran, or the handler after the innermost hardirq
    entry; a timer's expiry (process_timeout, hrtimer_wakeup, ...) is named as
    such. Without either, SchedTimes' waker description (the trace's irq
    flags, or the task).
    """
    context = ""
    for at in range(len(path) - 1, -1, -1):
        name = base_function_name(path[at])
        interrupt = "softirq" if name in SOFTIRQ_FRAMES else "hardirq" if name.startswith(HARDIRQ_FRAME_PREFIXES) else ""
        if interrupt:
            action = path[at + 1] if at + 1 < len(path) and not is_machinery(path[at + 1], WAKE_MACHINERY) else path[at]
            context = f"{action} {interrupt}"
            break
    if any(is_machinery(name, TIMER_WAKE) for name in path):
        return f"timer ({context})" if context else "timer"
    return context or waker


@dataclass
class WakeRow:
    """The sleeps of one sleeping call path that one waker call path ended, with both ends named by rule."""

    sleeping_path: list[str]  # the sleeper's open calls at the switch-out, outermost first
    slept: str | None  # the frame that slept: the innermost of them that is not sleep machinery
    waker_path: list[str]  # the waker's open calls at the wakeup ([] when none was traced)
    waking: str | None  # the waking function: the innermost of them that is not wakeup machinery
    context: str  # "net_rx_action softirq", "timer (run_timer_softirq softirq)", "task python3"
    sleeps: int
    wait_us: float | None  # None: the trace has no timestamps, the waits are unknown
    p50_us: float | None
    max_us: float | None


def wakeup_rows(graph: CallGraph) -> list[WakeRow]:
    """Every (sleeping path, waker path) pair of graph.sched, most sleeps first."""
    if graph.sched is None:
        return []
    tree = graph.tree
    rows = []
    for (sleeper, waker, who), flow in graph.sched.wakes.items():
        sleeping_path = tree.path(sleeper)
        waker_path = tree.path(waker) if waker > ROOT_NODE else []
        context = waker_label(waker_path, who)
        timed = graph.sched.timed
        p50 = statistics.median(flow.waits) if flow.waits else 0.0
        rows.append(WakeRow(sleeping_path, frame_that_slept(sleeping_path), waker_path, waking_function(waker_path), context,
                            flow.sleeps, flow.wait_us if timed else None, p50 if timed else None, flow.max_us if timed else None))
    rows.sort(key=lambda row: (-row.sleeps, -(row.wait_us or 0.0), row.sleeping_path, row.waker_path))
    return rows


def waker_label(path: list[str], who: str) -> str:
    """waker_context(), with a bare task name (no traced call was open in the waker) said to be one: "task python3"."""
    context = waker_context(path, who)
    if path:
        return context
    if context.startswith("task ") or context in ("softirq", "hardirq", "nmi"):  # calls were open, outside the call tree
        return f"{context} (its open calls are outside the call tree: a task not selected, or calls before --time-window)"
    return f"task {context} with no traced call open"


def wake_edges(rows: list[WakeRow]) -> dict[tuple[str, str], tuple[int, float | None]]:
    """(waking function, frame that slept) -> (sleeps, time waited or None where unknown): the call graph's dashed "wakes" edges."""
    edges: dict[tuple[str, str], tuple[int, float | None]] = {}
    for row in rows:
        if row.waking and row.slept:
            sleeps, waited = edges.get((row.waking, row.slept), (0, 0.0))
            edges[row.waking, row.slept] = (sleeps + row.sleeps, None if waited is None or row.wait_us is None else waited + row.wait_us)
    return edges


def woken_by_line(rows: list[WakeRow], sched: SchedTimes) -> str | None:
    """"woken by: 160 from net_rx_action softirq paths, 8 by task python3": the sleeps' wakers, grouped by context."""
    groups: Counter[str] = Counter()
    for row in rows:
        groups[row.context] += row.sleeps
    parts = [woken_by_phrase(context, sleeps) for context, sleeps in sorted(groups.items(), key=lambda kv: (-kv[1], kv[0]))]
    unwoken = sum(sched.unwoken.values())
    if not parts and not unwoken and not sched.sleep_count:
        return None  # no sleep inside a traced call: the sleeps line says why
    if unwoken:
        parts.append(f"{unwoken:,} with no wakeup in the trace")
    event = f" ({sched.wakeup_event})" if sched.wakeup_event else ""
    return "woken by" + event + ": " + (", ".join(parts) if parts else "no sleep ended by a wakeup in the trace")


def woken_by_phrase(context: str, sleeps: int) -> str:
    if context.startswith("timer"):
        return f"{sleeps:,} by timers" + context[len("timer"):]
    if context.startswith("task ") or "(" in context:
        return f"{sleeps:,} by {context}"
    return f"{sleeps:,} from {context} paths"


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def wakeups_json(rows: list[WakeRow]) -> list[dict]:
    """The JSON's `wakeups`: one record per (sleeping path, waker path), times in microseconds."""
    return [
        {
            "sleeping_path": row.sleeping_path, "slept_in": row.slept, "waker_path": row.waker_path, "waking_function": row.waking,
            "waker_context": row.context, "sleeps": row.sleeps, "wait_us": rounded(row.wait_us), "wait_p50_us": rounded(row.p50_us),
            "wait_max_us": rounded(row.max_us),
        }
        for row in rows
    ]


@dataclass
class Handover:
    """A wakeup that ended a sleep: who woke the task (where, when, in which open call) and when the task ran again."""

    waker: str  # the task the wakeup ran in (as CallInterval.task), its name and CPU
    waker_comm: str
    waker_cpu: str | None
    stamp_us: float
    event: str  # sched_waking, or sched_wakeup / sched_wakeup_new where no sched_waking was seen
    waker_entry: int  # entry number of the waker's innermost open call (-1: none open)
    woken: str
    switch_in_us: float


@dataclass
class RunSlice:
    """A stretch of one task: on a CPU ("running"), or switched out in a state (S, D, R+ ...), from sched_switch."""

    task: str
    cpu: str | None
    start_us: float
    end_us: float
    state: str  # "running", or the prev_state the task was switched out in
    note: str = ""  # why an end is not a switch: the trace began or ended inside the slice
    woken_by: Handover | None = None


@dataclass
class SchedTracks:
    """Every task's running and switched-out slices and the wakeups that ended sleeps, in trace order."""

    slices: list[RunSlice] = field(default_factory=list)
    handovers: list[Handover] = field(default_factory=list)
    comms: dict[str, str] = field(default_factory=dict)  # task -> its full name, from sched_switch
    woken_running: int = 0  # sched_wakings of a task still on its CPU (woken while going to sleep: they end the sleep that follows)
    unmatched_switches: int = 0  # a task switched out twice without a switch-in between (events lost)


class SliceTracker:
    """Builds SchedTracks from the TraceEvents of IntervalReader(events=True), one event at a time."""

    def __init__(self) -> None:
        self.tracks = SchedTracks()
        self.open: dict[str, RunSlice] = {}  # task -> its slice still open (running or switched out)
        self.pending: dict[str, Handover] = {}  # task -> the last wakeup since its switch-out
        self.early: dict[str, Handover] = {}  # running task -> the last sched_waking of it since its switch-in
        self.seen_waking = False
        self.cpu_first: dict[str | None, float] = {}
        self.last_us: float | None = None

    def add(self, event: TraceEvent) -> None:
        stamp = event.stamp_us
        if stamp is None:
            return
        self.cpu_first.setdefault(event.cpu, stamp)
        self.last_us = stamp if self.last_us is None else max(self.last_us, stamp)
        if event.name == SCHED_SWITCH:
            self.switch(event, stamp)
        elif event.name in WAKEUP_EVENTS and event.fields.get("pid", "0").isdigit() and event.fields.get("pid") != "0":
            self.wakeup(event, stamp)

    def switch(self, event: TraceEvent, stamp: float) -> None:
        fields = event.fields
        prev, following = IntervalReader.pid_task(fields.get("prev_pid", ""), event.cpu), IntervalReader.pid_task(fields.get("next_pid", ""), event.cpu)
        self.tracks.comms.setdefault(prev, fields.get("prev_comm", event.comm))
        self.tracks.comms[following] = fields.get("next_comm", "")
        running = self.open.pop(prev, None)
        if running is None:
            running = RunSlice(prev, event.cpu, self.cpu_first[event.cpu], stamp, "running", "on this CPU since its first event in the trace or before")
        if running.state == "running":
            running.end_us = stamp
            self.tracks.slices.append(running)
        else:
            self.tracks.unmatched_switches += 1  # switched out twice: the switch-in between was lost
        if not prev.startswith("0/"):  # a CPU's idle task is never asleep: it runs whenever nothing else does
            self.open[prev] = RunSlice(prev, event.cpu, stamp, stamp, fields.get("prev_state", "?"))
        self.pending.pop(prev, None)
        early = self.early.pop(prev, None)
        if early is not None and not fields.get("prev_state", "").startswith("R"):
            self.pending[prev] = early  # woken before it left its CPU: that wakeup ends this sleep, unless a later one comes
        asleep = self.open.pop(following, None)
        if asleep is not None and asleep.state != "running":
            asleep.end_us = stamp
            self.tracks.slices.append(asleep)
        woken = self.pending.pop(following, None)
        early = self.early.pop(following, None)
        if woken is None and asleep is None:
            woken = early  # a task not seen before: asleep since before the trace began, woken by that
        started = RunSlice(following, event.cpu, stamp, stamp, "running")
        if woken is not None:
            woken.switch_in_us = stamp
            started.woken_by = woken
            self.tracks.handovers.append(woken)
        self.open[following] = started

    def wakeup(self, event: TraceEvent, stamp: float) -> None:
        self.seen_waking = self.seen_waking or event.name == "sched_waking"
        if self.seen_waking and event.name != "sched_waking":
            return  # sched_waking runs in the waker; sched_wakeup may run on the woken task's CPU: only a fallback
        target = event.fields["pid"]
        entry = event.stack[-1].entry_no if event.stack else -1
        woken = Handover(event.task, event.comm, event.cpu, stamp, event.name, entry, target, stamp)
        current = self.open.get(target)
        if current is None or current.state == "running":  # still on its CPU (or not seen yet): woken while going to sleep
            self.tracks.woken_running += current is not None
            self.early[target] = woken
            return
        self.pending[target] = woken

    def finish(self) -> SchedTracks:
        """Slices still open end at the trace's last event, said in their note."""
        for opened in self.open.values():
            opened.end_us = self.last_us if self.last_us is not None else opened.start_us
            opened.note = "still on a CPU at the end of the trace" if opened.state == "running" else "still switched out at the end of the trace"
            self.tracks.slices.append(opened)
        self.open = {}
        return self.tracks


# ============================================================================
# Symbol map: function name -> source file(s)
# ============================================================================

DEFAULT_SYMBOL_MAP = "symbol-filepath.map"
DEFINITION_SEPARATOR = "|"  # "include/trace/events/sched.h|kernel/sched/core.c": declared in one, compiled in the other
# Version 2 adds definition lines ("net/ipv4/tcp_output.c:2642"). Its first line is no comment on purpose:
# kernel-magnifier 1.0 skips "#" lines and would take "file:line" for a file name; this line, with neither a tab
# nor a "|", makes it refuse the map in one line ("... is not a symbol map: line 'kernel-magnifier symbol map 2...'").
SYMBOL_MAP_HEADER = "kernel-magnifier symbol map 2: an older kernel-magnifier cannot read it"
SYMBOL_MAP_VERSION = re.compile(r"^(?:# )?kernel-magnifier symbol map (\d+)\b")
SYMBOL_MAP_VERSIONS = (1, 2)  # 1: files only (the bundled map), 2: files with lines
# Version 2's inlined calls: "#inlines<TAB>host<TAB>callee (path:line)<TAB>...[<TAB>+N more]"; a '#' line, so the
# version 2 readers before them skip it (comments) and a map with them stays version 2.
INLINES_MARK = "#inlines"
INLINES_CUT = re.compile(r"^\+(\d+) more$")
# Version 2's call sites (issue 21 point 4), one line per copy of a function, also a '#' line that older readers skip:
# "#calls<TAB>name<TAB>size<TAB>offset=path:line<TAB>offset=:line..." in hex, ":line" when the path is the previous one's.
CALLS_MARK = "#calls"
FUNCTION_ALIGNMENT = 16  # x86-64's function alignment (CONFIG_FUNCTION_ALIGNMENT): the padding a size may include
DEFINITION_LINE = re.compile(r"^(.*):(\d+)$")  # "net/ipv4/tcp_output.c:2642": the declaring file and its line


@dataclass
class DefinitionParts:
    """One definition of a map: where it is declared (file, line) and, when it differs, the file whose unit compiled it."""

    path: str
    line: int | None
    compiled: str


def definition_parts(definition: str) -> DefinitionParts:
    """"include/trace/events/tcp.h:10|net/core/net-traces.c" -> path, line and compiled-in file."""
    declared, _, compiled = definition.partition(DEFINITION_SEPARATOR)
    found = DEFINITION_LINE.match(declared)
    if found:
        return DefinitionParts(found.group(1), int(found.group(2)), compiled)
    return DefinitionParts(declared, None, compiled)


def definition_paths(definition: str) -> str:
    """The definition without its line: "declared|compiled" as version 1 maps wrote it (filters and links use paths)."""
    parts = definition_parts(definition)
    return DEFINITION_SEPARATOR.join(filter(None, (parts.path, parts.compiled)))


def shown_definition(definition: str) -> str:
    """How labels and reports show a definition: "include/trace/events/tcp.h:10 (in net/core/net-traces.c)"."""
    parts = definition_parts(definition)
    where = parts.path + (f":{parts.line}" if parts.line is not None else "")
    return f"{where} (in {parts.compiled})" if parts.compiled else where


def add_definitions(files: dict[str, list[str]], name: str, definitions: Iterable[str]) -> None:
    """Add NAME's definitions (source files) to the map, each once, in order of first appearance."""
    known = files.setdefault(name, [])
    for definition in definitions:
        if definition not in known:
            known.append(definition)


CLONE_KINDS = frozenset(("isra", "constprop", "part", "cold", "llvm", "lto_priv", "localalias"))
HEX_PART = re.compile(r"[0-9a-f]+")


def base_function_name(name: str) -> str:
    """`foo.constprop.0.isra.0` -> `foo`: GCC/Clang clones keep the DWARF name of the original.

    The suffix starts at a clone kind; every later part is a kind or a hex number.
    Found in one pass from the end: a pattern searched from every dot is quadratic
    on a hostile name such as ".isra" * 1000.
    """
    if "." not in name:
        return name
    parts = name.split(".")
    start = len(parts)
    for index in range(len(parts) - 1, 0, -1):
        if parts[index] in CLONE_KINDS:
            start = index
        elif not HEX_PART.fullmatch(parts[index]):
            break
    return ".".join(parts[:start])


@dataclass
class CallSiteLines:
    """One copy of a function's call sites: its length in bytes and return offset -> "path:line" of the call."""

    size: int
    lines: dict[int, str]


class SymbolMap:
    """Function name -> source files, relative to the kernel tree."""

    def __init__(self, files: dict[str, list[str]] | None = None, path: str = "") -> None:
        self.files: dict[str, list[str]] = files if files is not None else {}
        self.path = path
        self.inlines: dict[str, list[str]] = {}  # host -> "callee (path:line)", as generate-symbol-map found them
        self.inlines_cut: dict[str, int] = {}
        self._hosts: dict[str, list[str]] | None = None
        self.call_lines: dict[str, list[CallSiteLines]] = {}  # caller -> its call sites' source lines, one per copy of the function

    def call_site_line(self, caller: str, offset: int, size: int | None = None) -> str | None:
        """The source line ("net/ipv4/tcp.c:723") of the call in CALLER whose return address is CALLER+OFFSET.

        SIZE (the function's length, as ftrace prints it: caller+0x5b/0x1a3) tells same-name copies apart. None when the
        map has no call sites for CALLER, the offset is not a call site DWARF describes, or the copies disagree."""
        copies = self.call_lines.get(caller, [])
        if size is not None:
            # ftrace's size runs to the next kallsyms symbol: the DWARF size, or more when alignment padding follows
            # (x86 aligns functions to 16 bytes); a copy that needs more padding than that only when no other fits
            copies = ([copy for copy in copies if copy.size == size] or [copy for copy in copies if -(-copy.size // FUNCTION_ALIGNMENT) * FUNCTION_ALIGNMENT == size]
                      or [copy for copy in copies if copy.size <= size])
        found = {copy.lines.get(offset) for copy in copies if offset <= copy.size}
        return found.pop() if len(found) == 1 else None  # no copy, copies that disagree, or {None}: no line

    def inlined_calls(self, name: str, module: str | None = None) -> tuple[list[str], int]:
        """NAME's inlined calls (a module's function: its module's entry first) and how many the map cut."""
        for key in ([module_key(name, module), module_key(base_function_name(name), module)] if module else []) + [name, base_function_name(name)]:
            if key in self.inlines:
                return self.inlines[key], self.inlines_cut.get(key, 0)
        return [], 0

    def hosts_of(self, callee: str) -> list[str]:
        """The functions CALLEE is inlined into, per the map (bare names, each once)."""
        if self._hosts is None:
            self._hosts = {}
            for host, calls in self.inlines.items():
                if " [" in host:
                    continue  # a module's entry repeats its bare name's
                for call in calls:
                    self._hosts.setdefault(inlined_callee(call), []).append(host)
        return sorted(set(self._hosts.get(callee, [])))

    def __len__(self) -> int:
        return len(self.files)

    def lookup(self, name: str) -> list[str]:
        found = self.files.get(name)
        if found is None:
            found = self.files.get(base_function_name(name), [])
        return found

    @classmethod
    def load(cls, path: str) -> SymbolMap:
        """Read our tab-separated format (version 1: files, 2: files with lines) or the original tool's `name|path` lines."""
        files: dict[str, list[str]] = {}
        symbols = cls(files, path)
        try:
            raw = open(path, "rb")
            stream = decompressed(raw)
        except OSError as err:
            raise UserError(f"cannot read symbol map {path}: {err.strerror}") from err
        try:
            with raw, stream, io.TextIOWrapper(stream, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    line = line.rstrip("\n")
                    version = SYMBOL_MAP_VERSION.match(line)
                    if version:
                        check_map_version(path, int(version.group(1)))
                        continue
                    if line.startswith(INLINES_MARK + "\t"):
                        symbols.add_inlines_line(line)
                        continue
                    if line.startswith(CALLS_MARK + "\t"):
                        symbols.add_calls_line(line)
                        continue
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
        except READ_ERRORS as err:
            raise UserError(f"cannot read symbol map {path}: {read_failure(stream, err)}") from err
        return symbols

    def add_inlines_line(self, line: str) -> None:
        _, name, *calls = line.split("\t")
        cut = INLINES_CUT.match(calls[-1]) if calls else None
        if cut:
            calls.pop()
            self.inlines_cut[name] = int(cut.group(1))
        self.inlines[name] = [call for call in calls if call]

    def add_calls_line(self, line: str) -> None:
        """One copy's call sites, as calls_line wrote them; a damaged field is skipped, not the map."""
        fields = line.split("\t")
        if len(fields) < 3:  # cut before its size
            return
        _, name, size, *sites = fields
        lines: dict[int, str] = {}
        path = ""
        for site in sites:
            offset, _, where = site.partition("=")
            if where.startswith(":"):
                where = path + where
            path = where.rpartition(":")[0]
            with contextlib.suppress(ValueError):
                lines[int(offset, 16)] = where
        with contextlib.suppress(ValueError):
            self.call_lines.setdefault(name, []).append(CallSiteLines(int(size, 16), lines))


def inlined_callee(call: str) -> str:
    """"tcp_skb_can_collapse_to (net/ipv4/tcp_output.c:2700)" -> tcp_skb_can_collapse_to."""
    return call.partition(" (")[0]


def shown_inlined_call(call: str) -> str:
    """The call as tooltips show it, the file without its folders: "tcp_skb_can_collapse_to (tcp_output.c:2700)"."""
    callee, _, where = call.partition(" (")
    return f"{callee} ({where.rsplit('/', 1)[-1]}" if where else callee


def check_map_version(path: str, version: int) -> None:
    if version not in SYMBOL_MAP_VERSIONS:
        raise UserError(f"{path} is a version {version} symbol map; this kernel-magnifier {VERSION} reads versions"
                        f" {' and '.join(map(str, SYMBOL_MAP_VERSIONS))}: use a newer kernel-magnifier, or generate the map with this one")


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
# Whole top-level DIEs of the kinds the map needs; the literal "DW_TAG_" lets
# the regex engine skip types and variables (94 % of the dump) in C.
# With the whole tree printed (inlined callees are deeper than depth 1), the DIE's indentation gives its depth.
LLVM_DIE_BLOCK = re.compile(rb"DW_TAG_(subprogram|compile_unit|partial_unit|inlined_subroutine|call_site|GNU_call_site)\n(.*?)\n\n", re.S)
# A call site's return address: DWARF 5's DW_AT_call_return_pc, DWARF 4's DW_TAG_GNU_call_site low_pc (issue 21 point 4)
LLVM_CALL_RETURN = re.compile(rb"DW_AT_(?:call_return_pc|low_pc)\t\((0x[0-9a-f]+)\)")
LIBDWARF_CALL_RETURN = re.compile(r" DW_AT_(?:call_return_pc|low_pc)<(0x[0-9a-f]+)>")
CALL_SITE_TAGS = ("DW_TAG_call_site", "DW_TAG_GNU_call_site")
TAIL_CALL = "DW_AT_call_tail_call", "DW_AT_GNU_tail_call"  # the attribute, not the text: a callee may be named tail_caller
LLVM_ATTRIBUTE = re.compile(
    rb"^\s+DW_AT_(name|decl_file|decl_line|low_pc|high_pc|ranges|abstract_origin|specification|declaration|comp_dir|call_file|call_line)\t\((.*)$"
    rb"|^\s+\[0x([0-9a-f]+), 0x([0-9a-f]+)\)",
    re.M,
)
QUOTED = re.compile(r'"(.*)"')
LLVM_DIE_OFFSET = re.compile(rb"0x([0-9a-f]+):\s+")
ADDRESS = re.compile(r"^(0x[0-9a-f]+)(?:\)|\s|$)")
REFERENCE = re.compile(r"^(0x[0-9a-f]+)")
DECIMAL = re.compile(r"(\d+)\)")
LIBDWARF_DIE = re.compile(r"^<(\d+)><0x([0-9a-f]+)(?:\+0x[0-9a-f]+)?><(DW_TAG_\w+)>(.*)$")
LIBDWARF_ATTRS = {
    "name": re.compile(r" DW_AT_name<([^>]*)>"),
    "decl_file": re.compile(r" DW_AT_decl_file<0x([0-9a-f]+)(?: ([^>]*))?>"),
    "decl_line": re.compile(r" DW_AT_decl_line<(0x[0-9a-f]+|\d+)>"),  # hex in libdwarf 20210528
    "low_pc": re.compile(r" DW_AT_low_pc<(0x[0-9a-f]+)>"),
    "high_pc": re.compile(r" DW_AT_high_pc<(?:<offset-from-lowpc> \d+ <highpc: )?(0x[0-9a-f]+)>"),
    "ranges": re.compile(r" DW_AT_ranges<"),
    "abstract_origin": re.compile(r" DW_AT_(?:abstract_origin|specification)<<(0x[0-9a-f]+)>>"),
    "declaration": re.compile(r" DW_AT_declaration<yes"),
    "comp_dir": re.compile(r" DW_AT_comp_dir<([^>]*)>"),
}
LIBDWARF_CALL_FILE = re.compile(r" DW_AT_call_file<0x([0-9a-f]+)(?: ([^>]*))?>")
LIBDWARF_CALL_LINE = re.compile(r" DW_AT_call_line<(0x[0-9a-f]+|\d+)>")
INLINES_PER_FUNCTION = 64  # distinct inlined calls kept per function in the map; the rest are counted ("+N more")


@dataclass
class Subprogram:
    offset: int
    name: str | None = None
    decl_file: str | None = None
    decl_line: int | None = None
    decl_file_index: int | None = None  # libdwarf: the line table's index, when the path is printed elsewhere
    origin: int | None = None
    origin_name: str | None = None
    declaration: bool = False
    ranges: list[tuple[int, int]] = field(default_factory=list)
    has_code: bool = False
    low_pc: int | None = None


@dataclass
class InlinedCall:
    """A DW_TAG_inlined_subroutine inside an out-of-line function (HOST, its depth-1 DIE): the callee and its call line."""

    host: int
    origin: int | None = None
    origin_name: str | None = None
    call_file: str | None = None
    call_file_index: int | None = None  # libdwarf: the line table's index, when the path is printed elsewhere
    call_line: int | None = None


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
    by_declaration: int = 0
    by_unit: int = 0
    by_prototype: int = 0
    inlined: int = 0  # DW_TAG_inlined_subroutine entries seen inside functions with code
    inlined_kept: int = 0  # distinct (host, callee, call file, call line) written
    inlined_cut: int = 0  # distinct ones beyond INLINES_PER_FUNCTION of a host
    call_sites: int = 0  # DW_TAG_(GNU_)call_site return addresses placed in a function copy (tail calls never return: left out)
    call_sites_unplaced: int = 0  # in no function range of their unit as the dump printed them (libdwarf prints no ranges lists)
    call_site_lines: int = 0  # distinct return addresses the line tool gave a line
    call_site_copies: int = 0  # function copies with at least one of them

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
            for root in [*build_dir_ancestors(comp_dir), *self.roots]:
                if path.startswith(root + "/"):
                    return os.path.normpath(path[len(root) + 1 :])
            return os.path.normpath(path)
        parts = os.path.normpath(path).split("/")
        tail = comp_dir.rstrip("/").split("/")
        for overlap in range(min(len(parts) - 1, len(tail)), 0, -1):
            if tail[-overlap:] == parts[:overlap]:
                root = "/".join(tail[:-overlap])
                if root.startswith("/") and root not in self.roots:  # a relative comp_dir teaches no root
                    self.roots.append(root)
                return "/".join(parts[overlap:])
        return "/".join(parts)


def build_dir_ancestors(comp_dir: str) -> list[str]:
    """An absolute comp_dir and its parents, nearest first, without "/": where an absolute source path may live.

    Assembly units name their file absolutely (/build/reproducible-path/linux-6.1.192/arch/x86/lib/copy_mc_64.S)
    while comp_dir is the build directory below the tree (.../linux-6.1.192/debian/build/build_amd64_none_amd64):
    the nearest ancestor of the build directory that holds the file is the tree.
    """
    if not comp_dir.startswith("/"):
        return []
    parts = os.path.normpath(comp_dir).split("/")
    return ["/".join(parts[:end]) for end in range(len(parts), 1, -1)]


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
        self.unit_inlines: list[InlinedCall] = []
        self.host: int | None = None  # the offset of the last depth-1 subprogram: inlined entries below it are its own
        # host name -> its inlined calls "callee (path:line)" (a dict as an ordered set), and how many were cut
        self.inlines: dict[str, dict[str, None]] = {}
        self.inlines_cut: dict[str, int] = {}
        self.cut_calls: dict[str, set[str]] = {}  # the distinct calls beyond the cap, to count each once
        self.want_inlines = True  # False (--no-inlines): llvm-dwarfdump prints depth 1 only, 4x faster on vmlinux
        self.file_names: dict[int, str] = {}  # libdwarf: the unit's decl_file indexes whose path a function printed
        # Call sites (issue 21 point 4): the unit's (host offset, return address) until it ends, then only ints are kept:
        # every return address, and per function copy (its range's start) its size, DWARF name and unit.
        self.want_call_sites = True
        self.elf_symbols: list[tuple[int, str]] = []  # nm's, kept for the call sites' names (what ftrace prints)
        self.dwarfdump_program = ""
        self.unit_call_sites: list[tuple[int, int]] = []
        self.return_addresses = array.array("Q")
        self.call_copies: dict[int, tuple[int, str, int]] = {}
        # For ELF symbols inside no definition: where each unit's code lies, and the
        # named entries without code (a definition whose code has no entry of its own).
        self.units: list[tuple[str, str]] = []
        self.unit_intervals: list[tuple[int, int, int]] = []
        self.declared_only: dict[str, list[tuple[int, str | None, int | None]]] = {}
        self.prototypes: dict[str, set[tuple[str, str]]] = {}

    def start_unit(self, name: str, comp_dir: str, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self.finish_unit()
        self.census.units += 1
        self.unit_name, self.comp_dir = name, comp_dir
        self.file_names = {}
        self.units.append((name, comp_dir))
        self.unit_intervals.extend((low, high, len(self.units) - 1) for low, high in ranges if low < high)

    def add(self, die: Subprogram) -> None:
        self.census.subprograms += 1
        if die.declaration:
            self.census.declarations += 1
        self.unit.append(die)
        self.host = die.offset

    def add_inlined(self, call: InlinedCall) -> None:
        if self.want_inlines:
            self.unit_inlines.append(call)

    def add_call_site(self, return_address: int) -> None:
        if self.want_call_sites and self.host is not None:
            self.unit_call_sites.append((self.host, return_address))

    def finish_call_sites(self, by_offset: dict[int, Subprogram]) -> None:
        """The unit's return addresses, each placed in the function range of the unit that holds it (a .cold part is a copy
        of its own). By address, not by the DIE it is under: GCC may put a call site of an inline function's only
        out-of-line copy under the abstract instance, which has no code (static_key_enable in 7.3's lbr.c)."""
        spans = sorted((low, high, die.offset) for die in self.unit if die.has_code and not die.declaration for low, high in die.ranges)
        starts = [low for low, _, _ in spans]
        for _, address in self.unit_call_sites:
            index = bisect.bisect_right(starts, address - 1) - 1  # a call that ends its function returns to its high_pc
            low, high, offset = spans[index] if index >= 0 else (0, 0, 0)
            name = die_origin_attributes(by_offset[offset], by_offset)[0] if low < address <= high else None
            if name is None:
                self.census.call_sites_unplaced += 1
                continue
            self.call_copies.setdefault(low, (high - low, name, len(self.units) - 1))
            self.return_addresses.append(address)
            self.census.call_sites += 1
        self.unit_call_sites = []

    def finish_inlines(self, by_offset: dict[int, Subprogram]) -> None:
        """The unit's inlined calls, under their host's name: each distinct call once, at most INLINES_PER_FUNCTION per host."""
        for call in self.unit_inlines:
            host = by_offset.get(call.host)
            if host is None or host.declaration or not host.has_code:
                continue
            self.census.inlined += 1
            host_name = die_origin_attributes(host, by_offset)[0]
            origin = by_offset.get(call.origin) if call.origin is not None else None
            callee = (die_origin_attributes(origin, by_offset)[0] if origin else None) or call.origin_name
            if host_name is None or callee is None:
                continue
            call_file = call.call_file or self.call_file_path(call.call_file_index)
            where = self.paths.relative(call_file, self.comp_dir) if call_file else "?"
            entry = f"{callee} ({where}:{call.call_line})" if call.call_line else f"{callee} ({where})"
            kept = self.inlines.setdefault(host_name, {})
            if entry in kept:
                continue
            if len(kept) >= INLINES_PER_FUNCTION:
                cut = self.cut_calls.setdefault(host_name, set())
                if entry not in cut:  # counted once, as the kept ones
                    cut.add(entry)
                    self.inlines_cut[host_name] = len(cut)
                    self.census.inlined_cut += 1
                continue
            kept[entry] = None
            self.census.inlined_kept += 1
        self.unit_inlines = []

    def finish_unit(self) -> None:
        by_offset = {die.offset: die for die in self.unit}
        for die in self.unit:
            if die.decl_file and die.decl_file_index is not None:
                self.file_names.setdefault(die.decl_file_index, die.decl_file)
        for die in self.unit:
            if die.decl_file is None and die.decl_file_index is not None:
                die.decl_file = self.indexed_file(die.decl_file_index)
        unit_file = self.paths.relative(self.unit_name, self.comp_dir) if self.unit_name else ""
        for die in self.unit:
            if die.declaration:
                if die.name is not None and die.decl_file:
                    self.prototypes.setdefault(die.name, set()).add((die.decl_file, self.comp_dir))
                continue
            if not die.has_code:
                if die.name is not None and self.units:
                    self.declared_only.setdefault(die.name, []).append((len(self.units) - 1, die.decl_file, die.decl_line))
                continue
            name, decl_file, decl_line = die_origin_attributes(die, by_offset)
            if name is None:
                self.census.unresolved_origin += 1
                continue
            self.census.definitions += 1
            if die.name is None:
                self.census.clones += 1
            if not decl_file:
                self.census.path_from_unit += 1
            declared = self.paths.relative(decl_file, self.comp_dir) if decl_file else ""
            definition = definition_string(declared, decl_line, unit_file)
            if not definition:
                self.census.without_path += 1
                continue
            add_definitions(self.files, name, [definition])
            for low, high in die.ranges:
                self.intervals.append((low, high, (definition,)))
        self.finish_inlines(by_offset)
        self.finish_call_sites(by_offset)
        self.unit = []
        self.host = None

    def call_file_path(self, index: int | None) -> str | None:
        """libdwarf's index-only call_file: as indexed_file, without counting a definition without a path."""
        if index is None:
            return None
        return self.file_names.get(index) or (self.unit_name if index == 1 else None)

    def indexed_file(self, index: int) -> str | None:
        """A decl_file libdwarf printed as an index only: the path another entry of the unit printed, else the unit's file for index 1."""
        if index in self.file_names:
            return self.file_names[index]
        if index == 1:
            return self.unit_name
        self.census.without_path += 1
        return None

    def symbol_map(self, symbols: list[tuple[int, str]]) -> dict[str, list[str]]:
        """Place ELF function symbols inside DWARF definitions by address; keep DWARF names ftrace cannot print too."""
        self.finish_unit()
        if not symbols:
            return {name: files for name, files in self.files.items()}
        import bisect

        self.intervals.sort()
        self.unit_intervals.sort()
        starts = [low for low, _, _ in self.intervals]
        unit_starts = [low for low, _, _ in self.unit_intervals]
        by_symbol: dict[str, list[str]] = {}
        for address, name in symbols:
            index = bisect.bisect_right(starts, address) - 1
            if index < 0 or not (self.intervals[index][0] <= address < self.intervals[index][1]):
                files = self.files.get(base_function_name(name)) or self.undefined_symbol_files(name, address, unit_starts)
                if not files:
                    continue
            else:
                files = list(self.intervals[index][2])
            add_definitions(by_symbol, name, files)
        for name, files in self.files.items():
            by_symbol.setdefault(name, files)
        return by_symbol

    def undefined_symbol_files(self, name: str, address: int, unit_starts: list[int]) -> list[str]:
        """Files for an ELF symbol inside no definition: its named entry without code, else the unit holding its code, else its prototype.

        GCC leaves some functions with code but only a named DW_TAG_subprogram without
        low_pc (HUF_getErrorName, the __bpf_trace_* of include/trace/events/*.h);
        assembly symbols (asm_exc_page_fault) lie in their .S unit's ranges only.
        """
        import bisect

        index = bisect.bisect_right(unit_starts, address) - 1
        unit = self.unit_intervals[index][2] if index >= 0 and address < self.unit_intervals[index][1] else None
        entries = self.declared_only.get(name) or self.declared_only.get(base_function_name(name)) or []
        if unit is not None:
            entries = [entry for entry in entries if entry[0] == unit]
        files: list[str] = []
        for entry_unit, decl_file, decl_line in entries:
            definition = self.definition_text(decl_file, decl_line, *self.units[entry_unit])
            if definition and definition not in files:
                files.append(definition)
        if files:
            self.census.by_declaration += 1
        elif unit is not None and self.units[unit][0]:
            files = [self.paths.relative(*self.units[unit])]
            self.census.by_unit += 1
        elif name in self.prototypes:  # code from top-level asm (static-call trampolines): only a prototype names it
            declared_in = sorted({self.paths.relative(decl_file, comp_dir) for decl_file, comp_dir in self.prototypes[name]})
            files = [DEFINITION_SEPARATOR.join(declared_in)]  # one function whose prototype several files give: the filter matches each
            self.census.by_prototype += 1
        return files

    def definition_text(self, decl_file: str | None, decl_line: int | None, unit_name: str, comp_dir: str) -> str:
        """"decl:line|unit" as finish_unit writes it: the declaring file and line, then the unit's file when it differs."""
        declared = self.paths.relative(decl_file, comp_dir) if decl_file else ""
        return definition_string(declared, decl_line, self.paths.relative(unit_name, comp_dir) if unit_name else "")


def definition_string(declared: str, line: int | None, compiled: str) -> str:
    """"declared:line|compiled" as the map stores it: the line goes with the declaring file, the compiled-in file comes when it differs."""
    parts = [declared + (f":{line}" if line else "")] if declared else []
    if compiled and compiled != declared:
        parts.append(compiled)  # defined in a header or #included .c: the filter matches either
    return DEFINITION_SEPARATOR.join(parts)


ORIGIN_STEPS = 4  # a clone -> its abstract instance -> a declaration: DWARF chains are short; a loop must end


def die_origin_attributes(die: Subprogram, by_offset: dict[int, Subprogram]) -> tuple[str | None, str | None, int | None]:
    """The name, declaring file and line of a definition: each from the DIE itself, else from the DIE it refers to.

    A clone (foo.isra.0) or an out-of-line copy of an inline function has only DW_AT_abstract_origin; a definition
    after a declaration may have DW_AT_specification and leave out the attributes equal to the declaration's (GCC
    writes decl_line but no decl_file when only the line differs). So each attribute comes from the nearest DIE of
    the chain that has it; a reference outside the unit leaves the name llvm-dwarfdump printed beside it.
    """
    name, decl_file, decl_line = die.name, die.decl_file, die.decl_line
    current = die
    for _ in range(ORIGIN_STEPS):
        origin = by_offset.get(current.origin) if current.origin is not None else None
        if origin is None:
            break
        name, decl_file, decl_line = name or origin.name, decl_file or origin.decl_file, decl_line or origin.decl_line
        current = origin
    return name or die.origin_name, decl_file, decl_line


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
    """Parse `llvm-dwarfdump --debug-info`: every unit's DIEs, blank-line separated (the depth-1 subprograms and the
    inlined subroutines below them; the rest is skipped by the block regex)."""
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
    offset = LLVM_DIE_OFFSET.match(block, line_start, match.start())
    if offset is None:
        raise DwarfdumpOutputError(f"a DW_TAG_{tag.decode()} without its offset ({block[line_start : match.end(1)][:80].decode('utf-8', 'replace')!r})")
    depth = (match.start() - offset.end(1) - 2) // 2  # "0x...:" then 1 space, 2 more per level
    offset = int(offset.group(1), 16)
    if tag == b"inlined_subroutine":
        add_llvm_inlined(body, collector)
        return
    if tag in (b"call_site", b"GNU_call_site"):
        add_llvm_call_site(body, collector)
        return
    if tag == b"subprogram" and depth > 1:  # a block-scope declaration (extern in a function body): not a definition
        return
    if tag != b"subprogram":
        found = LLVM_ATTRIBUTE.findall(body)
        unit = {attr.decode(): quoted(value.decode("utf-8", "replace")) for attr, value, _, _ in found if attr}
        collector.start_unit(unit.get("name", ""), unit.get("comp_dir", ""), llvm_unit_ranges(unit, found))
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


def add_llvm_inlined(body: bytes, collector: DefinitionCollector) -> None:
    """An inlined callee of the current function: its origin (a reference in the unit, with the name printed beside it) and call line."""
    if collector.host is None:
        return
    call = InlinedCall(collector.host)
    for attr, value, _, _ in LLVM_ATTRIBUTE.findall(body):
        text = value.decode("utf-8", "replace")
        if attr == b"abstract_origin":
            reference = REFERENCE.match(text)
            call.origin = int(reference.group(1), 16) if reference else None
            call.origin_name = quoted(text) if '"' in text else None
        elif attr == b"call_file":
            call.call_file = quoted(text)
        elif attr == b"call_line":
            call.call_line = decl_line_value(text)
    collector.add_inlined(call)


def add_llvm_call_site(body: bytes, collector: DefinitionCollector) -> None:
    """A call in the current function: its return address (a tail call has one too, but never returns there: skipped)."""
    found = LLVM_CALL_RETURN.search(body)
    if found and not any(attribute.encode() in body for attribute in TAIL_CALL):
        collector.add_call_site(int(found.group(1), 16))


def llvm_unit_ranges(unit: dict[str, str], found: list[tuple[bytes, bytes, bytes, bytes]]) -> list[tuple[int, int]]:
    """A unit's code: its DW_AT_ranges list, else low_pc..high_pc (a unit that has ranges prints low_pc 0)."""
    ranges = [(int(low, 16), int(high, 16)) for attr, _, low, high in found if not attr]
    if ranges:
        return ranges
    try:
        return [(int(unit["low_pc"], 16), int(unit["high_pc"], 16))]
    except (KeyError, ValueError):
        return []


class DwarfdumpOutputError(UserError):
    """The dump has a shape no llvm-dwarfdump prints: a wrapper's noise, another program."""

    def __init__(self, what: str) -> None:
        super().__init__(f"llvm-dwarfdump output not understood: {what} (is --dwarfdump a real llvm-dwarfdump?)")


def address_value(text: str, attr: str) -> int:
    match = ADDRESS.match(text.strip())
    if match is None:
        raise DwarfdumpOutputError(f"{attr} ({text.strip().rstrip(')')[:40]}) is not an address")
    return int(match.group(1), 16)


def decl_line_value(text: str) -> int | None:
    """"2642)" -> 2642; a line 0 (no line, DWARF 5) or anything else -> None."""
    found = DECIMAL.match(text)
    return (int(found.group(1)) or None) if found else None


def quoted(text: str) -> str:
    match = QUOTED.search(text)
    return match.group(1) if match else text.rstrip(")")


def apply_llvm_attribute(die: Subprogram, attr: str, text: str) -> None:
    if attr == "name":
        die.name = quoted(text)
    elif attr == "decl_file":
        die.decl_file = quoted(text)
    elif attr == "decl_line":
        die.decl_line = decl_line_value(text)
    elif attr == "low_pc":
        die.low_pc = address_value(text, "DW_AT_low_pc")
        die.has_code = True
    elif attr == "high_pc" and die.low_pc is not None:
        die.ranges.append((die.low_pc, address_value(text, "DW_AT_high_pc")))
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
    implicit-const form, only the file's index: the index's path is learnt from
    the unit's other functions that print it and applied when the unit ends
    (learning from types and variables too, a search on most lines, cost 20 %
    of the parse for 1 more line in 6,196 definitions of /usr/lib/debug); else
    index 1 is taken as the unit's own source file (GCC's usual first file),
    other indexes stay without a path and are counted.
    """
    done = 0
    inlined: list[str] = []  # the lines of an inlined subroutine's DIE: its ranges can push call_file to a later line
    for raw in chunk_lines(chunks):
        done += len(raw) + 1
        line = raw.decode("utf-8", "replace")
        match = LIBDWARF_DIE.match(line)
        if not match:
            if inlined and "DW_AT_call_" in line:  # after its ranges' lines: call_file and call_line, kept alone
                inlined.append(line)
            continue
        if inlined:
            add_libdwarf_inlined(" ".join(inlined), collector)
            inlined = []
        depth, offset, tag, attrs = match.groups()
        if tag == "DW_TAG_inlined_subroutine":
            inlined = [attrs]
        elif tag in ("DW_TAG_compile_unit", "DW_TAG_partial_unit"):
            name = LIBDWARF_ATTRS["name"].search(attrs)
            comp_dir = LIBDWARF_ATTRS["comp_dir"].search(attrs)
            collector.start_unit(name.group(1) if name else "", comp_dir.group(1) if comp_dir else "", libdwarf_unit_range(attrs))
        elif tag == "DW_TAG_subprogram" and depth == "1":
            collector.add(libdwarf_subprogram(int(offset, 16), attrs))
        elif tag in CALL_SITE_TAGS and not any(attribute in attrs for attribute in TAIL_CALL):
            found = LIBDWARF_CALL_RETURN.search(attrs)
            if found:
                collector.add_call_site(int(found.group(1), 16))
        if progress and done & 0xFFFFF <= len(raw):
            progress.update(done, f"{collector.census.subprograms:,} subprograms")
    if inlined:
        add_libdwarf_inlined(" ".join(inlined), collector)


def add_libdwarf_inlined(attrs: str, collector: DefinitionCollector) -> None:
    if collector.host is None:
        return
    call = InlinedCall(collector.host)
    origin = LIBDWARF_ATTRS["abstract_origin"].search(attrs)
    call.origin = int(origin.group(1), 16) if origin else None
    call_file = LIBDWARF_CALL_FILE.search(attrs)
    if call_file:
        call.call_file_index = int(call_file.group(1), 16)
        call.call_file = call_file.group(2) or None
    call_line = LIBDWARF_CALL_LINE.search(attrs)
    call.call_line = int(call_line.group(1), 0) or None if call_line else None
    collector.add_inlined(call)


def libdwarf_unit_range(attrs: str) -> list[tuple[int, int]]:
    """low_pc..high_pc of a unit (a DW_AT_ranges list is not on the DIE's line: those units get none)."""
    low, high = LIBDWARF_ATTRS["low_pc"].search(attrs), LIBDWARF_ATTRS["high_pc"].search(attrs)
    return [(int(low.group(1), 16), int(high.group(1), 16))] if low and high else []


def libdwarf_subprogram(offset: int, attrs: str) -> Subprogram:
    die = Subprogram(offset)
    found = {key: pattern.search(attrs) for key, pattern in LIBDWARF_ATTRS.items()}
    if found["name"]:
        die.name = found["name"].group(1)
    if found["decl_file"]:
        index, path = found["decl_file"].groups()
        die.decl_file_index = int(index, 16)  # its path, when not printed here, is found when the unit ends
        die.decl_file = path or None
    if found["decl_line"]:
        die.decl_line = int(found["decl_line"].group(1), 0) or None
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


class ProcessGroup:
    """A helper program (dwarfdump, nm) run as the leader of its own process group.

    Killing only the direct child would orphan what a wrapper script started and
    keep it writing; ending the group ends them all, on every way out.
    """

    def __init__(self, command: list[str], **streams: object) -> None:
        import subprocess

        self.process = subprocess.Popen(command, start_new_session=True, env=c_locale(), **streams)
        self.stdout: IO[bytes] | None = self.process.stdout

    def wait(self, timeout: float | None = None) -> int:
        return self.process.wait(timeout)

    def communicate(self, timeout: float) -> bytes:
        return self.process.communicate(timeout=timeout)[0] or b""

    def end(self) -> int:
        """Kill what is left of the group (all of it after an error or a signal, stragglers after a normal end) and reap the leader."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()


class ElfSymbols:
    """Function symbols (t/T/w/W) from nm, the names ftrace prints: started early, it runs beside dwarfdump."""

    def __init__(self, vmlinux: str) -> None:
        import shutil
        import subprocess

        self.output = tempfile.TemporaryFile()
        nm = shutil.which("nm")
        self.process = ProcessGroup([nm, "--defined-only", vmlinux], stdout=self.output, stderr=subprocess.DEVNULL) if nm else None

    def result(self) -> list[tuple[int, str]]:
        if self.process is None:
            warn("nm (binutils) not found: mapping DWARF names only, without the ELF symbol join")
            return []
        try:
            status = self.process.wait()
        finally:
            self.process.end()
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
        if self.process:
            self.process.end()
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


DWARFDUMP_VERSION_TIMEOUT = 30.0  # seconds for `--version`: a program that hangs there is not a usable dwarfdump


def dwarfdump_kind(path: str) -> str:
    import subprocess

    try:
        process = ProcessGroup([path, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as err:
        raise UserError(f"cannot run {path}: {err.strerror}") from err
    try:
        output = process.communicate(timeout=DWARFDUMP_VERSION_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise UserError(f"{path} --version did not answer within {DWARFDUMP_VERSION_TIMEOUT:g} s") from None
    finally:
        process.end()
    return "llvm" if b"LLVM" in output else "libdwarf"


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
    if not elf_has_debug_info(path):
        raise UserError(f"{path} has no DWARF debug info: use the debug vmlinux (Debian: /usr/lib/debug/boot/vmlinux-VERSION)")


class NoDebugInfo(UserError):
    """No DWARF to read: the ELF file has no .debug_info (a stripped module), or dwarfdump printed no subprogram from it."""


class DamagedElf(UserError):
    """A cut or damaged ELF file: dwarfdump would read what is left and call it "no debug info"."""


def elf_has_debug_info(path: str) -> bool:
    """Whether the ELF file has a .debug_info section; DamagedElf when its headers point past its end.

    The section header table sits at the end of a linked file: a truncated copy
    loses it first, and dwarfdump then sees no sections at all.
    """
    import struct

    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            ident = handle.read(64)
            if ident[:4] != b"\x7fELF":
                raise DamagedElf(f"{path} is not an ELF file")
            if len(ident) < 52 or ident[4] not in (1, 2) or ident[5] not in (1, 2):
                raise DamagedElf(f"{path} is truncated or not a valid ELF file: its ELF header is incomplete")
            wide, order = ident[4] == 2, "<" if ident[5] == 1 else ">"
            (table,) = struct.unpack_from(order + ("Q" if wide else "I"), ident, 0x28 if wide else 0x20)
            entry_size, count, names_index = struct.unpack_from(order + "HHH", ident, 0x3A if wide else 0x2E)
            entry = order + ("IIQQQQ" if wide else "IIIIII")  # name, type, flags, address, offset, size
            if table == 0 or entry_size < struct.calcsize(entry):
                raise DamagedElf(f"{path} is not a valid ELF file: it has no section header table")
            if count == 0 and table + entry_size <= size:  # more than 65,279 sections: the count is in section 0
                handle.seek(table)
                count = struct.unpack(entry, handle.read(struct.calcsize(entry)))[5]
            end = table + count * entry_size
            if end > size:
                raise DamagedElf(f"{path} is truncated or not a valid ELF file: its section headers end at byte {end:,}, the file has {size:,}")
            handle.seek(table)
            raw = handle.read(count * entry_size)
            sections = [struct.unpack_from(entry, raw, index * entry_size) for index in range(count)]
            for _, kind, _, _, offset, length in sections:
                if kind not in (0, 8) and offset + length > size:  # SHT_NULL and SHT_NOBITS have no bytes in the file
                    raise DamagedElf(f"{path} is truncated: a section ends at byte {offset + length:,}, the file has {size:,}")
            if names_index >= count:  # SHN_XINDEX (the index is elsewhere) or nonsense: let dwarfdump judge
                return True
            handle.seek(sections[names_index][4])
            names = handle.read(sections[names_index][5])
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}") from err
    section_names = {names[start : names.find(b"\0", start)] for start, *_ in sections}
    return bool(section_names & {b".debug_info", b".zdebug_info"})


def run_dwarfdump(program: str, kind: str, path: str, collector: DefinitionCollector, progress: Progress | None) -> None:
    """Stream one ELF file's DWARF through the parser; a failing or empty dump is a UserError."""
    import subprocess

    # Whole trees for the inlined calls (they are deeper than depth 1); libdwarf's -i prints them all anyway.
    depth = [] if collector.want_inlines or collector.want_call_sites else ["--recurse-depth=1"]
    command = [program, "--debug-info", *depth, path] if kind == "llvm" else [program, "-i", "-d", path]
    before = collector.census.subprograms
    with tempfile.TemporaryFile() as errors:
        try:
            process = ProcessGroup(command, stdout=subprocess.PIPE, stderr=errors)
        except OSError as err:
            raise UserError(f"cannot run {program}: {err.strerror}") from err
        assert process.stdout is not None
        parse = parse_llvm_dwarfdump if kind == "llvm" else parse_libdwarf_dwarfdump
        try:
            parse(read_ahead(process.stdout), collector, progress)
            status = process.wait()
        finally:
            process.end()  # on every way out (error, Ctrl-C, SIGTERM): no dwarfdump or wrapper child left behind
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
        raise NoDebugInfo(f"no functions found in {path}: {tool} printed no DWARF subprogram entries (is it a dwarfdump?)")


def generate_symbol_map(vmlinux: str, dwarfdump: str | None, inlines: bool = True, call_sites: bool = True) -> tuple[dict[str, list[str]], DefinitionCollector, str]:
    check_vmlinux(vmlinux)
    program, kind = find_dwarfdump(dwarfdump)
    collector = DefinitionCollector()
    collector.want_inlines = inlines
    collector.want_call_sites = call_sites
    progress = Progress(f"reading DWARF with {os.path.basename(program)}", None)
    symbols = ElfSymbols(vmlinux)
    try:
        run_dwarfdump(program, kind, vmlinux, collector, progress)
        elf_symbols = symbols.result()
    except BaseException:
        symbols.cancel()
        raise
    finally:
        progress.close()
    files = collector.symbol_map(elf_symbols)
    collector.elf_symbols = elf_symbols
    collector.dwarfdump_program = program
    if not files:
        raise UserError(f"no functions found in {vmlinux}: {os.path.basename(program)}'s output names no function with a source file")
    return files, collector, f"{os.path.basename(program)} ({kind})"


@dataclass
class ModuleReport:
    read: int = 0
    without_debug_info: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, why) of files that could not be read
    names: set[str] = field(default_factory=set)


# How `make modules_install` compresses modules (CONFIG_MODULE_COMPRESS_*); the debug
# copies of distributions are .ko (Debian's -dbg) or .ko.debug (Fedora's -debuginfo).
MODULE_COMPRESSIONS = {".xz": "xz", ".zst": "zstd", ".gz": "gzip"}
MODULE_SUFFIXES = (".ko", ".ko.debug", *(".ko" + suffix for suffix in MODULE_COMPRESSIONS))


def module_debug_files(directories: list[str], only_loaded: bool) -> list[str]:
    """The module debug files under each DIRECTORY, each file once, optionally only modules loaded now."""
    found: dict[str, str] = {}  # real path -> path as found: a folder given twice, or inside another, reads its modules once
    for directory in directories:
        if not os.path.isdir(directory):
            raise UserError(f"--modules {directory} is not a directory (Debian: /usr/lib/debug/lib/modules/VERSION)")
        for root, _, names in os.walk(directory):
            for name in names:
                if name.endswith(MODULE_SUFFIXES):
                    path = os.path.join(root, name)
                    found.setdefault(os.path.realpath(path), path)
    paths = sorted(found.values())
    if only_loaded:
        loaded = loaded_module_names()
        paths = [path for path in paths if module_name(path) in loaded]
    if not paths:
        kinds = ", ".join(MODULE_SUFFIXES)
        raise UserError(f"no {'loaded ' if only_loaded else ''}module debug files ({kinds}) under {', '.join(directories)}")
    return paths


def module_name(path: str) -> str:
    """fs/9p/9p.ko.xz -> 9p; the kernel treats - and _ in module names alike and prints _ (9pnet-virtio: 9pnet_virtio)."""
    name = os.path.basename(path)
    for suffix in (*MODULE_COMPRESSIONS, ".debug"):
        name = name.removesuffix(suffix)
    return name.removesuffix(".ko").replace("-", "_")


def module_key(name: str, module: str) -> str:
    """The symbol map's name for a module's function: as the trace prints it (`helper [netmod]`)."""
    return f"{name} [{module}]"


def loaded_module_names() -> set[str]:
    try:
        with open("/proc/modules", encoding="utf-8") as handle:
            return {line.split()[0].replace("-", "_") for line in handle if line.strip()}
    except OSError as err:
        raise UserError(f"cannot read /proc/modules for --only-loaded: {err.strerror}") from err


class ScratchSpaceError(UserError):
    """The temporary folder cannot take a decompressed module: every later module would fail the same way."""


def decompressed_chunks(raw: IO[bytes], kind: str) -> tuple[Iterator[bytes], tuple[type[Exception], ...]]:
    """RAW's decompressed content in chunks, and the errors its library raises on damaged data."""
    if kind == "xz":
        return stream_chunks(lzma.LZMAFile(raw)), (lzma.LZMAError,)
    if kind == "gzip":
        return stream_chunks(gzip.GzipFile(fileobj=raw)), (zlib.error,)  # gzip's BadGzipFile is an OSError
    with contextlib.suppress(ImportError):
        from compression import zstd  # type: ignore[import-not-found]  # Python 3.14+: truncation is an EOFError, as for xz

        return stream_chunks(zstd.ZstdFile(raw)), (zstd.ZstdError,)
    try:
        import zstandard
    except ImportError:
        raise UserError("zstd-compressed modules (.ko.zst) need the Python package 'zstandard' (pip install zstandard)") from None
    return zstandard_chunks(raw, zstandard.ZstdDecompressor()), (zstandard.ZstdError,)


def stream_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    with stream:
        yield from iter(lambda: stream.read(CHUNK_BYTES), b"")


def zstandard_chunks(raw: IO[bytes], decompressor: Any) -> Iterator[bytes]:
    """zstandard's stream reader ends a cut frame silently (0 bytes, no error): its frame's end is checked here."""
    frame = decompressor.decompressobj()
    for block in iter(lambda: raw.read(CHUNK_BYTES), b""):
        out = frame.decompress(block)
        if out:  # a block that ends inside a compressed block gives nothing yet: no end of the data
            yield out
    if not frame.eof:
        raise EOFError("compressed file ended before the end of its zstd frame")


def decompress_module(path: str, kind: str, target: str) -> None:
    """Write PATH's decompressed content to TARGET; damaged data is a UserError naming PATH, a full TARGET folder a ScratchSpaceError."""
    try:
        raw = open(path, "rb")
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}") from None
    with raw:
        chunks, library_errors = decompressed_chunks(raw, kind)
        try:
            out = open(target, "wb", buffering=0)  # unbuffered: a full disk fails in write(), never later in close()
        except OSError as err:
            raise ScratchSpaceError(f"cannot decompress {path} into {os.path.dirname(target)}: {err.strerror}") from None
        with out:
            while True:
                try:
                    chunk = next(chunks, b"")
                except (*READ_ERRORS, *library_errors) as err:  # never Interrupted: a signal ends the run
                    raise UserError(f"{path}: damaged, truncated or not {kind} data ({err})") from None
                if not chunk:
                    break
                try:
                    written = memoryview(chunk)
                    while written:  # a raw write may take part of the chunk
                        written = written[out.write(written) or 0 :]
                except OSError as err:
                    raise ScratchSpaceError(f"cannot decompress {path} into {os.path.dirname(target)}: {err.strerror} (set TMPDIR to a larger folder)") from None


@contextlib.contextmanager
def module_elf(path: str, scratch: str) -> Iterator[str]:
    """PATH itself, or for a compressed module its ELF content in a file under SCRATCH, removed on every way out (Ctrl-C too)."""
    kind = MODULE_COMPRESSIONS.get(os.path.splitext(path)[1])
    if kind is None:
        yield path
        return
    target = os.path.join(scratch, os.path.basename(path).rsplit(".", 1)[0])
    try:
        decompress_module(path, kind, target)
        yield target
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)


def read_module(path: str, scratch: str, program: str, kind: str, collector: DefinitionCollector) -> DefinitionCollector:
    """One module's definitions; NoDebugInfo or a UserError that names PATH (never the temporary copy)."""
    module = DefinitionCollector()
    module.paths = collector.paths
    module.want_inlines = collector.want_inlines
    module.want_call_sites = False  # a .ko is relocatable: see the README (modules have no call sites)
    with module_elf(path, scratch) as elf:
        try:
            if not elf_has_debug_info(elf):
                raise NoDebugInfo(f"{path} has no DWARF debug info")
            run_dwarfdump(program, kind, elf, module, None)
        except Interrupted:
            raise
        except UserError as err:
            kind_of_error = NoDebugInfo if isinstance(err, NoDebugInfo) else UserError
            raise kind_of_error(str(err).replace(elf, path)) from None
    module.finish_unit()
    return module


def add_module_symbols(files: dict[str, list[str]], modules: list[str], dwarfdump: str | None, collector: DefinitionCollector) -> ModuleReport:
    """Module functions merged into FILES, by name (module addresses are not final, so no ELF join).

    A module's function is stored as `name [module]`, the trace's own spelling, so
    that visualize gives it its module's files; the bare name keeps vmlinux's files
    when vmlinux has one, else gets the modules' (for lookups that do not know the module).
    """
    program, kind = find_dwarfdump(dwarfdump)
    built_in = set(files)
    report = ModuleReport()
    progress = Progress("reading module DWARF", len(modules), counting=True)
    try:
        scratch_folder = tempfile.TemporaryDirectory(prefix="kernel-magnifier-modules-")
    except OSError as err:  # no usable TMPDIR
        raise UserError(f"cannot make a temporary folder for decompressed modules: {err}") from None
    try:
        with scratch_folder as scratch:
            for index, path in enumerate(modules):
                progress.update(index, module_name(path))
                try:
                    module = read_module(path, scratch, program, kind, collector)
                except NoDebugInfo:
                    report.without_debug_info.append(path)
                    continue
                except (Interrupted, ScratchSpaceError):
                    raise
                except UserError as err:
                    report.failed.append((path, str(err)))
                    continue
                collector.census.add(module.census)
                report.read += 1
                name_of_module = module_name(path)
                for name, definitions in module.files.items():
                    add_definitions(files, module_key(name, name_of_module), definitions)
                    if name not in built_in:
                        add_definitions(files, name, definitions)
                    report.names.add(name)
                add_module_inlines(collector, module, name_of_module, built_in)
    finally:
        progress.close()
    return report


def add_module_inlines(collector: DefinitionCollector, module: DefinitionCollector, name_of_module: str, built_in: set[str]) -> None:
    """A module's inlined calls under `name [module]`, and under the bare name when vmlinux has no such function (as files)."""
    for name, calls in module.inlines.items():
        keys = [module_key(name, name_of_module)] + ([name] if name not in built_in and name not in collector.inlines else [])
        for key in keys:
            collector.inlines.setdefault(key, {}).update(calls)
            if name in module.inlines_cut:
                collector.inlines_cut[key] = collector.inlines_cut.get(key, 0) + module.inlines_cut[name]


def source_files(symbols: SymbolMap, name: str, module: str | None) -> list[str]:
    """A module function's files are its module's (`name [module]` in the map); a built-in one's, or any in a map made
    without that module, are the bare name's."""
    if module:
        found = symbols.files.get(module_key(name, module)) or symbols.files.get(module_key(base_function_name(name), module))
        if found:
            return found
    return symbols.lookup(name)


def write_symbol_map(path: str, files: dict[str, list[str]], header: list[str], inlines: Inlines | None = None,
                     call_sites: dict[str, list[CallSiteLines]] | None = None) -> None:
    with atomic_output(path) as tmp, output_errors(path), open(tmp, "w", encoding="utf-8") as handle:
        handle.write(SYMBOL_MAP_HEADER + "\n")
        for line in header:
            handle.write(f"# {line}\n")
        for name in sorted(files):
            handle.write(name + "\t" + "\t".join(sorted(files[name])) + "\n")
        for name, (calls, cut) in sorted((inlines or {}).items()):
            handle.write(inlines_line(name, calls, cut))
        for name, copies in sorted((call_sites or {}).items()):
            for copy in sorted(copies, key=lambda copy: (copy.size, sorted(copy.lines.items()))):
                handle.write(calls_line(name, copy))


def calls_line(name: str, copy: CallSiteLines) -> str:
    """"#calls<TAB>tcp_push<TAB>126<TAB>4b=net/ipv4/tcp.c:716<TAB>9b=:720": a path equal to the previous one is left out."""
    fields = [CALLS_MARK, name, f"{copy.size:x}"]
    previous = ""
    for offset, where in sorted(copy.lines.items()):
        path, _, line = where.rpartition(":")
        fields.append(f"{offset:x}=" + (f":{line}" if path == previous else where))
        previous = path
    return "\t".join(fields) + "\n"


# ============================================================================
# Call sites (issue 21 point 4): the source line of every call, by return address
# ============================================================================
#
# dwarfdump gives the return addresses (DW_TAG_call_site, DW_TAG_GNU_call_site);
# the line of a call is the innermost frame, inlines included, of its return
# address - 1, asked in one batch of a line tool: llvm-symbolizer (1.3 s for the
# 104,824 call sites of a 7.3 vmlinux), else binutils addr2line (4.4 s).

def find_line_tool(dwarfdump_program: str) -> tuple[str, str] | None:
    """(path, "llvm" or "binutils"): llvm-symbolizer beside the llvm-dwarfdump used, else on PATH, else addr2line."""
    import shutil

    candidates = []
    for program in dict.fromkeys((dwarfdump_program, os.path.realpath(dwarfdump_program))):
        folder, name = os.path.split(program)
        if "llvm-dwarfdump" in name:  # llvm-dwarfdump-14 -> llvm-symbolizer-14
            candidates.append(os.path.join(folder, name.replace("llvm-dwarfdump", "llvm-symbolizer")))
    candidates += ["llvm-symbolizer", *[f"llvm-symbolizer-{version}" for version in range(20, 10, -1)]]
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found, "llvm"
    found = shutil.which("addr2line")
    return (found, "binutils") if found else None


def source_lines_of_calls(tool: str, kind: str, elf: str, addresses: list[int]) -> list[str | None]:
    """The innermost "path:line" of each return address - 1, as the tool prints the path; None where it knows no line."""
    import subprocess

    command = [tool, f"--obj={elf}", "--inlines", "--functions=none"] if kind == "llvm" else [tool, "-a", "-i", "-e", elf]
    with tempfile.TemporaryFile() as queries, tempfile.TemporaryFile() as errors:
        queries.write("".join(f"0x{address - 1:x}\n" for address in addresses).encode())
        queries.seek(0)
        try:
            process = ProcessGroup(command, stdin=queries, stdout=subprocess.PIPE, stderr=errors)
        except OSError as err:
            raise UserError(f"cannot run {tool}: {err.strerror}") from err
        assert process.stdout is not None
        try:  # a pipe read by a thread: Ctrl-C ends the run at once, and process.end() the tool's group
            lines = innermost_frames(chunk_lines(read_ahead(process.stdout)), kind)
            status = process.wait()
        finally:
            process.end()
            process.stdout.close()
        errors.seek(0)
        message = errors.read().decode("utf-8", "replace").strip().splitlines()
    if status != 0 or len(lines) != len(addresses):
        why = message[-1] if message else f"exit status {status}, {len(lines):,} answers to {len(addresses):,} addresses"
        raise UserError(f"{os.path.basename(tool)} could not give the call sites' lines of {elf}: {why} (--no-call-sites makes the map without them)")
    return lines


def innermost_frames(output: Iterable[bytes], kind: str) -> list[str | None]:
    """llvm-symbolizer: each address's frames, innermost first, then a blank line; addr2line -a: "0x..." then its frames."""
    found: list[str | None] = []
    first = True
    for raw in output:
        line = raw.decode("utf-8", "replace").strip()
        if kind == "llvm":
            if not line:
                first = True
                continue
            if first:
                found.append(frame_line(line.rsplit(":", 2)))
            first = False
        elif line.startswith("0x"):
            first = True
        elif first and line:
            found.append(frame_line(line.split(" (discriminator")[0].rsplit(":", 1)))
            first = False
    return found


def frame_line(parts: list[str]) -> str | None:
    """["net/ipv4/tcp.c", "723", col?] -> "net/ipv4/tcp.c:723"; an unknown file or line ("??", 0, "?") -> None."""
    if len(parts) < 2 or parts[0] in ("", "??") or not parts[1].isdigit() or parts[1] == "0":
        return None
    return f"{parts[0]}:{parts[1]}"


def collected_call_sites(collector: DefinitionCollector, elf: str) -> tuple[dict[str, list[CallSiteLines]], str]:
    """Each function copy's call sites with their lines, under the names ftrace prints (the ELF symbols at the copy's
    start: foo.isra.0, foo.cold; the DWARF name without nm), and the line tool used ("" when there is none)."""
    addresses = sorted(set(collector.return_addresses))
    collector.return_addresses = array.array("Q")
    if not addresses:
        return {}, ""
    tool = find_line_tool(collector.dwarfdump_program)
    if tool is None:
        warn("the map has no call sites: neither llvm-symbolizer (llvm) nor addr2line (binutils) was found; install one and generate again")
        return {}, ""
    lines = source_lines_of_calls(*tool, elf, addresses)
    starts = sorted(collector.call_copies)
    per_copy: dict[int, dict[int, str]] = {}
    relative: dict[tuple[str, int], str] = {}  # (path:line as the tool printed it, unit) -> in the kernel tree
    for address, line in zip(addresses, lines):
        index = bisect.bisect_right(starts, address) - 1
        if line is None or index < 0:
            continue
        low = starts[index]
        size, _, unit = collector.call_copies[low]
        if address > low + size:
            continue
        key = (line, unit)
        if key not in relative:
            path, _, number = line.rpartition(":")
            relative[key] = f"{collector.paths.relative(path, collector.units[unit][1])}:{number}"
        per_copy.setdefault(low, {})[address - low] = relative[key]
    collector.census.call_site_lines = sum(len(sites) for sites in per_copy.values())
    collector.census.call_site_copies = len(per_copy)
    names_at: dict[int, list[str]] = {}
    for address, name in collector.elf_symbols:
        names_at.setdefault(address, []).append(name)
    found: dict[str, list[CallSiteLines]] = {}
    for low, sites in per_copy.items():
        size, name, _ = collector.call_copies[low]
        for symbol in names_at.get(low) or [name]:
            found.setdefault(symbol, []).append(CallSiteLines(size, sites))
    return found, os.path.basename(tool[0])


Inlines = dict[str, tuple[list[str], int]]  # host -> its inlined calls "callee (path:line)" and how many more were cut


def inlines_line(name: str, calls: list[str], cut: int) -> str:
    """A comment line to readers before inlined calls (they skip '#' lines): version 2 stays readable by them."""
    return "\t".join([INLINES_MARK, name, *calls, *([f"+{cut} more"] if cut else [])]) + "\n"


def collected_inlines(collector: DefinitionCollector, files: dict[str, list[str]]) -> Inlines:
    names = set(collector.inlines) | set(collector.inlines_cut)
    return {name: (own_file_first(list(collector.inlines.get(name, {})), files.get(name, [])), collector.inlines_cut.get(name, 0)) for name in names}


def own_file_first(calls: list[str], definitions: list[str]) -> list[str]:
    """The calls made in the host's own file first (mostly its direct inlines: tcp_pacing_check in tcp_write_xmit), then
    the rest (mostly what those inlined in turn, from headers: refcount_inc's atomics) in DWARF order: tooltips show the first."""
    own = {part for definition in definitions for part in (definition_parts(definition).path, definition_parts(definition).compiled) if part}
    return sorted(calls, key=lambda call: call.partition(" (")[2].rsplit(":", 1)[0] not in own)


class Interrupted(UserError):
    """A stop signal: the run ends through the usual clean-up, with the shell's 128+N status."""

    def __init__(self, number: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(number).name}")
        self.exit_status = 128 + number


@contextlib.contextmanager
def stop_signals_end_the_run() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise Interrupted, so that every helper's process group is ended and no
    temporary map is left (SIGTERM's default would kill us alone); repeats during the clean-up are ignored."""
    received: list[int] = []

    def handle(number: int, _frame: object) -> None:
        if not received:
            received.append(number)
            raise Interrupted(number)

    numbers = [number for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP) if signal.getsignal(number) is not signal.SIG_IGN]  # nohup, &
    previous = {number: signal.signal(number, handle) for number in numbers}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run_generate_symbol_map(args: argparse.Namespace) -> None:
    with stop_signals_end_the_run():
        generate_symbol_map_file(args)


def generate_symbol_map_file(args: argparse.Namespace) -> None:
    check_outputs([args.output], [args.vmlinux])
    started = time.monotonic()
    say(f"Symbol map mode - reading DWARF debug info of {args.vmlinux}")
    if args.only_loaded and not args.modules:
        raise UserError("--only-loaded needs --modules DIR (the folder of the modules' debug files)")
    modules = module_debug_files(args.modules, args.only_loaded) if args.modules else []
    files, collector, tool = generate_symbol_map(args.vmlinux, args.dwarfdump, not args.no_inlines, not args.no_call_sites)
    report = add_module_symbols(files, modules, args.dwarfdump, collector) if modules else None
    resolving = time.monotonic()
    call_sites, line_tool = collected_call_sites(collector, args.vmlinux)
    resolving = time.monotonic() - resolving
    census = collector.census
    several = sum(1 for sources in files.values() if len(sources) > 1)
    header = [
        f"vmlinux: {args.vmlinux}",
        f"dwarfdump: {tool}",
        f"functions: {len(files)}; names with several files: {several}",
        "format: name<TAB>definition[<TAB>definition...]; a definition is file[:line][|file it is compiled in], files relative to the kernel tree",
        f"inlined calls (ftrace cannot trace them): {INLINES_MARK}<TAB>function<TAB>callee (call file:line)<TAB>...[<TAB>+N more]"
        f" (at most {INLINES_PER_FUNCTION} per function)",
    ]
    if call_sites:
        header.append(f"call sites (lines by {line_tool}): {CALLS_MARK}<TAB>function<TAB>size<TAB>return offset=file:line<TAB>...;"
                      " hex numbers, ':line' when the file is the previous one's, one line per copy of the function")
    if report:
        header.insert(2, f"modules: {report.read} read from {', '.join(args.modules)}; a module's function is written `name [module]`")
    inlines = collected_inlines(collector, files)
    write_symbol_map(args.output, files, header, inlines, call_sites)
    say(
        f"{census.units:,} compile units, {census.subprograms:,} subprogram entries: {census.definitions:,} out-of-line definitions"
        f" ({census.clones:,} compiler clones named through their origin), {census.declarations:,} declarations skipped"
    )
    if census.path_from_unit:
        say(f"{census.path_from_unit:,} definitions without a declaring file (assembly, compiler-made) mapped to their unit's source file")
    if census.by_declaration or census.by_unit or census.by_prototype:
        say(
            f"ELF symbols outside every definition: {census.by_declaration:,} names mapped by their declaration only (a named entry"
            f" without code), {census.by_unit:,} by the unit holding their code (assembly), {census.by_prototype:,} by their prototype"
            " (static-call trampolines)"
        )
    if census.inlined:
        cut = f", {census.inlined_cut:,} more cut (over {INLINES_PER_FUNCTION} in a function)" if census.inlined_cut else ""
        say(f"inlined calls: {census.inlined:,} entries, {census.inlined_kept:,} distinct kept in {len(inlines):,} functions{cut}")
    if call_sites:
        say(f"call sites: {census.call_sites:,} return addresses in DWARF (tail calls left out), {census.call_site_lines:,} with a source line"
            f" in {census.call_site_copies:,} function copies, {len(call_sites):,} names (lines by {line_tool} in {resolving:.1f} s)")
        if census.call_sites_unplaced:
            say(f"{census.call_sites_unplaced:,} call sites left out: in no function's address ranges of their unit as the dump printed them")
    if census.without_path or census.unresolved_origin:
        say(f"not mapped: {census.without_path:,} definitions without a file path, {census.unresolved_origin:,} clones whose origin was not found")
    if report:
        say(f"modules: {report.read:,} of {len(modules):,} read from {', '.join(args.modules)}, {len(report.names):,} function names from them")
        if report.without_debug_info:
            warn(f"{len(report.without_debug_info):,} module files without debug info (stripped?), e.g. {report.without_debug_info[0]}")
        if report.failed:  # one bad file among thousands of modules does not cost the whole map: said, and left out
            warn(f"{len(report.failed):,} module files could not be read and are left out, e.g. {report.failed[0][1]}")
    own = sum(1 for name in files if " [" in name)  # a module's function, `name [module]`
    modules_own = f", {own:,} more as a module's own (name [module])" if report else ""
    say(f"{len(files) - own:,} function names mapped{modules_own}, {several:,} of them to several files (kept all, shown as 'one of N files')")
    say(f"{args.output} generated in {time.monotonic() - started:.1f} s")


# ============================================================================
# Views: focus on call paths, filters, what fits in a drawing
# ============================================================================
# Every view is derived from the calling-context tree: --root and --callers
# cut exact subtrees (or the reversed tree of callers) out of it, and the
# function graph of the result is what the filters and the drawing work on.

def function_names(tree: CallTree) -> set[str]:
    return {tree.function[node] or "" for node in tree.walk()}


def matching_functions(tree: CallTree, patterns: list[str], option: str, symbols: SymbolMap | None = None) -> set[str]:
    """Function names matching any glob; a pattern that matches nothing is an error (a typo, usually)."""
    names = function_names(tree)
    matched: set[str] = set()
    for pattern in patterns:
        found = {name for name in names if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(base_function_name(name), pattern)}
        if not found:
            inlined = only_inlined_message(pattern, symbols, names)
            if inlined:
                raise UserError(f"{option} {pattern}: {inlined}")
            raise UserError(f"{option} {pattern}: no function of that name was called in the trace{name_suggestions(pattern, names)}")
        matched |= found
    return matched


SHOWN_HOSTS = 8  # functions named in an "only inlined" line


def only_inlined_message(name: str, symbols: SymbolMap | None, traced_names: Iterable[str]) -> str | None:
    """For a name the trace never has: "F is only inlined (ftrace cannot trace it): it is inlined into X, Y (traced)",
    when the symbol map knows functions F is inlined into; None otherwise (a typo, a function not called)."""
    hosts = symbols.hosts_of(name) if symbols else []
    if not hosts:
        return None
    traced_bases = {base_function_name(traced) for traced in traced_names}
    traced = [host for host in hosts if host in traced_bases]
    head = f"{name} is only inlined (ftrace cannot trace it): it is inlined into "
    if symbols and symbols.lookup(name):  # an out-of-line copy too (address taken, or not inlined everywhere)
        head = f"{name} was not called in the trace, and where the compiler inlined it ftrace cannot see it: it is inlined into "
    if not traced:
        more = f" and {len(hosts) - SHOWN_HOSTS:,} more" if len(hosts) > SHOWN_HOSTS else ""
        return head + ", ".join(hosts[:SHOWN_HOSTS]) + more + f" ({plural(len(hosts), 'function')}, none of them in this trace)"
    more = f", {len(traced) - SHOWN_HOSTS:,} more traced" if len(traced) > SHOWN_HOSTS else ""
    untraced = len(hosts) - len(traced)
    return head + ", ".join(traced[:SHOWN_HOSTS]) + " (traced)" + more + (f", {untraced:,} more not in this trace" if untraced else "")


def name_suggestions(pattern: str, names: Iterable[str]) -> str:
    """' (did you mean ...?)': the names the pattern is the start of (__kmalloc: __kmalloc_node_track_caller), then close spellings."""
    known = sorted(names)
    start = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    longer = sorted((name for name in known if start and name.startswith(start) and name != start), key=lambda name: (len(name), name))
    close = difflib.get_close_matches(pattern, known, n=3)
    shown = list(dict.fromkeys(longer[:3] + close))
    if not shown:
        return ""
    every = f", or '{start}*' for all {len(longer)} names starting so" if len(longer) > 1 else ""
    return f" (did you mean {', '.join(shown)}{every}?)"


def copy_subtree(tree: CallTree, source: int, target_tree: CallTree, target: int, depth: int | None, moved: list[tuple[int, int]] | None = None) -> None:
    """Add `source`'s numbers and its subtree, at most `depth` levels of it, below `target`; `moved` gets (source node, its copy)."""
    work = [(source, target, 0)]
    while work:
        node, into, level = work.pop()
        if moved is not None:
            moved.append((node, into))
        target_tree.calls[into] += tree.calls[node]
        target_tree.total_us[into] += tree.total_us[node]
        target_tree.self_us[into] += tree.self_us[node]
        if node in tree.open_calls:
            target_tree.open_calls[into] = target_tree.open_calls.get(into, 0) + tree.open_calls[node]
        for site, count in tree.call_sites.get(node, {}).items():
            target_tree.note_call_site(into, site, count)
        if node in tree.members:
            add_members(target_tree.members.setdefault(into, {}), tree.members[node])
        kids = tree.children[node]
        if kids and (depth is None or level < depth):
            work.extend((kid, target_tree.child(into, name), level + 1) for name, kid in kids.items())


def focus_subtrees(tree: CallTree, functions: set[str], depth: int | None, moved: list[tuple[int, int]] | None = None) -> CallTree:
    """The subtrees below every outermost activation of the functions, merged per function.

    Only activations that are not already inside another selected activation
    are taken, so recursion (or two selected functions on one path) is not
    counted twice.
    """
    focused = CallTree()
    focused.timed = tree.timed
    stack = list((tree.children[ROOT_NODE] or {}).values())
    while stack:
        node = stack.pop()
        name = tree.function[node] or ""
        if name in functions:
            copy_subtree(tree, node, focused, focused.child(ROOT_NODE, name), depth, moved)
            continue
        kids = tree.children[node]
        if kids:
            stack.extend(kids.values())
    return focused


def focus_callers(tree: CallTree, functions: set[str], depth: int | None, moved: list[tuple[int, int]] | None = None) -> CallTree:
    """The reversed tree: each function at a root, its callers below it, their callers below them.

    A node's calls and self time are those of the selected function's
    activations reached through that chain of callers; its total time counts
    only activations not inside another of the same function (as derive_graph
    does), so F's own total and the folded weights do not count recursion twice.
    `moved` gets (F's node, a reversed node) for every reversed node F's total went to: its off-CPU time goes along.
    """
    reverse = CallTree()
    reverse.timed = tree.timed
    for node in list(tree.walk()):
        name = tree.function[node] or ""
        if name not in functions or (not tree.calls[node] and not tree.total_us[node]):
            continue
        calls, self_us = tree.calls[node], tree.self_us[node]
        total = 0.0 if called_inside_itself(tree, node) else tree.total_us[node]
        target = reverse.child(ROOT_NODE, name)
        if node in tree.members:  # a group's functions: its own, at its root
            add_members(reverse.members.setdefault(target, {}), tree.members[node])
        level = 0
        ancestor = node
        while True:
            reverse.calls[target] += calls
            reverse.total_us[target] += total
            reverse.self_us[target] += self_us
            if moved is not None and total:
                moved.append((node, target))
            ancestor = tree.parent[ancestor]
            level += 1
            if ancestor <= ROOT_NODE or (depth is not None and level > depth):
                break
            target = reverse.child(target, tree.function[ancestor] or "")
    return reverse


def called_inside_itself(tree: CallTree, node: int) -> bool:
    """The node's function is also one of its callers (recursion, or an interrupt arriving inside it)."""
    name = tree.function[node]
    ancestor = tree.parent[node]
    while ancestor > ROOT_NODE:
        if tree.function[ancestor] == name:
            return True
        ancestor = tree.parent[ancestor]
    return False


def reversed_graph(tree: CallTree, stats: TraceStats, modules: dict[str, str]) -> CallGraph:
    """The function graph of a reversed (callers) tree, with edges pointing from caller to callee again.

    A selected function keeps its own numbers, those of its root: where it
    also calls itself (or another selected function), the nodes below would
    add its calls through itself to them.
    """
    graph = derive_graph(tree, stats, modules)
    for name, root in (tree.children[ROOT_NODE] or {}).items():
        graph.calls[name], graph.total_us[name], graph.self_us[name] = tree.calls[root], tree.total_us[root], tree.self_us[root]
    graph.edges = {(callee, caller): count for (caller, callee), count in graph.edges.items()}
    graph.edge_weight = {(callee, caller): weight for (caller, callee), weight in graph.edge_weight.items()}
    graph.reversed = True
    return graph


# --group-by: the kernel at the level of its source tree. Every view works on a call tree, so grouping is one more
# tree: each function replaced by its group, consecutive frames of one group merged into one frame.
GROUP_KINDS = ("dir", "file", "module")
SUBSYSTEM_DEPTH = 2  # --group-by dir: net/ipv4, fs/ext4, kernel/sched, mm (a file at the top of its subsystem: mm/slub.c -> mm)
SUBSYSTEM_DEPTHS = {"drivers": 3, "arch": 3}  # ...but drivers/net/ethernet, drivers/block, arch/x86/kernel, arch/x86/mm
NO_SOURCE_GROUP = "(no source file)"
SEVERAL_DIRS_GROUP = "(several directories)"
SEVERAL_FILES_GROUP = "(several files)"
BUILT_IN_GROUP = "vmlinux"


@dataclass
class Grouping:
    """How --group-by names a function's group: its source directory cut to `depth` folders, its file, or its module."""

    kind: str
    depth: int | None = None  # dir:N; None: the subsystem depth (SUBSYSTEM_DEPTHS)
    symbols: SymbolMap | None = None

    def describe(self) -> str:
        return f"dir:{self.depth}" if self.kind == "dir" and self.depth is not None else self.kind

    def key(self, name: str, module: str | None) -> str:
        """The group of NAME: placed by the file whose unit compiled it (a header's function: the .c file it is in).

        A name the map gives several definitions in different groups (static functions of one name) goes to the
        folders they share (NF_HOOK in net/ipv4 and net/ipv6: net), else to "(several directories)"."""
        if self.kind == "module":
            return f"[{module}]" if module else BUILT_IN_GROUP
        definitions = source_files(self.symbols, name, module) if self.symbols else []
        if not definitions:
            return f"[{module}]" if module else NO_SOURCE_GROUP
        paths = list(dict.fromkeys(compiled_path(definition) for definition in definitions))
        if self.kind == "file":
            return paths[0] if len(paths) == 1 else SEVERAL_FILES_GROUP
        groups = list(dict.fromkeys(source_dir_group(path, self.depth) for path in paths))
        return groups[0] if len(groups) == 1 else shared_folders(groups) or SEVERAL_DIRS_GROUP


def compiled_path(definition: str) -> str:
    """The file whose compilation unit holds a definition's code: "include/linux/skbuff.h|net/core/skbuff.c" -> net/core/skbuff.c."""
    parts = definition_parts(definition)
    return parts.compiled or parts.path


def source_dir_group(path: str, depth: int | None) -> str:
    """A source file's directory cut to DEPTH folders (None: its subsystem's depth); a file at the top: "(top)"."""
    folders = path.split("/")[:-1]
    if not folders:
        return "(top)"
    return "/".join(folders[:depth if depth is not None else SUBSYSTEM_DEPTHS.get(folders[0], SUBSYSTEM_DEPTH)])


def shared_folders(groups: list[str]) -> str:
    """The folders every group starts with ("net/ipv4", "net/ipv6" -> "net"); "" when none."""
    split = [group.split("/") for group in groups]
    common = []
    for folders in zip(*split):
        if len(set(folders)) > 1:
            break
        common.append(folders[0])
    return "/".join(common)


def parse_group_by(text: str) -> Grouping:
    """--group-by dir, dir:N, file or module."""
    kind, colon, depth = text.partition(":")
    if kind not in GROUP_KINDS or (colon and (kind != "dir" or not depth.isdigit() or int(depth) < 1)):
        raise argparse.ArgumentTypeError(f"{text!r}: use dir, dir:N (N folders, 1 or more), file or module")
    return Grouping(kind, int(depth) if colon else None)


def group_tree(tree: CallTree, group_of: dict[str, str], kept: set[str]) -> tuple[CallTree, list[tuple[int, int]], dict[int, int]]:
    """The call tree with every function replaced by its group and consecutive frames of one group merged into one.

    A group node's calls are the calls into the group on its path (from another group, or at the top), its total
    time theirs, its self time that of every function merged into it; CallTree.members keeps each merged function's
    calls and self time (their calls less the node's are the group's inner calls). Functions in `kept` stay
    themselves (--root/--callers named by function). Returns the tree, (entering node, its group node) for the
    off-CPU times (which, like totals, include the merged frames'), and every node's group node (for the wakeups).
    """
    grouped = CallTree()
    grouped.timed = tree.timed
    entering: list[tuple[int, int]] = []
    placed: dict[int, int] = {}
    stack = [(kid, ROOT_NODE) for kid in (tree.children[ROOT_NODE] or {}).values()]
    while stack:
        node, into = stack.pop()
        name = tree.function[node] or ""
        label = name if name in kept else group_of[name]
        if into == ROOT_NODE or grouped.function[into] != label or name in kept:
            into = grouped.child(into, label)
            entering.append((node, into))
            grouped.calls[into] += tree.calls[node]
            grouped.total_us[into] += tree.total_us[node]
            if node in tree.open_calls:
                grouped.open_calls[into] = grouped.open_calls.get(into, 0) + tree.open_calls[node]
        grouped.self_us[into] += tree.self_us[node]
        if name not in kept:
            add_members(grouped.members.setdefault(into, {}), {name: [tree.calls[node], tree.self_us[node]]})
        placed[node] = into
        kids = tree.children[node]
        if kids:
            stack.extend((kid, into) for kid in kids.values())
    return grouped, entering, placed


def grouped_graph(graph: CallGraph, request: ViewRequest) -> CallGraph:
    """The recording at group level; --root/--callers/--wakers names that are no group stay functions."""
    grouping = request.grouping
    assert grouping is not None
    names = function_names(graph.tree)
    group_of = {name: grouping.key(name, graph.modules.get(name)) for name in names}
    groups = set(group_of.values())
    kept: set[str] = set()
    for option, patterns in (("--root", request.roots), ("--callers", request.callers), ("--wakers", request.wakers)):
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(group, pattern) for group in groups):
                if not any(fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(base_function_name(name), pattern) for name in names):
                    raise UserError(f"{option} {pattern}: no group (--group-by {grouping.describe()}) or function of that name is in the trace"
                                    f"{name_suggestions(pattern, groups | names)}")
                kept |= matching_functions(graph.tree, [pattern], option, request.symbols)
    tree, entering, placed = group_tree(graph.tree, group_of, kept)
    grouped = derive_graph(tree, graph.stats, {name: graph.modules[name] for name in kept if name in graph.modules})
    grouped.group_by = grouping.describe()
    attach_sched(grouped, moved_sched(graph.sched, entering, placed))
    return grouped


@dataclass
class View:
    """The part of the call graph that passed the user's focus and filters (every node and edge of it)."""

    graph: CallGraph
    nodes: list[str]
    edges: list[tuple[str, str]]
    files: dict[str, list[str]]
    notes: list[str] = field(default_factory=list)
    entry_callers: list[str] = field(default_factory=list)  # outside the filter, calling into it
    dropped_no_file: int = 0
    required: list[str] = field(default_factory=list)  # always drawn: --root/--callers functions, --graph-function
    entries: list[str] = field(default_factory=list)  # where a drawing starts: roots of the tree, entries into a selection
    focus: str = ""  # the --root/--callers functions as labels name them: "kfree", "__kmalloc*"
    unfocused: CallGraph | None = None  # a --callers view's whole recording: the callers' own numbers
    inlines: dict[str, tuple[list[str], int]] = field(default_factory=dict)  # name -> the symbol map's inlined calls, how many cut
    symbols: SymbolMap | None = None  # for the call sites' source lines (SymbolMap.call_site_line)


@dataclass
class ViewRequest:
    """What the user asked to look at (visualize's options)."""

    symbols: SymbolMap | None = None
    path_filters: list[str] = field(default_factory=list)
    module_filters: list[str] = field(default_factory=list)
    min_calls: int | None = None
    roots: list[str] = field(default_factory=list)
    callers: list[str] = field(default_factory=list)
    depth: int | None = None
    wakers: list[str] = field(default_factory=list)
    grouping: Grouping | None = None  # --group-by


def focused_graph(graph: CallGraph, request: ViewRequest) -> tuple[CallGraph, list[str], list[str]]:
    """The graph of the requested focus (of the groups, with --group-by), the functions it is about, and notes saying what it is."""
    if sum(1 for asked in (request.roots, request.callers, request.wakers) if asked) > 1:
        raise UserError("--root, --callers and --wakers are different views: use one of them")
    if request.grouping is None:
        return focus_of(graph, request)
    graph = grouped_graph(graph, request)
    focused, names, notes = focus_of(graph, request)
    focused.group_by = graph.group_by
    return focused, names, notes


def focus_of(graph: CallGraph, request: ViewRequest) -> tuple[CallGraph, list[str], list[str]]:
    if request.wakers:
        return wakers_graph(graph, request)
    depth_note = f", {request.depth} level{'s' if request.depth != 1 else ''} deep" if request.depth is not None else ""
    moved: list[tuple[int, int]] = []
    if request.roots:
        functions = matching_functions(graph.tree, request.roots, "--root", request.symbols)
        focused = derive_graph(focus_subtrees(graph.tree, functions, request.depth, moved), graph.stats, graph.modules)
        attach_sched(focused, moved_sched(graph.sched, moved))
        note = f"--root {','.join(request.roots)}: what {plural_names(functions)} called, on exact call paths{depth_note}"
        return focused, sorted(functions), [note]
    if request.callers:
        functions = matching_functions(graph.tree, request.callers, "--callers", request.symbols)
        focused = reversed_graph(focus_callers(graph.tree, functions, request.depth, moved), graph.stats, graph.modules)
        attach_sched(focused, moved_sched(graph.sched, moved))
        note = f"--callers {','.join(request.callers)}: the call paths that lead to {plural_names(functions)}{depth_note}; numbers count its calls through each caller"
        return focused, sorted(functions), [note]
    if request.depth is not None:
        trimmed = CallTree()
        trimmed.timed = graph.tree.timed
        for node in (graph.tree.children[ROOT_NODE] or {}).values():
            copy_subtree(graph.tree, node, trimmed, trimmed.child(ROOT_NODE, graph.tree.function[node] or ""), request.depth - 1, moved)
        trimmed_graph = derive_graph(trimmed, graph.stats, graph.modules)
        attach_sched(trimmed_graph, moved_sched(graph.sched, moved))
        return trimmed_graph, [], [f"--depth {request.depth}: the first {request.depth} levels of every call path"]
    return graph, [], []


NO_WAKEUP_FRAME = "[no wakeup in the trace]"


def focus_wakers(graph: CallGraph, functions: set[str], depth: int | None) -> CallTree:
    """The wakers' tree of --wakers F: F at a root, below it the waker's innermost open call, below that its caller, ...

    For every sleep during which F was open on the sleeper (its outermost
    activation on the sleeping path counts), the path of the waker's open
    calls read from the innermost out, as --callers reads callers; a waker
    with no traced call open is one frame "[task python3 with no traced call open]", a sleep whose
    wakeup is not in the trace "[no wakeup in the trace]". A node's calls are
    the sleeps of F woken through it, its times the time they waited.
    """
    assert graph.sched is not None
    tree = graph.tree
    woken = CallTree()
    woken.timed = graph.sched.timed
    sleeps: list[tuple[int, list[str], int, float]] = []
    for (sleeper, waker, who), flow in graph.sched.wakes.items():
        chain = tree.path(waker) if waker > ROOT_NODE else [f"[{waker_label([], who)}]"]
        sleeps.append((sleeper, chain, flow.sleeps, flow.wait_us))
    sleeps.extend((sleeper, [NO_WAKEUP_FRAME], count, 0.0) for sleeper, count in graph.sched.unwoken.items())
    for sleeper, chain, count, waited in sleeps:
        name = next((name for name in tree.path(sleeper) if name in functions), None)
        if name is None:
            continue
        target = woken.child(ROOT_NODE, name)
        for level, frame in enumerate([None, *reversed(chain)]):
            if frame is not None:
                if depth is not None and level > depth:
                    break
                target = woken.child(target, frame)
            woken.calls[target] += count
            woken.total_us[target] += waited
            woken.self_us[target] += waited
    return woken


def wakers_graph(graph: CallGraph, request: ViewRequest) -> tuple[CallGraph, list[str], list[str]]:
    """--wakers F: the graph of F's wakers' paths, F's names, and the note saying what its numbers are."""
    if graph.sched is None:
        raise UserError(f"--wakers needs scheduler events (sched_switch, sched_waking), and this trace has none: {NO_SCHED_EVENTS.split(': ', 1)[1]}")
    functions = matching_functions(graph.tree, request.wakers, "--wakers")
    tree = focus_wakers(graph, functions, request.depth)
    if not tree.children[ROOT_NODE]:
        raise UserError(f"--wakers {','.join(request.wakers)}: {plural_names(functions)} never slept in the trace (no switch-out while it was open)")
    focused = reversed_graph(tree, graph.stats, graph.modules)
    focused.woken = True
    depth_note = f", {request.depth} level{'s' if request.depth != 1 else ''} deep" if request.depth is not None else ""
    note = (f"--wakers {','.join(request.wakers)}: the wakers' call paths that ended sleeps of {plural_names(functions)}{depth_note};"
            " numbers count its sleeps woken through each function and the time they waited")
    return focused, sorted(functions), [note]


def plural_names(functions: set[str]) -> str:
    names = sorted(functions)
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def traced_entry_functions(graph: CallGraph) -> list[str]:
    """The recording's --graph-function functions that appear in the trace (always drawn)."""
    listed = graph.stats.metadata.get("graph-function", "").replace(",", " ").split()
    return [name for name in listed if name in graph.calls]


def build_view(graph: CallGraph, request: ViewRequest) -> View:
    whole = graph
    graph, focus_functions, notes = focused_graph(graph, request)
    names = graph.nodes()
    symbols = request.symbols
    files = {name: source_files(symbols, name, graph.modules.get(name)) for name in names if not graph.is_group(name)} if symbols else {}
    kept = set(names)
    dropped_no_file = 0
    if request.min_calls is not None:
        kept = {name for name in kept if graph.calls[name] > request.min_calls}
        notes.append(f"--min-calls {request.min_calls}: kept {len(kept)} of {len(names)} functions called more than {request.min_calls} times")
    if request.module_filters:
        before = len(kept)
        kept = {name for name in kept if graph.modules.get(name) in request.module_filters}
        notes.append(f"--filter-module {','.join(request.module_filters)}: kept {len(kept)} of {before} functions")
    if request.path_filters:
        before = len(kept)
        dropped_no_file = sum(1 for name in kept if not files.get(name) and name not in graph.modules and not graph.is_group(name))
        kept = {name for name in kept if matches_path(name, files, graph.modules, request.path_filters)
                or (graph.is_group(name) and any(pattern in name for pattern in request.path_filters))}
        notes.append(
            f"--filter-filepath {','.join(request.path_filters)}: kept {len(kept)} of {before} functions"
            f" ({dropped_no_file} dropped because the symbol map has no file for them)"
        )
    selective = bool(request.min_calls is not None or request.module_filters or request.path_filters)
    edges = [edge for edge in graph.edges if edge[0] in kept and edge[1] in kept]
    entry_callers = sorted({caller for caller, callee in graph.edges if callee in kept and caller not in kept}) if selective else []
    # Rounded: sums of the same durations added in another order (-j N) differ in their last bits
    ordered = sorted(kept, key=lambda name: (-round(graph.inclusive.get(name, 0.0), 6), -graph.calls[name], name))
    required = [name for name in focus_functions or traced_entry_functions(graph) if name in kept]
    entries = entry_points(graph, kept, selective)
    focus = focus_functions[0] if len(focus_functions) == 1 else ",".join(request.roots or request.callers or request.wakers)
    view = View(graph, ordered, edges, files, notes, entry_callers, dropped_no_file, required, entries, focus, whole if graph.reversed else None)
    view.symbols = symbols
    if symbols:
        found = ((name, symbols.inlined_calls(name, graph.modules.get(name))) for name in ordered)
        view.inlines = {name: calls for name, calls in found if calls[0]}
    return view


def matches_path(name: str, files: dict[str, list[str]], modules: dict[str, str], patterns: list[str]) -> bool:
    """A source path contains a pattern; a module function without a file matches by `[module]`."""
    sources = files.get(name) or ([f"[{modules[name]}]"] if name in modules else [])
    return any(pattern in definition_paths(source) for source in sources for pattern in patterns)  # paths only: a pattern never matches a line number


def entry_points(graph: CallGraph, kept: set[str], selective: bool) -> list[str]:
    """Where the flow starts: the tree's top-level functions, and functions called from outside a selection."""
    starts = {name for name in graph.roots if name in kept}
    if selective:
        called_inside = {callee for caller, callee in graph.edges if caller in kept and caller != callee}
        starts |= {name for name in kept if name not in called_inside}
        starts |= {callee for caller, callee in graph.edges if callee in kept and caller not in kept}
    return sorted(starts, key=lambda name: (-graph.inclusive.get(name, 0.0), name))


@dataclass
class Drawing:
    """What the drawing shows: the heaviest part of a view that is reachable from its entry points."""

    nodes: list[str]
    edges: list[tuple[str, str]]
    callers: list[str]  # grey entry points from outside a --filter-filepath selection
    caller_edges: list[tuple[str, str]]
    left_out_nodes: int
    left_out_edges: int
    node_min: float = 0.0
    edge_min: float = 0.0
    wakes: dict[tuple[str, str], tuple[int, float | None]] = field(default_factory=dict)  # dashed "wakes" edges: both boxes drawn
    wakes_note: str = ""  # what the dashed edges mean, and how many were left out or hidden
    woken: list[str] = field(default_factory=list)  # functions brought in by a drawn sleeper's wakes edge (grow_to_wakers)
    inlined: dict[str, list[str]] = field(default_factory=dict)  # --show-inlined: host -> the inlined callees drawn under it
    clusters: dict[str, list[str]] = field(default_factory=dict)  # --clusters: source directory -> its drawn functions


DEFAULT_NODE_THRES = 0.5  # percent of the whole weight: gprof2dot's default, good on the real traces
DEFAULT_EDGE_THRES = 0.1


def prune_for_drawing(view: View, max_nodes: int, max_edges: int, node_thres: float = DEFAULT_NODE_THRES, edge_thres: float = DEFAULT_EDGE_THRES,
                      wakeups: list[WakeRow] | None = None) -> Drawing:
    """Grow the drawing from its entry points along the heaviest edges (a connected pick).

    Nodes lighter than node_thres percent of the whole weight, and edges
    lighter than edge_thres percent, are left out; so is whatever does not fit
    in max_nodes/max_edges. Every drawn node is reachable from a drawn entry
    point; the required functions (--root, --graph-function) are always drawn
    when they fit in max_nodes, else (--root '*') they are entry points as any.
    Then a drawn frame that slept brings in its heaviest wakers (grow_to_wakers).
    """
    graph = view.graph
    whole = graph.weight_total or 1.0
    node_min, edge_min = whole * node_thres / 100, whole * edge_thres / 100
    kept = set(view.nodes)
    grow: dict[str, list[tuple[float, str, tuple[str, str]]]] = {}
    for edge in view.edges:
        start, end = (edge[1], edge[0]) if graph.reversed else edge
        grow.setdefault(start, []).append((graph.edge_weight.get(edge, 0.0), end, edge))
    chosen: dict[str, float] = {}  # drawn function -> its rank: the weight of the edge that brought it in (an entry's own weight)
    tree_edges: set[tuple[str, str]] = set()
    frontier: list[tuple[float, str, str, tuple[str, str]]] = []
    forced = view.required if not max_nodes or len(view.required) <= max_nodes else []
    required = set(forced)
    entries = sorted(set(view.entries) | set(view.required) - required, key=lambda name: (-graph.inclusive.get(name, 0.0), name))
    starts = list(forced) + [name for name in entries if graph.inclusive.get(name, 0.0) >= node_min]
    for name in starts:
        if name in chosen or name not in kept or (max_nodes and len(chosen) >= max_nodes and name not in required):
            continue
        chosen[name] = graph.inclusive.get(name, 0.0)
        for weight, end, edge in grow.get(name, ()):
            heapq.heappush(frontier, (-weight, end, name, edge))
    while frontier and (not max_nodes or len(chosen) < max_nodes):
        weight, end, _, edge = heapq.heappop(frontier)
        if end in chosen or -weight < edge_min or graph.inclusive.get(end, 0.0) < node_min:
            continue
        chosen[end] = -weight
        tree_edges.add(edge)
        for next_weight, next_end, next_edge in grow.get(end, ()):
            if next_end not in chosen:
                heapq.heappush(frontier, (-next_weight, next_end, end, next_edge))
    wakes = wake_edges(wakeups or []) if not graph.reversed else {}
    woken = grow_to_wakers(view, chosen, tree_edges, wakes, wakeups or [], (max_nodes, max_edges), required, edge_min) if wakes else []
    nodes = list(chosen)
    more = sorted(
        (edge for edge in view.edges if edge[0] in chosen and edge[1] in chosen and edge not in tree_edges and graph.edge_weight.get(edge, 0.0) >= edge_min),
        key=lambda edge: (-graph.edge_weight.get(edge, 0.0), -graph.edges[edge], edge),
    )
    dashed = sum(1 for waker, sleeper in wakes if waker in chosen and sleeper in chosen)
    room = max(0, max_edges - len(tree_edges) - dashed) if max_edges else len(more)
    edges = sorted(tree_edges, key=lambda edge: (-graph.edge_weight.get(edge, 0.0), edge)) + more[:room]
    outside = set(view.entry_callers)
    caller_edges = sorted(
        ((caller, callee) for caller, callee in graph.edges if callee in chosen and caller in outside),
        key=lambda edge: (-graph.edge_weight.get(edge, 0.0), -graph.edges[edge], edge),
    )[: max(10, len(nodes) // 2)]
    callers = sorted({caller for caller, _ in caller_edges})
    return Drawing(nodes, edges, callers, caller_edges, len(view.nodes) - len(nodes), len(view.edges) - len(edges), node_min, edge_min, woken=woken)


def wake_weight(graph: CallGraph, value: tuple[int, float | None]) -> float:
    """A wakes edge's weight in the growth's unit: the time its sleeps waited, or their count where the graph ranks calls."""
    sleeps, waited = value
    return waited if graph.uses_time and waited is not None else float(sleeps)


def grow_to_wakers(view: View, chosen: dict[str, float], tree_edges: set[tuple[str, str]], wakes: dict[tuple[str, str], tuple[int, float | None]],
                   rows: list[WakeRow], limits: tuple[int, int], required: set[str], edge_min: float) -> list[str]:
    """A drawn frame that slept brings in the waking function of its heaviest wakes edges (time waited >= edge_min).

    The waker comes with the shortest stretch of a waker's call path that
    joins it to a drawn box (or starts at a top-level function), so every box
    stays reachable from the top. The path ranks as an edge as heavy as the
    time waited: room under max_nodes/max_edges is made by taking out drawn
    leaves ranked lower (by the weight of the edge that brought them in),
    lowest first; without room the waker stays out (the caption counts it).
    Returns the functions brought in.
    """
    graph = view.graph
    ranked = sorted(wakes.items(), key=lambda item: (-wake_weight(graph, item[1]), item[0]))
    brought: list[str] = []
    for (waker, sleeper), value in ranked:
        if wake_weight(graph, value) < edge_min or sleeper not in chosen or waker in chosen:
            continue
        path = waker_join(view, chosen, waker, [row.waker_path for row in rows if row.waking == waker and row.slept == sleeper])
        if path is None:
            continue
        weight = wake_weight(graph, value)
        keep = required | set(brought) | {sleeper, path[0]} | {name for edge in wakes for name in edge if edge[0] in chosen and edge[1] in chosen}
        keep |= {name for name, rank in chosen.items() if rank >= weight}
        boxes = len(path) - (path[0] in chosen)  # the joining box is drawn, or the path starts a new box at the top
        if not make_room(chosen, tree_edges, (boxes, len(path) - 1), keep, limits, sum(1 for a, b in wakes if a in chosen and b in chosen) + 1):
            continue
        if path[0] not in chosen:  # a top-level function starts the path: a new box at the top
            chosen[path[0]] = graph.inclusive.get(path[0], 0.0)
            brought.append(path[0])
        for caller, callee in zip(path, path[1:]):
            chosen[callee] = graph.edge_weight.get((caller, callee), 0.0)
            tree_edges.add((caller, callee))
            brought.append(callee)
    return brought


def waker_join(view: View, chosen: dict[str, float], waker: str, paths: list[list[str]]) -> list[str] | None:
    """The shortest tail of a waker's call path that joins the waking function to the drawing: a drawn caller first
    (or the path's top-level function, a new box at the top), then the functions to bring in, every step an edge of the view."""
    edges, tops = set(view.edges), set(view.entries)
    best: list[str] | None = None
    for path in paths:
        if waker not in path:
            continue
        end = len(path) - 1 - path[::-1].index(waker)
        for start in range(end - 1, -1, -1):
            tail = path[start : end + 1]
            if (tail[0], tail[1]) not in edges or tail[0] in tail[1:]:
                break
            if tail[0] in chosen or (start == 0 and tail[0] in tops):
                best = tail if best is None or len(tail) < len(best) else best
                break
    return best


def make_room(chosen: dict[str, float], tree_edges: set[tuple[str, str]], adding: tuple[int, int], keep: set[str], limits: tuple[int, int], dashed: int) -> bool:
    """Take out the lowest-ranked drawn leaves (no drawn callee hangs from them) until `adding` more (boxes, edges) and
    the `dashed` wakes edges fit under (max_nodes, max_edges); False, with nothing taken out, when they cannot."""
    max_nodes, max_edges = limits
    parents = Counter(caller for caller, _ in tree_edges)
    out: list[str] = []

    def fits() -> bool:
        nodes = len(chosen) - len(out) + adding[0]
        edges = len(tree_edges) - sum(1 for edge in tree_edges if edge[1] in out) + adding[1] + dashed
        return (not max_nodes or nodes <= max_nodes) and (not max_edges or edges <= max_edges)

    while not fits():
        leaves = [name for name in chosen if name not in out and name not in keep and not parents[name]]
        if not leaves:
            return False
        leaf = min(leaves, key=lambda name: (chosen[name], name))
        out.append(leaf)
        parents.subtract(caller for caller, callee in tree_edges if callee == leaf)
    for name in out:
        del chosen[name]
    tree_edges.difference_update([edge for edge in tree_edges if edge[1] in out])
    return True


# --errors: the calls that returned a negative errno (funcgraph-retval), each path where one was
# first returned, and the callers on it that passed the same errno up. The kernel's own errnos
# (include/linux/errno.h) never reach user space but are in traces: a driver's unknown ioctl is ENOIOCTLCMD.
KERNEL_ERRNO_NAMES = {
    512: "ERESTARTSYS", 513: "ERESTARTNOINTR", 514: "ERESTARTNOHAND", 515: "ENOIOCTLCMD", 516: "ERESTART_RESTARTBLOCK",
    517: "EPROBE_DEFER", 518: "EOPENSTALE", 519: "ENOPARAM", 521: "EBADHANDLE", 522: "ENOTSYNC", 523: "EBADCOOKIE",
    524: "ENOTSUPP", 525: "ETOOSMALL", 526: "ESERVERFAULT", 527: "EBADTYPE", 528: "EJUKEBOX", 529: "EIOCBQUEUED",
    530: "ERECALLCONFLICT", 531: "ENOGRACE",
}
ERRORS_SHOWN_PATHS = 10  # per errno on the terminal; the .json output has them all
NO_RETURN_VALUES = (
    "--errors: the trace has no return values: record them with 'record -O funcgraph-retval'"
    " (kernel 6.5 or later built with CONFIG_FUNCTION_GRAPH_RETVAL)"
)


def errno_name(err: int) -> str:
    return errno.errorcode.get(-err) or KERNEL_ERRNO_NAMES.get(-err) or f"errno {-err}"


def errno_message(err: int) -> str:
    if -err in errno.errorcode:
        return os.strerror(-err)
    return "kernel-internal" if -err in KERNEL_ERRNO_NAMES else "unknown"


def errors_report(tree: CallTree) -> list[dict]:
    """Per negative errno: its returns, and every call path that returned it first (see errno_origin)."""
    nodes_by_errno: dict[int, list[int]] = {}
    for node, returned in tree.errnos.items():
        for err in returned:
            nodes_by_errno.setdefault(err, []).append(node)
    report = []
    for err, nodes in nodes_by_errno.items():
        origins = sorted((errno_origin(tree, node, err) for node in nodes if tree.errnos[node][err][1]), key=lambda found: (-found["times"], found["path"]))
        report.append({
            "errno": err,
            "name": errno_name(err),
            "message": errno_message(err),
            "returns": sum(tree.errnos[node][err][0] for node in nodes),
            "first_returns": sum(found["times"] for found in origins),
            "reached_top": any(found["reached_top"] for found in origins),
            "paths": origins,
        })
    # what a top-level call (a syscall) returned first: the answer to "why did it fail"; then the rest by count
    report.sort(key=lambda entry: (not entry["reached_top"], -entry["first_returns"], -entry["returns"], entry["errno"]))
    return report


def errno_origin(tree: CallTree, node: int, err: int) -> dict:
    """One call path that returned `err` first: from the top down to the function, with the callers that passed it up.

    A caller passed it up when its last callee that returned an errno returned this
    one; its count is every time it did so at that path (from any callee below, not only this one)."""
    passed_up = []
    caller = tree.parent[node]
    while caller > ROOT_NODE:
        counts = tree.errnos.get(caller, {}).get(err)
        if counts is not None and counts[0] > counts[1]:
            passed_up.append({"function": tree.function[caller], "times": counts[0] - counts[1]})
        caller = tree.parent[caller]
    path = tree.path(node)
    reached_top = len(path) == 1 or bool(passed_up and passed_up[-1]["function"] == path[0])
    return {"function": tree.function[node], "times": tree.errnos[node][err][1], "path": path, "passed_up_by": passed_up, "reached_top": reached_top}


def errors_lines(report: list[dict]) -> list[str]:
    """--errors on the terminal: per errno, the paths where it was first returned (the most frequent first)."""
    if not report:
        return ["errors: no call returned a negative errno"]
    lines = [
        f"errors: {len(report)} negative errno value(s) returned; where each was first returned, and who passed it up,"
        " those that a top-level call (a syscall) returned first",
        "  (the kernel records every function's return register, a void function's too: a value no caller passed up may be a leftover, not an error)",
    ]
    for entry in report:
        lines.append(
            f"  {entry['name']} ({entry['errno']}, {entry['message']}): returned {plural(entry['returns'], 'time')},"
            f" first by {plural(len(entry['paths']), 'call path')}" + ("" if entry["reached_top"] else "; no top-level call returned it")
        )
        for found in entry["paths"][:ERRORS_SHOWN_PATHS]:
            passed = ", ".join(f"{up['function']} ({up['times']:,}x)" for up in found["passed_up_by"])
            alone = "" if passed or found["reached_top"] else " (no caller passed it up)"
            lines.append(f"    {found['times']:,}x {found['function']}" + (f", passed up by {passed}" if passed else alone))
            lines.append(f"        path: {' > '.join(found['path'])}")
        if len(entry["paths"]) > ERRORS_SHOWN_PATHS:
            lines.append(f"    ... and {len(entry['paths']) - ERRORS_SHOWN_PATHS:,} more paths (all of them in a .json output)")
    return lines


# ============================================================================
# Output: heat, graphviz drawing, JSON, chart
# ============================================================================


HEAT_METRICS = ("self", "total", "calls", "oncpu", "offcpu")
SCHED_METRICS = ("oncpu", "offcpu")  # need scheduler events (sched_switch) in the input
METRIC_WORDS = {"oncpu": "on-CPU time", "offcpu": "off-CPU time"}


@dataclass
class Heat:
    """What colours a function: self time, total time or calls, on one scale over the whole view.

    The scale spans every function that passed the focus and filters (not only
    the drawn ones), so a function keeps its colour when --max-nodes changes.
    With a baseline the colour is the change instead: blue less, red more.
    """

    metric: str
    values: dict[str, float]
    baseline: dict[str, float] | None = None
    low: float = 1.0
    high: float = 1.0
    largest_change: float = 0.0
    baseline_inputs: list[str] = field(default_factory=list)
    input_names: set[str] = field(default_factory=set)  # the recording's file names, which a baseline's may repeat
    noun: str = "functions"  # what the boxes are: "groups" with --group-by

    @classmethod
    def of_view(cls, view: View, metric: str, baseline: dict[str, float] | None, baseline_inputs: list[str] | None = None) -> Heat:
        values = {name: metric_value(view.graph, name, metric) for name in view.nodes}
        positive = [value for value in values.values() if value > 0]
        heat = cls(metric, values, baseline, min(positive, default=1.0), max(positive, default=1.0), baseline_inputs=baseline_inputs or [])
        heat.input_names = {os.path.basename(path) for path in view.graph.stats.inputs}
        heat.noun = boxes_noun(view.graph)
        if baseline is not None:
            heat.largest_change = max((abs(value - baseline.get(name, 0.0)) for name, value in values.items()), default=0.0)
        return heat

    def weight(self, value: float) -> float:
        """A value's place on the log scale, 0 (coldest) to 1 (hottest)."""
        if value <= 0:
            return 0.0
        if self.high <= self.low:
            return 1.0
        return max(0.0, min(1.0, (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))))

    def change(self, name: str) -> float:
        """Signed change from the baseline in [-1, 1] (square-root scaled so small changes still show)."""
        if self.baseline is None or not self.largest_change:
            return 0.0
        delta = self.values.get(name, 0.0) - self.baseline.get(name, 0.0)
        return math.copysign(math.sqrt(abs(delta) / self.largest_change), delta)

    def node_colour(self, name: str) -> str:
        if self.baseline is not None:
            return colour_hex("RdBu_r", 0.5 + 0.42 * self.change(name))
        return colour_hex("YlOrRd", 0.06 + 0.8 * self.weight(self.values.get(name, 0.0)))

    def scale_weight(self, name: str) -> float:
        """How heavy a function looks (font size), the same for heat and for diffs."""
        if self.baseline is not None:
            return abs(self.change(name))
        return self.weight(self.values.get(name, 0.0))

    def describe(self) -> str:
        unit = "calls" if self.metric == "calls" else METRIC_WORDS.get(self.metric, f"{self.metric} time")
        if self.baseline is not None:
            names = ", ".join(baseline_names(self.baseline_inputs, self.input_names))
            return f"colour = change of {unit} from the baseline {names}: blue less, white the same, red more"
        return f"colour = {unit} on a log scale over the {len(self.values):,} {self.noun} of this view"

    def legend_stops(self) -> list[tuple[str, str]]:
        """(colour, label) pairs for the colour bar, coldest first."""
        stops = []
        steps = 9
        for index in range(steps):
            fraction = index / (steps - 1)
            if self.baseline is not None:
                signed = 2 * fraction - 1
                value = math.copysign(signed * signed * self.largest_change, signed)
                stops.append((colour_hex("RdBu_r", 0.5 + 0.42 * signed), format_metric(value, self.metric, signed=True)))
            else:
                value = math.exp(math.log(self.low) + fraction * (math.log(self.high) - math.log(self.low))) if self.high > self.low else self.high
                stops.append((colour_hex("YlOrRd", 0.06 + 0.8 * fraction), format_metric(value, self.metric)))
        return stops


def boxes_noun(graph: CallGraph) -> str:
    return "groups" if graph.group_by else "functions"


def baseline_names(paths: list[str], input_names: set[str]) -> list[str]:
    """The baseline files by name, or by path where names repeat (two trace.txt, or the recording's own name)."""
    names = [os.path.basename(path) for path in paths]
    ambiguous = len(set(names)) < len(names) or bool(set(names) & input_names)
    return paths if ambiguous else names


def metric_value(graph: CallGraph, name: str, metric: str) -> float:
    if metric == "calls":
        return float(graph.calls.get(name, 0))
    if metric == "total":
        return graph.total_us.get(name, 0.0)
    if metric == "oncpu":
        return on_cpu_us(graph, name)
    if metric == "offcpu":
        return off_cpu_us(graph, name)
    return graph.self_us.get(name, 0.0)


def format_metric(value: float, metric: str, signed: bool = False) -> str:
    sign = "+" if signed and value > 0 else "-" if value < 0 else ""
    if metric == "calls":
        return f"{sign}{abs(value):,.0f}"
    return sign + format_us(abs(value))


def colour_hex(colour_map: str, fraction: float) -> str:
    import matplotlib

    red, green, blue, _ = matplotlib.colormaps[colour_map](max(0.0, min(1.0, fraction)))
    return f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"


def text_colour(background: str) -> str:
    """Black on light fills, white on dark ones."""
    red, green, blue = (int(background[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return "#000000" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "#ffffff"


def pen_width(weight: float) -> str:
    return f"{0.8 + 4.2 * weight:.2f}"


# dot lays out this many boxes and edges within 60 s on a 2-core machine (measured:
# README "Big drawings"); beyond it a drawing is refused, never piled up.
DOT_MAX_NODES = 150
DOT_MAX_EDGES = 300
LAYOUT_SECONDS = 60.0


def plural(count: float, word: str) -> str:
    return f"{count:,.0f} {word}" + ("" if count == 1 else "s")


def shown_name(name: str, graph: CallGraph) -> str:
    """A function as labels show it, "tcp_sendmsg()"; a group ("net/ipv4") or a --wakers frame ("[task python3]") as it is."""
    return name if name.startswith("[") or graph.is_group(name) else f"{name}()"


def group_lines(name: str, graph: CallGraph) -> list[str]:
    """A group's label: its name, how many functions ran in it, the calls into it and between its functions."""
    inner = graph.inner_calls(name)
    return [name, f"{plural(len(graph.members[name]), 'function')}", plural(graph.calls[name], "call") + (f" in, {inner:,} inside" if inner else " in")]


def node_label(name: str, view: View, have_map: bool) -> str:
    graph = view.graph
    if graph.is_group(name) and not graph.woken:
        lines = group_lines(name, graph)
        if graph.timed:
            whole = graph.weight_total if graph.uses_time else 0.0
            lines.append(f"total {format_us(graph.total_us[name])}{share(graph.total_us[name], whole)}")
            on_off = on_off_text(graph, name).removeprefix(" = ")
            if on_off:
                lines.append(on_off)
            lines.append(f"self {format_us(graph.self_us[name])}{share(graph.self_us[name], whole)}")
        return "\n".join(lines)
    lines = [shown_name(name, graph)]  # "[task python3, ...]": a --wakers frame that is no function
    module = graph.modules.get(name)
    if module:
        lines.append(f"[{module}]")
    sources = view.files.get(name, [])
    if len(sources) == 1:
        lines.append(shown_definition(sources[0]))
    elif len(sources) > 1:
        lines.append(f"one of {len(sources)} files")
    elif have_map and not module:
        lines.append("(file unknown)")
    through = f" in {view.focus}" if is_caller_box(name, view) else ""
    if graph.woken:
        lines.append(plural(graph.calls[name], "sleep") + (f" of {view.focus} woken below" if through else " woken"))
        lines.append(f"waited {format_us(graph.total_us[name])}{share(graph.total_us[name], graph.weight_total)}" if graph.timed else "time waited unknown (no timestamps)")
        return "\n".join(lines)
    lines.append(plural(graph.calls[name], "call") + (f" of {view.focus} below" if through else ""))
    if graph.open_calls.get(name):
        lines.append(f"{graph.open_calls[name]:,} still open at the end")
    if graph.timed:
        whole = graph.weight_total if graph.uses_time else 0.0
        lines.append(f"total {format_us(graph.total_us[name])}{through}{share(graph.total_us[name], whole)}{on_off_text(graph, name)}")
        lines.append(f"self {format_us(graph.self_us[name])}{through}{share(graph.self_us[name], whole)}")
    elif graph.off_cpu.get(name):
        lines.append(f"{plural(graph.off_cpu[name].sleeps, 'sleep')} (no timestamps: time unknown)")
    return "\n".join(lines)


def on_off_text(graph: CallGraph, name: str) -> str:
    """' = 2.1 ms on CPU + 649 ms asleep in 177 sleeps' for a function that was switched out while open; '' otherwise."""
    found = graph.off_cpu.get(name)
    if found is None or not found.sleeps:
        return ""
    if graph.sched is not None and not graph.sched.timed:
        return f" in {plural(found.sleeps, 'sleep')} (no timestamps: time unknown)"
    preempted = found.states.get("R", 0.0)
    asleep = "switched out" if preempted >= found.off_us else "asleep"
    text = f" = {format_us(on_cpu_us(graph, name))} on CPU + {format_us(found.off_us)} {asleep} in {plural(found.sleeps, 'sleep')}"
    if 0 < preempted < found.off_us:
        text += f" ({format_us(preempted)} preempted)"
    return text


def is_caller_box(name: str, view: View) -> bool:
    """A caller in a --callers view: its numbers are the selected functions' calls and times through it."""
    return view.graph.reversed and name not in (view.graph.tree.children[ROOT_NODE] or {})


def own_numbers(name: str, view: View) -> str:
    """A caller's own calls and times in the whole recording, beside the ones through it."""
    if view.unfocused is None or name not in view.unfocused.calls:
        return ""
    graph = view.unfocused
    times = f", total {format_us(graph.total_us[name])}, self {format_us(graph.self_us[name])}" if graph.timed else ""
    return f"{name} itself: {plural(graph.calls[name], 'call')}{times}"


def share(value: float, whole: float) -> str:
    return f" ({value / whole:.1%})" if whole > 0 else ""


def diff_label(name: str, heat: Heat) -> str:
    assert heat.baseline is not None
    new, old = heat.values.get(name, 0.0), heat.baseline.get(name, 0.0)
    change = f"{(new - old) / old:+.0%}" if old else "new"
    return f"{heat.metric}: {format_metric(new, heat.metric)} (was {format_metric(old, heat.metric)}, {change})"


def format_us(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.2f} s"
    if value >= 1000:
        return f"{value / 1000:.2f} ms"
    return f"{value:.1f} us"


def neighbours(graph: CallGraph) -> tuple[dict[str, list[tuple[str, int]]], dict[str, list[tuple[str, int]]]]:
    """Each function's callers and callees with their calls, from one pass over the edges."""
    callers: dict[str, list[tuple[str, int]]] = {}
    callees: dict[str, list[tuple[str, int]]] = {}
    for (caller, callee), count in graph.edges.items():
        callers.setdefault(callee, []).append((caller, count))
        callees.setdefault(caller, []).append((callee, count))
    return callers, callees


def node_tooltip(name: str, view: View, callers: dict[str, list[tuple[str, int]]], callees: dict[str, list[tuple[str, int]]]) -> str:
    """The SVG tooltip of a box: everything known about the function, with its top callers and callees."""
    lines = [node_label(name, view, bool(view.files)).replace("\n", "; ")]
    if is_caller_box(name, view):
        lines.append(own_numbers(name, view))
    counts = f" (calls of {view.focus} through them)" if view.graph.reversed else ""
    for title, pairs in (("callers", callers.get(name, [])), ("callees", callees.get(name, []))):
        top = sorted(pairs, key=lambda pair: -pair[1])[:8]
        if top:
            lines.append(f"{title}{counts}: " + ", ".join(f"{other} ({count:,})" for other, count in top) + (f" +{len(pairs) - 8} more" if len(pairs) > 8 else ""))
    if name in view.inlines:
        lines.append(inlines_text(*view.inlines[name]))
    if view.graph.is_group(name):
        members = sorted(view.graph.members[name].items(), key=lambda item: (-item[1][0], item[0]))
        lines.append("functions: " + ", ".join(f"{member} ({int(numbers[0]):,})" for member, numbers in members[:TOOLTIP_MEMBERS])
                     + (f" +{len(members) - TOOLTIP_MEMBERS} more" if len(members) > TOOLTIP_MEMBERS else ""))
    return "\n".join(lines)


TOOLTIP_MEMBERS = 12  # a group's functions a tooltip names, most called first
TOOLTIP_INLINES = 12  # inlined calls a tooltip names (the explorer's selection bar: EXPLORER_INLINES)


def inlines_text(calls: list[str], cut: int) -> str:
    """"inlines (not traced): tcp_skb_can_collapse_to (tcp_output.c:2700), ... +N more"."""
    more = len(calls) - TOOLTIP_INLINES + cut if len(calls) > TOOLTIP_INLINES or cut else 0
    return "inlines (not traced): " + ", ".join(map(shown_inlined_call, calls[:TOOLTIP_INLINES])) + (f" +{more} more" if more else "")


INLINED_BOXES = 6  # --show-inlined: dotted boxes under one host; the rest is one "+N more" box


def inlined_boxes(calls: list[str], cut: int) -> list[tuple[str, str]]:
    """(callee, label) of the dotted boxes under a host: one per callee, its call lines together; then "+N more"."""
    lines: dict[str, list[str]] = {}
    for call in calls:
        callee, _, where = shown_inlined_call(call).partition(" (")
        lines.setdefault(callee, []).append(where.rstrip(")"))
    boxes = [(callee, f"{callee}()\n" + ", ".join(where[:3]) + (" ..." if len(where) > 3 else "")) for callee, where in lines.items()]
    rest = sum(len(where) for where in list(lines.values())[INLINED_BOXES:]) + cut  # calls, as the map counts its cut
    return boxes[:INLINED_BOXES] + ([("", f"+{rest} more inlined calls")] if rest else [])


def add_inlined_boxes(agraph: Any, drawing: Drawing, view: View) -> None:
    """--show-inlined: dotted boxes and edges under each drawn host; no calls on them, they are not in the trace."""
    for host, calls in drawing.inlined.items():
        for index, (callee, label) in enumerate(inlined_boxes(calls, view.inlines[host][1])):
            box = f"{host} inlines {callee or index}"
            what = f"{callee} is inlined into {host}: ftrace cannot see it, its time is in {host}'s" if callee else label
            agraph.add_node(box, label=label, shape="box", style="dotted", color="#666666", fontcolor="#555555", fillcolor="none", fontsize="9", tooltip=what)
            agraph.add_edge(host, box, style="dotted", color="#888888", arrowhead="none", tooltip=f"{host} inlines {callee}" if callee else label)


def edge_tooltip(edge: tuple[str, str], view: View) -> str:
    graph = view.graph
    if graph.woken:
        return f"{edge[0]} -> {edge[1]}: {plural(graph.edges[edge], 'sleep')} of {view.focus} woken along this path, {format_us(graph.edge_weight.get(edge, 0.0))} waited"
    callee = view.focus if graph.reversed else edge[1]
    text = f"{edge[0]} -> {edge[1]}: {plural(graph.edges[edge], 'call')}" + (f" of {callee} along this path" if graph.reversed else "")
    if graph.uses_time:
        text += f", {format_us(graph.edge_weight.get(edge, 0.0))} in {callee}"
    sites = edge_call_sites(edge, view)
    return text + (", " + call_sites_text(sites, edge[0]) if sites else "")


# -- call sites (funcgraph-retaddr): which line of the caller made an edge's calls ---------------

CALL_SITES_KEPT = 16  # per edge in the JSON, heaviest first (the rest counted in call_sites_cut)
TOOLTIP_CALL_SITES = 4  # per edge in a tooltip


def edge_call_sites(edge: tuple[str, str], view: View) -> list[dict]:
    """The edge's call sites, heaviest first: {"site": "tcp_push+0x5b", "line": "net/ipv4/tcp.c:723" or None, "calls": 70}.

    A site is kept as the kernel printed it even when its function is not the edge's caller: a tail call returns to
    its caller's caller, a call from assembly or an interrupt entry to wherever that was; it is what the kernel said."""
    found = view.graph.edge_sites.get(edge)
    if not found:
        return []
    rows = [{"site": shown_site(site), "line": call_site_source_line(site, view.symbols), "calls": count} for site, count in found.items()]
    rows.sort(key=lambda row: (-row["calls"], row["site"]))
    return rows


def shown_site(site: str) -> str:
    """"tcp_push+0x5b/0x1a3" -> "tcp_push+0x5b" (the function's length only tells same-name copies apart); others as printed."""
    parts = SITE_PARTS.match(site)
    if parts is None:
        return site
    return f"{parts.group('caller')}+0x{parts.group('offset')}" + (f" [{parts.group('module')}]" if parts.group("module") else "")


def call_site_source_line(site: str, symbols: SymbolMap | None) -> str | None:
    """The source line of the call that returns to `site`, per the symbol map; None without a map or a line."""
    parts = SITE_PARTS.match(site)
    if symbols is None or parts is None:
        return None
    return symbols.call_site_line(parts.group("caller"), int(parts.group("offset"), 16), int(parts.group("size"), 16))


def call_sites_text(rows: list[dict], caller: str | None = None) -> str:
    """"from tcp.c:723 (70) and tcp.c:1380 (4)": lines by their file's name (sites on one line summed), else the site.

    A site in another function than the edge's CALLER (a tail call's, an entry from assembly) names that function:
    "from do_sys_openat2 at open.c:1417 (105)": a bare line there would read as a line of the caller."""
    shown: dict[str, int] = {}
    for row in rows:
        where = row["line"].rsplit("/", 1)[-1] if row["line"] else row["site"]
        in_function = row["site"].partition("+")[0]
        if row["line"] and caller is not None and base_function_name(in_function) != base_function_name(caller.partition(" [")[0]):
            where = f"{in_function} at {where}"
        shown[where] = shown.get(where, 0) + row["calls"]
    ordered = sorted(shown.items(), key=lambda item: (-item[1], item[0]))
    parts = [f"{where} ({count:,})" for where, count in ordered[:TOOLTIP_CALL_SITES]]
    rest = ordered[TOOLTIP_CALL_SITES:]
    if rest:
        parts.append(f"{plural(len(rest), 'more site')} ({sum(count for _, count in rest):,})")
    return "from " + (parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1])


def edge_json(edge: tuple[str, str], view: View) -> dict:
    graph = view.graph
    found = {"caller": edge[0], "callee": edge[1], "calls": graph.edges[edge], "weight": round(graph.edge_weight.get(edge, 0.0), 3)}
    sites = edge_call_sites(edge, view)
    if sites:
        found["call_sites"] = sites[:CALL_SITES_KEPT]
        found["call_sites_cut"] = len(sites) - len(found["call_sites"])
    return found


WAKE_COLOUR = "#2166ac"


def waited_text(waited: float | None) -> str:
    return f", {format_us(waited)} waited" if waited is not None else ", time waited unknown (no timestamps)"


def drawing_caption(view: View, drawing: Drawing, heat: Heat) -> list[str]:
    stats = view.graph.stats
    graph = view.graph
    parts = [f"kernel-magnifier: {stats.events:,} events from {', '.join(os.path.basename(p) for p in stats.inputs)}"]
    parts.extend(view.notes)
    if graph.group_by:
        parts.append(
            f"--group-by {graph.group_by}: a box is a group of functions; its calls are the calls into it (from another group, or at the top of a path),"
            " 'inside' the calls between its own functions, its self time its functions' self time; an edge carries every call from a function of one group to one of the other"
        )
    if graph.woken:
        parts.append(
            f"a waker's box shows the sleeps of {view.focus} its paths ended and the time they waited, not its own calls (its tooltip has both);"
            f" colour = time waited on a log scale; edge labels = sleeps of {view.focus} woken along the edge, edge width = their time waited"
        )
    elif graph.reversed:
        parts.append(
            f"a caller's box shows the calls and time of {view.focus} below it, not its own (its tooltip has both); "
            + heat.describe() + f"; edge labels = calls of {view.focus} along the edge, edge width = " + ("its time" if graph.uses_time else "its calls")
        )
    else:
        parts.append(heat.describe() + "; edge labels = calls from caller to callee, edge width = " + ("time" if graph.uses_time else "calls") + " flowing through it")
    if graph.timed:
        parts.append(f"shares are of {report_whole(graph)}" if graph.woken else
                     f"shares are of {format_us(graph.weight_total)}, the total time of the top-level calls of this view (they include interrupts and, by default, sleep)")
    if graph.sched is not None:
        parts.extend(sched_summary_lines(graph.sched, graph.stats))
    if stats.open_calls:
        parts.append(open_calls_text(stats))
    lost = stats.lost_events
    if lost:
        parts.append(f"the kernel lost {lost:,} events ({stats.lost_share():.1%}): counts are lower bounds")
    if drawing.left_out_nodes or drawing.left_out_edges:
        unit = format_us if graph.uses_time else (lambda value: plural(value, "call"))
        parts.append(
            f"showing {len(drawing.nodes):,} of {len(view.nodes):,} {boxes_noun(graph)} and {len(drawing.edges):,} of {len(view.edges):,} edges,"
            f" grown from the entry points along the heaviest edges{woken_growth(drawing)}; left out: lighter than {unit(drawing.node_min)} (--node-thres),"
            f" edges lighter than {unit(drawing.edge_min)} (--edge-thres), beyond --max-nodes/--max-edges" + ("" if view.focus else "; --root F focuses on one function")
        )
    if drawing.callers:
        parts.append("grey dashed boxes: callers outside the selection")
    if drawing.wakes_note:
        parts.append(drawing.wakes_note)
    if drawing.clusters:
        parts.append(f"--clusters: the functions of one source directory (--group-by dir's, per the symbol map) are framed together, {len(drawing.clusters)} directories;"
                     " one colour family per top-level subsystem; a function without a file stands outside")
    if drawing.inlined:
        parts.append(
            "dotted boxes and edges (--show-inlined): functions the compiler inlined into the box above them, per the symbol map;"
            " ftrace cannot see them: never counted as calls, no time of their own (it is in their host's)"
        )
    return parts


def woken_growth(drawing: Drawing) -> str:
    """", and from drawn sleeps to their wakers (tcp_data_queue, ...)": the boxes a wakes edge brought in."""
    if not drawing.woken:
        return ""
    names = ", ".join(drawing.woken[:6]) + (f" and {len(drawing.woken) - 6} more" if len(drawing.woken) > 6 else "")
    return f" and from drawn sleeps to the functions that woke them ({names})"


def open_calls_text(stats: TraceStats) -> str:
    """What the calls still open at the end of the trace are given, for the summary and the captions."""
    text = f"{plural(stats.open_calls, 'call')} still open at the end of the trace (their time runs to their task's last event"
    if stats.open_calls_bounded:
        text += f"; {stats.open_calls_bounded:,} of them without timestamps count only their callees' time, a lower bound"
    return text + ")"


CAPTION_WIDTH = 150  # characters per caption line: about the width of a drawing of eight boxes side by side


def caption_rows(lines: list[str], width: int = CAPTION_WIDTH) -> list[str]:
    """The caption's lines wrapped at spaces to `width` characters, a wrapped line's rest indented: a line wider than
    the drawing would be cut off at the image's right edge."""
    rows = []
    for line in lines:
        pieces = textwrap.wrap(line, width, break_long_words=False, break_on_hyphens=False, subsequent_indent="    ")
        rows.extend(pieces or [""])
    return rows


def caption_html(lines: list[str], heat: Heat, legend: list[tuple[str, str]] | None = None) -> str:
    """The caption with a colour bar, as a graphviz HTML-like label; `legend`: --clusters' (colour, subsystem) row under it."""
    stops = heat.legend_stops()
    rows = "".join(f'<TR><TD ALIGN="LEFT" COLSPAN="{len(stops)}">{html.escape(row).replace("  ", "&#160; ")}</TD></TR>' for row in caption_rows(lines))
    cells = "".join(f'<TD BGCOLOR="{colour}" WIDTH="64"><FONT POINT-SIZE="10" COLOR="{text_colour(colour)}">{html.escape(label)}</FONT></TD>' for colour, label in stops)
    key = ""
    if legend:
        shown = "".join(f'<TD BGCOLOR="{colour}"><FONT POINT-SIZE="10">{html.escape(label)}</FONT></TD>' for colour, label in legend)
        key = (f'<TR><TD COLSPAN="{len(stops)}" ALIGN="LEFT"><TABLE BORDER="0" CELLSPACING="3" CELLPADDING="3"><TR>'
               f'<TD><FONT POINT-SIZE="10">clusters by subsystem:</FONT></TD>{shown}</TR></TABLE></TD></TR>')
    return f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="2">{rows}<TR>{cells}</TR>{key}</TABLE>>'


# --clusters: one colour family per top-level subsystem (pale fills, so the heat colours of the boxes stay readable)
CLUSTER_FAMILIES = {
    "net": "Blues", "mm": "Greens", "fs": "Oranges", "kernel": "Purples", "drivers": "Greys", "block": "YlOrBr",
    "arch": "Reds", "security": "PuRd", "lib": "BuGn", "ipc": "RdPu", "crypto": "GnBu", "io_uring": "YlGn",
}
OTHER_CLUSTER_FAMILY = "Greys"


def source_clusters(view: View, names: list[str]) -> dict[str, list[str]]:
    """The drawn functions by source directory (--group-by dir's groups); functions without one stay outside every cluster."""
    grouping = Grouping("dir", None, view.symbols)
    clusters: dict[str, list[str]] = {}
    for name in names:
        if view.graph.is_group(name):
            continue
        key = grouping.key(name, view.graph.modules.get(name))
        if not key.startswith("("):
            clusters.setdefault(key, []).append(name)
    return dict(sorted(clusters.items()))


def cluster_family(directory: str) -> str:
    return CLUSTER_FAMILIES.get(directory.split("/")[0], OTHER_CLUSTER_FAMILY)


def cluster_colours(clusters: list[str]) -> dict[str, tuple[str, str]]:
    """Per directory (fill, border): shades of its subsystem's family, a different one for each directory of it."""
    colours: dict[str, tuple[str, str]] = {}
    seen: Counter[str] = Counter()
    for directory in clusters:
        family = cluster_family(directory)
        shade = seen[family] % 4
        seen[family] += 1
        colours[directory] = (colour_hex(family, 0.06 + 0.06 * shade), colour_hex(family, 0.65))
    return colours


def cluster_legend(clusters: list[str]) -> list[tuple[str, str]]:
    """(colour, top-level directories) per colour family the drawing's clusters use."""
    tops: dict[str, list[str]] = {}
    for directory in clusters:
        top = directory.split("/")[0]
        names = tops.setdefault(cluster_family(directory), [])
        if top not in names:
            names.append(top)
    return [(colour_hex(family, 0.22), ", ".join(names) if family != OTHER_CLUSTER_FAMILY or len(names) < 4 else "other") for family, names in tops.items()]


def add_clusters(agraph: Any, drawing: Drawing) -> None:
    """A labelled graphviz cluster around each source directory's drawn functions."""
    colours = cluster_colours(list(drawing.clusters))
    for directory, names in drawing.clusters.items():
        fill, border = colours[directory]
        agraph.add_subgraph(names, name=f"cluster_{directory}", label=directory, labeljust="l", style="filled,rounded", fillcolor=fill,
                            color=border, fontcolor=border, fontsize="12", penwidth="1.2")


def build_agraph(view: View, drawing: Drawing, heat: Heat, have_map: bool, links: dict[str, str] | None = None) -> Any:
    import pygraphviz

    graph = view.graph
    agraph = pygraphviz.AGraph(directed=True, strict=False)
    agraph.graph_attr.update(
        label=caption_html(drawing_caption(view, drawing, heat), heat, cluster_legend(list(drawing.clusters))), labelloc="t", labeljust="l", fontname="Helvetica", fontsize="13",
        rankdir="TB", ranksep="0.45", nodesep="0.3",
    )
    agraph.node_attr.update(shape="box", style="filled,rounded", fontname="Helvetica")
    agraph.edge_attr.update(fontname="Helvetica", fontsize="10", arrowsize="0.6")
    callers, callees = neighbours(graph)
    for name in drawing.nodes:
        fill = heat.node_colour(name)
        label = node_label(name, view, have_map)
        if heat.baseline is not None:
            label += "\n" + diff_label(name, heat)
        required = name in view.required
        agraph.add_node(
            name, label=label, fillcolor=fill, fontcolor=text_colour(fill), fontsize=f"{10 + 5 * heat.scale_weight(name):.1f}",
            penwidth="3" if required else "1", color="#202020", tooltip=node_tooltip(name, view, callers, callees),
            **({"URL": links[name], "target": "_blank"} if links and name in links else {}),
        )
    for name in drawing.callers:
        agraph.add_node(name, label=f"{name}()", fillcolor="#eeeeee", fontcolor="#555555", color="#999999", fontsize="9", style="filled,dashed", tooltip=f"{name}: outside the selection")
    edge_values = [edge_heat_value(edge, graph, heat) for edge in drawing.edges]
    edge_scale = Heat(heat.metric, {}, None, min((v for v in edge_values if v > 0), default=1.0), max(edge_values, default=1.0))
    for edge, value in zip(drawing.edges, edge_values):
        weight = edge_scale.weight(value)
        agraph.add_edge(
            *edge, label=f"{graph.edges[edge]:,}", fontcolor="#333333", penwidth=pen_width(weight),
            color=colour_hex("Greys", 0.35 + 0.6 * weight), tooltip=edge_tooltip(edge, view),
        )
    for edge in drawing.caller_edges:
        agraph.add_edge(*edge, label=f"{graph.edges[edge]:,}", color="#999999", fontcolor="#777777", style="dashed", tooltip=edge_tooltip(edge, view))
    for (waking, slept), (sleeps, waited) in drawing.wakes.items():
        agraph.add_edge(
            waking, slept, key=f"wakes {waking} {slept}", label=f"wakes {sleeps:,} x" + waited_text(waited), style="dashed", color=WAKE_COLOUR,
            fontcolor=WAKE_COLOUR, fontsize="12", penwidth="1.5", constraint="false", tooltip=f"{waking} woke {slept}: {plural(sleeps, 'sleep')} ended" + waited_text(waited),
        )
    add_inlined_boxes(agraph, drawing, view)
    add_clusters(agraph, drawing)
    return agraph


def edge_heat_value(edge: tuple[str, str], graph: CallGraph, heat: Heat) -> float:
    """Edges weigh what flows through them: calls for the calls heat, time otherwise."""
    if heat.metric == "calls" or not graph.uses_time:
        return float(graph.edges[edge])
    return graph.edge_weight.get(edge, 0.0)


def render_graph(view: View, drawing: Drawing, output: str, heat: Heat, have_map: bool, links: dict[str, str] | None = None) -> None:
    if len(drawing.nodes) + len(drawing.callers) > DOT_MAX_NODES or len(drawing.edges) + len(drawing.caller_edges) > DOT_MAX_EDGES:
        raise UserError(
            f"{len(drawing.nodes):,} functions and {len(drawing.edges):,} edges are too many to lay out readably"
            f" (graphviz takes minutes beyond {DOT_MAX_NODES} functions or {DOT_MAX_EDGES} edges):"
            + (" draw fewer with --max-nodes N, a higher --node-thres or fewer levels with --depth N" if view.focus else " focus with --root F or --callers F, or draw fewer with --max-nodes N or a higher --node-thres")
        )
    agraph = build_agraph(view, drawing, heat, have_map, links)
    fmt = os.path.splitext(output)[1].lower().lstrip(".")
    with atomic_output(output) as tmp:
        if fmt == "dot":
            with output_errors(output), open(tmp, "w", encoding="utf-8") as handle:
                handle.write(agraph.string())  # pygraphviz's own write ignores a full disk
        else:
            lay_out_in_child(agraph, tmp, fmt, len(drawing.nodes), output)


CHILD_OS_ERROR = 64  # a layout child's exit code: 64 + errno when writing the file failed


def lay_out_in_child(agraph: Any, path: str, fmt: str, nodes: int, output: str) -> None:
    """Run graphviz in a forked child, so Ctrl-C, SIGTERM and the time limit end it at once.

    Graphviz is a C library here: while it runs, the interpreter cannot react
    to signals. The parent only waits, and kills the child when asked to stop.
    The child lays out into memory and writes the file from Python, so a full
    disk is an error it can report (graphviz's own writer ignores it).
    """
    progress = Progress(f"laying out {plural(nodes, 'function')} with dot", counting=True)
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        status = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            with graphviz_messages_filtered():
                drawn = agraph.draw(format=fmt, prog="dot")
            with open(path, "wb") as handle:
                handle.write(drawn)
            status = 0
        except OSError as err:
            status = CHILD_OS_ERROR + min(err.errno or 0, 99)
        except BaseException as err:  # the child must never return into the parent's code
            with contextlib.suppress(Exception):
                warn(f"graphviz: {err}")
        finally:
            os._exit(status)
    started = time.monotonic()
    try:
        while True:
            done, status = os.waitpid(child, os.WNOHANG)
            if done:
                break
            elapsed = time.monotonic() - started
            if elapsed > LAYOUT_SECONDS:
                raise UserError(
                    f"graphviz did not finish laying out {plural(nodes, 'function')} in {LAYOUT_SECONDS:.0f} s:"
                    " draw fewer with --max-nodes, --node-thres, or focus with --root F"
                )
            progress.update(int(elapsed))
            time.sleep(0.05)
    except BaseException:
        with contextlib.suppress(OSError):
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
        raise
    finally:
        progress.close()
    code = os.waitstatus_to_exitcode(status)
    if CHILD_OS_ERROR < code < CHILD_OS_ERROR + 100:
        raise UserError(f"cannot write {output}: {os.strerror(code - CHILD_OS_ERROR)}")
    if code != 0:
        raise UserError(f"graphviz could not draw {output}")


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


def json_files(definitions: list[str]) -> dict[str, list]:
    """"files": every path of every definition (declared, then compiled-in), as before lines existed;
    "lines": beside each path, its definition line (the declaring file's) or null."""
    files: list[str] = []
    lines: list[int | None] = []
    for definition in definitions:
        parts = definition_parts(definition)
        files.append(parts.path)
        lines.append(parts.line)
        if parts.compiled:
            files.append(parts.compiled)
            lines.append(None)
    return {"files": files, "lines": lines}


# The .json's schema (docs/schema.json): raised when a key is removed, renamed or changes meaning; a new key
# leaves it as it is (readers ignore keys they do not know), but goes into docs/schema.json all the same.
JSON_SCHEMA_VERSION = 1


def graph_json(view: View, heat: Heat, baseline: CallGraph | None) -> dict:
    graph = view.graph
    stats = graph.stats
    call_tree = call_tree_json(graph.tree, graph.sched)
    nodes = []
    for name in view.nodes:
        node = {
            "name": name,
            "calls": graph.calls[name],
            **json_files(view.files.get(name, [])),
            "definitions": len(view.files.get(name, [])),
            "total_time_us": round(graph.total_us[name], 3) if graph.timed else None,
            "self_time_us": round(graph.self_us[name], 3) if graph.timed else None,
            "inclusive_weight": round(graph.inclusive.get(name, 0.0), 3),
            "open_calls": graph.open_calls.get(name, 0),
        }
        if graph.sched is not None:
            node.update(off_cpu_json(graph.off_cpu.get(name), graph.total_us.get(name, 0.0), graph.sched.timed))
        if name in graph.modules:
            node["module"] = graph.modules[name]
        if graph.is_group(name):
            node.update(group_json(name, graph))
        if name in view.inlines:  # "callee (path:line)": the calls ftrace cannot see, per the symbol map
            node["inlines_not_traced"] = view.inlines[name][0]
            node["inlines_cut"] = view.inlines[name][1]
        if view.unfocused is not None and is_caller_box(name, view):
            node["own"] = function_numbers(view.unfocused, name)
        if baseline is not None:
            node["baseline"] = function_numbers(baseline, name)
            node["change"] = {heat.metric: round(heat.values.get(name, 0.0) - (heat.baseline or {}).get(name, 0.0), 3)}
        nodes.append(node)
    edges = [edge_json(edge, view) for edge in view.edges]
    edges.sort(key=lambda edge: (-edge["calls"], edge["caller"], edge["callee"]))
    result = {
        "schema_version": JSON_SCHEMA_VERSION,
        "stats": {
            "events": stats.events,
            "lost_events": stats.lost_events,
            "lost_events_per_cpu": stats.lost_per_cpu(),
            "lost_unknown_count_lines": stats.lost_unknown_count,
            "duplicate_lost_lines": stats.duplicate_lost_lines,
            "unparsed_lines": stats.unparsed_lines,
            "trace_events": dict(sorted(stats.trace_events.items(), key=lambda item: (-item[1], item[0]))),
            "latency_traces": stats.latency_traces,
            "unparsed_example": stats.unparsed_example,
            "unparsed_example_where": stats.unparsed_example_where,
            "lines": stats.lines,
            "orphan_exits": stats.orphan_exits,
            "calls_without_caller": stats.calls_without_caller,
            "open_calls": stats.open_calls,
            "open_calls_bounded": stats.open_calls_bounded,
            "whole": round(graph.weight_total, 3),
            "formats": sorted(stats.formats),
            "inputs": stats.inputs,
            "kernel_stats": stats.kernel_stats,
            "metadata": stats.metadata,
            "functions_total": len(graph.calls),
            "call_paths": len(call_tree),
            "filter_notes": view.notes,
            "heat": heat.metric,
            "weight": "total_time_us" if graph.uses_time else "calls_in_subtree",
            "reversed": graph.reversed,
            "node_numbers": (f"sleeps of {view.focus} woken through each function (calls) and the time they waited (total_time_us)" if graph.woken
                             else f"calls and times of {view.focus} through each caller (a caller's own: its 'own')" if graph.reversed else "each function's own"),
            "wakers": graph.woken,
            "group_by": graph.group_by or None,
            "sched": sched_summary_json(graph.sched),
        },
        "nodes": nodes,
        "edges": edges,
        "entry_callers": view.entry_callers,
        "call_tree": call_tree,
    }
    if baseline is not None:
        result["baseline"] = {
            "inputs": baseline.stats.inputs,
            "events": baseline.stats.events,
            "only_in_baseline": sorted(name for name in baseline.calls if name not in graph.calls),
        }
    return result


def group_json(name: str, graph: CallGraph) -> dict:
    """A --group-by group's functions: each one's calls and self time inside it, most called first."""
    members = sorted(graph.members[name].items(), key=lambda item: (-item[1][0], item[0]))
    return {
        "group": True,
        "inner_calls": graph.inner_calls(name),
        "members": [{"name": member, "calls": int(calls), "self_time_us": round(self_us, 3) if graph.timed else None} for member, (calls, self_us) in members],
    }


def off_cpu_json(found: OffCpu | None, total_us: float, timed: bool) -> dict:
    """on_cpu_us, off_cpu_us, sleeps, off_cpu_states (prev_state -> us) of a function or call path; times None without timestamps."""
    off = found.off_us if found is not None else 0.0
    return {
        "on_cpu_us": round(max(0.0, total_us - off), 3) if timed else None,
        "off_cpu_us": round(off, 3) if timed else None,
        "sleeps": found.sleeps if found is not None else 0,
        "off_cpu_states": {state: round(value, 3) for state, value in sorted(found.states.items())} if found is not None and timed else {},
    }


def sched_summary_json(sched: SchedTimes | None) -> dict | None:
    """The scheduler events' totals (None: the input has no sched_switch)."""
    if sched is None:
        return None
    return {
        "sleeps": sched.sleep_count,
        "off_cpu_us": round(sched.sleep_total_us, 3) if sched.timed else None,
        "off_cpu_states": {state: round(value, 3) for state, value in sorted(sched.state_us.items())} if sched.timed else {},
        "sleeps_by_state": dict(sorted(sched.state_sleeps.items())),
        "open_at_end": sched.open_sleeps,
        "outside_traced_calls": sched.untraced_sleeps,
        "frames_not_in_call_tree": sched.unmapped_frames,
        "switch_ins_not_seen": sched.switch_ins_unseen,
        "timed": sched.timed,
        "wakeup_event": sched.wakeup_event,
    }


def function_numbers(graph: CallGraph, name: str) -> dict:
    return {
        "calls": graph.calls.get(name, 0),
        "total_time_us": round(graph.total_us.get(name, 0.0), 3) if graph.timed else None,
        "self_time_us": round(graph.self_us.get(name, 0.0), 3) if graph.timed else None,
    }


def call_tree_json(tree: CallTree, sched: SchedTimes | None = None) -> list[dict]:
    """Every call path as a node {id, parent, function, calls, total_time_us, self_time_us}; parent 0 is the root.

    With return addresses (funcgraph-retaddr) a node has call_sites: {"caller+0x6b/0x1a3": calls}, as the kernel printed them.

    With scheduler events, each also has on_cpu_us, off_cpu_us, sleeps and off_cpu_states."""
    renumber = {ROOT_NODE: 0}
    nodes = []
    stack = sorted((tree.children[ROOT_NODE] or {}).items(), reverse=True)
    stack_ids = [kid for _, kid in stack]
    while stack_ids:
        node = stack_ids.pop()
        renumber[node] = len(renumber)
        nodes.append({
            "id": renumber[node],
            "parent": renumber[tree.parent[node]],
            "function": tree.function[node],
            "calls": tree.calls[node],
            "total_time_us": round(tree.total_us[node], 3) if tree.timed else None,
            "self_time_us": round(tree.self_us[node], 3) if tree.timed else None,
            "open_calls": tree.open_calls.get(node, 0),
        })
        if node in tree.call_sites:  # funcgraph-retaddr: where this path's calls were made, as the kernel printed it
            nodes[-1]["call_sites"] = dict(sorted(tree.call_sites[node].items(), key=lambda item: (-item[1], item[0])))
        if sched is not None:
            found = OffCpu(sched.off_us.get(node, 0.0), sched.sleeps.get(node, 0), sched.states.get(node, {})) if node in sched.sleeps else None
            nodes[-1].update(off_cpu_json(found, tree.total_us[node], sched.timed))
        kids = tree.children[node]
        if kids:
            stack_ids.extend(kid for _, kid in sorted(kids.items(), reverse=True))
    return nodes


def write_json(view: View, output: str, heat: Heat, baseline: CallGraph | None, extra: dict | None = None) -> None:
    """The graph_json() of the view, with `extra`'s keys added (--errors)."""
    with atomic_output(output) as tmp, output_errors(output), open(tmp, "w", encoding="utf-8") as handle:
        try:
            # allow_nan=False: JavaScript's JSON.parse refuses NaN/Infinity; the parsers never let one through
            handle.writelines(json_lines({**graph_json(view, heat, baseline), **(extra or {})}))
        except ValueError as err:
            raise UserError(f"cannot write {output}: {err}") from err
        handle.write("\n")


STRICT_JSON = json.JSONEncoder(allow_nan=False)  # made once: json.dumps(allow_nan=False) makes one per call


def json_lines(value: object, indent: str = "") -> Iterator[str]:
    """JSON text with one line per key of the outer objects and per record of their lists.

    Readable (a node, an edge, a counter per line; `jq` or `grep` find them)
    and fast: each line is one json.dumps call, which runs in C, where
    json.dump(indent=...) runs Python's own encoder over every value (0.5 s
    of a 4 MB graph.json). allow_nan=False: JavaScript's JSON.parse refuses
    NaN/Infinity; the parsers never let one through.
    """
    inner = indent + " "
    encode = STRICT_JSON.encode
    if isinstance(value, dict) and (len(value) > 8 or any(isinstance(item, (dict, list)) for item in value.values())):
        yield "{"
        for number, (key, item) in enumerate(value.items()):
            name = key if isinstance(key, str) else encode(key)  # 5 -> "5", True -> "true", as json.dump names keys
            yield f"{',' if number else ''}\n{inner}{encode(name)}: "
            yield from json_lines(item, inner)
        yield f"\n{indent}}}"
    elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        yield f"[\n{inner}"
        yield f",\n{inner}".join(map(encode, value))
        yield f"\n{indent}]"
    else:
        yield encode(value)


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (no display is needed or used)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(figure: Any, output: str) -> None:
    """Write a figure whole or not at all, and free it; its title also goes in the PNG's Title field (image viewers show it)."""
    title = " ".join(" ".join(axes.get_title().split()) for axes in figure.axes)
    try:
        with atomic_output(output) as tmp, output_errors(output):
            figure.savefig(tmp, format="png", dpi=110, metadata={"Title": title})
    finally:
        pyplot().close(figure)


def render_chart(view: View, output: str, top: int, heat: Heat, scope: str = "") -> None:
    """A bar chart of the functions ranked by the heat metric, or by their change from the baseline."""
    plt = pyplot()

    graph = view.graph
    stats = graph.stats
    if heat.baseline is not None:
        names = set(heat.values) | set(heat.baseline)
        changes = {name: heat.values.get(name, 0.0) - heat.baseline.get(name, 0.0) for name in names}
        shown = sorted((name for name in names if changes[name]), key=lambda name: (-abs(changes[name]), name))[:top]
        values = [changes[name] for name in shown]
        colours = [colour_hex("RdBu_r", 0.5 + 0.42 * math.copysign(math.sqrt(abs(v) / max(map(abs, values))), v)) for v in values] if values else []
        what = f"Biggest changes of {heat.metric if heat.metric == 'calls' else heat.metric + ' time'} from the baseline"
    else:
        shown = sorted((name for name in view.nodes if heat.values.get(name, 0.0) > 0), key=lambda name: (-heat.values[name], name))[:top]
        values = [heat.values[name] for name in shown]
        colours = [heat.node_colour(name) for name in shown]
        what = "Most-called kernel functions" if heat.metric == "calls" else f"Kernel functions by {heat.metric} time"
        if graph.group_by:
            what = f"Kernel source groups (--group-by {graph.group_by}) by {'calls into them' if heat.metric == 'calls' else heat.metric + ' time'}"
        if graph.reversed:
            what = f"{view.focus} and its callers by the {'calls' if heat.metric == 'calls' else heat.metric + ' time'} of {view.focus} through each"
    height = max(3.0, 0.32 * len(shown) + 1.6)
    figure, axes = plt.subplots(figsize=(11, height))
    positions = list(range(len(shown)))
    axes.barh(positions, values, color=colours, edgecolor="0.3", linewidth=0.4)
    axes.set_yticks(positions)
    axes.set_yticklabels([shown_name(name, graph) for name in shown], fontsize=9, family="monospace")
    axes.invert_yaxis()
    unit = "calls" if heat.metric == "calls" else f"{heat.metric} time (us)"
    if graph.reversed and heat.baseline is None:
        unit = f"calls of {view.focus}" if heat.metric == "calls" else f"{heat.metric} time of {view.focus} (us)"
    if heat.baseline is None and values and max(values) > 50 * max(min(values), 1e-9):
        axes.set_xscale("log")
        axes.set_xlabel(f"{unit} (log scale)")
    else:
        axes.set_xlabel(unit if heat.baseline is None else f"change of {unit}")
    for position, value in zip(positions, values):
        label = format_metric(value, heat.metric, signed=heat.baseline is not None)
        axes.text(value, position, f" {label} " if value >= 0 else f"{label} ", va="center", ha="left" if value >= 0 else "right", fontsize=8)
    title = f"{what}: top {len(shown)} of {len(view.nodes):,} {'groups' if graph.group_by else 'functions'}, {stats.events:,} events{scope}"
    lost = stats.lost_events
    title += f"\nlost events: {lost:,} ({stats.lost_share():.1%} of all)" if lost else "\nlost events: none reported"
    if stats.open_calls:
        title += f"; {plural(stats.open_calls, 'call')} still open at the end, timed to their task's last event"
    axes.set_title(title, fontsize=11)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    save_png(figure, output)


# ============================================================================
# Output: folded stacks, timeline, latency, per-task chart
# ============================================================================


def check_sched_option(option: str, requested: str | None, graph: CallGraph) -> None:
    """--heat/--weight oncpu|offcpu: refused in one line without sched_switch events (or without timestamps to time them)."""
    if requested not in SCHED_METRICS:
        return
    if graph.sched is None:
        raise UserError(f"{option} {requested}: {NO_SCHED_EVENTS}")
    if not graph.sched.timed:
        raise UserError(f"{option} {requested}: the trace has no timestamps, so the time switched out is unknown: record with -O funcgraph-abstime, or a trace.dat")


def folded_weight(requested: str | None, graph: CallGraph) -> str:
    check_sched_option("--weight", requested, graph)
    if requested is None:
        return "self" if graph.timed else "calls"
    if requested != "calls" and not graph.timed:
        raise UserError(f"--weight {requested} needs durations, and this trace has none: use --weight calls")
    return requested


def folded_lines(graph: CallGraph, weight: str) -> Iterator[tuple[str, int]]:
    """(a;b;c, weight) for every call path with a weight of its own: its calls, or its self time in ns.

    A flame graph sums the lines below a frame, so self time per path gives
    frames as wide as their total time: --weight total writes the same lines.
    --weight offcpu: the path's off-CPU time less its callees' (an off-CPU flame graph); oncpu: its self time less that.
    """
    tree = graph.tree
    own = path_own_values(graph, weight) if weight in SCHED_METRICS else tree.self_us
    stack: list[tuple[int, str]] = [(kid, name) for name, kid in sorted((tree.children[ROOT_NODE] or {}).items(), reverse=True)]
    while stack:
        node, path = stack.pop()
        value = tree.calls[node] if weight == "calls" else round(max(own[node], 0.0) * 1000)
        if value > 0:
            yield path, value
        kids = tree.children[node]
        if kids:
            stack.extend((kid, f"{path};{name}") for name, kid in sorted(kids.items(), reverse=True))


def path_own_values(graph: CallGraph, weight: str) -> list[float]:
    """Per call path, the part of its on- or off-CPU time that is not its callees': what a folded line weighs."""
    tree = graph.tree
    on, off = path_on_off(graph)
    values = on if weight == "oncpu" else off
    own = list(values)
    for node in tree.walk():
        parent = tree.parent[node]
        if parent > ROOT_NODE:
            own[parent] -= values[node]
    return own


def caller_folded_lines(graph: CallGraph, weight: str) -> Iterator[tuple[str, int]]:
    """(outermost caller;...;F, weight) for every caller path of a --callers tree: F's own weight through it.

    The reversed tree has F at a root and each caller below its callee; a node
    holds F's activations reached through its chain, so the part that goes no
    further up (the chain's outermost caller, or the --depth cut) is the node's
    weight minus its children's. The lines add up to F's calls, self or total time.
    """
    tree = graph.tree
    values: list[int] | list[float] = tree.calls if weight == "calls" else tree.self_us if weight == "self" else tree.total_us
    if weight in SCHED_METRICS:
        values = path_on_off(graph)[0 if weight == "oncpu" else 1]
    for node in sorted(tree.walk(), key=tree.path):
        own = values[node] - sum(values[kid] for kid in (tree.children[node] or {}).values())
        value = int(own) if weight == "calls" else round(max(own, 0.0) * 1000)
        if value > 0:
            yield ";".join(reversed(tree.path(node))), value


def write_folded(views: Views, output: str) -> None:
    """.folded: one line per call path, as flamegraph.pl, inferno, speedscope and difffolded.pl read it."""
    graph = views.view.graph
    weight = folded_weight(views.args.weight, graph)
    lines = caller_folded_lines(graph, weight) if graph.reversed else folded_lines(graph, weight)
    paths = total = 0
    with atomic_output(output) as tmp, output_errors(output), open(tmp, "w", encoding="utf-8") as handle:
        for path, value in lines:
            handle.write(f"{path} {value}\n")
            paths += 1
            total += value
    if graph.woken:
        unit = "sleeps" if weight == "calls" else f"ns waited ({format_us(total / 1000)})"
        say(f"folded stacks: {paths:,} waker paths of {views.view.focus}'s sleeps, weights add up to {total:,} {unit}")
        return
    if graph.reversed:
        unit = "calls" if weight == "calls" else f"ns of {METRIC_WORDS.get(weight, weight + ' time')} ({format_us(total / 1000)})"
        say(f"folded stacks: {paths:,} caller paths leading to {views.view.focus}, weights add up to {views.view.focus}'s {total:,} {unit}")
        return
    unit = "calls" if weight == "calls" else f"ns of {METRIC_WORDS.get(weight, 'self time')} ({format_us(total / 1000)})"
    say(f"folded stacks: {paths:,} call paths, weights add up to {total:,} {unit}")


def timeline_events(
    intervals: Iterable[CallInterval], window: tuple[float, float] | None, placed: dict[int, tuple[int, float, float]] | None = None
) -> tuple[list[dict], dict[str, str], int]:
    """Chrome trace events, strictly nested per task; and the task names; and how many calls had to be clamped.

    Timestamps are printed to the microsecond, durations to the nanosecond, so
    a child can seem to end up to a microsecond after its parent: it is cut
    to its parent's end (counted). `placed` gets each drawn call's entry
    number -> (thread id, start, end as drawn), for the wakeup arrows.
    """
    per_task: dict[str, list[CallInterval]] = {}
    names: dict[str, str] = {}
    for call in intervals:
        if call.start_us is None:
            continue
        if window and (call.start_us < window[0] or call.start_us > window[1]):
            continue
        per_task.setdefault(call.task, []).append(call)
        if call.comm:
            names[call.task] = call.comm
    events: list[dict] = []
    clamped = 0
    for task, calls in per_task.items():
        tid = task_thread_id(task)
        calls.sort(key=lambda call: (call.start_us, -(call.duration_us or 0.0)))
        open_ends: list[float] = []
        for call in calls:
            start = call.start_us or 0.0
            if call.duration_us is None:
                events.append({"name": call.name, "ph": "i", "s": "t", "ts": round(start, 3), "pid": 0, "tid": tid, "args": {"cpu": call.cpu}})
                continue
            while open_ends and open_ends[-1] <= start:
                open_ends.pop()
            end = start + call.duration_us
            if open_ends and end > open_ends[-1]:
                end = open_ends[-1]
                clamped += 1
            events.append({"name": call.name, "ph": "X", "ts": round(start, 3), "dur": round(end - start, 3), "pid": 0, "tid": tid, "args": {"cpu": call.cpu}})
            open_ends.append(end)
            if placed is not None and call.entry_no >= 0:
                placed[call.entry_no] = (tid, round(start, 3), round(start, 3) + round(end - start, 3))
    return events, names, clamped


def task_thread_id(task: str) -> int:
    """Chrome trace thread ids are numbers: a pid as it is, a CPU's idle task and unnamed CPU streams above 2^31."""
    if task.isdigit():
        return int(task)
    digits = "".join(ch for ch in task if ch.isdigit()) or "0"
    return (1 << 31) + int(digits[:6])


def parse_window(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    match = re.fullmatch(r"\s*(\d{1,12}(?:\.\d{1,9})?)\s*,\s*(\d{1,12}(?:\.\d{1,9})?)\s*", text)
    if not match or float(match.group(1)) >= float(match.group(2)):
        raise UserError(f"--time-window {text}: give START,END in seconds of trace time, START before END (e.g. 194.2,194.5)")
    return float(match.group(1)) * 1e6, float(match.group(2)) * 1e6


def window_scope(args: argparse.Namespace, stats: TraceStats) -> str:
    """A chart title's line naming the --time-window and the trace's span ("" without a window)."""
    window = parse_window(args.time_window)
    if window is None:
        return ""
    return f"\ncalls that start in {window[0] / 1e6:.6f}-{window[1] / 1e6:.6f} s (the trace spans {stats.time_span()})"


SCHED_PID = 1  # the timeline's second process: one track per task, on or off its CPU
OFF_CPU_NAMES = {"S": "asleep (S)", "D": "asleep, uninterruptible (D)", "I": "idle kernel thread asleep (I)", "R": "preempted (R)"}
NS = 0.001  # one nanosecond in the timeline's microseconds


def sched_thread_id(task: str) -> int:
    """A task's on/off-CPU track: its call track's id plus 2^30 (pids stay below 2^22), so no two tracks share an id."""
    return task_thread_id(task) + (1 << 30)


def sched_slice_name(state: str) -> str:
    if state == "running":
        return "running"
    return OFF_CPU_NAMES.get(state[:1], f"switched out ({state})")


def inside(start: float, end: float, stamp: float) -> float | None:
    """The stamp moved at most into the open interval (start, end) by a nanosecond, so a flow binds to this slice
    whatever order a viewer reads equal timestamps in; None when the slice is too short to hold one."""
    if end - start < 2 * NS:
        return None
    return round(min(max(stamp, start + NS), end - NS), 3)


def clipped(item: RunSlice, window: tuple[float, float] | None) -> tuple[float, float] | None:
    if window is None:
        return item.start_us, item.end_us
    start, end = max(item.start_us, window[0]), min(item.end_us, window[1])
    return (start, end) if start < end else None


@dataclass
class SchedTimeline:
    """The on/off-CPU tracks and wakeup arrows of a timeline, and what could not be drawn."""

    events: list[dict] = field(default_factory=list)
    tracks: dict[str, str] = field(default_factory=dict)  # task -> its track's name
    flows: int = 0
    unbound: int = 0  # wakeups with no slice to bind to: the waker's at the wakeup is not in the trace, or the woken one is too short


def sched_timeline(tracks: SchedTracks, selection: TaskSelection, window: tuple[float, float] | None, placed: dict[int, tuple[int, float, float]]) -> SchedTimeline:
    """Each selected task's running and switched-out slices, and a flow arrow from each wakeup to the woken task's next slice.

    The arrow starts on the waker's innermost open call (try_to_wake_up in
    sock_def_readable ...) where that call is drawn, else on the waker's
    running slice; it ends on the woken task's running slice that the wakeup began.
    """
    result = SchedTimeline()
    shown = {item.task for item in tracks.slices if selection.keeps(item.task, tracks.comms.get(item.task, ""), item.cpu)}
    arrows = [item for item in tracks.slices if item.woken_by is not None and item.task in shown]
    if window is not None:
        arrows = [item for item in arrows if item.woken_by and window[0] <= item.woken_by.stamp_us and item.start_us <= window[1]]
    shown |= {item.woken_by.waker for item in arrows if item.woken_by}
    running: dict[str, list[tuple[float, float]]] = {}
    for item in tracks.slices:
        span = clipped(item, window) if item.task in shown else None
        if span is None:
            continue
        args: dict[str, object] = {"cpu": item.cpu, "state": item.state}
        if item.note:
            args["note"] = item.note
        if item.woken_by is not None:
            waker = item.woken_by
            args["woken_by"] = f"{tracks.comms.get(waker.waker, waker.waker_comm)}-{waker.waker.split('/')[0]} on CPU {waker.waker_cpu} ({waker.event} at {waker.stamp_us / 1e6:.6f} s)"
        result.events.append({"name": sched_slice_name(item.state), "cat": "sched", "ph": "X", "ts": round(span[0], 3), "dur": round(span[1] - span[0], 3),
                              "pid": SCHED_PID, "tid": sched_thread_id(item.task), "args": args})
        if item.state == "running":
            running.setdefault(item.task, []).append((round(span[0], 3), round(span[0], 3) + round(span[1] - span[0], 3)))
    result.tracks = {task: tracks.comms.get(task, "") for task in shown}
    for item in arrows:
        waker = item.woken_by
        assert waker is not None
        start = flow_start(waker, placed, running.get(waker.waker, []))
        span = clipped(item, window)
        end = inside(round(span[0], 3), round(span[0], 3) + round(span[1] - span[0], 3), span[0]) if span else None
        if start is None or end is None:
            result.unbound += 1
            continue
        result.flows += 1
        flow = {"name": "wakeup", "cat": "wakeup", "id": result.flows}
        result.events.append({**flow, "ph": "s", "ts": start[1], "pid": start[0], "tid": start[2], "args": {"event": waker.event}})
        result.events.append({**flow, "ph": "f", "bp": "e", "ts": end, "pid": SCHED_PID, "tid": sched_thread_id(item.task)})
    return result


def flow_start(waker: Handover, placed: dict[int, tuple[int, float, float]], running: list[tuple[float, float]]) -> tuple[int, float, int] | None:
    """(pid, ts, tid) where a wakeup arrow starts: in the waker's innermost open call if drawn, else in its running slice."""
    call = placed.get(waker.waker_entry)
    if call is not None and call[1] <= waker.stamp_us <= call[2]:
        stamp = inside(call[1], call[2], waker.stamp_us)
        if stamp is not None:
            return 0, stamp, call[0]
    for start, end in running:
        if start <= waker.stamp_us <= end:
            stamp = inside(start, end, waker.stamp_us)
            return (SCHED_PID, stamp, sched_thread_id(waker.waker)) if stamp is not None else None
    return None


def split_trace_events(stream: Iterable[CallInterval | TraceEvent], tracker: SliceTracker) -> Iterator[CallInterval]:
    """The calls of an IntervalReader(events=True) stream; its events go to the tracker."""
    for item in stream:
        if isinstance(item, TraceEvent):
            tracker.add(item)
        else:
            yield item


def write_timeline(views: Views, output: str) -> None:
    """.trace.json: every call on its task's track, for Perfetto (ui.perfetto.dev) and chrome://tracing.

    With scheduler events in the trace, a second process holds each task's
    running and switched-out slices, and flow arrows go from each wakeup to the
    slice of the task it woke.
    """
    args = views.args
    selection = selection_of(args)
    switches = views.view.graph.stats.trace_events.get(SCHED_SWITCH, 0) > 0  # else the calls alone, as fast as before
    reader = IntervalReader(selection, events=switches)
    tracker = SliceTracker()
    window = parse_window(args.time_window)
    placed: dict[int, tuple[int, float, float]] | None = {} if switches else None
    events, names, clamped = timeline_events(split_trace_events(reader.read(args.input or ["kernel-magnifier.data"]), tracker), window, placed)
    if not reader.timestamps:
        raise UserError(
            "this trace has no timestamps, so there is no timeline: record function_graph with -O funcgraph-abstime"
            " (and -O funcgraph-proc for task names), or use the function tracer, whose lines carry a timestamp"
        )
    tracks = tracker.finish()
    sched = sched_timeline(tracks, selection, window, placed or {})
    if not events and not sched.events:
        raise UserError("no call in the selected tasks, CPUs and --time-window")
    metadata = [{"name": "process_name", "ph": "M", "pid": 0, "args": {"name": "kernel (one track per task)"}}]
    tids = {event["tid"] for event in events}
    for task, comm in names.items():
        if task_thread_id(task) in tids:
            metadata.append({"name": "thread_name", "ph": "M", "pid": 0, "tid": task_thread_id(task), "args": {"name": f"{comm}-{task}"}})
    if sched.tracks:
        metadata.append({"name": "process_name", "ph": "M", "pid": SCHED_PID, "args": {"name": "scheduler: each task on or off its CPU (sched_switch), arrows: wakeups"}})
        metadata.extend({"name": "thread_name", "ph": "M", "pid": SCHED_PID, "tid": sched_thread_id(task), "args": {"name": f"{comm or '?'}-{task.split('/')[0]} on/off CPU"}}
                        for task, comm in sorted(sched.tracks.items()))
    with atomic_output(output) as tmp, output_errors(output), open(tmp, "w", encoding="utf-8") as handle:
        json.dump({"traceEvents": metadata + events + sched.events, "displayTimeUnit": "ns",
                   "otherData": {"inputs": ", ".join(args.input or []), "lost_events": views.view.graph.stats.lost_events}}, handle, separators=(",", ":"))
    size = os.path.getsize(output)
    say(f"timeline: {len(events):,} calls on {len(tids):,} task tracks ({format_size(size)}); {clamped:,} cut to their caller's end (times are rounded, or taken when the exit was written)")
    if switches:
        say(sched_timeline_line(tracks, sched))
    if size > 200 << 20:
        warn(f"{output} is {format_size(size)}: chrome://tracing stops near 256 MB and Perfetto's UI near 2 GB of memory; cut it with --time-window, --pid or --cpu")


def sched_timeline_line(tracks: SchedTracks, sched: SchedTimeline) -> str:
    """What the timeline shows of the scheduler, or that the trace has no sched_switch to show it from."""
    if not tracks.slices:
        return "timeline: no sched_switch events in the trace, so no on/off-CPU tracks and no wakeup arrows"
    text = f"timeline: {len(sched.tracks):,} on/off-CPU tracks (sched_switch), {sched.flows:,} wakeup arrows from the waker to the woken task's next slice"
    if sched.unbound:
        text += f"; {plural(sched.unbound, 'wakeup')} not drawn (no slice of the waker at the wakeup in the trace, or the woken task's slice shorter than 2 ns)"
    if tracks.unmatched_switches:
        text += f"; {tracks.unmatched_switches:,} switch-outs without the switch-in before them (events lost)"
    return text


LATENCY_DRAWN = 6  # functions of a --latency glob drawn apart in the histogram (all of them are printed)


@dataclass
class Latency:
    """The call durations of each function a --latency name or glob matches, with the slowest calls' task and time."""

    pattern: str
    durations: dict[str, list[float]]  # per function: a glob never pools several functions into one distribution
    slowest: list[CallInterval]
    scope: str = ""  # what part of the trace: the calls that start in --time-window

    def ranked(self) -> list[str]:
        """The functions by the total time of their calls, most first."""
        return sorted(self.durations, key=lambda name: (-sum(self.durations[name]), name))


def duration_percentiles(durations: list[float]) -> dict[str, float]:
    import numpy

    values = numpy.percentile(durations, [50, 90, 99])
    return {"p50": float(values[0]), "p90": float(values[1]), "p99": float(values[2]), "max": max(durations)}


def latency_summary(durations: list[float]) -> str:
    numbers = duration_percentiles(durations)
    return f"{plural(len(durations), 'call')}, p50 {format_us(numbers['p50'])}, p90 {format_us(numbers['p90'])}, p99 {format_us(numbers['p99'])}, max {format_us(numbers['max'])}"


def latency_of(args: argparse.Namespace, symbols: SymbolMap | None = None) -> Latency:
    reader = IntervalReader(selection_of(args))
    durations: dict[str, list[float]] = {}
    slowest: list[tuple[float, int, CallInterval]] = []
    for index, call in enumerate(calls_in_window(reader.read(args.input or ["kernel-magnifier.data"]), parse_window(args.time_window))):
        if call.duration_us is None or not (call.name == args.latency or fnmatch.fnmatchcase(call.name, args.latency)):
            continue
        durations.setdefault(call.name, []).append(call.duration_us)
        heapq.heappush(slowest, (call.duration_us, index, call))
        if len(slowest) > 10:
            heapq.heappop(slowest)
    if not durations and reader.selection and reader.selection.seen:
        raise UserError(empty_selection_message(reader.selection, reader.selection.seen, args.input or ["kernel-magnifier.data"]))
    if not reader.kind:  # --latency alone does not parse the call graph, whose checks would have said so
        raise UserError(f"{' and '.join(args.input or ['kernel-magnifier.data'])}: no function_graph or function calls found: not an ftrace trace")
    if not durations:
        why = "this trace has no durations (function tracer)" if reader.kind == "function" else "no completed call of it in the trace" + (" that starts in --time-window" if args.time_window else "")
        raise UserError(f"--latency {args.latency}: {latency_missing(args, symbols, why)}")
    window = parse_window(args.time_window)
    scope = f"calls that start in --time-window {window[0] / 1e6:.6f}-{window[1] / 1e6:.6f} s" if window else ""
    return Latency(args.latency, durations, [call for _, _, call in sorted(slowest, key=lambda item: -item[0])], scope)


def latency_missing(args: argparse.Namespace, symbols: SymbolMap | None, why: str) -> str:
    """For a --latency name no call has: only inlined (per the symbol map), else WHY and the names it may have meant
    (the trace is read again, on this error only)."""
    reader = IntervalReader(selection_of(args))
    names = {call.name for call in reader.read(args.input or ["kernel-magnifier.data"])}
    if any(fnmatch.fnmatchcase(name, args.latency) for name in names):
        return why
    return only_inlined_message(args.latency, symbols, names) or why + name_suggestions(args.latency, names)


def report_latency(latency: Latency, output: str) -> None:
    """Print the numbers, one line per function a glob matches, and draw the histogram of call durations on a log axis."""
    ranked = latency.ranked()
    if latency.scope:
        say(f"latency: the {latency.scope}")
    if len(ranked) == 1:
        say(f"latency of {ranked[0]}: {latency_summary(latency.durations[ranked[0]])}")
    else:
        say(f"latency of {latency.pattern}: {len(ranked)} functions, one line each, by the total time of their calls")
        for name in ranked:
            say(f"  {name}: {latency_summary(latency.durations[name])}, total {format_us(sum(latency.durations[name]))}")
        say("slowest calls:")
    for call in latency.slowest[:5]:
        when = f" at {call.start_us / 1e6:.6f} s" if call.start_us is not None else ""
        say(f"  {format_us(call.duration_us or 0.0)} {call.name}{when} task {call.comm or '?'}-{call.task} CPU {call.cpu if call.cpu is not None else '?'}")
    draw_latency_histogram(latency, ranked, output)
    say(f"{output} generated")


def draw_latency_histogram(latency: Latency, ranked: list[str], output: str) -> None:
    """One function: its histogram and percentile lines. Several: the LATENCY_DRAWN with the most total time, one outline each."""
    import numpy

    plt = pyplot()
    drawn = ranked[:LATENCY_DRAWN]
    values = numpy.concatenate([numpy.array(latency.durations[name]) for name in drawn])
    low, high = max(values.min(), 0.001), max(values.max(), 0.002)
    bins = numpy.logspace(math.log10(low), math.log10(high) + 1e-9, 40)
    figure, axes = plt.subplots(figsize=(10, 5))
    if len(ranked) == 1:
        numbers = duration_percentiles(latency.durations[ranked[0]])
        axes.hist(numpy.clip(values, low, None), bins=bins, color=colour_hex("YlOrRd", 0.6), edgecolor="0.3", linewidth=0.4)
        for label, value, style in (("p50", numbers["p50"], "-"), ("p90", numbers["p90"], "--"), ("p99", numbers["p99"], ":")):
            axes.axvline(max(value, low), color="0.15", linestyle=style, linewidth=1)
            axes.text(max(value, low), axes.get_ylim()[1] * 0.95, f" {label}", fontsize=8, va="top")
        axes.set_title(f"Latency of {ranked[0]}(): {latency_summary(latency.durations[ranked[0]])}", fontsize=10)
    else:
        colours = plt.get_cmap("tab10")
        for index, name in enumerate(drawn):
            durations = latency.durations[name]
            label = f"{name}: {plural(len(durations), 'call')}, p99 {format_us(duration_percentiles(durations)['p99'])}, total {format_us(sum(durations))}"
            axes.hist(numpy.clip(durations, low, None), bins=bins, histtype="step", linewidth=1.5, color=colours(index), label=label)
        axes.legend(fontsize=8)
        left_out = f"; {len(ranked) - len(drawn)} more not drawn (printed)" if len(ranked) > len(drawn) else ""
        axes.set_title(f"Latency of {latency.pattern}: {len(ranked)} functions, the {len(drawn)} with the most total time{left_out}", fontsize=10)
    axes.set_xscale("log")
    axes.set_xlabel("call duration (us, log scale)")
    axes.set_ylabel("calls")
    slow = "; ".join(f"{format_us(call.duration_us or 0.0)}{' ' + call.name if len(ranked) > 1 else ''} {call.comm or '?'}-{call.task}"
                     + (f" @{call.start_us / 1e6:.6f}s" if call.start_us is not None else "") for call in latency.slowest[:3])
    figure.text(0.01, 0.01, f"slowest: {slow}" + (f"; the {latency.scope}" if latency.scope else ""), fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    save_png(figure, output)


def render_task_chart(args: argparse.Namespace, output: str, by: str, stats: TraceStats) -> None:
    """The chart ranked by task or CPU: by calls, or with --heat self/total by the time of their top-level calls (sleep included)."""
    plt = pyplot()

    calls: Counter[str] = Counter()
    time_us: Counter[str] = Counter()
    names: dict[str, str] = {}
    reader = IntervalReader(selection_of(args))
    for call in calls_in_window(reader.read(args.input or ["kernel-magnifier.data"]), parse_window(args.time_window)):
        key = call.task if by == "task" else f"CPU{call.cpu}"
        calls[key] += 1
        if call.comm and by == "task":  # a CPU's bar is the CPU's, whatever task ran last on it
            names[key] = f"{call.comm}-{call.task}"
        if call.depth == 0 and call.duration_us is not None:
            time_us[key] += call.duration_us
    use_time = bool(time_us) and args.heat in ("self", "total")
    ranking = time_us if use_time else calls
    shown = [key for key, _ in ranking.most_common(args.chart_top)]
    values = [ranking[key] for key in shown]
    figure, axes = plt.subplots(figsize=(11, max(3.0, 0.32 * len(shown) + 1.6)))
    axes.barh(range(len(shown)), values, color=colour_hex("YlOrRd", 0.55), edgecolor="0.3", linewidth=0.4)
    axes.set_yticks(range(len(shown)))
    axes.set_yticklabels([names.get(key, key) for key in shown], fontsize=9, family="monospace")
    axes.invert_yaxis()
    axes.set_xlabel("time in top-level calls (us)" if use_time else "calls")
    for position, key in enumerate(shown):
        text = f"{calls[key]:,} calls" + (f", {format_us(time_us[key])} in top-level calls" if time_us else "")
        axes.text(ranking[key], position, " " + text, va="center", fontsize=8)
    lost = stats.lost_events
    axes.set_title(f"{'Tasks' if by == 'task' else 'CPUs'} by {'time' if use_time else 'calls'}: top {len(shown)} of {len(ranking):,}{window_scope(args, stats)}"
                   + (f"\nlost events: {lost:,} ({stats.lost_share():.1%} of all)" if lost else "\nlost events: none reported"), fontsize=11)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    save_png(figure, output)


# ============================================================================
# Output: flame graph (HTML)
# ============================================================================
# One self-contained page (inline CSS and script, the call tree as embedded
# JSON, a Content-Security-Policy that forbids any request): it opens offline
# in any browser. The script zooms, searches, shows tooltips and the callers
# of a function from the same tree; frames too narrow to see are merged there.

HTML_MAX_FRAMES = 100_000  # call paths embedded in a page; lighter ones are left out, their time stays in their callers


def flame_weights(tree: CallTree, use_time: bool, values: list[float] | None = None) -> list[float]:
    """A frame's width: its total time (or calls in its subtree, or `values`: on/off-CPU time), at least the sum of its children.

    A call whose exit was lost has no duration but its callees do: it is
    drawn at least as wide as they are, so frames always nest.
    """
    own: list[float] = list(values) if values is not None else list(tree.total_us) if use_time else [float(calls) for calls in tree.subtree_calls()]
    children_sum = [0.0] * len(tree)
    for node in reversed(list(tree.walk())):
        own[node] = max(own[node], children_sum[node])
        children_sum[tree.parent[node]] += own[node]
    own[ROOT_NODE] = children_sum[ROOT_NODE]
    return own


def flame_frames(tree: CallTree, weights: list[float], limit: int = HTML_MAX_FRAMES) -> tuple[list[int], int]:
    """The call paths to embed, parents before children and heaviest first, and how many were left out.

    Beyond `limit` only the heaviest are kept; ties go to the path met first
    from the root, so a kept path's caller is always kept (it weighs at least
    as much).
    """
    order = [node for node in tree.walk() if weights[node] > 0]
    keep = set(order)
    if len(order) > limit:
        keep = {order[index] for index in sorted(range(len(order)), key=lambda index: (-weights[order[index]], index))[:limit]}
    kept = [ROOT_NODE]
    stack = [ROOT_NODE]
    while stack:
        kids = sorted((kid for kid in (tree.children[stack.pop()] or {}).values() if kid in keep), key=lambda kid: weights[kid])
        kept.extend(kids[::-1])
        stack.extend(kids)
    return kept, len(order) - len(keep)


def flame_data(views: Views) -> dict:
    """The page's JSON: names, files and the call tree in columns (parent indexes point backwards)."""
    view = views.view
    graph = view.graph
    tree = graph.tree
    use_time = tree.timed and views.heat.metric != "calls"
    requested = getattr(views.args, "weight", None)
    sched_weight = requested if requested in SCHED_METRICS else None
    check_sched_option("--weight", sched_weight, graph)
    on, off = path_on_off(graph)
    values = (on if sched_weight == "oncpu" else off) if sched_weight else None
    if graph.woken and not use_time:  # a --wakers tree counts sleeps on every node: a frame is as wide as its own
        values = [float(calls) for calls in tree.calls]
    weights = flame_weights(tree, use_time, values)
    columns, _ = tree_columns(tree, weights, off if graph.sched and graph.sched.timed else None, HTML_MAX_FRAMES)
    left_out = columns.pop("left_out")
    return {
        "timed": tree.timed,
        "woken": graph.woken,  # a --wakers tree: counts are sleeps, times the time they waited
        "weight": sched_weight or ("time" if use_time else "calls"),
        **columns,
        "files": [flame_source(name, view) for name in columns["names"]],
        "left_out_of_file": left_out,
    }


def tree_columns(tree: CallTree, weights: list[float], off: list[float] | None, limit: int) -> tuple[dict, list[int]]:
    """The call tree in columns for a page (index 0: all; parent indexes point backwards), at most `limit` call paths,
    the heaviest by `weights`; `off`: per node time switched out, or None. Also the embedded tree nodes in order."""
    frames, left_out = flame_frames(tree, weights, limit)
    index = {node: position for position, node in enumerate(frames)}
    names: dict[str, int] = {}
    for node in frames[1:]:
        names.setdefault(tree.function[node] or "", len(names))
    tops = list((tree.children[ROOT_NODE] or {}).values())
    columns = {
        "names": list(names),
        "fn": [-1] + [names[tree.function[node] or ""] for node in frames[1:]],
        "parent": [-1] + [index[tree.parent[node]] for node in frames[1:]],
        "calls": [sum(tree.calls[node] for node in tree.walk())] + [tree.calls[node] for node in frames[1:]],
        "total": [round(sum(tree.total_us[kid] for kid in tops), 3)] + [round(tree.total_us[node], 3) for node in frames[1:]],
        "self": [0] + [round(tree.self_us[node], 3) for node in frames[1:]],
        "w": [round(weights[node], 3) for node in frames],
        "off": [round(sum(off[kid] for kid in tops), 3)] + [round(off[node], 3) for node in frames[1:]] if off is not None else None,
        "left_out": left_out,
    }
    return columns, frames


def flame_source(name: str, view: View) -> str:
    sources = [shown_definition(definition) for definition in view.files.get(name, [])]
    module = view.graph.modules.get(name)
    return "; ".join(sources + ([f"[{module}]"] if module else []))


def flame_texts(views: Views, data: dict) -> dict[str, str]:
    """The page's fixed sentences: title, what the width means, lost events, notes."""
    graph = views.view.graph
    stats = graph.stats
    inputs = ", ".join(os.path.basename(path) for path in stats.inputs) or "trace"
    if graph.woken:
        width = wakers_page_width(views.view.focus, data, graph.timed)
    elif data["weight"] == "time":
        width = f"frame width = total time of the call path (its callees included, and interrupts and by default sleep); all = {format_us(data['w'][0])}"
    elif data["weight"] == "offcpu":
        width = f"an off-CPU flame graph: frame width = time the call path's task was switched out (asleep or preempted) while it was open; all = {format_us(data['w'][0])}"
    elif data["weight"] == "oncpu":
        width = f"frame width = on-CPU time of the call path: its total time less the time its task was switched out; all = {format_us(data['w'][0])}"
    else:
        why = "--heat calls" if graph.timed else "the trace has no durations"
        width = f"frame width = calls in the call path's subtree ({why}); all = {plural(data['w'][0], 'call')}"
    if graph.reversed and not graph.woken:
        width += "; this is a --callers view: a frame's callers are below it, and its width is the selected function's share through that chain"
    lost = stats.lost_events
    lost_text = f"the kernel lost {stats.lost_share():.1%} of events ({lost:,}): widths are lower bounds" if lost else "no lost events reported"
    notes = list(views.view.notes)
    if stats.open_calls:
        notes.append(open_calls_text(stats))
    if data["left_out_of_file"]:
        notes.append(f"{data['left_out_of_file']:,} call paths lighter than the {HTML_MAX_FRAMES:,} heaviest are left out of this file (their time stays in their callers' frames)")
    return {"title": f"kernel-magnifier flame graph: {inputs}", "width": width, "lost": lost_text, "lost_class": "lost" if lost else "", "notes": " · ".join(notes)}


def wakers_page_width(focus: str, data: dict, timed: bool) -> str:
    """What a --wakers page's frames are: sleeps of F woken through a waker's call path, and the time they waited."""
    what = (f"frame width = time the sleeps of {focus} waited that were woken through the call path; all = {format_us(data['w'][0])}" if data["weight"] == "time"
            else f"frame width = sleeps of {focus} woken through the call path; all = {plural(data['w'][0], 'sleep')}"
            + ("" if timed else " (the trace has no timestamps: the time they waited is unknown)"))
    return what + f"; this is a --wakers view: below {focus} is the waker's innermost open call when it woke the sleeper, below that its caller, and so on"


def flame_page(views: Views) -> str:
    data = flame_data(views)
    texts = {key: html.escape(value) for key, value in flame_texts(views, data).items()}
    page = FLAME_HTML.replace("@SCRIPT@", FLAME_JS)
    for key, value in texts.items():
        page = page.replace(f"@{key.upper()}@", value)
    return with_embedded_data(page, data)


def with_embedded_data(page: str, data: dict) -> str:
    """The page with its JSON in place of @DATA@ ("</" escaped, so no text in it can end the script element)."""
    return page.replace("@DATA@", json.dumps(data, separators=(",", ":")).replace("</", "<\\/"))


def write_page(output: str, page: str) -> None:
    with atomic_output(output) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(page)


def write_flame_html(views: Views, output: str) -> None:
    """.flame.html: an interactive flame graph of the view's call paths, one self-contained file."""
    write_page(output, flame_page(views))


# The page's own parts: its captions and the driver of FLAME_JS (which the explorer's flame view shares).
FLAME_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'">
<title>@TITLE@</title>
<style>
body{font:13px/1.4 system-ui,sans-serif;margin:12px;color:#222;background:#fff}
h1{font-size:16px;margin:0 0 4px}
p{margin:2px 0}
.lost{color:#b00020;font-weight:600}
#bar{position:sticky;top:0;background:#fff;z-index:2}
#tip{position:fixed;display:none;max-width:560px;background:#fffff0;border:1px solid #888;padding:4px 6px;font-size:12px;pointer-events:none;z-index:3;box-shadow:2px 2px 6px #0003}
</style></head><body>
<h1 id="title">@TITLE@</h1>
<p id="width">@WIDTH@</p>
<p id="lost" class="@LOST_CLASS@">@LOST@</p>
<p id="notes">@NOTES@</p>
<p>Click a frame to zoom into it, Reset zoom (or Esc) to go back; hover for numbers; search by substring or regular expression; Callers of F shows the call paths that lead to the last clicked function, merged bottom-up.</p>
<div id="flame"></div>
<div id="tip"></div>
<script type="application/json" id="data">@DATA@</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
@SCRIPT@
const flame = flameGraph(document.getElementById("flame"), flameTree(D), {
  tip: document.getElementById("tip"), timed: D.timed, woken: D.woken, weight: D.weight, hasOff: !!D.off,
  source: (x) => D.files[x.fi] || "",
});
document.addEventListener("keydown", (event) => { if (flame.key(event) && event.key !== "Escape") event.preventDefault(); });
window.addEventListener("resize", flame.render);
flame.render();
</script>
</body></html>
"""

# One flame graph in a page: the .flame.html page and the explorer's flame view both call flameGraph (no
# global names but these two functions, so that it sits beside the explorer's own script).
FLAME_JS = r"""
// The call tree from the embedded columns (a parent always comes before its children; index 0 is "all").
function flameTree(data) {
  const nodes = [];
  for (let i = 0; i < data.fn.length; i++) {
    const x = {name: i ? data.names[data.fn[i]] : "all", fi: data.fn[i], parent: i ? nodes[data.parent[i]] : null, kids: [],
               calls: data.calls[i], total: data.total[i], self: data.self[i], w: data.w[i], off: data.off ? data.off[i] : 0};
    nodes.push(x);
    if (i) x.parent.kids.push(x);
  }
  nodes[0].root = true;
  return nodes[0];
}

// An icicle/flame graph of the tree below `main` (nodes {name, fi, parent, kids, calls, total, self, w, off, base?},
// kids heaviest first) drawn into `container` with its own bar: reset zoom, layout, callers of the selected
// function, search. Its elements' ids are options.prefix + "chart", "reset", "layout", "callers", "back", "search",
// "matched", "heading", "merged", "bar". options: tip (the tooltip element), timed, woken, weight ("time", "calls",
// "oncpu", "offcpu"), hasOff, source(x) -> text, colour(x, tree) -> {bg, fg} or null (default: warm colours by name),
// tipRows(x) -> more tooltip rows (HTML), onSelect(name) after a click on a frame, outline: outline the selected
// function's frames. Returns {render, select(name, redraw), key(event) -> handled}.
function flameGraph(container, main, options) {
  const o = Object.assign({prefix: "", timed: true, woken: false, weight: "time", hasOff: false, source: () => "",
                           colour: null, tipRows: () => [], onSelect: null, outline: false}, options);
  const ROW = 18, MIN_SHARE = 0.001;
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
  const fmtUs = (v) => v >= 1e6 ? (v / 1e6).toFixed(2) + " s" : v >= 1000 ? (v / 1000).toFixed(2) + " ms" : v.toFixed(1) + " us";
  const pct = (v, whole) => whole > 0 ? (100 * v / whole).toFixed(1) + "%" : "-";
  const counted = o.woken ? "sleeps" : "calls";
  const fmtW = (v) => o.weight !== "calls" ? fmtUs(v) : Math.round(v).toLocaleString("en") + " " + counted;
  const p = o.prefix, el = (name) => document.getElementById(p + name);

  if (!document.getElementById("flamegraph-style")) {
    const style = document.createElement("style");
    style.id = "flamegraph-style";
    style.textContent = `
.fg-bar{display:flex;flex-wrap:wrap;gap:6px;align-items:center;margin:6px 0;padding:4px 0}
.fg-search{width:20em}
.fg-heading{font-weight:600;margin:4px 0}
.fg-chart{position:relative;width:100%;overflow:hidden}
.fg-chart .frame{position:absolute;height:17px;box-sizing:border-box;border-right:1px solid #fff;border-bottom:1px solid #fff;overflow:hidden;white-space:nowrap;text-overflow:ellipsis;font:11px/16px monospace;padding:0 2px;cursor:pointer;color:#000}
.fg-chart .frame:hover{outline:1px solid #000;z-index:1}
.fg-chart .frame.above{opacity:.5}
.fg-chart .frame.small{background:#d8d8d8;color:#444;font-style:italic}
.fg-chart .frame.match{background:#d633e0;color:#fff}
.fg-chart .frame.selected{outline:2px solid #000;outline-offset:-2px;z-index:2}`;
    document.head.appendChild(style);
  }
  container.insertAdjacentHTML("beforeend", `<p id="${p}merged"></p>
<div class="fg-bar" id="${p}bar"><button id="${p}reset">Reset zoom</button><button id="${p}layout">Flame layout (root at the bottom)</button>
<button id="${p}callers" disabled>Callers of ...</button><button id="${p}back" hidden>Back to the call tree</button>
<input class="fg-search" id="${p}search" type="search" placeholder="search: substring or regular expression"><span id="${p}matched"></span></div>
<div class="fg-heading" id="${p}heading"></div>
<div class="fg-chart" id="${p}chart"></div>`);
  const chart = el("chart"), tip = o.tip;

  const makeNode = (name, parent, fi) => ({name, parent, fi, calls: 0, total: 0, self: 0, w: 0, off: 0, kids: []});
  const add = (x, a) => {
    x.calls += a.calls; x.total += a.total; x.self += a.self; x.w += a.w; x.off += a.off;
    if (a.base) {
      x.base = x.base || {calls: 0, total: 0, self: 0};
      x.base.calls += a.base.calls; x.base.total += a.base.total; x.base.self += a.base.self;
    }
  };

  // Callers of a function: its outermost activations, each with its chain of callers, merged bottom-up.
  function callersTree(name) {
    const top = makeNode(name, null, -1);
    const child = (x, c) => {
      x.index = x.index || new Map();
      let k = x.index.get(c.name);
      if (!k) { k = makeNode(c.name, x, c.fi); x.index.set(c.name, k); x.kids.push(k); }
      return k;
    };
    const walk = (x, inside) => {
      for (const k of x.kids) {
        const hit = k.name === name;
        if (hit && !inside) {
          top.fi = k.fi;
          add(top, k);
          for (let a = k.parent, at = top; !a.root; a = a.parent) { at = child(at, a); add(at, k); }
        }
        walk(k, inside || hit);
      }
    };
    walk(main, false);
    const sortKids = (x) => { x.kids.sort((a, b) => b.w - a.w); x.kids.forEach(sortKids); };
    sortKids(top);
    return top;
  }

  function warm(name) {
    let h = 2166136261;
    for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
    h >>>= 0;
    return `hsl(${h % 50},${80 + (h >> 8) % 16}%,${58 + (h >> 16) % 14}%)`;
  }

  function fill(x) {
    const custom = o.colour && o.colour(x, state.tree);
    if (custom) return `background:${custom.bg};color:${custom.fg};`;
    return `background:${x.root ? "#e8a33c" : warm(x.name)};`;
  }

  const state = {tree: main, zoom: main, flame: false, re: null, selected: null};
  let shown = [];

  function render() {
    const px = chart.clientWidth || 1000, zoom = state.zoom, whole = zoom.w || 1;
    const boxes = [];
    let merged = 0, depthMax = 0;
    const box = (x, depth, left, width, cls) => { boxes.push([x, depth, left, width, cls]); depthMax = Math.max(depthMax, depth); };
    const above = [];
    for (let a = zoom.parent; a; a = a.parent) above.unshift(a);
    above.forEach((a, d) => box(a, d, 0, 1, "above"));
    const lay = (x, depth, left) => {
      box(x, depth, left, x.w / whole, "");
      let at = left;
      const small = [];
      for (const k of x.kids) {
        if (k.w < whole * MIN_SHARE) { small.push(k); continue; }
        lay(k, depth + 1, at);
        at += k.w / whole;
      }
      if (!small.length) return;
      merged += small.length;
      const s = makeNode(`(${small.length} small frame${small.length > 1 ? "s" : ""})`, x, -1);
      s.small = small;
      small.forEach((k) => add(s, k));
      if (s.w * px / whole >= 1) box(s, depth + 1, at, s.w / whole, "small");
    };
    lay(zoom, above.length, 0);
    shown = boxes.map((b) => b[0]);
    chart.style.height = (depthMax + 1) * ROW + "px";
    chart.innerHTML = boxes.map(([x, depth, left, width, cls], i) => {
      const top = (state.flame ? depthMax - depth : depth) * ROW;
      const hit = state.re && !x.small && !x.root && state.re.test(x.name);
      const chosen = o.outline && !x.small && !x.root && x.name === state.selected;
      const label = width * px > 28 ? esc(x.name) : "";
      const classes = ["frame", cls, hit ? "match" : "", chosen ? "selected" : ""].filter(Boolean).join(" ");
      return `<div class="${classes}" data-i="${i}" data-name="${esc(x.name)}" style="left:${(100 * left).toFixed(4)}%;width:${(100 * width).toFixed(4)}%;top:${top}px;${x.small || hit ? "" : fill(x)}">${label}</div>`;
    }).join("");
    el("merged").textContent = merged ? `${merged.toLocaleString("en")} frames narrower than ${MIN_SHARE * 100}% of the view are merged into grey "(N small frames)" boxes: click one (or zoom) to see them.` : "";
    const where = zoom.root ? "" : `: zoomed into ${zoom.name} (${pct(zoom.w, state.tree.w)} of the whole)`;
    el("heading").textContent = (state.tree === main ? `${o.woken ? "Wakers' call paths" : "Call tree"} (${state.flame ? "flame" : "icicle"})` : `Callers of ${state.tree.name}: each row below a frame is its caller; widths are ${state.tree.name}'s own weight through that call path`) + where;
    showMatches();
  }

  function showMatches() {
    if (!state.re) { el("matched").textContent = ""; return; }
    let n = 0, w = 0;
    const walk = (x, inside) => {
      const hit = !x.root && state.re.test(x.name);
      if (hit) { n++; if (!inside) w += x.w; }
      x.kids.forEach((k) => walk(k, inside || hit));
    };
    walk(state.zoom, false);
    el("matched").textContent = `${n.toLocaleString("en")} matching frames: ${pct(w, state.zoom.w)} of ${state.zoom.root ? "all" : state.zoom.name} (nested matches counted once)`;
  }

  // The function "Callers of" works on: the last clicked frame's, or the page's selection.
  function select(name, redraw) {
    state.selected = name;
    el("callers").disabled = !name;
    el("callers").textContent = name ? `Callers of ${name}` : "Callers of ...";
    if (redraw) render();
  }

  function reset() { state.zoom = state.tree; render(); }

  function frameOf(event) {
    const target = event.target.closest(".frame");
    return target ? shown[+target.dataset.i] : null;
  }

  function showTip(event) {
    const x = frameOf(event);
    if (!x) { tip.style.display = "none"; return; }
    const file = x.fi >= 0 ? o.source(x) : "";
    const rows = [`<b>${esc(x.name)}</b>`];
    if (x.small) rows.push(esc(x.small.slice(0, 8).map((k) => k.name).join(", ") + (x.small.length > 8 ? ", ..." : "")));
    if (file) rows.push("source: " + esc(file));
    rows.push(`${counted}: ${x.calls.toLocaleString("en")}`);
    if (o.timed) rows.push(o.woken ? `time waited: ${fmtUs(x.total)}` : `total: ${fmtUs(x.total)}, self: ${fmtUs(x.self)}`);
    if (o.hasOff && x.off > 0) rows.push(`on CPU: ${fmtUs(Math.max(0, x.total - x.off))}, switched out: ${fmtUs(x.off)}`);
    rows.push(`width: ${fmtW(x.w)}, ${pct(x.w, state.tree.w)} of the whole, ${pct(x.w, state.zoom.w)} of the view`);
    rows.push(...o.tipRows(x));
    tip.innerHTML = rows.join("<br>");
    tip.style.display = "block";
    tip.style.left = Math.min(event.clientX + 12, window.innerWidth - tip.offsetWidth - 4) + "px";
    tip.style.top = event.clientY + 14 + "px";
  }

  chart.addEventListener("click", (event) => {
    let x = frameOf(event);
    if (!x) return;
    if (x.small) x = x.parent;
    if (!x.root) {
      select(x.name, false);
      if (o.onSelect) o.onSelect(x.name);
    }
    state.zoom = x;
    render();
  });
  chart.addEventListener("mousemove", showTip);
  chart.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  el("reset").addEventListener("click", reset);
  el("layout").addEventListener("click", () => {
    state.flame = !state.flame;
    el("layout").textContent = state.flame ? "Icicle layout (root at the top)" : "Flame layout (root at the bottom)";
    render();
  });
  el("callers").addEventListener("click", () => {
    state.tree = state.zoom = callersTree(state.selected);
    el("back").hidden = false;
    render();
  });
  el("back").addEventListener("click", () => { state.tree = state.zoom = main; el("back").hidden = true; render(); });
  el("search").addEventListener("input", (event) => {
    const text = event.target.value;
    try { state.re = text ? new RegExp(text) : null; } catch (error) { state.re = new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")); }
    render();
  });

  function key(event) {
    if (event.key === "Escape") { reset(); return true; }
    if (event.key === "/" && !(event.target.closest && event.target.closest("input"))) { el("search").focus(); return true; }
    return false;
  }

  return {render, select, key};
}
"""


# ============================================================================
# Output: explorer page (HTML)
# ============================================================================
# One offline page where a recording is explored around one selected function:
# the call graph (graphviz's SVG of the drawing; focused views laid out in the
# page), the call tree, callers and callees, the flame graph, the source. Its
# data is the forward calling-context tree in columns, as in the flame graph's
# page: every view in the page is derived from it, as the command line's views
# are derived from the tree. The page's script is one core (data, selection,
# numbers, source links, tabs) and one piece per view.

EXPLORER_MAX_PATHS = 50_000  # call paths embedded; lighter ones are merged into their callers and the page says how many
ELIXIR_URL = "https://elixir.bootlin.com/linux/v{version}/source/{path}#L{line}"


def explorer_graph(view: View) -> CallGraph:
    """The forward graph the page explores: a --callers/--wakers view's whole recording, else the view's own."""
    return view.unfocused if view.graph.reversed and view.unfocused is not None else view.graph


def explorer_columns(tree: CallTree, graph: CallGraph, limit: int) -> tuple[dict, list[int]]:
    """The tree in columns, frames as wide as their total time (calls in their subtree when untimed)."""
    _, off = path_on_off(graph)
    return tree_columns(tree, flame_weights(tree, tree.timed), off if graph.sched and graph.sched.timed else None, limit)


def explorer_baseline(views: Views, tree: CallTree, frames: list[int]) -> tuple[dict | None, str]:
    """The baseline's numbers of every embedded call path (the same chain of names; 0 where it has none) and per function."""
    baseline = views.baseline
    if baseline is None:
        return None, ""
    if views.view.graph.reversed:
        return None, "--baseline: the page compares forward views only; draw this --callers/--wakers view's comparison with -o NAME.svg"
    base = baseline.tree
    aligned = {frames[0]: ROOT_NODE}
    for node in frames[1:]:
        parent = aligned.get(tree.parent[node])
        kids = base.children[parent] if parent is not None else None
        found = kids.get(tree.function[node] or "") if kids else None
        if found is not None:
            aligned[node] = found
    present = [aligned.get(node) for node in frames]
    functions = sorted(set(baseline.calls))
    data = {
        "inputs": baseline_names(views.args.baseline, {os.path.basename(path) for path in views.view.graph.stats.inputs}),
        "calls": [base.calls[node] if node is not None else 0 for node in present],
        "total": [round(base.total_us[node], 3) if node is not None else 0 for node in present],
        "self": [round(base.self_us[node], 3) if node is not None else 0 for node in present],
        "fn": {name: [baseline.calls[name], round(baseline.total_us.get(name, 0.0), 3), round(baseline.self_us.get(name, 0.0), 3)] for name in functions},
    }
    data["edges"] = explorer_base_edges(baseline)
    base_columns, _ = explorer_columns(base, baseline, EXPLORER_MAX_PATHS)
    data["tree"] = {key: base_columns[key] for key in ("names", "fn", "parent", "calls", "total", "self", "left_out")}  # focused views compare over it
    data["calls"][0], data["total"][0] = base_columns["calls"][0], base_columns["total"][0]  # "all": the baseline's whole
    return data, ""


def explorer_base_edges(baseline: CallGraph) -> list[list]:
    """The baseline's caller -> callee edges as [caller, callee, calls, total] (caller "": the top of a call path), for the peek view."""
    timed = baseline.uses_time  # edge_weight is the edge's time then (else calls below it)
    edges = [[caller, callee, calls, round(baseline.edge_weight.get((caller, callee), 0.0), 3) if timed else 0] for (caller, callee), calls in baseline.edges.items()]
    tops: dict[str, list] = {}
    for node in (baseline.tree.children[ROOT_NODE] or {}).values():
        name = baseline.tree.function[node] or ""
        top = tops.setdefault(name, ["", name, 0, 0.0])
        top[2] += baseline.tree.calls[node]
        top[3] = round(top[3] + baseline.tree.total_us[node], 3)
    return edges + list(tops.values())


def explorer_svg(views: Views) -> tuple[str, str]:
    """The drawing as the .svg output makes it (graphviz), inline; or why there is none."""
    with tempfile.TemporaryDirectory(prefix="km-explorer-") as scratch:
        path = os.path.join(scratch, "graph.svg")
        try:
            draw_call_graph(views, path, source_links=False)  # a click on a box selects it: no link to follow
        except UserError as error:
            return "", f"no call graph drawing: {error}"
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    start = text.find("<svg")
    return (text[start:] if start >= 0 else ""), ""


def kernel_version(metadata: dict[str, str]) -> tuple[str | None, str]:
    """The upstream version of the recording's kernel, as elixir.bootlin.com names its tags, and how sure it is.

    `record` stores `uname -r -v`: Debian's `uname -v` names the upstream release
    ("Debian 6.1.192-2"), a release like 7.3.4+deb13-amd64 names it too;
    6.1.0-56-amd64 (trace-cmd's trace.dat keeps only `uname -r`) names only the series.
    Upstream x.y.0 is tagged vx.y, release candidates vx.y-rcN.
    """
    kernel = metadata.get("kernel", "")
    uname = metadata.get("trace.dat-uname", "")  # "Linux HOST RELEASE MACHINE"
    release = kernel.split(" ", 1)[0] if kernel else (uname.split(" ")[2] if uname.count(" ") >= 2 else "")
    where = f"the recording's kernel {release}"
    exact = re.search(r"\bDebian (\d+\.\d+\.\d+)", kernel)
    if exact:
        return upstream_tag(exact[1]), where
    found = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?(.*)", release)
    if not found:
        return None, "the recording does not say its kernel's version"
    major, minor, patch, suffix = found.groups()
    candidate = re.match(r"-(rc\d+)", suffix)
    if candidate:
        return f"{major}.{minor}-{candidate[1]}", where
    if patch and (patch != "0" or not suffix):
        return upstream_tag(f"{major}.{minor}.{patch}"), where
    return f"{major}.{minor}", f"{where}: its exact release is unknown, links go to the {major}.{minor} series"


def upstream_tag(version: str) -> str:
    """x.y.0 is tagged vx.y upstream."""
    return version[:-2] if version.endswith(".0") else version


def explorer_source(views: Views) -> dict:
    """How the page links a function to its source: a URL template, a local tree, or nothing."""
    args = views.args
    source_dir = getattr(args, "source_dir", None)
    template = getattr(args, "source_url", None)
    if source_dir:
        root = os.path.abspath(source_dir)
        if not os.path.isdir(root):
            raise UserError(f"--source-dir {source_dir}: not a directory")
        return {"template": "file://" + urllib.parse.quote(root.rstrip("/")) + "/{path}", "version": None, "note": f"source links: the local tree {root}"}
    version, how = kernel_version(explorer_graph(views.view).stats.metadata)
    if template:
        if "{version}" in template and version is None:
            raise UserError(f"--source-url {template}: {{version}} is unknown, {how}: write the version into the template")
        return {"template": template, "version": version, "note": f"source links: {template}"}
    if version is None:
        return {
            "template": None, "version": None,
            "note": f"no source links: {how} (record with kernel-magnifier record, which stores it; or give --source-dir DIR,"
            " or --source-url with the version written in, e.g. https://elixir.bootlin.com/linux/v6.1.192/source/{path}#L{line})",
        }
    return {"template": ELIXIR_URL, "version": version, "note": f"source links: elixir.bootlin.com, Linux v{version} ({how})"}


def explorer_data(views: Views) -> dict:
    """The page's JSON: the tree, the functions' files, the drawing, the baseline, the source links, the texts."""
    graph = explorer_graph(views.view)
    tree = graph.tree
    columns, frames = explorer_columns(tree, graph, EXPLORER_MAX_PATHS)
    base, base_note = explorer_baseline(views, tree, frames)
    svg, svg_note = explorer_svg(views)
    symbols = views.view.files
    notes = [note for note in [*views.view.notes, base_note, svg_note] if note]
    if columns["left_out"]:
        notes.append(f"{columns['left_out']:,} call paths lighter than the {EXPLORER_MAX_PATHS:,} heaviest are merged into their callers (their time stays there)")
    return {
        **columns,
        "files": [[definition_paths(definition) for definition in symbols.get(name, [])] for name in columns["names"]],
        "lines": [[definition_parts(definition).line or 0 for definition in symbols.get(name, [])] for name in columns["names"]],
        "modules": [graph.modules.get(name, "") for name in columns["names"]],
        "inlines": explorer_inlines(views.view, columns["names"]),
        **explorer_levels(views.view, columns["names"]),
        "timed": tree.timed,
        "metric": views.heat.metric,
        "focus": views.view.required,
        "view": {"roots": views.args.root or [], "callers": views.args.callers or [], "wakers": views.args.wakers or [], "depth": views.args.depth},
        "base": base,
        "svg": svg,
        "source": explorer_source(views),
        "summary": summarize(views.view, views.sched),
        "notes": notes,
        "title": "kernel-magnifier: " + (", ".join(os.path.basename(path) for path in graph.stats.inputs) or "trace"),
        "cap": EXPLORER_MAX_PATHS,
        "palette": explorer_palette(),
    }


EXPLORER_INLINES = 8  # inlined calls the selection bar names: it stays one or two lines
EXPLORER_MEMBERS = 12  # a group's functions the selection bar names, most called first


def explorer_levels(view: View, names: list[str]) -> dict:
    """The other level beside each box: a group's functions ("members": name -> [[function, calls]..., more]), or with a
    symbol map a function's source directory ("group_of", beside "names"), as --group-by dir would group it."""
    graph = view.graph
    if graph.group_by:
        members = {}
        for name in names:
            if graph.is_group(name):
                ranked = sorted(graph.members[name].items(), key=lambda item: (-item[1][0], item[0]))
                members[name] = [[member, int(numbers[0])] for member, numbers in ranked[:EXPLORER_MEMBERS]] + [len(ranked) - EXPLORER_MEMBERS]
        return {"members": members, "group_of": []}
    if view.symbols is None:
        return {"members": {}, "group_of": []}
    grouping = Grouping("dir", None, view.symbols)
    return {"members": {}, "group_of": [grouping.key(name, graph.modules.get(name)) if not name.startswith("[") else "" for name in names]}


def explorer_inlines(view: View, names: list[str]) -> dict[str, list[str]]:
    """name -> its inlined calls as tooltips show them ("callee (file.c:123)"), at most EXPLORER_INLINES and "+N more"."""
    shown = {}
    for name in names:
        if name in view.inlines:
            calls, cut = view.inlines[name]
            more = len(calls) - EXPLORER_INLINES + cut
            shown[name] = [shown_inlined_call(call) for call in calls[:EXPLORER_INLINES]] + ([f"+{more} more"] if more > 0 else [])
    return shown


def explorer_palette() -> dict[str, list[str]]:
    """The drawing's two colour scales in 9 stops, for the views the page colours itself."""
    steps = [index / 8 for index in range(9)]
    return {"heat": [colour_hex("YlOrRd", 0.06 + 0.8 * step) for step in steps], "change": [colour_hex("RdBu_r", 0.5 + 0.42 * (2 * step - 1)) for step in steps]}


def explorer_page(views: Views) -> str:
    data = explorer_data(views)
    script = "\n".join([EXPLORER_CORE_JS, EXPLORER_GRAPH_JS, EXPLORER_TREE_JS, EXPLORER_PEEK_JS, EXPLORER_FLAME_JS, EXPLORER_START_JS])
    page = EXPLORER_HTML.replace("@TITLE@", html.escape(data["title"])).replace("@SCRIPT@", script)
    return with_embedded_data(page, data)


def write_explorer_html(views: Views, output: str) -> None:
    """.html: the explorer page (.flame.html: the flame graph alone)."""
    write_page(output, explorer_page(views))


EXPLORER_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'">
<title>@TITLE@</title>
<style>
body{font:13px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fff}
header{padding:8px 12px 0}
h1{font-size:16px;margin:0 0 4px}
p{margin:2px 0}
details summary{cursor:pointer;color:#444}
#summary{font:12px/1.35 monospace;white-space:pre-wrap;margin:4px 0}
.note{color:#555}
.lost{color:#b00020;font-weight:600}
#selection{position:sticky;top:0;z-index:5;background:#f6f6f2;border-bottom:1px solid #ccc;padding:6px 12px;display:flex;flex-wrap:wrap;gap:4px 14px;align-items:baseline}
#selection .name{font:600 14px monospace}
#selection a{color:#0645ad}
#tabs{display:flex;gap:2px;padding:6px 12px 0;border-bottom:1px solid #bbb;position:sticky;top:34px;z-index:4;background:#fff}
#tabs button{border:1px solid #bbb;border-bottom:none;background:#eee;padding:4px 12px;cursor:pointer;font:inherit;border-radius:4px 4px 0 0}
#tabs button.active{background:#fff;font-weight:600;position:relative;top:1px}
.view{display:none;padding:8px 12px}
.view.active{display:block}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.more{color:#b2182b}.less{color:#2166ac}
#tip{position:fixed;display:none;max-width:560px;background:#fffff0;border:1px solid #888;padding:4px 6px;font-size:12px;pointer-events:none;z-index:10;box-shadow:2px 2px 6px #0003}
</style></head><body>
<header>
<h1 id="title">@TITLE@</h1>
<details id="about"><summary>What the recording is (the summary visualize printed)</summary><div id="summary"></div></details>
<p id="notes" class="note"></p>
<p id="sourcenote" class="note"></p>
</header>
<div id="selection"><span>selected:</span><span class="name" id="selname">(none: click a function)</span><span id="selnumbers"></span><span id="selsource"></span></div>
<nav id="tabs"></nav>
<main id="views"></main>
<div id="tip"></div>
<script type="application/json" id="data">@DATA@</script>
<script>
@SCRIPT@
</script>
</body></html>
"""

EXPLORER_CORE_JS = r"""
"use strict";
// ---- core: the data, the numbers, the selection every view shares, source links, tabs ----
const D = JSON.parse(document.getElementById("data").textContent);
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
const fmtUs = (v) => v >= 1e6 ? (v / 1e6).toFixed(2) + " s" : v >= 1000 ? (v / 1000).toFixed(2) + " ms" : v.toFixed(1) + " us";
const fmtInt = (v) => Math.round(v).toLocaleString("en");
const pct = (v, whole) => whole > 0 ? (100 * v / whole).toFixed(1) + "%" : "-";
const signed = (v, fmt) => (v > 0 ? "+" : v < 0 ? "-" : "\u00b1") + fmt(Math.abs(v));

const KM = {nodes: [], root: null, byName: new Map(), selected: null, views: [], active: null};

// The call tree from the embedded columns: a parent always comes before its children; index 0 is "all".
// A call tree from columns (a parent always comes before its children; index 0 is "all"): its nodes, root and
// nodes by function name; more(i) adds a node's own fields.
KM.treeOf = function (t, more = () => ({})) {
  const nodes = [], byName = new Map();
  for (let i = 0; i < t.fn.length; i++) {
    const x = {i, name: i ? t.names[t.fn[i]] : "all", parent: i ? nodes[t.parent[i]] : null, kids: [],
               calls: t.calls[i], total: t.total[i], self: t.self[i], off: 0, ...more(i)};
    nodes.push(x);
    if (i) {
      x.parent.kids.push(x);
      if (!byName.has(x.name)) byName.set(x.name, []);
      byName.get(x.name).push(x);
    }
  }
  nodes[0].root = true;
  return {nodes, root: nodes[0], byName};
};
// The page's call tree, with each call path's baseline numbers where there is a baseline.
KM.buildTree = function () {
  const base = D.base;
  Object.assign(KM, KM.treeOf(D, (i) => ({fi: D.fn[i], w: D.w[i], off: D.off ? D.off[i] : 0,
    base: base ? {calls: base.calls[i], total: base.total[i], self: base.self[i]} : null})));
};

// The function graph of a forward tree, as the tool's derive_graph makes it: calls and self time of every
// activation, total time of the outermost activations on each path only (recursion is not counted twice),
// edges caller -> callee with the callee's calls, and its time where it is not inside itself.
// tops: the top nodes (children of the root, or a focus's merged nodes); kidsOf(x) gives a node's children.
KM.deriveGraph = function (tops, kidsOf = (x) => x.kids) {
  const fns = new Map(), edges = new Map(), onPath = new Map();
  const fn = (name) => {
    let f = fns.get(name);
    if (!f) { f = {name, calls: 0, total: 0, self: 0, off: 0}; fns.set(name, f); }
    return f;
  };
  const visit = (x, callerName) => {
    const f = fn(x.name), outer = !onPath.get(x.name);
    f.calls += x.calls; f.self += x.self;
    if (outer) { f.total += x.total; f.off += x.off || 0; }
    if (callerName !== null) {
      const key = callerName + "\u0000" + x.name;
      let e = edges.get(key);
      if (!e) { e = {caller: callerName, callee: x.name, calls: 0, total: 0}; edges.set(key, e); }
      e.calls += x.calls;
      if (outer) e.total += x.total;
    }
    onPath.set(x.name, (onPath.get(x.name) || 0) + 1);
    for (const k of kidsOf(x)) visit(k, x.name);
    onPath.set(x.name, onPath.get(x.name) - 1);
  };
  for (const t of tops) visit(t, null);
  return {fns, edges};
};

// A function's numbers over the whole page (and the baseline's, where there is one).
KM.functionNumbers = function (name) {
  if (!KM.whole) KM.whole = KM.deriveGraph(KM.root.kids);
  return KM.whole.fns.get(name) || null;
};
KM.baseNumbers = (name) => {
  const b = D.base && D.base.fn[name];
  return b ? {calls: b[0], total: b[1], self: b[2]} : D.base ? {calls: 0, total: 0, self: 0} : null;
};

// Colours: the drawing's own scales (9 stops each from the tool: YlOrRd for heat, RdBu_r for change).
KM.mix = function (stops, t) {
  t = Math.max(0, Math.min(1, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(t)), f = t - i;
  const a = stops[i], b = stops[i + 1];
  const c = [1, 3, 5].map((k) => Math.round(parseInt(a.slice(k, k + 2), 16) * (1 - f) + parseInt(b.slice(k, k + 2), 16) * f));
  return "#" + c.map((v) => v.toString(16).padStart(2, "0")).join("");
};
KM.heatColour = (value, low, high) => {
  if (value <= 0) return D.palette.heat[0];
  const t = high > low ? (Math.log(value) - Math.log(low)) / (Math.log(high) - Math.log(low)) : 1;
  return KM.mix(D.palette.heat, t);
};
// change in [-largest, largest] -> blue (less), white, red (more); square-root scaled as the drawing's.
KM.changeColour = (delta, largest) => {
  const s = largest > 0 ? Math.sign(delta) * Math.sqrt(Math.abs(delta) / largest) : 0;
  return KM.mix(D.palette.change, 0.5 + 0.5 * s);
};
KM.textColour = (bg) => {
  const [r, g, b] = [1, 3, 5].map((k) => parseInt(bg.slice(k, k + 2), 16) / 255);
  return 0.299 * r + 0.587 * g + 0.114 * b > 0.5 ? "#000" : "#fff";
};

// Source links: "path" or "declared|compiled" per definition, D.lines beside D.files (0: no line);
// {path} {line} {version} in the template.
KM.sourceLinks = function (name) {
  const fi = KM.byName.has(name) ? KM.byName.get(name)[0].fi : -1;
  const list = fi >= 0 ? D.files[fi] || [] : [];
  return list.map((definition, k) => {
    const [path, compiled] = definition.split("|");
    const line = D.lines && D.lines[fi] && D.lines[fi][k] ? String(D.lines[fi][k]) : "";
    let url = null;
    if (D.source.template) {
      let t = D.source.template;
      // No line known: drop the line's part with its lead-in (#L{line}, #n{line}, :{line}, ?line={line}, &l={line}).
      if (!line) t = t.replace(/[#?&;:][A-Za-z_]*=?\{line\}/g, "").replaceAll("{line}", "");
      url = t.replaceAll("{path}", path).replaceAll("{line}", line).replaceAll("{version}", D.source.version || "");
    }
    return {path, line, compiled: compiled || "", url, text: path + (line ? ":" + line : "") + (compiled ? ` (in ${compiled})` : "")};
  });
};
KM.sourceHtml = (name) => {
  const links = KM.sourceLinks(name);
  const module = KM.byName.has(name) ? D.modules[KM.byName.get(name)[0].fi] : "";
  if (!links.length) return module ? `[${esc(module)}]` : "no source file in the map";
  return links.map((l) => l.url ? `<a href="${esc(l.url)}" target="_blank" rel="noopener">${esc(l.text)}</a>` : esc(l.text)).join(", ");
};

KM.numbersText = function (f, base) {
  const parts = [`${fmtInt(f.calls)} calls`];
  if (D.timed) parts.push(`total ${fmtUs(f.total)}`, `self ${fmtUs(f.self)}`);
  if (D.off && f.off > 0) parts.push(`${fmtUs(Math.max(0, f.total - f.off))} on CPU + ${fmtUs(f.off)} asleep`);
  if (base) parts.push(`baseline: ${fmtInt(base.calls)} calls` + (D.timed ? `, total ${fmtUs(base.total)}` : "") + ` (${signed(f.calls - base.calls, fmtInt)} calls)`);
  return parts.join(", ");
};

// The one selected function, shared by every view. origin: the view that selected it (it need not redraw).
KM.select = function (name, origin) {
  if (!name || !KM.byName.has(name)) return;
  KM.selected = name;
  $("selname").textContent = name;
  const f = KM.functionNumbers(name);
  $("selnumbers").textContent = f ? KM.numbersText(f, KM.baseNumbers(name)) : "";
  $("selsource").innerHTML = (D.members[name] ? KM.membersHtml(name) : "source: " + KM.sourceHtml(name) + KM.groupHtml(name)) + KM.inlinesHtml(name);
  for (const v of KM.views) if (v.select) v.select(name, origin);
};

// A view: {id, title, mount(el), show(), select(name, origin), key(event) -> handled}
KM.addView = function (view) { KM.views.push(view); };
KM.show = function (id) {
  for (const v of KM.views) {
    const on = v.id === id;
    v.el.classList.toggle("active", on);
    v.tab.classList.toggle("active", on);
    if (on) { KM.active = v; if (v.show) v.show(); }
  }
};
// The baseline's own call tree (D.base.tree): the focused views compare over it, call paths this recording lacks included.
KM.buildBaseTree = function () {
  const t = D.base && D.base.tree;
  return t ? {...KM.treeOf(t), complete: !t.left_out} : null;
};
KM.start = function () {
  KM.buildTree();
  KM.baseTree = KM.buildBaseTree();
  $("summary").textContent = D.summary.join("\n");
  $("notes").textContent = D.notes.join(" \u00b7 ");
  $("sourcenote").textContent = D.source.note;
  for (const v of KM.views) {
    v.el = document.createElement("section");
    v.el.className = "view";
    v.el.id = "view-" + v.id;
    $("views").appendChild(v.el);
    v.tab = document.createElement("button");
    v.tab.textContent = v.title;
    v.tab.id = "tab-" + v.id;
    v.tab.addEventListener("click", () => KM.show(v.id));
    $("tabs").appendChild(v.tab);
    v.mount(v.el);
  }
  document.addEventListener("keydown", (event) => {
    if (event.target.closest && event.target.closest("input,textarea,select")) return;
    if (KM.active && KM.active.key && KM.active.key(event)) event.preventDefault();
  });
  const first = D.focus.find((name) => KM.byName.has(name)) || (KM.root.kids.length ? [...KM.root.kids].sort((a, b) => b.w - a.w)[0].name : null);
  KM.show(KM.views[0].id);
  if (first) KM.select(first, null);
};

// The other level (issue 24, point 3): a --group-by page's group lists its functions, a function page's function names its group.
KM.membersHtml = (name) => {
  const list = D.members[name];
  const more = list[list.length - 1];
  const shown = list.slice(0, -1).map(([member, calls]) => `${esc(member)} (${fmtInt(calls)})`).join(", ");
  return `<span class="members">functions: ${shown}${more > 0 ? `, +${fmtInt(more)} more` : ""}</span>`;
};
KM.groupHtml = (name) => {
  const group = KM.byName.has(name) && D.group_of.length ? D.group_of[KM.byName.get(name)[0].fi] : "";
  return group ? ` \u00b7 <span class="group">in ${esc(group)}</span>` : "";
};

// Inlined calls (issue 21, point 2): D.inlines {name: ["callee (file.c:123)", ...]}, the calls ftrace cannot see.
KM.inlinesHtml = (name) => {
  const calls = D.inlines && D.inlines[name];
  return calls && calls.length ? ` \u00b7 <span class="inlines">inlines (not traced): ${esc(calls.join(", "))}</span>` : "";
};
"""

EXPLORER_GRAPH_JS = r"""
// ---- graph: graphviz's drawing, pan and zoom, click to select, "focus here" laid out in the page ----
KM.graphView = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const CAP = 80;  // functions drawn in a focused view: the heaviest, the focus always
  const FONT = "12px Helvetica, Arial, sans-serif";
  const G = {el: null, box: null, svg: null, vp: null, w: 1, h: 1, k: 1, tx: 0, ty: 0, focus: null, started: false, reveal: null};

  // ---- pan and zoom: the drawing's content sits in one <g> whose transform is translate(tx ty) scale(k) ----
  const apply = () => G.vp && G.vp.setAttribute("transform", `translate(${G.tx.toFixed(2)} ${G.ty.toFixed(2)}) scale(${G.k.toFixed(5)})`);
  const visible = () => G.box && G.box.clientWidth > 0;
  const zoomAt = (factor, px, py) => {
    const k = Math.max(0.02, Math.min(8, G.k * factor));
    G.tx = px - (px - G.tx) * k / G.k;
    G.ty = py - (py - G.ty) * k / G.k;
    G.k = k;
    apply();
  };
  const zoomCentre = (factor) => zoomAt(factor, G.box.clientWidth / 2, G.box.clientHeight / 2);
  const fit = () => {
    if (!visible()) return;
    const bw = G.box.clientWidth, bh = G.box.clientHeight;
    G.k = Math.min(bw / G.w, bh / G.h, 1.5) * 0.98;
    G.tx = (bw - G.w * G.k) / 2;
    G.ty = (bh - G.h * G.k) / 2;
    apply();
  };
  // Take an <svg> (graphviz's, or a focused drawing) into the box: it fills the box, its content moves in a viewport <g>.
  const mount = (svg, w, h) => {
    svg.removeAttribute("viewBox");
    svg.setAttribute("width", "100%");
    svg.setAttribute("height", "100%");
    const vp = document.createElementNS(NS, "g");
    vp.setAttribute("class", "km-viewport");
    while (svg.firstChild) vp.appendChild(svg.firstChild);
    svg.appendChild(vp);
    G.box.replaceChildren(svg);
    Object.assign(G, {svg, vp, w, h});
  };

  // ---- the selection in the drawing ----
  const nodeName = (g) => g.dataset.name || (g.querySelector("title") || {}).textContent || "";
  const drawnNodes = () => G.vp ? [...G.vp.querySelectorAll("g.node, g.km-box")] : [];
  const findNode = (name) => drawnNodes().find((g) => nodeName(g) === name) || null;
  const outline = () => {
    for (const g of G.vp ? G.vp.querySelectorAll(".km-sel") : []) g.classList.remove("km-sel");
    const g = KM.selected ? findNode(KM.selected) : null;
    if (g) g.classList.add("km-sel");
    const where = G.focus ? "this focused drawing" : "the drawing";
    $("g-status").textContent = KM.selected && !g ? `${KM.selected} is not in ${where}: "What it calls" or "Who calls it" draws around it` : "";
    return g;
  };
  // Pan so that the selected node is in the middle of the box; zoom in if it would be too small to read.
  const revealSelected = () => {
    const g = outline();
    if (!g || !visible()) return;
    const r = g.getBoundingClientRect();
    if (r.height < 24 && r.height > 0) {
      const box = G.box.getBoundingClientRect();
      zoomAt(1 / G.k, r.left + r.width / 2 - box.left, r.top + r.height / 2 - box.top);
    }
    centreOn(g);
  };
  const centreOn = (g) => {
    const n = g.getBoundingClientRect(), box = G.box.getBoundingClientRect();
    G.tx += box.left + box.width / 2 - (n.left + n.width / 2);
    G.ty += box.top + box.height / 2 - (n.top + n.height / 2);
    apply();
  };

  // ---- the focused graphs, from the page's tree (the tool's focus_subtrees / focus_callers + reversed_graph) ----
  const numbersOf = (x) => ({calls: x.calls, total: x.total, self: x.self, off: x.off || 0});
  // The outermost activations of a function: those not inside another activation of it.
  // tree: {root, byName}: this recording's (KM) or the baseline's own (KM.baseTree).
  const outermost = (name, tree = KM) => {
    const tops = [], stack = [...tree.root.kids];
    while (stack.length) {
      const x = stack.pop();
      if (x.name === name) tops.push(x);
      else for (const k of x.kids) stack.push(k);
    }
    return tops;
  };
  // A copy of a subtree with its numbers, `depth` levels deep (null: all).
  const copy = (x, level, depth) => ({name: x.name, ...numbersOf(x),
    kids: depth === null || level < depth ? x.kids.map((k) => copy(k, level + 1, depth)) : []});
  const calleesGraph = (name, depth, tree = KM) => KM.deriveGraph(outermost(name, tree).map((t) => copy(t, 0, depth)));
  const insideItself = (x) => {
    for (let a = x.parent; a && !a.root; a = a.parent) if (a.name === x.name) return true;
    return false;
  };
  // The reversed tree: the function at the root, its callers below it, theirs below them; numbers are the
  // function's own through that chain, its total only from activations not inside itself.
  const callersGraph = (name, depth, tree = KM) => {
    const node = (n) => ({name: n, calls: 0, total: 0, self: 0, off: 0, kids: new Map()});
    const root = node(name);
    for (const x of tree.byName.get(name) || []) {
      const n = numbersOf(x);
      if (!n.calls && !n.total) continue;
      const inside = insideItself(x), total = inside ? 0 : n.total, off = inside ? 0 : n.off;
      let target = root, level = 0, a = x;
      for (;;) {
        target.calls += n.calls; target.total += total; target.self += n.self; target.off += off;
        a = a.parent; level++;
        if (!a || a.root || (depth !== null && level > depth)) break;
        if (!target.kids.has(a.name)) target.kids.set(a.name, node(a.name));
        target = target.kids.get(a.name);
      }
    }
    const g = KM.deriveGraph([root], (x) => [...x.kids.values()]);
    g.fns.set(name, {name, calls: root.calls, total: root.total, self: root.self, off: root.off});  // its root numbers
    const edges = new Map();
    for (const e of g.edges.values()) edges.set(e.callee + "\u0000" + e.caller, {...e, caller: e.callee, callee: e.caller});
    return {fns: g.fns, edges};
  };

  const metricValue = (f) => {
    if (!f) return 0;
    switch (D.metric) {
      case "calls": return f.calls;
      case "total": return f.total;
      case "oncpu": return Math.max(0, f.total - f.off);
      case "offcpu": return f.off;
      default: return f.self;
    }
  };
  const fmtMetric = (v) => D.metric === "calls" ? fmtInt(v) : fmtUs(v);

  // ---- a small layered layout of our own (no library: the page is offline and self-contained) ----
  // Ranks: longest path from the focus, with the edges that close a cycle (found by a depth-first search from
  // the focus) reversed; long edges get a chain of dummy nodes; 4 barycenter sweeps order each rank; each rank
  // is packed left to right and centred. outward(e) gives the edge's ends in the direction away from the focus.
  const layered = (boxes, edges, focus, outward) => {
    const out = new Map(boxes.map((b) => [b.name, []]));
    for (const e of edges) { const [a, b] = outward(e); out.get(a).push(b); }
    const state = new Map(), finished = [], dag = [];
    for (const start of [focus, ...boxes.map((b) => b.name)]) {
      if (state.has(start)) continue;
      state.set(start, 1);
      const stack = [[start, 0]];
      while (stack.length) {
        const top = stack[stack.length - 1], kids = out.get(top[0]);
        if (top[1] < kids.length) {
          const w = kids[top[1]++];
          if (state.get(w) === 1) { dag.push([w, top[0]]); continue; }  // closes a cycle: laid out reversed
          dag.push([top[0], w]);
          if (!state.has(w)) { state.set(w, 1); stack.push([w, 0]); }
        } else { state.set(top[0], 2); finished.push(top[0]); stack.pop(); }
      }
    }
    const order = finished.reverse();  // a topological order of `dag`
    const rank = new Map(order.map((n) => [n, 0]));
    const after = new Map(order.map((n) => [n, []]));
    for (const [a, b] of dag) after.get(a).push(b);
    for (const n of order) for (const b of after.get(n)) rank.set(b, Math.max(rank.get(b), rank.get(n) + 1));
    // Layers with dummies; segs: [upper id, lower id]; chains: the ids an edge a->b of `dag` passes.
    const info = new Map(boxes.map((b) => [b.name, {id: b.name, w: b.w, h: b.h, box: b}]));
    const layers = [], segs = [], chains = new Map();
    const put = (id, r) => { (layers[r] = layers[r] || []).push(id); };
    for (const n of order) put(n, rank.get(n));
    let dummies = 0;
    for (const [a, b] of dag) {
      const ids = [a];
      for (let r = rank.get(a) + 1; r < rank.get(b); r++) {
        const id = "\u0001" + dummies++;
        info.set(id, {id, w: 6, h: 0, dummy: true});
        put(id, r);
        ids.push(id);
      }
      ids.push(b);
      for (let i = 1; i < ids.length; i++) segs.push([ids[i - 1], ids[i]]);
      chains.set(a + "\u0000" + b, ids);
    }
    for (let r = 0; r < layers.length; r++) layers[r] = layers[r] || [];
    const up = new Map(), down = new Map();
    for (const [a, b] of segs) {
      if (!down.has(a)) down.set(a, []);
      if (!up.has(b)) up.set(b, []);
      down.get(a).push(b); up.get(b).push(a);
    }
    const pos = new Map();
    const number = (layer) => layer.forEach((id, i) => pos.set(id, i));
    layers.forEach(number);
    const sweep = (r, neighbours) => {
      const key = new Map(layers[r].map((id) => {
        const ns = neighbours.get(id) || [];
        return [id, ns.length ? ns.reduce((s, n) => s + pos.get(n), 0) / ns.length : pos.get(id)];
      }));
      layers[r].sort((a, b) => key.get(a) - key.get(b));
      number(layers[r]);
    };
    for (let pass = 0; pass < 4; pass++) {
      for (let r = 1; r < layers.length; r++) sweep(r, up);
      for (let r = layers.length - 2; r >= 0; r--) sweep(r, down);
    }
    // Coordinates: ranks top to bottom, each packed and centred on the widest.
    const gapX = 22, gapY = 56;
    const widths = layers.map((layer) => layer.reduce((s, id) => s + info.get(id).w, 0) + gapX * Math.max(0, layer.length - 1));
    const width = Math.max(...widths, 1);
    let y = 0;
    layers.forEach((layer, r) => {
      const height = Math.max(...layer.map((id) => info.get(id).h), 0);
      let x = (width - widths[r]) / 2;
      for (const id of layer) {
        const n = info.get(id);
        n.x = x + n.w / 2; n.y = y + height / 2; n.top = n.y - n.h / 2; n.bottom = n.y + n.h / 2;
        x += n.w + gapX;
      }
      y += height + gapY;
    });
    // An edge's points from its caller to its callee.
    const route = (e) => {
      const [a, b] = outward(e);
      let ids = chains.get(a + "\u0000" + b);
      let flip = false;
      if (!ids) { ids = chains.get(b + "\u0000" + a); flip = true; }
      ids = ids.slice();
      if (flip) ids.reverse();  // now from a to b, a away-from-focus order
      const pts = ids.map((id) => info.get(id));
      if (outward(e)[0] !== e.caller) pts.reverse();  // from the caller to the callee
      return pts;
    };
    return {info, width, height: Math.max(y - gapY, 1), route};
  };

  // ---- the focused drawing ----
  const el = (tag, attrs, parent, text) => {
    const x = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) x.setAttribute(k, v);
    if (text !== undefined) x.textContent = text;
    if (parent) parent.appendChild(x);
    return x;
  };
  let measurer = null;
  const textWidth = (s, bold) => {
    if (!measurer) measurer = document.createElement("canvas").getContext("2d");
    measurer.font = (bold ? "bold " : "") + FONT;
    return measurer.measureText(s).width;
  };
  // "412 calls (baseline 400, +12)"; without a baseline, times say their share of the focus's total as the tool's labels do.
  // Where the baseline has call paths this recording lacks, the page does not hold them (its baseline numbers are
  // per call path of this recording): the function's baseline numbers are then at least those shown, not a change.
  const partial = (b) => b && b.partial;
  const withBase = (now, before, fmt, unit = "") => `${fmt(now)}${unit}` + (before === null ? "" : partial(before)
    ? ` (baseline \u2265 ${fmt(before.value)})` : ` (baseline ${fmt(before.value)}, ${signed(now - before.value, fmt)})`);
  const labelLines = (f, b, whole) => {
    const was = (key) => b ? {value: b[key], partial: b.partial} : null;
    const lines = [f.name, withBase(f.calls, was("calls"), fmtInt, " calls")];
    const share = (v) => whole > 0 ? ` (${pct(v, whole)})` : "";
    if (D.timed) {
      lines.push("total " + (b ? withBase(f.total, was("total"), fmtUs) : fmtUs(f.total) + share(f.total)));
      lines.push("self " + (b ? withBase(f.self, was("self"), fmtUs) : fmtUs(f.self) + share(f.self)));
    }
    if (D.off && f.off > 0) lines.push(`asleep ${fmtUs(f.off)}`);
    return lines;
  };
  const weight = (f) => D.timed ? f.total : f.calls;
  const UNKNOWN = "#d9d9d9";
  // The baseline's focused graph comes from its own call tree, embedded whole unless it was too big: then a
  // function's baseline numbers are complete only when its embedded paths add up to the baseline's own.
  let complete = null;
  const baseComplete = (name) => {
    if (KM.baseTree.complete) return true;
    if (!complete) {
      complete = new Map();
      for (const [n, xs] of KM.baseTree.byName) complete.set(n, xs.reduce((s, x) => s + x.calls, 0) === (D.base.fn[n] || [0])[0]);
    }
    return complete.get(name) !== false;
  };

  const drawFocused = (kind, name, depth) => {
    const focused = kind === "callers" ? callersGraph : calleesGraph;
    const now = focused(name, depth), before = D.base ? focused(name, depth, KM.baseTree) : null;
    const all = [...now.fns.values()];
    const kept = all.filter((f) => f.name !== name).sort((a, b) => weight(b) - weight(a) || a.name.localeCompare(b.name)).slice(0, CAP - 1);
    kept.unshift(now.fns.get(name));
    const drawn = new Set(kept.map((f) => f.name));
    const whole = now.fns.get(name).total;
    // callers view: every box counts the focus's activations, complete when the focus's are; callees: each its own.
    const baseOf = (n) => before ? {...(before.fns.get(n) || {calls: 0, total: 0, self: 0, off: 0}), partial: !baseComplete(kind === "callers" ? name : n)} : null;
    // Colours: heat over the drawn functions' values, or with a baseline the change of the same metric.
    const values = kept.map(metricValue);
    const positive = values.filter((v) => v > 0);
    const low = positive.length ? Math.min(...positive) : 1, high = positive.length ? Math.max(...positive) : 1;
    const changes = before ? kept.map((f) => partial(baseOf(f.name)) ? 0 : metricValue(f) - metricValue(baseOf(f.name))) : [];
    const largest = Math.max(0, ...changes.map(Math.abs));
    const boxes = kept.map((f, i) => {
      const lines = labelLines(f, baseOf(f.name), whole);
      const fill = before ? (partial(baseOf(f.name)) ? UNKNOWN : KM.changeColour(changes[i], largest)) : KM.heatColour(values[i], low, high);
      return {name: f.name, f, lines, fill, w: Math.ceil(Math.max(...lines.map((line, i) => textWidth(line, i === 0))) + 16), h: 15 * lines.length + 10};
    });
    const edges = [...now.edges.values()].filter((e) => drawn.has(e.caller) && drawn.has(e.callee));
    const loops = edges.filter((e) => e.caller === e.callee);
    const between = edges.filter((e) => e.caller !== e.callee);
    const outward = kind === "callers" ? (e) => [e.callee, e.caller] : (e) => [e.caller, e.callee];
    const L = layered(boxes, between, name, outward);
    if (kind === "callers") {  // the callers above, the function at the bottom, as the tool draws it
      for (const n of L.info.values()) { n.y = L.height - n.y; [n.top, n.bottom] = [n.y - n.h / 2, n.y + n.h / 2]; }
    }
    const pad = 20;
    const svg = el("svg", {xmlns: NS, class: "km-focused", "font-family": "Helvetica, Arial, sans-serif", "font-size": "12"});
    const defs = el("defs", {}, svg);
    const marker = el("marker", {id: "km-arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "9", markerHeight: "9", markerUnits: "userSpaceOnUse", orient: "auto"}, defs);
    el("path", {d: "M0,0 L10,5 L0,10 z", fill: "#444"}, marker);
    const root = el("g", {transform: `translate(${pad} ${pad})`}, svg);
    const edgeLayer = el("g", {class: "km-edges"}, root);
    const boxLayer = el("g", {class: "km-boxes"}, root);
    const heaviest = Math.max(1e-9, ...between.map((e) => D.timed ? e.total : e.calls));
    for (const e of between) {
      const pts = L.route(e);
      const down = pts[pts.length - 1].y > pts[0].y;
      const end = (p, first) => ({x: p.x, y: p.dummy ? p.y : (first === down ? p.bottom : p.top)});
      const path = [end(pts[0], true), ...pts.slice(1, -1).map((p) => ({x: p.x, y: p.y})), end(pts[pts.length - 1], false)];
      let d = `M${path[0].x.toFixed(1)},${path[0].y.toFixed(1)}`;
      for (let i = 1; i < path.length; i++) {
        const p = path[i - 1], q = path[i], my = (p.y + q.y) / 2;
        d += ` C${p.x.toFixed(1)},${my.toFixed(1)} ${q.x.toFixed(1)},${my.toFixed(1)} ${q.x.toFixed(1)},${q.y.toFixed(1)}`;
      }
      const g = el("g", {class: "km-edge", "data-caller": e.caller, "data-callee": e.callee, "data-calls": e.calls}, edgeLayer);
      el("title", {}, g, `${e.caller} -> ${e.callee}: ${fmtInt(e.calls)} calls` + (D.timed ? `, ${fmtUs(e.total)} in ${e.callee}` : ""));
      const width = 1 + 4 * Math.sqrt((D.timed ? e.total : e.calls) / heaviest);
      el("path", {d, fill: "none", stroke: "#555", "stroke-width": width.toFixed(2), "marker-end": "url(#km-arrow)"}, g);
      const mid = Math.floor((path.length - 1) / 2), p = path[mid], q = path[mid + 1];
      el("text", {x: ((p.x + q.x) / 2 + 4).toFixed(1), y: ((p.y + q.y) / 2 + 4).toFixed(1), class: "km-elabel", "font-size": "10.5"}, g, fmtInt(e.calls));
    }
    for (const b of boxes) {
      const n = L.info.get(b.name), f = b.f, base = baseOf(b.name);
      const attrs = {class: "km-box", "data-name": b.name, "data-calls": f.calls, "data-total": f.total.toFixed(3), "data-self": f.self.toFixed(3), "data-fill": b.fill};
      if (base) Object.assign(attrs, {"data-base-calls": base.calls, "data-base-total": base.total.toFixed(3), "data-base-partial": base.partial ? 1 : 0});
      const g = el("g", attrs, boxLayer);
      el("title", {}, g, b.lines.join("\n"));
      el("rect", {x: (n.x - b.w / 2).toFixed(1), y: n.top.toFixed(1), width: b.w, height: b.h, rx: 5, fill: b.fill, stroke: "#333", "stroke-width": b.name === name ? 2.5 : 1, ...(partial(base) ? {"stroke-dasharray": "4 3"} : {})}, g);
      const colour = KM.textColour(b.fill);
      b.lines.forEach((line, i) => el("text", {x: n.x.toFixed(1), y: (n.top + 17 + 15 * i).toFixed(1), "text-anchor": "middle", fill: colour, "font-weight": i ? "normal" : "bold"}, g, line));
    }
    for (const e of loops) {  // recursion: a loop on the box's right side
      const n = L.info.get(e.caller), x = n.x + n.w / 2;
      const g = el("g", {class: "km-edge km-loop", "data-caller": e.caller, "data-callee": e.callee, "data-calls": e.calls}, edgeLayer);
      el("title", {}, g, `${e.caller} calls itself: ${fmtInt(e.calls)} calls`);
      el("path", {d: `M${x},${n.y - 8} C${x + 34},${n.y - 30} ${x + 34},${n.y + 30} ${x},${n.y + 8}`, fill: "none", stroke: "#555", "stroke-width": 1.5, "marker-end": "url(#km-arrow)"}, g);
      el("text", {x: x + 30, y: n.y + 4, class: "km-elabel", "font-size": "10.5"}, g, fmtInt(e.calls));
    }
    mount(svg, L.width + 2 * pad + 40, L.height + 2 * pad);
    G.focus = {kind, name, depth};
    const levels = depth === null ? "all levels" : `${depth} level${depth === 1 ? "" : "s"}`;
    const what = kind === "callers" ? `who calls ${name}, ${levels} up: ${all.length - 1} callers` : `what ${name} called, ${levels}: ${all.length} functions`;
    const left = all.length - kept.length;
    const unknown = before ? kept.filter((f) => partial(baseOf(f.name))).length : 0;
    const colours = before ? `colour = change of ${D.metric} from the baseline (blue less, red more; both values in the labels)` +
      (unknown ? `; grey, "baseline \u2265": ${unknown} functions with baseline call paths beyond the ${fmtInt(D.cap)} the page holds` : "") : `colour = ${D.metric} over the drawn functions`;
    $("g-caption").textContent = `${what}` + (left ? ` (the ${kept.length} heaviest drawn, ${left} left out)` : "") + `; ${colours}; edge labels = calls` + (kind === "callers" ? `; numbers are ${name}'s calls through each caller` : "");
    // The whole focused drawing when it is readable so; else the focus at full size, the rest a pan away.
    fit();
    const focusBox = findNode(name);
    if (G.k < 0.6 && focusBox && visible()) {
      zoomCentre(1 / G.k);
      centreOn(focusBox);
      const r = focusBox.getBoundingClientRect(), box = G.box.getBoundingClientRect();
      G.ty += kind === "callers" ? box.bottom - 24 - r.bottom : box.top + 24 - r.top;  // the focus at the edge its graph grows from
      apply();
    }
    outline();
  };

  const showWhole = () => {
    G.focus = null;
    if (!D.svg) { G.box.innerHTML = "<p>no drawing</p>"; G.vp = null; $("g-caption").textContent = ""; return; }
    const holder = document.createElement("div");
    holder.innerHTML = D.svg;
    const svg = holder.querySelector("svg");
    const vb = (svg.getAttribute("viewBox") || "0 0 800 600").split(/[\s,]+/).map(Number);
    mount(svg, vb[2], vb[3]);
    $("g-caption").textContent = "graphviz's drawing of the whole recording, as -o NAME.svg makes it";
    fit();
    outline();
  };

  const depthValue = () => {
    const v = $("g-depth").value.trim();
    return v === "" ? null : Math.max(0, Math.floor(Number(v)) || 0);
  };
  const focusOn = (kind) => {
    if (!KM.selected || !KM.byName.has(KM.selected)) { $("g-status").textContent = "select a function first (click one)"; return; }
    drawFocused(kind, KM.selected, depthValue());
  };

  const STYLE = `
#view-graph .km-gctl{display:flex;flex-wrap:wrap;gap:4px 8px;align-items:center;margin:0 0 6px}
#view-graph .km-gctl button{font:inherit;padding:2px 8px;cursor:pointer}
#view-graph .km-gctl input{width:4em;font:inherit}
#g-caption{color:#333}#g-status{color:#b2182b}
#g-box{position:relative;height:calc(100vh - 190px);min-height:320px;border:1px solid #ccc;overflow:hidden;cursor:grab;background:#fff;touch-action:none}
#g-box.km-drag{cursor:grabbing}
#g-box g.node,#g-box g.km-box{cursor:pointer}
#g-box g.km-sel path,#g-box g.km-sel polygon,#g-box g.km-sel ellipse,#g-box g.km-sel rect{stroke:#1565c0;stroke-width:7px}
#g-box .km-elabel{fill:#222;paint-order:stroke;stroke:#fff;stroke-width:3px}`;

  const press = {x: 0, y: 0, tx: 0, ty: 0, down: false, moved: false};
  const wire = () => {
    G.box.addEventListener("wheel", (event) => {
      event.preventDefault();
      const r = G.box.getBoundingClientRect();
      zoomAt(Math.exp(-event.deltaY * 0.0015), event.clientX - r.left, event.clientY - r.top);
    }, {passive: false});
    G.box.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      Object.assign(press, {x: event.clientX, y: event.clientY, tx: G.tx, ty: G.ty, down: true, moved: false});
    });
    window.addEventListener("pointermove", (event) => {
      if (!press.down) return;
      const dx = event.clientX - press.x, dy = event.clientY - press.y;
      if (!press.moved && Math.hypot(dx, dy) < 4) return;
      press.moved = true;
      G.box.classList.add("km-drag");
      G.tx = press.tx + dx; G.ty = press.ty + dy;
      apply();
    });
    window.addEventListener("pointerup", () => { press.down = false; G.box.classList.remove("km-drag"); });
    G.box.addEventListener("click", (event) => {
      if (press.moved) { press.moved = false; return; }  // the end of a drag, not a click
      const g = event.target.closest("g.node, g.km-box");
      if (g) KM.select(nodeName(g), "graph");
    });
    $("g-callees").addEventListener("click", () => focusOn("callees"));
    $("g-callers").addEventListener("click", () => focusOn("callers"));
    $("g-whole").addEventListener("click", showWhole);
    $("g-zin").addEventListener("click", () => zoomCentre(1.25));
    $("g-zout").addEventListener("click", () => zoomCentre(0.8));
    $("g-fit").addEventListener("click", fit);
    $("g-depth").addEventListener("change", () => { if (G.focus) drawFocused(G.focus.kind, G.focus.name, depthValue()); });
  };

  KM.addView({
    id: "graph", title: "Graph",
    mount(section) {
      G.el = section;
      const style = document.createElement("style");
      style.textContent = STYLE;
      document.head.appendChild(style);
      section.innerHTML = `<div class="km-gctl"><span>focus here:</span>
<button id="g-callees" title="draw what the selected function called, on its exact call paths">What it calls</button>
<button id="g-callers" title="draw the call paths that lead to the selected function">Who calls it</button>
<label>levels <input id="g-depth" type="number" min="1" value="3" title="empty: all levels"></label>
<button id="g-whole">Whole drawing</button>
<span>zoom:</span><button id="g-zin" title="zoom in">+</button><button id="g-zout" title="zoom out">\u2212</button><button id="g-fit" title="the whole drawing in the box">fit</button>
<span id="g-status"></span></div>
<p id="g-caption"></p><div id="g-box"></div>`;
      G.box = $("g-box");
      wire();
      showWhole();
    },
    show() {
      if (!G.started) { G.started = true; fit(); }
      if (G.reveal) { G.reveal = false; revealSelected(); } else outline();
    },
    select(name, origin) {
      if (origin === "graph") { outline(); return; }
      if (visible()) revealSelected(); else { G.reveal = true; outline(); }
    },
    key(event) {
      if (event.key === "+" || event.key === "=") { zoomCentre(1.25); return true; }
      if (event.key === "-") { zoomCentre(0.8); return true; }
      if (event.key === "0") { fit(); return true; }
      return false;
    },
  });
  return {G, calleesGraph, callersGraph, fit, zoomCentre, showWhole, drawFocused};
})();
"""

EXPLORER_TREE_JS = r"""
// ---- call tree: the calling-context tree as an outline, keyboard driven ----
// Like uftrace's tui: every row a call path, children heaviest first. Only the rows in sight are drawn
// (a row is ROW pixels high; the outline's height is all unfolded rows), so a big recording costs only
// the unfolded rows' list, not one element per call path.
(function () {
  const ROW = 20;             // px per row: drawn rows are positioned by their index
  const UNFOLD_MATCHES = 300; // a search unfolds the call paths to at most this many matches
  const T = {open: new Set(), rows: [], at: new Map(), cur: null, hits: null, matches: [], order: null, pendingScroll: false};
  let box, list, space, searchBox, status, found, selectTimer = 0;

  const timeWhole = () => D.timed ? KM.root.total : KM.root.w;
  // A share of all with two significant digits when it is small (0.0% would hide the light ones).
  const share = (v, whole) => {
    const p = whole > 0 ? 100 * v / whole : 0;
    return (p > 0 && p < 0.1 ? p.toPrecision(2) : p.toFixed(1)) + "%";
  };
  // The columns: what a row shows and its bar (share of all), baseline's value where there is one.
  const columns = () => {
    const cols = [{title: "calls", value: (x) => x.calls, base: (x) => x.base.calls, fmt: fmtInt, bar: false, narrow: true}];
    if (D.timed) {
      cols.push({title: "total", value: (x) => x.total, base: (x) => x.base.total, fmt: fmtUs, bar: true},
                {title: "self", value: (x) => x.self, base: (x) => x.base.self, fmt: fmtUs, bar: true});
      if (D.off) cols.push({title: "on CPU", value: (x) => Math.max(0, x.total - x.off), fmt: fmtUs, bar: true},
                           {title: "asleep", value: (x) => x.off, fmt: fmtUs, bar: true});
    } else {
      cols.push({title: "calls with callees", value: (x) => x.w, fmt: fmtInt, bar: true});
    }
    return cols;
  };
  let COLS = null;

  // Children heaviest first, sorted once per node when first needed.
  const kidsOf = (x) => {
    if (!x.tvKids) { x.tvKids = x.kids.slice().sort((a, b) => b.w - a.w || a.i - b.i); }
    return x.tvKids;
  };
  // The unfolded rows: the root, then every child of an open row, depth first.
  function layout() {
    const rows = [], at = new Map(), stack = [[KM.root, 0]];
    while (stack.length) {
      const [x, depth] = stack.pop();
      at.set(x, rows.length);
      rows.push([x, depth]);
      if (T.open.has(x)) { const kids = kidsOf(x); for (let k = kids.length - 1; k >= 0; k--) stack.push([kids[k], depth + 1]); }
    }
    T.rows = rows; T.at = at;
    space.style.height = rows.length * ROW + "px";
    status.textContent = `${fmtInt(rows.length - 1)} of ${fmtInt(KM.nodes.length - 1)} call paths unfolded` +
      (D.left_out ? ` (${fmtInt(D.left_out)} lighter call paths merged into their callers: the page embeds the ${fmtInt(D.cap)} heaviest)` : "");
  }

  function cell(col, x) {
    if (x.root && col.title === "self") return `<span class="${cellClass(col)}"></span>`;  // "all" has no time of its own
    const v = col.value(x), whole = timeWhole();
    let text = esc(col.fmt(v)), title = "";
    if (x.base && col.base) {
      const b = col.base(x), d = v - b;
      text += ` <span class="${d > 0 ? "more" : d < 0 ? "less" : ""}">(${esc(signed(d, col.fmt))})</span>`;
      title = ` title="${esc(`baseline ${col.fmt(b)}, now ${col.fmt(v)}`)}"`;
    }
    const bar = col.bar ? `<span class="tv-bar"><i style="width:${whole > 0 ? Math.min(100, 100 * v / whole).toFixed(1) : 0}%"></i></span>` : "";
    return `<span class="${cellClass(col)}"${title}><span class="tv-v">${text}</span>${bar}</span>`;
  }
  const cellClass = (col) => "tv-c" + (col.narrow ? " tv-narrow" : "") + (D.base && col.base ? " tv-change" : "");
  // 12 px a level, 4 px beyond the 16th: a deep path keeps its names in sight.
  const indent = (depth) => Math.min(depth, 16) * 12 + Math.max(0, depth - 16) * 4;
  function rowHtml(index) {
    const [x, depth] = T.rows[index];
    const kids = x.kids.length, open = T.open.has(x);
    const cls = ["tv-row"];
    if (x === T.cur) cls.push("tv-cur");
    if (T.hits && !x.root && T.hits[x.fi]) cls.push("tv-match");
    if (x.name === KM.selected) cls.push("tv-sel");
    const triangle = kids ? `<span class="tv-tri">${open ? "\u25be" : "\u25b8"}</span>` : `<span class="tv-tri tv-leaf"></span>`;
    const part = x.root ? "" : ` <span class="tv-share">${share(x.w, KM.root.w)}</span>`;
    return `<div class="${cls.join(" ")}" data-i="${x.i}" data-depth="${depth}" style="top:${index * ROW}px">` +
      `<span class="tv-name" style="padding-left:${indent(depth)}px" title="depth ${depth}">${triangle}<span class="tv-fn">${esc(x.name)}</span>${part}</span>` +
      COLS.map((col) => cell(col, x)).join("") + "</div>";
  }
  // Draw the rows in sight (and a margin), nothing else.
  function draw() {
    const height = box.clientHeight || window.innerHeight;
    const first = Math.max(0, Math.floor(box.scrollTop / ROW) - 10);
    const last = Math.min(T.rows.length, first + Math.ceil(height / ROW) + 20);
    let html = "";
    for (let index = first; index < last; index++) html += rowHtml(index);
    list.innerHTML = html;
  }
  function redraw() { layout(); draw(); }

  // Keep the current row in sight (centred when it was far away).
  function scrollTo(x, centre) {
    const index = T.at.get(x);
    if (index === undefined) return;
    if (!box.clientHeight) { T.pendingScroll = true; return; }
    const top = index * ROW, view = box.clientHeight - ROW * 1.5;
    if (centre) box.scrollTop = Math.max(0, top - view / 3);
    else if (top < box.scrollTop) box.scrollTop = top;
    else if (top + ROW > box.scrollTop + view) box.scrollTop = top + ROW - view;
    draw();
  }
  function reveal(x) { for (let p = x.parent; p; p = p.parent) T.open.add(p); }
  function setCurrent(x, centre = false) {
    T.cur = x;
    redraw();
    scrollTo(x, centre);
  }
  // The keyboard moves the current row; the shared selection follows once the keys stop.
  function follow() {
    clearTimeout(selectTimer);
    selectTimer = setTimeout(() => { if (T.cur && !T.cur.root) KM.select(T.cur.name, "tree"); }, 200);
  }
  function toggle(x) { if (!x.kids.length) return; if (T.open.has(x)) T.open.delete(x); else T.open.add(x); }
  function heaviestPath(x) { for (; x.kids.length; x = kidsOf(x)[0]) T.open.add(x); }

  // Search: a substring or a regular expression on the function names, as on the flame graph page.
  function preorder() {
    if (T.order) return T.order;
    const order = new Int32Array(KM.nodes.length), stack = [KM.root];
    let n = 0;
    while (stack.length) {
      const x = stack.pop();
      order[x.i] = n++;
      const kids = kidsOf(x);
      for (let k = kids.length - 1; k >= 0; k--) stack.push(kids[k]);
    }
    return (T.order = order);
  }
  function search(text) {
    let re = null;
    try { re = text ? new RegExp(text) : null; } catch (error) { re = new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")); }
    T.hits = re ? D.names.map((name) => re.test(name)) : null;
    T.matches = [];
    if (!re) { found.textContent = ""; redraw(); return; }
    // The share: the outermost matches' weight (a match inside a match is counted once, by its outermost).
    let outer = 0;
    const stack = [[KM.root, false]];
    while (stack.length) {
      const [x, inside] = stack.pop();
      const hit = !x.root && T.hits[x.fi];
      if (hit) { T.matches.push(x); if (!inside) outer += x.w; }
      for (const k of x.kids) stack.push([k, inside || hit]);
    }
    const order = preorder();
    T.matches.sort((a, b) => order[a.i] - order[b.i]);
    T.matches.slice(0, UNFOLD_MATCHES).forEach(reveal);
    found.textContent = `${fmtInt(T.matches.length)} matching call paths: ${share(outer, KM.root.w)} of all ${D.timed ? "time" : "calls"} (nested counted once)` +
      (T.matches.length > UNFOLD_MATCHES ? `; the first ${UNFOLD_MATCHES} unfolded, n/N go to the others` : "");
    if (T.matches.length) setCurrent(T.matches[0], true); else redraw();
  }
  function nextMatch(step) {
    if (!T.matches.length) return;
    const order = preorder(), here = T.cur ? order[T.cur.i] : -1;
    let index = step > 0 ? T.matches.findIndex((x) => order[x.i] > here) : T.matches.findLastIndex((x) => order[x.i] < here);
    if (index < 0) index = step > 0 ? 0 : T.matches.length - 1;
    reveal(T.matches[index]);
    setCurrent(T.matches[index], true);
    follow();
  }

  function key(event) {
    if (event.ctrlKey || event.altKey || event.metaKey) return false;
    const x = T.cur || KM.root, index = T.at.get(x) ?? 0, page = Math.max(1, Math.floor(box.clientHeight / ROW) - 2);
    const moveTo = (row) => { setCurrent(T.rows[Math.max(0, Math.min(T.rows.length - 1, row))][0]); follow(); };
    switch (event.key) {
      case "ArrowDown": moveTo(index + 1); return true;
      case "ArrowUp": moveTo(index - 1); return true;
      case "PageDown": moveTo(index + page); return true;
      case "PageUp": moveTo(index - page); return true;
      case "Home": moveTo(0); return true;
      case "End": moveTo(T.rows.length - 1); return true;
      case "ArrowRight":
        if (x.kids.length && !T.open.has(x)) { T.open.add(x); setCurrent(x); } else if (x.kids.length) { setCurrent(kidsOf(x)[0]); follow(); }
        return true;
      case "ArrowLeft":
        if (T.open.has(x) && x.kids.length) { T.open.delete(x); setCurrent(x); } else if (x.parent) { setCurrent(x.parent); follow(); }
        return true;
      case "Enter": toggle(x); setCurrent(x); return true;
      case "h": heaviestPath(x); setCurrent(x); return true;
      case "l": if (x.kids.length) { T.open.add(x); setCurrent(kidsOf(x)[0]); follow(); } return true;
      case "n": nextMatch(1); return true;
      case "N": nextMatch(-1); return true;
      case "/": searchBox.focus(); searchBox.select(); return true;
      default: return false;
    }
  }

  KM.addView({
    id: "tree", title: "Call tree", key,
    mount(el) {
      COLS = columns();
      el.innerHTML = `<div class="tv-bar-top"><input id="tree-search" type="search" placeholder="search: substring or regular expression" size="36"> <span id="tree-found"></span></div>
<p class="note tv-help">keys: \u2191 \u2193 move (PgUp PgDn Home End) \u00b7 \u2192 unfold / first child \u00b7 \u2190 fold / parent \u00b7 Enter fold or unfold \u00b7 h unfold the heaviest path \u00b7 l go to the heaviest child \u00b7 / search \u00b7 n N next / previous match \u00b7 click \u25b8 to fold, a row to select its function</p>
<p class="note" id="tree-status"></p>
<div id="tree-box"><div class="tv-row tv-head"><span class="tv-name">function (share of all ${D.timed ? "time" : "calls"})</span>${COLS.map((c) => `<span class="${cellClass(c)}">${esc(c.title)}${D.base && c.base ? " (change)" : ""}</span>`).join("")}</div><div class="tv-space"><div class="tv-list"></div></div></div>`;
      box = el.querySelector("#tree-box"); space = el.querySelector(".tv-space"); list = el.querySelector(".tv-list");
      searchBox = el.querySelector("#tree-search"); found = el.querySelector("#tree-found"); status = el.querySelector("#tree-status");
      const style = document.createElement("style");
      style.textContent = `
#tree-box{height:calc(100vh - 215px);min-height:240px;overflow:auto;border:1px solid #ccc;font:12px/${ROW}px monospace;position:relative}
#tree-box .tv-row{display:flex;height:${ROW}px;white-space:nowrap;min-width:${D.base ? 1100 : 900}px;cursor:default}

#tree-box .tv-list .tv-row{position:absolute;left:0;right:0}
#tree-box .tv-head{position:sticky;top:0;z-index:2;background:#eee;font-weight:600;border-bottom:1px solid #ccc}
#tree-box .tv-space{position:relative}
#tree-box .tv-name{flex:1 1 0;min-width:320px;box-sizing:border-box;overflow:hidden;text-overflow:ellipsis;padding-right:8px}
#tree-box .tv-c{flex:0 0 ${D.base ? 130 : 150}px;box-sizing:border-box;display:flex;justify-content:flex-end;gap:4px;align-items:center;padding-right:8px}
#tree-box .tv-c.tv-narrow{flex-basis:90px}
#tree-box .tv-c.tv-change{flex-basis:200px}
#tree-box .tv-c.tv-narrow.tv-change{flex-basis:120px}

#tree-box .tv-v{text-align:right;font-variant-numeric:tabular-nums}
#tree-box .tv-bar{display:inline-block;width:${D.base ? 36 : 48}px;height:9px;background:#eee;flex:none}

#tree-box .tv-bar i{display:block;height:100%;background:#e6863b}
#tree-box .tv-tri{display:inline-block;width:14px;cursor:pointer;color:#444;font-size:14px}

#tree-box .tv-share{color:#888}
#tree-box .tv-cur{background:#cfe3ff}
#tree-box .tv-match .tv-fn{background:#ffe45c}
#tree-box .tv-sel .tv-fn{font-weight:700}
#tree-box .tv-row:hover:not(.tv-head){outline:1px solid #9bd}`;
      el.appendChild(style);
      // The top level, and what each top function calls: one level unfolded.
      T.open.add(KM.root);
      for (const top of KM.root.kids) T.open.add(top);
      T.cur = KM.root;
      let drawing = false;  // one draw a frame however many scroll events come
      box.addEventListener("scroll", () => {
        if (!drawing) { drawing = true; requestAnimationFrame(() => { drawing = false; draw(); }); }
      }, {passive: true});

      list.addEventListener("click", (event) => {
        const row = event.target.closest(".tv-row");
        if (!row) return;
        const x = KM.nodes[+row.dataset.i];
        if (event.target.closest(".tv-tri")) { toggle(x); setCurrent(x); return; }
        setCurrent(x);
        if (!x.root) KM.select(x.name, "tree");
      });
      searchBox.addEventListener("input", () => search(searchBox.value));
      searchBox.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === "Escape") { event.preventDefault(); searchBox.blur(); if (event.key === "Enter") nextMatch(1); }
      });
      layout();
    },
    show() {
      redraw();
      if (T.pendingScroll) { T.pendingScroll = false; scrollTo(T.cur, true); }
    },
    // Another view's selection: unfold its heaviest call path and go there.
    select(name, origin) {
      if (origin === "tree") {  // only the emphasis moves: the rows stay (a click on them may be on its way)
        for (const row of list.children) row.classList.toggle("tv-sel", KM.nodes[+row.dataset.i].name === name);
        return;
      }

      const paths = KM.byName.get(name);
      if (!paths) return;
      const heaviest = paths.reduce((a, b) => (b.w > a.w ? b : a));
      reveal(heaviest);
      setCurrent(heaviest, true);
    },
  });
})();
"""

EXPLORER_PEEK_JS = r"""
// ---- callers and callees of the selection, merged over all its call paths ----
// pprof's peek, speedscope's sandwich: the function graph's edges into and out of the selected function F
// (the tool's edges: KM.deriveGraph of the whole tree), with their calls, time and share of F's.
// An edge's time is the callee's where it is not inside itself, so a recursive call (F -> F) has none of its own.
KM.peekIndex = function (edges) {
  const into = new Map(), outOf = new Map();
  const add = (map, key, e) => { if (!map.has(key)) map.set(key, []); map.get(key).push(e); };
  for (const e of edges) { add(into, e.callee, e); if (e.caller) add(outOf, e.caller, e); }
  return {into, outOf};
};
KM.peekEdges = function () {  // the page's edges, and the tops of the call paths as edges from "" (no traced caller)
  KM.functionNumbers("");  // makes KM.whole (the whole tree's graph) once, shared with the selection bar
  const tops = new Map();
  for (const x of KM.root.kids) {
    const t = tops.get(x.name) || {caller: "", callee: x.name, calls: 0, total: 0};
    t.calls += x.calls; t.total += x.total; tops.set(x.name, t);
  }
  return [...KM.whole.edges.values(), ...tops.values()];
};

KM.perCall = (v) => v === 0 ? "0" : v >= 10 ? v.toFixed(1) : v >= 0.995 ? v.toFixed(2) : v.toPrecision(2);
const PEEK_CSS = `
#view-peek h3{font-size:13px;margin:10px 0 4px}
#view-peek h3 .note{font-weight:normal}
table.peek{border-collapse:collapse;margin:0 0 6px}
table.peek th{font-weight:600;text-align:right;padding:2px 8px;border-bottom:1px solid #bbb;white-space:nowrap}
table.peek th:first-child,table.peek th:last-child{text-align:left}
table.peek td{padding:2px 8px;border-bottom:1px solid #eee}
table.peek td.fn{font-family:monospace;white-space:nowrap}
table.peek td.src{font-size:12px;color:#555}
table.peek tr.go{cursor:pointer}
table.peek tr.go:hover{background:#eef3fb}
table.peek tr.focus{background:#fdf3d8}
table.peek tr.focus-base{color:#555}
table.peek td.bar{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
table.peek td.bar .track{display:inline-block;width:100px;height:10px;margin-right:6px;background:#f2f2f2;vertical-align:middle;text-align:left}
table.peek td.bar .track span{display:block;height:100%}
table.peek td.bar .pc{display:inline-block;min-width:3.5em}
`;
KM.addView({
  id: "peek", title: "Callers & callees", name: null, drawn: null,
  mount(el) {
    this.el = el;
    this.index = null;
    const style = document.createElement("style");
    style.textContent = PEEK_CSS;
    document.head.appendChild(style);
    el.addEventListener("click", (event) => {
      if (event.target.closest("a")) return;  // a source link opens the source
      const row = event.target.closest("tr.go");
      if (row) KM.select(row.dataset.name, "peek");
    });
  },
  show() { if (this.drawn !== this.name) this.draw(); },
  select(name) { this.name = name; if (KM.active === this) this.draw(); },
  build() {
    this.index = KM.peekIndex(KM.peekEdges());
    this.base = D.base ? KM.peekIndex((D.base.edges || []).map(([caller, callee, calls, total]) => ({caller, callee, calls, total}))) : null;
  },
  // Rows of one side: the page's edges merged with the baseline's by the other function's name.
  rows(side, keyOf) {
    const rows = new Map();
    const row = (name) => rows.get(name) || rows.set(name, {name, calls: 0, total: 0, bcalls: 0, btotal: 0}).get(name);
    for (const e of this.index[side].get(this.name) || []) { const r = row(keyOf(e)); r.calls += e.calls; r.total += e.total; }
    if (this.base) for (const e of this.base[side].get(this.name) || []) { const r = row(keyOf(e)); r.bcalls += e.calls; r.btotal += e.total; }
    const key = (r) => D.timed ? [r.total, r.calls, r.btotal, r.bcalls] : [r.calls, r.bcalls];
    const counted = [...rows.values()].filter((r) => r.calls || r.total || r.bcalls || r.btotal);  // not a path's empty start (an exit without its entry)
    return counted.sort((a, b) => {
      const [ka, kb] = [key(a), key(b)];
      for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return kb[i] - ka[i];
      return a.name < b.name ? -1 : 1;
    });
  },
  draw() {
    if (!this.index) this.build();
    this.drawn = this.name;
    const name = this.name;
    if (!name) { this.el.innerHTML = "<p>Select a function (click one in any view).</p>"; return; }
    const f = KM.functionNumbers(name) || {calls: 0, total: 0, self: 0, off: 0};
    const b = KM.baseNumbers(name);
    const callers = this.rows("into", (e) => e.caller), callees = this.rows("outOf", (e) => e.callee);
    const self = callers.findIndex((r) => r.name === name);  // recursion: shown once, among the callers
    const itself = self >= 0 ? callers.splice(self, 1)[0] : null;
    if (itself) callees.splice(callees.findIndex((r) => r.name === name) >>> 0, 1);
    if (itself) callers.push(itself);
    const html = [
      this.base ? `<p class="note">baseline: ${esc(D.base.inputs.join(", "))}; change = this recording \u2212 the baseline (red more, blue less)</p>` : "",
      `<h3>Who calls <code>${esc(name)}</code> (${callers.length}) <span class="note">merged over all its call paths;` +
      ` share of its ${fmtInt(f.calls)} calls${D.timed ? " and " + fmtUs(f.total) : ""}</span></h3>`,
      this.table(callers, "callers", f, b),
      this.focusTable(name, f, b),
      `<h3>What <code>${esc(name)}</code> calls (${callees.length}) <span class="note">share of its ${D.timed ? fmtUs(f.total) : fmtInt(f.calls) + " calls"}</span></h3>`,
      this.table(callees, "callees", f, b),
    ];
    this.el.innerHTML = html.join("");
  },
  label(r, kind) {
    if (r.name === "") return "<i>(top of its call paths: no traced caller)</i>";
    if (r.name === this.name) return `${esc(r.name)} <i>(itself)</i>`;
    return esc(r.name);
  },
  bar(share, colour) {
    const w = Math.max(0, Math.min(100, 100 * share));
    return `<td class="bar"><span class="track"><span style="width:${w.toFixed(1)}%;background:${colour}"></span></span><span class="pc">${(100 * share).toFixed(1)}%</span></td>`;
  },
  change(now, then, largest, fmt) {
    const bg = KM.changeColour(now - then, largest);
    return `<td class="num">${fmt(then)}</td><td class="num" style="background:${bg};color:${KM.textColour(bg)}">${signed(now - then, fmt)}</td>`;
  },
  table(rows, kind, f, b) {
    if (!rows.length) return `<p class="note">${kind === "callers" ? "none: no traced call path reaches it" : "none: it calls no traced function"}</p>`;
    const base = !!this.base;
    const largest = rows.reduce((m, r) => Math.max(m, Math.abs(D.timed ? r.total - r.btotal : r.calls - r.bcalls)), 0);
    const callsLargest = rows.reduce((m, r) => Math.max(m, Math.abs(r.calls - r.bcalls)), 0);
    // Untimed: a caller's bar is its share of F's calls; a callee's, its share of the calls F makes.
    const made = rows.reduce((sum, r) => sum + r.calls, 0);
    const callShare = (r) => kind === "callers" ? this.bar(f.calls > 0 ? r.calls / f.calls : 0, "#92c5de") : `<td class="num">${f.calls ? KM.perCall(r.calls / f.calls) : "-"}</td>`;
    const head = [kind === "callers" ? "caller" : "callee", "calls", kind === "callers" ? "of its calls" : "per call of it"];
    if (base) head.push("baseline", "change");
    if (D.timed) head.push("time", kind === "callers" ? "of its time" : "of its total");
    if (D.timed && base) head.push("baseline", "change");
    if (!D.timed && kind === "callees") head.push("of the calls it makes");
    head.push("source");
    const out = [`<table class="peek" id="peek-${kind}"><thead><tr>${head.map((h) => `<th>${h}</th>`).join("")}</tr></thead><tbody>`];
    for (const r of rows) {
      const cells = [`<td class="fn">${this.label(r, kind)}</td>`, `<td class="num">${fmtInt(r.calls)}</td>`];
      cells.push(D.timed && kind === "callers" ? `<td class="num">${pct(r.calls, f.calls)}</td>` : callShare(r));
      if (base) cells.push(this.change(r.calls, r.bcalls, callsLargest, fmtInt));
      const recursive = r.name === this.name;  // its time is inside F's own: no share of its own
      if (D.timed) cells.push(`<td class="num">${recursive ? "(inside itself)" : fmtUs(r.total)}</td>`, recursive ? "<td></td>" : this.bar(f.total > 0 ? r.total / f.total : 0, "#f4a582"));
      if (D.timed && base) cells.push(this.change(r.total, r.btotal, largest, fmtUs));
      if (!D.timed && kind === "callees") cells.push(this.bar(made > 0 ? r.calls / made : 0, "#92c5de"));
      cells.push(`<td class="src">${r.name && r.name !== this.name ? KM.sourceHtml(r.name) : ""}</td>`);
      const attrs = `data-name="${esc(r.name)}" data-calls="${r.calls}" data-total="${r.total}"` + (base ? ` data-bcalls="${r.bcalls}" data-btotal="${r.btotal}"` : "");
      const clickable = r.name && r.name !== this.name && KM.byName.has(r.name);
      out.push(`<tr ${attrs}${clickable ? ' class="go" title="select it"' : ""}>${cells.join("")}</tr>`);
    }
    out.push("</tbody></table>");
    return out.join("");
  },
  // F itself: calls, total, self, on CPU / asleep, its source; with a baseline both values and the change.
  focusTable(name, f, b) {
    const head = ["function", "calls"], now = [`<td class="fn"><b>${esc(name)}</b></td>`, `<td class="num">${fmtInt(f.calls)}</td>`];
    const then = b ? ["<td>baseline</td>", `<td class="num">${fmtInt(b.calls)} (${signed(f.calls - b.calls, fmtInt)})</td>`] : null;
    if (D.timed) {
      head.push("total", "self");
      now.push(`<td class="num">${fmtUs(f.total)}</td>`, `<td class="num">${fmtUs(f.self)}</td>`);
      if (b) then.push(`<td class="num">${fmtUs(b.total)} (${signed(f.total - b.total, fmtUs)})</td>`, `<td class="num">${fmtUs(b.self)} (${signed(f.self - b.self, fmtUs)})</td>`);
    }
    if (D.off) {
      head.push("on CPU", "asleep");
      now.push(`<td class="num">${fmtUs(Math.max(0, f.total - f.off))}</td>`, `<td class="num">${fmtUs(f.off)}</td>`);
      if (b) then.push("<td></td>", "<td></td>");
    }
    head.push("source");
    now.push(`<td class="src">${KM.sourceHtml(name)}</td>`);
    if (b) then.push("<td></td>");
    const attrs = `data-calls="${f.calls}" data-total="${f.total}" data-self="${f.self}"` + (b ? ` data-bcalls="${b.calls}" data-btotal="${b.total}"` : "");
    return `<table class="peek" id="peek-focus"><thead><tr>${head.map((h) => `<th>${h}</th>`).join("")}</tr></thead>` +
      `<tbody><tr class="focus" ${attrs}>${now.join("")}</tr>${then ? `<tr class="focus-base">${then.join("")}</tr>` : ""}</tbody></table>`;
  },
});
"""

EXPLORER_FLAME_JS = FLAME_JS + r"""
// ---- flame graph of the call tree (FLAME_JS, as the .flame.html page), sharing the selection ----
(function () {
  let flame = null;
  // With a baseline a frame is coloured by the change of its call path: total time (calls when untimed).
  const change = (x) => D.timed ? x.total - x.base.total : x.calls - x.base.calls;
  const largest = new WeakMap();  // per drawn tree (the call tree, or a callers tree): the scale's end
  const scale = (tree) => {
    if (!largest.has(tree)) {
      let most = 0;
      const walk = (x) => { if (!x.root && x.base) most = Math.max(most, Math.abs(change(x))); x.kids.forEach(walk); };
      walk(tree);
      largest.set(tree, most);
    }
    return largest.get(tree);
  };
  const colour = (x, tree) => {
    if (!x.base) return null;
    const bg = KM.changeColour(change(x), scale(tree));
    return {bg, fg: KM.textColour(bg)};
  };
  const baseRow = (x) => {
    if (!x.base) return [];
    const was = D.timed ? fmtUs(x.base.total) : fmtInt(x.base.calls) + " calls", delta = change(x);
    const now = D.timed ? x.total : x.calls, then = D.timed ? x.base.total : x.base.calls;
    return [`baseline: ${fmtInt(x.base.calls)} calls` + (D.timed ? `, total ${fmtUs(x.base.total)}` : ""),
            `<span class="${delta > 0 ? "more" : delta < 0 ? "less" : ""}">change: ${signed(delta, D.timed ? fmtUs : fmtInt)}`
            + (then > 0 ? ` (${signed(100 * (now - then) / then, (v) => v.toFixed(1))}% of ${was})` : " (not in the baseline)") + "</span>"];
  };
  const source = (x) => {
    const module = D.modules[x.fi];
    return KM.sourceLinks(x.name).map((l) => l.text).concat(module ? [`[${module}]`] : []).join("; ");
  };
  const widthText = () => D.timed
    ? `frame width = total time of the call path (its callees included, and interrupts and by default sleep); all = ${fmtUs(D.w[0])}`
    : `frame width = calls in the call path's subtree (the trace has no durations); all = ${fmtInt(D.w[0])} calls`;
  const compareText = () => {
    const what = D.timed ? "total time" : "calls";
    const stops = D.palette.change.join(",");
    return `<span style="display:inline-block;width:90px;height:10px;vertical-align:middle;background:linear-gradient(to right,${stops})"></span>`
      + ` colour = change of the call path's ${what} against the baseline ${esc(D.base.inputs.join(", "))}: red grew, blue shrank, white unchanged`
      + " (square-root scale up to the largest change in view; call paths only in the baseline are not drawn)";
  };
  const view = {
    id: "flame", title: "Flame graph",
    mount(el) {
      el.innerHTML = `<p id="flame-width" class="note"></p><p id="flame-compare" class="note"></p>
<p class="note">Click a frame to select its function and zoom into it, Reset zoom (or Esc) to go back; hover for numbers; search (/) by substring or regular expression; the selected function's frames are outlined; Callers of F shows the call paths that lead to the selected function, merged bottom-up.</p>`;
      $("flame-width").textContent = widthText();
      if (D.base) $("flame-compare").innerHTML = compareText(); else $("flame-compare").hidden = true;
      flame = flameGraph(el, KM.root, {
        prefix: "flame-", tip: $("tip"), timed: D.timed, weight: D.timed ? "time" : "calls", hasOff: !!D.off, outline: true,
        source, colour: D.base ? colour : null, tipRows: baseRow, onSelect: (name) => KM.select(name, "flame"),
      });
    },
    show() { flame.render(); },
    // a click in the flame graph draws it itself; a selection elsewhere outlines the frames (drawn now if in view)
    select(name, origin) { flame.select(name, origin !== "flame" && KM.active === view); },
    key(event) { return flame.key(event); },
  };
  KM.addView(view);
  window.addEventListener("resize", () => { if (KM.active === view) flame.render(); });
})();
"""

EXPLORER_START_JS = "KM.start();"


# ============================================================================
# Output: a text report for a terminal
# ============================================================================
# For a target host over SSH, like `perf report --stdio` or `uftrace graph`:
# what the summary says, the top functions by self and by total time, and the
# call tree of the current view with calls, total and self on every line.
# With scheduler events and timestamps, the total splits into the time on a
# CPU and the time switched out ("asleep": S, D, or preempted R) in the
# total-time table and on every line of the tree, and a third table ranks the
# functions by their time asleep.

STDOUT_OUTPUT = "-"  # -o -: the text report on standard output, every message on stderr
DEFAULT_CHART = "function-calls.png"
TEXT_TREE_LEVELS = 14  # without --depth the tree stops here: 2 columns a level, so most lines fit a 100-column terminal
ON_OFF_LEGEND = "total = on CPU + asleep, the time switched out while open (S or D asleep, R preempted); '-': never switched out"


def text_report(views: Views) -> list[str]:
    view, args = views.view, views.args
    graph = view.graph
    stats = graph.stats
    lines = [f"kernel-magnifier report: {stats.events:,} events from {', '.join(os.path.basename(p) for p in stats.inputs)}"]
    lines.extend(summarize(view, views.sched) + wakeup_summary(views))
    lines.append(f"shares (%) are of {report_whole(graph)}")
    if shows_on_off(graph):
        lines.append(ON_OFF_LEGEND)
    if views.baseline is not None:
        lines.append("--baseline: the text report shows this recording only; the comparison is in the drawing, the chart and the .json")
    for by in ("total",) if graph.woken else ("self",) if graph.reversed and not graph.timed else ("self", "total"):  # a caller's one number there: F's calls through it
        lines += ["", *top_functions_table(view, by, args.chart_top)]
    if shows_on_off(graph) and any(graph.off_cpu.get(name) for name in view.nodes):
        lines += ["", *asleep_table(view, args.chart_top)]
    if graph.edge_sites:
        lines += ["", *call_sites_table(view, args.chart_top)]
    lines += ["", *call_tree_text(view, args)]
    return lines


def call_sites_table(view: View, top: int) -> list[str]:
    """The view's heaviest edges by calls, each with where its caller made them (funcgraph-retaddr)."""
    edges = sorted((edge for edge in view.edges if edge in view.graph.edge_sites), key=lambda edge: (-view.graph.edges[edge], edge))
    lines = [f"Call sites: the top {min(top, len(edges))} of {len(edges)} caller -> callee edges by calls, and where the calls were made (the return addresses)"]
    for edge in edges[:top]:
        lines.append(f"{view.graph.edges[edge]:>7,}  {edge[0]} -> {edge[1]}, {call_sites_text(edge_call_sites(edge, view), edge[0])}")
    return lines


def report_whole(graph: CallGraph) -> str:
    if graph.woken:
        if not graph.timed:
            return f"{plural(whole_weight(graph), 'sleep')} of {focus_names(graph)} (the trace has no timestamps: the time waited is unknown)"
        return f"{format_us(graph.weight_total)}, the time {focus_names(graph)}'s sleeps waited"
    if graph.uses_time:
        return f"{format_us(graph.weight_total)}, the total time of the top-level calls of this view (they include interrupts and, by default, sleep)"
    if graph.reversed:
        return f"{plural(whole_weight(graph), 'call')}, every call of {focus_names(graph)} (the trace has no durations)"
    return f"{plural(graph.weight_total, 'call')}, every call of this view (the trace has no durations)"


def whole_weight(graph: CallGraph) -> float:
    """What the shares are of: the drawing's whole; in a reversed tree without durations F's calls (its subtrees count them once a level)."""
    if graph.reversed and not graph.uses_time:  # (--wakers: F's sleeps)
        return float(sum(graph.tree.calls[kid] for kid in (graph.tree.children[ROOT_NODE] or {}).values()))
    return graph.weight_total


def focus_names(graph: CallGraph) -> str:
    return plural_names({graph.tree.function[kid] or "" for kid in (graph.tree.children[ROOT_NODE] or {}).values()})


def shows_on_off(graph: CallGraph) -> bool:
    """The report splits total time into on CPU + asleep: the trace has sched_switch and timestamps (a --wakers tree's times are waits)
    and some function of the view was switched out (a focus where nothing slept keeps the plain columns)."""
    return graph.sched is not None and graph.sched.timed and graph.timed and not graph.woken and any(off.sleeps for off in graph.off_cpu.values())


def top_functions_table(view: View, by: str, top: int) -> list[str]:
    """The `top` functions by self (or own calls) and by total time (or calls in their subtrees), aligned; by total, on CPU + asleep too."""
    graph = view.graph
    whole = whole_weight(graph)
    if graph.woken:
        key = graph.total_us if graph.timed else {name: float(graph.calls[name]) for name in view.nodes}
        title, header = "sleeps' time waited", ["sleeps", "waited", "waited%" if graph.timed else "sleeps%"]
    elif graph.timed:
        key = graph.self_us if by == "self" else graph.total_us
        title = f"{by} time"
        header = ["calls", "total", "total%", "self", "self%"]
    else:
        key = {name: float(graph.calls[name]) for name in view.nodes} if by == "self" else graph.inclusive
        title = "calls" if by == "self" else "calls in their subtrees"
        header = ["calls", "calls%"] if graph.reversed else ["calls", "calls%", "subtree", "subtree%"]
    ranked = sorted(view.nodes, key=lambda name: (-key.get(name, 0.0), name))[:top]
    rows = [[*function_numbers_text(graph, name, whole), function_text(name, view)] for name in ranked]
    if by == "total" and shows_on_off(graph):
        header = with_on_off(header, 3)
        rows = [with_on_off(row, 3, *function_on_off_text(graph, name)) for row, name in zip(rows, ranked)]
    where = f" on the call paths to {focus_names(graph)}, by its {title} through them" if graph.reversed else f" by {title}"
    if graph.woken:
        ranked_by = "the time its sleeps woken through them waited" if graph.timed else "its sleeps woken through them (the time waited is unknown)"
        where = f" on the wakers' paths of {focus_names(graph)}, by {ranked_by}"
    return [f"Top {len(ranked)} of {len(view.nodes):,} {boxes_noun(graph)}{where}", *aligned([*header, "group" if graph.group_by else "function"], rows)]


def asleep_table(view: View, top: int) -> list[str]:
    """The `top` functions by their time switched out while open (outermost activations), with their sleeps and how."""
    graph = view.graph
    whole = whole_weight(graph)
    slept = [name for name in view.nodes if graph.off_cpu.get(name)]
    ranked = sorted(slept, key=lambda name: (-off_cpu_us(graph, name), -graph.total_us[name], name))[:top]  # equal sleeps: the outermost first
    rows = []
    for name in ranked:
        found = graph.off_cpu[name]
        states = ",".join(state for state, _ in sorted(found.states.items(), key=lambda kv: (-kv[1], kv[0])))
        rows.append([f"{found.sleeps:,}", format_us(found.off_us), percent(found.off_us, whole), format_us(on_cpu_us(graph, name)),
                     format_us(graph.total_us[name]), states, function_text(name, view)])
    where = f" on the call paths to {focus_names(graph)}, by its time asleep through them" if graph.reversed else " by time asleep"
    return [
        f"Top {len(ranked)} of {len(view.nodes):,} {boxes_noun(view.graph)}{where} ({len(slept):,} were switched out while open)",
        *aligned(["sleeps", "asleep", "asleep%", "on CPU", "total", "states", "function"], rows),
    ]


def with_on_off(cells: list[str], at: int, on: str = "on CPU", off: str = "asleep") -> list[str]:
    """A row or header with the two parts of its total inserted at `at`, after the total (and its share): calls, total, on CPU, asleep, self..."""
    return [*cells[:at], on, off, *cells[at:]]


def function_on_off_text(graph: CallGraph, name: str) -> tuple[str, str]:
    """A function's on-CPU and switched-out time ("-": never switched out while open)."""
    found = graph.off_cpu.get(name)
    return format_us(on_cpu_us(graph, name)), format_us(found.off_us) if found else "-"


def function_numbers_text(graph: CallGraph, name: str, whole: float) -> list[str]:
    if graph.woken:
        if not graph.timed:
            return [f"{graph.calls[name]:,}", "?", percent(graph.calls[name], whole)]
        return [f"{graph.calls[name]:,}", format_us(graph.total_us[name]), percent(graph.total_us[name], whole)]
    if graph.timed:
        total, self_us = graph.total_us[name], graph.self_us[name]
        return [f"{graph.calls[name]:,}", format_us(total), percent(total, whole), format_us(self_us), percent(self_us, whole)]
    calls, subtree = graph.calls[name], graph.inclusive.get(name, 0.0)
    if graph.reversed:
        return [f"{calls:,}", percent(calls, whole)]
    return [f"{calls:,}", percent(calls, whole), f"{subtree:,.0f}", percent(subtree, whole)]


def percent(value: float, whole: float) -> str:
    return f"{value / whole:.1%}" if whole > 0 else "-"


def function_text(name: str, view: View) -> str:
    """The name, its module and its source file from the symbol map, whole (a terminal wraps, nothing is cut)."""
    parts = [name]
    module = view.graph.modules.get(name)
    if module:
        parts.append(f"[{module}]")
    sources = view.files.get(name, [])
    if sources:
        parts.append(shown_definition(sources[0]))
        if len(sources) > 1:
            parts.append(f"(or {len(sources) - 1} other file{'s' if len(sources) > 2 else ''})")
    return "  ".join(parts)


def aligned(header: list[str], rows: list[list[str]]) -> list[str]:
    """Right-aligned number columns, then the text column, left-aligned and never cut."""
    table = [header, *rows]
    widths = [max(len(row[column]) for row in table) for column in range(len(header) - 1)]
    return ["  ".join([*(cell.rjust(width) for cell, width in zip(row, widths)), row[-1]]).rstrip() for row in table]


def path_weights(graph: CallGraph) -> list[float]:
    """What orders and cuts the tree: a path's total time; without durations its calls in the subtree (its own in a reversed tree)."""
    tree = graph.tree
    if graph.uses_time:
        return tree.total_us
    return [float(calls) for calls in tree.calls] if graph.reversed else [float(calls) for calls in tree.subtree_calls()]


def heaviest_paths(tree: CallTree, weights: list[float], budget: int, min_weight: float, levels: int | None) -> set[int]:
    """The call paths the tree shows: grown from the top, heaviest first, none lighter than min_weight, at most budget (0: all) and levels deep."""
    frontier = [(-weights[kid], kid, 1) for kid in (tree.children[ROOT_NODE] or {}).values()]
    heapq.heapify(frontier)
    chosen: set[int] = set()
    while frontier and (not budget or len(chosen) < budget):
        weight, node, level = heapq.heappop(frontier)
        if -weight < min_weight:
            break
        chosen.add(node)
        if levels is None or level < levels:
            for kid in (tree.children[node] or {}).values():
                heapq.heappush(frontier, (-weights[kid], kid, level + 1))
    return chosen


def call_tree_text(view: View, args: argparse.Namespace) -> list[str]:
    """The view's calling-context tree as indented text, like `uftrace graph`; what is cut is summed up on '...' lines."""
    graph = view.graph
    tree = graph.tree
    weights = path_weights(graph)
    min_weight = whole_weight(graph) * args.node_thres / 100
    levels = None if args.depth is not None else TEXT_TREE_LEVELS
    shown = heaviest_paths(tree, weights, args.max_nodes, min_weight, levels)
    numbers = TreeNumbers(graph, weights, path_on_off(graph) if shows_on_off(graph) else None)
    rows: list[list[str]] = []
    cut_deep = False
    stack = tree_items(numbers, shown, ROOT_NODE, None, False)[::-1]
    further = deeper_hint(view, levels)
    while stack:
        cells, node, indent, level = stack.pop()
        rows.append(cells)
        if node is not None:
            cut_deep |= level == levels and bool(tree.children[node])
            stack.extend(tree_items(numbers, shown, node, indent, level == levels, further)[::-1])
    header = ["sleeps", "waited"] if graph.woken else ["calls", "total", "self"] if graph.timed else ["calls"] if graph.reversed else ["calls", "subtree"]
    if numbers.on_off is not None:
        header = with_on_off(header, 2)
    title = tree_title(graph, args)
    if len(view.nodes) < len(graph.calls):
        title.append(f"the filters chose the {len(view.nodes):,} functions of the tables above; the tree keeps every function of the call paths")
    return [*title, *aligned([*header, "function"], rows), tree_footer(graph, args, len(shown), min_weight, levels if cut_deep else None)]


@dataclass
class TreeNumbers:
    """What the tree's lines print: the view's graph, the weights that order and cut it, and each path's (on CPU, asleep) or None."""

    graph: CallGraph
    weights: list[float]
    on_off: tuple[list[float], list[float]] | None


def deeper_hint(view: View, levels: int | None) -> str | None:
    """The command that shows what a tree cut at `levels` leaves out below its last level: None, `--root F` of the
    function there (what it called); in a reversed tree (--callers/--wakers) the same focus with more levels, since
    --root would show the function's callees and --callers its callers on every path, not on this chain."""
    graph = view.graph
    if levels is None or not graph.reversed:
        return None
    tree = graph.tree
    level = {ROOT_NODE: 0}
    for node in tree.walk():
        if node != ROOT_NODE:
            level[node] = level[tree.parent[node]] + 1
    option = "--wakers" if graph.woken else "--callers"
    return f"{option} {view.focus} --depth {max(level.values()) - 1}"  # the focus is level 1, --depth counts the levels below it


def tree_items(numbers: TreeNumbers, shown: set[int], node: int, indent: str | None, deepest: bool,
               further: str | None = None) -> list[tuple[list[str], int | None, str, int]]:
    """(cells, node, indent of its children, level) for the lines below `node`: its shown children, heaviest first, then one '...' line for the rest.

    indent None: `node` is the root, its children are the top level (no branch drawn).
    deepest: `node` is on the last level shown, all its children are left out; `further`: the command that shows
    them in a reversed tree (deeper_hint), else `--root` of the node.
    """
    graph, weights = numbers.graph, numbers.weights
    tree = graph.tree
    kids = sorted((tree.children[node] or {}).values(), key=lambda kid: (-weights[kid], tree.function[kid] or ""))
    kept = [kid for kid in kids if kid in shown]
    left_out = [kid for kid in kids if kid not in shown]
    branch = "" if indent is None else indent + "+-"
    level = 1 if indent is None else len(indent) // 2 + 2
    items: list[tuple[list[str], int | None, str, int]] = []
    for index, kid in enumerate(kept):
        below = "" if indent is None else indent + ("  " if index == len(kept) - 1 and not left_out else "| ")
        items.append(([*path_numbers_text(numbers, [kid]), branch + (tree.function[kid] or "")], kid, below, level))
    if left_out:
        what = "caller" if graph.reversed and indent is not None else "callee" if indent is not None else "top-level call path"
        deeper = f" (deeper: {further or '--root ' + (tree.function[node] or '')})" if deepest else ""
        items.append(([*path_numbers_text(numbers, left_out), f"{branch}... {plural(len(left_out), 'more ' + what)}{deeper}"], None, "", level))
    return items


def path_numbers_text(numbers: TreeNumbers, nodes: list[int]) -> list[str]:
    """The numbers of one call path, or the sums of several (a '...' line)."""
    graph = numbers.graph
    tree = graph.tree
    calls = f"{sum(tree.calls[node] for node in nodes):,}"
    if graph.woken:
        return [calls, format_us(sum(tree.total_us[node] for node in nodes)) if graph.timed else "?"]
    if graph.timed:
        cells = [calls, format_us(sum(tree.total_us[node] for node in nodes)), format_us(sum(tree.self_us[node] for node in nodes))]
        return cells if numbers.on_off is None else with_on_off(cells, 2, *paths_on_off_text(numbers, nodes))
    return [calls] if graph.reversed else [calls, f"{sum(numbers.weights[node] for node in nodes):,.0f}"]


def paths_on_off_text(numbers: TreeNumbers, nodes: list[int]) -> tuple[str, str]:
    """The on-CPU and switched-out time of call paths, summed ("-": none of them was switched out)."""
    assert numbers.on_off is not None and numbers.graph.sched is not None
    on, off = numbers.on_off
    slept = any(node in numbers.graph.sched.sleeps for node in nodes)
    return format_us(sum(on[node] for node in nodes)), format_us(sum(off[node] for node in nodes)) if slept else "-"


def tree_title(graph: CallGraph, args: argparse.Namespace) -> list[str]:
    order = "total time" if graph.uses_time else "calls" if graph.reversed else "calls in their subtrees"
    if graph.woken:
        names = focus_names(graph)
        return [
            f"Wakers of {names} (--wakers), a reversed tree: {names} at the top, below it the waker's innermost open call, below each line the function that called it",
            f"the numbers are {names}'s sleeps woken through each chain and the time they waited; wakers by {'time waited' if graph.timed else 'sleeps'}",
        ]
    if graph.reversed:
        names = focus_names(graph)
        numbers = "calls, total and self time" if graph.timed else "calls"
        return [
            f"Callers of {names} (--callers), a reversed tree: {names} at the top, below each line the functions that called it",
            f"the numbers are {names}'s {numbers} through each chain of callers; callers by {order}",
        ]
    if args.root:
        return [f"Call tree below {focus_names(graph)} (--root): what it called, on exact call paths; callees by {order}"]
    return [f"Call tree: every call path from the top-level calls of the trace; callees by {order}"]


def tree_footer(graph: CallGraph, args: argparse.Namespace, shown: int, min_weight: float, levels: int | None) -> str:
    paths = graph.tree.live_nodes()
    if shown == paths:
        return f"all {paths:,} call paths shown"
    unit = format_us(min_weight) if graph.uses_time else plural(min_weight, "call")
    reasons = [f"lighter than {unit} (--node-thres {args.node_thres:g}%)"]
    if args.max_nodes and shown >= args.max_nodes:
        reasons.append(f"beyond --max-nodes {args.max_nodes}")
    if levels is not None:
        reasons.append(f"deeper than {levels} levels (--depth)")
    return f"showing {shown:,} of {paths:,} call paths; '...' lines add up the ones left out below a line: {', '.join(reasons)}"


def write_text_report(views: Views, output: str) -> None:
    """.txt and -o -: the summary, the top functions and the call tree of the view, for a terminal."""
    text = "\n".join(text_report(views)) + "\n"
    if output != STDOUT_OUTPUT:
        with atomic_output(output) as tmp, output_errors(output), open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        return
    views.args.report_stream.write(text)
    views.args.report_stream.flush()


# ============================================================================
# Visualize: parse, focus, filter, draw
# ============================================================================


def summarize(view: View, sched: SchedTimes | None) -> list[str]:
    """The summary lines; `sched`: the recording's scheduler numbers, whatever the view (a --wakers tree has none of its own)."""
    stats = view.graph.stats
    lines = [f"time span: {stats.time_span()}"]
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
    if stats.trace_events:
        lines.append(stats.trace_events_text())
    lines.extend(latency_trace_line(found, len(stats.inputs) > 1) for found in stats.latency_traces)
    if stats.unparsed_lines:
        lines.append(
            f"lines not understood: {stats.unparsed_lines:,} (first at {stats.unparsed_example_where}: {stats.unparsed_example!r})"
        )
    if stats.orphan_exits or stats.calls_without_caller:
        lines.append(
            f"incomplete call trees: {stats.orphan_exits:,} exits without their entry, {stats.calls_without_caller:,} calls whose caller was not in the trace"
        )
    if stats.open_calls:
        lines.append(open_calls_text(stats))
    lines.extend(sched_summary_lines(sched, stats))
    lines.extend(view.notes)
    if view.files:
        unknown = sum(1 for name in view.nodes if not view.files.get(name))
        several = sum(1 for name in view.nodes if len(view.files.get(name, [])) > 1)
        lines.append(f"source files: {unknown:,} of {len(view.nodes):,} functions have no file in the map, {several:,} names map to several files")
    return lines


def latency_trace_line(found: dict, name_input: bool) -> str:
    """"latency trace (irqsoff): 26 us on CPU#0, task swapper/0-0, started at f, ended at g (4 of 4 entries)", or what
    a trace without the latency header tells: how long its events span."""
    where = f" in {found['input']}" if name_input else ""
    if found["latency_us"] is None:
        span = f"; its events span {found['span_us']:,.0f} us" if found["span_us"] is not None else ""
        return f"latency trace ({found['tracer']}){where}: the latency is not printed (read without latency-format){span}"
    parts = [f"{found['latency_us']:,} us on CPU#{found['cpu']}"]
    if found["task"] is not None:
        parts.append(f"task {found['task']}-{found['pid']}")
    parts.extend(f"{point} at {found[key]}" for point, key in (("started", "started_at"), ("ended", "ended_at")) if found[key])
    lost = found["written"] - found["entries"]
    kept = f"{found['entries']:,} of {found['written']:,} entries" + (f": {lost:,} overwritten" if lost > 0 else "")
    return f"latency trace ({found['tracer']}){where}: {', '.join(parts)} ({kept})"


def check_wakers_arguments(args: argparse.Namespace) -> None:
    """--wakers shows this recording's sleeps, not a comparison."""
    if args.wakers and args.baseline:
        raise UserError("--wakers shows this recording's wakeups; --baseline compares calls: use one of them")


def wakeup_summary(views: Views) -> list[str]:
    """The summary's "woken by" line (where the trace has scheduler events)."""
    line = woken_by_line(views.wakeups, views.sched) if views.sched is not None and views.wakeups is not None else None
    return [line] if line else []


def sched_summary_lines(sched: SchedTimes | None, stats: TraceStats) -> list[str]:
    """"sleeps: 177, 649 ms switched out (S 640 ms, R 9 ms)", and what the count leaves out; the recording option where there are no events."""
    if sched is None:
        return [NO_SCHED_EVENTS] if "function_graph" in stats.formats else []
    if not sched.sleep_count and "function_graph" not in stats.formats:
        return [f"sleeps: {sched.untraced_sleeps:,} switch-outs, none of them inside a call: the function tracer records no open calls,"
                " record function_graph for the on/off-CPU time of every call path"]
    if sched.timed:
        states = ", ".join(f"{state} {format_us(value)}" for state, value in sorted(sched.state_us.items(), key=lambda kv: -kv[1]))
        line = f"sleeps: {sched.sleep_count:,}, {format_us(sched.sleep_total_us)} switched out" + (f" ({states})" if states else "")
    else:
        states = ", ".join(f"{state} {count:,}" for state, count in sorted(sched.state_sleeps.items(), key=lambda kv: -kv[1]))
        line = f"sleeps: {sched.sleep_count:,}" + (f" ({states})" if states else "") + ", time switched out unknown: the trace has no timestamps (record with -O funcgraph-abstime, or a trace.dat)"
    notes = []
    if sched.open_sleeps:
        notes.append(f"{sched.open_sleeps:,} still switched out at the end, counted without time")
    if sched.untraced_sleeps:
        notes.append(f"{sched.untraced_sleeps:,} switch-outs outside every traced call not counted")
    if sched.unmapped_frames:
        notes.append(f"{sched.unmapped_frames:,} open calls whose call path is not in the call tree left out")
    if sched.switch_ins_unseen:
        notes.append(f"{sched.switch_ins_unseen:,} sleeps whose switch-in is not in the trace (lost events) not counted")
    return [line + ("; " + "; ".join(notes) if notes else "")]


def view_request(args: argparse.Namespace, symbols: SymbolMap | None) -> ViewRequest:
    return ViewRequest(
        symbols=symbols,
        path_filters=split_names([args.filter_filepath] if args.filter_filepath else None),
        module_filters=split_names(args.filter_module),
        min_calls=args.filter_execution_no,
        roots=split_names(args.root),
        callers=split_names(args.callers),
        depth=args.depth,
        wakers=split_names(args.wakers),
        grouping=Grouping(args.group_by.kind, args.group_by.depth, symbols) if args.group_by else None,
    )


def heat_metric(requested: str | None, graph: CallGraph) -> str:
    if requested is None:
        return "self" if graph.timed else "calls"
    check_sched_option("--heat", requested, graph)
    if requested != "calls" and not graph.timed:
        raise UserError(f"--heat {requested} needs durations, and this trace has none (function tracer, or funcgraph-duration off): use --heat calls")
    return requested


def baseline_values(args: argparse.Namespace, request: ViewRequest, metric: str) -> tuple[CallGraph | None, dict[str, float] | None]:
    """The baseline recording's graph, seen through the same focus, and its heat values per function."""
    if not args.baseline:
        return None, None
    graph = parse_traces(args.baseline)
    say(f"baseline parsed: {graph.stats.events:,} events")
    if metric != "calls" and not graph.timed:
        raise UserError(f"the baseline has no durations, so --heat {metric} cannot compare: use --heat calls")
    baseline, _, _ = focused_graph(graph, ViewRequest(symbols=request.symbols, roots=request.roots, callers=request.callers, depth=request.depth,
                                                      grouping=request.grouping))
    return baseline, {name: metric_value(baseline, name, metric) for name in baseline.calls}


def stop_on_sigterm() -> None:
    """SIGTERM ends visualize like Ctrl-C: outputs are not left half-written, a layout child is killed."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@dataclass
class Views:
    """Everything an output writer may need: the view, its heat, the baseline, the drawing options."""

    view: View
    heat: Heat
    baseline: CallGraph | None
    args: argparse.Namespace
    have_map: bool
    errors: list[dict] | None = None  # errors_report(), with --errors
    wakeups: list[WakeRow] | None = None  # who woke whom in the recording (its --time-window); None: no scheduler events
    sched: SchedTimes | None = None  # the recording's (its --time-window's), whatever the focus


def draw_call_graph(views: Views, output: str, source_links: bool = True) -> None:
    """.pdf .svg .png .dot: the connected, heat-coloured call graph; in an .svg, a box links to its function's definition line."""
    args = views.args
    wakeups = None if args.no_wakeups or views.view.graph.group_by else views.wakeups  # wakers are functions: no group-level edges
    drawing = prune_for_drawing(views.view, args.max_nodes, args.max_edges, args.node_thres, args.edge_thres, wakeups)
    add_wake_edges(drawing, views)
    if args.show_inlined:
        drawing.inlined = {name: views.view.inlines[name][0] for name in drawing.nodes if name in views.view.inlines}
    if args.clusters:
        drawing.clusters = source_clusters(views.view, drawing.nodes)
    if drawing.left_out_nodes or drawing.left_out_edges:
        say(
            f"drawing: {len(drawing.nodes):,} {boxes_noun(views.view.graph)} and {len(drawing.edges):,} edges grown from the entry points{woken_growth(drawing)};"
            f" left out {drawing.left_out_nodes:,} {boxes_noun(views.view.graph)} and {drawing.left_out_edges:,} edges"
            f" (lower --node-thres/--edge-thres or raise --max-nodes/--max-edges to see more{narrowing_hint(views)})"
        )
    links = node_source_links(views, drawing.nodes) if source_links and output.endswith(".svg") else {}
    render_graph(views.view, drawing, output, views.heat, views.have_map, links)


def node_source_links(views: Views, names: list[str]) -> dict[str, str]:
    """The .svg's box links, as the explorer's source links (--source-url, --source-dir, else elixir for the recording's
    kernel, none when its version is unknown); a function with several definitions gets none: which one is unknown."""
    source = explorer_source(views)
    if not source["template"]:
        return {}
    definitions = {name: views.view.files.get(name, []) for name in names}
    return {name: source_url(source["template"], source["version"], found[0]) for name, found in definitions.items() if len(found) == 1}


def source_url(template: str, version: str | None, definition: str) -> str:
    """{path} {line} {version} filled in as KM.sourceLinks does; no line known: the line's part goes with its lead-in (#L{line}, ?line={line})."""
    parts = definition_parts(definition)
    if parts.line is None:
        template = re.sub(r"[#?&;:][A-Za-z_]*=?\{line\}", "", template).replace("{line}", "")
    return template.replace("{path}", parts.path).replace("{line}", str(parts.line)).replace("{version}", version or "")


def add_wake_edges(drawing: Drawing, views: Views) -> None:
    """The dashed "wakes" edges whose two boxes are drawn, and the caption's line on them (none in a --callers/--wakers tree)."""
    edges = wake_edges(views.wakeups or [])
    if not edges or views.view.graph.reversed or views.view.graph.group_by:  # wakers are functions, the boxes groups
        return
    if views.args.no_wakeups:
        drawing.wakes_note = f"{plural(len(edges), 'wakeup edge')} hidden (--no-wakeups)"
        return
    drawn = set(drawing.nodes)
    drawing.wakes = {edge: value for edge, value in edges.items() if edge[0] in drawn and edge[1] in drawn}
    left_out = len(edges) - len(drawing.wakes)
    drawing.wakes_note = (
        "dashed blue edges: A wakes B = the waker's innermost traced function that is not wakeup machinery (A) ended sleeps of the"
        " sleeper's innermost traced function that is not sleep machinery (B): sleeps and time waited, whatever the focus"
        + (f"; {left_out:,} of {len(edges):,} such edges left out, one of their boxes is not drawn (the JSON's wakeups has all)" if left_out else "")
    )


def narrowing_hint(views: Views) -> str:
    """What else shows less: --root F for a whole recording; --depth N for a focus that has no depth yet."""
    if not views.view.focus:
        return ", --root F to focus"
    return "" if views.args.depth is not None else ", --depth N to see fewer levels"


def write_graph_json(views: Views, output: str) -> None:
    """.json: every node, edge and call path of the view, for scripts; `wakeups` (null without scheduler events)."""
    extra: dict[str, object] = {"errors": views.errors} if views.errors is not None else {}
    extra["wakeups"] = wakeups_json(views.wakeups) if views.wakeups is not None else None
    write_json(views.view, output, views.heat, views.baseline, extra)


# Output writers by the end of the file name; the first match wins (so .trace.json before .json).
OUTPUT_WRITERS: list[tuple[str, Callable[[Views, str], None]]] = [
    (".trace.json", write_timeline),
    (".json", write_graph_json),
    (".folded", write_folded),
    (".pdf", draw_call_graph),
    (".svg", draw_call_graph),
    (".png", draw_call_graph),
    (".dot", draw_call_graph),
    (".flame.html", write_flame_html),
    (".html", write_explorer_html),
    (".txt", write_text_report),
]


OUTPUT_FORMATS = [ending[1:] for ending, _ in OUTPUT_WRITERS]  # --output-format's names: the endings without their dot
BINARY_FORMATS = ("pdf", "png")  # never on standard output: bytes for a file, not for a terminal or a text pipe
STDOUT_DEFAULT_FORMAT = "txt"  # -o - alone: the text report, as before --output-format


def output_writer(path: str) -> Callable[[Views, str], None]:
    if path == STDOUT_OUTPUT:
        return write_text_report
    lowered = path.lower()
    for ending, writer in OUTPUT_WRITERS:
        if lowered.endswith(ending):
            return writer
    raise UserError(f"cannot tell the output format of {path}: use {', '.join(ending for ending, _ in OUTPUT_WRITERS)}, or - for standard output")


def stdout_format(args: argparse.Namespace) -> str | None:
    """The format -o - writes (--output-format, else the text report); None for a file, whose ending names its format."""
    if args.output != STDOUT_OUTPUT:
        if args.output_format:
            raise UserError("--output-format is for -o - (standard output): give -o -, or a file name whose ending is the format")
        return None
    chosen = args.output_format or STDOUT_DEFAULT_FORMAT
    if chosen in BINARY_FORMATS:
        raise UserError(f"-o - --output-format {chosen}: {chosen.upper()} is binary, not for standard output: give a file name ending in .{chosen}")
    return chosen


def write_output(views: Views, output: str, chosen: str | None) -> None:
    """The -o output: a file by its ending, or standard output in the chosen format (the text report is written there
    directly; the others write a temporary file named with their ending, copied out whole)."""
    if chosen is None or chosen == STDOUT_DEFAULT_FORMAT:
        output_writer(output)(views, output)
        return
    with stdout_output("." + chosen, views.args.report_stream) as path:
        output_writer(path)(views, path)


def check_distinct_inputs(paths: list[str], option: str) -> None:
    """One file named twice (also by another path or a symlink) would be counted twice: refused."""
    seen: dict[object, str] = {}
    for path in paths:
        identity = file_identity(path)
        if identity in seen:
            raise UserError(f"{option} {seen[identity]} and {option} {path} are the same file, which would be counted twice: give it once")
        seen[identity] = path


def check_chart_name(option: str, path: str) -> None:
    """Charts are PNG: a name with another ending would hold PNG bytes under a misleading name."""
    if not path.lower().endswith(".png"):
        raise UserError(f"{option} {path}: the chart is a PNG image: give a file name ending in .png")


DEFAULT_GRAPH_OUTPUT = "kernel-magnifier.pdf"


def choose_default_outputs(args: argparse.Namespace) -> None:
    """-o defaults to the call graph PDF, --chart to the function chart (none beside a text report); `--latency F` alone draws only its histogram (-o stays None)."""
    if args.latency and args.output is None and args.chart is None:
        args.chart = ""
        return
    args.output = DEFAULT_GRAPH_OUTPUT if args.output is None else args.output
    if args.chart is None:  # none beside a text report or standard output: a PNG nobody asked for
        args.chart = "" if args.output == STDOUT_OUTPUT or output_writer(args.output) is write_text_report else DEFAULT_CHART


def windowed_graph(graph: CallGraph, args: argparse.Namespace, window: tuple[float, float]) -> tuple[CallGraph, str]:
    """The graph of the calls that start in --time-window, and the note that says what that means."""
    stats = graph.stats
    if stats.first_us is None:
        raise UserError(
            f"--time-window {args.time_window}: this trace has no timestamps, so it cannot be cut in time:"
            " record function_graph with -O funcgraph-abstime, or the function tracer, or record a trace.dat (record's default)"
        )
    selection = selection_of(args)
    found = window_calls(IntervalReader(selection, unexited=True).read(args.input or ["kernel-magnifier.data"]), window)
    if not found.calls:  # exits without their entry alone: nothing to draw either
        tasks = " (in the selected tasks and CPUs)" if selection else ""
        raise UserError(f"no call starts in --time-window {args.time_window}{tasks}: the trace spans {stats.time_span()}")
    note = (
        f"--time-window {window[0] / 1e6:.6f}-{window[1] / 1e6:.6f} s: the {found.calls:,} calls that start in it, whole"
        f" (callees that start after its end are left out, their time stays in their caller's self time);"
        f" {found.caller_outside:,} whose caller did not start in it (or is not in the trace) are top-level paths;"
        f" {found.unexited:,} without an exit in the trace count without time,"
        f" {found.entry_unseen:,} exits whose entry is not in the trace (lost) do not count, as without a window"
    )
    return derive_graph(found.tree, stats, graph.modules), note


def run_visualize(args: argparse.Namespace) -> None:
    """visualize; with -o - the output alone goes to standard output, every message to stderr."""
    choose_default_outputs(args)
    args.report_stream = sys.stdout
    if args.output != STDOUT_OUTPUT:
        visualize_outputs(args)
        return
    with contextlib.redirect_stdout(sys.stderr):
        visualize_outputs(args)


def visualize_outputs(args: argparse.Namespace) -> None:
    global jobs_wanted
    stop_on_sigterm()
    jobs_wanted = min(args.jobs, MAX_JOBS) if args.jobs else None
    inputs = args.input or ["kernel-magnifier.data"]
    writer = output_writer(args.output) if args.output is not None else None
    chosen = stdout_format(args)
    check_distinct_inputs(inputs, "-i")
    check_distinct_inputs(args.baseline or [], "--baseline")
    window = parse_window(args.time_window)
    if window and args.baseline:
        raise UserError("--time-window cuts this recording's trace time, which means nothing in the --baseline recording: compare whole recordings")
    path_filters = split_names([args.filter_filepath] if args.filter_filepath else None)
    needs_map = ("--filter-filepath" if path_filters else f"--group-by {args.group_by.kind}" if args.group_by and args.group_by.kind != "module"
                 else "--clusters" if args.clusters else "")
    symbols = load_symbols(args.symbol_map, required=needs_map, explicit=args.symbol_map_given)
    outputs = [output for output in [args.output] if output not in (None, STDOUT_OUTPUT)] + ([args.chart] if args.chart else []) + ([args.latency_chart] if args.latency else [])
    check_outputs(outputs, inputs + (args.baseline or []) + ([symbols.path] if symbols else []))
    if args.chart:
        check_chart_name("--chart", args.chart)
    if args.latency:
        check_chart_name("--latency-chart", args.latency_chart)
    say("Visualization mode - now generating visualization...")
    if writer is None:
        report_latency(latency_of(args, symbols), args.latency_chart)
        return
    selection = selection_of(args)
    graph = parse_traces(inputs, selection)
    say(f"parsing completed, found {graph.stats.events} events")
    say(f"call paths: {graph.tree.live_nodes():,} distinct, {len(graph.calls):,} functions")
    if args.errors and RETURN_VALUES_FORMAT not in graph.stats.formats:
        raise UserError(NO_RETURN_VALUES)
    check_wakers_arguments(args)
    window_note = ""
    if window:
        graph, window_note = windowed_graph(graph, args, window)
    attach_sched(graph, sched_times(graph, inputs, selection, window))
    wakeups = wakeup_rows(graph) if graph.sched is not None else None  # the whole recording's (or window's), whatever the focus
    sched = graph.sched
    request = view_request(args, symbols)
    view = build_view(graph, request)
    if window_note:
        view.notes.insert(0, window_note)
    if not view.nodes:
        raise UserError("the filters left no function to show: " + "; ".join(view.notes))
    metric = heat_metric(args.heat, view.graph)
    baseline, baseline_heat = baseline_values(args, request, metric)
    views = Views(view, Heat.of_view(view, metric, baseline_heat, args.baseline), baseline, args, symbols is not None, wakeups=wakeups, sched=sched)
    for line in summarize(view, views.sched) + wakeup_summary(views):
        say(line)
    if args.errors:
        views.errors = errors_report(graph.tree)
        for line in errors_lines(views.errors):
            say(line)
    if args.chart:
        if args.chart_by == "function":
            render_chart(view, args.chart, args.chart_top, views.heat, window_scope(args, graph.stats))
        else:
            render_task_chart(args, args.chart, args.chart_by, graph.stats)
        say(f"{args.chart} generated")
    if args.latency:
        report_latency(latency_of(args, symbols), args.latency_chart)
    write_output(views, args.output, chosen)
    if chosen:  # the text report's words as before --output-format (the README shows them)
        say("the report is on standard output" if chosen == STDOUT_DEFAULT_FORMAT else f"the {chosen} output is on standard output")
    else:
        say(f"{args.output} generated")


def load_symbols(path: str, required: str, explicit: bool) -> SymbolMap | None:
    """The symbol map; `required`: the option that needs it ("" none)."""
    if not os.path.exists(path):
        if required:
            raise UserError(
                f"{required} needs a symbol map, and {path} does not exist: create it with"
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
    """A stop signal arrived before recording began, or while compressing: nothing written, state given back."""

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
    if not os.path.exists(path) and name in ("funcgraph-retval", "funcgraph-retval-hex"):
        raise UserError(
            f"-O {option}: this kernel was built without CONFIG_FUNCTION_GRAPH_RETVAL (needs 6.5 or later built with it):"
            " return values cannot be recorded here"
        )
    if not os.path.exists(path) and name == "funcgraph-retaddr":
        raise UserError(
            f"-O {option}: this kernel was built without CONFIG_FUNCTION_GRAPH_RETADDR (needs 6.13 or later built with it; no"
            " Debian kernel up to 7.3 sets it): call sites (return addresses) cannot be recorded here"
        )
    if not os.path.exists(path):
        available = sorted(os.listdir(options_dir))
        raise UserError(f"-O {option}: no such tracer option; this kernel has: {' '.join(available)}")
    return path, value


# --- trace events beside the calls (-e, --no-sched) ----------------------------

# What ends a wait and what a wait is: with function_graph, recorded unless --no-sched
DEFAULT_SCHED_EVENTS = ("sched:sched_switch", "sched:sched_waking", "sched:sched_wakeup", "sched:sched_wakeup_new")


def available_events(tracing: str) -> list[str]:
    """`system:event` names this buffer can enable: its events/SYSTEM/EVENT/enable files (an instance has no
    available_events file on 6.1; ftrace's own events have no enable file); none without CONFIG_EVENT_TRACING."""
    events = os.path.join(tracing, "events")
    found = []
    with contextlib.suppress(OSError):
        for system in sorted(os.listdir(events)):
            if os.path.isdir(os.path.join(events, system)):
                found += [f"{system}:{name}" for name in sorted(os.listdir(os.path.join(events, system))) if os.path.exists(os.path.join(events, system, name, "enable"))]
    return found


def resolve_event(name: str, available: list[str]) -> list[str]:
    """trace-cmd's spellings: `sched:sched_switch`, `sched_switch` (any system), `sched` (a whole system); globs allowed."""
    system, colon, event = name.partition(":")
    if colon:
        return [full for full in available if fnmatch.fnmatchcase(full, f"{system or '*'}:{event or '*'}")]
    systems = [full for full in available if fnmatch.fnmatchcase(full.partition(":")[0], name)]
    return systems or [full for full in available if fnmatch.fnmatchcase(full.partition(":")[2], name)]


def unknown_event_message(name: str, available: list[str]) -> str:
    """One line: the name, and the closest names this kernel has (events, then systems)."""
    systems = sorted({full.partition(":")[0] for full in available})
    events = sorted({full.partition(":")[2] for full in available})
    candidates = available if ":" in name else [*events, *systems]
    closest = difflib.get_close_matches(name, candidates, n=4, cutoff=0.6)
    hint = f"; closest: {', '.join(closest)}" if closest else ""
    if not available:
        return f"-e {shown(name)}: this kernel has no trace events (no tracefs events/ directory: built without CONFIG_EVENT_TRACING?)"
    return f"-e {shown(name)}: this kernel has no such trace event or event system{hint} (available_events lists the {len(available):,} it has)"


def events_to_record(args: argparse.Namespace, tracing: str) -> list[str]:
    """-e names resolved in this buffer's available_events, then the scheduler events function_graph records by default."""
    requested = split_names(args.events)
    available = available_events(tracing)
    chosen: list[str] = []
    for name in requested:
        found = resolve_event(name, available)
        if not found:
            raise UserError(unknown_event_message(name, available))
        chosen += [event for event in found if event not in chosen]
    if args.tracer == "function_graph" and not args.no_sched:
        defaults = [event for event in DEFAULT_SCHED_EVENTS if event in available]
        if not defaults:
            warn("this kernel has no sched events (CONFIG_EVENT_TRACING?): recording the calls only, without who sleeps and who wakes")
        chosen += [event for event in defaults if event not in chosen]
    return chosen


def enable_events(events: list[str], tracing: str, settings: BorrowedSettings) -> None:
    """Each event's own enable file (a system's `enable` reads back X when mixed, which cannot be written back)."""
    for full in events:
        system, _, event = full.partition(":")
        settings.set(os.path.join(tracing, "events", system, event, "enable"), "1")


def enabled_events(tracing: str, chosen: list[str]) -> list[str]:
    """Every event this buffer records: ours as chosen, then any someone else had enabled here (set_event)."""
    try:
        listed = [line.strip() for line in read_tracefs(os.path.join(tracing, "set_event")).splitlines() if ":" in line]
    except OSError:
        listed = []
    return chosen + [event for event in listed if event not in chosen]


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
    while recording they end it early with the data kept, while restoring they wait,
    while compressing (tracefs already given back) they discard the recording."""

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
        if self.phase == "compressing":
            self.phase = "aborting"
            raise RecordInterrupted(f"{self.received} while compressing: the recording was discarded, any older file of that name left as it was")

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


def data_file_header(args: argparse.Namespace, tracing: str, options: list[str], events: list[str], command: list[str]) -> list[tuple[str, object]]:
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
        ("events", " ".join(events)),
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
    top: str = ""
    drain_seconds: float = 0.0
    compression: str = ""  # a version 7 trace.dat's: with what, how long
    events: list[str] = field(default_factory=list)  # trace events enabled in the buffer (system:event), ours and any found enabled


def run_record(args: argparse.Namespace) -> None:
    command = args.command_argv
    check_record_arguments(args, command)
    place = find_tracefs()
    try:
        with take_record_lock() as _lock, StopSignals() as stop, contextlib.ExitStack() as held:  # held: a trace.dat's spooled pages
            recording = record_with_borrowed_state(args, command, place.top, stop, held)
    finally:
        unmount_tracefs(place)
    report_recording(args, recording)


def check_record_arguments(args: argparse.Namespace, command: list[str]) -> None:
    if args.record_time is not None and args.record_time <= 0:
        raise UserError("--record-time must be more than 0 seconds")
    select_cpus(args)
    if args.format != "text" and args.output.endswith((".gz", ".xz")):
        how = "drop the ending: a trace.dat compresses its pages itself" if args.format == "trace.dat" else "compress it afterwards with xz: visualize reads .xz"
        raise UserError(f"-o {args.output}: only --format text is compressed while recording ({how})")
    if os.geteuid() != 0:
        raise UserError("record drives the kernel's tracefs and needs root: run it with sudo")
    for pid in args.pid or []:
        if not os.path.exists(f"/proc/{pid}"):
            raise UserError(f"--pid {pid}: no such process")
    if args.pid and command:
        raise UserError("--pid and -- COMMAND exclude each other: record either a running process or a new command")
    check_writable(args.output)


def record_with_borrowed_state(args: argparse.Namespace, command: list[str], top: str, stop: StopSignals, held: contextlib.ExitStack) -> Recording:
    available = read_tracefs(os.path.join(top, "available_tracers")).split()
    if args.tracer not in available:
        hint = "; try --tracer function" if args.tracer == "function_graph" and "function" in available else ""
        raise UserError(f"this kernel has no {args.tracer} tracer (available: {' '.join(available)}){hint}")
    recording = Recording(top=top)
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
        pages = record_into_file(args, recording, settings, traced, stop, command, held)
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
    if pages is not None:  # a trace.dat: compressed now that tracefs is given back
        write_data_file(args, recording, lambda tmp: write_recorded_trace_dat(tmp, args, recording, pages, stop))
    return recording


def record_into_file(
    args: argparse.Namespace, recording: Recording, settings: BorrowedSettings, traced: TracedCommand | None, stop: StopSignals, command: list[str],
    held: contextlib.ExitStack,
) -> RecordedPages | None:
    """Text is written as it is read; a trace.dat's pages are spooled and returned, to be written when tracefs is given back."""
    options = configure_tracing(args, recording, settings, traced)
    header = [*data_file_header(args, recording.tracing, options, recording.events, command), ("self-excluded", "yes" if recording.self_excluded else "no")]
    if args.format != "text":
        return record_trace_dat(args, recording, settings, header, traced, stop, held)
    write_data_file(args, recording, lambda tmp: record_text(tmp, args, recording, header, traced, stop))
    return None


def write_data_file(args: argparse.Namespace, recording: Recording, write: Callable[[str], None]) -> None:
    replacing = os.path.exists(args.output)
    with atomic_output(args.output, keep_old=True) as tmp:  # an older FILE becomes FILE.old, as perf does
        write(tmp)
    recording.old_file = args.output + ".old" if replacing else None
    give_to_sudo_user(args.output)
    recording.size = os.path.getsize(args.output)


def record_text(tmp: str, args: argparse.Namespace, recording: Recording, header: list[tuple[str, object]], traced: TracedCommand | None, stop: StopSignals) -> None:
    """trace_pipe as the kernel formats it, between a `# key: value` header and footer."""
    output = DataFile(tmp, args.output)
    try:
        for key, value in header:
            output.comment(key, value)
        fd = os.open(os.path.join(recording.tracing, "trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
        try:
            stream_trace(args, recording, TextSource(fd, output), traced, stop)
        finally:
            os.close(fd)
        write_footer(output, recording)
    except BaseException:
        output.close(quietly=True)
        raise
    output.close()


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

    events = events_to_record(args, tracing)  # an unknown -e name is refused before anything is touched
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
    enable_events(events, tracing, settings)  # in the tracer's own buffer, not restricted to --pid: the wakers are other tasks
    recording.events = enabled_events(tracing, events)
    write_tracefs(path("trace"), "")  # start from an empty buffer
    return options


class TextSource:
    """trace_pipe: text, read as it comes (the kernel formats every event in the reader's context)."""

    def __init__(self, fd: int, output: DataFile) -> None:
        self.fds = [fd]
        self.output = output

    def written(self) -> int:
        return self.output.bytes_in

    def pump(self, until: float) -> None:
        read_available(self.fds[0], self.output, until)

    def flush(self, until: float) -> None:
        read_available(self.fds[0], self.output, until)


def stream_trace(args: argparse.Namespace, recording: Recording, source: TextSource | PageSource, traced: TracedCommand | None, stop: StopSignals) -> None:
    """Non-blocking reads that never run past the deadline; after tracing stops, drain what the kernel still holds."""
    tracing = recording.tracing
    limit = args.record_time if args.record_time is not None else (None if traced else DEFAULT_RECORD_SECONDS)
    announce_recording(args, limit, traced)
    write_tracefs(os.path.join(tracing, "tracing_on"), "1")
    started = time.monotonic()
    stop.phase = "recording"
    if traced:
        traced.start()
    recording.stopped_by = read_until_stopped(source, started, limit, traced, args.pid, stop, tracing)
    write_tracefs(os.path.join(tracing, "tracing_on"), "0")
    recording.seconds = time.monotonic() - started
    drained = time.monotonic()
    drain(source, stop)
    recording.drain_seconds = time.monotonic() - drained
    recording.stats = kernel_cpu_stats(tracing)


def read_until_stopped(
    source: TextSource | PageSource, started: float, limit: float | None, traced: TracedCommand | None, pids: list[int] | None, stop: StopSignals, tracing: str
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
            select.select(source.fds, [], [], max(0.0, min(0.1, slice_end - now)))
            source.pump(until=slice_end)
            if progress.enabled and time.monotonic() >= next_stats:
                next_stats = time.monotonic() + 1.0
                show_record_progress(progress, time.monotonic() - started, limit, source.written(), tracing)
    finally:
        progress.close()


def show_record_progress(progress: Progress, elapsed: float, limit: float | None, written: int, tracing: str) -> None:
    lost = sum(lost_in(c) for c in kernel_cpu_stats(tracing).values())
    limit_text = f"limit {limit:.0f} s, " if limit else ""
    progress.update(written, f"{limit_text}{format_size(written / max(elapsed, 0.001))}/s, lost so far {lost:,}")


def drain(source: TextSource | PageSource, stop: StopSignals) -> None:
    """Everything the kernel still holds; a further stop signal cuts the drain short (what is left shows as entries)."""
    progress = Progress("reading what the kernel still holds", None)
    signals_before = stop.count
    try:
        while stop.count == signals_before:
            before = source.written()
            source.flush(until=time.monotonic() + 0.5)
            if source.written() == before:
                return
            progress.update(source.written())
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


# --- the binary recording: ring-buffer pages into a trace.dat ------------------
#
# Each CPU's per_cpu/cpuN/trace_pipe_raw hands out the ring buffer's own pages.
# While tracing runs they are spliced (no copy through Python) into a pipe and on
# into an unlinked temporary file: splice gives whole pages only, the ones the
# kernel has finished writing, so no half-empty page is taken from under the
# writer. When tracing stops, read() takes what is left, the last partial page
# of each CPU included. Once tracefs is given back, the file is assembled as
# trace-cmd writes it, so that trace-cmd and KernelShark open it: by default file
# version 7 (man 5 trace-cmd.dat.v7), each metadata section compressed whole and
# each CPU's pages in compressed chunks of ten pages, the options last; with
# --format trace.dat-v6, version 6 (man 5 trace-cmd.dat.v6), uncompressed: the
# kernel's descriptions of its pages and events, kallsyms, printk formats, task
# names, options, then each CPU's pages aligned to a page.

TRACE_DAT_FILE_VERSION = 6
CHUNK_PAGES = 10  # pages compressed together, as trace-cmd does
ZLIB_LEVEL = 1  # function_graph pages, 10-page chunks: level 1 3.1x at 136 MB/s, 6 3.4x at 20 MB/s, 9 (trace-cmd's) 3.5x at 3.5 MB/s
SECTION_COMPRESSED = 1  # a v7 section header's flag
SPLICE_BYTES = 1 << 20
SAVED_CMDLINES_WANTED = 8192  # the kernel keeps 128 task names by default: too few for a busy machine


class PageSpool:
    """One CPU's pages: trace_pipe_raw -> pipe -> an unlinked temporary file beside the output."""

    def __init__(self, tracing: str, cpu: int, directory: str, page_size: int) -> None:
        self.cpu = cpu
        self.page_size = page_size
        self.size = 0
        self.file = tempfile.TemporaryFile(dir=directory)  # unlinked: nothing is left behind on any way out
        self.fd = os.open(os.path.join(tracing, "per_cpu", f"cpu{cpu}", "trace_pipe_raw"), os.O_RDONLY | os.O_NONBLOCK)
        self.pipe = os.pipe()
        self.splice_to_file = True
        with contextlib.suppress(OSError, AttributeError):
            import fcntl

            fcntl.fcntl(self.pipe[1], fcntl.F_SETPIPE_SZ, SPLICE_BYTES)
        self.splice_from_kernel = hasattr(os, "splice")

    def pump(self, until: float) -> None:
        """Whole pages the kernel has finished, until there are none or the time slice ends."""
        while self.splice_from_kernel and time.monotonic() < until:
            try:
                moved = os.splice(self.fd, self.pipe[1], SPLICE_BYTES, flags=os.SPLICE_F_NONBLOCK)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            except OSError as err:
                if err.errno != errno.EINVAL:
                    raise
                self.splice_from_kernel = False  # a kernel that cannot splice this file: read() pages instead
                return
            if not moved:
                return
            self.pipe_to_file(moved)
        if not self.splice_from_kernel:
            self.read_pages(until)

    def flush(self, until: float) -> None:
        """After tracing stopped: the whole pages, then the partial ones only read() hands out."""
        self.pump(until)
        self.read_pages(until)

    def read_pages(self, until: float) -> None:
        while time.monotonic() < until:
            try:
                page = os.read(self.fd, self.page_size)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            if not page:
                return
            self.write(page.ljust(self.page_size, b"\0"))

    def pipe_to_file(self, size: int) -> None:
        while size:
            if self.splice_to_file:
                try:
                    moved = os.splice(self.pipe[0], self.file.fileno(), size)
                except OSError as err:
                    if err.errno != errno.EINVAL:
                        raise
                    self.splice_to_file = False  # a file system without splice_write: copy through memory
                    continue
                self.size += moved
            else:
                data = os.read(self.pipe[0], size)
                self.write(data)
                moved = len(data)
            size -= moved

    def write(self, data: bytes) -> None:
        os.lseek(self.file.fileno(), self.size, os.SEEK_SET)
        written = 0
        while written < len(data):
            written += os.write(self.file.fileno(), data[written:])
        self.size += len(data)

    def stop_reading(self) -> None:
        """Close the kernel's file and the pipe (a tracefs instance is removed only when none of its files is open); the pages stay."""
        for fd in (self.fd, *self.pipe):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fd, self.pipe = -1, (-1, -1)

    def close(self) -> None:
        self.stop_reading()
        self.file.close()


class PageSource:
    """Every recorded CPU's pages, pumped in turn; errors while writing them are one line naming the output."""

    def __init__(self, spools: list[PageSpool], output: str) -> None:
        self.spools = spools
        self.fds = [spool.fd for spool in spools]
        self.output = output

    def written(self) -> int:
        return sum(spool.size for spool in self.spools)

    def pump(self, until: float) -> None:
        with self.write_errors():
            for spool in self.spools:
                spool.pump(until)

    def flush(self, until: float) -> None:
        with self.write_errors():
            for spool in self.spools:
                spool.flush(until)

    def write_errors(self) -> contextlib.AbstractContextManager[None]:
        return recording_write_errors(self.output)


@contextlib.contextmanager
def recording_write_errors(output: str) -> Iterator[None]:
    """A full disk (or any error writing the recording) is one line naming the file; what was read is discarded."""
    try:
        yield
    except OSError as err:
        if err.filename:
            raise
        raise UserError(f"cannot write {output}: {err.strerror}; the recording was discarded") from None


def ring_page_size(header_page: str) -> int:
    """The ring buffer's page (sub-buffer) size: where header_page's data field ends."""
    for declaration, offset, size, _ in FORMAT_FIELD.findall(header_page):
        if declaration.split() and declaration.split()[-1] == "data":
            return int(offset) + int(size)
    return os.sysconf("SC_PAGE_SIZE")


def recorded_cpus(args: argparse.Namespace, tracing: str) -> list[int]:
    """The online CPUs with a ring buffer (per_cpu/cpuN), or only those of --cpu/--cpumask."""
    online = set(online_cpus())
    cpus = sorted(int(name[3:]) for name in os.listdir(os.path.join(tracing, "per_cpu")) if name[3:].isdigit() and int(name[3:]) in online)
    if args.cpumask:
        cpus = [cpu for cpu in cpus if args.cpumask_value >> cpu & 1]
    return cpus


@dataclass
class RecordedPages:
    """A trace.dat once tracing stopped: its metadata, and each CPU's pages in its spool (closed by the caller's ExitStack)."""

    parts: TraceDatParts
    spools: dict[int, PageSpool]


def record_trace_dat(
    args: argparse.Namespace, recording: Recording, settings: BorrowedSettings, header: list[tuple[str, object]],
    traced: TracedCommand | None, stop: StopSignals, held: contextlib.ExitStack,
) -> RecordedPages:
    top = recording.top or recording.tracing
    cmdlines_size = os.path.join(top, "saved_cmdlines_size")
    with contextlib.suppress(OSError, ValueError):
        if int(read_tracefs(cmdlines_size).split()[0]) < SAVED_CMDLINES_WANTED:
            settings.set(cmdlines_size, str(SAVED_CMDLINES_WANTED))
    header_page = read_tracefs(os.path.join(top, "events", "header_page"))
    page_size = ring_page_size(header_page)
    spools: dict[int, PageSpool] = {}
    try:
        for cpu in recorded_cpus(args, recording.tracing):
            spools[cpu] = held.enter_context(contextlib.closing(PageSpool(recording.tracing, cpu, os.path.dirname(os.path.realpath(args.output)), page_size)))
        stream_trace(args, recording, PageSource(list(spools.values()), args.output), traced, stop)
    finally:
        for spool in spools.values():
            spool.stop_reading()
    parts = TraceDatParts.collect(top, recording, header_page, page_size, settings)
    footer = [("duration-s", f"{recording.seconds:.3f}"), ("stopped-by", recording.stopped_by), ("end", "complete")]
    parts.options.append(km_metadata_option([*header, ("format", "trace.dat"), *footer]))
    return RecordedPages(parts, spools)


def write_recorded_trace_dat(tmp: str, args: argparse.Namespace, recording: Recording, pages: RecordedPages, stop: StopSignals) -> None:
    """Version 6 as the pages are; version 7 compressed, after tracing stopped: a stop signal now discards the recording."""
    with recording_write_errors(args.output), open(tmp, "wb") as output:
        if args.format == "trace.dat-v6":
            write_trace_dat(output, pages.parts, pages.spools)
            return
        codec = trace_dat_codec()
        size = sum(spool.size for spool in pages.spools.values())
        say(f"Compressing {format_size(size)} of pages with {codec.name} (a stop signal now discards the recording)...")
        started = time.monotonic()
        stop.phase = "compressing"
        try:
            write_trace_dat_v7(output, pages.parts, pages.spools, codec, Progress("compressing", size))
        finally:
            stop.phase = "restoring"
        recording.compression = f"{codec.name}, compressed in {time.monotonic() - started:.1f} s"


@dataclass
class TraceDatParts:
    """What a trace.dat holds besides the pages, read from tracefs and /proc after the recording."""

    page_size: int
    header_page: str
    header_event: str
    ftrace_formats: list[str]
    kallsyms: bytes
    printk_formats: bytes
    cmdlines: str
    cpu_count: int
    options: list[tuple[int, bytes]]
    event_formats: list[tuple[str, list[str]]] = field(default_factory=list)  # the enabled events' formats, per system, as trace-cmd stores them

    @classmethod
    def collect(cls, top: str, recording: Recording, header_page: str, page_size: int, settings: BorrowedSettings) -> TraceDatParts:
        events = os.path.join(top, "events")
        ftrace = os.path.join(events, "ftrace")
        formats = [read_tracefs(os.path.join(ftrace, name, "format")) for name in sorted(os.listdir(ftrace)) if os.path.exists(os.path.join(ftrace, name, "format"))]
        cpu_count = max(recording.stats, default=-1) + 1
        return cls(
            page_size=page_size,
            header_page=header_page,
            header_event=read_tracefs(os.path.join(events, "header_event")),
            ftrace_formats=formats,
            kallsyms=read_kallsyms(settings),
            printk_formats=read_optional(os.path.join(top, "printk_formats")),
            cmdlines=task_names(read_optional(os.path.join(top, "saved_cmdlines")).decode("utf-8", "replace")),
            cpu_count=cpu_count,
            options=trace_dat_options(recording, cpu_count),
            event_formats=event_system_formats(events, recording.events),
        )


def event_system_formats(events_dir: str, enabled: list[str]) -> list[tuple[str, list[str]]]:
    """Each enabled event's tracefs `format`, grouped by system in the order first named (ftrace's own are stored apart)."""
    systems: dict[str, list[str]] = {}
    for full in enabled:
        system, _, event = full.partition(":")
        text = read_optional(os.path.join(events_dir, system, event, "format")).decode("utf-8", "replace")
        if system != "ftrace" and text:
            systems.setdefault(system, []).append(text)
    return list(systems.items())


def event_formats_block(systems: list[tuple[str, list[str]]]) -> bytes:
    """The event systems part of a trace.dat (v6 after the ftrace formats, v7's EVENT_FORMATS section): the same bytes."""
    block = trace_dat_number(len(systems), 4)
    for system, formats in systems:
        block += system.encode() + b"\0" + trace_dat_number(len(formats), 4)
        block += b"".join(trace_dat_number(len(text.encode()), 8) + text.encode() for text in formats)
    return block


def read_optional(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def read_kallsyms(settings: BorrowedSettings) -> bytes:
    """/proc/kallsyms with addresses: kptr_restrict hides them even from root, so it is borrowed as trace-cmd does."""
    symbols = read_optional("/proc/kallsyms")
    if re.match(rb"0+ ", symbols) and not re.search(rb"^0*[1-9a-f][0-9a-f]* ", symbols[:1 << 16], re.M):
        with contextlib.suppress(OSError):
            settings.set("/proc/sys/kernel/kptr_restrict", "0")
            symbols = read_optional("/proc/kallsyms")
    return symbols


def task_names(saved: str) -> str:
    """The kernel's saved task names, and for pids it did not keep, the names of tasks alive now."""
    names = {int(pid): comm for pid, comm in saved_task_names(saved).items()}
    for comm_path in glob_task_comms():
        pid = int(comm_path.split("/")[4])
        if pid not in names:
            with contextlib.suppress(OSError):
                names[pid] = read_tracefs(comm_path).strip()
    return "".join(f"{pid} {comm}\n" for pid, comm in sorted(names.items()) if comm)


def glob_task_comms() -> list[str]:
    import glob

    return glob.glob("/proc/[0-9]*/task/[0-9]*/comm")


def trace_dat_options(recording: Recording, cpu_count: int) -> list[tuple[int, bytes]]:
    """CPUSTAT per CPU (as trace-cmd stores them), the clock, uname, the CPU count, who wrote it, our metadata."""
    uname = os.uname()
    options = [(TRACE_DAT_OPTIONS["CPUSTAT"], f"CPU: {cpu}\n".encode() + read_optional(os.path.join(recording.tracing, "per_cpu", f"cpu{cpu}", "stats")) + b"\0")
               for cpu in range(cpu_count)]
    options += [
        (TRACE_DAT_OPTIONS["TRACECLOCK"], read_optional(os.path.join(recording.tracing, "trace_clock")) + b"\0"),
        (TRACE_DAT_OPTIONS["UNAME"], f"{uname.sysname} {uname.nodename} {uname.release} {uname.machine}\0".encode()),
        (TRACE_DAT_OPTIONS["CPUCOUNT"], cpu_count.to_bytes(4, sys.byteorder)),
        (TRACE_DAT_OPTIONS["VERSION"], f"kernel-magnifier {VERSION}\0".encode()),
    ]
    return options


def km_metadata_option(lines: list[tuple[str, object]]) -> tuple[int, bytes]:
    return KM_METADATA_OPTION, "".join(f"{key}: {value}\n" for key, value in lines).encode() + b"\0"


@dataclass
class TraceDatCodec:
    """A version 7 file's compression: the name and version its header gives, and the function."""

    name: str
    version: str
    compress: Callable[[bytes], bytes]


def trace_dat_codec() -> TraceDatCodec:
    """zstd, trace-cmd's own choice, where this Python has it in its standard library (3.14+); zlib otherwise."""
    try:
        from compression import zstd  # type: ignore[import-not-found]
    except ImportError:
        return TraceDatCodec("zlib", zlib.ZLIB_RUNTIME_VERSION, lambda data: zlib.compress(data, ZLIB_LEVEL))
    return TraceDatCodec("zstd", zstd.zstd_version, zstd.compress)


class SectionWriter:
    """A version 7 file's sections, written one after the other; the options that say where they are come last."""

    def __init__(self, output: IO[bytes], codec: TraceDatCodec, progress: Progress) -> None:
        self.output = output
        self.codec = codec
        self.progress = progress
        self.compressed = 0
        self.strings = bytearray()  # the sections' descriptions: a section header names one by its offset here
        self.options: list[tuple[int, bytes]] = []

    def section_header(self, section: int, description: str, flags: int, size: int) -> bytes:
        string_id = len(self.strings)
        self.strings += description.encode() + b"\0"
        return trace_dat_number(section, 2) + trace_dat_number(flags, 2) + trace_dat_number(string_id, 4) + trace_dat_number(size, 8)

    def block(self, data: bytes) -> bytes:
        packed = self.codec.compress(data)
        return trace_dat_number(len(packed), 4) + trace_dat_number(len(data), 4) + packed

    def section(self, section: int, description: str, body: bytes) -> None:
        """A metadata section, compressed whole; the option of the same number holds where it starts."""
        self.options.append((section, trace_dat_number(self.output.tell(), 8)))
        block = self.block(body)
        self.output.write(self.section_header(section, description, SECTION_COMPRESSED, len(block)) + block)

    def pages(self, parts: TraceDatParts, spools: dict[int, PageSpool]) -> None:
        """The flyrecord section: each CPU's chunks from a page-aligned offset, then the BUFFER option that lists them."""
        start = self.output.tell()
        self.output.write(self.section_header(TRACE_DAT_OPTIONS["BUFFER"], "buffer flyrecord ", SECTION_COMPRESSED, 0))
        listed = b""
        for cpu in range(parts.cpu_count):
            offset = self.output.tell()
            if cpu in spools and spools[cpu].size:
                offset = -(-offset // parts.page_size) * parts.page_size
                self.output.write(bytes(offset - self.output.tell()))
                self.chunks(spools[cpu], parts.page_size)
            listed += trace_dat_number(cpu, 4) + trace_dat_number(offset, 8) + trace_dat_number(self.output.tell() - offset, 8)
        self.patch(start + 8, self.output.tell() - start - 16)
        buffer = trace_dat_number(start, 8) + b"\0" + trace_dat_clock(parts.options) + b"\0" + trace_dat_number(parts.page_size, 4)
        self.options.append((TRACE_DAT_OPTIONS["BUFFER"], buffer + trace_dat_number(parts.cpu_count, 4) + listed))

    def chunks(self, spool: PageSpool, page_size: int) -> None:
        """One CPU's pages: the number of chunks, then each chunk's compressed and plain sizes and its bytes."""
        count_at = self.output.tell()
        self.output.write(bytes(4))
        chunk = CHUNK_PAGES * page_size
        for position in range(0, spool.size, chunk):
            pages = os.pread(spool.file.fileno(), min(chunk, spool.size - position), position)
            if len(pages) < min(chunk, spool.size - position):
                raise UserError(f"a CPU{spool.cpu} page file ended early ({position + len(pages):,} of {spool.size:,} bytes)")
            self.output.write(self.block(pages))
            self.compressed += len(pages)
            self.progress.update(self.compressed)
        self.patch(count_at, -(-spool.size // chunk), 4)

    def patch(self, position: int, value: int, size: int = 8) -> None:
        end = self.output.tell()
        self.output.seek(position)
        self.output.write(trace_dat_number(value, size))
        self.output.seek(end)

    def options_and_strings(self) -> int:
        """The one options section (DONE: no next one), then the descriptions; returns where the options start."""
        start = self.output.tell()
        body = b"".join(trace_dat_number(option, 2) + trace_dat_number(len(data), 4) + data for option, data in self.options)
        body += trace_dat_number(TRACE_DAT_OPTIONS["DONE"], 2) + trace_dat_number(8, 4) + trace_dat_number(0, 8)
        self.output.write(self.section_header(TRACE_DAT_OPTIONS["DONE"], "options", 0, len(body)) + body)
        header = self.section_header(TRACE_DAT_OPTIONS["STRINGS"], "strings", SECTION_COMPRESSED, 0)
        block = self.block(bytes(self.strings))
        self.output.write(header[:8] + trace_dat_number(len(block), 8) + block)
        return start


def write_trace_dat_v7(output: IO[bytes], parts: TraceDatParts, spools: dict[int, PageSpool], codec: TraceDatCodec, progress: Progress) -> None:
    """trace-cmd's file version 7, compressed: what version 6 holds, in sections (man 5 trace-cmd.dat.v7)."""
    output.write(trace_dat_preamble(7, parts.page_size) + codec.name.encode() + b"\0" + codec.version.encode() + b"\0")
    options_at = output.tell()
    output.write(bytes(8))
    writer = SectionWriter(output, codec, progress)

    def sized(data: bytes, size: int) -> bytes:
        return trace_dat_number(len(data), size) + data

    writer.section(TRACE_DAT_OPTIONS["HEADER_INFO"], "headers",
                   b"header_page\0" + sized(parts.header_page.encode(), 8) + b"header_event\0" + sized(parts.header_event.encode(), 8))
    formats = trace_dat_number(len(parts.ftrace_formats), 4) + b"".join(sized(text.encode(), 8) for text in parts.ftrace_formats)
    writer.section(TRACE_DAT_OPTIONS["FTRACE_EVENTS"], "ftrace events", formats)
    writer.section(TRACE_DAT_OPTIONS["EVENT_FORMATS"], "events format", event_formats_block(parts.event_formats))
    writer.section(TRACE_DAT_OPTIONS["KALLSYMS"], "kallsyms", sized(parts.kallsyms, 4))
    writer.section(TRACE_DAT_OPTIONS["PRINTK"], "printk", sized(parts.printk_formats, 4))
    writer.section(TRACE_DAT_OPTIONS["CMDLINES"], "command lines", sized(parts.cmdlines.encode(), 8))
    writer.options += parts.options
    try:
        writer.pages(parts, spools)
    finally:
        progress.close()
    writer.patch(options_at, writer.options_and_strings())
    output.flush()


def trace_dat_number(value: int, size: int) -> bytes:
    return value.to_bytes(size, sys.byteorder)


def trace_dat_preamble(version: int, page_size: int) -> bytes:
    """Magic, file version, byte order, the size of a long, the page size: the same in versions 6 and 7."""
    order = sys.byteorder
    return TRACE_CMD_MAGIC + f"{version}\0".encode() + bytes([0 if order == "little" else 1, struct_long_size()]) + page_size.to_bytes(4, order)


def trace_dat_clock(options: list[tuple[int, bytes]]) -> bytes:
    """The clock in use: trace_clock shows it in brackets."""
    clock = next((body for option, body in options if option == TRACE_DAT_OPTIONS["TRACECLOCK"]), b"")
    in_use = re.search(rb"\[(\S+)\]", clock)
    return in_use.group(1) if in_use else b"local"


def write_trace_dat(output: IO[bytes], parts: TraceDatParts, spools: dict[int, PageSpool]) -> None:
    """trace-cmd's file version 6: metadata, then each CPU's pages at a page-aligned offset."""
    layout = trace_dat_layout(parts, {cpu: spool.size for cpu, spool in spools.items()})
    output.write(layout.head)
    for cpu in range(parts.cpu_count):
        offset, size = layout.cpu_data[cpu]
        if not size:
            continue
        output.write(bytes(offset - output.tell()))
        output.flush()
        copy_spool(spools[cpu], output, size)
    output.flush()


@dataclass
class TraceDatLayout:
    head: bytes
    cpu_data: list[tuple[int, int]]


def trace_dat_layout(parts: TraceDatParts, sizes: dict[int, int]) -> TraceDatLayout:
    """The file's bytes up to the pages, with each CPU's (offset, size): built twice, the second time with the offsets."""
    cpu_data = [(0, sizes.get(cpu, 0)) for cpu in range(parts.cpu_count)]
    head = trace_dat_head(parts, cpu_data)
    offset = head_end = len(head)
    for cpu, (_, size) in enumerate(cpu_data):
        if size:
            offset = -(-offset // parts.page_size) * parts.page_size
            cpu_data[cpu] = (offset, size)
            offset += size
        else:
            cpu_data[cpu] = (max(offset, head_end), 0)
    return TraceDatLayout(trace_dat_head(parts, cpu_data), cpu_data)


def trace_dat_head(parts: TraceDatParts, cpu_data: list[tuple[int, int]]) -> bytes:
    order = sys.byteorder

    def number(value: int, size: int) -> bytes:
        return value.to_bytes(size, order)

    def sized(data: bytes, size: int) -> bytes:
        return number(len(data), size) + data

    head = bytearray(trace_dat_preamble(TRACE_DAT_FILE_VERSION, parts.page_size))
    head += b"header_page\0" + sized(parts.header_page.encode(), 8) + b"header_event\0" + sized(parts.header_event.encode(), 8)
    head += number(len(parts.ftrace_formats), 4) + b"".join(sized(text.encode(), 8) for text in parts.ftrace_formats)
    head += event_formats_block(parts.event_formats)
    head += sized(parts.kallsyms, 4) + sized(parts.printk_formats, 4) + sized(parts.cmdlines.encode(), 8)
    head += number(parts.cpu_count, 4) + b"options  \0"
    for option, body in parts.options:
        head += number(option, 2) + sized(body, 4)
    head += number(0, 2) + b"flyrecord\0"
    for offset, size in cpu_data:
        head += number(offset, 8) + number(size, 8)
    head += sized(b"[" + trace_dat_clock(parts.options) + b"]", 8)  # v6 repeats the clock after the CPU offsets
    return bytes(head)


def struct_long_size() -> int:
    import struct

    return struct.calcsize("l")


def copy_spool(spool: PageSpool, output: IO[bytes], size: int) -> None:
    """In-kernel copy where the file system allows (copy_file_range), else through memory."""
    source, target, done = spool.file.fileno(), output.fileno(), 0
    position = output.tell()
    try:
        while done < size:
            moved = os.copy_file_range(source, target, size - done, done, position + done)
            if not moved:
                break
            done += moved
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    os.lseek(source, done, os.SEEK_SET)
    output.seek(position + done)
    while done < size:
        block = os.read(source, min(CHUNK_BYTES, size - done))
        if not block:
            raise UserError(f"a CPU{spool.cpu} page file ended early ({done:,} of {size:,} bytes)")
        output.write(block)
        done += len(block)
    output.seek(position + size)


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
    if recording.events:
        say(f"Trace events beside the calls: {' '.join(recording.events)}")
    say(f"Wrote data to {args.output}" + (f" (the previous one is now {recording.old_file})" if recording.old_file else ""))
    form = {"text": "text", "trace.dat-v6": "trace.dat; version 6"}.get(args.format, f"trace.dat; version 7, {recording.compression}")
    say(f"Recorded filesize: {format_size(recording.size)} ({form}; {recording.drain_seconds:.1f} s to read what the kernel still held after tracing stopped)")
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
  ./kernel-magnifier.py visualize --root tcp_sendmsg --depth 3 -o send.svg   # what tcp_sendmsg calls, 3 levels deep
  ./kernel-magnifier.py visualize --callers kfree --depth 4                  # the call paths that lead to kfree
  ./kernel-magnifier.py visualize --heat calls         # colour by calls instead of self time
  ./kernel-magnifier.py visualize -i new.data --baseline old.data            # what changed: blue less, red more
  ./kernel-magnifier.py visualize --filter-filepath net,kernel/sched   # only functions from these source paths
  ./kernel-magnifier.py visualize --filter-module 9pnet                # only functions of a kernel module
  ./kernel-magnifier.py visualize --min-calls 100                      # only functions called more than 100 times
  ./kernel-magnifier.py visualize --max-nodes 120 --node-thres 0.1     # a bigger drawing
  ./kernel-magnifier.py visualize -o graph.json                        # every node, edge and call path, for scripts
  ./kernel-magnifier.py visualize -o stacks.folded                     # for flamegraph.pl, inferno, speedscope
  ./kernel-magnifier.py visualize --root tcp_sendmsg -o - | less       # a text report on the terminal: top functions, call tree
  ./kernel-magnifier.py visualize -o - --output-format json | jq '.nodes[0]'   # any text output on standard output
  ./kernel-magnifier.py visualize -o calls.trace.json --pid 1234       # a timeline for ui.perfetto.dev (needs funcgraph-abstime)
  ./kernel-magnifier.py visualize --latency tcp_sendmsg                # its call durations: p50, p90, p99, slowest calls
  ./kernel-magnifier.py visualize --errors                             # which calls returned -ENOENT, -EINVAL... and from where
  ./kernel-magnifier.py visualize --chart-by task --comm 'python*'     # which tasks spend the time
"""


TOP_EXAMPLES = """examples:
  sudo ./kernel-magnifier.py record --graph-function tcp_sendmsg --record-time 2   # on the machine you study
  ./kernel-magnifier.py generate-symbol-map -k /usr/lib/debug/boot/vmlinux-$(uname -r)
  ./kernel-magnifier.py visualize                                  # kernel-magnifier.data -> kernel-magnifier.pdf
  ./kernel-magnifier.py visualize --root tcp_sendmsg --depth 3     # focus on one function's calls
  ./kernel-magnifier.py COMMAND --help                             # every option of a command, with examples
"""


RECORD_EXAMPLES = """examples:
  sudo ./kernel-magnifier.py record                                  # 10 s of function_graph on every CPU (-a)
  sudo ./kernel-magnifier.py record --record-time 10 -C 0            # CPU 0 only (a CPU list, as perf -C: 0,2-3)
  sudo ./kernel-magnifier.py record -M 5                             # CPUs 0 and 2 (a hex mask, as tracing_cpumask: 10 is CPU 4)
  sudo ./kernel-magnifier.py record --graph-function tcp_sendmsg,tcp_recvmsg --record-time 2
  sudo ./kernel-magnifier.py record --filter 'tcp_*' --tracer function   # plain function tracer, only tcp_* functions
  sudo ./kernel-magnifier.py record --notrace 'rcu_*' --max-depth 5
  sudo ./kernel-magnifier.py record --buffer-size 16384 -o net.data     # 16 MiB per CPU: a trace.dat (trace-cmd report opens it)
  sudo ./kernel-magnifier.py record --format text -o net.data.xz       # trace_pipe's text, compressed on the fly
  sudo ./kernel-magnifier.py record -O funcgraph-proc -O nofuncgraph-irqs
  sudo ./kernel-magnifier.py record --pid 1234 --record-time 5       # one running process
  sudo ./kernel-magnifier.py record -- ping -c 3 localhost           # a command and its children, until it ends
  sudo ./kernel-magnifier.py record -e sched -e irq:softirq_raise     # more events beside the calls (function_graph adds sched_switch, sched_waking...)
  sudo ./kernel-magnifier.py record --no-sched                       # the calls only: no scheduler events
  sudo ./kernel-magnifier.py record --force                          # borrow the tracer someone left active (given back after)

trace-cmd and perf spellings work too: -p TRACER, -g FUNC, -l FILTER, -n NOTRACE,
-b KB, -M MASK, -P PID, -O OPTION, -e EVENT, --max-graph-depth N; perf's -C LIST and -a:
  sudo ./kernel-magnifier.py record -p function_graph -g tcp_sendmsg -C 0 -b 2048 --max-graph-depth 4
  sudo ./kernel-magnifier.py record -p function -l 'vfs_*' -n vfs_write -P 1234

Ctrl-C (or SIGTERM, SIGHUP) ends the recording early and keeps what was read.
The tracing state (tracer, tracing_on, cpumask, buffer size, filters, pids,
options, events) is given back as it was found on every way out.
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
        formatter_class=HelpFormatter, epilog=TOP_EXAMPLES,
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
    record.add_argument("-o", "--output", default=DEFAULT_DATA_FILE, metavar="FILE", help="data file; an existing one becomes FILE.old")
    record.add_argument("--format", choices=("trace.dat", "trace.dat-v6", "text"), default="trace.dat",
                        help="trace.dat: the kernel's binary pages, compressed once tracing stopped, as trace-cmd writes them (file version 7, default);"
                        " trace.dat-v6: uncompressed, for readers older than trace-cmd 3.0; text: trace_pipe's text (.gz/.xz: compressed)")
    record.add_argument("-p", "--tracer", choices=("function_graph", "function"), default="function_graph", help="ftrace tracer")
    record.add_argument("-b", "--buffer-size", type=positive_int, metavar="KB", help="ring buffer per CPU in KiB (kernel default 1408)")
    record.add_argument("-g", "--graph-function", action="append", metavar="F[,F...]", help="only calls below these functions (set_graph_function)")
    record.add_argument("-l", "--filter", action="append", metavar="F[,F...]", help="only these functions, globs allowed (set_ftrace_filter)")
    record.add_argument("-n", "--notrace", action="append", metavar="F[,F...]", help="never these functions, globs allowed (set_ftrace_notrace)")
    record.add_argument("--max-depth", "--max-graph-depth", type=positive_int, metavar="N", help="function_graph: at most N levels deep (max_graph_depth)")
    record.add_argument("-P", "--pid", type=positive_int, action="append", metavar="PID", help="only this process (repeatable)")
    record.add_argument("-O", dest="tracer_options", action="append", metavar="OPTION", help="tracer option on (funcgraph-proc) or off (nofuncgraph-irqs); repeatable")
    record.add_argument(
        "-e", "--event", dest="events", action="append", metavar="EVENT[,EVENT...]",
        help="also record these trace events beside the calls, in trace-cmd's spelling: sched:sched_switch, sched_switch, sched (a whole system), globs; repeatable",
    )
    record.add_argument(
        "--no-sched", action="store_true",
        help="function_graph records sched_switch, sched_waking, sched_wakeup(_new) by default (on/off-CPU time, who wakes whom): leave them out",
    )
    record.add_argument("--force", action="store_true", help="borrow the tracer even when another one is active")
    visualize = commands.add_parser(
        "visualize", parents=[common], formatter_class=HelpFormatter, epilog=VISUALIZE_EXAMPLES,
        help="show recorded calls: call graph, chart, JSON, flame graph, timeline, explorer page or text report",
        description="Read a recording (record's trace.dat or text, trace-cmd's trace.dat v6/v7, ftrace's trace or trace_pipe text,"
        " trace-cmd report output; .gz/.xz read directly) and show its calls: call graph, JSON, flame graph, timeline, text report.",
    )
    visualize.add_argument(
        "-i", "--input", action="append", metavar="FILE", help="trace file to read, repeatable to aggregate several (default: kernel-magnifier.data): record's data file (trace.dat or text),"
        " trace-cmd's trace.dat (v6, v7), ftrace's trace or trace_pipe text (function_graph or function tracer), trace-cmd report's output;"
        " .gz and .xz are read directly",
    )
    visualize.add_argument(
        "-o", "--output", metavar="FILE",
        help="output; format from the ending: .pdf .svg .png .dot (call graph), .json (everything), .folded (flame graph stacks), .trace.json (Perfetto timeline),"
        " .html (explorer page: graph, call tree, callers and callees, flame graph, source links), .flame.html (flame graph alone), .txt (text report: summary, top --chart-top functions, call tree cut by --max-nodes and --node-thres; with scheduler events, on CPU + asleep);"
        " - for standard output (the text report, or --output-format's; every message then goes to stderr)"
        f" (default: {DEFAULT_GRAPH_OUTPUT}; none with --latency alone)",
    )
    visualize.add_argument(
        "--output-format", choices=OUTPUT_FORMATS, metavar="FORMAT",
        help=f"with -o -: what standard output gets, by the file ending it stands for: {', '.join(f for f in OUTPUT_FORMATS if f not in BINARY_FORMATS)}"
        f" (default: {STDOUT_DEFAULT_FORMAT}, the text report); {' and '.join(BINARY_FORMATS)} are binary and refused there: name a file",
    )
    visualize.add_argument(
        "-j", "--jobs", type=positive_int, metavar="N",
        help="parse with N processes: one large text file in N chunks, a trace.dat in N time windows, several inputs side by side;"
        " the result is the one-process parse's (default: the cores available, one per 32 MB of text or 16 MB of trace.dat at most)",
    )
    visualize.add_argument("--chart", metavar="FILE", help=f"PNG chart of the most-called functions (default: {DEFAULT_CHART}, none with a text report or --latency alone; '' for none)")
    visualize.add_argument("--chart-top", type=positive_int, default=30, metavar="N", help="functions in the chart")
    visualize.add_argument("--symbol-map", default=DEFAULT_SYMBOL_MAP, metavar="FILE", help="function -> source file map, used when present")
    visualize.add_argument("--filter-filepath", metavar="PATHS", help="keep functions whose source path contains one of these comma-separated strings (needs the symbol map)")
    visualize.add_argument("--filter-execution-no", "--min-calls", dest="filter_execution_no", type=non_negative_int, metavar="N", help="keep only functions called more than N times")
    visualize.add_argument("--filter-module", action="append", metavar="M[,M...]", help="keep only functions of these kernel modules (name [module] in the trace; no symbol map needed)")
    focus = visualize.add_argument_group("focus (exact, from the call paths)")
    focus.add_argument("--root", action="append", metavar="F[,F...]", help="what F calls: the call paths below every call of F, merged (globs: 'tcp_*'); repeatable")
    focus.add_argument("--callers", action="append", metavar="F[,F...]", help="who calls F: the call paths that lead to F, F at the bottom")
    focus.add_argument(
        "--wakers", action="append", metavar="F[,F...]",
        help="who wakes F: the wakers' call paths that ended F's sleeps, F at the bottom; counts are sleeps, times the waits (needs sched_switch, sched_waking)",
    )
    focus.add_argument("--depth", type=positive_int, metavar="N", help="N levels below --root (above --callers, --wakers); alone: the first N levels of every path")
    focus.add_argument(
        "--group-by", type=parse_group_by, metavar="dir[:N]|file|module",
        help="the kernel's map: functions collapsed into their source directory (dir: its subsystem, net/ipv4, fs/ext4, drivers/net/ethernet;"
        " dir:N: N folders), file or module, calls and times summed, every output at that level; --root/--callers name a group or a function (needs the symbol map, but for module)",
    )
    drawing = visualize.add_argument_group("drawing")
    drawing.add_argument(
        "--heat", choices=HEAT_METRICS,
        help="what the colour shows (default: self time where the trace has durations, else calls); oncpu/offcpu: time on a CPU or switched out, from sched_switch events",
    )
    drawing.add_argument("--baseline", action="append", metavar="FILE", help="compare with this older recording: colour = change (blue less, red more); repeatable to aggregate")
    drawing.add_argument("--max-nodes", type=non_negative_int, default=80, metavar="N", help="draw at most N functions (0: no limit)")
    drawing.add_argument("--max-edges", type=non_negative_int, default=200, metavar="N", help="draw at most N edges (0: no limit)")
    drawing.add_argument("--node-thres", type=percentage, default=DEFAULT_NODE_THRES, metavar="PCT", help="leave out functions lighter than PCT %% of the whole time (or calls)")
    drawing.add_argument("--edge-thres", type=percentage, default=DEFAULT_EDGE_THRES, metavar="PCT", help="leave out edges lighter than PCT %% of the whole")
    drawing.add_argument("--no-wakeups", action="store_true", help="leave out the dashed 'wakes' edges (waking function -> the function that slept)")
    drawing.add_argument(
        "--show-inlined", action="store_true",
        help="draw the functions the compiler inlined into each box (per the symbol map) as dotted boxes under it: never counted as calls",
    )
    drawing.add_argument(
        "--clusters", action="store_true",
        help="frame the drawn functions of each source directory together (net/ipv4, mm, drivers/net...), one colour family per top-level subsystem (needs the symbol map)",
    )
    drawing.add_argument("--layout", choices=("auto", "dot"), default="auto", help=argparse.SUPPRESS)
    tasks = visualize.add_argument_group("tasks, CPUs, time (where the trace names them)")
    tasks.add_argument("--pid", action="append", metavar="PID[,PID...]", help="only these tasks (funcgraph-proc, context-switch blocks, function tracer lines)")
    tasks.add_argument("--comm", action="append", metavar="NAME[,NAME...]", help="only tasks of these names (globs; funcgraph-proc cuts names to 7 characters)")
    tasks.add_argument("--cpu", action="append", metavar="LIST", help="only calls on these CPUs (0,2-3)")
    tasks.add_argument("--chart-by", choices=("function", "task", "cpu"), default="function", help="what the chart ranks")
    tasks.add_argument("--time-window", metavar="START,END", help="every output: only the calls that start in this window (seconds of trace time; the summary prints the trace's span)")
    other = visualize.add_argument_group("more views")
    other.add_argument(
        "--weight", choices=("calls", "self", "total", "oncpu", "offcpu"),
        help="folded stacks: what a path weighs (default self time in ns where the trace has durations, else calls);"
        " oncpu/offcpu (from sched_switch events) also weigh the .html flame graph: offcpu draws an off-CPU flame graph",
    )
    other.add_argument(
        "--source-url", metavar="TEMPLATE",
        help="the .html page's and the .svg drawing's source links: {path}, {line}, {version} filled in (default: elixir.bootlin.com for the recording's kernel version, when the recording names it)",
    )
    other.add_argument("--source-dir", metavar="DIR", help="the .html page's and the .svg drawing's source links point into this local kernel tree instead")
    other.add_argument("--latency", metavar="FUNC", help="the distribution of FUNC's call durations: percentiles, slowest calls, histogram")
    other.add_argument("--latency-chart", default="latency.png", metavar="FILE", help="where --latency draws its histogram")
    other.add_argument(
        "--errors", action="store_true",
        help="the calls that returned a negative errno, where each was first returned and who passed it up (needs record -O funcgraph-retval)",
    )
    symbol_map = commands.add_parser(
        "generate-symbol-map", parents=[common], formatter_class=HelpFormatter, epilog=SYMBOL_MAP_EXAMPLES,
        help="map kernel function names to the source files that define them, from DWARF debug info",
        description="Run a dwarfdump on a vmlinux with debug info and write a function name -> source file map for visualize.",
    )
    symbol_map.add_argument("-k", "--vmlinux", default=DEFAULT_VMLINUX, metavar="VMLINUX", help="kernel image with debug info")
    symbol_map.add_argument("-o", "--output", default=DEFAULT_SYMBOL_MAP, metavar="FILE", help="map file to write")
    symbol_map.add_argument("--dwarfdump", metavar="PROGRAM", help="llvm-dwarfdump (preferred, default when installed) or libdwarf's dwarfdump")
    symbol_map.add_argument(
        "-m", "--modules", action="append", metavar="DIR",
        help="also map functions of kernel modules: every module debug file under DIR (.ko, .ko.debug, .ko.xz, .ko.zst, .ko.gz;"
        " Debian: /usr/lib/debug/lib/modules/VERSION); repeatable",
    )
    symbol_map.add_argument(
        "--no-inlines", action="store_true",
        help="leave out the calls inlined into each function (llvm-dwarfdump then prints depth 1 only: 3x faster on a vmlinux, a 6x smaller map)",
    )
    symbol_map.add_argument(
        "--no-call-sites", action="store_true",
        help="leave out the source lines of the calls (by return address, for traces made with funcgraph-retaddr);"
        " with --no-inlines too, llvm-dwarfdump prints depth 1 only",
    )
    symbol_map.add_argument("--only-loaded", action="store_true", help="with --modules: only modules loaded now (/proc/modules)")
    return parser


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def percentage(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError("must be a percentage from 0 to 100")
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


# Exit statuses; argparse's usage errors exit 2 by themselves. EXIT_STATUSES is the man page's EXIT STATUS.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # sysexits.h's EX_SOFTWARE: a bug, kept apart from 1 and 2 so that scripts and tests can tell
EXIT_INTERRUPTED = 130
EXIT_STATUSES = {
    EXIT_OK: "success: every output written",
    EXIT_ERROR: "an error, one line on stderr: an input missing or not a trace, an output that cannot be written, options that"
    " contradict each other, record without root or tracefs, a tracer the kernel lacks; also standard output closed early (| head)",
    EXIT_USAGE: "a usage error from the option parser: an unknown option, a bad value, a missing argument",
    EXIT_INTERNAL: "an internal error (a bug): one line on stderr, --debug shows the traceback",
    EXIT_INTERRUPTED: "interrupted by Ctrl-C (SIGINT), or visualize by SIGTERM: no output is left half-written;"
    " record interrupted during its set-up or its compression (nothing written, tracefs given back); generate-symbol-map"
    " ends with 128 + the signal's number (SIGINT 130, SIGTERM 143, SIGHUP 129). A signal while record records ends the"
    " recording early and keeps what was read: status 0",
}


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
        return getattr(err, "exit_status", EXIT_ERROR)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (| head): quietly, status 1
        return EXIT_ERROR
    except Exception as err:
        if args.debug:
            raise
        print(f"{PROG}: internal error: {type(err).__name__}: {err} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
