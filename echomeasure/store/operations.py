"""The review store's handle: one transaction per logical change, audit in the same one.

:class:`Store` is a thin facade over the modules that do the work:

- :mod:`~echomeasure.store.session`: transactions, retries while the database is busy, errors;
- :mod:`~echomeasure.store.validation`: what may be stored;
- :mod:`~echomeasure.store.writes`: each change with its audit event
  (:mod:`~echomeasure.store.audit`);
- :mod:`~echomeasure.store.queries`: where measurements stand, the worklist, training frames;
- :mod:`~echomeasure.store.mapping`: ORM rows to records and audit payloads.

Records out are frozen dataclasses from :mod:`echomeasure.store.records`; ORM objects never
leave the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

import numpy as np
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from echomeasure.errors import StoreError
from echomeasure.store import queries, session, writes
from echomeasure.store import schema as db
from echomeasure.store.audit import SYSTEM_ACTOR
from echomeasure.store.images import ImageStore
from echomeasure.store.mapping import (
    audit_event_record,
    clip_record,
    frame_image_record,
    model_version_record,
    proposal_record,
    review_record,
)
from echomeasure.store.records import (
    CLIP_KINDS,
    AuditEventRecord,
    ClipRecord,
    ClipSummary,
    FrameImageRecord,
    MeasurementState,
    ModelVersionRecord,
    ProposalRecord,
    ReviewRecord,
    TrainingFrame,
)
from echomeasure.store.validation import check_frame, checked_review_request, frame_items

if TYPE_CHECKING:
    from echomeasure.ingest import DeidentifiedClip
    from echomeasure.propose.types import ClipProposals, ModelInfo

T = TypeVar("T")


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
        self._write_engine = session.write_engine(engine)

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
        """Run ``fn`` in one read transaction (for the store's own modules)."""
        return session.read(self.engine, fn)

    def _write(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in one write transaction, retrying when the database is busy."""
        return session.write(self._write_engine, fn)

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
        return self._write(lambda s: writes.add_clip(s, dclip, actor))

    def clip(self, clip_id: int) -> ClipRecord:
        """One stored clip; :class:`StoreError` if there is no such clip."""
        return self._read(lambda s: clip_record(queries.get_clip(s, clip_id), created=False))

    def clips(self) -> list[ClipRecord]:
        """All stored clips, oldest first."""

        def op(s: Session) -> list[ClipRecord]:
            return [clip_record(r, created=False) for r in s.scalars(select(db.Clip).order_by(db.Clip.id)).all()]

        return self._read(op)

    def find_clip(self, instance_uid: str, pixel_sha256: str | None = None) -> ClipRecord | None:
        """The clip with this pseudonymous instance UID (and pixel hash), or None."""

        def op(s: Session) -> ClipRecord | None:
            q = select(db.Clip).where(db.Clip.instance_uid == instance_uid)
            if pixel_sha256 is not None:
                q = q.where(db.Clip.pixel_sha256 == pixel_sha256)
            row = s.scalars(q.order_by(db.Clip.id)).first()
            return None if row is None else clip_record(row, created=False)

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
        items = frame_items(frames)
        for index, frame in items:
            check_frame(index, clip_id, clip.n_frames)
            if frame.shape[:2] != (clip.height_px, clip.width_px):
                raise StoreError(
                    f"frame {index} is {frame.shape[1]}x{frame.shape[0]} px but clip {clip_id} is "
                    f"{clip.width_px}x{clip.height_px} px"
                )
        # Files first (content-addressed, atomic, idempotent), then rows in one transaction.
        stored = [(index, frame.shape, *self.images.put(frame)) for index, frame in items]
        return self._write(lambda s: writes.add_frame_rows(s, clip_id, stored, self.images, actor))

    def frame_images(self, clip_id: int) -> list[FrameImageRecord]:
        """The frames of a clip kept in the image store, in index order."""
        return self._read(
            lambda s: [frame_image_record(r, self.images) for r in queries.get_clip(s, clip_id).frame_images]
        )

    def frame_path(self, clip_id: int, index: int) -> Path:
        """Path of the PNG of one stored frame (for serving it to the review UI)."""
        return self._frame_image(clip_id, index).path

    def frame(self, clip_id: int, index: int) -> np.ndarray:
        """One stored frame as an (H, W, 3) uint8 RGB array (hash checked)."""
        rec = self._frame_image(clip_id, index)
        return self.images.get(str(rec.path.relative_to(self.images.root)), rec.sha256)

    def _frame_image(self, clip_id: int, index: int) -> FrameImageRecord:
        def op(s: Session) -> FrameImageRecord:
            clip = queries.get_clip(s, clip_id)
            row = s.scalar(
                select(db.FrameImage).where(db.FrameImage.clip_id == clip_id, db.FrameImage.frame_index == index)
            )
            if row is None:
                check_frame(index, clip_id, clip.n_frames)
                raise StoreError(f"frame {index} of clip {clip_id} was not saved; re-ingest the clip to keep its frames")
            return frame_image_record(row, self.images)

        return self._read(op)

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
        return self._write(
            lambda s: writes.register_model_version(
                s, model, parent_id=parent_id, trained_on=trained_on, metrics=metrics, activate=activate, actor=actor
            )
        )

    def set_active_model_version(self, model_version_id: int, *, actor: str = SYSTEM_ACTOR) -> ModelVersionRecord:
        """Make one version the active one of its name (the UI and ``measure`` use it)."""

        def op(s: Session) -> ModelVersionRecord:
            row = s.get(db.ModelVersion, model_version_id)
            if row is None:
                raise StoreError(f"no model version {model_version_id}; list them with the export command")
            if not row.active:
                writes.activate_model_version(s, row, actor)
            return model_version_record(row)

        return self._write(op)

    def model_versions(self, name: str | None = None) -> list[ModelVersionRecord]:
        """Registered model versions (of one name, or all), oldest first."""

        def op(s: Session) -> list[ModelVersionRecord]:
            q = select(db.ModelVersion).order_by(db.ModelVersion.id)
            if name is not None:
                q = q.where(db.ModelVersion.name == name)
            return [model_version_record(r) for r in s.scalars(q).all()]

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
        return self._write(lambda s: writes.add_proposals(s, clip_id, proposals, actor))

    def proposals(self, clip_id: int) -> list[ProposalRecord]:
        """All proposals on a clip, oldest first."""
        return self._read(lambda s: [proposal_record(r) for r in queries.get_clip(s, clip_id).proposals])

    # ------------------------------------------------------------------ reviews

    def add_review(
        self,
        clip_id: int,
        measurement: str,
        action: str,
        reviewer: str,
        *,
        on_saved: Callable[[Session, db.Review], None] | None = None,
        **fields: Unpack[writes.ReviewFields],
    ) -> ReviewRecord:
        """Record one review decision (append-only) with its audit event, in one transaction.

        The keywords but ``on_saved`` are the review's fields (:class:`echomeasure.store.writes.ReviewFields`,
        checked by :meth:`review_request`).

        Parameters
        ----------
        clip_id, measurement
            The clip and the catalogue name reviewed.
        action
            ``accepted`` (the proposal as it is; points/value default to the proposal's),
            ``corrected`` (new ``points``, and ``value`` in ``unit``), ``rejected`` (no points),
            or ``added`` (a measurement drawn by the reviewer: ``frame`` and ``points`` needed);
            see :data:`echomeasure.store.records.ReviewAction`.
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
        based_on
            The id of the measurement's latest review the reviewer saw (None: they saw it
            unreviewed); when the latest review is another one by the time this is written,
            nothing is stored (:class:`echomeasure.store.writes.StaleReviewError`).  Default
            ``"any"``: not checked.
        on_saved
            Called with the session and the new review row inside the same transaction, so a
            caller's own rows about the review (:mod:`echomeasure.store.readers`: the reading
            mode) are written with it or not at all.

        Raises
        ------
        StoreError
            Unknown clip, proposal or measurement, invalid action, empty reviewer, wrong number
            of points, frame outside the clip; a review made on a stale state (``based_on``).
        TypeError
            A keyword that is not a review field.
        """
        request = self.review_request(clip_id, measurement, action, reviewer, **fields)
        return self._write(lambda s: writes.add_review(s, request, on_saved))

    def review_request(
        self, clip_id: int, measurement: str, action: str, reviewer: str, **fields: Unpack[writes.ReviewFields]
    ) -> writes.ReviewRequest:
        """A review decision checked for :meth:`add_reviews` (the arguments of :meth:`add_review`
        but ``on_saved``).

        Raises
        ------
        TypeError
            A keyword that is not a review field (:class:`echomeasure.store.writes.ReviewFields`).
        StoreError
            What :meth:`add_review` refuses before it opens a transaction (reviewer, action,
            measurement, time spent, ``based_on``).
        """
        unknown = sorted(set(fields) - writes.ReviewFields.__optional_keys__)
        if unknown:
            raise TypeError(f"not a review field: {', '.join(unknown)} (the fields: writes.ReviewFields)")
        reviewer, display_name, checked_action, spec = checked_review_request(
            reviewer, fields.get("reviewer_display_name"), action, measurement, fields.get("seconds_spent")
        )
        return writes.ReviewRequest(
            clip_id=clip_id, spec=spec, action=checked_action, reviewer=reviewer, reviewer_display_name=display_name,
            fields=fields.copy(), based_on=writes.checked_based_on(fields.get("based_on", writes.ANY_STATE)),
        )

    def add_reviews(self, requests: Sequence[writes.ReviewRequest]) -> list[ReviewRecord]:
        """Record several decisions (:meth:`review_request`) in one transaction: all of them, or
        none when the store refuses one (a stale one included)."""
        items = list(requests)
        return self._write(lambda s: writes.add_reviews(s, items))

    def reviews(self, clip_id: int | None = None) -> list[ReviewRecord]:
        """Review decisions (of one clip, or all), oldest first."""

        def op(s: Session) -> list[ReviewRecord]:
            if clip_id is not None:
                return [review_record(r) for r in queries.get_clip(s, clip_id).reviews]
            return [review_record(r) for r in s.scalars(select(db.Review).order_by(db.Review.id)).all()]

        return self._read(op)

    def count_reviews(self) -> int:
        """Number of review decisions stored."""
        return self._read(lambda s: int(s.scalar(select(func.count()).select_from(db.Review)) or 0))

    # ------------------------------------------------------------------ views

    def current_measurements(self, clip_id: int) -> list[MeasurementState]:
        """Where each measurement of a clip stands (latest proposal + latest review).

        Measurements come in catalogue order; one per measurement that was proposed or added.
        """
        return self._read(lambda s: queries.current_measurements(queries.get_clip(s, clip_id)))

    def worklist(self) -> list[ClipSummary]:
        """Every clip with how many measurements were proposed and reviewed, newest first
        (status: :func:`echomeasure.store.queries.clip_status`)."""
        return self._read(queries.worklist)

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
        ones are left out: :data:`echomeasure.store.records.KEEPING_ACTIONS`).  Points of
        measurements on the same frame are merged into keypoints (2D: ``catalog.KEYPOINTS_2D``
        via ``catalog.LINEAR_ENDPOINTS``; where two measurements share an endpoint the more
        recently reviewed one wins; Doppler: one keypoint per ``catalog.DOPPLER_CHANNELS`` name).

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
        clip_kind = next((k for k in CLIP_KINDS if k == kind), None)
        if kind is not None and clip_kind is None:
            raise StoreError(f"unknown clip kind {kind!r}; use 2d or doppler")
        wanted = None if clip_ids is None else set(clip_ids)
        return self._read(lambda s: queries.training_frames(s, self.images, clip_kind, wanted, since, require_image))

    def audit_events(self, clip_id: int | None = None) -> list[AuditEventRecord]:
        """Audit events (of one clip, or all), oldest first."""

        def op(s: Session) -> list[AuditEventRecord]:
            q = select(db.AuditEvent).order_by(db.AuditEvent.id)
            if clip_id is not None:
                q = q.where(db.AuditEvent.clip_id == clip_id)
            return [audit_event_record(r) for r in s.scalars(q).all()]

        return self._read(op)


__all__ = ["SYSTEM_ACTOR", "Store"]
