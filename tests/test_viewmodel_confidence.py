"""The review UI's low-confidence flag: each model version's own threshold from the registry.

Raw confidences are model-specific (the shipped PLAX model gives ~0.01-0.15), so the flag uses
the ``low_confidence_below`` that held-out evaluation recorded for the version that made the
proposal, and falls back to the fixed 0.5 when the registry cannot tell.
"""

from __future__ import annotations

import pytest
from ui_fixtures import prepare_store

from echomeasure.catalog import DOPPLER_CHANNELS, KEYPOINTS_2D
from echomeasure.models.registry import WeightsEntry, list_entries, register
from echomeasure.store.records import MeasurementState
from echomeasure.ui import viewmodel

ARCH = "deeplabv3_mobilenet_v3_large"


def _register(folder, name: str, version: str, metrics: dict) -> None:
    channels = KEYPOINTS_2D if name == "plax-linear" else DOPPLER_CHANNELS
    entry = WeightsEntry(name=name, version=version, arch=ARCH, input_size=(96, 96), channels=channels,
                         file=f"{name}-{version}.pt", sha256="a" * 64, metrics=metrics)
    register(entry, weights_dir=folder, verify=False)  # the flag needs the metrics, not the file


@pytest.fixture()
def weights(tmp_path):
    """A registry: plax-linear 2.0 flags below 0.08, 1.0 was measured before thresholds existed."""
    folder = tmp_path / "weights"
    folder.mkdir()
    _register(folder, "plax-linear", "1.0", {"mean_mae_mm": 1.2})
    _register(folder, "plax-linear", "2.0", {"mean_mae_mm": 1.0, "low_confidence_below": 0.08})
    _register(folder, "doppler-peaks", "1.0", {"mean_error_pct": 0.5, "low_confidence_below": 0.4})
    return folder


def _state(name: str = "lvidd", confidence: float | None = 0.05, model: tuple[str, str] | None = ("plax-linear", "2.0"),
           ) -> MeasurementState:
    pts = ((10.0, 20.0), (10.0, 60.0))
    return MeasurementState(
        clip_id=1, measurement=name, status="proposed", frame_index=3, points=pts, value=4.8, unit="cm",
        proposal_id=7 if model else None, proposed_frame_index=3, proposed_points=pts, proposed_value=4.8,
        proposed_unit="cm", pixel_length_px=40.0, confidence=confidence, model_version_id=1 if model else None,
        model_name=model[0] if model else None, model_version=model[1] if model else None, proposed_at=None,
        review_id=None, reviewer=None, reviewed_at=None, seconds_spent=None, n_reviews=0,
    )


def test_flag_uses_the_threshold_of_the_model_version_that_proposed(weights):
    thresholds = viewmodel.RegistryThresholds(weights)
    below = viewmodel.measurement_entry(_state(confidence=0.05), thresholds)
    above = viewmodel.measurement_entry(_state(confidence=0.10), thresholds)
    assert below["low_confidence"] is True and below["low_confidence_below"] == pytest.approx(0.08)
    assert above["low_confidence"] is False
    # the same confidence from a Doppler model with its own (higher) threshold is flagged
    doppler = viewmodel.measurement_entry(_state("av_vmax", 0.10, ("doppler-peaks", "1.0")), thresholds)
    assert doppler["low_confidence"] is True and doppler["low_confidence_below"] == pytest.approx(0.4)
    # without a lookup, the fixed threshold (pure, no registry)
    assert viewmodel.measurement_entry(_state(confidence=0.10))["low_confidence"] is True


@pytest.mark.parametrize("model", [("plax-linear", "1.0"), ("plax-linear", "9.9-gone"), ("no-such-model", "1.0")])
def test_unknown_version_or_missing_metric_falls_back_to_the_fixed_threshold(weights, model):
    thresholds = viewmodel.RegistryThresholds(weights)
    assert thresholds(*model) == viewmodel.LOW_CONFIDENCE_THRESHOLD
    entry = viewmodel.measurement_entry(_state(confidence=0.10, model=model), thresholds)
    assert entry["low_confidence"] is True  # 0.10 < 0.5
    assert viewmodel.measurement_entry(_state(confidence=0.6, model=model), thresholds)["low_confidence"] is False


def test_hand_placed_measurement_is_never_flagged_and_needs_no_lookup():
    def refuse(name, version):
        raise AssertionError("no proposal, no lookup")

    entry = viewmodel.measurement_entry(_state(confidence=None, model=None), refuse)
    assert entry["low_confidence"] is False and entry["low_confidence_below"] is None


def test_registry_is_read_once_per_model_version(weights):
    reads = []

    def counting(folder):
        reads.append(folder)
        return list_entries(folder)

    thresholds = viewmodel.RegistryThresholds(weights, list_entries=counting)
    states = [_state(n, c) for n, c in (("ivsd", 0.02), ("lvidd", 0.5), ("la", 0.07))]
    states.append(_state("lvids", 0.07, ("plax-linear", "1.0")))
    value = viewmodel.viewer_value(1, states, reload=True, thresholds=thresholds)
    assert [m["low_confidence"] for m in value["measurements"]] == [True, False, True, True]
    viewmodel.viewer_value(1, states, thresholds=thresholds)
    assert len(reads) == 2  # plax-linear 2.0 and 1.0, once each


