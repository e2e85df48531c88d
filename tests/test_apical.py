"""Synthetic apical 4- and 2-chamber cines: CAMUS label maps, frame-exact ED/ES, volume truth."""

from __future__ import annotations

import dataclasses
import json
import math

import cv2
import numpy as np
import pydicom
import pytest

from echomeasure.cli import main
from echomeasure.synthetic.apical import (
    APICAL_LABEL_CLASSES,
    LABEL_LA,
    LABEL_LV,
    LABEL_MYO,
    apical_state,
    area_length_ml,
    disc_diameters_cm,
    la_area_length_cm,
    la_volume_ml,
    lv_volume_ml,
    mod_biplane_ml,
    mod_single_plane_ml,
    render_apical,
    sample_apical_case_params,
    sample_apical_heart,
    sector_geometry,
    volume_curves,
)


@pytest.fixture(scope="module")
def a4c_small():
    params = dataclasses.replace(sample_apical_case_params(5, 0, "a4c", small=True), n_frames=24,
                                 height_px=240, width_px=320)
    return params, render_apical(params, labels=True)


def _ellipsoid_heart(seed: int = 1, **changes):
    heart = sample_apical_heart(np.random.default_rng(seed))
    return dataclasses.replace(heart, apex_exponent=2.0, base_narrowing=0.0, **changes)


