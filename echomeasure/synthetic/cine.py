"""What the PLAX (:mod:`.plax`) and apical (:mod:`.apical`) B-mode cines share.

One case of either view is drawn and rendered through the same steps:

* **cycle draw** (:func:`sample_cycle`): heart rate -> systole fraction -> frame count and
  rate covering a cycle (:func:`frames_and_fps`) -> image size (:data:`IMAGE_SIZES`);
* **scanner draw**: speckle settings (:func:`sample_speckle_settings`), dropout wedges and the
  display tint (:func:`sample_dropout_and_tint`);
* **screen layout**: banner on top (:func:`banner_height_px`), the sector below it
  (:func:`sector_layout`), the ECG strip under the sector (:func:`ecg_box`), and the DICOM
  regions of both (:func:`sector_regions`);
* **canvas** (:func:`scan_canvas`): banner and the scan labels round the sector, and the time
  axis of the ECG strip (:func:`ecg_strip_times_s`);
* **per-case fields** on the beam grid (:func:`static_speckle_and_texture`,
  :func:`tgc_depth_gain`, :func:`sparse_scatterers_db`) from the case generator
  (:func:`case_rng`), and the per-frame noise generator (:func:`frame_noise_rng`);
* **per frame**: the grey sector tinted onto the canvas (:func:`compose_frame`) with the ECG
  cursor (:func:`draw_ecg_cursor`);
* **which frames** (:func:`frame_indices`) and the frame loop (:func:`render_frames`).

Each generator calls these at the same points of its random draws as before they were shared,
so every seed renders the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import cv2
import numpy as np

from echomeasure.ingest.clip import SPATIAL_2D, SPATIAL_WAVEFORM, UNIT_CM, UNIT_NONE, UNIT_S, Region
from echomeasure.synthetic.overlays import FakeIdentity, draw_banner, put_text
from echomeasure.synthetic.ultrasound import SectorGeometry, SpeckleSettings, complex_field, depth_gain, smooth_field

#: (height, width) of the drawn image sizes.
IMAGE_SIZES: tuple[tuple[int, int], ...] = ((480, 640), (600, 800), (434, 636), (768, 1024))

State = TypeVar("State")


# --------------------------------------------------------------------------- timing


class CineTiming:
    """Frame timing of a case's parameters (mixed into ``PlaxParams`` and ``ApicalParams``)."""

    n_frames: int
    fps: float

    @property
    def frame_time_ms(self) -> float:
        """Time between frames (ms), rounded as written to DICOM FrameTime."""
        return round(1000.0 / self.fps, 4)

    @property
    def duration_s(self) -> float:
        """Length of the clip (s): ``n_frames`` frame times."""
        return self.n_frames * self.frame_time_ms / 1000.0


# --------------------------------------------------------------------------- drawing a case


@dataclass(frozen=True)
class CycleDraw:
    """The cycle and acquisition size of one case (field names as in the params dataclasses)."""

    heart_rate_bpm: float
    systole_fraction: float
    n_frames: int
    fps: float
    height_px: int
    width_px: int


def frames_and_fps(rng: np.random.Generator, rr_s: float, n_frames: int | None, fps: float | None) -> tuple[int, float]:
    """A frame rate and count that cover at least one full cardiac cycle (so ED and ES are in)."""
    if fps is None:
        hi = 80.0 if n_frames is None else min(80.0, (n_frames - 1) / (1.05 * rr_s))
        fps = float(rng.integers(30, int(max(30.0, hi)) + 1))
    if n_frames is None:
        need = int(math.ceil(1.05 * rr_s * fps)) + 1
        n_frames = int(rng.integers(max(30, need), max(30, need, 120) + 1))
    return n_frames, fps


