"""The built wheel works without the checkout: ``echomeasure measure`` and ``echomeasure demo``.

The wheel is built from this checkout (``pip wheel --no-deps --no-build-isolation``, offline) and
installed without dependencies into a fresh virtual environment; the dependencies come from the
development venv through a ``.pth`` line *after* the new venv's own site-packages, so the
``echomeasure`` that runs is the installed wheel's (the editable install's hook is not loaded).
Everything runs with the working directory, database and data folders in a temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import venv
from pathlib import Path

import pytest

from echomeasure import catalog

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DEMO_START_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """A fresh venv with the wheel installed; -> {"bin": Path, "env": dict, "work": Path, "wheel": Path}."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(dist)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    (wheel,) = dist.glob("echomeasure-*.whl")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    own_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    (Path(own_site) / "zz_dev_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECHOMEASURE_", "PYTHON"))}
    env.update(
        HOME=str(tmp / "home"),
        XDG_DATA_HOME=str(tmp / "data"),
        ECHOMEASURE_DB=f"sqlite:///{tmp / 'store.sqlite'}",
        ECHOMEASURE_SECRET="wheel-test-secret",
    )
    return {"bin": env_dir / "bin", "env": env, "work": work, "wheel": wheel}


def test_wheel_runs_from_its_own_install(installed):
    probe = subprocess.run(
        [str(installed["bin"] / "python"), "-c",
         "import echomeasure, echomeasure.config as c, echomeasure.ui.caliper as v; "
         "print(echomeasure.__file__); print(c.SOURCE_CHECKOUT); print(len(v.CaliperViewer().js_on_load))"],
        cwd=installed["work"], env=installed["env"], check=True, capture_output=True, text=True, timeout=300,
    )
    package_file, source_checkout, js_chars = probe.stdout.split()
    assert Path(package_file).is_relative_to(installed["bin"].parent)
    assert source_checkout == "False"
    assert int(js_chars) > 1000
    print(f"wheel {installed['wheel'].name}: {installed['wheel'].stat().st_size / 1e6:.1f} MB")


def test_the_wheel_carries_the_active_weights_only(installed):
    import zipfile

    manifest = json.loads((ROOT / "weights" / "manifest.json").read_text())
    active = {m["file"] for m in manifest["models"] if manifest["active"].get(m["name"]) == m["version"]}
    with zipfile.ZipFile(installed["wheel"]) as whl:
        names = whl.namelist()
        carried = {Path(n).name for n in names if n.startswith("echomeasure/_bundled/weights/") and n.endswith(".pt")}
    assert carried == active
    # the edge search's fitted bloom correction ships with the code that reads it
    assert "echomeasure/propose/interface_offset.json" in names


def test_installed_measure_prints_json(installed):
    clip = installed["work"] / "study.dcm"
    shutil.copyfile(ROOT / "examples" / "case_0000.dcm", clip)
    proc = subprocess.run(
        [str(installed["bin"] / "echomeasure"), "measure", "-q", clip.name],
        cwd=installed["work"], env=installed["env"], capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["file"] == "study.dcm"
    assert doc["kind"] == "2d" and doc["calibration"] == "dicom"
    manifest = json.loads((ROOT / "weights" / "manifest.json").read_text())
    shipped = {(m["name"], m["sha256"]) for m in manifest["models"]}
    assert (doc["model"]["name"], doc["model"]["sha256"]) in shipped
    assert [m["name"] for m in doc["measurements"]] == list(catalog.LINEAR_2D)
    for m in doc["measurements"]:
        assert m["unit"] == "cm" and 0.1 < m["value"] < 10.0


def test_installed_demo_serves_the_page(installed):
    port = _free_port()
    log = installed["work"] / "demo.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(installed["bin"] / "echomeasure"), "demo", "--port", str(port)],
            cwd=installed["work"], env=installed["env"], stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + DEMO_START_S
        status = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
                    status = resp.status
                    page = resp.read().decode("utf-8", "replace")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1.0)
        assert status == 200, log.read_text()[-3000:]
        assert "echomeasure" in page
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
