"""The Doppler stage: peak velocities of one spectral strip.

The strip -> ``doppler-peaks`` heatmaps -> per-beat peaks per channel -> among the flows of the
region's mode (PW: LVOT, mitral inflow; CW: AV, TR), the one the strip shows: the side of the
baseline its spectrum is on, read as toward or away from the transducer (mitral inflow toward;
an inverted display flips the sides), for AV vs TR the jet's onset against the
ECG's R waves, else the most confident channels (or the one ``only`` names) -> each peak snapped
onto the envelope's outer edge (:mod:`echomeasure.propose.envelope`) -> one peak per wave; AV/TR
beats from either jet channel; mitral E and A paired per beat
(:mod:`echomeasure.propose.doppler_beats`) -> per-beat velocities -> Vmax as the mean per-beat
magnitude; ``mv_ea`` derived from E and A.  A single-wave flow the user names whose beats the
model does not find is read from the envelope alone, always flagged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from echomeasure import catalog
from echomeasure.errors import MeasurementError
from echomeasure.ingest.clip import UNIT_S, Clip
from echomeasure.propose import flags
from echomeasure.propose.types import Point, Proposal
from echomeasure.propose.values import physical_value, plausibility

if TYPE_CHECKING:
    from echomeasure.propose.engine import Engine, Progress

log = logging.getLogger(__name__)

#: Shortest plausible interval between two beats (HR 200/min), for Doppler peak NMS.
MIN_BEAT_INTERVAL_S = 0.30
#: Single-wave Doppler channels read from the envelope alone when named and the model finds no beat.
ENVELOPE_ONLY_CHANNELS: tuple[str, ...] = ("av_vmax", "tr_vmax", "lvot_vmax")
#: Confidence of a proposal the reviewer must check whatever the model thought (always flagged:
#: :data:`echomeasure.propose.flags.DOUBTFUL_CONFIDENCE`): a value read from the envelope alone, a
#: jet whose flow (AV or TR) nothing but the model decided, a peak cut off by the velocity scale.
DOUBTFUL_CONFIDENCE = flags.DOUBTFUL_CONFIDENCE
#: Confidence of a value read from the envelope alone.
ENVELOPE_ONLY_CONFIDENCE = DOUBTFUL_CONFIDENCE
#: A beat's peak this close (rows) to the far edge of its side of the strip is cut off by the scale.
SCALE_EDGE_PX = 1.0
#: Beats read from the envelope alone further than this fraction from their median are dropped.
ENVELOPE_ONLY_SPREAD = 0.15
#: How far along the time axis a Doppler peak may move when snapped to the envelope edge.
ENVELOPE_SEARCH_S = 0.06
#: Doppler mode each flow is measured with (ASE): AV and TR peak velocities by continuous wave,
#: LVOT velocity and mitral inflow by pulsed wave.
FLOW_DOPPLER_MODE: dict[str, str] = {"av": "cw", "tr": "cw", "lvot": "pw", "mv": "pw"}
# RegionDataType (0018,6014): 3 PW spectral Doppler, 4 CW spectral Doppler
DOPPLER_MODE_OF_DATA_TYPE: dict[int, str] = {3: "pw", 4: "cw"}



def spectral_region(clip: Clip) -> Any:
    """The spectral Region the strip is measured in, or None.

    The one rule :func:`echomeasure.ingest.calibration.spectral_region` (PW/CW, usable velocity
    scale, the largest box), which also gives every beat's value, so the baseline, envelope and
    scale edge are read in the region whose scale the values use.  Without a usable velocity
    scale (values stay in pixels): the region of the box the model looks at (:func:`box_doppler`).
    """
    from echomeasure.errors import CalibrationError
    from echomeasure.ingest.calibration import spectral_region as measuring_region
    from echomeasure.models.preprocess import box_doppler

    try:
        return measuring_region(clip.regions)
    except CalibrationError:
        pass
    box = box_doppler(clip)
    return next(
        (r for r in clip.regions if r.is_spectral and (r.x0, r.y0, r.x1, r.y1) == box.as_tuple()),
        None,
    )


def _min_spacing_model_px(clip: Clip, transform: Any) -> float:
    """Shortest beat interval in model pixels along x, from the spectral region's time axis."""
    region = spectral_region(clip)
    sx, _ = transform.scale_xy
    if region is not None and region.units_x == UNIT_S and region.delta_x:
        return MIN_BEAT_INTERVAL_S / abs(region.delta_x) / sx
    return transform.input_size[1] / 8.0  # no time axis: assume at most ~8 beats on the strip


