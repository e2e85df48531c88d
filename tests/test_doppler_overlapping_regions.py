"""Overlapping spectral Doppler regions of different scales: one region measures the strip.

A scanner may export the whole strip as a spectral region and a part of it as another with its
own PhysicalDeltaY.  The model reads the strip, its baseline and envelope in one region; each
beat's value, the reviewer's caliper and the stored value must use the same region's scale
(:func:`echomeasure.ingest.calibration.spectral_region`).  Before, the model measured the largest
region and each value came from the smallest one containing the point (a different figure for
the same peak).
"""

from __future__ import annotations

import copy

import pydicom
import pytest
from oracle_models import OracleRunner, with_oracle

from echomeasure.ingest import read_clip
from echomeasure.ingest.calibration import calibrated_value, spectral_region, velocity_m_s
from echomeasure.models.preprocess import CropTransform
from echomeasure.propose import doppler, propose

#: The inner region's scale against the strip's: its velocities are 80 % of the strip's.
INNER_SCALE = 0.8


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    """A synthetic AV strip written as DICOM, with a second spectral region (pydicom) inside it:
    the middle of the strip, same baseline row, another velocity scale."""
    import json

    from echomeasure.synthetic.studio import CaseJob, write_case

    out = tmp_path_factory.mktemp("overlap")
    write_case(out, CaseJob(0, "doppler", "av"), 11, small=True)
    ds = pydicom.dcmread(out / "case_0000.dcm")
    outer = next(r for r in ds.SequenceOfUltrasoundRegions if r.RegionSpatialFormat == 3)
    inner = copy.deepcopy(outer)
    base = outer.RegionLocationMinY0 + outer.ReferencePixelY0
    inner.RegionLocationMinX0 = outer.RegionLocationMinX0 + 10
    inner.RegionLocationMaxX1 = outer.RegionLocationMaxX1 - 10
    inner.RegionLocationMinY0 = outer.RegionLocationMinY0 + 4
    inner.RegionLocationMaxY1 = outer.RegionLocationMaxY1 - 2
    inner.ReferencePixelY0 = base - inner.RegionLocationMinY0
    inner.PhysicalDeltaY = float(outer.PhysicalDeltaY) * INNER_SCALE
    ds.SequenceOfUltrasoundRegions.append(inner)
    path = out / "two_regions.dcm"
    ds.save_as(path)
    truth = json.loads((out / "case_0000.truth.json").read_text())
    return path, truth


def test_one_region_measures_the_strip_and_gives_every_value(crafted, use_random_weights, monkeypatch):
    path, truth = crafted
    clip = read_clip(path)
    spectral = [r for r in clip.regions if r.is_spectral]
    assert len(spectral) == 2
    outer = max(spectral, key=lambda r: (r.x1 - r.x0) * (r.y1 - r.y0))
    assert spectral_region(clip.regions) is outer and doppler.spectral_region(clip) is outer
    peaks = [tuple(p) for p in truth["measurements"]["av_vmax"]["peaks"]]
    inner = next(r for r in spectral if r is not outer)
    assert all(inner.contains(x, y) for x, y in peaks)  # every beat lies in both regions

    def runner(entry):
        t = CropTransform.for_clip(clip, entry.input_size, "doppler")
        return OracleRunner(t, [[peaks if ch == "av_vmax" else [] for ch in entry.channels]])

    with_oracle(monkeypatch, "doppler-peaks", runner)
    result = propose(clip, only="av_vmax")
    (p,) = result.measurements
    expected = truth["measurements"]["av_vmax"]["value"]
    assert p.value == pytest.approx(expected, rel=0.03)  # the strip's scale, not the inner region's 80 %
    # the shown beat's value as the reviewer's caliper (and the browser's port of the rule) reads it
    (x, y) = p.points[0]
    reviewed, unit, _ = calibrated_value(clip.regions, None, "av_vmax", [[x, y]])
    assert unit == "m/s" and reviewed == pytest.approx(abs(velocity_m_s([outer], x, y)))
    per_beat = [abs(velocity_m_s(clip.regions, bx, by)) for bx, by in p.beat_points]
    assert p.value == pytest.approx(sum(per_beat) / len(per_beat))


def test_a_point_only_the_smaller_region_holds_is_read_in_it(crafted):
    """Outside the overlap there is no choice: a point in one region only is read in that one."""
    from dataclasses import replace

    path, _ = crafted
    clip = read_clip(path)
    outer = spectral_region(clip.regions)
    side = replace(outer, x0=outer.x1 + 1, x1=outer.x1 + 40, delta_y=outer.delta_y * 2)
    y = outer.y1 - 3
    assert spectral_region([outer, side], (outer.x1 + 5, y)) is side
    assert velocity_m_s([outer, side], outer.x1 + 5, y) == pytest.approx(2 * velocity_m_s([outer], outer.x1 - 5, y))
