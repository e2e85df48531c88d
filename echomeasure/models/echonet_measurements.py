"""The published EchoNet-Measurements checkpoints: import into the registry, and propose with them.

Users who hold the checkpoints (``<task>_weights.ckpt``, about 159 MB each) register them with
``echomeasure weights import echonet-measurements DIR`` and then measure with
``echomeasure measure --model echonet-measurements``: the same contract JSON as the project's
own models, made with the authors' preprocessing and decoding.

Checkpoint layout
    A flat state dict whose keys start with ``m.``; with the leading ``m.`` stripped it loads
    strictly into ``torchvision.models.segmentation.deeplabv3_resnet50(num_classes=C)`` built
    with ``weights_backbone=None`` and no auxiliary classifier (C = 2 for a two-endpoint 2D task
    and for mitral E/A, 1 for a single-peak Doppler task).

2D tasks (``ivs``, ``lvid``, ``lvpw``, ``aortic_root``, ``la``)
    The whole frame, RGB, resized to 640 x 480 (width x height, bilinear), divided by 255; the
    sigmoid of each output channel; one weighted centroid per channel over the whole map = one
    caliper endpoint per channel.  Which channel is which end is not documented, so the two
    endpoints are ordered by depth (row): the shallower one is the first keypoint of the
    measurement (:data:`echomeasure.catalog.LINEAR_ENDPOINTS`).  Points are scaled back to the
    original frame and measured through the clip's calibration (DICOM region PhysicalDeltaX/Y,
    or the user's cm/px).  A ResNet-50 at 480 x 640 costs seconds per frame on a CPU, so each
    task runs only on the frame its measurement is read on: end-diastole for ivsd, lvidd,
    lvpwd and aortic_root, end-systole for lvids and la.  ED and ES come from the fast
    ``plax-linear`` model when it is installed, else from the ``lvid`` task run on every frame;
    ``per_frame`` runs every task on every frame.  The view decision of that ``plax-linear`` run
    applies too: a clip the view classifier does not call PLAX gets no PLAX calipers, with its
    notice.  CUDA is used when present.
Doppler tasks (``avvmax``, ``trvmax``, ``lvotvmax``, ``mvpeak_2c``)
    The last frame (a single-frame strip), RGB; ECG-trace pixels (green > 200 and red < 100)
    set to black; the rows from the spectral region's top row to the bottom of the image, full
    width, no resize, divided by 255; the arg-max of each channel's sigmoid map is the peak.
    The velocity is read through the spectral region's calibration
    (:func:`echomeasure.ingest.calibration.velocity_m_s`: ``ReferencePhysicalValueY + (row -
    (region y0 + ReferencePixelY0)) x PhysicalDeltaY``, reported as its magnitude).  ``mvpeak_2c``: channel 1 is
    the E wave, channel 0 the A wave.  Without ``only``, the tasks of the strip's Doppler mode
    run (CW: AV and TR; PW: LVOT and mitral inflow) and the flow whose peak is most probable is
    reported.

Registry
    Each checkpoint becomes one registry entry ``echonet-measurements-<task>`` (the weight file
    copied into the weights folder, its sha256 recorded); the entries of one import share a
    version.  ``extra["family"] == "echonet-measurements"`` groups them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from echomeasure import atomic, catalog
from echomeasure.errors import InputNotFoundError, InvalidInputError, MeasurementError, WeightsError
from echomeasure.models import registry

if TYPE_CHECKING:
    from echomeasure.ingest.clip import Clip
    from echomeasure.propose.types import ClipProposals

log = logging.getLogger(__name__)

FAMILY = "echonet-measurements"
ARCH = "deeplabv3_resnet50"
#: Model input of the 2D tasks, (H, W).
INPUT_SIZE_2D: tuple[int, int] = (480, 640)
#: Typical Doppler crop on the authors' scanners, (H, W); the Doppler tasks take any size.
TYPICAL_DOPPLER_SIZE: tuple[int, int] = (426, 1080)
#: ECG trace pixels the authors black out on Doppler strips: green above this and red below the next.
ECG_GREEN_MIN = 200
ECG_RED_MAX = 100
#: 2D frames per forward pass (a ResNet-50 at 480 x 640 needs ~0.5 GB of activations per frame).
BATCH_FRAMES = 4

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class EchonetTask:
    """One published checkpoint: what it outputs and which catalogue measurements it makes."""

    task: str
    mode: Literal["2d", "doppler"]
    channels: tuple[str, ...]  # catalogue keypoints / Doppler channels, in output-channel order
    measurements: tuple[str, ...]

    @property
    def file_name(self) -> str:
        """The published file name."""
        return f"{self.task}_weights.ckpt"

    @property
    def registry_name(self) -> str:
        """Registry name of the imported checkpoint."""
        return f"{FAMILY}-{self.task}"


TASKS: dict[str, EchonetTask] = {
    t.task: t
    for t in (
        EchonetTask("ivs", "2d", ("rv_septum", "septum_lv"), ("ivsd",)),
        EchonetTask("lvid", "2d", ("septum_lv", "lv_pw"), ("lvidd", "lvids")),
        EchonetTask("lvpw", "2d", ("lv_pw", "pw_pericardium"), ("lvpwd",)),
        EchonetTask("aortic_root", "2d", ("ao_anterior", "ao_posterior"), ("aortic_root",)),
        EchonetTask("la", "2d", ("la_anterior", "la_posterior"), ("la",)),
        EchonetTask("avvmax", "doppler", ("av_vmax",), ("av_vmax",)),
        EchonetTask("trvmax", "doppler", ("tr_vmax",), ("tr_vmax",)),
        EchonetTask("lvotvmax", "doppler", ("lvot_vmax",), ("lvot_vmax",)),
        # channel 0 is the A wave, channel 1 the E wave
        EchonetTask("mvpeak_2c", "doppler", ("mv_a", "mv_e"), ("mv_e", "mv_a", "mv_ea")),
    )
}
#: Published checkpoints with no catalogue measurement here: found ones are reported, not imported.
NOT_IMPORTED = ("aorta", "rv_base", "pa", "ivc", "mrvmax", "latevel", "medevel", "tapse_2c")
#: Catalogue measurement -> the task that makes it.
TASK_OF: dict[str, str] = {m: t.task for t in TASKS.values() for m in t.measurements}
#: Doppler flow of each Doppler task (catalog.DOPPLER_FLOWS keys).
FLOW_OF_TASK: dict[str, str] = {"avvmax": "av", "trvmax": "tr", "lvotvmax": "lvot", "mvpeak_2c": "mv"}

PREPROCESS_2D = ("whole frame, RGB, cv2.resize to 640x480 (bilinear), /255; sigmoid; one weighted centroid "
                 "per channel over the whole map; endpoints ordered by depth")
PREPROCESS_DOPPLER = ("last frame, RGB, ECG pixels (G>200 and R<100) set to 0, rows from the spectral region's "
                      "top row to the image bottom, full width, no resize, /255; sigmoid; arg-max per channel; "
                      "velocity through the region's PhysicalDeltaY and ReferencePixelY0")


def is_family_name(name: str) -> bool:
    """True for ``echonet-measurements`` (the whole family)."""
    return name == FAMILY


# --------------------------------------------------------------------------- import


@dataclass
class ImportReport:
    """What ``weights import`` did: the entries registered and one notice per file skipped."""

    registered: list[registry.WeightsEntry]
    notices: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON for the CLI."""
        return {
            "registered": [
                {"name": e.name, "version": e.version, "file": e.file, "sha256": e.sha256,
                 "measurements": list(TASKS[e.extra["task"]].measurements)}
                for e in self.registered
            ],
            "notices": list(self.notices),
        }


