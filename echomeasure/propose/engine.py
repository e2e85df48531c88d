"""Propose measurements for one clip: models frame by frame, decoding, smoothing, ED/ES, values.

``propose(clip)`` is what the CLI (``echomeasure measure``), the store pipeline and the review
UI call.  Everything heavy (weights, ONNX sessions) is loaded once per process and reused.

2D (PLAX cine):
    all frames -> crop to the 2D region -> ``plax-linear`` heatmaps (batched) -> local
    soft-argmax + confidence -> image pixels -> confidence-weighted smoothing in ms ->
    LV diameter per frame -> ED (largest) / ES (smallest) -> ED measurements (ivsd, lvidd,
    lvpwd, aortic_root) on ED, ES measurements (lvids, la) on ES -> cm via the DICOM regions.
Doppler (a clip with a spectral region): :mod:`echomeasure.propose.doppler`.
Apical views (A4C, A2C): :mod:`echomeasure.propose.apical`.  Values through the calibration:
:mod:`echomeasure.propose.values`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from echomeasure import catalog
from echomeasure.errors import MeasurementError
from echomeasure.ingest.calibration import pixel_length
from echomeasure.ingest.clip import Clip
from echomeasure.propose import doppler, flags, orientation, seg_crosscheck
from echomeasure.propose.temporal import phases_in_doubt, select_ed_es, smooth_tracks
from echomeasure.propose.types import ClipProposals, ModelInfo, Point, Proposal
from echomeasure.propose.values import physical_value, plausibility

log = logging.getLogger(__name__)

#: Frames per inference batch: large enough to amortise per-call overhead, small enough that
#: the float input of one batch stays a few MB whatever the clip length.
BATCH_SIZE = 16
Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------- requests


def parse_only(only: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """Normalise ``--only``: a comma-separated string or names; unknown names raise.

    Raises
    ------
    MeasurementError
        An unknown measurement name (the message lists the known ones).
    """
    if only is None:
        return None
    names = [s.strip().lower() for s in (only.split(",") if isinstance(only, str) else only)]
    names = [n for n in names if n]
    if not names:
        return None
    unknown = [n for n in names if n not in catalog.CATALOG]
    if unknown:
        raise MeasurementError(
            f"unknown measurement {unknown[0]!r}; choose from {', '.join(catalog.CATALOG)}"
        )
    return tuple(dict.fromkeys(names))


def _check_kind(only: tuple[str, ...] | None, kind: str) -> None:
    if not only:
        return
    for name in only:
        mode = catalog.get(name).mode
        if mode != kind:
            what = "a Doppler" if mode == "doppler" else "a 2D"
            clip_kind = "a spectral Doppler strip" if kind == "doppler" else "a 2D cine"
            fits = ", ".join(catalog.DOPPLER if kind == "doppler" else catalog.LINEAR_2D)
            raise MeasurementError(
                f"{name} is {what} measurement but this clip is {clip_kind}; for this clip use one of {fits}"
            )


# --------------------------------------------------------------------------- models


@dataclass
class Engine:
    entry: Any  # registry.WeightsEntry (its file verified against the manifest's sha256)
    runner: Any  # runtime.HeatmapRunner, or any callable (B, 3, H, W) array -> (B, C, H, W) logits

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(self.entry.name, self.entry.version, self.entry.sha256)

    @property
    def sigma_px(self) -> float:
        return float(self.entry.decode.sigma_px)

    @property
    def max_shift_px(self) -> float:
        """How far decoding may move a point from the arg-max (weights entry, default 1.5 px)."""
        return float(self.entry.decode.max_shift_px)


_ENGINES: dict[tuple, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(name: str, version: str | None = None, *, weights_dir: Any = None, backend: str = "auto") -> Engine:
    """The verified weights entry + runner for a registry name (cached per process, keyed by sha256).

    The weight file's sha256 is checked against the manifest when the engine is created; with
    ONNX Runtime and a cached graph no torch model is built (see :mod:`echomeasure.models.runtime`).
    """
    from echomeasure.models import registry
    from echomeasure.models.runtime import HeatmapRunner

    entry = registry.get_entry(name, version, weights_dir)
    key = (name, entry.version, entry.sha256, str(registry.resolve_path(entry, weights_dir)), backend)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            path = registry.verify_file(entry, weights_dir)
            engine = Engine(entry, HeatmapRunner.for_entry(entry, path, backend=backend))  # type: ignore[arg-type]
            _ENGINES[key] = engine
            log.info("loaded %s %s (%s backend)", name, entry.version, engine.runner.backend)
    return engine


def clear_engines() -> None:
    """Forget the cached models (after fine-tuning registers a new version, or in tests)."""
    with _ENGINES_LOCK:
        _ENGINES.clear()


# --------------------------------------------------------------------------- 2D


def _within_image(
    points: tuple[Point, Point], width_px: int, height_px: int
) -> tuple[tuple[Point, Point], bool]:
    """Endpoints moved onto the image (pixel centres 0 .. size - 1) and whether any had left it.

    A model can extrapolate a keypoint beyond the frame (e.g. after the deep-sector crop); the
    reviewer gets a caliper on the image, proposed with confidence 0 so that it is flagged.
    """
    clamped = tuple(
        (min(max(x, 0.0), width_px - 1.0), min(max(y, 0.0), height_px - 1.0)) for x, y in points
    )
    return (clamped[0], clamped[1]), clamped != tuple(points)


@dataclass(frozen=True)
class _PlaxTracks:
    """Keypoint tracks of a PLAX cine in image pixels, and its ED and ES frames."""

    raw: np.ndarray  # (N, K, 2) as decoded
    smoothed: np.ndarray  # (N, K, 2) confidence-weighted smoothing in ms
    conf: np.ndarray  # (N, K) decode confidence
    lv_diameter_px: np.ndarray  # (N,) septum_lv to lv_pw
    ed: int
    es: int


def _propose_2d(
    clip: Clip,
    engine: Engine,
    wanted: tuple[str, ...],
    *,
    per_frame: bool,
    progress: Progress | None,
    batch_size: int,
    timings: dict[str, float],
    refine_edges: bool = True,
    anatomy_check: bool = True,
    depth_zoom: bool = True,
    notices: list[str] | None = None,
) -> tuple[list[Proposal], int, int, list[dict]]:
    """The linear PLAX calipers of a cine: ``(proposals, ed, es, per-frame records)``.

    Keypoints on every frame -> smoothed tracks and ED/ES -> endpoints onto the tissue-blood
    interfaces -> the anatomy check of the ED and ES sets -> one proposal per wanted caliper.
    """
    from echomeasure.propose import edges
    from echomeasure.propose.zoom import plax_crop_transform

    entry = engine.entry
    ch = _plax_channels(entry, wanted)
    # a deep sector is shown to the model as a shallower scan would show it (propose.zoom)
    transform = plax_crop_transform(clip, entry.input_size, depth_zoom)
    pts_model, conf = _keypoints_per_frame(clip, engine, transform, batch_size, progress, timings)
    tracks = _plax_tracks(clip, transform.to_image(pts_model), conf, ch, timings)
    px_per_mm = edges.plax_px_per_mm(
        clip.regions, tracks.smoothed[tracks.ed, ch["septum_lv"]], user_cm_per_px=clip.user_cm_per_px,
        fallback_height_px=transform.box.height_px,
    )
    points_px, endpoint_conf = tracks.smoothed, tracks.conf
    if refine_edges:
        points_px, endpoint_conf = _refine_plax_to_edges(clip, entry, tracks, px_per_mm, per_frame, timings,
                                                         notices if notices is not None else [])
    factors: dict[str, float] = {}
    if anatomy_check and set(ch) == set(catalog.KEYPOINTS_2D):
        points_px, factors = _anatomy_checked(clip, points_px, tracks, ch, mm_per_px=1.0 / px_per_mm)
    proposals = [
        _caliper_proposal(clip, engine, name, ch, points_px, endpoint_conf, factors.get(name, 1.0), tracks)
        for name in wanted
    ]
    frames = _plax_frame_records(clip, ch, points_px, tracks) if per_frame else []
    return proposals, tracks.ed, tracks.es, frames


def _plax_channels(entry: Any, wanted: tuple[str, ...]) -> dict[str, int]:
    """Keypoint name -> heatmap channel of a PLAX model; raises when a wanted caliper lacks one."""
    ch = {name: i for i, name in enumerate(entry.channels)}
    missing = {kp for m in wanted for kp in catalog.LINEAR_ENDPOINTS[m]} - set(ch)
    if missing or not {"septum_lv", "lv_pw"} <= set(ch):
        lacking = sorted(missing or {"septum_lv", "lv_pw"} - set(ch))
        raise MeasurementError(
            f"model {entry.name} {entry.version} has no channel for {', '.join(lacking)}; "
            "use a model version trained with all PLAX keypoints"
        )
    return ch


def _keypoints_per_frame(
    clip: Clip, engine: Engine, transform: Any, batch_size: int, progress: Progress | None, timings: dict[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, 2) keypoints in model-input pixels and (N, K) confidences of every frame, in batches."""
    from echomeasure.models.decode import decode_keypoints

    n = clip.n_frames
    k = len(engine.entry.channels)
    pts_model = np.zeros((n, k, 2))
    conf = np.zeros((n, k))
    t_pre = t_inf = t_dec = 0.0
    for start in range(0, n, batch_size):
        t0 = time.perf_counter()
        x = transform.apply_array(clip.frames[start : start + batch_size])
        t1 = time.perf_counter()
        logits = engine.runner(x)
        t2 = time.perf_counter()
        decoded = decode_keypoints(logits, sigma_px=engine.sigma_px, max_shift_px=engine.max_shift_px)
        t3 = time.perf_counter()
        pts_model[start : start + len(x)] = decoded.points_xy
        conf[start : start + len(x)] = decoded.confidence
        t_pre, t_inf, t_dec = t_pre + t1 - t0, t_inf + t2 - t1, t_dec + t3 - t2
        if progress is not None:
            progress(min(n, start + batch_size), n)
    timings.update(preprocess=t_pre, inference=t_inf, decode=t_dec)
    return pts_model, conf


