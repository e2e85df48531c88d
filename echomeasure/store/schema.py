"""SQLAlchemy 2.0 typed models of the review store.

The schema is created and changed only by the Alembic migrations in ``db/migrations`` (never
``create_all`` on a live database); these classes must match the latest migration, which
``tests/test_store_migrations.py`` checks.

Nothing that identifies a patient is stored: a ``clip`` row is built only from a
:class:`echomeasure.ingest.DeidentifiedClip` (pseudonymous UIDs, pixel hash, calibration and
the record of what de-identification did).

Append-only, enforced by the database (migration ``0002_append_only_chain``): ``study``,
``clip``, ``frame_image``, ``proposal``, ``review``, ``audit_event`` and ``audit_chain`` refuse
UPDATE, DELETE and TRUNCATE, and on SQLite also an INSERT that would replace an existing row
(``INSERT OR REPLACE``, ``REPLACE``, UPSERT).  ``model_version`` refuses DELETE and replacement;
its ``trained_on``, ``metrics``, ``parent_id`` and ``active`` change (audited) when a version is
re-registered or activated.  Audit events form a hash chain (:mod:`echomeasure.store.chain`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from echomeasure.store.records import (
    CALIBRATION_SOURCES,
    CLIP_KINDS,
    REVIEW_ACTIONS,
    CalibrationSource,
    ClipKind,
    ReviewAction,
)


def utcnow() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` as timezone-aware UTC (a naive one is taken as UTC already)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def one_of(column: str, values: tuple[str, ...]) -> str:
    """The CHECK constraint text ``column IN ('a', 'b')`` for a closed set of values."""
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


def audited(key: str | None = None) -> dict[str, Any]:
    """Column ``info`` putting the column into its row's audit payload, under ``key`` (default:
    the attribute's name); see :func:`echomeasure.store.mapping.audit_payload`."""
    return {"audit": key}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always returned timezone-aware.

    SQLite keeps no zone; PostgreSQL's ``timestamptz`` does.  Both come back as aware UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else as_utc(value)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base of all store tables."""

    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType, list[Any]: JSONType}


