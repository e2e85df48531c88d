"""Result types of the synthetic studio: a rendered cine or Doppler strip plus its exact truth."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from echomeasure.ingest.clip import Region

# Classes of the per-frame label map (uint8).  "wall" is every cardiac wall that is not the
# septum: LV posterior (inferolateral) wall, RV free wall, aortic walls, LA wall, valve leaflets.
# The pericardium and everything outside the heart are background.
LABEL_CLASSES: dict[int, str] = {
    0: "background",
    1: "lv",
    2: "rv",
    3: "la",
    4: "aorta",
    5: "septum",
    6: "wall",
}
LABEL_BACKGROUND, LABEL_LV, LABEL_RV, LABEL_LA, LABEL_AORTA, LABEL_SEPTUM, LABEL_WALL = range(7)


@dataclass
class SyntheticCine:
    """A rendered PLAX B-mode cine with exact ground truth.

    Attributes
    ----------
    frames : np.ndarray
        (N, H, W, 3) uint8 RGB, banner and ECG strip included (what the DICOM file holds).
    frame_time_ms : float
        Time between frames in milliseconds (DICOM FrameTime).
    regions : tuple[Region, ...]
        Sequence of Ultrasound Regions: the 2D sector region (cm) and the ECG region.
    keypoints : np.ndarray
        (N, 8, 2) float32 sub-pixel (x, y) in image pixels, in ``catalog.KEYPOINTS_2D`` order.
    labels : np.ndarray | None
        (N, H, W) uint8 label map (classes in :data:`LABEL_CLASSES`), None when not rendered.
    ed_frame, es_frame : int
        Indices into the *full* clip (0..n_frames-1) of the largest and smallest LV diameter.
    frame_indices : tuple[int, ...]
        Which frames of the full clip ``frames`` holds (all of them unless a subset was asked).
    truth : dict
        JSON-ready truth in the shape of docs/architecture.md section 3 (plus per-frame keypoints).
    """

    frames: np.ndarray
    frame_time_ms: float
    regions: tuple[Region, ...]
    keypoints: np.ndarray
    labels: np.ndarray | None
    ed_frame: int
    es_frame: int
    frame_indices: tuple[int, ...]
    truth: dict = field(default_factory=dict)
    cm_per_px: float = 0.0


@dataclass
class SyntheticDoppler:
    """A rendered spectral Doppler strip (one still image) with exact peak truth.

    Attributes
    ----------
    image : np.ndarray
        (H, W, 3) uint8 RGB: banner, small 2D image, spectral strip, ECG.
    regions : tuple[Region, ...]
        2D region (cm), spectral region (s, cm/s; RegionDataType 3 PW or 4 CW) and ECG region.
    peaks : dict[str, list[tuple[float, float]]]
        Doppler channel (``catalog.DOPPLER_CHANNELS``) -> per-beat peak points (x, y) in pixels.
    peak_values_m_s : dict[str, list[float]]
        The same peaks as signed velocities in m/s (negative below the baseline).
    flow : str
        ``"av" | "tr" | "lvot" | "mv"`` (``catalog.DOPPLER_FLOWS``).
    truth : dict
        JSON-ready truth (per-case value = mean of the per-beat peak magnitudes).
    """

    image: np.ndarray
    regions: tuple[Region, ...]
    peaks: dict[str, list[tuple[float, float]]]
    peak_values_m_s: dict[str, list[float]]
    flow: str
    truth: dict = field(default_factory=dict)