def _plax_tracks(
    clip: Clip, raw: np.ndarray, conf: np.ndarray, ch: Mapping[str, int], timings: dict[str, float]
) -> _PlaxTracks:
    """Smooth the image-pixel tracks and pick ED (largest LV diameter) and ES (smallest)."""
    t0 = time.perf_counter()
    smoothed = smooth_tracks(raw, conf, clip.frame_time_ms)
    a, b = ch["septum_lv"], ch["lv_pw"]
    diameter = np.hypot(*(smoothed[:, a] - smoothed[:, b]).T)
    diameter_conf = np.minimum(conf[:, a], conf[:, b])
    ed, es = select_ed_es(diameter, diameter_conf, frame_time_ms=clip.frame_time_ms)
    timings["smoothing"] = time.perf_counter() - t0
    return _PlaxTracks(raw=raw, smoothed=smoothed, conf=conf, lv_diameter_px=diameter, ed=ed, es=es)


def _refine_plax_to_edges(
    clip: Clip, entry: Any, tracks: _PlaxTracks, px_per_mm: float, per_frame: bool, timings: dict[str, float],
    notices: list[str],
) -> tuple[np.ndarray, np.ndarray]:
    """Calipers onto the tissue-blood interfaces of the full-resolution frame: ``(points, confidences)``.

    Keypoints move (so a keypoint shared by two measurements moves once), on the reported frames
    only unless every frame is asked for; an endpoint's confidence becomes decode gate x
    interface factor x image resolution.  A notice says when the posterior-wall caliper of the ED
    or ES frame was moved off an echo inside the LV (edges.WALL_GAP_MM).
    """
    from echomeasure.propose import edges

    t0 = time.perf_counter()
    points_px = tracks.smoothed.copy()
    # the version's caliper convention (learned from a site's reviews): offsets from the interface
    offsets_mm = entry.decode.edge_offsets_mm
    endpoint_conf = edges.decode_confidence_gate(tracks.conf) * edges.resolution_confidence_factor(px_per_mm)
    for i in range(clip.n_frames) if per_frame else sorted({tracks.ed, tracks.es}):
        refined = edges.refine_plax_keypoints(clip.frames[i], tracks.smoothed[i], entry.channels, px_per_mm)
        points_px[i] = edges.apply_edge_offsets(refined.points_xy, entry.channels, offsets_mm, px_per_mm)
        endpoint_conf[i] *= edges.interface_confidence_factor(refined)
        if refined.past_gap_px is not None and i in (tracks.ed, tracks.es):
            phase = "ED" if i == tracks.ed else "ES"
            moved_mm = float(np.max(np.abs(refined.past_gap_px))) / px_per_mm
            notices.append(f"{phase} frame {i}: the posterior-wall caliper sat on an echo inside the LV (a mitral "
                           f"leaflet or chord?) with blood behind it; moved {moved_mm:.1f} mm onto the wall: check "
                           "the LV internal diameter and posterior wall")
    timings["edge_refinement"] = time.perf_counter() - t0
    return points_px, endpoint_conf


