"""Fine-tune a registered model from the sonographers' reviews.

What the reviews mean as training data
--------------------------------------
* **accepted** and **corrected** measurements: their final points are targets (Gaussian
  heatmaps) for the keypoints they place; **added** ones likewise.
* **rejected** proposals: the model's point was wrong, but where the right point is is unknown.
  They are *not* targets.  Their frame becomes a hard negative *for those keypoints only*:
  the heatmap is pushed to zero in a disc of radius ``2 sigma`` around each rejected point and
  nothing else on that channel is learned from the frame.
* Keypoints nobody reviewed on a frame carry no loss at all (an unreviewed keypoint is not
  "absent", it is unknown).

Training mixes every batch half-and-half with synthetic cases from the training seed range
(replay against forgetting) and starts from the base weights with a small learning rate.

The site's caliper convention
-----------------------------
``propose`` refines every PLAX endpoint onto the ASE tissue-blood interface along its caliper
line (:mod:`echomeasure.propose.edges`), which would snap the fine-tuned points straight back
from a reviewer's convention (e.g. leading edge) onto the interface.  So a site's convention is
also learned as a systematic offset of each endpoint from the interface along its caliper line
(:func:`learn_edge_offsets_mm`): on the frames of the *training* split, the parent runs through
the real ``propose`` (edge refinement on, its own offsets included) and, per keypoint, the
median signed distance along the line between the reviewer's final point and the parent's is
added to the parent's offset (at least :data:`MIN_OFFSET_SAMPLES` frames; a residual below
:data:`MIN_EDGE_OFFSET_MM` or within :data:`MIN_EDGE_OFFSET_SE` standard errors of 0 is taken for
none; clipped to :data:`MAX_EDGE_OFFSET_MM`).  The result is part of the
new version's decode settings (``entry.decode.edge_offsets_mm``; how many frames each offset
rests on is in ``extra["finetune"]["edge_offsets"]``), and ``propose`` applies it after the
refinement.  The weights
are fine-tuned as before (the offsets act on top of them).

Evaluation, before and after, on a held-out split of the reviews (by clip, so frames of one clip
never sit on both sides) and on the synthetic hold-out of :mod:`echomeasure.training.evaluate`;
both go through the real ``propose`` path.  The new version is registered in the weights
manifest (parent, data used, metrics, sha256) and in the review store's ``model_version``
table.  It becomes the active version only if it was measured on the review hold-out, is not worse there and not
markedly worse (more than 25 %) on the synthetic hold-out, unless asked otherwise.  Both
evaluations use each version's own decoding (the child's offsets included).  The synthetic
hold-out follows the ASE convention, so a version with a site convention is meant to differ
from it by about its offsets: the activation guard against forgetting then looks at the
child's synthetic error without its offsets (``synthetic_holdout_without_offsets``).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
import torch

from echomeasure import catalog
from echomeasure import config as config_module
from echomeasure.errors import StoreError, TrainingError
from echomeasure.ingest.clip import Clip, Region
from echomeasure.models import registry
from echomeasure.models.decode import DecodeSettings
from echomeasure.models.preprocess import CropTransform
from echomeasure.training.augment import IntensityAugment
from echomeasure.training.batch import KeypointBatch
from echomeasure.training.datasets import MAX_BEATS, HeatmapTrainingSet, TrainingSetSpec, build_cache
from echomeasure.training.heatmaps import multi_peak_heatmaps
from echomeasure.training.loop import OptimRecipe, TrainResult, run_optimisation

log = logging.getLogger(__name__)

#: Fewer reviewed frames than this and fine-tuning is refused (it would mostly fit noise).
MIN_REVIEWED_FRAMES = 20
#: Radius of the hard-negative disc around a rejected point, in heatmap sigmas.
NEGATIVE_RADIUS_SIGMAS = 2.0
#: Activation rule: the synthetic hold-out error may grow at most this much (relative).
MAX_SYNTHETIC_REGRESSION = 0.25
#: Caliper convention (:func:`learn_edge_offsets_mm`): fewest reviewed frames per keypoint, the
#: smallest offset kept (smaller ones are taken for 0) and the largest allowed, in mm.
MIN_OFFSET_SAMPLES = 5
MIN_EDGE_OFFSET_MM = 0.1
MAX_EDGE_OFFSET_MM = 3.0
#: ... and how many robust standard errors of the median (1.2533 x 1.4826 MAD / sqrt(n)) an
#: offset must stand out of the scatter: an endpoint whose refinement lands on one of two
#: interfaces (bimodal residuals, e.g. the LA's posterior wall) has no consistent convention.
MIN_EDGE_OFFSET_SE = 2.0

Activate = Literal["auto", "yes", "no"]


class _FromClip(Protocol):
    clip_id: int


SampleT = TypeVar("SampleT", bound=_FromClip)


# --------------------------------------------------------------------------- review samples


@dataclass
class ReviewSample:
    """One reviewed frame at model resolution.

    ``targets`` (K, M, 2): reviewed points per channel in model pixels (NaN: none);
    ``negatives``: ``(channel, x, y)`` rejected points in model pixels;
    ``points_image``: the reviewed points per measurement in image pixels (for evaluation).
    """

    clip_id: int
    frame_index: int
    image: np.ndarray
    targets: np.ndarray
    negatives: list[tuple[int, float, float]]
    transform: CropTransform
    regions: tuple[Region, ...]
    frame_image: np.ndarray
    measurements: dict[str, tuple[tuple[float, float], ...]]

    @property
    def trusted(self) -> np.ndarray:
        """(K,) channels with at least one reviewed point."""
        return np.isfinite(self.targets).all(-1).any(-1)


def _channel_points(mode: str, channels: Sequence[str], measurements: dict[str, tuple]) -> dict[str, list]:
    """Reviewed points per model channel from a frame's final measurement points."""
    out: dict[str, list] = {c: [] for c in channels}
    for name, pts in measurements.items():
        if mode == "2d" and name in catalog.LINEAR_ENDPOINTS:
            for kp, p in zip(catalog.LINEAR_ENDPOINTS[name], pts, strict=False):
                if kp in out:
                    out[kp] = [p]  # shared endpoints: one point per keypoint (the latest wins upstream)
        elif mode == "doppler" and name in out:
            out[name] = list(pts)[:MAX_BEATS]
    return out


