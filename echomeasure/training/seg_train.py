"""Segmentation training and evaluation on labelled frames that users bring (CAMUS, EchoNet-Dynamic, mask folders).

The dataset readers (:mod:`.camus`, :mod:`.echonet_dynamic`, :mod:`.mask_folder`) turn each format
into :class:`SegSample` items; this module trains a DeepLabV3 on them, registers it, and
evaluates a registered model on them (Dice per structure, and LV volumes / EF by the method of
discs, :mod:`echomeasure.propose.volumes`, where the samples come in ED/ES pairs).

Partial labels: a sample may annotate only some classes (EchoNet-Dynamic traces the LV cavity
only).  ``known`` lists the annotated label values; a pixel labelled 0 in such a sample means
"none of the annotated structures", and the loss asks only that (``-log`` of the summed
probability of the other classes), so an apical model keeps what it knows of myocardium and
atrium while learning the traced cavity.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from echomeasure.errors import InvalidInputError

log = logging.getLogger(__name__)

DEFAULT_SEG_INPUT_PX = 128
BATCH = 8


@dataclass
class SegSample:
    """One labelled frame.

    ``image`` (H, W) or (H, W, 3) uint8; ``labels`` (H, W) uint8 label values; ``cm_per_px`` the
    (isotropic) pixel size, None when unknown; ``case`` groups the frames of one clip (ED and
    ES); ``phase`` "ed", "es" or None; ``known`` the annotated label values (None: all);
    ``reported`` values published with the case (e.g. ``{"ef": 60.1}``).
    """

    case: str
    view: str
    phase: str | None
    image: np.ndarray
    labels: np.ndarray
    cm_per_px: float | None
    split: str = "train"
    known: tuple[int, ...] | None = None
    reported: dict[str, float] = field(default_factory=dict)


def rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) -> (H, W, 3) uint8."""
    return np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image


def resample_isotropic(image: np.ndarray, labels: np.ndarray | None, spacing_xy_mm: tuple[float, float]):
    """Resample to square pixels of the finer spacing; returns ``(image, labels, cm_per_px)``."""
    sx, sy = float(spacing_xy_mm[0]), float(spacing_xy_mm[1])
    if not (sx > 0 and sy > 0 and math.isfinite(sx) and math.isfinite(sy)):
        return image, labels, None
    target = min(sx, sy)
    h, w = image.shape[:2]
    size = (max(1, round(w * sx / target)), max(1, round(h * sy / target)))
    if size != (w, h):
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        if labels is not None:
            labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
    return image, labels, target / 10.0


