"""Beats of a spectral Doppler strip: ECG R waves, which jet the strip shows, E/A pairing.

The heatmap model says roughly where each peak is and which channel it belongs to; this module
adds what a reader takes from the strip's timing.

ECG
    :func:`ecg_r_wave_columns` finds the R waves of the ECG trace drawn in the strip's waveform
    region (DICOM region with RegionSpatialFormat 4), as image columns of the spectral region
    (both regions share the sweep's time axis, mapped through their physical x calibration).
Which systolic jet (AV or TR)
    Both are recorded with CW below the baseline and look alike; timing tells them apart.
    Tricuspid regurgitation is holosystolic: it leaves the baseline with the QRS (isovolumic
    contraction already drives it); aortic ejection starts only after isovolumic contraction,
    some 50-90 ms after the QRS onset.  :func:`jet_onset_delays_s` measures, per beat, the time
    from the R wave to the jet's onset on the envelope trace; :func:`systolic_jet_flow` turns the
    median into "av", "tr" or None (no ECG).
Mitral E and A
    The model's A channel is the weakest: it fires on E, twice on one wave, or on noise.
    :func:`pair_mitral_peaks` keeps one E and at most one A per beat: an A must follow an E by
    at least :data:`MIN_E_TO_A_S` and precede the next beat's E; with an ECG the A must also lie
    in the late-diastolic window before an R wave (atrial contraction follows the P wave); among
    several candidates the most confident wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from echomeasure.ingest.clip import SPATIAL_WAVEFORM, UNIT_S, Region

#: A peak closer than this (s) to a stronger one of the same channel is the same wave.
SAME_WAVE_S = 0.06
#: Shortest interval (s) from an E peak to the A peak of the same beat.
MIN_E_TO_A_S = 0.10
#: Late-diastolic window (s, relative to the R wave) where the A peak lies when an ECG is present:
#: atrial contraction follows the P wave, its peak some 0.1 s before the QRS.
A_WINDOW_BEFORE_R_S = (-0.22, 0.04)
#: Onset delay (s, R wave to jet onset) below which a systolic CW jet reads as TR, above as AV:
#: midway between the latest TR (0.046 s) and the earliest AV (0.068 s) median delay on the
#: tuning strips (held-out seeds 9 050 040-079).
TR_AV_ONSET_SPLIT_S = 0.057
#: Fraction of a beat's peak distance at which the jet counts as started.
ONSET_FRACTION = 0.15


@dataclass(frozen=True)
class BeatPeak:
    """One proposed per-beat peak in image pixels, with the model's confidence."""

    x: float
    y: float
    confidence: float
    on_envelope: bool = True  #: snapped onto a local maximum of the envelope edge


def seconds_per_column(region: Region | None) -> float | None:
    """Seconds per pixel column of a region with a time axis, else None."""
    if region is not None and region.units_x == UNIT_S and region.delta_x:
        return abs(float(region.delta_x))
    return None


def _column_time_s(region: Region, x: np.ndarray | float) -> np.ndarray:
    return (np.asarray(x, dtype=np.float64) - region.x0 - (region.ref_x0 or 0)) * region.delta_x + region.ref_phys_x


def ecg_region(regions: Sequence[Region]) -> Region | None:
    """The ECG waveform region (RegionSpatialFormat 4 with a time axis), if the strip has one."""
    return next((r for r in regions if r.spatial_format == SPATIAL_WAVEFORM and seconds_per_column(r)), None)


def ecg_r_wave_columns(image_rgb: np.ndarray, ecg: Region, spectral: Region) -> np.ndarray:
    """R waves of the ECG trace, as image columns on the spectral region's time axis.

    The trace is whatever stands out of the dark waveform background; its height per column is
    its topmost pixel.  R waves are the tall narrow maxima: above half way from the median
    height to the highest point, at least 0.25 s apart.

    Returns
    -------
    numpy.ndarray
        Sorted float columns (empty when no trace or no clear R wave is found).
    """
    box = image_rgb[ecg.y0 : ecg.y1 + 1, ecg.x0 : ecg.x1 + 1].max(axis=2).astype(np.float32)
    if box.size == 0:
        return np.zeros(0)
    lit = box > np.median(box) + 40.0
    has = lit.any(axis=0)
    if has.mean() < 0.5:
        return np.zeros(0)
    height = np.where(has, box.shape[0] - lit.argmax(axis=0), np.nan)
    valid = np.flatnonzero(has)
    height = np.interp(np.arange(height.size), valid, height[valid])
    level, top = float(np.median(height)), float(height.max())
    if top - level < 4.0:
        return np.zeros(0)
    spacing = max(1, int(round(0.25 / seconds_per_column(ecg))))  # type: ignore[operator]
    remaining = np.where(height >= level + 0.5 * (top - level), height, -np.inf)
    cols: list[float] = []
    while np.isfinite(remaining).any():
        c = int(np.argmax(remaining))
        # centre of the R wave's plateau (a thick, anti-aliased line is flat at its top)
        same = np.flatnonzero(height[max(0, c - 3) : c + 4] >= height[c] - 0.5) + max(0, c - 3)
        cols.append(float(same.mean()))
        remaining[max(0, c - spacing) : c + spacing + 1] = -np.inf
    t = _column_time_s(ecg, np.asarray(sorted(cols)) + ecg.x0)
    return np.sort((t - spectral.ref_phys_x) / spectral.delta_x + spectral.x0 + (spectral.ref_x0 or 0))


