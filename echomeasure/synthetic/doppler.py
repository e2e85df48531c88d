"""Synthetic spectral Doppler strips (PW / CW) with exact per-beat peak truth.

Layout of a strip, top to bottom, like a real scanner screen: the fake patient banner, a small
2D image with the Doppler cursor, the spectral display (baseline, velocity scale with tick
labels, several beats), and the ECG on the same time axis.

The peak of a beat is the top of its spectral envelope: the velocity where the spectrum falls
to half its brightness (the edge a sonographer traces), at the time of the envelope's maximum.
The per-case value (e.g. ``av_vmax``) is the mean of the per-beat peak magnitudes of the beats
whose peak lies on the strip.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import cv2
import numpy as np

from echomeasure.catalog import DOPPLER_FLOWS
from echomeasure.ingest.clip import (
    SPATIAL_SPECTRAL,
    SPATIAL_WAVEFORM,
    UNIT_CM_S,
    UNIT_NONE,
    UNIT_S,
    Region,
)
from echomeasure.synthetic.overlays import FakeIdentity, draw_banner, draw_ecg, fake_identity, put_text
from echomeasure.synthetic.types import SyntheticDoppler

GENERATOR_VERSION = "5"
FLOWS: tuple[str, ...] = ("av", "mv", "lvot", "tr")  # order used when cycling flows over cases
FLOW_MODE: dict[str, str] = {"av": "cw", "tr": "cw", "lvot": "pw", "mv": "pw"}
PEAK_RANGES_M_S: dict[str, tuple[float, float]] = {
    "av_vmax": (1.0, 5.0),
    "tr_vmax": (1.5, 4.5),
    "lvot_vmax": (0.6, 1.6),
    "mv_e": (0.4, 1.4),
    "mv_a": (0.3, 1.2),
}
IMAGE_SIZES: tuple[tuple[int, int], ...] = ((600, 800), (768, 1024), (480, 640), (434, 636))


@dataclass(frozen=True)
class Wave:
    """One flow wave of one beat: onset time, duration, signed peak, where and how it peaks."""

    channel: str  # catalog Doppler channel, e.g. "av_vmax", "mv_e"; "" for a confounding flow
    onset_s: float
    duration_s: float
    peak_m_s: float  # signed: negative below the baseline (away from the transducer)
    peak_position: float  # fraction of the duration at which the envelope peaks
    sharpness: float  # beta-shape concentration (higher: narrower, more triangular)

    @property
    def peak_time_s(self) -> float:
        """Time of the envelope maximum (s from the start of the sweep)."""
        return self.onset_s + self.peak_position * self.duration_s

    def envelope_m_s(self, t_s: np.ndarray) -> np.ndarray:
        """Unsigned envelope magnitude at times ``t_s`` (0 outside the wave); max |peak| at peak_time."""
        tau = (np.asarray(t_s, dtype=np.float64) - self.onset_s) / self.duration_s
        inside = (tau > 0.0) & (tau < 1.0)
        p, k = self.peak_position, self.sharpness
        a, b = p * k, (1.0 - p) * k
        tc = np.clip(tau, 1e-9, 1 - 1e-9)
        shape = np.exp(a * np.log(tc / p) + b * np.log((1.0 - tc) / (1.0 - p)))
        return np.where(inside, abs(self.peak_m_s) * shape, 0.0)


@dataclass(frozen=True)
class DopplerParams:
    """Everything that defines one synthetic spectral Doppler strip."""

    flow: str
    mode: str  # "pw" | "cw"
    height_px: int
    width_px: int
    heart_rate_bpm: float
    systole_fraction: float
    beat_starts_s: tuple[float, ...]  # QRS times (may start before the sweep)
    beat_rr_s: tuple[float, ...]
    waves: tuple[Wave, ...]
    sweep_s: float
    baseline_frac: float  # baseline row as a fraction of the spectral region height
    scale_m_s: float  # velocity at the far end of the region from the baseline (display range)
    broadening_m_s: float
    intensity_db: float
    noise_db: float
    dynamic_range_db: float
    wall_filter_m_s: float
    tint: tuple[float, float, float]
    case_index: int = 0
    seed: int = 0
    noise_seed: int = 0

    @property
    def channels(self) -> tuple[str, ...]:
        """Doppler channels this flow produces (``catalog.DOPPLER_FLOWS``)."""
        return DOPPLER_FLOWS[self.flow]


def params_to_dict(params: DopplerParams) -> dict:
    """JSON-ready dict of the parameters."""
    return dataclasses.asdict(params)


def _nice_scale(v_m_s: float) -> float:
    for step in (0.5, 0.6, 0.8, 1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0):
        if step >= v_m_s:
            return step
    return math.ceil(v_m_s)


def _beat_waves(rng: np.random.Generator, flow: str, t: float, rr_i: float, hr: float, sf: float,
                nominal: dict[str, float], resp: float, faint_inflow: bool) -> list[Wave]:
    """The waves of the beat starting at ``t`` s (R-R ``rr_i`` s): one jet, or mitral E and A."""
    u = rng.uniform
    if flow in ("av", "lvot"):
        et = float(np.clip(0.42 - 0.0017 * hr, 0.2, 0.36)) * u(0.9, 1.08)
        p = u(0.28, 0.38) if flow == "lvot" else u(0.3, 0.5)
        waves = [Wave(f"{flow}_vmax", t + u(0.05, 0.09), et, -nominal[f"{flow}_vmax"] * resp, p, u(2.4, 4.0))]
        if flow == "av" and faint_inflow:
            e_on = t + sf * rr_i + u(0.06, 0.09)
            waves.append(Wave("", e_on, u(0.15, 0.2), u(0.4, 0.9), u(0.3, 0.4), u(2.6, 3.6)))
        return waves
    if flow == "tr":
        dur = rr_i * sf * u(1.05, 1.2)
        return [Wave("tr_vmax", t + u(0.02, 0.04), dur, -nominal["tr_vmax"] * resp, u(0.42, 0.55), u(2.2, 3.2))]
    e_on = t + sf * rr_i + u(0.06, 0.09)
    e_dur = u(0.15, 0.21)
    e = Wave("mv_e", e_on, e_dur, nominal["mv_e"] * resp, u(0.3, 0.4), u(2.6, 3.6))
    a_dur = u(0.10, 0.14)
    a_on = max(t + rr_i - 0.16 + u(-0.01, 0.01) - 0.0, e.peak_time_s + 0.06)
    a_dur = min(a_dur, t + rr_i + 0.04 - a_on) if a_on + a_dur > t + rr_i + 0.04 else a_dur
    a = Wave("mv_a", a_on, max(a_dur, 0.07), nominal["mv_a"] * resp * u(0.95, 1.05), u(0.4, 0.5), u(2.6, 3.6))
    return [e, a]


def sample_doppler_params(
    rng: np.random.Generator,
    flow: str | None = None,
    *,
    image_size: tuple[int, int] | None = None,
    case_index: int = 0,
    seed: int = 0,
) -> DopplerParams:
    """Draw one spectral Doppler case.

    Parameters
    ----------
    rng : numpy.random.Generator
        The only source of randomness.
    flow : {"av", "tr", "lvot", "mv"}, optional
        Which flow; drawn when None.
    image_size : (height, width), optional
        Fix the image size instead of drawing it.
    """
    u = rng.uniform
    if flow is None:
        flow = FLOWS[int(rng.integers(len(FLOWS)))]
    if flow not in DOPPLER_FLOWS:
        raise ValueError(f"unknown flow {flow!r}; known: {', '.join(DOPPLER_FLOWS)}")
    mode = FLOW_MODE[flow]
    h, w = image_size if image_size is not None else IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
    hr = u(50.0, 100.0) if flow == "mv" else u(50.0, 120.0)
    rr = 60.0 / hr
    sf = float(np.clip(0.33 + 0.0012 * (hr - 70.0) + u(-0.02, 0.02), 0.28, 0.42))
    sweep = rr * u(2.6, 4.6)
    nominal = {ch: u(*PEAK_RANGES_M_S[ch]) for ch in DOPPLER_FLOWS[flow]}
    starts, rrs, waves = [], [], []
    # a CW beam through the aortic valve also crosses the mitral inflow: often a faint E wave
    # shows above the baseline (not a measured channel: ``Wave.channel`` is empty)
    faint_inflow = flow == "av" and rng.random() < 0.5
    t = -u(0.0, rr)
    while t < sweep:
        rr_i = rr * (1.0 + float(np.clip(rng.normal(0.0, 0.03), -0.08, 0.08)))
        starts.append(t)
        rrs.append(rr_i)
        resp = 1.0 + u(-0.06, 0.06)
        waves += _beat_waves(rng, flow, t, rr_i, hr, sf, nominal, resp, faint_inflow)
        t += rr_i
    peak = max(abs(wv.peak_m_s) for wv in waves if wv.channel)
    below = flow != "mv"
    baseline = u(0.12, 0.25) if below else u(0.72, 0.86)
    scale = _nice_scale(peak / u(0.62, 0.85))
    # a confounding flow on the other side of the baseline stays inside its (shorter) range
    other_side = scale * baseline / (1.0 - baseline) if below else scale * (1.0 - baseline) / baseline
    waves = [
        w if w.channel else dataclasses.replace(w, peak_m_s=math.copysign(min(abs(w.peak_m_s), 0.75 * other_side), w.peak_m_s))
        for w in waves
    ]
    return DopplerParams(
        flow=flow,
        mode=mode,
        height_px=h,
        width_px=w,
        heart_rate_bpm=hr,
        systole_fraction=sf,
        beat_starts_s=tuple(starts),
        beat_rr_s=tuple(rrs),
        waves=tuple(waves),
        sweep_s=sweep,
        baseline_frac=baseline,
        scale_m_s=scale,
        broadening_m_s=u(0.008, 0.02) if mode == "pw" else u(0.015, 0.04),
        intensity_db=u(-14.0, -6.0),
        noise_db=u(-50.0, -40.0),
        dynamic_range_db=u(40.0, 50.0),
        wall_filter_m_s=u(0.04, 0.12),
        tint=(1.0, 1.0, 1.0) if rng.random() < 0.6 else (u(0.92, 1.0), u(0.9, 1.0), u(0.8, 0.95)),
        case_index=case_index,
        seed=seed,
        noise_seed=int(rng.integers(0, 2**63 - 1)),
    )


@dataclass(frozen=True)
class StripLayout:
    """Pixel boxes (inclusive x0, y0, x1, y1) of the strip's parts."""

    banner_px: int
    image_box: tuple[int, int, int, int]
    spectral_box: tuple[int, int, int, int]
    trace_x1: int  # last column with spectrum; the scale labels sit right of it
    baseline_row: int
    ecg_box: tuple[int, int, int, int]


