"""Learning a reviewer's contour convention: the contour fine-tune loop, end to end.

Scenario: a sonographer traces the LV endocardium ``shift_mm`` *inside* the blood-tissue
boundary the segmentation model was trained on (the truth of the synthetic label maps).  The
loop:

1. synthetic studies (seeds from :data:`CONTOUR_EXPERIMENT_SEEDS`, disjoint from training and
   hold-out) are written as DICOM and ingested through the real pipeline (de-identification,
   gate, store, frames; for ``plax-seg`` also the PLAX proposals, whose ED and ES frames carry
   ``plax-seg``'s contours).  For a model the pipeline does not run on these studies
   (``apical-seg`` without a view classifier) the model's contours of the true ED and ES frames
   are stored as its proposals;
2. the simulated reviewer answers every LV contour: *accepted* when it is within
   ``accept_tolerance_mm`` of their tracing (mean absolute boundary offset) with a Dice of at
   least 0.95, else *corrected* to their tracing (the true LV cavity eroded by ``shift_mm``,
   using the clip's cm/px); on a segmented frame without an LV contour they *add* it.  Other
   structures are left unreviewed (they supervise nothing);
3. :func:`echomeasure.training.finetune_seg.finetune_contours` fine-tunes on those reviews;
4. new studies are segmented by the base and the fine-tuned version, and compared with the
   reviewer's tracing (Dice, mean signed boundary offset in mm) and with the truth (LV offset:
   the model should learn about ``-shift_mm``; Dice of every structure: what else changed).

``python -m echomeasure.training.contour_experiment --workdir /tmp/cx`` runs it and prints JSON.
The shipped weights are only read: the experiment works on copies in ``workdir/weights``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from echomeasure.ingest.calibration import square_cm_per_px
from echomeasure.models import registry
from echomeasure.models.segmentation import PLAX_SEG_MODEL, image_box, predict, segments
from echomeasure.training.experiment import write_result
from echomeasure.training.finetune_seg import (
    KEEP_UNREVIEWED,
    ContourSample,
    contour_metrics,
    finetune_contours,
    make_sample,
    rasterise,
    signed_offset_mm,
)

log = logging.getLogger(__name__)

#: Case seeds of the experiment's review and test studies (disjoint from training and hold-out).
CONTOUR_EXPERIMENT_SEEDS = range(9_600_000, 9_700_000)
LV_LABEL = 1  # the LV cavity in both the PLAX and the CAMUS label maps
REVIEWER = "sonographer-inside"


@dataclass(frozen=True)
class LabelledStudy:
    """A synthetic study written for the experiment: DICOM path, truth label maps and ED/ES positions."""

    seed: int
    path: Path
    frames: np.ndarray  # (F, H, W, 3) as in the file
    labels: np.ndarray  # (F, H, W) truth label maps of those frames
    regions: tuple
    cm_per_px: float
    ed_es: tuple[int, int]  # positions of the ED and ES frames in ``frames``


def write_study(out_dir: Path, seed: int, model: str, *, n_frames: int = 4) -> LabelledStudy:
    """Render a short cine with its label maps (PLAX for ``plax-seg``, A4C otherwise) and write it as DICOM."""
    from echomeasure.synthetic.dicom_writer import build_dataset, write_dataset_atomic
    from echomeasure.synthetic.overlays import fake_identity

    if model == PLAX_SEG_MODEL:
        from echomeasure.synthetic.styles import render_styled_plax
        from echomeasure.training.datasets import _styled_ed_es, plax_params_for_seed

        params = plax_params_for_seed(seed, small=False, style="classic")
        ed, es = _styled_ed_es(params, "classic")
        extra = np.linspace(0, params.n_frames - 1, max(0, n_frames - 2) + 2)[1:-1].round().astype(int)
        frames = sorted({int(ed), int(es), *(int(i) for i in extra)})
        cine = render_styled_plax(params, "classic", frames=frames, labels=True)
        description = "PLAX 2D"
    else:
        from echomeasure.synthetic.apical import render_apical_case

        cine = render_apical_case(seed, "a4c", small=True, labels=True)
        frames = list(cine.frame_indices)
        ed, es = cine.ed_frame, cine.es_frame
        description = "A4C 2D"
    assert cine.labels is not None
    ds = build_dataset(cine.frames, cine.regions, fake_identity(seed, 0), seed=seed, case_index=0, kind="2d",
                       frame_time_ms=cine.frame_time_ms, heart_rate_bpm=60.0, jpeg=False, description=description)
    path = out_dir / f"study_{seed}.dcm"
    write_dataset_atomic(ds, path)
    pos = {f: i for i, f in enumerate(frames)}
    return LabelledStudy(seed, path, cine.frames, cine.labels, tuple(cine.regions), float(cine.cm_per_px),
                         (pos[int(ed)], pos[int(es)]))


def reviewer_lv_mask(truth_labels: np.ndarray, cm_per_px: float, shift_mm: float) -> np.ndarray:
    """The reviewer's LV: the true cavity eroded by ``shift_mm`` (bool (H, W))."""
    lv = (truth_labels == LV_LABEL).astype(np.uint8)
    if shift_mm <= 0:
        return lv > 0
    depth_px = cv2.distanceTransform(lv, cv2.DIST_L2, 5)
    return depth_px > shift_mm / (cm_per_px * 10.0)


