"""LV volumes of apical contours in the review UI: the Python rule behind the live EDV/ESV/EF."""

from __future__ import annotations

import math

import pytest
from ui_fixtures import APICAL_LV_ED, APICAL_LV_ES, apical_contour_items, ellipse, prepare_store

from echomeasure import contour_volumes
from echomeasure.errors import StoreError
from echomeasure.propose import volumes
from echomeasure.store.contours import add_contours
from echomeasure.ui.controller import ReviewController

CM_PER_PX = 0.05


def _spheroid_ml(half_width_px: float, half_length_px: float) -> float:
    return 4.0 / 3.0 * math.pi * (half_width_px * CM_PER_PX) ** 2 * (half_length_px * CM_PER_PX)


def test_method_of_discs_on_an_ellipse_contour_matches_the_spheroid_volume():
    items = apical_contour_items(3, 10)
    got = contour_volumes.lv_volumes(items, width_px=640, height_px=480, cm_per_px=CM_PER_PX, ed_frame=3, es_frame=10)
    edv, esv = _spheroid_ml(*APICAL_LV_ED[2:]), _spheroid_ml(*APICAL_LV_ES[2:])
    assert got["edv_ml"] == pytest.approx(edv, rel=0.05)
    assert got["esv_ml"] == pytest.approx(esv, rel=0.05)
    assert got["ef_percent"] == pytest.approx(volumes.ef_percent(got["edv_ml"], got["esv_ml"]), abs=0.05)
    assert got["note"] is None


def test_the_figures_are_the_propose_rule_on_the_rasterised_label_map():
    items = apical_contour_items(3, 10)
    labels = contour_volumes.label_map(items, 3, 640, 480)
    assert set(map(int, labels[labels > 0].ravel())) == {1, 3}  # LV cavity and LA, CAMUS values
    axis = volumes.lv_axis(labels)
    assert axis is not None
    got = contour_volumes.lv_volumes(items, width_px=640, height_px=480, cm_per_px=CM_PER_PX, ed_frame=3, es_frame=10)
    assert got["edv_ml"] == round(volumes.mod_single_plane_ml(axis, CM_PER_PX), 2)


def test_phases_and_what_gives_no_volume():
    items = apical_contour_items(3, 10)
    assert contour_volumes.phase_frames(items) == (3, 10)  # largest LV area = ED
    assert contour_volumes.phase_frames(items[:2]) == (None, None)
    assert contour_volumes.is_apical_set(items)
    assert not contour_volumes.is_apical_set([*items, {"frame": 3, "structure": "septum", "polygon": items[0]["polygon"]}])
    no_cal = contour_volumes.lv_volumes(items, width_px=640, height_px=480, cm_per_px=None, ed_frame=3, es_frame=10)
    assert no_cal["edv_ml"] is None and "calibration" in no_cal["note"]
    no_es = contour_volumes.lv_volumes(items, width_px=640, height_px=480, cm_per_px=CM_PER_PX, ed_frame=3, es_frame=None)
    assert no_es["ef_percent"] is None and "end-systolic" in no_es["note"]
    assert contour_volumes.polygon_area_px([[0, 0], [10, 0], [10, 5], [0, 5]]) == 50.0


@pytest.fixture()
def apical_clip(tmp_path):
    from echomeasure.store import open_store

    info = prepare_store(tmp_path)
    store = open_store(info.url)
    ctrl = ReviewController(store)
    screen = ctrl.open_clip(info.clip_id, "Dr A")
    ed, es = screen.clip["ed_frame"], screen.clip["es_frame"]
    add_contours(store, info.clip_id, apical_contour_items(ed, es))
    yield ctrl, info.clip_id, ed, es
    store.close()


def test_opening_a_clip_with_apical_contours_shows_their_volumes(apical_clip):
    ctrl, clip_id, ed, es = apical_clip
    clip = ctrl.store.clip(clip_id)
    cm = contour_volumes.clip_cm_per_px(clip)
    assert cm is not None
    shown = ctrl.open_clip(clip_id, "Dr A").clip["volumes"]
    expected = contour_volumes.lv_volumes(apical_contour_items(ed, es), width_px=clip.width_px,
                                          height_px=clip.height_px, cm_per_px=cm, ed_frame=ed, es_frame=es)
    assert shown == expected and shown["ef_percent"] is not None


