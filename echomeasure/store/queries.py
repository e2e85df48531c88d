"""Reading the review store: where measurements stand, the worklist, the frames for training.

Every function takes an open session (:mod:`echomeasure.store.session`) and returns records;
the status rules (a measurement's, a clip's) live here once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session, joinedload, selectinload

from echomeasure import catalog
from echomeasure.errors import StoreError
from echomeasure.store import schema as db
from echomeasure.store.images import ImageStore
from echomeasure.store.mapping import audit_payload, proposal_record, review_record, user_scale
from echomeasure.store.records import (
    KEEPING_ACTIONS,
    REOPEN_ACTION,
    ClipKind,
    ClipStatus,
    ClipSummary,
    MeasurementState,
    MeasurementStatus,
    Point,
    ProposalRecord,
    ReviewRecord,
    TrainingFrame,
    decision_status,
)

if TYPE_CHECKING:
    from echomeasure.propose.types import ModelInfo

log = logging.getLogger(__name__)


def get_clip(s: Session, clip_id: int) -> db.Clip:
    """The clip row; :class:`StoreError` when there is none."""
    row = s.get(db.Clip, clip_id)
    if row is None:
        raise StoreError(f"no clip {clip_id} in the store; list clips with 'echomeasure export --format json'")
    return row


def find_model_version(s: Session, info: ModelInfo) -> db.ModelVersion | None:
    """The ``model_version`` row with the identity (name, version, sha256) of ``info``, or None."""
    return s.scalar(
        select(db.ModelVersion).where(
            db.ModelVersion.name == info.name,
            db.ModelVersion.version == info.version,
            db.ModelVersion.sha256 == info.sha256,
        )
    )


def latest_proposal(s: Session, clip_id: int, measurement: str) -> db.Proposal | None:
    """The most recent proposal of a measurement on a clip."""
    return s.scalar(
        select(db.Proposal)
        .where(db.Proposal.clip_id == clip_id, db.Proposal.measurement == measurement)
        .order_by(db.Proposal.id.desc())
        .limit(1)
    )


def resolve_proposal(
    s: Session, clip_id: int, measurement: str, action: str, proposal_id: int | None
) -> db.Proposal | None:
    """The proposal a review answers: ``proposal_id``, else the latest one of the measurement
    (none for an ``added`` measurement)."""
    if proposal_id is not None:
        proposal = s.get(db.Proposal, proposal_id)
        if proposal is None or proposal.clip_id != clip_id:
            raise StoreError(f"no proposal {proposal_id} on clip {clip_id}")
        if proposal.measurement != measurement:
            raise StoreError(f"proposal {proposal_id} is {proposal.measurement}, not {measurement}")
        return proposal
    if action == "added":
        return None
    proposal = latest_proposal(s, clip_id, measurement)
    if proposal is None:
        raise StoreError(f"nothing was proposed for {measurement} on clip {clip_id}; use the action 'added'")
    return proposal


def latest_review(s: Session, clip_id: int, measurement: str) -> db.Review | None:
    """The most recent review of a measurement on a clip (of any reviewer), or None."""
    return s.scalar(
        select(db.Review)
        .where(db.Review.clip_id == clip_id, db.Review.measurement == measurement)
        .order_by(db.Review.id.desc())
        .limit(1)
    )


def state_snapshot(s: Session, clip_id: int, measurement: str) -> dict | None:
    """The measurement's current state before a change (for the audit trail)."""
    last = latest_review(s, clip_id, measurement)
    if last is not None:
        return {"status": last.action, **audit_payload(last)}
    proposal = latest_proposal(s, clip_id, measurement)
    if proposal is not None:
        return {"status": "proposed", **audit_payload(proposal)}
    return None


# --------------------------------------------------------------------------- measurement states


def current_measurements(clip: db.Clip) -> list[MeasurementState]:
    """Where each measurement of a clip stands (latest proposal + latest review), in catalogue order."""
    return measurement_states(
        clip.id, [proposal_record(p) for p in clip.proposals], [review_record(r) for r in clip.reviews]
    )


def measurement_states(
    clip_id: int, proposals: Sequence[ProposalRecord], reviews: Sequence[ReviewRecord]
) -> list[MeasurementState]:
    """Where each measurement stands given these proposals and reviews (oldest first), in
    catalogue order: the latest review over the latest proposal.  Readers pass what they may see."""
    latest_proposal = {p.measurement: p for p in proposals}
    latest_review = {r.measurement: r for r in reviews}
    n_reviews = Counter(r.measurement for r in reviews)
    models = {p.model_version_id: (p.model_name, p.model_version) for p in proposals if p.model_version_id is not None}
    names = [n for n in catalog.CATALOG if n in latest_proposal or n in latest_review]
    return [
        _measurement_state(clip_id, n, latest_proposal.get(n), latest_review.get(n), n_reviews[n], models)
        for n in names
    ]


