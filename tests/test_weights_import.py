"""Importing the published EchoNet-Measurements checkpoints, ``weights list``, and proposing with them.

The checkpoints are fabricated at test time in the published layout and sizes (random weights,
full ResNet-50 shapes, ``m.`` prefixes); the decoding rules are checked with stand-in networks
whose heatmaps are known, so the expected points and velocities are exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from echonet_fixtures import copy_shipped_plax_linear, write_echonet_checkpoint, write_echonet_lvh

from echomeasure.cli import main
from echomeasure.models import echonet_measurements as em
from echomeasure.models import registry


@pytest.fixture(scope="module")
def checkpoint_dirs(tmp_path_factory) -> dict[str, Path]:
    """``good``: ivs (2 classes) and avvmax (1 class) in the authors' sub-folders;
    ``bad``: the same ivs plus an avvmax that is really a 2-class file (wrong shapes)."""
    root = tmp_path_factory.mktemp("echonet-ckpt")
    good = root / "good"
    ivs = write_echonet_checkpoint(good / "2D_models" / "ivs_weights.ckpt", 2, seed=1)
    write_echonet_checkpoint(good / "Doppler_models" / "avvmax_weights.ckpt", 1, seed=2)
    (good / "2D_models" / "rv_base_weights.ckpt").symlink_to(ivs)
    bad = root / "bad"
    bad.mkdir()
    (bad / "ivs_weights.ckpt").symlink_to(ivs)
    (bad / "avvmax_weights.ckpt").symlink_to(ivs)
    return {"good": good, "bad": bad}


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_import_registers_present_checkpoints_with_sha256(checkpoint_dirs, tmp_path, monkeypatch, capsys):
    weights = tmp_path / "weights"
    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(weights))
    rc, out, err = _run(capsys, "weights", "import", "echonet-measurements", str(checkpoint_dirs["good"]))
    assert rc == 0, err
    report = json.loads(out)
    assert {r["name"] for r in report["registered"]} == {"echonet-measurements-ivs", "echonet-measurements-avvmax"}
    # absent checkpoints and unsupported ones are named in notices, one per line
    assert "notice: lvid_weights.ckpt not found" in err
    assert "rv_base_weights.ckpt skipped" in err
    sources = {"echonet-measurements-ivs": checkpoint_dirs["good"] / "2D_models" / "ivs_weights.ckpt",
               "echonet-measurements-avvmax": checkpoint_dirs["good"] / "Doppler_models" / "avvmax_weights.ckpt"}
    for entry in em.family_entries(weights):
        assert entry.sha256 == registry.sha256_file(sources[entry.name])
        assert registry.verify_file(entry, weights).stat().st_size == sources[entry.name].stat().st_size
        assert entry.arch == "deeplabv3_resnet50" and entry.version == "1.0"
    assert not list(weights.glob(".*.tmp"))
    # the imported checkpoint loads strictly with the right number of outputs
    assert registry.load_model("echonet-measurements-avvmax", weights_dir=weights).model.num_outputs == 1

    # importing the same files again registers nothing new
    rc, out, err = _run(capsys, "weights", "import", "echonet-measurements", str(checkpoint_dirs["good"]))
    assert rc == 0 and json.loads(out)["registered"] == []
    assert "already registered as echonet-measurements-ivs 1.0" in err
    assert len(em.family_entries(weights)) == 2


def test_import_of_a_wrong_shaped_checkpoint_registers_nothing(checkpoint_dirs, tmp_path, monkeypatch, capsys):
    weights = tmp_path / "weights"
    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(weights))
    rc, out, err = _run(capsys, "weights", "import", "echonet-measurements", str(checkpoint_dirs["bad"]))
    assert rc == 2 and out == ""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "avvmax_weights.ckpt" in errors[0] and "shape" in errors[0]
    # not even the good ivs checkpoint of that folder was registered or copied
    assert registry.list_entries(weights) == []
    assert not weights.exists() or not list(weights.glob("*.ckpt"))


@pytest.mark.parametrize("what", ["missing", "empty"])
def test_import_needs_a_folder_with_checkpoints(what, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(tmp_path / "weights"))
    folder = tmp_path / "ckpt"
    if what == "empty":
        folder.mkdir()
    rc, out, err = _run(capsys, "weights", "import", "echonet-measurements", str(folder))
    assert rc == 2 and err.startswith("error: ") and str(folder) in err and err.count("\n") == 1
    assert registry.list_entries(tmp_path / "weights") == []


def test_weights_list_shows_every_version_with_data_and_metrics(checkpoint_dirs, tmp_path, monkeypatch, capsys):
    weights = tmp_path / "weights"
    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(weights))
    copy_shipped_plax_linear(weights)
    em.import_checkpoints(checkpoint_dirs["good"], weights_dir=weights)
    rc, out, _ = _run(capsys, "weights", "list", "--json")
    assert rc == 0
    rows = json.loads(out)
    assert [(r["name"], r["version"]) for r in rows] == [(e.name, e.version) for e in registry.list_entries(weights)]
    plax = next(r for r in rows if r["name"] == "plax-linear")
    assert plax["active"] and plax["metrics"]["own-style"]["mean_mae_mm"] > 0 and "synthetic" in plax["trained_on"]
    assert plax["thresholds"]["low_confidence_below"] > 0 and plax["decode"]["sigma_px"] > 0
    rc, out, _ = _run(capsys, "weights", "list")
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["name", "version", "active", "metrics"]
    assert len(lines) == 1 + len(rows)
    assert any(line.startswith("echonet-measurements-ivs") and "published checkpoint" in line for line in lines)
    assert any(line.startswith("plax-linear") and "own-style: MAE" in line for line in lines)


# --------------------------------------------------------------------------- decoding rules


def test_weighted_centroid_depth_order_and_scale_back():
    h, w = em.INPUT_SIZE_2D
    ys, xs = np.mgrid[0:h, 0:w]
    blob = lambda x, y: np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 5.0**2))  # noqa: E731
    probs = np.stack([blob(300.25, 350.5), blob(310.0, 100.75)])[None]  # channel 0 is the deeper end
    pts = em.weighted_centroids(probs)
    assert np.allclose(pts[0], [[300.25, 350.5], [310.0, 100.75]], atol=1e-6)
    ordered = em.order_by_depth(pts)
    assert np.allclose(ordered[0], [[310.0, 100.75], [300.25, 350.5]], atol=1e-6)
    # back to a 768 x 1024 frame: pixel-centre aligned, 1.6x both ways
    back = em.to_frame_pixels(ordered, (768, 1024))
    assert np.allclose(back[0, 0], [(310.0 + 0.5) * 1.6 - 0.5, (100.75 + 0.5) * 1.6 - 0.5])


def test_doppler_preprocessing_blacks_out_the_ecg_and_crops_from_the_region_top():
    image = np.full((60, 80, 3), 90, np.uint8)
    image[50, :] = (40, 230, 40)  # green ECG trace
    image[10, :] = (250, 250, 250)  # white text above the spectral region
    x = em.preprocess_doppler(image, top_row=20)
    assert x.shape == (1, 3, 40, 80) and x.dtype == np.float32
    assert np.all(x[0, :, 30] == 0.0)  # image row 50
    assert np.allclose(x[0, :, 0], 90 / 255.0)
    xy, p = em.argmax_peaks(np.pad(np.ones((1, 1, 1)), ((0, 0), (7, 2), (3, 4))))
    assert xy.tolist() == [[3.0, 7.0]] and p.tolist() == [1.0]


class _KnownHeatmaps(torch.nn.Module):
    """A stand-in network: logits with one sharp peak per channel at given input pixels."""

    def __init__(self, peaks_xy: list[tuple[int, int]]):
        super().__init__()
        self.peaks = peaks_xy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.full((x.shape[0], len(self.peaks), x.shape[2], x.shape[3]), -30.0)
        for c, (px, py) in enumerate(self.peaks):
            out[:, c, py, px] = 30.0
        return out


def _register_stand_ins(weights: Path, tasks: list[str]) -> None:
    entries = []
    for task in tasks:
        t = em.TASKS[task]
        file = f"{t.registry_name}-0.1.ckpt"
        (weights / file).parent.mkdir(parents=True, exist_ok=True)
        (weights / file).write_bytes(task.encode())
        entries.append(registry.WeightsEntry(
            name=t.registry_name, version="0.1", arch=em.ARCH, input_size=em.INPUT_SIZE_2D, channels=t.channels,
            file=file, sha256=registry.sha256_file(weights / file), extra={"family": em.FAMILY, "task": task}))
    registry.register_many(entries, weights_dir=weights)


def test_doppler_velocity_is_read_at_the_arg_max_through_the_region(tmp_path, monkeypatch):
    from echomeasure.ingest import read_clip
    from echomeasure.synthetic.studio import CaseJob, write_case

    write_case(tmp_path / "synth", CaseJob(0, "doppler", "av"), 11, small=True)
    clip = read_clip(next((tmp_path / "synth").glob("*.dcm")))
    region = next(r for r in clip.regions if r.is_spectral)
    weights = tmp_path / "weights"
    _register_stand_ins(weights, ["avvmax"])
    peak_crop = (40, 55)  # (x, y) in the crop that starts at the region's top row
    monkeypatch.setattr(em, "_load", lambda entry, wd, device: _KnownHeatmaps([peak_crop]))
    result = em.propose_echonet(clip, weights_dir=weights, device="cpu")
    (p,) = result.measurements
    row = region.y0 + peak_crop[1]
    expected_m_s = abs(region.delta_y) * (row - (region.y0 + region.ref_y0)) / 100.0  # cm/s -> m/s
    assert p.name == "av_vmax" and p.points == ((40.0, float(row)),)
    assert p.value == pytest.approx(abs(expected_m_s), rel=1e-9)
    assert result.model.name == em.FAMILY and p.model.name == "echonet-measurements-avvmax"


def test_2d_endpoints_are_centroids_ordered_by_depth_in_frame_pixels(tmp_path, monkeypatch):
    from echomeasure.ingest.clip import Clip

    frame = np.zeros((1, 240, 320, 3), np.uint8)
    clip = Clip(frames=frame, frame_time_ms=None, regions=(), source_kind="video", user_cm_per_px=0.05)
    weights = tmp_path / "weights"
    _register_stand_ins(weights, ["ivs"])
    monkeypatch.setattr(em, "_load", lambda entry, wd, device: _KnownHeatmaps([(320, 300), (330, 200)]))
    (p,) = em.propose_echonet(clip, weights_dir=weights, device="cpu").measurements
    expected = em.to_frame_pixels(np.array([[330.0, 200.0], [320.0, 300.0]]), (240, 320))
    assert np.allclose(p.points, expected, atol=1e-3)
    assert p.value == pytest.approx(np.hypot(*(expected[1] - expected[0])) * 0.05, rel=1e-4)
    assert p.name == "ivsd" and p.unit == "cm" and p.confidence > 0.99


def test_measure_with_an_unregistered_family_or_measurement_is_a_user_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(tmp_path / "weights"))
    lvh = tmp_path / "lvh"
    videos = write_echonet_lvh(lvh, seeds=(4242,), splits=("test",))
    video = lvh / videos[0].batch / f"{videos[0].name}.avi"
    rc, out, err = _run(capsys, "measure", str(video), "--model", "echonet-measurements", "-q")
    assert rc == 2 and "weights import echonet-measurements" in err
    _register_stand_ins(tmp_path / "weights", ["ivs"])
    rc, out, err = _run(capsys, "measure", str(video), "--model", "echonet-measurements", "--only", "la", "-q")
    assert rc == 2 and "la needs the EchoNet la checkpoint" in err


@pytest.mark.slow
def test_measure_with_imported_checkpoints_gives_the_contract_json(checkpoint_dirs, tmp_path, monkeypatch, capsys):
    """The real ResNet-50 at 480 x 640 on CPU, on the ED frame plax-linear picks (a few seconds)."""
    weights = tmp_path / "weights"
    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(weights))
    copy_shipped_plax_linear(weights)
    em.import_checkpoints(checkpoint_dirs["good"], weights_dir=weights)
    lvh = tmp_path / "lvh"
    videos = write_echonet_lvh(lvh, seeds=(4343,), splits=("test",))
    video = lvh / videos[0].batch / f"{videos[0].name}.avi"
    rc, ours, err = _run(capsys, "measure", str(video), "--scale", "0.08", "--only", "ivsd", "-q")
    assert rc == 0, err
    rc, theirs, err = _run(capsys, "measure", str(video), "--scale", "0.08", "--only", "ivsd", "-q",
                           "--model", "echonet-measurements:1.0")
    assert rc == 0, err
    ours, theirs = json.loads(ours), json.loads(theirs)
    assert set(theirs) == set(ours)
    assert set(theirs["measurements"][0]) == set(ours["measurements"][0])
    assert theirs["model"]["name"] == "echonet-measurements" and theirs["model"]["version"] == "1.0"
    (m,) = theirs["measurements"]
    assert m["name"] == "ivsd" and m["frame"] == ours["measurements"][0]["frame"]  # same ED frame
    (a, b) = m["points"]
    assert a[1] <= b[1] and all(0 <= x <= 320 and 0 <= y <= 240 for x, y in m["points"])
    assert m["value"] == pytest.approx(np.hypot(b[0] - a[0], b[1] - a[1]) * 0.08, abs=2e-3)

    # the imported checkpoints are selectable for evaluation on EchoNet-LVH too (only ivs imported here)
    rc, out, err = _run(capsys, "evaluate", "--dataset", "echonet-lvh", str(lvh), "--model", "echonet-measurements", "-q")
    assert rc == 0, err
    report = json.loads(out)
    assert report["model"]["name"] == "echonet-measurements" and list(report["measurements"]) == ["ivsd"]
    assert report["measurements"]["ivsd"]["n"] + report["measurements"]["ivsd"]["failed"] == 1


def test_register_many_is_all_or_nothing(tmp_path):
    weights = tmp_path / "weights"
    _register_stand_ins(weights, ["ivs"])
    before = (weights / "manifest.json").read_bytes()
    t = em.TASKS["la"]
    (weights / "la.ckpt").write_bytes(b"la")
    new = registry.WeightsEntry(name=t.registry_name, version="0.1", arch=em.ARCH, input_size=em.INPUT_SIZE_2D,
                                channels=t.channels, file="la.ckpt", sha256=registry.sha256_file(weights / "la.ckpt"))
    again = registry.get_entry("echonet-measurements-ivs", "0.1", weights)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_many([new, again], weights_dir=weights)
    with pytest.raises(registry.WeightsError):
        registry.register_many([new, registry.WeightsEntry.from_json({**new.to_json(), "name": "x", "sha256": "0" * 64})],
                               weights_dir=weights)
    assert (weights / "manifest.json").read_bytes() == before
    assert [e.name for e in registry.register_many([new], weights_dir=weights)] == [t.registry_name]
    assert len(registry.list_entries(weights)) == 2


def test_a_clip_that_is_not_plax_gets_no_echonet_plax_calipers(tmp_path, monkeypatch):
    """pydicom's real apical four-chamber cine, with the shipped plax-linear and view classifier."""
    import shutil

    from pydicom.data import get_testdata_file

    from echomeasure import config
    from echomeasure.ingest import read_clip

    weights = tmp_path / "weights"
    shipped = config.PROJECT_ROOT / "weights"
    if registry.active_version("view", shipped) is None:
        pytest.skip("no view classifier is shipped")
    for name in ("plax-linear", "view"):
        entry = registry.get_entry(name, None, shipped)
        weights.mkdir(exist_ok=True)
        shutil.copyfile(shipped / entry.file, weights / entry.file)
        registry.register(entry, weights_dir=weights)
    _register_stand_ins(weights, ["ivs"])
    monkeypatch.setattr(em, "_load", lambda entry, wd, device: pytest.fail("a PLAX checkpoint ran on an A4C clip"))
    clip = read_clip(get_testdata_file("examples_ybr_color.dcm"))
    result = em.propose_echonet(clip, weights_dir=weights, device="cpu")
    assert result.measurements == []
    assert result.view is not None and result.view["name"] != "plax"
    assert any("not a parasternal long-axis" in n for n in result.notices)


def test_checkpoints_in_a_linked_folder_are_found_and_a_link_loop_ends(tmp_path):
    """A user who links 2D_models/ to the disk holding the 159 MB files got 'no checkpoint found':
    Path.rglob does not follow folder links."""
    store = tmp_path / "big disk" / "2D_models"
    store.mkdir(parents=True)
    (store / "ivs_weights.ckpt").write_bytes(b"stand-in")
    src = tmp_path / "EchoNet-Measurements"
    src.mkdir()
    (src / "2D_models").symlink_to(store, target_is_directory=True)
    (src / "loop").symlink_to(src, target_is_directory=True)
    found = em._find_checkpoint(src, "ivs_weights.ckpt")
    assert found == src / "2D_models" / "ivs_weights.ckpt"
    assert em._find_checkpoint(src, "lvid_weights.ckpt") is None
