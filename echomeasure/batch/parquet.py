"""Batch results as Parquet: one file per input file, named by its source key, written atomically.

``echomeasure batch --out parquet DIR`` writes ``DIR/<source_key>.parquet`` for every input file
that passed the gate (one sealed row, :mod:`echomeasure.batch.sealed`; the key names the input by
its path and bytes, so two inputs never share a name); a file is complete or absent, never
half-written, so the folder doubles as the resume record.  ``echomeasure ingest --from-parquet
DIR`` later verifies each row's seal with the site secret and stores it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from echomeasure import atomic
from echomeasure.errors import InvalidInputError

SUFFIX = ".parquet"


def write_row(out_dir: Path, row: dict[str, Any]) -> Path:
    """Write one ok row as ``<source_key>.parquet`` in ``out_dir`` (temporary file, then rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from echomeasure.batch.sealed import arrow_schema

    schema = arrow_schema()
    table = pa.Table.from_pylist([{name: row.get(name) for name in schema.names}], schema=schema)
    key = str(row.get("source_key") or "")
    if not key:  # the driver could not read the file its worker read: no name to give the result
        raise InvalidInputError("the batch driver could not read this file to name its result; the archive must be "
                                "readable at the same path by the driver and the workers")
    dst = out_dir / f"{key}{SUFFIX}"
    with atomic.atomic_path(dst, mode=0o600) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return dst


def done_keys(out_dir: Path) -> set[str]:
    """Source keys already written to ``out_dir``."""
    return {p.name[: -len(SUFFIX)] for p in out_dir.glob(f"*{SUFFIX}") if not p.name.startswith(".")}


def iter_rows(in_dir: str | os.PathLike[str]) -> Iterator[tuple[Path, dict[str, Any] | None]]:
    """``(file, row)`` for each Parquet file of a batch folder, sorted; row None when unreadable."""
    import pyarrow.parquet as pq

    folder = Path(in_dir)
    if not folder.is_dir():
        raise InvalidInputError(f"{in_dir}: not a folder of batch results; give the folder 'batch --out parquet' wrote")
    files = sorted(p for p in folder.glob(f"*{SUFFIX}") if not p.name.startswith("."))
    if not files:
        raise InvalidInputError(f"{in_dir}: no batch results (*.parquet) in this folder")
    for path in files:
        try:
            rows = pq.read_table(path).to_pylist()
        except Exception:  # noqa: BLE001 - any damage to the file is reported for that file
            yield path, None
            continue
        if len(rows) != 1:
            yield path, None
            continue
        yield path, rows[0]