def test_label_maps_hold_camus_classes_and_the_contours(a4c_small):
    params, cine = a4c_small
    assert APICAL_LABEL_CLASSES == {0: "background", 1: "lv", 2: "myocardium", 3: "la"}
    assert cine.labels.shape == cine.frames.shape[:3] and cine.labels.dtype == np.uint8
    assert set(np.unique(cine.labels)) == {0, LABEL_LV, LABEL_MYO, LABEL_LA}
    # LV label area = area of the truth contour (polygon in pixels), on the ED and ES frames
    contours = cine.truth["contours"]
    for phase, frame in (("ed", cine.ed_frame), ("es", cine.es_frame)):
        for name, label in (("lv", LABEL_LV), ("la", LABEL_LA)):
            poly = np.asarray(contours[phase][name], dtype=np.float32)
            area_poly = abs(cv2.contourArea(poly))
            area_label = float(np.sum(cine.labels[frame] == label))
            assert area_label == pytest.approx(area_poly, rel=0.04), (phase, name)
    # the myocardium surrounds the cavity: every LV pixel's 4 neighbours are LV or myocardium
    lab = cine.labels[cine.ed_frame]
    lv = lab == LABEL_LV
    ring = cv2.dilate(lv.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~lv
    assert np.mean(np.isin(lab[ring], (LABEL_MYO, LABEL_LA, 0))) == 1.0
    assert np.mean(lab[ring] == LABEL_MYO) > 0.6


def test_ed_and_es_are_frame_exact(a4c_small):
    params, cine = a4c_small
    true_volume = volume_curves(params)["lv_true"]
    assert cine.ed_frame == int(np.argmax(true_volume)) and cine.es_frame == int(np.argmin(true_volume))
    lv_area = (cine.labels == LABEL_LV).sum(axis=(1, 2))
    # the labelled cavity is largest at ED and smallest at ES (up to pixel noise of one frame)
    assert lv_area[cine.ed_frame] >= lv_area.max() * 0.995
    assert lv_area[cine.es_frame] <= lv_area.min() * 1.005
    truth = cine.truth
    assert truth["ed_frame"] == cine.ed_frame and truth["es_frame"] == cine.es_frame
    v = truth["volumes"]["true_3d"]
    # the sampled frames need not hit the exact instants of end-diastole / end-systole
    assert params.heart.ef_percent - 6.0 < v["lvef"] <= params.heart.ef_percent + 1e-6
    assert v["lvedv"] == pytest.approx(lv_volume_ml(params.heart, params.state(cine.ed_frame)), abs=1e-3)
    assert v["lvef"] == pytest.approx(100 * (v["lvedv"] - v["lvesv"]) / v["lvedv"], abs=1e-3)


def test_true_volume_of_an_ellipsoid_and_the_method_of_discs():
    heart = _ellipsoid_heart(lv_radius_4c_cm=2.5, lv_radius_2c_cm=2.0, lv_length_cm=8.0)
    st = apical_state(heart, 0.0, 0.33)
    # half prolate ellipsoid: 2/3 pi a b L
    assert lv_volume_ml(heart, st) == pytest.approx(2.0 / 3.0 * math.pi * 2.5 * 2.0 * 8.0, rel=1e-4)
    d4, l4 = disc_diameters_cm(heart, st, "a4c")
    d2, l2 = disc_diameters_cm(heart, st, "a2c")
    assert len(d4) == 20 and l4 == pytest.approx(8.0)
    # a single plane assumes a circular cross-section: A4C over-, A2C under-estimates here
    assert mod_single_plane_ml(d4, l4) == pytest.approx(2.0 / 3.0 * math.pi * 2.5 * 2.5 * 8.0, rel=0.01)
    assert mod_single_plane_ml(d2, l2) == pytest.approx(2.0 / 3.0 * math.pi * 2.0 * 2.0 * 8.0, rel=0.01)
    assert mod_biplane_ml(d4, d2, l4, l2) == pytest.approx(lv_volume_ml(heart, st), rel=0.01)


def test_la_area_length_is_exact_for_a_whole_spheroid():
    heart = _ellipsoid_heart(la_radius_4c_cm=2.0, la_radius_2c_cm=2.0, la_half_length_cm=2.8, la_centre_cm=2.8,
                             la_filling=0.85)
    st = apical_state(heart, 0.3, 0.3)
    area, length = la_area_length_cm(heart, st, "a4c")
    s = st.la_scale
    assert area == pytest.approx(math.pi * 2.0 * 2.8 * s * s, rel=1e-6)
    assert length == pytest.approx(2 * 2.8 * s, rel=1e-9)
    assert area_length_ml(area, length) == pytest.approx(la_volume_ml(heart, st), rel=1e-6)
    # an LA cut by the annulus plane is smaller than the whole ellipsoid
    cut = dataclasses.replace(heart, la_centre_cm=1.5)
    assert la_volume_ml(cut, apical_state(cut, 0.3, 0.3)) < la_volume_ml(heart, st)


def test_both_views_of_a_case_image_the_same_heart_inside_the_sector():
    for index in range(6):
        p4 = sample_apical_case_params(3, index, "a4c")
        p2 = sample_apical_case_params(3, index, "a2c")
        assert p4.heart == p2.heart and p4.view == "a4c" and p2.view == "a2c"
        for p in (p4, p2):
            geom = sector_geometry(p)
            cine = render_apical(dataclasses.replace(p, n_frames=min(p.n_frames, 40)), frames=[0], labels=True)
            lab = cine.labels[0]
            # the LV and LA are whole: no labelled pixel on the sector's outer rim
            assert lab.any() and geom.cm_per_px > 0
            rim = cv2.dilate((~_sector_mask(geom)).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            assert not np.isin(lab[rim], (LABEL_LV, LABEL_LA)).any()


def _sector_mask(geom) -> np.ndarray:
    from echomeasure.synthetic.ultrasound import ScanConverter

    return ScanConverter(geom).sector_mask


def test_cli_synth_apical_writes_one_study_with_two_views(tmp_path, capsys):
    out = tmp_path / "apical"
    assert main(["synth", str(out), "--cases", "1", "--kind", "apical", "--small", "-q"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["kind"] for x in lines] == ["a4c", "a2c"]
    ds4 = pydicom.dcmread(out / "case_0000_a4c.dcm")
    ds2 = pydicom.dcmread(out / "case_0000_a2c.dcm")
    assert ds4.StudyInstanceUID == ds2.StudyInstanceUID and ds4.SeriesInstanceUID != ds2.SeriesInstanceUID
    assert int(ds4.NumberOfFrames) == 40 and ds4.SeriesDescription == "A4C 2D"
    t4 = json.loads((out / "case_0000_a4c.truth.json").read_text())
    t2 = json.loads((out / "case_0000_a2c.truth.json").read_text())
    assert t4["view"] == "a4c" and t2["view"] == "a2c"
    assert t4["volumes"]["biplane"]["lvedv"] == pytest.approx(t2["volumes"]["biplane"]["lvedv"], rel=0.02)
    assert t4["measurements"]["lvedv"]["method"] == "single-plane A4C"
    assert {"lvedv", "lvesv", "lvef", "la_volume"} <= set(t4["measurements"])
    # same seed, same bytes
    again = tmp_path / "again"
    assert main(["synth", str(again), "--cases", "1", "--kind", "a4c", "--small", "-q"]) == 0
    assert (again / "case_0000_a4c.dcm").read_bytes() == (out / "case_0000_a4c.dcm").read_bytes()


@pytest.mark.parametrize("view", ["a4c", "a2c"])
def test_method_of_discs_on_the_label_maps_matches_the_truth(view):
    """What a segmentation would feed: the label maps of ED and ES give the truth's volumes."""
    from echomeasure.propose import volumes

    params = sample_apical_case_params(1, 3, view, small=True)
    probe = render_apical(params, frames=[0], labels=False)  # ED/ES come with the truth
    ed, es = probe.ed_frame, probe.es_frame
    cine = render_apical(params, frames=[ed, es], labels=True)
    truth = cine.truth["volumes"]
    ax_ed, ax_es = volumes.lv_axis(cine.labels[0]), volumes.lv_axis(cine.labels[1])
    edv = volumes.mod_single_plane_ml(ax_ed, cine.cm_per_px)
    esv = volumes.mod_single_plane_ml(ax_es, cine.cm_per_px)
    assert edv == pytest.approx(truth["method_of_discs"]["lvedv"], rel=0.02)
    assert esv == pytest.approx(truth["method_of_discs"]["lvesv"], rel=0.02)
    assert volumes.ef_percent(edv, esv) == pytest.approx(truth["method_of_discs"]["lvef"], abs=1.0)
    la = volumes.la_area_length_ml(cine.labels[1], cine.cm_per_px, ax_es)
    assert la == pytest.approx(truth["area_length"]["la_volume"], rel=0.03)
    assert ax_ed.length_px * cine.cm_per_px == pytest.approx(cine.truth["frames"][ed]["lv_length_cm"], rel=0.02)
    # no LV in the map: no axis, no volume
    assert volumes.lv_axis(np.where(cine.labels[0] == 1, 0, cine.labels[0])) is None


class _OracleRunner:
    """Stands in for a segmentation network: returns the phantom's own label maps as logits."""

    def __init__(self, labels_by_frame: np.ndarray, transform):
        self.labels = labels_by_frame
        self.transform = transform
        self.calls = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h, w = x.shape[2:]
        x0, y0, x1, y1 = self.transform.box.as_tuple()
        out = []
        for lab in self.labels[self.calls : self.calls + len(x)]:
            small = cv2.resize(lab[y0 : y1 + 1, x0 : x1 + 1], (w, h), interpolation=cv2.INTER_NEAREST)
            out.append(np.stack([(small == k) * 20.0 - 10.0 for k in range(4)]))
        self.calls += len(x)
        return np.asarray(out, dtype=np.float32)


def _engine(runner):
    from types import SimpleNamespace

    from echomeasure.propose.types import ModelInfo

    entry = SimpleNamespace(input_size=(128, 128), name="apical-seg", version="test", sha256="0" * 64)
    return SimpleNamespace(entry=entry, runner=runner, info=ModelInfo("apical-seg", "test", "0" * 64))


def test_apical_proposals_from_a_perfect_segmentation_match_the_truth():
    """The apical path (batching, crop, upsampling, ED/ES by area, discs, EF, LA) on ideal label maps."""
    from echomeasure.ingest.clip import Clip
    from echomeasure.models.preprocess import CropTransform
    from echomeasure.propose.apical import propose_apical

    params = dataclasses.replace(sample_apical_case_params(2, 1, "a4c", small=True), n_frames=20)
    cine = render_apical(params, labels=True)
    clip = Clip(frames=cine.frames, frame_time_ms=cine.frame_time_ms, regions=cine.regions, source_kind="dicom")
    runner = _OracleRunner(cine.labels, CropTransform.for_clip(clip, (128, 128), "2d"))
    result = propose_apical(clip, "a4c", engine=_engine(runner), batch_size=8)
    assert (result.ed_frame, result.es_frame) == (cine.ed_frame, cine.es_frame)
    values = {v["name"]: v for v in result.volumes}
    truth = cine.truth["volumes"]
    assert values["lvedv"]["method"] == "single-plane A4C" and values["lvedv"]["unit"] == "ml"
    assert values["lvedv"]["value"] == pytest.approx(truth["method_of_discs"]["lvedv"], rel=0.05)
    assert values["lvesv"]["value"] == pytest.approx(truth["method_of_discs"]["lvesv"], rel=0.06)
    assert values["lvef"]["value"] == pytest.approx(truth["method_of_discs"]["lvef"], abs=3.0)
    assert values["la_volume"]["value"] == pytest.approx(truth["area_length"]["la_volume"], rel=0.08)
    structures = {(s["frame"], s["structure"]) for s in result.segmentations}
    assert structures == {(f, s) for f in (cine.ed_frame, cine.es_frame) for s in ("lv", "myocardium", "la")}
    assert all(len(s["polygon"]) >= 4 and s["area_cm2"] > 0 and s["confidence"] > 0.9 for s in result.segmentations)


def test_the_proposed_figures_are_those_of_the_proposed_polygons():
    """The reviewer sees polygons, so the proposal measures those: EDV, ESV, EF by the rule the review
    UI and the export apply to contours (volumes.contour_lv_volumes), LV length and LA volume on the
    same label maps; with and without --per-frame."""
    from echomeasure.ingest.clip import Clip
    from echomeasure.models.preprocess import CropTransform
    from echomeasure.propose import volumes
    from echomeasure.propose.apical import propose_apical

    params = dataclasses.replace(sample_apical_case_params(2, 4, "a2c", small=True), n_frames=12)
    cine = render_apical(params, labels=True)
    clip = Clip(frames=cine.frames, frame_time_ms=cine.frame_time_ms, regions=cine.regions, source_kind="dicom")
    for per_frame in (False, True):
        runner = _OracleRunner(cine.labels, CropTransform.for_clip(clip, (128, 128), "2d"))
        result = propose_apical(clip, "a2c", engine=_engine(runner), batch_size=8, per_frame=per_frame)
        values = {v["name"]: v["value"] for v in result.volumes}
        ed, es = result.ed_frame, result.es_frame
        figures = volumes.contour_lv_volumes(result.segmentations, width_px=clip.width, height_px=clip.height,
                                             cm_per_px=cine.cm_per_px, ed_frame=ed, es_frame=es)
        assert (values["lvedv"], values["lvesv"], values["lvef"]) == (
            figures["edv_ml"], figures["esv_ml"], figures["ef_percent"])
        maps = {f: volumes.contour_label_map(result.segmentations, f, clip.width, clip.height) for f in (ed, es)}
        ed_axis, es_axis = volumes.lv_axis(maps[ed]), volumes.lv_axis(maps[es])
        assert values["lv_length"] == round(ed_axis.length_px * cine.cm_per_px, 3)
        assert values["la_volume"] == round(volumes.la_area_length_ml(maps[es], cine.cm_per_px, es_axis), 2)


def test_a_segmentation_without_an_lv_gives_no_volume_and_a_notice():
    from echomeasure.ingest.clip import Clip
    from echomeasure.propose.apical import propose_apical

    params = dataclasses.replace(sample_apical_case_params(2, 2, "a2c", small=True), n_frames=6)
    cine = render_apical(params, labels=False)
    clip = Clip(frames=cine.frames, frame_time_ms=cine.frame_time_ms, regions=cine.regions, source_kind="dicom")

    def background_only(x):
        out = np.full((len(x), 4) + x.shape[2:], -10.0, np.float32)
        out[:, 0] = 10.0
        return out

    result = propose_apical(clip, "a2c", engine=_engine(background_only))
    values = {v["name"]: v for v in result.volumes}
    assert values["lvedv"]["value"] is None and values["lvedv"]["confidence"] == 0.0
    assert values["lvef"]["value"] is None and "no left ventricle" in result.notices[0]
    assert result.segmentations == []


def test_one_pass_keeps_the_first_largest_and_smallest_lv_frames_across_batches():
    """ED/ES come from one pass that keeps only two frames' probabilities: the first frame of the
    largest and of the smallest LV area, wherever the batches split; --per-frame gets every frame's
    polygons and the same volumes."""
    from echomeasure.ingest.clip import Clip
    from echomeasure.propose.apical import propose_apical

    params = dataclasses.replace(sample_apical_case_params(2, 3, "a4c", small=True), n_frames=11)
    cine = render_apical(params, labels=False)
    clip = Clip(frames=cine.frames, frame_time_ms=cine.frame_time_ms, regions=cine.regions, source_kind="dicom")
    # LV disc radius per frame (model pixels): largest at frames 3 and 8 (tie), smallest at 5 and 10 (tie)
    radii = [20, 22, 24, 30, 21, 12, 18, 25, 30, 19, 12]
    calls: list[int] = []

    def discs(x):
        n, h, w = len(x), x.shape[2], x.shape[3]
        start = sum(calls)
        calls.append(n)
        yy, xx = np.mgrid[0:h, 0:w]
        out = np.full((n, 4, h, w), -10.0, np.float32)
        for j in range(n):
            lv = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < radii[start + j] ** 2
            out[j, 1][lv] = 10.0
            out[j, 0][~lv] = 10.0
        return out

    for batch in (4, 16):
        calls.clear()
        result = propose_apical(clip, "a4c", engine=_engine(discs), batch_size=batch)
        assert (result.ed_frame, result.es_frame) == (3, 5)
        assert {s["frame"] for s in result.segmentations} == {3, 5}
    calls.clear()
    every = propose_apical(clip, "a4c", engine=_engine(discs), batch_size=4, per_frame=True)
    assert [s["frame"] for s in every.segmentations] == list(range(11))
    assert every.volumes == result.volumes
