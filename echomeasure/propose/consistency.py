"""Anatomical consistency of the eight PLAX caliper points, on one frame and across the cine.

A model that lands on the wrong structure (the pericardium for the LA wall, a papillary muscle
for the posterior wall) still gives a tidy pair of points; what gives it away is the geometry of
the whole set.  The rules (ASE conventions, :mod:`echomeasure.catalog`):

* **LV line**: rv_septum, septum_lv, lv_pw and pw_pericardium lie on one line across the LV, in
  that order, near perpendicular to the LV long axis (the long axis is taken as the direction
  from the LV line's centre to the aortic root's centre, which in PLAX runs towards the base);
* **root line**: ao_anterior, ao_posterior, la_anterior and la_posterior lie on one line through
  the root, in that order, with only the aortic wall (a few mm) between ao_posterior and
  la_anterior;
* **ratios**: septum vs posterior wall, LA vs aortic root, walls vs cavity stay within what hearts
  do (bounds wider than every synthetic style family's truth);
* **ED vs ES**: the end-systolic LV diameter is smaller than the end-diastolic one by a plausible
  fraction, and the walls do not thin in systole.

:func:`check_plax_set` measures a set of points and repairs what one point explains (a single
point off its line is projected back onto the line through the others); :func:`consistency_factors`
turns the findings into per-measurement confidence factors: 1 for a consistent set, lower for a
repaired one, :data:`REJECT_FACTOR` (flagged whatever the model's threshold) for an implausible one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from echomeasure.catalog import KEYPOINTS_2D, LINEAR_ENDPOINTS

LV_LINE = ("rv_septum", "septum_lv", "lv_pw", "pw_pericardium")
ROOT_LINE = ("ao_anterior", "ao_posterior", "la_anterior", "la_posterior")
#: Largest distance (mm) of a point from the line through the other three before it is moved onto it.
LINE_TOLERANCE_MM = 3.5
#: A point further than this (mm) from its line cannot be a caliper on that line: the set is rejected.
LINE_REJECT_MM = 8.0
#: Angle (degrees) between the LV line and the LV long axis must lie within 90 +- this.
PERPENDICULAR_TOLERANCE_DEG = 55.0
#: Aortic wall between ao_posterior and la_anterior (mm).
AORTIC_WALL_MM = (0.3, 7.0)
#: Plausible ratio ranges (wider than the truth of every synthetic style family).
RATIO_RANGES: dict[str, tuple[float, float]] = {
    "ivsd/lvpwd": (0.3, 3.2),
    "la/aortic_root": (0.5, 2.45),
    "lvidd/aortic_root": (0.7, 3.6),
    "ivsd/lvidd": (0.06, 0.6),
    "lvpwd/lvidd": (0.06, 0.6),
}
#: Ratios checked on the end-diastolic and on the end-systolic frame (the others change with the phase).
ED_RATIOS = ("ivsd/lvpwd", "lvidd/aortic_root", "ivsd/lvidd", "lvpwd/lvidd")
ES_RATIOS = ("la/aortic_root",)
#: LVIDs / LVIDd (EF from about 90 % down to a barely moving LV) and wall thickness ES / ED.
SYSTOLIC_RATIO = (0.3, 1.02)
WALL_THICKENING = (0.8, 2.5)
#: Confidence factor of a measurement whose points were repaired, and of an implausible one.
REPAIR_FACTOR = 0.5
REJECT_FACTOR = 0.0

_IDX = {k: i for i, k in enumerate(KEYPOINTS_2D)}


@dataclass
class ConsistencyReport:
    """What :func:`check_plax_set` found: problems per measurement and the repaired points."""

    points_xy: np.ndarray  # (8, 2) px, repaired where a single point was off its line
    repaired: set[str] = field(default_factory=set)  # keypoints moved
    rejected: dict[str, str] = field(default_factory=dict)  # measurement -> why
    notes: list[str] = field(default_factory=list)

    def factor(self, name: str) -> float:
        """Confidence factor of one measurement."""
        if name in self.rejected:
            return REJECT_FACTOR
        if set(LINEAR_ENDPOINTS[name]) & self.repaired:
            return REPAIR_FACTOR
        return 1.0


def _line_fit(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and unit direction of the total-least-squares line through ``pts`` (N, 2)."""
    c = pts.mean(axis=0)
    _, _, vt = np.linalg.svd(pts - c)
    return c, vt[0]


