"""Train, evaluate and register the view classifier (:mod:`echomeasure.models.view`).

Data (all synthetic, rendered here, seeded):

* ``plax``: PLAX cines of the default training style families (:data:`echomeasure.synthetic.styles.DEFAULT_TRAINING_STYLES`),
* ``a4c`` / ``a2c``: apical cines (:mod:`echomeasure.synthetic.apical`) of the training style
  families (``--apical-styles classic`` renders them in the classic look only, as version 1.0 was
  trained),
* ``doppler``: spectral strips of the training style families,
* ``other``: negatives: parasternal short-axis cines, non-cardiac ultrasound (abdominal-like
  curved and linear-array images, with and without colour flow), M-mode strips, noise, and
  screens of text and graphics.

Every clip may be re-styled (contrast, gamma, tinted look-up table, blur or blockiness, JPEG,
annotation text blanked or added: the same for every class, so none of it tells a class), and
may lose its regions (a video or screenshot: the classifier then sees the sector found from the
pixels, or the whole screen).  Evaluation uses other case seeds (:data:`EVAL_SEED0` on; training
seeds stay below it) and, for PLAX, A4C, A2C and Doppler, also the held-out style family no model
is trained on.

Run: ``nice -n 5 python -m echomeasure.training.view_train [--out weights/] [--version 1.1] [--init-from 1.0]``
(the recipe of each version is in the manifest); it writes ``view-<version>.pt``, registers it with recipe, seed
and metrics, and writes ``benchmarks/view_accuracy.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from echomeasure import atomic
from echomeasure.catalog import VIEWS
from echomeasure.models.view import INPUT_PX, VIEW_ARCH, VIEW_MODEL, build_view_net, view_features
from echomeasure.training.augment import log_uniform

log = logging.getLogger(__name__)

SIZES: tuple[tuple[int, int], ...] = ((240, 320), (300, 400), (480, 640), (434, 636))
FRAMES_RENDERED = 12
#: Version of the augmentation code (part of the rendered-set cache key).
AUGMENT_VERSION = 2
#: Seed offsets: training and evaluation never share a case seed.
TRAIN_SEED0, EVAL_SEED0 = 5_000_000, 6_000_000
#: Case seeds of one view: a view's clips are numbered from ``seed0 + SEEDS_PER_VIEW * view index``.
SEEDS_PER_VIEW = 10_000
#: Views rendered in the style families; the ``other`` negatives have a look of their own.
STYLED_VIEWS: tuple[str, ...] = ("plax", "a4c", "a2c", "doppler")
RECIPE_DEFAULTS = {"train_per_class": 260, "eval_per_family": 60, "epochs": 40, "seed": 0}
WORDS = ("PLAX", "A4C", "A2C", "PSAX", "2D", "Gen", "C5-1", "S4-2", "Abd", "MI 1.1", "TIS 0.4", "HR 72", "CW", "PW",
         "17 cm", "Res", "Pen", "THI")


# --------------------------------------------------------------------------- negatives ("other")


def _speckle_scene(rng: np.random.Generator, h: int, w: int, n_frames: int, kind: str) -> tuple[np.ndarray, tuple | None]:
    """A non-cardiac ultrasound-like clip: curved or linear array, tissue layers, vessels, cysts."""
    from echomeasure.synthetic.ultrasound import (
        ScanConverter,
        SectorGeometry,
        SpeckleSettings,
        complex_field,
        envelope,
        log_compress,
        smooth_field,
    )

    u = rng.uniform
    settings = SpeckleSettings(gain_db=u(-8, 2), dynamic_range_db=u(45, 65), psf_axial_samples=u(0.9, 1.6),
                               psf_lateral_beams=u(0.8, 1.8), persistence=u(0.7, 0.95), gamma=u(1.0, 1.5))
    frames = np.zeros((n_frames, h, w, 3), dtype=np.uint8)
    if kind == "linear":
        x0, y0 = int(u(0.05, 0.25) * w), int(u(0.06, 0.15) * h)
        x1, y1 = int(w - u(0.05, 0.25) * w), int(h - u(0.05, 0.2) * h)
        ns, nb = max(32, (y1 - y0) // 2), max(32, (x1 - x0) // 2)
        mask = None
    else:
        depth = u(10, 24)
        curved = kind == "curved"
        apex_y = int(-u(0.1, 0.5) * h) if curved else int(u(0.06, 0.12) * h)
        r_px = (h * u(0.85, 0.95) - apex_y)
        geom = SectorGeometry(h, w, int(w / 2 + u(-0.05, 0.05) * w), apex_y, depth / r_px, depth,
                              u(50, 80) if curved else u(60, 90), 0.0, 220, int(r_px * 0.8))
        conv = ScanConverter(geom)
        ns, nb = geom.n_samples, geom.n_beams
        mask = conv
    base = smooth_field(rng, (ns, nb), (ns / 30, nb / 30)) * u(2, 6)
    db = np.full((ns, nb), u(-35, -25), dtype=np.float32) + base
    yy, xx = np.mgrid[0:ns, 0:nb].astype(np.float32)
    for _ in range(int(rng.integers(1, 4))):  # tissue layers (fascia, organ capsules)
        y = u(0.05, 0.8) * ns + smooth_field(rng, (1, nb), (1, nb / 6))[0] * u(2, 10)
        db += u(6, 18) * np.exp(-0.5 * ((yy - y[None, :]) / u(1.0, 4.0)) ** 2)
    for _ in range(int(rng.integers(0, 5))):  # vessels, cysts, organs
        cy, cx = u(0.15, 0.9) * ns, u(0.1, 0.9) * nb
        ry, rx = u(0.03, 0.2) * ns, u(0.03, 0.25) * nb
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        db[inside] = u(-75, -60) if rng.random() < 0.6 else db[inside] + u(-8, 8)
    power = np.exp(db * np.float32(math.log(10) / 10))
    static = complex_field(rng, (ns, nb))
    drift = u(-0.6, 0.6, size=2)
    colour = rng.random() < 0.3
    blobs = []
    if colour:
        for _ in range(int(rng.integers(1, 6))):
            blobs.append((u(0.2, 0.8) * h, u(0.2, 0.8) * w, u(0.02, 0.1) * h, u(0.02, 0.12) * w))
    for f in range(n_frames):
        fresh = complex_field(rng, (ns, nb))
        env = envelope(power, fresh, static, settings)
        polar = log_compress(env, settings).astype(np.uint8)
        if f:
            polar = np.roll(polar, (int(round(drift[0] * f)), int(round(drift[1] * f))), axis=(0, 1))
        if mask is None:
            img = np.zeros((h, w), np.uint8)
            img[y0:y1, x0:x1] = cv2.resize(polar, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        else:
            img = mask.to_image(polar)
        rgb = cv2.merge([img, img, img])
        for cy, cx, ry, rx in blobs:  # colour flow / power Doppler in vessels
            pulse = 0.5 + 0.5 * math.sin(2 * math.pi * f / max(2, n_frames) * u(0.5, 2))
            col = (255, int(u(60, 200)), 0) if rng.random() < 0.7 else (0, int(u(60, 200)), 255)
            ov = rgb.copy()
            cv2.ellipse(ov, (int(cx), int(cy)), (int(rx), int(ry)), u(0, 180), 0, 360, col, -1)
            rgb = cv2.addWeighted(ov, 0.3 + 0.5 * pulse, rgb, 0.7 - 0.5 * pulse + 0.0, 0)
        frames[f] = rgb
    return frames, None


def _psax_clip(rng: np.random.Generator, h: int, w: int, n_frames: int) -> tuple[np.ndarray, tuple | None]:
    """A parasternal short-axis cine: a contracting LV ring with the RV crescent beside it."""
    from echomeasure.synthetic.apical import sample_apical_params, sector_geometry
    from echomeasure.synthetic.ultrasound import ScanConverter, complex_field, envelope, log_compress, smooth_field

    params = sample_apical_params(rng, "a4c", image_size=(h, w), n_frames=max(n_frames, 30))
    geom = sector_geometry(params)
    conv = ScanConverter(geom)
    u = rng.uniform
    cx, cz = u(-1.0, 1.0), u(5.0, min(10.0, params.depth_cm - 4.5))
    r_in, wall = u(1.5, 2.8), u(0.7, 1.4)
    ef = u(0.2, 0.6)
    rv_w = u(0.8, 1.8)
    rv_ang = u(-2.6, -1.8)
    static = complex_field(rng, conv.polar_x_cm.shape)
    tex = smooth_field(rng, conv.polar_x_cm.shape, (4.0, 4.0)) * u(2, 5)
    frames = np.zeros((n_frames, h, w, 3), np.uint8)
    for f in range(n_frames):
        c = 0.5 - 0.5 * math.cos(2 * math.pi * f / max(2, n_frames) * u(0.9, 1.1) * 1.0)
        r = r_in * (1 - ef * c) ** 0.5
        t = wall * (1 + 0.4 * c)
        dx, dz = conv.polar_x_cm - cx, conv.polar_z_cm - cz
        rr = np.hypot(dx, dz)
        ang = np.arctan2(dz, dx)
        db = np.full(rr.shape, u(-40, -32), np.float32) + tex
        db[rr < r + t] = u(-27, -19)
        db[rr < r] = u(-72, -64)
        # papillary muscles as two small bright spots inside the cavity
        for pa in (0.6, 2.2):
            px, pz = cx + 0.6 * r * math.cos(pa), cz + 0.6 * r * math.sin(pa)
            db[np.hypot(conv.polar_x_cm - px, conv.polar_z_cm - pz) < 0.35 * r_in] = u(-30, -22)
        rv_dist = np.abs(rr - (r + t + rv_w))
        crescent = (rv_dist < rv_w) & (np.cos(ang - rv_ang) > 0.2)
        db[crescent] = u(-72, -64)
        db[np.abs(rr - (r + t + 2 * rv_w + 0.2)) < 0.25] = u(-12, -4)  # pericardium
        power = np.exp(db * np.float32(math.log(10) / 10))
        env = envelope(power, complex_field(rng, power.shape), static, params.speckle)
        img = conv.to_image(log_compress(env, params.speckle).astype(np.uint8))
        frames[f] = cv2.merge([img, img, img])
    return frames, None


def _mmode_strip(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An M-mode display: depth down, time across, moving bands."""
    u = rng.uniform
    img = np.zeros((h, w), np.float32)
    t = np.arange(w, dtype=np.float32)
    period = u(60, 160)
    for _ in range(int(rng.integers(3, 8))):
        y = u(0.1, 0.9) * h + u(2, 20) * np.sin(2 * math.pi * t / period + u(0, 6))
        yy = np.arange(h, dtype=np.float32)[:, None]
        img += u(60, 200) * np.exp(-0.5 * ((yy - y[None, :]) / u(1.5, 8)) ** 2)
    img += rng.normal(0, u(5, 25), img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    out = np.zeros((h, w, 3), np.uint8)
    top = int(u(0.2, 0.45) * h)
    strip = cv2.resize(img, (w, h - top))
    out[top:] = cv2.merge([strip] * 3)
    return out


def _graphics_screen(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A screen of text, lines and boxes (report pages, menus, calibration screens)."""
    u = rng.uniform
    img = np.full((h, w, 3), int(u(0, 60)), np.uint8)
    for _ in range(int(rng.integers(3, 25))):
        word = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 4))))
        col = tuple(int(c) for c in rng.integers(120, 256, 3))
        cv2.putText(img, word, (int(u(0, w * 0.8)), int(u(10, h))), cv2.FONT_HERSHEY_SIMPLEX, u(0.3, 0.9), col, 1)
    for _ in range(int(rng.integers(0, 6))):
        col = tuple(int(c) for c in rng.integers(60, 256, 3))
        p1 = (int(u(0, w)), int(u(0, h)))
        p2 = (int(u(0, w)), int(u(0, h)))
        (cv2.rectangle if rng.random() < 0.5 else cv2.line)(img, p1, p2, col, int(rng.integers(1, 3)))
    return img


def _noise_clip(rng: np.random.Generator, h: int, w: int, n_frames: int) -> np.ndarray:
    """Noise: static or changing, grey or colour, smooth or fine, sometimes inside a sector."""
    u = rng.uniform
    sigma = u(0, 6)
    frames = []
    base = rng.random((h, w, 3 if rng.random() < 0.3 else 1), dtype=np.float32) * 255
    for _f in range(n_frames):
        x: np.ndarray = base if rng.random() < 0.5 else rng.random(base.shape, dtype=np.float32) * 255
        if sigma > 0.5:
            x = cv2.GaussianBlur(x, (0, 0), sigma)
            x = (x - x.min()) / max(1e-6, float(x.max() - x.min())) * 255
        x = np.clip(x * u(0.2, 1.0), 0, 255).astype(np.uint8)
        if x.ndim == 2 or x.shape[2] == 1:
            x = cv2.merge([x.reshape(h, w)] * 3)
        frames.append(x)
    out = np.stack(frames)
    if rng.random() < 0.4:  # inside a sector
        mask = np.zeros((h, w), np.uint8)
        cv2.ellipse(mask, (w // 2, int(0.08 * h)), (int(0.9 * h), int(0.9 * h)), 90, -40, 40, 1, -1)
        out *= mask[None, :, :, None]
    return out


# --------------------------------------------------------------------------- one sample


def _region_box(regions) -> tuple[int, int, int, int] | None:
    from echomeasure.ingest.clip import SPATIAL_2D

    two_d = [r for r in regions if r.spatial_format == SPATIAL_2D and r.data_type == 1]
    if not two_d:
        return None
    r = max(two_d, key=lambda r: (r.x1 - r.x0) * (r.y1 - r.y0))
    return r.x0, r.y0, r.x1, r.y1


def _render(view: str, seed: int, style: str, rng: np.random.Generator) -> tuple[np.ndarray, tuple | None, bool]:
    """(frames, 2D region box or None, has a spectral region) of one synthetic clip."""
    h, w = SIZES[int(rng.integers(len(SIZES)))]
    n_total = int(rng.integers(24, 90))
    frames_idx = sorted({int(round(x)) for x in np.linspace(0, n_total - 1, FRAMES_RENDERED)})
    if view == "plax":
        from echomeasure.synthetic.styles import render_styled_plax_case

        cine = render_styled_plax_case(seed, style, image_size=(h, w), n_frames=n_total, frames=frames_idx)
        return cine.frames, _region_box(cine.regions), False
    if view in ("a4c", "a2c"):
        from echomeasure.synthetic.apical import render_apical, sample_apical_params

        params = sample_apical_params(np.random.default_rng(seed), view, image_size=(h, w), n_frames=n_total, seed=seed)
        if style != "classic":
            from echomeasure.synthetic.styles import render_styled_apical, sample_styled_apical_params

            params = sample_styled_apical_params(params, style)
            cine = render_styled_apical(params, style, frames=frames_idx, labels=False)
        else:
            cine = render_apical(params, frames=frames_idx, labels=False)
        return cine.frames, _region_box(cine.regions), False
    if view == "doppler":
        from echomeasure.synthetic.styles import render_styled_doppler_case

        strip = render_styled_doppler_case(seed, style, image_size=(h, w))
        return strip.image[None], _region_box(strip.regions), True
    # other
    kind = rng.choice(["psax", "curved", "linear", "sector", "mmode", "graphics", "noise"],
                      p=[0.25, 0.17, 0.17, 0.11, 0.1, 0.1, 0.1])
    if kind == "psax":
        return _psax_clip(rng, h, w, FRAMES_RENDERED)[0], None, False
    if kind in ("curved", "linear", "sector"):
        return _speckle_scene(rng, h, w, FRAMES_RENDERED, kind)[0], None, False
    if kind == "mmode":
        return _mmode_strip(rng, h, w)[None], None, False
    if kind == "graphics":
        return _graphics_screen(rng, h, w)[None], None, False
    return _noise_clip(rng, h, w, int(rng.integers(1, FRAMES_RENDERED))), None, False


def _jpeg_roundtrip(frame: np.ndarray, quality: int) -> np.ndarray:
    """``frame`` after JPEG encoding at ``quality`` and decoding."""
    decoded = cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)
    assert decoded is not None, "OpenCV decodes the JPEG it has just encoded"
    return decoded


def _restyle(frames: np.ndarray, rng: np.random.Generator, box: tuple[int, int, int, int]) -> np.ndarray:
    """Scanner / display variation that no class owns (applied the same way to all)."""
    u = rng.uniform
    out = frames.astype(np.float32)
    if rng.random() < 0.5:
        g = u(0.6, 1.6)
        out = 255.0 * (out / 255.0) ** g
    if rng.random() < 0.4:
        out = out * u(0.5, 1.3) + u(-20, 30)
    if rng.random() < 0.3:
        out = out * np.asarray([u(0.7, 1.1), u(0.75, 1.05), u(0.6, 1.1)], np.float32)
    out = np.clip(out, 0, 255).astype(np.uint8)
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0 + 1, y1 - y0 + 1
    for f in range(len(out)):
        img = out[f]
        if rng.random() < 0.5:  # annotation corners blanked
            img[y0 : y0 + int(0.14 * bh), x0 : x0 + int(0.3 * bw)] = 0
            img[y0 : y0 + int(0.14 * bh), x1 - int(0.3 * bw) : x1 + 1] = 0
    if rng.random() < 0.5:  # random annotation text, same for every class
        word = str(rng.choice(WORDS))
        org = (int(x0 + u(0.02, 0.6) * bw), int(y0 + u(0.04, 0.2) * bh))
        for img in out:
            cv2.putText(img, word, org, cv2.FONT_HERSHEY_SIMPLEX, u(0.3, 0.8), (200, 200, 200), 1, cv2.LINE_AA)
    if rng.random() < 0.3:
        s = u(0.25, 0.6)
        h, w = out.shape[1:3]
        out = np.stack([cv2.resize(cv2.resize(f, (max(8, int(w * s)), max(8, int(h * s))), interpolation=cv2.INTER_AREA),
                                   (w, h), interpolation=cv2.INTER_NEAREST if rng.random() < 0.5 else cv2.INTER_LINEAR)
                        for f in out])
    if rng.random() < 0.3:
        q = int(u(20, 70))
        out = np.stack([_jpeg_roundtrip(f, q) for f in out])
    return out


def _warp(frames: np.ndarray, rng: np.random.Generator, box: tuple[int, int, int, int]) -> np.ndarray:
    """Anatomy and probe variation no class owns: a smooth random warp and a small rotation of the
    image box, reverberation bands and an acoustic shadow."""
    u = rng.uniform
    h, w = frames.shape[1:3]
    x0, y0, x1, y1 = box
    size = max(x1 - x0, y1 - y0, 8)
    amp = u(0.01, 0.05) * size
    grid = rng.normal(0, 1, (2, 5, 5)).astype(np.float32)
    dx = cv2.resize(grid[0], (w, h), interpolation=cv2.INTER_CUBIC) * amp
    dy = cv2.resize(grid[1], (w, h), interpolation=cv2.INTER_CUBIC) * amp
    ang = math.radians(u(-12, 12))
    cx, cy = (x0 + x1) / 2.0, y0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rx = cx + (xx - cx) * math.cos(ang) - (yy - cy) * math.sin(ang) + dx
    ry = cy + (xx - cx) * math.sin(ang) + (yy - cy) * math.cos(ang) + dy
    out = np.stack([cv2.remap(f, rx, ry, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT) for f in frames])
    if rng.random() < 0.4:  # reverberation: faint bright bands repeating with depth
        period = u(0.05, 0.15) * (y1 - y0 + 1)
        band = (np.cos(2 * math.pi * (yy - y0) / max(period, 2)) > 0.9).astype(np.float32) * u(10, 40)
        band *= (yy < y0 + u(0.2, 0.5) * (y1 - y0))
        lit = out.max(axis=3, keepdims=True) > 0
        out = np.clip(out.astype(np.float32) + band[None, :, :, None] * lit, 0, 255).astype(np.uint8)
    if rng.random() < 0.4:  # shadow: a dark wedge from the apex
        a0 = u(-0.6, 0.6)
        width = u(0.05, 0.2)
        theta = np.arctan2(xx - cx, np.maximum(yy - y0, 1))
        shade = np.where(np.abs(theta - a0) < width, u(0.1, 0.5), 1.0).astype(np.float32)
        out = (out.astype(np.float32) * shade[None, :, :, None]).astype(np.uint8)
    return out


def make_sample(args: tuple[str, int, str, int]) -> np.ndarray:
    """Features of one clip: ``(view, seed, style, augment)`` -> (3, 64, 64) float32.

    ``augment``: 0 as rendered; 1 re-styled (and sometimes without regions, or a box a little
    off); 2 also warped (:func:`_warp`) in 60 % of the clips.
    """
    from echomeasure.models.preprocess import detect_sector_box

    view, seed, style, augment = args
    rng = np.random.default_rng([seed, 99])
    frames, box, spectral = _render(view, seed, style, rng)
    h, w = frames.shape[1:3]
    if spectral:
        box = (0, 0, w - 1, h - 1)
    elif box is None or (augment and rng.random() < 0.25):
        box = detect_sector_box(frames).as_tuple()  # a video or screenshot: no regions
    if augment:
        if augment >= 2 and rng.random() < 0.6:
            frames = _warp(frames, rng, box)
        frames = _restyle(frames, rng, box)
        if rng.random() < 0.3:  # a box a few per cent off
            x0, y0, x1, y1 = box
            j = lambda n: int(rng.integers(-max(1, n // 20), max(1, n // 20) + 1))  # noqa: E731
            box = (max(0, x0 + j(x1 - x0)), max(0, y0 + j(y1 - y0)), min(w - 1, x1 + j(x1 - x0)), min(h - 1, y1 + j(y1 - y0)))
    return view_features(frames, box)


# --------------------------------------------------------------------------- data sets


def _jobs(per_class: int, seed0: int, styles: tuple[str, ...], augment: int,
          apical_styles: tuple[str, ...] | None = None) -> list[tuple[str, int, str, int]]:
    """Training jobs: ``per_class`` clips of each view; the styled views cycle through ``styles``
    (the apical ones through ``apical_styles`` when given).

    Raises ValueError when a style is the held-out family or a case seed would reach another
    view's seeds or the evaluation seeds.
    """
    from echomeasure.synthetic.styles import HELDOUT_STYLE

    apical = styles if apical_styles is None else apical_styles
    if HELDOUT_STYLE in styles or HELDOUT_STYLE in apical:
        raise ValueError(f"the {HELDOUT_STYLE!r} family is held out: it is never trained on")
    if seed0 < 0 or per_class > SEEDS_PER_VIEW or seed0 + SEEDS_PER_VIEW * len(VIEWS) > EVAL_SEED0:
        raise ValueError(f"training case seeds from {seed0} ({per_class} per view) would reach the evaluation "
                         f"seeds ({EVAL_SEED0} on) or another view's")
    jobs = []
    for k, view in enumerate(VIEWS):
        view_styles = apical if view in ("a4c", "a2c") else styles if view in STYLED_VIEWS else ("classic",)
        for i in range(per_class):
            jobs.append((view, seed0 + SEEDS_PER_VIEW * k + i, view_styles[i % len(view_styles)], augment))
    return jobs


#: Jobs per cached block: a larger set with the same seeds re-renders only its new blocks.
CACHE_BLOCK = 20


def _block_path(cache: Path, block: list[tuple[str, int, str, int]]) -> Path:
    import hashlib

    from echomeasure.synthetic.styles import STYLES_VERSION

    key = hashlib.sha256(repr((block, INPUT_PX, FRAMES_RENDERED, AUGMENT_VERSION, STYLES_VERSION)).encode()).hexdigest()[:16]
    return cache / f"view-block-{key}.npy"


def build_set(jobs: list[tuple[str, int, str, int]], workers: int, cache: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render the jobs (in ``workers`` processes) into (X, y).

    ``cache``: a folder where the features are kept in blocks of :data:`CACHE_BLOCK` consecutive
    jobs; only the jobs of blocks not found there are rendered.
    """
    blocks = [jobs[i : i + CACHE_BLOCK] for i in range(0, len(jobs), CACHE_BLOCK)]
    paths = [None if cache is None else _block_path(cache, b) for b in blocks]
    todo = [j for b, path in zip(blocks, paths, strict=True) if path is None or not path.is_file() for j in b]
    if workers > 1 and len(todo) > 1:
        with get_context("fork").Pool(workers) as pool:
            rendered = iter(pool.map(make_sample, todo, chunksize=4))
    else:
        rendered = iter([make_sample(j) for j in todo])
    parts = []
    for b, path in zip(blocks, paths, strict=True):
        if path is not None and path.is_file():
            parts.append(np.load(path))
            continue
        feats = np.stack([next(rendered) for _ in b]).astype(np.float32)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_bytes(str(path), _npy_bytes(feats))
        parts.append(feats)
    y = np.asarray([VIEWS.index(j[0]) for j in jobs], dtype=np.int64)
    x = np.concatenate(parts) if parts else np.zeros((0, 3, INPUT_PX, INPUT_PX), np.float32)
    return x, y


def _npy_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class GainAugment:
    """``--gain-augment``: the scanner's gain, compression and persistence knobs, drawn per sample
    on the classifier's input: a log-uniform gain on both grey channels, a gamma on the mean grey,
    a separate scale on the temporal spread (persistence and frame rate change it), sometimes a blur."""

    gain: tuple[float, float] = (0.7, 2.2)
    gamma: tuple[float, float] = (0.6, 1.4)
    spread_scale: tuple[float, float] = (0.5, 1.6)
    blur_p: float = 0.3
    blur_sigma_px: tuple[float, float] = (0.5, 1.5)

    def to_dict(self) -> dict:
        """Plain dict for the manifest."""
        return asdict(self)

    def __call__(self, features: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One classifier input (3, S, S) as another gain / compression / persistence setting would give it."""
        out = features.copy()
        gain = log_uniform(rng, self.gain)
        out[0] = np.clip(np.power(np.clip(out[0], 0.0, 1.0), rng.uniform(*self.gamma)) * gain, 0.0, 1.0)
        out[1] = out[1] * gain * rng.uniform(*self.spread_scale)
        if rng.random() < self.blur_p:
            sigma = float(rng.uniform(*self.blur_sigma_px))
            for c in (0, 1):
                out[c] = cv2.GaussianBlur(out[c], (0, 0), sigma)
        return out


def train_net(x: np.ndarray, y: np.ndarray, *, epochs: int, seed: int, init=None, max_lr: float = 3e-3,
              gain: bool = False):
    """Train the tiny CNN (AdamW, one-cycle schedule, flips and small shifts); returns it in eval mode.

    ``init``: a network to continue from (fine-tuning) instead of a fresh one.  ``gain``: also
    :class:`GainAugment` half of the samples.
    """
    import torch
    from torch import nn

    torch.manual_seed(seed)
    gen = np.random.default_rng(seed)
    net = init if init is not None else build_view_net(len(VIEWS))
    opt = torch.optim.AdamW(net.parameters(), lr=max_lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(x) / 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    net.train()
    for epoch in range(epochs):
        order = gen.permutation(len(x))
        total = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * 64 : (b + 1) * 64]
            xb = x[idx].copy()
            flip = gen.random(len(idx)) < 0.5
            xb[flip] = xb[flip][..., ::-1]
            for i in range(len(xb)):
                dy, dx = gen.integers(-3, 4, size=2)
                xb[i] = np.roll(xb[i], (int(dy), int(dx)), axis=(1, 2))
                if gain and gen.random() < 0.5:
                    xb[i] = GainAugment()(xb[i], gen)
                else:
                    xb[i, 0] *= gen.uniform(0.8, 1.2)
                    xb[i, 1] *= gen.uniform(0.7, 1.3)
            logits = net(torch.from_numpy(np.ascontiguousarray(xb)))
            loss = loss_fn(logits, torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if epoch % 10 == 0 or epoch == epochs - 1:
            log.info("epoch %d loss %.4f", epoch, total / len(x))
    return net.eval()


def predict(net, x: np.ndarray) -> np.ndarray:
    """Class probabilities (N, 5)."""
    import torch

    with torch.no_grad():
        return torch.softmax(net(torch.from_numpy(x)), dim=1).numpy()


def real_decisions(net) -> dict[str, dict]:
    """The decisions on pydicom's real ultrasound files (through the real reader and de-identification)."""
    from pydicom.data import get_testdata_file

    from echomeasure.models.view import clip_features, decide
    from echomeasure.propose.measure import load_deidentified

    out = {}
    for name in ("examples_ybr_color.dcm", "examples_palette.dcm", "examples_rgb_color.dcm", "examples_jpeg2k.dcm"):
        path = get_testdata_file(name)
        assert isinstance(path, str), f"pydicom's test file {name} is missing"
        clip = load_deidentified(path, secret=b"view-train-real-check")
        d = decide(predict(net, clip_features(clip)[None])[0])
        out[name] = {"view": d.name, "confidence": round(d.confidence, 4), "probabilities": d.probabilities}
    return out


def _eval_families(per_family: int) -> dict[str, list[tuple[str, int, str, int]]]:
    """Held-out jobs: new seeds; PLAX, A4C, A2C and Doppler in the default training families and the
    held-out one, each family once as rendered and once re-styled (``rf``, trained on only when
    named, is not in this benchmark: its clips would count as an own style)."""
    from echomeasure.synthetic.styles import DEFAULT_TRAINING_STYLES, HELDOUT_STYLE, STYLE_FAMILIES

    evaluated = tuple(s for s in STYLE_FAMILIES if s in (*DEFAULT_TRAINING_STYLES, HELDOUT_STYLE))
    families: dict[str, list[tuple[str, int, str, int]]] = {}
    for view in VIEWS:
        styles = evaluated if view in STYLED_VIEWS else ("classic",)
        for style in styles:
            for aug in (False, True):
                key = f"{view}/{style}" + ("+restyled" if aug else "")
                families[key] = [(view, EVAL_SEED0 + SEEDS_PER_VIEW * VIEWS.index(view) + 1000 * STYLE_FAMILIES.index(style)
                                  + 500 * aug + i, style, int(aug)) for i in range(per_family)]
    return families


def _per_family_accuracy(families: dict[str, list], pred: np.ndarray, truth: np.ndarray) -> dict[str, dict[str, Any]]:
    """Accuracy and what each family was confused with (jobs in ``families`` order)."""
    per_family: dict[str, dict[str, Any]] = {}
    start = 0
    for key, js in families.items():
        n = len(js)
        fam_pred, fam_true = pred[start : start + n], truth[start : start + n]
        per_family[key] = {"n": n, "accuracy_pct": round(100.0 * float(np.mean(fam_pred == fam_true)), 2),
                           "confused_as": {VIEWS[k]: int(np.sum(fam_pred == k))
                                           for k in range(len(VIEWS)) if k != truth[start] and np.any(fam_pred == k)}}
        start += n
    return per_family


def registered_metrics(families: dict[str, list], pred: np.ndarray, truth: np.ndarray) -> dict[str, dict[str, float]]:
    """The registry's figures: accuracy per view and the worst family, on the training families
    (own style) and on the held-out family (held-out style), each as rendered and re-styled."""
    from echomeasure.models.registry import HELDOUT_STYLE as HELDOUT_PROTOCOL
    from echomeasure.models.registry import OWN_STYLE
    from echomeasure.synthetic.styles import HELDOUT_STYLE

    styles = np.asarray([job[2] for jobs in families.values() for job in jobs])
    per_family = _per_family_accuracy(families, pred, truth)
    metrics: dict[str, dict[str, float]] = {}
    for protocol, held_out in ((OWN_STYLE, False), (HELDOUT_PROTOCOL, True)):
        chosen = (styles == HELDOUT_STYLE) == held_out
        figures = {f"{v}_accuracy_pct": round(100.0 * float(np.mean(pred[chosen & (truth == k)] == k)), 2)
                   for k, v in enumerate(VIEWS) if np.any(chosen & (truth == k))}
        figures["min_family_accuracy_pct"] = min(
            f["accuracy_pct"] for key, f in per_family.items() if (key.split("/")[1].split("+")[0] == HELDOUT_STYLE) == held_out)
        metrics[protocol] = figures
    return metrics


def evaluate_registered(per_family: int, keys: list[str] | None, version: str | None, weights_dir: Any,
                        workers: int) -> dict[str, dict[str, Any]]:
    """Accuracy of a registered view classifier on held-out families (no training).

    ``keys``: family names of :func:`_eval_families` (e.g. ``a4c/scatter``, ``a2c/vendor+restyled``);
    None for all of them.
    """
    from echomeasure.models.view import load_view_network

    families = _eval_families(per_family)
    if keys is not None:
        unknown = sorted(set(keys) - set(families))
        if unknown:
            raise ValueError(f"unknown families {unknown}; known: {sorted(families)}")
        families = {k: families[k] for k in keys}
    jobs = [j for js in families.values() for j in js]
    x, y = build_set(jobs, workers)
    net = load_view_network(version, weights_dir)
    return _per_family_accuracy(families, predict(net, x).argmax(axis=1), y)


def _evaluate_only(args: argparse.Namespace) -> int:
    """``--evaluate-only``: evaluate the registered version on families and merge the rows into the report JSON."""
    keys = [k.strip() for k in args.families.split(",") if k.strip()] if args.families else None
    t0 = time.time()
    rows = evaluate_registered(args.eval_per_family, keys, args.version, args.out, args.workers)
    report_path = Path(args.report + ".json")
    report = json.loads(report_path.read_text()) if report_path.is_file() else {"version": args.version, "per_family": {}}
    if report.get("version") == args.version:
        report["per_family"].update(rows)
        recipe = (f"nice -n 5 python -m echomeasure.training.view_train --evaluate-only --version {args.version} "
                  f"--eval-per-family {args.eval_per_family}" + (f" --families {args.families}" if args.families else ""))
        report.setdefault("evaluated_separately", {}).update({k: recipe for k in rows})
        atomic.write_text(str(report_path), json.dumps(report, indent=1) + "\n")
    print(json.dumps({"per_family": rows, "eval_s": round(time.time() - t0, 1)}))
    return 0


def _view_step_ms(net) -> float:
    """The view step (features + network) on a 100-frame 600x800 clip: median of 5, in ms."""
    from echomeasure.ingest.clip import Clip
    from echomeasure.models.view import clip_features

    clip = Clip(frames=np.random.default_rng(0).integers(0, 255, (100, 600, 800, 3), dtype=np.uint8), frame_time_ms=20.0,
                regions=(), source_kind="video")
    times = []
    for _ in range(5):
        t = time.perf_counter()
        predict(net, clip_features(clip)[None])
        times.append(time.perf_counter() - t)
    return round(1000 * float(np.median(times)), 2)


def _parser() -> argparse.ArgumentParser:
    """The training script's options (recipe defaults from :data:`RECIPE_DEFAULTS`)."""
    from echomeasure import config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="weights folder (default: $ECHOMEASURE_WEIGHTS or weights/)")
    p.add_argument("--version", default="1.0")
    p.add_argument("--train-per-class", type=int, default=RECIPE_DEFAULTS["train_per_class"])
    p.add_argument("--eval-per-family", type=int, default=RECIPE_DEFAULTS["eval_per_family"])
    p.add_argument("--epochs", type=int, default=RECIPE_DEFAULTS["epochs"])
    p.add_argument("--seed", type=int, default=RECIPE_DEFAULTS["seed"],
                   help=f"torch seed; training case seeds start at {TRAIN_SEED0} + seed")
    p.add_argument("--apical-styles", metavar="STYLES",
                   help="style families of the apical training clips (default: those of PLAX and Doppler; "
                        "'classic' gives version 1.0's data)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--init-from", metavar="VERSION", help="fine-tune this registered view version (its weights folder)")
    p.add_argument("--max-lr", type=float, default=3e-3)
    p.add_argument("--warp", action="store_true", help="also warp, rotate, shadow and add reverberation (augment level 2)")
    p.add_argument("--gain-augment", action="store_true",
                   help="also vary gain, compression, persistence and blur on the classifier input (GainAugment)")
    p.add_argument("--report", default=str(config.PROJECT_ROOT / "benchmarks" / "view_accuracy"),
                   help="report path without extension (.json and .md are written)")
    p.add_argument("--evaluate-only", action="store_true",
                   help="no training: evaluate the registered --version on held-out families and merge the rows "
                        "into the report JSON")
    p.add_argument("--families", metavar="KEYS", help="with --evaluate-only: comma-separated families, e.g. a4c/scatter")
    return p


def main(argv: list[str] | None = None) -> int:
    """Train, evaluate, save and register the view classifier; write the benchmark report."""
    import torch

    from echomeasure import config
    from echomeasure.errors import InvalidInputError
    from echomeasure.models.registry import OWN_STYLE, WeightsEntry, register, save_weights
    from echomeasure.synthetic.styles import DEFAULT_TRAINING_STYLES, HELDOUT_STYLE, parse_training_styles
    from echomeasure.training.datasets import refuse, refuse_unwritable

    parser = _parser()
    args = parser.parse_args(argv)
    try:
        apical_styles = parse_training_styles(args.apical_styles, DEFAULT_TRAINING_STYLES)
    except InvalidInputError as exc:
        parser.error(f"--apical-styles: {exc}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    refuse_unwritable("--report", args.report + ".json", args.report + ".md")
    torch.set_num_threads(1)  # a tiny network: one thread is as fast and shares a busy CPU better
    if args.evaluate_only:
        return _evaluate_only(args)
    t0 = time.time()
    from echomeasure.models.runtime import cache_dir

    cache = cache_dir() / "view-train"  # rendered feature sets: a re-run with the same recipe skips rendering
    try:
        jobs = _jobs(args.train_per_class, TRAIN_SEED0 + args.seed, DEFAULT_TRAINING_STYLES, 2 if args.warp else 1,
                     apical_styles)
    except ValueError as exc:  # a seed range reaching the evaluation seeds: before anything is rendered
        refuse(str(exc))
    x, y = build_set(jobs, args.workers, cache)
    t_data = time.time() - t0
    log.info("training set %s in %.0f s", x.shape, t_data)
    t1 = time.time()
    init = None
    if args.init_from:
        from echomeasure.models.view import load_view_network

        init = load_view_network(args.init_from, args.out)
    net = train_net(x, y, epochs=args.epochs, seed=args.seed, init=init, max_lr=args.max_lr, gain=args.gain_augment)
    t_train = time.time() - t1
    log.info("trained in %.0f s", t_train)

    # held-out evaluation: new seeds; PLAX, A4C, A2C and Doppler in every style family (incl. the held-out one);
    # each family once as rendered and once re-styled
    families = _eval_families(args.eval_per_family)
    jobs = [j for js in families.values() for j in js]
    xe, ye = build_set(jobs, args.workers, cache)
    pred = predict(net, xe).argmax(axis=1)
    per_family = _per_family_accuracy(families, pred, ye)
    per_view = {v: round(100.0 * float(np.mean(pred[ye == k] == k)), 2) for k, v in enumerate(VIEWS)}
    confusion = np.zeros((len(VIEWS), len(VIEWS)), dtype=int)
    for t, q in zip(ye, pred, strict=True):
        confusion[t, q] += 1
    real = real_decisions(net)

    speed_ms = _view_step_ms(net)

    out_dir = Path(args.out) if args.out else config.weights_dir()
    file = f"{VIEW_MODEL}-{args.version}.pt"
    sha = save_weights(net, out_dir / file, precision="fp32")
    metrics = registered_metrics(families, pred, ye)
    metrics[OWN_STYLE]["view_step_ms_100x600x800"] = speed_ms
    recipe = (f"nice -n 5 python -m echomeasure.training.view_train --version {args.version} --train-per-class "
              f"{args.train_per_class} --eval-per-family {args.eval_per_family} --epochs {args.epochs} --seed {args.seed}"
              + (f" --init-from {args.init_from} --max-lr {args.max_lr}" if args.init_from else "")
              + (" --warp" if args.warp else "")
              + (" --gain-augment" if args.gain_augment else "")
              + (f" --apical-styles {','.join(apical_styles)}" if args.apical_styles is not None else ""))
    entry = WeightsEntry(
        name=VIEW_MODEL, version=args.version, arch=VIEW_ARCH, input_size=(INPUT_PX, INPUT_PX), channels=VIEWS, file=file,
        sha256=sha, normalisation="unit",
        trained_on=(f"synthetic clips, {args.train_per_class} per view: PLAX and Doppler in styles "
                    f"{','.join(DEFAULT_TRAINING_STYLES)}, apical A4C/A2C in styles {','.join(apical_styles)}, 'other' negatives "
                    f"(PSAX, non-cardiac curved/linear/sector ultrasound, colour flow, M-mode, graphics, noise); "
                    f"case seeds from {TRAIN_SEED0 + args.seed}"),
        seed=args.seed, recipe=recipe, metrics=metrics, num_params=sum(p.numel() for p in net.parameters()),
        parent=args.init_from,
        extra={"eval_seeds_from": EVAL_SEED0, "heldout_style": HELDOUT_STYLE, "train_data_s": round(t_data, 1),
               "train_s": round(t_train, 1), "input": "64x64 letterbox: temporal mean grey, temporal std, saturation",
               **({"gain_augment": GainAugment().to_dict()} if args.gain_augment else {})},
    )
    register(entry, weights_dir=out_dir)
    report = {"version": args.version, "per_view_accuracy_pct": per_view, "metrics": metrics, "per_family": per_family,
              "confusion": {"rows_true_cols_predicted": list(VIEWS), "matrix": confusion.tolist()},
              "real_pydicom": real, "view_step_ms_100x600x800": speed_ms, "train_data_s": round(t_data, 1),
              "train_s": round(t_train, 1), "recipe": recipe, "sha256": sha}
    atomic.write_text(args.report + ".json", json.dumps(report, indent=1) + "\n")
    atomic.write_text(args.report + ".md", _markdown(report))
    print(json.dumps({"per_view": per_view, "min_family": {k: m["min_family_accuracy_pct"] for k, m in metrics.items()},
                      "real": {k: v["view"] for k, v in real.items()},
                      "speed_ms": speed_ms, "data_s": round(t_data), "train_s": round(t_train)}))
    return 0


def _markdown(r: dict) -> str:
    lines = [f"# View classifier {r['version']}: held-out accuracy", "",
             "Held-out synthetic clips (case seeds never used in training). PLAX, A4C, A2C and Doppler in every style "
             "family, "
             "including the held-out family no model trains on; each family also re-styled (contrast, LUT, blur, JPEG, "
             "annotation text).", "", "| family | n | accuracy % | confused as |", "|---|---|---|---|"]
    for k, f in r["per_family"].items():
        conf = ", ".join(f"{v} {n}" for v, n in f["confused_as"].items()) or "-"
        lines.append(f"| {k} | {f['n']} | {f['accuracy_pct']} | {conf} |")
    lines += ["", "Per view: " + ", ".join(f"{v} {a} %" for v, a in r["per_view_accuracy_pct"].items()), "",
              "## Real files (pydicom test data)", "", "| file | view | confidence |", "|---|---|---|"]
    for k, v in r["real_pydicom"].items():
        lines.append(f"| {k} | {v['view']} | {v['confidence']} |")
    lines += ["",
              f"View step (features + network) on a 100-frame 600x800 clip: {r['view_step_ms_100x600x800']} ms (median of 5).",
              f"Training: data {r['train_data_s']} s, network {r['train_s']} s on the shared 2-core CPU.", "",
              f"Recipe: `{r['recipe']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
