"""Synthetic PLAX B-mode cines with exact per-frame truth.

``sample_plax_params(rng)`` draws a case (anatomy across the clinical range, heart rate, probe
pose, scanner settings, image size); ``render_plax(params)`` renders it.  Both are pure
functions of their inputs: the same seed gives the same pixels.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from echomeasure.catalog import CATALOG, KEYPOINTS_2D, LINEAR_ENDPOINTS
from echomeasure.ingest.clip import Region
from echomeasure.synthetic import anatomy, cine
from echomeasure.synthetic.anatomy import HeartGeometry, HeartShape, heart_state
from echomeasure.synthetic.overlays import FakeIdentity, draw_ecg, fake_identity, put_text
from echomeasure.synthetic.types import LABEL_CLASSES, SyntheticCine
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

log = logging.getLogger(__name__)

RANGES_CM: dict[str, tuple[float, float]] = {
    "ivsd": (0.6, 1.8),
    "lvidd": (3.5, 7.0),
    "lvpwd": (0.6, 1.6),
    "aortic_root": (2.4, 4.2),
    "la": (2.5, 5.5),
}
EF_RANGE_PERCENT = (20.0, 75.0)
GENERATOR_VERSION = "5"


@dataclass(frozen=True)
class PlaxParams(cine.CineTiming):
    """Everything that defines one synthetic PLAX cine (JSON-able via :func:`params_to_dict`).

    Anatomy is in ``shape`` (cm).  Probe frame: the heart-frame origin (LV cavity centre on the
    measurement line at end-diastole) sits at (``heart_x_cm``, ``heart_z_cm``) from the sector
    apex, the LV long axis rotated by ``rotation_deg`` (positive: base lower on screen) at
    end-diastole; the heart turns by a further ``shape.twist_deg`` at end-systole.
    """

    shape: HeartShape
    ef_percent: float
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
    rotation_deg: float
    heart_x_cm: float
    heart_z_cm: float
    chest_wall_cm: float
    probe_offset_frac: float  # lateral offset of the sector apex from the image centre (fraction of width)
    frequency_mhz: float
    speckle: SpeckleSettings
    echo_db: tuple[float, ...]  # mean echo level per anatomy echo class (dB re pericardium)
    texture_db: float
    specular_db: float  # extra echo where a beam crosses a tissue interface (angle dependent)
    clutter_db: float
    dropout: tuple[tuple[float, float, float, float], ...]  # (beam frac, depth frac, size frac, loss dB)
    tint: tuple[float, float, float]
    respiration: tuple[float, float, float, float] = (15.0, 0.0, 0.0, 0.0)  # (/min, amplitude cm, phase, direction rad)
    rib_shadow_db: float = 0.0  # 0: no rib/lung shadow
    rib_shadow_side: int = -1  # -1 left edge of the sector, +1 right edge
    rib_shadow_width: float = 0.0  # fraction of the sector's beams
    case_index: int = 0
    seed: int = 0
    noise_seed: int = 0

    @property
    def rr_s(self) -> float:
        """Cardiac cycle length (s)."""
        return 60.0 / self.heart_rate_bpm

    def cursor_fraction(self, index: int) -> float:
        """How far across the ECG strip the cursor of frame ``index`` stands (its time over the clip's)."""
        return index * self.frame_time_ms / 1000.0 / self.duration_s

    def respiratory_drift_cm(self, index: int) -> tuple[float, float]:
        """In-plane shift (X, Z) of the whole heart by breathing at frame ``index`` (cm)."""
        t_s = index * self.frame_time_ms / 1000.0
        a = self.respiration[1] * math.sin(2 * math.pi * t_s * self.respiration[0] / 60.0 + self.respiration[2])
        d = self.respiration[3]
        return a * math.cos(d), a * math.sin(d)

    def phase_of_frame(self, index: np.ndarray | int) -> np.ndarray:
        """Cardiac phase (0 = end-diastole) at frame ``index``."""
        t_s = np.asarray(index, dtype=np.float64) * self.frame_time_ms / 1000.0
        return np.mod(self.phase0 + t_s / self.rr_s, 1.0)


def params_to_dict(params: PlaxParams) -> dict:
    """JSON-ready dict of the parameters (nested dataclasses flattened to dicts)."""
    return dataclasses.asdict(params)


# --------------------------------------------------------------------------- sampling


def teichholz_volume_ml(d_cm: float) -> float:
    """LV volume from a linear diameter (Teichholz): 7 D^3 / (2.4 + D)."""
    return 7.0 * d_cm**3 / (2.4 + d_cm)


def lvids_for_ef(lvidd_cm: float, ef_percent: float) -> float:
    """The end-systolic diameter giving ``ef_percent`` by Teichholz (bisection, exact to 1e-9 cm)."""
    target = teichholz_volume_ml(lvidd_cm) * (1.0 - ef_percent / 100.0)
    lo, hi = 0.1, lvidd_cm
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if teichholz_volume_ml(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _sample_shape(rng: np.random.Generator) -> tuple[HeartShape, float]:
    u = rng.uniform
    ivsd = u(*RANGES_CM["ivsd"])
    lvidd = u(*RANGES_CM["lvidd"])
    lvpwd = u(*RANGES_CM["lvpwd"])
    ef = u(*EF_RANGE_PERCENT)
    lvids = lvids_for_ef(lvidd, ef)
    aor = u(*RANGES_CM["aortic_root"])
    la = u(*RANGES_CM["la"])
    function = ef / 60.0
    pert = []
    for _ in range(4 * 2):
        pert += [u(0.0, 0.12), u(3.0, 9.0), u(0.0, 2 * math.pi)]
    base = u(1.0, 1.8)
    sinus = u(0.9, 1.3) * aor / 3.0
    shape = HeartShape(
        ivsd_cm=ivsd,
        lvidd_cm=lvidd,
        lvpwd_cm=lvpwd,
        lvids_cm=lvids,
        aortic_root_cm=aor,
        la_es_cm=la,
        rv_cm=u(1.6, 3.2),
        rv_wall_cm=u(0.3, 0.5),
        ao_wall_cm=u(0.18, 0.32),
        la_wall_cm=u(0.2, 0.35),
        pericardium_cm=u(0.15, 0.35),
        apex_distance_cm=u(1.05, 1.45) * lvidd + u(0.5, 2.0),
        base_distance_cm=base,
        leaflet_tip_offset_cm=u(0.12, 0.3),
        sinus_distance_cm=sinus,
        aorta_length_cm=u(4.5, 7.0),
        la_half_length_cm=max(sinus + 0.6, la * u(0.55, 0.8)),
        ao_angle_deg=u(-28.0, -6.0),
        lv_curvature_per_cm=u(-0.012, 0.02),
        septal_thickening=u(0.2, 0.5) * function,
        posterior_thickening=u(0.3, 0.6) * function,
        septal_share=u(0.3, 0.5),
        base_shift_s_cm=-u(0.2, 0.7) * function,
        base_shift_t_cm=-u(0.1, 0.45),
        descending_aorta_cm=u(0.6, 1.0) if rng.random() < 0.75 else 0.0,
        papillary=(-u(1.6, 3.0), u(0.7, 1.2), u(0.4, 0.9) if rng.random() < 0.6 else 0.0),
        twist_deg=u(-4.0, 4.0),
        mitral_annulus_cm=u(2.2, 3.4),
        perturbation=tuple(float(x) for x in pert),
    )
    return shape, ef


def _place_heart(rng: np.random.Generator, shape) -> tuple[float, float, float, float]:
    """Chest wall (cm), heart centre depth and lateral offset (cm) and an imaging depth (cm) that holds it."""
    u = rng.uniform
    chest = u(0.8, 2.2)
    heart_z = chest + shape.rv_wall_cm + shape.rv_cm + shape.ivsd_cm + shape.lvidd_cm / 2.0 + u(0.0, 0.6)
    heart_x = u(-1.8, 1.2)
    needed = heart_z + shape.lvidd_cm / 2 + shape.lvpwd_cm + 2.0
    depth = float(np.clip(max(u(12.0, 20.0), needed), 12.0, 20.0))
    return chest, heart_z, heart_x, depth


def _sample_echo_db(rng: np.random.Generator) -> tuple[float, ...]:
    """Mean echo level (dB) of every echo class: blood pools alike, myocardium alike, bright pericardium."""
    u = rng.uniform
    echo = [0.0] * anatomy.N_ECHO_CLASSES
    blood = u(-74.0, -64.0)
    myo = u(-28.0, -20.0)
    echo[anatomy.E_BG] = u(-43.0, -33.0)
    for k in (anatomy.E_LV, anatomy.E_RV, anatomy.E_LA, anatomy.E_AO, anatomy.E_DAO):
        echo[k] = blood + u(-2.0, 2.0)
    echo[anatomy.E_SEPTUM] = myo + u(-2.0, 2.0)
    echo[anatomy.E_MYO] = myo + u(-2.0, 3.0)
    echo[anatomy.E_PERI] = u(-4.0, 0.0)
    echo[anatomy.E_VALVE] = u(-20.0, -12.0)
    echo[anatomy.E_FIBROUS] = u(-27.0, -19.0)
    echo[anatomy.E_DAO_WALL] = u(-16.0, -8.0)
    echo[anatomy.E_CHORDAE] = u(-42.0, -32.0)
    return tuple(echo)


def sample_plax_params(
    rng: np.random.Generator,
    *,
    n_frames: int | None = None,
    fps: float | None = None,
    image_size: tuple[int, int] | None = None,
    case_index: int = 0,
    seed: int = 0,
) -> PlaxParams:
    """Draw one PLAX case: anatomy, cycle, probe pose, scanner settings, image size.

    Parameters
    ----------
    rng : numpy.random.Generator
        The only source of randomness (no global RNG is touched).
    n_frames, fps, image_size : optional
        Fix the frame count, frame rate or (height, width) instead of drawing them.
    case_index, seed : int
        Recorded in the parameters (fake identity, UIDs).

    Returns
    -------
    PlaxParams
        A case whose every keypoint stays inside the sector on every frame.
    """
    u = rng.uniform
    for _attempt in range(200):
        shape, ef = _sample_shape(rng)
        cycle = cine.sample_cycle(rng, n_frames, fps, image_size)
        sector = u(60.0, 90.0)
        steer = u(-4.0, 4.0)
        rotation = u(-15.0, 15.0)
        chest, heart_z, heart_x, depth = _place_heart(rng, shape)
        x_jitter = u(-0.04, 0.04)
        geom = cine.sector_layout(cycle.height_px, cycle.width_px, depth, sector, steer, x_jitter)
        speckle = cine.sample_speckle_settings(rng, geom, attenuation_db_per_cm=(0.6, 1.8))
        echo = _sample_echo_db(rng)
        dropout, tint = cine.sample_dropout_and_tint(rng, min_depth_frac=0.15)
        params = PlaxParams(
            shape=shape,
            ef_percent=ef,
            phase0=u(0.0, 1.0),
            **dataclasses.asdict(cycle),
            depth_cm=depth,
            sector_deg=sector,
            steer_deg=steer,
            rotation_deg=rotation,
            heart_x_cm=heart_x,
            heart_z_cm=heart_z,
            chest_wall_cm=chest,
            probe_offset_frac=x_jitter,
            frequency_mhz=u(1.7, 3.6),
            speckle=speckle,
            echo_db=echo,
            texture_db=u(3.0, 6.5),
            specular_db=u(1.5, 6.0),
            clutter_db=u(-40.0, -22.0),
            dropout=dropout,
            tint=tint,
            respiration=(u(10.0, 20.0), u(0.0, 0.3), u(0.0, 2 * math.pi), u(0.0, 2 * math.pi)),
            rib_shadow_db=u(8.0, 25.0) if rng.random() < 0.3 else 0.0,
            rib_shadow_side=int(rng.choice([-1, 1])),
            rib_shadow_width=u(0.04, 0.15),
            case_index=case_index,
            seed=seed,
            noise_seed=int(rng.integers(0, 2**63 - 1)),
        )
        if _fits(params, geom):
            return params
    raise RuntimeError("could not place a PLAX heart inside the sector after 200 draws")  # programmer error


def sector_geometry(params: PlaxParams) -> SectorGeometry:
    """The sector layout of a case (deterministic from the parameters)."""
    p = params
    return cine.sector_layout(p.height_px, p.width_px, p.depth_cm, p.sector_deg, p.steer_deg, p.probe_offset_frac)


def _fits(params: PlaxParams, geom: SectorGeometry) -> bool:
    phases = np.linspace(0.0, 1.0, 25, endpoint=False)
    for ph in phases:
        geo = HeartGeometry(params.shape, heart_state(params.shape, float(ph), params.systole_fraction))
        kp = heart_to_probe(params, geo, geo.keypoints())
        if not np.all(geom.contains_cm(kp, margin_cm=0.8)):
            return False
        # the base must be in view too, as in a standard PLAX: mitral annulus, the aorta beyond
        # the sinuses and most of the LA
        shp = params.shape
        extra = np.array([
            geo.H_p2,
            geo.E_p + np.array([0.0, shp.pericardium_cm]),
            geo.from_aortic(geo.a_sin + 1.2, 0.0),
            geo.from_aortic(geo.a_sin + 0.5 * shp.la_half_length_cm, geo.r_sinus + shp.ao_wall_cm + 0.5 * geo.st.la_cm),
        ])
        if not np.all(geom.contains_cm(heart_to_probe(params, geo, extra), margin_cm=0.3)):
            return False
    return True


# --------------------------------------------------------------------------- frames


def heart_to_probe(params: PlaxParams, geo: HeartGeometry, pts: np.ndarray) -> np.ndarray:
    """Heart-frame points (..., 2) -> probe-frame (X, Z) cm at the geometry's instant."""
    th = math.radians(params.rotation_deg + geo.st.twist_deg)
    c, s = math.cos(th), math.sin(th)
    p = np.asarray(pts, dtype=np.float64)
    ps = p[..., 0] + geo.st.shift_s
    pt = p[..., 1] + geo.st.shift_t
    ox, oz = params.heart_x_cm + geo.drift_cm[0], params.heart_z_cm + geo.drift_cm[1]
    return np.stack([ox + c * ps - s * pt, oz + s * ps + c * pt], axis=-1)


def probe_to_heart(params: PlaxParams, geo: HeartGeometry, x_cm: np.ndarray, z_cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probe-frame coordinates -> heart-frame (s, t) arrays at the geometry's instant."""
    th = math.radians(params.rotation_deg + geo.st.twist_deg)
    c, s = np.float32(math.cos(th)), np.float32(math.sin(th))
    dx = x_cm - np.float32(params.heart_x_cm + geo.drift_cm[0])
    dz = z_cm - np.float32(params.heart_z_cm + geo.drift_cm[1])
    return c * dx + s * dz - np.float32(geo.st.shift_s), -s * dx + c * dz - np.float32(geo.st.shift_t)


def frame_geometry(params: PlaxParams, index: int) -> HeartGeometry:
    """The heart geometry at frame ``index`` of the clip."""
    ph = float(params.phase_of_frame(index))
    geo = HeartGeometry(params.shape, heart_state(params.shape, ph, params.systole_fraction))
    geo.drift_cm = params.respiratory_drift_cm(index)
    return geo


def plax_keypoints(params: PlaxParams, frames: Sequence[int] | None = None) -> np.ndarray:
    """Truth keypoints (N, 8, 2) float64 in image pixels, ``KEYPOINTS_2D`` order; cheap (no rendering)."""
    idx = range(params.n_frames) if frames is None else frames
    geom = sector_geometry(params)
    out = [geom.probe_cm_to_px(heart_to_probe(params, g, g.keypoints())) for g in (frame_geometry(params, i) for i in idx)]
    return np.asarray(out, dtype=np.float64).reshape(-1, len(KEYPOINTS_2D), 2)


def linear_values_cm(keypoints_px: np.ndarray, cm_per_px: float) -> dict[str, np.ndarray]:
    """Per-frame length (cm) of every linear measurement from (N, 8, 2) pixel keypoints."""
    idx = {k: i for i, k in enumerate(KEYPOINTS_2D)}
    out = {}
    for name, (a, b) in LINEAR_ENDPOINTS.items():
        d = keypoints_px[:, idx[b]] - keypoints_px[:, idx[a]]
        out[name] = np.hypot(d[:, 0], d[:, 1]) * cm_per_px
    return out


def ed_es_frames(params: PlaxParams) -> tuple[int, int]:
    """End-diastolic and end-systolic frames: largest and smallest LV internal diameter."""
    kp = plax_keypoints(params)
    lvid = linear_values_cm(kp, 1.0)["lvidd"]
    return int(np.argmax(lvid)), int(np.argmin(lvid))


# --------------------------------------------------------------------------- renderer


class PlaxRenderer:
    """Renders the frames of one case; the per-case work (maps, static fields, canvas) is done once."""

    def __init__(self, params: PlaxParams, rng: np.random.Generator | None = None) -> None:
        self.p = params
        self.explicit_rng = rng
        self.rng = cine.case_rng(params.noise_seed, rng)
        self.geom = sector_geometry(params)
        self.conv = ScanConverter(self.geom)
        g = self.geom
        shape = (g.n_samples, g.n_beams)
        r = self.rng
        self.static, self.texture = cine.static_speckle_and_texture(r, g)
        echo_db = np.asarray(params.echo_db, dtype=np.float32)
        tex_gain = np.full(anatomy.N_ECHO_CLASSES, params.texture_db, dtype=np.float32)
        # blood: smooth haze (slow flow, side lobes), stronger in some cases than others
        tex_gain[[anatomy.E_LV, anatomy.E_RV, anatomy.E_LA, anatomy.E_AO, anatomy.E_DAO]] = r.uniform(3.0, 7.0)
        self.echo_db = echo_db
        blood = [anatomy.E_LV, anatomy.E_RV, anatomy.E_LA, anatomy.E_AO, anatomy.E_DAO, anatomy.E_CHORDAE]
        self.tissue_lut = np.ones(anatomy.N_ECHO_CLASSES, dtype=bool)
        self.tissue_lut[blood] = False
        self.tex_gain = tex_gain
        z = self.conv.sample_depth_cm
        self.depth_gain = cine.tgc_depth_gain(r, z, params.depth_cm, params.speckle)
        # near field: haze and reverberation over the first centimetres, static with slow change
        ribs = 1.0 + 0.8 * np.cos(2 * math.pi * z / max(params.chest_wall_cm, 0.5)) ** 8
        clutter = 10 ** (params.clutter_db / 10.0) * np.exp(-z / 1.4) * ribs
        self.clutter = (clutter[:, None] * np.exp(0.5 * smooth_field(r, shape, (3.0, 6.0)))).astype(np.float32)
        chest = z < params.chest_wall_cm
        layers = np.cos(2 * math.pi * z * r.uniform(1.2, 2.5)) > 0.6
        self.chest_db = (np.where(chest, 9.0, 0.0) + np.where(chest & layers, 6.0, 0.0)).astype(np.float32)[:, None]
        drop = np.zeros(shape, dtype=np.float32)
        bb, ss = np.meshgrid(np.linspace(0, 1, g.n_beams), np.linspace(0, 1, g.n_samples))
        for bfrac, dfrac, size, loss in params.dropout:
            drop += loss * np.exp(-(((bb - bfrac) / size) ** 2 + ((ss - dfrac) / (1.5 * size)) ** 2))
        edge = np.minimum(bb, 1 - bb)
        drop += 10.0 * np.exp(-edge / 0.07)  # weaker edge beams
        if params.rib_shadow_db > 0:
            # a rib or lung edge shadows a few beams at one side of the sector below the chest wall
            side = bb if params.rib_shadow_side < 0 else 1 - bb
            below = np.clip((ss * params.depth_cm - params.chest_wall_cm * 0.6) / 0.5, 0.0, 1.0)
            drop += params.rib_shadow_db * below * (side < params.rib_shadow_width)
        self.dropout_db = drop
        self.sparse_db = cine.sparse_scatterers_db(r, shape)
        self._init_tissue_scatterers()
        self.ecg_box = cine.ecg_box(self.geom)
        self.canvas = self._canvas()

    def _init_tissue_scatterers(self) -> None:
        """A scatterer field fixed to the heart, so myocardial speckle moves with the heart.

        It lives on a grid in heart-frame coordinates (a little finer than the polar samples,
        band-limited so that resampling it does not modulate its variance) and is looked up at
        the heart-frame position of every polar sample on every frame.
        """
        p, r = self.p, self.rng
        geo = frame_geometry(p, 0)
        s, t = probe_to_heart(p, geo, self.conv.polar_x_cm, self.conv.polar_z_cm)
        margin = 2.0
        step = 0.6 * self.conv.dr_cm
        shp = p.shape
        # only the heart needs it (elsewhere the lookup reflects at the border, still noise)
        lo_s = max(float(s.min()), -(shp.apex_distance_cm + shp.ivsd_cm + shp.lvpwd_cm)) - margin
        hi_s = min(float(s.max()), shp.base_distance_cm + shp.aorta_length_cm) + margin
        lo_t = max(float(t.min()), -(shp.lvidd_cm / 2 + shp.ivsd_cm + shp.rv_cm + shp.rv_wall_cm + 4.0)) - margin
        hi_t = min(float(t.max()), shp.lvidd_cm / 2 + shp.lvpwd_cm + shp.la_es_cm + 3.0) + margin
        while ((hi_s - lo_s) / step) * ((hi_t - lo_t) / step) > 3.0e6:
            step *= 1.25
        nx, ny = int((hi_s - lo_s) / step) + 2, int((hi_t - lo_t) / step) + 2
        tex: np.ndarray = r.standard_normal((ny, nx, 2), dtype=np.float32)
        tex = cv2.GaussianBlur(tex, (0, 0), sigmaX=1.0, sigmaY=1.0)
        tex = tex / np.float32(tex.std() or 1.0)
        self.tissue_tex = tex
        self.tex_origin = (lo_s, lo_t)
        self.tex_step = step
        heart_tissue = [anatomy.E_SEPTUM, anatomy.E_MYO, anatomy.E_PERI, anatomy.E_VALVE, anatomy.E_FIBROUS, anatomy.E_DAO_WALL]
        self.heart_tissue_lut = np.zeros(anatomy.N_ECHO_CLASSES, dtype=bool)
        self.heart_tissue_lut[heart_tissue] = True

    def _scatterers(self, cls: np.ndarray, s: np.ndarray, t: np.ndarray, fresh: tuple[np.ndarray, np.ndarray]):
        """Persistent part of the scatterers: heart-locked in heart tissue, fresh in blood, fixed elsewhere."""
        inv = np.float32(1.0 / self.tex_step)
        ms = (s - np.float32(self.tex_origin[0])) * inv
        mt = (t - np.float32(self.tex_origin[1])) * inv
        tex = cv2.remap(self.tissue_tex, ms, mt, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        heart = self.heart_tissue_lut[cls]
        blood = ~self.tissue_lut[cls]
        re = np.where(heart, tex[..., 0], np.where(blood, fresh[1][::-1], self.static[0]))
        im = np.where(heart, tex[..., 1], np.where(blood, fresh[0][:, ::-1], self.static[1]))
        return re, im

    # ----------------------------------------------------------------- layout and overlays
    @property
    def banner_px(self) -> int:
        """Height of the burned-in patient banner (rows above every region)."""
        return cine.banner_height_px(self.p.height_px)

    def regions(self) -> tuple[Region, ...]:
        """2D region (cm, origin at the sector apex) and the ECG region (s)."""
        return cine.sector_regions(self.geom, self.ecg_box, self.p.duration_s)

    def identity(self) -> FakeIdentity:
        """The fake identity burned into the banner (from the run seed and case index)."""
        return fake_identity(self.p.seed, self.p.case_index)

    def _canvas(self) -> np.ndarray:
        p, g = self.p, self.geom
        canvas, th = cine.scan_canvas(g, self.identity(), "PLAX", p.frequency_mhz, p.depth_cm, p.heart_rate_bpm)
        x0, y0, x1, y1 = g.bounding_box_px
        put_text(canvas, f"G{50 + p.speckle.gain_db:.0f} DR{p.speckle.dynamic_range_db:.0f}",
                 (x1 - int(6.5 * th), y0 + int(3.2 * th)), th * 0.8, (170, 170, 170))
        # depth ticks every cm along the right sector edge, just outside it
        edge = math.radians(p.steer_deg + p.sector_deg / 2.0)
        for k in range(1, int(p.depth_cm) + 1):
            r_px = k / g.cm_per_px
            x = g.apex_x_px + r_px * math.sin(edge) + 6 * math.cos(edge)
            y = g.apex_y_px + r_px * math.cos(edge) - 6 * math.sin(edge)
            if x0 <= x <= x1 and y0 <= y <= y1:
                rad = 2 if k % 5 == 0 else 1
                cv2.circle(canvas, (int(round(x)), int(round(y))), rad, (200, 200, 200), -1, cv2.LINE_AA)
        t = cine.ecg_strip_times_s(self.ecg_box, p.duration_s)
        draw_ecg(canvas, self.ecg_box, np.mod(p.phase0 + t / p.rr_s, 1.0), p.systole_fraction)
        return canvas

    # ----------------------------------------------------------------- per frame
    def _classes_polar(self, geo: HeartGeometry, with_coords: bool = False):
        s, t = probe_to_heart(self.p, geo, self.conv.polar_x_cm, self.conv.polar_z_cm)
        cls = geo.echo_classes(s, t)
        lines = [self.conv.probe_cm_to_polar_index(heart_to_probe(self.p, geo, ln)) for ln in geo.valve_polylines()]
        anatomy.draw_polylines(cls, lines, anatomy.E_VALVE, 0.12 / self.conv.dr_cm)
        chordae = [self.conv.probe_cm_to_polar_index(heart_to_probe(self.p, geo, ln)) for ln in geo.chordae_polylines()]
        if chordae:
            cords = np.zeros_like(cls)
            anatomy.draw_polylines(cords, chordae, 1, 1.0)
            cls[(cords > 0) & (cls == anatomy.E_LV)] = anatomy.E_CHORDAE
        return (cls, s, t) if with_coords else cls

    def labels(self, geo: HeartGeometry) -> np.ndarray:
        """(H, W) uint8 label map of one instant (classes of ``types.LABEL_CLASSES``), 0 outside the sector."""
        p, g = self.p, self.geom
        s, t = probe_to_heart(p, geo, self.conv.inside_x_cm, self.conv.inside_z_cm)
        cls = geo.echo_classes(s, t)
        flat = np.zeros(p.height_px * p.width_px, dtype=np.uint8)
        flat[self.conv.inside_index] = anatomy.ECHO_TO_LABEL[cls]
        lab = flat.reshape(p.height_px, p.width_px)
        lines = [g.probe_cm_to_px(heart_to_probe(p, geo, ln)) for ln in geo.valve_polylines()]
        anatomy.draw_polylines(lab, lines, 6, 0.12 / g.cm_per_px)
        lab[~self.conv.sector_mask] = 0
        return lab

    def frame_rng(self, index: int) -> np.random.Generator:
        """Noise source of frame ``index`` (the explicit generator when one was given)."""
        return cine.frame_noise_rng(self.p.noise_seed, index, self.explicit_rng)

    def sector_image(self, geo: HeartGeometry, index: int = 0) -> np.ndarray:
        """(H, W) uint8 grey B-mode image of frame ``index`` (0 outside the sector)."""
        p = self.p
        cls, s, t = self._classes_polar(geo, with_coords=True)
        db = self.echo_db[cls] + self.tex_gain[cls] * self.texture + self.chest_db * (cls == anatomy.E_BG) - self.dropout_db
        tissue = self.tissue_lut[cls]
        db += self.sparse_db * tissue
        # specular echo where the beam crosses an interface into or out of tissue
        db += np.float32(p.specular_db) * tissue_interfaces(cls, tissue)
        power = power_from_db(db) + self.clutter
        fresh = complex_field(self.frame_rng(index), power.shape)
        env = envelope(power, fresh, self._scatterers(cls, s, t, fresh), p.speckle) * self.depth_gain
        env = env + electronic_noise(fresh, p.speckle)
        polar = log_compress(env, p.speckle).astype(np.uint8)
        return self.conv.to_image(polar)

    def frame(self, index: int, geo: HeartGeometry | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB frame ``index``: banner, sector, annotations, ECG with cursor."""
        p = self.p
        geo = geo or frame_geometry(p, index)
        out = cine.compose_frame(self.canvas, self.sector_image(geo, index), p.tint)
        cine.draw_ecg_cursor(out, self.ecg_box, cine.ecg_cursor_x(self.ecg_box, p.cursor_fraction(index)))
        return out


def render_plax(
    params: PlaxParams,
    rng: np.random.Generator | None = None,
    frames: int | Sequence[int] | None = None,
    labels: bool = True,
) -> SyntheticCine:
    """Render a PLAX cine and its truth.

    Parameters
    ----------
    params : PlaxParams
        From :func:`sample_plax_params`.
    rng : numpy.random.Generator, optional
        Speckle noise source; default ``default_rng(params.noise_seed)`` (deterministic).
    frames : int or sequence of int, optional
        None: all ``params.n_frames`` frames; an int: the first that many; a sequence: those frame
        indices of the clip (e.g. ``[ed, es]`` from :func:`ed_es_frames`).
    labels : bool
        Also render the per-frame label maps (about a third of the time).

    Returns
    -------
    SyntheticCine
    """
    idx = cine.frame_indices(frames, params.n_frames)
    renderer = PlaxRenderer(params, rng)
    imgs, labs = cine.render_frames(idx, (params.height_px, params.width_px), lambda i: frame_geometry(params, i),
                               renderer.frame, renderer.labels if labels else None)
    kp_all = plax_keypoints(params)
    ed, es = _ed_es_from_keypoints(kp_all)
    regions = renderer.regions()
    truth = plax_truth(params, kp_all, ed, es, renderer)
    return SyntheticCine(
        frames=imgs,
        frame_time_ms=params.frame_time_ms,
        regions=regions,
        keypoints=kp_all[list(idx)].astype(np.float32),
        labels=labs,
        ed_frame=ed,
        es_frame=es,
        frame_indices=idx,
        truth=truth,
        cm_per_px=renderer.geom.cm_per_px,
    )


def _ed_es_from_keypoints(kp: np.ndarray) -> tuple[int, int]:
    lvid = linear_values_cm(kp, 1.0)["lvidd"]
    return int(np.argmax(lvid)), int(np.argmin(lvid))


def plax_truth(params: PlaxParams, kp_all: np.ndarray, ed: int, es: int, renderer: PlaxRenderer) -> dict:
    """The truth document of a cine (docs/architecture.md section 3, plus per-frame keypoints)."""
    cm = renderer.geom.cm_per_px
    values = linear_values_cm(kp_all, cm)
    phases = params.phase_of_frame(np.arange(params.n_frames))
    idx = {k: i for i, k in enumerate(KEYPOINTS_2D)}
    measurements = {}
    for name, (a, b) in LINEAR_ENDPOINTS.items():
        frame = ed if CATALOG[name].phase == "ed" else es
        measurements[name] = {
            "value": round(float(values[name][frame]), 6),
            "unit": "cm",
            "frame": frame,
            "points": [[round(float(v), 4) for v in kp_all[frame, idx[a]]], [round(float(v), 4) for v in kp_all[frame, idx[b]]]],
        }
    return {
        "kind": "2d",
        "view": "plax",
        "ed_frame": ed,
        "es_frame": es,
        "n_frames": params.n_frames,
        "frame_time_ms": params.frame_time_ms,
        "heart_rate_bpm": round(params.heart_rate_bpm, 3),
        "cm_per_px": cm,
        "measurements": measurements,
        "keypoints": list(KEYPOINTS_2D),
        "frames": [
            {
                "index": i,
                "phase": round(float(phases[i]), 6),
                "keypoints": [[round(float(x), 4), round(float(y), 4)] for x, y in kp_all[i]],
                "values_cm": {name: round(float(values[name][i]), 6) for name in LINEAR_ENDPOINTS},
            }
            for i in range(params.n_frames)
        ],
        "label_classes": {str(k): v for k, v in LABEL_CLASSES.items()},
        "conventions": {
            "points": "image pixels (x right, y down), pixel centres on integers",
            "linear": "ASE 2015: calipers on tissue-blood interfaces; IVSd/LVID/LVPWd on one line "
            "perpendicular to the LV long axis at the mitral leaflet tips",
            "ed_frame": "largest LV internal diameter in the clip",
            "phase": "cardiac phase of each frame, 0 = end-diastole (QRS), 1 = next end-diastole",
            "es_frame": "smallest LV internal diameter in the clip",
        },
        "params": params_to_dict(params),
        "generator": {
            "name": "echomeasure.synthetic.plax", "version": GENERATOR_VERSION, "seed": params.seed, "case": params.case_index,
        },
    }
