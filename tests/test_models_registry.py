"""Weights registry: manifest, sha256 check, active versions, EchoNet checkpoint layouts."""

from __future__ import annotations

import json

import pytest
import torch

from echomeasure.catalog import KEYPOINTS_2D
from echomeasure.errors import WeightsError
from echomeasure.models.builders import build_model
from echomeasure.models.registry import (
    WeightsEntry,
    active_version,
    get_entry,
    list_entries,
    load_checkpoint,
    load_model,
    register,
    save_weights,
    set_active,
    update_entry,
)

ARCH = "deeplabv3_mobilenet_v3_large"


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(1)
    return build_model(ARCH, 2).eval()


def _entry(file: str, sha: str, version: str = "1.0", **kw) -> WeightsEntry:
    return WeightsEntry(
        name="plax-linear", version=version, arch=ARCH, input_size=(96, 96),
        channels=KEYPOINTS_2D[:2], file=file, sha256=sha, **kw,
    )


def test_build_model_returns_logits_at_input_resolution():
    model = build_model(ARCH, 8).eval()
    with torch.inference_mode():
        out = model(torch.rand(2, 3, 64, 80))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 8, 64, 80)
    assert not any(k.startswith("m.aux_classifier") for k in model.state_dict())


def test_register_then_load_checks_sha_and_returns_same_weights(tmp_path, small_model):
    sha = save_weights(small_model, tmp_path / "a.pt", precision="fp32")
    register(_entry("a.pt", sha, metrics={"own-style": {"lvidd_mae_mm": 0.9}}), weights_dir=tmp_path)
    loaded = load_model("plax-linear", weights_dir=tmp_path)
    assert loaded.version == "1.0" and loaded.sha256 == sha
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(loaded.model(x), small_model(x), atol=1e-5)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["active"]["plax-linear"] == "1.0"
    assert manifest["format"] == 2
    assert manifest["models"][0]["metrics"] == {"own-style": {"lvidd_mae_mm": 0.9}}
    assert manifest["models"][0]["created"]


