"""`echomeasure bench`: the results carry every speed, memory and accuracy figure (tiny settings)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_bench_speed_reports_model_end_to_end_anchor_and_ratio(use_random_weights, tmp_path):
    from echomeasure.bench import run_bench

    out = tmp_path / "results.json"
    results = run_bench(speed=True, n_frames=4, repeats=1, anchor_frames=1, output=out,
                        weights_dir=use_random_weights)
    assert json.loads(out.read_text()) == results
    assert results["model"]["torch"]["ms_per_frame"] > 0
    assert results["end_to_end"]["apical_a4c_uncompressed_rgb"]["s_per_clip_median"] > 0
    for enc in ("uncompressed_rgb", "jpeg_baseline"):
        e2e = results["end_to_end"][enc]
        assert e2e["s_per_clip_median"] > 0
        assert {"read_deidentify", "preprocess", "inference", "decode", "smoothing"} <= set(e2e["stages_s_median"])
    anchor = results["anchor"]
    assert anchor["arch"] == "deeplabv3_resnet50" and anchor["input_size"] == [480, 640]
    assert results["speedup_vs_anchor"] == pytest.approx(
        anchor["s_per_clip_extrapolated"] / results["end_to_end"]["uncompressed_rgb"]["s_per_clip_median"], rel=0.1
    )


def test_bench_accuracy_without_trained_weights_says_why(tmp_path, monkeypatch):
    from echomeasure.bench import run_accuracy

    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(tmp_path))
    result = run_accuracy(3, None)
    assert "echomeasure train" in result["skipped"]


@pytest.mark.parametrize(("option", "value"), [("--cases", "0"), ("--frames", "0"), ("--repeats", "-1")])
def test_bench_refuses_counts_below_one_in_one_line(option, value, capsys):
    from echomeasure.cli import main

    assert main(["bench", "--accuracy", option, value]) == 2  # each was a traceback
    assert capsys.readouterr().err.strip() == f"error: {option} must be at least 1"
