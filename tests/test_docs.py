"""The docs: generated parts in step with their sources, the site built strict (a broken link or
reference fails), its home page rendered in headless Chromium; the README within its budget."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_generated_docs_are_up_to_date():
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "generate.py"), "--check"], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_the_readme_is_for_users_and_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    assert "make demo" in "\n".join(lines) and "make test" in "\n".join(lines)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          capture_output=True, text=True, cwd=ROOT, env={**__import__("os").environ,
                                                                         "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_the_site_builds_strict_with_every_page(site):
    for page in ("index.html", "guide/index.html", "cli/index.html", "api/index.html", "results/index.html",
                 "FORMAT/index.html", "design/index.html", "changelog/index.html"):
        assert (site / page).stat().st_size > 2000, page
    api = (site / "api" / "index.html").read_text()
    for name in ("deepzip.pipeline.compress.compress", "deepzip.train.loop.train", "deepzip.prune_",
                 "deepzip.export.c.export_c"):
        assert f'id="{name}"' in api, name  # the reference comes from the docstrings
    assert "deepzip compress" in (site / "cli" / "index.html").read_text()


def test_the_home_page_renders_in_chromium(site, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.goto((site / "index.html").as_uri())
            assert page.title().startswith("deepzip")
            assert "Deep Compression" in page.inner_text("article")
            shot = tmp_path / "index.png"
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    from PIL import Image

    pixels = Image.open(shot).convert("L")
    histogram = pixels.histogram()
    assert max(histogram) < 0.97 * sum(histogram)  # not a blank page: text and the theme's header drew
