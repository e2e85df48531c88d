"""Accuracy of a registered model on held-out synthetic cases, through the real ``propose`` path.

PLAX (``plax-linear``), two protocols
    *single-frame* (the default, and what the manifest's metrics come from): for each held-out
    case (seeds from :data:`~echomeasure.training.datasets.HELDOUT_SEEDS`) the true
    end-diastolic and end-systolic frames are rendered and each is given to
    :func:`echomeasure.propose.propose` as a one-frame clip with the case's DICOM regions: the
    same crop, model, decoding and calibration as for a user's clip, with the frame choice taken
    out, so the figures are the caliper accuracy a sonographer reviewing that frame would see.

    *full-cine* (``cine=True``): the whole held-out cine is rendered and ``propose`` runs once,
    as for a user: points are smoothed over time and ED/ES are chosen from the per-frame LV
    diameter.  Scored: the reported value against the truth value at the true ED/ES frame; the
    frame choice (cycle-aware: distance in cardiac phase to the true ED/ES, in frames and ms,
    plus the raw index difference, which counts another beat's ED as wrong); the endpoint error
    on the chosen frame against that frame's truth; and the value error against the truth of the
    chosen frame (the caliper error with the frame choice taken out).

    Reported per measurement: MAE and bias in mm, MAE in % of the true value, share of caliper
    endpoints within 1 mm of the truth, and the Spearman correlation between the proposal's
    confidence and its absolute error (negative: confidence ranks errors).
Doppler (``doppler-peaks``)
    Each held-out strip goes through ``propose`` with ``only`` = the channels of its flow (what
    the user states when measuring a trace); the proposed value (mean per-beat peak magnitude,
    m/s) is compared with the truth: error in m/s and %, beats found, and the confidence-error
    correlation.
Low-confidence flag (both kinds)
    The raw confidences are model-specific (PLAX ~0.01-0.15), so a fixed flag threshold means
    nothing.  :func:`confidence_flag` sets the model's own threshold, ``low_confidence_below``:
    the :data:`FLAG_QUANTILE` quantile of the held-out confidences (about a quarter of proposals
    fall below it), and reports ``flagged_mae_ratio``, the mean relative error (%) of the
    flagged proposals over that of the others (above 1: the flag picks out worse proposals), and
    ``flagged_pct``, the share actually flagged.  The review UI flags with the threshold of the
    model version that made the proposal (stored in the manifest's ``metrics``).
Robustness breakdown (both kinds)
    Every case records the generator parameters that real clips vary in (:func:`plax_conditions`,
    :func:`doppler_conditions`: depth, pixel size, gain, noise, probe rotation, heart size,
    heart rate, frame rate, image size...).  :func:`robustness_breakdown` splits the cases into
    tertiles of each (one bin per value when it takes at most four) and reports the error of
    every measurement per bin, plus the Spearman correlation between the parameter and the
    case's mean error.  Forty cases make bins of about thirteen: differences below ~30 % between
    bins are within noise.

:func:`evaluate` is what ``echomeasure train`` records in the manifest and what
``echomeasure bench`` calls.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from tqdm import tqdm

from echomeasure import catalog
from echomeasure.ingest.clip import Clip
from echomeasure.training.datasets import (
    doppler_case,
    heldout_case_seeds,
    plax_params_for_seed,
)
from echomeasure.training.metrics import MeasurementAccuracy, spearman, summarise

log = logging.getLogger(__name__)

#: ``propose``-like callable: ``(clip, only) -> ClipProposals`` (injectable for tests).
ProposeFn = Callable[..., Any]

SINGLE_FRAME = "single-frame"
FULL_CINE = "full-cine"
#: A parameter taking at most this many distinct values is binned by value, not by tertile.
MAX_CATEGORIES = 4
#: Quantile of the held-out confidences below which a proposal is flagged for a close look.
FLAG_QUANTILE = 0.25
#: ``confidence_floor``: below the 2nd percentile of held-out confidences a proposal is unlike
#: anything the model was validated on (wrong view, failed caliper); the UI always flags it.
FLOOR_QUANTILE = 0.02
#: Fewest held-out proposals of one measurement that its own flag figures are measured on
#: (:func:`flag_by_measurement`; with fewer, the pooled figures judge it).
MIN_FLAG_PROPOSALS = 30
#: Significant figures kept for ``low_confidence_below`` (raw confidences can be ~0.001).
_THRESHOLD_SIGNIFICANT_FIGURES = 4


@dataclass
class CaseResult:
    """What one held-out case contributed: its conditions and its errors.

    ``errors`` maps a measurement to its signed error (mm for PLAX, % of the true value for
    Doppler); ``frame_error_ms`` (full-cine PLAX only) maps "ed"/"es" to the cycle-aware frame
    choice error.
    """

    seed: int
    conditions: dict[str, float | str]
    errors: dict[str, float] = field(default_factory=dict)
    frame_error_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form (floats rounded for reading)."""
        def rnd(v):
            return round(float(v), 4) if isinstance(v, (float, np.floating)) else v

        return {"seed": self.seed, "conditions": {k: rnd(v) for k, v in self.conditions.items()},
                "errors": {k: rnd(v) for k, v in self.errors.items()},
                **({"frame_error_ms": {k: rnd(v) for k, v in self.frame_error_ms.items()}}
                   if self.frame_error_ms else {})}


def _rounded_figure(name: str, value: Any) -> float:
    """An evaluation figure as the registry keeps it: small raw confidences (the flag's threshold
    and floor) to significant figures, the others to 4 decimals."""
    if name in ("low_confidence_below", "confidence_floor"):
        return float(f"{float(value):.{_THRESHOLD_SIGNIFICANT_FIGURES}g}")
    return round(float(value), 4)


