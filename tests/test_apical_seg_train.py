"""apical-seg training options: style families of the training data, and fine-tuning a registered version."""

from __future__ import annotations

import json
import shutil

import pytest

from echomeasure import config
from echomeasure.training import apical_seg_train


def test_the_held_out_style_family_is_refused_for_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        apical_seg_train.main(["--out", str(tmp_path), "--styles", "classic,scatter", "--cases", "2"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and "held out of training" in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())  # nothing rendered, nothing written


@pytest.mark.slow
def test_a_fine_tuned_version_records_its_parent_styles_and_recipe(tmp_path):
    weights = config.weights_dir()
    manifest = json.loads((weights / "manifest.json").read_text())
    entry = next(e for e in manifest["models"] if e["name"] == "apical-seg" and e["version"] == "1.0")
    shutil.copy(weights / entry["file"], tmp_path / entry["file"])
    (tmp_path / "manifest.json").write_text(json.dumps({"format": manifest["format"], "active": {"apical-seg": "1.0"},
                                                        "models": [entry]}))
    code = apical_seg_train.main(["--out", str(tmp_path), "--report", str(tmp_path / "report"), "--version", "0.1",
                                  "--cases", "4", "--eval-cases", "2", "--steps", "2", "--init-from", "1.0",
                                  "--styles", "classic,vendor", "--max-lr", "1e-4", "--workers", "1", "--online-augment",
                                  "--exposure-augment", "--bloom-augment"])
    assert code == 0
    new = next(e for e in json.loads((tmp_path / "manifest.json").read_text())["models"] if e["version"] == "0.1")
    assert new["parent"] == "1.0"
    assert "--styles classic,vendor --init-from 1.0" in new["recipe"] and "classic+vendor" in new["trained_on"]
    assert new["recipe"].endswith(" --online-augment --exposure-augment --bloom-augment")
    assert "artefact" in new["extra"]["online_augment"] and new["extra"]["online_augment"]["exposure"]["gain"] == [0.7, 2.5]
    # the PSF bloom is recorded with its scale at this input size (128 px over a nominal 160 mm field)
    assert new["extra"]["online_augment"]["bloom"]["psf_axial_mm"] == [0.2, 0.9]
    assert new["extra"]["online_augment"]["bloom_px_per_mm"] == pytest.approx(0.8)
    # two steps at a small rate from 1.0: still a working LV segmentation
    assert new["metrics"]["own-style"]["dice_lv"] > 0.8


def test_a_seed_whose_training_cases_reach_the_evaluation_cases_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        apical_seg_train.main(["--out", str(tmp_path), "--seed", "10", "--cases", "2"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and "reserved for" in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())
