"""The Hugging Face Space entry: synthetic examples only, everything it writes in its own
temporary folder, removed when it stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from ui_fixtures import free_port

from echomeasure import config

ROOT = Path(__file__).resolve().parents[1]


def test_an_app_without_uploads_offers_no_upload_and_takes_no_file(tmp_path):
    from echomeasure.ui.app import NO_UPLOAD, build_app

    app = build_app(f"sqlite:///{tmp_path / 's.sqlite'}", examples_dir=config.EXAMPLES_DIR, uploads=False)
    try:
        names = {f.api_name for f in app.fns.values()}
        assert "open_example" in names and "open_upload" not in names
        assert app.echomeasure_launch["max_file_size"] == NO_UPLOAD
    finally:
        app.echomeasure_store.close()


@pytest.mark.slow
def test_the_space_keeps_everything_in_its_temp_folder_and_removes_it_on_sigterm(tmp_path):
    quarantine = ROOT / "db" / "quarantine"
    before = sorted(p.name for p in quarantine.iterdir()) if quarantine.is_dir() else []
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp_path), "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("ECHOMEASURE_DB", None)
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as r:
                    config_text = r.read().decode()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert proc.poll() is None, "the Space stopped while starting"
                assert time.monotonic() < deadline, "the Space did not start in 180 s"
                time.sleep(1.0)
        assert '"open_example"' in config_text and '"open_upload"' not in config_text
        (workdir,) = tmp_path.glob("echomeasure-space-*")
        assert (workdir / "echomeasure.sqlite").is_file()  # the store and its images here ...
        after = sorted(p.name for p in quarantine.iterdir()) if quarantine.is_dir() else []
        assert after == before  # ... and nothing beside the project's own database
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert not list(tmp_path.glob("echomeasure-space-*"))  # removed on the way out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