@dataclass
class EvaluationReport:
    """Held-out accuracy of one model version.

    ``protocol`` is ``"single-frame"`` or ``"full-cine"`` for PLAX, ``"strip"`` for Doppler;
    ``frame_choice`` (full-cine only) holds the ED/ES frame choice figures, the error against
    the chosen frame's truth and ``breakdown_ms`` (the frame choice error, ms, per bin of each
    condition); ``breakdown`` is :func:`robustness_breakdown` of ``cases``.
    """

    model: str
    version: str
    mode: str
    n_cases: int
    case_seeds: list[int]
    measurements: dict[str, MeasurementAccuracy] = field(default_factory=dict)
    overall: dict[str, float | None] = field(default_factory=dict)
    wall_s: float = 0.0
    protocol: str = SINGLE_FRAME
    frame_choice: dict[str, Any] = field(default_factory=dict)
    breakdown: dict[str, Any] = field(default_factory=dict)
    cases: list[CaseResult] = field(default_factory=list)
    flag_by_measurement: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def to_dict(self, *, cases: bool = False) -> dict:
        """JSON-ready form (per-measurement dicts, overall figures, robustness breakdown).

        Parameters
        ----------
        cases : bool
            Also list every case's conditions and errors (``"cases"``).
        """
        out = {
            "model": self.model, "version": self.version, "mode": self.mode, "protocol": self.protocol,
            "n_cases": self.n_cases,
            "case_seeds": [self.case_seeds[0], self.case_seeds[-1]] if self.case_seeds else [],
            "measurements": {k: v.to_dict() for k, v in self.measurements.items()},
            "overall": self.overall, "wall_s": round(self.wall_s, 1),
        }
        if self.frame_choice:
            out["frame_choice"] = self.frame_choice
        if self.breakdown:
            out["breakdown"] = self.breakdown
        if self.flag_by_measurement:
            out["flag_by_measurement"] = self.flag_by_measurement
        if cases:
            out["cases"] = [c.to_dict() for c in self.cases]
        return out

    def flat_metrics(self) -> dict[str, float]:
        """Flat ``{"lvidd_mae_mm": ..., ...}`` figures for the registry entry's ``metrics``."""
        out: dict[str, float] = {}
        for name, m in self.measurements.items():
            d = m.to_dict()
            if m.unit == "mm":
                out[f"{name}_mae_mm"] = d["mae"]
                out[f"{name}_mae_pct"] = d["mape_pct"]
            else:
                out[f"{name}_mae_m_s"] = d["mae"]
                out[f"{name}_error_pct"] = d["mape_pct"]
        for k, v in self.overall.items():
            if v is not None:
                out[k] = _rounded_figure(k, v)
        return out

    def flag_thresholds_by_measurement(self) -> dict[str, dict[str, float]]:
        """The per-measurement flag figures for ``FlagThresholds.by_measurement`` (which keeps the
        flag's three), rounded as :meth:`flat_metrics` rounds the pooled ones."""
        return {name: {k: _rounded_figure(k, v) for k, v in figures.items() if v is not None}
                for name, figures in self.flag_by_measurement.items()}

    def table(self, *, breakdown: bool = True) -> str:
        """A plain-text table for logs and the CLI (with the robustness breakdown by default)."""
        rows = [f"{self.model} {self.version}: {self.n_cases} held-out cases ({self.protocol})"]
        for m in self.measurements.values():
            within = "" if m.within_1mm_pct is None else f"  within 1 mm {m.within_1mm_pct:5.1f}%"
            rho = "" if m.spearman_conf_err is None else f"  rho(conf, err) {m.spearman_conf_err:+.2f}"
            gross = "" if m.gross_pct is None else (
                f"  median {m.median_abs:.3f}  gross {m.gross_pct:4.1f}% ({m.n_gross})"
                + ("" if m.gross_flagged_pct is None else f" flagged {m.gross_flagged_pct:.0f}%")
                + ("" if m.good_flagged_pct is None else f"; good flagged {m.good_flagged_pct:.0f}%"))
            missing = f"  missing {m.missing}" if m.missing else ""
            rows.append(f"  {m.name:12s} MAE {m.mae:7.3f} {m.unit:3s} ({m.mape_pct:5.1f}%)  bias {m.bias:+7.3f}"
                        f"{within}{rho}{gross}{missing}  n={m.n}")
        rows.append("  overall " + ", ".join(f"{k}={v:.3g}" for k, v in self.overall.items() if v is not None))
        if self.frame_choice:
            fc = self.frame_choice
            for phase in ("ed", "es"):
                f = fc[phase]
                rows.append(f"  {phase.upper()} frame choice: median {f['error_ms_median']:.0f} ms "
                            f"({f['error_frames_median']:.1f} frames), mean {f['error_ms_mean']:.0f} ms, "
                            f"max {f['error_ms_max']:.0f} ms; within half a frame in {f['within_half_frame_pct']:.0f}%; "
                            f"raw |index - truth| median {f['index_error_median']:.0f}")
            chosen = fc.get("chosen_frame_mae", {})
            if chosen:
                rows.append("  MAE vs the chosen frame's truth: "
                            + ", ".join(f"{k} {v:.2f}" for k, v in chosen.items()))
        if breakdown and self.breakdown:
            rows.append(breakdown_table(self.breakdown))
        return "\n".join(rows)


# --------------------------------------------------------------------------- robustness breakdown


