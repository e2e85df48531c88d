"""The review UI in a real Chromium: open an example, drag, nudge, accept, reject, export.

Screenshots go to ``$ECHOMEASURE_SCREENSHOTS`` (default ``/tmp/echomeasure-ui-screenshots``).
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import pytest
from ui_fixtures import CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make system-deps)"),
]

REVIEWER = "Dr Test Sonographer"
SHOTS = Path(os.environ.get("ECHOMEASURE_SCREENSHOTS", "/tmp/echomeasure-ui-screenshots"))
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def page(running_app):  # noqa: F811
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    url, _ = running_app
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1500, "height": 950}, accept_downloads=True)
        pg = context.new_page()
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(url)
        yield pg
        context.close()
        browser.close()


def _store(running_app):  # noqa: F811
    from echomeasure.store import open_store

    return open_store(running_app[1].url)


def _latest_review(running_app, clip_id: int, name: str):  # noqa: F811
    store = _store(running_app)
    try:
        reviews = [r for r in store.reviews(clip_id) if r.measurement == name]
    finally:
        store.close()
    return reviews[-1] if reviews else None


def _wait_for_review(page, running_app, clip_id: int, name: str, action: str):  # noqa: F811
    page.locator(f'.em-row[data-name="{name}"] .em-s-{action}').wait_for()
    review = _latest_review(running_app, clip_id, name)
    assert review is not None, f"no review of {name} in the database"
    return review


def _proposal(running_app, clip_id: int, name: str):  # noqa: F811
    store = _store(running_app)
    try:
        return next(p for p in store.proposals(clip_id) if p.measurement == name)
    finally:
        store.close()


def _handle_center(page, name: str, index: int) -> tuple[float, float]:
    box = page.locator(f'.em-handle[data-name="{name}"][data-index="{index}"]').bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def _screen_px_per_image_px(page) -> float:
    return float(page.evaluate("() => document.querySelector('.em-svg').getScreenCTM().a"))


def test_ui_opens_example_and_draws_proposals(page, running_app):  # noqa: F811
    page.get_by_label("Reviewer").fill(REVIEWER)
    page.locator("#em-open-example").click()
    page.locator('.em-handle[data-name="lvidd"]').first.wait_for()
    page.screenshot(path=str(SHOTS / "01_example_opened.png"))
    drawn = page.locator(".em-caliper").evaluate_all("els => els.map(e => e.dataset.name)")
    assert set(drawn) == {"ivsd", "lvidd", "lvpwd", "lvids", "la", "aortic_root"}
    # Low-confidence proposal flagged in words, the number in the tooltip
    flag = page.locator('.em-row[data-name="la"] .em-conf')
    assert flag.inner_text() == "check"
    assert "0.35" in flag.get_attribute("title")
    assert page.locator('.em-row[data-name="lvidd"] .em-conf').inner_text() == "ok"
    assert page.title().startswith("echomeasure")


def test_ui_drag_endpoint_then_accept_stores_corrected_points(page, running_app):  # noqa: F811
    clip_id = running_app[1].clip_id
    proposal = _proposal(running_app, clip_id, "lvidd")
    page.locator('.em-row[data-name="lvidd"] .em-name').click()  # selects it and shows its frame
    scale = _screen_px_per_image_px(page)
    x, y = _handle_center(page, "lvidd", 1)
    dx_screen, dy_screen = 24.0, 36.0
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx_screen / 2, y + dy_screen / 2, steps=4)
    page.mouse.move(x + dx_screen, y + dy_screen, steps=4)
    page.mouse.up()
    label = page.locator('.em-caliper[data-name="lvidd"] .em-label').text_content()
    page.screenshot(path=str(SHOTS / "02_lvidd_dragged.png"))
    page.keyboard.press("Enter")
    review = _wait_for_review(page, running_app, clip_id, "lvidd", "corrected")

    assert review.action == "corrected"
    assert review.reviewer == REVIEWER
    (x0, y0), (x1, y1) = review.points
    assert (x0, y0) == pytest.approx(proposal.points[0], abs=1e-6)  # the other endpoint did not move
    assert x1 == pytest.approx(proposal.points[1][0] + dx_screen / scale, abs=1.0)
    assert y1 == pytest.approx(proposal.points[1][1] + dy_screen / scale, abs=1.0)
    # The stored value is the server's, and the live label showed the same number.
    assert review.unit == "cm"
    assert f"{review.value:.2f} cm" in label
    assert review.value > proposal.value
    assert review.seconds_spent is not None and review.seconds_spent >= 0
    page.screenshot(path=str(SHOTS / "03_lvidd_saved.png"))


def test_ui_arrow_key_nudges_point_by_one_pixel(page, running_app):  # noqa: F811
    clip_id = running_app[1].clip_id
    proposal = _proposal(running_app, clip_id, "ivsd")
    page.locator('.em-row[data-name="ivsd"] .em-name').click()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    review = _wait_for_review(page, running_app, clip_id, "ivsd", "corrected")
    (x0, y0), (x1, y1) = review.points
    assert x0 == pytest.approx(proposal.points[0][0] + 1.0, abs=1e-6)
    assert y0 == pytest.approx(proposal.points[0][1], abs=1e-6)
    assert (x1, y1) == pytest.approx(proposal.points[1], abs=1e-6)
    assert review.reviewer == REVIEWER


def test_ui_reject_writes_a_rejection(page, running_app):  # noqa: F811
    clip_id = running_app[1].clip_id
    page.locator('.em-row[data-name="la"] button.em-no').click()
    review = _wait_for_review(page, running_app, clip_id, "la", "rejected")
    assert review.action == "rejected"
    assert review.points is None
    assert review.reviewer == REVIEWER


def test_ui_accept_unchanged_proposal_is_stored_as_accepted(page, running_app):  # noqa: F811
    clip_id = running_app[1].clip_id
    proposal = _proposal(running_app, clip_id, "aortic_root")
    page.locator('.em-row[data-name="aortic_root"] button.em-ok').click()
    review = _wait_for_review(page, running_app, clip_id, "aortic_root", "accepted")
    assert [c for p in review.points for c in p] == pytest.approx([c for p in proposal.points for c in p], abs=1e-6)
    assert review.value == pytest.approx(proposal.value)


def test_ui_csv_download_holds_the_corrected_row(page, running_app):  # noqa: F811
    clip_id = running_app[1].clip_id
    review = _latest_review(running_app, clip_id, "lvidd")
    page.locator("#em-csv-study").click()
    link = page.locator("#em-csv-file a").first
    link.wait_for()
    with page.expect_download() as info:
        link.click()
    text = Path(info.value.path()).read_text(encoding="utf-8")
    rows = [r for r in csv.DictReader(io.StringIO(text)) if r["measurement"] == "lvidd" and r["clip_id"] == str(clip_id)]
    assert len(rows) == 1
    row = rows[0]
    assert row["status"] == "corrected"
    assert row["reviewer"] == REVIEWER
    assert float(row["x2_px"]) == pytest.approx(review.points[1][0], abs=0.006)
    assert float(row["y2_px"]) == pytest.approx(review.points[1][1], abs=0.006)
    assert float(row["value"]) == pytest.approx(review.value, abs=1e-3)
    page.screenshot(path=str(SHOTS / "04_exported.png"))


def test_ui_worklist_opens_doppler_clip_with_peak_marker(page, running_app):  # noqa: F811
    doppler_id = running_app[1].doppler_clip_id
    page.locator("#em-worklist [role=gridcell]").filter(has_text="doppler").first.click()
    page.locator('.em-handle[data-name="av_vmax"]').wait_for()
    label = page.locator('.em-caliper[data-name="av_vmax"] .em-label').text_content()
    page.screenshot(path=str(SHOTS / "05_doppler.png"))
    proposal = _proposal(running_app, doppler_id, "av_vmax")
    assert f"{proposal.value:.2f} m/s" in label
    assert math.isfinite(proposal.value)


def test_ui_add_missing_measurement_by_placing_its_point(page, running_app):  # noqa: F811
    from echomeasure.ingest.calibration import velocity_m_s

    doppler_id = running_app[1].doppler_clip_id
    av = _proposal(running_app, doppler_id, "av_vmax")
    target = (av.points[0][0] + 40.0, av.points[0][1] - 20.0)  # inside the spectral strip
    page.get_by_label("Reviewer").fill(REVIEWER)  # the test also runs on its own (-k)
    page.locator("#em-worklist [role=gridcell]").filter(has_text="doppler").first.click()
    page.locator('.em-handle[data-name="av_vmax"]').wait_for()
    page.locator(".em-add-name").select_option("lvot_vmax")
    page.locator(".em-add").click()
    ctm = page.evaluate("() => { const m = document.querySelector('.em-svg').getScreenCTM(); return [m.a, m.d, m.e, m.f]; }")
    page.mouse.click(ctm[0] * target[0] + ctm[2], ctm[1] * target[1] + ctm[3])
    page.locator('.em-row[data-name="lvot_vmax"] .em-s-draft').wait_for()
    page.keyboard.press("Enter")
    review = _wait_for_review(page, running_app, doppler_id, "lvot_vmax", "added")
    store = _store(running_app)
    try:
        regions = store.clip(doppler_id).region_objects
    finally:
        store.close()
    (x, y), = review.points
    assert (x, y) == pytest.approx(target, abs=1.0)
    assert review.unit == "m/s"
    assert review.value == pytest.approx(abs(velocity_m_s(regions, x, y)))
    assert review.proposal_id is None and review.reviewer == REVIEWER
    page.screenshot(path=str(SHOTS / "06_added.png"))
