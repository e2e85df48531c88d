"""The audit hash chain: tamper evidence for the review store.

Every ``audit_event`` row carries ``sha256 = SHA-256(prev_sha256 + canonical payload)`` where
``prev_sha256`` is the previous event's ``sha256`` (events in id order) and the first event's
``prev_sha256`` is the database's genesis hash (``audit_chain.genesis_sha256``, derived from a
random id drawn when the database was created).  The payload holds every column of the event
plus ``content_sha256``, the hash of the rows the event created (a review, a clip, the
proposals of a batch), so a review edited behind the application's back no longer matches the
audit event that recorded it.

:func:`verify` walks the chain and the covered rows and reports the first broken link.  The
canonical form (``CHAIN_FORMAT``) never changes once databases use it: keys sorted, no spaces,
UTF-8, numbers as Python writes them, timestamps as ISO 8601 UTC with microseconds; values are
stored through :func:`exact_json` so both backends give back exactly what was hashed.

The chain makes edits *evident*; it cannot stop someone who can write the database from
recomputing every hash after an edit.  Keep the head hash printed by ``echomeasure audit
verify`` somewhere else (a ticket, a log) to anchor it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

CHAIN_FORMAT = "echomeasure.audit/1"
#: Advisory lock key that serialises appends to the chain on PostgreSQL.
PG_CHAIN_LOCK = 7243012

# Columns of the rows whose content audit events cover (the order does not matter: keys are sorted).
REVIEW_CONTENT = (
    "id", "proposal_id", "clip_id", "frame_index", "measurement", "points", "value", "unit", "action",
    "reviewer", "reviewer_display_name", "seconds_spent", "model_version_id", "created_at",
)
CLIP_CONTENT = (
    "id", "study_id", "series_uid", "instance_uid", "kind", "source_kind", "n_frames", "frame_time_ms",
    "width_px", "height_px", "regions", "calibration_source", "user_cm_per_px", "pixel_sha256",
    "deid_record", "created_at",
)
PROPOSAL_CONTENT = (
    "id", "clip_id", "frame_index", "measurement", "points", "value", "unit", "signed_value",
    "pixel_length_px", "confidence", "model_version_id", "created_at",
)
#: Columns that say which weights a model version is; its audit events record them.
MODEL_VERSION_IDENTITY = ("name", "version", "sha256")
#: Rows whose audit events record (in ``after``) the columns that matter, checked against them:
#: table -> those columns.  Who reads a clip blinded, and a clip's user scale, are such rows.
RECORDED_COLUMNS: dict[str, tuple[str, ...]] = {
    "model_version": MODEL_VERSION_IDENTITY,
    "reader_assignment": ("reader", "mode"),
    "reader_read": ("review_id", "mode"),
    "user_calibration": ("points", "length_cm", "cm_per_px"),
}
#: Of those, the tables whose every row was written with its audit event (made after the chain).
_ALWAYS_RECORDED = ("reader_assignment", "reader_read", "user_calibration")

CONTOUR_PROPOSAL_CONTENT = (
    "id", "clip_id", "frame_index", "structure", "polygon", "area_cm2", "confidence", "model_version_id", "created_at",
)
CONTOUR_REVIEW_CONTENT = (
    "id", "contour_proposal_id", "clip_id", "frame_index", "structure", "polygon", "action", "reviewer",
    "reviewer_display_name", "created_at",
)
CLIP_VIEW_CONTENT = ("id", "clip_id", "view", "confidence", "notices", "created_at")
VOLUME_PROPOSAL_CONTENT = (
    "id", "clip_id", "measurement", "frame_index", "value", "unit", "method", "confidence", "model_version_id",
    "created_at",
)


def genesis_hash(database_id: str) -> str:
    """The hash the first event of a database links to."""
    return hashlib.sha256(f"{CHAIN_FORMAT} genesis {database_id}".encode()).hexdigest()


# Python writes floats from 1e16 up with an exponent; PostgreSQL's JSONB gives them back as integers.
_EXPONENT_FLOAT = 1e16


def exact_json(value: Any) -> Any:
    """``value`` (plain JSON types) as both databases give it back, for storing and hashing.

    PostgreSQL's JSONB keeps numbers as decimals: ``-0.0`` comes back as ``0.0`` and an integral
    float written with an exponent (``1e+16``) as an integer.  Writing those already normalised
    makes what is hashed at write time and what is read at verification time the same.
    """
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):
            raise ValueError("stored numbers must be finite")
        if value.is_integer() and abs(value) >= _EXPONENT_FLOAT:
            return int(value)
        return value + 0.0  # -0.0 -> 0.0
    if kind is list or kind is tuple:
        return [exact_json(v) for v in value]
    if kind is dict:
        return {k: exact_json(v) for k, v in value.items()}
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    raise TypeError(f"cannot put a {type(value).__name__} into an audit payload")


def canonical_json(obj: Any) -> bytes:
    """The canonical UTF-8 JSON of ``obj``: keys sorted, no spaces, numbers as Python writes
    them, timestamps as ISO 8601 UTC with microseconds.  Values must have been stored through
    :func:`exact_json` (and floats in float columns), so they read back identical."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
    ).encode("utf-8")