def plax_conditions(params: Any) -> dict[str, float | str]:
    """The acquisition conditions of a PLAX case that real clips vary in.

    Parameters
    ----------
    params : echomeasure.synthetic.plax.PlaxParams

    Returns
    -------
    dict
        ``depth_cm`` (sector depth), ``mm_per_px`` (pixel size, from depth and image size),
        ``image_width_px``, ``gain_db``, ``noise_db`` (electronic noise floor),
        ``dynamic_range_db``, ``rotation_abs_deg`` (long-axis tilt on screen, either way),
        ``lvidd_cm`` (heart size), ``ef_percent``, ``heart_rate_bpm``, ``frame_rate_fps``,
        ``frames_per_cycle``, ``dropouts`` (count of echo dropout patches), ``rib_shadow``
        (1 when present).
    """
    from echomeasure.synthetic.plax import sector_geometry

    sp = params.speckle
    return {
        "depth_cm": float(params.depth_cm),
        "mm_per_px": float(sector_geometry(params).cm_per_px * 10.0),
        "image_width_px": int(params.width_px),
        "gain_db": float(sp.gain_db),
        "noise_db": float(20.0 * math.log10(sp.noise_level)),
        "dynamic_range_db": float(sp.dynamic_range_db),
        "rotation_abs_deg": float(abs(params.rotation_deg)),
        "lvidd_cm": float(params.shape.lvidd_cm),
        "ef_percent": float(params.ef_percent),
        "heart_rate_bpm": float(params.heart_rate_bpm),
        "frame_rate_fps": float(params.fps),
        "frames_per_cycle": float(params.fps * params.rr_s),
        "dropouts": int(len(params.dropout)),
        "rib_shadow": int(params.rib_shadow_db > 0),
    }


def doppler_conditions(truth: Mapping[str, Any]) -> dict[str, float | str]:
    """The acquisition conditions of a Doppler strip that real strips vary in.

    Parameters
    ----------
    truth : dict
        ``SyntheticDoppler.truth`` (carries the generator parameters).

    Returns
    -------
    dict
        ``flow``, ``scale_m_s`` (display range), ``velocity_cm_s_per_px`` (velocity per row),
        ``peak_to_scale`` (true peak / display range), ``heart_rate_bpm``, ``gain_db`` (signal
        intensity), ``noise_db``, ``dynamic_range_db``, ``image_width_px``.
    """
    p = truth["params"]
    peaks = [abs(float(m["value"])) for k, m in truth["measurements"].items()
             if k in catalog.DOPPLER_CHANNELS and m.get("value")]
    return {
        "flow": str(p["flow"]),
        "scale_m_s": float(p["scale_m_s"]),
        "velocity_cm_s_per_px": float(abs(truth["velocity_cm_s_per_px"])),
        "peak_to_scale": float(max(peaks) / p["scale_m_s"]) if peaks else float("nan"),
        "heart_rate_bpm": float(p["heart_rate_bpm"]),
        "gain_db": float(p["intensity_db"]),
        "noise_db": float(p["noise_db"]),
        "dynamic_range_db": float(p["dynamic_range_db"]),
        "image_width_px": int(p["width_px"]),
    }


def condition_bins(values: Sequence[float | str]) -> list[tuple[str, np.ndarray]]:
    """Split cases by one condition: one bin per value (text, or at most
    :data:`MAX_CATEGORIES` whole-number values: counts, sizes, flags) or tertiles.

    Every case falls in exactly one bin (cases whose value is NaN are left out); empty bins are
    dropped.

    Returns
    -------
    list of (label, boolean mask over the cases)
    """
    vals = list(values)
    if not vals:
        return []
    if any(isinstance(v, str) for v in vals):
        arr = np.asarray([str(v) for v in vals])
        return [(v, arr == v) for v in sorted(set(arr.tolist()))]
    x = np.asarray(vals, dtype=float)
    ok = np.isfinite(x)
    distinct = np.unique(x[ok])
    if len(distinct) <= MAX_CATEGORIES and np.all(distinct == np.round(distinct)):  # counts, sizes, flags
        return [(f"{v:g}", ok & (x == v)) for v in distinct]
    q1, q2 = np.quantile(x[ok], [1.0 / 3.0, 2.0 / 3.0])
    which = np.searchsorted(np.asarray([q1, q2]), x, side="left")  # <= q1, (q1, q2], > q2
    bins = []
    for k in range(3):
        mask = ok & (which == k)
        if mask.any():
            bins.append((f"{x[mask].min():.3g}-{x[mask].max():.3g}", mask))
    return bins


def robustness_breakdown(cases: Sequence[CaseResult], measurements: Sequence[str], unit: str) -> dict[str, Any]:
    """Error of every measurement per bin of every recorded condition.

    Parameters
    ----------
    cases : sequence of CaseResult
        Cases with their ``conditions`` and signed ``errors``.
    measurements : sequence of str
        Which measurements to report (in this order).
    unit : str
        Unit of the errors ("mm" or "%"), recorded in the result.

    Returns
    -------
    dict
        ``condition -> {"unit", "spearman_vs_case_error", "bins": [{"label", "lo", "hi",
        "n_cases", "mae": {measurement: MAE or None}, "mean_mae"}]}``.  ``mean_mae`` averages the
        case-level mean absolute error over the cases of the bin; ``spearman_vs_case_error`` is
        the rank correlation of the condition with that case-level error (positive: error grows
        with the condition).  The bins of a condition partition the cases that have a value.
    """
    if not cases:
        return {}
    case_err = np.asarray([np.mean([abs(v) for v in c.errors.values()]) if c.errors else np.nan for c in cases])
    out: dict[str, Any] = {}
    for cond in cases[0].conditions:
        values = [c.conditions.get(cond, float("nan")) for c in cases]
        bins = []
        for label, mask in condition_bins(values):
            members = [c for c, m in zip(cases, mask, strict=True) if m]
            mae: dict[str, float | None] = {}
            for name in measurements:
                errs = [abs(c.errors[name]) for c in members if name in c.errors]
                mae[name] = round(float(np.mean(errs)), 4) if errs else None
            numeric = [v for v, m in zip(values, mask, strict=True) if m and not isinstance(v, str)]
            ce = case_err[mask]
            bins.append({
                "label": label,
                "lo": round(float(min(numeric)), 4) if numeric else None,
                "hi": round(float(max(numeric)), 4) if numeric else None,
                "n_cases": int(mask.sum()),
                "mae": mae,
                "mean_mae": round(float(np.nanmean(ce)), 4) if np.isfinite(ce).any() else None,
            })
        rho = None
        if not any(isinstance(v, str) for v in values):
            r = spearman(np.asarray(values, dtype=float), case_err)  # defined for any two series
            rho = None if r is None else round(r, 3)
        out[cond] = {"unit": unit, "spearman_vs_case_error": rho, "bins": bins}
    return out


