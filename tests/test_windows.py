"""visualize -j N on a trace.dat: N time windows across all CPUs' pages, the same JSON as one process.

The parent reads the first window and a child each later one, from the last page
(or compressed chunk) of each CPU that began before the window's time; the
windows are stitched in a chain as text chunks are (read_in_windows). The
reference is -j 1 (one pass over the file). The CLI runs in this process
(main([...])), which forks the workers as a user's run does; the tests of what
the operating system does to them (one core, a worker killed, Ctrl-C) run it
in a process of its own.

Every bundled real trace.dat (x86 and arm64 with 16 KB pages, v6 and v7 with
zstd, lossy and lossless, function and function_graph, return values and
addresses) at N = 2..8; seeded damaged copies (truncated, bytes flipped, a
page's clock far ahead or behind, pages swapped, a page emptied); windows cut
at random places; a clock that jumps forward, which the process before must
notice and read on past.
"""

from __future__ import annotations

import contextlib
import io
import lzma
import os
import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DATA, ROOT, SCRIPT, load_module
from test_jobs import stop_amid_workers
from test_tracedat import children_of

SEED = 20261207
MAGIC = b"\x17\x08\x44tracing"


def is_trace_dat(path: Path) -> bool:
    try:
        return lzma.LZMADecompressor().decompress(path.read_bytes()[:4096], 16).startswith(MAGIC)
    except lzma.LZMAError:
        return False


DAT_TRACES = sorted(path for path in DATA.rglob("*.xz") if is_trace_dat(path))


@pytest.fixture(scope="module")
def km():
    return load_module()


@pytest.fixture
def windows(km, monkeypatch):
    """Per run of read_in_windows(): its number of windows; and the seams whose child's result was used or refused."""
    seen: dict[str, list] = {"runs": [], "used": [], "refused": []}
    real_read, real_holds = km.read_in_windows, km.WindowPlan.seam_holds

    def read(reading, plan):
        seen["runs"].append(len(plan.times) + 1)
        return real_read(reading, plan)

    def holds(plan, starts, window):
        held = real_holds(plan, starts, window)
        seen["used" if held else "refused"].append(window)
        return held

    monkeypatch.setattr(km, "read_in_windows", read)
    monkeypatch.setattr(km.WindowPlan, "seam_holds", holds)
    monkeypatch.delenv("KM_PARSE_PROCESSES", raising=False)
    monkeypatch.delenv("KM_SPLIT_AT", raising=False)
    return seen


def visualize(km, tmp_path: Path, trace: Path, jobs: int) -> tuple[int, str, bytes]:
    """Exit status, messages and JSON bytes of `visualize -j jobs` (run here, in this process)."""
    out = tmp_path / "graph.json"
    with contextlib.suppress(FileNotFoundError):
        out.unlink()
    messages = io.StringIO()
    with contextlib.redirect_stderr(messages), contextlib.redirect_stdout(messages):
        code = km.main(["visualize", "-i", str(trace), "-o", str(out), "--chart", "", "-j", str(jobs)])
    return code, messages.getvalue(), out.read_bytes() if out.exists() else b""


def unpacked(path: Path, target: Path) -> Path:
    target.write_bytes(lzma.decompress(path.read_bytes()))
    return target


