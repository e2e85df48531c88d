"""The worklist in a real Chromium at 1920x1080, 1440x900, 1366x768 and 1280x720: enough rows to work from, and the
viewer (image and cine bar) still on screen.

At 1920x1080 it showed about 1.5 rows: five-line rows (the view column wrapped) in a 190 px box.
"""

from __future__ import annotations

import pytest
from ui_fixtures import CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make system-deps)"),
]

N_EXTRA_CLIPS = 12

#: Rows of the worklist and how many lie wholly inside its scrolling box and the window; where
#: the viewer's image and cine bar are; whether the page itself scrolls.
MEASURE = """() => {
  const rows = [...new Set([...document.querySelectorAll('#em-worklist [role=gridcell]')]
      .map((c) => c.closest('[role=row]')))];
  let box = rows.length ? rows[0].parentElement : null;
  while (box && !(/(auto|scroll|hidden)/.test(getComputedStyle(box).overflowY) && box.clientHeight < box.scrollHeight)) {
    box = box.parentElement;
  }
  const clip = (box || document.querySelector('#em-worklist')).getBoundingClientRect();
  const visible = rows.filter((r) => { const b = r.getBoundingClientRect();
    return b.height > 0 && b.top >= clip.top - 1 && b.bottom <= clip.bottom + 1 && b.top >= 0 && b.bottom <= innerHeight; });
  const svg = document.querySelector('.em-svg').getBoundingClientRect();
  const cine = document.querySelector('.em-viewer input[type=range]').getBoundingClientRect();
  return { rows: rows.length, visible: visible.length, image: [svg.top, svg.bottom], cine: [cine.top, cine.bottom],
           height: innerHeight, page: document.documentElement.scrollHeight };
}"""


@pytest.fixture(scope="module")
def many_clips(running_app, tmp_path_factory):  # noqa: F811
    """The UI store with twelve more (small, unproposed) clips: fourteen worklist rows."""
    from store_fixtures import make_deidentified

    from echomeasure.store import open_store

    store = open_store(running_app[1].url)
    folder = tmp_path_factory.mktemp("worklist-clips")
    try:
        for seed in range(N_EXTRA_CLIPS):
            store.add_clip(make_deidentified(folder, 500 + seed))
    finally:
        store.close()
    return running_app


@pytest.mark.parametrize(("width", "height", "min_rows"), [(1920, 1080, 8), (1440, 900, 4), (1366, 768, 3), (1280, 720, 2)])
def test_worklist_shows_enough_rows_and_keeps_the_viewer_on_screen(many_clips, width, height, min_rows):
    from playwright.sync_api import sync_playwright

    url, _ = many_clips
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.set_default_timeout(60_000)
        page.goto(url)
        page.wait_for_function(f"() => document.querySelectorAll('#em-worklist [role=gridcell]').length >= {4 * 14}")
        page.locator("#em-open-example").click()
        page.locator('.em-handle[data-name="lvidd"]').first.wait_for()
        page.wait_for_timeout(300)
        m = page.evaluate(MEASURE)
        browser.close()
    assert m["visible"] >= min_rows, m
    assert 0 <= m["image"][0] < m["image"][1] <= height, m  # the image wholly on screen
    assert m["cine"][1] <= height, m  # the cine bar too
    assert m["page"] <= height + 1, m  # the page itself does not scroll
    assert not errors, errors
