"""Ultrasound image formation for the synthetic studio: sector geometry, speckle, log compression.

The physics is deliberately simple but follows the real chain of a B-mode scanner, so that a
model trained on these images meets the same nuisances as on real ones:

reflectivity map (polar: depth sample x beam)
  -> complex Gaussian scatterers (partly persistent between frames, like real speckle)
  -> anisotropic point-spread function (short axially, wide laterally; constant in angle, so
     wider in cm with depth, as a focused phased array)
  -> envelope detection -> depth attenuation with imperfect TGC -> electronic noise
  -> log compression to a dynamic range with a gain -> scan conversion (``cv2.remap`` with maps
     computed once per case) -> sector image.

Coordinates: the *probe frame* is (X lateral, Z depth) in cm with the sector apex at (0, 0),
X to the right of the image and Z down.  Image pixels are (x right, y down); pixel centres sit
on integer coordinates and ``X = (x - apex_x) * cm_per_px``, ``Z = (y - apex_y) * cm_per_px``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class SectorGeometry:
    """Where the imaged sector sits in the image and how pixels map to centimetres.

    Attributes
    ----------
    height_px, width_px : int
        Image size.
    apex_x_px, apex_y_px : int
        Pixel of the sector apex (the probe face); integers so that DICOM ReferencePixelX0/Y0
        (integers) place the origin exactly.
    cm_per_px : float
        Square pixels: one pixel step in x or y is this many cm (DICOM PhysicalDeltaX/Y).
    depth_cm : float
        Imaging depth from the apex.
    sector_deg : float
        Full opening angle of the sector.
    steer_deg : float
        Rotation of the sector's centre line from the vertical (positive: towards +x).
    n_beams, n_samples : int
        Size of the polar (beam, depth) grid on which speckle is simulated.
    """

    height_px: int
    width_px: int
    apex_x_px: int
    apex_y_px: int
    cm_per_px: float
    depth_cm: float
    sector_deg: float
    steer_deg: float
    n_beams: int
    n_samples: int

    @property
    def bounding_box_px(self) -> tuple[int, int, int, int]:
        """Inclusive (x0, y0, x1, y1) pixel box around the sector, clipped to the image."""
        half = math.radians(self.sector_deg) / 2.0
        steer = math.radians(self.steer_deg)
        angles = np.linspace(steer - half, steer + half, 181)
        r_px = self.depth_cm / self.cm_per_px
        xs = np.concatenate([[0.0], r_px * np.sin(angles)]) + self.apex_x_px
        ys = np.concatenate([[0.0], r_px * np.cos(angles)]) + self.apex_y_px
        x0 = max(0, int(math.floor(xs.min())))
        x1 = min(self.width_px - 1, int(math.ceil(xs.max())))
        y0 = max(0, int(math.floor(ys.min())))
        y1 = min(self.height_px - 1, int(math.ceil(ys.max())))
        return x0, y0, x1, y1

    def px_to_probe_cm(self, xy_px: np.ndarray) -> np.ndarray:
        """Pixel (x, y) -> probe-frame (X, Z) in cm (any leading shape, last axis 2)."""
        xy = np.asarray(xy_px, dtype=np.float64)
        return np.stack(
            [(xy[..., 0] - self.apex_x_px) * self.cm_per_px, (xy[..., 1] - self.apex_y_px) * self.cm_per_px], axis=-1
        )

    def probe_cm_to_px(self, xz_cm: np.ndarray) -> np.ndarray:
        """Probe-frame (X, Z) in cm -> pixel (x, y) (any leading shape, last axis 2)."""
        xz = np.asarray(xz_cm, dtype=np.float64)
        return np.stack(
            [xz[..., 0] / self.cm_per_px + self.apex_x_px, xz[..., 1] / self.cm_per_px + self.apex_y_px], axis=-1
        )

    def contains_cm(self, xz_cm: np.ndarray, margin_cm: float = 0.0) -> np.ndarray:
        """True where probe-frame points lie inside the sector, ``margin_cm`` away from its edges."""
        xz = np.asarray(xz_cm, dtype=np.float64)
        r = np.hypot(xz[..., 0], xz[..., 1])
        ang = np.arctan2(xz[..., 0], xz[..., 1]) - math.radians(self.steer_deg)
        half = math.radians(self.sector_deg) / 2.0
        lateral_room = r * np.sin(np.clip(half - np.abs(ang), 0.0, None))
        return (r <= self.depth_cm - margin_cm) & (np.abs(ang) < half) & (lateral_room >= margin_cm)


class ScanConverter:
    """Polar (depth sample, beam) grid <-> image pixels for one sector geometry.

    Everything expensive (the remap tables, probe coordinates of every polar sample and of every
    in-sector pixel) is computed once per case; per frame only ``cv2.remap`` runs.
    """

    def __init__(self, geometry: SectorGeometry) -> None:
        g = geometry
        self.geometry = g
        self.half_rad = math.radians(g.sector_deg) / 2.0
        self.steer_rad = math.radians(g.steer_deg)
        self.dr_cm = g.depth_cm / (g.n_samples - 1)
        self.dbeam_rad = 2.0 * self.half_rad / (g.n_beams - 1)
        r = np.arange(g.n_samples, dtype=np.float32) * np.float32(self.dr_cm)
        beam = self.steer_rad - self.half_rad + np.arange(g.n_beams, dtype=np.float32) * np.float32(self.dbeam_rad)
        self.sample_depth_cm = r  # (S,)
        self.beam_angle_rad = beam  # (B,)
        # probe-frame coordinates of the polar samples, shape (S, B)
        self.polar_x_cm = (r[:, None] * np.sin(beam)[None, :]).astype(np.float32)
        self.polar_z_cm = (r[:, None] * np.cos(beam)[None, :]).astype(np.float32)

        ys, xs = np.mgrid[0 : g.height_px, 0 : g.width_px].astype(np.float32)
        px_x = (xs - g.apex_x_px) * np.float32(g.cm_per_px)
        px_z = (ys - g.apex_y_px) * np.float32(g.cm_per_px)
        rr = np.hypot(px_x, px_z)
        ang = np.arctan2(px_x, px_z) - np.float32(self.steer_rad)
        self.map_beam = ((ang + np.float32(self.half_rad)) / np.float32(self.dbeam_rad)).astype(np.float32)
        self.map_sample = (rr / np.float32(self.dr_cm)).astype(np.float32)
        inside = (np.abs(ang) <= self.half_rad) & (rr <= g.depth_cm) & (px_z >= 0)
        self.map_beam[~inside] = -10.0
        self.map_sample[~inside] = -10.0
        self.sector_mask = inside  # (H, W) bool
        self.inside_index = np.flatnonzero(inside.ravel())
        self.inside_x_cm = px_x.ravel()[self.inside_index]
        self.inside_z_cm = px_z.ravel()[self.inside_index]

    def to_image(self, polar: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """Scan-convert a (S, B) polar image to (H, W); outside the sector is 0."""
        return cv2.remap(
            polar, self.map_beam, self.map_sample, interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )

    def probe_cm_to_polar_index(self, xz_cm: np.ndarray) -> np.ndarray:
        """Probe-frame (X, Z) cm -> fractional (beam, sample) indices, for drawing into polar maps."""
        xz = np.asarray(xz_cm, dtype=np.float64)
        r = np.hypot(xz[..., 0], xz[..., 1])
        ang = np.arctan2(xz[..., 0], xz[..., 1]) - self.steer_rad
        return np.stack([(ang + self.half_rad) / self.dbeam_rad, r / self.dr_cm], axis=-1)


@dataclass(frozen=True)
class SpeckleSettings:
    """Acquisition and display settings of one case (all drawn per case by the samplers).

    psf_axial_samples / psf_lateral_beams are Gaussian sigmas on the polar grid; persistence is the
    fraction of scatterer energy that stays from frame to frame (real speckle of still tissue is
    persistent; 0 would be TV snow).
    """

    gain_db: float = 0.0
    dynamic_range_db: float = 55.0
    psf_axial_samples: float = 1.1
    psf_lateral_beams: float = 1.6
    persistence: float = 0.7
    attenuation_db_per_cm: float = 1.2
    tgc_residual_db: float = 4.0
    noise_level: float = 0.004
    gamma: float = 1.0


def complex_field(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Circular complex Gaussian scatterer field (real, imaginary), float32, unit variance each."""
    re = rng.standard_normal(shape, dtype=np.float32)
    im = rng.standard_normal(shape, dtype=np.float32)
    return re, im


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: tuple[float, float]) -> np.ndarray:
    """A smooth zero-mean, unit-std random field (for tissue texture, clutter, gain ripple)."""
    f: np.ndarray = rng.standard_normal(shape, dtype=np.float32)
    f = cv2.GaussianBlur(f, (0, 0), sigmaX=float(sigma[1]), sigmaY=float(sigma[0]), borderType=cv2.BORDER_REFLECT)
    std = float(f.std()) or 1.0
    return (f - float(f.mean())) / std


