"""Move PLAX caliper endpoints onto the tissue-blood interface of the full-resolution frame.

The ``plax-linear`` model sees a 192 x 192 crop and its heatmaps come from a stride-16 feature
map, so its endpoints are coarse and drift towards the population mean on thin walls.  The ASE
calipers, however, sit on tissue-blood interfaces (docs/domain.md section 1), and those are intensity
steps that the original frame shows at about three times the model's resolution.

:func:`refine_to_edges` takes the model's endpoints and, for each, samples the frame's intensity
profile along the caliper line (bilinear, sub-pixel, averaged over a few pixels across the line
against speckle, smoothed along it), measures the step contrast (mean intensity on the far side
minus the near side over a short span, in grey levels) at every candidate position within a
search window, and moves the endpoint to the interface of the expected polarity that is both
strong and close to the model's estimate.  Where no step of that polarity stands out of the
speckle, the endpoint stays where the model put it.

:data:`PLAX_INTERFACES` says, for every keypoint of :data:`echomeasure.catalog.KEYPOINTS_2D`,
which caliper line it is searched along and which way the intensity steps there; walking from
the probe side (anterior) to the far side (posterior):

* ``rv_septum``: RV blood (dark) -> septum (bright), rising;
* ``septum_lv``: septum -> LV blood, falling;
* ``lv_pw``: LV blood -> posterior wall, rising;
* ``pw_pericardium``: posterior wall -> pericardium (the brightest echo), rising;
* ``ao_anterior``: anterior aortic wall -> aortic blood, falling;
* ``ao_posterior``: aortic blood -> posterior aortic wall, rising;
* ``la_anterior``: posterior aortic wall -> LA blood, falling;
* ``la_posterior``: LA blood -> LA posterior wall, rising.

Each keypoint is first put on its caliper line and then searched along it: the four LV-line
keypoints on the LV minor axis (``septum_lv`` -> ``lv_pw``: ASE puts IVSd, LVIDd and LVPWd on
one line), the aortic and the LA keypoints on the aortic-root line (``ao_anterior`` ->
``ao_posterior``: the LA dimension is taken in line with the aortic root, at the sinuses).  A
keypoint shared by two measurements (``septum_lv`` by IVSd and LVIDd) moves once for both.
``la_posterior`` (:data:`PROJECT_ONLY`) is put on the line but not moved along it: its strongest
nearby step is too often the pericardium or a rise inside the LA cavity.

Two rules follow the search in :func:`refine_plax_keypoints`: a posterior-wall caliper on an echo
with blood behind it (a leaflet or chord in front of the wall) goes onto the wall past the gap
(:data:`WALL_GAP_MM`), and each blood-tissue interface is moved by the bloom correction of
:mod:`echomeasure.propose.interface_offset` (the point-spread function smears bright tissue into
the blood on a log-compressed display, so the strongest step lies on the blood side).

On the 40 standard held-out cases with ``plax-linear`` 1.0 this took the mean MAE of the six
linear measurements from 2.91 mm to 1.01 mm (settings tuned on held-out seeds
9000040-9000079, not on those 40).
Everything here is plain numpy on one frame; the cost is a few thousand bilinear samples per
frame (well under a millisecond).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from echomeasure.propose.interface_offset import BLOOD_INTERFACES, sample_profiles, shipped_model
from echomeasure.propose.line_profiles import gaussian_kernel, line_profiles

if TYPE_CHECKING:
    from echomeasure.ingest.clip import Region

log = logging.getLogger(__name__)

#: Intensity rises along the search direction (blood -> tissue) / falls (tissue -> blood).
RISING = 1
FALLING = -1

#: keypoint -> ((line start keypoint, line end keypoint), polarity along start -> end).
PLAX_INTERFACES: dict[str, tuple[tuple[str, str], int]] = {
    "rv_septum": (("septum_lv", "lv_pw"), RISING),
    "septum_lv": (("septum_lv", "lv_pw"), FALLING),
    "lv_pw": (("septum_lv", "lv_pw"), RISING),
    "pw_pericardium": (("septum_lv", "lv_pw"), RISING),
    "ao_anterior": (("ao_anterior", "ao_posterior"), FALLING),
    "ao_posterior": (("ao_anterior", "ao_posterior"), RISING),
    "la_anterior": (("ao_anterior", "ao_posterior"), FALLING),
    "la_posterior": (("ao_anterior", "ao_posterior"), RISING),
}

#: Keypoints that are put on their caliper line but not moved along it.  The LA's far wall is a
#: thin muscle with the pericardium, the brightest echo, 2-3.5 mm behind it, and deep in the
#: sector the LA blood brightens gradually over the last 5-8 mm before it, so the strongest
#: rising step near ``la_posterior`` is the pericardium (+2 mm) or a rise inside the cavity
#: (-4 to -7 mm) about as often as the blood-wall interface: on held-out tuning seeds
#: 9000040-9000079 moving it took the LA MAE from 0.65 mm (projected only) to 1.51 mm, and no
#: window, prior or span setting beat projecting only (best 0.71 mm).
PROJECT_ONLY: frozenset[str] = frozenset({"la_posterior"})

#: Default search settings in millimetres (converted to pixels with the clip's calibration).
SEARCH_WINDOW_MM = 7.0
PRIOR_SIGMA_MM = 6.0
STEP_SPAN_MM = 1.0
DARK_SPAN_MM = 3.0
ACROSS_HALF_WIDTH_MM = 2.5
SMOOTH_MM = 0.4
#: Spacing of the samples along a search line: half a pixel, or this many mm where a pixel is
#: smaller than 0.2 mm (above 5 px/mm: zoomed images), so that the number of samples, and the
#: cost, stay bounded however fine the pixels (a 7 mm window is 70 samples each side, against
#: 1400 half-pixel samples at 0.001 cm/px); usual echo images keep half-pixel sampling.
SAMPLE_STEP_MM = 0.1
#: A step must be at least this many grey levels (0-255) to be taken for an interface.
MIN_CONTRAST_GREY = 8.0
#: Step contrast (grey levels) from which an interface counts as fully confirmed, and the share
#: of the model's confidence an endpoint keeps when no interface backs it (see
#: :func:`edge_confidence_factor`).
FULL_CONTRAST_GREY = 64.0
UNCONFIRMED_CONFIDENCE_SHARE = 0.25


@dataclass(frozen=True)
class EdgeRefinement:
    """Result of :func:`refine_to_edges` for K points.

    Attributes
    ----------
    points_xy : (K, 2) float64
        Refined points, image pixels (x right, y down); unchanged where no edge was found.
    shift_px : (K,) float64
        Signed move along each search direction (0 where the point stayed).
    contrast_grey : (K,) float64
        Step contrast of the chosen interface in grey levels, signed so that the expected
        polarity is positive (0 where no interface was found).
    found : (K,) bool
        Whether an interface of the expected polarity was found in the window.
    window_px : (K,) float64, optional
        The search window of each point (0 where it was not searched).
    rival_contrast_grey : (K,) float64, optional
        Contrast of the strongest competing interface of the expected polarity in the window
        (the best-scoring candidate other than the chosen one; 0 where there is none).
    rival_shift_px : (K,) float64, optional
        Signed offset of that competitor from the start point (0 where there is none).
    past_gap_px : (K,) float64, optional
        How far a keypoint was moved past a blood gap onto the wall behind it (the posterior-wall
        rule, :data:`WALL_GAP_MM`); 0 elsewhere, None when the rule did not fire.
    interface_shift_px : (K,) float64, optional
        Signed offset of the chosen interface from the start point: ``shift_px``, except for
        keypoints left on their start (:data:`PROJECT_ONLY`), where it says how far the image's
        interface lies from the model's point (default: ``shift_px``).
    """

    points_xy: np.ndarray
    shift_px: np.ndarray
    contrast_grey: np.ndarray
    found: np.ndarray
    window_px: np.ndarray | None = None
    rival_contrast_grey: np.ndarray | None = None
    rival_shift_px: np.ndarray | None = None
    interface_shift_px: np.ndarray | None = None
    past_gap_px: np.ndarray | None = None

    @property
    def searched_shift_px(self) -> np.ndarray:
        """``interface_shift_px``, or ``shift_px`` where that is not set: how far the search moved
        from the model's point, which the confidence judges (not the later corrections)."""
        return self.shift_px if self.interface_shift_px is None else self.interface_shift_px


