"""Heatmap decoding: sub-pixel keypoints with a confidence, and per-beat Doppler peaks.

Better than the anchor (docs/domain.md section 2), which takes a soft-argmax over the *whole* map
(one far-away blob drags the point), truncates to int and gives no confidence:

* **Local soft-argmax.**  Start at the argmax and iterate a soft-argmax over a square window
  of half-width ``window_px`` *centred on the current estimate* (edge pixels weighted by their
  fractional overlap with the window).  The fixed point of this iteration is the centre of
  symmetry of the peak, so a Gaussian (or any symmetric) blob decodes exactly, with or
  without a constant background; anything outside the window has no influence.
* **Confidence** = peak probability x sharpness x distinctness, each in [0, 1]:
  peak probability ``sigmoid(max logit)``; sharpness ``(1 - ring/peak) / (1 - exp(-2))`` where
  ``ring`` is the mean probability at distance ``2 sigma`` from the peak (1 for a blob as
  sharp as the training target, lower for a blurred or flat one); distinctness
  ``1 - second/peak`` with ``second`` the highest probability outside ``3 sigma + window``
  (0 when another location is as likely).
* **Doppler**: one peak per beat: the column profile of each channel (max over rows) is
  searched for local maxima at least ``min_spacing_px`` apart (non-maximum suppression along
  x), above ``min_probability``; each is refined sub-pixel as above.

Pure numpy (torch tensors are accepted and converted), so the ONNX Runtime inference path
never needs to import torch.

All coordinates here are heatmap (= model input) pixels, pixel ``[i, j]`` centred on
``(x=j, y=i)``; :class:`echomeasure.models.preprocess.CropTransform` maps them to the image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Default heatmap Gaussian sigma (model pixels) when a weights entry does not say.
DEFAULT_SIGMA_PX = 2.0
#: Default distance (model pixels) decoding may move a point from the arg-max.
DEFAULT_MAX_SHIFT_PX = 1.5
_MAX_ITERATIONS = 12
_TOLERANCE_PX = 1e-4


@dataclass(frozen=True)
class DecodeSettings:
    """How one weights version's heatmaps become points: part of its registry entry.

    Attributes
    ----------
    sigma_px
        Sigma of the Gaussian targets the model was trained on (model pixels); the decoder's
        window is ``2.5 * sigma_px`` and its confidence rings scale with it.
    max_shift_px
        How far the local soft-argmax may move a point from the arg-max (model pixels); a model
        with a coarse output lattice needs more than the default.
    edge_offsets_mm
        Keypoint -> a site's caliper convention, applied after edge refinement (mm along the
        caliper line, :func:`echomeasure.propose.edges.apply_edge_offsets`); empty: the ASE
        tissue-blood interfaces.
    """

    sigma_px: float = DEFAULT_SIGMA_PX
    max_shift_px: float = DEFAULT_MAX_SHIFT_PX
    edge_offsets_mm: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma_px", float(self.sigma_px))
        object.__setattr__(self, "max_shift_px", float(self.max_shift_px))
        object.__setattr__(self, "edge_offsets_mm", {str(k): float(v) for k, v in dict(self.edge_offsets_mm).items()})
        if not (math.isfinite(self.sigma_px) and self.sigma_px > 0):
            raise ValueError(f"decode sigma_px must be a positive number, got {self.sigma_px}")
        if not (math.isfinite(self.max_shift_px) and self.max_shift_px >= 0):
            raise ValueError(f"decode max_shift_px must be a number >= 0, got {self.max_shift_px}")
        if not all(math.isfinite(v) for v in self.edge_offsets_mm.values()):
            raise ValueError("decode edge_offsets_mm must be finite numbers")

    def to_json(self) -> dict[str, Any]:
        """The manifest form."""
        return {"sigma_px": self.sigma_px, "max_shift_px": self.max_shift_px,
                "edge_offsets_mm": dict(self.edge_offsets_mm)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DecodeSettings:
        """Build settings from their manifest form; absent keys take the defaults."""
        kwargs = {k: d[k] for k in ("sigma_px", "max_shift_px") if d.get(k) is not None}
        return cls(**kwargs, edge_offsets_mm=dict(d.get("edge_offsets_mm") or {}))


@dataclass(frozen=True)
class DecodedPoints:
    """Keypoints decoded from a batch of heatmaps.

    Attributes
    ----------
    points_xy : (N, C, 2) float64
        Sub-pixel ``(x, y)`` in heatmap pixels.
    confidence : (N, C) float64
        In [0, 1]; see the module docstring.
    peak_probability : (N, C) float64
        ``sigmoid`` of the highest logit.
    """

    points_xy: np.ndarray
    confidence: np.ndarray
    peak_probability: np.ndarray


@dataclass(frozen=True)
class DopplerPeak:
    """One per-beat peak of one Doppler channel, in heatmap pixels."""

    x: float
    y: float
    confidence: float
    probability: float


def _as_array(heatmaps: Any) -> np.ndarray:
    """float32 numpy view of a numpy array or a (CPU) torch tensor, without importing torch."""
    if hasattr(heatmaps, "detach"):
        heatmaps = heatmaps.detach().cpu().numpy()
    return np.asarray(heatmaps, dtype=np.float32)


def _sigmoid(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return (0.5 * (1.0 + np.tanh(0.5 * v))).astype(np.float32)  # stable for large |v|


def _overlap(pixel: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Length of the overlap of pixel cells ``[p - 0.5, p + 0.5]`` with ``[lo, hi]``."""
    return np.clip(np.minimum(pixel + 0.5, hi) - np.maximum(pixel - 0.5, lo), 0.0, 1.0)


