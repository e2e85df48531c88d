"""Segmentation datasets users bring: CAMUS (NIfTI and legacy MetaImage), EchoNet-Dynamic, mask folders.

The datasets are fabricated at test time in exactly their published formats
(:mod:`seg_dataset_fixtures`); bad input must give one ``error:`` line naming the file, exit 2,
and register nothing.
"""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from seg_dataset_fixtures import (
    SPACING_X_MM,
    SPACING_Y_MM,
    write_camus_legacy,
    write_camus_nifti,
    write_echonet_dynamic,
    write_mask_folder,
)

from echomeasure.cli import main
from echomeasure.errors import InvalidInputError
from echomeasure.training.camus import read_camus
from echomeasure.training.echonet_dynamic import fill_polygon, read_echonet_dynamic, tracing_mask
from echomeasure.training.mask_folder import read_mask_folder

pytest.importorskip("nibabel")



def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _one_error_line(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


# --------------------------------------------------------------------------- CAMUS


def _check_camus(samples, truth, splits):
    assert len(samples) == len(truth)  # ED and ES of 2CH and 4CH per patient
    square = SPACING_Y_MM / 10.0
    for s in samples:
        code = "2CH" if s.view == "a2c" else "4CH"
        stored = truth[f"{s.case}/{code}/{s.phase.upper()}"]
        h, w_file = stored["labels"].shape
        # resampled to square pixels of the finer spacing: x stretched by SPACING_X / SPACING_Y
        assert s.cm_per_px == pytest.approx(square)
        assert s.image.shape == s.labels.shape == (h, round(w_file * SPACING_X_MM / SPACING_Y_MM))
        back = cv2.resize(s.labels, (w_file, h), interpolation=cv2.INTER_NEAREST)
        assert (back == stored["labels"]).mean() > 0.97  # same orientation (a transposed read fails)
        assert set(np.unique(s.labels)) == {0, 1, 2, 3}
        # the atrium lies below the cavity (rows grow downwards)
        assert np.nonzero(s.labels == 3)[0].mean() > np.nonzero(s.labels == 1)[0].mean()
        assert s.split == splits[s.case]
        assert "ef" in s.reported


def test_camus_nifti_release_reads_images_labels_spacing_and_splits(tmp_path):
    truth = write_camus_nifti(tmp_path / "CAMUS")
    samples = read_camus(tmp_path / "CAMUS")
    assert len(samples) == 12
    _check_camus(samples, truth, {"patient0001": "train", "patient0002": "val", "patient0003": "test"})
    ed = [s for s in samples if s.case == "patient0001" and s.view == "a4c"]
    assert {s.phase for s in ed} == {"ed", "es"}
    assert ed[0].reported["ef"] == pytest.approx(56.0)
    assert [s.case for s in read_camus(tmp_path / "CAMUS", "test")] == ["patient0003"] * 4


def test_camus_legacy_mhd_release_reads_the_same_way(tmp_path):
    truth = write_camus_legacy(tmp_path / "CAMUS")
    samples = read_camus(tmp_path / "CAMUS")
    assert len(samples) == 12
    _check_camus(samples, truth, {"patient0001": "train", "patient0002": "train", "patient0003": "test"})
    s = next(s for s in samples if s.case == "patient0003")
    assert s.reported["ef"] == pytest.approx(53.0)  # LVef of the legacy cfg


def test_camus_legacy_testing_patients_without_label_maps_are_left_out(tmp_path, caplog, weights, capsys):
    """The legacy release ships its testing patients without ``_gt`` files: the training split is
    still read (every patient with labels), a patient missing only some label maps is still refused."""
    root = tmp_path / "CAMUS"
    write_camus_legacy(root, training=(1, 2), testing=(3,))
    for gt in (root / "database" / "testing" / "patient0003").glob("*_gt.*"):
        gt.unlink()
    samples = read_camus(root)
    assert {s.case for s in samples} == {"patient0001", "patient0002"} and len(samples) == 8
    assert "patient0003" in caplog.text
    rc, out, err = _run(capsys, "evaluate", "--dataset", "camus", str(root), "--split", "test")
    assert rc == 2 and out == ""
    _one_error_line(err, str(root), "no patient of split test has label maps")
    one = root / "database" / "training" / "patient0002" / "patient0002_4CH_ES_gt.mhd"
    one.unlink()
    with pytest.raises(InvalidInputError, match="patient0002_4CH_ES_gt.mhd"):
        read_camus(root)


def test_camus_bad_input_is_one_error_line_naming_the_file(tmp_path, weights, capsys):
    root = tmp_path / "CAMUS"
    write_camus_nifti(root)
    before = sorted(p.name for p in weights.iterdir())
    # a cfg without ES
    cfg = root / "database_nifti" / "patient0002" / "Info_4CH.cfg"
    good_cfg = cfg.read_text()
    cfg.write_text("".join(ln + "\n" for ln in good_cfg.splitlines() if not ln.startswith("ES:")))
    rc, out, err = _run(capsys, "train", "--dataset", "camus", str(root), "--steps", "1")
    assert rc == 2 and out == ""
    _one_error_line(err, str(cfg), "ES")
    cfg.write_text(good_cfg)
    # an expected image absent
    gt = root / "database_nifti" / "patient0003" / "patient0003_2CH_ES_gt.nii.gz"
    gt.unlink()
    rc, out, err = _run(capsys, "evaluate", "--dataset", "camus", str(root))
    assert rc == 2
    _one_error_line(err, str(gt))
    # a patient listed in a split whose folder is absent
    shutil.rmtree(root / "database_nifti" / "patient0003")
    rc, out, err = _run(capsys, "train", "--dataset", "camus", str(root), "--steps", "1")
    assert rc == 2
    _one_error_line(err, "subgroup_testing.txt")
    # label values beyond the CAMUS classes
    import nibabel as nib

    lab_path = root / "database_nifti" / "patient0001" / "patient0001_4CH_ED_gt.nii.gz"
    nii = nib.load(str(lab_path))
    arr = np.asanyarray(nii.dataobj).copy()
    arr[0, 0] = 7
    nib.save(nib.Nifti1Image(arr, nii.affine, nii.header), str(lab_path))
    (root / "database_split" / "subgroup_testing.txt").write_text("")
    rc, out, err = _run(capsys, "train", "--dataset", "camus", str(root), "--steps", "1")
    assert rc == 2
    _one_error_line(err, str(lab_path))
    assert sorted(p.name for p in weights.iterdir()) == before


def test_mhd_reader_refuses_a_truncated_raw_file(tmp_path):
    write_camus_legacy(tmp_path / "CAMUS", training=(1,), testing=())
    raw = tmp_path / "CAMUS" / "database" / "training" / "patient0001" / "patient0001_2CH_ED.raw"
    raw.write_bytes(raw.read_bytes()[:-10])
    with pytest.raises(InvalidInputError, match="shorter than its header"):
        read_camus(tmp_path / "CAMUS")


# --------------------------------------------------------------------------- EchoNet-Dynamic


def test_fill_polygon_follows_scikit_image_polygon():
    # the example of skimage.draw.polygon's documentation, with its published output
    expected = np.zeros((10, 10), np.uint8)
    for r, cols in {1: [1], 2: range(2, 8), 3: range(2, 7), 4: range(3, 7), 5: range(3, 6), 6: [4, 5], 7: [4], 8: [4]}.items():
        expected[r, list(cols)] = 1
    got = fill_polygon(np.array([1, 2, 8]), np.array([1, 7, 4]), (10, 10))
    assert (got.astype(np.uint8) == expected).all()


def test_echonet_dynamic_masks_and_ed_by_area(tmp_path):
    root = tmp_path / "EchoNet-Dynamic"
    truth = write_echonet_dynamic(root)
    samples = read_echonet_dynamic(root)
    assert len(samples) == 6
    for s in samples:
        t = truth[s.case]
        rows = t["tracings"][t[s.phase]]
        assert s.image.shape == (112, 112, 3) and s.labels.shape == (112, 112)
        assert s.known == (1,) and s.cm_per_px is None and s.split == t["split"]
        # the outline is x1[1:] then reversed x2[1:]: the long axis row is not part of it
        x = np.r_[[r[0] for r in rows[1:]], [r[2] for r in rows[1:]][::-1]]
        y = np.r_[[r[1] for r in rows[1:]], [r[3] for r in rows[1:]][::-1]]
        expected = fill_polygon(np.rint(y), np.rint(x), (112, 112))
        assert (s.labels.astype(bool) == expected).all()
        assert (tracing_mask(rows, (112, 112)) == expected).all()
    # ED is the larger traced frame although the CSV lists ES first
    for name in truth:
        ed = next(s for s in samples if s.case == name and s.phase == "ed")
        es = next(s for s in samples if s.case == name and s.phase == "es")
        assert ed.labels.sum() > es.labels.sum()
        assert ed.reported["ef"] > 0
    assert {s.case for s in read_echonet_dynamic(root, "val")} == {"0X2B"}


@pytest.mark.parametrize("cell", ["", "NaN"])
def test_echonet_dynamic_a_missing_ef_leaves_only_the_published_figure_out(tmp_path, cell):
    """An empty EF cell (pandas' NaN) or NaN refused the whole dataset; the tracing is still usable."""
    import csv

    root = tmp_path / "EchoNet-Dynamic"
    write_echonet_dynamic(root)
    path = root / "FileList.csv"
    with path.open(newline="") as fh:
        table = list(csv.DictReader(fh))
    table[0]["EF"] = cell
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    samples = read_echonet_dynamic(root)
    first = [s for s in samples if s.case == table[0]["FileName"]]
    assert len(first) == 2 and all("ef" not in s.reported and "edv" in s.reported for s in first)
    assert all("ef" in s.reported for s in samples if s.case != table[0]["FileName"])
    table[0]["EF"] = "abc"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    with pytest.raises(InvalidInputError, match="line 2 has an EF/EDV/ESV that is not a number"):
        read_echonet_dynamic(root)


def test_echonet_dynamic_bad_input(tmp_path, weights, capsys):
    root = tmp_path / "EchoNet-Dynamic"
    write_echonet_dynamic(root)
    video = root / "Videos" / "0X3C.avi"
    video.unlink()
    rc, out, err = _run(capsys, "evaluate", "--dataset", "echonet-dynamic", str(root))
    assert rc == 2
    _one_error_line(err, str(video))
    text = (root / "FileList.csv").read_text().replace("NumberOfFrames,", "")
    (root / "FileList.csv").write_text(text)
    rc, out, err = _run(capsys, "train", "--dataset", "echonet-dynamic", str(root), "--steps", "1")
    assert rc == 2
    _one_error_line(err, "FileList.csv", "NumberOfFrames")
    assert list(weights.iterdir()) == []


# --------------------------------------------------------------------------- mask folder


def test_mask_folder_reads_pairs_and_classes(tmp_path):
    write_mask_folder(tmp_path / "thigh")
    samples, classes, view = read_mask_folder(tmp_path / "thigh")
    assert classes == ("background", "muscle", "fat") and view == "thigh"
    assert len(samples) == 4 and all(set(np.unique(s.labels)) == {0, 1, 2} for s in samples)


def test_mask_folder_with_unknown_label_values_is_one_line_naming_the_file(tmp_path, weights, capsys):
    root = tmp_path / "thigh"
    write_mask_folder(root)
    bad = root / "masks" / "slice_02.png"
    mask = cv2.imread(str(bad), cv2.IMREAD_UNCHANGED)
    mask[5, 5] = 9
    cv2.imwrite(str(bad), mask)
    rc, out, err = _run(capsys, "train", "--dataset", "masks", str(root), "--steps", "1")
    assert rc == 2 and out == ""
    _one_error_line(err, str(bad))
    assert "9" not in err.replace(str(bad), "")  # no value read from the file
    assert list(weights.iterdir()) == []


def test_mask_folder_image_without_mask_and_missing_classes(tmp_path, capsys, weights):
    root = tmp_path / "thigh"
    write_mask_folder(root)
    (root / "masks" / "slice_01.png").unlink()
    rc, _, err = _run(capsys, "train", "--dataset", "masks", str(root), "--steps", "1")
    assert rc == 2
    _one_error_line(err, str(root / "images" / "slice_01.png"))
    (root / "classes.txt").unlink()
    rc, _, err = _run(capsys, "train", "--dataset", "masks", str(root), "--steps", "1")
    assert rc == 2
    _one_error_line(err, "classes.txt")


# --------------------------------------------------------------------------- train / evaluate / measure


@pytest.mark.slow
def test_camus_train_then_evaluate_prints_dice_and_volume_errors(tmp_path, weights, capsys):
    root = tmp_path / "CAMUS"
    write_camus_nifti(root)
    rc, out, err = _run(capsys, "train", "--dataset", "camus", str(root), "--steps", "2")
    assert rc == 0, err
    trained = json.loads(out)
    # the only apical-seg of this weights folder: measure uses it, and the JSON says so (it said not active)
    assert trained["name"] == "apical-seg" and trained["train_frames"] == 4 and trained["active"]
    manifest = json.loads((weights / "manifest.json").read_text())
    entry = next(m for m in manifest["models"] if m["name"] == "apical-seg")
    assert entry["channels"] == ["background", "lv", "myocardium", "la"] and len(entry["sha256"]) == 64
    assert "camus" in entry["recipe"] and "dice_lv" in entry["metrics"]["camus"]  # protocol: the dataset
    rc, out, err = _run(capsys, "evaluate", "--dataset", "camus", str(root), "--split", "test",
                        "--model", f"apical-seg:{trained['version']}")
    assert rc == 0, err
    report = json.loads(out)
    assert report["dataset"] == "camus" and report["n"] == 4
    assert set(report["dice"]) == {"lv", "myocardium", "la"}
    assert all(v is None or 0.0 <= v <= 1.0 for v in report["dice"].values())
    # the evaluate contract (docs/architecture.md): one object per measurement
    assert set(report["measurements"]) == {"lvef", "lvedv", "lvesv", "lvef_biplane"}
    for m in report["measurements"].values():
        assert {"mae", "median", "gross", "n"} <= set(m)
    assert report["volumes"]["pairs"] == 2
    for name in ("lvef", "lvedv", "lvesv"):  # each view's ED/ES pair is compared or counted as failed
        m = report["measurements"][name]
        assert m["n"] + m["failed"] == 2 and (m["mae"] is None) == (m["n"] == 0)


@pytest.mark.slow
def test_masks_train_registers_a_custom_view_model_usable_by_measure(tmp_path, weights, capsys):
    root = tmp_path / "thigh"
    write_mask_folder(root)
    rc, out, err = _run(capsys, "train", "--dataset", "masks", str(root), "--steps", "2")
    assert rc == 0, err
    trained = json.loads(out)
    assert trained["name"] == "thigh-seg" and trained["active"]
    rc, out, err = _run(capsys, "weights", "list", "--json")
    assert rc == 0 and "thigh-seg" in out
    png = tmp_path / "scan.png"
    shutil.copy(root / "images" / "slice_00.png", png)
    rc, out, err = _run(capsys, "measure", str(png), "--model", "thigh-seg", "--scale", "0.05", "-q")
    assert rc == 0, err
    result = json.loads(out)
    assert result["model"]["name"] == "thigh-seg" and result["view"]["name"] == "thigh"
    assert result["measurements"] == []
    for seg in result["segmentations"]:
        assert seg["structure"] in ("muscle", "fat") and seg["frame"] == 0
        assert len(seg["polygon"]) >= 3 and seg["area_cm2"] > 0 and 0 <= seg["confidence"] <= 1


def test_partial_label_loss_lets_unannotated_classes_stand_for_background():
    import torch

    from echomeasure.training.seg_train import partial_label_loss

    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, :2] = 1  # LV on the top half, "not LV" below
    logits = torch.full((1, 4, 4, 4), -10.0)
    logits[0, 1, :2] = 10.0  # LV where traced
    logits[0, 2, 2:] = 10.0  # myocardium where the tracing says only "not LV"
    lv_only = torch.tensor([[False, True, False, False]])
    everything = torch.tensor([[True, True, True, True]])
    assert float(partial_label_loss(logits, target, lv_only)) < 0.05
    assert float(partial_label_loss(logits, target, everything)) > 5.0
    logits[0, 1, 2:] = 20.0  # LV outside the tracing is wrong in both readings
    assert float(partial_label_loss(logits, target, lv_only)) > 5.0


