"""Synthetic apical four- and two-chamber cines (A4C, A2C) with CAMUS label maps and volume truth.

One *heart* (:class:`ApicalHeart`) is a 3D left ventricle shaped like a truncated prolate
ellipsoid plus a left atrium shaped like a truncated ellipsoid; the A4C plane cuts the LV
through its septal-lateral short axis, the A2C plane through its anterior-inferior one.  So
the same heart seen in both views gives biplane truth, and its true 3D volumes are known in
closed form (numerically integrated on a fine grid):

* LV cavity, base plane at ``u = 0`` to the endocardial apex at ``u = L``; the cross-section
  at depth ``u`` is an ellipse with semi-axes ``a f(u/L)`` (A4C plane) and ``b f(u/L)`` (A2C
  plane), ``f(x) = sqrt(1 - x^k) (1 - n (1 - x)^4)`` (``k`` sets how blunt the apex is, ``n``
  how much the base narrows towards the mitral annulus).  Volume ``pi a b L int f^2``.
* LA below the base plane: an ellipsoid with semi-axes ``p`` (A4C plane), ``q`` (A2C plane)
  and ``h`` (along the LV axis), centred ``c`` below the annulus, cut by the base plane.

What a clinician would compute is in the truth too: single-plane method of discs (20 discs
perpendicular to the long axis, apex to the mid-annulus) from the 2D contour of each view,
biplane method of discs from both, and LA volume by area-length (``8 A^2 / (3 pi L)``).

Heart frame (cm): ``u`` along the LV long axis from the middle of the mitral annulus towards
the apex, ``v`` across it, positive towards the lateral wall (A4C) or anterior wall (A2C),
drawn on the right of the image as in the ASE display convention.

Label map classes (CAMUS, :data:`APICAL_LABEL_CLASSES`): 0 background (everything that is not
below, including the RV, the right atrium, valves and the pericardium), 1 LV cavity,
2 LV myocardium, 3 left atrium.

Shaped hearts (:class:`ShapedApicalHeart`, used by the style families of
:mod:`echomeasure.synthetic.styles`) bend these walls with smooth per-view, per-side profiles
(:class:`WallShape`): in each view the cavity's half-widths on the two sides become
``a f(x) s_right(x)`` and ``a f(x) s_left(x)``.  The 3D cavity is then, at every depth, an ellipse
of semi-axes ``a f (s_right + s_left) / 2`` and ``b f (...) / 2`` whose centre follows the
(curved) centre line each view cuts through, so every formula above stays exact with those
widths: the sides agree at the base (the mid-annulus stays on the axis) and meet at the apex.
The LA is shaped the same way from its far wall to the annulus; the myocardium follows the
cavity with its own thickness profile.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Literal

import cv2
import numpy as np

from echomeasure.catalog import single_plane_method
from echomeasure.ingest.clip import Region
from echomeasure.synthetic import anatomy as _anatomy
from echomeasure.synthetic import cine
from echomeasure.synthetic.anatomy import contraction, mitral_opening
from echomeasure.synthetic.overlays import draw_ecg, fake_identity
from echomeasure.synthetic.types import SyntheticCine
from echomeasure.synthetic.ultrasound import (
    ScanConverter,
    SectorGeometry,
    SpeckleSettings,
    complex_field,
    electronic_noise,
    envelope,
    log_compress,
    power_from_db,
    smooth_field,
    tissue_interfaces,
)

ApicalView = Literal["a4c", "a2c"]
APICAL_VIEWS: tuple[str, ...] = ("a4c", "a2c")
GENERATOR_VERSION = "1"

#: CAMUS label values of the per-frame label maps.
APICAL_LABEL_CLASSES: dict[int, str] = {0: "background", 1: "lv", 2: "myocardium", 3: "la"}
LABEL_BG, LABEL_LV, LABEL_MYO, LABEL_LA = range(4)

#: Discs of the method of discs (ASE / EchoNet-Dynamic: 20).
N_DISCS = 20

# Echo classes (finer than the labels): what the scanner sees.
E_BG, E_LV, E_MYO, E_LA, E_RV, E_RA, E_WALL, E_PERI, E_VALVE = range(9)
N_ECHO = 9
_ECHO_TO_LABEL = np.array([0, 1, 2, 3, 0, 0, 0, 0, 0], dtype=np.uint8)
#: The studio tissue class (:mod:`echomeasure.synthetic.anatomy`) each apical echo class is made of,
#: for image formations written for those tissues: the RA is another blood pool, the RV free wall
#: and atrial walls another myocardial wall.
TISSUE_OF_ECHO = np.array([_anatomy.E_BG, _anatomy.E_LV, _anatomy.E_MYO, _anatomy.E_LA, _anatomy.E_RV, _anatomy.E_AO,
                           _anatomy.E_SEPTUM, _anatomy.E_PERI, _anatomy.E_VALVE], dtype=np.uint8)
_BLOOD = (E_LV, E_LA, E_RV, E_RA)


# --------------------------------------------------------------------------- anatomy


@dataclass(frozen=True)
class WallShape:
    """A smooth perturbation of one chamber's outline in one view.

    ``common``: (amplitude, frequency rad, phase rad) triples of ``a sin(f x + phase)``, the same on
    both sides; ``odd``: amplitudes of ``sin(j pi x)`` (j = 1, 2, ...), added on the right side and
    subtracted on the left (so the two sides agree at ``x = 0`` and ``x = 1``).  ``x`` runs from
    0 to 1 along the chamber's axis.
    """

    common: tuple[float, ...] = ()
    odd: tuple[float, ...] = ()

    def side_factors(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(right, left) factors on the half-widths at ``x`` (clipped to 0.5-1.8)."""
        xc = np.clip(x, 0.0, 1.0)
        common = np.zeros_like(xc)
        for a, f, ph in zip(self.common[0::3], self.common[1::3], self.common[2::3], strict=True):
            common = common + a * np.sin(f * xc + ph)
        odd = np.zeros_like(xc)
        for j, a in enumerate(self.odd, start=1):
            odd = odd + a * np.sin(j * math.pi * xc)
        return np.clip(1.0 + common + odd, 0.5, 1.8), np.clip(1.0 + common - odd, 0.5, 1.8)

    def mean_factor(self, x: np.ndarray) -> np.ndarray:
        """Mean of the two sides' factors: the factor on the 3D cross-section's semi-axis."""
        right, left = self.side_factors(x)
        return 0.5 * (right + left)


