"""LV volumes and EF from a clip's current (reviewed, else proposed) apical contours.

The rule is :mod:`echomeasure.propose.volumes` (single-plane method of discs, ASE 2015): the
contours of a frame are rasterised into a CAMUS label map (:func:`label_map`: myocardium, then
LV cavity, then LA on top; the mask export draws with it too) and measured there exactly as a
model's label map is.  Users: the review UI (figures of the stored contours when a clip opens,
and :func:`live_volumes`, a server function of the viewer, while a contour is edited) and the
CSV export (:func:`reviewed_figures`: the volumes of the reviewed contours next to the model's),
so the numbers on screen and in the export come from this one Python rule.

Only apical contour sets (structures among ``lv``, ``myocardium``, ``la``: the ``apical-seg``
classes) give volumes: an LV contour of a parasternal view is no base for the method of discs.
End-diastole and end-systole are the frames of the stored LV volumes when the clip has them,
else the LV contour frames of largest and smallest area (the apical proposer's rule).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from echomeasure.catalog import APICAL_SEG_LABELS
from echomeasure.errors import StoreError
from echomeasure.ingest.calibration import square_cm_per_px
from echomeasure.propose import volumes
from echomeasure.store import ClipRecord, Store, contours, readers

#: The structures of an apical contour set, with their CAMUS label values.
APICAL_LABELS = APICAL_SEG_LABELS
#: Drawing order of the label map: the LV cavity over the myocardium, the atrium over both.
_DRAW_ORDER = ("myocardium", "lv", "la")


def polygon_area_px(polygon: Sequence[Sequence[float]]) -> float:
    """Area of a closed polygon (shoelace), in square pixels."""
    pts = np.asarray(polygon, np.float64)
    if len(pts) < 3:
        return 0.0
    x, y = pts[:, 0], pts[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def is_apical_set(items: Sequence[Mapping[str, Any]]) -> bool:
    """True when the contours are an apical set: an LV cavity, and only apical structures."""
    names = {str(c.get("structure")) for c in items}
    return "lv" in names and names <= set(APICAL_LABELS)


def phase_frames(items: Sequence[Mapping[str, Any]]) -> tuple[int | None, int | None]:
    """(ED, ES): the LV contour frames of largest and smallest area; None without two LV frames."""
    areas = {int(c["frame"]): polygon_area_px(c["polygon"]) for c in items if c.get("structure") == "lv"}
    if len(areas) < 2:
        return None, None
    return max(areas, key=lambda f: areas[f]), min(areas, key=lambda f: areas[f])


def label_map(items: Sequence[Mapping[str, Any]], frame: int, width_px: int, height_px: int) -> np.ndarray:
    """The CAMUS label map (0 background, 1 LV, 2 myocardium, 3 LA) of one frame's contours."""
    mask = np.zeros((height_px, width_px), np.uint8)
    on_frame = {c["structure"]: c["polygon"] for c in items if int(c["frame"]) == frame}
    for structure in _DRAW_ORDER:
        polygon = on_frame.get(structure)
        if polygon is not None and len(polygon) >= 3:
            pts = np.round(np.asarray(polygon, np.float64)).astype(np.int32)
            cv2.fillPoly(mask, [pts], APICAL_LABELS[structure])
    return mask


def clip_cm_per_px(clip: ClipRecord) -> float | None:
    """The clip's square pixel size (cm): :func:`echomeasure.ingest.calibration.square_cm_per_px`."""
    return square_cm_per_px(clip.region_objects, clip.user_cm_per_px)


def lv_volumes(
    items: Sequence[Mapping[str, Any]],
    *,
    width_px: int,
    height_px: int,
    cm_per_px: float | None,
    ed_frame: int | None,
    es_frame: int | None,
) -> dict[str, Any]:
    """EDV, ESV (ml) and EF (%) of apical contours ``[{"frame", "structure", "polygon"}]``.

    Returns ``{"edv_ml", "esv_ml", "ef_percent", "ed_frame", "es_frame", "note"}``; a value is
    None where it cannot be measured (no LV on the frame, no square cm calibration), and
    ``note`` then says why.
    """
    out: dict[str, Any] = {"edv_ml": None, "esv_ml": None, "ef_percent": None,
                           "ed_frame": ed_frame, "es_frame": es_frame, "note": None}
    if ed_frame is None or es_frame is None:
        out["note"] = "needs LV contours on the end-diastolic and end-systolic frames"
        return out
    if cm_per_px is None:
        out["note"] = "needs a square cm calibration (Calibrate)"
        return out
    for key, frame in (("edv_ml", ed_frame), ("esv_ml", es_frame)):
        axis = volumes.lv_axis(label_map(items, frame, width_px, height_px))
        if axis is not None:
            out[key] = round(volumes.mod_single_plane_ml(axis, cm_per_px), 2)
    if out["edv_ml"] is None or out["esv_ml"] is None:
        out["note"] = "no measurable LV cavity on the end-diastolic or end-systolic frame"
        return out
    ef = volumes.ef_percent(out["edv_ml"], out["esv_ml"])
    out["ef_percent"] = None if ef is None else round(ef, 1)
    return out


