"""EchoNet-Dynamic as users hold it after a spreadsheet or a script touched it, and as an attacker
could shape it: byte-order marks, short rows, duplicated videos, non-finite or misplaced tracings,
file names that leave ``Videos/``.

The dataset is fabricated at test time in the published layout (:mod:`seg_dataset_fixtures`);
bad input must give one ``error:`` line naming the CSV (and the line), exit 2, and register nothing.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from seg_dataset_fixtures import train_refused, write_echonet_dynamic

from echomeasure.training.echonet_dynamic import read_echonet_dynamic


@pytest.fixture()
def root(tmp_path) -> Path:
    folder = tmp_path / "EchoNet-Dynamic"
    write_echonet_dynamic(folder)
    return folder


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def _write(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def _refused(capsys, weights: Path, root: Path, *needles: str, **kwargs) -> str:
    """``train --dataset echonet-dynamic`` on ``root``: refused in one line, nothing registered."""
    return train_refused(capsys, weights, "echonet-dynamic", root, *needles, **kwargs)


def test_csvs_saved_by_a_spreadsheet_with_a_byte_order_mark_are_read(root):
    for name in ("FileList.csv", "VolumeTracings.csv"):
        path = root / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    assert len(read_echonet_dynamic(root)) == 6


def test_a_short_filelist_row_is_refused_naming_its_line(root, weights, capsys):
    rows = _rows(root / "FileList.csv")
    rows[2] = rows[2][:4]  # a row cut short: Split would read as empty, values shift
    _write(root / "FileList.csv", rows)
    _refused(capsys, weights, root, str(root / "FileList.csv"), "line 3", "fewer fields")


def test_a_video_listed_twice_is_refused(root, weights, capsys):
    rows = _rows(root / "FileList.csv")
    twin = list(rows[1])
    twin[-1] = "TEST"  # the same video in train and test: test frames would be trained on
    _write(root / "FileList.csv", [*rows, twin])
    _refused(capsys, weights, root, str(root / "FileList.csv"), f"line {len(rows) + 1}", "line 2")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_tracing_coordinates_are_refused(root, weights, capsys, value):
    rows = _rows(root / "VolumeTracings.csv")
    rows[3][1] = value
    _write(root / "VolumeTracings.csv", rows)
    _refused(capsys, weights, root, str(root / "VolumeTracings.csv"), "line 4", "finite")


def test_a_tracing_outside_its_video_is_refused(root, weights, capsys):
    # tracings drawn at another resolution than the 112x112 videos: the mask would be clipped or empty
    rows = _rows(root / "VolumeTracings.csv")
    for r in rows[1:]:
        if r[0] == "0X2B.avi":
            r[1:5] = [str(4 * float(v)) for v in r[1:5]]
    _write(root / "VolumeTracings.csv", rows)
    _refused(capsys, weights, root, str(root / "VolumeTracings.csv"), "0X2B.avi", "outside its 112x112 video")


def test_a_non_finite_ef_is_refused(root, weights, capsys):
    # an empty or NaN EF is a missing published figure (left out of that comparison, see
    # test_seg_datasets.test_echonet_dynamic_a_missing_ef_leaves_only_the_published_figure_out)
    rows = _rows(root / "FileList.csv")
    rows[1][1] = "inf"
    _write(root / "FileList.csv", rows)
    _refused(capsys, weights, root, str(root / "FileList.csv"), "line 2", "EF/EDV/ESV")


@pytest.mark.parametrize("name", ["../../outside", "/tmp/outside", "sub/0X1A"])
def test_a_file_name_leaving_videos_is_refused(root, weights, capsys, name):
    outside = root.parent / "outside.avi"
    shutil.copy(root / "Videos" / "0X1A.avi", outside)
    for csv_name, suffix in (("FileList.csv", ""), ("VolumeTracings.csv", ".avi")):
        rows = _rows(root / csv_name)
        for r in rows[1:]:
            if r[0] == f"0X1A{suffix}":
                r[0] = f"{name}{suffix}"
        _write(root / csv_name, rows)
    line = _refused(capsys, weights, root, "FileName must be a video's file name")
    assert "outside" not in line and "sub/" not in line


def test_an_oversized_csv_field_is_one_error_line(root, weights, capsys):
    path = root / "VolumeTracings.csv"
    path.write_bytes(path.read_bytes() + b'"' + b"x" * 200_000 + b'"\n')
    _refused(capsys, weights, root, str(path), "not a readable CSV")
