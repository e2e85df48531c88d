"""Region boxes that do not fit the image (real vendor files): the 2D models look at the region cut
at the image edge, every model the same box, and a region wholly outside the image is left out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from echomeasure.cli import main
from echomeasure.ingest.clip import Region
from echomeasure.models.preprocess import Box, region_box_2d
from echomeasure.models.segmentation import image_box

PROJECT = Path(__file__).resolve().parent.parent


def _region(x0, y0, x1, y1, data_type=1, spatial_format=1):
    return Region(x0=x0, y0=y0, x1=x1, y1=y1, spatial_format=spatial_format, data_type=data_type, units_x=3, units_y=3,
                  delta_x=0.04, delta_y=0.04)


def test_a_region_past_the_edge_is_cut_at_the_edge():
    # pydicom's examples_palette.dcm: a region ending at y 518 on a 350-row image; OB files: x 800 on 800 columns
    assert region_box_2d([_region(10, 20, 800, 518)], 350, 800) == Box(10, 20, 799, 349)
    assert image_box([_region(10, 20, 800, 518)], (350, 800)) == (10, 20, 799, 349)


def test_a_region_wholly_outside_the_image_is_left_out():
    assert region_box_2d([_region(900, 0, 1000, 100)], 350, 800) is None
    assert image_box([_region(900, 0, 1000, 100)], (350, 800)) == (0, 0, 799, 349)  # the whole frame
    inside = _region(0, 0, 99, 99)
    assert region_box_2d([_region(900, 0, 5000, 5000), inside], 350, 800) == Box(0, 0, 99, 99)


def test_the_largest_tissue_region_is_chosen_by_keypoints_and_segmentation_alike():
    small_tissue, big_flow = _region(0, 0, 99, 99, data_type=1), _region(0, 0, 299, 299, data_type=2)
    doppler = _region(0, 0, 799, 349, spatial_format=3)
    assert region_box_2d([big_flow, small_tissue, doppler], 350, 800) == Box(0, 0, 99, 99)
    assert image_box([big_flow, small_tissue, doppler], (350, 800)) == (0, 0, 99, 99)
    assert region_box_2d([big_flow], 350, 800) == Box(0, 0, 299, 299)


@pytest.mark.parametrize("name", ["examples_palette.dcm"])
def test_a_real_file_whose_region_reaches_past_the_image_is_measured(name, capsys):
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    r = ds.SequenceOfUltrasoundRegions[0]
    assert int(r.RegionLocationMaxY1) >= int(ds.Rows) or int(r.RegionLocationMaxX1) >= int(ds.Columns)  # the premise
    assert main(["measure", "-q", path]) == 0, capsys.readouterr().err
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "2d" and isinstance(doc["measurements"], list)


def test_an_oversized_region_on_a_shipped_example_gives_the_whole_image_box(tmp_path, capsys):
    ds = pydicom.dcmread(PROJECT / "examples" / "case_0000.dcm")
    for r in ds.SequenceOfUltrasoundRegions:
        r.RegionLocationMaxX1, r.RegionLocationMaxY1 = 5000, 5000
    path = tmp_path / "oversized.dcm"
    ds.save_as(path)
    assert main(["measure", "-q", "--only", "ivsd", str(path)]) == 0, capsys.readouterr().err
    doc = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in doc["measurements"]] == ["ivsd"] and np.isfinite(doc["measurements"][0]["value"])