def breakdown_table(breakdown: Mapping[str, Any]) -> str:
    """Compact plain-text table of :func:`robustness_breakdown`: one row per bin, MAE per measurement."""
    if not breakdown:
        return ""
    first = next(iter(breakdown.values()))
    names = list(first["bins"][0]["mae"]) if first["bins"] else []
    head = f"  {'condition':20s} {'bin':>15s} {'n':>3s} " + " ".join(f"{n[:8]:>8s}" for n in names) + "     mean  rho"
    rows = [f"  robustness breakdown (MAE, {first['unit']}, per bin of each condition)", head]
    for cond, b in breakdown.items():
        rho = b.get("spearman_vs_case_error")
        for i, bn in enumerate(b["bins"]):
            cells = " ".join("       -" if bn["mae"].get(n) is None else f"{bn['mae'][n]:8.2f}" for n in names)
            mean = "     -" if bn["mean_mae"] is None else f"{bn['mean_mae']:6.2f}"
            tail = f" {rho:+.2f}" if (i == 0 and rho is not None) else ""
            rows.append(f"  {cond if i == 0 else '':20s} {bn['label']:>15s} {bn['n_cases']:3d} {cells}   {mean}{tail}")
    return "\n".join(rows)


def confidence_flag(
    confidence: Sequence[float], relative_error_pct: Sequence[float], quantile: float = FLAG_QUANTILE
) -> dict[str, float | None]:
    """The model's low-confidence flag threshold and how the flagged proposals compare.

    Parameters
    ----------
    confidence : sequence of float
        Confidence of every held-out proposal.
    relative_error_pct : sequence of float
        Its absolute error in % of the true value (so measurements of any size mix fairly).
    quantile : float
        Share of proposals meant to be flagged (:data:`FLAG_QUANTILE`).

    Returns
    -------
    dict
        ``low_confidence_below``: the ``quantile`` quantile of the confidences (linear
        interpolation); a proposal is flagged when its confidence is strictly below it, as in
        the review UI.  ``flagged_pct``: the share flagged.  ``flagged_mae_ratio``: mean
        relative error of the flagged over that of the unflagged proposals (None when either
        group is empty or the unflagged error is zero).  ``confidence_floor``: the
        :data:`FLOOR_QUANTILE` quantile, below which the UI flags whatever the ratio.  All None
        without proposals.
    """
    c = np.asarray(confidence, dtype=float)
    e = np.asarray(relative_error_pct, dtype=float)
    if c.shape != e.shape:
        raise ValueError(f"{len(c)} confidences but {len(e)} errors")
    ok = np.isfinite(c) & np.isfinite(e)
    c, e = c[ok], np.abs(e[ok])
    if not len(c):
        return {"low_confidence_below": None, "flagged_pct": None, "flagged_mae_ratio": None,
                "confidence_floor": None}
    threshold = float(np.quantile(c, quantile))
    flagged = c < threshold
    ratio = None
    if flagged.any() and (~flagged).any() and np.mean(e[~flagged]) > 0:
        ratio = float(np.mean(e[flagged]) / np.mean(e[~flagged]))
    return {"low_confidence_below": threshold, "flagged_pct": float(np.mean(flagged) * 100.0),
            "flagged_mae_ratio": ratio, "confidence_floor": float(np.quantile(c, FLOOR_QUANTILE))}


def flag_by_measurement(confidence: Mapping[str, Sequence[float]], relative_error_pct: Mapping[str, Sequence[float]],
                        min_proposals: int | None = None) -> dict[str, dict[str, float | None]]:
    """:func:`confidence_flag` on each measurement's proposals alone (those with at least
    ``min_proposals``; the others are judged by the pooled figures).

    Confidence scales differ between measurements of one model (a caliper whose far end the model
    places alone is less confident than one the edge search confirmed), so one pooled quantile
    can flag most proposals of one measurement whatever their error.
    """
    least = MIN_FLAG_PROPOSALS if min_proposals is None else min_proposals

    def usable(name: str) -> int:  # the proposals confidence_flag keeps
        c, e = np.asarray(confidence[name], dtype=float), np.asarray(relative_error_pct[name], dtype=float)
        return int(np.sum(np.isfinite(c) & np.isfinite(e)))

    return {name: confidence_flag(confidence[name], relative_error_pct[name])
            for name in confidence if usable(name) >= least}


def gross_miss_summary(measurements: Any) -> dict[str, float | None]:
    """Pooled gross-miss figures over measurements (:class:`MeasurementAccuracy` with flag counts).

    ``gross_miss_pct``: share of proposals that are gross misses; ``gross_flagged_pct``: share of
    those the low-confidence flag catches; ``good_flagged_pct``: share of the others it flags;
    ``missing``: measurements not proposed at all.
    """
    n = n_gross = 0
    caught = good_flagged = 0.0
    missing = 0
    for m in measurements:
        missing += int(m.missing or 0)
        if not m.n or m.n_gross is None:
            continue
        n += m.n
        n_gross += m.n_gross
        if m.gross_flagged_pct is not None:
            caught += m.gross_flagged_pct / 100.0 * m.n_gross
        if m.good_flagged_pct is not None:
            good_flagged += m.good_flagged_pct / 100.0 * (m.n - m.n_gross)
    return {
        "gross_miss_pct": n_gross / n * 100.0 if n else None,
        "n_gross": float(n_gross),
        "gross_flagged_pct": caught / n_gross * 100.0 if n_gross else None,
        "good_flagged_pct": good_flagged / (n - n_gross) * 100.0 if n > n_gross else None,
        "missing": float(missing),
    }


