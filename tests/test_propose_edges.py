"""Caliper edge refinement (echomeasure.propose.edges) on step images and through propose()."""

from __future__ import annotations

import numpy as np
import pytest

from echomeasure import catalog
from echomeasure.propose import edges
from echomeasure.propose.edges import (
    FALLING,
    RISING,
    UNCONFIRMED_CONFIDENCE_SHARE,
    edge_confidence_factor,
    plax_search_lines,
    refine_plax_keypoints,
    refine_to_edges,
)


def _step_image(edges_x: list[tuple[float, float]], *, base: float = 20.0, shape=(80, 120), noise: float = 0.0,
                seed: int = 0) -> np.ndarray:
    """Grey image whose intensity steps by ``delta`` at each sub-pixel ``x`` (pixel-area exact)."""
    h, w = shape
    xs = np.arange(w, dtype=np.float64)
    row = np.full(w, base)
    for x_edge, delta in edges_x:
        # share of each pixel [x - 0.5, x + 0.5] beyond the edge: an exact box-sampled step
        row += delta * np.clip(xs + 0.5 - x_edge, 0.0, 1.0)
    img = np.tile(row, (h, 1))
    if noise:
        rng = np.random.default_rng(seed)
        img = img * rng.gamma(8.0, 1.0 / 8.0, size=img.shape)  # multiplicative, speckle-like
    return np.clip(img, 0, 255).astype(np.uint8)


def test_point_lands_on_subpixel_step_edge_from_several_px_away():
    img = _step_image([(60.3, 150.0)])
    for start_x in (54.0, 66.5):
        r = refine_to_edges(img, [[start_x, 40.0]], [[1.0, 0.0]], [RISING], 10.0)
        assert r.found[0]
        assert abs(r.points_xy[0, 0] - 60.3) < 0.5
        assert r.points_xy[0, 1] == pytest.approx(40.0)
        assert r.shift_px[0] == pytest.approx(r.points_xy[0, 0] - start_x)
        assert r.contrast_grey[0] > 100.0


def test_step_edge_found_in_speckle_on_a_colour_frame_along_an_oblique_line():
    grey = _step_image([(60.3, 140.0)], shape=(120, 120), noise=1.0, seed=3)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    direction = np.array([np.cos(np.radians(25)), np.sin(np.radians(25))])
    start = np.array([60.3, 60.0]) - 6.0 * direction
    r = refine_to_edges(rgb, [start], [direction], [RISING], 10.0, across_half_width_px=3.0, step_span_px=3.0)
    # the step is vertical: only the x coordinate is pinned by it
    assert r.found[0]
    assert abs(r.points_xy[0, 0] - 60.3) < 0.5


def test_polarity_is_respected_when_a_wrong_polarity_edge_is_closer():
    # bright band from x = 37 to x = 44 on a dark background: falling edge at 44, rising at 37;
    # seen from x = 46 (closer to 44), a rising edge must be the one at 37
    img = _step_image([(37.0, 160.0), (44.0, -160.0)])
    rising = refine_to_edges(img, [[46.0, 40.0]], [[1.0, 0.0]], [RISING], 12.0)
    falling = refine_to_edges(img, [[39.0, 40.0]], [[1.0, 0.0]], [FALLING], 12.0)
    assert abs(rising.points_xy[0, 0] - 37.0) < 0.5
    assert abs(falling.points_xy[0, 0] - 44.0) < 0.5
    # the same point searched in the opposite direction flips what "rising" means
    flipped = refine_to_edges(img, [[46.0, 40.0]], [[-1.0, 0.0]], [RISING], 12.0)
    assert abs(flipped.points_xy[0, 0] - 44.0) < 0.5


