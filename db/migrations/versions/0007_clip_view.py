"""The view of a clip and the notices its reviewer was given, kept with the clip.

- ``clip_view``: what the view classifier said (view, confidence) when the models ran on a clip,
  and the notices shown then (not PLAX, view uncertain, no LV found ...).  They were only in the
  answer of the ingest that ran the models: a clip pre-annotated in a batch, or opened again from
  the worklist, showed neither.  The latest row of a clip counts.

Append-only like ``proposal`` (UPDATE, DELETE, TRUNCATE and, on SQLite, replacing INSERTs refused).

Revision ID: 0007_clip_view
Revises: 0006_model_version_identity
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007_clip_view"
down_revision = "0006_model_version_identity"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)
TABLE = "clip_view"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("clip_id", sa.Integer, sa.ForeignKey("clip.id", name="fk_clip_view_clip"), nullable=False),
        sa.Column("view", sa.String(32), nullable=False),
        sa.Column("confidence", sa.Float, nullable=True),
        sa.Column("notices", JSONType, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("length(view) > 0", name="ck_clip_view_view"),
    )
    op.create_index("ix_clip_view_clip_id", TABLE, ["clip_id"])
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {TABLE}_no_{verb.lower()} BEFORE {verb} ON {TABLE} "
                       f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END")
        op.execute(f"CREATE TRIGGER {TABLE}_no_replace BEFORE INSERT ON {TABLE} "
                   f"WHEN EXISTS (SELECT 1 FROM {TABLE} WHERE id = NEW.id) "
                   f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: a row with this key exists'); END")
    elif dialect == "postgresql":
        op.execute(f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
                   "FOR EACH ROW EXECUTE FUNCTION echomeasure_append_only()")
        op.execute(f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION echomeasure_append_only()")


def downgrade() -> None:
    # Dropping a table drops its triggers on both SQLite and PostgreSQL.
    op.drop_index("ix_clip_view_clip_id", table_name=TABLE)
    op.drop_table(TABLE)
