"""Attacks on the review store's guarantees, on SQLite and on the real PostgreSQL server.

Found by trying to rewrite history through the database and the ``db backup`` command.
"""

from __future__ import annotations

import re
import sqlite3

import pytest
from store_fixtures import lvidd_proposals

from echomeasure.propose.types import ModelInfo
from echomeasure.store import open_store
from echomeasure.store.admin import backup
from echomeasure.store.chain import verify

#: The bytes of a SQLite header that say rollback journal (1) or WAL (2).
_SQLITE_WRITE_READ_VERSION = slice(18, 20)


@pytest.fixture
def filled(store_url, tmp_path, deidentified_clip):  # noqa: F811
    """A store, as its owner, with a clip, proposals by one model version and a review."""
    s = open_store(store_url, images_dir=tmp_path / "images")
    rec = s.add_clip(deidentified_clip)
    s.add_proposals(rec.id, lvidd_proposals())
    s.add_review(rec.id, "lvidd", "accepted", "Reader A")
    yield s
    s.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE model_version SET version = '9.9'",
        "UPDATE model_version SET sha256 = '{zeros}'",
        "UPDATE model_version SET name = 'another-model'",
    ],
)
def test_a_model_version_relabelled_behind_the_apps_back_breaks_the_chain(filled, statement):
    # Relabelling a version would export every proposal it made as made by other weights.  The
    # database refuses it (migration 0006); with that trigger dropped, verify still notices.
    s = filled
    assert verify(s.engine).ok
    with pytest.raises(Exception, match="immutable"), s.engine.begin() as conn:
        conn.exec_driver_sql(statement.format(zeros="0" * 64))
    assert verify(s.engine).ok
    with s.engine.begin() as conn:
        if s.engine.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER model_version_identity_immutable")
        else:
            conn.exec_driver_sql("ALTER TABLE model_version DISABLE TRIGGER model_version_identity_immutable")
        conn.exec_driver_sql(statement.format(zeros="0" * 64))
    report = verify(s.engine)
    assert not report.ok
    assert re.search(r"model_version \d+ recorded by event \d+ was changed", report.reason or ""), report.reason


def test_allowed_model_version_changes_keep_the_chain_intact(filled):
    s = filled
    mv = s.model_versions()[0]
    s.register_model_version(ModelInfo(mv.name, mv.version, mv.sha256), metrics={"lvidd_mae_mm": 0.4}, activate=True)
    report = verify(s.engine)
    assert report.ok, report.reason


def test_a_sqlite_backup_is_self_contained(tmp_path, deidentified_clip):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'live.sqlite'}"
    s = open_store(url, images_dir=tmp_path / "images")
    rec = s.add_clip(deidentified_clip)
    s.add_review(rec.id, "lvidd", "added", "Reader A", frame=0, points=[(10, 10), (20, 20)], value=1.0, unit="cm")
    out = tmp_path / "backups" / "copy.sqlite"
    out.parent.mkdir()
    result = backup(url, out)
    s.close()
    assert result.report is not None and result.report.ok
    # A rollback-journal file (not WAL): the one file is the whole database.
    assert out.read_bytes()[_SQLITE_WRITE_READ_VERSION] == b"\x01\x01"
    conn = sqlite3.connect(f"{out.as_uri()}?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT reviewer FROM review").fetchall() == [("Reader A",)]
    finally:
        conn.close()
    assert sorted(p.name for p in out.parent.iterdir()) == ["copy.sqlite"]  # no -wal or -shm beside it


# ----------------------------------------------------------------------------- blinding and user scales


@pytest.fixture
def read_and_calibrated(store_url, tmp_path, deidentified_clip):  # noqa: F811
    """A clip read blinded by two readers (one read made) and a video with a user scale."""
    from test_ui_calibration import write_sector_video
    from ui_fixtures import TEST_SECRET

    from echomeasure.pipeline import ingest_path
    from echomeasure.store import readers
    from echomeasure.store.user_calibration import set_user_calibration

    s = open_store(store_url, images_dir=tmp_path / "images")
    rec = s.add_clip(deidentified_clip)
    s.add_proposals(rec.id, lvidd_proposals())
    readers.assign(s, rec.id, ["Reader A", "Reader B"], "blinded")
    readers.save_for(s, rec.id, "Reader A", "lvidd", "accepted")
    video = tmp_path / "loop.avi"
    write_sector_video(video, n_frames=4)
    video_id = ingest_path(video, s, secret=TEST_SECRET, run_models=False).clip.id
    set_user_calibration(s, video_id, [[20, 30], [220, 30]], 4.0, "Reader A")
    assert verify(s.engine).ok
    yield s
    s.close()


def _lift(s, table: str) -> None:
    """What someone with the owner's rights does first: drop or disable the table's protection."""
    with s.engine.begin() as conn:
        if s.engine.dialect.name == "sqlite":
            conn.exec_driver_sql(f"DROP TRIGGER {table}_no_update")
            conn.exec_driver_sql(f"DROP TRIGGER {table}_no_delete")
        else:
            conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")


@pytest.mark.parametrize(
    ("table", "statement", "reason"),
    [
        # unblinding: the reader now sees the model's proposals and the other reader's values
        ("reader_assignment", "UPDATE reader_assignment SET mode = 'open' WHERE reader = 'Reader B'",
         r"reader_assignment \d+ recorded by event \d+ was changed"),
        ("reader_assignment", "DELETE FROM reader_assignment WHERE reader = 'Reader B'",
         r"reader_assignment \d+ recorded by event \d+ is missing"),
        ("reader_read", "UPDATE reader_read SET mode = 'open'", r"reader_read \d+ recorded by event \d+ was changed"),
        # another scale: later values of the clip, and its exports, in other centimetres
        ("user_calibration", "UPDATE user_calibration SET cm_per_px = 0.04, length_cm = 8.0",
         r"user_calibration \d+ recorded by event \d+ was changed"),
    ],
)
def test_blinding_and_user_scales_changed_behind_the_apps_back_break_the_chain(read_and_calibrated, table,
                                                                               statement, reason):
    s = read_and_calibrated
    _lift(s, table)
    with s.engine.begin() as conn:
        conn.exec_driver_sql(statement)
    report = verify(s.engine)
    assert not report.ok
    assert re.search(reason, report.reason or ""), report.reason


def test_a_reader_assignment_slipped_in_without_its_audit_event_breaks_the_chain(read_and_calibrated):
    s = read_and_calibrated
    with s.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO reader_assignment (clip_id, reader, mode, assigned_by, created_at) "
            "VALUES (1, 'Mallory', 'open', 'system', CURRENT_TIMESTAMP)"
        )
    report = verify(s.engine)
    assert not report.ok and "reader_assignment" in (report.reason or "") and "no audit event" in report.reason
