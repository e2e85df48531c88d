"""Calibration from the Sequence of Ultrasound Regions: distances, signed velocities, refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from echomeasure.errors import CalibrationError
from echomeasure.ingest import Clip, Region, distance_cm, physical_value, spectral_region, velocity_m_s

TISSUE = Region(x0=100, y0=50, x1=599, y1=449, spatial_format=1, data_type=1, units_x=3, units_y=3,
                delta_x=0.05, delta_y=0.05)
ECG = Region(x0=100, y0=460, x1=599, y1=499, spatial_format=4, data_type=10, units_x=4, units_y=0,
             delta_x=0.01, delta_y=0.0)


def spectral(delta_y: float = -2.0, flags: int = 0, units_y: int = 7, ref_y0: int = 100) -> Region:
    return Region(x0=0, y0=200, x1=639, y1=479, spatial_format=3, data_type=4, units_x=4, units_y=units_y,
                  delta_x=0.004, delta_y=delta_y, ref_x0=0, ref_y0=ref_y0, flags=flags)


def clip_with(regions, cm_per_px=None) -> Clip:
    return Clip(frames=np.zeros((1, 500, 640, 3), np.uint8), frame_time_ms=None, regions=tuple(regions),
                source_kind="dicom", user_cm_per_px=cm_per_px)


def test_a_7_5_cm_line_measures_7_5_cm():
    # 150 px at 0.05 cm/px, horizontal and diagonal
    assert distance_cm([TISSUE], (200, 100), (350, 100)) == pytest.approx(7.5)
    d = 150 / math.sqrt(2)
    assert distance_cm([TISSUE], (200, 100), (200 + d, 100 + d)) == pytest.approx(7.5)


def test_distance_uses_absolute_deltas_and_anisotropic_pixels():
    r = Region(x0=0, y0=0, x1=99, y1=99, spatial_format=1, data_type=1, units_x=3, units_y=3,
               delta_x=-0.1, delta_y=0.2)
    assert distance_cm([r], (10, 10), (13, 14)) == pytest.approx(math.hypot(0.3, 0.8))


def test_region_max_is_inclusive_for_calibration():
    assert distance_cm([TISSUE], (599, 449), (100, 449)) == pytest.approx(499 * 0.05)


def test_doppler_row_50px_below_baseline_reads_1_m_s_with_region_sign():
    baseline = 200 + 100
    assert velocity_m_s([spectral(delta_y=-2.0)], 320, baseline + 50) == pytest.approx(-1.0)
    assert velocity_m_s([spectral(delta_y=2.0)], 320, baseline + 50) == pytest.approx(1.0)
    assert velocity_m_s([spectral(delta_y=-2.0)], 320, baseline - 50) == pytest.approx(1.0)


def test_physical_value_reports_doppler_magnitude_and_signed_value():
    clip = clip_with([spectral(delta_y=-2.0)])
    value, unit, signed = physical_value(clip, "av_vmax", [(320, 350)])
    assert (unit, value, signed) == ("m/s", pytest.approx(1.0), pytest.approx(-1.0))


def test_physical_value_2d_in_cm_from_dicom_region():
    value, unit, signed = physical_value(clip_with([TISSUE]), "lvidd", [(200, 100), (300, 100)])
    assert (value, unit, signed) == (pytest.approx(5.0), "cm", None)


def test_uncalibrated_clip_stays_in_pixels_and_user_scale_gives_cm():
    assert physical_value(clip_with([]), "ivsd", [(0, 0), (30, 40)]) == (None, "px", None)
    clip = clip_with([], cm_per_px=0.02)
    assert clip.calibration_source == "user"
    value, unit, _ = physical_value(clip, "ivsd", [(0, 0), (30, 40)])
    assert unit == "cm" and value == pytest.approx(1.0)


def test_refuses_points_outside_every_region():
    with pytest.raises(CalibrationError, match="no ultrasound region contains"):
        distance_cm([TISSUE], (10, 10), (200, 100))


def test_refuses_points_in_two_regions():
    with pytest.raises(CalibrationError, match="different ultrasound regions"):
        distance_cm([TISSUE, ECG], (200, 100), (200, 470))


def test_refuses_distance_in_a_region_not_in_cm():
    with pytest.raises(CalibrationError, match="needs a 2D region in cm"):
        distance_cm([ECG], (200, 470), (300, 470))


def test_refuses_velocity_with_frequency_scale():
    with pytest.raises(CalibrationError, match="frequency"):
        velocity_m_s([spectral(flags=0b100)], 320, 350)


def test_refuses_velocity_when_units_are_not_cm_s():
    with pytest.raises(CalibrationError, match="cm/sec"):
        velocity_m_s([spectral(units_y=5)], 320, 350)


def test_refuses_velocity_outside_the_spectral_strip():
    with pytest.raises(CalibrationError, match="not in the spectral"):
        velocity_m_s([TISSUE, spectral()], 320, 120)


def test_spectral_region_prefers_a_usable_velocity_region():
    good = spectral()
    assert spectral_region([TISSUE, spectral(flags=0b100), good]) is good
    with pytest.raises(CalibrationError):
        spectral_region([TISSUE])


def test_pydicom_echo_cine_calibrates_at_0_051_cm_per_px():
    from pydicom.data import get_testdata_file

    from echomeasure.ingest import read_clip

    clip = read_clip(get_testdata_file("examples_ybr_color.dcm", download=False))
    assert clip.calibration_source == "dicom"
    value, unit, _ = physical_value(clip, "lvidd", [(100, 100), (200, 100)])
    assert unit == "cm" and value == pytest.approx(100 * 0.05105, rel=1e-3)


def test_square_pixel_size_comes_from_the_largest_2d_cm_region_then_the_user_scale():
    from echomeasure.ingest.calibration import square_cm_per_px
    from echomeasure.ingest.clip import SPATIAL_2D, UNIT_CM, Region

    def region(x1: int, dx: float, dy: float) -> Region:
        return Region(0, 0, x1, 100, SPATIAL_2D, 1, UNIT_CM, UNIT_CM, dx, dy)

    assert square_cm_per_px([region(50, 0.02, 0.02), region(200, 0.03, -0.03)]) == 0.03  # the larger one, |dy|
    assert square_cm_per_px([region(200, 0.03, 0.0302)], user_cm_per_px=0.05) == 0.03  # within 1 %: DICOM wins
    assert square_cm_per_px([region(200, 0.03, 0.04)], user_cm_per_px=0.05) is None  # non-square pixels: no scale
    assert square_cm_per_px([], user_cm_per_px=0.05) == 0.05
    assert square_cm_per_px([]) is None
