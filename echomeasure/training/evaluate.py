"""Accuracy of a registered model on held-out synthetic cases, through the real ``propose`` path.

PLAX (``plax-linear``)
    For each held-out case (seeds from :data:`~echomeasure.training.datasets.HELDOUT_SEEDS`)
    the true end-diastolic and end-systolic frames are rendered and each is given to
    :func:`echomeasure.propose.propose` as a one-frame clip with the case's DICOM regions: the
    same crop, model, decoding and calibration as for a user's clip, with the frame choice taken
    out (ED/ES selection is judged separately by the end-to-end benchmark), so the figures are
    the caliper accuracy a sonographer reviewing that frame would see.  Reported per
    measurement: MAE and bias in mm, MAE in % of the true value, share of caliper endpoints
    within 1 mm of the truth, and the Spearman correlation between the proposal's confidence
    and its absolute error (negative: confidence ranks errors).
Doppler (``doppler-peaks``)
    Each held-out strip goes through ``propose`` with ``only`` = the channels of its flow (what
    the user states when measuring a trace); the proposed value (mean per-beat peak magnitude,
    m/s) is compared with the truth: error in m/s and %, beats found, and the confidence-error
    correlation.

:func:`evaluate` is what ``echomeasure train`` records in the manifest and what
``echomeasure bench`` calls.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
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


@dataclass
class EvaluationReport:
    """Held-out accuracy of one model version."""

    model: str
    version: str
    mode: str
    n_cases: int
    case_seeds: list[int]
    measurements: dict[str, MeasurementAccuracy] = field(default_factory=dict)
    overall: dict[str, float | None] = field(default_factory=dict)
    wall_s: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready form (per-measurement dicts plus overall figures)."""
        return {
            "model": self.model, "version": self.version, "mode": self.mode, "n_cases": self.n_cases,
            "case_seeds": [self.case_seeds[0], self.case_seeds[-1]] if self.case_seeds else [],
            "measurements": {k: v.to_dict() for k, v in self.measurements.items()},
            "overall": self.overall, "wall_s": round(self.wall_s, 1),
        }

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
                out[k] = round(float(v), 4)
        return out

    def table(self) -> str:
        """A plain-text table for logs and the CLI."""
        rows = [f"{self.model} {self.version}: {self.n_cases} held-out cases"]
        for m in self.measurements.values():
            within = "" if m.within_1mm_pct is None else f"  within 1 mm {m.within_1mm_pct:5.1f}%"
            rho = "" if m.spearman_conf_err is None else f"  rho(conf, err) {m.spearman_conf_err:+.2f}"
            rows.append(f"  {m.name:12s} MAE {m.mae:7.3f} {m.unit:3s} ({m.mape_pct:5.1f}%)  bias {m.bias:+7.3f}"
                        f"{within}{rho}  n={m.n}")
        rows.append("  overall " + ", ".join(f"{k}={v:.3g}" for k, v in self.overall.items() if v is not None))
        return "\n".join(rows)


# --------------------------------------------------------------------------- PLAX


def _plax_clip(frames: np.ndarray, regions, frame_time_ms: float | None) -> Clip:
    return Clip(frames=np.ascontiguousarray(frames), frame_time_ms=frame_time_ms, regions=tuple(regions),
                source_kind="dicom", source_name="heldout")