def clip_phases(store: Store, clip_id: int, items: Sequence[Mapping[str, Any]],
                stored_volumes: Sequence[Any] | None = None) -> tuple[int | None, int | None]:
    """ED and ES frames of a clip's apical contours: the stored LV volumes' frames (read from the
    store unless the caller has them), else by LV area."""
    if stored_volumes is None:
        stored_volumes = contours.volumes(store, clip_id)
    stored = {v.measurement: v.frame_index for v in stored_volumes}
    lv_frames = {int(c["frame"]) for c in items if c.get("structure") == "lv"}
    ed, es = stored.get("lvedv"), stored.get("lvesv")
    if ed is not None and es is not None and {ed, es} <= lv_frames:
        return ed, es
    return phase_frames(items)


def for_clip(store: Store, clip: ClipRecord, items: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The viewer's ``volumes``: the figures of ``items`` (the clip's current contours), None if not apical."""
    shown = [c for c in items if c.get("status") != "rejected"]
    if not is_apical_set(shown):
        return None
    ed, es = clip_phases(store, clip.id, shown)
    return lv_volumes(shown, width_px=clip.width_px, height_px=clip.height_px, cm_per_px=clip_cm_per_px(clip),
                      ed_frame=ed, es_frame=es)


def reviewed_figures(store: Store, clip: ClipRecord, stored_volumes: Sequence[Any] | None = None) -> dict[str, Any] | None:
    """The clip's LV figures from its reviewed contours, for the export; None when nothing was reviewed.

    The ED and ES LV contours must both be reviewed (accepted, corrected or added) and the set
    apical.  Returns :func:`lv_volumes`' figures plus ``status``: "accepted" when both LV
    contours were accepted as proposed, else "corrected".
    """
    states = contours.current_contours(store, clip.id)
    items = [{"frame": st.frame_index, "structure": st.structure, "polygon": st.polygon, "status": st.status}
             for st in states if st.polygon is not None and st.status != "rejected"]
    if not is_apical_set(items):
        return None
    ed, es = clip_phases(store, clip.id, items, stored_volumes)
    lv_status = {st.frame_index: st.status for st in states if st.structure == "lv"}
    if ed is None or es is None or "proposed" in (lv_status.get(ed), lv_status.get(es)):
        return None
    figures = lv_volumes(items, width_px=clip.width_px, height_px=clip.height_px, cm_per_px=clip_cm_per_px(clip),
                         ed_frame=ed, es_frame=es)
    figures["status"] = "accepted" if lv_status[ed] == lv_status[es] == "accepted" else "corrected"
    return figures


def live_volumes(store: Store, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The viewer's live request: ``{"clip_id", "ed_frame", "es_frame", "contours": [...]}`` -> figures.

    ``contours`` are the polygons on screen (edits included) of the ED and ES frames.

    Raises
    ------
    StoreError
        A bad payload, an unknown clip, or a reader-study clip (its contours are not shown).
    """
    try:
        clip_id = int(payload["clip_id"])
        ed = None if payload.get("ed_frame") is None else int(payload["ed_frame"])
        es = None if payload.get("es_frame") is None else int(payload["es_frame"])
        items = [{"frame": int(c["frame"]), "structure": str(c["structure"]),
                  "polygon": [[float(x), float(y)] for x, y in c["polygon"]]} for c in payload.get("contours") or []]
    except (KeyError, TypeError, ValueError):
        raise StoreError("a volume request needs its clip, ED and ES frames and contours") from None
    if readers.has_readers(store, clip_id):
        raise StoreError(f"clip {clip_id} is a reader-study clip: its contours are not shown")
    clip = store.clip(clip_id)
    if not is_apical_set(items):
        return lv_volumes([], width_px=clip.width_px, height_px=clip.height_px, cm_per_px=None,
                          ed_frame=None, es_frame=None)
    return lv_volumes(items, width_px=clip.width_px, height_px=clip.height_px, cm_per_px=clip_cm_per_px(clip),
                      ed_frame=ed, es_frame=es)


__all__ = ["APICAL_LABELS", "clip_cm_per_px", "clip_phases", "for_clip", "is_apical_set", "label_map",
           "live_volumes", "lv_volumes", "phase_frames", "polygon_area_px", "reviewed_figures"]