def test_live_volumes_follow_an_edited_contour_and_refuse_bad_requests(apical_clip):
    ctrl, clip_id, ed, es = apical_clip
    items = [{k: c[k] for k in ("frame", "structure", "polygon")} for c in apical_contour_items(ed, es)]
    payload = {"clip_id": clip_id, "ed_frame": ed, "es_frame": es, "contours": items}
    before = ctrl.live_volumes(payload)
    wider = [dict(c, polygon=ellipse(320.0, 215.0, 36.0, 65.0)) if (c["frame"], c["structure"]) == (es, "lv") else c
             for c in items]
    after = ctrl.live_volumes({**payload, "contours": wider})
    assert after["esv_ml"] > before["esv_ml"] * 1.2 and after["edv_ml"] == before["edv_ml"]
    assert after["ef_percent"] < before["ef_percent"]
    assert ctrl.live_volumes({"clip_id": clip_id})["edv_ml"] is None  # nothing to measure: no error
    assert "needs its clip" in ctrl.live_volumes({"contours": items})["note"]
    with pytest.raises(StoreError, match="needs its clip"):
        contour_volumes.live_volumes(ctrl.store, {"clip_id": "x"})


def test_plax_contours_give_no_volumes(apical_clip):
    ctrl, clip_id, ed, _ = apical_clip
    septum = {"frame": ed, "structure": "septum", "polygon": [[300, 100], [340, 100], [320, 140]], "confidence": 0.9}
    add_contours(ctrl.store, clip_id, [septum])
    assert ctrl.open_clip(clip_id, "Dr A").clip["volumes"] is None


def test_live_volumes_refuse_what_the_store_would_refuse(apical_clip):
    """The viewer's live request is public: a vertex of 1e12 cost 12-15 s of CPU per 1 kB request
    (int32 overflow in the rasteriser) and a negative frame was taken; both are refused now with
    the store's own polygon rule, and the rasteriser holds any vertex to the image."""
    from echomeasure.propose import volumes
    from echomeasure.store.contours import MAX_CONTOUR_VERTICES

    ctrl, clip_id, ed, es = apical_clip
    items = [{k: c[k] for k in ("frame", "structure", "polygon")} for c in apical_contour_items(ed, es)]
    payload = {"clip_id": clip_id, "ed_frame": ed, "es_frame": es, "contours": items}
    huge = [dict(items[0], polygon=[[1e12, 1], [-1e12, 3], [4, 1e12]])]
    with pytest.raises(StoreError, match="outside the"):
        contour_volumes.live_volumes(ctrl.store, {**payload, "contours": huge})
    with pytest.raises(StoreError, match="not a frame"):
        contour_volumes.live_volumes(ctrl.store, {**payload, "ed_frame": -5})
    with pytest.raises(StoreError, match="not a frame"):
        contour_volumes.live_volumes(ctrl.store, {**payload, "es_frame": 10**400})
    with pytest.raises(StoreError, match="needs its clip"):
        contour_volumes.live_volumes(ctrl.store, {**payload, "es_frame": float("inf")})
    many = [dict(items[0], polygon=[[1.0 + i % 50, 1.0 + i // 50] for i in range(MAX_CONTOUR_VERTICES + 1)])]
    with pytest.raises(StoreError, match="at most"):
        contour_volumes.live_volumes(ctrl.store, {**payload, "contours": many})
    with pytest.raises(StoreError, match="at most"):
        contour_volumes.live_volumes(ctrl.store, {**payload, "contours": items * 20})
    # the rule itself, called directly with such a vertex: bounded to the image
    label = volumes.contour_label_map([{"frame": 0, "structure": "lv", "polygon": huge[0]["polygon"]}], 0, 64, 48)
    assert label.shape == (48, 64)


def test_a_stored_contour_has_a_bounded_number_of_vertices(apical_clip):
    from echomeasure.store.contours import MAX_CONTOUR_VERTICES, add_contour_review, contour_proposals

    ctrl, clip_id, ed, _ = apical_clip
    lv = next(p for p in contour_proposals(ctrl.store, clip_id) if p.structure == "lv" and p.frame_index == ed)
    too_many = [[100.0 + (i % 200), 100.0 + i // 200] for i in range(MAX_CONTOUR_VERTICES + 1)]
    with pytest.raises(StoreError, match="at most"):
        add_contour_review(ctrl.store, clip_id, "corrected", "Dr A", contour_proposal_id=lv.id, polygon=too_many)
    assert not any(r.contour_proposal_id == lv.id for r in _contour_reviews(ctrl.store, clip_id))


def _contour_reviews(store, clip_id):
    from echomeasure.store.contours import contour_reviews

    return contour_reviews(store, clip_id)
