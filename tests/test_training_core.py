"""Heatmap targets, the optimisation loop and the error metrics, on tiny fake data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from echomeasure.training.batch import KeypointBatch
from echomeasure.training.heatmaps import gaussian_heatmaps, multi_peak_heatmaps, window_centroids
from echomeasure.training.loop import OptimRecipe, lr_at, run_optimisation
from echomeasure.training.metrics import spearman, summarise

torch.set_num_threads(1)


def _weighted_centre(h: np.ndarray) -> tuple[float, float]:
    ys, xs = np.mgrid[0 : h.shape[0], 0 : h.shape[1]]
    return float((h * xs).sum() / h.sum()), float((h * ys).sum() / h.sum())


def test_heatmap_target_peaks_at_subpixel_keypoint():
    pts = np.array([[10.3, 20.7], [31.75, 8.25]])
    maps = gaussian_heatmaps(pts, 40, 48, sigma_px=2.0)
    assert maps.shape == (2, 40, 48) and maps.dtype == np.float32
    for c in range(2):
        iy, ix = np.unravel_index(maps[c].argmax(), maps[c].shape)
        assert (ix, iy) == (round(pts[c, 0]), round(pts[c, 1]))
        cx, cy = _weighted_centre(maps[c])
        assert abs(cx - pts[c, 0]) < 0.01 and abs(cy - pts[c, 1]) < 0.01
        assert maps[c].max() <= 1.0 and maps[c].max() > 0.8


def test_absent_keypoint_gives_empty_heatmap():
    maps = gaussian_heatmaps(np.array([[5.0, 5.0], [6.0, 6.0]]), 16, 16, 1.5, present=np.array([True, False]))
    assert maps[0].max() > 0.9 and maps[1].max() == 0.0


def test_multi_peak_heatmap_has_one_blob_per_peak():
    maps = multi_peak_heatmaps([np.array([[5.0, 8.0], [25.0, 9.0]]), np.zeros((0, 2))], 20, 32, 1.5)
    assert maps[1].max() == 0.0
    assert maps[0][8, 5] == pytest.approx(1.0) and maps[0][9, 25] == pytest.approx(1.0)
    assert maps[0][8, 15] < 1e-6


def test_learning_rate_warms_up_then_decays():
    r = OptimRecipe(steps=100, warmup_steps=10, lr=1e-3)
    assert lr_at(0, r) < lr_at(9, r) == pytest.approx(1e-3)
    assert lr_at(50, r) < 1e-3 and lr_at(99, r) < lr_at(50, r)


class _TinyNet(torch.nn.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(8, k, 3, padding=1),
        )

    def forward(self, x):
        return {"out": self.body(x)}


def _blob_batches(rng: np.random.Generator, b: int) -> KeypointBatch:
    size = 16
    pts = rng.uniform(3, size - 4, size=(b, 1, 2))
    imgs = np.stack([gaussian_heatmaps(p, size, size, 1.0) for p in pts])  # bright dot at the point
    imgs = np.repeat(imgs, 3, axis=1)
    heat = np.stack([gaussian_heatmaps(p, size, size, 1.0) for p in pts])
    return KeypointBatch(
        images=torch.tensor(imgs), heatmaps=torch.tensor(heat),
        pixel_weight=torch.ones_like(torch.tensor(heat)),
        points_px=torch.tensor(pts, dtype=torch.float32)[:, :, None, :],
    )


def test_training_loop_lowers_loss_on_tiny_set(tmp_path):
    torch.manual_seed(0)
    model = _TinyNet(1)
    recipe = OptimRecipe(steps=60, batch_size=4, lr=1e-2, warmup_steps=5, seed=3)
    res = run_optimisation(model, _blob_batches, recipe, checkpoint=tmp_path / "ck.pt", progress=False)
    assert res.steps_done == 60 and len(res.losses) == 60
    assert np.mean(res.losses[-10:]) < 0.5 * np.mean(res.losses[:5])


def test_training_resumes_from_checkpoint_to_same_weights(tmp_path):
    recipe = OptimRecipe(steps=12, batch_size=2, lr=5e-3, warmup_steps=2, seed=1)
    torch.manual_seed(0)
    full = _TinyNet(1)
    run_optimisation(full, _blob_batches, recipe, progress=False)

    torch.manual_seed(0)
    part = _TinyNet(1)
    ck = tmp_path / "ck.pt"
    first = run_optimisation(part, _blob_batches, recipe, checkpoint=ck, checkpoint_every=4,
                             max_wall_s=0.0, progress=False)
    assert first.steps_done < 12
    torch.manual_seed(99)  # a fresh process would start from other random weights
    resumed = _TinyNet(1)
    second = run_optimisation(resumed, _blob_batches, recipe, checkpoint=ck, progress=False)
    assert second.resumed_from == first.steps_done and second.steps_done == 12
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_summary_reports_mae_bias_percent_and_within_1mm():
    s = summarise("lvidd", "mm", predicted=[50.5, 49.0, 52.0], truth=[50.0, 50.0, 50.0])
    assert s.mae == pytest.approx((0.5 + 1.0 + 2.0) / 3)
    assert s.bias == pytest.approx((0.5 - 1.0 + 2.0) / 3)
    assert s.mape_pct == pytest.approx(s.mae / 50 * 100)
    assert s.within_1mm_pct == pytest.approx(200 / 3)


def test_spearman_negative_when_confidence_ranks_errors():
    assert spearman([0.9, 0.8, 0.5, 0.2], [0.1, 0.2, 0.6, 1.5]) == pytest.approx(-1.0)
    assert spearman([0.5, 0.5, 0.5], [0.1, 0.2, 0.3]) is None


def test_window_centroids_read_each_peak_of_a_multi_peak_channel():
    peaks = np.array([[6.3, 10.6], [22.7, 12.2]])
    target = multi_peak_heatmaps([peaks], 24, 32, 1.2)[0]
    prob = torch.tensor(np.clip(target, 1e-6, 1 - 1e-6))
    logits = torch.log(prob / (1 - prob)).view(1, 1, 24, 32)
    pts = torch.tensor(np.concatenate([peaks, [[np.nan, np.nan]]]), dtype=torch.float32).view(1, 1, 3, 2)
    got = window_centroids(logits, pts, window_px=4)
    assert torch.allclose(got[0, 0, :2], pts[0, 0, :2], atol=0.03)
    assert torch.isnan(got[0, 0, 2]).all()


def test_local_peak_centres_find_the_heatmap_peak_near_each_true_point():
    from echomeasure.training.heatmaps import local_peak_centres

    maps = multi_peak_heatmaps([np.array([[10.0, 12.0], [40.0, 8.0]])], 24, 48, 1.5)
    logits = torch.tensor(maps).view(1, 1, 24, 48)
    truth = torch.tensor([[[[13.4, 10.2], [37.0, 9.0]]]], dtype=torch.float32)  # a few px off each peak
    got = local_peak_centres(logits, truth, search_px=5)
    assert got[0, 0].tolist() == [[10.0, 12.0], [40.0, 8.0]]
    ctr = window_centroids(logits, truth, 3, centres_px=got)
    assert torch.allclose(ctr[0, 0], torch.tensor([[10.0, 12.0], [40.0, 8.0]]), atol=0.02)


def test_spearman_matches_the_textbook_value_with_ties():
    # ranks c: 1, 2.5, 2.5, 4 ; e: 4, 3, 1, 2  -> Pearson of ranks
    rc = np.array([1, 2.5, 2.5, 4.0])
    re = np.array([4, 3, 1, 2.0])
    expected = np.corrcoef(rc, re)[0, 1]
    assert spearman([0.1, 0.5, 0.5, 0.9], [4.0, 3.0, 1.0, 2.0]) == pytest.approx(expected)
