"""Heatmap targets for keypoint training.

A keypoint at sub-pixel position (x, y) in *model input* pixel coordinates becomes a Gaussian
blob on the model's output grid.  Pixel ``[i, j]`` of a heatmap is centred on coordinate
``(x=j, y=i)``: the same convention the decoder's soft-argmax uses (the weighted mean of pixel
indices), so a symmetric target around a sub-pixel point decodes back to that point.

The targets peak at 1.0 exactly on the keypoint (unnormalised Gaussian), which suits a sigmoid
output trained with binary cross-entropy: the decoder reads the sigmoid as a per-pixel
probability and its peak height as the confidence.  :func:`window_centroids` is the
differentiable read-out of a point that the coordinate loss of :mod:`echomeasure.training.loop`
uses (the decoder's local soft-argmax, centred on the true point).
"""

from __future__ import annotations

import numpy as np
import torch


def gaussian_heatmaps(
    points_px: np.ndarray,
    height: int,
    width: int,
    sigma_px: float,
    present: np.ndarray | None = None,
) -> np.ndarray:
    """Render one Gaussian heatmap per keypoint.

    Parameters
    ----------
    points_px : (K, 2) float array
        Keypoints ``(x, y)`` in heatmap pixel coordinates (pixel centres on integers); for
        channels with several points see :func:`multi_peak_heatmaps`.
    height, width : int
        Size of the heatmap grid.
    sigma_px : float
        Standard deviation of the Gaussian, in heatmap pixels.
    present : (K,) bool array, optional
        Channels whose keypoint is absent (False) get an all-zero map.

    Returns
    -------
    (K, height, width) float32 array with values in [0, 1]; each present channel peaks at its
    keypoint (sub-pixel) with value ``exp(-d^2 / 2 sigma^2)``.
    """
    pts = np.asarray(points_px, dtype=np.float64).reshape(-1, 2)
    k = pts.shape[0]
    if present is None:
        present = np.ones(k, dtype=bool)
    ys = np.arange(height, dtype=np.float64)
    xs = np.arange(width, dtype=np.float64)
    out = np.zeros((k, height, width), dtype=np.float32)
    for c in range(k):
        if not present[c] or not np.all(np.isfinite(pts[c])):
            continue
        gx = np.exp(-((xs - pts[c, 0]) ** 2) / (2.0 * sigma_px**2))
        gy = np.exp(-((ys - pts[c, 1]) ** 2) / (2.0 * sigma_px**2))
        out[c] = np.outer(gy, gx).astype(np.float32)
    return out


def multi_peak_heatmaps(
    peaks_px: list[np.ndarray],
    height: int,
    width: int,
    sigma_px: float,
) -> np.ndarray:
    """Render channels that may each hold several keypoints (e.g. one Doppler peak per beat).

    Parameters
    ----------
    peaks_px : list of (M_c, 2) arrays
        For channel ``c`` the ``M_c`` points ``(x, y)`` in heatmap pixels (``M_c`` may be 0).
    height, width : int
        Size of the heatmap grid.
    sigma_px : float
        Standard deviation of each Gaussian, in heatmap pixels.

    Returns
    -------
    (C, height, width) float32 array: the pixel-wise maximum of the blobs of each channel.
    """
    out = np.zeros((len(peaks_px), height, width), dtype=np.float32)
    for c, pts in enumerate(peaks_px):
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        if len(pts):
            blobs = gaussian_heatmaps(pts, height, width, sigma_px)
            out[c] = blobs.max(axis=0)
    return out