def style_summary(report: EvaluationReport) -> dict[str, Any]:
    """The figures the held-out-style protocol compares, per measurement and pooled.

    Per measurement: ``mae``, ``median`` (mm for PLAX, % of the true value for Doppler),
    ``gross_pct`` (> 5 mm, > 10 %), ``gross_flagged_pct`` (share of the gross misses carrying the
    low-confidence flag), ``good_flagged_pct`` (share of the others carrying it), ``missing``
    (cases without a value), ``n``.
    """
    per: dict[str, Any] = {}
    for name, m in report.measurements.items():
        d = m.to_dict()
        if m.unit == "mm":
            mae, median = d["mae"], d["median_abs"]
        else:  # Doppler: relative errors, from the per-case records
            rel = [abs(c.errors[name]) for c in report.cases if name in c.errors]
            mae = round(float(np.mean(rel)), 3) if rel else None
            median = round(float(np.median(rel)), 3) if rel else None
        per[name] = {"unit": "mm" if m.unit == "mm" else "%", "mae": mae, "median": median,
                     "gross_pct": d["gross_pct"], "n_gross": d["n_gross"],
                     "gross_flagged_pct": d["gross_flagged_pct"], "good_flagged_pct": d["good_flagged_pct"],
                     "missing": d["missing"], "n": d["n"]}
    pooled = {k: report.overall.get(k) for k in ("mean_mae_mm", "mean_error_pct", "gross_miss_pct", "n_gross",
                                                  "gross_flagged_pct", "good_flagged_pct", "missing")
              if report.overall.get(k) is not None}
    return {"model": report.model, "version": report.version, "n_cases": report.n_cases,
            "protocol": report.protocol, "measurements": per, "overall": pooled}


# --------------------------------------------------------------------------- PLAX


def _plax_clip(frames: np.ndarray, regions, frame_time_ms: float | None) -> Clip:
    return Clip(frames=np.ascontiguousarray(frames), frame_time_ms=frame_time_ms, regions=tuple(regions),
                source_kind="dicom", source_name="heldout")


def _cycle_distance(phase_a: float, phase_b: float) -> float:
    """Distance between two cardiac phases (fractions of the cycle, 0..0.5)."""
    d = abs(phase_a - phase_b) % 1.0
    return min(d, 1.0 - d)


class _PlaxScores:
    """Per-measurement accumulators of one PLAX evaluation, and the truth convention it scores against."""

    def __init__(self, truth_keypoints_fn: Callable[[np.ndarray, float], np.ndarray] | None = None) -> None:
        names = catalog.LINEAR_2D
        self.truth_keypoints_fn = truth_keypoints_fn
        self.pred: dict[str, list[float]] = {n: [] for n in names}
        self.true: dict[str, list[float]] = {n: [] for n in names}
        self.conf: dict[str, list[float]] = {n: [] for n in names}
        self.endpoint_mm: dict[str, list[float]] = {n: [] for n in names}
        self.chosen_err_mm: dict[str, list[float]] = {n: [] for n in names}
        self.flagged: dict[str, list[bool]] = {n: [] for n in names}
        self.missing: dict[str, int] = {n: 0 for n in names}

    def truth_points(self, kp: np.ndarray, cm_per_px: float) -> np.ndarray:
        """A frame's true keypoints in the convention scored against (the rendered ones by default)."""
        kp = kp.astype(np.float64)
        return kp if self.truth_keypoints_fn is None else self.truth_keypoints_fn(kp, cm_per_px)

    def true_mm(self, rendered: Any, name: str, truth_kp: np.ndarray, mm_per_px: float, frame: int | None = None) -> float:
        """The true value of ``name`` in mm: the rendered truth (of ``frame``, else of its phase's
        frame), or the length between the mapped keypoints under another convention."""
        if self.truth_keypoints_fn is not None:
            return _length_mm(truth_kp, name, mm_per_px)
        if frame is None:
            return float(rendered.truth["measurements"][name]["value"]) * 10.0
        return float(rendered.truth["frames"][frame]["values_cm"][name]) * 10.0

    def add(self, case: CaseResult, p: Any, true_mm: float, kp_on_frame: np.ndarray, mm_per_px: float) -> None:
        """Score one proposal against its true value and the true keypoints of its frame."""
        name = p.name
        pred_mm = float(p.value) * 10.0
        self.pred[name].append(pred_mm)
        self.true[name].append(true_mm)
        self.conf[name].append(float(p.confidence))
        self.flagged[name].append(bool(getattr(p, "flagged", False)))
        for point, kp in zip(p.points, catalog.LINEAR_ENDPOINTS[name], strict=False):
            self.endpoint_mm[name].append(
                float(np.hypot(*(np.asarray(point) - kp_on_frame[_KEYPOINT_INDEX[kp]]))) * mm_per_px)
        case.errors[name] = pred_mm - true_mm


_KEYPOINT_INDEX = {k: i for i, k in enumerate(catalog.KEYPOINTS_2D)}


def _length_mm(kp: np.ndarray, name: str, mm_per_px: float) -> float:
    """Length of a linear measurement between its two keypoints, in mm."""
    a, b = catalog.LINEAR_ENDPOINTS[name]
    return float(np.hypot(*(kp[_KEYPOINT_INDEX[a]] - kp[_KEYPOINT_INDEX[b]]))) * mm_per_px