def test_no_edge_in_window_leaves_the_point_and_drops_its_confidence():
    flat = _step_image([], base=90.0)
    far = _step_image([(100.0, 150.0)])
    wrong_way = _step_image([(44.0, -150.0)])
    for img in (flat, far, wrong_way):
        r = refine_to_edges(img, [[40.0, 40.0]], [[1.0, 0.0]], [RISING], 8.0)
        assert not r.found[0]
        assert r.shift_px[0] == 0.0 and r.contrast_grey[0] == 0.0
        np.testing.assert_array_equal(r.points_xy, [[40.0, 40.0]])
    assert UNCONFIRMED_CONFIDENCE_SHARE < 1.0
    assert edge_confidence_factor(0.0) == pytest.approx(UNCONFIRMED_CONFIDENCE_SHARE)
    assert edge_confidence_factor(200.0) == pytest.approx(1.0)
    # a zero window, a zero direction or a non-finite point leaves the point alone too
    step = _step_image([(44.0, 150.0)])
    r = refine_to_edges(step, [[40.0, 40.0], [40.0, 40.0], [np.nan, 1.0]], [[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]],
                        [RISING, RISING, RISING], [0.0, 8.0, 8.0])
    assert not r.found.any()


def test_plax_lines_put_every_keypoint_on_its_caliper_line_with_ase_polarities():
    kp = np.array([
        [100.0, 90.0], [101.0, 110.0], [103.0, 160.0], [99.0, 180.0],  # LV line, rv_septum off it
        [200.0, 80.0], [202.0, 130.0], [202.5, 135.0], [230.0, 170.0],  # la_posterior off the root line
    ])
    starts, directions, polarities, refinable = plax_search_lines(kp, catalog.KEYPOINTS_2D)
    assert refinable.all()
    idx = {k: i for i, k in enumerate(catalog.KEYPOINTS_2D)}
    lv = kp[idx["lv_pw"]] - kp[idx["septum_lv"]]
    ao = kp[idx["ao_posterior"]] - kp[idx["ao_anterior"]]
    for name, line in (("rv_septum", lv), ("pw_pericardium", lv), ("la_anterior", ao), ("la_posterior", ao)):
        rel = starts[idx[name]] - kp[idx["septum_lv" if line is lv else "ao_anterior"]]
        assert abs(rel[0] * line[1] - rel[1] * line[0]) / np.hypot(*line) < 1e-9, name
    assert [polarities[idx[k]] for k in ("rv_septum", "septum_lv", "lv_pw", "pw_pericardium")] == [1, -1, 1, 1]
    assert [polarities[idx[k]] for k in ("ao_anterior", "ao_posterior", "la_anterior", "la_posterior")] == [-1, 1, -1, 1]
    # an unknown channel is not refined
    _, _, _, ok = plax_search_lines(kp[:3], ("rv_septum", "septum_lv", "mystery"))
    assert not ok[2]


def test_refined_wall_thickness_of_a_synthetic_band_is_exact_in_mm():
    # dark RV | septum 9.0 mm | dark LV, at 0.4 mm/px; the model's points are 2 mm off each way.
    # The calipers go where the step has climbed three quarters of the way from the blood side
    # (see refine_to_edges), so on this unblurred step each lies ~0.3 mm inside the wall.
    px_per_mm = 2.5
    top, bottom = 30.2, 30.2 + 9.0 * px_per_mm
    img = _step_image([(top, 150.0), (bottom, -150.0)], shape=(60, 120)).T.copy()  # horizontal band
    channels = ("rv_septum", "septum_lv", "lv_pw")
    model = np.array([[30.0, top - 5.0], [30.0, bottom + 5.0], [30.0, 100.0]])
    r = refine_plax_keypoints(img, model, channels, px_per_mm, bloom_correction=False)
    thickness_mm = (r.points_xy[1, 1] - r.points_xy[0, 1]) / px_per_mm
    assert thickness_mm == pytest.approx(9.0, abs=0.6)
    assert r.points_xy[0, 1] > top - 0.5 * px_per_mm and r.points_xy[1, 1] < bottom + 0.5 * px_per_mm
    # the bloom correction (fitted on speckled, PSF-blurred frames) reads this ideal, noise-free
    # step as slightly bloomed: each caliper moves a little further into the wall, not out of it
    c = refine_plax_keypoints(img, model, channels, px_per_mm)
    assert r.points_xy[0, 1] <= c.points_xy[0, 1] < top + 0.75 * px_per_mm
    assert bottom - 0.75 * px_per_mm < c.points_xy[1, 1] <= r.points_xy[1, 1]


