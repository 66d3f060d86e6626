"""Render a run's report.html in headless Chromium and check that the page draws.

    apt-get install -y chromium        # once; Debian's package, no download at run time
    python bench/report_screenshot.py out/lenet300/report.html [--png out/lenet300/report.png]

Takes a full-width screenshot with Chromium's own --screenshot (no driver, no network: the
page has no external resource), then prints one JSON line: the screenshot's size, how much of
it is not background (a blank or broken page is nearly all one colour), and whether the history
plot and every section are in the page. Exits 1 when the page does not draw.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

SECTIONS = ("summary", "layers", "history", "distributions", "bars")


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 4200) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        raise SystemExit("no Chromium here: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--screenshot={png}",
                        page.resolve().as_uri()], check=True, capture_output=True, timeout=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page", type=Path)
    ap.add_argument("--png", type=Path, default=None)
    args = ap.parse_args()
    png = args.png or args.page.with_suffix(".png")
    screenshot(args.page, png)
    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
    background = np.median(pixels)
    drawn = float((np.abs(pixels - background) > 8).mean())
    text = args.page.read_text()
    row = {"page": str(args.page), "screenshot": str(png), "size": list(pixels.shape[::-1]),
           "drawn_fraction": round(drawn, 4), "history_plot": 'alt="loss and test accuracy per epoch' in text,
           "sections": [s for s in SECTIONS if f'<section id="{s}">' in text]}
    row["ok"] = drawn > 0.02 and row["history_plot"] and len(row["sections"]) == len(SECTIONS)
    print(json.dumps(row))
    sys.exit(0 if row["ok"] else 1)


if __name__ == "__main__":
    main()
