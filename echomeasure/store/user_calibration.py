"""User calibration: a reviewer draws a known length on a clip without DICOM calibration.

Videos and screenshots carry no Sequence of Ultrasound Regions, so their calipers measure
pixels.  A reviewer who draws a line of known length (two marks of the depth scale, say) and
types its length in cm gives the clip a scale: ``cm_per_px = length_cm / line length in px``.
The calibration is a ``user_calibration`` row (append-only; a new one replaces the old one as
the clip's scale, and both stay in the history) with its audit event, and from then on the clip
reads as calibration source ``user`` with that ``user_cm_per_px`` everywhere it is read
(:meth:`Store.clip`, the worklist, exports), so values of later reviews are in cm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from echomeasure.errors import StoreError
from echomeasure.ingest.calibration import MAX_CM_PER_PX, MIN_CM_PER_PX
from echomeasure.store import audit
from echomeasure.store import schema as db
from echomeasure.store.mapping import clip_record
from echomeasure.store.queries import get_clip
from echomeasure.store.records import ClipRecord
from echomeasure.store.reviewer import validate_reviewer

if TYPE_CHECKING:
    from echomeasure.store.operations import Store

#: Shortest line accepted for a calibration: a shorter one gives a scale too coarse to trust.
MIN_LINE_PX = 20.0
#: Longest known length accepted (a depth scale is at most a few tens of cm).
MAX_LENGTH_CM = 50.0


def set_user_calibration(
    store: Store, clip_id: int, points: Sequence[Sequence[float]], length_cm: float | str | None, reviewer: str
) -> ClipRecord:
    """Calibrate a clip from a known length; returns the clip as it now reads (source ``user``).

    Parameters
    ----------
    store
        The review store.
    clip_id
        A clip without DICOM calibration regions.
    points
        The two ends of the known length, ``(x, y)`` in image pixels.
    length_cm
        Its length in cm, as the reviewer typed it.
    reviewer
        Who drew it (the reviewer-name rule applies).

    Raises
    ------
    StoreError
        Unknown clip, a clip calibrated by its DICOM regions, not two points inside the image, a
        line shorter than :data:`MIN_LINE_PX`, a length that is not a number in (0,
        :data:`MAX_LENGTH_CM`] cm, a scale outside the plausible range of every scale
        (:data:`echomeasure.ingest.calibration.MIN_CM_PER_PX` to ``MAX_CM_PER_PX``), or a
        refused reviewer name.  Nothing is stored then.
    """
    reviewer = validate_reviewer(reviewer)
    try:
        if length_cm is None:
            raise ValueError("no length given")
        length = float(length_cm)
        (x0, y0), (x1, y1) = ((float(p[0]), float(p[1])) for p in points)
    except (TypeError, ValueError):
        raise StoreError("a calibration needs two points and a length in cm") from None
    if not (math.isfinite(length) and 0 < length <= MAX_LENGTH_CM):
        raise StoreError(f"the known length must be a number of cm above 0 and at most {MAX_LENGTH_CM:g}")
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise StoreError("the calibration points are not finite numbers; draw the line again")
    line_px = math.hypot(x1 - x0, y1 - y0)
    if line_px < MIN_LINE_PX:
        raise StoreError(f"the line drawn is {line_px:.1f} px long; draw a known length of at least {MIN_LINE_PX:g} px")
    if not MIN_CM_PER_PX <= length / line_px <= MAX_CM_PER_PX:  # the rule every scale obeys (--scale too)
        raise StoreError(f"{length:g} cm over the {line_px:.0f} px drawn is {length / line_px:.3g} cm per pixel, outside "
                         f"the plausible {MIN_CM_PER_PX:g}-{MAX_CM_PER_PX:g}: check the length typed and the line")

    def op(s: Session) -> ClipRecord:
        clip = get_clip(s, clip_id)
        if clip.regions:
            raise StoreError(f"clip {clip_id} is calibrated by its DICOM regions; a user scale would be ignored")
        for x, y in ((x0, y0), (x1, y1)):
            if not (-0.5 <= x <= clip.width_px - 0.5 and -0.5 <= y <= clip.height_px - 0.5):
                raise StoreError(f"a calibration point lies outside clip {clip_id} ({clip.width_px}x{clip.height_px} px)")
        row = db.UserCalibration(
            clip_id=clip_id,
            points=[[round(x0, 3), round(y0, 3)], [round(x1, 3), round(y1, 3)]],
            length_cm=length,
            cm_per_px=length / line_px,
            reviewer=reviewer,
            created_at=db.utcnow(),
        )
        clip.user_calibrations.append(row)
        s.flush()
        audit.append(s, reviewer, "clip.calibrate", "user_calibration", row.id, clip_id, None,
               {"points": row.points, "length_cm": length, "cm_per_px": row.cm_per_px})
        return clip_record(clip, created=False)

    return store._write(op)


__all__ = ["MAX_LENGTH_CM", "MIN_LINE_PX", "set_user_calibration"]
