"""What a screen reader and a low-vision or phone user get from the review UI, in a real
Chromium: named controls, readable grey text, the image on screen after opening a clip.

Screenshots go to ``$ECHOMEASURE_SCREENSHOTS`` (default ``/tmp/echomeasure-ui-screenshots``).
"""

from __future__ import annotations

import pytest
from test_browser_trial_review import SHOTS, TIMEOUT_MS, _open, browser, clips, page  # noqa: F401
from ui_fixtures import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make system-deps)"),
]


def test_screen_reader_gets_named_viewer_controls(page, clips):  # noqa: F811
    clip_id, _ = clips
    _open(page, clip_id)
    viewer = page.locator(".em-viewer")
    for short in ("IVSd", "LA", "Ao root"):
        assert viewer.get_by_role("button", name=f"Accept {short}", exact=True).count() == 1
        assert viewer.get_by_role("button", name=f"Reject {short}", exact=True).count() == 1
    assert viewer.get_by_role("button", name="Play", exact=True).count() == 1
    assert viewer.get_by_role("button", name="Zoom in", exact=True).count() == 1
    assert page.locator('.em-banner[role="status"][aria-live="polite"]').count() == 1  # its notices are read out


CONTRAST = """(sel) => {
    const lum = (c) => { const [r, g, b] = c.match(/[0-9.]+/g).slice(0, 3).map(Number).map((v) => {
        v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
    const e = document.querySelector(sel);
    let n = e, bg = null;
    while (n) {
        const c = getComputedStyle(n).backgroundColor;
        if (c && !c.startsWith('rgba(0, 0, 0, 0')) { bg = c; break; }
        n = n.parentElement; }
    const a = lum(getComputedStyle(e).color), b = lum(bg || 'rgb(255,255,255)');
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05); }"""


def test_small_grey_text_of_the_viewer_meets_the_contrast_minimum(page, clips):  # noqa: F811
    clip_id, _ = clips
    _open(page, clip_id)
    for sel in (".em-hint", ".em-frame-no", ".em-focus", '.em-row[data-name="la"] .em-conf'):
        assert page.evaluate(CONTRAST, sel) >= 4.5, sel  # WCAG AA for text under 18 px


def test_phone_opening_a_clip_scrolls_the_viewer_into_view(browser, running_app, clips):  # noqa: F811
    clip_id, _ = clips
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    try:
        pg.goto(running_app[0])
        _open(pg, clip_id, tap=True)
        box = pg.evaluate(
            "() => { const r = document.querySelector('.em-svg').getBoundingClientRect(); return [r.top, r.bottom]; }"
        )
        pg.screenshot(path=str(SHOTS / "trial_phone_opened.png"))
        assert 0 <= box[0] < 844 and box[1] > 0  # the image is on screen, not below the worklist
    finally:
        context.close()
