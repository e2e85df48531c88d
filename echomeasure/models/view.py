"""View recognition: which kind of echo a clip is (PLAX, A4C, A2C, spectral Doppler, other).

The classifier looks at a clip the way a sonographer glances at it: the image box (the largest
2D region, or the scan sector found from the pixels, or the whole screen of a spectral strip)
reduced to a 64x64 letter-boxed picture in three channels:

* the temporal mean of the grey level over up to 16 evenly spaced frames (anatomy),
* the temporal standard deviation (what moves: valves and walls; a still image has none),
* the mean colour saturation (colour flow, tinted look-up tables).

A tiny CNN (four stride-2 convolutions, global average pooling, one linear layer; about 0.1 M
parameters) turns that into probabilities over :data:`echomeasure.catalog.VIEWS`.  The whole
step is a few milliseconds per clip on a CPU; the weights live in the registry under the name
``view`` (arch ``view_cnn``), trained by :mod:`echomeasure.training.view_train`.

``classify_view(clip)`` returns a :class:`ViewDecision`; :func:`propose` uses it to route a clip
(:mod:`echomeasure.propose.engine`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from echomeasure.catalog import VIEWS
from echomeasure.ingest.clip import Clip

log = logging.getLogger(__name__)

#: Registry name and architecture of the view classifier.
VIEW_MODEL = "view"
VIEW_ARCH = "view_cnn"
#: Side of the square input picture (pixels) and frames averaged per clip.
INPUT_PX = 64
MAX_FRAMES = 16
#: Below this probability the decision is reported as uncertain (the clip still routes by it).
LOW_CONFIDENCE = 0.6
#: Fewest frames for the decision to route a 2D clip: the classifier sees motion and was trained on
#: cines, so a single still frame is reported but measured as before (PLAX), with a notice.
MIN_FRAMES_TO_ROUTE = 2


@dataclass(frozen=True)
class ViewDecision:
    """The view of one clip: its name (one of :data:`VIEWS`), probability and all probabilities."""

    name: str
    confidence: float
    probabilities: dict[str, float]
    model_version: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The ``"view"`` object of the measure JSON."""
        return {"name": self.name, "confidence": round(float(self.confidence), 4)}


# --------------------------------------------------------------------------- input


def view_box(clip: Clip) -> tuple[int, int, int, int]:
    """Inclusive (x0, y0, x1, y1) the classifier looks at.

    A clip with a spectral region: the whole frame (strip, small 2D image and scale together).
    Otherwise the box the 2D models look at (:func:`echomeasure.models.preprocess.box_2d`).
    """
    if any(r.is_spectral for r in clip.regions):
        return 0, 0, clip.width - 1, clip.height - 1
    from echomeasure.models.preprocess import box_2d

    return box_2d(clip).as_tuple()  # found from the pixels (a video): recorded on the clip by box_2d


def letterbox(image: np.ndarray, size: int = INPUT_PX) -> np.ndarray:
    """Resize keeping the aspect ratio (area averaging) and centre on a black square."""
    h, w = image.shape[:2]
    s = size / max(h, w)
    nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    out = np.zeros((size, size) + image.shape[2:], dtype=small.dtype)
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = small
    return out


def view_features(frames: np.ndarray, box: tuple[int, int, int, int], size: int = INPUT_PX) -> np.ndarray:
    """(3, size, size) float32 input of the classifier from (N, H, W, 3) uint8 frames.

    Channels: temporal mean grey / 255, temporal std of grey / 64, mean saturation / 255
    (max minus min of R, G, B).  Each frame is reduced to the square first, so the cost is a
    resize per sampled frame.
    """
    x0, y0, x1, y1 = box
    n = frames.shape[0]
    idx = np.linspace(0, n - 1, min(n, MAX_FRAMES)).round().astype(int)
    greys, sats = [], []
    for i in idx:
        crop = frames[i, y0 : y1 + 1, x0 : x1 + 1]
        small = letterbox(crop, size).astype(np.float32)
        greys.append(small.mean(axis=2))
        sats.append(small.max(axis=2) - small.min(axis=2))
    g = np.stack(greys)
    return np.stack([g.mean(axis=0) / 255.0, g.std(axis=0) / 64.0, np.mean(sats, axis=0) / 255.0]).astype(np.float32)


def clip_features(clip: Clip) -> np.ndarray:
    """The classifier input of a clip (:func:`view_features` on :func:`view_box`)."""
    return view_features(clip.frames, view_box(clip))


# --------------------------------------------------------------------------- model


