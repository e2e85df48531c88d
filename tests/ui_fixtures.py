"""Test data for the review UI tests (``tests/test_ui*.py``).

A review store in a temporary folder holding one synthetic example clip ingested through the
real pipeline (de-identification gate included, models skipped) plus *known* proposals built
from the example's ground truth, so that the UI tests do not depend on model weights or on
model accuracy.  The app is launched inside the test process on 127.0.0.1 and a free port.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from echomeasure import catalog, config

EXAMPLE_2D = "case_0000.dcm"
EXAMPLE_DOPPLER = "case_0002.dcm"
TEST_SECRET = b"test-secret-not-for-production"
TEST_MODEL = ("plax-linear", "ui-test", "b" * 64)
TEST_DOPPLER_MODEL = ("doppler-peaks", "ui-test", "c" * 64)
# One proposal is deliberately unsure, to check the low-confidence flag.
CONFIDENCE = {"ivsd": 0.91, "lvidd": 0.95, "lvpwd": 0.88, "lvids": 0.93, "la": 0.35, "aortic_root": 0.9}

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


#: Marks the worklist cell holding clip ``id`` (the first cell of its row) with ``data-em-pick`` and
#: returns true once it is there: ``page.wait_for_function(PICK_ROW, arg=str(id))``, then click
#: ``[data-em-pick]``.
PICK_ROW = """(id) => {
    for (const e of document.querySelectorAll('[data-em-pick]')) e.removeAttribute('data-em-pick');
    const cells = [...document.querySelectorAll('#em-worklist [role=gridcell]')]
        .filter(c => c.parentElement.querySelector('[role=gridcell]') === c && c.innerText.trim() === id);
    if (!cells.length) return false;
    cells[0].setAttribute('data-em-pick', '1');
    return true; }"""


def truth(example: str) -> dict:
    """The ground truth written beside an example."""
    return json.loads((config.EXAMPLES_DIR / example.replace(".dcm", ".truth.json")).read_text())


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class UiStore:
    """A store prepared for the UI tests."""

    url: str
    folder: Path
    clip_id: int
    doppler_clip_id: int


def _ingest(store, example: str) -> int:
    from echomeasure.pipeline import ingest_path

    result = ingest_path(config.EXAMPLES_DIR / example, store, secret=TEST_SECRET, run_models=False)
    return result.clip.id


def prepare_store(folder: Path) -> UiStore:
    """Ingest the 2D and Doppler examples (models skipped) and add proposals from the truth."""
    from echomeasure.ingest.calibration import distance_cm, velocity_m_s
    from echomeasure.propose.types import ClipProposals, ModelInfo, Proposal
    from echomeasure.store import open_store

    url = f"sqlite:///{folder / 'ui.sqlite'}"
    store = open_store(url)
    try:
        clip_id = _ingest(store, EXAMPLE_2D)
        clip = store.clip(clip_id)
        t = truth(EXAMPLE_2D)
        proposals = []
        for name in catalog.LINEAR_2D:
            m = t["measurements"][name]
            # Proposals a little off the truth (1-2 px), as a model's would be.
            pts = ((m["points"][0][0] + 1.25, m["points"][0][1] - 1.5), (m["points"][1][0] - 0.75, m["points"][1][1] + 2.0))
            value = distance_cm(clip.region_objects, pts[0], pts[1])
            proposals.append(Proposal(name, int(m["frame"]), pts, value, "cm", CONFIDENCE[name]))
        store.add_proposals(
            clip_id, ClipProposals("2d", "dicom", ModelInfo(*TEST_MODEL), proposals, t["ed_frame"], t["es_frame"])
        )

        doppler_id = _ingest(store, EXAMPLE_DOPPLER)
        dclip = store.clip(doppler_id)
        td = truth(EXAMPLE_DOPPLER)
        peak = td["measurements"]["av_vmax"]["peaks"][0]
        pt = (float(peak[0]), float(peak[1]) + 1.0)
        v = velocity_m_s(dclip.region_objects, *pt)
        store.add_proposals(
            doppler_id,
            ClipProposals(
                "doppler", "dicom", ModelInfo(*TEST_DOPPLER_MODEL),
                [Proposal("av_vmax", 0, (pt,), abs(v), "m/s", 0.8, signed_value=v)],
            ),
        )
    finally:
        store.close()
    return UiStore(url=url, folder=folder, clip_id=clip_id, doppler_clip_id=doppler_id)


@pytest.fixture()
def controller(tmp_path):
    """A review controller on a fresh store holding the examples (:func:`prepare_store`), and the store's info."""
    from echomeasure.store import open_store
    from echomeasure.ui.controller import ReviewController

    info = prepare_store(tmp_path)
    store = open_store(info.url)
    yield ReviewController(store), info
    store.close()


