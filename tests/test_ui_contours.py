"""Contours in the review UI (real Chromium): per-structure polygons, opacity slider, accept/reject."""

from __future__ import annotations

import pytest
from ui_fixtures import CHROMIUM, CHROMIUM_ARGS, open_example_tab, running_app, ui_store  # noqa: F401

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


def test_dragging_a_contour_vertex_then_saving_stores_a_correction(page, running_app, contour_clip):  # noqa: F811
    clip_id, _ = contour_clip
    page.locator('.em-contour-item[data-structure="lv"] .em-contour-name').click()  # show its vertices
    vertex = page.locator('.em-vertex[data-structure="lv"][data-index="0"]')
    vertex.wait_for()
    before = [float(vertex.get_attribute("cx")), float(vertex.get_attribute("cy"))]
    box = vertex.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 15, y + 10, steps=5)
    page.mouse.up()
    after = [float(vertex.get_attribute("cx")), float(vertex.get_attribute("cy"))]
    assert after[0] > before[0] + 2 and after[1] > before[1] + 1
    page.locator('.em-contour-item[data-structure="lv"] .em-contour-name.em-s-draft').wait_for()
    page.locator('.em-contour-item[data-structure="lv"] .em-contour-save').click()
    store = open_store(running_app[1].url)
    try:
        for _ in range(100):
            reviews = contour_reviews(store, clip_id)
            if len(reviews) == 3:
                break
            page.wait_for_timeout(100)
        last = reviews[-1]
        assert (last.structure, last.action) == ("lv", "corrected")
        assert last.polygon[0] == pytest.approx(tuple(after), abs=0.05)
        assert last.polygon[1:] == reviews[0].polygon[1:]  # the other vertices stay where they were
    finally:
        store.close()


def test_two_tabs_on_one_contour_the_later_decision_is_refused_and_reloaded(page, running_app, contour_clip):  # noqa: F811
    """A tab's accept and at once reject of a contour are both saved (the reject waits for the
    accept's new review id); a second tab still showing the contour as it stood before is
    refused, told so, and shown the contour as it stands now; nothing of it is written."""
    from playwright.sync_api import expect

    url, info = running_app
    clip_id, frame = contour_clip
    store = open_store(info.url)
    lv = '.em-contour-item[data-structure="lv"]'
    errors: list[str] = []
    try:
        n = len(contour_reviews(store, clip_id))
        # two more tabs in the module's browser (one sync Playwright per thread)
        context = page.context.browser.new_context(viewport={"width": 1440, "height": 900})
        tabs = []
        for _ in range(2):
            tab = open_example_tab(context, url, REVIEWER, errors, timeout_ms=TIMEOUT_MS)
            tab.locator('.em-row[data-name="lvidd"] .em-name').click()
            tab.locator(f"{lv} .em-contour-ok").wait_for()
            tabs.append(tab)
        first, second = tabs
        # accept, then reject in the same instant: the reject is made before the accept's answer came
        first.evaluate("""(sel) => {
            document.querySelector(sel + ' .em-contour-ok').click();
            document.querySelector(sel + ' .em-contour-no').click();
        }""", lv)
        for _ in range(100):
            if len(contour_reviews(store, clip_id)) >= n + 2:
                break
            first.wait_for_timeout(100)
        second.locator(f"{lv} .em-contour-ok").click()
        expect(second.locator(".em-banner")).to_contain_text(
            f"lv contour of frame {frame} was reviewed meanwhile in another tab")
        second.locator(f"{lv} .em-contour-name.em-s-rejected").wait_for()  # reloaded as it stands
        first.wait_for_timeout(300)
        context.close()
        lv_reviews = [r.action for r in contour_reviews(store, clip_id) if r.structure == "lv"]
        assert len(contour_reviews(store, clip_id)) == n + 2 and lv_reviews[-2:] == ["accepted", "rejected"]
    finally:
        store.close()
    assert not errors, errors


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
        ({**ok, "action": "added"}, "Dr A", "accepted, corrected or rejected"),
        ({**ok, "action": "corrected", "polygon": None}, "Dr A", "needs its polygon"),
        ({**ok, "action": "corrected", "polygon": [[1, 1], [900, 1], [5, 9]]}, "Dr A", "outside the"),
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


def test_every_review_event_is_queued_not_dropped_while_one_is_pending(tmp_path):
    """Gradio drops a second trigger of a "once" event while the first is pending: a contour
    rejected right after another was accepted was shown rejected and never stored (CI, under load)."""
    from echomeasure.ui.app import build_app

    app = build_app(f"sqlite:///{tmp_path / 'review.sqlite'}")
    try:
        modes = {t[1]: f.trigger_mode for f in app.fns.values() for t in f.targets}
    finally:
        app.echomeasure_store.close()
    assert {modes[e] for e in ("commit", "contour_review", "calibrate")} == {"multiple"}
    assert modes["next_clip"] == "once"  # one N press, one clip: a double press does not skip two
