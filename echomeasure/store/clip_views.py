"""The view of a clip and the notices its reviewer was given when its models ran (``clip_view``).

The proposals of a clip are stored with :func:`echomeasure.store.contours.add_all_proposals`,
which writes the view beside them in the same transaction (:func:`view_in`); the worklist and
the clip header read the latest row of each clip (:func:`latest_views`), so a clip pre-annotated
in a batch or opened again later shows its view and notices like one just uploaded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from echomeasure.errors import StoreError
from echomeasure.store import audit, chain
from echomeasure.store import schema as db
from echomeasure.store.mapping import audit_payload
from echomeasure.store.queries import get_clip

if TYPE_CHECKING:
    from echomeasure.store.operations import Store

#: Longest notice kept (they are sentences the proposer writes) and most notices a clip keeps.
MAX_NOTICE_CHARS = 500
MAX_NOTICES = 20


@dataclass(frozen=True)
class ClipViewRecord:
    """A clip's view (``plax``, ``a4c``, ``a2c``, ``doppler``, ``other`` ...) with the classifier's
    confidence (None when none ran) and the notices given with its proposals."""

    clip_id: int
    view: str
    confidence: float | None
    notices: tuple[str, ...]
    created_at: datetime


def view_in(s: Session, clip_id: int, view: str, confidence: float | None, notices: Sequence[str],
            actor: str) -> ClipViewRecord:
    """Store a clip's view and notices in the write transaction ``s``; idempotent (the same view,
    confidence and notices as the clip's latest row add nothing).

    Raises
    ------
    StoreError
        Unknown clip, an empty view name or a non-finite confidence.
    """
    get_clip(s, clip_id)
    name = str(view or "").strip()[:32]
    if not name:
        raise StoreError("a clip view needs a name")
    conf = None if confidence is None else float(confidence)
    if conf is not None and not math.isfinite(conf):
        raise StoreError("a clip view's confidence must be a finite number")
    kept = [str(n)[:MAX_NOTICE_CHARS] for n in list(notices)[:MAX_NOTICES]]
    latest = s.scalars(select(db.ClipView).where(db.ClipView.clip_id == clip_id)
                       .order_by(db.ClipView.id.desc()).limit(1)).first()
    if latest is not None and (latest.view, latest.confidence, list(latest.notices)) == (name, conf, kept):
        return _record(latest)
    row = db.ClipView(clip_id=clip_id, view=name, confidence=conf, notices=kept, created_at=db.utcnow())
    s.add(row)
    s.flush()
    audit.append(s, actor, "view.add", "clip_view", row.id, clip_id, None, audit_payload(row),
                 content=audit.content_hash([row], chain.CLIP_VIEW_CONTENT))
    return _record(row)


def latest_views(store: Store, clip_ids: Iterable[int] | None = None) -> dict[int, ClipViewRecord]:
    """The latest view row of each clip (of ``clip_ids``, else of every clip that has one)."""
    wanted = None if clip_ids is None else set(clip_ids)

    def op(s: Session) -> dict[int, ClipViewRecord]:
        out: dict[int, ClipViewRecord] = {}
        query = select(db.ClipView).order_by(db.ClipView.id)
        if wanted is not None:
            query = query.where(db.ClipView.clip_id.in_(wanted))
        for row in s.scalars(query):
            out[row.clip_id] = _record(row)
        return out

    return store._read(op)


def _record(row: db.ClipView) -> ClipViewRecord:
    return ClipViewRecord(row.clip_id, row.view, row.confidence, tuple(str(n) for n in row.notices or ()),
                          row.created_at)


__all__ = ["ClipViewRecord", "MAX_NOTICES", "MAX_NOTICE_CHARS", "latest_views", "view_in"]
