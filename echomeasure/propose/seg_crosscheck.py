"""PLAX segmentation on the ED and ES frames, and its cross-check of the linear calipers.

``plax-seg`` (:data:`echomeasure.models.segmentation.PLAX_SEG_CLASSES`) labels the ED and ES frames;
its structures go to the measure JSON's ``segmentations``.  Each linear caliper is then read
against the label map along its own line: the run of the structure the caliper spans (septum
for IVSd, LV cavity for LVIDd/LVIDs, outer wall for LVPWd, aorta for the aortic root, atrium for
LA) that overlaps the caliper most gives the segmentation's length.  Where the two lengths
disagree by more than :data:`TOLERANCE_FRACTION` of the caliper (at least
:data:`TOLERANCE_MM`), or the structure is not on the line at all, the caliper's confidence is
multiplied by a factor below 1 (never below :data:`MIN_FACTOR`), so the reviewer sees it flagged.
Only confident segmentations vote: a structure whose mean pixel confidence is under
:data:`MIN_SEG_CONFIDENCE` leaves the caliper alone, and so does a model version whose registered
held-out mean IoU is under :data:`MIN_MODEL_MEAN_IOU`.

Without a registered ``plax-seg`` nothing changes and no segmentation is reported.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from echomeasure.ingest.calibration import square_cm_per_px
from echomeasure.models.registry import HELDOUT_STYLE, OWN_STYLE
from echomeasure.models.segmentation import (
    PLAX_SEG_CLASSES,
    PLAX_SEG_MODEL,
    image_box,
    predict,
    segmentation_registered,
    segments,
)
from echomeasure.propose.types import ModelInfo

log = logging.getLogger(__name__)

#: measurement -> the plax-seg structure its caliper spans
CALIPER_STRUCTURE: dict[str, str] = {
    "ivsd": "septum",
    "lvidd": "lv",
    "lvids": "lv",
    "lvpwd": "outer_wall",
    "aortic_root": "aorta",
    "la": "la",
}
TOLERANCE_FRACTION = 0.15
TOLERANCE_MM = 2.0
TOLERANCE_PX = 3.0  # uncalibrated clips
MIN_FACTOR = 0.3
ABSENT_FACTOR = 0.5
MIN_SEG_CONFIDENCE = 0.6
#: a plax-seg version votes on calipers only when its registered held-out mean IoU (the lower of the
#: training families' and the held-out family's) reaches this; below it, contours are still reported
MIN_MODEL_MEAN_IOU = 0.8
_STEP_PX = 0.5


def run_length_px(labels: np.ndarray, conf: np.ndarray, a: Sequence[float], b: Sequence[float],
                  label: int) -> tuple[float | None, float]:
    """Length (px) of the run of ``label`` along the line a->b that overlaps the segment a-b most,
    and the run's mean confidence; ``(None, confidence on the caliper)`` when no run overlaps it."""
    a_ = np.asarray(a, np.float64)
    b_ = np.asarray(b, np.float64)
    length = float(np.hypot(*(b_ - a_)))
    if length < 1e-6:
        return None, 0.0
    # where no run of the structure overlaps the caliper, the confidence is that of the map on the caliper
    u = (b_ - a_) / length
    t = np.arange(-0.75 * length - 10, 1.75 * length + 10, _STEP_PX)
    pts = a_[None] + t[:, None] * u[None]
    h, w = labels.shape
    xi = np.clip(np.rint(pts[:, 0]).astype(int), 0, w - 1)
    yi = np.clip(np.rint(pts[:, 1]).astype(int), 0, h - 1)
    inside = (pts[:, 0] >= 0) & (pts[:, 0] <= w - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= h - 1)
    hit = (labels[yi, xi] == label) & inside
    on_caliper = (t >= 0) & (t <= length) & inside
    best, best_overlap = None, 0.0
    best_conf = float(conf[yi[on_caliper], xi[on_caliper]].mean()) if on_caliper.any() else 0.0
    i = 0
    while i < len(t):
        if not hit[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(t) and hit[j + 1]:
            j += 1
        lo, hi = t[i] - _STEP_PX / 2, t[j] + _STEP_PX / 2
        overlap = min(hi, length) - max(lo, 0.0)
        if overlap > best_overlap:
            best, best_overlap = hi - lo, overlap
            best_conf = float(conf[yi[i : j + 1], xi[i : j + 1]].mean())
        i = j + 1
    return best, best_conf


def caliper_factor(caliper_px: float, seg_px: float | None, px_per_mm: float | None) -> float:
    """Confidence factor from the caliper's and the segmentation's lengths along one line."""
    if seg_px is None:
        return ABSENT_FACTOR
    tol = max(TOLERANCE_FRACTION * caliper_px, TOLERANCE_MM * px_per_mm if px_per_mm else TOLERANCE_PX)
    excess = abs(seg_px - caliper_px) - tol
    if excess <= 0:
        return 1.0
    return float(max(MIN_FACTOR, 1.0 - 0.7 * excess / max(caliper_px, 1.0)))


def crosscheck(proposals: Sequence[Any], maps: Mapping[int, tuple[np.ndarray, np.ndarray]],
               px_per_mm: float | None) -> tuple[list[Any], dict[str, str]]:
    """Proposals with their confidence lowered where the segmentation disagrees, and why (by name)."""
    out, why = [], {}
    for p in proposals:
        structure = CALIPER_STRUCTURE.get(p.name)
        if structure is None or p.frame not in maps or len(p.points) != 2:
            out.append(p)
            continue
        labels, conf = maps[p.frame]
        a, b = p.points
        caliper_px = float(np.hypot(b[0] - a[0], b[1] - a[1]))
        seg_px, seg_conf = run_length_px(labels, conf, a, b, PLAX_SEG_CLASSES.index(structure))
        if seg_conf < MIN_SEG_CONFIDENCE:
            out.append(p)
            continue
        factor = caliper_factor(caliper_px, seg_px, px_per_mm)
        if factor < 1.0:
            why[p.name] = (f"segmentation sees no {structure} on the caliper line" if seg_px is None else
                           f"segmented {structure} {seg_px:.0f} px vs caliper {caliper_px:.0f} px")
            p = dataclasses.replace(p, confidence=float(p.confidence) * factor)
        out.append(p)
    return out, why


#: Frames segmented at a time with ``--per-frame`` (their label maps, a copy of their pixels and
#: ONNX Runtime's arena for that batch size are held at once; a 300-frame 600x800 clip peaked at
#: 2.7 GB with all frames at once, 1.5 GB in chunks of 16, 1.04 GB in chunks of 4, equally fast).
SEG_CHUNK = 4


def model_votes(entry: Any) -> bool:
    """True when a plax-seg version's registered mean IoU (own and held-out families) is good enough to vote."""
    ious = [entry.metric("mean_iou", protocol) for protocol in (OWN_STYLE, HELDOUT_STYLE)]
    return all(v is not None for v in ious) and min(ious) >= MIN_MODEL_MEAN_IOU


def plax_crosscheck(clip: Any, proposals: list[Any], ed: int | None, es: int | None, versions: Mapping[str, str],
                    weights_dir: Any, timings: dict[str, float], notices: list[str],
                    per_frame: bool = False) -> tuple[list[Any], list[dict], ModelInfo | None]:
    """Segment the ED and ES frames (every frame with ``per_frame``) with ``plax-seg`` and cross-check
    the calipers (the engine's hook).

    Returns the (possibly less confident) proposals, the ``segmentations`` JSON items and the
    identity of the plax-seg weights that drew them (None without a model); adds a notice per
    caliper whose confidence the segmentation lowered.
    """
    if ed is None or not segmentation_registered(PLAX_SEG_MODEL, weights_dir):
        return proposals, [], None
    t0 = time.perf_counter()
    runner = _cached_runner(versions.get(PLAX_SEG_MODEL), weights_dir)
    entry = runner.entry
    frames = list(range(clip.n_frames)) if per_frame else sorted({int(ed), int(es if es is not None else ed)})
    box = image_box(clip.regions, clip.frames.shape[1:3])
    cm = square_cm_per_px(clip.regions or (), clip.user_cm_per_px)
    # the maps the cross-check reads (the calipers' frames); with --per-frame every other frame's map
    # becomes its contours and is dropped, SEG_CHUNK frames at a time
    wanted = {int(p.frame) for p in proposals if p.frame is not None} | {int(ed)}
    maps: dict[int, tuple[Any, Any]] = {}
    segs: list[dict] = []
    for start in range(0, len(frames), SEG_CHUNK):
        chunk = frames[start : start + SEG_CHUNK]
        labels, conf = predict(runner, clip.frames[chunk], box, tuple(entry.input_size))
        for k, f in enumerate(chunk):
            segs += [s.as_json() for s in segments(labels[k], conf[k], entry.channels, f, cm)]
            if f in wanted:
                maps[f] = (labels[k].copy(), conf[k].copy())
    if model_votes(entry):
        checked, why = crosscheck(proposals, maps, None if not cm else 0.1 / cm)
    else:
        checked, why = proposals, {}
        log.info("plax-seg %s: held-out mean IoU below %.2f, calipers not cross-checked", entry.version,
                 MIN_MODEL_MEAN_IOU)
    for name, reason in why.items():
        notices.append(f"{name}: the PLAX segmentation disagrees with the caliper ({reason}); confidence lowered")
    timings["segmentation"] = time.perf_counter() - t0
    return checked, segs, ModelInfo(entry.name, entry.version, entry.sha256)


_RUNNERS: dict[tuple[str | None, str], Any] = {}


def _cached_runner(version: str | None, weights_dir: Any) -> Any:
    """One plax-seg runner per (version, folder) per process (the checks run on every PLAX clip).

    The runner is ONNX Runtime over a cached export when available, so a measurement does not
    import torch for the segmentation; it falls back to torch otherwise.
    """
    from echomeasure.errors import WeightsError
    from echomeasure.models import registry
    from echomeasure.models.runtime import HeatmapRunner
    from echomeasure.models.segmentation import is_segmentation

    resolved = version or registry.active_version(PLAX_SEG_MODEL, weights_dir)
    key = (resolved, str(weights_dir))
    if key not in _RUNNERS:
        entry = registry.get_entry(PLAX_SEG_MODEL, resolved, weights_dir)
        if not is_segmentation(entry.channels):
            raise WeightsError(f"{PLAX_SEG_MODEL} is not a segmentation model (its outputs are {', '.join(entry.channels)})")
        _RUNNERS[key] = HeatmapRunner.for_entry(entry, registry.verify_file(entry, weights_dir))
    return _RUNNERS[key]
