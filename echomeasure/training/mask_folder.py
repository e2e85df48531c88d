"""A folder of image + label-mask PNG pairs with a ``classes.txt``: any tissue segmentation a user labels.

Layout (either form)::

    FOLDER/classes.txt            FOLDER/classes.txt
    FOLDER/images/NAME.png        FOLDER/NAME.png
    FOLDER/masks/NAME.png         FOLDER/NAME_mask.png

``classes.txt``: one class name per line in label-value order, the first line (value 0) being
the background; a line may also give its value first (``2 plaque`` or ``2: plaque``), then the
values must be 0, 1, 2, ... in order; a blank line between classes is refused (it would shift
the values of the classes after it).  A mask is a single-channel PNG (8 or 16 bit; an RGB mask
whose three channels are equal is accepted; a palette PNG, as PASCAL VOC and most annotation
tools write, gives its palette indices) of the image's size whose pixel values are label
values.  An optional ``split.txt`` (``NAME train|val|test`` lines, any case) assigns pairs to
splits, otherwise every pair trains; a name there with no image is refused (a misspelt test
image would be trained on).  Text files may carry a byte-order mark.

Errors name the file, never a value read from it: a mask value beyond ``classes.txt``, a mask
of another size, an image without a mask.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np

from echomeasure.errors import InvalidInputError
from echomeasure.training.seg_train import SegSample, slug

_NUMBERED = re.compile(r"^(\d+)\s*[:=,\s]\s*(\S.*)$")


def read_classes(path: Path) -> tuple[str, ...]:
    """Class names in label-value order; the first is returned as ``background``."""
    if not path.is_file():
        raise InvalidInputError(f"{path}: not found; a mask folder needs a classes.txt (one class name per line)")
    names: list[str] = []
    blank: int | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8-sig", errors="replace").splitlines(), start=1):
        line = line.strip()
        if line.startswith("#"):
            continue
        if not line:
            blank = blank or (number if names else None)
            continue
        if blank is not None:  # which label value would the blank line's class have had?
            raise InvalidInputError(f"{path}: line {blank} is blank between classes; name every label value, one per line")
        m = _NUMBERED.match(line)
        if m:
            if int(m.group(1)) != len(names):
                raise InvalidInputError(f"{path}: class values must be 0, 1, 2, ... in order")
            line = m.group(2).strip()
        names.append(slug(line).replace("-", "_"))
    if len(names) < 2:
        raise InvalidInputError(f"{path}: needs the background and at least one structure")
    if "background" in names[1:]:
        raise InvalidInputError(f"{path}: the background must be the first class (label value 0)")
    if len(set(names[1:])) != len(names) - 1:
        raise InvalidInputError(f"{path}: class names must be distinct")
    return ("background", *names[1:])


def _read_png(path: Path, flags: int) -> np.ndarray:
    arr = cv2.imread(str(path), flags)
    if arr is None:
        raise InvalidInputError(f"{path}: not a readable image")
    return arr


def _read_mask(path: Path) -> np.ndarray:
    """A label mask's values: a palette PNG (PASCAL VOC, CVAT and most annotation tools) gives
    its palette indices, any other PNG its pixel values (8 or 16 bit)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode == "P":
                return np.asarray(im)
    except (OSError, UnidentifiedImageError, ValueError):
        raise InvalidInputError(f"{path}: not a readable image") from None
    return _read_png(path, cv2.IMREAD_UNCHANGED)


def _pairs(root: Path) -> list[tuple[str, Path, Path]]:
    if (root / "images").is_dir():
        images = sorted(p for p in (root / "images").iterdir() if p.suffix.lower() == ".png")
        pairs = [(p.stem, p, root / "masks" / p.name) for p in images]
    else:
        images = sorted(p for p in root.iterdir() if p.suffix.lower() == ".png" and not p.stem.endswith("_mask"))
        pairs = [(p.stem, p, p.with_name(f"{p.stem}_mask{p.suffix}")) for p in images]
    for _, img, mask in pairs:
        if not mask.is_file():
            raise InvalidInputError(f"{img}: no label mask beside it (expected {mask.name})")
    return pairs


def read_mask_folder(root: str | os.PathLike[str], split: str | None = None) -> tuple[list[SegSample], tuple[str, ...], str]:
    """``(samples, classes, view name)`` of a mask folder; the view is named from the folder.

    Raises
    ------
    InvalidInputError
        No folder, no classes.txt, no pairs, an image without a mask, a mask of another size or
        with label values outside classes.txt (the error names the mask file).
    """
    root = Path(root)
    if not root.is_dir():
        raise InvalidInputError(f"{root}: not a folder of image + mask PNG pairs")
    classes = read_classes(root / "classes.txt")
    splits: dict[str, str] = {}
    split_file = root / "split.txt"
    split_lines: dict[str, int] = {}
    if split_file.is_file():
        lines = split_file.read_text(encoding="utf-8-sig", errors="replace").splitlines()
        for number, line in enumerate(lines, start=1):
            parts = line.split()
            if len(parts) == 2 and parts[1].lower() in ("train", "val", "test"):
                splits[parts[0]] = parts[1].lower()
                split_lines[parts[0]] = number
            elif parts:
                raise InvalidInputError(f"{split_file}: lines must read 'NAME train|val|test'")
    pairs = _pairs(root)
    if not pairs:
        raise InvalidInputError(f"{root}: no PNG images found (images/ + masks/, or NAME.png + NAME_mask.png)")
    unknown = sorted(split_lines[n] for n in set(splits) - {name for name, _, _ in pairs})
    if unknown:  # a misspelt name would silently train on an image meant for testing
        raise InvalidInputError(f"{split_file}: line {unknown[0]} names no image of the folder")
    samples = []
    for name, img_path, mask_path in pairs:
        s = splits.get(name, "train")
        if split is not None and s != split:
            continue
        image = cv2.cvtColor(_read_png(img_path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        mask = _read_mask(mask_path)
        if mask.ndim == 3:
            if mask.shape[2] not in (3, 4) or not (np.array_equal(mask[..., 0], mask[..., 1])
                                                 and np.array_equal(mask[..., 0], mask[..., 2])):
                raise InvalidInputError(f"{mask_path}: a label mask must be single-channel (grey) label values")
            mask = mask[..., 0]
        if mask.shape != image.shape[:2]:
            raise InvalidInputError(f"{mask_path}: mask size differs from its image")
        if int(mask.max()) >= len(classes):
            hint = ""
            if len(classes) == 2 and set(np.unique(mask).tolist()) <= {0, 255}:
                hint = "; a black-and-white mask must store its structure as 1, not 255"
            raise InvalidInputError(f"{mask_path}: label values outside classes.txt (0-{len(classes) - 1}){hint}")
        samples.append(SegSample(case=name, view=slug(root.resolve().name), phase=None, image=image,
                                 labels=mask.astype(np.uint8), cm_per_px=None, split=s))
    return samples, classes, slug(root.resolve().name)


def model_name(view: str) -> str:
    """Registry name of the segmentation model of a custom view."""
    return f"{view}-seg"
