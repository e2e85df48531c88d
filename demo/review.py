"""Turn the viewer's ``commit`` payload into store reviews, with values recomputed on the server.

The browser shows live values while the reviewer drags; the value that is stored is computed
here from the points by :mod:`echomeasure.ingest.calibration`, never taken from the browser.
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
from echomeasure.store import ClipRecord, MeasurementState, ReviewRecord, Store

log = logging.getLogger(__name__)

#: Points closer than this to the proposal's (in pixels) count as unchanged: "accepted".
SAME_POINT_TOLERANCE_PX = 1e-3

#: What the browser may ask for; "accept" lets the server decide accepted or corrected.
BROWSER_ACTIONS = ("accept", "rejected", "added")


@dataclass(frozen=True)
class ReviewRequest:
    """One decision sent by the viewer."""

    name: str
    action: str
    frame: int | None
    points: tuple[tuple[float, float], ...]
    seconds_spent: float | None
    proposal_id: int | None

    @classmethod
    def from_payload(cls, item: Mapping[str, Any]) -> ReviewRequest:
        """Validate one entry of the ``commit`` payload (raises :class:`StoreError`)."""
        name = str(item.get("name", ""))
        if name not in catalog.CATALOG:
            raise StoreError(f"unknown measurement {name!r}; reload the page")
        action = str(item.get("action", ""))
        if action not in BROWSER_ACTIONS:
            raise StoreError(f"unknown review action {action!r}; reload the page")
        frame = item.get("frame")
        points = tuple((float(p[0]), float(p[1])) for p in (item.get("points") or ()))
        if any(not (math.isfinite(x) and math.isfinite(y)) for x, y in points):
            raise StoreError(f"the points of {name} are not finite numbers; undo the last move")
        seconds = item.get("seconds")
        proposal_id = item.get("proposal_id")
        return cls(
            name=name,
            action=action,
            frame=None if frame is None else int(frame),
            points=points,
            seconds_spent=None if seconds is None else max(float(seconds), 0.0),
            proposal_id=None if proposal_id is None else int(proposal_id),
        )


def measured_value(clip: ClipRecord, name: str, points: Sequence[Sequence[float]]) -> tuple[float | None, str]:
    """Value and unit of a measurement placed at ``points`` on a stored clip.

    Same rules as :func:`echomeasure.ingest.calibration.physical_value`: DICOM regions first,
    then the user's cm/px scale for 2D, else the value stays in pixels (``(None, "px")``).

    Raises
    ------
    CalibrationError
        The regions refuse the points (outside the sector, two regions, wrong units).
    """
    spec = catalog.get(name)
    regions = clip.region_objects
    pts = [(float(p[0]), float(p[1])) for p in points]
    if spec.mode == "2d":
        if len(pts) != 2:
            raise StoreError(f"{name} needs 2 points, got {len(pts)}")
        if regions:
            return calibration.distance_cm(regions, pts[0], pts[1]), "cm"
        if clip.user_cm_per_px:
            return calibration.pixel_length(pts[0], pts[1]) * float(clip.user_cm_per_px), "cm"
        return None, "px"
    if len(pts) != 1:
        raise StoreError(f"{name} needs 1 point, got {len(pts)}")
    if not regions:
        return None, "px"
    return abs(calibration.velocity_m_s(regions, pts[0][0], pts[0][1])), "m/s"


def _same_points(a: Sequence[Sequence[float]] | None, b: Sequence[Sequence[float]] | None) -> bool:
    if a is None or b is None or len(a) != len(b):
        return False
    return all(
        abs(p[0] - q[0]) <= SAME_POINT_TOLERANCE_PX and abs(p[1] - q[1]) <= SAME_POINT_TOLERANCE_PX
        for p, q in zip(a, b)
    )


def resolve_action(request: ReviewRequest, state: MeasurementState | None) -> str:
    """The store action for a browser request: accepted, corrected, rejected or added."""
    if request.action == "rejected":
        return "rejected"
    if state is None or state.proposal_id is None:
        return "added"
    spec = catalog.get(request.name)
    if spec.n_points == 0 or not request.points:
        return "accepted"  # no points sent: the proposal as it is
    unchanged = _same_points(request.points, state.proposed_points) and (
        request.frame is None or request.frame == state.proposed_frame_index
    )
    return "accepted" if unchanged else "corrected"


def save_reviews(
    store: Store,
    clip_id: int,
    requests: Sequence[ReviewRequest],
    reviewer: str,
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
        Who decided; required.

    Returns
    -------
    list of ReviewRecord
        The stored reviews, in request order.

    Raises
    ------
    StoreError
        No reviewer, unknown clip or measurement, points outside the image.
    CalibrationError
        A corrected caliper left the calibrated region (nothing of that request is stored).
    """
    reviewer = (reviewer or "").strip()
    if not reviewer:
        raise StoreError("enter your name in the Reviewer field before saving reviews")
    clip = store.clip(clip_id)
    states = {st.measurement: st for st in store.current_measurements(clip_id)}
    saved: list[ReviewRecord] = []
    for req in requests:
        state = states.get(req.name)
        action = resolve_action(req, state)
        spec = catalog.get(req.name)
        kwargs: dict[str, Any] = {"seconds_spent": req.seconds_spent}
        if state is not None and state.proposal_id is not None:
            kwargs["proposal_id"] = state.proposal_id
        if action in ("corrected", "added") and spec.n_points > 0:
            value, unit = measured_value(clip, req.name, req.points)
            kwargs.update(frame=req.frame, points=req.points, value=value, unit=unit)
        elif action == "accepted" and req.frame is not None:
            kwargs["frame"] = req.frame
        record = store.add_review(clip_id, req.name, action, reviewer, **kwargs)
        log.info("clip %s: %s %s by %s", clip_id, req.name, action, reviewer)
        saved.append(record)
    return saved


__all__ = [
    "BROWSER_ACTIONS",
    "SAME_POINT_TOLERANCE_PX",
    "ReviewRequest",
    "measured_value",
    "resolve_action",
    "save_reviews",
]
