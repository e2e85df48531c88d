"""Segmentation models: label maps from a registered DeepLabV3, and their contours as polygons.

A segmentation model is a registry entry whose first channel is ``"background"``: channel ``k``
of its output is label value ``k`` (``plax-seg``: :data:`PLAX_SEG_CLASSES`; ``apical-seg``: the
CAMUS labels; a model trained on a user's mask folder: the names of its ``classes.txt``).

Input convention (the one the trainers use): the frame's 2D region (or the whole frame when
there is none) is cropped, resized to the model input with area averaging, given as RGB / 255;
the softmax is resized back to the crop bilinearly and the label is the arg-max.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    from echomeasure.models.registry import LoadedModel

#: ``plax-seg`` classes in output order = the label values of the synthetic PLAX label maps
#: (:data:`echomeasure.synthetic.types.LABEL_CLASSES`; "outer_wall" is the generator's "wall":
#: the LV posterior wall, RV free wall, aortic and LA walls).
PLAX_SEG_CLASSES: tuple[str, ...] = ("background", "lv", "rv", "la", "aorta", "septum", "outer_wall")
PLAX_SEG_MODEL = "plax-seg"

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 inclusive


def is_segmentation(channels: Sequence[str]) -> bool:
    """True for the channel list of a segmentation model (first channel ``background``)."""
    return len(channels) >= 2 and channels[0] == "background"


def image_box(regions: Sequence[Any], shape_hw: tuple[int, int]) -> Box:
    """The box a segmentation model looks at: the 2D region the keypoint models use
    (:func:`echomeasure.models.preprocess.region_box_2d`: the largest, cut at the image edge), or
    the whole frame without one."""
    from echomeasure.models.preprocess import region_box_2d

    height, width = int(shape_hw[0]), int(shape_hw[1])
    box = region_box_2d(regions, height, width)
    return box.as_tuple() if box is not None else (0, 0, width - 1, height - 1)


def to_input(frames: np.ndarray, box: Box, size_hw: tuple[int, int]) -> np.ndarray:
    """(N, H, W, 3) uint8 frames -> (N, 3, h, w) float32 model input in [0, 1]."""
    x0, y0, x1, y1 = box
    h, w = size_hw
    crops = [cv2.resize(np.ascontiguousarray(f[y0 : y1 + 1, x0 : x1 + 1]), (w, h), interpolation=cv2.INTER_AREA)
             for f in frames]
    arr = np.stack(crops).astype(np.float32) / 255.0
    if arr.ndim == 3:  # grey frames
        arr = np.repeat(arr[..., None], 3, axis=-1)
    return arr.transpose(0, 3, 1, 2)


def predict(model: Any, frames: np.ndarray, box: Box, size_hw: tuple[int, int], *,
            batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Label maps and per-pixel confidence (max softmax) of frames at full image size.

    ``model`` is a torch segmentation network or a :class:`~echomeasure.models.runtime.HeatmapRunner`
    (ONNX Runtime: no torch import at inference).  Both take float32 ``(B, 3, H, W)`` in [0, 1].

    Returns ``(labels (N, H, W) uint8, confidence (N, H, W) float32)``; outside ``box`` the label
    is 0 and the confidence 0.
    """
    from echomeasure.models.runtime import HeatmapRunner

    logits_of = model if isinstance(model, HeatmapRunner) else _torch_logits(model)
    x0, y0, x1, y1 = box
    n, height, width = frames.shape[:3]
    labels = np.zeros((n, height, width), np.uint8)
    conf = np.zeros((n, height, width), np.float32)
    for s in range(0, n, batch):
        logits = np.asarray(logits_of(to_input(frames[s : s + batch], box, size_hw)), dtype=np.float32)
        prob = np.exp(logits - logits.max(axis=1, keepdims=True))
        prob /= prob.sum(axis=1, keepdims=True)
        for k, p in enumerate(prob):
            up = np.stack([cv2.resize(c, (x1 - x0 + 1, y1 - y0 + 1), interpolation=cv2.INTER_LINEAR) for c in p])
            labels[s + k, y0 : y1 + 1, x0 : x1 + 1] = up.argmax(axis=0)
            conf[s + k, y0 : y1 + 1, x0 : x1 + 1] = up.max(axis=0)
    return labels, conf