def sample_cycle(
    rng: np.random.Generator, n_frames: int | None, fps: float | None, image_size: tuple[int, int] | None
) -> CycleDraw:
    """Heart rate (50-120 bpm), systole fraction, frame count and rate, image size (each drawn unless fixed)."""
    u = rng.uniform
    hr = u(50.0, 120.0)
    sf = float(np.clip(0.33 + 0.0012 * (hr - 70.0) + u(-0.03, 0.03), 0.27, 0.42))
    nf, fr = frames_and_fps(rng, 60.0 / hr, n_frames, fps)
    h, w = image_size if image_size is not None else IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
    return CycleDraw(hr, sf, nf, fr, h, w)


def sample_speckle_settings(
    rng: np.random.Generator, geom: SectorGeometry, attenuation_db_per_cm: tuple[float, float]
) -> SpeckleSettings:
    """Scanner settings of one case: gain, dynamic range, point-spread function, noise."""
    u = rng.uniform
    return SpeckleSettings(
        gain_db=u(-10.0, 0.0),
        dynamic_range_db=u(50.0, 65.0),
        psf_axial_samples=u(0.9, 1.6),
        psf_lateral_beams=u(0.55, 1.1) / 0.36 * (geom.n_beams - 1) / (geom.sector_deg / 0.36),
        persistence=u(0.55, 0.85),
        attenuation_db_per_cm=u(*attenuation_db_per_cm),
        tgc_residual_db=u(1.0, 6.0),
        noise_level=10 ** (u(-72.0, -62.0) / 20.0),
        gamma=u(1.1, 1.6),
    )


def sample_dropout_and_tint(
    rng: np.random.Generator, min_depth_frac: float
) -> tuple[tuple[tuple[float, float, float, float], ...], tuple[float, float, float]]:
    """Up to three dropout wedges (beam frac, depth frac, size frac, loss dB) and a display tint (mostly neutral)."""
    u = rng.uniform
    dropout = tuple(
        (u(0.0, 1.0), u(min_depth_frac, 0.9), u(0.05, 0.2), u(6.0, 20.0)) for _ in range(int(rng.integers(0, 4)))
    )
    tint = (1.0, 1.0, 1.0) if rng.random() < 0.6 else (u(0.9, 1.0), u(0.93, 1.0), u(0.85, 1.0))
    return dropout, tint


# --------------------------------------------------------------------------- screen layout


def banner_height_px(height_px: int) -> int:
    """Height of the burned-in patient banner (rows above every region)."""
    return int(np.clip(round(0.07 * height_px), 24, 64))


def sector_layout(
    height: int, width: int, depth_cm: float, sector_deg: float, steer_deg: float, x_jitter: float
) -> SectorGeometry:
    """The sector between the banner and the ECG strip, as deep as fits, its apex ``x_jitter`` widths off centre."""
    banner = banner_height_px(height)
    ecg = int(round(0.1 * height))
    apex_y = banner + 6
    depth_px: float = height - ecg - 8 - apex_y
    half = math.radians(sector_deg / 2.0 + abs(steer_deg))
    max_half_w = width / 2.0 - 6 - abs(x_jitter) * width
    depth_px = min(depth_px, max_half_w / math.sin(half))
    cm_per_px = depth_cm / depth_px
    apex_x = int(round(width / 2.0 + x_jitter * width))
    dr = cm_per_px * 0.8
    n_samples = int(math.ceil(depth_cm / dr)) + 1
    n_beams = int(math.ceil(sector_deg / 0.36)) + 1
    return SectorGeometry(height, width, apex_x, apex_y, cm_per_px, depth_cm, sector_deg, steer_deg, n_beams, n_samples)


def ecg_box(geom: SectorGeometry) -> tuple[int, int, int, int]:
    """Inclusive pixel box (x0, y0, x1, y1) of the ECG strip: under the sector, as wide as it."""
    x0, _, x1, y1 = geom.bounding_box_px
    return x0, y1 + 3, x1, geom.height_px - 3


