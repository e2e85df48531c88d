"""What the 2D model looks at in a deep sector: the near part of it, as a shallower scan would show.

A PLAX heart lies within the first 15-17 cm below the probe.  In a 20-24 cm sector it fills a
small part of the sector's bounding box, and at the model's 192 x 192 input it is drawn with too
few pixels (about 1.4 mm a model pixel at 20 cm): the model then lands on the wrong structure far
more often.  :func:`depth_capped_box` shrinks the model's box about the sector apex so that it
covers :data:`VIEW_DEPTH_CM` of depth: the same picture a sonographer gets by reducing the depth,
with the apex still at the top.  Only the crop changes; calibration stays with the DICOM regions.
"""

from __future__ import annotations

from typing import Any

#: Depth the 2D model is shown at most (cm below the sector apex).
VIEW_DEPTH_CM = 16.0


def depth_capped_box(box: Any, regions: Any, view_depth_cm: float | None = None) -> Any:
    """The model box of a clip, limited to ``view_depth_cm`` below the sector apex.

    Parameters
    ----------
    box : echomeasure.models.preprocess.Box
        The box the model would see (the 2D region's).
    regions : sequence of Region
        The clip's DICOM regions: the 2D tissue region containing the box gives the apex
        (its reference pixel, where the physical coordinates are 0) and the pixel size (cm).
    view_depth_cm : float, optional
        Depth to show at most (default :data:`VIEW_DEPTH_CM`).

    Returns
    -------
    Box
        ``box`` itself when the sector is not deeper than ``view_depth_cm`` or the clip has no
        usable calibration (videos, screenshots, no reference pixel); otherwise ``box`` scaled
        about the apex so that its bottom lies ``view_depth_cm`` below it.
    """
    if view_depth_cm is None:
        view_depth_cm = VIEW_DEPTH_CM
    tissue = [r for r in regions or () if getattr(r, "spatial_format", None) == 1 and r.units_y == 3
              and r.ref_x0 is not None and r.ref_y0 is not None and r.delta_y]
    if not tissue:
        return box
    r = max(tissue, key=lambda r: (r.x1 - r.x0 + 1) * (r.y1 - r.y0 + 1))
    apex_x, apex_y = r.x0 + r.ref_x0, r.y0 + r.ref_y0
    if abs(float(getattr(r, "ref_phys_y", 0.0) or 0.0)) > 1e-6 or not (box.y0 - 2 <= apex_y < box.y1):
        return box  # the reference pixel is not the apex at the top of the box: leave it alone
    cm_per_px = abs(float(r.delta_y))
    depth_cm = (box.y1 - apex_y) * cm_per_px
    if depth_cm <= view_depth_cm:
        return box
    k = view_depth_cm / depth_cm
    x0 = int(round(apex_x - (apex_x - box.x0) * k))
    x1 = int(round(apex_x + (box.x1 - apex_x) * k))
    y1 = int(round(apex_y + (box.y1 - apex_y) * k))
    x0, x1 = max(box.x0, x0), min(box.x1, x1)
    if x1 - x0 < 16 or y1 - box.y0 < 16:
        return box
    return type(box)(x0, box.y0, x1, y1)


def plax_crop_transform(clip: Any, input_size: tuple[int, int], depth_zoom: bool = True) -> Any:
    """The crop-and-resize transform of the 2D model for a clip (depth-capped unless ``depth_zoom`` is off)."""
    from echomeasure.models.preprocess import CropTransform, box_2d

    box = box_2d(clip)
    if depth_zoom:
        box = depth_capped_box(box, clip.regions)
    return CropTransform(box, (int(input_size[0]), int(input_size[1])))
