"""CAMUS (apical 2- and 4-chamber, LV cavity / myocardium / LA): reader for both published releases.

Layouts (``docs/real-data.md``):

* current release: ``database_nifti/patientXXXX/patientXXXX_{2CH,4CH}_{ED,ES,half_sequence}.nii.gz``
  with ``..._{ED,ES}_gt.nii.gz`` label maps and ``Info_{2CH,4CH}.cfg``; splits in
  ``database_split/subgroup_{training,validation,testing}.txt`` (one patient per line);
* legacy release: ``database/{training,testing}/patientXXXX/`` with ``.mhd`` + ``.raw`` pairs
  (``_ED``, ``_ES``, ``_ED_gt``, ``_ES_gt``, ``_sequence``); the folder is the split.

Labels: 0 background, 1 LV cavity, 2 myocardium, 3 left atrium (= :data:`echomeasure.catalog.APICAL_SEG_CLASSES`).

Readers, chosen with care:

* NIfTI: **nibabel**.  A small pure-Python wheel that reads gzip-compressed NIfTI-1/2 with the
  header's scaling and pixel sizes (``header.get_zooms()``), the format's reference reader in
  Python.  nibabel gives arrays in file order (W, H[, T]); they are transposed to (H, W).
* MetaImage (``.mhd``/``.raw``): a small exact header parser here instead of SimpleITK.  The
  format is ``Key = Value`` text lines naming the element type, sizes, spacing, byte order and
  the data file; CAMUS uses 2D/3D unsigned-char images.  SimpleITK would bring a ~50 MB
  binary wheel (all of ITK) for those few lines, and its (T, H, W) axis order differs from
  nibabel's; parsing the header ourselves keeps one axis convention and refuses what it does
  not support (compressed data is read with zlib, other unknown features are refused).

Pixel spacing comes from each image's header (mm; CAMUS pixels are not square): images and label
maps are resampled to square pixels of the finer spacing so the method of discs can use one
pixel size.  Values shown to the user in errors are the file names only.
"""

from __future__ import annotations

import os
import re
import zlib
from pathlib import Path

import numpy as np

from echomeasure.catalog import APICAL_SEG_CLASSES
from echomeasure.errors import InvalidInputError
from echomeasure.training.seg_train import SegSample, resample_isotropic

VIEWS = {"2CH": "a2c", "4CH": "a4c"}
PHASES = ("ED", "ES")
SPLIT_FILES = {"train": "subgroup_training.txt", "val": "subgroup_validation.txt", "test": "subgroup_testing.txt"}
LEGACY_SPLITS = {"train": "training", "test": "testing"}
REQUIRED_CFG_KEYS = ("ED", "ES", "NbFrame")
_PATIENT = re.compile(r"^patient\d{4}$")


# --------------------------------------------------------------------------- readers