class Study(Base):
    """A study, known only by its pseudonymous Study Instance UID."""

    __tablename__ = "study"
    __table_args__ = (UniqueConstraint("study_uid", name="uq_study_study_uid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), info=audited())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    clips: Mapped[list[Clip]] = relationship(back_populates="study")


class Clip(Base):
    """One de-identified clip (a DICOM instance, a video or a still)."""

    __tablename__ = "clip"
    __table_args__ = (
        UniqueConstraint("instance_uid", "pixel_sha256", name="uq_clip_instance_pixels"),
        CheckConstraint(one_of("kind", CLIP_KINDS), name="ck_clip_kind"),
        CheckConstraint(one_of("calibration_source", CALIBRATION_SOURCES), name="ck_clip_calibration_source"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    series_uid: Mapped[str] = mapped_column(String(64), info=audited())
    instance_uid: Mapped[str] = mapped_column(String(64), index=True, info=audited())
    kind: Mapped[ClipKind] = mapped_column(String(16), info=audited())
    source_kind: Mapped[str] = mapped_column(String(16))
    n_frames: Mapped[int] = mapped_column(Integer, info=audited())
    frame_time_ms: Mapped[float | None] = mapped_column(Float)
    width_px: Mapped[int] = mapped_column(Integer)
    height_px: Mapped[int] = mapped_column(Integer)
    regions: Mapped[list[Any]] = mapped_column(JSONType)
    calibration_source: Mapped[CalibrationSource] = mapped_column(String(16), info=audited())
    user_cm_per_px: Mapped[float | None] = mapped_column(Float)
    pixel_sha256: Mapped[str] = mapped_column(String(64), info=audited())
    deid_record: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    study: Mapped[Study] = relationship(back_populates="clips")
    frame_images: Mapped[list[FrameImage]] = relationship(back_populates="clip", order_by="FrameImage.frame_index")
    proposals: Mapped[list[Proposal]] = relationship(back_populates="clip", order_by="Proposal.id")
    reviews: Mapped[list[Review]] = relationship(back_populates="clip", order_by="Review.id")
    #: The reviewers' calibrations, oldest first: the last one is the clip's scale.
    user_calibrations: Mapped[list[UserCalibration]] = relationship(order_by="UserCalibration.id")


class FrameImage(Base):
    """A de-identified frame kept in the content-addressed image store.

    ``relpath`` is relative to the store's image folder (``<sha[:2]>/<sha>.png``); ``sha256``
    is the hash of the PNG file's bytes, checked when the frame is read back.
    """

    __tablename__ = "frame_image"
    __table_args__ = (UniqueConstraint("clip_id", "frame_index", name="uq_frame_image_clip_frame"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clip.id"), index=True)
    frame_index: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    width_px: Mapped[int] = mapped_column(Integer)
    height_px: Mapped[int] = mapped_column(Integer)
    relpath: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    clip: Mapped[Clip] = relationship(back_populates="frame_images")


class ModelVersion(Base):
    """A set of weights that made proposals (shipped, trained or fine-tuned)."""

    __tablename__ = "model_version"
    __table_args__ = (UniqueConstraint("name", "version", "sha256", name="uq_model_version_identity"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), info=audited())
    version: Mapped[str] = mapped_column(String(100), info=audited())
    sha256: Mapped[str] = mapped_column(String(64), info=audited())
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_version.id"), info=audited())
    trained_on: Mapped[dict[str, Any]] = mapped_column(JSONType, info=audited())
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, info=audited())
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Proposal(Base):
    """One measurement a model proposed on one clip."""

    __tablename__ = "proposal"
    __table_args__ = (Index("ix_proposal_clip_measurement", "clip_id", "measurement"),)

    id: Mapped[int] = mapped_column(primary_key=True, info=audited("proposal_id"))
    clip_id: Mapped[int] = mapped_column(ForeignKey("clip.id"))
    frame_index: Mapped[int] = mapped_column(Integer, info=audited("frame"))
    measurement: Mapped[str] = mapped_column(String(32), info=audited())
    points: Mapped[list[Any]] = mapped_column(JSONType, info=audited())
    value: Mapped[float | None] = mapped_column(Float, info=audited())
    unit: Mapped[str] = mapped_column(String(16), info=audited())
    signed_value: Mapped[float | None] = mapped_column(Float)
    pixel_length_px: Mapped[float | None] = mapped_column(Float)
    confidence: Mapped[float] = mapped_column(Float, info=audited())
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_version.id"), index=True, info=audited())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    clip: Mapped[Clip] = relationship(back_populates="proposals")
    model_version: Mapped[ModelVersion | None] = relationship()


class Review(Base):
    """One human decision on a measurement (append-only)."""

    __tablename__ = "review"
    __table_args__ = (
        CheckConstraint(one_of("action", REVIEW_ACTIONS), name="ck_review_action"),
        CheckConstraint("length(reviewer) > 0", name="ck_review_reviewer"),
        Index("ix_review_clip_measurement", "clip_id", "measurement"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, info=audited("review_id"))
    proposal_id: Mapped[int | None] = mapped_column(ForeignKey("proposal.id"), index=True, info=audited())
    clip_id: Mapped[int] = mapped_column(ForeignKey("clip.id"))
    frame_index: Mapped[int | None] = mapped_column(Integer, info=audited("frame"))
    measurement: Mapped[str] = mapped_column(String(32), info=audited())
    points: Mapped[list[Any] | None] = mapped_column(JSONType, info=audited())
    value: Mapped[float | None] = mapped_column(Float, info=audited())
    unit: Mapped[str | None] = mapped_column(String(16), info=audited())
    action: Mapped[ReviewAction] = mapped_column(String(16), info=audited())
    reviewer: Mapped[str] = mapped_column(String(100))
    reviewer_display_name: Mapped[str | None] = mapped_column(String(100), info=audited())
    seconds_spent: Mapped[float | None] = mapped_column(Float, info=audited())
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_version.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    clip: Mapped[Clip] = relationship(back_populates="reviews")
    proposal: Mapped[Proposal | None] = relationship()
    model_version: Mapped[ModelVersion | None] = relationship()


class AuditEvent(Base):
    """Who did what to which entity, and when, with the state before and after (append-only).

    ``sha256`` chains the event to ``prev_sha256`` (the previous event's hash, or the genesis);
    ``content_sha256`` is the hash of the rows the event created (see :mod:`echomeasure.store.chain`).
    The hash columns are nullable only because SQLite cannot add NOT NULL columns to a filled
    table; a NULL is reported as a broken link.
    """

    __tablename__ = "audit_event"
    __table_args__ = (
        Index("uq_audit_event_sha256", "sha256", unique=True),
        Index("uq_audit_event_prev_sha256", "prev_sha256", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[int | None] = mapped_column(Integer)
    clip_id: Mapped[int | None] = mapped_column(ForeignKey("clip.id"), index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    prev_sha256: Mapped[str | None] = mapped_column(String(64))
    sha256: Mapped[str | None] = mapped_column(String(64))


class AuditChain(Base):
    """The database's one genesis row: a random id and the hash the first audit event links to."""

    __tablename__ = "audit_chain"
    __table_args__ = (CheckConstraint("id = 1", name="ck_audit_chain_single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    database_id: Mapped[str] = mapped_column(String(32))
    genesis_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


READING_MODES: tuple[str, ...] = ("open", "blinded", "unassisted")


class ReaderAssignment(Base):
    """A clip assigned to one reader, with the mode they read it in (append-only)."""

    __tablename__ = "reader_assignment"
    __table_args__ = (
        UniqueConstraint("clip_id", "reader", name="uq_reader_assignment_clip_reader"),
        CheckConstraint(one_of("mode", READING_MODES), name="ck_reader_assignment_mode"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clip.id"))
    reader: Mapped[str] = mapped_column(String(100), index=True)
    mode: Mapped[str] = mapped_column(String(16))
    assigned_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReaderRead(Base):
    """A review made as an assigned reader, with the mode it was made in (append-only)."""

    __tablename__ = "reader_read"
    __table_args__ = (
        UniqueConstraint("review_id", name="uq_reader_read_review"),
        CheckConstraint(one_of("mode", READING_MODES), name="ck_reader_read_mode"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    review_id: Mapped[int] = mapped_column(ForeignKey("review.id"))
    assignment_id: Mapped[int] = mapped_column(ForeignKey("reader_assignment.id"), index=True)
    mode: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UserCalibration(Base):
    """A known length a reviewer drew on a clip without DICOM calibration (append-only).

    The clip's latest row is its calibration: source ``user`` with ``cm_per_px``.
    """

    __tablename__ = "user_calibration"
    __table_args__ = (CheckConstraint("length_cm > 0 AND cm_per_px > 0", name="ck_user_calibration_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clip.id"), index=True)
    points: Mapped[list[Any]] = mapped_column(JSONType)
    length_cm: Mapped[float] = mapped_column(Float)
    cm_per_px: Mapped[float] = mapped_column(Float)
    reviewer: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


VOLUME_MEASUREMENTS: tuple[str, ...] = ("lvedv", "lvesv", "lvef", "la_volume", "lv_length")


class ContourProposal(Base):
    """One structure's contour on one frame that a segmentation model proposed (append-only).

    ``polygon`` is ``[[x, y], ...]`` in original-image pixels; ``area_cm2`` is None without calibration.
    """

    __tablename__ = "contour_proposal"
    __table_args__ = (Index("ix_contour_proposal_clip_structure", "clip_id", "structure"),)

    id: Mapped[int] = mapped_column(primary_key=True, info=audited("contour_proposal_id"))
    clip_id: Mapped[int] = mapped_column(ForeignKey("clip.id", name="fk_contour_proposal_clip"))
    frame_index: Mapped[int] = mapped_column(Integer, info=audited("frame"))
    structure: Mapped[str] = mapped_column(String(32), info=audited())
    polygon: Mapped[list[Any]] = mapped_column(JSONType)
    area_cm2: Mapped[float | None] = mapped_column(Float)
    confidence: Mapped[float] = mapped_column(Float, info=audited())
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_version.id", name="fk_contour_proposal_model_version")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ContourReview(Base):
    """One human decision on a contour: accepted, corrected (new polygon), rejected or added."""

    __tablename__ = "contour_review"
    __table_args__ = (
        CheckConstraint(one_of("action", REVIEW_ACTIONS), name="ck_contour_review_action"),
        CheckConstraint("length(reviewer) > 0", name="ck_contour_review_reviewer"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contour_proposal_id: Mapped[int | None] = mapped_column(
        ForeignKey("contour_proposal.id", name="fk_contour_review_contour_proposal"), index=True, info=audited()
    )
    clip_id: Mapped[int] = mapped_column(ForeignKey("clip.id", name="fk_contour_review_clip"), index=True)
    frame_index: Mapped[int] = mapped_column(Integer, info=audited("frame"))
    structure: Mapped[str] = mapped_column(String(32), info=audited())
    polygon: Mapped[list[Any] | None] = mapped_column(JSONType)
    action: Mapped[ReviewAction] = mapped_column(String(16), info=audited())
    reviewer: Mapped[str] = mapped_column(String(100))
    reviewer_display_name: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VolumeProposal(Base):
    """A chamber volume or ejection fraction with the method that gave it (append-only)."""

    __tablename__ = "volume_proposal"
    __table_args__ = (
        CheckConstraint(one_of("measurement", VOLUME_MEASUREMENTS), name="ck_volume_proposal_measurement"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, info=audited("volume_proposal_id"))
    clip_id: Mapped[int] = mapped_column(ForeignKey("clip.id", name="fk_volume_proposal_clip"), index=True)
    measurement: Mapped[str] = mapped_column(String(32), info=audited())
    frame_index: Mapped[int | None] = mapped_column(Integer)
    value: Mapped[float | None] = mapped_column(Float, info=audited())
    unit: Mapped[str] = mapped_column(String(16), info=audited())
    method: Mapped[str] = mapped_column(String(32), info=audited())
    confidence: Mapped[float] = mapped_column(Float)
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_version.id", name="fk_volume_proposal_model_version")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ClipView(Base):
    """What the view classifier said of a clip when its models ran, and the notices the reviewer
    was given then (not PLAX, view uncertain, no LV found ...), so that the worklist and a clip
    opened later show them too (append-only; the latest row of a clip counts)."""

    __tablename__ = "clip_view"
    __table_args__ = (CheckConstraint("length(view) > 0", name="ck_clip_view_view"),)

    id: Mapped[int] = mapped_column(primary_key=True, info=audited("clip_view_id"))
    clip_id: Mapped[int] = mapped_column(ForeignKey("clip.id", name="fk_clip_view_clip"), index=True)
    view: Mapped[str] = mapped_column(String(32), info=audited())
    confidence: Mapped[float | None] = mapped_column(Float, info=audited())
    notices: Mapped[list[Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


#: Contour and volume tables (migration ``0005_contours``) and the clip view (``0007_clip_view``):
#: append-only like ``proposal``/``review``.
CONTOUR_TABLES = ("contour_proposal", "contour_review", "volume_proposal", "clip_view")

# Tables whose rows may never change or disappear once written.
APPEND_ONLY_TABLES = ("study", "clip", "frame_image", "proposal", "review", "audit_event", "audit_chain")
# Tables whose rows may change (audited) but never disappear or be replaced.
NO_DELETE_TABLES = ("model_version",)

__all__ = [
    "APPEND_ONLY_TABLES",
    "AuditChain",
    "AuditEvent",
    "Base",
    "CONTOUR_TABLES",
    "ClipView",
    "Clip",
    "ContourProposal",
    "ContourReview",
    "FrameImage",
    "ModelVersion",
    "NO_DELETE_TABLES",
    "Proposal",
    "READING_MODES",
    "REVIEW_ACTIONS",
    "Review",
    "Study",
    "UserCalibration",
    "VOLUME_MEASUREMENTS",
    "VolumeProposal",
    "as_utc",
    "audited",
    "one_of",
    "utcnow",
]