def _distance_to_line(p: np.ndarray, c: np.ndarray, d: np.ndarray) -> float:
    r = p - c
    return float(abs(r[0] * d[1] - r[1] * d[0]))


def _check_line(pts: np.ndarray, names: tuple[str, ...], mm_per_px: float, report: ConsistencyReport,
                measurements: tuple[str, ...], image_wh: tuple[int, int] | None = None) -> None:
    """Collinearity and order of four keypoints; one outlier is projected onto the others' line."""
    idx = [_IDX[n] for n in names]
    sub = pts[idx]
    worst, worst_d = -1, 0.0
    for k in range(len(idx)):
        others = np.delete(sub, k, axis=0)
        c, d = _line_fit(others)
        dist = _distance_to_line(sub[k], c, d) * mm_per_px
        if dist > worst_d:
            worst, worst_d = k, dist
    if worst_d > LINE_REJECT_MM:
        for m in measurements:
            if names[worst] in LINEAR_ENDPOINTS[m]:
                report.rejected[m] = f"{names[worst]} {worst_d:.1f} mm off the line"
    elif worst_d > LINE_TOLERANCE_MM:
        others = np.delete(sub, worst, axis=0)
        c, d = _line_fit(others)
        p = sub[worst]
        moved = c + d * float(np.dot(p - c, d))
        inside = image_wh is None or (0 <= moved[0] <= image_wh[0] - 1 and 0 <= moved[1] <= image_wh[1] - 1)
        if inside:
            pts[idx[worst]] = moved
            report.repaired.add(names[worst])
            report.notes.append(f"{names[worst]} moved {worst_d:.1f} mm onto its line")
        else:  # its line leaves the image there: no caliper can sit on it
            for m in measurements:
                if names[worst] in LINEAR_ENDPOINTS[m]:
                    report.rejected[m] = f"{names[worst]} {worst_d:.1f} mm off a line that leaves the image"
    # order along the line: each consecutive pair in the same direction
    c, d = _line_fit(pts[idx])
    proj = (pts[idx] - c) @ d
    steps = np.diff(proj)
    if not (np.all(steps > 0) or np.all(steps < 0)):
        for m in measurements:
            a, b = LINEAR_ENDPOINTS[m]
            if a in names and b in names:
                report.rejected.setdefault(m, "caliper points out of anatomical order")


def _length_mm(pts: np.ndarray, name: str, mm_per_px: float) -> float:
    a, b = LINEAR_ENDPOINTS[name]
    return float(np.hypot(*(pts[_IDX[a]] - pts[_IDX[b]]))) * mm_per_px


def check_plax_set(points_xy: np.ndarray, mm_per_px: float, phase: str = "ed",
                   image_wh: tuple[int, int] | None = None) -> ConsistencyReport:
    """Check (and where one point explains it, repair) the eight points of one frame.

    Parameters
    ----------
    points_xy : (8, 2) array
        Keypoints in ``catalog.KEYPOINTS_2D`` order, image pixels.
    mm_per_px : float
        Pixel size (mm); distances only, so any consistent unit works for the ratios.
    phase : {"ed", "es"}
        Which measurements the frame reports (ED: ivsd, lvidd, lvpwd, aortic_root; ES: lvids, la);
        every rule is checked, problems are attached to the measurements they concern.
    image_wh : (width, height), optional
        Image size: a point is only moved back onto its line where that stays inside the image.
    """
    pts = np.asarray(points_xy, dtype=np.float64).copy()
    report = ConsistencyReport(points_xy=pts)
    lv_names = ("ivsd", "lvidd", "lvpwd") if phase == "ed" else ("lvids",)
    root_names = ("aortic_root",) if phase == "ed" else ("la",)
    _check_line(pts, LV_LINE, mm_per_px, report, ("ivsd", "lvidd", "lvpwd", "lvids"), image_wh)
    _check_line(pts, ROOT_LINE, mm_per_px, report, ("aortic_root", "la"), image_wh)

    # the LV line near perpendicular to the long axis (LV line centre -> aortic root centre)
    c_lv, d_lv = _line_fit(pts[[_IDX[n] for n in LV_LINE]])
    root_c = 0.5 * (pts[_IDX["ao_anterior"]] + pts[_IDX["ao_posterior"]])
    axis = root_c - 0.5 * (pts[_IDX["septum_lv"]] + pts[_IDX["lv_pw"]])
    if np.hypot(*axis) > 1e-6:
        cosang = abs(float(np.dot(axis, d_lv))) / float(np.hypot(*axis))
        angle = math.degrees(math.acos(min(1.0, cosang)))  # 0: along the line, 90: perpendicular
        if angle < 90.0 - PERPENDICULAR_TOLERANCE_DEG:
            for m in lv_names:
                report.rejected.setdefault(m, f"LV line {angle:.0f} deg from the long axis")

    wall_mm = float(np.hypot(*(pts[_IDX["ao_posterior"]] - pts[_IDX["la_anterior"]]))) * mm_per_px
    if not AORTIC_WALL_MM[0] <= wall_mm <= AORTIC_WALL_MM[1]:
        for m in ("aortic_root", "la"):
            report.rejected.setdefault(m, f"aortic wall {wall_mm:.1f} mm")

    lengths = {n: _length_mm(pts, n, mm_per_px) for n in ("ivsd", "lvidd", "lvpwd", "aortic_root", "la")}
    for key in (ED_RATIOS if phase == "ed" else ES_RATIOS):
        lo, hi = RATIO_RANGES[key]
        a, b = key.split("/")
        if lengths[b] <= 0:
            continue
        ratio = lengths[a] / lengths[b]
        if not lo <= ratio <= hi:
            # the frame's own measurements in the ratio: which of the two is wrong is not known
            for m in (a, b):
                if m in (*lv_names, *root_names):
                    report.rejected.setdefault(m, f"{key} = {ratio:.2f} outside {lo}-{hi}")
    return report


