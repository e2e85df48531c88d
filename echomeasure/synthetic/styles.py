"""Style families of the synthetic studio: independent anatomy and image formation.

A *style family* is a way of turning a case into pixels that a model trained on another family
has never seen.  Each varies what real scanners vary:

``classic``
    The studio's original generator (:mod:`echomeasure.synthetic.plax`, :mod:`.doppler`),
    byte-identical to what it always rendered for a seed.
``scatter``
    Anatomy: the parametric heart with strong spline wall perturbations, wider chamber-axis
    angles and probe rotations, narrow and wide, deep and shallow sectors, then a smooth
    spline warp of the whole scan plane (off-axis cuts, foreshortening, shapes outside the
    parametric model).  Image formation: its own scatterer / point-spread-function simulation
    on the beam grid (per-class scattering strengths, specular interfaces, depth-dependent
    lateral PSF, side lobes, reverberation, acoustic shadowing, harmonic or fundamental look).
    Doppler: wider envelope shapes, stronger spectral noise and broadening, baseline shifts,
    missing ECG.
``vendor``
    Anatomy: another set of spline perturbations and warps, zoomed (shallow) and partial views.
    Image formation: low-detail blocky rendering of the classic echo, posterised colour look-up
    tables (bronze, blue, sepia), low contrast, JPEG artefacts, text and caliper overlays inside
    the sector, reverberation bands, shadows, ECG variants (colour, missing).  Doppler: colour
    maps, inverted display, velocity scales, JPEG, missing ECG.
``rf``
    Anatomy: the classic case of the seed, unchanged (no perturbation, no warp), so a seed's
    ``classic`` and ``rf`` cines differ only in image formation.  Image formation: a pulse-echo
    simulation (:mod:`echomeasure.synthetic.rf`): per-class scatterers and specular interface
    echoes (impedance step x beam-to-normal directivity) on an RF line, a Gaussian pulse of
    1.7-4 MHz (or harmonic), frequency-dependent attenuation, Hilbert envelope, depth-dependent
    focused lateral beam, imperfect TGC, noise floor and 40-70 dB log compression.  Doppler: the
    classic strip.  Not in :data:`DEFAULT_TRAINING_STYLES`: trained on only when named.

Apical A4C / A2C cines (:mod:`echomeasure.synthetic.apical`) in a family: the phantom's walls,
myocardial thickness and LA are bent by smooth per-view, per-side profiles
(:func:`shape_apical_heart`: ``scatter`` strong and low-frequency, ``vendor`` milder and more
wiggly; the same heart in both views), the acquisition is drawn again (``scatter``: 55-100 degree
sectors, deep and shallow, stronger tilts; ``vendor``: zoomed or deep), and the image is formed by
the family's own code shared with PLAX (:func:`family_look`, :class:`ScatterRenderer` on the
phantom's tissues, :func:`family_sector_rgb`, :func:`family_frame`).  No plane warp: the label
maps, contours and volume truth are those of the shaped phantom itself, exactly.  ``rf`` keeps the
classic heart and acquisition and forms the image with :class:`~echomeasure.synthetic.rf.RfRenderer`.

Truth contract: every family keeps the studio's truth (``SyntheticCine.keypoints`` /
``truth``, ``SyntheticDoppler.peaks`` / ``truth``): a warp moves the keypoints with the pixels
(solved to sub-pixel precision), values are recomputed from the moved keypoints, and the
calibration regions stay exact.  Everything is a pure function of the case seed and family.

:data:`HELDOUT_STYLE` is never used for training (leave-one-family-out); :data:`TRAINING_STYLES`
are the others (what a training command may name); :data:`DEFAULT_TRAINING_STYLES` (``classic``,
``vendor``) are what training uses when no family is named, as before ``rf`` existed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence

import cv2
import numpy as np

from echomeasure.errors import InvalidInputError
from echomeasure.synthetic import anatomy
from echomeasure.synthetic.cine import draw_ecg_cursor, ecg_cursor_x, frame_indices, render_frames
from echomeasure.synthetic.overlays import put_text
from echomeasure.synthetic.rf import RfLook, RfRenderer, sample_rf_look
from echomeasure.synthetic.types import SyntheticCine, SyntheticDoppler

#: New families go at the end: a family's position keys its random streams (:func:`style_rng`).
STYLE_FAMILIES: tuple[str, ...] = ("classic", "scatter", "vendor", "rf")
DEFAULT_STYLE = "classic"
#: The family no model is trained on: the held-out style of the accuracy benchmark.
HELDOUT_STYLE = "scatter"
#: Families a training set may be rendered in (all but the held-out one).
TRAINING_STYLES: tuple[str, ...] = tuple(s for s in STYLE_FAMILIES if s != HELDOUT_STYLE)
#: Families of a training set when none are named (the recorded training commands' data).
DEFAULT_TRAINING_STYLES: tuple[str, ...] = ("classic", "vendor")
#: Version of the style code (part of every training-cache key that uses a non-classic family).
STYLES_VERSION = "1"
_FAMILY_CODE = {name: i for i, name in enumerate(STYLE_FAMILIES)}


def check_style(style: str | None) -> str:
    """A known family name (None gives :data:`DEFAULT_STYLE`); anything else is a user error."""
    if style is None:
        return DEFAULT_STYLE
    name = str(style).strip().lower()
    if name not in STYLE_FAMILIES:
        raise InvalidInputError(f"unknown style {style!r}; choose one of {', '.join(STYLE_FAMILIES)}")
    return name


def parse_styles(styles: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"classic,vendor"`` or a sequence -> validated family names (default: classic only)."""
    if styles is None:
        return (DEFAULT_STYLE,)
    items = styles.split(",") if isinstance(styles, str) else list(styles)
    out = tuple(dict.fromkeys(check_style(s) for s in items if str(s).strip()))
    return out or (DEFAULT_STYLE,)


def parse_training_styles(styles: str | Sequence[str] | None, default: Sequence[str] = (DEFAULT_STYLE,)) -> tuple[str, ...]:
    """Families to train on (``"classic,vendor,rf"`` or a sequence; None: ``default``): known names
    only, and never :data:`HELDOUT_STYLE` (a user error either way, one line)."""
    families = tuple(default) if styles is None else parse_styles(styles)
    if HELDOUT_STYLE in families:
        raise InvalidInputError(f"the {HELDOUT_STYLE} family is held out of training; train on "
                                f"{', '.join(TRAINING_STYLES)}")
    return families