def _refine(
    maps: np.ndarray, start_x: np.ndarray, start_y: np.ndarray, window_px: float,
    max_shift_px: float = 1.5, *, logits: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Iterated windowed soft-argmax on maps (M, H, W) starting at integer peaks.

    ``logits``: the maps are logits; the sigmoid is applied to the gathered patches only (the
    full maps are never converted, which keeps decoding cheap for a whole clip).
    """
    m, h, w = maps.shape
    # patch half-size: room for the window to move max_shift_px (1.5 px by default; more for a
    # coarse output-stride-16 network whose arg-max can only sit on its 16-px sample lattice)
    half = int(math.ceil(window_px + max(0.0, max_shift_px - 1.5))) + 2
    offs = np.arange(-half, half + 1)
    sx = np.rint(start_x).astype(np.int64)
    sy = np.rint(start_y).astype(np.int64)
    ix = sx[:, None] + offs[None, :]  # (M, size) image columns
    iy = sy[:, None] + offs[None, :]
    valid = ((iy >= 0) & (iy < h))[:, :, None] & ((ix >= 0) & (ix < w))[:, None, :]
    # rows first (contiguous copies), then the columns of those rows
    band = maps[np.arange(m)[:, None], np.clip(iy, 0, h - 1)]  # (M, size, W)
    rows = np.take_along_axis(band, np.clip(ix, 0, w - 1)[:, None, :], axis=2)  # (M, size, size)
    if logits:
        rows = _sigmoid(rows)
    # pixels outside the image carry no weight
    rows = (rows * valid).astype(np.float64)
    px = ix.astype(np.float64)  # pixel centre coordinates (M, size)
    py = iy.astype(np.float64)
    cx, cy = np.asarray(start_x, np.float64).copy(), np.asarray(start_y, np.float64).copy()
    lo_x, hi_x = sx - max_shift_px, sx + max_shift_px
    lo_y, hi_y = sy - max_shift_px, sy + max_shift_px
    for _ in range(_MAX_ITERATIONS):
        # near the image border the window shrinks symmetrically so that it never reaches past
        # the edge: a truncated window would bias the point inwards
        hx = np.maximum(np.minimum(np.minimum(cx + 0.5, (w - 1) - cx + 0.5), window_px), 0.5)
        hy = np.maximum(np.minimum(np.minimum(cy + 0.5, (h - 1) - cy + 0.5), window_px), 0.5)
        wx = _overlap(px, (cx - hx)[:, None], (cx + hx)[:, None])  # (M, size)
        wy = _overlap(py, (cy - hy)[:, None], (cy + hy)[:, None])
        # separable window: column and row marginals of rows * (wy outer wx)
        col_marg = np.einsum("mi,mij->mj", wy, rows) * wx  # (M, size)
        row_marg = np.einsum("mij,mj->mi", rows, wx) * wy  # (M, size)
        total = np.maximum(col_marg.sum(axis=1), 1e-12)
        nx = np.clip((col_marg * px).sum(axis=1) / total, lo_x, hi_x)
        ny = np.clip((row_marg * py).sum(axis=1) / total, lo_y, hi_y)
        moved = float(np.max(np.maximum(np.abs(nx - cx), np.abs(ny - cy)), initial=0.0))
        cx, cy = nx, ny
        if moved < _TOLERANCE_PX:
            break
    return cx, cy


def _best_outside_box(
    maps: np.ndarray, x0: np.ndarray, y0: np.ndarray, half: int, row_max: np.ndarray | None = None
) -> np.ndarray:
    """Per map, the highest value outside the square ``|x - x0| <= half, |y - y0| <= half``.

    Two reductions instead of a full-size mask: rows outside the box's row band, and the
    columns outside the box within the band.  ``-inf`` when nothing lies outside.
    """
    m, h, w = maps.shape
    xi = np.rint(x0).astype(np.int64)
    yi = np.rint(y0).astype(np.int64)
    if row_max is None:
        row_max = maps.max(axis=2)  # (M, H)
    in_band = np.abs(np.arange(h)[None, :] - yi[:, None]) <= half
    outside_rows = np.where(in_band, -np.inf, row_max).max(axis=1)
    band_rows = yi[:, None] + np.arange(-half, half + 1)[None, :]  # (M, B)
    band_valid = (band_rows >= 0) & (band_rows < h)
    band = maps[np.arange(m)[:, None], np.clip(band_rows, 0, h - 1)]  # (M, B, W)
    in_box_cols = np.abs(np.arange(w)[None, :] - xi[:, None]) <= half  # (M, W)
    mask = (~band_valid)[:, :, None] | in_box_cols[:, None, :]
    outside_cols = np.where(mask, -np.inf, band).max(axis=(1, 2))
    return np.maximum(outside_rows, outside_cols)


def _sample(maps: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Map value at integer pixels (clamped to the map) for each map."""
    m, h, w = maps.shape
    xi = np.clip(np.rint(x).astype(np.int64), 0, w - 1)
    yi = np.clip(np.rint(y).astype(np.int64), 0, h - 1)
    return maps[np.arange(m), yi, xi]


def decode_keypoints(
    logits: Any,
    *,
    sigma_px: float = DEFAULT_SIGMA_PX,
    window_px: float | None = None,
    probabilities: bool = False,
    max_shift_px: float = 1.5,
) -> DecodedPoints:
    """Decode one keypoint per channel from heatmap logits, sub-pixel, with a confidence.

    Parameters
    ----------
    logits
        ``(N, C, H, W)`` (or ``(C, H, W)``) heatmap logits as the model outputs them (numpy
        array or torch tensor).
    sigma_px
        Sigma of the training target Gaussian, heatmap pixels (sets the sharpness reference
        and the default window).
    window_px
        Half-width of the soft-argmax window; default ``2.5 * sigma_px``.
    probabilities
        The input is already probabilities in [0, 1] (no sigmoid applied).
    max_shift_px
        How far the refined point may move from the arg-max pixel.  1.5 suits a heatmap with
        full-resolution peaks; an output-stride-16 DeepLabV3 places its arg-max on a 16-px
        lattice, so its weights entry records a larger value (``extra["max_shift_px"]``).

    Returns
    -------
    DecodedPoints
    """
    t = _as_array(logits)
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4:
        raise ValueError(f"heatmaps must be (N, C, H, W), got {tuple(t.shape)}")
    n, c, h, w = t.shape
    window = float(window_px) if window_px is not None else 2.5 * sigma_px
    # everything is computed on the raw maps (sigmoid is monotonic) and only the few values
    # needed are converted: the full maps of a whole clip are never passed through a sigmoid
    maps = t.reshape(n * c, h, w)
    to_prob = (lambda v: np.clip(v, 0.0, 1.0)) if probabilities else _sigmoid
    # one pass over the maps: the row maxima give the peak row (and serve distinctness below)
    row_max = maps.max(axis=2)  # (M, H)
    y_idx = row_max.argmax(axis=1)
    peak_raw = row_max[np.arange(n * c), y_idx]
    x_idx = maps[np.arange(n * c), y_idx].argmax(axis=1)
    peak = to_prob(peak_raw).astype(np.float64)
    y0 = y_idx.astype(np.float64)
    x0 = x_idx.astype(np.float64)
    x, y = _refine(maps, x0, y0, window, max_shift_px, logits=not probabilities)

    # sharpness: probability on a ring at 2 sigma around the peak relative to the peak
    d = max(1.0, 2.0 * sigma_px)
    ring = np.mean(
        [to_prob(_sample(maps, x0 + dx, y0 + dy)) for dx, dy in ((d, 0), (-d, 0), (0, d), (0, -d))], axis=0
    ).astype(np.float64)
    safe_peak = np.maximum(peak, 1e-6)
    sharpness = np.clip((1.0 - ring / safe_peak) / (1.0 - math.exp(-2.0)), 0.0, 1.0)

    # distinctness: the best competitor outside the peak's neighbourhood
    exclusion = int(math.ceil(3.0 * sigma_px + window))
    second = to_prob(_best_outside_box(maps, x0, y0, exclusion, row_max)).astype(np.float64)
    distinctness = np.clip(1.0 - second / safe_peak, 0.0, 1.0)

    conf = peak * sharpness * distinctness
    points = np.stack([x, y], axis=-1).reshape(n, c, 2)
    return DecodedPoints(
        points_xy=points.astype(np.float64),
        confidence=conf.reshape(n, c),
        peak_probability=peak.reshape(n, c),
    )


def decode_doppler_peaks(
    logits: Any,
    *,
    min_spacing_px: float,
    min_probability: float = 0.15,
    relative_threshold: float = 0.5,
    sigma_px: float = DEFAULT_SIGMA_PX,
    window_px: float | None = None,
    probabilities: bool = False,
    max_shift_px: float = 1.5,
) -> list[list[DopplerPeak]]:
    """Decode every per-beat peak of each Doppler channel.

    Parameters
    ----------
    logits
        ``(C, H, W)`` heatmap logits of one spectral strip (a leading batch axis of 1 is accepted).
    min_spacing_px
        Minimum distance along x between two peaks of one channel (the shortest plausible
        beat-to-beat interval converted to heatmap pixels).
    min_probability
        A peak must reach this probability.
    relative_threshold
        ... and at least this fraction of the channel's strongest peak.
    sigma_px, window_px, probabilities, max_shift_px
        As in :func:`decode_keypoints`.

    Returns
    -------
    list of list of DopplerPeak
        Per channel, its peaks sorted by x.
    """
    t = _as_array(logits)
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise ValueError("decode_doppler_peaks takes one strip at a time")
        t = t[0]
    if t.ndim != 3:
        raise ValueError(f"heatmaps must be (C, H, W), got {tuple(t.shape)}")
    c, h, w = t.shape
    prob = np.clip(t, 0.0, 1.0) if probabilities else _sigmoid(t)
    window = float(window_px) if window_px is not None else 2.5 * sigma_px
    profile = prob.max(axis=1)  # (C, W): best probability in each column ...
    rows = prob.argmax(axis=1)  # ... and its row
    spacing = max(1, int(round(min_spacing_px)))
    out: list[list[DopplerPeak]] = []
    for ch in range(c):
        prof = profile[ch]
        strongest = float(prof.max())
        threshold = max(min_probability, relative_threshold * strongest)
        # greedy NMS along x: take the best column, suppress +-spacing, repeat
        remaining = prof.astype(np.float64).copy()
        chosen: list[int] = []
        while True:
            col_i = int(remaining.argmax())
            if float(remaining[col_i]) < threshold:
                break
            chosen.append(col_i)
            remaining[max(0, col_i - spacing + 1) : col_i + spacing] = -1.0
        if not chosen:
            out.append([])
            continue
        cols = np.asarray(chosen, dtype=np.float64)
        rws = rows[ch, chosen].astype(np.float64)
        maps = np.broadcast_to(prob[ch], (len(chosen), h, w))
        xs, ys = _refine(maps, cols, rws, window, max_shift_px)
        peaks = []
        d = int(max(1, round(2.0 * sigma_px)))
        for i, col_i in enumerate(chosen):
            p = float(profile[ch, col_i])
            r = int(rws[i])
            ring_vals = [float(prob[ch, rr, col_i]) for rr in (r - d, r + d) if 0 <= rr < h]
            ring = sum(ring_vals) / len(ring_vals) if ring_vals else 0.0
            sharp = min(1.0, max(0.0, (1.0 - ring / max(p, 1e-6)) / (1.0 - math.exp(-2.0))))
            peaks.append(DopplerPeak(x=float(xs[i]), y=float(ys[i]), confidence=p * sharp, probability=p))
        peaks.sort(key=lambda pk: pk.x)
        out.append(peaks)
    return out


def global_soft_argmax(logits: Any) -> np.ndarray:
    """The anchor's decoding (soft-argmax over the whole sigmoid map), for comparison only.

    Returns ``(N, C, 2)`` float64 ``(x, y)``.
    """
    t = _as_array(logits)
    if t.ndim == 3:
        t = t[None]
    n, c, h, w = t.shape
    p = _sigmoid(t).reshape(n, c, -1).astype(np.float64)
    p = p / p.sum(axis=-1, keepdims=True)
    ys, xs = np.mgrid[0:h, 0:w]
    x = (p * xs.reshape(-1)).sum(-1)
    y = (p * ys.reshape(-1)).sum(-1)
    return np.stack([x, y], axis=-1)
