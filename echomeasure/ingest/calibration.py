"""Physical values from pixel positions: the DICOM Sequence of Ultrasound Regions, or a user scale.

The one place where pixels become centimetres or metres per second (docs/domain.md section 3):

* distances: two points in *one* 2D region whose X and Y units are cm,
  ``hypot(dx * |DeltaX|, dy * |DeltaY|)``;
* velocities: a row in a spectral Doppler region whose Y units are cm/s,
  ``v = ReferencePhysicalValueY + (row - (MinY0 + ReferencePixelY0)) * DeltaY`` (signed, the
  sign the region implies); Vmax is reported as a magnitude.

Anything else is refused with :class:`~echomeasure.errors.CalibrationError`: no region contains
the points, the points fall in two regions, the units are wrong, the Doppler scale is
frequency, or the region's pixel size is zero, not a number or implausible
(:func:`region_calibration_problem`).  Videos and stills carry no regions: their values stay in
pixels unless the user gives a scale in cm per pixel (calibration source ``user``), which must be
plausible too (:func:`check_user_cm_per_px`).

The plausibility rule lives here, once: :func:`check_user_cm_per_px` for a user's scale
(``--scale``, ``--cm-per-px``, the ingest API) and :func:`check_region_calibration` for a file's
regions, which reading a file to measure it applies (:func:`echomeasure.ingest.read_clip`,
:func:`echomeasure.ingest.load`) so that a badly calibrated file is refused up front with one
line instead of giving values in the wrong unit, a relabelled flow or a crash.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from echomeasure import catalog
from echomeasure.errors import CalibrationError, InvalidInputError, MeasurementError
from echomeasure.ingest.clip import (
    SPATIAL_2D,
    SPATIAL_SPECTRAL,
    UNIT_CM,
    UNIT_CM_S,
    UNIT_S,
    Clip,
    Region,
)

Point = tuple[float, float]

SPATIAL_FORMAT_NAMES = {0: "none", 1: "2D", 2: "M-mode", 3: "spectral", 4: "waveform", 5: "graphics"}
DATA_TYPE_NAMES = {
    0: "none", 1: "tissue", 2: "color flow", 3: "PW spectral Doppler", 4: "CW spectral Doppler",
    5: "Doppler mean trace", 6: "Doppler mode trace", 7: "Doppler max trace", 8: "volume trace",
    9: "d(volume)/dt trace", 10: "ECG trace", 11: "pulse trace", 12: "phonocardiogram trace",
    13: "gray bar", 14: "color bar", 15: "integrated backscatter", 16: "area trace",
    17: "d(area)/dt", 18: "other physical input",
}
UNIT_NAMES = {
    0: "none", 1: "percent", 2: "dB", 3: "cm", 4: "seconds", 5: "hertz", 6: "dB/seconds",
    7: "cm/sec", 8: "cm2", 9: "cm2/sec", 10: "cm3", 11: "cm3/sec", 12: "degrees",
}
# Data types that image anatomy in a 2D region: distances are meaningful there.
_IMAGING_DATA_TYPES = (1, 2, 15)
_SPECTRAL_DATA_TYPES = (3, 4)


#: Plausible size of one pixel, cm, for any distance calibration (a DICOM 2D region's
#: PhysicalDeltaX/Y or a user's scale).  Echo images show 2-30 cm of depth over 100-1000 pixel
#: rows, 0.002-0.3 cm/px; a strongly zoomed box (1 cm over 1000 px) reaches 0.001 cm = 10 um,
#: already ten times finer than the axial resolution of any echo probe (0.1-0.5 mm, about the
#: wavelength at 3-15 MHz), so a finer pixel carries no detail and is a unit slip (mm or um typed
#: as cm); it would also make the mm-sized edge search windows thousands of pixels wide.  At 1 cm
#: per pixel a 5 cm ventricle spans 5 pixels and nothing is left to measure (even a 112 px
#: EchoNet-Dynamic frame of a 20 cm sector is 0.18 cm/px).
MIN_CM_PER_PX = 0.001
MAX_CM_PER_PX = 1.0
#: Plausible pixel steps of the axes velocities and beat timing are read from, per unit code.
#: Velocity (cm/s per row): Doppler scales span +-10 cm/s (tissue, low PW) to +-10 m/s (CW) over
#: 100-1000 rows, 0.02-20 cm/s per px.  Time (s per column): sweeps of 1-10 s over 200-2000
#: columns, 0.0005-0.05 s per px.  The bounds leave a factor of 5 or more on each side.
PLAUSIBLE_DELTA: dict[int, tuple[float, float]] = {
    UNIT_CM: (MIN_CM_PER_PX, MAX_CM_PER_PX),
    UNIT_CM_S: (0.001, 100.0),
    UNIT_S: (1e-4, 1.0),
}
_UNIT_PER_PX = {UNIT_CM: "cm", UNIT_CM_S: "cm/s", UNIT_S: "s"}


def _plausibility(value: float, unit: int) -> str | None:
    """Why ``value`` (a signed pixel step in ``unit``) cannot calibrate, or None when it can."""
    v = abs(float(value))
    if not math.isfinite(v) or v == 0.0:
        return "is zero, missing or not a finite number"
    lo, hi = PLAUSIBLE_DELTA[unit]
    if not lo <= v <= hi:
        return f"is outside the plausible {lo:g} to {hi:g} {_UNIT_PER_PX[unit]} per pixel"
    return None


def check_user_cm_per_px(user_cm_per_px: float | str | None, *, label: str = "the scale") -> float | None:
    """A user's scale (cm per pixel) as a float, or None; refuses an implausible one.

    Parameters
    ----------
    user_cm_per_px
        The scale as the user gave it (``--scale``, ``--cm-per-px``, the ingest API).
    label
        How the user gave it, for the message (e.g. ``"--scale"``).

    Raises
    ------
    InvalidInputError
        Not a number, or outside [:data:`MIN_CM_PER_PX`, :data:`MAX_CM_PER_PX`].
    """
    if user_cm_per_px is None:
        return None
    try:
        v = float(user_cm_per_px)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{label} must be a number of cm per pixel, got {user_cm_per_px!r}") from None
    if not (math.isfinite(v) and MIN_CM_PER_PX <= v <= MAX_CM_PER_PX):
        raise InvalidInputError(
            f"{label} {v:g} cm per pixel is not plausible: give the size of one pixel in cm, "
            f"from {MIN_CM_PER_PX:g} to {MAX_CM_PER_PX:g} (e.g. 0.04)"
        )
    return v


def calibrating_axes(r: Region) -> list[tuple[str, str, float, int]]:
    """The axes of ``r`` that physical values are read from: ``(axis, DICOM keyword, delta, unit)``.

    A 2D region in cm: both (distances).  A spectral region with a velocity scale in cm/s: the
    vertical one (velocities) and, when it is in seconds, the horizontal one (beat timing, which
    tells the flows apart).  Other regions (ECG and other waveforms, M-mode, colour bars,
    unitless or frequency-scaled regions) calibrate nothing here, so their deltas are not checked.
    """
    if r.is_2d_cm:
        return [("horizontal pixel size", "PhysicalDeltaX", r.delta_x, UNIT_CM),
                ("vertical pixel size", "PhysicalDeltaY", r.delta_y, UNIT_CM)]
    if r.spatial_format == SPATIAL_SPECTRAL and not r.doppler_scale_is_frequency and r.units_y == UNIT_CM_S:
        axes = [("velocity step", "PhysicalDeltaY", r.delta_y, UNIT_CM_S)]
        if r.units_x == UNIT_S:
            axes.insert(0, ("time step", "PhysicalDeltaX", r.delta_x, UNIT_S))
        return axes
    return []


def _region_kind(r: Region) -> str:
    return "2D image" if r.spatial_format == SPATIAL_2D else "spectral Doppler"


def region_calibration_problem(r: Region) -> str | None:
    """Why the calibration of region ``r`` cannot be used (one line, no values from the file), or None.

    Every axis of :func:`calibrating_axes` must have a finite, non-zero pixel step within
    :data:`PLAUSIBLE_DELTA` (its sign is free: vendors sign DICOM deltas, and distances use
    ``|delta|``).  A velocity scale also needs its zero-velocity baseline
    (:func:`baseline_row`) inside the region: without ReferencePixelY0 (a Type 3 attribute) no
    row has a known velocity, and a baseline outside the box is no display a scanner draws.
    """
    axes = calibrating_axes(r)
    if axes and (r.x0 > r.x1 or r.y0 > r.y1):
        return (f"the box of the {_region_kind(r)} region is empty "
                "(RegionLocationMinX0/MinY0 beyond RegionLocationMaxX1/MaxY1)")
    for axis, keyword, delta, unit in axes:
        why = _plausibility(delta, unit)
        if why:
            return f"the {axis} ({keyword}) of the {_region_kind(r)} region {why}"
    if any(unit == UNIT_CM_S for *_, unit in axes):
        if r.ref_y0 is None:
            return ("the spectral Doppler region has no reference row (ReferencePixelY0), "
                    "so its velocity baseline is unknown")
        base = baseline_row(r)
        if not (math.isfinite(base) and r.y0 - 0.5 <= base <= r.y1 + 0.5):
            return ("the zero-velocity baseline of the spectral Doppler region (ReferencePixelY0 and "
                    "ReferencePixelPhysicalValueY) lies outside the region")
    return None


def measuring_regions(regions: Iterable[Region]) -> list[Region]:
    """The regions a clip's measurements are calibrated by: its spectral Doppler regions when it
    has one (a Doppler strip: :attr:`Clip.kind` ``"doppler"``; its 2D reference image is not
    measured), else its 2D regions in cm."""
    regions = list(regions)
    spectral = [r for r in regions if r.is_spectral]
    return spectral or [r for r in regions if r.is_2d_cm]


def check_region_calibration(regions: Iterable[Region]) -> None:
    """Refuse a file whose measuring regions (:func:`measuring_regions`) cannot calibrate
    (:func:`region_calibration_problem`).

    Applied when a file is read to be measured, so that it is refused with one line before
    de-identification and the models run.  Regions that calibrate none of its measurements (an
    ECG trace, a unitless region, the 2D reference image of a Doppler strip) never make a file
    unmeasurable; a distance asked for in a broken 2D region is refused on its own
    (:func:`region_for_distance`).

    Raises
    ------
    CalibrationError
        Names the region and the DICOM attribute, never the value read from the file.
    """
    for r in measuring_regions(regions):
        problem = region_calibration_problem(r)
        if problem:
            raise CalibrationError(
                f"the file's DICOM calibration is unusable: {problem}; "
                "re-export the clip from the scanner with its calibration"
            )


def _fmt(p: Point) -> str:
    return f"({p[0]:.1f}, {p[1]:.1f})"


def _area_px(r: Region) -> int:
    return (r.x1 - r.x0 + 1) * (r.y1 - r.y0 + 1)


def regions_containing(regions: Iterable[Region], point: Point) -> list[Region]:
    """All regions whose box (max inclusive) contains ``point`` (x, y) in pixels."""
    x, y = point
    return [r for r in regions if r.contains(x, y)]


def _common_region(regions: Sequence[Region], points: Sequence[Point], what: str) -> list[Region]:
    """Regions containing every point; refuses when a point is outside all regions or the points split."""
    if not regions:
        raise CalibrationError(
            f"this image has no ultrasound regions, so a {what} cannot be calibrated; "
            "give a scale in cm per pixel or use a calibrated DICOM"
        )
    per_point = [regions_containing(regions, p) for p in points]
    for p, found in zip(points, per_point, strict=True):
        if not found:
            raise CalibrationError(
                f"no ultrasound region contains point {_fmt(p)}; place the caliper inside the image sector"
            )
    common = [r for r in per_point[0] if all(r in found for found in per_point[1:])]
    if not common:
        raise CalibrationError(
            f"the points {', '.join(_fmt(p) for p in points)} lie in different ultrasound regions; "
            "a measurement must stay within one region"
        )
    return common


def region_for_distance(regions: Sequence[Region], p1: Point, p2: Point) -> Region:
    """The 2D region (units cm) that contains both points.

    Nested regions (colour flow inside a 2D sector) are resolved by preferring tissue, then the
    smallest box.  Raises :class:`CalibrationError` when no region qualifies.
    """
    common = _common_region(regions, (p1, p2), "distance")
    usable = [r for r in common if r.is_2d_cm]
    if not usable:
        r = common[0]
        raise CalibrationError(
            f"the region holding these points is {SPATIAL_FORMAT_NAMES.get(r.spatial_format, r.spatial_format)} "
            f"with units {UNIT_NAMES.get(r.units_x, r.units_x)}/{UNIT_NAMES.get(r.units_y, r.units_y)}; "
            "a distance needs a 2D region in cm"
        )
    usable.sort(key=lambda r: (r.data_type not in _IMAGING_DATA_TYPES, r.data_type != 1, _area_px(r)))
    problem = region_calibration_problem(usable[0])
    if problem:
        raise CalibrationError(problem)
    return usable[0]


def distance_cm(regions: Sequence[Region], p1: Point, p2: Point) -> float:
    """Length in cm between two points (pixels, x right, y down) in one 2D region.

    Parameters
    ----------
    regions : sequence of Region
        The clip's ultrasound regions.
    p1, p2 : (float, float)
        Caliper endpoints in original-image pixel coordinates.

    Returns
    -------
    float
        ``hypot(dx * |DeltaX|, dy * |DeltaY|)`` in cm.

    Raises
    ------
    CalibrationError
        No region contains the points, they fall in two regions, or the region is not 2D in cm.
    """
    r = region_for_distance(regions, p1, p2)
    dx_px = float(p2[0]) - float(p1[0])
    dy_px = float(p2[1]) - float(p1[1])
    return math.hypot(dx_px * abs(r.delta_x), dy_px * abs(r.delta_y))


def _spectral_problem(r: Region) -> str | None:
    if r.spatial_format != SPATIAL_SPECTRAL:
        return (f"the region is {SPATIAL_FORMAT_NAMES.get(r.spatial_format, r.spatial_format)}, "
                "not spectral Doppler")
    if r.doppler_scale_is_frequency:
        return "the Doppler scale of this region is frequency (Hz), not velocity; re-export the strip with a velocity scale"
    if r.units_y != UNIT_CM_S:
        return (f"the vertical units of the spectral region are {UNIT_NAMES.get(r.units_y, r.units_y)}, "
                "a velocity needs cm/sec")
    return region_calibration_problem(r)


def velocity_scale_problem(region: Region) -> str | None:
    """Why velocities cannot be read from spectral ``region`` (one line, no values), or None."""
    return _spectral_problem(region)


def spectral_region(regions: Sequence[Region], point: Point | None = None) -> Region:
    """The spectral Doppler region velocities are read from: the one rule, for the model's strip
    and for every point's value (the model's beats, the reviewer's caliper, the browser's readout).

    Among the spectral regions (RegionSpatialFormat 3) whose velocity scale is usable (cm/s, not
    frequency, a sane calibration: :func:`velocity_scale_problem`), PW/CW data types first, then
    the largest box, then the first listed.  With ``point``, only the regions containing it
    compete.  Overlapping spectral regions of different scales (a scanner exporting the whole
    strip and a part of it) are thus always read in the largest one: the strip the Doppler model
    measures (:func:`echomeasure.propose.doppler.spectral_region`), so a peak's value is the one
    of the scale its baseline and envelope were read on.

    Raises
    ------
    CalibrationError
        No (containing) spectral region, or none with a usable velocity scale.
    """
    if point is None:
        spectral = [r for r in regions if r.spatial_format == SPATIAL_SPECTRAL]
        if not spectral:
            raise CalibrationError("this image has no spectral Doppler region; open a Doppler strip or give the trace type")
    else:
        containing = _common_region(regions, (point,), "velocity")
        spectral = [r for r in containing if r.spatial_format == SPATIAL_SPECTRAL]
        if not spectral:
            r = containing[0]
            raise CalibrationError(
                f"point {_fmt(point)} lies in a {SPATIAL_FORMAT_NAMES.get(r.spatial_format, r.spatial_format)} "
                "region, not in the spectral Doppler strip"
            )
    good = [r for r in spectral if _spectral_problem(r) is None]
    if not good:
        raise CalibrationError(_spectral_problem(spectral[0]) or "no usable spectral region")
    return min(good, key=lambda r: (r.data_type not in _SPECTRAL_DATA_TYPES, -_area_px(r)))


def reference_row(region: Region) -> float:
    """Image row of a region's reference pixel (``MinY0 + ReferencePixelY0``; MinY0 without one)."""
    ref_y0 = region.ref_y0 if region.ref_y0 is not None else 0
    return float(region.y0 + ref_y0)