def _anatomy_checked(
    clip: Clip, points_px: np.ndarray, tracks: _PlaxTracks, ch: Mapping[str, int], *, mm_per_px: float
) -> tuple[np.ndarray, dict[str, float]]:
    """The ED and ES point sets checked against PLAX geometry: ``(points, confidence factor per caliper)``.

    One point off its line is moved back onto it; a set that breaks the geometry (order, angle,
    ratios, ED vs ES) gets factor 0, so it is flagged for the reviewer.
    """
    from echomeasure.propose import consistency

    ed, es = tracks.ed, tracks.es
    order = [ch[kp] for kp in catalog.KEYPOINTS_2D]
    ed_pts, es_pts, factors, why = consistency.consistency_factors(
        points_px[ed][order], points_px[es][order], mm_per_px, image_wh=(clip.width, clip.height))
    points_px = points_px.copy()
    if ed != es:
        points_px[es, order] = es_pts
    points_px[ed, order] = ed_pts
    for name, reason in why.items():
        log.info("%s: %s (confidence x %.1f)", name, reason, factors[name])
    return points_px, factors


def _caliper_proposal(
    clip: Clip, engine: Engine, name: str, ch: Mapping[str, int], points_px: np.ndarray, endpoint_conf: np.ndarray,
    anatomy_factor: float, tracks: _PlaxTracks,
) -> Proposal:
    """One linear caliper on its phase's frame, valued through the clip's calibration."""
    frame = tracks.ed if catalog.get(name).phase == "ed" else tracks.es
    p, q = (ch[kp] for kp in catalog.LINEAR_ENDPOINTS[name])
    points, left_image = _within_image(
        ((float(points_px[frame, p, 0]), float(points_px[frame, p, 1])),
         (float(points_px[frame, q, 0]), float(points_px[frame, q, 1]))),
        clip.width, clip.height,
    )
    if left_image:
        log.warning("%s: the model placed an endpoint outside the image; moved to its edge with confidence 0", name)
    value, unit, signed = physical_value(clip, name, points)
    return Proposal(
        name=name,
        frame=frame,
        points=points,
        value=value,
        unit=unit,
        confidence=plausibility(name, value, unit) * float(
            min(endpoint_conf[frame, p], endpoint_conf[frame, q])
        ) * anatomy_factor * (0.0 if left_image else 1.0),
        model=engine.info,
        pixel_length=pixel_length(points[0], points[1]),
        signed_value=signed,
    )


