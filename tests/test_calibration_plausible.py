"""The calibration plausibility rule: a file's measuring region and a user's scale must give a
finite, non-zero, plausible pixel size, or the file is refused with one line (exit 2).

The rule lives in :mod:`echomeasure.ingest.calibration` (``check_user_cm_per_px``,
``check_region_calibration``); these tests feed it every kind of bad calibration through the
command line, the ingest API and the UI's ingest path.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from echomeasure.cli import main
from echomeasure.errors import CalibrationError, InvalidInputError
from echomeasure.ingest import Region, read_clip
from echomeasure.ingest.calibration import (
    MAX_CM_PER_PX,
    MIN_CM_PER_PX,
    PLAUSIBLE_DELTA,
    check_region_calibration,
    check_user_cm_per_px,
    distance_cm,
    measuring_regions,
    region_calibration_problem,
    square_cm_per_px,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PLAX = EXAMPLES / "case_0000.dcm"  # region 0: 2D tissue in cm; region 1: ECG (s, unitless)
DOPPLER = EXAMPLES / "case_0002.dcm"  # region 0: 2D reference image; 1: CW spectral (s, cm/s); 2: ECG

TISSUE = Region(0, 0, 99, 99, 1, 1, 3, 3, 0.04, 0.04)
ECG = Region(0, 100, 99, 119, 4, 10, 4, 0, 0.005, 0.0)
SPECTRAL = Region(0, 120, 99, 219, 3, 4, 4, 7, 0.005, -3.0, ref_x0=0, ref_y0=50)
# every number our messages may hold: the bounds of the rule (never a value read from the file)
BOUND_NUMBERS = {f"{v:g}" for lo_hi in PLAUSIBLE_DELTA.values() for v in lo_hi} | {"2D", "0.04"}


def _with_region(src: Path, dst: Path, index: int, **values: float | None) -> Path:
    """A copy of ``src`` whose ultrasound region ``index`` has ``values`` (None: attribute deleted)."""
    ds = pydicom.dcmread(src)
    item = ds.SequenceOfUltrasoundRegions[index]
    for keyword, value in values.items():
        if value is None:
            delattr(item, keyword)
        else:
            setattr(item, keyword, value)
    ds.save_as(dst)
    return dst


def _numbers(message: str) -> set[str]:
    return set(re.findall(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?D?", message))


def _measure(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["measure", "-q", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_refusal(code: int, out: str, err: str, path: Path | None, *must: str) -> str:
    assert code == 2, err
    assert out == ""  # nothing printed, no half JSON
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    message = lines[0]
    for word in must:
        assert word in message, message
    rest = message.replace(str(path), "").replace(path.name, "") if path is not None else message
    assert _numbers(rest) <= BOUND_NUMBERS, message  # no value read from the file
    assert not set(re.findall(r"[a-z]+", rest.lower())) & {"nan", "inf", "infinity"}, message
    assert "Traceback" not in err
    return message


# --------------------------------------------------------------------------- the rule itself


@pytest.mark.parametrize("value", [0.0, -0.0, math.nan, math.inf, -math.inf, 0.0009, 1e-6, 1.01, 50.0])
def test_a_2d_region_with_an_unusable_pixel_size_on_either_axis_has_a_problem(value):
    for axis, keyword in (("delta_x", "PhysicalDeltaX"), ("delta_y", "PhysicalDeltaY")):
        region = replace(TISSUE, **{axis: value})
        problem = region_calibration_problem(region)
        assert problem is not None and keyword in problem and "2D image region" in problem
        with pytest.raises(CalibrationError, match=keyword):
            check_region_calibration([region, ECG])
        with pytest.raises(CalibrationError):  # and no distance is read from it
            distance_cm([region], (10, 10), (20, 20))
        assert square_cm_per_px([region], user_cm_per_px=0.05) is None


@pytest.mark.parametrize("value", [0.04, -0.04, MIN_CM_PER_PX, MAX_CM_PER_PX, 0.008, 0.002])
def test_plausible_signed_pixel_sizes_calibrate_and_a_negative_delta_counts_as_its_size(value):
    region = replace(TISSUE, delta_x=value, delta_y=abs(value))
    assert region_calibration_problem(region) is None
    check_region_calibration([region])
    assert distance_cm([region], (10, 10), (20, 10)) == pytest.approx(10 * abs(value))


def test_a_doppler_strip_needs_a_usable_time_and_velocity_step():
    check_region_calibration([TISSUE, SPECTRAL, ECG])
    for axis, keyword in (("delta_x", "PhysicalDeltaX"), ("delta_y", "PhysicalDeltaY")):
        for value in (0.0, math.nan, math.inf):
            with pytest.raises(CalibrationError, match=f"{keyword}.*spectral Doppler region"):
                check_region_calibration([TISSUE, replace(SPECTRAL, **{axis: value}), ECG])
    with pytest.raises(CalibrationError, match="velocity step"):
        check_region_calibration([replace(SPECTRAL, delta_y=500.0)])  # 5 m/s per row
    with pytest.raises(CalibrationError, match="time step"):
        check_region_calibration([replace(SPECTRAL, delta_x=2.0)])  # 2 s per column


def test_regions_that_calibrate_no_measurement_never_make_a_file_unmeasurable():
    broken_ecg = replace(ECG, delta_x=0.0)
    check_region_calibration([TISSUE, broken_ecg])  # a 2D cine with a broken ECG trace
    thumbnail = replace(TISSUE, delta_x=0.0)
    check_region_calibration([thumbnail, SPECTRAL, broken_ecg])  # a strip's 2D reference image is not measured
    assert measuring_regions([thumbnail, SPECTRAL, ECG]) == [SPECTRAL]
    assert measuring_regions([TISSUE, ECG]) == [TISSUE]
    unitless = Region(0, 0, 9, 9, 1, 1, 0, 0, 0.0, 0.0)
    check_region_calibration([unitless])  # nothing to calibrate: the clip stays in pixels


@pytest.mark.parametrize("value", [0.0, -0.04, math.nan, math.inf, 1e-4, 1e-6, 1.5, 10.0, "abc"])
def test_an_implausible_user_scale_is_one_invalid_input_error_naming_the_option(value):
    with pytest.raises(InvalidInputError) as info:
        check_user_cm_per_px(value, label="--scale")
    message = str(info.value)
    assert message.startswith("--scale") and "\n" not in message
    assert f"{MIN_CM_PER_PX:g}" in message or "number" in message


def test_plausible_user_scales_pass_through_as_floats():
    assert check_user_cm_per_px(None) is None
    assert check_user_cm_per_px("0.04") == 0.04
    assert check_user_cm_per_px(MIN_CM_PER_PX) == MIN_CM_PER_PX and check_user_cm_per_px(MAX_CM_PER_PX) == MAX_CM_PER_PX


def test_non_finite_region_values_are_read_as_absent_so_no_nan_spreads(tmp_path):
    from echomeasure.ingest.dicom_io import regions_from_dataset

    path = _with_region(PLAX, tmp_path / "nan_ecg.dcm", 1, PhysicalDeltaX=math.nan,
                        ReferencePixelPhysicalValueX=math.inf)
    ecg = regions_from_dataset(pydicom.dcmread(path, stop_before_pixels=True))[1]
    assert ecg.delta_x == 0.0 and ecg.ref_phys_x == 0.0
    clip = read_clip(path)  # the ECG calibrates nothing: the file reads, its 2D region intact
    assert clip.calibration_source == "dicom" and clip.regions[0].delta_x == pytest.approx(0.0394815, rel=1e-5)


# --------------------------------------------------------------------------- the command line


BAD_2D = {
    "zero_x": {"PhysicalDeltaX": 0.0},
    "zero_y": {"PhysicalDeltaY": 0.0},
    "nan_x": {"PhysicalDeltaX": math.nan},
    "inf_y": {"PhysicalDeltaY": math.inf},
    "missing_x": {"PhysicalDeltaX": None},
    "too_small": {"PhysicalDeltaX": 0.0002, "PhysicalDeltaY": 0.0002},
    "too_large": {"PhysicalDeltaX": 2.5, "PhysicalDeltaY": 2.5},
}


@pytest.mark.parametrize("kind", sorted(BAD_2D))
def test_measure_refuses_a_2d_file_whose_region_cannot_calibrate(kind, tmp_path, capsys):
    values = BAD_2D[kind]
    path = _with_region(PLAX, tmp_path / f"cal_{kind}.dcm", 0, **values)
    code, out, err = _measure(capsys, str(path))
    keyword = next(iter(values))
    message = _assert_one_line_refusal(code, out, err, path, keyword, "2D image region")
    assert ("zero, missing or not a finite number" in message) == (kind not in ("too_small", "too_large"))


@pytest.mark.parametrize(("keyword", "axis"), [("PhysicalDeltaX", "time step"), ("PhysicalDeltaY", "velocity step")])
def test_measure_refuses_a_doppler_strip_with_a_zero_time_or_velocity_step(keyword, axis, tmp_path, capsys):
    path = _with_region(DOPPLER, tmp_path / f"dop_{keyword}.dcm", 1, **{keyword: 0.0})
    code, out, err = _measure(capsys, str(path))
    _assert_one_line_refusal(code, out, err, path, keyword, axis, "spectral Doppler region")


@pytest.mark.parametrize("scale", ["1e-6", "0.0001", "0.0009", "2", "nan", "inf", "0", "-0.04"])
def test_measure_refuses_an_implausible_scale(scale, capsys):
    code, out, err = _measure(capsys, "--scale", scale, str(PLAX))  # a bad option even where DICOM calibrates
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --scale ") and "not plausible" in lines[0], err
    assert "0.001" in lines[0] and "Traceback" not in err


def test_ingest_refuses_a_badly_calibrated_file_and_stores_nothing(tmp_path, capsys, monkeypatch):
    from echomeasure.pipeline import ingest_path
    from echomeasure.store import open_store

    bad = _with_region(PLAX, tmp_path / "cal_zero_x.dcm", 0, PhysicalDeltaX=0.0)
    store = open_store(f"sqlite:///{tmp_path / 'ui.sqlite'}", images_dir=tmp_path / "images")
    with pytest.raises(CalibrationError) as info:  # the UI's upload path shows this as a notice
        ingest_path(bad, store, secret=b"test-secret", run_models=False)
    assert "\n" not in str(info.value) and "PhysicalDeltaX" in str(info.value)
    assert store.clips() == []

    db = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    code = main(["ingest", str(bad), "--no-propose", "--db", db])
    out, err = capsys.readouterr()
    assert code == 2
    (line,) = [json.loads(x) for x in out.splitlines() if x.strip()]
    assert line["status"] == "error" and "PhysicalDeltaX" in line["error"]
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert open_store(db, images_dir=tmp_path / "images2").clips() == []


def test_ingest_refuses_an_implausible_cm_per_px():
    from echomeasure.ingest import load

    with pytest.raises(InvalidInputError, match="not plausible"):
        load(PLAX, secret=b"s", user_cm_per_px=1e-5)


def test_a_de_identified_copy_keeps_a_broken_calibration_as_it_is(tmp_path):
    """De-identification measures nothing: it copies the regions, the refusal is for measuring."""
    from echomeasure.ingest import deidentify_file

    bad = _with_region(PLAX, tmp_path / "cal_zero_x.dcm", 0, PhysicalDeltaX=0.0)
    deidentify_file(bad, tmp_path / "out.dcm", secret=b"test-secret")
    regions = pydicom.dcmread(tmp_path / "out.dcm", stop_before_pixels=True).SequenceOfUltrasoundRegions
    assert float(regions[0].PhysicalDeltaX) == 0.0
    assert np.isclose(float(regions[0].PhysicalDeltaY), 0.0394815, rtol=1e-5)