def evaluate_plax(
    propose_fn: ProposeFn,
    case_seeds: Sequence[int],
    *,
    small: bool = False,
    progress: bool = True,
    label: tuple[str, str] = ("plax-linear", "?"),
    truth_keypoints_fn: Callable[[np.ndarray, float], np.ndarray] | None = None,
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
    """
    from echomeasure.synthetic import render_plax
    from echomeasure.synthetic.plax import ed_es_frames

    idx = {k: i for i, k in enumerate(catalog.KEYPOINTS_2D)}
    pred: dict[str, list[float]] = {n: [] for n in catalog.LINEAR_2D}
    true: dict[str, list[float]] = {n: [] for n in catalog.LINEAR_2D}
    conf: dict[str, list[float]] = {n: [] for n in catalog.LINEAR_2D}
    endpoint_mm: dict[str, list[float]] = {n: [] for n in catalog.LINEAR_2D}
    for seed in tqdm(case_seeds, desc=f"evaluate {label[0]}", file=sys.stderr, disable=not progress,
                     dynamic_ncols=True, mininterval=2.0):
        params = plax_params_for_seed(seed, small=small)
        ed, es = ed_es_frames(params)
        cine = render_plax(params, frames=[ed, es], labels=False)
        mm_per_px = cine.cm_per_px * 10.0
        for j, phase in enumerate(("ed", "es")):
            names = [n for n in catalog.LINEAR_2D if catalog.get(n).phase == phase]
            clip = _plax_clip(cine.frames[j : j + 1], cine.regions, cine.frame_time_ms)
            result = propose_fn(clip, only=names)
            by_name = {p.name: p for p in result.measurements}
            truth_kp = cine.keypoints[j].astype(np.float64)
            if truth_keypoints_fn is not None:
                truth_kp = truth_keypoints_fn(truth_kp, cine.cm_per_px)
            for name in names:
                p = by_name.get(name)
                if p is None or p.value is None:
                    continue
                a, b = catalog.LINEAR_ENDPOINTS[name]
                pred[name].append(float(p.value) * 10.0)
                if truth_keypoints_fn is None:
                    true[name].append(float(cine.truth["measurements"][name]["value"]) * 10.0)
                else:
                    true[name].append(float(np.hypot(*(truth_kp[idx[a]] - truth_kp[idx[b]]))) * mm_per_px)
                conf[name].append(float(p.confidence))
                for point, kp in zip(p.points, (a, b)):
                    endpoint_mm[name].append(float(np.hypot(*(np.asarray(point) - truth_kp[idx[kp]]))) * mm_per_px)
    report = EvaluationReport(model=label[0], version=label[1], mode="2d", n_cases=len(case_seeds),
                              case_seeds=list(case_seeds))
    all_endpoints: list[float] = []
    all_conf: list[float] = []
    all_err: list[float] = []
    for name in catalog.LINEAR_2D:
        if not pred[name]:
            continue
        report.measurements[name] = summarise(name, "mm", pred[name], true[name], conf[name], endpoint_mm[name])
        all_endpoints += endpoint_mm[name]
        all_conf += conf[name]
        all_err += list(np.abs(np.asarray(pred[name]) - np.asarray(true[name])))
    maes = [m.mae for m in report.measurements.values()]
    report.overall = {
        "mean_mae_mm": float(np.mean(maes)) if maes else None,
        "within_1mm_pct": float(np.mean(np.asarray(all_endpoints) <= 1.0) * 100) if all_endpoints else None,
        "endpoint_mae_mm": float(np.mean(all_endpoints)) if all_endpoints else None,
        "spearman_conf_err": spearman(all_conf, all_err),
    }
    return report


# --------------------------------------------------------------------------- Doppler


def evaluate_doppler(
    propose_fn: ProposeFn,
    case_seeds: Sequence[int],
    *,
    small: bool = False,
    progress: bool = True,
    label: tuple[str, str] = ("doppler-peaks", "?"),
) -> EvaluationReport:
    """Peak-velocity accuracy on held-out Doppler strips (see the module docstring)."""
    pred: dict[str, list[float]] = {n: [] for n in catalog.DOPPLER_CHANNELS}
    true: dict[str, list[float]] = {n: [] for n in catalog.DOPPLER_CHANNELS}
    conf: dict[str, list[float]] = {n: [] for n in catalog.DOPPLER_CHANNELS}
    beats_found: list[float] = []
    missed = 0
    for seed in tqdm(case_seeds, desc=f"evaluate {label[0]}", file=sys.stderr, disable=not progress,
                     dynamic_ncols=True, mininterval=2.0):
        strip = doppler_case(seed, small=small)
        clip = Clip(frames=strip.image[None], frame_time_ms=None, regions=tuple(strip.regions),
                    source_kind="dicom", source_name="heldout")
        channels = catalog.DOPPLER_FLOWS[strip.flow]
        result = propose_fn(clip, only=list(channels))
        by_name = {p.name: p for p in result.measurements}
        for ch in channels:
            p = by_name.get(ch)
            if p is None or p.value is None:
                missed += 1
                continue
            pred[ch].append(float(p.value))
            true[ch].append(float(strip.truth["measurements"][ch]["value"]))
            conf[ch].append(float(p.confidence))
            beats_found.append(len(p.points) / max(1, len(strip.peaks.get(ch, []))))
    report = EvaluationReport(model=label[0], version=label[1], mode="doppler", n_cases=len(case_seeds),
                              case_seeds=list(case_seeds))
    all_rel: list[float] = []
    all_conf: list[float] = []
    for ch in catalog.DOPPLER_CHANNELS:
        if not pred[ch]:
            continue
        report.measurements[ch] = summarise(ch, "m/s", pred[ch], true[ch], conf[ch])
        rel = np.abs(np.asarray(pred[ch]) - np.asarray(true[ch])) / np.asarray(true[ch]) * 100
        all_rel += list(rel)
        all_conf += conf[ch]
    report.overall = {
        "mean_error_pct": float(np.mean(all_rel)) if all_rel else None,
        "median_error_pct": float(np.median(all_rel)) if all_rel else None,
        "within_2pct_pct": float(np.mean(np.asarray(all_rel) <= 2.0) * 100) if all_rel else None,
        "beats_found_ratio": float(np.mean(beats_found)) if beats_found else None,
        "missed_measurements": float(missed),
        "spearman_conf_err": spearman(all_conf, all_rel),
    }
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

    Returns
    -------
    EvaluationReport
    """
    import time

    from echomeasure.models import registry
    from echomeasure.propose import propose

    entry = registry.get_entry(name, version, weights_dir)
    fn = partial(propose, model_versions={name: entry.version}, weights_dir=weights_dir, backend=backend)
    t0 = time.monotonic()
    mode = entry.mode
    seeds = heldout_case_seeds(n_cases, mode)
    if mode == "2d":
        report = evaluate_plax(fn, seeds, small=small, progress=progress, label=(name, entry.version))
    else:
        report = evaluate_doppler(fn, seeds, small=small, progress=progress, label=(name, entry.version))
    report.wall_s = time.monotonic() - t0
    log.info("%s", report.table())
    return report


__all__ = ["EvaluationReport", "evaluate", "evaluate_doppler", "evaluate_plax"]