def _plax_frame_records(clip: Clip, ch: Mapping[str, int], points_px: np.ndarray, tracks: _PlaxTracks) -> list[dict]:
    """The ``--per-frame`` records of a cine: points, decoded points, confidences and LV diameter."""
    raw, conf = tracks.raw, tracks.conf
    return [
        {
            "frame": i,
            "time_ms": None if clip.frame_time_ms is None else round(i * clip.frame_time_ms, 3),
            "points": {
                kp: [round(float(points_px[i, j, 0]), 2), round(float(points_px[i, j, 1]), 2)] for kp, j in ch.items()
            },
            "raw_points": {kp: [round(float(raw[i, j, 0]), 2), round(float(raw[i, j, 1]), 2)] for kp, j in ch.items()},
            "confidence": {kp: round(float(conf[i, j]), 4) for kp, j in ch.items()},
            "lv_diameter_px": round(float(tracks.lv_diameter_px[i]), 2),
        }
        for i in range(clip.n_frames)
    ]


# --------------------------------------------------------------------------- view routing


def _classify_view(clip: Clip, versions: Mapping[str, str], weights_dir: Any, timings: dict[str, float]):
    """The clip's view decision and notices (None and a notice when no view classifier is registered)."""
    from echomeasure.models import view as view_model

    if not view_model.view_registered(weights_dir):
        return None, ["no view classifier is registered: the clip is taken as PLAX (2D) or Doppler by its regions"]
    t0 = time.perf_counter()
    decision = view_model.classify_view(clip, version=versions.get(view_model.VIEW_MODEL), weights_dir=weights_dir)
    timings["view"] = time.perf_counter() - t0
    notices = []
    title = catalog.VIEW_TITLES.get(decision.name, decision.name)
    if clip.kind == "2d" and decision.name != "plax" and clip.n_frames < view_model.MIN_FRAMES_TO_ROUTE:
        notices.append(
            f"a single still frame: the view classifier judges cines (it sees {title}, confidence "
            f"{decision.confidence:.2f}); the frame is measured as PLAX: check the view"
        )
    elif clip.kind == "2d" and decision.name == "other" and clip.declared_color_flow is not None:
        notices.append(_other_view_of_color_flow(clip, decision.confidence))
    elif clip.kind == "2d" and decision.name != "plax":
        notices.append(
            f"this clip looks like {title} ({decision.name}, confidence {decision.confidence:.2f}), not a parasternal "
            "long-axis view: no PLAX calipers are proposed; measurements can still be added by hand"
        )
    elif clip.kind == "doppler" and decision.name != "doppler":
        notices.append(f"the view classifier sees {title} ({decision.confidence:.2f}), but the file declares a spectral "
                       "Doppler region: Doppler measurements are proposed by the region")
    if decision.confidence < view_model.LOW_CONFIDENCE and not (clip.kind == "doppler" and decision.name != "doppler"):
        two = sorted(decision.probabilities.items(), key=lambda kv: -kv[1])[:2]
        notices.append(f"view uncertain ({', '.join(f'{v} {p:.2f}' for v, p in two)}): check the view and the proposals")
    return decision, notices


