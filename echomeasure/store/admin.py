"""Administration of the review store: audit verification, backups, PostgreSQL roles.

- :func:`verify_audit` checks the audit hash chain (:mod:`echomeasure.store.chain`).
- :func:`backup` copies a SQLite store with SQLite's online backup API into a new file that
  replaces ``out`` atomically (for PostgreSQL it returns the ``pg_dump`` command to run).
- :func:`create_app_role` gives PostgreSQL an application role that may read and insert but
  never update or delete the append-only tables (least privilege: run the app as that role and
  keep the owner's login for migrations).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool

from echomeasure import atomic, config
from echomeasure.errors import StoreError
from echomeasure.store import chain
from echomeasure.store.engine import create_store_engine, current_revision, head_revision, parse_url, sqlite_path
from echomeasure.store.schema import APPEND_ONLY_TABLES, NO_DELETE_TABLES

log = logging.getLogger(__name__)

DEFAULT_APP_ROLE = "echomeasure_app"
#: Columns the application role may UPDATE (everything else is insert-only for it).
APP_UPDATABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "model_version": ("trained_on", "metrics", "parent_id", "active"),
}
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _existing_sqlite_file(url: str) -> Path | None:
    """The SQLite file of ``url`` (must exist), or None for other databases."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    path = sqlite_path(parsed)
    if path is None:
        raise StoreError("an in-memory SQLite database cannot be verified or backed up; give a file URL")
    if not path.is_file():
        raise StoreError(f"no review database at {path}; check --db")
    return path


def require_existing(url: str, hint: str = "run 'echomeasure ingest' first or pass --db") -> None:
    """Refuse a SQLite store whose file does not exist (a command that only reads the store would
    otherwise create an empty database where a mistyped ``--db`` points)."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite":
        return
    path = sqlite_path(parsed)
    if path is not None and not path.is_file():
        raise StoreError(f"no review database at {path}; {hint}")


def _engine_at_head(url: str) -> Engine:
    engine = create_store_engine(url)
    try:
        at = current_revision(engine)
    except Exception as exc:  # noqa: BLE001 - an unreachable server is a user error here
        engine.dispose()
        orig = getattr(exc, "orig", None)
        raise StoreError(
            f"cannot open the database {engine.url.render_as_string(hide_password=True)}: "
            f"{' '.join(str(orig if orig is not None else exc).split())[:200]}"
        ) from None
    if at != head_revision():
        engine.dispose()
        raise StoreError(
            f"the database is at schema {at or 'empty'}, not {head_revision()}; open it once with "
            "echomeasure (e.g. 'echomeasure db init') to upgrade it"
        )
    return engine


# --------------------------------------------------------------------------- verify


def verify_audit(url: str | None = None) -> chain.ChainReport:
    """Verify the audit chain of the store at ``url`` (default: ``ECHOMEASURE_DB``); changes nothing."""
    resolved = config.db_url(url)
    _existing_sqlite_file(resolved)
    engine = _engine_at_head(resolved)
    try:
        return chain.verify(engine)
    finally:
        engine.dispose()


def check_audit_at_start(engine: Engine) -> chain.ChainReport:
    """Verify the audit chain of an open store and log the outcome (the review UI does it on start)."""
    report = chain.verify(engine)
    if report.ok:
        log.info("audit chain intact: %d events verified in %.2f s (head %s)",
                 report.n_events, report.seconds, (report.head_sha256 or "")[:16])
    else:
        where = f" at event {report.broken_event_id}" if report.broken_event_id is not None else ""
        log.error("audit chain broken%s: %s; run 'echomeasure audit verify'", where, report.reason)
    return report


# --------------------------------------------------------------------------- backup


@dataclass(frozen=True)
class BackupResult:
    """What :func:`backup` did: the file written (SQLite) or the command to run (PostgreSQL)."""

    output: Path | None
    pg_dump_command: str | None
    report: chain.ChainReport | None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.output is not None:
            out["backup"] = str(self.output)
        if self.pg_dump_command is not None:
            out["pg_dump"] = self.pg_dump_command
            out["note"] = ("PostgreSQL is backed up with pg_dump (password from ~/.pgpass or PGPASSWORD); "
                           "restore with pg_restore --no-owner -d DB FILE, then run 'echomeasure audit verify'")
        if self.report is not None:
            out["audit"] = self.report.as_json()
        return out


def pg_dump_command(url: str, out: str | os.PathLike[str]) -> str:
    """The ``pg_dump`` command that backs up the PostgreSQL database at ``url`` (no password shown)."""
    parsed = parse_url(url)
    args = ["pg_dump", "--format=custom", "--no-owner", f"--file={os.fspath(out)}"]
    if parsed.host:
        args.append(f"--host={parsed.host}")
    if parsed.port:
        args.append(f"--port={parsed.port}")
    if parsed.username:
        args.append(f"--username={parsed.username}")
    args.append(parsed.database or "")
    return " ".join(shlex.quote(a) for a in args)


def backup(url: str | None, out: str | os.PathLike[str]) -> BackupResult:
    """Back up the store at ``url`` to ``out``.

    SQLite: the online backup API copies a consistent snapshot while the app may keep writing;
    the copy is written to a temporary file beside ``out``, made self-contained (rollback
    journal, not WAL), synced and renamed over ``out``, then its audit chain is verified.  An
    existing ``out`` that is not a regular file (folder, link, device) is refused, as is the
    database file itself.  The frame image folder is not part of the database: copy it too.

    PostgreSQL: nothing is written; the result carries the ``pg_dump`` command to run.
    """
    resolved = config.db_url(url)
    target = Path(out).expanduser()
    source = _existing_sqlite_file(resolved)
    if source is None:
        return BackupResult(None, pg_dump_command(resolved, target), None)
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise StoreError(f"{out} exists and is not a regular file; give a new file name for the backup")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise StoreError(f"cannot write {out}: folder {folder} does not exist")
    target = folder.resolve() / target.name
    if target == source or (target.parent == source.parent and target.name.startswith(f"{source.name}-")):
        raise StoreError(f"{out} is the database itself; give another file name for the backup")
    with atomic.atomic_path(target, mode=0o600) as tmp:
        src = sqlite3.connect(str(source), timeout=30)
        try:
            dst = sqlite3.connect(str(tmp))
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")
                dst.commit()
            except sqlite3.DatabaseError as exc:  # e.g. the source is not a SQLite database
                raise StoreError(f"cannot back up {source}: {' '.join(str(exc).split())[:200]}") from None
            finally:
                dst.close()
        finally:
            src.close()
        report = _verify_file(tmp)
    return BackupResult(target, None, report)


def _verify_file(path: Path) -> chain.ChainReport:
    """Verify the chain of a backup file read-only: the store's own engine would switch the
    file back to WAL (no longer self-contained)."""
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True), poolclass=NullPool)
    try:
        return chain.verify(engine)
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- PostgreSQL roles


def app_role_statements(role: str, table_names: list[str], password: str | None = None) -> list[str]:
    """The SQL that (re)creates the application role and its grants on the store's tables."""
    if not _ROLE_NAME.match(role):
        raise StoreError(f"role name {role!r} is not a plain lower-case identifier; use e.g. {DEFAULT_APP_ROLE}")
    stmts = [
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN "
        f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT; END IF; END $$",
        f"ALTER ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOBYPASSRLS",
    ]
    if password is not None:
        quoted = password.replace("'", "''")
        stmts.append(f"ALTER ROLE {role} PASSWORD '{quoted}'")
    stmts += [
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
        # Tables a later migration creates (run by the same owner) start with the same rights.
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT ON TABLES TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {role}",
    ]
    for table in sorted(table_names):
        if table == "alembic_version":
            stmts.append(f"GRANT SELECT ON alembic_version TO {role}")
            continue
        stmts.append(f"GRANT SELECT, INSERT ON {table} TO {role}")
        columns = APP_UPDATABLE_COLUMNS.get(table)
        if columns:
            stmts.append(f"GRANT UPDATE ({', '.join(columns)}) ON {table} TO {role}")
    return stmts


