"""Initial review store: study, clip, frame_image, model_version, proposal, review, audit_event.

``review`` and ``audit_event`` are append-only: triggers refuse UPDATE and DELETE.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)
APPEND_ONLY = ("review", "audit_event")


def upgrade() -> None:
    op.create_table(
        "study",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("study_uid", name="uq_study_study_uid"),
    )
    op.create_table(
        "clip",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("study.id", name="fk_clip_study"), nullable=False),
        sa.Column("series_uid", sa.String(64), nullable=False),
        sa.Column("instance_uid", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source_kind", sa.String(16), nullable=False),
        sa.Column("n_frames", sa.Integer, nullable=False),
        sa.Column("frame_time_ms", sa.Float, nullable=True),
        sa.Column("width_px", sa.Integer, nullable=False),
        sa.Column("height_px", sa.Integer, nullable=False),
        sa.Column("regions", JSONType, nullable=False),
        sa.Column("calibration_source", sa.String(16), nullable=False),
        sa.Column("user_cm_per_px", sa.Float, nullable=True),
        sa.Column("pixel_sha256", sa.String(64), nullable=False),
        sa.Column("deid_record", JSONType, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("instance_uid", "pixel_sha256", name="uq_clip_instance_pixels"),
        sa.CheckConstraint("kind IN ('2d', 'doppler')", name="ck_clip_kind"),
        sa.CheckConstraint(
            "calibration_source IN ('dicom', 'user', 'none')", name="ck_clip_calibration_source"
        ),
    )
    op.create_index("ix_clip_study_id", "clip", ["study_id"])
    op.create_index("ix_clip_instance_uid", "clip", ["instance_uid"])
    op.create_table(
        "frame_image",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("clip_id", sa.Integer, sa.ForeignKey("clip.id", name="fk_frame_image_clip"), nullable=False),
        sa.Column("frame_index", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("width_px", sa.Integer, nullable=False),
        sa.Column("height_px", sa.Integer, nullable=False),
        sa.Column("relpath", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("clip_id", "frame_index", name="uq_frame_image_clip_frame"),
    )
    op.create_index("ix_frame_image_clip_id", "frame_image", ["clip_id"])
    op.create_index("ix_frame_image_sha256", "frame_image", ["sha256"])
    op.create_table(
        "model_version",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column(
            "parent_id", sa.Integer, sa.ForeignKey("model_version.id", name="fk_model_version_parent"), nullable=True
        ),
        sa.Column("trained_on", JSONType, nullable=False),
        sa.Column("metrics", JSONType, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("name", "version", "sha256", name="uq_model_version_identity"),
    )
    op.create_table(
        "proposal",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("clip_id", sa.Integer, sa.ForeignKey("clip.id", name="fk_proposal_clip"), nullable=False),
        sa.Column("frame_index", sa.Integer, nullable=False),
        sa.Column("measurement", sa.String(32), nullable=False),
        sa.Column("points", JSONType, nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("signed_value", sa.Float, nullable=True),
        sa.Column("pixel_length_px", sa.Float, nullable=True),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column(
            "model_version_id",
            sa.Integer,
            sa.ForeignKey("model_version.id", name="fk_proposal_model_version"),
            nullable=True,
        ),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_proposal_clip_measurement", "proposal", ["clip_id", "measurement"])
    op.create_index("ix_proposal_model_version_id", "proposal", ["model_version_id"])
    op.create_table(
        "review",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "proposal_id", sa.Integer, sa.ForeignKey("proposal.id", name="fk_review_proposal"), nullable=True
        ),
        sa.Column("clip_id", sa.Integer, sa.ForeignKey("clip.id", name="fk_review_clip"), nullable=False),
        sa.Column("frame_index", sa.Integer, nullable=True),
        sa.Column("measurement", sa.String(32), nullable=False),
        sa.Column("points", JSONType, nullable=True),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("unit", sa.String(16), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reviewer", sa.String(100), nullable=False),
        sa.Column("seconds_spent", sa.Float, nullable=True),
        sa.Column(
            "model_version_id",
            sa.Integer,
            sa.ForeignKey("model_version.id", name="fk_review_model_version"),
            nullable=True,
        ),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "action IN ('accepted', 'corrected', 'rejected', 'added')", name="ck_review_action"
        ),
        sa.CheckConstraint("length(reviewer) > 0", name="ck_review_reviewer"),
    )
    op.create_index("ix_review_clip_measurement", "review", ["clip_id", "measurement"])
    op.create_index("ix_review_proposal_id", "review", ["proposal_id"])
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("entity_type", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.Integer, nullable=True),
        sa.Column("clip_id", sa.Integer, sa.ForeignKey("clip.id", name="fk_audit_event_clip"), nullable=True),
        sa.Column("before", JSONType, nullable=True),
        sa.Column("after", JSONType, nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_audit_event_clip_id", "audit_event", ["clip_id"])
    _create_append_only_triggers()


def downgrade() -> None:
    _drop_append_only_triggers()
    op.drop_table("audit_event")
    op.drop_table("review")
    op.drop_table("proposal")
    op.drop_table("model_version")
    op.drop_table("frame_image")
    op.drop_table("clip")
    op.drop_table("study")


def _create_append_only_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in APPEND_ONLY:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION echomeasure_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION echomeasure_append_only()"
            )


def _drop_append_only_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in APPEND_ONLY:
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
    elif dialect == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS echomeasure_append_only()")
