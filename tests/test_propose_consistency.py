"""Anatomical consistency of the PLAX caliper set and the low-confidence flag rule."""

from __future__ import annotations

import numpy as np
import pytest

from echomeasure.catalog import KEYPOINTS_2D
from echomeasure.propose import consistency, flags
from echomeasure.synthetic import styles
from echomeasure.synthetic.plax import linear_values_cm

K = {name: i for i, name in enumerate(KEYPOINTS_2D)}


def _truth(seed: int, style: str = "classic"):
    cine = styles.render_styled_plax_case(seed, style, small=True, frames=[0])
    kp = np.asarray([f["keypoints"] for f in cine.truth["frames"]], dtype=float)
    ed, es = cine.truth["ed_frame"], cine.truth["es_frame"]
    return kp[ed], kp[es], cine.cm_per_px * 10.0


@pytest.mark.parametrize("style", styles.STYLE_FAMILIES)
def test_true_point_sets_pass(style):
    rejected = 0
    for seed in range(9_000_000, 9_000_008):
        ed, es, mm = _truth(seed, style)
        _, _, factors, why = consistency.consistency_factors(ed, es, mm)
        rejected += sum(f == consistency.REJECT_FACTOR for f in factors.values())
    assert rejected == 0


def test_point_on_the_wrong_structure_is_rejected():
    ed, es, mm = _truth(9_000_001)
    # the LA posterior wall caliper lands 4.5 cm further back (far beyond the atrium)
    bad = es.copy()
    d = bad[K["la_posterior"]] - bad[K["la_anterior"]]
    bad[K["la_posterior"]] += d / np.hypot(*d) * (45.0 / mm)
    _, _, factors, why = consistency.consistency_factors(ed, bad, mm)
    assert factors["la"] == consistency.REJECT_FACTOR
    assert "la/aortic_root" in why["la"]
    assert factors["lvids"] == 1.0


def test_one_point_off_its_line_is_moved_back_and_confidence_lowered():
    ed, es, mm = _truth(9_000_002)
    bad = ed.copy()
    lv = bad[K["lv_pw"]] - bad[K["septum_lv"]]
    normal = np.array([-lv[1], lv[0]]) / np.hypot(*lv)
    bad[K["pw_pericardium"]] += normal * (5.0 / mm)  # 5 mm sideways
    fixed, _, factors, why = consistency.consistency_factors(bad, es, mm)
    assert factors["lvpwd"] == consistency.REPAIR_FACTOR
    assert np.hypot(*(fixed[K["pw_pericardium"]] - ed[K["pw_pericardium"]])) * mm < 1.0
    assert factors["ivsd"] == 1.0


def test_points_out_of_order_and_a_systolic_diameter_larger_than_diastole_are_rejected():
    ed, es, mm = _truth(9_000_003)
    swapped = ed.copy()
    swapped[[K["septum_lv"], K["rv_septum"]]] = swapped[[K["rv_septum"], K["septum_lv"]]]
    _, _, factors, _ = consistency.consistency_factors(swapped, es, mm)
    assert factors["ivsd"] == consistency.REJECT_FACTOR
    # ES set taken from the ED frame scaled up: LVIDs > LVIDd
    big = es.copy()
    c = 0.5 * (big[K["septum_lv"]] + big[K["lv_pw"]])
    for name in ("septum_lv", "lv_pw"):
        big[K[name]] = c + (big[K[name]] - c) * (1.3 * linear_values_cm(ed[None], 1.0)["lvidd"][0]
                                                   / linear_values_cm(es[None], 1.0)["lvidd"][0])
    problems = consistency.check_ed_es(ed, big, mm)
    assert "lvids" in problems


def test_flag_rule_is_the_registry_threshold_with_its_guards():
    assert flags.flag_threshold({"low_confidence_below": 0.2, "flagged_mae_ratio": 2.0}) == 0.2
    # the confidence did not rank errors held-out: only the floor flags
    assert flags.flag_threshold({"low_confidence_below": 0.2, "flagged_mae_ratio": 1.0, "confidence_floor": 0.01}) == 0.01
    assert flags.flag_threshold({}) == flags.LOW_CONFIDENCE_THRESHOLD
    assert flags.is_flagged(0.1, 0.2) and not flags.is_flagged(0.3, 0.2)
    assert flags.is_flagged(0.0, 0.0)  # an implausible value is always flagged
    assert not flags.is_flagged(None, 0.2)


def test_a_repair_that_would_leave_the_image_rejects_instead():
    ed, es, mm = _truth(9_000_002)
    bad = ed.copy()
    lv = bad[K["lv_pw"]] - bad[K["septum_lv"]]
    normal = np.array([-lv[1], lv[0]]) / np.hypot(*lv)
    bad[K["pw_pericardium"]] += normal * (5.0 / mm)
    # an image that ends just past the posterior wall: the point's place on its line is outside it
    tight = (int(np.ceil(bad[:, 0].max())) + 1, int(np.ceil(bad[K["lv_pw"], 1])) + 1)
    rep = consistency.check_plax_set(bad, mm, "ed", image_wh=tight)
    assert "lvpwd" in rep.rejected and not rep.repaired
    rep = consistency.check_plax_set(bad, mm, "ed")
    assert rep.repaired == {"pw_pericardium"}
