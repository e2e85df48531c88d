"""A review may reopen a decision: action ``reopened`` on ``review`` and ``contour_review``.

Undoing a rejection (Ctrl+Z in the review UI) brings the measurement or contour back to review.
It was only back to review in the page: the store kept the rejection until the reviewer acted
again.  The undo is now a review of its own, ``reopened`` (who, when, which proposal and model,
audited like the other actions), after which the measurement stands as proposed (unreviewed) in
the store, the worklist and the exports.  Rows are not changed: only the CHECK constraints on
``action`` take the new value.

SQLite keeps a CHECK constraint in the table's CREATE statement; widening the list of allowed
values changes nothing on disk and every stored row satisfies the new constraint, so the
statement is rewritten in place (the documented procedure for such changes: ``writable_schema``,
then the schema version bumped), which keeps the append-only triggers, the indexes and the
foreign keys of ``reader_read`` as they are.  PostgreSQL drops and re-adds the constraint.

Revision ID: 0008_reopen_review
Revises: 0007_clip_view
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import text

revision = "0008_reopen_review"
down_revision = "0007_clip_view"
branch_labels = None
depends_on = None

OLD = "action IN ('accepted', 'corrected', 'rejected', 'added')"
#: The constraints as the models build them from ``records.REVIEW_ACTIONS``.
CONSTRAINTS = {
    "review": sa.CheckConstraint("action IN ('accepted', 'corrected', 'rejected', 'added', 'reopened')",
                                 name="ck_review_action"),
    "contour_review": sa.CheckConstraint("action IN ('accepted', 'corrected', 'rejected', 'added', 'reopened')",
                                         name="ck_contour_review_action"),
}
NEW = str(CONSTRAINTS["review"].sqltext)


def _sqlite_rewrite(table: str, old: str, new: str) -> None:
    bind = op.get_bind()
    sql = bind.execute(text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": table}).scalar()
    if sql is None or sql.count(old) != 1:
        raise RuntimeError(f"0008_reopen_review: the {table} table's action constraint is not the expected one")
    version = int(bind.execute(text("PRAGMA schema_version")).scalar())
    bind.execute(text("PRAGMA writable_schema = ON"))
    try:
        bind.execute(text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = :t"),
                     {"sql": sql.replace(old, new), "t": table})
        bind.execute(text(f"PRAGMA schema_version = {version + 1}"))
    finally:
        bind.execute(text("PRAGMA writable_schema = OFF"))
    check = bind.execute(text("PRAGMA quick_check")).scalar()
    if check != "ok":
        raise RuntimeError(f"0008_reopen_review: the database is not sound after the change ({check})")


def _change(old: str, new: str) -> None:
    dialect = op.get_bind().dialect.name
    for table, constraint in CONSTRAINTS.items():
        if dialect == "sqlite":
            _sqlite_rewrite(table, old, new)
        else:
            op.drop_constraint(str(constraint.name), table, type_="check")
            op.create_check_constraint(str(constraint.name), table, new)


def upgrade() -> None:
    _change(OLD, NEW)


def downgrade() -> None:
    bind = op.get_bind()
    for table in CONSTRAINTS:
        if bind.execute(text(f"SELECT count(*) FROM {table} WHERE action = 'reopened'")).scalar():
            raise RuntimeError(f"0008_reopen_review: {table} holds reopened reviews; a downgrade would refuse them")
    _change(NEW, OLD)
