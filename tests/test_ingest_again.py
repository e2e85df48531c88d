"""Ingesting a clip the store holds already does not run the models again, whatever was proposed."""

from __future__ import annotations

import pytest

from echomeasure import config, pipeline
from echomeasure.store import open_store

SECRET = b"ingest-again-test-secret-0123456789"


@pytest.mark.parametrize("example", ["case_0000_a4c.dcm", "case_0000.dcm"])
def test_a_stored_clip_is_not_proposed_again(tmp_path, monkeypatch, example):
    store = open_store(f"sqlite:///{tmp_path / 'again.sqlite'}", images_dir=tmp_path / "images")
    calls = []
    real = pipeline._propose
    monkeypatch.setattr(pipeline, "_propose", lambda *a, **k: calls.append(1) or real(*a, **k))
    try:
        first = pipeline.ingest_path(config.EXAMPLES_DIR / example, store, secret=SECRET)
        again = pipeline.ingest_path(config.EXAMPLES_DIR / example, store, secret=SECRET)
    finally:
        store.close()
    assert len(calls) == 1  # an apical clip (contours and volumes, no calipers) ran the models twice
    assert again.clip.id == first.clip.id and not again.new
    assert (len(again.proposals), again.contours, again.volumes) == (len(first.proposals), first.contours, first.volumes)
    assert first.proposals or first.contours
