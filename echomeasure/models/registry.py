"""The weights registry: every shipped or fine-tuned model version, in torchvision's Weights style.

A :class:`WeightsEntry` carries everything needed to use a weight file: architecture, input
size, normalisation, the meaning of each output channel, the data it was trained on, its
measured error, the exact recipe, its sha256 and its parent version.  ``load_model("plax-linear")``
needs nothing else.

The entries live in ``manifest.json`` in the weights folder (:func:`echomeasure.config.weights_dir`,
``$ECHOMEASURE_WEIGHTS``)::

    {
      "format": 2,
      "active": {"plax-linear": "1.0", "doppler-peaks": "1.0"},
      "models": [
        {"name": "plax-linear", "version": "1.0", "arch": "deeplabv3_mobilenet_v3_large",
         "input_size": [192, 192], "normalisation": "unit",
         "channels": ["rv_septum", "septum_lv", ...],
         "file": "plax-linear-1.0.pt", "sha256": "...",
         "trained_on": "synthetic 2d cases 0-399, seed 1", "seed": 1,
         "recipe": "echomeasure train --model plax-linear ...",
         "decode": {"sigma_px": 6.0, "max_shift_px": 24.0, "edge_offsets_mm": {}},
         "thresholds": {"low_confidence_below": 0.12, "confidence_floor": 0.01, "flagged_mae_ratio": 1.6},
         "metrics": {"own-style": {"ivsd_mae_mm": 0.41, ...}, "held-out-style": {...}},
         "parent": null, "created": "2025-01-01T12:00:00+00:00", "num_params": 11020000, "extra": {}},
        ...
      ]
    }

Entries of format 1 (flat ``metrics`` with the flag thresholds among them, decode settings in
``extra``) are converted when read (:func:`upgrade_entry_json`); the file is not rewritten.
``file`` is relative to the weights folder.  A weight file is what :func:`save_weights` writes
(keys ``m.*``; shipped files are gzip-compressed int8 per output channel, fp16 and fp32 state
dicts also load); :func:`load_checkpoint` also reads
the published EchoNet layouts.  Training and fine-tuning call :func:`save_weights` and then
:func:`register`; the manifest is rewritten atomically under a lock.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from echomeasure import atomic, config
from echomeasure.catalog import APICAL_SEG_CLASSES, DOPPLER_CHANNELS, KEYPOINTS_2D, VIEWS
from echomeasure.errors import WeightsError
from echomeasure.models.choices import ARCHITECTURES, CLASSIFIER_ARCHITECTURES, Normalisation
from echomeasure.models.decode import DecodeSettings

if TYPE_CHECKING:  # torch is imported only where weights are read or written
    import torch
    from torch import nn

    from echomeasure.models.builders import HeatmapModel

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 2

#: Registry names of the models the catalogue refers to (``catalog.Measurement.model``).
PLAX_LINEAR = "plax-linear"
DOPPLER_PEAKS = "doppler-peaks"

_TRAIN_HINT = {
    PLAX_LINEAR: "echomeasure train --model plax-linear",
    "view": "python -m echomeasure.training.view_train",
    "apical-seg": "python -m echomeasure.training.apical_seg_train",
    "plax-seg": "python -m echomeasure.training.plax_seg_train",
    DOPPLER_PEAKS: "echomeasure train --model doppler-peaks",
}


def _train_hint(name: str) -> str:
    return _TRAIN_HINT.get(name, f"echomeasure train --model {name}")


#: What a registry name or version may be: it names a weight file (``<name>-<version>.pt``) and
#: appears in JSON and the review store, so letters, digits and ``. _ + -`` only, starting with a
#: letter or digit (no path separator, no ``..`` leading a name, no spaces or control characters).
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


def check_name(kind: str, text: object) -> str:
    """``text`` as a registry name or version (:data:`_NAME_PATTERN`); ValueError otherwise."""
    if not isinstance(text, str) or not _NAME_PATTERN.fullmatch(text):
        raise ValueError(f"{kind} {text!r} is not allowed: letters, digits and . _ + - only, "
                         "starting with a letter or digit, at most 64 characters")
    return text


def check_file_name(file: object) -> str:
    """An entry's ``file``: a relative path inside the weights folder (no ``..``, not absolute)."""
    if not isinstance(file, str) or not file or "\\" in file or "\0" in file:
        raise ValueError(f"file {file!r} must be a path relative to the weights folder")
    parts = PurePosixPath(file).parts
    if PurePosixPath(file).is_absolute() or not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"file {file!r} must be a path inside the weights folder (no '..', not absolute)")
    return file


class VersionExistsError(WeightsError, ValueError):
    """A ``(name, version)`` that is already registered (registered versions are immutable).

    A :class:`WeightsError` (one line, exit 2 from the CLI) and, as before, a ``ValueError``."""


#: Evaluation protocols (keys of :attr:`WeightsEntry.metrics`): held-out synthetic cases in the
#: style families the model was trained on, in a style family no model trains on, the held-out
#: split of the reviews a version was fine-tuned on, and the resolution ceiling of a segmentation
#: model (its ground truth resampled to the model's input size).  A real dataset's own name
#: (e.g. ``"echonet-lvh"``) is a protocol too.
OWN_STYLE = "own-style"
HELDOUT_STYLE = "held-out-style"
REVIEW_HOLDOUT = "review-holdout"
RESOLUTION_CEILING = "resolution-ceiling"

#: ``protocol -> figure name -> value`` once an entry is built; a flat format-1 mapping is accepted
#: by the constructor and converted, hence the loose static type.
Metrics = Mapping[str, Any]


