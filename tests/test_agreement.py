"""Agreement report: simulated readers with known bias and noise give the known ICC, limits of
agreement and CV; fewer than 2 readers gives a row without statistics; the report runs on a
real store (reviews by several reviewers, AI proposals) through the CLI, with PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from echomeasure import config
from echomeasure.agreement import AI_READER, Read, agreement, render, report_markdown, write_plots

pytest.importorskip("pingouin")

TRUTH_MEAN_CM, TRUTH_SD_CM = 4.5, 0.6
NOISE_SD_CM = 0.1
READER_BIAS_CM = {"reader-a": 0.0, "reader-b": 0.1, "reader-c": -0.05}
AI_BIAS_CM, AI_NOISE_SD_CM = 0.2, 0.15


def simulate(n_clips: int, seed: int = 0, measurement: str = "lvidd") -> tuple[list[Read], list[Read]]:
    """Three readers (fixed bias, Gaussian noise) and the AI measure the same clips."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(TRUTH_MEAN_CM, TRUTH_SD_CM, n_clips)
    reads = [
        Read(c, measurement, reader, float(truth[c] + bias + rng.normal(0, NOISE_SD_CM)))
        for reader, bias in READER_BIAS_CM.items()
        for c in range(n_clips)
    ]
    ai = [Read(c, measurement, AI_READER, float(truth[c] + AI_BIAS_CM + rng.normal(0, AI_NOISE_SD_CM)))
          for c in range(n_clips)]
    return reads, ai


def test_simulated_readers_give_the_known_icc_limits_and_cv():
    reads, ai = simulate(400)
    (row,) = agreement(reads, ai)
    assert row.measurement == "lvidd" and row.n == 400 and row.readers == sorted(READER_BIAS_CM)

    # ICC(3,1), consistency: reader bias does not count.
    truth_var, noise_var = TRUTH_SD_CM**2, NOISE_SD_CM**2
    icc3 = truth_var / (truth_var + noise_var)
    # ICC(2,1), absolute agreement: the spread of the reader biases counts too.
    bias_var = float(np.var(list(READER_BIAS_CM.values()), ddof=1))
    icc2 = truth_var / (truth_var + bias_var + noise_var)
    assert row.icc_3_1.value == pytest.approx(icc3, abs=0.01)
    assert row.icc_2_1.value == pytest.approx(icc2, abs=0.01)
    assert row.icc_2_1.value < row.icc_3_1.value
    for icc, true in ((row.icc_2_1, icc2), (row.icc_3_1, icc3)):
        assert icc.ci95_low < true < icc.ci95_high

    loa_half_width = 1.96 * NOISE_SD_CM * np.sqrt(2)
    for pair in row.reader_pairs:
        bias = READER_BIAS_CM[pair.first] - READER_BIAS_CM[pair.second]
        assert pair.n == 400
        assert pair.mean_difference == pytest.approx(bias, abs=0.025)
        assert pair.loa_low == pytest.approx(bias - loa_half_width, abs=0.04)
        assert pair.loa_high == pytest.approx(bias + loa_half_width, abs=0.04)
    assert [(p.first, p.second) for p in row.reader_pairs] == [
        ("reader-a", "reader-b"), ("reader-a", "reader-c"), ("reader-b", "reader-c")]

    ai_half_width = 1.96 * np.hypot(AI_NOISE_SD_CM, NOISE_SD_CM)
    assert [p.second for p in row.ai_vs_reader] == sorted(READER_BIAS_CM)
    for pair in row.ai_vs_reader:
        bias = AI_BIAS_CM - READER_BIAS_CM[pair.second]
        assert pair.first == AI_READER
        assert pair.mean_difference == pytest.approx(bias, abs=0.03)
        assert pair.loa_high - pair.loa_low == pytest.approx(2 * ai_half_width, rel=0.12)

    # Within-clip SD across readers comes from noise and bias spread; CV is relative to the mean.
    expected_cv = 100 * np.sqrt(noise_var + bias_var) / TRUTH_MEAN_CM
    assert row.cv_percent == pytest.approx(expected_cv, rel=0.15)


def test_noisier_readers_agree_less():
    reads, ai = simulate(200, seed=1)
    rng = np.random.default_rng(2)
    noisy = [Read(r.clip_id, r.measurement, r.reader, r.value + float(rng.normal(0, 0.3))) for r in reads]
    (good,), (bad,) = agreement(reads, ai), agreement(noisy, ai)
    assert bad.icc_3_1.value < good.icc_3_1.value - 0.1
    assert bad.cv_percent > good.cv_percent


