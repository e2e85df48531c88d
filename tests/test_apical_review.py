"""An apical clip from proposal to export: the LV figures the viewer shows, the proposed ones and
the exported ones are one number until a contour changes.

The shipped A4C example goes through the real pipeline (view classifier and ``apical-seg`` from
``weights/``), the contour reviews through the viewer's own handler
(:func:`echomeasure.ui.contour_review.save`) and the figures out through the CSV export.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from echomeasure import config, contour_volumes
from echomeasure.export import export_csv
from echomeasure.pipeline import ingest_path
from echomeasure.store import contours, open_store
from echomeasure.ui import contour_review
from echomeasure.ui.controller import ReviewController

EXAMPLE_A4C = "case_0000_a4c.dcm"
#: CSV row -> key of the viewer's ``volumes``
FIGURE_OF = {"lvedv": "edv_ml", "lvesv": "esv_ml", "lvef": "ef_percent"}


@pytest.fixture()
def a4c(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'a4c.sqlite'}", images_dir=tmp_path / "images")
    result = ingest_path(config.EXAMPLES_DIR / EXAMPLE_A4C, store, secret=b"apical-review-test-secret-012345")
    stored = {v.measurement: v for v in contours.volumes(store, result.clip.id)}
    if "lvedv" not in stored:  # pragma: no cover - the weights folder has no apical-seg or view model
        store.close()
        pytest.skip("weights/ gave no apical volumes for the A4C example")
    yield ReviewController(store), result.clip.id
    store.close()


def _shown(ctrl: ReviewController, clip_id: int) -> dict:
    """The viewer's LV figures of the clip as it opens."""
    return ctrl.open_clip(clip_id, "Dr A").clip["volumes"]


def _csv_volume_rows(ctrl: ReviewController, clip_id: int) -> dict[str, dict[str, str]]:
    rows = csv.DictReader(io.StringIO(export_csv(ctrl.store, [clip_id])))
    return {r["measurement"]: r for r in rows if r["method"].startswith("single-plane")}


def _review(ctrl: ReviewController, clip_id: int, frame: int, structure: str, action: str,
            polygon: list[list[float]] | None = None) -> None:
    (proposal,) = [c for c in contour_review.contours_for(ctrl.store, clip_id)
                   if (c["frame"], c["structure"]) == (frame, structure)]
    contour_review.save(ctrl.store, {"clip_id": clip_id, "contour_proposal_id": proposal["id"], "action": action,
                                     "polygon": polygon}, "Dr A")


def _polygon(ctrl: ReviewController, clip_id: int, frame: int, structure: str) -> list[list[float]]:
    (c,) = [c for c in contour_review.contours_for(ctrl.store, clip_id) if (c["frame"], c["structure"]) == (frame, structure)]
    return c["polygon"]