def test_registry_error_falls_back_and_is_retried(weights, caplog):
    manifest = weights / "manifest.json"
    good = manifest.read_text()
    manifest.write_text("{ not json")
    thresholds = viewmodel.RegistryThresholds(weights)
    entry = viewmodel.measurement_entry(_state(confidence=0.10), thresholds)  # does not raise
    assert entry["low_confidence"] is True and entry["low_confidence_below"] == viewmodel.LOW_CONFIDENCE_THRESHOLD
    assert "low-confidence threshold" in caplog.text
    manifest.write_text(good)  # the failure was not cached: the next clip gets the real threshold
    assert viewmodel.measurement_entry(_state(confidence=0.10), thresholds)["low_confidence"] is False

    def broken(folder):
        raise RuntimeError("disk on fire")

    flaky = viewmodel.RegistryThresholds(weights, list_entries=broken)
    assert flaky("plax-linear", "2.0") == viewmodel.LOW_CONFIDENCE_THRESHOLD


def test_unusable_threshold_values_fall_back(tmp_path):
    folder = tmp_path / "w"
    folder.mkdir()
    _register(folder, "plax-linear", "a", {"low_confidence_below": 0.0})
    _register(folder, "plax-linear", "b", {"low_confidence_below": float("nan")})
    thresholds = viewmodel.RegistryThresholds(folder)
    assert thresholds("plax-linear", "a") == viewmodel.LOW_CONFIDENCE_THRESHOLD
    assert thresholds("plax-linear", "b") == viewmodel.LOW_CONFIDENCE_THRESHOLD


def test_the_app_flags_with_the_registry_threshold_of_the_proposing_model(tmp_path, monkeypatch):
    """The running app reads ``$ECHOMEASURE_WEIGHTS``: the UI test model gets a threshold of 0.9."""
    from gradio_client import Client
    from ui_fixtures import CONFIDENCE, TEST_MODEL, free_port

    from echomeasure.ui.app import build_app, launch

    folder = tmp_path / "weights"
    folder.mkdir()
    _register(folder, TEST_MODEL[0], TEST_MODEL[1], {"low_confidence_below": 0.9})
    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(folder))
    info = prepare_store(tmp_path)
    app = build_app(info.url)
    try:
        _, url, _ = launch(app, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
        client = Client(url, verbose=False)
        states = client.predict(info.clip_id, api_name="/measurements")
        flags = {m["name"]: m["low_confidence"] for m in states}
        assert flags == {n: c < 0.9 for n, c in CONFIDENCE.items()}
        assert flags["lvpwd"] and flags["la"] and not flags["lvidd"]  # 0.88 and 0.35 below 0.9, 0.95 not
    finally:
        app.close()
        app.echomeasure_store.close()



def test_a_model_whose_confidence_did_not_rank_errors_flags_nothing(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    _register(folder, "plax-linear", "3.0", {"low_confidence_below": 0.3, "flagged_mae_ratio": 0.85})
    _register(folder, "plax-linear", "3.1", {"low_confidence_below": 0.3, "flagged_mae_ratio": 2.1})
    thresholds = viewmodel.RegistryThresholds(folder)
    # 0.08: below the threshold, above the doubt level (flags.DOUBTFUL_CONFIDENCE, always flagged)
    useless = viewmodel.measurement_entry(_state(confidence=0.08, model=("plax-linear", "3.0")), thresholds)
    useful = viewmodel.measurement_entry(_state(confidence=0.08, model=("plax-linear", "3.1")), thresholds)
    assert useless["low_confidence"] is False and useless["low_confidence_below"] == 0.0
    assert useful["low_confidence"] is True
    doubted = viewmodel.measurement_entry(_state(confidence=0.05, model=("plax-linear", "3.0")), thresholds)
    assert doubted["low_confidence"] is True


def test_below_the_held_out_floor_is_flagged_even_where_confidence_does_not_rank_errors(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    _register(folder, "plax-linear", "4.0",
              {"low_confidence_below": 0.3, "flagged_mae_ratio": 0.85, "confidence_floor": 0.12})
    thresholds = viewmodel.RegistryThresholds(folder)
    typical = viewmodel.measurement_entry(_state(confidence=0.2, model=("plax-linear", "4.0")), thresholds)
    unseen = viewmodel.measurement_entry(_state(confidence=0.01, model=("plax-linear", "4.0")), thresholds)
    assert typical["low_confidence"] is False  # inside the validated range: no misleading flag
    assert unseen["low_confidence"] is True and unseen["low_confidence_below"] == pytest.approx(0.12)
