"""EchoNet-Dynamic (apical 4-chamber, traced LV cavity, EF): reader for the published layout.

Layout (``docs/real-data.md``): ``FileList.csv``
(``FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split``; FileName without
``.avi``, Split TRAIN / VAL / TEST), ``VolumeTracings.csv`` (``FileName,X1,Y1,X2,Y2,Frame``;
FileName with ``.avi``, Frame 0-based) and ``Videos/<FileName>.avi``.

Masks exactly as the dataset's authors build them: per traced frame, the first row is the long
axis and is left out; the outline is ``x1[1:]`` followed by reversed ``x2[1:]`` (same for y),
rounded, and filled with scikit-image's ``draw.polygon`` rule (a pixel is inside when its centre
is, by the even-odd crossing test; :func:`fill_polygon` reimplements it exactly, so
scikit-image is not needed).  Of the two traced frames, the one with the larger traced area is
end-diastole (sources disagree on the order).  The videos carry no pixel size, so volumes
stay in pixels and only EF is compared in ml-free terms.  A missing EF / EDV / ESV (an empty
cell or NaN) leaves that figure out of the comparison with the published values; the tracing is
still used.
"""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from echomeasure.errors import InvalidInputError
from echomeasure.training.seg_train import SegSample

FILELIST_COLUMNS = ("FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split")
TRACING_COLUMNS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")
SPLITS = {"TRAIN": "train", "VAL": "val", "TEST": "test"}
#: How far (fraction of the frame's larger side) a traced point may lie outside its video's frame.
TRACING_MARGIN = 0.05


def fill_polygon(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the pixels inside a polygon, with ``skimage.draw.polygon(r, c, shape)``'s rule.

    Pixels of the vertices' bounding box (clipped to ``shape``) whose integer centre is inside, on
    an edge or on a vertex by O'Rourke's ray-crossing test (right and left crossings counted
    apart: a point is on the boundary when their parities differ), as scikit-image (0.19 and
    later) classifies them; checked pixel for pixel against scikit-image 0.26.
    """
    rows = np.asarray(rows, np.float64)
    cols = np.asarray(cols, np.float64)
    mask = np.zeros(shape, bool)
    if len(rows) < 3:
        return mask
    r0, r1 = int(max(0, rows.min())), int(min(shape[0] - 1, np.ceil(rows.max())))
    c0, c1 = int(max(0, cols.min())), int(min(shape[1] - 1, np.ceil(cols.max())))
    if r1 < r0 or c1 < c0:
        return mask
    rr, cc = np.mgrid[r0 : r1 + 1, c0 : c1 + 1].astype(np.float64)
    right = np.zeros(rr.shape, np.int64)
    left = np.zeros(rr.shape, np.int64)
    vertex = np.zeros(rr.shape, bool)
    n = len(rows)
    for i in range(n):
        j = (i + n - 1) % n
        xi, yi = cols[i] - cc, rows[i] - rr  # relative to each pixel centre
        xj, yj = cols[j] - cc, rows[j] - rr
        vertex |= (xi == 0) & (yi == 0)
        r_strad = (yi > 0) != (yj > 0)
        l_strad = (yi < 0) != (yj < 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_int = (xi * yj - xj * yi) / (yj - yi)
        right += r_strad & (x_int > 0)
        left += l_strad & (x_int < 0)
    on_edge = (right % 2) != (left % 2)
    mask[r0 : r1 + 1, c0 : c1 + 1] = vertex | on_edge | (right % 2 == 1)
    return mask


def tracing_mask(rows: list[tuple[float, float, float, float]], shape: tuple[int, int]) -> np.ndarray:
    """Mask of one traced frame from its ``(X1, Y1, X2, Y2)`` rows (first row: the long axis)."""
    arr = np.asarray(rows, np.float64)
    x1, y1, x2, y2 = arr[1:, 0], arr[1:, 1], arr[1:, 2], arr[1:, 3]
    x = np.concatenate([x1, x2[::-1]])
    y = np.concatenate([y1, y2[::-1]])
    return fill_polygon(np.rint(y).astype(np.int64), np.rint(x).astype(np.int64), shape)


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of a CSV with the needed columns (in any order, others ignored; UTF-8 with or
    without the byte-order mark spreadsheets write).  A row with fewer fields than the header is
    refused (its values would land in the wrong columns)."""
    if not path.is_file():
        raise InvalidInputError(f"{path}: not found; give the EchoNet-Dynamic folder (FileList.csv, VolumeTracings.csv, Videos/)")
    rows = []
    try:
        with path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in columns if c not in header]
            if missing:
                raise InvalidInputError(f"{path}: missing column(s) {', '.join(missing)}")
            for row in reader:
                if any(v is None for v in row.values()):
                    raise InvalidInputError(f"{path}: line {reader.line_num} has fewer fields than the header")
                rows.append({(k or "").strip(): (v if isinstance(v, str) else "").strip() for k, v in row.items()})
    except csv.Error:
        raise InvalidInputError(f"{path}: not a readable CSV file") from None
    except OSError:
        raise InvalidInputError(f"{path}: cannot read the file") from None
    return rows


def _video_name(value: str, where: str) -> str:
    """A FileName without ``.avi``: a plain file name in ``Videos/`` (no folder part)."""
    name = _stem(value)
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise InvalidInputError(f"{where}: FileName must be a video's file name in Videos/")
    return name