def jet_onset_delays_s(edge_px: np.ndarray, region: Region, r_columns: np.ndarray) -> list[float]:
    """Per beat: seconds from the R wave to the onset of the jet on one side of the baseline.

    Parameters
    ----------
    edge_px
        Envelope trace of the jet's side (:attr:`EnvelopeTrace.edge_px`, one value per column).
    region
        The spectral region (its time axis).
    r_columns
        R waves as image columns (:func:`ecg_r_wave_columns`).

    Returns
    -------
    list of float
        One delay per beat with a complete jet on the strip (may be negative: a jet that starts
        before the R wave).
    """
    dt = seconds_per_column(region)
    if dt is None or r_columns.size == 0:
        return []
    delays: list[float] = []
    r_rel = np.asarray(r_columns, dtype=np.float64) - region.x0
    for i, r in enumerate(r_rel):
        # from 0.1 s before this R wave to the next one (at most 0.6 s on)
        nxt = r_rel[i + 1] if i + 1 < r_rel.size else np.inf
        lo, hi = int(round(r - 0.1 / dt)), int(round(min(nxt, r + 0.6 / dt)))
        if lo < 0 or hi > edge_px.size - 1:
            continue  # the beat runs off the strip: its onset may be hidden
        seg = edge_px[lo : hi + 1]
        peak = float(seg.max())
        if peak <= 0:
            continue
        # walk back from the beat's maximum to where the jet rose above ONSET_FRACTION of it
        start = int(np.argmax(seg))
        while start > 0 and seg[start - 1] >= ONSET_FRACTION * peak:
            start -= 1
        if start == 0:
            continue  # still high 0.1 s before the R wave: not a jet that starts in this beat
        delays.append((lo + start - r) * dt)
    return delays


def systolic_jet_flow(delays_s: Sequence[float]) -> str | None:
    """"tr" (jet starts with the QRS), "av" (starts later) or None (no beat timed).

    Close to the split the timing still decides: the model's AV and TR scores carry no flow
    information of their own (the jets look alike; without an ECG it picks right about half the
    time), and on the tuning strips deciding by timing alone changed no choice.
    """
    if not delays_s:
        return None
    return "tr" if float(np.median(delays_s)) < TR_AV_ONSET_SPLIT_S else "av"


def one_per_wave(
    peaks: Sequence[BeatPeak], seconds_per_px: float | None, same_wave_s: float = SAME_WAVE_S
) -> list[BeatPeak]:
    """Drop peaks closer than ``same_wave_s`` to a more confident one; the rest sorted by x."""
    gap = same_wave_s / seconds_per_px if seconds_per_px else 4.0
    kept: list[BeatPeak] = []
    for p in sorted(peaks, key=lambda p: -p.confidence):
        if all(abs(p.x - q.x) >= gap for q in kept):
            kept.append(p)
    return sorted(kept, key=lambda p: p.x)


def prefer_on_envelope(peaks: Sequence[BeatPeak]) -> list[BeatPeak]:
    """The peaks read on the envelope when there are any, else all of them.

    A peak the envelope snap could not place (no local maximum of the edge nearby: a wave fused
    with its neighbour, cut by the sweep's start or end, or a model point on the wrong wave)
    keeps the model's coarse point; beats read on the envelope measure better.
    """
    on = [p for p in peaks if p.on_envelope]
    return on if on else list(peaks)


