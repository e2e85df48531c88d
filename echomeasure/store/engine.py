"""Database engines and migrations for the review store.

SQLite (the default, ``db/echomeasure.sqlite``) is opened with WAL journalling, foreign keys on,
a busy timeout, and ``BEGIN IMMEDIATE`` for write transactions so two writers queue on the lock
instead of failing half-way.  Any other SQLAlchemy URL (``postgresql+psycopg://...``) is used as
given.  The schema is created and upgraded only by the Alembic migrations in ``db/migrations``,
which run from any working directory.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from echomeasure import config
from echomeasure.config import MIGRATIONS_DIR
from echomeasure.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE_OPTION = "echomeasure_write"


def parse_url(url: str) -> URL:
    """Parse a SQLAlchemy URL; a malformed one raises :class:`StoreError`."""
    try:
        return make_url(url)
    except (ArgumentError, ValueError) as exc:
        # Not echoed back: a URL that does not parse may still hold a password.
        raise StoreError(
            f"bad database URL ({exc}); use e.g. sqlite:///path/to/file.sqlite "
            "or postgresql+psycopg://user@host/dbname"
        ) from None


def _redact(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for messages: never show a raw URL that may hold a password
        return "<unparseable URL>"


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL (None for in-memory or non-SQLite URLs)."""
    if url.get_backend_name() != "sqlite":
        return None
    return config.sqlite_database_file(url.database)


def create_store_engine(url: str) -> Engine:
    """An engine for ``url`` configured for concurrent reviewers.

    Raises
    ------
    StoreError
        The URL is malformed, names an unknown driver, or the SQLite folder cannot be created.
    """
    parsed = parse_url(url)
    backend = parsed.get_backend_name()
    try:
        engine = _create_sqlite_engine(parsed) if backend == "sqlite" else create_engine(parsed, pool_pre_ping=True)
    except NoSuchModuleError:
        raise StoreError(
            f"unknown database driver in {_redact(url)!r}; use sqlite:///FILE or postgresql+psycopg://..."
        ) from None
    except (ArgumentError, ImportError) as exc:
        raise StoreError(f"cannot use database URL {_redact(url)!r}: {exc}") from None
    return engine


def _create_sqlite_engine(url: URL) -> Engine:
    path = sqlite_path(url)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the database folder {path.parent}: {exc.strerror}") from None
        engine = create_engine(
            url.set(database=str(path)),
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
    else:
        # One shared connection, so every session sees the same in-memory database.
        engine = create_engine(
            url, connect_args={"check_same_thread": False}, poolclass=StaticPool
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        # Let SQLAlchemy, not the driver, decide where transactions begin (see "begin" below).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            if path is not None:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        # A deferred transaction that reads and then writes can fail with "database is locked"
        # without waiting; taking the write lock up front makes concurrent writers queue.
        if conn.get_execution_options().get(WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


# --------------------------------------------------------------------------- migrations


def alembic_config(engine: Engine | None) -> Config:
    """An Alembic ``Config`` for ``engine`` (None: for reading the migrations only) that works
    from any working directory."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema up to ``revision`` (default: the latest migration)."""
    from alembic import command

    try:
        command.upgrade(alembic_config(engine), revision)
    except OperationalError as exc:
        raise StoreError(f"cannot open the database {engine.url!r}: {_first_line(exc)}") from None


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Take the database schema down to ``revision`` (default: empty).  Destroys data."""
    from alembic import command

    command.downgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The latest migration shipped with this version of echomeasure."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(None)).get_current_head()
    assert head is not None
    return head


def table_names(engine: Engine) -> set[str]:
    """Tables present in the database (for checks and tests)."""
    return set(inspect(engine).get_table_names())


def _first_line(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return " ".join(str(orig if orig is not None else exc).split())[:300]
