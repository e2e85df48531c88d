"""Synthetic echo studio: PLAX cines and spectral Doppler strips with exact ground truth.

Everything is seeded and deterministic (a ``numpy.random.Generator`` from the seed; the global
RNG is never touched): the same seed gives the same pixels and byte-identical DICOM files.

Stable API (for training, tests and the demo)
---------------------------------------------
PLAX B-mode cines::

    sample_plax_params(rng: np.random.Generator, *, n_frames: int | None = None,
                       fps: float | None = None, image_size: tuple[int, int] | None = None,
                       case_index: int = 0, seed: int = 0) -> PlaxParams
    render_plax(params: PlaxParams, rng: np.random.Generator | None = None,
                frames: int | Sequence[int] | None = None, labels: bool = True) -> SyntheticCine
    plax_keypoints(params, frames=None) -> np.ndarray   # (N, 8, 2) px, no rendering (cheap)
    ed_es_frames(params) -> tuple[int, int]             # no rendering (cheap)

    SyntheticCine: frames (N, H, W, 3) uint8 RGB; frame_time_ms: float;
                   regions: tuple[Region, ...] (2D region in cm, ECG region);
                   keypoints (N, 8, 2) float32 in catalog.KEYPOINTS_2D order (image pixels);
                   labels (N, H, W) uint8 or None (classes in LABEL_CLASSES);
                   ed_frame, es_frame (indices into the full clip); frame_indices; truth (dict);
                   cm_per_px.

Spectral Doppler strips::

    sample_doppler_params(rng: np.random.Generator, flow: str | None = None, *,
                          image_size: tuple[int, int] | None = None,
                          case_index: int = 0, seed: int = 0) -> DopplerParams
    render_doppler(params: DopplerParams, rng: np.random.Generator | None = None) -> SyntheticDoppler

    SyntheticDoppler: image (H, W, 3) uint8; regions (2D, spectral, ECG);
                      peaks: dict channel -> list of (x, y) px per beat (catalog.DOPPLER_CHANNELS
                      names, the channels of catalog.DOPPLER_FLOWS[flow]);
                      peak_values_m_s: dict channel -> signed m/s per beat; flow; truth (dict).

One-seed conveniences (what ``echomeasure synth`` uses)::

    render_plax_case(case_seed: int, small: bool = False, labels: bool = False) -> SyntheticCine
    render_doppler_case(case_seed: int, small: bool = False, flow: str | None = None) -> SyntheticDoppler

Files::

    write_case(out_dir, index, seed, kind, *, flow=None, small=False, jpeg=False) -> CaseFiles
    (``echomeasure.synthetic.studio``; DICOM + truth JSON, atomically)

Label map classes (:data:`LABEL_CLASSES`): 0 background (includes pericardium and everything
outside the heart and outside the sector), 1 LV cavity, 2 RV cavity, 3 LA cavity, 4 aortic root
lumen, 5 interventricular septum, 6 other cardiac walls (LV posterior wall, RV free wall, aortic
and LA walls, mitral and aortic valve leaflets).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from echomeasure.synthetic.doppler import DopplerParams, render_doppler, sample_doppler_params
from echomeasure.synthetic.plax import (
    GENERATOR_VERSION,
    PlaxParams,
    ed_es_frames,
    plax_keypoints,
    render_plax,
    sample_plax_params,
)
from echomeasure.synthetic.studio import SMALL_IMAGE_SIZE, SMALL_N_FRAMES  # noqa: E402  ("small" cases)
from echomeasure.synthetic.types import LABEL_CLASSES, SyntheticCine, SyntheticDoppler


def render_plax_case(case_seed: int, small: bool = False, labels: bool = False) -> SyntheticCine:
    """Sample and render the PLAX case of one seed (``small``: 40 frames at 480x640)."""
    rng = np.random.default_rng(case_seed)
    kwargs: dict[str, Any] = {"image_size": SMALL_IMAGE_SIZE, "n_frames": SMALL_N_FRAMES} if small else {}
    params = sample_plax_params(rng, seed=case_seed, **kwargs)
    return render_plax(params, labels=labels)


def render_doppler_case(case_seed: int, small: bool = False, flow: str | None = None) -> SyntheticDoppler:
    """Sample and render the Doppler strip of one seed (``small``: 480x640)."""
    rng = np.random.default_rng(case_seed)
    kwargs: dict[str, Any] = {"image_size": SMALL_IMAGE_SIZE} if small else {}
    params = sample_doppler_params(rng, flow, seed=case_seed, **kwargs)
    return render_doppler(params)


__all__ = [
    "GENERATOR_VERSION",
    "LABEL_CLASSES",
    "DopplerParams",
    "PlaxParams",
    "SyntheticCine",
    "SyntheticDoppler",
    "ed_es_frames",
    "plax_keypoints",
    "render_doppler",
    "render_doppler_case",
    "render_plax",
    "render_plax_case",
    "sample_doppler_params",
    "sample_plax_params",
]
