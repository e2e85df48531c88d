"""Append-only that holds, and the audit hash chain.

- ``study``, ``clip``, ``frame_image``, ``proposal``, ``review``, ``audit_event`` and the new
  ``audit_chain`` refuse UPDATE, DELETE and TRUNCATE.  On SQLite a BEFORE INSERT trigger also
  refuses an INSERT whose id or unique key already exists, so ``INSERT OR REPLACE``, ``REPLACE``
  and UPSERT cannot rewrite a row (SQLite's REPLACE deletes the old row without firing DELETE
  triggers unless ``recursive_triggers`` is on).  On PostgreSQL an UPSERT's DO UPDATE fires the
  UPDATE trigger.
- ``model_version`` refuses DELETE and replacement; its metadata and active flag stay updatable.
- ``audit_event`` gains ``prev_sha256``, ``sha256`` (the hash chain) and ``content_sha256`` (the
  hash of the rows the event created); ``audit_chain`` holds the database's genesis.  Existing
  events are chained in id order, covering the rows as they are now.
- ``review`` gains ``reviewer_display_name`` (the typed name beside a logged-in reviewer).

Revision ID: 0002_append_only_chain
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0002_append_only_chain"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)

# Every unique key of each table: an INSERT colliding with one would replace a row on SQLite.
UNIQUE_KEYS = {
    "study": (("id",), ("study_uid",)),
    "clip": (("id",), ("instance_uid", "pixel_sha256")),
    "frame_image": (("id",), ("clip_id", "frame_index")),
    "proposal": (("id",),),
    "review": (("id",),),
    "audit_event": (("id",), ("sha256",), ("prev_sha256",)),
    "audit_chain": (("id",),),
    "model_version": (("id",), ("name", "version", "sha256")),
}
APPEND_ONLY = ("study", "clip", "frame_image", "proposal", "review", "audit_event", "audit_chain")
NO_DELETE = ("model_version",)
# Triggers 0001 made (kept by the downgrade).
OLD_APPEND_ONLY = ("review", "audit_event")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "audit_chain",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("database_id", sa.String(32), nullable=False),
        sa.Column("genesis_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("id = 1", name="ck_audit_chain_single_row"),
    )
    op.add_column("audit_event", sa.Column("content_sha256", sa.String(64), nullable=True))
    op.add_column("audit_event", sa.Column("prev_sha256", sa.String(64), nullable=True))
    op.add_column("audit_event", sa.Column("sha256", sa.String(64), nullable=True))
    op.add_column("review", sa.Column("reviewer_display_name", sa.String(100), nullable=True))

    # Chain the events already there (the 0001 triggers refuse the UPDATE: lift them meanwhile).
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_update")
    elif dialect == "postgresql":
        op.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
    _write_genesis_and_chain_existing_events()
    if dialect == "postgresql":
        op.execute("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only")

    op.create_index("uq_audit_event_sha256", "audit_event", ["sha256"], unique=True)
    op.create_index("uq_audit_event_prev_sha256", "audit_event", ["prev_sha256"], unique=True)
    _create_triggers(dialect)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    _drop_triggers(dialect)
    op.drop_index("uq_audit_event_prev_sha256", table_name="audit_event")
    op.drop_index("uq_audit_event_sha256", table_name="audit_event")
    # Plain ALTER TABLE DROP COLUMN (SQLite >= 3.35): a batch copy would lose the 0001 triggers.
    for table, column in (
        ("review", "reviewer_display_name"),
        ("audit_event", "sha256"),
        ("audit_event", "prev_sha256"),
        ("audit_event", "content_sha256"),
    ):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    op.drop_table("audit_chain")


# --------------------------------------------------------------------------- chain


def _write_genesis_and_chain_existing_events() -> None:
    from echomeasure.store import chain
    from echomeasure.store import schema as db

    bind = op.get_bind()
    database_id = uuid.uuid4().hex
    genesis = chain.genesis_hash(database_id)
    bind.execute(
        sa.insert(db.AuditChain.__table__).values(
            id=1, database_id=database_id, genesis_sha256=genesis, created_at=db.utcnow()
        )
    )
    contents = {
        "review": (db.Review.__table__, chain.REVIEW_CONTENT),
        "clip": (db.Clip.__table__, chain.CLIP_CONTENT),
        "proposal": (db.Proposal.__table__, chain.PROPOSAL_CONTENT),
    }
    rows = {}
    for name, (table, cols) in contents.items():
        rows[name] = {r["id"]: r for r in bind.execute(sa.select(*[table.c[c] for c in cols])).mappings()}
    t = db.AuditEvent.__table__
    columns = ("id", "actor", "action", "entity_type", "entity_id", "clip_id", "before", "after", "created_at")
    prev = genesis
    for event in bind.execute(sa.select(*[t.c[c] for c in columns]).order_by(t.c.id)).mappings().all():
        event = dict(event)
        event["content_sha256"] = None
        covered = chain._covered_ids(event)
        if covered is not None:
            name, ids = covered
            found = [rows[name][i] for i in ids if i in rows[name]]
            if len(found) == len(ids):
                event["content_sha256"] = chain.rows_content_hash(found, contents[name][1])
        sha = chain.link_hash(prev, event)
        bind.execute(
            sa.update(t)
            .where(t.c.id == event["id"])
            .values(content_sha256=event["content_sha256"], prev_sha256=prev, sha256=sha)
        )
        prev = sha


# --------------------------------------------------------------------------- triggers


def _create_triggers(dialect: str) -> None:
    if dialect == "sqlite":
        for table in APPEND_ONLY + NO_DELETE:
            verbs = ("DELETE",) if table in NO_DELETE else ("UPDATE", "DELETE")
            for verb in verbs:
                op.execute(
                    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
            exists = " OR ".join(
                f"EXISTS (SELECT 1 FROM {table} WHERE "
                + " AND ".join(f"{c} = NEW.{c}" for c in key)
                + ")"
                for key in UNIQUE_KEYS[table]
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} WHEN {exists} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: a row with this key exists'); END"
            )
    elif dialect == "postgresql":
        for table in APPEND_ONLY:
            if table not in OLD_APPEND_ONLY:
                op.execute(
                    f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION echomeasure_append_only()"
                )
        for table in NO_DELETE:
            op.execute(
                f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION echomeasure_append_only()"
            )
        for table in APPEND_ONLY + NO_DELETE:
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION echomeasure_append_only()"
            )


def _drop_triggers(dialect: str) -> None:
    if dialect == "sqlite":
        for table in APPEND_ONLY + NO_DELETE:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_replace")
            if table not in OLD_APPEND_ONLY:
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    elif dialect == "postgresql":
        for table in APPEND_ONLY + NO_DELETE:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        for table in NO_DELETE:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete ON {table}")
        for table in APPEND_ONLY:
            if table not in OLD_APPEND_ONLY:
                op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