# --------------------------------------------------------------------------- through propose()


@pytest.fixture(scope="module")
def heldout_frames():
    """ED and ES frames of a few tuning-range held-out cases (not the 40 reported ones)."""
    from echomeasure.synthetic import render_plax
    from echomeasure.synthetic.plax import ed_es_frames
    from echomeasure.training.datasets import plax_params_for_seed

    out = []
    for seed in (9_000_041, 9_000_047, 9_000_052):
        params = plax_params_for_seed(seed)
        ed, es = ed_es_frames(params)
        out.append(render_plax(params, frames=[ed, es], labels=False))
    return out


def _along_line_error_px(points, truth, direction) -> float:
    return float(abs(np.dot(np.asarray(points) - truth, direction)))


def test_refinement_moves_shipped_model_calipers_closer_to_truth(heldout_frames):
    from echomeasure.ingest.clip import Clip
    from echomeasure.models import registry
    from echomeasure.propose import propose

    try:
        registry.verify_file(registry.get_entry("plax-linear", "1.0"))
    except Exception as exc:  # pragma: no cover - depends on the shipped weights being present
        pytest.skip(f"shipped plax-linear weights unavailable: {exc}")
    idx = {k: i for i, k in enumerate(catalog.KEYPOINTS_2D)}
    errors = {True: [], False: []}
    value_errors_mm = {True: [], False: []}
    for cine in heldout_frames:
        for j, phase in enumerate(("ed", "es")):
            names = [n for n in catalog.LINEAR_2D if catalog.get(n).phase == phase]
            clip = Clip(frames=cine.frames[j : j + 1], frame_time_ms=cine.frame_time_ms, regions=tuple(cine.regions),
                        source_kind="dicom", source_name="heldout")
            truth = cine.keypoints[j].astype(np.float64)
            for refine in (True, False):
                result = propose(clip, only=names, model_versions={"plax-linear": "1.0"}, backend="torch",
                                 refine_edges=refine)
                assert ("edge_refinement" in result.timings_s) is refine
                by_name = {p.name: p for p in result.measurements}
                if phase == "ed":
                    # a keypoint shared by two measurements is one point
                    assert by_name["ivsd"].points[1] == by_name["lvidd"].points[0]
                    assert by_name["lvidd"].points[1] == by_name["lvpwd"].points[0]
                for name in names:
                    p = by_name[name]
                    a, b = catalog.LINEAR_ENDPOINTS[name]
                    line = truth[idx[b]] - truth[idx[a]]
                    line /= np.hypot(*line)
                    for point, kp in zip(p.points, (a, b), strict=True):
                        errors[refine].append(_along_line_error_px(point, truth[idx[kp]], line))
                    value_errors_mm[refine].append(abs(p.value - cine.truth["measurements"][name]["value"]) * 10.0)
    assert np.mean(errors[True]) < 0.7 * np.mean(errors[False])
    assert np.mean(value_errors_mm[True]) < np.mean(value_errors_mm[False])


def test_search_scale_comes_from_the_region_that_holds_the_point():
    from echomeasure.ingest.clip import SPATIAL_2D, UNIT_CM, Region

    region = Region(x0=10, y0=10, x1=300, y1=300, spatial_format=SPATIAL_2D, data_type=1, units_x=UNIT_CM,
                    units_y=UNIT_CM, delta_x=0.04, delta_y=0.04, ref_x0=0, ref_y0=0, ref_phys_x=0.0, ref_phys_y=0.0)
    assert edges.plax_px_per_mm([region], (100.0, 100.0)) == pytest.approx(2.5)
    # outside every region: the user's scale, then the assumed 16 cm depth over the box height
    assert edges.plax_px_per_mm([region], (400.0, 100.0), user_cm_per_px=0.05) == pytest.approx(2.0)
    assert edges.plax_px_per_mm([], (1.0, 1.0), fallback_height_px=480) == pytest.approx(3.0)


