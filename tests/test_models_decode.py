"""Heatmap decoding: sub-pixel local soft-argmax, confidence, per-beat Doppler peaks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from echomeasure.models.decode import decode_doppler_peaks, decode_keypoints, global_soft_argmax


def gaussian(h: int, w: int, x: float, y: float, sigma: float, amplitude: float = 1.0) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w]
    return amplitude * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2.0 * sigma**2))


def logits_of(p: np.ndarray) -> torch.Tensor:
    return torch.logit(torch.from_numpy(np.clip(p, 1e-6, 1 - 1e-6)).float())


@pytest.mark.parametrize("seed", range(5))
def test_decode_gaussian_at_subpixel_location_within_005_px(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(8.0, 56.0, size=2)
    heat = 0.97 * gaussian(64, 80, x, y, 2.0) + 0.002
    decoded = decode_keypoints(logits_of(heat)[None, None], sigma_px=2.0)
    assert decoded.points_xy.shape == (1, 1, 2)
    assert np.abs(decoded.points_xy[0, 0] - [x, y]).max() < 0.05


def test_decode_gaussian_near_the_border_stays_close():
    heat = 0.97 * gaussian(48, 48, 1.3, 46.2, 2.0)
    decoded = decode_keypoints(logits_of(heat)[None, None], sigma_px=2.0)
    assert np.abs(decoded.points_xy[0, 0] - [1.3, 46.2]).max() < 0.5


def test_far_blob_does_not_drag_the_point_unlike_global_soft_argmax():
    heat = 0.97 * gaussian(96, 96, 20.4, 30.6, 2.0) + 0.9 * gaussian(96, 96, 80.0, 75.0, 2.0)
    logits = logits_of(heat)[None, None]
    local = decode_keypoints(logits, sigma_px=2.0).points_xy[0, 0]
    anchor = global_soft_argmax(logits)[0, 0]
    assert np.abs(local - [20.4, 30.6]).max() < 0.05
    assert np.abs(anchor - [20.4, 30.6]).max() > 5.0


def test_confidence_lower_for_blurred_flat_or_ambiguous_map():
    sharp = 0.97 * gaussian(64, 64, 30.0, 30.0, 2.0)
    blurred = 0.97 * gaussian(64, 64, 30.0, 30.0, 7.0)
    flat = np.full((64, 64), 0.3)
    flat[30, 30] = 0.32
    ambiguous = sharp + 0.95 * gaussian(64, 64, 5.0, 55.0, 2.0)
    maps = np.stack([sharp, blurred, flat, np.clip(ambiguous, 0, 0.99)])[:, None]
    conf = decode_keypoints(logits_of(maps), sigma_px=2.0).confidence[:, 0]
    assert conf[0] > 0.8
    assert conf[1] < 0.5 * conf[0]
    assert conf[2] < 0.1
    assert conf[3] < 0.2


def test_decode_keypoints_batch_and_channels_independent():
    heat = np.stack(
        [
            np.stack([0.9 * gaussian(40, 40, 10.25, 12.5, 2), 0.9 * gaussian(40, 40, 30.0, 5.75, 2)]),
            np.stack([0.9 * gaussian(40, 40, 20.0, 20.0, 2), 0.9 * gaussian(40, 40, 3.5, 33.0, 2)]),
        ]
    )
    pts = decode_keypoints(logits_of(heat), sigma_px=2.0).points_xy
    expected = np.array([[[10.25, 12.5], [30.0, 5.75]], [[20.0, 20.0], [3.5, 33.0]]])
    assert np.abs(pts - expected).max() < 0.05


def test_doppler_one_peak_per_beat_subpixel_and_suppressed_neighbours():
    h, w = 64, 256
    beats = [(30.3, 20.6), (95.7, 21.2), (160.1, 19.9), (224.8, 20.4)]
    heat = sum(0.95 * gaussian(h, w, x, y, 2.0) for x, y in beats)
    # a weaker peak 15 px after the first beat (closer than a beat) must be suppressed
    heat = heat + 0.6 * gaussian(h, w, 45.0, 30.0, 2.0)
    other = np.zeros((h, w))  # a channel with no peaks at all
    logits = logits_of(np.stack([heat, other]).clip(0, 0.99))
    peaks = decode_doppler_peaks(logits, min_spacing_px=40.0, sigma_px=2.0)
    assert len(peaks) == 2
    assert peaks[1] == []
    assert len(peaks[0]) == 4
    for peak, (x, y) in zip(peaks[0], beats, strict=True):
        assert abs(peak.x - x) < 0.3 and abs(peak.y - y) < 0.1
        assert 0.5 < peak.confidence <= 1.0
