"""Two tabs (or two reviewers) on one clip: a review made on a state that is no longer the
store's latest is refused, nothing is written, and the page reloads that measurement with a
notice saying who reviewed it meanwhile and when."""

from __future__ import annotations

import pytest
from ui_fixtures import CHROMIUM, CHROMIUM_ARGS, apical_contour_items, entry_of, open_example_tab

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


def test_every_answer_to_a_commit_names_the_decisions_it_answers(controller):
    """The page holds a decision on a measurement until the answer to the one before it: saved,
    refused as stale or refused otherwise, the answer names them (``answered``) and says which
    were refused as stale (``stale``: what waited on them is dropped)."""
    ctrl, info = controller
    tab_1 = ctrl.open_clip(info.clip_id, "Dr A").value
    tab_2 = ctrl.open_clip(info.clip_id, "Dr A").value
    saved = ctrl.commit({"clip_id": info.clip_id, "reviews": [_decision(entry_of(tab_1, "ivsd"), "accept")]},
                        "Dr A", None).value
    assert saved["answered"] == ["ivsd"] and saved["stale"] == []
    batch = [_decision(entry_of(tab_2, "lvpwd"), "accept"), _decision(entry_of(tab_2, "ivsd"), "rejected")]
    stale = ctrl.commit({"clip_id": info.clip_id, "reviews": batch}, "Dr A", None).value
    assert stale["answered"] == ["ivsd", "lvpwd"] and stale["stale"] == ["ivsd", "lvpwd"]
    nameless = ctrl.commit({"clip_id": info.clip_id, "reviews": batch[:1]}, "  ", None).value
    assert nameless["answered"] == ["lvpwd"] and nameless["stale"] == [] and nameless["notice"].startswith("Not saved")
    bad = dict(_decision(entry_of(saved, "lvidd"), "accept"), points=[[-50, -50], [1e6, 1e6]])
    refused = ctrl.commit({"clip_id": info.clip_id, "reviews": [bad]}, "Dr A", None).value
    assert refused["answered"] == ["lvidd"] and refused["stale"] == [] and refused["notice"].startswith("Not saved")


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


def _contour_tab(ctrl, clip_id: int, viewer: str, structure: str = "lv") -> dict:
    """A tab's view of a contour: its entry in the clip prop the page was sent."""
    shapes = ctrl.open_clip(clip_id, viewer).clip["contours"]
    return next(c for c in shapes if c["structure"] == structure)


def _contour_decision(clip_id: int, shown: dict, action: str, seen: int | None) -> dict:
    """A contour decision as the viewer sends it (``seen``: the review the page knows last)."""
    return {"clip_id": clip_id, "contour_proposal_id": shown["id"], "action": action,
            "polygon": shown["polygon"] if action == "corrected" else None, "seen_review_id": seen}


@pytest.fixture()
def contour_clip(controller):
    from echomeasure.store.contours import add_contours

    ctrl, info = controller
    clip = ctrl.open_clip(info.clip_id, "Dr A").clip
    add_contours(ctrl.store, info.clip_id, apical_contour_items(clip["ed_frame"], clip["es_frame"]))
    return ctrl, info


def test_two_decisions_on_one_contour_from_one_tab_are_both_saved(contour_clip):
    """After a save the page learns the contour's new review (value.contour_reviews): the same
    tab's next decision on it is made on that state, not refused."""
    from echomeasure.store.contours import contour_reviews

    ctrl, info = contour_clip
    shown = _contour_tab(ctrl, info.clip_id, "Dr A")
    assert shown["review_id"] is None
    first = ctrl.review_contour(_contour_decision(info.clip_id, shown, "accepted", shown["review_id"]), "Dr A", None)
    (returned,) = first.value["contour_reviews"]
    stored = contour_reviews(ctrl.store, info.clip_id)
    assert returned == {"id": shown["id"], "review_id": stored[-1].id} and not first.value["notice"]
    second = ctrl.review_contour(_contour_decision(info.clip_id, shown, "rejected", returned["review_id"]),
                                 "Dr A", None)
    assert second.saved and not second.value["notice"]
    assert [r.action for r in contour_reviews(ctrl.store, info.clip_id)] == ["accepted", "rejected"]
    assert second.value["contour_reviews"][0]["review_id"] == contour_reviews(ctrl.store, info.clip_id)[-1].id


