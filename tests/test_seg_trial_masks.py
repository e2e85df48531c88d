"""Mask folders as annotation tools and people write them: palette PNGs, black-and-white masks,
``classes.txt`` with blank lines or the background last, ``split.txt`` with typos or upper case.

Folders are fabricated at test time (:mod:`seg_dataset_fixtures`); bad input must give one
``error:`` line naming the file, exit 2, and register nothing.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from seg_dataset_fixtures import train_refused, write_mask_folder

from echomeasure.training.mask_folder import read_mask_folder


@pytest.fixture()
def root(tmp_path) -> Path:
    folder = tmp_path / "thigh"
    write_mask_folder(folder)
    return folder


def _refused(capsys, weights: Path, root: Path, *needles: str, **kwargs) -> str:
    """``train --dataset masks`` on ``root``: refused in one line, nothing registered."""
    return train_refused(capsys, weights, "masks", root, *needles, **kwargs)


def test_a_palette_png_mask_gives_its_palette_indices(root):
    path = root / "masks" / "slice_01.png"
    values = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    im = Image.fromarray(values, mode="P")
    im.putpalette([0, 0, 0, 200, 30, 30, 30, 200, 30] + [0] * (256 * 3 - 9))  # VOC-style colours
    im.save(path)
    samples, _, _ = read_mask_folder(root)
    (s,) = [s for s in samples if s.case == "slice_01"]
    assert np.array_equal(s.labels, values)


def test_a_black_and_white_mask_is_refused_with_a_hint(tmp_path, weights, capsys):
    root = tmp_path / "plaque"
    write_mask_folder(root, classes=("background", "plaque"))
    path = root / "masks" / "slice_02.png"
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(path), (m > 0).astype(np.uint8) * 255)
    _refused(capsys, weights, root, str(path), "outside classes.txt", "as 1, not 255")


@pytest.mark.parametrize(("text", "needle"), [
    ("background\nmuscle\n\nfat\n", "line 3 is blank"),
    ("muscle\nfat\nbackground\n", "background must be the first class"),
])
def test_classes_txt_that_would_shift_label_values_is_refused(root, weights, capsys, text, needle):
    (root / "classes.txt").write_text(text)
    _refused(capsys, weights, root, str(root / "classes.txt"), needle)


def test_classes_txt_with_a_byte_order_mark_and_trailing_blank_lines_is_read(root):
    (root / "classes.txt").write_bytes(b"\xef\xbb\xbfbackground\r\nmuscle\r\nfat\r\n\r\n\r\n")
    assert read_mask_folder(root)[1] == ("background", "muscle", "fat")


def test_split_txt_naming_no_image_is_refused_and_case_is_ignored(root, weights, capsys):
    (root / "split.txt").write_text("slice_00 VAL\nslice_03 Test\n")
    samples, _, _ = read_mask_folder(root)
    assert {s.case: s.split for s in samples}["slice_00"] == "val"
    assert {s.case: s.split for s in samples}["slice_03"] == "test"
    (root / "split.txt").write_text("slice_00 val\nslice_3 test\n")  # typo: slice_03 would be trained on
    _refused(capsys, weights, root, str(root / "split.txt"), "line 2")