def create_app_role(url: str | None = None, role: str = DEFAULT_APP_ROLE, password: str | None = None) -> str:
    """Create (or refresh) the application role on the PostgreSQL store at ``url``.

    Run as the database owner after the migrations.  The role may SELECT and INSERT on every
    store table, UPDATE only the columns in :data:`APP_UPDATABLE_COLUMNS`, and never DELETE,
    TRUNCATE, ALTER or DROP (so it cannot lift the append-only triggers either).

    Returns
    -------
    str
        The database URL for the application, with the role as user (no password).
    """
    resolved = config.db_url(url)
    parsed = parse_url(resolved)
    if parsed.get_backend_name() != "postgresql":
        raise StoreError("database roles exist only on PostgreSQL; protect a SQLite file with file permissions")
    engine = _engine_at_head(resolved)
    try:
        from sqlalchemy import inspect

        tables = inspect(engine).get_table_names()
        with engine.begin() as conn:
            for stmt in app_role_statements(role, tables, password):
                conn.exec_driver_sql(stmt)
    finally:
        engine.dispose()
    return parsed.set(username=role, password=None).render_as_string(hide_password=True)


__all__ = [
    "APPEND_ONLY_TABLES",
    "APP_UPDATABLE_COLUMNS",
    "BackupResult",
    "DEFAULT_APP_ROLE",
    "NO_DELETE_TABLES",
    "app_role_statements",
    "backup",
    "check_audit_at_start",
    "create_app_role",
    "pg_dump_command",
    "require_existing",
    "verify_audit",
]
