"""Turn the viewer's ``commit`` payload into store reviews, with values recomputed on the server.

The browser shows live values while the reviewer drags; the value that is stored is computed
here from the points by :mod:`echomeasure.ingest.calibration`, never taken from the browser.

A value outside the catalogue's plausibility limits (:data:`echomeasure.catalog.PLAUSIBLE_RANGE`)
is saved only as a request of its own that says the reviewer confirmed it: "Accept all" can
never store an impossible value as reviewed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from echomeasure import catalog
from echomeasure.errors import StoreError
from echomeasure.ingest import calibration
from echomeasure.store import ClipRecord, MeasurementState, ReviewRecord, Store, readers
from echomeasure.store.records import REOPEN_ACTION
from echomeasure.store.reviewer import resolve_reviewer
from echomeasure.store.writes import ANY_STATE, StaleReviewError

log = logging.getLogger(__name__)

#: Points closer than this to the proposal's (in pixels) count as unchanged: "accepted".
SAME_POINT_TOLERANCE_PX = 1e-3

#: What the browser may ask for; "accept" lets the server decide accepted or corrected;
#: "reopen" (Ctrl+Z of a rejection) brings a reviewed proposal back to review.
BROWSER_ACTIONS = ("accept", "rejected", "added", "reopen")


@dataclass(frozen=True)
class ReviewRequest:
    """One decision sent by the viewer."""

    name: str
    action: str
    frame: int | None
    points: tuple[tuple[float, float], ...]
    seconds_spent: float | None
    proposal_id: int | None
    confirmed: bool = False  # the reviewer confirmed a value outside the plausibility limits
    #: The latest review of the measurement the page showed (None: it showed it unreviewed);
    #: :data:`~echomeasure.store.writes.ANY_STATE` when the request did not say (the API).
    seen_review_id: int | None | str = ANY_STATE

    @classmethod
    def from_payload(cls, item: Mapping[str, Any]) -> ReviewRequest:
        """Validate one entry of the ``commit`` payload (raises :class:`StoreError`)."""
        name = str(item.get("name", ""))
        if name not in catalog.CATALOG:
            raise StoreError(f"unknown measurement {name!r}; reload the page")
        action = str(item.get("action", ""))
        if action not in BROWSER_ACTIONS:
            raise StoreError(f"unknown review action {action!r}; reload the page")
        points = _points(item.get("points"), name)
        seconds = _number(item.get("seconds"), "seconds")
        return cls(
            name=name,
            action=action,
            frame=_whole(item.get("frame"), f"the frame of {name}"),
            points=points,
            # time on one decision: a day at most (1e308 seconds was stored)
            seconds_spent=None if seconds is None else min(max(seconds, 0.0), MAX_SECONDS_SPENT),
            proposal_id=_whole(item.get("proposal_id"), f"the proposal of {name}"),
            confirmed=item.get("confirmed") is True,
            seen_review_id=seen_state(item, f"the review of {name} shown"),
        )


#: The longest time one review may say it took (s).
MAX_SECONDS_SPENT = 86_400.0
#: Most points one measurement may carry (calipers have 1 or 2).
MAX_POINTS = 4


def _number(value: Any, what: str) -> float | None:
    """A JSON number (not a boolean) as a finite float; None stays None (raises StoreError)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
        raise StoreError(f"{what} is not a finite number; reload the page")
    return float(value)


def seen_state(item: Mapping[str, Any], what: str) -> int | None | str:
    """The state a decision from the viewer was made on: its ``seen_review_id`` (the latest
    review the page showed, None: unreviewed), or :data:`~echomeasure.store.writes.ANY_STATE`
    when the payload does not say (the API): the ``based_on`` of the store's check.  Used for
    calipers and contours alike."""
    return _whole(item.get("seen_review_id"), what) if "seen_review_id" in item else ANY_STATE


def _whole(value: Any, what: str) -> int | None:
    """A JSON whole number (2 or 2.0, not 2.7 or true) as an int; None stays None."""
    number = _number(value, what)
    if number is None:
        return None
    if not number.is_integer():
        raise StoreError(f"{what} is not a whole number; reload the page")
    return int(number)