def _find_checkpoint(folder: Path, file_name: str) -> Path | None:
    """The checkpoint in ``folder`` or below (the authors keep them in ``2D_models/`` and
    ``Doppler_models/``); the shallowest match wins.  Linked folders are followed (a user may link
    ``2D_models/`` to where the large files live; ``Path.rglob`` does not follow them), each
    folder once, so a link loop ends."""
    direct = folder / file_name
    if direct.is_file():
        return direct
    hits: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for here, subfolders, files in os.walk(folder, followlinks=True):
        try:
            st = os.stat(here)
        except OSError:
            subfolders[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            subfolders[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        if file_name in files:
            hits.append(Path(here) / file_name)
    hits.sort(key=lambda p: (len(p.parts), str(p)))
    return next((p for p in hits if p.is_file()), None)


def family_entries(weights_dir: str | os.PathLike[str] | None = None) -> list[registry.WeightsEntry]:
    """Every registered EchoNet-Measurements entry, in registration order."""
    return [e for e in registry.list_entries(weights_dir) if (e.extra or {}).get("family") == FAMILY]


def _next_version(existing: Iterable[str]) -> str:
    taken = set(existing)
    minor = 0
    while f"1.{minor}" in taken:
        minor += 1
    return f"1.{minor}"


def _copy_atomically(src: Path, dest: Path) -> None:
    atomic.copy_file(src, dest, make_parents=True)


def _found_checkpoints(src: Path, notices: list[str]) -> dict[str, Path]:
    """The checkpoint of every supported task under ``src``; what is missing or unused goes to ``notices``."""
    found: dict[str, Path] = {}
    for task in TASKS.values():
        path = _find_checkpoint(src, task.file_name)
        if path is None:
            notices.append(f"{task.file_name} not found: {', '.join(task.measurements)} not imported")
        else:
            found[task.task] = path
    for other in NOT_IMPORTED:
        if _find_checkpoint(src, f"{other}_weights.ckpt") is not None:
            notices.append(f"{other}_weights.ckpt skipped: no catalogue measurement uses it")
    return found


def _checked_checkpoints(found: dict[str, Path]) -> dict[str, tuple[str, int]]:
    """Load every checkpoint strictly into its architecture; ``{task: (sha256, number of parameters)}``."""
    from echomeasure.models.builders import count_parameters

    checked: dict[str, tuple[str, int]] = {}
    for task_name, path in found.items():
        task = TASKS[task_name]
        model = registry.load_checkpoint(path, ARCH, len(task.channels))
        checked[task_name] = (registry.sha256_file(path), count_parameters(model))
        del model
    return checked


def _imported_entry(task_name: str, version: str, sha: str, n_params: int) -> registry.WeightsEntry:
    """The registry entry of a published checkpoint: architecture, preprocessing and provenance of its task."""
    task = TASKS[task_name]
    return registry.WeightsEntry(
        name=task.registry_name, version=version, arch=ARCH,
        input_size=INPUT_SIZE_2D if task.mode == "2d" else TYPICAL_DOPPLER_SIZE,
        channels=task.channels, file=f"{task.registry_name}-{version}.ckpt", sha256=sha,
        normalisation="unit",
        trained_on="EchoNet-Measurements published checkpoint (trained by its authors; not retrained here)",
        recipe=f"echomeasure weights import {FAMILY} DIR",
        num_params=n_params,
        extra={"family": FAMILY, "task": task_name, "source_file": task.file_name,
               "measurements": list(task.measurements),
               "preprocess": PREPROCESS_2D if task.mode == "2d" else PREPROCESS_DOPPLER},
    )


def import_checkpoints(
    source: str | os.PathLike[str],
    *,
    weights_dir: str | os.PathLike[str] | None = None,
    version: str | None = None,
    activate: bool = True,
) -> ImportReport:
    """Register the EchoNet-Measurements checkpoints found in ``source``.

    Every checkpoint found is first loaded strictly into its architecture (a file with foreign
    keys or wrong shapes stops the import with nothing registered); then the files are copied
    atomically into the weights folder and all entries are registered in one manifest write.
    A checkpoint already registered with the same sha256 is skipped with a notice.

    Parameters
    ----------
    source
        Folder holding ``<task>_weights.ckpt`` files (searched recursively).
    weights_dir
        Destination weights folder (default ``$ECHOMEASURE_WEIGHTS`` or ``weights/``).
    version
        Version of the new entries (default: the next free ``1.N`` of the family).
    activate
        Make the new entries the active versions.

    Raises
    ------
    InputNotFoundError
        ``source`` is not a folder.
    InvalidInputError
        No checkpoint of a supported task in it.
    WeightsError
        A checkpoint cannot be read or does not fit its architecture (the message names the file).
    """
    from echomeasure import config

    src = Path(source)
    if not src.is_dir():
        raise InputNotFoundError(f"{source}: no such folder; give the folder holding the *_weights.ckpt files")
    dest_dir = Path(weights_dir) if weights_dir is not None else config.weights_dir()
    notices: list[str] = []
    found = _found_checkpoints(src, notices)
    if not found:
        raise InvalidInputError(
            f"{source}: no EchoNet-Measurements checkpoint ({', '.join(t.file_name for t in TASKS.values())}) found"
        )

    checked = _checked_checkpoints(found)  # everything validated before anything is copied or registered
    family = family_entries(dest_dir)
    known_sha = {(e.name, e.sha256): e.version for e in family}
    todo = {}
    for task_name, (sha, n_params) in checked.items():
        name = TASKS[task_name].registry_name
        if (name, sha) in known_sha:
            notices.append(f"{TASKS[task_name].file_name} is already registered as {name} {known_sha[(name, sha)]}")
        else:
            todo[task_name] = (sha, n_params)
    if not todo:
        return ImportReport([], notices)
    version = version or _next_version(e.version for e in family)
    if any(e.version == version and e.name in {TASKS[t].registry_name for t in todo} for e in family):
        raise InvalidInputError(f"version {version} of {FAMILY} is already registered; give another --version")

    entries = [_imported_entry(task_name, version, sha, n_params) for task_name, (sha, n_params) in todo.items()]
    copied: list[Path] = []
    try:
        for entry, task_name in zip(entries, todo, strict=True):
            dest = dest_dir / entry.file
            _copy_atomically(found[task_name], dest)
            copied.append(dest)
        registered = registry.register_many(entries, weights_dir=dest_dir, activate=activate)
    except BaseException:
        for path in copied:
            path.unlink(missing_ok=True)
        raise
    return ImportReport(registered, notices)


# --------------------------------------------------------------------------- selection and models


def select_entries(
    version: str | None = None, weights_dir: str | os.PathLike[str] | None = None
) -> dict[str, registry.WeightsEntry]:
    """Task -> registry entry of the family: the active version of each task, or ``version``'s.

    Raises
    ------
    WeightsError
        Nothing of the family is registered (or nothing of that version).
    """
    family = family_entries(weights_dir)
    hint = f"run `echomeasure weights import {FAMILY} DIR` with the published checkpoints"
    if not family:
        raise WeightsError(f"no {FAMILY} checkpoints are registered; {hint}")
    out: dict[str, registry.WeightsEntry] = {}
    for task in TASKS.values():
        versions = [e for e in family if e.name == task.registry_name]
        if not versions:
            continue
        pick: registry.WeightsEntry | None
        if version is None:
            wanted = registry.active_version(task.registry_name, weights_dir)
            pick = next((e for e in versions if e.version == wanted), versions[-1])
        else:
            pick = next((e for e in versions if e.version == version), None)
        if pick is not None:
            out[task.task] = pick
    if not out:
        known = ", ".join(sorted({e.version for e in family}))
        raise WeightsError(f"{FAMILY} has no version {version!r}; known versions: {known}")
    return out


def default_device() -> str:
    """``"cuda"`` when a GPU is usable, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


_MODELS: dict[tuple[str, str], Any] = {}
_MODELS_LOCK = threading.Lock()


def _load(entry: registry.WeightsEntry, weights_dir: Any, device: str) -> Any:
    """The checkpoint's model on ``device`` (sha256 checked; cached per process)."""
    key = (entry.sha256, device)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            path = registry.verify_file(entry, weights_dir)
            model = registry.load_checkpoint(path, entry.arch, len(entry.channels)).to(device).eval()
            _MODELS[key] = model
    return model


def clear_models() -> None:
    """Forget the loaded checkpoints (tests, or after re-importing)."""
    with _MODELS_LOCK:
        _MODELS.clear()


def sigmoid_maps(model: Any, x: np.ndarray, device: str) -> np.ndarray:
    """``sigmoid(model(x))`` for a float32 ``(N, 3, H, W)`` batch in [0, 1]; numpy ``(N, C, H, W)``."""
    import torch

    with torch.inference_mode():
        out = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device))
        return torch.sigmoid(out).float().cpu().numpy()


