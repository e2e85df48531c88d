"""Bugs a new user's docs trial found in the CLI (train activation, finetune replay, help texts,
ingest's JSON line, deid's output, agreement markdown, demo --help, batch summary)."""

from __future__ import annotations

import json

import pytest

from echomeasure.cli import main
from echomeasure.models import registry


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


# --------------------------------------------------------------------------- 1. train --activate


def test_train_smoke_with_activate_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "w"
    assert main(["train", "--model", "plax-linear", "--smoke", "--activate", "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --activate") and "--smoke" in err[0]
    assert not (out / "manifest.json").exists()


@pytest.mark.slow
def test_train_activates_only_with_activate_and_smoke_never(tmp_path, capsys):
    out = tmp_path / "w"
    tiny = ["train", "--model", "doppler-peaks", "--steps", "2", "--cases", "2", "--eval-cases", "1",
            "--out", str(out), "-q", "--threads", "1"]
    assert main(tiny) == 0  # the first version in a folder is the only one: it is what is used
    first = _last_json(capsys.readouterr().out)
    assert first["active"] is True and registry.active_version("doppler-peaks", out) == first["version"]

    assert main(["train", "--model", "doppler-peaks", "--smoke", "--out", str(out), "-q", "--threads", "1"]) == 0
    smoke = _last_json(capsys.readouterr().out)
    assert smoke["version"].startswith("0.0-smoke") and smoke["active"] is False
    assert registry.active_version("doppler-peaks", out) == first["version"]

    assert main(tiny) == 0  # a normal run without --activate: registered, not used
    second = _last_json(capsys.readouterr().out)
    assert second["active"] is False and registry.active_version("doppler-peaks", out) == first["version"]

    assert main([*tiny, "--activate"]) == 0
    third = _last_json(capsys.readouterr().out)
    assert third["active"] is True and registry.active_version("doppler-peaks", out) == third["version"]
