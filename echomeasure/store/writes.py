"""The review store's changes, each with its audit event, inside one open write transaction.

:class:`echomeasure.store.operations.Store` runs each of these in a transaction of its own
(:func:`echomeasure.store.session.write`), so a crash leaves both the change and its audit
event, or neither.  Inputs were checked by :mod:`echomeasure.store.validation`; records out
come from :mod:`echomeasure.store.mapping`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from echomeasure import catalog
from echomeasure.errors import StoreError
from echomeasure.store import audit, chain
from echomeasure.store import schema as db
from echomeasure.store.images import ImageStore
from echomeasure.store.mapping import (
    audit_payload,
    clip_audit,
    clip_record,
    frame_image_record,
    model_version_record,
    proposal_record,
    review_record,
)
from echomeasure.store.queries import (
    find_model_version,
    get_clip,
    latest_review,
    resolve_proposal,
    state_snapshot,
)
from echomeasure.store.records import (
    REOPEN_ACTION,
    ClipRecord,
    FrameImageRecord,
    ModelVersionRecord,
    ProposalRecord,
    ReviewAction,
    ReviewRecord,
)
from echomeasure.store.validation import (
    as_dict,
    checked_points,
    checked_unit,
    clamped_confidence,
    finite_or_none,
    jsonable,
    measurement_spec,
    review_fields,
)

if TYPE_CHECKING:
    from echomeasure.ingest import DeidentifiedClip
    from echomeasure.propose.types import ClipProposals, ModelInfo, Proposal

#: A stored frame image: (frame index, frame shape, PNG sha256, path relative to the image store).
StoredFrame = tuple[int, tuple[int, ...], str, str]


# --------------------------------------------------------------------------- clips and frames


def add_clip(s: Session, dclip: DeidentifiedClip, actor: str) -> ClipRecord:
    """Register a de-identified clip (and its study when new); the stored one when it exists."""
    clip = dclip.clip
    existing = s.scalar(
        select(db.Clip).where(db.Clip.instance_uid == dclip.instance_uid, db.Clip.pixel_sha256 == dclip.pixel_sha256)
    )
    if existing is not None:
        return clip_record(existing, created=False)
    study = s.scalar(select(db.Study).where(db.Study.study_uid == dclip.study_uid))
    if study is None:
        study = db.Study(study_uid=dclip.study_uid, created_at=db.utcnow())
        s.add(study)
        s.flush()
    n_frames, height_px, width_px = (int(n) for n in clip.frames.shape[:3])
    row = db.Clip(
        study=study,
        series_uid=dclip.series_uid,
        instance_uid=dclip.instance_uid,
        kind=clip.kind,
        source_kind=clip.source_kind,
        n_frames=n_frames,
        frame_time_ms=finite_or_none(clip.frame_time_ms),
        width_px=width_px,
        height_px=height_px,
        regions=[jsonable(dataclasses.asdict(r)) for r in clip.regions],
        calibration_source=clip.calibration_source,
        user_cm_per_px=finite_or_none(clip.user_cm_per_px),
        pixel_sha256=dclip.pixel_sha256,
        deid_record=jsonable(as_dict(dclip.deid_record)),
        created_at=db.utcnow(),
    )
    s.add(row)
    s.flush()
    record = clip_record(row, created=True)
    audit.append(s, actor, "clip.add", "clip", row.id, row.id, None, clip_audit(row),
                 content=audit.content_hash([row], chain.CLIP_CONTENT))
    return record


def add_frame_rows(
    s: Session, clip_id: int, stored: Sequence[StoredFrame], images: ImageStore, actor: str
) -> list[FrameImageRecord]:
    """Rows of frames already written to the image store; frames with a row keep it."""
    clip = get_clip(s, clip_id)
    existing = {row.frame_index: row for row in clip.frame_images}
    added: list[int] = []
    out: list[FrameImageRecord] = []
    for index, shape, sha, relpath in stored:
        row = existing.get(index)
        if row is None:
            row = db.FrameImage(
                clip_id=clip_id, frame_index=index, sha256=sha, width_px=int(shape[1]), height_px=int(shape[0]),
                relpath=relpath, created_at=db.utcnow(),
            )
            s.add(row)
            existing[index] = row
            added.append(index)
        out.append(frame_image_record(row, images))
    if added:
        audit.append(s, actor, "frames.save", "clip", clip_id, clip_id, None, {"frames": added})
    return out


# --------------------------------------------------------------------------- model versions


def _new_model_version(
    s: Session, info: ModelInfo, actor: str, *, parent_id: int | None = None,
    trained_on: dict | None = None, metrics: dict | None = None,
) -> db.ModelVersion:
    row = db.ModelVersion(
        name=info.name, version=info.version, sha256=info.sha256, parent_id=parent_id,
        trained_on=trained_on or {}, metrics=metrics or {}, active=False, created_at=db.utcnow(),
    )
    s.add(row)
    s.flush()
    audit.append(s, actor, "model_version.register", "model_version", row.id, None, None, audit_payload(row))
    return row


def ensure_model_version(s: Session, info: ModelInfo, actor: str) -> db.ModelVersion:
    """The ``model_version`` row of ``info``, registered (and audited) when new."""
    row = find_model_version(s, info)
    return row if row is not None else _new_model_version(s, info, actor)


def register_model_version(
    s: Session,
    model: ModelInfo,
    *,
    parent_id: int | None,
    trained_on: Mapping[str, Any] | None,
    metrics: Mapping[str, Any] | None,
    activate: bool,
    actor: str,
) -> ModelVersionRecord:
    """Register ``model`` (see :meth:`Store.register_model_version`)."""
    if parent_id is not None and s.get(db.ModelVersion, parent_id) is None:
        raise StoreError(f"no model version {parent_id} to use as parent")
    new_trained_on = None if trained_on is None else jsonable(dict(trained_on))
    new_metrics = None if metrics is None else jsonable(dict(metrics))
    row = find_model_version(s, model)
    if row is None:
        row = _new_model_version(s, model, actor, parent_id=parent_id, trained_on=new_trained_on, metrics=new_metrics)
    else:
        before = audit_payload(row)
        changed = False
        if new_trained_on is not None and new_trained_on != row.trained_on:
            row.trained_on, changed = new_trained_on, True
        if new_metrics is not None and new_metrics != row.metrics:
            row.metrics, changed = new_metrics, True
        if parent_id is not None and parent_id != row.parent_id:
            row.parent_id, changed = parent_id, True
        if changed:
            s.flush()
            audit.append(s, actor, "model_version.update", "model_version", row.id, None, before, audit_payload(row))
    if activate and not row.active:
        activate_model_version(s, row, actor)
    return model_version_record(row)


def activate_model_version(s: Session, row: db.ModelVersion, actor: str) -> None:
    """Make ``row`` the active version of its name (the previous active one is deactivated)."""
    previous = s.scalars(
        select(db.ModelVersion).where(db.ModelVersion.name == row.name, db.ModelVersion.active.is_(True))
    ).all()
    for prev in previous:
        prev.active = False
    row.active = True
    s.flush()
    audit.append(s, actor, "model_version.activate", "model_version", row.id, None,
                 {"active_ids": [p.id for p in previous]}, {"active_ids": [row.id]})


# --------------------------------------------------------------------------- proposals


def _new_proposal_row(
    clip: db.Clip, p: Proposal, points: list, model_version: db.ModelVersion | None
) -> db.Proposal:
    """A proposal row from a validated model proposal."""
    return db.Proposal(
        clip=clip,
        frame_index=int(p.frame),
        measurement=p.name,
        points=points,
        value=finite_or_none(p.value),
        unit=checked_unit(p.unit),
        signed_value=finite_or_none(p.signed_value),
        pixel_length_px=finite_or_none(p.pixel_length),
        confidence=clamped_confidence(p.confidence),
        model_version=model_version,
        created_at=db.utcnow(),
    )


def add_proposals(s: Session, clip_id: int, proposals: ClipProposals, actor: str) -> list[ProposalRecord]:
    """Store what the models proposed (see :meth:`Store.add_proposals`)."""
    clip = get_clip(s, clip_id)
    versions: dict[tuple[str, str, str], db.ModelVersion] = {}

    def version_row(info: ModelInfo | None) -> db.ModelVersion | None:
        if info is None:
            return None
        key = (info.name, info.version, info.sha256)
        if key not in versions:
            versions[key] = ensure_model_version(s, info, actor)
        return versions[key]

    existing = {(r.measurement, r.model_version_id): r for r in clip.proposals}
    out: list[ProposalRecord] = []
    added: list[db.Proposal] = []
    for p in proposals.measurements:
        spec = measurement_spec(p.name)
        if not 0 <= p.frame < clip.n_frames:
            raise StoreError(f"proposal {p.name} is on frame {p.frame}, outside clip {clip_id}")
        points = checked_points(p.points, spec, clip)
        model_version = version_row(p.model or proposals.model)
        key = (p.name, model_version.id if model_version is not None else None)
        row = existing.get(key)
        if row is None:
            row = _new_proposal_row(clip, p, points, model_version)
            s.add(row)
            s.flush()
            existing[key] = row
            added.append(row)
        out.append(proposal_record(row))
    if added:
        after = {
            "proposals": [audit_payload(r) for r in added],
            "ed_frame": proposals.ed_frame,
            "es_frame": proposals.es_frame,
            "calibration": proposals.calibration,
        }
        audit.append(s, actor, "proposals.add", "clip", clip_id, clip_id, None, after,
                     content=audit.content_hash(added, chain.PROPOSAL_CONTENT))
    return out


# --------------------------------------------------------------------------- reviews


#: ``based_on`` of a review made without saying what it was made on (the API, the CLI): no
#: check that the measurement is still as the reviewer saw it.
ANY_STATE = "any"
#: Key of the PostgreSQL advisory lock that queues the reviews of one clip (with the clip id).
_REVIEW_LOCK_NAMESPACE = 0x4543


class StaleReviewError(StoreError):
    """A review made on a state of the measurement that is no longer its latest: someone (or
    another tab) reviewed it meanwhile.  Nothing is stored.  ``measurement`` is the measurement's
    name, or for a contour its label (``lv contour of frame 12``)."""

    def __init__(self, clip_id: int, measurement: str, reviewer: str | None, reviewed_at: Any) -> None:
        self.clip_id, self.measurement, self.reviewer, self.reviewed_at = clip_id, measurement, reviewer, reviewed_at
        by = f" by {reviewer}" if reviewer else ""
        at = f" at {reviewed_at:%H:%M:%S} UTC" if reviewed_at is not None else ""
        super().__init__(f"{measurement} on clip {clip_id} was reviewed meanwhile{by}{at}; nothing saved")


class ReviewFields(TypedDict, total=False):
    """The keyword arguments of a review decision as asked for, all optional: the one list that
    :meth:`echomeasure.store.Store.add_review` and :meth:`~echomeasure.store.Store.review_request`
    take (``based_on`` defaults to :data:`ANY_STATE`, the others to None)."""

    proposal_id: int | None
    frame: int | None
    points: Sequence[Sequence[float]] | None
    value: float | None
    unit: str | None
    seconds_spent: float | None
    reviewer_display_name: str | None
    based_on: int | None | str


@dataclasses.dataclass(frozen=True)
class ReviewRequest:
    """A review decision as asked for, its names, action and state already checked; ``fields``
    as given (the proposal, frame, points, value and unit are checked against the store when it
    is written).

    ``based_on`` is the id of the latest review of the measurement the reviewer saw (None: they
    saw it unreviewed); the review is refused (:class:`StaleReviewError`) when the measurement's
    latest review is another one by then.  :data:`ANY_STATE` skips the check.
    """

    clip_id: int
    spec: catalog.Measurement
    action: ReviewAction
    reviewer: str
    reviewer_display_name: str | None
    fields: ReviewFields
    based_on: int | None | str = ANY_STATE


def checked_based_on(based_on: Any) -> int | None | str:
    """``based_on`` of a review request as given: a review id, None (seen unreviewed) or
    :data:`ANY_STATE`.

    Raises
    ------
    StoreError
        Anything else.
    """
    if based_on != ANY_STATE and based_on is not None and (isinstance(based_on, bool) or not isinstance(based_on, int)):
        raise StoreError(f"based_on is a review id, None or {ANY_STATE!r}")
    return based_on


def check_based_on(s: Session, clip_id: int, what: str, based_on: int | None | str,
                   latest: Callable[[], Any]) -> None:
    """Refuse a review of ``what`` (a measurement, a contour) on ``clip_id`` when its latest
    review (``latest()``: a row with ``id``, ``reviewer``, ``reviewer_display_name`` and
    ``created_at``, or None) is not the one it was made on (``based_on``; :data:`ANY_STATE`: no check).

    Called inside the write transaction: SQLite writers hold the database's write lock
    (``BEGIN IMMEDIATE``); PostgreSQL writers of one clip queue on a transaction advisory lock
    (no UPDATE privilege needed), so two reviews made on the same state cannot both pass.

    Raises
    ------
    StaleReviewError
        Names who reviewed it last and when; nothing is stored.
    """
    if based_on == ANY_STATE:
        return
    if s.get_bind().dialect.name == "postgresql":
        s.execute(select(func.pg_advisory_xact_lock(_REVIEW_LOCK_NAMESPACE, clip_id)))
    last = latest()
    if (None if last is None else last.id) != based_on:
        assert last is not None or based_on is not None
        raise StaleReviewError(
            clip_id, what, None if last is None else (last.reviewer_display_name or last.reviewer),
            None if last is None else db.as_utc(last.created_at),
        )


def check_not_stale(s: Session, req: ReviewRequest) -> None:
    """Refuse ``req`` when the measurement's latest review is not the one it was made on
    (:func:`check_based_on`)."""
    check_based_on(s, req.clip_id, req.spec.name, req.based_on, lambda: latest_review(s, req.clip_id, req.spec.name))


def check_reopenable(latest: db.Review | db.ContourReview | None, what: str) -> None:
    """Refuse to reopen what is not reviewed (never reviewed, or reopened already) or what no
    model proposed (a measurement or contour the reviewer added: reject it instead)."""
    if latest is None or latest.action == REOPEN_ACTION:
        raise StoreError(f"{what} is not reviewed: nothing to reopen")
    proposal_id = latest.proposal_id if isinstance(latest, db.Review) else latest.contour_proposal_id
    if proposal_id is None:
        raise StoreError(f"{what} was added by a reviewer, not proposed: reject it instead of reopening it")


def add_reviews(
    s: Session, requests: Sequence[ReviewRequest], on_saved: Callable[[Session, db.Review], None] | None = None
) -> list[ReviewRecord]:
    """Record several review decisions in the one write transaction ``s``: all or none."""
    return [add_review(s, req, on_saved) for req in requests]


def add_review(
    s: Session, req: ReviewRequest, on_saved: Callable[[Session, db.Review], None] | None
) -> ReviewRecord:
    """Record one review decision with its audit event (see :meth:`Store.add_review`)."""
    clip = get_clip(s, req.clip_id)
    check_not_stale(s, req)
    measurement = req.spec.name
    if req.action == REOPEN_ACTION:
        check_reopenable(latest_review(s, req.clip_id, measurement), f"{measurement} on clip {req.clip_id}")
    asked = req.fields
    proposal = resolve_proposal(s, req.clip_id, measurement, req.action, asked.get("proposal_id"))
    frame, points_json, value, unit = review_fields(
        clip, req.spec, req.action, proposal,
        frame=asked.get("frame"), points=asked.get("points"), value=asked.get("value"), unit=asked.get("unit"),
    )
    before = state_snapshot(s, req.clip_id, measurement)
    row = db.Review(
        proposal=proposal, clip=clip, frame_index=None if frame is None else int(frame), measurement=measurement,
        points=points_json, value=value, unit=unit, action=req.action, reviewer=req.reviewer,
        reviewer_display_name=req.reviewer_display_name, seconds_spent=finite_or_none(asked.get("seconds_spent")),
        model_version_id=proposal.model_version_id if proposal is not None else None, created_at=db.utcnow(),
    )
    s.add(row)
    s.flush()
    record = review_record(row)
    audit.append(s, req.reviewer, f"review.{req.action}", "review", row.id, req.clip_id, before, audit_payload(row),
                 content=audit.content_hash([row], chain.REVIEW_CONTENT))
    if on_saved is not None:
        on_saved(s, row)
    return record


__all__ = [
    "ANY_STATE",
    "ReviewFields",
    "ReviewRequest",
    "StaleReviewError",
    "activate_model_version",
    "add_clip",
    "add_frame_rows",
    "add_review",
    "add_reviews",
    "add_proposals",
    "check_based_on",
    "check_not_stale",
    "checked_based_on",
    "check_reopenable",
    "ensure_model_version",
    "register_model_version",
]