# --------------------------------------------------------------------------- a site's caliper convention


def test_edge_offsets_move_each_keypoint_once_along_its_own_caliper_line():
    from echomeasure.propose.edges import apply_edge_offsets, edge_offsets_along_lines_mm

    idx = {k: i for i, k in enumerate(catalog.KEYPOINTS_2D)}
    kp = np.array([
        [100.0, 90.0], [102.0, 110.0], [107.0, 160.0], [109.0, 180.0],  # LV line (oblique)
        [200.0, 80.0], [203.0, 130.0], [203.3, 135.0], [206.0, 180.0],  # aortic-root line
    ])
    px_per_mm = 2.5
    offsets = {"septum_lv": -1.0, "lv_pw": 1.0, "la_posterior": 0.4}
    out = apply_edge_offsets(kp, catalog.KEYPOINTS_2D, offsets, px_per_mm)

    def length_mm(pts, a, b):
        return float(np.hypot(*(pts[idx[b]] - pts[idx[a]]))) / px_per_mm

    # leading edge: LVID 2 mm longer, IVS 1 mm thinner (septum_lv is shared and moves once)
    assert length_mm(out, "septum_lv", "lv_pw") == pytest.approx(length_mm(kp, "septum_lv", "lv_pw") + 2.0)
    ivs = np.dot(out[idx["septum_lv"]] - out[idx["rv_septum"]], kp[idx["lv_pw"]] - kp[idx["septum_lv"]])
    ivs0 = np.dot(kp[idx["septum_lv"]] - kp[idx["rv_septum"]], kp[idx["lv_pw"]] - kp[idx["septum_lv"]])
    lv_len = np.hypot(*(kp[idx["lv_pw"]] - kp[idx["septum_lv"]]))
    assert (ivs0 - ivs) / lv_len / px_per_mm == pytest.approx(1.0)
    # the moved points stay on their line; keypoints without an offset do not move at all
    d = out[idx["lv_pw"]] - out[idx["septum_lv"]]
    line = kp[idx["lv_pw"]] - kp[idx["septum_lv"]]
    assert abs(d[0] * line[1] - d[1] * line[0]) < 1e-9
    for name in ("rv_septum", "pw_pericardium", "ao_anterior", "ao_posterior", "la_anterior"):
        np.testing.assert_array_equal(out[idx[name]], kp[idx[name]])
    # LA offsets go along the aortic-root line (towards ao_posterior)
    ao = kp[idx["ao_posterior"]] - kp[idx["ao_anterior"]]
    moved = out[idx["la_posterior"]] - kp[idx["la_posterior"]]
    np.testing.assert_allclose(moved, 0.4 * px_per_mm * ao / np.hypot(*ao))
    # measuring the offsets back recovers them (NaN where a keypoint has no line)
    back = edge_offsets_along_lines_mm(kp, out, catalog.KEYPOINTS_2D, px_per_mm)
    np.testing.assert_allclose(back, [offsets.get(k, 0.0) for k in catalog.KEYPOINTS_2D], atol=1e-9)
    assert np.isnan(edge_offsets_along_lines_mm(kp[:3], kp[:3], ("rv_septum", "septum_lv", "mystery"), 2.0)[2])
    # no offsets (a version without a convention): the points as they are
    np.testing.assert_array_equal(apply_edge_offsets(kp, catalog.KEYPOINTS_2D, None, px_per_mm), kp)
    np.testing.assert_array_equal(apply_edge_offsets(kp, catalog.KEYPOINTS_2D, {}, px_per_mm), kp)