def _snap_dx_px(region: Any) -> int:
    """Columns searched on each side when snapping to the envelope: 60 ms of the time axis."""
    if region is not None and region.units_x == UNIT_S and region.delta_x:
        return max(2, int(round(ENVELOPE_SEARCH_S / abs(region.delta_x))))
    return 8


def propose_doppler(
    clip: Clip,
    engine: Engine,
    only: tuple[str, ...] | None,
    *,
    per_frame: bool,
    progress: Progress | None,
    timings: dict[str, float],
    snap_to_envelope: bool = True,
    notices: list[str] | None = None,
) -> tuple[list[Proposal], int, list[dict]]:
    from echomeasure.models.decode import decode_doppler_peaks
    from echomeasure.models.preprocess import CropTransform
    from echomeasure.propose import doppler_beats
    from echomeasure.propose.envelope import EnvelopeTrace, baseline_row

    entry = engine.entry
    transform = CropTransform.for_clip(clip, entry.input_size, "doppler")
    # a scrolling acquisition ends on the complete sweep the sonographer froze
    frame = clip.n_frames - 1
    t0 = time.perf_counter()
    x = transform.apply_array(clip.frames[frame])
    t1 = time.perf_counter()
    logits = engine.runner(x)
    t2 = time.perf_counter()
    peaks = decode_doppler_peaks(
        logits[0], min_spacing_px=_min_spacing_model_px(clip, transform), sigma_px=engine.sigma_px,
        max_shift_px=engine.max_shift_px,
    )
    t3 = time.perf_counter()
    timings.update(preprocess=t1 - t0, inference=t2 - t1, decode=t3 - t2)
    if progress is not None:
        progress(1, 1)
    by_channel = dict(zip(entry.channels, peaks, strict=True))
    region = spectral_region(clip)
    n_spectral = sum(r.is_spectral for r in clip.regions)
    if n_spectral > 1 and notices is not None:
        notices.append(f"the image has {n_spectral} spectral Doppler regions; only the largest was measured: "
                       "measure the others by hand")
    dx_px = _snap_dx_px(region)
    traces: dict[int, EnvelopeTrace] = {}

    def trace_on(sign: int) -> EnvelopeTrace:
        # one envelope trace per side of the baseline (+1 below, -1 above), measured once
        if sign not in traces:
            traces[sign] = EnvelopeTrace.measure(clip.frames[frame], region, sign)
        return traces[sign]

    def trace_of(y: float) -> EnvelopeTrace:
        return trace_on(1 if y > baseline_row(region) else -1)

    image = clip.frames[frame]
    dt_px = doppler_beats.seconds_per_column(region)
    ecg = doppler_beats.ecg_region(clip.regions) if region is not None else None
    r_columns = doppler_beats.ecg_r_wave_columns(image, ecg, region) if ecg is not None else np.zeros(0)
    evidence: dict[str, Any] = {"r_waves": int(r_columns.size)}
    wanted_channels, flow_scores = _doppler_channels(only, entry, region, image, by_channel, r_columns, trace_on, evidence)
    missing = [c for c in wanted_channels if c not in by_channel]
    if missing:
        raise MeasurementError(f"model {entry.name} {entry.version} has no channel for {', '.join(missing)}")

    def beat_peaks(name: str) -> list[doppler_beats.BeatPeak]:
        pk = by_channel[name]
        if not pk:
            return []
        pts_img = _peaks_in_image(pk, transform)
        if not (snap_to_envelope and region is not None):
            return [doppler_beats.BeatPeak(float(x), float(y), float(p.confidence))
                    for (x, y), p in zip(pts_img, pk, strict=True)]
        out = []
        for (x, y), p in zip(pts_img, pk, strict=True):
            sx, sy, on = trace_of(y).snap_peak(x, y, max_dx_px=dx_px)
            out.append(doppler_beats.BeatPeak(sx, sy, float(p.confidence), on_envelope=on))
        return out

    snapped, separable = _beats_per_channel(wanted_channels, by_channel, beat_peaks, dt_px, r_columns, evidence)
    if only and snap_to_envelope and region is not None:
        read = _envelope_only_beats(snapped, region, image, trace_on, dt_px)
        if read:
            evidence["envelope_only"] = read
            if notices is not None:
                notices.append(f"{', '.join(read)}: the model found no peak on this strip; read from the spectral "
                               "envelope alone (low confidence): check it")
    proposals, values = _aggregate_beats(clip, engine, wanted_channels, snapped, frame, separable, only,
                                         region=region, notices=notices)
    if region is not None and notices is not None:
        from echomeasure.ingest.calibration import velocity_scale_problem

        problem = velocity_scale_problem(region)
        if problem and any(p.unit == "px" for p in proposals):
            notices.append(f"Doppler values are left in pixels: {problem}")
    if not only and evidence.get("against_direction"):
        proposals = [replace(p, confidence=min(p.confidence, DOUBTFUL_CONFIDENCE)) for p in proposals]
        if notices is not None and proposals:
            way = "toward" if evidence["direction"] == "toward" else "away from"
            notices.append(f"the spectrum flows {way} the transducer, which the flow of {', '.join(wanted_channels)} "
                           f"does not in the standard views: check which flow this is")
    elif _jet_undecided(only, wanted_channels, flow_scores, evidence):
        proposals = [replace(p, confidence=min(p.confidence, DOUBTFUL_CONFIDENCE))
                     if p.name in doppler_beats.SYSTOLIC_JET_CHANNELS else p for p in proposals]
        if notices is not None and proposals:
            why = "the strip has no ECG trace to time" if not r_columns.size else "the ECG could not time"
            notices.append(f"aortic jet or tricuspid regurgitation? {why} the jet's onset, so only the model chose: "
                           f"measured as {wanted_channels[0]}; check which flow this is (or name it: av_vmax, tr_vmax)")
    ratio = _mitral_ratio(values, frame, engine) if (only is None or "mv_ea" in only) else None
    if ratio is not None:
        proposals.append(ratio)

    frames = [_doppler_frame_record(frame, flow_scores, evidence, by_channel, transform)] if per_frame else []
    return proposals, frame, frames