def pair_mitral_peaks(
    e_peaks: Sequence[BeatPeak],
    a_peaks: Sequence[BeatPeak],
    *,
    seconds_per_px: float | None,
    r_columns: np.ndarray | None = None,
) -> tuple[list[BeatPeak], list[BeatPeak]]:
    """One E and at most one A per beat (see the module docstring).

    Parameters
    ----------
    e_peaks, a_peaks
        Snapped peaks of the E and A channels, image pixels.
    seconds_per_px
        Time axis of the strip (None: no timing rules beyond the order E, A, E).
    r_columns
        R waves as image columns (:func:`ecg_r_wave_columns`), or None / empty without an ECG.

    Returns
    -------
    (E peaks, A peaks)
        Sorted by x.  With an ECG and a time axis, every peak of either channel is labelled by
        its timing: A when it lies in the late-diastolic window before an R wave
        (:data:`A_WINDOW_BEFORE_R_S`), E otherwise (the model's channel is the weak part on
        strips where E and A look alike).  Then an A is dropped when it sits on an E wave
        (closer than :data:`MIN_E_TO_A_S`), and each beat (E to the next E) keeps its most
        confident A.
    """
    rs = np.asarray(r_columns, dtype=np.float64) if r_columns is not None else np.zeros(0)
    if rs.size and seconds_per_px:
        lo, hi = (w / seconds_per_px for w in A_WINDOW_BEFORE_R_S)
        if rs.size >= 2:
            # the beats just before the first and after the last R wave on the ECG
            rr = float(np.median(np.diff(np.sort(rs))))
            rs = np.concatenate([[rs.min() - rr], rs, [rs.max() + rr]])
        pooled = one_per_wave([*e_peaks, *a_peaks], seconds_per_px)
        late = [bool(np.any((p.x - rs >= lo) & (p.x - rs <= hi))) for p in pooled]
        es = [p for p, is_a in zip(pooled, late, strict=True) if not is_a]
        a_all = [p for p, is_a in zip(pooled, late, strict=True) if is_a]
    else:
        es = one_per_wave(e_peaks, seconds_per_px)
        a_all = one_per_wave(a_peaks, seconds_per_px)
    if not es:
        return es, a_all
    min_gap = MIN_E_TO_A_S / seconds_per_px if seconds_per_px else 4.0
    e_x = np.array([p.x for p in es])
    candidates: dict[int, list[BeatPeak]] = {}
    for a in a_all:
        if np.min(np.abs(e_x - a.x)) < min_gap:
            continue  # the A channel fired on an E wave
        # the beat: the last E before it (-1: an A at the start of the sweep, before any E)
        before = np.flatnonzero(e_x < a.x)
        candidates.setdefault(int(before[-1]) if before.size else -1, []).append(a)
    a_kept = [max(c, key=lambda p: p.confidence) for c in candidates.values()]
    return es, sorted(a_kept, key=lambda p: p.x)

#: Flows toward an apical transducer (positive velocities) and away from it.
FLOWS_TOWARD_TRANSDUCER: tuple[str, ...] = ("mv",)
FLOWS_AWAY_FROM_TRANSDUCER: tuple[str, ...] = ("av", "tr", "lvot")
#: One side of the baseline must hold this many times the other's spectral energy to decide.
SIDE_ENERGY_RATIO = 2.0


def spectrum_side(image_rgb: np.ndarray, region: Region, baseline: float) -> str | None:
    """"above" or "below": the side of the baseline holding the spectrum (None: no clear side).

    Energy is the summed brightness above the region's median grey on each side, so a faint
    confounding flow on the other side (a CW beam through the LVOT also catches mitral inflow)
    does not count as much as the measured jet.
    """
    grey = image_rgb[region.y0 : region.y1 + 1, region.x0 : region.x1 + 1].max(axis=2).astype(np.float32)
    excess = np.maximum(grey - float(np.median(grey)), 0.0)
    b = int(round(baseline)) - region.y0
    above, below = float(excess[: max(0, b - 1)].sum()), float(excess[b + 2 :].sum())
    if above > SIDE_ENERGY_RATIO * below:
        return "above"
    if below > SIDE_ENERGY_RATIO * above:
        return "below"
    return None


def velocity_sign_below_baseline(region: Region) -> int:
    """+1 when rows below the baseline are positive velocities (an inverted display: the region's
    PhysicalDeltaY is positive), else -1 (the usual display: toward the transducer is up)."""
    return 1 if region.delta_y > 0 else -1


def flow_direction(side: str | None, region: Region) -> str | None:
    """"toward" or "away" (from the transducer) for a spectrum on ``side`` of the baseline."""
    if side is None:
        return None
    positive = (side == "below") == (velocity_sign_below_baseline(region) > 0)
    return "toward" if positive else "away"


def choose_flow(
    flow_scores: dict[str, float], *, direction: str | None = None, jet_flow: str | None = None
) -> tuple[str, str]:
    """The flow a strip shows, from the model's scores and the strip's own evidence.

    Parameters
    ----------
    flow_scores
        Candidate flows (already restricted to the strip's PW/CW mode) -> model score.
    direction
        :func:`flow_direction`: mitral inflow flows toward the transducer, AV, TR and LVOT away.
    jet_flow
        :func:`systolic_jet_flow`: "av" or "tr" from the timing against the ECG.

    Returns
    -------
    (flow, reason)
        ``reason`` says what decided: ``"direction"``, ``"timing"`` or ``"model"``.
    """
    candidates = dict(flow_scores)
    reason = "model"
    if direction is not None:
        fits = FLOWS_TOWARD_TRANSDUCER if direction == "toward" else FLOWS_AWAY_FROM_TRANSDUCER
        kept = {f: s for f, s in candidates.items() if f in fits}
        if kept and len(kept) < len(candidates):
            candidates, reason = kept, "direction"
    # LVOT times like AV: timing alone cannot tell them apart, so it decides only without LVOT.
    if (jet_flow is not None and jet_flow in candidates and ({"av", "tr"} & set(candidates)) == {"av", "tr"}
            and "lvot" not in candidates):
        return jet_flow, "timing"
    return max(candidates, key=candidates.get), reason  # type: ignore[arg-type]

#: Channels of the two systolic CW jets below the baseline (AV ejection, TR), which look alike.
SYSTOLIC_JET_CHANNELS: tuple[str, ...] = ("av_vmax", "tr_vmax")