def _measurement_state(
    clip_id: int,
    name: str,
    p: ProposalRecord | None,
    r: ReviewRecord | None,
    n_reviews: int,
    models: Mapping[int, tuple[str | None, str | None]],
) -> MeasurementState:
    status: MeasurementStatus
    frame: int | None
    points: tuple[Point, ...] | None
    unit: str | None
    latest = r
    if r is not None and r.action == REOPEN_ACTION:
        r = None  # reopened: as proposed, unreviewed
    if r is None:
        assert p is not None
        status, frame, points, value, unit = "proposed", p.frame_index, p.points, p.value, p.unit
    else:
        status, frame, points, value, unit = decision_status(r.action), r.frame_index, r.points, r.value, r.unit
    # The reviewed proposal's model version when a review answered one, else the latest proposal's.
    model_version_id = r.model_version_id if r is not None else None
    if model_version_id is None and p is not None:
        model_version_id = p.model_version_id
    model_name, model_version = (None, None) if model_version_id is None else models.get(model_version_id, (None, None))
    return MeasurementState(
        clip_id=clip_id,
        measurement=name,
        status=status,
        frame_index=frame,
        points=points,
        value=value,
        unit=unit,
        proposal_id=p.id if p is not None else None,
        proposed_frame_index=p.frame_index if p is not None else None,
        proposed_points=p.points if p is not None else None,
        proposed_value=p.value if p is not None else None,
        proposed_unit=p.unit if p is not None else None,
        pixel_length_px=p.pixel_length_px if p is not None else None,
        confidence=p.confidence if p is not None else None,
        model_version_id=model_version_id,
        model_name=model_name,
        model_version=model_version,
        proposed_at=p.created_at if p is not None else None,
        review_id=r.id if r is not None else None,
        reviewer=r.reviewer if r is not None else None,
        reviewed_at=r.created_at if r is not None else None,
        seconds_spent=r.seconds_spent if r is not None else None,
        n_reviews=n_reviews,
        latest_review_id=latest.id if latest is not None else None,
        latest_reviewer=(latest.reviewer_display_name or latest.reviewer) if latest is not None else None,
        latest_reviewed_at=latest.created_at if latest is not None else None,
    )


# --------------------------------------------------------------------------- worklist


def clip_status(proposed: Collection[str], reviewed: Collection[str]) -> ClipStatus:
    """A clip's worklist status from the names of the measurements proposed and those reviewed."""
    total = len(set(proposed) | set(reviewed))
    if total == 0:
        return "no proposals"
    if not reviewed:
        return "to review"
    if len(reviewed) < total:
        return "in review"
    return "reviewed"


def summary_for_states(summary: ClipSummary, states: Sequence[MeasurementState]) -> ClipSummary:
    """A worklist line counted from the measurement states one viewer sees (the worklist's rule)."""
    proposed = {st.measurement for st in states if st.proposal_id is not None}
    reviewed = {st.measurement for st in states if st.review_id is not None}
    last = max((st.reviewed_at for st in states if st.reviewed_at is not None), default=None)
    return replace(
        summary, n_proposed=len(proposed), n_reviewed=len(reviewed), status=clip_status(proposed, reviewed),
        last_reviewed_at=last,
    )


def _names_by_clip(
    s: Session, clip_id_column: InstrumentedAttribute[int], name_column: InstrumentedAttribute[str]
) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for clip_id, name in s.execute(select(clip_id_column, name_column).distinct()):
        out.setdefault(clip_id, set()).add(name)
    return out


def _reviewed_names_by_clip(s: Session) -> dict[int, set[str]]:
    """The measurements of each clip whose latest review is a decision (not a reopening)."""
    latest = select(func.max(db.Review.id)).group_by(db.Review.clip_id, db.Review.measurement)
    out: dict[int, set[str]] = {}
    q = select(db.Review.clip_id, db.Review.measurement).where(
        db.Review.id.in_(latest.scalar_subquery()), db.Review.action != REOPEN_ACTION
    )
    for clip_id, name in s.execute(q):
        out.setdefault(clip_id, set()).add(name)
    return out


