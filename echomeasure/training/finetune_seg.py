"""Fine-tune a segmentation model from the contours reviewers accepted or corrected.

What the contour reviews mean as training data
----------------------------------------------
* **accepted**, **corrected** and **added** contours: their polygon is the structure on that
  frame.  The frame's reviewed polygons are rasterised into a label map (label value = the
  model's channel index), cropped to the 2D region and resized to the model input like the
  model's own input (:func:`echomeasure.models.segmentation.to_input`; labels nearest).
* Partial labels: only the structures reviewed on a frame supervise it.  A pixel outside every
  reviewed polygon means "none of the reviewed structures" and may be any other class
  (:func:`echomeasure.training.seg_train.partial_label_loss`), so a frame whose LV was corrected
  teaches the LV boundary without saying anything about the septum or the atrium.
* **rejected** and unreviewed (still proposed) contours carry no loss: a rejected polygon says
  where the structure is not, not where it is.

Which contours belong to which model: a contour proposal names the model version that made it.
Apical clips' contours are stored under the segmentation model itself (``apical-seg``); the PLAX
path stores ``plax-seg``'s contours under the caliper model that proposed the clip
(``plax-linear``, see :data:`CONTOURS_STORED_UNDER`).  A contour a reviewer added belongs to the
model whose proposals the clip holds.

Training: the backbone is frozen and its features are computed once per reviewed frame; the
DeepLabV3 head learns on them (AdamW, batch norm statistics kept), which fits a shared CPU in
minutes and leaves what the backbone knows of the image untouched.  Partial labels leave the
unreviewed classes free to drift (a frame whose LV alone was reviewed says nothing about how the
rest splits into septum, RV or background), so a second term keeps, on the pixels outside the
reviewed structures, the parent's split among the unreviewed classes (:func:`unreviewed_kl`,
weight ``keep_unreviewed``; 0 turns it off).

Evaluation, before and after, on a hold-out of the reviewed frames (by clip, so frames of one
clip never sit on both sides), at full image resolution through
:func:`echomeasure.models.segmentation.predict` (the inference path): Dice of each reviewed
structure against the reviewer's polygon, and the mean signed offset of the model's boundary
from the reviewer's, in mm (+ outside the reviewer's contour, - inside).  The new version is
registered in the weights manifest (parent, seed, recipe, sha256, metrics before and after) and
in the store's ``model_version`` table; it becomes active when its held-out mean Dice was measured
and is not lower than the parent's (``activate="auto"``).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from echomeasure import config
from echomeasure.errors import StoreError, TrainingError
from echomeasure.ingest.calibration import square_cm_per_px
from echomeasure.models import registry
from echomeasure.models.segmentation import (
    PLAX_SEG_MODEL,
    Box,
    image_box,
    is_segmentation,
    predict,
    to_input,
)
from echomeasure.training.finetune import (
    Activate,
    given_or_opened_store,
    next_ft_version,
    publish_child,
    scratch_folder,
    split_by_clip,
    store_version,
)

log = logging.getLogger(__name__)

#: Review actions whose polygon is a target.
TARGET_ACTIONS = ("accepted", "corrected", "added")
#: Stores written before contours were filed under their own model hold PLAX contours under plax-linear.
CONTOURS_STORED_UNDER: dict[str, str] = {registry.PLAX_LINEAR: PLAX_SEG_MODEL}
#: Fewer reviewed frames than this and fine-tuning is refused.
MIN_REVIEWED_CONTOUR_FRAMES = 20
BATCH_SIZE = 8
#: Weight of the term that keeps the parent's split among the unreviewed classes (:func:`unreviewed_kl`).
KEEP_UNREVIEWED = 1.0

# --------------------------------------------------------------------------- reviewed frames


@dataclass
class ContourSample:
    """One frame with reviewed contours.

    ``reference`` (H, W) uint8 is the reviewed label map at image resolution (0 outside every
    reviewed polygon); ``known`` the label values reviewed on the frame; ``image`` (3, s, s)
    float32 the model input; ``labels`` (s, s) int64 the reference at model input;
    ``mm_per_px`` the square pixel size (None when the clip is uncalibrated).
    """

    clip_id: int
    frame_index: int
    frame_image: np.ndarray
    box: Box
    reference: np.ndarray
    known: tuple[int, ...]
    image: np.ndarray
    labels: np.ndarray
    mm_per_px: float | None


def rasterise(polygons: Iterable[tuple[int, Sequence[Sequence[float]]]], shape_hw: tuple[int, int]) -> np.ndarray:
    """Label map (H, W) uint8 of ``(label value, polygon in image px)`` pairs, later ones on top."""
    out = np.zeros(shape_hw, np.uint8)
    for value, polygon in polygons:
        pts = np.round(np.asarray(polygon, dtype=np.float64)).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(out, [pts], int(value))
    return out


def make_sample(clip_id: int, frame_index: int, frame_image: np.ndarray, regions: Sequence[Any],
                reference: np.ndarray, known: Sequence[int], input_size: tuple[int, int],
                cm_per_px: float | None) -> ContourSample:
    """A :class:`ContourSample` from a frame, its regions and its reviewed label map."""
    box = image_box(regions, frame_image.shape[:2])
    x0, y0, x1, y1 = box
    h, w = input_size
    labels = cv2.resize(np.ascontiguousarray(reference[y0 : y1 + 1, x0 : x1 + 1]), (w, h),
                        interpolation=cv2.INTER_NEAREST).astype(np.int64)
    return ContourSample(clip_id, frame_index, frame_image, box, reference, tuple(sorted(set(known))),
                         to_input(frame_image[None], box, input_size)[0], labels,
                         None if not cm_per_px else float(cm_per_px) * 10.0)


def _owner(model_name: str | None) -> str | None:
    return None if model_name is None else CONTOURS_STORED_UNDER.get(model_name, model_name)


def load_contour_samples(store: Any, entry: registry.WeightsEntry) -> list[ContourSample]:
    """Frames of the store with reviewed contours of ``entry``'s model, as training samples.

    Parameters
    ----------
    store : echomeasure.store.Store
        The review store.
    entry : WeightsEntry
        The segmentation model (its name, channels and input size).
    """
    from echomeasure.store import contours

    channel = {name: k for k, name in enumerate(entry.channels) if k > 0}
    model_names = {rec.id: rec.name for rec in store.model_versions()}
    samples: list[ContourSample] = []
    unreadable = 0
    for rec in store.clips():
        if rec.kind != "2d":
            continue
        states = contours.current_contours(store, rec.id)
        owners = {_owner(model_names.get(st.proposal.model_version_id))
                  for st in states if st.proposal is not None and st.proposal.model_version_id is not None}
        if entry.name not in owners:
            continue
        by_frame: dict[int, list[tuple[int, Sequence[Sequence[float]]]]] = {}
        for st in states:
            if st.status not in TARGET_ACTIONS or st.polygon is None or st.structure not in channel:
                continue
            made_by = None if st.proposal is None else _owner(model_names.get(st.proposal.model_version_id))
            if made_by not in (None, entry.name):
                continue
            by_frame.setdefault(st.frame_index, []).append((channel[st.structure], st.polygon))
        if not by_frame:
            continue
        regions = rec.region_objects
        for fi, polygons in sorted(by_frame.items()):
            try:
                image = store.frame(rec.id, fi)
            except (FileNotFoundError, StoreError) as exc:  # a frame never saved, deleted or damaged
                log.info("clip %d frame %d: no usable stored image (%s); skipped", rec.id, fi, type(exc).__name__)
                unreadable += 1
                continue
            polygons.sort(key=lambda p: p[0])
            reference = rasterise(polygons, image.shape[:2])
            cm = square_cm_per_px(regions, rec.user_cm_per_px)
            samples.append(make_sample(rec.id, fi, image, regions, reference, [k for k, _ in polygons],
                                       entry.input_size, cm))
    if unreadable:
        log.warning("%d frame(s) with reviewed contours skipped: their stored image is missing or damaged "
                    "(re-ingest those clips to learn from them)", unreadable)
    return samples


# --------------------------------------------------------------------------- metrics


def largest_region(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected region of a mask (the one a contour proposal outlines)."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, bool)
    return lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def signed_offset_mm(pred: np.ndarray, reference: np.ndarray, mm_per_px: float) -> float | None:
    """Mean signed distance (mm) of the outline of mask ``pred`` from the outline of mask
    ``reference`` (its largest region): + outside the reference, - inside.  Both outlines run
    through their boundary pixels' centres, so the measure is symmetric.  None when either mask
    is empty."""
    if not pred.any() or not reference.any():
        return None
    ref_outlines, _ = cv2.findContours(reference.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    ref = max(ref_outlines, key=cv2.contourArea)
    pred_outlines, _ = cv2.findContours(pred.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    points = np.concatenate([c.reshape(-1, 2) for c in pred_outlines])
    inside_px = [cv2.pointPolygonTest(ref, (float(x), float(y)), True) for x, y in points]
    return -float(np.mean(inside_px)) * mm_per_px


def _dice(a: np.ndarray, b: np.ndarray) -> float | None:
    s = int(a.sum() + b.sum())
    return None if s == 0 else float(2 * (a & b).sum() / s)


def contour_metrics(model: Any, entry: registry.WeightsEntry, samples: Sequence[ContourSample]) -> dict[str, Any]:
    """Dice and mean signed boundary offset (mm) of each reviewed structure on ``samples``.

    Dice compares the predicted label map with the reference; the offset is that of the largest
    predicted region's boundary (the contour the model proposes, :func:`largest_region`).
    Returns ``{"frames", "mean_dice", "structures": {name: {"dice", "offset_mm", "dice_median",
    "offset_mm_median", "n"}}}`` (over the frames where the structure was reviewed; offsets over
    calibrated frames only).
    """
    per: dict[str, dict[str, list[float]]] = {}
    for s in samples:
        pred = predict(model, s.frame_image[None], s.box, entry.input_size)[0][0]
        for k in s.known:
            name = entry.channels[k]
            d = per.setdefault(name, {"dice": [], "offset_mm": []})
            a, b = pred == k, s.reference == k
            dv = _dice(a, b)
            if dv is not None:
                d["dice"].append(dv)
            if s.mm_per_px:
                off = signed_offset_mm(largest_region(a), b, s.mm_per_px)
                if off is not None:
                    d["offset_mm"].append(off)

    def mean(xs: list[float]) -> float | None:
        return round(float(np.mean(xs)), 4) if xs else None

    def median(xs: list[float]) -> float | None:
        return round(float(np.median(xs)), 4) if xs else None

    structures = {n: {"dice": mean(v["dice"]), "offset_mm": mean(v["offset_mm"]), "dice_median": median(v["dice"]),
                      "offset_mm_median": median(v["offset_mm"]), "n": len(v["dice"])}
                  for n, v in per.items()}
    dices = [v["dice"] for v in structures.values() if v["dice"] is not None]
    return {"frames": len(samples), "mean_dice": round(float(np.mean(dices)), 4) if dices else None,
            "structures": structures}


# --------------------------------------------------------------------------- training


def _freeze_batch_norm(module: Any) -> None:
    import torch

    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def unreviewed_kl(logits: Any, parent_logits: Any, target: Any, known: Any) -> Any:
    """KL divergence, on the pixels outside every reviewed structure, between the parent's and the
    model's split of the probability among the classes *not* reviewed on the frame (background
    included).  Whether such a pixel is one of the reviewed structures is left to the reviews.

    ``logits``, ``parent_logits`` (B, C, H, W); ``target`` (B, H, W); ``known`` (B, C) bool.
    """
    import torch

    free = ~known.clone()
    free[:, 0] = True
    excluded = ~free[:, :, None, None].expand_as(logits)
    child = torch.log_softmax(logits.masked_fill(excluded, -1e4), dim=1)
    parent = torch.log_softmax(parent_logits.masked_fill(excluded, -1e4), dim=1)
    kl = (parent.exp() * (parent - child)).sum(dim=1)
    outside = target == 0
    return kl[outside].mean() if bool(outside.any()) else logits.sum() * 0.0


def train_head(model: Any, samples: Sequence[ContourSample], *, steps: int, lr: float, seed: int,
               keep_unreviewed: float = KEEP_UNREVIEWED, batch_size: int = BATCH_SIZE) -> list[float]:
    """Fine-tune the DeepLabV3 head of ``model`` on cached backbone features; the loss per step.

    Backbone frozen, batch-norm statistics kept, AdamW with a cosine decay to 10 % of ``lr``;
    loss: :func:`~echomeasure.training.seg_train.partial_label_loss` on the reviewed structures
    plus ``keep_unreviewed`` x :func:`unreviewed_kl` against the model as it was before (0: the
    unreviewed classes are free to drift).
    """
    import torch
    import torch.nn.functional as F

    from echomeasure.training.seg_train import partial_label_loss

    torch.manual_seed(seed)
    net = model.m
    backbone, head = net.backbone, net.classifier
    n_classes = int(model.num_outputs)
    x = np.stack([s.image for s in samples]).astype(np.float32)
    y = torch.from_numpy(np.stack([s.labels for s in samples]))
    known = np.zeros((len(samples), n_classes), bool)
    for i, s in enumerate(samples):
        known[i, list(s.known)] = True
    known_t = torch.from_numpy(known)
    model.eval()
    with torch.no_grad():
        feats = torch.cat([backbone(torch.from_numpy(x[i : i + 16]))["out"] for i in range(0, len(x), 16)])
        parent_logits = torch.cat([head(feats[i : i + 16]) for i in range(0, len(feats), 16)])
    size = tuple(x.shape[-2:])
    for p in backbone.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    gen = np.random.default_rng(seed)
    head.train()
    _freeze_batch_norm(head)
    losses: list[float] = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / max(1, steps))))
        idx = torch.from_numpy(gen.integers(0, len(samples), min(batch_size, len(samples))))
        logits = F.interpolate(head(feats[idx]), size=size, mode="bilinear", align_corners=False)
        loss = partial_label_loss(logits, y[idx], known_t[idx])
        if keep_unreviewed > 0:
            parent = F.interpolate(parent_logits[idx], size=size, mode="bilinear", align_corners=False)
            loss = loss + keep_unreviewed * unreviewed_kl(logits, parent, y[idx], known_t[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step % 25 == 0:
            log.info("contour fine-tune step %d loss %.4f", step, losses[-1])
    for p in backbone.parameters():
        p.requires_grad_(True)
    model.eval()
    return losses


# --------------------------------------------------------------------------- the command


@dataclass
class ContourFinetuneOutcome:
    """What :func:`finetune_contours` did."""

    entry: registry.WeightsEntry
    parent: registry.WeightsEntry
    activated: bool
    n_train_frames: int
    n_holdout_frames: int
    before: dict[str, Any]
    after: dict[str, Any]
    losses: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (what ``echomeasure finetune --model`` prints)."""
        n = max(1, min(5, len(self.losses) // 2))
        return {"model": self.entry.name, "version": self.entry.version, "parent": self.parent.version,
                "sha256": self.entry.sha256, "activated": self.activated,
                "train_frames": self.n_train_frames, "holdout_frames": self.n_holdout_frames,
                "steps": len(self.losses),
                "loss_first": round(float(np.mean(self.losses[:n])), 4) if self.losses else None,
                "loss_last": round(float(np.mean(self.losses[-n:])), 4) if self.losses else None,
                "before": self.before, "after": self.after, "wall_s": round(self.wall_s, 1)}


def segmentation_entry(model: str, version: str | None, weights_dir: Path) -> registry.WeightsEntry:
    """The registry entry of a segmentation model; TrainingError for a model of another kind."""
    entry = registry.get_entry(model, version, weights_dir)
    if not is_segmentation(entry.channels):
        raise TrainingError(f"{model} is not a segmentation model; fine-tune it with --base")
    return entry


def finetune_contours(
    db_url: str | None = None,
    *,
    model: str = PLAX_SEG_MODEL,
    base_version: str | None = None,
    steps: int = 150,
    lr: float = 3e-4,
    holdout_fraction: float = 0.25,
    min_frames: int = MIN_REVIEWED_CONTOUR_FRAMES,
    keep_unreviewed: float = KEEP_UNREVIEWED,
    seed: int = 0,
    activate: Activate = "auto",
    weights_dir: str | os.PathLike[str] | None = None,
    store: Any = None,
) -> ContourFinetuneOutcome:
    """Fine-tune segmentation model ``model`` on the reviewed contours of the store and register it.

    Parameters
    ----------
    db_url : str, optional
        Review store URL (default ``--db``/``$ECHOMEASURE_DB``/SQLite under ``db/``).
    model : str
        A registered segmentation model (``plax-seg``, ``apical-seg`` or one trained on a mask folder).
    base_version : str, optional
        Version to start from (default: the active one).
    steps, lr, seed
        Optimisation settings (seeded: the same reviews give the same weights).
    holdout_fraction : float
        Share of reviewed clips kept out for the before/after evaluation.
    min_frames : int
        Refuse with fewer reviewed frames than this.
    keep_unreviewed : float
        Weight of the term that keeps the parent's split among the classes not reviewed on a
        frame (:func:`unreviewed_kl`; 0: partial labels alone).
    activate : {"auto", "yes", "no"}
        Make the new version active: when its held-out mean Dice is not lower (auto), always, never.
    weights_dir : path, optional
        Weights folder (default ``$ECHOMEASURE_WEIGHTS`` or ``weights/``).
    store : echomeasure.store.Store, optional
        An open store (instead of ``db_url``).

    Raises
    ------
    TrainingError
        Not a segmentation model, no or too few reviewed contours, bad settings.
    WeightsError
        The model or version is not registered.
    """

    if steps < 1:
        raise TrainingError("--steps must be at least 1")
    if not 0.0 <= holdout_fraction < 1.0:
        raise TrainingError("--holdout must be at least 0 and below 1")
    if not keep_unreviewed >= 0.0:
        raise TrainingError("--keep-unreviewed must be 0 or more")
    wdir = Path(weights_dir) if weights_dir is not None else config.weights_dir()
    parent = segmentation_entry(model, base_version, wdir)
    registry.check_writable(wdir)  # before training, not after it
    with given_or_opened_store(store, db_url) as review_store:
        return _finetune_contours(review_store, parent, wdir, steps=steps, lr=lr, holdout_fraction=holdout_fraction,
                                  min_frames=min_frames, keep_unreviewed=keep_unreviewed, seed=seed,
                                  activate=activate)


def _finetune_contours(store: Any, parent: registry.WeightsEntry, wdir: Path, *, steps: int, lr: float,
                       holdout_fraction: float, min_frames: int, keep_unreviewed: float, seed: int,
                       activate: Activate) -> ContourFinetuneOutcome:
    from echomeasure.propose.types import ModelInfo

    t0 = time.monotonic()
    samples = load_contour_samples(store, parent)
    if not samples:
        raise TrainingError(f"no accepted or corrected {parent.name} contours in the store; review contours first")
    if len(samples) < min_frames:
        raise TrainingError(f"only {len(samples)} frame(s) with reviewed {parent.name} contours "
                            f"(at least {min_frames} needed); review more clips before fine-tuning")
    train_s, hold_s = split_by_clip(samples, holdout_fraction, seed)
    log.info("fine-tuning %s %s on %d reviewed frames (%d held out)", parent.name, parent.version,
             len(train_s), len(hold_s))
    store_parent = store_version(store, parent)
    loaded = registry.load_model(parent.name, parent.version, wdir)
    before = contour_metrics(loaded.model, parent, hold_s) if hold_s else {}
    losses = train_head(loaded.model, train_s, steps=steps, lr=lr, seed=seed, keep_unreviewed=keep_unreviewed)

    version = next_ft_version(parent, wdir)
    file_name = f"{parent.name}-{version}.pt"
    recipe = (f"echomeasure finetune --model {parent.name} --base-version {parent.version} --steps {steps} "
              f"--seed {seed} --holdout {holdout_fraction} --keep-unreviewed {keep_unreviewed}")
    trained_on = (f"{len(train_s)} frames with reviewed contours from {len({s.clip_id for s in train_s})} clips "
                  f"of the review store; parent {parent.name} {parent.version}")
    with scratch_folder("em-ftseg-") as scratch_dir:  # never in the weights folder
        sha = registry.save_weights(loaded.model, scratch_dir / file_name)
        entry = replace(parent, version=version, file=file_name, sha256=sha, parent=parent.version, created="",
                        metrics={}, thresholds=registry.FlagThresholds(), seed=seed, recipe=recipe,
                        trained_on=trained_on)
        registry.register(entry, weights_dir=scratch_dir)
        saved = registry.load_model(parent.name, version, scratch_dir)  # the weights as stored (int8)
        after = contour_metrics(saved.model, entry, hold_s) if hold_s else {}
        entry = _publish(entry, scratch_dir / file_name, parent, wdir, train_s, hold_s, before, after, losses,
                         steps=steps, lr=lr, seed=seed, keep_unreviewed=keep_unreviewed, activate=activate, t0=t0)
    store.register_model_version(
        ModelInfo(entry.name, entry.version, entry.sha256), parent_id=store_parent,
        trained_on={"contour_reviews": {"clip_ids": entry.extra["finetune_contours"]["train_clip_ids"],
                                        "frames": len(train_s)}},
        metrics=dict(entry.metrics), activate=entry.extra["finetune_contours"]["activated"], actor="finetune",
    )
    return ContourFinetuneOutcome(entry, parent, entry.extra["finetune_contours"]["activated"], len(train_s),
                                  len(hold_s), before, after, losses, time.monotonic() - t0)


def _publish(entry: registry.WeightsEntry, weight_file: Path, parent: registry.WeightsEntry, wdir: Path,
             train_s: Sequence[ContourSample], hold_s: Sequence[ContourSample], before: dict[str, Any],
             after: dict[str, Any], losses: list[float], *, steps: int, lr: float, seed: int, keep_unreviewed: float,
             activate: Activate, t0: float) -> registry.WeightsEntry:
    """Register the measured child in the weights folder (its version chosen under the manifest
    lock, :func:`~echomeasure.training.finetune.publish_child`) with its record and metrics."""
    activated = _should_activate(activate, before, after)
    extra = {**{k: v for k, v in dict(parent.extra).items() if k != "finetune_contours"}, "finetune_contours": {
        "parent": parent.version, "train_frames": len(train_s), "holdout_frames": len(hold_s),
        "train_clip_ids": sorted({s.clip_id for s in train_s}), "holdout_clip_ids": sorted({s.clip_id for s in hold_s}),
        "trained": "DeepLabV3 head on frozen backbone features, batch norm kept; partial-label loss + "
                   "keep_unreviewed x KL to the parent's split among the unreviewed classes",
        "optimiser": {"steps": steps, "lr": lr, "batch_size": BATCH_SIZE, "seed": seed, "weight_decay": 1e-4,
                      "keep_unreviewed": keep_unreviewed},
        "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4),
        "before": before, "after": after, "activated": activated, "wall_s": round(time.monotonic() - t0, 1)}}
    # only what was measured on the child: the parent's own figures do not describe it
    review_figures = _flat_review_metrics(after)
    metrics = {registry.REVIEW_HOLDOUT: review_figures} if review_figures else {}
    return publish_child(replace(entry, metrics=metrics, extra=extra), weight_file, parent, wdir, activate=activated)


def _flat_review_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The review hold-out figures of :func:`contour_metrics` as flat numbers."""
    out: dict[str, float] = {}
    if report.get("mean_dice") is not None:
        out["mean_dice"] = report["mean_dice"]
    for name, v in (report.get("structures") or {}).items():
        if v["dice"] is not None:
            out[f"dice_{name}"] = v["dice"]
        if v["offset_mm"] is not None:
            out[f"offset_mm_{name}"] = v["offset_mm"]
    return out


def _should_activate(mode: Activate, before: dict[str, Any], after: dict[str, Any]) -> bool:
    if mode != "auto":
        return mode == "yes"
    b, a = before.get("mean_dice"), after.get("mean_dice")
    if b is None or a is None:
        # nothing held out was measured (--holdout 0, a single reviewed clip): "not lower" cannot be shown
        log.warning("the new version was not measured on held-out reviewed contours; it is registered but not "
                    "made active (use --activate yes to make it active)")
        return False
    return bool(a >= b)


__all__ = ["CONTOURS_STORED_UNDER", "KEEP_UNREVIEWED", "MIN_REVIEWED_CONTOUR_FRAMES", "ContourFinetuneOutcome",
           "ContourSample", "contour_metrics", "finetune_contours", "largest_region", "load_contour_samples",
           "make_sample", "rasterise", "segmentation_entry", "signed_offset_mm", "train_head",
           "unreviewed_kl"]
