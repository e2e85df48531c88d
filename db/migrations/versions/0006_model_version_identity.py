"""A model version's identity (name, version, sha256) cannot be changed.

Its metadata and active flag may change (audited) when a version is re-registered or activated,
but a changed name, version or weights hash relabels every proposal it made in the exports.
``audit verify`` detects such a change after the fact; this trigger refuses it (SQLite: an
UPDATE OF those columns; PostgreSQL: an UPDATE that changes one of them).

Revision ID: 0006_model_version_identity
Revises: 0005_contours
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0006_model_version_identity"
down_revision = "0005_contours"
branch_labels = None
depends_on = None

TRIGGER = "model_version_identity_immutable"
MESSAGE = "model_version identity (name, version, sha256) is immutable"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute(
            f"CREATE TRIGGER {TRIGGER} BEFORE UPDATE OF name, version, sha256 ON model_version "
            "WHEN OLD.name IS NOT NEW.name OR OLD.version IS NOT NEW.version OR OLD.sha256 IS NOT NEW.sha256 "
            f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
        )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION echomeasure_model_version_identity() RETURNS trigger AS $$ "
            f"BEGIN RAISE EXCEPTION '{MESSAGE}'; END; $$ LANGUAGE plpgsql"
        )
        op.execute(
            f"CREATE TRIGGER {TRIGGER} BEFORE UPDATE ON model_version FOR EACH ROW "
            "WHEN (OLD.name IS DISTINCT FROM NEW.name OR OLD.version IS DISTINCT FROM NEW.version "
            "OR OLD.sha256 IS DISTINCT FROM NEW.sha256) EXECUTE FUNCTION echomeasure_model_version_identity()"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER}")
    elif dialect == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON model_version")
        op.execute("DROP FUNCTION IF EXISTS echomeasure_model_version_identity()")
