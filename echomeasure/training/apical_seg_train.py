"""Train, evaluate and register ``apical-seg``: DeepLabV3 (4 classes, CAMUS labels) on apical cines.

Data: synthetic A4C and A2C cines (:mod:`echomeasure.synthetic.apical`), frames at end-diastole,
end-systole and two random instants with their CAMUS label maps, cropped to the 2D region and
resized to the model input (image: area averaging; labels: nearest).  Augmentation: the
view-classifier's re-styling (contrast, gamma, tint, blur, JPEG, annotation text).

Evaluation on held-out cases (other seeds): Dice per structure at full image resolution, and
EDV / ESV / EF from the predicted label maps by the single-plane method of discs
(:mod:`echomeasure.propose.volumes`) against the phantom's truth (the same method on the true
contours, and the true 3D volumes).

Run: ``nice -n 5 python -m echomeasure.training.apical_seg_train [--steps N] [--version V]``.

Evaluation of a registered version on held-out cases of each style family
(:mod:`echomeasure.synthetic.styles`; no training):
``nice -n 5 python -m echomeasure.training.apical_seg_train --evaluate-styles classic,vendor,scatter
--eval-cases 20 [--out WEIGHTS] [--version V]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from echomeasure import atomic
from echomeasure.catalog import APICAL_SEG_CLASSES
from echomeasure.training.augment import (
    SegmentationAugment,
    add_segmentation_augment_options,
    augmented_batch,
    segmentation_augment,
)
from echomeasure.training.seg_train import dice_ce_loss

log = logging.getLogger(__name__)

SEG_MODEL = "apical-seg"
SIZES: tuple[tuple[int, int], ...] = ((300, 400), (480, 640), (434, 636), (600, 800))
TRAIN_SEED0, EVAL_SEED0 = 7_000_000, 8_000_000
#: case seeds [EVAL_SEED0, EVAL_SEED0 + EVAL_SEED_BLOCK) are evaluation cases only: no training run renders them
EVAL_SEED_BLOCK = 1_000_000


def _box(regions) -> tuple[int, int, int, int]:
    r = next(r for r in regions if r.spatial_format == 1)
    return r.x0, r.y0, r.x1, r.y1


def render_case(args: tuple) -> dict:
    """One case: ``(seed, view, input px, augment[, style])`` -> model inputs, labels and truth.

    ``style``: a style family of :mod:`echomeasure.synthetic.styles` (default ``classic``: the
    training data's look).
    """
    from echomeasure.synthetic.apical import render_apical, sample_apical_params
    from echomeasure.training.view_train import _restyle

    seed, view, size, augment, *rest = args
    style = rest[0] if rest else "classic"
    rng = np.random.default_rng([seed, 5])
    h, w = SIZES[int(rng.integers(len(SIZES)))]
    params = sample_apical_params(np.random.default_rng(seed), view, image_size=(h, w), n_frames=int(rng.integers(30, 70)),
                                  seed=seed)
    if style != "classic":
        from echomeasure.synthetic.styles import render_styled_apical, sample_styled_apical_params

        params = sample_styled_apical_params(params, style)
        probe = render_styled_apical(params, style, frames=[0], labels=False)
        cine = render_styled_apical(params, style, frames=[probe.ed_frame, probe.es_frame], labels=True)
    else:
        probe = render_apical(params, frames=[0], labels=False)
        ed, es = probe.ed_frame, probe.es_frame
        extra = [int(rng.integers(params.n_frames)) for _ in range(2)] if augment else []
        cine = render_apical(params, frames=[ed, es, *extra], labels=True)
    assert cine.labels is not None, "rendered with labels=True"
    x0, y0, x1, y1 = _box(cine.regions)
    frames = _restyle(cine.frames, rng, (x0, y0, x1, y1)) if augment else cine.frames
    imgs = np.stack([cv2.resize(f[y0 : y1 + 1, x0 : x1 + 1], (size, size), interpolation=cv2.INTER_AREA) for f in frames])
    labs = np.stack([cv2.resize(lab[y0 : y1 + 1, x0 : x1 + 1], (size, size), interpolation=cv2.INTER_NEAREST)
                     for lab in cine.labels])
    out = {"x": imgs, "y": labs, "box": (x0, y0, x1, y1), "cm_per_px": cine.cm_per_px}
    if not augment:
        out.update(frames=cine.frames[:2], labels=cine.labels[:2], truth=cine.truth["volumes"])
    return out


def predict_labels(model, image: np.ndarray, box: tuple[int, int, int, int], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Full-image label map and per-pixel max probability for one RGB frame (model at ``size``)."""
    import torch

    x0, y0, x1, y1 = box
    crop = cv2.resize(image[y0 : y1 + 1, x0 : x1 + 1], (size, size), interpolation=cv2.INTER_AREA)
    with torch.no_grad():
        logits = model(torch.from_numpy(crop.transpose(2, 0, 1)[None].astype(np.float32) / 255.0))[0]
        prob = torch.softmax(logits, dim=0).numpy()
    up = np.stack([cv2.resize(p, (x1 - x0 + 1, y1 - y0 + 1), interpolation=cv2.INTER_LINEAR) for p in prob])
    labels = np.zeros(image.shape[:2], np.uint8)
    conf = np.zeros(image.shape[:2], np.float32)
    labels[y0 : y1 + 1, x0 : x1 + 1] = up.argmax(axis=0)
    conf[y0 : y1 + 1, x0 : x1 + 1] = up.max(axis=0)
    return labels, conf



def _parser() -> argparse.ArgumentParser:
    """The training script's options."""
    from echomeasure import config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="weights folder (default: $ECHOMEASURE_WEIGHTS or weights/)")
    p.add_argument("--version", default="1.0")
    p.add_argument("--cases", type=int, default=240)
    p.add_argument("--eval-cases", type=int, default=30)
    p.add_argument("--steps", type=int, default=900)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-minutes", type=float, default=25.0)
    p.add_argument("--report", default=str(config.PROJECT_ROOT / "benchmarks" / "apical_seg"))
    p.add_argument("--styles", default="classic",
                   help="training style families, comma-separated (cases alternate between them; the held-out "
                        "family is refused)")
    p.add_argument("--init-from", metavar="VERSION", help="start from this registered apical-seg version (in --out)")
    p.add_argument("--max-lr", type=float, default=2e-3, help="peak learning rate of the one-cycle schedule")
    add_segmentation_augment_options(p, "each batch sees the frames with new geometry, artefacts, display look and grey levels")
    p.add_argument("--evaluate-styles", metavar="FAMILIES",
                   help="no training: evaluate the registered --version (in --out) on --eval-cases held-out cases of "
                        "each style family, e.g. classic,vendor,scatter")
    p.add_argument("--styles-report", default=str(config.PROJECT_ROOT / "benchmarks" / "apical_seg_styles"),
                   help="with --evaluate-styles: report path without extension (.json and .md)")
    return p


