"""Contours and chamber volumes as reviewable proposals.

- ``contour_proposal``: one polygon per structure per frame a segmentation model proposed
  (structure name, polygon in original-image pixels, area in cm² when calibrated, confidence,
  model version).
- ``contour_review``: a reviewer's decision on a contour (accepted, corrected with a new
  polygon, rejected, or added by hand), like ``review`` for calipers.
- ``volume_proposal``: LV end-diastolic / end-systolic volume, ejection fraction, LA volume
  and LV length with the method that gave them (single-plane A4C, single-plane A2C, biplane, area-length).

All three are append-only (UPDATE, DELETE, TRUNCATE and, on SQLite, replacing INSERTs
refused), like ``proposal`` and ``review``.

Revision ID: 0005_contours
Revises: 0004_user_calibration
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005_contours"
down_revision = "0004_user_calibration"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)
TABLES = ("contour_proposal", "contour_review", "volume_proposal")


def upgrade() -> None:
    op.create_table(
        "contour_proposal",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("clip_id", sa.Integer, sa.ForeignKey("clip.id", name="fk_contour_proposal_clip"), nullable=False),
        sa.Column("frame_index", sa.Integer, nullable=False),
        sa.Column("structure", sa.String(32), nullable=False),
        sa.Column("polygon", JSONType, nullable=False),
        sa.Column("area_cm2", sa.Float, nullable=True),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("model_version_id", sa.Integer,
                  sa.ForeignKey("model_version.id", name="fk_contour_proposal_model_version"), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_contour_proposal_clip_structure", "contour_proposal", ["clip_id", "structure"])
    op.create_table(
        "contour_review",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("contour_proposal_id", sa.Integer,
                  sa.ForeignKey("contour_proposal.id", name="fk_contour_review_contour_proposal"), nullable=True),
        sa.Column("clip_id", sa.Integer, sa.ForeignKey("clip.id", name="fk_contour_review_clip"), nullable=False),
        sa.Column("frame_index", sa.Integer, nullable=False),
        sa.Column("structure", sa.String(32), nullable=False),
        sa.Column("polygon", JSONType, nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reviewer", sa.String(100), nullable=False),
        sa.Column("reviewer_display_name", sa.String(100), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("action IN ('accepted', 'corrected', 'rejected', 'added')", name="ck_contour_review_action"),
        sa.CheckConstraint("length(reviewer) > 0", name="ck_contour_review_reviewer"),
    )
    op.create_index("ix_contour_review_clip_id", "contour_review", ["clip_id"])
    op.create_index("ix_contour_review_contour_proposal_id", "contour_review", ["contour_proposal_id"])
    op.create_table(
        "volume_proposal",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("clip_id", sa.Integer, sa.ForeignKey("clip.id", name="fk_volume_proposal_clip"), nullable=False),
        sa.Column("measurement", sa.String(32), nullable=False),
        sa.Column("frame_index", sa.Integer, nullable=True),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("model_version_id", sa.Integer,
                  sa.ForeignKey("model_version.id", name="fk_volume_proposal_model_version"), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "measurement IN ('lvedv', 'lvesv', 'lvef', 'la_volume', 'lv_length')", name="ck_volume_proposal_measurement"
        ),
    )
    op.create_index("ix_volume_proposal_clip_id", "volume_proposal", ["clip_id"])
    _create_triggers(op.get_bind().dialect.name)


def downgrade() -> None:
    # Dropping a table drops its triggers on both SQLite and PostgreSQL.
    op.drop_index("ix_volume_proposal_clip_id", table_name="volume_proposal")
    op.drop_table("volume_proposal")
    op.drop_index("ix_contour_review_contour_proposal_id", table_name="contour_review")
    op.drop_index("ix_contour_review_clip_id", table_name="contour_review")
    op.drop_table("contour_review")
    op.drop_index("ix_contour_proposal_clip_structure", table_name="contour_proposal")
    op.drop_table("contour_proposal")


def _create_triggers(dialect: str) -> None:
    for table in TABLES:
        if dialect == "sqlite":
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
            op.execute(
                f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} "
                f"WHEN EXISTS (SELECT 1 FROM {table} WHERE id = NEW.id) "
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