def strip_layout(params: DopplerParams) -> StripLayout:
    """Where everything goes on the strip (deterministic from the parameters)."""
    h, w = params.height_px, params.width_px
    banner = int(np.clip(round(0.07 * h), 24, 64))
    img_h = int(round(0.3 * h))
    img_w = int(round(img_h * 1.3))
    ix0 = (w - img_w) // 2
    image_box = (ix0, banner + 4, ix0 + img_w - 1, banner + 4 + img_h - 1)
    ecg_h = int(round(0.07 * h))
    sy0 = image_box[3] + 8
    sy1 = h - ecg_h - 8
    sx0 = int(round(0.03 * w))
    sx1 = w - 1 - int(round(0.01 * w))
    trace_x1 = sx1 - int(round(0.07 * w))
    baseline = sy0 + int(round(params.baseline_frac * (sy1 - sy0)))
    return StripLayout(banner, image_box, (sx0, sy0, sx1, sy1), trace_x1, baseline, (sx0, sy1 + 4, trace_x1, h - 3))


def velocity_cm_s_per_px(params: DopplerParams, layout: StripLayout) -> float:
    """Signed PhysicalDeltaY of the spectral region (cm/s per row; negative: up is positive)."""
    sy0, sy1 = layout.spectral_box[1], layout.spectral_box[3]
    span_px = (layout.baseline_row - sy0) if params.flow == "mv" else (sy1 - layout.baseline_row)
    return -params.scale_m_s * 100.0 / span_px