@dataclass(frozen=True)
class ViewShape:
    """The shaping of one view's plane: LV cavity, myocardial thickness, LA."""

    lv: WallShape
    wall: WallShape
    la: WallShape


@dataclass(frozen=True)
class ApicalHeart:
    """The 3D anatomy of one case (cm, end-diastole unless named otherwise)."""

    lv_length_cm: float  # base plane -> endocardial apex
    lv_radius_4c_cm: float  # semi-axis in the A4C plane (septal-lateral) at the base-plane level
    lv_radius_2c_cm: float  # semi-axis in the A2C plane (inferior-anterior)
    apex_exponent: float  # k of f(x) = sqrt(1 - x^k): 2 = ellipsoid, larger = blunter apex
    base_narrowing: float  # n of (1 - n (1 - x)^4)
    wall_cm: float  # myocardial thickness at end-diastole
    apex_wall_cm: float
    ef_percent: float
    long_axis_share: float  # share of the volume change made by long-axis shortening
    wall_thickening: float  # relative systolic thickening
    la_radius_4c_cm: float  # LA semi-axes at end-systole (largest)
    la_radius_2c_cm: float
    la_half_length_cm: float
    la_centre_cm: float  # depth of the LA centre below the base plane (< half-length: cut by the plane)
    la_filling: float  # LA size at end-diastole relative to end-systole
    rv_width_cm: float  # RV cavity half-width (A4C)
    rv_length_frac: float  # RV length / LV length
    ra_radius_cm: float
    pericardium_cm: float
    leaflet_cm: float  # mitral leaflet length

    def view_shape(self, view: str) -> ViewShape | None:
        """The shaping of ``view``'s plane (none: the parametric heart)."""
        return None


@dataclass(frozen=True)
class ShapedApicalHeart(ApicalHeart):
    """An :class:`ApicalHeart` whose walls are bent by smooth profiles, one set per view plane."""

    shape_a4c: ViewShape = ViewShape(WallShape(), WallShape(), WallShape())
    shape_a2c: ViewShape = ViewShape(WallShape(), WallShape(), WallShape())

    def view_shape(self, view: str) -> ViewShape | None:
        return self.shape_a4c if view == "a4c" else self.shape_a2c


def _radial_profile(x: np.ndarray, k: float, narrowing: float) -> np.ndarray:
    """f(x) for x = u / L in [0, 1] (0 outside)."""
    x = np.asarray(x, dtype=np.float64)
    inside = (x >= 0) & (x <= 1)
    xc = np.clip(x, 0.0, 1.0)
    f = np.sqrt(np.clip(1.0 - xc**k, 0.0, None)) * (1.0 - narrowing * (1.0 - xc) ** 4)
    return np.where(inside, f, 0.0)


@dataclass(frozen=True)
class ApicalState:
    """The anatomy at one instant."""

    phase: float
    contraction: float
    mitral_open: float
    lv_length_cm: float
    radius_4c_cm: float
    radius_2c_cm: float
    wall_cm: float
    apex_wall_cm: float
    la_scale: float  # LA semi-axes relative to end-systole


def _systolic_scales(heart: ApicalHeart) -> tuple[float, float]:
    """(radial, long-axis) scale at end-systole giving exactly the EF (volume ~ r^2 L)."""
    keep = 1.0 - heart.ef_percent / 100.0
    s_long = keep ** (heart.long_axis_share)
    s_rad = math.sqrt(keep / s_long)
    return s_rad, s_long


def apical_state(heart: ApicalHeart, phase: float, systole_fraction: float) -> ApicalState:
    """Evaluate the cycle at ``phase`` (0 = end-diastole).

    The cavity volume is interpolated linearly in ``contraction`` between ED and ES, so the
    frame of largest volume is the one of least contraction.
    """
    c = float(contraction(phase, systole_fraction))
    s_rad, s_long = _systolic_scales(heart)
    keep = 1.0 - heart.ef_percent / 100.0
    v_rel = 1.0 - (1.0 - keep) * c  # volume relative to ED
    long = v_rel ** heart.long_axis_share
    rad = math.sqrt(v_rel / long)
    return ApicalState(
        phase=float(phase),
        contraction=c,
        mitral_open=float(mitral_opening(phase, systole_fraction)),
        lv_length_cm=heart.lv_length_cm * long,
        radius_4c_cm=heart.lv_radius_4c_cm * rad,
        radius_2c_cm=heart.lv_radius_2c_cm * rad,
        wall_cm=heart.wall_cm * (1.0 + heart.wall_thickening * c),
        apex_wall_cm=heart.apex_wall_cm * (1.0 + 0.5 * heart.wall_thickening * c),
        la_scale=heart.la_filling + (1.0 - heart.la_filling) * c,
    )


def lv_volume_ml(heart: ApicalHeart, st: ApicalState) -> float:
    """True 3D LV cavity volume (ml = cm^3), integrated on 4000 slices."""
    x = (np.arange(4000) + 0.5) / 4000.0
    f = _radial_profile(x, heart.apex_exponent, heart.base_narrowing)
    s4, s2 = heart.view_shape("a4c"), heart.view_shape("a2c")
    if s4 is not None and s2 is not None:
        f2 = f**2 * s4.lv.mean_factor(x) * s2.lv.mean_factor(x)
        return float(math.pi * st.radius_4c_cm * st.radius_2c_cm * st.lv_length_cm * np.mean(f2))
    return float(math.pi * st.radius_4c_cm * st.radius_2c_cm * st.lv_length_cm * np.mean(f**2))


def la_semi_axes(heart: ApicalHeart, st: ApicalState) -> tuple[float, float, float, float]:
    """(p 4C, q 2C, h along the axis, centre depth c) of the LA at this instant (cm)."""
    s = st.la_scale
    return heart.la_radius_4c_cm * s, heart.la_radius_2c_cm * s, heart.la_half_length_cm * s, heart.la_centre_cm * s


