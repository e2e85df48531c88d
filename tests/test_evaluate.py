"""Held-out evaluation: single-frame and full-cine PLAX protocols, robustness breakdown.

Stand-in ``propose`` functions that know the truth (an oracle, an oracle off by a known
caliper offset, an oracle that picks a neighbouring frame) must give exactly the errors they
were built with, through the real rendering, calibration and scoring.
"""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import numpy as np
import pytest

from echomeasure import catalog
from echomeasure.propose.types import Proposal
from echomeasure.propose.values import physical_value
from echomeasure.synthetic.plax import render_plax, sector_geometry
from echomeasure.training.datasets import doppler_case, heldout_case_seeds, plax_params_for_seed
from echomeasure.training.evaluate import (
    FLAG_QUANTILE,
    CaseResult,
    condition_bins,
    confidence_flag,
    evaluate_doppler,
    evaluate_plax,
    robustness_breakdown,
)

SEEDS = heldout_case_seeds(3, "2d")
KP = {k: i for i, k in enumerate(catalog.KEYPOINTS_2D)}


def _digest(frame: np.ndarray) -> str:
    return hashlib.sha1(frame.tobytes()).hexdigest()


def _proposal(clip, name: str, frame: int, kp: np.ndarray, offset_px, confidence: float = 0.9) -> Proposal:
    """Truth points of ``kp`` with the caliper too long by ``offset_px`` (a number or ``{name: px}``)."""
    offset = offset_px[name] if isinstance(offset_px, dict) else offset_px
    a, b = (kp[KP[k]].astype(float) for k in catalog.LINEAR_ENDPOINTS[name])
    b = b + (b - a) / np.hypot(*(b - a)) * offset  # caliper too long by offset px
    pts = (tuple(a), tuple(b))
    value, unit, _ = physical_value(clip, name, pts)
    return Proposal(name, frame, pts, value, unit, confidence=confidence)


def _fixed_confidence(seed: int, name: str) -> float:
    return 0.9


def _cine_oracle(offset_px=0.0, frame_shift: int = 0, confidence=_fixed_confidence):
    """A full-cine ``propose``: truth points of the frame it picks (truth ED/ES + ``frame_shift``),
    with ``confidence(seed, name)``."""
    cines = {}
    seed_of = {}
    for seed in SEEDS:
        c = render_plax(plax_params_for_seed(seed, small=True), labels=False)
        cines[_digest(c.frames[0])] = c
        seed_of[_digest(c.frames[0])] = seed

    def pick(c, truth_frame: int) -> int:
        f = truth_frame + frame_shift
        return f if 0 <= f < len(c.frames) else truth_frame - frame_shift

    def propose(clip, only):
        c = cines[_digest(clip.frames[0])]
        seed = seed_of[_digest(clip.frames[0])]
        assert len(clip.frames) == len(c.frames)  # the whole cine, not one frame
        ed, es = pick(c, c.ed_frame), pick(c, c.es_frame)
        out = [_proposal(clip, n, ed if catalog.get(n).phase == "ed" else es,
                         c.keypoints[ed if catalog.get(n).phase == "ed" else es], offset_px, confidence(seed, n))
               for n in only]
        return SimpleNamespace(measurements=out, ed_frame=ed, es_frame=es)

    return propose, cines


def _frame_oracle(offset_px=0.0, confidence=_fixed_confidence):
    """A single-frame ``propose``: truth points of the one frame it is given, with ``confidence(seed, name)``."""
    from echomeasure.synthetic.plax import ed_es_frames

    truth = {}
    for seed in SEEDS:
        params = plax_params_for_seed(seed, small=True)
        c = render_plax(params, frames=list(ed_es_frames(params)), labels=False)
        for i in range(len(c.frames)):
            truth[_digest(c.frames[i])] = (seed, c.keypoints[i])

    def propose(clip, only):
        assert len(clip.frames) == 1
        seed, kp = truth[_digest(clip.frames[0])]
        return SimpleNamespace(measurements=[_proposal(clip, n, 0, kp, offset_px, confidence(seed, n)) for n in only])

    return propose


def _mm_per_px() -> np.ndarray:
    return np.array([sector_geometry(plax_params_for_seed(s, small=True)).cm_per_px * 10 for s in SEEDS])