def _jet_undecided(only: tuple[str, ...] | None, wanted: list[str], flow_scores: dict[str, float],
                   evidence: dict[str, Any]) -> bool:
    """True when the strip was measured as AV or TR and only the model's scores chose between them.

    The two CW jets look alike (:func:`doppler_beats.systolic_jet_flow`): without the ECG timing
    the model picks the right one about half the time.
    """
    from echomeasure.propose import doppler_beats

    return (not only and bool(set(wanted) & set(doppler_beats.SYSTOLIC_JET_CHANNELS))
            and {"av", "tr"} <= set(flow_scores) and evidence.get("decided_by") != "timing")


def _cut_by_scale(points: tuple[Point, ...], region: Any) -> int:
    """How many beat peaks lie on the far edge of their side of the strip (aliasing, a scale too small)."""
    from echomeasure.propose.envelope import baseline_row

    if region is None:
        return 0
    base = baseline_row(region)
    return sum(1 for _, y in points
               if (y > base and y >= region.y1 - SCALE_EDGE_PX) or (y < base and y <= region.y0 + SCALE_EDGE_PX))


def _envelope_only_beats(snapped: dict[str, list[Any]], region: Any, image: np.ndarray,
                         trace_on: Callable[[int], Any], dt_px: float | None) -> list[str]:
    """Beats of a single-wave channel the user named that the model did not find, read from the envelope.

    A strip unlike the model's training data can leave its heatmaps empty although the envelope
    is plain.  The user said which flow it is (``only``), so each wave's peak is read on the side
    of the baseline the spectrum is on (:meth:`EnvelopeTrace.wave_peaks`, waves at least
    :data:`MIN_BEAT_INTERVAL_S` apart); beats more than :data:`ENVELOPE_ONLY_SPREAD` from their
    median are dropped (a noise spike, a wave cut short).  Their confidence is
    :data:`ENVELOPE_ONLY_CONFIDENCE`, so the value is always flagged.  Returns the channels read.
    """
    from echomeasure.propose import doppler_beats
    from echomeasure.propose.envelope import baseline_row

    empty = [n for n in ENVELOPE_ONLY_CHANNELS if n in snapped and not snapped[n]]
    if not empty:
        return []
    base = baseline_row(region)
    trace = trace_on(-1 if doppler_beats.spectrum_side(image, region, base) == "above" else 1)
    waves = trace.wave_peaks(MIN_BEAT_INTERVAL_S / dt_px if dt_px else 20.0)
    if not waves:
        return []
    median = float(np.median([d for _, d in waves]))
    beats = [doppler_beats.BeatPeak(x, base + trace.sign * d, ENVELOPE_ONLY_CONFIDENCE)
             for x, d in waves if abs(d - median) <= ENVELOPE_ONLY_SPREAD * median]
    for name in empty:
        snapped[name] = beats
    return empty


