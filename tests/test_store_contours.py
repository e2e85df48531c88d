"""Contours and volumes as reviewable, append-only, audited proposals (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from store_fixtures import MODEL_2D, lvidd_proposals

from echomeasure.errors import StoreError
from echomeasure.store import clip_views, open_store
from echomeasure.store.chain import verify
from echomeasure.store.contours import (
    add_contour_review,
    add_contours,
    add_volumes,
    contour_proposals,
    contour_reviews,
    current_contours,
    volumes,
)
from echomeasure.store.schema import CONTOUR_TABLES

LV_ED = {"frame": 1, "structure": "lv", "polygon": [[20.0, 10.0], [30.0, 12.0], [28.0, 30.0], [18.0, 28.0]],
         "area_cm2": 0.62, "confidence": 0.93}
LV_ES = {"frame": 3, "structure": "lv", "polygon": [[21.0, 12.0], [28.0, 13.0], [26.0, 26.0]],
         "area_cm2": 0.4, "confidence": 0.88}
MYO_ED = {"frame": 1, "structure": "myocardium", "polygon": [[15.0, 8.0], [35.0, 8.0], [33.0, 34.0], [14.0, 33.0]],
          "area_cm2": 0.9, "confidence": 0.8}
VOLS = [
    {"name": "lvedv", "value": 120.5, "unit": "ml", "frame": 1, "method": "single-plane A4C", "confidence": 0.9},
    {"name": "lvesv", "value": 50.25, "unit": "ml", "frame": 3, "method": "single-plane A4C", "confidence": 0.85},
    {"name": "lvef", "value": 58.3, "unit": "%", "frame": 3, "method": "single-plane A4C", "confidence": 0.85},
    {"name": "la_volume", "value": None, "unit": "px", "frame": 3, "method": "area-length A4C", "confidence": 0.0},
]


@pytest.fixture
def clip(store, deidentified_clip):
    rec = store.add_clip(deidentified_clip)
    store.add_proposals(rec.id, lvidd_proposals())
    return rec


def test_contours_are_stored_one_per_structure_per_frame_and_idempotent(store, clip):
    first = add_contours(store, clip.id, [LV_ED, LV_ES, MYO_ED], model=MODEL_2D)
    again = add_contours(store, clip.id, [LV_ED, LV_ES, MYO_ED], model=MODEL_2D)
    assert [c.id for c in first] == [c.id for c in again]
    stored = contour_proposals(store, clip.id)
    assert [(c.frame_index, c.structure) for c in stored] == [(1, "lv"), (3, "lv"), (1, "myocardium")]
    assert stored[0].polygon == tuple(tuple(p) for p in LV_ED["polygon"])
    assert stored[0].area_cm2 == pytest.approx(0.62)
    assert stored[0].model_version_id == store.model_versions(MODEL_2D.name)[0].id
    events = [e for e in store.audit_events(clip.id) if e.action == "contours.add"]
    assert len(events) == 1
    assert verify(store.engine).ok


def test_contour_reviews_accept_correct_reject_and_add(store, clip):
    lv_ed, lv_es, myo = add_contours(store, clip.id, [LV_ED, LV_ES, MYO_ED], model=MODEL_2D)
    add_contour_review(store, clip.id, "accepted", "Dr A", contour_proposal_id=lv_ed.id)
    moved = [[21.0, 11.0], [31.0, 12.0], [29.0, 31.0], [18.0, 29.0], [17.0, 20.0]]
    add_contour_review(store, clip.id, "corrected", "Dr A", contour_proposal_id=lv_es.id, polygon=moved)
    add_contour_review(store, clip.id, "rejected", "Dr A", contour_proposal_id=myo.id)
    add_contour_review(store, clip.id, "added", "Dr A", frame=1, structure="la",
                       polygon=[[20.0, 30.0], [30.0, 30.0], [25.0, 45.0]])
    states = {(st.frame_index, st.structure): st for st in current_contours(store, clip.id)}
    assert states[(1, "lv")].status == "accepted"
    assert states[(1, "lv")].polygon == lv_ed.polygon
    assert states[(3, "lv")].status == "corrected"
    assert states[(3, "lv")].polygon == tuple(tuple(p) for p in moved)
    assert states[(1, "myocardium")].status == "rejected" and states[(1, "myocardium")].polygon is None
    assert states[(1, "la")].status == "added" and states[(1, "la")].proposal is None
    assert len(contour_reviews(store, clip.id)) == 4
    assert verify(store.engine).ok


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"action": "accepted"}, "contour proposal it answers"),
        ({"action": "corrected", "contour_proposal_id": -1}, "not on clip"),
        ({"action": "added", "frame": 1, "structure": "lv"}, "frame, structure and polygon"),
        ({"action": "added", "frame": 99, "structure": "lv", "polygon": [[1, 1], [2, 2], [3, 1]]}, "outside clip"),
        ({"action": "added", "frame": 1, "structure": "LV!", "polygon": [[1, 1], [2, 2], [3, 1]]}, "structure"),
        ({"action": "added", "frame": 1, "structure": "lv", "polygon": [[1, 1], [2, 2]]}, "at least 3"),
        ({"action": "added", "frame": 1, "structure": "lv", "polygon": [[1, 1], [2, 2], [500, 1]]}, "outside the"),
        ({"action": "added", "frame": 1, "structure": "lv", "polygon": [[1, 1], [2, 2], ["x", 1]]}, "pixel pairs"),
        ({"action": "deleted"}, "unknown review action"),
    ],
)
def test_bad_contour_reviews_are_refused_and_nothing_is_written(store, clip, kwargs, match):
    add_contours(store, clip.id, [LV_ED], model=MODEL_2D)
    n_events = len(store.audit_events())
    with pytest.raises(StoreError, match=match):
        add_contour_review(store, clip.id, reviewer="Dr A", **kwargs)
    assert contour_reviews(store, clip.id) == []
    assert len(store.audit_events()) == n_events


def test_volumes_are_stored_with_their_method(store, clip):
    stored = add_volumes(store, clip.id, VOLS, model=MODEL_2D)
    assert add_volumes(store, clip.id, VOLS, model=MODEL_2D) == stored
    got = {v.measurement: v for v in volumes(store, clip.id)}
    assert got["lvedv"].value == pytest.approx(120.5) and got["lvedv"].unit == "ml"
    assert got["lvef"].method == "single-plane A4C" and got["lvef"].unit == "%"
    assert got["la_volume"].value is None and got["la_volume"].method == "area-length A4C"
    assert verify(store.engine).ok


@pytest.mark.parametrize(
    ("item", "match"),
    [
        ({"name": "lvmass", "value": 1.0, "method": "biplane"}, "unknown volume"),
        ({"name": "lvedv", "value": 1.0, "unit": "cm", "method": "biplane"}, "in ml"),
        ({"name": "lvedv", "value": 1.0, "unit": "ml"}, "needs its method"),
        ({"name": "lvedv", "value": float("nan"), "unit": "ml", "method": "biplane"}, "finite"),
    ],
)
def test_bad_volumes_are_refused(store, clip, item, match):
    with pytest.raises(StoreError, match=match):
        add_volumes(store, clip.id, [VOLS[0], item])
    assert volumes(store, clip.id) == []


def test_contour_tables_are_append_only_and_edits_break_the_chain(store_url, tmp_path, deidentified_clip):
    s = open_store(store_url, images_dir=tmp_path / "images")  # as the owner: triggers, not grants, refuse
    try:
        rec = s.add_clip(deidentified_clip)
        (lv,) = add_contours(s, rec.id, [LV_ED], model=MODEL_2D)
        add_contour_review(s, rec.id, "accepted", "Dr A", contour_proposal_id=lv.id)
        add_volumes(s, rec.id, VOLS[:1])
        s._write(lambda session: clip_views.view_in(session, rec.id, "a4c", 0.9, ["a notice"], "system"))
        for table in CONTOUR_TABLES:
            statements = [f"UPDATE {table} SET id = id", f"DELETE FROM {table}"]
            if s.engine.dialect.name == "postgresql":
                statements.append(f"TRUNCATE {table} CASCADE")
            for sql in statements:
                with pytest.raises(Exception, match="append-only"), s.engine.begin() as conn:
                    conn.exec_driver_sql(sql)
        if s.engine.dialect.name == "sqlite":
            with pytest.raises(Exception, match="append-only"), s.engine.begin() as conn:
                conn.exec_driver_sql("INSERT OR REPLACE INTO contour_review SELECT * FROM contour_review")
        assert verify(s.engine).ok
        # Behind the application's back (trigger dropped): the chain notices the edited polygon.
        with s.engine.begin() as conn:
            if s.engine.dialect.name == "sqlite":
                conn.exec_driver_sql("DROP TRIGGER contour_proposal_no_update")
            else:
                conn.exec_driver_sql("ALTER TABLE contour_proposal DISABLE TRIGGER contour_proposal_append_only")
            conn.exec_driver_sql("UPDATE contour_proposal SET polygon = '[[0,0],[1,0],[1,1]]'")
        report = verify(s.engine)
        assert not report.ok and "contour_proposal" in report.reason
    finally:
        s.close()


def test_ingest_stores_the_proposed_contours_and_volumes(store, dicom_file, monkeypatch):
    from echomeasure import config, pipeline

    proposed = lvidd_proposals()
    proposed.segmentations = [LV_ED, LV_ES]
    proposed.volumes = VOLS
    monkeypatch.setattr(pipeline, "_propose", lambda dclip, only, report: proposed)
    result = pipeline.ingest_path(dicom_file, store, secret=config.secret())
    assert result.proposed
    assert [(c.frame_index, c.structure) for c in contour_proposals(store, result.clip.id)] == [(1, "lv"), (3, "lv")]
    assert {v.measurement: v.method for v in volumes(store, result.clip.id)}["lvef"] == "single-plane A4C"
    assert verify(store.engine).ok


def test_ingest_keeps_the_calipers_and_warns_when_a_contour_is_unusable(store, dicom_file, monkeypatch):
    from echomeasure import config, pipeline

    proposed = lvidd_proposals()
    proposed.segmentations = [LV_ED, {**LV_ES, "polygon": [[1.0, 1.0], [2.0, 2.0]]}]
    monkeypatch.setattr(pipeline, "_propose", lambda dclip, only, report: proposed)
    result = pipeline.ingest_path(dicom_file, store, secret=config.secret())
    assert len(result.proposals) == 3
    assert any("contours or volumes not stored" in w and "at least 3" in w for w in result.warnings)
    assert contour_proposals(store, result.clip.id) == []  # one transaction: none or all
    assert verify(store.engine).ok


def test_a_crash_while_storing_proposals_leaves_nothing_and_the_next_ingest_stores_all(store, dicom_file, monkeypatch):
    """Calipers, contours and volumes are one transaction: a process that died after the calipers
    left a clip with no contours, and the next ingest of the file ('already stored') never added them."""
    from echomeasure import config, pipeline
    from echomeasure.store import contours as contour_store

    proposed = lvidd_proposals()
    proposed.segmentations = [LV_ED, LV_ES]
    proposed.volumes = VOLS
    monkeypatch.setattr(pipeline, "_propose", lambda dclip, only, report: proposed)

    def dies(*args, **kwargs):
        raise KeyboardInterrupt  # the process stopped between the calipers and the volumes

    with monkeypatch.context() as m:
        m.setattr(contour_store, "volumes_in", dies)
        with pytest.raises(KeyboardInterrupt):
            pipeline.ingest_path(dicom_file, store, secret=config.secret())
    (clip,) = store.clips()
    assert store.proposals(clip.id) == [] and contour_proposals(store, clip.id) == []
    result = pipeline.ingest_path(dicom_file, store, secret=config.secret())
    assert result.proposed and len(result.proposals) == 3
    assert [(c.frame_index, c.structure) for c in contour_proposals(store, clip.id)] == [(1, "lv"), (3, "lv")]
    assert {v.measurement for v in volumes(store, clip.id)} == {v["name"] for v in VOLS}
    assert verify(store.engine).ok
