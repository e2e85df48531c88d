"""Throughput of ``echomeasure batch`` with 1 and 2 Ray workers on this machine, and the sequential baseline.

Usage::

    .venv/bin/python benchmarks/batch_bench.py [--archive DIR] [--cases 50] [--workers 1 2] [-o results.json]

Without ``--archive`` it writes ``--cases`` small synthetic PLAX cines and as many Doppler strips
(``echomeasure synth --kind both --small``) into a temporary folder.  Each batch run starts its
own local Ray (so start-up is included), stores into a fresh SQLite and reports:

* ``ray_start_s``: ``ray.init`` of a local instance;
* ``first_result_s``: from submitting the dataset to the first stored study (actor start, model
  load, the first study);
* ``studies_per_min``: all studies over the processing time (first result included);
* ``steady_studies_per_min``: the rate after the first result;
* ``worker_peak_rss_mb``: peak resident memory of each actor process (``ru_maxrss``).

The sequential baseline is ``ingest_path`` in a loop in this process (models loaded once), the
same work ``echomeasure ingest`` does.  The load average before and after each run is recorded:
other processes on a shared machine slow every figure down.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def sequential(files: list[Path], db_url: str, secret: bytes) -> dict:
    """``ingest`` in one process, timed in the batch's two halves: the worker's part (gate and
    models) and the single writer's part (seal check, store, frame PNGs, proposals)."""
    from echomeasure import ingest
    from echomeasure.batch import sealed, store_opened
    from echomeasure.errors import MeasurementError, WeightsError
    from echomeasure.propose import propose
    from echomeasure.store import open_store

    load_before = _load()
    worker_s = writer_s = 0.0
    t0 = time.perf_counter()
    with open_store(db_url) as store:
        for i, path in enumerate(files):
            t1 = time.perf_counter()
            dclip = ingest.load(path, secret=secret)
            try:
                proposals, warnings = propose(dclip.clip), []
            except (WeightsError, MeasurementError) as exc:
                proposals, warnings = None, [f"no proposals: {exc}"]
            t2 = time.perf_counter()
            row = sealed.ok_row(i, path.name, "", dclip, proposals, warnings, secret)
            store_opened(store, sealed.open_row(row, secret))
            t3 = time.perf_counter()
            worker_s += t2 - t1
            writer_s += t3 - t2
    wall = time.perf_counter() - t0
    n = len(files)
    return {"mode": "sequential (one process)", "studies": n, "wall_s": round(wall, 1),
            "studies_per_min": round(60 * n / wall, 1), "worker_part_s_per_study": round(worker_s / n, 3),
            "writer_part_s_per_study": round(writer_s / n, 3), "load_before": load_before, "load_after": _load()}


def batch(archive: Path, db_url: str, workers: int, threads: int | None) -> dict:
    from echomeasure.batch import run_batch

    load_before = _load()
    lines: list[dict] = []
    s = run_batch([archive], db=db_url, workers=workers, threads_per_worker=threads, emit=lines.append,
                  progress_stream=sys.stderr)
    n = s.ok + s.failed
    steady = None
    if s.first_result_s is not None and n > 1 and s.process_s > s.first_result_s:
        steady = round(60 * (n - 1) / (s.process_s - s.first_result_s), 1)
    return {
        "mode": f"batch, {s.workers} x {s.threads_per_worker} thread(s)", "workers": s.workers,
        "threads_per_worker": s.threads_per_worker, "studies": n, "failed": s.failed,
        "ray_start_s": round(s.ray_start_s, 1), "first_result_s": round(s.first_result_s or 0.0, 1),
        "process_s": round(s.process_s, 1), "writer_s": round(s.write_s, 1), "wall_s": round(s.wall_s, 1),
        "studies_per_min": round(s.files_per_min, 1), "steady_studies_per_min": steady,
        "worker_peak_rss_mb": sorted(round(v) for v in s.worker_peak_rss_mb.values()),
        "worker_cpu_s": round(sum(s.worker_cpu_s.values()), 1),
        "worker_cpu_s_per_study": round(sum(s.worker_cpu_s.values()) / max(n, 1), 3),
        "driver_cpu_s_per_study": round(s.writer_cpu_s / max(n, 1), 3),
        "load_before": load_before, "load_after": _load(),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archive", type=Path, help="folder of studies (default: synthetic, written to a temporary folder)")
    p.add_argument("--cases", type=int, default=50, help="synthetic cases per kind (default 50: 100 studies)")
    p.add_argument("--workers", nargs="+", default=["1x1", "2x1", "1"],
                   help="runs: N (the default plan: spare cores become threads) or NxT (N actors, T threads each)")
    p.add_argument("--no-sequential", action="store_true", help="skip the sequential baseline")
    p.add_argument("-o", "--output", type=Path, help="write the results JSON here")
    args = p.parse_args()

    os.environ.setdefault("ECHOMEASURE_SECRET", "batch-benchmark-secret")
    from echomeasure import config
    from echomeasure.pipeline import iter_input_files

    with tempfile.TemporaryDirectory(prefix="batch-bench-") as tmp:
        root = Path(tmp)
        archive = args.archive
        if archive is None:
            from echomeasure.synthetic.studio import write_cases

            archive = root / "archive"
            for _ in write_cases(archive, args.cases, seed=11, kind="both", small=True, progress=False):
                pass
        files = iter_input_files([archive])
        os.environ["ECHOMEASURE_IMAGES"] = str(root / "images")
        results: dict = {"cpus": len(os.sched_getaffinity(0)), "studies": len(files), "runs": []}
        for spec in args.workers:
            w, _, t = spec.partition("x")
            r = batch(archive, f"sqlite:///{root / f'batch{spec}.sqlite'}", int(w), int(t) if t else None)
            print(json.dumps(r), flush=True)
            results["runs"].append(r)
        if not args.no_sequential:
            r = sequential(files, f"sqlite:///{root / 'sequential.sqlite'}", config.secret())
            print(json.dumps(r), flush=True)
            results["runs"].append(r)
    if args.output:
        args.output.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
