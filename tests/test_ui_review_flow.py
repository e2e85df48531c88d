"""The review UI as a new sonographer uses it, in a real Chromium: the defects found when it was
tried at 1440x900 and 1280x720, each reproduced here, and the reading-room viewer features.

The store holds the 2D and Doppler examples with known proposals (``ui_fixtures``) plus a second
batch on the 2D clip: LVPWd collapsed to 0.00 cm with confidence 0 (an impossible value, as a
failed model gives) and LVIDs with a low confidence.  The app runs with the test secret, so
uploading an example again finds the clip already stored.

Screenshots go to ``$ECHOMEASURE_SCREENSHOTS`` (default ``/tmp/echomeasure-ui-screenshots``).
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from ui_fixtures import CHROMIUM, CHROMIUM_ARGS, EXAMPLE_2D, PICK_ROW, TEST_MODEL, TEST_SECRET, free_port, prepare_store, truth

from echomeasure import config

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make system-deps)"),
]

REVIEWER = "Dr Flow Reviewer"
SHOTS = Path(os.environ.get("ECHOMEASURE_SCREENSHOTS", "/tmp/echomeasure-ui-screenshots"))
TIMEOUT_MS = 60_000
LOW_CONFIDENCE_LVIDS = 0.1


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def flow_store(tmp_path_factory):
    """The UI test store plus a batch with an impossible LVPWd and an unsure LVIDs."""
    from echomeasure.propose.types import ClipProposals, ModelInfo, Proposal
    from echomeasure.store import open_store

    info = prepare_store(tmp_path_factory.mktemp("ui-flow"))
    store = open_store(info.url)
    try:
        props = {p.measurement: p for p in store.proposals(info.clip_id)}
        t = truth(EXAMPLE_2D)
        lvpwd, lvids = props["lvpwd"], props["lvids"]
        collapsed = (lvpwd.points[0], lvpwd.points[0])
        batch = [
            Proposal("lvpwd", lvpwd.frame_index, collapsed, 0.0, "cm", 0.0),
            Proposal("lvids", lvids.frame_index, lvids.points, lvids.value, "cm", LOW_CONFIDENCE_LVIDS),
        ]
        store.add_proposals(
            # another model version: the store keeps one proposal per measurement and version
            info.clip_id,
            ClipProposals("2d", "dicom", ModelInfo(TEST_MODEL[0], "ui-test-2", "d" * 64), batch, t["ed_frame"], t["es_frame"]),
        )
    finally:
        store.close()
    return info


@pytest.fixture(scope="module")
def flow_app(flow_store) -> Iterator[tuple[str, object]]:
    """The review UI on 127.0.0.1, with the secret the store was filled with."""
    from echomeasure.ui.app import build_app, launch

    before = os.environ.get("ECHOMEASURE_SECRET")
    os.environ["ECHOMEASURE_SECRET"] = TEST_SECRET.decode()
    app = build_app(flow_store.url, examples_dir=config.EXAMPLES_DIR)
    _, url, _ = launch(app, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield url.rstrip("/"), flow_store
    finally:
        app.close()
        app.echomeasure_store.close()
        if before is None:
            os.environ.pop("ECHOMEASURE_SECRET", None)
        else:
            os.environ["ECHOMEASURE_SECRET"] = before


@pytest.fixture(scope="module")
def browser(flow_app):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser, flow_app):
    """One page for the reviewer's session (1440x900), with the 2D clip open."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.goto(flow_app[0])
    pg.get_by_label("Reviewer").fill(REVIEWER)
    open_worklist_clip(pg, flow_app[1].clip_id)
    yield pg
    context.close()


# --------------------------------------------------------------------------- helpers


def _store(flow_app):
    from echomeasure.store import open_store

    return open_store(flow_app[1].url)


def reviews_of(flow_app, clip_id: int, name: str) -> list:
    store = _store(flow_app)
    try:
        return [r for r in store.reviews(clip_id) if r.measurement == name]
    finally:
        store.close()