def test_propose_applies_the_versions_caliper_offsets_after_refinement(heldout_frames, tmp_path):
    import shutil
    from dataclasses import replace

    from echomeasure.ingest.clip import Clip
    from echomeasure.models import registry
    from echomeasure.propose import propose

    try:
        base = registry.get_entry("plax-linear", None)
        src = registry.verify_file(base)
    except Exception as exc:  # pragma: no cover - depends on the shipped weights being present
        pytest.skip(f"shipped plax-linear weights unavailable: {exc}")
    shutil.copyfile(src, tmp_path / base.file)
    registry.register(base, weights_dir=tmp_path)
    site = replace(base, version=f"{base.version}-site", parent=base.version, created="",
                   extra={**dict(base.extra), "decode": {"refine_edges": True,
                                                         "edge_offsets_mm": {"septum_lv": -1.0, "lv_pw": 1.0}}})
    registry.register(site, weights_dir=tmp_path, activate=False)
    cine = heldout_frames[0]
    clip = Clip(frames=cine.frames[:1], frame_time_ms=cine.frame_time_ms, regions=tuple(cine.regions),
                source_kind="dicom", source_name="heldout")
    names = ["ivsd", "lvidd", "lvpwd", "aortic_root"]

    def values(version, refine=True):
        r = propose(clip, only=names, model_versions={"plax-linear": version}, weights_dir=tmp_path,
                    backend="torch", refine_edges=refine)
        return {p.name: p for p in r.measurements}

    plain, conv = values(base.version), values(site.version)
    assert conv["lvidd"].value - plain["lvidd"].value == pytest.approx(0.2, abs=1e-3)  # cm
    assert conv["ivsd"].value - plain["ivsd"].value == pytest.approx(-0.1, abs=1e-3)
    assert conv["lvpwd"].value - plain["lvpwd"].value == pytest.approx(-0.1, abs=1e-3)
    assert conv["aortic_root"].points == plain["aortic_root"].points
    # shared endpoints stay one point
    assert conv["ivsd"].points[1] == conv["lvidd"].points[0] and conv["lvidd"].points[1] == conv["lvpwd"].points[0]
    # the offsets are relative to the interfaces: without refinement they are not applied
    assert values(site.version, False)["lvidd"].points == values(base.version, False)["lvidd"].points


def test_la_posterior_is_put_on_the_root_line_but_not_moved_onto_a_step():
    # aortic-root line vertical at x = 60 (ao_anterior -> ao_posterior downwards); along it:
    # aortic blood | bright posterior aortic wall falling to LA blood at y = 50 | rising to the LA
    # wall at y = 80.  la_anterior moves onto its falling step; la_posterior, 3 px short of its
    # rising step and well inside the search window, only goes onto the line (PROJECT_ONLY).
    assert "la_posterior" in edges.PROJECT_ONLY and "la_anterior" not in edges.PROJECT_ONLY
    img = _step_image([(40.0, 150.0), (50.0, -150.0), (80.0, 150.0)], shape=(100, 120)).T.copy()
    channels = ("ao_anterior", "ao_posterior", "la_anterior", "la_posterior")
    model = np.array([[60.0, 20.0], [60.0, 40.0], [63.0, 47.0], [64.0, 77.0]])
    r = refine_plax_keypoints(img, model, channels, px_per_mm=1.0, bloom_correction=False)
    assert abs(r.points_xy[2, 1] - 50.0) < 1.0 and r.points_xy[2, 0] == pytest.approx(60.0)
    assert r.points_xy[3] == pytest.approx([60.0, 77.0])
    assert r.shift_px[3] == 0.0
    # the step near it still counts for the confidence
    assert r.found[3] and r.contrast_grey[3] > 100.0
    assert edge_confidence_factor(r.contrast_grey[3]) > UNCONFIRMED_CONFIDENCE_SHARE
    # ... and so does how far it lies from the model's point (the point itself stays)
    assert abs(r.interface_shift_px[3] - 3.0) < 1.0 and r.interface_shift_px[2] == r.shift_px[2]
    # with the keypoint searched like the others it would have jumped onto the step
    moved = refine_to_edges(img, [[60.0, 77.0]], [[0.0, 1.0]], [RISING], 7.0, dark_span_px=3.0, step_span_px=1.0,
                            across_half_width_px=2.5, smooth_px=0.4)
    assert abs(moved.points_xy[0, 1] - 80.0) < 1.0