def _frame_number(text: str) -> int:
    """A 0-based frame number: ``46`` or ``46.0`` (as a spreadsheet or pandas re-saves an integer
    column); ``ValueError`` for anything else (``46.5``, ``nan``, text)."""
    value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def _stem(name: str) -> str:
    return name[:-4] if name.lower().endswith(".avi") else name


def read_frames(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    """The wanted frames (0-based) of a video, RGB."""
    import av

    if not path.is_file():
        raise InvalidInputError(f"{path}: video listed in FileList.csv not found")
    out: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i in wanted:
                    out[i] = frame.to_ndarray(format="rgb24")
                if len(out) == len(wanted):
                    break
    except (av.error.FFmpegError, IndexError, ValueError):
        raise InvalidInputError(f"{path}: not a readable video") from None
    if len(out) != len(wanted):
        raise InvalidInputError(f"{path}: a traced frame lies beyond the video's last frame")
    return out


def read_echonet_dynamic(root: str | os.PathLike[str], split: str | None = None,
                         max_videos: int | None = None) -> list[SegSample]:
    """ED and ES frames with their LV masks (label 1; only the LV is annotated) of every traced video.

    Raises
    ------
    InvalidInputError
        A CSV or a column missing, a bad number, a listed video absent or unreadable, a video with
        other than two traced frames.
    """
    root = Path(root)
    if not root.is_dir():
        raise InvalidInputError(f"{root}: not a folder; give the EchoNet-Dynamic folder")
    if split is not None and split not in SPLITS.values():
        raise InvalidInputError(f"--split {split}: use train, val or test")
    files = _read_csv(root / "FileList.csv", FILELIST_COLUMNS)
    tracings = _read_csv(root / "VolumeTracings.csv", TRACING_COLUMNS)
    traced: dict[str, dict[int, list[tuple[float, float, float, float]]]] = defaultdict(lambda: defaultdict(list))
    for i, row in enumerate(tracings, start=2):
        try:
            point = (float(row["X1"]), float(row["Y1"]), float(row["X2"]), float(row["Y2"]))
            frame = _frame_number(row["Frame"])
        except ValueError:
            raise InvalidInputError(f"{root / 'VolumeTracings.csv'}: line {i} has a value that is not a number") from None
        if frame < 0:
            raise InvalidInputError(f"{root / 'VolumeTracings.csv'}: line {i} has a negative Frame")
        if not all(math.isfinite(v) for v in point):
            raise InvalidInputError(f"{root / 'VolumeTracings.csv'}: line {i} has a coordinate that is not a finite number")
        traced[_video_name(row["FileName"], f"{root / 'VolumeTracings.csv'}: line {i}")][frame].append(point)
    samples: list[SegSample] = []
    listed: dict[str, int] = {}
    for i, row in enumerate(files, start=2):
        s = SPLITS.get(row["Split"].upper())
        if s is None:
            raise InvalidInputError(f"{root / 'FileList.csv'}: line {i} has a Split other than TRAIN, VAL or TEST")
        name = _video_name(row["FileName"], f"{root / 'FileList.csv'}: line {i}")
        if name in listed:
            raise InvalidInputError(f"{root / 'FileList.csv'}: line {i} lists the video of line {listed[name]} again")
        listed[name] = i
        if (split is not None and s != split) or name not in traced:
            continue
        if max_videos is not None and len(samples) >= 2 * max_videos:
            break
        frames = traced[name]
        if len(frames) != 2 or any(len(r) < 4 for r in frames.values()):
            raise InvalidInputError(f"{root / 'VolumeTracings.csv'}: {name}.avi needs two traced frames of an axis and chords")
        try:  # an empty cell (how pandas writes a missing value) or NaN: no published figure to compare with
            published = {k: float(row[col] or "nan") for k, col in (("ef", "EF"), ("edv", "EDV"), ("esv", "ESV"))}
        except ValueError:
            raise InvalidInputError(f"{root / 'FileList.csv'}: line {i} has an EF/EDV/ESV that is not a number") from None
        if any(math.isinf(v) for v in published.values()):
            raise InvalidInputError(f"{root / 'FileList.csv'}: line {i} has an EF/EDV/ESV that is not a finite number")
        reported = {k: v for k, v in published.items() if math.isfinite(v)}
        images = read_frames(root / "Videos" / f"{name}.avi", set(frames))
        masks = {}
        for f, rows in frames.items():
            h, w = images[f].shape[:2]
            pts = np.asarray(rows, np.float64)
            margin = TRACING_MARGIN * max(h, w)
            if (pts[:, [0, 2]].min() < -margin or pts[:, [1, 3]].min() < -margin
                    or pts[:, [0, 2]].max() > w + margin or pts[:, [1, 3]].max() > h + margin):
                raise InvalidInputError(f"{root / 'VolumeTracings.csv'}: the tracing of frame {f} of {name}.avi "
                                        f"lies outside its {w}x{h} video")
            masks[f] = tracing_mask(rows, (h, w))
            if not masks[f].any():
                raise InvalidInputError(f"{root / 'VolumeTracings.csv'}: the tracing of frame {f} of {name}.avi "
                                        "encloses no pixel")
        ed, es = sorted(frames, key=lambda f: -int(masks[f].sum()))
        for phase, f in (("ed", ed), ("es", es)):
            samples.append(SegSample(case=name, view="a4c", phase=phase, image=images[f],
                                     labels=masks[f].astype(np.uint8), cm_per_px=None, split=s, known=(1,),
                                     reported=reported))
    return samples
