"""Reading a DICOM cine for measurement holds its pixels once: decoded straight into the buffer
that becomes the de-identified file and cleaned there (a 300-frame 600x800 clip is 432 MB; the
300-frame memory bench peaked at 1,031 MB with the decoded frames and the cleaned copy side by side;
the 40-frame example: traced peak 92 MB (2.5x its 37 MB of pixels) before, 55 MB (1.5x) now)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pydicom
import pytest

from echomeasure.config import PROJECT_ROOT, secret
from echomeasure.ingest import dicom_io, load

EXAMPLES = PROJECT_ROOT / "examples"


def test_a_jpeg_cine_is_loaded_with_one_copy_of_its_pixels():
    path = EXAMPLES / "case_0000.dcm"  # 40 frames 480x640, JPEG Baseline
    load(path, secret=secret())  # imports, the OCR model, caches: out of the measured run
    tracemalloc.start()
    try:
        clip = load(path, secret=secret())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    clip_bytes = clip.clip.frames.nbytes
    assert clip_bytes == 40 * 480 * 640 * 3
    assert peak < 2.0 * clip_bytes, f"peak {peak / 1e6:.1f} MB for a {clip_bytes / 1e6:.1f} MB clip"


@pytest.mark.parametrize("name", ["case_0000.dcm"])
def test_decoding_into_a_given_array_gives_the_same_pixels(name):
    ds = pydicom.dcmread(EXAMPLES / name)
    g = dicom_io.check_geometry(ds)
    plain = dicom_io.decode_frames(ds, g)
    out = np.zeros_like(plain)
    got = dicom_io.decode_frames(ds, g, out=out)
    assert got is out and np.array_equal(out, plain)


def test_decoding_into_a_given_array_through_pydicom_gives_the_same_pixels():
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("examples_palette.dcm"))  # palette colour: pydicom's decoder and LUT
    g = dicom_io.check_geometry(ds)
    plain = dicom_io.decode_frames(ds, g)
    out = np.zeros_like(plain)
    assert dicom_io.decode_frames(ds, g, out=out) is out and np.array_equal(out, plain)
