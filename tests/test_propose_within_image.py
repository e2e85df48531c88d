"""A caliper endpoint a model extrapolates beyond the frame is put back on the image and flagged."""

from __future__ import annotations

from echomeasure.propose.engine import _within_image


def test_points_inside_are_kept_exactly():
    pts = ((0.0, 0.0), (319.0, 239.0))
    assert _within_image(pts, 320, 240) == (pts, False)


def test_points_outside_are_moved_to_the_edge_and_reported():
    pts, left = _within_image(((115.7, 263.9), (-3.0, 10.0)), 320, 240)
    assert left is True
    assert pts == ((115.7, 239.0), (0.0, 10.0))
