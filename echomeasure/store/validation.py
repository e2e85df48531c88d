"""What the review store accepts: the checks and normalisations every value passes before it is
written.  Each refusal is a :class:`StoreError` naming the value as given.

Numbers are stored finite and never ``-0.0``, and JSON values as both databases give them
back (:func:`echomeasure.store.chain.exact_json`), so audit hashes match on verification.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from echomeasure import catalog
from echomeasure.errors import StoreError
from echomeasure.plain_json import json_default_or_str
from echomeasure.store import chain
from echomeasure.store import schema as db
from echomeasure.store.records import REVIEW_ACTIONS, ReviewAction
from echomeasure.store.reviewer import validate_reviewer

VALID_UNITS = ("cm", "m/s", "ratio", "px")


def jsonable(obj: Any) -> Any:
    """Plain JSON types only (tuples -> lists, numpy scalars -> numbers, other objects -> strings),
    as both databases give them back."""
    return chain.exact_json(json.loads(json.dumps(obj, default=json_default_or_str, allow_nan=False)))


def as_dict(obj: Any) -> dict:
    """A de-identification record as a dict (mapping, dataclass or an object with ``as_dict``)."""
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return dict(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    for attr in ("as_dict", "to_dict", "to_json_dict"):
        if callable(getattr(obj, attr, None)):
            return dict(getattr(obj, attr)())
    raise TypeError(f"cannot store a de-identification record of type {type(obj).__name__}")


def measurement_spec(name: str) -> catalog.Measurement:
    """The catalogue entry of a measurement name."""
    try:
        return catalog.get(name)
    except KeyError:
        raise StoreError(f"unknown measurement {name!r}; use one of {', '.join(catalog.CATALOG)}") from None


def checked_unit(unit: str | None) -> str:
    """``unit`` when it is one the store knows."""
    if unit not in VALID_UNITS:
        raise StoreError(f"unknown unit {unit!r}; use one of {', '.join(VALID_UNITS)}")
    return unit


def clamped_confidence(value: float) -> float:
    """A model's confidence, clipped to [0, 1]."""
    value = float(value)
    if not math.isfinite(value):
        raise StoreError("proposal confidence must be a finite number")
    return min(max(value, 0.0), 1.0) + 0.0  # + 0.0: never -0.0 (see chain.exact_json)


def finite_or_none(value: float | None) -> float | None:
    """``value`` as a float, or None when it is None or not finite."""
    if value is None:
        return None
    value = float(value) + 0.0  # + 0.0: never -0.0 (see chain.exact_json)
    return value if math.isfinite(value) else None


def check_frame(index: int, clip_id: int, n_frames: int) -> None:
    """Refuse a frame index outside a clip of ``n_frames`` frames."""
    if not 0 <= index < n_frames:
        raise StoreError(f"frame {index} is outside clip {clip_id} (frames 0-{n_frames - 1})")


def checked_points(points: Sequence[Sequence[float]], spec: catalog.Measurement, clip: db.Clip) -> list[list[float]]:
    """Points of a measurement as stored: as many as the catalogue says, finite, inside the image."""
    pts = [list(p) for p in points]
    if spec.n_points and len(pts) != spec.n_points:
        raise StoreError(f"{spec.name} needs {spec.n_points} point(s), got {len(pts)}")
    out = []
    for p in pts:
        if len(p) != 2:
            raise StoreError(f"a point of {spec.name} must be (x, y), got {p!r}")
        x, y = float(p[0]) + 0.0, float(p[1]) + 0.0
        if not (math.isfinite(x) and math.isfinite(y)):
            raise StoreError(f"a point of {spec.name} is not a finite number: {p!r}")
        # Half a pixel of slack: a caliper on the last row/column lies at index + 0.5 at most.
        if not (-0.5 <= x <= clip.width_px - 0.5 and -0.5 <= y <= clip.height_px - 0.5):
            raise StoreError(
                f"point ({x:.1f}, {y:.1f}) of {spec.name} lies outside the {clip.width_px}x{clip.height_px} px image"
            )
        out.append([x, y])
    return out