def test_a_contour_decision_from_a_second_tab_on_the_old_state_is_refused_and_reloaded(contour_clip):
    from echomeasure.store.chain import verify
    from echomeasure.store.contours import contour_reviews

    ctrl, info = contour_clip
    store = ctrl.store
    tab_a = _contour_tab(ctrl, info.clip_id, "Dr A")
    tab_b = _contour_tab(ctrl, info.clip_id, "Dr B")
    saved = ctrl.review_contour(_contour_decision(info.clip_id, tab_a, "accepted", tab_a["review_id"]), "Dr A", None)
    assert saved.saved
    n_reviews, n_events = len(contour_reviews(store, info.clip_id)), len(store.audit_events())

    # Tab B still shows the contour unreviewed and rejects it: refused, nothing written.
    refused = ctrl.review_contour(_contour_decision(info.clip_id, tab_b, "rejected", tab_b["review_id"]), "Dr B", None)
    notice = refused.value["notice"]
    assert notice.startswith(f"Not saved: lv contour of frame {tab_b['frame']} was reviewed meanwhile by Dr A at ")
    assert "reloaded, check and review again" in notice
    assert len(contour_reviews(store, info.clip_id)) == n_reviews and len(store.audit_events()) == n_events
    assert verify(store.engine).ok
    # the page gets that contour as it stands now (accepted by Dr A), and no saved review
    (reloaded,) = refused.value["contours_reloaded"]
    assert reloaded["id"] == tab_b["id"] and reloaded["status"] == "accepted"
    assert reloaded["review_id"] == contour_reviews(store, info.clip_id)[-1].id
    assert "contour_reviews" not in refused.value

    # The same reviewer in a third tab is told "another tab".
    stale_a = ctrl.review_contour(_contour_decision(info.clip_id, tab_a, "rejected", None), "Dr A", None)
    assert "reviewed meanwhile in another tab at " in stale_a.value["notice"]

    # Decided again on the reloaded state, it is saved.
    again = ctrl.review_contour(_contour_decision(info.clip_id, reloaded, "rejected", reloaded["review_id"]),
                                "Dr B", None)
    assert again.saved and "contours_reloaded" not in again.value
    assert [r.action for r in contour_reviews(store, info.clip_id) if r.structure == "lv"
            and r.frame_index == tab_b["frame"]] == ["accepted", "rejected"]
    assert verify(store.engine).ok


def test_a_contour_decision_without_its_state_is_not_checked(contour_clip):
    """A payload that does not say what it saw (a caller of contour_review.save other than the
    viewer) is saved as before."""
    from echomeasure.ui import contour_review

    ctrl, info = contour_clip
    shown = _contour_tab(ctrl, info.clip_id, "Dr A")
    payload = {"clip_id": info.clip_id, "contour_proposal_id": shown["id"], "polygon": None}
    contour_review.save(ctrl.store, {**payload, "action": "accepted"}, "Dr A")
    shapes = contour_review.save(ctrl.store, {**payload, "action": "rejected"}, "Dr B")
    assert next(c for c in shapes if c["id"] == shown["id"])["status"] == "rejected"


def test_two_tabs_deciding_on_one_contour_at_once_one_wins_on_every_backend(store, deidentified_clip):
    """SQLite and PostgreSQL (as the application role): of eight threads deciding on the
    unreviewed contour at once, exactly one is saved, the others are refused as stale inside the
    store's transaction; the audit chain holds."""
    from concurrent.futures import ThreadPoolExecutor

    from echomeasure.store.chain import verify
    from echomeasure.store.contours import add_contour_review, add_contours, contour_reviews

    clip = store.add_clip(deidentified_clip)
    (lv,) = add_contours(store, clip.id, [{"frame": 1, "structure": "lv", "polygon": [[1, 1], [9, 1], [5, 9]],
                                           "confidence": 0.9}])

    def decide(i: int) -> str:
        try:
            add_contour_review(store, clip.id, ("accepted", "rejected")[i % 2], f"reviewer-{i}",
                               contour_proposal_id=lv.id, based_on=None)
        except StaleReviewError as exc:
            assert exc.measurement == "lv contour of frame 1"
            return "stale"
        return "saved"

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(decide, range(8)))
    assert results.count("saved") == 1 and results.count("stale") == 7
    (first,) = contour_reviews(store, clip.id)
    nxt = add_contour_review(store, clip.id, "rejected", "reviewer-9", contour_proposal_id=lv.id, based_on=first.id)
    assert [r.id for r in contour_reviews(store, clip.id)] == [first.id, nxt.id]
    with pytest.raises(StoreError):
        add_contour_review(store, clip.id, "accepted", "reviewer-9", contour_proposal_id=lv.id, based_on="newest")
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
            tabs.append(open_example_tab(context, url, "Dr Two Tabs", errors, ready='.em-row[data-name="lvidd"] .em-s-proposed'))
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
