"""Apex-down and mirrored 2D displays: the models are shown the standard picture, the proposals come back as displayed.

Scanners can show a 2D image upside down ("apex down": the transducer at the bottom of the
screen), the anatomical display many paediatric and some adult labs use for apical views.  Every
model here learned apex-up pictures (the transducer at the top); shown an apex-down A4C, the view
classifier called it PLAX and nothing useful came out.  :func:`propose_upright` therefore turns such
a clip upright (frames mirrored top to bottom, its regions with them), lets ``propose`` run on it
unchanged, and maps every point, polygon and per-frame record back into the image as it was
displayed, with a notice.

Which way is up, in order of evidence:

* the 2D region's reference pixel, where it is the sector apex (ReferencePixelPhysicalValueY 0: depth 0
  there), at the top or the bottom of the region (at the bottom only when the fan, below, does not
  clearly widen downward);
* else the fan's shape in the 2D box: a sector widens away from the transducer, so the third of its
  rows farthest from the apex is on average :data:`FAN_TAPER` times wider or more than the third
  nearest to it (about 2-3 for sectors of 60-120 degrees, the far arc included); a rectangular
  (linear-array) picture or no fan found decides nothing and the clip is taken as shown.

A PLAX clip displayed mirrored left to right (the scanner's left-right invert: apex on the right) is
told by the keypoint model itself: its confidence on a few frames shown mirrored against as shown
(:func:`plax_mirrored`); the PLAX path then runs on the mirrored clip (:func:`propose_plax_facing`).
Apical views need no such step: their models learned both left-right conventions (the Mayo
display puts the LV on the right).

Spectral Doppler strips are not 2D pictures: an inverted spectral display is handled where the
Doppler model's input is made (:func:`echomeasure.models.preprocess.doppler_display_inverted`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from echomeasure.ingest.clip import Clip, Region
from echomeasure.propose import flags
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
    if by_regions is False:
        return False
    by_fan = _apex_from_fan(clip)
    if by_regions:
        # a reference pixel at the bottom is not turned against a fan that clearly widens downward
        # (a file whose region says one thing and whose pixels show the other)
        return by_fan is not False
    return bool(by_fan)


def _flipped_region(r: Region, axis: str, size: int) -> Region:
    """``r`` in the image mirrored along ``axis`` ("y": top to bottom, "x": left to right; ``size``
    pixels along it), its reference pixel and physical axis with it."""
    lo, hi, ref = getattr(r, f"{axis}0"), getattr(r, f"{axis}1"), getattr(r, f"ref_{axis}0")
    return replace(r, **{f"{axis}0": size - 1 - hi, f"{axis}1": size - 1 - lo,
                         f"ref_{axis}0": None if ref is None else (hi - lo) - ref,
                         f"delta_{axis}": -getattr(r, f"delta_{axis}")})


def _flipped(clip: Clip, axis: str) -> Clip:
    """The clip mirrored along ``axis``: frames (a view, no copy), regions and a recorded sector box."""
    size = clip.height if axis == "y" else clip.width
    extra = dict(clip.extra)
    box = extra.get("sector_box")
    if box is not None and len(box) == 4:
        x0, y0, x1, y1 = (int(v) for v in box)
        extra["sector_box"] = (x0, size - 1 - y1, x1, size - 1 - y0) if axis == "y" else (size - 1 - x1, y0, size - 1 - x0, y1)
    frames = clip.frames[:, ::-1] if axis == "y" else clip.frames[:, :, ::-1]
    return replace(clip, frames=frames, regions=tuple(_flipped_region(r, axis, size) for r in clip.regions), extra=extra)


def upright(clip: Clip) -> Clip:
    """The clip mirrored top to bottom (an apex-down display shown apex up)."""
    return _flipped(clip, "y")


def _mapped_back(result: ClipProposals, flip: Callable[[float, float], tuple[float, float]], notice: str) -> ClipProposals:
    """A result made on a turned clip, in the pixels of the clip as displayed (``flip`` maps a
    point back; it is its own inverse)."""

    def point(p: Any) -> Point:
        return flip(float(p[0]), float(p[1]))

    def xy(p: Any) -> list:
        x, y = point(p)
        return [round(x, 2), round(y, 2)]

    def pixel(p: Any) -> list[int]:
        x, y = point(p)
        return [int(round(x)), int(round(y))]

    measurements = [replace(p, points=tuple(point(q) for q in p.points),
                            beat_points=tuple(point(q) for q in p.beat_points)) for p in result.measurements]
    segmentations = [{**s, "polygon": [pixel(q) for q in s["polygon"]]} for s in result.segmentations]
    frames = []
    for record in result.frames:
        record = dict(record)
        for key in ("points", "raw_points"):
            if isinstance(record.get(key), dict):
                record[key] = {k: xy(v) for k, v in record[key].items()}
        frames.append(record)
    return replace(result, measurements=measurements, segmentations=segmentations, frames=frames,
                   notices=[notice, *result.notices])


def propose_upright(clip: Clip, run: Callable[[Clip], ClipProposals]) -> ClipProposals:
    """``run(clip)``, on the clip turned upright when it is displayed apex down (results mapped back)."""
    if not apex_down(clip):
        return run(clip)
    bottom = float(clip.height - 1)
    return _mapped_back(run(upright(clip)), lambda x, y: (x, bottom - y), NOTICE)


# --------------------------------------------------------------------------- PLAX mirrored left-right

#: A PLAX clip none of whose calipers is credible (:func:`echomeasure.propose.flags.none_credible`) is probed
#: for a mirrored display (the scanner's left-right invert: apex on the right, aorta on the left):
#: it is taken as mirrored when the keypoint model's median confidence on :data:`MIRROR_PROBE_FRAMES`
#: frames shown mirrored reaches :data:`MIRROR_MIN_CONFIDENCE` and beats the frames as shown by
#: :data:`MIRROR_MARGIN`.  On 30 synthetic PLAX cines (three families) and the two shipped PLAX
#: examples, as shown 0.31-0.60, mirrored 0.03-0.23, the smallest difference 0.24.
MIRROR_PROBE_FRAMES = 3
MIRROR_MIN_CONFIDENCE = 0.25
MIRROR_MARGIN = 0.15

MIRROR_NOTICE = ("the PLAX image is displayed mirrored (apex on the right, the scanner's left-right invert): the "
                 "models were shown it the standard way round; the proposals are drawn on the image as displayed")


def mirrored(clip: Clip) -> Clip:
    """The clip mirrored left to right."""
    return _flipped(clip, "x")


def _keypoint_confidence(clip: Clip, engine: Any, frames: list[int], depth_zoom: bool) -> float:
    """Median confidence of the keypoint model's points on ``frames`` of ``clip``."""
    from echomeasure.models.decode import decode_keypoints
    from echomeasure.propose.zoom import plax_crop_transform

    transform = plax_crop_transform(clip, engine.entry.input_size, depth_zoom)
    decoded = decode_keypoints(engine.runner(transform.apply_array(clip.frames[frames])), sigma_px=engine.sigma_px,
                               max_shift_px=engine.max_shift_px)
    return float(np.median(decoded.confidence))