def _points(value: Any, name: str) -> tuple[tuple[float, float], ...]:
    """The ``[[x, y], ...]`` points of one measurement (each exactly two finite numbers)."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or len(value) > MAX_POINTS or any(
            not isinstance(p, list | tuple) or len(p) != 2 for p in value):
        raise StoreError(f"the points of {name} are not [x, y] pairs; reload the page")
    points = []
    for x, y in value:
        try:
            fx, fy = _number(x, "x"), _number(y, "y")
        except StoreError:
            fx = fy = None
        if fx is None or fy is None:
            raise StoreError(f"the points of {name} are not finite numbers; undo the last move")
        points.append((fx, fy))
    return tuple(points)


def measured_value(clip: ClipRecord, name: str, points: Sequence[Sequence[float]]) -> tuple[float | None, str]:
    """Value and unit of a measurement placed at ``points`` on a stored clip.

    The rule is :func:`echomeasure.ingest.calibration.calibrated_value` (DICOM regions first,
    then the user's cm/px scale for 2D, else pixels); a wrong number of points is a store error.

    Raises
    ------
    CalibrationError
        The regions refuse the points (outside the sector, two regions, wrong units).
    """
    try:
        value, unit, _signed = calibration.calibrated_value(clip.region_objects, clip.user_cm_per_px, name, points)
    except ValueError as exc:
        raise StoreError(str(exc)) from None
    return value, unit


def _same_points(a: Sequence[Sequence[float]] | None, b: Sequence[Sequence[float]] | None) -> bool:
    if a is None or b is None or len(a) != len(b):
        return False
    return all(
        abs(p[0] - q[0]) <= SAME_POINT_TOLERANCE_PX and abs(p[1] - q[1]) <= SAME_POINT_TOLERANCE_PX
        for p, q in zip(a, b, strict=True)
    )


def resolve_action(request: ReviewRequest, state: MeasurementState | None) -> str:
    """The store action for a browser request: accepted, corrected, rejected, added or reopened."""
    if request.action == "rejected":
        return "rejected"
    if request.action == "reopen":
        return REOPEN_ACTION
    if state is None or state.proposal_id is None:
        return "added"
    spec = catalog.get(request.name)
    if spec.n_points == 0 or not request.points:
        return "accepted"  # no points sent: the proposal as it is
    unchanged = _same_points(request.points, state.proposed_points) and (
        request.frame is None or request.frame == state.proposed_frame_index
    )
    return "accepted" if unchanged else "corrected"


def check_plausible(name: str, value: float | None, unit: str | None, *, confirmed: bool, alone: bool) -> None:
    """Refuse an implausible value unless it is saved on its own after a confirmation.

    Raises
    ------
    StoreError
        ``value`` lies outside the catalogue's plausibility limits and the request was part of
        a batch or not confirmed.
    """
    if catalog.is_plausible(name, value, unit or "px") or (confirmed and alone):
        return
    lo, hi = catalog.PLAUSIBLE_RANGE[name]
    raise StoreError(
        f"{name} {value:.2f} {unit} is outside the plausible range {lo:g}-{hi:g} {unit}; "
        "nothing saved: check it, then accept it on its own and confirm"
    )


def _review_arguments(
    clip: Any, req: ReviewRequest, action: str, state: Any
) -> tuple[dict[str, Any], float | None, str | None]:
    """The store arguments of one decision, and the value and unit it records (for the plausibility check).

    A correction or an addition is measured on the clip; an accept keeps the proposal's value,
    re-measured when the clip was calibrated after the proposal.
    """
    spec = catalog.get(req.name)
    value: float | None
    unit: str | None
    kwargs: dict[str, Any] = {"seconds_spent": req.seconds_spent}
    if state is not None and state.proposal_id is not None:
        kwargs["proposal_id"] = state.proposal_id
    if action in ("corrected", "added") and spec.n_points > 0:
        value, unit = measured_value(clip, req.name, req.points)
        kwargs.update(frame=req.frame, points=req.points, value=value, unit=unit)
    elif action == REOPEN_ACTION:
        value, unit = None, None  # back to review: nothing kept, the proposal stands
        kwargs.pop("seconds_spent", None)
    elif action == "accepted":
        if req.frame is not None:
            kwargs["frame"] = req.frame
        value, unit = (state.proposed_value, state.proposed_unit) if state is not None else (None, None)
        if spec.n_points > 0 and state is not None and state.proposed_points and unit == "px" and (
            clip.regions or clip.user_cm_per_px
        ):
            # proposed before the clip was calibrated (a video the user calibrated since)
            value, unit = measured_value(clip, req.name, state.proposed_points)
            kwargs.update(value=value, unit=unit)
    else:
        value, unit = None, None
    return kwargs, value, unit


def save_reviews(
    store: Store,
    clip_id: int,
    requests: Sequence[ReviewRequest],
    reviewer: str,
    *,
    logged_in_user: str | None = None,
) -> list[ReviewRecord]:
    """Write the reviewer's decisions to the store, one review per request.

    Parameters
    ----------
    store
        The review store.
    clip_id
        The clip reviewed.
    requests
        Decisions from the viewer (:meth:`ReviewRequest.from_payload`).
    reviewer
        Who decided, as typed; required without a login
        (:func:`echomeasure.store.reviewer.resolve_reviewer`: trimmed, 1-100 characters, no
        control characters).
    logged_in_user
        The authenticated user (``echomeasure demo --auth``): recorded as the reviewer, with the
        typed name kept beside it as display name.

    Returns
    -------
    list of ReviewRecord
        The stored reviews, in request order.

    Raises
    ------
    StoreError
        No reviewer, unknown clip or measurement, points outside the image, an implausible
        value in a batch or not confirmed (:func:`check_plausible`; nothing is stored then), or
        a clip assigned to readers that ``reviewer`` is not one of.  On such a clip each
        decision is a read (:func:`echomeasure.store.readers.save_for`), made on what the reader
        may see (:func:`echomeasure.store.readers.measurements_for`).
    CalibrationError
        A corrected caliper left the calibrated region (nothing of that request is stored).
    """
    reviewer, display_name = resolve_reviewer(reviewer, logged_in_user)
    clip = store.clip(clip_id)
    # What this reviewer may see: a blinded reader decides on their own reads (and, unassisted,
    # without the proposal), never on another reader's.
    states = {st.measurement: st for st in readers.measurements_for(store, clip_id, reviewer)}
    planned: list[tuple[ReviewRequest, str, dict[str, Any]]] = []
    # Every request is checked before the first is written: a refused batch stores nothing.
    check_not_stale(clip_id, requests, states)
    for req in requests:
        state = states.get(req.name)
        action = resolve_action(req, state)
        kwargs, value, unit = _review_arguments(clip, req, action, state)
        check_plausible(req.name, value, unit, confirmed=req.confirmed, alone=len(requests) == 1)
        planned.append((req, action, kwargs))
    saved: list[ReviewRecord] = []
    if not readers.has_readers(store, clip_id):
        # One transaction, each decision checked there against the state it was made on: a
        # review saved meanwhile by another tab or reviewer refuses the whole batch.
        batch = [
            store.review_request(clip_id, req.name, action, reviewer, reviewer_display_name=display_name,
                                 based_on=req.seen_review_id, **kwargs)
            for req, action, kwargs in planned
        ]
        saved = store.add_reviews(batch)
    else:
        # A reader's reads: checked above against the reader's own reads (others' stay blinded).
        for req, action, kwargs in planned:
            saved.append(readers.save_for(
                store, clip_id, reviewer, req.name, action, reviewer_display_name=display_name, **kwargs
            ))
    for record in saved:
        log.info("clip %s: %s %s by %s", clip_id, record.measurement, record.action, reviewer)
    return saved


def check_not_stale(clip_id: int, requests: Sequence[ReviewRequest], states: Mapping[str, MeasurementState]) -> None:
    """Refuse a batch in which a decision was made on a state of its measurement that is no longer
    the latest one its reviewer may see (reviewed meanwhile in another tab or by someone else).

    Raises
    ------
    StaleReviewError
        Names the first such measurement, who reviewed it and when.
    """
    for req in requests:
        if req.seen_review_id == ANY_STATE:
            continue
        state = states.get(req.name)
        latest = None if state is None else state.latest_review_id
        if latest != req.seen_review_id:
            raise StaleReviewError(clip_id, req.name, None if state is None else state.latest_reviewer,
                                   None if state is None else state.latest_reviewed_at)


__all__ = [
    "BROWSER_ACTIONS",
    "SAME_POINT_TOLERANCE_PX",
    "ReviewRequest",
    "check_not_stale",
    "check_plausible",
    "measured_value",
    "resolve_action",
    "save_reviews",
    "seen_state",
]