def baseline_row(region: Region) -> float:
    """Image row of the zero-velocity baseline of a spectral region.

    The row where ``ReferencePhysicalValueY + (row - (MinY0 + ReferencePixelY0)) * DeltaY`` is 0:
    the reference row itself when its physical value is 0 (the usual export), else shifted by
    ``-ReferencePhysicalValueY / DeltaY`` (a scanner may give the velocity of another reference
    row, such as the top of the strip).  A region without a usable DeltaY has it at the reference row.
    """
    row = reference_row(region)
    dy, v0 = float(region.delta_y), float(region.ref_phys_y)
    if v0 and dy and math.isfinite(dy) and math.isfinite(v0):
        row -= v0 / dy
    return row


def velocity_cm_s_in_region(region: Region, y: float) -> float:
    """Signed velocity in cm/s at image row ``y`` of a spectral region (no containment check)."""
    problem = _spectral_problem(region)
    if problem:
        raise CalibrationError(problem)
    return float(region.ref_phys_y) + (float(y) - reference_row(region)) * float(region.delta_y)


def velocity_m_s(regions: Sequence[Region], x: float, y: float) -> float:
    """Signed velocity in m/s at pixel (x, y) of the spectral region that contains it
    (:func:`spectral_region`: with overlapping ones, the largest).

    ``v = ReferencePhysicalValueY + (y - (MinY0 + ReferencePixelY0)) * DeltaY`` in cm/s, divided
    by 100.  The sign is the one the region implies (vendors sign DeltaY differently); report
    a peak as ``abs()`` of this.

    Raises
    ------
    CalibrationError
        No region contains the point, the region is not spectral, its scale is frequency, or its
        vertical units are not cm/s.
    """
    return velocity_cm_s_in_region(spectral_region(regions, (x, y)), y) / 100.0


