"""Synthetic training and held-out data for the two keypoint models.

Seed ranges
-----------
Every synthetic case is rendered from its own integer *case seed*
(``numpy.random.default_rng(case_seed)`` draws its parameters and its speckle), so a case is
identified by its seed alone.

* :data:`TRAIN_SEEDS` ``[1_000_000, 2_000_000)``: the only seeds training ever renders
  (case ``i`` of a training set of n cases uses seed ``1_000_000 + i``; Doppler cases add
  ``500_000`` so the two models' cases are distinct).
* :data:`HELDOUT_SEEDS` ``[9_000_000, 9_100_000)``: held-out cases for evaluation; training
  never sees them.
* ``echomeasure synth`` and the examples use small seeds (``< 1_000_000``), disjoint from both.

Caching
-------
Rendering a PLAX cine costs far more than a training step, so a training set is rendered once
into a cache (``$ECHOMEASURE_CACHE`` or ``~/.cache/echomeasure``): model-resolution uint8
images plus keypoints in model pixels, keyed by everything that changes them (generator
version, seeds, frames per case, input size).  Intensity augmentation is applied on the fly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from tqdm import tqdm

from echomeasure import atomic
from echomeasure.catalog import DOPPLER_CHANNELS
from echomeasure.models.preprocess import CropTransform
from echomeasure.training.augment import (
    AppearanceAugment,
    ArtefactAugment,
    BloomAugment,
    ExposureAugment,
    GeometryAugment,
    IntensityAugment,
    SpectrumAugment,
)
from echomeasure.training.batch import KeypointBatch
from echomeasure.training.heatmaps import multi_peak_heatmaps

log = logging.getLogger(__name__)

TRAIN_SEEDS = range(1_000_000, 2_000_000)
HELDOUT_SEEDS = range(9_000_000, 9_100_000)
DOPPLER_SEED_OFFSET = 500_000
#: At most this many beats per Doppler strip are kept as targets (padding of the point array).
MAX_BEATS = 16


def train_case_seeds(n_cases: int, mode: str) -> list[int]:
    """Case seeds of a training set of ``n_cases`` for ``mode`` ("2d" or "doppler")."""
    base = TRAIN_SEEDS.start + (DOPPLER_SEED_OFFSET if mode == "doppler" else 0)
    seeds = list(range(base, base + n_cases))
    if seeds and seeds[-1] >= TRAIN_SEEDS.stop:
        raise ValueError(f"{n_cases} cases do not fit in the training seed range")
    return seeds


def refuse(message: str) -> NoReturn:
    """A training script's user error: one ``error:`` line on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def refuse_unwritable(option: str, *paths: str | Path) -> None:
    """Refuse (:func:`refuse`) an output file a training script would write only at its end (a
    report) when it cannot be written there, before any rendering or training."""
    from echomeasure.atomic import check_output_path
    from echomeasure.errors import InvalidInputError

    for path in paths:
        try:
            check_output_path(path)
        except InvalidInputError as exc:
            refuse(f"{option} {exc}")


def seeds_apart_from(first: int, n_cases: int, evaluation: range, seed: int) -> range:
    """Case seeds ``first .. first + n_cases - 1`` of a trainer's run at ``--seed seed``.

    Raises
    ------
    SystemExit
        Status 2 (:func:`refuse`): the range reaches the trainer's ``evaluation`` seeds; before
        anything is rendered or written.
    """
    seeds = range(first, first + n_cases)
    if seeds.start < evaluation.stop and seeds.stop > evaluation.start:
        refuse(f"--seed {seed} with --cases {n_cases} would train on case seeds reserved for evaluation "
               f"({evaluation.start}-{evaluation.stop - 1}); choose another --seed")
    return seeds


