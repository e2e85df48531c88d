"""The ``rf`` style family: pulse-echo image formation on the classic anatomy, with the studio's truth."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from echomeasure.catalog import KEYPOINTS_2D, LINEAR_ENDPOINTS
from echomeasure.synthetic import anatomy, apical, styles
from echomeasure.synthetic.rf import RfRenderer, sample_rf_look
from echomeasure.synthetic.ultrasound import ScanConverter, SectorGeometry

K = {name: i for i, name in enumerate(KEYPOINTS_2D)}

# a 12 cm, 60 degree sector on a 480 x 640 image (the polar grid of a small study)
GEOM = SectorGeometry(480, 640, 320, 40, 0.03, 12.0, 60.0, 0.0, 168, 501)


def _look(mhz: float, seed: int = 5, **changes):
    """A drawn look with the settings a profile test needs fixed: fundamental ``mhz``, bandwidth 0.6,
    focus at the interface, exact TGC, 60 dB range, no reverberation, smooth interfaces."""
    base = sample_rf_look(np.random.default_rng(seed))
    fixed = {"harmonic": False, "transmit_mhz": mhz, "centre_mhz": mhz, "bandwidth": 0.6, "focus_cm": 6.0,
             "specular_db": 6.0, "roughness_deg": 20.0, "tgc_slope": 1.0, "tgc_error_db": (0.0,) * 6,
             "dynamic_range_db": 60.0, "myo_grey": 0.55, "gamma": 1.0, "noise_db": 4.0, "reverberation": 0.0}
    return dataclasses.replace(base, **(fixed | changes))


def _planar_profile(look, shallow: int, deep: int, interface_cm: float = 6.0):
    """Mean display grey per depth over the central beams and 4 frames, across a flat interface
    perpendicular to every beam (``shallow`` class above it, ``deep`` below), and the interface depth."""
    conv = ScanConverter(GEOM)
    i0 = int(round(interface_cm / conv.dr_cm))
    cls = np.full((GEOM.n_samples, GEOM.n_beams), shallow, np.uint8)
    cls[i0:] = deep
    rf = RfRenderer(conv, look, 123, 0.0)
    beams = slice(GEOM.n_beams // 5, -GEOM.n_beams // 5)
    prof = np.mean([rf.polar(cls, i)[:, beams].mean(axis=1) for i in range(4)], axis=0)
    return conv.sample_depth_cm, prof, (i0 - 0.5) * conv.dr_cm


def _ramp_mm(z, prof, z_int, look, into_blood: int) -> tuple[float, float]:
    """(peak offset from the interface, width of the ramp into blood at half the peak's height above blood), mm."""
    win = np.abs(z - z_int) < 3 * look.pulse_length_cm
    ipk = int(np.flatnonzero(win)[np.argmax(prof[win])])
    blood_zone = (into_blood * (z - z_int) > 1.0) & (into_blood * (z - z_int) < 2.0)
    blood = float(prof[blood_zone].mean())
    half = blood + 0.5 * (prof[ipk] - blood)
    j = ipk
    while prof[j] > half:
        j += into_blood
    k = j - into_blood  # last sample above the half level
    zh = z[k] + (z[j] - z[k]) * (prof[k] - half) / (prof[k] - prof[j])
    return (z[ipk] - z_int) * 10.0, abs(zh - z_int) * 10.0


@pytest.mark.parametrize(("shallow", "deep", "into_blood"), [(anatomy.E_LV, anatomy.E_MYO, -1),
                                                              (anatomy.E_SEPTUM, anatomy.E_LV, +1)])
def test_a_wall_interface_is_a_blurred_specular_echo_that_ramps_into_blood_wider_at_lower_frequency(
        shallow, deep, into_blood):
    widths = {}
    for mhz in (1.8, 3.8):
        look = _look(mhz)
        z, prof, z_int = _planar_profile(look, shallow, deep)
        offset_mm, widths[mhz] = _ramp_mm(z, prof, z_int, look, into_blood)
        # the brightest point is the interface echo, within a pulse length of the true interface
        assert abs(offset_mm) <= look.pulse_length_cm * 10.0, (mhz, offset_mm)
        tissue_zone = (-into_blood * (z - z_int) > 1.0) & (-into_blood * (z - z_int) < 2.0)
        blood_zone = (into_blood * (z - z_int) > 1.0) & (into_blood * (z - z_int) < 2.0)
        peak = prof[np.abs(z - z_int) < look.pulse_length_cm].max()
        assert peak > prof[tissue_zone].mean() + 20, "the specular echo stands out of the myocardial speckle"
        assert prof[blood_zone].mean() < 12 < 100 < prof[tissue_zone].mean(), "blood near black, myocardium grey"
    # the ramp into blood is the pulse's tail through log compression: longer pulse, wider ramp
    assert widths[1.8] > 1.3 * widths[3.8], widths
    assert 0.1 < widths[3.8] < widths[1.8] < 2.0


def test_specular_echo_depends_on_the_angle_between_beam_and_interface():
    conv = ScanConverter(GEOM)
    rf = RfRenderer(conv, _look(2.5, roughness_deg=40.0), 1, 0.0)
    n_s, n_b = GEOM.n_samples, GEOM.n_beams
    i0, b0 = n_s // 2, n_b // 2
    across = np.full((n_s, n_b), anatomy.E_LV, np.uint8)
    across[i0:] = anatomy.E_MYO  # interface facing the beams
    along = np.full((n_s, n_b), anatomy.E_LV, np.uint8)
    along[:, b0:] = anatomy.E_MYO  # interface along a beam
    spec_across = rf.specular(rf.impedance_map(across))
    spec_along = rf.specular(rf.impedance_map(along))
    z_blood, z_myo = rf.look.impedance[anatomy.E_LV], rf.look.impedance[anatomy.E_MYO]
    expected = (z_myo - z_blood) / (z_myo + z_blood) * 10 ** (rf.look.specular_db / 20)
    assert spec_across[i0, n_b // 4 : -n_b // 4] == pytest.approx(expected, rel=1e-3)
    assert np.count_nonzero(spec_across) == n_b  # one row of reflectors
    assert not spec_along.any()  # a beam running along a wall gets no specular echo
    # a 45-degree interface reflects exp(-(45 / 40)^2) = 0.28 of a facing one
    ii, bb = np.mgrid[0:n_s, 0:n_b]
    r = conv.sample_depth_cm[:, None]
    lateral_cm = (bb - b0) * conv.dbeam_rad * r
    oblique = np.where(r - 6.0 > lateral_cm, anatomy.E_MYO, anatomy.E_LV).astype(np.uint8)
    spec_oblique = np.abs(rf.specular(rf.impedance_map(oblique)))
    near = (np.abs(r - 6.0) < 1.0) & (spec_oblique > 0)
    assert 0.15 * expected < float(np.median(spec_oblique[near])) < 0.5 * expected


def test_rf_plax_keeps_the_classic_truth_and_changes_only_the_image():
    seed, frames = 9_000_003, [0, 3]
    rf = styles.render_styled_plax_case(seed, "rf", small=True, frames=frames, labels=True)
    classic = styles.render_styled_plax_case(seed, "classic", small=True, frames=frames, labels=True)
    assert rf.truth["style"]["family"] == "rf" and rf.truth["style"]["rf"]["centre_mhz"] >= 1.7
    np.testing.assert_array_equal(rf.keypoints, classic.keypoints)
    np.testing.assert_array_equal(rf.labels, classic.labels)
    assert rf.regions == classic.regions and rf.cm_per_px == classic.cm_per_px
    assert rf.truth["measurements"] == classic.truth["measurements"]
    assert rf.truth["frames"] == classic.truth["frames"]
    assert (rf.ed_frame, rf.es_frame) == (classic.ed_frame, classic.es_frame)
    assert np.abs(rf.frames.astype(int) - classic.frames.astype(int)).mean() > 3
    # the banner shows the rf transmit frequency and display settings: they are the truth's params
    params = rf.truth["params"]
    assert params["frequency_mhz"] == pytest.approx(rf.truth["style"]["rf"]["transmit_mhz"], abs=1e-3)
    assert params["speckle"]["dynamic_range_db"] == pytest.approx(rf.truth["style"]["rf"]["dynamic_range_db"], abs=0.05)
    # values are the lengths between the keypoints, on the truth's frames
    for name, (a, b) in LINEAR_ENDPOINTS.items():
        m = rf.truth["measurements"][name]
        kp = np.asarray(rf.truth["frames"][m["frame"]]["keypoints"])
        assert m["value"] == pytest.approx(float(np.hypot(*(kp[K[a]] - kp[K[b]]))) * rf.cm_per_px, abs=1e-3)
    json.dumps(rf.truth)  # JSON-able


def test_rf_is_deterministic_per_seed_and_any_frame_subset_renders_as_in_the_clip():
    a = styles.render_styled_plax_case(9_000_004, "rf", small=True, frames=[0, 1, 2])
    b = styles.render_styled_plax_case(9_000_004, "rf", small=True, frames=[2])
    np.testing.assert_array_equal(a.frames[2], b.frames[0])
    c = styles.render_styled_plax_case(9_000_005, "rf", small=True, frames=[2])
    assert not np.array_equal(b.frames[0], c.frames[0])
    p = styles.sample_styled_apical_params(apical.sample_apical_case_params(12, 0, "a4c", small=True), "rf")
    x = styles.render_styled_apical(p, "rf", frames=[1, 4], labels=False)
    y = styles.render_styled_apical(p, "rf", frames=[4], labels=False)
    np.testing.assert_array_equal(x.frames[1], y.frames[0])


def test_rf_tissue_scatterers_are_locked_to_the_heart_blood_ones_drawn_each_frame():
    from echomeasure.synthetic.plax import PlaxRenderer, frame_geometry, probe_to_heart

    params = styles.sample_styled_plax_params(np.random.default_rng(9_000_006), "rf", seed=9_000_006,
                                              image_size=(480, 640), n_frames=40)
    renderer = PlaxRenderer(params)
    look = styles.family_look(params.noise_seed, "rf").rf
    rf = RfRenderer(renderer.conv, look, params.noise_seed, params.chest_wall_cm)
    geo = frame_geometry(params, 0)
    cls = renderer._classes_polar(geo)
    heart = lambda x, z: probe_to_heart(params, geo, x, z)  # noqa: E731
    lines = [rf.rf_lines(cls, i, heart) for i in (0, 1)]
    fine = np.repeat(cls, rf.m, axis=0)
    spec = np.zeros(fine.shape, bool)
    spec.reshape(cls.shape[0], rf.m, -1)[:, rf.m - 1, :] = True  # where specular echoes are added
    tissue = np.isin(fine, (anatomy.E_MYO, anatomy.E_SEPTUM)) & ~spec
    blood = np.isin(fine, (anatomy.E_LV, anatomy.E_LA)) & ~spec
    np.testing.assert_array_equal(lines[0][tissue], lines[1][tissue])  # the same heart position: the same scatterers
    assert abs(np.corrcoef(lines[0][blood], lines[1][blood])[0, 1]) < 0.05  # blood flows: new scatterers
    # one frame later the heart has moved a little: where it moved less than a scatterer cell (dz) the
    # values stay (fresh scatterers every frame would keep none)
    geo1 = frame_geometry(params, 1)
    cls1 = renderer._classes_polar(geo1)
    nxt = rf.rf_lines(cls1, 1, lambda x, z: probe_to_heart(params, geo1, x, z))
    both = tissue & np.isin(np.repeat(cls1, rf.m, axis=0), (anatomy.E_MYO, anatomy.E_SEPTUM))
    assert np.mean(nxt[both] == lines[0][both]) > 0.05


@pytest.mark.parametrize("seed", [9_000_010, 9_000_011, 9_000_012])
def test_blood_is_darker_than_myocardium_in_rendered_plax(seed):
    cine = styles.render_styled_plax_case(seed, "rf", small=True, frames=[0], labels=True)
    g, lab = cine.frames[0, ..., 0].astype(float), cine.labels[0]
    blood = g[np.isin(lab, (1, 2, 3))].mean()  # LV, RV, LA cavities
    myo = g[np.isin(lab, (5, 6))].mean()  # septum, walls
    assert blood < 0.5 * myo and myo > 40


def test_rf_apical_keeps_the_classic_heart_and_its_labels():
    classic = apical.sample_apical_case_params(33, 0, "a2c", small=True)
    params = styles.sample_styled_apical_params(classic, "rf")
    assert params.heart == classic.heart and params.tilt_deg == classic.tilt_deg
    ed, es = apical.apical_ed_es_frames(params)
    cine = styles.render_styled_apical(params, "rf", frames=[ed, es], labels=True)
    plain = apical.render_apical(classic, frames=[ed, es], labels=True)
    np.testing.assert_array_equal(cine.labels, plain.labels)
    assert cine.regions == plain.regions
    assert cine.truth["volumes"] == plain.truth["volumes"]
    assert cine.truth["style"]["family"] == "rf" and cine.truth["style"]["shaped"] is False


def test_rf_doppler_is_the_classic_strip():
    rf = styles.render_styled_doppler_case(9_050_002, "rf", small=True)
    classic = styles.render_styled_doppler_case(9_050_002, "classic", small=True)
    np.testing.assert_array_equal(rf.image, classic.image)
    assert rf.regions == classic.regions and rf.peaks == classic.peaks
    assert rf.truth["style"]["family"] == "rf"


def test_rf_is_a_training_family_only_when_named():
    assert styles.STYLE_FAMILIES[:3] == ("classic", "scatter", "vendor")  # their random streams keep their codes
    assert styles.STYLE_FAMILIES[-1] == "rf"
    assert styles.DEFAULT_TRAINING_STYLES == ("classic", "vendor")
    assert "rf" in styles.TRAINING_STYLES and styles.HELDOUT_STYLE not in styles.TRAINING_STYLES
    assert styles.parse_styles("classic,vendor,rf") == ("classic", "vendor", "rf")


def test_rf_looks_cover_the_physical_ranges():
    looks = [sample_rf_look(np.random.default_rng(s)) for s in range(200)]
    fc = np.array([lk.centre_mhz for lk in looks])
    assert fc.min() >= 1.7 and fc.max() <= 4.0
    assert {lk.harmonic for lk in looks} == {True, False}
    for lk in looks:
        assert 0.4 <= lk.bandwidth <= 0.9 and 0.3 <= lk.attenuation_db_cm_mhz <= 0.7
        assert 40 <= lk.dynamic_range_db <= 70
        assert lk.level_db[anatomy.E_PERI] == max(lk.level_db)
        assert lk.level_db[anatomy.E_LV] == min(lk.level_db)
        if lk.harmonic:
            assert lk.centre_mhz == pytest.approx(2 * lk.transmit_mhz)
        # pulse length: a few wavelengths (c = 1540 m/s)
        wavelength_cm = 0.154 / lk.centre_mhz
        assert 0.5 < lk.pulse_length_cm / wavelength_cm < 6 * math.sqrt(2)


def test_cli_synth_writes_an_rf_plax_study(tmp_path):
    from echomeasure.cli import main

    assert main(["synth", str(tmp_path), "--cases", "1", "--small", "--style", "rf", "-q"]) == 0
    truth = json.loads((tmp_path / "case_0000.truth.json").read_text())
    assert truth["style"]["family"] == "rf" and truth["style"]["rf"]["bandwidth"] >= 0.4
