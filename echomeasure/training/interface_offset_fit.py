"""Fit the bloom correction of the PLAX edge search (:mod:`echomeasure.propose.interface_offset`).

``python -m echomeasure.training.interface_offset_fit [--cases 60] [--seed 0] [--check-cases 20] [--styles S,S] [--out PATH]``

Renders ``--cases`` PLAX cases of each training family (ED and ES frames, training seeds only;
the held-out family is never rendered), re-images half of the frames through a point-spread
function and log compression (:class:`~echomeasure.training.augment.BloomAugment`), starts the
edge search 1 mm (SD) off every true interface, and fits a ridge regression of the true
interface's offset from the chosen step on the profile around it.  The error before and after
the correction on ``--check-cases`` cases of the training families from seed 9,000,040 (the edge
search's tuning seeds) is recorded beside it.  Writes the
JSON atomically (default: the shipped file beside the module, which the package then uses: give
``--out`` to fit elsewhere).  About a minute on one core.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from echomeasure import atomic, catalog
from echomeasure.propose import edges
from echomeasure.propose.interface_offset import (
    BLOOD_INTERFACES,
    COEFFICIENTS_FILE,
    InterfaceOffsetModel,
    fit_coefficients,
    sample_profiles,
)
from echomeasure.training.augment import BloomAugment
from echomeasure.training.datasets import TRAIN_SEEDS, refuse, refuse_unwritable

#: Families fitted on (the held-out family is never rendered here).
FIT_STYLES = ("classic", "vendor")
#: First case seed of ``--seed 0``; each further seed starts 10,000 later (training seeds only).
FIT_SEED_BASE = TRAIN_SEEDS.start + 300_000
#: First case seed checked after the fit (the edge search's tuning seeds of the training families).
CHECK_SEED0 = 9_000_040
BLOOM_P = 0.5
START_SD_MM = 1.0
RIDGE = 1.0


def interface_samples(styles: Sequence[str], seeds: Sequence[int], *, bloom_p: float = BLOOM_P,
                      rng_salt: int = 0) -> dict[str, np.ndarray]:
    """Profiles around the step the edge search chose from a start near each true interface, and
    the true interface's offset from it (mm, + toward the tissue).

    Returns ``{"profiles": (N, G), "offsets_mm": (N,), "bloomed": (N,) bool, "style": (N,) str,
    "keypoint": (N,) str}``.
    """
    from echomeasure.synthetic.styles import render_styled_plax
    from echomeasure.training.datasets import _styled_ed_es, plax_params_for_seed

    channels = list(catalog.KEYPOINTS_2D)
    bloom = BloomAugment(p=1.0)
    profiles, offsets, bloomed, style_of, keypoint = [], [], [], [], []
    for style in styles:
        for seed in seeds:
            rng = np.random.default_rng([int(seed), rng_salt])
            params = plax_params_for_seed(int(seed), style=style)
            rendered = render_styled_plax(params, style, frames=list(_styled_ed_es(params, style)), labels=False)
            px_per_mm = 1.0 / (rendered.cm_per_px * 10.0)
            for frame, truth in zip(rendered.frames, rendered.keypoints, strict=True):
                is_bloomed = bool(rng.random() < bloom_p)
                if is_bloomed:
                    frame = bloom(frame, rng, px_per_mm)
                kp = truth.astype(np.float64)
                starts, dirs, pol, ok = edges.plax_search_lines(kp, channels)
                start = kp + dirs * rng.normal(0.0, START_SD_MM, (len(channels), 1)) * px_per_mm
                res = edges.refine_plax_keypoints(frame, start, channels, px_per_mm, bloom_correction=False)
                use = [i for i, name in enumerate(channels) if ok[i] and res.found[i] and name in BLOOD_INTERFACES]
                if not use:
                    continue
                tissue = dirs[use] * pol[use, None]
                chosen = res.points_xy[use]
                profiles.append(sample_profiles(frame, chosen, tissue, px_per_mm))
                offsets.append(np.einsum("ij,ij->i", starts[use] - chosen, tissue) / px_per_mm)
                bloomed += [is_bloomed] * len(use)
                style_of += [style] * len(use)
                keypoint += [channels[i] for i in use]
    return {"profiles": np.concatenate(profiles) if profiles else np.zeros((0, 0)),
            "offsets_mm": np.concatenate(offsets) if offsets else np.zeros(0),
            "bloomed": np.asarray(bloomed, dtype=bool), "style": np.asarray(style_of), "keypoint": np.asarray(keypoint)}


def error_summary(offsets_mm: np.ndarray, groups: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Median signed error and MAE (mm) of the interface placement per group of samples."""
    out = {}
    for name, mask in groups.items():
        e = np.asarray(offsets_mm)[mask]
        if len(e):
            out[name] = {"n": int(len(e)), "median_mm": round(float(np.median(e)), 3),
                         "mae_mm": round(float(np.mean(np.abs(e))), 3)}
    return out