def window_centroids(
    logits: torch.Tensor,
    points_px: torch.Tensor,
    window_px: int,
    centres_px: torch.Tensor | None = None,
) -> torch.Tensor:
    """Probability-weighted centroid of the heatmap in a window around each *true* point.

    This is the coordinate-loss read-out for training: when the model is right, its sigmoid
    heatmap is symmetric around the true point and the centroid of a window centred there (the
    local soft-argmax the decoder applies around the peak) equals the point.  Centring on the
    truth rather than on the arg-max handles channels with several peaks (one per Doppler beat).

    Parameters
    ----------
    logits : (B, K, H, W) tensor
        Raw model outputs.
    points_px : (B, K, M, 2) tensor
        True points ``(x, y)`` in heatmap pixels; NaN rows are ignored (their output is NaN).
    window_px : int
        Half-width of the square window, in heatmap pixels.
    centres_px : (B, K, M, 2) tensor, optional
        Centre the windows here instead of on the true points (e.g. on
        :func:`local_peak_centres`, where decoding starts).

    Returns
    -------
    (B, K, M, 2) tensor of centroids ``(x, y)``, differentiable with respect to ``logits``.
    """
    b, k, h, w = logits.shape
    m = points_px.shape[2]
    valid = torch.isfinite(points_px).all(dim=-1)
    centre = torch.nan_to_num(points_px if centres_px is None else centres_px).round().long()
    cx = centre[..., 0].clamp(0, w - 1)
    cy = centre[..., 1].clamp(0, h - 1)
    offs = torch.arange(-window_px, window_px + 1, device=logits.device)
    ys = (cy[..., None] + offs).clamp(0, h - 1)  # (B, K, M, S)
    xs = (cx[..., None] + offs).clamp(0, w - 1)
    s = offs.numel()
    bi = torch.arange(b, device=logits.device).view(b, 1, 1, 1, 1).expand(b, k, m, s, s)
    ki = torch.arange(k, device=logits.device).view(1, k, 1, 1, 1).expand(b, k, m, s, s)
    yy = ys[..., :, None].expand(b, k, m, s, s)
    xx = xs[..., None, :].expand(b, k, m, s, s)
    prob = torch.sigmoid(logits[bi, ki, yy, xx])  # (B, K, M, S, S)
    # clamped indices at the border repeat edge pixels: count each pixel once
    inside_y = ((cy[..., None] + offs) >= 0) & ((cy[..., None] + offs) < h)
    inside_x = ((cx[..., None] + offs) >= 0) & ((cx[..., None] + offs) < w)
    prob = prob * (inside_y[..., :, None] & inside_x[..., None, :])
    total = prob.sum(dim=(-2, -1)).clamp_min(1e-8)
    x = (prob * xx.to(prob.dtype)).sum(dim=(-2, -1)) / total
    y = (prob * yy.to(prob.dtype)).sum(dim=(-2, -1)) / total
    out = torch.stack([x, y], dim=-1)
    return torch.where(valid[..., None], out, torch.full_like(out, float("nan")))


def local_peak_centres(logits: torch.Tensor, points_px: torch.Tensor, search_px: int) -> torch.Tensor:
    """The arg-max pixel of each channel's heatmap within ``search_px`` of each true point.

    This is where the decoder starts its local soft-argmax (the channel's arg-max; for Doppler
    the best row of the beat's columns), so a coordinate loss on the centroid of a window
    centred *here* trains what decoding will actually read.

    Parameters
    ----------
    logits : (B, K, H, W) tensor
    points_px : (B, K, M, 2) tensor, NaN rows ignored
    search_px : int
        Half-width of the square search area.

    Returns
    -------
    (B, K, M, 2) float tensor of integer pixel positions ``(x, y)`` (no gradient; NaN rows kept).
    """
    b, k, h, w = logits.shape
    m = points_px.shape[2]
    with torch.no_grad():
        valid = torch.isfinite(points_px).all(dim=-1)
        centre = torch.nan_to_num(points_px).round().long()
        offs = torch.arange(-search_px, search_px + 1, device=logits.device)
        s = offs.numel()
        ys = (centre[..., 1:2].clamp(0, h - 1) + offs)  # (B, K, M, S)
        xs = (centre[..., 0:1].clamp(0, w - 1) + offs)
        inside = ((ys >= 0) & (ys < h))[..., :, None] & ((xs >= 0) & (xs < w))[..., None, :]
        ysc, xsc = ys.clamp(0, h - 1), xs.clamp(0, w - 1)
        bi = torch.arange(b, device=logits.device).view(b, 1, 1, 1, 1).expand(b, k, m, s, s)
        ki = torch.arange(k, device=logits.device).view(1, k, 1, 1, 1).expand(b, k, m, s, s)
        patch = logits[bi, ki, ysc[..., :, None].expand(b, k, m, s, s), xsc[..., None, :].expand(b, k, m, s, s)]
        patch = patch.masked_fill(~inside, float("-inf")).reshape(b, k, m, s * s)
        best = patch.argmax(dim=-1)
        py = torch.gather(ysc, -1, (best // s).unsqueeze(-1)).squeeze(-1)
        px = torch.gather(xsc, -1, (best % s).unsqueeze(-1)).squeeze(-1)
        out = torch.stack([px, py], dim=-1).to(logits.dtype)
        return torch.where(valid[..., None], out, torch.full_like(out, float("nan")))
