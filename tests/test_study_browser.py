"""The user study in a real headless browser (Debian's chromium driven by Playwright, no browser download):
consent, answer every item by clicking the candidates' pictures, reload mid-way and resume, close the tab and
come back, finish with the completion code; the stored answers equal the clicks, and the browser's own POSTs pass
the cross-site check. Phone-size layout: one candidate per row at full width, each a tap-to-zoom link, no
horizontal scrolling, every image loaded, the stylesheet applied under the page's Content-Security-Policy.
Screenshots (consent and item page at phone size, item page at desktop size) are kept under the test's tmp_path,
printed, and, when $MISATO_TEST_ARTIFACTS is set, copied there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from misato.jobs.study.design import DATABASE_FILE, load_study
from misato.jobs.study.server import ServeConfig
from misato.jobs.study.store import AnswerStore
from test_study import TOKEN, live_server, make_runs, make_study, stored

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHONE = {"width": 390, "height": 844}


def _keep(shot: Path) -> None:
    print(f"screenshot: {shot}")
    target = os.environ.get("MISATO_TEST_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / shot.name)


def _check_layout(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "horizontal scrolling"
    assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    colour = page.evaluate("getComputedStyle(document.querySelector('button.primary')).backgroundColor")
    assert colour == "rgb(31, 95, 191)", "study.css not applied"


def _check_phone_candidates(page) -> None:
    """One candidate per row, each nearly the page's width, each picture a link to the full-size image."""
    boxes = [page.locator(".candidate").nth(i).bounding_box() for i in range(page.locator(".candidate").count())]
    width = page.evaluate("document.querySelector('main').clientWidth")
    assert len({round(b["x"]) for b in boxes}) == 1 and all(b["width"] > 0.85 * width for b in boxes), boxes
    assert all(boxes[i + 1]["y"] >= boxes[i]["y"] + boxes[i]["height"] for i in range(len(boxes) - 1))
    assert page.locator(".candidate a[href^='/media/']").count() == len(boxes)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed (apt-get install chromium)")
def test_study_flow_in_headless_chromium(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    folder = tmp_path / "study"
    make_study(make_runs(tmp_path), folder, images=5, checks=1)
    total = len(load_study(folder).items)
    rng = np.random.default_rng(0)
    clicks: dict[str, dict[str, str]] = {}
    config = ServeConfig(TOKEN, completion_code="DONE-7")
    with live_server(folder, config) as (base, _), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        context = browser.new_context(viewport=PHONE, device_scale_factor=1)
        page = context.new_page()
        page.goto(base + "/?PROLIFIC_PID=p-123")
        assert "worked example" in page.inner_text("#example").lower()
        page.screenshot(path=str(tmp_path / "study-consent-phone.png"), full_page=True)
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
                chosen.locator("img").click()  # choose by clicking the candidate's picture
                assert chosen.locator("input").is_checked()
                choice[question] = chosen.locator("input").get_attribute("value")
            if len(clicks) == 0:
                _check_layout(page)
                _check_phone_candidates(page)
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
        assert page.inner_text("#completion-code") == "DONE-7"
        browser.close()
    assert stored(folder) == {(participant, item): choice for item, choice in clicks.items()}
    study = load_study(folder)
    store = AnswerStore.open(folder / DATABASE_FILE, study.study_id, create=False)
    assert [p.external for p in store.participants()] == ["p-123"]  # the platform's id of the link, stored
    for name in ("study-consent-phone.png", "study-phone.png", "study-desktop.png"):
        pixels = np.asarray(Image.open(tmp_path / name).convert("RGB"), dtype=np.float32)
        assert pixels.std() > 10  # rendered content, not a blank page
        _keep(tmp_path / name)