def _groups(samples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    groups = {}
    for style in np.unique(samples["style"]):
        for bloomed in (False, True):
            groups[f"{style}{'+bloom' if bloomed else ''}"] = (samples["style"] == style) & (samples["bloomed"] == bloomed)
    return groups


def fit(n_cases: int, seed: int, check_cases: int = 20, styles: Sequence[str] = FIT_STYLES) -> InterfaceOffsetModel:
    """Render, fit and check on ``styles`` (training families only); the model's record carries
    the command, data and errors."""
    from echomeasure.errors import InvalidInputError
    from echomeasure.synthetic.styles import parse_training_styles

    try:
        styles = parse_training_styles(list(styles))
    except InvalidInputError as exc:
        refuse(f"--styles: {exc}")
    first = FIT_SEED_BASE + 10_000 * seed
    if n_cases < 1:
        refuse("--cases must be at least 1")
    if n_cases > 10_000 or first + n_cases > TRAIN_SEEDS.stop:
        refuse(f"--cases {n_cases} with --seed {seed} leaves the training seed range")
    if not 1 <= check_cases <= 40:
        refuse("--check-cases must be 1 to 40 (the edge search's tuning seeds)")
    check_seeds = range(CHECK_SEED0, CHECK_SEED0 + check_cases)
    seeds = range(first, first + n_cases)
    train = interface_samples(styles, seeds)
    names = tuple(sorted(set(train["keypoint"].tolist())))
    coef = fit_coefficients(train["profiles"], train["offsets_mm"], keypoints=train["keypoint"].tolist(), keypoint_names=names,
                            ridge=RIDGE)
    model = InterfaceOffsetModel(coef, names)
    check = interface_samples(styles, check_seeds)
    before = check["offsets_mm"]
    after = before - model.offsets_mm(check["profiles"], check["keypoint"].tolist())
    record = {
        "command": (f"python -m echomeasure.training.interface_offset_fit --cases {n_cases} --seed {seed}"
                    f" --check-cases {check_cases}"
                    + ("" if tuple(styles) == FIT_STYLES else f" --styles {','.join(styles)}")),
        "data": {"styles": list(styles), "case_seeds": [seeds.start, seeds.stop - 1], "frames": "ED and ES",
                 "bloom": {"p": BLOOM_P, **BloomAugment().to_dict()}, "start_sd_mm": START_SD_MM,
                 "samples": int(len(train["offsets_mm"])), "ridge": RIDGE},
        "check": {"case_seeds": [check_seeds.start, check_seeds.stop - 1],
                  "before": error_summary(before, _groups(check)),
                  "after": error_summary(after, _groups(check))},
    }
    return InterfaceOffsetModel(coef, names, record)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m echomeasure.training.interface_offset_fit",
                                     description="Fit the PLAX edge search's bloom correction.")
    parser.add_argument("--cases", type=int, default=60, help="cases per training family (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="case-seed block (default 0)")
    parser.add_argument("--check-cases", type=int, default=20,
                        help="cases per family checked after the fit, from seed 9,000,040 (default 20)")
    parser.add_argument("--styles", default=",".join(FIT_STYLES),
                        help=f"training families to fit on, comma-separated (default {','.join(FIT_STYLES)})")
    parser.add_argument("--out", type=Path, default=COEFFICIENTS_FILE,
                        help="JSON to write (default: the shipped file beside interface_offset.py)")
    args = parser.parse_args(argv)
    if args.seed < 0:
        refuse("--seed must be 0 or more")
    refuse_unwritable("--out", args.out)  # a user error before a minute of rendering, not after it
    model = fit(args.cases, args.seed, args.check_cases, args.styles.split(","))
    atomic.write_text(args.out, json.dumps(model.to_json(), indent=1) + "\n")
    for phase in ("before", "after"):
        rows = model.record["check"][phase]
        print(phase, " ".join(f"{k}: median {v['median_mm']:+.2f} MAE {v['mae_mm']:.2f} mm" for k, v in rows.items()))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