def la_volume_ml(heart: ApicalHeart, st: ApicalState) -> float:
    """True 3D LA volume: the ellipsoid below the base plane (ml)."""
    p, q, h, c = la_semi_axes(heart, st)
    # integral over w = u + c in [-h, min(h, c)] of pi p q (1 - w^2/h^2)
    top = min(h, c)
    s4, s2 = heart.view_shape("a4c"), heart.view_shape("a2c")
    if s4 is not None and s2 is not None:
        t = (np.arange(4000) + 0.5) / 4000.0  # far wall (0) -> annulus (1)
        w = -h + t * (top + h)
        g = (1.0 - (w / h) ** 2) * s4.la.mean_factor(t) * s2.la.mean_factor(t)
        return float(math.pi * p * q * np.mean(g) * (top + h))
    integral = (top + h) - (top**3 + h**3) / (3 * h * h)
    return float(math.pi * p * q * integral)


def disc_diameters_cm(heart: ApicalHeart, st: ApicalState, view: str) -> tuple[np.ndarray, float]:
    """Method-of-discs diameters (20, apex excluded) of one view's LV contour and the long axis (cm).

    The long axis runs from the middle of the mitral annulus to the endocardial apex; disc ``i``
    sits at ``(i + 0.5) L / 20`` and its diameter is the contour's width there.
    """
    radius = st.radius_4c_cm if view == "a4c" else st.radius_2c_cm
    x = (np.arange(N_DISCS) + 0.5) / N_DISCS
    shape = heart.view_shape(view)
    if shape is not None:
        right, left = shape.lv.side_factors(x)
        return radius * _radial_profile(x, heart.apex_exponent, heart.base_narrowing) * (right + left), st.lv_length_cm
    return 2.0 * radius * _radial_profile(x, heart.apex_exponent, heart.base_narrowing), st.lv_length_cm


def mod_single_plane_ml(diameters_cm: np.ndarray, length_cm: float) -> float:
    """Single-plane method of discs: sum of pi (d/2)^2 h over the discs (ml)."""
    h = length_cm / len(diameters_cm)
    return float(np.sum(math.pi * (diameters_cm / 2.0) ** 2) * h)


def mod_biplane_ml(d_4c_cm: np.ndarray, d_2c_cm: np.ndarray, length_4c_cm: float, length_2c_cm: float) -> float:
    """Biplane method of discs: sum of pi d1 d2 / 4 h, h from the longer of the two long axes (ASE)."""
    h = max(length_4c_cm, length_2c_cm) / len(d_4c_cm)
    return float(np.sum(math.pi * d_4c_cm * d_2c_cm / 4.0) * h)


def area_length_ml(area_cm2: float, length_cm: float) -> float:
    """Single-plane area-length volume ``8 A^2 / (3 pi L)`` (ml)."""
    return float(8.0 * area_cm2**2 / (3.0 * math.pi * length_cm)) if length_cm > 0 else 0.0


def la_area_length_cm(heart: ApicalHeart, st: ApicalState, view: str) -> tuple[float, float]:
    """(area cm^2, length cm) of the LA contour of one view: the ellipse part below the annulus.

    Length: from the middle of the annulus (``u = 0``) to the far LA wall along the LV axis.
    """
    p, q, h, c = la_semi_axes(heart, st)
    r = p if view == "a4c" else q
    top = min(h, c)
    shape = heart.view_shape(view)
    if shape is not None:
        t = (np.arange(4000) + 0.5) / 4000.0  # far wall (0) -> annulus (1)
        w = -h + t * (top + h)
        right, left = shape.la.side_factors(t)
        width = r * np.sqrt(np.clip(1.0 - (w / h) ** 2, 0.0, None)) * (right + left)
        return float(np.mean(width) * (top + h)), float(c + h)

    # area of the ellipse part w in [-h, top]: r/h * (integral of 2 sqrt(h^2 - w^2))
    def prim(w: float) -> float:
        return w * math.sqrt(max(h * h - w * w, 0.0)) + h * h * math.asin(max(-1.0, min(1.0, w / h)))

    area = (r / h) * (prim(top) - prim(-h))
    return float(area), float(c + h)


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class ApicalParams(cine.CineTiming):
    """Everything that defines one synthetic apical cine (JSON-able via :func:`dataclasses.asdict`)."""

    view: str  # "a4c" | "a2c"
    heart: ApicalHeart
    heart_rate_bpm: float
    systole_fraction: float
    phase0: float
    n_frames: int
    fps: float
    height_px: int
    width_px: int
    depth_cm: float
    sector_deg: float
    steer_deg: float
    probe_offset_frac: float
    apex_depth_cm: float  # probe face -> epicardial apex along the long axis
    tilt_deg: float  # long axis from the vertical (positive: base to the right)
    lateral_cm: float  # apex offset from the sector's centre line
    frequency_mhz: float
    speckle: SpeckleSettings
    echo_db: tuple[float, ...]
    texture_db: float
    dropout: tuple[tuple[float, float, float, float], ...]
    tint: tuple[float, float, float]
    case_index: int = 0
    seed: int = 0
    noise_seed: int = 0

    def phase_of_frame(self, index: np.ndarray | int) -> np.ndarray:
        """Cardiac phase (0 = end-diastole) at frame ``index``."""
        t_s = np.asarray(index, dtype=np.float64) * self.frame_time_ms / 1000.0
        return np.mod(self.phase0 + t_s * self.heart_rate_bpm / 60.0, 1.0)

    def state(self, index: int) -> ApicalState:
        """The anatomy at frame ``index``."""
        return apical_state(self.heart, float(self.phase_of_frame(index)), self.systole_fraction)

    def cursor_fraction(self, index: int) -> float:
        """How far across the ECG strip the cursor of frame ``index`` stands (its index over the frame count)."""
        return index / max(1, self.n_frames)


