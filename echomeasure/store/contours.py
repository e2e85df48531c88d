"""Contours and chamber volumes in the review store, reviewable like calipers.

A segmentation model's output (the ``segmentations`` of the measure JSON) is stored as one
``contour_proposal`` per structure per frame; a reviewer answers each with a ``contour_review``
(accepted, corrected with a new polygon, rejected, or added by hand).  LV volumes, EF and LA
volume are stored in ``volume_proposal`` with the method that gave them.  Every write is one
transaction with its audit event, whose ``content_sha256`` covers the rows it created
(:mod:`echomeasure.store.chain`).  All three tables are append-only in the database.

Polygons are ``[[x, y], ...]`` in original-image pixels (x right, y down), at least 3 vertices,
inside the image.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from echomeasure.errors import StoreError
from echomeasure.store import audit, chain, clip_views
from echomeasure.store import schema as db
from echomeasure.store.audit import SYSTEM_ACTOR
from echomeasure.store.mapping import audit_payload, points_tuple, record_from_row
from echomeasure.store.operations import Store
from echomeasure.store.queries import get_clip
from echomeasure.store.records import REOPEN_ACTION, MeasurementStatus, Point, ReviewAction, decision_status
from echomeasure.store.reviewer import validate_reviewer
from echomeasure.store.validation import check_frame, checked_action, clamped_confidence
from echomeasure.store.writes import ANY_STATE, check_based_on, check_reopenable, checked_based_on, ensure_model_version

if TYPE_CHECKING:
    from echomeasure.propose.types import ModelInfo

#: Units of the volume measurements (a value given in another unit is refused).
VOLUME_UNITS = {"lvedv": "ml", "lvesv": "ml", "lvef": "%", "la_volume": "ml", "lv_length": "cm"}
#: Methods a volume may be recorded with.
_METHOD = re.compile(r"^(single-plane (A4C|A2C)|biplane|area-length( (A4C|A2C|biplane))?)$")
_STRUCTURE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True)
class ContourProposalRecord:
    """One stored contour proposal."""

    id: int
    clip_id: int
    frame_index: int
    structure: str
    polygon: tuple[Point, ...]
    area_cm2: float | None
    confidence: float
    model_version_id: int | None
    created_at: datetime


@dataclass(frozen=True)
class ContourReviewRecord:
    """One review decision on a contour."""

    id: int
    clip_id: int
    contour_proposal_id: int | None
    frame_index: int
    structure: str
    polygon: tuple[Point, ...] | None
    action: ReviewAction
    reviewer: str
    reviewer_display_name: str | None
    created_at: datetime


@dataclass(frozen=True)
class ContourState:
    """Where one structure on one frame stands: the latest proposal and the latest review.

    ``polygon`` is the current one (the reviewed polygon, else the proposed one; None when rejected).
    ``review`` is the latest decision (None when never reviewed, or reopened since: status
    "proposed"); ``latest_review`` the latest review of any action.
    """

    clip_id: int
    frame_index: int
    structure: str
    status: MeasurementStatus
    polygon: tuple[Point, ...] | None
    proposal: ContourProposalRecord | None
    review: ContourReviewRecord | None
    latest_review: ContourReviewRecord | None = None


@dataclass(frozen=True)
class VolumeRecord:
    """A stored LV/LA volume or EF with its method."""

    id: int
    clip_id: int
    measurement: str
    frame_index: int | None
    value: float | None
    unit: str
    method: str
    confidence: float
    model_version_id: int | None
    created_at: datetime


# --------------------------------------------------------------------------- writing


def add_contours(
    store: Store,
    clip_id: int,
    segmentations: Iterable[Mapping[str, Any]],
    *,
    model: ModelInfo | None = None,
    actor: str = SYSTEM_ACTOR,
) -> list[ContourProposalRecord]:
    """Store the ``segmentations`` items of the measure JSON as contour proposals.

    Idempotent: a structure on a frame the same model version already proposed is not stored
    twice (the stored proposal is returned).

    Raises
    ------
    StoreError
        Unknown clip, a frame outside the clip, a bad structure name or polygon.
    """
    items = list(segmentations)
    return store._write(lambda s: contours_in(s, clip_id, items, model, actor))


def contours_in(s: Session, clip_id: int, items: Sequence[Mapping[str, Any]], model: ModelInfo | None,
                actor: str) -> list[ContourProposalRecord]:
    """:func:`add_contours` in the write transaction ``s``."""
    clip = get_clip(s, clip_id)
    model_version_id = ensure_model_version(s, model, actor).id if model is not None else None
    existing = {
        (r.frame_index, r.structure, r.model_version_id): r
        for r in s.scalars(select(db.ContourProposal).where(db.ContourProposal.clip_id == clip_id)).all()
    }
    out, added = [], []
    for item in items:
        frame = _frame(item.get("frame"), clip)
        structure = _structure(item.get("structure"))
        polygon = _polygon(item.get("polygon"), clip)
        key = (frame, structure, model_version_id)
        row = existing.get(key)
        if row is None:
            row = db.ContourProposal(
                clip_id=clip_id,
                frame_index=frame,
                structure=structure,
                polygon=polygon,
                area_cm2=_opt_finite(item.get("area_cm2"), "area_cm2"),
                confidence=clamped_confidence(item.get("confidence", 0.0)),
                model_version_id=model_version_id,
                created_at=db.utcnow(),
            )
            s.add(row)
            s.flush()
            existing[key] = row
            added.append(row)
        out.append(_proposal_record(row))
    if added:
        after = {"contours": [audit_payload(r) for r in added]}
        audit.append(s, actor, "contours.add", "clip", clip_id, clip_id, None, after,
                     content=audit.content_hash(added, chain.CONTOUR_PROPOSAL_CONTENT))
    return out


def add_volumes(
    store: Store,
    clip_id: int,
    volumes: Iterable[Mapping[str, Any]],
    *,
    model: ModelInfo | None = None,
    actor: str = SYSTEM_ACTOR,
) -> list[VolumeRecord]:
    """Store volumes, EF and LV length: items ``{"name", "value", "unit", "frame", "method", "confidence"}``.

    ``value`` None (no LV found, no calibration) is stored as such, with the unit given.
    Idempotent per measurement, method and model version.

    Raises
    ------
    StoreError
        Unknown clip or measurement, a value in a unit other than the measurement's, an unknown
        method, a non-finite value or a frame outside the clip.
    """
    items = list(volumes)
    return store._write(lambda s: volumes_in(s, clip_id, items, model, actor))


def volumes_in(s: Session, clip_id: int, items: Sequence[Mapping[str, Any]], model: ModelInfo | None,
               actor: str) -> list[VolumeRecord]:
    """:func:`add_volumes` in the write transaction ``s``."""
    clip = get_clip(s, clip_id)
    model_version_id = ensure_model_version(s, model, actor).id if model is not None else None
    existing = {
        (r.measurement, r.method, r.model_version_id): r
        for r in s.scalars(select(db.VolumeProposal).where(db.VolumeProposal.clip_id == clip_id)).all()
    }
    out, added = [], []
    for item in items:
        name = item.get("name")
        if name not in VOLUME_UNITS:
            raise StoreError(f"unknown volume measurement {name!r}; use one of {', '.join(VOLUME_UNITS)}")
        value = _opt_finite(item.get("value"), name)
        unit = str(item.get("unit") or VOLUME_UNITS[name])
        if value is not None and unit != VOLUME_UNITS[name]:
            raise StoreError(f"{name} is in {VOLUME_UNITS[name]}, not {unit!r}")
        method = item.get("method")
        if not isinstance(method, str) or not _METHOD.match(method):
            raise StoreError(f"{name} needs its method (single-plane A4C/A2C, biplane, area-length A4C/A2C)")
        frame = None if item.get("frame") is None else _frame(item.get("frame"), clip)
        key = (name, method, model_version_id)
        row = existing.get(key)
        if row is None:
            row = db.VolumeProposal(
                clip_id=clip_id, measurement=name, frame_index=frame, value=value, unit=unit, method=method,
                confidence=clamped_confidence(item.get("confidence", 0.0)), model_version_id=model_version_id,
                created_at=db.utcnow(),
            )
            s.add(row)
            s.flush()
            existing[key] = row
            added.append(row)
        out.append(_volume_record(row))
    if added:
        after = {"volumes": [audit_payload(r) for r in added]}
        audit.append(s, actor, "volumes.add", "clip", clip_id, clip_id, None, after,
                     content=audit.content_hash(added, chain.VOLUME_PROPOSAL_CONTENT))
    return out


def add_all_proposals(
    store: Store,
    clip_id: int,
    proposals: Any,
    segmentations: Iterable[Mapping[str, Any]],
    volumes: Iterable[Mapping[str, Any]],
    *,
    contour_model: ModelInfo | None,
    model: ModelInfo | None,
    view: tuple[str, float | None] | None = None,
    notices: Sequence[str] = (),
    actor: str = SYSTEM_ACTOR,
) -> list[Any]:
    """Store a clip's caliper proposals (:meth:`Store.add_proposals`), contours, volumes and, with
    ``view`` (name, confidence), its view and ``notices`` (:mod:`echomeasure.store.clip_views`)
    in one write transaction: a crash between them cannot leave calipers without their contours
    (which a later ingest of the same file, finding proposals, would never add).  Idempotent
    like each part; returns the caliper proposal records.

    Raises
    ------
    StoreError
        What any part refuses; nothing is stored then.
    """
    from echomeasure.store import writes

    contour_items, volume_items = list(segmentations), list(volumes)

    def op(s: Session) -> list[Any]:
        stored = writes.add_proposals(s, clip_id, proposals, actor)
        if contour_items:
            contours_in(s, clip_id, contour_items, contour_model, actor)
        if volume_items:
            volumes_in(s, clip_id, volume_items, model, actor)
        if view is not None:
            clip_views.view_in(s, clip_id, view[0], view[1], notices, actor)
        return stored

    return store._write(op)


def add_contour_review(
    store: Store,
    clip_id: int,
    action: str,
    reviewer: str,
    *,
    contour_proposal_id: int | None = None,
    frame: int | None = None,
    structure: str | None = None,
    polygon: Sequence[Sequence[float]] | None = None,
    reviewer_display_name: str | None = None,
    based_on: int | None | str = ANY_STATE,
) -> ContourReviewRecord:
    """Record one decision on a contour (append-only) with its audit event.

    ``accepted`` and ``rejected`` answer ``contour_proposal_id``; ``corrected`` answers it with a
    new ``polygon``; ``added`` needs ``frame``, ``structure`` and ``polygon``; ``reopened``
    brings the reviewed contour of ``contour_proposal_id`` back to review (as proposed).
    ``based_on`` is the id of the latest review of that contour (its frame and structure) the
    reviewer saw (None: unreviewed); the rule of caliper reviews
    (:func:`echomeasure.store.writes.check_based_on`) refuses the decision when the latest is
    another one by then.  Default ``"any"``: not checked.

    Raises
    ------
    StoreError
        Unknown clip or contour proposal, a proposal of another clip, invalid action, empty
        reviewer, a missing or bad polygon, a frame outside the clip; a decision made on a stale
        state (:class:`echomeasure.store.writes.StaleReviewError`).
    """
    based_on = checked_based_on(based_on)
    reviewer = validate_reviewer(reviewer)
    display_name = None if reviewer_display_name is None else validate_reviewer(reviewer_display_name)
    checked = checked_action(action)

    def op(s: Session) -> ContourReviewRecord:
        clip = get_clip(s, clip_id)
        proposal = None
        if action == "added":
            if frame is None or structure is None or polygon is None:
                raise StoreError("an added contour needs its frame, structure and polygon")
            r_frame, r_structure = _frame(frame, clip), _structure(structure)
        else:
            if contour_proposal_id is None:
                raise StoreError(f"a {action} contour needs the contour proposal it answers")
            proposal = s.get(db.ContourProposal, contour_proposal_id)
            if proposal is None or proposal.clip_id != clip_id:
                raise StoreError(f"contour proposal {contour_proposal_id} is not on clip {clip_id}")
            r_frame, r_structure = proposal.frame_index, proposal.structure
        check_based_on(s, clip_id, f"{r_structure} contour of frame {r_frame}", based_on,
                       lambda: _latest_contour_review(s, clip_id, r_frame, r_structure))
        if action == REOPEN_ACTION:
            latest = _latest_contour_review(s, clip_id, r_frame, r_structure)
            check_reopenable(latest, f"the {r_structure} contour of frame {r_frame} on clip {clip_id}")
        if action in ("rejected", REOPEN_ACTION):
            r_polygon = None
        elif action == "accepted":
            assert proposal is not None
            r_polygon = proposal.polygon
        else:
            if polygon is None:
                raise StoreError(f"a {action} contour needs its polygon")
            r_polygon = _polygon(polygon, clip)
        row = db.ContourReview(
            contour_proposal_id=None if proposal is None else proposal.id,
            clip_id=clip_id,
            frame_index=r_frame,
            structure=r_structure,
            polygon=r_polygon,
            action=checked,
            reviewer=reviewer,
            reviewer_display_name=display_name,
            created_at=db.utcnow(),
        )
        s.add(row)
        s.flush()
        after = audit_payload(row) | {"n_vertices": None if r_polygon is None else len(r_polygon)}
        audit.append(s, reviewer, f"contour_review.{action}", "contour_review", row.id, clip_id, None, after,
                     content=audit.content_hash([row], chain.CONTOUR_REVIEW_CONTENT))
        return _review_record(row)

    return store._write(op)


def _latest_contour_review(s: Session, clip_id: int, frame: int, structure: str) -> db.ContourReview | None:
    """The latest review (of any action) of one structure on one frame of a clip, or None."""
    return s.scalar(
        select(db.ContourReview)
        .where(db.ContourReview.clip_id == clip_id, db.ContourReview.frame_index == frame,
               db.ContourReview.structure == structure)
        .order_by(db.ContourReview.id.desc()).limit(1)
    )


# --------------------------------------------------------------------------- reading


def contour_proposals(store: Store, clip_id: int) -> list[ContourProposalRecord]:
    """All contour proposals of a clip, oldest first."""

    def op(s: Session) -> list[ContourProposalRecord]:
        get_clip(s, clip_id)
        q = select(db.ContourProposal).where(db.ContourProposal.clip_id == clip_id).order_by(db.ContourProposal.id)
        return [_proposal_record(r) for r in s.scalars(q).all()]

    return store._read(op)


def contour_reviews(store: Store, clip_id: int) -> list[ContourReviewRecord]:
    """All contour review decisions of a clip, oldest first."""

    def op(s: Session) -> list[ContourReviewRecord]:
        get_clip(s, clip_id)
        q = select(db.ContourReview).where(db.ContourReview.clip_id == clip_id).order_by(db.ContourReview.id)
        return [_review_record(r) for r in s.scalars(q).all()]

    return store._read(op)


def volumes(store: Store, clip_id: int) -> list[VolumeRecord]:
    """All volume/EF proposals of a clip, oldest first."""

    def op(s: Session) -> list[VolumeRecord]:
        get_clip(s, clip_id)
        q = select(db.VolumeProposal).where(db.VolumeProposal.clip_id == clip_id).order_by(db.VolumeProposal.id)
        return [_volume_record(r) for r in s.scalars(q).all()]

    return store._read(op)


def contour_counts(store: Store) -> dict[int, tuple[int, int]]:
    """``clip id -> (reviewed, total)`` contours (one per structure per frame) of every clip with
    contours, in one read: the rule of :func:`current_contours` (a contour whose latest review
    reopened it is not reviewed)."""

    def op(s: Session) -> dict[int, tuple[int, int]]:
        p, r = db.ContourProposal, db.ContourReview
        keys = set(s.execute(select(p.clip_id, p.frame_index, p.structure).distinct()).tuples())
        latest = select(func.max(r.id)).group_by(r.clip_id, r.frame_index, r.structure).scalar_subquery()
        reviewed: set[tuple[int, int, str]] = set()
        for clip_id, frame, structure, action in s.execute(
                select(r.clip_id, r.frame_index, r.structure, r.action).where(r.id.in_(latest))).tuples():
            keys.add((clip_id, frame, structure))
            if action != REOPEN_ACTION:
                reviewed.add((clip_id, frame, structure))
        out: dict[int, tuple[int, int]] = {}
        for key in keys:
            done, total = out.get(key[0], (0, 0))
            out[key[0]] = (done + (key in reviewed), total + 1)
        return out

    return store._read(op)


def current_contours(store: Store, clip_id: int) -> list[ContourState]:
    """One state per (frame, structure): the latest proposal and the latest review of it.

    Ordered by frame, then structure.
    """
    proposals = contour_proposals(store, clip_id)
    reviews = contour_reviews(store, clip_id)
    latest_proposal: dict[tuple[int, str], ContourProposalRecord] = {}
    for prop in proposals:
        latest_proposal[(prop.frame_index, prop.structure)] = prop
    latest_review: dict[tuple[int, str], ContourReviewRecord] = {}
    for rev in reviews:
        latest_review[(rev.frame_index, rev.structure)] = rev
    out = []
    for key in sorted(set(latest_proposal) | set(latest_review)):
        p: ContourProposalRecord | None = latest_proposal.get(key)
        latest: ContourReviewRecord | None = latest_review.get(key)
        r = None if latest is not None and latest.action == REOPEN_ACTION else latest
        status: MeasurementStatus
        if r is not None:
            status, polygon = decision_status(r.action), r.polygon
        else:
            assert p is not None
            status, polygon = "proposed", p.polygon
        out.append(ContourState(clip_id, key[0], key[1], status, polygon, p, r, latest))
    return out


# --------------------------------------------------------------------------- helpers


def _frame(value: Any, clip: db.Clip) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise StoreError(f"frame {value!r} is outside clip {clip.id} (frames 0-{clip.n_frames - 1})")
    check_frame(value, clip.id, clip.n_frames)
    return int(value)


def _structure(value: Any) -> str:
    if not isinstance(value, str) or not _STRUCTURE.match(value):
        raise StoreError(f"structure {value!r} is not a lower-case name of up to 32 letters, digits or _")
    return value


#: Most vertices one contour may have (a proposed outline has tens to a few hundred; a hand-drawn
#: one a few hundred): a bound on what one request stores and every later opening of the clip reads.
MAX_CONTOUR_VERTICES = 4096


def checked_polygon(points: Any, width_px: int, height_px: int) -> list[tuple[float, float]]:
    """A contour polygon as ``[(x, y), ...]`` floats: 3 to :data:`MAX_CONTOUR_VERTICES` finite
    vertices inside the ``width_px`` x ``height_px`` image.

    Raises
    ------
    StoreError
        Anything else (one line, no value from the input).
    """
    try:
        n = len(points)
    except TypeError:
        raise StoreError("a contour polygon is a list of [x, y] pixel pairs") from None
    if n > MAX_CONTOUR_VERTICES:
        raise StoreError(f"a contour polygon has at most {MAX_CONTOUR_VERTICES} vertices, got {n}")
    try:
        pts = [(float(x), float(y)) for x, y in points]
    except (TypeError, ValueError, OverflowError):
        raise StoreError("a contour polygon is a list of [x, y] pixel pairs") from None
    if len(pts) < 3:
        raise StoreError(f"a contour polygon needs at least 3 vertices, got {len(pts)}")
    for x, y in pts:
        if not (math.isfinite(x) and math.isfinite(y)) or not (0 <= x <= width_px and 0 <= y <= height_px):
            raise StoreError(f"a contour vertex lies outside the {width_px}x{height_px} image")
    return pts


def _polygon(points: Any, clip: db.Clip) -> list[list[float]]:
    pts = checked_polygon(points, clip.width_px, clip.height_px)
    return chain.exact_json([[x, y] for x, y in pts])


def _opt_finite(value: Any, name: str) -> float | None:
    if value is None:
        return None
    v = float(value)
    if not math.isfinite(v):
        raise StoreError(f"{name} must be a finite number")
    return v + 0.0


def _proposal_record(row: db.ContourProposal) -> ContourProposalRecord:
    return record_from_row(ContourProposalRecord, row, polygon=points_tuple(row.polygon) or ())


def _review_record(row: db.ContourReview) -> ContourReviewRecord:
    return record_from_row(ContourReviewRecord, row, polygon=points_tuple(row.polygon))


def _volume_record(row: db.VolumeProposal) -> VolumeRecord:
    return record_from_row(VolumeRecord, row)
