"""What the review UI shows, built from store records: pure functions, no Gradio, no I/O.

The caliper viewer (:mod:`demo.caliper`) takes two JSON objects: the clip description
(:func:`viewer_clip`: frame URLs, size, frame time, ED/ES, calibration regions) and the viewer
value (:func:`viewer_value`: one entry per measurement with its current and proposed points,
value, confidence and review status).  The worklist table comes from :func:`worklist_rows`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from echomeasure import catalog
from echomeasure.store import ClipRecord, ClipSummary, FrameImageRecord, MeasurementState

#: A proposal whose model confidence is below this is flagged in the table and drawn dashed.
LOW_CONFIDENCE_THRESHOLD = 0.5

#: Short names as sonographers write them.
SHORT_NAMES: dict[str, str] = {
    "ivsd": "IVSd",
    "lvidd": "LVIDd",
    "lvpwd": "LVPWd",
    "lvids": "LVIDs",
    "la": "LA",
    "aortic_root": "Ao root",
    "av_vmax": "AV Vmax",
    "tr_vmax": "TR Vmax",
    "lvot_vmax": "LVOT Vmax",
    "mv_e": "MV E",
    "mv_a": "MV A",
    "mv_ea": "E/A",
}

WORKLIST_HEADERS: tuple[str, ...] = ("clip", "kind", "reviewed", "status")

_nonce = itertools.count(1)


def short_name(name: str) -> str:
    """Display name of a catalogue measurement (``lvidd`` -> ``LVIDd``)."""
    return SHORT_NAMES.get(name, name)


def frame_url(path: Path) -> str:
    """URL under which Gradio serves a file of a static (or allowed) path."""
    return f"/gradio_api/file={Path(path).resolve()}"


def _points(points: Sequence[Sequence[float]] | None) -> list[list[float]] | None:
    if points is None:
        return None
    return [[float(p[0]), float(p[1])] for p in points]


def is_low_confidence(confidence: float | None) -> bool:
    """True for a model proposal the reviewer should look at closely."""
    return confidence is not None and confidence < LOW_CONFIDENCE_THRESHOLD


def _phase_frames(states: Iterable[MeasurementState]) -> tuple[int | None, int | None]:
    """ED and ES frames: where the models put the end-diastolic and end-systolic measurements."""
    ed: int | None = None
    es: int | None = None
    for st in states:
        spec = catalog.CATALOG.get(st.measurement)
        frame = st.proposed_frame_index if st.proposed_frame_index is not None else st.frame_index
        if spec is None or frame is None:
            continue
        if spec.phase == "ed" and ed is None:
            ed = frame
        elif spec.phase == "es" and es is None:
            es = frame
    return ed, es


def addable_measurements(kind: str) -> list[dict[str, Any]]:
    """Catalogue measurements a reviewer can place by hand on a clip of this kind."""
    return [
        {
            "name": m.name,
            "short": short_name(m.name),
            "title": m.title,
            "mode": m.mode,
            "unit": m.unit,
            "n_points": m.n_points,
        }
        for m in catalog.CATALOG.values()
        if m.mode == kind and m.n_points > 0
    ]


def viewer_clip(
    clip: ClipRecord,
    frames: Sequence[FrameImageRecord],
    states: Sequence[MeasurementState] = (),
) -> dict[str, Any]:
    """The caliper viewer's ``clip`` prop.

    Parameters
    ----------
    clip
        The stored clip.
    frames
        Its stored frame images (all frames, in index order).
    states
        Its measurements, to find the ED and ES frames the models chose.

    Returns
    -------
    dict
        ``{"id", "label", "kind", "width", "height", "n_frames", "frame_time_ms", "frames": [url],
        "ed_frame", "es_frame", "calibration": {"source", "user_cm_per_px", "regions"},
        "addable": [...]}``.  Regions keep the raw fields of
        :class:`echomeasure.ingest.clip.Region`, which the browser needs to show live values.
    """
    ed, es = _phase_frames(states)
    ordered = sorted(frames, key=lambda f: f.frame_index)
    return {
        "id": clip.id,
        "label": clip.label,
        "kind": clip.kind,
        "width": clip.width_px,
        "height": clip.height_px,
        "n_frames": clip.n_frames,
        "frame_time_ms": clip.frame_time_ms,
        "frames": [frame_url(f.path) for f in ordered],
        "ed_frame": ed,
        "es_frame": es,
        "calibration": {
            "source": clip.calibration_source,
            "user_cm_per_px": clip.user_cm_per_px,
            "regions": [dict(r) for r in clip.regions],
        },
        "addable": addable_measurements(clip.kind),
    }


def measurement_entry(st: MeasurementState) -> dict[str, Any]:
    """One row of the viewer value from a measurement's state in the store."""
    spec = catalog.get(st.measurement)
    points = st.points
    frame = st.frame_index
    if st.status == "rejected":
        # Keep the rejected proposal's points so it can be shown (faintly) and accepted again.
        points = st.proposed_points
        frame = st.proposed_frame_index
    return {
        "name": st.measurement,
        "short": short_name(st.measurement),
        "title": spec.title,
        "mode": spec.mode,
        "unit": st.unit or spec.unit,
        "n_points": spec.n_points,
        "frame": frame,
        "points": _points(points) or [],
        "saved_frame": frame,
        "saved_points": _points(points) or [],
        "value": st.value,
        "proposed_value": st.proposed_value,
        "proposed_unit": st.proposed_unit,
        "confidence": st.confidence,
        "low_confidence": is_low_confidence(st.confidence),
        "status": st.status,
        "proposal_id": st.proposal_id,
        "reviewer": st.reviewer,
    }


def viewer_value(
    clip_id: int | None,
    states: Sequence[MeasurementState],
    *,
    committed: Iterable[str] = (),
    reload: bool = False,
) -> dict[str, Any]:
    """The caliper viewer's value.

    Parameters
    ----------
    clip_id
        The clip shown (None: nothing open).
    states
        ``Store.current_measurements(clip_id)``.
    committed
        Names just saved: the browser replaces these entries and keeps local edits of the others.
    reload
        The clip was (re)opened: the browser drops all local edits.
    """
    return {
        "clip_id": clip_id,
        "measurements": [measurement_entry(st) for st in states],
        "committed": sorted(set(committed)),
        "reload": reload,
        "nonce": next(_nonce),  # makes every server value differ, so the browser always sees it
    }


def empty_viewer_value() -> dict[str, Any]:
    """The viewer value with no clip open."""
    return viewer_value(None, (), reload=True)


def worklist_rows(summaries: Sequence[ClipSummary]) -> list[list[Any]]:
    """Rows of the worklist table (columns :data:`WORKLIST_HEADERS`)."""
    return [
        [
            s.clip_id,
            f"{s.kind} · {s.n_frames} fr" + ("" if s.calibration_source == "dicom" else f" · {s.calibration_source}"),
            f"{s.n_reviewed}/{max(s.n_proposed, s.n_reviewed)}",
            s.status,
        ]
        for s in summaries
    ]