def worklist(s: Session) -> list[ClipSummary]:
    """Every clip with how many measurements were proposed and reviewed, newest first."""
    proposed = _names_by_clip(s, db.Proposal.clip_id, db.Proposal.measurement)
    reviewed = _reviewed_names_by_clip(s)
    last: dict[int, datetime] = {
        clip_id: db.as_utc(ts)
        for clip_id, ts in s.execute(select(db.Review.clip_id, func.max(db.Review.created_at)).group_by(db.Review.clip_id))
    }
    clips = s.scalars(
        select(db.Clip)
        .options(joinedload(db.Clip.study), selectinload(db.Clip.user_calibrations))
        .order_by(db.Clip.id.desc())
    ).all()
    out = []
    for clip in clips:
        p = proposed.get(clip.id, set())
        r = reviewed.get(clip.id, set())
        out.append(
            ClipSummary(
                clip_id=clip.id,
                study_uid=clip.study.study_uid,
                series_uid=clip.series_uid,
                instance_uid=clip.instance_uid,
                kind=clip.kind,
                n_frames=clip.n_frames,
                calibration_source="user" if user_scale(clip) is not None else clip.calibration_source,
                n_proposed=len(p),
                n_reviewed=len(r),
                status=clip_status(p, r),
                created_at=clip.created_at,
                last_reviewed_at=last.get(clip.id),
            )
        )
    return out


# --------------------------------------------------------------------------- training frames


def training_frames(
    s: Session,
    images: ImageStore,
    kind: ClipKind | None,
    clip_ids: Iterable[int] | None,
    since: datetime | None,
    require_image: bool,
) -> list[TrainingFrame]:
    """Reviewed frames with their final points (see :meth:`Store.reviews_for_training`)."""
    q = (
        select(db.Clip)
        .where(db.Clip.reviews.any())
        .options(
            joinedload(db.Clip.study),
            selectinload(db.Clip.proposals),
            selectinload(db.Clip.reviews),
            selectinload(db.Clip.frame_images),
        )
        .order_by(db.Clip.id)
    )
    if kind is not None:
        q = q.where(db.Clip.kind == kind)
    if clip_ids is not None:
        q = q.where(db.Clip.id.in_(set(clip_ids)))
    out: list[TrainingFrame] = []
    for clip in s.scalars(q).all():
        by_frame: dict[int, list[MeasurementState]] = {}
        for st in current_measurements(clip):
            if st.status not in KEEPING_ACTIONS or st.points is None or st.frame_index is None:
                continue
            if since is not None and st.reviewed_at is not None and st.reviewed_at < since:
                continue
            by_frame.setdefault(st.frame_index, []).append(st)
        saved = {row.frame_index: row for row in clip.frame_images}
        for frame_index, states in sorted(by_frame.items()):
            image = saved.get(frame_index)
            if image is None and require_image:
                log.info("clip %d frame %d reviewed but its image was not saved", clip.id, frame_index)
                continue
            out.append(_training_frame(clip, frame_index, states, None if image is None else images.path(image.relpath)))
    return out


def _training_frame(
    clip: db.Clip, frame_index: int, states: list[MeasurementState], image_path: Path | None
) -> TrainingFrame:
    keypoints: dict[str, Point] = {}
    for st in sorted(states, key=lambda st: (st.reviewed_at or st.proposed_at, st.review_id or 0)):
        assert st.points is not None
        if clip.kind == "2d" and st.measurement in catalog.LINEAR_ENDPOINTS:
            for name, point in zip(catalog.LINEAR_ENDPOINTS[st.measurement], st.points, strict=False):
                keypoints[name] = point
        elif st.measurement in catalog.DOPPLER_CHANNELS and st.points:
            keypoints[st.measurement] = st.points[0]
    return TrainingFrame(
        clip_id=clip.id,
        frame_index=frame_index,
        kind=clip.kind,
        width_px=clip.width_px,
        height_px=clip.height_px,
        image_path=image_path,
        keypoints=keypoints,
        measurements={st.measurement: st.points for st in states if st.points is not None},
        statuses={st.measurement: st.status for st in states},
        model_version_ids=tuple(sorted({st.model_version_id for st in states if st.model_version_id is not None})),
        study_uid=clip.study.study_uid,
        instance_uid=clip.instance_uid,
        reviewed_at=max(st.reviewed_at for st in states if st.reviewed_at is not None),
    )


__all__ = [
    "clip_status",
    "current_measurements",
    "find_model_version",
    "get_clip",
    "latest_proposal",
    "latest_review",
    "measurement_states",
    "resolve_proposal",
    "state_snapshot",
    "summary_for_states",
    "training_frames",
    "worklist",
]