def plax_mirrored(clip: Clip, engine: Any, *, depth_zoom: bool = True) -> bool:
    """True when the PLAX keypoint model sees the clip's frames far better mirrored left to right."""
    frames = sorted({int(round(f)) for f in np.linspace(0, clip.n_frames - 1, MIRROR_PROBE_FRAMES)})
    as_shown = _keypoint_confidence(clip, engine, frames, depth_zoom)
    turned = _keypoint_confidence(mirrored(clip), engine, frames, depth_zoom)
    return turned >= MIRROR_MIN_CONFIDENCE and turned - as_shown >= MIRROR_MARGIN


def propose_plax_facing(clip: Clip, engine: Any, run: Callable[[Clip], ClipProposals], *,
                        depth_zoom: bool = True) -> ClipProposals:
    """``run(clip)``; when none of its calipers is credible and the clip is a mirrored PLAX display
    (:func:`plax_mirrored`), ``run`` on the clip mirrored left to right instead, results mapped back.
    A clip with credible calipers costs nothing more."""
    result = run(clip)
    if not flags.none_credible(result.measurements, engine.entry) or not plax_mirrored(clip, engine, depth_zoom=depth_zoom):
        return result
    right = float(clip.width - 1)
    return _mapped_back(run(mirrored(clip)), lambda x, y: (right - x, y), MIRROR_NOTICE)


__all__ = ["MIRROR_NOTICE", "NOTICE", "apex_down", "fan_taper", "mirrored", "plax_mirrored", "propose_plax_facing",
           "propose_upright", "upright"]