def entry_of(value: dict, name: str) -> dict:
    """The viewer value's entry of measurement ``name``."""
    return next(m for m in value["measurements"] if m["name"] == name)


@pytest.fixture(scope="module")
def ui_store(tmp_path_factory) -> UiStore:
    """A prepared store shared by the tests of one module."""
    return prepare_store(tmp_path_factory.mktemp("ui-store"))


@pytest.fixture(scope="module")
def running_app(ui_store) -> Iterator[tuple[str, UiStore]]:
    """The review UI served on 127.0.0.1 and a free port: yields (url, store info)."""
    from echomeasure.ui.app import build_app, launch

    app = build_app(ui_store.url, examples_dir=config.EXAMPLES_DIR)
    port = free_port()
    _, url, _ = launch(app, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield url.rstrip("/"), ui_store
    finally:
        app.close()
        app.echomeasure_store.close()


def ellipse(cx: float, cy: float, half_width: float, half_length: float, n: int = 32) -> list[list[float]]:
    """A closed polygon of ``n`` vertices on an ellipse (image pixels, y down)."""
    import math

    return [[round(cx + half_width * math.cos(2 * math.pi * k / n), 1),
             round(cy + half_length * math.sin(2 * math.pi * k / n), 1)] for k in range(n)]


#: A fabricated apical (A4C-like) LV: centre, half-width and half-length in pixels at ED and ES.
#: The base of the cavity is at y = 280 at both phases, where a 4-vertex LA sits below it.
APICAL_LV_ED = (320.0, 200.0, 40.0, 80.0)
APICAL_LV_ES = (320.0, 215.0, 30.0, 65.0)


def apical_contour_items(ed_frame: int, es_frame: int) -> list[dict]:
    """An apical contour set (LV cavity and LA) on the ED and ES frames, as a segmentation gives it.

    Apical clips have no shipped segmentation model, so the UI tests store this set through
    :func:`echomeasure.store.contours.add_contours` on a calibrated 2D example.
    """
    la = [[295.0, 280.0], [345.0, 280.0], [350.0, 330.0], [290.0, 330.0]]
    return [
        {"frame": ed_frame, "structure": "lv", "polygon": ellipse(*APICAL_LV_ED), "confidence": 0.9},
        {"frame": ed_frame, "structure": "la", "polygon": la, "confidence": 0.85},
        {"frame": es_frame, "structure": "lv", "polygon": ellipse(*APICAL_LV_ES), "confidence": 0.88},
        {"frame": es_frame, "structure": "la", "polygon": la, "confidence": 0.8},
    ]


def open_example_tab(context, url: str, reviewer: str, errors: list[str], *, timeout_ms: int = 60_000,
                     ready: str = '.em-row[data-name="lvidd"] .em-name'):
    """A new tab of ``context`` (Playwright) on the app at ``url`` with ``reviewer`` signed in and the
    example clip open; console errors go to ``errors``; returns once ``ready`` is on the page."""
    tab = context.new_page()
    tab.set_default_timeout(timeout_ms)
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.goto(url)
    tab.get_by_label("Reviewer").fill(reviewer)
    tab.locator("#em-open-example").click()
    tab.locator(ready).wait_for()
    return tab
