"""Train, evaluate and register ``plax-seg``: DeepLabV3 (7 classes) on synthetic PLAX label maps.

Classes (:data:`echomeasure.models.segmentation.PLAX_SEG_CLASSES`) are the label values the PLAX
generator already renders per frame: background, LV, RV, LA, aorta, septum and the outer cardiac
wall (LV posterior wall, RV free wall, aortic and LA walls).

Data: synthetic PLAX cines of the default training style families (:data:`~echomeasure.synthetic.styles.DEFAULT_TRAINING_STYLES`),
random image sizes, three random frames per case with their label maps, cropped to the 2D region
and resized to the model input (image: area averaging; labels: nearest); the view classifier's
display re-styling (gamma, contrast, tint, blur, annotation text) as augmentation.

Backbone: ``deeplabv3_mobilenet_v3_large`` (the keypoint models' measured choice,
``benchmarks/backbones.md``), initialised from the active
``plax-linear`` (``--init-from``): its backbone already knows the PLAX interfaces.  Input size:
the keypoint backbone's own (192 px), checked against :func:`resolution_ceiling`, the mean IoU
that a *perfect* prediction at an input size keeps after being resized back to the full image
(thin walls are what a small input loses; ``--choose-size`` prints the table).  Without
``--init-from`` (``--init-from none``) the smallest size whose ceiling is >= 0.95 is used and the
whole network trains from random weights.

Training fits a shared 2-core CPU: the frozen backbone's features are computed once; stage A
trains the head's last layers on the cached ASPP output (cheap steps), stage B the whole head
on the cached backbone features, in one wall-time budget (``--max-minutes``);
``--finetune-steps`` adds whole-network steps after that.

Evaluation on held-out cases (other seeds) at full image resolution on the ED and ES frames:
IoU per structure and their mean, for the training families and for the held-out family.

Run: ``nice -n 5 python -m echomeasure.training.plax_seg_train [--steps N] [--version V]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from echomeasure import atomic
from echomeasure.models.segmentation import PLAX_SEG_CLASSES, PLAX_SEG_MODEL, image_box, iou
from echomeasure.training.augment import (
    SegmentationAugment,
    add_segmentation_augment_options,
    augmented_batch,
    segmentation_augment,
)
from echomeasure.training.seg_train import dice_ce_loss

log = logging.getLogger(__name__)

IMAGE_SIZES: tuple[tuple[int, int], ...] = ((300, 400), (480, 640), (600, 800))
TRAIN_SEED0, EVAL_SEED0 = 9_100_000, 9_200_000
#: case seeds [EVAL_SEED0, EVAL_SEED0 + EVAL_SEED_BLOCK) are evaluation cases only: no training run renders them
EVAL_SEED_BLOCK = 100_000
#: First seed of the ``--evaluate-only`` cases (inside the evaluation block; no training run, and no
#: choice between versions during training, has seen them): family ``j``, case ``i`` is seed
#: ``CLEAN_EVAL_SEED0 + 1000 * j + i``, the cases of every version table in benchmarks/plax_seg.md.
CLEAN_EVAL_SEED0 = 9_250_000
CANDIDATE_SIZES = (96, 128, 160, 192)


def _case(seed: int, style: str, frames: list[int] | None, rng: np.random.Generator):
    from echomeasure.synthetic.styles import render_styled_plax_case

    h, w = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
    n_frames = int(rng.integers(30, 60))
    if frames is None:  # ED and ES of the rendered pixels
        probe = render_styled_plax_case(seed, style, frames=[0], image_size=(h, w), n_frames=n_frames)
        frames = [probe.ed_frame, probe.es_frame]
    return render_styled_plax_case(seed, style, labels=True, frames=frames, image_size=(h, w), n_frames=n_frames)


def render_training_case(args: tuple[int, str, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(seed, style, input px)`` -> (3, s, s, 3) uint8 inputs and (3, s, s) uint8 labels."""
    from echomeasure.training.view_train import _restyle

    seed, style, size = args
    rng = np.random.default_rng([seed, 11])
    cine = _case(seed, style, [int(v) for v in rng.integers(0, 30, 3)], rng)
    box = image_box(cine.regions, cine.frames.shape[1:3])
    frames = _restyle(cine.frames, rng, box)
    x0, y0, x1, y1 = box
    imgs = np.stack([cv2.resize(f[y0 : y1 + 1, x0 : x1 + 1], (size, size), interpolation=cv2.INTER_AREA) for f in frames])
    labs = np.stack([cv2.resize(lab[y0 : y1 + 1, x0 : x1 + 1], (size, size), interpolation=cv2.INTER_NEAREST)
                     for lab in cine.labels])
    return imgs, labs