def check_ed_es(ed_points: np.ndarray, es_points: np.ndarray, mm_per_px: float) -> dict[str, str]:
    """Problems of the ED and ES sets taken together: measurement -> why (empty when they agree)."""
    ed = np.asarray(ed_points, dtype=np.float64)
    es = np.asarray(es_points, dtype=np.float64)
    problems: dict[str, str] = {}
    lvidd, lvids = _length_mm(ed, "lvidd", mm_per_px), _length_mm(es, "lvidd", mm_per_px)
    if lvidd > 0:
        ratio = lvids / lvidd
        if not SYSTOLIC_RATIO[0] <= ratio <= SYSTOLIC_RATIO[1]:
            problems["lvids"] = f"LVIDs/LVIDd = {ratio:.2f}"
            problems["lvidd"] = f"LVIDs/LVIDd = {ratio:.2f}"
    for name in ("ivsd", "lvpwd"):
        d, s = _length_mm(ed, name, mm_per_px), _length_mm(es, name, mm_per_px)
        if d > 0 and not WALL_THICKENING[0] <= s / d <= WALL_THICKENING[1]:
            problems[name] = f"{name} systolic/diastolic thickness {s / d:.2f}"
    return problems


def consistency_factors(ed_points: np.ndarray, es_points: np.ndarray, mm_per_px: float,
                        image_wh: tuple[int, int] | None = None,
                        ) -> tuple[np.ndarray, np.ndarray, dict[str, float], dict[str, str]]:
    """Repaired ED and ES points, a confidence factor per measurement, and why any is below 1.

    ED measurements (ivsd, lvidd, lvpwd, aortic_root) come from the ED set, ES ones (lvids, la)
    from the ES set; a measurement is rejected when its own frame breaks a rule, or when the ED
    and ES sets disagree about it.
    """
    ed_rep = check_plax_set(ed_points, mm_per_px, "ed", image_wh)
    es_rep = check_plax_set(es_points, mm_per_px, "es", image_wh)
    cross = check_ed_es(ed_rep.points_xy, es_rep.points_xy, mm_per_px)
    factors: dict[str, float] = {}
    why: dict[str, str] = {}
    for name in LINEAR_ENDPOINTS:
        rep = ed_rep if name in ("ivsd", "lvidd", "lvpwd", "aortic_root") else es_rep
        f = rep.factor(name)
        reason = rep.rejected.get(name) or (", ".join(rep.notes) if f < 1 else "")
        if name in cross:
            f = min(f, REJECT_FACTOR)
            reason = cross[name]
        factors[name] = f
        if f < 1:
            why[name] = reason
    return ed_rep.points_xy, es_rep.points_xy, factors, why