def sample_apical_heart(rng: np.random.Generator) -> ApicalHeart:
    """Draw one heart across the clinical range (EDV about 60-250 ml, EF 20-75 %)."""
    u = rng.uniform
    length = u(6.5, 10.0)
    r4 = u(1.9, 3.2)
    return ApicalHeart(
        lv_length_cm=length,
        lv_radius_4c_cm=r4,
        lv_radius_2c_cm=r4 * u(0.85, 1.15),
        apex_exponent=u(1.8, 2.8),
        base_narrowing=u(0.0, 0.15),
        wall_cm=u(0.7, 1.4),
        apex_wall_cm=u(0.5, 0.9),
        ef_percent=u(20.0, 75.0),
        long_axis_share=u(0.2, 0.4),
        wall_thickening=u(0.2, 0.5),
        la_radius_4c_cm=u(1.5, 2.5),
        la_radius_2c_cm=u(1.5, 2.5),
        la_half_length_cm=u(2.0, 3.2),
        la_centre_cm=u(1.4, 2.2),
        la_filling=u(0.78, 0.9),
        rv_width_cm=u(1.2, 2.0),
        rv_length_frac=u(0.6, 0.8),
        ra_radius_cm=u(1.4, 2.2),
        pericardium_cm=u(0.15, 0.35),
        leaflet_cm=u(1.2, 1.9),
    )


def _sample_pose(rng: np.random.Generator, heart: ApicalHeart, view: str, systole_fraction: float,
                 geom: SectorGeometry, apex_depth_cm: float) -> dict[str, float]:
    """The probe pose: the LV and LA of every instant inside the sector (as an operator frames them).

    Each failed draw narrows tilt and offset; the last draw is kept when none fits.
    """
    u = rng.uniform
    for attempt in range(100):
        shrink = max(0.0, 1.0 - attempt / 60.0)
        pose = {"apex_depth_cm": apex_depth_cm, "tilt_deg": u(-12.0, 12.0) * shrink, "lateral_cm": u(-0.8, 0.8) * shrink}
        if _pose_fits(heart, view, systole_fraction, geom, pose):
            break
    return pose


def _sample_echo_db(rng: np.random.Generator) -> tuple[float, ...]:
    """Mean echo level (dB) of every apical echo class."""
    u = rng.uniform
    blood = u(-74.0, -64.0)
    myo = u(-28.0, -19.0)
    echo = [0.0] * N_ECHO
    echo[E_BG] = u(-44.0, -32.0)
    for k in _BLOOD:
        echo[k] = blood + u(-2.0, 2.0)
    echo[E_MYO] = myo
    echo[E_WALL] = myo + u(-3.0, 3.0)
    echo[E_PERI] = u(-6.0, 0.0)
    echo[E_VALVE] = u(-20.0, -10.0)
    return tuple(echo)


def sample_apical_params(
    rng: np.random.Generator,
    view: str = "a4c",
    *,
    heart: ApicalHeart | None = None,
    n_frames: int | None = None,
    fps: float | None = None,
    image_size: tuple[int, int] | None = None,
    case_index: int = 0,
    seed: int = 0,
) -> ApicalParams:
    """Draw one apical case: the heart (unless given), cycle, probe pose, scanner settings.

    Parameters
    ----------
    rng : numpy.random.Generator
        The only source of randomness.
    view : "a4c" | "a2c"
    heart : ApicalHeart, optional
        Image this heart (e.g. the other view of the same case, for biplane truth).
    n_frames, fps, image_size : optional
        Fix the frame count, frame rate or (height, width) instead of drawing them.
    """
    if view not in APICAL_VIEWS:
        raise ValueError(f"view must be one of {APICAL_VIEWS}, got {view!r}")
    u = rng.uniform
    heart = heart if heart is not None else sample_apical_heart(rng)
    cycle = cine.sample_cycle(rng, n_frames, fps, image_size)
    extent = heart.lv_length_cm + heart.apex_wall_cm + heart.la_centre_cm + heart.la_half_length_cm
    apex_depth = u(0.8, 2.2)
    depth = float(np.clip(apex_depth + extent + u(0.8, 3.0), 13.0, 22.0))
    sector = u(70.0, 90.0)
    w = cycle.width_px
    geom = cine.sector_layout(cycle.height_px, w, depth, sector, u(-3.0, 3.0), u(-0.03, 0.03))
    pose = _sample_pose(rng, heart, view, cycle.systole_fraction, geom, apex_depth)
    speckle = cine.sample_speckle_settings(rng, geom, attenuation_db_per_cm=(0.6, 1.6))
    echo = _sample_echo_db(rng)
    dropout, tint = cine.sample_dropout_and_tint(rng, min_depth_frac=0.1)
    return ApicalParams(
        view=view,
        heart=heart,
        phase0=u(0.0, 1.0),
        **dataclasses.asdict(cycle),
        depth_cm=depth,
        sector_deg=geom.sector_deg,
        steer_deg=geom.steer_deg,
        probe_offset_frac=(geom.apex_x_px - w / 2.0) / w,
        apex_depth_cm=pose["apex_depth_cm"],
        tilt_deg=pose["tilt_deg"],
        lateral_cm=pose["lateral_cm"],
        frequency_mhz=u(1.7, 3.6),
        speckle=speckle,
        echo_db=echo,
        texture_db=u(3.0, 6.5),
        dropout=dropout,
        tint=tint,
        case_index=case_index,
        seed=seed,
        noise_seed=int(rng.integers(0, 2**63 - 1)),
    )


def _pose_fits(heart: ApicalHeart, view: str, systole_fraction: float, geom: SectorGeometry, pose: dict) -> bool:
    """True when the LV and LA contours stay 0.3 cm inside the sector at ED and ES."""
    probe: Any = SimpleNamespace(view=view, heart=heart, **pose)  # what the contour functions read of ApicalParams
    for phase in (0.0, systole_fraction):
        st = apical_state(heart, phase, systole_fraction)
        for contour in (lv_contour_uv(probe, st, 24), la_contour_uv(probe, st, 24)):
            if not np.all(geom.contains_cm(heart_to_probe(probe, contour), margin_cm=0.3)):
                return False
    return True


def sector_geometry(params: ApicalParams) -> SectorGeometry:
    """The sector layout of a case (deterministic from the parameters)."""
    p = params
    return cine.sector_layout(p.height_px, p.width_px, p.depth_cm, p.sector_deg, p.steer_deg, p.probe_offset_frac)


# --------------------------------------------------------------------------- geometry


