"""Random-weight model registries for the models / propose / measure tests.

Registered as a pytest plugin by ``tests/conftest.py``, so its fixtures need no import.  The weights are
randomly initialised (no trained accuracy is assumed) at a small input size so the tests stay
fast on one core; they go through the real save -> register -> load path with sha256 checks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from echomeasure.catalog import DOPPLER_CHANNELS, KEYPOINTS_2D

TEST_ARCH = "deeplabv3_mobilenet_v3_large"
TEST_INPUT_2D = (96, 96)
TEST_INPUT_DOPPLER = (64, 128)


def write_random_registry(folder: Path, *, seed: int = 0) -> Path:
    """Save random plax-linear and doppler-peaks weights into ``folder`` and register them."""
    # Imported here so that every test session does not pay for torch through the conftest plugin.
    import torch

    from echomeasure.models.builders import build_model
    from echomeasure.models.registry import WeightsEntry, register, save_weights

    torch.manual_seed(seed)
    for name, channels, size in (
        ("plax-linear", KEYPOINTS_2D, TEST_INPUT_2D),
        ("doppler-peaks", DOPPLER_CHANNELS, TEST_INPUT_DOPPLER),
    ):
        model = build_model(TEST_ARCH, len(channels))
        file = f"{name}-0.0-random.pt"
        sha = save_weights(model, folder / file)
        register(
            WeightsEntry(
                name=name,
                version="0.0-random",
                arch=TEST_ARCH,
                input_size=size,
                channels=channels,
                file=file,
                sha256=sha,
                trained_on="nothing (random initialisation for tests)",
                seed=seed,
                recipe="tests/models_fixtures.py write_random_registry",
            ),
            weights_dir=folder,
        )
    return folder


def copy_active_model(name: str, folder: Path) -> dict:
    """The project's active version of ``name`` copied into ``folder`` as a one-model registry
    (its weights file and a manifest); returns its manifest entry."""
    import json
    import shutil

    from echomeasure import config

    weights = config.weights_dir()
    manifest = json.loads((weights / "manifest.json").read_text())
    entry = next(e for e in manifest["models"] if e["name"] == name and e["version"] == manifest["active"][name])
    shutil.copy(weights / entry["file"], folder / entry["file"])
    (folder / "manifest.json").write_text(json.dumps({"format": manifest["format"], "active": {name: entry["version"]},
                                                      "models": [entry]}))
    return entry


@pytest.fixture(scope="session")
def random_weights_dir(tmp_path_factory) -> Path:
    """A weights folder with random plax-linear and doppler-peaks models (session-wide, read-only)."""
    import torch

    torch.set_num_threads(1)
    return write_random_registry(tmp_path_factory.mktemp("weights"))


@pytest.fixture()
def use_random_weights(random_weights_dir, tmp_path_factory, monkeypatch) -> Path:
    """Point ECHOMEASURE_WEIGHTS (and the ONNX cache) at the random registry for one test."""
    from echomeasure.propose import clear_engines

    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(random_weights_dir))
    monkeypatch.setenv("ECHOMEASURE_CACHE", str(random_weights_dir.parent / "cache"))
    clear_engines()
    yield random_weights_dir
    clear_engines()
