"""Re-store a registered model's weights as compact int8 and re-measure its held-out error.

    python benchmarks/repack_weights.py plax-linear 1.1 [--weights-dir weights] [--eval-cases 40]
    python benchmarks/repack_weights.py plax-linear 1.0 --remeasure-only --why "edge refinement"

``--remeasure-only`` keeps the file and re-measures the metrics through today's ``propose``
(after a decoding change); the previous metrics move to ``extra.metrics_history`` with the reason.

``echomeasure train`` and ``finetune`` already write the compact format
(:func:`echomeasure.models.registry.save_weights`, ``precision="int8"``).  This script converts a
version written before that (fp16/fp32 state dict) *in place*: the weights are the same up to
int8 rounding, so the version keeps its name, but the file, its sha256 and the metrics change,
and the manifest records both the old and the new metrics under ``extra.storage`` so the effect
of the rounding is on record.  The evaluation runs through the real ``propose`` path on the same
held-out cases as training's (``echomeasure.training.evaluate``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", choices=("plax-linear", "doppler-peaks"))
    ap.add_argument("version")
    ap.add_argument("--weights-dir", default=None, help="weights folder (default $ECHOMEASURE_WEIGHTS or weights/)")
    ap.add_argument("--eval-cases", type=int, default=40)
    ap.add_argument("--remeasure-only", action="store_true", help="keep the file, only re-measure the metrics")
    ap.add_argument("--why", default="", help="with --remeasure-only: what changed in decoding (recorded)")
    args = ap.parse_args(argv)

    from echomeasure import config
    from echomeasure.models import registry
    from echomeasure.training.evaluate import evaluate

    folder = Path(args.weights_dir) if args.weights_dir else config.weights_dir()
    if args.remeasure_only:
        return _remeasure(folder, registry.get_entry(args.name, args.version, folder), args.eval_cases, args.why)
    loaded = registry.load_model(args.name, args.version, folder)
    old = loaded.entry
    old_bytes = registry.resolve_path(old, folder).stat().st_size
    with tempfile.TemporaryDirectory(prefix="em-eval-", dir=folder) as scratch:
        scratch_dir = Path(scratch)
        sha = registry.save_weights(loaded.model, scratch_dir / old.file, precision="int8")
        new = replace(old, sha256=sha)
        registry.register(new, weights_dir=scratch_dir)
        report = evaluate(args.name, args.version, weights_dir=scratch_dir, n_cases=args.eval_cases)
        new_bytes = (scratch_dir / old.file).stat().st_size
        storage = {
            "precision": "int8 per output channel (conv weights), fp32 biases and BatchNorm, gzip",
            "repacked_from_bytes": old_bytes,
            "bytes": new_bytes,
            "metrics_before_repack": old.metrics,
        }
        new = replace(new, metrics=report.flat_metrics(),
                      extra={**old.extra, "evaluation": report.to_dict(), "storage": storage})
        registry.update_entry(new, weights_dir=folder, new_file=scratch_dir / old.file)
    print(json.dumps({"name": old.name, "version": old.version, "bytes": [old_bytes, new_bytes],
                      "metrics_before": old.metrics, "metrics_after": new.metrics}, indent=1))
    return 0


def _remeasure(folder: Path, old, n_cases: int, why: str) -> int:
    import datetime as dt

    from echomeasure.models import registry
    from echomeasure.training.evaluate import evaluate

    report = evaluate(old.name, old.version, weights_dir=folder, n_cases=n_cases)
    history = list(old.extra.get("metrics_history", []))
    history.append({"metrics": old.metrics, "replaced": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "why": why or "re-measured through the current propose pipeline"})
    new = replace(old, metrics=report.flat_metrics(),
                  extra={**old.extra, "evaluation": report.to_dict(), "metrics_history": history})
    registry.update_entry(new, weights_dir=folder)
    print(json.dumps({"name": old.name, "version": old.version, "metrics_before": old.metrics,
                      "metrics_after": new.metrics}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
