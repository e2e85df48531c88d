"""propose(): the whole proposal path with an oracle heatmap model and with random weights.

The oracle replaces the network by heatmaps drawn at the synthetic ground truth, so these tests
check everything around the model (cropping, coordinate mapping, decoding, smoothing in ms,
ED/ES choice, calibration, Doppler flow choice and per-beat peaks) without trained weights.
"""

from __future__ import annotations

import numpy as np
import pytest
from oracle_models import OracleRunner, with_oracle

from echomeasure import catalog
from echomeasure.errors import MeasurementError, WeightsError
from echomeasure.ingest.clip import Clip
from echomeasure.models.preprocess import CropTransform
from echomeasure.propose import engine as engine_mod
from echomeasure.propose import propose
from echomeasure.propose.zoom import plax_crop_transform


@pytest.fixture(scope="module")
def plax_case():
    from echomeasure.synthetic import render_plax_case

    return render_plax_case(3, small=True)


@pytest.fixture(scope="module")
def mv_case():
    from echomeasure.synthetic import render_doppler_case

    return render_doppler_case(3, small=True, flow="mv")


def test_2d_proposals_reproduce_truth_through_oracle_heatmaps(plax_case, use_random_weights, monkeypatch):
    clip = Clip(plax_case.frames, plax_case.frame_time_ms, plax_case.regions, "dicom")

    def runner(entry):
        t = plax_crop_transform(clip, entry.input_size)
        return OracleRunner(t, [list(kp) for kp in plax_case.keypoints])

    with_oracle(monkeypatch, "plax-linear", runner)
    # the model's points themselves, without the edge refinement (tests/test_propose_edges.py)
    result = propose(clip, per_frame=True, batch_size=7, refine_edges=False)
    assert result.kind == "2d" and result.calibration == "dicom"
    assert [p.name for p in result.measurements] == list(catalog.LINEAR_2D)
    assert abs(result.ed_frame - plax_case.ed_frame) <= 1
    assert abs(result.es_frame - plax_case.es_frame) <= 1
    truth = plax_case.truth["measurements"]
    for p in result.measurements:
        phase = catalog.get(p.name).phase
        assert p.frame == (result.ed_frame if phase == "ed" else result.es_frame)
        assert p.unit == "cm"
        assert p.value == pytest.approx(truth[p.name]["value"], abs=0.05), p.name  # 0.5 mm
        assert 0.5 < p.confidence <= 1.0
    assert len(result.frames) == clip.n_frames
    assert set(result.frames[0]["points"]) == set(catalog.KEYPOINTS_2D)


def test_2d_uncalibrated_video_gives_px_and_null_value(plax_case, use_random_weights):
    clip = Clip(plax_case.frames[:6], 33.3, (), "video")
    result = propose(clip)
    assert result.calibration == "none"
    for p in result.measurements:
        assert p.value is None and p.unit == "px"
        assert p.pixel_length is not None and p.pixel_length >= 0
        for x, y in p.points:
            assert 0 <= x < clip.width and 0 <= y < clip.height


def test_user_scale_turns_pixels_into_cm(plax_case, use_random_weights):
    clip = Clip(plax_case.frames[:4], 33.3, (), "video", user_cm_per_px=0.05)
    result = propose(clip, only="lvidd")
    (p,) = result.measurements
    assert result.calibration == "user"
    assert p.unit == "cm" and p.value == pytest.approx(p.pixel_length * 0.05)


def test_doppler_name_on_2d_clip_is_refused_before_any_model_runs(plax_case, tmp_path, monkeypatch):
    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(tmp_path))  # no weights at all
    clip = Clip(plax_case.frames[:2], 33.3, plax_case.regions, "dicom")
    with pytest.raises(MeasurementError, match="av_vmax is a Doppler measurement but this clip is a 2D cine"):
        propose(clip, only="av_vmax")
    with pytest.raises(MeasurementError, match="unknown measurement 'lvedv'"):
        propose(clip, only=["lvedv"])


def test_missing_weights_tell_user_to_train(plax_case, tmp_path, monkeypatch):
    engine_mod.clear_engines()
    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(tmp_path))
    clip = Clip(plax_case.frames[:2], 33.3, plax_case.regions, "dicom")
    with pytest.raises(WeightsError, match="echomeasure train"):
        propose(clip)


def test_doppler_flow_chosen_by_confidence_and_per_beat_values(mv_case, use_random_weights, monkeypatch):
    clip = Clip(mv_case.image[None], None, mv_case.regions, "dicom")
    assert clip.kind == "doppler"

    def runner(entry):
        t = CropTransform.for_clip(clip, entry.input_size, "doppler")
        per_channel = [mv_case.peaks.get(ch, []) for ch in entry.channels]
        return OracleRunner(t, [per_channel])

    with_oracle(monkeypatch, "doppler-peaks", runner)
    # the oracle's points are exact: compare them without the envelope snapping
    result = propose(clip, snap_doppler_to_envelope=False)
    names = [p.name for p in result.measurements]
    assert names == ["mv_e", "mv_a", "mv_ea"]
    truth = mv_case.truth["measurements"]
    by_name = {p.name: p for p in result.measurements}
    for name in ("mv_e", "mv_a"):
        p = by_name[name]
        assert p.unit == "m/s"
        assert len(p.beat_points) == len(mv_case.peaks[name]) and len(p.points) == 1  # every beat; one marker shown
        assert p.value == pytest.approx(truth[name]["value"], rel=0.03)
    assert by_name["mv_ea"].value == pytest.approx(truth["mv_ea"]["value"], rel=0.05)
    assert by_name["mv_ea"].unit == "ratio"


