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
  not support (compressed data is read with zlib, other unknown features are refused).  The
  data file must be a regular file beside its header (a header cannot make it read another
  folder or a device), only the bytes the header describes are read, and a one-slice 3D image
  (``DimSize = W H 1``, as the release stores ED/ES frames) reads as 2D.

Pixel spacing comes from each image's header (mm; CAMUS pixels are not square): images and label
maps are resampled to square pixels of the finer spacing so the method of discs can use one
pixel size; an image and its label map must agree on spacing and orientation.  Values shown to
the user in errors are the file names only.
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
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
log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- readers


def _text(path: Path, what: str) -> str:
    """A small text file of the dataset: UTF-8 (a byte-order mark, as spreadsheet editors write, is
    dropped), else Latin-1."""
    try:
        raw = path.read_bytes()
    except OSError:
        raise InvalidInputError(f"{path}: cannot read the {what}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_cfg(path: Path) -> dict[str, str]:
    """``Key: Value`` lines of an ``Info_*.cfg``; the required keys must be there with integer values."""
    out: dict[str, str] = {}
    for line in _text(path, "CAMUS info file").splitlines():
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


#: What a reader returns: the (H, W) or (T, H, W) array, the (x, y) pixel spacing in mm (NaN when the
#: header gives none) and the image's orientation in the header's own terms (image and label map
#: of one frame must agree on both).
Image = tuple[np.ndarray, tuple[float, float], tuple[object, ...]]


def read_nifti(path: Path) -> Image:
    """A NIfTI image (see :data:`Image`); a zero or missing pixel size is reported as unknown (NaN)."""
    try:
        import nibabel as nib
    except ImportError:
        raise InvalidInputError("reading the CAMUS NIfTI release needs nibabel: pip install 'echomeasure[datasets]'") from None
    try:
        img = nib.load(str(path))
        # nibabel.load is annotated as returning FileBasedImage; a NIfTI file loads as a SpatialImage.
        zooms = tuple(float(z) for z in img.header.get_zooms())  # type: ignore[attr-defined]
        data = np.asanyarray(img.dataobj)  # type: ignore[attr-defined]
        orientation = tuple(nib.orientations.aff2axcodes(img.affine))  # type: ignore[attr-defined]
    except (OSError, ValueError, EOFError, KeyError, zlib.error, nib.filebasedimages.ImageFileError):
        raise InvalidInputError(f"{path}: not a readable NIfTI image") from None
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        arr = data.T
    elif data.ndim == 3:
        arr = data.transpose(2, 1, 0)
    else:
        raise InvalidInputError(f"{path}: expected a 2D image or a 2D sequence")
    spacing = zooms[:2] if len(zooms) >= 2 and all(z > 0 for z in zooms[:2]) else (float("nan"), float("nan"))
    return arr, (spacing[0], spacing[1]), orientation


_MET_TYPES = {"MET_UCHAR": "u1", "MET_CHAR": "i1", "MET_USHORT": "u2", "MET_SHORT": "i2", "MET_UINT": "u4",
              "MET_INT": "i4", "MET_FLOAT": "f4", "MET_DOUBLE": "f8"}
#: Largest MetaImage data read (bytes): a CAMUS half sequence is under 20 MB.
MAX_MHD_BYTES = 1 << 30


def _mhd_data_file(path: Path, name: str) -> Path:
    """The header's data file: a plain file beside the header (no folder part, no link elsewhere)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise InvalidInputError(f"{path}: ElementDataFile must name a file in the header's own folder")
    data = path.parent / name
    try:
        st = data.stat()
    except (OSError, ValueError):
        raise InvalidInputError(f"{path}: the MetaImage data file it names is missing") from None
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInputError(f"{path}: the MetaImage data file it names is not a regular file")
    return data


def read_mhd(path: Path) -> Image:
    """A MetaImage ``.mhd`` with its data in a separate file beside it (see :data:`Image`).

    A 3D image of one slice (``DimSize = W H 1``) is read as 2D.  The data file must be a plain
    file in the header's folder; only the bytes the header describes are read.
    """
    head: dict[str, str] = {}
    for line in _text(path, "MetaImage header").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            head[key.strip()] = value.strip()
    try:
        dims = [int(v) for v in head["DimSize"].split()]
        ndims = int(head.get("NDims", len(dims)))
        dtype = np.dtype(_MET_TYPES[head["ElementType"]])
        spacing = [float(v) for v in head.get("ElementSpacing", head.get("ElementSize", "nan nan")).split()]
        data_name = head["ElementDataFile"]
        offset = int(head.get("HeaderSize", "0") or 0)
        channels = int(head.get("ElementNumberOfChannels", "1"))
        matrix = [float(v) for v in head.get("TransformMatrix", "").split()]
    except (KeyError, ValueError):
        raise InvalidInputError(f"{path}: MetaImage header lacks or garbles DimSize, ElementType or ElementDataFile") from None
    if (ndims != len(dims) or ndims not in (2, 3) or len(spacing) < 2 or data_name == "LOCAL"
            or data_name.startswith("LIST") or "%" in data_name or channels != 1):
        raise InvalidInputError(f"{path}: unsupported MetaImage layout (need a 2D/3D grey image in a separate data file)")
    if min(dims) < 1 or offset < -1:
        raise InvalidInputError(f"{path}: MetaImage header gives an empty or negative size")
    # in-plane direction cosines (the x and y columns' first two rows), rounded
    transform: tuple[object, ...] = ()
    if len(matrix) == ndims * ndims:
        transform = tuple(round(matrix[r * ndims + c], 3) for r in (0, 1) for c in (0, 1))
    if ndims == 3 and dims[2] == 1:
        dims = dims[:2]
    n = math.prod(dims)
    size = n * dtype.itemsize
    if size > MAX_MHD_BYTES:
        raise InvalidInputError(f"{path}: MetaImage image larger than {MAX_MHD_BYTES >> 20} MB; not a CAMUS image")
    msb = head.get("ElementByteOrderMSB", head.get("BinaryDataByteOrderMSB", "False")).lower() == "true"
    dtype = dtype.newbyteorder(">" if msb else "<")
    data_file = _mhd_data_file(path, data_name)
    compressed = head.get("CompressedData", "False").lower() == "true"
    try:
        with data_file.open("rb") as fh:
            if compressed:
                raw = zlib.decompressobj().decompress(fh.read(MAX_MHD_BYTES), size)
            else:
                if offset == -1:  # the data are the last bytes of the file
                    offset = max(0, data_file.stat().st_size - size)
                fh.seek(offset)
                raw = fh.read(size)
    except zlib.error:
        raise InvalidInputError(f"{path}: corrupt compressed MetaImage data") from None
    except OSError:
        raise InvalidInputError(f"{path}: cannot read the MetaImage data file it names") from None
    if len(raw) < size:
        raise InvalidInputError(f"{path}: MetaImage data file is shorter than its header says")
    arr = np.frombuffer(raw, dtype=dtype, count=n).reshape(dims[::-1])  # x varies fastest
    return arr.astype(dtype.newbyteorder("=")), (spacing[0], spacing[1]), transform


def _uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    a = np.nan_to_num(arr.astype(np.float64))
    if a.max() <= 1.0:
        a = a * 255.0
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


def _labels(arr: np.ndarray, path: Path) -> np.ndarray:
    lab = np.round(np.asarray(arr, dtype=np.float64))
    if not np.isfinite(lab).all() or lab.min() < 0 or lab.max() >= len(APICAL_SEG_CLASSES):
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
        for line in _text(path, "CAMUS split list").splitlines():
            patient = line.strip()
            if not patient:
                continue
            if not _PATIENT.match(patient):
                raise InvalidInputError(f"{path}: a line is not a CAMUS patient name (patientXXXX)")
            if not (nifti_dir / patient).is_dir():
                raise InvalidInputError(f"{path}: lists a patient whose folder is not in {nifti_dir}")
            if out.get(patient, split) != split:
                raise InvalidInputError(f"{path}: lists a patient that another subgroup file lists too")
            out[patient] = split
    return out


def _image_file(path: Path) -> Path:
    """``path``, or for ``.nii.gz`` its uncompressed ``.nii`` twin when only that is there."""
    if path.is_file():
        return path
    if path.name.endswith(".nii.gz") and path.with_suffix("").is_file():
        return path.with_suffix("")
    raise InvalidInputError(f"{path}: CAMUS image not found")


def _same_geometry(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Same pixel spacing (to 0.1 %), or both unknown."""
    known_a, known_b = all(math.isfinite(v) for v in a), all(math.isfinite(v) for v in b)
    if not (known_a and known_b):
        return known_a == known_b
    return all(math.isclose(x, y, rel_tol=1e-3) for x, y in zip(a, b, strict=True))


def _has_label_maps(folder: Path) -> bool:
    """Whether a patient folder holds any ``_gt`` label map (the legacy release ships its testing
    patients without them; a folder holding some but not all of them is an error when read)."""
    return any(p.name.startswith(folder.name) and re.search(r"_gt\.(nii(\.gz)?|mhd)$", p.name)
               for p in folder.iterdir())


def read_camus(root: str | os.PathLike[str], split: str | None = None) -> list[SegSample]:
    """ED and ES frames of every patient and view (both releases), optionally one split.

    Each sample carries the label map, the square pixel size (cm) and, as ``reported``, the EF
    of the info file (``EF`` in the current release, ``LVef`` in the legacy one) when present.

    Raises
    ------
    InvalidInputError
        No CAMUS layout, an info file without ED/ES/NbFrame, a listed patient or an expected
        image absent, an unreadable image, label values outside 0-3.  A patient folder without
        any ``_gt`` label map (the legacy release's testing set) is left out with a warning.
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
    unlabelled = [folder for folder, _ in patients if not _has_label_maps(folder)]
    if unlabelled and len(unlabelled) == len(patients) and split is not None:
        raise InvalidInputError(f"{root}: no patient of split {split} has label maps (the legacy release "
                                "withholds the testing set's); evaluate another split")
    if unlabelled:  # the legacy release withholds its testing set's label maps
        log.warning("%s: %d CAMUS patient folder(s) without any label map (e.g. %s) left out",
                    root, len(unlabelled), unlabelled[0].name)
        patients = [(p, s) for p, s in patients if p not in unlabelled]
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
                    ef = float(cfg[key])
                except (KeyError, ValueError):
                    continue
                if math.isfinite(ef):
                    reported["ef"] = ef
                    break
            for phase in PHASES:
                img_path = _image_file(folder / f"{folder.name}_{code}_{phase}{ext}")
                gt_path = _image_file(folder / f"{folder.name}_{code}_{phase}_gt{ext}")
                image, spacing, orientation = reader(img_path)
                labels, gt_spacing, gt_orientation = reader(gt_path)
                if image.ndim != 2:
                    raise InvalidInputError(f"{img_path}: expected one 2D frame")
                if labels.shape != image.shape:
                    raise InvalidInputError(f"{gt_path}: label map and image differ in size")
                if not _same_geometry(spacing, gt_spacing) or orientation != gt_orientation:
                    raise InvalidInputError(f"{gt_path}: label map and image differ in pixel spacing or orientation")
                image, lab, cm = resample_isotropic(_uint8(image), _labels(labels, gt_path), spacing)
                samples.append(SegSample(case=folder.name, view=view, phase=phase.lower(), image=image, labels=lab,
                                         cm_per_px=cm, split=s, reported=dict(reported)))
    return samples
