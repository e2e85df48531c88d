"""Temporal smoothing of keypoint tracks in real time units, and ED/ES frame selection.

The anchor assumes 30 fps.  Here the smoothing window is in milliseconds and uses the clip's
real frame time, so the same motion filmed at 30 or 60 fps is smoothed the same way.

Smoothing is a confidence-weighted local quadratic regression (LOESS with a tricube kernel):
for every frame, a quadratic in time is fitted to the points within ``half_window_ms`` by
weighted least squares, weights = tricube(time distance) x per-frame confidence; the fitted
value at that frame is the smoothed point.  A local quadratic keeps the extremes of the
motion (end-diastole, end-systole) where a moving average would flatten them, and a frame
whose detection failed (low confidence) hardly pulls the track.
"""

from __future__ import annotations

import numpy as np

#: Default half-width of the smoothing window, milliseconds.
DEFAULT_HALF_WINDOW_MS = 90.0
#: Frames whose confidence is below this share of the clip's median are not chosen as ED/ES.
MIN_RELATIVE_CONFIDENCE = 0.5
#: ED/ES must be turning points at least this far from the clip's ends (half a smoothing window).
EDGE_MS = DEFAULT_HALF_WINDOW_MS / 2.0
_DEGREE = 2


def frame_times_ms(n_frames: int, frame_time_ms: float) -> np.ndarray:
    """Acquisition time of each frame, ms from the first frame."""
    return np.arange(n_frames, dtype=np.float64) * float(frame_time_ms)


