"""Append-only that holds, the audit hash chain, least privilege, reviewer names and backups.

Every check runs on SQLite and on the real PostgreSQL server of ``postgres_fixture``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from store_fixtures import lvidd_proposals

from echomeasure.errors import StoreError
from echomeasure.propose.types import ModelInfo
from echomeasure.store import open_store
from echomeasure.store.admin import backup, create_app_role, verify_audit
from echomeasure.store.chain import verify
from echomeasure.store.engine import create_store_engine, downgrade, upgrade
from echomeasure.store.reviewer import MAX_REVIEWER_CHARS, resolve_reviewer, validate_reviewer
from echomeasure.store.schema import APPEND_ONLY_TABLES

ROOT = Path(__file__).resolve().parent.parent


def _fill(s, dclip):
    """A clip with frames, proposals, a model version and two reviews."""
    rec = s.add_clip(dclip)
    s.save_frames(rec.id, {0: dclip.clip.frames[0], 1: dclip.clip.frames[1]})
    s.add_proposals(rec.id, lvidd_proposals())
    s.add_review(rec.id, "lvidd", "accepted", "Reader A", seconds_spent=2.0)
    s.add_review(rec.id, "ivsd", "corrected", "Reader B", points=[(-0.0, 11), (20, 16.5)], value=-0.0)
    # Numbers PostgreSQL's JSONB would give back differently from how Python writes them.
    s.register_model_version(ModelInfo("plax-linear", "x", "e" * 64), metrics={"big": 1e16, "neg": -0.0, "whole": 20.0})
    return rec


@pytest.fixture
def owner_store(store_url, tmp_path, deidentified_clip):  # noqa: F811
    """A filled store opened as the database owner (SQLite file, or PostgreSQL owner)."""
    s = open_store(store_url, images_dir=tmp_path / "images")
    _fill(s, deidentified_clip)
    yield s
    s.close()


def _dialect(s) -> str:
    return s.engine.dialect.name


def _run_sql(s, sql: str) -> None:
    with s.engine.begin() as conn:
        conn.exec_driver_sql(sql)


def _refused(s, sql: str, match: str = "append-only") -> None:
    with pytest.raises(Exception, match=match):
        _run_sql(s, sql)


def _count(s, table: str) -> int:
    with s.engine.connect() as conn:
        return conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()


# ----------------------------------------------------------------------------- append-only


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
def test_update_and_delete_are_refused_on_every_insert_only_table(owner_store, table):
    s = owner_store
    before = _count(s, table)
    assert before > 0
    _refused(s, f"UPDATE {table} SET id = id")
    _refused(s, f"DELETE FROM {table}")
    if _dialect(s) == "postgresql":
        _refused(s, f"TRUNCATE {table} CASCADE")
    assert _count(s, table) == before


@pytest.mark.parametrize("table", ["review", "audit_event", "proposal", "clip", "study", "frame_image", "audit_chain"])
def test_replace_and_upsert_cannot_rewrite_a_row(owner_store, table):
    s = owner_store
    with s.engine.connect() as conn:
        row = dict(conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY id LIMIT 1").mappings().one())
    cols = ", ".join(row)
    # The same row again (every unique key collides), carried as literals through a SELECT.
    select_same = f"SELECT {cols} FROM {table} WHERE id = {row['id']}"
    if _dialect(s) == "sqlite":
        _refused(s, f"INSERT OR REPLACE INTO {table} ({cols}) {select_same}")
        _refused(s, f"REPLACE INTO {table} ({cols}) {select_same}")
        _refused(s, f"INSERT INTO {table} ({cols}) {select_same} ON CONFLICT(id) DO UPDATE SET created_at = excluded.created_at")
    else:
        _refused(s, f"INSERT INTO {table} ({cols}) {select_same} ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at")
    with s.engine.connect() as conn:
        again = dict(conn.exec_driver_sql(f"SELECT * FROM {table} WHERE id = {row['id']}").mappings().one())
    assert again == row
    assert verify(s.engine).ok


def test_sqlite_replace_of_the_first_review_from_the_issue_is_refused(tmp_path, deidentified_clip):  # noqa: F811
    s = open_store(f"sqlite:///{tmp_path / 'x.sqlite'}", images_dir=tmp_path / "images")
    _fill(s, deidentified_clip)
    _refused(
        s,
        "REPLACE INTO review (id, clip_id, measurement, action, reviewer, created_at) "
        "VALUES (1, 1, 'lvidd', 'rejected', 'mallory', '2020-01-01 00:00:00')",
    )
    assert [r.reviewer for r in s.reviews()] == ["Reader A", "Reader B"]
    s.close()


def test_model_version_keeps_its_rows_but_may_change_its_active_flag(owner_store):
    s = owner_store
    mv = s.model_versions()[0]
    _refused(s, "DELETE FROM model_version")
    s.set_active_model_version(mv.id)
    assert s.active_model_version(mv.name).id == mv.id
    assert verify(s.engine).ok


# ----------------------------------------------------------------------------- hash chain


def test_every_event_is_chained_and_reviews_are_covered(store, deidentified_clip):  # noqa: F811
    _fill(store, deidentified_clip)
    events = store.audit_events()
    assert events[0].prev_sha256 == verify(store.engine).genesis_sha256
    for a, b in zip(events, events[1:], strict=False):
        assert b.prev_sha256 == a.sha256
    review_events = [e for e in events if e.entity_type == "review"]
    assert len(review_events) == 2 and all(e.content_sha256 for e in review_events)
    report = verify(store.engine)
    assert report.ok and report.n_events == len(events) and report.head_sha256 == events[-1].sha256
    assert report.covered == {"review": 2, "clip": 1, "proposal": 3,
                              "contour_proposal": 0, "contour_review": 0, "volume_proposal": 0, "clip_view": 0}


def test_two_databases_have_different_genesis(tmp_path):
    a = open_store(f"sqlite:///{tmp_path / 'a.sqlite'}")
    b = open_store(f"sqlite:///{tmp_path / 'b.sqlite'}")
    assert verify(a.engine).genesis_sha256 != verify(b.engine).genesis_sha256
    a.close(), b.close()


def _lift_protection(s, table: str) -> None:
    """What an attacker with the owner's rights does first: drop or disable the trigger."""
    if _dialect(s) == "sqlite":
        _run_sql(s, f"DROP TRIGGER {table}_no_update")
        _run_sql(s, f"DROP TRIGGER {table}_no_delete")
    else:
        _run_sql(s, f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")


def _first_id(s, sql: str) -> int:
    with s.engine.connect() as conn:
        return conn.exec_driver_sql(sql).scalar()


@pytest.mark.parametrize(
    ("table", "statement", "reason"),
    [
        ("review", "UPDATE review SET value = 9.99 WHERE id = 1", "review 1 recorded by event .* was changed"),
        ("review", "UPDATE review SET reviewer = 'Dr. Bob' WHERE id = 2", "review 2 recorded by event .* was changed"),
        ("review", "DELETE FROM review WHERE id = 2", "review 2 recorded by event .* is missing"),
        ("proposal", "UPDATE proposal SET confidence = 0.99 WHERE id = 2", "proposal .* was changed"),
        ("audit_event", "UPDATE audit_event SET actor = 'mallory' WHERE id = 3", "event 3 was changed"),
        ("audit_event", "DELETE FROM audit_event WHERE id = 3", "event 4 does not link"),
    ],
)
def test_edits_behind_the_apps_back_are_detected(owner_store, table, statement, reason):
    s = owner_store
    assert verify(s.engine).ok
    _lift_protection(s, table)
    _run_sql(s, statement)
    report = verify(s.engine)
    assert not report.ok
    assert report.reason is not None
    import re

    assert re.search(reason, report.reason), report.reason


def test_a_review_inserted_without_audit_event_is_detected(owner_store):
    s = owner_store
    _run_sql(
        s,
        "INSERT INTO review (clip_id, measurement, action, reviewer, created_at) "
        "VALUES (1, 'lvids', 'rejected', 'mallory', CURRENT_TIMESTAMP)",
    )
    report = verify(s.engine)
    assert not report.ok and "has no audit event" in report.reason


def test_cli_audit_verify_reports_the_first_broken_link_on_a_sqlite_file(tmp_path, deidentified_clip):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    s = open_store(url, images_dir=tmp_path / "images")
    _fill(s, deidentified_clip)
    s.close()
    cmd = [sys.executable, "-m", "echomeasure.cli", "audit", "verify", "--db", url]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert '"ok":true' in ok.stdout

    # Behind the app's back, with the sqlite3 module: drop the trigger, edit a review.
    import sqlite3

    conn = sqlite3.connect(tmp_path / "x.sqlite")
    conn.execute("DROP TRIGGER review_no_update")
    conn.execute("UPDATE review SET value = 4.2 WHERE id = 1")
    conn.commit()
    conn.close()
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: audit chain broken at event ") and "review 1" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_cli_audit_verify_of_a_missing_database_is_a_user_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "echomeasure.cli", "audit", "verify", "--db", f"sqlite:///{tmp_path / 'none.sqlite'}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error: no review database")
    assert not (tmp_path / "none.sqlite").exists()


def test_upgrading_a_0001_database_chains_its_existing_events(store_url, tmp_path, deidentified_clip):  # noqa: F811
    s = open_store(store_url, images_dir=tmp_path / "images")
    _fill(s, deidentified_clip)
    n_events = len(s.audit_events())
    s.close()
    engine = create_store_engine(store_url)
    try:
        downgrade(engine, "0001")  # the chain columns go; the 0001 triggers stay
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM audit_event").scalar() == n_events
        upgrade(engine)
        report = verify(engine)
        assert report.ok and report.n_events == n_events and report.covered["review"] == 2
    finally:
        engine.dispose()
    s = open_store(store_url, images_dir=tmp_path / "images")
    s.add_review(1, "lvids", "rejected", "Reader C")
    assert verify(s.engine).ok
    s.close()


# ----------------------------------------------------------------------------- least privilege


@pytest.mark.postgres
def test_postgres_app_role_may_insert_and_select_but_never_update_or_delete(postgres_url, tmp_path, deidentified_clip):  # noqa: F811
    owner = open_store(postgres_url, images_dir=tmp_path / "images")
    owner.close()
    proc = subprocess.run(
        [sys.executable, "-m", "echomeasure.cli", "db", "init", "--roles", "--db", postgres_url],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    app_url = make_url(postgres_url).set(username="echomeasure_app").render_as_string(hide_password=False)
    assert '"app_url":' in proc.stdout and "echomeasure_app@" in proc.stdout

    s = open_store(app_url, images_dir=tmp_path / "images")
    try:
        rec = _fill(s, deidentified_clip)
        assert len(s.reviews(rec.id)) == 2
        mv = s.model_versions()[0]
        s.set_active_model_version(mv.id)  # the one column set the app may change
        for table in APPEND_ONLY_TABLES:
            _refused(s, f"UPDATE {table} SET id = id", match="permission denied")
            _refused(s, f"DELETE FROM {table}", match="permission denied")
            _refused(s, f"TRUNCATE {table}", match="permission denied")
        _refused(s, "UPDATE model_version SET name = 'x'", match="permission denied")
        _refused(s, "DELETE FROM model_version", match="permission denied")
        _refused(s, "ALTER TABLE review DISABLE TRIGGER review_append_only", match="must be owner")
        _refused(s, "DROP TRIGGER review_append_only ON review", match="must be owner")
        assert verify(s.engine).ok
    finally:
        s.close()


@pytest.mark.postgres
def test_the_app_role_cannot_migrate_and_says_who_can(postgres_app_url, postgres_url):
    engine = create_store_engine(postgres_url)
    try:
        downgrade(engine, "0002_append_only_chain")  # as if echomeasure was upgraded since
    finally:
        engine.dispose()
    with pytest.raises(StoreError, match="upgrade it as the owner"):
        open_store(postgres_app_url)
    open_store(postgres_url).close()  # the owner can
    app = open_store(postgres_app_url)
    try:
        # Tables the owner's upgrade re-created are readable by the app role (default privileges),
        # and still not writable beyond INSERT.
        from sqlalchemy import inspect

        for table in inspect(app.engine).get_table_names():
            assert _count(app, table) >= 0
        _refused(app, "DELETE FROM review", match="permission denied")
    finally:
        app.close()


def test_db_init_roles_on_sqlite_is_a_user_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "echomeasure.cli", "db", "init", "--roles", "--db", f"sqlite:///{tmp_path / 'x.sqlite'}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error: database roles exist only on PostgreSQL")


@pytest.mark.postgres
def test_app_role_name_must_be_a_plain_identifier(postgres_url):
    open_store(postgres_url).close()
    with pytest.raises(StoreError, match="identifier"):
        create_app_role(postgres_url, role="x; DROP TABLE review")


# ----------------------------------------------------------------------------- reviewer names


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "reviewer's name"),
        ("   \t ", "reviewer's name"),
        ("x" * (MAX_REVIEWER_CHARS + 1), "at most 100"),
        ("Dr. A\x00B", "control characters"),
        ("Dr. A\nforged line", "control characters"),
        ("Dr. \u202eA", "control characters"),
        (42, "text"),
    ],
)
def test_invalid_reviewer_names_are_refused_by_the_store(store, deidentified_clip, name, message):  # noqa: F811
    rec = store.add_clip(deidentified_clip)
    store.add_proposals(rec.id, lvidd_proposals())
    with pytest.raises(StoreError, match=message) as info:
        store.add_review(rec.id, "lvidd", "accepted", name)
    assert "\x00" not in str(info.value) and "xxxxxxxxxx" not in str(info.value)
    assert store.reviews() == []


