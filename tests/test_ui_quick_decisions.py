"""Two caliper decisions on one measurement in one instant (real Chromium): the second is made
before the first one's answer came, so it waits for that answer and goes out on the state it
returned (sent at once, it was made on the state before and refused as stale; an undo pressed
then undid nothing, the save it meant was not on the undo stack yet)."""

from __future__ import annotations

import pytest
from ui_fixtures import CHROMIUM, CHROMIUM_ARGS, open_example_tab, running_app, ui_store  # noqa: F401

from echomeasure.store import open_store

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make system-deps)"),
]

REVIEWER = "Dr Quick Hands"
TIMEOUT_MS = 60_000

#: Clicks a measurement's accept or reject button, or presses a key on the viewer, all in one
#: browser task (``steps``: ["ok" | "no" | key, ...]; a key "ctrl+z" holds Ctrl).
QUICK = """([name, steps]) => {
    const root = document.querySelector('.em-viewer');
    for (const step of steps) {
        if (step === 'ok' || step === 'no') {
            document.querySelector(`.em-row[data-name="${name}"] button.em-${step}`).click();
            continue;
        }
        const ctrl = step.startsWith('ctrl+');
        const key = ctrl ? step.slice(5) : step;
        root.dispatchEvent(new KeyboardEvent('keydown', {key: key, ctrlKey: ctrl, bubbles: true, cancelable: true}));
    }
}"""


@pytest.fixture()
def tab(running_app):  # noqa: F811
    from playwright.sync_api import sync_playwright

    url, _ = running_app
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        page = open_example_tab(context, url, REVIEWER, errors, timeout_ms=TIMEOUT_MS)
        yield page
        context.close()
        browser.close()
    assert not errors, errors


def _actions(url: str, clip_id: int, name: str) -> list[str]:
    store = open_store(url)
    try:
        return [r.action for r in store.reviews(clip_id) if r.measurement == name]
    finally:
        store.close()


def _settle(page, url: str, clip_id: int, name: str, count: int) -> list[str]:
    """The reviews of ``name`` once ``count`` are stored (or after 10 s), and a moment later."""
    for _ in range(100):
        if len(_actions(url, clip_id, name)) >= count:
            break
        page.wait_for_timeout(100)
    page.wait_for_timeout(500)  # nothing more arrives
    return _actions(url, clip_id, name)


@pytest.mark.parametrize(("name", "steps", "expected", "shown"), [
    # accept, then at once reject
    ("lvidd", ["ok", "no"], ["accepted", "rejected"], "rejected"),
    # accept, then at once move an end point and accept again: a correction
    ("lvpwd", ["ok", "ArrowRight", "ArrowRight", "ArrowRight", "Enter"], ["accepted", "corrected"], "corrected"),
    # reject, then at once undo: the proposal is back to review
    ("lvids", ["no", "ctrl+z"], ["rejected", "reopened"], "proposed"),
])
def test_a_second_caliper_decision_made_before_the_first_ones_answer_is_saved(
        tab, running_app, name, steps, expected, shown):  # noqa: F811
    from playwright.sync_api import expect

    url, info = running_app
    assert _actions(info.url, info.clip_id, name) == []
    tab.locator(f'.em-row[data-name="{name}"] .em-name').click()  # selected: the keys act on it
    tab.evaluate(QUICK, [name, steps])
    assert _settle(tab, info.url, info.clip_id, name, len(expected)) == expected
    tab.locator(f'.em-row[data-name="{name}"] .em-s-{shown}').wait_for()
    expect(tab.locator(".em-banner")).not_to_contain_text("Not saved")