def load_review_samples(store: Any, entry: registry.WeightsEntry) -> list[ReviewSample]:
    """Reviewed frames of the store that fit a model, with targets and hard negatives.

    Parameters
    ----------
    store : echomeasure.store.Store
        The review store.
    entry : WeightsEntry
        The base model (its mode, channels and input size).
    """
    mode = entry.mode
    channels = list(entry.channels)
    ch_index = {c: i for i, c in enumerate(channels)}
    frames = store.reviews_for_training(kind=mode)
    # rejected proposals, by (clip, frame): the trainable frames above leave them out
    rejected: dict[tuple[int, int], list[tuple[str, tuple]]] = {}
    clip_ids = {f.clip_id for f in frames} | {r.clip_id for r in store.reviews() if r.action == "rejected"}
    clips = {cid: store.clip(cid) for cid in clip_ids}
    for cid, rec in clips.items():
        if rec.kind != mode:
            continue
        for st in store.current_measurements(cid):
            if st.status == "rejected" and st.proposed_points and st.proposed_frame_index is not None:
                rejected.setdefault((cid, st.proposed_frame_index), []).append((st.measurement, st.proposed_points))
    samples: list[ReviewSample] = []
    by_key = {(f.clip_id, f.frame_index): f for f in frames}
    unreadable = outside = 0
    for key in sorted(set(by_key) | set(rejected)):
        cid, fi = key
        rec = clips[cid]
        tf = by_key.get(key)
        try:
            # through the store: the frame's hash is checked (a damaged PNG is not learned from)
            image = store.frame(cid, fi)
        except (FileNotFoundError, StoreError) as exc:  # a frame never saved, deleted or damaged
            log.info("clip %d frame %d: no usable stored image (%s); skipped", cid, fi, type(exc).__name__)
            unreadable += 1
            continue
        regions = rec.region_objects
        clip = Clip(frames=image[None], frame_time_ms=None, regions=regions, source_kind="dicom")
        transform = CropTransform.for_clip(clip, entry.input_size, "2d" if mode == "2d" else "doppler")
        targets = np.full((len(channels), MAX_BEATS if mode == "doppler" else 1, 2), np.nan, np.float32)
        measurements = dict(tf.measurements) if tf is not None else {}
        for c, pts in _channel_points(mode, channels, measurements).items():
            if pts:
                model_pts = transform.to_model(np.asarray(pts, dtype=np.float64))
                if not _inside_input(model_pts, entry.input_size):
                    # a point the model cannot see would teach it that the keypoint is nowhere on
                    # the frame: the channel stays unknown on this frame
                    outside += 1
                    continue
                targets[ch_index[c], : len(pts)] = model_pts
        negatives: list[tuple[int, float, float]] = []
        for name, rejected_pts in rejected.get(key, []):
            kps = catalog.LINEAR_ENDPOINTS.get(name, ()) if mode == "2d" else (name,)
            pts_iter = zip(kps, rejected_pts, strict=False) if mode == "2d" else ((name, p) for p in rejected_pts)
            for kp, p in pts_iter:
                if kp in ch_index and not np.isfinite(targets[ch_index[kp]]).all(-1).any():
                    x, y = transform.to_model(np.asarray(p, dtype=np.float64))
                    negatives.append((ch_index[kp], float(x), float(y)))
        if not np.isfinite(targets).any() and not negatives:
            continue
        samples.append(ReviewSample(cid, fi, transform.crop_resize(image)[0], targets, negatives, transform,
                                    regions, image, measurements))
    if unreadable:
        log.warning("%d reviewed frame(s) skipped: their stored image is missing or damaged "
                    "(re-ingest those clips to learn from them)", unreadable)
    if outside:
        log.warning("%d reviewed point(s) outside the model's view of their frame (the ultrasound region) "
                    "not learned from", outside)
    return samples


def _inside_input(points: np.ndarray, input_size: tuple[int, int]) -> bool:
    """All points finite and inside the model input (half a pixel of slack)."""
    h, w = input_size
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return bool(np.isfinite(pts).all() and (pts[:, 0] >= -0.5).all() and (pts[:, 0] <= w - 0.5).all()
                and (pts[:, 1] >= -0.5).all() and (pts[:, 1] <= h - 0.5).all())


def split_by_clip(samples: Sequence[SampleT], holdout_fraction: float, seed: int,
                  ) -> tuple[list[SampleT], list[SampleT]]:
    """Split samples (anything with a ``clip_id``) into (train, hold-out) by clip, deterministically
    from ``seed``: at least one clip on each side when there are two or more and
    ``holdout_fraction > 0``."""
    clip_ids = sorted({s.clip_id for s in samples})
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(clip_ids))
    n_hold = int(round(holdout_fraction * len(clip_ids)))
    n_hold = max(1, min(n_hold, len(clip_ids) - 1)) if holdout_fraction > 0 and len(clip_ids) >= 2 else 0
    hold = set(order[:n_hold])
    return [s for s in samples if s.clip_id not in hold], [s for s in samples if s.clip_id in hold]


