"""An oracle in place of the keypoint network, for the propose tests.

``OracleRunner`` returns heatmap logits with Gaussian blobs at given points (the synthetic ground
truth) for the frames it is fed, so a test checks everything around the model (cropping,
coordinate mapping, decoding, smoothing, calibration) without trained weights; ``with_oracle``
makes ``propose`` use it for one model name.
"""

from __future__ import annotations

import numpy as np
import torch

from echomeasure.models.preprocess import CropTransform
from echomeasure.propose import engine as engine_mod

SIGMA = 2.0


def gaussian_logits(points_model: np.ndarray, h: int, w: int, present: np.ndarray | None = None) -> torch.Tensor:
    """(C, H, W) logits with one or several Gaussian blobs per channel (points: list per channel)."""
    ys, xs = np.mgrid[0:h, 0:w]
    out = np.full((len(points_model), h, w), 1e-4)
    for c, pts in enumerate(points_model):
        for x, y in np.asarray(pts, dtype=float).reshape(-1, 2):
            out[c] = np.maximum(out[c], 0.95 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * SIGMA**2)))
    return torch.logit(torch.from_numpy(out).float())


class OracleRunner:
    """Stands in for the network: heatmaps at the true keypoints of the frames it is fed, in order."""

    def __init__(self, transform: CropTransform, keypoints_per_frame: list[list[np.ndarray]]):
        self.transform = transform
        self.truth = keypoints_per_frame
        self.next = 0
        self.backend = "oracle"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.transform.input_size
        maps = []
        for _ in range(x.shape[0]):
            pts = [self.transform.to_model(np.asarray(p, dtype=float).reshape(-1, 2)) for p in self.truth[self.next]]
            maps.append(gaussian_logits(pts, h, w))
            self.next += 1
        return torch.stack(maps)


def with_oracle(monkeypatch, name: str, make_runner):
    """Make ``propose`` run ``make_runner(entry)`` in place of the network of model ``name``."""
    real = engine_mod.get_engine

    def fake(n, version=None, **kw):
        eng = real(n, version, **kw)
        return engine_mod.Engine(eng.entry, make_runner(eng.entry)) if n == name else eng

    monkeypatch.setattr(engine_mod, "get_engine", fake)