def smooth_tracks(
    points_xy: np.ndarray,
    confidence: np.ndarray | None,
    frame_time_ms: float | None,
    *,
    half_window_ms: float = DEFAULT_HALF_WINDOW_MS,
) -> np.ndarray:
    """Smooth keypoint tracks over time with a window in milliseconds.

    Parameters
    ----------
    points_xy
        ``(N, K, 2)`` per-frame points (any unit; image pixels in practice).
    confidence
        ``(N, K)`` per-frame confidence in [0, 1] used as regression weights (None: all 1).
    frame_time_ms
        Time between frames.  None (a still) or fewer than 3 frames returns a copy unchanged.
    half_window_ms
        Half-width of the tricube kernel.

    Returns
    -------
    np.ndarray
        ``(N, K, 2)`` smoothed points.
    """
    pts = np.asarray(points_xy, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[-1] != 2:
        raise ValueError(f"points must be (N, K, 2), got {pts.shape}")
    n, k, _ = pts.shape
    if frame_time_ms is None or frame_time_ms <= 0 or n < 3:
        return pts.copy()
    conf = np.ones((n, k)) if confidence is None else np.asarray(confidence, dtype=np.float64)
    # a floor keeps the fit defined when a whole window is unconfident
    conf = np.clip(conf, 0.0, 1.0) + 1e-3
    t = frame_times_ms(n, frame_time_ms)
    u = (t[None, :] - t[:, None]) / float(half_window_ms)  # (N_out, N_in), signed
    kernel = np.where(np.abs(u) < 1.0, (1.0 - np.abs(u) ** 3) ** 3, 0.0)
    powers = np.stack([u**d for d in range(_DEGREE + 1)], axis=-1)  # (N, N, D+1)
    w = kernel[:, :, None] * conf[None, :, :]  # (N_out, N_in, K)
    # normal equations per (output frame, keypoint): A c = b
    a = np.einsum("ijk,ijp,ijq->ikpq", w, powers, powers)  # (N, K, D+1, D+1)
    b = np.einsum("ijk,ijp,jkc->ikpc", w, powers, pts)  # (N, K, D+1, 2)
    # a small ridge on the non-constant terms: windows with too few frames fall back towards a
    # local mean instead of an ill-conditioned fit
    ridge = np.zeros((_DEGREE + 1, _DEGREE + 1))
    ridge[np.arange(1, _DEGREE + 1), np.arange(1, _DEGREE + 1)] = 1e-3
    a = a + ridge * a[..., :1, :1]
    coef = np.linalg.solve(a, b)  # (N, K, D+1, 2)
    return coef[:, :, 0, :]


def select_ed_es(
    lv_diameter_px: np.ndarray,
    confidence: np.ndarray | None = None,
    *,
    frame_time_ms: float | None = None,
    min_relative_confidence: float = MIN_RELATIVE_CONFIDENCE,
    edge_ms: float = EDGE_MS,
) -> tuple[int, int]:
    """End-diastole and end-systole frames from the per-frame LV internal diameter.

    ED is the frame with the largest diameter, ES the one with the smallest (ASE), chosen among
    the *turning points* of the curve: frames that are a local maximum (ED) or minimum (ES)
    and lie at least ``edge_ms`` from both ends of the clip.  A clip that starts or ends
    mid-contraction has its smallest or largest value at the edge without that frame being an
    end-systole or end-diastole, and the smoothing there is one-sided; only when the curve has
    no interior turning point is the overall extreme taken.  Frames whose confidence is below
    ``min_relative_confidence`` x the clip's median are never chosen (a frame where the wall was
    lost cannot win by a wild diameter).

    Parameters
    ----------
    lv_diameter_px
        ``(N,)`` septum_lv - lv_pw distance per frame (smoothed).
    confidence
        ``(N,)`` per-frame confidence of that diameter (None: all frames eligible).
    frame_time_ms
        Time between frames (None: the edge margin is one frame).
    min_relative_confidence, edge_ms
        See above.

    Returns
    -------
    (ed_frame, es_frame)
        Frame indices; equal for a single frame.
    """
    d = np.asarray(lv_diameter_px, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError("lv_diameter_px must be a non-empty 1-D array")
    n = d.size
    eligible = np.isfinite(d)
    if confidence is not None:
        c = np.asarray(confidence, dtype=np.float64)
        eligible &= c >= min_relative_confidence * float(np.median(c))
    if not eligible.any():
        eligible = np.isfinite(d)
    margin = 1 if not frame_time_ms else max(1, int(np.ceil(edge_ms / float(frame_time_ms))))
    interior = np.zeros(n, dtype=bool)
    interior[margin : n - margin] = True
    local_max = np.zeros(n, dtype=bool)
    local_min = np.zeros(n, dtype=bool)
    if n >= 3:
        local_max[1:-1] = (d[1:-1] >= d[:-2]) & (d[1:-1] >= d[2:])
        local_min[1:-1] = (d[1:-1] <= d[:-2]) & (d[1:-1] <= d[2:])

    def pick(turning: np.ndarray, best: str) -> int:
        candidates = np.flatnonzero(eligible & interior & turning)
        if candidates.size == 0:
            candidates = np.flatnonzero(eligible)
        values = d[candidates]
        return int(candidates[np.argmax(values) if best == "max" else np.argmin(values)])

    return pick(local_max, "max"), pick(local_min, "min")


#: A cine shorter than this cannot hold a whole heartbeat (the RR interval at 200 beats/min).
MIN_HEARTBEAT_MS = 300.0


#: An interior minimum of the LV size within this fraction of an end-systole taken on the cine's
#: edge is an end-systole inside the recording: the edge frame is then not in doubt.
INTERIOR_ES_TOLERANCE = 0.05


def phases_in_doubt(n_frames: int, frame_time_ms: float | None, es_frame: int,
                    lv_size: np.ndarray | None = None) -> tuple[frozenset[str], str | None]:
    """The cardiac phases (``"ed"``, ``"es"``) whose true frame may lie outside a cine, with the
    notice the reviewer gets; an empty set and None when both are in it.

    A still (one frame) is measured as the phase asked: nothing in doubt.  A cine of known timing
    shorter than :data:`MIN_HEARTBEAT_MS` holds less than one heartbeat: both phases.  Otherwise
    end-systole taken on the first or the last frame (no turning point inside the cine: it stops or
    starts mid-contraction) means the LV may be smaller outside the recording.  End-diastole on an
    edge is not doubted: an ECG-triggered cine starts and ends on the R wave.  With ``lv_size`` (the
    LV's per-frame size the ES frame was chosen on, smallest at ES), an edge ES is not doubted when an
    interior local minimum comes within :data:`INTERIOR_ES_TOLERANCE` of it (the cine holds another
    end-systole).
    """
    if n_frames < 2:
        return frozenset(), None
    if frame_time_ms and (n_frames - 1) * float(frame_time_ms) < MIN_HEARTBEAT_MS:
        return frozenset({"ed", "es"}), (
            f"the cine lasts {(n_frames - 1) * float(frame_time_ms):.0f} ms, less than one heartbeat: end-diastole and "
            "end-systole may not be in it, so its measurements are flagged; measure on a cine of a whole beat")
    if es_frame in (0, n_frames - 1) and not _interior_minimum_near(lv_size, es_frame):
        where = "first" if es_frame == 0 else "last"
        return frozenset({"es"}), (
            f"end-systole was taken on the cine's {where} frame: the ventricle may be smallest outside the recording, "
            "so the end-systolic measurements are flagged; check the frame")
    return frozenset(), None


def _interior_minimum_near(lv_size: np.ndarray | None, es_frame: int) -> bool:
    if lv_size is None or len(lv_size) < 3:
        return False
    d = np.asarray(lv_size, dtype=np.float64)
    inner = d[1:-1]
    is_min = (inner <= d[:-2]) & (inner <= d[2:])
    return bool(is_min.any() and inner[is_min].min() <= d[es_frame] * (1.0 + INTERIOR_ES_TOLERANCE))