def _as_points(points: Iterable[Iterable[float]]) -> list[Point]:
    pts: list[Point] = []
    for p in points:
        xy = tuple(map(float, p))
        if len(xy) != 2 or not all(math.isfinite(c) for c in xy):
            raise ValueError(f"points must be finite (x, y) pairs, got {points!r}")
        pts.append((xy[0], xy[1]))
    return pts


def physical_value(clip: Clip, name: str, points: Sequence[Sequence[float]]) -> tuple[float | None, str, float | None]:
    """The physical value of a catalogue measurement placed at ``points`` on ``clip``.

    The clip's regions and user scale are its calibration; see :func:`calibrated_value`.
    """
    return calibrated_value(clip.regions, clip.user_cm_per_px, name, points)


def calibrated_value(
    regions: Sequence[Region],
    user_cm_per_px: float | None,
    name: str,
    points: Sequence[Sequence[float]],
) -> tuple[float | None, str, float | None]:
    """The physical value of a catalogue measurement placed at ``points``: the one rule.

    Parameters
    ----------
    regions : sequence of Region
        The clip's DICOM ultrasound regions (empty for videos and stills).
    user_cm_per_px : float or None
        The user's scale for a clip without regions (calibration source ``user``).
    name : str
        Catalogue name: a 2D linear measurement (``ivsd``, ``lvidd``, ...) or a Doppler peak
        (``av_vmax``, ``mv_e``, ...).
    points : sequence of (x, y)
        Two caliper endpoints for 2D names; one peak point (the first is used) for Doppler.

    Returns
    -------
    (value, unit, signed_value)
        2D: ``(cm, "cm", None)`` from a DICOM 2D region or the user's cm-per-pixel scale, or
        ``(None, "px", None)`` when the clip is uncalibrated.  Doppler: ``(|v|, "m/s", v)`` with
        ``v`` the signed velocity in m/s, or ``(None, "px", None)`` without regions.

    Raises
    ------
    CalibrationError
        The DICOM calibration refuses the points (outside regions, two regions, wrong units,
        frequency scale).
    MeasurementError
        ``name`` is derived (``mv_ea``) and has no points of its own.
    ValueError
        Wrong number of points for the measurement, or points that are not finite pairs.
    """
    m = catalog.get(name)
    pts = _as_points(points)
    if m.n_points == 0:
        raise MeasurementError(f"{name} is derived from other measurements; compute it from their values")
    if m.mode == "2d":
        if len(pts) != 2:
            raise ValueError(f"{name} needs 2 points, got {len(pts)}")
        if regions:
            return distance_cm(regions, pts[0], pts[1]), "cm", None
        if user_cm_per_px:
            return pixel_length(pts[0], pts[1]) * float(user_cm_per_px), "cm", None
        return None, "px", None
    if not pts:
        raise ValueError(f"{name} needs a peak point")
    if not regions:
        return None, "px", None
    v_m_s = velocity_m_s(regions, pts[0][0], pts[0][1])
    return abs(v_m_s), "m/s", v_m_s


