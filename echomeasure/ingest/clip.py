"""The one type every reader produces: a :class:`Clip` of uint8 RGB frames with its regions.

Pixel coordinates are always (x right, y down) in the original image.  Physical values only
come out of :mod:`echomeasure.ingest.calibration`, never from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

SourceKind = Literal["dicom", "video", "image"]
CalibrationSource = Literal["dicom", "user", "none"]

# RegionSpatialFormat (0018,6012)
SPATIAL_NONE, SPATIAL_2D, SPATIAL_MMODE, SPATIAL_SPECTRAL, SPATIAL_WAVEFORM, SPATIAL_GRAPHICS = range(6)
# PhysicalUnitsX/YDirection (0018,6024 / 0018,6026)
UNIT_NONE, UNIT_PERCENT, UNIT_DB, UNIT_CM, UNIT_S, UNIT_HZ = range(6)
UNIT_CM_S = 7
# RegionDataType (0018,6014)
DATA_COLOR_FLOW = 2
#: ``Clip.extra`` key, True when the DICOM's UltrasoundColorDataPresent (0028,0014) is 1 (absent otherwise).
COLOR_DATA_PRESENT = "ultrasound_color_data_present"
ColorFlowDeclaration = Literal["region", "flag"]


@dataclass(frozen=True)
class Region:
    """One item of the Sequence of Ultrasound Regions (0018,6011).

    ``x0, y0, x1, y1`` are RegionLocationMinX0/MinY0/MaxX1/MaxY1; the max is *inclusive*.
    ``ref_x0``/``ref_y0`` are ReferencePixelX0/Y0, offsets from (x0, y0), not the image origin.
    ``delta_x``/``delta_y`` are the signed PhysicalDeltaX/Y in the units ``units_x``/``units_y``.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    spatial_format: int
    data_type: int
    units_x: int
    units_y: int
    delta_x: float
    delta_y: float
    ref_x0: int | None = None
    ref_y0: int | None = None
    ref_phys_x: float = 0.0
    ref_phys_y: float = 0.0
    flags: int = 0

    def contains(self, x: float, y: float) -> bool:
        """True when pixel (x, y) lies inside the region (edges inclusive)."""
        return self.x0 <= x <= self.x1 and self.y0 <= y <= self.y1

    @property
    def is_2d_cm(self) -> bool:
        """A 2D tissue/flow region with both axes in cm: distances can be measured."""
        return self.spatial_format == SPATIAL_2D and self.units_x == UNIT_CM and self.units_y == UNIT_CM

    @property
    def is_spectral(self) -> bool:
        """A spectral Doppler region (PW or CW)."""
        return self.spatial_format == SPATIAL_SPECTRAL

    @property
    def doppler_scale_is_frequency(self) -> bool:
        """RegionFlags bit 2 (value 4): 1 means the Doppler scale is frequency, not velocity."""
        return bool(self.flags & 0b100)

    def to_dicom_item(self) -> Dataset:
        """This region as an item of the Sequence of Ultrasound Regions (absent reference pixels stay absent)."""
        from pydicom.dataset import Dataset

        item = Dataset()
        item.RegionSpatialFormat = int(self.spatial_format)
        item.RegionDataType = int(self.data_type)
        item.RegionFlags = int(self.flags)
        item.RegionLocationMinX0, item.RegionLocationMinY0 = int(self.x0), int(self.y0)
        item.RegionLocationMaxX1, item.RegionLocationMaxY1 = int(self.x1), int(self.y1)
        if self.ref_x0 is not None:
            item.ReferencePixelX0 = int(self.ref_x0)
        if self.ref_y0 is not None:
            item.ReferencePixelY0 = int(self.ref_y0)
        item.PhysicalUnitsXDirection = int(self.units_x)
        item.PhysicalUnitsYDirection = int(self.units_y)
        item.ReferencePixelPhysicalValueX = float(self.ref_phys_x)
        item.ReferencePixelPhysicalValueY = float(self.ref_phys_y)
        item.PhysicalDeltaX = float(self.delta_x)
        item.PhysicalDeltaY = float(self.delta_y)
        return item


@dataclass
class Clip:
    """Decoded frames plus what is needed to interpret them.

    ``frames``: (N, H, W, 3) uint8 RGB.  ``frame_time_ms``: time between frames, from FrameTime,
    CineRate or the video container (None for stills).  ``regions``: ultrasound regions (empty for
    videos and stills).  ``user_cm_per_px``: a scale given by the user for uncalibrated sources.
    """

    frames: np.ndarray
    frame_time_ms: float | None
    regions: tuple[Region, ...]
    source_kind: SourceKind
    source_name: str = ""
    sop_class_uid: str | None = None
    modality: str | None = None
    burned_in_annotation: str | None = None
    user_cm_per_px: float | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(f"frames must be (N, H, W, 3) uint8, got {self.frames.shape} {self.frames.dtype}")

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def kind(self) -> Literal["2d", "doppler"]:
        """"doppler" when the image carries a spectral region, else "2d"."""
        return "doppler" if any(r.is_spectral for r in self.regions) else "2d"

    @property
    def declared_color_flow(self) -> ColorFlowDeclaration | None:
        """How the file's metadata declares colour flow (colour Doppler): ``"region"`` when an
        ultrasound region's RegionDataType is 2 (colour flow), ``"flag"`` when only
        UltrasoundColorDataPresent is 1 (:data:`COLOR_DATA_PRESENT` in ``extra``), else None.

        Metadata only: the pixels are never judged (vendor tints of grey B-mode look too much like
        colour).  Videos and stills carry neither, so they are never declared colour flow.
        """
        if any(r.data_type == DATA_COLOR_FLOW for r in self.regions):
            return "region"
        if isinstance(self.extra, dict) and self.extra.get(COLOR_DATA_PRESENT) is True:
            return "flag"
        return None

    @property
    def calibration_source(self) -> CalibrationSource:
        """Where physical values come from: DICOM regions, a user scale, or nowhere."""
        if any(r.is_2d_cm or r.is_spectral for r in self.regions):
            return "dicom"
        if self.user_cm_per_px:
            return "user"
        return "none"


def display_name(path: str | os.PathLike[str]) -> str:
    """A file name safe to show and store: the base name only, never the directories."""
    return Path(path).name