@pytest.mark.parametrize("offset_px", [0.0, 3.0])
def test_single_frame_and_full_cine_report_the_same_known_caliper_offset(offset_px):
    expected = offset_px * _mm_per_px().mean()
    single = evaluate_plax(_frame_oracle(offset_px), SEEDS, small=True, progress=False)
    propose, _ = _cine_oracle(offset_px)
    cine = evaluate_plax(propose, SEEDS, small=True, progress=False, cine=True)
    assert single.protocol == "single-frame" and cine.protocol == "full-cine"
    for report in (single, cine):
        assert set(report.measurements) == set(catalog.LINEAR_2D)
        for name, m in report.measurements.items():
            assert m.n == len(SEEDS)
            assert m.mae == pytest.approx(expected, abs=1e-4), (report.protocol, name)
            assert m.bias == pytest.approx(expected, abs=1e-4)
        # one endpoint exact, the other offset_px away
        assert report.overall["endpoint_mae_mm"] == pytest.approx(expected / 2, abs=1e-4)
    assert not single.frame_choice
    fc = cine.frame_choice
    for phase in ("ed", "es"):
        assert fc[phase]["error_ms_max"] == pytest.approx(0.0, abs=1e-6)
        assert fc[phase]["index_error_median"] == 0
        assert fc[phase]["within_half_frame_pct"] == 100.0
    for name in catalog.LINEAR_2D:
        assert fc["chosen_frame_mae"][name] == pytest.approx(expected, abs=1e-4)


def test_full_cine_scores_a_neighbouring_frame_choice_against_the_true_frame():
    propose, cines = _cine_oracle(frame_shift=1)
    report = evaluate_plax(propose, SEEDS, small=True, progress=False, cine=True)
    frame_ms = np.array([c.frame_time_ms for c in cines.values()])
    fc = report.frame_choice
    for phase in ("ed", "es"):
        # one frame off: one frame time of cardiac phase, whichever way
        assert fc[phase]["error_ms_mean"] == pytest.approx(frame_ms.mean(), abs=0.01)
        assert fc[phase]["error_frames_mean"] == pytest.approx(1.0, abs=1e-3)
        assert fc[phase]["index_error_median"] == 1
        assert fc[phase]["within_half_frame_pct"] == 0.0
    # the frame-choice breakdown: one frame time per case, averaged per frame-rate bin
    fps = np.array([c.conditions["frame_rate_fps"] for c in report.cases])
    bins = fc["breakdown_ms"]["frame_rate_fps"]["bins"]
    for bn, (_, mask) in zip(bins, condition_bins(list(fps)), strict=True):
        assert bn["mae"]["ed"] == pytest.approx(np.mean(1000.0 / fps[mask]), abs=1e-2)
    # exact points on the chosen frame, so the value error is the truth's change over one frame
    expected: dict[str, list[float]] = {n: [] for n in catalog.LINEAR_2D}
    for c in cines.values():
        for name in catalog.LINEAR_2D:
            truth_frame = c.ed_frame if catalog.get(name).phase == "ed" else c.es_frame
            chosen = truth_frame + 1 if truth_frame + 1 < len(c.frames) else truth_frame - 1
            values = c.truth["frames"]
            expected[name].append(10 * (values[chosen]["values_cm"][name] - values[truth_frame]["values_cm"][name]))
    for name, m in report.measurements.items():
        assert fc["chosen_frame_mae"][name] == pytest.approx(0.0, abs=1e-3)
        assert m.mae == pytest.approx(np.mean(np.abs(expected[name])), abs=1e-3), name
    assert report.overall["endpoint_mae_mm"] == pytest.approx(0.0, abs=1e-3)
    # LVIDd is the largest diameter: a neighbouring frame can only be smaller
    assert report.measurements["lvidd"].bias < 0
    assert report.measurements["lvids"].bias > 0


def test_breakdown_bins_partition_the_cases_and_average_their_errors():
    single = evaluate_plax(_frame_oracle(2.0), SEEDS, small=True, progress=False)
    assert len(single.cases) == len(SEEDS)
    assert single.breakdown
    mm_per_px = np.array([c.conditions["mm_per_px"] for c in single.cases])
    assert mm_per_px == pytest.approx(_mm_per_px())
    for cond, b in single.breakdown.items():
        assert sum(bn["n_cases"] for bn in b["bins"]) == len(SEEDS), cond
        masks = [m for _, m in condition_bins([c.conditions[cond] for c in single.cases])]
        assert len(masks) == len(b["bins"])
        for bn, mask in zip(b["bins"], masks, strict=True):
            assert bn["n_cases"] == int(mask.sum())
            for name in catalog.LINEAR_2D:  # every caliper 2 px too long: 2 px in each case's mm
                assert bn["mae"][name] == pytest.approx(2.0 * mm_per_px[mask].mean(), abs=1e-3)
    # small renders share one image size: one bin holding every case
    (only,) = single.breakdown["image_width_px"]["bins"]
    assert only["n_cases"] == len(SEEDS) and only["label"] == "320"
    assert "robustness breakdown" in single.table()
    json.dumps(single.to_dict(cases=True))


