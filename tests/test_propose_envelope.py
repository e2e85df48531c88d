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


def test_wave_peaks_find_each_beat_of_a_single_wave_flow(strips):
    from echomeasure.propose.envelope import EnvelopeTrace

    for strip in (strips[0], strips[2]):  # AV and TR: one wave per beat, below the baseline
        region = _spectral(strip)
        base = baseline_row(region)
        trace = EnvelopeTrace.measure(strip.image, region, 1)
        waves = trace.wave_peaks(0.3 / abs(region.delta_x))
        (truth,) = strip.peaks.values()
        inner = [(x, y) for x, y in truth if region.x0 + 10 < x < region.x1 - 10]  # waves cut by the sweep are left out
        assert len(inner) >= 2
        for x, y in inner:
            near = [w for w in waves if abs(w[0] - x) <= 8]
            assert near, f"no wave peak near the beat at x={x:.0f}"
            assert abs(near[0][1] - abs(y - base)) / abs(y - base) < 0.03


def test_a_named_flow_the_model_misses_is_read_from_the_envelope_and_flagged(strips, monkeypatch):
    """A strip where the model's heatmaps hold no peak (a look it never saw): with the flow named,
    the value comes from the envelope, low-confidence and flagged, with a notice; unnamed, nothing."""
    from echomeasure.ingest.clip import Clip
    from echomeasure.models import decode
    from echomeasure.propose import propose

    strip = strips[0]  # AV
    monkeypatch.setattr(decode, "decode_doppler_peaks", lambda logits, **kw: [[] for _ in range(len(logits))])
    clip = Clip(frames=strip.image[None], frame_time_ms=None, regions=tuple(strip.regions), source_kind="dicom",
                source_name="strip.dcm")
    named = propose(clip, only=["av_vmax"], check_view=False)
    (av,) = named.measurements
    truth = strip.truth["measurements"]["av_vmax"]["value"]
    assert av.name == "av_vmax" and abs(av.value - truth) / truth < 0.05
    assert av.confidence <= 0.05 and av.flagged
    assert any("envelope alone" in n for n in named.notices)
    assert propose(clip, check_view=False).measurements == []  # nobody said which flow: no guess


def test_a_grainy_wave_cut_by_the_end_of_the_sweep_has_no_peak_but_a_whole_wave_near_it_does(strips):
    """A wave still rising where the strip ends has local maxima of its own (grain): none is its peak."""
    from echomeasure.propose.envelope import EnvelopeTrace

    region = _spectral(strips[0])
    n = region.x1 - region.x0 + 1
    rng = np.random.default_rng(0)
    edge = np.zeros(n)
    rising = np.arange(n - 30, n)  # the last 30 columns: a wave rising until the sweep stops
    edge[rising] = 40 + 0.5 * (rising - rising[0]) + rng.uniform(-3, 3, rising.size)
    whole = np.arange(n - 80, n - 45)  # a whole wave just before it: up and back down
    edge[whole] = 60 - np.abs(whole - (n - 62)) * 2.5
    trace = EnvelopeTrace(region=region, sign=1, edge_px=np.clip(edge, 0, None))
    last = region.x0 + n - 6
    found = trace.local_peak(last, 12)
    assert found is None or found[0] < region.x0 + n - 30  # nothing on the cut wave
    peak = trace.local_peak(region.x0 + n - 62, 12)
    assert peak is not None and abs(peak[0] - (region.x0 + n - 62)) <= 1 and abs(peak[1] - 60) < 1e-6


def test_a_wave_cut_where_a_scrolling_display_has_not_drawn_yet_has_no_peak(strips):
    """The sweep stops before the region's edge (empty columns after it): a wave rising into that
    stop is cut, while a whole wave that comes back down before it keeps its peak."""
    from echomeasure.propose.envelope import EnvelopeTrace

    region = _spectral(strips[0])
    n = region.x1 - region.x0 + 1
    edge = np.zeros(n)
    stop = n - 70  # nothing drawn from here on
    rising = np.arange(stop - 25, stop)
    edge[rising] = 30 + 1.5 * (rising - rising[0]) + np.random.default_rng(1).uniform(-3, 3, rising.size)
    whole = np.arange(stop - 90, stop - 40)
    edge[whole] = 70 - np.abs(whole - (stop - 65)) * 2.8
    trace = EnvelopeTrace(region=region, sign=1, edge_px=np.clip(edge, 0, None))
    for x in range(stop - 12, stop):
        found = trace.local_peak(region.x0 + x, 12)
        assert found is None or found[0] < region.x0 + stop - 25
    peak = trace.local_peak(region.x0 + stop - 65, 12)
    assert peak is not None and peak[0] == region.x0 + stop - 65