def proposal_of(flow_app, clip_id: int, name: str):
    store = _store(flow_app)
    try:
        return [p for p in store.proposals(clip_id) if p.measurement == name][-1]
    finally:
        store.close()


def open_worklist_clip(pg, clip_id: int) -> None:
    """Click the worklist row of ``clip_id`` and wait until the viewer shows that clip."""
    pg.wait_for_function(PICK_ROW, arg=str(clip_id))
    pg.locator("[data-em-pick]").click()
    pg.locator("#em-clipinfo").filter(has_text=f"clip {clip_id} ·").wait_for()
    pg.locator(".em-handle").first.wait_for()


def wait_for_status(pg, name: str, status: str) -> None:
    pg.locator(f'.em-row[data-name="{name}"] .em-s-{status}').wait_for()


def ctm(pg) -> list[float]:
    return pg.evaluate("() => { const m = document.querySelector('.em-svg').getScreenCTM(); return [m.a, m.d, m.e, m.f]; }")


def point_of(pg, name: str, index: int) -> tuple[float, float]:
    c = pg.locator(f'.em-point[data-name="{name}"][data-index="{index}"]')
    return float(c.get_attribute("cx")), float(c.get_attribute("cy"))


def screen_of(pg, p: tuple[float, float]) -> tuple[float, float]:
    a, d, e, f = ctm(pg)
    return a * p[0] + e, d * p[1] + f


def select_row(pg, name: str) -> None:
    pg.locator(f'.em-row[data-name="{name}"] .em-name').click()


def drag(pg, start: tuple[float, float], end: tuple[float, float], button: str = "left") -> None:
    pg.mouse.move(*start)
    pg.mouse.down(button=button)
    pg.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=3)
    pg.mouse.move(*end, steps=3)
    pg.mouse.up(button=button)


def boxes_overlap(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])


def visible_label_boxes(pg) -> list[dict]:
    return pg.evaluate(
        """() => [...document.querySelectorAll('.em-label')].map(t => {
            const b = t.getBoundingClientRect();
            return {name: t.dataset.name, x: b.x, y: b.y, width: b.width, height: b.height}; })"""
    )


# --------------------------------------------------------------------------- one reviewer's session, in order


def test_accept_all_takes_only_unflagged_plausible_proposals(page, flow_app):
    """Defect 1: Accept all stored LVPWd 0.00 cm (confidence 0) as reviewed."""
    clip_id = flow_app[1].clip_id
    assert page.locator('.em-row[data-name="lvpwd"] .em-current').inner_text().startswith("0.00")
    page.locator(".em-accept-all").click()
    for name in ("ivsd", "lvidd", "aortic_root"):
        wait_for_status(page, name, "accepted")
    for note in (page.locator(".em-notes").inner_text(), page.locator(".em-banner").inner_text()):
        assert "3 left to check one by one" in note and "LVPWd (implausible)" in note and "LVIDs (check)" in note
    page.screenshot(path=str(SHOTS / "flow_01_accept_all.png"))
    for name in ("lvpwd", "lvids", "la"):
        assert reviews_of(flow_app, clip_id, name) == [], f"{name} must not be accepted in bulk"
        assert page.locator(f'.em-row[data-name="{name}"] .em-s-proposed').count() == 1


def test_implausible_value_is_accepted_alone_after_confirmation(page, flow_app):
    """Deliver 6: one at a time, after a confirmation."""
    clip_id = flow_app[1].clip_id
    page.locator('.em-row[data-name="lvpwd"] button.em-ok').click()
    confirm = page.locator(".em-confirm")
    confirm.wait_for()
    assert "outside the plausible range" in confirm.inner_text()
    assert reviews_of(flow_app, clip_id, "lvpwd") == []
    page.locator(".em-confirm-yes").click()
    wait_for_status(page, "lvpwd", "accepted")
    (review,) = reviews_of(flow_app, clip_id, "lvpwd")
    assert review.action == "accepted" and review.value == pytest.approx(0.0)