def test_doppler_only_restricts_to_the_named_peak(mv_case, use_random_weights, monkeypatch):
    clip = Clip(mv_case.image[None], None, mv_case.regions, "dicom")

    def runner(entry):
        t = CropTransform.for_clip(clip, entry.input_size, "doppler")
        return OracleRunner(t, [[mv_case.peaks.get(ch, []) for ch in entry.channels]])

    with_oracle(monkeypatch, "doppler-peaks", runner)
    result = propose(clip, only="mv_e")
    assert [p.name for p in result.measurements] == ["mv_e"]
    with pytest.raises(MeasurementError, match="lvidd is a 2D measurement"):
        propose(clip, only="lvidd")


def test_progress_reports_every_batch_up_to_the_frame_count(plax_case, use_random_weights):
    clip = Clip(plax_case.frames[:10], plax_case.frame_time_ms, plax_case.regions, "dicom")
    calls: list[tuple[int, int]] = []
    propose(clip, progress=lambda done, total: calls.append((done, total)), batch_size=4, backend="torch")
    assert calls == [(4, 10), (8, 10), (10, 10)]


def test_model_version_selects_a_registered_version(plax_case, use_random_weights, tmp_path):
    import shutil

    from echomeasure.models.registry import get_entry, register

    folder = tmp_path / "weights"
    shutil.copytree(use_random_weights, folder)
    old = get_entry("plax-linear", None, folder)
    register(old.__class__.from_json({**old.to_json(), "version": "0.1-ft", "parent": old.version, "created": ""}),
             weights_dir=folder, activate=False)
    clip = Clip(plax_case.frames[:2], 33.3, plax_case.regions, "dicom")
    assert propose(clip, weights_dir=folder, backend="torch").model.version == old.version
    chosen = propose(clip, weights_dir=folder, model_versions={"plax-linear": "0.1-ft"}, backend="torch")
    assert chosen.model.version == "0.1-ft"


def test_doppler_flow_limited_to_the_region_mode(use_random_weights, monkeypatch):
    """A CW strip is AV or TR (ASE): an equally strong LVOT (PW) response cannot win."""
    from echomeasure.synthetic import render_doppler_case

    strip = render_doppler_case(5, small=True, flow="av")
    clip = Clip(strip.image[None], None, strip.regions, "dicom")
    assert next(r for r in clip.regions if r.is_spectral).data_type == 4  # CW

    def runner(entry):
        t = CropTransform.for_clip(clip, entry.input_size, "doppler")
        av = strip.peaks["av_vmax"]
        return OracleRunner(t, [[av if ch in ("av_vmax", "lvot_vmax") else [] for ch in entry.channels]])

    with_oracle(monkeypatch, "doppler-peaks", runner)
    result = propose(clip)
    assert [p.name for p in result.measurements] == ["av_vmax"]


def test_implausible_values_are_proposed_with_confidence_zero():
    from echomeasure import catalog
    from echomeasure.propose.values import plausibility

    assert plausibility("lvpwd", 0.0001, "cm") == 0.0  # a collapsed caliper
    assert plausibility("lvidd", 12.0, "cm") == 0.0
    assert plausibility("av_vmax", -9.0, "m/s") == 0.0
    assert plausibility("lvidd", 4.8, "cm") == 1.0
    assert plausibility("av_vmax", -3.2, "m/s") == 1.0  # the sign is the flow direction
    assert plausibility("lvpwd", 0.0001, "px") == 1.0  # uncalibrated: nothing to judge
    assert set(catalog.PLAUSIBLE_RANGE) == set(catalog.LINEAR_2D) | set(catalog.DOPPLER_CHANNELS)


def test_an_anatomically_impossible_caliper_is_flagged_in_the_measure_json(plax_case, use_random_weights, monkeypatch):
    """The oracle puts the LA posterior wall 12 mm sideways off the aortic root line on every
    frame: the consistency check gives LA confidence 0 and the contract JSON marks it ``flagged``."""
    from echomeasure.propose.engine import to_contract_json

    clip = Clip(plax_case.frames, plax_case.frame_time_ms, plax_case.regions, "dicom")
    k = {n: i for i, n in enumerate(catalog.KEYPOINTS_2D)}
    shifted = []
    for kp in plax_case.keypoints:
        kp = np.array(kp, dtype=float)
        d = kp[k["la_posterior"]] - kp[k["la_anterior"]]
        kp[k["la_posterior"]] += np.array([-d[1], d[0]]) / np.hypot(*d) * (12.0 / (plax_case.cm_per_px * 10.0))
        shifted.append(list(kp))

    def runner(entry):
        return OracleRunner(plax_crop_transform(clip, entry.input_size), shifted)

    with_oracle(monkeypatch, "plax-linear", runner)
    result = propose(clip, refine_edges=False)
    out = {m["name"]: m for m in to_contract_json(result, "x.dcm")["measurements"]}
    assert all(isinstance(m["flagged"], bool) for m in out.values())
    assert out["la"]["confidence"] == 0.0 and out["la"]["flagged"] is True
    assert out["lvidd"]["flagged"] is False and out["lvidd"]["confidence"] > 0.5
