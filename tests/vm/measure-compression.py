"""Size, time and loss of record's trace.dat, version 6 against version 7 (compressed), in the QEMU guest.

tests/vm/run-in-vm.sh --kernel DIR --out DIR -- python3 tests/vm/measure-compression.py [BUFFER_KB]
The load and the place are test_loss_vs_trace_cmd.py's (loopback TCP echo and dd loops; a tmpfs in
the guest's memory); the function tracer, the whole system, 2 s, the default buffer or BUFFER_KB per
CPU (a small one, to see that the loss stays what it was); the formats alternate, 3 rounds;
trace-cmd record's version 7 (zstd) of the same load is shown beside. The table goes to
$OUT/compression-table[-BUFFER_KB].md.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from conftest import SCRIPT  # noqa: E402
from test_loss_vs_trace_cmd import loss_share  # noqa: E402

ROUNDS = 3
SECONDS = "2"


def ours(place: Path, form: str, buffer: list[str]) -> dict[str, float]:
    output = place / "km.dat"
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(SCRIPT), "record", "-p", "function", *buffer, "--format", form, "--record-time", SECONDS, "-o", str(output)],
                            capture_output=True, text=True, timeout=900, cwd=place)
    wall = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    compressed = re.search(r"compressed in ([\d.]+) s", result.stdout)
    pages = re.search(r"Compressing ([\d.]+) MiB", result.stdout)
    run = {"size": output.stat().st_size / 2**20, "wall": wall, "loss": loss_share(output),
           "compress": float(compressed.group(1)) if compressed else 0.0, "pages": float(pages.group(1)) if pages else 0.0}
    print(form, run, result.stdout, flush=True)
    output.unlink()
    return run


def trace_cmds(place: Path, buffer: list[str]) -> float:
    output = place / "tc.dat"
    subprocess.run(["trace-cmd", "record", "-p", "function", *buffer, "--file-version", "7", "--compression", "zstd", "-o", str(output), "sleep", SECONDS],
                   capture_output=True, text=True, timeout=900, cwd=place, check=True)
    size = output.stat().st_size / 2**20
    output.unlink()
    return size


@contextlib.contextmanager
def tmpfs_and_load() -> Iterator[Path]:
    """test_loss_vs_trace_cmd.py's place (a tmpfs in the guest's memory) and load (tcp echo, dd loop)."""
    place = Path(tempfile.mkdtemp())
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=768m", "tmpfs", str(place)], check=True)
    processes = [subprocess.Popen([sys.executable, str(HERE / "tcp_echo.py"), "1024"], start_new_session=True)]
    processes += [subprocess.Popen(["sh", "-c", "while :; do dd if=/etc/os-release of=/dev/null status=none; done"], start_new_session=True)]
    time.sleep(1)
    try:
        yield place
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        subprocess.run(["umount", str(place)], check=True)


def main() -> None:
    buffer = ["-b", sys.argv[1]] if len(sys.argv) > 1 else []
    runs: dict[str, list[dict[str, float]]] = {"trace.dat-v6": [], "trace.dat": []}
    theirs = []
    with tmpfs_and_load() as place:
        for _ in range(ROUNDS):
            for form in runs:
                runs[form].append(ours(place, form, buffer))
            theirs.append(trace_cmds(place, buffer))

    def median(form: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[form])

    def each(form: str, key: str, fmt: str) -> str:
        return ", ".join(format(run[key], fmt) for run in runs[form])

    lines = [
        f"record -p function, whole system, {SECONDS} s, {' '.join(buffer) or 'default buffer'}, tcp echo + dd load, {ROUNDS} rounds alternating"
        f" (Debian {os.uname().release}, QEMU TCG, 2 vCPUs, tmpfs); medians (runs):", "",
        "| | file MiB | record's wall time s | compressing s | lost |", "|---|---|---|---|---|",
    ]
    for form in runs:
        lines.append(f"| --format {form} | {median(form, 'size'):.1f} ({each(form, 'size', '.1f')}) | {median(form, 'wall'):.1f} ({each(form, 'wall', '.1f')})"
                     f" | {median(form, 'compress'):.1f} ({each(form, 'compress', '.1f')}) | {median(form, 'loss'):.1%} ({each(form, 'loss', '.1%')}) |")
    lines += ["", f"pages compressed (MiB): {each('trace.dat', 'pages', '.1f')}; trace-cmd record --file-version 7 --compression zstd of the same load:"
              f" {statistics.median(theirs):.1f} MiB ({', '.join(f'{s:.1f}' for s in theirs)})", ""]
    table = "\n".join(lines)
    Path(os.environ.get("OUT", "/tmp"), f"compression-table{'-' + sys.argv[1] if buffer else ''}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
