"""Parametric parasternal long-axis (PLAX) heart: curved, smooth, moving through the cycle.

All geometry lives in the *heart frame* (s, t) in cm: ``s`` runs along the LV long axis from
the apex (negative) towards the base (positive); ``t`` is perpendicular to it, away from the
transducer (positive = posterior).  The origin is the centre of the LV cavity on the
measurement line at end-diastole, and the measurement line (IVSd / LVID / LVPWd at the mitral
leaflet tips) is the line ``s = 0``: it is perpendicular to the long axis by construction, and
the four keypoints on it are exactly ``(0, boundary(0))``.  The aortic root and LA live in an
*aortic frame* (a along the root axis, n perpendicular, posterior positive) attached to the LV
base; their measurement line (aortic root at the sinuses, LA antero-posterior) is ``a = a_sin``,
perpendicular to the root axis.

Shape perturbations (smooth Fourier terms) vanish quadratically at the measurement line, so a
drawn IVSd of 1.10 cm renders as exactly 1.10 cm at end-diastole while the walls still bend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# Echo classes: finer than the label classes (pericardium, valves, fibrous walls echo differently).
E_BG, E_LV, E_RV, E_LA, E_AO, E_SEPTUM, E_MYO, E_PERI, E_VALVE, E_FIBROUS, E_DAO, E_DAO_WALL, E_CHORDAE = range(13)
N_ECHO_CLASSES = 13
# echo class -> label class (see types.LABEL_CLASSES)
# chordae are faint strands inside the LV cavity: labelled LV, as a sonographer would trace it
ECHO_TO_LABEL = np.array([0, 1, 2, 3, 4, 5, 6, 0, 6, 6, 0, 0, 1], dtype=np.uint8)


def contraction(phase: np.ndarray | float, systole_fraction: float) -> np.ndarray:
    """Fraction of systolic contraction (0 at end-diastole, 1 at end-systole) over the cycle.

    Phase 0 is end-diastole (QRS).  Smooth ejection up to ``systole_fraction``, rapid filling,
    diastasis, then the atrial kick back to 0.
    """
    ph = np.mod(np.asarray(phase, dtype=np.float64), 1.0)
    sf = systole_fraction
    fill_end = sf + 0.15
    out = np.empty_like(ph)
    a = ph < sf
    out[a] = 0.5 * (1.0 - np.cos(math.pi * ph[a] / sf))
    b = (ph >= sf) & (ph < fill_end)
    out[b] = 1.0 - 0.75 * 0.5 * (1.0 - np.cos(math.pi * (ph[b] - sf) / 0.15))
    c = (ph >= fill_end) & (ph < 0.85)
    out[c] = 0.25 - 0.10 * (ph[c] - fill_end) / (0.85 - fill_end)
    d = ph >= 0.85
    out[d] = 0.15 * 0.5 * (1.0 + np.cos(math.pi * (ph[d] - 0.85) / 0.15))
    return out


def _bump(ph: np.ndarray, start: float, rise: float, end: float, fall: float) -> np.ndarray:
    up = np.clip((ph - start) / rise, 0.0, 1.0)
    down = np.clip((end - ph) / fall, 0.0, 1.0)
    return np.minimum(0.5 - 0.5 * np.cos(math.pi * up), 0.5 - 0.5 * np.cos(math.pi * down))


def mitral_opening(phase: np.ndarray | float, systole_fraction: float) -> np.ndarray:
    """Mitral leaflet opening 0 (closed) .. 1 (wide open): E wave, diastasis, A wave."""
    ph = np.mod(np.asarray(phase, dtype=np.float64), 1.0)
    sf = systole_fraction
    e = _bump(ph, sf + 0.03, 0.06, 0.80, 0.10)
    diastasis_dip = 1.0 - 0.5 * _bump(ph, sf + 0.2, 0.15, 0.86, 0.05)
    a = 0.8 * _bump(ph, 0.84, 0.05, 0.995, 0.08)
    return np.maximum(e * diastasis_dip, a)


def aortic_opening(phase: np.ndarray | float, systole_fraction: float) -> np.ndarray:
    """Aortic cusp opening 0 (closed) .. 1 (open), open during ejection."""
    ph = np.mod(np.asarray(phase, dtype=np.float64), 1.0)
    return _bump(ph, 0.04, 0.04, systole_fraction - 0.01, 0.04)


@dataclass(frozen=True)
class HeartShape:
    """The anatomy of one case (cm; diastolic values unless named otherwise)."""

    ivsd_cm: float
    lvidd_cm: float
    lvpwd_cm: float
    lvids_cm: float
    aortic_root_cm: float  # at the sinuses, end-diastole
    la_es_cm: float  # antero-posterior, end-systole
    rv_cm: float
    rv_wall_cm: float
    ao_wall_cm: float
    la_wall_cm: float
    pericardium_cm: float
    apex_distance_cm: float  # measurement line -> endocardial apex
    base_distance_cm: float  # measurement line -> mitral annulus / aortic annulus
    leaflet_tip_offset_cm: float  # leaflet tips sit this far basal of the measurement line
    sinus_distance_cm: float  # aortic annulus -> sinus measurement line, along the root axis
    aorta_length_cm: float
    la_half_length_cm: float
    ao_angle_deg: float  # root axis vs LV long axis; negative tilts towards the transducer
    lv_curvature_per_cm: float
    septal_thickening: float
    posterior_thickening: float
    septal_share: float  # fraction of the LV diameter change made by septal motion
    base_shift_s_cm: float  # rigid heart motion at end-systole, heart frame
    base_shift_t_cm: float
    descending_aorta_cm: float  # radius; 0 = not shown
    papillary: tuple[float, float, float]  # (centre s, half-length, height) cm; height 0 = not shown
    perturbation: tuple[float, ...]  # 4 boundaries x 2 terms x (amplitude cm, wavelength cm, phase)
    twist_deg: float = 0.0  # in-plane rotation of the whole heart at end-systole
    mitral_annulus_cm: float = 3.0  # aortic-mitral continuity to posterior annulus


@dataclass(frozen=True)
class HeartState:
    """The anatomy at one instant: everything the painter and the keypoints need."""

    phase: float
    contraction: float
    mitral_open: float
    aortic_open: float
    lvid_cm: float
    septum_cm: float
    posterior_cm: float
    rv_cm: float
    la_cm: float
    aortic_root_cm: float
    apex_cm: float
    apex_outer_cm: float
    t_septum_lv: float
    t_lv_pw: float
    shift_s: float
    shift_t: float
    twist_deg: float = 0.0


def heart_state(shape: HeartShape, phase: float, systole_fraction: float) -> HeartState:
    """Evaluate the cycle at ``phase`` (0 = end-diastole)."""
    c = float(contraction(phase, systole_fraction))
    d = shape.lvidd_cm + (shape.lvids_cm - shape.lvidd_cm) * c
    delta = shape.lvidd_cm - d
    s = shape.ivsd_cm * (1.0 + shape.septal_thickening * c)
    p = shape.lvpwd_cm * (1.0 + shape.posterior_thickening * c)
    apex = shape.apex_distance_cm * (1.0 - 0.08 * c)
    return HeartState(
        phase=float(phase),
        contraction=c,
        mitral_open=float(mitral_opening(phase, systole_fraction)),
        aortic_open=float(aortic_opening(phase, systole_fraction)),
        lvid_cm=d,
        septum_cm=s,
        posterior_cm=p,
        rv_cm=shape.rv_cm * (1.0 - 0.12 * c),
        la_cm=shape.la_es_cm * (0.84 + 0.16 * c),
        aortic_root_cm=shape.aortic_root_cm * (1.0 + 0.04 * c),
        apex_cm=apex,
        apex_outer_cm=apex + 0.5 * (s + p),
        t_septum_lv=-shape.lvidd_cm / 2.0 + shape.septal_share * delta,
        t_lv_pw=shape.lvidd_cm / 2.0 - (1.0 - shape.septal_share) * delta,
        shift_s=shape.base_shift_s_cm * c,
        shift_t=shape.base_shift_t_cm * c,
        twist_deg=shape.twist_deg * c,
    )


class HeartGeometry:
    """Boundary curves and the painter for one :class:`HeartState`.

    Methods take heart-frame coordinate arrays and are vectorised (float32 or float64).
    """

    def __init__(self, shape: HeartShape, state: HeartState) -> None:
        self.shape = shape
        self.st = state
        self.drift_cm: tuple[float, float] = (0.0, 0.0)  # breathing: probe-frame shift, set per frame
        sb = shape.base_distance_cm
        self.sb = sb
        psi = math.radians(shape.ao_angle_deg)
        self.u = np.array([math.cos(psi), math.sin(psi)])
        self.n = np.array([-math.sin(psi), math.cos(psi)])
        self.tan_psi = math.tan(psi)
        # aortic root frame, attached to the septum's LV surface at the annulus
        self.r_sinus = state.aortic_root_cm / 2.0
        self.a_sin = shape.sinus_distance_cm
        self.r0 = float(self.root_radius(np.array([0.0]))[0])
        top_base = float(self.septum_lv(np.array([sb]))[0])
        self.A0 = np.array([sb, top_base]) + self.r0 * self.n
        w = shape.ao_wall_cm
        self.la_depth0 = float(self.la_depth(np.array([0.0]))[0])
        self.L_s = np.array([sb, top_base])
        self.L_p = np.array([sb, float(self.lv_pw(np.array([sb]))[0])])
        self.E_p = np.array([sb, float(self.pw_pericardium(np.array([sb]))[0])])
        self.H_a = self.A0 + (self.r0 + 0.5 * w) * self.n
        self.H_p = self.A0 + (self.r0 + w + self.la_depth0) * self.n
        self.H_p2 = self.H_p + (shape.la_wall_cm + 0.05) * self.n

    # ------------------------------------------------------------------ LV / septum / RV curves
    def _pert(self, s: np.ndarray, k: int) -> np.ndarray:
        coeffs = self.shape.perturbation
        w = (s / 1.5) ** 2
        w = w / (1.0 + w)
        out = np.zeros_like(s)
        for j in range(2):
            amp, lam, ph = coeffs[(k * 2 + j) * 3 : (k * 2 + j) * 3 + 3]
            out = out + amp * np.sin(2.0 * math.pi * s / lam + ph)
        return out * w

    def _taper(self, s: np.ndarray, length: float) -> np.ndarray:
        sb = self.sb
        neg = np.sqrt(np.clip(1.0 - (np.minimum(s, 0.0) / length) ** 2, 0.0, 1.0))
        pos = 1.0 - 0.05 * (np.clip(s, 0.0, sb) / sb) ** 2
        return np.where(s < 0.0, neg, pos)

    def _center(self, s: np.ndarray) -> np.ndarray:
        st = self.st
        sc = np.minimum(s, self.sb)
        return 0.5 * (st.t_septum_lv + st.t_lv_pw) + self.shape.lv_curvature_per_cm * sc * sc

    def septum_lv(self, s: np.ndarray) -> np.ndarray:
        """t of the septum / LV blood interface."""
        return self._center(s) - 0.5 * self.st.lvid_cm * self._taper(s, self.st.apex_cm) + self._pert(s, 0)

    def lv_pw(self, s: np.ndarray) -> np.ndarray:
        """t of the LV blood / posterior wall interface."""
        return self._center(s) + 0.5 * self.st.lvid_cm * self._taper(s, self.st.apex_cm) + self._pert(s, 1)

    def rv_septum(self, s: np.ndarray) -> np.ndarray:
        """t of the RV blood / septum interface (continues along the RVOT beyond the base)."""
        sb = self.sb
        sc = np.minimum(s, sb)
        inner = self._center(sc) - (0.5 * self.st.lvid_cm + self.st.septum_cm) * self._taper(sc, self.st.apex_outer_cm)
        inner = inner + self._pert(sc, 2)
        return inner + np.maximum(s - sb, 0.0) * self.tan_psi

    def pw_pericardium(self, s: np.ndarray) -> np.ndarray:
        """t of the posterior wall / pericardium interface (epicardium)."""
        return (
            self._center(s)
            + (0.5 * self.st.lvid_cm + self.st.posterior_cm) * self._taper(s, self.st.apex_outer_cm)
            + self._pert(s, 3)
        )

    def rv_depth(self, s: np.ndarray) -> np.ndarray:
        """RV cavity depth along t (tapers to the RV apex, constant along the RVOT)."""
        length = 0.8 * self.st.apex_outer_cm
        return self.st.rv_cm * np.sqrt(np.clip(1.0 - (np.minimum(s, 0.0) / length) ** 2, 0.0, 1.0))

    # ------------------------------------------------------------------ aortic root / LA
    def root_radius(self, a: np.ndarray) -> np.ndarray:
        """Inner radius of the aortic root: annulus, sinus bulge (max at ``a_sin``), tubular part."""
        return self.r_sinus * (0.86 + 0.14 * np.exp(-(((a - self.a_sin) / 0.75) ** 2)))

    def la_depth(self, a: np.ndarray) -> np.ndarray:
        """LA cavity depth (along n) behind the posterior aortic wall; max ``la_cm`` at ``a_sin``.

        From the mitral annulus (``a = 0``, depth set by the annulus size) the atrium balloons
        smoothly to its full depth at the sinus line, then closes like an ellipse beyond it.
        """
        la = self.st.la_cm
        half = self.shape.la_half_length_cm
        beyond = la * np.sqrt(np.clip(1.0 - ((a - self.a_sin) / half) ** 2, 0.0, 1.0))
        d0 = min(la, max(0.8, self.shape.mitral_annulus_cm - 0.5 * self.shape.ao_wall_cm))
        ramp = d0 + (la - d0) * (0.5 - 0.5 * np.cos(math.pi * np.clip(a / self.a_sin, 0.0, 1.0)))
        return np.where(a < self.a_sin, np.where(a >= 0.0, ramp, 0.0), beyond)

    def to_aortic(self, s: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Heart frame -> aortic frame (a along the root axis, n posterior)."""
        ds, dt = s - self.A0[0], t - self.A0[1]
        return ds * self.u[0] + dt * self.u[1], ds * self.n[0] + dt * self.n[1]

    def from_aortic(self, a: float, n: float) -> np.ndarray:
        """Aortic frame -> heart frame point."""
        return self.A0 + a * self.u + n * self.n

    # ------------------------------------------------------------------ keypoints
    def keypoints(self) -> np.ndarray:
        """(8, 2) heart-frame points in ``catalog.KEYPOINTS_2D`` order."""
        st = self.st
        w = self.shape.ao_wall_cm
        r = self.r_sinus
        a = self.a_sin
        return np.array(
            [
                [0.0, st.t_septum_lv - st.septum_cm],
                [0.0, st.t_septum_lv],
                [0.0, st.t_lv_pw],
                [0.0, st.t_lv_pw + st.posterior_cm],
                self.from_aortic(a, -r),
                self.from_aortic(a, r),
                self.from_aortic(a, r + w),
                self.from_aortic(a, r + w + st.la_cm),
            ]
        )

    # ------------------------------------------------------------------ valves
    def chordae_polylines(self) -> list[np.ndarray]:
        """Faint chordal strands from the mitral leaflet tips to the papillary muscle (heart frame)."""
        pm_s, pm_half, pm_h = self.shape.papillary
        if pm_h <= 0:
            return []
        h = pm_h * (1.0 + 0.35 * self.st.contraction)
        apex_pm = np.array([pm_s, float(self.lv_pw(np.array([pm_s]))[0]) - h])
        leaflets = self.valve_polylines()[:2]
        return [np.stack([ln[-1], apex_pm + np.array([0.1 * k, 0.0])]) for k, ln in enumerate(leaflets)]

    def valve_polylines(self) -> list[np.ndarray]:
        """Mitral leaflets and aortic cusps as heart-frame polylines (each (K, 2))."""
        st, shp = self.st, self.shape
        o = st.mitral_open
        d = st.lvid_cm
        tip_s = shp.leaflet_tip_offset_cm
        closed = self.H_a + 0.55 * (self.H_p - self.H_a) + np.array([-0.35, 0.0])
        ta_open = np.array([tip_s, st.t_septum_lv + 0.2 * d])
        tp_open = np.array([tip_s, st.t_lv_pw - 0.14 * d])
        ta = closed + o * (ta_open - closed)
        tp = closed + np.array([0.0, 0.04]) + o * (tp_open - closed - np.array([0.0, 0.04]))
        lines = [
            _bezier(self.H_a, ta, bulge=0.25 * o + 0.05),
            _bezier(self.H_p, tp, bulge=-0.15 * o - 0.03),
        ]
        oa = st.aortic_open
        a_open = min(1.1, self.a_sin - 0.35)
        r_open = float(self.root_radius(np.array([a_open]))[0]) - 0.12
        for sign in (-1.0, 1.0):
            hinge = self.from_aortic(0.0, sign * self.r0)
            tip_closed = self.from_aortic(0.32, sign * 0.03)
            tip_open = self.from_aortic(a_open, sign * r_open)
            tip = tip_closed + oa * (tip_open - tip_closed)
            lines.append(_bezier(hinge, tip, bulge=sign * 0.08))
        return lines

    # ------------------------------------------------------------------ painter
    def echo_classes(self, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Echo class of every heart-frame point (same shape as ``s``), valves not included.

        Curves that depend on one coordinate only are tabulated on a 0.004 cm grid aligned to
        0 (so the measurement line ``s = 0`` is a grid node and exact) and looked up.
        """
        shp, st = self.shape, self.st
        sb = self.sb
        cls = np.zeros(s.shape, dtype=np.uint8)

        if shp.descending_aorta_cm > 0:
            c = (sb + 0.35, max(self.E_p[1], self.H_p2[1]) + shp.pericardium_cm + 0.25 + shp.descending_aorta_cm)
            rad = shp.descending_aorta_cm + 0.15
            near = _box_index(s, t, c[0] - rad, c[0] + rad, c[1] - rad, c[1] + rad)
            rr = np.hypot(s.ravel()[near] - c[0], t.ravel()[near] - c[1])
            flat = cls.reshape(-1)
            flat[near[rr < rad]] = E_DAO_WALL
            flat[near[rr < shp.descending_aorta_cm]] = E_DAO

        grid, idx = _tabulate(s)
        top = self.septum_lv(grid)[idx]
        bot = self.lv_pw(grid)[idx]
        rvs = self.rv_septum(grid)[idx]
        epi = self.pw_pericardium(grid)[idx]
        rvtop = rvs - self.rv_depth(grid)[idx]
        lv_range = (s >= -st.apex_outer_cm) & (s <= sb)
        rv_range = (s <= sb + 2.8) & (rvs - rvtop > 0.05)

        cls[lv_range & (t >= epi) & (t < epi + shp.pericardium_cm)] = E_PERI
        cls[lv_range & (t >= rvs) & (t < epi)] = E_MYO
        cls[rv_range & (t >= rvtop - shp.rv_wall_cm) & (t < rvs)] = E_MYO
        cls[rv_range & (t >= rvtop) & (t < rvs)] = E_RV
        cls[lv_range & (t >= rvs) & (t < top)] = E_SEPTUM
        cls[lv_range & (t >= top) & (t < bot)] = E_LV
        pm_s, pm_half, pm_h = shp.papillary
        if pm_h > 0:
            # posteromedial papillary muscle: a mound on the posterior wall, apical to the line
            h = pm_h * (1.0 + 0.35 * st.contraction)
            base = float(self.lv_pw(np.array([pm_s]))[0])
            near = _box_index(s, t, pm_s - pm_half, pm_s + pm_half, base - h - 0.1, base + 0.3)
            ss, tt = s.ravel()[near], t.ravel()[near]
            u = (ss - pm_s) / pm_half
            mound = self.lv_pw(ss) - h * np.sqrt(np.clip(1.0 - u * u, 0.0, 1.0))
            flat = cls.reshape(-1)
            flat[near[(tt >= mound) & (flat[near] == E_LV)]] = E_MYO

        # LV outflow / mitral funnel up to the annulus line, posterior annulus tissue below it
        _fill_triangle(cls, s, t, (self.L_s, self.H_p, self.L_p), E_LV)
        _fill_triangle(cls, s, t, (self.L_p, self.H_p, self.E_p), E_MYO)
        _fill_triangle(cls, s, t, (self.H_p, self.H_p2, self.E_p), E_MYO)

        a, n = self.to_aortic(s, t)
        agrid, aidx = _tabulate(a)
        r = self.root_radius(agrid)[aidx]
        lad = self.la_depth(agrid)[aidx]
        w = shp.ao_wall_cm
        along = (a >= -0.1) & (a <= shp.aorta_length_cm)
        absn = np.abs(n)
        cls[along & (absn < r + w)] = E_FIBROUS
        cls[along & (a >= 0.0) & (absn < r)] = E_AO
        la_range = (a >= 0.0) & (lad > 0.0)
        inner = r + w
        outer = inner + lad + shp.la_wall_cm
        cls[la_range & (n >= outer) & (n < outer + shp.pericardium_cm)] = E_PERI
        cls[la_range & (n >= inner) & (n < outer)] = E_MYO  # LA wall: thin muscle
        cls[la_range & (n >= inner) & (n < inner + lad)] = E_LA
        return cls


TABLE_STEP_CM = 0.004


def _tabulate(x: np.ndarray, step: float = TABLE_STEP_CM) -> tuple[np.ndarray, np.ndarray]:
    """A grid (multiples of ``step``, so 0 is a node) covering ``x`` and each value's grid index."""
    lo = math.floor(float(x.min()) / step) * step
    n = int((float(x.max()) - lo) / step) + 2
    grid = lo + np.arange(n, dtype=np.float64) * step
    idx = np.rint((x - np.float32(lo)) * np.float32(1.0 / step)).astype(np.int32)
    np.clip(idx, 0, n - 1, out=idx)
    return grid, idx


def _box_index(s: np.ndarray, t: np.ndarray, s0: float, s1: float, t0: float, t1: float) -> np.ndarray:
    return np.flatnonzero((s >= s0) & (s <= s1) & (t >= t0) & (t <= t1))


def _fill_triangle(cls: np.ndarray, s: np.ndarray, t: np.ndarray, tri, value: int) -> None:
    p = np.asarray(tri)
    near = _box_index(s, t, p[:, 0].min(), p[:, 0].max(), p[:, 1].min(), p[:, 1].max())
    if near.size:
        inside = _in_triangle(s.ravel()[near], t.ravel()[near], p[0], p[1], p[2])
        cls.reshape(-1)[near[inside]] = value


def _bezier(p0: np.ndarray, p2: np.ndarray, bulge: float, k: int = 12) -> np.ndarray:
    """Quadratic Bezier from p0 to p2 whose control point is pushed ``bulge`` cm sideways."""
    d = p2 - p0
    length = float(np.hypot(*d)) or 1.0
    perp = np.array([-d[1], d[0]]) / length
    ctrl = p0 + 0.5 * d + bulge * perp
    t = np.linspace(0.0, 1.0, k)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * ctrl + t**2 * p2


def _in_triangle(s: np.ndarray, t: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray) -> np.ndarray:
    def side(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (s - b[0]) * (a[1] - b[1]) - (a[0] - b[0]) * (t - b[1])

    d1, d2, d3 = side(p1, p2), side(p2, p3), side(p3, p1)
    neg = (d1 < 0) | (d2 < 0) | (d3 < 0)
    pos = (d1 > 0) | (d2 > 0) | (d3 > 0)
    return ~(neg & pos)


def draw_polylines(canvas: np.ndarray, lines_px: list[np.ndarray], value: int, thickness_px: float) -> None:
    """Draw polylines given in (col, row) pixel coordinates of ``canvas`` with sub-pixel precision."""
    pts = [np.round(np.asarray(line) * 16.0).astype(np.int32).reshape(-1, 1, 2) for line in lines_px]
    cv2.polylines(canvas, pts, False, int(value), max(1, int(round(thickness_px))), cv2.LINE_8, shift=4)