def color_flow_notice(clip: Clip) -> str | None:
    """The notice of a 2D clip whose DICOM declares colour flow (:attr:`Clip.declared_color_flow`),
    else None.

    The 2D models (view, calipers, contours) learnt grey B-mode: on colour pixels their proposals
    need checking.  A spectral Doppler strip is measured on its spectrum (its colour is in the 2D
    reference image, which is not measured), so it gets none.  Metadata only, never the pixels.
    UltrasoundColorDataPresent alone is worded with doubt: pydicom's Philips test image carries it
    on grey B-mode.
    """
    declared = clip.declared_color_flow
    if declared is None or clip.kind != "2d":
        return None
    if declared == "region":
        return ("colour-flow clip (the DICOM declares a colour-flow region): proposals are made for grey B-mode; "
                "check them, or measure on the clip without colour")
    return ("colour data declared (UltrasoundColorDataPresent, but no colour-flow region): if the clip shows colour "
            "flow, proposals are made for grey B-mode; check them, or measure on the clip without colour")


def _other_view_of_color_flow(clip: Clip, confidence: float) -> str:
    """The view notice of a cine the view classifier calls "other" when its DICOM declares colour
    flow: the colour the classifier was not trained on is the likely reason (a colour-flow
    region), or may be (the UltrasoundColorDataPresent flag alone, which a grey B-mode image of
    pydicom's test files also carries)."""
    declared = clip.declared_color_flow
    why = ("colour flow is the likely reason (the DICOM declares a colour-flow region), not that it is no echo"
           if declared == "region" else
           "colour flow may be the reason (the DICOM declares colour data), or it is another view or not an echo")
    return (f"the view classifier does not recognise this clip (other, confidence {confidence:.2f}): {why}; "
            "no PLAX calipers are proposed; measurements can still be added by hand, or measure on the clip "
            "without colour")


def _view_model_info(decision: Any, weights_dir: Any) -> ModelInfo:
    from echomeasure.models import view as view_model

    entry = view_model.load_view_classifier(decision.model_version, weights_dir).entry
    return ModelInfo(entry.name, entry.version, entry.sha256)


# --------------------------------------------------------------------------- entry point


def _unwrap(clip_or_deidentified: Any) -> Clip:
    if isinstance(clip_or_deidentified, Clip):
        return clip_or_deidentified
    inner = getattr(clip_or_deidentified, "clip", None)
    if isinstance(inner, Clip):
        return inner
    raise TypeError(f"propose() needs a Clip or a de-identified clip, got {type(clip_or_deidentified).__name__}")


