"""Apical clips (A4C, A2C): LV cavity, myocardium and LA segmentation, volumes and EF.

``propose_apical(clip, view)`` runs the registered ``apical-seg`` model on every frame (batched,
model resolution), takes end-diastole and end-systole as the frames of largest and smallest LV
cavity area, maps their class probabilities back to the full image and outlines each structure
there: ``segmentations`` holds one polygon per structure and frame (ED and ES; every frame with
``per_frame``) with its area and confidence (mean class probability).  The figures are measured
on those polygons, the ones the reviewer sees, with :mod:`echomeasure.propose.volumes`
(:func:`~echomeasure.propose.volumes.contour_lv_volumes`, the rule the review UI and the export
apply to reviewed contours, so an unchanged contour keeps the proposed figures): LV EDV and ESV
by the single-plane method of discs of the view, EF from them, LV length at end-diastole, LA
volume by area-length at end-systole.  Each value carries the method (``single-plane A4C`` ...).

A frame without an LV gives no volume, confidence 0 and a notice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from echomeasure.catalog import APICAL_SEG_CLASSES, single_plane_method, volume_loinc
from echomeasure.ingest.calibration import square_cm_per_px
from echomeasure.ingest.clip import Clip
from echomeasure.propose import flags, volumes
from echomeasure.propose.doppler import DOUBTFUL_CONFIDENCE
from echomeasure.propose.temporal import phases_in_doubt

SEG_MODEL = "apical-seg"
#: The cardiac phases each figure is read at (EF from both).
_VOLUME_PHASES: dict[str, frozenset[str]] = {
    "lvedv": frozenset({"ed"}), "lv_length": frozenset({"ed"}), "lvesv": frozenset({"es"}),
    "la_volume": frozenset({"es"}), "lvef": frozenset({"ed", "es"}),
}
STRUCTURES = APICAL_SEG_CLASSES[1:]  # lv, myocardium, la


@dataclass
class ApicalResult:
    """What the apical path proposes for one clip (JSON-ready volumes and segmentations)."""

    volumes: list[dict]
    segmentations: list[dict]
    ed_frame: int
    es_frame: int
    model: Any  # propose.types.ModelInfo
    notices: list[str] = field(default_factory=list)


def seg_registered(weights_dir: Any = None) -> bool:
    """True when the weights folder has an ``apical-seg`` model."""
    from echomeasure.models import registry

    try:
        return any(e.name == SEG_MODEL for e in registry.list_entries(weights_dir))
    except Exception:  # an unreadable manifest is reported by whoever loads a model from it
        return False


def _full_probabilities(prob: np.ndarray, box: Any, shape: tuple[int, int]) -> np.ndarray:
    """(C, h, w) model-resolution probabilities -> (C, H, W) on the full image (0 outside the box)."""
    x0, y0, x1, y1 = box.as_tuple()
    out = np.zeros((prob.shape[0],) + shape, np.float32)
    out[0] = 1.0
    for c in range(prob.shape[0]):
        out[c, y0 : y1 + 1, x0 : x1 + 1] = cv2.resize(prob[c], (x1 - x0 + 1, y1 - y0 + 1), interpolation=cv2.INTER_LINEAR)
    return out


def _polygons(labels: np.ndarray, prob: np.ndarray, frame: int, cm_per_px: float | None) -> list[dict]:
    out = []
    for k, name in enumerate(STRUCTURES, start=1):
        mask = (labels == k).astype(np.uint8)
        if mask.sum() < 10:
            continue
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        c = max(contours, key=cv2.contourArea)
        poly = cv2.approxPolyDP(c, 1.0, True).reshape(-1, 2)
        area_px = float(mask.sum())
        out.append({
            "frame": frame, "structure": name,
            "polygon": [[int(x), int(y)] for x, y in poly],
            "area_cm2": None if cm_per_px is None else round(area_px * cm_per_px**2, 3),
            "confidence": round(float(prob[k][mask > 0].mean()), 4),
        })
    return out


def propose_apical(
    clip: Clip,
    view: str,
    *,
    engine: Any,
    per_frame: bool = False,
    batch_size: int = 16,
    timings: dict[str, float] | None = None,
) -> ApicalResult:
    """Segment an apical clip with ``engine`` (a ``propose.engine`` engine of ``apical-seg``)."""
    from echomeasure.models.preprocess import CropTransform

    timings = timings if timings is not None else {}
    t0 = time.perf_counter()
    transform = CropTransform.for_clip(clip, engine.entry.input_size, "2d")
    shape = (clip.height, clip.width)
    cm = square_cm_per_px(clip.regions, clip.user_cm_per_px)
    # one pass over the frames that keeps only each frame's LV area and the model-resolution
    # probabilities of the largest- and smallest-LV frames so far (ED, ES; the first on a tie):
    # memory does not grow with the clip (a 300-frame clip's probabilities would be ~180 MB)
    lv_area = np.zeros(clip.n_frames, dtype=np.int64)
    ed = es = 0
    ed_prob = es_prob = np.zeros(0, np.float32)
    every_frame: list[dict] = []  # per_frame: each frame's polygons, made as the pass goes
    for start in range(0, clip.n_frames, batch_size):
        logits = np.asarray(engine.runner(transform.apply_array(clip.frames[start : start + batch_size])), dtype=np.float32)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        for i, p in enumerate(e / e.sum(axis=1, keepdims=True), start=start):
            lv_area[i] = int((p.argmax(axis=0) == 1).sum())
            if i == 0 or lv_area[i] > lv_area[ed]:
                ed, ed_prob = i, p.copy()
            if i == 0 or lv_area[i] < lv_area[es]:
                es, es_prob = i, p.copy()
            if per_frame:
                full = _full_probabilities(p, transform.box, shape)
                every_frame += _polygons(full.argmax(axis=0).astype(np.uint8), full, i, cm)
    timings["segmentation"] = time.perf_counter() - t0
    unit_scale = "ml" if cm is not None else "px"
    notices: list[str] = []
    method = single_plane_method(view)

    segmentations: list[dict] = []
    conf_lv: dict[int, float] = {}
    for i, p in sorted({ed: ed_prob, es: es_prob}.items()):
        full = _full_probabilities(p, transform.box, shape)
        labels = full.argmax(axis=0).astype(np.uint8)
        lv = labels == 1
        conf_lv[i] = float(full[1][lv].mean()) if lv.any() else 0.0
        if not per_frame:  # with per_frame, the pass has outlined every frame already
            segmentations += _polygons(labels, full, i, cm)
    if per_frame:
        segmentations = every_frame

    # the figures of the proposed polygons (what the reviewer sees), by the review's own rule
    # (contour_lv_volumes, on the label maps made once here for the LA and the LV length too)
    maps = {i: volumes.contour_label_map(segmentations, i, clip.width, clip.height) for i in (ed, es)}
    axes = {i: volumes.lv_axis(m) for i, m in maps.items()}
    figures = volumes.lv_figures(axes[ed], axes[es], cm_per_px=cm, ed_frame=ed, es_frame=es)
    edv, esv, ef = figures["edv_ml"], figures["esv_ml"], figures["ef_percent"]
    if axes[ed] is None or axes[es] is None:
        notices.append("the segmentation found no left ventricle on the end-diastolic or end-systolic frame: no volumes")
    elif cm is None:
        notices.append("this clip has no square cm calibration: volumes need one (give --scale for a video)")
    la = volumes.la_area_length_ml(maps[es], cm, axes[es]) if cm is not None else None
    la = None if la is None else round(la, 2)  # EDV, ESV and EF come rounded by the rule
    model = engine.info
    conf_ed, conf_es = (conf_lv.get(ed, 0.0) if edv is not None else 0.0), (conf_lv.get(es, 0.0) if esv is not None else 0.0)
    la_confidence = float(np.mean([s["confidence"] for s in segmentations if s["structure"] == "la" and s["frame"] == es]
                                  or [0.0]))
    vols: list[dict[str, Any]] = [
        {"name": "lvedv", "value": edv, "unit": unit_scale, "frame": ed, "method": method, "confidence": conf_ed},
        {"name": "lvesv", "value": esv, "unit": unit_scale, "frame": es, "method": method, "confidence": conf_es},
        {"name": "lvef", "value": ef, "unit": "%" if ef is not None else "px", "frame": es, "method": method,
         "confidence": min(conf_ed, conf_es) if ef is not None else 0.0},
        {"name": "la_volume", "value": la, "unit": unit_scale, "frame": es, "method": f"area-length {view.upper()}",
         "confidence": la_confidence if la is not None else 0.0},
    ]
    for v in vols:
        v["confidence"] = round(float(v["confidence"]), 4)
    ed_axis = axes[ed]
    if ed_axis is not None:
        vols.append({"name": "lv_length", "value": None if cm is None else round(ed_axis.length_px * cm, 3),
                     "unit": "cm" if cm is not None else "px", "frame": ed, "method": method,
                     "confidence": round(conf_ed, 4)})
    doubt, why = phases_in_doubt(clip.n_frames, clip.frame_time_ms, es, lv_area)
    if why:
        notices.append(why)
        for v in vols:
            if _VOLUME_PHASES[v["name"]] & doubt:
                v["confidence"] = min(v["confidence"], DOUBTFUL_CONFIDENCE)
    for v in vols:
        v["loinc"] = volume_loinc(v["name"], v["method"])
        v["flagged"] = v["value"] is None or flags.entry_flags(engine.entry, v["name"], v["confidence"])
    return ApicalResult(vols, segmentations, ed, es, model, notices)
