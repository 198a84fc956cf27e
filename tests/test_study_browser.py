"""The user study in a real headless browser (Debian's chromium driven by Playwright, no browser download):
open, answer every item by clicking, reload mid-way and resume, close the tab and come back, finish; the stored
answers equal the clicks. Phone-size layout: no horizontal scrolling, every image loaded, the stylesheet applied
under the page's Content-Security-Policy. Screenshots are kept under the test's tmp_path and, when
$MISATO_TEST_ARTIFACTS is set, copied there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from misato.study.design import load_study
from test_study import live_server, make_runs, make_study, stored

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHONE = {"width": 390, "height": 844}


def _keep(shot: Path) -> None:
    target = os.environ.get("MISATO_TEST_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / shot.name)


def _check_layout(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "horizontal scrolling"
    assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    colour = page.evaluate("getComputedStyle(document.querySelector('button.primary')).backgroundColor")
    assert colour == "rgb(31, 95, 191)", "study.css not applied"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed (apt-get install chromium)")
def test_study_flow_in_headless_chromium(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    folder = tmp_path / "study"
    make_study(make_runs(tmp_path), folder, images=5, checks=1)
    total = len(load_study(folder).items)
    rng = np.random.default_rng(0)
    clicks: dict[str, dict[str, str]] = {}
    with live_server(folder) as (base, _), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        context = browser.new_context(viewport=PHONE, device_scale_factor=1)
        page = context.new_page()
        page.goto(base + "/")
        page.check("input[name=consent]")
        with page.expect_navigation():
            page.click("button[type=submit]")
        participant = next(c["value"] for c in context.cookies()
                           if c["name"] == "misato_study_participant").split(".")[0]
        while len(clicks) < total:
            assert page.inner_text("#progress") == f"{len(clicks)} / {total}"
            item = page.get_attribute("input[name=item]", "value")
            assert item not in clicks
            choice = {}
            for question in ("context", "visual"):
                labels = page.locator(f"#q-{question} label.choice")
                chosen = labels.nth(int(rng.integers(labels.count())))
                chosen.click()
                choice[question] = chosen.locator("input").get_attribute("value")
            if len(clicks) == 0:
                _check_layout(page)
                page.screenshot(path=str(tmp_path / "study-phone.png"), full_page=True)
            with page.expect_navigation():
                page.click("button[type=submit]")
            clicks[item] = choice
            if len(clicks) == 2:  # reload mid-way: the next item, progress kept
                page.reload()
                assert page.inner_text("#progress") == f"2 / {total}"
            if len(clicks) == 3:  # close the tab, come back later in the same browser
                page.close()
                page = context.new_page()
                page.set_viewport_size({"width": 1280, "height": 900})
                page.goto(base + "/")
                assert page.inner_text("#progress") == f"3 / {total}"
                page.screenshot(path=str(tmp_path / "study-desktop.png"), full_page=True)
        assert "Thank you" in page.inner_text("h1") and page.inner_text("#progress") == f"{total} / {total}"
        browser.close()
    assert stored(folder) == {(participant, item): choice for item, choice in clicks.items()}
    for name in ("study-phone.png", "study-desktop.png"):
        pixels = np.asarray(Image.open(tmp_path / name).convert("RGB"), dtype=np.float32)
        assert pixels.std() > 10  # rendered content, not a blank page
        _keep(tmp_path / name)
