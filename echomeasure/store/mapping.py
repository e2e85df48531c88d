"""From ORM rows to what the store hands out: records and audit payloads.

Both are derived from the models, not listed again: a record takes every field of its
dataclass from the row attribute of the same name (:func:`record_from_row`; only fields the row
does not hold as such are given), and an audit payload takes the columns the model marks with
:func:`echomeasure.store.schema.audited` (:func:`audit_payload`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import inspect

from echomeasure.store import schema as db
from echomeasure.store.images import ImageStore
from echomeasure.store.records import (
    AuditEventRecord,
    ClipRecord,
    FrameImageRecord,
    ModelVersionRecord,
    Point,
    ProposalRecord,
    ReviewRecord,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")


def record_from_row(cls: type[R], row: Any, **values: Any) -> R:
    """A ``cls`` record: ``values``, and every other field read from ``row``'s attribute of that name."""
    names = [f.name for f in dataclasses.fields(cls) if f.name not in values]
    return cls(**{name: getattr(row, name) for name in names}, **values)


def audit_payload(row: Any) -> dict[str, Any]:
    """The audited columns of a row (``info=audited(key)`` in the model), in column order."""
    payload = {}
    for attr in inspect(row).mapper.column_attrs:
        info = attr.columns[0].info
        if "audit" in info:
            payload[info["audit"] or attr.key] = getattr(row, attr.key)
    return payload


def points_tuple(points: list | None) -> tuple[Point, ...] | None:
    """Stored ``[[x, y], ...]`` as a tuple of ``(x, y)`` floats (None stays None)."""
    if points is None:
        return None
    return tuple((float(p[0]), float(p[1])) for p in points)


def user_scale(clip: db.Clip) -> float | None:
    """The cm per pixel of a clip's latest user calibration, or None.

    A clip a reviewer calibrated by hand reads as calibration ``user`` with the latest scale
    (the clip row itself is append-only; the calibrations are rows of ``user_calibration``).
    """
    if clip.regions or not clip.user_calibrations:
        return None
    return float(clip.user_calibrations[-1].cm_per_px)


def clip_record(row: db.Clip, *, created: bool) -> ClipRecord:
    scale = user_scale(row)
    return record_from_row(
        ClipRecord,
        row,
        study_uid=row.study.study_uid,
        regions=tuple(row.regions or ()),
        calibration_source="user" if scale is not None else row.calibration_source,
        user_cm_per_px=scale if scale is not None else row.user_cm_per_px,
        deid_record=dict(row.deid_record or {}),
        created=created,
    )


def clip_audit(row: db.Clip) -> dict[str, Any]:
    """The audit payload of a new clip: its study's audited columns and its own."""
    return audit_payload(row.study) | audit_payload(row)


def model_version_record(row: db.ModelVersion) -> ModelVersionRecord:
    return record_from_row(
        ModelVersionRecord,
        row,
        trained_on=dict(row.trained_on or {}),
        metrics=dict(row.metrics or {}),
        active=bool(row.active),
    )


def proposal_record(row: db.Proposal) -> ProposalRecord:
    model = row.model_version
    return record_from_row(
        ProposalRecord,
        row,
        points=points_tuple(row.points) or (),
        model_name=model.name if model is not None else None,
        model_version=model.version if model is not None else None,
    )


def review_record(row: db.Review) -> ReviewRecord:
    return record_from_row(ReviewRecord, row, points=points_tuple(row.points))


def frame_image_record(row: db.FrameImage, images: ImageStore) -> FrameImageRecord:
    return record_from_row(FrameImageRecord, row, path=images.path(row.relpath))


def audit_event_record(row: db.AuditEvent) -> AuditEventRecord:
    return record_from_row(AuditEventRecord, row)


__all__ = [
    "audit_event_record",
    "audit_payload",
    "clip_audit",
    "clip_record",
    "frame_image_record",
    "model_version_record",
    "points_tuple",
    "proposal_record",
    "record_from_row",
    "review_record",
    "user_scale",
]