def test_evaluation_of_a_perfect_segmentation_has_dice_one_and_no_ef_error(tmp_path, monkeypatch):
    from echomeasure.catalog import APICAL_SEG_CLASSES
    from echomeasure.models import segmentation
    from echomeasure.training.seg_train import evaluate_samples, flat_seg_metrics

    write_camus_nifti(tmp_path / "CAMUS")
    samples = read_camus(tmp_path / "CAMUS")
    truth_of = {s.image.tobytes(): s.labels for s in samples}

    def perfect(model, frames, box, size_hw, **_):
        labels = np.stack([truth_of[f[..., 0].tobytes()] for f in frames])
        return labels, np.ones(labels.shape, np.float32)

    monkeypatch.setattr(segmentation, "predict", perfect)
    report = evaluate_samples(None, (64, 64), APICAL_SEG_CLASSES, samples)
    assert report["n"] == 12 and report["dice"] == {"lv": 1.0, "myocardium": 1.0, "la": 1.0}
    m = report["measurements"]
    assert report["volumes"]["pairs"] == 6 and report["volumes"]["failed"] == 0
    for name in ("lvef", "lvedv", "lvesv", "lvef_biplane"):
        assert m[name]["mae"] == 0.0 and m[name]["median"] == 0.0 and m[name]["gross"] == 0, name
    assert m["lvef"]["n"] == 6 and m["lvef_biplane"]["n"] == 3 and m["lvedv"]["unit"] == "ml"
    # the phantom's EF is far from the fabricated cfg EF: the comparison with the published value shows it
    assert m["lvef"]["vs_reported"]["mae"] > 0 and m["lvef_biplane"]["vs_reported"]["mae"] > 0
    assert "vs_reported" not in m["lvedv"]
    # the registered metrics keep their names
    flat = flat_seg_metrics(report)
    assert flat["ef_mae_points"] == 0.0 and flat["edv_mae_ml"] == 0.0 and flat["dice_lv"] == 1.0
    assert flat["ef_mae_points_vs_reported"] == m["lvef"]["vs_reported"]["mae"]