def test_untouched_and_accepted_contours_keep_the_proposed_figures_and_an_edit_recomputes_them(a4c):
    ctrl, clip_id = a4c
    shown = _shown(ctrl, clip_id)
    ed, es = shown["ed_frame"], shown["es_frame"]
    rows = _csv_volume_rows(ctrl, clip_id)
    assert set(rows) >= set(FIGURE_OF)
    # nobody touched anything: the viewer shows the proposed figures, exactly
    for name, key in FIGURE_OF.items():
        assert rows[name]["status"] == "proposed"
        assert float(rows[name]["proposed_value"]) == shown[key], name
    assert (int(rows["lvedv"]["proposed_frame"]), int(rows["lvesv"]["proposed_frame"])) == (ed, es)
    # the LOINC codes the DICOM SR gives them (single-plane A4C)
    assert {n: rows[n]["loinc"] for n in ("lvedv", "lvesv", "lvef")} == {"lvedv": "79999-9", "lvesv": "80004-5",
                                                                        "lvef": "79993-2"}

    # the reviewer accepts the ED and ES LV contours unchanged: accepted, with the proposed figures
    _review(ctrl, clip_id, ed, "lv", "accepted")
    _review(ctrl, clip_id, es, "lv", "accepted")
    rows = _csv_volume_rows(ctrl, clip_id)
    assert _shown(ctrl, clip_id) == shown
    for name, key in FIGURE_OF.items():
        row = rows[name]
        assert (row["status"], row["value"], row["frame"]) == ("accepted", row["proposed_value"], row["proposed_frame"])
        assert float(row["value"]) == shown[key], name

    # an edit: the ES cavity drawn 10 % narrower (unrounded points) is measured anew, on screen and in the export
    lv_es = np.asarray(_polygon(ctrl, clip_id, es, "lv"), np.float64)
    centre = lv_es.mean(axis=0)
    narrower = [[float(x), float(y)] for x, y in centre + (lv_es - centre) * [0.9, 1.0]]
    on_screen = [{"frame": c["frame"], "structure": c["structure"],
                  "polygon": narrower if (c["frame"], c["structure"]) == (es, "lv") else c["polygon"]}
                 for c in contour_review.contours_for(ctrl.store, clip_id) if c["frame"] in (ed, es)]
    live = ctrl.live_volumes({"clip_id": clip_id, "ed_frame": ed, "es_frame": es, "contours": on_screen})
    _review(ctrl, clip_id, es, "lv", "corrected", narrower)
    after = _shown(ctrl, clip_id)
    rows = _csv_volume_rows(ctrl, clip_id)
    assert after["esv_ml"] < shown["esv_ml"] and after["edv_ml"] == shown["edv_ml"]
    assert {k: after[k] for k in FIGURE_OF.values()} == {k: live[k] for k in FIGURE_OF.values()}
    for name, key in FIGURE_OF.items():  # an ES edit: ESV and EF are corrected, EDV stays accepted
        assert rows[name]["status"] == ("accepted" if name == "lvedv" else "corrected"), name
        assert float(rows[name]["value"]) == after[key], name
    assert float(rows["lvesv"]["proposed_value"]) == shown["esv_ml"]  # the model's figure stays beside it


def test_an_edited_atrium_on_an_accepted_frame_makes_the_figures_corrected(a4c):
    """The LA contour shapes the annulus, so it enters the LV figures: accepted LVs beside an edited
    atrium are no longer the proposal, and the export says so."""
    ctrl, clip_id = a4c
    shown = _shown(ctrl, clip_id)
    ed, es = shown["ed_frame"], shown["es_frame"]
    _review(ctrl, clip_id, ed, "lv", "accepted")
    _review(ctrl, clip_id, es, "lv", "accepted")
    la = _polygon(ctrl, clip_id, es, "la")
    height = ctrl.store.clip(clip_id).height_px
    _review(ctrl, clip_id, es, "la", "corrected", [[x, min(y + 2.0, height)] for x, y in la])  # 2 px lower
    rows = _csv_volume_rows(ctrl, clip_id)
    after = _shown(ctrl, clip_id)
    for name, key in FIGURE_OF.items():  # the atrium of the ES frame: ESV and EF
        assert rows[name]["status"] == ("accepted" if name == "lvedv" else "corrected"), name
        assert float(rows[name]["value"]) == after[key], name
    # corrected back to exactly the proposed points: the proposal again
    _review(ctrl, clip_id, es, "la", "corrected", la)
    rows = _csv_volume_rows(ctrl, clip_id)
    assert {r["status"] for n, r in rows.items() if n in FIGURE_OF} == {"accepted"}
    assert all(rows[n]["value"] == rows[n]["proposed_value"] for n in FIGURE_OF)


def test_the_proposed_figures_are_the_review_rule_on_the_proposed_polygons(a4c):
    """What makes the three numbers one: the proposer measures its own polygons with the function
    the viewer and the export use."""
    ctrl, clip_id = a4c
    clip = ctrl.store.clip(clip_id)
    stored = {v.measurement: v for v in contours.volumes(ctrl.store, clip_id)}
    items = [{"frame": p.frame_index, "structure": p.structure, "polygon": p.polygon}
             for p in contours.contour_proposals(ctrl.store, clip_id)]
    again = contour_volumes.lv_volumes(items, width_px=clip.width_px, height_px=clip.height_px,
                                       cm_per_px=contour_volumes.clip_cm_per_px(clip),
                                       ed_frame=stored["lvedv"].frame_index, es_frame=stored["lvesv"].frame_index)
    assert (again["edv_ml"], again["esv_ml"], again["ef_percent"]) == (
        stored["lvedv"].value, stored["lvesv"].value, stored["lvef"].value)