def test_condition_bins_tertiles_categories_and_strings():
    x = np.arange(9.0)[::-1]
    bins = condition_bins(list(x))
    assert [b[0] for b in bins] == ["0-2", "3-5", "6-8"]
    masks = np.stack([m for _, m in bins])
    assert (masks.sum(axis=0) == 1).all()  # every case in exactly one bin
    assert [lab for lab, _ in condition_bins([640, 800, 640, 1024])] == ["640", "800", "1024"]
    assert [int(m.sum()) for _, m in condition_bins(["av", "mv", "av", "tr", "lvot"])] == [2, 1, 1, 1]
    nan_left_out = condition_bins([1.0, float("nan"), 2.0])
    assert sum(int(m.sum()) for _, m in nan_left_out) == 2


def test_breakdown_finds_the_condition_that_drives_the_error():
    rng = np.random.default_rng(0)
    cases = []
    for i in range(30):
        depth = 12 + 8 * rng.random()
        cases.append(CaseResult(seed=i, conditions={"depth_cm": depth, "gain_db": -10 * rng.random()},
                                errors={"lvidd": 0.5 * (depth - 12), "ivsd": -0.25 * (depth - 12)}))
    b = robustness_breakdown(cases, ["lvidd", "ivsd"], "mm")
    depth_bins = b["depth_cm"]["bins"]
    assert b["depth_cm"]["spearman_vs_case_error"] == pytest.approx(1.0)
    assert abs(b["gain_db"]["spearman_vs_case_error"]) < 0.5
    maes = [bn["mae"]["lvidd"] for bn in depth_bins]
    assert maes == sorted(maes) and maes[-1] > 3 * maes[0]
    for bn in depth_bins:
        assert bn["mae"]["ivsd"] == pytest.approx(bn["mae"]["lvidd"] / 2, abs=1e-3)  # 4-decimal rounding
        members = [c for c in cases if bn["lo"] - 1e-3 <= c.conditions["depth_cm"] <= bn["hi"] + 1e-3]
        assert len(members) == bn["n_cases"]


def test_doppler_oracle_gives_zero_error_and_breaks_down_by_flow():
    seeds = heldout_case_seeds(4, "doppler")
    strips = {}
    for s in seeds:
        strip = doppler_case(s, small=True)
        strips[_digest(strip.image)] = strip

    def propose(clip, only):
        strip = strips[_digest(clip.frames[0])]
        out = [Proposal(ch, 0, tuple(strip.peaks[ch]), float(strip.truth["measurements"][ch]["value"]) * 1.1,
                        "m/s", confidence=0.9) for ch in only]
        return SimpleNamespace(measurements=out)

    report = evaluate_doppler(propose, seeds, small=True, progress=False)
    assert report.overall["mean_error_pct"] == pytest.approx(10.0)
    flows = report.breakdown["flow"]["bins"]
    assert sum(bn["n_cases"] for bn in flows) == len(seeds)
    assert {bn["label"] for bn in flows} == {s.flow for s in strips.values()}
    for bn in flows:
        assert bn["mean_mae"] == pytest.approx(10.0)
    assert report.breakdown["scale_m_s"]["unit"] == "%"


# --------------------------------------------------------------------------- low-confidence flag


def _expected_flag(conf: np.ndarray, rel_err_pct: np.ndarray) -> tuple[float, float]:
    """The 25th percentile of the confidences and mean error of those below it over the rest."""
    threshold = float(np.percentile(conf, 25.0))
    flagged = conf < threshold
    return threshold, float(rel_err_pct[flagged].mean() / rel_err_pct[~flagged].mean())


