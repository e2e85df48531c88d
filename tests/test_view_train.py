"""The view classifier's training data: which families each view is rendered in, and seeds."""

from __future__ import annotations

import numpy as np
import pytest

from echomeasure.catalog import VIEWS
from echomeasure.synthetic.styles import DEFAULT_TRAINING_STYLES, HELDOUT_STYLE
from echomeasure.training import view_train


def _styles_by_view(jobs):
    out: dict[str, set[str]] = {}
    for view, _seed, style, _augment in jobs:
        out.setdefault(view, set()).add(style)
    return out


def test_apical_training_clips_come_in_every_training_family_and_never_the_heldout_one():
    jobs = view_train._jobs(6, view_train.TRAIN_SEED0, DEFAULT_TRAINING_STYLES, 1)
    styles = _styles_by_view(jobs)
    for view in view_train.STYLED_VIEWS:
        assert styles[view] == set(DEFAULT_TRAINING_STYLES), view
    assert styles["other"] == {"classic"}
    assert all(style != HELDOUT_STYLE for _v, _s, style, _a in jobs)
    assert [sum(1 for j in jobs if j[0] == v) for v in VIEWS] == [6] * len(VIEWS)


def test_classic_apical_styles_give_the_first_versions_data():
    """``--apical-styles classic``: apical clips in the classic look, the other views unchanged."""
    seed0 = view_train.TRAIN_SEED0
    classic = view_train._jobs(4, seed0, DEFAULT_TRAINING_STYLES, 1, ("classic",))
    styled = view_train._jobs(4, seed0, DEFAULT_TRAINING_STYLES, 1)
    assert _styles_by_view(classic)["a4c"] == _styles_by_view(classic)["a2c"] == {"classic"}
    assert [j for j in classic if j[0] not in ("a4c", "a2c")] == [j for j in styled if j[0] not in ("a4c", "a2c")]
    assert [j[:2] for j in classic] == [j[:2] for j in styled]  # same cases, other looks


def test_training_and_evaluation_never_share_a_case():
    train = {j[1] for j in view_train._jobs(300, view_train.TRAIN_SEED0 + 300, DEFAULT_TRAINING_STYLES, 1)}
    held_out = {j[1] for jobs in view_train._eval_families(50).values() for j in jobs}
    assert len(train) == 300 * len(VIEWS)
    assert not train & held_out
    with pytest.raises(ValueError, match="evaluation seeds"):
        view_train._jobs(10, view_train.EVAL_SEED0 - 100, DEFAULT_TRAINING_STYLES, 1)
    with pytest.raises(ValueError, match="held out"):
        view_train._jobs(10, view_train.TRAIN_SEED0, DEFAULT_TRAINING_STYLES, 1, (HELDOUT_STYLE,))


def test_the_trainer_refuses_the_heldout_family_for_apical_clips(capsys):
    with pytest.raises(SystemExit) as exc:
        view_train.main(["--apical-styles", f"classic,{HELDOUT_STYLE}", "--out", "/nonexistent"])
    assert exc.value.code == 2
    assert "held out" in capsys.readouterr().err


def test_a_training_set_reaching_the_evaluation_seeds_is_refused_with_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        view_train.main(["--seed", str(view_train.EVAL_SEED0 - view_train.TRAIN_SEED0), "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "evaluation" in err[0]
    assert not any(tmp_path.iterdir())  # nothing rendered or registered


def test_a_larger_set_renders_only_its_new_blocks(tmp_path, monkeypatch):
    rendered: list[tuple] = []

    def fake_sample(job):
        rendered.append(job)
        return np.full((3, 64, 64), job[1] % 1000, np.float32)

    monkeypatch.setattr(view_train, "make_sample", fake_sample)
    block = view_train.CACHE_BLOCK
    small = view_train._jobs(block, view_train.TRAIN_SEED0, DEFAULT_TRAINING_STYLES, 1)
    large = view_train._jobs(2 * block, view_train.TRAIN_SEED0, DEFAULT_TRAINING_STYLES, 1)
    x_small, _ = view_train.build_set(small, 1, tmp_path)
    assert rendered == small
    rendered.clear()
    x_large, y_large = view_train.build_set(large, 1, tmp_path)
    assert rendered == [j for j in large if j not in small]
    assert [VIEWS[k] for k in y_large] == [j[0] for j in large]
    assert np.array_equal(x_large[[large.index(j) for j in small]], x_small)
    assert np.array_equal(x_large[:, 0, 0, 0], [j[1] % 1000 for j in large])


def test_gain_augment_brightens_or_darkens_the_grey_channels_and_leaves_colour_alone():
    from echomeasure.training.view_train import GainAugment

    rng = np.random.default_rng(0)
    x = np.stack([np.full((8, 8), 0.2), np.full((8, 8), 0.1), np.full((8, 8), 0.05)]).astype(np.float32)
    outs = [GainAugment(blur_p=0.0)(x, rng) for _ in range(200)]
    means = np.array([o[0].mean() for o in outs])
    assert means.min() < 0.2 < means.max() and means.max() > 0.3  # gains up to 2.2x reach brighter scanners
    assert all(np.array_equal(o[2], x[2]) for o in outs)  # saturation (colour) is not a gain knob
    assert all(((o[0] >= 0) & (o[0] <= 1)).all() for o in outs)
    assert np.array_equal(x[0], np.full((8, 8), 0.2, np.float32))  # the input is not modified

