"""Temporal smoothing in milliseconds and ED/ES selection."""

from __future__ import annotations

import numpy as np

from echomeasure.propose.temporal import select_ed_es, smooth_tracks


def _track(fps: float, duration_ms: float, period_ms: float, amplitude: float = 10.0) -> tuple[np.ndarray, float]:
    frame_time_ms = 1000.0 / fps
    t = np.arange(0.0, duration_ms, frame_time_ms)
    x = amplitude * np.sin(2 * np.pi * t / period_ms)
    pts = np.zeros((t.size, 1, 2))
    pts[:, 0, 0] = x
    pts[:, 0, 1] = 50.0
    return pts, frame_time_ms


def _amplitude(pts: np.ndarray) -> float:
    x = pts[len(pts) // 4 : -len(pts) // 4, 0, 0]  # away from the clip ends
    return float(x.max() - x.min()) / 2.0


def test_smoothing_uses_frame_time_same_motion_at_two_frame_rates():
    # a fast 140 ms oscillation is damped by the 90 ms window; how much must depend on time,
    # not on how many frames were acquired
    slow, ft_slow = _track(30.0, 1400.0, 140.0)
    fast, ft_fast = _track(90.0, 1400.0, 140.0)
    a_slow = _amplitude(smooth_tracks(slow, None, ft_slow))
    a_fast = _amplitude(smooth_tracks(fast, None, ft_fast))
    assert a_slow < 8.0 and a_fast < 8.0  # it does smooth
    assert abs(a_slow - a_fast) / a_fast < 0.15
    # a window counted in frames would smooth the 90 fps clip three times less in time
    frame_based = _amplitude(smooth_tracks(fast, None, ft_fast * 3.0))
    assert abs(frame_based - a_fast) > 3 * abs(a_slow - a_fast)


def test_smoothing_keeps_slow_cardiac_motion_and_removes_jitter():
    pts, ft = _track(50.0, 2000.0, 900.0)
    noisy = pts + np.random.default_rng(0).normal(0, 0.8, pts.shape)
    smoothed = smooth_tracks(noisy, None, ft)
    def rms(a):
        return float(np.sqrt(np.mean((a - pts) ** 2)))

    assert rms(smoothed) < 0.7 * rms(noisy)
    assert abs(_amplitude(smoothed) - 10.0) < 0.5  # the extremes (ED/ES) survive


def test_low_confidence_frame_hardly_pulls_the_track():
    pts, ft = _track(30.0, 1000.0, 900.0)
    broken = pts.copy()
    broken[15, 0] += 40.0  # the detector lost the wall on one frame
    conf = np.ones((len(pts), 1))
    conf[15] = 0.01
    weighted = smooth_tracks(broken, conf, ft)
    unweighted = smooth_tracks(broken, None, ft)
    assert np.abs(weighted[15] - pts[15]).max() < 1.0
    assert np.abs(unweighted[15] - pts[15]).max() > 5.0


def test_still_image_is_not_smoothed():
    pts = np.random.default_rng(1).normal(size=(1, 8, 2))
    assert np.array_equal(smooth_tracks(pts, None, None), pts)


def test_ed_es_picked_from_diameter_curve():
    ft = 20.0
    t = np.arange(60) * ft
    period = 800.0
    # LV diameter 4.8 cm at ED (phase 0) falling to 3.1 cm at ES (~ 0.35 of the cycle)
    d = 3.95 + 0.85 * np.cos(2 * np.pi * (t - 200.0) / period)
    d += np.random.default_rng(2).normal(0, 0.01, d.size)
    ed, es = select_ed_es(d)
    # noise of 0.1 mm may move an extreme to a neighbouring frame of the flat top/bottom
    assert min(abs(ed - 10), abs(ed - 50)) <= 1  # t = 200 ms or 1000 ms
    assert abs(es - 30) <= 1  # t = 600 ms
    # a frame with a wild diameter but no confidence must not become ED
    d2 = d.copy()
    d2[5] = 9.0
    conf = np.ones_like(d2)
    conf[5] = 0.05
    ed2 = select_ed_es(d2, conf)[0]
    assert min(abs(ed2 - 10), abs(ed2 - 50)) <= 1


def test_ed_es_are_turning_points_not_clip_edges():
    # the clip starts just after end-systole: frame 0 has the smallest diameter of the clip but
    # is no turning point; the real end-systole is the interior minimum one beat later
    ft = 25.0
    t = np.arange(48) * ft
    d = 4.0 + 0.8 * np.cos(2 * np.pi * (t + 420.0) / 900.0)
    d[0] -= 0.05  # the edge frame even reads a little smaller
    ed, es = select_ed_es(d, frame_time_ms=ft)
    assert d[0] < d[es]
    assert 2 <= es <= 45 and d[es - 1] >= d[es] <= d[es + 1]
    assert d[ed - 1] <= d[ed] >= d[ed + 1]


def test_ed_es_fall_back_to_extremes_without_turning_points():
    d = np.linspace(3.0, 5.0, 10)  # a clip shorter than a contraction
    assert select_ed_es(d, frame_time_ms=30.0) == (9, 0)
