"""The PS3.15 Annex E action table shipped with the package (``annex_e.json``) and its resolution.

The table is data, edition-stamped; this module only loads it and turns a row plus the chosen
options into one action code (X, Z, D, K, C, U or U*).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Literal

DateHandling = Literal["shift", "remove"]


@dataclass(frozen=True)
class DeidOptions:
    """Options of the confidentiality profile that echomeasure applies.

    ``dates``: ``"shift"`` applies Retain Longitudinal Temporal Information with Modified Dates
    (every date moved back by a per-patient HMAC-derived number of days, times kept);
    ``"remove"`` applies the basic profile's X/Z to dates.
    ``retain_patient_characteristics``: keep age, sex, size, weight (CID 7050 code 113108).
    ``find_text``: search the kept pixels for burned-in text with the OCR detector
    (:mod:`echomeasure.ingest.ocr`); off, the record says the search was not done.
    """

    dates: DateHandling = "shift"
    retain_patient_characteristics: bool = False
    find_text: bool = True


#: The profile applied when a caller passes no options (frozen, so one shared value is safe).
DEFAULT_DEID_OPTIONS = DeidOptions()


@dataclass(frozen=True)
class AnnexE:
    """The loaded table: ``rows`` maps ``"GGGGEEEE"`` (or ``"60xx3000"`` patterns) to row dicts."""

    edition: str
    rows: dict[str, dict]
    pattern_rows: dict[str, dict]


@lru_cache(maxsize=1)
def annex_e() -> AnnexE:
    """Load ``annex_e.json`` from the package (cached)."""
    text = resources.files("echomeasure.ingest").joinpath("annex_e.json").read_text(encoding="utf-8")
    doc = json.loads(text)
    rows = {k.upper(): v for k, v in doc["attributes"].items() if "xx" not in k.lower()}
    patterns = {k.lower(): v for k, v in doc["attributes"].items() if "xx" in k.lower()}
    return AnnexE(edition=doc["edition"], rows=rows, pattern_rows=patterns)


def row_for(tag: int) -> dict | None:
    """The table row for a tag, including the (50xx,xxxx) and (60xx,eeee) repeating-group rows."""
    table = annex_e()
    key = f"{tag:08X}"
    row = table.rows.get(key)
    if row is not None:
        return row
    group = tag >> 16
    if 0x5000 <= group <= 0x50FF:
        return table.pattern_rows.get("50xxxxxx")
    if 0x6000 <= group <= 0x60FF:
        return table.pattern_rows.get(f"60xx{tag & 0xFFFF:04x}")
    return None


def resolve(row: dict, options: DeidOptions) -> str:
    """One action code for a row under the chosen options.

    Compound codes resolve to the strongest removal listed (X before Z before D); ``X/Z/U*``
    keeps the sequence and remaps UIDs inside (``U*``).  Options override the basic action
    where the table gives one.
    """
    opts = row.get("options", {})
    if options.dates == "shift" and "retain_longitudinal_modified_dates" in opts:
        return "C"
    if options.retain_patient_characteristics and "retain_patient_characteristics" in opts:
        return opts["retain_patient_characteristics"]
    basic = row["basic"]
    codes = basic.split("/")
    if "U*" in codes:
        return "U*"
    for code in ("X", "Z", "D", "U", "K", "C"):
        if code in codes:
            return code
    raise ValueError(f"unknown action {basic!r} in annex_e.json")
