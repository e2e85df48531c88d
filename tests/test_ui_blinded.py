"""Blinded reads through the review UI's API: a reader sees only their own reads, unassisted no proposal."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from ui_fixtures import EXAMPLE_2D, free_port, prepare_store

from echomeasure import config

READER_A = "Reader A"
READER_B = "Reader B"
READER_U = "Reader U"


@pytest.fixture(scope="module")
def reader_app(tmp_path_factory):
    """The UI served over a store whose 2D clip is read by two blinded readers and one unassisted."""
    from gradio_client import Client

    from echomeasure.store import open_store, readers
    from echomeasure.ui.app import build_app, launch

    info = prepare_store(tmp_path_factory.mktemp("blinded"))
    store = open_store(info.url)
    try:
        readers.assign(store, info.clip_id, [READER_A, READER_B], "blinded")
        readers.assign(store, info.clip_id, [READER_U], "unassisted")
    finally:
        store.close()
    app = build_app(info.url, examples_dir=config.EXAMPLES_DIR)
    _, url, _ = launch(app, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield Client(url, verbose=False), info
    finally:
        app.close()
        app.echomeasure_store.close()


def _by_name(states: list[dict]) -> dict[str, dict]:
    return {s["name"]: s for s in states}


def test_blinded_reader_never_sees_another_readers_read(reader_app):
    client, info = reader_app
    mine = client.predict(info.clip_id, "lvidd", "accept", READER_A, api_name="/save_review")
    assert mine["status"] == "accepted" and mine["reviewer"] == READER_A

    seen_by_b = _by_name(client.predict(info.clip_id, READER_B, api_name="/measurements"))
    assert seen_by_b["lvidd"]["status"] == "proposed"
    assert seen_by_b["lvidd"]["reviewer"] is None
    assert seen_by_b["lvidd"]["proposed_value"] is not None  # blinded, not unassisted: the AI is shown

    # Opening the clip in the UI (the example is already stored: it opens) shows B the same.
    viewer, _header, _worklist, _export = client.predict(EXAMPLE_2D, READER_B, "all", api_name="/open_example")
    if "value" in viewer and "measurements" not in viewer:
        viewer = viewer["value"]
    assert viewer["clip_id"] == info.clip_id
    shown = _by_name(viewer["measurements"])
    assert shown["lvidd"]["status"] == "proposed" and shown["lvidd"]["reviewer"] is None

    # A's own view keeps A's read.
    assert _by_name(client.predict(info.clip_id, READER_A, api_name="/measurements"))["lvidd"]["status"] == "accepted"


def test_blinded_read_is_stored_with_its_mode(reader_app):
    from echomeasure.store import open_store, readers

    client, info = reader_app
    client.predict(info.clip_id, "ivsd", "rejected", READER_B, api_name="/save_review")
    store = open_store(info.url)
    try:
        (review,) = [r for r in store.reviews(info.clip_id) if r.measurement == "ivsd" and r.reviewer == READER_B]
        assert readers.read_modes(store)[review.id] == "blinded"
    finally:
        store.close()


def test_unassisted_reader_sees_no_proposal_and_can_only_add(reader_app):
    client, info = reader_app
    seen = client.predict(info.clip_id, READER_U, api_name="/measurements")
    assert seen == []  # neither the AI's proposals nor the other readers' reads

    # There is no proposal to accept: the reader must draw the measurement (an "added" read).
    with pytest.raises(Exception, match="needs 2 points"):
        client.predict(info.clip_id, "lvids", "accept", READER_U, api_name="/save_review")

    points = [[300.0, 200.0], [300.0, 260.0]]
    added = client.predict(info.clip_id, "lvids", "added", READER_U, points, 3, api_name="/save_review")
    assert added["status"] == "added" and added["reviewer"] == READER_U and added["proposed_value"] is None
    assert added["unit"] == "cm" and added["value"] > 0

    # The other readers do not see the unassisted read.
    for reader in (READER_A, READER_B):
        assert _by_name(client.predict(info.clip_id, reader, api_name="/measurements"))["lvids"]["status"] == "proposed"


@pytest.mark.parametrize("outsider", ["Dr Not Assigned", ""])
def test_someone_not_reading_the_clip_sees_nothing(reader_app, outsider):
    client, info = reader_app
    with pytest.raises(Exception, match="assigned readers only"):
        client.predict(info.clip_id, outsider, api_name="/measurements")
    with pytest.raises(Exception, match="assigned|name"):
        client.predict(info.clip_id, "la", "accept", outsider or "Somebody", api_name="/save_review")


def test_clip_without_readers_shows_everything(reader_app):
    client, info = reader_app
    client.predict(info.doppler_clip_id, "av_vmax", "accept", READER_A, api_name="/save_review")
    seen = _by_name(client.predict(info.doppler_clip_id, "Anyone Else", api_name="/measurements"))
    assert seen["av_vmax"]["status"] == "accepted" and seen["av_vmax"]["reviewer"] == READER_A


def _csv_rows(result) -> list[dict]:
    if isinstance(result, dict):  # a gr.update that also shows the file component
        result = result.get("value", result)
        result = result.get("path", result) if isinstance(result, dict) else result
    return list(csv.DictReader(io.StringIO(Path(result).read_text(encoding="utf-8"))))


def test_ui_exports_leave_reader_study_clips_out(reader_app):
    client, info = reader_app
    client.predict(info.clip_id, "aortic_root", "accept", READER_A, api_name="/save_review")
    rows = _csv_rows(client.predict(api_name="/export_all_csv"))
    assert {r["clip_id"] for r in rows} == {str(info.doppler_clip_id)}
    assert not any(r["reviewer"] == READER_A and r["clip_id"] == str(info.clip_id) for r in rows)
    # The study of the reader clip holds nothing else: nothing is exported.
    assert client.predict(info.clip_id, api_name="/export_study_csv") == {"__type__": "update"}  # gr.skip()
