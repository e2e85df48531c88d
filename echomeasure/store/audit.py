"""Writing audit events: each one appended to the hash chain inside the change's own transaction.

The chain's format and its verification are :mod:`echomeasure.store.chain`; what goes into an
event's ``before``/``after`` is :func:`echomeasure.store.mapping.audit_payload`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from echomeasure.errors import StoreError
from echomeasure.store import chain
from echomeasure.store import schema as db
from echomeasure.store.validation import jsonable

#: The actor of changes no person made (ingest, registration of shipped weights).
SYSTEM_ACTOR = "system"

_CHAIN_HEAD = "echomeasure_audit_head"


def append(
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

    ``content`` is the hash of the rows the event created (:func:`content_hash`).
    """
    prev = _chain_head(s)
    event = {
        "actor": actor,
        "action": action,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "clip_id": clip_id,
        "before": jsonable(before) if before is not None else None,
        "after": jsonable(after) if after is not None else None,
        "content_sha256": content,
        "created_at": db.utcnow(),
    }
    sha = chain.link_hash(prev, event)
    s.add(db.AuditEvent(**event, prev_sha256=prev, sha256=sha))
    s.info[_CHAIN_HEAD] = sha


def content_hash(rows: Iterable[Any], columns: Sequence[str]) -> str:
    """The hash of the named columns of the rows an event created (:func:`chain.rows_content_hash`)."""
    return chain.rows_content_hash([row_columns(r, columns) for r in rows], columns)


def row_columns(row: Any, columns: Sequence[str]) -> dict[str, Any]:
    """The named attributes of an ORM row."""
    return {c: getattr(row, c) for c in columns}


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


__all__ = ["SYSTEM_ACTOR", "append", "content_hash", "row_columns"]
