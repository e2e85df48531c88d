"""Rules the store defines once: review actions, audit payloads, record mapping, clip status, JSON values."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import CheckConstraint, inspect

from echomeasure import config
from echomeasure.plain_json import json_default, json_default_or_str
from echomeasure.store import open_store
from echomeasure.store import records as rec
from echomeasure.store import schema as db
from echomeasure.store.queries import clip_status, summary_for_states

# The audit payloads of the chain format: changing one changes what new events record.
CLIP_AUDIT = {"study_uid", "series_uid", "instance_uid", "kind", "n_frames", "calibration_source", "pixel_sha256"}
PROPOSAL_AUDIT = {"proposal_id", "measurement", "frame", "points", "value", "unit", "confidence", "model_version_id"}
REVIEW_AUDIT = {
    "review_id", "proposal_id", "measurement", "action", "frame", "points", "value", "unit", "seconds_spent",
    "reviewer_display_name",
}
MODEL_VERSION_AUDIT = {"name", "version", "sha256", "parent_id", "trained_on", "metrics"}


def _check_text(model: type[db.Base], name: str) -> str:
    constraint = next(c for c in model.__table__.constraints if isinstance(c, CheckConstraint) and c.name == name)
    return str(constraint.sqltext)


@pytest.mark.parametrize(("model", "name"), [(db.Review, "ck_review_action"), (db.ContourReview, "ck_contour_review_action")])
def test_action_check_constraints_are_built_from_the_review_action_literal(model, name):
    assert rec.REVIEW_ACTIONS == ("accepted", "corrected", "rejected", "added", "reopened")
    text = _check_text(model, name)
    assert text == db.one_of("action", rec.REVIEW_ACTIONS) == (
        "action IN ('accepted', 'corrected', 'rejected', 'added', 'reopened')")
    # The migrations created the same constraint: the model and the database agree without a new one.
    migrations = "".join(p.read_text() for p in (config.MIGRATIONS_DIR / "versions").glob("*.py"))
    assert f'"{text}", name="{name}"' in " ".join(migrations.split()).replace("( ", "(")


def test_measurement_statuses_are_proposed_or_a_review_action():
    from typing import get_args

    # a reopened measurement stands as proposed again
    assert get_args(rec.MeasurementStatus) == ("proposed", *(a for a in rec.REVIEW_ACTIONS if a != rec.REOPEN_ACTION))
    assert set(rec.KEEPING_ACTIONS) == set(rec.REVIEW_ACTIONS) - {"rejected", "reopened"}
    assert {a: rec.decision_status(a) for a in rec.REVIEW_ACTIONS}["reopened"] == "proposed"


@pytest.fixture
def sqlite_store(tmp_path: Path):
    s = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}", images_dir=tmp_path / "images")
    yield s
    s.close()


def test_audit_payloads_are_the_columns_the_models_mark(sqlite_store, tmp_path):
    from store_fixtures import lvidd_proposals, make_deidentified

    from echomeasure.propose.types import ModelInfo

    store = sqlite_store
    clip = store.add_clip(make_deidentified(tmp_path, 1))
    store.add_proposals(clip.id, lvidd_proposals())
    store.add_review(clip.id, "lvidd", "corrected", "a", points=[(20, 15), (20, 41)], value=1.3, seconds_spent=2.0)
    store.register_model_version(ModelInfo("plax-linear", "ft", "b" * 64), metrics={"mae": 0.4})
    events = {e.action: e for e in store.audit_events()}

    assert set(events["clip.add"].after) == CLIP_AUDIT
    assert events["clip.add"].after["instance_uid"] == clip.instance_uid
    assert events["clip.add"].after["study_uid"] == clip.study_uid
    proposals = events["proposals.add"].after["proposals"]
    assert [set(p) for p in proposals] == [PROPOSAL_AUDIT] * 3
    assert {p["proposal_id"] for p in proposals} == {p.id for p in store.proposals(clip.id)}
    review = events["review.corrected"]
    assert set(review.after) == REVIEW_AUDIT
    assert review.after["frame"] == 1 and review.after["value"] == pytest.approx(1.3)
    assert set(review.before) == PROPOSAL_AUDIT | {"status"} and review.before["status"] == "proposed"
    assert set(events["model_version.register"].after) == MODEL_VERSION_AUDIT
    assert events["model_version.register"].after["metrics"] == {"mae": 0.4}


@pytest.mark.parametrize(
    ("record", "model", "given"),
    [
        (rec.ClipRecord, db.Clip, {"study_uid", "created"}),
        (rec.ModelVersionRecord, db.ModelVersion, set()),
        (rec.ProposalRecord, db.Proposal, {"model_name"}),
        (rec.ReviewRecord, db.Review, set()),
        (rec.FrameImageRecord, db.FrameImage, {"path"}),
        (rec.AuditEventRecord, db.AuditEvent, set()),
    ],
)
def test_records_read_their_fields_from_the_model(record, model, given):
    """Every record field is a mapped attribute of its model, but for those the mapping computes."""
    attributes = set(inspect(model).attrs.keys())
    fields = {f.name for f in dataclasses.fields(record)}
    assert fields - given <= attributes, fields - given - attributes


@pytest.mark.parametrize(
    ("proposed", "reviewed", "status"),
    [
        (set(), set(), "no proposals"),
        ({"lvidd"}, set(), "to review"),
        ({"lvidd", "ivsd"}, {"lvidd"}, "in review"),
        ({"lvidd"}, {"lvidd", "ivsd"}, "reviewed"),
        (set(), {"ivsd"}, "reviewed"),
    ],
)
def test_clip_status_rule(proposed, reviewed, status):
    assert clip_status(proposed, reviewed) == status


def test_a_summary_counted_from_the_states_matches_the_worklist(sqlite_store, tmp_path):
    from store_fixtures import lvidd_proposals, make_deidentified

    store = sqlite_store
    clip = store.add_clip(make_deidentified(tmp_path, 1))
    store.add_proposals(clip.id, lvidd_proposals())
    for reviewed in (None, "lvidd", "ivsd", "lvids"):
        if reviewed is not None:
            store.add_review(clip.id, reviewed, "accepted", "a")
        summary = next(s for s in store.worklist() if s.clip_id == clip.id)
        recounted = summary_for_states(
            dataclasses.replace(summary, n_proposed=0, n_reviewed=0, status="no proposals", last_reviewed_at=None),
            store.current_measurements(clip.id),
        )
        assert recounted == summary
    assert summary.status == "reviewed"


@dataclasses.dataclass
class _Point:
    x: float
    y: float


def test_one_json_rule_for_project_values():
    value = {
        "n": np.int64(3), "f": np.float32(0.5), "a": np.arange(3), "s": {"b", "a"}, "p": Path("x") / "y.png",
        "t": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "d": _Point(1.0, 2.0),
    }
    assert json.loads(json.dumps(value, default=json_default)) == {
        "n": 3, "f": 0.5, "a": [0, 1, 2], "s": ["a", "b"], "p": "x/y.png", "t": "2026-01-02T03:04:05+00:00",
        "d": {"x": 1.0, "y": 2.0},
    }
    with pytest.raises(TypeError, match="complex"):
        json.dumps({"c": 1j}, default=json_default)
    assert json.dumps({"c": 1j}, default=json_default_or_str) == '{"c": "1j"}'


@pytest.mark.parametrize(
    ("model", "content"),
    [
        (db.Review, "REVIEW_CONTENT"),
        (db.Clip, "CLIP_CONTENT"),
        (db.Proposal, "PROPOSAL_CONTENT"),
        (db.ContourProposal, "CONTOUR_PROPOSAL_CONTENT"),
        (db.ContourReview, "CONTOUR_REVIEW_CONTENT"),
        (db.VolumeProposal, "VOLUME_PROPOSAL_CONTENT"),
    ],
)
def test_audit_content_hashes_cover_every_column(model, content):
    """The covered columns are frozen in the chain format (a hash must not change when a column is
    added); a new column fails here until the chain format decides about it."""
    from echomeasure.store import chain

    assert set(getattr(chain, content)) == set(model.__table__.columns.keys())
