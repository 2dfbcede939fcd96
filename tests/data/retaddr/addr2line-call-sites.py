#!/usr/bin/env python3
"""Independent reading of the call sites in a funcgraph-retaddr text trace, for tests: every distinct
`/* <-caller+0xOFF/0xSIZE */` resolved with binutils (nm for the symbol's address, addr2line -i for the line of the
call: the innermost frame of the return address - 1). Writes "caller+0xoff/0xsize<TAB>path:line" per site, paths
relative to the kernel tree. Not used by kernel-magnifier: it checks it."""
import re
import subprocess
import sys

trace, vmlinux, tree = sys.argv[1:4]
sites = sorted(set(re.findall(r"/\* <-([\w.]+)\+0x([0-9a-f]+)/0x([0-9a-f]+)[ *]", open(trace, errors="replace").read())))
symbols: dict[str, list[tuple[int, int]]] = {}
for line in subprocess.run(["nm", "-S", "--defined-only", vmlinux], capture_output=True, text=True, check=True).stdout.splitlines():
    parts = line.split()
    if len(parts) == 4 and parts[2] in "tTwW":
        symbols.setdefault(parts[3], []).append((int(parts[0], 16), int(parts[1], 16)))
queries, kept = [], []
for name, off, size in sites:
    # ftrace prints the distance to the next kallsyms symbol: at least the ELF size, more when padding follows
    copies = [addr for addr, sz in symbols.get(name, []) if sz <= int(size, 16) and int(off, 16) <= sz]
    if len(copies) > 1:
        copies = [addr for addr, sz in symbols.get(name, []) if sz == int(size, 16)]
    if len(copies) != 1:
        print(f"skipped {name}+0x{off}/0x{size}: {len(copies)} symbols of that size", file=sys.stderr)
        continue
    queries.append(hex(copies[0] + int(off, 16) - 1))
    kept.append(f"{name}+0x{off}/0x{size}")
out = subprocess.run(["addr2line", "-i", "-a", "-e", vmlinux], input="\n".join(queries) + "\n",
                     capture_output=True, text=True, check=True).stdout.splitlines()
# -a prints the address, then one "file:line" per frame, innermost first
answers, current = [], None
for line in out:
    if line.startswith("0x"):
        current = []
        answers.append(current)
    else:
        current.append(line)
for site, frames in zip(kept, answers):
    where = re.sub(r" \(discriminator \d+\)$", "", frames[0])
    print(f"{site}\t{where.removeprefix(tree.rstrip('/') + '/').removeprefix('./')}")
