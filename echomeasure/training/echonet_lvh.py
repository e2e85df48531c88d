"""EchoNet-LVH: read the published PLAX measurement set, train ``plax-linear`` on it, evaluate on it.

Layout (``echomeasure train --dataset echonet-lvh PATH``, ``echomeasure evaluate --dataset
echonet-lvh PATH``)::

    PATH/MeasurementsList.csv
    PATH/Batch1/<HashedFileName>.avi ... PATH/Batch4/...

``MeasurementsList.csv``: an unnamed index column, then ``HashedFileName, Calc, CalcValue, Frame,
X1, X2, Y1, Y2, Frames, FPS, Width, Height, split`` (note X1, X2 before Y1, Y2).  One row is one
labelled caliper line: ``Calc`` in {IVSd, LVIDd, LVPWd, LVIDs} (other values, e.g. IVSs, are
skipped and counted), ``CalcValue`` its length in cm, ``Frame`` 0-based, the endpoints in pixels
of the original video (X = column, Y = row), ``split`` train / val / test.  A row missing one of
these numbers (an empty cell, as pandas writes NaN, or ``NaN``) is skipped and counted as
``missing_value``; a cell that is not a number at all is an error.

Calibration
    The videos carry no pixel spacing.  Each labelled line gives its own scale: ``cm/px =
    CalcValue / (pixel length of the line)``.  A proposed caliper is converted with the scale of
    the line it is compared with, so an error in mm is a caliper error, not a calibration error.
    The JSON says so (``"calibration"``).

Keypoints
    The diastolic lines form one chain along one line across the LV: IVS (RV side of the septum
    -> LV side), LVID (-> LV side of the posterior wall), LVPW (-> epicardium).  Which end of a
    line is point 1 is not documented, so each line's ends are ordered by depth (row): the
    shallower end is the first keypoint of the measurement in
    :data:`echomeasure.catalog.LINEAR_ENDPOINTS`.  A keypoint given by two lines of the chain is
    their mean.  Aortic and LA keypoints are absent: their channels get no loss while training.

Evaluation runs the real proposal path (:func:`echomeasure.propose.propose`, or the imported
EchoNet-Measurements checkpoints) on each labelled frame as a one-frame clip, with the scan
sector found on the whole video as ``measure`` finds it; the frame choice is taken out.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from echomeasure import atomic, catalog
from echomeasure.errors import (
    EchomeasureError,
    InputNotFoundError,
    InvalidInputError,
    TrainingError,
    WeightsError,
)

if TYPE_CHECKING:
    import torch

    from echomeasure.models.decode import DecodeSettings
    from echomeasure.models.registry import WeightsEntry
    from echomeasure.training.loop import OptimRecipe, TrainResult

log = logging.getLogger(__name__)

DATASET = "echonet-lvh"
CSV_NAME = "MeasurementsList.csv"
REQUIRED_COLUMNS = ("HashedFileName", "Calc", "CalcValue", "Frame", "X1", "X2", "Y1", "Y2", "split")
#: ``Calc`` -> catalogue measurement (its endpoints: catalog.LINEAR_ENDPOINTS).
CALC_TO_MEASUREMENT = {"IVSd": "ivsd", "LVIDd": "lvidd", "LVPWd": "lvpwd", "LVIDs": "lvids"}
#: A gross miss: an error above this many mm.
GROSS_MM = 5.0
CALIBRATION_NOTE = ("the videos carry no pixel spacing: cm/px of each labelled line = CalcValue / its pixel "
                    "length, and each proposed caliper is converted with the cm/px of the line it is compared with")
#: Frames sampled over the whole video to find the scan sector (as ``measure`` does).
SECTOR_SAMPLE_FRAMES = 24

Point = tuple[float, float]


@dataclass(frozen=True)
class LabelledLine:
    """One row of MeasurementsList.csv: a labelled caliper, endpoints ordered by depth."""

    measurement: str  # catalogue name
    frame: int
    start: Point  # shallower end (first keypoint of the measurement)
    end: Point
    value_cm: float
    row: int  # 1-based data row of the CSV (for messages)

    @property
    def length_px(self) -> float:
        """Pixel length of the line."""
        return math.hypot(self.end[0] - self.start[0], self.end[1] - self.start[1])

    @property
    def cm_per_px(self) -> float:
        """The scale this line implies: CalcValue over its pixel length."""
        return self.value_cm / self.length_px


@dataclass
class LvhVideo:
    """One video of the dataset with its labelled lines."""

    name: str
    path: Path
    split: str
    lines: list[LabelledLine] = field(default_factory=list)

    @property
    def frames(self) -> list[int]:
        """The labelled frames, sorted."""
        return sorted({ln.frame for ln in self.lines})

    @property
    def cm_per_px(self) -> float:
        """Median scale over the video's lines."""
        return float(np.median([ln.cm_per_px for ln in self.lines]))


