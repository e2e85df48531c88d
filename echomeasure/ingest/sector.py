"""Find the scan sector of a clip from its frames: pixels that vary over time.

Used where no Sequence of Ultrasound Regions exists (videos, region-less DICOM).  Burned-in
banners (patient name, date) are static and fall outside; so do scale markers and logos.  A
clock or frame counter that changes is small and not connected to the sector, and is dropped.
"""

from __future__ import annotations

import cv2
import numpy as np

# A pixel "moves" when its brightness range over the sampled frames exceeds this (0-255).
MOTION_THRESHOLD = 12
# Connected moving areas smaller than this fraction of the largest one are treated as text.
MIN_COMPONENT_RATIO = 0.2
# Below this fraction of the image the sector is considered not found.
MIN_SECTOR_FRACTION = 0.02
SAMPLE_FRAMES = 16


def motion_sector_mask(frames: np.ndarray, *, threshold: int = MOTION_THRESHOLD) -> np.ndarray | None:
    """Boolean (H, W) mask of the scan sector, or None when it cannot be found.

    Parameters
    ----------
    frames : ndarray
        (N, H, W, 3) uint8 RGB.
    threshold : int
        Minimum brightness range over time for a pixel to count as moving.

    Returns
    -------
    ndarray of bool or None
        True inside the sector (convex hull of each large moving area, dilated by 2 px);
        None for single frames or when less than 2 % of the image moves.
    """
    n, h, w, _ = frames.shape
    if n < 2:
        return None
    idx = np.unique(np.linspace(0, n - 1, min(n, SAMPLE_FRAMES)).astype(int))
    sample = frames[idx]
    spread = (sample.max(axis=0).astype(np.int16) - sample.min(axis=0).astype(np.int16)).max(axis=-1)
    moving = (spread > threshold).astype(np.uint8)
    if moving.mean() < MIN_SECTOR_FRACTION / 4:
        return None
    keep = _hull_of_large_components(moving, close_px=min(h, w) // 60, grow=np.ones((5, 5), np.uint8))
    if keep is None or keep.mean() < MIN_SECTOR_FRACTION:
        return None
    return keep


# A still has no motion: its sector is what is not black.  Pixels above this (0-255) count.
STILL_THRESHOLD = 8
# A fan found inside a 2D region must cover at least this fraction of the region rectangle.
MIN_FAN_FRACTION = 0.15


def _disc(radius_px: int) -> np.ndarray:
    """Elliptical structuring element of the given radius."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius_px + 1, 2 * radius_px + 1))


def _hull_of_large_components(active: np.ndarray, *, close_px: int, grow: np.ndarray) -> np.ndarray | None:
    """Convex hulls of the largest connected area of ``active`` (and those of >= 20 % of it), dilated by ``grow``."""
    h, w = active.shape
    k = max(3, close_px | 1)
    active = cv2.morphologyEx(active.astype(np.uint8), cv2.MORPH_CLOSE,
                              cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(active, connectivity=8)
    if n_labels <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    largest = int(areas.max())
    mask = np.zeros((h, w), dtype=np.uint8)
    for label, area in enumerate(areas, start=1):
        if area < MIN_COMPONENT_RATIO * largest:
            continue
        contours, _ = cv2.findContours((labels == label).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        hull = cv2.convexHull(np.concatenate(contours))
        cv2.fillConvexPoly(mask, hull, 1)
    return cv2.dilate(mask, grow).astype(bool)


def still_sector_mask(frame: np.ndarray, *, threshold: int = STILL_THRESHOLD) -> np.ndarray | None:
    """Boolean (H, W) mask of the sector of one frame: the hull of the largest non-black area.

    Burned-in text is thin and not connected to the sector, so it falls outside.  None when
    less than 2 % of the image is found.
    """
    h, w, _ = frame.shape
    bright = frame.max(axis=-1) > threshold
    # Opening removes thin strokes (text, scale ticks: a few pixels wide at any image size)
    # before the areas are measured; the closing that follows is too small to bridge to text.
    k = max(5, (min(h, w) // 80) | 1)
    bright = cv2.morphologyEx(bright.astype(np.uint8), cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    keep = _hull_of_large_components(bright, close_px=3, grow=_disc(k))  # give back what the opening took
    if keep is None or keep.mean() < MIN_SECTOR_FRACTION:
        return None
    return keep


def fan_in_region(frames: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray | None:
    """The imaging fan inside one 2D region rectangle (max inclusive), as a (y1-y0+1, x1-x0+1)
    mask: moving pixels for cines, non-black pixels for stills.  None when no plausible fan is
    found (then the whole rectangle is kept)."""
    crop = frames[:, y0 : y1 + 1, x0 : x1 + 1]
    keep = motion_sector_mask(crop) if crop.shape[0] >= 2 else still_sector_mask(crop[0])
    if keep is None or keep.mean() < MIN_FAN_FRACTION:
        return None
    return keep
