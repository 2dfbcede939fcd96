"""The .json output against docs/schema.json (JSON Schema draft 2020-12), with the jsonschema package.

Every bundled real recording that has calls, and the option combinations that add keys (--root with a symbol map's
inlines, --callers, --wakers, --baseline, --errors, a filter's entry callers, --time-window), each validated; every key
the schema describes is seen in one of them (so the schema holds no key the writer dropped), and a key the schema does
not know fails (so a key added to the writer forces the schema's update).
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import pytest
from conftest import DATA, SCRIPT, run_cli

jsonschema = pytest.importorskip("jsonschema")  # requirements-dev.txt

SCHEMA_PATH = SCRIPT.parent / "docs" / "schema.json"
INLINES_MAP = DATA / "symbol-map-inlines-6.1.0-56-amd64.map.xz"
MAP = DATA / "symbol-map-6.1.0-56-amd64.map.xz"

RECORDINGS = {
    "record-trace.dat": DATA / "record-demo-dat" / "kernel-magnifier.data.xz",
    "record-text": DATA / "record-demo" / "kernel-magnifier.data.xz",
    "record-text-large": DATA / "record-demo-large" / "kernel-magnifier.data.xz",
    "fg-default": DATA / "fg-default" / "trace.txt.xz",
    "fg-abstime-proc": DATA / "fg-abstime-proc" / "trace.txt.xz",
    "fg-cpumask": DATA / "fg-cpumask" / "trace.txt.xz",
    "fg-graphfunc": DATA / "fg-graphfunc" / "trace.txt.xz",
    "fg-newer-kernel": DATA / "fg-newer-kernel" / "trace-default.txt.xz",
    "function-newer-kernel": DATA / "fg-newer-kernel" / "function-default.txt.xz",
    "fg-overflow-pipe": DATA / "fg-overflow-pipe" / "trace.txt.xz",
    "function-tracer": DATA / "function-tracer" / "trace.txt.xz",
    "function-irq-info-off": DATA / "function-variants" / "irq-info-off.txt.xz",
    "function-record-tgid": DATA / "function-variants" / "record-tgid.txt.xz",
    "lost-rule-graph-proc": DATA / "lost-rule" / "6.1-graph-proc-1.data.xz",
    "lost-rule-graph-all": DATA / "lost-rule" / "7.3-graph-all-1.data.xz",
    "lost-rule-function": DATA / "lost-rule" / "7.3-function-1.data.xz",
    "retval-hex": DATA / "retval" / "retval-hex.txt.xz",
    "sched-abstime-proc": DATA / "sched" / "fg-sched-abstime-proc.txt.xz",
    "sched-abstime-proc-7.3": DATA / "sched" / "fg-sched-abstime-proc-7.3.txt.xz",
    "sched-default": DATA / "sched" / "fg-sched-default.txt.xz",
    "sched-function": DATA / "sched" / "function-sched.txt.xz",
    "sched-trace-cmd-6.1": DATA / "sched" / "tc-fg-sched-6.1.dat.xz",
    "sched-trace-cmd-7.3": DATA / "sched" / "tc-fg-sched-7.3.dat.xz",
    "trace-cmd-v6": DATA / "trace-cmd" / "trace-v6.dat.xz",
    "trace-cmd-v7": DATA / "trace-cmd" / "trace-v7-zstd.dat.xz",
    "trace-cmd-hidden-drop": DATA / "trace-cmd" / "hidden-drop-v6.dat.xz",
    "trace-cmd-report": DATA / "trace-cmd" / "report-head.txt.xz",
    "trace-cmd-report-tail": DATA / "trace-cmd" / "report-tailprint.txt.xz",
    "latency-irqsoff": DATA / "latency" / "irqsoff-latency-format.txt.xz",
    "latency-irqsoff-plain": DATA / "latency" / "irqsoff.txt.xz",
    "latency-irqsoff-graph": DATA / "latency" / "irqsoff-graph-latency-format.txt.xz",
}

# The option combinations, each with what its JSON must show (so that the schema's part for it is exercised).
COMBINATIONS = {
    "root-inlines": (["-i", str(RECORDINGS["record-trace.dat"]), "--root", "tcp_sendmsg", "--depth", "3", "--symbol-map", str(INLINES_MAP)],
                     lambda doc: any("inlines_not_traced" in node for node in doc["nodes"]) and any(node["files"] for node in doc["nodes"])),
    "callers": (["-i", str(RECORDINGS["sched-abstime-proc"]), "--callers", "kfree", "--depth", "2"],
                lambda doc: doc["stats"]["reversed"] and any("own" in node for node in doc["nodes"])),
    "wakers": (["-i", str(RECORDINGS["sched-abstime-proc"]), "--wakers", "tcp_recvmsg"], lambda doc: doc["stats"]["wakers"]),
    "baseline": (["-i", str(RECORDINGS["lost-rule-graph-proc"]), "--baseline", str(DATA / "lost-rule" / "6.1-graph-proc-2.data.xz")],
                 lambda doc: doc["baseline"]["only_in_baseline"] and all("change" in node for node in doc["nodes"])),
    "errors-trace.dat": (["-i", str(DATA / "retval" / "retval.dat.xz"), "--errors"],
                         lambda doc: any(path["passed_up_by"] for entry in doc["errors"] for path in entry["paths"])),
    "errors-text": (["-i", str(DATA / "retval" / "retval-proc.txt.xz"), "--errors", "--symbol-map", str(MAP)], lambda doc: doc["errors"]),
    "filter-entry-callers": (["-i", str(RECORDINGS["fg-default"]), "--filter-module", "9pnet"],
                             lambda doc: doc["entry_callers"] and all(node.get("module") == "9pnet" for node in doc["nodes"])),
    "time-window": (["-i", str(RECORDINGS["fg-abstime-proc"]), "--time-window", "0,99999999"],
                    lambda doc: doc["stats"]["filter_notes"][0].startswith("--time-window")),
    "stdout": (["-i", str(RECORDINGS["trace-cmd-report"]), "--heat", "calls"], lambda doc: doc["stats"]["heat"] == "calls"),
    "call-sites": (["-i", str(DATA / "retaddr" / "retaddr.txt.xz"), "--symbol-map", str(DATA / "retaddr" / "symbol-map-7.3.4-retaddr-cut.map.xz")],
                   lambda doc: any(site["line"] for edge in doc["edges"] for site in edge.get("call_sites", []))
                   and any("call_sites" in node for node in doc["call_tree"])),
    "group-by": (["-i", str(RECORDINGS["sched-abstime-proc"]), "--group-by", "dir", "--symbol-map", str(MAP), "--baseline", str(RECORDINGS["fg-default"])],
                 lambda doc: doc["stats"]["group_by"] == "dir" and all(node["group"] and node["members"] for node in doc["nodes"])),
    "call-sites-trace.dat": (["-i", str(DATA / "retaddr" / "retaddr.dat.xz")],
                             lambda doc: any(edge.get("call_sites") for edge in doc["edges"])),
}


@functools.cache
def validator() -> object:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@functools.cache
def output_of(case: str, directory: str) -> dict:
    """The JSON one case writes (-o out.json; the "stdout" case through -o - --output-format json), made once."""
    args = ["-i", str(RECORDINGS[case])] if case in RECORDINGS else COMBINATIONS[case][0]
    target = ["-o", "-", "--output-format", "json"] if case == "stdout" else ["-o", f"{case}.json"]
    result = run_cli("visualize", *args, *target, "--chart", "", cwd=Path(directory))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout if case == "stdout" else (Path(directory) / f"{case}.json").read_text())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("json-schema"))


def schema_errors(doc: dict) -> list[str]:
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message[:300]}" for error in validator().iter_errors(doc)]


@pytest.mark.parametrize("case", RECORDINGS)
def test_every_bundled_recording_validates(case, workdir):
    doc = output_of(case, workdir)
    assert doc["schema_version"] == 1
    assert schema_errors(doc) == []


@pytest.mark.parametrize("case", COMBINATIONS)
def test_option_combinations_validate(case, workdir):
    doc = output_of(case, workdir)
    assert COMBINATIONS[case][1](doc), f"{case}: the run does not show what it is here for"
    assert schema_errors(doc) == []


def described_keys(schema: dict) -> set[tuple[str, str]]:
    """(object, key) for every property the schema names: the top level as "", each $defs object by its name."""
    keys = {("", key) for key in schema["properties"]}
    for name, definition in schema["$defs"].items():
        keys |= {(name, key) for key in definition.get("properties", {})}
    return keys


def seen_keys(doc: dict) -> set[tuple[str, str]]:
    """(object, key) for every key a JSON has, its objects named as the schema's $defs name them."""
    seen = {("", key) for key in doc}
    lists = {"nodes": "node", "edges": "edge", "call_tree": "call_path", "errors": "errno_entry", "wakeups": "wakeup"}
    objects: list[tuple[str, dict]] = [("stats", doc["stats"])]
    objects += [("sched_summary", doc["stats"]["sched"])] if doc["stats"]["sched"] else []
    objects += [("latency_trace", found) for found in doc["stats"]["latency_traces"]]
    objects += [("baseline", doc["baseline"])] if "baseline" in doc else []
    for key, name in lists.items():
        objects += [(name, item) for item in doc.get(key) or []]
    objects += [("errno_path", path) for entry in doc.get("errors", []) for path in entry["paths"]]
    objects += [("function_numbers", node[key]) for node in doc["nodes"] for key in ("own", "baseline") if key in node]
    objects += [("group_member", member) for node in doc["nodes"] for member in node.get("members", [])]
    for name, value in objects:
        seen |= {(name, key) for key in value}
    return seen


