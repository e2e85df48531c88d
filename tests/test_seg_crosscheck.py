"""PLAX segmentation cross-check of the linear calipers, and segment polygons."""

from __future__ import annotations

import numpy as np
import pytest

from echomeasure.models.segmentation import PLAX_SEG_CLASSES, segments
from echomeasure.propose import seg_crosscheck as xc
from echomeasure.propose.types import Proposal

SEPTUM, LV = PLAX_SEG_CLASSES.index("septum"), PLAX_SEG_CLASSES.index("lv")


def _plax_map() -> tuple[np.ndarray, np.ndarray]:
    """Rows 40-59 septum, 60-119 LV cavity, on a 160x120 map; confidence 0.9 everywhere."""
    labels = np.zeros((160, 120), np.uint8)
    labels[40:60] = SEPTUM
    labels[60:120] = LV
    return labels, np.full(labels.shape, 0.9, np.float32)


def _caliper(name: str, y0: float, y1: float, conf: float = 0.8) -> Proposal:
    return Proposal(name=name, frame=3, points=((50.0, y0), (50.0, y1)), value=None, unit="px", confidence=conf)


def test_run_length_follows_the_structure_along_the_caliper_line():
    labels, conf = _plax_map()
    length, c = xc.run_length_px(labels, conf, (50, 39.5), (50, 59.5), SEPTUM)
    assert length == pytest.approx(20, abs=1) and c == pytest.approx(0.9)
    # an oblique caliper crosses the band over a longer path
    length, _ = xc.run_length_px(labels, conf, (40, 40), (60, 60), SEPTUM)
    assert length == pytest.approx(20 * np.sqrt(2), abs=1.5)
    assert xc.run_length_px(labels, conf, (50, 130), (50, 150), SEPTUM) == (None, pytest.approx(0.9))


def test_agreeing_calipers_keep_their_confidence_and_disagreeing_ones_lose_some():
    labels, conf = _plax_map()
    maps = {3: (labels, conf)}
    agree = [_caliper("ivsd", 39.5, 59.5), _caliper("lvidd", 59.5, 119.5)]
    out, why = xc.crosscheck(agree, maps, px_per_mm=2.0)
    assert [p.confidence for p in out] == [0.8, 0.8] and why == {}
    # IVSd drawn twice as thick as the segmented septum, LVIDd far too short
    out, why = xc.crosscheck([_caliper("ivsd", 30, 70), _caliper("lvidd", 60, 80)], maps, px_per_mm=2.0)
    assert set(why) == {"ivsd", "lvidd"}
    for p in out:
        assert xc.MIN_FACTOR * 0.8 <= p.confidence < 0.8
    # a caliper on a line without its structure
    out, why = xc.crosscheck([Proposal("aortic_root", 3, ((10.0, 10.0), (10.0, 30.0)), None, "px", 0.8)], maps, None)
    assert out[0].confidence == pytest.approx(0.8 * xc.ABSENT_FACTOR) and "no aorta" in why["aortic_root"]


def test_an_unsure_segmentation_does_not_vote_and_other_frames_are_left_alone():
    labels, conf = _plax_map()
    out, why = xc.crosscheck([_caliper("ivsd", 30, 70)], {3: (labels, np.full(labels.shape, 0.4, np.float32))}, 2.0)
    assert out[0].confidence == 0.8 and why == {}
    out, why = xc.crosscheck([_caliper("ivsd", 30, 70)], {5: (labels, conf)}, 2.0)
    assert out[0].confidence == 0.8 and why == {}
    unsure = np.full(labels.shape, 0.3, np.float32)
    root = Proposal("aortic_root", 3, ((10.0, 10.0), (10.0, 30.0)), None, "px", 0.8)
    out, why = xc.crosscheck([root], {3: (labels, unsure)}, None)
    assert out[0].confidence == 0.8 and why == {}


def test_factor_tolerance_grows_with_the_caliper():
    assert xc.caliper_factor(100.0, 110.0, None) == 1.0  # within 15 %
    assert xc.caliper_factor(10.0, 13.0, 2.0) == 1.0  # within 2 mm
    assert xc.caliper_factor(10.0, 20.0, 2.0) < 1.0
    assert xc.caliper_factor(10.0, 200.0, 2.0) == xc.MIN_FACTOR


def test_segments_give_one_polygon_per_structure_with_area_and_confidence():
    labels, conf = _plax_map()
    segs = segments(labels, conf, PLAX_SEG_CLASSES, frame=7, cm_per_px=0.05)
    by_name = {s.structure: s for s in segs}
    assert set(by_name) == {"septum", "lv"}
    assert by_name["septum"].area_cm2 == pytest.approx(20 * 120 * 0.05**2)
    assert by_name["lv"].confidence == pytest.approx(0.9)
    item = by_name["lv"].as_json()
    assert item["frame"] == 7 and len(item["polygon"]) >= 4
    xs, ys = zip(*item["polygon"], strict=True)
    assert min(ys) == 60 and max(ys) == 119 and min(xs) == 0 and max(xs) == 119


# --------------------------------------------------------------------------- in the engine


