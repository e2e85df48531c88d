"""The review UI from the keyboard alone, in a real Chromium: Tab leaves the viewer, its buttons
work from the keyboard, and screen readers get named controls.

Screenshots go to ``$ECHOMEASURE_SCREENSHOTS`` (default ``/tmp/echomeasure-ui-screenshots``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ui_fixtures import CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make system-deps)"),
]

REVIEWER = "Dr Keyboard"
SHOTS = Path(os.environ.get("ECHOMEASURE_SCREENSHOTS", "/tmp/echomeasure-ui-screenshots"))
TIMEOUT_MS = 60_000
MEASUREMENTS = 6  # the 2D example's proposals (tests/ui_fixtures.py)


@pytest.fixture(scope="module")
def page(running_app):  # noqa: F811
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    url, _ = running_app
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        pg = context.new_page()
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(url)
        pg.get_by_label("Reviewer").fill(REVIEWER)
        pg.locator("#em-open-example").click()
        pg.locator('.em-handle[data-name="lvidd"]').first.wait_for()
        yield pg
        context.close()
        browser.close()


def _focused(page) -> dict:
    return page.evaluate(
        """() => { const a = document.activeElement;
          return { inViewer: !!a.closest('.em-viewer'), isViewer: a.classList.contains('em-viewer'),
                   cls: a.className || '', text: (a.getAttribute('aria-label') || a.innerText || '').trim() }; }"""
    )


def _open_clip_id(page) -> int:
    return int(page.locator(".em-viewer").get_attribute("data-frame-shown").split(":")[0])


def _focus_viewer(page) -> None:
    page.locator(".em-viewer").focus()
    assert _focused(page)["isViewer"]


def test_tab_walks_the_measurements_then_the_buttons_then_leaves_the_viewer(page):
    _focus_viewer(page)
    page.keyboard.press("Escape")  # nothing selected: the first Tab selects the first measurement
    seen = []
    for _ in range(MEASUREMENTS):
        page.keyboard.press("Tab")
        assert _focused(page)["isViewer"]
        seen.append(page.locator(".em-row.em-selected").get_attribute("data-name"))
    assert len(set(seen)) == MEASUREMENTS  # each measurement once, in table order
    # Past the last measurement Tab reaches the viewer's own buttons, then leaves the viewer.
    reached = []
    for _ in range(80):
        page.keyboard.press("Tab")
        f = _focused(page)
        if not f["inViewer"]:
            break
        reached.append(f["cls"])
    else:
        pytest.fail("Tab never left the viewer (keyboard trap)")
    page.screenshot(path=str(SHOTS / "kb_01_left_viewer.png"))
    assert any("em-accept-all" in c for c in reached)
    assert any("em-fit" in c for c in reached)
    # Shift+Tab comes back into it.
    page.keyboard.press("Shift+Tab")
    assert _focused(page)["inViewer"]


def test_enter_on_a_focused_row_button_presses_that_button(page, running_app):  # noqa: F811
    from echomeasure.store import open_store

    _focus_viewer(page)
    page.locator('.em-row[data-name="ivsd"] .em-name').click()  # IVSd selected
    page.locator('.em-row[data-name="aortic_root"] button.em-ok').focus()
    page.keyboard.press("Enter")  # accepts the aortic root (the button), not the selected IVSd
    page.locator('.em-row[data-name="aortic_root"] .em-s-accepted').wait_for()
    assert page.locator('.em-row[data-name="ivsd"] .em-status').inner_text() == "proposed"
    store = open_store(running_app[1].url)
    try:
        names = {r.measurement for r in store.reviews(_open_clip_id(page))}
    finally:
        store.close()
    assert "aortic_root" in names and "ivsd" not in names
    # the button was redrawn by its own press: the keys are the viewer's again, not the page's
    assert _focused(page)["isViewer"]


def test_space_on_a_focused_toolbar_button_presses_it(page):
    _focus_viewer(page)
    page.locator(".em-zoom-in").focus()
    page.keyboard.press(" ")
    assert page.locator(".em-zoom").inner_text() != "100%"  # zoomed in, the cine not started
    assert page.locator(".em-play").get_attribute("title").startswith("Play")
    assert not _focused(page)["isViewer"]  # the focus stays on the button: Tab goes on from it
    page.keyboard.press("f")  # the viewer's keys still work
    assert page.locator(".em-zoom").inner_text() == "100%"
