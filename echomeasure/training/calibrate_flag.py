"""Re-measure a registered caliper model's low-confidence flag figures, pooled and per measurement.

``python -m echomeasure.training.calibrate_flag --model plax-linear [--version V] [--cases 20] [--styles S,S] [--out DIR]``

The figures (:class:`echomeasure.models.registry.FlagThresholds`: threshold, floor and error
ratio, for all proposals pooled and for each measurement alone) are measured as training
measures them: :func:`echomeasure.training.evaluate.evaluate` on the same held-out case seeds, in
every family the version was trained on (its manifest's ``training_data.styles``, unless
``--styles`` names others; never the held-out family), through the real ``propose`` with the
weights folder's other models (view, segmentation cross-check) as a user runs it.  They replace
the version's recorded thresholds in its registry entry
(:func:`echomeasure.models.registry.update_entry`: the weights and their other metrics are
unchanged); the command is recorded in the entry's ``extra["flag_calibration"]``.  Prints the old
and the new figures as JSON.  About a minute for 20 cases per family on one core.

Why per measurement: a model's confidences are not on one scale across measurements (the LA's far
end is the model's own point, so LA calipers are less confident than those the edge search
confirmed, whatever their error), and one pooled quantile flagged 85 % of good LA calipers of
the model's own style while it flagged 5-10 % of the others.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from echomeasure.training.datasets import refuse


def calibrate(name: str, version: str | None, *, n_cases: int, styles: Sequence[str] | None,
              weights_dir: str | Path | None, progress: bool = True) -> tuple[dict, dict]:
    """Measure and record a version's flag figures; returns ``(old, new)`` thresholds (manifest form)."""
    from echomeasure.models import registry
    from echomeasure.synthetic.styles import parse_training_styles
    from echomeasure.training import evaluate as evaluation

    entry = registry.get_entry(name, version, weights_dir)
    if entry.mode != "2d":
        raise ValueError(f"{name} is not a PLAX caliper model: only plax-linear versions are calibrated here")
    trained_on = (entry.extra.get("training_data") or {}).get("styles") or ["classic"]
    families = parse_training_styles(",".join(styles)) if styles else tuple(trained_on)
    if n_cases * len(families) < evaluation.MIN_FLAG_PROPOSALS:
        raise ValueError(f"{n_cases} cases in {len(families)} famil{'y' if len(families) == 1 else 'ies'} give fewer than "
                         f"the {evaluation.MIN_FLAG_PROPOSALS} proposals per measurement its own figures need: "
                         "give more --cases or --styles")
    report = evaluation.evaluate(name, entry.version, weights_dir=weights_dir, n_cases=n_cases, progress=progress,
                      style=families)
    _, pooled = registry.metrics_from_flat(report.flat_metrics(), registry.OWN_STYLE)
    per_measurement = report.flag_thresholds_by_measurement()
    if not per_measurement:
        raise ValueError("no measurement had enough held-out proposals to measure its own figures; nothing recorded")
    thresholds = replace(pooled, by_measurement=per_measurement)
    record = (f"python -m echomeasure.training.calibrate_flag --model {name} --version {entry.version} "
              f"--cases {n_cases} --styles {','.join(families)}: held-out cases of every training family "
              f"({', '.join(families)}; {n_cases} each, pooled), pooled and per measurement, through propose "
              "with the weights folder's other models")
    # the entry as it stands now (minutes of evaluation later), unless its weights changed meanwhile
    current = registry.get_entry(name, entry.version, weights_dir)
    if current.sha256 != entry.sha256:
        raise ValueError(f"{name} {entry.version} changed while it was evaluated; nothing recorded")
    registry.update_entry(replace(current, thresholds=thresholds, extra={**current.extra, "flag_calibration": record}),
                          weights_dir=weights_dir)
    return entry.thresholds.to_json(), thresholds.to_json()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m echomeasure.training.calibrate_flag",
                                     description="Re-measure a registered plax-linear version's low-confidence flag "
                                                 "figures (pooled and per measurement) and record them.")
    parser.add_argument("--model", default="plax-linear", help="registry name (default plax-linear)")
    parser.add_argument("--version", help="registered version (default: the active one)")
    parser.add_argument("--cases", type=int, default=20, help="held-out cases per family (default 20)")
    parser.add_argument("--styles", help="families, comma-separated (default: those the version was trained on)")
    parser.add_argument("--out", help="weights folder (default: $ECHOMEASURE_WEIGHTS or weights/)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.cases < 10:
        refuse("--cases must be 10 or more (a quantile of fewer held-out proposals is noise)")
    from echomeasure.errors import EchomeasureError

    try:
        old, new = calibrate(args.model, args.version, n_cases=args.cases,
                             styles=args.styles.split(",") if args.styles else None, weights_dir=args.out,
                             progress=not args.quiet)
    except (EchomeasureError, ValueError) as exc:
        refuse(str(exc))
    print(json.dumps({"model": args.model, "before": old, "after": new}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