def slug(text: str) -> str:
    """A registry-safe name: lowercase letters, digits and dashes."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s or "custom"


# --------------------------------------------------------------------------- loss and training


def dice_ce_loss(logits, target):
    """Cross-entropy plus the mean soft Dice loss of the structures (background excluded).

    ``logits`` (B, C, H, W), ``target`` (B, H, W) int64 with every pixel labelled.
    """
    import torch
    import torch.nn.functional as F

    ce = F.cross_entropy(logits, target)
    prob = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target, prob.shape[1]).permute(0, 3, 1, 2).float()
    inter = (prob * onehot).sum(dim=(0, 2, 3))
    dice = (2 * inter + 1) / (prob.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3)) + 1)
    return ce + (1 - dice[1:]).mean()


def partial_label_loss(logits, target, known):
    """Cross-entropy where a 0 label of a partially annotated sample means "any unannotated class",
    plus a soft Dice on each annotated structure.

    ``logits`` (B, C, H, W), ``target`` (B, H, W) int64, ``known`` (B, C) bool (annotated classes).
    """
    import torch
    import torch.nn.functional as F

    c = logits.shape[1]
    onehot = F.one_hot(target, c).permute(0, 3, 1, 2).bool()
    # pixels labelled 0 in a sample with unannotated classes: allowed = every class not annotated
    not_known = ~known.clone()
    not_known[:, 0] = True
    fully = known.all(dim=1)
    open_bg = (target == 0) & ~fully[:, None, None]
    allowed = torch.where(open_bg[:, None], not_known[:, :, None, None].expand_as(onehot), onehot)
    masked = logits.masked_fill(~allowed, float("-inf"))
    ce = (torch.logsumexp(logits, dim=1) - torch.logsumexp(masked, dim=1)).mean()
    prob = torch.softmax(logits, dim=1)
    oh = onehot.float()
    inter = (prob * oh).sum(dim=(2, 3))
    sums = prob.sum(dim=(2, 3)) + oh.sum(dim=(2, 3))
    kf = known.float()
    dice_c = (2 * (inter * kf).sum(0) + 1) / ((sums * kf).sum(0) + 1)
    weight = (kf.sum(0) > 0).float()
    weight[0] = 0.0
    dice_loss = ((1 - dice_c) * weight).sum() / weight.sum().clamp(min=1)
    return ce + dice_loss


def _arrays(samples: Sequence[SegSample], n_classes: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.stack([cv2.resize(rgb(s.image), (size, size), interpolation=cv2.INTER_AREA) for s in samples]).transpose(0, 3, 1, 2)
    y = np.stack([cv2.resize(s.labels, (size, size), interpolation=cv2.INTER_NEAREST) for s in samples]).astype(np.int64)
    known = np.zeros((len(samples), n_classes), bool)
    for i, s in enumerate(samples):
        if s.known is None:
            known[i] = True
        else:
            known[i, list(s.known)] = True
    return x, y, known


@dataclass
class SegTrainOutcome:
    """What :func:`train_segmentation` registered."""

    entry: Any
    n_train: int
    steps: int
    train_wall_s: float


def _new_version(name: str, version: str | None, init_from: Any, existing: set[str]) -> str:
    """The version to register: the one asked for (refused if taken), else the next free 1.N / PARENT-dsN."""
    if version is not None:
        if version in existing:
            raise InvalidInputError(f"{name} {version} is already registered; give another --version")
        return version
    stem = (init_from.version + "-ds") if init_from is not None else "1."
    i = 0 if init_from is None else 1
    while f"{stem}{i}" in existing:
        i += 1
    return f"{stem}{i}"


def _fit(model: Any, x: np.ndarray, y: np.ndarray, known: np.ndarray, gen: np.random.Generator, *, steps: int,
         lr: float, max_minutes: float | None) -> tuple[int, float]:
    """AdamW on random batches (half flipped left-right) with the partial-label loss; (steps done, seconds)."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    model.train()
    t0 = time.time()
    done = 0
    for step in range(steps):
        idx = gen.integers(0, len(x), min(BATCH, len(x)))
        xb = torch.from_numpy(x[idx].astype(np.float32) / 255.0)
        yb = torch.from_numpy(y[idx])
        kb = torch.from_numpy(known[idx])
        if gen.random() < 0.5:
            xb, yb = xb.flip(-1), yb.flip(-1)
        loss = partial_label_loss(model(xb), yb, kb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        done += 1
        if step % 25 == 0:
            log.info("step %d loss %.4f", step, float(loss.detach()))
        if max_minutes is not None and time.time() - t0 > max_minutes * 60:
            break
    return done, time.time() - t0


def train_segmentation(
    samples: Sequence[SegSample],
    *,
    name: str,
    classes: Sequence[str],
    trained_on: str,
    recipe: str,
    steps: int = 300,
    seed: int = 0,
    out: str | os.PathLike[str] | None = None,
    version: str | None = None,
    init_from: Any = None,
    input_px: int = DEFAULT_SEG_INPUT_PX,
    activate: bool = False,
    eval_samples: Sequence[SegSample] = (),
    max_minutes: float | None = None,
    extra: dict[str, Any] | None = None,
) -> SegTrainOutcome:
    """Train a DeepLabV3 on labelled frames, evaluate it on ``eval_samples``, register it.

    ``init_from``: a loaded model (:class:`~echomeasure.models.registry.LoadedModel`) of the same
    classes to start from (fine-tuning); None trains from random weights.
    """
    import torch

    from echomeasure import config
    from echomeasure.models.builders import DEFAULT_ARCH, build_model, count_parameters
    from echomeasure.models.registry import WeightsEntry, list_entries, publish, save_weights

    if not samples:
        raise InvalidInputError("no labelled frames to train on in the given split")
    if steps < 1:
        raise InvalidInputError("--steps must be at least 1")
    torch.manual_seed(seed)
    out_dir = config.weights_dir() if out is None else os.fspath(out)
    asked = version
    version = _new_version(name, version, init_from, {e.version for e in list_entries(out_dir) if e.name == name})
    arch = init_from.entry.arch if init_from is not None else DEFAULT_ARCH
    if init_from is not None:
        input_px = int(init_from.entry.input_size[0])
        model = init_from.model
    else:
        model = build_model(arch, len(classes))
    x, y, known = _arrays(samples, len(classes), input_px)
    gen = np.random.default_rng(seed)
    lr = 3e-4 if init_from is not None else 1e-3
    done, wall = _fit(model, x, y, known, gen, steps=steps, lr=lr, max_minutes=max_minutes)
    model.eval()
    metrics: dict[str, float] = {}
    if eval_samples:
        report = evaluate_samples(model, (input_px, input_px), classes, eval_samples)
        metrics = flat_seg_metrics(report)
    file = f"{name}-{version}.pt"
    scratch = Path(tempfile.mkdtemp(prefix="em-seg-"))  # published into out_dir below, never written there directly
    sha = save_weights(model, scratch / file)
    entry = WeightsEntry(
        name=name, version=version, arch=arch, input_size=(input_px, input_px), channels=tuple(classes), file=file,
        sha256=sha, normalisation="unit", trained_on=trained_on, seed=seed, recipe=recipe, metrics=metrics,
        parent=None if init_from is None else init_from.version, num_params=count_parameters(model),
        extra={"steps_done": done, "train_s": round(wall, 1), "train_frames": len(samples),
               "eval_frames": len(eval_samples), **(extra or {})},
    )
    try:
        # file and manifest in one step under the manifest lock, never over a registered file
        # a version chosen here is chosen again under the lock (another run may have taken it)
        entry = publish(entry, scratch / file, weights_dir=out_dir, activate=activate,
                        version_for=None if asked is not None else
                        (lambda taken: _new_version(name, None, init_from, set(taken))))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return SegTrainOutcome(entry, len(samples), done, wall)


# --------------------------------------------------------------------------- evaluation


def _lv_axis(labels: np.ndarray):
    """The LV long axis of a label map; without an atrium or myocardium in the map (EchoNet
    tracings), the cavity's principal axis with the base at its deeper end."""
    from echomeasure.propose import volumes

    present = np.isin(labels, (volumes.LABEL_MYO, volumes.LABEL_LA)).any()
    if present:
        return volumes.lv_axis(labels)
    lv = labels == volumes.LABEL_LV
    if lv.sum() < 20:
        return None
    contour = volumes._outline(lv)
    centre = contour.mean(axis=0)
    direction = np.linalg.svd(contour - centre, full_matrices=False)[2][0]
    if direction[1] < 0:
        direction = -direction  # pointing down, towards the base
    proj = (contour - centre) @ direction
    base_end, apex = contour[int(np.argmax(proj))], contour[int(np.argmin(proj))]
    length = float((base_end - apex) @ direction)
    if length < 5:
        return None
    axis = -direction
    mid = apex - axis * length  # on the principal line, level with the basal end
    positions = (np.arange(volumes.N_DISCS) + 0.5) / volumes.N_DISCS * length
    diam = volumes._chord_widths(contour, mid, axis, positions)
    return volumes.LvAxis(tuple(apex), tuple(mid), (tuple(mid), tuple(mid)), length, diam, float(lv.sum()), contour)


def lv_volume(labels: np.ndarray, cm_per_px: float | None) -> float | None:
    """Single-plane method-of-discs LV volume: ml when ``cm_per_px`` is known, else px³ (EF only)."""
    from echomeasure.propose import volumes

    ax = _lv_axis(labels)
    return None if ax is None else volumes.mod_single_plane_ml(ax, cm_per_px or 1.0)


Pairs = list[tuple[float, float]]


def _biplane_pairs(axes: dict[str, dict[str, Any]]) -> tuple[Pairs, Pairs]:
    """Biplane EF (predicted, reference maps) and (predicted, published) of cases with both apical views."""
    from echomeasure.propose import volumes

    vs_ref, vs_reported = [], []
    for case in {k.rsplit("/", 1)[0] for k in axes}:
        a4, a2 = axes.get(f"{case}/a4c"), axes.get(f"{case}/a2c")
        if a4 is None or a2 is None or a4["cm"] is None or a2["cm"] is None:
            continue
        ef = {}
        for src in ("pred", "ref"):
            try:
                ed = volumes.mod_biplane_ml(a4[f"{src}_ed"], a4["cm"], a2[f"{src}_ed"], a2["cm"])
                es = volumes.mod_biplane_ml(a4[f"{src}_es"], a4["cm"], a2[f"{src}_es"], a2["cm"])
            except (KeyError, AttributeError, TypeError):
                continue
            ef[src] = volumes.ef_percent(ed, es)
        pred, ref = ef.get("pred"), ef.get("ref")
        if pred is None:
            continue
        if ref is not None:
            vs_ref.append((pred, ref))
        if "ef" in a4["reported"]:
            vs_reported.append((pred, a4["reported"]["ef"]))
    return vs_ref, vs_reported


#: ``evaluate --dataset`` measurement names (catalogue names; ``lvef_biplane`` by the biplane method)
#: -> the unit of their errors.
SEG_MEASUREMENTS = {"lvef": "%", "lvedv": "ml", "lvesv": "ml", "lvef_biplane": "%"}
#: Registered metric name (``weights list``, the manifest) -> (measurement, comparison).
_FLAT_METRICS = {"ef_mae_points": ("lvef", None), "ef_mae_points_vs_reported": ("lvef", "vs_reported"),
                 "edv_mae_ml": ("lvedv", None), "esv_mae_ml": ("lvesv", None),
                 "ef_biplane_mae_points": ("lvef_biplane", None),
                 "ef_biplane_mae_points_vs_reported": ("lvef_biplane", "vs_reported")}


def _error_summary(name: str, pairs: Pairs) -> dict[str, Any]:
    """``{"mae", "median", "bias", "gross", "n"}`` of (predicted, reference) pairs in the unit of
    :data:`SEG_MEASUREMENTS`; a gross miss is :func:`echomeasure.training.metrics.summarise`'s
    (more than ``GROSS_MISS_PCT`` % of the reference value)."""
    from echomeasure.training.metrics import summarise

    if not pairs:
        return {"mae": None, "median": None, "bias": None, "gross": 0, "n": 0}
    acc = summarise(name, SEG_MEASUREMENTS[name], [p for p, _ in pairs], [t for _, t in pairs])
    return {"mae": round(acc.mae, 3), "median": round(float(acc.median_abs or 0.0), 3), "bias": round(acc.bias, 3),
            "gross": int(acc.n_gross or 0), "n": acc.n}


def flat_seg_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The manifest form of an :func:`evaluate_samples` report (``dice_lv``, ``ef_mae_points``, ...)."""
    out = {f"dice_{k}": v for k, v in report["dice"].items() if v is not None}
    for key, (name, comparison) in _FLAT_METRICS.items():
        m = report["measurements"].get(name)
        figure = None if m is None else (m if comparison is None else m.get(comparison) or {}).get("mae")
        if figure is not None:
            out[key] = figure
    return out


def evaluate_samples(model: Any, size_hw: tuple[int, int], classes: Sequence[str], samples: Sequence[SegSample],
                     reference_volumes: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """Dice per structure and LV EDV / ESV / EF errors of ``model`` on ``samples``.

    Volumes and EF are compared with the same method on the reference label maps (and with the
    dataset's published EF where a sample carries one); volumes need a pixel size.

    Returns ``{"n", "dice": {structure: mean}, "measurements": {name: {"mae", "median", "bias",
    "gross", "n", "failed", "unit"[, "vs_reported": {...}]}}, "volumes": {"pairs", "failed",
    "method"}}``: every name of :data:`SEG_MEASUREMENTS` when the samples hold an LV ED/ES pair
    (``n`` 0 and ``mae`` None where nothing could be compared, e.g. volumes without a pixel size;
    ``failed``: pairs whose predicted volume could not be measured), one object per measurement as
    the ``evaluate`` contract has it; :func:`flat_seg_metrics` gives the registered metrics.
    """
    from echomeasure.models.segmentation import predict

    dice_vals: dict[str, list[float]] = {n: [] for n in classes[1:]}
    vols: dict[str, dict[str, Any]] = {}
    axes: dict[str, dict[str, Any]] = {}
    for s in samples:
        img = rgb(s.image)
        h, w = img.shape[:2]
        pred, _ = predict(model, img[None], (0, 0, w - 1, h - 1), size_hw)
        pred = pred[0]
        for k, n in enumerate(classes[1:], start=1):
            if s.known is not None and k not in s.known:
                continue
            a, b = pred == k, s.labels == k
            tot = int(a.sum() + b.sum())
            if tot:
                dice_vals[n].append(float(2 * (a & b).sum() / tot))
        if s.phase in ("ed", "es") and "lv" in classes:
            v = vols.setdefault(f"{s.case}/{s.view}", {"cm": s.cm_per_px, "reported": s.reported})
            v[f"pred_{s.phase}"] = lv_volume(pred, s.cm_per_px)
            v[f"ref_{s.phase}"] = lv_volume(s.labels, s.cm_per_px)
            a = axes.setdefault(f"{s.case}/{s.view}", {"cm": s.cm_per_px, "reported": s.reported})
            a[f"pred_{s.phase}"], a[f"ref_{s.phase}"] = _lv_axis(pred), _lv_axis(s.labels)
    pairs: dict[str, Pairs] = {"ef_vs_reference": [], "ef_vs_reported": [], "edv": [], "esv": []}
    failed = 0
    for v in vols.values():
        if not all(k in v for k in ("pred_ed", "pred_es", "ref_ed", "ref_es")):
            continue
        if v["pred_ed"] is None or v["pred_es"] is None or not v["pred_ed"] > 0:
            failed += 1
            continue
        ef = 100.0 * (v["pred_ed"] - v["pred_es"]) / v["pred_ed"]
        if v["ref_ed"] and v["ref_es"] is not None:
            pairs["ef_vs_reference"].append((ef, 100.0 * (v["ref_ed"] - v["ref_es"]) / v["ref_ed"]))
            if v["cm"]:
                pairs["edv"].append((v["pred_ed"], v["ref_ed"]))
                pairs["esv"].append((v["pred_es"], v["ref_es"]))
        if "ef" in v["reported"]:
            pairs["ef_vs_reported"].append((ef, v["reported"]["ef"]))

    biplane_vs_ref, biplane_vs_reported = _biplane_pairs(axes)

    def mean(xs: list[float]) -> float | None:
        return round(float(np.mean(xs)), 3) if xs else None

    measurements: dict[str, dict[str, Any]] = {}
    for name, vs_ref, vs_reported in (("lvef", pairs["ef_vs_reference"], pairs["ef_vs_reported"]),
                                      ("lvedv", pairs["edv"], []), ("lvesv", pairs["esv"], []),
                                      ("lvef_biplane", biplane_vs_ref, biplane_vs_reported)):
        if not (vols or vs_reported):  # no LV end-diastole / end-systole pair in these samples
            continue
        measurements[name] = {**_error_summary(name, vs_ref), "failed": failed, "unit": SEG_MEASUREMENTS[name]}
        if vs_reported:  # against the EF the dataset publishes with the case
            measurements[name]["vs_reported"] = _error_summary(name, vs_reported)
    return {
        "n": len(samples),
        "dice": {n: mean(v) for n, v in dice_vals.items()},
        "measurements": measurements,
        "volumes": {
            "pairs": len(vols),
            "failed": failed,
            "method": "method of discs on the predicted and on the reference label maps: single-plane per view, "
                      "biplane where a case has both apical views",
        },
    }


def evaluate_with_model(samples: Sequence[SegSample], dataset: str, model_spec: str | None,
                        default_model: str, classes: Sequence[str]) -> dict[str, Any]:
    """``echomeasure evaluate --dataset``: the registered model (``NAME[:VERSION]``) on the samples,
    whose label values are ``classes``; a model segmenting other classes (or in another order) is
    refused, since its label values would be scored against other structures."""
    from echomeasure.models.segmentation import load_segmentation_model

    if not samples:
        raise InvalidInputError("no labelled frames in the chosen split")
    name, _, version = (model_spec or default_model).partition(":")
    loaded = load_segmentation_model(name, version or None)
    if tuple(loaded.entry.channels) != tuple(classes):
        raise InvalidInputError(f"--model {name}: it segments other classes than the {dataset} labels "
                                "(classes and their label values must be the same)")
    report = evaluate_samples(loaded.model, loaded.entry.input_size, loaded.entry.channels, samples)
    return {"dataset": dataset, "model": {"name": loaded.name, "version": loaded.version, "sha256": loaded.sha256},
            **report}
