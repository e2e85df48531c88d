"""Chamber volumes from apical label maps: LV method of discs, LA area-length (ASE 2015).

Input is a CAMUS-style label map (0 background, 1 LV cavity, 2 LV myocardium, 3 left atrium) of
one frame, as a segmentation model or a reviewer's contour gives it, and the pixel size in cm.

LV (single plane): the cavity's outline (largest connected component) is traced; the mitral
annulus is where the cavity meets the atrium (or, without an atrium, the stretch of outline not
covered by myocardium); the long axis runs from the middle of the annulus to the outline point
farthest from it (the apex).  Twenty discs perpendicular to the long axis, each as wide as the
outline at its centre, give ``V = sum(pi d^2 / 4) L / 20``.  Biplane: ``sum(pi d1 d2 / 4) L / 20``
with ``L`` the longer of the two long axes.  LA: ``8 A^2 / (3 pi L)`` with ``L`` from the middle
of the annulus to the farthest atrial point.

Contours (polygons) are measured through their label map (:func:`contour_label_map`: myocardium,
then LV cavity, then LA on top), and :func:`contour_lv_volumes` is the one rule for the EDV, ESV
and EF of a set of apical contours: the apical proposer measures the polygons it proposes with
it, the review UI and the export the reviewed ones (:mod:`echomeasure.contour_volumes`), so a
contour nobody changed has the proposed figures everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from echomeasure.catalog import APICAL_SEG_LABELS

LABEL_LV, LABEL_MYO, LABEL_LA = 1, 2, 3
N_DISCS = 20
#: The structures of an apical contour set and their label values, in drawing order: the LV
#: cavity over the myocardium, the atrium over both.
CONTOUR_LABELS = {name: APICAL_SEG_LABELS[name] for name in ("myocardium", "lv", "la")}


@dataclass(frozen=True)
class LvAxis:
    """The LV long axis and disc diameters of one frame (pixels unless named)."""

    apex_px: tuple[float, float]
    annulus_mid_px: tuple[float, float]
    annulus_px: tuple[tuple[float, float], tuple[float, float]]
    length_px: float
    diameters_px: np.ndarray  # (N_DISCS,), base to apex
    area_px: float
    contour_px: np.ndarray  # (K, 2) closed outline


def _largest_component(mask: np.ndarray) -> np.ndarray:
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(mask, dtype=bool)
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return lab == k


def _outline(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    c = max(contours, key=cv2.contourArea)
    return c.reshape(-1, 2).astype(np.float64)


def _chord_widths(contour: np.ndarray, origin: np.ndarray, axis: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Width of a closed polygon along lines perpendicular to ``axis`` at ``origin + s axis``."""
    perp = np.array([-axis[1], axis[0]])
    rel = contour - origin
    s = rel @ axis  # along the axis
    t = rel @ perp  # across it
    s2, t2 = np.roll(s, -1), np.roll(t, -1)
    out = np.zeros(len(positions))
    for i, pos in enumerate(positions):
        crosses = (s - pos) * (s2 - pos) <= 0
        ds = s2[crosses] - s[crosses]
        ok = np.abs(ds) > 1e-12
        if not np.any(ok):
            continue
        frac = (pos - s[crosses][ok]) / ds[ok]
        ts = t[crosses][ok] + frac * (t2[crosses][ok] - t[crosses][ok])
        out[i] = float(ts.max() - ts.min()) + 1.0  # pixel centres: the outline runs through the edge pixels
    return out


