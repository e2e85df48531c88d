"""EchoNet-LVH: reading the published layout, ``evaluate --dataset``, ``train --dataset``, bad input.

The dataset is fabricated at test time in exactly the published format (two AVI videos, the
MeasurementsList.csv header with its unnamed index column and X1,X2,Y1,Y2 order); the videos are
synthetic PLAX cines, so the labelled lines are the true calipers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from echonet_fixtures import copy_shipped_plax_linear, rewrite_csv, write_echonet_lvh

from echomeasure.cli import main
from echomeasure.errors import InvalidInputError
from echomeasure.models import registry
from echomeasure.training import echonet_lvh as lvh


@pytest.fixture(scope="module")
def lvh_root(tmp_path_factory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("echonet-lvh") / "EchoNet-LVH"
    return root, write_echonet_lvh(root)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One cache (ONNX graphs, decoded training frames) for the module: exports happen once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture()
def weights(tmp_path, monkeypatch, shared_cache) -> Path:
    folder = tmp_path / "weights"
    copy_shipped_plax_linear(folder)
    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(folder))
    monkeypatch.setenv("ECHOMEASURE_CACHE", str(shared_cache))
    return folder


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_read_lvh_orders_ends_by_depth_and_derives_cm_per_px_from_each_line(lvh_root):
    root, truth = lvh_root
    data = lvh.read_lvh(root)
    assert data.splits() == {"train": 1, "test": 1}
    for video, fabricated in zip(data.videos, truth, strict=True):
        assert video.name == fabricated.name and video.path.parent.name == fabricated.batch
        assert video.frames == sorted({fabricated.ed, fabricated.es})
        assert {ln.measurement for ln in video.lines} == {"ivsd", "lvidd", "lvpwd", "lvids"}
        for ln in video.lines:
            assert ln.start[1] <= ln.end[1]  # the shallower end first, whatever the CSV's order
            assert ln.cm_per_px == pytest.approx(fabricated.cm_per_px, rel=2e-3)
    # the first CSV row lists the deeper end first: it was swapped
    first = data.videos[0].lines[0]
    assert first.row == 1 and first.measurement == "ivsd"
    # the diastolic chain shares its keypoints: IVS ends where LVID starts
    ed_lines = [ln for ln in data.videos[0].lines if ln.frame == truth[0].ed]
    kp = lvh.frame_keypoints(ed_lines)
    assert np.isfinite(kp[:4]).all() and np.isnan(kp[4:]).all()
    ivs = next(ln for ln in ed_lines if ln.measurement == "ivsd")
    assert np.allclose(kp[1], ivs.end, atol=0.02)


def test_evaluate_prints_the_error_per_measurement(lvh_root, weights, capsys):
    root, _ = lvh_root
    rc, out, err = _run(capsys, "evaluate", "--dataset", "echonet-lvh", str(root), "--split", "test", "-q")
    assert rc == 0, err
    report = json.loads(out)
    assert {"dataset", "model", "n", "measurements", "dice"} <= set(report)  # docs/architecture.md's keys
    assert report["dice"] == {}  # calipers only: nothing segmented
    assert report["dataset"] == "echonet-lvh" and report["n"] == 1 and report["split"] == "test"
    assert "CalcValue" in report["calibration"]
    entry = registry.get_entry("plax-linear", None, weights)
    assert report["model"] == {"name": "plax-linear", "version": entry.version, "sha256": entry.sha256}
    assert set(report["measurements"]) == {"ivsd", "lvidd", "lvpwd", "lvids"}
    for m in report["measurements"].values():
        assert {"mae_mm", "median_mm", "gross", "n"} <= set(m) and m["n"] == 1
    # the shipped model lands on these synthetic PLAX frames: typical errors of a millimetre or two
    assert np.median([m["mae_mm"] for m in report["measurements"].values()]) < 3.0


def test_evaluate_with_the_project_weights_folder(lvh_root, shared_cache, monkeypatch):
    """The shipped folder also holds the view classifier: labelled frames are still measured."""
    from echomeasure import config

    monkeypatch.setenv("ECHOMEASURE_CACHE", str(shared_cache))
    root, _ = lvh_root
    report = lvh.evaluate_lvh(root, split="test", weights_dir=config.PROJECT_ROOT / "weights", progress=False)
    assert all(m["failed"] == 0 and m["n"] == 1 for m in report["measurements"].values())


def test_evaluate_compares_against_the_labels(lvh_root, weights, tmp_path):
    """Moving one labelled line (same CalcValue, a longer pixel line) changes only its error."""
    root, truth = lvh_root
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    before = lvh.evaluate_lvh(moved, split="test", progress=False)
    data = lvh.read_lvh(moved)
    video = data.split("test")[0]
    ivs = next(ln for ln in video.lines if ln.measurement == "ivsd")
    # same caliper line but twice as long in pixels: its cm/px halves, so the proposal's value halves
    import csv

    rows = list(csv.reader((moved / "MeasurementsList.csv").read_text().splitlines()))
    row = rows[ivs.row]
    x1, x2, y1, y2 = (float(v) for v in row[5:9])
    row[6], row[8] = str(x2 + (x2 - x1)), str(y2 + (y2 - y1))
    with open(moved / "MeasurementsList.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    after = lvh.evaluate_lvh(moved, split="test", progress=False)
    # the clip's scale (the median over the video's lines) moves a little with the IVS line, and the
    # edge search windows are in mm: the other measurements move by at most hundredths of a mm
    for key in ("mae_mm", "median_mm", "bias_mm"):
        assert after["measurements"]["lvidd"][key] == pytest.approx(before["measurements"]["lvidd"][key], abs=0.05)
    # the proposal's pixel length is unchanged; converted with half the cm/px it measures half as much
    value_mm = ivs.value_cm * 10.0
    expected_mae = abs((before["measurements"]["ivsd"]["bias_mm"] + value_mm) / 2.0 - value_mm)
    assert after["measurements"]["ivsd"]["mae_mm"] == pytest.approx(expected_mae, abs=0.01)
    assert after["measurements"]["ivsd"]["mae_mm"] > before["measurements"]["ivsd"]["mae_mm"] + 2.0


@pytest.mark.slow
def test_train_registers_a_plax_linear_version_trained_on_the_dataset(lvh_root, weights, capsys):
    root, _ = lvh_root
    active_before = registry.active_version("plax-linear", weights)
    parent_decode = registry.get_entry("plax-linear", active_before, weights).decode
    manifest_before = _manifest_bytes(weights)
    # a run stopped by the wall-time limit registers nothing and says how to resume
    rc, out, err = _run(capsys, "train", "--dataset", "echonet-lvh", str(root), "--steps", "3", "--max-minutes", "0", "-q")
    assert rc == 2 and out == "" and "resume" in err and _manifest_bytes(weights) == manifest_before
    rc, out, err = _run(capsys, "train", "--dataset", "echonet-lvh", str(root), "--steps", "3", "-q")
    assert rc == 0, err
    result = json.loads(out)
    entry = registry.get_entry("plax-linear", result["version"], weights)
    assert entry.parent == active_before and result["version"].startswith(f"{active_before}-lvh")
    assert "EchoNet-LVH train split: 1 videos, 2 labelled frames" in entry.trained_on
    assert entry.extra["training_data"]["calibration"] == lvh.CALIBRATION_NOTE
    assert entry.extra["evaluation"]["split"] == "test" and entry.metric("ivsd_n", lvh.DATASET) == 1
    assert list(entry.metrics) == [lvh.DATASET] and entry.decode == parent_decode
    assert registry.verify_file(entry, weights).is_file()
    assert registry.active_version("plax-linear", weights) == active_before  # not activated unasked
    # the new version is selectable by name:version
    rc, out, err = _run(capsys, "evaluate", "--dataset", "echonet-lvh", str(root), "--model",
                        f"plax-linear:{entry.version}", "-q")
    assert rc == 0 and json.loads(out)["model"]["version"] == entry.version


def _manifest_bytes(folder: Path) -> bytes:
    return (folder / "manifest.json").read_bytes()


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_missing_column_is_a_one_line_error_and_nothing_is_registered(command, lvh_root, weights, tmp_path, capsys):
    root, _ = lvh_root
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    rewrite_csv(bad, drop_column="CalcValue")
    before = _manifest_bytes(weights)
    rc, out, err = _run(capsys, command, "--dataset", "echonet-lvh", str(bad), "-q")
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert str(bad / "MeasurementsList.csv") in err and "CalcValue" in err
    assert _manifest_bytes(weights) == before and not list(weights.glob("*lvh*"))


def test_a_listed_video_that_is_absent_is_a_one_line_error(lvh_root, weights, tmp_path, capsys):
    root, truth = lvh_root
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    (bad / truth[1].batch / f"{truth[1].name}.avi").unlink()
    before = _manifest_bytes(weights)
    rc, out, err = _run(capsys, "train", "--dataset", "echonet-lvh", str(bad), "--steps", "1", "-q")
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert f"{truth[1].name}.avi" in err and "MeasurementsList.csv" in err
    assert _manifest_bytes(weights) == before


def test_other_bad_dataset_input(lvh_root, weights, tmp_path, capsys):
    root, truth = lvh_root
    rc, _, err = _run(capsys, "evaluate", "--dataset", "echonet-lvh", str(tmp_path / "nowhere"), "-q")
    assert rc == 2 and str(tmp_path / "nowhere") in err
    rc, _, err = _run(capsys, "evaluate", "--dataset", "echonet-lvh", str(root), "--split", "val", "-q")
    assert rc == 2 and "no videos in split 'val'" in err
    rc, _, err = _run(capsys, "evaluate", "--dataset", "nosuchset", str(root), "-q")
    assert rc == 2 and "unknown dataset" in err
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    rewrite_csv(bad, extra_row=[8, truth[0].name, "IVSd", "abc", 0, 1, 2, 3, 4, 12, 30, 320, 240, "train"])
    rc, _, err = _run(capsys, "evaluate", "--dataset", "echonet-lvh", str(bad), "-q")
    assert rc == 2 and "row 9" in err and "abc" not in err


def test_a_video_cut_after_a_first_run_is_read_again_not_taken_from_the_cache(lvh_root, weights, tmp_path, capsys):
    """The decoded frames were cached by the CSV and the videos' names only: a train video cut (or
    replaced) under the same name was silently trained on with its old frames, exit 0."""
    root, _ = lvh_root
    rc, _, err = _run(capsys, "train", "--dataset", "echonet-lvh", str(root), "--steps", "2", "-q")
    assert rc == 0, err  # fills the cache
    copy = tmp_path / "EchoNet-LVH"
    shutil.copytree(root, copy)
    train = next(v for v in lvh.read_lvh(copy).videos if v.split == "train")
    data = train.path.read_bytes()
    train.path.write_bytes(data[: len(data) // 20])
    manifest_before = _manifest_bytes(weights)
    rc, out, err = _run(capsys, "train", "--dataset", "echonet-lvh", str(copy), "--steps", "2", "-q")
    assert rc == 2 and out == "" and train.name in err and _manifest_bytes(weights) == manifest_before


def test_activate_needs_a_split_to_measure_the_new_version_on(tmp_path, weights, capsys):
    """With only a train split the version was registered unmeasured and, with --activate, made
    active (weights list: "not measured here")."""
    root = tmp_path / "train-only"
    write_echonet_lvh(root, seeds=(4242,), splits=("train",))
    manifest_before = _manifest_bytes(weights)
    rc, out, err = _run(capsys, "train", "--dataset", "echonet-lvh", str(root), "--steps", "2", "--activate", "-q")
    assert rc == 2 and out == "" and "--activate needs a val or test split" in err
    assert _manifest_bytes(weights) == manifest_before  # refused before anything was trained


def test_a_video_in_two_batch_folders_is_refused_not_guessed(lvh_root, tmp_path, capsys):
    """The first of two same-named videos was used silently (a trial put a wrong one there: MAE 5.8 mm)."""
    root, _ = lvh_root
    copy = tmp_path / "EchoNet-LVH"
    shutil.copytree(root, copy)
    video = next(iter(lvh.read_lvh(copy).videos))
    other = copy / "Batch4"
    other.mkdir(exist_ok=True)
    shutil.copy(video.path, other / video.path.name)
    rc, out, err = _run(capsys, "evaluate", "--dataset", "echonet-lvh", str(copy), "-q")
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert f"{video.name}.avi, which is in 2 folders" in err and "Batch4/" in err


def test_a_file_or_an_empty_csv_says_what_it_is(lvh_root, tmp_path, capsys):
    root, _ = lvh_root
    rc, _, err = _run(capsys, "evaluate", "--dataset", "echonet-lvh", str(root / "MeasurementsList.csv"), "-q")
    assert rc == 2 and "is a file; give the EchoNet-LVH folder" in err  # was "no such folder"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "MeasurementsList.csv").write_text("")
    rc, _, err = _run(capsys, "evaluate", "--dataset", "echonet-lvh", str(empty), "-q")
    assert rc == 2 and "no EchoNet-LVH header" in err and err.count("HashedFileName") == 1  # listed once


@pytest.mark.parametrize("cell", ["", "NaN", "nan"])
@pytest.mark.parametrize("column", ["Frame", "X1", "CalcValue"])
def test_a_row_with_a_missing_number_is_skipped_however_the_writer_spelt_it(lvh_root, tmp_path, column, cell):
    """pandas writes a missing value as an empty cell, other tools as NaN: the row is skipped and
    counted either way (an empty Frame or X1 refused the whole dataset, 'NaN' in X1 did not)."""
    root, truth = lvh_root
    bad = tmp_path / "missing"
    shutil.copytree(root, bad)
    row = {"HashedFileName": truth[0].name, "Calc": "IVSd", "CalcValue": 1.0, "Frame": 0, "X1": 1, "X2": 2,
           "Y1": 3, "Y2": 40, "Frames": 12, "FPS": 30, "Width": 320, "Height": 240, "split": "train"}
    row[column] = cell
    rewrite_csv(bad, extra_row=[8, *row.values()])
    data = lvh.read_lvh(bad)
    assert data.skipped.get("missing_value") == 1
    assert sum(len(v.lines) for v in data.videos) == sum(len(v.lines) for v in lvh.read_lvh(root).videos)


def test_a_fractional_frame_is_refused_in_one_line_naming_the_row(lvh_root, tmp_path):
    """Frame 2.5 was truncated to frame 2 without a word (EchoNet-Dynamic's reader refuses it); 2.0,
    as a spreadsheet re-saves an integer column, is frame 2."""
    root, truth = lvh_root
    row = {"HashedFileName": truth[0].name, "Calc": "IVSd", "CalcValue": 1.0, "Frame": 2.5, "X1": 1, "X2": 2,
           "Y1": 3, "Y2": 40, "Frames": 12, "FPS": 30, "Width": 320, "Height": 240, "split": "train"}
    bad = tmp_path / "fractional"
    shutil.copytree(root, bad)
    rewrite_csv(bad, extra_row=[8, *row.values()])
    with pytest.raises(InvalidInputError) as exc:
        lvh.read_lvh(bad)
    message = str(exc.value)
    assert "Frame must be a whole frame number" in message and "2.5" not in message and "\n" not in message
    whole = tmp_path / "whole"
    shutil.copytree(root, whole)
    rewrite_csv(whole, extra_row=[8, *{**row, "Frame": "2.0"}.values()])
    def at_frame_2(folder):
        return sum(ln.frame == 2 for v in lvh.read_lvh(folder).videos for ln in v.lines)

    assert at_frame_2(whole) == at_frame_2(root) + 1
