"""Online augmentation of the segmentation trainers: the label map moves with the pixels, artefacts
and display changes touch only the image, and the batch helper keeps shapes and label values."""

from __future__ import annotations

import numpy as np

from echomeasure.training.augment import (
    AppearanceAugment,
    ArtefactAugment,
    ExposureAugment,
    IntensityAugment,
    SegmentationAugment,
    augmented_batch,
    segmentation_augment,
)

NO_LOOK = dict(artefact=ArtefactAugment(shadow_p=0, haze_p=0, sidelobe_p=0),
               appearance=AppearanceAugment(tint_p=0, block_p=0, posterise_p=0, jpeg_p=0),
               intensity=IntensityAugment(p=0))


def _blocks() -> tuple[np.ndarray, np.ndarray]:
    """A label map of four rectangles and an image whose grey level encodes each label (40 per class)."""
    labels = np.zeros((96, 96), np.uint8)
    labels[20:50, 15:45], labels[55:85, 20:40], labels[25:70, 55:80], labels[10:18, 40:70] = 1, 2, 3, 4
    return np.repeat((labels * 40)[..., None], 3, axis=-1).astype(np.uint8), labels


def test_geometry_moves_the_labels_with_the_pixels():
    image, labels = _blocks()
    aug = SegmentationAugment(geometry_p=1.0, **NO_LOOK)
    moved = 0
    for seed in range(8):
        out, lab = aug(image, labels, np.random.default_rng(seed))
        assert out.dtype == np.float32 and out.shape == image.shape and lab.shape == labels.shape
        assert set(np.unique(lab)) <= set(np.unique(labels))  # nearest neighbour: no invented label values
        decoded = np.rint(out[..., 0] * 255 / 40)
        inner = lab == np.roll(lab, 1, 0)  # away from horizontal edges, where linear interpolation blends
        inner &= lab == np.roll(lab, 1, 1)
        assert (decoded[inner] == lab[inner]).mean() > 0.97
        moved += int((lab != labels).mean() > 0.02)
    assert moved >= 3  # the transform does move things


def test_artefacts_and_display_changes_leave_the_labels_alone():
    image, labels = _blocks()
    aug = SegmentationAugment(geometry_p=0.0, artefact=ArtefactAugment(shadow_p=1, haze_p=1, sidelobe_p=1))
    out, lab = aug(image, labels, np.random.default_rng(0))
    assert np.array_equal(lab, labels)
    assert not np.allclose(out, image / 255.0, atol=1 / 255)  # the look did change
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_artefacts_darken_a_wedge_below_a_depth_and_haze_the_near_field():
    flat = np.full((120, 120, 3), 120, np.uint8)
    shadowed = ArtefactAugment(shadow_p=1, haze_p=0, sidelobe_p=0)(flat, np.random.default_rng(1))
    assert shadowed[:20].min() == 120  # the near field is above the reflector
    assert shadowed[80:].min() < 80  # a dark wedge further down
    hazy = ArtefactAugment(shadow_p=0, haze_p=1, sidelobe_p=0)(flat, np.random.default_rng(1))
    assert hazy[0].mean() > hazy[-1].mean() >= 120


def test_batch_without_augmentation_is_only_scaled():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 4, (4, 32, 32)).astype(np.uint8)
    xb, yb = augmented_batch(x, y, rng, None)
    assert np.allclose(xb, x / 255.0) and yb.dtype == np.int64 and np.array_equal(yb, y)
    xa, ya = augmented_batch(x, y, rng, SegmentationAugment())
    assert xa.shape == x.shape and xa.dtype == np.float32 and ya.shape == y.shape and ya.dtype == np.int64


def _sector_image() -> np.ndarray:
    """A lit sector (apex at the top) with a black cavity inside and a text mark outside it."""
    img = np.zeros((128, 128, 3), np.uint8)
    yy, xx = np.mgrid[0:128, 0:128]
    r, ang = np.hypot(xx - 64, yy), np.degrees(np.arctan2(xx - 64, yy))
    img[(r < 120) & (np.abs(ang) < 40)] = 90
    img[50:80, 55:75] = 0  # a cavity: black inside the sector
    img[2:6, 2:12] = 200  # annotation text beside the sector
    return img


def test_exposure_fills_dark_cavities_with_clutter_and_leaves_the_surround_black():
    img = _sector_image()
    out = ExposureAugment(p=1.0, gain=(1.0, 1.0), floor_p=1.0, floor=(0.2, 0.2))(img, np.random.default_rng(0))
    assert out[50:80, 55:75].mean() > 30  # the cavity gets a speckled floor (0.2 x 255 on average)
    assert out[50:80, 55:75].std() > 10
    assert out[120:, :].max() == 0 and out[10:40, 0:10].max() == 0  # outside the sector hull stays black
    assert np.array_equal(out[2:6, 2:12], img[2:6, 2:12])  # the text mark is not part of the sector


def test_exposure_gain_brightens_and_darkens_and_saturates_at_white():
    img = _sector_image()
    aug = ExposureAugment(p=1.0, floor_p=0.0)
    means = [aug(img, np.random.default_rng(s))[40:45, 60:70].mean() for s in range(40)]
    assert min(means) < 90 < max(means) and max(means) <= 255 and max(means) > 150


def test_exposure_is_on_only_when_asked_and_implies_online_augmentation():
    assert segmentation_augment(False, False) is None
    assert segmentation_augment(True, False).exposure is None
    with_exposure = segmentation_augment(False, True)
    assert with_exposure is not None and isinstance(with_exposure.exposure, ExposureAugment)
    image, labels = _blocks()
    out, lab = with_exposure(image, labels, np.random.default_rng(0))
    assert out.shape == image.shape and set(np.unique(lab)) <= set(np.unique(labels))