def propose(
    clip_or_deidentified: Any,
    *,
    only: str | Iterable[str] | None = None,
    per_frame: bool = False,
    progress: Progress | None = None,
    model_versions: Mapping[str, str] | None = None,
    weights_dir: Any = None,
    backend: str = "auto",
    batch_size: int = BATCH_SIZE,
    snap_doppler_to_envelope: bool = True,
    refine_edges: bool = True,
    anatomy_check: bool = True,
    depth_zoom: bool = True,
    check_view: bool = True,
) -> ClipProposals:
    """Propose the measurements that apply to a clip.

    Parameters
    ----------
    clip_or_deidentified
        A :class:`~echomeasure.ingest.clip.Clip`, or a de-identified clip carrying one as ``.clip``.
    only
        Catalogue names (or one comma-separated string) to restrict what is proposed; a name of
        the other mode (e.g. ``av_vmax`` on a 2D cine) raises :class:`MeasurementError`.
    per_frame
        Also return per-frame points and confidences (``ClipProposals.frames``).
    progress
        Called as ``progress(frames_done, frames_total)`` after every batch.
    model_versions
        Registry name -> version to use instead of the active one (e.g. ``{"plax-linear": "1.0"}``).
    weights_dir
        Weights folder (default ``$ECHOMEASURE_WEIGHTS`` or ``<project>/weights``).
    backend
        ``"auto"``, ``"onnx"`` or ``"torch"`` (see :class:`echomeasure.models.runtime.HeatmapRunner`).
    batch_size
        Frames per inference batch.
    snap_doppler_to_envelope
        Move each Doppler peak onto the envelope's outer edge (:mod:`echomeasure.propose.envelope`); off: raw points.
    refine_edges
        Move each 2D caliper endpoint along its line onto the tissue-blood interface of the
        full-resolution frame (:mod:`echomeasure.propose.edges`, ``timings_s["edge_refinement"]``);
        an endpoint without a clear interface loses confidence.  Off: the smoothed model points.
    anatomy_check
        Check the ED and ES caliper sets against PLAX geometry (:mod:`echomeasure.propose.consistency`):
        one point off its line is moved back onto it, an implausible set gets confidence 0.
    depth_zoom
        Show the 2D model at most :data:`echomeasure.propose.zoom.VIEW_DEPTH_CM` of a deeper sector.
    check_view
        Ask the view classifier first (when one is registered); off takes the clip as PLAX or
        Doppler by its regions (for single frames whose view is known, as the caliper evaluation).

    Returns
    -------
    ClipProposals
        Points in original-image pixels; values in cm / m/s (None with unit ``"px"`` when the
        clip is not calibrated); ``timings_s`` says where the time went.

    Raises
    ------
    MeasurementError
        Unknown name in ``only`` or a name that does not apply to this kind of clip.
    WeightsError
        The model's weights are missing or do not match the manifest.
    """
    t_start = time.perf_counter()
    clip = _unwrap(clip_or_deidentified)
    wanted_only = parse_only(only)
    _check_kind(wanted_only, clip.kind)
    run = _Run(dict(model_versions or {}), weights_dir, backend, per_frame, progress, batch_size, timings={})

    def routed(clip: Clip) -> ClipProposals:
        view, notices = _classify_view(clip, run.versions, weights_dir, run.timings) if check_view else (None, [])
        color = color_flow_notice(clip)
        if color is not None:  # first: it explains what the notices after it say of the view and calipers
            notices.insert(0, color)
        if _routed_away_from_plax(clip, view):
            return _propose_other_view(clip, view, notices, run)
        if clip.kind == "2d":
            return _propose_plax(clip, wanted_only, view, notices, run, refine_edges=refine_edges,
                                 anatomy_check=anatomy_check, depth_zoom=depth_zoom)
        return _propose_strip(clip, wanted_only, view, notices, run, snap_to_envelope=snap_doppler_to_envelope)

    # an apex-down 2D display is shown to the models upright and its proposals mapped back
    result = orientation.propose_upright(clip, routed)
    result.timings_s["total"] = time.perf_counter() - t_start
    return result


@dataclass(frozen=True)
class _Run:
    """The settings of one :func:`propose` call that its steps share, and where its timings go."""

    versions: dict[str, str]
    weights_dir: Any
    backend: str
    per_frame: bool
    progress: Progress | None
    batch_size: int
    timings: dict[str, float]

    def engine(self, name: str) -> Engine:
        """The registry model ``name`` at the version asked for (its load time in ``timings``)."""
        t0 = time.perf_counter()
        engine = get_engine(name, self.versions.get(name), weights_dir=self.weights_dir, backend=self.backend)
        self.timings["load_model"] = time.perf_counter() - t0
        return engine


def _view_judges(clip: Clip) -> bool:
    """Whether the view classifier's decision routes the clip: a cine (motion is one of its
    channels; a single still frame is measured as PLAX)."""
    from echomeasure.models.view import MIN_FRAMES_TO_ROUTE

    return clip.n_frames >= MIN_FRAMES_TO_ROUTE


def _routed_away_from_plax(clip: Clip, view: Any) -> bool:
    """True for a cine the view classifier judged not PLAX (single frames are measured as PLAX)."""
    return clip.kind == "2d" and view is not None and view.name != "plax" and _view_judges(clip)


#: Below this view confidence, the PLAX calipers of a cine are kept only when some are credible
#: (a still frame is not judged: the classifier's third channel is motion).  A real A4C cine
#: (pydicom-data's color3d_jpeg_baseline.dcm) was called PLAX with 0.63 and every caliper came out
#: flagged (IVSd 6.3 cm, LVIDd 13.5 cm); on 60 synthetic PLAX cines (20 per family, the held-out
#: one included) the view confidence was never below 0.85.
PLAX_SURE_CONFIDENCE = 0.8


