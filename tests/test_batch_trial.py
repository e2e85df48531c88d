"""A new user's trial of ``echomeasure batch``: interrupted runs leave no original behind.

The quarantine holds a hard link to each original while a worker reads it, removed in the
worker's ``finally``.  A batch stopped with Ctrl-C (Ray then kills its workers) or SIGKILL left
those links until some later run's worker swept them, never if a ``--resume`` found nothing left
to do; and a batch given ``--db`` kept them beside the default store, not the one named.
"""

from __future__ import annotations

import fcntl
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from echomeasure import config
from echomeasure.batch import run as batch_run
from echomeasure.ingest import quarantine


def _dead_run_folder(root: Path, original: Path) -> Path:
    """A quarantine folder as a SIGKILLed run leaves it: a link to the original, an unheld lock."""
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"{quarantine.FOLDER_PREFIX}dead"
    folder.mkdir(mode=0o700)
    os.link(original, folder / original.name)
    (root / f"{folder.name}{quarantine.LOCK_SUFFIX}").touch()
    return folder


def test_a_resume_with_nothing_left_sweeps_what_a_killed_run_left(tmp_path, monkeypatch):
    archive = tmp_path / "archive"
    archive.mkdir()
    original = archive / "DOE_JOHN.dcm"
    shutil.copy(config.EXAMPLES_DIR / "case_0000.dcm", original)
    monkeypatch.delenv("ECHOMEASURE_QUARANTINE", raising=False)
    url = f"sqlite:///{tmp_path / 'store' / 'db.sqlite'}"
    (tmp_path / "store").mkdir()
    root = config.images_dir(url).parent / "quarantine"
    folder = _dead_run_folder(root, original)
    # every file finished in an earlier run: no worker starts, so no worker sweeps
    monkeypatch.setattr(batch_run, "_pending_items", lambda files, job, resume, summary: [])
    summary = batch_run.run_batch([str(archive)], db=url, resume=True, emit=lambda row: None,
                                  progress_stream=io.StringIO())
    assert summary.files == 1
    assert not folder.exists() and original.stat().st_nlink == 1
    assert "ECHOMEASURE_QUARANTINE" not in os.environ


def test_a_live_runs_folder_is_never_swept(tmp_path, monkeypatch):
    monkeypatch.setenv("ECHOMEASURE_QUARANTINE", str(tmp_path / "q"))
    src = tmp_path / "x.dcm"
    src.write_bytes(b"x")
    folder = _dead_run_folder(tmp_path / "q", src)
    fd = os.open(tmp_path / "q" / f"{folder.name}{quarantine.LOCK_SUFFIX}", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # its run is alive
    try:
        batch_run._sweep_quarantine()
        assert folder.exists()
    finally:
        os.close(fd)
    batch_run._sweep_quarantine()
    assert not folder.exists()


@pytest.mark.slow
def test_ctrl_c_leaves_no_original_in_the_stores_quarantine(tmp_path):
    """A real batch with --db (no ECHOMEASURE_DB): Ctrl-C while a worker holds an original in the
    quarantine beside that store (before, the links went under the default store's folder); it
    holds nothing afterwards."""
    pytest.importorskip("ray")
    archive = tmp_path / "archive"
    archive.mkdir()
    for i, f in enumerate(sorted(config.EXAMPLES_DIR.glob("case_*.dcm"))[:4]):
        shutil.copy(f, archive / f"PATIENT_{i}.dcm")
    store = tmp_path / "store"
    store.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("ECHOMEASURE_DB", "ECHOMEASURE_IMAGES", "ECHOMEASURE_QUARANTINE")}
    env.update(ECHOMEASURE_SECRET="test-secret")
    exe = Path(sys.executable).parent / "echomeasure"
    err_path = tmp_path / "err.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen([str(exe), "batch", str(archive), "--db", f"sqlite:///{store / 'db.sqlite'}",
                                 "--workers", "1"], stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=tmp_path)
        root = store / "quarantine"  # beside the store's images, where --db puts them

        def holding() -> bool:  # a worker holds an original in the store's quarantine
            return root.is_dir() and any(p.name.startswith(quarantine.FOLDER_PREFIX) and p.is_dir()
                                         for p in root.iterdir())

        deadline = time.monotonic() + 240
        while proc.poll() is None and not holding() and time.monotonic() < deadline:
            time.sleep(0.05)
        interrupted = proc.poll() is None
        if interrupted:
            proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=120)
    text = err_path.read_text()
    assert interrupted, text
    assert rc == 130 and "error: interrupted" in text
    assert [p.name for p in root.iterdir() if p.name.startswith(quarantine.FOLDER_PREFIX)] == []
    assert all(f.stat().st_nlink == 1 for f in archive.iterdir())
