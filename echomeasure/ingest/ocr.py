"""Find burned-in text in ultrasound frames with an OCR text detector that ships inside its wheel.

The detector is PP-OCRv4's text-detection network as packaged by ``rapidocr-onnxruntime``
(``rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx``, inside the wheel: nothing is
downloaded, ever) run with ONNX Runtime.  Only detection is used: the boxes matter, not what
they say.

Burned-in text is static while the image moves, so the detector runs once per clip on a
temporal *minimum* of a few sampled frames: speckle averages towards dark, static text stays
bright.  Stills are searched as they are.  Scanners draw text bright (white, grey, yellow), so
the detector only looks at tiles around static pixels of at least :data:`CANDIDATE_LEVEL`
(padded by :data:`TILE_PAD_PX`); where such pixels are everywhere (a still of bright tissue) it
looks at the whole search area.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

log = logging.getLogger(__name__)

OCR_PACKAGE = "rapidocr_onnxruntime"
DETECTOR_FILE = "models/ch_PP-OCRv4_det_infer.onnx"
SAMPLE_FRAMES = 6
# The detector sees the image with its longer side at most this long (pixels, multiple of 32).
MAX_SIDE_PX = 960
#: Static pixels at least this bright (max over R, G, B of the temporal minimum) may be text.
CANDIDATE_LEVEL = 128
#: Candidate pixels closer than this are one text line; tiles get this margin.
TILE_PAD_PX = 16
#: Above this share of the search area, candidate tiles are replaced by the whole area.
MAX_TILE_SHARE = 0.35
#: A detected box taller than this (pixels, or this share of the image height when larger) is
#: bright anatomy the detector mistook for text, not a line of burned-in text.
MAX_TEXT_HEIGHT_PX = 48
MAX_TEXT_HEIGHT_SHARE = 0.06
_lock = threading.Lock()


@dataclass(frozen=True)
class TextBox:
    """An axis-aligned box around detected text, in image pixels (max inclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int

    def as_list(self) -> list[int]:
        return [int(self.x0), int(self.y0), int(self.x1), int(self.y1)]


def detector_path() -> str | None:
    """Path of the detection model inside the installed wheel, or None when not installed."""
    try:
        path = resources.files(OCR_PACKAGE).joinpath(DETECTOR_FILE)
    except ModuleNotFoundError:
        return None
    return str(path) if path.is_file() else None


def available() -> bool:
    """True when the OCR package and ONNX Runtime are installed."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return detector_path() is not None


def describe() -> str:
    """Name and version of the detector, for the de-identification record."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("rapidocr-onnxruntime")
    except PackageNotFoundError:
        v = "not installed"
    return f"rapidocr-onnxruntime {v}, PP-OCRv4 text detection (model inside the wheel)"


@lru_cache(maxsize=1)
def _detector():
    from rapidocr_onnxruntime.ch_ppocr_det import TextDetector

    path = detector_path()
    if path is None:  # pragma: no cover - callers check available()
        raise RuntimeError("the OCR detector is not installed")
    return TextDetector({
        "model_path": path, "limit_side_len": MAX_SIDE_PX, "limit_type": "max", "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5], "thresh": 0.3, "box_thresh": 0.5, "max_candidates": 1000, "unclip_ratio": 1.6,
        "use_dilation": True, "score_mode": "fast", "use_cuda": False, "use_dml": False,
        "intra_op_num_threads": -1, "inter_op_num_threads": -1,
    })


def static_composite(frames: np.ndarray) -> np.ndarray:
    """(H, W, 3) per-pixel minimum of a few frames spread over the clip (the frame for stills)."""
    n = frames.shape[0]
    if n == 1:
        return frames[0]
    idx = np.unique(np.linspace(0, n - 1, min(n, SAMPLE_FRAMES)).astype(int))
    return np.min(frames[idx], axis=0)


def _tiles(candidates: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) tiles (exclusive ends) around groups of candidate pixels."""
    import cv2

    h, w = candidates.shape
    k = 2 * TILE_PAD_PX + 1
    grown = cv2.dilate(candidates.astype(np.uint8), np.ones((k // 2, k), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    tiles = []
    for x, y, bw, bh, _area in stats[1:].tolist():
        tiles.append((max(0, y - TILE_PAD_PX), min(h, y + bh + TILE_PAD_PX),
                      max(0, x - TILE_PAD_PX), min(w, x + bw + TILE_PAD_PX)))
    return tiles


def _detect(image: np.ndarray, oy: int, ox: int) -> list[TextBox]:
    """Run the detector on one tile framed by a black margin (text touching a tile's edge is
    otherwise missed); boxes in the coordinates of the tile's origin (``oy``, ``ox``)."""
    if min(image.shape[:2]) < 4:
        return []
    pad = TILE_PAD_PX
    image = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    oy, ox = oy - pad, ox - pad
    h, w, _ = image.shape
    bgr = np.ascontiguousarray(image[..., ::-1])
    with _lock:  # one ONNX Runtime session, not re-entrant across threads
        boxes, _ = _detector()(bgr)
    out: list[TextBox] = []
    for quad in boxes if boxes is not None else []:
        q = np.asarray(quad)
        x0, y0 = np.floor(q.min(axis=0)).astype(int)
        x1, y1 = np.ceil(q.max(axis=0)).astype(int)
        out.append(TextBox(max(0, int(x0)) + ox, max(0, int(y0)) + oy, min(w - 1, int(x1)) + ox, min(h - 1, int(y1)) + oy))
    return out


def find_text(frames: np.ndarray, search: np.ndarray | None = None) -> list[TextBox]:
    """Boxes of burned-in text in a clip's (N, H, W, 3) frames.

    ``search``: optional (H, W) bool mask of where to look (e.g. the pixels kept after masking).
    """
    image = static_composite(frames)
    h, w, _ = image.shape
    area = np.ones((h, w), dtype=bool) if search is None else search
    if not area.any():
        return []
    candidates = (image.max(axis=-1) >= CANDIDATE_LEVEL) & area
    if not candidates.any():
        return []
    ys, xs = np.nonzero(area.any(axis=1))[0], np.nonzero(area.any(axis=0))[0]
    whole = (int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1)
    tiles = _tiles(candidates)
    tile_px = sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in tiles)
    if tile_px > MAX_TILE_SHARE * (whole[1] - whole[0]) * (whole[3] - whole[2]):
        tiles = [whole]
    tallest = max(MAX_TEXT_HEIGHT_PX, int(MAX_TEXT_HEIGHT_SHARE * h))
    out: list[TextBox] = []
    for y0, y1, x0, x1 in tiles:
        for b in _detect(image[y0:y1, x0:x1], y0, x0):
            box = TextBox(max(b.x0, 0), max(b.y0, 0), min(b.x1, w - 1), min(b.y1, h - 1))
            if box.x1 >= box.x0 and box.y1 >= box.y0 and box.y1 - box.y0 + 1 <= tallest:
                out.append(box)
    return out