def mask_polygon(mask: np.ndarray) -> list[list[float]] | None:
    """The outline of a mask's largest region as the store's polygon (as the model's contours are drawn)."""
    found = segments(mask.astype(np.uint8), np.ones(mask.shape, np.float32), ("background", "lv"), 0, None)
    return None if not found else [[x, y] for x, y in found[0].polygon_px]


def simulate_contour_reviews(store: Any, clip_id: int, study: LabelledStudy, shift_mm: float, *,
                             accept_tolerance_mm: float = 0.25) -> dict[str, int]:
    """Answer every proposed LV contour of a clip as the simulated reviewer would; counts of each action."""
    from echomeasure.store import contours

    mm_per_px = study.cm_per_px * 10.0
    counts = {"accepted": 0, "corrected": 0, "added": 0}
    states = contours.current_contours(store, clip_id)
    for frame in sorted({st.frame_index for st in states} - {st.frame_index for st in states if st.structure == "lv"}):
        polygon = mask_polygon(reviewer_lv_mask(study.labels[frame], study.cm_per_px, shift_mm))
        if polygon is not None:  # the model proposed no LV on a frame it segmented: the reviewer draws it
            contours.add_contour_review(store, clip_id, "added", REVIEWER, frame=frame, structure="lv", polygon=polygon)
            counts["added"] += 1
    for st in states:
        if st.structure != "lv" or st.status != "proposed" or st.proposal is None:
            continue
        wanted = reviewer_lv_mask(study.labels[st.frame_index], study.cm_per_px, shift_mm)
        polygon = mask_polygon(wanted)
        if polygon is None:
            continue
        proposed = rasterise([(1, st.proposal.polygon)], wanted.shape) > 0
        off = signed_offset_mm(proposed, wanted, mm_per_px)
        dice = 2 * float((proposed & wanted).sum()) / max(1, int(proposed.sum() + wanted.sum()))
        if off is not None and abs(off) <= accept_tolerance_mm and dice >= 0.95:
            contours.add_contour_review(store, clip_id, "accepted", REVIEWER, contour_proposal_id=st.proposal.id)
            counts["accepted"] += 1
        else:
            contours.add_contour_review(store, clip_id, "corrected", REVIEWER, contour_proposal_id=st.proposal.id,
                                        polygon=polygon)
            counts["corrected"] += 1
    return counts


def propose_contours_directly(store: Any, clip_id: int, study: LabelledStudy, entry: registry.WeightsEntry,
                              model: Any) -> None:
    """Store the model's contours of the true ED and ES frames as its proposals (for a model the
    pipeline does not run on the study)."""
    from echomeasure.propose.types import ModelInfo
    from echomeasure.store import contours

    box = image_box(study.regions, study.frames.shape[1:3])
    frames = sorted(set(study.ed_es))
    labels, conf = predict(model, study.frames[frames], box, entry.input_size)
    items = [s.as_json() for k, f in enumerate(frames)
             for s in segments(labels[k], conf[k], entry.channels, f, study.cm_per_px)]
    contours.add_contours(store, clip_id, items, model=ModelInfo(entry.name, entry.version, entry.sha256))