def repeated(copies: int, target: Path) -> Path:
    """trace-cmd's own lossy recording, its pages written `copies` times one after the other in time (as bench/ builds it)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_tracedat import repeated_pages

    target.write_bytes(repeated_pages(lzma.decompress((DATA / "trace-cmd/trace-v6.dat.xz").read_bytes()), copies))
    return target


def test_every_bundled_trace_dat_is_covered():
    names = {path.relative_to(DATA).as_posix() for path in DAT_TRACES}
    assert len(names) >= 12
    assert {"trace-cmd/trace-v7-zstd.dat.xz", "arm64-6.12/arm64-16k-narrow-v6.dat.xz", "whole-system/kernel-magnifier.data.xz",
            "record-demo-dat/kernel-magnifier.data.xz", "retval/retval.dat.xz", "retaddr/retaddr.dat.xz"} <= names


@pytest.mark.parametrize("trace", DAT_TRACES, ids=lambda path: path.relative_to(DATA).as_posix())
def test_every_trace_dat_same_json_for_n_1_to_8(km, tmp_path, monkeypatch, windows, trace):
    monkeypatch.chdir(tmp_path)
    plain = unpacked(trace, tmp_path / "trace.dat")
    reference = visualize(km, tmp_path, plain, 1)
    assert not windows["runs"]
    different = [jobs for jobs in range(2, 9) if visualize(km, tmp_path, plain, jobs) != reference]
    assert not different, (reference[1][-300:], different)
    if "tc-events" in trace.name:
        assert reference[0] == 1  # no calls at all: the same one-line error
        return
    assert reference[0] == 0, reference[1]
    assert windows["runs"] == list(range(2, 9)) or max(windows["runs"]) >= 4, windows["runs"]  # windows really cut
    assert len(windows["used"]) >= len(windows["runs"]), windows  # children's results stitched, not read again


def cpu_pages(km, path: Path) -> tuple[int, list[tuple[int, int]]]:
    """The page size and each CPU's (offset, size) of an uncompressed trace.dat, as its metadata says."""
    with km.mapped_trace_dat(str(path)) as data:
        dat = km.TraceDat(str(path), data)
        assert dat.decompressor is None
        return dat.page_size, [(cpu.offset, cpu.size) for cpu in dat.cpus if cpu.size]