def _peaks_in_image(peaks: list[Any], transform: Any) -> np.ndarray:
    """(P, 2) image pixels of decoded peaks (model-input pixels)."""
    return transform.to_image(np.array([[p.x, p.y] for p in peaks]).reshape(-1, 2))


def _doppler_frame_record(
    frame: int, flow_scores: dict[str, float], evidence: dict[str, Any], by_channel: dict[str, list[Any]], transform: Any
) -> dict:
    """The ``--per-frame`` record of a strip: flow scores, the evidence and every decoded peak."""
    return {
        "frame": frame,
        "flow_scores": {k: round(v, 4) for k, v in flow_scores.items()},
        "flow_evidence": evidence,
        "peaks": {
            ch: [
                {"point": [round(float(x), 2), round(float(y), 2)], "confidence": round(p.confidence, 4)}
                for p, (x, y) in zip(pk, _peaks_in_image(pk, transform), strict=True)
            ]
            for ch, pk in by_channel.items()
        },
    }


def _beats_per_channel(
    wanted_channels: list[str],
    by_channel: dict[str, list[Any]],
    beat_peaks: Callable[[str], list[Any]],
    dt_px: float | None,
    r_columns: np.ndarray,
    evidence: dict[str, Any],
) -> tuple[dict[str, list[Any]], float]:
    """One peak per beat for each channel, and how separable the mitral A waves were (1 otherwise)."""
    from echomeasure.propose import doppler_beats

    snapped: dict[str, list[doppler_beats.BeatPeak]] = {}
    for name in wanted_channels:
        if name in doppler_beats.SYSTOLIC_JET_CHANNELS:
            # AV and TR jets look alike and the model may give a beat to either channel: the
            # peaks of both are the jet's beats, so naming one (--only av_vmax) measures the
            # jet whatever the model thought it was
            both = [c for c in doppler_beats.SYSTOLIC_JET_CHANNELS if c in by_channel]
            merged = [bp for c in both for bp in beat_peaks(c)]
            snapped[name] = doppler_beats.one_per_wave(merged, dt_px, MIN_BEAT_INTERVAL_S)
        else:
            snapped[name] = doppler_beats.one_per_wave(beat_peaks(name), dt_px)
    for name, beats in snapped.items():
        # beats read on the envelope outvote the model's own (coarse) points
        snapped[name] = doppler_beats.prefer_on_envelope(beats)
    separable = 1.0
    if "mv_e" in snapped and "mv_a" in snapped:
        n_a = len(snapped["mv_a"])
        snapped["mv_e"], snapped["mv_a"] = doppler_beats.pair_mitral_peaks(
            snapped["mv_e"], snapped["mv_a"], seconds_per_px=dt_px, r_columns=r_columns
        )
        # beats whose A could not be told from E (or from noise) lower the A's confidence
        separable = min(1.0, len(snapped["mv_a"]) / max(1, len(snapped["mv_e"]))) if n_a else 0.0
        evidence["mitral_a_beats"] = f"{len(snapped['mv_a'])} of {len(snapped['mv_e'])} E beats"

    return snapped, separable