def build_view_net(n_classes: int = len(VIEWS)) -> Any:
    """The tiny CNN (torch ``nn.Module``): 3x64x64 -> ``n_classes`` logits."""
    from torch import nn

    def block(cin: int, cout: int) -> list:
        return [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(3, 16), *block(16, 32), *block(32, 48), *block(48, 64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(64, n_classes),
    )


@dataclass
class _Classifier:
    """The loaded classifier: an ONNX Runtime session when available (no torch import), else torch."""

    entry: Any
    net: Any = None
    session: Any = None

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(features[None], dtype=np.float32)
        if self.session is not None:
            logits = np.asarray(self.session.run(None, {"features": x})[0], dtype=np.float64)[0]
        else:
            import torch

            with torch.no_grad():
                logits = self.net(torch.from_numpy(x))[0].numpy().astype(np.float64)
        e = np.exp(logits - logits.max())
        return e / e.sum()


def _onnx_session(entry: Any, path: Any) -> Any:
    """An ONNX Runtime session over the cached export of the classifier, exported once; None without ORT."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    from echomeasure.models.runtime import cache_dir

    onnx_file = cache_dir() / "onnx" / f"{VIEW_MODEL}-{entry.sha256[:16]}-{INPUT_PX}.onnx"
    if not onnx_file.is_file():
        _export_onnx(_load_torch_net(entry, path), onnx_file)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(onnx_file), so, providers=["CPUExecutionProvider"])


def _export_onnx(net: Any, onnx_file: Any) -> None:
    import warnings

    import torch

    from echomeasure import atomic

    with atomic.atomic_path(onnx_file, make_parents=True) as tmp, warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.zeros(1, 3, INPUT_PX, INPUT_PX),), tmp, input_names=["features"],
                          output_names=["logits"], dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)


def _load_torch_net(entry: Any, path: Any) -> Any:
    import torch

    from echomeasure.errors import WeightsError

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net = build_view_net(len(entry.channels))
        net.load_state_dict(state)
    except Exception as exc:  # a foreign or truncated file
        raise WeightsError(f"cannot load view classifier {entry.file} ({type(exc).__name__}); re-train it") from None
    return net.eval()


_CACHE: dict[tuple, _Classifier] = {}
_LOCK = threading.Lock()


def load_view_classifier(version: str | None = None, weights_dir: Any = None) -> _Classifier:
    """The registered view classifier (sha256-checked, cached per process).

    Raises
    ------
    WeightsError
        No ``view`` model registered, a missing file or a sha256 mismatch.
    """
    from echomeasure.errors import WeightsError
    from echomeasure.models import registry

    entry = registry.get_entry(VIEW_MODEL, version, weights_dir)
    path = registry.resolve_path(entry, weights_dir)
    key = (entry.version, entry.sha256, str(path))
    with _LOCK:
        if key not in _CACHE:
            registry.verify_file(entry, weights_dir)
            if tuple(entry.channels) != VIEWS[: len(entry.channels)] or len(entry.channels) != len(VIEWS):
                raise WeightsError(f"view classifier {entry.version} has classes {entry.channels}, expected {VIEWS}")
            try:
                session = _onnx_session(entry, path)
            except WeightsError:
                raise
            except Exception as exc:  # export/runtime problems must never stop a measurement
                log.warning("ONNX Runtime unavailable for the view classifier (%s); using torch", type(exc).__name__)
                session = None
            net = None if session is not None else _load_torch_net(entry, path)
            _CACHE[key] = _Classifier(entry, net, session)
        return _CACHE[key]


def load_view_network(version: str | None = None, weights_dir: Any = None) -> Any:
    """The registered classifier as a torch network (to train on from it), sha256-checked."""
    from echomeasure.models import registry

    entry = registry.get_entry(VIEW_MODEL, version, weights_dir)
    return _load_torch_net(entry, registry.verify_file(entry, weights_dir))


def clear_cache() -> None:
    """Forget loaded classifiers (tests, after registering a new version)."""
    with _LOCK:
        _CACHE.clear()


def view_registered(weights_dir: Any = None) -> bool:
    """True when the weights folder has a ``view`` model."""
    from echomeasure.models import registry

    try:
        return any(e.name == VIEW_MODEL for e in registry.list_entries(weights_dir))
    except Exception:  # an unreadable manifest is reported by whoever loads a model from it
        return False


def decide(probabilities: np.ndarray, model_version: str | None = None) -> ViewDecision:
    """The decision for a probability vector over :data:`VIEWS`."""
    k = int(np.argmax(probabilities))
    rounded = {v: round(float(p), 4) for v, p in zip(VIEWS, probabilities, strict=True)}
    return ViewDecision(VIEWS[k], float(probabilities[k]), rounded, model_version)


def classify_view(clip: Clip, *, version: str | None = None, weights_dir: Any = None) -> ViewDecision:
    """The view of a clip (see the module docstring)."""
    clf = load_view_classifier(version, weights_dir)
    return decide(clf.probabilities(clip_features(clip)), clf.entry.version)
