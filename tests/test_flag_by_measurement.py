"""The low-confidence flag judged per measurement: a version's flag figures may be measured on each
measurement's held-out proposals alone (``FlagThresholds.by_measurement``), because one model's
confidences are not on one scale across measurements (the shipped plax-linear 2.1's LA calipers,
whose far end the model places alone, are less confident than the others whatever their error:
one pooled quantile flagged 85 % of its good LA calipers on its own style)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from models_fixtures import copy_active_model

from echomeasure.catalog import KEYPOINTS_2D
from echomeasure.models import registry
from echomeasure.models.registry import FlagThresholds, WeightsEntry
from echomeasure.propose import flags
from echomeasure.store.records import MeasurementState
from echomeasure.training import evaluate
from echomeasure.ui import viewmodel

POOLED = {"low_confidence_below": 0.3, "confidence_floor": 0.02, "flagged_mae_ratio": 1.5}
PER = {
    # confidence does not rank LA errors (ratio < 1.2): only below its own floor
    "la": {"low_confidence_below": 0.14, "confidence_floor": 0.05, "flagged_mae_ratio": 0.9},
    "lvidd": {"low_confidence_below": 0.35, "confidence_floor": 0.02, "flagged_mae_ratio": 1.4},
}


def test_each_measurement_is_judged_by_its_own_figures_and_the_others_by_the_pooled_ones():
    metrics = {**POOLED, "by_measurement": PER}
    assert flags.flag_threshold(metrics, measurement="la") == pytest.approx(0.05)  # its floor
    assert flags.flag_threshold(metrics, measurement="lvidd") == pytest.approx(0.35)
    assert flags.flag_threshold(metrics, measurement="ivsd") == pytest.approx(0.3)  # not listed: pooled
    assert flags.flag_threshold(metrics) == pytest.approx(0.3)
    # a measurement whose own figures are unusable falls back to the pooled threshold, not to 0.5
    assert flags.flag_threshold({**POOLED, "by_measurement": {"la": {}}}, measurement="la") == pytest.approx(0.3)


def _entry(thresholds: FlagThresholds) -> WeightsEntry:
    return WeightsEntry(name="plax-linear", version="9.0", arch="deeplabv3_mobilenet_v3_large", input_size=(96, 96),
                        channels=KEYPOINTS_2D, file="plax-linear-9.0.pt", sha256="a" * 64, thresholds=thresholds)


def test_per_measurement_figures_survive_the_manifest(tmp_path):
    registry.register(_entry(FlagThresholds(**POOLED, by_measurement=PER)), weights_dir=tmp_path, verify=False)
    back = registry.get_entry("plax-linear", "9.0", tmp_path)
    assert back.thresholds.by_measurement == PER
    assert back.thresholds.low_confidence_below == pytest.approx(0.3)
    assert flags.entry_threshold(back, measurement="la") == pytest.approx(0.05)
    # an entry without them (every version registered before) keeps its one pooled threshold
    assert FlagThresholds.from_json(POOLED).to_json() == POOLED


def _state(name: str, confidence: float) -> MeasurementState:
    pts = ((10.0, 20.0), (10.0, 60.0))
    return MeasurementState(
        clip_id=1, measurement=name, status="proposed", frame_index=3, points=pts, value=4.0, unit="cm",
        proposal_id=7, proposed_frame_index=3, proposed_points=pts, proposed_value=4.0, proposed_unit="cm",
        pixel_length_px=40.0, confidence=confidence, model_version_id=1, model_name="plax-linear", model_version="9.0",
        proposed_at=None, review_id=None, reviewer=None, reviewed_at=None, seconds_spent=None, n_reviews=0,
    )


def test_the_review_ui_flags_with_the_figures_of_the_measurement(tmp_path):
    registry.register(_entry(FlagThresholds(**POOLED, by_measurement=PER)), weights_dir=tmp_path, verify=False)
    thresholds = viewmodel.RegistryThresholds(tmp_path)
    la = viewmodel.measurement_entry(_state("la", 0.2), thresholds)
    lvidd = viewmodel.measurement_entry(_state("lvidd", 0.2), thresholds)
    ivsd = viewmodel.measurement_entry(_state("ivsd", 0.2), thresholds)
    assert la["low_confidence"] is False and la["low_confidence_below"] == pytest.approx(0.05)
    assert lvidd["low_confidence"] is True and lvidd["low_confidence_below"] == pytest.approx(0.35)
    assert ivsd["low_confidence"] is True and ivsd["low_confidence_below"] == pytest.approx(0.3)
    assert viewmodel.measurement_entry(_state("la", 0.01), thresholds)["low_confidence"] is True  # below its floor


def test_figures_are_measured_per_measurement_only_where_there_are_enough_proposals():
    rng = np.random.default_rng(0)
    conf = {"la": list(rng.uniform(0, 0.3, 40)), "ivsd": list(rng.uniform(0.2, 0.6, 12))}
    err = {"la": list(rng.uniform(0, 10, 40)), "ivsd": list(rng.uniform(0, 10, 12))}
    per = evaluate.flag_by_measurement(conf, err, min_proposals=30)
    assert set(per) == {"la"}
    assert per["la"] == evaluate.confidence_flag(conf["la"], err["la"])
    assert per["la"]["low_confidence_below"] == pytest.approx(np.quantile(conf["la"], evaluate.FLAG_QUANTILE))


def test_measure_flags_each_caliper_by_its_own_measurement_figures(tmp_path, monkeypatch, capsys):
    """End to end through the CLI with the shipped plax-linear: only LA carries a threshold above
    every confidence, so only LA is flagged (with the pooled figures alone nothing would be)."""
    from echomeasure import config
    from echomeasure.cli import main

    weights = tmp_path / "weights"
    weights.mkdir()
    entry = copy_active_model("plax-linear", weights)
    entry["thresholds"] = {"low_confidence_below": 1e-9, "confidence_floor": 0.0, "flagged_mae_ratio": 2.0,
                           "by_measurement": {"la": {"low_confidence_below": 1.01, "flagged_mae_ratio": 2.0}}}
    manifest = json.loads((weights / "manifest.json").read_text())
    manifest["models"] = [entry]
    (weights / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(weights))
    assert main(["measure", "-q", str(config.PROJECT_ROOT / "examples" / "case_0000.dcm")]) == 0
    flagged = {m["name"]: m["flagged"] for m in json.loads(capsys.readouterr().out)["measurements"] if m["confidence"] > 0}
    assert flagged.get("la") is True
    assert len(flagged) >= 4 and not any(v for k, v in flagged.items() if k != "la")


def test_calibrate_flag_records_the_figures_of_a_registered_version(tmp_path, monkeypatch, capsys):
    from echomeasure.training import calibrate_flag

    weights = tmp_path / "weights"
    weights.mkdir()
    entry = copy_active_model("plax-linear", weights)
    monkeypatch.setattr(evaluate, "MIN_FLAG_PROPOSALS", 10)
    assert calibrate_flag.main(["--version", entry["version"], "--cases", "10", "--styles", "classic", "--out",
                                str(weights), "-q"]) == 0
    printed = json.loads(capsys.readouterr().out)
    after = registry.get_entry("plax-linear", entry["version"], weights)
    assert after.sha256 == entry["sha256"] and after.metrics == registry.WeightsEntry.from_json(entry).metrics
    assert set(after.thresholds.by_measurement or {}) == {"ivsd", "lvidd", "lvpwd", "lvids", "aortic_root", "la"}
    assert printed["after"] == after.thresholds.to_json() and printed["before"] == entry["thresholds"]
    assert "--cases 10 --styles classic" in after.extra["flag_calibration"]
    for figures in after.thresholds.by_measurement.values():
        assert 0.0 <= figures["confidence_floor"] <= figures["low_confidence_below"] <= 1.0


def test_calibrate_flag_refuses_in_one_line(tmp_path, capsys):
    from echomeasure.training import calibrate_flag

    weights = tmp_path / "weights"
    weights.mkdir()
    copy_active_model("plax-linear", weights)
    before = (weights / "manifest.json").read_bytes()
    for argv in (["--cases", "3"], ["--version", "no-such", "--cases", "10"], ["--styles", "scatter", "--cases", "10"],
                 # 10 cases in one family: too few proposals per measurement for their own figures (30)
                 ["--styles", "classic", "--cases", "10"]):
        with pytest.raises(SystemExit) as exc:
            calibrate_flag.main([*argv, "--out", str(weights), "-q"])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
    assert (weights / "manifest.json").read_bytes() == before


def test_only_finite_proposals_count_towards_a_measurement_s_own_figures():
    conf = {"la": [0.1] * 25 + [float("nan")] * 10}
    err = {"la": [1.0] * 35}
    assert evaluate.flag_by_measurement(conf, err, min_proposals=30) == {}
    assert set(evaluate.flag_by_measurement(conf, err, min_proposals=25)) == {"la"}


def test_a_manifest_with_malformed_per_measurement_figures_still_reads():
    t = FlagThresholds.from_json({**POOLED, "by_measurement": {"la": 0.3, "lvidd": PER["lvidd"]}})
    assert t.by_measurement == {"lvidd": PER["lvidd"]}
    assert FlagThresholds.from_json({**POOLED, "by_measurement": {"la": "x"}}).by_measurement is None


def test_a_fine_tuned_child_keeps_its_parent_s_per_measurement_figures():
    """A fine-tune's few synthetic hold-out cases cannot measure each measurement's figures: the
    child's pooled figures are its own, its per-measurement ones the parent's."""
    from echomeasure.training.finetune import _measured

    parent = _entry(FlagThresholds(**POOLED, by_measurement=PER))
    after = {"synthetic_holdout": {"mean_mae_mm": 0.5, "low_confidence_below": 0.25, "confidence_floor": 0.01,
                                   "flagged_mae_ratio": 1.3}, "reviews_holdout": {}}
    _, thresholds = _measured(after, parent)
    assert thresholds.low_confidence_below == pytest.approx(0.25)
    assert thresholds.by_measurement == PER


def test_a_doubted_proposal_is_flagged_whatever_its_measurement_s_own_floor():
    """The pipeline doubts a proposal for reasons outside the model (a phase that may lie outside the
    cine, an envelope-only Doppler value) by capping its confidence at DOUBTFUL_CONFIDENCE; LA,
    judged only below its own floor (0.05 here, 0.021 for 2.1), must still be flagged then."""
    metrics = {**POOLED, "by_measurement": {"la": {**PER["la"], "confidence_floor": 0.02}}}
    la_threshold = flags.flag_threshold(metrics, measurement="la")
    assert la_threshold == pytest.approx(0.02)
    assert flags.is_flagged(flags.DOUBTFUL_CONFIDENCE, la_threshold)
    assert not flags.is_flagged(flags.DOUBTFUL_CONFIDENCE + 0.01, la_threshold)