def test_reviewer_names_are_trimmed_and_100_characters_are_fine(store, deidentified_clip):  # noqa: F811
    rec = store.add_clip(deidentified_clip)
    store.add_proposals(rec.id, lvidd_proposals())
    long_name = "É" * MAX_REVIEWER_CHARS
    assert store.add_review(rec.id, "lvidd", "accepted", f"  {long_name}  ").reviewer == long_name
    r = store.add_review(rec.id, "ivsd", "accepted", "alice", reviewer_display_name="Dr. Alice Smith")
    assert (r.reviewer, r.reviewer_display_name) == ("alice", "Dr. Alice Smith")
    assert store.reviews()[1].reviewer_display_name == "Dr. Alice Smith"
    assert verify(store.engine).ok


def test_a_logged_in_user_is_the_reviewer_whatever_was_typed():
    assert resolve_reviewer("Dr. Bob (not alice)", "alice") == ("alice", "Dr. Bob (not alice)")
    assert resolve_reviewer("", "alice") == ("alice", None)
    assert resolve_reviewer(" alice ", "alice") == ("alice", None)
    assert resolve_reviewer("  Reader One ", None) == ("Reader One", None)
    with pytest.raises(StoreError):
        resolve_reviewer("bad\x07name", "alice")
    with pytest.raises(StoreError):
        resolve_reviewer("", None)
    assert validate_reviewer(" a ") == "a"


