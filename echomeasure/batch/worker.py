"""The Ray Data worker: one actor de-identifies files and runs the models, loaded once.

:class:`PreAnnotator` is the callable class given to ``Dataset.map_batches`` with an actor
pool: Ray builds it once per actor (loading the weights once) and calls it with batches of
input rows ``{"index", "path", "source_key"}``.  Each file gives one sealed row
(:mod:`echomeasure.batch.sealed`); a file that fails gives an error row, so one bad file never
stops the others.

The site secret is read by the worker itself from its own environment
(``ECHOMEASURE_SECRET``, or the local ``db/.secret`` on the machine that started Ray): it never
travels in a task argument, the object store or a log.
"""

from __future__ import annotations

import logging
import os
import resource
import traceback
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

#: Registry names of the models a worker loads up front.
MODEL_NAMES = ("plax-linear", "doppler-peaks")


def _usage() -> tuple[float, float]:
    """(peak resident memory in MB, CPU seconds used) of this worker process, all threads."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_maxrss / 1024.0, ru.ru_utime + ru.ru_stime  # Linux: ru_maxrss in KiB


class PreAnnotator:
    """De-identify and propose, one file at a time, with the models held for the actor's life.

    Parameters
    ----------
    run_models
        Propose measurements (False: de-identify only, like ``ingest --no-propose``).
    only
        Catalogue names to restrict the proposals to.
    user_cm_per_px
        Scale for uncalibrated videos and stills.
    threads
        Inference threads of this actor (ONNX Runtime / torch intra-op threads).
    """

    def __init__(self, run_models: bool = True, only: Sequence[str] | None = None,
                 user_cm_per_px: float | None = None, threads: int = 1) -> None:
        # Before echomeasure.models is imported: its runners take their thread count from here.
        os.environ["ECHOMEASURE_THREADS"] = str(max(1, int(threads)))
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, int(threads))))
        from echomeasure import config

        self.secret = config.secret()
        self.run_models = run_models
        self.only = list(only) if only else None
        self.user_cm_per_px = user_cm_per_px
        if run_models:
            self._load_models()

    def _load_models(self) -> None:
        """Load and verify the weights once; a model that cannot load is reported per file later."""
        from echomeasure.errors import EchomeasureError
        from echomeasure.propose.engine import get_engine

        for name in MODEL_NAMES:
            try:
                get_engine(name)
            except EchomeasureError as exc:  # e.g. no weights installed: each file says so
                log.info("%s not loaded: %s", name, exc)

    def __call__(self, batch: dict[str, Any]) -> Any:
        """Process a batch of input rows; returns a pyarrow Table of sealed rows."""
        import pyarrow as pa

        from echomeasure.batch.sealed import arrow_schema

        rows = [
            self.process_file(int(i), str(p), str(k))
            for i, p, k in zip(batch["index"], batch["path"], batch["source_key"], strict=True)
        ]
        pid, (peak_mb, cpu_s) = os.getpid(), _usage()
        for row in rows:
            row["worker_pid"], row["worker_peak_rss_mb"], row["worker_cpu_s"] = pid, peak_mb, cpu_s
        return pa.Table.from_pylist(rows, schema=arrow_schema())

    def process_file(self, index: int, path: str, key: str) -> dict:
        """One file: gate -> models -> sealed row, or an error row."""
        from echomeasure import ingest
        from echomeasure.batch import sealed
        from echomeasure.errors import EchomeasureError, MeasurementError, WeightsError
        from echomeasure.ingest.clip import display_name

        name = display_name(path)
        try:
            dclip = ingest.load(path, secret=self.secret, user_cm_per_px=self.user_cm_per_px)
            warnings: list[str] = []
            proposals = None
            if self.run_models:
                from echomeasure.propose import propose

                try:
                    proposals = propose(dclip.clip, only=self.only)
                except (WeightsError, MeasurementError) as exc:
                    warnings.append(f"no proposals: {exc}")
            else:
                warnings.append("proposals skipped on request")
            return sealed.ok_row(index, name, key, dclip, proposals, warnings, self.secret)
        except EchomeasureError as exc:
            return sealed.error_row(index, name, key, str(exc), self.secret)
        except Exception as exc:  # noqa: BLE001 - one file's bug must not stop the batch
            # Frames only, no message: messages of foreign exceptions may quote values read.
            log.error("unexpected %s on a file:\n%s", type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__)))
            return sealed.error_row(index, name, key, f"unexpected {type(exc).__name__} while processing the file "
                                    "(a bug; the worker log has the traceback)", self.secret)