def _envelope(params: DopplerParams, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Max envelope magnitude (m/s), its sign and its brightness (1, or faint for a confounder)."""
    mag = np.zeros_like(t_s)
    sign = np.zeros_like(t_s)
    bright = np.ones_like(t_s)
    for wv in params.waves:
        e = wv.envelope_m_s(t_s)
        better = e > mag
        mag = np.where(better, e, mag)
        sign = np.where(better, np.sign(wv.peak_m_s), sign)
        bright = np.where(better, 1.0 if wv.channel else 0.08, bright)
    return mag, sign, bright


def _phase_at(params: DopplerParams, t_s: np.ndarray) -> np.ndarray:
    starts = np.asarray(params.beat_starts_s)
    rrs = np.asarray(params.beat_rr_s)
    k = np.clip(np.searchsorted(starts, t_s, side="right") - 1, 0, len(starts) - 1)
    return (t_s - starts[k]) / rrs[k]


def _noisy_power(params: DopplerParams, rng: np.random.Generator, power: np.ndarray, v_rows: np.ndarray, dt: float,
                 ncols: int) -> np.ndarray:
    """The spectral power with speckle-like grain, FFT-window flicker, valve clicks and noise."""
    # speckle-like spectral noise (exponential power), slightly smeared in time
    grain: np.ndarray = rng.exponential(1.0, size=power.shape).astype(np.float32)
    grain = cv2.GaussianBlur(grain, (0, 0), sigmaX=0.7, sigmaY=0.6)
    # column-to-column gain flicker of the FFT windows
    grain = grain * (1.0 + 0.25 * rng.standard_normal((1, ncols))).clip(0.4, 1.8).astype(np.float32)
    noise = 10 ** (params.noise_db / 10.0) * rng.exponential(1.0, size=power.shape)
    # valve clicks: short vertical bright lines at wave onset and end
    clicks = np.zeros_like(power)
    for wv in params.waves:
        for tc in (wv.onset_s, wv.onset_s + wv.duration_s):
            c = int(round(tc / dt))
            if 0 <= c < ncols:
                reach = rng.uniform(0.06, 0.16) * params.scale_m_s
                lim = (np.abs(v_rows) < reach) & (np.abs(v_rows) > params.wall_filter_m_s)
                clicks[lim, c] = 0.25 * rng.uniform(0.2, 1.0)
    return (power * grain + clicks) * 10 ** (params.intensity_db / 10.0) + noise


def _strip_regions(tissue_region: Region, params: DopplerParams, lay: StripLayout, dt: float,
                   dy: float) -> tuple[Region, ...]:
    """The calibration regions of a strip: the small 2D image, the spectrum (s, cm/s) and the ECG."""
    sx0, sy0, sx1, sy1 = lay.spectral_box
    ex0, ey0, ex1, ey1 = lay.ecg_box
    return (
        tissue_region,
        Region(
            x0=sx0, y0=sy0, x1=sx1, y1=sy1,
            spatial_format=SPATIAL_SPECTRAL, data_type=3 if params.mode == "pw" else 4,
            units_x=UNIT_S, units_y=UNIT_CM_S, delta_x=dt, delta_y=dy,
            ref_x0=0, ref_y0=lay.baseline_row - sy0, ref_phys_x=0.0, ref_phys_y=0.0, flags=0,
        ),
        Region(
            x0=ex0, y0=ey0, x1=ex1, y1=ey1, spatial_format=SPATIAL_WAVEFORM, data_type=10,
            units_x=UNIT_S, units_y=UNIT_NONE, delta_x=dt, delta_y=0.0, ref_x0=0, ref_y0=0,
        ),
    )


def render_doppler(params: DopplerParams, rng: np.random.Generator | None = None) -> SyntheticDoppler:
    """Render a spectral Doppler strip and its truth.

    Parameters
    ----------
    params : DopplerParams
        From :func:`sample_doppler_params`.
    rng : numpy.random.Generator, optional
        Noise source; default ``default_rng(params.noise_seed)`` (deterministic).
    """
    rng = rng if rng is not None else np.random.default_rng(params.noise_seed)
    lay = strip_layout(params)
    h, w = params.height_px, params.width_px
    canvas = np.zeros((h, w, 3), dtype=np.uint8)
    identity = fake_identity(params.seed, params.case_index)
    draw_banner(canvas, identity, lay.banner_px)

    tissue_region = _draw_small_2d(canvas, params, lay, rng)

    sx0, sy0, sx1, sy1 = lay.spectral_box
    dy = velocity_cm_s_per_px(params, lay)  # cm/s per row
    ncols = lay.trace_x1 - sx0 + 1
    dt = params.sweep_s / (ncols - 1)
    t = np.arange(ncols) * dt
    rows = np.arange(sy0, sy1 + 1)
    v_rows = (rows - lay.baseline_row) * dy / 100.0  # signed m/s per row
    mag, sign, bright = _envelope(params, t)
    # a ragged envelope edge (the spectral estimate fluctuates column to column), never above the
    # true envelope and left intact around each peak, so the truth stays the maximum
    jag = np.abs(cv2.GaussianBlur(rng.standard_normal((1, ncols)).astype(np.float32), (0, 0), sigmaX=1.5)).ravel()
    keep = np.ones(ncols, dtype=bool)
    for wv in params.waves:
        c = wv.peak_time_s / dt
        keep[max(0, int(c) - 3) : int(c) + 5] = False
    mag = mag * (1.0 - rng.uniform(0.03, 0.08) * np.minimum(jag, 2.0) * keep)
    # spectral broadening beyond the envelope: a Gaussian fall-off (the envelope itself is the
    # top of the dense spectrum, where a sonographer puts the caliper)
    sigma = np.maximum(params.broadening_m_s * (0.6 + 0.4 * mag / max(params.scale_m_s, 1e-6)), 1.2 * abs(dy) / 100.0)
    vv = v_rows[:, None] * np.where(sign == 0, 1.0, sign)[None, :]  # velocity along the flow direction
    over = np.maximum(vv - mag[None, :], 0.0) / sigma[None, :]
    edge = np.exp(-over * over)
    on = (vv > 0) & (mag[None, :] > 0)
    rel = np.clip(vv / np.maximum(mag[None, :], 1e-6), 0.0, 1.0)
    if params.mode == "cw":
        body = 0.45 + 0.55 * rel**1.5
    else:  # PW: bright band under the envelope, clear spectral window near the baseline
        body = 0.12 + 0.88 * np.exp(-(((1.0 - rel) * mag[None, :]) / (0.18 + 0.25 * mag[None, :])) ** 2)
    wall = 1.0 - np.exp(-((np.abs(v_rows) / params.wall_filter_m_s) ** 2))
    power = np.where(on, body * edge, 0.0) * wall[:, None] * bright[None, :]
    total = _noisy_power(params, rng, power, v_rows, dt, ncols)
    db = 10.0 * np.log10(np.maximum(total, 1e-9))
    gray = np.clip((db + params.dynamic_range_db) / params.dynamic_range_db, 0.0, 1.0) * 255.0
    spec = np.zeros((sy1 - sy0 + 1, sx1 - sx0 + 1), dtype=np.float32)
    spec[:, :ncols] = gray
    tint = np.asarray(params.tint, dtype=np.float32)
    canvas[sy0 : sy1 + 1, sx0 : sx1 + 1] = (spec[..., None] * tint).astype(np.uint8)
    # baseline and velocity scale (tick labels in m/s) right of the trace
    cv2.line(canvas, (sx0, lay.baseline_row), (lay.trace_x1, lay.baseline_row), (150, 150, 150), 1)
    _draw_scale(canvas, params, lay, dy)
    # ECG on the same time axis
    ex0, ey0, ex1, ey1 = lay.ecg_box
    te = np.arange(ex1 - ex0 + 1) * dt
    draw_ecg(canvas, lay.ecg_box, _phase_at(params, te), params.systole_fraction)

    regions = _strip_regions(tissue_region, params, lay, dt, dy)
    peaks, values = _peaks(params, lay, dt, dy, ncols)
    truth = doppler_truth(params, lay, peaks, values, dt, dy, identity)
    return SyntheticDoppler(image=canvas, regions=regions, peaks=peaks, peak_values_m_s=values, flow=params.flow, truth=truth)


def _peaks(params: DopplerParams, lay: StripLayout, dt: float, dy: float, ncols: int) -> tuple[dict, dict]:
    peaks: dict[str, list[tuple[float, float]]] = {ch: [] for ch in params.channels}
    values: dict[str, list[float]] = {ch: [] for ch in params.channels}
    sx0 = lay.spectral_box[0]
    for wv in params.waves:
        if not wv.channel:
            continue
        x_rel = wv.peak_time_s / dt
        if not (4.0 <= x_rel <= ncols - 5.0):
            continue
        y = lay.baseline_row + wv.peak_m_s * 100.0 / dy
        peaks[wv.channel].append((sx0 + x_rel, float(y)))
        values[wv.channel].append(float(wv.peak_m_s))
    return peaks, values


def _draw_scale(canvas: np.ndarray, params: DopplerParams, lay: StripLayout, dy: float) -> None:
    sx0, sy0, sx1, sy1 = lay.spectral_box
    x = lay.trace_x1 + 4
    th = max(7.0, 0.018 * params.height_px)
    step = 0.5 if params.scale_m_s <= 2.0 else 1.0
    k = -int(params.scale_m_s / step) - 1
    while k * step <= params.scale_m_s + 1e-9:
        v = k * step
        y = lay.baseline_row + v * 100.0 / dy
        if sy0 + 2.5 * th <= y <= sy1 - 2:
            yi = int(round(y))
            cv2.line(canvas, (x, yi), (x + 5, yi), (200, 200, 200), 1)
            label = f"{v:g}" if v != 0 else "0"
            put_text(canvas, label, (x + 8, yi + int(th / 2)), th, (200, 200, 200))
        k += 1
    put_text(canvas, "m/s", (x + 4, sy0 + int(1.5 * th)), th, (200, 200, 200))
    put_text(canvas, params.mode.upper(), (sx0 + 4, sy0 + int(1.5 * th)), th, (200, 200, 200))


def _draw_small_2d(canvas: np.ndarray, params: DopplerParams, lay: StripLayout, rng: np.random.Generator) -> Region:
    """A small PLAX-like 2D image with the Doppler cursor; returns its calibrated region."""
    from echomeasure.synthetic.plax import PlaxRenderer, frame_geometry, sample_plax_params

    x0, y0, x1, y1 = lay.image_box
    hh, ww = y1 - y0 + 1, x1 - x0 + 1
    # render a PLAX frame whose sector fills the box: no banner/ECG margin is wanted, so render
    # a taller image and cut the sector's bounding box out of it
    sub = sample_plax_params(rng, n_frames=30, image_size=(int(hh / 0.78), ww), seed=params.seed, case_index=params.case_index)
    r = PlaxRenderer(sub, rng)
    frame = r.frame(0, frame_geometry(sub, 0))
    bx0, by0, bx1, by1 = r.geom.bounding_box_px
    crop = frame[by0 : by1 + 1, bx0 : bx1 + 1]
    ch, cw = min(crop.shape[0], hh), min(crop.shape[1], ww)
    ox = x0 + (ww - cw) // 2
    canvas[y0 : y0 + ch, ox : ox + cw] = crop[:ch, :cw]
    g = r.geom
    ax, ay = g.apex_x_px - bx0 + ox, g.apex_y_px - by0 + y0
    ang = math.radians(g.steer_deg + (rng.uniform(-0.25, 0.25) * g.sector_deg))
    depth_px = ch * 0.95
    for k in range(0, int(depth_px), 6):
        px, py = ax + k * math.sin(ang), ay + k * math.cos(ang)
        cv2.circle(canvas, (int(px), int(py)), 0, (220, 220, 220), -1)
    gx, gy = ax + 0.55 * depth_px * math.sin(ang), ay + 0.55 * depth_px * math.cos(ang)
    nx, ny = math.cos(ang), -math.sin(ang)
    if params.mode == "pw":
        for off in (-3, 3):
            cx, cy = gx + off * math.sin(ang), gy + off * math.cos(ang)
            cv2.line(canvas, (int(cx - 5 * nx), int(cy - 5 * ny)), (int(cx + 5 * nx), int(cy + 5 * ny)), (230, 230, 230), 1)
    else:
        cv2.drawMarker(canvas, (int(gx), int(gy)), (230, 230, 230), cv2.MARKER_DIAMOND, 8, 1)
    return Region(
        x0=ox, y0=y0, x1=ox + cw - 1, y1=y0 + ch - 1,
        spatial_format=1, data_type=1, units_x=3, units_y=3,
        delta_x=g.cm_per_px, delta_y=g.cm_per_px,
        ref_x0=int(ax - ox), ref_y0=int(ay - y0), ref_phys_x=0.0, ref_phys_y=0.0, flags=2,
    )


def doppler_truth(
    params: DopplerParams,
    lay: StripLayout,
    peaks: dict[str, list[tuple[float, float]]],
    values: dict[str, list[float]],
    dt: float,
    dy: float,
    identity: FakeIdentity,
) -> dict:
    """The truth document of a strip (per-case value = mean of per-beat peak magnitudes).

    ``dt`` is seconds per pixel column, ``dy`` the signed cm/s per pixel row of the spectral
    region; ``identity`` is the fake identity burned into the strip.
    """
    measurements: dict[str, dict] = {}
    for ch in params.channels:
        mags = [abs(v) for v in values[ch]]
        measurements[ch] = {
            "value": round(float(np.mean(mags)), 6) if mags else None,
            "unit": "m/s",
            "peaks": [[round(x, 4), round(y, 4)] for x, y in peaks[ch]],
            "per_beat_m_s": [round(m, 6) for m in mags],
            "signed_per_beat_m_s": [round(v, 6) for v in values[ch]],
            "definition": "mean of the per-beat peak velocity magnitudes of the beats whose peak is on the strip",
        }
    if params.flow == "mv" and measurements["mv_e"]["value"] and measurements["mv_a"]["value"]:
        measurements["mv_ea"] = {
            "value": round(measurements["mv_e"]["value"] / measurements["mv_a"]["value"], 6),
            "unit": "ratio",
            "definition": "mean E peak / mean A peak",
        }
    return {
        "kind": "doppler",
        "flow": params.flow,
        "mode": params.mode,
        "ed_frame": None,
        "es_frame": None,
        "n_frames": 1,
        "heart_rate_bpm": round(params.heart_rate_bpm, 3),
        "measurements": measurements,
        "baseline_row": lay.baseline_row,
        "velocity_cm_s_per_px": dy,
        "seconds_per_px": dt,
        "conventions": {
            "points": "image pixels (x right, y down), pixel centres on integers",
            "peak": "top of the spectral envelope (half-brightness edge) at the envelope maximum of each beat",
            "sign": "velocities toward the transducer (above the baseline) are positive",
        },
        "params": params_to_dict(params),
        "generator": {
            "name": "echomeasure.synthetic.doppler", "version": GENERATOR_VERSION, "seed": params.seed, "case": params.case_index,
        },
    }
