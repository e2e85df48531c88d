"""Contours in the review UI (real Chromium): per-structure polygons, opacity slider, accept/reject."""

from __future__ import annotations

import pytest
from ui_fixtures import CHROMIUM, CHROMIUM_ARGS, running_app, ui_store  # noqa: F401

from echomeasure.store import open_store
from echomeasure.store.contours import add_contours, contour_reviews
from echomeasure.ui import contour_review

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make system-deps)"),
]

REVIEWER = "Dr Contour Reviewer"
TIMEOUT_MS = 60_000


def _contour_items(clip, frame: int) -> list[dict]:
    w, h = clip.width_px, clip.height_px
    box = lambda x0, y0, x1, y1: [[x0 * w, y0 * h], [x1 * w, y0 * h], [x1 * w, y1 * h], [x0 * w, y1 * h]]  # noqa: E731
    return [
        {"frame": frame, "structure": "lv", "polygon": box(0.40, 0.30, 0.55, 0.50), "area_cm2": 4.0, "confidence": 0.9},
        {"frame": frame, "structure": "la", "polygon": box(0.40, 0.55, 0.55, 0.70), "area_cm2": 3.0, "confidence": 0.8},
    ]


@pytest.fixture(scope="module")
def contour_clip(running_app):  # noqa: F811
    _, info = running_app
    store = open_store(info.url)
    try:
        clip = store.clip(info.clip_id)
        frame = next(p.frame_index for p in store.proposals(clip.id) if p.measurement == "lvidd")
        add_contours(store, clip.id, _contour_items(clip, frame))
    finally:
        store.close()
    return info.clip_id, frame


@pytest.fixture(scope="module")
def page(running_app, contour_clip):  # noqa: F811
    from playwright.sync_api import sync_playwright

    url, _ = running_app
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        pg = context.new_page()
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(url)
        yield pg
        context.close()
        browser.close()


def test_contours_are_drawn_per_structure_with_an_opacity_slider_and_reviewed(page, running_app, contour_clip):  # noqa: F811
    clip_id, frame = contour_clip
    page.get_by_label("Reviewer").fill(REVIEWER)
    page.locator("#em-open-example").click()
    page.locator('.em-row[data-name="lvidd"] .em-name').click()  # shows lvidd's frame, where the contours are
    page.locator('.em-contour[data-structure="lv"]').wait_for()
    drawn = page.locator(".em-contour").evaluate_all("els => els.map(e => [e.dataset.structure, e.getAttribute('fill')])")
    assert sorted(drawn) == [["la", "#ffd740"], ["lv", "#ff5252"]]  # one colour per structure
    lv = page.locator('.em-contour[data-structure="lv"]')
    assert float(lv.get_attribute("fill-opacity")) == pytest.approx(0.35)
    page.locator(".em-contour-opacity").fill("0.8")
    assert float(lv.get_attribute("fill-opacity")) == pytest.approx(0.8)

    page.locator('.em-contour-item[data-structure="lv"] .em-contour-ok').click()
    page.locator('.em-contour-item[data-structure="la"] .em-contour-no').click()
    page.locator('.em-contour[data-structure="la"]').wait_for(state="detached")  # a rejected contour is hidden
    store = open_store(running_app[1].url)
    try:
        for _ in range(100):
            reviews = contour_reviews(store, clip_id)
            if len(reviews) == 2:
                break
            page.wait_for_timeout(100)
        assert sorted((r.structure, r.action, r.reviewer) for r in reviews) == [
            ("la", "rejected", REVIEWER), ("lv", "accepted", REVIEWER)]
        states = {c["structure"]: c["status"] for c in contour_review.contours_for(store, clip_id) if c["frame"] == frame}
        assert states == {"lv": "accepted", "la": "rejected"}
    finally:
        store.close()


def test_contour_review_from_the_viewer_refuses_bad_requests(store, deidentified_clip):
    from store_fixtures import MODEL_2D

    from echomeasure.errors import EchomeasureError
    from echomeasure.store import readers

    rec = store.add_clip(deidentified_clip)
    (lv,) = add_contours(store, rec.id, [{"frame": 1, "structure": "lv", "polygon": [[1, 1], [9, 1], [5, 9]],
                                          "confidence": 0.9}], model=MODEL_2D)
    ok = {"clip_id": rec.id, "contour_proposal_id": lv.id, "action": "accepted"}
    for payload, typed, match in [
        (ok, "  ", "reviewer"),
        ({**ok, "action": "corrected"}, "Dr A", "accepted or rejected"),
        ({**ok, "contour_proposal_id": None}, "Dr A", "needs its clip"),
    ]:
        with pytest.raises(EchomeasureError, match=match):
            contour_review.save(store, payload, typed)
    assert contour_reviews(store, rec.id) == []
    assert contour_review.save(store, ok, "Dr A")[0]["status"] == "accepted"
    readers.assign(store, rec.id, ["reader-1"], "blinded")
    assert contour_review.contours_for(store, rec.id) == []  # a blinded reader never sees the model's contours
    with pytest.raises(EchomeasureError, match="reader-study"):
        contour_review.save(store, ok, "reader-1")
