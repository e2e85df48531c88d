"""Exports: CSV (long format) round trip, JSON history, COCO keypoints, atomic writes, no PHI."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from datetime import datetime
from pathlib import Path

import pytest
from store_fixtures import CANARY_STRINGS, lvidd_proposals

from echomeasure import catalog, config
from echomeasure.errors import EchomeasureError, StoreError
from echomeasure.export import CSV_COLUMNS, FORMATS, export, render, write_atomic
from echomeasure.pipeline import ingest_path


@pytest.fixture
def reviewed(store, dicom_file):
    """A canary DICOM ingested through the pipeline, proposed and partly reviewed."""
    result = ingest_path(dicom_file, store, secret=config.secret(), run_models=False)
    clip_id = result.clip.id
    store.add_proposals(clip_id, lvidd_proposals())
    store.add_review(clip_id, "ivsd", "accepted", "sonographer-a", seconds_spent=1.5)
    store.add_review(clip_id, "lvidd", "corrected", "sonographer-b", points=[(21.5, 16.25), (20, 41)], value=1.2345)
    store.add_review(clip_id, "lvids", "rejected", "sonographer-b")
    store.add_review(clip_id, "la", "added", "sonographer-b", frame=3, points=[(30, 10), (30, 30)], value=1.0)
    return store, clip_id


def _parse_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_round_trip_gives_back_the_stored_measurements(reviewed):
    store, clip_id = reviewed
    rows = _parse_csv(render(store, "csv"))
    states = store.current_measurements(clip_id)
    assert [r["measurement"] for r in rows] == [s.measurement for s in states] == ["ivsd", "lvidd", "lvids", "la"]
    clip = store.clip(clip_id)
    for row, st in zip(rows, states, strict=True):
        assert list(row) == list(CSV_COLUMNS)
        assert row["instance_uid"] == clip.instance_uid and row["study_uid"] == clip.study_uid
        assert row["status"] == st.status
        assert row["loinc"] == catalog.get(st.measurement).loinc
        assert row["calibration_source"] == "dicom"
        if st.value is None:
            assert row["value"] == "" and row["unit"] == ""
        else:
            assert float(row["value"]) == pytest.approx(st.value, abs=1e-4)
            assert row["unit"] == "cm"
        if st.points:
            got = [float(row[k]) for k in ("x1_px", "y1_px", "x2_px", "y2_px")]
            assert got == pytest.approx([c for p in st.points for c in p], abs=0.01)
        if st.proposal_id is not None:
            assert float(row["proposed_value"]) == pytest.approx(st.proposed_value)
            assert row["model_name"] == "plax-linear" and row["model_version"] == "test-1"
    lvidd = rows[1]
    assert (lvidd["reviewer"], lvidd["status"], lvidd["value"]) == ("sonographer-b", "corrected", "1.2345")
    assert lvidd["proposed_value"] == "1.2"
    # the pixel length goes with the row's own (corrected) points, not the proposal's
    assert float(lvidd["pixel_length_px"]) == pytest.approx(math.hypot(21.5 - 20, 16.25 - 41), abs=0.01)
    assert float(rows[3]["pixel_length_px"]) == pytest.approx(20.0)  # an added LA: its own points


def test_csv_times_are_iso_8601_utc_and_decimals_use_a_point(reviewed):
    store, _ = reviewed
    rows = _parse_csv(render(store, "csv"))
    for row in rows:
        for key in ("proposed_at", "reviewed_at"):
            if row[key]:
                assert row[key].endswith("Z")
                assert datetime.fromisoformat(row[key].replace("Z", "+00:00")).utcoffset().total_seconds() == 0
        for key in ("value", "proposed_value", "confidence", "x1_px"):
            assert "," not in row[key]
            assert row[key] == "" or re.fullmatch(r"-?\d+(\.\d+)?", row[key])


def test_csv_has_one_row_per_proposed_measurement_before_review(store, deidentified_clip):
    clip = store.add_clip(deidentified_clip)
    store.add_proposals(clip.id, lvidd_proposals())
    rows = _parse_csv(render(store, "csv"))
    assert [(r["measurement"], r["status"], r["reviewer"]) for r in rows] == [
        ("ivsd", "proposed", ""),
        ("lvidd", "proposed", ""),
        ("lvids", "proposed", ""),
    ]


def test_json_export_keeps_the_full_history(reviewed):
    store, clip_id = reviewed
    store.add_review(clip_id, "ivsd", "corrected", "sonographer-c", points=[(20, 11), (20, 16)], value=0.25)
    doc = json.loads(render(store, "json"))
    (clip,) = doc["clips"]
    assert clip["clip_id"] == clip_id
    assert [r["action"] for r in clip["reviews"]] == ["accepted", "corrected", "rejected", "added", "corrected"]
    assert len(clip["proposals"]) == 3
    assert {m["measurement"]: m["status"] for m in clip["measurements"]}["ivsd"] == "corrected"
    actions = [a["action"] for a in clip["audit"]]
    assert actions[0] == "clip.add" and actions.count("review.corrected") == 2
    assert doc["model_versions"][0]["name"] == "plax-linear"
    assert clip["frames_saved"] == list(range(clip["n_frames"]))


def test_coco_export_has_reviewed_frames_with_keypoints_in_catalogue_order(reviewed):
    store, clip_id = reviewed
    coco = json.loads(render(store, "coco"))
    assert coco["categories"][0]["keypoints"] == list(catalog.KEYPOINTS_2D)
    frames = sorted((img["frame_index"], img["id"]) for img in coco["images"])
    assert [f for f, _ in frames] == [1, 3]  # ivsd/lvidd on 1, added la on 3; rejected lvids not
    by_image = {a["image_id"]: a for a in coco["annotations"]}
    ann = by_image[dict(frames)[1]]
    kp = ann["keypoints"]
    assert len(kp) == 3 * len(catalog.KEYPOINTS_2D)
    named = {name: kp[3 * i : 3 * i + 3] for i, name in enumerate(catalog.KEYPOINTS_2D)}
    assert named["rv_septum"] == [20.0, 10.0, 2]
    assert named["septum_lv"] == [21.5, 16.25, 2]  # lvidd corrected after ivsd accepted
    assert named["lv_pw"] == [20.0, 41.0, 2]
    assert named["ao_anterior"] == [0.0, 0.0, 0]
    assert ann["num_keypoints"] == 3
    for img in coco["images"]:
        assert (store.images_dir / img["file_name"]).is_file()


def test_export_writes_atomically_and_leaves_nothing_partial(reviewed, tmp_path, monkeypatch):
    store, _ = reviewed
    out = tmp_path / "out.csv"
    export(store, "csv", out)
    first = out.read_text()
    assert first.count("\n") == 5

    import echomeasure.export as export_mod

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_mod.os, "replace", broken)
    with pytest.raises(RuntimeError):
        export(store, "json", out, force=True)
    monkeypatch.undo()
    assert out.read_text() == first  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.csv")] == []
    with pytest.raises(EchomeasureError, match="does not exist"):
        write_atomic(tmp_path / "missing" / "x.csv", "x")


def test_export_of_an_unknown_clip_is_a_store_error(reviewed):
    store, _ = reviewed
    with pytest.raises(StoreError, match="no clip 4242"):
        render(store, "csv", clip_ids=[4242])


def test_no_canary_value_appears_in_any_export_or_in_the_store(reviewed, tmp_path):
    store, _ = reviewed
    texts = {fmt: render(store, fmt) for fmt in FORMATS}
    for fmt, text in texts.items():
        for canary in CANARY_STRINGS:
            assert canary.lower() not in text.lower(), f"{canary!r} leaked into the {fmt} export"
    # The file name and folder were identifying too: neither may be stored or exported.
    assert "echo.dcm" not in texts["json"]
    if store.engine.url.get_backend_name() == "sqlite":
        raw = Path(store.engine.url.database).read_bytes()
        for wal in Path(store.engine.url.database).parent.glob("*.sqlite-wal"):
            raw += wal.read_bytes()
        for canary in CANARY_STRINGS:
            assert canary.encode() not in raw
    for png in store.images_dir.rglob("*.png"):
        assert b"CANARY" not in png.read_bytes()
