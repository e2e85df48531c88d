"""The optimisation loop shared by training from synthetic data and fine-tuning from reviews.

Loss
----
Per-pixel binary cross-entropy on the sigmoid heatmaps, with the pixels near a keypoint weighted
up (``1 + pos_weight * target``) so the few pixels that matter are not drowned by background,
plus a coordinate loss: the centroid of the sigmoid heatmap in a window (the *local* soft-argmax
the decoder applies, made differentiable) centred once on the true point and once on the
heatmap's own peak near it (where decoding starts), and its smooth-L1 distance in heatmap pixels
to the true point.  The heatmap term makes the right blob
appear; the coordinate term removes the sub-pixel bias a blurred or skewed blob would leave in
the decoded point, which is what the measurement error depends on.

Determinism and resuming
------------------------
Every step draws its batch from a generator seeded by ``(seed, step)``, and the torch seed is
reset the same way, so a run that is stopped and resumed from a checkpoint reaches the same
weights as an uninterrupted one (on the same machine and thread count).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from echomeasure import atomic
from echomeasure.training.batch import KeypointBatch
from echomeasure.training.heatmaps import local_peak_centres, window_centroids

log = logging.getLogger(__name__)

BatchSource = Callable[[np.random.Generator, int], KeypointBatch]


@dataclass(frozen=True)
class OptimRecipe:
    """Hyper-parameters of one optimisation run (recorded in the weights manifest)."""

    steps: int
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    min_lr_ratio: float = 0.02
    pos_weight: float = 5.0
    coord_weight: float = 0.05
    coord_window_px: int = 4
    coord_search_px: int = 24
    coord_start_frac: float = 0.3
    grad_clip: float = 5.0
    seed: int = 0

    def to_dict(self) -> dict:
        """Plain dict for the manifest."""
        return asdict(self)


@dataclass
class TrainResult:
    """What a run did: loss history (one value per step) and timing."""

    losses: list[float] = field(default_factory=list)
    steps_done: int = 0
    wall_s: float = 0.0
    resumed_from: int = 0


def lr_at(step: int, recipe: OptimRecipe) -> float:
    """Learning rate at ``step``: linear warm-up, then cosine decay to ``min_lr_ratio * lr``."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    span = max(1, recipe.steps - recipe.warmup_steps)
    t = min(1.0, (step - recipe.warmup_steps) / span)
    return recipe.lr * (recipe.min_lr_ratio + (1 - recipe.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def keypoint_loss(
    logits: torch.Tensor,
    batch: KeypointBatch,
    recipe: OptimRecipe,
    coord_weight: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted heatmap BCE plus local soft-argmax coordinate loss.

    Parameters
    ----------
    logits : (B, K, H, W) tensor
        Model outputs.
    batch : KeypointBatch
        Targets and weights.
    recipe : OptimRecipe
        Gives ``pos_weight`` and ``coord_window_px``.
    coord_weight : float
        Weight of the coordinate term for this step (0 disables it).

    Returns
    -------
    loss : scalar tensor
    parts : dict with the float values of ``"heatmap"`` and ``"coord_px"`` (mean distance).
    """
    target = batch.heatmaps
    weight = batch.pixel_weight * (1.0 + recipe.pos_weight * target)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    heat = (bce * weight).sum() / weight.sum().clamp_min(1.0)
    parts = {"heatmap": float(heat.detach())}
    loss = heat
    valid = torch.isfinite(batch.points_px).all(dim=-1)
    if coord_weight > 0 and valid.any():
        truth = torch.nan_to_num(batch.points_px)
        # read the point twice: from a window on the truth (local symmetry of the blob) and from
        # a window on the heatmap's own peak near the truth (what the decoder will read)
        at_truth = torch.nan_to_num(window_centroids(logits, batch.points_px, recipe.coord_window_px))
        peaks = local_peak_centres(logits, batch.points_px, recipe.coord_search_px)
        at_peak = torch.nan_to_num(window_centroids(logits, batch.points_px, recipe.coord_window_px, peaks))
        coord = torch.zeros((), dtype=logits.dtype)
        for pts in (at_truth, at_peak):
            dist = F.smooth_l1_loss(pts, truth, reduction="none", beta=0.5).sum(-1)
            coord = coord + dist[valid].mean()
        parts["coord_px"] = float((at_peak - truth).norm(dim=-1)[valid].mean().detach())
        loss = loss + coord_weight * coord
    return loss, parts


def _save_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int,
                     losses: list[float], meta: dict) -> None:
    with atomic.atomic_path(path, make_parents=True) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                    "losses": losses, "meta": meta}, tmp)


def _resume(checkpoint: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, meta: dict, result: TrainResult,
            desc: str) -> int:
    """Load a checkpoint made by the same recipe into ``model``, ``opt`` and ``result``; the step to start at."""
    if not checkpoint.exists():
        return 0
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if state.get("meta", {}).get("recipe") != meta["recipe"]:
        log.warning("checkpoint %s was made by another recipe; starting afresh", checkpoint)
        return 0
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    start = int(state["step"])
    result.losses = list(state.get("losses", []))
    result.resumed_from = start
    log.info("resuming %s from step %d (%s)", desc, start, checkpoint)
    return start


def _optimisation_step(model: torch.nn.Module, opt: torch.optim.Optimizer, batch: KeypointBatch, recipe: OptimRecipe,
                       coord_weight: float) -> tuple[torch.Tensor, dict]:
    """One forward/backward pass and optimiser step; the loss and its parts."""
    out = model(batch.images)
    logits = out["out"] if isinstance(out, dict) else out
    loss, parts = keypoint_loss(logits, batch, recipe, coord_weight)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if recipe.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
    opt.step()
    return loss, parts


def run_optimisation(
    model: torch.nn.Module,
    batches: BatchSource,
    recipe: OptimRecipe,
    checkpoint: Path | None = None,
    checkpoint_every: int = 100,
    max_wall_s: float | None = None,
    progress: bool = True,
    desc: str = "train",
) -> TrainResult:
    """Optimise ``model`` for ``recipe.steps`` steps on batches drawn from ``batches``.

    Parameters
    ----------
    model : torch.nn.Module
        Returns ``(B, K, H, W)`` logits for ``(B, 3, H, W)`` inputs (or a dict with key ``"out"``).
    batches : callable ``(rng, batch_size) -> KeypointBatch``
        Draws one batch; must use only ``rng`` for randomness (determinism, resuming).
    recipe : OptimRecipe
        Steps, learning rate, loss weights, seed.
    checkpoint : Path, optional
        Where to keep a resumable checkpoint; if it exists and matches the recipe, the run resumes
        from it.
    checkpoint_every : int
        Save every this many steps (and at the end).
    max_wall_s : float, optional
        Stop early (with a checkpoint) after this many seconds; the run can be resumed later.
    progress : bool
        Show a tqdm bar on stderr.
    desc : str
        Label of the progress bar.

    Returns
    -------
    TrainResult with the per-step losses (including those before a resume).
    """
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    meta = {"recipe": recipe.to_dict()}
    result = TrainResult()
    start = _resume(checkpoint, model, opt, meta, result, desc) if checkpoint is not None else 0
    model.train()
    t0 = time.monotonic()
    coord_start = int(recipe.coord_start_frac * recipe.steps)
    bar = tqdm(total=recipe.steps, initial=start, desc=desc, file=sys.stderr, disable=not progress,
               dynamic_ncols=True, mininterval=2.0)
    step = start
    try:
        for step in range(start, recipe.steps):
            rng = np.random.default_rng([recipe.seed, step])
            torch.manual_seed(recipe.seed * 1_000_003 + step)
            batch = batches(rng, recipe.batch_size)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, recipe)
            cw = recipe.coord_weight if step >= coord_start else 0.0
            loss, parts = _optimisation_step(model, opt, batch, recipe, cw)
            result.losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in parts.items()}, refresh=False)
            done = step + 1
            if checkpoint is not None and (done % checkpoint_every == 0):
                _save_checkpoint(checkpoint, model, opt, done, result.losses, meta)
            if max_wall_s is not None and time.monotonic() - t0 > max_wall_s and done < recipe.steps:
                log.warning("%s stopped at step %d after %.0f s (wall-time limit); resume to finish",
                            desc, done, time.monotonic() - t0)
                step = done
                break
        else:
            step = recipe.steps
    finally:
        bar.close()
    if checkpoint is not None:
        _save_checkpoint(checkpoint, model, opt, step, result.losses, meta)
    result.steps_done = step
    result.wall_s = time.monotonic() - t0
    model.eval()
    return result
