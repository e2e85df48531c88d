"""Synthetic studio: determinism, truth that matches the rendered anatomy, DICOM calibration."""

from __future__ import annotations

import json
import math

import numpy as np
import pydicom
import pytest

from echomeasure.catalog import CATALOG, DOPPLER_FLOWS, KEYPOINTS_2D, LINEAR_ENDPOINTS
from echomeasure.synthetic import (
    LABEL_CLASSES,
    ed_es_frames,
    plax_keypoints,
    render_doppler,
    render_plax,
    sample_doppler_params,
    sample_plax_params,
)
from echomeasure.synthetic.plax import RANGES_CM, frame_geometry, linear_values_cm, lvids_for_ef, teichholz_volume_ml
from echomeasure.synthetic.studio import CaseJob, plan_cases, write_case
from echomeasure.synthetic.types import (
    LABEL_AORTA,
    LABEL_BACKGROUND,
    LABEL_LA,
    LABEL_LV,
    LABEL_RV,
    LABEL_SEPTUM,
    LABEL_WALL,
)

K = {name: i for i, name in enumerate(KEYPOINTS_2D)}
SMALL = {"image_size": (240, 320), "n_frames": 12}


def _params(seed: int, **kw):
    return sample_plax_params(np.random.default_rng(seed), seed=seed, **kw)


# --------------------------------------------------------------------------- determinism