def evaluate_plax(
    propose_fn: ProposeFn,
    case_seeds: Sequence[int],
    *,
    small: bool = False,
    progress: bool = True,
    label: tuple[str, str] = ("plax-linear", "?"),
    truth_keypoints_fn: Callable[[np.ndarray, float], np.ndarray] | None = None,
    cine: bool = False,
    style: str | Sequence[str] = "classic",
) -> EvaluationReport:
    """Caliper accuracy on held-out PLAX cases (see the module docstring).

    Parameters
    ----------
    propose_fn : callable ``(clip, only=...) -> ClipProposals``
        Usually :func:`echomeasure.propose.propose` bound to a model version.
    case_seeds : sequence of int
        Held-out case seeds.
    small : bool
        Render small cases (as the smoke training does).
    progress : bool
        tqdm bar on stderr.
    label : (model, version)
        Recorded in the report.
    truth_keypoints_fn : callable ``(keypoints (8, 2) px, cm_per_px) -> keypoints``, optional
        Another caliper convention to measure against (e.g. a reviewer's habit); the true values
        are then the distances between the mapped keypoints.
    cine : bool
        Full-cine protocol: the whole cine through ``propose`` once (frame choice and temporal
        smoothing included) instead of one-frame clips at the true ED and ES frames.
    style : str or sequence of str
        Style family the cases are rendered in (:mod:`echomeasure.synthetic.styles`); several:
        every case seed in each of them, pooled (``n_cases`` and ``case_seeds`` of the report
        count each case once per family).

    Returns
    -------
    EvaluationReport
        With ``protocol`` "single-frame" or "full-cine", the robustness ``breakdown`` and the
        per-case records; full-cine adds ``frame_choice``.
    """
    scores = _PlaxScores(truth_keypoints_fn)
    cases: list[CaseResult] = []
    frame_rows: list[dict[str, float]] = []
    protocol = FULL_CINE if cine else SINGLE_FRAME
    families = _families(style)
    jobs = [(int(seed), family) for family in families for seed in case_seeds]
    for seed, family in tqdm(jobs, desc=f"evaluate {label[0]} ({protocol})", file=sys.stderr, disable=not progress,
                             dynamic_ncols=True, mininterval=2.0):
        params = plax_params_for_seed(seed, small=small, style=family)
        case = CaseResult(seed=seed, conditions=plax_conditions(params))
        cases.append(case)
        if cine:
            frame_rows.append(_score_plax_cine(propose_fn, params, family, case, scores))
        else:
            _score_plax_ed_es(propose_fn, params, family, case, scores)
    report = EvaluationReport(model=label[0], version=label[1], mode="2d", n_cases=len(jobs),
                              case_seeds=[seed for seed, _ in jobs], protocol=protocol, cases=cases)
    _summarise_plax(report, scores)
    if cine:
        report.frame_choice = _frame_choice_summary(frame_rows, scores.chosen_err_mm)
        timing = [CaseResult(c.seed, c.conditions, errors=dict(c.frame_error_ms)) for c in cases]
        report.frame_choice["breakdown_ms"] = robustness_breakdown(timing, ["ed", "es"], "ms")
    report.breakdown = robustness_breakdown(cases, list(report.measurements), "mm")
    return report


def _families(style: str | Sequence[str]) -> tuple[str, ...]:
    """One style family or several (every case seed is then evaluated in each, pooled)."""
    return (style,) if isinstance(style, str) else tuple(style)


def _score_plax_ed_es(propose_fn: ProposeFn, params: Any, style: str, case: CaseResult, scores: _PlaxScores) -> None:
    """Single-frame protocol: one-frame clips at the true ED and ES frames, each asked for its phase's measurements."""
    from echomeasure.synthetic.styles import render_styled_plax
    from echomeasure.training.datasets import _styled_ed_es

    ed, es = _styled_ed_es(params, style)
    rendered = render_styled_plax(params, style, frames=[ed, es], labels=False)
    mm_per_px = rendered.cm_per_px * 10.0
    for j, phase in enumerate(("ed", "es")):
        names = [n for n in catalog.LINEAR_2D if catalog.get(n).phase == phase]
        clip = _plax_clip(rendered.frames[j : j + 1], rendered.regions, rendered.frame_time_ms)
        by_name = {p.name: p for p in propose_fn(clip, only=names).measurements}
        truth_kp = scores.truth_points(rendered.keypoints[j], rendered.cm_per_px)
        for name in names:
            p = by_name.get(name)
            if p is None or p.value is None:
                scores.missing[name] += 1
                continue
            scores.add(case, p, scores.true_mm(rendered, name, truth_kp, mm_per_px), truth_kp, mm_per_px)


def _score_plax_cine(propose_fn: ProposeFn, params: Any, style: str, case: CaseResult,
                     scores: _PlaxScores) -> dict[str, float]:
    """Full-cine protocol: the whole cine through ``propose`` once; scores each measurement against
    the truth of its phase (and of the frame it chose); returns the case's frame-choice row."""
    from echomeasure.synthetic.styles import render_styled_plax

    rendered = render_styled_plax(params, style, labels=False)
    mm_per_px = rendered.cm_per_px * 10.0
    clip = _plax_clip(rendered.frames, rendered.regions, rendered.frame_time_ms)
    result = propose_fn(clip, only=list(catalog.LINEAR_2D))
    truth_frame = {"ed": rendered.ed_frame, "es": rendered.es_frame}
    row = _frame_choice_row(result, rendered, truth_frame, params.rr_s * 1000.0, case)
    by_name = {p.name: p for p in result.measurements}
    for name in catalog.LINEAR_2D:
        p = by_name.get(name)
        if p is None or p.value is None:
            scores.missing[name] += 1
            continue
        true_kp = scores.truth_points(rendered.keypoints[truth_frame[catalog.get(name).phase]], rendered.cm_per_px)
        chosen_kp = scores.truth_points(rendered.keypoints[p.frame], rendered.cm_per_px)
        scores.add(case, p, scores.true_mm(rendered, name, true_kp, mm_per_px), chosen_kp, mm_per_px)
        chosen_mm = scores.true_mm(rendered, name, chosen_kp, mm_per_px, frame=p.frame)
        scores.chosen_err_mm[name].append(float(p.value) * 10.0 - chosen_mm)
    return row