def _doubtful_plax_notice(view: Any, proposals: list[Proposal], entry: Any) -> str | None:
    """A notice when the view classifier is unsure of PLAX (below :data:`PLAX_SURE_CONFIDENCE`) and no
    PLAX caliper is credible (every one below the keypoint model ``entry``'s pooled threshold,
    :func:`echomeasure.propose.flags.none_credible`, or most anatomically implausible): two
    independent opinions that the cine is not PLAX.  None keeps the calipers."""
    if view is None or (view.name == "plax" and view.confidence >= PLAX_SURE_CONFIDENCE):
        return None
    valued = [p for p in proposals if p.value is not None]
    if len(valued) < 3:
        return None
    implausible = sum(not catalog.is_plausible(p.name, p.value, p.unit) for p in valued)
    low = flags.none_credible(valued, entry)
    if not (low or 2 * implausible > len(valued)):
        return None
    two = ", ".join(f"{v} {p:.2f}" for v, p in sorted(view.probabilities.items(), key=lambda kv: -kv[1])[:2])
    # say which of the two held: "all flagged" was false where most were implausible but few low,
    # and where a measurement judged by its own figures was not flagged though below the pooled threshold
    why = "all below the model's low-confidence threshold, " if low else ""
    return (f"the view classifier is unsure of PLAX ({two}) and none of the {len(valued)} PLAX calipers is credible "
            f"({why}{implausible} anatomically implausible): this is probably not a parasternal long-axis view, "
            "so no PLAX calipers are proposed; measurements can still be added by hand")


def select_phase_doubts(clip: Clip, es: int | None) -> tuple[frozenset[str], str | None]:
    """:func:`~echomeasure.propose.temporal.phases_in_doubt` of a clip's chosen end-systolic frame."""
    if es is None:
        return frozenset(), None
    return phases_in_doubt(clip.n_frames, clip.frame_time_ms, int(es))


def _with_flags(proposals: list[Proposal], engine: Engine) -> list[Proposal]:
    """The proposals with ``flagged`` set by the model version's low-confidence threshold (of each measurement)."""
    return [dataclasses.replace(p, flagged=flags.entry_flags(engine.entry, p.name, p.confidence)) for p in proposals]


def _propose_other_view(clip: Clip, view: Any, notices: list[str], run: _Run) -> ClipProposals:
    """A cine of another view: apical volumes and contours when a segmentation model is registered,
    else no proposals (the PLAX models do not run; the reviewer may still add calipers by hand)."""
    from echomeasure.propose import apical

    log.info("view %s (%.2f): no PLAX proposals", view.name, view.confidence)
    if view.name in ("a4c", "a2c") and apical.seg_registered(run.weights_dir):
        engine = get_engine(apical.SEG_MODEL, run.versions.get(apical.SEG_MODEL), weights_dir=run.weights_dir,
                            backend=run.backend)
        result = apical.propose_apical(clip, view.name, engine=engine, per_frame=run.per_frame,
                                       batch_size=run.batch_size, timings=run.timings)
        return ClipProposals(kind=clip.kind, calibration=clip.calibration_source, model=result.model, measurements=[],
                             ed_frame=result.ed_frame, es_frame=result.es_frame, timings_s=run.timings,
                             view=view.as_json(), notices=notices + result.notices, volumes=result.volumes,
                             segmentations=result.segmentations)
    return ClipProposals(kind=clip.kind, calibration=clip.calibration_source,
                         model=_view_model_info(view, run.weights_dir), measurements=[], timings_s=run.timings,
                         view=view.as_json(), notices=notices)


def _propose_plax(
    clip: Clip, only: tuple[str, ...] | None, view: Any, notices: list[str], run: _Run, *, refine_edges: bool,
    anatomy_check: bool, depth_zoom: bool,
) -> ClipProposals:
    """The PLAX calipers of a 2D clip, cross-checked against ``plax-seg`` contours when it is registered;
    a mirrored PLAX display is measured the standard way round (:mod:`echomeasure.propose.orientation`)."""
    engine = run.engine("plax-linear")

    def facing(clip: Clip) -> ClipProposals:  # each run starts from the view's notices
        return _propose_plax_with(clip, engine, only, view, list(notices), run, refine_edges=refine_edges,
                                  anatomy_check=anatomy_check, depth_zoom=depth_zoom)

    return orientation.propose_plax_facing(clip, engine, facing, depth_zoom=depth_zoom)


