"""Grey-level profiles along lines through an image: what the edge search and the bloom correction read.

:func:`line_profiles` samples a frame along each caliper's search line (bilinear, averaged across
the line against speckle, smoothed along it); :mod:`echomeasure.propose.edges` searches them for
blood-tissue steps and :mod:`echomeasure.propose.interface_offset` reads the ramp around a step.
One sampler, so that the correction sees the profile exactly as the search did.
"""

from __future__ import annotations

import math

import numpy as np


def bilinear(frame: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Bilinear samples of a (H, W) or (H, W, C) image at float coordinates (channels averaged).

    Coordinates outside the image are clamped to its border.  Only the box around the samples
    is converted to grey, so the cost does not grow with the frame size.
    """
    h, w = frame.shape[:2]
    x = np.clip(xs, 0.0, w - 1.0)
    y = np.clip(ys, 0.0, h - 1.0)
    bx0 = int(np.floor(x.min())) if x.size else 0
    by0 = int(np.floor(y.min())) if y.size else 0
    bx1 = min(w, int(np.ceil(x.max())) + 2) if x.size else 1
    by1 = min(h, int(np.ceil(y.max())) + 2) if y.size else 1
    box = frame[by0:by1, bx0:bx1]
    grey = box.mean(axis=2, dtype=np.float32) if box.ndim == 3 else box.astype(np.float32)
    gh, gw = grey.shape
    x = x - bx0
    y = y - by0
    x0 = np.minimum(np.floor(x).astype(np.intp), max(gw - 2, 0))
    y0 = np.minimum(np.floor(y).astype(np.intp), max(gh - 2, 0))
    fx = x - x0
    fy = y - y0
    x1 = np.minimum(x0 + 1, gw - 1)
    y1 = np.minimum(y0 + 1, gh - 1)
    v00, v01, v10, v11 = grey[y0, x0], grey[y0, x1], grey[y1, x0], grey[y1, x1]
    top = v00 + (v01 - v00) * fx
    bottom = v10 + (v11 - v10) * fx
    return top + (bottom - top) * fy


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian (radius 3 sigma); ``[1]`` for sigma <= 0."""
    if sigma <= 0.0:
        return np.ones(1)
    r = max(1, int(math.ceil(3.0 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return k / k.sum()


#: Most samples averaged across a line.  Across the line the samples are one pixel apart, which
#: at fine pixel sizes means hundreds (a 5 mm band at 0.001 cm/px is 501 pixels wide); 33 samples
#: (one per pixel up to 6.4 px/mm, so every usual echo image keeps one per pixel) average the
#: speckle as well and keep the cost independent of the pixel size.
MAX_ACROSS_SAMPLES = 33


def smooth_along(profile: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """(K, T) profiles convolved along T with ``kernel``, the same length whatever the kernel's.

    The ends are extended with their own value (not zeros, which would darken them), and a
    kernel longer than the profile still gives T samples (``np.convolve(mode="same")`` gives
    ``max(T, len(kernel))``).
    """
    p = np.asarray(profile, dtype=np.float64)
    if len(kernel) <= 1 or p.size == 0:
        return p * float(kernel[0]) if len(kernel) == 1 else p
    left = (len(kernel) - 1) // 2
    padded = np.pad(p, ((0, 0), (left, len(kernel) - 1 - left)), mode="edge")
    return np.stack([np.convolve(row, kernel, mode="valid") for row in padded])


def line_profiles(
    frame: np.ndarray, pts: np.ndarray, u: np.ndarray, t: np.ndarray, across_half_width_px: float, kernel: np.ndarray
) -> np.ndarray:
    """(K, T) intensity along each point's unit direction ``u`` at offsets ``t``: averaged across
    the line over ``across_half_width_px`` each side (against speckle; at most
    :data:`MAX_ACROSS_SAMPLES` samples), smoothed along it with ``kernel``, whose taps are
    samples of ``t`` (:func:`smooth_along`)."""
    n = np.stack([-u[:, 1], u[:, 0]], axis=1)
    n_across = min(MAX_ACROSS_SAMPLES, max(1, 2 * int(round(across_half_width_px)) + 1))
    across = np.linspace(-across_half_width_px, across_half_width_px, n_across) if n_across > 1 else np.zeros(1)
    xs = pts[:, None, None, 0] + t[None, None, :] * u[:, None, None, 0] + across[None, :, None] * n[:, None, None, 0]
    ys = pts[:, None, None, 1] + t[None, None, :] * u[:, None, None, 1] + across[None, :, None] * n[:, None, None, 1]
    profile = bilinear(frame, xs, ys).mean(axis=1)  # (K, T)
    return smooth_along(profile, kernel)
