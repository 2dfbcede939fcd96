#!/usr/bin/env python3
"""Print, as JSON, every tracefs setting record may touch (run in the guest before and after recording).

Whatever exists on this kernel is read (files differ by version): the top-level
settings, every option, every event's enable and filter, per-CPU buffer sizes
and the list of instances. The matrix test compares the before and after copies.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

TRACEFS = Path("/sys/kernel/tracing")
SETTINGS = [
    "current_tracer", "tracing_on", "tracing_cpumask", "buffer_size_kb", "trace_clock", "set_ftrace_filter", "set_ftrace_notrace",
    "set_graph_function", "set_graph_notrace", "max_graph_depth", "set_ftrace_pid", "set_ftrace_notrace_pid", "set_event_pid",
    "set_event", "set_event_notrace_pid", "saved_cmdlines_size", "tracing_thresh", "trace_options",
]


def read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def snapshot() -> dict[str, str | None]:
    state: dict[str, str | None] = {name: read(TRACEFS / name) for name in SETTINGS if (TRACEFS / name).exists()}
    for option in sorted((TRACEFS / "options").iterdir()):
        state[f"options/{option.name}"] = read(option)
    for enable in sorted((TRACEFS / "events").glob("**/enable")):
        state[str(enable.relative_to(TRACEFS))] = read(enable)
    for event_filter in sorted((TRACEFS / "events").glob("*/*/filter")):
        state[str(event_filter.relative_to(TRACEFS))] = read(event_filter)
    for cpu in sorted((TRACEFS / "per_cpu").iterdir()):
        state[f"per_cpu/{cpu.name}/buffer_size_kb"] = read(cpu / "buffer_size_kb")
    state["instances"] = " ".join(sorted(os.listdir(TRACEFS / "instances")))
    return state


if __name__ == "__main__":
    json.dump(snapshot(), sys.stdout, indent=1, sort_keys=True)
