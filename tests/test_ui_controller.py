"""The review UI's controller: each event's rule as a plain function over a real store."""

from __future__ import annotations

import gradio as gr
import pytest

from echomeasure.errors import StoreError
from echomeasure.ui.controller import NAME_NEEDED_TO_SAVE, ReviewController, event_payload, viewer_name


def _reviews(ctrl: ReviewController, clip_id: int, name: str):
    return [r for r in ctrl.store.reviews(clip_id) if r.measurement == name]


def test_event_payload_reads_the_fields_a_custom_event_carries():
    event = gr.EventData(None, {"clip_id": 7, "reviews": [{"name": "lvidd"}]})
    assert event_payload(event, ["clip_id", "reviews", "undo"]) == {
        "clip_id": 7, "reviews": [{"name": "lvidd"}], "undo": None,
    }
    assert event_payload(gr.EventData(None, None), ["clip_id"]) == {"clip_id": None}


def test_viewer_is_the_login_else_the_typed_name():
    assert viewer_name("  Dr Typed ", None) == "Dr Typed"
    assert viewer_name("Dr Typed", "login-user") == "login-user"
    assert viewer_name("   ", None) == ""


def test_open_clip_gives_the_viewer_value_props_and_header(controller):
    ctrl, info = controller
    screen = ctrl.open_clip(info.clip_id, "Dr A")
    clip = ctrl.store.clip(info.clip_id)
    assert screen.clip_id == info.clip_id and screen.value["clip_id"] == info.clip_id
    assert len(screen.clip["frames"]) == clip.n_frames
    assert {m["name"] for m in screen.value["measurements"]} == {"ivsd", "lvidd", "lvpwd", "lvids", "la", "aortic_root"}
    assert clip.label in screen.header and "DICOM calibration" in screen.header
    with pytest.raises(StoreError):
        ctrl.open_clip(10_000, "Dr A")


def test_commit_saves_and_marks_the_committed_measurements(controller):
    ctrl, info = controller
    payload = {"clip_id": info.clip_id, "reviews": [{"name": "lvidd", "action": "accept"}]}
    outcome = ctrl.commit(payload, "Dr A", None)
    assert outcome.saved and outcome.reviewer_missing is False and outcome.saved_names == ("lvidd",)
    row = next(m for m in outcome.value["measurements"] if m["name"] == "lvidd")
    assert row["status"] == "accepted" and row["reviewer"] == "Dr A"
    (review,) = _reviews(ctrl, info.clip_id, "lvidd")
    assert review.action == "accepted" and review.reviewer == "Dr A"


def test_commit_without_a_name_saves_nothing_and_asks_for_it(controller):
    ctrl, info = controller
    payload = {"clip_id": info.clip_id, "reviews": [{"name": "ivsd", "action": "accept"}]}
    outcome = ctrl.commit(payload, "  ", None)
    assert not outcome.saved and outcome.reviewer_missing is True
    assert outcome.value["notice"] == NAME_NEEDED_TO_SAVE
    assert _reviews(ctrl, info.clip_id, "ivsd") == []


def test_commit_refused_by_the_store_is_a_notice_and_nothing_saved(controller):
    ctrl, info = controller
    far_outside = [[-500.0, -500.0], [2000.0, 2000.0]]
    payload = {"clip_id": info.clip_id, "reviews": [{"name": "ivsd", "action": "accept", "points": far_outside, "frame": 0}]}
    outcome = ctrl.commit(payload, "Dr A", None)
    assert not outcome.saved and outcome.value["notice"].startswith("Not saved:")
    assert _reviews(ctrl, info.clip_id, "ivsd") == []


def test_empty_commit_changes_nothing(controller):
    ctrl, info = controller
    outcome = ctrl.commit({"clip_id": info.clip_id, "reviews": []}, "Dr A", None)
    assert outcome.value is None and not outcome.saved


def test_calibrate_without_a_name_or_on_a_dicom_calibrated_clip_is_refused(controller):
    ctrl, info = controller
    payload = {"clip_id": info.clip_id, "points": [[10, 10], [10, 110]], "length_cm": 5.0}
    outcome = ctrl.calibrate(payload, "", None)
    assert outcome.reviewer_missing is True and outcome.screen is None
    outcome = ctrl.calibrate(payload, "Dr A", None)
    assert outcome.screen is None and outcome.value["notice"].startswith("Not calibrated:")
    assert ctrl.store.clip(info.clip_id).user_cm_per_px is None


def test_next_clip_skips_to_the_next_unreviewed(controller):
    ctrl, info = controller
    assert ctrl.next_clip(info.clip_id) == info.doppler_clip_id
    ctrl.save_review(info.doppler_clip_id, "av_vmax", "accept", "Dr A")
    assert ctrl.next_clip(info.doppler_clip_id) == info.clip_id
    assert ctrl.next_clip(info.clip_id) is None  # the only clip left to review is the one open


def test_blinded_reader_sees_only_their_own_reads(controller):
    from echomeasure.store import readers

    ctrl, info = controller
    readers.assign(ctrl.store, info.clip_id, ["Reader A", "Reader B"], "blinded")
    ctrl.save_review(info.clip_id, "la", "rejected", "Reader A")
    seen_by_b = {m["name"]: m for m in ctrl.measurement_entries(info.clip_id, "Reader B")}
    assert seen_by_b["la"]["status"] == "proposed"
    with pytest.raises(StoreError):
        ctrl.open_clip(info.clip_id, "Someone Else")


