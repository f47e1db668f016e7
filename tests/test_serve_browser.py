"""`locobank serve` in a real browser: Playwright driving the system Chromium, headless. Type a
query and see the cards; upload a toy face and its mask, pick the top hit, apply, see the result.
The page fetches nothing from outside. Saves docs/app.png, the screenshot the README shows."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


pytest.importorskip("gradio", reason="the app extra is not installed: pip install -e '.[app]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[app]'")

CHROMIUM = os.environ.get("LOCOBANK_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
# The README's screenshot is refreshed only when asked (LOCOBANK_SCREENSHOT=docs/app.png); a test
# run otherwise writes nothing into the source tree.
SCREENSHOT_TO = os.environ.get("LOCOBANK_SCREENSHOT")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium); "
                                                         "playwright cannot download one offline")
pytest_plugins = ["serve_world"]  # the toy_world and served_app fixtures


@pytest.fixture(scope="module")
def served(served_app):
    return served_app


@pytest.mark.slow
def test_search_then_apply_in_the_browser(served, tmp_path):
    world, srv = served
    outside: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((srv.url, "data:", "blob:")) else None)
        page.goto(srv.url)
        page.locator("#query textarea").fill("smile")
        page.locator("#search-button").click()
        cards = page.locator("#hits img")
        cards.first.wait_for(timeout=60_000)
        assert cards.count() >= 2
        captions = page.locator("#hits").inner_text()
        assert "mask mouth" in captions and "match" in captions
        top = int(captions.split("#", 1)[1].split()[0])

        page.get_by_role("tab", name="Apply").click()
        page.locator("#image-upload input[type=file]").set_input_files(str(world["face"]))
        page.locator("#mask-upload input[type=file]").set_input_files(str(world["mask"]))
        box = page.locator("#direction-1 input")
        box.fill(str(top))
        box.press("Enter")
        strength = page.locator("#strength-1 input[type=number]")
        strength.fill("8")
        strength.press("Enter")
        page.locator("#apply-button").click()
        page.locator("#apply-status").get_by_text("applied").wait_for(timeout=180_000)
        assert page.locator("#result img").count() == 1
        assert f"#{top}" in page.locator("#apply-status").inner_text()
        shot = Path(SCREENSHOT_TO) if SCREENSHOT_TO else tmp_path / "app.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert outside == [], f"the page fetched from outside: {outside[:5]}"
    assert shot.stat().st_size > 10_000