def test_flag_is_cleared_by_a_human_correction(page, flow_app):
    """Defect 10d: LA kept its low-confidence mark after a human correction."""
    clip_id = flow_app[1].clip_id
    select_row(page, "la")
    assert page.locator('.em-row[data-name="la"] .em-conf').inner_text() == "check"
    assert "check" in page.locator('.em-label[data-name="la"]').text_content()
    page.keyboard.press("ArrowDown")
    # edited by a human: no longer "check", even before saving
    assert page.locator('.em-row[data-name="la"] .em-conf').inner_text() != "check"
    page.keyboard.press("Enter")
    wait_for_status(page, "la", "corrected")
    assert reviews_of(flow_app, clip_id, "la")[-1].action == "corrected"
    assert page.locator('.em-row[data-name="la"] .em-conf').inner_text() != "check"
    assert "check" not in page.locator('.em-label[data-name="la"]').text_content()


def test_unsaved_edit_is_kept_as_a_draft_when_switching_clips(page, flow_app):
    """Defect 2: LVIDs nudged with Shift+Down came back as the proposal after a row switch."""
    clip_id, doppler_id = flow_app[1].clip_id, flow_app[1].doppler_clip_id
    select_row(page, "lvids")
    before = point_of(page, "lvids", 0)
    page.keyboard.press("Shift+ArrowDown")
    assert point_of(page, "lvids", 0) == pytest.approx((before[0], before[1] + 10))
    open_worklist_clip(page, doppler_id)
    page.locator('.em-handle[data-name="av_vmax"]').wait_for()
    open_worklist_clip(page, clip_id)
    page.locator('.em-handle[data-name="lvids"]').first.wait_for()
    assert point_of(page, "lvids", 0) == pytest.approx((before[0], before[1] + 10))
    assert "*" in page.locator('.em-row[data-name="lvids"] .em-current').inner_text()
    assert "unsaved" in page.locator(".em-summary").inner_text()
    assert reviews_of(flow_app, clip_id, "lvids") == []  # nothing saved behind the reviewer's back


def test_undo_after_save_writes_a_new_review(page, flow_app):
    """Defect 9 / deliver 7: Ctrl+Z after saving restored the proposal locally only."""
    clip_id = flow_app[1].clip_id
    proposal = proposal_of(flow_app, clip_id, "lvids")
    select_row(page, "lvids")  # carries the draft of the previous test: saved as corrected
    page.keyboard.press("Enter")
    wait_for_status(page, "lvids", "corrected")
    assert [r.action for r in reviews_of(flow_app, clip_id, "lvids")] == ["corrected"]
    page.locator(".em-svg").click(position={"x": 5, "y": 5})  # focus the viewer (empty corner)
    page.keyboard.press("Control+z")
    wait_for_status(page, "lvids", "accepted")
    reviews = reviews_of(flow_app, clip_id, "lvids")
    assert [r.action for r in reviews] == ["corrected", "accepted"]  # append-only: both kept
    assert [c for p in reviews[-1].points for c in p] == pytest.approx([c for p in proposal.points for c in p])
    assert "new review" in page.locator(".em-banner").inner_text()


def test_frame_numbers_count_from_zero_in_ui_and_csv(page, flow_app):
    """Defect 8: the CSV counted from 0, the UI from 1."""
    clip_id = flow_app[1].clip_id
    frame = proposal_of(flow_app, clip_id, "lvidd").frame_index
    select_row(page, "lvidd")
    assert page.locator('.em-row[data-name="lvidd"] .em-frame-no').inner_text() == f"f{frame}"
    assert page.locator(".em-frameinfo").inner_text().startswith(f"Frame {frame} (0–")
    page.locator("#em-csv-study").click()
    link = page.locator("#em-csv-file a").first
    link.wait_for()
    with page.expect_download() as info:
        link.click()
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8"))))
    row = next(r for r in rows if r["measurement"] == "lvidd" and r["clip_id"] == str(clip_id))
    assert row["frame"] == str(frame)


