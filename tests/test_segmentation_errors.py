"""Where segmentation errors lie: :func:`confusion_counts` / :func:`error_sources` tell a wall drawn
too thick (extra from the cavities on both sides: point-spread-function bloom) from one drawn too
thin, and the trainers' evaluations report them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from models_fixtures import copy_active_model

from echomeasure.models.segmentation import PLAX_SEG_CLASSES, confusion_counts, error_sources, error_sources_markdown

CLASSES = ("background", "lv", "wall")


def _wall_map(wall: tuple[int, int]) -> np.ndarray:
    """A 40 x 40 map: LV blood in the middle columns, a wall band at ``wall`` (columns), background beyond."""
    m = np.zeros((40, 40), dtype=np.uint8)
    m[:, :wall[0]] = 1
    m[:, wall[0]:wall[1]] = 2
    return m


def test_a_wall_drawn_too_thick_shows_extra_from_both_neighbours_and_nothing_missed():
    truth = _wall_map((20, 26))  # 6 columns of wall
    pred = _wall_map((18, 29))  # 2 columns into the blood, 3 into the background
    src = error_sources(confusion_counts(pred, truth, 3), CLASSES)
    wall = src["wall"]
    assert wall["extra_pct"] == pytest.approx(100 * 5 / 6, abs=0.01)
    assert wall["extra_from"] == {"lv": pytest.approx(100 * 2 / 6, abs=0.01), "background": pytest.approx(50.0)}
    assert wall["missed_pct"] == 0 and wall["missed_to"] == {}
    assert src["lv"]["missed_to"] == {"wall": pytest.approx(10.0)} and src["lv"]["extra_pct"] == 0
    assert "background" not in src  # background is not a structure


def test_a_wall_drawn_too_thin_is_missed_not_extra():
    truth = _wall_map((20, 26))
    pred = _wall_map((21, 25))
    wall = error_sources(confusion_counts(pred, truth, 3), CLASSES)["wall"]
    assert wall["extra_pct"] == 0
    assert wall["missed_to"] == {"lv": pytest.approx(100 / 6, abs=0.01), "background": pytest.approx(100 / 6, abs=0.01)}


def test_counts_add_over_frames_and_a_perfect_map_has_no_error():
    truth = _wall_map((20, 26))
    c = confusion_counts(truth, truth, 3) + confusion_counts(truth, truth, 3)
    assert c.sum() == 2 * truth.size and np.count_nonzero(c - np.diag(np.diag(c))) == 0
    assert all(e["extra_pct"] == 0 and e["missed_pct"] == 0 for e in error_sources(c, CLASSES).values())


def test_a_label_beyond_the_classes_is_refused():
    truth = _wall_map((20, 26))
    with pytest.raises(ValueError, match="0-2"):
        confusion_counts(truth + 1, truth, 3)


def test_the_markdown_table_names_the_biggest_sources():
    src = {"held out": error_sources(confusion_counts(_wall_map((18, 29)), _wall_map((20, 26)), 3), CLASSES)}
    lines = error_sources_markdown(src)
    row = next(line for line in lines if "| wall |" in line)
    assert "background 50" in row and "lv 33.33" in row


@pytest.mark.slow
def test_plax_seg_evaluate_only_reports_iou_and_error_sources_per_family_group(tmp_path, capsys):
    from echomeasure.training import plax_seg_train

    entry = copy_active_model("plax-seg", tmp_path)
    report = tmp_path / "eval.json"
    code = plax_seg_train.main(["--evaluate-only", "--out", str(tmp_path), "--eval-cases", "1", "--threads", "1",
                                "--workers", "1", "--report", str(report)])
    assert code == 0
    r = json.loads(report.read_text())
    assert r["model"]["version"] == entry["version"] and r["model"]["input_px"] == entry["input_size"][0]
    assert 0.5 < r["metrics"]["own_mean_iou"] <= 1.0 and 0.5 < r["metrics"]["heldout_mean_iou"] <= 1.0
    for group in ("own", "heldout"):
        assert set(r["error_sources"][group]) <= set(PLAX_SEG_CLASSES[1:]) and "septum" in r["error_sources"][group]
    assert "--evaluate-only" in r["recipe"]
    # nothing registered, nothing else written
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["eval.json", "manifest.json", entry["file"]])


def test_plax_seg_evaluate_only_refuses_a_case_count_outside_the_clean_block(tmp_path, capsys):
    from echomeasure.training import plax_seg_train

    with pytest.raises(SystemExit) as exc:
        plax_seg_train.main(["--evaluate-only", "--eval-cases", "0", "--report", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: --eval-cases") and err.count("\n") == 1
    assert not any(tmp_path.iterdir())
