"""What the review store hands out: plain frozen dataclasses, never ORM objects.

Every record is built from database rows inside a session and detached from it, so callers
(the UI, the CLI, training, export) can keep them as long as they like.  Pixel coordinates are
``(x, y)`` in the original image (x right, y down); physical values carry their unit beside them.
Nothing here identifies a patient: UIDs are the pseudonymous ones the de-identification gate
produced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, get_args

Point = tuple[float, float]

#: What a reviewer may decide about a measurement or a contour.  The one definition: the
#: schema's CHECK constraints, the records and the validation of requests are built from it.
#: ``reopened`` undoes the decision before it (Ctrl+Z of a rejection): the measurement or
#: contour stands as proposed again, unreviewed, in the store, the worklist and the exports.
ReviewAction = Literal["accepted", "corrected", "rejected", "added", "reopened"]
REVIEW_ACTIONS: tuple[ReviewAction, ...] = get_args(ReviewAction)
#: The action that brings a reviewed measurement or contour back to review.
REOPEN_ACTION: ReviewAction = "reopened"
#: The actions after which a measurement keeps points and a value (a reject keeps none):
#: what fine-tuning and export take.
KEEPING_ACTIONS: tuple[ReviewAction, ...] = ("accepted", "corrected", "added")
#: Where a measurement stands: proposed and not reviewed yet (or reopened), or the latest
#: review's decision.
MeasurementStatus = Literal["proposed", "accepted", "corrected", "rejected", "added"]


def decision_status(action: ReviewAction) -> MeasurementStatus:
    """Where a measurement or contour stands after a review with ``action``: the decision, or
    "proposed" after a reopening."""
    if action == "reopened":
        return "proposed"
    return action


ClipStatus = Literal["no proposals", "to review", "in review", "reviewed"]
ClipKind = Literal["2d", "doppler"]
CLIP_KINDS: tuple[ClipKind, ...] = get_args(ClipKind)
CalibrationSource = Literal["dicom", "user", "none"]
CALIBRATION_SOURCES: tuple[CalibrationSource, ...] = get_args(CalibrationSource)


@dataclass(frozen=True)
class ModelVersionRecord:
    """One registered set of weights (``model_version`` row)."""

    id: int
    name: str
    version: str
    sha256: str
    parent_id: int | None
    trained_on: dict
    metrics: dict
    active: bool
    created_at: datetime


@dataclass(frozen=True)
class ClipRecord:
    """A de-identified clip in the store (``clip`` joined with its ``study``).

    ``regions`` is the Sequence of Ultrasound Regions as JSON-ready dicts (the fields of
    :class:`echomeasure.ingest.clip.Region`); ``created`` is False when ``add_clip`` found the
    clip already stored (idempotent re-ingest).
    """

    id: int
    study_uid: str
    series_uid: str
    instance_uid: str
    kind: ClipKind
    n_frames: int
    frame_time_ms: float | None
    width_px: int
    height_px: int
    regions: tuple[dict, ...]
    calibration_source: CalibrationSource
    user_cm_per_px: float | None
    pixel_sha256: str
    deid_record: dict
    created_at: datetime
    created: bool = True

    @property
    def label(self) -> str:
        """A short, non-identifying name for lists: ``clip 12 · 2d · …a1b2c3``."""
        return f"clip {self.id} · {self.kind} · …{self.instance_uid[-6:]}"

    @property
    def region_objects(self) -> tuple:
        """The regions as :class:`echomeasure.ingest.clip.Region` (for calibration maths)."""
        from echomeasure.ingest.clip import Region

        return tuple(Region(**r) for r in self.regions)


@dataclass(frozen=True)
class FrameImageRecord:
    """A de-identified frame kept in the image store (``frame_image`` row)."""

    clip_id: int
    frame_index: int
    sha256: str
    width_px: int
    height_px: int
    path: Path


@dataclass(frozen=True)
class ProposalRecord:
    """One stored model proposal.  ``value`` is None and ``unit`` "px" without calibration."""

    id: int
    clip_id: int
    frame_index: int
    measurement: str
    points: tuple[Point, ...]
    value: float | None
    unit: str
    signed_value: float | None
    pixel_length_px: float | None
    confidence: float
    model_version_id: int | None
    model_name: str | None
    model_version: str | None
    created_at: datetime


@dataclass(frozen=True)
class ReviewRecord:
    """One review decision (append-only ``review`` row)."""

    id: int
    clip_id: int
    proposal_id: int | None
    frame_index: int | None
    measurement: str
    points: tuple[Point, ...] | None
    value: float | None
    unit: str | None
    action: ReviewAction
    reviewer: str
    seconds_spent: float | None
    model_version_id: int | None
    created_at: datetime
    #: The name typed beside a logged-in reviewer (``reviewer`` is the login), or None.
    reviewer_display_name: str | None = None


@dataclass(frozen=True)
class MeasurementState:
    """Where one measurement of one clip stands: the latest proposal plus the latest review.

    ``status`` is the latest review's action, or "proposed" when nobody reviewed it yet or its
    latest review reopened it (``reopened``; ``review_id``, ``reviewer`` and ``reviewed_at`` are
    None then, as for a measurement never reviewed).  ``latest_review_*`` describe the latest
    review of any action: the state a new decision is made on.
    ``frame_index``/``points``/``value``/``unit`` are the current (final) ones: the reviewed
    values when reviewed (None points when rejected), else the proposal's.  ``proposed_*`` keep
    what the model said.
    """

    clip_id: int
    measurement: str
    status: MeasurementStatus
    frame_index: int | None
    points: tuple[Point, ...] | None
    value: float | None
    unit: str | None
    proposal_id: int | None
    proposed_frame_index: int | None
    proposed_points: tuple[Point, ...] | None
    proposed_value: float | None
    proposed_unit: str | None
    pixel_length_px: float | None
    confidence: float | None
    model_version_id: int | None
    model_name: str | None
    model_version: str | None
    proposed_at: datetime | None
    review_id: int | None
    reviewer: str | None
    reviewed_at: datetime | None
    seconds_spent: float | None
    n_reviews: int
    latest_review_id: int | None = None
    latest_reviewer: str | None = None
    latest_reviewed_at: datetime | None = None

    @property
    def reopened(self) -> bool:
        """True when its latest review reopened it (back to review after a decision)."""
        return self.latest_review_id is not None and self.review_id is None

    @property
    def is_reviewed(self) -> bool:
        """True once a human accepted, corrected, rejected or added it."""
        return self.status != "proposed"


@dataclass(frozen=True)
class ClipSummary:
    """One line of the worklist."""

    clip_id: int
    study_uid: str
    series_uid: str
    instance_uid: str
    kind: ClipKind
    n_frames: int
    calibration_source: CalibrationSource
    n_proposed: int
    n_reviewed: int
    status: ClipStatus
    created_at: datetime
    last_reviewed_at: datetime | None

    @property
    def label(self) -> str:
        """A short, non-identifying name for lists: ``clip 12 · 2d · …a1b2c3``."""
        return f"clip {self.clip_id} · {self.kind} · …{self.instance_uid[-6:]}"


@dataclass(frozen=True)
class TrainingFrame:
    """One reviewed frame with its final points, ready for fine-tuning or COCO export.

    ``keypoints`` maps keypoint names (``catalog.KEYPOINTS_2D`` for 2D clips,
    ``catalog.DOPPLER_CHANNELS`` for Doppler) to the final point; keypoints nobody reviewed on
    this frame are absent.  ``measurements`` maps each reviewed measurement on the frame to its
    final points.  ``image_path`` is the de-identified PNG in the image store (None if the frame
    was never saved).  ``model_version_ids`` are the versions whose proposals were reviewed.
    """

    clip_id: int
    frame_index: int
    kind: ClipKind
    width_px: int
    height_px: int
    image_path: Path | None
    keypoints: dict[str, Point]
    measurements: dict[str, tuple[Point, ...]]
    statuses: dict[str, str]
    model_version_ids: tuple[int, ...]
    study_uid: str
    instance_uid: str
    reviewed_at: datetime

    def load_image(self):
        """The frame as an (H, W, 3) uint8 RGB array (reads the PNG from the image store)."""
        from echomeasure.store.images import read_png

        if self.image_path is None:
            raise FileNotFoundError(f"frame {self.frame_index} of clip {self.clip_id} was not saved")
        return read_png(self.image_path)


@dataclass(frozen=True)
class AuditEventRecord:
    """One append-only audit event: who did what to which entity, before and after."""

    id: int
    actor: str
    action: str
    entity_type: str
    entity_id: int | None
    clip_id: int | None
    before: dict | None
    after: dict | None
    created_at: datetime
    #: Hash of the rows the event created, and the event's link in the hash chain.
    content_sha256: str | None = None
    prev_sha256: str | None = None
    sha256: str | None = None