def refine_to_edges(
    frame: np.ndarray,
    points_xy: np.ndarray,
    directions_xy: np.ndarray,
    polarities: Sequence[int] | np.ndarray,
    window_px: float | np.ndarray,
    *,
    prior_sigma_px: float | np.ndarray | None = None,
    step_span_px: float = 2.5,
    dark_span_px: float | None = None,
    across_half_width_px: float = 2.5,
    smooth_px: float = 0.8,
    min_contrast_grey: float = MIN_CONTRAST_GREY,
    sample_step_px: float = 0.5,
) -> EdgeRefinement:
    """Move points along given directions onto the nearest strong intensity step of a polarity.

    Parameters
    ----------
    frame : (H, W) or (H, W, C) uint8 or float
        The full-resolution image (colour channels are averaged).
    points_xy : (K, 2)
        Start points in image pixels (x right, y down), e.g. the model's caliper endpoints.
    directions_xy : (K, 2)
        Search direction of each point (any length; normalised here), e.g. along the caliper.
    polarities : (K,) of {+1, -1}
        :data:`RISING` where the intensity should step up along the direction at the interface
        (blood -> tissue), :data:`FALLING` where it should step down.
    window_px : float or (K,)
        Furthest a point may move, pixels along its direction (0: that point is left alone).
    prior_sigma_px : float or (K,), optional
        Width of the Gaussian preference for steps near the start point; a strong step further
        away wins over a weak one close by only when its contrast outweighs this prior
        (default: half the window).
    step_span_px : float
        The contrast at position c is the mean profile over (c, c + span] minus the mean over
        [c - span, c): long enough to average speckle, shorter than the thinnest wall.
    dark_span_px : float, optional
        Span on the dark (blood) side of the step, default ``step_span_px``.  Blood pools are
        wide, so a longer span here rejects the dark gaps of speckle inside tissue, which are
        short.
    across_half_width_px : float
        The profile is averaged over this far on each side of the line (against speckle).
    smooth_px : float
        Gaussian smoothing of the profile along the line (sigma).
    min_contrast_grey : float
        Weakest step (grey levels, expected polarity) taken for an interface.
    sample_step_px : float
        Spacing of the samples along the line.

    Returns
    -------
    EdgeRefinement
        Refined points, signed shifts, the chosen steps' contrasts and whether one was found.
    """
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    k = len(pts)
    dirs = np.asarray(directions_xy, dtype=np.float64).reshape(-1, 2)
    norms = np.hypot(dirs[:, 0], dirs[:, 1])
    pol = np.broadcast_to(np.asarray(polarities, dtype=np.float64), (k,))
    win = np.broadcast_to(np.asarray(window_px, dtype=np.float64), (k,))
    ok = (norms > 0) & np.all(np.isfinite(pts), axis=1) & np.isfinite(norms) & (win > 0)
    win_out = np.where(ok, win, 0.0)
    if k == 0 or not ok.any():
        zeros = np.zeros(k)
        return EdgeRefinement(pts.copy(), zeros, zeros.copy(), np.zeros(k, dtype=bool), win_out, zeros.copy(), zeros.copy())
    u = np.where(ok[:, None], dirs / np.where(norms > 0, norms, 1.0)[:, None], 0.0)
    sigma_prior = np.broadcast_to(
        np.asarray(0.5 * win if prior_sigma_px is None else prior_sigma_px, dtype=np.float64), (k,)
    )
    step = float(sample_step_px)
    signed, offs = _contrast_along_lines(
        frame, pts, u, pol, float(win[ok].max()), step=step, step_span_px=step_span_px,
        dark_span_px=step_span_px if dark_span_px is None else dark_span_px, smooth_px=smooth_px,
        across_half_width_px=across_half_width_px,
    )
    score = _candidate_scores(signed, offs, win, sigma_prior, min_contrast_grey, ok)
    shift, contrast, found, rival, rival_shift = _choose_interfaces(score, signed, offs, win, step)
    return EdgeRefinement(pts + shift[:, None] * u, shift, contrast, found, win_out, rival, rival_shift)


