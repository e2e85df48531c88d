"""plax-seg training: whole-network steps with online augmentation, recorded in the recipe and the entry."""

from __future__ import annotations

import json

import pytest
from models_fixtures import copy_active_model

from echomeasure.training import plax_seg_train


@pytest.mark.slow
def test_more_training_with_online_augmentation_is_recorded(tmp_path):
    entry = copy_active_model("plax-seg", tmp_path)
    report = tmp_path / "report.json"
    code = plax_seg_train.main(["--out", str(tmp_path), "--report", str(report), "--version", "0.1", "--cases", "2",
                                "--eval-cases", "1", "--steps", "2", "--size", "112", "--max-minutes", "0.5",
                                "--finetune-steps", "2", "--continue-from", entry["version"], "--online-augment",
                                "--threads", "1", "--workers", "1"])
    assert code == 0
    new = next(e for e in json.loads((tmp_path / "manifest.json").read_text())["models"] if e["version"] == "0.1")
    assert new["parent"] == f"plax-seg:{entry['version']}"
    assert "--online-augment" in new["recipe"] and f"--continue-from {entry['version']}" in new["recipe"]
    assert set(new["extra"]["online_augment"]) >= {"artefact", "appearance", "intensity", "scale"}
    assert new["extra"]["steps_done"] >= 2  # head steps, then whole-network steps
    metrics = json.loads(report.read_text())["metrics"]
    assert 0.0 <= metrics["own_mean_iou"] <= 1.0 and 0.0 <= metrics["heldout_mean_iou"] <= 1.0
    assert 0.9 < metrics["resolution_ceiling_mean_iou"] <= 1.0  # a size outside the candidates gets its ceiling too


def test_a_seed_whose_training_cases_reach_the_evaluation_cases_is_refused(tmp_path, capsys):
    report = tmp_path / "report.json"
    with pytest.raises(SystemExit) as exit_:
        plax_seg_train.main(["--out", str(tmp_path), "--report", str(report), "--seed", "1", "--cases", "2"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and "reserved for evaluation" in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())  # nothing rendered, nothing written
    seeds = plax_seg_train.training_seeds(2, 320)
    assert seeds.start >= plax_seg_train.EVAL_SEED0 + plax_seg_train.EVAL_SEED_BLOCK


@pytest.mark.parametrize("styles", ["classic,scatter", "classic,nosuch"])
def test_the_held_out_family_and_unknown_families_are_refused_before_anything_is_rendered(tmp_path, capsys, styles):
    with pytest.raises(SystemExit) as exit_:
        plax_seg_train.main(["--out", str(tmp_path), "--report", str(tmp_path / "r.json"), "--styles", styles])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: --styles") and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_named_training_families_are_what_the_training_set_is_rendered_in(monkeypatch):
    seen = []
    monkeypatch.setattr(plax_seg_train, "render_training_case", lambda job: seen.append(job[1]))

    class _Pool:  # the jobs, without worker processes
        def __init__(self, *a):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def map(self, fn, jobs, chunksize=1):
            return [fn(j) for j in jobs]

    monkeypatch.setattr(plax_seg_train, "get_context", lambda kind: type("C", (), {"Pool": _Pool})())
    args = plax_seg_train._parser().parse_args(["--styles", "classic,vendor,rf", "--cases", "6", "--seed", "2"])
    with pytest.raises((TypeError, ValueError)):  # the stub renders nothing to concatenate
        plax_seg_train._training_set(args, 64, plax_seg_train.training_styles(args))
    assert seen == ["classic", "vendor", "rf"] * 2
    assert plax_seg_train.training_styles(plax_seg_train._parser().parse_args([])) == ("classic", "vendor")


def test_both_segmentation_trainers_read_the_same_augmentation_options():
    """plax-seg and apical-seg take --online/--exposure/--bloom-augment from one definition and
    turn them into the same augmentation (exposure and bloom imply online)."""
    from echomeasure.training import apical_seg_train
    from echomeasure.training.augment import segmentation_augment

    for parser in (plax_seg_train._parser(), apical_seg_train._parser()):
        plain = parser.parse_args([])
        assert segmentation_augment(plain.online_augment, plain.exposure_augment, plain.bloom_augment) is None
        args = parser.parse_args(["--bloom-augment"])
        aug = segmentation_augment(args.online_augment, args.exposure_augment, args.bloom_augment, 192)
        assert aug is not None and aug.bloom is not None and aug.exposure is None
        assert aug.bloom_px_per_mm == pytest.approx(192 / 160.0)  # the model px per mm of a 160 mm field
