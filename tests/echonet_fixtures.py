"""Tiny fabricated datasets and checkpoints in exactly the published EchoNet formats.

Import into a test module: ``from echonet_fixtures import write_echonet_lvh, write_echonet_checkpoint``.
Everything is built at test time under ``tmp_path`` (nothing large is committed):

* :func:`write_echonet_lvh`: an EchoNet-LVH folder, ``MeasurementsList.csv`` (unnamed index
  column, then ``HashedFileName,Calc,CalcValue,Frame,X1,X2,Y1,Y2,Frames,FPS,Width,Height,split``,
  X1,X2 before Y1,Y2, ``CalcValue`` in cm, ``Frame`` 0-based) next to ``Batch1/`` ... holding
  ``<HashedFileName>.avi`` (Motion-JPEG AVI).  The videos are synthetic PLAX cines whose true keypoints give the
  labelled lines, so a trained model has something real to find.
* :func:`write_echonet_checkpoint`: a ``<task>_weights.ckpt`` as the authors publish it: a flat
  fp32 state dict of ``deeplabv3_resnet50(num_classes=C)`` (no aux head, full ResNet-50 shapes,
  ~160 MB) with every key prefixed ``m.``; random weights.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LVH_HEADER = ["", "HashedFileName", "Calc", "CalcValue", "Frame", "X1", "X2", "Y1", "Y2", "Frames", "FPS",
              "Width", "Height", "split"]
# Calc -> (first keypoint, second keypoint) of catalog.KEYPOINTS_2D, and the phase it is read on
LVH_LINES = {"IVSd": ("rv_septum", "septum_lv", "ed"), "LVIDd": ("septum_lv", "lv_pw", "ed"),
             "LVPWd": ("lv_pw", "pw_pericardium", "ed"), "LVIDs": ("septum_lv", "lv_pw", "es")}


@dataclass(frozen=True)
class LvhVideo:
    """One fabricated video: its hashed name, batch, split and the truth behind its labels."""

    name: str
    batch: str
    split: str
    cm_per_px: float
    ed: int
    es: int
    n_frames: int


def write_echonet_lvh(root: Path, *, seeds: tuple[int, ...] = (4242, 4343),
                      splits: tuple[str, ...] = ("train", "test"), swap_first_line: bool = True) -> list[LvhVideo]:
    """Write an EchoNet-LVH folder with one video per seed (small synthetic PLAX cines).

    ``swap_first_line``: the first labelled line lists its deeper end as point 1 (the dataset
    does not document which end comes first).
    """
    from echomeasure.catalog import KEYPOINTS_2D
    from echomeasure.synthetic.plax import render_plax
    from echomeasure.training.datasets import plax_params_for_seed

    root.mkdir(parents=True, exist_ok=True)
    index = {k: i for i, k in enumerate(KEYPOINTS_2D)}
    rows: list[list[object]] = []
    videos: list[LvhVideo] = []
    for i, (seed, split) in enumerate(zip(seeds, splits, strict=True)):
        params = plax_params_for_seed(seed, small=True)
        cine = render_plax(params, labels=False)
        name = f"0X{seed:016X}"
        batch = f"Batch{i % 4 + 1}"
        (root / batch).mkdir(exist_ok=True)
        n, h, w = cine.frames.shape[:3]
        fps = round(1000.0 / cine.frame_time_ms, 3)
        _write_mjpg_avi(root / batch / f"{name}.avi", cine.frames, fps)
        for calc, (a, b, phase) in LVH_LINES.items():
            frame = cine.ed_frame if phase == "ed" else cine.es_frame
            p1, p2 = cine.keypoints[frame, index[a]], cine.keypoints[frame, index[b]]
            if swap_first_line and not rows:
                p1, p2 = p2, p1
            value_cm = float(np.hypot(*(p2 - p1))) * cine.cm_per_px
            rows.append([len(rows), name, calc, round(value_cm, 4), frame, round(float(p1[0]), 2),
                         round(float(p2[0]), 2), round(float(p1[1]), 2), round(float(p2[1]), 2), n, fps, w, h, split])
        videos.append(LvhVideo(name, batch, split, float(cine.cm_per_px), int(cine.ed_frame), int(cine.es_frame), n))
    with open(root / "MeasurementsList.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(LVH_HEADER)
        writer.writerows(rows)
    return videos


def _write_mjpg_avi(path: Path, frames_rgb: np.ndarray, fps: float) -> None:
    """Motion-JPEG in AVI, as the published videos are written (OpenCV, BGR order on disk)."""
    import cv2

    h, w = frames_rgb.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for frame in frames_rgb:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def rewrite_csv(root: Path, *, drop_column: str | None = None, extra_row: list[object] | None = None) -> None:
    """Damage ``MeasurementsList.csv`` in place: drop a column, or append a row."""
    path = root / "MeasurementsList.csv"
    with open(path, newline="") as fh:
        table = list(csv.reader(fh))
    if drop_column is not None:
        k = table[0].index(drop_column)
        table = [r[:k] + r[k + 1 :] for r in table]
    if extra_row is not None:
        table.append([str(v) for v in extra_row])
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(table)


def write_echonet_checkpoint(path: Path, num_classes: int, *, seed: int = 0) -> Path:
    """Save a random ``deeplabv3_resnet50(num_classes)`` state dict in the published layout."""
    import torch
    from torchvision.models.segmentation import deeplabv3_resnet50

    torch.manual_seed(seed)
    net = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
    state = {f"m.{k}": v.detach().clone() for k, v in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def copy_shipped_plax_linear(weights_dir: Path) -> None:
    """Register the project's shipped active plax-linear in another weights folder (ED/ES choice)."""
    from echomeasure import config
    from echomeasure.models import registry

    entry = registry.get_entry("plax-linear", None, config.PROJECT_ROOT / "weights")
    weights_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(config.PROJECT_ROOT / "weights" / entry.file, weights_dir / entry.file)
    registry.register(entry, weights_dir=weights_dir)