#: Doppler: a review answers one beat's marker, and the strip's other beats are unreviewed, so a
#: reviewed channel is trained only in a band of columns this many sigmas either side of it.
DOPPLER_BAND_SIGMAS = 3.0


class ReviewTrainingSet:
    """Draws augmented batches from review samples (targets, unknowns and hard negatives).

    ``mode="doppler"``: a reviewed Doppler measurement is one marker on one beat, while the strip
    holds several beats of the same channel; training the whole channel towards that one marker
    would teach the model to suppress the other beats, so the loss is limited to a band of
    columns around each reviewed point (:data:`DOPPLER_BAND_SIGMAS`).
    """

    def __init__(self, samples: Sequence[ReviewSample], sigma_px: float, augment: IntensityAugment | None,
                 mode: str = "2d") -> None:
        self.samples = list(samples)
        self.sigma_px = float(sigma_px)
        self.augment = augment
        self.mode = mode

    def __len__(self) -> int:
        return len(self.samples)

    def batch(self, rng: np.random.Generator, batch_size: int) -> KeypointBatch:
        """A random batch; pixel weights are 0 on unknown channels, 1 on reviewed ones, and
        1 inside the hard-negative discs of rejected points (target 0 there)."""
        idx = rng.integers(0, len(self.samples), size=batch_size)
        images, heats, weights, points = [], [], [], []
        for i in idx:
            s = self.samples[int(i)]
            img = self.augment(s.image, rng) if self.augment is not None else s.image.astype(np.float32) / 255.0
            k, h, w = s.targets.shape[0], s.image.shape[0], s.image.shape[1]
            heat = multi_peak_heatmaps([p[np.isfinite(p).all(-1)] for p in s.targets], h, w, self.sigma_px)
            weight = np.zeros((k, h, w), np.float32)
            ys, xs = np.mgrid[0:h, 0:w]
            if self.mode == "doppler":
                band = DOPPLER_BAND_SIGMAS * self.sigma_px
                for c in np.flatnonzero(s.trusted):
                    for x, _y in s.targets[c][np.isfinite(s.targets[c]).all(-1)]:
                        weight[c][:, np.abs(xs[0] - x) <= band] = 1.0
            else:
                weight[s.trusted] = 1.0
            radius = NEGATIVE_RADIUS_SIGMAS * self.sigma_px
            for ch, x, y in s.negatives:
                weight[ch][(xs - x) ** 2 + (ys - y) ** 2 <= radius**2] = 1.0
            images.append(np.ascontiguousarray(img.transpose(2, 0, 1)))
            heats.append(heat)
            weights.append(weight)
            points.append(s.targets)
        return KeypointBatch(images=torch.from_numpy(np.stack(images)), heatmaps=torch.from_numpy(np.stack(heats)),
                             pixel_weight=torch.from_numpy(np.stack(weights)),
                             points_px=torch.from_numpy(np.stack(points)))


# --------------------------------------------------------------------------- evaluation on reviews


def review_errors(propose_fn: Callable[..., Any], samples: Sequence[ReviewSample], mode: str) -> dict[str, float | None]:
    """Error of a model's proposals against the reviewed points on held-out review frames.

    Each frame goes through ``propose_fn`` (the real ``propose``) as a one-frame clip with the
    stored regions, restricted to the measurements reviewed on it.  2D: mean endpoint distance
    and mean absolute value error in mm; Doppler: mean absolute velocity error in % of the
    reviewed value.
    """
    from echomeasure.ingest.calibration import physical_value

    endpoint_mm: list[float] = []
    value_err: list[float] = []
    for s in samples:
        names = [n for n in s.measurements if catalog.get(n).mode == mode and catalog.get(n).n_points > 0]
        if not names:
            continue
        clip = Clip(frames=s.frame_image[None], frame_time_ms=None, regions=s.regions, source_kind="dicom")
        got = {p.name: p for p in propose_fn(clip, only=names).measurements}
        for name in names:
            p = got.get(name)
            truth_pts = s.measurements[name]
            if p is None:
                continue
            truth_value, _, _ = physical_value(clip, name, truth_pts) if mode == "2d" else (None, None, None)
            if mode == "2d":
                if p.value is not None and truth_value is not None:
                    value_err.append(abs(p.value - truth_value) * 10.0)
                    mm_per_px = truth_value * 10.0 / max(1e-9, float(np.hypot(*np.subtract(truth_pts[0], truth_pts[1]))))
                    for a, b in zip(p.points, truth_pts, strict=False):
                        endpoint_mm.append(float(np.hypot(a[0] - b[0], a[1] - b[1])) * mm_per_px)
            else:
                vals = [abs(physical_value(clip, name, (pt,))[0] or 0.0) for pt in truth_pts]
                if p.value is not None and vals and np.mean(vals) > 0:
                    value_err.append(abs(p.value - float(np.mean(vals))) / float(np.mean(vals)) * 100.0)
    if mode == "2d":
        return {"endpoint_mae_mm": float(np.mean(endpoint_mm)) if endpoint_mm else None,
                "value_mae_mm": float(np.mean(value_err)) if value_err else None,
                "n_measurements": float(len(value_err))}
    return {"value_error_pct": float(np.mean(value_err)) if value_err else None,
            "n_measurements": float(len(value_err))}


