"""The training batch shared by synthetic training and fine-tuning from reviews."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class KeypointBatch:
    """One mini-batch for a heatmap keypoint model, all at model-input resolution.

    Attributes
    ----------
    images : (B, 3, H, W) float32
        Model inputs, already normalised as the model expects.
    heatmaps : (B, K, H, W) float32
        Target heatmaps in [0, 1].
    pixel_weight : (B, K, H, W) float32
        Per-pixel loss weight.  1 where the target is trusted, 0 where it is unknown (e.g. a
        keypoint whose review was rejected contributes only a hard-negative patch around the
        rejected point and nothing elsewhere).
    points_px : (B, K, M, 2) float32
        Keypoint targets ``(x, y)`` in heatmap pixels for the coordinate loss, up to ``M`` per
        channel (2D: M = 1; Doppler: one per beat); NaN where there is no point (absent channel,
        padding, or a point the reviewer rejected).
    """

    images: torch.Tensor
    heatmaps: torch.Tensor
    pixel_weight: torch.Tensor
    points_px: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @staticmethod
    def concat(batches: list[KeypointBatch]) -> KeypointBatch:
        """Stack several batches (e.g. reviews mixed with synthetic replay)."""
        return KeypointBatch(
            images=torch.cat([b.images for b in batches]),
            heatmaps=torch.cat([b.heatmaps for b in batches]),
            pixel_weight=torch.cat([b.pixel_weight for b in batches]),
            points_px=torch.cat([b.points_px for b in batches]),
        )