@pytest.mark.parametrize("cine", [False, True])
def test_plax_flag_threshold_is_the_quartile_of_confidences_and_flagged_errors_are_compared(cine):
    # Distinct raw confidences of the size the shipped models give (~0.001-0.01: the manifest
    # must keep them, not round them to 0.00xx); the least confident calipers are the worst.
    names = list(catalog.LINEAR_2D)
    conf_of = {(seed, n): 0.001 * (1 + j) + 0.0001 * i for i, seed in enumerate(SEEDS) for j, n in enumerate(names)}
    offset_px = {n: (6.0 if j < 2 else 1.0) for j, n in enumerate(names)}

    def confidence(seed, name):
        return conf_of[(seed, name)]

    if cine:
        propose, _ = _cine_oracle(offset_px, confidence=confidence)
    else:
        propose = _frame_oracle(offset_px, confidence=confidence)
    report = evaluate_plax(propose, SEEDS, small=True, progress=False, cine=cine)

    # expected from the truth: each caliper is offset_px too long, in that case's mm
    mm_per_px = dict(zip(SEEDS, _mm_per_px(), strict=True))
    conf, rel = [], []
    for seed in SEEDS:
        truth = render_plax(plax_params_for_seed(seed, small=True), frames=[0], labels=False).truth
        for n in names:
            true_mm = truth["measurements"][n]["value"] * 10.0
            conf.append(conf_of[(seed, n)])
            rel.append(offset_px[n] * mm_per_px[seed] / true_mm * 100.0)
    threshold, ratio = _expected_flag(np.asarray(conf), np.asarray(rel))
    overall = report.overall
    assert overall["low_confidence_below"] == pytest.approx(threshold, rel=1e-9)
    assert overall["flagged_pct"] == pytest.approx(np.mean(np.asarray(conf) < threshold) * 100)
    assert 20.0 <= overall["flagged_pct"] <= 30.0
    assert overall["flagged_mae_ratio"] == pytest.approx(ratio, rel=1e-6)
    assert overall["flagged_mae_ratio"] > 2.0  # the flagged quarter holds the 6-px calipers
    flat = report.flat_metrics()  # what the manifest stores
    assert flat["low_confidence_below"] == pytest.approx(threshold, rel=1e-3)
    assert flat["flagged_mae_ratio"] == pytest.approx(ratio, abs=1e-4)
    assert "low_confidence_below" in report.table(breakdown=False)


def test_doppler_flag_threshold_and_ratio_from_known_confidences():
    seeds = heldout_case_seeds(8, "doppler")
    strips = {}
    for i, s in enumerate(seeds):
        strip = doppler_case(s, small=True)
        strips[_digest(strip.image)] = (i, strip)

    def error_pct(i: int) -> float:  # low confidence, large error; a few well-placed exceptions
        return [12.0, 9.0, 1.0, 2.0, 3.0, 1.5, 2.5, 0.5][i]

    def confidence(i: int, j: int) -> float:
        return 0.2 + 0.05 * i + 0.01 * j

    def propose(clip, only):
        i, strip = strips[_digest(clip.frames[0])]
        out = [Proposal(ch, 0, tuple(strip.peaks[ch]),
                        float(strip.truth["measurements"][ch]["value"]) * (1 + error_pct(i) / 100.0),
                        "m/s", confidence=confidence(i, j)) for j, ch in enumerate(only)]
        return SimpleNamespace(measurements=out)

    report = evaluate_doppler(propose, seeds, small=True, progress=False)
    conf, rel = [], []
    for i, strip in strips.values():
        for j, _ in enumerate(catalog.DOPPLER_FLOWS[strip.flow]):
            conf.append(confidence(i, j))
            rel.append(error_pct(i))
    threshold, ratio = _expected_flag(np.asarray(conf), np.asarray(rel))
    assert report.overall["low_confidence_below"] == pytest.approx(threshold, rel=1e-9)
    assert report.overall["flagged_mae_ratio"] == pytest.approx(ratio, rel=1e-6)
    assert report.overall["flagged_mae_ratio"] > 1.0
    assert report.flat_metrics()["low_confidence_below"] == pytest.approx(threshold, rel=1e-3)