def test_two_trainings_finishing_together_each_get_their_own_version(tmp_path, weights, capsys, monkeypatch):
    """The version was chosen before training and the weights saved straight into the weights
    folder: a second run finishing first took 1.0, then the first one wrote its weights over
    1.0's registered file.  Now the file and manifest are published together under the lock."""
    from echomeasure.models import registry
    from echomeasure.training import seg_train

    root = tmp_path / "thigh"
    write_mask_folder(root)
    real_fit, nested = seg_train._fit, []

    def fit_while_another_run_finishes(*args, **kwargs):
        if not nested:  # the other run starts and finishes while this one trains
            nested.append(None)
            nested[0] = _run(capsys, "train", "--dataset", "masks", str(root), "--steps", "1")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(seg_train, "_fit", fit_while_another_run_finishes)
    rc, out, err = _run(capsys, "train", "--dataset", "masks", str(root), "--steps", "1")
    assert rc == 0, err
    assert nested[0][0] == 0, nested[0][2]
    versions = {e.version: e for e in registry.list_entries(weights) if e.name == "thigh-seg"}
    assert set(versions) == {"1.0", "1.1"} and json.loads(out)["version"] == "1.1"
    for entry in versions.values():  # each registered file is still the one its entry names
        assert registry.sha256_file(registry.resolve_path(entry, weights)) == entry.sha256