def _propose_plax_with(
    clip: Clip, engine: Engine, only: tuple[str, ...] | None, view: Any, notices: list[str], run: _Run, *,
    refine_edges: bool, anatomy_check: bool, depth_zoom: bool,
) -> ClipProposals:
    proposals, ed, es, frames = _propose_2d(
        clip, engine, only or catalog.LINEAR_2D, per_frame=run.per_frame, progress=run.progress,
        batch_size=run.batch_size, timings=run.timings, refine_edges=refine_edges, anatomy_check=anatomy_check,
        depth_zoom=depth_zoom, notices=notices,
    )
    before_crosscheck = list(notices)
    proposals, segmentations, seg_model = seg_crosscheck.plax_crosscheck(clip, proposals, ed, es, run.versions, run.weights_dir,
                                                              run.timings, notices, per_frame=run.per_frame)
    measured = _with_flags(proposals, engine)
    doubt = _doubtful_plax_notice(view, measured, engine.entry) if _view_judges(clip) else None
    if doubt is not None:
        log.info("view %s (%.2f) and no credible PLAX caliper: none proposed", view.name, view.confidence)
        return ClipProposals(kind=clip.kind, calibration=clip.calibration_source,
                             model=_view_model_info(view, run.weights_dir), measurements=[], timings_s=run.timings,
                             view=view.as_json(), notices=[*before_crosscheck, doubt])
    # a phase whose frame may lie outside the cine: its calipers must be checked (after the view
    # doubt above, which these flags must not feed)
    phases, why = select_phase_doubts(clip, es)
    if why:
        notices.append(why)
        measured = _with_flags([dataclasses.replace(p, confidence=min(p.confidence, doppler.DOUBTFUL_CONFIDENCE))
                                if catalog.get(p.name).phase in phases else p for p in measured], engine)
    return ClipProposals(kind=clip.kind, calibration=clip.calibration_source, model=engine.info,
                         measurements=measured, ed_frame=ed, es_frame=es, frames=frames,
                         timings_s=run.timings, view=None if view is None else view.as_json(), notices=notices,
                         segmentations=segmentations, segmentation_model=seg_model)


def _propose_strip(
    clip: Clip, only: tuple[str, ...] | None, view: Any, notices: list[str], run: _Run, *, snap_to_envelope: bool
) -> ClipProposals:
    """The Doppler peaks of a spectral strip."""
    engine = run.engine("doppler-peaks")
    proposals, _, frames = doppler.propose_doppler(clip, engine, only, per_frame=run.per_frame, progress=run.progress,
                                            timings=run.timings, snap_to_envelope=snap_to_envelope, notices=notices)
    return ClipProposals(kind=clip.kind, calibration=clip.calibration_source, model=engine.info,
                         measurements=_with_flags(proposals, engine), ed_frame=None, es_frame=None, frames=frames,
                         timings_s=run.timings, view=None if view is None else view.as_json(), notices=notices,
                         segmentations=[])


def to_contract_json(proposals: ClipProposals, file_name: str, *, digits: int = 4) -> dict[str, Any]:
    """The ``echomeasure measure`` JSON (docs/architecture.md section 3) for a proposal set.

    ``file_name`` should already be a base name (no directories).
    """

    def rnd(v: float | None) -> float | None:
        return None if v is None else round(float(v), digits)

    out: dict[str, Any] = {
        "file": file_name,
        "kind": proposals.kind,
        "calibration": proposals.calibration,
        "model": {"name": proposals.model.name, "version": proposals.model.version, "sha256": proposals.model.sha256},
        "measurements": [
            {
                "name": p.name,
                "value": rnd(p.value),
                "unit": p.unit,
                "frame": p.frame,
                "points": [[round(x, 2), round(y, 2)] for x, y in p.points],
                "confidence": round(float(p.confidence), 4),
                "flagged": bool(p.flagged),
                **({"beats": [[round(x, 2), round(y, 2)] for x, y in p.beat_points]} if p.beat_points else {}),
            }
            for p in proposals.measurements
        ],
    }
    out["view"] = proposals.view
    out["notices"] = list(proposals.notices)
    out["measurements"] += [dict(v) for v in proposals.volumes]
    out["segmentations"] = list(proposals.segmentations)
    if proposals.segmentations:
        seg = proposals.contour_model
        out["segmentation_model"] = {"name": seg.name, "version": seg.version, "sha256": seg.sha256}
    if proposals.frames:
        out["frames"] = proposals.frames
    return out