def square_cm_per_px(regions: Iterable[Region], user_cm_per_px: float | None = None) -> float | None:
    """Side of a square pixel in cm, for areas and volumes; None when the clip has no such scale.

    The largest 2D region in cm gives it when its pixels are square (PhysicalDeltaX and Y within
    1 %); a clip with such a region but non-square pixels has none.  Without a 2D cm region the
    user's scale (``cm/px``) gives it.
    """
    cm_regions = [r for r in regions if r.is_2d_cm]
    if cm_regions:
        r = max(cm_regions, key=_area_px)
        if region_calibration_problem(r):
            return None
        dx, dy = abs(float(r.delta_x)), abs(float(r.delta_y))
        return dx if abs(dx - dy) <= 0.01 * dx else None
    return float(user_cm_per_px) if user_cm_per_px else None


def pixel_length(p1: Sequence[float], p2: Sequence[float]) -> float:
    """Euclidean caliper length in pixels (no calibration)."""
    return math.hypot(float(p2[0]) - float(p1[0]), float(p2[1]) - float(p1[1]))


def region_record(r: Region) -> dict:
    """A JSON-serialisable description of one region with readable names for its codes."""
    return {
        "box_px": [r.x0, r.y0, r.x1, r.y1],
        "spatial_format": r.spatial_format,
        "spatial_format_name": SPATIAL_FORMAT_NAMES.get(r.spatial_format, "unknown"),
        "data_type": r.data_type,
        "data_type_name": DATA_TYPE_NAMES.get(r.data_type, "unknown"),
        "units_x": UNIT_NAMES.get(r.units_x, str(r.units_x)),
        "units_y": UNIT_NAMES.get(r.units_y, str(r.units_y)),
        "delta_x": r.delta_x,
        "delta_y": r.delta_y,
        "reference_pixel_x0": r.ref_x0,
        "reference_pixel_y0": r.ref_y0,
        "reference_physical_value_x": r.ref_phys_x,
        "reference_physical_value_y": r.ref_phys_y,
        "doppler_scale": ("frequency" if r.doppler_scale_is_frequency else "velocity") if r.is_spectral else None,
        "calibrated": (r.is_2d_cm and region_calibration_problem(r) is None)
        or (r.is_spectral and _spectral_problem(r) is None),
    }


def calibration_record(clip: Clip) -> dict:
    """JSON description of how a clip is calibrated, for stores and exports.

    ``{"source": "dicom"|"user"|"none", "user_cm_per_px": ..., "regions": [...]}``.
    """
    return {
        "source": clip.calibration_source,
        "user_cm_per_px": clip.user_cm_per_px,
        "regions": [region_record(r) for r in clip.regions],
    }


__all__ = [
    "MAX_CM_PER_PX", "MIN_CM_PER_PX", "PLAUSIBLE_DELTA", "Point", "baseline_row", "calibrated_value",
    "calibrating_axes", "calibration_record", "check_region_calibration", "check_user_cm_per_px", "distance_cm",
    "measuring_regions", "physical_value", "pixel_length", "reference_row",
    "region_calibration_problem", "region_for_distance", "region_record",
    "regions_containing", "spectral_region", "velocity_m_s", "velocity_scale_problem", "velocity_cm_s_in_region",
    "SPATIAL_2D", "UNIT_CM",
]
