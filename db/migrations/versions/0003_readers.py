"""Readers: clips assigned to N readers, each read stored with its reading mode.

- ``reader_assignment``: one row per (clip, reader) with the mode the reader reads it in:
  ``blinded`` (the AI proposal is shown, other readers' reads are not), ``unassisted`` (neither
  is shown: the reader measures from scratch) or ``open`` (everything is shown).
- ``reader_read``: one row per review made as an assigned reader, with the mode it was made
  in (copied from the assignment at the time of the read).

Both are append-only (UPDATE, DELETE, TRUNCATE and, on SQLite, replacing INSERTs refused), like
the review table they annotate.

Revision ID: 0003_readers
Revises: 0002_append_only_chain
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_readers"
down_revision = "0002_append_only_chain"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
MODES = "mode IN ('open', 'blinded', 'unassisted')"
TABLES = ("reader_assignment", "reader_read")
UNIQUE_KEYS = {
    "reader_assignment": (("id",), ("clip_id", "reader")),
    "reader_read": (("id",), ("review_id",)),
}


def upgrade() -> None:
    op.create_table(
        "reader_assignment",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("clip_id", sa.Integer, sa.ForeignKey("clip.id", name="fk_reader_assignment_clip"), nullable=False),
        sa.Column("reader", sa.String(100), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("assigned_by", sa.String(100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("clip_id", "reader", name="uq_reader_assignment_clip_reader"),
        sa.CheckConstraint(MODES, name="ck_reader_assignment_mode"),
    )
    op.create_index("ix_reader_assignment_reader", "reader_assignment", ["reader"])
    op.create_table(
        "reader_read",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("review_id", sa.Integer, sa.ForeignKey("review.id", name="fk_reader_read_review"), nullable=False),
        sa.Column(
            "assignment_id",
            sa.Integer,
            sa.ForeignKey("reader_assignment.id", name="fk_reader_read_assignment"),
            nullable=False,
        ),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("review_id", name="uq_reader_read_review"),
        sa.CheckConstraint(MODES, name="ck_reader_read_mode"),
    )
    op.create_index("ix_reader_read_assignment_id", "reader_read", ["assignment_id"])
    dialect = op.get_bind().dialect.name
    for table in TABLES:
        if dialect == "sqlite":
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
            exists = " OR ".join(
                f"EXISTS (SELECT 1 FROM {table} WHERE " + " AND ".join(f"{c} = NEW.{c}" for c in key) + ")"
                for key in UNIQUE_KEYS[table]
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} WHEN {exists} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: a row with this key exists'); END"
            )
        elif dialect == "postgresql":
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION echomeasure_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION echomeasure_append_only()"
            )


def downgrade() -> None:
    # Dropping a table drops its triggers on both SQLite and PostgreSQL.
    op.drop_index("ix_reader_read_assignment_id", table_name="reader_read")
    op.drop_table("reader_read")
    op.drop_index("ix_reader_assignment_reader", table_name="reader_assignment")
    op.drop_table("reader_assignment")
