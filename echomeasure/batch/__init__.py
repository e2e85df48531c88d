"""Batch pre-annotation of an archive on Ray: ``echomeasure batch``.

Files are de-identified and proposed in parallel by a Ray Data actor pool (the models loaded
once per actor, :mod:`echomeasure.batch.worker`); each result comes back as a row sealed with the
site secret (:mod:`echomeasure.batch.sealed`) and is written by one writer: the driver into the
review store, or one Parquet file per study (:mod:`echomeasure.batch.parquet`) for a later
``echomeasure ingest --from-parquet``.  Ray is the optional ``echomeasure[ray]`` extra; nothing
here imports it until a batch runs.
"""

from echomeasure.batch.run import (
    RAY_HINT,
    BatchSummary,
    check_destination,
    ingest_from_parquet,
    plan_pool,
    require_ray,
    run_batch,
    store_opened,
)

__all__ = [
    "RAY_HINT", "BatchSummary", "check_destination", "ingest_from_parquet", "plan_pool", "require_ray",
    "run_batch", "store_opened",
]