def test_export_link_of_the_previous_study_is_hidden_on_opening_another(page, flow_app):
    """Defect 10a: the previous study's CSV stayed offered."""
    assert page.locator("#em-csv-file a").first.is_visible()
    open_worklist_clip(page, flow_app[1].doppler_clip_id)
    page.locator('.em-handle[data-name="av_vmax"]').wait_for()
    page.locator("#em-csv-file").wait_for(state="hidden")
    open_worklist_clip(page, flow_app[1].clip_id)


def test_worklist_says_what_a_clip_is_filters_and_opens_the_next_unreviewed(page, flow_app):
    header = page.locator("#em-worklist thead").inner_text()
    for word in ("status", "done", "view", "frames", "calib", "study date"):
        assert word in header
    text = "\n".join(page.locator("#em-worklist [role=gridcell]").all_inner_texts())
    assert re.search(r"PLAX · 40 fr · DICOM · \d{4}-\d{2}-\d{2}", text), text  # the shifted study date
    assert "Doppler · 1 fr · DICOM" in text
    page.locator("#em-worklist-filter input").click()
    page.get_by_role("option", name="to review", exact=True).click()
    page.wait_for_function(
        "() => { const ids = [...document.querySelectorAll('#em-worklist [role=gridcell]')]"
        ".filter(c => c.parentElement.querySelector('[role=gridcell]') === c).map(c => c.innerText.trim());"
        " return ids.length === 1; }"
    )
    assert "to review" in page.locator("#em-worklist [role=gridcell]").all_inner_texts()
    page.locator("#em-worklist-filter input").click()
    page.get_by_role("option", name="all", exact=True).click()
    # key N in the viewer: the next clip still to review
    page.locator(".em-svg").click(position={"x": 5, "y": 5})
    page.keyboard.press("n")
    page.locator("#em-clipinfo").filter(has_text=f"clip {flow_app[1].doppler_clip_id} ·").wait_for()
    page.locator('.em-handle[data-name="av_vmax"]').wait_for()
    open_worklist_clip(page, flow_app[1].clip_id)


def test_reviewer_missing_is_told_in_the_viewer_and_the_field_is_highlighted(page, flow_app):
    """Defect 6: the warning covered the Reviewer field, which was not highlighted."""
    clip_id = flow_app[1].clip_id
    n_before = len(reviews_of(flow_app, clip_id, "ivsd"))
    page.get_by_label("Reviewer").fill("")
    select_row(page, "ivsd")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Enter")
    field = page.locator("#em-reviewer")
    page.wait_for_function("() => document.querySelector('#em-reviewer').classList.contains('em-reviewer-missing')")
    assert "Reviewer" in page.locator(".em-banner").inner_text()
    box = field.bounding_box()
    for toast in page.locator(".toast-body, [data-testid='toast-body']").all():
        if toast.is_visible():
            assert not boxes_overlap(box, toast.bounding_box()), "a notice covers the Reviewer field"
    page.screenshot(path=str(SHOTS / "flow_02_reviewer_missing.png"))
    assert len(reviews_of(flow_app, clip_id, "ivsd")) == n_before
    page.get_by_label("Reviewer").press_sequentially(REVIEWER)  # typed, as a person does
    page.wait_for_function("() => !document.querySelector('#em-reviewer').classList.contains('em-reviewer-missing')")
    select_row(page, "ivsd")
    page.keyboard.press("Enter")
    wait_for_status(page, "ivsd", "corrected")
    # the "Not saved" banner goes with the save that succeeded (it stayed 3-8 s in a trial)
    assert not page.locator(".em-banner").inner_text().startswith("Not saved")