def lv_axis(labels: np.ndarray) -> LvAxis | None:
    """Long axis and disc diameters of the LV cavity of one label map; None without an LV."""
    lv = _largest_component(labels == LABEL_LV)
    if lv.sum() < 20:
        return None
    contour = _outline(lv)
    near = cv2.dilate((labels == LABEL_LA).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    on_base = near[contour[:, 1].astype(int), contour[:, 0].astype(int)]
    if on_base.sum() < 2:
        # no atrium in view: the outline not covered by myocardium is the annulus opening
        myo = cv2.dilate((labels == LABEL_MYO).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        on_base = ~myo[contour[:, 1].astype(int), contour[:, 0].astype(int)]
    if on_base.sum() < 2:
        return None
    base = contour[on_base]
    centred = base - base.mean(axis=0)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0]
    proj = centred @ direction
    a, b = base[int(np.argmin(proj))], base[int(np.argmax(proj))]
    mid = (a + b) / 2.0
    apex = contour[int(np.argmax(np.hypot(*(contour - mid).T)))]
    length = float(np.hypot(*(apex - mid)))
    if length < 5:
        return None
    axis = (apex - mid) / length
    positions = (np.arange(N_DISCS) + 0.5) / N_DISCS * length
    diam = _chord_widths(contour, mid, axis, positions)
    return LvAxis(tuple(apex), tuple(mid), (tuple(a), tuple(b)), length, diam, float(lv.sum()), contour)


def mod_single_plane_ml(axis: LvAxis, cm_per_px: float) -> float:
    """Single-plane method-of-discs volume (ml)."""
    d_cm = axis.diameters_px * cm_per_px
    return float(np.sum(math.pi * d_cm**2 / 4.0) * axis.length_px * cm_per_px / N_DISCS)


def mod_biplane_ml(a4c: LvAxis, cm_4c: float, a2c: LvAxis, cm_2c: float) -> float:
    """Biplane method-of-discs volume (ml); each view keeps its own pixel size."""
    d1, d2 = a4c.diameters_px * cm_4c, a2c.diameters_px * cm_2c
    h = max(a4c.length_px * cm_4c, a2c.length_px * cm_2c) / N_DISCS
    return float(np.sum(math.pi * d1 * d2 / 4.0) * h)


def la_area_length_ml(labels: np.ndarray, cm_per_px: float, axis: LvAxis | None = None) -> float | None:
    """LA volume by area-length ``8 A^2 / (3 pi L)`` (ml); None without an atrium."""
    la = _largest_component(labels == LABEL_LA)
    if la.sum() < 20:
        return None
    area_cm2 = float(la.sum()) * cm_per_px**2
    axis = axis or lv_axis(labels)
    ys, xs = np.nonzero(la)
    if axis is not None:
        mid = np.asarray(axis.annulus_mid_px)
        length_px = float(np.max(np.hypot(xs - mid[0], ys - mid[1])))
    else:  # no LV to anchor the annulus: the atrium's own longest extent
        c = _outline(la)
        length_px = float(max(np.hypot(*(c - p).T).max() for p in c[:: max(1, len(c) // 64)]))
    length_cm = (length_px + 0.5) * cm_per_px
    return float(8.0 * area_cm2**2 / (3.0 * math.pi * length_cm))


def ef_percent(edv_ml: float, esv_ml: float) -> float | None:
    """Ejection fraction (%) from end-diastolic and end-systolic volumes."""
    return None if edv_ml <= 0 else 100.0 * (edv_ml - esv_ml) / edv_ml


def contour_label_map(items: Sequence[Mapping[str, Any]], frame: int, width_px: int, height_px: int) -> np.ndarray:
    """The label map (0 background, 1 LV, 2 myocardium, 3 LA) of one frame's apical contours.

    ``items`` are ``{"frame", "structure", "polygon"}`` (polygon ``[[x, y], ...]`` in image
    pixels); vertices are rounded to pixel centres, other structures and frames are ignored.
    """
    mask = np.zeros((height_px, width_px), np.uint8)
    on_frame = {c["structure"]: c["polygon"] for c in items if int(c["frame"]) == frame}
    for structure, label in CONTOUR_LABELS.items():
        polygon = on_frame.get(structure)
        if polygon is not None and len(polygon) >= 3:
            # vertices far outside the image (never stored: the store refuses them) would overflow
            # the int32 cast and cost fillPoly seconds: held to one pixel around the image
            pts = np.round(np.asarray(polygon, np.float64))
            pts = np.clip(np.nan_to_num(pts), -1, [width_px, height_px]).astype(np.int32)
            cv2.fillPoly(mask, [pts], label)
    return mask


def contour_lv_volumes(
    items: Sequence[Mapping[str, Any]],
    *,
    width_px: int,
    height_px: int,
    cm_per_px: float | None,
    ed_frame: int | None,
    es_frame: int | None,
) -> dict[str, Any]:
    """EDV, ESV (ml, 2 decimals) and EF (%, 1 decimal) of apical contours ``[{"frame", "structure", "polygon"}]``.

    The single-plane method of discs on :func:`contour_label_map` of the ED and ES frames
    (:func:`lv_figures` of their LV axes).  Returns ``{"edv_ml", "esv_ml", "ef_percent",
    "ed_frame", "es_frame", "note"}``; a value is None where it cannot be measured (no LV on the
    frame, no square cm calibration), and ``note`` then says why.
    """
    if ed_frame is None or es_frame is None or cm_per_px is None:
        return lv_figures(None, None, cm_per_px=cm_per_px, ed_frame=ed_frame, es_frame=es_frame)
    ed_axis, es_axis = (lv_axis(contour_label_map(items, f, width_px, height_px)) for f in (ed_frame, es_frame))
    return lv_figures(ed_axis, es_axis, cm_per_px=cm_per_px, ed_frame=ed_frame, es_frame=es_frame)


def lv_figures(ed_axis: LvAxis | None, es_axis: LvAxis | None, *, cm_per_px: float | None,
               ed_frame: int | None, es_frame: int | None) -> dict[str, Any]:
    """The rule of :func:`contour_lv_volumes` on the LV axes of the ED and ES label maps (for a
    caller that has the maps already): EDV, ESV rounded to 2 decimals, EF to 1, and a note."""
    out: dict[str, Any] = {"edv_ml": None, "esv_ml": None, "ef_percent": None,
                           "ed_frame": ed_frame, "es_frame": es_frame, "note": None}
    if ed_frame is None or es_frame is None:
        out["note"] = "needs LV contours on the end-diastolic and end-systolic frames"
        return out
    if cm_per_px is None:
        out["note"] = "needs a square cm calibration (Calibrate)"
        return out
    for key, axis in (("edv_ml", ed_axis), ("esv_ml", es_axis)):
        if axis is not None:
            out[key] = round(mod_single_plane_ml(axis, cm_per_px), 2)
    if out["edv_ml"] is None or out["esv_ml"] is None:
        out["note"] = "no measurable LV cavity on the end-diastolic or end-systolic frame"
        return out
    ef = ef_percent(out["edv_ml"], out["esv_ml"])
    out["ef_percent"] = None if ef is None else round(ef, 1)
    return out