def test_confidence_flag_edge_cases():
    # confidence that ranks errors backwards: the flagged quarter is the better one
    conf = np.linspace(0.1, 0.9, 9)
    err = np.linspace(1.0, 9.0, 9)  # error grows with confidence
    out = confidence_flag(conf, err)
    assert out["low_confidence_below"] == pytest.approx(0.3)
    assert out["flagged_pct"] == pytest.approx(200 / 9)  # 0.1 and 0.2 are below 0.3
    assert out["flagged_mae_ratio"] == pytest.approx(1.5 / np.mean(err[2:]))
    assert out["flagged_mae_ratio"] < 1.0
    # one confidence for all: nobody is below it, nothing to compare
    tied = confidence_flag([0.9] * 5, [1, 2, 3, 4, 5])
    assert tied["low_confidence_below"] == 0.9 and tied["flagged_pct"] == 0.0 and tied["flagged_mae_ratio"] is None
    assert confidence_flag([], []) == {"low_confidence_below": None, "flagged_pct": None, "flagged_mae_ratio": None,
                                       "confidence_floor": None}
    # non-finite entries are left out; signed errors count by their size
    nan_out = confidence_flag([0.1, float("nan"), 0.5, 0.6, 0.7], [-4.0, 100.0, 1.0, 1.0, 1.0])
    assert nan_out["low_confidence_below"] == pytest.approx(np.quantile([0.1, 0.5, 0.6, 0.7], FLAG_QUANTILE))
    assert nan_out["flagged_mae_ratio"] == pytest.approx(4.0)
    with pytest.raises(ValueError):
        confidence_flag([0.1, 0.2], [1.0])


def test_heldout_style_summary_counts_gross_misses_and_what_the_flag_catches():
    """A stand-in ``propose`` on the scatter family: exact calipers except LVIDd 6 mm too long on
    the first case (flagged) and on the second (not flagged); one exact LVIDd is flagged."""
    from dataclasses import replace

    from echomeasure.synthetic.styles import render_styled_plax
    from echomeasure.training.datasets import _styled_ed_es
    from echomeasure.training.evaluate import evaluate_plax, style_summary

    seeds = heldout_case_seeds(4, "2d")
    truth = {}
    for seed in seeds:
        params = plax_params_for_seed(seed, small=True, style="scatter")
        c = render_styled_plax(params, "scatter", frames=list(_styled_ed_es(params, "scatter")))
        for i in range(len(c.frames)):
            truth[_digest(c.frames[i])] = (seed, c.keypoints[i], c.cm_per_px)

    def propose(clip, only):
        seed, kp, cm = truth[_digest(clip.frames[0])]
        out = []
        for n in only:
            gross = n == "lvidd" and seed in seeds[:2]
            p = _proposal(clip, n, 0, kp, (6.0 / (cm * 10.0)) if gross else 0.0)
            out.append(replace(p, flagged=(n == "lvidd" and seed in (seeds[0], seeds[3]))))
        return SimpleNamespace(measurements=out)

    report = evaluate_plax(propose, seeds, small=True, progress=False, style="scatter")
    summary = style_summary(report)
    lvidd = summary["measurements"]["lvidd"]
    assert lvidd["n"] == 4 and lvidd["n_gross"] == 2 and lvidd["gross_pct"] == 50.0
    assert lvidd["gross_flagged_pct"] == 50.0 and lvidd["good_flagged_pct"] == 50.0
    assert lvidd["median"] == pytest.approx(3.0, abs=0.05) and lvidd["mae"] == pytest.approx(3.0, abs=0.05)
    assert summary["measurements"]["ivsd"]["gross_pct"] == 0.0
    overall = summary["overall"]
    assert overall["n_gross"] == 2 and overall["gross_flagged_pct"] == 50.0
    assert overall["gross_miss_pct"] == pytest.approx(2 / 24 * 100)
    assert overall["missing"] == 0


def test_several_style_families_evaluate_every_case_in_each_and_pool_them(monkeypatch):
    """How training calibrates the flag of a version trained on several families."""
    import echomeasure.training.evaluate as ev

    scored = []
    monkeypatch.setattr(ev, "_score_plax_ed_es", lambda fn, params, style, case, scores: scored.append((case.seed, style)))
    report = evaluate_plax(lambda clip, only=None: SimpleNamespace(measurements=[]), SEEDS[:2], small=True,
                           progress=False, style=("classic", "vendor"))
    assert scored == [(SEEDS[0], "classic"), (SEEDS[1], "classic"), (SEEDS[0], "vendor"), (SEEDS[1], "vendor")]
    assert report.n_cases == 4 and report.case_seeds == [SEEDS[0], SEEDS[1]] * 2
    one = evaluate_plax(lambda clip, only=None: SimpleNamespace(measurements=[]), SEEDS[:2], small=True,
                        progress=False, style="vendor")
    assert one.n_cases == 2 and scored[-2:] == [(SEEDS[0], "vendor"), (SEEDS[1], "vendor")]
