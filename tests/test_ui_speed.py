"""Speed of the review UI in a real Chromium: opening a clip and dragging a caliper handle.

Measured in the page with ``performance.now()``:

- open: from the click on a worklist row to the clip's first frame loaded and its calipers
  drawn (server round trip, frame URLs, preloading and the first render included), median of
  several opens alternating a 40-frame 2D clip and a Doppler strip;
- drag: a handle dragged for 90 animation frames, one pointer move per frame; the rate is the
  number of frames over the time they took (the display caps it at its refresh rate, 60 Hz).

Targets: open <= 0.7 s, drag >= 30 frames/s.  The figures are written to
``$ECHOMEASURE_SCREENSHOTS/ui_timing.json`` and printed.  Timings depend on the machine's load,
so the default run asserts only bounds that catch a gross regression (open <= 3 s, drag >= 10
frames/s); ``ECHOMEASURE_UI_SPEED_TARGETS=1`` asserts the targets themselves (on an idle machine).
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import pytest
from ui_fixtures import CHROMIUM, CHROMIUM_ARGS, PICK_ROW

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make system-deps)"),
]

SHOTS = Path(os.environ.get("ECHOMEASURE_SCREENSHOTS", "/tmp/echomeasure-ui-screenshots"))
OPEN_TARGET_S = 0.7
DRAG_TARGET_FPS = 30.0
STRICT = os.environ.get("ECHOMEASURE_UI_SPEED_TARGETS") == "1"
OPEN_LIMIT_S = OPEN_TARGET_S if STRICT else 3.0
DRAG_LIMIT_FPS = DRAG_TARGET_FPS if STRICT else 10.0
N_OPENS = 8
N_DRAG_FRAMES = 90


OPENED = """(id) => {
    const v = document.querySelector('.em-viewer');
    return v && v.dataset.frameShown && v.dataset.frameShown.startsWith(id + ':')
        && document.querySelector('.em-handle') !== null ? performance.now() : false; }"""

DRAG = """async ([name, frames]) => {
    const svg = document.querySelector('.em-svg');
    const handle = document.querySelector(`.em-handle[data-name="${name}"][data-index="1"]`);
    const box = handle.getBoundingClientRect();
    const x0 = box.x + box.width / 2, y0 = box.y + box.height / 2;
    const ev = (type, x, y) => new PointerEvent(type, {clientX: x, clientY: y, bubbles: true, cancelable: true,
        pointerId: 1, pointerType: 'mouse', isPrimary: true, button: 0, buttons: type === 'pointerup' ? 0 : 1});
    const before = document.querySelector(`.em-point[data-name="${name}"][data-index="1"]`).getAttribute('cx');
    handle.dispatchEvent(ev('pointerdown', x0, y0));
    await new Promise(r => requestAnimationFrame(r));
    const t0 = performance.now();
    let worst = 0, last = t0;
    for (let i = 1; i <= frames; i++) {
        svg.dispatchEvent(ev('pointermove', x0 + (i % 40), y0 + (i % 30) / 2));
        await new Promise(r => requestAnimationFrame(r));
        const now = performance.now();
        worst = Math.max(worst, now - last);
        last = now;
    }
    const t1 = performance.now();
    svg.dispatchEvent(ev('pointerup', x0, y0));
    const after = document.querySelector(`.em-point[data-name="${name}"][data-index="1"]`).getAttribute('cx');
    return {fps: frames / ((t1 - t0) / 1000), worst_frame_ms: worst, moved: before !== after}; }"""


def test_clip_opens_fast_and_handles_drag_smoothly(running_app):  # noqa: F811
    from playwright.sync_api import sync_playwright

    url, info = running_app
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.locator(".em-tools").wait_for()
            opens_s: dict[str, list[float]] = {"2d": [], "doppler": []}
            for i in range(N_OPENS):
                kind, clip_id = ("2d", info.clip_id) if i % 2 == 0 else ("doppler", info.doppler_clip_id)
                page.wait_for_function(PICK_ROW, arg=str(clip_id))
                started = page.evaluate("() => performance.now()")
                page.locator("[data-em-pick]").click()
                shown = page.wait_for_function(OPENED, arg=clip_id, polling=5).json_value()
                opens_s[kind].append((shown - started) / 1000)
            page.wait_for_function(PICK_ROW, arg=str(info.clip_id))
            page.locator("[data-em-pick]").click()
            page.wait_for_function(OPENED, arg=info.clip_id, polling=5)
            page.locator('.em-row[data-name="lvidd"] .em-name').click()
            drag = page.evaluate(DRAG, ["lvidd", N_DRAG_FRAMES])
        finally:
            browser.close()

    all_opens = opens_s["2d"] + opens_s["doppler"]
    figures = {
        "open_s_median": statistics.median(all_opens),
        "open_s_max": max(all_opens),
        "open_s_2d_median": statistics.median(opens_s["2d"]),
        "open_s_doppler_median": statistics.median(opens_s["doppler"]),
        "drag_fps": drag["fps"],
        "drag_worst_frame_ms": drag["worst_frame_ms"],
        "n_opens": len(all_opens),
        "n_drag_frames": N_DRAG_FRAMES,
        "load_average_1min": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
    }
    (SHOTS / "ui_timing.json").write_text(json.dumps(figures, indent=2))
    print("ui timing:", json.dumps(figures))
    assert drag["moved"], "the drag did not move the handle"
    assert figures["open_s_median"] <= OPEN_LIMIT_S, figures
    assert figures["drag_fps"] >= DRAG_LIMIT_FPS, figures


OPENED_WITH_CONTOURS = """(id) => {
    const v = document.querySelector('.em-viewer');
    const vol = document.querySelector('.em-volumes');
    return v && v.dataset.frameShown && v.dataset.frameShown.startsWith(id + ':')
        && document.querySelector('.em-contour[data-structure="lv"]') !== null
        && vol && vol.dataset.edv ? performance.now() : false; }"""

VERTEX_DRAG = """async ([structure, frames]) => {
    const svg = document.querySelector('.em-svg');
    const vertex = () => document.querySelector(`.em-vertex[data-structure="${structure}"][data-index="0"]`);
    const vol = document.querySelector('.em-volumes');
    const box = vertex().getBoundingClientRect();
    const x0 = box.x + box.width / 2, y0 = box.y + box.height / 2;
    const ev = (type, x, y) => new PointerEvent(type, {clientX: x, clientY: y, bubbles: true, cancelable: true,
        pointerId: 1, pointerType: 'mouse', isPrimary: true, button: 0, buttons: type === 'pointerup' ? 0 : 1});
    const before = vertex().getAttribute('cx');
    const esvBefore = vol.dataset.esv;
    vertex().dispatchEvent(ev('pointerdown', x0, y0));
    await new Promise(r => requestAnimationFrame(r));
    const t0 = performance.now();
    let worst = 0, last = t0, updates = 0, seen = vol.dataset.esv;
    for (let i = 1; i <= frames; i++) {
        svg.dispatchEvent(ev('pointermove', x0 + (i % 40), y0 + (i % 30) / 2));
        await new Promise(r => requestAnimationFrame(r));
        const now = performance.now();
        worst = Math.max(worst, now - last);
        last = now;
        if (vol.dataset.esv !== seen) { updates++; seen = vol.dataset.esv; }
    }
    const t1 = performance.now();
    svg.dispatchEvent(ev('pointerup', x0 + 20, y0 + 10));
    const released = performance.now();
    while (vol.dataset.pending && performance.now() - released < 10000) await new Promise(r => setTimeout(r, 5));
    return {fps: frames / ((t1 - t0) / 1000), worst_frame_ms: worst, moved: before !== vertex().getAttribute('cx'),
            volume_updates_during_drag: updates, volumes_settled_ms: performance.now() - released,
            esv_changed: vol.dataset.esv !== esvBefore}; }"""


@pytest.fixture(scope="module")
def contour_speed_clip(running_app):  # noqa: F811
    from ui_fixtures import apical_contour_items

    from echomeasure.store import open_store
    from echomeasure.store.contours import add_contours
    from echomeasure.ui.controller import ReviewController

    _, info = running_app
    store = open_store(info.url)
    try:
        clip = ReviewController(store).open_clip(info.clip_id, "").clip
        add_contours(store, info.clip_id, apical_contour_items(clip["ed_frame"], clip["es_frame"]))
    finally:
        store.close()
    return info.clip_id


def test_clip_with_contours_opens_fast_and_vertices_drag_smoothly(running_app, contour_speed_clip):  # noqa: F811
    """A clip with apical contours (and their live volumes) opens and its LV vertex drags in time."""
    from playwright.sync_api import sync_playwright

    url, info = running_app
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.locator(".em-tools").wait_for()
            opens_s: list[float] = []
            for i in range(N_OPENS + 1):
                # every other open is the Doppler strip, so each contour open is a fresh clip; the last
                # one is the contour clip, whose vertex is dragged next
                clip_id = contour_speed_clip if i % 2 == 0 else info.doppler_clip_id
                page.wait_for_function(PICK_ROW, arg=str(clip_id))
                started = page.evaluate("() => performance.now()")
                page.locator("[data-em-pick]").click()
                if clip_id == contour_speed_clip:
                    shown = page.wait_for_function(OPENED_WITH_CONTOURS, arg=clip_id, polling=5).json_value()
                    opens_s.append((shown - started) / 1000)
                else:
                    page.wait_for_function(OPENED, arg=clip_id, polling=5)
            page.locator('.em-contour-item[data-structure="lv"] .em-contour-name').click()
            page.locator('.em-vertex[data-structure="lv"]').first.wait_for()
            drag = page.evaluate(VERTEX_DRAG, ["lv", N_DRAG_FRAMES])
        finally:
            browser.close()

    figures = {
        "contour_open_s_median": statistics.median(opens_s),
        "contour_open_s_max": max(opens_s),
        "vertex_drag_fps": drag["fps"],
        "vertex_drag_worst_frame_ms": drag["worst_frame_ms"],
        "volume_updates_during_drag": drag["volume_updates_during_drag"],
        "volumes_settled_after_release_ms": drag["volumes_settled_ms"],
        "n_opens": len(opens_s),
        "n_drag_frames": N_DRAG_FRAMES,
        "load_average_1min": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
    }
    (SHOTS / "ui_contour_timing.json").write_text(json.dumps(figures, indent=2))
    print("ui contour timing:", json.dumps(figures))
    assert drag["moved"] and drag["esv_changed"], drag
    assert figures["contour_open_s_median"] <= OPEN_LIMIT_S, figures
    assert figures["vertex_drag_fps"] >= DRAG_LIMIT_FPS, figures
