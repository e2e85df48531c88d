"""How a frame becomes model input, and how model coordinates map back to image pixels.

Used by BOTH training (:mod:`echomeasure.training`) and inference (:mod:`echomeasure.propose`),
so that a model always sees the same kind of input it was trained on.

Pixel convention (shared with :mod:`echomeasure.training.heatmaps` and
:mod:`echomeasure.models.decode`): pixel ``[i, j]`` of an image or heatmap is centred on the
coordinate ``(x=j, y=i)``.  A crop box of ``w x h`` image pixels resized to ``W x H`` model
pixels maps model coordinate ``u`` to image coordinate ``x0 + (u + 0.5) * w / W - 0.5``
(the pixel-centre alignment that ``cv2.resize`` uses), and back exactly.

* 2D: crop to the ultrasound 2D region box (DICOM region; for videos the scan sector found from
  the pixels that change over time, else the whole frame), resize to the model input size with
  ``cv2.INTER_AREA``, keep RGB, divide by 255.
* Doppler: crop to the spectral region box, resize the same way; an inverted display (the
  region's velocity axis grows downward: positive PhysicalDeltaY) is turned upside down, so the
  model always sees flow toward the transducer above the baseline, as most scanners show it
  (:func:`doppler_display_inverted`).  Model coordinates map back through the flip.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np

if TYPE_CHECKING:  # torch is imported only by the functions that return tensors
    import torch

from echomeasure.errors import MeasurementError
from echomeasure.ingest.clip import SPATIAL_2D, UNIT_CM_S, UNIT_HZ, Clip

Mode = Literal["2d", "doppler"]

# Sector detection (videos without regions): a pixel belongs to the scan sector when its
# grey level changes over time by more than this many grey levels (standard deviation).
_SECTOR_STD_THRESHOLD = 2.0
# a row / column belongs to the sector box when at least this share of it varies
_SECTOR_LINE_SHARE = 0.02


@dataclass(frozen=True)
class Box:
    """A pixel rectangle of the original image; ``x1``/``y1`` are *inclusive* (as in DICOM)."""

    x0: int
    y0: int
    x1: int
    y1: int

    def __post_init__(self) -> None:
        if self.x1 < self.x0 or self.y1 < self.y0:
            raise ValueError(f"empty box {self}")

    @property
    def width_px(self) -> int:
        """Number of pixel columns in the box."""
        return self.x1 - self.x0 + 1

    @property
    def height_px(self) -> int:
        """Number of pixel rows in the box."""
        return self.y1 - self.y0 + 1

    def clipped(self, height_px: int, width_px: int) -> Box:
        """The box intersected with an image of the given size."""
        return Box(
            max(0, self.x0), max(0, self.y0), min(width_px - 1, self.x1), min(height_px - 1, self.y1)
        )

    def as_tuple(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``."""
        return (self.x0, self.y0, self.x1, self.y1)


# --------------------------------------------------------------------------- which box


def detect_sector_box(frames: np.ndarray, *, max_frames: int = 24) -> Box:
    """Find the scan sector of a clip without regions from the pixels that change over time.

    Parameters
    ----------
    frames
        ``(N, H, W, 3)`` uint8 RGB.  With fewer than 2 frames the bounding box of non-black
        pixels is used instead.
    max_frames
        At most this many evenly spaced frames are looked at (keeps it cheap on long clips).

    Returns
    -------
    Box
        The bounding box of the varying pixels, or the whole frame when nothing varies.
    """
    n, h, w = frames.shape[:3]
    full = Box(0, 0, w - 1, h - 1)
    if n >= 2:
        idx = np.linspace(0, n - 1, min(n, max_frames)).round().astype(int)
        grey = frames[idx, :, :, 1].astype(np.float32)  # green channel ~ luminance for grey echo
        active = grey.std(axis=0) > _SECTOR_STD_THRESHOLD
    else:
        active = frames[0].max(axis=-1) > 8
    rows = np.flatnonzero(active.mean(axis=1) >= _SECTOR_LINE_SHARE)
    cols = np.flatnonzero(active.mean(axis=0) >= _SECTOR_LINE_SHARE)
    if rows.size == 0 or cols.size == 0:
        return full
    box = Box(int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1]))
    # a "sector" of a few pixels is noise, not an image
    if box.width_px < w // 8 or box.height_px < h // 8:
        return full
    return box


