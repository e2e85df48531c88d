"""Model input preparation and the image <-> model coordinate mapping shared with training."""

from __future__ import annotations

import numpy as np
import pytest

from echomeasure.errors import MeasurementError
from echomeasure.ingest.clip import SPATIAL_2D, SPATIAL_SPECTRAL, UNIT_CM, UNIT_CM_S, UNIT_S, Clip, Region
from echomeasure.models.preprocess import Box, CropTransform, box_2d, box_doppler, detect_sector_box


def _region(x0, y0, x1, y1, fmt=SPATIAL_2D, ux=UNIT_CM, uy=UNIT_CM, dtype=1):
    return Region(x0, y0, x1, y1, fmt, dtype, ux, uy, 0.05, 0.05)


@pytest.mark.parametrize(
    "box,size", [(Box(10, 20, 409, 319), (192, 192)), (Box(0, 0, 63, 31), (96, 128)), (Box(5, 7, 5 + 332, 7 + 250), (128, 256))]
)
def test_crop_transform_round_trip_exact(box, size):
    t = CropTransform(box, size)
    pts = np.random.default_rng(0).uniform(0, 400, size=(7, 3, 2))
    assert np.allclose(t.to_image(t.to_model(pts)), pts, atol=1e-9)
    assert np.allclose(t.to_model(t.to_image(pts)), pts, atol=1e-9)


def test_crop_transform_maps_pixel_centres_like_the_resize():
    # a bright 2x2 block at image (100..101, 60..61) in a 4x-downsampled crop lands on one model pixel
    frame = np.zeros((200, 400, 3), np.uint8)
    frame[60:64, 100:104] = 255
    t = CropTransform(Box(0, 0, 399, 199), (50, 100))
    x = t.apply(frame)
    assert x.shape == (1, 3, 50, 100) and x.dtype.is_floating_point
    assert float(x.max()) == pytest.approx(1.0) and float(x.min()) == 0.0
    yi, xi = np.unravel_index(int(x[0, 0].argmax()), (50, 100))
    centre_model = t.to_model(np.array([101.5, 61.5]))
    assert (xi, yi) == (round(centre_model[0]), round(centre_model[1]))


def test_crop_uses_the_2d_region_and_spectral_region():
    frames = np.zeros((2, 300, 400, 3), np.uint8)
    spectral = _region(0, 250, 399, 299, fmt=SPATIAL_SPECTRAL, ux=UNIT_S, uy=UNIT_CM_S, dtype=3)
    clip = Clip(frames, 20.0, (_region(50, 40, 349, 239), spectral), "dicom")
    assert box_2d(clip) == Box(50, 40, 349, 239)
    assert box_doppler(clip) == Box(0, 250, 399, 299)


def test_doppler_box_on_2d_clip_is_a_measurement_error():
    clip = Clip(np.zeros((1, 32, 32, 3), np.uint8), None, (), "image")
    with pytest.raises(MeasurementError, match="spectral"):
        box_doppler(clip)


def test_video_sector_found_from_moving_pixels():
    rng = np.random.default_rng(0)
    frames = np.zeros((12, 240, 320, 3), np.uint8)
    frames[:, 5:20, 10:200] = 200  # a static banner (burned-in text) must not count
    frames[:, 60:220, 80:300] = rng.integers(0, 255, size=(12, 160, 220, 1), dtype=np.uint8)
    assert detect_sector_box(frames) == Box(80, 60, 299, 219)
    clip = Clip(frames, 33.3, (), "video")
    assert box_2d(clip) == Box(80, 60, 299, 219)


def test_batches_never_hold_more_than_one_batch_of_floats():
    frames = np.zeros((37, 64, 64, 3), np.uint8)
    t = CropTransform(Box(0, 0, 63, 63), (32, 32))
    seen = [(start, x.shape[0]) for start, x in t.batches(frames, 16)]
    assert seen == [(0, 16), (16, 16), (32, 5)]
