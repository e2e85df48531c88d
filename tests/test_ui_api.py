"""The review UI's API (gradio_client) and its server-side review logic, without a browser."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest
from ui_fixtures import EXAMPLE_2D, prepare_store

from echomeasure import config
from echomeasure.errors import CalibrationError, StoreError


@pytest.fixture()
def fresh_store(tmp_path):
    from echomeasure.store import open_store

    info = prepare_store(tmp_path)
    store = open_store(info.url)
    yield store, info
    store.close()


# --------------------------------------------------------------------------- view model


def test_viewer_flags_low_confidence_proposals(fresh_store):
    from echomeasure.ui import viewmodel

    store, info = fresh_store
    value = viewmodel.viewer_value(info.clip_id, store.current_measurements(info.clip_id), reload=True)
    flags = {m["name"]: m["low_confidence"] for m in value["measurements"]}
    confidences = {m["name"]: m["confidence"] for m in value["measurements"]}
    assert flags == {n: c < viewmodel.LOW_CONFIDENCE_THRESHOLD for n, c in confidences.items()}
    assert flags["la"] and not flags["lvidd"]


def test_viewer_clip_serves_every_frame_with_calibration_and_ed_es(fresh_store):
    from echomeasure.ui import viewmodel

    store, info = fresh_store
    clip = store.clip(info.clip_id)
    states = store.current_measurements(info.clip_id)
    desc = viewmodel.viewer_clip(clip, store.frame_images(info.clip_id), states)
    assert len(desc["frames"]) == clip.n_frames
    assert all(u.startswith("/gradio_api/file=") and Path(u.split("=", 1)[1]).is_file() for u in desc["frames"])
    lvidd = next(s for s in states if s.measurement == "lvidd")
    lvids = next(s for s in states if s.measurement == "lvids")
    assert desc["ed_frame"] == lvidd.proposed_frame_index
    assert desc["es_frame"] == lvids.proposed_frame_index
    assert desc["frame_time_ms"] == pytest.approx(clip.frame_time_ms)
    assert desc["calibration"]["regions"] and desc["calibration"]["source"] == "dicom"
    assert {a["name"] for a in desc["addable"]} == {"ivsd", "lvidd", "lvpwd", "lvids", "la", "aortic_root"}


# --------------------------------------------------------------------------- review logic


def test_accept_of_unchanged_points_is_accepted_and_moved_points_are_corrected(fresh_store):
    from echomeasure.ingest.calibration import distance_cm
    from echomeasure.ui.review import ReviewRequest, save_reviews

    store, info = fresh_store
    props = {p.measurement: p for p in store.proposals(info.clip_id)}
    same = ReviewRequest.from_payload(
        {"name": "ivsd", "action": "accept", "frame": props["ivsd"].frame_index, "points": props["ivsd"].points, "seconds": 3.2}
    )
    p0, p1 = props["lvidd"].points
    moved_pts = [list(p0), [p1[0] + 4.0, p1[1] + 10.0]]
    moved = ReviewRequest.from_payload(
        {"name": "lvidd", "action": "accept", "frame": props["lvidd"].frame_index, "points": moved_pts, "seconds": 7.5}
    )
    saved = save_reviews(store, info.clip_id, [same, moved], "Reader One")
    assert [r.action for r in saved] == ["accepted", "corrected"]
    assert saved[0].seconds_spent == pytest.approx(3.2)
    corrected = saved[1]
    expected_cm = distance_cm(store.clip(info.clip_id).region_objects, tuple(moved_pts[0]), tuple(moved_pts[1]))
    assert corrected.value == pytest.approx(expected_cm)
    assert corrected.value != pytest.approx(props["lvidd"].value)
    assert corrected.reviewer == "Reader One"


def test_review_without_reviewer_is_refused_and_nothing_stored(fresh_store):
    from echomeasure.ui.review import ReviewRequest, save_reviews

    store, info = fresh_store
    req = ReviewRequest.from_payload({"name": "ivsd", "action": "rejected"})
    with pytest.raises(StoreError, match="name"):
        save_reviews(store, info.clip_id, [req], "   ")
    assert store.reviews(info.clip_id) == []


def test_caliper_dragged_out_of_the_sector_is_refused(fresh_store):
    from echomeasure.ui.review import ReviewRequest, save_reviews

    store, info = fresh_store
    clip = store.clip(info.clip_id)
    p = store.proposals(info.clip_id)[0]
    outside = [list(p.points[0]), [0.0, 0.0]]  # the top-left corner is the blanked banner
    assert not any(r.contains(0.0, 0.0) for r in clip.region_objects)
    req = ReviewRequest.from_payload({"name": p.measurement, "action": "accept", "frame": p.frame_index, "points": outside})
    with pytest.raises(CalibrationError):
        save_reviews(store, info.clip_id, [req], "Reader One")
    assert store.reviews(info.clip_id) == []


def test_added_measurement_needs_no_proposal_and_gets_a_value(fresh_store):
    from echomeasure.ui.review import ReviewRequest, save_reviews

    store, info = fresh_store
    store.add_review(info.clip_id, "la", "rejected", "Reader One")
    la = next(p for p in store.proposals(info.clip_id) if p.measurement == "la")
    # Re-placing a rejected measurement: a proposal exists, so it is a correction, not an add.
    req = ReviewRequest.from_payload(
        {"name": "la", "action": "accept", "frame": la.frame_index,
         "points": [list(la.points[0]), [la.points[1][0], la.points[1][1] + 5]]}
    )
    (saved,) = save_reviews(store, info.clip_id, [req], "Reader One")
    assert saved.action == "corrected" and saved.unit == "cm" and saved.value > 0


def test_doppler_peak_value_is_recomputed_in_m_s(fresh_store):
    from echomeasure.ingest.calibration import velocity_m_s
    from echomeasure.ui.review import measured_value

    store, info = fresh_store
    clip = store.clip(info.doppler_clip_id)
    p = store.proposals(info.doppler_clip_id)[0]
    x, y = p.points[0]
    value, unit = measured_value(clip, "av_vmax", [[x, y + 12.0]])
    assert unit == "m/s"
    assert value == pytest.approx(abs(velocity_m_s(clip.region_objects, x, y + 12.0)))
    assert value != pytest.approx(p.value)


def test_unknown_measurement_or_action_from_the_browser_is_refused():
    from echomeasure.ui.review import ReviewRequest

    with pytest.raises(StoreError):
        ReviewRequest.from_payload({"name": "lvef", "action": "accept"})
    with pytest.raises(StoreError):
        ReviewRequest.from_payload({"name": "lvidd", "action": "delete"})


@pytest.mark.parametrize(("field", "value", "says"), [
    ("points", [[10], [20]], "not \\[x, y\\] pairs"),
    ("points", "abc", "not \\[x, y\\] pairs"),
    ("points", {}, "not \\[x, y\\] pairs"),
    ("points", [[1, 2, 3], [4, 5, 6]], "not \\[x, y\\] pairs"),  # a third coordinate was dropped silently
    ("points", [[1, 2]] * 5, "not \\[x, y\\] pairs"),
    ("points", [["1", 2], [3, 4]], "not finite"),
    ("points", [[True, 2], [3, 4]], "not finite"),
    ("frame", 2.7, "whole number"),  # was stored as frame 2
    ("frame", True, "finite number"),  # was frame 1
    ("frame", "3", "finite number"),
    ("proposal_id", 1.5, "whole number"),
    ("seconds", "x", "finite number"),
])
def test_a_malformed_review_from_the_browser_is_refused_in_one_line(field, value, says):
    """The commit payload comes from the browser: every field is checked (these raised uncaught
    exceptions or were silently changed before)."""
    from echomeasure.ui.review import ReviewRequest

    item = {"name": "lvidd", "action": "accept", "frame": 1, "points": [[10, 20], [10, 60]], field: value}
    with pytest.raises(StoreError, match=says):
        ReviewRequest.from_payload(item)


def test_a_review_that_says_it_took_forever_is_held_to_a_day():
    from echomeasure.ui.review import MAX_SECONDS_SPENT, ReviewRequest

    req = ReviewRequest.from_payload({"name": "lvidd", "action": "rejected", "seconds": 1e308, "frame": 2.0})
    assert req.seconds_spent == MAX_SECONDS_SPENT and req.frame == 2


def test_implausible_value_is_refused_in_a_batch_and_saved_alone_when_confirmed(fresh_store):
    from echomeasure.ui.review import ReviewRequest, save_reviews

    store, info = fresh_store
    props = {p.measurement: p for p in store.proposals(info.clip_id)}
    p0 = props["lvpwd"].points[0]
    collapsed = {"name": "lvpwd", "action": "accept", "frame": props["lvpwd"].frame_index, "points": [list(p0), list(p0)]}
    ok = {"name": "ivsd", "action": "accept", "frame": props["ivsd"].frame_index, "points": props["ivsd"].points}
    batch = [ReviewRequest.from_payload(ok), ReviewRequest.from_payload(dict(collapsed, confirmed=True))]
    with pytest.raises(StoreError, match="plausible range"):
        save_reviews(store, info.clip_id, batch, "Reader One")  # a confirmation does not count in a batch
    with pytest.raises(StoreError, match="plausible range"):
        save_reviews(store, info.clip_id, [ReviewRequest.from_payload(collapsed)], "Reader One")
    assert store.reviews(info.clip_id) == []  # nothing of a refused request is stored
    (saved,) = save_reviews(store, info.clip_id, [ReviewRequest.from_payload(dict(collapsed, confirmed=True))], "Reader One")
    assert saved.action == "corrected" and saved.value == pytest.approx(0.0)


def test_human_review_clears_the_low_confidence_flag(fresh_store):
    from echomeasure.ui import viewmodel

    store, info = fresh_store
    la = next(p for p in store.proposals(info.clip_id) if p.measurement == "la")
    entry = lambda: next(  # noqa: E731
        m for m in viewmodel.viewer_value(info.clip_id, store.current_measurements(info.clip_id))["measurements"]
        if m["name"] == "la"
    )
    assert entry()["low_confidence"] is True
    store.add_review(info.clip_id, "la", "corrected", "Reader One", frame=la.frame_index,
                     points=[la.points[0], (la.points[1][0], la.points[1][1] + 3)], value=4.0, unit="cm")
    assert entry()["low_confidence"] is False
    assert entry()["confidence"] == pytest.approx(la.confidence)  # the number stays, for the tooltip


def test_worklist_rows_filter_by_status_and_next_unreviewed(fresh_store):
    from echomeasure.ui import viewmodel

    store, info = fresh_store
    store.add_review(info.doppler_clip_id, "av_vmax", "accepted", "Reader One")
    summaries = store.worklist()
    rows = viewmodel.worklist_rows(summaries, views={info.clip_id: "PLAX"})
    by_id = {r[0]: r for r in rows}
    assert by_id[info.clip_id][1] == "to review" and by_id[info.doppler_clip_id][1] == "reviewed"
    assert by_id[info.clip_id][3].startswith("PLAX · 40 fr · DICOM")
    # the study date de-identification kept: shifted, so not the date written in the example
    import pydicom

    original = str(pydicom.dcmread(config.EXAMPLES_DIR / EXAMPLE_2D, stop_before_pixels=True).StudyDate)
    kept = store.clip(info.clip_id).deid_record["study_date"]
    assert kept and kept != original
    dated = viewmodel.worklist_rows(summaries, study_dates={info.clip_id: kept})
    assert next(r for r in dated if r[0] == info.clip_id)[3].endswith(f"{kept[:4]}-{kept[4:6]}-{kept[6:8]}")
    assert [r[0] for r in viewmodel.worklist_rows(summaries, status="reviewed")] == [info.doppler_clip_id]
    assert viewmodel.next_unreviewed(summaries, info.doppler_clip_id) == info.clip_id
    assert viewmodel.next_unreviewed(summaries, info.clip_id) is None  # the only one left is open


# --------------------------------------------------------------------------- gradio_client


def test_api_save_review_writes_the_store(running_app):  # noqa: F811
    from gradio_client import Client

    from echomeasure.store import open_store

    url, info = running_app
    client = Client(url + "/", verbose=False)
    state = client.predict(info.clip_id, "aortic_root", "accept", "API Reader", api_name="/save_review")
    assert state["status"] == "accepted"
    assert state["reviewer"] == "API Reader"
    store = open_store(info.url)
    try:
        (rev,) = [r for r in store.reviews(info.clip_id) if r.measurement == "aortic_root"]
    finally:
        store.close()
    assert rev.action == "accepted" and rev.reviewer == "API Reader"


def test_api_refuses_a_review_without_reviewer(running_app):  # noqa: F811
    from gradio_client import Client

    url, info = running_app
    client = Client(url + "/", verbose=False)
    with pytest.raises(Exception, match="name"):
        client.predict(info.clip_id, "lvids", "accept", "", api_name="/save_review")
    states = client.predict(info.clip_id, api_name="/measurements")
    assert next(s for s in states if s["name"] == "lvids")["status"] == "proposed"


def test_api_export_all_csv_lists_every_clip(running_app):  # noqa: F811
    from gradio_client import Client

    url, info = running_app
    client = Client(url + "/", verbose=False)
    result = client.predict(api_name="/export_all_csv")
    if isinstance(result, dict):  # a gr.update that also shows the file component
        result = result.get("value", result)
        result = result.get("path", result) if isinstance(result, dict) else result
    path = result
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"))))
    assert {r["clip_id"] for r in rows} == {str(info.clip_id), str(info.doppler_clip_id)}
    assert {r["measurement"] for r in rows if r["clip_id"] == str(info.clip_id)} >= {"lvidd", "ivsd"}


def test_api_open_example_returns_the_stored_proposals(running_app):  # noqa: F811
    from gradio_client import Client

    url, info = running_app
    client = Client(url + "/", verbose=False)
    viewer, header, worklist, _export = client.predict(EXAMPLE_2D, "API Reader", "all", api_name="/open_example")
    if "value" in viewer and "measurements" not in viewer:  # a gr.update carrying the clip prop too
        viewer = viewer["value"]
    assert viewer["clip_id"] == info.clip_id
    assert str(info.clip_id) in [str(row[0]) for row in worklist["data"]]
    assert {m["name"] for m in viewer["measurements"]} == {"ivsd", "lvidd", "lvpwd", "lvids", "la", "aortic_root"}
    assert "2D" in header


# --------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10"])
def test_cli_demo_refuses_non_local_host_without_auth(host):
    proc = subprocess.run(
        [sys.executable, "-m", "echomeasure.cli", "demo", "--host", host, "--port", "1"],
        capture_output=True, text=True, timeout=60, cwd=config.PROJECT_ROOT,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "--auth" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_root_app_py_imports_from_any_working_directory(tmp_path):
    code = "import runpy; ns = runpy.run_path({!r}, run_name='space'); print(callable(ns['build_app']))".format(str(
        config.PROJECT_ROOT / "app.py"
    ))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("True")