def sector_regions(geom: SectorGeometry, ecg: tuple[int, int, int, int], duration_s: float) -> tuple[Region, Region]:
    """2D region (cm, origin at the sector apex) and the ECG region (s across the clip's duration)."""
    x0, y0, x1, y1 = geom.bounding_box_px
    tissue = Region(
        x0=x0, y0=y0, x1=x1, y1=y1,
        spatial_format=SPATIAL_2D, data_type=1, units_x=UNIT_CM, units_y=UNIT_CM,
        delta_x=geom.cm_per_px, delta_y=geom.cm_per_px,
        ref_x0=geom.apex_x_px - x0, ref_y0=geom.apex_y_px - y0, ref_phys_x=0.0, ref_phys_y=0.0, flags=2,
    )
    ex0, ey0, ex1, ey1 = ecg
    ecg_region = Region(
        x0=ex0, y0=ey0, x1=ex1, y1=ey1,
        spatial_format=SPATIAL_WAVEFORM, data_type=10, units_x=UNIT_S, units_y=UNIT_NONE,
        delta_x=duration_s / max(1, ex1 - ex0), delta_y=0.0, ref_x0=0, ref_y0=0, ref_phys_x=0.0, ref_phys_y=0.0,
    )
    return tissue, ecg_region


def scan_canvas(
    geom: SectorGeometry, identity: FakeIdentity, title: str, frequency_mhz: float, depth_cm: float, heart_rate_bpm: float
) -> tuple[np.ndarray, float]:
    """(H, W, 3) background of every frame and its text height: the banner, the view ``title``, probe
    frequency and depth at the sector's top left, the heart rate at its top right (black elsewhere)."""
    canvas = np.zeros((geom.height_px, geom.width_px, 3), dtype=np.uint8)
    draw_banner(canvas, identity, banner_height_px(geom.height_px))
    x0, y0, x1, _ = geom.bounding_box_px
    th = max(8.0, 0.022 * geom.height_px)
    put_text(canvas, title, (x0 + 4, y0 + int(1.6 * th)), th, (210, 210, 210))
    put_text(canvas, f"{frequency_mhz:.1f} MHz", (x0 + 4, y0 + int(3.2 * th)), th * 0.8, (170, 170, 170))
    put_text(canvas, f"{depth_cm:.0f} cm", (x0 + 4, y0 + int(4.6 * th)), th * 0.8, (170, 170, 170))
    put_text(canvas, f"HR {heart_rate_bpm:.0f}", (x1 - int(5 * th), y0 + int(1.6 * th)), th * 0.8, (170, 170, 170))
    return canvas, th


def ecg_strip_times_s(ecg: tuple[int, int, int, int], duration_s: float) -> np.ndarray:
    """Time (s) at every pixel column of the ECG strip: 0 at its left edge, the clip's duration at its right."""
    ex0, _, ex1, _ = ecg
    return np.arange(ex1 - ex0 + 1) * duration_s / max(1, ex1 - ex0)


# --------------------------------------------------------------------------- per-case fields


def case_rng(noise_seed: int, explicit: np.random.Generator | None) -> np.random.Generator:
    """Source of the per-case fields: ``explicit`` when given, else ``(noise_seed, 0)``.

    With the default, frame ``i``'s noise comes from ``(noise_seed, 1, i)`` (:func:`frame_noise_rng`),
    so any subset of frames renders exactly as in the full clip.
    """
    return explicit if explicit is not None else np.random.default_rng([noise_seed, 0])


def frame_noise_rng(noise_seed: int, index: int, explicit: np.random.Generator | None) -> np.random.Generator:
    """Noise source of frame ``index`` (the explicit generator when one was given)."""
    if explicit is not None:
        return explicit
    return np.random.default_rng([noise_seed, 1, int(index)])


