"""Fine-tuning from reviews: targets, hard negatives, refusal, lineage, and that it learns."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from echomeasure import catalog
from echomeasure.cli import main
from echomeasure.errors import TrainingError
from echomeasure.models import registry
from echomeasure.models.preprocess import Box, CropTransform

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def smoke_weights(tmp_path_factory):
    """A tiny plax-linear base model (trained for a few steps) in its own weights folder."""
    import os

    from echomeasure.training.train import train_model

    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("ECHOMEASURE_CACHE")
    os.environ["ECHOMEASURE_CACHE"] = str(cache)
    try:
        out = tmp_path_factory.mktemp("weights")
        train_model("plax-linear", smoke=True, out=out, progress=False, eval_cases=1)
        yield out, cache
    finally:
        if old is None:
            os.environ.pop("ECHOMEASURE_CACHE", None)
        else:
            os.environ["ECHOMEASURE_CACHE"] = old


@pytest.fixture()
def reviewed_store(smoke_weights, tmp_path, monkeypatch):
    """A store with 3 small PLAX studies ingested with proposals and every proposal corrected to
    the true keypoints (the smoke model is far off, so all are corrections)."""
    from echomeasure.store import open_store
    from echomeasure.training.experiment import build_review_store, leading_edge_convention

    weights, cache = smoke_weights
    monkeypatch.setenv("ECHOMEASURE_CACHE", str(cache))
    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(weights))
    store = open_store(f"sqlite:///{tmp_path / 'r.sqlite'}", images_dir=tmp_path / "images")
    counts = build_review_store(store, tmp_path, [9_500_100, 9_500_101, 9_500_102], leading_edge_convention(0.0),
                                small=True, progress=False)
    assert counts["clips"] == 3 and counts["corrected"] > 0
    yield store, weights
    store.close()


def test_review_batch_learns_reviewed_keypoints_and_only_a_disc_around_rejected_points():
    from echomeasure.training.finetune import ReviewSample, ReviewTrainingSet

    k = len(catalog.KEYPOINTS_2D)
    targets = np.full((k, 1, 2), np.nan, np.float32)
    targets[1, 0] = (20.0, 30.0)  # a corrected septum_lv
    sample = ReviewSample(
        clip_id=1, frame_index=0, image=np.full((64, 64, 3), 80, np.uint8), targets=targets,
        negatives=[(4, 40.0, 10.0)],  # a rejected ao_anterior proposal
        transform=CropTransform(Box(0, 0, 63, 63), (64, 64)), regions=(),
        frame_image=np.zeros((64, 64, 3), np.uint8), measurements={},
    )
    b = ReviewTrainingSet([sample], sigma_px=3.0, augment=None).batch(np.random.default_rng(0), 1)
    w, h = b.pixel_weight[0], b.heatmaps[0]
    assert torch.all(w[1] == 1) and h[1, 30, 20] == pytest.approx(1.0)
    assert torch.all(w[[0, 2, 3, 5, 6, 7]] == 0), "unreviewed keypoints must carry no loss"
    assert w[4, 10, 40] == 1 and w[4, 10, 40 + 7] == 0 and w[4].sum() < 0.05 * 64 * 64
    assert torch.all(h[4] == 0), "a rejected point is a negative, never a target"
    assert torch.isnan(b.points_px[0, 4]).all()


def test_finetune_refuses_with_too_few_reviews(reviewed_store):
    from echomeasure.training.finetune import finetune

    store, weights = reviewed_store
    with pytest.raises(TrainingError, match="reviewed 2d frame"):
        finetune(store=store, weights_dir=weights, min_frames=100, progress=False)


def test_cli_finetune_on_an_empty_store_exits_2_with_what_to_do(smoke_weights, tmp_path, capsys):
    weights, _ = smoke_weights
    rc = main(["finetune", "--db", f"sqlite:///{tmp_path / 'empty.sqlite'}", "--out", str(weights), "-q"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: only 0 reviewed 2d frame(s)") and "review more clips" in err
    assert len(registry.list_entries(weights)) == 1


@pytest.mark.slow  # ~30 s on an idle core: ingest 3 studies, 40 fine-tuning steps, 2 evaluations
def test_finetune_registers_child_version_whose_proposals_move_toward_corrections(reviewed_store):
    from echomeasure.propose import propose
    from echomeasure.training.finetune import finetune, load_review_samples, review_errors

    store, weights = reviewed_store
    parent = registry.get_entry("plax-linear", None, weights)
    samples = load_review_samples(store, parent)
    # ED frames carry ivsd/lvidd/lvpwd/aortic_root (6 keypoints), ES frames lvids/la (4)
    assert len(samples) == 6 and all(s.trusted.sum() >= 4 for s in samples)

    def err(version):
        fn = partial(propose, model_versions={"plax-linear": version}, weights_dir=weights, backend="torch")
        return review_errors(fn, samples, "2d")["endpoint_mae_mm"]

    before = err(parent.version)
    # reviews only (no replay) so that a few dozen steps on 6 frames show the pull of the reviews
    outcome = finetune(store=store, weights_dir=weights, min_frames=4, holdout_fraction=0.0, epochs=30,
                       synthetic_eval_cases=0, replay_cases=2, replay_fraction=0.0, max_steps=80, lr=2e-3,
                       batch_size=4,
                       activate="no", progress=False)
    e = outcome.entry
    assert e.parent == parent.version and e.version == f"{parent.version}-ft1"
    assert e.sha256 == registry.sha256_file(weights / e.file)
    assert registry.load_model("plax-linear", e.version, weights).sha256 == e.sha256
    assert registry.active_version("plax-linear", weights) == parent.version  # activate="no"
    assert e.extra["finetune"]["train_frames"] == 6
    assert e.recipe.startswith("echomeasure finetune --base plax-linear")

    versions = {v.version: v for v in store.model_versions("plax-linear")}
    assert versions[e.version].parent_id == versions[parent.version].id
    assert versions[e.version].sha256 == e.sha256

    after = err(e.version)
    assert after < 0.8 * before, (before, after)
