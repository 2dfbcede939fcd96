#!/usr/bin/env python3
"""How fast the explorer page (visualize -o NAME.html) opens and reacts in headless chromium (issue 20, point 7).

    python bench/explorer-open.py                       # the largest real recording, 5 runs
    python bench/explorer-open.py -i tests/data/record-demo-dat/kernel-magnifier.data.xz --runs 3

Makes the page with the tool, then opens it RUNS times in Debian's chromium
driven by Selenium (as the tests do) and prints, per run and as medians, in
milliseconds from the navigation's start (performance.timing / performance.now):
the load event (the page's script has run: every view is mounted and the
first one drawn) and two frames later (drawn), and the reaction of the call tree to real
input: the time from the input event to the frame after its handler (a listener
in the capture phase notes the event's timeStamp; a requestAnimationFrame then a
task after it note when that frame is done). Also the file's size and how many
call paths it embeds. Times vary with the machine's load: the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# Installed before each input: the reaction is the time from the event to the frame after its handler ran.
WATCH = """
window.__reaction = null;
const kinds = arguments[0];
const watch = (event) => {
  const start = event.timeStamp;
  kinds.forEach((kind) => window.removeEventListener(kind, watch, true));
  requestAnimationFrame(() => setTimeout(() => { window.__reaction = performance.now() - start; }));
};
kinds.forEach((kind) => window.addEventListener(kind, watch, true));
"""

OPENED = """
const done = arguments[arguments.length - 1];
requestAnimationFrame(() => requestAnimationFrame(() => {
  const t = performance.timing;
  done({load: t.loadEventEnd - t.navigationStart, drawn: performance.now(),
        paths: KM.nodes.length - 1, merged: D.left_out, cap: D.cap});
}));
"""


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def make_page(args: argparse.Namespace, out: Path) -> None:
    command = [sys.executable, str(ROOT / "kernel-magnifier.py"), "visualize", "-o", str(out), "--chart", ""]
    for path in args.input:
        command += ["-i", path]
    if args.symbol_map:
        command += ["--symbol-map", args.symbol_map]
    subprocess.run(command, check=True, capture_output=True, text=True)


def browser(profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def reaction(driver, kinds: list[str], act) -> float:
    """The milliseconds from the input event to the frame after its handler."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script(WATCH, kinds)
    act()
    return WebDriverWait(driver, 30, poll_frequency=0.02).until(lambda d: d.execute_script("return window.__reaction"))


def one_run(driver, page: Path) -> dict:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    driver.get("about:blank")  # a fresh navigation each run
    driver.get(page.as_uri())
    opened = driver.execute_async_script(OPENED)
    errors = driver.get_log("browser")
    if errors:
        raise SystemExit(f"console messages: {errors}")
    keys = ActionChains(driver)
    times = {
        "load": opened["load"], "drawn": opened["drawn"],
        "tree tab": reaction(driver, ["click"], lambda: driver.find_element("id", "tab-tree").click()),
        "key Down": reaction(driver, ["keydown"], lambda: keys.send_keys(Keys.ARROW_DOWN).perform()),
        "key h": reaction(driver, ["keydown"], lambda: keys.send_keys("h").perform()),
        "fold click": reaction(driver, ["click"], lambda: driver.find_element("css selector", "#tree-box .tv-list .tv-tri").click()),
        "search '.'": reaction(driver, ["input"], lambda: driver.find_element("id", "tree-search").send_keys(".")),
        "key n": reaction(driver, ["keydown"], lambda: (driver.find_element("id", "tree-box").click(), keys.send_keys("n").perform())),
    }
    return {"times": times, "paths": opened["paths"], "merged": opened["merged"], "cap": opened["cap"]}


def cell(value: float | None) -> str:
    return f"{value:12.0f}" if value is not None else f"{'-':>12}"


def median(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", "--input", action="append", help="default: tests/data/fg-abstime-proc/trace.txt.xz (~23,000 call paths)")
    parser.add_argument("--symbol-map")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    args.input = args.input or [str(ROOT / "tests/data/fg-abstime-proc/trace.txt.xz")]
    scratch = Path(tempfile.mkdtemp(prefix="km-bench-explorer-"))
    try:
        page = scratch / "explorer.html"
        make_page(args, page)
        data = json.loads(re.search(r'id="data">(.*?)</script>', page.read_text(), re.S)[1].replace("<\\/", "</"))
        print(f"page: {page.stat().st_size / 1e6:.2f} MB for {', '.join(os.path.basename(p) for p in args.input)}; "
              f"{len(data['fn']) - 1:,} call paths embedded, {data['left_out']:,} merged (cap {data['cap']:,}); load average {load_average()}")
        driver = browser(str(scratch / "profile"))
        try:
            runs = [one_run(driver, page) for _ in range(args.runs)]
        finally:
            driver.quit()
        names = list(runs[0]["times"])
        print("ms from navigation start (load: the script has run; drawn: two frames later) or from the input event to the next frame:")
        print("  " + "".join(f"{name:>12}" for name in names))
        for run in runs:
            print("  " + "".join(cell(run["times"][name]) for name in names))
        print("median" + "".join(cell(median([run["times"][name] for run in runs])) for name in names)[4:])
        print(f"load average after: {load_average()}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
