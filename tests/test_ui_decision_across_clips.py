"""A caliper or contour decision still waiting for the answer to the one before it when the
reviewer opens another clip (real Chromium).

The second of two quick decisions on one measurement (or contour) waits, at most 15 s, for the
first one's answer, to go out on the state that answer returns.  Opening another clip in the
worklist while it waited dropped it: it was never stored (and, sent, it would have read the state
of the clip open by then).  It is stored against the clip and proposal it was made on, and nothing
reaches the clip opened meanwhile.  The answers are made slow (ReviewController.commit and
review_contour take 1.5 s more) so that the switch surely falls while the decision waits.
"""

from __future__ import annotations

import time

import pytest
from ui_fixtures import CHROMIUM, CHROMIUM_ARGS, PICK_ROW, free_port, open_example_tab, prepare_store

from echomeasure import config
from echomeasure.store import open_store
from echomeasure.store.contours import add_contours, contour_proposals, contour_reviews

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make system-deps)"),
]

REVIEWER = "Dr Switches Fast"
SLOW_ANSWER_S = 1.5
SHOWN = "(id) => (document.querySelector('.em-viewer').dataset.frameShown || '').startsWith(id + ':')"
#: accept then at once reject (one browser task: the reject waits for the accept's answer)
ACCEPT_THEN_REJECT = """([row, ok, no]) => {
    for (const b of [ok, no]) document.querySelector(`${row} button.${b}`).click();
}"""
ROWS = {
    "caliper": ('.em-row[data-name="lvidd"]', "em-ok", "em-no"),
    "contour": ('.em-contour-item[data-structure="lv"]', "em-contour-ok", "em-contour-no"),
}


def _decisions(url: str, clip_id: int) -> list[tuple[str, str, int | None]]:
    """(what, action, proposal id) of every caliper and contour review of a clip, oldest first."""
    store = open_store(url)
    try:
        return ([(r.measurement, r.action, r.proposal_id) for r in store.reviews(clip_id)]
                + [(r.structure, r.action, r.contour_proposal_id) for r in contour_reviews(store, clip_id)])
    finally:
        store.close()


@pytest.fixture()
def slow_app(tmp_path, monkeypatch):
    """The app on a fresh store whose 2D example also has an LV contour on lvidd's frame; every
    caliper and contour answer comes 1.5 s late."""
    from echomeasure.ui.app import build_app, launch
    from echomeasure.ui.controller import ReviewController

    def slowed(method):
        def slow(self, *args, **kwargs):
            time.sleep(SLOW_ANSWER_S)
            return method(self, *args, **kwargs)
        return slow

    monkeypatch.setattr(ReviewController, "commit", slowed(ReviewController.commit))
    monkeypatch.setattr(ReviewController, "review_contour", slowed(ReviewController.review_contour))
    info = prepare_store(tmp_path)
    store = open_store(info.url)
    try:
        clip = store.clip(info.clip_id)
        frame = next(p.frame_index for p in store.proposals(clip.id) if p.measurement == "lvidd")
        w, h = clip.width_px, clip.height_px
        box = [[0.40 * w, 0.30 * h], [0.55 * w, 0.30 * h], [0.55 * w, 0.50 * h], [0.40 * w, 0.50 * h]]
        add_contours(store, clip.id, [{"frame": frame, "structure": "lv", "polygon": box, "area_cm2": 4.0,
                                       "confidence": 0.9}])
        proposal_ids = {
            "caliper": ("lvidd", next(p.id for p in store.proposals(clip.id) if p.measurement == "lvidd")),
            "contour": ("lv", contour_proposals(store, clip.id)[0].id),
        }
    finally:
        store.close()
    app = build_app(info.url, examples_dir=config.EXAMPLES_DIR)
    _, url, _ = launch(app, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield url.rstrip("/"), info, proposal_ids
    finally:
        app.close()
        app.echomeasure_store.close()


@pytest.mark.parametrize("kind", ["caliper", "contour"])
def test_a_waiting_decision_is_stored_on_its_clip_when_another_clip_is_opened(slow_app, kind):
    from playwright.sync_api import sync_playwright

    url, info, proposal_ids = slow_app
    what, proposal_id = proposal_ids[kind]
    row = ROWS[kind][0]
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        page = open_example_tab(context, url, REVIEWER, errors)
        page.locator('.em-row[data-name="lvidd"] .em-name').click()  # lvidd's frame, where the contour is
        page.locator(f"{row} button.{ROWS[kind][1]}").wait_for()
        page.evaluate(ACCEPT_THEN_REJECT, list(ROWS[kind]))  # the accept goes out, the reject waits for its answer
        page.wait_for_function(PICK_ROW, arg=str(info.doppler_clip_id))
        box = page.locator("[data-em-pick]").bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_function(SHOWN, arg=str(info.doppler_clip_id))
        assert _decisions(info.url, info.clip_id) == []  # the accept's answer is still to come
        for _ in range(100):  # both answers come after 2 x 1.5 s; 10 s at most
            if len(_decisions(info.url, info.clip_id)) >= 2:
                break
            page.wait_for_timeout(100)
        page.wait_for_timeout(2 * SLOW_ANSWER_S * 1000)  # nothing more arrives
        assert page.evaluate(SHOWN, str(info.doppler_clip_id))  # the Doppler clip stays open
        context.close()
        browser.close()
    assert _decisions(info.url, info.clip_id) == [(what, "accepted", proposal_id), (what, "rejected", proposal_id)]
    assert _decisions(info.url, info.doppler_clip_id) == []  # nothing decided on the clip opened meanwhile
    assert not errors, errors
