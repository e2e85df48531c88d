"""Zoomed images (fine pixels, down to the 0.001 cm/px the calibration rule allows) measure like
coarse ones: the edge search and the bloom correction read the same profile in mm whatever the
pixel size, at a bounded cost.

Before, the bloom profile's smoothing was sized in pixels but applied to samples 0.25 mm apart
(so it grew with the square of px/mm), ``np.convolve(mode="same")`` returned more samples than
the grid once the kernel outgrew it (IndexError at 0.008 cm/px), and the search sampled every
half pixel across 5 mm (a MemoryError at 1e-6 cm/px).
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest

from echomeasure import catalog
from echomeasure.propose.edges import refine_plax_keypoints
from echomeasure.propose.interface_offset import GRID_MM, sample_profiles
from echomeasure.propose.line_profiles import gaussian_kernel, line_profiles, smooth_along

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PROJECT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


def _sigmoid_scene(px_per_mm: float, *, edges_mm: tuple[tuple[float, float], ...], size_mm=(40.0, 24.0)) -> np.ndarray:
    """A grey image whose rows step by ``delta`` at each ``y`` mm (0.3 mm wide sigmoid ramps):
    the same physical picture at any pixel size."""
    h, w = int(size_mm[0] * px_per_mm), int(size_mm[1] * px_per_mm)
    y = np.arange(h) / px_per_mm
    col = np.full(h, 20.0)
    for y_mm, delta in edges_mm:
        col += delta / (1.0 + np.exp(-(y - y_mm) / 0.3))
    return np.tile(np.clip(col, 0, 255)[:, None], (1, w)).astype(np.uint8)


def test_smoothing_keeps_the_profile_length_and_does_not_darken_its_ends():
    flat = np.full((2, 29), 100.0)
    long_kernel = gaussian_kernel(5.0)  # 31 taps, longer than the profile
    assert len(long_kernel) > flat.shape[1]
    out = smooth_along(flat, long_kernel)
    assert out.shape == flat.shape and np.allclose(out, 100.0)
    assert smooth_along(np.zeros((0, 29)), long_kernel).shape == (0, 29)
    frame = np.full((50, 50), 100, np.uint8)
    prof = line_profiles(frame, np.array([[25.0, 25.0]]), np.array([[1.0, 0.0]]), np.arange(-5.0, 5.0), 2.0, long_kernel)
    assert prof.shape == (1, 10) and np.allclose(prof, 100.0)


@pytest.mark.parametrize("px_per_mm", [5.0, 12.5, 50.0])
def test_bloom_profiles_of_one_scene_are_the_same_at_every_pixel_size(px_per_mm):
    def profile(ppm: float) -> np.ndarray:
        img = _sigmoid_scene(ppm, edges_mm=((12.0, 180.0),))
        return sample_profiles(img, np.array([[8.0 * ppm, 12.0 * ppm]]), np.array([[0.0, 1.0]]), ppm)[0]

    reference = profile(2.5)  # 0.04 cm/px, the training images' resolution
    fine = profile(px_per_mm)
    assert fine.shape == reference.shape == GRID_MM.shape
    assert np.abs(fine - reference).max() < 3.0  # grey levels (was 33 at 5 px/mm, 60 at 10)


def test_refined_wall_is_the_same_in_mm_from_0_04_to_0_001_cm_per_px_at_a_bounded_cost():
    channels = ("rv_septum", "septum_lv", "lv_pw")
    top_mm, thick_mm = 12.08, 9.0

    def refine(ppm: float):
        img = _sigmoid_scene(ppm, edges_mm=((top_mm, 150.0), (top_mm + thick_mm, -150.0)))
        x = 12.0 * ppm
        model = np.array([[x, (top_mm - 2.0) * ppm], [x, (top_mm + thick_mm + 2.0) * ppm], [x, 36.0 * ppm]])
        tracemalloc.start()
        try:
            r = refine_plax_keypoints(img, model, channels, ppm)  # with the bloom correction
            peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
        finally:
            tracemalloc.stop()
        assert r.found[0] and r.found[1]
        return (r.points_xy[1, 1] - r.points_xy[0, 1]) / ppm, r.points_xy[0, 1] / ppm, peak_mb

    thickness, top, _ = refine(2.5)
    # a sanity bound only: a noise-free sigmoid wall is unlike any echo the correction was fitted
    # on, and it reads it thinner (the first fit: 7.76 mm, the fit with the rf family: 7.47 mm)
    assert thickness == pytest.approx(thick_mm, abs=2.0)
    for ppm in (12.5, 50.0, 100.0):  # 0.008, 0.002 and 0.001 cm/px
        t, y, peak_mb = refine(ppm)
        assert t == pytest.approx(thickness, abs=0.05) and y == pytest.approx(top, abs=0.05)
        assert peak_mb < 64.0  # every half pixel across 5 mm at 100 px/mm would be over 1 GB


def _zoomed_copy(src: Path, dst: Path, factor: int, frames: slice) -> Path:
    """``frames`` of ``src`` as grey frames enlarged ``factor`` times, with the regions (boxes
    and pixel sizes) scaled to match: the same anatomy at ``factor`` times finer pixels."""
    import cv2
    from pydicom.uid import ExplicitVRLittleEndian

    ds = pydicom.dcmread(src)
    grey = ds.pixel_array[frames].mean(axis=3).astype(np.uint8)
    h, w = grey.shape[1:]
    big = np.stack([cv2.resize(g, (w * factor, h * factor), interpolation=cv2.INTER_CUBIC) for g in grey])
    del ds.PixelData
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PhotometricInterpretation, ds.SamplesPerPixel = "MONOCHROME2", 1
    if "PlanarConfiguration" in ds:
        del ds.PlanarConfiguration
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.Rows, ds.Columns = big.shape[1:]
    ds.NumberOfFrames = len(big)
    ds.add_new(0x7FE00010, "OB", big.tobytes())
    for r in ds.SequenceOfUltrasoundRegions:
        r.RegionLocationMinX0, r.RegionLocationMinY0 = r.RegionLocationMinX0 * factor, r.RegionLocationMinY0 * factor
        r.RegionLocationMaxX1 = (r.RegionLocationMaxX1 + 1) * factor - 1
        r.RegionLocationMaxY1 = (r.RegionLocationMaxY1 + 1) * factor - 1
        for k in ("ReferencePixelX0", "ReferencePixelY0"):
            if k in r:
                setattr(r, k, int(getattr(r, k)) * factor)
        r.PhysicalDeltaX, r.PhysicalDeltaY = float(r.PhysicalDeltaX) / factor, float(r.PhysicalDeltaY) / factor
    ds.save_as(dst, enforce_file_format=True)
    return dst


@pytest.mark.slow
@pytest.mark.skipif(not (PROJECT_WEIGHTS / "manifest.json").is_file(), reason="no trained weights in weights/")
def test_a_plax_cine_zoomed_to_0_008_cm_per_px_measures_as_it_does_at_0_04(tmp_path, monkeypatch, capsys):
    from echomeasure.cli import main
    from echomeasure.propose import clear_engines

    clear_engines()
    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(PROJECT_WEIGHTS))
    docs = {}
    for factor in (1, 5):
        path = _zoomed_copy(EXAMPLES / "case_0000.dcm", tmp_path / f"zoom{factor}.dcm", factor, slice(10, 16))
        code = main(["measure", "-q", str(path)])
        out, err = capsys.readouterr()
        assert code == 0, err
        docs[factor] = json.loads(out)
    clear_engines()
    assert docs[5]["calibration"] == "dicom" and docs[5]["view"]["name"] == "plax"
    pixel_cm = float(pydicom.dcmread(tmp_path / "zoom5.dcm", stop_before_pixels=True)
                     .SequenceOfUltrasoundRegions[0].PhysicalDeltaX)
    assert pixel_cm == pytest.approx(0.0079, abs=1e-4)
    coarse = {m["name"]: m for m in docs[1]["measurements"]}
    fine = {m["name"]: m for m in docs[5]["measurements"]}
    assert set(fine) == set(catalog.LINEAR_2D) == set(coarse)
    for name, m in fine.items():
        assert m["unit"] == "cm" and catalog.is_plausible(name, m["value"], "cm"), m
        assert abs(m["value"] - coarse[name]["value"]) * 10.0 < 0.3, (name, m["value"], coarse[name]["value"])  # mm
        assert m["flagged"] == coarse[name]["flagged"]
