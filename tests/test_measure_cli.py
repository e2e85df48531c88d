"""`echomeasure measure`: the JSON contract of docs/architecture.md section 3, errors, calibration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from echomeasure import catalog
from echomeasure.cli import main

CONTRACT_KEYS = {"file", "kind", "calibration", "model", "measurements", "view", "notices", "segmentations"}
MEASUREMENT_KEYS = {"name", "value", "unit", "frame", "points", "confidence", "flagged"}


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory) -> Path:
    from echomeasure.synthetic.studio import CaseJob, write_case

    out = tmp_path_factory.mktemp("synth")
    write_case(out, CaseJob(0, "2d"), 11, small=True)
    write_case(out, CaseJob(1, "doppler", "av"), 11, small=True)
    return out


@pytest.fixture(scope="module")
def video_file(tmp_path_factory) -> Path:
    """An uncalibrated AVI: a moving 'sector' under a static banner."""
    import cv2

    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (160, 120))
    rng = np.random.default_rng(0)
    for _ in range(8):
        frame = np.zeros((120, 160, 3), np.uint8)
        frame[20:110, 30:150] = rng.integers(0, 255, (90, 120, 1), dtype=np.uint8)
        writer.write(frame)
    writer.release()
    return path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["measure", "-q", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_measure_prints_contract_json_for_synthetic_dicom(synthetic_dir, use_random_weights, capsys):
    code, out, err = _run(capsys, str(synthetic_dir / "case_0000.dcm"))
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == CONTRACT_KEYS
    assert doc["file"] == "case_0000.dcm"
    assert doc["kind"] == "2d" and doc["calibration"] == "dicom"
    assert doc["model"]["name"] == "plax-linear" and len(doc["model"]["sha256"]) == 64
    assert [m["name"] for m in doc["measurements"]] == list(catalog.LINEAR_2D)
    for m in doc["measurements"]:
        assert set(m) == MEASUREMENT_KEYS
        assert m["unit"] == "cm" and isinstance(m["value"], float)
        assert len(m["points"]) == 2 and all(len(p) == 2 for p in m["points"])
        assert 0.0 <= m["confidence"] <= 1.0
        assert isinstance(m["flagged"], bool)


def test_measure_per_frame_and_only(synthetic_dir, use_random_weights, capsys):
    code, out, err = _run(capsys, str(synthetic_dir / "case_0000.dcm"), "--per-frame", "--only", "ivsd,lvidd")
    assert code == 0, err
    doc = json.loads(out)
    assert [m["name"] for m in doc["measurements"]] == ["ivsd", "lvidd"]
    assert len(doc["frames"]) == 40
    assert set(doc["frames"][0]["points"]) == set(catalog.KEYPOINTS_2D)


def test_measure_only_av_vmax_on_2d_exits_2(synthetic_dir, use_random_weights, capsys):
    path = str(synthetic_dir / "case_0000.dcm")
    code, out, err = _run(capsys, path, "--only", "av_vmax")
    assert code == 2
    assert out == ""
    assert err.startswith(f"error: {path}: av_vmax is a Doppler measurement but this clip is a 2D cine")
    assert len(err.strip().splitlines()) == 1


def test_measure_doppler_strip(synthetic_dir, use_random_weights, capsys):
    code, out, err = _run(capsys, str(synthetic_dir / "case_0001.dcm"), "--only", "av_vmax")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["kind"] == "doppler" and doc["model"]["name"] == "doppler-peaks"
    # random weights may find no peak; whatever is proposed is av_vmax in m/s
    assert all(m["name"] == "av_vmax" and m["unit"] == "m/s" for m in doc["measurements"])


def test_measure_uncalibrated_video_gives_px_and_null(video_file, use_random_weights, capsys):
    code, out, err = _run(capsys, str(video_file))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["calibration"] == "none" and doc["file"] == "clip.avi"
    assert doc["measurements"]
    assert all(m["value"] is None and m["unit"] == "px" for m in doc["measurements"])


def test_measure_video_with_user_scale_gives_cm(video_file, use_random_weights, capsys):
    code, out, err = _run(capsys, str(video_file), "--scale", "0.04", "--only", "lvidd")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["calibration"] == "user"
    (m,) = doc["measurements"]
    assert m["unit"] == "cm" and m["value"] is not None


def test_measure_missing_file_and_bad_version_exit_2(synthetic_dir, use_random_weights, capsys, tmp_path):
    code, out, err = _run(capsys, str(tmp_path / "nope.dcm"))
    assert code == 2 and out == "" and err == f"error: {tmp_path / 'nope.dcm'}: no such file; check the path\n"
    code, out, err = _run(capsys, str(synthetic_dir / "case_0000.dcm"), "--model-version", "9.9")
    assert code == 2 and "known versions: 0.0-random" in err


def test_measure_without_weights_says_how_to_get_them(synthetic_dir, tmp_path, monkeypatch, capsys):
    from echomeasure.propose import clear_engines

    clear_engines()
    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(tmp_path))
    code, out, err = _run(capsys, str(synthetic_dir / "case_0000.dcm"))
    assert code == 2 and out == ""
    assert "echomeasure train" in err


PROJECT_MANIFEST = Path(__file__).resolve().parent.parent / "weights" / "manifest.json"


def _has_trained_plax() -> bool:
    try:
        models = json.loads(PROJECT_MANIFEST.read_text())["models"]
    except (OSError, ValueError, KeyError):
        return False
    return any(m.get("name") == "plax-linear" for m in models)


@pytest.mark.slow
@pytest.mark.skipif(not _has_trained_plax(),
                    reason="no trained weights: weights/manifest.json has no plax-linear (run `echomeasure train`)")
def test_trained_weights_measure_synthetic_case_close_to_truth(synthetic_dir, monkeypatch, capsys):
    from echomeasure.propose import clear_engines

    clear_engines()
    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(PROJECT_MANIFEST.parent))
    code, out, err = _run(capsys, str(synthetic_dir / "case_0000.dcm"))
    assert code == 0, err
    doc = json.loads(out)
    truth = json.loads((synthetic_dir / "case_0000.truth.json").read_text())["measurements"]
    from echomeasure.models.registry import get_entry

    entry = get_entry("plax-linear", doc["model"]["version"], PROJECT_MANIFEST.parent)  # typed: any manifest format
    errors_mm = {m["name"]: abs(m["value"] - truth[m["name"]]["value"]) * 10.0 for m in doc["measurements"]}
    confidence = {m["name"]: m["confidence"] for m in doc["measurements"]}
    assert set(errors_mm) == {"ivsd", "lvidd", "lvpwd", "lvids", "la", "aortic_root"}
    # the file path (de-identification, JPEG, ED/ES choice, smoothing, edge refinement) must keep
    # what the held-out evaluation of these weights promises, on this one case: the typical
    # (median) error within 2x the mean MAE (at least 1.5 mm), and each measurement within 3x its
    # own MAE (at least 3 mm).  The evaluation has a tail of gross misses, so a miss beyond that
    # is tolerated only where the model's confidence is known to flag misses (held-out
    # flagged/unflagged error ratio >= 1.2) and it does carry a below-median confidence here.
    tolerance_mm = max(1.5, 2.0 * float(entry.metric("mean_mae_mm") or 0.0))
    assert float(np.median(list(errors_mm.values()))) <= tolerance_mm, errors_mm
    confidence_flags_misses = float(entry.thresholds.flagged_mae_ratio or 0.0) >= 1.2
    median_confidence = float(np.median(list(confidence.values())))
    for name, err in errors_mm.items():
        if err <= max(3.0, 3.0 * float(entry.metric(f"{name}_mae_mm") or 0.0)):
            continue
        assert confidence_flags_misses and confidence[name] < median_confidence, (name, errors_mm, confidence)


@pytest.mark.slow
@pytest.mark.skipif(not _has_trained_plax(), reason="no trained weights in weights/manifest.json")
def test_trained_doppler_beats_average_and_store_one_reviewable_marker(synthetic_dir, monkeypatch, capsys, tmp_path):
    """Every beat is read and averaged; the store keeps one marker a reviewer can drag."""
    from echomeasure import config
    from echomeasure.pipeline import ingest_path
    from echomeasure.propose import clear_engines
    from echomeasure.store import open_store

    clear_engines()
    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(PROJECT_MANIFEST.parent))
    code, out, err = _run(capsys, str(synthetic_dir / "case_0001.dcm"))
    assert code == 0, err
    av = next(m for m in json.loads(out)["measurements"] if m["name"] == "av_vmax")
    truth = json.loads((synthetic_dir / "case_0001.truth.json").read_text())["measurements"]["av_vmax"]["value"]
    assert len(av["points"]) == 1 and len(av["beats"]) >= 2
    assert av["points"][0] in av["beats"]
    assert av["value"] == pytest.approx(truth, rel=0.03)

    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}", images_dir=tmp_path / "images")
    try:
        result = ingest_path(synthetic_dir / "case_0001.dcm", store, secret=config.secret())
        stored = {p.measurement: p for p in result.proposals}
        assert result.proposed and "av_vmax" in stored
        assert len(stored["av_vmax"].points) == 1
        assert stored["av_vmax"].value == pytest.approx(av["value"], abs=1e-3)
    finally:
        store.close()