def _frame_choice_row(result: Any, rendered: Any, truth_frame: Mapping[str, int], rr_ms: float,
                      case: CaseResult) -> dict[str, float]:
    """The cycle-aware error of the chosen ED and ES frames (ms, frames, index); recorded in ``case`` too."""
    phases = [f["phase"] for f in rendered.truth["frames"]]
    frame_time_ms = float(rendered.frame_time_ms)
    row: dict[str, float] = {}
    for phase in ("ed", "es"):
        chosen = getattr(result, f"{phase}_frame", None)
        if chosen is None:  # a propose stand-in without frame fields: take its proposals' frame
            chosen = next((p.frame for p in result.measurements if catalog.get(p.name).phase == phase), None)
        if chosen is None:
            continue
        err_ms = _cycle_distance(phases[chosen], phases[truth_frame[phase]]) * rr_ms
        case.frame_error_ms[phase] = err_ms
        row[f"{phase}_ms"] = err_ms
        row[f"{phase}_frames"] = err_ms / frame_time_ms
        row[f"{phase}_index"] = abs(int(chosen) - int(truth_frame[phase]))
    return row


def _summarise_plax(report: EvaluationReport, scores: _PlaxScores) -> None:
    """Per-measurement summaries and the pooled figures (MAE, endpoints, confidence flag, gross misses)."""
    all_endpoints: list[float] = []
    all_conf: list[float] = []
    all_err: list[float] = []
    all_rel: list[float] = []
    rel_by_name: dict[str, list[float]] = {}
    for name in catalog.LINEAR_2D:
        if not scores.pred[name]:
            continue
        report.measurements[name] = summarise(name, "mm", scores.pred[name], scores.true[name], scores.conf[name],
                                              scores.endpoint_mm[name], flagged=scores.flagged[name],
                                              missing=scores.missing[name])
        all_endpoints += scores.endpoint_mm[name]
        all_conf += scores.conf[name]
        err = np.abs(np.asarray(scores.pred[name]) - np.asarray(scores.true[name]))
        all_err += list(err)
        rel_by_name[name] = list(err / np.asarray(scores.true[name]) * 100.0)
        all_rel += rel_by_name[name]
    report.flag_by_measurement = flag_by_measurement({n: scores.conf[n] for n in rel_by_name}, rel_by_name)
    maes = [m.mae for m in report.measurements.values()]
    report.overall = {
        "mean_mae_mm": float(np.mean(maes)) if maes else None,
        "within_1mm_pct": float(np.mean(np.asarray(all_endpoints) <= 1.0) * 100) if all_endpoints else None,
        "endpoint_mae_mm": float(np.mean(all_endpoints)) if all_endpoints else None,
        "spearman_conf_err": spearman(all_conf, all_err),
        **confidence_flag(all_conf, all_rel),
        **gross_miss_summary(report.measurements.values()),
    }


def _frame_choice_summary(rows: Sequence[Mapping[str, float]], chosen_err_mm: Mapping[str, list[float]]) -> dict:
    """ED/ES frame-choice figures of a full-cine evaluation and the MAE against the chosen frame."""
    out: dict[str, Any] = {}
    for phase in ("ed", "es"):
        ms = np.asarray([r[f"{phase}_ms"] for r in rows if f"{phase}_ms" in r])
        frames = np.asarray([r[f"{phase}_frames"] for r in rows if f"{phase}_frames" in r])
        index = np.asarray([r[f"{phase}_index"] for r in rows if f"{phase}_index" in r])
        if not len(ms):
            continue
        out[phase] = {
            "n": int(len(ms)),
            "error_ms_median": round(float(np.median(ms)), 2),
            "error_ms_mean": round(float(np.mean(ms)), 2),
            "error_ms_max": round(float(np.max(ms)), 2),
            "error_frames_median": round(float(np.median(frames)), 3),
            "error_frames_mean": round(float(np.mean(frames)), 3),
            "within_half_frame_pct": round(float(np.mean(frames < 0.5) * 100.0), 1),
            "within_1_frame_pct": round(float(np.mean(frames < 1.5) * 100.0), 1),
            "index_error_median": float(np.median(index)),
            "index_error_mean": round(float(np.mean(index)), 2),
        }
    out["chosen_frame_mae"] = {k: round(float(np.mean(np.abs(v))), 4) for k, v in chosen_err_mm.items() if v}
    out["chosen_frame_bias"] = {k: round(float(np.mean(v)), 4) for k, v in chosen_err_mm.items() if v}
    out["unit"] = "mm"
    return out


# --------------------------------------------------------------------------- Doppler