def test_add_list_never_keeps_a_stale_choice(page, flow_app):
    """Defect 4: "+ Add" did nothing when its list kept a value that was no longer an option."""
    page.locator('.em-row[data-name="aortic_root"] button.em-no').click()
    wait_for_status(page, "aortic_root", "rejected")
    page.locator('.em-row[data-name="lvidd"] button.em-no').click()
    wait_for_status(page, "lvidd", "rejected")
    page.locator(".em-add-name").select_option("aortic_root")
    page.locator('.em-row[data-name="aortic_root"] button.em-ok').click()  # back: no longer addable
    wait_for_status(page, "aortic_root", "accepted")
    options = page.locator(".em-add-name option").evaluate_all("os => os.map(o => o.value)")
    assert options == ["lvidd"]
    assert page.locator(".em-add-name").input_value() == "lvidd"
    page.locator(".em-add").click()
    assert "LVIDd" in page.locator(".em-banner").inner_text()
    page.keyboard.press("Escape")


def test_zoom_2x_keeps_image_pixel_coordinates_exact_and_handles_their_size(page, flow_app):
    clip_id = flow_app[1].clip_id
    select_row(page, "lvids")
    page.locator(".em-svg").click(position={"x": 5, "y": 5})
    page.keyboard.press("f")
    fit_a = ctm(page)[0]
    handle_fit = page.locator('.em-point[data-name="lvids"][data-index="1"]').bounding_box()
    page.keyboard.press("+")
    page.keyboard.press("+")
    a = ctm(page)[0]
    assert a == pytest.approx(2 * fit_a, rel=1e-9)
    assert page.locator(".em-zoom").inner_text() == "200%"
    handle_zoom = page.locator('.em-point[data-name="lvids"][data-index="1"]').bounding_box()
    assert handle_zoom["width"] == pytest.approx(handle_fit["width"], abs=0.5)  # same size on screen
    # the point drawn where the CTM says, and a drag of (dx, dy) screen px moves it (dx, dy) / a
    p = point_of(page, "lvids", 1)
    sx, sy = screen_of(page, p)
    sx, sy = round(sx), round(sy)
    page.mouse.move(sx, sy)
    page.mouse.down()
    page.mouse.move(sx + 10, sy + 6, steps=4)
    page.mouse.move(sx + 20, sy + 12, steps=4)
    page.mouse.up()
    moved = point_of(page, "lvids", 1)
    assert moved[0] - p[0] == pytest.approx(20 / a, abs=1e-3)
    assert moved[1] - p[1] == pytest.approx(12 / a, abs=1e-3)
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('.em-row[data-name=\"lvids\"] .em-status').textContent === 'corrected'"
    )
    review = reviews_of(flow_app, clip_id, "lvids")[-1]
    assert review.points[1] == pytest.approx(moved, abs=0.006)  # the store rounds to 0.01 px
    page.screenshot(path=str(SHOTS / "flow_04_zoom_2x.png"))


def test_wheel_zooms_at_the_pointer_and_background_drag_pans_and_fit_resets(page, flow_app):
    page.keyboard.press("f")
    box = page.locator(".em-frame").bounding_box()
    at = (box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.6)
    a, d, e, f = ctm(page)
    before = ((at[0] - e) / a, (at[1] - f) / d)
    page.mouse.move(*at)
    page.mouse.wheel(0, -300)
    page.wait_for_function("(a) => document.querySelector('.em-svg').getScreenCTM().a > a * 1.2", arg=a)
    a2, d2, e2, f2 = ctm(page)
    after = ((at[0] - e2) / a2, (at[1] - f2) / d2)
    assert after == pytest.approx(before, abs=0.5)  # the image point under the pointer stays put
    view_before = page.evaluate("() => document.querySelector('.em-svg').getAttribute('viewBox')").split()
    drag(page, (box["x"] + 8, box["y"] + box["height"] - 8), (box["x"] + 68, box["y"] + box["height"] - 38))
    view_after = page.evaluate("() => document.querySelector('.em-svg').getAttribute('viewBox')").split()
    assert float(view_after[0]) == pytest.approx(float(view_before[0]) - 60 / a2, abs=0.6)
    page.keyboard.press("f")
    assert page.locator(".em-zoom").inner_text() == "100%"