def _register_constant_plax_seg(folder, structure: str, mean_iou: float = 0.95) -> None:
    """A plax-seg that labels every pixel ``structure`` with confidence ~1 (zero weights, one large bias)."""
    import torch
    from models_fixtures import TEST_ARCH, TEST_INPUT_2D

    from echomeasure.models.builders import build_model
    from echomeasure.models.registry import WeightsEntry, register, save_weights

    model = build_model(TEST_ARCH, len(PLAX_SEG_CLASSES))
    last = model.m.classifier[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias[PLAX_SEG_CLASSES.index(structure)] = 20.0
    file = f"plax-seg-const-{structure}.pt"
    sha = save_weights(model, folder / file)
    register(WeightsEntry(name="plax-seg", version=f"const-{structure}", arch=TEST_ARCH, input_size=TEST_INPUT_2D,
                          channels=PLAX_SEG_CLASSES, file=file, sha256=sha, recipe="tests: constant map",
                          metrics={"own_mean_iou": mean_iou, "heldout_mean_iou": mean_iou}),
             weights_dir=folder)


@pytest.mark.slow
def test_measure_reports_plax_segmentations_and_lowers_calipers_the_segmentation_contradicts(
        random_weights_dir, tmp_path, monkeypatch):  # noqa: F811 (pytest fixture)
    import shutil

    from echomeasure.propose import clear_engines
    from echomeasure.propose.engine import propose, to_contract_json
    from echomeasure.propose.measure import load_deidentified
    from echomeasure.synthetic.studio import CaseJob, write_case

    write_case(tmp_path, CaseJob(0, "2d"), 11, small=True)
    clip = load_deidentified(tmp_path / "case_0000.dcm", secret=b"test")
    folder = tmp_path / "weights"
    shutil.copytree(random_weights_dir, folder)
    monkeypatch.setenv("ECHOMEASURE_CACHE", str(tmp_path / "cache"))
    clear_engines()
    base = to_contract_json(propose(clip, weights_dir=folder), "case.dcm")
    assert base["segmentations"] == []

    # a segmentation that sees only LV: LV polygons on the ED and ES frames, IVSd/LVPWd/root/LA contradicted
    _register_constant_plax_seg(folder, "lv")
    doc = to_contract_json(propose(clip, weights_dir=folder), "case.dcm")
    frames = {m["frame"] for m in doc["measurements"]}
    assert {s["structure"] for s in doc["segmentations"]} == {"lv"}
    assert {s["frame"] for s in doc["segmentations"]} == frames
    for s in doc["segmentations"]:
        assert s["area_cm2"] > 0 and s["confidence"] > 0.99 and len(s["polygon"]) >= 3
    before = {m["name"]: m["confidence"] for m in base["measurements"]}
    after = {m["name"]: m["confidence"] for m in doc["measurements"]}
    lengths = {m["name"]: float(np.hypot(*np.subtract(*m["points"]))) for m in doc["measurements"]}
    for name in ("ivsd", "lvpwd", "aortic_root", "la"):
        assert after[name] == pytest.approx(before[name] * xc.ABSENT_FACTOR, abs=1e-4)
        if lengths[name] > 0:  # a collapsed caliper has no line to read the segmentation along
            assert any(n.startswith(f"{name}:") and "segmentation" in n for n in doc["notices"])
    assert sum(lengths[n] > 0 for n in ("ivsd", "lvpwd", "aortic_root", "la")) >= 2

    # --per-frame: contours on every frame, segmented a few frames at a time (all at once held a
    # 300-frame clip's maps and a copy of its pixels: 2.7 GB), the calipers checked the same way
    batches = []
    real_predict = xc.predict
    monkeypatch.setattr(xc, "predict", lambda runner, frames, *a, **k: batches.append(len(frames))
                        or real_predict(runner, frames, *a, **k))
    per_frame = to_contract_json(propose(clip, weights_dir=folder, per_frame=True), "case.dcm")
    assert sorted(s["frame"] for s in per_frame["segmentations"]) == list(range(clip.n_frames))
    assert sum(batches) == clip.n_frames and max(batches) <= xc.SEG_CHUNK < clip.n_frames
    assert {m["name"]: m["confidence"] for m in per_frame["measurements"]} == after

    # a version not validated to segment well reports its contours but leaves the calipers alone
    _register_constant_plax_seg(folder, "septum", mean_iou=0.5)
    doc = to_contract_json(propose(clip, weights_dir=folder), "case.dcm")
    assert {s["structure"] for s in doc["segmentations"]} == {"septum"}
    assert {m["name"]: m["confidence"] for m in doc["measurements"]} == before
    clear_engines()


def test_plax_seg_runs_through_the_runner_with_the_torch_models_labels():
    """The measurement path runs plax-seg through ONNX Runtime; its labels equal torch's."""
    from echomeasure.models import registry
    from echomeasure.models.runtime import HeatmapRunner
    from echomeasure.models.segmentation import predict
    from echomeasure.synthetic.plax import render_plax
    from echomeasure.training.datasets import plax_params_for_seed

    try:
        loaded = registry.load_model("plax-seg")
    except Exception as exc:  # pragma: no cover - depends on the shipped weights
        pytest.skip(f"no plax-seg registered: {exc}")
    cine = render_plax(plax_params_for_seed(9_000_003, small=True), labels=False)
    frames = cine.frames[:2]
    box = (0, 0, frames.shape[2] - 1, frames.shape[1] - 1)
    size = tuple(loaded.entry.input_size)
    by_torch, conf_torch = predict(loaded.model, frames, box, size)
    runner = HeatmapRunner(loaded, backend="onnx")
    by_runner, conf_runner = predict(runner, frames, box, size)
    assert runner.backend == "onnx"
    assert (by_torch == by_runner).mean() > 0.999
    assert np.abs(conf_torch - conf_runner).max() < 1e-3
