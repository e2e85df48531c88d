"""The clip header (clip, calibration, model and the notices a clip carries) never pushes the
viewer below the fold: a clip with many notices (8 lines at 1366x768) hid the cine bar."""

from __future__ import annotations

import pytest
from ui_fixtures import CHROMIUM, CHROMIUM_ARGS, running_app, ui_store  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make system-deps)"),
]


def test_a_header_with_many_notices_scrolls_within_a_few_lines(running_app):  # noqa: F811
    from playwright.sync_api import sync_playwright

    url, _ = running_app
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.set_default_timeout(60_000)
        try:
            page.goto(url)
            page.get_by_label("Reviewer").fill("Dr Layout")
            page.locator("#em-open-example").click()
            page.locator('.em-handle[data-name="lvidd"]').first.wait_for()
            short = page.locator("#em-clipinfo").bounding_box()
            viewer_top = page.locator("#em-viewer").bounding_box()["y"]
            # the header as a clip with eight notices renders it (the server's Markdown, one <p> each)
            page.evaluate("""() => {
                const box = document.querySelector('#em-clipinfo .prose') || document.querySelector('#em-clipinfo');
                for (let i = 0; i < 8; i++) {
                    const p = document.createElement('p');
                    p.textContent = '⚠ notice ' + i + ': this clip looks like apical four-chamber, not PLAX';
                    box.appendChild(p);
                }
            }""")
            page.wait_for_timeout(200)
            header = page.locator("#em-clipinfo")
            long = header.bounding_box()
            assert long["height"] <= 80, long  # about four lines, the rest scrolls
            scroll = header.evaluate("el => [el.scrollHeight, el.clientHeight]")
            assert scroll[0] > scroll[1]  # the notices are all there, behind a scroll
            moved = page.locator("#em-viewer").bounding_box()["y"] - viewer_top
            assert moved <= 80 - short["height"] + 2, moved
        finally:
            browser.close()