def frame_items(frames: Mapping[int, np.ndarray] | np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``(index, frame)`` pairs in index order from a mapping or an (N, H, W, 3) array."""
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4:
            raise ValueError(f"frames array must be (N, H, W, 3), got {frames.shape}")
        return [(i, frames[i]) for i in range(frames.shape[0])]
    return sorted(((int(i), np.asarray(f)) for i, f in frames.items()), key=lambda t: t[0])


def checked_action(action: str) -> ReviewAction:
    """``action`` when it is a review action."""
    for known in REVIEW_ACTIONS:
        if action == known:
            return known
    raise StoreError(f"unknown review action {action!r}; use one of {', '.join(REVIEW_ACTIONS)}")


def checked_review_request(
    reviewer: str, reviewer_display_name: str | None, action: str, measurement: str, seconds_spent: float | None
) -> tuple[str, str | None, ReviewAction, catalog.Measurement]:
    """The reviewer names (validated), the action and the catalogue entry; refuses an unknown
    action or a bad time spent."""
    reviewer = validate_reviewer(reviewer)
    display_name = None if reviewer_display_name is None else validate_reviewer(reviewer_display_name)
    checked = checked_action(action)
    spec = measurement_spec(measurement)
    if seconds_spent is not None and (not math.isfinite(seconds_spent) or seconds_spent < 0):
        raise StoreError(f"seconds spent must be a non-negative number, got {seconds_spent}")
    return reviewer, display_name, checked, spec


def review_fields(
    clip: db.Clip, spec: catalog.Measurement, action: ReviewAction, proposal: db.Proposal | None, *,
    frame: int | None, points: Sequence[Sequence[float]] | None, value: float | None, unit: str | None,
) -> tuple[int | None, list | None, float | None, str | None]:
    """Frame, points (JSON), value and unit a review stores: the proposal's where an accept leaves
    them out, none for a reject; validated against the clip and the catalogue."""
    measurement = spec.name
    r_frame, r_points, r_value, r_unit = frame, points, value, unit
    if action in ("rejected", "reopened"):
        # a reopening keeps nothing either: the measurement stands as proposed again
        r_frame = proposal.frame_index if (proposal is not None and r_frame is None) else r_frame
        r_points, r_value, r_unit = None, None, None
    elif action == "accepted":
        assert proposal is not None
        if r_frame is None:
            r_frame = proposal.frame_index
        if r_points is None:
            r_points = proposal.points
        if r_value is None and r_unit is None:
            r_value, r_unit = proposal.value, proposal.unit
    else:  # corrected / added
        if r_frame is None:
            if proposal is None:
                raise StoreError(f"an added {measurement} needs the frame it was measured on")
            r_frame = proposal.frame_index
        if r_points is None:
            raise StoreError(f"a {action} {measurement} needs its {spec.n_points} point(s)")
    if r_frame is not None:
        check_frame(r_frame, clip.id, clip.n_frames)
    points_json = None if r_points is None else checked_points(r_points, spec, clip)
    if r_value is not None:
        r_value = float(r_value) + 0.0
        if not math.isfinite(r_value):
            raise StoreError(f"value of {measurement} must be a finite number")
        r_unit = checked_unit(r_unit or spec.unit)
    elif r_unit is not None:
        r_unit = checked_unit(r_unit)
    elif action not in ("rejected", "reopened"):
        r_unit = "px"
    return r_frame, points_json, r_value, r_unit


__all__ = [
    "VALID_UNITS",
    "as_dict",
    "check_frame",
    "checked_action",
    "checked_points",
    "checked_review_request",
    "checked_unit",
    "clamped_confidence",
    "finite_or_none",
    "frame_items",
    "jsonable",
    "measurement_spec",
    "review_fields",
]
