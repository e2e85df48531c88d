"""The 2D model's view of a deep sector: capped at a depth about the sector apex."""

from __future__ import annotations

import pytest

from echomeasure.ingest.clip import Region
from echomeasure.models.preprocess import Box
from echomeasure.propose.zoom import VIEW_DEPTH_CM, depth_capped_box


def _region(depth_px: int, cm_per_px: float) -> Region:
    # apex at (300, 40): top centre of the box, physical origin there
    return Region(x0=100, y0=40, x1=500, y1=40 + depth_px, spatial_format=1, data_type=1, units_x=3, units_y=3,
                  delta_x=cm_per_px, delta_y=cm_per_px, ref_x0=200, ref_y0=0)


def test_a_deep_sector_is_shown_as_a_shallower_one_about_the_apex():
    r = _region(400, 0.05)  # 20 cm deep
    box = Box(r.x0, r.y0, r.x1, r.y1)
    capped = depth_capped_box(box, [r])
    assert (capped.y1 - 40) * 0.05 == pytest.approx(VIEW_DEPTH_CM, abs=0.05)
    assert capped.y0 == box.y0
    # scaled about the apex column: equal shrink on both sides of x = 300
    assert 300 - capped.x0 == pytest.approx(300 - 100 * 1.0 - (200 * (1 - VIEW_DEPTH_CM / 20.0)), abs=1)
    assert capped.x1 - 300 == pytest.approx(200 * VIEW_DEPTH_CM / 20.0, abs=1)


def test_shallow_sectors_and_uncalibrated_clips_keep_their_box():
    r = _region(280, 0.05)  # 14 cm
    box = Box(r.x0, r.y0, r.x1, r.y1)
    assert depth_capped_box(box, [r]) == box
    deep = _region(400, 0.05)
    assert depth_capped_box(Box(deep.x0, deep.y0, deep.x1, deep.y1), []) == Box(deep.x0, deep.y0, deep.x1, deep.y1)