@dataclass(frozen=True)
class FlagThresholds:
    """What the low-confidence flag (:mod:`echomeasure.propose.flags`) reads for one version.

    Measured on held-out cases (:func:`echomeasure.training.evaluate.confidence_flag`); None
    when unknown.

    Attributes
    ----------
    low_confidence_below
        A proposal with a confidence strictly below it is flagged.
    confidence_floor
        The held-out 2nd percentile of confidence; below it a proposal is always flagged.
    flagged_mae_ratio
        Mean error of the flagged quarter over the rest; when it is small the confidence does
        not rank errors and only ``confidence_floor`` flags.
    by_measurement
        The same three figures measured on each measurement's proposals alone
        (``{"la": {"low_confidence_below": ..., ...}}``): a measurement's confidences are read
        against its own (a caliper whose far end is the model's own point is less confident
        than one the edge search confirmed, whatever its error); a measurement not listed uses
        the pooled figures above.
    """

    low_confidence_below: float | None = None
    confidence_floor: float | None = None
    flagged_mae_ratio: float | None = None
    by_measurement: Mapping[str, Mapping[str, float]] | None = None

    def __post_init__(self) -> None:
        for name in _THRESHOLD_KEYS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))
        if self.by_measurement is not None:  # a measurement without a mapping of figures has none
            object.__setattr__(self, "by_measurement", {
                str(m): {k: float(v[k]) for k in _THRESHOLD_KEYS if v.get(k) is not None}
                for m, v in self.by_measurement.items() if isinstance(v, Mapping)} or None)

    def to_json(self) -> dict[str, Any]:
        """The manifest form (unknown values left out)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in _THRESHOLD_KEYS if getattr(self, k) is not None}
        if self.by_measurement:
            out["by_measurement"] = {m: dict(v) for m, v in self.by_measurement.items()}
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FlagThresholds:
        """Build thresholds from their manifest form (other keys are ignored)."""
        per = d.get("by_measurement")
        return cls(**{k: d[k] for k in _THRESHOLD_KEYS if d.get(k) is not None},
                   by_measurement=per if isinstance(per, Mapping) else None)


_THRESHOLD_KEYS = ("low_confidence_below", "confidence_floor", "flagged_mae_ratio")
#: Format-1 metric-name prefixes and the protocol they name (first match wins).
_LEGACY_PROTOCOL_PREFIXES = (
    ("heldout_style_", HELDOUT_STYLE),
    ("heldout_", HELDOUT_STYLE),
    ("own_", OWN_STYLE),
    ("reviews_", REVIEW_HOLDOUT),
    ("resolution_ceiling_", RESOLUTION_CEILING),
)
#: Format-1 ``extra`` keys that are decode settings.
_LEGACY_DECODE_KEYS = ("sigma_px", "max_shift_px")


def _legacy_protocol(extra: Mapping[str, Any]) -> str:
    """The protocol of a format-1 entry's unprefixed metrics: the real dataset it was trained and
    evaluated on when its ``extra`` names one, else the synthetic own-style hold-out."""
    data = extra.get("training_data")
    for dataset in (extra.get("dataset"), data.get("dataset") if isinstance(data, Mapping) else None):
        if isinstance(dataset, str) and dataset:
            return dataset
    return OWN_STYLE


def _split_flat_metrics(flat: Mapping[str, Any], protocol: str) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Format-1 flat metrics -> (metrics by protocol, flag thresholds)."""
    by_protocol: dict[str, dict[str, float]] = {}
    thresholds: dict[str, Any] = {}
    for key, value in flat.items():
        if key in _THRESHOLD_KEYS:
            thresholds[key] = value
            continue
        target, name = protocol, key
        for prefix, named in _LEGACY_PROTOCOL_PREFIXES:
            if key.startswith(prefix):
                target, name = named, key[len(prefix):]
                break
        by_protocol.setdefault(target, {})[name] = value
    return by_protocol, thresholds


def metrics_from_flat(flat: Mapping[str, Any], protocol: str = OWN_STYLE) -> tuple[dict[str, dict[str, float]], FlagThresholds]:
    """Flat evaluation figures (``{"lvidd_mae_mm": ..., "low_confidence_below": ...}``) -> the
    metrics of one protocol and the flag thresholds among them, for a :class:`WeightsEntry`.

    Prefixed names (``own_``, ``heldout_``, ``reviews_``, ``resolution_ceiling_``) go to their
    own protocol, as in :func:`upgrade_entry_json`.
    """
    by_protocol, thresholds = _split_flat_metrics({k: v for k, v in flat.items() if v is not None}, protocol)
    return by_protocol, FlagThresholds.from_json(thresholds)


def _is_flat(metrics: Mapping[str, Any]) -> bool:
    nested = [isinstance(v, Mapping) for v in metrics.values()]
    if any(nested) and not all(nested):
        raise ValueError("metrics must map each evaluation protocol to its figures, e.g. {'own-style': {...}}")
    return bool(nested) and not any(nested)


