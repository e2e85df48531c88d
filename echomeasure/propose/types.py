"""What the models propose for one clip, in original-image pixel coordinates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Point = tuple[float, float]  # (x, y) pixels, x right, y down, original image


@dataclass(frozen=True)
class ModelInfo:
    """Identity of the weights that made a proposal."""

    name: str
    version: str
    sha256: str


@dataclass(frozen=True)
class Proposal:
    """One proposed measurement.

    ``value`` is in ``unit`` ("cm", "m/s", "ratio"); ``value`` is None and ``unit`` "px" when the
    clip has no calibration (``pixel_length`` then still says how long the caliper is).

    Doppler peaks are read on every beat of the strip: ``beat_points`` holds one marker per beat,
    ``value`` is the mean over those beats (ASE: average beats), and ``points`` is the one marker
    a reviewer sees and drags (the beat whose velocity is closest to that mean).
    """

    name: str
    frame: int
    points: tuple[Point, ...]
    value: float | None
    unit: str
    confidence: float
    model: ModelInfo | None = None
    pixel_length: float | None = None
    signed_value: float | None = None  # Doppler: velocity with the sign the region implies
    beat_points: tuple[Point, ...] = ()  # Doppler: the peak marker of every beat averaged
    flagged: bool = False  # low confidence for this model version (:mod:`echomeasure.propose.flags`)


@dataclass
class ClipProposals:
    """Everything proposed for one clip."""

    kind: Literal["2d", "doppler"]
    calibration: Literal["dicom", "user", "none"]
    model: ModelInfo
    measurements: list[Proposal]
    ed_frame: int | None = None
    es_frame: int | None = None
    frames: list[dict] = field(default_factory=list)  # per-frame points when asked for
    view: dict | None = None  # {"name", "confidence"} from the view classifier; None without one
    notices: list[str] = field(default_factory=list)  # what the reviewer should know (e.g. not PLAX)
    volumes: list[dict] = field(default_factory=list)  # apical: lvedv, lvesv, lvef, la_volume (JSON-ready, with method)
    # structure contours (PLAX and apical): {"frame", "structure", "polygon", "area_cm2", "confidence"}
    segmentations: list[dict] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    # the weights that drew ``segmentations`` when they are not ``model`` (PLAX: plax-seg beside plax-linear)
    segmentation_model: ModelInfo | None = None

    @property
    def contour_model(self) -> ModelInfo:
        """The model the contours are stored under: the segmentation's own, else ``model``."""
        return self.segmentation_model or self.model
