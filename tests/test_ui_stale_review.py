"""Two tabs (or two reviewers) on one clip: a review made on a state that is no longer the
store's latest is refused, nothing is written, and the page reloads that measurement with a
notice saying who reviewed it meanwhile and when."""

from __future__ import annotations

import pytest
from ui_fixtures import CHROMIUM, CHROMIUM_ARGS, entry_of

from echomeasure.errors import StoreError
from echomeasure.store.writes import StaleReviewError


def _decision(entry: dict, action: str) -> dict:
    """A decision as the viewer sends it: with the state the page showed (``seen_review_id``)."""
    return {"name": entry["name"], "action": action, "points": entry["points"], "frame": entry["frame"],
            "proposal_id": entry["proposal_id"], "seen_review_id": entry["review_id"]}


def test_the_later_of_two_tabs_is_refused_reloaded_and_nothing_written(controller):
    ctrl, info = controller
    tab_a = ctrl.open_clip(info.clip_id, "Dr A").value
    tab_b = ctrl.open_clip(info.clip_id, "Dr B").value
    assert entry_of(tab_a, "lvidd")["review_id"] is None
    first = ctrl.commit({"clip_id": info.clip_id, "reviews": [_decision(entry_of(tab_a, "lvidd"), "rejected")]},
                        "Dr A", None)
    assert first.saved and entry_of(first.value, "lvidd")["status"] == "rejected"
    n_reviews, n_events = len(ctrl.store.reviews(info.clip_id)), len(ctrl.store.audit_events())

    # Tab B still shows lvidd unreviewed and accepts it, together with ivsd: the whole batch is refused.
    batch = [_decision(entry_of(tab_b, "ivsd"), "accept"), _decision(entry_of(tab_b, "lvidd"), "accept")]
    outcome = ctrl.commit({"clip_id": info.clip_id, "reviews": batch}, "Dr B", None)
    notice = outcome.value["notice"]
    assert notice.startswith("Not saved: LVIDd was reviewed meanwhile by Dr A at ")
    assert "reloaded, check and review again" in notice
    assert len(ctrl.store.reviews(info.clip_id)) == n_reviews and len(ctrl.store.audit_events()) == n_events
    # the page gets the batch's measurements as they stand now (lvidd rejected by Dr A)
    assert set(outcome.value["committed"]) == {"ivsd", "lvidd"} and set(outcome.value["undone"]) == {"ivsd", "lvidd"}
    reloaded = entry_of(outcome.value, "lvidd")
    assert reloaded["status"] == "rejected" and reloaded["reviewer"] == "Dr A"

    # Reviewed again on the reloaded state, it is saved.
    again = ctrl.commit({"clip_id": info.clip_id, "reviews": [_decision(reloaded, "accept")]}, "Dr B", None)
    assert again.saved and entry_of(again.value, "lvidd")["status"] == "accepted"
    assert [r.action for r in ctrl.store.reviews(info.clip_id) if r.measurement == "lvidd"] == ["rejected", "accepted"]


def test_the_same_reviewer_in_two_tabs_is_told_another_tab(controller):
    ctrl, info = controller
    tab_1 = ctrl.open_clip(info.clip_id, "Dr A").value
    tab_2 = ctrl.open_clip(info.clip_id, "Dr A").value
    ctrl.commit({"clip_id": info.clip_id, "reviews": [_decision(entry_of(tab_1, "ivsd"), "accept")]}, "Dr A", None)
    outcome = ctrl.commit({"clip_id": info.clip_id, "reviews": [_decision(entry_of(tab_2, "ivsd"), "rejected")]},
                          "Dr A", None)
    assert outcome.value["notice"].startswith("Not saved: IVSd was reviewed meanwhile in another tab at ")
    assert [r.action for r in ctrl.store.reviews(info.clip_id) if r.measurement == "ivsd"] == ["accepted"]