def style_rng(seed: int, style: str, purpose: int) -> np.random.Generator:
    """Random source of one family-specific choice of a case (independent of the classic draws)."""
    return np.random.default_rng([int(seed) & (2**63 - 1), 7919, _FAMILY_CODE[style], int(purpose)])


# =========================================================================== PLAX: anatomy


def sample_styled_plax_params(rng: np.random.Generator, style: str = DEFAULT_STYLE, **kwargs):
    """Draw a PLAX case of a family (``classic``: exactly :func:`~.plax.sample_plax_params`).

    The classic draw comes first from ``rng``, so a seed's classic case is unchanged; the
    family's anatomy changes are drawn from a separate stream keyed by the case's noise seed.
    """
    from echomeasure.synthetic.plax import _fits, sample_plax_params, sector_geometry

    style = check_style(style)
    base = sample_plax_params(rng, **kwargs)
    if style == "classic":
        return base
    if style == "rf":
        return _rf_params(base)
    r = style_rng(base.noise_seed, style, 1)
    for attempt in range(80):
        strength = 1.0 if attempt < 40 else 0.5
        p = _restyle_anatomy(base, r, style, strength, fixed_size=kwargs.get("image_size") is not None)
        if _fits(p, sector_geometry(p)):
            return p
    return base


def _restyle_anatomy(base, r: np.random.Generator, style: str, strength: float, fixed_size: bool):
    from echomeasure.synthetic.cine import IMAGE_SIZES

    u = r.uniform
    shp = base.shape
    pert = []
    for _ in range(4 * 2):
        if style == "scatter":
            pert += [u(0.05, 0.3) * strength, u(2.0, 7.0), u(0.0, 2 * math.pi)]
        else:
            pert += [u(0.02, 0.22) * strength, u(4.0, 12.0), u(0.0, 2 * math.pi)]
    shape = dataclasses.replace(
        shp,
        perturbation=tuple(float(x) for x in pert),
        lv_curvature_per_cm=u(-0.03, 0.04) * strength,
        ao_angle_deg=u(-38.0, 0.0) if style == "scatter" else u(-30.0, -2.0),
        rv_cm=u(1.2, 3.6),
        leaflet_tip_offset_cm=u(0.05, 0.4),
        aorta_length_cm=u(3.5, 7.5),
    )
    if style == "scatter":
        sector = u(50.0, 100.0)
        depth = u(10.5, 23.0)
        rotation = u(-24.0, 24.0) * strength
        steer = u(-8.0, 8.0)
    else:
        sector = u(44.0, 80.0)
        depth = u(9.5, 15.0) if r.random() < 0.6 else u(18.0, 24.0)  # zoomed / partial, or deep
        rotation = u(-18.0, 18.0) * strength
        steer = u(-5.0, 5.0)
    needed = base.heart_z_cm + shape.lvidd_cm / 2 + shape.lvpwd_cm + 1.2
    size = (base.height_px, base.width_px)
    if not fixed_size and style == "vendor":
        size = IMAGE_SIZES[int(r.integers(len(IMAGE_SIZES)))]
    return dataclasses.replace(
        base, shape=shape, sector_deg=sector, depth_cm=float(max(depth, needed)), rotation_deg=rotation,
        steer_deg=steer, heart_x_cm=base.heart_x_cm + u(-0.8, 0.8), height_px=size[0], width_px=size[1],
    )


def _rf_params(params):
    """A classic case (PLAX or apical) with the ``rf`` acquisition written into it: the transmit
    frequency and display gain / dynamic range the image shows and the truth records."""
    look = family_look(params.noise_seed, "rf").rf
    assert look is not None
    speckle = dataclasses.replace(params.speckle, gain_db=look.gain_db(), dynamic_range_db=look.dynamic_range_db,
                                  gamma=look.gamma)
    return dataclasses.replace(params, frequency_mhz=look.transmit_mhz, speckle=speckle)


# =========================================================================== PLAX: warp