def test_every_described_key_is_written_somewhere(workdir):
    """No key in the schema that no output has (a key the writer dropped, or a typo)."""
    schema = json.loads(SCHEMA_PATH.read_text())
    seen: set[tuple[str, str]] = set()
    for case in [*RECORDINGS, *COMBINATIONS]:
        seen |= seen_keys(output_of(case, workdir))
    assert described_keys(schema) - seen == set()


def test_an_undescribed_key_or_a_missing_one_fails(workdir):
    """What the schema is for: a key added anywhere (the top, a node, an edge, a call path, stats) or one taken away
    makes the JSON invalid, so the writer cannot change shape without docs/schema.json."""
    doc = output_of("sched-abstime-proc", workdir)
    assert schema_errors(doc) == []
    changes = {
        "top": lambda d: d.update(latency_trace={}),
        "node": lambda d: d["nodes"][0].update(extra=1),
        "edge": lambda d: d["edges"][0].update(extra=1),
        "call path": lambda d: d["call_tree"][0].update(depth=1),
        "stats": lambda d: d["stats"].update(extra=1),
        "sched": lambda d: d["stats"]["sched"].update(extra=1),
        "wakeup": lambda d: d["wakeups"][0].update(extra=1),
        "no schema_version": lambda d: d.pop("schema_version"),
        "another version": lambda d: d.update(schema_version=2),
        "no self time": lambda d: d["nodes"][0].pop("self_time_us"),
        "a time as text": lambda d: d["nodes"][0].update(total_time_us="12 us"),
    }
    for what, change in changes.items():
        changed = copy.deepcopy(doc)
        change(changed)
        assert schema_errors(changed), what


def test_schema_is_in_the_man_page_and_the_docs():
    """The schema's place is named where a user looks: the man page's SEE ALSO and docs/formats.md."""
    root = SCRIPT.parent
    assert "docs/schema.json" in (root / "docs" / "kernel-magnifier.1").read_text()
    assert "docs/schema.json" in (root / "docs" / "formats.md").read_text()
