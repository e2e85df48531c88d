"""Fine-tuning a segmentation model from reviewed contours (``echomeasure finetune --model``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from store_fixtures import make_deidentified

from echomeasure.cli import main
from echomeasure.models.segmentation import PLAX_SEG_CLASSES, PLAX_SEG_MODEL
from echomeasure.propose.types import ModelInfo
from echomeasure.store import open_store
from echomeasure.store.contours import add_contour_review, add_contours

SEG_INPUT = (64, 64)
LV_BIG = [[14.0, 10.0], [46.0, 10.0], [46.0, 36.0], [14.0, 36.0]]
LV_SMALL = [[18.0, 14.0], [42.0, 14.0], [42.0, 32.0], [18.0, 32.0]]
LA = [[50.0, 30.0], [60.0, 30.0], [60.0, 44.0], [50.0, 44.0]]


def _register_random_seg(folder: Path) -> ModelInfo:
    """A random ``plax-seg`` (7 classes, 64 px input) in ``folder``."""
    import torch

    from echomeasure.models.builders import build_model
    from echomeasure.models.registry import WeightsEntry, register, save_weights

    torch.manual_seed(0)
    model = build_model("deeplabv3_mobilenet_v3_large", len(PLAX_SEG_CLASSES))
    file = "plax-seg-0.0-random.pt"
    sha = save_weights(model, folder / file)
    register(WeightsEntry(name=PLAX_SEG_MODEL, version="0.0-random", arch="deeplabv3_mobilenet_v3_large",
                          input_size=SEG_INPUT, channels=PLAX_SEG_CLASSES, file=file, sha256=sha,
                          trained_on="nothing (random initialisation for tests)", seed=0, recipe="tests"),
             weights_dir=folder)
    return ModelInfo(PLAX_SEG_MODEL, "0.0-random", sha)


@pytest.fixture
def seg_weights(tmp_path: Path) -> tuple[Path, ModelInfo]:
    folder = tmp_path / "weights"
    folder.mkdir()
    return folder, _register_random_seg(folder)


def _clip_with_frames(store, tmp_path: Path, seed: int) -> int:
    dclip = make_deidentified(tmp_path, seed)
    rec = store.add_clip(dclip)
    store.save_frames(rec.id, dclip.clip.frames)
    return rec.id


@pytest.fixture
def review_db(tmp_path: Path, seg_weights) -> str:
    """Three clips with reviewed plax-seg contours (one stored under the PLAX caliper model, as the
    pipeline does), plus reviews that must not supervise: a rejection, an unreviewed proposal and
    another model's contour."""
    _, seg = seg_weights
    url = f"sqlite:///{tmp_path / 'reviews.sqlite'}"
    with open_store(url) as store:
        for seed, model in ((1, seg), (2, seg), (3, ModelInfo("plax-linear", "1.1", "b" * 64))):
            cid = _clip_with_frames(store, tmp_path, seed)
            lv1, la1, lv3 = add_contours(store, cid, [
                {"frame": 1, "structure": "lv", "polygon": LV_BIG, "confidence": 0.9},
                {"frame": 1, "structure": "la", "polygon": LA, "confidence": 0.8},
                {"frame": 3, "structure": "lv", "polygon": LV_BIG, "confidence": 0.9},
            ], model=model)
            add_contour_review(store, cid, "corrected", "Dr A", contour_proposal_id=lv1.id, polygon=LV_SMALL)
            add_contour_review(store, cid, "rejected", "Dr A", contour_proposal_id=la1.id)
            if seed != 2:
                add_contour_review(store, cid, "accepted", "Dr A", contour_proposal_id=lv3.id)
        other = _clip_with_frames(store, tmp_path, 4)
        (foreign,) = add_contours(store, other, [{"frame": 0, "structure": "lv", "polygon": LV_BIG}],
                                  model=ModelInfo("apical-seg", "1.0", "c" * 64))
        add_contour_review(store, other, "accepted", "Dr A", contour_proposal_id=foreign.id)
    return url


def test_reviewed_contours_become_partial_label_maps(review_db, seg_weights):
    from echomeasure.models.registry import get_entry
    from echomeasure.training.finetune_seg import load_contour_samples

    folder, _ = seg_weights
    entry = get_entry(PLAX_SEG_MODEL, None, folder)
    with open_store(review_db) as store:
        samples = load_contour_samples(store, entry)
    # clips 1 and 3 (frames 1 and 3), clip 2 frame 1 only; nothing of the apical-seg clip
    assert sorted((s.clip_id, s.frame_index) for s in samples) == [(1, 1), (1, 3), (2, 1), (3, 1), (3, 3)]
    lv = PLAX_SEG_CLASSES.index("lv")
    for s in samples:
        assert s.known == (lv,)  # the rejected LA supervises nothing
        assert s.image.shape == (3, *SEG_INPUT) and s.labels.shape == SEG_INPUT
        assert s.mm_per_px == pytest.approx(0.5)
    corrected = next(s for s in samples if (s.clip_id, s.frame_index) == (1, 1))
    accepted = next(s for s in samples if (s.clip_id, s.frame_index) == (1, 3))
    assert corrected.reference[23, 30] == lv and corrected.reference[11, 15] == 0  # the reviewer's smaller LV
    assert accepted.reference[11, 15] == lv
    assert (corrected.reference == lv).sum() < (accepted.reference == lv).sum()


