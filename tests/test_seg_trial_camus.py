"""CAMUS as users hold it, and as an attacker could shape it: the legacy MetaImage release's
one-slice 3D headers, data files named outside the patient folder, absurd sizes, image and label
map that disagree, split lists written by other tools.

Datasets are fabricated at test time in the published layout (:mod:`seg_dataset_fixtures`); bad
input must give one ``error:`` line naming the file as found in the user's folder (never a value
read from a header), exit 2, and register nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from seg_dataset_fixtures import SPACING_Y_MM, train_refused, write_camus_legacy, write_camus_nifti

from echomeasure.errors import InvalidInputError
from echomeasure.training.camus import read_camus

pytest.importorskip("nibabel")

PATIENT = Path("database") / "training" / "patient0001"



def _refused(capsys, weights: Path, root: Path, *needles: str, **kwargs) -> str:
    """``train --dataset camus`` on ``root``: refused in one line, nothing registered."""
    return train_refused(capsys, weights, "camus", root, *needles, **kwargs)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def _as_one_slice_3d(mhd: Path) -> None:
    """Rewrite a 2D header the way the CAMUS release stores ED/ES frames: NDims 3, DimSize W H 1."""
    text = mhd.read_text()
    text = re.sub(r"NDims = 2", "NDims = 3", text)
    text = re.sub(r"TransformMatrix = .*", "TransformMatrix = 1 0 0 0 1 0 0 0 1", text)
    text = re.sub(r"Offset = .*", "Offset = 0 0 0", text)
    text = re.sub(r"CenterOfRotation = .*", "CenterOfRotation = 0 0 0", text)
    text = re.sub(r"(ElementSpacing = \S+ \S+)", r"\1 1", text)
    text = re.sub(r"(DimSize = \d+ \d+)", r"\1 1", text)
    mhd.write_text(text)


def test_legacy_frames_stored_as_one_slice_volumes_read_as_2d(tmp_path):
    root = tmp_path / "CAMUS"
    truth = write_camus_legacy(root, training=(1,), testing=())
    for mhd in (root / PATIENT).glob("*_E[DS]*.mhd"):
        _as_one_slice_3d(mhd)
    samples = read_camus(root)
    assert len(samples) == 4
    for s in samples:
        stored = truth[f"{s.case}/{'2CH' if s.view == 'a2c' else '4CH'}/{s.phase.upper()}"]
        assert s.labels.shape[0] == stored["labels"].shape[0] and s.labels.ndim == 2
        assert s.cm_per_px == pytest.approx(SPACING_Y_MM / 10)


@pytest.mark.parametrize("target", ["../../../../outside.raw", "{outside}", "/dev/zero", "sub/patient0001_2CH_ED.raw"])
def test_a_header_naming_a_data_file_outside_its_folder_is_refused(tmp_path, weights, capsys, target):
    root = tmp_path / "CAMUS"
    write_camus_legacy(root, training=(1,), testing=())
    outside = tmp_path / "outside.raw"
    outside.write_bytes(bytes(range(256)) * 100)  # would pass for an image if it were read
    (root / PATIENT / "sub").mkdir()
    mhd = root / PATIENT / "patient0001_2CH_ED.mhd"
    target = target.format(outside=outside)
    _edit(mhd, "ElementDataFile = patient0001_2CH_ED.raw", f"ElementDataFile = {target}")
    _refused(capsys, weights, root, str(mhd), "ElementDataFile", absent=("outside", "/dev", "sub/"))


def test_a_data_file_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path, weights, capsys):
    root = tmp_path / "CAMUS"
    write_camus_legacy(root, training=(1,), testing=())
    raw = root / PATIENT / "patient0001_2CH_ED.raw"
    raw.unlink()
    raw.mkdir()
    _refused(capsys, weights, root, str(root / PATIENT / "patient0001_2CH_ED.mhd"), "not a regular file")


@pytest.mark.parametrize(("old", "new", "needle"), [
    ("DimSize = 40 96", "DimSize = 4000000000 4000000000", "larger than"),
    ("DimSize = 40 96", "DimSize = -40 -96", "negative size"),
    ("DimSize = 40 96", "DimSize = 0 96", "empty"),
    ("ElementDataFile", "HeaderSize = abc\nElementDataFile", "garbles"),
    ("ElementDataFile", "ElementNumberOfChannels = 3\nElementDataFile", "grey"),
])
def test_absurd_metaimage_headers_are_one_error_line(tmp_path, weights, capsys, old, new, needle):
    root = tmp_path / "CAMUS"
    write_camus_legacy(root, training=(1,), testing=())
    mhd = root / PATIENT / "patient0001_2CH_ED.mhd"
    _edit(mhd, old, new)
    _refused(capsys, weights, root, str(mhd), needle)


def test_header_size_minus_one_and_a_unicode_data_file_name_are_read(tmp_path):
    root = tmp_path / "CAMUS"
    truth = write_camus_legacy(root, training=(1,), testing=())
    mhd = root / PATIENT / "patient0001_2CH_ED.mhd"
    raw = root / PATIENT / "patient0001_2CH_ED.raw"
    (root / PATIENT / "données é.raw").write_bytes(b"\x07" * 33 + raw.read_bytes())  # data at the end
    raw.unlink()
    _edit(mhd, "ElementDataFile = patient0001_2CH_ED.raw", "HeaderSize = -1\nElementDataFile = données é.raw")
    mhd.write_bytes(mhd.read_text().encode("utf-8"))
    (ed,) = [s for s in read_camus(root) if s.view == "a2c" and s.phase == "ed"]
    stored = truth["patient0001/2CH/ED"]["image"]
    assert ed.image.shape[0] == stored.shape[0]
    assert np.abs(ed.image[:, ::2].astype(int) - stored.astype(int)).mean() < 8  # same pixels, x resampled


def test_label_map_with_another_spacing_or_orientation_than_its_image_is_refused(tmp_path, weights, capsys):
    root = tmp_path / "CAMUS"
    write_camus_legacy(root, training=(1,), testing=())
    gt = root / PATIENT / "patient0001_4CH_ES_gt.mhd"
    _edit(gt, "ElementSpacing = 0.6 0.3", "ElementSpacing = 0.3 0.3")
    _refused(capsys, weights, root, str(gt), "spacing or orientation")
    _edit(gt, "ElementSpacing = 0.3 0.3", "ElementSpacing = 0.6 0.3")
    _edit(gt, "TransformMatrix = 1 0 0 1", "TransformMatrix = -1 0 0 1")
    _refused(capsys, weights, root, str(gt), "spacing or orientation")


def test_nan_in_a_label_map_is_refused(tmp_path):
    import nibabel as nib

    root = tmp_path / "CAMUS"
    write_camus_nifti(root, patients=(1,), splits={"training": [1]})
    gt = root / "database_nifti" / "patient0001" / "patient0001_2CH_ED_gt.nii.gz"
    nii = nib.load(str(gt))
    arr = np.asanyarray(nii.dataobj).astype(np.float32)
    arr[0, 0] = np.nan
    nib.save(nib.Nifti1Image(arr, nii.affine), str(gt))  # float32 on disk, zooms from the affine
    with pytest.raises(InvalidInputError, match="label values outside"):
        read_camus(root)


def test_split_lists_and_info_files_from_other_editors(tmp_path, weights, capsys):
    import nibabel as nib

    root = tmp_path / "CAMUS"
    write_camus_nifti(root)
    split = root / "database_split"
    # a byte-order mark and CRLF line ends (Windows editors), an uncompressed .nii, an EF of nan
    (split / "subgroup_training.txt").write_bytes(b"\xef\xbb\xbfpatient0001\r\n")
    folder = root / "database_nifti" / "patient0001"
    cfg = folder / "Info_2CH.cfg"
    cfg.write_bytes(b"\xef\xbb\xbf" + cfg.read_text().replace("EF: 56.0", "EF: nan").encode().replace(b"\n", b"\r\n"))
    gz = folder / "patient0001_4CH_ES.nii.gz"
    nib.save(nib.load(str(gz)), str(folder / "patient0001_4CH_ES.nii"))
    gz.unlink()
    samples = read_camus(root)
    assert {s.case for s in samples if s.split == "train"} == {"patient0001"}
    assert all("ef" not in s.reported for s in samples if s.case == "patient0001" and s.view == "a2c")
    assert all(s.reported["ef"] == pytest.approx(56.0) for s in samples if s.case == "patient0001" and s.view == "a4c")
    # one patient in two subgroups: the split is ambiguous (a test patient could be trained on)
    (split / "subgroup_testing.txt").write_text("patient0003\npatient0001\n")
    _refused(capsys, weights, root, str(split / "subgroup_testing.txt"), "another subgroup")