def test_the_store_refuses_a_stale_review_inside_its_transaction(controller):
    """Between the UI's check and the write another review may land: the store checks again."""
    ctrl, info = controller
    store = ctrl.store
    first = store.add_review(info.clip_id, "lvpwd", "accepted", "Dr A", based_on=None)
    with pytest.raises(StaleReviewError) as err:
        store.add_reviews([
            store.review_request(info.clip_id, "ivsd", "accepted", "Dr B", based_on=None),
            store.review_request(info.clip_id, "lvpwd", "rejected", "Dr B", based_on=None),
        ])
    assert err.value.reviewer == "Dr A" and err.value.measurement == "lvpwd"
    assert [r.measurement for r in store.reviews(info.clip_id)] == ["lvpwd"]  # ivsd not half-written
    second = store.add_review(info.clip_id, "lvpwd", "rejected", "Dr B", based_on=first.id)
    assert second.action == "rejected"
    with pytest.raises(StoreError):
        store.review_request(info.clip_id, "lvpwd", "accepted", "Dr B", based_on="newest")


def test_a_decision_without_its_state_is_not_checked(controller):
    """The API and the CLI say nothing about the state they saw: their reviews are saved as before."""
    ctrl, info = controller
    ctrl.commit({"clip_id": info.clip_id, "reviews": [{"name": "la", "action": "rejected"}]}, "Dr A", None)
    outcome = ctrl.commit({"clip_id": info.clip_id, "reviews": [{"name": "la", "action": "accept"}]}, "Dr B", None)
    assert outcome.saved
    ctrl.save_review(info.clip_id, "la", "rejected", "Dr C")
    assert [r.action for r in ctrl.store.reviews(info.clip_id) if r.measurement == "la"] == ["rejected", "accepted", "rejected"]


def test_two_reviewers_saving_on_the_same_state_at_once_one_wins_on_every_backend(store, deidentified_clip):
    """SQLite and PostgreSQL (as the application role): of eight threads reviewing the unreviewed
    lvidd at once, exactly one is saved; the others are refused as stale; the audit chain holds."""
    from concurrent.futures import ThreadPoolExecutor

    from store_fixtures import lvidd_proposals

    from echomeasure.store.chain import verify

    clip = store.add_clip(deidentified_clip)
    store.add_proposals(clip.id, lvidd_proposals())

    def review(i: int) -> str:
        try:
            store.add_review(clip.id, "lvidd", ("accepted", "rejected")[i % 2], f"reviewer-{i}", based_on=None)
        except StaleReviewError:
            return "stale"
        return "saved"

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(review, range(8)))
    assert results.count("saved") == 1 and results.count("stale") == 7
    assert len(store.reviews(clip.id)) == 1
    report = verify(store.engine)
    assert report.ok, report.reason


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make system-deps)")
def test_two_tabs_in_chromium_the_later_review_is_refused_and_reloaded(running_app):
    from playwright.sync_api import expect, sync_playwright

    url, info = running_app
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1500, "height": 950})
        errors: list[str] = []
        tabs = []
        for _ in range(2):
            tab = context.new_page()
            tab.set_default_timeout(60_000)
            tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            tab.goto(url)
            tab.get_by_label("Reviewer").fill("Dr Two Tabs")
            tab.locator("#em-open-example").click()
            tab.locator('.em-row[data-name="lvidd"] .em-s-proposed').wait_for()
            tabs.append(tab)
        first, second = tabs
        first.locator('.em-row[data-name="lvidd"] button.em-no').click()
        first.locator('.em-row[data-name="lvidd"] .em-s-rejected').wait_for()
        second.locator('.em-row[data-name="lvidd"] button.em-ok').click()
        expect(second.locator(".em-banner")).to_contain_text("LVIDd was reviewed meanwhile in another tab")
        expect(second.locator(".em-banner")).to_contain_text("reloaded, check and review again")
        second.locator('.em-row[data-name="lvidd"] .em-s-rejected').wait_for()  # reloaded as it stands
        context.close()
        browser.close()
    from echomeasure.store import open_store

    store = open_store(info.url)
    try:
        assert [r.action for r in store.reviews(info.clip_id) if r.measurement == "lvidd"] == ["rejected"]
    finally:
        store.close()
    assert not errors, errors