def event_payload(event: Mapping[Any, Any]) -> dict[str, Any]:
    """The hashed part of an audit event (every column but id and the hashes it links)."""
    return {
        "format": CHAIN_FORMAT,
        "actor": event["actor"],
        "action": event["action"],
        "entity_type": event["entity_type"],
        "entity_id": event["entity_id"],
        "clip_id": event["clip_id"],
        "before": event["before"],
        "after": event["after"],
        "content_sha256": event["content_sha256"],
        "created_at": event["created_at"],
    }


def link_hash(prev_sha256: str, event: Mapping[Any, Any]) -> str:
    """``SHA-256(prev_sha256 + canonical payload)`` of one event."""
    return hashlib.sha256(prev_sha256.encode("ascii") + canonical_json(event_payload(event))).hexdigest()


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class ChainReport:
    """What :func:`verify` found."""

    ok: bool
    n_events: int
    head_sha256: str | None
    genesis_sha256: str | None
    broken_event_id: int | None = None
    reason: str | None = None
    seconds: float = 0.0
    covered: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.n_events,
            "head_sha256": self.head_sha256,
            "genesis_sha256": self.genesis_sha256,
            "broken_event_id": self.broken_event_id,
            "reason": self.reason,
            "covered_rows": self.covered,
            "seconds": round(self.seconds, 3),
        }


def _row_hashes(conn: Connection, table: Any, columns: tuple[str, ...]) -> dict[int, str]:
    cols = [table.c[c] for c in columns if c in table.c]
    out: dict[int, str] = {}
    for row in conn.execute(select(*cols)).mappings():
        out[row["id"]] = row_hash(row, columns)
    return out


def _covered_ids(event: Mapping[Any, Any]) -> tuple[str, list[int]] | None:
    """Which table's rows an event's ``content_sha256`` covers, and their ids."""
    action, after = event["action"], event["after"] or {}
    if event["entity_type"] == "review" and action.startswith("review."):
        return "review", [event["entity_id"]]
    if action == "clip.add":
        return "clip", [event["entity_id"]]
    if action == "proposals.add":
        return "proposal", [p["proposal_id"] for p in after.get("proposals", [])]
    if event["entity_type"] == "contour_review" and action.startswith("contour_review."):
        return "contour_review", [event["entity_id"]]
    if action == "contours.add":
        return "contour_proposal", [c["contour_proposal_id"] for c in after.get("contours", [])]
    if action == "volumes.add":
        return "volume_proposal", [v["volume_proposal_id"] for v in after.get("volumes", [])]
    if action == "view.add":
        return "clip_view", [after["clip_view_id"]]
    return None


def verify(engine: Engine | Connection) -> ChainReport:
    """Check the whole audit chain and the rows its events cover.

    Broken when: an event's ``prev_sha256`` is not the previous event's hash (an event was
    deleted, inserted or reordered), its ``sha256`` does not match its payload (an event was
    edited), a covered row no longer hashes to the event's ``content_sha256`` (a review, clip or
    proposal was edited or deleted), or a review, clip or proposal has no audit event at all.
    """
    from echomeasure.store import schema as db

    started = time.perf_counter()
    if isinstance(engine, Connection):
        return _verify(engine, db, started)
    with engine.connect() as conn:
        return _verify(conn, db, started)


