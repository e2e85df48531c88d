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
