"""Readers: assignment to N readers, blinded and unassisted reading enforced by the API, each read
stored with its mode (append-only), and the agreement report on a real store through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text
from store_fixtures import lvidd_proposals, write_us_dicom

from echomeasure import config
from echomeasure.cli import main as cli_main
from echomeasure.errors import StoreError
from echomeasure.pipeline import ingest_path
from echomeasure.store.readers import (
    assign,
    assignments,
    measurements_for,
    read_modes,
    reader_clips,
    reader_view,
    record_read,
    save_for,
    visible_measurements,
)

READERS = ("reader-a", "reader-b", "reader-c")


def _clip(store, tmp_path: Path, seed: int) -> int:  # noqa: F811 - the fixture passed on
    path = write_us_dicom(tmp_path / f"r{seed}.dcm", seed=seed)
    cid = ingest_path(path, store, secret=config.secret(), run_models=False).clip.id
    store.add_proposals(cid, lvidd_proposals())
    return cid


def test_blinded_reader_sees_the_proposal_but_never_another_readers_read(store, tmp_path):  # noqa: F811
    cid = _clip(store, tmp_path, 1)
    assign(store, cid, READERS, "blinded", actor="study-lead")
    assert [a.reader for a in assignments(store, clip_id=cid)] == list(READERS)
    record_read(store, cid, "reader-a", "lvidd", "corrected", points=[(20, 15), (20, 42)], value=1.35)

    b = reader_view(store, cid, "reader-b")
    assert b.mode == "blinded" and b.assigned
    assert {p.measurement for p in b.proposals} == {"ivsd", "lvidd", "lvids"}
    assert b.own_reviews == () and b.other_reviews == ()
    lvidd_b = next(m for m in b.measurements if m.measurement == "lvidd")
    assert lvidd_b.status == "proposed" and lvidd_b.value == pytest.approx(1.2) and lvidd_b.reviewer is None

    a = visible_measurements(store, cid, "reader-a")
    lvidd_a = next(m for m in a if m.measurement == "lvidd")
    assert lvidd_a.status == "corrected" and lvidd_a.value == pytest.approx(1.35) and lvidd_a.reviewer == "reader-a"
    # The store's unfiltered view would leak reader-a's read: the reader view must not.
    assert next(m for m in store.current_measurements(cid) if m.measurement == "lvidd").reviewer == "reader-a"


def test_unassisted_reader_sees_no_proposal_and_can_only_draw(store, tmp_path):  # noqa: F811
    cid = _clip(store, tmp_path, 2)
    assign(store, cid, ["reader-u"], "unassisted")
    view = reader_view(store, cid, "reader-u")
    assert view.mode == "unassisted" and not view.shows_proposals
    assert view.proposals == () and view.measurements == ()
    with pytest.raises(StoreError, match="unassisted"):
        record_read(store, cid, "reader-u", "lvidd", "accepted")
    with pytest.raises(StoreError, match="unassisted"):
        record_read(store, cid, "reader-u", "lvidd", "added", frame=1, points=[(20, 15), (20, 40)], value=1.25,
                    proposal_id=store.proposals(cid)[0].id)
    rec = record_read(store, cid, "reader-u", "lvidd", "added", frame=1, points=[(20, 15), (20, 40)], value=1.25)
    assert rec.proposal_id is None and rec.model_version_id is None
    assert read_modes(store) == {rec.id: "unassisted"}
    (m,) = reader_view(store, cid, "reader-u").measurements
    assert m.measurement == "lvidd" and m.proposed_value is None and m.value == pytest.approx(1.25)


def test_only_assigned_readers_see_or_read_a_reader_clip(store, tmp_path):  # noqa: F811
    study_clip = _clip(store, tmp_path, 3)
    ordinary = _clip(store, tmp_path, 4)
    assign(store, study_clip, ["reader-a"], "blinded")
    with pytest.raises(StoreError, match="assigned"):
        reader_view(store, study_clip, "someone-else")
    with pytest.raises(StoreError, match="assigned"):
        record_read(store, study_clip, "someone-else", "lvidd", "accepted")
    with pytest.raises(StoreError, match="assigned"):
        record_read(store, ordinary, "reader-a", "lvidd", "accepted")
    # A clip without readers is an ordinary review: everyone sees everything.
    store.add_review(ordinary, "lvidd", "accepted", "sonographer-x")
    view = reader_view(store, ordinary, "someone-else")
    assert view.mode == "open" and not view.assigned
    assert [r.reviewer for r in view.other_reviews] == ["sonographer-x"]
    assert reader_clips(store, "reader-a") == [study_clip]
    # The UI's single entry points: nothing of a reader clip without a reader name.
    assert measurements_for(store, ordinary, None) == store.current_measurements(ordinary)
    with pytest.raises(StoreError, match="reader name"):
        measurements_for(store, study_clip, None)
    with pytest.raises(StoreError, match="assigned"):
        measurements_for(store, study_clip, "someone-else")
    rec = save_for(store, study_clip, "reader-a", "ivsd", "accepted")
    assert read_modes(store) == {rec.id: "blinded"}
    plain = save_for(store, ordinary, "sonographer-y", "ivsd", "accepted")
    assert plain.id not in read_modes(store)


def test_assignment_is_idempotent_and_its_mode_cannot_change(store, tmp_path):  # noqa: F811
    cid = _clip(store, tmp_path, 5)
    first = assign(store, cid, ["reader-a"], "blinded")
    assert assign(store, cid, ["reader-a"], "blinded") == first
    with pytest.raises(StoreError, match="cannot change"):
        assign(store, cid, ["reader-a"], "unassisted")
    with pytest.raises(StoreError, match="reading mode"):
        assign(store, cid, ["reader-b"], "peeking")
    actions = [e.action for e in store.audit_events(cid)]
    assert actions.count("reader.assign") == 1


def test_reads_and_assignments_are_append_only(store, tmp_path):  # noqa: F811
    cid = _clip(store, tmp_path, 6)
    assign(store, cid, ["reader-a"], "blinded")
    rec = record_read(store, cid, "reader-a", "ivsd", "accepted")
    assert read_modes(store) == {rec.id: "blinded"}
    assert [e.action for e in store.audit_events(cid)][-2:] == ["review.accepted", "reader.read"]
    for sql in ("UPDATE reader_read SET mode = 'open'", "DELETE FROM reader_read",
                "UPDATE reader_assignment SET mode = 'open'"):
        # SQLite: the triggers; PostgreSQL: the app role has no UPDATE/DELETE grant, and the triggers.
        with pytest.raises(Exception, match="append-only|permission denied"), store.engine.begin() as conn:
            conn.execute(text(sql))
    assert read_modes(store) == {rec.id: "blinded"}


def test_agreement_cli_on_a_three_reader_store(store, tmp_path, capsys, monkeypatch):  # noqa: F811
    monkeypatch.setenv("ECHOMEASURE_IMAGES", str(store.images_dir))
    bias = {"reader-a": 0.0, "reader-b": 0.05, "reader-c": -0.03}
    clips = [_clip(store, tmp_path, 10 + i) for i in range(5)]
    for i, cid in enumerate(clips):
        assign(store, cid, READERS, "blinded")
        for j, reader in enumerate(READERS):
            y2 = 40 - i + (j - 1)  # readers disagree by a pixel
            value = round((y2 - 16) * 0.05 + bias[reader], 4)
            record_read(store, cid, reader, "lvidd", "corrected", points=[(20, 16), (20, y2)], value=value)
        record_read(store, cid, "reader-a", "ivsd", "accepted")  # one reader only on IVSd
    plots = tmp_path / "plots"
    assert cli_main(["agreement", "--db", store.url, "--format", "json", "--plots", str(plots)]) == 0
    report = {m["measurement"]: m for m in json.loads(capsys.readouterr().out)["measurements"]}
    lvidd = report["lvidd"]
    assert lvidd["readers"] == list(READERS) and lvidd["n"] == 5
    assert lvidd["icc_2_1"]["value"] > 0.5 and len(lvidd["reader_pairs"]) == 3
    ab = next(p for p in lvidd["reader_pairs"] if (p["first"], p["second"]) == ("reader-a", "reader-b"))
    assert ab["mean_difference"] == pytest.approx(-0.05 - 0.05, abs=1e-6)  # bias and one pixel
    assert [p["second"] for p in lvidd["ai_vs_reader"]] == list(READERS)
    assert "fewer than 2 readers" in report["ivsd"]["note"] and report["ivsd"]["icc_2_1"] is None
    assert (plots / "bland_altman_lvidd.png").read_bytes()[:4] == b"\x89PNG"

    assert cli_main(["agreement", "--db", store.url, "--mode", "unassisted"]) == 0
    assert "No reads" in capsys.readouterr().out
    assert cli_main(["agreement", "--db", store.url, "--plots", str(plots / "bland_altman_lvidd.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
