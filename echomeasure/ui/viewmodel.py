"""What the review UI shows, built from store records: pure functions, no Gradio, no I/O.

The caliper viewer (:mod:`echomeasure.ui.caliper`) takes two JSON objects: the clip description
(:func:`viewer_clip`: frame URLs, size, frame time, ED/ES, calibration regions) and the viewer
value (:func:`viewer_value`: one entry per measurement with its current and proposed points,
value, confidence and review status).  The worklist table comes from :func:`worklist_rows`.

Low-confidence flag: raw confidences are model-specific (PLAX ~0.01-0.15), so each model
version has its own threshold, measured on held-out cases (``low_confidence_below`` in its
registry entry's ``thresholds``, see :func:`echomeasure.training.evaluate.confidence_flag`).  The view
functions take a ``thresholds`` lookup ``(model_name, model_version, measurement) -> threshold`` (a
version may carry its figures per measurement: :mod:`echomeasure.propose.flags`); the default
is the fixed :data:`LOW_CONFIDENCE_THRESHOLD` (pure), and the app passes a
:class:`RegistryThresholds`, the one piece here that reads anything (the weights manifest,
once per model version).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from echomeasure import catalog
from echomeasure.store import ClipRecord, ClipSummary, FrameImageRecord, MeasurementState

log = logging.getLogger(__name__)

#: Flag threshold when the model's own is unknown (a version the registry does not hold, or one
#: measured before thresholds were recorded): a proposal below it is flagged and drawn dashed.
LOW_CONFIDENCE_THRESHOLD = 0.5
#: ``(model_name, model_version, measurement) -> threshold``: a proposal below it is flagged.
ThresholdLookup = Callable[[str | None, str | None, str | None], float]

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

WORKLIST_HEADERS: tuple[str, ...] = ("clip", "status", "done", "view · frames · calib. · study date")

#: Worklist filter choices (a clip's review status, or every clip).
WORKLIST_FILTERS: tuple[str, ...] = ("all", "to review", "in review", "reviewed", "no proposals")

#: The view a model's proposals imply, for the worklist (clips stored before the clip view was kept).
VIEW_OF_MODEL: dict[str, str] = {
    "plax-linear": "PLAX",
    "plax-seg": "PLAX",
    "apical-seg": "A4C",
    "doppler-peaks": "Doppler",
}

#: How the worklist and the clip header name a calibration source.
CALIBRATION_NAMES: dict[str, str] = {"dicom": "DICOM", "user": "user", "none": "none (px)"}

#: Frames are numbered from 0 everywhere: store, CSV/JSON exports and the UI ("frame 0" is the
#: first frame of the clip, as ``frame_index`` in the store).
FIRST_FRAME_NUMBER = 0

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
    """True for a model proposal the reviewer should look at closely (:func:`echomeasure.propose.flags.is_flagged`)."""
    from echomeasure.propose.flags import is_flagged

    return is_flagged(confidence, threshold)


def fixed_threshold(model_name: str | None, model_version: str | None, measurement: str | None = None) -> float:
    """The default :data:`ThresholdLookup`: :data:`LOW_CONFIDENCE_THRESHOLD` for every model."""
    return LOW_CONFIDENCE_THRESHOLD


class RegistryThresholds:
    """:data:`ThresholdLookup` from the weights registry: each version's flag figures, read by the
    one rule of :func:`echomeasure.propose.flags.flag_threshold` (per measurement where the version
    has them).

    Read once per ``(name, version)`` and cached (a version's metrics change only when it is
    re-measured; restart the app to pick that up).  Falls back to ``fallback``
    (:data:`LOW_CONFIDENCE_THRESHOLD`) when the registry does not hold the version or its
    thresholds have no usable value (cached: a settled answer), or when the registry cannot be
    read (logged, not cached: the next lookup reads again).  It never raises.  A version whose
    held-out ``flagged_mae_ratio`` is below :data:`echomeasure.propose.flags.MIN_FLAGGED_ERROR_RATIO` gets its
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
        self._cache: dict[tuple[str, str], dict[str, Any]] = {}

    def __call__(self, model_name: str | None, model_version: str | None, measurement: str | None = None) -> float:
        if not model_name or not model_version:
            return self.fallback
        # the one rule shared with `measure` JSON ("flagged"): echomeasure.propose.flags
        from echomeasure.propose.flags import flag_threshold

        key = (model_name, model_version)
        if key in self._cache:
            return flag_threshold(self._cache[key], self.fallback, measurement)
        try:
            reader: Callable[[Any], Iterable[Any]]
            if self._list_entries is not None:
                reader = self._list_entries
            else:
                from echomeasure.models.registry import list_entries as registry_entries

                reader = registry_entries
            entry = next((e for e in reader(self.weights_dir)
                          if (e.name, e.version) == key), None)
            metrics = {} if entry is None else entry.thresholds.to_json()
        except Exception as exc:  # noqa: BLE001 - the UI must open the clip whatever the registry does
            log.warning("could not read the low-confidence threshold of %s %s from the registry (%s); "
                        "flagging below %g", model_name, model_version, exc, self.fallback)
            return self.fallback
        self._cache[key] = metrics
        return flag_threshold(metrics, self.fallback, measurement)


