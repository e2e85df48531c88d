"""Doppler strips as scanners export them: reference pixels, baselines, missing attributes.

Each test starts from a synthetic strip and changes what real exports vary in, then checks the
values, the flow chosen and the messages against what was put in.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pydicom
import pytest
from oracle_models import OracleRunner, with_oracle

from echomeasure.cli import main
from echomeasure.errors import CalibrationError
from echomeasure.ingest import read_clip
from echomeasure.ingest.calibration import baseline_row, check_region_calibration, velocity_cm_s_in_region
from echomeasure.ingest.clip import Clip
from echomeasure.models.preprocess import CropTransform
from echomeasure.propose import propose


def _spectral(regions):
    return next(r for r in regions if r.is_spectral)


def _reference_at_top(region):
    """The same calibration, with the reference pixel on the region's top row (and its velocity)."""
    base = region.y0 + region.ref_y0
    return replace(region, ref_y0=0, ref_phys_y=-(base - region.y0) * region.delta_y)


def _with_region(regions, old, new):
    return tuple(new if r is old else r for r in regions)


def _oracle(monkeypatch, clip, peaks_for_channel):
    def runner(entry):
        t = CropTransform.for_clip(clip, entry.input_size, "doppler")
        return OracleRunner(t, [[peaks_for_channel(ch) for ch in entry.channels]])

    with_oracle(monkeypatch, "doppler-peaks", runner)


@pytest.fixture(scope="module")
def mitral():
    from echomeasure.synthetic import render_doppler_case

    return render_doppler_case(31, small=True, flow="mv")


@pytest.fixture(scope="module")
def av_dicom(tmp_path_factory):
    from echomeasure.synthetic.studio import CaseJob, write_case

    out = tmp_path_factory.mktemp("doppler")
    write_case(out, CaseJob(0, "doppler", "av"), 11, small=True)
    return out / "case_0000.dcm"


# ------------------------------------------------------------------ the zero-velocity baseline


def test_baseline_is_the_zero_velocity_row_when_the_reference_pixel_carries_a_velocity(mitral):
    region = _spectral(mitral.regions)
    moved = _reference_at_top(region)
    assert baseline_row(moved) == pytest.approx(baseline_row(region))
    assert velocity_cm_s_in_region(moved, baseline_row(moved)) == pytest.approx(0.0, abs=1e-9)
    for row in (region.y0, region.y1):
        assert velocity_cm_s_in_region(moved, row) == pytest.approx(velocity_cm_s_in_region(region, row))


def test_mitral_strip_referenced_at_its_top_row_is_still_mitral_inflow(mitral, use_random_weights, monkeypatch):
    """A scanner that gives the velocity of the strip's top row (ReferencePixelY0 0 with its
    ReferencePixelPhysicalValueY) describes the same scale; the spectrum is above the zero line,
    toward the transducer: mitral inflow, not LVOT (it was read as 'below the baseline')."""
    region = _spectral(mitral.regions)
    regions = _with_region(mitral.regions, region, _reference_at_top(region))
    clip = Clip(mitral.image[None], None, regions, "dicom")
    _oracle(monkeypatch, clip, lambda ch: mitral.peaks.get(ch, []))
    result = propose(clip, per_frame=True)
    assert [p.name for p in result.measurements] == ["mv_e", "mv_a", "mv_ea"]
    assert result.frames[0]["flow_evidence"]["side"] == "above"
    by = {p.name: p for p in result.measurements}
    truth = mitral.truth["measurements"]
    assert by["mv_e"].value == pytest.approx(truth["mv_e"]["value"], rel=0.02)
    assert by["mv_e"].signed_value > 0