def test_right_drag_changes_window_level_and_reset_restores_it(page, flow_app):
    box = page.locator(".em-frame").bounding_box()
    start = (box["x"] + box["width"] / 2, box["y"] + 15)
    drag(page, start, (start[0] - 80, start[1] + 40), button="right")
    assert page.locator(".em-frame").get_attribute("filter") == "url(#em-wl-filter)"
    slope = float(page.locator(".em-wl-filter feFuncR").get_attribute("slope"))
    assert slope > 1.2  # narrower window: more contrast
    assert page.locator(".em-wl").inner_text() != "W/L 255/128"
    page.locator(".em-wl-reset").click()
    assert page.locator(".em-frame").get_attribute("filter") is None
    assert page.locator(".em-wl").inner_text() == "W/L 255/128"


def test_linked_calipers_move_together_and_unlink(page, flow_app):
    clip_id = flow_app[1].clip_id
    store = _store(flow_app)
    try:
        states = {s.measurement: s for s in store.current_measurements(clip_id)}
    finally:
        store.close()
    # put IVSd back on the point LVIDd starts from (the fixture's proposals are 1-2 px apart)
    select_row(page, "ivsd")
    page.keyboard.press("f")
    assert states["ivsd"].status == "corrected" and states["lvidd"].status == "rejected"
    ivsd_end = point_of(page, "ivsd", 1)
    lvpwd_start = point_of(page, "lvpwd", 0)
    select_row(page, "lvidd")  # rejected earlier: bring it back with the proposal
    page.locator('.em-row[data-name="lvidd"] button.em-ok').click()
    wait_for_status(page, "lvidd", "accepted")
    select_row(page, "lvidd")
    lvidd0 = point_of(page, "lvidd", 0)
    page.locator(".em-svg").click(position={"x": 5, "y": 5})
    select_row(page, "lvidd")
    page.keyboard.press("ArrowDown")  # endpoint 0 of LVIDd is endpoint 1 of IVSd
    assert point_of(page, "lvidd", 0) == pytest.approx((lvidd0[0], lvidd0[1] + 1))
    assert point_of(page, "ivsd", 1) == pytest.approx((ivsd_end[0], ivsd_end[1] + 1))
    page.keyboard.press("2")
    lvidd1 = point_of(page, "lvidd", 1)
    page.keyboard.press("ArrowRight")  # endpoint 1 of LVIDd is endpoint 0 of LVPWd
    assert point_of(page, "lvpwd", 0) == pytest.approx((lvpwd_start[0] + 1, lvpwd_start[1]))
    assert point_of(page, "lvidd", 1) == pytest.approx((lvidd1[0] + 1, lvidd1[1]))
    # aortic root and LA: the posterior aortic wall is shared
    select_row(page, "aortic_root")
    page.keyboard.press("2")
    la0 = point_of(page, "la", 0)
    page.keyboard.press("ArrowUp")
    assert point_of(page, "la", 0) == pytest.approx((la0[0], la0[1] - 1))
    # unlinked: only the caliper itself moves
    page.locator(".em-link").uncheck()
    select_row(page, "lvidd")
    page.keyboard.press("ArrowDown")
    assert point_of(page, "ivsd", 1) == pytest.approx((ivsd_end[0], ivsd_end[1] + 1))
    page.locator(".em-link").check()
    for _ in range(4):
        page.keyboard.press("Control+z")
    assert point_of(page, "ivsd", 1) == pytest.approx(ivsd_end)