def _contrast_along_lines(
    frame: np.ndarray, pts: np.ndarray, u: np.ndarray, pol: np.ndarray, max_window_px: float, *, step: float,
    step_span_px: float, dark_span_px: float, smooth_px: float, across_half_width_px: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``(signed, offsets)``: the (K, C) step contrast (expected polarity positive) at the C
    candidate offsets (pixels along each line, within +-``max_window_px``, ``step`` apart)."""
    span = max(1, int(round(step_span_px / step)))
    dark = max(1, int(round(dark_span_px / step)))
    kernel = gaussian_kernel(smooth_px / step)
    pad = max(span, dark) + len(kernel) // 2 + 1
    n_c = int(math.ceil(max_window_px / step))
    t = np.arange(-n_c - pad, n_c + pad + 1) * step  # (T,) offsets along the line
    profile = line_profiles(frame, pts, u, t, across_half_width_px, kernel)
    centre = np.arange(pad, len(t) - pad)  # candidate indices, offsets within +-n_c samples
    return _step_contrast(profile, pol, centre, span, dark), t[centre]


def _step_contrast(profile: np.ndarray, pol: np.ndarray, centre: np.ndarray, span: int, dark: int) -> np.ndarray:
    """(K, C) step contrast at the ``centre`` sample indices, signed so the expected polarity is positive.

    The step at c is the mean of samples (c, c + n_after] minus the mean of [c - n_before, c);
    the dark side (before a rising step, after a falling one) is averaged over ``dark`` samples,
    the bright side over ``span``.
    """
    k = len(profile)
    csum = np.concatenate([np.zeros((k, 1)), np.cumsum(profile, axis=1)], axis=1)
    n_before = np.where(pol > 0, dark, span)[:, None]
    n_after = np.where(pol > 0, span, dark)[:, None]
    rows = np.arange(k)[:, None]
    after = (csum[rows, centre[None, :] + n_after + 1] - csum[:, centre + 1]) / n_after
    before = (csum[:, centre] - csum[rows, centre[None, :] - n_before]) / n_before
    return (after - before) * pol[:, None]


def _candidate_scores(
    signed: np.ndarray, offs: np.ndarray, win: np.ndarray, sigma_prior: np.ndarray, min_contrast_grey: float,
    ok: np.ndarray,
) -> np.ndarray:
    """(K, C) contrast x nearness prior of each candidate interface; -inf where it is none.

    A candidate lies within the point's window, is a local maximum of the contrast (the centre
    of a step, not its flank) and is at least ``min_contrast_grey`` strong.
    """
    inside = np.abs(offs)[None, :] <= win[:, None]
    prior = np.exp(-0.5 * (offs[None, :] / np.maximum(sigma_prior, 1e-6)[:, None]) ** 2)
    local_max = np.zeros_like(signed, dtype=bool)
    local_max[:, 1:-1] = (signed[:, 1:-1] >= signed[:, :-2]) & (signed[:, 1:-1] > signed[:, 2:])
    candidate = inside & local_max & (signed >= min_contrast_grey) & ok[:, None]
    return np.where(candidate, signed * prior, -np.inf)


def _choose_interfaces(
    score: np.ndarray, signed: np.ndarray, offs: np.ndarray, win: np.ndarray, step: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The best-scoring interface of each point and its strongest rival.

    Returns ``(shift_px, contrast_grey, found, rival_contrast_grey, rival_shift_px)``, each (K,).
    """
    k = len(score)
    shift, contrast, found = np.zeros(k), np.zeros(k), np.zeros(k, dtype=bool)
    rival, rival_shift = np.zeros(k), np.zeros(k)
    best = np.argmax(score, axis=1)
    has = np.isfinite(score[np.arange(k), best])
    # The point goes to the maximum of the step contrast.  With a longer dark span that is where
    # the (smoothed) profile has climbed dark / (dark + span) of the step from the blood side,
    # not its steepest point: on a log-compressed B-mode image the point-spread function smears
    # bright tissue echo into the blood, so the steepest grey-level slope lies on the blood side
    # of the true interface (on the held-out tuning cases this point has the lower mean error).
    for i in np.flatnonzero(has):
        j = best[i]
        c0 = offs[j]
        if 0 < j < len(offs) - 1:
            y_m, y_0, y_p = signed[i, j - 1], signed[i, j], signed[i, j + 1]
            denom = y_m - 2.0 * y_0 + y_p
            if denom < 0:
                c0 += step * float(np.clip(0.5 * (y_m - y_p) / denom, -0.5, 0.5))
        shift[i] = float(np.clip(c0, -win[i], win[i]))
        contrast[i] = float(signed[i, j])
        found[i] = True
        others = score[i].copy()
        others[j] = -np.inf
        r = int(np.argmax(others))
        if np.isfinite(others[r]):
            rival[i] = float(signed[i, r])
            rival_shift[i] = float(offs[r])
    return shift, contrast, found, rival, rival_shift