@dataclass
class LvhDataset:
    """The parsed dataset: videos (each with at least one usable line) and what was skipped."""

    root: Path
    csv_path: Path
    videos: list[LvhVideo]
    skipped: dict[str, int]
    csv_sha256: str

    def split(self, name: str) -> list[LvhVideo]:
        """The videos of one split (train / val / test)."""
        return [v for v in self.videos if v.split == name.lower()]

    def splits(self) -> dict[str, int]:
        """Videos per split."""
        out: dict[str, int] = {}
        for v in self.videos:
            out[v.split] = out.get(v.split, 0) + 1
        return out


# --------------------------------------------------------------------------- reading


def _number(cell: str) -> float:
    """A numeric cell; an empty cell (how pandas writes a missing value) reads as NaN, like ``NaN``."""
    cell = cell.strip()
    return float(cell) if cell else math.nan


def _order_by_depth(p1: Point, p2: Point) -> tuple[Point, Point]:
    return (p1, p2) if p1[1] <= p2[1] else (p2, p1)


def _video_index(root: Path) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """``HashedFileName`` -> video path, over ``Batch*/`` (and the root itself); and the names
    found in more than one folder, with every place (which of them the labels belong to is
    unknowable)."""
    index: dict[str, Path] = {}
    twice: dict[str, list[Path]] = {}
    for folder in [root, *sorted(p for p in root.glob("Batch*") if p.is_dir())]:
        for path in folder.iterdir():
            if path.suffix.lower() == ".avi" and path.is_file():
                if path.stem in index:
                    twice.setdefault(path.stem, [index[path.stem]]).append(path)
                index.setdefault(path.stem, path)
    return index, twice


def read_lvh(root: str | os.PathLike[str]) -> LvhDataset:
    """Parse an EchoNet-LVH folder and check that every listed video is there.

    Raises
    ------
    InputNotFoundError
        The folder or its MeasurementsList.csv does not exist.
    InvalidInputError
        A required column is missing, a number does not parse, or a listed video is absent
        (nothing is trained or registered then).
    """
    folder = Path(root)
    if folder.is_file():
        raise InvalidInputError(f"{root}: is a file; give the EchoNet-LVH folder (with {CSV_NAME})")
    if not folder.is_dir():
        raise InputNotFoundError(f"{root}: no such folder; give the EchoNet-LVH folder (with {CSV_NAME})")
    csv_path = folder / CSV_NAME
    if not csv_path.is_file():
        raise InputNotFoundError(f"{csv_path}: not found; an EchoNet-LVH folder holds {CSV_NAME} next to Batch1/ ...")
    raw = csv_path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInputError(f"{csv_path}: not a UTF-8 CSV file") from None
    reader = csv.reader(text.splitlines())
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if len(missing) == len(REQUIRED_COLUMNS):
        raise InvalidInputError(f"{csv_path}: no EchoNet-LVH header (the file is empty or not that CSV); it needs "
                                f"the columns {', '.join(REQUIRED_COLUMNS)}")
    if missing:
        raise InvalidInputError(
            f"{csv_path}: missing column(s) {', '.join(missing)}; EchoNet-LVH needs {', '.join(REQUIRED_COLUMNS)}"
        )
    col = {c: header.index(c) for c in REQUIRED_COLUMNS}
    skipped: dict[str, int] = {}
    videos: dict[str, LvhVideo] = {}
    index, twice = _video_index(folder)
    for row_no, row in enumerate(reader, start=1):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise InvalidInputError(f"{csv_path} row {row_no}: {len(row)} fields, the header has {len(header)}")
        name = row[col["HashedFileName"]].strip()
        if name.lower().endswith(".avi"):
            name = name[:-4]
        if name not in index:
            raise InvalidInputError(
                f"{csv_path} row {row_no} lists {name}.avi, which is in none of {folder}/Batch*/; "
                "restore the video or remove its rows"
            )
        if name in twice:
            places = ", ".join(f"{p.parent.name}/" for p in twice[name])
            raise InvalidInputError(f"{csv_path} row {row_no} lists {name}.avi, which is in {len(twice[name])} folders "
                                    f"({places}); keep the one its labels belong to")
        video = videos.setdefault(name, LvhVideo(name, index[name], row[col["split"]].strip().lower()))
        measurement = CALC_TO_MEASUREMENT.get(row[col["Calc"]].strip())
        if measurement is None:
            skipped["other_calc"] = skipped.get("other_calc", 0) + 1
            continue
        try:
            numbers = [_number(row[col[c]]) for c in ("CalcValue", "Frame", "X1", "X2", "Y1", "Y2")]
        except ValueError:
            raise InvalidInputError(
                f"{csv_path} row {row_no}: CalcValue, Frame, X1, X2, Y1 and Y2 must be numbers"
            ) from None
        if not all(math.isfinite(v) for v in numbers):  # a missing value, however the writer spelt it
            skipped["missing_value"] = skipped.get("missing_value", 0) + 1
            continue
        if not numbers[1].is_integer():  # 46.0 (a re-saved integer column) is frame 46; 46.5 is no frame
            raise InvalidInputError(f"{csv_path} row {row_no}: Frame must be a whole frame number")
        value_cm, frame, (x1, x2, y1, y2) = numbers[0], int(numbers[1]), numbers[2:]
        start, end = _order_by_depth((x1, y1), (x2, y2))
        line = LabelledLine(measurement, frame, start, end, value_cm, row_no)
        if not (math.isfinite(value_cm) and value_cm > 0 and line.length_px > 0.5 and frame >= 0):
            skipped["degenerate_line"] = skipped.get("degenerate_line", 0) + 1
            continue
        video.lines.append(line)
    usable = [v for v in videos.values() if v.lines]
    if len(usable) < len(videos):
        skipped["videos_without_lines"] = len(videos) - len(usable)
    return LvhDataset(folder, csv_path, usable, skipped, hashlib.sha256(raw).hexdigest())