def test_sha_mismatch_is_refused_with_what_to_do(tmp_path, small_model):
    sha = save_weights(small_model, tmp_path / "a.pt")
    register(_entry("a.pt", sha), weights_dir=tmp_path)
    with open(tmp_path / "a.pt", "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(WeightsError, match=r"has sha256 .* manifest says .*echomeasure train"):
        load_model("plax-linear", weights_dir=tmp_path)


def test_missing_manifest_tells_user_how_to_get_weights(tmp_path):
    with pytest.raises(WeightsError, match="echomeasure train"):
        load_model("plax-linear", weights_dir=tmp_path)


def test_active_version_selectable_and_versions_immutable(tmp_path, small_model):
    sha = save_weights(small_model, tmp_path / "a.pt")
    register(_entry("a.pt", sha, version="1.0"), weights_dir=tmp_path)
    register(_entry("a.pt", sha, version="1.1", parent="1.0"), weights_dir=tmp_path)
    assert active_version("plax-linear", tmp_path) == "1.1"
    set_active("plax-linear", "1.0", weights_dir=tmp_path)
    assert get_entry("plax-linear", weights_dir=tmp_path).version == "1.0"
    assert [e.version for e in list_entries(tmp_path)] == ["1.0", "1.1"]
    with pytest.raises(ValueError, match="already registered"):
        register(_entry("a.pt", sha, version="1.1"), weights_dir=tmp_path)
    with pytest.raises(WeightsError, match="known versions: 1.0, 1.1"):
        load_model("plax-linear", "9.9", weights_dir=tmp_path)


def test_entry_refuses_channels_outside_the_catalogue():
    with pytest.raises(ValueError, match="KEYPOINTS_2D"):
        WeightsEntry(name="x", version="1", arch=ARCH, input_size=(96, 96), channels=("lvidd_top",),
                     file="x.pt", sha256="0" * 64)


@pytest.mark.parametrize("layout", ["m_prefix", "state_dict_module", "plain"])
def test_echonet_checkpoint_layouts_load(tmp_path, small_model, layout):
    plain = {k[2:]: v for k, v in small_model.state_dict().items()}  # torchvision keys
    # EchoNet checkpoints were trained with an aux head: its keys must be dropped
    aux = {"aux_classifier.0.weight": torch.zeros(10, 40, 3, 3)}
    if layout == "m_prefix":
        obj = {f"m.{k}": v for k, v in {**plain, **aux}.items()}
    elif layout == "state_dict_module":
        obj = {"state_dict": {f"module.{k}": v for k, v in {**plain, **aux}.items()}, "epoch": 45}
    else:
        obj = dict(plain)
    torch.save(obj, tmp_path / "ck.pt")
    model = load_checkpoint(tmp_path / "ck.pt", ARCH, 2)
    x = torch.rand(1, 3, 48, 48)
    with torch.inference_mode():
        assert torch.allclose(model(x), small_model(x), atol=1e-5)


def test_checkpoint_with_wrong_output_channels_refused(tmp_path, small_model):
    torch.save(small_model.state_dict(), tmp_path / "two.pt")
    with pytest.raises(WeightsError, match=r"shape .* needs"):
        load_checkpoint(tmp_path / "two.pt", ARCH, 1)


def test_checkpoint_of_another_architecture_refused(tmp_path, small_model):
    torch.save(small_model.state_dict(), tmp_path / "mnv3.pt")
    with pytest.raises(WeightsError, match="does not fit a deeplabv3_resnet50"):
        load_checkpoint(tmp_path / "mnv3.pt", "deeplabv3_resnet50", 2)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated"])
def test_corrupt_checkpoint_refused(tmp_path, content):
    (tmp_path / "bad.pt").write_bytes(content)
    with pytest.raises(WeightsError, match="corrupt"):
        load_checkpoint(tmp_path / "bad.pt", ARCH, 2)


def test_truncated_real_checkpoint_refused(tmp_path, small_model):
    save_weights(small_model, tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError):
        load_checkpoint(tmp_path / "cut.pt", ARCH, 2)


def test_checkpoint_with_nan_weights_refused(tmp_path, small_model):
    state = {k: v.clone() for k, v in small_model.state_dict().items()}
    key = next(k for k in state if k.endswith("classifier.4.weight"))
    state[key][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(WeightsError, match="NaN or infinite"):
        load_checkpoint(tmp_path / "nan.pt", ARCH, 2)


def test_int8_weights_are_compact_deterministic_and_close_to_fp32(tmp_path, small_model):
    sha_a = save_weights(small_model, tmp_path / "a.pt")  # the default: int8, gzip
    sha_b = save_weights(small_model, tmp_path / "b.pt")
    save_weights(small_model, tmp_path / "f.pt", precision="fp32")
    assert sha_a == sha_b  # same weights, same bytes: the manifest sha256 is reproducible
    assert (tmp_path / "a.pt").read_bytes()[:2] == b"\x1f\x8b"
    assert (tmp_path / "a.pt").stat().st_size < (tmp_path / "f.pt").stat().st_size / 3.5
    model = load_checkpoint(tmp_path / "a.pt", ARCH, 2)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    ref_state, got_state = small_model.state_dict(), model.state_dict()
    quantised = 0
    for k, ref in ref_state.items():
        got = got_state[k]
        if ref.is_floating_point() and ref.ndim >= 2:
            # per output channel, the rounding error is at most half a step of max|w| / 127
            step = ref.reshape(ref.shape[0], -1).abs().amax(1) / 127
            err = (got - ref).reshape(ref.shape[0], -1).abs().amax(1)
            assert bool((err <= step / 2 + 1e-7).all()), k
            quantised += int(not torch.equal(got, ref))
        else:
            assert torch.equal(got, ref.to(got.dtype)), k  # biases and BatchNorm stay exact
    assert quantised > 50  # the conv weights really were stored as int8


def test_corrupt_int8_file_refused(tmp_path, small_model):
    save_weights(small_model, tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="corrupt"):
        load_checkpoint(tmp_path / "cut.pt", ARCH, 2)


def test_update_entry_rerecords_a_version_and_swaps_its_file_only_when_the_sha_matches(tmp_path, small_model):
    from dataclasses import replace

    sha = save_weights(small_model, tmp_path / "a.pt", precision="fp32")
    register(_entry("a.pt", sha, metrics={"own-style": {"lvidd_mae_mm": 2.0}}), weights_dir=tmp_path)
    # re-measured metrics: same file
    update_entry(replace(get_entry("plax-linear", weights_dir=tmp_path), metrics={"own-style": {"lvidd_mae_mm": 0.4}}),
                 weights_dir=tmp_path)
    assert get_entry("plax-linear", weights_dir=tmp_path).metric("lvidd_mae_mm") == 0.4
    # the same weights stored compactly: file and sha replaced together, the model still loads
    (tmp_path / "new").mkdir()
    new_sha = save_weights(small_model, tmp_path / "new" / "a.pt")
    with pytest.raises(WeightsError, match="sha256"):
        update_entry(replace(get_entry("plax-linear", weights_dir=tmp_path), sha256="0" * 64),
                     weights_dir=tmp_path, new_file=tmp_path / "new" / "a.pt")
    assert load_model("plax-linear", weights_dir=tmp_path).sha256 == sha  # nothing half-written
    update_entry(replace(get_entry("plax-linear", weights_dir=tmp_path), sha256=new_sha),
                 weights_dir=tmp_path, new_file=tmp_path / "new" / "a.pt")
    assert load_model("plax-linear", weights_dir=tmp_path).sha256 == new_sha
    assert [e.version for e in list_entries(tmp_path)] == ["1.0"]
    with pytest.raises(WeightsError, match="not registered"):
        update_entry(_entry("a.pt", new_sha, version="9.9"), weights_dir=tmp_path)


# --------------------------------------------------------------------------- typed entries, format 1


#: A manifest entry as format 1 wrote it: flat metrics with the flag thresholds among them, decode
#: settings (heatmap sigma, shift, a site's edge offsets) in ``extra``.
FORMAT_1_ENTRY = {
    "name": "plax-linear", "version": "1.1-ft1", "arch": ARCH, "input_size": [96, 96],
    "normalisation": "unit", "channels": list(KEYPOINTS_2D[:2]), "file": "a.pt", "sha256": "a" * 64,
    "trained_on": "reviews", "seed": 0, "recipe": "echomeasure finetune", "parent": "1.1",
    "created": "2026-01-01T00:00:00+00:00", "num_params": 10,
    "metrics": {"lvidd_mae_mm": 0.8, "mean_mae_mm": 0.7, "low_confidence_below": 0.12,
                "confidence_floor": 0.004, "flagged_mae_ratio": 1.9, "flagged_pct": 25.0,
                "reviews_endpoint_mae_mm": 1.1, "own_mean_iou": 0.9, "heldout_mean_iou": 0.8,
                "heldout_style_plax_accuracy_pct": 97.0},
    "extra": {"sigma_px": 6.0, "max_shift_px": 24.0, "loss": "bce",
              "decode": {"refine_edges": True, "edge_offsets_mm": {"septum_lv": -1.0},
                         "edge_offset_samples": {"septum_lv": 7}}},
}


def _write_manifest(folder, *entries, fmt=1):
    folder.mkdir(exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"format": fmt, "active": {}, "models": list(entries)}))