def edge_confidence_factor(contrast_grey: np.ndarray | float) -> np.ndarray:
    """Factor in [``UNCONFIRMED_CONFIDENCE_SHARE``, 1] for a refined endpoint's confidence.

    An endpoint that sits on a clear interface keeps the model's confidence; one with a weak
    step, or none (contrast 0: the point stayed where the model put it), keeps less of it, so
    that the confidence ranks errors better (on held-out tuning cases the Spearman correlation
    of confidence and error went from -0.06 to -0.18).
    """
    c = np.clip(np.asarray(contrast_grey, dtype=np.float64) / FULL_CONTRAST_GREY, 0.0, 1.0)
    return UNCONFIRMED_CONFIDENCE_SHARE + (1.0 - UNCONFIRMED_CONFIDENCE_SHARE) * c


#: Confidence settings of :func:`interface_confidence_factor`, :func:`resolution_confidence_factor`
#: and :func:`decode_confidence_gate` (tuned on held-out seeds 9000040-9000079).
SHIFT_CONFIDENCE_LOSS = 0.5
FULL_RESOLUTION_PX_PER_MM = 5.0
DECODE_CONFIDENCE_FLOOR = 0.2
#: Least share kept by an endpoint whose rival interface is as strong as its own (not 0, so that a
#: confidence of 0 keeps meaning an implausible value).
AMBIGUOUS_CONFIDENCE_SHARE = 0.05