@pytest.mark.slow
def test_a_masks_retrain_is_used_only_with_activate(tmp_path, weights, capsys):
    """train --dataset masks follows --activate like the other datasets (it always activated)."""
    root = tmp_path / "thigh"
    write_mask_folder(root)
    rc, out, err = _run(capsys, "train", "--dataset", "masks", str(root), "--steps", "1")
    assert rc == 0, err
    first = json.loads(out)
    assert first["active"]  # the only version of its name
    rc, out, err = _run(capsys, "train", "--dataset", "masks", str(root), "--steps", "1")
    assert rc == 0, err
    second = json.loads(out)
    assert second["version"] != first["version"] and not second["active"]
    from echomeasure.models import registry

    assert registry.active_version("thigh-seg", weights) == first["version"]
    rc, out, err = _run(capsys, "train", "--dataset", "masks", str(root), "--steps", "1", "--activate")
    assert rc == 0, err
    assert json.loads(out)["active"] and registry.active_version("thigh-seg", weights) == json.loads(out)["version"]


@pytest.mark.parametrize("dataset", ["camus", "echonet-dynamic", "masks"])
def test_evaluate_max_videos_limits_the_cases_of_a_segmentation_dataset(tmp_path, capsys, monkeypatch, dataset):
    """--max-videos was passed on for EchoNet-LVH only: the segmentation datasets evaluated (and
    decoded) their whole split.  Now it keeps the first N videos / patients / images."""
    from echomeasure.training import seg_datasets

    root = tmp_path / "data"
    if dataset == "camus":
        write_camus_nifti(root, patients=(1, 2, 3), splits={"training": [1], "validation": [], "testing": [2, 3]})
    elif dataset == "echonet-dynamic":
        write_echonet_dynamic(root, videos=(("0X1A", "TRAIN"), ("0X2B", "TEST"), ("0X3C", "TEST")))
    else:
        write_mask_folder(root, n=3)
        (root / "split.txt").write_text("slice_00 test\nslice_01 test\nslice_02 test\n")
    seen = {}

    def fake_evaluate(samples, name, model, default, classes):
        seen["cases"] = sorted({s.case for s in samples})
        return {"dataset": name, "n": len(samples)}

    monkeypatch.setattr(seg_datasets, "evaluate_with_model", fake_evaluate)
    rc, out, err = _run(capsys, "evaluate", "--dataset", dataset, str(root), "--max-videos", "1")
    assert rc == 0, err
    assert len(seen["cases"]) == 1
    rc, out, err = _run(capsys, "evaluate", "--dataset", dataset, str(root))
    assert rc == 0 and len(seen["cases"]) > 1


