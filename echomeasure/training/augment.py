"""Intensity augmentation: what varies between real echo machines and operators.

Geometry (depth, sector angle, small rotations, scales and translations of the heart) is varied
by the synthetic generator's own parameters, so the ground-truth points stay exact; here only the
grey levels change: overall gain, dynamic range (contrast / gamma), speckle and electronic noise,
and slight blur (a lower-frequency probe or a smoothed export).  None of these move a keypoint.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class IntensityAugment:
    """Ranges of the random intensity changes (recorded in the weights manifest).

    Attributes
    ----------
    gain : (low, high)
        Multiplicative brightness factor.
    gamma : (low, high)
        Exponent applied to [0, 1] intensities (dynamic range / compression curve).
    contrast : (low, high)
        Stretch around the mean grey level.
    noise_sd : (low, high)
        Standard deviation of additive Gaussian noise, in [0, 1] grey units.
    speckle_sd : (low, high)
        Standard deviation of multiplicative (Rayleigh-like) speckle noise.
    blur_sigma_px : (low, high)
        Gaussian blur applied with probability ``blur_p``.
    p : float
        Probability that an image is augmented at all.
    """

    gain: tuple[float, float] = (0.7, 1.35)
    gamma: tuple[float, float] = (0.75, 1.35)
    contrast: tuple[float, float] = (0.75, 1.3)
    noise_sd: tuple[float, float] = (0.0, 0.04)
    speckle_sd: tuple[float, float] = (0.0, 0.15)
    blur_sigma_px: tuple[float, float] = (0.3, 1.0)
    blur_p: float = 0.3
    p: float = 0.9

    def to_dict(self) -> dict:
        """Plain dict for the manifest."""
        return asdict(self)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment one image.

        Parameters
        ----------
        image : (H, W, 3) uint8 or float32 in [0, 1]
            Model-resolution RGB frame.
        rng : numpy Generator
            Source of randomness (the caller's, so runs are reproducible).

        Returns
        -------
        (H, W, 3) float32 in [0, 1].
        """
        x = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
        if rng.random() >= self.p:
            return x
        u = lambda r: float(rng.uniform(*r))  # noqa: E731
        x = np.clip(x * u(self.gain), 0.0, 1.0)
        x = x ** u(self.gamma)
        mean = float(x.mean())
        x = (x - mean) * u(self.contrast) + mean
        sd = u(self.speckle_sd)
        if sd > 0:
            x = x * (1.0 + sd * rng.standard_normal(x.shape[:2], dtype=np.float32)[..., None])
        if rng.random() < self.blur_p:
            x = cv2.GaussianBlur(x, (0, 0), u(self.blur_sigma_px))
        sd = u(self.noise_sd)
        if sd > 0:
            x = x + sd * rng.standard_normal(x.shape[:2], dtype=np.float32)[..., None]
        return np.clip(x, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class GeometryAugment:
    """A random similarity transform of the image and its keypoints (zoom, rotation, shift).

    Real clips are zoomed, panned and rotated differently from any generator; the keypoints move
    with the pixels (exactly), so the truth stays exact.  A draw that would push a keypoint out
    of the image (beyond ``margin_px``) is not applied.
    """

    scale: tuple[float, float] = (0.8, 1.25)
    rotation_deg: tuple[float, float] = (-12.0, 12.0)
    shift_frac: tuple[float, float] = (-0.08, 0.08)
    p: float = 0.6
    margin_px: float = 3.0

    def to_dict(self) -> dict:
        """Plain dict for the manifest."""
        return asdict(self)

    def __call__(self, image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Transform ``image`` (H, W, C) and ``points`` (..., 2) model pixels (NaN stays NaN)."""
        if rng.random() >= self.p:
            return image, points
        h, w = image.shape[:2]
        k = float(rng.uniform(*self.scale))
        ang = float(rng.uniform(*self.rotation_deg))
        tx, ty = (float(rng.uniform(*self.shift_frac)) * w, float(rng.uniform(*self.shift_frac)) * h)
        m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), ang, k)
        m[:, 2] += (tx, ty)
        pts = np.asarray(points, dtype=np.float32)
        moved = pts @ m[:, :2].T.astype(np.float32) + m[:, 2].astype(np.float32)
        fin = np.asarray(np.isfinite(moved).all(-1))
        inside = ((moved[..., 0] >= self.margin_px) & (moved[..., 0] <= w - 1 - self.margin_px)
                  & (moved[..., 1] >= self.margin_px) & (moved[..., 1] <= h - 1 - self.margin_px))
        if not inside[fin].all():
            return image, points
        out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if out.ndim == 2:
            out = out[..., None]
        return out, np.where(fin[..., None], moved, np.nan).astype(np.float32)


@dataclass(frozen=True)
class AppearanceAugment:
    """What differs between scanners' displays rather than their physics: colour look-up tables,
    low-detail (blocky) rendering, posterisation and JPEG artefacts.  Nothing moves a keypoint."""

    tint: tuple[float, float] = (0.7, 1.1)
    tint_p: float = 0.4
    block: tuple[float, float] = (1.0, 2.2)
    block_p: float = 0.25
    levels: tuple[int, int] = (10, 40)
    posterise_p: float = 0.2
    jpeg_quality: tuple[int, int] = (15, 70)
    jpeg_p: float = 0.3

    def to_dict(self) -> dict:
        """Plain dict for the manifest."""
        return asdict(self)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(H, W, 3) uint8 -> uint8."""
        x = image
        h, w = x.shape[:2]
        if rng.random() < self.block_p:
            f = float(rng.uniform(*self.block))
            small = cv2.resize(x, (max(4, int(w / f)), max(4, int(h / f))), interpolation=cv2.INTER_AREA)
            x = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        if rng.random() < self.tint_p:
            gains = rng.uniform(*self.tint, 3).astype(np.float32)
            x = np.clip(x.astype(np.float32) * gains, 0, 255).astype(np.uint8)
        if rng.random() < self.posterise_p:
            n = int(rng.integers(*self.levels))
            x = (np.round(x.astype(np.float32) / 255.0 * (n - 1)) / (n - 1) * 255.0).astype(np.uint8)
        if rng.random() < self.jpeg_p:
            quality = int(rng.integers(*self.jpeg_quality))
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(x), [int(cv2.IMWRITE_JPEG_QUALITY), quality])
            decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
            if decoded is not None:
                x = decoded
        return np.ascontiguousarray(x)


@dataclass(frozen=True)
class ArtefactAugment:
    """Acoustic artefacts a generator may lack: shadowing (a dark wedge along the beams, below a
    strong reflector), near-field haze (reverberation clutter fading with depth) and side-lobe
    smearing (lateral blur that grows with depth).  The image is a crop of the 2D region with the
    probe at the top centre, so beams are rays from there.  Nothing moves a structure."""

    shadow_p: float = 0.3
    shadow_width_deg: tuple[float, float] = (2.0, 9.0)
    shadow_depth: tuple[float, float] = (0.25, 0.7)
    haze_p: float = 0.35
    haze_level: tuple[float, float] = (0.05, 0.3)
    haze_extent: tuple[float, float] = (0.1, 0.35)
    sidelobe_p: float = 0.3
    sidelobe_px: tuple[float, float] = (1.0, 4.0)

    def to_dict(self) -> dict:
        """Plain dict for the manifest."""
        return asdict(self)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(H, W, 3) uint8 -> uint8."""
        h, w = image.shape[:2]
        x = image.astype(np.float32)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        depth = yy / max(1, h - 1)
        if rng.random() < self.shadow_p:
            angle = np.degrees(np.arctan2(xx - (w - 1) / 2.0, yy + 1.0))
            centre = float(rng.uniform(-35.0, 35.0))
            half = float(rng.uniform(*self.shadow_width_deg)) / 2.0
            start = float(rng.uniform(*self.shadow_depth))
            inside = np.clip((half - np.abs(angle - centre)) / max(half, 1e-3) * 3.0, 0.0, 1.0)
            below = np.clip((depth - start) * 8.0, 0.0, 1.0)
            x = x * (1.0 - float(rng.uniform(0.5, 0.9)) * (inside * below))[..., None]
        if rng.random() < self.haze_p:
            level = float(rng.uniform(*self.haze_level)) * 255.0
            extent = float(rng.uniform(*self.haze_extent))
            x = x + (level * np.exp(-depth / extent))[..., None]
        if rng.random() < self.sidelobe_p:
            k = float(rng.uniform(*self.sidelobe_px))
            blurred = cv2.GaussianBlur(x, (0, 0), sigmaX=k, sigmaY=0.3)
            x = x * (1.0 - depth[..., None]) + blurred * depth[..., None]
        return np.clip(x, 0, 255).astype(np.uint8)


def log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A factor drawn uniformly on a log scale (a 2x brighter and a 2x darker picture equally likely)."""
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def _sector_mask(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 1 inside the imaging sector: the convex hull of the largest lit blob (a sector
    is convex; text and marks beside it are other blobs), so dark cavities inside count."""
    lit = (image.max(axis=-1) > 2).astype(np.uint8)
    contours, _ = cv2.findContours(lit, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    mask = np.zeros(lit.shape, np.uint8)
    if contours:
        cv2.fillConvexPoly(mask, cv2.convexHull(max(contours, key=cv2.contourArea)), 1)
    return mask.astype(np.float32)


@dataclass(frozen=True)
class ExposureAugment:
    """What the gain and dynamic-range knobs change beyond :class:`IntensityAugment`'s mild range:
    a much brighter or darker picture (log-uniform overall gain, saturating at white) and a raised
    noise floor (speckled clutter filling the cavities, as high gain or a narrow dynamic range
    gives).  Only inside the sector: the black surround stays black.  Nothing moves a structure."""

    p: float = 0.5
    gain: tuple[float, float] = (0.7, 2.5)
    floor_p: float = 0.5
    floor: tuple[float, float] = (0.03, 0.3)

    def to_dict(self) -> dict:
        """Plain dict for the manifest."""
        return asdict(self)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(H, W, 3) uint8 -> uint8."""
        if rng.random() >= self.p:
            return image
        x = image.astype(np.float32) * log_uniform(rng, self.gain)
        if rng.random() < self.floor_p:
            h, w = x.shape[:2]
            sector = _sector_mask(image)
            speckle = rng.rayleigh(1.0, (h, w)).astype(np.float32) / 1.2533  # mean 1
            clutter = float(rng.uniform(*self.floor)) * 255.0 * speckle * sector
            x = np.maximum(x, 0.0) + clutter[..., None] * (1.0 - np.clip(x / 255.0, 0.0, 1.0))
        return np.clip(x, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class BloomAugment:
    """Re-image a frame through a point-spread function and log compression: what high gain does
    to a real scanner's picture.  The display grey is taken back to echo power (``dynamic_range_in``
    dB over 0-255), blurred by a Gaussian PSF (axial along y, wider laterally), given a speckled
    blood noise floor and fresh speckle of the PSF's size, and log-compressed again with the blood
    shown at ``floor_grey`` of full scale.  Bright tissue then "blooms" into the dark blood beside
    it: the displayed ramp from blood to tissue lies on the blood side of the true interface, as
    walls look thicker and cavities smaller at high gain.  Structures do not move; the truth stays.

    ``psf_axial_mm`` is in millimetres: call with the image's ``px_per_mm``.
    """

    p: float = 0.5
    dynamic_range_in_db: tuple[float, float] = (60.0, 90.0)
    psf_axial_mm: tuple[float, float] = (0.2, 0.9)
    lateral_ratio: tuple[float, float] = (1.5, 4.0)
    blood_db: tuple[float, float] = (-6.0, 6.0)
    floor_grey: tuple[float, float] = (0.0, 0.45)

    def to_dict(self) -> dict:
        """Plain dict for the manifest."""
        return asdict(self)

    def __call__(self, image: np.ndarray, rng: np.random.Generator, px_per_mm: float) -> np.ndarray:
        """(H, W, 3) or (H, W) uint8 -> the same shape, uint8."""
        if rng.random() >= self.p:
            return image
        x = image.astype(np.float32)
        grey = x.mean(axis=-1) if x.ndim == 3 else x
        h, w = grey.shape
        sector = _sector_mask(image if image.ndim == 3 else image[..., None])
        power = np.power(10.0, grey * np.float32(float(rng.uniform(*self.dynamic_range_in_db)) / 2550.0))
        blood = np.float32(10.0 ** (float(rng.uniform(*self.blood_db)) / 10.0))
        ax = max(0.3, float(rng.uniform(*self.psf_axial_mm)) * float(px_per_mm))
        lat = ax * float(rng.uniform(*self.lateral_ratio))
        field = rng.standard_normal((2, h, w)).astype(np.float32)
        speckle = sum(cv2.GaussianBlur(f, (0, 0), sigmaX=lat, sigmaY=ax) ** 2 for f in field)
        speckle = speckle / max(float(speckle.mean()), 1e-6)
        # blood: a speckled noise floor of the PSF's grain; tissue keeps its own texture, softened
        power = cv2.GaussianBlur(power + blood * speckle * sector, (0, 0), sigmaX=lat, sigmaY=ax)
        power = power * np.sqrt(speckle)
        db = 10.0 * np.log10(np.maximum(power, 1e-6))
        inside = sector > 0
        ref = float(np.percentile(db[inside], 99.5)) if inside.any() else float(db.max())
        lo = 10.0 * float(np.log10(1.0 + float(blood)))  # the blood's mean level
        floor = float(rng.uniform(*self.floor_grey))
        # blood shown at ``floor`` of full scale, the brightest tissue at full scale
        out = np.clip(floor + (1.0 - floor) * (db - lo) / max(ref - lo, 1.0), 0.0, 1.0) * 255.0
        if x.ndim == 3:
            # tinted pixels keep their tint, black ones take the new grey; outside the sector
            # (text, ECG, surround) nothing changes
            y = np.where((grey < 1.0)[..., None], out[..., None], x * (out / np.maximum(grey, 1.0))[..., None])
            y = np.where(inside[..., None], y, x)
        else:
            y = np.where(inside, out, x)
        return np.clip(y, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class SpectrumAugment:
    """What spectral Doppler displays vary beyond the display look: spectral broadening (the
    envelope's outer edge smeared along the velocity axis, as wide beams, long gates and high gain
    give it) and a grainy spectrum (few averaged FFTs: each column's power is noisy).  The
    velocities stay where they are: the peak is still read at the middle of the smeared edge.
    The image is the strip's model-resolution crop, velocity along y and time along x."""

    broadening_p: float = 0.5
    broadening_px: tuple[float, float] = (0.5, 2.5)
    grain_p: float = 0.5
    grain_sd: tuple[float, float] = (0.1, 0.4)

    def to_dict(self) -> dict:
        """Plain dict for the manifest."""
        return asdict(self)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(H, W, 3) uint8 -> uint8."""
        x: np.ndarray = image.astype(np.float32)
        if rng.random() < self.broadening_p:
            x = cv2.GaussianBlur(x, (0, 0), sigmaX=0.3, sigmaY=float(rng.uniform(*self.broadening_px)))
            if x.ndim == 2:
                x = x[..., None]
        if rng.random() < self.grain_p:
            h, w = x.shape[:2]
            grain: np.ndarray = cv2.GaussianBlur(rng.standard_normal((h, w), dtype=np.float32), (0, 0),
                                                 sigmaX=0.8, sigmaY=0.5)
            grain /= max(float(grain.std()), 1e-6)
            x = x * np.clip(1.0 + float(rng.uniform(*self.grain_sd)) * grain, 0.0, None)[..., None]
        return np.clip(x, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class SegmentationAugment:
    """Online augmentation of (image, label map) pairs for the segmentation trainers: a random
    similarity transform applied to both (labels nearest-neighbour, so they stay exact), then the
    artefact, appearance and intensity changes on the image only.  Each batch draws new ones, so a
    rendered training set of a few hundred frames is seen in thousands of looks."""

    geometry_p: float = 0.6
    scale: tuple[float, float] = (0.85, 1.2)
    rotation_deg: tuple[float, float] = (-15.0, 15.0)
    shift_frac: tuple[float, float] = (-0.06, 0.06)
    artefact: ArtefactAugment = ArtefactAugment()
    appearance: AppearanceAugment = AppearanceAugment()
    intensity: IntensityAugment = IntensityAugment()
    exposure: ExposureAugment | None = None
    #: re-imaging through a PSF (:class:`BloomAugment`) at ``bloom_px_per_mm`` model pixels per mm
    bloom: BloomAugment | None = None
    bloom_px_per_mm: float = 1.0

    def to_dict(self) -> dict:
        """Plain dict for the manifest."""
        return asdict(self)

    def __call__(self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 and (H, W) labels -> (H, W, 3) float32 in [0, 1] and (H, W) labels."""
        h, w = labels.shape
        if rng.random() < self.geometry_p:
            m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), float(rng.uniform(*self.rotation_deg)),
                                        float(rng.uniform(*self.scale)))
            m[:, 2] += (float(rng.uniform(*self.shift_frac)) * w, float(rng.uniform(*self.shift_frac)) * h)
            image = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
            labels = cv2.warpAffine(labels, m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
        image = self.artefact(np.ascontiguousarray(image), rng)
        if self.bloom is not None:
            image = self.bloom(image, rng, self.bloom_px_per_mm)
        if self.exposure is not None:
            image = self.exposure(image, rng)
        return self.intensity(self.appearance(image, rng), rng), labels


#: Field of view the segmentation trainers' model inputs are taken to cover (mm), for sizing
#: :class:`BloomAugment`'s point-spread function in model pixels (the crops are of 12-20 cm sectors).
NOMINAL_FIELD_MM = 160.0


def segmentation_augment(online: bool, exposure: bool, bloom: bool = False,
                         input_px: int = 128) -> SegmentationAugment | None:
    """The segmentation trainers' ``--online-augment`` (and ``--exposure-augment`` and
    ``--bloom-augment``, which imply it); ``input_px``: the model's input size."""
    if not (online or exposure or bloom):
        return None
    return SegmentationAugment(exposure=ExposureAugment() if exposure else None,
                               bloom=BloomAugment() if bloom else None,
                               bloom_px_per_mm=input_px / NOMINAL_FIELD_MM)


def add_segmentation_augment_options(parser: argparse.ArgumentParser, online_help: str) -> None:
    """The segmentation trainers' augmentation options (read by :func:`segmentation_augment`);
    ``online_help``: what ``--online-augment`` does in that trainer."""
    parser.add_argument("--exposure-augment", action="store_true",
                        help="with the online augmentation also vary overall gain (0.7-2.5x) and the noise floor "
                             "(ExposureAugment); implies --online-augment")
    parser.add_argument("--bloom-augment", action="store_true",
                        help="with the online augmentation also re-image frames through a point-spread function and "
                             "log compression (BloomAugment: tissue blooming into the blood, as at high gain); implies "
                             "--online-augment")
    parser.add_argument("--online-augment", action="store_true", help=online_help)


def augmented_batch(x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                    augment: SegmentationAugment | None) -> tuple[np.ndarray, np.ndarray]:
    """A batch (B, 3, H, W) uint8 and (B, H, W) labels -> float32 images in [0, 1] and int64 labels,
    each pair augmented on its own (none: only scaled to [0, 1])."""
    if augment is None:
        return x.astype(np.float32) / 255.0, y.astype(np.int64)
    pairs = [augment(np.ascontiguousarray(img.transpose(1, 2, 0)), lab.astype(np.uint8), rng)
             for img, lab in zip(x, y, strict=True)]
    return (np.stack([p[0].transpose(2, 0, 1) for p in pairs]).astype(np.float32),
            np.stack([p[1] for p in pairs]).astype(np.int64))
