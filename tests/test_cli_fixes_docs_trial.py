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


# --------------------------------------------------------------------------- 3. help and error texts


def _help_of(command: list[str], dest: str) -> str:
    """The help text of option ``dest`` of a (sub-)command, as --help prints it (before wrapping)."""
    from echomeasure.cli import build_parser

    parser = build_parser()
    for word in command:
        parser = next(a for a in parser._actions if a.dest and a.dest.endswith("command")).choices[word]
    action = next(a for a in parser._actions if a.dest == dest)
    return action.help % vars(action)


def _keypoint_models() -> list[str]:
    from echomeasure.catalog import CATALOG

    return sorted({m.model for m in CATALOG.values() if m.model})


def test_measure_model_help_names_every_kind_of_model_the_option_takes():
    from echomeasure.models.echonet_measurements import FAMILY
    from echomeasure.models.segmentation import PLAX_SEG_MODEL
    from echomeasure.training.mask_folder import model_name
    from echomeasure.training.seg_datasets import APICAL_SEG

    text = _help_of(["measure"], "model")
    for name in [*_keypoint_models(), FAMILY, PLAX_SEG_MODEL, APICAL_SEG, model_name("<folder>")]:
        assert name in text, name


def test_evaluate_model_help_gives_each_datasets_default_model():
    from echomeasure.training.mask_folder import model_name
    from echomeasure.training.seg_datasets import APICAL_SEG, SEG_DATASETS

    text = _help_of(["evaluate"], "model")
    assert APICAL_SEG in text and model_name("<folder>") in text and "plax-linear" in text
    dataset_help = _help_of(["evaluate"], "dataset")
    assert all(d in dataset_help for d in ("echonet-lvh", *SEG_DATASETS))


def test_db_init_help_gives_the_sqlite_default(monkeypatch):
    from echomeasure import config

    monkeypatch.delenv("ECHOMEASURE_DB")
    default = config.sqlite_file(config.db_url())
    shown = default.relative_to(config.PROJECT_ROOT) if config.SOURCE_CHECKOUT else default
    for command in (["db", "init"], ["db", "backup"], ["ingest"], ["finetune"], ["demo"]):
        text = _help_of(command, "db")
        assert "$ECHOMEASURE_DB" in text and f"SQLite at {shown}" in text, command


