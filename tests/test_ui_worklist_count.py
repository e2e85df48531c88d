"""The worklist's "done" cell names what it counts: an apical clip's six contours read
'contours 0/6' (they read 'done 0/6', like six caliper measurements), a PLAX clip's calipers
'meas. 0/6', a clip with both shows both."""

from __future__ import annotations

from ui_fixtures import apical_contour_items, ellipse

from echomeasure.ui.controller import ReviewController
from echomeasure.ui.viewmodel import WORKLIST_HEADERS


def _done(ctrl: ReviewController, clip_id: int) -> str:
    return next(r for r in ctrl.worklist("all", "Dr A") if r[0] == clip_id)[WORKLIST_HEADERS.index("done")]


def test_apical_and_plax_clips_say_what_they_count(controller):
    from echomeasure import config
    from echomeasure.pipeline import ingest_path
    from echomeasure.propose.types import ModelInfo
    from echomeasure.store.contours import add_contour_review, add_contours, add_volumes

    ctrl, info = controller
    store = ctrl.store
    apical = ingest_path(config.EXAMPLES_DIR / "case_0000_a4c.dcm", store, secret=b"apical", run_models=False).clip.id
    model = ModelInfo("apical-seg", "test", "0" * 64)
    six = [*apical_contour_items(3, 10),
           {"frame": 3, "structure": "myocardium", "polygon": ellipse(320.0, 200.0, 50.0, 90.0), "confidence": 0.8},
           {"frame": 10, "structure": "myocardium", "polygon": ellipse(320.0, 215.0, 40.0, 75.0), "confidence": 0.8}]
    stored = add_contours(store, apical, six, model=model)
    add_volumes(store, apical, [{"name": n, "value": v, "unit": u, "frame": 3, "method": "single-plane A4C",
                                 "confidence": 0.9} for n, v, u in (("lvedv", 90.0, "ml"), ("lvesv", 40.0, "ml"),
                                                                    ("lvef", 55.0, "%"))], model=model)
    assert _done(ctrl, apical) == "contours 0/6"
    assert _done(ctrl, info.clip_id) == "meas. 0/6"
    assert _done(ctrl, info.doppler_clip_id) == "meas. 0/1"

    add_contour_review(store, apical, "rejected", "Dr A", contour_proposal_id=stored[0].id)
    assert _done(ctrl, apical) == "contours 1/6"
    assert next(r for r in ctrl.worklist("in review", "Dr A") if r[0] == apical)
    add_contour_review(store, apical, "reopened", "Dr A", contour_proposal_id=stored[0].id)
    assert _done(ctrl, apical) == "contours 0/6"  # reopened: to review again

    # a PLAX clip with calipers and contours shows both, each named
    clip = ctrl.open_clip(info.clip_id, "Dr A").clip
    add_contours(store, info.clip_id, apical_contour_items(clip["ed_frame"], clip["es_frame"]))
    store.add_review(info.clip_id, "lvidd", "accepted", "Dr A")
    assert _done(ctrl, info.clip_id) == "meas. 1/6 · contours 0/4"
