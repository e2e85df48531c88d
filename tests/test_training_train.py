"""Training from synthetic data, registration, and held-out evaluation."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from echomeasure import catalog
from echomeasure.cli import main
from echomeasure.models import registry
from echomeasure.propose.types import Proposal
from echomeasure.propose.values import physical_value
from echomeasure.training.datasets import HELDOUT_SEEDS, TRAIN_SEEDS, heldout_case_seeds, train_case_seeds

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ECHOMEASURE_CACHE", str(tmp_path_factory.mktemp("cache")))


def test_training_and_heldout_seed_ranges_never_overlap():
    assert set(TRAIN_SEEDS).isdisjoint(HELDOUT_SEEDS)
    for mode in ("2d", "doppler"):
        assert set(train_case_seeds(500, mode)) <= set(TRAIN_SEEDS)
        assert set(heldout_case_seeds(50, mode)) <= set(HELDOUT_SEEDS)
    assert set(train_case_seeds(500, "2d")).isdisjoint(train_case_seeds(500, "doppler"))


def test_smoke_training_lowers_loss_and_registers_a_version_load_model_accepts(tmp_path):
    from echomeasure.training.train import HEATMAP_SIGMA_PX, MAX_SHIFT_PX, train_model

    out = tmp_path / "weights"
    outcome = train_model("plax-linear", smoke=True, out=out, progress=False, threads=1)
    losses = outcome.result.losses
    assert outcome.result.steps_done == len(losses) == 12
    assert np.mean(losses[-3:]) < np.mean(losses[:3])

    e = registry.get_entry("plax-linear", None, out)
    assert e.version == outcome.entry.version == "0.0-smoke1"
    assert e.sha256 == registry.sha256_file(out / e.file)
    assert e.channels == catalog.KEYPOINTS_2D and e.input_size == (128, 128)
    assert e.recipe.startswith("echomeasure train --model plax-linear --steps 12 --seed 0")
    assert e.seed == 0 and e.parent is None
    assert e.extra["training_data"]["train_seed_range"] == [TRAIN_SEEDS.start, TRAIN_SEEDS.stop]
    own = e.metrics["own-style"]
    assert "lvidd_mae_mm" in own and "within_1mm_pct" in own and "low_confidence_below" not in own
    assert outcome.metrics["lvidd_mae_mm"] == own["lvidd_mae_mm"]
    assert (e.decode.sigma_px, e.decode.max_shift_px) == (HEATMAP_SIGMA_PX, MAX_SHIFT_PX)
    assert "sigma_px" not in e.extra and "evaluation" in e.extra
    loaded = registry.load_model("plax-linear", weights_dir=out)
    assert loaded.sha256 == e.sha256
    assert not list(out.glob("em-eval-*")), "scratch folder left behind"


def test_cli_train_doppler_smoke_prints_the_registered_entry(tmp_path, capsys):
    out = tmp_path / "w"
    assert main(["train", "--model", "doppler-peaks", "--smoke", "--out", str(out), "-q", "--threads", "1"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["name"] == "doppler-peaks" and printed["steps"] == 12
    manifest = json.loads((out / "manifest.json").read_text())
    (entry,) = manifest["models"]
    assert entry["sha256"] == printed["sha256"] == hashlib.sha256((out / entry["file"]).read_bytes()).hexdigest()
    assert entry["channels"] == list(catalog.DOPPLER_CHANNELS)
    assert "doppler-peaks" not in manifest["active"]  # a smoke run is never made active (the only version is used)
    assert printed["active"] is True and registry.active_version("doppler-peaks", out) == entry["version"]


def test_cli_train_refuses_zero_steps_with_one_line_error(tmp_path, capsys):
    assert main(["train", "--model", "plax-linear", "--smoke", "--steps", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --steps must be at least 1"]
    assert not (tmp_path / "manifest.json").exists()


def _offset_propose(offset_px: float):
    """A stand-in for ``propose`` that returns the true calipers with the second endpoint moved
    ``offset_px`` further along the caliper (so each length grows by exactly ``offset_px``)."""
    from echomeasure.synthetic.plax import ed_es_frames, render_plax
    from echomeasure.training.datasets import plax_params_for_seed

    truth: dict[str, np.ndarray] = {}

    def remember(seed: int) -> None:
        params = plax_params_for_seed(seed, small=True)
        cine = render_plax(params, frames=list(ed_es_frames(params)), labels=False)
        for j in range(2):
            truth[hashlib.sha1(cine.frames[j].tobytes()).hexdigest()] = cine.keypoints[j].astype(float)

    def propose(clip, only):
        kp = truth[hashlib.sha1(clip.frames[0].tobytes()).hexdigest()]
        idx = {k: i for i, k in enumerate(catalog.KEYPOINTS_2D)}
        out = []
        for name in only:
            a, b = (kp[idx[k]] for k in catalog.LINEAR_ENDPOINTS[name])
            b = b + (b - a) / np.hypot(*(b - a)) * offset_px
            pts = (tuple(a), tuple(b))
            value, unit, _ = physical_value(clip, name, pts)
            out.append(Proposal(name, 0, pts, value, unit, confidence=0.9))
        return SimpleNamespace(measurements=out)

    return propose, remember


@pytest.mark.parametrize("offset_px", [1.0, 4.0])
def test_evaluate_reports_a_known_caliper_offset_in_mm_through_the_calibration(offset_px):
    from echomeasure.training.datasets import plax_params_for_seed
    from echomeasure.training.evaluate import evaluate_plax

    seeds = heldout_case_seeds(3, "2d")
    propose, remember = _offset_propose(offset_px)
    for s in seeds:
        remember(s)
    report = evaluate_plax(propose, seeds, small=True, progress=False)

    from echomeasure.synthetic.plax import sector_geometry

    mm_per_px = np.array([sector_geometry(plax_params_for_seed(s, small=True)).cm_per_px * 10 for s in seeds])
    assert set(report.measurements) == set(catalog.LINEAR_2D)
    for name, m in report.measurements.items():
        assert m.n == 3
        assert m.mae == pytest.approx(offset_px * mm_per_px.mean(), rel=1e-3), name
        assert m.bias == pytest.approx(m.mae, rel=1e-6)  # every caliper too long
        expected_within = 100 * (0.5 + 0.5 * np.mean(offset_px * mm_per_px <= 1.0))
        assert m.within_1mm_pct == pytest.approx(expected_within)
    assert report.overall["endpoint_mae_mm"] == pytest.approx(offset_px * mm_per_px.mean() / 2, rel=1e-3)


def test_training_on_style_families_from_a_registered_version_records_the_recipe(tmp_path):
    out = tmp_path / "w"
    assert main(["train", "--model", "plax-linear", "--smoke", "--out", str(out), "-q", "--threads", "1"]) == 0
    assert main(["train", "--model", "plax-linear", "--smoke", "--out", str(out), "-q", "--threads", "1",
                 "--styles", "classic,vendor", "--init-from", "0.0-smoke1"]) == 0
    e = registry.get_entry("plax-linear", "0.0-smoke2", out)
    assert e.parent == "0.0-smoke1"
    assert registry.active_version("plax-linear", out) == "0.0-smoke1"  # a smoke run is never made active
    assert "--styles classic,vendor --init-from 0.0-smoke1" in e.recipe
    assert e.extra["training_data"]["styles"] == ["classic", "vendor"]
    # its flag is calibrated on held-out cases of both families it was trained on, each case in each
    first = registry.get_entry("plax-linear", "0.0-smoke1", out).extra["evaluation"]
    both = e.extra["evaluation"]
    assert both["n_cases"] == 2 * first["n_cases"] and both["case_seeds"] == first["case_seeds"]  # first and last seed
    assert set(e.extra["augmentation"]) >= {"geometry", "appearance", "artefact"}


def test_training_on_the_heldout_style_is_refused(tmp_path, capsys):
    assert main(["train", "--model", "plax-linear", "--smoke", "--styles", "classic,scatter", "--out", str(tmp_path)]) == 2
    assert "held out" in capsys.readouterr().err
    assert not (tmp_path / "manifest.json").exists()


def test_bloom_augmentation_of_a_doppler_model_is_refused_in_one_line(tmp_path, capsys):
    """--bloom-augment is a B-mode point-spread function (tissue blooming into the blood): on
    doppler-peaks it re-imaged the spectral strips and was recorded as if it meant something."""
    assert main(["train", "--model", "doppler-peaks", "--smoke", "--bloom-augment", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --bloom-augment") and "doppler-peaks" in err[0]
    assert not (tmp_path / "manifest.json").exists()


def test_geometry_augment_moves_keypoints_with_the_pixels():
    from echomeasure.training.augment import GeometryAugment

    img = np.zeros((96, 96, 3), np.uint8)
    pts = np.array([[[30.0, 40.0]], [[60.0, 50.0]]], np.float32)
    for c, (x, y) in enumerate(pts[:, 0]):  # one marked blob per channel
        img[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2, c] = 255
    aug = GeometryAugment(p=1.0, margin_px=5.0)
    moved_any = False
    for seed in range(6):
        out, moved = aug(img, pts, np.random.default_rng(seed))
        for c, (x, y) in enumerate(moved[:, 0]):
            w = out[..., c].astype(float)
            ys, xs = np.mgrid[0:96, 0:96]
            assert w.sum() > 0, "the marked pixel vanished"
            cx, cy = (w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()
            assert np.hypot(cx - x, cy - y) < 0.5
        moved_any |= not np.allclose(moved, pts)
    assert moved_any


def test_doppler_training_on_style_families_broadens_the_spectrum_and_never_rotates(tmp_path):
    out = tmp_path / "w"
    assert main(["train", "--model", "doppler-peaks", "--smoke", "--out", str(out), "-q", "--threads", "1",
                 "--styles", "classic,vendor"]) == 0
    aug = registry.get_entry("doppler-peaks", None, out).extra["augmentation"]
    assert set(aug) >= {"geometry", "appearance", "spectrum"} and "artefact" not in aug
    assert list(aug["geometry"]["rotation_deg"]) == [0.0, 0.0]


def test_spectral_broadening_keeps_the_envelope_edge_where_it_was():
    """A bright spectrum filled up to row 40 (velocity axis down): after broadening the half-intensity
    edge stays at row 40 in every column; grain changes pixels but not the mean level much."""
    from echomeasure.training.augment import SpectrumAugment

    img = np.zeros((128, 64, 3), np.uint8)
    img[:40] = 200
    broadened = SpectrumAugment(broadening_p=1.0, grain_p=0.0)(img, np.random.default_rng(3)).astype(float)
    assert not np.array_equal(broadened, img)
    for col in (5, 30, 60):
        profile = broadened[:, col, 0]
        edge = np.interp(100.0, profile[::-1], np.arange(128)[::-1])  # profile falls with the row
        assert abs(edge - 39.5) < 0.6
    grainy = SpectrumAugment(broadening_p=0.0, grain_p=1.0)(img, np.random.default_rng(4)).astype(float)
    assert grainy[:40].std() > 10 and abs(grainy[:40].mean() - 200) < 25
    assert grainy[60:].max() == 0  # no signal where there was none


@pytest.mark.parametrize(("option", "key", "recorded"), [
    ("exposure", "exposure", {"gain": [0.7, 2.5]}),
    ("bloom", "bloom", {"psf_axial_mm": [0.2, 0.9], "px_per_mm": 128 / 160.0}),  # smoke input 128 px, 160 mm field
])
def test_an_optional_augmentation_is_recorded_and_never_resumes_a_run_without_it(tmp_path, option, key, recorded):
    from echomeasure.training.train import _plan_hash, default_plan

    out = tmp_path / "w"
    assert main(["train", "--model", "plax-linear", "--smoke", "--out", str(out), "-q", "--threads", "1",
                 "--styles", "classic,vendor", f"--{option}-augment"]) == 0
    e = registry.get_entry("plax-linear", None, out)
    assert e.recipe.endswith(f" --{option}-augment --smoke")
    for name, value in recorded.items():
        assert e.extra["augmentation"][key][name] == pytest.approx(value)
    with_it = default_plan("plax-linear", smoke=True, styles="classic,vendor", **{option: True})
    without = default_plan("plax-linear", smoke=True, styles="classic,vendor")
    assert _plan_hash(with_it) != _plan_hash(without)


def test_bloom_augmentation_brightens_the_blood_beside_a_wall_and_keeps_the_keypoints():
    """A bright wall beside black blood, re-imaged: the blood next to the wall gets brighter (the
    bloom), the keypoint targets are untouched."""
    from echomeasure.training.augment import BloomAugment
    from echomeasure.training.datasets import HeatmapTrainingSet

    img = np.zeros((1, 96, 96, 3), np.uint8)
    img[0, 20:80, 10:86] = 30  # sector with dark blood
    img[0, 50:60, 10:86] = 220  # a wall
    pts = np.full((1, 8, 2), np.nan, np.float32)
    pts[0, 0] = (48.0, 50.0)
    plain = HeatmapTrainingSet(img, pts, 2.0)
    bloomed = HeatmapTrainingSet(img, pts, 2.0, bloom=BloomAugment(p=1.0, floor_grey=(0.3, 0.3)), bloom_px_per_mm=2.0)
    x0, _, p0 = plain.sample(0, np.random.default_rng(1))
    x1, _, p1 = bloomed.sample(0, np.random.default_rng(1))
    np.testing.assert_array_equal(p0, p1)
    beside = np.s_[:, 46:49, 20:76]  # 1-4 px into the blood above the wall
    assert x1[beside].mean() > x0[beside].mean() + 0.05