def damaged(km, rng: random.Random, source: bytes, path: Path, kind: str) -> bytes:
    """A copy of a trace.dat with one kind of damage in its ring-buffer pages."""
    data = bytearray(source)
    if kind == "truncated":
        return bytes(data[: rng.randrange(len(data) // 2, len(data))])
    if kind == "flipped bytes":
        for _ in range(64):
            data[rng.randrange(len(data) // 3, len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    page_size, cpus = cpu_pages(km, path)
    offset, size = rng.choice([cpu for cpu in cpus if cpu[1] >= 3 * page_size])
    pages = size // page_size
    page = offset + rng.randrange(1, pages - 1) * page_size
    if kind == "clock far ahead":
        struct.pack_into("<Q", data, page, struct.unpack_from("<Q", data, page)[0] + 10**12)
    elif kind == "clock behind":
        struct.pack_into("<Q", data, page, struct.unpack_from("<Q", data, page)[0] // 2)
    elif kind == "pages swapped":
        other = offset + rng.randrange(pages) * page_size
        data[page : page + page_size], data[other : other + page_size] = data[other : other + page_size], data[page : page + page_size]
    elif kind == "page emptied":
        data[page + 8 : page + 16] = bytes(8)  # its commit: no data
    return bytes(data)


DAMAGE = ("truncated", "flipped bytes", "clock far ahead", "clock behind", "pages swapped", "page emptied")


@pytest.mark.parametrize("source", ["record-demo-dat/kernel-magnifier.data.xz", "trace-cmd/trace-v6.dat.xz", "trace-cmd/trace-v7-zstd.dat.xz",
                                    "arm64-6.12/arm64-16k-narrow-v6.dat.xz"])
def test_damaged_copies_same_json_and_messages(km, tmp_path, monkeypatch, windows, source):
    """Each kind of damage, three seeded copies each, at N = 2..8 in turn: the same JSON and messages as one process, or the same one-line error."""
    monkeypatch.chdir(tmp_path)
    rng = random.Random(f"{SEED} {source}")
    original = unpacked(DATA / source, tmp_path / "original.dat")
    kinds = DAMAGE[:2] if "zstd" in source else DAMAGE  # compressed: its pages' bytes are not at fixed places
    different = []
    for number in range(3 * len(kinds)):
        kind = kinds[number % len(kinds)]
        path = tmp_path / "damaged.dat"
        path.write_bytes(damaged(km, rng, original.read_bytes(), original, kind))
        jobs = 2 + number % 7
        if visualize(km, tmp_path, path, jobs) != visualize(km, tmp_path, path, 1):
            different.append(f"{kind} (copy {number}) -j {jobs}")
    assert not different, different
    if "zstd" not in source:  # (a damaged compressed file is read in one window: its chunks cannot be walked)
        assert len(windows["runs"]) >= len(kinds)  # most copies were still cut in windows


@pytest.mark.parametrize("source", ["trace-cmd/trace-v6.dat.xz", "whole-system/kernel-magnifier.data.xz", "trace-cmd/trace-v7-zstd.dat.xz"])
def test_windows_cut_at_random_places(km, tmp_path, monkeypatch, windows, source):
    monkeypatch.chdir(tmp_path)
    plain = unpacked(DATA / source, tmp_path / "trace.dat")
    reference = visualize(km, tmp_path, plain, 1)
    assert reference[0] == 0, reference[1]
    rng = random.Random(f"{SEED} {source}")
    for count in (1, 3, 7):
        shares = sorted(rng.random() for _ in range(count))
        monkeypatch.setenv("KM_SPLIT_AT", ",".join(map(repr, shares)))
        assert visualize(km, tmp_path, plain, 8) == reference, shares
    assert windows["runs"][0] == 2 and max(windows["runs"]) >= 6, windows["runs"]
    assert not windows["refused"], windows


def test_a_clock_that_jumps_ahead_is_read_on_by_the_process_before(km, tmp_path, monkeypatch, windows):
    """One page of CPU 1 stamped 1000 s later: every event after it on that CPU takes that time in the merge (a running maximum),
    so a window whose child started that CPU after the page would see earlier keys than one pass does: the process before refuses
    that child's result and reads on itself."""
    monkeypatch.chdir(tmp_path)
    plain = repeated(4, tmp_path / "trace.dat")
    page_size, cpus = cpu_pages(km, plain)
    offset, size = cpus[1]
    data = bytearray(plain.read_bytes())
    page = offset + (size // page_size // 5) * page_size  # a fifth into CPU 1's pages: in the first of 4 windows
    struct.pack_into("<Q", data, page, struct.unpack_from("<Q", data, page)[0] + 10**12)
    plain.write_bytes(bytes(data))
    reference = visualize(km, tmp_path, plain, 1)
    assert reference[0] == 0, reference[1]
    assert visualize(km, tmp_path, plain, 4) == reference
    assert windows["refused"], windows  # the jump was noticed at a seam


def test_default_windows_capped_by_the_work(km, tmp_path, monkeypatch):
    """Without -j: the cores available, but no window smaller than DAT_WINDOW_MIN_BYTES (a small file: one process)."""
    monkeypatch.delenv("KM_PARSE_PROCESSES", raising=False)
    monkeypatch.delenv("KM_SPLIT_AT", raising=False)
    monkeypatch.setattr(km, "jobs_wanted", None)
    monkeypatch.setattr(km, "parse_processes", lambda: 8)
    plain = unpacked(DATA / "trace-cmd/trace-v6.dat.xz", tmp_path / "trace.dat")

    def plan():
        with km.mapped_trace_dat(str(plain)) as data:
            dat = km.TraceDat(str(plain), data)
            return km.window_plan(dat, km.TraceParser(km.CallGraph()))

    assert plan() is None  # 5.9 MB: one window
    _, cpus = cpu_pages(km, plain)
    monkeypatch.setattr(km, "DAT_WINDOW_MIN_BYTES", sum(size for _, size in cpus) // 3)
    assert len(plan().times) == 2  # 3 windows: capped by the work, not the 8 cores
    monkeypatch.setattr(km, "parse_processes", lambda: 5)
    monkeypatch.setattr(km, "jobs_wanted", 5)  # -j 5 asks for 5, whatever the size
    assert len(plan().times) == 4


def test_the_process_before_reads_two_pages_of_the_next_window(km, tmp_path, monkeypatch):
    """To find where its window ends, a process reads each CPU's first page of the next window and the one after (where
    all of the first page's events came before the window's time), not a batch of up to 1,024 of that window's pages
    (a 10 M-event window was 17 ms slower for it)."""
    plain = repeated(4, tmp_path / "trace.dat")  # 480 pages per CPU
    monkeypatch.delenv("KM_PARSE_PROCESSES", raising=False)
    monkeypatch.setattr(km, "parse_processes", lambda: 2)
    read: list[tuple[int, int, int]] = []  # per batch: CPU, its first page, pages
    real_units = km.TraceDat.cpu_units

    def units(self, data, *args):
        for unit, chunk in real_units(self, data, *args):
            read.append((data.cpu, unit, len(chunk) // self.page_size))
            yield unit, chunk

    monkeypatch.setattr(km.TraceDat, "cpu_units", units)
    past_by_share = {}
    for share in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        monkeypatch.setenv("KM_SPLIT_AT", repr(share))
        with km.mapped_trace_dat(str(plain)) as data:
            dat = km.TraceDat(str(plain), data)
            parser = km.TraceParser(km.CallGraph())
            plan = km.window_plan(dat, parser)
            reading = km.DatReading(parser, dat, km.EventDecoder(dat), None)
            merge, _ = reading.merge(plan, 0)
            read.clear()
            reading.feed(merge.windows(plan.times[0]))
            pages = {cpu.cpu: cpu.size // dat.page_size for cpu in dat.cpus}
            boundary = {dat.cpus[index].cpu: unit for index, unit in plan.first_units[1].items()}
        assert reading.fed > 1000  # the first window's events were read
        past_by_share[share] = {cpu: sum(count for on, first, count in read if on == cpu and first >= unit) for cpu, unit in boundary.items()}
        assert all(pages[cpu] - boundary[cpu] > 20 for cpu in boundary), (share, pages, boundary)  # the next window has more than 2 pages to read
    assert all(past <= 2 for pasts in past_by_share.values() for past in pasts.values()), past_by_share
    assert any(past == 2 for pasts in past_by_share.values() for past in pasts.values()), past_by_share  # the second page was needed


def cli(trace: Path, out: Path, jobs: int, **options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SCRIPT), "visualize", "-i", str(trace), "-o", str(out), "--chart", "", "-j", str(jobs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options)


def cpu_ticks(pid: int) -> int:
    with contextlib.suppress(FileNotFoundError, ProcessLookupError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    return 0


def test_more_windows_than_cores_on_one_core(tmp_path):
    """-j 8 on one core: eight windows, one process at work at a time (the others wait for the core), the same JSON; no deadlock."""
    trace = repeated(8, tmp_path / "trace.dat")
    alone = cli(trace, tmp_path / "alone.json", 1)
    alone.communicate(timeout=120)
    one_core = cli(trace, tmp_path / "eight.json", 8, preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    _, stderr = one_core.communicate(timeout=120)
    assert one_core.returncode == 0, stderr
    assert (tmp_path / "eight.json").read_bytes() == (tmp_path / "alone.json").read_bytes()


def test_a_worker_killed_at_work_leaves_no_one_waiting(tmp_path):
    """On one core, -j 4: the worker that holds the core is killed (as the out-of-memory killer would): the others do not wait
    for its core for ever (the parent's thread gives it back), the process before reads its window itself: the same JSON."""
    trace = repeated(24, tmp_path / "trace.dat")
    alone = cli(trace, tmp_path / "alone.json", 1)
    alone.communicate(timeout=120)
    process = cli(trace, tmp_path / "four.json", 4, preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
        working = [pid for pid in children_of(process.pid) if cpu_ticks(pid) > 5]  # at work for 50 ms
        victim = working[0] if working else None
    assert victim is not None, "no worker at work"
    os.kill(victim, signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert (tmp_path / "four.json").read_bytes() == (tmp_path / "alone.json").read_bytes()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stop_signal_ends_every_window_worker(tmp_path, stop):
    """Ctrl-C (to the process group) or SIGTERM (to the parent alone) during a -j 4 read: status 130 within a second, no worker left."""
    trace = repeated(120, tmp_path / "trace.dat")
    # (a test runner started in the background ignores SIGINT, and so would the CLI: Python then sets no handler)
    process = cli(trace, tmp_path / "out.json", 4, start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    stop_amid_workers(process, stop, 3)  # the parent reads the first window itself
    assert sorted(path.name for path in tmp_path.iterdir()) == ["trace.dat"]
