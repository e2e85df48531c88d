"""The fine-tuning loop, end to end, on a reviewer with a systematic convention.

Scenario: a sonographer places the LV internal calipers by a *leading-edge* habit, each of the
two LV cavity endpoints (``septum_lv``, ``lv_pw``) ``shift_mm`` further out along the caliper
line than the ASE blood-tissue interface the model was trained on (LVIDd/LVIDs ``2 x shift_mm``
larger, IVSd and LVPWd ``shift_mm`` smaller).  The loop:

1. synthetic PLAX studies (seeds from :data:`EXPERIMENT_SEEDS`, disjoint from training and
   hold-out) are written as DICOM and ingested through the real pipeline (de-identification,
   gate, store, proposals of the current model);
2. the simulated reviewer answers every proposal in the store: *accepted* when both endpoints
   are within ``accept_tolerance_mm`` of where they would put them, else *corrected* to their
   convention;
3. :func:`echomeasure.training.finetune.finetune` fine-tunes on those reviews;
4. new cases of the same kind are measured by the base and the fine-tuned model, and the error
   against the reviewer's convention is compared (plus the synthetic hold-out, ASE convention).

``python -m echomeasure.training.experiment --workdir /tmp/ft`` runs it and prints JSON (the
``summary`` key has the per-measurement figures).  Since ``propose`` refines every caliper onto
the ASE interface, the reviewer's convention reaches the proposals through the edge offsets that
fine-tuning learns and records in the new version (``entry.decode.edge_offsets_mm``, see
:mod:`echomeasure.training.finetune`).  The figures of a run with the defaults are in
``benchmarks/finetune_experiment.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from echomeasure import atomic, catalog
from echomeasure.models import registry

log = logging.getLogger(__name__)

#: Case seeds of the experiment's review and test studies (disjoint from training and hold-out).
EXPERIMENT_SEEDS = range(9_500_000, 9_600_000)
_KP = {k: i for i, k in enumerate(catalog.KEYPOINTS_2D)}


def leading_edge_convention(shift_mm: float) -> Callable[[np.ndarray, float], np.ndarray]:
    """Keypoint map of the simulated reviewer: LV cavity endpoints ``shift_mm`` further out.

    Returns a function ``(keypoints (8, 2) image px, cm_per_px) -> keypoints (8, 2)``.
    """

    def convention(kp: np.ndarray, cm_per_px: float) -> np.ndarray:
        out = np.array(kp, dtype=np.float64, copy=True)
        a, b = out[_KP["septum_lv"]], out[_KP["lv_pw"]]
        direction = (b - a) / max(1e-9, float(np.hypot(*(b - a))))
        shift_px = shift_mm / (cm_per_px * 10.0)
        out[_KP["septum_lv"]] = a - direction * shift_px
        out[_KP["lv_pw"]] = b + direction * shift_px
        return out

    return convention


@contextlib.contextmanager
def weights_env(folder: Path) -> Iterator[None]:
    """Point ``$ECHOMEASURE_WEIGHTS`` (what ingest's proposals use) at ``folder`` for a while."""
    old = os.environ.get("ECHOMEASURE_WEIGHTS")
    os.environ["ECHOMEASURE_WEIGHTS"] = str(folder)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("ECHOMEASURE_WEIGHTS", None)
        else:
            os.environ["ECHOMEASURE_WEIGHTS"] = old


@dataclass(frozen=True)
class StudyCase:
    """A synthetic study written for the experiment: DICOM path and per-frame truth keypoints."""

    seed: int
    path: Path
    keypoints: np.ndarray  # (F, 8, 2) image px of the frames in the file
    cm_per_px: float


def write_plax_study(out_dir: Path, seed: int, *, n_frames: int = 4, small: bool = False,
                     style: str = "classic") -> StudyCase:
    """Render a short PLAX cine (ED, ES and evenly spaced frames) in a style family and write it as DICOM."""
    from echomeasure.synthetic.dicom_writer import build_dataset, write_dataset_atomic
    from echomeasure.synthetic.overlays import fake_identity
    from echomeasure.synthetic.styles import render_styled_plax
    from echomeasure.training.datasets import _styled_ed_es, plax_params_for_seed

    params = plax_params_for_seed(seed, small=small, style=style)
    ed, es = _styled_ed_es(params, style)
    extra = np.linspace(0, params.n_frames - 1, max(0, n_frames - 2) + 2)[1:-1].round().astype(int)
    frames = sorted({int(ed), int(es), *(int(i) for i in extra)})
    cine = render_styled_plax(params, style, frames=frames, labels=False)
    ds = build_dataset(cine.frames, cine.regions, fake_identity(seed, 0), seed=seed, case_index=0, kind="2d",
                       frame_time_ms=cine.frame_time_ms, heart_rate_bpm=params.heart_rate_bpm, jpeg=False,
                       description="PLAX 2D")
    path = out_dir / f"study_{seed}.dcm"
    write_dataset_atomic(ds, path)
    return StudyCase(seed, path, cine.keypoints.astype(np.float64), float(cine.cm_per_px))


def simulate_reviews(
    store: Any,
    clip_id: int,
    case: StudyCase,
    convention: Callable[[np.ndarray, float], np.ndarray],
    *,
    reviewer: str = "sonographer-le",
    accept_tolerance_mm: float = 0.5,
) -> dict[str, int]:
    """Answer every proposal of a clip as the simulated reviewer would.

    Returns the count of each action taken.
    """
    from echomeasure.ingest.calibration import physical_value

    clip = store.clip(clip_id)
    counts = {"accepted": 0, "corrected": 0}
    mm_per_px = case.cm_per_px * 10.0
    for st in store.current_measurements(clip_id):
        if st.measurement not in catalog.LINEAR_ENDPOINTS or st.proposed_points is None:
            continue
        frame = int(st.proposed_frame_index)
        kp = convention(case.keypoints[frame], case.cm_per_px)
        a, b = catalog.LINEAR_ENDPOINTS[st.measurement]
        wanted = (tuple(map(float, kp[_KP[a]])), tuple(map(float, kp[_KP[b]])))
        off_mm = max(float(np.hypot(*(np.subtract(p, q)))) * mm_per_px for p, q in zip(st.proposed_points, wanted, strict=False))
        if off_mm <= accept_tolerance_mm:
            store.add_review(clip_id, st.measurement, "accepted", reviewer, proposal_id=st.proposal_id,
                             seconds_spent=2.0)
            counts["accepted"] += 1
        else:
            from echomeasure.ingest.clip import Clip

            c = Clip(frames=np.zeros((1, clip.height_px, clip.width_px, 3), np.uint8), frame_time_ms=None,
                     regions=clip.region_objects, source_kind="dicom")
            value, unit, _ = physical_value(c, st.measurement, wanted)
            store.add_review(clip_id, st.measurement, "corrected", reviewer, proposal_id=st.proposal_id,
                             frame=frame, points=wanted, value=value, unit=unit, seconds_spent=8.0)
            counts["corrected"] += 1
    return counts


def build_review_store(
    store: Any,
    workdir: Path,
    seeds: Sequence[int],
    convention: Callable[[np.ndarray, float], np.ndarray],
    *,
    secret: bytes = b"experiment-secret",
    small: bool = False,
    progress: bool = True,
    style: str = "classic",
) -> dict[str, int]:
    """Write, ingest (with proposals) and review one study per seed; returns action counts."""
    from echomeasure.pipeline import ingest_path

    studies = workdir / "studies"
    studies.mkdir(parents=True, exist_ok=True)
    totals = {"accepted": 0, "corrected": 0, "clips": 0}
    for seed in tqdm(seeds, desc="ingest + review", file=sys.stderr, disable=not progress, dynamic_ncols=True):
        case = write_plax_study(studies, seed, small=small, style=style)
        result = ingest_path(case.path, store, secret=secret)
        if not result.proposals:
            log.warning("study %d: no proposals (%s)", seed, "; ".join(result.warnings))
            continue
        counts = simulate_reviews(store, result.clip.id, case, convention)
        for k, v in counts.items():
            totals[k] += v
        totals["clips"] += 1
    return totals


def run_experiment(
    weights_dir: Path,
    workdir: Path,
    *,
    n_review_cases: int = 24,
    n_test_cases: int = 12,
    shift_mm: float = 1.0,
    epochs: int = 10,
    synthetic_eval_cases: int = 10,
    small: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
    style: str = "classic",
    base_version: str | None = None,
    replay_cases: int | None = None,
) -> dict:
    """Run the whole loop (module docstring) in ``workdir``; the shipped weights are only read.

    ``style`` renders the review and test studies in a style family (the held-out one: can
    reviews of a new scanner's clips teach the model that scanner?); ``shift_mm=0`` is a reviewer
    who follows ASE, i.e. corrects every proposal to the truth.  The new cases are then also
    measured by the fine-tuned weights without the learned edge offsets (``new_cases_after_weights_only``),
    which shows what the weights themselves learned.

    Returns
    -------
    dict with the review counts, the fine-tune outcome and the before/after errors on new cases
    of the reviewer's convention (per measurement MAE in mm, endpoint MAE in mm).
    """
    from echomeasure.propose import clear_engines, propose
    from echomeasure.store import open_store
    from echomeasure.training.evaluate import evaluate_plax
    from echomeasure.training.finetune import FinetuneConfig, finetune

    t0 = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    wdir = workdir / "weights"
    if wdir.exists():
        shutil.rmtree(wdir)
    wdir.mkdir()
    base = registry.get_entry(registry.PLAX_LINEAR, base_version, weights_dir)
    shutil.copyfile(registry.resolve_path(base, weights_dir), wdir / base.file)
    registry.register(base, weights_dir=wdir)
    db = workdir / "reviews.sqlite"
    for p in workdir.glob("reviews.sqlite*"):
        p.unlink()
    convention = leading_edge_convention(shift_mm) if shift_mm else (lambda kp, cm_per_px: np.asarray(kp, float))
    review_seeds = list(EXPERIMENT_SEEDS[:n_review_cases])
    test_seeds = list(EXPERIMENT_SEEDS[n_review_cases : n_review_cases + n_test_cases])

    clear_engines()
    with weights_env(wdir), open_store(f"sqlite:///{db}", images_dir=workdir / "images") as store:
        counts = build_review_store(store, workdir, review_seeds, convention, small=small, progress=progress,
                                    style=style)
        config = FinetuneConfig(base=registry.PLAX_LINEAR, epochs=epochs, min_frames=min(20, 2 * counts["clips"]),
                                synthetic_eval_cases=synthetic_eval_cases, activate="yes", max_steps=max_steps,
                                replay_cases=replay_cases)
        outcome = finetune(config, store=store, weights_dir=wdir, progress=progress)

        def on_new_cases(version: str, folder: Path = wdir) -> dict:
            fn = partial(propose, model_versions={registry.PLAX_LINEAR: version}, weights_dir=folder, backend="torch")
            rep = evaluate_plax(fn, test_seeds, small=small, progress=progress,
                                label=(registry.PLAX_LINEAR, version), truth_keypoints_fn=convention if shift_mm else None,
                                style=style)
            return rep.to_dict()

        before = on_new_cases(base.version)
        after = on_new_cases(outcome.entry.version)
        weights_only = on_new_cases(outcome.entry.version, _without_offsets(outcome.entry, wdir, workdir))
    clear_engines()
    return {
        "scenario": f"leading-edge reviewer: LV cavity endpoints {shift_mm} mm further out",
        "summary": summarise(before, after, outcome.to_dict()),
        "review_cases": len(review_seeds), "test_cases": len(test_seeds), "reviews": counts,
        "style": style, "base_version": base.version,
        "finetune": outcome.to_dict(), "new_cases_before": before, "new_cases_after": after,
        "new_cases_after_weights_only": weights_only,
        "wall_s": round(time.monotonic() - t0, 1),
    }


def _without_offsets(entry: Any, wdir: Path, workdir: Path) -> Path:
    """A weights folder holding ``entry`` with its learned edge offsets removed (same weights)."""
    from echomeasure.training.finetune import register_without_offsets

    plain = workdir / "weights-without-offsets"
    if plain.exists():
        shutil.rmtree(plain)
    return register_without_offsets(entry, registry.resolve_path(entry, wdir), plain)


def summarise(before: dict, after: dict, finetune_outcome: dict) -> dict:
    """Per-measurement MAE and bias (mm) before/after on the new cases (reviewer's convention),
    the synthetic hold-out (ASE) and the learned edge offsets, from :func:`run_experiment`'s parts."""

    def synth(side: str, key: str = "synthetic_holdout") -> dict:
        m = finetune_outcome.get(side, {}).get(key) or {}
        return {k[: -len("_mae_mm")]: m[k] for k in m if k.endswith("_mae_mm")}

    return {
        "reviewer_convention": {
            name: {"mae_before": b["mae"], "bias_before": b["bias"],
                   "mae_after": after["measurements"][name]["mae"], "bias_after": after["measurements"][name]["bias"]}
            for name, b in before["measurements"].items() if name in after["measurements"]
        },
        "reviewer_mean_mae_mm": [before["overall"]["mean_mae_mm"], after["overall"]["mean_mae_mm"]],
        "synthetic_holdout_mae_mm": {"before": synth("before"), "after": synth("after"),
                                     "after_without_offsets": synth("after", "synthetic_holdout_without_offsets")},
        "edge_offsets_mm": (finetune_outcome.get("decode") or {}).get("edge_offsets_mm"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: ``python -m echomeasure.training.experiment``."""
    from echomeasure import config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, required=True, help="scratch folder (database, studies, weights)")
    p.add_argument("--weights", type=Path, default=None, help="weights folder with the base model")
    p.add_argument("--review-cases", type=int, default=24)
    p.add_argument("--test-cases", type=int, default=12)
    p.add_argument("--shift-mm", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--eval-cases", type=int, default=10)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--small", action="store_true")
    p.add_argument("--style", default="classic", help="style family of the review and test studies")
    p.add_argument("--base-version", help="plax-linear version to fine-tune (default: the active one)")
    p.add_argument("--replay-cases", type=int, help="synthetic replay cases (default: the base's training set)")
    p.add_argument("-o", "--output", type=Path, help="write the JSON result here too")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    result = run_experiment(args.weights or config.weights_dir(), args.workdir, n_review_cases=args.review_cases,
                            n_test_cases=args.test_cases, shift_mm=args.shift_mm, epochs=args.epochs,
                            synthetic_eval_cases=args.eval_cases, small=args.small, max_steps=args.max_steps,
                            style=args.style, base_version=args.base_version, replay_cases=args.replay_cases)
    write_result(result, args.output)
    return 0


def write_result(result: dict, output: Path | None) -> None:
    """An experiment's JSON result on stdout, and atomically into ``output`` when given."""
    text = json.dumps(result, indent=1)
    if output:
        atomic.write_text(output, text + "\n")
    sys.stdout.write(text + "\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