def build_contour_review_store(store: Any, workdir: Path, seeds: Sequence[int], entry: registry.WeightsEntry,
                               shift_mm: float, *, progress: bool = True) -> dict[str, int]:
    """Write, ingest and review one study per seed; returns the counts of reviewer actions."""
    from echomeasure.pipeline import ingest_path
    from echomeasure.store import contours

    studies = workdir / "studies"
    studies.mkdir(parents=True, exist_ok=True)
    totals = {"accepted": 0, "corrected": 0, "added": 0, "clips": 0}
    loaded = None
    for seed in tqdm(seeds, desc="ingest + review contours", file=sys.stderr, disable=not progress,
                     dynamic_ncols=True):
        study = write_study(studies, seed, entry.name)
        result = ingest_path(study.path, store, secret=b"experiment-secret", run_models=entry.name == PLAX_SEG_MODEL)
        if not any(st.structure == "lv" for st in contours.current_contours(store, result.clip.id)):
            if loaded is None:
                loaded = registry.load_model(entry.name, entry.version, None)
            propose_contours_directly(store, result.clip.id, study, entry, loaded.model)
        counts = simulate_contour_reviews(store, result.clip.id, study, shift_mm)
        for k, v in counts.items():
            totals[k] += v
        totals["clips"] += 1
    return totals


def new_case_samples(seeds: Sequence[int], workdir: Path, entry: registry.WeightsEntry, shift_mm: float,
                 ) -> tuple[list[ContourSample], list[ContourSample]]:
    """ED and ES frames of new studies: (reviewer's LV tracing, full truth label maps) as samples."""
    reviewer, truth = [], []
    out = workdir / "test-studies"
    out.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        study = write_study(out, seed, entry.name)
        cm = square_cm_per_px(study.regions, None) or study.cm_per_px
        for pos in sorted(set(study.ed_es)):
            frame, labels = study.frames[pos], study.labels[pos]
            lv = reviewer_lv_mask(labels, study.cm_per_px, shift_mm).astype(np.uint8) * LV_LABEL
            reviewer.append(make_sample(seed, pos, frame, study.regions, lv, (LV_LABEL,), entry.input_size, cm))
            present = [int(k) for k in np.unique(labels) if 0 < k < len(entry.channels)]
            truth.append(make_sample(seed, pos, frame, study.regions, labels, present, entry.input_size, cm))
    return reviewer, truth