def test_echonet_dynamic_frame_numbers_written_as_floats_are_read(tmp_path):
    """A VolumeTracings.csv re-saved by pandas or a spreadsheet may write Frame as 46.0: it was
    refused as 'not a number' (EchoNet-LVH's reader took it); 46.5 is still refused."""
    import csv

    root = tmp_path / "EchoNet-Dynamic"
    write_echonet_dynamic(root)
    before = read_echonet_dynamic(root)
    path = root / "VolumeTracings.csv"
    with path.open(newline="") as fh:
        table = list(csv.DictReader(fh))
    for row in table:
        row["Frame"] = f"{int(row['Frame'])}.0"

    def write(rows):
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    write(table)
    after = read_echonet_dynamic(root)
    assert [(s.case, s.phase) for s in after] == [(s.case, s.phase) for s in before]
    assert all((a.labels == b.labels).all() for a, b in zip(after, before, strict=True))
    table[3]["Frame"] = "1.5"
    write(table)
    with pytest.raises(InvalidInputError, match="line 5 has a value that is not a number"):
        read_echonet_dynamic(root)


def test_apical_training_without_a_labelled_held_out_split_is_not_activated(tmp_path, weights, capsys):
    """CAMUS without database_split/ (or the legacy release, whose testing set has no label maps)
    has nothing to measure a new apical-seg on: --activate made such a version the one segmenting
    every apical clip, unmeasured (EchoNet-LVH already refused it).  Refused before training."""
    root = tmp_path / "CAMUS data"
    write_camus_nifti(root)
    shutil.rmtree(root / "database_split")
    rc, out, err = _run(capsys, "train", "--dataset", "camus", str(root), "--steps", "1", "--activate")
    assert rc == 2 and out == ""
    _one_error_line(err, str(root), "--activate needs a labelled val or test split")
    assert list(weights.iterdir()) == []