# --------------------------------------------------------------------------- 2D preprocessing / decoding


def preprocess_2d(frames: np.ndarray) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 RGB -> ``(N, 3, 480, 640)`` float32 in [0, 1] (the authors' resize)."""
    import cv2

    h, w = INPUT_SIZE_2D
    out = np.empty((len(frames), 3, h, w), dtype=np.float32)
    for i, frame in enumerate(frames):
        small = cv2.resize(np.ascontiguousarray(frame), (w, h), interpolation=cv2.INTER_LINEAR)
        out[i] = small.transpose(2, 0, 1).astype(np.float32) / 255.0
    return out


def weighted_centroids(probs: np.ndarray) -> np.ndarray:
    """One probability-weighted centroid per channel over the whole map.

    ``probs``: ``(N, C, H, W)`` sigmoid maps; returns ``(N, C, 2)`` ``(x, y)`` in map pixels
    (pixel ``[i, j]`` centred on ``(x=j, y=i)``).
    """
    p = np.asarray(probs, dtype=np.float64)
    h, w = p.shape[-2:]
    total = p.sum(axis=(-2, -1)) + 1e-8
    x = (p.sum(axis=-2) * np.arange(w)).sum(axis=-1) / total
    y = (p.sum(axis=-1) * np.arange(h)).sum(axis=-1) / total
    return np.stack([x, y], axis=-1)


def to_frame_pixels(points_model: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """Map points of the 480 x 640 input back to the original frame (pixel-centre aligned)."""
    h, w = frame_hw
    sy, sx = h / INPUT_SIZE_2D[0], w / INPUT_SIZE_2D[1]
    p = np.asarray(points_model, dtype=np.float64)
    out = np.empty_like(p)
    out[..., 0] = (p[..., 0] + 0.5) * sx - 0.5
    out[..., 1] = (p[..., 1] + 0.5) * sy - 0.5
    return out


def order_by_depth(points: np.ndarray) -> np.ndarray:
    """``(..., 2, 2)`` endpoint pairs with the shallower point (smaller row) first."""
    p = np.asarray(points, dtype=np.float64).copy()
    swap = p[..., 0, 1] > p[..., 1, 1]
    p[swap] = p[swap][..., ::-1, :]
    return p


@dataclass(frozen=True)
class Endpoints2D:
    """One 2D task on one frame: endpoints in frame pixels (shallower first) and a confidence."""

    points: tuple[tuple[float, float], tuple[float, float]]
    confidence: float


class _TwoDRunner:
    """Runs 2D tasks on frames of one clip, each (task, frame) once."""

    def __init__(self, clip: Clip, entries: dict[str, registry.WeightsEntry], weights_dir: Any, device: str) -> None:
        self.clip = clip
        self.entries = entries
        self.weights_dir = weights_dir
        self.device = device
        self.cache: dict[tuple[str, int], Endpoints2D] = {}

    def run(self, task: str, frames: Iterable[int], progress: Progress | None = None) -> dict[int, Endpoints2D]:
        todo = sorted({int(f) for f in frames} - {f for (t, f) in self.cache if t == task})
        if todo:
            model = _load(self.entries[task], self.weights_dir, self.device)
            for start in range(0, len(todo), BATCH_FRAMES):
                chunk = todo[start : start + BATCH_FRAMES]
                probs = sigmoid_maps(model, preprocess_2d(self.clip.frames[chunk]), self.device)
                pts = order_by_depth(to_frame_pixels(weighted_centroids(probs), (self.clip.height, self.clip.width)))
                conf = probs.reshape(len(chunk), probs.shape[1], -1).max(axis=-1).min(axis=-1)
                for k, f in enumerate(chunk):
                    (x1, y1), (x2, y2) = pts[k]
                    self.cache[(task, f)] = Endpoints2D(((float(x1), float(y1)), (float(x2), float(y2))), float(conf[k]))
                if progress is not None:
                    progress(min(len(todo), start + BATCH_FRAMES), len(todo))
        return {int(f): self.cache[(task, int(f))] for f in frames}


# --------------------------------------------------------------------------- Doppler preprocessing / decoding


def black_out_ecg(image: np.ndarray) -> np.ndarray:
    """A copy of an RGB image with the ECG-trace pixels (green > 200, red < 100) set to 0."""
    out = np.array(image, copy=True)
    mask = (out[..., 1] > ECG_GREEN_MIN) & (out[..., 0] < ECG_RED_MAX)
    out[mask] = 0
    return out


def preprocess_doppler(image: np.ndarray, top_row: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(1, 3, H - top_row, W)`` float32: ECG blacked out, cropped, /255."""
    crop = black_out_ecg(image)[int(top_row) :]
    return (crop.transpose(2, 0, 1)[None].astype(np.float32) / 255.0).copy()


def argmax_peaks(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel of ``(C, H, W)`` maps: the arg-max ``(x, y)`` and its probability."""
    c, h, w = probs.shape
    flat = probs.reshape(c, -1)
    idx = flat.argmax(axis=1)
    return np.stack([idx % w, idx // w], axis=-1).astype(np.float64), flat[np.arange(c), idx].astype(np.float64)


# --------------------------------------------------------------------------- propose


def family_info(entries: Iterable[registry.WeightsEntry]):
    """One ModelInfo for the checkpoints used: their version(s), and a sha256 over their sha256s."""
    from echomeasure.propose.types import ModelInfo

    used = sorted(entries, key=lambda e: e.name)
    versions = sorted({e.version for e in used})
    digest = hashlib.sha256("\n".join(f"{e.name}:{e.sha256}" for e in used).encode()).hexdigest()
    return ModelInfo(FAMILY, "+".join(versions), digest)


def _entry_info(entry: registry.WeightsEntry):
    from echomeasure.propose.types import ModelInfo

    return ModelInfo(entry.name, entry.version, entry.sha256)


def _ed_es(clip: Clip, runner: _TwoDRunner, per_frame: bool, weights_dir: Any) -> tuple[int | None, int | None, str, Any]:
    """ED and ES frames, how they were chosen, and the plax-linear run (view decision included), or None.

    ED and ES are None when that run's view classifier says the clip is not PLAX: then no PLAX
    checkpoint runs, as for the project's own models.
    """
    from echomeasure.propose.temporal import select_ed_es

    if clip.n_frames == 1:
        return 0, 0, "single frame", None
    own = None
    try:
        from echomeasure.propose.engine import propose as propose_own

        own = propose_own(clip, only=("lvidd", "lvids"), refine_edges=False, weights_dir=weights_dir)
    except WeightsError as exc:
        log.info("plax-linear unavailable for the view and ED/ES (%s)", exc)
    view = getattr(own, "view", None)
    if isinstance(view, dict) and view.get("name") not in (None, "plax"):
        return None, None, f"view {view.get('name')}", own
    if (own is not None and own.ed_frame is not None and own.es_frame is not None
            and (not per_frame or "lvid" not in runner.entries)):
        return int(own.ed_frame), int(own.es_frame), f"plax-linear {own.model.version} LV diameter", own
    if "lvid" not in runner.entries:
        raise MeasurementError(
            "choosing end-diastole and end-systole needs the plax-linear model or the EchoNet lvid "
            "checkpoint; install one of them (echomeasure weights import echonet-measurements DIR)"
        )
    lvid = runner.run("lvid", range(clip.n_frames))
    diameter = np.array([np.hypot(*np.subtract(*lvid[i].points)) for i in range(clip.n_frames)])
    conf = np.array([lvid[i].confidence for i in range(clip.n_frames)])
    ed, es = select_ed_es(diameter, conf, frame_time_ms=clip.frame_time_ms)
    return int(ed), int(es), "EchoNet lvid diameter on every frame", own


def _propose_2d(clip: Clip, entries: dict[str, registry.WeightsEntry], only: tuple[str, ...] | None,
                per_frame: bool, progress: Progress | None, weights_dir: Any, device: str):
    from echomeasure.propose.types import Proposal
    from echomeasure.propose.values import physical_value, plausibility

    available = [m for m in catalog.LINEAR_2D if TASK_OF.get(m) in entries]
    if only:
        missing = [m for m in only if TASK_OF.get(m) not in entries]
        if missing:
            task = TASK_OF.get(missing[0], "?")
            raise MeasurementError(
                f"{missing[0]} needs the EchoNet {task} checkpoint, which is not registered; import it "
                f"(echomeasure weights import {FAMILY} DIR) or ask for one of: {', '.join(available) or 'none'}"
            )
        wanted = list(only)
    else:
        wanted = available
    if not wanted:
        raise MeasurementError(f"no 2D {FAMILY} checkpoint is registered; import ivs, lvid, lvpw, aortic_root or la")
    runner = _TwoDRunner(clip, entries, weights_dir, device)
    ed, es, how, own = _ed_es(clip, runner, per_frame, weights_dir)
    tasks = sorted({TASK_OF[m] for m in wanted})
    if ed is None or es is None:  # not a PLAX clip: no PLAX calipers (the notices say why)
        log.info("%s: %s, no 2D proposals", FAMILY, how)
        return [], None, None, [], [entries[t] for t in tasks], own
    if per_frame:
        for i, task in enumerate(tasks):
            runner.run(task, range(clip.n_frames), None)
            if progress is not None:
                progress(i + 1, len(tasks))
    proposals = []
    for name in wanted:
        task = TASK_OF[name]
        frame = ed if catalog.get(name).phase == "ed" else es
        ep = runner.run(task, [frame])[frame]
        value, unit, signed = physical_value(clip, name, ep.points)
        (x1, y1), (x2, y2) = ep.points
        proposals.append(Proposal(
            name=name, frame=frame, points=ep.points, value=value, unit=unit,
            confidence=plausibility(name, value, unit) * ep.confidence, model=_entry_info(entries[task]),
            pixel_length=float(np.hypot(x2 - x1, y2 - y1)), signed_value=signed,
        ))
    frames: list[dict] = []
    if per_frame:
        for i in range(clip.n_frames):
            row: dict[str, Any] = {"frame": i, "points": {}, "confidence": {}}
            for task in tasks:
                ep = runner.cache[(task, i)]
                for kp, (x, y) in zip(TASKS[task].channels, ep.points, strict=True):
                    row["points"][kp] = [round(x, 2), round(y, 2)]
                    row["confidence"][kp] = round(ep.confidence, 4)
            frames.append(row)
    log.info("%s: ED %d, ES %d (%s)", FAMILY, ed, es, how)
    used = [entries[t] for t in tasks]
    return proposals, ed, es, frames, used, own


def _propose_doppler(clip: Clip, entries: dict[str, registry.WeightsEntry], only: tuple[str, ...] | None,
                     per_frame: bool, progress: Progress | None, weights_dir: Any, device: str):
    from echomeasure.propose.doppler import DOPPLER_MODE_OF_DATA_TYPE, FLOW_DOPPLER_MODE, spectral_region
    from echomeasure.propose.types import Proposal
    from echomeasure.propose.values import physical_value, plausibility

    region = spectral_region(clip)
    if region is None:
        raise MeasurementError("this clip has no spectral Doppler region; Doppler measurements need a DICOM with one")
    doppler_tasks = [t for t in entries if TASKS[t].mode == "doppler"]
    if only:
        missing = [m for m in only if TASK_OF.get(m) not in entries]
        if missing:
            raise MeasurementError(
                f"{missing[0]} needs the EchoNet {TASK_OF.get(missing[0], '?')} checkpoint, which is not registered; "
                f"import it (echomeasure weights import {FAMILY} DIR)"
            )
        tasks = sorted({TASK_OF[m] for m in only})
    else:
        mode = DOPPLER_MODE_OF_DATA_TYPE.get(region.data_type)
        tasks = [t for t in doppler_tasks if mode is None or FLOW_DOPPLER_MODE[FLOW_OF_TASK[t]] == mode] or doppler_tasks
    if not tasks:
        raise MeasurementError(f"no Doppler {FAMILY} checkpoint is registered; import avvmax, trvmax, lvotvmax or mvpeak_2c")
    frame = clip.n_frames - 1
    image = clip.frames[frame]
    x = preprocess_doppler(image, region.y0)
    peaks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for i, task in enumerate(tasks):
        model = _load(entries[task], weights_dir, device)
        xy, prob = argmax_peaks(sigmoid_maps(model, x, device)[0])
        xy[:, 1] += region.y0  # crop rows -> image rows
        peaks[task] = (xy, prob)
        if progress is not None:
            progress(i + 1, len(tasks))
    if only:
        chosen = tasks
    else:
        best = max(tasks, key=lambda t: float(peaks[t][1].mean()))
        chosen = [best]
        log.info("%s Doppler flow %s (mean peak probability by task: %s)", FAMILY, FLOW_OF_TASK[best],
                 {t: round(float(peaks[t][1].mean()), 3) for t in tasks})
    proposals = []
    values: dict[str, Any] = {}
    for task in chosen:
        xy, prob = peaks[task]
        for ch, name in enumerate(TASKS[task].channels):
            point = (float(xy[ch, 0]), float(xy[ch, 1]))
            value, unit, signed = physical_value(clip, name, (point,))
            p = Proposal(name=name, frame=frame, points=(point,), value=value, unit=unit,
                         confidence=plausibility(name, value, unit) * float(prob[ch]),
                         model=_entry_info(entries[task]), signed_value=signed)
            values[name] = p
            if only is None or name in only:
                proposals.append(p)
    if "mv_e" in values and "mv_a" in values and (only is None or "mv_ea" in only):
        e, a = values["mv_e"], values["mv_a"]
        ratio = e.value / a.value if (e.value is not None and a.value) else None
        proposals.append(Proposal(name="mv_ea", frame=frame, points=(), value=ratio,
                                  unit="ratio" if ratio is not None else "px",
                                  confidence=min(e.confidence, a.confidence), model=e.model))
    frames: list[dict] = []
    if per_frame:
        frames.append({"frame": frame, "peaks": {
            name: {"point": [round(float(peaks[t][0][ch, 0]), 2), round(float(peaks[t][0][ch, 1]), 2)],
                   "probability": round(float(peaks[t][1][ch]), 4)}
            for t in tasks for ch, name in enumerate(TASKS[t].channels)}})
    return proposals, frame, frames, [entries[t] for t in chosen]


def _with_flags(proposals: list, entries: Iterable[registry.WeightsEntry]) -> list:
    """Set each proposal's low-confidence flag with its checkpoint's threshold (the one flag rule)."""
    import dataclasses

    from echomeasure.propose.types import Proposal

    if "flagged" not in {f.name for f in dataclasses.fields(Proposal)}:
        return proposals
    from echomeasure.propose import flags

    by_name = {e.name: e for e in entries}
    return [dataclasses.replace(p, flagged=flags.entry_flags(by_name.get(p.model.name), p.name, p.confidence))
            for p in proposals]


def propose_echonet(
    clip_or_deidentified: Any,
    *,
    only: str | Iterable[str] | None = None,
    per_frame: bool = False,
    progress: Progress | None = None,
    version: str | None = None,
    weights_dir: Any = None,
    device: str | None = None,
) -> ClipProposals:
    """Propose the measurements of a clip with the registered EchoNet-Measurements checkpoints.

    Same inputs and result as :func:`echomeasure.propose.propose` (``version`` picks the
    family version; default the active one of each task).  ``ClipProposals.model`` names the
    family with a sha256 over the checkpoints used; each proposal names its own checkpoint.

    Raises
    ------
    WeightsError
        No checkpoint of the family is registered, or a file does not match its sha256.
    MeasurementError
        A requested measurement's checkpoint is not registered, or it does not fit the clip.
    """
    import time

    from echomeasure.propose.engine import _check_kind, _unwrap, parse_only
    from echomeasure.propose.types import ClipProposals

    t0 = time.perf_counter()
    clip = _unwrap(clip_or_deidentified)
    wanted = parse_only(only)
    _check_kind(wanted, clip.kind)
    entries = select_entries(version, weights_dir)
    dev = device or default_device()
    if clip.kind == "2d":
        proposals, ed, es, frames, used, own = _propose_2d(clip, entries, wanted, per_frame, progress, weights_dir, dev)
    else:
        proposals, frame, frames, used = _propose_doppler(clip, entries, wanted, per_frame, progress, weights_dir, dev)
        ed = es = own = None
    # the view decision of the plax-linear run that chose ED/ES, when the proposal set carries one
    view_fields = {k: getattr(own, k) for k in ("view", "notices") if own is not None and hasattr(own, k)}
    return ClipProposals(
        kind=clip.kind, calibration=clip.calibration_source, model=family_info(used),
        measurements=_with_flags(proposals, entries.values()),
        ed_frame=ed, es_frame=es, frames=frames, timings_s={"total": time.perf_counter() - t0}, **view_fields,
    )


def measure_file_echonet(
    path: str | Path,
    *,
    only: str | Iterable[str] | None = None,
    per_frame: bool = False,
    scale_cm_per_px: float | None = None,
    version: str | None = None,
    secret: bytes | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """``echomeasure measure --model echonet-measurements``: de-identify, propose, contract JSON."""
    from echomeasure import config
    from echomeasure.ingest.calibration import check_user_cm_per_px
    from echomeasure.ingest.clip import display_name
    from echomeasure.propose.engine import to_contract_json
    from echomeasure.propose.measure import load_deidentified

    scale_cm_per_px = check_user_cm_per_px(scale_cm_per_px, label="--scale")
    select_entries(version)  # fail before de-identifying when nothing is registered
    clip = load_deidentified(path, secret=secret if secret is not None else config.secret(),
                             user_cm_per_px=scale_cm_per_px)
    proposals = propose_echonet(clip, only=only, per_frame=per_frame, progress=progress, version=version)
    return to_contract_json(proposals, display_name(path))
