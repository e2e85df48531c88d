"""View recognition: features, registry entry, routing of non-PLAX clips, real pydicom cines."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from echomeasure import catalog
from echomeasure.catalog import VIEWS
from echomeasure.cli import main
from echomeasure.models.registry import FlagThresholds, WeightsEntry, register, save_weights
from echomeasure.models.view import (
    INPUT_PX,
    VIEW_ARCH,
    build_view_net,
    clear_cache,
    decide,
    letterbox,
    view_features,
)

PROJECT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


def _has_view_model() -> bool:
    try:
        return any(m["name"] == "view" for m in json.loads((PROJECT_WEIGHTS / "manifest.json").read_text())["models"])
    except (OSError, ValueError, KeyError):
        return False


needs_view_model = pytest.mark.skipif(not _has_view_model(), reason="weights/ has no view classifier")


@pytest.fixture()
def shipped_weights(monkeypatch):
    from echomeasure.propose import clear_engines

    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(PROJECT_WEIGHTS))
    clear_engines()
    clear_cache()
    yield PROJECT_WEIGHTS
    clear_engines()
    clear_cache()


def test_features_see_anatomy_motion_and_colour():
    rng = np.random.default_rng(0)
    still = np.repeat(rng.integers(0, 255, (1, 120, 200, 1), dtype=np.uint8), 3, axis=3)
    f = view_features(still, (0, 0, 199, 119))
    assert f.shape == (3, INPUT_PX, INPUT_PX) and f.dtype == np.float32
    assert f[1].max() == 0.0 and f[2].max() == 0.0  # one grey frame: no motion, no colour
    moving = rng.integers(0, 255, (10, 120, 200, 3), dtype=np.uint8)
    g = view_features(moving, (0, 0, 199, 119))
    inside = slice(24, 40)  # the middle of the letter-boxed picture
    assert g[1][inside, inside].min() > 0.02 and g[2][inside, inside].min() > 0.02
    # letter-boxing keeps the aspect ratio: a wide box leaves black bands above and below
    assert letterbox(np.full((50, 100), 255, np.uint8))[:10].max() == 0
    assert letterbox(np.full((50, 100), 255, np.uint8))[32].min() == 255


def test_registry_takes_a_view_classifier_entry(tmp_path):
    net = build_view_net()
    sha = save_weights(net, tmp_path / "view-0.pt", precision="fp32")
    entry = WeightsEntry(name="view", version="0", arch=VIEW_ARCH, input_size=(64, 64), channels=VIEWS, file="view-0.pt",
                         sha256=sha)
    assert entry.mode == "view"
    register(entry, weights_dir=tmp_path)
    from echomeasure.models.view import load_view_classifier

    clf = load_view_classifier(weights_dir=tmp_path)
    p = clf.probabilities(np.zeros((3, 64, 64), np.float32))
    assert p.shape == (5,) and abs(p.sum() - 1) < 1e-6
    with pytest.raises(ValueError, match="catalog.VIEWS"):
        WeightsEntry(name="view", version="1", arch=VIEW_ARCH, input_size=(64, 64), channels=("plax", "rv_septum"),
                     file="x.pt", sha256=sha)
    d = decide(np.array([0.1, 0.7, 0.1, 0.05, 0.05]))
    assert d.name == "a4c" and d.as_json() == {"name": "a4c", "confidence": 0.7}


def test_without_a_view_classifier_clips_still_route_by_regions(tmp_path, use_random_weights, capsys):
    from echomeasure.synthetic.studio import CaseJob, write_case

    write_case(tmp_path, CaseJob(0, "2d"), 3, small=True)
    assert main(["measure", "-q", "--only", "lvidd", str(tmp_path / "case_0000.dcm")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["view"] is None and "no view classifier" in doc["notices"][0]
    assert [m["name"] for m in doc["measurements"]] == ["lvidd"]


@needs_view_model
def test_real_sonosite_apical_cine_is_never_plax(shipped_weights, capsys):
    from pydicom.data import get_testdata_file

    code = main(["measure", "-q", get_testdata_file("examples_ybr_color.dcm")])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["view"]["name"] in ("a4c", "other"), doc["view"]
    assert not {m["name"] for m in doc["measurements"]} & set(catalog.LINEAR_2D)
    assert "not a parasternal long-axis view" in doc["notices"][0]


@needs_view_model
@pytest.mark.parametrize("name", ["examples_palette.dcm", "examples_rgb_color.dcm", "examples_jpeg2k.dcm"])
def test_real_non_cardiac_ultrasound_is_not_plax(shipped_weights, name):
    from pydicom.data import get_testdata_file

    from echomeasure.models.view import classify_view
    from echomeasure.propose.measure import load_deidentified

    clip = load_deidentified(get_testdata_file(name), secret=b"test-view")
    assert classify_view(clip).name != "plax"


@needs_view_model
def test_synthetic_clips_of_every_view_are_recognised(shipped_weights):
    """Held-out seeds (never trained on), one clip per training family; the benchmark has the full
    figures, the held-out style family included."""
    from echomeasure.models.view import load_view_classifier
    from echomeasure.synthetic.styles import DEFAULT_TRAINING_STYLES
    from echomeasure.training.view_train import EVAL_SEED0, STYLED_VIEWS, make_sample

    clf = load_view_classifier()
    for k, view in enumerate(VIEWS):
        for i, style in enumerate(DEFAULT_TRAINING_STYLES if view in STYLED_VIEWS else ("classic",)):
            x = make_sample((view, EVAL_SEED0 + 900_000 + 10 * k + i, style, False))
            assert decide(clf.probabilities(x)).name == view, (view, style)


@needs_view_model
def test_apical_dicom_gets_no_plax_calipers_and_plax_does(shipped_weights, tmp_path, capsys):
    from echomeasure.synthetic.studio import CaseJob, write_case

    write_case(tmp_path, CaseJob(0, "a4c"), 21, small=True)
    write_case(tmp_path, CaseJob(1, "2d"), 21, small=True)
    assert main(["measure", "-q", str(tmp_path / "case_0000_a4c.dcm")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["view"]["name"] == "a4c" and doc["notices"]
    assert not {m["name"] for m in doc["measurements"]} & set(catalog.LINEAR_2D)  # no PLAX calipers
    assert main(["measure", "-q", "--only", "ivsd", str(tmp_path / "case_0001.dcm")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["view"]["name"] == "plax" and [m["name"] for m in doc["measurements"]] == ["ivsd"]


@needs_view_model
def test_ingest_keeps_a_non_plax_clip_without_proposals_and_says_why(shipped_weights, tmp_path):
    from echomeasure.pipeline import ingest_path
    from echomeasure.store import open_store
    from echomeasure.synthetic.studio import CaseJob, write_case

    write_case(tmp_path, CaseJob(0, "a2c"), 22, small=True)
    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}", images_dir=tmp_path / "images")
    try:
        result = ingest_path(tmp_path / "case_0000_a2c.dcm", store, secret=b"test-view-secret-0123456789abcdef")
        assert not {p.measurement for p in result.proposals} & set(catalog.LINEAR_2D)
        # the apical segmentation took the clip: the view's word informs (a notice), it warns of nothing
        assert result.contours and any("not a parasternal long-axis view" in n for n in result.notices)
        assert not any("not a parasternal long-axis view" in w for w in result.warnings)
        assert store.frame_images(result.clip.id)  # the clip is stored for manual calipers
    finally:
        store.close()


def test_view_net_is_tiny():
    net = build_view_net()
    assert sum(p.numel() for p in net.parameters()) < 200_000
    with torch.no_grad():
        assert net(torch.zeros(2, 3, INPUT_PX, INPUT_PX)).shape == (2, len(VIEWS))


def test_a_sector_found_from_the_pixels_is_recorded_for_the_2d_models():
    from echomeasure.ingest.clip import Clip
    from echomeasure.models.preprocess import box_2d
    from echomeasure.models.view import view_box

    frames = np.zeros((6, 120, 160, 3), np.uint8)
    frames[:, 30:100, 40:130] = np.random.default_rng(1).integers(0, 255, (6, 70, 90, 1), dtype=np.uint8)
    clip = Clip(frames=frames, frame_time_ms=40.0, regions=(), source_kind="video")
    box = view_box(clip)
    assert box == (40, 30, 129, 99) and clip.extra["sector_box"] == box
    assert box_2d(clip).as_tuple() == box


@needs_view_model
def test_a_single_still_frame_is_measured_as_plax_with_a_notice(shipped_weights):
    """The classifier judges cines (motion); a still is reported but not refused."""
    from echomeasure.ingest.clip import Clip
    from echomeasure.propose import propose
    from echomeasure.synthetic import render_plax_case

    cine = render_plax_case(31, small=True)
    still = Clip(frames=cine.frames[:1], frame_time_ms=None, regions=cine.regions, source_kind="dicom")
    result = propose(still, only="ivsd")
    assert [p.name for p in result.measurements] == ["ivsd"]
    # view 1.0 has never seen a still heart: it calls this one "other", and says why it measures anyway
    assert result.view["name"] == "other" and "single still frame" in result.notices[0]


@needs_view_model
def test_an_uncertain_apical_view_says_which_two_views_it_is_between(shipped_weights, tmp_path, capsys, monkeypatch):
    """An A4C clip whose RV is out of the sector looks like an A2C: the classifier's doubt reaches the user."""
    from echomeasure.models import view as view_model
    from echomeasure.synthetic.studio import CaseJob, write_case

    write_case(tmp_path, CaseJob(0, "a4c"), 21, small=True)
    path = str(tmp_path / "case_0000_a4c.dcm")
    assert main(["measure", "-q", path]) == 0
    confident = json.loads(capsys.readouterr().out)
    assert confident["view"]["confidence"] >= view_model.LOW_CONFIDENCE
    assert not any("view uncertain" in n for n in confident["notices"])

    doubtful = view_model.decide(np.array([0.03, 0.47, 0.44, 0.03, 0.03]), "test")
    monkeypatch.setattr(view_model, "classify_view", lambda clip, **kw: doubtful)
    assert main(["measure", "-q", path]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["view"] == {"name": "a4c", "confidence": 0.47}
    assert any("not a parasternal long-axis view" in n for n in doc["notices"])
    assert "view uncertain (a4c 0.47, a2c 0.44): check the view and the proposals" in doc["notices"]


@needs_view_model
def test_a_real_apical_cine_the_classifier_calls_plax_with_doubt_gets_no_plax_calipers(shipped_weights, capsys):
    """pydicom-data's color3d_jpeg_baseline.dcm: a real SonoSite A4C cine (120 frames) the classifier
    calls PLAX with about 0.63; every PLAX caliper on it came out flagged (IVSd 6.3 cm, LVIDd 13.5 cm)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file("color3d_jpeg_baseline.dcm")
    if path is None:
        pytest.skip("pydicom-data is not installed")
    assert main(["measure", "-q", path]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["measurements"] == []
    if doc["view"]["name"] == "plax":  # the premise of the rule (a better classifier would say a4c / other)
        assert doc["view"]["confidence"] < 0.8
    assert any("probably not a parasternal long-axis view" in n and "added by hand" in n for n in doc["notices"])
    assert not any("PLAX segmentation disagrees" in n for n in doc["notices"])  # no notices about dropped calipers


def _proposal(name, value, confidence, flagged=None):
    from echomeasure.propose.types import Proposal

    return Proposal(name=name, frame=0, points=((0.0, 0.0), (1.0, 1.0)), value=value, unit="cm", confidence=confidence,
                    flagged=confidence < 0.3 if flagged is None else flagged)


#: a keypoint model flagging below 0.3 pooled; LA's own confidences do not rank its errors, so a
#: LA caliper is flagged only below its floor (0.02)
_ENTRY = SimpleNamespace(thresholds=FlagThresholds(
    low_confidence_below=0.3, confidence_floor=0.01, flagged_mae_ratio=1.5,
    by_measurement={"la": {"low_confidence_below": 0.14, "confidence_floor": 0.02, "flagged_mae_ratio": 0.9}}))


def test_plax_calipers_are_dropped_only_when_the_view_is_in_doubt_and_none_is_credible():
    from echomeasure.propose.engine import PLAX_SURE_CONFIDENCE, _doubtful_plax_notice

    def view(name, p):
        probs = np.full(len(VIEWS), (1.0 - p) / (len(VIEWS) - 1))
        probs[VIEWS.index(name)] = p
        return decide(probs)

    all_flagged = [_proposal(n, v, 0.1) for n, v in (("ivsd", 1.0), ("lvidd", 5.0), ("lvpwd", 1.0))]
    all_flagged.append(_proposal("la", 3.5, 0.1, flagged=False))  # not flagged by LA's own figures, yet not credible
    one_credible = [*all_flagged[:3], _proposal("la", 3.5, 0.5)]
    implausible = [_proposal(n, v, 0.5) for n, v in (("ivsd", 6.3), ("lvidd", 13.5), ("lvpwd", 1.0))]
    sure = view("plax", PLAX_SURE_CONFIDENCE + 0.05)
    assert _doubtful_plax_notice(sure, all_flagged, _ENTRY) is None  # the view is sure
    assert _doubtful_plax_notice(None, all_flagged, _ENTRY) is None  # no view classifier
    assert _doubtful_plax_notice(view("plax", 0.63), one_credible, _ENTRY) is None
    notice = _doubtful_plax_notice(view("plax", 0.63), all_flagged, _ENTRY)
    assert notice is not None and "unsure of PLAX (plax 0.63" in notice and "none of the 4 PLAX calipers" in notice
    notice = _doubtful_plax_notice(view("plax", 0.7), implausible, _ENTRY)  # most implausible, none flagged
    assert notice is not None and "2 anatomically implausible" in notice
    assert _doubtful_plax_notice(view("plax", 0.63), all_flagged[:2], _ENTRY) is None  # too few to judge (--only)


def test_the_doubtful_plax_notice_says_which_reason_held_and_never_all_flagged_when_some_were_not():
    """The notice said "(all flagged, N anatomically implausible)" whichever reason dropped the
    calipers: false for most implausible but none low, and for a LA caliper its own figures did
    not flag (below the pooled threshold only)."""
    from echomeasure.propose.engine import _doubtful_plax_notice

    doubt = decide(np.array([0.63 if v == "plax" else 0.37 / (len(VIEWS) - 1) for v in VIEWS]))
    implausible = [_proposal(n, v, 0.5) for n, v in (("ivsd", 6.3), ("lvidd", 13.5), ("lvpwd", 1.0))]
    notice = _doubtful_plax_notice(doubt, implausible, _ENTRY)
    assert notice is not None and "(2 anatomically implausible)" in notice and "flagged" not in notice
    low = [_proposal(n, v, 0.1) for n, v in (("ivsd", 1.0), ("lvidd", 5.0), ("lvpwd", 1.0))]
    low.append(_proposal("la", 3.5, 0.1, flagged=False))
    notice = _doubtful_plax_notice(doubt, low, _ENTRY)
    assert notice is not None and "all flagged" not in notice
    assert "(all below the model's low-confidence threshold, 0 anatomically implausible)" in notice


def test_no_caliper_is_credible_by_the_pooled_threshold_whatever_a_measurement_s_own_figures_say():
    """The clip-level "no credible caliper" (view doubt, mirrored-display probe) reads the pooled
    threshold: LA flagged only below its own floor must not make a non-PLAX clip look credible."""
    from echomeasure.propose import flags

    la = _proposal("la", 3.5, 0.1)
    assert not flags.is_flagged(la.confidence, flags.entry_threshold(_ENTRY, measurement="la"))
    assert flags.none_credible([_proposal("ivsd", 1.0, 0.05), la], _ENTRY)
    assert not flags.none_credible([_proposal("ivsd", 1.0, 0.05), _proposal("la", 3.5, 0.35)], _ENTRY)
    assert flags.none_credible([_proposal("ivsd", None, 0.9)], _ENTRY)  # nothing valued


@needs_view_model
def test_a_still_frame_keeps_its_plax_calipers_whatever_the_view_classifier_says(shipped_weights, tmp_path, capsys):
    """A still is measured as PLAX (the classifier judges cines): the doubt rule does not drop its calipers."""
    import pydicom

    from echomeasure.synthetic.studio import CaseJob, write_case

    write_case(tmp_path, CaseJob(0, "2d"), 21, small=True)
    ds = pydicom.dcmread(tmp_path / "case_0000.dcm")
    frame = ds.pixel_array[0]
    ds.NumberOfFrames = 1
    ds.PixelData = frame.tobytes()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.PhotometricInterpretation = "RGB"
    path = tmp_path / "still.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert main(["measure", "-q", str(path)]) == 0, capsys.readouterr().err
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["measurements"]) == 6
    assert not any("probably not a parasternal" in n for n in doc["notices"])