def _verify(conn: Connection, db: Any, started: float) -> ChainReport:
    genesis_row = conn.execute(select(db.AuditChain.genesis_sha256, db.AuditChain.database_id)).first()
    if genesis_row is None:
        return ChainReport(False, 0, None, None, None, "the database has no audit genesis", time.perf_counter() - started)
    genesis = genesis_row[0]
    if genesis != genesis_hash(genesis_row[1]):
        return ChainReport(False, 0, None, genesis, None, "the genesis hash does not match the database id",
                           time.perf_counter() - started)
    tables = {
        "review": (db.Review.__table__, REVIEW_CONTENT),
        "clip": (db.Clip.__table__, CLIP_CONTENT),
        "proposal": (db.Proposal.__table__, PROPOSAL_CONTENT),
        "contour_proposal": (db.ContourProposal.__table__, CONTOUR_PROPOSAL_CONTENT),
        "contour_review": (db.ContourReview.__table__, CONTOUR_REVIEW_CONTENT),
        "volume_proposal": (db.VolumeProposal.__table__, VOLUME_PROPOSAL_CONTENT),
        "clip_view": (db.ClipView.__table__, CLIP_VIEW_CONTENT),
    }
    row_hashes = {name: _row_hashes(conn, t, cols) for name, (t, cols) in tables.items()}
    unaudited = {name: set(hashes) for name, hashes in row_hashes.items()}
    recorded_rows = {name: _recorded_rows(conn, db.Base.metadata.tables[name], cols)
                     for name, cols in RECORDED_COLUMNS.items()}
    unrecorded = {name: set(recorded_rows[name]) for name in _ALWAYS_RECORDED}

    t = db.AuditEvent.__table__
    prev, n = genesis, 0

    def broken(event_id: int | None, reason: str) -> ChainReport:
        return ChainReport(False, n, prev, genesis, event_id, reason, time.perf_counter() - started)

    result = conn.execution_options(stream_results=True, yield_per=5000).execute(select(t).order_by(t.c.id))
    for event in result.mappings():
        n += 1
        eid = event["id"]
        if event["prev_sha256"] != prev:
            return broken(eid, f"event {eid} does not link to the event before it (one was removed, added or edited)")
        if event["sha256"] != link_hash(prev, event):
            return broken(eid, f"event {eid} was changed after it was written (its hash does not match)")
        covered = _covered_ids(event)
        if covered is not None:
            name, ids = covered
            hashes = row_hashes[name]
            missing = [i for i in ids if i not in hashes]
            if missing:
                return broken(eid, f"{name} {missing[0]} recorded by event {eid} is missing")
            rows_hash = _list_hash([hashes[i] for i in ids])
            if event["content_sha256"] != rows_hash:
                return broken(eid, f"{name} {ids[0] if len(ids) == 1 else ids} recorded by event {eid} "
                                   "was changed after it was written")
            unaudited[name].difference_update(ids)
        changed = _changed_recorded_row(event, recorded_rows)
        if changed is not None:
            return broken(eid, changed)
        if event["entity_type"] in unrecorded:
            unrecorded[event["entity_type"]].discard(event["entity_id"])
        prev = event["sha256"]
    for name, left in (*unaudited.items(), *unrecorded.items()):
        if left:
            return ChainReport(False, n, prev, genesis, None, f"{name} {min(left)} has no audit event (added behind "
                               "the application's back)", time.perf_counter() - started)
    return ChainReport(True, n, prev, genesis, None, None, time.perf_counter() - started,
                       {name: len(h) for name, h in row_hashes.items()})


def _recorded_rows(conn: Connection, table: Any, columns: tuple[str, ...]) -> dict[int, dict[str, Any]]:
    extra = ("clip_id",) if "clip_id" in table.c else ()
    query = select(table.c.id, *(table.c[c] for c in (*columns, *extra)))
    return {row["id"]: dict(row) for row in conn.execute(query).mappings()}


def _changed_recorded_row(event: Mapping[Any, Any], rows: Mapping[str, Mapping[int, Mapping[str, Any]]]) -> str | None:
    """Why a row an event recorded (:data:`RECORDED_COLUMNS`) no longer is what it recorded (None: it is).

    These tables refuse UPDATE and DELETE by trigger, except a model version's identity, which
    only this check covers (its metadata and active flag may change): a version renamed or
    given another sha256 would relabel every proposal it made.
    """
    table = event["entity_type"]
    if table not in rows or event["entity_id"] is None:
        return None
    recorded = {k: v for k, v in (event["after"] or {}).items() if k in RECORDED_COLUMNS[table]}
    if not recorded:
        return None
    eid, rid = event["id"], event["entity_id"]
    row = rows[table].get(rid)
    if row is None:
        return f"{table} {rid} recorded by event {eid} is missing"
    if any(not _same_value(row[k], v) for k, v in recorded.items()) or (
        "clip_id" in row and row["clip_id"] != event["clip_id"]
    ):
        return f"{table} {rid} recorded by event {eid} was changed after it was written"
    return None


def _same_value(stored: Any, recorded: Any) -> bool:
    try:
        return bool(exact_json(stored) == exact_json(recorded))
    except ValueError:  # a number made non-finite behind the application's back
        return False


def row_hash(row: Mapping[Any, Any], columns: Iterable[str]) -> str:
    """SHA-256 of one row's canonical content."""
    cols = tuple(columns)
    return hashlib.sha256(canonical_json({c: row.get(c) for c in cols})).hexdigest()


def _list_hash(row_hashes: list[str]) -> str:
    return hashlib.sha256(",".join(row_hashes).encode("ascii")).hexdigest()


def rows_content_hash(rows: Iterable[Mapping[Any, Any]], columns: Iterable[str]) -> str:
    """The ``content_sha256`` of an event that created ``rows``: a hash over the rows' hashes."""
    cols = tuple(columns)
    return _list_hash([row_hash(r, cols) for r in rows])
