"""LV volumes and EF from a clip's current (reviewed, else proposed) apical contours.

The rule is :func:`echomeasure.propose.volumes.contour_lv_volumes` (single-plane method of discs,
ASE 2015, on the label map of the contours: myocardium, then LV cavity, then LA on top), the
rule the apical proposer measures its proposed polygons with (the same label maps and
:func:`~echomeasure.propose.volumes.lv_figures`).  So the figures of
contours nobody changed are the proposed figures (same polygons, same calibration, same rule),
and only an edit changes them.  Users: the review UI (:func:`figures` of the
stored contours when a clip opens, and :func:`live_volumes`, a server function of the viewer,
while a contour is edited) and the CSV export (:func:`reviewed_figures`: the volumes of the
reviewed contours next to the model's); both go through :func:`figures`, so the numbers on
screen and in the export come from one Python function.

Only apical contour sets (structures among ``lv``, ``myocardium``, ``la``: the ``apical-seg``
classes) give volumes: an LV contour of a parasternal view is no base for the method of discs.
End-diastole and end-systole are the frames of the stored LV volumes when the clip has them,
else the LV contour frames of largest and smallest area (the apical proposer's rule).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from echomeasure.catalog import APICAL_SEG_LABELS
from echomeasure.errors import StoreError
from echomeasure.ingest.calibration import square_cm_per_px
from echomeasure.propose import volumes
from echomeasure.store import ClipRecord, Store, contours, readers

#: The structures of an apical contour set, with their CAMUS label values.
APICAL_LABELS = APICAL_SEG_LABELS
#: The label map of one frame's contours and the EDV/ESV/EF rule (defined once, in propose.volumes).
label_map = volumes.contour_label_map
lv_volumes = volumes.contour_lv_volumes


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


def clip_cm_per_px(clip: ClipRecord) -> float | None:
    """The clip's square pixel size (cm): :func:`echomeasure.ingest.calibration.square_cm_per_px`."""
    return square_cm_per_px(clip.region_objects, clip.user_cm_per_px)


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


def figures(store: Store, clip: ClipRecord, items: Sequence[Mapping[str, Any]],
            stored_volumes: Sequence[Any] | None = None) -> dict[str, Any] | None:
    """The LV figures (:func:`lv_volumes`) of a clip's current contours ``items``; None if not apical.

    ``items`` are ``{"frame", "structure", "polygon", "status"}``; rejected ones are left out.
    The one function behind the viewer's figures and the export's reviewed figures.
    """
    shown = [c for c in items if c.get("status") != "rejected" and c.get("polygon") is not None]
    if not is_apical_set(shown):
        return None
    ed, es = clip_phases(store, clip.id, shown, stored_volumes)
    return lv_volumes(shown, width_px=clip.width_px, height_px=clip.height_px, cm_per_px=clip_cm_per_px(clip),
                      ed_frame=ed, es_frame=es)


def _unchanged(state: contours.ContourState) -> bool:
    """True when a contour is its proposal's polygon, point for point (proposed or accepted, or
    corrected back to exactly the proposed points)."""
    return (state.proposal is not None and state.polygon is not None
            and state.polygon == state.proposal.polygon)


def reviewed_figures(store: Store, clip: ClipRecord, stored_volumes: Sequence[Any] | None = None) -> dict[str, Any] | None:
    """The clip's LV figures from its reviewed contours, for the export; None when nothing was reviewed.

    Returns :func:`figures` plus ``statuses``, the review status of each figure: EDV is
    reviewed when the end-diastolic LV contour is (accepted, corrected or added), ESV when the
    end-systolic one is, EF when both are; a figure whose frame was not reviewed is None there
    (the export keeps the proposed value for it).  A status is "accepted" when every apical
    contour of its frame(s) is still its proposal's polygon (so the figure is the proposed one),
    else "corrected".  ``status`` is that of EF (None unless both frames were reviewed).
    """
    states = contours.current_contours(store, clip.id)
    items = [{"frame": st.frame_index, "structure": st.structure, "polygon": st.polygon, "status": st.status}
             for st in states]
    out = figures(store, clip, items, stored_volumes)
    if out is None or out["ed_frame"] is None or out["es_frame"] is None:
        return None
    lv_status = {st.frame_index: st.status for st in states if st.structure == "lv"}

    def status_of(frames: tuple[int, ...]) -> str | None:
        if any(lv_status.get(f) in (None, "proposed") for f in frames):
            return None
        on_frames = [st for st in states if st.frame_index in frames and st.structure in APICAL_LABELS]
        return "accepted" if all(_unchanged(st) for st in on_frames) else "corrected"

    ed, es = out["ed_frame"], out["es_frame"]
    out["statuses"] = {"edv_ml": status_of((ed,)), "esv_ml": status_of((es,)), "ef_percent": status_of((ed, es))}
    if not any(out["statuses"].values()):
        return None
    out["status"] = out["statuses"]["ef_percent"]
    return out


#: Most contours one live request may carry (the ED and ES frames' structures, with room to spare).
MAX_LIVE_CONTOURS = 32


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
        raw = list(payload.get("contours") or [])
        frames_of = [int(c["frame"]) for c in raw]
    except (KeyError, TypeError, ValueError, OverflowError):
        raise StoreError("a volume request needs its clip, ED and ES frames and contours") from None
    if readers.has_readers(store, clip_id):
        raise StoreError(f"clip {clip_id} is a reader-study clip: its contours are not shown")
    clip = store.clip(clip_id)
    # the store's own bounds (a vertex far outside the image made each request cost seconds of CPU)
    if any(f is not None and not 0 <= f < clip.n_frames for f in (ed, es, *frames_of)):
        raise StoreError(f"a frame of the volume request is not a frame of clip {clip_id}")
    if len(raw) > MAX_LIVE_CONTOURS:
        raise StoreError(f"a volume request has at most {MAX_LIVE_CONTOURS} contours")
    try:
        items = [{"frame": f, "structure": str(c["structure"]),
                  "polygon": [list(p) for p in contours.checked_polygon(c["polygon"], clip.width_px, clip.height_px)]}
                 for f, c in zip(frames_of, raw, strict=True)]
    except (KeyError, TypeError):
        raise StoreError("a volume request needs its clip, ED and ES frames and contours") from None
    if not is_apical_set(items):
        return lv_volumes([], width_px=clip.width_px, height_px=clip.height_px, cm_per_px=None,
                          ed_frame=None, es_frame=None)
    return lv_volumes(items, width_px=clip.width_px, height_px=clip.height_px, cm_per_px=clip_cm_per_px(clip),
                      ed_frame=ed, es_frame=es)


__all__ = ["APICAL_LABELS", "clip_cm_per_px", "clip_phases", "figures", "is_apical_set", "label_map",
           "live_volumes", "lv_volumes", "phase_frames", "polygon_area_px", "reviewed_figures"]
