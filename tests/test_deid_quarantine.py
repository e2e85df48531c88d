"""Crash-safe quarantine: originals never outlive a run, even one killed with SIGKILL."""

from __future__ import annotations

import fcntl
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ingest_builders import write_canary_dicom

from echomeasure.ingest import load, quarantine

SECRET = b"quarantine-secret"

_LOOP = """
import sys
from echomeasure.ingest import load
print("ready", flush=True)
while True:
    load(sys.argv[1], secret=b"quarantine-secret")
"""


def _env(root: Path) -> dict[str, str]:
    return {**os.environ, "ECHOMEASURE_QUARANTINE": str(root)}


@pytest.mark.slow
def test_ten_kill_9_at_random_points_leave_nothing_after_the_next_start(tmp_path):
    root = tmp_path / "q"
    src = write_canary_dicom(tmp_path / "in.dcm", 40)
    rng = random.Random(7)
    left_behind = 0
    for _ in range(10):
        proc = subprocess.Popen([sys.executable, "-c", _LOOP, str(src)], env=_env(root), stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        left_behind += bool(quarantine.leftovers(root))
    assert left_behind >= 3  # the kills did land inside runs (otherwise this test proves nothing)
    # The next start (any run) sweeps what the dead runs left.
    os.environ["ECHOMEASURE_QUARANTINE"] = str(root)
    try:
        load(src, secret=SECRET)
    finally:
        del os.environ["ECHOMEASURE_QUARANTINE"]
    assert quarantine.leftovers(root) == []
    assert src.exists() and os.stat(src).st_nlink == 1  # no second name of the original anywhere


def test_a_sweep_leaves_a_live_run_alone(tmp_path):
    root = tmp_path / "q"
    root.mkdir()
    live = root / f"{quarantine.FOLDER_PREFIX}live"
    live.mkdir()
    (live / "original").write_bytes(b"x")
    fd = os.open(root / f"{live.name}{quarantine.LOCK_SUFFIX}", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    dead = root / f"{quarantine.FOLDER_PREFIX}dead"
    dead.mkdir()
    (dead / "original").write_bytes(b"y")
    (root / f"{dead.name}{quarantine.LOCK_SUFFIX}").touch()  # its owner died: nobody holds it
    orphan = root / f"{quarantine.FOLDER_PREFIX}nolock"
    orphan.mkdir()
    try:
        assert quarantine.sweep(root) == 2
        assert quarantine.leftovers(root) == [live, live.with_name(live.name + quarantine.LOCK_SUFFIX)]
    finally:
        os.close(fd)
    assert quarantine.sweep(root) == 1 and quarantine.leftovers(root) == []


def test_an_input_on_another_file_system_is_read_in_place(tmp_path, monkeypatch):
    """When a hard link is impossible the original is not copied into the quarantine."""
    root = tmp_path / "q"
    monkeypatch.setenv("ECHOMEASURE_QUARANTINE", str(root))
    src = write_canary_dicom(tmp_path / "in.dcm", 1)

    def no_link(a, b):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    with quarantine.quarantined(src) as original:
        assert original == src
        assert [p for p in quarantine.leftovers(root) if p.is_dir() and any(p.iterdir())] == []
    assert quarantine.leftovers(root) == []


@pytest.mark.parametrize("fail", [True, False])
def test_the_quarantine_folder_goes_whatever_happens(tmp_path, monkeypatch, fail):
    root = tmp_path / "q"
    monkeypatch.setenv("ECHOMEASURE_QUARANTINE", str(root))
    src = write_canary_dicom(tmp_path / "in.dcm", 1)
    with pytest.raises(RuntimeError) if fail else _nothing(), quarantine.quarantined(src) as original:
        assert original.parent.name.startswith(quarantine.FOLDER_PREFIX)
        assert os.stat(src).st_nlink == 2
        if fail:
            raise RuntimeError("boom")
    assert quarantine.leftovers(root) == [] and os.stat(src).st_nlink == 1


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_the_quarantine_lies_beside_the_store_the_site_configured(tmp_path, monkeypatch):
    """Originals wait on the volume chosen for patient data, not in the project's db/ folder."""
    from echomeasure import config

    monkeypatch.delenv("ECHOMEASURE_QUARANTINE", raising=False)
    monkeypatch.delenv("ECHOMEASURE_IMAGES", raising=False)
    monkeypatch.setenv("ECHOMEASURE_DB", f"sqlite:///{tmp_path / 'site' / 'review.sqlite'}")
    assert quarantine.quarantine_root() == tmp_path / "site" / "quarantine"
    monkeypatch.setenv("ECHOMEASURE_IMAGES", str(tmp_path / "vault" / "images"))
    assert quarantine.quarantine_root() == (tmp_path / "vault" / "quarantine").resolve()
    monkeypatch.setenv("ECHOMEASURE_QUARANTINE", str(tmp_path / "q"))
    assert quarantine.quarantine_root() == tmp_path / "q"
    monkeypatch.delenv("ECHOMEASURE_QUARANTINE")
    monkeypatch.delenv("ECHOMEASURE_IMAGES")
    monkeypatch.setenv("ECHOMEASURE_DB", "postgresql+psycopg://u@localhost/em")  # no file: the default folder
    assert quarantine.quarantine_root() == config.DB_DIR / "quarantine"


@pytest.mark.parametrize("url", ["sqlite:///db/x.sqlite", "sqlite:////tmp/a/b.sqlite", "sqlite+pysqlite:////tmp/a/b.sqlite",
                                 "sqlite:////tmp/a/b.sqlite?timeout=5", "sqlite:///:memory:", "sqlite://",
                                 "sqlite:////tmp/with%20space/b.sqlite", "postgresql+psycopg://u@localhost/em"])
def test_where_the_store_lives_is_read_without_sqlalchemy_and_agrees_with_it(url):
    """The quarantine asks config where the store keeps its data (importing SQLAlchemy cost a
    300-frame `measure` 33 MB and took it over 1 GiB); the store's own parser must agree."""
    from echomeasure import config
    from echomeasure.store.engine import parse_url, sqlite_path

    assert config.sqlite_file(url) == sqlite_path(parse_url(url))


def test_finding_the_quarantine_does_not_import_the_store():
    code = ("import os, sys; os.environ['ECHOMEASURE_DB'] = 'sqlite:////tmp/em-q-test/x.sqlite'; "
            "from echomeasure.ingest.quarantine import quarantine_root; quarantine_root(); "
            "print(any(m == 'sqlalchemy' or m.startswith('sqlalchemy.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
