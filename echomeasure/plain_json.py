"""One rule for turning the project's Python values into plain JSON types.

Used as ``json.dumps(..., default=json_default)`` wherever the project writes JSON of its own
values: the review store (clip regions, de-identification records, audit payloads) and the
batch rows.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import PurePath
from typing import Any

import numpy as np


def json_default(o: Any) -> Any:
    """A plain JSON value for ``o``: numpy scalars -> numbers, arrays -> lists, sets -> sorted
    lists, paths -> strings, datetimes -> ISO 8601, dataclasses -> dicts.

    Raises
    ------
    TypeError
        Any other type (as :func:`json.dumps` expects of a ``default``).
    """
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if isinstance(o, PurePath):
        return str(o)
    if isinstance(o, datetime):
        return o.isoformat()
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def json_default_or_str(o: Any) -> Any:
    """:func:`json_default`, with any other type written as its ``str``."""
    try:
        return json_default(o)
    except TypeError:
        return str(o)


__all__ = ["json_default", "json_default_or_str"]
