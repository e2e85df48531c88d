"""Fine-tuning as a site runs it, attacked: runs that finish together, interrupted runs, a weights
folder that cannot be written, damaged frame images and points the model cannot see.  The weights
folder must never be left half-written."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from store_fixtures import make_deidentified, write_us_dicom
from test_finetune_seg import LV_BIG, LV_SMALL, _clip_with_frames, _register_random_seg

from echomeasure.cli import main
from echomeasure.models import registry
from echomeasure.models.segmentation import PLAX_SEG_CLASSES, PLAX_SEG_MODEL
from echomeasure.store import open_store
from echomeasure.store.contours import add_contour_review, add_contours
from echomeasure.training import finetune_seg


@pytest.fixture
def seg_setup(tmp_path: Path) -> tuple[Path, str]:
    """A random plax-seg in a weights folder and a store with 4 clips of reviewed LV contours."""
    folder = tmp_path / "weights"
    folder.mkdir()
    seg = _register_random_seg(folder)
    url = f"sqlite:///{tmp_path / 'reviews.sqlite'}"
    with open_store(url) as store:
        for seed in (1, 2, 3, 4):
            cid = _clip_with_frames(store, tmp_path, seed)
            (lv,) = add_contours(store, cid, [{"frame": 1, "structure": "lv", "polygon": LV_BIG}], model=seg)
            add_contour_review(store, cid, "corrected", "Dr A", contour_proposal_id=lv.id, polygon=LV_SMALL)
    return folder, url


def _finetune_args(folder: Path, url: str) -> list[str]:
    return ["finetune", "--model", PLAX_SEG_MODEL, "--db", url, "--out", str(folder), "--steps", "2",
            "--min-frames", "2", "--holdout", "0.5", "--activate", "yes", "-q"]


def _every_registered_file_verifies(folder: Path) -> list[str]:
    entries = registry.list_entries(folder)
    for entry in entries:
        registry.verify_file(entry, folder)  # raises on a file that is not the registered one
    return [e.version for e in entries]


def _competing_run(folder: Path) -> registry.WeightsEntry:
    """What another fine-tune that finishes first registers: its own weights as ``...-ft1``."""
    import torch

    from echomeasure.models.builders import build_model

    torch.manual_seed(7)
    model = build_model("deeplabv3_mobilenet_v3_large", len(PLAX_SEG_CLASSES))
    parent = registry.get_entry(PLAX_SEG_MODEL, "0.0-random", folder)
    file = f"{PLAX_SEG_MODEL}-0.0-random-ft1.pt"
    sha = registry.save_weights(model, folder / file)
    return registry.register(registry.WeightsEntry.from_json(
        {**parent.to_json(), "version": "0.0-random-ft1", "file": file, "sha256": sha, "created": ""}),
        weights_dir=folder, activate=True)


def test_a_finetune_that_another_run_overtakes_registers_its_own_version_and_leaves_the_others_file(
        seg_setup, monkeypatch, capsys):
    # Two fine-tunes into one folder: the other one registers "-ft1" while this one is measuring
    # its child.  Before, this run then copied its weights over the other's registered (and active)
    # file and failed with a traceback: the manifest's sha256 no longer matched, measure broke.
    folder, url = seg_setup
    measured = []
    real_metrics = finetune_seg.contour_metrics

    def metrics_while_another_run_finishes(model, entry, samples):
        measured.append(entry.version)
        if entry.version != "0.0-random":  # the child is being measured
            competitor.append(_competing_run(folder))
        return real_metrics(model, entry, samples)

    competitor: list[registry.WeightsEntry] = []
    monkeypatch.setattr(finetune_seg, "contour_metrics", metrics_while_another_run_finishes)
    rc = main(_finetune_args(folder, url))
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert competitor, "the child was never measured"
    assert json.loads(out)["version"] == "0.0-random-ft2"
    assert _every_registered_file_verifies(folder) == ["0.0-random", "0.0-random-ft1", "0.0-random-ft2"]
    assert registry.get_entry(PLAX_SEG_MODEL, "0.0-random-ft1", folder).sha256 == competitor[0].sha256
    assert registry.active_version(PLAX_SEG_MODEL, folder) == "0.0-random-ft2"


def test_a_finetune_keeps_its_scratch_files_out_of_the_weights_folder(seg_setup, monkeypatch, capsys):
    # A run killed while it measures its child (SIGKILL, SIGTERM, a power cut) must not leave a
    # scratch folder with a weight file and a manifest of its own in the weights folder.
    folder, url = seg_setup
    before = sorted(p.name for p in folder.iterdir())
    seen: list[list[str]] = []
    real_metrics = finetune_seg.contour_metrics

    def metrics(model, entry, samples):
        seen.append(sorted(p.name for p in folder.iterdir()))
        return real_metrics(model, entry, samples)

    monkeypatch.setattr(finetune_seg, "contour_metrics", metrics)
    assert main(_finetune_args(folder, url)) == 0, capsys.readouterr().err
    assert len(seen) == 2 and all(names == before for names in seen)
    after = sorted(p.name for p in folder.iterdir())
    assert set(after) - set(before) == {f"{PLAX_SEG_MODEL}-0.0-random-ft1.pt"}


def test_an_unwritable_weights_folder_is_refused_before_any_training(seg_setup, monkeypatch, capsys):
    import errno
    import os
    import tempfile

    folder, url = seg_setup
    manifest = (folder / "manifest.json").read_bytes()
    real_mkstemp = tempfile.mkstemp

    def read_only_folder(*args, **kwargs):  # what a read-only mount answers (root ignores chmod)
        if Path(kwargs.get("dir") or ".").resolve() == folder.resolve():
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_mkstemp(*args, **kwargs)

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the result could not be registered")

    monkeypatch.setattr(tempfile, "mkstemp", read_only_folder)
    monkeypatch.setattr(finetune_seg, "train_head", no_training)
    rc = main(_finetune_args(folder, url))
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error: weights folder ") and str(folder) in err and "not writable" in err
    assert "\n" not in err
    assert (folder / "manifest.json").read_bytes() == manifest


def _plax_entry(input_size: tuple[int, int] = (64, 64)) -> registry.WeightsEntry:
    from echomeasure.catalog import KEYPOINTS_2D

    return registry.WeightsEntry(name="plax-linear", version="0.1", arch="deeplabv3_mobilenet_v3_large",
                                 input_size=input_size, channels=KEYPOINTS_2D, file="plax-linear-0.1.pt",
                                 sha256="a" * 64)


def _half_region_dicom(tmp_path: Path, seed: int) -> Path:
    """A 64x48 clip whose ultrasound region is its left half (the right half is annotation)."""
    import pydicom

    path = write_us_dicom(tmp_path / f"half_{seed}.dcm", seed=seed)
    ds = pydicom.dcmread(path)
    ds.SequenceOfUltrasoundRegions[0].RegionLocationMaxX1 = 31
    ds.save_as(path, enforce_file_format=True)
    return path


def test_damaged_or_missing_frame_images_are_skipped_with_a_warning(tmp_path, caplog):
    from echomeasure.training.finetune import load_review_samples

    with open_store(f"sqlite:///{tmp_path / 'r.sqlite'}", images_dir=tmp_path / "images") as store:
        ids = []
        for seed in (1, 2, 3):
            dclip = make_deidentified(tmp_path, seed)
            cid = store.add_clip(dclip).id
            store.save_frames(cid, dclip.clip.frames)
            store.add_review(cid, "lvidd", "added", "Dr A", frame=1, points=[[20.0, 10.0], [20.0, 30.0]])
            ids.append(cid)
        damaged, deleted = store.frame_path(ids[0], 1), store.frame_path(ids[1], 1)
        damaged.write_bytes(damaged.read_bytes()[:60])  # a truncated PNG
        deleted.unlink()
        with caplog.at_level(logging.WARNING, logger="echomeasure.training.finetune"):
            samples = load_review_samples(store, _plax_entry())
    assert [(s.clip_id, s.frame_index) for s in samples] == [(ids[2], 1)]
    assert "2 reviewed frame(s) skipped" in caplog.text


def test_a_reviewed_point_outside_the_models_view_is_not_learned(tmp_path, caplog):
    # The model sees the ultrasound region only; a point beyond it made the whole channel a target
    # with its peak off the input, i.e. "this keypoint is nowhere on the frame".
    from echomeasure import config
    from echomeasure.catalog import KEYPOINTS_2D, LINEAR_ENDPOINTS
    from echomeasure.ingest import load
    from echomeasure.training.finetune import load_review_samples

    with open_store(f"sqlite:///{tmp_path / 'r.sqlite'}", images_dir=tmp_path / "images") as store:
        dclip = load(_half_region_dicom(tmp_path, 1), secret=config.secret())
        cid = store.add_clip(dclip).id
        store.save_frames(cid, dclip.clip.frames)
        store.add_review(cid, "lvidd", "added", "Dr A", frame=1, points=[[20.0, 10.0], [20.0, 30.0]])
        store.add_review(cid, "aortic_root", "added", "Dr A", frame=1, points=[[50.0, 5.0], [50.0, 20.0]])  # outside
        with caplog.at_level(logging.WARNING, logger="echomeasure.training.finetune"):
            (sample,) = load_review_samples(store, _plax_entry())
    known = {KEYPOINTS_2D[k] for k in np.flatnonzero(sample.trusted)}
    assert known == set(LINEAR_ENDPOINTS["lvidd"])
    assert np.isfinite(sample.targets).all(-1).any(-1).sum() == 2
    assert "outside the model's view" in caplog.text


def test_auto_activation_needs_a_measured_review_hold_out(seg_setup, capsys, caplog):
    # --holdout 0 (or a single reviewed clip) leaves nothing to compare: "not worse than the parent"
    # cannot be shown, so an unmeasured version must not replace the active one for every user.
    folder, url = seg_setup
    argv = [a for a in _finetune_args(folder, url) if a not in ("--activate", "yes")]
    argv[argv.index("--holdout") + 1] = "0"
    with caplog.at_level(logging.WARNING):
        rc = main(argv)
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["holdout_frames"] == 0 and out["activated"] is False
    assert registry.active_version(PLAX_SEG_MODEL, folder) == "0.0-random"
    assert registry.verify_file(registry.get_entry(PLAX_SEG_MODEL, out["version"], folder), folder)
    assert "not measured on held-out" in caplog.text


def test_auto_activation_of_a_caliper_model_needs_a_measured_review_hold_out():
    from echomeasure.training.finetune import _should_activate

    synthetic = {"mean_mae_mm": 0.5}
    unmeasured = {"reviews_holdout": {}, "synthetic_holdout": synthetic}
    assert _should_activate("auto", unmeasured, unmeasured) is False
    assert _should_activate("yes", unmeasured, unmeasured) is True
    measured = {"reviews_holdout": {"endpoint_mae_mm": 1.0}, "synthetic_holdout": synthetic}
    better = {"reviews_holdout": {"endpoint_mae_mm": 0.8}, "synthetic_holdout": synthetic}
    assert _should_activate("auto", measured, better) is True
    assert _should_activate("auto", better, measured) is False


def test_frames_with_reviewed_contours_whose_image_is_gone_are_counted_in_a_warning(seg_setup, caplog):
    from echomeasure.training.finetune_seg import load_contour_samples

    folder, url = seg_setup
    with open_store(url) as store:
        gone = store.frame_path(1, 1)
        gone.write_bytes(gone.read_bytes()[:60])
        store.frame_path(2, 1).unlink()
        with caplog.at_level(logging.WARNING, logger="echomeasure.training.finetune_seg"):
            samples = load_contour_samples(store, registry.get_entry(PLAX_SEG_MODEL, None, folder))
    assert sorted(s.clip_id for s in samples) == [3, 4]
    assert "2 frame(s) with reviewed contours skipped" in caplog.text
