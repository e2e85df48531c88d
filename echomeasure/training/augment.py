"""Intensity augmentation: what varies between real echo machines and operators.

Geometry (depth, sector angle, small rotations, scales and translations of the heart) is varied
by the synthetic generator's own parameters, so the ground-truth points stay exact; here only the
grey levels change: overall gain, dynamic range (contrast / gamma), speckle and electronic noise,
and slight blur (a lower-frequency probe or a smoothed export).  None of these move a keypoint.
"""

from __future__ import annotations

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