def test_ambiguous_interface_gets_less_confidence_than_a_clean_step():
    from echomeasure.propose.edges import (
        decode_confidence_gate,
        interface_confidence_factor,
        resolution_confidence_factor,
    )

    # the same rising step at x = 44, alone, with an equal rival at x = 34 or with a weaker one
    clean = _step_image([(44.0, 120.0)])
    two_equal = _step_image([(34.0, 60.0), (38.0, -60.0), (44.0, 60.0)])
    weak_rival = _step_image([(34.0, 25.0), (38.0, -25.0), (44.0, 100.0)])
    results = {name: refine_to_edges(img, [[41.0, 40.0]], [[1.0, 0.0]], [RISING], 10.0)
               for name, img in (("clean", clean), ("equal", two_equal), ("weak", weak_rival))}
    for r in results.values():
        assert r.found[0] and abs(r.points_xy[0, 0] - 44.0) < 0.5  # the rival does not move the point
        assert r.window_px[0] == pytest.approx(10.0)
    assert results["clean"].rival_contrast_grey[0] == 0.0
    assert results["equal"].rival_contrast_grey[0] == pytest.approx(results["equal"].contrast_grey[0], rel=0.05)
    assert abs(results["equal"].rival_shift_px[0] - (34.0 - 41.0)) < 0.5
    factor = {name: float(interface_confidence_factor(r)[0]) for name, r in results.items()}
    assert 0.0 < factor["equal"] < 0.15 < factor["weak"] < factor["clean"]
    # the shift term: the same clean step found further from the start point counts for less
    far = refine_to_edges(clean, [[36.0, 40.0]], [[1.0, 0.0]], [RISING], 10.0)
    assert far.found[0] and interface_confidence_factor(far)[0] < factor["clean"]
    # no interface: the unconfirmed share, whatever the (absent) rival
    none = refine_to_edges(_step_image([], base=90.0), [[40.0, 40.0]], [[1.0, 0.0]], [RISING], 8.0)
    assert interface_confidence_factor(none)[0] == pytest.approx(UNCONFIRMED_CONFIDENCE_SHARE)
    # a finer image and a confident model give more confidence, a lost model gates it down
    assert resolution_confidence_factor(2.0) < resolution_confidence_factor(4.0) <= 1.0
    assert resolution_confidence_factor(0.0) == 0.0
    np.testing.assert_allclose(decode_confidence_gate([0.05, 0.1, 0.6]), [0.25, 0.5, 1.0])


# --------------------------------------------------------------------------- the posterior-wall gap


def _lv_line_image(leaflet: bool, wall_band: bool = False, noise: float = 0.1) -> np.ndarray:
    """A vertical LV line (x = 60) at 2.5 px/mm, anterior at the top: septum 20-40, LV blood 40-140
    (with a bright 2 mm leaflet at 118-123 when ``leaflet``), posterior wall 140-170 (with an
    echo-poor band 156-161 when ``wall_band``), pericardium 170-180."""
    steps = [(20.0, 140.0), (40.0, -140.0), (140.0, 140.0), (170.0, 95.0), (180.0, -165.0)]
    if leaflet:
        steps += [(118.0, 160.0), (123.0, -160.0)]
    if wall_band:
        steps += [(156.0, -90.0), (161.0, 90.0)]
    return _step_image(steps, shape=(120, 220), noise=noise, seed=3).T.copy()


LV_LINE = ("rv_septum", "septum_lv", "lv_pw", "pw_pericardium")