def _axes(params: ApicalParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mid-annulus position, unit vector apex -> base, unit vector towards +v) in the probe frame.

    The base plane stays where the ED base is; the apex moves towards the base in systole as
    the cavity shortens (the echo apex is nearly still in reality; either is fine for truth).
    """
    p, heart = params, params.heart
    th = math.radians(p.tilt_deg)
    down = np.array([math.sin(th), math.cos(th)])
    right = np.array([math.cos(th), -math.sin(th)])
    apex_outer = np.array([p.lateral_cm, p.apex_depth_cm])
    base = apex_outer + (heart.lv_length_cm + heart.apex_wall_cm) * down
    return base, down, right


def probe_to_heart(params: ApicalParams, x_cm: np.ndarray, z_cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probe-frame (X, Z) cm -> heart-frame (u towards the apex, v across) arrays."""
    base, down, right = _axes(params)
    dx = x_cm - np.float32(base[0])
    dz = z_cm - np.float32(base[1])
    uu = -(dx * np.float32(down[0]) + dz * np.float32(down[1]))
    vv = dx * np.float32(right[0]) + dz * np.float32(right[1])
    return uu, vv


def heart_to_probe(params: ApicalParams, uv: np.ndarray) -> np.ndarray:
    """Heart-frame (u, v) points (..., 2) -> probe-frame (X, Z) cm."""
    base, down, right = _axes(params)
    uv = np.asarray(uv, dtype=np.float64)
    return base - uv[..., :1] * down + uv[..., 1:2] * right


def echo_classes(params: ApicalParams, st: ApicalState, uu: np.ndarray, vv: np.ndarray) -> np.ndarray:
    """Echo class of every heart-frame point at one instant (uint8 array of ``uu``'s shape)."""
    heart, view = params.heart, params.view
    k, nb = heart.apex_exponent, heart.base_narrowing
    L = st.lv_length_cm
    r_in = st.radius_4c_cm if view == "a4c" else st.radius_2c_cm
    cls = np.full(uu.shape, E_BG, dtype=np.uint8)
    # pericardium and myocardium: outer contours of the same family
    L_out = L + st.apex_wall_cm
    r_out = r_in + st.wall_cm
    peri_L, peri_r = L_out + heart.pericardium_cm, r_out + heart.pericardium_cm
    in_peri = (uu >= -0.3) & (np.abs(vv) <= peri_r * _radial_profile(uu / peri_L, k, nb * 0.5))
    shape = heart.view_shape(view)
    if shape is None:
        in_myo = (uu >= 0) & (np.abs(vv) <= r_out * _radial_profile(uu / L_out, k, nb * 0.5))
        in_lv = (uu >= 0) & (np.abs(vv) <= r_in * _radial_profile(uu / L, k, nb))
    else:
        in_lv, in_myo = _shaped_lv_masks(shape, uu, vv, (r_in, L), (r_out, L_out), k, nb)
    if view == "a4c":
        # RV on the septal side (screen left), shorter than the LV, with its own free wall
        rv_L = heart.rv_length_frac * L
        rv_c = -(r_out + heart.rv_width_cm)
        rv_prof = _radial_profile(uu / rv_L, 2.2, 0.0)
        in_rv_wall = (uu >= 0) & (np.abs(vv - rv_c) <= (heart.rv_width_cm + 0.35) * _radial_profile(uu / (rv_L + 0.35), 2.2, 0.0))
        in_rv = (uu >= 0) & (np.abs(vv - rv_c) <= heart.rv_width_cm * rv_prof) & (vv < -r_out)
        rv_peri_half_width = (heart.rv_width_cm + 0.35 + heart.pericardium_cm) * _radial_profile(uu / (rv_L + 0.6), 2.2, 0.0)
        in_peri |= (uu >= -0.3) & (np.abs(vv - rv_c) <= rv_peri_half_width)
        cls[in_peri] = E_PERI
        cls[in_rv_wall] = E_WALL
        cls[in_rv] = E_RV
        # right atrium below the RV
        ra = heart.ra_radius_cm * (0.9 + 0.1 * st.la_scale)
        ra_c = (-(ra * 1.05), rv_c - 0.2)
        in_ra_wall = ((uu - ra_c[0]) / (ra + 0.25)) ** 2 + ((vv - ra_c[1]) / (ra + 0.25)) ** 2 <= 1
        in_ra = ((uu - ra_c[0]) / ra) ** 2 + ((vv - ra_c[1]) / ra) ** 2 <= 1
        cls[in_ra_wall & (uu < 0)] = E_WALL
        cls[in_ra & (uu < 0)] = E_RA
    else:
        cls[in_peri] = E_PERI
    cls[in_myo] = E_MYO
    cls[in_lv] = E_LV
    # left atrium (its wall, then its blood), below the annulus
    p_, q_, h_, c_ = la_semi_axes(heart, st)
    r_la = p_ if view == "a4c" else q_
    w = uu + np.float32(c_)
    if shape is None:
        la_wall = (w / (h_ + 0.25)) ** 2 + (vv / (r_la + 0.25)) ** 2 <= 1
        la = (w / h_) ** 2 + (vv / r_la) ** 2 <= 1
    else:
        la, la_wall = _shaped_la_masks(shape.la, w, vv, r_la, h_, min(h_, c_))
    below = uu < 0
    cls[la_wall & below & (cls != E_RA)] = E_WALL
    cls[la & below] = E_LA
    return cls


def _between(vv: np.ndarray, right: np.ndarray, left: np.ndarray) -> np.ndarray:
    """Points whose ``v`` lies between ``-left`` and ``right``."""
    return (vv <= right) & (vv >= -left)


def _shaped_lv_masks(shape: ViewShape, uu: np.ndarray, vv: np.ndarray, inner: tuple[float, float],
                     outer: tuple[float, float], k: float, nb: float) -> tuple[np.ndarray, np.ndarray]:
    """(cavity, myocardium incl. cavity) masks of a shaped LV: ``inner``/``outer`` are (radius, length) cm.

    The myocardium's outline follows the cavity's shape times its own thickness profile and is
    never thinner than 2 mm.
    """
    (r_in, L), (r_out, L_out) = inner, outer
    x_in, x_out = uu / np.float32(L), uu / np.float32(L_out)
    f_in = r_in * _radial_profile(x_in, k, nb)
    right_in, left_in = shape.lv.side_factors(x_in)
    right_in, left_in = f_in * right_in, f_in * left_in
    f_out = r_out * _radial_profile(x_out, k, nb * 0.5)
    s_right, s_left = shape.lv.side_factors(x_out)
    w_right, w_left = shape.wall.side_factors(x_out)
    right_out = np.maximum(f_out * s_right * w_right, (right_in + 0.2) * (right_in > 0))
    left_out = np.maximum(f_out * s_left * w_left, (left_in + 0.2) * (left_in > 0))
    in_lv = (uu >= 0) & _between(vv, right_in, left_in)
    in_myo = (uu >= 0) & _between(vv, right_out, left_out)
    return in_lv, in_myo


