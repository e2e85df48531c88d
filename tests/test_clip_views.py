"""A clip's view and notices are kept with it: the worklist and a clip opened later (or
pre-annotated in a batch) show what the reviewer was told when its models ran."""

from __future__ import annotations

import pytest
from store_fixtures import lvidd_proposals

from echomeasure import config, pipeline
from echomeasure.errors import StoreError
from echomeasure.store import clip_views, open_store
from echomeasure.store.chain import verify
from echomeasure.ui.controller import ReviewController

NOT_PLAX = ("this clip looks like apical four-chamber (a4c, confidence 0.94), not a parasternal long-axis "
            "view: no PLAX calipers are proposed; measurements can still be added by hand")


@pytest.fixture()
def not_plax(monkeypatch):
    """What the proposer returns for an apical clip without apical-seg: no calipers, a notice."""
    proposed = lvidd_proposals()
    proposed.measurements = []
    proposed.view = {"name": "a4c", "confidence": 0.94}
    proposed.notices = [NOT_PLAX]
    monkeypatch.setattr(pipeline, "_propose", lambda dclip, only, report: proposed)
    return proposed


def test_the_view_and_notices_are_kept_and_shown_when_the_clip_is_opened_later(store, dicom_file, not_plax):
    result = pipeline.ingest_path(dicom_file, store, secret=config.secret())
    assert result.warnings == (NOT_PLAX,)
    kept = clip_views.latest_views(store)[result.clip.id]
    assert (kept.view, kept.confidence, kept.notices) == ("a4c", 0.94, (NOT_PLAX,))
    ctrl = ReviewController(store)
    # opened from the worklist (no warnings passed): the header still says why there are no calipers
    header = ctrl.open_clip(result.clip.id, "Dr A").header
    assert header.count("not a parasternal long-axis view") == 1
    # opened right after the upload (warnings passed too): said once
    assert ctrl.open_clip(result.clip.id, "Dr A", [NOT_PLAX]).header.count("not a parasternal") == 1
    from echomeasure.export import export_json

    (exported,) = export_json(store)["clips"]
    assert exported["view"] == {"name": "a4c", "confidence": 0.94, "notices": [NOT_PLAX]}
    (row,) = [r for r in ctrl.worklist("all") if r[0] == result.clip.id]
    assert row[3].startswith("A4C ·")  # was "2D ·": the store kept no view
    # the next ingest of the same file adds nothing, and the audit chain covers the row
    pipeline.ingest_path(dicom_file, store, secret=config.secret())
    assert len(store._read(lambda s: s.query(clip_views.db.ClipView).all())) == 1
    report = verify(store.engine)
    assert report.ok and report.covered["clip_view"] == 1


def test_a_changed_view_row_breaks_the_audit_chain(store_url, tmp_path, dicom_file, monkeypatch, not_plax):
    s = open_store(store_url, images_dir=tmp_path / "images")
    try:
        clip_id = pipeline.ingest_path(dicom_file, s, secret=config.secret()).clip.id
        with pytest.raises(Exception, match="append-only"), s.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE clip_view SET notices = '[]'")
        with s.engine.begin() as conn:  # behind the application's back
            if s.engine.dialect.name == "sqlite":
                conn.exec_driver_sql("DROP TRIGGER clip_view_no_update")
            else:
                conn.exec_driver_sql("ALTER TABLE clip_view DISABLE TRIGGER clip_view_append_only")
            conn.exec_driver_sql("UPDATE clip_view SET view = 'plax'")
        report = verify(s.engine)
        assert not report.ok and "clip_view" in report.reason
        assert clip_id
    finally:
        s.close()


def test_a_bad_view_is_refused_and_long_notices_are_bounded(store, dicom_file, not_plax):
    clip_id = pipeline.ingest_path(dicom_file, store, secret=config.secret()).clip.id
    with pytest.raises(StoreError, match="needs a name"):
        store._write(lambda s: clip_views.view_in(s, clip_id, "  ", None, [], "system"))
    with pytest.raises(StoreError, match="finite"):
        store._write(lambda s: clip_views.view_in(s, clip_id, "plax", float("nan"), [], "system"))
    kept = store._write(lambda s: clip_views.view_in(s, clip_id, "other", 0.5, ["x" * 10_000] * 50, "system"))
    assert len(kept.notices) == clip_views.MAX_NOTICES and {len(n) for n in kept.notices} == {clip_views.MAX_NOTICE_CHARS}
    assert clip_views.latest_views(store)[clip_id].view == "other"  # the latest row counts