def read_video_frames(video: LvhVideo, wanted: Iterable[int]) -> tuple[dict[int, np.ndarray], Any, float | None]:
    """Decode a video once: the wanted frames (RGB) and the scan-sector box found over the clip.

    Returns ``(frames by index, Box, frame time in ms)``.

    Raises
    ------
    InvalidInputError
        The video cannot be decoded, or a labelled frame lies beyond its last frame.
    """
    import av

    from echomeasure.models.preprocess import detect_sector_box

    wanted_set = {int(f) for f in wanted}
    frames: dict[int, np.ndarray] = {}
    samples: list[np.ndarray] = []
    try:
        with av.open(str(video.path)) as container:
            stream = container.streams.video[0]
            total = int(stream.frames or 0)
            rate = stream.average_rate or stream.guessed_rate
            frame_time_ms = 1000.0 / float(rate) if rate else None
            step = max(1, total // SECTOR_SAMPLE_FRAMES) if total else 4
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted_set or i % step == 0:
                    arr = frame.to_ndarray(format="rgb24")
                    if i in wanted_set:
                        frames[i] = arr
                    if i % step == 0 and len(samples) < 4 * SECTOR_SAMPLE_FRAMES:
                        samples.append(arr)
    except (av.error.FFmpegError, IndexError, ValueError) as exc:
        raise InvalidInputError(f"{video.path}: not a readable video ({type(exc).__name__})") from None
    absent = sorted(wanted_set - set(frames))
    if absent:
        raise InvalidInputError(f"{video.path}: labelled frame {absent[0]} is beyond the video's last frame")
    box = detect_sector_box(np.stack(samples)) if samples else None
    return frames, box, frame_time_ms


def frame_keypoints(lines: Sequence[LabelledLine]) -> np.ndarray:
    """``(8, 2)`` keypoints (catalog.KEYPOINTS_2D order, image pixels) of one frame's lines; NaN
    where no line gives one; a keypoint given by two lines is their mean."""
    index = {k: i for i, k in enumerate(catalog.KEYPOINTS_2D)}
    sums = np.zeros((len(index), 2))
    counts = np.zeros(len(index))
    for ln in lines:
        a, b = catalog.LINEAR_ENDPOINTS[ln.measurement]
        for kp, p in ((a, ln.start), (b, ln.end)):
            sums[index[kp]] += p
            counts[index[kp]] += 1
    out = np.full((len(index), 2), np.nan)
    have = counts > 0
    out[have] = sums[have] / counts[have, None]
    return out


# --------------------------------------------------------------------------- training set


def videos_identity(videos: Sequence[LvhVideo]) -> list[str]:
    """Each video's name, size and modification time: what a cache of their decoded frames (or a
    resumable run on them) is keyed by, so a video replaced, re-encoded or cut under the same name
    is read again instead of its old frames being used."""
    out = []
    for v in videos:
        try:
            st = v.path.stat()
            out.append(f"{v.name}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            out.append(f"{v.name}:missing")  # reading it then reports the problem
    return out


def build_training_set(
    dataset: LvhDataset, videos: Sequence[LvhVideo], input_size: tuple[int, int], *, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Model-resolution labelled frames and their keypoints (model pixels, NaN where absent).

    Cached under ``$ECHOMEASURE_CACHE`` keyed by the CSV's sha256, the videos (name, size,
    modification time: :func:`videos_identity`) and the input size, so a second run on a large
    dataset does not decode the videos again.
    """
    from tqdm import tqdm

    from echomeasure.models.preprocess import Box, CropTransform
    from echomeasure.training.datasets import cache_dir

    key = hashlib.sha256(
        f"{dataset.csv_sha256}|{','.join(videos_identity(videos))}|{input_size}|fmt1".encode()
    ).hexdigest()[:16]
    path = cache_dir() / f"{DATASET}-{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["images"], z["targets"]
    images: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    for video in tqdm(videos, desc="read echonet-lvh", file=sys.stderr, disable=not progress, leave=False):
        frames, box, _ = read_video_frames(video, video.frames)
        for f in video.frames:
            frame = frames[f]
            b = box or Box(0, 0, frame.shape[1] - 1, frame.shape[0] - 1)
            transform = CropTransform(b, input_size)
            images.append(transform.crop_resize(frame)[0])
            targets.append(transform.to_model(frame_keypoints([ln for ln in video.lines if ln.frame == f])))
    if not images:
        raise TrainingError(f"{dataset.csv_path}: no labelled frames to train on")
    arr, tgt = np.stack(images), np.stack(targets).astype(np.float32)
    # through a file object: given a name without .npz, numpy would append the suffix
    with atomic.atomic_path(path, make_parents=True) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, images=arr, targets=tgt)
    return arr, tgt


# --------------------------------------------------------------------------- evaluation

ProposeFn = Callable[[Any, tuple[str, ...]], Any]


def parse_model_spec(spec: str | None) -> tuple[str, str | None]:
    """``NAME[:VERSION]`` -> (name, version or None); default ``plax-linear``."""
    if not spec:
        return "plax-linear", None
    name, _, version = spec.partition(":")
    return name.strip(), (version.strip() or None)


def _proposer(model: str, version: str | None, weights_dir: Any, backend: str) -> tuple[ProposeFn, dict[str, Any]]:
    """A ``(clip, only) -> ClipProposals`` for a model spec, and the model's JSON identity."""
    from echomeasure.models import echonet_measurements as em
    from echomeasure.models import registry

    if em.is_family_name(model):
        entries = em.select_entries(version, weights_dir)
        if not any(em.TASKS[t].mode == "2d" for t in entries):
            raise WeightsError(f"no 2D {em.FAMILY} checkpoint is registered; import ivs, lvid or lvpw")

        def run_echonet(clip: Any, only: tuple[str, ...]) -> Any:
            return em.propose_echonet(clip, only=only, version=version, weights_dir=weights_dir)

        info = em.family_info([e for e in entries.values() if em.TASKS[e.extra["task"]].mode == "2d"])
        return run_echonet, {"name": info.name, "version": info.version, "sha256": info.sha256}
    if model != registry.PLAX_LINEAR:
        raise InvalidInputError(f"--model {model}: EchoNet-LVH is measured by plax-linear or {em.FAMILY}")
    entry = registry.get_entry(model, version, weights_dir)

    def run(clip: Any, only: tuple[str, ...]) -> Any:
        from echomeasure.propose import propose

        # the labelled frames are PLAX by the dataset's definition, and a one-frame clip has no
        # motion for the view classifier to judge: it is left out, as in the synthetic caliper evaluation
        return propose(clip, only=only, model_versions={model: entry.version}, weights_dir=weights_dir,
                       backend=backend, check_view=False)

    return run, {"name": entry.name, "version": entry.version, "sha256": entry.sha256}


def _available(model: str, version: str | None, weights_dir: Any) -> set[str]:
    from echomeasure.models import echonet_measurements as em

    if em.is_family_name(model):
        entries = em.select_entries(version, weights_dir)
        return {m for t in entries for m in em.TASKS[t].measurements}
    return set(CALC_TO_MEASUREMENT.values())


def evaluate_lvh(
    root: str | os.PathLike[str] | LvhDataset,
    *,
    split: str = "test",
    model: str | None = None,
    weights_dir: Any = None,
    max_videos: int | None = None,
    backend: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Error of a model on one split of EchoNet-LVH (the ``evaluate --dataset`` JSON).

    Parameters
    ----------
    root
        The dataset folder (or an already parsed :class:`LvhDataset`).
    split
        ``train``, ``val`` or ``test``.
    model
        ``NAME[:VERSION]``: ``plax-linear`` (default, active version) or ``echonet-measurements``.
    max_videos
        Evaluate only the first this many videos of the split.

    Returns
    -------
    dict
        ``{"dataset", "split", "calibration", "model": {name, version, sha256}, "n" (videos),
        "frames", "measurements": {name: {"mae_mm", "median_mm", "bias_mm", "gross", "n",
        "failed"}}, "dice": {} (no segmentation labelled), "skipped"}``; ``gross`` counts errors
        above 5 mm.
    """
    from tqdm import tqdm

    from echomeasure.ingest.clip import Clip

    dataset = root if isinstance(root, LvhDataset) else read_lvh(root)
    name, version = parse_model_spec(model)
    run, model_json = _proposer(name, version, weights_dir, backend)
    can = _available(name, version, weights_dir)
    videos = dataset.split(split)
    if not videos:
        raise InvalidInputError(f"{dataset.csv_path}: no videos in split {split!r}; splits: {dataset.splits()}")
    if max_videos is not None:
        videos = videos[: max(0, int(max_videos))]
    errors_mm: dict[str, list[float]] = {}
    failed: dict[str, int] = {}
    n_frames = 0
    for video in tqdm(videos, desc=f"evaluate {DATASET} {split}", file=sys.stderr, disable=not progress, leave=False):
        frames, box, frame_time_ms = read_video_frames(video, video.frames)
        for f in video.frames:
            lines = [ln for ln in video.lines if ln.frame == f and ln.measurement in can]
            if not lines:
                continue
            n_frames += 1
            extra = {"sector_box": box.as_tuple()} if box is not None else {}
            clip = Clip(frames=frames[f][None], frame_time_ms=frame_time_ms, regions=(), source_kind="video",
                        user_cm_per_px=video.cm_per_px, extra=extra)
            only = tuple(dict.fromkeys(ln.measurement for ln in lines))
            try:
                proposals = {p.name: p for p in run(clip, only).measurements}
            except EchomeasureError as exc:
                if isinstance(exc, WeightsError):
                    raise
                log.info("%s frame %d: no proposal (%s)", video.name, f, exc)
                proposals = {}
            for ln in lines:
                p = proposals.get(ln.measurement)
                if p is None or p.pixel_length is None:
                    failed[ln.measurement] = failed.get(ln.measurement, 0) + 1
                    continue
                errors_mm.setdefault(ln.measurement, []).append((p.pixel_length * ln.cm_per_px - ln.value_cm) * 10.0)
    return {
        "dataset": DATASET,
        "split": split,
        "calibration": CALIBRATION_NOTE,
        "model": model_json,
        "n": len(videos),
        "frames": n_frames,
        "measurements": _error_summary(errors_mm, failed),
        "dice": {},  # the evaluate contract's key; EchoNet-LVH labels calipers, no segmentation
        "skipped": dict(dataset.skipped),
    }


def _error_summary(errors_mm: dict[str, list[float]], failed: dict[str, int]) -> dict[str, dict[str, Any]]:
    """MAE, median, bias (mm), gross misses (> 5 mm) and counts per measurement with any result."""
    measurements: dict[str, dict[str, Any]] = {}
    for m in CALC_TO_MEASUREMENT.values():
        errs = np.asarray(errors_mm.get(m, []), dtype=np.float64)
        if errs.size == 0 and not failed.get(m):
            continue
        measurements[m] = {
            "mae_mm": round(float(np.abs(errs).mean()), 3) if errs.size else None,
            "median_mm": round(float(np.median(np.abs(errs))), 3) if errs.size else None,
            "bias_mm": round(float(errs.mean()), 3) if errs.size else None,
            "gross": int((np.abs(errs) > GROSS_MM).sum()),
            "n": int(errs.size),
            "failed": int(failed.get(m, 0)),
        }
    return measurements


def flat_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The manifest form of an :func:`evaluate_lvh` report (``ivsd_mae_mm``, ``ivsd_gross``...)."""
    out: dict[str, float] = {}
    for m, r in report["measurements"].items():
        for k in ("mae_mm", "median_mm", "gross", "n"):
            if r.get(k) is not None:
                out[f"{m}_{k}"] = r[k]
    maes = [r["mae_mm"] for r in report["measurements"].values() if r.get("mae_mm") is not None]
    if maes:
        out["mean_mae_mm"] = round(float(np.mean(maes)), 3)
    return out


# --------------------------------------------------------------------------- training


@dataclass
class LvhTrainOutcome:
    """What :func:`train_on_lvh` registered and measured."""

    entry: WeightsEntry
    steps: int
    train_wall_s: float
    n_images: int
    evaluation: dict[str, Any] | None


def _next_lvh_version(parent: str | None, existing: set[str]) -> str:
    stem = f"{parent}-lvh" if parent else "0.0-lvh"
    i = 1
    while f"{stem}{i}" in existing:
        i += 1
    return f"{stem}{i}"


def train_on_lvh(
    root: str | os.PathLike[str],
    *,
    steps: int | None = None,
    seed: int = 0,
    out: str | os.PathLike[str] | None = None,
    version: str | None = None,
    base_version: str | None = None,
    from_scratch: bool = False,
    max_videos: int | None = None,
    eval_videos: int | None = None,
    activate: bool = False,
    threads: int | None = None,
    max_wall_s: float | None = None,
    progress: bool = True,
) -> LvhTrainOutcome:
    """Train ``plax-linear`` on the train split of EchoNet-LVH, evaluate it, register it.

    The model starts from the active (or ``base_version``) ``plax-linear`` when one is
    registered (``from_scratch``: from random weights) and is trained with the same loss as the
    synthetic recipe on the labelled frames of the ``train`` split; the aortic and LA channels,
    which the dataset does not label, get no loss.  It is evaluated on ``val`` (else ``test``)
    through :func:`evaluate_lvh` and registered with those figures under the protocol
    :data:`DATASET`; it becomes the active version only with ``activate``.  A resumable
    checkpoint is kept in the cache: a run stopped by ``max_wall_s`` (or killed) continues where
    it was when the same command runs again.

    Raises
    ------
    InputNotFoundError, InvalidInputError
        A bad dataset (see :func:`read_lvh`); nothing is registered.
    TrainingError
        No training videos, or a version that already exists.
    """
    import torch

    from echomeasure import config

    if threads:
        torch.set_num_threads(int(threads))
    dataset = read_lvh(root)  # every listed video is checked before anything is trained
    train_videos = dataset.split("train")[: None if max_videos is None else max(0, int(max_videos))]
    if not train_videos:
        raise TrainingError(f"{dataset.csv_path}: no videos in split 'train'; splits: {dataset.splits()}")
    if not (dataset.split("val") or dataset.split("test")):
        if activate:  # nothing would measure the version that would then serve every measurement
            raise TrainingError(f"{dataset.csv_path}: --activate needs a val or test split to measure the new "
                                f"version on; splits: {dataset.splits()}")
        log.warning("%s has no val or test split: the new version is registered unmeasured (not activated)",
                    dataset.csv_path.name)
    weights_dir = Path(out) if out is not None else config.weights_dir()
    weights_dir.mkdir(parents=True, exist_ok=True)
    start = _lvh_start(weights_dir, base_version, from_scratch)
    version = _lvh_version(weights_dir, start.base, version)
    n_steps = int(steps) if steps is not None else 300
    if n_steps < 1:
        raise TrainingError("--steps must be at least 1")

    t0 = time.monotonic()
    images, targets = build_training_set(dataset, train_videos, start.input_size, progress=progress)
    if targets.shape[1] != len(start.channels):
        raise TrainingError(f"plax-linear {start.base.version if start.base else ''} has {len(start.channels)} "
                            "channels, not the 8 PLAX keypoints")
    t_data = time.monotonic() - t0
    model = start.model(weights_dir, seed)
    recipe = _lvh_recipe(n_steps, len(images), start, seed)
    result = _optimise_on_lvh(model, images, targets, recipe, start, dataset, train_videos,
                              max_wall_s=max_wall_s, progress=progress)
    model = model.to(memory_format=torch.contiguous_format).eval()
    record = _lvh_training_record(dataset, train_videos, len(images), recipe, result, t_data)
    entry, evaluation = _evaluate_and_register_lvh(
        model, start, weights_dir, version, dataset, record, seed=seed, eval_videos=eval_videos,
        activate=activate, progress=progress,
        recipe=_lvh_recipe_command(n_steps, seed, start.base, from_scratch, max_videos),
        trained_on=(f"EchoNet-LVH train split: {len(train_videos)} videos, {len(images)} labelled frames"
                    + (f", from plax-linear {start.base.version}" if start.base else "")),
    )
    from echomeasure.propose import clear_engines

    clear_engines()
    return LvhTrainOutcome(entry, result.steps_done, result.wall_s, len(images), evaluation)


@dataclass(frozen=True)
class _LvhStart:
    """What an EchoNet-LVH run starts from: a registered ``plax-linear`` (None: random weights)
    and the architecture, input size, channels and decode settings that follow from it."""

    base: WeightsEntry | None
    arch: str
    input_size: tuple[int, int]
    channels: tuple[str, ...]
    decode: DecodeSettings

    def model(self, weights_dir: Path, seed: int) -> torch.nn.Module:
        """The starting model (seeded), channels last."""
        import torch

        from echomeasure.models import registry
        from echomeasure.models.builders import build_model

        torch.manual_seed(seed)
        if self.base is not None:
            model = registry.load_model(registry.PLAX_LINEAR, self.base.version, weights_dir).model
        else:
            model = build_model(self.arch, len(self.channels))
        return model.to(memory_format=torch.channels_last)


def _lvh_start(weights_dir: Path, base_version: str | None, from_scratch: bool) -> _LvhStart:
    """The active (or ``base_version``) ``plax-linear`` to start from; random weights when none
    is registered (unless a version was asked for) or ``from_scratch``."""
    from echomeasure.models import registry
    from echomeasure.models.builders import DEFAULT_ARCH
    from echomeasure.models.decode import DecodeSettings
    from echomeasure.training.train import HEATMAP_SIGMA_PX, MAX_SHIFT_PX

    base = None
    if not from_scratch:
        try:
            base = registry.get_entry(registry.PLAX_LINEAR, base_version, weights_dir)
        except WeightsError:
            if base_version is not None:
                raise
    if base is None:
        return _LvhStart(None, DEFAULT_ARCH, (192, 192), tuple(catalog.KEYPOINTS_2D),
                         DecodeSettings(sigma_px=HEATMAP_SIGMA_PX, max_shift_px=MAX_SHIFT_PX))
    decode = DecodeSettings(sigma_px=base.decode.sigma_px, max_shift_px=base.decode.max_shift_px)
    return _LvhStart(base, base.arch, base.input_size, tuple(base.channels), decode)


def _lvh_version(weights_dir: Path, base: WeightsEntry | None, version: str | None) -> str:
    """The version to register: the one asked for, else the next ``<parent>-lvhN``; refused when taken."""
    from echomeasure.models import registry

    existing = {e.version for e in registry.list_entries(weights_dir) if e.name == registry.PLAX_LINEAR}
    version = version or _next_lvh_version(base.version if base else None, existing)
    if version in existing:
        raise TrainingError(f"plax-linear {version} is already registered in {weights_dir}; pick another --version")
    return version


def _lvh_recipe(n_steps: int, n_images: int, start: _LvhStart, seed: int) -> OptimRecipe:
    """The optimiser recipe: a smaller learning rate when starting from trained weights."""
    from echomeasure.training.loop import OptimRecipe

    return OptimRecipe(steps=n_steps, batch_size=min(8, max(2, n_images)), lr=5e-4 if start.base else 2e-3,
                       warmup_steps=min(20, max(1, n_steps // 10)), seed=seed,
                       coord_window_px=int(round(2.5 * start.decode.sigma_px)), coord_start_frac=0.1)


def _optimise_on_lvh(model: torch.nn.Module, images: np.ndarray, targets: np.ndarray, recipe: OptimRecipe,
                     start: _LvhStart, dataset: LvhDataset, train_videos: Sequence[LvhVideo], *,
                     max_wall_s: float | None, progress: bool) -> TrainResult:
    """Optimise on the labelled frames (resumable checkpoint keyed by data, start and recipe);
    channels a frame has no label for get no loss.  Refuses a run cut short by the wall-time limit."""
    import torch

    from echomeasure.training.augment import IntensityAugment
    from echomeasure.training.batch import KeypointBatch
    from echomeasure.training.datasets import HeatmapTrainingSet, cache_dir
    from echomeasure.training.loop import run_optimisation

    training_set = HeatmapTrainingSet(images, targets, start.decode.sigma_px, IntensityAugment())

    def batches(rng: np.random.Generator, batch_size: int) -> KeypointBatch:
        b = training_set.batch(rng, batch_size)
        # channels this frame has no label for (aortic root, LA; LVPW on a systolic frame) get no loss
        present = torch.isfinite(b.points_px).all(dim=-1).any(dim=-1)  # (B, K)
        weight = present[:, :, None, None].to(b.heatmaps.dtype).expand_as(b.heatmaps).contiguous()
        return replace(b, images=b.images.contiguous(memory_format=torch.channels_last), pixel_weight=weight)

    run_key = hashlib.sha256(json.dumps({
        "csv": dataset.csv_sha256, "videos": videos_identity(train_videos),
        "base": start.base.sha256 if start.base else None, "arch": start.arch, "size": list(start.input_size),
        "sigma": start.decode.sigma_px, "recipe": recipe.to_dict(),
    }, sort_keys=True).encode()).hexdigest()[:16]
    checkpoint = cache_dir() / "checkpoints" / f"plax-linear-{DATASET}-{run_key}.pt"
    result = run_optimisation(model, batches, recipe, checkpoint=checkpoint, checkpoint_every=25,
                              max_wall_s=max_wall_s, progress=progress, desc="train plax-linear on echonet-lvh")
    if result.steps_done < recipe.steps:
        raise TrainingError(
            f"training stopped at step {result.steps_done} of {recipe.steps} (wall-time limit); "
            "run the same command again to resume from the checkpoint"
        )
    return result


def _lvh_training_record(dataset: LvhDataset, train_videos: Sequence[LvhVideo], n_frames: int,
                         recipe: OptimRecipe, result: TrainResult, data_wall_s: float) -> dict[str, Any]:
    """The entry's ``extra``: data, optimiser, loss, augmentation and timings of the run."""
    import torch

    from echomeasure.training.augment import IntensityAugment

    return {
        "training_data": {"dataset": DATASET, "split": "train", "videos": len(train_videos),
                          "frames": n_frames, "csv_sha256": dataset.csv_sha256,
                          "calibration": CALIBRATION_NOTE, "skipped": dict(dataset.skipped)},
        "optimiser": {"name": "AdamW", "schedule": "linear warm-up + cosine", **recipe.to_dict()},
        "loss": "pixel-weighted BCE-with-logits on Gaussian heatmaps + window-centroid smooth-L1; unlabelled channels weight 0",
        "augmentation": IntensityAugment().to_dict(),
        "train_wall_s": round(result.wall_s, 1),
        "data_wall_s": round(data_wall_s, 1),
        "final_loss": round(float(np.mean(result.losses[-20:])), 5) if result.losses else None,
        "torch": torch.__version__,
    }


def _lvh_recipe_command(n_steps: int, seed: int, base: WeightsEntry | None, from_scratch: bool,
                        max_videos: int | None) -> str:
    """The command that reproduces the run."""
    cmd = f"echomeasure train --dataset {DATASET} PATH --steps {n_steps} --seed {seed}"
    if base is not None:
        cmd += f" --base-version {base.version}"
    elif from_scratch:
        cmd += " --from-scratch"
    if max_videos is not None:
        cmd += f" --cases {max_videos}"
    return cmd


def _evaluate_and_register_lvh(model: torch.nn.Module, start: _LvhStart, weights_dir: Path, version: str,
                               dataset: LvhDataset, record: dict[str, Any], *, seed: int, eval_videos: int | None,
                               activate: bool, progress: bool, recipe: str,
                               trained_on: str) -> tuple[WeightsEntry, dict[str, Any] | None]:
    """Save the weights, evaluate them on ``val`` (else ``test``) through the real proposal path,
    register them with the figures; returns the registered entry and the evaluation (None: no split).

    The version is registered in a scratch folder first (for ``propose`` to load it), then in
    ``weights_dir`` (registered versions are immutable); a failed registration removes the file.
    """
    from echomeasure.models import registry
    from echomeasure.models.builders import count_parameters

    eval_split = "val" if dataset.split("val") else ("test" if dataset.split("test") else None)
    file_name = f"plax-linear-{version}.pt"
    evaluation = None
    with tempfile.TemporaryDirectory(prefix="em-lvh-") as scratch:
        scratch_dir = Path(scratch)
        sha = registry.save_weights(model, scratch_dir / file_name)
        entry = registry.WeightsEntry(
            name=registry.PLAX_LINEAR, version=version, arch=start.arch, input_size=start.input_size,
            channels=start.channels, file=file_name, sha256=sha, normalisation="unit", trained_on=trained_on,
            seed=seed, recipe=recipe, parent=start.base.version if start.base else None,
            num_params=count_parameters(model), extra=record, decode=start.decode,
        )
        registry.register(entry, weights_dir=scratch_dir)
        if eval_split is not None:
            evaluation = evaluate_lvh(dataset, split=eval_split, model=f"plax-linear:{version}",
                                      weights_dir=scratch_dir, max_videos=eval_videos, progress=progress)
        if evaluation:
            metrics, thresholds = registry.metrics_from_flat(flat_metrics(evaluation), DATASET)
            entry = replace(entry, metrics=metrics, thresholds=thresholds, extra={**record, "evaluation": evaluation})
        # file and manifest in one step under the manifest lock, never over a registered file
        entry = registry.publish(entry, scratch_dir / file_name, weights_dir=weights_dir, activate=activate)
    return entry, evaluation