def upgrade_entry_json(d: Mapping[str, Any]) -> dict[str, Any]:
    """A manifest entry in the current form; a format-1 entry is converted, a current one copied.

    Format 1 kept the flag thresholds among flat ``metrics`` and the decode settings in
    ``extra`` (``sigma_px``, ``max_shift_px``, ``decode.edge_offsets_mm``).  Metric names with
    an ``own_``, ``heldout_``/``heldout_style_``, ``reviews_`` or ``resolution_ceiling_`` prefix
    go to that protocol without it; the others to the dataset named in ``extra``, else
    :data:`OWN_STYLE`.  What ``extra["decode"]`` holds besides the settings stays there.
    """
    out = dict(d)
    extra = dict(out.get("extra") or {})
    metrics = dict(out.get("metrics") or {})
    if _is_flat(metrics):
        by_protocol, thresholds = _split_flat_metrics(metrics, _legacy_protocol(extra))
        out["metrics"] = by_protocol
        out["thresholds"] = {**dict(out.get("thresholds") or {}), **thresholds}
    legacy_decode = {k: extra.pop(k) for k in _LEGACY_DECODE_KEYS if k in extra}
    old_decode = extra.pop("decode", None)
    if isinstance(old_decode, Mapping):
        old_decode = dict(old_decode)
        if "edge_offsets_mm" in old_decode:
            legacy_decode["edge_offsets_mm"] = old_decode.pop("edge_offsets_mm") or {}
        old_decode.pop("refine_edges", None)  # always on: propose's refine_edges argument decides
        if old_decode:
            extra["decode"] = old_decode
    if legacy_decode:
        out["decode"] = {**dict(out.get("decode") or {}), **legacy_decode}
    out["extra"] = extra
    return out