def test_a_format_1_manifest_entry_reads_as_typed_decode_thresholds_and_metrics_by_protocol(tmp_path):
    from echomeasure.models.decode import DecodeSettings
    from echomeasure.models.registry import FlagThresholds

    _write_manifest(tmp_path, FORMAT_1_ENTRY)
    e = get_entry("plax-linear", "1.1-ft1", tmp_path)
    assert e.decode == DecodeSettings(sigma_px=6.0, max_shift_px=24.0, edge_offsets_mm={"septum_lv": -1.0})
    assert e.thresholds == FlagThresholds(low_confidence_below=0.12, confidence_floor=0.004, flagged_mae_ratio=1.9)
    assert e.metrics == {
        "own-style": {"lvidd_mae_mm": 0.8, "mean_mae_mm": 0.7, "flagged_pct": 25.0, "mean_iou": 0.9},
        "held-out-style": {"mean_iou": 0.8, "plax_accuracy_pct": 97.0},
        "review-holdout": {"endpoint_mae_mm": 1.1},
    }
    # what extra["decode"] held besides the settings stays; nothing that changes inference is left in extra
    assert e.extra == {"loss": "bce", "decode": {"edge_offset_samples": {"septum_lv": 7}}}
    assert e.metric("mean_iou", "held-out-style") == 0.8 and e.metric("mean_iou", "echonet-lvh") is None