# ----------------------------------------------------------------------------- backup


def test_sqlite_backup_restores_with_an_intact_chain(tmp_path, deidentified_clip):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'live.sqlite'}"
    s = open_store(url, images_dir=tmp_path / "images")
    _fill(s, deidentified_clip)
    out = tmp_path / "backups" / "copy.sqlite"
    out.parent.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "echomeasure.cli", "db", "backup", str(out), "--db", url],
        capture_output=True, text=True, timeout=120,
    )  # while the store is open (WAL with uncheckpointed pages): the online backup copies them
    assert proc.returncode == 0, proc.stderr
    assert '"ok":true' in proc.stdout
    assert [p.name for p in out.parent.iterdir()] == ["copy.sqlite"]  # no temporary file left
    expected = [(r.measurement, r.action, r.reviewer, r.value) for r in s.reviews()]
    s.close()

    restored = tmp_path / "restored" / "echomeasure.sqlite"
    restored.parent.mkdir()
    shutil.copyfile(out, restored)
    r = open_store(f"sqlite:///{restored}", images_dir=tmp_path / "images")
    try:
        assert [(x.measurement, x.action, x.reviewer, x.value) for x in r.reviews()] == expected
        assert verify(r.engine).ok
        r.add_review(1, "lvids", "rejected", "Reader C")  # the restored store goes on
        assert verify_audit(f"sqlite:///{restored}").ok is True
    finally:
        r.close()