def test_labels_do_not_overlap_and_moved_ones_get_leader_lines(page, flow_app):
    # LVIDs (ES) dragged onto LVIDd (ED): both drawn, same midpoint; the labels must not collide
    select_row(page, "lvidd")
    target = [point_of(page, "lvidd", 0), point_of(page, "lvidd", 1)]
    select_row(page, "lvids")
    for i in (0, 1):
        drag(page, screen_of(page, point_of(page, "lvids", i)), screen_of(page, target[i]))
    page.wait_for_timeout(100)
    boxes = visible_label_boxes(page)
    assert len(boxes) >= 5
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not boxes_overlap(a, b), (a["name"], b["name"])
    assert page.locator(".em-leader").count() >= 1
    page.screenshot(path=str(SHOTS / "flow_05_labels.png"))
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+z")


def test_seconds_spent_does_not_count_idle_time(page, flow_app):
    """Defect 10c: seconds_spent counted the time a measurement sat auto-selected."""
    clip_id = flow_app[1].doppler_clip_id
    open_worklist_clip(page, clip_id)
    page.locator('.em-handle[data-name="av_vmax"]').wait_for()
    page.wait_for_timeout(2500)  # the reviewer looks away
    page.keyboard.press("Enter")  # accepts the auto-selected AV Vmax
    wait_for_status(page, "av_vmax", "accepted")
    (review,) = reviews_of(flow_app, clip_id, "av_vmax")
    assert review.seconds_spent is not None and review.seconds_spent < 1.0


# --------------------------------------------------------------------------- fresh pages


def test_keys_work_right_after_open_example(browser, flow_app):
    """Defect 5: focus stayed on the button, so keys did nothing; the hint did not say why."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    try:
        pg.goto(flow_app[0])
        pg.get_by_label("Reviewer").fill(REVIEWER)
        pg.locator("#em-open-example").click()
        pg.locator(".em-handle").first.wait_for()
        pg.wait_for_function("() => document.activeElement && document.activeElement.classList.contains('em-viewer')")
        selected = pg.locator(".em-row.em-selected").get_attribute("data-name")
        pg.keyboard.press("ArrowRight")
        assert "*" in pg.locator(f'.em-row[data-name="{selected}"] .em-current').inner_text()
        assert "Click the image" in pg.locator(".em-hint").inner_text()
        assert pg.locator(".em-focus").inner_text() == "keys active"
    finally:
        context.close()


def test_upload_names_a_bad_file_empties_the_box_and_leaves_no_dead_link(browser, flow_app, tmp_path):
    """Defect 7 and 10b: a renamed text file was reported as "original: ...", stayed in the
    upload box, and a good upload left a download link answering 403; re-uploading a stored
    file opened the old clip without a word."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    try:
        pg.goto(flow_app[0])
        pg.get_by_label("Reviewer").fill(REVIEWER)
        bad = tmp_path / "notes_renamed.dcm"
        bad.write_text("these are my notes, not an image\n")
        pg.locator("#em-upload input[type=file]").set_input_files(str(bad))
        toast = pg.locator(".toast-body").filter(has_text="notes_renamed.dcm")
        toast.first.wait_for()
        assert "original" not in toast.first.inner_text()
        pg.wait_for_function("() => !document.querySelector('#em-upload').innerText.includes('notes_renamed')")
        pg.screenshot(path=str(SHOTS / "flow_03_bad_upload.png"))

        pg.locator("#em-upload input[type=file]").set_input_files(str(config.EXAMPLES_DIR / EXAMPLE_2D))
        pg.locator("#em-clipinfo").filter(has_text="already stored").wait_for()
        pg.locator(".em-handle").first.wait_for()
        pg.wait_for_function(f"() => !document.querySelector('#em-upload').innerText.includes('{EXAMPLE_2D}')")
        for href in pg.locator("#em-upload a").evaluate_all("as => as.map(a => a.href)"):
            assert pg.request.get(href).status == 200, "a link in the upload box does not answer"
    finally:
        context.close()