def tissue_interfaces(cls: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    """Polar samples (depth rows) where the beam crosses an interface into or out of tissue.

    ``cls`` is the class of every sample, ``tissue`` whether it is tissue; the specular echo added
    there is strong for interfaces facing the beam and rare for those parallel to it (lateral dropout).
    """
    change = np.zeros(cls.shape, dtype=bool)
    change[1:] = (cls[1:] != cls[:-1]) & (tissue[1:] | tissue[:-1])
    return change


def power_from_db(db: np.ndarray) -> np.ndarray:
    """Backscattered power of an echo level in dB: ``10 ** (db / 10)`` (float32 in, float32 out)."""
    return np.exp(db * np.float32(math.log(10.0) / 10.0))


def electronic_noise(fresh: tuple[np.ndarray, np.ndarray], settings: SpeckleSettings) -> np.ndarray:
    """Receiver noise amplitude: the frame's fresh field, flipped so it does not follow the speckle."""
    return settings.noise_level * cv2.magnitude(fresh[0][::-1], fresh[1][:, ::-1])


def envelope(
    reflectivity: np.ndarray,
    fresh: tuple[np.ndarray, np.ndarray],
    static: tuple[np.ndarray, np.ndarray] | None,
    settings: SpeckleSettings,
) -> np.ndarray:
    """Detected echo amplitude of a reflectivity map: scatterers x sqrt(reflectivity) * PSF, then |.|.

    ``reflectivity`` is backscattered power per polar sample (>= 0).  The result has the mean
    amplitude of a fully developed speckle of that power (Rayleigh distributed).
    """
    amp = np.sqrt(reflectivity, dtype=np.float32)
    if static is not None:
        p = np.float32(math.sqrt(settings.persistence))
        q = np.float32(math.sqrt(1.0 - settings.persistence))
        re = p * static[0] + q * fresh[0]
        im = p * static[1] + q * fresh[1]
    else:
        re, im = fresh
    sx, sy = settings.psf_lateral_beams, settings.psf_axial_samples
    # Gaussian PSF convolved with white noise loses variance 1/(4 pi sx sy); put it back.
    norm = np.float32(math.sqrt(4.0 * math.pi * sx * sy))
    re = cv2.GaussianBlur(amp * re, (0, 0), sigmaX=sx, sigmaY=sy, borderType=cv2.BORDER_REFLECT)
    im = cv2.GaussianBlur(amp * im, (0, 0), sigmaX=sx, sigmaY=sy, borderType=cv2.BORDER_REFLECT)
    return cv2.magnitude(re, im) * (norm / np.float32(math.sqrt(2.0)))


def depth_gain(depth_cm: np.ndarray, settings: SpeckleSettings, tgc_shape: np.ndarray) -> np.ndarray:
    """Amplitude factor per depth sample: two-way attenuation, partly undone by the TGC.

    ``tgc_shape`` (same length as ``depth_cm``, in [-1, 1]) is how the operator's TGC sliders miss
    a perfect compensation; it scales ``settings.tgc_residual_db``.
    """
    residual_db = settings.tgc_residual_db * tgc_shape - 0.15 * settings.attenuation_db_per_cm * depth_cm
    return (10.0 ** (residual_db / 20.0)).astype(np.float32)


def log_compress(amplitude: np.ndarray, settings: SpeckleSettings) -> np.ndarray:
    """Amplitude -> display grey level 0..255 (float32): 20 log10, gain, dynamic range, gamma."""
    dr = settings.dynamic_range_db
    ln = cv2.log(np.maximum(amplitude, np.float32(1e-7)).astype(np.float32, copy=False))
    # 20 log10(a) = 20 / ln(10) * ln(a); map [-DR, 0] dB (after gain) to [0, 1]
    g = ln * np.float32(20.0 / math.log(10.0) / dr) + np.float32((settings.gain_db + dr) / dr)
    np.clip(g, 0.0, 1.0, out=g)
    if settings.gamma != 1.0:
        g = cv2.pow(g, float(settings.gamma))
    return g * np.float32(255.0)