@dataclass(frozen=True)
class WeightsEntry:
    """One version of one model: everything needed to load and use its weight file.

    Attributes
    ----------
    name
        Registry name, e.g. ``"plax-linear"`` or ``"doppler-peaks"``.
    version
        Free-form version string, unique per name (e.g. ``"1.0"``, ``"1.1-ft3"``).
    arch
        Builder name from :data:`echomeasure.models.builders.ARCHITECTURES`.
    input_size
        Model input ``(H, W)`` in pixels (see :class:`echomeasure.models.preprocess.CropTransform`).
    normalisation
        ``"unit"`` (RGB / 255) or ``"imagenet"`` (applied inside the model).
    channels
        Meaning of each output channel, all from :data:`echomeasure.catalog.KEYPOINTS_2D` (2D)
        or all from :data:`echomeasure.catalog.DOPPLER_CHANNELS` (Doppler), in output order.
    file
        Weight file name, relative to the weights folder.
    sha256
        Hex sha256 of the weight file; a mismatch refuses to load.
    trained_on
        Human-readable description of the training data (generator, case ids, seeds, reviews).
    seed
        Random seed of the training run (None if not seeded).
    recipe
        The exact command that produced the file.
    metrics
        Measured figures per evaluation protocol, e.g.
        ``{"own-style": {"lvidd_mae_mm": 0.8}, "held-out-style": {"lvidd_mae_mm": 1.4}}``
        (:data:`OWN_STYLE`, :data:`HELDOUT_STYLE`, :data:`REVIEW_HOLDOUT`, a dataset's name).
    thresholds
        What the low-confidence flag reads (:class:`FlagThresholds`); not a reported figure.
    decode
        How the heatmaps are decoded (:class:`~echomeasure.models.decode.DecodeSettings`).
    parent
        Version this one was fine-tuned from (None for a model trained from scratch).
    created
        ISO 8601 timestamp (UTC).
    num_params
        Number of parameters.
    extra
        Anything else worth keeping (training data, optimiser, loss, ...); nothing in it changes
        inference.

    A flat ``metrics`` mapping or decode settings in ``extra`` (format 1) are converted as
    :func:`upgrade_entry_json` does.
    """

    name: str
    version: str
    arch: str
    input_size: tuple[int, int]
    channels: tuple[str, ...]
    file: str
    sha256: str
    normalisation: Normalisation = "unit"
    trained_on: str = ""
    seed: int | None = None
    recipe: str = ""
    metrics: Metrics = field(default_factory=dict)
    parent: str | None = None
    created: str = ""
    num_params: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    thresholds: FlagThresholds = field(default_factory=FlagThresholds)
    decode: DecodeSettings = field(default_factory=DecodeSettings)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "channels", tuple(self.channels))
        self._upgrade_legacy_fields()
        if not self.name or not self.version:
            raise ValueError("a weights entry needs a name and a version")
        check_name("name", self.name)
        check_name("version", self.version)
        check_file_name(self.file)
        if not isinstance(self.sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"sha256 must be 64 lower-case hex digits, got {self.sha256!r}")
        if self.arch not in ARCHITECTURES + CLASSIFIER_ARCHITECTURES:
            known = ", ".join(ARCHITECTURES + CLASSIFIER_ARCHITECTURES)
            raise ValueError(f"unknown arch {self.arch!r}; known: {known}")
        if len(self.input_size) != 2 or min(self.input_size) < 32:
            raise ValueError(f"input_size must be (H, W) >= 32 px, got {self.input_size}")
        if self.normalisation not in ("unit", "imagenet"):
            raise ValueError(f"unknown normalisation {self.normalisation!r}")
        if not self.channels:
            raise ValueError("a weights entry needs at least one channel")
        # a segmentation model (first channel "background") may name any structures: plax-seg, a user's mask classes
        segmentation = len(self.channels) >= 2 and self.channels[0] == "background"
        if not segmentation and not any(
            set(self.channels) <= set(names) for names in (KEYPOINTS_2D, DOPPLER_CHANNELS, VIEWS, APICAL_SEG_CLASSES)
        ):
            raise ValueError(
                f"channels {self.channels} must all come from catalog.KEYPOINTS_2D, all from "
                "catalog.DOPPLER_CHANNELS, all from catalog.VIEWS or all from catalog.APICAL_SEG_CLASSES"
            )
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"duplicate channels in {self.channels}")

    def _upgrade_legacy_fields(self) -> None:
        """Move format-1 flat metrics and ``extra`` decode settings into their typed fields."""
        legacy = upgrade_entry_json({"metrics": dict(self.metrics), "extra": dict(self.extra),
                                     "thresholds": self.thresholds.to_json(), "decode": self.decode.to_json()})
        object.__setattr__(self, "metrics", {str(p): dict(m) for p, m in legacy["metrics"].items()})
        object.__setattr__(self, "extra", legacy["extra"])
        object.__setattr__(self, "thresholds", FlagThresholds.from_json(legacy["thresholds"]))
        object.__setattr__(self, "decode", DecodeSettings.from_json(legacy["decode"]))

    def metric(self, name: str, protocol: str = OWN_STYLE) -> float | None:
        """One reported figure under one evaluation protocol (None when not measured)."""
        value = self.metrics.get(protocol, {}).get(name)
        return None if value is None else float(value)

    @property
    def mode(self) -> Literal["2d", "doppler", "view", "segmentation"]:
        """``"2d"`` keypoints, ``"doppler"`` peaks, ``"view"`` the view classifier, ``"segmentation"`` label maps."""
        if set(self.channels) <= set(KEYPOINTS_2D):
            return "2d"
        if set(self.channels) <= set(VIEWS):
            return "view"
        if self.channels[0] == "background" or set(self.channels) <= set(APICAL_SEG_CLASSES):
            return "segmentation"
        return "doppler"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (the manifest form)."""
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["channels"] = list(self.channels)
        d["metrics"] = {p: dict(m) for p, m in self.metrics.items()}
        d["extra"] = dict(self.extra)
        d["thresholds"] = self.thresholds.to_json()
        d["decode"] = self.decode.to_json()
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> WeightsEntry:
        """Build an entry from its manifest form, current or format 1 (unknown keys go to ``extra``)."""
        d = upgrade_entry_json(d)
        known = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in d.items() if k in known}
        unknown = {k: v for k, v in d.items() if k not in known}
        if unknown:
            kwargs["extra"] = {**dict(kwargs.get("extra") or {}), **unknown}
        kwargs["thresholds"] = FlagThresholds.from_json(kwargs.get("thresholds") or {})
        kwargs["decode"] = DecodeSettings.from_json(kwargs.get("decode") or {})
        return cls(**kwargs)


@dataclass
class LoadedModel:
    """A model ready for inference with the entry that describes it."""

    entry: WeightsEntry
    model: HeatmapModel
    path: Path

    @property
    def name(self) -> str:
        """Registry name."""
        return self.entry.name

    @property
    def version(self) -> str:
        """Registry version."""
        return self.entry.version

    @property
    def sha256(self) -> str:
        """sha256 of the weight file (checked at load)."""
        return self.entry.sha256


# --------------------------------------------------------------------------- files


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: Marker of the compact file format written by :func:`save_weights` with ``precision="int8"``.
INT8_FORMAT = "echomeasure-int8-per-channel/1"
_GZIP_MAGIC = b"\x1f\x8b"
Precision = Literal["int8", "fp16", "fp32"]


def _quantise_int8(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: ``v ~= q * scale[:, None, ...]``; returns (q, scale)."""
    import torch

    flat = v.detach().float().reshape(v.shape[0], -1)
    scale = (flat.abs().amax(dim=1) / 127.0).clamp_min(1e-12)
    q = torch.round(flat / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.reshape(v.shape).contiguous(), scale.contiguous()


def save_weights(model: nn.Module, path: str | os.PathLike[str], *, precision: Precision = "int8") -> str:
    """Write a model's weights atomically and return the file's sha256.

    Parameters
    ----------
    model
        A :class:`~echomeasure.models.builders.HeatmapModel` (its state dict keys are ``m.*``).
    path
        Destination; written to a temporary file in the same folder, then renamed.
    precision
        ``"int8"`` (default, shipped weights): convolution weights as int8 with one fp32 scale
        per output channel, everything else (biases, BatchNorm) fp32, the whole file
        gzip-compressed.  Loading dequantises to fp32, so inference runs in fp32 as before; the
        measured file sizes and effect on held-out error are in ``weights/README.md``.
        ``"fp16"``: floating tensors in fp16 (BatchNorm statistics fp32), a plain state dict.
        ``"fp32"``: a plain fp32 state dict (the EchoNet layout).

    Returns
    -------
    str
        Hex sha256 of the written file, for :class:`WeightsEntry`.
    """
    import gzip
    import io

    import torch

    if precision not in ("int8", "fp16", "fp32"):
        raise ValueError(f"precision must be 'int8', 'fp16' or 'fp32', got {precision!r}")
    state: dict[str, torch.Tensor] = {}
    scales: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if not v.is_floating_point() or precision == "fp32" or k.endswith(("running_mean", "running_var")):
            state[k] = v.contiguous()
        elif precision == "fp16":
            state[k] = v.half().contiguous()
        elif v.ndim >= 2:  # conv / linear weights: int8 per output channel
            state[k], scales[k] = _quantise_int8(v)
        else:
            state[k] = v.float().contiguous()
    path = Path(path)
    if precision != "int8":
        with atomic.atomic_path(path, make_parents=True) as tmp:
            torch.save(state, tmp)
        return sha256_file(path)
    buf = io.BytesIO()
    torch.save({"format": INT8_FORMAT, "state_dict": state, "scales": scales}, buf)
    # mtime=0: the same weights always give the same bytes (and sha256)
    packed = gzip.compress(buf.getvalue(), compresslevel=9, mtime=0)
    atomic.write_bytes(path, packed, make_parents=True)
    return sha256_file(path)


def _read_weights_object(path: Path) -> Any:
    """``torch.load`` a weights file (``weights_only``: no code runs); gunzip it first if needed,
    and dequantise the int8 format of :func:`save_weights` to a plain fp32 state dict."""
    import gzip
    import io

    import torch

    with open(path, "rb") as fh:
        head = fh.read(2)
    if head == _GZIP_MAGIC:
        with gzip.open(path, "rb") as fh:
            obj = torch.load(io.BytesIO(fh.read()), map_location="cpu", weights_only=True)
    else:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping) and obj.get("format") == INT8_FORMAT:
        state = dict(obj["state_dict"])
        for k, scale in obj["scales"].items():
            q = state[k]
            state[k] = q.float() * scale.float().reshape(-1, *([1] * (q.ndim - 1)))
        return state
    return obj


