"""Placing new points without a mouse (Calibrate, + Add): the arrow keys move a named crosshair
(Shift: 10 px) and Enter places a point there.  In a real Chromium, keyboard only once the clip
is open."""

from __future__ import annotations

import pytest
from test_ui_calibration import write_sector_video
from ui_fixtures import CHROMIUM, CHROMIUM_ARGS, PICK_ROW, TEST_SECRET, free_port, prepare_store

from echomeasure import config

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make system-deps)"),
]

REVIEWER = "Dr Keyboard"


def _open(page, clip_id: int) -> None:
    page.wait_for_function(PICK_ROW, arg=str(clip_id))
    page.locator("[data-em-pick]").click()
    page.locator("#em-clipinfo").filter(has_text=f"clip {clip_id} ·").wait_for()


def _crosshair(page) -> tuple[float, float, str]:
    ch = page.locator(".em-crosshair")
    ch.wait_for(state="attached")
    return float(ch.get_attribute("data-x")), float(ch.get_attribute("data-y")), ch.get_attribute("aria-label")


def _move(page, dx: int, dy: int) -> None:
    """Arrow keys: tens with Shift, then ones."""
    for delta, (minus, plus) in ((dx, ("ArrowLeft", "ArrowRight")), (dy, ("ArrowUp", "ArrowDown"))):
        key = plus if delta > 0 else minus
        for _ in range(abs(delta) // 10):
            page.keyboard.press(f"Shift+{key}")
        for _ in range(abs(delta) % 10):
            page.keyboard.press(key)


def test_add_and_calibrate_by_keyboard(tmp_path):
    from playwright.sync_api import sync_playwright

    from echomeasure.pipeline import ingest_path
    from echomeasure.store import open_store
    from echomeasure.ui.app import build_app, launch

    info = prepare_store(tmp_path)
    video = tmp_path / "loop.avi"
    write_sector_video(video)
    store = open_store(info.url)
    try:
        video_id = ingest_path(video, store, secret=TEST_SECRET, run_models=False).clip.id
        av = next(p for p in store.proposals(info.doppler_clip_id) if p.measurement == "av_vmax")
    finally:
        store.close()
    app = build_app(info.url, examples_dir=config.EXAMPLES_DIR)
    _, url, _ = launch(app, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    errors: list[str] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.set_default_timeout(60_000)
            page.goto(url)
            page.get_by_label("Reviewer").fill(REVIEWER)

            # + Add on the Doppler clip: the button pressed with Enter, the point placed with the keys
            _open(page, info.doppler_clip_id)
            page.locator('.em-handle[data-name="av_vmax"]').wait_for()
            page.locator(".em-add-name").select_option("lvot_vmax")
            add = page.get_by_role(
                "button", name="Add the measurement: place its points by clicking, or with the arrow keys and Enter")
            add.focus()
            page.keyboard.press("Enter")
            x0, y0, label = _crosshair(page)
            assert "crosshair for LVOT Vmax, point 1 of 1" in label and "arrow keys move it, Enter places" in label
            target = (round(av.points[0][0] + 40.0), round(av.points[0][1] - 20.0))  # inside the spectral strip
            dx, dy = int(target[0] - x0), int(target[1] - y0)
            _move(page, dx, dy)
            x1, y1, _ = _crosshair(page)
            assert (x1, y1) == pytest.approx((x0 + dx, y0 + dy), abs=1e-9)
            page.keyboard.press("Enter")  # places the point: a draft
            page.locator('.em-row[data-name="lvot_vmax"] .em-s-draft').wait_for()
            assert page.locator(".em-crosshair").count() == 0
            page.keyboard.press("Enter")  # saves it
            page.locator('.em-row[data-name="lvot_vmax"] .em-s-added').wait_for()

            # Calibrate the video: both ends of a 200 px line with the keys, then its length in cm
            _open(page, video_id)
            calibrate = page.get_by_role("button", name="Calibrate: place both ends of a known length by clicking, "
                                                        "or with the arrow keys and Enter")
            calibrate.focus()
            page.keyboard.press("Enter")
            cx, cy, label = _crosshair(page)
            assert "point 1 of 2" in label
            _move(page, -100, 0)
            page.keyboard.press("Enter")
            assert "point 2 of 2" in _crosshair(page)[2]
            _move(page, 200, 0)
            page.keyboard.press("Enter")
            page.locator(".em-cal-cm").wait_for(state="visible")
            page.keyboard.type("5")  # the cm field has the focus
            page.keyboard.press("Enter")
            page.locator("#em-clipinfo").filter(has_text="user scale").wait_for()
            browser.close()
    finally:
        app.close()
        app.echomeasure_store.close()
    store = open_store(info.url)
    try:
        (added,) = [r for r in store.reviews(info.doppler_clip_id) if r.measurement == "lvot_vmax"]
        clip = store.clip(video_id)
    finally:
        store.close()
    assert added.action == "added" and added.reviewer == REVIEWER
    assert added.points[0] == pytest.approx((x0 + dx, y0 + dy), abs=1e-9)
    assert clip.calibration_source == "user" and clip.user_cm_per_px == pytest.approx(5 / 200)
    assert not errors, errors
