"""`locobank serve` in a real browser: Playwright driving the system Chromium, headless. Type a
query and see the cards; give a toy face and its mask and see them re-ranked for it; use the top
one in Apply, which starts from its calibrated strength with that face and mask; apply, see the result.
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
        page.locator("#search-image input[type=file]").set_input_files(str(world["face"]))
        page.locator("#search-mask input[type=file]").set_input_files(str(world["mask"]))
        page.locator("#rank-button").click()
        page.locator("#hits").get_by_text("gain on your image").first.wait_for(timeout=120_000)
        ranked = page.locator("#hits").inner_text()
        top = int(ranked.split("#", 1)[1].split()[0])
        calibrated = float(ranked.split("apply at ", 1)[1].split()[0])
        page.locator("#hits img").first.click()
        page.wait_for_function("v => document.querySelector('#direction-id input').value == v", arg=str(top),
                               timeout=30_000)  # the card's id and strength are taken before they are used
        page.get_by_role("button", name="Use it in Apply").click()
        page.locator("#direction-1 input").wait_for()
        strength = page.locator("#strength-1 input[type=number]")
        page.wait_for_function("v => Math.abs(parseFloat(document.querySelector('#strength-1 input[type=number]')"
                               ".value) - v) < 1e-4", arg=calibrated, timeout=30_000)
        assert abs(float(strength.input_value()) - calibrated) < 1e-4  # Apply starts from the ranked strength
        assert page.locator("#direction-1 input").input_value().lstrip("#").startswith(str(top))
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
