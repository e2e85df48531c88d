"""A review session as a new user runs it, in a real Chromium: undoing a rejection, reloading
the page mid-review, opening an apical clip.

The clips: the calibrated 2D example with known proposals and a fabricated apical contour set,
and the apical example ingested without models and given contours only (:mod:`ui_fixtures`).  Screenshots go to
``$ECHOMEASURE_SCREENSHOTS`` (default ``/tmp/echomeasure-ui-screenshots``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ui_fixtures import CHROMIUM, CHROMIUM_ARGS, PICK_ROW, TEST_SECRET, apical_contour_items

from echomeasure import config

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make system-deps)"),
]

REVIEWER = "Dr Trial Review"
SHOTS = Path(os.environ.get("ECHOMEASURE_SCREENSHOTS", "/tmp/echomeasure-ui-screenshots"))
TIMEOUT_MS = 60_000
APICAL_EXAMPLE = "case_0000_a4c.dcm"
APICAL_FRAMES = (12, 30)  # the frames given contours on the apical clip (models skipped: no ED/ES)


@pytest.fixture(scope="module")
def clips(running_app):  # noqa: F811
    """(2D clip id with proposals and contours, apical clip id with contours only)."""
    from echomeasure.pipeline import ingest_path
    from echomeasure.store import open_store
    from echomeasure.store.contours import add_contours
    from echomeasure.ui.controller import ReviewController

    _, info = running_app
    store = open_store(info.url)
    try:
        clip = ReviewController(store).open_clip(info.clip_id, REVIEWER).clip
        add_contours(store, info.clip_id, apical_contour_items(clip["ed_frame"], clip["es_frame"]))
        apical = ingest_path(config.EXAMPLES_DIR / APICAL_EXAMPLE, store, secret=TEST_SECRET, run_models=False).clip.id
        add_contours(store, apical, apical_contour_items(*APICAL_FRAMES))
    finally:
        store.close()
    return info.clip_id, apical


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, running_app):  # noqa: F811
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.goto(running_app[0])
    pg.get_by_label("Reviewer").fill(REVIEWER)
    yield pg
    context.close()


SHOWN = "(id) => (document.querySelector('.em-viewer').dataset.frameShown || '').startsWith(id + ':')"


def _open(page, clip_id: int, tap: bool = False) -> None:
    """Open a clip from the worklist (a click while the page's first worklist refresh redraws
    the table is lost: clicked again)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(3):
        page.wait_for_function(PICK_ROW, arg=str(clip_id))
        row = page.locator("[data-em-pick]")
        row.tap() if tap else row.click()
        try:
            page.wait_for_function(SHOWN, arg=str(clip_id), timeout=10_000)
            return
        except PlaywrightTimeout:
            continue
    page.wait_for_function(SHOWN, arg=str(clip_id))


def _reviews(running_app, clip_id: int, name: str) -> list[str]:  # noqa: F811
    from echomeasure.store import open_store

    store = open_store(running_app[1].url)
    try:
        return [r.action for r in store.reviews(clip_id) if r.measurement == name]
    finally:
        store.close()


def _status(page, name: str) -> str:
    return page.locator(f'.em-row[data-name="{name}"] .em-status').inner_text()


def test_undo_of_rejecting_an_unreviewed_proposal_brings_it_back_unaccepted(page, running_app, clips):  # noqa: F811
    clip_id, _ = clips
    _open(page, clip_id)
    page.locator('.em-row[data-name="la"] .em-name').click()
    conf = page.locator('.em-row[data-name="la"] .em-conf').inner_text()
    page.keyboard.press("Delete")
    page.locator('.em-row[data-name="la"] .em-s-rejected').wait_for()
    page.keyboard.press("Control+z")
    page.wait_for_function("() => document.querySelector('.em-row[data-name=\"la\"] .em-status').innerText === 'proposed'")
    assert page.locator('.em-row[data-name="la"] .em-conf').inner_text() == conf  # as before: still to review
    assert "back to review" in page.locator(".em-banner").inner_text()
    page.screenshot(path=str(SHOTS / "trial_undo_reject.png"))
    # Save another measurement and wait for it: the undo wrote nothing before it.
    page.locator('.em-row[data-name="ivsd"] button.em-ok').click()
    page.locator('.em-row[data-name="ivsd"] .em-s-accepted').wait_for()
    # never recorded as accepted; the store says it is back to review (reopened)
    assert _reviews(running_app, clip_id, "la") == ["rejected", "reopened"]
    assert _status(page, "la") == "proposed"


def test_undo_of_rejecting_a_proposed_contour_writes_no_acceptance(page, running_app, clips):  # noqa: F811
    from echomeasure.store import open_store
    from echomeasure.store.contours import contour_reviews

    clip_id, _ = clips
    _open(page, clip_id)
    page.keyboard.press("d")  # the ED frame, where the fabricated LA contour is
    page.locator('.em-contour-item[data-structure="la"] .em-contour-no').click()
    page.locator('.em-contour-item[data-structure="la"] .em-s-rejected').wait_for()
    store = open_store(running_app[1].url)
    try:
        for _ in range(100):
            if contour_reviews(store, clip_id):
                break
            page.wait_for_timeout(100)
    finally:
        store.close()
    page.keyboard.press("Control+z")
    page.locator('.em-contour-item[data-structure="la"] .em-s-proposed').wait_for()
    assert "back to review" in page.locator(".em-banner").inner_text()
    page.locator('.em-row[data-name="lvidd"] button.em-ok').click()  # a later save, waited for
    page.locator('.em-row[data-name="lvidd"] .em-s-accepted').wait_for()
    store = open_store(running_app[1].url)
    try:
        actions = [r.action for r in contour_reviews(store, clip_id) if r.structure == "la"]
    finally:
        store.close()
    assert actions == ["rejected", "reopened"]  # back to review in the store too, never accepted


def test_unsaved_edit_survives_reloading_the_page(page, clips):
    clip_id, _ = clips
    _open(page, clip_id)
    page.locator('.em-row[data-name="lvpwd"] .em-name').click()
    page.keyboard.press("2")
    for _ in range(3):
        page.keyboard.press("Shift+ArrowDown")  # 30 px: unsaved
    edited = page.locator('.em-row[data-name="lvpwd"] .em-current').inner_text()
    assert "*" in edited
    page.reload()
    page.get_by_label("Reviewer").fill(REVIEWER)
    _open(page, clip_id)
    assert page.locator('.em-row[data-name="lvpwd"] .em-current').inner_text() == edited
    assert "unsaved" in page.locator(".em-summary").inner_text()
    assert "kept from before" in page.locator(".em-banner").inner_text()
    page.screenshot(path=str(SHOTS / "trial_reload_draft.png"))


def test_apical_clip_without_measurements_opens_on_a_frame_with_its_contours(page, clips):
    _, apical = clips
    _open(page, apical)
    shown = int(page.locator(".em-viewer").get_attribute("data-frame-shown").split(":")[1])
    assert shown in APICAL_FRAMES
    assert page.locator(".em-contour-item").count() >= 2  # LV and LA listed, ready to review
    assert page.locator("polygon.em-contour").count() >= 2
    page.screenshot(path=str(SHOTS / "trial_apical_opened.png"))
