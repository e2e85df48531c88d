"""Contours in the review UI: what the viewer draws, and a reviewer's accept/reject of one.

The viewer's ``clip`` prop carries ``contours`` (:func:`contours_for`): one entry per structure
per frame, with the polygon in original-image pixels and its review status.  The browser sends
``contour_review`` with ``{"clip_id", "contour_proposal_id", "action", "polygon", "seen_review_id"}``
(``accepted``, ``rejected``, or ``corrected`` with the polygon whose vertices the reviewer
dragged; ``seen_review_id`` the contour's ``review_id`` the page showed, or the id a save of
this page returned since); :func:`save` writes it through :mod:`echomeasure.store.contours`,
which refuses a decision made on a stale state like a caliper review's
(:class:`echomeasure.store.writes.StaleReviewError`).

Reader-study clips (blinded or unassisted reads) show no contours: a model's contour would
unblind the reader.
"""

from __future__ import annotations

from typing import Any

from echomeasure.errors import StoreError
from echomeasure.store import Store, contours, readers
from echomeasure.store.reviewer import resolve_reviewer
from echomeasure.ui import review

#: Fields of the viewer's ``contour_review`` event.
PAYLOAD_KEYS = ("clip_id", "contour_proposal_id", "action", "polygon", "seen_review_id")
#: What a reviewer may do to a contour from the viewer ("reopened": Ctrl+Z of a rejection
#: brings it back to review).
VIEWER_ACTIONS = ("accepted", "corrected", "rejected", "reopened")


def contours_for(store: Store, clip_id: int) -> list[dict[str, Any]]:
    """The viewer's ``contours``: ``[{"id", "frame", "structure", "polygon", "status", "confidence", "review_id"}]``.

    ``id`` is the contour proposal answered by a review (None for a contour a reviewer added);
    ``review_id`` the contour's latest review of any action (None: never reviewed), the state a
    decision on it is made on.
    Polygons are the stored points, unrounded: the viewer's volumes
    (:func:`echomeasure.contour_volumes.figures`) are measured on them and must be those of the
    export.  Empty on reader-study clips.
    """
    if readers.has_readers(store, clip_id):
        return []
    out = []
    for st in contours.current_contours(store, clip_id):
        polygon = st.polygon if st.polygon is not None else (st.proposal.polygon if st.proposal else None)
        if polygon is None:
            continue
        out.append({
            "id": None if st.proposal is None else st.proposal.id,
            "frame": st.frame_index,
            "structure": st.structure,
            "polygon": [[x, y] for x, y in polygon],  # as stored: the volumes are measured on exactly these
            "status": st.status,
            "confidence": None if st.proposal is None else round(st.proposal.confidence, 3),
            "review_id": None if st.latest_review is None else st.latest_review.id,
        })
    return out


def save(store: Store, payload: dict[str, Any], typed_name: object, login: str | None = None) -> list[dict[str, Any]]:
    """Store one accept, correction or rejection of a contour from the viewer; returns the clip's contours after it.

    A payload with ``seen_review_id`` is checked against the contour's latest review (a payload
    without it, like the API's, is not).

    Raises
    ------
    StoreError
        No reviewer name, a bad payload, a reader-study clip, or what the store refuses
        (nothing is saved then); :class:`echomeasure.store.writes.StaleReviewError` when the
        contour was reviewed meanwhile (another tab or reviewer).
    """
    try:
        clip_id = int(payload["clip_id"])
        proposal_id = int(payload["contour_proposal_id"])
    except (KeyError, TypeError, ValueError):
        raise StoreError("a contour review needs its clip and contour proposal") from None
    action = payload.get("action")
    if action not in VIEWER_ACTIONS:
        raise StoreError(f"a contour can be accepted, corrected or rejected here (reopened: by undoing a rejection), "
                         f"not {action!r}")
    if readers.has_readers(store, clip_id):
        raise StoreError(f"clip {clip_id} is a reader-study clip: its contours are not reviewed here")
    reviewer, display_name = resolve_reviewer(typed_name, login)
    polygon = payload.get("polygon") if action == "corrected" else None
    based_on = review.seen_state(payload, "the contour review shown")
    contours.add_contour_review(store, clip_id, action, reviewer, contour_proposal_id=proposal_id,
                                polygon=polygon, reviewer_display_name=display_name, based_on=based_on)
    return contours_for(store, clip_id)


__all__ = ["PAYLOAD_KEYS", "VIEWER_ACTIONS", "contours_for", "save"]
