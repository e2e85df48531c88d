"""Undoing a rejection reopens the proposal in the store: a ``reopened`` review (append-only,
audited), after which the measurement or contour stands as proposed in the store, the worklist
and the exports, until the reviewer decides again."""

from __future__ import annotations

import csv
import io
import json

import pytest
from ui_fixtures import apical_contour_items, entry_of

from echomeasure.errors import StoreError
from echomeasure.store.chain import verify
from echomeasure.ui import contour_review


def _send(ctrl, clip_id, entry, action, undo=False):
    item = {"name": entry["name"], "action": action, "points": [] if action != "accept" else entry["points"],
            "frame": entry["frame"], "proposal_id": entry["proposal_id"], "seen_review_id": entry["review_id"]}
    return ctrl.commit({"clip_id": clip_id, "reviews": [item], "undo": undo}, "Dr A", None)


def _csv_row(store, clip_id, name):
    from echomeasure.export import export_csv

    rows = list(csv.DictReader(io.StringIO(export_csv(store, [clip_id]))))
    return next(r for r in rows if r["measurement"] == name)


def test_undo_of_a_rejection_reopens_the_proposal_in_the_store_worklist_and_exports(controller):
    from echomeasure.export import export_json

    ctrl, info = controller
    store = ctrl.store
    before_csv = _csv_row(store, info.clip_id, "la")
    shown = ctrl.open_clip(info.clip_id, "Dr A").value
    rejected = _send(ctrl, info.clip_id, entry_of(shown, "la"), "rejected")
    assert entry_of(rejected.value, "la")["status"] == "rejected"
    assert ctrl.worklist("all", "Dr A")[1][2] == "meas. 1/6" and _csv_row(store, info.clip_id, "la")["status"] == "rejected"

    reopened = _send(ctrl, info.clip_id, entry_of(rejected.value, "la"), "reopen", undo=True)
    assert reopened.saved and reopened.value["undone"] == ["la"]
    row = entry_of(reopened.value, "la")
    assert row["status"] == "proposed" and row["reopened"] is True and row["reviewer"] is None
    assert row["low_confidence"] is True  # still flagged for a look: nobody decided on it
    reviews = [r for r in store.reviews(info.clip_id) if r.measurement == "la"]
    assert [r.action for r in reviews] == ["rejected", "reopened"]
    assert reviews[-1].reviewer == "Dr A" and reviews[-1].points is None and reviews[-1].value is None
    assert reviews[-1].proposal_id == reviews[0].proposal_id and reviews[-1].model_version_id is not None
    state = next(s for s in store.current_measurements(info.clip_id) if s.measurement == "la")
    assert state.status == "proposed" and not state.is_reviewed and state.reopened
    assert state.latest_review_id == reviews[-1].id and state.n_reviews == 2

    # worklist and exports: unreviewed again (the CSV row as it was before any review)
    assert ctrl.worklist("all", "Dr A")[1][2] == "meas. 0/6"
    assert store.worklist()[1].status == "to review"
    after_csv = _csv_row(store, info.clip_id, "la")
    assert after_csv["n_reviews"] == "2"  # the history stays counted
    assert {k: v for k, v in after_csv.items() if k != "n_reviews"} == {
        k: v for k, v in before_csv.items() if k != "n_reviews"}
    exported = export_json(store, [info.clip_id])
    clip_json = exported["clips"][0]
    assert next(m for m in clip_json["measurements"] if m["measurement"] == "la")["status"] == "proposed"
    assert [r["action"] for r in clip_json["reviews"] if r["measurement"] == "la"] == ["rejected", "reopened"]
    json.dumps(exported)

    # audited like the other actions, and the chain verifies
    event = [e for e in store.audit_events(info.clip_id) if e.entity_type == "review"][-1]
    assert event.action == "review.reopened" and event.actor == "Dr A"
    assert event.before["status"] == "rejected" and event.after["action"] == "reopened"
    report = verify(store.engine)
    assert report.ok, report.reason

    # the reviewer decides again on the reopened state
    accepted = _send(ctrl, info.clip_id, row, "accept")
    assert entry_of(accepted.value, "la")["status"] == "accepted"


def test_reopen_of_what_is_not_reviewed_is_refused_and_nothing_written(controller):
    ctrl, info = controller
    store = ctrl.store
    with pytest.raises(StoreError, match="not reviewed: nothing to reopen"):
        store.add_review(info.clip_id, "ivsd", "reopened", "Dr A")
    store.add_review(info.clip_id, "ivsd", "rejected", "Dr A")
    store.add_review(info.clip_id, "ivsd", "reopened", "Dr A")
    with pytest.raises(StoreError, match="not reviewed: nothing to reopen"):
        store.add_review(info.clip_id, "ivsd", "reopened", "Dr A")
    assert [r.action for r in store.reviews(info.clip_id)] == ["rejected", "reopened"]
    assert verify(store.engine).ok


def test_undo_of_a_contour_rejection_reopens_it(controller):
    from echomeasure.store.contours import add_contours, contour_reviews, current_contours

    ctrl, info = controller
    store = ctrl.store
    clip = ctrl.open_clip(info.clip_id, "Dr A").clip
    add_contours(store, info.clip_id, apical_contour_items(clip["ed_frame"], clip["es_frame"]))
    la = next(c for c in contour_review.contours_for(store, info.clip_id) if c["structure"] == "la")
    payload = {"clip_id": info.clip_id, "contour_proposal_id": la["id"], "polygon": None}
    contour_review.save(store, {**payload, "action": "rejected"}, "Dr A")
    shapes = contour_review.save(store, {**payload, "action": "reopened"}, "Dr A")
    assert next(c for c in shapes if c["id"] == la["id"])["status"] == "proposed"
    state = next(s for s in current_contours(store, info.clip_id) if s.proposal and s.proposal.id == la["id"])
    assert state.status == "proposed" and state.review is None and state.latest_review.action == "reopened"
    assert state.polygon == state.proposal.polygon
    assert [r.action for r in contour_reviews(store, info.clip_id)] == ["rejected", "reopened"]
    with pytest.raises(StoreError, match="nothing to reopen"):
        contour_review.save(store, {**payload, "action": "reopened"}, "Dr A")
    assert verify(store.engine).ok


def test_reopen_on_every_backend_with_audit_verify(store, deidentified_clip):
    """SQLite and PostgreSQL (as the application role): the migrated CHECK takes ``reopened``,
    the worklist counts it unreviewed and the audit chain verifies."""
    from store_fixtures import lvidd_proposals

    clip = store.add_clip(deidentified_clip)
    store.add_proposals(clip.id, lvidd_proposals())
    rejected = store.add_review(clip.id, "lvidd", "rejected", "Dr A", based_on=None)
    assert store.worklist()[0].n_reviewed == 1
    store.add_review(clip.id, "lvidd", "reopened", "Dr A", based_on=rejected.id)
    summary = store.worklist()[0]
    assert (summary.n_reviewed, summary.status) == (0, "to review")
    report = verify(store.engine)
    assert report.ok, report.reason
    assert report.covered["review"] == 2