def interface_confidence_factor(refinement: EdgeRefinement) -> np.ndarray:
    """Factor in [0, 1] per refined endpoint: how unambiguously the image backs it.

    ``(1 - ambiguity**2) * (1 - SHIFT_CONFIDENCE_LOSS * |shift| / window)`` where an interface
    was found, :data:`UNCONFIRMED_CONFIDENCE_SHARE` where none was.  *ambiguity* is the contrast
    of the strongest competing interface of the same polarity in the search window over that of
    the chosen one (clipped to 1: two equal steps keep only :data:`AMBIGUOUS_CONFIDENCE_SHARE`); the shift term says how
    far the model and the image disagreed (``interface_shift_px``: for a :data:`PROJECT_ONLY`
    keypoint, how far the interface near it lies, though the point stays).  Unlike the step contrast alone
    (:func:`edge_confidence_factor`, saturated on nearly every endpoint), these rank the errors
    of the refined calipers (see :func:`resolution_confidence_factor` for the rest).

    Parameters
    ----------
    refinement : EdgeRefinement
        A result of :func:`refine_to_edges` / :func:`refine_plax_keypoints` with its window and
        rival fields.

    Returns
    -------
    (K,) float64
    """
    found = np.asarray(refinement.found, dtype=bool)
    k = len(found)
    contrast = np.asarray(refinement.contrast_grey, dtype=np.float64)
    rival = (np.zeros(k) if refinement.rival_contrast_grey is None
             else np.asarray(refinement.rival_contrast_grey, dtype=np.float64))
    window = np.zeros(k) if refinement.window_px is None else np.asarray(refinement.window_px, dtype=np.float64)
    moved_px = refinement.searched_shift_px
    shift = np.abs(np.asarray(moved_px, dtype=np.float64))
    ambiguity = np.clip(rival / np.where(contrast > 0, contrast, 1.0), 0.0, 1.0)
    moved = np.clip(shift / np.where(window > 0, window, 1.0), 0.0, 1.0)
    backed = np.maximum(1.0 - ambiguity**2, AMBIGUOUS_CONFIDENCE_SHARE) * (1.0 - SHIFT_CONFIDENCE_LOSS * moved)
    return np.where(found & (contrast > 0), backed, UNCONFIRMED_CONFIDENCE_SHARE)


def resolution_confidence_factor(px_per_mm: float) -> float:
    """Factor in (0, 1] for the image's resolution: ``min(1, px_per_mm / FULL_RESOLUTION_PX_PER_MM)``.

    A caliper refined onto an interface lands within a fraction of a pixel of it, so its error in
    millimetres grows with the pixel size; a coarse image (deep sector, small frame) gets less
    confidence.
    """
    ppm = float(px_per_mm)
    if not np.isfinite(ppm) or ppm <= 0:
        return 0.0
    return min(1.0, ppm / FULL_RESOLUTION_PX_PER_MM)


def decode_confidence_gate(confidence: np.ndarray | float) -> np.ndarray:
    """The model's decode confidence as a gate: ``min(1, confidence / DECODE_CONFIDENCE_FLOOR)``.

    Above the floor the heatmap's peak, sharpness and distinctness do not rank the errors of
    refined calipers (on held-out cases of ``plax-linear`` 1.1 higher decode confidence went with
    larger errors); below it the model has lost the structure and the confidence drops with it.
    """
    c = np.asarray(confidence, dtype=np.float64)
    return np.clip(c / DECODE_CONFIDENCE_FLOOR, 0.0, 1.0)


def plax_px_per_mm(
    regions: Sequence[Region], point_xy: Sequence[float], *, user_cm_per_px: float | None = None,
    fallback_height_px: float | None = None,
) -> float:
    """Image pixels per millimetre around a point, for sizing the edge search.

    The 2D region in cm that contains the point (DICOM calibration) first, then the user's
    ``cm/px`` scale, then an assumed 16 cm imaging depth over ``fallback_height_px`` (a typical
    PLAX depth: only the search window's size depends on it, not any reported value).
    """
    x, y = float(point_xy[0]), float(point_xy[1])
    for r in regions:
        if getattr(r, "is_2d_cm", False) and r.x0 <= x <= r.x1 and r.y0 <= y <= r.y1:
            cm = 0.5 * (abs(float(r.delta_x)) + abs(float(r.delta_y)))
            if cm > 0:
                return 1.0 / (10.0 * cm)
    if user_cm_per_px:
        return 1.0 / (10.0 * float(user_cm_per_px))
    return float(fallback_height_px or 400.0) / 160.0