def test_a_caliper_on_a_leaflet_inside_the_lv_moves_past_the_blood_gap_onto_the_wall():
    img = _lv_line_image(leaflet=True)
    model = np.array([[60.0, 21.0], [60.0, 39.0], [60.0, 117.0], [60.0, 171.0]])  # lv_pw on the leaflet
    r = refine_plax_keypoints(img, model, LV_LINE, px_per_mm=2.5, bloom_correction=False)
    assert abs(r.points_xy[2, 1] - 140.0) < 2.0  # on the wall, not the leaflet at 118
    assert r.interface_shift_px[2] > 15.0  # the move counts as model-image disagreement (confidence)
    assert r.past_gap_px is not None and r.past_gap_px[2] > 15.0 and not r.past_gap_px[[0, 1, 3]].any()
    # without the leaflet the same start finds the wall's own step and nothing else moves it
    plain = refine_plax_keypoints(_lv_line_image(leaflet=False), np.array([[60.0, 21.0], [60.0, 39.0], [60.0, 135.0],
                                                                            [60.0, 171.0]]),
                                  LV_LINE, px_per_mm=2.5, bloom_correction=False)
    assert abs(plain.points_xy[2, 1] - 140.0) < 2.0 and abs(plain.shift_px[2]) < 7.0
    assert plain.past_gap_px is None


def test_an_echo_poor_band_inside_the_wall_does_not_move_the_caliper_to_the_pericardium():
    # a 2 mm dark band 6.4 mm into the wall: moving past it would leave under 4 mm of wall
    img = _lv_line_image(leaflet=False, wall_band=True, noise=0.0)
    model = np.array([[60.0, 21.0], [60.0, 39.0], [60.0, 139.0], [60.0, 171.0]])
    r = refine_plax_keypoints(img, model, LV_LINE, px_per_mm=2.5, bloom_correction=False)
    assert abs(r.points_xy[3, 1] - 170.0) < 2.0  # the pericardium found where it is
    assert abs(r.points_xy[2, 1] - 140.0) < 2.0
    # the same band with more wall behind it would count as a gap (the rule is what keeps it)
    from echomeasure.propose import edges

    old = edges.WALL_GAP_MIN_WALL_MM
    try:
        edges.WALL_GAP_MIN_WALL_MM = 1.0
        moved = refine_plax_keypoints(img, model, LV_LINE, px_per_mm=2.5, bloom_correction=False)
    finally:
        edges.WALL_GAP_MIN_WALL_MM = old
    assert moved.points_xy[2, 1] > 160.0


def test_propose_tells_the_reviewer_when_the_posterior_wall_caliper_was_moved_off_a_leaflet():
    """A held-out-family frame whose posterior mitral leaflet lies in front of the wall (case seed
    9 000 019, ED): plax-linear 2.0's lv_pw lands on the leaflet; the notice names the frame and the
    move.  (2.1, trained on the rf family too, lands on the wall there: the version is pinned.)"""
    from echomeasure.propose import propose
    from echomeasure.synthetic.styles import render_styled_plax
    from echomeasure.training.datasets import _styled_ed_es, plax_params_for_seed
    from echomeasure.training.evaluate import _plax_clip

    params = plax_params_for_seed(9_000_019, style="scatter")
    ed, _ = _styled_ed_es(params, "scatter")
    r = render_styled_plax(params, "scatter", frames=[ed], labels=False)
    result = propose(_plax_clip(r.frames, r.regions, r.frame_time_ms), only=["lvidd", "lvpwd"], check_view=False,
                     model_versions={"plax-linear": "2.0"})
    moved = [n for n in result.notices if "posterior-wall caliper sat on an echo inside the LV" in n]
    assert len(moved) == 1 and moved[0].startswith("ED frame 0:")
    lvidd = next(p for p in result.measurements if p.name == "lvidd")
    truth_mm = float(r.truth["frames"][ed]["values_cm"]["lvidd"]) * 10.0
    assert abs(lvidd.value * 10.0 - truth_mm) < 5.0  # no longer a gross miss
