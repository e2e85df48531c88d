"""Tiny segmentation datasets fabricated at test time in exactly their published formats.

* CAMUS, current release: ``database_nifti/patientXXXX/patientXXXX_{2CH,4CH}_{ED,ES,half_sequence}.nii.gz``
  (+ ``_gt``), ``Info_{2CH,4CH}.cfg``, ``database_split/subgroup_*.txt``; written with nibabel in the
  file's (W, H[, T]) order with anisotropic pixel sizes in the header, as the release stores them.
* CAMUS, legacy release: ``database/{training,testing}/patientXXXX/`` with ``.mhd`` + ``.raw``.
* EchoNet-Dynamic: ``FileList.csv``, ``VolumeTracings.csv`` (long axis then 20 chords per traced
  frame, ES listed first) and ``Videos/*.avi`` (112x112 Motion-JPEG, grey in three channels).
* A mask folder: ``classes.txt``, ``images/*.png`` and ``masks/*.png``.

Each image is a simple apical phantom: an elliptic LV cavity (dark) inside a myocardial wall
(bright) with the atrium (dark) below the base; ED is larger than ES.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

# square pixel (mm) after resampling; files store x at twice that (anisotropic, like CAMUS)
SPACING_Y_MM = 0.3
SPACING_X_MM = 0.6
H, W_ISO = 96, 80  # phantom size at square pixels


def apical_phantom(h: int, w: int, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(grey image, CAMUS label map) of an apical view; ``scale`` < 1 for end-systole."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((h, w), np.uint8)
    cx, base_y = w // 2, int(0.62 * h)
    ax_len, half_w = int(0.42 * h * (0.85 + 0.15 * scale)), int(0.17 * w * scale)
    cavity = np.zeros((h, w), np.uint8)
    cv2.ellipse(cavity, (cx, base_y), (half_w, ax_len), 0, 180, 360, 1, -1)
    wall = np.zeros((h, w), np.uint8)
    cv2.ellipse(wall, (cx, base_y), (half_w + 5, ax_len + 5), 0, 180, 360, 1, -1)
    atrium = np.zeros((h, w), np.uint8)
    cv2.ellipse(atrium, (cx, base_y + int(0.14 * h)), (int(0.14 * w), int(0.13 * h)), 0, 0, 360, 1, -1)
    labels[wall > 0] = 2
    labels[cavity > 0] = 1
    labels[(atrium > 0) & (labels == 0)] = 3
    image = np.full((h, w), 70, np.float32)
    image[labels == 1] = 15
    image[labels == 2] = 185
    image[labels == 3] = 20
    image += rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def _cfg_text(ef: float | None, *, drop: str | None = None, legacy: bool = False) -> str:
    lines = {"ED": "1", "ES": "12", "NbFrame": "12", "Sex": "F", "Age": "61", "ImageQuality": "Good"}
    if legacy:
        lines.update({"LVedv": "100.5", "LVesv": "45.1", "LVef": f"{ef:.1f}"})
    else:
        lines.update({"EF": f"{ef:.1f}", "FrameRate": "25"})
    if drop:
        lines.pop(drop)
    return "".join(f"{k}: {v}\n" for k, v in lines.items())


def _views(patient: int):
    """(code, phase, image, labels) at square pixels for one patient."""
    for v, code in enumerate(("2CH", "4CH")):
        for phase, scale in (("ED", 1.0), ("ES", 0.72)):
            img, lab = apical_phantom(H, W_ISO, scale, seed=1000 * patient + 10 * v + (phase == "ES"))
            yield code, phase, img, lab


def _to_file_grid(arr: np.ndarray, nearest: bool) -> np.ndarray:
    """Square pixels -> the stored grid (x at twice the spacing)."""
    return cv2.resize(arr, (W_ISO // 2, H), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def write_camus_nifti(root: Path, *, patients=(1, 2, 3), splits=None) -> dict[str, dict]:
    """The current release under ``root``; returns per (patient, view, phase) the stored arrays."""
    import nibabel as nib

    splits = splits or {"training": [1], "validation": [2], "testing": [3]}
    base = root / "database_nifti"
    truth: dict[str, dict] = {}
    for p in patients:
        name = f"patient{p:04d}"
        folder = base / name
        folder.mkdir(parents=True, exist_ok=True)
        for code in ("2CH", "4CH"):
            (folder / f"Info_{code}.cfg").write_text(_cfg_text(55.0 + p))
        seq = []
        for code, phase, img, lab in _views(p):
            stored_img, stored_lab = _to_file_grid(img, False), _to_file_grid(lab, True)
            for suffix, arr in (("", stored_img), ("_gt", stored_lab)):
                nii = nib.Nifti1Image(arr.T.copy(), np.diag([SPACING_X_MM, SPACING_Y_MM, 1.0, 1.0]))
                nii.header.set_zooms((SPACING_X_MM, SPACING_Y_MM))
                nib.save(nii, str(folder / f"{name}_{code}_{phase}{suffix}.nii.gz"))
            truth[f"{name}/{code}/{phase}"] = {"image": stored_img, "labels": stored_lab}
            seq.append(stored_img)
            if phase == "ES":
                for suffix in ("", "_gt"):
                    vol = np.stack(seq, axis=-1).transpose(1, 0, 2).copy()  # (W, H, T)
                    nii = nib.Nifti1Image(vol, np.diag([SPACING_X_MM, SPACING_Y_MM, 1.0, 1.0]))
                    nii.header.set_zooms((SPACING_X_MM, SPACING_Y_MM, 1.0))
                    nib.save(nii, str(folder / f"{name}_{code}_half_sequence{suffix}.nii.gz"))
                seq = []
    split_dir = root / "database_split"
    split_dir.mkdir(parents=True, exist_ok=True)
    for group, ids in splits.items():
        (split_dir / f"subgroup_{group}.txt").write_text("".join(f"patient{i:04d}\n" for i in ids))
    return truth


def _write_mhd(path: Path, arr: np.ndarray) -> None:
    raw = path.with_suffix(".raw")
    raw.write_bytes(np.ascontiguousarray(arr, dtype=np.uint8).tobytes())
    dims = " ".join(str(d) for d in arr.shape[::-1])
    ndims = arr.ndim
    spacing = f"{SPACING_X_MM} {SPACING_Y_MM}" + (" 1" if ndims == 3 else "")
    path.write_text(
        "ObjectType = Image\n"
        f"NDims = {ndims}\n"
        "BinaryData = True\n"
        "BinaryDataByteOrderMSB = False\n"
        "CompressedData = False\n"
        f"TransformMatrix = {' '.join('1' if i % (ndims + 1) == 0 else '0' for i in range(ndims * ndims))}\n"
        f"Offset = {' '.join('0' for _ in range(ndims))}\n"
        f"CenterOfRotation = {' '.join('0' for _ in range(ndims))}\n"
        f"ElementSpacing = {spacing}\n"
        f"DimSize = {dims}\n"
        "AnatomicalOrientation = RAI\n"
        "ElementType = MET_UCHAR\n"
        f"ElementDataFile = {raw.name}\n"
    )


def write_camus_legacy(root: Path, *, training=(1, 2), testing=(3,)) -> dict[str, dict]:
    """The legacy ``.mhd``/``.raw`` release under ``root/database``."""
    truth: dict[str, dict] = {}
    for split, ids in (("training", training), ("testing", testing)):
        for p in ids:
            name = f"patient{p:04d}"
            folder = root / "database" / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for code in ("2CH", "4CH"):
                (folder / f"Info_{code}.cfg").write_text(_cfg_text(50.0 + p, legacy=True))
            seq = []
            for code, phase, img, lab in _views(p):
                stored_img, stored_lab = _to_file_grid(img, False), _to_file_grid(lab, True)
                _write_mhd(folder / f"{name}_{code}_{phase}.mhd", stored_img)
                _write_mhd(folder / f"{name}_{code}_{phase}_gt.mhd", stored_lab)
                truth[f"{name}/{code}/{phase}"] = {"image": stored_img, "labels": stored_lab}
                seq.append(stored_img)
                if phase == "ES":
                    _write_mhd(folder / f"{name}_{code}_sequence.mhd", np.stack(seq))
                    seq = []
    return truth


# --------------------------------------------------------------------------- EchoNet-Dynamic


def _tracing(scale: float, n_chords: int = 20) -> list[tuple[float, float, float, float]]:
    """Long axis (apex at the top) then chords of an elliptic LV on the 112x112 grid."""
    cx, base_y = 56.0, 88.0
    length = 64.0 * (0.85 + 0.15 * scale)
    half_w = 18.0 * scale
    apex_y = base_y - length
    rows = [(cx, apex_y, cx, base_y)]
    for k in range(n_chords):
        y = apex_y + (k + 0.5) / n_chords * length
        t = (base_y - y) / length
        hw = half_w * math.sqrt(max(0.0, 1 - t * t))
        rows.append((cx - hw, y, cx + hw, y))
    return rows


def _write_mjpg_avi(path: Path, frames_rgb: np.ndarray, fps: float) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frames_rgb.shape[2], frames_rgb.shape[1]))
    for frame in frames_rgb:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def write_echonet_dynamic(root: Path, *, videos=(("0X1A", "TRAIN"), ("0X2B", "VAL"), ("0X3C", "TEST")),
                          n_frames: int = 16) -> dict[str, dict]:
    """The published layout; returns per video its ED/ES frame numbers and tracing rows."""
    (root / "Videos").mkdir(parents=True, exist_ok=True)
    truth: dict[str, dict] = {}
    file_rows, trace_rows = [], []
    for i, (name, split) in enumerate(videos):
        ed, es = 2 + i, 9 + i
        frames = []
        for f in range(n_frames):
            scale = 1.0 if f == ed else 0.7 if f == es else 0.85
            img, _ = apical_phantom(112, 112, scale, seed=77 + 100 * i + f)
            frames.append(np.repeat(img[..., None], 3, axis=-1))
        _write_mjpg_avi(root / "Videos" / f"{name}.avi", np.stack(frames), 50.0)
        traces = {ed: _tracing(1.0), es: _tracing(0.7)}
        for frame in (es, ed):  # ES first: the order must not decide which is ED
            for x1, y1, x2, y2 in traces[frame]:
                trace_rows.append([f"{name}.avi", f"{x1:.4f}", f"{y1:.4f}", f"{x2:.4f}", f"{y2:.4f}", frame])
        file_rows.append([name, f"{60.0 + i:.2f}", "40.0", "100.0", 112, 112, 50, n_frames, split])
        truth[name] = {"ed": ed, "es": es, "tracings": traces, "split": split.lower()}
    with (root / "FileList.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"])
        w.writerows(file_rows)
    with (root / "VolumeTracings.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["FileName", "X1", "Y1", "X2", "Y2", "Frame"])
        w.writerows(trace_rows)
    return truth


# --------------------------------------------------------------------------- mask folder


def write_mask_folder(root: Path, *, n: int = 4, classes=("background", "muscle", "fat")) -> None:
    """``classes.txt`` and ``images/`` + ``masks/`` PNG pairs (two tissue bands on a background)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    rng = np.random.default_rng(5)
    for i in range(n):
        mask = np.zeros((64, 80), np.uint8)
        top = int(rng.integers(8, 20))
        mask[top : top + 14] = 1
        mask[top + 24 : top + 36] = 2 if len(classes) > 2 else 1
        image = np.choose(mask, [40, 170, 110][: max(2, len(classes))]).astype(np.float32) + rng.normal(0, 6, mask.shape)
        rgb = np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
        cv2.imwrite(str(root / "images" / f"slice_{i:02d}.png"), rgb)
        cv2.imwrite(str(root / "masks" / f"slice_{i:02d}.png"), mask)


@pytest.fixture()
def weights(tmp_path, monkeypatch) -> Path:
    """An empty weights folder, made the configured one (``ECHOMEASURE_WEIGHTS``); a test module
    with a ``weights`` fixture of its own keeps that one."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(folder))
    return folder


def train_refused(capsys, weights: Path, dataset: str, root: Path, *needles: str, absent: tuple[str, ...] = ()) -> str:
    """``train --dataset DATASET ROOT``: exit 2, one error line holding ``needles`` (and none of
    ``absent``), nothing on stdout and nothing in the weights folder; returns the line."""
    from echomeasure.cli import main

    rc = main(["train", "--dataset", dataset, str(root), "--steps", "1"])
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and out == "" and len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    for a in absent:
        assert a not in lines[0], (a, lines[0])
    assert list(weights.iterdir()) == []
    return lines[0]
