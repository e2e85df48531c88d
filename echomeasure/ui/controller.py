"""What the review UI does on each event, as plain functions over the store (no Gradio in here).

:mod:`echomeasure.ui.app` lays out the page and wires each Gradio event to one method of
:class:`ReviewController`; the method takes plain values (clip ids, the viewer's event payload,
the reviewer's name, the logged-in user) and returns plain values (the viewer's JSON, the header
text, a notice), so every rule of the UI is testable without a browser or a server.

Every screen shows what its viewer may see (:func:`echomeasure.store.readers.measurements_for`):
on a clip assigned to readers, a reader's own reads only (and, unassisted, no proposal).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from echomeasure import catalog, contour_volumes
from echomeasure.errors import EchomeasureError, StoreError
from echomeasure.store import (
    ClipRecord,
    ClipSummary,
    FrameImageRecord,
    MeasurementState,
    Store,
    clip_views,
    contours,
    readers,
)
from echomeasure.store.queries import clip_status, summary_for_states
from echomeasure.store.writes import StaleReviewError
from echomeasure.ui import contour_review, review, viewmodel

_CLIP_NONCE = itertools.count(1)

NAME_NEEDED_TO_SAVE = "Not saved: enter your name in the Reviewer field (highlighted, top left); reviews are signed."
NAME_NEEDED_TO_CALIBRATE = (
    "Not calibrated: enter your name in the Reviewer field (highlighted, top left); calibrations are signed."
)
ALL_REVIEWED = "Every clip with proposals is reviewed."


def event_payload(event: Any, keys: Sequence[str]) -> dict[str, Any]:
    """The fields ``keys`` of a custom event's payload (``trigger(name, payload)`` in the viewer).

    Gradio exposes the payload's fields as attributes of ``gr.EventData``; a missing field is
    ``None``.
    """
    out: dict[str, Any] = {}
    for key in keys:
        try:
            out[key] = getattr(event, key)
        except (AttributeError, TypeError):
            out[key] = None
    return out


def viewer_name(typed: str | None, login: str | None) -> str:
    """Who is looking: the logged-in user, else the name typed in the Reviewer field ('' if none)."""
    return login or (typed or "").strip()


def clip_header(clip: ClipRecord, states: Sequence[MeasurementState], warnings: Sequence[str] = (),
                contour_model: str | None = None) -> str:
    """The Markdown line above the viewer: clip, frames, calibration, model (the calipers', else
    the contours' ``contour_model``), study."""
    model = next((f"{s.model_name} {s.model_version}" for s in states if s.model_name), contour_model or "no model")
    cal = {"dicom": "DICOM calibration", "user": "user scale", "none": "uncalibrated (values in px): Calibrate"}.get(
        clip.calibration_source, clip.calibration_source
    )
    ft = f"{clip.frame_time_ms:.1f} ms/frame" if clip.frame_time_ms else "frame time unknown"
    parts = [
        f"**{clip.label}**",
        f"{clip.kind.upper()} · " + (f"{clip.n_frames} frames (0–{clip.n_frames - 1})" if clip.n_frames != 1 else "1 frame")
        + f" · {ft}",
        cal,
        f"model: {model}",
        f"study …{clip.study_uid[-8:]}",
    ]
    text = " &nbsp;|&nbsp; ".join(parts)
    for w in [*warnings, *pixel_deid_notices(clip.deid_record)]:
        text += f"\n\n⚠ {w}"
    return text


def pixel_deid_notices(deid_record: Mapping[str, Any] | None) -> list[str]:
    """What the reviewer must check in the pixels of a de-identified clip (from its record):
    burned-in text found inside the image area and left in place, or pixels cleaned without the
    DICOM regions (a video or still) or without the text search."""
    pixels = (deid_record or {}).get("pixels") or {}
    if not pixels.get("human_confirmation_needed"):
        return []
    text = pixels.get("text") or {}
    boxes = len(text.get("boxes_in_fan") or [])
    if boxes:
        return [f"{boxes} burned-in text {'area was' if boxes == 1 else 'areas were'} found inside the image "
                "and left in place: check that no patient identifier is visible before sharing this clip"]
    if not text.get("searched"):
        return ["burned-in text was not searched for: check that no patient identifier is visible in the image"]
    return ["the image area was found from the pixels (no DICOM regions): check that no patient identifier "
            "is visible in the image"]


def stale_notice(exc: StaleReviewError, viewer: str) -> str:
    """The notice of a review refused as made on a stale state: by whom (or in another tab of the
    same reviewer) and when, and what to do."""
    who = "in another tab" if not exc.reviewer or exc.reviewer == viewer else f"by {exc.reviewer}"
    when = f" at {exc.reviewed_at:%H:%M:%S} UTC" if exc.reviewed_at is not None else ""
    return (f"Not saved: {viewmodel.short_name(exc.measurement)} was reviewed meanwhile {who}{when}: "
            "reloaded, check and review again.")


@dataclass(frozen=True)
class ClipScreen:
    """A clip opened in the viewer: its value and clip props, the header and the clip id."""

    clip_id: int
    value: dict[str, Any]
    clip: dict[str, Any]
    header: str


@dataclass(frozen=True)
class EventOutcome:
    """What an event from the viewer changes.

    ``value`` is the viewer's new value (``None``: unchanged); ``screen`` a clip reopened (its
    props changed, e.g. after a calibration); ``saved`` says whether the store changed (the
    worklist is refreshed then); ``reviewer_missing`` whether the Reviewer field must be
    highlighted (``None``: leave it as it is); ``stale`` whether the event was refused as made on
    a stale state.
    """

    value: dict[str, Any] | None = None
    screen: ClipScreen | None = None
    saved: bool = False
    reviewer_missing: bool | None = None
    saved_names: tuple[str, ...] = field(default=())
    stale: bool = False


class ReviewController:
    """The review UI's actions over one store."""

    def __init__(self, store: Store, thresholds: viewmodel.ThresholdLookup | None = None) -> None:
        self.store = store
        self.thresholds: viewmodel.ThresholdLookup = thresholds or viewmodel.fixed_threshold

    # ------------------------------------------------------------------ reading
    def visible(self, clip_id: int, viewer: str) -> list[MeasurementState]:
        """The measurements of a clip as ``viewer`` may see them (StoreError: may see nothing)."""
        return readers.measurements_for(self.store, clip_id, viewer)

    def summaries(self, viewer: str = "") -> list[ClipSummary]:
        """The worklist as ``viewer`` may see it.

        A clip assigned to readers is listed only to its readers, with its status counted from
        what that reader sees (their own reads), so the list never tells a blinded reader how far
        the others are.
        """
        out = []
        counts = contours.contour_counts(self.store)
        for summary in self.store.worklist():
            if not readers.has_readers(self.store, summary.clip_id):
                out.append(self._with_contours(summary, counts.get(summary.clip_id)))
                continue
            try:
                states = self.visible(summary.clip_id, viewer)
            except EchomeasureError:
                continue  # not one of the clip's readers: not listed
            out.append(summary_for_states(summary, states))
        return out

    @staticmethod
    def _with_contours(summary: ClipSummary, counts: tuple[int, int] | None) -> ClipSummary:
        """A clip with contours but no calipers (an apical view) takes its status from its
        contours (``counts``: reviewed, total); its caliper counts stay (0 of 0)."""
        if summary.status != "no proposals" or not counts:
            return summary
        done, total = counts
        status = clip_status([str(i) for i in range(total)], [str(i) for i in range(done)])
        return dataclasses.replace(summary, status=status)

    def worklist(self, status: str | None = "all", viewer: str = "") -> list[list[Any]]:
        """The worklist rows ``viewer`` may see, filtered by review status.

        A clip's view: the view classifier's, kept when its models ran
        (:mod:`echomeasure.store.clip_views`); for a clip stored before that, its calipers'
        model, else its volumes' method (single-plane A4C / A2C), else its contours' model.
        """
        summaries = self.summaries(viewer)
        stored = clip_views.latest_views(self.store, [s.clip_id for s in summaries])
        views = {cid: viewmodel.view_label(v.view) for cid, v in stored.items()}
        models = {m.id: m.name for m in self.store.model_versions()}
        for summary in summaries:
            if summary.clip_id in views:
                continue
            names = {p.model_name for p in self.store.proposals(summary.clip_id)}
            view = viewmodel.clip_view(summary.kind, sorted(n for n in names if n))
            if not names:
                methods = {v.method for v in contours.volumes(self.store, summary.clip_id)}
                apical = sorted(v for v in map(catalog.view_of_method, methods) if v)
                drawn_by = {models.get(c.model_version_id or -1) for c in contours.contour_proposals(self.store, summary.clip_id)}
                view = apical[0] if apical else viewmodel.clip_view(summary.kind, sorted(n for n in drawn_by if n))
            views[summary.clip_id] = view
        dates = {c.id: (c.deid_record or {}).get("study_date") for c in self.store.clips()}
        counts = contours.contour_counts(self.store)
        # contours are counted where the viewer is shown them (never on a reader-study clip)
        shown = {s.clip_id: counts[s.clip_id] for s in summaries
                 if s.clip_id in counts and not readers.has_readers(self.store, s.clip_id)}
        return viewmodel.worklist_rows(summaries, status=status or "all", views=views, study_dates=dates,
                                       contour_counts=shown)

    def open_clip(self, clip_id: int, viewer: str, warnings: Sequence[str] = ()) -> ClipScreen:
        """Open a clip for ``viewer``.

        Raises
        ------
        StoreError
            Unknown clip, frames missing from the image store, or a reader-study clip that
            ``viewer`` does not read.
        """
        clip = self.store.clip(clip_id)
        states = self.visible(clip_id, viewer)
        frames = self.store.frame_images(clip_id)
        if len(frames) < clip.n_frames:
            raise StoreError(f"{clip.label} has {len(frames)} of {clip.n_frames} frames stored; re-ingest the file")
        kept = clip_views.latest_views(self.store, [clip_id]).get(clip_id)
        notices = list(dict.fromkeys([*warnings, *(kept.notices if kept else ())]))  # once each, as given first
        return ClipScreen(
            clip_id=clip_id,
            value=viewmodel.viewer_value(clip_id, states, reload=True, thresholds=self.thresholds),
            clip=self.clip_prop(clip, frames, states),
            header=clip_header(clip, states, notices, contour_model=self._contour_model(clip_id)),
        )

    def _contour_model(self, clip_id: int) -> str | None:
        """``name version`` of the model that drew the clip's contours, None without contours."""
        ids = {c.model_version_id for c in contours.contour_proposals(self.store, clip_id)}
        found = [f"{m.name} {m.version}" for m in self.store.model_versions() if m.id in ids]
        return found[0] if found else None

    def clip_prop(
        self, clip: ClipRecord, frames: Sequence[FrameImageRecord], states: Sequence[MeasurementState]
    ) -> dict[str, Any]:
        """The viewer's ``clip`` prop: frames, calibration, contours and their LV volumes.

        ``volumes`` (None unless the contours are an apical set) are the figures of the stored
        contours (:func:`echomeasure.contour_volumes.figures`); a clip whose measurements
        name no ED/ES frame takes those of its LV contours, for the ED/ES jump.
        """
        shapes = contour_review.contours_for(self.store, clip.id)
        prop = viewmodel.viewer_clip(clip, frames, states, contours=shapes)
        figures = contour_volumes.figures(self.store, clip, shapes)
        prop["volumes"] = figures
        if figures is not None and prop["ed_frame"] is None and prop["es_frame"] is None:
            prop["ed_frame"], prop["es_frame"] = figures["ed_frame"], figures["es_frame"]
        # Each description sent differs: the browser drops its local contour decisions on a new
        # one only (a new value alone, e.g. after a save, keeps them).
        prop["nonce"] = next(_CLIP_NONCE)
        return prop

    def live_volumes(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """EDV, ESV and EF of the contours being edited (the viewer's server function).

        A request the rule cannot answer gives the figures' ``note`` instead of an error: the
        viewer shows it in place of the numbers.
        """
        try:
            return contour_volumes.live_volumes(self.store, payload)
        except EchomeasureError as exc:
            return {"edv_ml": None, "esv_ml": None, "ef_percent": None, "note": str(exc)}

    def next_clip(self, current: int | None, viewer: str = "") -> int | None:
        """The next clip ``viewer`` has not finished after ``current`` (None: every one is done)."""
        return viewmodel.next_unreviewed(self.summaries(viewer), None if current is None else int(current))

    def notice(self, clip_id: int, text: str, viewer: str) -> dict[str, Any]:
        """The viewer's value with a notice shown inside the viewer (nothing else changed)."""
        return self._value(clip_id, viewer, text)

    def measurement_entries(self, clip_id: int, viewer: str) -> list[dict[str, Any]]:
        """Where each measurement of a clip stands for ``viewer`` (the API's ``measurements``)."""
        return [viewmodel.measurement_entry(s, self.thresholds) for s in self.visible(int(clip_id), viewer)]

    def exportable(self, clip_ids: Sequence[int]) -> tuple[list[int], str | None]:
        """The clips the UI's CSV export may hold, and a notice naming what was left out.

        The UI does not know who leads a reader study, so clips assigned to readers never
        leave through it (their reads stay blinded); ``echomeasure export`` and ``echomeasure
        agreement`` report them.
        """
        kept = [cid for cid in clip_ids if not readers.has_readers(self.store, cid)]
        left_out = len(clip_ids) - len(kept)
        if not left_out:
            return kept, None
        return kept, (
            f"{left_out} clip(s) read by assigned readers left out: their reads stay blinded; "
            "export them with `echomeasure export`"
        )

    def study_export(self, clip_id: int) -> tuple[list[int], str]:
        """The clips of the study ``clip_id`` belongs to, and the CSV file name of their export."""
        clip = self.store.clip(clip_id)
        ids = [c.id for c in self.store.clips() if c.study_uid == clip.study_uid]
        return ids, f"echomeasure_study_{clip.study_uid[-8:]}.csv"

    # ------------------------------------------------------------------ writing
    def commit(self, payload: Mapping[str, Any], typed_name: str | None, login: str | None) -> EventOutcome:
        """Save the reviews of a ``commit`` event (see :mod:`echomeasure.ui.caliper`).

        Every value answering a commit carries ``answered`` (the names of its reviews, saved or
        not) and ``stale`` (those names again when the batch was refused as made on a stale state,
        else empty): the page's next decision on a measurement waits for the answer to the one
        before it, then is made on the state that answer returned.
        """
        items = payload.get("reviews") or []
        outcome = self._commit(payload.get("clip_id"), items, bool(payload.get("undo")), typed_name, login)
        if outcome.value is not None:
            names = sorted({str(item.get("name", "")) for item in items})
            outcome.value["answered"] = names
            outcome.value["stale"] = names if outcome.stale else []
        return outcome

    def _commit(self, clip_id: Any, items: Sequence[Mapping[str, Any]], undo: bool, typed_name: str | None,
                login: str | None) -> EventOutcome:
        if clip_id is None or not items:
            return EventOutcome()
        clip_id = int(clip_id)
        viewer = viewer_name(typed_name, login)
        if not viewer:
            return EventOutcome(value=self.notice(clip_id, NAME_NEEDED_TO_SAVE, viewer), reviewer_missing=True)
        try:
            requests = [review.ReviewRequest.from_payload(item) for item in items]
            saved = review.save_reviews(self.store, clip_id, requests, typed_name or "", logged_in_user=login)
            states = self.visible(clip_id, viewer)
        except StaleReviewError as exc:
            return self._stale(clip_id, exc, viewer, [str(item.get("name", "")) for item in items])
        except EchomeasureError as exc:
            return EventOutcome(value=self.notice(clip_id, f"Not saved: {exc}", viewer))
        names = tuple(r.measurement for r in saved)
        saved_notice = f"Saved {len(saved)} reviews as {saved[0].reviewer}." if len(saved) > 1 else None
        value = viewmodel.viewer_value(
            clip_id, states, committed=names, thresholds=self.thresholds, notice=saved_notice,
            undone=names if undo else (),
        )
        return EventOutcome(value=value, saved=True, reviewer_missing=False, saved_names=names)

    def _stale(self, clip_id: int, exc: StaleReviewError, viewer: str, names: Sequence[str]) -> EventOutcome:
        """A batch refused because one of its measurements was reviewed meanwhile: the
        measurements of the batch are reloaded as they stand now (local edits of the others
        stay), with a notice saying who reviewed it and when; nothing was saved."""
        try:
            states = self.visible(clip_id, viewer)
        except EchomeasureError:
            states = []
        reloaded = sorted({n for n in names if n in catalog.CATALOG})
        value = viewmodel.viewer_value(
            clip_id, states, committed=reloaded, undone=reloaded, thresholds=self.thresholds,
            notice=stale_notice(exc, viewer),
        )
        # The store changed (someone else's review): the worklist is refreshed too.
        return EventOutcome(value=value, saved=True, reviewer_missing=False, stale=True)

    def review_contour(self, payload: Mapping[str, Any], typed_name: str | None, login: str | None) -> EventOutcome:
        """Save a ``contour_review`` event (:func:`echomeasure.ui.contour_review.save`).

        Saved: the viewer's value carries ``contour_reviews`` (``[{"id", "review_id"}]``, the
        contour's new latest review), the state this page's next decision on it is made on.
        Refused as made on a stale state (another tab or reviewer reviewed the contour
        meanwhile): nothing is saved, and the value carries the notice of a stale caliper review
        (:func:`stale_notice`) and ``contours_reloaded``, the contour as it stands now.

        Raises
        ------
        EchomeasureError
            Whatever else :func:`echomeasure.ui.contour_review.save` refuses (nothing saved).
        """
        viewer = viewer_name(typed_name, login)
        try:
            shapes = contour_review.save(self.store, dict(payload), typed_name, login)
            stale = None
        except StaleReviewError as exc:
            stale = exc
        # save checked both ids before it wrote or refused anything
        clip_id, proposal_id = int(payload["clip_id"]), int(payload["contour_proposal_id"])
        if stale is not None:
            value = self._value(clip_id, viewer, stale_notice(stale, viewer))
            value["contours_reloaded"] = [c for c in contour_review.contours_for(self.store, clip_id)
                                          if c["id"] == proposal_id]
            return EventOutcome(value=value, saved=True, stale=True)
        value = self._value(clip_id, viewer)
        value["contour_reviews"] = [{"id": c["id"], "review_id": c["review_id"]} for c in shapes if c["id"] == proposal_id]
        return EventOutcome(value=value, saved=True)

    def _value(self, clip_id: int, viewer: str, notice: str | None = None) -> dict[str, Any]:
        """The viewer's value as the store has it (local edits stay in the page: nothing committed)."""
        try:
            states = self.visible(clip_id, viewer)
        except EchomeasureError:
            states = []
        return viewmodel.viewer_value(clip_id, states, thresholds=self.thresholds, notice=notice)

    def calibrate(self, payload: Mapping[str, Any], typed_name: str | None, login: str | None) -> EventOutcome:
        """Set the user's scale from a ``calibrate`` event (a known length drawn on the clip)."""
        from echomeasure.store.user_calibration import set_user_calibration

        clip_id = payload.get("clip_id")
        if clip_id is None:
            return EventOutcome()
        clip_id = int(clip_id)
        viewer = viewer_name(typed_name, login)
        if not viewer:
            return EventOutcome(value=self.notice(clip_id, NAME_NEEDED_TO_CALIBRATE, viewer), reviewer_missing=True)
        try:
            self.visible(clip_id, viewer)  # only someone who may see the clip calibrates it
            clip = set_user_calibration(
                self.store, clip_id, payload.get("points") or [], payload.get("length_cm"), login or typed_name or ""
            )
            states = self.visible(clip.id, viewer)
        except EchomeasureError as exc:
            return EventOutcome(value=self.notice(clip_id, f"Not calibrated: {exc}", viewer))
        scale = f"{clip.user_cm_per_px * 10:.3f} mm/px" if clip.user_cm_per_px else "?"
        screen = ClipScreen(
            clip_id=clip.id,
            value=viewmodel.viewer_value(
                clip.id, states, reload=True, thresholds=self.thresholds,
                notice=f"Calibrated by you: {scale}; values now in cm",
            ),
            clip=self.clip_prop(clip, self.store.frame_images(clip.id), states),
            header=clip_header(clip, states),
        )
        return EventOutcome(screen=screen, saved=True, reviewer_missing=False)

    def save_review(
        self,
        clip_id: int,
        measurement: str,
        action: str,
        typed_name: str,
        login: str | None = None,
        *,
        points: list[list[float]] | None = None,
        frame: int | None = None,
        seconds: float | None = None,
    ) -> dict[str, Any]:
        """Save one review (the API's ``save_review``) and return the measurement as its viewer sees it.

        Raises
        ------
        EchomeasureError
            Whatever :func:`echomeasure.ui.review.save_reviews` refuses; nothing is saved then.
        """
        decision = review.ReviewRequest.from_payload(
            {"name": measurement, "action": action, "points": points or [], "frame": frame, "seconds": seconds}
        )
        review.save_reviews(self.store, int(clip_id), [decision], typed_name, logged_in_user=login)
        states = {s.measurement: s for s in self.visible(int(clip_id), viewer_name(typed_name, login))}
        return viewmodel.measurement_entry(states[measurement], self.thresholds)


__all__ = [
    "ClipScreen", "EventOutcome", "ReviewController", "clip_header", "event_payload", "stale_notice", "viewer_name",
]
