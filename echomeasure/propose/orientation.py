"""Apex-down 2D displays: the models are shown the image apex up, the proposals come back as displayed.

Scanners can show a 2D image upside down ("apex down": the transducer at the bottom of the
screen), the anatomical display many paediatric and some adult labs use for apical views.  Every
model here learned apex-up pictures (the transducer at the top); shown an apex-down A4C, the view
classifier called it PLAX and nothing useful came out.  :func:`propose_upright` therefore turns such
a clip upright (frames mirrored top to bottom, its regions with them), lets ``propose`` run on it
unchanged, and maps every point, polygon and per-frame record back into the image as it was
displayed, with a notice.

Which way is up, in order of evidence:

* the 2D region's reference pixel, where it is the sector apex (ReferencePixelPhysicalValueY 0: depth 0
  there), at the top or the bottom of the region;
* else the fan's shape in the 2D box: a sector widens away from the transducer, so the third of its
  rows farthest from the apex is on average :data:`FAN_TAPER` times wider or more than the third
  nearest to it (about 2-3 for sectors of 60-120 degrees, the far arc included); a rectangular
  (linear-array) picture or no fan found decides nothing and the clip is taken as shown.

Spectral Doppler strips are not 2D pictures: an inverted spectral display is handled where the
Doppler model's input is made (:func:`echomeasure.models.preprocess.doppler_display_inverted`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from echomeasure.ingest.clip import Clip, Region
from echomeasure.propose.types import ClipProposals, Point

#: The reference pixel lies within this fraction of the region's height from its top (apex up) or
#: bottom (apex down) for the regions to decide.
REFERENCE_EDGE_FRACTION = 0.1
#: Fan shape: mean width of the bottom third of the fan's rows over that of the top third at least
#: this = apex up, at most its inverse = apex down (a rectangle: about 1).
FAN_TAPER = 1.4

NOTICE = ("the image is displayed apex down (the transducer at the bottom): the models were shown it turned "
          "upright; the proposals are drawn on the image as displayed")


def _tissue_region(clip: Clip) -> Region | None:
    tissue = [r for r in clip.regions if r.is_2d_cm]
    return max(tissue, key=lambda r: (r.x1 - r.x0 + 1) * (r.y1 - r.y0 + 1)) if tissue else None


def _apex_from_regions(clip: Clip) -> bool | None:
    """True / False when the 2D region's reference pixel is the apex at its bottom / top; else None."""
    r = _tissue_region(clip)
    if r is None or r.ref_y0 is None or abs(float(r.ref_phys_y)) > 1e-6 or r.y1 <= r.y0:
        return None
    at = r.ref_y0 / (r.y1 - r.y0)
    if at >= 1.0 - REFERENCE_EDGE_FRACTION:
        return True
    if at <= REFERENCE_EDGE_FRACTION:
        return False
    return None


def fan_taper(mask: np.ndarray) -> float | None:
    """Mean width of the bottom third of a fan mask's rows over that of its top third (None when
    the mask has fewer than 9 rows or an empty top third)."""
    widths = mask.sum(axis=1).astype(np.float64)
    rows = np.nonzero(widths)[0]
    if len(rows) < 9:
        return None
    w = widths[int(rows[0]) : int(rows[-1]) + 1]
    third = len(w) // 3
    top, bottom = float(w[:third].mean()), float(w[-third:].mean())
    return bottom / top if top > 0 else None


def _apex_from_fan(clip: Clip) -> bool | None:
    from echomeasure.ingest.sector import fan_in_region
    from echomeasure.models.preprocess import box_2d

    b = box_2d(clip)
    mask = fan_in_region(clip.frames, b.x0, b.y0, b.x1, b.y1)
    taper = fan_taper(mask) if mask is not None else None
    if taper is None:
        return None
    if taper <= 1.0 / FAN_TAPER:
        return True
    if taper >= FAN_TAPER:
        return False
    return None


def apex_down(clip: Clip) -> bool:
    """True when a 2D clip is displayed with the sector apex (the transducer) at the bottom."""
    if clip.kind != "2d":
        return False
    by_regions = _apex_from_regions(clip)
    if by_regions is not None:
        return by_regions
    return bool(_apex_from_fan(clip))


def _mirrored_region(r: Region, height: int) -> Region:
    """``r`` in the image mirrored top to bottom (its reference pixel and physical y axis with it)."""
    ref_y0 = None if r.ref_y0 is None else (r.y1 - r.y0) - r.ref_y0
    return replace(r, y0=height - 1 - r.y1, y1=height - 1 - r.y0, ref_y0=ref_y0, delta_y=-r.delta_y)


def upright(clip: Clip) -> Clip:
    """The clip mirrored top to bottom: frames, regions and a recorded sector box (no copy of the frames)."""
    h = clip.height
    extra = dict(clip.extra)
    box = extra.get("sector_box")
    if box is not None and len(box) == 4:
        x0, y0, x1, y1 = (int(v) for v in box)
        extra["sector_box"] = (x0, h - 1 - y1, x1, h - 1 - y0)
    return replace(clip, frames=clip.frames[:, ::-1], regions=tuple(_mirrored_region(r, h) for r in clip.regions),
                   extra=extra)


def _mapped_back(result: ClipProposals, height: int) -> ClipProposals:
    """A result made on :func:`upright`'s clip, in the pixels of the clip as displayed."""

    def point(p: Any) -> Point:
        return (float(p[0]), float(height - 1) - float(p[1]))

    def xy(p: Any) -> list:
        x, y = point(p)
        return [round(x, 2), round(y, 2)]

    measurements = [replace(p, points=tuple(point(q) for q in p.points),
                            beat_points=tuple(point(q) for q in p.beat_points)) for p in result.measurements]
    segmentations = [{**s, "polygon": [[int(x), height - 1 - int(y)] for x, y in s["polygon"]]}
                     for s in result.segmentations]
    frames = []
    for record in result.frames:
        record = dict(record)
        for key in ("points", "raw_points"):
            if isinstance(record.get(key), dict):
                record[key] = {k: xy(v) for k, v in record[key].items()}
        frames.append(record)
    return replace(result, measurements=measurements, segmentations=segmentations, frames=frames,
                   notices=[NOTICE, *result.notices])


def propose_upright(clip: Clip, run: Callable[[Clip], ClipProposals]) -> ClipProposals:
    """``run(clip)``, on the clip turned upright when it is displayed apex down (results mapped back)."""
    if not apex_down(clip):
        return run(clip)
    return _mapped_back(run(upright(clip)), clip.height)


__all__ = ["NOTICE", "apex_down", "fan_taper", "propose_upright", "upright"]