def test_train_without_model_names_every_dataset(capsys):
    from echomeasure.training.seg_datasets import SEG_DATASETS

    assert main(["train"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: give --model ")
    assert all(name in line for name in (*_keypoint_models(), "echonet-lvh", *SEG_DATASETS))


def test_measure_unknown_model_lists_the_registered_segmentation_models(tmp_path, monkeypatch, capsys):
    from echomeasure.models.registry import WeightsEntry, register

    register(WeightsEntry(name="heart-seg", version="1.0", arch="deeplabv3_mobilenet_v3_large", input_size=(64, 64),
                          channels=("background", "lv"), file="heart-seg-1.0.pt", sha256="0" * 64,
                          trained_on="test", seed=0, recipe="test"), weights_dir=tmp_path, verify=False)
    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(tmp_path))
    assert main(["measure", str(tmp_path / "never-read.dcm"), "--model", "foo"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --model foo: unknown model;")
    assert all(name in line for name in (*_keypoint_models(), "echonet-measurements", "heart-seg", "<folder>-seg"))


# --------------------------------------------------------------------------- 4. ingest's JSON line


@pytest.mark.slow  # ~10 s: view classifier + apical segmentation of a 40-frame cine
def test_ingest_of_an_apical_cine_counts_its_contours_and_volumes_and_warns_of_nothing(tmp_path, capsys):
    from echomeasure import config
    from echomeasure.store import contours, open_store

    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    assert main(["ingest", str(config.EXAMPLES_DIR / "case_0000_a4c.dcm"), "--db", url]) == 0
    line = _last_json(capsys.readouterr().out)
    with open_store(url) as store:
        n_contours = len(contours.contour_proposals(store, line["clip_id"]))
        n_volumes = len(contours.volumes(store, line["clip_id"]))
    assert line["proposals"] == 0  # calipers: an apical cine has none
    assert line["contours"] == n_contours > 0 and line["volumes"] == n_volumes > 0
    assert not any("PLAX" in w for w in line["warnings"]), line["warnings"]
    assert any("no PLAX calipers" in n for n in line["notices"])


def test_the_not_plax_notice_stays_a_warning_when_nothing_was_segmented():
    from types import SimpleNamespace

    from echomeasure.pipeline import _split_routing_notice

    notice = ("this clip looks like apical two-chamber (a2c, confidence 0.91), not a parasternal long-axis view: "
              "no PLAX calipers are proposed; measurements can still be added by hand")
    doubt = "view uncertain (a2c 0.51, a4c 0.40): check the view and the proposals"
    bare = SimpleNamespace(view={"name": "a2c"}, segmentations=[], volumes=[])
    assert _split_routing_notice(bare, [notice, doubt]) == ((notice, doubt), ())
    routed = SimpleNamespace(view={"name": "a2c"}, segmentations=[{"structure": "lv"}], volumes=[])
    assert _split_routing_notice(routed, [notice, doubt]) == ((doubt,), (notice,))


# --------------------------------------------------------------------------- 5. deid's output


@pytest.fixture()
def avi_clip(tmp_path):
    import numpy as np

    from echomeasure.ingest.video_io import encode_video

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (4, 96, 128, 3), dtype=np.uint8)
    path = tmp_path / "clip.avi"
    path.write_bytes(encode_video(frames, "avi", 40.0))
    return path


def _deid(src, out, *extra) -> int:
    return main(["deid", str(src), str(out), "--secret", "s", "--no-text-search", *extra])


def test_deid_refuses_an_output_extension_of_another_container(avi_clip, tmp_path, capsys):
    out = tmp_path / "OUT.mp4"
    assert _deid(avi_clip, out) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {out}: ") and "AVI" in line and ".avi" in line
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi"]


def test_deid_writes_the_container_its_extension_names(avi_clip, tmp_path, capsys):
    from echomeasure.ingest.video_io import sniff

    out = tmp_path / "OUT.avi"
    assert _deid(avi_clip, out) == 0
    assert sniff(out) == ("video", "avi") and _last_json(capsys.readouterr().out)["output"] == str(out)


def test_deid_refuses_an_existing_output_unless_force(avi_clip, tmp_path, capsys):
    out = tmp_path / "OUT.avi"
    out.write_bytes(b"earlier copy")
    assert _deid(avi_clip, out) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"error: {out}: already exists; nothing was written (add --force to replace it)"
    assert out.read_bytes() == b"earlier copy"
    assert _deid(avi_clip, out, "--force") == 0
    assert out.read_bytes() != b"earlier copy" and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_deid_of_dicom_accepts_a_name_without_extension(tmp_path, capsys):
    from echomeasure import config

    out = tmp_path / "IM0001"
    assert _deid(config.EXAMPLES_DIR / "case_0000.dcm", out) == 0
    assert out.read_bytes()[128:132] == b"DICM"
    assert _deid(config.EXAMPLES_DIR / "case_0000.dcm", tmp_path / "copy.png") == 2
    assert "DICOM" in capsys.readouterr().err


# --------------------------------------------------------------------------- 6. minor


def test_agreement_markdown_does_not_escape_plain_parentheses():
    from echomeasure.agreement import Read, agreement, report_markdown

    reads = [Read(clip, "lvidd", "alice", 4.0 + clip / 10) for clip in range(5)]
    md = report_markdown(agreement(reads, []))
    line = next(ln for ln in md.splitlines() if ln.startswith("| lvidd |"))
    assert "fewer than 2 readers (1: alice)" in line and "\\(" not in md
    hostile = report_markdown(agreement([Read(c, "lvidd", "x [y](javascript:z)", 4.0) for c in range(3)]
                                        + [Read(c, "lvidd", "b", 4.1) for c in range(3)], []))
    assert "](javascript" not in hostile and "\\[y\\]\\(javascript:z)" in hostile


def test_demo_app_help_prints_the_options_and_starts_nothing():
    import subprocess
    import sys

    from echomeasure import config

    script = config.PROJECT_ROOT / "demo" / "app.py"
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--port" in proc.stdout and "--db" in proc.stdout, proc.stderr
    proc = subprocess.run([sys.executable, str(script), "--bogus"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("error: unrecognized arguments: --bogus")
