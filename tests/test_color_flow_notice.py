"""A clip whose DICOM declares colour flow says so in its notices (metadata only, never the pixels).

A colour-flow region (RegionDataType 2) or UltrasoundColorDataPresent = 1 adds one notice to the
measure JSON (and so to the store and the UI); a grey clip gets none, and the declaration changes
nothing else.  A cine the view classifier calls "other" is told colour flow is the likely reason.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.sequence import Sequence
from test_view import needs_view_model, shipped_weights  # noqa: F401 - the shipped view classifier

from echomeasure.cli import main
from echomeasure.ingest.clip import COLOR_DATA_PRESENT, DATA_COLOR_FLOW, Clip, Region
from echomeasure.propose.engine import color_flow_notice

SECRET = b"test-colour-flow-secret-0123456789"
REGION_LINE = "colour-flow clip (the DICOM declares a colour-flow region)"
FLAG_LINE = "colour data declared (UltrasoundColorDataPresent"


def _case(tmp_path: Path) -> Path:
    from echomeasure.synthetic.studio import CaseJob, write_case

    write_case(tmp_path, CaseJob(0, "2d"), 5, small=True)
    return tmp_path / "case_0000.dcm"


def _with_colour_region(grey: Path, out: Path) -> Path:
    """The grey clip with a colour-flow box nested in its tissue region (as scanners write a colour
    Doppler cine); the pixels are the grey clip's."""
    from echomeasure.ingest.dicom_io import regions_from_dataset

    ds = pydicom.dcmread(grey)
    (tissue,) = [r for r in regions_from_dataset(ds) if r.data_type == 1]
    w, h = tissue.x1 - tissue.x0, tissue.y1 - tissue.y0
    colour = dataclasses.replace(tissue, x0=tissue.x0 + w // 3, y0=tissue.y0 + h // 4, x1=tissue.x1 - w // 3,
                                 y1=tissue.y1 - h // 3, data_type=DATA_COLOR_FLOW,
                                 ref_x0=None if tissue.ref_x0 is None else tissue.ref_x0 - w // 3,
                                 ref_y0=None if tissue.ref_y0 is None else tissue.ref_y0 - h // 4)
    ds.SequenceOfUltrasoundRegions = Sequence([*ds.SequenceOfUltrasoundRegions, colour.to_dicom_item()])
    ds.save_as(out, enforce_file_format=True)
    return out


def _with_colour_flag(grey: Path, out: Path) -> Path:
    ds = pydicom.dcmread(grey)
    ds.UltrasoundColorDataPresent = 1
    ds.save_as(out, enforce_file_format=True)
    return out


def _measure(path: Path, capsys) -> dict:
    code = main(["measure", "-q", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def _all_but_notices(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in ("file", "notices")}


def test_a_declared_colour_flow_clip_gets_one_notice_and_the_same_proposals(use_random_weights, tmp_path, monkeypatch,
                                                                          capsys):
    monkeypatch.setenv("ECHOMEASURE_SECRET", SECRET.decode())
    grey = _case(tmp_path)
    region = _with_colour_region(grey, tmp_path / "colour_region.dcm")
    flag = _with_colour_flag(grey, tmp_path / "colour_flag.dcm")
    grey_doc = _measure(grey, capsys)
    assert grey_doc["measurements"]  # the grey clip is measured as PLAX (no view classifier here)
    assert not any("colour" in n for n in grey_doc["notices"])
    for path, line in ((region, REGION_LINE), (flag, FLAG_LINE)):
        doc = _measure(path, capsys)
        # one line, first, and nothing else changes: the same proposals, values and points
        assert doc["notices"][0].startswith(line), doc["notices"]
        assert "proposals are made for grey B-mode; check them, or measure on the clip without colour" in doc["notices"][0]
        assert doc["notices"][1:] == grey_doc["notices"]
        assert _all_but_notices(doc) == _all_but_notices(grey_doc)


def test_the_colour_flag_survives_de_identification_and_reaches_the_stored_notices(use_random_weights, tmp_path):
    from echomeasure.pipeline import ingest_path
    from echomeasure.propose.measure import load_deidentified
    from echomeasure.store import open_store
    from echomeasure.store.clip_views import latest_views

    flag = _with_colour_flag(_case(tmp_path), tmp_path / "colour_flag.dcm")
    clip = load_deidentified(flag, secret=SECRET)  # the clip the models see, read back from the gate
    assert clip.extra.get(COLOR_DATA_PRESENT) is True and clip.declared_color_flow == "flag"
    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}", images_dir=tmp_path / "images")
    try:
        result = ingest_path(flag, store, secret=SECRET, only=["ivsd"])
        assert sum(FLAG_LINE in w for w in result.warnings) == 1
        stored = latest_views(store, [result.clip.id])[result.clip.id].notices
        assert sum(FLAG_LINE in n for n in stored) == 1
    finally:
        store.close()


def _clip(regions: tuple[Region, ...], extra: dict | None = None, n_frames: int = 3) -> Clip:
    return Clip(frames=np.zeros((n_frames, 64, 80, 3), np.uint8), frame_time_ms=20.0, regions=regions,
                source_kind="dicom", extra=dict(extra or {}))


TISSUE = Region(0, 0, 79, 63, spatial_format=1, data_type=1, units_x=3, units_y=3, delta_x=0.05, delta_y=0.05)
SPECTRAL = Region(0, 32, 79, 63, spatial_format=3, data_type=3, units_x=4, units_y=7, delta_x=0.01, delta_y=1.0,
                  ref_y0=10)


def test_only_the_metadata_declares_colour_flow():
    colour = dataclasses.replace(TISSUE, x0=20, x1=50, data_type=DATA_COLOR_FLOW)
    assert _clip((TISSUE,)).declared_color_flow is None and color_flow_notice(_clip((TISSUE,))) is None
    assert _clip((TISSUE, colour)).declared_color_flow == "region"
    assert _clip((TISSUE, colour), {COLOR_DATA_PRESENT: True}).declared_color_flow == "region"
    assert _clip((TISSUE,), {COLOR_DATA_PRESENT: True}).declared_color_flow == "flag"
    # colour pixels alone declare nothing (no pixel detection: vendor tints look alike)
    red = _clip((TISSUE,))
    red.frames[..., 0] = 200
    assert red.declared_color_flow is None
    # a Doppler strip is measured on its spectrum: its colour reference image gets no notice
    strip = _clip((dataclasses.replace(colour, y1=31), SPECTRAL), {COLOR_DATA_PRESENT: True})
    assert strip.kind == "doppler" and color_flow_notice(strip) is None


def test_a_colour_flag_is_read_from_the_dataset_robustly():
    from pydicom.dataset import Dataset

    from echomeasure.ingest.dicom_io import color_data_extra

    def ds(value):
        d = Dataset()
        if value is not None:
            d.UltrasoundColorDataPresent = value
        return d

    assert color_data_extra(ds(1)) == {COLOR_DATA_PRESENT: True}
    assert color_data_extra(ds(0)) == {} and color_data_extra(ds(None)) == {}


@needs_view_model
@pytest.mark.usefixtures("shipped_weights")
@pytest.mark.parametrize("variant", ["region", "flag", "grey"])
def test_a_colour_flow_cine_called_other_is_told_why(tmp_path, monkeypatch, capsys, variant):
    """The view classifier (which learnt grey B-mode) calls many colour-flow cines "other": the view
    notice names colour flow as the likely reason instead of "another view or not an echo"."""
    from echomeasure.catalog import VIEWS
    from echomeasure.models import view as view_model

    monkeypatch.setenv("ECHOMEASURE_SECRET", SECRET.decode())
    grey = _case(tmp_path)
    path = {"region": lambda: _with_colour_region(grey, tmp_path / "r.dcm"),
            "flag": lambda: _with_colour_flag(grey, tmp_path / "f.dcm"), "grey": lambda: grey}[variant]()
    probs = np.full(len(VIEWS), 0.02)
    probs[VIEWS.index("other")] = 1.0 - 0.02 * (len(VIEWS) - 1)
    other = view_model.decide(probs, view_model.load_view_classifier().entry.version)  # the active one
    monkeypatch.setattr(view_model, "classify_view", lambda clip, **kw: other)
    doc = _measure(path, capsys)
    assert doc["view"]["name"] == "other" and doc["measurements"] == []
    view_notice = next(n for n in doc["notices"] if "no PLAX calipers are proposed" in n)
    if variant == "grey":
        assert "another view or not an echo" in view_notice and not any("colour" in n for n in doc["notices"])
    elif variant == "region":
        assert doc["notices"][0].startswith(REGION_LINE)
        assert "colour flow is the likely reason" in view_notice and "not an echo" not in view_notice
    else:  # the flag alone: a grey Philips image of pydicom's carries it too, so it is said with doubt
        assert doc["notices"][0].startswith(FLAG_LINE)
        assert "colour flow may be the reason" in view_notice


def test_pydicom_real_ultrasound_files_declare_what_they_declare(use_random_weights, monkeypatch, capsys):
    """examples_palette.dcm (Philips OB still) sets UltrasoundColorDataPresent = 1 with a tissue and an
    ECG region and no colour-flow region; examples_ybr_color.dcm (SonoSite cine) declares no colour."""
    from pydicom.data import get_testdata_file

    monkeypatch.setenv("ECHOMEASURE_SECRET", SECRET.decode())
    palette = _measure(Path(get_testdata_file("examples_palette.dcm")), capsys)
    assert sum(FLAG_LINE in n for n in palette["notices"]) == 1
    sonosite = _measure(Path(get_testdata_file("examples_ybr_color.dcm")), capsys)
    assert not any("colour" in n for n in sonosite["notices"])