@pytest.mark.parametrize("dataset", ["masks", "camus"])
def test_evaluate_refuses_a_model_segmenting_other_classes(tmp_path, capsys, monkeypatch, dataset):
    """evaluate --dataset masks FOLDER --model apical-seg scored apical-seg's label 2 (myocardium)
    against the folder's label 2 (here 'fat') and printed the figures; likewise a custom model on
    CAMUS.  A model whose classes differ from the dataset's is refused in one line."""
    from types import SimpleNamespace

    from echomeasure.catalog import APICAL_SEG_CLASSES
    from echomeasure.models import segmentation

    root = tmp_path / "data"
    if dataset == "masks":
        write_mask_folder(root, n=2)
        (root / "split.txt").write_text("slice_00 test\nslice_01 test\n")
        own, other = ("background", "muscle", "fat"), tuple(APICAL_SEG_CLASSES)
    else:
        write_camus_nifti(root)
        own, other = tuple(APICAL_SEG_CLASSES), ("background", "muscle", "fat")

    def stand_in(channels):
        entry = SimpleNamespace(channels=channels, input_size=(64, 64))
        return SimpleNamespace(model=None, entry=entry, name="m-seg", version="1.0", sha256="0" * 64)

    monkeypatch.setattr(segmentation, "load_segmentation_model", lambda name, version, *a: stand_in(other))
    rc, out, err = _run(capsys, "evaluate", "--dataset", dataset, str(root), "--model", "m-seg")
    assert rc == 2 and out == ""
    _one_error_line(err, "--model m-seg", "other classes")
    monkeypatch.setattr(segmentation, "load_segmentation_model", lambda name, version, *a: stand_in(own))
    monkeypatch.setattr(segmentation, "predict",
                        lambda model, frames, box, size_hw, **_: (np.zeros(frames.shape[:3], np.uint8), None))
    rc, out, err = _run(capsys, "evaluate", "--dataset", dataset, str(root), "--model", "m-seg")
    assert rc == 0, err
    assert set(json.loads(out)["dice"]) == set(own[1:])