def static_speckle_and_texture(
    rng: np.random.Generator, geom: SectorGeometry
) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """The persistent scatterer field and the tissue texture (dB weights: fine plus coarse) on the beam grid."""
    shape = (geom.n_samples, geom.n_beams)
    static = complex_field(rng, shape)
    depth_scale = 0.6 / (geom.depth_cm / geom.n_samples)
    fine = smooth_field(rng, shape, (depth_scale, max(2.0, geom.n_beams / 40)))
    coarse = smooth_field(rng, shape, (4 * depth_scale, max(6.0, geom.n_beams / 12)))
    return static, (0.55 * fine + 0.85 * coarse).astype(np.float32)


def tgc_depth_gain(rng: np.random.Generator, depth_cm: np.ndarray, max_depth_cm: float, speckle: SpeckleSettings) -> np.ndarray:
    """(samples, 1) amplitude factor: attenuation and a TGC that misses by a smooth curve of six sliders."""
    tgc_shape = np.interp(depth_cm, np.linspace(0, max_depth_cm, 6), rng.uniform(-1.0, 1.0, 6)).astype(np.float32)
    return depth_gain(depth_cm, speckle, tgc_shape)[:, None]


def sparse_scatterers_db(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Sparse strong scatterers (fibres, trabeculae): 3-9 dB on about 3 % of the samples, static."""
    bright = rng.random(shape, dtype=np.float32) < 0.03
    return np.where(bright, rng.uniform(3.0, 9.0, shape).astype(np.float32), 0.0).astype(np.float32)


# --------------------------------------------------------------------------- per frame


def compose_frame(canvas: np.ndarray, gray: np.ndarray, tint: tuple[float, float, float]) -> np.ndarray:
    """(H, W, 3) frame: the grey sector image, tinted, added to the canvas (black where the other draws)."""
    if tint == (1.0, 1.0, 1.0):
        rgb = cv2.merge([gray, gray, gray])
    else:
        rgb = cv2.merge([cv2.convertScaleAbs(gray, alpha=float(k)) for k in tint])
    return cv2.add(canvas, rgb)


def ecg_cursor_x(ecg: tuple[int, int, int, int], fraction: float) -> int:
    """Pixel column of the ECG cursor ``fraction`` (0-1) of the way across the strip."""
    ex0, _, ex1, _ = ecg
    return int(round(ex0 + fraction * (ex1 - ex0)))


def draw_ecg_cursor(image: np.ndarray, ecg: tuple[int, int, int, int], x: int) -> None:
    """Draw the ECG cursor (a yellow line across the strip) at column ``x``, in place."""
    _, ey0, _, ey1 = ecg
    cv2.line(image, (x, ey0), (x, ey1), (230, 230, 90), 1)


# --------------------------------------------------------------------------- which frames


def frame_indices(frames: int | Sequence[int] | None, n_frames: int) -> tuple[int, ...]:
    """The frame indices asked for: all (None), the first ``frames`` (an int), or the listed ones."""
    if frames is None:
        return tuple(range(n_frames))
    if isinstance(frames, (int, np.integer)):
        return tuple(range(min(int(frames), n_frames)))
    return tuple(int(i) for i in frames)


def render_frames(
    idx: Sequence[int],
    size_hw: tuple[int, int],
    state_of: Callable[[int], State],
    frame: Callable[[int, State], np.ndarray],
    label: Callable[[State], np.ndarray] | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Frames (N, H, W, 3) and, with ``label``, label maps (N, H, W) of frames ``idx``, in that order.

    ``state_of(i)`` is the anatomy at frame ``i``; ``frame(i, state)`` and ``label(state)`` draw it.
    """
    h, w = size_hw
    imgs = np.empty((len(idx), h, w, 3), dtype=np.uint8)
    labs = np.empty((len(idx), h, w), dtype=np.uint8) if label is not None else None
    for k, i in enumerate(idx):
        st = state_of(i)
        imgs[k] = frame(i, st)
        if labs is not None and label is not None:
            labs[k] = label(st)
    return imgs, labs
