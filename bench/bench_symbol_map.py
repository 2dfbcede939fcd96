#!/usr/bin/env python3
"""Benchmark generate-symbol-map against the dwarfdump run alone (the floor) on a real vmlinux.

    python bench/bench_symbol_map.py -k /usr/lib/debug/boot/vmlinux-6.1.0-56-amd64 --rounds 3
    python bench/bench_symbol_map.py -k VMLINUX --script /tmp/old-kernel-magnifier.py   # an older version, for before/after
    python bench/bench_symbol_map.py -k VMLINUX -m MODULE_DIR   # with modules: the floor dumps every module file too

Runs are interleaved (dwarfdump alone, then the tool) so that a busy machine
slows both alike; the medians and their ratio are printed. The floor is what
the tool runs: the whole DWARF tree (the inlined calls and call sites need it);
--depth-1 dumps only the top level, as versions before inlined calls did.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", "--vmlinux", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-m", "--modules", action="append", default=[], help="a folder of module debug files, passed to the tool and dumped in the floor")
    parser.add_argument("--script", default=str(ROOT / "kernel-magnifier.py"), help="the kernel-magnifier.py to time (default: this checkout's)")
    parser.add_argument("--depth-1", action="store_true", help="the floor dumps the top level only (for versions before inlined calls)")
    args = parser.parse_args()
    dwarfdump = shutil.which("llvm-dwarfdump")
    if dwarfdump is None:
        sys.exit("llvm-dwarfdump not found")
    depth = ["--recurse-depth=1"] if args.depth_1 else []
    modules = sorted(str(path) for folder in args.modules for path in Path(folder).rglob("*.ko"))
    module_options = [option for folder in args.modules for option in ("-m", folder)]
    alone, tool = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.rounds):
            alone.append(timed([dwarfdump, "--debug-info", *depth, args.vmlinux, *modules]))
            tool.append(timed([sys.executable, args.script, "generate-symbol-map", "-k", args.vmlinux, *module_options, "-o", f"{scratch}/map"]))
    dump, ours = statistics.median(alone), statistics.median(tool)
    print(f"llvm-dwarfdump alone    median {dump:6.1f} s  runs {', '.join(f'{t:.1f}' for t in alone)}")
    print(f"generate-symbol-map     median {ours:6.1f} s  runs {', '.join(f'{t:.1f}' for t in tool)}")
    print(f"ratio                   {ours / dump:.2f}x")


if __name__ == "__main__":
    main()
