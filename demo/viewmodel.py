"""What the review UI shows, built from store records: pure functions, no Gradio, no I/O.

The caliper viewer (:mod:`demo.caliper`) takes two JSON objects: the clip description
(:func:`viewer_clip`: frame URLs, size, frame time, ED/ES, calibration regions) and the viewer
value (:func:`viewer_value`: one entry per measurement with its current and proposed points,
value, confidence and review status).  The worklist table comes from :func:`worklist_rows`.

Low-confidence flag: raw confidences are model-specific (PLAX ~0.01-0.15), so each model
version has its own threshold, measured on held-out cases (``low_confidence_below`` in its
registry metrics, see :func:`echomeasure.training.evaluate.confidence_flag`).  The view
functions take a ``thresholds`` lookup ``(model_name, model_version) -> threshold``; the default
is the fixed :data:`LOW_CONFIDENCE_THRESHOLD` (pure), and the app passes a
:class:`RegistryThresholds`, the one piece here that reads anything (the weights manifest,
once per model version).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from echomeasure import catalog
from echomeasure.store import ClipRecord, ClipSummary, FrameImageRecord, MeasurementState

log = logging.getLogger(__name__)

#: Flag threshold when the model's own is unknown (a version the registry does not hold, or one
#: measured before thresholds were recorded): a proposal below it is flagged and drawn dashed.
LOW_CONFIDENCE_THRESHOLD = 0.5
#: Registry metric holding a model version's own threshold.
THRESHOLD_METRIC = "low_confidence_below"

#: ``(model_name, model_version) -> threshold``: a proposal below it is flagged.
ThresholdLookup = Callable[[str | None, str | None], float]

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


def is_low_confidence(confidence: float | None, threshold: float = LOW_CONFIDENCE_THRESHOLD) -> bool:
    """True for a model proposal the reviewer should look at closely (confidence below ``threshold``)."""
    return confidence is not None and confidence < threshold


def fixed_threshold(model_name: str | None, model_version: str | None) -> float:
    """The default :data:`ThresholdLookup`: :data:`LOW_CONFIDENCE_THRESHOLD` for every model."""
    return LOW_CONFIDENCE_THRESHOLD


#: Metric of the registry entry saying how much worse the flagged quarter was held-out.
FLAG_RATIO_METRIC = "flagged_mae_ratio"
#: Metric: the held-out 2nd percentile of confidence; below it a proposal is always flagged.
FLOOR_METRIC = "confidence_floor"
#: Flag the lowest quarter only for models whose flagged quarter had at least this much more error.
MIN_FLAGGED_ERROR_RATIO = 1.2


class RegistryThresholds:
    """:data:`ThresholdLookup` from the weights registry: each version's ``low_confidence_below``.

    Read once per ``(name, version)`` and cached (a version's metrics change only when it is
    re-measured; restart the app to pick that up).  Falls back to ``fallback``
    (:data:`LOW_CONFIDENCE_THRESHOLD`) when the registry does not hold the version or its
    metrics have no usable threshold (cached: a settled answer), or when the registry cannot be
    read (logged, not cached: the next lookup reads again).  It never raises.  A version whose
    held-out ``flagged_mae_ratio`` is below :data:`MIN_FLAGGED_ERROR_RATIO` gets its
    ``confidence_floor`` instead (0 when unknown): its confidence did not rank errors within the
    validated range, so only proposals below anything seen held-out are flagged.

    Parameters
    ----------
    weights_dir : path, optional
        Weights folder (default: the registry's, ``$ECHOMEASURE_WEIGHTS`` or ``weights/``).
    list_entries : callable ``(weights_dir) -> iterable of WeightsEntry``, optional
        Reads the registry (default :func:`echomeasure.models.registry.list_entries`; injectable
        for tests).
    fallback : float
        Threshold when the model's own is unknown.
    """

    def __init__(
        self,
        weights_dir: str | Path | None = None,
        list_entries: Callable[[Any], Iterable[Any]] | None = None,
        fallback: float = LOW_CONFIDENCE_THRESHOLD,
    ) -> None:
        self.weights_dir = weights_dir
        self.fallback = float(fallback)
        self._list_entries = list_entries
        self._cache: dict[tuple[str, str], float] = {}

    def __call__(self, model_name: str | None, model_version: str | None) -> float:
        if not model_name or not model_version:
            return self.fallback
        key = (model_name, model_version)
        if key in self._cache:
            return self._cache[key]
        try:
            list_entries = self._list_entries
            if list_entries is None:
                from echomeasure.models.registry import list_entries
            entry = next((e for e in list_entries(self.weights_dir)
                          if (e.name, e.version) == key), None)
            metrics = {} if entry is None else (entry.metrics or {})
            value = float(metrics.get(THRESHOLD_METRIC, math.nan))
            ratio = float(metrics.get(FLAG_RATIO_METRIC, math.nan))
            floor = float(metrics.get(FLOOR_METRIC, 0.0) or 0.0)
        except Exception as exc:  # noqa: BLE001 - the UI must open the clip whatever the registry does
            log.warning("could not read the low-confidence threshold of %s %s from the registry (%s); "
                        "flagging below %g", model_name, model_version, exc, self.fallback)
            return self.fallback
        if math.isfinite(ratio) and ratio < MIN_FLAGGED_ERROR_RATIO:
            # on held-out cases the low-confidence quarter was not worse than the rest: a flag
            # would send the reviewer to the wrong proposals, so only what lies below anything
            # seen held-out (wrong view, failed caliper, implausible value) is flagged
            threshold = floor if math.isfinite(floor) and floor > 0 else 0.0
            log.info("%s %s: confidence does not rank errors (flagged/unflagged error %.2f); no flags",
                     model_name, model_version, ratio)
        elif math.isfinite(value) and value > 0:
            threshold = value
        else:
            threshold = self.fallback
            log.info("no low-confidence threshold recorded for %s %s; flagging below %g",
                     model_name, model_version, threshold)
        self._cache[key] = threshold
        return threshold


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


def measurement_entry(st: MeasurementState, thresholds: ThresholdLookup = fixed_threshold) -> dict[str, Any]:
    """One row of the viewer value from a measurement's state in the store.

    ``thresholds`` gives the low-confidence threshold of the model version that made the
    proposal (default: :data:`LOW_CONFIDENCE_THRESHOLD` for all).
    """
    spec = catalog.get(st.measurement)
    threshold = thresholds(st.model_name, st.model_version) if st.confidence is not None else None
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
        "low_confidence": threshold is not None and is_low_confidence(st.confidence, threshold),
        "low_confidence_below": threshold,
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
    thresholds: ThresholdLookup = fixed_threshold,
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
    thresholds
        Low-confidence threshold per model version (:class:`RegistryThresholds` in the app).
    """
    return {
        "clip_id": clip_id,
        "measurements": [measurement_entry(st, thresholds) for st in states],
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