def test_signed_offset_of_a_boundary_drawn_inside_is_negative():
    from echomeasure.training.finetune_seg import signed_offset_mm

    yy, xx = np.mgrid[0:120, 0:120]
    r2 = (xx - 60) ** 2 + (yy - 60) ** 2
    outer, inner = r2 <= 40**2, r2 <= 36**2
    assert signed_offset_mm(inner, outer, 0.25) == pytest.approx(-1.0, abs=0.15)
    assert signed_offset_mm(outer, inner, 0.25) == pytest.approx(1.0, abs=0.15)
    assert signed_offset_mm(outer, outer, 0.25) == pytest.approx(0.0, abs=0.15)
    assert signed_offset_mm(np.zeros_like(outer), outer, 0.25) is None


def test_unreviewed_term_keeps_the_parents_split_of_the_other_classes_only():
    import torch

    from echomeasure.training.finetune_seg import unreviewed_kl

    gen = torch.Generator().manual_seed(0)
    parent = torch.randn(2, 4, 6, 6, generator=gen)
    target = torch.zeros(2, 6, 6, dtype=torch.long)
    target[:, 2:4, 2:4] = 1  # the reviewed LV
    known = torch.tensor([[False, True, False, False]] * 2)
    assert float(unreviewed_kl(parent, parent, target, known)) == pytest.approx(0.0, abs=1e-6)
    # the reviewed class's logit may change freely (the reviews decide it) ...
    moved_lv = parent.clone()
    moved_lv[:, 1] += 5.0
    assert float(unreviewed_kl(moved_lv, parent, target, known)) == pytest.approx(0.0, abs=1e-5)
    # ... but re-splitting the unreviewed classes outside the LV costs
    swapped = parent[:, [0, 1, 3, 2]]
    assert float(unreviewed_kl(swapped, parent, target, known)) > 0.05


def test_cli_finetunes_on_reviewed_contours_and_registers_a_version(review_db, seg_weights, capsys):
    from echomeasure.models.registry import REVIEW_HOLDOUT, get_entry, sha256_file

    folder, seg = seg_weights
    rc = main(["finetune", "--model", PLAX_SEG_MODEL, "--db", review_db, "--out", str(folder), "--steps", "15",
               "--min-frames", "3", "--holdout", "0.34", "--seed", "1", "--activate", "yes", "-q"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["version"] == "0.0-random-ft1" and out["parent"] == "0.0-random" and out["activated"]
    assert out["train_frames"] + out["holdout_frames"] == 5 and out["holdout_frames"] > 0
    assert out["steps"] == 15 and out["loss_last"] < out["loss_first"]
    assert set(out["before"]["structures"]) == {"lv"} and out["after"]["structures"]["lv"]["dice"] is not None

    child = get_entry(PLAX_SEG_MODEL, None, folder)  # the active version now
    assert child.version == "0.0-random-ft1" and child.parent == "0.0-random" and child.seed == 1
    assert child.sha256 == sha256_file(folder / child.file) and child.sha256 != seg.sha256
    assert "--steps 15" in child.recipe and "--seed 1" in child.recipe
    assert child.metrics[REVIEW_HOLDOUT]["dice_lv"] == out["after"]["structures"]["lv"]["dice"]
    record = child.extra["finetune_contours"]
    assert record["before"] == out["before"] and record["after"] == out["after"]
    assert not set(record["train_clip_ids"]) & set(record["holdout_clip_ids"])
    with open_store(review_db) as store:
        assert any(v.version == "0.0-random-ft1" for v in store.model_versions(PLAX_SEG_MODEL))


@pytest.mark.parametrize(("model", "expected"), [
    (PLAX_SEG_MODEL, "no accepted or corrected plax-seg contours"),
    ("apical-seg", "no weights for model 'apical-seg'"),
    ("plax-linear", "plax-linear is not a segmentation model"),
])
def test_cli_refuses_without_reviewed_contours_or_segmentation_model(tmp_path, seg_weights, capsys, model, expected):
    from echomeasure.models.builders import build_model
    from echomeasure.models.registry import WeightsEntry, register, save_weights

    folder, _ = seg_weights
    file = "plax-linear-0.0.pt"
    sha = save_weights(build_model("deeplabv3_mobilenet_v3_large", 8), folder / file)
    register(WeightsEntry(name="plax-linear", version="0.0", arch="deeplabv3_mobilenet_v3_large", input_size=(64, 64),
                          channels=("rv_septum", "septum_lv", "lv_pw", "pw_pericardium", "ao_anterior", "ao_posterior",
                                    "la_anterior", "la_posterior"), file=file, sha256=sha, trained_on="-", seed=0,
                          recipe="tests"), weights_dir=folder)
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    with open_store(url) as store:
        _clip_with_frames(store, tmp_path, 5)
    before = sorted(p.name for p in folder.iterdir())
    rc = main(["finetune", "--model", model, "--db", url, "--out", str(folder), "--steps", "2", "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error: ") and expected in err and "\n" not in err
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--steps", "0", "--steps must be at least 1"),
    ("--holdout", "1", "--holdout must be at least 0 and below 1"),
    ("--keep-unreviewed", "-1", "--keep-unreviewed must be 0 or more"),
])
def test_cli_refuses_bad_settings(review_db, seg_weights, capsys, option, value, expected):
    folder, _ = seg_weights
    before = sorted(p.name for p in folder.iterdir())
    rc = main(["finetune", "--model", PLAX_SEG_MODEL, "--db", review_db, "--out", str(folder), option, value, "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == f"error: {expected}"
    assert sorted(p.name for p in folder.iterdir()) == before