def test_backup_refuses_a_folder_a_link_and_the_database_itself(tmp_path):
    url = f"sqlite:///{tmp_path / 'live.sqlite'}"
    open_store(url).close()
    (tmp_path / "folder").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    for out, message in (("folder", "not a regular file"), ("link", "not a regular file"), ("live.sqlite", "database itself")):
        with pytest.raises(StoreError, match=message):
            backup(url, tmp_path / out)
    assert not (tmp_path / "elsewhere").exists()
    existing = tmp_path / "old.sqlite"
    existing.write_bytes(b"old backup")
    assert backup(url, existing).report.ok  # a regular file is replaced atomically
    assert existing.read_bytes().startswith(b"SQLite format 3")


@pytest.mark.postgres
def test_postgres_backup_prints_a_pg_dump_command_that_restores_with_an_intact_chain(
    postgres_server, postgres_url, tmp_path, deidentified_clip  # noqa: F811
):
    s = open_store(postgres_url, images_dir=tmp_path / "images")
    _fill(s, deidentified_clip)
    s.close()
    dump = tmp_path / "store.dump"
    result = backup(postgres_url, dump)
    assert result.output is None and not dump.exists()
    cmd = result.pg_dump_command
    assert cmd.startswith("pg_dump ") and str(dump) in cmd
    bindir = str(postgres_server.bindir)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    subprocess.run(cmd, shell=True, check=True, env=env, timeout=120, capture_output=True)
    target = postgres_server.create_database()
    subprocess.run(
        [f"{bindir}/pg_restore", "--no-owner", "--host=127.0.0.1", f"--port={postgres_server.port}",
         "--username=postgres", f"--dbname={target}", str(dump)],
        check=True, timeout=120, capture_output=True,
    )
    report = verify_audit(postgres_server.url(target))
    assert report.ok and report.covered["review"] == 2
    with create_store_engine(postgres_server.url(target)).begin() as conn, pytest.raises(Exception, match="append-only"):
        conn.execute(text("UPDATE review SET value = 1"))


@pytest.mark.parametrize("command", [["export"], ["ingest", "--no-propose", "{example}"], ["db", "backup", "{out}"]])
def test_a_db_file_that_is_not_a_database_is_one_error_line(tmp_path, capsys, command):
    """A new-user trial: --db pointing at a garbage file gave 110-line SQLAlchemy tracebacks (exit 1)."""
    from echomeasure.cli import main

    bad = tmp_path / "notes.sqlite"
    bad.write_text("garbage\n")
    example = Path(__file__).resolve().parent.parent / "examples" / "case_0002.dcm"
    args = [a.format(example=example, out=tmp_path / "copy.sqlite") for a in command]
    assert main([*args, "--db", f"sqlite:///{bad}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "not a database" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.sqlite"]  # nothing written beside it
    assert bad.read_text() == "garbage\n"