def region_box_2d(regions: Iterable[Any], height_px: int, width_px: int) -> Box | None:
    """The largest DICOM 2D region's box (tissue regions preferred), within the image.

    A region that reaches past the image edge (some vendors' boxes end one past the last column,
    or describe a larger acquisition matrix) is cut at the edge; one wholly outside the image is
    left out.  None when no 2D region lies on the image.
    """
    boxes = []
    for r in regions or ():
        if getattr(r, "spatial_format", None) != SPATIAL_2D:
            continue
        x0, y0, x1, y1 = max(0, int(r.x0)), max(0, int(r.y0)), min(width_px - 1, int(r.x1)), min(height_px - 1, int(r.y1))
        if x1 >= x0 and y1 >= y0:
            boxes.append((getattr(r, "data_type", 0) == 1, Box(x0, y0, x1, y1)))
    tissue = [b for is_tissue, b in boxes if is_tissue] or [b for _, b in boxes]
    return max(tissue, key=lambda b: b.width_px * b.height_px) if tissue else None


def box_2d(clip: Clip) -> Box:
    """The box the 2D model looks at.

    The largest DICOM 2D region (:func:`region_box_2d`); for a clip without 2D regions
    (videos, screenshots) the sector box recorded on the clip (``clip.extra["sector_box"]``), else
    one found by :func:`detect_sector_box` and recorded there: the fan is searched once per clip,
    not again by each step that looks at it (the apex-down check, the view classifier, the 2D
    models; a clip turned upright or mirrored takes the recorded box with it).
    """
    region = region_box_2d(clip.regions, clip.height, clip.width)
    if region is not None:
        return region
    recorded = clip.extra.get("sector_box") if isinstance(clip.extra, dict) else None
    if recorded is not None and len(recorded) == 4:
        return Box(*(int(v) for v in recorded)).clipped(clip.height, clip.width)
    found = detect_sector_box(clip.frames)
    if isinstance(clip.extra, dict):
        clip.extra["sector_box"] = found.as_tuple()
    return found


def _measured_spectral_region(clip: Clip) -> Any:
    """The spectral region the Doppler model looks at: the one velocities are read from
    (:func:`echomeasure.ingest.calibration.spectral_region`), else, without a usable velocity
    scale, the largest (None when there is no spectral region)."""
    from echomeasure.errors import CalibrationError
    from echomeasure.ingest.calibration import spectral_region

    try:
        return spectral_region(clip.regions)
    except CalibrationError:
        spectral = [r for r in clip.regions if r.is_spectral]
        return max(spectral, key=lambda r: (r.x1 - r.x0 + 1) * (r.y1 - r.y0 + 1)) if spectral else None


def box_doppler(clip: Clip) -> Box:
    """The box the Doppler model looks at: the spectral region velocities are read from (the
    largest usable one if several; the largest of all when none has a usable velocity scale).

    Raises
    ------
    MeasurementError
        When the clip has no spectral Doppler region.
    """
    r = _measured_spectral_region(clip)
    if r is None:
        raise MeasurementError(
            "this clip has no spectral Doppler region; Doppler measurements need a DICOM with one"
        )
    return Box(r.x0, r.y0, r.x1, r.y1).clipped(clip.height, clip.width)


def doppler_display_inverted(clip: Clip) -> bool:
    """True when the strip is displayed inverted: the velocity (or Doppler shift) of the model's
    region grows downward (PhysicalDeltaY > 0), so flow toward the transducer is below the
    baseline.  A region without a velocity or frequency axis is taken as shown the usual way."""
    r = _measured_spectral_region(clip)
    return r is not None and r.units_y in (UNIT_CM_S, UNIT_HZ) and r.delta_y > 0


# --------------------------------------------------------------------------- transform