@dataclass
class EdgeOffsets:
    """A caliper convention learned by :func:`learn_edge_offsets_mm`.

    ``offsets_mm``: keypoint -> offset applied after edge refinement (mm along its caliper line,
    :func:`echomeasure.propose.edges.apply_edge_offsets`); ``n_samples``: reviewed frames per
    keypoint; ``median_mm``: the raw median residual, reviewer minus parent, before shrinking
    and clipping (None: too few frames).
    """

    offsets_mm: dict[str, float]
    n_samples: dict[str, int]
    median_mm: dict[str, float | None]

    def settings(self, parent: DecodeSettings) -> DecodeSettings:
        """The decode settings of a child version: the parent's with this convention."""
        return replace(parent, edge_offsets_mm=dict(self.offsets_mm))


def learn_edge_offsets_mm(
    propose_fn: Callable[..., Any],
    samples: Sequence[ReviewSample],
    channels: Sequence[str],
    *,
    parent_offsets_mm: Mapping[str, float] | None = None,
    min_samples: int = MIN_OFFSET_SAMPLES,
    min_offset_mm: float = MIN_EDGE_OFFSET_MM,
    max_offset_mm: float = MAX_EDGE_OFFSET_MM,
    min_offset_se: float = MIN_EDGE_OFFSET_SE,
) -> EdgeOffsets:
    """Learn a site's caliper convention: per keypoint, the reviewers' offset along the line.

    Parameters
    ----------
    propose_fn : callable
        The parent's real ``propose`` (edge refinement on); each 2D frame goes through it as a
        one-frame clip with the stored regions, ``per_frame=True`` (all keypoints).
    samples : sequence of ReviewSample
        Reviewed frames to learn from: the *training* split only.
    channels : sequence of str
        The model's keypoint channels.
    parent_offsets_mm : mapping, optional
        The parent's own offsets (already in its proposals): the result is parent + median
        residual.
    min_samples, min_offset_mm, max_offset_mm, min_offset_se
        Fewest frames per keypoint (else the parent's offset is kept); a residual (reviewer minus
        parent) smaller than ``min_offset_mm`` or than ``min_offset_se`` robust standard errors
        of the median is taken for 0 (the parent's offset stays); the clip of the result.

    Returns
    -------
    EdgeOffsets
    """
    from echomeasure.propose import edges

    parent = {k: float(v) for k, v in (parent_offsets_mm or {}).items()}
    residual: dict[str, list[float]] = {c: [] for c in channels}
    for s in samples:
        names = [n for n in s.measurements if n in catalog.LINEAR_ENDPOINTS]
        if not names:
            continue
        reviewed = _channel_points("2d", channels, {n: s.measurements[n] for n in names})
        clip = Clip(frames=s.frame_image[None], frame_time_ms=None, regions=s.regions, source_kind="dicom")
        frames = propose_fn(clip, only=names, per_frame=True).frames
        if not frames:
            continue
        got = frames[0]["points"]
        proposed = np.array([got.get(c, (np.nan, np.nan)) for c in channels], dtype=np.float64)
        target = np.array([reviewed[c][0] if reviewed[c] else (np.nan, np.nan) for c in channels], dtype=np.float64)
        ref = proposed[channels.index("septum_lv")] if "septum_lv" in channels else proposed[0]
        px_per_mm = edges.plax_px_per_mm(s.regions, ref, fallback_height_px=s.transform.box.height_px)
        along = edges.edge_offsets_along_lines_mm(proposed, target, channels, px_per_mm)
        for c, v in zip(channels, along, strict=True):
            if np.isfinite(v):
                residual[c].append(float(v))
    offsets: dict[str, float] = {}
    medians: dict[str, float | None] = {}
    for c in channels:
        vals = residual[c]
        if len(vals) < min_samples:
            medians[c] = None
            if parent.get(c):
                offsets[c] = parent[c]
            continue
        v = np.asarray(vals)
        med = float(np.median(v))
        se = 1.2533 * 1.4826 * float(np.median(np.abs(v - med))) / math.sqrt(len(v))
        medians[c] = round(med, 4)
        total = parent.get(c, 0.0) + (med if abs(med) >= max(min_offset_mm, min_offset_se * se) else 0.0)
        if abs(total) >= min_offset_mm:
            offsets[c] = round(float(np.clip(total, -max_offset_mm, max_offset_mm)), 4)
    return EdgeOffsets(offsets, {c: len(residual[c]) for c in channels}, medians)


def _review_score(errors: dict[str, float | None]) -> float | None:
    return errors.get("endpoint_mae_mm", errors.get("value_error_pct"))


# --------------------------------------------------------------------------- fine-tuning


@dataclass
class FinetuneOutcome:
    """What :func:`finetune` did."""

    entry: registry.WeightsEntry
    parent: registry.WeightsEntry
    activated: bool
    n_train_frames: int
    n_holdout_frames: int
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    result: TrainResult | None = None

    def to_dict(self) -> dict:
        """JSON-ready summary (what ``echomeasure finetune`` prints)."""
        return {"name": self.entry.name, "version": self.entry.version, "parent": self.parent.version,
                "sha256": self.entry.sha256, "activated": self.activated,
                "train_frames": self.n_train_frames, "holdout_frames": self.n_holdout_frames,
                "before": self.before, "after": self.after,
                "decode": self.entry.decode.to_json(),
                "replay_cases": (self.entry.extra.get("finetune") or {}).get("replay", {}).get("n_cases"),
                "steps": None if self.result is None else self.result.steps_done,
                "wall_s": None if self.result is None else round(self.result.wall_s, 1)}


