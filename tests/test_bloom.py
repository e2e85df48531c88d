"""Re-imaging through a point-spread function (BloomAugment) and the edge search's bloom
correction (propose.interface_offset): bright tissue blooms into the blood on the display, and the
correction puts the caliper back on the interface without moving sharp edges."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from echomeasure.propose import edges
from echomeasure.propose.interface_offset import (
    BLOOD_INTERFACES,
    COEFFICIENTS_FILE,
    GRID_MM,
    fit_coefficients,
    profile_features,
    sample_profiles,
    shipped_model,
)
from echomeasure.training.augment import BloomAugment, segmentation_augment

PX_PER_MM = 3.0
INTERFACE_Y = 150  # blood above, tissue from this row down


def _wall_frame(blood_grey: int = 12, tissue_grey: int = 150) -> np.ndarray:
    """A disc-shaped sector: blood (dark, speckle-free) above a tissue band, black around, a
    text label outside the sector."""
    frame = np.zeros((300, 300, 3), np.uint8)
    sector = np.zeros((300, 300), np.uint8)
    cv2.circle(sector, (150, 150), 140, 1, -1)
    grey = np.where(np.arange(300)[:, None] >= INTERFACE_Y, tissue_grey, blood_grey)
    grey = np.broadcast_to(grey, (300, 300))
    frame[sector > 0] = grey[sector > 0, None]
    cv2.putText(frame, "HR 60", (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (200, 200, 200), 1)
    return frame


def _half_rise_row(frame: np.ndarray, x: int = 150) -> float:
    """Row (sub-pixel) where the column profile, averaged over 11 columns, first reaches half its rise."""
    col = frame[:, x - 5 : x + 6].mean(axis=(1, 2))
    lo, hi = np.median(col[60:100]), np.median(col[200:240])
    above = np.flatnonzero(col[100:200] >= (lo + hi) / 2.0) + 100
    return float(above[0])


def test_bloom_smears_tissue_into_the_blood_and_leaves_the_surround_alone():
    frame = _wall_frame()
    rows = []
    for seed in range(6):
        out = BloomAugment(p=1.0, psf_axial_mm=(0.8, 0.9))(frame, np.random.default_rng(seed), PX_PER_MM)
        assert out.shape == frame.shape and out.dtype == np.uint8
        outside = np.ones(frame.shape[:2], bool)
        cv2.circle(outside.view(np.uint8), (150, 150), 141, 0, -1)
        assert np.array_equal(out[outside], frame[outside])  # text and surround untouched
        rows.append(_half_rise_row(out))
    # the displayed ramp reaches into the blood: its half-rise row lies above the interface
    assert np.median(rows) < INTERFACE_Y - 1.0
    assert _half_rise_row(frame) == INTERFACE_Y


def test_bloom_draws_nothing_when_it_does_not_fire():
    frame = _wall_frame()
    assert BloomAugment(p=0.0)(frame, np.random.default_rng(0), PX_PER_MM) is frame


def test_segmentation_augment_blooms_only_when_asked_and_scales_the_psf_to_the_model_input():
    assert segmentation_augment(True, False).bloom is None
    aug = segmentation_augment(False, False, bloom=True, input_px=160)
    assert aug is not None and aug.bloom is not None and aug.bloom_px_per_mm == pytest.approx(1.0)
    assert aug.to_dict()["bloom"]["psf_axial_mm"] == list(BloomAugment().psf_axial_mm) or \
        tuple(aug.to_dict()["bloom"]["psf_axial_mm"]) == BloomAugment().psf_axial_mm
    image = _wall_frame()[::2, ::2].copy()
    labels = (np.arange(150)[:, None] >= INTERFACE_Y // 2).astype(np.uint8).repeat(150, 1)
    _, out_labels = aug(image, labels, np.random.default_rng(3))
    assert set(np.unique(out_labels)) <= {0, 1}


def _search_and_correct(frame: np.ndarray, start_row: float) -> tuple[float, float]:
    """(row of the strongest step, row after the bloom correction) searching down column 150."""
    found = edges.refine_to_edges(frame, np.array([[150.0, start_row]]), np.array([[0.0, 1.0]]), [edges.RISING],
                                  7.0 * PX_PER_MM, step_span_px=edges.STEP_SPAN_MM * PX_PER_MM,
                                  dark_span_px=edges.DARK_SPAN_MM * PX_PER_MM,
                                  across_half_width_px=edges.ACROSS_HALF_WIDTH_MM * PX_PER_MM,
                                  smooth_px=edges.SMOOTH_MM * PX_PER_MM)
    assert found.found[0]
    model = shipped_model()
    assert model is not None
    chosen = found.points_xy[0]
    offset_mm = model.offsets_mm(sample_profiles(frame, chosen[None], np.array([[0.0, 1.0]]), PX_PER_MM), ["lv_pw"])[0]
    return float(chosen[1]), float(chosen[1] + offset_mm * PX_PER_MM)


def test_the_correction_moves_a_bloomed_interface_back_towards_the_tissue():
    before, after = [], []
    for seed in range(8):
        out = BloomAugment(p=1.0, psf_axial_mm=(0.6, 0.9), floor_grey=(0.2, 0.4))(
            _wall_frame(), np.random.default_rng(seed), PX_PER_MM)
        step_row, corrected_row = _search_and_correct(out, INTERFACE_Y - 4.0)
        before.append(step_row - INTERFACE_Y)
        after.append(corrected_row - INTERFACE_Y)
    assert np.median(before) < -1.0  # the strongest step lies in the blood (pixels)
    assert abs(np.median(after)) < abs(np.median(before)) * 0.6


def test_the_correction_leaves_a_sharp_dark_blooded_interface_nearly_alone():
    frame = cv2.GaussianBlur(_wall_frame(blood_grey=5), (0, 0), 1.0)
    step_row, corrected_row = _search_and_correct(frame, INTERFACE_Y + 3.0)
    assert abs(corrected_row - step_row) < 0.5 * PX_PER_MM  # under 0.5 mm


def test_shipped_coefficients_match_the_code_and_say_how_they_were_made():
    data = json.loads(COEFFICIENTS_FILE.read_text())
    assert np.allclose(data["grid_mm"], GRID_MM)
    assert len(data["coef"]) == profile_features(np.zeros((1, len(GRID_MM))), ["lv_pw"], data["keypoints"]).shape[1]
    assert set(data["keypoints"]) == set(BLOOD_INTERFACES) and set(BLOOD_INTERFACES) <= set(edges.PLAX_INTERFACES)
    assert data["command"].startswith("python -m echomeasure.training.interface_offset_fit --cases ")
    assert "--seed" in data["command"] and data["data"]["styles"] == ["classic", "vendor", "rf"]  # training families only
    assert "scatter" not in json.dumps(data["data"])
    # the check on the training families' tuning seeds: bloomed frames got closer to the truth
    before, after = data["check"]["before"], data["check"]["after"]
    for family in ("classic+bloom", "vendor+bloom"):
        assert after[family]["mae_mm"] < before[family]["mae_mm"]


def test_ridge_fit_recovers_a_known_offset():
    rng = np.random.default_rng(0)
    profiles = rng.uniform(0, 200, (400, len(GRID_MM)))
    x = profile_features(profiles)
    true = np.zeros(x.shape[1])
    true[len(GRID_MM) + 3] = 0.5  # the constant term: every interface 0.5 mm further into the tissue
    coef = fit_coefficients(profiles, x @ true, ridge=1e-6)
    assert np.allclose(x @ coef, 0.5, atol=1e-3)


def test_refine_plax_keypoints_without_the_correction_is_the_plain_step_search():
    frame = _wall_frame()
    frame = BloomAugment(p=1.0)(frame, np.random.default_rng(1), PX_PER_MM)
    channels = ["septum_lv", "lv_pw"]
    kp = np.array([[150.0, 60.0], [150.0, INTERFACE_Y - 3.0]])
    plain = edges.refine_plax_keypoints(frame, kp, channels, PX_PER_MM, bloom_correction=False)
    corrected = edges.refine_plax_keypoints(frame, kp, channels, PX_PER_MM)
    assert plain.found[1] and corrected.found[1]
    # the search itself (what the confidence judges) is the same; only the point moved, along the line
    assert corrected.interface_shift_px[1] == pytest.approx(plain.shift_px[1])
    assert corrected.points_xy[1, 0] == pytest.approx(plain.points_xy[1, 0])
    assert corrected.points_xy[1, 1] != pytest.approx(plain.points_xy[1, 1])


def test_fit_command_is_reproducible_and_refuses_seeds_outside_training(tmp_path, capsys):
    from echomeasure.training import interface_offset_fit

    outs = []
    for name in ("a.json", "b.json"):
        assert interface_offset_fit.main(["--cases", "1", "--check-cases", "1", "--out", str(tmp_path / name)]) == 0
        outs.append(json.loads((tmp_path / name).read_text()))
    assert outs[0] == outs[1]
    assert outs[0]["command"] == "python -m echomeasure.training.interface_offset_fit --cases 1 --seed 0 --check-cases 1"
    assert outs[0]["data"]["samples"] > 5
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        interface_offset_fit.main(["--cases", "2000000", "--out", str(tmp_path / "c.json")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --cases 2000000")
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize("out", ["missing_folder/x.json", "."])
def test_fit_command_refuses_an_unwritable_output_before_fitting(tmp_path, capsys, monkeypatch, out):
    from echomeasure.training import interface_offset_fit

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(interface_offset_fit, "fit", lambda *a: pytest.fail("fitted before checking --out"))
    with pytest.raises(SystemExit) as exc:
        interface_offset_fit.main(["--out", out])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --out ")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_fit_refuses_the_held_out_family_and_unknown_families(tmp_path, capsys):
    """The bloom correction may be fitted on named training families, never on the held-out one."""
    from echomeasure.synthetic.styles import HELDOUT_STYLE
    from echomeasure.training import interface_offset_fit

    for styles in (f"classic,{HELDOUT_STYLE}", "classic,nosuchfamily"):
        with pytest.raises(SystemExit) as exc:
            interface_offset_fit.main(["--cases", "1", "--check-cases", "1", "--styles", styles,
                                       "--out", str(tmp_path / "c.json")])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --styles") and len(err.splitlines()) == 1
    assert not (tmp_path / "c.json").exists()


def test_fit_on_named_families_records_them_in_its_command(tmp_path):
    from echomeasure.training import interface_offset_fit

    out = tmp_path / "c.json"
    assert interface_offset_fit.main(["--cases", "1", "--check-cases", "1", "--styles", "vendor", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["command"].endswith("--check-cases 1 --styles vendor")
    assert data["data"]["styles"] == ["vendor"]
    assert set(data["check"]["before"]) <= {"vendor", "vendor+bloom"}