def plax_search_lines(
    keypoints_xy: np.ndarray, channels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Search lines and polarities of PLAX keypoints (see :data:`PLAX_INTERFACES`).

    Parameters
    ----------
    keypoints_xy : (K, 2)
        One frame's keypoints in image pixels, in ``channels`` order.
    channels : sequence of str
        Keypoint name of each row.

    Returns
    -------
    starts : (K, 2)
        Each keypoint projected onto its caliper line (ASE: IVSd, LVIDd and LVPWd on one line,
        the LA dimension in line with the aortic root); the keypoint itself where it has none.
    directions : (K, 2)
        Unit search direction per keypoint (zero for keypoints without a known interface or
        whose line is missing or degenerate: :func:`refine_to_edges` leaves those alone).
    polarities : (K,)
        :data:`RISING` / :data:`FALLING` along the direction (0 where unknown).
    refinable : (K,) bool
        Keypoints that have a direction and a polarity.
    """
    kp = np.asarray(keypoints_xy, dtype=np.float64).reshape(-1, 2)
    index = {name: i for i, name in enumerate(channels)}
    starts = kp.copy()
    directions = np.zeros((len(channels), 2))
    polarities = np.zeros(len(channels))
    for i, name in enumerate(channels):
        spec = PLAX_INTERFACES.get(name)
        if spec is None:
            continue
        (a, b), polarity = spec
        if a not in index or b not in index:
            continue
        d = kp[index[b]] - kp[index[a]]
        length = math.hypot(float(d[0]), float(d[1]))
        if not np.isfinite(length) or length < 1e-6:
            continue
        directions[i] = d / length
        polarities[i] = polarity
        starts[i] = kp[index[a]] + float(np.dot(kp[i] - kp[index[a]], directions[i])) * directions[i]
    return starts, directions, polarities, polarities != 0


def refine_plax_keypoints(
    frame: np.ndarray,
    keypoints_xy: np.ndarray,
    channels: Sequence[str],
    px_per_mm: float,
    *,
    settings: Mapping[str, float] | None = None,
    bloom_correction: bool = True,
) -> EdgeRefinement:
    """Refine one frame's PLAX keypoints onto their interfaces (:data:`PLAX_INTERFACES`).

    Parameters
    ----------
    frame : (H, W, 3) or (H, W) uint8
        The original frame.
    keypoints_xy : (K, 2)
        The model's keypoints on that frame, image pixels, in ``channels`` order.
    channels : sequence of str
        Keypoint names (the weights entry's channels).
    px_per_mm : float
        Image pixels per millimetre (from the clip's calibration), so that the search window and
        the averaging spans are physical lengths whatever the image size.
    settings : mapping, optional
        Overrides of the defaults in mm (``window_mm``, ``prior_sigma_mm``, ``step_span_mm``,
        ``dark_span_mm``, ``across_half_width_mm``, ``smooth_mm``) and ``min_contrast_grey``.
    bloom_correction : bool
        Move each found interface by the offset :mod:`echomeasure.propose.interface_offset`
        reads from the ramp around it (the gain / point-spread bloom of bright tissue into the
        blood); off: the strongest step itself.

    Returns
    -------
    EdgeRefinement
        For all K keypoints: each refinable keypoint on its caliper line (projected there, then
        moved onto the interface when one was found); keypoints without a known interface are
        left where they are.  Keypoints of :data:`PROJECT_ONLY` stay where they were projected
        (``shift_px`` 0); their ``contrast_grey``, ``found`` and ``interface_shift_px`` still report the interface the
        search found near them, for the confidence (:func:`interface_confidence_factor`).
    """
    s = dict(settings or {})
    starts, directions, polarities, refinable = plax_search_lines(keypoints_xy, channels)
    window = np.where(refinable, float(s.get("window_mm", SEARCH_WINDOW_MM)) * px_per_mm, 0.0)
    spans = dict(
        step_span_px=s.get("step_span_mm", STEP_SPAN_MM) * px_per_mm,
        dark_span_px=s.get("dark_span_mm", DARK_SPAN_MM) * px_per_mm,
        across_half_width_px=s.get("across_half_width_mm", ACROSS_HALF_WIDTH_MM) * px_per_mm,
        smooth_px=s.get("smooth_mm", SMOOTH_MM) * px_per_mm,
        min_contrast_grey=s.get("min_contrast_grey", MIN_CONTRAST_GREY),
        sample_step_px=max(0.5, SAMPLE_STEP_MM * px_per_mm),
    )
    result = refine_to_edges(
        frame,
        starts,
        directions,
        np.where(refinable, polarities, RISING),
        window,
        prior_sigma_px=float(s.get("prior_sigma_mm", PRIOR_SIGMA_MM)) * px_per_mm,
        **spans,
    )
    result = _past_cavity_echo(frame, result, channels, directions, px_per_mm, spans)
    keep = np.array([name in PROJECT_ONLY for name in channels], dtype=bool) & refinable
    if bloom_correction:
        result = _bloom_corrected(frame, result, channels, directions, polarities, refinable & ~keep, px_per_mm)
    if not keep.any():
        return result
    points = result.points_xy.copy()
    points[keep] = starts[keep]
    shift = np.where(keep, 0.0, result.shift_px)
    return EdgeRefinement(points, shift, result.contrast_grey, result.found, result.window_px,
                          result.rival_contrast_grey, result.rival_shift_px, result.searched_shift_px,
                          result.past_gap_px)


#: The LV posterior wall is solid tissue.  A blood-dark run at least :data:`WALL_GAP_MM` long
#: between ``lv_pw`` and ``pw_pericardium`` (darker than :data:`WALL_GAP_LEVEL` of the way from
#: the LV blood to the wall) means ``lv_pw`` sits on an echo inside the cavity: the posterior
#: mitral leaflet or a chord lying near the wall in diastole, the classic LVID pitfall.  The
#: caliper then goes to the wall's interface just past the gap (searched within
#: :data:`WALL_GAP_SEARCH_MM`) ...
WALL_GAP_MM = 1.0
WALL_GAP_LEVEL = 0.5
WALL_GAP_SEARCH_MM = 2.5
#: ... provided a wall at least this thick (mm) is left before the pericardium (a posterior wall
#: is 6-12 mm; a thinner remainder means the gap was an echo-poor band inside the wall).
WALL_GAP_MIN_WALL_MM = 4.0


def _past_cavity_echo(frame: np.ndarray, result: EdgeRefinement, channels: Sequence[str], directions: np.ndarray,
                      px_per_mm: float, spans: Mapping[str, float]) -> EdgeRefinement:
    """``result`` with ``lv_pw`` moved past a blood-dark gap inside the posterior wall caliper (see
    :data:`WALL_GAP_MM`); unchanged where there is none or the three LV-line points are not all found."""
    index = {name: i for i, name in enumerate(channels)}
    if not {"septum_lv", "lv_pw", "pw_pericardium"} <= index.keys():
        return result
    i = index["lv_pw"]
    if not (result.found[i] and result.found[index["pw_pericardium"]]):
        return result
    u = directions[i]
    ppm = float(px_per_mm)
    lv_pw = result.points_xy[i]
    lv_px = float(np.dot(lv_pw - result.points_xy[index["septum_lv"]], u))
    wall_px = float(np.dot(result.points_xy[index["pw_pericardium"]] - lv_pw, u))
    if not np.any(u) or lv_px < 5.0 * ppm or wall_px < 3.0 * ppm:
        return result
    step_px = 0.25 * ppm  # samples 0.25 mm apart: the smoothing (in pixels) is converted to samples
    t = np.arange(-lv_px, wall_px, step_px)
    profile = line_profiles(frame, lv_pw[None], u[None], t, float(spans["across_half_width_px"]),
                             gaussian_kernel(float(spans["smooth_px"]) / step_px))[0]
    blood = float(np.median(profile[(t > -0.75 * lv_px) & (t < -0.25 * lv_px)]))
    wall = float(np.percentile(profile[t > 0], 75))
    if wall - blood < float(spans["min_contrast_grey"]):
        return result
    dark = (profile < blood + WALL_GAP_LEVEL * (wall - blood)) & (t > 0.5 * ppm) & (t < wall_px - 1.5 * ppm)
    gap_end, gap_mm = None, 0.0
    run = 0
    for k in range(len(t)):
        run = run + 1 if dark[k] else 0
        if run * 0.25 >= WALL_GAP_MM and (k + 1 == len(t) or not dark[k + 1]):
            gap_end, gap_mm = float(t[k]), run * 0.25
    if gap_end is None:
        return result
    after = refine_to_edges(frame, (lv_pw + gap_end * u)[None], u[None], [RISING], WALL_GAP_SEARCH_MM * ppm,
                            prior_sigma_px=WALL_GAP_SEARCH_MM * ppm, **spans)
    moved = gap_end + float(after.shift_px[0])
    if not after.found[0] or wall_px - moved < WALL_GAP_MIN_WALL_MM * ppm:
        return result  # no wall step past the gap, or too thin a wall left: the gap was in the wall
    points = result.points_xy.copy()
    points[i] = after.points_xy[0]
    shift = np.asarray(result.shift_px, dtype=np.float64).copy()
    shift[i] += moved
    searched = np.asarray(result.searched_shift_px, dtype=np.float64).copy()
    searched[i] += moved
    contrast = np.asarray(result.contrast_grey, dtype=np.float64).copy()
    contrast[i] = float(after.contrast_grey[0])
    log.info("lv_pw sat on an echo inside the LV (a %.1f mm blood gap behind it): moved %.1f mm onto the wall",
             gap_mm, moved / ppm)
    past_gap = np.zeros(len(points))
    past_gap[i] = moved
    return EdgeRefinement(points, shift, contrast, result.found, result.window_px, result.rival_contrast_grey,
                          result.rival_shift_px, searched, past_gap)


def _bloom_corrected(frame: np.ndarray, result: EdgeRefinement, channels: Sequence[str], directions: np.ndarray,
                     polarities: np.ndarray, movable: np.ndarray, px_per_mm: float) -> EdgeRefinement:
    """``result`` with each found, movable blood-tissue interface moved by the shipped bloom
    correction (:mod:`echomeasure.propose.interface_offset`) along its line, towards the tissue or
    the blood."""
    model = shipped_model()
    blood_side = np.array([name in BLOOD_INTERFACES for name in channels], dtype=bool)
    idx = np.flatnonzero(movable & result.found & blood_side)
    if model is None or len(idx) == 0:
        return result
    tissue = directions[idx] * polarities[idx, None]
    profiles = sample_profiles(frame, result.points_xy[idx], tissue, px_per_mm)
    offsets_px = model.offsets_mm(profiles, [channels[int(i)] for i in idx]) * float(px_per_mm)
    points = result.points_xy.copy()
    points[idx] += offsets_px[:, None] * tissue
    shift = np.asarray(result.shift_px, dtype=np.float64).copy()
    shift[idx] += offsets_px * polarities[idx]  # signed along the search direction
    # the confidence keeps judging the search's move (model vs image), not this correction
    return EdgeRefinement(points, shift, result.contrast_grey, result.found, result.window_px,
                          result.rival_contrast_grey, result.rival_shift_px, result.searched_shift_px,
                          result.past_gap_px)


def apply_edge_offsets(
    keypoints_xy: np.ndarray,
    channels: Sequence[str],
    offsets_mm: Mapping[str, float] | None,
    px_per_mm: float,
) -> np.ndarray:
    """Shift refined PLAX keypoints by a caliper convention, each along its own caliper line.

    A site's (or reviewer's) caliper convention is a systematic offset of each endpoint from the
    tissue-blood interface along the caliper line (e.g. *leading edge*: the LV cavity endpoints
    further out).  Fine-tuning learns it from reviews
    (:func:`echomeasure.training.finetune.learn_edge_offsets_mm`) and stores it in the weights
    entry (``entry.decode.edge_offsets_mm``); ``propose`` applies it after
    :func:`refine_plax_keypoints`.

    Parameters
    ----------
    keypoints_xy : (K, 2)
        One frame's keypoints in image pixels, in ``channels`` order (normally refined).
    channels : sequence of str
        Keypoint name of each row.
    offsets_mm : mapping of str to float, optional
        Signed offset per keypoint in mm along its search direction of
        :func:`plax_search_lines` (the LV line points from ``septum_lv`` to ``lv_pw``, the
        aortic-root line from ``ao_anterior`` to ``ao_posterior``); missing keypoints: 0.
    px_per_mm : float
        Image pixels per millimetre.

    Returns
    -------
    (K, 2) float64
        The shifted keypoints.  Every keypoint moves once, along the line through the *input*
        keypoints, so a keypoint shared by two measurements moves consistently for both and
        keypoints of one line stay on it; keypoints without a caliper line stay where they are.
    """
    kp = np.array(keypoints_xy, dtype=np.float64).reshape(-1, 2)
    if not offsets_mm:
        return kp
    _, directions, _, refinable = plax_search_lines(kp, channels)
    shift_mm = np.array([float(offsets_mm.get(name, 0.0)) for name in channels])
    shift_mm = np.where(refinable & np.isfinite(shift_mm), shift_mm, 0.0)
    return kp + (shift_mm * float(px_per_mm))[:, None] * directions


def edge_offsets_along_lines_mm(
    reference_xy: np.ndarray,
    target_xy: np.ndarray,
    channels: Sequence[str],
    px_per_mm: float,
) -> np.ndarray:
    """Signed offset (mm) of target keypoints from reference keypoints along the caliper lines.

    The inverse of :func:`apply_edge_offsets`: the lines and directions are those of
    :func:`plax_search_lines` on ``reference_xy`` (e.g. a model's refined keypoints), and each
    offset is the projection of ``target - reference`` (e.g. a reviewer's point) onto its
    keypoint's direction.

    Returns
    -------
    (K,) float64
        NaN where a keypoint has no caliper line or either point is missing (NaN).
    """
    ref = np.asarray(reference_xy, dtype=np.float64).reshape(-1, 2)
    tgt = np.asarray(target_xy, dtype=np.float64).reshape(-1, 2)
    _, directions, _, refinable = plax_search_lines(ref, channels)
    along_px = np.sum((tgt - ref) * directions, axis=1)
    out = along_px / float(px_per_mm)
    ok = refinable & np.isfinite(out)
    return np.where(ok, out, np.nan)


__all__ = [
    "FALLING",
    "PLAX_INTERFACES",
    "PROJECT_ONLY",
    "RISING",
    "EdgeRefinement",
    "apply_edge_offsets",
    "edge_offsets_along_lines_mm",
    "decode_confidence_gate",
    "edge_confidence_factor",
    "interface_confidence_factor",
    "plax_px_per_mm",
    "plax_search_lines",
    "refine_plax_keypoints",
    "refine_to_edges",
    "resolution_confidence_factor",
]