def _shaped_la_masks(shape: WallShape, w: np.ndarray, vv: np.ndarray, r: float, h: float,
                     top: float) -> tuple[np.ndarray, np.ndarray]:
    """(blood, wall incl. blood) masks of a shaped LA; ``w`` is the depth from its centre (cm)."""
    t = (w + np.float32(h)) / np.float32(top + h)  # far wall (0) -> annulus (1)
    right, left = shape.side_factors(t)
    half = r * np.sqrt(np.clip(1.0 - (w / np.float32(h)) ** 2, 0.0, None))
    half_wall = (r + 0.25) * np.sqrt(np.clip(1.0 - (w / np.float32(h + 0.25)) ** 2, 0.0, None))
    la = (np.abs(w) <= h) & _between(vv, half * right, half * left)
    la_wall = (np.abs(w) <= h + 0.25) & _between(vv, half_wall * right, half_wall * left)
    return la, la_wall


def lv_contour_uv(params: ApicalParams, st: ApicalState, n: int = 64) -> np.ndarray:
    """Closed LV endocardial contour (heart frame), lateral annulus -> apex -> septal annulus."""
    heart = params.heart
    r_in = st.radius_4c_cm if params.view == "a4c" else st.radius_2c_cm
    x = np.linspace(0.0, 1.0, n)
    f = _radial_profile(x, heart.apex_exponent, heart.base_narrowing)
    shape = heart.view_shape(params.view)
    if shape is not None:
        s_right, s_left = shape.lv.side_factors(x)
        right = np.stack([x * st.lv_length_cm, r_in * f * s_right], axis=1)
        left = np.stack([x[::-1] * st.lv_length_cm, -r_in * (f * s_left)[::-1]], axis=1)
        return np.concatenate([right, left[1:]], axis=0)
    right = np.stack([x * st.lv_length_cm, r_in * f], axis=1)
    left = np.stack([x[::-1] * st.lv_length_cm, -r_in * f[::-1]], axis=1)
    return np.concatenate([right, left[1:]], axis=0)


def la_contour_uv(params: ApicalParams, st: ApicalState, n: int = 64) -> np.ndarray:
    """Closed LA contour (heart frame): the ellipse part below the annulus, closed along it."""
    p_, q_, h_, c_ = la_semi_axes(params.heart, st)
    r = p_ if params.view == "a4c" else q_
    top = min(h_, c_)
    t0 = math.asin(max(-1.0, min(1.0, top / h_)))
    # w = h sin(angle), v = r cos(angle): from the septal end of the annulus chord, down round
    # the far wall (w = -h) and back up to its lateral end
    angles = np.linspace(math.pi - t0, 2 * math.pi + t0, n)
    w = h_ * np.sin(angles)
    v = r * np.cos(angles)
    shape = params.heart.view_shape(params.view)
    if shape is not None:
        s_right, s_left = shape.la.side_factors((w + h_) / (top + h_))
        v = v * np.where(v >= 0, s_right, s_left)
    return np.stack([w - c_, v], axis=1)


def _leaflets_uv(params: ApicalParams, st: ApicalState) -> list[np.ndarray]:
    """The two mitral leaflets (heart frame): hinged at the annulus, towards the apex when open."""
    heart = params.heart
    r_in = st.radius_4c_cm if params.view == "a4c" else st.radius_2c_cm
    hinge = r_in * float(_radial_profile(np.array([0.0]), heart.apex_exponent, heart.base_narrowing)[0])
    shape = heart.view_shape(params.view)
    if shape is not None:
        hinge *= float(shape.lv.side_factors(np.array([0.0]))[0][0])  # both sides agree at the base
    lines = []
    for side in (-1.0, 1.0):
        ang = math.radians(8.0 + 72.0 * st.mitral_open)  # 8 deg: closed (just above the plane)
        L = heart.leaflet_cm * (0.95 if side > 0 else 0.75)
        tip_u = L * math.sin(ang) - 0.15 * (1 - st.mitral_open)
        tip_v = side * (hinge - L * math.cos(ang))
        lines.append(np.array([[0.0, side * hinge], [0.5 * tip_u, 0.5 * (side * hinge + tip_v)], [tip_u, tip_v]]))
    return lines


# --------------------------------------------------------------------------- renderer


