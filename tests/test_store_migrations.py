"""Migrations of the review store: up and down on a fresh database, SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from echomeasure.errors import StoreError
from echomeasure.store import open_store
from echomeasure.store.engine import create_store_engine, current_revision, downgrade, head_revision, table_names, upgrade
from echomeasure.store.schema import Base

STORE_TABLES = {"study", "clip", "frame_image", "model_version", "proposal", "review", "audit_event"}


def test_migrations_upgrade_and_downgrade_a_fresh_database(store_url):
    engine = create_store_engine(store_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert table_names(engine) >= STORE_TABLES
        downgrade(engine, "base")
        assert current_revision(engine) is None
        assert not (STORE_TABLES & table_names(engine))
        upgrade(engine)  # and up again: the downgrade left nothing behind that blocks it
        assert table_names(engine) >= STORE_TABLES
    finally:
        engine.dispose()


def test_models_match_the_latest_migration(store_url):
    store = open_store(store_url)
    try:
        with store.engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diffs == []
    finally:
        store.close()


def test_review_and_audit_tables_are_append_only_in_the_database(store_url):
    store = open_store(store_url)
    try:
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO audit_event (actor, action, entity_type, created_at) "
                    "VALUES ('t', 'test', 'none', CURRENT_TIMESTAMP)"
                )
            )
        for statement in ("UPDATE audit_event SET actor = 'x'", "DELETE FROM audit_event"):
            with pytest.raises(Exception, match="append-only"), store.engine.begin() as conn:
                conn.execute(text(statement))
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT actor FROM audit_event")).scalars().all() == ["t"]
    finally:
        store.close()


def test_sqlite_store_uses_wal_foreign_keys_and_busy_timeout(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'x.sqlite'}")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    finally:
        store.close()


def test_migrations_run_from_any_working_directory(tmp_path):
    db = tmp_path / "elsewhere.sqlite"
    code = "from echomeasure.store import open_store; open_store(); print('ok')"
    env = {**os.environ, "ECHOMEASURE_DB": f"sqlite:///{db}"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    engine = create_store_engine(f"sqlite:///{db}")
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_alembic_command_line_config_upgrades_a_database(tmp_path):
    db = tmp_path / "cli.sqlite"
    alembic = Path(sys.executable).with_name("alembic")
    if not alembic.exists():
        pytest.skip("alembic console script not installed beside this python")
    ini = Path(__file__).resolve().parent.parent / "db" / "alembic.ini"
    env = {**os.environ, "ECHOMEASURE_DB": f"sqlite:///{db}"}
    out = subprocess.run(
        [str(alembic), "-c", str(ini), "upgrade", "head"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    engine = create_store_engine(f"sqlite:///{db}")
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_two_processes_opening_a_fresh_database_both_succeed(tmp_path):
    db = tmp_path / "race.sqlite"
    code = "from echomeasure.store import open_store; s = open_store(); print(len(s.worklist()))"
    env = {**os.environ, "ECHOMEASURE_DB": f"sqlite:///{db}"}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    assert all(rc == 0 for _, _, rc in results), [err for _, err, _ in results]


@pytest.mark.parametrize(
    "url",
    ["not a url", "nosuchdriver://host/db", "postgresql+psycopg://nobody@127.0.0.1:1/none"],
)
def test_bad_database_url_is_a_one_line_store_error(url):
    with pytest.raises(StoreError) as info:
        open_store(url)
    assert "\n" not in str(info.value)


def test_bad_url_message_never_shows_the_password():
    with pytest.raises(StoreError) as info:
        open_store("postgresql+psycopg://user:s3cretpw@127.0.0.1:1/db")
    assert "s3cretpw" not in str(info.value)


def test_database_from_a_newer_version_is_refused_with_a_clear_message(tmp_path):
    url = f"sqlite:///{tmp_path / 'newer.sqlite'}"
    open_store(url).close()
    engine = create_store_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    with pytest.raises(StoreError, match="newer"):
        open_store(url)
