"""Editing contours in the review UI (real Chromium): vertices, smoothing, keys, ED/ES, live volumes.

The clip is the calibrated 2D example with a fabricated apical contour set (LV cavity and LA on
the ED and ES frames, :func:`ui_fixtures.apical_contour_items`) stored through the store's
public API: apical clips have no shipped segmentation model.  The live EDV/ESV/EF shown while
a contour is edited must equal :func:`echomeasure.contour_volumes.live_volumes` on the
polygons on screen, and the figures after a save those of the stored contours.
Screenshots go to ``$ECHOMEASURE_SCREENSHOTS`` (default ``/tmp/echomeasure-ui-screenshots``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ui_fixtures import CHROMIUM, CHROMIUM_ARGS, PICK_ROW, apical_contour_items, running_app, ui_store  # noqa: F401

from echomeasure import contour_volumes
from echomeasure.store import open_store
from echomeasure.store.contours import add_contours, contour_reviews, current_contours
from echomeasure.ui.controller import ReviewController

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make system-deps)"),
]

REVIEWER = "Dr Contour Editor"
TIMEOUT_MS = 60_000
SHOTS = Path(os.environ.get("ECHOMEASURE_SCREENSHOTS", "/tmp/echomeasure-ui-screenshots"))

POLYGON = """(structure) => [...document.querySelectorAll(`.em-vertex[data-structure="${structure}"]`)]
    .sort((a, b) => a.dataset.index - b.dataset.index)
    .map(v => [Number(v.getAttribute('cx')), Number(v.getAttribute('cy'))])"""
VOLUMES = """() => { const v = document.querySelector('.em-volumes');
    return {edv: v.dataset.edv, esv: v.dataset.esv, ef: v.dataset.ef, pending: v.dataset.pending, text: v.textContent}; }"""
SETTLED = """(old) => { const v = document.querySelector('.em-volumes');
    return v && !v.dataset.pending && v.dataset.esv !== '' && v.dataset.esv !== old; }"""


def _area(poly: list[list[float]]) -> float:
    return contour_volumes.polygon_area_px(poly)


@pytest.fixture(scope="module")
def apical_clip(running_app):  # noqa: F811
    _, info = running_app
    store = open_store(info.url)
    try:
        clip = ReviewController(store).open_clip(info.clip_id, REVIEWER).clip
        ed, es = clip["ed_frame"], clip["es_frame"]
        add_contours(store, info.clip_id, apical_contour_items(ed, es))
    finally:
        store.close()
    return info.clip_id, ed, es


@pytest.fixture(scope="module")
def page(running_app, apical_clip):  # noqa: F811
    from playwright.sync_api import sync_playwright

    url, _ = running_app
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        pg = context.new_page()
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(url)
        pg.get_by_label("Reviewer").fill(REVIEWER)
        # from the worklist: "Open example" would run the shipped PLAX models on the clip again
        pg.wait_for_function(PICK_ROW, arg=str(apical_clip[0]))
        pg.locator("[data-em-pick]").click()
        pg.locator(".em-volumes").wait_for()
        yield pg
        context.close()
        browser.close()


def _frame_shown(page) -> int:
    return int(page.locator(".em-slider").input_value())


def _select(page, structure: str) -> None:
    """Select a contour of the frame shown with the C key (as a keyboard user does)."""
    page.locator(".em-viewer").focus()
    for _ in range(4):
        if page.locator(f'.em-contour-item.em-contour-selected[data-structure="{structure}"]').count():
            return
        page.keyboard.press("c")
    raise AssertionError(f"C never selected the {structure} contour")


def _live_in_python(running_app, clip_id: int, ed: int, es: int, page) -> dict:  # noqa: F811
    """What the Python rule gives for the polygons on screen (the ED ones as stored)."""
    store = open_store(running_app[1].url)
    try:
        items = [{"frame": c["frame"], "structure": c["structure"], "polygon": c["polygon"]}
                 for c in apical_contour_items(ed, es) if c["frame"] == ed]
        items.append({"frame": es, "structure": "lv", "polygon": page.evaluate(POLYGON, "lv")})
        items.append(next({"frame": es, "structure": "la", "polygon": c["polygon"]}
                          for c in apical_contour_items(ed, es) if c["frame"] == es and c["structure"] == "la"))
        return contour_volumes.live_volumes(store, {"clip_id": clip_id, "ed_frame": ed, "es_frame": es, "contours": items})
    finally:
        store.close()


def test_ed_es_keys_and_buttons_jump_and_volumes_show_the_stored_contours(page, running_app, apical_clip):  # noqa: F811
    clip_id, ed, es = apical_clip
    page.locator(".em-viewer").focus()
    page.keyboard.press("s")
    assert _frame_shown(page) == es and "ES" in page.locator(".em-frameinfo").inner_text()
    page.keyboard.press("d")
    assert _frame_shown(page) == ed and "ED" in page.locator(".em-frameinfo").inner_text()
    page.locator(".em-es").click()
    assert _frame_shown(page) == es
    page.locator(".em-ed").click()
    assert _frame_shown(page) == ed
    store = open_store(running_app[1].url)
    try:
        expected = ReviewController(store).open_clip(clip_id, REVIEWER).clip["volumes"]
    finally:
        store.close()
    shown = page.evaluate(VOLUMES)
    assert float(shown["edv"]) == expected["edv_ml"] and float(shown["esv"]) == expected["esv_ml"]
    assert float(shown["ef"]) == expected["ef_percent"]
    assert "EDV" in shown["text"] and "EF" in shown["text"]
    page.set_viewport_size({"width": 1440, "height": 900})
    _select(page, "lv")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "contours_1440x900.png"))
    page.set_viewport_size({"width": 1280, "height": 720})
    page.wait_for_timeout(300)
    assert page.locator(".em-volumes").is_visible() and page.locator(".em-es").is_visible()
    page.screenshot(path=str(SHOTS / "contours_1280x720.png"))
    page.set_viewport_size({"width": 1440, "height": 900})


def test_keys_nudge_a_vertex_volumes_follow_live_and_enter_saves_the_correction(page, running_app, apical_clip):  # noqa: F811
    clip_id, ed, es = apical_clip
    page.keyboard.press("Escape")
    page.keyboard.press("s")
    _select(page, "lv")
    page.keyboard.press("Tab")  # vertex 1
    assert page.locator('.em-vertex-selected[data-structure="lv"]').get_attribute("data-index") == "1"
    before = page.evaluate(POLYGON, "lv")
    old = page.evaluate(VOLUMES)
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Shift+ArrowDown")
    for _ in range(3):
        page.keyboard.press("Tab")
        page.keyboard.press("Shift+ArrowRight")
    after = page.evaluate(POLYGON, "lv")
    assert after[1] == [before[1][0], pytest.approx(before[1][1] + 11)]  # 1 px, then 10 px
    assert after[4][0] == pytest.approx(before[4][0] + 10)
    page.wait_for_function(SETTLED, arg=old["esv"])
    live = page.evaluate(VOLUMES)
    python = _live_in_python(running_app, clip_id, ed, es, page)
    assert float(live["esv"]) == python["esv_ml"] and float(live["ef"]) == python["ef_percent"]
    assert float(live["esv"]) > float(old["esv"]) and float(live["edv"]) == float(old["edv"])

    page.keyboard.press("Enter")  # a draft is saved as a correction
    store = open_store(running_app[1].url)
    try:
        for _ in range(100):
            saved = [r for r in contour_reviews(store, clip_id) if r.action == "corrected"]
            if saved:
                break
            page.wait_for_timeout(100)
        assert [list(p) for p in saved[-1].polygon] == after
        stored = ReviewController(store).open_clip(clip_id, REVIEWER).clip["volumes"]
    finally:
        store.close()
    assert stored["esv_ml"] == float(live["esv"])  # the stored contours give the figures shown

    # Ctrl+Z after the save: reviews are append-only, so a new review restores the proposal
    page.keyboard.press("Control+z")
    store = open_store(running_app[1].url)
    try:
        for _ in range(300):
            reviews = [r for r in contour_reviews(store, clip_id) if r.structure == "lv" and r.frame_index == es]
            if reviews[-1].action == "accepted":
                break
            page.wait_for_timeout(100)
        assert [r.action for r in reviews][-2:] == ["corrected", "accepted"]
        state = next(st for st in current_contours(store, clip_id) if st.structure == "lv" and st.frame_index == es)
        assert state.status == "accepted" and [list(p) for p in state.polygon] == before  # the proposal again
    finally:
        store.close()
    assert "new review" in page.locator(".em-banner").inner_text()
    _select(page, "lv")
    assert page.evaluate(POLYGON, "lv") == before


def test_insert_delete_and_smooth_keep_a_valid_polygon(page, running_app, apical_clip):  # noqa: F811
    clip_id, _, es = apical_clip
    page.keyboard.press("Escape")
    page.keyboard.press("s")
    _select(page, "lv")
    page.keyboard.press("Shift+ArrowUp")  # a regular (elliptic) polygon would be its own smoothing
    poly = page.evaluate(POLYGON, "lv")
    n = len(poly)
    # double-click the middle of edge 0-1: a vertex is inserted there
    v0 = page.locator('.em-vertex[data-structure="lv"][data-index="0"]').bounding_box()
    v1 = page.locator('.em-vertex[data-structure="lv"][data-index="1"]').bounding_box()
    assert v0 and v1
    x, y = (v0["x"] + v1["x"] + v0["width"]) / 2, (v0["y"] + v1["y"] + v0["height"]) / 2
    page.mouse.dblclick(x, y)
    inserted = page.evaluate(POLYGON, "lv")
    assert len(inserted) == n + 1
    mid = [(poly[0][0] + poly[1][0]) / 2, (poly[0][1] + poly[1][1]) / 2]
    assert abs(inserted[1][0] - mid[0]) < 1.5 and abs(inserted[1][1] - mid[1]) < 1.5
    assert inserted[0] == poly[0] and inserted[2] == poly[1]
    # right-click a vertex: it is deleted
    page.locator('.em-vertex[data-structure="lv"][data-index="1"]').click(button="right")
    assert page.evaluate(POLYGON, "lv") == poly

    area = _area(poly)
    page.locator(".em-contour-smooth").click()
    smoothed = page.evaluate(POLYGON, "lv")
    assert len(smoothed) == n and smoothed != poly
    assert _area(smoothed) == pytest.approx(area, rel=0.03)
    page.keyboard.press("Control+z")  # undo the smoothing
    assert page.evaluate(POLYGON, "lv") == poly
    page.keyboard.press("m")
    assert page.evaluate(POLYGON, "lv") == smoothed
    # Alt+click an edge inserts a vertex, Alt+click a vertex deletes it
    v2 = page.locator('.em-vertex[data-structure="lv"][data-index="2"]').bounding_box()
    v3 = page.locator('.em-vertex[data-structure="lv"][data-index="3"]').bounding_box()
    assert v2 and v3
    page.keyboard.down("Alt")
    page.mouse.click((v2["x"] + v3["x"] + v2["width"]) / 2, (v2["y"] + v3["y"] + v2["height"]) / 2)
    page.keyboard.up("Alt")
    assert len(page.evaluate(POLYGON, "lv")) == n + 1
    page.keyboard.down("Alt")
    page.locator('.em-vertex[data-structure="lv"][data-index="3"]').click()
    page.keyboard.up("Alt")
    assert page.evaluate(POLYGON, "lv") == smoothed

    # the LA has 4 vertices: X deletes one, then refuses to go under 3
    _select(page, "la")
    page.keyboard.press("x")
    assert len(page.evaluate(POLYGON, "la")) == 3
    page.keyboard.press("x")
    assert len(page.evaluate(POLYGON, "la")) == 3
    assert "at least 3" in page.locator(".em-banner").inner_text()
    page.keyboard.press("Delete")  # Del rejects the selected contour, as it rejects a caliper
    page.locator('.em-contour[data-structure="la"]').wait_for(state="detached")
    store = open_store(running_app[1].url)
    try:
        for _ in range(100):
            rejected = [r for r in contour_reviews(store, clip_id) if r.action == "rejected"]
            if rejected:
                break
            page.wait_for_timeout(100)
        assert [(r.structure, r.frame_index) for r in rejected] == [("la", es)]
    finally:
        store.close()


def _open_row(page, clip_id: int) -> None:
    page.wait_for_function(PICK_ROW, arg=str(clip_id))
    page.locator("[data-em-pick]").click()
    page.wait_for_function("(id) => (document.querySelector('.em-viewer').dataset.frameShown || '').startsWith(id + ':')",
                           arg=clip_id)


def test_an_unsaved_contour_edit_survives_switching_clips(page, running_app, apical_clip):  # noqa: F811
    clip_id, _, _ = apical_clip
    page.keyboard.press("Escape")
    page.keyboard.press("s")
    _select(page, "lv")
    page.keyboard.press("Shift+ArrowUp")  # an edit, not saved
    edited = page.evaluate(POLYGON, "lv")
    page.locator('.em-contour-item[data-structure="lv"] .em-contour-name.em-s-draft').wait_for()
    _open_row(page, running_app[1].doppler_clip_id)
    _open_row(page, clip_id)
    assert "unsaved edit" in page.locator(".em-banner").inner_text()
    page.locator(".em-viewer").focus()
    page.keyboard.press("s")
    page.locator('.em-contour-item[data-structure="lv"] .em-contour-name.em-s-draft').wait_for()
    _select(page, "lv")
    assert page.evaluate(POLYGON, "lv") == edited


def test_a_plax_example_shows_its_plax_seg_contours_and_no_volumes(page, running_app):  # noqa: F811
    """The PLAX example proposed by the shipped models: plax-seg's structures are drawn, no volumes."""
    from ui_fixtures import EXAMPLE_2D

    from echomeasure import config
    from echomeasure.models import registry
    from echomeasure.pipeline import ingest_path

    if not any(e.name == "plax-seg" for e in registry.list_entries()):
        pytest.skip("no plax-seg model registered")
    store = open_store(running_app[1].url)
    try:  # another secret: another de-identified clip, this time proposed by the models
        clip_id = ingest_path(config.EXAMPLES_DIR / EXAMPLE_2D, store, secret=b"plax-seg-screenshot").clip.id
    finally:
        store.close()
    page.set_viewport_size({"width": 1440, "height": 900})
    page.reload()  # the worklist lists the new clip
    page.locator(".em-tools").wait_for()
    _open_row(page, clip_id)
    page.locator(".em-viewer").focus()
    page.keyboard.press("d")  # plax-seg labels the ED and ES frames
    page.locator('.em-contour[data-structure="septum"]').first.wait_for()
    drawn = set(page.locator(".em-contour").evaluate_all("els => els.map(e => e.dataset.structure)"))
    assert {"septum", "lv", "outer_wall"} <= drawn
    assert not page.locator(".em-volumes").is_visible()  # the method of discs needs an apical view
    _select(page, "lv")
    page.screenshot(path=str(SHOTS / "contours_plax_1440x900.png"))