def plausible_ranges() -> dict[str, list[Any]]:
    """``name -> [low, high, unit]``: the catalogue's plausibility limits, for the browser."""
    return {name: [lo, hi, catalog.CATALOG[name].unit] for name, (lo, hi) in catalog.PLAUSIBLE_RANGE.items()}


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
    contours: Sequence[dict[str, Any]] = (),
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
    contours
        Its contours as the viewer draws them (:func:`echomeasure.ui.contour_review.contours_for`).

    Returns
    -------
    dict
        ``{"id", "label", "kind", "width", "height", "n_frames", "frame_time_ms", "frames": [url],
        "ed_frame", "es_frame", "calibration": {"source", "user_cm_per_px", "regions"},
        "addable": [...], "contours": [...]}``.  Regions keep the raw fields of
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
        "plausible": plausible_ranges(),
        "first_frame_number": FIRST_FRAME_NUMBER,
        "contours": list(contours),
    }


def measurement_entry(st: MeasurementState, thresholds: ThresholdLookup = fixed_threshold) -> dict[str, Any]:
    """One row of the viewer value from a measurement's state in the store.

    ``thresholds`` gives the low-confidence threshold of the model version that made the
    proposal (default: :data:`LOW_CONFIDENCE_THRESHOLD` for all).
    """
    spec = catalog.get(st.measurement)
    threshold = thresholds(st.model_name, st.model_version, st.measurement) if st.confidence is not None else None
    # The flag asks a human to look: once a human accepted, corrected or re-placed it, it is gone.
    flagged = st.status == "proposed" and threshold is not None and is_low_confidence(st.confidence, threshold)
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
        "low_confidence": flagged,
        "plausible": catalog.is_plausible(st.measurement, st.value, st.unit or "px"),
        "low_confidence_below": threshold,
        "status": st.status,
        "proposal_id": st.proposal_id,
        "reviewer": st.reviewer,
        # the state the page shows: a review is refused when the store's latest is another one
        "review_id": st.latest_review_id,
        "reopened": st.reopened,
    }