_PREFIXES = ("module.", "m.", "model.")


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{path.name} holds no state dict; give a torch.save-d state dict or {{'state_dict': ...}}")
    import torch

    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{path.name}: entry {key!r} is not a tensor; this is not a weights file")
        k = str(key)
        stripped = True
        while stripped:
            stripped = False
            for prefix in _PREFIXES:
                if k.startswith(prefix):
                    k = k[len(prefix) :]
                    stripped = True
        if k.startswith("aux_classifier."):
            continue
        out[k] = value
    return out


def load_checkpoint(
    path: str | os.PathLike[str],
    arch: str = "deeplabv3_resnet50",
    num_classes: int = 1,
    *,
    normalisation: Normalisation = "unit",
) -> HeatmapModel:
    """Load a DeepLabV3 checkpoint in any of the published layouts into a :class:`HeatmapModel`.

    Accepted layouts: a plain state dict whose keys carry an ``m.`` prefix (EchoNet-Measurements
    and :func:`save_weights`); ``{"state_dict": ...}`` with ``module.`` prefixes
    (EchoNet-Dynamic, ``DataParallel``); plain torchvision keys.  Auxiliary-head keys
    (``aux_classifier.*``) are dropped; fp16 tensors are cast to fp32 and the gzip-compressed int8
    format of :func:`save_weights` is dequantised.

    Parameters
    ----------
    path
        The checkpoint file (``torch.load`` with ``weights_only=True``: no code is executed).
    arch
        Builder name (``"deeplabv3_resnet50"`` for the EchoNet checkpoints).
    num_classes
        Output channels (EchoNet: 2 for a two-endpoint 2D model, 1 for a Doppler model).
    normalisation
        See :class:`~echomeasure.models.builders.HeatmapModel`.

    Returns
    -------
    HeatmapModel
        In eval mode, fp32.

    Raises
    ------
    WeightsError
        Missing, unreadable or corrupt file; keys of another architecture; mismatched shapes.
    """
    import torch

    from echomeasure.models.builders import build_model

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found; check the path or restore the file")
    try:
        obj = _read_weights_object(path)
    except Exception as exc:  # torch raises many types for a truncated/foreign file
        raise WeightsError(
            f"cannot read weights file {path.name} ({type(exc).__name__}); it is corrupt or not a "
            "PyTorch checkpoint: restore it or re-train"
        ) from None
    state = _unwrap_state_dict(obj, path)
    model = build_model(arch, num_classes, normalisation=normalisation)
    expected = model.m.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        sample = ", ".join((missing or unexpected)[:3])
        raise WeightsError(
            f"{path.name} does not fit a {arch}: {len(missing)} missing and {len(unexpected)} "
            f"unexpected keys (e.g. {sample}); it was trained with another architecture or is not this model's file"
        )
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise WeightsError(
                f"{path.name}: {k} has shape {tuple(v.shape)} but a {arch} with {num_classes} "
                f"output(s) needs {tuple(expected[k].shape)}; pass the right arch/num_classes"
            )
    fixed = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    for k, v in expected.items():  # older checkpoints lack num_batches_tracked
        fixed.setdefault(k, v)
    model.m.load_state_dict(fixed, strict=True)
    # one reduction per tensor: a NaN or inf anywhere makes its sum non-finite (cheaper than an
    # elementwise isfinite over every parameter)
    with torch.no_grad():
        sums = torch.stack([p.detach().sum() for p in model.parameters()])
    if not bool(torch.isfinite(sums).all()):
        raise WeightsError(f"{path.name} contains NaN or infinite weights; restore it or re-train")
    return model.eval()


# --------------------------------------------------------------------------- manifest


def _manifest_path(weights_dir: str | os.PathLike[str] | None) -> Path:
    return Path(weights_dir) if weights_dir is not None else config.weights_dir()


def _empty_manifest() -> dict[str, Any]:
    return {"format": MANIFEST_FORMAT, "active": {}, "models": []}