class ApicalRenderer:
    """Renders the frames and label maps of one case; per-case work is done once."""

    def __init__(self, params: ApicalParams, rng: np.random.Generator | None = None) -> None:
        self.p = params
        self.explicit_rng = rng
        r = cine.case_rng(params.noise_seed, rng)
        self.geom = sector_geometry(params)
        self.conv = ScanConverter(self.geom)
        g = self.geom
        shape = (g.n_samples, g.n_beams)
        self.static, self.texture = cine.static_speckle_and_texture(r, g)
        self.echo_db = np.asarray(params.echo_db, dtype=np.float32)
        self.tex_gain = np.full(N_ECHO, params.texture_db, dtype=np.float32)
        self.tex_gain[list(_BLOOD)] = r.uniform(3.0, 7.0)
        self.tissue_lut = np.ones(N_ECHO, dtype=bool)
        self.tissue_lut[list(_BLOOD)] = False
        z = self.conv.sample_depth_cm
        self.depth_gain = cine.tgc_depth_gain(r, z, params.depth_cm, params.speckle)
        clutter = 10 ** (r.uniform(-40.0, -24.0) / 10.0) * np.exp(-z / 1.2)
        self.clutter = (clutter[:, None] * np.exp(0.5 * smooth_field(r, shape, (3.0, 6.0)))).astype(np.float32)
        bb, ss = np.meshgrid(np.linspace(0, 1, g.n_beams), np.linspace(0, 1, g.n_samples))
        drop = 10.0 * np.exp(-np.minimum(bb, 1 - bb) / 0.07)
        for bfrac, dfrac, size, loss in params.dropout:
            drop += loss * np.exp(-(((bb - bfrac) / size) ** 2 + ((ss - dfrac) / (1.5 * size)) ** 2))
        self.dropout_db = drop.astype(np.float32)
        self.sparse_db = cine.sparse_scatterers_db(r, shape)
        self.polar_uv = probe_to_heart(params, self.conv.polar_x_cm, self.conv.polar_z_cm)
        self.pixel_uv = probe_to_heart(params, self.conv.inside_x_cm, self.conv.inside_z_cm)
        self.canvas = self._canvas()

    def frame_rng(self, index: int) -> np.random.Generator:
        """Noise source of frame ``index``."""
        return cine.frame_noise_rng(self.p.noise_seed, index, self.explicit_rng)

    @property
    def banner_px(self) -> int:
        """Height of the burned-in banner."""
        return cine.banner_height_px(self.p.height_px)

    @property
    def ecg_box(self) -> tuple[int, int, int, int]:
        """Inclusive pixel box of the ECG strip."""
        return cine.ecg_box(self.geom)

    def regions(self) -> tuple[Region, ...]:
        """2D region (cm, origin at the sector apex) and the ECG region (s)."""
        return cine.sector_regions(self.geom, self.ecg_box, self.p.duration_s)

    def _canvas(self) -> np.ndarray:
        p = self.p
        canvas, _ = cine.scan_canvas(self.geom, fake_identity(p.seed, p.case_index), p.view.upper(), p.frequency_mhz,
                                     p.depth_cm, p.heart_rate_bpm)
        t = cine.ecg_strip_times_s(self.ecg_box, p.duration_s)
        draw_ecg(canvas, self.ecg_box, np.mod(p.phase0 + t * p.heart_rate_bpm / 60.0, 1.0), p.systole_fraction)
        return canvas

    def _polar_classes(self, st: ApicalState) -> np.ndarray:
        cls = echo_classes(self.p, st, *self.polar_uv)
        lines = [self.conv.probe_cm_to_polar_index(heart_to_probe(self.p, ln)) for ln in _leaflets_uv(self.p, st)]
        pts = [np.round(np.asarray(ln) * 16.0).astype(np.int32).reshape(-1, 1, 2) for ln in lines]
        thick = max(1, int(round(0.12 / self.conv.dr_cm)))
        cv2.polylines(cls, pts, False, E_VALVE, thick, cv2.LINE_8, shift=4)
        return cls

    def tissue_classes_polar(self, st: ApicalState) -> np.ndarray:
        """The echo classes on the beam grid as studio tissue classes (:data:`TISSUE_OF_ECHO`)."""
        return TISSUE_OF_ECHO[self._polar_classes(st)]

    def labels(self, st: ApicalState) -> np.ndarray:
        """(H, W) uint8 CAMUS label map of one instant (0 outside the sector)."""
        p = self.p
        cls = echo_classes(p, st, *self.pixel_uv)
        flat = np.zeros(p.height_px * p.width_px, dtype=np.uint8)
        flat[self.conv.inside_index] = _ECHO_TO_LABEL[cls]
        return flat.reshape(p.height_px, p.width_px)

    def sector_image(self, st: ApicalState, index: int) -> np.ndarray:
        """(H, W) uint8 grey B-mode image of one frame."""
        p = self.p
        cls = self._polar_classes(st)
        db = self.echo_db[cls] + self.tex_gain[cls] * self.texture - self.dropout_db
        tissue = self.tissue_lut[cls]
        db += self.sparse_db * tissue
        db += np.float32(3.0) * tissue_interfaces(cls, tissue)
        power = power_from_db(db) + self.clutter
        fresh = complex_field(self.frame_rng(index), power.shape)
        static = (np.where(tissue, self.static[0], fresh[1][::-1]), np.where(tissue, self.static[1], fresh[0][:, ::-1]))
        env = envelope(power, fresh, static, p.speckle) * self.depth_gain
        env = env + electronic_noise(fresh, p.speckle)
        return self.conv.to_image(log_compress(env, p.speckle).astype(np.uint8))

    def frame(self, index: int, st: ApicalState | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB frame: banner, sector, annotations, ECG with cursor."""
        p = self.p
        st = st or p.state(index)
        out = cine.compose_frame(self.canvas, self.sector_image(st, index), p.tint)
        cine.draw_ecg_cursor(out, self.ecg_box, cine.ecg_cursor_x(self.ecg_box, p.cursor_fraction(index)))
        return out


# --------------------------------------------------------------------------- truth


def volume_curves(params: ApicalParams) -> dict[str, np.ndarray]:
    """Per-frame true and clinician-style volumes (ml) and contour sizes (no rendering)."""
    out: dict[str, list[float]] = {k: [] for k in ("lv_true", "lv_mod", "la_true", "la_area_length", "lv_length", "la_area")}
    for i in range(params.n_frames):
        st = params.state(i)
        d, length = disc_diameters_cm(params.heart, st, params.view)
        area, la_len = la_area_length_cm(params.heart, st, params.view)
        out["lv_true"].append(lv_volume_ml(params.heart, st))
        out["lv_mod"].append(mod_single_plane_ml(d, length))
        out["la_true"].append(la_volume_ml(params.heart, st))
        out["la_area_length"].append(area_length_ml(area, la_len))
        out["lv_length"].append(length)
        out["la_area"].append(area)
    return {k: np.asarray(v) for k, v in out.items()}


def apical_ed_es_frames(params: ApicalParams) -> tuple[int, int]:
    """End-diastole (largest true LV volume) and end-systole (smallest) frames of the clip."""
    v = volume_curves(params)["lv_true"]
    return int(np.argmax(v)), int(np.argmin(v))


def _ef(edv: float, esv: float) -> float:
    return 100.0 * (edv - esv) / edv if edv > 0 else 0.0


def biplane_truth(heart: ApicalHeart, st_ed: ApicalState, st_es: ApicalState) -> dict:
    """Biplane method-of-discs EDV/ESV/EF of one heart (both views at the same instants)."""
    vols = []
    for st in (st_ed, st_es):
        d4, l4 = disc_diameters_cm(heart, st, "a4c")
        d2, l2 = disc_diameters_cm(heart, st, "a2c")
        vols.append(mod_biplane_ml(d4, d2, l4, l2))
    return {"lvedv": round(vols[0], 4), "lvesv": round(vols[1], 4), "lvef": round(_ef(*vols), 4), "method": "biplane"}


def apical_truth(params: ApicalParams, ed: int, es: int, geom: SectorGeometry) -> dict:
    """The truth document of an apical cine."""
    curves = volume_curves(params)
    st_ed, st_es = params.state(ed), params.state(es)
    method = single_plane_method(params.view)

    def contour_px(uv: np.ndarray) -> list[list[float]]:
        return [[round(float(x), 3), round(float(y), 3)] for x, y in geom.probe_cm_to_px(heart_to_probe(params, uv))]

    lv_ed, lv_es = float(curves["lv_true"][ed]), float(curves["lv_true"][es])
    mod_ed, mod_es = float(curves["lv_mod"][ed]), float(curves["lv_mod"][es])
    return {
        "kind": "2d",
        "view": params.view,
        "ed_frame": ed,
        "es_frame": es,
        "n_frames": params.n_frames,
        "frame_time_ms": params.frame_time_ms,
        "heart_rate_bpm": round(params.heart_rate_bpm, 3),
        "cm_per_px": geom.cm_per_px,
        "volumes": {
            "true_3d": {"lvedv": round(lv_ed, 4), "lvesv": round(lv_es, 4), "lvef": round(_ef(lv_ed, lv_es), 4),
                        "la_volume": round(float(curves["la_true"][es]), 4)},
            "method_of_discs": {"lvedv": round(mod_ed, 4), "lvesv": round(mod_es, 4), "lvef": round(_ef(mod_ed, mod_es), 4),
                                "method": method},
            "biplane": biplane_truth(params.heart, st_ed, st_es),
            "area_length": {"la_volume": round(float(curves["la_area_length"][es]), 4), "method": method,
                            "la_area_cm2": round(float(curves["la_area"][es]), 4)},
        },
        "measurements": {
            "lvedv": {"value": round(mod_ed, 4), "unit": "ml", "frame": ed, "method": method},
            "lvesv": {"value": round(mod_es, 4), "unit": "ml", "frame": es, "method": method},
            "lvef": {"value": round(_ef(mod_ed, mod_es), 4), "unit": "%", "method": method},
            "la_volume": {"value": round(float(curves["la_area_length"][es]), 4), "unit": "ml", "frame": es,
                          "method": f"area-length {params.view.upper()}"},
        },
        "contours": {
            "ed": {"lv": contour_px(lv_contour_uv(params, st_ed)), "la": contour_px(la_contour_uv(params, st_ed))},
            "es": {"lv": contour_px(lv_contour_uv(params, st_es)), "la": contour_px(la_contour_uv(params, st_es))},
        },
        "frames": [
            {"index": i, "phase": round(float(params.phase_of_frame(i)), 6),
             "lv_volume_ml": round(float(curves["lv_true"][i]), 4), "lv_mod_ml": round(float(curves["lv_mod"][i]), 4),
             "la_volume_ml": round(float(curves["la_true"][i]), 4), "lv_length_cm": round(float(curves["lv_length"][i]), 4)}
            for i in range(params.n_frames)
        ],
        "label_classes": {str(k): v for k, v in APICAL_LABEL_CLASSES.items()},
        "conventions": {
            "ed_frame": "largest true LV cavity volume in the clip",
            "es_frame": "smallest true LV cavity volume in the clip",
            "true_3d": "volumes of the phantom's 3D LV (truncated prolate-ellipsoid-like) and LA (truncated ellipsoid)",
            "method_of_discs": "20 discs perpendicular to the LV long axis (mid-annulus to apex) of this view's contour",
            "area_length": "LA volume 8 A^2 / (3 pi L), L from the mid-annulus to the far LA wall",
            "labels": "CAMUS: 0 background, 1 LV cavity, 2 LV myocardium, 3 left atrium",
        },
        "params": dataclasses.asdict(params),
        "generator": {"name": "echomeasure.synthetic.apical", "version": GENERATOR_VERSION, "seed": params.seed,
                      "case": params.case_index},
    }


def render_apical(
    params: ApicalParams,
    rng: np.random.Generator | None = None,
    frames: int | Sequence[int] | None = None,
    labels: bool = True,
) -> SyntheticCine:
    """Render an apical cine, its CAMUS label maps and its truth.

    ``frames``: None for all, an int for the first that many, or a sequence of frame indices.
    The returned ``keypoints`` array is empty (N, 0, 2): apical views carry contours, not calipers.
    """
    idx = cine.frame_indices(frames, params.n_frames)
    renderer = ApicalRenderer(params, rng)
    imgs, labs = cine.render_frames(idx, (params.height_px, params.width_px), params.state, renderer.frame,
                               renderer.labels if labels else None)
    ed, es = apical_ed_es_frames(params)
    return SyntheticCine(
        frames=imgs,
        frame_time_ms=params.frame_time_ms,
        regions=renderer.regions(),
        keypoints=np.zeros((len(idx), 0, 2), dtype=np.float32),
        labels=labs,
        ed_frame=ed,
        es_frame=es,
        frame_indices=idx,
        truth=apical_truth(params, ed, es, renderer.geom),
        cm_per_px=renderer.geom.cm_per_px,
    )


def sample_apical_case_params(seed: int, index: int, view: str, *, small: bool = False) -> ApicalParams:
    """The parameters of case ``index`` of a run with ``seed`` in one view.

    Both views of the same (seed, index) image the same heart, so their biplane truth agrees;
    the acquisition (probe pose, settings, frame count) is drawn per view.
    """
    from echomeasure.synthetic.studio import SMALL_IMAGE_SIZE, SMALL_N_FRAMES

    heart = sample_apical_heart(np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 7])))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 8 + APICAL_VIEWS.index(view)]))
    kwargs: dict[str, Any] = {"image_size": SMALL_IMAGE_SIZE, "n_frames": SMALL_N_FRAMES} if small else {}
    return sample_apical_params(rng, view, heart=heart, case_index=index, seed=seed, **kwargs)


def render_apical_case(case_seed: int, view: str = "a4c", small: bool = False, labels: bool = False) -> SyntheticCine:
    """Sample and render the apical case of one seed in one view (``small``: 40 frames at 480x640)."""
    return render_apical(sample_apical_case_params(case_seed, 0, view, small=small), labels=labels)
