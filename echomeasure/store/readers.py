"""Readers: clips assigned to N readers, blinded reading enforced, each read stored with its mode.

Reviewers are the users of the review UI (the logged-in user, or the typed name), so a reader
is known by the same name as the reviews they make.  A clip may be assigned to any number of
readers, each with a reading mode:

``blinded``
    The reader sees the AI proposal but never another reader's reads.
``unassisted``
    The reader sees neither the AI proposal nor another reader's reads, and measures from
    scratch (action ``added``): the control arm of a study of the AI's effect.
``open``
    The reader sees everything (an ordinary review).

What a reader may see is decided here, once, by :func:`reader_view`; the UI and any API call it
and show nothing else.  On a clip that has readers, someone who is not one of them sees nothing.
A clip without readers is an ordinary review clip: everyone sees everything.

A read is recorded with :func:`record_read`: the review (``Store.add_review``), the
``reader_read`` row with the mode, and their audit events are one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from echomeasure.errors import StoreError
from echomeasure.store import audit
from echomeasure.store import schema as db
from echomeasure.store.audit import SYSTEM_ACTOR
from echomeasure.store.mapping import record_from_row
from echomeasure.store.operations import Store
from echomeasure.store.queries import get_clip, measurement_states
from echomeasure.store.records import MeasurementState, ProposalRecord, ReviewRecord
from echomeasure.store.reviewer import validate_reviewer

READING_MODES: tuple[str, ...] = db.READING_MODES
OPEN_REVIEW = "open"


@dataclass(frozen=True)
class AssignmentRecord:
    """One clip assigned to one reader."""

    id: int
    clip_id: int
    reader: str
    mode: str
    assigned_by: str
    created_at: datetime


@dataclass(frozen=True)
class ReaderView:
    """Everything one reader may see of one clip, and nothing more.

    ``proposals`` is empty in ``unassisted`` mode; ``other_reviews`` is empty unless the mode is
    ``open``.  ``measurements`` is where each measurement stands *for this reader*: their own
    latest review over the proposal they may see.
    """

    clip_id: int
    reader: str
    mode: str
    assigned: bool
    proposals: tuple[ProposalRecord, ...]
    own_reviews: tuple[ReviewRecord, ...]
    other_reviews: tuple[ReviewRecord, ...]
    measurements: tuple[MeasurementState, ...]

    @property
    def shows_proposals(self) -> bool:
        return self.mode != "unassisted"


def _check_mode(mode: str) -> str:
    if mode not in READING_MODES:
        raise StoreError(f"unknown reading mode {mode!r}; use one of {', '.join(READING_MODES)}")
    return mode


def _record(row: db.ReaderAssignment) -> AssignmentRecord:
    return record_from_row(AssignmentRecord, row)


def assign(
    store: Store, clip_id: int, readers: Iterable[str], mode: str = "blinded", *, actor: str = SYSTEM_ACTOR
) -> list[AssignmentRecord]:
    """Assign a clip to readers (idempotent for a reader already assigned in the same mode).

    Raises
    ------
    StoreError
        Unknown clip or mode, a refused reader name, or a reader already assigned to the clip in
        another mode (a reading mode never changes once given: reads already made keep theirs).
    """
    _check_mode(mode)
    names = list(dict.fromkeys(validate_reviewer(r) for r in readers))
    if not names:
        raise StoreError("give at least one reader to assign")
    actor = validate_reviewer(actor)

    def op(s: Session) -> list[AssignmentRecord]:
        get_clip(s, clip_id)
        existing = {
            r.reader: r
            for r in s.scalars(select(db.ReaderAssignment).where(db.ReaderAssignment.clip_id == clip_id)).all()
        }
        out = []
        for name in names:
            row = existing.get(name)
            if row is not None:
                if row.mode != mode:
                    raise StoreError(f"a reader of clip {clip_id} already reads it {row.mode}; the mode cannot change")
                out.append(_record(row))
                continue
            row = db.ReaderAssignment(clip_id=clip_id, reader=name, mode=mode, assigned_by=actor, created_at=db.utcnow())
            s.add(row)
            s.flush()
            audit.append(s, actor, "reader.assign", "reader_assignment", row.id, clip_id, None,
                   {"reader": name, "mode": mode})
            out.append(_record(row))
        return out

    return store._write(op)


def assignments(store: Store, *, clip_id: int | None = None, reader: str | None = None) -> list[AssignmentRecord]:
    """Assignments (of one clip, of one reader, or all), oldest first."""

    def op(s: Session) -> list[AssignmentRecord]:
        q = select(db.ReaderAssignment).order_by(db.ReaderAssignment.id)
        if clip_id is not None:
            q = q.where(db.ReaderAssignment.clip_id == clip_id)
        if reader is not None:
            q = q.where(db.ReaderAssignment.reader == reader)
        return [_record(r) for r in s.scalars(q).all()]

    return store._read(op)


def reader_clips(store: Store, reader: str) -> list[int]:
    """The clips assigned to a reader (their worklist), oldest assignment first."""
    return [a.clip_id for a in assignments(store, reader=validate_reviewer(reader))]


def _mode_for(store: Store, clip_id: int, viewer: str) -> tuple[str, bool, AssignmentRecord | None]:
    rows = assignments(store, clip_id=clip_id)
    if not rows:
        return OPEN_REVIEW, False, None
    mine = next((a for a in rows if a.reader == viewer), None)
    if mine is None:
        raise StoreError(f"clip {clip_id} is read by assigned readers only; ask for it to be assigned to you")
    return mine.mode, True, mine


def reader_view(store: Store, clip_id: int, reader: str) -> ReaderView:
    """What ``reader`` may see of a clip (see the module docstring for the rules).

    Raises
    ------
    StoreError
        Unknown clip, or a clip with readers that ``reader`` is not one of.
    """
    viewer = validate_reviewer(reader)
    store.clip(clip_id)
    mode, assigned, _ = _mode_for(store, clip_id, viewer)
    proposals = tuple(store.proposals(clip_id)) if mode != "unassisted" else ()
    reviews = store.reviews(clip_id)
    own = tuple(r for r in reviews if r.reviewer == viewer)
    if mode == OPEN_REVIEW:
        others = tuple(r for r in reviews if r.reviewer != viewer)
        states = tuple(store.current_measurements(clip_id))
    else:
        others, states = (), tuple(measurement_states(clip_id, proposals, own))
    return ReaderView(clip_id, viewer, mode, assigned, proposals, own, others, states)


def has_readers(store: Store, clip_id: int) -> bool:
    """True when the clip is assigned to readers (a reader-study clip)."""
    return bool(assignments(store, clip_id=clip_id))


def measurements_for(store: Store, clip_id: int, viewer: str | None) -> list[MeasurementState]:
    """What the review UI shows of a clip to ``viewer``: the one call for every screen and API.

    A clip without readers shows everything (``Store.current_measurements``), whoever asks.  A
    reader-study clip shows ``viewer``'s own view (:func:`reader_view`); without a viewer, or to
    someone who is not one of its readers, it shows nothing (:class:`StoreError`).
    """
    if not has_readers(store, clip_id):
        return store.current_measurements(clip_id)
    if viewer is None or not viewer.strip():
        raise StoreError(f"clip {clip_id} is read by assigned readers only; enter your reader name first")
    return visible_measurements(store, clip_id, viewer)


def save_for(store: Store, clip_id: int, reviewer: str, measurement: str, action: str, **review: Any) -> ReviewRecord:
    """Save a review from the UI: a read (with its mode) on a reader-study clip, else a plain review."""
    if has_readers(store, clip_id):
        return record_read(store, clip_id, reviewer, measurement, action, **review)
    return store.add_review(clip_id, measurement, action, reviewer, **review)


def visible_measurements(store: Store, clip_id: int, reader: str) -> list[MeasurementState]:
    """Where each measurement of a clip stands for ``reader`` (for the review UI)."""
    return list(reader_view(store, clip_id, reader).measurements)


def record_read(
    store: Store, clip_id: int, reader: str, measurement: str, action: str, **review: Any
) -> ReviewRecord:
    """Record one read of an assigned reader: the review and its reading mode, in one transaction.

    ``review`` takes the keyword arguments of :meth:`Store.add_review` (frame, points, value,
    unit, seconds_spent, proposal_id, reviewer_display_name).

    Raises
    ------
    StoreError
        ``reader`` is not assigned to the clip; an ``unassisted`` reader accepts, corrects or
        rejects a proposal (they cannot see it: their reads are ``added``); or any refusal of
        ``Store.add_review``.
    """
    viewer = validate_reviewer(reader)
    mine = next((a for a in assignments(store, clip_id=clip_id) if a.reader == viewer), None)
    if mine is None:
        store.clip(clip_id)
        raise StoreError(f"{measurement} on clip {clip_id}: only readers assigned to the clip can record a read")
    if mine.mode == "unassisted" and (action != "added" or review.get("proposal_id") is not None):
        raise StoreError(
            f"an unassisted reader does not see the AI proposal: draw {measurement} yourself (action 'added')"
        )

    def save_mode(s: Session, row: db.Review) -> None:
        read = db.ReaderRead(review_id=row.id, assignment_id=mine.id, mode=mine.mode, created_at=db.utcnow())
        s.add(read)
        s.flush()
        audit.append(s, viewer, "reader.read", "reader_read", read.id, clip_id, None,
               {"review_id": row.id, "mode": mine.mode, "measurement": measurement})

    return store.add_review(clip_id, measurement, action, viewer, on_saved=save_mode, **review)


def read_modes(store: Store) -> dict[int, str]:
    """The reading mode of every review made as an assigned reader: ``{review id: mode}``."""

    def op(s: Session) -> dict[int, str]:
        return {rid: mode for rid, mode in s.execute(select(db.ReaderRead.review_id, db.ReaderRead.mode))}

    return store._read(op)