def test_worklist_counts_a_reader_study_clip_from_each_readers_own_reads(controller):
    from echomeasure.store import readers

    ctrl, info = controller
    readers.assign(ctrl.store, info.clip_id, ["Reader A", "Reader B"], "blinded")
    for name in ("ivsd", "lvidd", "lvpwd", "lvids", "la", "aortic_root"):
        ctrl.save_review(info.clip_id, name, "accept", "Reader A")

    def status(viewer: str) -> dict[int, str]:
        return {s.clip_id: s.status for s in ctrl.summaries(viewer)}

    assert status("Reader A")[info.clip_id] == "reviewed"
    assert status("Reader B")[info.clip_id] == "to review"  # A's reads do not show through
    assert info.clip_id not in status("Someone Else") and info.doppler_clip_id in status("Someone Else")
    assert info.clip_id not in status("")
    assert ctrl.next_clip(info.doppler_clip_id, "Reader B") == info.clip_id
    assert ctrl.next_clip(info.doppler_clip_id, "Reader A") is None
    rows = ctrl.worklist("all", "Reader B")
    assert any(str(row[0]) == str(info.clip_id) for row in rows)


def test_study_export_names_the_clips_of_the_study_and_its_file(controller):
    ctrl, info = controller
    clip = ctrl.store.clip(info.clip_id)
    ids, name = ctrl.study_export(info.clip_id)
    assert info.clip_id in ids and all(ctrl.store.clip(i).study_uid == clip.study_uid for i in ids)
    other = ctrl.store.clip(info.doppler_clip_id)
    assert (info.doppler_clip_id in ids) == (other.study_uid == clip.study_uid)
    assert name == f"echomeasure_study_{clip.study_uid[-8:]}.csv"
    with pytest.raises(StoreError):
        ctrl.study_export(10_000)


def test_an_apical_clip_is_listed_by_its_contours_and_view(controller):
    from ui_fixtures import apical_contour_items

    from echomeasure import config
    from echomeasure.pipeline import ingest_path
    from echomeasure.propose.types import ModelInfo
    from echomeasure.store.contours import add_contour_review, add_contours, add_volumes

    ctrl, _ = controller
    clip_id = ingest_path(config.EXAMPLES_DIR / "case_0000_a4c.dcm", ctrl.store, secret=b"apical",
                          run_models=False).clip.id
    row = next(r for r in ctrl.worklist() if r[0] == clip_id)
    assert row[1] == "no proposals" and row[2] == "0/0"
    model = ModelInfo("apical-seg", "test", "0" * 64)
    stored = add_contours(ctrl.store, clip_id, apical_contour_items(3, 10), model=model)
    add_volumes(ctrl.store, clip_id, [{"name": "lvedv", "value": 90.0, "unit": "ml", "frame": 3,
                                       "method": "single-plane A4C", "confidence": 0.9}], model=model)
    row = next(r for r in ctrl.worklist() if r[0] == clip_id)
    assert row[1] == "to review" and row[2] == "contours 0/4" and row[3].startswith("A4C · 40 fr")
    add_contour_review(ctrl.store, clip_id, "accepted", "Dr A", contour_proposal_id=stored[0].id)
    assert next(r for r in ctrl.worklist("in review") if r[0] == clip_id)[2] == "contours 1/4"
    assert ctrl.next_clip(None) is not None
    assert "model: apical-seg test" in ctrl.open_clip(clip_id, "Dr A").header


def test_the_clip_header_counts_frames_in_english():
    from datetime import UTC, datetime

    from echomeasure.store.records import ClipRecord
    from echomeasure.ui.controller import clip_header

    def clip(n):
        return ClipRecord(id=3, study_uid="1.2.3.45678901", series_uid="1.2.3.4", instance_uid="1.2.3.4.5", kind="doppler",
                          n_frames=n, frame_time_ms=None, width_px=800, height_px=600, regions=(), calibration_source="dicom",
                          user_cm_per_px=None, pixel_sha256="0" * 64, deid_record={}, created_at=datetime.now(UTC))

    assert "DOPPLER · 1 frame · frame time unknown" in clip_header(clip(1), [])
    assert "40 frames (0–39)" in clip_header(clip(40), [])


def test_the_clip_header_asks_to_check_pixels_the_deidentifier_could_not_verify(controller):
    """A clip whose de-identification record asks for human confirmation says so in the header
    every time it opens (it was in the record only); a clean DICOM clip says nothing."""
    from dataclasses import replace

    from echomeasure.ui.controller import clip_header

    ctrl, info = controller
    clip = ctrl.store.clip(info.clip_id)
    assert clip.deid_record["pixels"]["human_confirmation_needed"] is False  # ingested for real: regions, no text
    assert "⚠" not in ctrl.open_clip(info.clip_id, "Dr A").header

    def header(pixels):
        return clip_header(replace(clip, deid_record={**clip.deid_record, "pixels": pixels}), [])

    boxes = {"searched": True, "boxes_in_fan": [[1, 2, 3, 4], [5, 6, 7, 8]]}
    assert "⚠ 2 burned-in text areas were found inside the image" in header(
        {"human_confirmation_needed": True, "text": boxes})
    assert "not searched" in header({"human_confirmation_needed": True, "text": {"searched": False}})
    assert "found from the pixels" in header({"human_confirmation_needed": True, "text": {"searched": True}})
    assert "⚠" not in header({"human_confirmation_needed": False, "text": boxes})
