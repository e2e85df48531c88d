"""The measure path's fast JPEG Baseline decoding agrees with pydicom's."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from echomeasure.ingest import dicom_io


def test_fast_jpeg_baseline_decode_matches_pydicom_on_a_real_echo_cine():
    path = get_testdata_file("examples_ybr_color.dcm")  # SonoSite cine, JPEG Baseline YBR_FULL_422
    ds = pydicom.dcmread(path)
    geometry = dicom_io.check_geometry(ds)
    fast = dicom_io._decode_jpeg_baseline_frames(ds, geometry)
    assert fast is not None, "the fast path must take JPEG Baseline YBR cines"
    reference = pydicom.pixels.pixel_array(ds)
    assert fast.shape == reference.shape == (30, 240, 320, 3)
    diff = np.abs(fast.astype(np.int16) - reference.astype(np.int16))
    assert diff.max() <= 8 and diff.mean() < 0.2
    assert np.array_equal(dicom_io.decode_frames(ds, geometry), fast)


@pytest.mark.parametrize("name", ["examples_rgb_color.dcm", "examples_palette.dcm"])
def test_other_encodings_keep_the_pydicom_path(name):
    ds = pydicom.dcmread(get_testdata_file(name))
    assert dicom_io._decode_jpeg_baseline_frames(ds, dicom_io.check_geometry(ds)) is None