def _doppler_channels(
    only: tuple[str, ...] | None,
    entry: Any,
    region: Any,
    image: np.ndarray,
    by_channel: dict[str, list[Any]],
    r_columns: np.ndarray,
    trace_on: Callable[[int], Any],
    evidence: dict[str, Any],
) -> tuple[list[str], dict[str, float]]:
    """Which peak channels to measure: those asked for, else the flow the strip shows.

    The region says whether the strip is PW or CW; ASE acquires AV and TR Vmax with CW and LVOT
    and mitral inflow with PW, so only the flows of that mode compete; then the strip itself: the
    side of the baseline the spectrum is on, and (AV vs TR) the jet's onset against the ECG's R
    waves.  Returns the channels and the flow scores (empty when ``only`` names them).
    """
    from echomeasure.propose import doppler_beats
    from echomeasure.propose.envelope import baseline_row

    if only:
        wanted = [n for n in only if n in catalog.DOPPLER_CHANNELS]
        if "mv_ea" in only:
            wanted += [n for n in ("mv_e", "mv_a") if n not in wanted]
        return wanted, {}

    def channel_score(name: str) -> float:
        return max((p.confidence for p in by_channel.get(name) or []), default=0.0)

    mode = DOPPLER_MODE_OF_DATA_TYPE.get(region.data_type) if region is not None else None
    flow_scores = {
        flow: float(np.mean([channel_score(c) for c in chans]))
        for flow, chans in catalog.DOPPLER_FLOWS.items()
        if all(c in by_channel for c in chans) and (mode is None or FLOW_DOPPLER_MODE.get(flow) == mode)
    }
    if not flow_scores:
        raise MeasurementError(f"model {entry.name} {entry.version} has no complete Doppler flow channels")
    side = direction = jet_flow = None
    if region is not None:
        side = doppler_beats.spectrum_side(image, region, baseline_row(region))
        direction = doppler_beats.flow_direction(side, region)
        if {"av", "tr"} <= set(flow_scores) and r_columns.size:
            # AV and TR jets flow away from the transducer: below the baseline unless inverted
            away_sign = -doppler_beats.velocity_sign_below_baseline(region)
            delays = doppler_beats.jet_onset_delays_s(trace_on(away_sign).edge_px, region, r_columns)
            jet_flow = doppler_beats.systolic_jet_flow(delays)
            evidence["jet_onset_delay_s"] = round(float(np.median(delays)), 4) if delays else None
    best, reason = doppler_beats.choose_flow(flow_scores, direction=direction, jet_flow=jet_flow)
    evidence.update(side=side, direction=direction, jet_timing=jet_flow, decided_by=reason)
    if direction is not None and best not in (doppler_beats.FLOWS_TOWARD_TRANSDUCER if direction == "toward"
                                              else doppler_beats.FLOWS_AWAY_FROM_TRANSDUCER):
        # no flow of the strip's mode goes that way (a CW strip of mitral inflow or of aortic
        # regurgitation, both toward an apical transducer): the label is the model's guess
        evidence["against_direction"] = True
    log.info("Doppler flow %s by %s (scores %s, evidence %s)", best, reason,
             {k: round(v, 3) for k, v in flow_scores.items()}, evidence)
    return list(catalog.DOPPLER_FLOWS[best]), flow_scores