def run_contour_experiment(
    weights_dir: Path,
    workdir: Path,
    *,
    model: str = PLAX_SEG_MODEL,
    base_version: str | None = None,
    n_review_cases: int = 20,
    n_test_cases: int = 10,
    shift_mm: float = 1.0,
    steps: int = 150,
    lr: float = 3e-4,
    keep_unreviewed: float = KEEP_UNREVIEWED,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the whole loop (module docstring) in ``workdir``; returns the JSON-ready result."""
    from echomeasure.propose import clear_engines
    from echomeasure.store import open_store
    from echomeasure.training.experiment import weights_env

    t0 = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    wdir = workdir / "weights"
    if wdir.exists():
        shutil.rmtree(wdir)
    wdir.mkdir()
    base = registry.get_entry(model, base_version, weights_dir)
    copies = [base] + ([registry.get_entry(registry.PLAX_LINEAR, None, weights_dir)] if model == PLAX_SEG_MODEL else [])
    for e in copies:
        shutil.copyfile(registry.resolve_path(e, weights_dir), wdir / e.file)
        registry.register(e, weights_dir=wdir)
    for p in workdir.glob("reviews.sqlite*"):
        p.unlink()
    if (workdir / "images").exists():
        shutil.rmtree(workdir / "images")
    review_seeds = list(CONTOUR_EXPERIMENT_SEEDS[:n_review_cases])
    test_seeds = list(CONTOUR_EXPERIMENT_SEEDS[n_review_cases : n_review_cases + n_test_cases])

    clear_engines()
    with weights_env(wdir), open_store(f"sqlite:///{workdir / 'reviews.sqlite'}", images_dir=workdir / "images") as store:
        counts = build_contour_review_store(store, workdir, review_seeds, base, shift_mm, progress=progress)
        t_ft = time.monotonic()
        outcome = finetune_contours(store=store, model=model, base_version=base.version, steps=steps, lr=lr,
                                    keep_unreviewed=keep_unreviewed, seed=seed, activate="yes", weights_dir=wdir,
                                    min_frames=2)
        ft_s = time.monotonic() - t_ft
    clear_engines()
    reviewer_s, truth_s = new_case_samples(test_seeds, workdir, base, shift_mm)
    new_cases: dict[str, Any] = {}
    for label, version in (("before", base.version), ("after", outcome.entry.version)):
        loaded = registry.load_model(model, version, wdir)
        new_cases[label] = {"vs_reviewer": contour_metrics(loaded.model, loaded.entry, reviewer_s),
                            "vs_truth": contour_metrics(loaded.model, loaded.entry, truth_s)}
    return {
        "scenario": f"reviewer traces the LV endocardium {shift_mm} mm inside the true boundary",
        "model": model, "base_version": base.version, "new_version": outcome.entry.version,
        "seed": seed, "steps": steps, "lr": lr, "keep_unreviewed": keep_unreviewed,
        "review_seeds": [review_seeds[0], review_seeds[-1]] if review_seeds else [],
        "test_seeds": [test_seeds[0], test_seeds[-1]] if test_seeds else [],
        "reviews": counts, "test_frames": len(reviewer_s),
        "summary": summarise(new_cases, outcome.to_dict()),
        "finetune": outcome.to_dict(), "new_cases": new_cases,
        "finetune_s": round(ft_s, 1), "wall_s": round(time.monotonic() - t0, 1),
    }


def summarise(new_cases: dict[str, Any], finetune: dict[str, Any]) -> dict[str, Any]:
    """The headline figures: LV Dice and signed offset against the reviewer and the truth, before/after."""

    def lv(side: str, ref: str, key: str) -> Any:
        return new_cases[side][ref]["structures"].get("lv", {}).get(key)

    def dice_all(side: str) -> dict[str, Any]:
        return {n: v["dice"] for n, v in new_cases[side]["vs_truth"]["structures"].items()}

    held = {side: (finetune.get(side) or {}).get("structures", {}).get("lv", {}) for side in ("before", "after")}
    return {
        "new_cases_lv_dice_vs_reviewer": [lv("before", "vs_reviewer", "dice"), lv("after", "vs_reviewer", "dice")],
        "new_cases_lv_offset_mm_vs_reviewer": [lv("before", "vs_reviewer", "offset_mm"),
                                               lv("after", "vs_reviewer", "offset_mm")],
        "new_cases_lv_offset_mm_vs_truth": [lv("before", "vs_truth", "offset_mm"), lv("after", "vs_truth", "offset_mm")],
        "new_cases_lv_medians_vs_reviewer": {k: [lv("before", "vs_reviewer", k), lv("after", "vs_reviewer", k)]
                                             for k in ("dice_median", "offset_mm_median")},
        "new_cases_dice_vs_truth": {"before": dice_all("before"), "after": dice_all("after")},
        "heldout_reviews_lv": {"dice": [held["before"].get("dice"), held["after"].get("dice")],
                               "offset_mm": [held["before"].get("offset_mm"), held["after"].get("offset_mm")]},
        "loss": [finetune.get("loss_first"), finetune.get("loss_last")],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: ``python -m echomeasure.training.contour_experiment``."""
    from echomeasure import config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, required=True, help="scratch folder (database, studies, weights)")
    p.add_argument("--weights", type=Path, default=None, help="weights folder with the base model")
    p.add_argument("--model", default=PLAX_SEG_MODEL, help="segmentation model (default plax-seg)")
    p.add_argument("--base-version", help="version to fine-tune (default: the active one)")
    p.add_argument("--review-cases", type=int, default=20)
    p.add_argument("--test-cases", type=int, default=10)
    p.add_argument("--shift-mm", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--keep-unreviewed", type=float, default=KEEP_UNREVIEWED,
                   help="weight of the term keeping the base's split among unreviewed classes (0: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", type=Path, help="write the JSON result here too")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    result = run_contour_experiment(args.weights or config.weights_dir(), args.workdir, model=args.model,
                                    base_version=args.base_version, n_review_cases=args.review_cases,
                                    n_test_cases=args.test_cases, shift_mm=args.shift_mm, steps=args.steps,
                                    lr=args.lr, keep_unreviewed=args.keep_unreviewed, seed=args.seed)
    write_result(result, args.output)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