def render_eval_case(args: tuple[int, str]) -> dict:
    """``(seed, style)`` -> full-resolution ED and ES frames, label maps and the 2D box."""
    seed, style = args
    cine = _case(seed, style, None, np.random.default_rng([seed, 12]))
    return {"frames": cine.frames, "labels": cine.labels, "box": image_box(cine.regions, cine.frames.shape[1:3]),
            "style": style}


def mean_structure_iou(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """IoU of each structure present in either map (background left out)."""
    out = {}
    for k, name in enumerate(PLAX_SEG_CLASSES[1:], start=1):
        v = iou(pred, truth, k)
        if v is not None:
            out[name] = v
    return out


def resolution_ceiling(cases: list[dict], sizes=CANDIDATE_SIZES) -> dict[int, float]:
    """Mean structure IoU of the true label maps after a round trip through ``s x s`` pixels."""
    out = {}
    for s in sizes:
        vals = []
        for c in cases:
            x0, y0, x1, y1 = c["box"]
            for lab in c["labels"]:
                crop = lab[y0 : y1 + 1, x0 : x1 + 1]
                onehot = np.stack([(crop == k).astype(np.float32) for k in range(len(PLAX_SEG_CLASSES))])
                small = np.stack([cv2.resize(m, (s, s), interpolation=cv2.INTER_AREA) for m in onehot])
                back = np.stack([cv2.resize(m, crop.shape[::-1], interpolation=cv2.INTER_LINEAR) for m in small])
                vals.append(np.mean(list(mean_structure_iou(back.argmax(0), crop).values())))
        out[s] = round(float(np.mean(vals)), 4)
    return out


def _init_from_keypoints(model, version: str | None) -> str:
    """Copy ``plax-linear``'s backbone and head (all but the last 1x1 conv) into ``model``; its version."""
    from echomeasure.models.registry import load_model

    keypoints = load_model("plax-linear", version)
    own = model.state_dict()
    shared = {k: v for k, v in keypoints.model.state_dict().items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(shared, strict=False)
    return keypoints.version


def _train_head_on_cached_features(model, x: np.ndarray, y: np.ndarray, gen: np.random.Generator, steps: int,
                                   max_s: float) -> int:
    """Backbone frozen: its features are computed once, then only the DeepLabV3 head is trained."""
    import torch
    import torch.nn.functional as F

    backbone, head = model.m.backbone, model.m.classifier
    backbone.eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    feats = []
    with torch.no_grad():
        for s in range(0, len(x), 32):
            feats.append(backbone(torch.from_numpy(x[s : s + 32].astype(np.float32) / 255.0))["out"].half())
    feats_t = torch.cat(feats)
    head.eval()
    with torch.no_grad():
        aspp_t = torch.cat([head[0](feats_t[s : s + 64].float()).half() for s in range(0, len(feats_t), 64)])
    log.info("cached backbone features %s and ASPP features %s", tuple(feats_t.shape), tuple(aspp_t.shape))
    size = x.shape[-2:]
    done = 0
    # stage A: ASPP frozen too (its cached output), the last two layers learn the classes: cheap steps
    # stage B: the whole head on the cached backbone features, for the rest of the budget
    t_start = time.time()
    last_layers = torch.nn.Sequential(*list(head)[1:])
    for stage, (inputs, module, budget) in enumerate(((aspp_t, last_layers, 0.6 * max_s), (feats_t, head, None))):
        budget = max_s - (time.time() - t_start) if budget is None else budget
        n_steps = steps if stage == 0 else steps // 4
        opt = torch.optim.AdamW(module.parameters(), lr=1e-3, weight_decay=1e-4)
        module.train()
        t0 = time.time()
        for step in range(n_steps):
            progress = min(1.0, max(step / n_steps, (time.time() - t0) / max(1.0, budget)))
            for group in opt.param_groups:
                group["lr"] = _lr(progress)
            idx = torch.from_numpy(gen.integers(0, len(x), 16))
            logits = F.interpolate(module(inputs[idx].float()), size=size, mode="bilinear", align_corners=False)
            loss = dice_ce_loss(logits, torch.from_numpy(y[idx.numpy()]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if step % 100 == 0:
                log.info("head stage %s step %d loss %.4f (%.0f s)", "AB"[stage], step, float(loss.detach()), time.time() - t0)
            if time.time() - t0 > budget:
                log.info("time limit: head stage %s stopped at step %d", "AB"[stage], step)
                break
    for p in backbone.parameters():
        p.requires_grad_(True)
    return done


def _train_all(model, x: np.ndarray, y: np.ndarray, gen: np.random.Generator, steps: int, max_s: float,
               augment: SegmentationAugment | None = None) -> int:
    """The whole network, batches of 8 (each pair augmented online when ``augment``), one
    learning-rate cycle over the step or time budget."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    model.train()
    t0 = time.time()
    done = 0
    for step in range(steps):
        progress = min(1.0, max(step / steps, (time.time() - t0) / max(1.0, max_s)))
        for group in opt.param_groups:
            group["lr"] = _lr(progress)
        idx = gen.integers(0, len(x), 8)
        xb, yb = augmented_batch(x[idx], y[idx], gen, augment)
        loss = dice_ce_loss(model(torch.from_numpy(xb)), torch.from_numpy(yb))
        opt.zero_grad()
        loss.backward()
        opt.step()
        done += 1
        if step % 25 == 0:
            log.info("step %d loss %.4f (%.0f s)", step, float(loss.detach()), time.time() - t0)
        if time.time() - t0 > max_s:
            log.info("time limit: stopping at step %d", step)
            break
    return done


def _lr(progress: float, peak: float = 2e-3) -> float:
    """Learning rate at a fraction of the budget: linear warm-up over 5 %, then cosine to 1 %."""
    if progress < 0.05:
        return peak * (0.1 + 0.9 * progress / 0.05)
    return peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (progress - 0.05) / 0.95)))


def evaluate(model, held: list[dict], size: int) -> dict[str, float]:
    """Mean IoU per structure and overall on held-out ED/ES frames, per family group."""
    return evaluate_with_errors(model, held, size)[0]


def evaluate_with_errors(model, held: list[dict], size: int) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """:func:`evaluate`'s metrics and, per family group (``own``, ``heldout``), where the errors lie
    (:func:`echomeasure.models.segmentation.error_sources`: each structure's extra and missed
    pixels and the classes they came from or went to)."""
    from echomeasure.models.segmentation import confusion_counts, error_sources, predict
    from echomeasure.synthetic.styles import HELDOUT_STYLE

    n = len(PLAX_SEG_CLASSES)
    per: dict[str, dict[str, list[float]]] = {"own": {}, "heldout": {}}
    confusion = {group: np.zeros((n, n), dtype=np.int64) for group in per}
    for case in held:
        group = "heldout" if case["style"] == HELDOUT_STYLE else "own"
        pred, _ = predict(model, case["frames"], case["box"], (size, size))
        for p, t in zip(pred, case["labels"], strict=True):
            confusion[group] += confusion_counts(p, t, n)
            for name, v in mean_structure_iou(p, t).items():
                per[group].setdefault(name, []).append(v)
    metrics: dict[str, float] = {}
    sources: dict[str, dict[str, Any]] = {}
    for group, d in per.items():
        if not d:
            continue
        for name, vals in d.items():
            metrics[f"{group}_iou_{name}"] = round(float(np.mean(vals)), 4)
        metrics[f"{group}_mean_iou"] = round(float(np.mean([np.mean(v) for v in d.values()])), 4)
        sources[group] = error_sources(confusion[group], PLAX_SEG_CLASSES)
    return metrics, sources


def _parser() -> argparse.ArgumentParser:
    """The training script's options."""
    from echomeasure import config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="weights folder (default: $ECHOMEASURE_WEIGHTS or weights/)")
    p.add_argument("--version", help="version to register (default 1.0); with --evaluate-only, the version "
                   "to evaluate (default: the active one)")
    p.add_argument("--cases", type=int, default=160, help="training cases (3 frames each)")
    p.add_argument("--eval-cases", type=int, default=8, help="held-out cases per family")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--size", type=int, default=0, help="input px (default: chosen by resolution_ceiling)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-minutes", type=float, default=10.0,
                   help="optimisation budget; rendering and evaluation add 6-10 min on a loaded 2-core CPU")
    p.add_argument("--init-from", default="", help="plax-linear version whose backbone and head start the model "
                   "(default: the active one; 'none': random weights, whole network trained)")
    p.add_argument("--finetune-steps", type=int, default=0, help="after the head, train the whole network this many steps")
    p.add_argument("--continue-from", metavar="VERSION",
                   help="start from this registered plax-seg version in --out (more training)")
    add_segmentation_augment_options(
        p, "whole-network steps see each frame with new geometry, artefacts, display look and grey levels")
    p.add_argument("--styles", metavar="FAMILIES", default=None,
                   help="training families, comma-separated (default classic,vendor; the held-out family is refused); "
                        "the evaluation covers them and the held-out family")
    p.add_argument("--threads", type=int, default=2, help="torch threads (1 when another job shares the CPU)")
    p.add_argument("--choose-size", action="store_true", help="only print the resolution-ceiling table")
    p.add_argument("--evaluate-only", action="store_true",
                   help="no training: evaluate the registered --version (in --out) on --eval-cases cases of each "
                        f"family from seed {CLEAN_EVAL_SEED0} (mean IoU and where the errors lie); writes --report")
    p.add_argument("--no-register", action="store_true")
    p.add_argument("--report", default=str(config.PROJECT_ROOT / "benchmarks" / "plax_seg.json"))
    return p


def _input_px(args: argparse.Namespace, ceiling: dict[int, float]) -> int:
    """The model input size: asked for, the keypoint backbone's own (its features are learned at that
    scale), or the smallest whose resolution ceiling reaches 0.95 mean IoU."""
    if args.size:
        return int(args.size)
    if args.init_from != "none":
        from echomeasure.models.registry import get_entry

        return int(get_entry("plax-linear", args.init_from or None).input_size[0])
    return next((s for s in CANDIDATE_SIZES if ceiling[s] >= 0.95), CANDIDATE_SIZES[-1])


def training_seeds(seed: int, cases: int) -> range:
    """Case seeds of a training run (``TRAIN_SEED0 + seed * 100 000`` on).

    Raises
    ------
    SystemExit
        The range would reach the evaluation block (``--seed 1`` does: version 1.1 was trained on
        it, and 4 of the 16 own-family evaluation cases were among its training cases).
    """
    from echomeasure.training.datasets import seeds_apart_from

    return seeds_apart_from(TRAIN_SEED0 + seed * 100_000, cases, range(EVAL_SEED0, EVAL_SEED0 + EVAL_SEED_BLOCK), seed)


def training_styles(args: argparse.Namespace) -> tuple[str, ...]:
    """The families named by ``--styles`` (default: the default training families); the held-out
    family and unknown names are refused (exit 2)."""
    from echomeasure.errors import InvalidInputError
    from echomeasure.synthetic.styles import DEFAULT_TRAINING_STYLES, parse_training_styles
    from echomeasure.training.datasets import refuse

    try:
        return parse_training_styles(args.styles, DEFAULT_TRAINING_STYLES)
    except InvalidInputError as exc:
        refuse(f"--styles: {exc}")


def _training_set(args: argparse.Namespace, size: int, styles: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, size, size) and label maps of the training cases, alternating ``styles``,
    rendered in worker processes."""
    jobs = [(case_seed, styles[i % len(styles)], size) for i, case_seed in enumerate(training_seeds(args.seed, args.cases))]
    with get_context("fork").Pool(args.workers) as pool:
        cases = pool.map(render_training_case, jobs, chunksize=4)
    x = np.concatenate([c[0] for c in cases]).transpose(0, 3, 1, 2)
    y = np.concatenate([c[1] for c in cases]).astype(np.int64)
    return x, y


def _initial_model(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The network to train and its parent: a registered plax-seg version, the plax-linear backbone, or none."""
    from echomeasure.models.builders import DEFAULT_ARCH, build_model

    model = build_model(DEFAULT_ARCH, len(PLAX_SEG_CLASSES))
    parent = None
    if args.continue_from:
        from echomeasure.models.segmentation import load_segmentation_model

        model = load_segmentation_model(PLAX_SEG_MODEL, args.continue_from, args.out or None).model
        parent = f"{PLAX_SEG_MODEL}:{args.continue_from}"
        log.info("continuing from %s", parent)
    elif args.init_from != "none":
        parent = "plax-linear:" + _init_from_keypoints(model, args.init_from or None)
        log.info("backbone and head initialised from %s", parent)
    return model, parent


def evaluate_registered(args: argparse.Namespace) -> int:
    """``--evaluate-only``: the registered ``--version`` on ``--eval-cases`` cases of each family
    (seeds from :data:`CLEAN_EVAL_SEED0`), at its own input size; writes ``--report``."""
    import torch

    from echomeasure.models.segmentation import load_segmentation_model
    from echomeasure.synthetic.styles import DEFAULT_TRAINING_STYLES, HELDOUT_STYLE
    from echomeasure.training.datasets import refuse

    if not 1 <= args.eval_cases <= 1000:
        refuse("--eval-cases must be 1 to 1000 (the clean evaluation block holds 1000 cases per family)")
    torch.set_num_threads(args.threads)
    loaded = load_segmentation_model(PLAX_SEG_MODEL, args.version, args.out or None)
    size = int(loaded.entry.input_size[0])
    t0 = time.time()
    families = (*DEFAULT_TRAINING_STYLES, HELDOUT_STYLE)
    jobs = [(CLEAN_EVAL_SEED0 + 1000 * j + i, style) for j, style in enumerate(families) for i in range(args.eval_cases)]
    with get_context("fork").Pool(args.workers) as pool:
        held = pool.map(render_eval_case, jobs, chunksize=2)
    metrics, sources = evaluate_with_errors(loaded.model.eval(), held, size)
    report = {"model": {"name": PLAX_SEG_MODEL, "version": loaded.version, "sha256": loaded.entry.sha256,
                        "input_px": size},
              "families": {"own": list(DEFAULT_TRAINING_STYLES), "heldout": HELDOUT_STYLE},
              "eval_cases_per_family": args.eval_cases, "eval_seeds": f"{CLEAN_EVAL_SEED0} + 1000 x family + case",
              "metrics": metrics, "error_sources": sources, "eval_s": round(time.time() - t0, 1),
              "recipe": (f"nice -n 5 python -m echomeasure.training.plax_seg_train --evaluate-only --version "
                         f"{loaded.version} --eval-cases {args.eval_cases}")}
    atomic.write_text(args.report, json.dumps(report, indent=1) + "\n")
    print(json.dumps({"metrics": metrics, "eval_s": report["eval_s"]}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Render, train, evaluate and register plax-seg; write the benchmark report."""
    import torch

    from echomeasure import config
    from echomeasure.models.builders import DEFAULT_ARCH, count_parameters
    from echomeasure.models.registry import WeightsEntry, register, save_weights
    from echomeasure.synthetic.styles import DEFAULT_TRAINING_STYLES, HELDOUT_STYLE
    from echomeasure.training.datasets import refuse_unwritable

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.evaluate_only:
        refuse_unwritable("--report", args.report)
        return evaluate_registered(args)
    args.version = args.version or "1.0"
    styles = training_styles(args)
    if not args.choose_size:
        training_seeds(args.seed, args.cases)  # refused before anything is rendered or written
        refuse_unwritable("--report", args.report)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    t_start = time.time()
    families = (*styles, HELDOUT_STYLE)
    eval_jobs = [(EVAL_SEED0 + 1000 * j + i, style) for j, style in enumerate(families) for i in range(args.eval_cases)]
    with get_context("fork").Pool(args.workers) as pool:
        held = pool.map(render_eval_case, eval_jobs, chunksize=2)
    sizes = tuple(sorted({*CANDIDATE_SIZES, *([args.size] if args.size else [])}))  # an asked size gets its ceiling too
    ceiling = resolution_ceiling([c for c in held if c["style"] != HELDOUT_STYLE], sizes)
    log.info("resolution ceiling (mean IoU of a perfect prediction): %s", ceiling)
    if args.choose_size:
        print(json.dumps(ceiling))
        return 0
    size = _input_px(args, ceiling)

    t0 = time.time()
    x, y = _training_set(args, size, styles)
    t_data = time.time() - t0
    log.info("training set %s at %d px in %.0f s", x.shape, size, t_data)

    model, parent = _initial_model(args)
    gen = np.random.default_rng(args.seed)
    t1 = time.time()
    steps = 0
    if parent is not None:
        steps += _train_head_on_cached_features(model, x, y, gen, args.steps, args.max_minutes * 60)
    remaining = args.max_minutes * 60 - (time.time() - t1)
    augment = segmentation_augment(args.online_augment, args.exposure_augment, args.bloom_augment, size)
    if parent is None or args.finetune_steps:
        steps += _train_all(model, x, y, gen, args.finetune_steps or args.steps,
                            remaining if parent is not None else args.max_minutes * 60, augment)
    t_train = time.time() - t1
    model.eval()
    t2 = time.time()
    metrics, sources = evaluate_with_errors(model, held, size)
    t_eval = time.time() - t2
    metrics["resolution_ceiling_mean_iou"] = ceiling[size]
    log.info("metrics %s", metrics)
    out_dir = Path(args.out) if args.out else config.weights_dir()
    file = f"{PLAX_SEG_MODEL}-{args.version}.pt"
    recipe = (f"nice -n 5 python -m echomeasure.training.plax_seg_train --version {args.version} --cases {args.cases} "
              f"--eval-cases {args.eval_cases} --steps {args.steps} --size {size} --seed {args.seed} "
              f"--max-minutes {args.max_minutes} --finetune-steps {args.finetune_steps} "
              + ("--online-augment " if args.online_augment else "")
              + ("--exposure-augment " if args.exposure_augment else "")
              + ("--bloom-augment " if args.bloom_augment else "")
              + (f"--styles {','.join(styles)} " if styles != DEFAULT_TRAINING_STYLES else "")
              + (f"--continue-from {args.continue_from}" if args.continue_from
                 else f"--init-from {parent.split(':')[1] if parent else 'none'}"))
    report = {"metrics": metrics, "error_sources": sources, "recipe": recipe, "steps_done": steps, "input_px": size,
              "resolution_ceiling": ceiling,
              "data_s": round(t_data, 1), "train_s": round(t_train, 1), "eval_s": round(t_eval, 1),
              "wall_s": round(time.time() - t_start, 1)}
    if not args.no_register:
        sha = save_weights(model, out_dir / file)
        entry = WeightsEntry(
            name=PLAX_SEG_MODEL, version=args.version, arch=DEFAULT_ARCH, input_size=(size, size),
            channels=PLAX_SEG_CLASSES, file=file, sha256=sha, normalisation="unit",
            trained_on=f"synthetic PLAX cines of the {'/'.join(styles)} families, {args.cases} cases "
                       f"(3 frames each), seeds from {TRAIN_SEED0 + args.seed * 100_000}; held-out family {HELDOUT_STYLE}",
            seed=args.seed, recipe=recipe, metrics=metrics, num_params=count_parameters(model),
            parent=parent,
            extra={"steps_done": steps, "train_s": round(t_train, 1), "data_s": round(t_data, 1),
                   "eval_seeds_from": EVAL_SEED0,
                   "online_augment": augment.to_dict() if augment else None,
                   "eval_frames": "ED and ES of each held-out case",
                   "labels": "synthetic PLAX label values: " + ", ".join(f"{k} {n}" for k, n in enumerate(PLAX_SEG_CLASSES)),
                   "resolution_ceiling": {str(k): v for k, v in ceiling.items()}},
        )
        register(entry, weights_dir=out_dir)
        report["sha256"] = sha
        report["file_bytes"] = (out_dir / file).stat().st_size
    atomic.write_text(args.report, json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