def _train(model: Any, x: np.ndarray, y: np.ndarray, args: argparse.Namespace,
           augment: SegmentationAugment | None) -> tuple[int, float]:
    """AdamW with a one-cycle schedule on random flipped batches (augmented online by ``augment``);
    (steps done, start time)."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=args.max_lr / 2, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.max_lr, total_steps=args.steps)
    gen = np.random.default_rng(args.seed)
    model.train()
    t1 = time.time()
    steps = 0
    for step in range(args.steps):
        idx = gen.integers(0, len(x), 8)
        xa, ya = augmented_batch(x[idx], y[idx], gen, augment)
        xb, yb = torch.from_numpy(xa), torch.from_numpy(ya)
        if gen.random() < 0.5:
            xb, yb = xb.flip(-1), yb.flip(-1)
        loss = dice_ce_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        steps += 1
        if step % 50 == 0:
            log.info("step %d loss %.4f", step, float(loss.detach()))
        if time.time() - t1 > args.max_minutes * 60:
            log.info("time limit: stopping at step %d", step)
            break
    return steps, t1


def _evaluate_held_out(model: Any, args: argparse.Namespace,
                       style: str = "classic") -> tuple[dict[str, float | int], dict[str, dict[str, Any]]]:
    """Dice per class and volume / EF errors on held-out cases at full resolution (in a style
    family), and where the ED/ES label errors lie (:func:`echomeasure.models.segmentation.error_sources`)."""
    from echomeasure.models.segmentation import confusion_counts, dice, error_sources
    from echomeasure.propose import volumes

    eval_jobs: list[tuple] = [(EVAL_SEED0 + i, ("a4c", "a2c")[i % 2], args.size, False) for i in range(args.eval_cases)]
    if style != "classic":
        eval_jobs = [(*job, style) for job in eval_jobs]
    with get_context("fork").Pool(args.workers) as pool:
        held = pool.map(render_case, eval_jobs, chunksize=2)
    dices: dict[str, list[float]] = {n: [] for n in APICAL_SEG_CLASSES[1:]}
    confusion = np.zeros((len(APICAL_SEG_CLASSES),) * 2, dtype=np.int64)
    ef_err, edv_err, esv_err, edv_true3d_err, la_err, speed = [], [], [], [], [], []
    for case in held:
        vols = []
        axes = []
        for k in range(2):  # ED, ES
            t = time.perf_counter()
            pred, _ = predict_labels(model, case["frames"][k], case["box"], args.size)
            speed.append(time.perf_counter() - t)
            confusion += confusion_counts(pred, case["labels"][k], len(APICAL_SEG_CLASSES))
            for j, n in enumerate(APICAL_SEG_CLASSES[1:], start=1):
                d = dice(pred, case["labels"][k], j)
                dices[n].append(1.0 if d is None else d)  # absent in both maps: a perfect answer
            ax = volumes.lv_axis(pred)
            axes.append(ax)
            vols.append(volumes.mod_single_plane_ml(ax, case["cm_per_px"]) if ax is not None else float("nan"))
        truth = case["truth"]
        edv, esv = vols
        edv_err.append(abs(edv - truth["method_of_discs"]["lvedv"]))
        esv_err.append(abs(esv - truth["method_of_discs"]["lvesv"]))
        edv_true3d_err.append(abs(edv - truth["true_3d"]["lvedv"]))
        ef = volumes.ef_percent(edv, esv) if edv == edv else float("nan")
        ef_err.append(abs(ef - truth["method_of_discs"]["lvef"]))
        pred_es, _ = predict_labels(model, case["frames"][1], case["box"], args.size)
        la = volumes.la_area_length_ml(pred_es, case["cm_per_px"], axes[1])
        la_err.append(abs((la or 0.0) - truth["area_length"]["la_volume"]))
    metrics = {f"dice_{n}": round(float(np.mean(v)), 4) for n, v in dices.items()}
    metrics.update(
        edv_mae_ml=round(float(np.nanmean(edv_err)), 2), esv_mae_ml=round(float(np.nanmean(esv_err)), 2),
        ef_mae_points=round(float(np.nanmean(ef_err)), 2), edv_vs_true3d_mae_ml=round(float(np.nanmean(edv_true3d_err)), 2),
        la_volume_mae_ml=round(float(np.nanmean(la_err)), 2), ms_per_frame=round(1000 * float(np.median(speed)), 1),
        failed_volumes=int(np.sum(~np.isfinite(edv_err))),
    )
    return metrics, error_sources(confusion, APICAL_SEG_CLASSES)


def evaluate_styles(args: argparse.Namespace) -> int:
    """``--evaluate-styles``: the registered version on the same held-out cases in each family; report written."""
    import torch

    from echomeasure.models.segmentation import load_segmentation_model
    from echomeasure.synthetic.styles import HELDOUT_STYLE, parse_styles

    torch.set_num_threads(1)
    loaded = load_segmentation_model(SEG_MODEL, args.version, args.out)
    model = loaded.model
    args.size = int(loaded.entry.input_size[0])
    per_style: dict[str, dict[str, float | int | None]] = {}
    sources: dict[str, dict[str, dict[str, Any]]] = {}
    for style in parse_styles(args.evaluate_styles):
        t = time.time()
        metrics, sources[style] = _evaluate_held_out(model, args, style)
        # JSON has no NaN: a metric without a finite value (no case gave a volume) is null
        per_style[style] = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in metrics.items()}
        per_style[style]["eval_s"] = round(time.time() - t, 1)
        log.info("%s: %s", style, per_style[style])
    recipe = (f"nice -n 5 python -m echomeasure.training.apical_seg_train --evaluate-styles {args.evaluate_styles} "
              f"--eval-cases {args.eval_cases} --version {loaded.version}")
    report = {"model": {"name": SEG_MODEL, "version": loaded.version, "sha256": loaded.entry.sha256,
                        "trained_on": loaded.entry.trained_on},
              "heldout_style": HELDOUT_STYLE, "eval_cases": args.eval_cases, "eval_seeds_from": EVAL_SEED0,
              "per_style": per_style, "error_sources": sources, "recipe": recipe}
    atomic.write_text(args.styles_report + ".json", json.dumps(report, indent=1) + "\n")
    atomic.write_text(args.styles_report + ".md", _styles_markdown(report))
    print(json.dumps(per_style))
    return 0


def _styles_markdown(r: dict) -> str:
    """The per-family table of :func:`evaluate_styles`."""
    keys = ["dice_lv", "dice_myocardium", "dice_la", "edv_mae_ml", "esv_mae_ml", "ef_mae_points",
            "edv_vs_true3d_mae_ml", "la_volume_mae_ml", "failed_volumes"]
    lines = [f"# apical-seg {r['model']['version']} by style family", "",
             f"Held-out apical cases (seeds from {r['eval_seeds_from']}, alternating A4C / A2C; the same cases in every "
             f"family), {r['eval_cases']} per family. The training data are classic renders (other seeds); "
             f"`{r['heldout_style']}` is the held-out family no model trains on. "
             "Dice at full image resolution on the ED and ES frames; EDV / ESV / EF by the single-plane method of discs "
             "of the predicted label maps against the same method on the phantom's true contours; "
             "`edv_vs_true3d` against the phantom's 3D volume.", "",
             "| family | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for style, m in r["per_style"].items():
        lines.append(f"| {style} | " + " | ".join(str(m.get(k, "-")) for k in keys) + " |")
    if r.get("error_sources"):
        from echomeasure.models.segmentation import error_sources_markdown

        lines += ["", "Where the label errors lie (ED and ES frames, % of each structure's true area; extra from a "
                  "cavity on a wall's both sides is what point-spread-function bloom does):", "",
                  *error_sources_markdown(r["error_sources"])]
    lines += ["", f"Model: {r['model']['name']} {r['model']['version']} (sha256 {r['model']['sha256'][:12]}...), "
              f"trained on {r['model']['trained_on']}.", "", f"Recipe: `{r['recipe']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import torch

    from echomeasure import config
    from echomeasure.models.builders import DEFAULT_ARCH, build_model, count_parameters
    from echomeasure.models.registry import WeightsEntry, register, save_weights

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from echomeasure.training.datasets import refuse, refuse_unwritable, seeds_apart_from

    if args.evaluate_styles:
        refuse_unwritable("--styles-report", args.styles_report + ".json", args.styles_report + ".md")
        return evaluate_styles(args)
    refuse_unwritable("--report", args.report + ".json")
    from echomeasure.errors import InvalidInputError
    from echomeasure.synthetic.styles import parse_training_styles

    try:
        styles = list(parse_training_styles(args.styles))
    except InvalidInputError as exc:
        refuse(f"--styles: {exc}")
    seeds = seeds_apart_from(TRAIN_SEED0 + args.seed * 100_000, args.cases, range(EVAL_SEED0, EVAL_SEED0 + EVAL_SEED_BLOCK),
                             args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # one thread shares a busy CPU far better than two
    t0 = time.time()
    jobs = [(case_seed, ("a4c", "a2c")[i % 2], args.size, True, styles[(i // 2) % len(styles)])
            for i, case_seed in enumerate(seeds)]
    with get_context("fork").Pool(args.workers) as pool:
        cases = pool.map(render_case, jobs, chunksize=4)
    x = np.concatenate([c["x"] for c in cases]).transpose(0, 3, 1, 2)
    y = np.concatenate([c["y"] for c in cases]).astype(np.int64)
    t_data = time.time() - t0
    log.info("training set %s in %.0f s", x.shape, t_data)

    out_dir = Path(args.out) if args.out else config.weights_dir()
    if args.init_from:
        from echomeasure.models.registry import load_model

        model = load_model(SEG_MODEL, args.init_from, out_dir).model
    else:
        model = build_model(DEFAULT_ARCH, len(APICAL_SEG_CLASSES))
    augment = segmentation_augment(args.online_augment, args.exposure_augment, args.bloom_augment, args.size)
    steps, t1 = _train(model, x, y, args, augment)
    t_train = time.time() - t1
    model.eval()

    metrics, sources = _evaluate_held_out(model, args)
    file = f"{SEG_MODEL}-{args.version}.pt"
    sha = save_weights(model, out_dir / file)
    recipe = (f"nice -n 5 python -m echomeasure.training.apical_seg_train --version {args.version} --cases {args.cases} "
              f"--eval-cases {args.eval_cases} --steps {args.steps} --size {args.size} --seed {args.seed}"
              + (f" --styles {','.join(styles)}" if styles != ["classic"] else "")
              + (f" --init-from {args.init_from}" if args.init_from else "")
              + (f" --max-lr {args.max_lr:g}" if args.max_lr != 2e-3 else "")
              + (" --online-augment" if args.online_augment else "")
              + (" --exposure-augment" if args.exposure_augment else "")
              + (" --bloom-augment" if args.bloom_augment else ""))
    entry = WeightsEntry(
        name=SEG_MODEL, version=args.version, arch=DEFAULT_ARCH, input_size=(args.size, args.size),
        channels=APICAL_SEG_CLASSES, file=file, sha256=sha, normalisation="unit",
        trained_on=f"synthetic apical A4C/A2C cines, {args.cases} cases, style families {'+'.join(styles)}, seeds from "
                   f"{TRAIN_SEED0 + args.seed * 100_000}, generator echomeasure.synthetic.apical",
        seed=args.seed, recipe=recipe, metrics=metrics, num_params=count_parameters(model), parent=args.init_from,
        extra={"steps_done": steps, "train_s": round(t_train, 1), "data_s": round(t_data, 1), "eval_seeds_from": EVAL_SEED0,
               "online_augment": augment.to_dict() if augment else None,
               "labels": "CAMUS: 0 background, 1 LV cavity, 2 myocardium, 3 LA"},
    )
    register(entry, weights_dir=out_dir)
    atomic.write_text(args.report + ".json", json.dumps({"metrics": metrics, "error_sources": sources, "recipe": recipe,
                                                          "steps": steps}, indent=1) + "\n")
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