def viewer_value(
    clip_id: int | None,
    states: Sequence[MeasurementState],
    *,
    committed: Iterable[str] = (),
    reload: bool = False,
    thresholds: ThresholdLookup = fixed_threshold,
    notice: str | None = None,
    undone: Iterable[str] = (),
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
    notice
        A sentence the viewer shows in its own banner (e.g. why nothing was saved).
    undone
        Names among ``committed`` whose new review undid an earlier one (the viewer does not
        push them on its undo stack again).
    """
    return {
        "clip_id": clip_id,
        "measurements": [measurement_entry(st, thresholds) for st in states],
        "committed": sorted(set(committed)),
        "reload": reload,
        "notice": notice,
        "undone": sorted(set(undone)),
        "nonce": next(_nonce),  # makes every server value differ, so the browser always sees it
    }


def empty_viewer_value() -> dict[str, Any]:
    """The viewer value with no clip open."""
    return viewer_value(None, (), reload=True)


#: How the worklist names a view the classifier gave (others are shown as given).
VIEW_LABELS: dict[str, str] = {"plax": "PLAX", "a4c": "A4C", "a2c": "A2C", "doppler": "Doppler", "2d": "2D"}


def view_label(view: str) -> str:
    """The worklist's name of a stored view (``a4c`` -> ``A4C``; ``other`` stays ``other``)."""
    return VIEW_LABELS.get(view.lower(), view)


def clip_view(kind: str, model_names: Iterable[str | None] = ()) -> str:
    """What a clip shows, for the worklist: its own ``view`` when known, else the view its
    proposals' model implies (``plax-linear`` -> PLAX), else the clip kind."""
    for name in model_names:
        if name and name in VIEW_OF_MODEL:
            return VIEW_OF_MODEL[name]
    return "Doppler" if kind == "doppler" else "2D"


def shifted_study_date(raw: str | None) -> str:
    """The de-identified (shifted) study date (DICOM ``YYYYMMDD``) as YYYY-MM-DD; "—" when none
    was kept (dates removed, or a video)."""
    if not raw:
        return "—"
    text = str(raw).replace("-", "")
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) >= 8 and text[:8].isdigit() else str(raw)


def done_text(summary: ClipSummary, contours: tuple[int, int] | None = None) -> str:
    """The worklist's "done" cell: what was reviewed of what, named, so a PLAX clip and an
    apical one read alike: ``meas. 2/6`` (calipers), ``contours 0/6`` (one per structure per
    frame; the volumes and EF follow from them), both joined by `` · ``; ``0/0`` with neither."""
    parts = []
    total = max(summary.n_proposed, summary.n_reviewed)
    if total:
        parts.append(f"meas. {summary.n_reviewed}/{total}")
    if contours and contours[1]:
        parts.append(f"contours {contours[0]}/{contours[1]}")
    return " · ".join(parts) or "0/0"


def worklist_rows(
    summaries: Sequence[ClipSummary],
    *,
    status: str = "all",
    views: dict[int, str] | None = None,
    study_dates: dict[int, str | None] | None = None,
    contour_counts: dict[int, tuple[int, int]] | None = None,
) -> list[list[Any]]:
    """Rows of the worklist table (columns :data:`WORKLIST_HEADERS`).

    Parameters
    ----------
    summaries
        ``Store.worklist()``.
    status
        Keep only clips with this review status (one of :data:`WORKLIST_FILTERS`; "all" keeps all).
    views
        ``clip_id -> view`` (see :func:`clip_view`); a clip not in it shows its kind.
    study_dates
        ``clip_id -> study date`` as kept by de-identification (``deid_record["study_date"]``,
        shifted per patient).
    contour_counts
        ``clip_id -> (reviewed, total)`` contours (:func:`echomeasure.store.contours.contour_counts`).
    """
    views = views or {}
    study_dates = study_dates or {}
    rows = []
    for s in summaries:
        if status != "all" and s.status != status:
            continue
        rows.append(
            [
                s.clip_id,
                s.status,
                done_text(s, (contour_counts or {}).get(s.clip_id)),
                " · ".join(
                    (
                        getattr(s, "view", None) or views.get(s.clip_id) or clip_view(s.kind),
                        f"{s.n_frames} fr",
                        CALIBRATION_NAMES.get(s.calibration_source, s.calibration_source),
                        shifted_study_date(study_dates.get(s.clip_id)),
                    )
                ),
            ]
        )
    return rows


def next_unreviewed(summaries: Sequence[ClipSummary], current: int | None) -> int | None:
    """The clip to open next: the first one after ``current`` (worklist order) not fully
    reviewed, wrapping around; None when every clip with proposals is reviewed."""
    todo = [s.clip_id for s in summaries if s.status in ("to review", "in review")]
    if not todo:
        return None
    order = [s.clip_id for s in summaries]
    if current in order:
        start = order.index(current)
        for cid in order[start + 1 :] + order[: start + 1]:
            if cid in todo and cid != current:
                return cid
        return None
    return todo[0]
