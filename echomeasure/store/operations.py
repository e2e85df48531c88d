"""The review store's operations: one transaction per logical change, audit in the same one.

Every write runs in its own transaction together with the audit event that records it, so a
crash leaves either both or neither.  SQLite writers take the write lock up front
(``BEGIN IMMEDIATE``) and wait on it (busy timeout); a writer that still finds the database
locked is retried with back-off, so two reviewers saving at once never lose a review.
PostgreSQL writers are retried on serialization failures and on unique-key races.

Records out are frozen dataclasses from :mod:`echomeasure.store.records`; ORM objects never
leave this module.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, object_session

from echomeasure import catalog
from echomeasure.errors import StoreError
from echomeasure.store import chain
from echomeasure.store import schema as db
from echomeasure.store.engine import WRITE_OPTION
from echomeasure.store.images import ImageStore
from echomeasure.store.records import (
    REVIEW_ACTIONS,
    AuditEventRecord,
    ClipRecord,
    ClipSummary,
    FrameImageRecord,
    MeasurementState,
    ModelVersionRecord,
    Point,
    ProposalRecord,
    ReviewRecord,
    TrainingFrame,
)
from echomeasure.store.reviewer import validate_reviewer

if TYPE_CHECKING:
    from echomeasure.ingest import DeidentifiedClip
    from echomeasure.propose.types import ClipProposals, ModelInfo, Proposal

log = logging.getLogger(__name__)

T = TypeVar("T")

WRITE_ATTEMPTS = 8
SYSTEM_ACTOR = "system"
VALID_UNITS = ("cm", "m/s", "ratio", "px")
_TRAINABLE = ("accepted", "corrected", "added")


class Store:
    """A handle on the review store (database + image store).  Thread-safe; open with
    :func:`echomeasure.store.open_store`.

    Parameters
    ----------
    engine
        SQLAlchemy engine of a database already migrated to the latest revision.
    images
        Where de-identified frames are kept.
    """

    def __init__(self, engine: Engine, images: ImageStore) -> None:
        self.engine = engine
        self.images = images
        self._write_engine = engine.execution_options(**{WRITE_OPTION: True})

    # ------------------------------------------------------------------ plumbing

    @property
    def url(self) -> str:
        """The database URL with any password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def images_dir(self) -> Path:
        """Root folder of the image store."""
        return self.images.root

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def _read(self, fn: Callable[[Session], T]) -> T:
        with Session(self.engine) as session, session.begin():
            return fn(session)

    def _write(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in one write transaction, retrying when the database is busy."""
        delay_s = 0.05
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
                    return fn(session)
            except (OperationalError, IntegrityError, DBAPIError) as exc:
                if attempt == WRITE_ATTEMPTS or not _is_transient(exc):
                    raise _store_error(exc) from None
                log.info("store busy (%s), retry %d", _short(exc), attempt)
                time.sleep(delay_s * (1 + random.random()))
                delay_s = min(delay_s * 2, 2.0)
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ clips

    def add_clip(self, dclip: DeidentifiedClip, *, actor: str = SYSTEM_ACTOR) -> ClipRecord:
        """Register a de-identified clip; idempotent on (instance UID, pixel SHA-256).

        Parameters
        ----------
        dclip
            The gate's output.  Only :class:`echomeasure.ingest.DeidentifiedClip` is accepted,
            so nothing that did not pass de-identification can reach the database.

        Returns
        -------
        ClipRecord
            ``created`` is False when the same clip was already stored.

        Raises
        ------
        TypeError
            ``dclip`` is not a ``DeidentifiedClip``.
        """
        from echomeasure.ingest import DeidentifiedClip

        if not isinstance(dclip, DeidentifiedClip):
            raise TypeError(
                f"Store.add_clip accepts only DeidentifiedClip (the de-identification gate's "
                f"output), got {type(dclip).__name__}"
            )
        clip = dclip.clip
        regions = [_jsonable(dataclasses.asdict(r)) for r in clip.regions]
        deid_record = _jsonable(_as_dict(dclip.deid_record))
        kind = clip.kind
        calibration_source = clip.calibration_source
        n_frames, height, width = int(clip.frames.shape[0]), int(clip.frames.shape[1]), int(clip.frames.shape[2])

        def op(s: Session) -> ClipRecord:
            existing = s.scalar(
                select(db.Clip).where(
                    db.Clip.instance_uid == dclip.instance_uid, db.Clip.pixel_sha256 == dclip.pixel_sha256
                )
            )
            if existing is not None:
                return _clip_record(existing, created=False)
            study = s.scalar(select(db.Study).where(db.Study.study_uid == dclip.study_uid))
            if study is None:
                study = db.Study(study_uid=dclip.study_uid, created_at=db.utcnow())
                s.add(study)
                s.flush()
            row = db.Clip(
                study_id=study.id,
                series_uid=dclip.series_uid,
                instance_uid=dclip.instance_uid,
                kind=kind,
                source_kind=clip.source_kind,
                n_frames=n_frames,
                frame_time_ms=_opt_float(clip.frame_time_ms),
                width_px=width,
                height_px=height,
                regions=regions,
                calibration_source=calibration_source,
                user_cm_per_px=_opt_float(clip.user_cm_per_px),
                pixel_sha256=dclip.pixel_sha256,
                deid_record=deid_record,
                created_at=db.utcnow(),
            )
            row.study = study
            s.add(row)
            s.flush()
            record = _clip_record(row, created=True)
            _audit(s, actor, "clip.add", "clip", row.id, row.id, None, _clip_audit(record),
                   content=chain.rows_content_hash([_columns(row, chain.CLIP_CONTENT)], chain.CLIP_CONTENT))
            return record

        return self._write(op)

    def clip(self, clip_id: int) -> ClipRecord:
        """One stored clip; :class:`StoreError` if there is no such clip."""
        return self._read(lambda s: _clip_record(_get_clip(s, clip_id), created=False))

    def clips(self) -> list[ClipRecord]:
        """All stored clips, oldest first."""

        def op(s: Session) -> list[ClipRecord]:
            rows = s.scalars(select(db.Clip).order_by(db.Clip.id)).all()
            return [_clip_record(r, created=False) for r in rows]

        return self._read(op)

    def find_clip(self, instance_uid: str, pixel_sha256: str | None = None) -> ClipRecord | None:
        """The clip with this pseudonymous instance UID (and pixel hash), or None."""

        def op(s: Session) -> ClipRecord | None:
            q = select(db.Clip).where(db.Clip.instance_uid == instance_uid)
            if pixel_sha256 is not None:
                q = q.where(db.Clip.pixel_sha256 == pixel_sha256)
            row = s.scalars(q.order_by(db.Clip.id)).first()
            return None if row is None else _clip_record(row, created=False)

        return self._read(op)

    # ------------------------------------------------------------------ frames

    def save_frames(
        self,
        clip_id: int,
        frames: Mapping[int, np.ndarray] | np.ndarray,
        *,
        actor: str = SYSTEM_ACTOR,
    ) -> list[FrameImageRecord]:
        """Keep de-identified frames in the image store for review and fine-tuning.

        Parameters
        ----------
        clip_id
            A stored clip.
        frames
            ``{frame_index: (H, W, 3) uint8}``, or the clip's whole (N, H, W, 3) array (all frames).
            Pass the ``DeidentifiedClip``'s frames only: these are the pixels the gate checked.

        Returns
        -------
        list of FrameImageRecord
            One per frame given, in index order.  Frames already saved are left as they are.
        """
        clip = self.clip(clip_id)
        items = _frame_items(frames)
        for index, frame in items:
            if not 0 <= index < clip.n_frames:
                raise StoreError(f"frame {index} is outside clip {clip_id} (frames 0-{clip.n_frames - 1})")
            if frame.shape[:2] != (clip.height_px, clip.width_px):
                raise StoreError(
                    f"frame {index} is {frame.shape[1]}x{frame.shape[0]} px but clip {clip_id} is "
                    f"{clip.width_px}x{clip.height_px} px"
                )
        # Files first (content-addressed, atomic, idempotent), then rows in one transaction.
        stored = [(index, frame.shape, *self.images.put(frame)) for index, frame in items]

        def op(s: Session) -> list[FrameImageRecord]:
            existing = {
                r.frame_index: r
                for r in s.scalars(select(db.FrameImage).where(db.FrameImage.clip_id == clip_id)).all()
            }
            added: list[int] = []
            out: list[FrameImageRecord] = []
            for index, shape, sha, rel in stored:
                row = existing.get(index)
                if row is None:
                    row = db.FrameImage(
                        clip_id=clip_id,
                        frame_index=index,
                        sha256=sha,
                        width_px=int(shape[1]),
                        height_px=int(shape[0]),
                        relpath=rel,
                        created_at=db.utcnow(),
                    )
                    s.add(row)
                    existing[index] = row
                    added.append(index)
                out.append(self._frame_record(row))
            if added:
                _audit(s, actor, "frames.save", "clip", clip_id, clip_id, None, {"frames": added})
            return out

        return self._write(op)

    def frame_images(self, clip_id: int) -> list[FrameImageRecord]:
        """The frames of a clip kept in the image store, in index order."""

        def op(s: Session) -> list[FrameImageRecord]:
            _get_clip(s, clip_id)
            rows = s.scalars(
                select(db.FrameImage).where(db.FrameImage.clip_id == clip_id).order_by(db.FrameImage.frame_index)
            ).all()
            return [self._frame_record(r) for r in rows]

        return self._read(op)

    def frame_path(self, clip_id: int, index: int) -> Path:
        """Path of the PNG of one stored frame (for serving it to the review UI)."""
        return self._frame_row(clip_id, index).path

    def frame(self, clip_id: int, index: int) -> np.ndarray:
        """One stored frame as an (H, W, 3) uint8 RGB array (hash checked)."""
        rec = self._frame_row(clip_id, index)
        return self.images.get(str(rec.path.relative_to(self.images.root)), rec.sha256)

    def _frame_row(self, clip_id: int, index: int) -> FrameImageRecord:
        def op(s: Session) -> FrameImageRecord:
            clip = _get_clip(s, clip_id)
            row = s.scalar(
                select(db.FrameImage).where(db.FrameImage.clip_id == clip_id, db.FrameImage.frame_index == index)
            )
            if row is None:
                if not 0 <= index < clip.n_frames:
                    raise StoreError(f"frame {index} is outside clip {clip_id} (frames 0-{clip.n_frames - 1})")
                raise StoreError(f"frame {index} of clip {clip_id} was not saved; re-ingest the clip to keep its frames")
            return self._frame_record(row)

        return self._read(op)

    def _frame_record(self, row: db.FrameImage) -> FrameImageRecord:
        return FrameImageRecord(
            clip_id=row.clip_id,
            frame_index=row.frame_index,
            sha256=row.sha256,
            width_px=row.width_px,
            height_px=row.height_px,
            path=self.images.path(row.relpath),
        )

    # ------------------------------------------------------------------ model versions

    def register_model_version(
        self,
        model: ModelInfo,
        *,
        parent_id: int | None = None,
        trained_on: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        activate: bool = False,
        actor: str = SYSTEM_ACTOR,
    ) -> ModelVersionRecord:
        """Record a set of weights; idempotent on (name, version, sha256).

        Parameters
        ----------
        model
            Identity of the weights (:class:`echomeasure.propose.types.ModelInfo`).
        parent_id
            The model version these weights were fine-tuned from.
        trained_on, metrics
            What the weights were trained on (e.g. review ids, synthetic seeds) and what they
            reach (e.g. ``{"lvidd_mae_mm": 0.4}``).  Given again for a known version, they
            replace the stored ones (audited).
        activate
            Make this the active version of ``model.name`` (the previous one is deactivated).
        """
        if not model.name or not model.version or not model.sha256:
            raise StoreError("a model version needs a name, a version and a sha256")

        def op(s: Session) -> ModelVersionRecord:
            if parent_id is not None and s.get(db.ModelVersion, parent_id) is None:
                raise StoreError(f"no model version {parent_id} to use as parent")
            row = _find_model_version(s, model)
            if row is None:
                row = db.ModelVersion(
                    name=model.name,
                    version=model.version,
                    sha256=model.sha256,
                    parent_id=parent_id,
                    trained_on=_jsonable(dict(trained_on or {})),
                    metrics=_jsonable(dict(metrics or {})),
                    active=False,
                    created_at=db.utcnow(),
                )
                s.add(row)
                s.flush()
                _audit(s, actor, "model_version.register", "model_version", row.id, None, None, _mv_audit(row))
            else:
                before = _mv_audit(row)
                changed = False
                if trained_on is not None and _jsonable(dict(trained_on)) != row.trained_on:
                    row.trained_on, changed = _jsonable(dict(trained_on)), True
                if metrics is not None and _jsonable(dict(metrics)) != row.metrics:
                    row.metrics, changed = _jsonable(dict(metrics)), True
                if parent_id is not None and parent_id != row.parent_id:
                    row.parent_id, changed = parent_id, True
                if changed:
                    s.flush()
                    _audit(s, actor, "model_version.update", "model_version", row.id, None, before, _mv_audit(row))
            if activate and not row.active:
                _activate(s, row, actor)
            return _mv_record(row)

        return self._write(op)

    def set_active_model_version(self, model_version_id: int, *, actor: str = SYSTEM_ACTOR) -> ModelVersionRecord:
        """Make one version the active one of its name (the UI and ``measure`` use it)."""

        def op(s: Session) -> ModelVersionRecord:
            row = s.get(db.ModelVersion, model_version_id)
            if row is None:
                raise StoreError(f"no model version {model_version_id}; list them with the export command")
            if not row.active:
                _activate(s, row, actor)
            return _mv_record(row)

        return self._write(op)

    def model_versions(self, name: str | None = None) -> list[ModelVersionRecord]:
        """Registered model versions (of one name, or all), oldest first."""

        def op(s: Session) -> list[ModelVersionRecord]:
            q = select(db.ModelVersion).order_by(db.ModelVersion.id)
            if name is not None:
                q = q.where(db.ModelVersion.name == name)
            return [_mv_record(r) for r in s.scalars(q).all()]

        return self._read(op)

    def active_model_version(self, name: str) -> ModelVersionRecord | None:
        """The active version of a model name, or None."""
        return next((m for m in self.model_versions(name) if m.active), None)

    # ------------------------------------------------------------------ proposals

    def add_proposals(
        self, clip_id: int, proposals: ClipProposals, *, actor: str = SYSTEM_ACTOR
    ) -> list[ProposalRecord]:
        """Store what the models proposed for a clip (registers the model version if new).

        Idempotent: a measurement the same model version already proposed on this clip is not
        stored twice (the stored proposal is returned).

        Returns
        -------
        list of ProposalRecord
            One per proposed measurement, in the order given.
        """

        def op(s: Session) -> list[ProposalRecord]:
            clip = _get_clip(s, clip_id)
            versions: dict[tuple[str, str, str], db.ModelVersion] = {}
            existing = {
                (r.measurement, r.model_version_id): r
                for r in s.scalars(select(db.Proposal).where(db.Proposal.clip_id == clip_id)).all()
            }
            out: list[ProposalRecord] = []
            added: list[dict] = []
            added_rows: list[dict] = []
            for p in proposals.measurements:
                spec = _measurement(p.name)
                if not 0 <= p.frame < clip.n_frames:
                    raise StoreError(f"proposal {p.name} is on frame {p.frame}, outside clip {clip_id}")
                points = _points_json(p.points, spec, clip)
                mv = _model_version_row(s, p.model or proposals.model, versions, actor)
                key = (p.name, mv.id if mv is not None else None)
                row = existing.get(key)
                if row is None:
                    row = _new_proposal_row(clip_id, p, points, mv)
                    s.add(row)
                    s.flush()
                    existing[key] = row
                    added.append(_proposal_audit(row))
                    added_rows.append(_columns(row, chain.PROPOSAL_CONTENT))
                out.append(_proposal_record(row, mv))
            if added:
                after = {
                    "proposals": added,
                    "ed_frame": proposals.ed_frame,
                    "es_frame": proposals.es_frame,
                    "calibration": proposals.calibration,
                }
                _audit(s, actor, "proposals.add", "clip", clip_id, clip_id, None, after,
                       content=chain.rows_content_hash(added_rows, chain.PROPOSAL_CONTENT))
            return out

        return self._write(op)

    def proposals(self, clip_id: int) -> list[ProposalRecord]:
        """All proposals on a clip, oldest first."""

        def op(s: Session) -> list[ProposalRecord]:
            _get_clip(s, clip_id)
            rows = s.scalars(select(db.Proposal).where(db.Proposal.clip_id == clip_id).order_by(db.Proposal.id)).all()
            mvs = _model_versions_by_id(s, {r.model_version_id for r in rows})
            return [_proposal_record(r, mvs.get(r.model_version_id)) for r in rows]

        return self._read(op)

    # ------------------------------------------------------------------ reviews

    def add_review(
        self,
        clip_id: int,
        measurement: str,
        action: str,
        reviewer: str,
        *,
        proposal_id: int | None = None,
        frame: int | None = None,
        points: Sequence[Sequence[float]] | None = None,
        value: float | None = None,
        unit: str | None = None,
        seconds_spent: float | None = None,
        reviewer_display_name: str | None = None,
        on_saved: Callable[[Session, db.Review], None] | None = None,
    ) -> ReviewRecord:
        """Record one review decision (append-only) with its audit event, in one transaction.

        Parameters
        ----------
        clip_id, measurement
            The clip and the catalogue name reviewed.
        action
            ``accepted`` (the proposal as it is; points/value default to the proposal's),
            ``corrected`` (new ``points``, and ``value`` in ``unit``), ``rejected`` (no points),
            or ``added`` (a measurement drawn by the reviewer: ``frame`` and ``points`` needed).
        reviewer
            Who decided: the logged-in user, or the typed name
            (:func:`echomeasure.store.reviewer.validate_reviewer`: trimmed, 1-100 characters, no
            control characters).
        proposal_id
            The proposal answered; defaults to the latest proposal of ``measurement`` on the
            clip for accepted/corrected/rejected.
        frame, points, value, unit
            Points are ``(x, y)`` original-image pixels, as many as the catalogue says.
            ``unit`` defaults to the catalogue's unit when a value is given, else ``px``.
        seconds_spent
            Time the reviewer spent on this decision.
        reviewer_display_name
            The name typed beside a logged-in ``reviewer`` (same rules), or None.
        on_saved
            Called with the session and the new review row inside the same transaction, so a
            caller's own rows about the review (:mod:`echomeasure.store.readers`: the reading
            mode) are written with it or not at all.

        Raises
        ------
        StoreError
            Unknown clip, proposal or measurement, invalid action, empty reviewer, wrong number
            of points, frame outside the clip.
        """
        reviewer, display_name, spec = _checked_review_request(
            reviewer, reviewer_display_name, action, measurement, seconds_spent
        )

        def op(s: Session) -> ReviewRecord:
            clip = _get_clip(s, clip_id)
            proposal = _resolve_proposal(s, clip_id, measurement, action, proposal_id)
            r_frame, points_json, r_value, r_unit = _review_fields(
                clip, spec, action, proposal, frame=frame, points=points, value=value, unit=unit
            )
            before = _state_snapshot(s, clip_id, measurement)
            row = db.Review(
                proposal_id=proposal.id if proposal is not None else None, clip_id=clip_id,
                frame_index=None if r_frame is None else int(r_frame), measurement=measurement,
                points=points_json, value=r_value, unit=r_unit, action=action,
                reviewer=reviewer, reviewer_display_name=display_name, seconds_spent=_opt_float(seconds_spent),
                model_version_id=proposal.model_version_id if proposal is not None else None, created_at=db.utcnow(),
            )
            s.add(row)
            s.flush()
            record = _review_record(row)
            _audit(s, reviewer, f"review.{action}", "review", row.id, clip_id, before, _review_audit(row),
                   content=chain.rows_content_hash([_columns(row, chain.REVIEW_CONTENT)], chain.REVIEW_CONTENT))
            if on_saved is not None:
                on_saved(s, row)
            return record

        return self._write(op)

    def reviews(self, clip_id: int | None = None) -> list[ReviewRecord]:
        """Review decisions (of one clip, or all), oldest first."""

        def op(s: Session) -> list[ReviewRecord]:
            q = select(db.Review).order_by(db.Review.id)
            if clip_id is not None:
                _get_clip(s, clip_id)
                q = q.where(db.Review.clip_id == clip_id)
            return [_review_record(r) for r in s.scalars(q).all()]

        return self._read(op)

    def count_reviews(self) -> int:
        """Number of review decisions stored."""
        return self._read(lambda s: int(s.scalar(select(func.count()).select_from(db.Review)) or 0))

    # ------------------------------------------------------------------ views

    def current_measurements(self, clip_id: int) -> list[MeasurementState]:
        """Where each measurement of a clip stands (latest proposal + latest review).

        Measurements come in catalogue order; one per measurement that was proposed or added.
        """
        return self._read(lambda s: _current_measurements(s, _get_clip(s, clip_id)))

    def worklist(self) -> list[ClipSummary]:
        """Every clip with how many measurements were proposed and reviewed, newest first."""

        def op(s: Session) -> list[ClipSummary]:
            proposed: dict[int, set[str]] = {}
            for cid, name in s.execute(select(db.Proposal.clip_id, db.Proposal.measurement).distinct()):
                proposed.setdefault(cid, set()).add(name)
            reviewed: dict[int, set[str]] = {}
            for cid, name in s.execute(select(db.Review.clip_id, db.Review.measurement).distinct()):
                reviewed.setdefault(cid, set()).add(name)
            last: dict[int, datetime] = {
                cid: _utc(ts)
                for cid, ts in s.execute(select(db.Review.clip_id, func.max(db.Review.created_at)).group_by(db.Review.clip_id))
            }
            rows = s.execute(select(db.Clip, db.Study.study_uid).join(db.Study).order_by(db.Clip.id.desc())).all()
            user_scaled = set(_latest_user_scales(s))
            out = []
            for clip, study_uid in rows:
                p = proposed.get(clip.id, set())
                r = reviewed.get(clip.id, set())
                total = len(p | r)
                if total == 0:
                    status = "no proposals"
                elif not r:
                    status = "to review"
                elif len(r) < total:
                    status = "in review"
                else:
                    status = "reviewed"
                out.append(
                    ClipSummary(
                        clip_id=clip.id,
                        study_uid=study_uid,
                        series_uid=clip.series_uid,
                        instance_uid=clip.instance_uid,
                        kind=clip.kind,  # type: ignore[arg-type]
                        n_frames=clip.n_frames,
                        calibration_source="user" if clip.id in user_scaled else clip.calibration_source,
                        n_proposed=len(p),
                        n_reviewed=len(r),
                        status=status,  # type: ignore[arg-type]
                        created_at=clip.created_at,
                        last_reviewed_at=last.get(clip.id),
                    )
                )
            return out

        return self._read(op)

    def reviews_for_training(
        self,
        kind: str | None = None,
        *,
        clip_ids: Iterable[int] | None = None,
        since: datetime | None = None,
        require_image: bool = True,
    ) -> list[TrainingFrame]:
        """Reviewed frames with their final points, for fine-tuning and COCO export.

        A measurement counts when its latest review accepted, corrected or added it (rejected
        ones are left out).  Points of measurements on the same frame are merged into keypoints
        (2D: ``catalog.KEYPOINTS_2D`` via ``catalog.LINEAR_ENDPOINTS``; where two measurements
        share an endpoint the more recently reviewed one wins; Doppler: one keypoint per
        ``catalog.DOPPLER_CHANNELS`` name).

        Parameters
        ----------
        kind
            ``"2d"`` or ``"doppler"`` to keep one kind of clip (default: both).
        clip_ids
            Restrict to these clips.
        since
            Only measurements reviewed at or after this (timezone-aware) time.
        require_image
            Leave out frames whose image was not saved in the image store.
        """
        if kind not in (None, "2d", "doppler"):
            raise StoreError(f"unknown clip kind {kind!r}; use 2d or doppler")
        wanted = None if clip_ids is None else set(clip_ids)

        def op(s: Session) -> list[TrainingFrame]:
            q = select(db.Clip).order_by(db.Clip.id)
            if kind is not None:
                q = q.where(db.Clip.kind == kind)
            if wanted is not None:
                q = q.where(db.Clip.id.in_(wanted))
            reviewed_clip_ids = set(s.scalars(select(db.Review.clip_id).distinct()).all())
            out: list[TrainingFrame] = []
            for clip in s.scalars(q).all():
                if clip.id not in reviewed_clip_ids:
                    continue
                images = {
                    r.frame_index: r
                    for r in s.scalars(select(db.FrameImage).where(db.FrameImage.clip_id == clip.id)).all()
                }
                by_frame: dict[int, list[MeasurementState]] = {}
                for st in _current_measurements(s, clip):
                    if st.status not in _TRAINABLE or st.points is None or st.frame_index is None:
                        continue
                    if since is not None and st.reviewed_at is not None and st.reviewed_at < since:
                        continue
                    by_frame.setdefault(st.frame_index, []).append(st)
                for frame_index, states in sorted(by_frame.items()):
                    image = images.get(frame_index)
                    if image is None and require_image:
                        log.info("clip %d frame %d reviewed but its image was not saved", clip.id, frame_index)
                        continue
                    out.append(self._training_frame(clip, frame_index, states, image))
            return out

        return self._read(op)

    def _training_frame(
        self, clip: db.Clip, frame_index: int, states: list[MeasurementState], image: db.FrameImage | None
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
            kind=clip.kind,  # type: ignore[arg-type]
            width_px=clip.width_px,
            height_px=clip.height_px,
            image_path=None if image is None else self.images.path(image.relpath),
            keypoints=keypoints,
            measurements={st.measurement: st.points for st in states if st.points is not None},
            statuses={st.measurement: st.status for st in states},
            model_version_ids=tuple(sorted({st.model_version_id for st in states if st.model_version_id is not None})),
            study_uid=clip.study.study_uid,
            instance_uid=clip.instance_uid,
            reviewed_at=max(st.reviewed_at for st in states if st.reviewed_at is not None),
        )

    def audit_events(self, clip_id: int | None = None) -> list[AuditEventRecord]:
        """Audit events (of one clip, or all), oldest first."""

        def op(s: Session) -> list[AuditEventRecord]:
            q = select(db.AuditEvent).order_by(db.AuditEvent.id)
            if clip_id is not None:
                q = q.where(db.AuditEvent.clip_id == clip_id)
            return [
                AuditEventRecord(
                    id=r.id,
                    actor=r.actor,
                    action=r.action,
                    entity_type=r.entity_type,
                    entity_id=r.entity_id,
                    clip_id=r.clip_id,
                    before=r.before,
                    after=r.after,
                    created_at=r.created_at,
                    content_sha256=r.content_sha256,
                    prev_sha256=r.prev_sha256,
                    sha256=r.sha256,
                )
                for r in s.scalars(q).all()
            ]

        return self._read(op)


# ====================================================================== helpers


def _is_transient(exc: Exception) -> bool:
    """Errors worth retrying: SQLite busy/locked, PostgreSQL serialization/deadlock, key races."""
    if isinstance(exc, IntegrityError):
        # Two writers creating the same study/clip/model version at once: the retry finds it.
        return "unique" in str(exc.orig).lower() or "duplicate" in str(exc.orig).lower()
    msg = str(getattr(exc, "orig", exc)).lower()
    if "database is locked" in msg or "database is busy" in msg or "database table is locked" in msg:
        return True
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return sqlstate in ("40001", "40P01")


def _store_error(exc: Exception) -> StoreError:
    return StoreError(f"the database refused the change: {_short(exc)}")


def _short(exc: Exception) -> str:
    return " ".join(str(getattr(exc, "orig", None) or exc).split())[:200]


_CHAIN_HEAD = "echomeasure_audit_head"


def _audit(
    s: Session,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: int | None,
    clip_id: int | None,
    before: dict | None,
    after: dict | None,
    *,
    content: str | None = None,
) -> None:
    """Append one audit event to the hash chain (see :mod:`echomeasure.store.chain`).

    ``content`` is the hash of the rows the event created (:func:`chain.rows_content_hash`).
    """
    prev = _chain_head(s)
    event = {
        "actor": actor,
        "action": action,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "clip_id": clip_id,
        "before": _jsonable(before) if before is not None else None,
        "after": _jsonable(after) if after is not None else None,
        "content_sha256": content,
        "created_at": db.utcnow(),
    }
    sha = chain.link_hash(prev, event)
    s.add(db.AuditEvent(**event, prev_sha256=prev, sha256=sha))
    s.info[_CHAIN_HEAD] = sha


def _chain_head(s: Session) -> str:
    """The hash the next audit event links to; holds the chain's lock until the commit.

    SQLite writers already hold the database's write lock (``BEGIN IMMEDIATE``); PostgreSQL
    writers take a transaction-scoped advisory lock, so two transactions never link to the same
    event (the unique index on ``prev_sha256`` would refuse the second).
    """
    head = s.info.get(_CHAIN_HEAD)
    if head is not None:
        return head
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": chain.PG_CHAIN_LOCK})
    last = s.execute(
        select(db.AuditEvent.id, db.AuditEvent.sha256).order_by(db.AuditEvent.id.desc()).limit(1)
    ).first()
    if last is not None:
        if last.sha256 is None:
            raise StoreError("the audit chain is broken (an event has no hash); run 'echomeasure audit verify'")
        return last.sha256
    genesis = s.scalar(select(db.AuditChain.genesis_sha256))
    if genesis is None:
        raise StoreError("the database has no audit genesis; run 'echomeasure audit verify'")
    return genesis


def _columns(row: Any, columns: Sequence[str]) -> dict[str, Any]:
    """The named attributes of an ORM row, for :func:`chain.rows_content_hash`."""
    return {c: getattr(row, c) for c in columns}


def _get_clip(s: Session, clip_id: int) -> db.Clip:
    row = s.get(db.Clip, clip_id)
    if row is None:
        raise StoreError(f"no clip {clip_id} in the store; list clips with 'echomeasure export --format json'")
    return row


def _measurement(name: str) -> catalog.Measurement:
    try:
        return catalog.get(name)
    except KeyError:
        raise StoreError(f"unknown measurement {name!r}; use one of {', '.join(catalog.CATALOG)}") from None


def _unit(unit: str | None) -> str:
    if unit not in VALID_UNITS:
        raise StoreError(f"unknown unit {unit!r}; use one of {', '.join(VALID_UNITS)}")
    return unit


def _confidence(value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise StoreError("proposal confidence must be a finite number")
    return min(max(value, 0.0), 1.0) + 0.0  # + 0.0: never -0.0 (see chain.exact_json)


def _opt_float(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value) + 0.0  # + 0.0: never -0.0 (see chain.exact_json)
    return value if math.isfinite(value) else None


def _points_json(points: Sequence[Sequence[float]], spec: catalog.Measurement, clip: db.Clip) -> list[list[float]]:
    pts = [list(p) for p in points]
    if spec.n_points and len(pts) != spec.n_points:
        raise StoreError(f"{spec.name} needs {spec.n_points} point(s), got {len(pts)}")
    out = []
    for p in pts:
        if len(p) != 2:
            raise StoreError(f"a point of {spec.name} must be (x, y), got {p!r}")
        x, y = float(p[0]) + 0.0, float(p[1]) + 0.0
        if not (math.isfinite(x) and math.isfinite(y)):
            raise StoreError(f"a point of {spec.name} is not a finite number: {p!r}")
        # Half a pixel of slack: a caliper on the last row/column lies at index + 0.5 at most.
        if not (-0.5 <= x <= clip.width_px - 0.5 and -0.5 <= y <= clip.height_px - 0.5):
            raise StoreError(
                f"point ({x:.1f}, {y:.1f}) of {spec.name} lies outside the {clip.width_px}x{clip.height_px} px image"
            )
        out.append([x, y])
    return out


def _points_tuple(points: list | None) -> tuple[Point, ...] | None:
    if points is None:
        return None
    return tuple((float(p[0]), float(p[1])) for p in points)


def _frame_items(frames: Mapping[int, np.ndarray] | np.ndarray) -> list[tuple[int, np.ndarray]]:
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4:
            raise ValueError(f"frames array must be (N, H, W, 3), got {frames.shape}")
        return [(i, frames[i]) for i in range(frames.shape[0])]
    return sorted(((int(i), np.asarray(f)) for i, f in frames.items()), key=lambda t: t[0])


def _as_dict(obj: Any) -> dict:
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return dict(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    for attr in ("as_dict", "to_dict", "to_json_dict"):
        if callable(getattr(obj, attr, None)):
            return dict(getattr(obj, attr)())
    raise TypeError(f"cannot store a de-identification record of type {type(obj).__name__}")


def _jsonable(obj: Any) -> Any:
    """Plain JSON types only (tuples -> lists, numpy scalars -> numbers, paths -> strings)."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, (set, frozenset)):
            return sorted(o)
        if isinstance(o, datetime):
            return o.isoformat()
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return dataclasses.asdict(o)
        return str(o)

    # exact_json: what both databases give back, so audit hashes match on verification.
    return chain.exact_json(json.loads(json.dumps(obj, default=default, allow_nan=False)))


def _utc(ts: datetime) -> datetime:
    return db.UTCDateTime().process_result_value(ts, None)  # type: ignore[return-value]


def _latest_user_scales(s: Session, clip_ids: Iterable[int] | None = None) -> dict[int, float]:
    """``clip_id -> cm_per_px`` of each clip's latest user calibration (see user_calibration.py)."""
    q = select(db.UserCalibration.clip_id, db.UserCalibration.cm_per_px).order_by(db.UserCalibration.id)
    if clip_ids is not None:
        q = q.where(db.UserCalibration.clip_id.in_(list(clip_ids)))
    return {cid: float(scale) for cid, scale in s.execute(q)}


def _clip_record(row: db.Clip, *, created: bool) -> ClipRecord:
    # A clip a reviewer calibrated by hand reads as calibration "user" with the latest scale
    # (the clip row itself is append-only; the calibrations are rows of user_calibration).
    session = object_session(row)
    user_scale = _latest_user_scales(session, [row.id]).get(row.id) if session is not None and not row.regions else None
    return ClipRecord(
        id=row.id,
        study_uid=row.study.study_uid,
        series_uid=row.series_uid,
        instance_uid=row.instance_uid,
        kind=row.kind,  # type: ignore[arg-type]
        n_frames=row.n_frames,
        frame_time_ms=row.frame_time_ms,
        width_px=row.width_px,
        height_px=row.height_px,
        regions=tuple(row.regions or ()),
        calibration_source="user" if user_scale is not None else row.calibration_source,  # type: ignore[arg-type]
        user_cm_per_px=user_scale if user_scale is not None else row.user_cm_per_px,
        pixel_sha256=row.pixel_sha256,
        deid_record=dict(row.deid_record or {}),
        created_at=row.created_at,
        created=created,
    )


def _clip_audit(rec: ClipRecord) -> dict:
    return {
        "study_uid": rec.study_uid,
        "series_uid": rec.series_uid,
        "instance_uid": rec.instance_uid,
        "kind": rec.kind,
        "n_frames": rec.n_frames,
        "calibration_source": rec.calibration_source,
        "pixel_sha256": rec.pixel_sha256,
    }


def _find_model_version(s: Session, info: ModelInfo) -> db.ModelVersion | None:
    return s.scalar(
        select(db.ModelVersion).where(
            db.ModelVersion.name == info.name,
            db.ModelVersion.version == info.version,
            db.ModelVersion.sha256 == info.sha256,
        )
    )


def ensure_model_version(s: Session, info: ModelInfo, actor: str) -> db.ModelVersion:
    """The ``model_version`` row of ``info``, registered (and audited) when new."""
    row = _find_model_version(s, info)
    if row is None:
        row = db.ModelVersion(
            name=info.name, version=info.version, sha256=info.sha256, parent_id=None,
            trained_on={}, metrics={}, active=False, created_at=db.utcnow(),
        )
        s.add(row)
        s.flush()
        _audit(s, actor, "model_version.register", "model_version", row.id, None, None, _mv_audit(row))
    return row


def _activate(s: Session, row: db.ModelVersion, actor: str) -> None:
    previous = s.scalars(
        select(db.ModelVersion).where(db.ModelVersion.name == row.name, db.ModelVersion.active.is_(True))
    ).all()
    for prev in previous:
        prev.active = False
    row.active = True
    s.flush()
    _audit(
        s,
        actor,
        "model_version.activate",
        "model_version",
        row.id,
        None,
        {"active_ids": [p.id for p in previous]},
        {"active_ids": [row.id]},
    )


def _mv_record(row: db.ModelVersion) -> ModelVersionRecord:
    return ModelVersionRecord(
        id=row.id,
        name=row.name,
        version=row.version,
        sha256=row.sha256,
        parent_id=row.parent_id,
        trained_on=dict(row.trained_on or {}),
        metrics=dict(row.metrics or {}),
        active=bool(row.active),
        created_at=row.created_at,
    )


def _mv_audit(row: db.ModelVersion) -> dict:
    return {
        "name": row.name,
        "version": row.version,
        "sha256": row.sha256,
        "parent_id": row.parent_id,
        "trained_on": row.trained_on,
        "metrics": row.metrics,
    }


def _model_versions_by_id(s: Session, ids: set[int | None]) -> dict[int | None, db.ModelVersion]:
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    return {r.id: r for r in s.scalars(select(db.ModelVersion).where(db.ModelVersion.id.in_(ids))).all()}


def _proposal_record(row: db.Proposal, mv: db.ModelVersion | None) -> ProposalRecord:
    return ProposalRecord(
        id=row.id,
        clip_id=row.clip_id,
        frame_index=row.frame_index,
        measurement=row.measurement,
        points=_points_tuple(row.points) or (),
        value=row.value,
        unit=row.unit,
        signed_value=row.signed_value,
        pixel_length_px=row.pixel_length_px,
        confidence=row.confidence,
        model_version_id=row.model_version_id,
        model_name=mv.name if mv is not None else None,
        model_version=mv.version if mv is not None else None,
        created_at=row.created_at,
    )


def _proposal_audit(row: db.Proposal) -> dict:
    return {
        "proposal_id": row.id,
        "measurement": row.measurement,
        "frame": row.frame_index,
        "points": row.points,
        "value": row.value,
        "unit": row.unit,
        "confidence": row.confidence,
        "model_version_id": row.model_version_id,
    }


def _resolve_proposal(
    s: Session, clip_id: int, measurement: str, action: str, proposal_id: int | None
) -> db.Proposal | None:
    if proposal_id is not None:
        proposal = s.get(db.Proposal, proposal_id)
        if proposal is None or proposal.clip_id != clip_id:
            raise StoreError(f"no proposal {proposal_id} on clip {clip_id}")
        if proposal.measurement != measurement:
            raise StoreError(f"proposal {proposal_id} is {proposal.measurement}, not {measurement}")
        return proposal
    if action == "added":
        return None
    proposal = s.scalar(
        select(db.Proposal)
        .where(db.Proposal.clip_id == clip_id, db.Proposal.measurement == measurement)
        .order_by(db.Proposal.id.desc())
        .limit(1)
    )
    if proposal is None:
        raise StoreError(f"nothing was proposed for {measurement} on clip {clip_id}; use the action 'added'")
    return proposal


def _review_record(row: db.Review) -> ReviewRecord:
    return ReviewRecord(
        id=row.id,
        clip_id=row.clip_id,
        proposal_id=row.proposal_id,
        frame_index=row.frame_index,
        measurement=row.measurement,
        points=_points_tuple(row.points),
        value=row.value,
        unit=row.unit,
        action=row.action,  # type: ignore[arg-type]
        reviewer=row.reviewer,
        seconds_spent=row.seconds_spent,
        model_version_id=row.model_version_id,
        created_at=row.created_at,
        reviewer_display_name=row.reviewer_display_name,
    )


def _review_audit(row: db.Review) -> dict:
    return {
        "review_id": row.id,
        "proposal_id": row.proposal_id,
        "measurement": row.measurement,
        "action": row.action,
        "frame": row.frame_index,
        "points": row.points,
        "value": row.value,
        "unit": row.unit,
        "seconds_spent": row.seconds_spent,
        "reviewer_display_name": row.reviewer_display_name,
    }


def _state_snapshot(s: Session, clip_id: int, measurement: str) -> dict | None:
    """The measurement's current state before a change (for the audit trail)."""
    last = s.scalar(
        select(db.Review)
        .where(db.Review.clip_id == clip_id, db.Review.measurement == measurement)
        .order_by(db.Review.id.desc())
        .limit(1)
    )
    if last is not None:
        return {"status": last.action, **_review_audit(last)}
    proposal = s.scalar(
        select(db.Proposal)
        .where(db.Proposal.clip_id == clip_id, db.Proposal.measurement == measurement)
        .order_by(db.Proposal.id.desc())
        .limit(1)
    )
    if proposal is not None:
        return {"status": "proposed", **_proposal_audit(proposal)}
    return None


def _current_measurements(s: Session, clip: db.Clip) -> list[MeasurementState]:
    proposals = s.scalars(select(db.Proposal).where(db.Proposal.clip_id == clip.id).order_by(db.Proposal.id)).all()
    reviews = s.scalars(select(db.Review).where(db.Review.clip_id == clip.id).order_by(db.Review.id)).all()
    latest_proposal: dict[str, db.Proposal] = {p.measurement: p for p in proposals}
    latest_review: dict[str, db.Review] = {r.measurement: r for r in reviews}
    n_reviews: dict[str, int] = {}
    for review in reviews:
        n_reviews[review.measurement] = n_reviews.get(review.measurement, 0) + 1
    mvs = _model_versions_by_id(
        s, {p.model_version_id for p in latest_proposal.values()} | {r.model_version_id for r in latest_review.values()}
    )
    names = [n for n in catalog.CATALOG if n in latest_proposal or n in latest_review]
    out = []
    for name in names:
        p = latest_proposal.get(name)
        r = latest_review.get(name)
        mv_id = r.model_version_id if r is not None and r.model_version_id is not None else (p.model_version_id if p else None)
        mv = mvs.get(mv_id)
        frame: int | None
        unit: str | None
        if r is None:
            assert p is not None
            status, frame, points, value, unit = "proposed", p.frame_index, _points_tuple(p.points), p.value, p.unit
        else:
            status, frame, points, value, unit = r.action, r.frame_index, _points_tuple(r.points), r.value, r.unit
        out.append(
            MeasurementState(
                clip_id=clip.id,
                measurement=name,
                status=status,  # type: ignore[arg-type]
                frame_index=frame,
                points=points,
                value=value,
                unit=unit,
                proposal_id=p.id if p is not None else None,
                proposed_frame_index=p.frame_index if p is not None else None,
                proposed_points=_points_tuple(p.points) if p is not None else None,
                proposed_value=p.value if p is not None else None,
                proposed_unit=p.unit if p is not None else None,
                pixel_length_px=p.pixel_length_px if p is not None else None,
                confidence=p.confidence if p is not None else None,
                model_version_id=mv_id,
                model_name=mv.name if mv is not None else None,
                model_version=mv.version if mv is not None else None,
                proposed_at=p.created_at if p is not None else None,
                review_id=r.id if r is not None else None,
                reviewer=r.reviewer if r is not None else None,
                reviewed_at=r.created_at if r is not None else None,
                seconds_spent=r.seconds_spent if r is not None else None,
                n_reviews=n_reviews.get(name, 0),
            )
        )
    return out


def _model_version_row(
    s: Session, info: ModelInfo | None, cache: dict[tuple[str, str, str], db.ModelVersion], actor: str
) -> db.ModelVersion | None:
    """The stored row of a proposing model version, registered (and audited) on first sight."""
    if info is None:
        return None
    key = (info.name, info.version, info.sha256)
    if key not in cache:
        row = _find_model_version(s, info)
        if row is None:
            row = db.ModelVersion(
                name=info.name,
                version=info.version,
                sha256=info.sha256,
                parent_id=None,
                trained_on={},
                metrics={},
                active=False,
                created_at=db.utcnow(),
            )
            s.add(row)
            s.flush()
            _audit(s, actor, "model_version.register", "model_version", row.id, None, None, _mv_audit(row))
        cache[key] = row
    return cache[key]


def _new_proposal_row(clip_id: int, p: Proposal, points: list, mv: db.ModelVersion | None) -> db.Proposal:
    """A proposal row from a validated model proposal."""
    return db.Proposal(
        clip_id=clip_id,
        frame_index=int(p.frame),
        measurement=p.name,
        points=points,
        value=_opt_float(p.value),
        unit=_unit(p.unit),
        signed_value=_opt_float(p.signed_value),
        pixel_length_px=_opt_float(p.pixel_length),
        confidence=_confidence(p.confidence),
        model_version_id=mv.id if mv is not None else None,
        created_at=db.utcnow(),
    )


def _review_fields(
    clip: db.Clip, spec: catalog.Measurement, action: str, proposal: db.Proposal | None, *, frame: int | None,
    points: Sequence[Sequence[float]] | None, value: float | None, unit: str | None,
) -> tuple[int | None, list | None, float | None, str | None]:
    """Frame, points (JSON), value and unit a review stores: the proposal's where an accept leaves
    them out, none for a reject; validated against the clip and the catalogue."""
    measurement = spec.name
    r_frame, r_points, r_value, r_unit = frame, points, value, unit
    if action == "rejected":
        r_frame = proposal.frame_index if (proposal is not None and r_frame is None) else r_frame
        r_points, r_value, r_unit = None, None, None
    elif action == "accepted":
        assert proposal is not None
        if r_frame is None:
            r_frame = proposal.frame_index
        if r_points is None:
            r_points = proposal.points
        if r_value is None and r_unit is None:
            r_value, r_unit = proposal.value, proposal.unit
    else:  # corrected / added
        if r_frame is None:
            if proposal is None:
                raise StoreError(f"an added {measurement} needs the frame it was measured on")
            r_frame = proposal.frame_index
        if r_points is None:
            raise StoreError(f"a {action} {measurement} needs its {spec.n_points} point(s)")
    if r_frame is not None and not 0 <= r_frame < clip.n_frames:
        raise StoreError(f"frame {r_frame} is outside clip {clip.id} (frames 0-{clip.n_frames - 1})")
    points_json = None if r_points is None else _points_json(r_points, spec, clip)
    if r_value is not None:
        r_value = float(r_value) + 0.0
        if not math.isfinite(r_value):
            raise StoreError(f"value of {measurement} must be a finite number")
        r_unit = _unit(r_unit or spec.unit)
    elif r_unit is not None:
        r_unit = _unit(r_unit)
    elif action != "rejected":
        r_unit = "px"
    return r_frame, points_json, r_value, r_unit


def _checked_review_request(
    reviewer: str, reviewer_display_name: str | None, action: str, measurement: str, seconds_spent: float | None
) -> tuple[str, str | None, catalog.Measurement]:
    """The reviewer names (validated), the catalogue entry; refuses an unknown action or a bad time spent."""
    reviewer = validate_reviewer(reviewer)
    display_name = None if reviewer_display_name is None else validate_reviewer(reviewer_display_name)
    if action not in REVIEW_ACTIONS:
        raise StoreError(f"unknown review action {action!r}; use one of {', '.join(REVIEW_ACTIONS)}")
    spec = _measurement(measurement)
    if seconds_spent is not None and (not math.isfinite(seconds_spent) or seconds_spent < 0):
        raise StoreError(f"seconds spent must be a non-negative number, got {seconds_spent}")
    return reviewer, display_name, spec
