"""Alembic environment of the echomeasure review store.

Run programmatically by :func:`echomeasure.store.engine.upgrade` with the engine in
``config.attributes["engine"]``; ``alembic -c db/alembic.ini`` also works and reads the URL from
``ECHOMEASURE_DB`` (default: the project's SQLite file), from any working directory.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from echomeasure.store.engine import WRITE_OPTION, create_store_engine
from echomeasure.store.schema import Base

config = context.config
target_metadata = Base.metadata


def _engine():
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine
    from echomeasure.config import db_url

    return create_store_engine(config.get_main_option("sqlalchemy.url") or db_url())


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of running it (``alembic upgrade head --sql``)."""
    from echomeasure.config import db_url

    context.configure(
        url=config.get_main_option("sqlalchemy.url") or db_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations in one transaction that holds the database's write lock.

    Two processes opening a fresh database at once must not both create the tables: SQLite
    serialises them with ``BEGIN IMMEDIATE`` (DDL is transactional there), PostgreSQL with a
    transaction-scoped advisory lock.
    """
    engine = _engine()
    with engine.connect() as connection:
        connection = connection.execution_options(**{WRITE_OPTION: True})
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            transaction_per_migration=False,
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(7243011)"))
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
