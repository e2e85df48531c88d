"""User calibration: a known length a reviewer drew on a clip without DICOM calibration.

- ``user_calibration``: one row per calibration (clip, the two points in image pixels, the
  length typed in cm, the resulting cm per pixel, who drew it).  The latest row of a clip is its
  calibration: the clip then reads as calibration source ``user`` with that scale.

Append-only (UPDATE, DELETE, TRUNCATE and, on SQLite, replacing INSERTs refused), like the clip
table it annotates: a new calibration is a new row, and the old one stays in the history.

Revision ID: 0004_user_calibration
Revises: 0003_readers
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004_user_calibration"
down_revision = "0003_readers"
branch_labels = None
depends_on = None

TABLE = "user_calibration"
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("clip_id", sa.Integer, sa.ForeignKey("clip.id", name="fk_user_calibration_clip"), nullable=False),
        sa.Column("points", JSONType, nullable=False),
        sa.Column("length_cm", sa.Float, nullable=False),
        sa.Column("cm_per_px", sa.Float, nullable=False),
        sa.Column("reviewer", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("length_cm > 0 AND cm_per_px > 0", name="ck_user_calibration_positive"),
    )
    op.create_index("ix_user_calibration_clip_id", TABLE, ["clip_id"])
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {TABLE}_no_{verb.lower()} BEFORE {verb} ON {TABLE} "
                f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END"
            )
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_replace BEFORE INSERT ON {TABLE} "
            f"WHEN EXISTS (SELECT 1 FROM {TABLE} WHERE id = NEW.id) "
            f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: a row with this key exists'); END"
        )
    elif dialect == "postgresql":
        op.execute(
            f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION echomeasure_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION echomeasure_append_only()"
        )


def downgrade() -> None:
    # Dropping a table drops its triggers on both SQLite and PostgreSQL.
    op.drop_index("ix_user_calibration_clip_id", table_name=TABLE)
    op.drop_table(TABLE)
