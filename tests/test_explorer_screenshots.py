"""The README's screenshots of the explorer page, taken in chromium on the bundled demo.

`KM_SCREENSHOTS=docs/images pytest tests/test_explorer_screenshots.py` writes
docs/images/explorer-VIEW.png (else they go to the test's own directory). The
page is made with the README's own command; tcp_sendmsg is selected (its
callers and callees: release_sock, which has several callers), the call tree
unfolded along the heaviest path ("h"), the focused graph is "what it calls", 2 levels.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path

from conftest import DATA, ROOT, run_cli

# (screenshot, the tab as the page names it, the function selected): explorer-graph.png ...
SHOTS = (("graph", "graph", "tcp_sendmsg"), ("focus", "graph", "tcp_sendmsg"), ("tree", "tree", "tcp_sendmsg"),
         ("peek", "peek", "release_sock"), ("flame", "flame", "tcp_sendmsg"))


def readme_explorer_page(cwd: Path) -> Path:
    """The page the README makes: `visualize -i ... --symbol-map ... -o explorer.html --chart ''`, run from the repository."""
    result = run_cli("visualize", "-i", "tests/data/record-demo-dat/kernel-magnifier.data.xz", "--symbol-map",
                     "tests/data/symbol-map-6.1.0-56-amd64.map.xz", "-o", str(cwd / "explorer.html"), "--chart", "", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return cwd / "explorer.html"


def screenshot_dir(tmp_path: Path) -> Path:
    wanted = os.environ.get("KM_SCREENSHOTS")
    if not wanted:
        return tmp_path
    target = Path(wanted) if Path(wanted).is_absolute() else ROOT / wanted
    target.mkdir(parents=True, exist_ok=True)
    return target


def colours_in(png: bytes, box: dict) -> Counter:
    """How many pixels of each colour the screenshot has inside box (CSS px; the fixture's device pixel ratio is 1)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    left, top = max(0, int(box["left"])), max(0, int(box["top"]))
    right, bottom = min(image.width, int(box["right"])), min(image.height, int(box["bottom"]))
    assert right - left > 200 and bottom - top > 20, box
    crop = image.crop((left, top, right, bottom))
    return Counter({colour: n for n, colour in crop.getcolors(maxcolors=crop.width * crop.height)})


def test_readme_screenshots_of_each_view(tmp_path, browser):
    from selenium.webdriver import ActionChains

    assert DATA.is_dir()
    browser.get(readme_explorer_page(tmp_path).as_uri())
    browser.execute_script("KM.select('tcp_sendmsg', null)")
    assert browser.find_element("id", "selname").text == "tcp_sendmsg"
    out = screenshot_dir(tmp_path)
    for shot, view, name in SHOTS:
        browser.execute_script("KM.select(arguments[0], null)", name)
        browser.find_element("id", f"tab-{view}").click()
        if shot == "focus":
            levels = browser.find_element("id", "g-depth")
            levels.clear()
            levels.send_keys("2")
            browser.find_element("id", "g-callees").click()
        if view == "tree":
            ActionChains(browser).send_keys("h").perform()  # unfold the heaviest path below the selection
        browser.execute_script("window.scrollTo(0, 0)")
        png = browser.get_screenshot_as_png()
        (out / f"explorer-{shot}.png").write_bytes(png)
        box = browser.execute_script(
            "const r = document.getElementById('view-' + arguments[0]).getBoundingClientRect();"
            " return {left: r.left, top: r.top, right: r.right, bottom: Math.min(r.bottom, window.innerHeight)}", view)
        counts = colours_in(png, box)
        area = sum(counts.values())
        # not blank: besides the background, several colours each over a visible share of the view (not just a line of text)
        background, _ = counts.most_common(1)[0]
        drawn = [colour for colour, n in counts.items() if colour != background and n >= 0.002 * area]
        assert len(drawn) >= 3, (shot, counts.most_common(6))
    assert browser.get_log("browser") == []

