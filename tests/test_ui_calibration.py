"""User calibration of a video: the store rule, and the review UI in a real Chromium.

A video has no DICOM calibration regions, so its calipers measure pixels.  The reviewer draws a
known length, types its cm; the clip then reads as calibration "user", values are in cm, and the
source travels into the CSV export.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import numpy as np
import pytest
from ui_fixtures import CHROMIUM, CHROMIUM_ARGS, PICK_ROW, TEST_SECRET, free_port, prepare_store

from echomeasure import config
from echomeasure.errors import StoreError

REVIEWER = "Dr Scale"
SHOTS = Path(os.environ.get("ECHOMEASURE_SCREENSHOTS", "/tmp/echomeasure-ui-screenshots"))
WIDTH, HEIGHT = 320, 240


def write_sector_video(path: Path, n_frames: int = 10) -> None:
    """A small MJPG AVI: a moving speckle sector on black (no metadata, no calibration)."""
    import cv2

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    sector = ((xx - WIDTH / 2) ** 2 + (yy - 10) ** 2 < 220**2) & (np.abs(xx - WIDTH / 2) < (yy - 10) * 0.9)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (WIDTH, HEIGHT))
    try:
        for _ in range(n_frames):
            frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
            frame[sector] = rng.integers(40, 220, size=(int(sector.sum()), 1), dtype=np.uint8)
            writer.write(frame)
    finally:
        writer.release()


@pytest.fixture(scope="module")
def video_store(tmp_path_factory):
    """The UI test store plus a video clip (models skipped: no proposals)."""
    from echomeasure.pipeline import ingest_path
    from echomeasure.store import open_store

    folder = tmp_path_factory.mktemp("ui-calibration")
    info = prepare_store(folder)
    video = folder / "loop.avi"
    write_sector_video(video)
    store = open_store(info.url)
    try:
        result = ingest_path(video, store, secret=TEST_SECRET, run_models=False)
        assert result.clip.calibration_source == "none" and not result.clip.regions
    finally:
        store.close()
    return info, result.clip.id


@pytest.fixture()
def store_and_clips(video_store):
    from echomeasure.store import open_store

    info, video_id = video_store
    store = open_store(info.url)
    yield store, info, video_id
    store.close()


# --------------------------------------------------------------------------- store rule


def test_user_calibration_refuses_bad_input_and_dicom_clips(store_and_clips):
    from echomeasure.store.user_calibration import set_user_calibration

    store, info, video_id = store_and_clips
    with pytest.raises(StoreError, match="DICOM regions"):
        set_user_calibration(store, info.clip_id, [[10, 10], [110, 10]], 5.0, REVIEWER)
    with pytest.raises(StoreError, match="at least 20 px"):
        set_user_calibration(store, video_id, [[10, 10], [15, 10]], 1.0, REVIEWER)
    for bad in (0, -2, float("nan"), "five", 500):
        with pytest.raises(StoreError, match="cm"):
            set_user_calibration(store, video_id, [[10, 10], [110, 10]], bad, REVIEWER)
    with pytest.raises(StoreError, match="outside"):
        set_user_calibration(store, video_id, [[10, 10], [WIDTH + 50, 10]], 5.0, REVIEWER)
    # a plausible length on a plausible line, but an implausible scale: 40 cm over 25 px, 0.01 cm over 100 px
    with pytest.raises(StoreError, match="1.6 cm per pixel, outside the plausible"):
        set_user_calibration(store, video_id, [[10, 10], [35, 10]], 40.0, REVIEWER)
    with pytest.raises(StoreError, match="0.0001 cm per pixel, outside the plausible"):
        set_user_calibration(store, video_id, [[10, 10], [110, 10]], 0.01, REVIEWER)
    with pytest.raises(StoreError):
        set_user_calibration(store, video_id, [[10, 10], [110, 10]], 5.0, "  ")
    clip = store.clip(video_id)
    assert clip.calibration_source == "none" and clip.user_cm_per_px is None  # nothing stored


def test_user_calibration_gives_the_clip_a_scale_and_keeps_history(tmp_path):
    from echomeasure.pipeline import ingest_path
    from echomeasure.store import open_store
    from echomeasure.store.user_calibration import set_user_calibration

    video = tmp_path / "other.avi"
    write_sector_video(video, n_frames=8)
    store = open_store(f"sqlite:///{tmp_path / 's.sqlite'}")
    try:
        clip_id = ingest_path(video, store, secret=TEST_SECRET, run_models=False).clip.id
        first = set_user_calibration(store, clip_id, [[20, 30], [220, 30]], 4.0, REVIEWER)
        assert first.calibration_source == "user" and first.user_cm_per_px == pytest.approx(0.02)
        set_user_calibration(store, clip_id, [[20, 30], [20, 130]], 5.0, REVIEWER)  # drawn again
        assert store.clip(clip_id).user_cm_per_px == pytest.approx(0.05)  # the latest counts
        (summary,) = [s for s in store.worklist() if s.clip_id == clip_id]
        assert summary.calibration_source == "user"
        events = [e for e in store.audit_events(clip_id) if e.action == "clip.calibrate"]
        assert len(events) == 2 and events[0].actor == REVIEWER
    finally:
        store.close()


# --------------------------------------------------------------------------- browser


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make system-deps)")
def test_ui_calibrates_a_video_and_values_switch_to_cm_and_export_says_user(video_store):
    from playwright.sync_api import sync_playwright

    from echomeasure.store import open_store
    from echomeasure.ui.app import build_app, launch

    info, video_id = video_store
    app = build_app(info.url, examples_dir=config.EXAMPLES_DIR)
    _, url, _ = launch(app, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.goto(url)
            page.get_by_label("Reviewer").fill(REVIEWER)
            page.wait_for_function(PICK_ROW, arg=str(video_id))
            page.locator("[data-em-pick]").click()
            page.locator("#em-clipinfo").filter(has_text=f"clip {video_id} ·").wait_for()
            assert "uncalibrated" in page.locator("#em-clipinfo").inner_text()

            def click_image(x: float, y: float) -> None:
                a, d, e, f = page.evaluate(
                    "() => { const m = document.querySelector('.em-svg').getScreenCTM(); return [m.a, m.d, m.e, m.f]; }"
                )
                page.mouse.click(a * x + e, d * y + f)

            page.locator(".em-calibrate").click()
            click_image(60, 120)
            click_image(260, 120)  # 200 px
            page.locator(".em-cal-cm").fill("5")
            page.locator(".em-cal-set").click()
            page.locator("#em-clipinfo").filter(has_text="user scale").wait_for()
            assert "Calibrated" in page.locator(".em-banner").inner_text()

            page.locator(".em-add-name").select_option("lvidd")
            page.locator(".em-add").click()
            click_image(100, 80)
            click_image(100, 200)  # 120 px = 3.00 cm at 0.025 cm/px
            page.locator('.em-row[data-name="lvidd"] .em-s-draft').wait_for()
            assert "3.00 cm" in page.locator('.em-caliper[data-name="lvidd"] .em-label').text_content()
            page.screenshot(path=str(SHOTS / "calibration_video.png"))
            page.keyboard.press("Enter")
            page.locator('.em-row[data-name="lvidd"] .em-s-added').wait_for()

            page.locator("#em-csv-study").click()
            link = page.locator("#em-csv-file a").first
            link.wait_for()
            with page.expect_download() as dl:
                link.click()
            rows = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text(encoding="utf-8"))))
            context.close()
            browser.close()
    finally:
        app.close()
        app.echomeasure_store.close()

    store = open_store(info.url)
    try:
        clip = store.clip(video_id)
        (review,) = [r for r in store.reviews(video_id) if r.measurement == "lvidd"]
    finally:
        store.close()
    assert clip.calibration_source == "user"
    assert clip.user_cm_per_px == pytest.approx(5.0 / 200.0, rel=1e-3)
    assert review.unit == "cm" and review.value == pytest.approx(120 * clip.user_cm_per_px, abs=0.02)
    (row,) = [r for r in rows if r["clip_id"] == str(video_id) and r["measurement"] == "lvidd"]
    assert row["calibration_source"] == "user"
    assert row["unit"] == "cm" and math.isclose(float(row["value"]), review.value, abs_tol=1e-3)
