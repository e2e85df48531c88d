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