def evaluate_doppler(
    propose_fn: ProposeFn,
    case_seeds: Sequence[int],
    *,
    small: bool = False,
    progress: bool = True,
    label: tuple[str, str] = ("doppler-peaks", "?"),
    style: str = "classic",
) -> EvaluationReport:
    """Peak-velocity accuracy on held-out Doppler strips (see the module docstring).

    The robustness ``breakdown`` is in % of the true value (channels differ in scale).
    """
    pred: dict[str, list[float]] = {n: [] for n in catalog.DOPPLER_CHANNELS}
    true: dict[str, list[float]] = {n: [] for n in catalog.DOPPLER_CHANNELS}
    conf: dict[str, list[float]] = {n: [] for n in catalog.DOPPLER_CHANNELS}
    flagged: dict[str, list[bool]] = {n: [] for n in catalog.DOPPLER_CHANNELS}
    missing: dict[str, int] = {n: 0 for n in catalog.DOPPLER_CHANNELS}
    beats_found: list[float] = []
    cases: list[CaseResult] = []
    missed = 0
    for seed in tqdm(case_seeds, desc=f"evaluate {label[0]}", file=sys.stderr, disable=not progress,
                     dynamic_ncols=True, mininterval=2.0):
        strip = doppler_case(seed, small=small, style=style)
        case = CaseResult(seed=int(seed), conditions=doppler_conditions(strip.truth))
        cases.append(case)
        clip = Clip(frames=strip.image[None], frame_time_ms=None, regions=tuple(strip.regions),
                    source_kind="dicom", source_name="heldout")
        channels = catalog.DOPPLER_FLOWS[strip.flow]
        result = propose_fn(clip, only=list(channels))
        by_name = {p.name: p for p in result.measurements}
        for ch in channels:
            p = by_name.get(ch)
            if p is None or p.value is None:
                missed += 1
                missing[ch] += 1
                continue
            value_true = float(strip.truth["measurements"][ch]["value"])
            pred[ch].append(float(p.value))
            true[ch].append(value_true)
            conf[ch].append(float(p.confidence))
            flagged[ch].append(bool(getattr(p, "flagged", False)))
            beats_found.append(len(p.beat_points or p.points) / max(1, len(strip.peaks.get(ch, []))))
            case.errors[ch] = (float(p.value) - value_true) / value_true * 100.0
    report = EvaluationReport(model=label[0], version=label[1], mode="doppler", n_cases=len(case_seeds),
                              case_seeds=list(case_seeds), protocol="strip", cases=cases)
    all_rel: list[float] = []
    all_conf: list[float] = []
    rel_by_name: dict[str, list[float]] = {}
    for ch in catalog.DOPPLER_CHANNELS:
        if not pred[ch]:
            continue
        report.measurements[ch] = summarise(ch, "m/s", pred[ch], true[ch], conf[ch], flagged=flagged[ch],
                                            missing=missing[ch])
        rel_by_name[ch] = list(np.abs(np.asarray(pred[ch]) - np.asarray(true[ch])) / np.asarray(true[ch]) * 100)
        all_rel += rel_by_name[ch]
        all_conf += conf[ch]
    report.flag_by_measurement = flag_by_measurement({n: conf[n] for n in rel_by_name}, rel_by_name)
    report.overall = {
        "mean_error_pct": float(np.mean(all_rel)) if all_rel else None,
        "median_error_pct": float(np.median(all_rel)) if all_rel else None,
        "within_2pct_pct": float(np.mean(np.asarray(all_rel) <= 2.0) * 100) if all_rel else None,
        "beats_found_ratio": float(np.mean(beats_found)) if beats_found else None,
        "missed_measurements": float(missed),
        "spearman_conf_err": spearman(all_conf, all_rel),
        **confidence_flag(all_conf, all_rel),
        **gross_miss_summary(report.measurements.values()),
    }
    report.breakdown = robustness_breakdown(cases, list(report.measurements), "%")
    return report


# --------------------------------------------------------------------------- entry point


def evaluate(
    name: str,
    version: str | None = None,
    *,
    weights_dir: Any = None,
    n_cases: int = 40,
    small: bool = False,
    progress: bool = True,
    backend: str = "torch",
    cine: bool = False,
    propose_options: Mapping[str, Any] | None = None,
    style: str | Sequence[str] = "classic",
) -> EvaluationReport:
    """Evaluate a registered model on held-out synthetic cases through ``propose``.

    Parameters
    ----------
    name : {"plax-linear", "doppler-peaks"}
        Registry name.
    version : str, optional
        Registered version (default: the active one).
    weights_dir : path, optional
        Weights folder (default ``$ECHOMEASURE_WEIGHTS`` or ``<project>/weights``).
    n_cases : int
        Held-out cases (the first ``n_cases`` seeds of the held-out range, so every evaluation of
        every version sees the same cases).
    small : bool
        Small renders (smoke runs).
    progress : bool
        tqdm bar on stderr.
    backend : {"torch", "onnx", "auto"}
        Inference backend of ``propose`` (results agree to ~1e-5).
    cine : bool
        PLAX only: the full-cine protocol (whole cine, frame choice included) instead of the
        single-frame one the manifest's metrics come from.
    propose_options : mapping, optional
        Further keyword arguments of :func:`echomeasure.propose.propose` (default: its defaults).
    style : str or sequence of str
        Style family of the held-out cases (:mod:`echomeasure.synthetic.styles`): the model's own
        (classic) or one it never saw (:data:`~echomeasure.synthetic.styles.HELDOUT_STYLE`); PLAX:
        several families pooled, every case in each (how training calibrates the flag of a model
        trained on several families).

    Returns
    -------
    EvaluationReport
    """
    import time

    from echomeasure.models import registry
    from echomeasure.propose import propose

    entry = registry.get_entry(name, version, weights_dir)
    # single frames and strips are of a known view: the caliper evaluation leaves the view
    # classifier out (it decides from motion, which one frame does not have); a full cine keeps it
    options = {"check_view": bool(cine), **dict(propose_options or {})}
    fn = partial(propose, model_versions={name: entry.version}, weights_dir=weights_dir, backend=backend, **options)
    t0 = time.monotonic()
    mode = entry.mode
    seeds = heldout_case_seeds(n_cases, mode)
    if mode == "2d":
        report = evaluate_plax(fn, seeds, small=small, progress=progress, label=(name, entry.version), cine=cine,
                               style=style)
    else:
        if cine:
            raise ValueError("cine=True applies to the PLAX model only (a Doppler strip is one image)")
        if not isinstance(style, str):
            raise ValueError("Doppler strips are evaluated in one style family at a time")
        report = evaluate_doppler(fn, seeds, small=small, progress=progress, label=(name, entry.version),
                                  style=style)
    report.wall_s = time.monotonic() - t0
    log.info("%s", report.table())
    return report


__all__ = [
    "CaseResult",
    "EvaluationReport",
    "breakdown_table",
    "condition_bins",
    "confidence_flag",
    "doppler_conditions",
    "evaluate",
    "evaluate_doppler",
    "evaluate_plax",
    "plax_conditions",
    "robustness_breakdown",
    "style_summary",
]
