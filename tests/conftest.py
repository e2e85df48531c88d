"""Shared test set-up.

Every test runs with its own secret and weights/database locations unless it asks for the
project's, so tests never touch the developer's ``db/`` folder.
"""

from __future__ import annotations

import os

import pytest

# Keep torch from fighting the other test processes for the two cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")

# Fixtures shared across test modules live in these plugin modules (tests/ is on sys.path).
pytest_plugins = ["postgres_fixture", "store_fixtures", "models_fixtures", "ui_fixtures", "seg_dataset_fixtures"]


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path_factory, monkeypatch):
    """A fixed test secret and a throwaway SQLite database for every test."""
    monkeypatch.setenv("ECHOMEASURE_SECRET", "test-secret-not-for-production")
    db_dir = tmp_path_factory.mktemp("db")
    monkeypatch.setenv("ECHOMEASURE_DB", f"sqlite:///{db_dir / 'test.sqlite'}")
    monkeypatch.setenv("ECHOMEASURE_IMAGES", str(db_dir / "images"))
    yield