DEFAULT_REPLAY_CASES = 100
"""Synthetic replay cases of ``echomeasure finetune`` (``--replay-cases``): the first 100 of the
base's training cases (600 frames of a PLAX model, more than a run of a few hundred steps draws);
the whole 600-case set of ``plax-linear`` 2.0 took over 5 minutes to render on a 2-core CPU."""


@dataclass(frozen=True)
class FinetuneConfig:
    """What :func:`finetune` starts from and how it trains, evaluates and activates.

    Attributes
    ----------
    base : {"plax-linear", "doppler-peaks"}
        Registry name of the model to fine-tune.
    base_version
        Version to start from (None: the active one).
    epochs
        Passes over the training reviews (each batch mixes reviews and synthetic replay).
    min_frames
        Refuse with fewer reviewed frames than this.
    holdout_fraction
        Share of reviewed clips kept out for evaluation, in [0, 1).
    synthetic_eval_cases
        Held-out synthetic cases evaluated before and after (0: skip).
    replay_cases
        Synthetic training cases for replay, the first of the parent's training seeds (None: the
        parent's whole training set, whose cache is reused when present).  The CLI's
        ``--replay-cases`` defaults to :data:`DEFAULT_REPLAY_CASES`: the first run renders the set
        (about half a second a full-size case on a CPU core), later runs read it from the cache.
    replay_fraction
        Share of each batch drawn from the synthetic replay set, in [0, 1] (at most 0.9 is used;
        0: reviews only).
    lr, batch_size, seed
        Optimisation settings (seeded: the same reviews give the same weights).
    activate : {"auto", "yes", "no"}
        Make the new version active: always, never, or when it is not worse (module docstring).
    max_steps
        Cap on optimisation steps (tests, quick experiments); None: no cap.

    Raises
    ------
    TrainingError
        On creation, for a value out of range (the message names the setting).
    """

    base: str = registry.PLAX_LINEAR
    base_version: str | None = None
    epochs: int = 10
    min_frames: int = MIN_REVIEWED_FRAMES
    holdout_fraction: float = 0.25
    synthetic_eval_cases: int = 20
    replay_cases: int | None = None
    replay_fraction: float = 0.5
    lr: float = 3e-4
    batch_size: int = 8
    seed: int = 0
    activate: Activate = "auto"
    max_steps: int | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.base in (registry.PLAX_LINEAR, registry.DOPPLER_PEAKS),
             f"unknown base model {self.base!r}; fine-tune 'plax-linear' or 'doppler-peaks'"),
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.min_frames >= 1, "--min-frames must be at least 1"),
            (0.0 <= self.holdout_fraction < 1.0, "--holdout must be at least 0 and below 1"),
            (self.synthetic_eval_cases >= 0, "--eval-cases must be 0 or more"),
            (self.replay_cases is None or self.replay_cases >= 1, "--replay-cases must be at least 1"),
            (0.0 <= self.replay_fraction <= 1.0, "replay_fraction must be between 0 and 1"),
            (math.isfinite(self.lr) and self.lr > 0, "the learning rate must be a positive number"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.activate in ("auto", "yes", "no"), "--activate must be 'auto', 'yes' or 'no'"),
            (self.max_steps is None or self.max_steps >= 1, "--max-steps must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainingError(message)

    @property
    def replay_per_batch(self) -> int:
        """Synthetic replay frames in each batch."""
        return int(round(min(self.replay_fraction, 0.9) * self.batch_size))

    @property
    def reviews_per_batch(self) -> int:
        """Review frames in each batch (at least one)."""
        return max(1, self.batch_size - self.replay_per_batch)


def ft_version_after(parent_version: str, existing: Iterable[str]) -> str:
    """The first free ``<base>-ftN`` (N = 1, 2, ...) of a parent version among ``existing``
    (``<base>``: the parent's version without its own ``-ftN``)."""
    taken = set(existing)
    base = parent_version.split("-ft")[0]
    i = 1
    while f"{base}-ft{i}" in taken:
        i += 1
    return f"{base}-ft{i}"


def next_ft_version(parent: registry.WeightsEntry, weights_dir: Path) -> str:
    """The version a child of ``parent`` would get now (:func:`ft_version_after`); the version it
    is registered under is chosen again under the manifest lock (:func:`publish_child`)."""
    return ft_version_after(parent.version, (e.version for e in registry.list_entries(weights_dir)
                                             if e.name == parent.name))


def publish_child(entry: registry.WeightsEntry, weight_file: Path, parent: registry.WeightsEntry, weights_dir: Path,
                  *, activate: bool) -> registry.WeightsEntry:
    """Copy a fine-tuned child's weights into the weights folder and register it under the next
    free ``-ftN`` version, chosen under the manifest lock (:func:`echomeasure.models.registry.publish`):
    two fine-tunes that finish together get two versions, and neither replaces a registered file."""
    return registry.publish(entry, weight_file, weights_dir=weights_dir, activate=activate,
                            version_for=partial(ft_version_after, parent.version))


@contextmanager
def scratch_folder(prefix: str) -> Iterator[Path]:
    """A private scratch folder in the system temp folder, removed on the way out.  Weights are
    saved and measured there, never in the weights folder: an interrupted or killed run leaves
    nothing in the weights folder, and only :func:`publish_child` writes there."""
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        yield Path(scratch)


def finetune(
    config: FinetuneConfig | None = None,
    *,
    db_url: str | None = None,
    store: Any = None,
    weights_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> FinetuneOutcome:
    """Fine-tune a registered model on the reviews in the store and register the result.

    Parameters
    ----------
    config : FinetuneConfig, optional
        The base model and the training, evaluation and activation settings (default: the
        defaults of :class:`FinetuneConfig`).
    db_url : str, optional
        Review store URL (default ``--db``/``$ECHOMEASURE_DB``/SQLite under ``db/``).
    store : echomeasure.store.Store, optional
        An open store (instead of ``db_url``).
    weights_dir : path, optional
        Weights folder (default ``$ECHOMEASURE_WEIGHTS`` or ``weights/``).
    progress : bool
        Progress bars on stderr.

    Raises
    ------
    TrainingError
        Too few reviewed frames, or nothing trainable.
    WeightsError
        The base version is not registered.
    """
    cfg = config if config is not None else FinetuneConfig()
    wdir = Path(weights_dir) if weights_dir is not None else config_module.weights_dir()
    parent = registry.get_entry(cfg.base, cfg.base_version, wdir)
    registry.check_writable(wdir)  # before training, not after it
    with given_or_opened_store(store, db_url) as review_store:
        return _finetune(review_store, parent, wdir, cfg, progress)


@contextmanager
def given_or_opened_store(store: Any, db_url: str | None) -> Iterator[Any]:
    """The caller's store as it is, or the configured one opened here and closed on exit."""
    if store is not None:
        yield store
        return
    from echomeasure.store import open_store
    from echomeasure.store.admin import require_existing

    url = config_module.db_url(db_url)
    require_existing(url, "review clips first (echomeasure ingest, then the review UI) or check --db")
    opened = open_store(url)
    try:
        yield opened
    finally:
        opened.close()


@dataclass
class _ReviewTraining:
    """The reviews split by clip, the synthetic replay set, the batches and the recipe of one run."""

    train: list[ReviewSample]
    holdout: list[ReviewSample]
    replay_spec: TrainingSetSpec
    batches: Callable[[np.random.Generator, int], KeypointBatch]
    recipe: OptimRecipe


def _split_reviews(store: Any, parent: registry.WeightsEntry,
                   cfg: FinetuneConfig) -> tuple[list[ReviewSample], list[ReviewSample]]:
    """The parent's reviewed frames split by clip into training and hold-out (refused when too few)."""
    samples = load_review_samples(store, parent)
    n_target_frames = sum(1 for s in samples if s.trusted.any())
    if n_target_frames < cfg.min_frames:
        raise TrainingError(
            f"only {n_target_frames} reviewed {parent.mode} frame(s) with accepted or corrected points "
            f"(at least {cfg.min_frames} needed); review more clips before fine-tuning"
        )
    train_s, hold_s = split_by_clip(samples, cfg.holdout_fraction, cfg.seed)
    if not any(s.trusted.any() for s in train_s):
        raise TrainingError("no reviewed frame with accepted or corrected points is left for training")
    log.info("fine-tuning %s %s on %d frames (%d held out)", parent.name, parent.version, len(train_s), len(hold_s))
    return train_s, hold_s


def _review_training(parent: registry.WeightsEntry, train_s: list[ReviewSample], hold_s: list[ReviewSample],
                     cfg: FinetuneConfig, progress: bool) -> _ReviewTraining:
    """Batches of reviews mixed with the parent's synthetic training set, and the optimiser recipe."""
    sigma = parent.decode.sigma_px
    reviews = ReviewTrainingSet(train_s, sigma, IntensityAugment(), mode=parent.mode)
    replay_spec = _replay_spec(parent, cfg.replay_cases)
    replay = HeatmapTrainingSet.from_cache(build_cache(replay_spec, progress=progress), sigma, IntensityAugment())
    half = cfg.reviews_per_batch

    def batches(rng: np.random.Generator, size: int) -> KeypointBatch:
        parts = [reviews.batch(rng, half)] + ([replay.batch(rng, size - half)] if size > half else [])
        b = KeypointBatch.concat(parts)
        return replace(b, images=b.images.contiguous(memory_format=torch.channels_last))

    steps = cfg.epochs * math.ceil(len(train_s) / half)
    if cfg.max_steps is not None:
        steps = min(steps, cfg.max_steps)
    optim_dict = parent.extra.get("optimiser", {})
    recipe = OptimRecipe(steps=steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup_steps=max(1, steps // 10),
                         coord_window_px=int(optim_dict.get("coord_window_px", round(2.5 * sigma))),
                         coord_start_frac=0.0, seed=cfg.seed)
    return _ReviewTraining(train_s, hold_s, replay_spec, batches, recipe)


def _propose_with(name: str, version: str, folder: Path) -> Callable[..., Any]:
    """``propose`` bound to one registered version."""
    from echomeasure.propose import propose

    return partial(propose, model_versions={name: version}, weights_dir=folder, backend="torch")


def _synthetic_holdout(name: str, version: str, folder: Path, cfg: FinetuneConfig, small: bool,
                       progress: bool) -> dict:
    """Flat figures of a version on the synthetic hold-out (empty when ``synthetic_eval_cases`` is 0)."""
    from echomeasure.training.evaluate import evaluate

    if not cfg.synthetic_eval_cases:
        return {}
    return evaluate(name, version, weights_dir=folder, n_cases=cfg.synthetic_eval_cases, small=small,
                    progress=progress).flat_metrics()


def _holdout_figures(name: str, version: str, folder: Path, run: _ReviewTraining, mode: str,
                     cfg: FinetuneConfig, progress: bool) -> dict:
    """A version's errors on the review hold-out and the synthetic hold-out."""
    reviews = review_errors(_propose_with(name, version, folder), run.holdout, mode) if run.holdout else {}
    synthetic = _synthetic_holdout(name, version, folder, cfg, run.replay_spec.small, progress)
    return {"reviews_holdout": reviews, "synthetic_holdout": synthetic}


def _train_child(parent: registry.WeightsEntry, wdir: Path, run: _ReviewTraining,
                 progress: bool) -> tuple[torch.nn.Module, TrainResult]:
    """The parent's weights optimised on the run's batches (in eval mode on return)."""
    model = registry.load_model(parent.name, parent.version, wdir).model
    model = model.train().to(memory_format=torch.channels_last)
    result = run_optimisation(model, run.batches, run.recipe, progress=progress, desc=f"finetune {parent.name}")
    return model.to(memory_format=torch.contiguous_format).eval(), result


def _caliper_convention(parent: registry.WeightsEntry, wdir: Path,
                        train_s: list[ReviewSample]) -> tuple[DecodeSettings, EdgeOffsets | None]:
    """The child's decode settings: a 2D parent's plus the site's caliper convention, learned
    from the training split through the parent's real ``propose`` (edge refinement on)."""
    if parent.mode != "2d":
        return parent.decode, None
    propose_fn = partial(_propose_with(parent.name, parent.version, wdir), refine_edges=True)
    offsets = learn_edge_offsets_mm(propose_fn, train_s, list(parent.channels),
                                    parent_offsets_mm=parent.decode.edge_offsets_mm)
    log.info("caliper convention (mm along the caliper line): %s", offsets.offsets_mm)
    return offsets.settings(parent.decode), offsets


def register_without_offsets(entry: registry.WeightsEntry, weight_file: Path, folder: Path) -> Path:
    """Register ``entry`` in an empty ``folder`` with its caliper convention removed (same weights):
    the version as it measures on the ASE interfaces."""
    folder.mkdir(parents=True)
    shutil.copyfile(weight_file, folder / entry.file)
    registry.register(replace(entry, decode=replace(entry.decode, edge_offsets_mm={})), weights_dir=folder)
    return folder


def _child_entry(parent: registry.WeightsEntry, version: str, sha: str, decode: DecodeSettings,
                 run: _ReviewTraining, cfg: FinetuneConfig) -> registry.WeightsEntry:
    """The child's entry before it is measured (no metrics, no flag thresholds yet)."""
    base = parent.name
    n_clips = len({s.clip_id for s in run.train})
    return replace(
        parent, version=version, file=f"{base}-{version}.pt", sha256=sha, parent=parent.version, created="",
        metrics={}, thresholds=registry.FlagThresholds(), decode=decode, seed=cfg.seed,
        recipe=(f"echomeasure finetune --base {base} --base-version {parent.version} --epochs {cfg.epochs} "
                f"--seed {cfg.seed} --replay-cases {run.replay_spec.n_cases}"),
        trained_on=(f"{len(run.train)} reviewed frames from {n_clips} clips of the review store + synthetic replay "
                    f"({run.replay_spec.n_cases} cases); parent {base} {parent.version}"),
    )


def _save_and_measure_child(model: torch.nn.Module, parent: registry.WeightsEntry, wdir: Path, decode: DecodeSettings,
                            run: _ReviewTraining, cfg: FinetuneConfig, scratch_dir: Path,
                            progress: bool) -> tuple[registry.WeightsEntry, Path, dict]:
    """Save the child's weights in ``scratch_dir`` and measure it there (registered in the scratch
    folder: registered versions are immutable); returns its unmeasured entry (version provisional,
    see :func:`publish_child`), its weight file and its hold-out figures."""
    version = next_ft_version(parent, wdir)
    file_name = f"{parent.name}-{version}.pt"
    sha = registry.save_weights(model, scratch_dir / file_name)
    entry = _child_entry(parent, version, sha, decode, run, cfg)
    registry.register(entry, weights_dir=scratch_dir)
    after = _holdout_figures(parent.name, version, scratch_dir, run, parent.mode, cfg, progress)
    if cfg.synthetic_eval_cases and decode.edge_offsets_mm:
        # the same weights on the ASE interfaces (no site offsets): the guard against forgetting
        plain_dir = register_without_offsets(entry, scratch_dir / file_name, scratch_dir / "without-offsets")
        after["synthetic_holdout_without_offsets"] = _synthetic_holdout(
            parent.name, version, plain_dir, cfg, run.replay_spec.small, progress)
    return entry, scratch_dir / file_name, after


def _finetune_record(parent: registry.WeightsEntry, run: _ReviewTraining, cfg: FinetuneConfig, result: TrainResult,
                     offsets: EdgeOffsets | None, before: dict, after: dict, activated: bool) -> dict:
    """The ``extra["finetune"]`` record of a child version."""
    return {
        "parent": parent.version, "train_frames": len(run.train), "holdout_frames": len(run.holdout),
        "train_clip_ids": sorted({s.clip_id for s in run.train}),
        "holdout_clip_ids": sorted({s.clip_id for s in run.holdout}),
        "hard_negative_points": sum(len(s.negatives) for s in run.train), "replay": run.replay_spec.describe(),
        "replay_fraction": cfg.replay_per_batch / cfg.batch_size,
        "optimiser": run.recipe.to_dict(), "before": before, "after": after, "wall_s": round(result.wall_s, 1),
        "activated": activated,
        "edge_offsets": None if offsets is None else {"learned_from": "train split", "n_samples": offsets.n_samples,
                                                      "median_mm": offsets.median_mm},
    }


def _measured(after: dict, parent: registry.WeightsEntry) -> tuple[dict[str, dict[str, float]], registry.FlagThresholds]:
    """The child's reported metrics by protocol and its flag thresholds, from its hold-out figures.

    The pooled flag figures are the child's own; its few synthetic hold-out cases are too few to
    measure a measurement's own figures (:data:`echomeasure.training.evaluate.MIN_FLAG_PROPOSALS`),
    so the parent's are kept (a fine-tune does not change which measurements' confidences run low:
    the LA's far end stays the model's own point); ``calibrate_flag`` re-measures them."""
    metrics, thresholds = registry.metrics_from_flat(after["synthetic_holdout"], registry.OWN_STYLE)
    thresholds = replace(thresholds, by_measurement=parent.thresholds.by_measurement)
    reviews = {k: v for k, v in after["reviews_holdout"].items() if v is not None}
    if reviews:
        metrics[registry.REVIEW_HOLDOUT] = reviews
    return metrics, thresholds


def _finetune(store: Any, parent: registry.WeightsEntry, wdir: Path, cfg: FinetuneConfig,
              progress: bool) -> FinetuneOutcome:
    from echomeasure.propose import clear_engines
    from echomeasure.propose.types import ModelInfo

    train_s, hold_s = _split_reviews(store, parent, cfg)
    store_parent = store_version(store, parent)
    run = _review_training(parent, train_s, hold_s, cfg, progress)
    before = _holdout_figures(parent.name, parent.version, wdir, run, parent.mode, cfg, progress)
    model, result = _train_child(parent, wdir, run, progress)
    decode, offsets = _caliper_convention(parent, wdir, train_s)
    with scratch_folder("em-ft-") as scratch_dir:
        entry, weight_file, after = _save_and_measure_child(model, parent, wdir, decode, run, cfg, scratch_dir,
                                                            progress)
        activated = _should_activate(cfg.activate, before, after)
        record = _finetune_record(parent, run, cfg, result, offsets, before, after, activated)
        extra = {k: v for k, v in entry.extra.items() if k != "evaluation"}
        metrics, thresholds = _measured(after, parent)
        entry = publish_child(replace(entry, metrics=metrics, thresholds=thresholds,
                                      extra={**extra, "finetune": record}),
                              weight_file, parent, wdir, activate=activated)
    clear_engines()
    # the review store keeps the lineage too
    store.register_model_version(
        ModelInfo(entry.name, entry.version, entry.sha256), parent_id=store_parent,
        trained_on={"reviews": {"clip_ids": record["train_clip_ids"], "frames": len(train_s)},
                    "synthetic_replay": run.replay_spec.describe()},
        metrics=metrics, activate=activated, actor="finetune",
    )
    return FinetuneOutcome(entry=entry, parent=parent, activated=activated, n_train_frames=len(train_s),
                           n_holdout_frames=len(hold_s), before=before, after=after, result=result)


def _replay_spec(parent: registry.WeightsEntry, replay_cases: int | None) -> TrainingSetSpec:
    """The synthetic replay set: the parent's own training set (its cache is reused) unless a
    number of cases is asked for."""
    data = parent.extra.get("training_data") or {}
    n = replay_cases or int(data.get("n_cases") or 100)
    fpc = int(data.get("frames_per_case") or (4 if parent.mode == "2d" else 1))
    small = bool(data.get("small", parent.input_size[0] < 96))
    styles = tuple(data.get("styles") or ("classic",))
    return TrainingSetSpec(parent.mode, n, parent.input_size, frames_per_case=fpc, small=small, styles=styles)


def store_version(store: Any, entry: registry.WeightsEntry) -> int | None:
    """The store's id of a weights entry (registered on the fly when the store has not seen it)."""
    from echomeasure.propose.types import ModelInfo

    for rec in store.model_versions(entry.name):
        if rec.version == entry.version and rec.sha256 == entry.sha256:
            return rec.id
    rec = store.register_model_version(ModelInfo(entry.name, entry.version, entry.sha256),
                                       trained_on={"description": entry.trained_on}, metrics=dict(entry.metrics),
                                       actor="finetune")
    return rec.id


def _should_activate(mode: Activate, before: dict, after: dict) -> bool:
    if mode == "yes":
        return True
    if mode == "no":
        return False
    rb, ra = _review_score(before["reviews_holdout"]), _review_score(after["reviews_holdout"])
    if rb is None or ra is None:
        # no held-out review measured (--holdout 0, a single reviewed clip): "not worse on the
        # reviews" cannot be shown, so the version is registered but not made active
        log.warning("the new version was not measured on held-out reviews; it is registered but not made "
                    "active (use --activate yes to make it active)")
        return False
    if ra > rb:
        return False
    key = "mean_mae_mm" if "mean_mae_mm" in before["synthetic_holdout"] else "mean_error_pct"
    # a site convention moves the calipers off the ASE interfaces on purpose: judge forgetting on
    # the weights without it
    synth_after = after.get("synthetic_holdout_without_offsets") or after["synthetic_holdout"]
    sb, sa = before["synthetic_holdout"].get(key), synth_after.get(key)
    return not (sb is not None and sa is not None and sa > sb * (1 + MAX_SYNTHETIC_REGRESSION))


__all__ = ["EdgeOffsets", "FinetuneOutcome", "MIN_OFFSET_SAMPLES", "MIN_REVIEWED_FRAMES", "ReviewSample",
           "finetune", "ft_version_after", "learn_edge_offsets_mm", "load_review_samples", "publish_child",
           "review_errors", "scratch_folder", "split_by_clip"]