def test_same_seed_writes_byte_identical_dicom_and_truth(tmp_path):
    for run in ("a", "b"):
        for job in (CaseJob(0, "2d"), CaseJob(1, "doppler", "mv")):
            write_case(tmp_path / run, job, seed=11, small=True)
    for name in ("case_0000.dcm", "case_0000.truth.json", "case_0001.dcm", "case_0001.truth.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_different_seeds_give_different_cases():
    a, b = _params(1, **SMALL), _params(2, **SMALL)
    assert a.shape.lvidd_cm != b.shape.lvidd_cm
    fa = render_plax(a, frames=[0], labels=False).frames
    fb = render_plax(b, frames=[0], labels=False).frames
    assert not np.array_equal(fa, fb)


def test_a_subset_of_frames_renders_exactly_as_in_the_full_clip():
    p = _params(9, **SMALL)
    full = render_plax(p, labels=True)
    part = render_plax(p, frames=[7, 2], labels=True)
    assert part.frame_indices == (7, 2)
    assert np.array_equal(part.frames, full.frames[[7, 2]])
    assert np.array_equal(part.labels, full.labels[[7, 2]])
    assert np.array_equal(part.keypoints, full.keypoints[[7, 2]])
    assert (part.ed_frame, part.es_frame) == (full.ed_frame, full.es_frame)
    assert render_plax(p, frames=[0], labels=False).labels is None


def test_sampling_and_rendering_leave_the_global_rng_alone():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    p = _params(3, **SMALL)
    render_plax(p, frames=[0, 1])
    render_doppler(sample_doppler_params(np.random.default_rng(3), "av", image_size=(480, 640)))
    assert np.array_equal(before, np.random.get_state()[1])


# --------------------------------------------------------------------------- anatomy truth


def _label_at(lab: np.ndarray, pt: np.ndarray) -> int:
    x, y = int(round(pt[0])), int(round(pt[1]))
    return int(lab[y, x])


def _walk(lab: np.ndarray, a: np.ndarray, b: np.ndarray, margin_px: float = 1.2) -> set[int]:
    """Labels met strictly between a and b (``margin_px`` away from both ends)."""
    d = b - a
    length = float(np.hypot(*d))
    ts = np.linspace(margin_px / length, 1 - margin_px / length, max(3, int(length)))
    return {_label_at(lab, a + t * d) for t in ts}


def _outside(a: np.ndarray, b: np.ndarray, px: float) -> np.ndarray:
    """The point ``px`` pixels beyond ``b`` on the line from ``a`` to ``b``."""
    d = (b - a) / np.hypot(*(b - a))
    return b + px * d


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_truth_keypoints_sit_on_the_rendered_interfaces(seed):
    p = _params(seed, image_size=(480, 640), n_frames=30)
    ed, es = ed_es_frames(p)
    frames = sorted({0, ed, es, p.n_frames - 1})
    cine = render_plax(p, frames=frames, labels=True)
    for lab, kp in zip(cine.labels, cine.keypoints.astype(np.float64), strict=True):
        rv_s, s_lv, lv_pw, pw_p = kp[K["rv_septum"]], kp[K["septum_lv"]], kp[K["lv_pw"]], kp[K["pw_pericardium"]]
        assert _walk(lab, rv_s, s_lv) == {LABEL_SEPTUM}
        assert _walk(lab, s_lv, lv_pw) == {LABEL_LV}
        assert _walk(lab, lv_pw, pw_p) == {LABEL_WALL}
        assert _label_at(lab, _outside(s_lv, rv_s, 2.0)) == LABEL_RV
        assert _label_at(lab, _outside(lv_pw, pw_p, 2.0)) == LABEL_BACKGROUND
        ao_a, ao_p, la_a, la_p = kp[K["ao_anterior"]], kp[K["ao_posterior"]], kp[K["la_anterior"]], kp[K["la_posterior"]]
        assert _walk(lab, ao_a, ao_p) == {LABEL_AORTA}
        assert _label_at(lab, _outside(ao_p, ao_a, 2.0)) == LABEL_WALL
        assert _walk(lab, ao_p, la_a, margin_px=0.8) == {LABEL_WALL}  # a pixel centre is up to 0.71 px away
        assert _walk(lab, la_a, la_p) == {LABEL_LA}
        assert _label_at(lab, _outside(la_a, la_p, 2.0)) == LABEL_WALL


def test_ivs_lvid_lvpw_line_is_perpendicular_to_the_lv_long_axis():
    for seed in range(8):
        p = _params(seed, **SMALL)
        kp = plax_keypoints(p)
        for i, f in enumerate(kp):
            twist = frame_geometry(p, i).st.twist_deg  # the heart turns a little in systole
            theta = math.radians(p.rotation_deg + twist)
            axis = np.array([math.cos(theta), math.sin(theta)])  # LV long axis in image pixels
            line = f[K["pw_pericardium"]] - f[K["rv_septum"]]
            line /= np.hypot(*line)
            assert abs(float(line @ axis)) < 1e-9
            for name in ("septum_lv", "lv_pw"):  # all four points on one line
                v = f[K[name]] - f[K["rv_septum"]]
                assert abs(v[0] * line[1] - v[1] * line[0]) < 1e-6


def test_sizes_cover_the_clinical_ranges_and_ef_is_consistent():
    efs = []
    for seed in range(40):
        p = _params(seed, **SMALL)
        s = p.shape
        assert RANGES_CM["ivsd"][0] <= s.ivsd_cm <= RANGES_CM["ivsd"][1]
        assert RANGES_CM["lvidd"][0] <= s.lvidd_cm <= RANGES_CM["lvidd"][1]
        assert RANGES_CM["lvpwd"][0] <= s.lvpwd_cm <= RANGES_CM["lvpwd"][1]
        assert RANGES_CM["aortic_root"][0] <= s.aortic_root_cm <= RANGES_CM["aortic_root"][1]
        assert RANGES_CM["la"][0] <= s.la_es_cm <= RANGES_CM["la"][1]
        ef = 100 * (1 - teichholz_volume_ml(s.lvids_cm) / teichholz_volume_ml(s.lvidd_cm))
        assert ef == pytest.approx(p.ef_percent, abs=1e-6)
        assert 20.0 <= p.ef_percent <= 75.0
        assert 50.0 <= p.heart_rate_bpm <= 120.0 and -15.0 <= p.rotation_deg <= 15.0
        assert 12.0 <= p.depth_cm <= 20.0 and 60.0 <= p.sector_deg <= 90.0
        efs.append(p.ef_percent)
    assert min(efs) < 35 and max(efs) > 60  # the draw spans the range, not one corner
    assert lvids_for_ef(5.0, 60.0) < 5.0


def test_ed_and_es_are_the_largest_and_smallest_lv_diameter_and_a_full_cycle_is_shown():
    for seed in range(5):
        p = _params(seed)
        assert p.n_frames * p.frame_time_ms / 1000.0 >= p.rr_s  # at least one beat
        assert 30 <= p.n_frames <= 120 and 30 <= p.fps <= 80
        kp = plax_keypoints(p)
        lvid = linear_values_cm(kp, 1.0)["lvidd"]
        ed, es = ed_es_frames(p)
        assert lvid[ed] == lvid.max() and lvid[es] == lvid.min()


def test_truth_document_has_the_contract_keys():
    p = _params(7, **SMALL)
    cine = render_plax(p, frames=[0], labels=False)
    t = json.loads(json.dumps(cine.truth))
    assert t["kind"] == "2d" and isinstance(t["ed_frame"], int) and isinstance(t["es_frame"], int)
    assert set(t["measurements"]) == set(LINEAR_ENDPOINTS)
    for name, m in t["measurements"].items():
        assert m["unit"] == "cm" and len(m["points"]) == 2
        assert m["frame"] == (t["ed_frame"] if CATALOG[name].phase == "ed" else t["es_frame"])
    assert len(t["frames"]) == p.n_frames and len(t["frames"][0]["keypoints"]) == len(KEYPOINTS_2D)
    assert t["keypoints"] == list(KEYPOINTS_2D)
    assert t["label_classes"] == {str(k): v for k, v in LABEL_CLASSES.items()}
    assert "params" in t


def test_linear_truth_values_equal_the_keypoint_distances_in_cm():
    p = _params(8, **SMALL)
    cine = render_plax(p, frames=[0], labels=False)
    for _name, m in cine.truth["measurements"].items():
        (x1, y1), (x2, y2) = m["points"]
        assert math.hypot(x2 - x1, y2 - y1) * cine.cm_per_px == pytest.approx(m["value"], abs=2e-4)
    assert cine.truth["ed_frame"] == cine.ed_frame


def test_end_diastolic_truth_equals_the_drawn_anatomy_at_that_instant():
    from echomeasure.synthetic.anatomy import heart_state

    p = _params(8, image_size=(240, 320))  # a full cardiac cycle
    cine = render_plax(p, frames=[0], labels=False)
    m = cine.truth["measurements"]
    st = heart_state(p.shape, float(p.phase_of_frame(cine.ed_frame)), p.systole_fraction)
    assert m["ivsd"]["value"] == pytest.approx(st.septum_cm, abs=1e-5)
    assert m["lvidd"]["value"] == pytest.approx(st.lvid_cm, abs=1e-5)
    assert m["lvpwd"]["value"] == pytest.approx(st.posterior_cm, abs=1e-5)
    assert m["aortic_root"]["value"] == pytest.approx(st.aortic_root_cm, abs=1e-5)
    # frames sample the cycle, so ED is within a frame of the drawn end-diastole
    assert m["lvidd"]["value"] == pytest.approx(p.shape.lvidd_cm, rel=0.03)
    assert m["lvids"]["value"] == pytest.approx(p.shape.lvids_cm, rel=0.06)


# --------------------------------------------------------------------------- Doppler


@pytest.mark.parametrize("flow", sorted(DOPPLER_FLOWS))
def test_doppler_peaks_match_values_and_sit_on_the_envelope_edge(flow):
    p = sample_doppler_params(np.random.default_rng(5), flow, image_size=(600, 800))
    strip = render_doppler(p)
    assert set(strip.peaks) == set(DOPPLER_FLOWS[flow])
    spectral = next(r for r in strip.regions if r.is_spectral)
    assert spectral.data_type == (4 if flow in ("av", "tr") else 3)
    baseline = spectral.y0 + spectral.ref_y0
    gray = strip.image.mean(axis=2)
    for ch, pts in strip.peaks.items():
        assert len(pts) >= 2
        lo, hi = {"av_vmax": (1.0, 5.0), "tr_vmax": (1.5, 4.5), "lvot_vmax": (0.6, 1.6),
                  "mv_e": (0.4, 1.4), "mv_a": (0.3, 1.2)}[ch]
        for (x, y), v in zip(pts, strip.peak_values_m_s[ch], strict=True):
            assert spectral.contains(x, y)
            v_from_px = (y - baseline) * spectral.delta_y / 100.0
            assert v_from_px == pytest.approx(v, abs=1e-9)
            assert (v > 0) == (flow == "mv")  # mitral inflow above the baseline, the rest below
            assert lo * 0.9 <= abs(v) <= hi * 1.1
            toward_base = 1.0 if baseline > y else -1.0
            xi = int(round(x))
            inside = gray[int(round(y + 6 * toward_base)), xi - 1 : xi + 2].mean()
            outside = gray[int(round(y - 7 * toward_base)), xi - 1 : xi + 2].mean()
            assert inside > outside + 40
        assert strip.truth["measurements"][ch]["value"] == pytest.approx(np.mean(np.abs(strip.peak_values_m_s[ch])), abs=1e-6)
    if flow == "mv":
        m = strip.truth["measurements"]
        assert m["mv_ea"]["value"] == pytest.approx(m["mv_e"]["value"] / m["mv_a"]["value"], rel=1e-5)


def test_doppler_scale_is_aliasing_free():
    from echomeasure.synthetic.doppler import strip_layout, velocity_cm_s_per_px

    for seed in range(12):
        p = sample_doppler_params(np.random.default_rng(seed))
        lay = strip_layout(p)
        dy_m_s = velocity_cm_s_per_px(p, lay) / 100.0
        top_m_s = (lay.spectral_box[1] - lay.baseline_row) * dy_m_s  # velocity shown at the top row
        bottom_m_s = (lay.spectral_box[3] - lay.baseline_row) * dy_m_s
        for w in p.waves:  # every flow drawn, measured or not, fits on its side of the baseline
            assert bottom_m_s < w.peak_m_s < top_m_s


# --------------------------------------------------------------------------- DICOM files


def _distance_cm(region, a, b) -> float:
    return math.hypot((b[0] - a[0]) * abs(region.delta_x), (b[1] - a[1]) * abs(region.delta_y))


def _regions_from_file(path):
    """Regions via the project's reader when it exists, else straight from pydicom."""
    try:
        from echomeasure.ingest import read_clip  # type: ignore[attr-defined]
    except ImportError:
        read_clip = None
    if read_clip is not None:
        clip = read_clip(path)
        return clip.regions, clip.frames
    from echomeasure.ingest.clip import Region

    ds = pydicom.dcmread(path)
    regions = tuple(
        Region(
            x0=int(r.RegionLocationMinX0), y0=int(r.RegionLocationMinY0),
            x1=int(r.RegionLocationMaxX1), y1=int(r.RegionLocationMaxY1),
            spatial_format=int(r.RegionSpatialFormat), data_type=int(r.RegionDataType),
            units_x=int(r.PhysicalUnitsXDirection), units_y=int(r.PhysicalUnitsYDirection),
            delta_x=float(r.PhysicalDeltaX), delta_y=float(r.PhysicalDeltaY),
            ref_x0=int(r.ReferencePixelX0), ref_y0=int(r.ReferencePixelY0),
            ref_phys_x=float(r.ReferencePixelPhysicalValueX), ref_phys_y=float(r.ReferencePixelPhysicalValueY),
            flags=int(r.RegionFlags),
        )
        for r in ds.SequenceOfUltrasoundRegions
    )
    frames = ds.pixel_array
    return regions, frames if frames.ndim == 4 else frames[None]


@pytest.fixture(scope="module")
def written_cases(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    jobs = [CaseJob(0, "2d"), CaseJob(1, "doppler", "av"), CaseJob(2, "doppler", "mv")]
    return [write_case(out, j, seed=3, small=True) for j in jobs]


def _calibration():
    """The project's calibration (echomeasure.ingest.calibration) when present, else the docs/domain.md formulas."""
    try:
        from echomeasure.ingest import calibration
    except ImportError:
        calibration = None
    if calibration is not None and hasattr(calibration, "distance_cm") and hasattr(calibration, "velocity_m_s"):
        return calibration.distance_cm, calibration.velocity_m_s

    def distance(regions, a, b):
        region = next(r for r in regions if r.is_2d_cm and r.contains(*a) and r.contains(*b))
        return _distance_cm(region, a, b)

    def velocity(regions, x, y):
        region = next(r for r in regions if r.is_spectral and r.contains(x, y))
        return (region.ref_phys_y + (y - (region.y0 + region.ref_y0)) * region.delta_y) / 100.0

    return distance, velocity


def test_dicom_calibration_recovers_every_truth_value(written_cases):
    distance_cm, velocity_m_s = _calibration()
    for case in written_cases:
        truth = json.loads(case.truth.read_text())
        regions, _ = _regions_from_file(case.dicom)
        for name, m in truth["measurements"].items():
            if m["unit"] == "cm":
                a, b = m["points"]
                assert distance_cm(regions, a, b) == pytest.approx(m["value"], abs=0.01), name
            elif m["unit"] == "m/s":
                vs = [abs(velocity_m_s(regions, x, y)) for x, y in m["peaks"]]
                assert np.mean(vs) == pytest.approx(m["value"], abs=0.01), name
                for v, per_beat in zip(vs, m["per_beat_m_s"], strict=True):
                    assert v == pytest.approx(per_beat, abs=0.01)


def test_dicom_files_are_the_right_sop_classes_with_frame_timing(written_cases):
    cine = pydicom.dcmread(written_cases[0].dicom)
    assert cine.SOPClassUID == "1.2.840.10008.5.1.4.1.1.3.1"
    assert cine.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert cine.PhotometricInterpretation == "YBR_FULL_422"
    truth = json.loads(written_cases[0].truth.read_text())
    assert float(cine.FrameTime) == pytest.approx(truth["frame_time_ms"])
    assert int(cine.NumberOfFrames) == truth["n_frames"] == 40
    assert int(cine.CineRate) == round(1000.0 / truth["frame_time_ms"])
    strip = pydicom.dcmread(written_cases[1].dicom)
    assert strip.SOPClassUID == "1.2.840.10008.5.1.4.1.1.6.1"
    types = sorted(int(r.RegionDataType) for r in strip.SequenceOfUltrasoundRegions)
    assert types == [1, 4, 10]


def test_uncompressed_rgb_variant_holds_the_exact_pixels(tmp_path):
    from echomeasure.synthetic.dicom_writer import build_dataset, write_dataset_atomic
    from echomeasure.synthetic.overlays import fake_identity

    p = _params(4, **SMALL)
    cine = render_plax(p, frames=3, labels=False)
    ds = build_dataset(cine.frames, cine.regions, fake_identity(4, 0), seed=4, case_index=0, kind="2d",
                       frame_time_ms=cine.frame_time_ms, heart_rate_bpm=p.heart_rate_bpm, jpeg=False, description="x")
    write_dataset_atomic(ds, tmp_path / "rgb.dcm")
    back = pydicom.dcmread(tmp_path / "rgb.dcm")
    assert back.PhotometricInterpretation == "RGB"
    assert np.array_equal(back.pixel_array, cine.frames)


def test_every_file_carries_fake_phi_in_header_private_tag_preamble_and_banner(written_cases):
    for case in written_cases:
        truth = json.loads(case.truth.read_text())
        ident = truth["fake_identity"]
        raw = case.dicom.read_bytes()
        assert ident["patient_name"].encode() in raw[:128]  # preamble
        ds = pydicom.dcmread(case.dicom)
        assert str(ds.PatientName).startswith("SYNTHETIC^PATIENT^")
        assert ds.InstitutionName and ds.ReferringPhysicianName and ds.StudyDate == ident["study_date"]
        assert any(el.tag.is_private for el in ds)
        regions, frames = _regions_from_file(case.dicom)
        top = min(r.y0 for r in regions)
        assert top >= 24
        banner = frames[0, :top].astype(int)
        assert (banner.max(axis=2) > 150).sum() > 200  # burned-in text above every region


def test_regions_never_cover_the_banner():
    for seed in range(6):
        p = _params(seed)
        from echomeasure.synthetic.plax import PlaxRenderer

        r = PlaxRenderer(p)
        assert all(reg.y0 >= r.banner_px for reg in r.regions())
        d = render_doppler(sample_doppler_params(np.random.default_rng(seed)))
        from echomeasure.synthetic.doppler import strip_layout

        banner = strip_layout(sample_doppler_params(np.random.default_rng(seed))).banner_px
        assert all(reg.y0 >= banner for reg in d.regions)


def test_synthetic_files_pass_the_deidentification_gate(written_cases, tmp_path):
    from echomeasure import ingest

    for case in written_cases:
        truth = json.loads(case.truth.read_text())
        out = tmp_path / case.dicom.name
        ingest.deidentify_file(case.dicom, out, secret=b"test-secret")
        assert ingest.passes_gate(out, case.dicom)
        raw = out.read_bytes()
        assert raw[:128] == bytes(128)
        assert truth["fake_identity"]["patient_name"].encode() not in raw
        ds = pydicom.dcmread(out)
        assert not any(el.tag.is_private for el in ds)
        clip = ingest.read_clip(out)
        top = min(r.y0 for r in clip.regions)
        assert int(clip.frames[:, :top].max()) == 0  # the burned-in banner is blanked
        # the calibration survives de-identification
        original = ingest.read_clip(case.dicom)
        assert clip.regions == original.regions


# --------------------------------------------------------------------------- command line


def test_plan_cases_both_writes_cines_then_av_and_mv():
    jobs = plan_cases(2, "both")
    expected = [(0, "2d", None), (1, "2d", None), (2, "doppler", "av"), (3, "doppler", "mv")]
    assert [(j.index, j.kind, j.flow) for j in jobs] == expected


def test_cli_synth_writes_cases_and_refuses_a_file_as_outdir(tmp_path, capsys):
    from echomeasure.cli import main

    assert main(["synth", str(tmp_path / "out"), "--cases", "1", "--kind", "doppler", "--flow", "tr", "-q"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[0]["flow"] == "tr"
    truth = json.loads((tmp_path / "out" / "case_0000.truth.json").read_text())
    assert truth["flow"] == "tr" and truth["measurements"]["tr_vmax"]["value"] > 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["case_0000.dcm", "case_0000.truth.json"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["synth", str(blocker), "--cases", "1", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err


def test_contact_sheet_puts_the_real_echo_next_to_synthetic_frames(tmp_path):
    from echomeasure.synthetic.preview import TILE, real_reference_frame, write_contact_sheet

    real = real_reference_frame()
    assert real is not None and real.ndim == 3  # pydicom's real SonoSite cine ships with pydicom
    path = write_contact_sheet(tmp_path / "sheet.png", seed=1, n_cine=1, n_doppler=1, columns=3)
    import cv2

    sheet = cv2.imread(str(path))
    assert sheet.shape[1] == 3 * TILE[1] and sheet.shape[0] == TILE[0] + 22


# --------------------------------------------------------------------------- style families


from echomeasure.errors import InvalidInputError  # noqa: E402
from echomeasure.synthetic import styles  # noqa: E402


def test_classic_style_is_the_original_generator():
    params = _params(17, **SMALL)
    classic = styles.render_styled_plax(
        styles.sample_styled_plax_params(np.random.default_rng(17), "classic", seed=17, **SMALL), "classic", frames=[0, 5])
    original = render_plax(params, frames=[0, 5], labels=False)
    assert np.array_equal(classic.frames, original.frames)
    assert np.array_equal(classic.keypoints, original.keypoints)


@pytest.mark.parametrize("style", ["scatter", "vendor"])
def test_style_family_truth_sits_on_the_rendered_interfaces(style):
    cine = styles.render_styled_plax_case(9_000_003, style, small=True, frames=[0, 3], labels=True)
    assert cine.truth["style"]["family"] == style
    for k in range(2):
        lab = cine.labels[k]
        kp = cine.keypoints[k]
        # septum_lv / lv_pw: the LV cavity label is within a pixel on the cavity side of each point
        for name, toward in (("septum_lv", "lv_pw"), ("lv_pw", "septum_lv")):
            p, q = kp[K[name]], kp[K[toward]]
            d = (q - p) / np.hypot(*(q - p))
            inside = p + 2.0 * d
            outside = p - 2.0 * d
            assert lab[int(round(inside[1])), int(round(inside[0]))] == LABEL_LV
            assert lab[int(round(outside[1])), int(round(outside[0]))] != LABEL_LV
    # values are the lengths between the (moved) keypoints, on the truth's ED frame
    ed = cine.truth["ed_frame"]
    kp_ed = np.asarray(cine.truth["frames"][ed]["keypoints"])
    for name, (a, b) in LINEAR_ENDPOINTS.items():
        frame = cine.truth["measurements"][name]["frame"]
        kpf = np.asarray(cine.truth["frames"][frame]["keypoints"])
        length = float(np.hypot(*(kpf[K[a]] - kpf[K[b]]))) * cine.cm_per_px
        assert cine.truth["measurements"][name]["value"] == pytest.approx(length, abs=1e-3)
    assert kp_ed.shape == (8, 2)


def test_style_families_differ_from_classic_and_are_deterministic():
    a = styles.render_styled_plax_case(9_000_004, "scatter", small=True, frames=[1])
    b = styles.render_styled_plax_case(9_000_004, "scatter", small=True, frames=[1])
    c = styles.render_styled_plax_case(9_000_004, "classic", small=True, frames=[1])
    v = styles.render_styled_plax_case(9_000_004, "vendor", small=True, frames=[1])
    assert np.array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, c.frames)
    assert not np.array_equal(v.frames, c.frames)
    # the vendor look is colour (a LUT) or at least not the classic grey levels
    assert v.frames.shape == c.frames.shape


def test_unknown_style_is_a_user_error():
    with pytest.raises(InvalidInputError, match="unknown style 'cartoon'"):
        styles.check_style("cartoon")
    assert styles.parse_styles("classic, vendor") == ("classic", "vendor")
    assert styles.HELDOUT_STYLE not in styles.TRAINING_STYLES
    # the one rule every trainer uses for its family list
    assert styles.parse_training_styles("classic,rf") == ("classic", "rf")
    assert styles.parse_training_styles(None, styles.DEFAULT_TRAINING_STYLES) == ("classic", "vendor")
    with pytest.raises(InvalidInputError, match="held out of training"):
        styles.parse_training_styles(f"vendor,{styles.HELDOUT_STYLE}")
    with pytest.raises(InvalidInputError, match="unknown style"):
        styles.parse_training_styles("classic,cartoon")


@pytest.mark.parametrize("style", ["scatter", "vendor"])
def test_styled_doppler_truth_reads_back_through_the_regions(style):
    from echomeasure.ingest.calibration import calibrated_value

    for seed in range(9_050_000, 9_050_006):
        strip = styles.render_styled_doppler_case(seed, style, small=True)
        for ch, pts in strip.peaks.items():
            for (x, y), v in zip(pts, strip.peak_values_m_s[ch], strict=True):
                value, unit, signed = calibrated_value(strip.regions, None, ch, ((x, y),))
                assert unit == "m/s"
                assert signed == pytest.approx(v, abs=0.02)


def test_synth_cli_writes_a_style_family(tmp_path):
    from echomeasure.cli import main

    assert main(["synth", str(tmp_path), "--cases", "1", "--small", "--style", "vendor", "-q"]) == 0
    truth = json.loads((tmp_path / "case_0000.truth.json").read_text())
    assert truth["style"]["family"] == "vendor"
    assert main(["synth", str(tmp_path / "x"), "--cases", "1", "--style", "cartoon", "-q"]) == 2