def read_cfg(path: Path) -> dict[str, str]:
    """``Key: Value`` lines of an ``Info_*.cfg``; the required keys must be there with integer values."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        raise InvalidInputError(f"{path}: cannot read the CAMUS info file") from None
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    missing = [k for k in REQUIRED_CFG_KEYS if k not in out]
    if missing:
        raise InvalidInputError(f"{path}: CAMUS info file lacks {', '.join(missing)}")
    for k in REQUIRED_CFG_KEYS:
        if not re.fullmatch(r"\d+", out[k]):
            raise InvalidInputError(f"{path}: {k} is not a frame number")
    return out


def read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """(H, W) (or (T, H, W)) array and the (x, y) pixel spacing in mm of a NIfTI image."""
    try:
        import nibabel as nib
    except ImportError:
        raise InvalidInputError("reading the CAMUS NIfTI release needs nibabel: pip install 'echomeasure[datasets]'") from None
    try:
        img = nib.load(str(path))
        # nibabel.load is annotated as returning FileBasedImage; a NIfTI file loads as a SpatialImage.
        data = np.asanyarray(img.dataobj)  # type: ignore[attr-defined]
        zooms = tuple(float(z) for z in img.header.get_zooms())  # type: ignore[attr-defined]
    except (OSError, ValueError, EOFError, zlib.error, nib.filebasedimages.ImageFileError):
        raise InvalidInputError(f"{path}: not a readable NIfTI image") from None
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        arr = data.T
    elif data.ndim == 3:
        arr = data.transpose(2, 1, 0)
    else:
        raise InvalidInputError(f"{path}: expected a 2D image or a 2D sequence")
    return arr, (zooms[0], zooms[1]) if len(zooms) >= 2 else (float("nan"), float("nan"))


_MET_TYPES = {"MET_UCHAR": "u1", "MET_CHAR": "i1", "MET_USHORT": "u2", "MET_SHORT": "i2", "MET_UINT": "u4",
              "MET_INT": "i4", "MET_FLOAT": "f4", "MET_DOUBLE": "f8"}


def read_mhd(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """(H, W) (or (T, H, W)) array and the (x, y) pixel spacing in mm of a MetaImage ``.mhd``."""
    try:
        text = path.read_text(encoding="latin-1")
    except OSError:
        raise InvalidInputError(f"{path}: cannot read the MetaImage header") from None
    head: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            head[key.strip()] = value.strip()
    try:
        dims = [int(v) for v in head["DimSize"].split()]
        ndims = int(head.get("NDims", len(dims)))
        dtype = np.dtype(_MET_TYPES[head["ElementType"]])
        spacing = [float(v) for v in head.get("ElementSpacing", head.get("ElementSize", "nan nan")).split()]
        data_file = head["ElementDataFile"]
    except (KeyError, ValueError):
        raise InvalidInputError(f"{path}: MetaImage header lacks or garbles DimSize, ElementType or ElementDataFile") from None
    if ndims != len(dims) or ndims not in (2, 3) or len(spacing) < 2 or data_file == "LOCAL" or data_file.startswith("LIST"):
        raise InvalidInputError(f"{path}: unsupported MetaImage layout (need a 2D/3D image in a separate data file)")
    msb = head.get("ElementByteOrderMSB", head.get("BinaryDataByteOrderMSB", "False")).lower() == "true"
    dtype = dtype.newbyteorder(">" if msb else "<")
    raw_path = path.parent / data_file
    try:
        raw = raw_path.read_bytes()
    except OSError:
        raise InvalidInputError(f"{raw_path}: MetaImage data file not found") from None
    offset = int(head.get("HeaderSize", "0") or 0)
    if head.get("CompressedData", "False").lower() == "true":
        try:
            raw = zlib.decompress(raw)
        except zlib.error:
            raise InvalidInputError(f"{raw_path}: corrupt compressed MetaImage data") from None
    n = int(np.prod(dims))
    if offset < 0 or len(raw) - offset < n * dtype.itemsize:
        raise InvalidInputError(f"{raw_path}: MetaImage data file is shorter than its header says")
    arr = np.frombuffer(raw, dtype=dtype, count=n, offset=offset).reshape(dims[::-1])  # x varies fastest
    return arr.astype(dtype.newbyteorder("=")), (spacing[0], spacing[1])


def _uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    a = np.nan_to_num(arr.astype(np.float64))
    if a.max() <= 1.0:
        a = a * 255.0
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


def _labels(arr: np.ndarray, path: Path) -> np.ndarray:
    lab = np.round(np.asarray(arr, dtype=np.float64))
    if lab.min() < 0 or lab.max() >= len(APICAL_SEG_CLASSES):
        raise InvalidInputError(f"{path}: label values outside the CAMUS classes 0-3")
    return lab.astype(np.uint8)


# --------------------------------------------------------------------------- dataset


def _layout(root: Path) -> tuple[str, Path]:
    """("nifti" | "legacy", folder of patient folders or of split folders)."""
    if not root.is_dir():
        raise InvalidInputError(f"{root}: not a folder; give the CAMUS folder (holding database_nifti/ or database/)")
    for cand in (root / "database_nifti", root):
        patients = cand.is_dir() and any(_PATIENT.match(p.name) and p.is_dir() for p in cand.iterdir())
        if patients and any(cand.glob("patient*/*.nii*")):
            return "nifti", cand
    for cand in (root / "database", root):
        if any((cand / s).is_dir() for s in LEGACY_SPLITS.values()):
            return "legacy", cand
    raise InvalidInputError(f"{root}: no CAMUS layout found (database_nifti/patientXXXX/ or database/training/)")


def _split_lists(root: Path, nifti_dir: Path) -> dict[str, str] | None:
    """patient -> split from ``database_split/``, None when the folder is not there."""
    folder = next((d for d in (root / "database_split", nifti_dir.parent / "database_split") if d.is_dir()), None)
    if folder is None:
        return None
    out: dict[str, str] = {}
    for split, name in SPLIT_FILES.items():
        path = folder / name
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            patient = line.strip()
            if not patient:
                continue
            if not _PATIENT.match(patient):
                raise InvalidInputError(f"{path}: a line is not a CAMUS patient name (patientXXXX)")
            if not (nifti_dir / patient).is_dir():
                raise InvalidInputError(f"{path}: lists a patient whose folder is not in {nifti_dir}")
            out[patient] = split
    return out


def read_camus(root: str | os.PathLike[str], split: str | None = None) -> list[SegSample]:
    """ED and ES frames of every patient and view (both releases), optionally one split.

    Each sample carries the label map, the square pixel size (cm) and, as ``reported``, the EF
    of the info file (``EF`` in the current release, ``LVef`` in the legacy one) when present.

    Raises
    ------
    InvalidInputError
        No CAMUS layout, an info file without ED/ES/NbFrame, a listed patient or an expected
        image absent, an unreadable image, label values outside 0-3.
    """
    root = Path(root)
    kind, base = _layout(root)
    if split is not None and split not in SPLIT_FILES:
        raise InvalidInputError(f"--split {split}: use train, val or test")
    patients: list[tuple[Path, str]] = []
    if kind == "nifti":
        lists = _split_lists(root, base)
        for folder in sorted(p for p in base.iterdir() if p.is_dir() and _PATIENT.match(p.name)):
            s = "train" if lists is None else lists.get(folder.name)
            if s is not None:
                patients.append((folder, s))
        ext, reader = ".nii.gz", read_nifti
    else:
        for s, name in LEGACY_SPLITS.items():
            d = base / name
            if d.is_dir():
                patients += [(p, s) for p in sorted(d.iterdir()) if p.is_dir() and _PATIENT.match(p.name)]
        ext, reader = ".mhd", read_mhd
    if split is not None:
        patients = [(p, s) for p, s in patients if s == split]
    samples: list[SegSample] = []
    for folder, s in patients:
        for code, view in VIEWS.items():
            cfg_path = folder / f"Info_{code}.cfg"
            if not cfg_path.is_file():
                raise InvalidInputError(f"{cfg_path}: CAMUS info file not found")
            cfg = read_cfg(cfg_path)
            reported = {}
            for key in ("EF", "LVef"):
                try:
                    reported["ef"] = float(cfg[key])
                    break
                except (KeyError, ValueError):
                    continue
            for phase in PHASES:
                img_path = folder / f"{folder.name}_{code}_{phase}{ext}"
                gt_path = folder / f"{folder.name}_{code}_{phase}_gt{ext}"
                for p in (img_path, gt_path):
                    if not p.is_file():
                        raise InvalidInputError(f"{p}: CAMUS image not found")
                image, spacing = reader(img_path)
                labels, _ = reader(gt_path)
                if image.ndim != 2 or labels.shape != image.shape:
                    raise InvalidInputError(f"{gt_path}: label map and image differ in size")
                image, lab, cm = resample_isotropic(_uint8(image), _labels(labels, gt_path), spacing)
                samples.append(SegSample(case=folder.name, view=view, phase=phase.lower(), image=image, labels=lab,
                                         cm_per_px=cm, split=s, reported=dict(reported)))
    return samples