def test_spectral_region_without_reference_row_is_refused_not_read_from_its_top(av_dicom, tmp_path, capsys):
    ds = pydicom.dcmread(av_dicom)
    item = next(r for r in ds.SequenceOfUltrasoundRegions if r.RegionSpatialFormat == 3)
    del item.ReferencePixelY0
    path = tmp_path / "no_reference.dcm"
    ds.save_as(path)
    with pytest.raises(CalibrationError, match="ReferencePixelY0"):
        read_clip(path)
    assert main(["measure", "-q", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"error: {path}: ") and "ReferencePixelY0" in err
    assert len(err.strip().splitlines()) == 1


def test_baseline_outside_the_spectral_region_is_refused(mitral):
    region = _spectral(mitral.regions)
    off = replace(region, ref_y0=0, ref_phys_y=float(np.sign(region.delta_y)) * 50.0)  # zero line above the box
    with pytest.raises(CalibrationError, match="outside the region"):
        check_region_calibration([off])
    check_region_calibration([_reference_at_top(region)])


# ------------------------------------------------------------------ what the reviewer is told


@pytest.fixture(scope="module")
def jets():
    from echomeasure.synthetic import render_doppler_case

    return {flow: render_doppler_case(101, small=True, flow=flow) for flow in ("av", "tr")}


def test_jet_without_ecg_is_flagged_with_a_notice_that_av_or_tr_is_unknown(jets, use_random_weights, monkeypatch):
    """Without an ECG nothing but the model's scores tells an AV jet from TR (right about half the
    time): the proposal is flagged and the reviewer told to check which flow it is."""
    from echomeasure.propose import doppler_beats

    strip = jets["av"]
    ecg = doppler_beats.ecg_region(strip.regions)
    image = strip.image.copy()
    image[ecg.y0 : ecg.y1 + 1, ecg.x0 : ecg.x1 + 1] = 0
    regions = tuple(r for r in strip.regions if r is not ecg)
    clip = Clip(image[None], None, regions, "dicom")
    _oracle(monkeypatch, clip, lambda ch: strip.peaks["av_vmax"] if ch == "tr_vmax" else [])
    result = propose(clip, per_frame=True)
    (p,) = result.measurements
    assert p.name == "tr_vmax" and result.frames[0]["flow_evidence"]["decided_by"] == "model"
    assert p.flagged
    assert any("tricuspid" in n and "tr_vmax" in n for n in result.notices)
    # named by the user, the same strip is measured without that doubt
    named = propose(clip, only="av_vmax")
    assert not any("tricuspid" in n for n in named.notices)


def test_jet_with_ecg_timing_has_no_av_or_tr_notice(jets, use_random_weights, monkeypatch):
    strip = jets["tr"]
    clip = Clip(strip.image[None], None, strip.regions, "dicom")
    _oracle(monkeypatch, clip, lambda ch: strip.peaks["tr_vmax"] if ch == "av_vmax" else [])
    result = propose(clip, per_frame=True)
    assert [p.name for p in result.measurements] == ["tr_vmax"]
    assert result.frames[0]["flow_evidence"]["decided_by"] == "timing"
    assert not any("tricuspid" in n for n in result.notices)


def _aliased(strip, nyquist_rows: int):
    """The strip as a scanner shows it with a scale of ``nyquist_rows`` below the baseline: the
    spectrum beyond it wraps round to the top of the strip."""
    region = _spectral(strip.regions)
    base = int(baseline_row(region))
    span = base - region.y0 + nyquist_rows
    image = strip.image.copy()
    sub = image[region.y0 : region.y1 + 1, region.x0 : region.x1 + 1].copy()
    wrapped = np.zeros((span, *sub.shape[1:]), np.uint8)
    for k in range(sub.shape[0]):
        wrapped[k % span] = np.maximum(wrapped[k % span], sub[k])
    image[region.y0 : region.y1 + 1, region.x0 : region.x1 + 1] = 0
    image[region.y0 : region.y0 + span, region.x0 : region.x1 + 1] = wrapped
    small = replace(region, y1=region.y0 + span - 1)
    return image, _with_region(strip.regions, region, small), small


def test_aliased_jet_cut_by_the_velocity_scale_is_flagged_with_a_notice(jets, use_random_weights, monkeypatch):
    strip = jets["tr"]
    region = _spectral(strip.regions)
    peak_rows = max(y for _, y in strip.peaks["tr_vmax"]) - baseline_row(region)
    image, regions, small = _aliased(strip, int(0.7 * peak_rows))
    clip = Clip(image[None], None, regions, "dicom")
    # the model finds each beat where the spectrum leaves the strip
    _oracle(monkeypatch, clip, lambda ch: [(x, small.y1 - 2.0) for x, _ in strip.peaks["tr_vmax"]]
            if ch == "tr_vmax" else [])
    result = propose(clip, only="tr_vmax")
    (p,) = result.measurements
    assert p.value < 0.8 * strip.truth["measurements"]["tr_vmax"]["value"]  # cut off: underestimated
    assert p.flagged
    assert any(n.startswith("tr_vmax: the spectrum reaches the edge of the velocity scale") for n in result.notices)


def test_unaliased_strip_has_no_scale_edge_notice(jets, use_random_weights, monkeypatch):
    strip = jets["tr"]
    clip = Clip(strip.image[None], None, strip.regions, "dicom")
    _oracle(monkeypatch, clip, lambda ch: strip.peaks["tr_vmax"] if ch == "tr_vmax" else [])
    result = propose(clip, only="tr_vmax")
    assert not any("edge of the velocity scale" in n for n in result.notices)


def test_frequency_scaled_strip_says_its_values_are_left_in_pixels(jets, use_random_weights, monkeypatch):
    strip = jets["av"]
    region = _spectral(strip.regions)
    regions = _with_region(strip.regions, region, replace(region, flags=region.flags | 4, units_y=5))
    clip = Clip(strip.image[None], None, regions, "dicom")
    _oracle(monkeypatch, clip, lambda ch: strip.peaks["av_vmax"] if ch == "av_vmax" else [])
    result = propose(clip, only="av_vmax")
    (p,) = result.measurements
    assert p.value is None and p.unit == "px"
    assert any(n.startswith("Doppler values are left in pixels: ") and "frequency" in n for n in result.notices)


def test_strip_split_into_two_spectral_regions_says_only_one_was_measured(jets, use_random_weights, monkeypatch):
    strip = jets["av"]
    region = _spectral(strip.regions)
    mid = (region.x0 + region.x1) // 2
    left = replace(region, x1=mid)
    right = replace(region, x0=mid + 1, ref_phys_x=region.ref_phys_x + (mid + 1 - region.x0) * region.delta_x)
    regions = (*_with_region(strip.regions, region, left), right)
    clip = Clip(strip.image[None], None, regions, "dicom")
    _oracle(monkeypatch, clip, lambda ch: strip.peaks["av_vmax"] if ch == "av_vmax" else [])
    result = propose(clip, only="av_vmax")
    assert any(n.startswith("the image has 2 spectral Doppler regions; only the largest was measured")
               for n in result.notices)
    single = Clip(strip.image[None], None, strip.regions, "dicom")
    _oracle(monkeypatch, single, lambda ch: strip.peaks["av_vmax"] if ch == "av_vmax" else [])
    assert not any("spectral Doppler regions" in n for n in propose(single, only="av_vmax").notices)


def test_cw_strip_flowing_toward_the_transducer_is_not_passed_off_as_a_jet(mitral, use_random_weights, monkeypatch):
    """Mitral inflow (or aortic regurgitation) recorded with CW flows toward an apical
    transducer; AV and TR, the CW flows, flow away: whichever the model names is flagged."""
    region = _spectral(mitral.regions)
    regions = _with_region(mitral.regions, region, replace(region, data_type=4))  # CW
    clip = Clip(mitral.image[None], None, regions, "dicom")
    _oracle(monkeypatch, clip, lambda ch: mitral.peaks["mv_e"] if ch == "tr_vmax" else [])
    result = propose(clip, per_frame=True)
    (p,) = result.measurements
    assert p.name in ("av_vmax", "tr_vmax") and p.signed_value > 0
    assert p.flagged
    assert result.frames[0]["flow_evidence"]["against_direction"] is True
    assert any(n.startswith("the spectrum flows toward the transducer") for n in result.notices)


def test_region_with_its_box_corners_swapped_is_refused_for_what_it_is(mitral):
    region = _spectral(mitral.regions)
    swapped = replace(region, y0=region.y1, y1=region.y0)
    with pytest.raises(CalibrationError, match="box of the spectral Doppler region is empty"):
        check_region_calibration([swapped])
