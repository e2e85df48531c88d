"""Where the tissue-blood interface lies on a displayed intensity ramp: the bloom correction.

:func:`echomeasure.propose.edges.refine_to_edges` puts a caliper endpoint at the strongest
intensity step near the model's point.  On a log-compressed B-mode picture that step is not
always at the interface: the point-spread function smears bright tissue echo into the dark blood
beside it, and the higher the gain (the brighter the blood is shown), the further the displayed
ramp reaches into the blood.  Walls then look thicker and cavities smaller, the classic gain
artefact of wall-thickness measurements.  On a sharp picture with black blood the interface lies
in the middle of the ramp; on a blooming one, near its top.

A linear model reads the offset from the profile around the chosen step, in the search line's
"tissue" direction: the profile normalised to its blood level (median over 3-4 mm into the
blood) and its tissue peak (within 1 mm of the step on the blood side to 2 mm into the tissue),
sampled every 0.25 mm from 4 mm into the blood to 3 mm into the tissue, plus the blood level,
the contrast, the blood-to-peak ratio with its interaction with the normalised profile, and
which keypoint it is (one intercept per interface of :data:`BLOOD_INTERFACES`, the only ones corrected).
Its coefficients (``interface_offset.json``, beside this module) are a ridge regression fitted
by :mod:`echomeasure.training.interface_offset_fit` on training-family frames, half of them
re-imaged through a PSF and log compression (:class:`echomeasure.training.augment.BloomAugment`),
from start points 1 mm (SD) off the true interfaces; the JSON records the command, its seed
and the fit's errors.  The predicted offset is clipped to +-:data:`MAX_OFFSET_MM`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from echomeasure.propose.line_profiles import gaussian_kernel, line_profiles

#: The blood-tissue interfaces the correction applies to (of
#: :data:`echomeasure.propose.edges.PLAX_INTERFACES`): the bloom is bright tissue smeared into
#: dark blood, so the wall-pericardium step (tissue on both sides) is not corrected, nor the LA's
#: far wall, which is not searched.
BLOOD_INTERFACES = ("rv_septum", "septum_lv", "lv_pw", "ao_anterior", "ao_posterior", "la_anterior")
#: Profile sample offsets in mm along the tissue direction (negative: into the blood), every
#: :data:`GRID_STEP_MM`.
GRID_STEP_MM = 0.25
GRID_MM = np.arange(-4.0, 3.0001, GRID_STEP_MM)
#: Blood-level window and tissue-peak window of the profile, mm.
BLOOD_WINDOW_MM = (-4.0, -3.0)
PEAK_WINDOW_MM = (-1.0, 2.0)
#: Smallest step (grey levels) the normalisation divides by.
MIN_RISE_GREY = 4.0
#: Largest correction applied, mm.
MAX_OFFSET_MM = 2.5
#: Averaging of the profile across and along the line, mm (as the edge search's defaults).
ACROSS_HALF_WIDTH_MM = 2.5
SMOOTH_MM = 0.4

COEFFICIENTS_FILE = Path(__file__).with_name("interface_offset.json")


def _grid_within(window_mm: tuple[float, float]) -> np.ndarray:
    """Mask of the :data:`GRID_MM` samples inside ``window_mm`` (ends included)."""
    lo, hi = window_mm
    return (lo <= GRID_MM) & (hi >= GRID_MM)


def profile_features(profiles: np.ndarray, keypoints: Sequence[str] | None = None,
                     keypoint_names: Sequence[str] = ()) -> np.ndarray:
    """(N, len(GRID_MM)) grey profiles (blood -> tissue) -> (N, F) regression features; with
    ``keypoints`` (the keypoint of each profile), one indicator column per ``keypoint_names``."""
    p = np.asarray(profiles, dtype=np.float64)
    blood = _grid_within(BLOOD_WINDOW_MM)
    near = _grid_within(PEAK_WINDOW_MM)
    lo = np.median(p[:, blood], axis=1, keepdims=True)
    hi = p[:, near].max(axis=1, keepdims=True)
    q = (p - lo) / np.maximum(hi - lo, MIN_RISE_GREY)
    ratio = lo / np.maximum(hi, 1.0)
    ones = np.ones_like(lo)
    columns = [q, lo / 255.0, (hi - lo) / 255.0, ratio, ones, q * ratio, ratio * ratio]
    if keypoint_names:
        names = np.asarray(list(keypoints) if keypoints is not None else [""] * len(p))
        columns.append((names[:, None] == np.asarray(list(keypoint_names))[None, :]).astype(np.float64))
    return np.concatenate(columns, axis=1)


def sample_profiles(frame: np.ndarray, points_xy: np.ndarray, tissue_dirs_xy: np.ndarray, px_per_mm: float) -> np.ndarray:
    """(K, len(GRID_MM)) grey profiles through each point along its unit tissue direction.

    The samples lie :data:`GRID_STEP_MM` apart whatever the pixel size, so the smoothing along
    the line (:data:`SMOOTH_MM`) is a fixed number of samples: the same physical profile at
    every resolution.
    """
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    dirs = np.asarray(tissue_dirs_xy, dtype=np.float64).reshape(-1, 2)
    ppm = float(px_per_mm)
    return line_profiles(frame, pts, dirs, GRID_MM * ppm, ACROSS_HALF_WIDTH_MM * ppm,
                         gaussian_kernel(SMOOTH_MM / GRID_STEP_MM))


def fit_coefficients(profiles: np.ndarray, offsets_mm: np.ndarray, *, keypoints: Sequence[str] | None = None,
                     keypoint_names: Sequence[str] = (), ridge: float = 1.0, max_abs_mm: float = 3.0) -> np.ndarray:
    """Ridge regression of the true offsets (mm, + toward the tissue) on :func:`profile_features`.

    Offsets beyond ``max_abs_mm`` (a start point that found another structure's step) are left out.
    """
    x = profile_features(profiles, keypoints, keypoint_names)
    y = np.asarray(offsets_mm, dtype=np.float64)
    keep = np.isfinite(y) & (np.abs(y) < max_abs_mm) & np.isfinite(x).all(axis=1)
    a = x[keep]
    return np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ y[keep])


@dataclass(frozen=True)
class InterfaceOffsetModel:
    """The fitted correction: ``coef`` over :func:`profile_features` with ``keypoint_names``'
    intercepts; ``record`` says how it was made."""

    coef: np.ndarray
    keypoint_names: tuple[str, ...] = ()
    record: dict[str, Any] = field(default_factory=dict)

    def offsets_mm(self, profiles: np.ndarray, keypoints: Sequence[str] | None = None) -> np.ndarray:
        """(K,) predicted offset of the interface from each profile's centre, mm toward the tissue
        (``keypoints``: the keypoint of each profile; one not among ``keypoint_names`` gets no intercept)."""
        if len(profiles) == 0:
            return np.zeros(0)
        pred = profile_features(profiles, keypoints, self.keypoint_names) @ self.coef
        return np.clip(np.nan_to_num(pred, nan=0.0), -MAX_OFFSET_MM, MAX_OFFSET_MM)

    def to_json(self) -> dict[str, Any]:
        """Plain dict as written to :data:`COEFFICIENTS_FILE`."""
        return {"grid_mm": [float(g) for g in GRID_MM], "keypoints": list(self.keypoint_names),
                "coef": [round(float(c), 8) for c in self.coef], **self.record}


@lru_cache(maxsize=1)
def shipped_model() -> InterfaceOffsetModel | None:
    """The coefficients shipped with the package (None when the file is absent)."""
    if not COEFFICIENTS_FILE.is_file():
        return None
    data = json.loads(COEFFICIENTS_FILE.read_text(encoding="utf-8"))
    if not np.allclose(data["grid_mm"], GRID_MM):
        raise ValueError(f"{COEFFICIENTS_FILE.name}: its profile grid differs from this code's")
    record = {k: v for k, v in data.items() if k not in ("grid_mm", "coef", "keypoints")}
    return InterfaceOffsetModel(np.asarray(data["coef"], dtype=np.float64), tuple(data.get("keypoints", ())), record)


__all__ = [
    "BLOOD_INTERFACES",
    "GRID_MM",
    "GRID_STEP_MM",
    "MAX_OFFSET_MM",
    "InterfaceOffsetModel",
    "fit_coefficients",
    "profile_features",
    "sample_profiles",
    "shipped_model",
]