def test_format_1_entries_keep_working_beside_new_ones_and_are_not_rewritten(tmp_path, small_model):
    from dataclasses import replace

    from echomeasure.propose.flags import entry_threshold

    sha = save_weights(small_model, tmp_path / "b.pt", precision="fp32")
    _write_manifest(tmp_path, FORMAT_1_ENTRY)
    old = get_entry("plax-linear", "1.1-ft1", tmp_path)
    assert entry_threshold(old) == 0.12  # the flag reads the converted thresholds
    register(replace(old, version="2.0", file="b.pt", sha256=sha, created=""), weights_dir=tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["format"] == 2
    assert manifest["models"][0] == FORMAT_1_ENTRY  # the old entry as it was
    new = manifest["models"][1]
    assert new["decode"] == {"sigma_px": 6.0, "max_shift_px": 24.0, "edge_offsets_mm": {"septum_lv": -1.0}}
    assert new["thresholds"]["low_confidence_below"] == 0.12 and "sigma_px" not in new["extra"]
    assert new["metrics"]["review-holdout"] == {"endpoint_mae_mm": 1.1}
    # both read back to the same typed settings
    assert get_entry("plax-linear", "2.0", tmp_path).decode == old.decode
    assert load_model("plax-linear", "2.0", tmp_path).sha256 == sha


def test_the_shipped_manifest_reads_as_typed_entries():
    entries = list_entries()
    if not entries:  # pragma: no cover - depends on the shipped weights folder
        pytest.skip("no shipped manifest")
    by_key = {(e.name, e.version): e for e in entries}
    plax = by_key.get(("plax-linear", "1.1"))
    if plax is not None:
        assert plax.decode.sigma_px == 6.0 and plax.decode.max_shift_px == 24.0
        assert plax.thresholds.low_confidence_below is not None
        assert plax.metric("mean_mae_mm") is not None and "low_confidence_below" not in plax.metrics["own-style"]
    for e in entries:
        assert all(isinstance(v, dict) for v in e.metrics.values())


def test_typed_entry_settings_refuse_bad_values():
    from echomeasure.models.decode import DecodeSettings

    with pytest.raises(ValueError, match="sigma_px"):
        DecodeSettings(sigma_px=0)
    with pytest.raises(ValueError, match="max_shift_px"):
        DecodeSettings(max_shift_px=float("nan"))
    with pytest.raises(ValueError, match="protocol"):
        _entry("a.pt", "a" * 64, metrics={"own-style": {"x": 1.0}, "lvidd_mae_mm": 0.4})


def test_registering_without_activating_keeps_the_version_in_use(tmp_path, small_model):
    """A manifest that names no active version uses the last registered one: registering another
    without activating it must not make it the one in use (a fine-tune with --activate no into a
    folder whose first version was never pinned switched every measurement to the child)."""
    from echomeasure.models.registry import publish, register_many

    sha = save_weights(small_model, tmp_path / "a.pt")
    register(_entry("a.pt", sha, version="1.0"), weights_dir=tmp_path, activate=False)
    assert active_version("plax-linear", tmp_path) == "1.0"  # the only one
    register(_entry("a.pt", sha, version="1.1"), weights_dir=tmp_path, activate=False)
    assert active_version("plax-linear", tmp_path) == "1.0"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    sha2 = save_weights(small_model, scratch / "b.pt")
    publish(_entry("b.pt", sha2, version="1.2"), scratch / "b.pt", weights_dir=tmp_path, activate=False)
    assert active_version("plax-linear", tmp_path) == "1.0"
    (tmp_path / "c.pt").write_bytes((scratch / "b.pt").read_bytes())
    register_many([_entry("c.pt", sha2, version="1.3")], weights_dir=tmp_path, activate=False)
    assert active_version("plax-linear", tmp_path) == "1.0"
    publish(_entry("b.pt", sha2, version="1.4"), scratch / "b.pt", weights_dir=tmp_path / "other", activate=False)
    assert active_version("plax-linear", tmp_path / "other") == "1.4"  # the first of its folder