def _aggregate_beats(
    clip: Clip,
    engine: Engine,
    wanted_channels: list[str],
    snapped: dict[str, list[Any]],
    frame: int,
    separable: float,
    only: tuple[str, ...] | None,
    *,
    region: Any = None,
    notices: list[str] | None = None,
) -> tuple[list[Proposal], dict[str, Proposal]]:
    """One proposal per peak type: the mean over the strip's beats, shown on the closest beat.

    A peak on the far edge of the strip is cut off by the velocity scale (aliasing, or a scale set
    too low): its velocity is underestimated, so the proposal gets :data:`DOUBTFUL_CONFIDENCE`
    and a notice.
    """
    proposals: list[Proposal] = []
    values: dict[str, Proposal] = {}
    for name in wanted_channels:
        beats = snapped[name]
        if not beats:
            log.info("%s: no peak found on the strip", name)
            continue
        points = tuple((bp.x, bp.y) for bp in beats)
        per_beat = [physical_value(clip, name, (pt,)) for pt in points]
        maybe_mags = [abs(v[2]) if v[2] is not None else v[0] for v in per_beat]
        mags = [m for m in maybe_mags if m is not None]
        if len(mags) == len(maybe_mags):
            value: float | None = float(np.mean(mags))
            unit = per_beat[0][1]
            signed = float(np.mean([v[2] for v in per_beat if v[2] is not None])) if per_beat[0][2] is not None else None
        else:
            value, unit, signed = None, "px", None
        confidence = float(np.mean([bp.confidence for bp in beats]))
        cut = _cut_by_scale(points, region)
        if cut:
            confidence = min(confidence, DOUBTFUL_CONFIDENCE)
            if notices is not None and (only is None or name in only):
                notices.append(f"{name}: the spectrum reaches the edge of the velocity scale on {cut} of {len(points)} "
                               "beats (aliasing, or a scale set too low): the peak is cut off and the velocity "
                               "underestimated; re-acquire with a larger scale or a shifted baseline")
        # the marker shown for review: the beat closest to the averaged value (ties: most confident)
        if value is not None:
            shown = min(range(len(points)), key=lambda i: (abs(mags[i] - value), -beats[i].confidence))
        else:
            shown = max(range(len(points)), key=lambda i: beats[i].confidence)
        proposal = Proposal(
            name=name,
            frame=frame,
            points=(points[shown],),
            beat_points=points,
            value=value,
            unit=unit,
            confidence=plausibility(name, value, unit) * (confidence * separable if name == "mv_a" else confidence),
            model=engine.info,
            signed_value=signed,
        )
        values[name] = proposal
        if only is None or name in only:
            proposals.append(proposal)
    return proposals, values


def _mitral_ratio(values: dict[str, Proposal], frame: int, engine: Engine) -> Proposal | None:
    """The E/A ratio proposal from the E and A proposals (None without both)."""
    if "mv_e" not in values or "mv_a" not in values:
        return None
    e, a = values["mv_e"], values["mv_a"]
    # uncalibrated: the ratio of pixel heights above the baseline is not known either
    ratio = e.value / a.value if e.value is not None and a.value else None
    return Proposal(
        name="mv_ea",
        frame=frame,
        points=(),
        value=None if ratio is None else float(ratio),
        unit="ratio" if ratio is not None else "px",
        confidence=min(e.confidence, a.confidence),
        model=engine.info,
    )