def heldout_case_seeds(n_cases: int, mode: str) -> list[int]:
    """Case seeds of the held-out evaluation set (disjoint from every training seed)."""
    base = HELDOUT_SEEDS.start + (DOPPLER_SEED_OFFSET // 10 if mode == "doppler" else 0)
    return list(range(base, base + n_cases))


def cache_dir() -> Path:
    """Folder for rendered training sets (git-ignored, outside the repository by default)."""
    return Path(os.environ.get("ECHOMEASURE_CACHE") or Path.home() / ".cache" / "echomeasure")


def generator_version() -> str:
    """Version string of the synthetic generator (part of every cache key and manifest)."""
    from echomeasure import synthetic

    return str(getattr(synthetic, "GENERATOR_VERSION", getattr(synthetic, "__version__", "unversioned")))


# --------------------------------------------------------------------------- rendering


def _to_grey_if_possible(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) -> (N, H, W, 1) when every pixel is grey (saves two thirds of the cache)."""
    if np.array_equal(images[..., 0], images[..., 1]) and np.array_equal(images[..., 0], images[..., 2]):
        return images[..., :1]
    return images


#: Image size of "small" cases (smoke runs and tests): fast to render.
SMALL_IMAGE_SIZE: tuple[int, int] = (240, 320)


def plax_params_for_seed(case_seed: int, small: bool = False, style: str = "classic"):
    """The PLAX case parameters of a case seed (``small``: a 240x320 image, fewer frames) in a
    style family (:mod:`echomeasure.synthetic.styles`; classic: the original generator)."""
    from echomeasure.synthetic.styles import sample_styled_plax_params

    rng = np.random.default_rng(case_seed)
    kwargs = {"image_size": SMALL_IMAGE_SIZE, "n_frames": 12} if small else {}
    return sample_styled_plax_params(rng, style, seed=case_seed, **kwargs)


def doppler_case(case_seed: int, small: bool = False, style: str = "classic"):
    """The synthetic Doppler strip of a case seed (``small``: a 240x320 image), flow drawn."""
    from echomeasure.synthetic.styles import render_styled_doppler, sample_styled_doppler_params

    rng = np.random.default_rng(case_seed)
    kwargs: dict[str, Any] = {"image_size": SMALL_IMAGE_SIZE} if small else {}
    return render_styled_doppler(sample_styled_doppler_params(rng, style, seed=case_seed, **kwargs), style)


def render_plax_case(case_seed: int, input_size: tuple[int, int], frames_per_case: int,
                     small: bool = False, style: str = "classic") -> tuple[np.ndarray, np.ndarray]:
    """Render one PLAX training case at model resolution.

    Parameters
    ----------
    case_seed : int
        Seed of the case (parameters and speckle).
    input_size : (H, W)
        Model input size.
    frames_per_case : int
        Evenly spaced frames kept from the cine; end-diastole and end-systole are always among
        them (they carry the measurements).
    small : bool
        Render a small image (fast; for smoke runs and tests).

    Returns
    -------
    images : (F, H, W, 3) uint8
    points : (F, 8, 2) float32 keypoints in model pixels (``catalog.KEYPOINTS_2D`` order).
    """
    from echomeasure.synthetic.styles import render_styled_plax

    params = plax_params_for_seed(case_seed, small=small, style=style)
    n = params.n_frames
    ed, es = _styled_ed_es(params, style)
    keep = set(np.linspace(0, n - 1, max(1, frames_per_case - 2)).round().astype(int).tolist())
    order = sorted(keep | {int(ed), int(es)})
    cine = render_styled_plax(params, style, frames=order, labels=False)
    transform = _crop_for(cine.regions, cine.frames.shape[1:3], input_size, "2d")
    images = transform.crop_resize(cine.frames)
    points = transform.to_model(cine.keypoints).astype(np.float32)
    return images, points


def _styled_ed_es(params, style: str) -> tuple[int, int]:
    """ED and ES frames of a case as its family renders it (a warp can move them)."""
    from echomeasure.synthetic.plax import ed_es_frames
    from echomeasure.synthetic.styles import render_styled_plax

    if style == "classic":
        return ed_es_frames(params)
    probe = render_styled_plax(params, style, frames=[0])
    return probe.ed_frame, probe.es_frame


def render_doppler_case(case_seed: int, input_size: tuple[int, int], small: bool = False,
                        style: str = "classic") -> tuple[np.ndarray, np.ndarray]:
    """Render one Doppler training strip at model resolution.

    Returns
    -------
    image : (H, W, 3) uint8
    peaks : (C, MAX_BEATS, 2) float32 per-channel per-beat peaks in model pixels (NaN padding),
        channels in ``catalog.DOPPLER_CHANNELS`` order.
    """
    strip = doppler_case(case_seed, small=small, style=style)
    transform = _crop_for(strip.regions, strip.image.shape[:2], input_size, "doppler")
    image = transform.crop_resize(strip.image)[0]
    peaks = np.full((len(DOPPLER_CHANNELS), MAX_BEATS, 2), np.nan, dtype=np.float32)
    for c, name in enumerate(DOPPLER_CHANNELS):
        pts = np.asarray(strip.peaks.get(name, []), dtype=np.float64).reshape(-1, 2)[:MAX_BEATS]
        if len(pts):
            peaks[c, : len(pts)] = transform.to_model(pts)
    return image, peaks


def _crop_for(regions, shape_hw, input_size, mode) -> CropTransform:
    from echomeasure.ingest.clip import Clip

    h, w = int(shape_hw[0]), int(shape_hw[1])
    clip = Clip(frames=np.zeros((1, h, w, 3), np.uint8), frame_time_ms=None, regions=tuple(regions),
                source_kind="dicom")
    return CropTransform.for_clip(clip, input_size, mode)


# --------------------------------------------------------------------------- cache


@dataclass(frozen=True)
class TrainingSetSpec:
    """What a cached training set holds; its hash names the cache file."""

    mode: str  # "2d" | "doppler"
    n_cases: int
    input_size: tuple[int, int]
    frames_per_case: int = 1
    small: bool = False
    #: style families (:mod:`echomeasure.synthetic.styles`): case ``i`` is rendered in ``styles[i % len]``
    styles: tuple[str, ...] = ("classic",)

    def style_of(self, index: int) -> str:
        """Family of the ``index``-th case."""
        return self.styles[index % len(self.styles)]

    @property
    def seeds(self) -> list[int]:
        """The case seeds, from :data:`TRAIN_SEEDS`."""
        return train_case_seeds(self.n_cases, self.mode)

    def key(self) -> str:
        """Cache key: changes whenever the rendered content would."""
        d = {"mode": self.mode, "n": self.n_cases, "size": list(self.input_size),
             "fpc": self.frames_per_case, "small": self.small, "gen": generator_version(), "fmt": 1}
        if self.mode == "doppler":
            d["display"] = "inverted strips turned upright"  # preprocess.doppler_display_inverted
        if tuple(self.styles) != ("classic",):
            from echomeasure.synthetic.styles import STYLES_VERSION

            d["styles"] = [*self.styles, STYLES_VERSION]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> dict:
        """Manifest description of the training data."""
        seeds = self.seeds
        return {"generator": "echomeasure.synthetic", "generator_version": generator_version(),
                "mode": self.mode, "case_seeds": [seeds[0], seeds[-1]] if seeds else [],
                "n_cases": self.n_cases, "frames_per_case": self.frames_per_case,
                "n_samples_max": self.n_cases * (self.frames_per_case if self.mode == "2d" else 1),
                "train_seed_range": [TRAIN_SEEDS.start, TRAIN_SEEDS.stop],
                "heldout_seed_range": [HELDOUT_SEEDS.start, HELDOUT_SEEDS.stop], "small": self.small,
                "styles": list(self.styles)}


def build_cache(spec: TrainingSetSpec, progress: bool = True,
                folder: Path | None = None) -> Path:
    """Render a training set once and keep it as a compressed ``.npz`` (reused when present).

    Returns
    -------
    Path of the cache file.
    """
    folder = folder or cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec.mode}-{spec.key()}.npz"
    if path.exists():
        log.info("using cached training set %s", path)
        return path
    images: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    case_ids: list[int] = []
    for i, seed in enumerate(tqdm(spec.seeds, desc=f"render {spec.mode}", file=sys.stderr, disable=not progress,
                                  dynamic_ncols=True, mininterval=2.0)):
        if spec.mode == "2d":
            imgs, pts = render_plax_case(seed, spec.input_size, spec.frames_per_case, spec.small, spec.style_of(i))
        else:
            img, pts = render_doppler_case(seed, spec.input_size, spec.small, spec.style_of(i))
            imgs, pts = img[None], pts[None]
        images.append(imgs)
        targets.append(pts)
        case_ids.extend([seed] * len(imgs))
    arr = _to_grey_if_possible(np.concatenate(images))
    # through a file object: given a name without .npz, numpy would append the suffix
    with atomic.atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, images=arr, targets=np.concatenate(targets), case_seed=np.asarray(case_ids),
                            spec=json.dumps(spec.describe()))
    log.info("rendered %d training images to %s", len(arr), path)
    return path


# --------------------------------------------------------------------------- batches


class HeatmapTrainingSet:
    """Model-resolution images with keypoint targets; draws augmented :class:`KeypointBatch` es.

    Parameters
    ----------
    images : (N, H, W, 1 or 3) uint8
        Model-resolution frames.
    targets : (N, K, 2) or (N, K, M, 2) float32
        Keypoints in model pixels; NaN where a channel has no point.
    sigma_px : float
        Gaussian sigma of the heatmap targets (model pixels).
    augment : IntensityAugment or None
        Intensity augmentation applied to each drawn image.
    geometry, appearance, artefact : optional
        Similarity transform (keypoints move with it), display look, acoustic artefacts (2D) or
        spectral broadening and grain (Doppler).
    exposure : optional
        Overall gain and noise floor beyond ``augment``'s mild range.
    bloom : optional
        Re-imaging through a point-spread function and log compression (tissue blooming into the
        blood; the keypoints stay), at ``bloom_px_per_mm`` model pixels per millimetre.
    """

    def __init__(self, images: np.ndarray, targets: np.ndarray, sigma_px: float,
                 augment: IntensityAugment | None = None, geometry: GeometryAugment | None = None,
                 appearance: AppearanceAugment | None = None,
                 artefact: ArtefactAugment | SpectrumAugment | None = None,
                 exposure: ExposureAugment | None = None, *, bloom: BloomAugment | None = None,
                 bloom_px_per_mm: float = 1.0) -> None:
        if targets.ndim == 3:
            targets = targets[:, :, None, :]
        if len(images) != len(targets):
            raise ValueError("images and targets differ in length")
        self.images = images
        self.targets = targets.astype(np.float32)
        self.sigma_px = float(sigma_px)
        self.augment = augment
        self.geometry = geometry
        self.appearance = appearance
        self.artefact = artefact
        self.exposure = exposure
        self.bloom = bloom
        self.bloom_px_per_mm = float(bloom_px_per_mm)

    @classmethod
    def from_cache(cls, path: Path, sigma_px: float, augment: IntensityAugment | None = None,
                   geometry: GeometryAugment | None = None,
                   appearance: AppearanceAugment | None = None,
                   artefact: ArtefactAugment | SpectrumAugment | None = None,
                   exposure: ExposureAugment | None = None, *, bloom: BloomAugment | None = None,
                   bloom_px_per_mm: float = 1.0) -> HeatmapTrainingSet:
        """Load a set written by :func:`build_cache`."""
        with np.load(path) as z:
            return cls(z["images"], z["targets"], sigma_px, augment, geometry, appearance, artefact, exposure,
                       bloom=bloom, bloom_px_per_mm=bloom_px_per_mm)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def input_size(self) -> tuple[int, int]:
        """Model input (H, W)."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    def sample(self, index: int, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One (image (3, H, W) float32, heatmaps (K, H, W), points (K, M, 2)) training sample."""
        img = self.images[index]
        if img.shape[-1] == 1:
            img = np.repeat(img, 3, axis=-1)
        pts = self.targets[index]
        if rng is not None and self.geometry is not None:
            img, pts = self.geometry(img, pts, rng)
        if rng is not None and self.artefact is not None:
            img = self.artefact(img, rng)
        if rng is not None and self.bloom is not None:
            img = self.bloom(img, rng, self.bloom_px_per_mm)
        if rng is not None and self.exposure is not None:
            img = self.exposure(img, rng)
        if rng is not None and self.appearance is not None:
            img = self.appearance(img, rng)
        x = self.augment(img, rng) if (self.augment is not None and rng is not None) else img.astype(np.float32) / 255.0
        h, w = self.input_size
        heat = multi_peak_heatmaps([p[np.isfinite(p).all(-1)] for p in pts], h, w, self.sigma_px)
        return np.ascontiguousarray(x.transpose(2, 0, 1)), heat, pts

    def batch(self, rng: np.random.Generator, batch_size: int) -> KeypointBatch:
        """Draw a random augmented batch (uses only ``rng``)."""
        idx = rng.integers(0, len(self), size=batch_size)
        xs, hs, ps = zip(*(self.sample(int(i), rng) for i in idx), strict=True)
        heat = torch.from_numpy(np.stack(hs))
        return KeypointBatch(images=torch.from_numpy(np.stack(xs)), heatmaps=heat,
                             pixel_weight=torch.ones_like(heat), points_px=torch.from_numpy(np.stack(ps)))

    def __call__(self, rng: np.random.Generator, batch_size: int) -> KeypointBatch:
        return self.batch(rng, batch_size)
