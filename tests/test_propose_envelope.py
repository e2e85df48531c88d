"""Doppler peaks snapped onto the outer edge of the spectral envelope."""

from __future__ import annotations

import numpy as np
import pytest

from echomeasure.propose.envelope import baseline_row, snap_to_envelope


@pytest.fixture(scope="module")
def strips():
    from echomeasure.synthetic import render_doppler_case

    return [render_doppler_case(seed, small=True, flow=flow) for seed, flow in ((21, "av"), (22, "mv"), (23, "tr"))]


def _spectral(strip):
    return next(r for r in strip.regions if r.is_spectral)


def test_point_placed_short_of_the_envelope_moves_onto_it(strips):
    errors = []
    for strip in strips:
        region = _spectral(strip)
        base = baseline_row(region)
        for pts in strip.peaks.values():
            for x, y in pts:
                # the model reads ~10 % low and a few columns off
                short_y = base + 0.9 * (y - base)
                sx, sy = snap_to_envelope(strip.image, region, x + 3.0, short_y, max_dx_px=8)
                errors.append(abs(abs(sy - base) - abs(y - base)) / abs(y - base))
    errors = np.array(errors)
    assert errors.size >= 8
    assert np.median(errors) < 0.03
    assert np.mean(errors) < 0.05


def test_point_far_from_any_envelope_is_left_alone(strips):
    strip = strips[0]
    region = _spectral(strip)
    base = baseline_row(region)
    x, y = strip.peaks["av_vmax"][0]
    # a point at 40 % of the peak velocity: the edge is 2.5x further, outside the accepted range
    px, py = x, base + 0.4 * (y - base)
    assert snap_to_envelope(strip.image, region, px, py) == (px, py)


def test_point_on_the_baseline_is_left_alone(strips):
    strip = strips[1]
    region = _spectral(strip)
    base = baseline_row(region)
    assert snap_to_envelope(strip.image, region, 100.0, base + 1.0) == (100.0, base + 1.0)


def test_exact_peak_stays_within_a_few_percent(strips):
    errors = []
    for strip in strips:
        region = _spectral(strip)
        base = baseline_row(region)
        for pts in strip.peaks.values():
            for x, y in pts:
                _, sy = snap_to_envelope(strip.image, region, x, y)
                errors.append(abs(abs(sy - base) - abs(y - base)) / abs(y - base))
    assert np.median(errors) < 0.03 and max(errors) < 0.08


def test_trace_reads_the_true_peaks_within_one_percent(strips):
    from echomeasure.propose.envelope import EnvelopeTrace

    errors = []
    for strip in strips:
        region = _spectral(strip)
        base = baseline_row(region)
        traces = {s: EnvelopeTrace.measure(strip.image, region, s) for s in (-1, 1)}
        for pts in strip.peaks.values():
            for x, y in pts:
                found = traces[1 if y > base else -1].local_peak(x, 4)
                assert found is not None
                errors.append(abs(found[1] - abs(y - base)) / abs(y - base))
    assert np.mean(errors) < 0.01 and np.median(errors) < 0.01


def test_isolated_bright_pixel_beyond_the_envelope_does_not_stretch_it(strips):
    strip = strips[0]
    region = _spectral(strip)
    base = baseline_row(region)
    x, y = strip.peaks["av_vmax"][0]
    clean = snap_to_envelope(strip.image, region, x, base + 0.95 * (y - base))
    speckled = strip.image.copy()
    # a bright noise speck 10 % beyond the peak, a few columns to its side
    speckled[int(round(base + 1.1 * (y - base))), int(round(x)) + 2] = 255
    assert snap_to_envelope(speckled, region, x, base + 0.95 * (y - base)) == clean
    assert abs(abs(clean[1] - base) - abs(y - base)) <= 0.02 * abs(y - base)


def test_a_peak_is_not_snapped_onto_the_tail_of_the_higher_e_wave(strips):
    from echomeasure.propose.envelope import EnvelopeTrace

    strip = strips[1]
    assert strip.flow == "mv"
    region = _spectral(strip)
    base = baseline_row(region)
    trace = EnvelopeTrace.measure(strip.image, region, -1)
    checked = 0
    for (xe, ye), (xa, ya) in zip(strip.peaks["mv_e"], strip.peaks["mv_a"], strict=False):
        if xa < xe or abs(ye - base) <= abs(ya - base):
            continue
        checked += 1
        # a search window wide enough to reach the E wave's falling limb, which is higher
        window = int(xa - xe) - 2
        sx, sy, on = trace.snap_peak(xa, base + 0.95 * (ya - base), max_dx_px=window)
        assert on and abs(sx - xa) <= 3
        assert abs(abs(sy - base) - abs(ya - base)) <= 0.03 * abs(ya - base)
    assert checked >= 1


def test_snap_peak_says_when_the_model_point_was_kept(strips):
    from echomeasure.propose.envelope import EnvelopeTrace

    strip = strips[0]
    region = _spectral(strip)
    base = baseline_row(region)
    x, y = strip.peaks["av_vmax"][0]
    trace = EnvelopeTrace.measure(strip.image, region, 1 if y > base else -1)
    assert trace.snap_peak(x, base + 0.97 * (y - base))[2]
    far = base + 0.4 * (y - base)  # 2.5x short of the edge: outside the accepted range
    assert trace.snap_peak(x, far) == (x, far, False)