def test_one_reader_gets_a_row_that_says_so_and_no_statistics():
    reads, ai = simulate(20)
    one = [r for r in reads if r.reader == "reader-a"]
    la = [Read(r.clip_id, "la", r.reader, r.value / 1.5) for r in reads]  # three readers on LA
    rows = {r.measurement: r for r in agreement(one + la, ai)}
    assert rows["lvidd"].readers == ["reader-a"]
    assert "fewer than 2 readers" in rows["lvidd"].note
    assert rows["lvidd"].icc_2_1 is None and rows["lvidd"].reader_pairs == [] and rows["lvidd"].ai_vs_reader == []
    assert rows["la"].icc_2_1 is not None
    md = report_markdown(list(rows.values()))
    lvidd_line = next(line for line in md.splitlines() if line.startswith("| lvidd |"))
    assert "fewer than 2 readers" in lvidd_line and "ICC" not in lvidd_line.split("|")[5]


def test_incomplete_reads_use_the_complete_clips_for_icc_and_pairs_for_bland_altman():
    reads, ai = simulate(30)
    partial = [r for r in reads if not (r.reader == "reader-c" and r.clip_id >= 20)]
    (row,) = agreement(partial, ai)
    assert row.n == 20
    pairs = {(p.first, p.second): p.n for p in row.reader_pairs}
    assert pairs == {("reader-a", "reader-b"): 30, ("reader-a", "reader-c"): 20, ("reader-b", "reader-c"): 20}


def test_json_and_plots(tmp_path: Path):
    reads, ai = simulate(25)
    rows = agreement(reads, ai)
    data = json.loads(render(rows, "json"))
    (m,) = data["measurements"]
    assert m["measurement"] == "lvidd" and m["n"] == 25 and set(m["icc_2_1"]) == {"value", "ci95_low", "ci95_high"}
    (png,) = write_plots(rows, reads, ai, tmp_path / "plots")
    assert png.name == "bland_altman_lvidd.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_review_ui_agreement_report_endpoint(tmp_path: Path):
    """The UI's agreement accordion calls the same report (api_name agreement_report)."""
    from store_fixtures import lvidd_proposals, write_us_dicom

    from echomeasure.pipeline import ingest_path
    from echomeasure.store import open_store
    from echomeasure.ui.app import build_app

    url = f"sqlite:///{tmp_path / 'ui.sqlite'}"
    store = open_store(url, images_dir=tmp_path / "images")
    try:
        for seed in range(4):
            cid = ingest_path(write_us_dicom(tmp_path / f"u{seed}.dcm", seed=seed), store, secret=config.secret(),
                              run_models=False).clip.id
            store.add_proposals(cid, lvidd_proposals())
            for k, reader in enumerate(("reader-a", "reader-b")):
                store.add_review(cid, "lvidd", "corrected", reader, points=[(20, 16), (20, 38 + seed + k)],
                                 value=1.1 + 0.05 * seed + 0.05 * k)
    finally:
        store.close()
    app = build_app(url)
    try:
        (fn,) = [f.fn for f in app.fns.values() if getattr(f, "api_name", None) == "agreement_report"]
        report = fn()
    finally:
        app.echomeasure_store.close()
    line = next(line for line in report.splitlines() if line.startswith("| lvidd |"))
    assert "| 2 | 4 |" in line  # two readers, four clips
    assert "| lvidd | reader-a | reader-b | 4 | -0.050 cm |" in report


def test_review_ui_hides_agreement_report_from_a_blinded_reader(tmp_path: Path):
    """A reader of a blinded study must not see the other readers' values through the report."""
    from store_fixtures import lvidd_proposals, write_us_dicom

    from echomeasure.pipeline import ingest_path
    from echomeasure.store import open_store, readers
    from echomeasure.ui.app import build_app

    url = f"sqlite:///{tmp_path / 'ui.sqlite'}"
    store = open_store(url, images_dir=tmp_path / "images")
    try:
        cid = ingest_path(write_us_dicom(tmp_path / "u.dcm", seed=0), store, secret=config.secret(), run_models=False).clip.id
        store.add_proposals(cid, lvidd_proposals())
        readers.assign(store, cid, ["reader-a", "reader-b"], mode="blinded")
    finally:
        store.close()
    app = build_app(url)
    try:
        (fn,) = [f.fn for f in app.fns.values() if getattr(f, "api_name", None) == "agreement_report"]
        hidden = fn("reader-a")
        shown = fn("study-lead")
    finally:
        app.echomeasure_store.close()
    assert hidden.startswith("Not shown")
    assert "| lvidd |" not in hidden
    assert not shown.startswith("Not shown")


def test_reader_names_cannot_put_html_or_table_cells_into_the_report():
    """Reader names are typed freely and the UI renders the report as Markdown: a name
    ``<img src=x onerror=...>`` was a live tag there, a ``|`` a new column."""
    reads, ai = simulate(20)
    hostile = {"reader-a": '<img src=x onerror="alert(1)">', "reader-b": "Dr A | B [x](javascript:y)"}
    reads = [Read(r.clip_id, r.measurement, hostile.get(r.reader, r.reader), r.value) for r in reads]
    md = report_markdown(agreement(reads, ai))
    assert "<img" not in md and "](javascript" not in md
    pairs = [line for line in md.splitlines() if line.startswith("| lvidd |") and "Dr A" in line]
    assert pairs and all(line.replace("\\|", "").count("|") == 7 for line in pairs)  # 6 cells, as the header
