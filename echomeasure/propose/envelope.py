"""The outer edge of the spectral envelope, and Doppler peaks snapped onto it.

Peak velocity is read where a sonographer reads it: at the outer edge of the dense spectral
envelope, the point furthest from the baseline.  The heatmap model finds *which* peak (beat and
wave) well, but its output-stride-16 lattice places the point only roughly.  This module reads
the image itself:

:class:`EnvelopeTrace`
    the envelope edge of one side of the baseline, column by column:

    1. the grey level (brightest colour channel, so a tinted display reads like a grey one) is
       averaged over 12 ms of neighbouring columns (3 on a typical sweep), which tames the
       speckle of the spectrum without smearing a narrow wave;
    2. a row is "on" where it reaches ``background + 0.9 * (top - background)``, with the
       background the median of the whole spectral region and the top the 99th percentile of
       that side: 0.9 sits on the flank where the dense spectrum starts to fall, not half way
       down the broadening tail, which read every peak 1-3 % high;
    3. the edge is the outer end of the run of "on" rows (gaps of up to 2 rows closed) that
       holds the column's brightest row, so an isolated noise pixel beyond the envelope or a
       label elsewhere in the column does not stretch it;
    4. a one-column dip (a column dimmed by the FFT's gain flicker) is raised to the lower of
       its neighbours.
:func:`snap_to_envelope` / :meth:`EnvelopeTrace.snap`
    moves a model point to the highest local maximum of the trace within ``max_dx_px`` columns
    (a local maximum, so a window that reaches the tail of a neighbouring, higher wave, such as
    E next to A, does not take that tail), accepted only within 0.8x-1.2x of the model's
    distance from the baseline (a faint or cluttered strip cannot move a point far).

Measured per beat on the 40 standard held-out strips with ``doppler-peaks`` 1.0 (model points,
then snap; mean signed / mean absolute error of the peak velocity): the former half-height snap
AV +0.9 / 1.2 %, TR +1.2 / 1.2 %, LVOT +1.3 / 1.3 %, mitral E +4.6 / 4.6 %; this one AV +0.3 / 0.8 %,
TR +0.4 / 0.5 %, LVOT +0.5 / 0.6 %, mitral E +0.4 / 0.8 %, mitral A -0.2 / 0.8 % (thresholds chosen on
the next 40 held-out seeds).
``propose(..., snap_doppler_to_envelope=False)`` gives the model's raw points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from echomeasure.ingest.calibration import baseline_row
from echomeasure.ingest.clip import UNIT_S, Region

#: Accept a snapped point only within this range of the model's distance from the baseline.
MIN_RATIO, MAX_RATIO = 0.8, 1.2
#: Where between the background and the top brightness a row counts as inside the envelope.
THRESHOLD_FRACTION = 0.9
#: Percentile of one side's pixels taken as the top brightness of its spectrum.
TOP_PERCENTILE = 99.0
#: Dark rows tolerated inside the envelope (speckle) before the edge is declared.
MAX_GAP_PX = 2
#: Time (s) averaged into each column's profile (3 columns on a typical sweep; on a compressed
#: sweep, where a wave is only a few columns wide, one column, so its peak is not smeared).
AVERAGED_S = 0.012
#: Fill one-column dips of the edge trace.
REPAIR_DROPOUTS = True
#: Columns averaged when the region has no time axis.
COLUMNS_AVERAGED = 3
#: A wave peak read from the trace alone reaches at least this fraction of the trace's highest.
WAVE_MIN_FRACTION = 0.5


@dataclass(frozen=True)
class EnvelopeTrace:
    """Envelope edge of one side of the baseline of a spectral region.

    Attributes
    ----------
    region
        The spectral region.
    sign
        ``+1``: the side below the baseline (image rows increase), ``-1``: above.
    edge_px
        ``(x1 - x0 + 1,)`` distance in pixel rows from the baseline to the envelope edge in each
        column of the region (0 where a column holds no spectrum).
    """

    region: Region
    sign: int
    edge_px: np.ndarray

    @classmethod
    def measure(cls, image_rgb: np.ndarray, region: Region, sign: int) -> EnvelopeTrace:
        """Trace the envelope edge of one side (see the module docstring).

        Parameters
        ----------
        image_rgb
            ``(H, W, 3)`` uint8 frame holding the spectral strip.
        region
            The spectral region (baseline at ``MinY0 + ReferencePixelY0``).
        sign
            ``+1`` for the side below the baseline, ``-1`` for the side above.
        """
        grey = image_rgb[region.y0 : region.y1 + 1, region.x0 : region.x1 + 1].max(axis=2).astype(np.float32)
        base = int(round(baseline_row(region))) - region.y0
        # rows ordered outwards from the baseline (the baseline row itself is a drawn line)
        side = grey[base + 1 :] if sign > 0 else grey[:base][::-1]
        n_rows, n_cols = side.shape
        edge = np.zeros(grey.shape[1], dtype=np.float64)
        if n_rows < 3 or n_cols < 1:
            return cls(region, int(sign), edge)
        k = COLUMNS_AVERAGED
        if region.units_x == UNIT_S and region.delta_x:
            k = 2 * int((AVERAGED_S / abs(region.delta_x)) // 2) + 1
        padded = np.pad(side, ((0, 0), (k // 2, k // 2)), mode="edge")
        smooth = np.mean([padded[:, i : i + n_cols] for i in range(k)], axis=0)
        background = float(np.median(grey))
        top = float(np.percentile(smooth, TOP_PERCENTILE))
        if top <= background + 5.0:  # nothing bright on this side
            return cls(region, int(sign), edge)
        on = smooth >= background + THRESHOLD_FRACTION * (top - background)
        brightest = smooth.argmax(axis=0)
        for c in np.flatnonzero(on.any(axis=0)):
            rows = np.flatnonzero(on[brightest[c] :, c]) + brightest[c]
            # the run holding the brightest row, gaps of up to MAX_GAP_PX rows closed
            breaks = np.flatnonzero(np.diff(rows) > MAX_GAP_PX + 1)
            last = rows[breaks[0]] if breaks.size else rows[-1]
            edge[c] = float(last + 1)
        if REPAIR_DROPOUTS and edge.size >= 3:
            # a column dimmed by the FFT's gain flicker falls short of its neighbours: a dip of one
            # column is raised to the lower neighbour (a peak, higher than both, is left alone)
            edge[1:-1] = np.maximum(edge[1:-1], np.minimum(edge[:-2], edge[2:]))
        return cls(region, int(sign), edge)

    def distance_at(self, x: float) -> float:
        """Edge distance (rows from the baseline) in the column holding image x (0 outside)."""
        c = int(round(x)) - self.region.x0
        return float(self.edge_px[c]) if 0 <= c < self.edge_px.size else 0.0

    def local_peak(self, x: float, max_dx_px: int) -> tuple[float, float] | None:
        """Highest local maximum of the trace within ``max_dx_px`` columns of image x.

        Returns
        -------
        (x, distance) or None
            Image column and edge distance (rows from the baseline) of the maximum; None when
            the window holds no local maximum (the trace only rises or falls there).
        """
        c = int(round(x)) - self.region.x0
        lo, hi = max(0, c - max_dx_px), min(self.edge_px.size - 1, c + max_dx_px)
        if hi - lo < 2:
            return None
        e = self.edge_px
        best: tuple[float, float] | None = None
        for i in range(lo, hi + 1):
            v = e[i]
            if v <= 0:
                continue
            # a maximum of the trace, not the end of a slope cut by the window: it must be at
            # least as high as its neighbours over 2 columns on each side (inside the region)
            left = e[max(0, i - 2) : i]
            right = e[i + 1 : i + 3]
            if (left.size and v < left.max()) or (right.size and v < right.max()):
                continue
            # ... with the envelope on both sides: a wave cut by the end of the sweep (or a
            # lone bright column) peaks where the spectrum stops, which is not its peak
            if left.size < 2 or right.size < 2 or min(left.min(), right.min()) < 0.5 * v:
                continue
            if (i == lo and lo > 0 and e[lo - 1] > v) or (i == hi and hi < e.size - 1 and e[hi + 1] > v):
                continue
            # ... and not on a wave the sweep cuts (a grainy slope has local maxima of its own)
            if _cut_wave(e[i:], v, max_dx_px) or _cut_wave(e[: i + 1][::-1], v, max_dx_px):
                continue
            if best is None or v > best[1]:
                best = (float(i + self.region.x0), float(v))
        return best

    def wave_peaks(self, min_gap_px: float) -> list[tuple[float, float]]:
        """The peak of each wave of the trace: ``(image x, edge distance)``, sorted by x.

        A peak is the highest column within ``min_gap_px`` on each side, at least
        :data:`WAVE_MIN_FRACTION` of the trace's highest, with the envelope on both sides (the
        test of :meth:`local_peak`, so a wave cut by the sweep's start or end is left out).
        """
        e = self.edge_px
        if e.size < 5 or e.max() <= 0:
            return []
        g = max(2, int(round(min_gap_px)))
        floor = WAVE_MIN_FRACTION * float(e.max())
        peaks: list[tuple[float, float]] = []
        for i in np.argsort(-e, kind="stable"):
            v = float(e[i])
            if v < floor:
                break
            if any(abs(i - (x - self.region.x0)) < g for x, _ in peaks):
                continue
            if self.local_peak(float(i + self.region.x0), 1) is None:  # also refuses the trace's first and last column
                continue
            peaks.append((float(i + self.region.x0), v))
        return sorted(peaks)

    def snap(self, x: float, y: float, *, max_dx_px: int = 8) -> tuple[float, float]:
        """Move a model peak onto the envelope edge (the input point when none is acceptable)."""
        sx, sy, _ = self.snap_peak(x, y, max_dx_px=max_dx_px)
        return sx, sy

    def snap_peak(self, x: float, y: float, *, max_dx_px: int = 8) -> tuple[float, float, bool]:
        """As :meth:`snap`, also saying whether the point now lies on the envelope.

        Returns
        -------
        (x, y, on_envelope)
            ``on_envelope`` is False when the model's point was kept (no local maximum of the
            trace nearby, or one too far from the model's distance).
        """
        base = baseline_row(self.region)
        dist = abs(y - base)
        if dist < 3.0 or (1 if y > base else -1) != self.sign:
            return float(x), float(y), False
        found = self.local_peak(x, max_dx_px)
        if found is None:
            return float(x), float(y), False
        xi, edge = found
        if not (MIN_RATIO * dist <= edge <= MAX_RATIO * dist + 2):
            return float(x), float(y), False
        return xi, float(base + self.sign * edge), True


def _cut_wave(trace_onwards: np.ndarray, height: float, window: int) -> bool:
    """Whether a candidate peak (the first column of ``trace_onwards``, edge ``height``) sits on a
    wave the sweep cuts on that side.

    A whole wave comes back below half its height through intermediate columns.  A cut one runs
    into the strip's edge, or straight from above half its height into columns holding no
    spectrum at all (where a scrolling display has not drawn yet), and there its highest column
    need not be its peak: the candidate must then see the whole ``window`` of the wave on that
    side, and nothing higher in it.
    """
    below = np.flatnonzero(trace_onwards < 0.5 * height)
    if below.size and trace_onwards[below[0]] > 0:
        return False  # the wave comes back down on the strip
    run = trace_onwards if not below.size else trace_onwards[: below[0]]
    return bool(run.size <= window or run.max() > height)


def snap_to_envelope(
    image_rgb: np.ndarray,
    region: Region,
    x: float,
    y: float,
    *,
    max_dx_px: int = 8,
) -> tuple[float, float]:
    """Move a Doppler peak point onto the envelope edge (see the module docstring).

    Parameters
    ----------
    image_rgb
        ``(H, W, 3)`` uint8 frame holding the spectral strip.
    region
        The spectral region (its baseline is ``MinY0 + ReferencePixelY0``).
    x, y
        The model's peak, image pixels.
    max_dx_px
        Columns searched on each side of ``x``.

    Returns
    -------
    (x, y)
        The snapped point, or the input point when no acceptable edge is found.
    """
    base = baseline_row(region)
    if abs(y - base) < 3.0:
        return float(x), float(y)
    trace = EnvelopeTrace.measure(image_rgb, region, 1 if y > base else -1)
    return trace.snap(x, y, max_dx_px=max_dx_px)