@dataclass(frozen=True)
class CropTransform:
    """Crop a box out of frames and resize it to the model input; map points both ways.

    Parameters
    ----------
    box
        The image box (inclusive max) that the model sees.
    input_size
        Model input ``(H, W)`` in pixels.

    Examples
    --------
    >>> t = CropTransform(Box(10, 20, 409, 319), (192, 192))
    >>> x = t.apply(frames)                 # (N, 3, 192, 192) float32 in [0, 1]
    >>> pts_model = t.to_model(pts_image)   # training targets
    >>> pts_image = t.to_image(pts_model)   # decoded predictions
    """

    box: Box
    input_size: tuple[int, int]
    #: the model input is the crop turned upside down (an inverted Doppler display, see
    #: :func:`doppler_display_inverted`); points map through the flip both ways
    flip_y: bool = False

    @classmethod
    def for_clip(cls, clip: Clip, input_size: tuple[int, int], mode: Mode = "2d") -> CropTransform:
        """The transform for a clip: :func:`box_2d` for ``"2d"``, :func:`box_doppler` for
        ``"doppler"`` (flipped when the display is inverted)."""
        size = (int(input_size[0]), int(input_size[1]))
        if mode == "2d":
            return cls(box_2d(clip), size)
        return cls(box_doppler(clip), size, flip_y=doppler_display_inverted(clip))

    @property
    def scale_xy(self) -> tuple[float, float]:
        """Image pixels per model pixel along x and y."""
        h, w = self.input_size
        return self.box.width_px / w, self.box.height_px / h

    def to_model(self, points_xy_image: np.ndarray) -> np.ndarray:
        """Map ``(..., 2)`` image-pixel points ``(x, y)`` to model-input pixel coordinates."""
        p = np.asarray(points_xy_image, dtype=np.float64)
        sx, sy = self.scale_xy
        out = np.empty_like(p)
        out[..., 0] = (p[..., 0] - self.box.x0 + 0.5) / sx - 0.5
        out[..., 1] = (p[..., 1] - self.box.y0 + 0.5) / sy - 0.5
        if self.flip_y:
            out[..., 1] = (self.input_size[0] - 1) - out[..., 1]
        return out

    def to_image(self, points_xy_model: np.ndarray) -> np.ndarray:
        """Map ``(..., 2)`` model-input points ``(x, y)`` back to original image pixels."""
        p = np.asarray(points_xy_model, dtype=np.float64)
        sx, sy = self.scale_xy
        y = (self.input_size[0] - 1) - p[..., 1] if self.flip_y else p[..., 1]
        out = np.empty_like(p)
        out[..., 0] = (p[..., 0] + 0.5) * sx - 0.5 + self.box.x0
        out[..., 1] = (y + 0.5) * sy - 0.5 + self.box.y0
        return out

    def crop_resize(self, frames: np.ndarray) -> np.ndarray:
        """Crop and resize uint8 frames; returns ``(N, H, W, 3)`` uint8 at the model input size.

        Accepts ``(N, h, w, 3)`` or a single ``(h, w, 3)`` frame (then N = 1).
        """
        if frames.ndim == 3:
            frames = frames[None]
        b = self.box
        h, w = self.input_size
        out = np.empty((frames.shape[0], h, w, 3), dtype=np.uint8)
        for i, frame in enumerate(frames):
            crop = frame[b.y0 : b.y1 + 1, b.x0 : b.x1 + 1]
            if crop.shape[0] != b.height_px or crop.shape[1] != b.width_px:
                raise ValueError(f"box {b.as_tuple()} lies outside a frame of {frame.shape[:2]}")
            interp = cv2.INTER_AREA if (b.width_px >= w and b.height_px >= h) else cv2.INTER_LINEAR
            out[i] = cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=interp)
        return out[:, ::-1].copy() if self.flip_y else out

    def apply_array(self, frames: np.ndarray) -> np.ndarray:
        """Frames to model input as a numpy array (what ONNX Runtime takes; no torch needed).

        Parameters
        ----------
        frames
            ``(N, h, w, 3)`` or ``(h, w, 3)`` uint8 RGB of the original image.

        Returns
        -------
        np.ndarray
            ``(N, 3, H, W)`` float32 in [0, 1] (RGB order), C-contiguous.
        """
        small = self.crop_resize(frames)
        # one pass: uint8 NHWC -> float32 NCHW scaled to [0, 1], only for this small batch
        out = np.empty((small.shape[0], 3, small.shape[1], small.shape[2]), dtype=np.float32)
        np.multiply(small.transpose(0, 3, 1, 2), np.float32(1.0 / 255.0), out=out)
        return out

    def apply(self, frames: np.ndarray) -> torch.Tensor:
        """Frames to model input as a torch tensor (training, torch inference).

        Parameters
        ----------
        frames
            ``(N, h, w, 3)`` or ``(h, w, 3)`` uint8 RGB of the original image.

        Returns
        -------
        torch.Tensor
            ``(N, 3, H, W)`` float32 in [0, 1] (RGB order), contiguous NCHW, sharing memory
            with :meth:`apply_array`'s result.
        """
        import torch

        return torch.from_numpy(self.apply_array(frames))

    def batches(self, frames: np.ndarray, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_frame_index, model_input)`` for consecutive batches of a clip.

        The input is :meth:`apply_array`'s float32 array.  Only one batch of float input
        exists at a time, so a long clip never has a float copy.
        """
        for start in range(0, frames.shape[0], batch_size):
            yield start, self.apply_array(frames[start : start + batch_size])