def _torch_logits(model: Any) -> Any:
    """Logits of a torch network as a function of a numpy batch."""
    import torch

    model.eval()

    def logits_of(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return logits_of


def iou(pred: np.ndarray, truth: np.ndarray, k: int) -> float | None:
    """Intersection over union of label ``k`` (None when it is in neither map)."""
    a, b = pred == k, truth == k
    union = int((a | b).sum())
    return None if union == 0 else float((a & b).sum() / union)


def dice(pred: np.ndarray, truth: np.ndarray, k: int) -> float | None:
    """Dice of label ``k`` (None when it is in neither map)."""
    a, b = pred == k, truth == k
    s = int(a.sum() + b.sum())
    return None if s == 0 else float(2 * (a & b).sum() / s)


def confusion_counts(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) pixel counts of one label map against its truth: row = true label,
    column = predicted label.  Sum them over frames, then read them with :func:`error_sources`."""
    t = np.asarray(truth, dtype=np.int64).ravel()
    p = np.asarray(pred, dtype=np.int64).ravel()
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n_classes):
        raise ValueError(f"label values must be 0-{n_classes - 1}")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def error_sources(confusion: np.ndarray, classes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Where each structure's segmentation errors lie, from summed :func:`confusion_counts`.

    For each structure (``classes[1:]``, background left out) with a true area: ``extra_pct``, the
    pixels predicted as it that belong to other classes, as % of its true area, with
    ``extra_from`` (which true class they belong to); ``missed_pct``, its true pixels predicted as
    something else, with ``missed_to``.  Extra from a neighbouring cavity on both sides of a wall
    (walls drawn thicker, cavities smaller) is what point-spread-function bloom does; missed
    pixels are the opposite.
    """
    c = np.asarray(confusion, dtype=np.float64)
    out: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(classes):
        area = float(c[k].sum())
        if k == 0 or area == 0:
            continue
        others = [j for j in range(len(classes)) if j != k]
        out[name] = {
            "extra_pct": round(100.0 * float(sum(c[j, k] for j in others)) / area, 2),
            "extra_from": {classes[j]: round(100.0 * float(c[j, k]) / area, 2) for j in others if c[j, k] > 0},
            "missed_pct": round(100.0 * float(sum(c[k, j] for j in others)) / area, 2),
            "missed_to": {classes[j]: round(100.0 * float(c[k, j]) / area, 2) for j in others if c[k, j] > 0},
        }
    return out


def error_sources_markdown(by_group: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Markdown table lines of :func:`error_sources` per group (family): one row per group and
    structure, the extra and missed % of its true area with their two largest sources."""

    def top(parts: dict[str, float]) -> str:
        biggest = sorted(parts.items(), key=lambda kv: -kv[1])[:2]
        return ", ".join(f"{name} {pct:g}" for name, pct in biggest) or "-"

    lines = ["| group | structure | extra % of true area | extra from | missed % | missed to |", "|---|---|---|---|---|---|"]
    for group, per in by_group.items():
        for name, e in per.items():
            lines.append(f"| {group} | {name} | {e['extra_pct']:g} | {top(e['extra_from'])} | {e['missed_pct']:g} | "
                         f"{top(e['missed_to'])} |")
    return lines


@dataclass(frozen=True)
class Segment:
    """One structure's contour on one frame (pixels; area in cm² when calibrated)."""

    frame: int
    structure: str
    polygon_px: list[tuple[float, float]]
    area_px: float
    area_cm2: float | None
    confidence: float

    def as_json(self) -> dict[str, Any]:
        """The ``segmentations`` item of the measure JSON."""
        return {
            "frame": self.frame,
            "structure": self.structure,
            "polygon": [[round(x, 1), round(y, 1)] for x, y in self.polygon_px],
            "area_cm2": None if self.area_cm2 is None else round(self.area_cm2, 3),
            "confidence": round(self.confidence, 4),
        }


def segments(labels: np.ndarray, conf: np.ndarray, classes: Sequence[str], frame: int,
             cm_per_px: float | None, *, min_area_px: int = 20, epsilon_px: float = 1.0) -> list[Segment]:
    """The largest connected region of each structure of one label map, as a polygon.

    The confidence is the mean per-pixel confidence inside the region; a structure that is
    absent (or smaller than ``min_area_px``) gets no segment.
    """
    out = []
    for k, name in enumerate(classes):
        if k == 0:
            continue
        mask = (labels == k).astype(np.uint8)
        n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if n <= 1:
            continue
        j = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        region = lab == j
        area_px = float(region.sum())
        if area_px < min_area_px:
            continue
        contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        c = max(contours, key=cv2.contourArea)
        c = cv2.approxPolyDP(c, epsilon_px, True).reshape(-1, 2)
        area_cm2 = None if not cm_per_px else area_px * float(cm_per_px) ** 2
        out.append(Segment(frame, name, [(float(x), float(y)) for x, y in c], area_px, area_cm2,
                           float(conf[region].mean())))
    return out


def load_segmentation_model(name: str, version: str | None = None,
                            weights_dir: str | os.PathLike[str] | None = None) -> LoadedModel:
    """A registered segmentation model (sha256 checked); refuses a model of another kind."""
    from echomeasure.errors import WeightsError
    from echomeasure.models.registry import load_model

    loaded = load_model(name, version, weights_dir)
    if not is_segmentation(loaded.entry.channels):
        raise WeightsError(f"{name} is not a segmentation model (its outputs are {', '.join(loaded.entry.channels)})")
    return loaded


def segmentation_registered(name: str, weights_dir: str | os.PathLike[str] | None = None) -> bool:
    """True when ``name`` has an active version that is a segmentation model."""
    from echomeasure.models.registry import active_version, get_entry

    try:
        if active_version(name, weights_dir) is None:
            return False
        return is_segmentation(get_entry(name, None, weights_dir).channels)
    except Exception:  # noqa: BLE001 - no manifest or no such entry: not a segmentation model
        return False


def _view_of(clip: Any, declared: str | None, name: str) -> dict[str, Any]:
    """``measure --model <segmentation>``'s view: the one a custom model declares (the view
    classifier knows only the echo views), else the view classifier's decision when one is
    registered, else the model's name with no confidence."""
    from echomeasure.models import view as view_model

    if declared:
        return {"name": declared, "confidence": None}
    if view_model.view_registered():
        return view_model.classify_view(clip).as_json()
    return {"name": name, "confidence": None}


def measure_file_segmentation(path: str | os.PathLike[str], name: str, version: str | None = None, *,
                              per_frame: bool = False, scale_cm_per_px: float | None = None,
                              secret: bytes | None = None) -> dict[str, Any]:
    """``measure --model NAME`` for a segmentation model of a custom view: contours, no calipers.

    The file is de-identified first like every measured file; the first frame is segmented
    (every frame with ``per_frame``); areas are in cm² where the file or ``--scale`` calibrates it.
    """
    from echomeasure import config
    from echomeasure.ingest.calibration import check_user_cm_per_px, square_cm_per_px
    from echomeasure.ingest.clip import display_name
    from echomeasure.propose.measure import load_deidentified

    scale_cm_per_px = check_user_cm_per_px(scale_cm_per_px, label="--scale")
    loaded = load_segmentation_model(name, version)
    clip = load_deidentified(path, secret=secret if secret is not None else config.secret(),
                             user_cm_per_px=scale_cm_per_px)
    frames = clip.frames if per_frame else clip.frames[:1]
    box = image_box(clip.regions, clip.frames.shape[1:3])
    cm = square_cm_per_px(clip.regions or (), clip.user_cm_per_px)
    labels, conf = predict(loaded.model, frames, box, loaded.entry.input_size)
    segs = [s.as_json() for i in range(len(frames)) for s in segments(labels[i], conf[i], loaded.entry.channels, i, cm)]
    return {
        "file": display_name(path),
        "kind": clip.kind,
        "calibration": clip.calibration_source,
        "model": {"name": loaded.name, "version": loaded.version, "sha256": loaded.sha256},
        "view": _view_of(clip, loaded.entry.extra.get("view"), name),
        "measurements": [],
        "segmentations": segs,
        "notices": [] if segs else [f"{name} found none of its structures in this clip"],
    }


