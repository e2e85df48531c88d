"""The review store API, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np
import pytest
from store_fixtures import MODEL_2D, lvidd_proposals, make_deidentified

from echomeasure.errors import StoreError
from echomeasure.propose.types import ClipProposals, ModelInfo, Proposal
from echomeasure.store import ClipRecord, audit


@pytest.fixture
def clip(store, deidentified_clip) -> ClipRecord:
    rec = store.add_clip(deidentified_clip)
    store.save_frames(rec.id, deidentified_clip.clip.frames)
    store.add_proposals(rec.id, lvidd_proposals())
    return rec


# ----------------------------------------------------------------------------- clips


def test_add_clip_stores_pseudonymous_uids_and_calibration(store, deidentified_clip):
    rec = store.add_clip(deidentified_clip)
    assert rec.created
    assert rec.instance_uid == deidentified_clip.instance_uid
    assert rec.study_uid == deidentified_clip.study_uid
    assert rec.instance_uid.startswith("2.25.")
    assert (rec.n_frames, rec.height_px, rec.width_px) == deidentified_clip.clip.frames.shape[:3]
    assert rec.calibration_source == "dicom"
    assert rec.regions[0]["delta_x"] == pytest.approx(0.05)
    assert rec.region_objects[0].is_2d_cm
    assert rec.pixel_sha256 == deidentified_clip.pixel_sha256
    assert store.clip(rec.id) == dataclasses.replace(rec, created=False)


def test_add_clip_is_idempotent_on_instance_uid_and_pixels(store, deidentified_clip):
    first = store.add_clip(deidentified_clip)
    again = store.add_clip(deidentified_clip)
    assert again.id == first.id and not again.created
    assert len(store.clips()) == 1
    assert [e.action for e in store.audit_events()].count("clip.add") == 1


def test_clips_of_one_study_share_the_study(store, tmp_path):
    a = store.add_clip(make_deidentified(tmp_path, 1, study_suffix="9"))
    b = store.add_clip(make_deidentified(tmp_path, 2, study_suffix="9"))
    assert a.study_uid == b.study_uid and a.id != b.id


def test_add_clip_refuses_anything_but_the_gate_output(store, deidentified_clip):
    with pytest.raises(TypeError, match="DeidentifiedClip"):
        store.add_clip(deidentified_clip.clip)
    lookalike = type("DeidentifiedClip", (), {k: getattr(deidentified_clip, k) for k in ("clip", "study_uid")})()
    with pytest.raises(TypeError):
        store.add_clip(lookalike)
    assert store.clips() == []


def test_unknown_clip_is_a_store_error(store):
    with pytest.raises(StoreError, match="no clip 999"):
        store.clip(999)


# ----------------------------------------------------------------------------- frames


def test_saved_frames_read_back_identical(store, deidentified_clip):
    rec = store.add_clip(deidentified_clip)
    records = store.save_frames(rec.id, deidentified_clip.clip.frames)
    assert [r.frame_index for r in records] == list(range(rec.n_frames))
    for i in range(rec.n_frames):
        assert np.array_equal(store.frame(rec.id, i), deidentified_clip.clip.frames[i])
        assert store.frame_path(rec.id, i).suffix == ".png"
    # Content-addressed: the file name is the hash of the file.
    path = store.frame_path(rec.id, 0)
    assert path.stem == records[0].sha256 and path.parent.name == records[0].sha256[:2]


def test_save_frames_again_adds_nothing(store, deidentified_clip):
    rec = store.add_clip(deidentified_clip)
    store.save_frames(rec.id, {0: deidentified_clip.clip.frames[0]})
    store.save_frames(rec.id, deidentified_clip.clip.frames)
    store.save_frames(rec.id, deidentified_clip.clip.frames)
    assert len(store.frame_images(rec.id)) == rec.n_frames
    assert [e.action for e in store.audit_events(rec.id)].count("frames.save") == 2


def test_damaged_frame_file_is_reported_not_shown(store, clip):
    path = store.frame_path(clip.id, 1)
    path.write_bytes(path.read_bytes()[:-10] + b"0" * 10)
    with pytest.raises(StoreError, match="damaged"):
        store.frame(clip.id, 1)


def test_saving_a_damaged_frame_again_repairs_its_file(store, clip, deidentified_clip):
    path = store.frame_path(clip.id, 2)
    path.write_bytes(b"garbage")
    store.save_frames(clip.id, {2: deidentified_clip.clip.frames[2]})
    assert np.array_equal(store.frame(clip.id, 2), deidentified_clip.clip.frames[2])


def test_frame_that_was_not_saved_is_a_store_error(store, deidentified_clip):
    rec = store.add_clip(deidentified_clip)
    with pytest.raises(StoreError, match="not saved"):
        store.frame(rec.id, 0)
    with pytest.raises(StoreError, match="outside"):
        store.save_frames(rec.id, {rec.n_frames: deidentified_clip.clip.frames[0]})


# ----------------------------------------------------------------------------- model versions / proposals


def test_register_model_version_is_idempotent_and_activation_is_exclusive(store):
    a = store.register_model_version(ModelInfo("plax-linear", "1", "1" * 64), metrics={"lvidd_mae_mm": 0.9}, activate=True)
    b = store.register_model_version(
        ModelInfo("plax-linear", "2", "2" * 64), parent_id=a.id, trained_on={"reviews": [1, 2]}, activate=True
    )
    again = store.register_model_version(ModelInfo("plax-linear", "1", "1" * 64))
    assert again.id == a.id and again.metrics == {"lvidd_mae_mm": 0.9}
    assert b.parent_id == a.id and b.trained_on == {"reviews": [1, 2]}
    assert store.active_model_version("plax-linear").id == b.id
    assert [m.active for m in store.model_versions("plax-linear")] == [False, True]
    store.set_active_model_version(a.id)
    assert store.active_model_version("plax-linear").id == a.id


def test_add_proposals_stores_points_values_and_model(store, clip):
    proposals = store.proposals(clip.id)
    assert [p.measurement for p in proposals] == ["ivsd", "lvidd", "lvids"]
    lvidd = proposals[1]
    assert lvidd.points == ((20.0, 16.0), (20.0, 40.0))
    assert lvidd.value == pytest.approx(1.2) and lvidd.unit == "cm"
    assert (lvidd.model_name, lvidd.model_version) == (MODEL_2D.name, MODEL_2D.version)
    assert len(store.model_versions()) == 1


def test_add_proposals_twice_from_the_same_model_stores_them_once(store, clip):
    again = store.add_proposals(clip.id, lvidd_proposals())
    assert [p.id for p in again] == [p.id for p in store.proposals(clip.id)]


def test_proposal_outside_the_image_is_refused(store, deidentified_clip):
    rec = store.add_clip(deidentified_clip)
    bad = ClipProposals("2d", "dicom", MODEL_2D, [Proposal("lvidd", 0, ((1.0, 1.0), (500.0, 1.0)), 1.0, "cm", 0.5, MODEL_2D)])
    with pytest.raises(StoreError, match="outside"):
        store.add_proposals(rec.id, bad)
    assert store.proposals(rec.id) == []


# ----------------------------------------------------------------------------- reviews


def test_accept_keeps_the_proposed_points_and_value(store, clip):
    review = store.add_review(clip.id, "lvidd", "accepted", "sonographer-a", seconds_spent=2.5)
    proposal = next(p for p in store.proposals(clip.id) if p.measurement == "lvidd")
    assert review.proposal_id == proposal.id
    assert review.points == proposal.points and review.value == proposal.value
    assert review.model_version_id == proposal.model_version_id
    assert review.created_at.tzinfo is not None


def test_current_measurements_follow_the_latest_review(store, clip):
    store.add_review(clip.id, "lvidd", "accepted", "a")
    store.add_review(clip.id, "lvidd", "corrected", "b", points=[(20, 15), (20, 41)], value=1.3)
    store.add_review(clip.id, "lvids", "rejected", "b")
    store.add_review(clip.id, "la", "added", "b", frame=3, points=[(30, 10), (30, 30)], value=1.0, seconds_spent=7)
    states = {s.measurement: s for s in store.current_measurements(clip.id)}
    assert list(states) == ["ivsd", "lvidd", "lvids", "la"]  # catalogue order
    assert states["ivsd"].status == "proposed" and not states["ivsd"].is_reviewed
    assert states["lvidd"].status == "corrected" and states["lvidd"].points == ((20.0, 15.0), (20.0, 41.0))
    assert states["lvidd"].value == pytest.approx(1.3) and states["lvidd"].proposed_value == pytest.approx(1.2)
    assert states["lvidd"].n_reviews == 2 and states["lvidd"].reviewer == "b"
    assert states["lvids"].status == "rejected" and states["lvids"].points is None
    assert states["la"].status == "added" and states["la"].proposal_id is None and states["la"].unit == "cm"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reviewer": "  "}, "reviewer"),
        ({"action": "approved"}, "unknown review action"),
        ({"measurement": "lvedv"}, "unknown measurement"),
        ({"action": "corrected", "points": [(1, 1)]}, "needs 2 point"),
        ({"action": "corrected"}, "needs its 2 point"),
        ({"measurement": "la"}, "use the action 'added'"),
        ({"action": "added", "measurement": "la", "points": [(1, 1), (2, 2)]}, "needs the frame"),
        ({"action": "added", "measurement": "la", "frame": 99, "points": [(1, 1), (2, 2)]}, "outside clip"),
        ({"proposal_id": 10_000}, "no proposal"),
        ({"seconds_spent": -1}, "non-negative"),
    ],
)
def test_invalid_reviews_are_refused_and_store_nothing(store, clip, kwargs, message):
    args = {"measurement": "lvidd", "action": "accepted", "reviewer": "a", **kwargs}
    with pytest.raises(StoreError, match=message):
        store.add_review(clip.id, **args)
    assert store.reviews() == []
    assert not [e for e in store.audit_events() if e.action.startswith("review.")]


def test_the_review_fields_are_listed_once_for_add_review_and_review_request(store, clip):
    """add_review and review_request take the same review fields from one list (writes.ReviewFields):
    neither repeats them, add_review hands every one to review_request, and a keyword that is not a
    review field is refused by both."""
    import inspect
    import typing

    from echomeasure.store import Store, writes

    fields = set(writes.ReviewFields.__optional_keys__)
    assert fields == {"proposal_id", "frame", "points", "value", "unit", "seconds_spent",
                      "reviewer_display_name", "based_on"}
    for method, own in ((Store.add_review, {"on_saved"}), (Store.review_request, set())):
        params = inspect.signature(method).parameters
        assert not fields & set(params), method.__name__  # no copy of a field in its signature
        assert {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY} == own, method.__name__
        (var_kw,) = [p for p in params.values() if p.kind is p.VAR_KEYWORD]
        hint = typing.get_type_hints(method, include_extras=True)[var_kw.name]
        assert typing.get_args(hint) == (writes.ReviewFields,), method.__name__

    lvidd = next(p for p in store.proposals(clip.id) if p.measurement == "lvidd")
    given = {"proposal_id": lvidd.id, "frame": 2, "points": [(21.0, 16.0), (21.0, 41.0)], "value": 1.25,
             "unit": "cm", "seconds_spent": 3.5, "reviewer_display_name": "Dr Shown", "based_on": None}
    req = store.review_request(clip.id, "lvidd", "corrected", "login-1", **given)
    assert req.fields == given and (req.reviewer_display_name, req.based_on) == ("Dr Shown", None)
    assert store.review_request(clip.id, "lvidd", "rejected", "a").based_on == writes.ANY_STATE
    rec = store.add_review(clip.id, "lvidd", "corrected", "login-1", **given)
    assert (rec.proposal_id, rec.frame_index, rec.points, rec.value, rec.unit, rec.seconds_spent,
            rec.reviewer, rec.reviewer_display_name) == (
        lvidd.id, 2, ((21.0, 16.0), (21.0, 41.0)), 1.25, "cm", 3.5, "login-1", "Dr Shown")
    with pytest.raises(StoreError, match="reviewed meanwhile|stale"):  # based_on reached the store's check
        store.add_review(clip.id, "lvidd", "rejected", "a", based_on=None)
    for method in (store.add_review, store.review_request):
        with pytest.raises(TypeError, match="point"):
            method(clip.id, "lvidd", "rejected", "a", point=[(1, 1)])
    assert len(store.reviews()) == 1


def test_review_of_a_proposal_of_another_measurement_is_refused(store, clip):
    ivsd = next(p for p in store.proposals(clip.id) if p.measurement == "ivsd")
    with pytest.raises(StoreError, match="not lvidd"):
        store.add_review(clip.id, "lvidd", "accepted", "a", proposal_id=ivsd.id)


def test_every_review_has_its_audit_event_with_before_and_after(store, clip):
    store.add_review(clip.id, "lvidd", "accepted", "a")
    store.add_review(clip.id, "lvidd", "corrected", "b", points=[(20, 15), (20, 41)], value=1.3)
    events = [e for e in store.audit_events(clip.id) if e.entity_type == "review"]
    assert [(e.actor, e.action) for e in events] == [("a", "review.accepted"), ("b", "review.corrected")]
    assert events[0].before["status"] == "proposed"
    assert events[1].before["status"] == "accepted" and events[1].after["value"] == pytest.approx(1.3)


def test_a_crash_between_review_and_audit_leaves_neither(store, clip, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr(audit, "append", crash)
    with pytest.raises(RuntimeError):
        store.add_review(clip.id, "lvidd", "accepted", "a")
    monkeypatch.undo()
    assert store.reviews() == []
    assert store.current_measurements(clip.id)[1].status == "proposed"


# ----------------------------------------------------------------------------- worklist / training


def test_worklist_counts_proposed_and_reviewed(store, clip, tmp_path):
    other = store.add_clip(make_deidentified(tmp_path, 5))
    rows = {r.clip_id: r for r in store.worklist()}
    assert (rows[clip.id].n_proposed, rows[clip.id].n_reviewed, rows[clip.id].status) == (3, 0, "to review")
    assert rows[other.id].status == "no proposals"
    store.add_review(clip.id, "lvidd", "accepted", "a")
    assert {r.clip_id: r for r in store.worklist()}[clip.id].status == "in review"
    store.add_review(clip.id, "ivsd", "accepted", "a")
    store.add_review(clip.id, "lvids", "rejected", "a")
    row = {r.clip_id: r for r in store.worklist()}[clip.id]
    assert (row.n_reviewed, row.status) == (3, "reviewed") and row.last_reviewed_at is not None
    assert [r.clip_id for r in store.worklist()] == [other.id, clip.id]  # newest first


def test_reviews_for_training_merge_final_points_into_keypoints(store, clip, deidentified_clip):
    store.add_review(clip.id, "ivsd", "accepted", "a")
    store.add_review(clip.id, "lvidd", "corrected", "a", points=[(21, 17), (20, 42)], value=1.25)
    store.add_review(clip.id, "lvids", "rejected", "a")
    frames = store.reviews_for_training()
    assert [(f.clip_id, f.frame_index) for f in frames] == [(clip.id, 1)]  # rejected lvids left out
    f = frames[0]
    # lvidd was reviewed last, so its septum/LV endpoint wins over the ivsd one.
    assert f.keypoints == {"rv_septum": (20.0, 10.0), "septum_lv": (21.0, 17.0), "lv_pw": (20.0, 42.0)}
    assert f.statuses == {"ivsd": "accepted", "lvidd": "corrected"}
    assert np.array_equal(f.load_image(), deidentified_clip.clip.frames[1])
    assert store.reviews_for_training(kind="doppler") == []
    assert store.reviews_for_training(since=datetime(2999, 1, 1, tzinfo=UTC)) == []


def test_records_are_frozen_dataclasses_not_orm_objects(store, clip):
    for rec in (clip, store.proposals(clip.id)[0], store.worklist()[0], store.current_measurements(clip.id)[0]):
        assert dataclasses.is_dataclass(rec)
        with pytest.raises(dataclasses.FrozenInstanceError):
            rec.clip_id = 0  # type: ignore[misc]