@contextmanager
def _clip_open_at(browser, flow_app, width: int, height: int, **device):
    """A fresh page of ``width`` x ``height`` (``device``: Playwright's phone settings) with the
    reviewer named and the flow's PLAX clip open."""
    context = browser.new_context(viewport={"width": width, "height": height}, **device)
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    try:
        pg.goto(flow_app[0])
        pg.get_by_label("Reviewer").fill(REVIEWER)
        open_worklist_clip(pg, flow_app[1].clip_id)
        pg.wait_for_timeout(300)
        yield pg
    finally:
        context.close()


@pytest.mark.parametrize("width,height", [(1440, 900), (1280, 720)])
def test_layout_uses_the_width_and_keeps_every_control_on_screen(browser, flow_app, width, height):
    """Defect 3 / deliver 2: at 1280x720 ES was cut off and the image was 370x278 px."""
    with _clip_open_at(browser, flow_app, width, height) as pg:
        image = pg.locator(".em-frame").bounding_box()
        if width == 1440:
            assert image["width"] >= 800, image
        controls = [".em-play", ".em-slider", ".em-ed", ".em-es", ".em-fit", ".em-zoom-in", ".em-zoom-out",
                    ".em-wl-reset", ".em-link", ".em-accept-all", ".em-add", ".em-frame", "#em-reviewer",
                    "#em-open-example", "#em-next", "#em-csv-study", "#em-csv-all", ".em-row[data-name='aortic_root'] .em-no"]
        for sel in controls:
            box = pg.locator(sel).first.bounding_box()
            assert box is not None, sel
            assert box["x"] >= 0 and box["y"] >= 0, sel
            assert box["x"] + box["width"] <= width + 0.5 and box["y"] + box["height"] <= height + 0.5, (sel, box)
        assert pg.evaluate("() => document.documentElement.scrollWidth") <= width
        side = pg.locator(".em-side").bounding_box()
        table = pg.locator(".em-table").bounding_box()
        assert table["x"] + table["width"] <= side["x"] + side["width"], (
            "the measurement table overflows its panel", table, side)
        pg.screenshot(path=str(SHOTS / f"review_{width}x{height}.png"))


def test_a_phone_stacks_the_panels_and_keeps_every_control_within_its_width(browser, flow_app):
    """A new-user trial at 390x844: the left column and the viewer stayed side by side, the viewer
    reached x 652 on a 390 px screen, and the page could not scroll sideways (the image, values,
    accept/reject, + Add, ED/ES and Reset W/L were unreachable)."""
    width, height = 390, 844
    with _clip_open_at(browser, flow_app, width, height, device_scale_factor=2, is_mobile=True, has_touch=True) as pg:
        controls = [".em-play", ".em-slider", ".em-ed", ".em-es", ".em-fit", ".em-zoom-in", ".em-wl-reset",
                    ".em-accept-all", ".em-add", ".em-frame", "#em-reviewer", "#em-open-example", "#em-next",
                    "#em-csv-study", ".em-row[data-name='aortic_root'] .em-no", ".em-row[data-name='aortic_root'] .em-ok"]
        for sel in controls:  # on the page's width (the page scrolls down, never sideways)
            box = pg.locator(sel).first.bounding_box()
            assert box is not None, sel
            assert box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (sel, box)
        assert pg.evaluate("() => document.documentElement.scrollWidth") <= width
        frame, left = pg.locator(".em-frame").bounding_box(), pg.locator("#em-left").bounding_box()
        assert frame["y"] >= left["y"] + left["height"] - 1, "the viewer is not below the left column"
        assert frame["width"] >= 0.9 * width - 30, frame  # the image takes the phone's width
        pg.locator(".em-row[data-name='aortic_root'] .em-ok").tap()
        pg.locator('.em-row[data-name="aortic_root"] .em-s-accepted').wait_for()  # a tap reviews
        pg.screenshot(path=str(SHOTS / "review_390x844.png"), full_page=True)