@dataclasses.dataclass(frozen=True)
class PlaneWarp:
    """A smooth backward map of the scan plane: the output pixel y shows the input at y + D(y).

    ``dx``/``dy`` (H, W) float32 are the displacement fields in pixels (a bicubic spline through
    a coarse grid of random control displacements plus an anisotropic scaling about the heart:
    foreshortening of an off-axis cut).
    """

    dx: np.ndarray
    dy: np.ndarray

    def apply(self, image: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        h, w = image.shape[:2]
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        return cv2.remap(image, xs + self.dx, ys + self.dy, interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def _sample(self, pts: np.ndarray) -> np.ndarray:
        h, w = self.dx.shape
        x = np.clip(pts[..., 0], 0, w - 1.001)
        y = np.clip(pts[..., 1], 0, h - 1.001)
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        fx, fy = x - x0, y - y0
        out = []
        for f in (self.dx, self.dy):
            v = (f[y0, x0] * (1 - fx) * (1 - fy) + f[y0, x0 + 1] * fx * (1 - fy)
                 + f[y0 + 1, x0] * (1 - fx) * fy + f[y0 + 1, x0 + 1] * fx * fy)
            out.append(v)
        return np.stack(out, axis=-1)

    def forward_points(self, pts: np.ndarray) -> np.ndarray:
        """Where input points (..., 2) px appear in the warped image (fixed point of y = p - D(y))."""
        p = np.asarray(pts, dtype=np.float64)
        y = p.copy()
        for _ in range(30):
            y = p - self._sample(y)
        return y


def make_warp(shape_hw: tuple[int, int], centre_xy: np.ndarray, axis_deg: float, cm_per_px: float,
              r: np.random.Generator, amplitude_cm: float, squeeze: tuple[float, float]) -> PlaneWarp:
    """Random smooth warp of an image (see :class:`PlaneWarp`)."""
    h, w = shape_hw
    grid = (4, 5)
    ctrl = r.normal(0.0, amplitude_cm / cm_per_px / 2.0, (2, *grid)).astype(np.float32)
    ctrl = np.clip(ctrl, -amplitude_cm / cm_per_px, amplitude_cm / cm_per_px)
    dx = cv2.resize(ctrl[0], (w, h), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(ctrl[1], (w, h), interpolation=cv2.INTER_CUBIC)
    # anisotropic scaling about the heart: long axis by squeeze[0], across it by squeeze[1]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    th = math.radians(axis_deg)
    c, s = math.cos(th), math.sin(th)
    rx, ry = xs - np.float32(centre_xy[0]), ys - np.float32(centre_xy[1])
    along = rx * c + ry * s
    across = -rx * s + ry * c
    # backward map: output at distance d shows input at d / k  -> displacement d (1/k - 1)
    a_k, c_k = 1.0 / squeeze[0] - 1.0, 1.0 / squeeze[1] - 1.0
    dx += np.float32(a_k) * along * np.float32(c) - np.float32(c_k) * across * np.float32(s)
    dy += np.float32(a_k) * along * np.float32(s) + np.float32(c_k) * across * np.float32(c)
    return PlaneWarp(dx.astype(np.float32), dy.astype(np.float32))


# =========================================================================== PLAX: image formation


@dataclasses.dataclass(frozen=True)
class ScatterLook:
    """Per-case settings of the scatterer / PSF simulation."""

    class_db: tuple[float, ...]  # scattering strength per echo class (dB)
    interface_db: float  # specular echo at impedance steps
    psf_axial: float  # samples
    psf_lateral_focus: float  # beams at the focus
    psf_lateral_far: float  # beams far from the focus
    focus_frac: float
    side_lobe_db: float
    reverb_db: float
    shadow: tuple[float, float, float, float]  # (beam centre frac, width frac, start depth frac, loss dB)
    attenuation_db_per_cm: float
    dynamic_range_db: float
    gain_db: float
    harmonic: bool
    noise_db: float
    persistence: float


def _scatter_look(r: np.random.Generator) -> ScatterLook:
    u = r.uniform
    harmonic = bool(r.random() < 0.5)
    blood = u(-62.0, -48.0) if not harmonic else u(-70.0, -58.0)
    myo = u(-22.0, -12.0)
    cls = [0.0] * anatomy.N_ECHO_CLASSES
    cls[anatomy.E_BG] = u(-42.0, -30.0)
    for k in (anatomy.E_LV, anatomy.E_RV, anatomy.E_LA, anatomy.E_AO, anatomy.E_DAO):
        cls[k] = blood + u(-3.0, 3.0)
    cls[anatomy.E_CHORDAE] = u(-34.0, -24.0)
    cls[anatomy.E_SEPTUM] = myo + u(-3.0, 3.0)
    cls[anatomy.E_MYO] = myo + u(-3.0, 4.0)
    cls[anatomy.E_PERI] = u(-8.0, 2.0)
    cls[anatomy.E_VALVE] = u(-16.0, -6.0)
    cls[anatomy.E_FIBROUS] = u(-20.0, -10.0)
    cls[anatomy.E_DAO_WALL] = u(-14.0, -4.0)
    shadow = (u(0.0, 1.0), u(0.04, 0.18), u(0.1, 0.5), u(6.0, 22.0)) if r.random() < 0.5 else (0.0, 0.0, 1.0, 0.0)
    return ScatterLook(
        class_db=tuple(cls), interface_db=u(-18.0, -6.0), psf_axial=u(0.8, 2.4) * (1.4 if harmonic else 1.0),
        psf_lateral_focus=u(1.0, 2.2), psf_lateral_far=u(2.5, 5.0), focus_frac=u(0.3, 0.7),
        side_lobe_db=u(-34.0, -20.0), reverb_db=u(-30.0, -14.0), shadow=shadow,
        attenuation_db_per_cm=u(0.3, 1.2), dynamic_range_db=u(42.0, 68.0), gain_db=u(-6.0, 6.0),
        harmonic=harmonic, noise_db=u(-62.0, -44.0), persistence=u(0.3, 0.8),
    )


class ScatterRenderer:
    """Scatterer / PSF simulation on the beam grid of a case (the ``scatter`` family).

    ``conv`` is the case's :class:`~.ultrasound.ScanConverter`; :meth:`polar` takes the echo
    classes of :mod:`.anatomy` on its beam grid (other phantoms map theirs onto those tissues).
    """

    def __init__(self, conv, look: ScatterLook, noise_seed: int, chest_wall_cm: float) -> None:
        self.look = look
        self.noise_seed = noise_seed
        g = conv.geometry
        self.shape = (g.n_samples, g.n_beams)
        z = conv.sample_depth_cm
        lk = look
        st = np.random.default_rng([noise_seed, 21])
        self.static = st.standard_normal((2, *self.shape), dtype=np.float32)
        # depth-dependent lateral blur weight (0 at the focus, 1 far from it)
        zf = z / float(g.depth_cm)
        far = np.clip(np.abs(zf - lk.focus_frac) / max(lk.focus_frac, 1 - lk.focus_frac), 0, 1)
        self.far_weight = far[:, None].astype(np.float32)
        atten = -lk.attenuation_db_per_cm * z + 0.5 * lk.attenuation_db_per_cm * z * (z / max(z.max(), 1e-6))
        self.depth_db = atten.astype(np.float32)[:, None]
        bb, ss = np.meshgrid(np.linspace(0, 1, g.n_beams), np.linspace(0, 1, g.n_samples))
        c, wdt, d0, loss = lk.shadow
        shadow = loss * (np.abs(bb - c) < wdt) * np.clip((ss - d0) / 0.05, 0, 1)
        edge = np.minimum(bb, 1 - bb)
        self.loss_db = (shadow + 8.0 * np.exp(-edge / 0.05)).astype(np.float32)
        self.chest_samples = max(2, int(round(chest_wall_cm / conv.dr_cm)))

    def polar(self, cls: np.ndarray, index: int) -> np.ndarray:
        """Grey levels (0-255 float32) on the beam grid of frame ``index`` from its echo classes."""
        lk = self.look
        db = np.asarray(lk.class_db, dtype=np.float32)[cls]
        # specular echo where the class changes along the beam (tissue/blood interfaces)
        step: np.ndarray = np.zeros(cls.shape, dtype=np.float32)
        step[1:] = (cls[1:] != cls[:-1]).astype(np.float32)
        step = cv2.GaussianBlur(step, (0, 0), sigmaX=0.6, sigmaY=0.8)
        power = 10 ** ((db + self.depth_db - self.loss_db) / 10.0) + 10 ** (lk.interface_db / 10.0) * step
        r = np.random.default_rng([self.noise_seed, 22, int(index)])
        fresh = r.standard_normal((2, *self.shape), dtype=np.float32)
        p, q = math.sqrt(lk.persistence), math.sqrt(1 - lk.persistence)
        amp = np.sqrt(power).astype(np.float32)
        re = amp * (p * self.static[0] + q * fresh[0])
        im = amp * (p * self.static[1] + q * fresh[1])
        out = []
        for sx in (lk.psf_lateral_focus, lk.psf_lateral_far):
            a = cv2.GaussianBlur(re, (0, 0), sigmaX=sx, sigmaY=lk.psf_axial, borderType=cv2.BORDER_REFLECT)
            b = cv2.GaussianBlur(im, (0, 0), sigmaX=sx, sigmaY=lk.psf_axial, borderType=cv2.BORDER_REFLECT)
            out.append(cv2.magnitude(a, b) * np.float32(math.sqrt(sx * lk.psf_axial)))
        env = out[0] * (1 - self.far_weight) + out[1] * self.far_weight
        # side lobes: a wide, weak lateral smear of everything bright
        env = env + np.float32(10 ** (lk.side_lobe_db / 20.0)) * cv2.GaussianBlur(env, (0, 0), sigmaX=14.0, sigmaY=0.7)
        # reverberation: the chest-wall echo repeated at multiples of its depth
        k = self.chest_samples
        near = env[: 2 * k].mean(axis=0, keepdims=True)
        rev = np.zeros_like(env)
        for m in (1, 2, 3):
            lo = m * k
            if lo < env.shape[0]:
                rev[lo : lo + max(2, k // 3)] += near * np.float32(10 ** ((lk.reverb_db - 6 * (m - 1)) / 20.0))
        env = env + rev
        noise = np.float32(10 ** (lk.noise_db / 20.0)) * np.abs(fresh[0][::-1])
        env = env + noise
        dbv = 20.0 * np.log10(np.maximum(env, 1e-7)) + lk.gain_db
        ref = float(np.percentile(dbv, 99.5))
        g = np.clip((dbv - ref + lk.dynamic_range_db) / lk.dynamic_range_db, 0.0, 1.0)
        if lk.harmonic:
            g = g**1.5  # cleaner cavities, more contrast
        return (g * 255.0).astype(np.float32)


# =========================================================================== PLAX: vendor look


@dataclasses.dataclass(frozen=True)
class VendorLook:
    """Per-case settings of the low-detail vendor rendering."""

    block: float  # down-sampling factor before nearest-neighbour up-sampling
    levels: int  # posterisation levels
    lut: tuple[tuple[float, float, float], tuple[float, float, float]]  # per channel (gain, gamma)
    contrast: float
    offset: float
    jpeg_quality: int
    overlays: int
    reverb_bands: int
    shadow: tuple[float, float, float]  # (x centre frac, width frac, factor)
    ecg: str  # "normal" | "recolour" | "missing"


def _vendor_look(r: np.random.Generator) -> VendorLook:
    u = r.uniform
    luts = [((1.0, 1.0, 1.0), (1.0, 1.0, 1.0)), ((1.0, 0.85, 0.6), (0.9, 1.0, 1.2)), ((0.75, 0.9, 1.0), (1.15, 1.0, 0.9)),
            ((1.0, 0.92, 0.78), (1.0, 1.05, 1.15)), ((0.85, 1.0, 0.9), (1.0, 0.95, 1.05))]
    lut = luts[int(r.integers(len(luts)))]
    return VendorLook(
        block=u(1.5, 3.5), levels=int(r.integers(12, 48)), lut=lut, contrast=u(0.55, 1.0), offset=u(0.0, 0.12),
        jpeg_quality=int(r.integers(12, 55)), overlays=int(r.integers(0, 6)), reverb_bands=int(r.integers(0, 3)),
        shadow=(u(0.1, 0.9), u(0.03, 0.12), u(0.3, 0.8)) if r.random() < 0.4 else (0.5, 0.0, 1.0),
        ecg=str(r.choice(["normal", "recolour", "missing"], p=[0.5, 0.25, 0.25])),
    )


def _vendor_gray(gray: np.ndarray, mask: np.ndarray, look: VendorLook, r: np.random.Generator,
                 apex_xy: tuple[float, float]) -> np.ndarray:
    h, w = gray.shape
    g: np.ndarray = gray.astype(np.float32) / 255.0
    small = cv2.resize(g, (max(8, int(w / look.block)), max(8, int(h / look.block))), interpolation=cv2.INTER_AREA)
    g = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    g = np.clip((g - 0.5) * look.contrast + 0.5 * look.contrast + look.offset, 0.0, 1.0)
    g = np.round(g * (look.levels - 1)) / (look.levels - 1)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    rr = np.hypot(xs - apex_xy[0], ys - apex_xy[1])
    for k in range(look.reverb_bands):
        r0 = (k + 1) * 0.06 * h
        g = g + 0.18 * np.exp(-((rr - r0) / 3.0) ** 2)
    cx, width, factor = look.shadow
    if width > 0:
        ang = np.arctan2(xs - apex_xy[0], ys - apex_xy[1])
        a0 = (cx - 0.5) * 1.2
        g = g * np.where(np.abs(ang - a0) < width * 1.2, factor, 1.0)
    return (np.clip(g, 0, 1) * 255.0 * mask).astype(np.float32)


def _draw_overlays(rgb: np.ndarray, mask: np.ndarray, n: int, r: np.random.Generator) -> None:
    """Text and caliper-like marks inside the sector (as scanners draw them)."""
    ys, xs = np.nonzero(mask)
    if not len(xs) or n <= 0:
        return
    th = max(8.0, 0.022 * rgb.shape[0])
    for _ in range(n):
        i = int(r.integers(len(xs)))
        x, y = int(xs[i]), int(ys[i])
        kind = int(r.integers(3))
        col = tuple(int(v) for v in r.integers(150, 255, 3))
        if kind == 0:
            put_text(rgb, str(r.choice(["LV", "Ao", "LA", "RV", "2D", "HR", "D"])), (x, y), th, col)
        elif kind == 1:
            cv2.drawMarker(rgb, (x, y), col, cv2.MARKER_CROSS, int(th), 1)
        else:
            ang = r.uniform(0, 2 * math.pi)
            ln = r.uniform(20, 80)
            x2, y2 = int(x + ln * math.cos(ang)), int(y + ln * math.sin(ang))
            for t in np.linspace(0, 1, int(ln / 6) + 1):
                cv2.circle(rgb, (int(x + t * (x2 - x)), int(y + t * (y2 - y))), 1, col, -1)


def _apply_lut(gray: np.ndarray, lut) -> np.ndarray:
    g = np.clip(gray / 255.0, 0, 1)
    gains, gammas = lut
    return np.stack([np.clip(gains[c] * g ** gammas[c], 0, 1) * 255.0 for c in range(3)], axis=-1).astype(np.uint8)


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    return decoded[..., ::-1] if decoded is not None else rgb


# =========================================================================== PLAX: render


# =========================================================================== image formation (PLAX and apical)


@dataclasses.dataclass(frozen=True)
class FamilyLook:
    """The per-case image formation of a family: scatter settings, vendor look, ECG display."""

    style: str
    scatter: ScatterLook | None
    vendor: VendorLook | None
    ecg: str  # "normal" | "recolour" | "missing"
    rf: RfLook | None = None


def family_look(noise_seed: int, style: str) -> FamilyLook:
    """Draw the image formation of a non-classic case from its noise seed."""
    look_rng = style_rng(noise_seed, style, 3)
    if style == "rf":  # the classic display layout: the ECG is always there
        return FamilyLook(style, None, None, "normal", sample_rf_look(look_rng))
    scatter = _scatter_look(look_rng) if style == "scatter" else None
    vendor = _vendor_look(look_rng) if style == "vendor" else None
    ecg = vendor.ecg if vendor is not None else ("missing" if look_rng.random() < 0.3 else "normal")
    return FamilyLook(style, scatter, vendor, ecg)


def family_canvas(canvas: np.ndarray, regions: Sequence, ecg_box: tuple[int, int, int, int],
                  look: FamilyLook) -> tuple[np.ndarray, tuple]:
    """The case's background (banner, annotations, ECG) and regions with the family's ECG display."""
    canvas = canvas.copy()
    regions = tuple(regions)
    ex0, ey0, ex1, ey1 = ecg_box
    if look.ecg == "missing":
        canvas[ey0 : ey1 + 1, ex0 : ex1 + 1] = 0
        regions = regions[:1]
    elif look.ecg == "recolour":
        box = canvas[ey0 : ey1 + 1, ex0 : ex1 + 1]
        canvas[ey0 : ey1 + 1, ex0 : ex1 + 1] = box[..., ::-1]
    return canvas, regions


def family_sector_rgb(gray: np.ndarray, mask: np.ndarray, look: FamilyLook, noise_seed: int, index: int,
                      apex_xy: tuple[float, float]) -> np.ndarray:
    """The grey sector image (float, 0-255) of frame ``index`` in the family's display (vendor grey map, LUT)."""
    if look.vendor is not None:
        fr = np.random.default_rng([noise_seed, 31, index])
        return _apply_lut(_vendor_gray(gray, mask, look.vendor, fr, apex_xy), look.vendor.lut)
    gray8 = np.clip(gray, 0, 255).astype(np.uint8)
    return cv2.merge([gray8, gray8, gray8])


def family_frame(canvas: np.ndarray, sector_rgb: np.ndarray, mask: np.ndarray, look: FamilyLook, noise_seed: int,
                 ecg_box: tuple[int, int, int, int], cursor_x: int) -> np.ndarray:
    """One displayed frame: background + sector, the family's overlays, ECG cursor and compression."""
    out = cv2.add(canvas, sector_rgb)
    if look.vendor is not None:
        _draw_overlays(out, mask, look.vendor.overlays, np.random.default_rng([noise_seed, 32]))
    if look.ecg != "missing":
        draw_ecg_cursor(out, ecg_box, cursor_x)
    if look.vendor is not None:
        out = _jpeg(out, look.vendor.jpeg_quality)
    return out


def _family_frame_of(params, i: int, canvas: np.ndarray, sector_rgb: np.ndarray, mask: np.ndarray, look: FamilyLook,
                     ecg_box: tuple[int, int, int, int]) -> np.ndarray:
    """Frame ``i`` of a case in the family's display, the ECG cursor where the view's generator puts it."""
    cursor_x = ecg_cursor_x(ecg_box, params.cursor_fraction(i))
    return family_frame(canvas, sector_rgb, mask, look, params.noise_seed, ecg_box, cursor_x)


def _styled_sector_rgb(renderer, params, geo, i: int, scatter, warp, look: FamilyLook) -> np.ndarray:
    """The sector image of frame ``i`` in the family's look (scatter texture, warp, vendor grey map)."""
    mask = renderer.conv.sector_mask
    if scatter is not None:
        gray = renderer.conv.to_image(scatter.polar(renderer._classes_polar(geo), i))
    else:
        gray = renderer.sector_image(geo, i).astype(np.float32)
    if warp is not None:
        gray = warp.apply(gray) * mask
    return family_sector_rgb(gray, mask, look, params.noise_seed, i, (renderer.geom.apex_x_px, renderer.geom.apex_y_px))


def _rf_plax_sector_rgb(renderer, rf: RfRenderer, params, geo, i: int, look: FamilyLook) -> np.ndarray:
    """The ``rf`` sector image of PLAX frame ``i``: heart tissue scatterers locked to the heart frame."""
    from echomeasure.synthetic.plax import probe_to_heart

    cls = renderer._classes_polar(geo)
    gray = rf.image(cls, i, lambda x, z: probe_to_heart(params, geo, x, z))
    return family_sector_rgb(gray, renderer.conv.sector_mask, look, params.noise_seed, i,
                             (renderer.geom.apex_x_px, renderer.geom.apex_y_px))


def render_styled_plax(params, style: str = DEFAULT_STYLE, frames: int | Sequence[int] | None = None,
                       labels: bool = False) -> SyntheticCine:
    """Render a PLAX case in a family (``classic``: exactly :func:`~.plax.render_plax`).

    Parameters as :func:`~.plax.render_plax`; ``params`` should come from
    :func:`sample_styled_plax_params` with the same ``style``.  The truth (keypoints, values,
    ED/ES frames) is that of the rendered pixels: warped keypoints and the lengths between them.
    """
    from echomeasure.synthetic.plax import (
        PlaxRenderer,
        frame_geometry,
        linear_values_cm,
        plax_keypoints,
        plax_truth,
        render_plax,
    )

    style = check_style(style)
    if style == "classic":
        return render_plax(params, frames=frames, labels=labels)
    idx = frame_indices(frames, params.n_frames)
    renderer = PlaxRenderer(params)
    g = renderer.geom
    cm = g.cm_per_px
    mask = renderer.conv.sector_mask
    h, w = params.height_px, params.width_px
    kp_all = plax_keypoints(params)
    warp = _case_warp(params, style, kp_all, mask, cm) if style != "rf" else None
    kp_all = warp.forward_points(kp_all) if warp is not None else kp_all
    lvid = linear_values_cm(kp_all, 1.0)["lvidd"]
    ed, es = int(np.argmax(lvid)), int(np.argmin(lvid))
    look = family_look(params.noise_seed, style)
    scatter = (ScatterRenderer(renderer.conv, look.scatter, params.noise_seed, params.chest_wall_cm)
               if look.scatter is not None else None)
    rf = RfRenderer(renderer.conv, look.rf, params.noise_seed, params.chest_wall_cm) if look.rf is not None else None
    canvas, regions = family_canvas(renderer.canvas, renderer.regions(), renderer.ecg_box, look)

    def frame(i: int, geo) -> np.ndarray:
        if rf is not None:
            rgb = _rf_plax_sector_rgb(renderer, rf, params, geo, i, look)
        else:
            rgb = _styled_sector_rgb(renderer, params, geo, i, scatter, warp, look)
        return _family_frame_of(params, i, canvas, rgb, mask, look, renderer.ecg_box)

    def label(geo) -> np.ndarray:
        lab = renderer.labels(geo)
        return warp.apply(lab, cv2.INTER_NEAREST) * mask if warp is not None else lab

    imgs, labs = render_frames(idx, (h, w), lambda i: frame_geometry(params, i), frame, label if labels else None)
    truth = plax_truth(params, kp_all, ed, es, renderer)
    truth["style"] = {"family": style, "styles_version": STYLES_VERSION, "ecg": look.ecg}
    if look.rf is not None:
        truth["style"]["rf"] = look.rf.summary()
    if len(regions) == 1:
        truth["ecg"] = None
    return SyntheticCine(
        frames=imgs, frame_time_ms=params.frame_time_ms, regions=tuple(regions),
        keypoints=kp_all[list(idx)].astype(np.float32), labels=labs, ed_frame=ed, es_frame=es,
        frame_indices=idx, truth=truth, cm_per_px=cm,
    )


def _case_warp(params, style: str, kp_all: np.ndarray, mask: np.ndarray, cm_per_px: float) -> PlaneWarp | None:
    """The family's scan-plane warp of a case, shrunk until every keypoint stays well inside the sector."""
    r = style_rng(params.noise_seed, style, 2)
    if style == "scatter":
        amp, sq = r.uniform(0.1, 0.35), (r.uniform(0.8, 1.0), r.uniform(0.94, 1.08))
    else:
        amp, sq = r.uniform(0.1, 0.45), (r.uniform(0.85, 1.05), r.uniform(0.95, 1.05))
    centre = kp_all[:, :4].reshape(-1, 2).mean(axis=0)
    d = kp_all[0, 5] - kp_all[0, 1]  # LV -> aortic root: roughly along the long axis
    axis_deg = math.degrees(math.atan2(d[1], d[0]))
    h, w = mask.shape
    inner = cv2.erode(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    for shrink in (1.0, 0.6, 0.3):
        k_sq = (1 + (sq[0] - 1) * shrink, 1 + (sq[1] - 1) * shrink)
        warp = make_warp((h, w), centre, axis_deg, cm_per_px, style_rng(params.noise_seed, style, 4),
                         amp * shrink, k_sq)
        moved = warp.forward_points(kp_all)
        xi, yi = np.round(moved[..., 0]).astype(int), np.round(moved[..., 1]).astype(int)
        ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        if ok.all() and inner[yi, xi].all() and _plausible(moved, cm_per_px):
            return warp
    return None


def _plausible(kp: np.ndarray, cm_per_px: float) -> bool:
    from echomeasure.catalog import is_plausible
    from echomeasure.synthetic.plax import linear_values_cm

    vals = linear_values_cm(kp, cm_per_px)
    return all(is_plausible(n, float(v), "cm") for n, arr in vals.items() for v in (arr.min(), arr.max()))


def render_styled_plax_case(case_seed: int, style: str = DEFAULT_STYLE, *, small: bool = False,
                            labels: bool = False, frames=None, image_size=None, n_frames=None) -> SyntheticCine:
    """Sample and render the PLAX case of one seed in a family."""
    from echomeasure.synthetic.studio import SMALL_IMAGE_SIZE, SMALL_N_FRAMES

    rng = np.random.default_rng(case_seed)
    kwargs = {}
    if small:
        kwargs = {"image_size": SMALL_IMAGE_SIZE, "n_frames": SMALL_N_FRAMES}
    if image_size is not None:
        kwargs["image_size"] = image_size
    if n_frames is not None:
        kwargs["n_frames"] = n_frames
    params = sample_styled_plax_params(rng, style, seed=case_seed, **kwargs)
    return render_styled_plax(params, style, frames=frames, labels=labels)


# =========================================================================== apical: anatomy


def _heart_rng(heart, style: str) -> np.random.Generator:
    """Random source of a heart's shaping: the same heart gets the same shape in both views."""
    key = hashlib.sha256(repr(dataclasses.astuple(heart)).encode()).digest()[:8]
    return style_rng(int.from_bytes(key, "little"), style, 20)


def _wall_shape(r: np.random.Generator, common_amp: float, freq: tuple[float, float], odd_amp: float):
    from echomeasure.synthetic.apical import WallShape

    u = r.uniform
    common = tuple(float(v) for _ in range(2) for v in (u(0.3, 1.0) * common_amp, u(*freq), u(0.0, 2 * math.pi)))
    odd = tuple(float(u(-odd_amp, odd_amp) / j) for j in (1, 2, 3))
    return WallShape(common, odd)


def shape_apical_heart(heart, style: str):
    """The family's shaped version of an apical heart (``classic``: the heart itself).

    ``scatter``: strong, low-frequency bends (septal bulges, lateral dilatation, asymmetric
    atria); ``vendor``: milder, more wiggly ones.  Both views get their own profiles.
    """
    from echomeasure.synthetic.apical import ShapedApicalHeart, ViewShape

    style = check_style(style)
    if style in ("classic", "rf"):
        return heart
    r = _heart_rng(heart, style)
    if style == "scatter":
        lv, wall, la, freq = (0.16, 0.14), (0.12, 0.0), (0.15, 0.12), (2.0, 7.0)
    else:
        lv, wall, la, freq = (0.09, 0.07), (0.08, 0.0), (0.1, 0.07), (3.0, 10.0)
    views = [ViewShape(_wall_shape(r, lv[0], freq, lv[1]), _wall_shape(r, wall[0], freq, wall[1]),
                       _wall_shape(r, la[0], freq, la[1])) for _ in range(2)]
    return ShapedApicalHeart(**dataclasses.asdict(heart) | {"shape_a4c": views[0], "shape_a2c": views[1]})


def sample_styled_apical_params(params, style: str = DEFAULT_STYLE):
    """An apical case re-drawn in a family (``classic``: ``params`` unchanged).

    The heart is shaped (:func:`shape_apical_heart`); the acquisition is drawn again from a
    family stream keyed by the case's noise seed: ``scatter`` narrow to wide sectors, deep and
    shallow, stronger tilts and offsets; ``vendor`` zoomed (tight depth) or deep sectors.  Every
    draw keeps the LV and LA of ED and ES inside the sector (:func:`~.apical._pose_fits`); if
    none does, the classic acquisition is kept with the shaped heart, or the classic case.
    """
    from echomeasure.synthetic.apical import _pose_fits, sector_geometry

    style = check_style(style)
    if style == "classic":
        return params
    if style == "rf":
        return _rf_params(params)
    heart = shape_apical_heart(params.heart, style)
    r = style_rng(params.noise_seed, style, 21)
    u = r.uniform
    extent = heart.lv_length_cm + heart.apex_wall_cm + heart.la_centre_cm + heart.la_half_length_cm
    for attempt in range(60):
        shrink = max(0.0, 1.0 - attempt / 40.0)
        if style == "scatter":
            apex_depth, margin, sector = u(0.5, 3.0), u(0.3, 5.0), u(55.0, 100.0)
            steer, tilt, lateral = u(-8.0, 8.0) * shrink, u(-20.0, 20.0) * shrink, u(-1.2, 1.2) * shrink
        else:
            apex_depth, sector = u(0.6, 2.0), u(60.0, 88.0)
            margin = u(0.3, 1.2) if r.random() < 0.6 else u(3.0, 6.0)  # zoomed, or deep
            steer, tilt, lateral = u(-5.0, 5.0) * shrink, u(-15.0, 15.0) * shrink, u(-1.0, 1.0) * shrink
        pose = {"apex_depth_cm": apex_depth, "tilt_deg": tilt, "lateral_cm": lateral}
        candidate = dataclasses.replace(params, heart=heart, depth_cm=float(np.clip(apex_depth + extent + margin, 10.0, 24.0)),
                                        sector_deg=sector, steer_deg=steer, **pose)
        geom = sector_geometry(candidate)
        candidate = dataclasses.replace(candidate, sector_deg=geom.sector_deg, steer_deg=geom.steer_deg)
        if _pose_fits(heart, params.view, params.systole_fraction, geom, pose):
            return candidate
    classic_pose = {"apex_depth_cm": params.apex_depth_cm, "tilt_deg": params.tilt_deg, "lateral_cm": params.lateral_cm}
    if _pose_fits(heart, params.view, params.systole_fraction, sector_geometry(params), classic_pose):
        return dataclasses.replace(params, heart=heart)
    return params


# =========================================================================== apical: render


def render_styled_apical(params, style: str = DEFAULT_STYLE, frames: int | Sequence[int] | None = None,
                         labels: bool = True) -> SyntheticCine:
    """Render an apical case in a family (``classic``: exactly :func:`~.apical.render_apical`).

    ``params`` should come from :func:`sample_styled_apical_params` with the same ``style``.  The
    image formation is the family's (scatter simulation of the phantom's tissues, or the vendor
    display of the classic echo); label maps and truth are those of the (shaped) phantom.
    """
    from echomeasure.synthetic.apical import ApicalRenderer, apical_ed_es_frames, apical_truth, render_apical

    style = check_style(style)
    if style == "classic":
        return render_apical(params, frames=frames, labels=labels)
    idx = frame_indices(frames, params.n_frames)
    renderer = ApicalRenderer(params)
    g = renderer.geom
    mask = renderer.conv.sector_mask
    look = family_look(params.noise_seed, style)
    # the near-field reverberation source: the chest wall above the apex
    scatter = (ScatterRenderer(renderer.conv, look.scatter, params.noise_seed, 0.6 * params.apex_depth_cm)
               if look.scatter is not None else None)
    # rf: a layered chest wall over most of the probe-to-apex distance; the apical heart frame is
    # fixed to the probe, so its tissue scatterers stay put
    rf = (RfRenderer(renderer.conv, look.rf, params.noise_seed, min(2.5, 0.7 * params.apex_depth_cm))
          if look.rf is not None else None)
    canvas, regions = family_canvas(renderer.canvas, renderer.regions(), renderer.ecg_box, look)

    def frame(i: int, st) -> np.ndarray:
        if rf is not None:
            gray = rf.image(renderer.tissue_classes_polar(st), i)
        elif scatter is not None:
            gray = renderer.conv.to_image(scatter.polar(renderer.tissue_classes_polar(st), i))
        else:
            gray = renderer.sector_image(st, i).astype(np.float32)
        rgb = family_sector_rgb(gray, mask, look, params.noise_seed, i, (g.apex_x_px, g.apex_y_px))
        return _family_frame_of(params, i, canvas, rgb, mask, look, renderer.ecg_box)

    imgs, labs = render_frames(idx, (params.height_px, params.width_px), params.state, frame,
                               renderer.labels if labels else None)
    ed, es = apical_ed_es_frames(params)
    truth = apical_truth(params, ed, es, g)
    truth["style"] = {"family": style, "styles_version": STYLES_VERSION, "ecg": look.ecg,
                      "shaped": params.heart.view_shape(params.view) is not None}
    if look.rf is not None:
        truth["style"]["rf"] = look.rf.summary()
    return SyntheticCine(
        frames=imgs, frame_time_ms=params.frame_time_ms, regions=regions,
        keypoints=np.zeros((len(idx), 0, 2), dtype=np.float32), labels=labs, ed_frame=ed, es_frame=es,
        frame_indices=idx, truth=truth, cm_per_px=g.cm_per_px,
    )


def render_styled_apical_case(case_seed: int, view: str = "a4c", style: str = DEFAULT_STYLE, *, small: bool = False,
                              labels: bool = False, frames: int | Sequence[int] | None = None) -> SyntheticCine:
    """Sample and render the apical case of one seed in one view and family (``classic``:
    exactly :func:`~.apical.render_apical_case`)."""
    from echomeasure.synthetic.apical import sample_apical_case_params

    params = sample_styled_apical_params(sample_apical_case_params(case_seed, 0, view, small=small), style)
    return render_styled_apical(params, style, frames=frames, labels=labels)


# =========================================================================== Doppler


def sample_styled_doppler_params(rng: np.random.Generator, style: str = DEFAULT_STYLE, flow: str | None = None, **kwargs):
    """Draw a Doppler case of a family (``classic``: exactly :func:`~.doppler.sample_doppler_params`)."""
    from echomeasure.synthetic.doppler import _nice_scale, sample_doppler_params

    style = check_style(style)
    base = sample_doppler_params(rng, flow, **kwargs)
    if style in ("classic", "rf"):
        return base
    r = style_rng(base.noise_seed, style, 11)
    u = r.uniform
    waves = tuple(
        dataclasses.replace(wv, peak_position=float(np.clip(wv.peak_position + u(-0.08, 0.1), 0.2, 0.6)),
                            sharpness=u(1.8, 5.0) if style == "scatter" else u(2.2, 4.2))
        if wv.channel else wv
        for wv in base.waves
    )
    peak = max(abs(wv.peak_m_s) for wv in waves if wv.channel)
    below = base.flow != "mv"
    baseline = (u(0.05, 0.4) if below else u(0.6, 0.95)) if style == "scatter" else base.baseline_frac
    scale = _nice_scale(peak / u(0.5, 0.9)) if style == "vendor" else base.scale_m_s
    return dataclasses.replace(
        base, waves=waves, baseline_frac=baseline, scale_m_s=scale,
        broadening_m_s=base.broadening_m_s * (u(1.0, 2.5) if style == "scatter" else u(0.8, 1.6)),
        noise_db=u(-44.0, -34.0) if style == "scatter" else base.noise_db,
        dynamic_range_db=u(30.0, 55.0),
        intensity_db=u(-16.0, -4.0),
    )


def render_styled_doppler(params, style: str = DEFAULT_STYLE) -> SyntheticDoppler:
    """Render a Doppler strip in a family (``classic``: exactly :func:`~.doppler.render_doppler`).

    ``vendor``: colour map, blocky time axis, JPEG, sometimes an inverted display (positive
    velocities down; the region's PhysicalDeltaY changes sign, the truth values stay) and no
    ECG; ``scatter``: grainier spectrum, no ECG in some strips; ``rf``: the classic strip (its
    family is a B-mode image formation; only ``truth["style"]`` differs).
    """
    from echomeasure.synthetic.doppler import render_doppler, strip_layout

    style = check_style(style)
    strip = render_doppler(params)
    if style == "classic":
        return strip
    if style == "rf":
        truth = {**strip.truth, "style": {"family": style, "styles_version": STYLES_VERSION, "inverted": False, "ecg": True}}
        return dataclasses.replace(strip, truth=truth)
    r = style_rng(params.noise_seed, style, 12)
    img = strip.image.copy()
    regions = list(strip.regions)
    peaks = {k: list(v) for k, v in strip.peaks.items()}
    lay = strip_layout(params)
    sx0, sy0, sx1, sy1 = lay.spectral_box
    spec_i = next(i for i, reg in enumerate(regions) if reg.spatial_format == 3)
    ecg_i = next((i for i, reg in enumerate(regions) if reg.spatial_format == 4), None)
    spec: np.ndarray = img[sy0 : sy1 + 1, sx0 : sx1 + 1].astype(np.float32)
    if style == "scatter":
        grain: np.ndarray = r.exponential(1.0, spec.shape[:2]).astype(np.float32)
        grain = cv2.GaussianBlur(grain, (0, 0), 1.2)
        spec = spec * (0.7 + 0.3 * grain[..., None])
    else:
        gray = spec.mean(axis=-1)
        small = cv2.resize(gray, (max(8, int(gray.shape[1] / r.uniform(1.2, 2.0))), gray.shape[0]), interpolation=cv2.INTER_AREA)
        gray = cv2.resize(small, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_NEAREST)
        lut = _vendor_look(r).lut
        spec = _apply_lut(gray, lut).astype(np.float32)
    img[sy0 : sy1 + 1, sx0 : sx1 + 1] = np.clip(spec, 0, 255).astype(np.uint8)
    inverted = style == "vendor" and r.random() < 0.4
    if inverted:
        # inverted display: the spectrum is mirrored top to bottom (the baseline moves with it)
        # and PhysicalDeltaY changes sign, so every velocity keeps its value; the printed scale
        # right of the trace would be wrong mirrored, so this display shows none
        reg = regions[spec_i]
        img[sy0 : sy1 + 1, sx0 : lay.trace_x1 + 1] = img[sy0 : sy1 + 1, sx0 : lay.trace_x1 + 1][::-1]
        img[sy0 : sy1 + 1, lay.trace_x1 + 1 : sx1 + 1] = 0
        new_baseline = sy0 + sy1 - lay.baseline_row
        regions[spec_i] = dataclasses.replace(reg, delta_y=-reg.delta_y, ref_y0=int(new_baseline - reg.y0))
        peaks = {k: [(x, float(sy0 + sy1 - y)) for x, y in v] for k, v in peaks.items()}
    drop_ecg = ecg_i is not None and r.random() < 0.35
    if drop_ecg and ecg_i is not None:
        reg = regions[ecg_i]
        img[reg.y0 : reg.y1 + 1, reg.x0 : reg.x1 + 1] = 0
        regions.pop(ecg_i)
    if style == "vendor":
        img = _jpeg(img, int(r.integers(20, 60)))
    truth = dict(strip.truth)
    values = dict(strip.peak_values_m_s)
    if inverted:
        truth["measurements"] = {
            k: ({**m, "peaks": [[round(x, 4), round(y, 4)] for x, y in peaks[k]]} if k in peaks else m)
            for k, m in truth.get("measurements", {}).items()
        }
        truth["baseline_row"] = int(sy0 + sy1 - lay.baseline_row)
        truth["velocity_cm_s_per_px"] = -float(truth["velocity_cm_s_per_px"])
    truth["style"] = {"family": style, "styles_version": STYLES_VERSION, "inverted": inverted, "ecg": not drop_ecg}
    return SyntheticDoppler(image=img, regions=tuple(regions), peaks=peaks, peak_values_m_s=values, flow=strip.flow, truth=truth)


def render_styled_doppler_case(case_seed: int, style: str = DEFAULT_STYLE, *, small: bool = False,
                               flow: str | None = None, image_size=None) -> SyntheticDoppler:
    """Sample and render the Doppler strip of one seed in a family."""
    from echomeasure.synthetic.studio import SMALL_IMAGE_SIZE

    rng = np.random.default_rng(case_seed)
    kwargs = {"image_size": image_size or SMALL_IMAGE_SIZE} if (small or image_size) else {}
    return render_styled_doppler(sample_styled_doppler_params(rng, style, flow, seed=case_seed, **kwargs), style)


__all__ = [
    "DEFAULT_STYLE",
    "DEFAULT_TRAINING_STYLES",
    "HELDOUT_STYLE",
    "STYLE_FAMILIES",
    "TRAINING_STYLES",
    "check_style",
    "parse_styles",
    "parse_training_styles",
    "shape_apical_heart",
    "render_styled_doppler",
    "render_styled_apical",
    "render_styled_apical_case",
    "render_styled_doppler_case",
    "render_styled_plax",
    "render_styled_plax_case",
    "sample_styled_apical_params",
    "sample_styled_doppler_params",
    "sample_styled_plax_params",
]
