"""Accuracy figures for keypoint models: errors in physical units and confidence ranking."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

#: A gross miss: a length more than this far from the truth (mm) ...
GROSS_MISS_MM = 5.0
#: ... or a velocity more than this far from it (% of the true value).
GROSS_MISS_PCT = 10.0


@dataclass(frozen=True)
class MeasurementAccuracy:
    """Error of one measurement over a set of cases.

    ``mae`` and ``bias`` are in the measurement's unit (mm for lengths, m/s for velocities);
    ``mape_pct`` is the mean absolute error relative to the true value, in percent.
    """

    name: str
    unit: str
    n: int
    mae: float
    bias: float
    mape_pct: float
    within_1mm_pct: float | None  # share of measurements (lengths) within 1 mm of truth
    spearman_conf_err: float | None  # negative: higher confidence goes with smaller error
    median_abs: float | None = None  # median absolute error (unit as mae)
    gross_pct: float | None = None  # share of gross misses (GROSS_MISS_MM, GROSS_MISS_PCT)
    n_gross: int | None = None
    gross_flagged_pct: float | None = None  # share of the gross misses the low-confidence flag catches
    good_flagged_pct: float | None = None  # share of the other proposals it flags
    missing: int = 0  # cases where the measurement was not proposed at all

    def to_dict(self) -> dict:
        """Plain dict for JSON reports and the manifest (floats rounded for reading)."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, float):
                d[k] = round(v, 4) if math.isfinite(v) else None
        return d


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank (as Spearman's rho needs)."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def spearman(confidence: Sequence[float] | np.ndarray, error: Sequence[float] | np.ndarray) -> float | None:
    """Spearman rank correlation between confidence and absolute error (None if undefined).

    Negative means the model is more confident where it is more accurate.
    """
    c = np.asarray(confidence, dtype=float)
    e = np.asarray(error, dtype=float)
    ok = np.isfinite(c) & np.isfinite(e)
    if ok.sum() < 3 or np.ptp(c[ok]) == 0 or np.ptp(e[ok]) == 0:
        return None
    rho = np.corrcoef(_ranks(c[ok]), _ranks(e[ok]))[0, 1]
    return float(rho) if np.isfinite(rho) else None


def summarise(
    name: str,
    unit: str,
    predicted: Sequence[float],
    truth: Sequence[float],
    confidence: Sequence[float] | None = None,
    endpoint_errors_mm: Sequence[float] | None = None,
    flagged: Sequence[bool] | None = None,
    missing: int = 0,
) -> MeasurementAccuracy:
    """Summarise predicted against true values of one measurement.

    Parameters
    ----------
    name, unit : str
        Measurement name and the unit of ``predicted``/``truth`` ("mm" or "m/s").
    predicted, truth : sequences of float
        One value per case.
    confidence : sequence of float, optional
        Model confidence per case, for the confidence-error rank correlation.
    endpoint_errors_mm : sequence of float, optional
        Distance of each caliper endpoint to its true position in mm; when given,
        ``within_1mm_pct`` is the share of endpoints within 1 mm; otherwise, for lengths, the
        share of measurement values within 1 mm.
    flagged : sequence of bool, optional
        Whether each proposal carried the low-confidence flag (for the flag's catch rates).
    missing : int
        Cases where no value was proposed (not in ``predicted``).
    """
    p = np.asarray(predicted, dtype=float)
    t = np.asarray(truth, dtype=float)
    err = p - t
    abs_err = np.abs(err)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(np.abs(t) > 0, abs_err / np.abs(t) * 100.0, np.nan)
    within = None
    if endpoint_errors_mm is not None and len(endpoint_errors_mm):
        within = float(np.mean(np.asarray(endpoint_errors_mm) <= 1.0) * 100.0)
    elif unit == "mm" and len(abs_err):
        within = float(np.mean(abs_err <= 1.0) * 100.0)
    gross = abs_err > GROSS_MISS_MM if unit == "mm" else rel > GROSS_MISS_PCT
    fl = None if flagged is None else np.asarray(flagged, dtype=bool)

    def share(mask: np.ndarray) -> float | None:
        return None if fl is None or not mask.any() else float(np.mean(fl[mask]) * 100.0)

    return MeasurementAccuracy(
        name=name,
        unit=unit,
        n=int(len(p)),
        median_abs=float(np.median(abs_err)) if len(p) else None,
        gross_pct=float(np.mean(gross) * 100.0) if len(p) else None,
        n_gross=int(gross.sum()),
        gross_flagged_pct=share(gross),
        good_flagged_pct=share(~gross),
        missing=int(missing),
        mae=float(abs_err.mean()) if len(p) else float("nan"),
        bias=float(err.mean()) if len(p) else float("nan"),
        mape_pct=float(np.nanmean(rel)) if len(p) and np.isfinite(rel).any() else float("nan"),
        within_1mm_pct=within,
        spearman_conf_err=spearman(confidence, abs_err) if confidence is not None else None,
    )