def read_manifest(weights_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The raw manifest of a weights folder (an empty one when the file does not exist).

    Raises
    ------
    WeightsError
        When ``manifest.json`` exists but is not valid JSON of the expected shape.
    """
    path = _manifest_path(weights_dir) / MANIFEST_NAME
    if not path.exists():
        return _empty_manifest()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read {path} ({exc}); restore it from version control") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise WeightsError(f"{path} is not a weights manifest (no 'models' list); restore it")
    data.setdefault("active", {})
    _check_manifest(path, data)
    return data


def _check_manifest(path: Path, data: dict[str, Any]) -> None:
    """Refuse a manifest whose entries cannot be used as they are (a hand edit gone wrong): an
    entry that is not a valid :class:`WeightsEntry` (unknown arch, a ``file`` outside the folder, a
    version that is not a plain name, ...), a name and version registered twice, an ``active``
    that is not a mapping of names to versions.  One :class:`WeightsError` naming the manifest."""
    fix = "fix the entry or restore the manifest from version control"
    fmt = data.get("format", 1)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise WeightsError(f"{path}: 'format' must be a whole number; {fix}")
    if fmt > MANIFEST_FORMAT:
        # its entries may mean something this version does not know, and registering here would
        # rewrite it as format {MANIFEST_FORMAT}
        raise WeightsError(f"{path} is a format-{fmt} manifest, written by a newer echomeasure (this one reads "
                           f"format {MANIFEST_FORMAT} and older); upgrade echomeasure to use these weights")
    active = data["active"]
    if not isinstance(active, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in active.items()):
        raise WeightsError(f"{path}: 'active' must map model names to versions; {fix}")
    seen: set[tuple[str, str]] = set()
    for i, d in enumerate(data["models"]):
        if not isinstance(d, dict):
            raise WeightsError(f"{path}: models[{i}] is not an entry; {fix}")
        label = f"models[{i}]"
        if isinstance(d.get("name"), str) and isinstance(d.get("version"), str):
            label += f" ({d['name']!r} {d['version']!r})"
        try:
            entry = WeightsEntry.from_json(d)
        except (TypeError, ValueError, AttributeError) as exc:
            reason = " ".join(str(exc).replace("WeightsEntry.__init__() ", "").split())
            raise WeightsError(f"{path}: {label}: {reason}; {fix}") from None
        key = (entry.name, entry.version)
        if key in seen:
            raise WeightsError(f"{path}: {label} is registered twice; {fix}")
        seen.add(key)


def list_entries(weights_dir: str | os.PathLike[str] | None = None) -> list[WeightsEntry]:
    """All registered versions, in registration order."""
    return [WeightsEntry.from_json(d) for d in read_manifest(weights_dir)["models"]]


def active_version(name: str, weights_dir: str | os.PathLike[str] | None = None) -> str | None:
    """The active version of ``name`` (explicitly set, else the last registered), or None."""
    manifest = read_manifest(weights_dir)
    active = manifest["active"].get(name)
    if active:
        return str(active)
    versions = [d["version"] for d in manifest["models"] if d.get("name") == name]
    return str(versions[-1]) if versions else None


def get_entry(name: str, version: str | None = None, weights_dir: str | os.PathLike[str] | None = None) -> WeightsEntry:
    """Look up a registry entry; ``version=None`` means the active version.

    Raises
    ------
    WeightsError
        No manifest, no such model, or no such version (the message lists what exists).
    """
    folder = _manifest_path(weights_dir)
    if not (folder / MANIFEST_NAME).exists():
        raise WeightsError(
            f"no model weights in {folder} (manifest.json missing); run `{_train_hint(name)}` or "
            "set ECHOMEASURE_WEIGHTS to a folder with trained weights"
        )
    entries = [e for e in list_entries(folder) if e.name == name]
    if not entries:
        raise WeightsError(f"no weights for model {name!r} in {folder}; run `{_train_hint(name)}`")
    wanted = version if version is not None else active_version(name, folder)
    for e in entries:
        if e.version == wanted:
            return e
    known = ", ".join(e.version for e in entries)
    raise WeightsError(f"model {name!r} has no version {wanted!r}; known versions: {known}")


def _not_writable(folder: Path, exc: OSError) -> WeightsError:
    reason = exc.strerror or type(exc).__name__
    return WeightsError(f"weights folder {folder} is not writable ({reason}); nothing was registered: "
                        "pass --out DIR (or set ECHOMEASURE_WEIGHTS) to a folder you can write")


def check_writable(weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """The weights folder, created if needed, once a file could be created and removed in it.

    Call it before spending time on training: :func:`register` and :func:`publish` need to write
    there (a read-only folder, a full disk or another user's folder are found out at once).

    Raises
    ------
    WeightsError
        The folder cannot be created or written (one line naming it).
    """
    folder = _manifest_path(weights_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise _not_writable(folder, exc) from None
    return folder


@contextlib.contextmanager
def _manifest_lock(folder: Path) -> Iterator[None]:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fh = open(folder / ".manifest.lock", "a+")  # noqa: SIM115 - closed below, after the body
    except OSError as exc:
        raise _not_writable(folder, exc) from None
    with fh:
        try:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - non-POSIX: best effort
            pass
        yield


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    try:
        atomic.write_text(folder / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=False) + "\n",
                          make_parents=True)
    except OSError as exc:  # the old manifest is left as it was (atomic replace)
        raise _not_writable(folder, exc) from None


def _add_to_manifest(manifest: dict, entry: WeightsEntry, activate: bool) -> None:
    """Append ``entry`` to a manifest being rewritten; with ``activate`` it becomes the active version
    of its name, else the version in use stays in use: a manifest naming no active version uses the
    last registered one (:func:`active_version`), which ``entry`` would become, so that one is pinned."""
    in_use = [d["version"] for d in manifest["models"] if d.get("name") == entry.name]
    manifest["models"].append(entry.to_json())
    if activate:
        manifest["active"][entry.name] = entry.version
    elif in_use and not manifest["active"].get(entry.name):
        manifest["active"][entry.name] = in_use[-1]


def register(
    entry: WeightsEntry,
    *,
    weights_dir: str | os.PathLike[str] | None = None,
    activate: bool = True,
    verify: bool = True,
) -> WeightsEntry:
    """Add a version to the manifest (atomically, under a file lock).

    Parameters
    ----------
    entry
        The new version; ``entry.file`` must already exist in the weights folder.  ``created``
        is filled in when empty.
    weights_dir
        The weights folder (default :func:`echomeasure.config.weights_dir`).
    activate
        Make this the active version of ``entry.name``.
    verify
        Check that the file's sha256 matches ``entry.sha256``.

    Returns
    -------
    WeightsEntry
        The entry as stored.

    Raises
    ------
    WeightsError
        The file is missing or its sha256 differs.
    ValueError
        ``(name, version)`` is already registered (versions are immutable).
    """
    folder = _manifest_path(weights_dir)
    path = folder / entry.file
    if verify:
        if not path.is_file():
            raise WeightsError(f"weights file {path} not found; save it before registering")
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise WeightsError(f"weights file {entry.file} has sha256 {actual}, entry says {entry.sha256}")
    if not entry.created:
        entry = WeightsEntry.from_json(
            {**entry.to_json(), "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
        )
    with _manifest_lock(folder):
        manifest = read_manifest(folder)
        if any(d.get("name") == entry.name and d.get("version") == entry.version for d in manifest["models"]):
            raise VersionExistsError(f"{entry.name} {entry.version} is already registered in {folder}; "
                                     "registered versions are immutable: pick a new version")
        _add_to_manifest(manifest, entry, activate)
        manifest["format"] = MANIFEST_FORMAT
        _write_manifest(folder, manifest)
    log.info("registered %s %s (%s)", entry.name, entry.version, entry.file)
    return entry


def register_many(
    entries: list[WeightsEntry],
    *,
    weights_dir: str | os.PathLike[str] | None = None,
    activate: bool = True,
) -> list[WeightsEntry]:
    """Add several versions in one manifest write: all of them, or none.

    Every file is checked against its sha256 first, and every ``(name, version)`` must be new;
    then the manifest is rewritten once, atomically, under the lock (an import of several
    checkpoints never leaves half of them registered).

    Raises
    ------
    WeightsError
        A file is missing or its sha256 differs.
    ValueError
        A ``(name, version)`` is already registered or given twice.
    """
    folder = _manifest_path(weights_dir)
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    stamped: list[WeightsEntry] = []
    for entry in entries:
        path = folder / entry.file
        if not path.is_file():
            raise WeightsError(f"weights file {path} not found; save it before registering")
        if sha256_file(path) != entry.sha256:
            raise WeightsError(f"weights file {entry.file} does not have the sha256 its entry gives")
        stamped.append(entry if entry.created else WeightsEntry.from_json({**entry.to_json(), "created": now}))
    keys = [(e.name, e.version) for e in stamped]
    if len(set(keys)) != len(keys):
        raise ValueError("the same name and version is given twice")
    with _manifest_lock(folder):
        manifest = read_manifest(folder)
        existing = {(d.get("name"), d.get("version")) for d in manifest["models"]}
        taken = [f"{n} {v}" for n, v in keys if (n, v) in existing]
        if taken:
            raise VersionExistsError(f"{taken[0]} is already registered; pick a new version")
        for entry in stamped:
            _add_to_manifest(manifest, entry, activate)
        manifest["format"] = MANIFEST_FORMAT
        _write_manifest(folder, manifest)
    for entry in stamped:
        log.info("registered %s %s (%s)", entry.name, entry.version, entry.file)
    return stamped


def publish(
    entry: WeightsEntry,
    source: str | os.PathLike[str],
    *,
    weights_dir: str | os.PathLike[str] | None = None,
    activate: bool = True,
    version_for: Callable[[list[str]], str] | None = None,
) -> WeightsEntry:
    """Copy a weight file into the weights folder and register it, in one step under the
    manifest lock: what a training or fine-tuning run calls at its end.

    Two runs that finish together into the same folder each get their own version and file:
    the version is chosen (``version_for``), the file copied and the manifest written while the
    lock is held, and a file that a registered version uses is never replaced (before, the
    second run copied its weights over the first one's registered file and then failed,
    leaving the manifest's sha256 wrong for a version that was already active).

    Parameters
    ----------
    entry
        The new version; ``entry.sha256`` is the sha256 of ``source``.
    source
        The weight file (anywhere, e.g. a scratch folder); it is copied, not moved.
    weights_dir
        The weights folder (default :func:`echomeasure.config.weights_dir`).
    activate
        Make this the active version of ``entry.name``.  Without, the version in use stays in use
        (pinned when the manifest named none, since the last registered one is used then).
    version_for
        Picks the version from the versions of ``entry.name`` registered at that moment (e.g. the
        next free ``-ftN``); the file is then named ``<name>-<version>`` with ``entry.file``'s
        suffix.  None: ``entry.version`` and ``entry.file`` as given.

    Returns
    -------
    WeightsEntry
        The entry as registered (its version and file as chosen).

    Raises
    ------
    VersionExistsError
        ``(name, version)`` is already registered.
    WeightsError
        ``source`` does not have ``entry.sha256``, its file name belongs to a registered version,
        or the folder is not writable.  Nothing is registered and no registered file is touched.
    """
    folder = _manifest_path(weights_dir)
    source = Path(source)
    if not source.is_file() or sha256_file(source) != entry.sha256:
        raise WeightsError(f"weights file {source} is missing or does not have the sha256 of {entry.name} {entry.version}")
    if not entry.created:
        entry = replace(entry, created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    with _manifest_lock(folder):
        manifest = read_manifest(folder)
        registered = [WeightsEntry.from_json(d) for d in manifest["models"]]
        if version_for is not None:
            version = check_name("version", version_for([e.version for e in registered if e.name == entry.name]))
            suffix = PurePosixPath(entry.file).suffix or ".pt"
            entry = replace(entry, version=version, file=f"{entry.name}-{version}{suffix}")
        if any(e.name == entry.name and e.version == entry.version for e in registered):
            raise VersionExistsError(f"{entry.name} {entry.version} is already registered in {folder}; "
                                     "registered versions are immutable: pick a new version")
        owner = next((e for e in registered if PurePosixPath(e.file) == PurePosixPath(entry.file)), None)
        if owner is not None:
            raise WeightsError(f"{entry.file} in {folder} is the file of {owner.name} {owner.version}; "
                               "pick another version (a registered file is never replaced)")
        target = folder / entry.file
        try:
            atomic.copy_file(source, target, make_parents=True)
        except OSError as exc:
            raise _not_writable(folder, exc) from None
        try:
            _add_to_manifest(manifest, entry, activate)
            manifest["format"] = MANIFEST_FORMAT
            _write_manifest(folder, manifest)
        except BaseException:
            target.unlink(missing_ok=True)  # no file left that the manifest does not name
            raise
    log.info("registered %s %s (%s)", entry.name, entry.version, entry.file)
    return entry


def update_entry(
    entry: WeightsEntry,
    *,
    weights_dir: str | os.PathLike[str] | None = None,
    new_file: str | os.PathLike[str] | None = None,
) -> WeightsEntry:
    """Re-record an already registered version (same name and version), under the manifest lock.

    For what does not make it another model: re-measured metrics after a decoding change, or the
    same weights stored more compactly (``new_file``, copied atomically over the entry's file;
    its sha256 must be ``entry.sha256``).  Anything trained differently is a new version
    (:func:`register`).

    Raises
    ------
    WeightsError
        The version is not registered, or ``new_file``'s sha256 differs from ``entry.sha256``.
    """
    folder = _manifest_path(weights_dir)
    if new_file is not None and sha256_file(new_file) != entry.sha256:
        raise WeightsError(f"{new_file} does not have the sha256 of the entry {entry.name} {entry.version}")
    with _manifest_lock(folder):
        manifest = read_manifest(folder)
        index = next((i for i, d in enumerate(manifest["models"])
                      if d.get("name") == entry.name and d.get("version") == entry.version), None)
        if index is None:
            raise WeightsError(f"{entry.name} {entry.version} is not registered in {folder}; register it first")
        if new_file is not None:
            atomic.copy_file(Path(new_file), folder / entry.file)
        manifest["models"][index] = entry.to_json()
        _write_manifest(folder, manifest)
    log.info("updated %s %s (%s)", entry.name, entry.version, entry.file)
    return entry


def set_active(name: str, version: str, *, weights_dir: str | os.PathLike[str] | None = None) -> None:
    """Select which version of ``name`` is used when no version is asked for (activate a new
    version, or roll back to an earlier one).

    Raises
    ------
    WeightsError
        When ``(name, version)`` is not registered, or its weight file is missing or not the
        registered one (activating it would make every measurement fail); the manifest is left as
        it was.
    """
    folder = _manifest_path(weights_dir)
    verify_file(get_entry(name, version, folder), folder)
    with _manifest_lock(folder):
        manifest = read_manifest(folder)
        manifest["active"][name] = version
        _write_manifest(folder, manifest)


def resolve_path(entry: WeightsEntry, weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """Absolute path of an entry's weight file."""
    return _manifest_path(weights_dir) / entry.file


def verify_file(entry: WeightsEntry, weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """Check that an entry's file exists and has the registered sha256; return its path.

    Raises
    ------
    WeightsError
        Missing file or sha256 mismatch, with what to do.
    """
    path = resolve_path(entry, weights_dir)
    hint = _train_hint(entry.name)
    if not path.is_file():
        raise WeightsError(
            f"weights file {path} for {entry.name} {entry.version} is missing; re-run `{hint}` or restore the file"
        )
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise WeightsError(
            f"weights file {entry.file} has sha256 {actual[:16]}..., manifest says {entry.sha256[:16]}...; "
            f"re-run `{hint}` or restore the file"
        )
    return path


def load_model(
    name: str, version: str | None = None, weights_dir: str | os.PathLike[str] | None = None
) -> LoadedModel:
    """Load a registered model, checking its sha256 first.

    Parameters
    ----------
    name
        Registry name (``"plax-linear"``, ``"doppler-peaks"``).
    version
        A registered version; None for the active one.
    weights_dir
        The weights folder (default :func:`echomeasure.config.weights_dir`).

    Returns
    -------
    LoadedModel
        The model in eval mode (fp32) with its entry.

    Raises
    ------
    WeightsError
        No manifest/entry, missing file, sha256 mismatch, or a file that does not fit the entry.
    """
    entry = get_entry(name, version, weights_dir)
    path = verify_file(entry, weights_dir)
    model = load_checkpoint(path, entry.arch, len(entry.channels), normalisation=entry.normalisation)
    return LoadedModel(entry=entry, model=model, path=path)
