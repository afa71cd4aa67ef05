"""Open a self-contained HTML page (the leaderboard) in headless Chromium and check that it renders.

    python -m scripts.check_html results/leaderboard.html --screenshot results/leaderboard.png

Checks, from the DOM after the page's scripts ran and from the browser's console log:
- it has tables with rows, and every <img> is an embedded data: image;
- the console is empty: no script error and no blocked request (the page's Content-Security-Policy
  forbids every fetch but data: images, and the browser logs each blocked attempt there);
- the page names no remote resource (http:, https: or protocol-relative src/href, @import, url()).
Writes a screenshot and `<page>.check.json` (what was found); exits 1 on any problem.
Needs Chromium (Debian: `apt install chromium`); the browser's own background requests are
switched off by flags and are not the page's.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
    "--disable-extensions", "--enable-logging=stderr", "--v=0",
)  # fmt: skip
CONSOLE = re.compile(r"CONSOLE[^\]]*\] (.*)")
REMOTE = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//)|@import|url\(\s*["']?\s*(?:https?:|//)""", re.I)


class _Census(HTMLParser):
    """Counts tables, body rows and images (and which images are not embedded)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables = self.rows = self.images = 0
        self.remote_images: list[str] = []
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables += 1
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows += 1
        elif tag == "img":
            self.images += 1
            src = dict(attrs).get("src") or ""
            if not src.startswith("data:image/"):
                self.remote_images.append(src[:80])

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    sys.exit("no Chromium found: install it (Debian: apt install chromium)")


def run(page: Path, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()], capture_output=True, text=True, timeout=120)


def check(page: Path, screenshot: Path | None) -> dict:
    dom = run(page, "--virtual-time-budget=5000", "--dump-dom")
    census = _Census()
    census.feed(dom.stdout)
    found = {
        "page": str(page),
        "browser": subprocess.run([chromium(), "--version"], capture_output=True, text=True).stdout.strip(),
        "tables": census.tables,
        "table_rows": census.rows,
        "images": census.images,
        "images_not_embedded": census.remote_images,
        "console": CONSOLE.findall(dom.stderr),
        "remote_references": REMOTE.findall(page.read_text()),
    }
    if screenshot is not None:
        shot = run(page, "--virtual-time-budget=5000", "--hide-scrollbars", "--window-size=1400,2000", f"--screenshot={screenshot.resolve()}")
        found["screenshot"] = str(screenshot) if screenshot.is_file() else f"failed: {shot.stderr[-300:]}"
    problems = []
    if dom.returncode != 0:
        problems.append(f"chromium exited {dom.returncode}")
    if not census.tables or not census.rows:
        problems.append("no table rows rendered")
    problems += [f"console: {line}" for line in found["console"]]
    problems += [f"not embedded: {src}" for src in census.remote_images]
    problems += [f"remote reference: {ref}" for ref in found["remote_references"]]
    if screenshot is not None and not screenshot.is_file():
        problems.append("no screenshot written")
    found["problems"] = problems
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--screenshot", type=Path, help="write a PNG of the page's first 1400×2000 pixels")
    args = parser.parse_args()
    found = check(args.page, args.screenshot)
    report = args.page.with_name(args.page.name + ".check.json")
    report.write_text(json.dumps(found, indent=1) + "\n")
    print(json.dumps({k: v for k, v in found.items() if k != "console"} | {"console_lines": len(found["console"])}, indent=1))
    sys.exit(1 if found["problems"] else 0)


if __name__ == "__main__":
    main()
