"""Seeded mutation test: a few hundred damaged copies of the real recordings through visualize.

Each mutant is a real trace (or the real symbol map) with one to three kinds of
damage: truncation, flipped bytes, duplicated/deleted/swapped lines, numbers
past int()'s digit cap, durations that are not a time (nan, inf, 1e308,
negative, 8x.432), hostile long lines (quadratic for a backtracking pattern),
NUL bytes, a BOM, compression then damage (and a compressed file under the
other suffix). The CLI runs in this process (main([...]), one call per mutant)
so the whole test stays within a minute. Whatever the damage, the promise is:
exit 0 or 1 (never 70, an internal error), no traceback, an error is exactly one
line "kernel-magnifier: error: ...", the JSON has no NaN/Infinity and no
negative or infinite total time, no temporary file is left behind, and no
mutant takes more than a few seconds.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import lzma
import math
import os
import random
import time
from dataclasses import dataclass

import pytest
from conftest import DATA, load_module

SEED = 20261128
MUTANTS = 300
LINES_PER_SOURCE = 1500
SOURCES = [
    DATA / "fg-graphfunc" / "trace.txt.xz",
    DATA / "fg-abstime-proc" / "trace.txt.xz",
    DATA / "fg-overflow-pipe" / "trace.txt.xz",
    DATA / "fg-newer-kernel" / "trace-default.txt.xz",
    DATA / "function-tracer" / "trace.txt.xz",
    DATA / "function-variants" / "record-tgid.txt.xz",
    DATA / "trace-cmd" / "report-head.txt.xz",
    DATA / "record-demo" / "kernel-magnifier.data.xz",
]
SYMBOL_MAP = DATA / "symbol-map-6.1.0-56-amd64.map.xz"
HUGE_NUMBER = b"9" * 5000
NOT_A_TIME = [b"nan", b"inf", b"-inf", b"1e308", b"1e9999", b"-1.000", b"8x.432", b"NaN", b"-0.5"]
# Just under the reader's 8 KiB line limit, so that the line patterns see them (a backtracking
# pattern spent 20 ms to 0.6 s on each); inserted up to 100 times.
HOSTILE_LINES = [
    b"# k: " + b" " * 8_000 + b"x",
    b" 1)               |  f(" + b") { /*" * 1_300,
    b" 1) " + b"a-1 => " * 1_100,
    b" " * 8_000 + b"x |  f();",
    b"# cpu0-stats: " + b"a-" * 4_000,
    b"==========>" + b" " * 8_000 + b"x",
    b"  a-1 [000] 1.0: f(" + b") <-" * 2_000,
    b" " * 4_000 + b"x" * 4_000,
]
HUGE_LINES = [
    b"CPU:" + HUGE_NUMBER + b" [LOST 5 EVENTS]",
    b"CPU:0 [LOST " + HUGE_NUMBER + b" EVENTS]",
    b"# entries-in-buffer/entries-written: 1/" + HUGE_NUMBER,
    b"# cpu0-stats: overrun=" + HUGE_NUMBER,
    b"# cpu" + HUGE_NUMBER + b"-stats: overrun=1",
]


def read_source(path) -> bytes:
    return b"\n".join(lzma.decompress(path.read_bytes()).split(b"\n")[:LINES_PER_SOURCE]) + b"\n"


# -- the kinds of damage: each takes (rng, data) and returns (data, label) ----


def truncate(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    cut = rng.randrange(len(data))
    return data[:cut], f"truncated at {cut}"


def flip_bytes(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    damaged = bytearray(data)
    for _ in range(rng.randint(1, 20)):
        damaged[rng.randrange(len(damaged))] = rng.randrange(256)
    return bytes(damaged), "flipped bytes"


def shuffle_lines(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    lines = data.split(b"\n")
    how = rng.choice(["duplicate", "delete", "swap"])
    for _ in range(rng.randint(1, 30)):
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        if how == "duplicate":
            lines.insert(j, lines[i])
        elif how == "delete" and len(lines) > 1:
            del lines[i]
        else:
            lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines), f"{how}d lines"


def huge_number(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    lines = data.split(b"\n")
    for _ in range(rng.randint(1, 5)):
        i = rng.randrange(len(lines))
        digits = [k for k, byte in enumerate(lines[i]) if 48 <= byte <= 57]
        if digits:
            k = rng.choice(digits)
            lines[i] = lines[i][:k] + HUGE_NUMBER + lines[i][k + 1 :]
    return b"\n".join(lines), "5000-digit numbers"


def bad_duration(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    lines = data.split(b"\n")
    timed = [i for i, line in enumerate(lines) if b" us " in line]
    value = rng.choice(NOT_A_TIME)
    for i in rng.sample(timed, min(len(timed), rng.randint(1, 5))):
        line = lines[i]
        end = line.index(b" us ")
        start = max(line.rfind(b" ", 0, end) + 1, 0)
        lines[i] = line[:start] + value + line[end:]
    return b"\n".join(lines), f"durations {value.decode()}"


def hostile_line(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    lines = data.split(b"\n")
    line = rng.choice(HOSTILE_LINES)
    for _ in range(rng.randint(1, 100)):
        lines.insert(rng.randrange(len(lines)), line)
    return b"\n".join(lines), f"hostile lines {line[:20]!r}"


def huge_line(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    lines = data.split(b"\n")
    line = rng.choice([*HUGE_LINES, b"x" * rng.randint(8_000, 300_000)])
    lines.insert(rng.randrange(len(lines)), line)
    return b"\n".join(lines), f"line {line[:20]!r}"


def nul_byte(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    where = rng.randrange(len(data))
    return data[:where] + b"\0" + data[where:], f"NUL at {where}"


def bom(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    return b"\xef\xbb\xbf" + data, "UTF-8 BOM"


TEXT_DAMAGE = [truncate, flip_bytes, shuffle_lines, huge_number, bad_duration, hostile_line, huge_line, nul_byte, bom]
HARMLESS = {nul_byte, bom}  # a trace with only these must still be read: +1 line not understood per NUL


@dataclass
class Mutant:
    data: bytes
    description: str
    suffix: str = "txt"
    is_map: bool = False
    source: int = 0
    readable: bool = False  # only harmless damage: the run must succeed
    nuls: int = 0


def compress_and_damage(rng: random.Random, mutant: Mutant) -> None:
    """gzip or xz, then maybe cut or flipped, maybe under the other suffix (read by content either way)."""
    kind = rng.choice(["gz", "xz"])
    packed = bytearray(gzip.compress(mutant.data, mtime=0) if kind == "gz" else lzma.compress(mutant.data))
    how = rng.choice(["intact", "intact", "truncated", "flipped", "crc"])
    if how == "truncated":
        packed = packed[: rng.randrange(1, len(packed))]
    elif how == "flipped":
        packed[rng.randrange(len(packed))] ^= 1 << rng.randrange(8)
    elif how == "crc":
        packed[-8 if kind == "gz" else -13] ^= 0xFF
    mutant.suffix = rng.choice([kind, kind, "gz" if kind == "xz" else "xz", "txt"])
    mutant.data = bytes(packed)
    mutant.description += f"; {kind} {how} named .{mutant.suffix}"
    mutant.readable = mutant.readable and how == "intact"


def make_mutant(rng: random.Random, sources: list[bytes], symbol_map: bytes) -> Mutant:
    if rng.random() < 0.08:
        mutant = Mutant(symbol_map, "symbol map", is_map=True, readable=True)
        if rng.random() < 0.5:
            mutant.data, label = rng.choice([truncate, flip_bytes, nul_byte, shuffle_lines])(rng, symbol_map)
            mutant.description += f": {label}"
            mutant.readable = False
        compress_and_damage(rng, mutant)
        return mutant
    source = rng.randrange(len(sources))
    mutant = Mutant(sources[source], "", source=source, readable=True)
    labels = []
    for damage in rng.sample(TEXT_DAMAGE, rng.randint(1, 3)):
        if mutant.data:
            mutant.data, label = damage(rng, mutant.data)
            labels.append(label)
            mutant.readable = mutant.readable and damage in HARMLESS
            mutant.nuls += damage is nul_byte
    mutant.description = f"{SOURCES[source].parent.name}/{SOURCES[source].name}: " + "; ".join(labels)
    if rng.random() < 0.25:
        compress_and_damage(rng, mutant)
    return mutant


def run_main(km, argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = km.main(argv)
    return code, err.getvalue()


def broken_promises(code: int, stderr: str, out_json, tmp_path) -> tuple[list[str], dict | None]:
    """What the run did wrong, and its JSON when it succeeded."""
    problems = []
    graph = None
    if code not in (0, 1):
        problems.append(f"exit {code}")
    if "Traceback" in stderr or "internal error" in stderr:
        problems.append("traceback or internal error")
    if code == 1:
        lines = stderr.splitlines()
        if len(lines) != 1 or not lines[0].startswith("kernel-magnifier: error: "):
            problems.append("the error is not one line")
    if code == 0:
        def refuse(constant: str) -> None:
            raise ValueError(constant)

        try:
            graph = json.loads(out_json.read_text(), parse_constant=refuse)
        except ValueError as err:
            problems.append(f"JSON not strict: {err}")
        else:
            for node in graph["nodes"]:
                total, own = node["total_time_us"], node["self_time_us"]
                if total is not None and not (math.isfinite(total) and total >= 0):
                    problems.append(f"total time {total} of {node['name']}")
                if own is not None and not math.isfinite(own):
                    problems.append(f"self time {own} of {node['name']}")
    leftovers = [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    if leftovers:
        problems.append(f"left {leftovers}")
    return problems, graph


def unmet_expectation(mutant: Mutant, code: int, graph: dict | None, clean_unparsed: list[int]) -> list[str]:
    """A trace with only a BOM and NUL bytes is read, each NUL making one more line not understood."""
    if not mutant.readable:
        return []
    if code != 0:
        return ["a readable mutant was refused"]
    if graph is None or mutant.is_map:
        return []
    expected = clean_unparsed[mutant.source] + mutant.nuls
    unparsed = graph["stats"]["unparsed_lines"]
    return [] if unparsed == expected else [f"{unparsed} lines not understood, expected {expected}"]


@pytest.fixture(scope="module")
def km():
    return load_module()


def test_damaged_copies_of_real_recordings_keep_every_promise(km, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = random.Random(SEED)
    sources = [read_source(path) for path in SOURCES]
    symbol_map = b"\n".join(lzma.decompress(SYMBOL_MAP.read_bytes()).split(b"\n")[:3000]) + b"\n"
    out_json = tmp_path / "graph.json"
    clean_unparsed = []
    for number, source in enumerate(sources):
        (tmp_path / f"clean-{number}.txt").write_bytes(source)
        code, stderr = run_main(km, ["visualize", "-i", f"clean-{number}.txt", "-o", str(out_json), "--chart", ""])
        assert code == 0, stderr
        clean_unparsed.append(json.loads(out_json.read_text())["stats"]["unparsed_lines"])
    failures = []
    outcomes: set[int] = set()
    started = time.process_time()
    for number in range(MUTANTS):
        mutant = make_mutant(rng, sources, symbol_map)
        path = tmp_path / f"mutant-{number}.{mutant.suffix}"
        path.write_bytes(mutant.data)
        argv = ["visualize", "-o", str(out_json), "--chart", ""]
        argv += ["-i", "clean-0.txt", "--symbol-map", str(path)] if mutant.is_map else ["-i", str(path)]
        with contextlib.suppress(FileNotFoundError):
            out_json.unlink()
        began = time.process_time()
        code, stderr = run_main(km, argv)
        cpu = time.process_time() - began
        problems, graph = broken_promises(code, stderr, out_json, tmp_path)
        problems += unmet_expectation(mutant, code, graph, clean_unparsed)
        if cpu > 1.0:  # a mutant costs ~30 ms; a quadratic pattern spends seconds on its hostile lines
            problems.append(f"took {cpu:.1f} s of CPU")
        if problems:
            failures.append(f"mutant {number} ({mutant.description}): {', '.join(problems)}; stderr: {stderr.strip()[:300]!r}")
        else:
            path.unlink()
        outcomes.add(code)
    elapsed = time.process_time() - started
    assert not failures, f"{len(failures)} of {MUTANTS} mutants broke a promise (seed {SEED}):\n" + "\n".join(failures[:30])
    assert {0, 1} <= outcomes  # the damage both stops some runs and passes others
    assert elapsed < 60, f"{MUTANTS} mutants took {elapsed:.0f} s of CPU"
