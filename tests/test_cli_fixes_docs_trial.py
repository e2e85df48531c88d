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


# --------------------------------------------------------------------------- 2. finetune --replay-cases


def _capture_finetune_config(monkeypatch) -> list:
    import echomeasure.training.finetune as ft

    seen: list = []

    def fake(config, **kwargs):
        seen.append(config)
        raise ft.TrainingError("stop here")

    monkeypatch.setattr(ft, "finetune", fake)
    return seen


def test_finetune_replay_cases_defaults_to_the_documented_value_and_is_passed_on(tmp_path, monkeypatch, capsys):
    from echomeasure.cli import build_parser
    from echomeasure.training.finetune import DEFAULT_REPLAY_CASES

    seen = _capture_finetune_config(monkeypatch)
    base = ["finetune", "--db", f"sqlite:///{tmp_path / 'x.sqlite'}", "-q"]
    assert main(base) == 2 and main([*base, "--replay-cases", "3"]) == 2
    assert [c.replay_cases for c in seen] == [DEFAULT_REPLAY_CASES, 3]
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["finetune"]
    help_text = next(a.help for a in sub._actions if a.dest == "replay_cases")
    assert f"default {DEFAULT_REPLAY_CASES};" in help_text  # the help's figure is the code's


def test_finetune_replay_cases_is_refused_with_a_segmentation_model(tmp_path, capsys):
    rc = main(["finetune", "--model", "plax-seg", "--replay-cases", "5", "--db", f"sqlite:///{tmp_path / 'x.sqlite'}"])
    assert rc == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --replay-cases applies to keypoint models (--base); drop it with --model"]
